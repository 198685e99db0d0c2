//! The default pacing: an adaptive limit on requests in flight to the API server.
//!
//! The API server protects itself: API Priority and Fairness answers 429 (with Retry-After)
//! when the operator's priority level is full, and a server shedding load answers 503. A
//! fixed client-side QPS cannot know that limit: set low it makes the operator, not the
//! server, the bottleneck (a cold start of 10,000 namespaces at 50 QPS takes 800 s where the
//! server takes 75); set high it protects nothing. So by default the operator sends as fast
//! as its reconciles ask and backs off when the server says so, like TCP's congestion
//! control (additive increase, multiplicative decrease):
//!
//! - an overload answer (429 or 503) cuts the limit to half the requests that were in flight
//!   (not half the limit: TCP's `ssthresh = FlightSize / 2`, RFC 5681 §3.1), once per round:
//!   answers to requests sent before the last cut do not cut again, so a burst of rejections
//!   counts once. Halving a limit far above the load instead let every following round fill
//!   up again and be rejected: 27 429s in one second on a 3-seat priority level;
//! - the limit does not grow again until the Retry-After of that answer has passed;
//! - each success then adds `1 / limit`: one more request in flight per round of successes.
//!
//! The limit holds a request only until its response headers arrive, so a watch holds it
//! for one round trip, not for its life. `--kube-api-qps` stays as an explicit hard cap
//! above this ([`super::throttle`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tower::{Layer, Service};

/// Most requests in flight at once (and the limit's starting value): above the reconciles'
/// own parallelism, so the limit bites only once the server has pushed back.
pub const MAX_IN_FLIGHT: f64 = 64.0;

/// The limit never falls below one request in flight: the operator must go on.
const MIN_IN_FLIGHT: f64 = 1.0;

/// How long growth pauses after an overload answer without a Retry-After.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);

/// The longest Retry-After honoured: a larger one (or a bogus one) must not freeze growth.
const MAX_COOLDOWN: Duration = Duration::from_secs(10);

/// What the server said of one request, for the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served (whatever the status, but for the ones below).
    Served,
    /// 429 or 503: the server (or our priority level) is full. Retry-After, if given.
    Overloaded(Option<Duration>),
    /// No answer (connection refused, reset, timeout): says nothing of the server's load.
    NoAnswer,
}

impl Outcome {
    pub fn of_status(status: http::StatusCode, retry_after: Option<&http::HeaderValue>) -> Self {
        if status == http::StatusCode::TOO_MANY_REQUESTS
            || status == http::StatusCode::SERVICE_UNAVAILABLE
        {
            let seconds = retry_after
                .and_then(|value| value.to_str().ok())
                .and_then(|text| text.trim().parse::<u64>().ok());
            Self::Overloaded(seconds.map(Duration::from_secs))
        } else {
            Self::Served
        }
    }
}

/// The limit's arithmetic, without clocks of its own (time is passed in) or waiting.
#[derive(Debug, Clone)]
pub struct AimdLimit {
    limit: f64,
    in_flight: usize,
    /// Bumped by every cut; a request remembers the round it was sent in.
    round: u64,
    /// No growth before this instant.
    grow_after: Option<Instant>,
}

impl Default for AimdLimit {
    fn default() -> Self {
        Self {
            limit: MAX_IN_FLIGHT,
            in_flight: 0,
            round: 0,
            grow_after: None,
        }
    }
}

impl AimdLimit {
    /// Requests that may be in flight now.
    pub fn limit(&self) -> usize {
        // The limit is at least MIN_IN_FLIGHT (1) and at most MAX_IN_FLIGHT (64).
        self.limit.floor() as usize
    }

    /// Takes a place if one is free: the round the request is sent in.
    pub fn try_admit(&mut self) -> Option<u64> {
        (self.in_flight < self.limit()).then(|| {
            self.in_flight += 1;
            self.round
        })
    }

    /// Gives back the place of a request sent in `round`, with what became of it; the new
    /// limit if this cut it.
    pub fn release(&mut self, round: u64, outcome: Outcome, now: Instant) -> Option<usize> {
        let in_flight_with_this_one = self.in_flight;
        self.in_flight = self.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Overloaded(retry_after) => {
                let cooldown = retry_after.unwrap_or(DEFAULT_COOLDOWN).min(MAX_COOLDOWN);
                let until = now + cooldown;
                self.grow_after = Some(self.grow_after.map_or(until, |t| t.max(until)));
                // One cut per round: the others in flight were sent at the old limit.
                if round == self.round {
                    let flight = (in_flight_with_this_one as f64).min(self.limit);
                    self.limit = (flight / 2.0).max(MIN_IN_FLIGHT);
                    self.round += 1;
                    return Some(self.limit());
                }
            }
            Outcome::Served => {
                if self.grow_after.is_none_or(|t| now >= t) {
                    self.grow_after = None;
                    self.limit = (self.limit + 1.0 / self.limit).min(MAX_IN_FLIGHT);
                }
            }
            Outcome::NoAnswer => {}
        }
        None
    }
}

/// The shared limit: the arithmetic behind a lock, and a wake-up for a waiting request.
#[derive(Debug, Default)]
pub struct AdaptiveLimit {
    state: Mutex<AimdLimit>,
    released: Notify,
}

impl AdaptiveLimit {
    #[cfg(test)]
    fn current(&self) -> usize {
        self.state.lock().limit()
    }

    /// Waits for a place.
    async fn admit(self: Arc<Self>) -> Place {
        let round = self.wait_for_round().await;
        Place {
            limit: self,
            round,
            outcome: Outcome::NoAnswer,
        }
    }

    async fn wait_for_round(&self) -> u64 {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before looking, so a release in between is not missed.
            released.as_mut().enable();
            if let Some(round) = self.state.lock().try_admit() {
                return round;
            }
            released.await;
        }
    }
}

/// A request's place in flight; given back (with its outcome) when dropped.
struct Place {
    limit: Arc<AdaptiveLimit>,
    round: u64,
    outcome: Outcome,
}

impl Drop for Place {
    fn drop(&mut self) {
        let cut = self
            .limit
            .state
            .lock()
            .release(self.round, self.outcome, Instant::now());
        self.limit.released.notify_waiters();
        if let Some(limit) = cut {
            tracing::debug!(
                limit,
                "the API server pushed back (429 or 503): fewer requests in flight"
            );
        }
    }
}

/// Puts every request through the shared [`AdaptiveLimit`].
#[derive(Debug, Clone)]
pub struct AdaptiveLimitLayer {
    limit: Arc<AdaptiveLimit>,
}

impl AdaptiveLimitLayer {
    pub fn new(limit: Arc<AdaptiveLimit>) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for AdaptiveLimitLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limited {
            inner,
            limit: self.limit.clone(),
            admitting: None,
            place: None,
        }
    }
}

type Admitting = Pin<Box<dyn Future<Output = Place> + Send>>;

/// The limited service: `poll_ready` waits for a place before the inner service is asked.
pub struct Limited<S> {
    inner: S,
    limit: Arc<AdaptiveLimit>,
    admitting: Option<Admitting>,
    place: Option<Place>,
}

impl<S> std::fmt::Debug for Limited<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limited")
            .field("has_place", &self.place.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, B, RB, E> Service<http::Request<B>> for Limited<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>, Error = E>,
    S::Future: Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = E;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<RB>, E>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        if self.place.is_none() {
            let admitting = self
                .admitting
                .get_or_insert_with(|| Box::pin(self.limit.clone().admit()));
            match admitting.as_mut().poll(cx) {
                Poll::Ready(place) => {
                    self.admitting = None;
                    self.place = Some(place);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // Called without a ready place only against tower's contract; then unlimited.
        let mut place = self.place.take();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            if let (Some(place), Ok(response)) = (place.as_mut(), &response) {
                place.outcome = Outcome::of_status(
                    response.status(),
                    response.headers().get(http::header::RETRY_AFTER),
                );
            }
            drop(place);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVED: Outcome = Outcome::Served;
    const REJECTED: Outcome = Outcome::Overloaded(Some(Duration::from_secs(1)));

    fn admit(limit: &mut AimdLimit, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| limit.try_admit().expect("a free place"))
            .collect()
    }

    #[test]
    fn starts_wide_open_and_admits_up_to_the_limit() {
        let mut limit = AimdLimit::default();
        assert_eq!(limit.limit(), 64);
        admit(&mut limit, 64);
        assert_eq!(limit.try_admit(), None, "65th request in flight");
    }

    #[test]
    fn a_burst_of_rejections_cuts_the_limit_once() {
        let mut limit = AimdLimit::default();
        let now = Instant::now();
        let rounds = admit(&mut limit, 40);
        for &round in &rounds[..10] {
            limit.release(round, REJECTED, now);
        }
        assert_eq!(
            limit.limit(),
            20,
            "ten 429s of one round cut once, to half of 40"
        );
        for &round in &rounds[10..] {
            limit.release(round, SERVED, now);
        }
        // A request sent after the cut is of the next round: its 429 cuts again.
        let rounds = admit(&mut limit, 16);
        limit.release(rounds[0], REJECTED, now);
        assert_eq!(limit.limit(), 8);
    }

    #[test]
    fn a_429_cuts_to_half_of_what_was_in_flight_not_half_of_the_limit() {
        // The limit starts at 64 but only 6 requests are out when the level (3 seats) is
        // full: halving 64 would let 32 out next round, and most of them be rejected.
        let mut limit = AimdLimit::default();
        let rounds = admit(&mut limit, 6);
        limit.release(rounds[0], REJECTED, Instant::now());
        assert_eq!(limit.limit(), 3);
    }

    #[test]
    fn the_limit_never_falls_below_one() {
        let mut limit = AimdLimit::default();
        let now = Instant::now();
        for _ in 0..20 {
            let round = admit(&mut limit, 1)[0];
            limit.release(round, REJECTED, now);
        }
        assert_eq!(limit.limit(), 1);
        assert!(limit.try_admit().is_some(), "one request always goes");
    }

    #[test]
    fn no_growth_until_retry_after_has_passed_then_one_per_round() {
        let mut limit = AimdLimit::default();
        let start = Instant::now();
        let rounds = admit(&mut limit, 8);
        limit.release(rounds[0], REJECTED, start);
        for &round in &rounds[1..] {
            limit.release(round, SERVED, start);
        }
        assert_eq!(limit.limit(), 4);
        // Successes within the Retry-After (1 s) do not grow it.
        for round in admit(&mut limit, 4) {
            limit.release(round, SERVED, start + Duration::from_millis(900));
        }
        assert_eq!(limit.limit(), 4);
        // After it: about one place per round of successes (1/4 + 1/4.25 + ... for five).
        for _ in 0..4 {
            let round = admit(&mut limit, 1)[0];
            limit.release(round, SERVED, start + Duration::from_millis(1001));
        }
        assert_eq!(limit.limit(), 4, "{}", limit.limit);
        let round = admit(&mut limit, 1)[0];
        limit.release(round, SERVED, start + Duration::from_millis(1001));
        assert_eq!(limit.limit(), 5, "{}", limit.limit);
    }

    #[test]
    fn recovers_to_the_maximum_and_stays_there() {
        let mut limit = AimdLimit::default();
        let start = Instant::now();
        let round = admit(&mut limit, 1)[0];
        limit.release(round, REJECTED, start);
        let later = start + Duration::from_secs(2);
        for _ in 0..10_000 {
            let round = admit(&mut limit, 1)[0];
            limit.release(round, SERVED, later);
        }
        assert_eq!(limit.limit(), 64);
    }

    #[test]
    fn no_answer_neither_cuts_nor_grows() {
        let mut limit = AimdLimit::default();
        let now = Instant::now();
        let rounds = admit(&mut limit, 8);
        limit.release(rounds[0], REJECTED, now);
        for &round in &rounds[1..] {
            limit.release(round, Outcome::NoAnswer, now);
        }
        let round = admit(&mut limit, 1)[0];
        limit.release(round, Outcome::NoAnswer, now + Duration::from_secs(5));
        assert_eq!(limit.limit(), 4);
    }

    #[test]
    fn a_long_retry_after_is_capped() {
        let mut limit = AimdLimit::default();
        let start = Instant::now();
        let rounds = admit(&mut limit, 6);
        limit.release(
            rounds[0],
            Outcome::Overloaded(Some(Duration::from_secs(3600))),
            start,
        );
        for &round in &rounds[1..] {
            limit.release(round, SERVED, start);
        }
        let round = admit(&mut limit, 1)[0];
        limit.release(
            round,
            SERVED,
            start + MAX_COOLDOWN + Duration::from_millis(1),
        );
        assert!(limit.limit.fract() > 0.0, "grew after the capped cooldown");
    }

    #[test]
    fn overload_statuses_and_retry_after_are_read() {
        let header = http::HeaderValue::from_static("3");
        assert_eq!(
            Outcome::of_status(http::StatusCode::TOO_MANY_REQUESTS, Some(&header)),
            Outcome::Overloaded(Some(Duration::from_secs(3)))
        );
        assert_eq!(
            Outcome::of_status(http::StatusCode::SERVICE_UNAVAILABLE, None),
            Outcome::Overloaded(None)
        );
        let bogus = http::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(
            Outcome::of_status(http::StatusCode::TOO_MANY_REQUESTS, Some(&bogus)),
            Outcome::Overloaded(None)
        );
        for status in [200, 201, 404, 409, 422, 500, 504] {
            let status = http::StatusCode::from_u16(status).expect("status");
            assert_eq!(Outcome::of_status(status, None), Outcome::Served);
        }
    }

    /// The service waits when the limit is full and goes on when a place is given back.
    #[tokio::test]
    async fn a_request_waits_for_a_place() {
        use tower::ServiceExt;
        let shared = Arc::new(AdaptiveLimit::default());
        // Cut the limit to 1.
        for _ in 0..6 {
            let round = shared.state.lock().try_admit().expect("place");
            shared.state.lock().release(round, REJECTED, Instant::now());
        }
        assert_eq!(shared.current(), 1);
        let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
        let gate = Arc::new(tokio::sync::Mutex::new(Some(gate_rx)));
        let service = tower::service_fn(move |_: http::Request<()>| {
            let gate = gate.clone();
            async move {
                if let Some(rx) = gate.lock().await.take() {
                    let _ = rx.await;
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(()))
            }
        });
        let mut limited = AdaptiveLimitLayer::new(shared.clone()).layer(service);
        let first = limited
            .ready()
            .await
            .expect("ready")
            .call(http::Request::new(()));
        let first = tokio::spawn(first);
        // The second cannot get ready while the first holds the only place.
        let second_ready = tokio::time::timeout(Duration::from_millis(100), limited.ready()).await;
        assert!(
            second_ready.is_err(),
            "second request admitted past the limit"
        );
        gate_tx.send(()).expect("release the first");
        first.await.expect("join").expect("first response");
        tokio::time::timeout(Duration::from_secs(5), limited.ready())
            .await
            .expect("admitted after the first finished")
            .expect("ready");
    }
}

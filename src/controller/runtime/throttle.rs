//! Client-side rate limit (QPS with a burst) for every request to the API server, like
//! client-go's: the operator must not be the reason an API server falls behind, whatever
//! the concurrency and however many namespaces change at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tower::{Layer, Service};

/// A token bucket: `qps` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock();
        let (tokens, last) = &mut *state;
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * self.qps)
            .min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.qps))
        }
    }
}

/// Wraps the client's HTTP service so each request waits for a token.
#[derive(Debug, Clone)]
pub struct ThrottleLayer {
    bucket: Option<Arc<TokenBucket>>,
}

impl ThrottleLayer {
    /// `qps <= 0` disables the limit.
    pub fn new(qps: f64, burst: u32) -> Self {
        Self {
            bucket: (qps > 0.0).then(|| Arc::new(TokenBucket::new(qps, burst))),
        }
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttled<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttled {
            inner,
            bucket: self.bucket.clone(),
            wait: None,
            has_token: false,
        }
    }
}

/// The throttled service: `poll_ready` waits for a token before the inner service is asked.
pub struct Throttled<S> {
    inner: S,
    bucket: Option<Arc<TokenBucket>>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    has_token: bool,
}

// By hand: a clone waits for a token of its own (a derive would copy `has_token`).
impl<S: Clone> Clone for Throttled<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            bucket: self.bucket.clone(),
            wait: None,
            has_token: false,
        }
    }
}

impl<S> std::fmt::Debug for Throttled<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttled")
            .field("has_token", &self.has_token)
            .finish_non_exhaustive()
    }
}

impl<S, R> Service<R> for Throttled<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(bucket) = &self.bucket {
            while !self.has_token {
                if let Some(wait) = &mut self.wait {
                    if wait.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.wait = None;
                }
                match bucket.try_take(Instant::now()) {
                    Ok(()) => self.has_token = true,
                    Err(delay) => self.wait = Some(Box::pin(tokio::time::sleep(delay))),
                }
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.has_token = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let bucket = TokenBucket::new(10.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(bucket.try_take(start), Ok(()));
        }
        let wait = bucket.try_take(start).expect_err("burst spent");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert_eq!(bucket.try_take(start + Duration::from_millis(100)), Ok(()));
        // Idle time refills only up to the burst.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.try_take(later), Ok(()));
        }
        assert!(bucket.try_take(later).is_err());
    }

    #[tokio::test]
    async fn requests_are_spaced_at_the_rate() {
        use tower::ServiceExt;
        let service =
            tower::service_fn(|n: u32| async move { Ok::<u32, std::convert::Infallible>(n) });
        let mut throttled = ThrottleLayer::new(50.0, 1).layer(service);
        let start = Instant::now();
        for n in 0..6 {
            let answer = throttled
                .ready()
                .await
                .expect("ready")
                .call(n)
                .await
                .expect("call");
            assert_eq!(answer, n);
        }
        // 1 from the burst, then 5 at 50/s: at least 100 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(95),
            "{:?}",
            start.elapsed()
        );
    }
}

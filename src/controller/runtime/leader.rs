//! Leader election through a coordination.k8s.io Lease, with a write fence: only the
//! leader writes, and it writes only while its lease is certainly still its own.
//!
//! The election follows client-go's `leaderelection`: the holder renews the Lease (an update
//! with the resourceVersion it read, so two candidates cannot both win), and a candidate
//! takes over once it has watched the same record unchanged for the lease duration, timed
//! by its own monotonic clock (never by comparing its wall clock with the holder's).
//!
//! The fence closes the gap a renewal loop leaves open. A leader that is frozen (SIGSTOP, a
//! long GC-like pause, a VM migration) wakes up still believing it leads; its reconciles
//! would write before the renewal task notices the lease is gone. So every mutating request
//! passes [`FenceLayer`], which lets it through only before `sent + duration`, where `sent`
//! is when the last successful renewal was *sent*: a successor observes that renewal no
//! earlier than it was sent, so it cannot take over before this deadline. The monotonic
//! clock keeps running while the process is stopped, so a thawed leader finds its fence
//! closed. The fence is checked again before every poll of a write until it is answered,
//! so a write that passed it and then waited (for a connection, for its task to be run)
//! is dropped rather than sent by a thawed process. (A request already handed to a
//! connection, in the instant before the freeze, still goes out after it; only
//! server-side fencing could stop that.)
//!
//! The fence is the innermost layer of the client, right above kube's HTTP stack, whose
//! own retry layer is switched off: retries (429, 503, 504) are made above the fence, so
//! every attempt that leaves the process is checked, a retry too. Every write attempt and
//! every renewal has a timeout well under the lease duration, and the renewal loop wakes at
//! the fence's deadline whatever a renewal is doing: a leader whose renewals hang stops
//! writing at its fence and exits.
//!
//! Written here rather than with kube-lease-manager because that crate renews inside its
//! own loop and does not tell when a renewal succeeded, which the fence needs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tower::{Layer, Service};
use tracing::{debug, info, warn};

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// Seconds a lease stays valid after its last renewal.
    pub duration_seconds: u64,
}

impl LeaseSettings {
    fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_seconds.max(1))
    }

    /// How often the leader renews: three tries before the lease could expire.
    fn renew_every(&self) -> Duration {
        self.duration() / 3
    }

    /// How long one renewal (a read and a compare-and-swap) may take: a hung one is given
    /// up in time for the next try before the deadline.
    fn renew_timeout(&self) -> Duration {
        self.duration() / 3
    }
}

/// How long one write attempt may wait for its answer: a third of the lease duration with
/// leader election (so a hung write is given up well before the lease could pass), at
/// most [`MAX_WRITE_TIMEOUT`].
pub fn write_timeout(leader_elect: bool, lease_duration_seconds: u64) -> Duration {
    if leader_elect {
        (Duration::from_secs(lease_duration_seconds.max(1)) / 3).min(MAX_WRITE_TIMEOUT)
    } else {
        MAX_WRITE_TIMEOUT
    }
}

/// Our writes are small; an API server that takes longer than this to answer one is stuck.
const MAX_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
#[error("leader election on Lease {namespace}/{name}: {source}")]
pub struct LeaseError {
    namespace: String,
    name: String,
    #[source]
    source: kube::Error,
}

// ---------------------------------------------------------------------------------------
// The fence
// ---------------------------------------------------------------------------------------

/// Until when this process may write. Without leader election it is always open.
#[derive(Debug)]
pub struct WriteFence {
    /// None: no leader election, writes always allowed.
    deadline: Option<Mutex<Option<Instant>>>,
}

impl WriteFence {
    /// A fence that never closes (a single replica without --leader-elect).
    pub fn open() -> Arc<Self> {
        Arc::new(Self { deadline: None })
    }

    /// A fence that is closed until the lease is acquired.
    pub fn closed() -> Arc<Self> {
        Arc::new(Self {
            deadline: Some(Mutex::new(None)),
        })
    }

    fn set(&self, until: Option<Instant>) {
        if let Some(deadline) = &self.deadline {
            *deadline.lock() = until;
        }
    }

    #[cfg(test)]
    pub fn set_for_test(&self, until: Option<Instant>) {
        self.set(until);
    }

    /// Until when writes are allowed (None: not at all, or no fence).
    fn deadline(&self) -> Option<Instant> {
        self.deadline.as_ref().and_then(|deadline| *deadline.lock())
    }

    /// Whether a write sent now is still covered by the lease.
    pub fn allows_writes_at(&self, now: Instant) -> bool {
        match &self.deadline {
            None => true,
            Some(deadline) => deadline.lock().is_some_and(|until| now < until),
        }
    }
}

/// A mutating request refused because the lease may no longer be ours.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path} refused: the leader lease may have passed to another replica")]
pub struct FenceClosed {
    method: http::Method,
    path: String,
}

/// A write attempt that got no answer in time.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path}: no answer from the API server within {after:?}")]
pub struct WriteTimedOut {
    method: http::Method,
    path: String,
    after: Duration,
}

/// Wraps kube's HTTP service (the innermost layer: every attempt passes it): mutating
/// requests pass only while the fence is open, and each gets `write_timeout`.
#[derive(Debug, Clone)]
pub struct FenceLayer {
    fence: Arc<WriteFence>,
    write_timeout: Duration,
}

impl FenceLayer {
    pub fn new(fence: Arc<WriteFence>, write_timeout: Duration) -> Self {
        Self {
            fence,
            write_timeout,
        }
    }
}

impl<S> Layer<S> for FenceLayer {
    type Service = Fenced<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Fenced {
            inner,
            fence: self.fence.clone(),
            write_timeout: self.write_timeout,
        }
    }
}

/// The fenced service (see [`FenceLayer`]).
#[derive(Debug, Clone)]
pub struct Fenced<S> {
    inner: S,
    fence: Arc<WriteFence>,
    write_timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> Service<http::Request<B>> for Fenced<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mutating = !matches!(
            *request.method(),
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        if !mutating {
            // Reads include watches, which are meant to stay open.
            let call = self.inner.call(request);
            return Box::pin(async move { call.await.map_err(Into::into) });
        }
        let refused = FenceClosed {
            method: request.method().clone(),
            path: request.uri().path().to_string(),
        };
        if !self.fence.allows_writes_at(Instant::now()) {
            warn!(error = %refused, "write refused by the leader fence");
            return Box::pin(std::future::ready(Err(refused.into())));
        }
        let timed_out = WriteTimedOut {
            method: request.method().clone(),
            path: request.uri().path().to_string(),
            after: self.write_timeout,
        };
        let call = tokio::time::timeout(self.write_timeout, self.inner.call(request));
        Box::pin(fenced_write(self.fence.clone(), refused, timed_out, call))
    }
}

/// Drives a write that passed the fence, checking the fence again before every poll: until
/// the request is handed to a connection, each poll may be the one that sends it, and a
/// process frozen in between (waiting for a connection, or for its task to run) must drop
/// it when it thaws past its deadline rather than send it. Dropping it also cancels a
/// request hyper has queued but not yet written.
async fn fenced_write<F, R, E>(
    fence: Arc<WriteFence>,
    refused: FenceClosed,
    timed_out: WriteTimedOut,
    call: F,
) -> Result<R, BoxError>
where
    F: Future<Output = Result<Result<R, E>, tokio::time::error::Elapsed>>,
    E: Into<BoxError>,
{
    let mut call = std::pin::pin!(call);
    let answer = std::future::poll_fn(|cx| {
        if fence.allows_writes_at(Instant::now()) {
            call.as_mut().poll(cx).map(Some)
        } else {
            Poll::Ready(None)
        }
    })
    .await;
    match answer {
        Some(Ok(answer)) => answer.map_err(Into::into),
        Some(Err(_)) => {
            warn!(error = %timed_out, "write attempt timed out");
            Err(timed_out.into())
        }
        None => {
            warn!(error = %refused, "write dropped by the leader fence before it was answered");
            Err(refused.into())
        }
    }
}

// ---------------------------------------------------------------------------------------
// The election
// ---------------------------------------------------------------------------------------

/// The held lease: a future that resolves if it is lost, and the handle that releases it.
#[derive(Debug)]
pub struct Leadership {
    lost: oneshot::Receiver<()>,
    held: HeldLease,
}

/// Gives the lease up on shutdown.
#[derive(Debug)]
pub struct HeldLease {
    api: Api<Lease>,
    settings: LeaseSettings,
    fence: Arc<WriteFence>,
    renewals: tokio::task::JoinHandle<()>,
}

/// How often a standby looks at the lease: a released lease is taken within this time.
const STANDBY_POLL: Duration = Duration::from_secs(1);

/// What a candidate last saw of the lease, and when (its own clock).
#[derive(Debug)]
struct Observed {
    record: (Option<String>, Option<MicroTime>, Option<i32>),
    since: Instant,
}

/// The outcome of one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// We hold the lease; the renewal (or take-over) was sent at this instant.
    Held { sent: Instant },
    /// Another replica holds a lease that has not expired.
    HeldByOther(String),
}

/// The election state of one candidate.
#[derive(Debug)]
struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Option<Observed>,
}

/// Why one try at the lease failed.
#[derive(Debug, thiserror::Error)]
enum TryError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("no answer from the API server within {0:?}")]
    TimedOut(Duration),
}

impl Elector {
    /// [`Elector::try_acquire_or_renew`], given up after `timeout`.
    async fn try_within(&mut self, timeout: Duration) -> Result<Attempt, TryError> {
        match tokio::time::timeout(timeout, self.try_acquire_or_renew()).await {
            Ok(attempt) => Ok(attempt?),
            Err(_) => Err(TryError::TimedOut(timeout)),
        }
    }

    /// One try to take or renew the lease (client-go's tryAcquireOrRenew).
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let sent = Instant::now();
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let duration_seconds = i32::try_from(self.settings.duration_seconds).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.settings.identity.clone()),
                    lease_duration_seconds: Some(duration_seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held { sent }),
                // Another candidate created it first.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    Ok(Attempt::HeldByOther(String::new()))
                }
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = (
            holder.clone(),
            spec.renew_time.clone(),
            spec.lease_duration_seconds,
        );
        let observed = match self.observed.take() {
            Some(observed) if observed.record == record => observed,
            _ => Observed {
                record,
                since: sent,
            },
        };
        let ours = holder.as_deref() == Some(self.settings.identity.as_str());
        let their_duration = Duration::from_secs(
            spec.lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(self.settings.duration_seconds),
        );
        let expired = sent.saturating_duration_since(observed.since) >= their_duration;
        self.observed = Some(observed);
        if let Some(other) = holder.as_ref().filter(|_| !ours && !expired) {
            return Ok(Attempt::HeldByOther(other.clone()));
        }
        let transitions = spec.lease_transitions.unwrap_or_default();
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(duration_seconds),
            acquire_time: if ours {
                spec.acquire_time
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if ours {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..spec
        });
        // The resourceVersion read above makes this a compare-and-swap.
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Held { sent }),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok(Attempt::HeldByOther(holder.unwrap_or_default()))
            }
            Err(error) => Err(error),
        }
    }
}

/// Waits until this process holds the lease, then keeps renewing it in the background and
/// keeps `fence` open only as long as the lease is certainly ours.
pub async fn acquire(
    client: Client,
    settings: &LeaseSettings,
    fence: Arc<WriteFence>,
) -> Result<Leadership, LeaseError> {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut elector = Elector {
        api: api.clone(),
        settings: settings.clone(),
        observed: None,
    };
    info!(lease = %settings.name, identity = %settings.identity, "waiting for the leader lease");
    let mut errors = 0_u32;
    loop {
        match elector.try_within(settings.renew_timeout()).await {
            Ok(Attempt::Held { sent }) => {
                fence.set(Some(sent + settings.duration()));
                break;
            }
            Ok(Attempt::HeldByOther(holder)) => {
                errors = 0;
                debug!(%holder, "lease held by another replica");
            }
            Err(TryError::TimedOut(after)) => {
                errors += 1;
                if errors % 10 == 1 {
                    warn!(
                        ?after,
                        "leader election: no answer from the API server; retrying"
                    );
                }
            }
            Err(TryError::Api(source)) => {
                errors += 1;
                // Forbidden or a missing namespace will not fix themselves: say so, loudly.
                if errors % 10 == 1 {
                    warn!(error = %source, "leader election failed; retrying");
                }
                if matches!(&source, kube::Error::Api(s) if s.code == 403) && errors >= 30 {
                    return Err(LeaseError {
                        namespace: settings.namespace.clone(),
                        name: settings.name.clone(),
                        source,
                    });
                }
            }
        }
        tokio::time::sleep(STANDBY_POLL).await;
    }
    info!(identity = %settings.identity, "acquired the leader lease");
    let (lost_tx, lost) = oneshot::channel();
    let renewing_fence = fence.clone();
    let renew_settings = settings.clone();
    let renewals = tokio::spawn(async move {
        keep_renewing(elector, &renew_settings, &renewing_fence).await;
        renewing_fence.set(None);
        let _ = lost_tx.send(());
    });
    Ok(Leadership {
        lost,
        held: HeldLease {
            api,
            settings: settings.clone(),
            fence,
            renewals,
        },
    })
}

/// Renews until the lease is lost: another holder took it, or no renewal succeeded before
/// the fence's deadline. It wakes at the deadline whatever a renewal is doing, so a hung
/// renewal cannot keep a leader that has lost its lease running.
async fn keep_renewing(mut elector: Elector, settings: &LeaseSettings, fence: &WriteFence) {
    let mut next = settings.renew_every();
    loop {
        let Some(deadline) = fence.deadline() else {
            return;
        };
        let renewal = async {
            tokio::time::sleep(next).await;
            elector.try_within(settings.renew_timeout()).await
        };
        let outcome = tokio::select! {
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => None,
            outcome = renewal => Some(outcome),
        };
        // None: the deadline came first (a renewal hung, or the process was frozen).
        let Some(outcome) = outcome.filter(|_| fence.allows_writes_at(Instant::now())) else {
            // A successor may be writing by now.
            warn!("the leader lease expired before it could be renewed");
            return;
        };
        match outcome {
            Ok(Attempt::Held { sent }) => {
                fence.set(Some(sent + settings.duration()));
                next = settings.renew_every();
            }
            Ok(Attempt::HeldByOther(holder)) => {
                warn!(%holder, "the leader lease was taken by another replica");
                return;
            }
            Err(error) => {
                warn!(%error, "cannot renew the leader lease; retrying");
                next = STANDBY_POLL;
            }
        }
    }
}

impl Leadership {
    /// Splits into the loss signal and the handle that releases the lease.
    pub fn split(self) -> (oneshot::Receiver<()>, HeldLease) {
        (self.lost, self.held)
    }
}

impl HeldLease {
    /// Gives the lease up so a standby takes over at once (client-go's ReleaseOnCancel):
    /// the holder is cleared, which a standby takes as free.
    pub async fn release(self) {
        self.renewals.abort();
        // No write of ours may follow the release.
        self.fence.set(None);
        let released = async {
            let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
                return Ok(false);
            };
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(false);
            };
            if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            self.api
                .replace(&self.settings.name, &PostParams::default(), &lease)
                .await
                .map(|_| true)
        };
        match tokio::time::timeout(self.settings.renew_timeout(), released).await {
            Ok(Ok(true)) => info!("released the leader lease"),
            Ok(Ok(false)) => info!("the leader lease was no longer ours; nothing to release"),
            Ok(Err(error)) => {
                warn!(%error, "could not release the leader lease; it expires on its own")
            }
            Err(_) => warn!("releasing the leader lease timed out; it expires on its own"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[test]
    fn an_open_fence_always_allows_writes() {
        let fence = WriteFence::open();
        assert!(fence.allows_writes_at(Instant::now()));
        fence.set(None);
        assert!(fence.allows_writes_at(Instant::now()));
    }

    #[test]
    fn a_leader_fence_allows_writes_only_before_its_deadline() {
        let fence = WriteFence::closed();
        let now = Instant::now();
        assert!(
            !fence.allows_writes_at(now),
            "closed until the lease is held"
        );
        fence.set(Some(now + Duration::from_secs(15)));
        assert!(fence.allows_writes_at(now + Duration::from_secs(14)));
        assert!(!fence.allows_writes_at(now + Duration::from_secs(15)));
        fence.set(None);
        assert!(!fence.allows_writes_at(now));
    }

    fn request(method: http::Method) -> http::Request<()> {
        let mut request = http::Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = http::Uri::from_static("/apis/networking.k8s.io/v1/namespaces/a");
        request
    }

    #[tokio::test]
    async fn a_closed_fence_refuses_writes_and_lets_reads_through() {
        let fence = WriteFence::closed();
        let inner = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>("sent")
        });
        let service = FenceLayer::new(fence.clone(), Duration::from_secs(10)).layer(inner);
        let read = service.clone().oneshot(request(http::Method::GET)).await;
        assert_eq!(read.ok(), Some("sent"));
        for method in [
            http::Method::PATCH,
            http::Method::POST,
            http::Method::DELETE,
        ] {
            let refused = service
                .clone()
                .oneshot(request(method.clone()))
                .await
                .expect_err("a write with the fence closed");
            assert!(
                refused.to_string().contains("leader lease"),
                "{method}: {refused}"
            );
        }
        fence.set(Some(Instant::now() + Duration::from_secs(60)));
        let write = service.oneshot(request(http::Method::PATCH)).await;
        assert_eq!(write.ok(), Some("sent"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_without_an_answer_times_out() {
        let inner = tower::service_fn(|_: http::Request<()>| {
            std::future::pending::<Result<&str, std::convert::Infallible>>()
        });
        let service = FenceLayer::new(WriteFence::open(), Duration::from_secs(3)).layer(inner);
        let outcome = service.oneshot(request(http::Method::PATCH)).await;
        let error = outcome.expect_err("a hung write is given up");
        assert!(error.to_string().contains("no answer"), "{error}");
    }

    /// A write that passed the fence, then waited (for a connection, for its task to be
    /// polled) while the process was frozen past its deadline, is dropped, never sent.
    #[tokio::test]
    async fn a_write_that_passed_the_fence_is_not_sent_once_the_fence_has_closed() {
        let connection_ready = Arc::new(tokio::sync::Notify::new());
        let sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let inner = tower::service_fn({
            let (connection_ready, sent) = (connection_ready.clone(), sent.clone());
            move |_: http::Request<()>| {
                let (connection_ready, sent) = (connection_ready.clone(), sent.clone());
                async move {
                    connection_ready.notified().await;
                    sent.store(true, std::sync::atomic::Ordering::SeqCst);
                    Ok::<_, std::convert::Infallible>("sent")
                }
            }
        });
        let fence = WriteFence::closed();
        fence.set(Some(Instant::now() + Duration::from_secs(60)));
        let mut service = FenceLayer::new(fence.clone(), Duration::from_secs(10)).layer(inner);
        let write = service
            .ready()
            .await
            .expect("ready")
            .call(request(http::Method::PATCH));
        // The process is frozen past its deadline after the call, before the send.
        fence.set(Some(Instant::now()));
        connection_ready.notify_one();
        let outcome = write.await;
        let error = outcome.expect_err("a write after the fence closed");
        assert!(error.to_string().contains("leader lease"), "{error}");
        assert!(
            !sent.load(std::sync::atomic::Ordering::SeqCst),
            "the write went out after the fence closed"
        );
    }

    #[tokio::test]
    async fn a_leader_whose_renewal_hangs_gives_up_at_its_deadline() {
        // An API server that never answers.
        let hung = tower::service_fn(|_: http::Request<kube::client::Body>| {
            std::future::pending::<Result<http::Response<kube::client::Body>, BoxError>>()
        });
        let client = Client::new(hung, "default");
        let settings = LeaseSettings {
            namespace: "default".to_string(),
            name: "lease".to_string(),
            identity: "me".to_string(),
            duration_seconds: 1,
        };
        let elector = Elector {
            api: Api::namespaced(client, "default"),
            settings: settings.clone(),
            observed: None,
        };
        let fence = WriteFence::closed();
        let started = Instant::now();
        fence.set(Some(started + settings.duration()));
        let stopped = tokio::time::timeout(
            Duration::from_secs(3),
            keep_renewing(elector, &settings, &fence),
        )
        .await;
        assert!(stopped.is_ok(), "still renewing 3 s after a 1 s deadline");
        assert!(started.elapsed() >= settings.duration());
        assert!(!fence.allows_writes_at(Instant::now()));
    }
}

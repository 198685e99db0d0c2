//! A write budget per object: at most [`MAX_WRITES`] mutating requests to one object in
//! any [`WINDOW`]. Two controllers that each force their own value onto the same field (our
//! forced server-side apply against another field manager, or against a plain update)
//! would otherwise rewrite the object as fast as the watches deliver, forever. With the
//! budget spent, the object is left as the other writer made it and reported as a
//! `Conflict` until the window has passed; then one more repair is tried.
//!
//! Every attempt counts: [`WriteBudgetLayer`] sits in the client right above kube's HTTP
//! stack (below the retries) and records each mutating request that goes on the wire, to
//! the object its URL names — applies, status updates, the audit-policy ConfigMap,
//! finalizer patches, deletes, retries and requests that failed — and refuses one beyond
//! the budget ([`BudgetSpent`]). A create's URL names only its collection, so our creates
//! carry their object's [`WriteTarget`] as a request extension. The reconcilers check the same budget before they write,
//! so the refusal is a backstop for the paths and races no decision foresaw. Events are
//! not budgeted: each is a new object.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tower::{Layer, Service};
use tracing::warn;

/// Writes allowed to one object per window.
pub const MAX_WRITES: usize = 3;
/// The window: a minute, the unit the operator's promise is stated in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long a write stays in the budget: the window plus a margin, because the promise is
/// kept as the API server sees it and a request reaches the server some time after it is
/// recorded here (queued in the HTTP connection on a loaded machine). Without the margin a
/// fourth attempt arrived 59.997 s after the first (fault scenario 4, under 429s).
const HELD_FOR: Duration = WINDOW.saturating_add(Duration::from_secs(2));

/// Which object a write goes to: kind, namespace, name (hashed: the budget holds an entry
/// for every object written in the last minute, 30,000 of them in a 10,000-namespace
/// converge, so it keeps 8 bytes of key instead of three strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WriteTarget(u64);

impl WriteTarget {
    /// The object at an API path (`/apis/<group>/<version>/namespaces/<ns>/<plural>/<name>`,
    /// a subresource such as `/status` being an object of its own, as in the audit log).
    pub fn at_path(path: &str) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        path.trim_end_matches('/').hash(&mut hasher);
        Self(hasher.finish())
    }

    /// A generated object or a namespace: the path our writes to it use.
    pub fn object(resource: &kube::core::ApiResource, namespace: Option<&str>, name: &str) -> Self {
        let collection =
            <kube::core::DynamicObject as kube::Resource>::url_path(resource, namespace);
        Self::at_path(&format!("{collection}/{name}"))
    }
}

/// The resource (plural) an API path names, if it names one.
fn resource_of(path: &str) -> Option<&str> {
    let mut segments = path.trim_matches('/').split('/');
    // /api/<version>/... or /apis/<group>/<version>/...
    match segments.next()? {
        "api" => {
            segments.next()?;
        }
        "apis" => {
            segments.next()?;
            segments.next()?;
        }
        _ => return None,
    }
    let rest: Vec<&str> = segments.collect();
    match rest.as_slice() {
        ["namespaces", _namespace, resource, ..] => Some(resource),
        [resource, ..] => Some(resource),
        [] => None,
    }
}

/// The times of the last writes to one object (oldest first; unused slots are None).
/// Each as nanoseconds after the budget's epoch plus one, 0 for no write: 8 bytes a time
/// instead of 16 for an `Option<Instant>`, and the map holds every object written in the
/// last minute (at 10,000 namespaces this halved its peak of 5.6 MB).
type Recent = [u64; MAX_WRITES];

/// Per-object write times within the window.
#[derive(Debug)]
pub struct RepairBudget {
    recent: Mutex<HashMap<WriteTarget, Recent>>,
    /// Size of the map after the last sweep of expired entries.
    swept_at_len: Mutex<usize>,
    /// Times are kept relative to this: a window before the budget was made, so a write
    /// seeded from before then (a predecessor's) is still within reach.
    epoch: Instant,
}

impl Default for RepairBudget {
    fn default() -> Self {
        let now = Instant::now();
        Self {
            recent: Mutex::default(),
            swept_at_len: Mutex::default(),
            epoch: now.checked_sub(HELD_FOR).unwrap_or(now),
        }
    }
}

impl RepairBudget {
    /// `time` as kept in [`Recent`]; one before the epoch counts as the epoch (it is out
    /// of the window by then anyway).
    fn stamp(&self, time: Instant) -> u64 {
        let since = time.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX - 1) + 1
    }

    /// The write times in `recent`, oldest first.
    fn times(&self, recent: &Recent) -> impl Iterator<Item = Instant> {
        let epoch = self.epoch;
        recent
            .iter()
            .filter(|stamp| **stamp != 0)
            .map(move |stamp| epoch + Duration::from_nanos(stamp - 1))
    }

    /// Ok if another write to `target` is allowed at `now`; else how long until it is.
    pub fn check(&self, target: WriteTarget, now: Instant) -> Result<(), Duration> {
        self.recent
            .lock()
            .get(&target)
            .map_or(Ok(()), |recent| allowed(self.times(recent), now))
    }

    /// Before this process has written `target` itself: if our field manager wrote it at
    /// `last_ours` (another replica, or this operator before a restart), counts the whole
    /// budget as spent then, since how many writes that was is unknown. So a new leader
    /// does not add its 3 writes to its predecessor's within the same minute.
    pub fn seed(&self, target: WriteTarget, last_ours: Instant) {
        self.recent
            .lock()
            .entry(target)
            .or_insert([self.stamp(last_ours); MAX_WRITES]);
    }

    /// Checks and records at once (one lock: two concurrent requests cannot both take the
    /// last slot).
    pub fn take(&self, target: WriteTarget, now: Instant) -> Result<(), Duration> {
        let mut recent = self.recent.lock();
        if let Some(times) = recent.get(&target) {
            allowed(self.times(times), now)?;
        }
        self.record_locked(&mut recent, target, now);
        Ok(())
    }

    /// Records a request to `target` at `now` (the caller holds the map's lock).
    fn record_locked(
        &self,
        recent: &mut HashMap<WriteTarget, Recent>,
        target: WriteTarget,
        now: Instant,
    ) {
        let times = recent.entry(target).or_default();
        // Drop the oldest, keep the rest in order, add now at the end.
        times.rotate_left(1);
        times[MAX_WRITES - 1] = self.stamp(now);
        // Sweep entries whose every write has left the window, whenever the map has doubled
        // since the last sweep: amortised O(1) per write, and the map stays bounded by the
        // writes of about one window.
        let mut swept_at_len = self.swept_at_len.lock();
        if recent.len() >= (*swept_at_len * 2).max(1024) {
            recent.retain(|_, times| {
                self.times(times)
                    .any(|t| now.saturating_duration_since(t) < HELD_FOR)
            });
            recent.shrink_to_fit();
            *swept_at_len = recent.len();
        }
    }

    /// Number of objects with a write in memory (for tests and debugging).
    pub fn tracked(&self) -> usize {
        self.recent.lock().len()
    }
}

/// When our field manager `manager` last wrote an object (its managedFields entry for
/// `subresource`, None for the main resource), on this process's clock, if within the
/// window: see [`RepairBudget::seed`].
pub fn last_written_by_us(
    fields: Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry]>,
    manager: &str,
    subresource: Option<&str>,
    now: Instant,
) -> Option<Instant> {
    within_window(latest_write(fields?, manager, subresource)?, now)
}

/// The time of `manager`'s latest managedFields entry for `subresource` (None for the main
/// resource), as the API server wrote it.
pub fn latest_write(
    fields: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry],
    manager: &str,
    subresource: Option<&str>,
) -> Option<k8s_openapi::jiff::Timestamp> {
    fields
        .iter()
        .filter(|entry| entry.manager.as_deref() == Some(manager))
        .filter(|entry| entry.subresource.as_deref().filter(|s| !s.is_empty()) == subresource)
        .filter_map(|entry| entry.time.as_ref())
        .map(|time| time.0)
        .max()
}

/// A write at wall-clock time `last` on this process's clock, if within the window.
pub fn within_window(last: k8s_openapi::jiff::Timestamp, now: Instant) -> Option<Instant> {
    let wall_now = k8s_openapi::jiff::Timestamp::now();
    // A time in the future (clock skew) counts as now.
    let age = Duration::try_from(wall_now.duration_since(last)).unwrap_or_default();
    (age < HELD_FOR).then(|| now.checked_sub(age).unwrap_or(now))
}

/// Ok if `times` leave room for one more write at `now`; else how long until they do.
fn allowed(times: impl Iterator<Item = Instant>, now: Instant) -> Result<(), Duration> {
    let in_window: Vec<Instant> = times
        .filter(|t| now.saturating_duration_since(*t) < HELD_FOR)
        .collect();
    match in_window.first() {
        Some(oldest) if in_window.len() >= MAX_WRITES => {
            Err(HELD_FOR.saturating_sub(now.saturating_duration_since(*oldest)))
        }
        _ => Ok(()),
    }
}

/// A mutating request refused because its object's write budget is spent.
#[derive(Debug, thiserror::Error)]
// Stable text (no countdown): it can end up in status, which is written only on change.
#[error(
    "{method} {path} refused: {MAX_WRITES} requests to this object within {} s already \
     (another writer keeps changing it, or the API server keeps failing them); retried once \
     the oldest is a minute old",
    WINDOW.as_secs()
)]
pub struct BudgetSpent {
    method: http::Method,
    path: String,
    pub retry_in: Duration,
}

/// Counts every mutating request per object and refuses one beyond the budget.
#[derive(Debug, Clone)]
pub struct WriteBudgetLayer {
    budget: Arc<RepairBudget>,
}

impl WriteBudgetLayer {
    pub fn new(budget: Arc<RepairBudget>) -> Self {
        Self { budget }
    }
}

impl<S> Layer<S> for WriteBudgetLayer {
    type Service = Budgeted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Budgeted {
            inner,
            budget: self.budget.clone(),
        }
    }
}

/// The budgeted service (see [`WriteBudgetLayer`]).
#[derive(Debug, Clone)]
pub struct Budgeted<S> {
    inner: S,
    budget: Arc<RepairBudget>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> Service<http::Request<B>> for Budgeted<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
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
        let path = request.uri().path();
        if mutating && resource_of(path) != Some("events") && !is_dry_run(request.uri()) {
            // A create's URL names its collection: the request carries the object it creates.
            let target = request
                .extensions()
                .get::<WriteTarget>()
                .copied()
                .unwrap_or_else(|| WriteTarget::at_path(path));
            if let Err(retry_in) = self.budget.take(target, Instant::now()) {
                let refused = BudgetSpent {
                    method: request.method().clone(),
                    path: path.to_string(),
                    retry_in,
                };
                warn!(error = %refused, "write refused by the per-object write budget");
                return Box::pin(std::future::ready(Err(refused.into())));
            }
        }
        let call = self.inner.call(request);
        Box::pin(async move { call.await.map_err(Into::into) })
    }
}

/// A dry run (`dryRun=All`, the Pod Security preview) persists nothing and cannot fight
/// another writer: it spends no write budget (the preview has its own bound).
fn is_dry_run(uri: &http::Uri) -> bool {
    uri.query()
        .is_some_and(|query| query.split('&').any(|pair| pair == "dryRun=All"))
}

/// The budget refusal behind a client error, if that is what it is.
pub fn budget_spent(error: &kube::Error) -> Option<&BudgetSpent> {
    match error {
        kube::Error::Service(source) => source.downcast_ref::<BudgetSpent>(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_writes_a_minute_then_a_pause_until_the_oldest_leaves_the_window() {
        let budget = RepairBudget::default();
        let target = WriteTarget::at_path(
            "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/deny-all",
        );
        let start = Instant::now();
        for second in [0, 10, 20] {
            let at = start + Duration::from_secs(second);
            assert_eq!(budget.check(target, at), Ok(()), "write at {second}s");
            assert_eq!(budget.take(target, at), Ok(()));
        }
        let at_30 = start + Duration::from_secs(30);
        assert_eq!(budget.check(target, at_30), Err(Duration::from_secs(32)));
        // Other objects are not affected.
        let other = WriteTarget::at_path(
            "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/allow-dns",
        );
        assert_eq!(budget.check(other, at_30), Ok(()));
        // Once the first write is a minute (and the margin) old, one more is allowed.
        let at_62 = start + Duration::from_secs(62);
        assert_eq!(budget.check(target, at_62), Ok(()));
        assert_eq!(budget.take(target, at_62), Ok(()));
        assert_eq!(
            budget.check(target, start + Duration::from_secs(63)),
            Err(Duration::from_secs(9))
        );
    }

    #[test]
    fn any_sixty_seconds_hold_at_most_three_writes() {
        // A writer that retries as soon as the budget allows, for ten minutes.
        let budget = RepairBudget::default();
        let target =
            WriteTarget::at_path("/apis/rbac.authorization.k8s.io/v1/namespaces/a/roles/b");
        let start = Instant::now();
        let mut writes = Vec::new();
        for tenth in 0..6000 {
            let now = start + Duration::from_millis(tenth * 100);
            if budget.take(target, now).is_ok() {
                writes.push(now);
            }
        }
        for (i, first) in writes.iter().enumerate() {
            let in_window = writes[i..]
                .iter()
                .take_while(|t| t.duration_since(*first) < WINDOW)
                .count();
            assert!(
                in_window <= MAX_WRITES,
                "{in_window} writes within a minute"
            );
        }
        assert!(
            writes.len() >= 30,
            "it still repairs: {} writes",
            writes.len()
        );
    }

    #[test]
    fn expired_entries_are_swept() {
        let budget = RepairBudget::default();
        let start = Instant::now();
        for i in 0..2000 {
            let _ = budget.take(WriteTarget::at_path(&format!("/r/ns/{i}")), start);
        }
        let later = start + HELD_FOR + Duration::from_secs(1);
        for i in 0..1100 {
            let _ = budget.take(WriteTarget::at_path(&format!("/r/other/{i}")), later);
        }
        assert!(
            budget.tracked() <= 1100,
            "old entries kept: {}",
            budget.tracked()
        );
    }

    fn request(method: http::Method, path: &'static str) -> http::Request<()> {
        let mut request = http::Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = http::Uri::from_static(path);
        request
    }

    #[tokio::test]
    async fn a_create_counts_for_the_object_it_names_not_its_collection() {
        use tower::ServiceExt;
        let wire = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::StatusCode::CREATED)
        });
        let budget = Arc::new(RepairBudget::default());
        let service = WriteBudgetLayer::new(budget.clone()).layer(wire);
        let collection = "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies";
        let create = |name: &str| {
            let mut create = request(http::Method::POST, collection);
            create
                .extensions_mut()
                .insert(WriteTarget::at_path(&format!("{collection}/{name}")));
            create
        };
        // Four creates into one collection: four objects, none refused.
        for name in ["a", "b", "c", "d"] {
            assert!(
                service.clone().oneshot(create(name)).await.is_ok(),
                "{name}"
            );
        }
        let object = WriteTarget::at_path(&format!("{collection}/a"));
        let now = Instant::now();
        assert!(budget.take(object, now).is_ok() && budget.take(object, now).is_ok());
        assert!(
            budget.check(object, now).is_err(),
            "the create counted against the object: its third write spends the budget"
        );
    }

    #[tokio::test]
    async fn every_attempt_counts_and_the_fourth_in_a_minute_is_refused() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tower::ServiceExt;
        let sent = Arc::new(AtomicUsize::new(0));
        // Every attempt fails on the wire (409, 429, ...): failed ones count too.
        let wire = {
            let sent = sent.clone();
            tower::service_fn(move |_: http::Request<()>| {
                sent.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, std::convert::Infallible>(http::StatusCode::CONFLICT) }
            })
        };
        let service = WriteBudgetLayer::new(Arc::default()).layer(wire);
        let status = "/apis/kube-baseline.dev/v1alpha1/securitybaselines/b/status";
        for method in [http::Method::PATCH, http::Method::PUT, http::Method::PATCH] {
            let answer = service.clone().oneshot(request(method, status)).await;
            assert!(answer.is_ok());
        }
        let refused = service
            .clone()
            .oneshot(request(http::Method::DELETE, status))
            .await
            .expect_err("a fourth write within the minute");
        let spent = refused
            .downcast_ref::<BudgetSpent>()
            .expect("a BudgetSpent");
        assert!(spent.retry_in <= HELD_FOR);
        assert_eq!(sent.load(Ordering::SeqCst), 3, "requests on the wire");
        // Reads, other objects and Events are not limited.
        let other = "/apis/kube-baseline.dev/v1alpha1/securitybaselines/b";
        assert!(
            service
                .clone()
                .oneshot(request(http::Method::GET, status))
                .await
                .is_ok()
        );
        assert!(
            service
                .clone()
                .oneshot(request(http::Method::PATCH, other))
                .await
                .is_ok()
        );
        for _ in 0..5 {
            let event = request(
                http::Method::POST,
                "/apis/events.k8s.io/v1/namespaces/events/events",
            );
            assert!(service.clone().oneshot(event).await.is_ok());
        }
    }

    #[test]
    fn paths_name_their_resource() {
        assert_eq!(resource_of("/api/v1/namespaces/a"), Some("namespaces"));
        assert_eq!(
            resource_of("/api/v1/namespaces/events/configmaps/x"),
            Some("configmaps")
        );
        assert_eq!(
            resource_of("/apis/events.k8s.io/v1/namespaces/a/events"),
            Some("events")
        );
        assert_eq!(
            resource_of("/api/v1/namespaces/a/events/e1"),
            Some("events")
        );
        assert_eq!(
            resource_of("/apis/kube-baseline.dev/v1alpha1/securitybaselines/b/status"),
            Some("securitybaselines")
        );
        assert_eq!(resource_of("/healthz"), None);
    }

    #[test]
    fn a_write_from_before_the_budget_was_made_is_held_for_its_whole_window() {
        let budget = RepairBudget::default();
        let target = WriteTarget::at_path("/api/v1/namespaces/shop");
        let made = Instant::now();
        let before = made
            .checked_sub(Duration::from_secs(30))
            .expect("an uptime");
        budget.seed(target, before);
        assert_eq!(budget.take(target, made), Err(Duration::from_secs(32)));
        assert_eq!(budget.take(target, before + HELD_FOR), Ok(()));
    }

    #[test]
    fn a_predecessors_recent_write_spends_the_budget_until_a_minute_after_it() {
        let budget = RepairBudget::default();
        let target =
            WriteTarget::at_path("/apis/kube-baseline.dev/v1alpha1/securitybaselines/b/status");
        let start = Instant::now();
        budget.seed(target, start);
        assert_eq!(
            budget.take(target, start + Duration::from_secs(20)),
            Err(Duration::from_secs(42))
        );
        assert_eq!(budget.take(target, start + HELD_FOR), Ok(()));
        // Our own records win over a later seed.
        budget.seed(target, start + HELD_FOR);
        assert_eq!(budget.take(target, start + HELD_FOR), Ok(()));
    }

    #[test]
    fn a_fourth_write_a_minute_after_the_first_waits_for_the_margin() {
        // The first may have reached the API server late: a minute on our clock is not yet
        // a minute on the server's.
        let budget = RepairBudget::default();
        let target =
            WriteTarget::at_path("/apis/networking.k8s.io/v1/namespaces/a/networkpolicies/b");
        let start = Instant::now();
        for second in [0, 1, 3] {
            assert_eq!(
                budget.take(target, start + Duration::from_secs(second)),
                Ok(())
            );
        }
        assert_eq!(
            budget.take(target, start + WINDOW),
            Err(Duration::from_secs(2))
        );
        assert_eq!(budget.take(target, start + HELD_FOR), Ok(()));
    }
}

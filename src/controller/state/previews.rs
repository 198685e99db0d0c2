//! What the Pod Security previews found, per namespace and target enforce labels, and
//! when that stops being true: a pod of the namespace appeared, went, or changed its spec.
//!
//! A namespace whose latest preview was not clean is *watched*: the pod feed
//! (`feeds::pods`) then watches pod metadata and bumps the namespace's pod epoch on each
//! relevant change, which makes the remembered preview stale and re-plans the namespace.
//! No namespace watched, no pod watch. Nothing here is persisted: after a restart each
//! gated namespace is previewed once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::domain::pod_security::preview::Preview;

/// The enforce labels (`enforce`, `enforce-version`) a preview was made for.
pub type Target = BTreeMap<String, String>;

/// A pod change settles for this long before the namespace is previewed again: a rollout
/// changes several pods at once, and the API server's own pod cache (which PodSecurity
/// admission reads) lags its watch by a moment.
pub const SETTLE: Duration = Duration::from_secs(1);
/// An Unknown preview (the API server checked only some pods) is retried after this,
/// doubling up to [`MAX_UNKNOWN_BACKOFF`], even without a pod change.
pub const FIRST_UNKNOWN_BACKOFF: Duration = Duration::from_secs(30);
pub const MAX_UNKNOWN_BACKOFF: Duration = Duration::from_secs(600);

/// What is known of a namespace's preview for one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Still true: no relevant pod change since.
    Current(Preview),
    /// Pods changed since (or an Unknown's retry is due): preview again, once `settle` has
    /// passed (None: now). Until then `last` is what is known.
    Stale {
        last: Preview,
        settle: Option<Duration>,
    },
    /// Never previewed.
    Missing,
}

#[derive(Debug)]
struct Remembered {
    /// Shared by every namespace previewed for the same labels (see [`Inner::targets`]).
    target: Arc<Target>,
    preview: Preview,
    epoch: u64,
    at: Instant,
    /// For an Unknown: when to retry regardless of pod changes.
    retry: Duration,
}

#[derive(Debug, Default)]
struct PodEpoch {
    epoch: u64,
    bumped_at: Option<Instant>,
    /// uid → metadata.generation of the namespace's pods, as the pod feed saw them.
    pods: HashMap<String, Option<i64>>,
}

#[derive(Debug, Default)]
struct Inner {
    remembered: HashMap<String, Vec<Remembered>>,
    pods: HashMap<String, PodEpoch>,
    /// How many namespaces are watched, kept as previews change: counting them on every
    /// change would walk every namespace, 10,000 times in a 10,000-namespace converge.
    watched: usize,
    /// One copy of each target: a rollout previews every namespace for the same labels.
    targets: Vec<Arc<Target>>,
}

/// Distinct targets held before the ones no preview uses any more are dropped.
const TARGETS_SWEEP: usize = 16;

impl Inner {
    fn shared_target(&mut self, target: Target) -> Arc<Target> {
        if let Some(shared) = self.targets.iter().find(|t| ***t == target) {
            return shared.clone();
        }
        if self.targets.len() >= TARGETS_SWEEP {
            self.targets.retain(|t| Arc::strong_count(t) > 1);
        }
        let shared = Arc::new(target);
        self.targets.push(shared.clone());
        shared
    }
}

/// The previews of every namespace, shared by the namespace reconciler and the pod feed.
#[derive(Debug)]
pub struct Previews {
    inner: Mutex<Inner>,
    /// Whether any namespace is watched (the pod feed runs only then).
    watching: tokio::sync::watch::Sender<bool>,
}

impl Default for Previews {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            watching: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl Previews {
    /// The namespace's preview for `target`, as of `now`.
    pub fn lookup(&self, namespace: &str, target: &Target, now: Instant) -> Lookup {
        let inner = self.inner.lock();
        let Some(remembered) = inner
            .remembered
            .get(namespace)
            .and_then(|all| all.iter().find(|r| *r.target == *target))
        else {
            return Lookup::Missing;
        };
        let pods = inner.pods.get(namespace);
        let epoch = pods.map_or(0, |p| p.epoch);
        let retry_due = matches!(remembered.preview, Preview::Unknown(_))
            && now.duration_since(remembered.at) >= remembered.retry;
        if epoch == remembered.epoch && !retry_due {
            return Lookup::Current(remembered.preview.clone());
        }
        let settle = pods
            .and_then(|p| p.bumped_at)
            .map(|at| SETTLE.saturating_sub(now.duration_since(at)))
            .filter(|wait| !wait.is_zero());
        Lookup::Stale {
            last: remembered.preview.clone(),
            settle,
        }
    }

    /// Remembers the preview made (at `now`) for `target`, at the namespace's pod epoch
    /// read before the dry run was sent (`epoch`): a pod change during the dry run leaves
    /// it stale.
    pub fn remember(
        &self,
        namespace: &str,
        target: Target,
        preview: Preview,
        epoch: u64,
        now: Instant,
    ) {
        let mut inner = self.inner.lock();
        let was_watched = is_watched(&inner, namespace);
        let target = inner.shared_target(target);
        let all = inner
            .remembered
            .entry(namespace.to_owned())
            .or_insert_with(|| Vec::with_capacity(1));
        let retry = match all.iter().find(|r| r.target == target) {
            Some(previous) if matches!(previous.preview, Preview::Unknown(_)) => {
                (previous.retry * 2).min(MAX_UNKNOWN_BACKOFF)
            }
            _ => FIRST_UNKNOWN_BACKOFF,
        };
        all.retain(|r| r.target != target);
        all.push(Remembered {
            target,
            preview,
            epoch,
            at: now,
            retry,
        });
        self.watch_changed(&mut inner, namespace, was_watched);
    }

    /// The namespace's pod epoch now (read before a dry run).
    pub fn epoch(&self, namespace: &str) -> u64 {
        self.inner.lock().pods.get(namespace).map_or(0, |p| p.epoch)
    }

    /// When an Unknown preview of `target` is retried without a pod change.
    pub fn retry_in(&self, namespace: &str, target: &Target, now: Instant) -> Option<Duration> {
        let inner = self.inner.lock();
        let remembered = inner
            .remembered
            .get(namespace)?
            .iter()
            .find(|r| *r.target == *target)?;
        matches!(remembered.preview, Preview::Unknown(_)).then(|| {
            remembered
                .retry
                .saturating_sub(now.duration_since(remembered.at))
        })
    }

    /// Keeps only the previews of `targets` (what the namespace still needs); a namespace
    /// that needs none is no longer watched.
    pub fn keep_only(&self, namespace: &str, targets: &[&Target]) {
        let mut inner = self.inner.lock();
        let was_watched = is_watched(&inner, namespace);
        let Some(all) = inner.remembered.get_mut(namespace) else {
            return;
        };
        all.retain(|r| targets.contains(&&*r.target));
        if all.is_empty() {
            inner.remembered.remove(namespace);
        }
        self.watch_changed(&mut inner, namespace, was_watched);
    }

    /// Forgets a deleted namespace.
    pub fn forget_namespace(&self, namespace: &str) {
        let mut inner = self.inner.lock();
        let was_watched = is_watched(&inner, namespace);
        inner.remembered.remove(namespace);
        self.watch_changed(&mut inner, namespace, was_watched);
        inner.pods.remove(namespace);
    }

    /// Whether pod changes in `namespace` matter (its latest preview was not clean).
    pub fn watched(&self, namespace: &str) -> bool {
        is_watched(&self.inner.lock(), namespace)
    }

    /// How many namespaces are watched.
    pub fn watched_count(&self) -> usize {
        self.inner.lock().watched
    }

    /// Follows whether any namespace is watched (the pod feed waits on it).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.watching.subscribe()
    }

    /// A pod seen (added or updated) by the pod feed: whether it changes what a preview of
    /// its namespace would say (a new pod, or a new spec generation). Pods of namespaces
    /// that are not watched are not kept.
    pub fn pod_seen(
        &self,
        namespace: &str,
        uid: &str,
        generation: Option<i64>,
        now: Instant,
    ) -> bool {
        let mut inner = self.inner.lock();
        if !is_watched(&inner, namespace) {
            return false;
        }
        let pods = inner.pods.entry(namespace.to_owned()).or_default();
        if pods.pods.get(uid) == Some(&generation) {
            return false;
        }
        pods.pods.insert(uid.to_owned(), generation);
        pods.epoch += 1;
        pods.bumped_at = Some(now);
        true
    }

    /// A pod gone: the namespace's previews are stale if it is watched.
    pub fn pod_gone(&self, namespace: &str, uid: &str, now: Instant) -> bool {
        let mut inner = self.inner.lock();
        if !is_watched(&inner, namespace) {
            return false;
        }
        let pods = inner.pods.entry(namespace.to_owned()).or_default();
        pods.pods.remove(uid);
        pods.epoch += 1;
        pods.bumped_at = Some(now);
        true
    }

    /// A pod re-list ended, having sent `relisted` (uids by namespace, of watched
    /// namespaces): pods held that it did not send were deleted while the watch was broken.
    /// Forgets them; the namespaces whose previews became stale by it.
    pub fn pods_relisted(
        &self,
        relisted: &HashMap<String, HashSet<String>>,
        now: Instant,
    ) -> Vec<String> {
        let mut inner = self.inner.lock();
        let mut stale = Vec::new();
        for (namespace, pods) in &mut inner.pods {
            let sent = relisted.get(namespace);
            let before = pods.pods.len();
            pods.pods
                .retain(|uid, _| sent.is_some_and(|sent| sent.contains(uid)));
            if pods.pods.len() != before {
                pods.epoch += 1;
                pods.bumped_at = Some(now);
                stale.push(namespace.clone());
            }
        }
        stale
    }

    /// The pod feed stopped (nothing watched): what it knew of pods is gone, so every
    /// remembered preview becomes stale should the feed start again.
    pub fn pods_unwatched(&self) {
        let mut inner = self.inner.lock();
        for pods in inner.pods.values_mut() {
            pods.pods.clear();
            pods.epoch += 1;
        }
    }

    /// Keeps the watched count (and whether any namespace is watched) after `namespace`'s
    /// previews changed; a namespace no longer watched forgets its pods.
    fn watch_changed(&self, inner: &mut Inner, namespace: &str, was_watched: bool) {
        let watched = is_watched(inner, namespace);
        match (was_watched, watched) {
            (false, true) => inner.watched += 1,
            (true, false) => {
                inner.watched = inner.watched.saturating_sub(1);
                inner.pods.remove(namespace);
            }
            _ => {}
        }
        let any = inner.watched > 0;
        self.watching.send_if_modified(|watching| {
            let changed = *watching != any;
            *watching = any;
            changed
        });
    }
}

fn is_watched(inner: &Inner, namespace: &str) -> bool {
    inner
        .remembered
        .get(namespace)
        .is_some_and(|all| all.iter().any(|r| r.preview != Preview::Clean))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(level: &str) -> Target {
        BTreeMap::from([(
            "pod-security.kubernetes.io/enforce".to_owned(),
            level.to_owned(),
        )])
    }

    fn violations() -> Preview {
        Preview::Violations {
            level: "restricted:latest".to_owned(),
            pods_in_violation: 1,
            pods: Vec::new(),
            capped: None,
        }
    }

    #[test]
    fn a_violating_preview_is_current_until_a_pod_of_its_namespace_changes() {
        let previews = Previews::default();
        let now = Instant::now();
        let restricted = target("restricted");
        assert_eq!(previews.lookup("a", &restricted, now), Lookup::Missing);
        assert!(!*previews.subscribe().borrow());

        previews.remember(
            "a",
            restricted.clone(),
            violations(),
            previews.epoch("a"),
            now,
        );
        assert!(previews.watched("a"));
        assert!(*previews.subscribe().borrow(), "a pod watch is wanted");
        assert_eq!(
            previews.lookup("a", &restricted, now),
            Lookup::Current(violations())
        );
        // Another namespace's pods, and a status-only update, change nothing.
        assert!(!previews.pod_seen("b", "uid-b", Some(1), now));
        assert!(previews.pod_seen("a", "uid-1", Some(1), now));
        previews.remember(
            "a",
            restricted.clone(),
            violations(),
            previews.epoch("a"),
            now,
        );
        assert!(!previews.pod_seen("a", "uid-1", Some(1), now));
        assert_eq!(
            previews.lookup("a", &restricted, now),
            Lookup::Current(violations())
        );
        // The pod goes: stale, but only once the change has settled.
        assert!(previews.pod_gone("a", "uid-1", now));
        assert_eq!(
            previews.lookup("a", &restricted, now),
            Lookup::Stale {
                last: violations(),
                settle: Some(SETTLE)
            }
        );
        assert_eq!(
            previews.lookup("a", &restricted, now + SETTLE),
            Lookup::Stale {
                last: violations(),
                settle: None
            }
        );
        // A clean preview ends the watch.
        previews.remember(
            "a",
            restricted.clone(),
            Preview::Clean,
            previews.epoch("a"),
            now,
        );
        assert!(!previews.watched("a"));
        assert!(!*previews.subscribe().borrow());
        assert!(!previews.pod_seen("a", "uid-2", Some(1), now));
    }

    #[test]
    fn a_pod_change_during_the_dry_run_leaves_its_result_stale() {
        let previews = Previews::default();
        let now = Instant::now();
        let restricted = target("restricted");
        previews.remember("a", restricted.clone(), violations(), 0, now);
        let before = previews.epoch("a");
        assert!(previews.pod_seen("a", "uid-1", Some(1), now));
        previews.remember("a", restricted.clone(), violations(), before, now);
        assert!(matches!(
            previews.lookup("a", &restricted, now + SETTLE),
            Lookup::Stale { .. }
        ));
    }

    #[test]
    fn the_watched_count_follows_each_namespace_in_and_out() {
        let previews = Previews::default();
        let watching = previews.subscribe();
        let now = Instant::now();
        let restricted = target("restricted");
        previews.remember("a", restricted.clone(), violations(), 0, now);
        previews.remember("b", restricted.clone(), violations(), 0, now);
        // Again for the same namespace: still one namespace.
        previews.remember("b", restricted.clone(), violations(), 0, now);
        previews.remember("c", restricted.clone(), Preview::Clean, 0, now);
        assert_eq!(previews.watched_count(), 2);
        assert!(*watching.borrow());
        assert!(previews.pod_seen("a", "pod-1", Some(1), now));
        // "a" turns clean: unwatched, its pods forgotten.
        previews.remember("a", restricted.clone(), Preview::Clean, 1, now);
        assert_eq!(previews.watched_count(), 1);
        assert!(!previews.pod_seen("a", "pod-1", Some(1), now));
        assert!(!previews.inner.lock().pods.contains_key("a"));
        previews.keep_only("c", &[]);
        assert_eq!(previews.watched_count(), 1);
        previews.forget_namespace("b");
        assert_eq!(previews.watched_count(), 0);
        assert!(!*watching.borrow());
        // Every namespace previewed for the same labels shares one copy of them.
        assert_eq!(previews.inner.lock().targets.len(), 1);
    }

    #[test]
    fn an_unknown_preview_is_retried_with_a_doubling_backoff() {
        let previews = Previews::default();
        let now = Instant::now();
        let restricted = target("restricted");
        let unknown = Preview::Unknown("capped".to_owned());
        previews.remember("a", restricted.clone(), unknown.clone(), 0, now);
        assert_eq!(
            previews.retry_in("a", &restricted, now),
            Some(FIRST_UNKNOWN_BACKOFF)
        );
        assert!(matches!(
            previews.lookup("a", &restricted, now),
            Lookup::Current(_)
        ));
        let due = now + FIRST_UNKNOWN_BACKOFF;
        assert!(matches!(
            previews.lookup("a", &restricted, due),
            Lookup::Stale { settle: None, .. }
        ));
        previews.remember("a", restricted.clone(), unknown.clone(), 0, due);
        assert_eq!(
            previews.retry_in("a", &restricted, due),
            Some(FIRST_UNKNOWN_BACKOFF * 2)
        );
        for _ in 0..10 {
            previews.remember("a", restricted.clone(), unknown.clone(), 0, due);
        }
        assert_eq!(
            previews.retry_in("a", &restricted, due),
            Some(MAX_UNKNOWN_BACKOFF)
        );
    }

    #[test]
    fn previews_no_longer_needed_are_dropped_and_unwatched() {
        let previews = Previews::default();
        let now = Instant::now();
        previews.remember("a", target("restricted"), violations(), 0, now);
        previews.remember("a", target("baseline"), violations(), 0, now);
        previews.keep_only("a", &[&target("baseline")]);
        assert_eq!(
            previews.lookup("a", &target("restricted"), now),
            Lookup::Missing
        );
        assert!(previews.watched("a"));
        previews.keep_only("a", &[]);
        assert!(!previews.watched("a"));
        assert!(!*previews.subscribe().borrow());
        assert_eq!(previews.watched_count(), 0);
    }
}

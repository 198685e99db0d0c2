//! Re-planning every namespace after a baseline's spec changes, without making a namespace
//! created meanwhile wait behind all of them.
//!
//! kube-runtime's queue is first in, first out. Queuing all 10,000 namespaces at once (its
//! `reconcile_all_on`) put a namespace created a moment later behind every one of them:
//! about a minute unprotected at 10,000 namespaces. Here the re-plan is a backlog released
//! a few at a time: at most [`window`](pace) of its namespaces wait in the queue, and one
//! more is released each time one of them starts, so a new namespace's watch event joins a
//! short queue. A namespace whose reconcile started after the change (its own event came
//! first) already reads the new spec and is not re-planned again.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::Notify;

/// When each namespace's latest reconcile started, on a counter that also stamps baseline
/// spec changes: a namespace needs re-planning for a change if its latest reconcile
/// started before the change was seen.
#[derive(Debug, Default)]
pub struct ReconcileClock {
    ticks: AtomicU64,
    started: Mutex<HashMap<Box<str>, u64>>,
    /// Raised when a reconcile starts (the pacer releases one more).
    start: Notify,
}

impl ReconcileClock {
    /// The current tick: a change stamped with it is seen by every reconcile that starts
    /// later. Changes are stamped after the baseline store has them, and a reconcile reads
    /// the store after [`ReconcileClock::starting`], so a later tick means the new spec.
    pub fn now(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::SeqCst)
    }

    /// Records that a reconcile of `namespace` starts now.
    pub fn starting(&self, namespace: &str) {
        let tick = self.now();
        self.started.lock().insert(namespace.into(), tick);
        self.start.notify_one();
    }

    /// Whether `namespace`'s latest reconcile started before `change` (or never did).
    pub fn started_before(&self, namespace: &str, change: u64) -> bool {
        self.started
            .lock()
            .get(namespace)
            .is_none_or(|started| *started < change)
    }

    /// Whether no reconcile of `namespace` has started in this process (a new namespace).
    pub fn never_started(&self, namespace: &str) -> bool {
        !self.started.lock().contains_key(namespace)
    }

    /// Forgets a namespace that is gone.
    pub fn forget(&self, namespace: &str) {
        self.started.lock().remove(namespace);
    }
}

/// How long the pacer waits for a released namespace to start before releasing more
/// anyway (one deleted meanwhile never starts).
const STALL: Duration = Duration::from_secs(2);

/// Turns spec changes into namespace re-plans sent to `out`, at most `window` of them
/// waiting to start at any time. `namespaces` lists the namespaces to re-plan (all of the
/// store's), in the order they are to be released. Ends when `spec_changes` ends or `out`
/// is closed.
pub async fn pace(
    clock: &ReconcileClock,
    spec_changes: impl Stream<Item = ()>,
    namespaces: impl Fn() -> Vec<String>,
    out: UnboundedSender<String>,
    window: usize,
) {
    let window = window.max(1);
    let mut spec_changes = std::pin::pin!(spec_changes);
    // (namespace, the change it must see), in release order.
    let mut backlog: VecDeque<(String, u64)> = VecDeque::new();
    let mut waiting: Vec<(String, u64)> = Vec::new();
    loop {
        waiting.retain(|(namespace, change)| clock.started_before(namespace, *change));
        while waiting.len() < window {
            let Some((namespace, change)) = backlog.pop_front() else {
                break;
            };
            if !clock.started_before(&namespace, change) {
                continue;
            }
            if out.unbounded_send(namespace.clone()).is_err() {
                return;
            }
            waiting.push((namespace, change));
        }
        tokio::select! {
            change = spec_changes.next() => {
                if change.is_none() {
                    return;
                }
                let change = clock.now();
                let all = namespaces();
                // Every namespace must see this change, the ones the previous backlog had
                // not reached yet included: the new backlog replaces it.
                backlog = all.into_iter().map(|namespace| (namespace, change)).collect();
                for (_, seen) in &mut waiting {
                    *seen = change;
                }
            }
            () = clock.start.notified() => {}
            () = tokio::time::sleep(STALL), if !waiting.is_empty() => waiting.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::channel::mpsc;

    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("ns-{i:03}")).collect()
    }

    /// A running pacer over `n` namespaces with a window of 8, and its ends.
    struct Pacer {
        clock: std::sync::Arc<ReconcileClock>,
        changes: mpsc::UnboundedSender<()>,
        released: mpsc::UnboundedReceiver<String>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Pacer {
        fn start(n: usize) -> Self {
            let clock = std::sync::Arc::new(ReconcileClock::default());
            let (changes, spec_changes) = mpsc::unbounded::<()>();
            let (out, released) = mpsc::unbounded();
            let task = {
                let clock = clock.clone();
                tokio::spawn(async move { pace(&clock, spec_changes, || names(n), out, 8).await })
            };
            Self {
                clock,
                changes,
                released,
                task,
            }
        }

        fn spec_change(&self) {
            self.changes.unbounded_send(()).unwrap();
        }

        /// What the pacer has released since the last call, after letting it run.
        async fn released(&mut self) -> Vec<String> {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut got = Vec::new();
            while let Ok(name) = self.released.try_recv() {
                got.push(name);
            }
            got
        }

        async fn stop(self) {
            drop(self.changes);
            self.task.await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn releases_the_backlog_as_reconciles_start() {
        let mut pacer = Pacer::start(100);
        pacer.spec_change();
        assert_eq!(
            pacer.released().await,
            names(8),
            "only a window of the 100 is queued"
        );

        // Two of them start: two more are released, in order.
        pacer.clock.starting("ns-000");
        pacer.clock.starting("ns-001");
        assert_eq!(pacer.released().await, vec!["ns-008", "ns-009"]);

        // A namespace reconciled for its own reasons after the change is not re-planned.
        pacer.clock.starting("ns-010");
        pacer.clock.starting("ns-002");
        assert_eq!(pacer.released().await, vec!["ns-011"]);

        // A released namespace that never starts (deleted) does not stall the backlog.
        tokio::time::sleep(STALL + Duration::from_secs(1)).await;
        assert_eq!(pacer.released().await.len(), 8);
        pacer.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_change_re_plans_everyone_again() {
        let mut pacer = Pacer::start(3);
        pacer.spec_change();
        assert_eq!(pacer.released().await, names(3));
        for name in names(3) {
            pacer.clock.starting(&name);
        }
        assert!(
            pacer.released().await.is_empty(),
            "all started after the change"
        );

        pacer.spec_change();
        assert_eq!(pacer.released().await, names(3));
        pacer.stop().await;
    }

    #[test]
    fn a_reconcile_that_started_before_a_change_must_run_again() {
        let clock = ReconcileClock::default();
        clock.starting("a");
        let change = clock.now();
        assert!(clock.started_before("a", change));
        assert!(clock.started_before("never-reconciled", change));
        clock.starting("a");
        assert!(!clock.started_before("a", change));
        clock.forget("a");
        assert!(clock.started_before("a", change));
    }
}

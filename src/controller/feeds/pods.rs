//! Pod changes in namespaces whose Pod Security preview found violations (or could not
//! decide): a Gated namespace raises enforce once its pods pass, and a recorded violation
//! goes once its pods do. Pod *metadata* only, and only while some namespace is watched
//! (`state::previews`): with no such namespace there is no pod watch at all. Events of
//! other namespaces are dropped unstored; a status-only update (no new
//! `metadata.generation`) changes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tracing::debug;

use crate::controller::feeds::initial_lists::InitialLists;
use crate::controller::feeds::lean;
use crate::controller::feeds::watches::log_and_skip;
use crate::controller::runtime::metrics::Metrics;
use crate::controller::state::namespace_store::CachedNamespace;
use crate::controller::state::previews::Previews;

type NamespaceRef = ObjectRef<CachedNamespace>;

/// The namespaces to re-plan on pod changes. The watch opens when the first namespace is
/// watched and closes when the last one is not.
pub fn namespace_triggers(
    client: &Client,
    lists: InitialLists,
    previews: Arc<Previews>,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = NamespaceRef> + Send + 'static {
    let (sender, receiver) = futures::channel::mpsc::unbounded();
    let client = client.clone();
    tokio::spawn(async move {
        let mut watching = previews.subscribe();
        loop {
            if watching.wait_for(|any| *any).await.is_err() {
                return;
            }
            debug!("a namespace's Pod Security preview found violations: watching pod metadata");
            metrics.set_pod_watches(1);
            let events = lean::watch_all::<PartialObjectMeta<Pod>>(&client, lists.config())
                .default_backoff()
                .filter_map(|result| log_and_skip(result, "Pod"));
            let mut events = std::pin::pin!(events);
            let mut feed = PodFeed::default();
            loop {
                tokio::select! {
                    event = events.next() => {
                        let Some(event) = event else { break };
                        for namespace in feed.observe(&previews, &event) {
                            if sender.unbounded_send(NamespaceRef::new(&namespace)).is_err() {
                                return;
                            }
                        }
                    }
                    closed = watching.wait_for(|any| !*any) => {
                        if closed.is_err() {
                            return;
                        }
                        break;
                    }
                }
            }
            debug!("no namespace's preview needs its pods: pod watch closed");
            metrics.set_pod_watches(0);
            previews.pods_unwatched();
        }
    });
    receiver
}

/// The pod watch's events, applied to the previews.
#[derive(Debug, Default)]
struct PodFeed {
    /// Pods of watched namespaces a re-list has sent so far (between Init and InitDone),
    /// by namespace: a pod deleted while the watch was broken sends no event, so at the
    /// re-list's end every pod held that it did not send is gone.
    relisted: Option<HashMap<String, HashSet<String>>>,
}

impl PodFeed {
    /// Applies a pod event; the namespaces to re-plan because their previews became stale.
    fn observe(
        &mut self,
        previews: &Previews,
        event: &watcher::Event<PartialObjectMeta<Pod>>,
    ) -> Vec<String> {
        let now = Instant::now();
        let (pod, gone) = match event {
            watcher::Event::Apply(pod) => (pod, false),
            watcher::Event::InitApply(pod) => {
                if let (Some(relisted), Some(namespace), Some(uid)) =
                    (&mut self.relisted, pod.namespace(), pod.uid())
                    && previews.watched(&namespace)
                {
                    relisted.entry(namespace).or_default().insert(uid);
                }
                (pod, false)
            }
            watcher::Event::Delete(pod) => (pod, true),
            watcher::Event::Init => {
                self.relisted = Some(HashMap::new());
                return Vec::new();
            }
            watcher::Event::InitDone => {
                let relisted = self.relisted.take().unwrap_or_default();
                return previews.pods_relisted(&relisted, now);
            }
        };
        let (Some(namespace), Some(uid)) = (pod.namespace(), pod.uid()) else {
            return Vec::new();
        };
        let stale = if gone || pod.metadata.deletion_timestamp.is_some() {
            previews.pod_gone(&namespace, &uid, now)
        } else {
            previews.pod_seen(&namespace, &uid, pod.metadata.generation, now)
        };
        if stale { vec![namespace] } else { Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::pod_security::preview::Preview;

    fn pod(namespace: &str, uid: &str, generation: i64) -> PartialObjectMeta<Pod> {
        let mut pod = PartialObjectMeta::<Pod>::default();
        pod.metadata.namespace = Some(namespace.to_owned());
        pod.metadata.name = Some(format!("pod-{uid}"));
        pod.metadata.uid = Some(uid.to_owned());
        pod.metadata.generation = Some(generation);
        pod
    }

    /// Previews with a violating preview remembered for each of `namespaces` (watched).
    fn watching(namespaces: &[&str]) -> Previews {
        let previews = Previews::default();
        let target = BTreeMap::from([(
            "pod-security.kubernetes.io/enforce".to_owned(),
            "restricted".to_owned(),
        )]);
        let violations = Preview::Violations {
            level: "restricted:latest".to_owned(),
            pods_in_violation: 1,
            pods: Vec::new(),
            capped: None,
        };
        for namespace in namespaces {
            previews.remember(
                namespace,
                target.clone(),
                violations.clone(),
                0,
                Instant::now(),
            );
        }
        previews
    }

    #[test]
    fn only_new_gone_or_respecced_pods_of_watched_namespaces_re_plan() {
        let previews = watching(&["gated"]);
        let mut feed = PodFeed::default();
        let mut seen = |event| feed.observe(&previews, &event).pop();
        assert_eq!(
            seen(watcher::Event::Apply(pod("other", "1", 1))),
            None,
            "not watched"
        );
        assert_eq!(
            seen(watcher::Event::InitApply(pod("gated", "2", 1))),
            Some("gated".to_owned())
        );
        // A status update: same generation.
        assert_eq!(seen(watcher::Event::Apply(pod("gated", "2", 1))), None);
        assert_eq!(
            seen(watcher::Event::Apply(pod("gated", "2", 2))),
            Some("gated".to_owned())
        );
        let mut terminating = pod("gated", "2", 2);
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert_eq!(
            seen(watcher::Event::Apply(terminating)),
            Some("gated".to_owned())
        );
        assert_eq!(
            seen(watcher::Event::Delete(pod("gated", "2", 2))),
            Some("gated".to_owned())
        );
        assert_eq!(seen(watcher::Event::InitDone), None);
    }

    #[test]
    fn a_pod_deleted_while_the_watch_was_broken_re_plans_its_namespace_at_the_relist() {
        let previews = watching(&["gated", "kept"]);
        let mut feed = PodFeed::default();
        for (namespace, uid) in [("gated", "bad"), ("gated", "good"), ("kept", "k")] {
            feed.observe(&previews, &watcher::Event::Apply(pod(namespace, uid, 1)));
        }
        let epoch = previews.epoch("gated");
        // The watch breaks, "bad" is deleted, the relist sends the others.
        assert!(feed.observe(&previews, &watcher::Event::Init).is_empty());
        for (namespace, uid) in [("gated", "good"), ("kept", "k")] {
            let resent = feed.observe(
                &previews,
                &watcher::Event::InitApply(pod(namespace, uid, 1)),
            );
            assert!(resent.is_empty(), "an unchanged pod changes nothing");
        }
        assert_eq!(
            feed.observe(&previews, &watcher::Event::InitDone),
            vec!["gated".to_owned()],
            "the namespace whose pod the relist did not send"
        );
        assert!(previews.epoch("gated") > epoch, "its previews are stale");
    }
}

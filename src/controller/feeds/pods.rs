//! Pod changes in namespaces whose Pod Security preview found violations (or could not
//! decide): a Gated namespace raises enforce once its pods pass, and a recorded violation
//! goes once its pods do. Pod *metadata* only, and only while some namespace is watched
//! (`state::previews`): with no such namespace there is no pod watch at all. Events of
//! other namespaces are dropped unstored; a status-only update (no new
//! `metadata.generation`) changes nothing.

use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::debug;

use crate::controller::feeds::initial_lists::{self, InitialLists};
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
            let events = initial_lists::watch(
                Api::<PartialObjectMeta<Pod>>::all(client.clone()),
                lists.config(),
            )
            .default_backoff()
            .filter_map(|result| log_and_skip(result, "Pod"));
            let mut events = std::pin::pin!(events);
            loop {
                tokio::select! {
                    event = events.next() => {
                        let Some(event) = event else { break };
                        if let Some(namespace) = observe(&previews, &event)
                            && sender.unbounded_send(NamespaceRef::new(&namespace)).is_err()
                        {
                            return;
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

/// Applies a pod event; the namespace to re-plan when its previews became stale.
fn observe(previews: &Previews, event: &watcher::Event<PartialObjectMeta<Pod>>) -> Option<String> {
    let now = Instant::now();
    let (pod, gone) = match event {
        watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => (pod, false),
        watcher::Event::Delete(pod) => (pod, true),
        watcher::Event::Init | watcher::Event::InitDone => return None,
    };
    let namespace = pod.namespace()?;
    let uid = pod.uid()?;
    let stale = if gone || pod.metadata.deletion_timestamp.is_some() {
        previews.pod_gone(&namespace, &uid, now)
    } else {
        previews.pod_seen(&namespace, &uid, pod.metadata.generation, now)
    };
    stale.then_some(namespace)
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

    #[test]
    fn only_new_gone_or_respecced_pods_of_watched_namespaces_re_plan() {
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
        previews.remember("gated", target, violations, 0, Instant::now());
        let seen = |event| observe(&previews, &event);
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
}

//! Ingresses for the TLS checks (`spec.tls`), controller side: one watch of every Ingress,
//! each reduced at once to `domain::tls::IngressFacts` (hosts and labels, nothing else) in
//! an index by namespace. A change that alters what is cached re-plans that namespace, whose
//! reconcile evaluates its Ingresses with `snapshot::plan_with_audit`, the composition
//! `check` uses too.

use std::sync::Arc;

use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::controller::feeds::initial_lists::InitialLists;
use crate::controller::feeds::lean;
use crate::controller::feeds::watches::log_and_skip;
use crate::controller::state::cache::NamespacedIndex;
use crate::controller::state::namespace_store::CachedNamespace;
use crate::domain::tls::IngressFacts;

type NamespaceRef = ObjectRef<CachedNamespace>;

/// Every Ingress's facts, by namespace and name.
pub type IngressIndex = NamespacedIndex<IngressFacts>;

/// Feeds `index` from a watch of every Ingress; yields the namespace of each change that
/// alters what the checks read (a status update of an Ingress changes nothing).
pub fn namespace_triggers(
    client: &Client,
    lists: InitialLists,
    index: Arc<IngressIndex>,
) -> impl Stream<Item = NamespaceRef> + Send + 'static {
    lean::watch_all::<Ingress>(client, lists.config())
        .default_backoff()
        .filter_map(|result| log_and_skip(result, "Ingress"))
        .flat_map(move |event| stream::iter(observe(&index, &event)))
}

/// Applies `event` to `index`; the namespaces to re-plan: that of a change to the cached
/// facts, and at the end of a re-list those it found without an object held there.
fn observe(index: &IngressIndex, event: &watcher::Event<Ingress>) -> Vec<NamespaceRef> {
    index
        .apply_reporting_changes(event, facts)
        .iter()
        .map(|namespace| NamespaceRef::new(namespace))
        .collect()
}

fn facts(ingress: &Ingress) -> Option<(String, String, IngressFacts)> {
    Some((
        ingress.namespace()?,
        ingress.metadata.name.clone()?,
        IngressFacts::from_ingress(ingress),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(tls_host: &str, status_ip: Option<&str>) -> Ingress {
        let mut ingress: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "1"},
            "spec": {"tls": [{"hosts": [tls_host]}], "rules": [{"host": "a.example.com"}]},
        }))
        .expect("Ingress");
        if let Some(ip) = status_ip {
            ingress.status = serde_json::from_value(serde_json::json!({
                "loadBalancer": {"ingress": [{"ip": ip}]}
            }))
            .expect("status");
        }
        ingress
    }

    #[test]
    fn only_changes_of_what_the_checks_read_re_plan_the_namespace() {
        let index = IngressIndex::default();
        let first = ingress("a.example.com", None);
        let planned = |event| -> Vec<String> {
            observe(&index, &event)
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(planned(watcher::Event::Apply(first.clone())), ["shop"]);
        assert_eq!(planned(watcher::Event::Apply(first.clone())), [""; 0]);
        // The controller writing the load balancer's address changes nothing we read.
        assert_eq!(
            planned(watcher::Event::Apply(ingress(
                "a.example.com",
                Some("10.0.0.7")
            ))),
            [""; 0]
        );
        assert_eq!(
            planned(watcher::Event::Apply(ingress("*.example.com", None))),
            ["shop"]
        );
        assert_eq!(planned(watcher::Event::Delete(first)), ["shop"]);
        assert!(index.get("shop", "web").is_none());
    }

    #[test]
    fn an_ingress_deleted_while_the_watch_was_broken_re_plans_its_namespace_at_the_relist() {
        let index = IngressIndex::default();
        let planned = |event| -> Vec<String> {
            observe(&index, &event)
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(planned(watcher::Event::Init), [""; 0]);
        assert_eq!(
            planned(watcher::Event::InitApply(ingress("a.example.com", None))),
            ["shop"]
        );
        assert_eq!(planned(watcher::Event::InitDone), [""; 0]);
        // The relist after a 410 no longer has it: its deletion was never seen.
        assert_eq!(planned(watcher::Event::Init), [""; 0]);
        assert_eq!(planned(watcher::Event::InitDone), ["shop"]);
        assert!(index.get("shop", "web").is_none());
    }
}

//! Ingresses for the TLS checks (`spec.tls`), controller side: one watch of every Ingress,
//! each reduced at once to `domain::tls::IngressFacts` (hosts and labels, nothing else) in
//! an index by namespace. A change that alters what is cached re-plans that namespace, whose
//! reconcile evaluates its Ingresses with `snapshot::plan_with_audit`, the composition
//! `check` uses too.

use std::sync::Arc;

use futures::{Stream, StreamExt, future};
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::controller::feeds::initial_lists::{self, InitialLists};
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
    initial_lists::watch(Api::<Ingress>::all(client.clone()), lists.config())
        .default_backoff()
        .filter_map(|result| log_and_skip(result, "Ingress"))
        .filter_map(move |event| future::ready(observe(&index, &event)))
}

/// Applies `event` to `index`; the namespace to re-plan when the cached facts changed.
fn observe(index: &IngressIndex, event: &watcher::Event<Ingress>) -> Option<NamespaceRef> {
    let changed_namespace = match event {
        watcher::Event::Apply(ingress) | watcher::Event::InitApply(ingress) => facts(ingress)
            .and_then(|(namespace, name, facts)| {
                (index.get(&namespace, &name).as_deref() != Some(&facts)).then_some(namespace)
            }),
        watcher::Event::Delete(ingress) => ingress.namespace(),
        watcher::Event::Init | watcher::Event::InitDone => None,
    };
    index.apply(event, facts);
    changed_namespace.map(|namespace| NamespaceRef::new(&namespace))
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
        let planned = |event| observe(&index, &event).map(|r| r.name);
        assert_eq!(
            planned(watcher::Event::Apply(first.clone())),
            Some("shop".to_owned())
        );
        assert_eq!(planned(watcher::Event::Apply(first.clone())), None);
        // The controller writing the load balancer's address changes nothing we read.
        assert_eq!(
            planned(watcher::Event::Apply(ingress(
                "a.example.com",
                Some("10.0.0.7")
            ))),
            None
        );
        assert_eq!(
            planned(watcher::Event::Apply(ingress("*.example.com", None))),
            Some("shop".to_owned())
        );
        assert_eq!(
            planned(watcher::Event::Delete(first)),
            Some("shop".to_owned())
        );
        assert!(index.get("shop", "web").is_none());
    }
}

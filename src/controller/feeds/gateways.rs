//! Gateways (Gateway API) for the TLS checks (`spec.tls.gateway`), controller side.
//!
//! The Gateway API is optional: its CRD may be absent, installed later, or removed. So one
//! watch follows the CRD `gateways.gateway.networking.k8s.io` alone (a `metadata.name` field
//! selector: the API server then authorizes the list and watch by that name, so the RBAC
//! rule can be limited with `resourceNames`), and while that CRD is established and serves
//! `v1`, a second watch follows every Gateway. Each Gateway is read from JSON on its own
//! (`GatewayFacts::from_json`): one this version cannot read is an Unknown finding on that
//! object, never a failed list. Only the facts are cached. A change re-plans the
//! Gateway's namespace; the CRD going away clears the cache and re-plans every namespace
//! that had Gateways.
//!
//! Start-up waits for the CRD's first list and, only when the CRD is there, for the first
//! list of the Gateways: without the Gateway API nothing is waited for.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt, future};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, TypeMeta};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use parking_lot::RwLock;
use tracing::info;

use crate::controller::feeds::initial_lists::{self, InitialLists};
use crate::controller::feeds::watches::log_and_skip;
use crate::controller::state::namespace_store::CachedNamespace;
use crate::domain::tls::GatewayFacts;
use crate::domain::tls::gateway::GROUP;

type NamespaceRef = ObjectRef<CachedNamespace>;

/// The CRD whose presence turns the Gateway watch on.
pub const GATEWAY_CRD: &str = "gateways.gateway.networking.k8s.io";
/// The version watched (and the one the CRD must serve).
const VERSION: &str = "v1";

type ByNamespace = BTreeMap<String, BTreeMap<String, Arc<GatewayFacts>>>;

/// Every Gateway's facts, by namespace and name; empty while the CRD is absent.
#[derive(Debug)]
pub struct GatewayCache {
    live: RwLock<ByNamespace>,
    /// Raised once the CRD was listed and, if it was there, the Gateways too.
    ready: tokio::sync::watch::Sender<bool>,
}

impl Default for GatewayCache {
    fn default() -> Self {
        Self {
            live: RwLock::default(),
            ready: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl GatewayCache {
    /// The Gateways of `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<GatewayFacts>> {
        self.live
            .read()
            .get(namespace)
            .map(|gateways| gateways.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Waits until the first lists are done (see the module doc).
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    fn mark_ready(&self) {
        self.ready.send_replace(true);
    }

    /// Stores (or, with None, removes) one Gateway; true when what is cached changed.
    fn set(&self, namespace: &str, name: &str, facts: Option<GatewayFacts>) -> bool {
        let mut live = self.live.write();
        let current = live.get(namespace).and_then(|g| g.get(name));
        if current.map(AsRef::as_ref) == facts.as_ref() {
            return false;
        }
        match facts {
            Some(facts) => {
                live.entry(namespace.to_owned())
                    .or_default()
                    .insert(name.to_owned(), Arc::new(facts));
            }
            None => {
                if let Some(gateways) = live.get_mut(namespace) {
                    gateways.remove(name);
                    if gateways.is_empty() {
                        live.remove(namespace);
                    }
                }
            }
        }
        true
    }

    /// Replaces everything (a re-list, or the CRD gone); the namespaces whose Gateways
    /// changed.
    fn replace(&self, new: ByNamespace) -> Vec<String> {
        let mut live = self.live.write();
        let namespaces: BTreeSet<&String> = live.keys().chain(new.keys()).collect();
        let changed = namespaces
            .into_iter()
            .filter(|ns| live.get(*ns) != new.get(*ns))
            .cloned()
            .collect();
        *live = new;
        changed
    }
}

/// Feeds `cache` (see the module doc); yields the namespace of each change that alters what
/// the checks read.
pub fn namespace_triggers(
    client: &Client,
    lists: InitialLists,
    cache: Arc<GatewayCache>,
) -> impl Stream<Item = NamespaceRef> + Send + 'static {
    let crds = watcher(
        Api::<CustomResourceDefinition>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={GATEWAY_CRD}")),
    )
    .default_backoff()
    .filter_map(|result| log_and_skip(result, "CustomResourceDefinition (Gateway API)"))
    .boxed();
    let client = client.clone();
    let start = move || -> GatewayEvents {
        let resource = gateway_resource();
        initial_lists::watch(
            Api::<DynamicObject>::all_with(client.clone(), &resource),
            lists.config(),
        )
        .default_backoff()
        .filter_map(|result| log_and_skip(result, "Gateway"))
        .boxed()
    };
    Feed::new(cache, Box::new(start)).run(crds)
}

/// `gateway.networking.k8s.io/v1` Gateway, for the dynamic API.
fn gateway_resource() -> ApiResource {
    ApiResource {
        group: GROUP.to_owned(),
        version: VERSION.to_owned(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: "Gateway".to_owned(),
        plural: "gateways".to_owned(),
    }
}

type GatewayEvents = BoxStream<'static, watcher::Event<DynamicObject>>;

/// The state of the two watches.
struct Feed {
    cache: Arc<GatewayCache>,
    /// Starts the Gateway watch (a function, so tests run without an API server).
    start: Box<dyn Fn() -> GatewayEvents + Send>,
    /// The Gateway watch, while the CRD serves v1.
    gateways: Option<GatewayEvents>,
    /// Gateways of a re-list in progress.
    relist: Option<ByNamespace>,
    /// Whether the CRD re-list in progress returned the CRD.
    crd_listed: bool,
    /// Namespaces to re-plan, not yet yielded.
    pending: VecDeque<NamespaceRef>,
}

#[allow(
    clippy::large_enum_variant,
    reason = "one event at a time, handled at once"
)]
enum Next {
    Crd(Option<watcher::Event<CustomResourceDefinition>>),
    Gateway(Option<watcher::Event<DynamicObject>>),
}

impl Feed {
    fn new(cache: Arc<GatewayCache>, start: Box<dyn Fn() -> GatewayEvents + Send>) -> Self {
        Self {
            cache,
            start,
            gateways: None,
            relist: None,
            crd_listed: false,
            pending: VecDeque::new(),
        }
    }

    fn run(
        self,
        crds: BoxStream<'static, watcher::Event<CustomResourceDefinition>>,
    ) -> impl Stream<Item = NamespaceRef> + Send + 'static {
        futures::stream::unfold((self, crds), |(mut feed, mut crds)| async move {
            loop {
                if let Some(namespace) = feed.pending.pop_front() {
                    return Some((namespace, (feed, crds)));
                }
                let next = {
                    let gateways = &mut feed.gateways;
                    tokio::select! {
                        event = crds.next() => Next::Crd(event),
                        event = next_gateway(gateways) => Next::Gateway(event),
                    }
                };
                match next {
                    // The CRD watch only ends when the controller does.
                    Next::Crd(None) => return None,
                    Next::Crd(Some(event)) => feed.on_crd(&event),
                    Next::Gateway(None) => feed.gateways = None,
                    Next::Gateway(Some(event)) => feed.on_gateway(event),
                }
            }
        })
    }

    fn on_crd(&mut self, event: &watcher::Event<CustomResourceDefinition>) {
        match event {
            watcher::Event::Init => self.crd_listed = false,
            watcher::Event::InitApply(crd) => {
                self.crd_listed = true;
                self.serve(serves_v1(crd));
            }
            watcher::Event::InitDone => {
                if !self.crd_listed {
                    self.serve(false);
                }
                // With the CRD there, ready comes with the Gateways' first list.
                if self.gateways.is_none() {
                    self.cache.mark_ready();
                }
            }
            watcher::Event::Apply(crd) => self.serve(serves_v1(crd)),
            watcher::Event::Delete(_) => self.serve(false),
        }
    }

    /// Starts or stops the Gateway watch.
    fn serve(&mut self, served: bool) {
        match (served, self.gateways.is_some()) {
            (true, false) => {
                info!(
                    crd = GATEWAY_CRD,
                    "the Gateway API serves v1: watching Gateways"
                );
                self.gateways = Some((self.start)());
            }
            (false, true) => {
                info!(
                    crd = GATEWAY_CRD,
                    "the Gateway API is gone (or serves no v1): Gateways no longer checked"
                );
                self.gateways = None;
                self.relist = None;
                let changed = self.cache.replace(ByNamespace::new());
                self.pending
                    .extend(changed.iter().map(|ns| NamespaceRef::new(ns)));
                // No Gateway list to wait for any more (gone before its first list ended).
                self.cache.mark_ready();
            }
            _ => {}
        }
    }

    fn on_gateway(&mut self, event: watcher::Event<DynamicObject>) {
        match event {
            watcher::Event::Init => self.relist = Some(ByNamespace::new()),
            watcher::Event::InitApply(object) => {
                if let (Some(relist), Some((namespace, name, facts))) =
                    (self.relist.as_mut(), facts(object))
                {
                    relist
                        .entry(namespace)
                        .or_default()
                        .insert(name, Arc::new(facts));
                }
            }
            watcher::Event::InitDone => {
                let relisted = self.relist.take().unwrap_or_default();
                let changed = self.cache.replace(relisted);
                self.pending
                    .extend(changed.iter().map(|ns| NamespaceRef::new(ns)));
                self.cache.mark_ready();
            }
            watcher::Event::Apply(object) => {
                if let Some((namespace, name, facts)) = facts(object)
                    && self.cache.set(&namespace, &name, Some(facts))
                {
                    self.pending.push_back(NamespaceRef::new(&namespace));
                }
            }
            watcher::Event::Delete(object) => {
                if let Some((namespace, name, _)) = facts(object)
                    && self.cache.set(&namespace, &name, None)
                {
                    self.pending.push_back(NamespaceRef::new(&namespace));
                }
            }
        }
    }
}

async fn next_gateway(
    gateways: &mut Option<GatewayEvents>,
) -> Option<watcher::Event<DynamicObject>> {
    match gateways {
        Some(events) => events.next().await,
        None => future::pending().await,
    }
}

/// Whether the CRD is established and serves v1.
fn serves_v1(crd: &CustomResourceDefinition) -> bool {
    let served = crd
        .spec
        .versions
        .iter()
        .any(|v| v.name == VERSION && v.served);
    let established = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    served && established
}

/// (namespace, name, facts) of a watched Gateway. List items may come without apiVersion;
/// they are of the version watched.
fn facts(mut object: DynamicObject) -> Option<(String, String, GatewayFacts)> {
    let namespace = object.metadata.namespace.clone()?;
    let name = object.metadata.name.clone()?;
    object.types.get_or_insert_with(|| TypeMeta {
        api_version: format!("{GROUP}/{VERSION}"),
        kind: "Gateway".to_owned(),
    });
    // Managed fields are most of an object's bytes and never read.
    object.metadata.managed_fields = None;
    let json = serde_json::to_value(&object).ok()?;
    Some((namespace, name, GatewayFacts::from_json(&json)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(established: bool) -> CustomResourceDefinition {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": GATEWAY_CRD},
            "spec": {
                "group": GROUP, "scope": "Namespaced",
                "names": {"plural": "gateways", "kind": "Gateway"},
                "versions": [{"name": "v1", "served": true, "storage": true}],
            },
            "status": {"conditions": [{"type": "Established", "status": if established {"True"} else {"False"}}]},
        }))
        .expect("CRD")
    }

    fn gateway(namespace: &str, hostname: &str, attached_routes: i64) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": namespace, "generation": 1},
            "spec": {"gatewayClassName": "c", "listeners": [{"name": "http", "protocol": "HTTP", "port": 80, "hostname": hostname}]},
            "status": {"listeners": [{"name": "http", "attachedRoutes": attached_routes, "conditions": []}]},
        }))
        .expect("Gateway")
    }

    fn feed() -> (Feed, Arc<std::sync::atomic::AtomicUsize>) {
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = started.clone();
        let start = Box::new(move || -> GatewayEvents {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            futures::stream::pending().boxed()
        });
        (Feed::new(Arc::default(), start), started)
    }

    fn drain(feed: &mut Feed) -> Vec<String> {
        feed.pending.drain(..).map(|r| r.name).collect()
    }

    #[test]
    fn without_the_crd_nothing_is_watched_and_the_cache_is_ready() {
        let (mut feed, started) = feed();
        feed.on_crd(&watcher::Event::Init);
        feed.on_crd(&watcher::Event::InitDone);
        assert!(feed.gateways.is_none());
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(*feed.cache.ready.borrow());
        // An installed but not yet established CRD starts nothing either.
        feed.on_crd(&watcher::Event::Apply(crd(false)));
        assert!(feed.gateways.is_none());
    }

    #[test]
    fn the_crd_starts_and_stops_the_gateway_watch() {
        let (mut feed, started) = feed();
        feed.on_crd(&watcher::Event::Init);
        feed.on_crd(&watcher::Event::InitApply(crd(true)));
        feed.on_crd(&watcher::Event::InitDone);
        assert!(feed.gateways.is_some());
        // Ready only once the Gateways were listed.
        assert!(!*feed.cache.ready.borrow());
        feed.on_gateway(watcher::Event::Init);
        feed.on_gateway(watcher::Event::InitApply(gateway(
            "web",
            "a.example.com",
            0,
        )));
        feed.on_gateway(watcher::Event::InitDone);
        assert!(*feed.cache.ready.borrow());
        assert_eq!(drain(&mut feed), vec!["web"]);
        assert_eq!(feed.cache.in_namespace("web").len(), 1);
        // The same CRD again (a status update) does not restart the watch.
        feed.on_crd(&watcher::Event::Apply(crd(true)));
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 1);
        feed.on_crd(&watcher::Event::Delete(crd(true)));
        assert!(feed.gateways.is_none());
        assert_eq!(drain(&mut feed), vec!["web"]);
        assert!(feed.cache.in_namespace("web").is_empty());
        feed.on_crd(&watcher::Event::Apply(crd(true)));
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn a_crd_gone_before_the_first_gateway_list_does_not_hold_start_up() {
        let (mut feed, _) = feed();
        feed.on_crd(&watcher::Event::Init);
        feed.on_crd(&watcher::Event::InitApply(crd(true)));
        feed.on_crd(&watcher::Event::InitDone);
        assert!(!*feed.cache.ready.borrow());
        feed.on_crd(&watcher::Event::Delete(crd(true)));
        assert!(*feed.cache.ready.borrow());
    }

    #[test]
    fn only_changes_of_what_the_checks_read_re_plan_the_namespace() {
        let (mut feed, _) = feed();
        feed.on_crd(&watcher::Event::Apply(crd(true)));
        feed.on_gateway(watcher::Event::Apply(gateway("web", "a.example.com", 0)));
        assert_eq!(drain(&mut feed), vec!["web"]);
        // A controller counting attached routes changes nothing the checks read.
        feed.on_gateway(watcher::Event::Apply(gateway("web", "a.example.com", 3)));
        assert!(drain(&mut feed).is_empty());
        feed.on_gateway(watcher::Event::Apply(gateway("web", "*.example.com", 3)));
        assert_eq!(drain(&mut feed), vec!["web"]);
        feed.on_gateway(watcher::Event::Delete(gateway("web", "*.example.com", 3)));
        assert_eq!(drain(&mut feed), vec!["web"]);
        assert!(feed.cache.in_namespace("web").is_empty());
    }

    #[test]
    fn a_gateway_listed_without_apiversion_is_read_as_v1() {
        let mut object = gateway("web", "a.example.com", 0);
        object.types = None;
        let (_, _, facts) = facts(object).expect("facts");
        assert!(facts.content.is_ok(), "{:?}", facts.content);
    }
}

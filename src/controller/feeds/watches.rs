//! The watches that feed the caches, and what each change triggers.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt, future, stream};
use k8s_openapi::NamespaceResourceScope;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::api::{BASELINE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SecurityBaseline};
use crate::controller::feeds::initial_lists::InitialLists;
use crate::controller::feeds::lean;
use crate::controller::state::cache::{CachedObject, CompactIndex, Interner, Labels, TakenName};
use crate::controller::state::context::Context;
use crate::controller::state::namespace_store::CachedNamespace;
use crate::controller::state::writes_in_flight::{ObjectKey, WritesInFlight};
use crate::domain::generated::{GeneratedKind, NamespacedObject};

type NamespaceRef = ObjectRef<CachedNamespace>;

/// Every change to an object of a generated kind, mapped to the namespace it may re-plan.
/// One watch per kind, of all its objects, feeds both indexes of that kind ([`KindFeed`]);
/// Roles come from the RBAC audit's watch of every Role (`rbac::namespace_triggers`), which
/// is handed the Role feed.
pub fn namespace_triggers(
    client: &Client,
    lists: InitialLists,
    ctx: &Context,
) -> impl Stream<Item = NamespaceRef> + Send + 'static {
    stream::select_all([
        watch_kind(
            client,
            lists,
            KindFeed::new(
                ctx,
                GeneratedKind::NetworkPolicy,
                NamespacedObject::NetworkPolicy,
            ),
        ),
        watch_kind(
            client,
            lists,
            KindFeed::new(
                ctx,
                GeneratedKind::ResourceQuota,
                NamespacedObject::ResourceQuota,
            ),
        ),
        watch_kind(
            client,
            lists,
            KindFeed::new(ctx, GeneratedKind::LimitRange, NamespacedObject::LimitRange),
        ),
    ])
}

/// Feeds the two indexes of one generated kind from a watch of all its objects: our
/// objects (those with our managed-by label) into the generated index, the names of all
/// others into the name index (a name of ours is looked up in the generated index, not
/// held twice: 30,000 entries at 10,000 namespaces). One watch for both, not a
/// label-filtered watch of ours plus a metadata watch of all: each of our writes then reaches the operator once per kind, not
/// twice (three times for a Role, which the RBAC audit watches too), which at 10,000
/// namespaces was a good part of the API server's and the operator's work in a converge.
pub struct KindFeed<K> {
    generated: Arc<CompactIndex<CachedObject>>,
    names: Arc<CompactIndex<TakenName>>,
    /// One copy of each distinct content (see `CachedObject`).
    interner: Interner,
    /// One copy of each baseline label value (see `TakenName`).
    baselines: Labels,
    /// Our applies whose watch events have not arrived: each event settles its object's.
    writes_in_flight: Arc<Mutex<WritesInFlight>>,
    kind: GeneratedKind,
    wrap: fn(K) -> NamespacedObject,
}

impl<K> std::fmt::Debug for KindFeed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KindFeed").finish_non_exhaustive()
    }
}

impl<K> KindFeed<K>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone,
{
    pub fn new(ctx: &Context, kind: GeneratedKind, wrap: fn(K) -> NamespacedObject) -> Self {
        Self::feeding(
            ctx.generated.get(&kind).cloned().unwrap_or_default(),
            ctx.names.get(&kind).cloned().unwrap_or_default(),
            ctx.writes_in_flight.clone(),
            kind,
            wrap,
        )
    }

    fn feeding(
        generated: Arc<CompactIndex<CachedObject>>,
        names: Arc<CompactIndex<TakenName>>,
        writes_in_flight: Arc<Mutex<WritesInFlight>>,
        kind: GeneratedKind,
        wrap: fn(K) -> NamespacedObject,
    ) -> Self {
        Self {
            generated,
            names,
            interner: Interner::default(),
            baselines: Labels::default(),
            writes_in_flight,
            kind,
            wrap,
        }
    }

    /// Applies one watch event to both indexes; returns the namespaces whose plan it may
    /// change: that of any change to an object of ours, or to an object with a name we
    /// generate (a Conflict appearing or going away); at the end of a re-list, those it
    /// found without an object the indexes held (deleted while the watch was broken: no
    /// event ever says so).
    pub fn observe(&mut self, event: &watcher::Event<K>) -> Vec<NamespaceRef> {
        let Self {
            generated,
            names,
            interner,
            baselines,
            writes_in_flight,
            kind,
            wrap,
        } = self;
        settle_writes_in_flight(&mut writes_in_flight.lock(), *kind, event);
        let mut update_names = || {
            names.apply_matching(event, |object| {
                // Keep only what conflict detection reads: that the name is taken, and for
                // which baseline it is labelled.
                let taken = (!is_ours(object)).then(|| TakenName {
                    baseline: object
                        .labels()
                        .get(BASELINE_LABEL)
                        .map(|b| baselines.intern(b)),
                });
                Some((object.namespace()?, object.name_any(), taken))
            })
        };
        let mut update_generated = || {
            generated.apply_matching(event, |object| {
                let value = is_ours(object).then(|| interner.intern(wrap(object.clone())));
                Some((object.namespace()?, object.name_any(), value))
            })
        };
        // An object moving between the indexes (our label added or removed) enters the one
        // it moves to before it leaves the other (`Context::lookup_name` relies on it).
        let becomes_ours = matches!(
            event,
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) if is_ours(object)
        );
        let mut vanished = if becomes_ours {
            let mut vanished = update_generated();
            vanished.extend(update_names());
            vanished
        } else {
            let mut vanished = update_names();
            vanished.extend(update_generated());
            vanished
        };
        let object = match event {
            watcher::Event::Apply(object)
            | watcher::Event::Delete(object)
            | watcher::Event::InitApply(object) => object,
            watcher::Event::Init | watcher::Event::InitDone => {
                vanished.sort_unstable();
                vanished.dedup();
                return vanished.iter().map(|ns| NamespaceRef::new(ns)).collect();
            }
        };
        (is_ours(object) || object.name_any().starts_with("baseline-"))
            .then(|| object.namespace().map(|ns| NamespaceRef::new(&ns)))
            .flatten()
            .into_iter()
            .collect()
    }
}

/// Settles our applies of the object an event is about (see [`WritesInFlight::observed`]).
fn settle_writes_in_flight<K: Resource>(
    writes: &mut WritesInFlight,
    kind: GeneratedKind,
    event: &watcher::Event<K>,
) {
    let (object, version) = match event {
        watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
            (object, object.meta().resource_version.as_deref())
        }
        watcher::Event::Delete(object) => (object, None),
        watcher::Event::Init => return writes.relisting(kind),
        watcher::Event::InitDone => return,
    };
    let (Some(namespace), Some(name)) = (&object.meta().namespace, &object.meta().name) else {
        return;
    };
    writes.observed(
        ObjectKey {
            kind,
            namespace,
            name,
        },
        version,
    );
}

fn is_ours(object: &impl Resource) -> bool {
    object.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

pub(crate) fn log_and_skip<T>(
    result: Result<T, watcher::Error>,
    what: &'static str,
) -> future::Ready<Option<T>> {
    future::ready(match result {
        Ok(value) => Some(value),
        Err(error) => {
            warn!(%error, watch = what, "watch failed; retrying with backoff");
            None
        }
    })
}

fn watch_kind<K>(
    client: &Client,
    lists: InitialLists,
    mut feed: KindFeed<K>,
) -> stream::BoxStream<'static, NamespaceRef>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    lean::watch_all::<K>(client, lists.config())
        .default_backoff()
        .filter_map(|result| log_and_skip(result, K::KIND))
        .flat_map(move |event| stream::iter(feed.observe(&event)))
        .boxed()
}

/// Emits when a baseline's spec, identity or deletion state changes, so every namespace is
/// re-planned; status writes (which change neither) do not trigger it.
pub fn baseline_spec_changes(
    baselines: impl Stream<Item = Arc<SecurityBaseline>> + Send + 'static,
) -> impl Stream<Item = ()> + Send + 'static {
    let mut seen: HashMap<String, (Option<String>, Option<i64>, bool)> = HashMap::new();
    baselines.filter_map(move |baseline| {
        let key = (
            baseline.uid(),
            baseline.metadata.generation,
            baseline.metadata.deletion_timestamp.is_some(),
        );
        let changed = seen.insert(baseline.name_any(), key.clone()) != Some(key);
        future::ready(changed.then_some(()))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn policy(namespace: &str, name: &str, labels: &[(&str, &str)]) -> NetworkPolicy {
        NetworkPolicy {
            metadata: ObjectMeta {
                namespace: Some(namespace.to_string()),
                name: Some(name.to_string()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..ObjectMeta::default()
            },
            ..NetworkPolicy::default()
        }
    }

    const OURS: [(&str, &str); 2] = [(MANAGED_BY_LABEL, MANAGED_BY_VALUE), (BASELINE_LABEL, "b")];

    #[test]
    fn one_watch_feeds_both_indexes_and_triggers_only_what_can_change_a_plan() {
        let generated: Arc<CompactIndex<CachedObject>> = Arc::default();
        let names: Arc<CompactIndex<TakenName>> = Arc::default();
        let mut feed = KindFeed::feeding(
            generated.clone(),
            names.clone(),
            Arc::default(),
            GeneratedKind::NetworkPolicy,
            NamespacedObject::NetworkPolicy,
        );
        let ns = |name: &str| vec![NamespaceRef::new(name)];
        feed.observe(&watcher::Event::Init);
        assert_eq!(
            feed.observe(&watcher::Event::InitApply(policy(
                "a",
                "baseline-b-deny-all",
                &OURS
            ))),
            ns("a")
        );
        assert_eq!(
            feed.observe(&watcher::Event::InitApply(policy("a", "theirs", &[]))),
            [],
            "a foreign object with a name we never generate changes no plan"
        );
        feed.observe(&watcher::Event::InitDone);
        assert!(generated.is_ready() && names.is_ready());
        assert!(generated.get("a", "baseline-b-deny-all").is_some());
        assert!(
            generated.get("a", "theirs").is_none(),
            "not ours: not in the generated index"
        );
        assert!(names.get("a", "theirs").is_some(), "but its name is taken");
        assert!(
            names.get("a", "baseline-b-deny-all").is_none(),
            "ours: its name is looked up in the generated index, not held twice"
        );

        // Someone takes a name we generate, without our label: a Conflict for that plan.
        assert_eq!(
            feed.observe(&watcher::Event::Apply(policy(
                "c",
                "baseline-b-allow-dns",
                &[]
            ))),
            ns("c")
        );
        assert!(generated.get("c", "baseline-b-allow-dns").is_none());
        assert!(names.get("c", "baseline-b-allow-dns").is_some());

        // Our label removed from our object: it is no longer ours, and the plan is redone.
        assert_eq!(
            feed.observe(&watcher::Event::Apply(policy(
                "a",
                "baseline-b-deny-all",
                &[]
            ))),
            ns("a")
        );
        assert!(generated.get("a", "baseline-b-deny-all").is_none());
        assert!(names.get("a", "baseline-b-deny-all").is_some());
        // And back: ours again, in the generated index only.
        feed.observe(&watcher::Event::Apply(policy(
            "a",
            "baseline-b-deny-all",
            &OURS,
        )));
        assert!(generated.get("a", "baseline-b-deny-all").is_some());
        assert!(names.get("a", "baseline-b-deny-all").is_none());

        assert_eq!(
            feed.observe(&watcher::Event::Delete(policy(
                "a",
                "baseline-b-deny-all",
                &[]
            ))),
            ns("a")
        );
        assert!(names.get("a", "baseline-b-deny-all").is_none());
    }

    #[test]
    fn a_relist_without_our_object_re_plans_its_namespace() {
        let generated: Arc<CompactIndex<CachedObject>> = Arc::default();
        let mut feed = KindFeed::feeding(
            generated.clone(),
            Arc::default(),
            Arc::default(),
            GeneratedKind::NetworkPolicy,
            NamespacedObject::NetworkPolicy,
        );
        let relist = |feed: &mut KindFeed<NetworkPolicy>, objects: &[NetworkPolicy]| {
            let mut triggered: Vec<String> = Vec::new();
            for event in std::iter::once(watcher::Event::Init)
                .chain(objects.iter().cloned().map(watcher::Event::InitApply))
                .chain([watcher::Event::InitDone])
            {
                triggered.extend(feed.observe(&event).into_iter().map(|r| r.name));
            }
            triggered.sort();
            triggered
        };
        let deny = |ns: &str| policy(ns, "baseline-b-deny-all", &OURS);
        assert_eq!(relist(&mut feed, &[deny("a"), deny("b")]), ["a", "b"]);
        // Deleted while the watch was broken (410 Gone), so no Delete event: the relist
        // that follows is the only news, and b's plan must be redone to restore it. A
        // name of theirs going away with it is news too (a Conflict may be over).
        feed.observe(&watcher::Event::Apply(policy(
            "c",
            "baseline-b-deny-all",
            &[],
        )));
        assert_eq!(relist(&mut feed, &[deny("a")]), ["a", "b", "c"]);
        assert!(generated.get("b", "baseline-b-deny-all").is_none());
    }
}

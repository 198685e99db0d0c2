//! The watches that feed the caches, and what each change triggers.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt, TryStreamExt, future, stream};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::warn;

use super::cache::{CachedObject, CompactIndex, Interner, Labels, TakenName};
use super::context::Context;
use crate::api::{BASELINE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SecurityBaseline};
use crate::domain::generated::{GeneratedKind, NamespacedObject};

type NamespaceRef = ObjectRef<PartialObjectMeta<Namespace>>;

/// Every change to an object of a generated kind, mapped to its namespace: our objects
/// (full objects, label-filtered) and the names of everyone's (metadata only).
pub fn namespace_triggers(
    client: &Client,
    ctx: &Context,
) -> impl Stream<Item = NamespaceRef> + Send + 'static {
    let index = |kind| ctx.generated.get(&kind).cloned().unwrap_or_default();
    let names = |kind| ctx.names.get(&kind).cloned().unwrap_or_default();
    stream::select_all([
        generated::<NetworkPolicy>(
            client,
            index(GeneratedKind::NetworkPolicy),
            NamespacedObject::NetworkPolicy,
        ),
        generated::<Role>(client, index(GeneratedKind::Role), NamespacedObject::Role),
        generated::<ResourceQuota>(
            client,
            index(GeneratedKind::ResourceQuota),
            NamespacedObject::ResourceQuota,
        ),
        generated::<LimitRange>(
            client,
            index(GeneratedKind::LimitRange),
            NamespacedObject::LimitRange,
        ),
        object_names::<NetworkPolicy>(client, names(GeneratedKind::NetworkPolicy)),
        object_names::<Role>(client, names(GeneratedKind::Role)),
        object_names::<ResourceQuota>(client, names(GeneratedKind::ResourceQuota)),
        object_names::<LimitRange>(client, names(GeneratedKind::LimitRange)),
    ])
}

/// Objects per list page of the watches of many objects (client-go's and kube's default is
/// 500). A page is deserialized whole and held until its last object has gone into a
/// cache, and at start-up every watch lists at once: at 500, those pages (managedFields
/// and all) were most of a restarted operator's heap at 1,000 namespaces. The price is
/// more list requests, one throttle token each: about 1,500 instead of 300 at 10,000
/// namespaces.
pub const LIST_PAGE_SIZE: u32 = 100;

/// The watcher configuration of every watch of a kind with objects in every namespace.
pub fn list_config() -> watcher::Config {
    watcher::Config::default().page_size(LIST_PAGE_SIZE)
}

fn log_and_skip<T>(
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

fn generated<K>(
    client: &Client,
    index: Arc<CompactIndex<CachedObject>>,
    wrap: fn(K) -> NamespacedObject,
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
    let config = list_config().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    // One copy of each distinct content (see `CachedObject`).
    let mut interner = Interner::default();
    watcher(Api::<K>::all(client.clone()), config)
        .default_backoff()
        .map_ok(move |event| {
            index.apply(&event, |object: &K| {
                let namespace = object.namespace()?;
                Some((
                    namespace,
                    object.name_any(),
                    interner.intern(wrap(object.clone())),
                ))
            });
            event
        })
        .touched_objects()
        .filter_map(|result| log_and_skip(result, K::KIND))
        .filter_map(|object: K| future::ready(object.namespace().map(|ns| NamespaceRef::new(&ns))))
        .boxed()
}

fn object_names<K>(
    client: &Client,
    index: Arc<CompactIndex<TakenName>>,
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
    let mut baselines = Labels::default();
    watcher(
        Api::<PartialObjectMeta<K>>::all(client.clone()),
        list_config(),
    )
    .default_backoff()
    .map_ok(move |event| {
        index.apply(&event, |object: &PartialObjectMeta<K>| {
            // Keep only what conflict detection reads: that the name is taken, and for
            // which baseline it is labelled.
            let taken = TakenName {
                baseline: object
                    .labels()
                    .get(BASELINE_LABEL)
                    .map(|b| baselines.intern(b)),
            };
            Some((object.namespace()?, object.name_any(), taken))
        });
        event
    })
    .touched_objects()
    .filter_map(|result| log_and_skip(result, K::KIND))
    // Only a name we generate can change a plan (a Conflict appearing or going away).
    .filter(|object| future::ready(object.name_any().starts_with("baseline-")))
    .filter_map(|object| future::ready(object.namespace().map(|ns| NamespaceRef::new(&ns))))
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

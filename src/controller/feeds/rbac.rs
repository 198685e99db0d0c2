//! The RBAC audit's caches: Roles, ClusterRoles and their bindings, all of them, fed into
//! the domain's `RbacIndex`. A change re-plans only the namespaces whose audit it can
//! change (the index says which), so one edited Role costs one namespace reconcile.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt, future, stream};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::warn;

use crate::controller::feeds::initial_lists::InitialLists;
use crate::controller::feeds::lean;
use crate::controller::feeds::watches::KindFeed;
use crate::controller::state::namespace_store::CachedNamespace;
use crate::domain::rbac_audit::{RbacIndex, RbacObject, RbacObjectRef};

type NamespaceRef = ObjectRef<CachedNamespace>;

/// The RBAC objects of the cluster, as the audit sees them.
#[derive(Debug)]
pub struct RbacCache {
    index: RwLock<RbacIndex>,
    /// First full list done, per kind.
    ready: [watch::Sender<bool>; 4],
}

impl Default for RbacCache {
    fn default() -> Self {
        Self {
            index: RwLock::new(RbacIndex::new()),
            ready: std::array::from_fn(|_| watch::Sender::new(false)),
        }
    }
}

impl RbacCache {
    /// Runs `read` with the index.
    pub fn read<T>(&self, read: impl FnOnce(&RbacIndex) -> T) -> T {
        read(&self.index.read())
    }

    fn write<T>(&self, write: impl FnOnce(&mut RbacIndex) -> T) -> T {
        write(&mut self.index.write())
    }

    /// Waits until every kind has its first full list.
    pub async fn wait_ready(&self) {
        for ready in &self.ready {
            let mut ready = ready.subscribe();
            let _ = ready.wait_for(|r| *r).await;
        }
    }
}

/// Watches of the four RBAC kinds; yields the namespaces whose audit a change may change.
/// The watch of every Role also feeds the generated-object indexes of Roles (`roles`), so
/// each Role change reaches the operator once.
pub fn namespace_triggers(
    client: &Client,
    lists: InitialLists,
    cache: &Arc<RbacCache>,
    mut roles: KindFeed<Role>,
) -> impl Stream<Item = NamespaceRef> + Send + 'static {
    stream::select_all([
        watch_kind::<Role>(client, lists, cache.clone(), 0, move |event| {
            roles.observe(event)
        }),
        watch_kind::<ClusterRole>(client, lists, cache.clone(), 1, |_| Vec::new()),
        watch_kind::<RoleBinding>(client, lists, cache.clone(), 2, |_| Vec::new()),
        watch_kind::<ClusterRoleBinding>(client, lists, cache.clone(), 3, |_| Vec::new()),
    ])
}

fn watch_kind<K>(
    client: &Client,
    lists: InitialLists,
    cache: Arc<RbacCache>,
    slot: usize,
    mut also: impl FnMut(&watcher::Event<K>) -> Vec<NamespaceRef> + Send + 'static,
) -> stream::BoxStream<'static, NamespaceRef>
where
    K: Resource<DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    for<'a> &'a K: Into<RbacObject<'a>>,
{
    // Objects the index holds from this watch, so a re-list can tell which ones disappeared.
    let known: Arc<Mutex<HashSet<RbacObjectRef>>> = Arc::default();
    // During a re-list (between Init and InitDone): the objects it has listed so far. Only
    // their references: each listed object goes into the index at once, so a re-list never
    // holds the full objects of a whole kind (10,000 Roles, managedFields included).
    let listed: Arc<Mutex<HashSet<RbacObjectRef>>> = Arc::default();
    lean::watch_all::<K>(client, lists.config())
        .default_backoff()
        .filter_map(|result| {
            future::ready(match result {
                Ok(event) => Some(event),
                Err(error) => {
                    warn!(%error, watch = K::KIND, "watch failed; retrying with backoff");
                    None
                }
            })
        })
        .map(move |event| {
            let also_affected = also(&event);
            let affected: BTreeSet<String> = match event {
                watcher::Event::Apply(object) => {
                    let Some(reference) = RbacObjectRef::of(&object) else {
                        return Vec::new();
                    };
                    known.lock().insert(reference);
                    cache.write(|index| index.upsert(&object))
                }
                watcher::Event::Delete(object) => {
                    let Some(reference) = RbacObjectRef::of(&object) else {
                        return Vec::new();
                    };
                    known.lock().remove(&reference);
                    cache.write(|index| index.remove(&reference))
                }
                watcher::Event::Init => {
                    listed.lock().clear();
                    BTreeSet::new()
                }
                watcher::Event::InitApply(object) => {
                    // Upserted as it arrives: a listed object is at least as fresh as the
                    // one the index had. Until the first InitDone nothing reads the index.
                    let Some(reference) = RbacObjectRef::of(&object) else {
                        return Vec::new();
                    };
                    listed.lock().insert(reference.clone());
                    known.lock().insert(reference);
                    cache.write(|index| index.upsert(&object))
                }
                watcher::Event::InitDone => {
                    let listed = std::mem::take(&mut *listed.lock());
                    let gone: Vec<RbacObjectRef> = known
                        .lock()
                        .iter()
                        .filter(|r| !listed.contains(*r))
                        .cloned()
                        .collect();
                    let affected = cache.write(|index| {
                        let mut affected = BTreeSet::new();
                        for reference in &gone {
                            affected.extend(index.remove(reference));
                        }
                        affected
                    });
                    *known.lock() = listed;
                    cache.ready[slot].send_replace(true);
                    affected
                }
            };
            affected
                .into_iter()
                .map(|ns| NamespaceRef::new(&ns))
                .chain(also_affected)
                .collect::<Vec<_>>()
        })
        .flat_map(stream::iter)
        .boxed()
}

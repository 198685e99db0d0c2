//! In-memory indexes fed by watches: objects by namespace and name, so a reconcile reads
//! what it needs without a GET and without scanning the whole cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use kube::runtime::watcher;
use tokio::sync::watch;

/// Objects of one kind, by namespace then name, replaced atomically on each re-list.
#[derive(Debug)]
pub struct NamespacedIndex<V> {
    objects: RwLock<Objects<V>>,
    ready: watch::Sender<bool>,
}

#[derive(Debug)]
struct Objects<V> {
    live: HashMap<String, BTreeMap<String, Arc<V>>>,
    /// Objects of a re-list in progress (between Init and InitDone).
    relist: HashMap<String, BTreeMap<String, Arc<V>>>,
}

impl<V> Default for NamespacedIndex<V> {
    fn default() -> Self {
        Self {
            objects: RwLock::new(Objects {
                live: HashMap::new(),
                relist: HashMap::new(),
            }),
            ready: watch::Sender::new(false),
        }
    }
}

impl<V> NamespacedIndex<V> {
    /// Applies a watch event; `convert` turns the watched object into (namespace, name,
    /// value), or None to skip it (a malformed object is skipped, never fatal).
    pub fn apply<K>(
        &self,
        event: &watcher::Event<K>,
        convert: impl Fn(&K) -> Option<(String, String, V)>,
    ) {
        let mut objects = match self.objects.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        match event {
            watcher::Event::Apply(object) => {
                if let Some((namespace, name, value)) = convert(object) {
                    objects
                        .live
                        .entry(namespace)
                        .or_default()
                        .insert(name, Arc::new(value));
                }
            }
            watcher::Event::Delete(object) => {
                if let Some((namespace, name, _)) = convert(object)
                    && let Some(names) = objects.live.get_mut(&namespace)
                {
                    names.remove(&name);
                    if names.is_empty() {
                        objects.live.remove(&namespace);
                    }
                }
            }
            watcher::Event::Init => objects.relist.clear(),
            watcher::Event::InitApply(object) => {
                if let Some((namespace, name, value)) = convert(object) {
                    objects
                        .relist
                        .entry(namespace)
                        .or_default()
                        .insert(name, Arc::new(value));
                }
            }
            watcher::Event::InitDone => {
                objects.live = std::mem::take(&mut objects.relist);
                drop(objects);
                self.ready.send_replace(true);
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Objects<V>> {
        match self.objects.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The object `name` in `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<V>> {
        self.read().live.get(namespace)?.get(name).cloned()
    }

    /// Every object in `namespace` that satisfies `keep`.
    pub fn in_namespace(&self, namespace: &str, keep: impl Fn(&V) -> bool) -> Vec<Arc<V>> {
        self.read()
            .live
            .get(namespace)
            .map(|names| names.values().filter(|v| keep(v)).cloned().collect())
            .unwrap_or_default()
    }

    /// True when any object anywhere satisfies `predicate`.
    pub fn any(&self, predicate: impl Fn(&V) -> bool) -> bool {
        self.read()
            .live
            .values()
            .any(|names| names.values().any(|v| predicate(v)))
    }

    /// Number of objects held.
    pub fn len(&self) -> usize {
        self.read().live.values().map(BTreeMap::len).sum()
    }

    /// Whether the first list has completed.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the first list has completed.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(item: &(&'static str, &'static str, u32)) -> Option<(String, String, u32)> {
        Some((item.0.to_string(), item.1.to_string(), item.2))
    }

    #[test]
    fn relist_replaces_contents_atomically() {
        let index = NamespacedIndex::default();
        assert!(!index.is_ready());
        index.apply(&watcher::Event::Init, convert);
        index.apply(&watcher::Event::InitApply(("a", "x", 1)), convert);
        assert!(index.get("a", "x").is_none(), "not visible before InitDone");
        index.apply(&watcher::Event::InitDone, convert);
        assert!(index.is_ready());
        assert_eq!(index.get("a", "x").as_deref(), Some(&1));
        index.apply(&watcher::Event::Apply(("a", "y", 2)), convert);
        index.apply(&watcher::Event::Delete(("a", "x", 1)), convert);
        assert_eq!(index.in_namespace("a", |_| true).len(), 1);
        // A re-list without y drops it.
        index.apply(&watcher::Event::Init, convert);
        index.apply(&watcher::Event::InitApply(("b", "z", 3)), convert);
        index.apply(&watcher::Event::InitDone, convert);
        assert!(index.get("a", "y").is_none());
        assert_eq!(index.len(), 1);
    }
}

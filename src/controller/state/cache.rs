//! In-memory indexes fed by watches: objects by namespace and name, so a reconcile reads
//! what it needs without a GET and without scanning the whole cluster.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::api::FIELD_MANAGER;
use crate::domain::field_ownership::{is_plain_write_by, plain_write_marker};
use crate::domain::generated::NamespacedObject;

/// What the name index keeps of an object of a generated kind, ours or anyone's: that the
/// name is taken, and the baseline it is labelled for (the only label a Conflict finding
/// names). Every such object in the cluster is held, so it is kept this small.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TakenName {
    /// Shared between all objects labelled for the same baseline (see [`Labels`]).
    pub baseline: Option<Arc<str>>,
}

/// One shared copy of each label value: the baseline label has one value per baseline,
/// repeated on every object of that baseline.
#[derive(Debug, Default)]
pub struct Labels(std::collections::HashSet<Arc<str>>);

impl Labels {
    pub fn intern(&mut self, value: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(value) {
            return shared.clone();
        }
        let shared: Arc<str> = value.into();
        self.0.insert(shared.clone());
        shared
    }
}

/// One shared copy of each string that repeats over many cached objects (label keys and
/// values of namespaces). Strings nothing else holds any more are dropped at the next
/// sweep.
#[derive(Debug, Default)]
pub struct StringPool {
    strings: HashSet<Arc<str>>,
    /// Sweep when this many strings are held (twice the live ones after the last sweep).
    sweep_at: usize,
}

impl StringPool {
    pub fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(text) {
            return shared.clone();
        }
        if self.strings.len() >= self.sweep_at.max(1024) {
            self.sweep();
        }
        let shared: Arc<str> = text.into();
        self.strings.insert(shared.clone());
        shared
    }

    /// Drops the strings only the pool holds.
    fn sweep(&mut self) {
        self.strings.retain(|text| Arc::strong_count(text) > 1);
        self.sweep_at = self.strings.len() * 2;
    }
}

/// One of our generated objects as the cache holds it: what differs between objects
/// (uid, resourceVersion; the namespace is the index key) apart from the rest, which is
/// shared with every cached object of the same content. A baseline's objects are the same
/// in every namespace it selects, so 10,000 namespaces hold one copy of each, not 10,000.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedObject {
    uid: Option<Uid>,
    resource_version: Option<Box<str>>,
    shared: Arc<NamespacedObject>,
}

/// An object's uid as the cache holds it. The API server's uids are UUIDs, kept as their
/// 16 bytes: as text each took a 48-byte allocation, 40,000 of them at 10,000 namespaces
/// with the sample baseline. Anything that does not read back exactly is kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Uid {
    Uuid([u8; 16]),
    Text(Box<str>),
}

impl Uid {
    fn new(text: String) -> Self {
        match uuid::Uuid::try_parse(&text) {
            // Only the lowercase hyphenated form is kept as bytes: it is what reads back.
            Ok(parsed)
                if parsed
                    .hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer())
                    == text.as_str() =>
            {
                Self::Uuid(parsed.into_bytes())
            }
            _ => Self::Text(text.into_boxed_str()),
        }
    }

    fn to_text(&self) -> String {
        match self {
            Self::Uuid(bytes) => uuid::Uuid::from_bytes(*bytes).hyphenated().to_string(),
            Self::Text(text) => text.to_string(),
        }
    }
}

impl CachedObject {
    /// The object as the API server returned it (less managedFields, annotations and
    /// server timestamps, which nothing reads), in `namespace`.
    pub fn object(&self, namespace: &str) -> NamespacedObject {
        let mut object = (*self.shared).clone();
        let meta = meta_mut(&mut object);
        meta.namespace = Some(namespace.to_string());
        meta.uid = self.uid.as_ref().map(Uid::to_text);
        meta.resource_version = self.resource_version.as_deref().map(str::to_string);
        object
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    /// Whether our field manager holds fields of the object by a plain write (we created
    /// it and have not applied to it since): see `domain::field_ownership`.
    pub fn holds_plain_writes(&self) -> bool {
        self.shared
            .metadata()
            .managed_fields
            .iter()
            .flatten()
            .any(|entry| is_plain_write_by(entry, FIELD_MANAGER))
    }

    /// The content shared with identical objects: kind, name, labels, owner references,
    /// spec. Its namespace, uid and resourceVersion are empty.
    pub fn shared(&self) -> &NamespacedObject {
        &self.shared
    }
}

fn meta_mut(object: &mut NamespacedObject) -> &mut ObjectMeta {
    match object {
        NamespacedObject::NetworkPolicy(o) => &mut o.metadata,
        NamespacedObject::Role(o) => &mut o.metadata,
        NamespacedObject::ResourceQuota(o) => &mut o.metadata,
        NamespacedObject::LimitRange(o) => &mut o.metadata,
    }
}

/// Hands out one shared copy per distinct object content (see [`CachedObject`]). Holds only
/// weak references: content no cached object uses any more is freed, and its entry
/// dropped at the next sweep.
#[derive(Debug, Default)]
pub struct Interner {
    by_hash: HashMap<u64, Vec<Weak<NamespacedObject>>>,
    entries: usize,
    /// Sweep when the entries reach this many (twice the live ones after the last sweep).
    sweep_at: usize,
}

impl Interner {
    /// The cache form of `object`.
    pub fn intern(&mut self, mut object: NamespacedObject) -> CachedObject {
        let meta = meta_mut(&mut object);
        let uid = meta.uid.take().map(Uid::new);
        let resource_version = meta.resource_version.take().map(String::into_boxed_str);
        // Per-object and never read by the plan (managedFields alone are most of an
        // object's bytes). Of managedFields only whether our field manager holds fields by
        // a plain write (our create) is kept, as one marker entry the same in every such
        // object: the next apply to it must first take those fields over.
        meta.namespace = None;
        meta.managed_fields = meta
            .managed_fields
            .take()
            .filter(|entries| entries.iter().any(|e| is_plain_write_by(e, FIELD_MANAGER)))
            .map(|_| vec![plain_write_marker(FIELD_MANAGER)]);
        meta.annotations = None;
        meta.creation_timestamp = None;
        meta.generation = None;
        let hash = super::json_hash(&object);
        let candidates = self.by_hash.entry(hash).or_default();
        let shared = match candidates
            .iter()
            .filter_map(Weak::upgrade)
            .find(|shared| **shared == object)
        {
            Some(shared) => shared,
            None => {
                let shared = Arc::new(object);
                candidates.push(Arc::downgrade(&shared));
                self.entries += 1;
                shared
            }
        };
        if self.entries >= self.sweep_at.max(64) {
            self.sweep();
        }
        CachedObject {
            uid,
            resource_version,
            shared,
        }
    }

    fn sweep(&mut self) {
        self.by_hash.retain(|_, candidates| {
            candidates.retain(|weak| weak.strong_count() > 0);
            !candidates.is_empty()
        });
        self.entries = self.by_hash.values().map(Vec::len).sum();
        self.sweep_at = self.entries * 2;
    }

    /// Distinct contents held (live or not yet swept).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
    }
}

/// Objects of one kind, by namespace then name, replaced atomically on each re-list.
///
/// Values are held inline and handed out as clones, for small values (a [`CachedObject`],
/// a [`TakenName`]); [`NamespacedIndex`] holds larger ones behind an `Arc`. A namespace holds one to three objects of a kind, so its objects are a
/// short vector, not a tree: at 10,000 namespaces a `BTreeMap` per namespace (a node of
/// eleven slots for one or two entries) was most of these indexes' memory.
#[derive(Debug)]
pub struct CompactIndex<V> {
    objects: RwLock<Objects<V>>,
    ready: watch::Sender<bool>,
}

/// Object names are shared ([`StringPool`]): a baseline's objects have the same names in
/// every namespace it selects (40,000 names at 10,000 namespaces with the sample, four
/// distinct).
type ByNamespace<V> = HashMap<Box<str>, Vec<(Arc<str>, V)>>;

#[derive(Debug)]
struct Objects<V> {
    live: ByNamespace<V>,
    /// Objects of a re-list in progress (between Init and InitDone).
    relist: ByNamespace<V>,
    names: StringPool,
}

impl<V> Default for CompactIndex<V> {
    fn default() -> Self {
        Self {
            objects: RwLock::new(Objects {
                live: HashMap::new(),
                relist: HashMap::new(),
                names: StringPool::default(),
            }),
            ready: watch::Sender::new(false),
        }
    }
}

fn insert<V>(
    objects: &mut ByNamespace<V>,
    pool: &mut StringPool,
    namespace: String,
    name: &str,
    value: V,
) {
    let names = objects.entry(namespace.into_boxed_str()).or_default();
    match names.iter_mut().find(|(n, _)| **n == *name) {
        Some((_, slot)) => *slot = value,
        None => {
            names.push((pool.intern(name), value));
            names.shrink_to_fit();
        }
    }
}

fn remove<V>(objects: &mut ByNamespace<V>, namespace: &str, name: &str) {
    if let Some(names) = objects.get_mut(namespace) {
        names.retain(|(n, _)| **n != *name);
        names.shrink_to_fit();
        if names.is_empty() {
            objects.remove(namespace);
        }
    }
}

/// The namespaces of `before` with an object `after` does not have.
fn vanished<V>(before: &ByNamespace<V>, after: &ByNamespace<V>) -> Vec<String> {
    before
        .iter()
        .filter(|(namespace, names)| match after.get(*namespace) {
            None => true,
            Some(now) => names
                .iter()
                .any(|(name, _)| !now.iter().any(|(kept, _)| kept == name)),
        })
        .map(|(namespace, _)| namespace.to_string())
        .collect()
}

impl<V: Clone> CompactIndex<V> {
    /// Applies a watch event; `convert` turns the watched object into (namespace, name,
    /// value), or None to skip it (a malformed object is skipped, never fatal). Returns the
    /// namespaces a completed re-list found without an object held there
    /// ([`CompactIndex::apply_matching`]).
    pub fn apply<K>(
        &self,
        event: &watcher::Event<K>,
        mut convert: impl FnMut(&K) -> Option<(String, String, V)>,
    ) -> Vec<String> {
        self.apply_matching(event, |object| {
            convert(object).map(|(namespace, name, value)| (namespace, name, Some(value)))
        })
    }

    /// Applies a watch event of a watch wider than the index: `convert` turns the watched
    /// object into (namespace, name, value), with None as value for an object the index
    /// does not hold. An object that changes so that it no longer belongs (its label
    /// removed) leaves the index, as a label-filtered watch would have sent its deletion.
    ///
    /// Returns, when a re-list completes (InitDone), the namespaces it found without an
    /// object the index held there: deleted while the watch was broken, their deletion
    /// never arrives as an event, so the caller must tell their reconcilers. Empty for
    /// every other event.
    pub fn apply_matching<K>(
        &self,
        event: &watcher::Event<K>,
        mut convert: impl FnMut(&K) -> Option<(String, String, Option<V>)>,
    ) -> Vec<String> {
        let mut guard = self.objects.write();
        let objects = &mut *guard;
        match event {
            watcher::Event::Apply(object) => match convert(object) {
                Some((namespace, name, Some(value))) => {
                    insert(
                        &mut objects.live,
                        &mut objects.names,
                        namespace,
                        &name,
                        value,
                    );
                }
                Some((namespace, name, None)) => remove(&mut objects.live, &namespace, &name),
                None => {}
            },
            watcher::Event::Delete(object) => {
                if let Some((namespace, name, _)) = convert(object) {
                    remove(&mut objects.live, &namespace, &name);
                }
            }
            watcher::Event::Init => objects.relist.clear(),
            watcher::Event::InitApply(object) => {
                if let Some((namespace, name, Some(value))) = convert(object) {
                    insert(
                        &mut objects.relist,
                        &mut objects.names,
                        namespace,
                        &name,
                        value,
                    );
                }
            }
            watcher::Event::InitDone => {
                let vanished = vanished(&objects.live, &objects.relist);
                objects.live = std::mem::take(&mut objects.relist);
                objects.live.shrink_to_fit();
                drop(guard);
                self.ready.send_replace(true);
                return vanished;
            }
        }
        Vec::new()
    }

    /// The object `name` in `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<V> {
        self.objects
            .read()
            .live
            .get(namespace)?
            .iter()
            .find(|(n, _)| **n == *name)
            .map(|(_, v)| v.clone())
    }

    /// Every object in `namespace` that satisfies `keep`.
    pub fn in_namespace(&self, namespace: &str, keep: impl Fn(&V) -> bool) -> Vec<V> {
        self.objects
            .read()
            .live
            .get(namespace)
            .map(|names| {
                names
                    .iter()
                    .map(|(_, v)| v)
                    .filter(|v| keep(v))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True when any object anywhere satisfies `predicate`.
    pub fn any(&self, predicate: impl Fn(&V) -> bool) -> bool {
        self.objects
            .read()
            .live
            .values()
            .any(|names| names.iter().any(|(_, v)| predicate(v)))
    }

    /// Number of objects held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.objects.read().live.values().map(Vec::len).sum()
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

/// A [`CompactIndex`] of values behind an `Arc` (node facts, reports: larger values, few
/// of them), handed out without copying.
#[derive(Debug)]
pub struct NamespacedIndex<V>(CompactIndex<Arc<V>>);

impl<V> Default for NamespacedIndex<V> {
    fn default() -> Self {
        Self(CompactIndex::default())
    }
}

impl<V> NamespacedIndex<V> {
    /// See [`CompactIndex::apply`].
    pub fn apply<K>(
        &self,
        event: &watcher::Event<K>,
        mut convert: impl FnMut(&K) -> Option<(String, String, V)>,
    ) -> Vec<String> {
        self.0.apply(event, |object| {
            convert(object).map(|(namespace, name, value)| (namespace, name, Arc::new(value)))
        })
    }

    /// [`NamespacedIndex::apply`], returning the namespaces to re-plan: that of an object
    /// whose value changed (or that was deleted), and at the end of a re-list those it
    /// found without an object held there.
    pub fn apply_reporting_changes<K: kube::Resource>(
        &self,
        event: &watcher::Event<K>,
        mut convert: impl FnMut(&K) -> Option<(String, String, V)>,
    ) -> Vec<String>
    where
        V: PartialEq,
    {
        let changed = match event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => convert(object)
                .and_then(|(namespace, name, value)| {
                    (self.get(&namespace, &name).as_deref() != Some(&value)).then_some(namespace)
                }),
            watcher::Event::Delete(object) => object.meta().namespace.clone(),
            watcher::Event::Init | watcher::Event::InitDone => None,
        };
        let vanished = self.apply(event, convert);
        changed.into_iter().chain(vanished).collect()
    }

    /// The object `name` in `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<V>> {
        self.0.get(namespace, name)
    }

    /// Every object in `namespace` that satisfies `keep`.
    pub fn in_namespace(&self, namespace: &str, keep: impl Fn(&V) -> bool) -> Vec<Arc<V>> {
        self.0.in_namespace(namespace, |v| keep(v))
    }

    /// Waits until the first list has completed.
    pub async fn wait_ready(&self) {
        self.0.wait_ready().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::{PolicyRule, Role};
    use std::collections::BTreeMap;

    fn role(namespace: &str, uid: &str, verbs: &[&str]) -> NamespacedObject {
        NamespacedObject::Role(Role {
            metadata: ObjectMeta {
                name: Some("baseline-app-reader".to_string()),
                namespace: Some(namespace.to_string()),
                uid: Some(uid.to_string()),
                resource_version: Some(format!("rv-{uid}")),
                labels: Some(BTreeMap::from([("a".to_string(), "b".to_string())])),
                ..ObjectMeta::default()
            },
            rules: Some(vec![PolicyRule {
                verbs: verbs.iter().map(|v| v.to_string()).collect(),
                ..PolicyRule::default()
            }]),
        })
    }

    #[test]
    fn uids_read_back_exactly_and_uuids_are_kept_as_bytes() {
        let uuid = "0f3c2a9e-7b1d-4c55-9e0a-2b8f6d4c1a00";
        assert!(matches!(Uid::new(uuid.to_owned()), Uid::Uuid(_)));
        for uid in [
            uuid,
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "0F3C2A9E-7B1D-4C55-9E0A-2B8F6D4C1A00",
            "0f3c2a9e7b1d4c559e0a2b8f6d4c1a00",
            "0f3c-2a9e7b1d-4c55-9e0a-2b8f6d4c1a00",
            "+f3c2a9e-7b1d-4c55-9e0a-2b8f6d4c1a00",
            "{0f3c2a9e-7b1d-4c55-9e0a-2b8f6d4c1a00}",
            "urn:uuid:0f3c2a9e-7b1d-4c55-9e0a-2b8f6d4c1a00",
            "uid-a",
            "",
        ] {
            assert_eq!(Uid::new(uid.to_owned()).to_text(), uid, "{uid}");
        }
        assert!(matches!(
            Uid::new("0F3C2A9E-7B1D-4C55-9E0A-2B8F6D4C1A00".to_owned()),
            Uid::Text(_)
        ));
    }

    #[test]
    fn identical_content_is_shared_and_identity_kept_apart() {
        let mut interner = Interner::default();
        let a = interner.intern(role("ns-a", "1", &["get"]));
        let b = interner.intern(role("ns-b", "2", &["get"]));
        let c = interner.intern(role("ns-c", "3", &["get", "list"]));
        assert!(Arc::ptr_eq(&a.shared, &b.shared), "same content, one copy");
        assert!(!Arc::ptr_eq(&a.shared, &c.shared));
        assert_eq!(interner.len(), 2);
        // The object handed out is the one that was cached, less what nothing reads.
        assert_eq!(b.object("ns-b"), role("ns-b", "2", &["get"]));
        assert_eq!(b.resource_version(), Some("rv-2"));
        assert_eq!(a.shared().namespace(), "");
    }

    #[test]
    fn of_managed_fields_only_our_plain_write_is_kept_and_shared() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
        let with_entries = |namespace: &str, uid: &str, operation: &str, written_at: i64| {
            let mut object = role(namespace, uid, &["get"]);
            meta_mut(&mut object).managed_fields = Some(vec![ManagedFieldsEntry {
                manager: Some(FIELD_MANAGER.to_string()),
                operation: Some(operation.to_string()),
                fields_v1: Some(FieldsV1(serde_json::json!({"f:rules": {}}))),
                time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::from_second(written_at).unwrap_or_default(),
                )),
                ..ManagedFieldsEntry::default()
            }]);
            object
        };
        let mut interner = Interner::default();
        let created_a = interner.intern(with_entries("ns-a", "1", "Update", 100));
        let created_b = interner.intern(with_entries("ns-b", "2", "Update", 200));
        let applied = interner.intern(with_entries("ns-c", "3", "Apply", 300));

        assert!(created_a.holds_plain_writes() && created_b.holds_plain_writes());
        assert!(!applied.holds_plain_writes());
        assert!(
            Arc::ptr_eq(&created_a.shared, &created_b.shared),
            "entries of different times, one shared marker"
        );
        assert_eq!(applied.object("ns-c"), role("ns-c", "3", &["get"]));
    }

    #[test]
    fn unused_content_is_swept() {
        let mut interner = Interner::default();
        for i in 0..200 {
            // Every content used once and dropped at once.
            drop(interner.intern(role("ns", "1", &[&format!("verb-{i}")])));
        }
        assert!(interner.len() < 100, "{} entries left", interner.len());
    }

    fn convert(item: &(&'static str, &'static str, u32)) -> Option<(String, String, u32)> {
        Some((item.0.to_string(), item.1.to_string(), item.2))
    }

    #[test]
    fn relist_replaces_contents_atomically() {
        let index = CompactIndex::default();
        assert!(!index.is_ready());
        index.apply(&watcher::Event::Init, convert);
        index.apply(&watcher::Event::InitApply(("a", "x", 1)), convert);
        assert!(index.get("a", "x").is_none(), "not visible before InitDone");
        index.apply(&watcher::Event::InitDone, convert);
        assert!(index.is_ready());
        assert_eq!(index.get("a", "x"), Some(1));
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

    #[test]
    fn a_name_repeated_in_many_namespaces_is_held_once() {
        let index = CompactIndex::default();
        index.apply(&watcher::Event::Init, convert);
        index.apply(&watcher::Event::InitApply(("a", "x", 1)), convert);
        index.apply(&watcher::Event::InitDone, convert);
        index.apply(&watcher::Event::Apply(("b", "x", 2)), convert);
        let objects = index.objects.read();
        let name_in = |namespace: &str| {
            objects
                .live
                .get(namespace)
                .and_then(|names| names.first())
                .map(|(n, _)| n.clone())
        };
        let (a, b) = (name_in("a").expect("a/x"), name_in("b").expect("b/x"));
        assert!(
            Arc::ptr_eq(&a, &b),
            "one copy of x, across the re-list and after"
        );
    }

    #[test]
    fn a_relist_names_the_namespaces_it_found_without_an_object_held_there() {
        let index = CompactIndex::default();
        let relist = |items: &[(&'static str, &'static str, u32)]| {
            let mut vanished = index.apply(&watcher::Event::Init, convert);
            for item in items {
                vanished.extend(index.apply(&watcher::Event::InitApply(*item), convert));
            }
            vanished.extend(index.apply(&watcher::Event::InitDone, convert));
            vanished.sort();
            vanished
        };
        assert!(relist(&[("a", "x", 1), ("a", "y", 1), ("b", "z", 1)]).is_empty());
        // y gone from a (x kept), all of b gone, c new, x changed: only the losses count.
        assert_eq!(relist(&[("a", "x", 2), ("c", "w", 1)]), ["a", "b"]);
        assert_eq!(index.len(), 2);
        // Events other than a re-list's end never name any.
        assert!(
            index
                .apply(&watcher::Event::Delete(("a", "x", 2)), convert)
                .is_empty()
        );
    }

    /// Held only when its value is odd: a watch wider than the index (every object of a
    /// kind, only ours held).
    fn odd(item: &(&'static str, &'static str, u32)) -> Option<(String, String, Option<u32>)> {
        Some((
            item.0.to_string(),
            item.1.to_string(),
            (item.2 % 2 == 1).then_some(item.2),
        ))
    }

    #[test]
    fn an_object_that_stops_matching_leaves_the_index() {
        let index = CompactIndex::default();
        index.apply_matching(&watcher::Event::Init, odd);
        index.apply_matching(&watcher::Event::InitApply(("a", "x", 1)), odd);
        index.apply_matching(&watcher::Event::InitApply(("a", "y", 2)), odd);
        index.apply_matching(&watcher::Event::InitDone, odd);
        assert_eq!(index.get("a", "x"), Some(1));
        assert!(index.get("a", "y").is_none(), "never held");
        // x changes so that it no longer belongs (our label removed): it goes, as the
        // deletion a label-filtered watch would have sent.
        index.apply_matching(&watcher::Event::Apply(("a", "x", 4)), odd);
        assert!(index.get("a", "x").is_none());
        // y starts to belong.
        index.apply_matching(&watcher::Event::Apply(("a", "y", 5)), odd);
        assert_eq!(index.get("a", "y"), Some(5));
        index.apply_matching(&watcher::Event::Delete(("a", "y", 5)), odd);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn the_string_pool_drops_strings_nothing_else_holds() {
        let mut pool = StringPool::default();
        for i in 0..5000 {
            // Each string dropped at once: a sweep keeps none of them.
            drop(pool.intern(&format!("value-{i}")));
        }
        let kept = pool.intern("kept");
        for i in 0..5000 {
            drop(pool.intern(&format!("other-{i}")));
        }
        assert!(pool.strings.len() <= 1024, "{} held", pool.strings.len());
        assert!(
            Arc::ptr_eq(&kept, &pool.intern("kept")),
            "a live string stays shared"
        );
    }
}

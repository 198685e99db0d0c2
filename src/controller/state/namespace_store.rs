//! What the namespace store keeps of a Namespace: the few fields the reconcilers read, in a
//! compact form. At 10,000 namespaces kube's `PartialObjectMeta<Namespace>` (labels as a
//! map of owned strings, our managedFields entry as a JSON tree) was the largest part of
//! the operator's memory; this keeps about a quarter of it.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

use crate::controller::state::cache::StringPool;
use crate::controller::state::repair_budget;
use crate::domain::pod_security::labels_owned_by_us;
use crate::domain::selection::LabelLookup;

/// A Namespace as the namespace store holds it. Its `metadata` has only name,
/// resourceVersion, creationTimestamp and deletionTimestamp (no uid: nothing reads a
/// namespace's, and the store's key would hold it a second time); labels and what our label
/// field manager's managedFields entries say are kept apart, read once from the watch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CachedNamespace {
    pub metadata: ObjectMeta,
    /// Sorted by key, without [`NAME_LABEL`] when it holds the namespace's own name (see
    /// `name_label`): what is left is the same on many namespaces (a rollout's Pod
    /// Security labels, a team label), so one copy of each such set is shared
    /// ([`SlicePool`]), and its keys and values with it ([`StringPool`]).
    labels: Arc<[(Arc<str>, Arc<str>)]>,
    /// Whether the namespace has [`NAME_LABEL`] set to its name, as the API server sets it
    /// on every namespace.
    name_label: bool,
    /// Label keys our label field manager owns (its Apply entry's `f:metadata.f:labels`),
    /// shared like the labels.
    owned_label_keys: Arc<[Arc<str>]>,
    /// When our label field manager last wrote the namespace (its entries' latest time).
    last_written_by_us: Option<Timestamp>,
}

/// The label the API server sets on every namespace to its name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl CachedNamespace {
    /// The labels, as the planning code reads them.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = self
            .labels
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        if let Some(name) = self.name_label() {
            labels.insert(NAME_LABEL.to_owned(), name.to_owned());
        }
        labels
    }

    fn name_label(&self) -> Option<&str> {
        self.name_label
            .then_some(self.metadata.name.as_deref())
            .flatten()
    }

    /// Label keys our label field manager owns on the namespace.
    pub fn owned_label_keys(&self) -> BTreeSet<String> {
        self.owned_label_keys
            .iter()
            .map(|key| key.to_string())
            .collect()
    }

    /// When our label field manager last wrote the namespace (wall clock), if it has.
    pub fn last_written_by_us(&self) -> Option<Timestamp> {
        self.last_written_by_us
    }
}

impl LabelLookup for CachedNamespace {
    fn label(&self, key: &str) -> Option<&str> {
        if key == NAME_LABEL
            && let Some(name) = self.name_label()
        {
            return Some(name);
        }
        let found = self
            .labels
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()?;
        self.labels.get(found).map(|(_, value)| value.as_ref())
    }
}

impl Resource for CachedNamespace {
    type DynamicType = ();
    type Scope = <Namespace as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Namespace::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        Namespace::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        Namespace::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        Namespace::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// kube's controller asks its object type to be deserializable; this one is only ever made
/// from a watched Namespace ([`NamespaceSlimmer`]), never read from JSON.
impl<'de> serde::Deserialize<'de> for CachedNamespace {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "a CachedNamespace is made from a watched Namespace, not read from JSON",
        ))
    }
}

/// Turns watched Namespaces into [`CachedNamespace`]s, sharing label strings between them.
#[derive(Debug)]
pub struct NamespaceSlimmer {
    label_manager: String,
    /// Label keys and values: most repeat on thousands of namespaces (Pod Security levels
    /// and versions, team names).
    pool: StringPool,
    label_sets: SlicePool<(Arc<str>, Arc<str>)>,
    owned_key_sets: SlicePool<Arc<str>>,
}

impl NamespaceSlimmer {
    /// `label_manager`: the field manager of our Pod Security label applies.
    pub fn new(label_manager: impl Into<String>) -> Self {
        Self {
            label_manager: label_manager.into(),
            pool: StringPool::default(),
            label_sets: SlicePool::default(),
            owned_key_sets: SlicePool::default(),
        }
    }

    pub fn slim(&mut self, namespace: PartialObjectMeta<Namespace>) -> CachedNamespace {
        let meta = namespace.metadata;
        let fields = meta.managed_fields.unwrap_or_default();
        let all_labels = meta.labels.unwrap_or_default();
        let name_label = meta.name.is_some() && all_labels.get(NAME_LABEL) == meta.name.as_ref();
        let mut labels: Vec<(Arc<str>, Arc<str>)> = all_labels
            .iter()
            .filter(|(key, _)| !(name_label && key.as_str() == NAME_LABEL))
            .map(|(key, value)| (self.pool.intern(key), self.pool.intern(value)))
            .collect();
        // A BTreeMap's order already; sorted again so lookups never depend on it.
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let owned_label_keys = labels_owned_by_us(&fields, &self.label_manager)
            .iter()
            .map(|key| self.pool.intern(key))
            .collect();
        CachedNamespace {
            metadata: ObjectMeta {
                name: meta.name,
                resource_version: meta.resource_version,
                creation_timestamp: meta.creation_timestamp,
                deletion_timestamp: meta.deletion_timestamp,
                ..ObjectMeta::default()
            },
            labels: self.label_sets.intern(labels),
            name_label,
            owned_label_keys: self.owned_key_sets.intern(owned_label_keys),
            last_written_by_us: repair_budget::latest_write(&fields, &self.label_manager, None),
        }
    }

    /// The same watch event, of the slimmed namespace.
    pub fn slim_event(
        &mut self,
        event: watcher::Event<PartialObjectMeta<Namespace>>,
    ) -> watcher::Event<CachedNamespace> {
        match event {
            watcher::Event::Apply(namespace) => watcher::Event::Apply(self.slim(namespace)),
            watcher::Event::Delete(namespace) => watcher::Event::Delete(self.slim(namespace)),
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitApply(namespace) => watcher::Event::InitApply(self.slim(namespace)),
            watcher::Event::InitDone => watcher::Event::InitDone,
        }
    }
}

/// One shared copy of each distinct slice (a namespace's label set): slices nothing else
/// holds any more are dropped at the next sweep.
#[derive(Debug)]
struct SlicePool<T> {
    slices: HashSet<Arc<[T]>>,
    /// Sweep when this many slices are held (twice the live ones after the last sweep).
    sweep_at: usize,
}

impl<T> Default for SlicePool<T> {
    fn default() -> Self {
        Self {
            slices: HashSet::new(),
            sweep_at: 0,
        }
    }
}

impl<T: Hash + Eq> SlicePool<T> {
    fn intern(&mut self, items: Vec<T>) -> Arc<[T]> {
        if let Some(shared) = self.slices.get(items.as_slice()) {
            return shared.clone();
        }
        if self.slices.len() >= self.sweep_at.max(1024) {
            self.slices.retain(|slice| Arc::strong_count(slice) > 1);
            self.sweep_at = self.slices.len() * 2;
        }
        let shared: Arc<[T]> = items.into();
        self.slices.insert(shared.clone());
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FIELD_MANAGER;

    fn watched(
        name: &str,
        labels: &[(&str, &str)],
        fields: serde_json::Value,
    ) -> PartialObjectMeta<Namespace> {
        let mut namespace = PartialObjectMeta::<Namespace>::default();
        namespace.metadata.name = Some(name.to_owned());
        namespace.metadata.uid = Some(format!("uid-{name}"));
        namespace.metadata.resource_version = Some("7".to_owned());
        namespace.metadata.annotations = Some(BTreeMap::from([(
            "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
            "{}".to_owned(),
        )]));
        namespace.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        namespace.metadata.managed_fields =
            Some(serde_json::from_value(fields).expect("managed fields"));
        namespace
    }

    fn fields() -> serde_json::Value {
        serde_json::json!([
            {"manager": "kube-baseline", "operation": "Apply", "time": "2026-11-27T03:00:00Z",
             "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:labels": {
                 "f:pod-security.kubernetes.io/enforce": {},
                 "f:pod-security.kubernetes.io/enforce-version": {}}}}},
            {"manager": "kube-baseline", "operation": "Update", "time": "2026-11-27T03:00:05Z",
             "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:labels": {"f:updated-by-us": {}}}}},
            {"manager": "kube-baseline", "operation": "Update", "subresource": "status",
             "time": "2026-11-27T03:09:00Z", "fieldsType": "FieldsV1", "fieldsV1": {}},
            {"manager": "kubectl-label", "operation": "Update", "time": "2026-11-27T03:10:00Z",
             "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:labels": {"f:env": {}}}}},
        ])
    }

    #[test]
    fn owned_label_keys_and_last_write_match_what_managed_fields_say() {
        let namespace = watched(
            "shop",
            &[
                ("env", "prod"),
                ("pod-security.kubernetes.io/enforce", "restricted"),
            ],
            fields(),
        );
        let managed = namespace
            .metadata
            .managed_fields
            .clone()
            .unwrap_or_default();
        let cached = NamespaceSlimmer::new(FIELD_MANAGER).slim(namespace);
        assert_eq!(
            cached.owned_label_keys(),
            labels_owned_by_us(&managed, FIELD_MANAGER)
        );
        assert_eq!(
            cached.owned_label_keys(),
            BTreeSet::from([
                "pod-security.kubernetes.io/enforce".to_owned(),
                "pod-security.kubernetes.io/enforce-version".to_owned(),
            ])
        );
        assert_eq!(
            cached.last_written_by_us(),
            repair_budget::latest_write(&managed, FIELD_MANAGER, None)
        );
        assert_eq!(
            cached.last_written_by_us(),
            Some("2026-11-27T03:00:05Z".parse().expect("timestamp"))
        );
    }

    #[test]
    fn another_field_manager_owns_nothing_of_ours() {
        let cached =
            NamespaceSlimmer::new("kube-baseline-shard-a").slim(watched("shop", &[], fields()));
        assert!(cached.owned_label_keys().is_empty());
        assert_eq!(cached.last_written_by_us(), None);
    }

    #[test]
    fn labels_and_what_the_reconcilers_read_are_kept_the_rest_dropped() {
        let labels = [("env", "prod"), ("a", "1"), ("team", "payments")];
        let cached = NamespaceSlimmer::new(FIELD_MANAGER).slim(watched("shop", &labels, fields()));
        assert_eq!(
            cached.labels(),
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        );
        assert_eq!(cached.label("env"), Some("prod"));
        assert_eq!(cached.label("a"), Some("1"));
        assert_eq!(cached.label("missing"), None);
        assert_eq!(cached.metadata.name.as_deref(), Some("shop"));
        assert_eq!(cached.metadata.uid, None);
        assert_eq!(cached.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(cached.metadata.annotations, None);
        assert_eq!(cached.metadata.managed_fields, None);
        assert_eq!(cached.metadata.labels, None);
    }

    #[test]
    fn namespaces_with_the_same_labels_but_their_name_share_one_label_set() {
        let mut slimmer = NamespaceSlimmer::new(FIELD_MANAGER);
        let mut slim = |name: &str, name_label: &str| {
            slimmer.slim(watched(
                name,
                &[(NAME_LABEL, name_label), ("env", "prod")],
                fields(),
            ))
        };
        let (a, b, odd) = (slim("a", "a"), slim("b", "b"), slim("c", "other"));
        assert!(Arc::ptr_eq(&a.labels, &b.labels), "labels shared");
        assert!(Arc::ptr_eq(&a.owned_label_keys, &b.owned_label_keys));
        assert_eq!(a.label(NAME_LABEL), Some("a"));
        assert_eq!(b.label(NAME_LABEL), Some("b"));
        assert_eq!(b.label("env"), Some("prod"));
        assert_eq!(
            b.labels(),
            BTreeMap::from([
                (NAME_LABEL.to_owned(), "b".to_owned()),
                ("env".to_owned(), "prod".to_owned()),
            ])
        );
        // Not the API server's form: kept as it is.
        assert_eq!(odd.label(NAME_LABEL), Some("other"));
        assert_eq!(
            odd.labels().get(NAME_LABEL).map(String::as_str),
            Some("other")
        );
        let unnamed = slimmer.slim(watched("d", &[("env", "prod")], fields()));
        assert_eq!(unnamed.label(NAME_LABEL), None);
        assert!(!unnamed.labels().contains_key(NAME_LABEL));
        assert!(Arc::ptr_eq(&a.labels, &unnamed.labels), "the same set");
    }

    #[test]
    fn namespaces_share_their_label_strings() {
        let mut slimmer = NamespaceSlimmer::new(FIELD_MANAGER);
        let a = slimmer.slim(watched("a", &[("env", "prod")], fields()));
        let b = slimmer.slim(watched("b", &[("env", "prod")], fields()));
        assert!(Arc::ptr_eq(&a.labels[0].0, &b.labels[0].0), "key shared");
        assert!(Arc::ptr_eq(&a.labels[0].1, &b.labels[0].1), "value shared");
        assert!(Arc::ptr_eq(&a.owned_label_keys[0], &b.owned_label_keys[0]));
    }
}

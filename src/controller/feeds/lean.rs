//! Watched objects decoded without their managedFields' field sets.
//!
//! Every object the API server sends carries `metadata.managedFields`, and each entry's
//! `fieldsV1` is a tree of every field its manager set: decoded, a `serde_json::Value` of
//! maps and strings, more allocations than the rest of a NetworkPolicy. The caches of the
//! generated kinds read only which manager holds fields by which operation (see
//! `state::cache::Interner`), so [`Lean`] skips those trees while decoding: the parser
//! still reads past them, but builds nothing (`fieldsV1` decodes as absent). In a
//! converge, decoding managedFields was about 7 % of the operator's instructions
//! (BENCHMARKS.md, "Where the operator's instructions go").
//!
//! Only `metadata.managedFields[*].fieldsV1` of the top-level object is skipped: a key
//! named `fieldsV1` anywhere else (a label, a quota's resource name) decodes as usual, and
//! everything outside `metadata` is handed to the object's own decoder untouched. Not for
//! kinds whose field sets are read (a Namespace's label ownership).

use std::borrow::Cow;
use std::fmt;

use std::fmt::Debug;

use futures::{Stream, TryStreamExt};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::controller::feeds::initial_lists;
use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    value::UnitDeserializer,
};

/// `K`, decoded without the field sets of its managedFields entries.
#[derive(Debug, Clone)]
pub struct Lean<K>(pub K);

impl<'de, K: Deserialize<'de>> Deserialize<'de> for Lean<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(Level {
            inner: deserializer,
            context: Path::Object,
        })
        .map(Lean)
    }
}

impl<K: Resource> Resource for Lean<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn metadata_api() -> bool {
        K::metadata_api()
    }
    fn url_path(dt: &Self::DynamicType, namespace: Option<&str>) -> String {
        K::url_path(dt, namespace)
    }
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        self.0.meta()
    }
    fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        self.0.meta_mut()
    }
}

/// A watch of every `K` in the cluster (see [`initial_lists::watch`]), decoded lean.
pub fn watch_all<K>(
    client: &Client,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    initial_lists::watch(Api::<Lean<K>>::all(client.clone()), config).map_ok(unwrap_event)
}

/// The watch event of the object inside.
pub fn unwrap_event<K>(event: watcher::Event<Lean<K>>) -> watcher::Event<K> {
    match event {
        watcher::Event::Apply(Lean(object)) => watcher::Event::Apply(object),
        watcher::Event::Delete(Lean(object)) => watcher::Event::Delete(object),
        watcher::Event::InitApply(Lean(object)) => watcher::Event::InitApply(object),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// Where in the object a value sits, on the way down to the field sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// The object itself: its `metadata` leads on.
    Object,
    /// `metadata`: its `managedFields` lead on.
    Metadata,
    /// `metadata.managedFields`: each element is an entry.
    ManagedFields,
    /// One entry of `metadata.managedFields`: its `fieldsV1` is skipped.
    Entry,
}

impl Path {
    /// The key of a map at this level that leads on (or is skipped, in an entry); None:
    /// a map here is not watched (managedFields is a list, not a map).
    fn key(self) -> Option<&'static str> {
        match self {
            Self::Object => Some("metadata"),
            Self::Metadata => Some("managedFields"),
            Self::ManagedFields => None,
            Self::Entry => Some("fieldsV1"),
        }
    }

    /// The level of the value under [`Path::key`] (None: skipped).
    fn below(self) -> Option<Self> {
        match self {
            Self::Object => Some(Self::Metadata),
            Self::Metadata => Some(Self::ManagedFields),
            Self::ManagedFields => Some(Self::Entry),
            Self::Entry => None,
        }
    }
}

/// A deserializer of a value at a level (its `context`): maps and sequences it yields are
/// watched for the key that leads on.
struct Level<D> {
    inner: D,
    context: Path,
}

/// Forwards each `deserialize_*` method to the inner deserializer with the visitor
/// wrapped.
macro_rules! forward_deserialize {
    ($wrap:expr; $($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                let wrap = $wrap;
                self.inner.$method($($arg,)* wrap(visitor, self.context))
            }
        )*
    };
}

/// The deserializer methods every wrapper forwards.
macro_rules! all_deserialize_methods {
    ($wrap:expr) => {
        forward_deserialize! { $wrap;
            deserialize_any(), deserialize_bool(), deserialize_i8(), deserialize_i16(),
            deserialize_i32(), deserialize_i64(), deserialize_i128(), deserialize_u8(),
            deserialize_u16(), deserialize_u32(), deserialize_u64(), deserialize_u128(),
            deserialize_f32(), deserialize_f64(), deserialize_char(), deserialize_str(),
            deserialize_string(), deserialize_bytes(), deserialize_byte_buf(),
            deserialize_option(), deserialize_unit(), deserialize_seq(),
            deserialize_map(), deserialize_identifier(), deserialize_ignored_any(),
            deserialize_unit_struct(name: &'static str),
            deserialize_newtype_struct(name: &'static str),
            deserialize_tuple(len: usize),
            deserialize_tuple_struct(name: &'static str, len: usize),
            deserialize_struct(name: &'static str, fields: &'static [&'static str]),
            deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        }
        fn is_human_readable(&self) -> bool {
            self.inner.is_human_readable()
        }
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Level<D> {
    type Error = D::Error;
    all_deserialize_methods!(|visitor, level| LevelVisitor {
        inner: visitor,
        level
    });
}

/// The visitor of a value at `level`: hands on maps and sequences watched, the rest as is.
struct LevelVisitor<V> {
    inner: V,
    level: Path,
}

/// Forwards each `visit_*` method of a scalar to the inner visitor.
macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, value: $ty) -> Result<Self::Value, E> {
                self.inner.$method(value)
            }
        )*
    };
}

macro_rules! forward_scalar_visits {
    () => {
        forward_visit! {
            visit_bool(bool), visit_i8(i8), visit_i16(i16), visit_i32(i32), visit_i64(i64),
            visit_i128(i128), visit_u8(u8), visit_u16(u16), visit_u32(u32), visit_u64(u64),
            visit_u128(u128), visit_f32(f32), visit_f64(f64), visit_char(char),
            visit_bytes(&[u8]), visit_borrowed_bytes(&'de [u8]), visit_byte_buf(Vec<u8>),
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            self.inner.visit_none()
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            self.inner.visit_unit()
        }
        fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
            self.inner.visit_enum(data)
        }
        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.inner.expecting(formatter)
        }
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for LevelVisitor<V> {
    type Value = V::Value;

    forward_scalar_visits!();
    forward_visit! { visit_str(&str), visit_borrowed_str(&'de str), visit_string(String) }

    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(Level {
            inner,
            context: self.level,
        })
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, inner: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(Level {
            inner,
            context: self.level,
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        if self.level == Path::ManagedFields {
            self.inner.visit_seq(ManagedFieldsSeq { inner: seq })
        } else {
            self.inner.visit_seq(seq)
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let Some(wanted) = self.level.key() else {
            return self.inner.visit_map(map);
        };
        self.inner.visit_map(LevelMap {
            inner: map,
            level: self.level,
            wanted,
            next_is_key: false,
        })
    }
}

/// The elements of `metadata.managedFields`, each an entry.
struct ManagedFieldsSeq<A> {
    inner: A,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for ManagedFieldsSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(LevelSeed {
            inner: seed,
            level: Path::Entry,
        })
    }
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// A map at `level`: the value under its key ([`Path::key`]) is watched one level down
/// (or skipped); every other value goes to its decoder untouched.
struct LevelMap<A> {
    inner: A,
    level: Path,
    /// The level's key ([`Path::key`]).
    wanted: &'static str,
    /// The key just read is the level's key.
    next_is_key: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for LevelMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.next_is_key = false;
        self.inner.next_key_seed(KeySeed {
            inner: seed,
            wanted: self.wanted,
            found: &mut self.next_is_key,
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        if !std::mem::take(&mut self.next_is_key) {
            return self.inner.next_value_seed(seed);
        }
        match self.level.below() {
            Some(below) => self.inner.next_value_seed(LevelSeed {
                inner: seed,
                level: below,
            }),
            // A field set: read past, decoded as absent.
            None => {
                self.inner.next_value::<IgnoredAny>()?;
                seed.deserialize(UnitDeserializer::<A::Error>::new())
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// A seed whose value is decoded at `level`.
struct LevelSeed<T> {
    inner: T,
    level: Path,
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for LevelSeed<T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, inner: D) -> Result<T::Value, D::Error> {
        self.inner.deserialize(Level {
            inner,
            context: self.level,
        })
    }
}

/// A map key's seed that notes whether the key is `wanted`.
struct KeySeed<'a, T> {
    inner: T,
    wanted: &'static str,
    found: &'a mut bool,
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, inner: D) -> Result<T::Value, D::Error> {
        self.inner.deserialize(KeyDeserializer {
            inner,
            context: KeyWatch {
                wanted: self.wanted,
                found: self.found,
            },
        })
    }
}

/// What a key's visitor compares the key with, and where it notes a match.
struct KeyWatch<'a> {
    wanted: &'static str,
    found: &'a mut bool,
}

struct KeyDeserializer<'a, D> {
    inner: D,
    context: KeyWatch<'a>,
}

impl<'de, 'a, D: Deserializer<'de>> Deserializer<'de> for KeyDeserializer<'a, D> {
    type Error = D::Error;
    all_deserialize_methods!(|visitor, watch: KeyWatch<'a>| KeyVisitor {
        inner: visitor,
        watch
    });
}

/// The visitor of a map key: notes whether it is the wanted one.
struct KeyVisitor<'a, V> {
    inner: V,
    watch: KeyWatch<'a>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for KeyVisitor<'_, V> {
    type Value = V::Value;

    forward_scalar_visits!();

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        *self.watch.found = key == self.watch.wanted;
        self.inner.visit_str(key)
    }
    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        *self.watch.found = key == self.watch.wanted;
        self.inner.visit_borrowed_str(key)
    }
    fn visit_string<E: de::Error>(self, key: String) -> Result<Self::Value, E> {
        *self.watch.found = key == self.watch.wanted;
        self.inner.visit_string(key)
    }
    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(inner)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, inner: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(inner)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(map)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use kube::core::PartialObjectMeta;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    /// What a lean decode must equal: `value` with each managedFields entry's `fieldsV1`
    /// removed, and nothing else changed.
    fn without_field_sets(mut value: Value) -> Value {
        if let Some(entries) = value
            .get_mut("metadata")
            .and_then(|meta| meta.get_mut("managedFields"))
            .and_then(Value::as_array_mut)
        {
            for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
                entry.remove("fieldsV1");
            }
        }
        value
    }

    fn policy_json() -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": "baseline-default-deny",
                "namespace": "shop",
                "uid": "0b4e4c36-1b8e-4a43-9c1e-2f3f1c1d5e6a",
                "resourceVersion": "42",
                "labels": {"fieldsV1": "a label named like it", "app.kubernetes.io/managed-by": "kube-baseline"},
                "annotations": {"managedFields": "an annotation named like it"},
                "managedFields": [
                    {
                        "manager": "kube-baseline",
                        "operation": "Update",
                        "apiVersion": "networking.k8s.io/v1",
                        "time": "2026-12-05T10:00:00Z",
                        "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:podSelector": {}, "f:policyTypes": {}}}
                    },
                    {
                        "manager": "kubectl",
                        "operation": "Apply",
                        "apiVersion": "networking.k8s.io/v1",
                        "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:spec": {"f:ingress": {}}},
                        "subresource": ""
                    }
                ]
            },
            "spec": {"podSelector": {"matchLabels": {"fieldsV1": "x"}}, "policyTypes": ["Ingress", "Egress"]}
        })
    }

    #[test]
    fn a_policy_decodes_as_in_full_less_the_field_sets() {
        let json = policy_json().to_string();
        let lean: Lean<NetworkPolicy> = serde_json::from_str(&json).unwrap();
        let mut full: NetworkPolicy = serde_json::from_str(&json).unwrap();
        let entries = full.metadata.managed_fields.as_mut().unwrap();
        assert!(entries.iter().all(|entry| entry.fields_v1.is_some()));
        for entry in entries.iter_mut() {
            entry.fields_v1 = None;
        }
        assert_eq!(lean.0, full);
        // Keys named like the skipped ones elsewhere are kept.
        assert_eq!(
            lean.0
                .metadata
                .labels
                .unwrap()
                .get("fieldsV1")
                .map(String::as_str),
            Some("a label named like it")
        );
    }

    #[test]
    fn a_quota_resource_named_like_a_field_set_is_kept() {
        let json = json!({
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "q", "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"hard": {"fieldsV1": "3", "pods": "10"}},
            "status": {"used": {"fieldsV1": "1"}}
        });
        let lean: Lean<ResourceQuota> = serde_json::from_value(json.clone()).unwrap();
        let full: ResourceQuota = serde_json::from_value(without_field_sets(json)).unwrap();
        assert_eq!(lean.0, full);
        assert!(lean.0.spec.unwrap().hard.unwrap().contains_key("fieldsV1"));
    }

    #[test]
    fn pod_metadata_decodes_lean() {
        let json = json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web"},
                "managedFields": [{"manager": "kubelet", "operation": "Update", "subresource": "status",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:conditions": {}}}}]}
        });
        let lean: Lean<PartialObjectMeta<Pod>> = serde_json::from_value(json.clone()).unwrap();
        let full: PartialObjectMeta<Pod> =
            serde_json::from_value(without_field_sets(json)).unwrap();
        assert_eq!(lean.0.metadata, full.metadata);
        let entry = &lean.0.metadata.managed_fields.unwrap()[0];
        assert_eq!(entry.manager.as_deref(), Some("kubelet"));
        assert_eq!(entry.fields_v1, None);
    }

    #[test]
    fn a_malformed_object_fails_as_in_full() {
        for broken in [
            json!({"metadata": {"name": "p", "managedFields": [{"manager": 5}]}}),
            json!({"metadata": {"name": "p", "managedFields": {"manager": "m"}}}),
            json!({"metadata": {"name": 7}}),
            json!({"metadata": {"name": "p"}, "spec": {"policyTypes": "Ingress"}}),
        ] {
            let text = broken.to_string();
            let full = serde_json::from_str::<NetworkPolicy>(&text).unwrap_err();
            let lean = serde_json::from_str::<Lean<NetworkPolicy>>(&text).unwrap_err();
            assert_eq!(lean.to_string(), full.to_string(), "{text}");
        }
    }

    /// Any JSON, with keys drawn from the ones the decoder looks for.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,3}".prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            let key = prop_oneof![
                Just("metadata".to_string()),
                Just("managedFields".to_string()),
                Just("fieldsV1".to_string()),
                "[a-z]{1,2}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(key, inner, 0..5)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// Random JSON in the places around the field sets, and as a field set.
    fn object_shaped() -> impl Strategy<Value = Value> {
        (any_json(), any_json(), any_json(), any_json(), any_json()).prop_map(
            |(fields, other, element, meta_other, top_other)| {
                json!({
                    "metadata": {
                        "managedFields": [{"fieldsV1": fields, "manager": other}, element],
                        "fieldsV1": meta_other.clone(),
                        "x": meta_other,
                    },
                    "fieldsV1": top_other.clone(),
                    "spec": {"managedFields": [{"fieldsV1": top_other}]},
                })
            },
        )
    }

    proptest! {
        #[test]
        fn only_the_field_sets_of_managed_fields_entries_are_dropped(
            value in prop_oneof![any_json(), object_shaped()]
        ) {
            let lean: Lean<Value> = serde_json::from_str(&value.to_string()).unwrap();
            // A skipped field set decodes as absent: into a Value, as null.
            let mut expected = value.clone();
            if let Some(entries) = expected
                .get_mut("metadata")
                .and_then(|meta| meta.get_mut("managedFields"))
                .and_then(Value::as_array_mut)
            {
                for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
                    if let Some(fields) = entry.get_mut("fieldsV1") {
                        *fields = Value::Null;
                    }
                }
            }
            prop_assert_eq!(lean.0, expected);
        }
    }
}

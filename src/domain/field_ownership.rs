//! Who owns the fields of the objects we write (their managedFields), and how a plain
//! create's fields become our server-side apply's.
//!
//! A generated object is created with a plain create under our field manager: it costs
//! the API server about half what a server-side apply does (no YAML decoding, no merge).
//! The API server records a create's fields under an `Update` entry of our manager, and
//! server-side apply treats that entry as another manager: a later apply that leaves a
//! field out (a quota key, an ownerReference when a Retain baseline releases the object)
//! would leave it in place. So before the first apply to an object we created, the
//! fields of that entry are moved into our `Apply` entry (what `kubectl`'s client-side
//! to server-side apply migration does with its own entries).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use serde_json::Value;

use crate::domain::generated::NamespacedObject;

const PLAIN_WRITE: &str = "Update";
const APPLY: &str = "Apply";

/// Whether `entry` records `manager`'s plain writes (create, update, patch) of the object
/// itself, not of a subresource.
pub fn is_plain_write_by(entry: &ManagedFieldsEntry, manager: &str) -> bool {
    is_entry_of(entry, manager, PLAIN_WRITE)
}

fn is_entry_of(entry: &ManagedFieldsEntry, manager: &str, operation: &str) -> bool {
    entry.manager.as_deref() == Some(manager)
        && entry.operation.as_deref() == Some(operation)
        && entry.subresource.as_deref().is_none_or(str::is_empty)
}

/// Whether applying `desired` over `observed` must remove something `observed` has: a
/// label, an ownerReference (by uid), or a key of an object in its content (`spec`, or a
/// Role's `rules`) that `desired` lacks. Other lists of the kinds we generate (policy
/// rules, policy types, Role rules, limits) are atomic: an apply replaces them whole,
/// whoever owned them. Only then does the apply need the create's fields taken over first;
/// a repair that puts values back (the common case) does not, and costs one write. Labels
/// or keys others added count too: taking over first is never wrong, only a write more.
pub fn apply_removes_fields(desired: &NamespacedObject, observed: &NamespacedObject) -> bool {
    let (desired, observed) = (desired.to_json(), observed.to_json());
    let keys_missing = |path: &[&str]| {
        let at = |value: &Value| {
            path.iter()
                .try_fold(value.clone(), |v, key| v.get(key).cloned())
        };
        at(&observed).is_some_and(|o| has_keys_missing_from(&o, at(&desired).as_ref()))
    };
    let owner_uids = |object: &Value| -> Vec<Value> {
        object["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|reference| reference["uid"].clone())
            .collect()
    };
    let desired_owners = owner_uids(&desired);
    keys_missing(&["metadata", "labels"])
        || keys_missing(&["spec"])
        || keys_missing(&["rules"])
        || owner_uids(&observed)
            .iter()
            .any(|uid| !desired_owners.contains(uid))
}

/// Whether `observed` (a JSON object tree) has a key, at any depth of nested objects, that
/// `desired` lacks. Arrays and scalars are leaves.
fn has_keys_missing_from(observed: &Value, desired: Option<&Value>) -> bool {
    let Some(observed) = observed.as_object() else {
        return false;
    };
    let Some(desired) = desired.and_then(Value::as_object) else {
        return !observed.is_empty();
    };
    observed.iter().any(|(key, value)| match desired.get(key) {
        None => !value.is_null(),
        Some(wanted) => has_keys_missing_from(value, Some(wanted)),
    })
}

/// The entry that marks an object whose fields `manager` holds by a plain write: all the
/// cache keeps of an object's managedFields (the same in every object we created, so the
/// cache shares it).
pub fn plain_write_marker(manager: &str) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        manager: Some(manager.to_string()),
        operation: Some(PLAIN_WRITE.to_string()),
        ..ManagedFieldsEntry::default()
    }
}

/// `entries` with `manager`'s plain-write entries merged into its apply entry (the first
/// plain-write entry becomes the apply entry when there is none), other managers' entries
/// and their order unchanged; None when `manager` holds nothing by a plain write.
pub fn plain_writes_made_applied(
    entries: &[ManagedFieldsEntry],
    manager: &str,
) -> Option<Vec<ManagedFieldsEntry>> {
    let plain: Vec<&ManagedFieldsEntry> = entries
        .iter()
        .filter(|entry| is_plain_write_by(entry, manager))
        .collect();
    if plain.is_empty() {
        return None;
    }
    let plain_fields = plain
        .iter()
        .filter_map(|entry| entry.fields_v1.as_ref())
        .fold(serde_json::json!({}), |mut all, fields| {
            merge_fields(&mut all, &fields.0);
            all
        });
    let has_apply_entry = entries.iter().any(|e| is_entry_of(e, manager, APPLY));
    let mut made_applied = false;
    let mut result = Vec::with_capacity(entries.len());
    for entry in entries {
        let is_apply_entry = is_entry_of(entry, manager, APPLY);
        let is_plain = is_plain_write_by(entry, manager);
        if is_apply_entry || (is_plain && !has_apply_entry && !made_applied) {
            let mut applied = entry.clone();
            applied.operation = Some(APPLY.to_string());
            let mut fields = entry
                .fields_v1
                .as_ref()
                .map_or_else(|| serde_json::json!({}), |f| f.0.clone());
            merge_fields(&mut fields, &plain_fields);
            applied.fields_v1 = Some(FieldsV1(fields));
            applied.fields_type = Some("FieldsV1".to_string());
            made_applied = true;
            result.push(applied);
        } else if !is_plain {
            result.push(entry.clone());
        }
    }
    Some(result)
}

/// Adds every field of `from` to `into` (FieldsV1 trees: objects whose leaves are `{}`).
fn merge_fields(into: &mut serde_json::Value, from: &serde_json::Value) {
    let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) else {
        return;
    };
    for (key, child) in from {
        match into.get_mut(key) {
            Some(existing) => merge_fields(existing, child),
            None => {
                into.insert(key.clone(), child.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(
        manager: &str,
        operation: &str,
        subresource: Option<&str>,
        fields: serde_json::Value,
    ) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.to_string()),
            operation: Some(operation.to_string()),
            subresource: subresource.map(str::to_string),
            api_version: Some("v1".to_string()),
            fields_type: Some("FieldsV1".to_string()),
            fields_v1: Some(FieldsV1(fields)),
            time: None,
        }
    }

    #[test]
    fn a_created_objects_entry_becomes_our_apply_entry_with_the_same_fields() {
        let created = json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}}, "f:spec": {"f:hard": {".": {}, "f:pods": {}}}});
        let other = entry(
            "kubectl-edit",
            "Update",
            None,
            json!({"f:spec": {"f:hard": {"f:services": {}}}}),
        );
        let entries = [
            entry("kube-baseline", "Update", None, created.clone()),
            other.clone(),
        ];

        let made = plain_writes_made_applied(&entries, "kube-baseline").expect("ours to move");

        assert_eq!(
            made,
            vec![entry("kube-baseline", "Apply", None, created), other]
        );
    }

    #[test]
    fn plain_writes_are_merged_into_an_existing_apply_entry() {
        let entries = [
            entry(
                "kube-baseline",
                "Apply",
                None,
                json!({"f:spec": {"f:hard": {"f:pods": {}}}}),
            ),
            entry(
                "other",
                "Apply",
                None,
                json!({"f:metadata": {"f:labels": {"f:team": {}}}}),
            ),
            entry(
                "kube-baseline",
                "Update",
                None,
                json!({"f:metadata": {"f:ownerReferences": {".": {}}}, "f:spec": {"f:hard": {"f:services": {}}}}),
            ),
        ];

        let made = plain_writes_made_applied(&entries, "kube-baseline").expect("ours to move");

        assert_eq!(
            made,
            vec![
                entry(
                    "kube-baseline",
                    "Apply",
                    None,
                    json!({"f:spec": {"f:hard": {"f:pods": {}, "f:services": {}}}, "f:metadata": {"f:ownerReferences": {".": {}}}})
                ),
                entries[1].clone(),
            ]
        );
    }

    #[test]
    fn nothing_moves_without_a_plain_write_of_ours_to_the_object_itself() {
        let entries = [
            entry("kube-baseline", "Apply", None, json!({"f:spec": {}})),
            entry(
                "kube-baseline",
                "Update",
                Some("status"),
                json!({"f:status": {}}),
            ),
            entry("someone-else", "Update", None, json!({"f:spec": {}})),
        ];

        assert_eq!(plain_writes_made_applied(&entries, "kube-baseline"), None);
        assert!(
            !entries
                .iter()
                .any(|e| is_plain_write_by(e, "kube-baseline"))
        );
        assert!(is_plain_write_by(&entries[2], "someone-else"));
    }

    fn quota(hard: &[&str], owner: Option<&str>, labels: &[&str]) -> NamespacedObject {
        let object = json!({
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {
                "name": "q",
                "labels": labels.iter().map(|l| (l.to_string(), json!("x"))).collect::<serde_json::Map<_, _>>(),
                "ownerReferences": owner.map(|uid| json!([{"apiVersion": "kube-baseline.dev/v1alpha1", "kind": "SecurityBaseline", "name": "b", "uid": uid}])),
            },
            "spec": {"hard": hard.iter().map(|k| (k.to_string(), json!("1"))).collect::<serde_json::Map<_, _>>()},
        });
        NamespacedObject::ResourceQuota(serde_json::from_value(object).expect("a quota"))
    }

    fn policy(spec: serde_json::Value) -> NamespacedObject {
        let object = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "p"},
            "spec": spec,
        });
        NamespacedObject::NetworkPolicy(serde_json::from_value(object).expect("a policy"))
    }

    #[test]
    fn an_apply_removes_fields_when_the_baseline_or_a_release_drops_them() {
        let created = quota(&["pods", "services"], Some("u1"), &["a"]);
        assert!(
            !apply_removes_fields(&created, &created),
            "a repair to the same content"
        );
        assert!(
            apply_removes_fields(&quota(&["pods"], Some("u1"), &["a"]), &created),
            "a quota key"
        );
        assert!(
            apply_removes_fields(&quota(&["pods", "services"], None, &["a"]), &created),
            "released"
        );
        assert!(
            apply_removes_fields(&quota(&["pods", "services"], Some("u2"), &["a"]), &created),
            "another owner"
        );
        assert!(
            apply_removes_fields(&quota(&["pods", "services"], Some("u1"), &[]), &created),
            "a label"
        );
        assert!(
            !apply_removes_fields(&created, &quota(&["pods"], Some("u1"), &[])),
            "only adds"
        );
    }

    #[test]
    fn atomic_lists_are_replaced_whole_and_need_nothing_taken_over() {
        let desired = policy(
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []}),
        );
        let edited = policy(
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{"from": [{"podSelector": {}}]}]}),
        );
        assert!(
            !apply_removes_fields(&desired, &edited),
            "a team's rule, put back by a repair"
        );
        let ingress_only =
            policy(json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}));
        assert!(
            apply_removes_fields(&ingress_only, &desired),
            "egress dropped from the baseline"
        );
        let selecting = policy(
            json!({"podSelector": {"matchLabels": {"app": "x"}}, "policyTypes": ["Ingress"]}),
        );
        assert!(
            apply_removes_fields(&ingress_only, &selecting),
            "a selector key someone added"
        );
    }

    #[test]
    fn the_cache_marker_says_a_plain_write() {
        assert!(is_plain_write_by(
            &plain_write_marker("kube-baseline"),
            "kube-baseline"
        ));
        assert!(!is_plain_write_by(
            &plain_write_marker("kube-baseline"),
            "kube-baseline-x"
        ));
    }
}

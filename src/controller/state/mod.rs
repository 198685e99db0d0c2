//! What the reconcilers read and remember: the context they share (`context`), the
//! indexes (`cache`), the namespace store's form of a Namespace (`namespace_store`), per-namespace results (`results`), writes whose watch events have not
//! arrived (`writes_in_flight`), the per-object write budget (`repair_budget`) and the Pod
//! Security previews (`previews`).

pub mod cache;
pub mod context;
pub mod namespace_store;
pub mod previews;
pub mod repair_budget;
pub mod results;
pub mod writes_in_flight;

/// A hash of a value's JSON form (the Kubernetes types implement no `Hash`). Equal values
/// serialize equally (the types' maps are sorted). The JSON goes into a buffer kept per
/// thread and is hashed in one piece: fed to the hasher piece by piece, as the serializer
/// writes it, the hasher's per-call cost was most of the work (callgrind). Serializing
/// these types cannot fail; if it did, the value would share its hash with others and
/// still be told apart where equality is checked, or be taken for an equal write at worst.
pub fn json_hash(value: &impl serde::Serialize) -> u64 {
    use std::cell::RefCell;
    use std::hash::Hasher;
    /// A buffer larger than this after a hash is dropped, not kept for the next one.
    const KEPT_CAPACITY: usize = 64 * 1024;
    thread_local! {
        static JSON: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    JSON.with_borrow_mut(|json| {
        json.clear();
        let _ = serde_json::to_writer(&mut *json, value);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        hasher.write(json);
        if json.capacity() > KEPT_CAPACITY {
            *json = Vec::new();
        }
        hasher.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::json_hash;
    use serde_json::json;

    #[test]
    fn equal_values_hash_alike_and_a_change_anywhere_changes_the_hash() {
        let policy = json!({"metadata": {"name": "deny-all", "labels": {"a": "1"}}, "spec": {}});
        assert_eq!(json_hash(&policy), json_hash(&policy.clone()));
        let relabelled =
            json!({"metadata": {"name": "deny-all", "labels": {"a": "2"}}, "spec": {}});
        assert_ne!(json_hash(&policy), json_hash(&relabelled));
        // The JSON's bytes are hashed, not the pieces: a string split differently differs.
        assert_ne!(
            json_hash(&json!(["ab", "c"])),
            json_hash(&json!(["a", "bc"]))
        );
    }

    #[test]
    fn a_hash_after_a_large_value_sees_only_its_own_value() {
        let small = json!({"name": "x"});
        let before = json_hash(&small);
        let large = json!({"data": "y".repeat(200 * 1024)});
        let large_hash = json_hash(&large);
        assert_eq!(json_hash(&small), before);
        assert_eq!(json_hash(&large), large_hash);
        assert_ne!(before, large_hash);
    }
}

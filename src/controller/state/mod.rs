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

/// A hash of a value's JSON form, streamed into the hasher (no string or
/// `serde_json::Value` is built; the Kubernetes types implement no `Hash`). Equal values
/// serialize equally (the types' maps are sorted). Serializing into a hasher cannot fail;
/// if it did, the value would share its hash with others and still be told apart where
/// equality is checked, or be taken for an equal write at worst.
pub fn json_hash(value: &impl serde::Serialize) -> u64 {
    use std::hash::Hasher;
    struct HashWriter(std::collections::hash_map::DefaultHasher);
    impl std::io::Write for HashWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.write(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut writer = HashWriter(std::collections::hash_map::DefaultHasher::new());
    let _ = serde_json::to_writer(&mut writer, value);
    writer.0.finish()
}

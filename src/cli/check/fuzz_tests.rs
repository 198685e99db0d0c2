//! Property tests of manifest reading: whatever bytes arrive, `check` reports errors and never
//! panics, and every error names its file and document. Bounded (a few hundred cases each) so
//! they run with the unit tests; raise PROPTEST_CASES for a longer hunt.

use proptest::prelude::*;

use super::documents::parse_named;
use super::inventory::Inventory;

/// Reads text the way `check` reads a file, then builds the snapshot; the errors as printed.
fn read(text: &str) -> Result<(), Vec<String>> {
    let documents = parse_named("fuzz.yaml", text).map_err(messages)?;
    let mut inventory = Inventory::default();
    inventory.add_documents(&documents).map_err(messages)?;
    let _ = inventory.into_snapshot(false);
    Ok(())
}

fn messages<E: ToString>(errors: Vec<E>) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

const KINDS: [&str; 11] = [
    "Namespace",
    "NetworkPolicy",
    "Role",
    "ResourceQuota",
    "LimitRange",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "Node",
    "NodeReport",
    "List",
];

/// YAML scalars and small structures of the kinds manifests hold, including odd ones.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("''".to_string()),
        Just("'*'".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-z0-9./:-]{0,12}".prop_map(|s| format!("'{s}'")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec(("[a-zA-Z]{1,10}", inner), 0..4).prop_map(|pairs| {
                let fields: Vec<String> = pairs
                    .into_iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect();
                format!("{{{}}}", fields.join(", "))
            }),
        ]
    })
}

/// A manifest of a known kind with random metadata and body fields.
fn manifest() -> impl Strategy<Value = String> {
    (
        prop::sample::select(KINDS.to_vec()),
        prop::option::of("[a-z0-9-]{0,20}"),
        prop::option::of("[a-z0-9-]{0,20}"),
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "spec",
                    "rules",
                    "subjects",
                    "roleRef",
                    "items",
                    "aggregationRule",
                    "metadata",
                ]),
                value(),
            ),
            0..4,
        ),
    )
        .prop_map(|(kind, name, namespace, fields)| {
            let api_version = match kind {
                "NetworkPolicy" => "networking.k8s.io/v1",
                "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding" => {
                    "rbac.authorization.k8s.io/v1"
                }
                "NodeReport" => "kube-baseline.dev/v1alpha1",
                _ => "v1",
            };
            let mut text = format!("apiVersion: {api_version}\nkind: {kind}\nmetadata: {{");
            if let Some(name) = name {
                text.push_str(&format!("name: '{name}', "));
            }
            if let Some(namespace) = namespace {
                text.push_str(&format!("namespace: '{namespace}'"));
            }
            text.push_str("}\n");
            for (key, value) in fields {
                text.push_str(&format!("{key}: {value}\n"));
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::domain::fuzz_tests::cases()))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Err(errors) = read(&text) {
            prop_assert!(errors.iter().all(|e| e.contains("fuzz.yaml")), "{errors:?}");
        }
    }

    #[test]
    fn malformed_manifests_are_errors_naming_file_and_document(documents in prop::collection::vec(manifest(), 1..5)) {
        let text = documents.join("---\n");
        if let Err(errors) = read(&text) {
            for error in &errors {
                prop_assert!(error.contains("fuzz.yaml"), "{error}");
                prop_assert!(error.contains("document"), "{error}");
            }
        }
    }
}

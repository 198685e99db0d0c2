//! Property tests of the pure core's inputs from outside: label selectors, audit policies,
//! kubelet configuration and process flags. Whatever they hold, the checks return results or
//! errors and never panic. Bounded (256 cases each) so they run with the unit tests; set
//! PROPTEST_CASES for a longer hunt (RELIABILITY.md).

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::api::{NamespaceSelector, SelectorOperator, SelectorRequirement};
use crate::domain::audit_policy::{coverage_failures, parse_policy};
use crate::domain::control_plane::ProcessFlags;
use crate::domain::kubelet::effective_config;
use crate::domain::selection::selector_matches;

/// 256 cases, or PROPTEST_CASES (an explicit `with_cases` would ignore the variable).
pub(crate) fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[a-c]{1,2}", "[x-z]{0,2}", 0..5)
}

fn selector() -> impl Strategy<Value = NamespaceSelector> {
    let operator = prop::sample::select(vec![
        SelectorOperator::In,
        SelectorOperator::NotIn,
        SelectorOperator::Exists,
        SelectorOperator::DoesNotExist,
    ]);
    let requirement = (
        "[a-c]{1,2}",
        operator,
        prop::collection::vec("[x-z]{0,2}", 0..3),
    )
        .prop_map(|(key, operator, values)| SelectorRequirement {
            key,
            operator,
            values,
        });
    (labels(), prop::collection::vec(requirement, 0..3)).prop_map(
        |(match_labels, match_expressions)| NamespaceSelector {
            match_labels,
            match_expressions,
        },
    )
}

/// YAML-ish text built from the tokens policies and kubelet configs are made of.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "apiVersion: audit.k8s.io/v1\n",
        "kind: Policy\n",
        "kind: KubeletConfiguration\n",
        "rules:\n",
        "- level: Metadata\n",
        "- level: None\n",
        "- level: RequestResponse\n",
        "  resources: [{group: '', resources: [secrets]}]\n",
        "  verbs: [get]\n",
        "  omitStages: [RequestReceived]\n",
        "authentication: {anonymous: {enabled: true}}\n",
        "authorization: {mode: AlwaysAllow}\n",
        "readOnlyPort: 10255\n",
        "readOnlyPort: 'x'\n",
        "null\n",
        "- \n",
        "  : :\n",
        "{\n",
        "[\n",
        "key: [1, {a: b}]\n",
    ]);
    prop::collection::vec(token, 0..12).prop_map(|tokens| tokens.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn selectors_follow_their_semantics(selector in selector(), labels in labels()) {
        let matched = selector_matches(&selector, &labels);
        if selector.match_labels.is_empty() && selector.match_expressions.is_empty() {
            prop_assert!(matched, "an empty selector matches everything");
        }
        if !selector.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            prop_assert!(!matched, "a missing matchLabels pair never matches");
        }
    }

    #[test]
    fn audit_policies_parse_or_fail_cleanly(text in prop_oneof![yamlish(), "\\PC{0,120}"]) {
        if let Ok(policy) = parse_policy(&text) {
            let _ = coverage_failures(&policy);
        }
    }

    #[test]
    fn kubelet_configs_merge_or_fail_cleanly(
        config in prop::option::of(prop_oneof![yamlish(), "\\PC{0,80}"]),
        drop_ins in prop::collection::vec(("[0-9]{2}-[a-z]{1,4}\\.conf", yamlish()), 0..3),
        flags in prop::collection::vec(prop_oneof![
            Just("--anonymous-auth=false".to_string()),
            Just("--read-only-port".to_string()),
            Just("10255".to_string()),
            Just("--authorization-mode=AlwaysAllow".to_string()),
            "--[a-z-]{1,12}(=[a-z0-9]{0,4})?",
            "\\PC{0,10}",
        ], 0..6),
    ) {
        let flags = ProcessFlags::parse(&flags);
        let _ = effective_config(config.as_deref(), &drop_ins, &flags);
    }
}

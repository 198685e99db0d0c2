//! Property tests of the pure core's inputs from outside: label selectors, audit policies,
//! kubelet configuration and process flags. Whatever they hold, the checks return results or
//! errors and never panic. Bounded (256 cases each) so they run with the unit tests; set
//! PROPTEST_CASES for a longer hunt (RELIABILITY.md).

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::api::{NamespaceSelector, SelectorOperator, SelectorRequirement};
use crate::domain::node::audit_policy::{coverage_failures, parse_policy};
use crate::domain::node::flags::ProcessFlags;
use crate::domain::node::kubelet::effective_config;
use crate::domain::selection::{selector_matches, validate_selector};

/// 256 cases, or PROPTEST_CASES (an explicit `with_cases` would ignore the variable).
pub(crate) fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Label keys from a small alphabet (so selectors and labels share keys often), some with a
/// prefix.
fn label_key() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-c]{1,2}", 1 => "(x\\.io|k8s-1)/[a-c]"]
}

/// Label values from a small alphabet, the empty value included.
fn label_value() -> impl Strategy<Value = String> {
    "[x-z]{0,2}"
}

/// A namespace's labels: valid, as the API server only stores valid ones.
fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(label_key(), label_value(), 0..5)
}

/// Mostly valid keys and values, sometimes one Kubernetes rejects (each alternative breaks
/// one rule of label keys or values).
fn selector_key() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => label_key(),
        1 => prop::sample::select(vec![
            "", "-a", "a-", "_a", "a_", "a b", "a/", "/a", "a/b/c", "X.io/a", "x..io/a",
            "-x.io/a", "x.io/-a", "a\n", "é",
        ])
        .prop_map(str::to_string),
        1 => "[a-c]{62,64}",
        1 => "[a-c]{1,2}\\.[a-c]{250,252}/a",
    ]
}

fn selector_value() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => label_value(),
        1 => prop::sample::select(vec!["-x", "x-", "x y", "x/y", "_x", ".", "x\n", "\u{e9}"])
            .prop_map(str::to_string),
        1 => "[x-z]{62,64}",
    ]
}

fn selector() -> impl Strategy<Value = NamespaceSelector> {
    let operator = prop::sample::select(vec![
        SelectorOperator::In,
        SelectorOperator::NotIn,
        SelectorOperator::Exists,
        SelectorOperator::DoesNotExist,
    ]);
    let requirement = (
        selector_key(),
        operator,
        prop::collection::vec(selector_value(), 0..3),
        prop::bool::weighted(0.85),
    )
        .prop_map(|(key, operator, mut values, values_fit)| {
            // Mostly the values the operator takes, so that most selectors are valid.
            if values_fit {
                match operator {
                    SelectorOperator::In | SelectorOperator::NotIn if values.is_empty() => {
                        values.push("x".to_string());
                    }
                    SelectorOperator::Exists | SelectorOperator::DoesNotExist => values.clear(),
                    _ => {}
                }
            }
            SelectorRequirement {
                key,
                operator,
                values,
            }
        });
    (
        prop::collection::btree_map(selector_key(), selector_value(), 0..3),
        prop::collection::vec(requirement, 0..4),
    )
        .prop_map(|(match_labels, match_expressions)| NamespaceSelector {
            match_labels,
            match_expressions,
        })
}

/// Label selectors as k8s.io/apimachinery (v0.36) defines them, written from its source
/// apart from `selection.rs`: `metav1.LabelSelectorAsSelector` (an empty selector is
/// Everything; every matchLabels pair is an Equals requirement), `labels.NewRequirement`
/// (its validation) and `Requirement.Matches`.
mod reference {
    use std::collections::BTreeMap;
    use std::sync::LazyLock;

    use regex::Regex;

    use crate::api::{NamespaceSelector, SelectorOperator};

    /// pkg/api/validate/content: labelKeyFmt (a label name), labelValueFmt,
    /// dns1123SubdomainFmt; Go's `^…$` anchors the whole text, as `\A…\z` does here.
    static NAME: LazyLock<Regex> =
        LazyLock::new(|| anchored("([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"));
    static VALUE: LazyLock<Regex> =
        LazyLock::new(|| anchored("(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"));
    static SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
        anchored("[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
    });

    fn anchored(pattern: &str) -> Regex {
        Regex::new(&format!("\\A(?:{pattern})\\z")).expect("apimachinery's pattern compiles")
    }

    /// content.IsLabelKey: `[prefix/]name`, prefix a DNS-1123 subdomain (at most 253),
    /// name at most 63.
    fn is_label_key(key: &str) -> bool {
        let parts: Vec<&str> = key.split('/').collect();
        let (prefix, name) = match parts.as_slice() {
            [name] => (None, *name),
            [prefix, name] => (Some(*prefix), *name),
            _ => return false,
        };
        let prefix_ok =
            prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && SUBDOMAIN.is_match(p));
        prefix_ok && !name.is_empty() && name.len() <= 63 && NAME.is_match(name)
    }

    /// content.IsLabelValue.
    fn is_label_value(value: &str) -> bool {
        value.len() <= 63 && VALUE.is_match(value)
    }

    #[derive(Debug, Clone, Copy)]
    enum Operator {
        Equals,
        In,
        NotIn,
        Exists,
        DoesNotExist,
    }

    struct Requirement<'a> {
        key: &'a str,
        operator: Operator,
        values: &'a [String],
    }

    impl<'a> Requirement<'a> {
        /// labels.NewRequirement: None where it returns an error.
        fn new(key: &'a str, operator: Operator, values: &'a [String]) -> Option<Self> {
            let count_ok = match operator {
                Operator::In | Operator::NotIn => !values.is_empty(),
                Operator::Equals => values.len() == 1,
                Operator::Exists | Operator::DoesNotExist => values.is_empty(),
            };
            let valid = is_label_key(key) && count_ok && values.iter().all(|v| is_label_value(v));
            valid.then_some(Self {
                key,
                operator,
                values,
            })
        }

        /// Requirement.Matches.
        fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
            let has_value = |v: &String| self.values.contains(v);
            match self.operator {
                Operator::In | Operator::Equals => labels.get(self.key).is_some_and(has_value),
                Operator::NotIn => !labels.get(self.key).is_some_and(has_value),
                Operator::Exists => labels.contains_key(self.key),
                Operator::DoesNotExist => !labels.contains_key(self.key),
            }
        }
    }

    /// What `LabelSelectorAsSelector(selector)` then `Matches(labels)` say: None when the
    /// selector is rejected.
    pub fn evaluate(
        selector: &NamespaceSelector,
        labels: &BTreeMap<String, String>,
    ) -> Option<bool> {
        if selector.match_labels.is_empty() && selector.match_expressions.is_empty() {
            return Some(true);
        }
        let mut requirements = Vec::new();
        for (key, value) in &selector.match_labels {
            requirements.push(Requirement::new(
                key,
                Operator::Equals,
                std::slice::from_ref(value),
            )?);
        }
        for expression in &selector.match_expressions {
            let operator = match expression.operator {
                SelectorOperator::In => Operator::In,
                SelectorOperator::NotIn => Operator::NotIn,
                SelectorOperator::Exists => Operator::Exists,
                SelectorOperator::DoesNotExist => Operator::DoesNotExist,
            };
            requirements.push(Requirement::new(
                &expression.key,
                operator,
                &expression.values,
            )?);
        }
        Some(requirements.iter().all(|r| r.matches(labels)))
    }
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

    /// `selector_matches` is apimachinery's selector (the reference above); a selector
    /// apimachinery rejects is invalid for us too and matches nothing.
    #[test]
    fn selectors_follow_their_semantics(selector in selector(), labels in labels()) {
        let expected = reference::evaluate(&selector, &labels);
        prop_assert_eq!(
            validate_selector(&selector).is_ok(),
            expected.is_some(),
            "valid for us and for apimachinery alike: {:?}",
            validate_selector(&selector)
        );
        prop_assert_eq!(selector_matches(&selector, &labels), expected.unwrap_or(false));
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

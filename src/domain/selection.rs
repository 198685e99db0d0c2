//! Which namespaces a baseline selects.

use std::collections::BTreeMap;

use crate::api::{NamespaceSelector, SecurityBaselineSpec, SelectorOperator};

/// Namespaces locking down would break a cluster; excluded unless includeSystemNamespaces.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// What selection needs to know about a namespace.
#[derive(Debug, Clone, Copy)]
pub struct NamespaceFacts<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// True when `spec` selects the namespace. `operator_namespace` is always excluded like the
/// system namespaces: the operator must not cut itself off from the API server.
pub fn selects(
    spec: &SecurityBaselineSpec,
    namespace: NamespaceFacts<'_>,
    operator_namespace: &str,
) -> bool {
    if spec.excluded_namespaces.iter().any(|n| n == namespace.name) {
        return false;
    }
    if !spec.include_system_namespaces && is_system_namespace(namespace.name, operator_namespace) {
        return false;
    }
    selector_matches(&spec.namespace_selector, namespace.labels)
}

/// True for the always-excluded namespaces.
pub fn is_system_namespace(name: &str, operator_namespace: &str) -> bool {
    SYSTEM_NAMESPACES.contains(&name) || name == operator_namespace
}

/// metav1.LabelSelector semantics: every matchLabels pair and every expression must hold;
/// an empty selector matches everything.
pub fn selector_matches(selector: &NamespaceSelector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
        && selector.match_expressions.iter().all(|expr| {
            let value = labels.get(&expr.key);
            match expr.operator {
                SelectorOperator::In => value.is_some_and(|v| expr.values.contains(v)),
                SelectorOperator::NotIn => value.is_none_or(|v| !expr.values.contains(v)),
                SelectorOperator::Exists => value.is_some(),
                SelectorOperator::DoesNotExist => value.is_none(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SecurityBaselineSpec {
        serde_saphyr::from_str(yaml).expect("spec parses")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selected(spec: &SecurityBaselineSpec, name: &str, pairs: &[(&str, &str)]) -> bool {
        let labels = labels(pairs);
        selects(
            spec,
            NamespaceFacts {
                name,
                labels: &labels,
            },
            "kube-baseline-system",
        )
    }

    #[test]
    fn empty_selector_selects_all_but_system_namespaces() {
        let s = spec("namespaceSelector: {}");
        assert!(selected(&s, "shop", &[]));
        for system in [
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "kube-baseline-system",
        ] {
            assert!(!selected(&s, system, &[]), "{system} is excluded");
        }
    }

    #[test]
    fn include_system_namespaces_selects_them() {
        let s = spec("includeSystemNamespaces: true");
        assert!(selected(&s, "kube-system", &[]));
    }

    #[test]
    fn excluded_namespaces_win_over_labels() {
        let s = spec("namespaceSelector: {matchLabels: {env: prod}}\nexcludedNamespaces: [legacy]");
        assert!(selected(&s, "shop", &[("env", "prod")]));
        assert!(!selected(&s, "legacy", &[("env", "prod")]));
        assert!(!selected(&s, "dev", &[("env", "dev")]));
    }

    #[test]
    fn match_expressions_follow_label_selector_semantics() {
        let s = spec(
            "namespaceSelector:\n  matchExpressions:\n  - {key: tier, operator: In, values: [web, api]}\n  - {key: legacy, operator: DoesNotExist}\n  - {key: env, operator: NotIn, values: [dev]}",
        );
        assert!(selected(&s, "a", &[("tier", "web")]));
        assert!(selected(&s, "a", &[("tier", "api"), ("env", "prod")]));
        assert!(!selected(&s, "a", &[("tier", "db")]));
        assert!(!selected(&s, "a", &[("tier", "web"), ("legacy", "")]));
        assert!(!selected(&s, "a", &[("tier", "web"), ("env", "dev")]));
        let exists = spec("namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}");
        assert!(selected(&exists, "a", &[("team", "")]));
        assert!(!selected(&exists, "a", &[]));
    }
}

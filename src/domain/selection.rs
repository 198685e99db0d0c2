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
    selects_labelled(spec, namespace.name, namespace.labels, operator_namespace)
}

/// [`selects`] over any form of a namespace's labels (the controller's namespace store
/// keeps them in a compact form of its own).
pub fn selects_labelled(
    spec: &SecurityBaselineSpec,
    name: &str,
    labels: &dyn LabelLookup,
    operator_namespace: &str,
) -> bool {
    if spec.excluded_namespaces.iter().any(|n| n == name) {
        return false;
    }
    if !spec.include_system_namespaces && is_system_namespace(name, operator_namespace) {
        return false;
    }
    selector_matches(&spec.namespace_selector, labels)
}

/// A label's value by key: what selection reads of a namespace's labels.
pub trait LabelLookup {
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelLookup for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// True for the always-excluded namespaces.
pub fn is_system_namespace(name: &str, operator_namespace: &str) -> bool {
    SYSTEM_NAMESPACES.contains(&name) || name == operator_namespace
}

/// metav1.LabelSelector semantics: every matchLabels pair and every expression must hold;
/// an empty selector matches everything. A selector Kubernetes rejects (apimachinery's
/// `LabelSelectorAsSelector` errs: see [`validate_selector`]) matches nothing.
pub fn selector_matches(selector: &NamespaceSelector, labels: &dyn LabelLookup) -> bool {
    validate_selector(selector).is_ok()
        && selector
            .match_labels
            .iter()
            .all(|(key, value)| labels.label(key) == Some(value.as_str()))
        && selector.match_expressions.iter().all(|expr| {
            let value = labels.label(&expr.key);
            let listed = |v: &str| expr.values.iter().any(|listed| listed == v);
            match expr.operator {
                SelectorOperator::In => value.is_some_and(listed),
                SelectorOperator::NotIn => value.is_none_or(|v| !listed(v)),
                SelectorOperator::Exists => value.is_some(),
                SelectorOperator::DoesNotExist => value.is_none(),
            }
        })
}

/// Why Kubernetes rejects a label selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSelector {
    #[error("{key:?} is not a valid label key")]
    Key { key: String },
    #[error("{value:?} is not a valid label value (label {key:?})")]
    Value { key: String, value: String },
    #[error("operator {operator:?} on {key:?} needs at least one value")]
    NoValues {
        key: String,
        operator: SelectorOperator,
    },
    #[error("operator {operator:?} on {key:?} takes no values")]
    UnexpectedValues {
        key: String,
        operator: SelectorOperator,
    },
}

/// Why a baseline must not be acted on because of its selector: Kubernetes rejects it (the
/// CRD admits malformed label keys and values), and "matches nothing" would release every
/// namespace it holds. The controller holds such a baseline; `check` does not evaluate it.
pub fn invalid_selector(spec: &SecurityBaselineSpec) -> Option<String> {
    validate_selector(&spec.namespace_selector)
        .err()
        .map(|error| format!("spec.namespaceSelector is invalid: {error}"))
}

/// The checks of apimachinery's `LabelSelectorAsSelector` (`labels.NewRequirement`): every
/// key a label key, every value a label value, In and NotIn with values, Exists and
/// DoesNotExist without. The CRD rejects the operator/values mismatches at admission but
/// not malformed keys or values. (An unknown operator cannot be read at all: the baseline
/// is unreadable.)
pub fn validate_selector(selector: &NamespaceSelector) -> Result<(), InvalidSelector> {
    let pairs = selector
        .match_labels
        .iter()
        .map(|(k, v)| (k, std::slice::from_ref(v)));
    let expressions = selector
        .match_expressions
        .iter()
        .map(|expr| (&expr.key, expr.values.as_slice()));
    for (key, values) in pairs.chain(expressions) {
        if !is_label_key(key) {
            return Err(InvalidSelector::Key { key: key.clone() });
        }
        if let Some(value) = values.iter().find(|v| !is_label_value(v)) {
            return Err(InvalidSelector::Value {
                key: key.clone(),
                value: value.clone(),
            });
        }
    }
    for expr in &selector.match_expressions {
        let takes_values = matches!(
            expr.operator,
            SelectorOperator::In | SelectorOperator::NotIn
        );
        if takes_values && expr.values.is_empty() {
            return Err(InvalidSelector::NoValues {
                key: expr.key.clone(),
                operator: expr.operator,
            });
        }
        if !takes_values && !expr.values.is_empty() {
            return Err(InvalidSelector::UnexpectedValues {
                key: expr.key.clone(),
                operator: expr.operator,
            });
        }
    }
    Ok(())
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63
/// characters.
fn is_label_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(key),
    }
}

/// At most 63 alphanumerics, `-`, `_` and `.`, starting and ending with an alphanumeric.
fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= 63
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Empty, or what a label name may be.
fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_label_name(value)
}

/// RFC 1123 subdomain: at most 253 characters, dot-separated labels of lowercase
/// alphanumerics and `-`, each starting and ending with an alphanumeric.
fn is_dns_subdomain(prefix: &str) -> bool {
    prefix.len() <= 253
        && prefix.split('.').all(|label| {
            let bytes = label.as_bytes();
            let lower_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            bytes.first().is_some_and(lower_alnum)
                && bytes.last().is_some_and(lower_alnum)
                && bytes.iter().all(|b| lower_alnum(b) || *b == b'-')
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

    #[test]
    fn a_selector_kubernetes_rejects_selects_nothing() {
        // Each would select the namespace if the invalid part were ignored.
        for selector in [
            "{matchExpressions: [{key: env, operator: NotIn, values: []}]}",
            "{matchExpressions: [{key: legacy, operator: DoesNotExist, values: [x]}]}",
            "{matchExpressions: [{key: 'legacy flag', operator: DoesNotExist}]}",
            "{matchExpressions: [{key: 'x.io/a/b', operator: DoesNotExist}]}",
            "{matchExpressions: [{key: 'X.io/a', operator: NotIn, values: [x]}]}",
            "{matchExpressions: [{key: env, operator: In, values: [prod, 'not valid']}]}",
            "{matchLabels: {env: prod}, matchExpressions: [{key: '-a', operator: DoesNotExist}]}",
        ] {
            let s = spec(&format!("namespaceSelector: {selector}"));
            assert!(
                validate_selector(&s.namespace_selector).is_err(),
                "{selector} is invalid"
            );
            assert!(!selected(&s, "a", &[("env", "prod")]), "{selector}");
        }
        let prefixed = spec("namespaceSelector: {matchLabels: {'x.io/team': a}}");
        assert_eq!(validate_selector(&prefixed.namespace_selector), Ok(()));
        assert!(selected(&prefixed, "a", &[("x.io/team", "a")]));
    }
}

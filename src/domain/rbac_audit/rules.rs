//! Rule-level checks: what one set of effective PolicyRules grants, evaluated the way the
//! Kubernetes RBAC authorizer matches requests (`pkg/apis/rbac/v1/evaluation_helpers.go`), so
//! a finding means the permission really is granted and a near miss really is not.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::PolicyRule;

use super::ids;

/// The API group of RBAC objects, whose `escalate` and `bind` verbs lead to escalation.
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// A resource rule, with the fields the authorizer matches on. Non-resource-URL rules have
/// no place here: they never grant anything inside a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Rule {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    pub resource_names: Vec<String>,
}

impl Rule {
    /// The resource part of a PolicyRule; None when the rule names no resources (a
    /// nonResourceURLs rule, or an empty one, which grants nothing).
    pub fn from_policy_rule(rule: &PolicyRule) -> Option<Self> {
        let resources = rule.resources.clone().unwrap_or_default();
        if resources.is_empty() || rule.verbs.is_empty() {
            return None;
        }
        Some(Self {
            api_groups: rule.api_groups.clone().unwrap_or_default(),
            resources,
            verbs: rule.verbs.clone(),
            resource_names: rule.resource_names.clone().unwrap_or_default(),
        })
    }

    fn allows_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    fn allows_group(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == "*" || g == group)
    }

    /// Whether the rule covers `target` (`resource` or `resource/subresource`). Matches as
    /// the authorizer does: `*`, an exact name, or `*/subresource`; `pods/*` is NOT a
    /// wildcard for pod subresources. A target `resource/*` stands for "any subresource of
    /// resource" (impersonation of user extras is authorized per extra key).
    fn allows_resource(&self, target: &str) -> bool {
        self.resources.iter().any(|rule_resource| {
            if rule_resource == "*" || rule_resource == target {
                return true;
            }
            match target.split_once('/') {
                Some((base, "*")) => {
                    rule_resource.starts_with("*/")
                        || rule_resource
                            .split_once('/')
                            .is_some_and(|(rule_base, _)| rule_base == base)
                }
                Some((_, subresource)) => rule_resource.strip_prefix("*/") == Some(subresource),
                None => false,
            }
        })
    }

    /// Whether the rule grants `verb` on `resource` in API group `group`, for at least one
    /// object (a rule limited to resourceNames still grants access to those objects).
    fn grants(&self, verb: &str, group: &str, resource: &str) -> bool {
        self.allows_verb(verb) && self.allows_group(group) && self.allows_resource(resource)
    }

    /// "\"*\" verbs on pods", "list on \"*\" resources", "get on deployments in \"*\"
    /// apiGroups": what a wildcard rule grants, in the words of a finding.
    fn describe_wildcards(&self) -> String {
        let verbs = if self.verbs.iter().any(|v| v == "*") {
            "\"*\" verbs".to_owned()
        } else {
            join_distinct(self.verbs.iter().cloned())
        };
        let resources = if self.resources.iter().any(|r| r == "*") {
            "\"*\" resources".to_owned()
        } else {
            join_distinct(self.resources.iter().map(|r| {
                if r.starts_with("*/") {
                    format!("\"{r}\"")
                } else {
                    r.clone()
                }
            }))
        };
        let groups = if self.api_groups.iter().any(|g| g == "*") {
            " in \"*\" apiGroups"
        } else {
            ""
        };
        format!("{verbs} on {resources}{groups}")
    }

    /// Whether any field carries a `*` (`*/subresource` counts: it spans every resource).
    fn has_wildcard(&self) -> bool {
        self.verbs.iter().any(|v| v == "*")
            || self
                .resources
                .iter()
                .any(|r| r == "*" || r.starts_with("*/"))
            || self.api_groups.iter().any(|g| g == "*")
    }
}

/// A rule as it applies to a subject, with the ClusterRole that actually holds it (for
/// aggregated ClusterRoles, the component role to fix); None for a namespaced Role's rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct EffectiveRule {
    pub rule: Rule,
    pub source: Option<String>,
}

/// Where the rules are granted, which decides whether cluster-scoped resources count: a
/// RoleBinding (or an unbound Role) grants namespaced resources only, so `nodes/proxy`
/// there grants nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GrantScope {
    Namespace,
    Cluster,
}

/// One rule-level check that failed: the check, what is granted (for a human), and the
/// offending rules in rule order.
#[derive(Debug)]
pub(super) struct RuleFinding<'r> {
    pub check: &'static str,
    pub what: String,
    pub rules: Vec<&'r EffectiveRule>,
}

/// (verb, API group, resource) triples one check looks for.
type Probe = (&'static str, &'static str, &'static str);

const ESCALATION_PROBES: &[Probe] = &[
    ("escalate", RBAC_GROUP, "roles"),
    ("escalate", RBAC_GROUP, "clusterroles"),
    ("bind", RBAC_GROUP, "roles"),
    ("bind", RBAC_GROUP, "clusterroles"),
    ("impersonate", "", "users"),
    ("impersonate", "", "groups"),
    ("impersonate", "", "serviceaccounts"),
    ("impersonate", "authentication.k8s.io", "uids"),
    ("impersonate", "authentication.k8s.io", "userextras/*"),
];

const SECRETS_READ_PROBES: &[Probe] = &[
    ("get", "", "secrets"),
    ("list", "", "secrets"),
    ("watch", "", "secrets"),
];

/// kubectl exec/attach/port-forward POST (create) or upgrade a GET to a stream; before
/// Kubernetes 1.35 `get` alone was enough, so both count.
const POD_EXEC_PROBES: &[Probe] = &[
    ("create", "", "pods/exec"),
    ("get", "", "pods/exec"),
    ("create", "", "pods/attach"),
    ("get", "", "pods/attach"),
    ("create", "", "pods/portforward"),
    ("get", "", "pods/portforward"),
];

/// Every verb the kubelet maps its API to; any of them on nodes/proxy reaches the kubelet.
const NODES_PROXY_PROBES: &[Probe] = &[
    ("get", "", "nodes/proxy"),
    ("create", "", "nodes/proxy"),
    ("update", "", "nodes/proxy"),
    ("patch", "", "nodes/proxy"),
    ("delete", "", "nodes/proxy"),
    ("list", "", "nodes/proxy"),
    ("watch", "", "nodes/proxy"),
];

/// Creating any of these runs a pod of the creator's choosing, with any ServiceAccount of
/// the namespace.
const WORKLOAD_CREATE_PROBES: &[Probe] = &[
    ("create", "", "pods"),
    ("create", "", "replicationcontrollers"),
    ("create", "apps", "deployments"),
    ("create", "apps", "replicasets"),
    ("create", "apps", "statefulsets"),
    ("create", "apps", "daemonsets"),
    ("create", "batch", "jobs"),
    ("create", "batch", "cronjobs"),
];

/// Ways to obtain a ServiceAccount token: mint one, or read a legacy token Secret.
const TOKEN_ACCESS_PROBES: &[Probe] = &[
    ("create", "", "serviceaccounts/token"),
    ("get", "", "secrets"),
    ("list", "", "secrets"),
    ("watch", "", "secrets"),
];

/// Probes a rule grants, in probe order.
fn granted<'p>(rule: &Rule, probes: &'p [Probe]) -> Vec<&'p Probe> {
    probes
        .iter()
        .filter(|(verb, group, resource)| rule.grants(verb, group, resource))
        .collect()
}

/// `resource` or `resource.group`, the way kubectl names resources (`userextras/*`, "any
/// user extra", shows as `userextras`).
fn qualified(group: &str, resource: &str) -> String {
    let resource = resource.strip_suffix("/*").unwrap_or(resource);
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

/// Joins distinct items in first-seen order: "a, b and c".
fn join_distinct<I: IntoIterator<Item = String>>(items: I) -> String {
    let mut seen = BTreeSet::new();
    let distinct: Vec<String> = items
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect();
    match distinct.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// "create on serviceaccounts/token; get, list and watch on secrets": the verbs granted,
/// grouped by resource in probe order.
fn verbs_by_resource(hits: &[&Probe]) -> String {
    let mut resources: Vec<&str> = Vec::new();
    for (_, _, resource) in hits {
        if !resources.contains(resource) {
            resources.push(resource);
        }
    }
    resources
        .iter()
        .map(|resource| {
            let verbs = join_distinct(
                hits.iter()
                    .filter(|(_, _, r)| r == resource)
                    .map(|(verb, _, _)| (*verb).to_owned()),
            );
            format!("{verbs} on {resource}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs a probe-based check: every rule granting at least one probe offends; `what` is
/// built from the granted probes.
fn probe_check<'r>(
    rules: &'r [EffectiveRule],
    check: &'static str,
    probes: &[Probe],
    describe: impl Fn(&[&Probe]) -> String,
) -> Option<RuleFinding<'r>> {
    let mut hits = Vec::new();
    let mut offending = Vec::new();
    for effective in rules {
        let granted = granted(&effective.rule, probes);
        if !granted.is_empty() {
            hits.extend(granted);
            offending.push(effective);
        }
    }
    (!offending.is_empty()).then(|| RuleFinding {
        check,
        what: describe(&hits),
        rules: offending,
    })
}

/// Every rule-level check that fails for `rules` granted in `scope`, in check-ID order.
pub(super) fn evaluate(rules: &[EffectiveRule], scope: GrantScope) -> Vec<RuleFinding<'_>> {
    let mut findings = Vec::new();

    let wildcard_rules: Vec<&EffectiveRule> =
        rules.iter().filter(|r| r.rule.has_wildcard()).collect();
    if let Some(first) = wildcard_rules.first() {
        findings.push(RuleFinding {
            check: ids::WILDCARD,
            what: first.rule.describe_wildcards(),
            rules: wildcard_rules,
        });
    }

    findings.extend(probe_check(
        rules,
        ids::ESCALATION_VERBS,
        ESCALATION_PROBES,
        |hits| {
            let verbs = join_distinct(hits.iter().map(|(verb, _, _)| (*verb).to_owned()));
            let targets = join_distinct(
                hits.iter()
                    .map(|(_, group, resource)| qualified(group, resource)),
            );
            format!("{verbs} on {targets} (privilege escalation)")
        },
    ));

    findings.extend(probe_check(
        rules,
        ids::SECRETS_READ,
        SECRETS_READ_PROBES,
        |hits| {
            let verbs = join_distinct(hits.iter().map(|(verb, _, _)| (*verb).to_owned()));
            format!("{verbs} on secrets")
        },
    ));

    findings.extend(probe_check(rules, ids::POD_EXEC, POD_EXEC_PROBES, |hits| {
        let verbs = join_distinct(hits.iter().map(|(verb, _, _)| (*verb).to_owned()));
        let targets = join_distinct(hits.iter().map(|(_, _, resource)| (*resource).to_owned()));
        format!("{verbs} on {targets} (shell and network access into running pods)")
    }));

    if scope == GrantScope::Cluster {
        findings.extend(probe_check(
            rules,
            ids::NODES_PROXY,
            NODES_PROXY_PROBES,
            |hits| {
                let verbs = join_distinct(hits.iter().map(|(verb, _, _)| (*verb).to_owned()));
                format!(
                    "{verbs} on nodes/proxy (the kubelet API, which can exec into every pod of a node)"
                )
            },
        ));
    }

    let workload = probe_check(
        rules,
        ids::WORKLOAD_CREATE_WITH_TOKENS,
        WORKLOAD_CREATE_PROBES,
        |hits| {
            join_distinct(
                hits.iter()
                    .map(|(_, group, resource)| qualified(group, resource)),
            )
        },
    );
    let tokens = probe_check(
        rules,
        ids::WORKLOAD_CREATE_WITH_TOKENS,
        TOKEN_ACCESS_PROBES,
        verbs_by_resource,
    );
    if let (Some(workload), Some(tokens)) = (workload, tokens) {
        // Show one rule of each half first, so the message names both.
        let first_of_each = workload
            .rules
            .first()
            .into_iter()
            .chain(tokens.rules.first());
        let mut offending: Vec<&EffectiveRule> = Vec::new();
        for rule in first_of_each.chain(&workload.rules).chain(&tokens.rules) {
            if !offending.iter().any(|o| std::ptr::eq(*o, *rule)) {
                offending.push(rule);
            }
        }
        findings.push(RuleFinding {
            check: ids::WORKLOAD_CREATE_WITH_TOKENS,
            what: format!(
                "create on {} together with service-account token access ({})",
                workload.what, tokens.what
            ),
            rules: offending,
        });
    }

    findings.sort_by_key(|f| f.check);
    findings
}

/// Renders a list as a YAML flow sequence, quoting "" and "*" so they stay visible, at most
/// `MAX` items.
fn flow_list(items: &[String]) -> String {
    const MAX: usize = 8;
    let mut shown: Vec<String> = items
        .iter()
        .take(MAX)
        .map(|item| {
            if item.is_empty() || item.contains('*') || item.contains(',') {
                format!("{item:?}")
            } else {
                item.clone()
            }
        })
        .collect();
    if items.len() > MAX {
        shown.push(format!("... {} more", items.len() - MAX));
    }
    format!("[{}]", shown.join(", "))
}

/// The rule the way a user wrote it, plus where it comes from when that is not the role
/// named in the binding (aggregated ClusterRoles).
pub(super) fn render_rule(effective: &EffectiveRule, bound_cluster_role: Option<&str>) -> String {
    let rule = &effective.rule;
    let mut text = format!(
        "{{apiGroups: {}, resources: {}, verbs: {}",
        flow_list(&rule.api_groups),
        flow_list(&rule.resources),
        flow_list(&rule.verbs)
    );
    if !rule.resource_names.is_empty() {
        text.push_str(&format!(
            ", resourceNames: {}",
            flow_list(&rule.resource_names)
        ));
    }
    text.push('}');
    if let Some(source) = &effective.source
        && Some(source.as_str()) != bound_cluster_role
    {
        text.push_str(&format!(" aggregated from ClusterRole {source}"));
    }
    text
}

/// The offending rules for a message: the first two, then how many more.
pub(super) fn render_rules(rules: &[&EffectiveRule], bound_cluster_role: Option<&str>) -> String {
    const SHOWN: usize = 2;
    let mut text = rules
        .iter()
        .take(SHOWN)
        .map(|r| format!("rule {}", render_rule(r, bound_cluster_role)))
        .collect::<Vec<_>>()
        .join(" and ");
    if rules.len() > SHOWN {
        let more = rules.len() - SHOWN;
        text.push_str(&format!(
            " (and {more} more rule{})",
            if more == 1 { "" } else { "s" }
        ));
    }
    if rules
        .iter()
        .take(SHOWN)
        .any(|r| !r.rule.resource_names.is_empty())
    {
        text.push_str("; rules with resourceNames still grant access to the objects they name");
    }
    text
}

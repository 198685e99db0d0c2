//! kube-apiserver audit policy: rendering of the built-in profiles, the coverage check
//! (CIS 3.2.2, automated: everywhere else it is a manual check), semantic comparison with
//! the live policy, and the audit flag checks (CIS 1.2.16-1.2.19, 3.2.1).
//!
//! The coverage check does not pattern-match the policy text: it evaluates the live rules
//! the way the kube-apiserver does (first matching rule wins, a port of
//! k8s.io/apiserver/pkg/audit/policy/checker.go) for *probe requests* — reads and writes of
//! secrets, configmaps and tokenreviews, exec/attach/port-forward/proxy, RBAC and pod
//! changes — made by an ordinary user, a service account and an anonymous client. So a
//! policy that logs secrets at RequestResponse, or drops them in an earlier broad rule,
//! fails, whatever its rules look like.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::{
    ApiServerObservation, AuditGroupResources, AuditLevel, AuditPolicyObservation, AuditPolicyRule,
    AuditPolicySettings, AuditProfile, AuditStage, DriftEntry, DriftReason, ObservationState,
};
use crate::domain::checks::CheckInfo;
use crate::domain::node::findings::{node_drift, truncate};

/// Check IDs of the audit checks.
pub mod check_ids {
    pub const POLICY_FILE: &str = "audit.policy-file";
    pub const LOG_PATH: &str = "audit.log-path";
    pub const LOG_MAXAGE: &str = "audit.log-maxage";
    pub const LOG_MAXBACKUP: &str = "audit.log-maxbackup";
    pub const LOG_MAXSIZE: &str = "audit.log-maxsize";
    pub const POLICY_COVERAGE: &str = "audit.policy-coverage";
    pub const POLICY_MATCHES: &str = "audit.policy-matches";
}

/// The audit checks, for the registry.
pub const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        id: check_ids::POLICY_FILE,
        description: "The kube-apiserver runs with an --audit-policy-file",
        cis: &["3.2.1"],
    },
    CheckInfo {
        id: check_ids::LOG_PATH,
        description: "The kube-apiserver writes an audit log (--audit-log-path)",
        cis: &["1.2.16"],
    },
    CheckInfo {
        id: check_ids::LOG_MAXAGE,
        description: "--audit-log-maxage is at least spec.auditPolicy.log.maxAge days",
        cis: &["1.2.17"],
    },
    CheckInfo {
        id: check_ids::LOG_MAXBACKUP,
        description: "--audit-log-maxbackup is at least spec.auditPolicy.log.maxBackup files",
        cis: &["1.2.18"],
    },
    CheckInfo {
        id: check_ids::LOG_MAXSIZE,
        description: "--audit-log-maxsize is at least spec.auditPolicy.log.maxSize megabytes",
        cis: &["1.2.19"],
    },
    CheckInfo {
        id: check_ids::POLICY_COVERAGE,
        description: "The live audit policy logs secrets, configmaps and tokenreviews at Metadata only, exec/attach/port-forward/proxy, RBAC and pod changes, and has a catch-all rule",
        cis: &["3.2.2"],
    },
    CheckInfo {
        id: check_ids::POLICY_MATCHES,
        description: "The live audit policy is semantically equal to the policy rendered from the baseline",
        cis: &[],
    },
];

/// apiVersion of the policies rendered and accepted.
pub const POLICY_API_VERSION: &str = "audit.k8s.io/v1";
/// kind of an audit policy.
pub const POLICY_KIND: &str = "Policy";
/// ConfigMap (in the operator's namespace) the controller publishes the rendered policy in
/// and the agent reads it from.
pub const AUDIT_POLICY_CONFIG_MAP: &str = "kube-baseline-audit-policy";
/// Key of the rendered policy in that ConfigMap.
pub const AUDIT_POLICY_KEY: &str = "audit-policy.yaml";
/// First line of every rendered policy: marks a file on disk as written by the agent.
pub const MANAGED_HEADER: &str =
    "# Managed by kube-baseline: rendered from a SecurityBaseline's spec.auditPolicy.";

/// An error rendering or parsing an audit policy.
#[derive(Debug, thiserror::Error)]
pub enum AuditPolicyError {
    /// The policy is not YAML of the audit.k8s.io/v1 Policy shape.
    #[error("audit policy is not a valid audit.k8s.io/v1 Policy: {0}")]
    Yaml(#[source] Box<serde_saphyr::Error>),
    /// apiVersion or kind is wrong.
    #[error(
        "audit policy has apiVersion {api_version:?} and kind {kind:?}, want audit.k8s.io/v1 Policy"
    )]
    WrongKind {
        /// The file's apiVersion.
        api_version: String,
        /// The file's kind.
        kind: String,
    },
    /// The rendered policy could not be serialized.
    #[error("cannot render the audit policy: {0}")]
    Render(#[source] Box<serde_saphyr::SerializeError>),
}

/// An audit.k8s.io/v1 Policy. Rule fields the checks do not use (a rule's
/// omitManagedFields) are ignored when parsing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// audit.k8s.io/v1.
    #[serde(default)]
    pub api_version: String,
    /// Policy.
    #[serde(default)]
    pub kind: String,
    /// Stages never recorded, for every rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omit_stages: Vec<AuditStage>,
    /// Omit managedFields of request and response bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omit_managed_fields: Option<bool>,
    /// Rules, first match wins; a request no rule matches is not logged.
    #[serde(default)]
    pub rules: Vec<AuditPolicyRule>,
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

const WRITE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_VERBS: &[&str] = &["get", "list", "watch"];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn group(group: &str, resources: &[&str]) -> AuditGroupResources {
    AuditGroupResources {
        group: group.to_owned(),
        resources: strings(resources),
        resource_names: Vec::new(),
    }
}

fn rule(level: AuditLevel) -> AuditPolicyRule {
    AuditPolicyRule {
        level,
        ..AuditPolicyRule::default()
    }
}

/// Read-only traffic of system components that fills logs without telling anyone anything:
/// kube-proxy watching endpoints, kubelets reading their Node, leader election of the
/// controller manager and scheduler, and health/version probes.
fn noisy_system_reads() -> Vec<AuditPolicyRule> {
    vec![
        AuditPolicyRule {
            users: strings(&["system:kube-proxy"]),
            verbs: strings(&["watch"]),
            resources: vec![
                group("", &["endpoints", "services", "services/status"]),
                group("discovery.k8s.io", &["endpointslices"]),
            ],
            ..rule(AuditLevel::None)
        },
        AuditPolicyRule {
            user_groups: strings(&["system:nodes"]),
            verbs: strings(&["get"]),
            resources: vec![group("", &["nodes", "nodes/status"])],
            ..rule(AuditLevel::None)
        },
        AuditPolicyRule {
            users: strings(&[
                "system:kube-controller-manager",
                "system:kube-scheduler",
                "system:serviceaccount:kube-system:endpoint-controller",
            ]),
            verbs: strings(&["get", "update"]),
            namespaces: strings(&["kube-system"]),
            resources: vec![
                group("", &["endpoints"]),
                group("coordination.k8s.io", &["leases"]),
            ],
            ..rule(AuditLevel::None)
        },
        AuditPolicyRule {
            non_resource_urls: strings(&[
                "/healthz*",
                "/readyz*",
                "/livez*",
                "/version",
                "/version/",
            ]),
            ..rule(AuditLevel::None)
        },
    ]
}

/// Secrets, configmaps, tokenreviews and token requests carry credentials in their bodies:
/// Metadata only, whatever the verb (CIS 3.2.2).
fn sensitive_metadata() -> AuditPolicyRule {
    AuditPolicyRule {
        resources: vec![
            group("", &["secrets", "configmaps", "serviceaccounts/token"]),
            group("authentication.k8s.io", &["tokenreviews"]),
        ],
        ..rule(AuditLevel::Metadata)
    }
}

/// Interactive access to workloads and nodes (CIS 3.2.2).
fn interactive_access() -> AuditPolicyRule {
    AuditPolicyRule {
        resources: vec![group(
            "",
            &[
                "pods/exec",
                "pods/attach",
                "pods/portforward",
                "pods/proxy",
                "services/proxy",
                "nodes/proxy",
            ],
        )],
        ..rule(AuditLevel::Metadata)
    }
}

fn rbac_changes() -> AuditPolicyRule {
    AuditPolicyRule {
        verbs: strings(WRITE_VERBS),
        resources: vec![group("rbac.authorization.k8s.io", &[])],
        ..rule(AuditLevel::RequestResponse)
    }
}

fn catch_all(level: AuditLevel) -> AuditPolicyRule {
    rule(level)
}

/// The rules of a profile, without additionalRules.
pub fn profile_rules(profile: AuditProfile) -> Vec<AuditPolicyRule> {
    match profile {
        // Log nothing. Fails the coverage check by design: choosing None is choosing not
        // to meet CIS 3.2.2, and the baseline's status says so.
        AuditProfile::None => vec![catch_all(AuditLevel::None)],
        // Metadata for writes and sensitive reads only: other reads are dropped.
        AuditProfile::Minimal => {
            let mut rules = noisy_system_reads();
            rules.push(sensitive_metadata());
            rules.push(interactive_access());
            rules.push(AuditPolicyRule {
                verbs: strings(READ_VERBS),
                ..rule(AuditLevel::None)
            });
            rules.push(catch_all(AuditLevel::Metadata));
            rules
        }
        // CIS-aligned: RBAC changes with bodies, pod and deployment changes with request
        // bodies, everything else at Metadata.
        AuditProfile::Baseline => {
            let mut rules = noisy_system_reads();
            rules.push(sensitive_metadata());
            rules.push(interactive_access());
            rules.push(rbac_changes());
            rules.push(AuditPolicyRule {
                verbs: strings(WRITE_VERBS),
                resources: vec![group("", &["pods"]), group("apps", &["deployments"])],
                ..rule(AuditLevel::Request)
            });
            rules.push(catch_all(AuditLevel::Metadata));
            rules
        }
        // Baseline plus request and response bodies of every write (sensitive resources
        // stay at Metadata: their rule comes first).
        AuditProfile::Strict => {
            let mut rules = noisy_system_reads();
            rules.push(sensitive_metadata());
            rules.push(interactive_access());
            rules.push(rbac_changes());
            rules.push(AuditPolicyRule {
                verbs: strings(WRITE_VERBS),
                ..rule(AuditLevel::RequestResponse)
            });
            rules.push(catch_all(AuditLevel::Metadata));
            rules
        }
    }
}

/// The policy a baseline asks for: additionalRules first, then the profile's rules. Every
/// profile but None omits the RequestReceived stage (it duplicates ResponseComplete for
/// every request and doubles the log).
pub fn render_policy(settings: &AuditPolicySettings) -> Policy {
    let mut rules = settings.additional_rules.clone();
    rules.extend(profile_rules(settings.profile));
    Policy {
        api_version: POLICY_API_VERSION.to_owned(),
        kind: POLICY_KIND.to_owned(),
        omit_stages: match settings.profile {
            AuditProfile::None => Vec::new(),
            _ => vec![AuditStage::RequestReceived],
        },
        omit_managed_fields: None,
        rules,
    }
}

/// The rendered policy as the file the kube-apiserver reads: [`MANAGED_HEADER`] and YAML.
/// Deterministic: the same settings always give the same bytes, so the agent can compare
/// files byte for byte and the ConfigMap is only rewritten on real changes.
pub fn render_policy_yaml(settings: &AuditPolicySettings) -> Result<String, AuditPolicyError> {
    let body = serde_saphyr::to_string(&render_policy(settings))
        .map_err(|err| AuditPolicyError::Render(Box::new(err)))?;
    Ok(format!("{MANAGED_HEADER}\n{body}"))
}

/// The data of the ConfigMap [`AUDIT_POLICY_CONFIG_MAP`] the controller publishes in its
/// namespace for the agent: `{audit-policy.yaml: <rendered policy>}`.
pub fn config_map_data(
    settings: &AuditPolicySettings,
) -> Result<BTreeMap<String, String>, AuditPolicyError> {
    Ok(BTreeMap::from([(
        AUDIT_POLICY_KEY.to_owned(),
        render_policy_yaml(settings)?,
    )]))
}

/// Parses a live policy file.
pub fn parse_policy(text: &str) -> Result<Policy, AuditPolicyError> {
    let policy: Policy =
        serde_saphyr::from_str(text).map_err(|err| AuditPolicyError::Yaml(Box::new(err)))?;
    if policy.api_version != POLICY_API_VERSION || policy.kind != POLICY_KIND {
        return Err(AuditPolicyError::WrongKind {
            api_version: policy.api_version,
            kind: policy.kind,
        });
    }
    Ok(policy)
}

/// Whether a policy file was written by kube-baseline (starts with [`MANAGED_HEADER`]).
pub fn is_managed(text: &str) -> bool {
    text.starts_with(MANAGED_HEADER)
}

/// The policy an observation describes.
pub fn policy_of(observation: &AuditPolicyObservation) -> Policy {
    Policy {
        api_version: POLICY_API_VERSION.to_owned(),
        kind: POLICY_KIND.to_owned(),
        omit_stages: observation.omit_stages.clone(),
        omit_managed_fields: observation.omit_managed_fields,
        rules: observation.rules.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Matching (port of k8s.io/apiserver/pkg/audit/policy/checker.go)
// ---------------------------------------------------------------------------------------------

/// The attributes of a request, as the audit policy checker sees them.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// User name.
    pub user: &'a str,
    /// The user's groups.
    pub groups: &'a [&'a str],
    /// Verb (get, list, watch, create, update, patch, delete, ...).
    pub verb: &'a str,
    /// The resource; None for a non-resource request.
    pub resource: Option<ResourceRequest<'a>>,
    /// URL path of a non-resource request.
    pub path: &'a str,
}

/// The resource part of a request.
#[derive(Debug, Clone, Copy)]
pub struct ResourceRequest<'a> {
    /// API group ("" is core).
    pub group: &'a str,
    /// Resource (plural).
    pub resource: &'a str,
    /// Subresource ("" for none).
    pub subresource: &'a str,
    /// Namespace ("" for cluster-scoped).
    pub namespace: &'a str,
    /// Object name ("" for list, watch and create).
    pub name: &'a str,
}

fn rule_matches(rule: &AuditPolicyRule, request: &Request<'_>) -> bool {
    if !rule.users.is_empty() && !rule.users.iter().any(|u| u == request.user) {
        return false;
    }
    if !rule.user_groups.is_empty()
        && !request
            .groups
            .iter()
            .any(|g| rule.user_groups.iter().any(|rg| rg == g))
    {
        return false;
    }
    if !rule.verbs.is_empty() && !rule.verbs.iter().any(|v| v == request.verb) {
        return false;
    }
    if !rule.namespaces.is_empty() || !rule.resources.is_empty() {
        return rule_matches_resource(rule, request);
    }
    if !rule.non_resource_urls.is_empty() {
        return request.resource.is_none()
            && rule
                .non_resource_urls
                .iter()
                .any(|spec| path_matches(request.path, spec));
    }
    true
}

fn path_matches(path: &str, spec: &str) -> bool {
    spec == "*"
        || spec == path
        || (spec.ends_with('*') && path.starts_with(spec.trim_end_matches('*')))
}

fn rule_matches_resource(rule: &AuditPolicyRule, request: &Request<'_>) -> bool {
    let Some(resource) = request.resource else {
        return false;
    };
    if !rule.namespaces.is_empty() && !rule.namespaces.iter().any(|n| n == resource.namespace) {
        return false;
    }
    if rule.resources.is_empty() {
        return true;
    }
    let combined = if resource.subresource.is_empty() {
        resource.resource.to_owned()
    } else {
        format!("{}/{}", resource.resource, resource.subresource)
    };
    rule.resources
        .iter()
        .filter(|gr| gr.group == resource.group)
        .any(|gr| {
            if gr.resources.is_empty() {
                return true;
            }
            gr.resources.iter().any(|res| {
                (gr.resource_names.is_empty()
                    || gr.resource_names.iter().any(|n| n == resource.name))
                    && (res == &combined
                        || res == "*"
                        || (!resource.subresource.is_empty()
                            && res.strip_prefix("*/") == Some(resource.subresource))
                        || res.strip_suffix("/*") == Some(resource.resource))
            })
        })
}

/// How a policy treats a request: the level and omitted stages of the first matching rule
/// (with the policy's omitStages), and that rule's index.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The level.
    pub level: AuditLevel,
    /// Stages not recorded.
    pub omit_stages: Vec<AuditStage>,
    /// Index of the matching rule; None when no rule matches (the request is not logged).
    pub rule: Option<usize>,
}

impl Decision {
    /// Whether any event is recorded for the request.
    pub fn logged(&self) -> bool {
        self.level >= AuditLevel::Metadata
            && ![
                AuditStage::RequestReceived,
                AuditStage::ResponseStarted,
                AuditStage::ResponseComplete,
            ]
            .iter()
            .all(|stage| self.omit_stages.contains(stage))
    }

    fn describe(&self) -> String {
        let at = match self.rule {
            Some(index) => format!("rule {}", index + 1),
            None => "no rule".to_owned(),
        };
        if self.logged() {
            format!("logged at {:?} ({at})", self.level)
        } else {
            format!("not logged ({at})")
        }
    }
}

/// Evaluates a request against a policy, first match wins.
pub fn decide(policy: &Policy, request: &Request<'_>) -> Decision {
    for (index, rule) in policy.rules.iter().enumerate() {
        if rule_matches(rule, request) {
            let mut omit = policy.omit_stages.clone();
            for stage in &rule.omit_stages {
                if !omit.contains(stage) {
                    omit.push(*stage);
                }
            }
            return Decision {
                level: rule.level,
                omit_stages: omit,
                rule: Some(index),
            };
        }
    }
    Decision {
        level: AuditLevel::None,
        omit_stages: policy.omit_stages.clone(),
        rule: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Coverage (CIS 3.2.2)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Logged at any level.
    Logged,
    /// Logged, and at Metadata exactly (bodies would leak credentials).
    MetadataOnly,
    /// Not necessarily logged, but never with response bodies (Request is fine).
    NoResponseBody,
}

impl Need {
    fn satisfied_by(self, decision: &Decision) -> bool {
        match self {
            Self::Logged => decision.logged(),
            Self::MetadataOnly => decision.logged() && decision.level == AuditLevel::Metadata,
            Self::NoResponseBody => {
                !decision.logged() || decision.level < AuditLevel::RequestResponse
            }
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Logged => "want it logged",
            Self::MetadataOnly => "want it logged at Metadata only",
            Self::NoResponseBody => "want no response bodies (the token is in the response)",
        }
    }
}

/// A family of probe requests.
struct ProbeSet {
    what: &'static str,
    group: &'static str,
    /// (resource, subresource, namespaced)
    resources: &'static [(&'static str, &'static str, bool)],
    verbs: &'static [&'static str],
    need: Need,
}

const ALL_VERBS: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];
const CHANGE_VERBS: &[&str] = &["create", "update", "patch", "delete"];

const PROBE_SETS: &[ProbeSet] = &[
    ProbeSet {
        what: "secrets",
        group: "",
        resources: &[("secrets", "", true)],
        verbs: ALL_VERBS,
        need: Need::MetadataOnly,
    },
    ProbeSet {
        what: "configmaps",
        group: "",
        resources: &[("configmaps", "", true)],
        verbs: ALL_VERBS,
        need: Need::MetadataOnly,
    },
    ProbeSet {
        what: "tokenreviews",
        group: "authentication.k8s.io",
        resources: &[("tokenreviews", "", false)],
        verbs: &["create"],
        need: Need::MetadataOnly,
    },
    ProbeSet {
        what: "serviceaccount token requests",
        group: "",
        resources: &[("serviceaccounts", "token", true)],
        verbs: &["create"],
        need: Need::NoResponseBody,
    },
    ProbeSet {
        what: "exec, attach, port-forward and proxy",
        group: "",
        resources: &[
            ("pods", "exec", true),
            ("pods", "attach", true),
            ("pods", "portforward", true),
            ("pods", "proxy", true),
            ("services", "proxy", true),
            ("nodes", "proxy", false),
        ],
        // Streaming requests arrive as create (SPDY) or get (WebSocket, kubectl 1.30+).
        verbs: &["create", "get"],
        need: Need::Logged,
    },
    ProbeSet {
        what: "RBAC changes",
        group: "rbac.authorization.k8s.io",
        resources: &[
            ("roles", "", true),
            ("rolebindings", "", true),
            ("clusterroles", "", false),
            ("clusterrolebindings", "", false),
        ],
        verbs: CHANGE_VERBS,
        need: Need::Logged,
    },
    ProbeSet {
        what: "pod changes",
        group: "",
        resources: &[("pods", "", true)],
        verbs: CHANGE_VERBS,
        need: Need::Logged,
    },
    ProbeSet {
        what: "deployment changes",
        group: "apps",
        resources: &[("deployments", "", true)],
        verbs: CHANGE_VERBS,
        need: Need::Logged,
    },
];

/// Namespaces namespaced probes are made in: an application namespace and kube-system
/// (where policies often log configmap bodies, against CIS 3.2.2).
const PROBE_NAMESPACES: &[&str] = &["default", "kube-system"];

/// The identities probes are made as: an ordinary user, a service account and an
/// anonymous client. Rules that target system components (kube-proxy, nodes, controllers)
/// do not match them, so dropping those components' noise keeps a policy covering.
const PROBE_USERS: &[(&str, &[&str])] = &[
    ("kube-baseline:coverage-probe", &["system:authenticated"]),
    (
        "system:serviceaccount:default:default",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated",
        ],
    ),
    ("system:anonymous", &["system:unauthenticated"]),
];

/// The first probe of a set the policy fails, described.
fn probe_set_failure(policy: &Policy, set: &ProbeSet) -> Option<String> {
    for (resource, subresource, namespaced) in set.resources {
        let namespaces: &[&str] = if *namespaced { PROBE_NAMESPACES } else { &[""] };
        for namespace in namespaces {
            for verb in set.verbs {
                for (user, groups) in PROBE_USERS {
                    let collection = matches!(*verb, "list" | "watch" | "create");
                    let request = Request {
                        user,
                        groups,
                        verb,
                        resource: Some(ResourceRequest {
                            group: set.group,
                            resource,
                            subresource,
                            namespace,
                            name: if collection && subresource.is_empty() {
                                ""
                            } else {
                                "kube-baseline-probe"
                            },
                        }),
                        path: "",
                    };
                    let decision = decide(policy, &request);
                    if !set.need.satisfied_by(&decision) {
                        let target = if subresource.is_empty() {
                            (*resource).to_owned()
                        } else {
                            format!("{resource}/{subresource}")
                        };
                        let place = if namespace.is_empty() {
                            String::new()
                        } else {
                            format!(" in {namespace}")
                        };
                        return Some(format!(
                            "{}: {verb} {target}{place} by {user} is {}; {}",
                            set.what,
                            decision.describe(),
                            set.need.describe()
                        ));
                    }
                }
            }
        }
    }
    None
}

/// Whether a rule matches every request (no users, groups, verbs, resources, namespaces or
/// URLs).
fn is_catch_all(rule: &AuditPolicyRule) -> bool {
    rule.users.is_empty()
        && rule.user_groups.is_empty()
        && rule.verbs.is_empty()
        && rule.resources.is_empty()
        && rule.namespaces.is_empty()
        && rule.non_resource_urls.is_empty()
}

/// What a policy fails to cover (CIS 3.2.2), one line per gap; empty when it covers
/// everything. Requirements: secrets, configmaps and tokenreviews logged at Metadata only;
/// token requests never with bodies; exec, attach, port-forward and proxy logged; RBAC,
/// pod and deployment changes logged; a reachable catch-all rule logging at least Metadata.
pub fn coverage_failures(policy: &Policy) -> Vec<String> {
    let mut failures = Vec::new();
    for set in PROBE_SETS {
        failures.extend(probe_set_failure(policy, set));
    }
    match policy.rules.iter().position(is_catch_all) {
        None => failures.push(
            "no catch-all rule (a final rule without users, verbs or resources that logs everything else at Metadata)".to_owned(),
        ),
        Some(index) => {
            let rule = &policy.rules[index];
            let decision = Decision {
                level: rule.level,
                omit_stages: policy
                    .omit_stages
                    .iter()
                    .chain(&rule.omit_stages)
                    .copied()
                    .collect(),
                rule: Some(index),
            };
            if !decision.logged() {
                failures.push(format!(
                    "the catch-all rule {} logs nothing (level {:?}); want at least Metadata",
                    index + 1,
                    rule.level
                ));
            }
        }
    }
    failures
}

// ---------------------------------------------------------------------------------------------
// Semantic equality
// ---------------------------------------------------------------------------------------------

fn stage_rank(stage: &AuditStage) -> u8 {
    match stage {
        AuditStage::RequestReceived => 0,
        AuditStage::ResponseStarted => 1,
        AuditStage::ResponseComplete => 2,
        AuditStage::Panic => 3,
    }
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items.dedup();
    items
}

fn normalize_stages(mut stages: Vec<AuditStage>) -> Vec<AuditStage> {
    stages.sort_by_key(stage_rank);
    stages.dedup();
    stages
}

fn normalize_rule(rule: &AuditPolicyRule) -> AuditPolicyRule {
    let mut resources: Vec<AuditGroupResources> = rule
        .resources
        .iter()
        .map(|gr| AuditGroupResources {
            group: gr.group.clone(),
            resources: sorted(gr.resources.clone()),
            resource_names: sorted(gr.resource_names.clone()),
        })
        .collect();
    resources.sort_by(|a, b| {
        (&a.group, &a.resources, &a.resource_names).cmp(&(
            &b.group,
            &b.resources,
            &b.resource_names,
        ))
    });
    resources.dedup();
    AuditPolicyRule {
        level: rule.level,
        users: sorted(rule.users.clone()),
        user_groups: sorted(rule.user_groups.clone()),
        verbs: sorted(rule.verbs.clone()),
        resources,
        namespaces: sorted(rule.namespaces.clone()),
        non_resource_urls: sorted(rule.non_resource_urls.clone()),
        omit_stages: normalize_stages(rule.omit_stages.clone()),
    }
}

/// A policy with every list that is a set (users, verbs, resources, stages, ...) sorted and
/// deduplicated; the order of rules is kept, because it decides which rule matches.
pub fn normalize(policy: &Policy) -> Policy {
    Policy {
        api_version: policy.api_version.clone(),
        kind: policy.kind.clone(),
        omit_stages: normalize_stages(policy.omit_stages.clone()),
        omit_managed_fields: policy.omit_managed_fields.filter(|omit| *omit),
        rules: policy.rules.iter().map(normalize_rule).collect(),
    }
}

/// The first semantic difference between a live and a rendered policy; None when equal.
pub fn first_difference(live: &Policy, rendered: &Policy) -> Option<String> {
    let live = normalize(live);
    let rendered = normalize(rendered);
    if live.omit_stages != rendered.omit_stages {
        return Some(format!(
            "omitStages is {:?}, rendered {:?}",
            live.omit_stages, rendered.omit_stages
        ));
    }
    if live.omit_managed_fields != rendered.omit_managed_fields {
        return Some("omitManagedFields differs".to_owned());
    }
    for (index, (a, b)) in live.rules.iter().zip(&rendered.rules).enumerate() {
        if a != b {
            return Some(format!(
                "rule {} is {}, rendered {}",
                index + 1,
                compact(a),
                compact(b)
            ));
        }
    }
    (live.rules.len() != rendered.rules.len()).then(|| {
        format!(
            "the live policy has {} rules, the rendered one {}",
            live.rules.len(),
            rendered.rules.len()
        )
    })
}

fn compact(rule: &AuditPolicyRule) -> String {
    truncate(serde_json::to_string(rule).unwrap_or_default(), 400)
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// The audit checks against one node's kube-apiserver: flags (CIS 1.2.16-1.2.19, 3.2.1),
/// coverage of the live policy (CIS 3.2.2) and equality with the rendered policy.
pub fn evaluate_audit(
    node: &str,
    api: &ApiServerObservation,
    settings: &AuditPolicySettings,
) -> Vec<DriftEntry> {
    let mut drift = Vec::new();
    if api.flag("audit-policy-file").is_none_or(str::is_empty) {
        drift.push(node_drift(
            node,
            check_ids::POLICY_FILE,
            DriftReason::Violation,
            "kube-apiserver runs without --audit-policy-file: no audit events are recorded",
        ));
    }
    if api.flag("audit-log-path").is_none_or(str::is_empty) {
        drift.push(node_drift(
            node,
            check_ids::LOG_PATH,
            DriftReason::Violation,
            "kube-apiserver runs without --audit-log-path: audit events are not written to a log file",
        ));
    }
    for (check, flag, want, unit) in [
        (
            check_ids::LOG_MAXAGE,
            "audit-log-maxage",
            settings.log.max_age,
            "days",
        ),
        (
            check_ids::LOG_MAXBACKUP,
            "audit-log-maxbackup",
            settings.log.max_backup,
            "files",
        ),
        (
            check_ids::LOG_MAXSIZE,
            "audit-log-maxsize",
            settings.log.max_size,
            "MB",
        ),
    ] {
        let entry = match api.flag(flag).map(|v| v.trim().parse::<i64>()) {
            // The kube-apiserver's default for all three is 0 (no limit on deletion, i.e.
            // old logs are kept by nothing but chance).
            None if want > 0 => Some(format!(
                "--{flag} is not set (default 0); want at least {want} {unit}"
            )),
            None => None,
            Some(Err(_)) => Some(format!(
                "--{flag}={:?} is not a number; want at least {want} {unit}",
                api.flag(flag).unwrap_or_default()
            )),
            Some(Ok(value)) if value < i64::from(want) => {
                Some(format!("--{flag}={value}; want at least {want} {unit}"))
            }
            Some(Ok(_)) => None,
        };
        drift.extend(entry.map(|message| node_drift(node, check, DriftReason::Violation, message)));
    }

    let observed = &api.audit_policy;
    let rendered = render_policy(settings);
    match observed.header.state {
        ObservationState::NotFound => {
            drift.push(node_drift(
                node,
                check_ids::POLICY_COVERAGE,
                DriftReason::Violation,
                "no audit policy: nothing is logged",
            ));
            drift.push(node_drift(
                node,
                check_ids::POLICY_MATCHES,
                DriftReason::Violation,
                format!(
                    "no audit policy; the baseline renders the {:?} profile",
                    settings.profile
                ),
            ));
        }
        ObservationState::Error => {
            let why = format!(
                "audit policy {} could not be read: {}",
                observed.path, observed.header.message
            );
            drift.push(node_drift(
                node,
                check_ids::POLICY_COVERAGE,
                DriftReason::Unknown,
                why.clone(),
            ));
            drift.push(node_drift(
                node,
                check_ids::POLICY_MATCHES,
                DriftReason::Unknown,
                why,
            ));
        }
        ObservationState::Observed => {
            let live = policy_of(observed);
            let pending = |check: &str, what: &str| {
                node_drift(
                    node,
                    check,
                    DriftReason::Unknown,
                    format!(
                        "{} {what} on disk, but it changed after the kube-apiserver started; it takes effect after a restart",
                        observed.path
                    ),
                )
            };
            let failures = coverage_failures(&live);
            if !failures.is_empty() {
                drift.push(node_drift(
                    node,
                    check_ids::POLICY_COVERAGE,
                    DriftReason::Violation,
                    format!("{}: {}", observed.path, failures.join("; ")),
                ));
            } else if observed.pending_restart {
                drift.push(pending(check_ids::POLICY_COVERAGE, "covers CIS 3.2.2"));
            }
            match first_difference(&live, &rendered) {
                Some(difference) => drift.push(node_drift(
                    node,
                    check_ids::POLICY_MATCHES,
                    DriftReason::Violation,
                    format!(
                        "{} differs from the rendered {:?} policy{}: {difference}",
                        observed.path,
                        settings.profile,
                        if observed.managed {
                            ""
                        } else {
                            " (not written by kube-baseline)"
                        }
                    ),
                )),
                None if observed.pending_restart => {
                    drift.push(pending(
                        check_ids::POLICY_MATCHES,
                        "matches the rendered policy",
                    ));
                }
                None => {}
            }
        }
    }
    drift
}

#[cfg(test)]
mod tests;

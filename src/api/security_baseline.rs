//! `SecurityBaseline` (kube-baseline.dev/v1alpha1): the declared baseline and its status.
//!
//! Doc comments on these types become the CRD's descriptions (`kubectl explain sbl.spec`).
//! Every list and string is bounded (`maxItems`/`maxLength`) so the API server can cost the
//! CEL rules below; a unit test walks the generated schema to keep it that way.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{apis::meta::v1::Condition, util::intstr::IntOrString};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Label values are at most 63 characters.
const LABEL_VALUE_MAX: u32 = 63;

/// Desired security baseline for a set of namespaces and nodes.
///
/// The operator keeps every selected namespace's default-deny NetworkPolicies, Pod Security
/// labels, Roles and quota in line with this spec, audits RBAC, checks node and control-plane
/// settings, and records every deviation (drift) in status.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "kube-baseline.dev",
    version = "v1alpha1",
    kind = "SecurityBaseline",
    plural = "securitybaselines",
    shortname = "sbl",
    category = "security",
    status = "SecurityBaselineStatus",
    cel,
    doc = "A declared security baseline: default-deny NetworkPolicies, Pod Security labels, least-privilege Roles and quota kept in selected namespaces, RBAC audited, node and control-plane settings checked. Status records every deviation (drift).",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Compliant","type":"string","jsonPath":".status.conditions[?(@.type==\"Compliant\")].status"}"#,
    printcolumn = r#"{"name":"Drift","type":"integer","jsonPath":".status.driftTotal"}"#,
    printcolumn = r#"{"name":"Gated","type":"integer","jsonPath":".status.summary.namespacesGated"}"#,
    printcolumn = r#"{"name":"Namespaces","type":"integer","jsonPath":".status.summary.namespacesSelected","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
// Kubernetes CEL has no now(): how far ahead a waiver reaches is bounded from its granted
// time; the controller does not apply one granted in the future (see domain::waivers).
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.waivers) || self.waivers.all(w, timestamp(w.expires) - timestamp(w.granted) <= duration(has(self.waiverMaxDuration) ? self.waiverMaxDuration : '2160h'))"
).message("waivers[]: expires is more than spec.waiverMaxDuration (default 2160h) after granted"))]
pub struct SecurityBaselineSpec {
    /// Enforce keeps the cluster in line with the baseline; Audit never writes to the
    /// cluster and only reports drift in status, Events and metrics.
    #[serde(default)]
    pub mode: EnforcementMode,

    /// Namespaces the baseline applies to, as a standard label selector. `{}` selects every
    /// namespace (system namespaces stay excluded unless includeSystemNamespaces is true).
    #[serde(default)]
    pub namespace_selector: NamespaceSelector,

    /// Namespace names never selected, whatever their labels.
    #[serde(default)]
    #[schemars(length(max = 256), inner(length(max = 63)))]
    pub excluded_namespaces: Vec<String>,

    /// Also select kube-system, kube-public, kube-node-lease and the operator's own
    /// namespace. They are excluded by default because locking them down breaks clusters.
    #[serde(default)]
    pub include_system_namespaces: bool,

    /// What happens to generated objects when a namespace stops matching or the baseline is
    /// deleted: Delete removes them, Retain leaves them in place (no longer kept in line).
    #[serde(default)]
    pub on_unselect: OnUnselect,

    /// Take over objects with a generated name that lack the operator's labels. When false,
    /// such an object is left alone and reported as Conflict drift.
    #[serde(default)]
    pub adopt_existing: bool,

    /// Default-deny NetworkPolicies kept in every selected namespace.
    #[serde(default)]
    pub network_policy: NetworkPolicySettings,

    /// Pod Security admission labels (pod-security.kubernetes.io/*) set on selected
    /// namespaces. Unset modes are not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecuritySettings>,

    /// Roles kept in every selected namespace, and the audit of RBAC found there.
    #[serde(default)]
    pub rbac: RbacSettings,

    /// A ResourceQuota and LimitRange defaults kept in every selected namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_quota: Option<ResourceQuotaSettings>,

    /// The kube-apiserver audit policy and audit log settings the control plane must use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_policy: Option<AuditPolicySettings>,

    /// Kubelet settings checked on every selected node. Unset fields are not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<KubeletBaseline>,

    /// Read-only hardening checks of the kube-apiserver and etcd flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<ControlPlaneSettings>,

    /// Report-only checks that Kubernetes is kept up to date: the control plane's support
    /// window, version skew and requests of APIs about to be removed. Unset: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<KubernetesVersionSettings>,

    /// Report-only checks of TLS on the Ingresses and Gateways of selected namespaces.
    /// Unset: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,

    /// The longest a waiver may last (its expires minus its granted), in hours, minutes and
    /// seconds (e.g. "2160h", 90 days, the default); at most "8760h" (a year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 2, max = 16),
        regex(pattern = r"^([0-9]{1,5}h)?([0-9]{1,6}m)?([0-9]{1,7}s)?$"),
        extend("default" = DEFAULT_WAIVER_MAX_DURATION)
    )]
    #[x_kube(validation = kube::core::Rule::new("duration(self) <= duration('8760h')")
        .message("waiverMaxDuration: at most 8760h (a year)"))]
    pub waiver_max_duration: Option<String>,

    /// Accepted deviations: findings of the named checks on the named objects are reported
    /// as waived, not drift, until the waiver expires (and, in Enforce mode, not repaired).
    /// Each has an owner, a reason and an expiry at most waiverMaxDuration after it was
    /// granted. Unlike excludedNamespaces (not selected at all: nothing generated or
    /// checked), a waived finding is still evaluated and listed in status.waived.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub waivers: Vec<Waiver>,
}

/// `spec.waiverMaxDuration` when unset (90 days).
pub const DEFAULT_WAIVER_MAX_DURATION: &str = "2160h";

/// An accepted deviation from the baseline, owned and time-bounded.
///
/// It applies to the findings of `checks` on the objects the other fields name: a
/// namespace in `namespaces`, one `namespaceSelector` selects, an object in `objects`
/// (every field given must hold; none given: every object the checks flag).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("timestamp(self.expires) > timestamp(self.granted)")
    .message("waivers[]: expires must be after granted"))]
pub struct Waiver {
    /// The waiver's name, unique in the baseline (a DNS label).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Check IDs waived (e.g. network.default-deny), or a prefix ending in `.*`
    /// (network.* waives every network check). An ID no check has is reported, not
    /// rejected: checks come with releases.
    #[schemars(
        length(min = 1, max = 32),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(\.\*)?$")
        )
    )]
    pub checks: Vec<String>,
    /// Only findings in these namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 63)))]
    pub namespaces: Vec<String>,
    /// Only findings in namespaces with these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// Only findings about these objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub objects: Vec<WaivedObject>,
    /// Why the deviation is accepted, for the next reader (at least 10 characters).
    #[schemars(length(min = 10, max = 1024))]
    pub reason: String,
    /// Who answers for it (a team, a person, a ticket queue).
    #[schemars(length(min = 1, max = 253))]
    pub owner: String,
    /// When it was granted (RFC 3339, e.g. 2026-12-01T00:00:00Z). A waiver granted more than
    /// 5 minutes in the future does not apply yet.
    #[schemars(
        length(max = 64),
        regex(
            pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
        )
    )]
    pub granted: String,
    /// When it stops applying (RFC 3339), at most spec.waiverMaxDuration after granted.
    #[schemars(
        length(max = 64),
        regex(
            pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
        )
    )]
    pub expires: String,
}

/// An object a waiver names.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WaivedObject {
    /// The kind as findings name it (NetworkPolicy, Role, Namespace, Node, Ingress, ...).
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// The object's name (for node checks, the node's).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The object's namespace; unset = any namespace (and cluster-scoped objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// TLS checks of the selected namespaces' Ingresses and Gateways (report only: never
/// repaired).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSettings {
    /// Check Ingresses (networking.k8s.io/v1): ingress.tls-missing, ingress.tls-host-coverage.
    #[serde(default = "default_true")]
    pub ingress: bool,
    /// Check the certificates in the Secrets the Ingresses name: tls.secret and
    /// tls.certificate-*. Reading Secrets is opt-in (config/rbac/tls-secrets); without it
    /// these findings are Unknown.
    #[serde(default = "default_true")]
    pub certificates: bool,
    /// tls.certificate-expiring reports a certificate this many days before its notAfter.
    #[serde(default = "default_expiry_warning_days")]
    #[schemars(range(min = 1, max = 365))]
    pub expiry_warning_days: u16,
    /// Check Gateways (gateway.networking.k8s.io/v1, when that CRD is installed):
    /// gateway.http-without-https, gateway.listener-refs.
    #[serde(default = "default_true")]
    pub gateway: bool,
    /// Objects or hosts exempted from these checks, each with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub exemptions: Vec<TlsExemption>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            ingress: true,
            certificates: true,
            expiry_warning_days: default_expiry_warning_days(),
            gateway: true,
            exemptions: Vec::new(),
        }
    }
}

fn default_expiry_warning_days() -> u16 {
    21
}

/// An exemption from the TLS checks: every finding matching all the given fields.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.name) || has(self.matchLabels) || has(self.host)")
    .message("tls.exemptions[]: name, matchLabels or host is required (to exempt everything, unset spec.tls)"))]
pub struct TlsExemption {
    /// The kind of object; unset = any kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TlsObjectKind>,
    /// The namespace of the object; unset = every selected namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// The object's exact name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub name: Option<String>,
    /// Labels the object carries, all of them, with exactly these values (e.g. the Ingress of
    /// an ACME HTTP-01 solver: acme.cert-manager.io/http01-solver: "true").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "bounded_string_map")]
    pub match_labels: BTreeMap<String, String>,
    /// Only findings about this host (an Ingress rule host or a Gateway listener hostname,
    /// as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub host: Option<String>,
    /// Only these checks; empty = every TLS check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 63)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(c, c in ['ingress.tls-missing', 'ingress.tls-host-coverage', 'tls.secret', 'tls.certificate-malformed', 'tls.certificate-expired', 'tls.certificate-expiring', 'tls.certificate-host', 'gateway.http-without-https', 'gateway.listener-refs'])")
        .message("tls.exemptions[].checks: one of ingress.tls-missing, ingress.tls-host-coverage, tls.secret, tls.certificate-malformed, tls.certificate-expired, tls.certificate-expiring, tls.certificate-host, gateway.http-without-https, gateway.listener-refs"))]
    pub checks: Vec<String>,
    /// Why, for the next reader.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"\S"))]
    pub reason: String,
}

/// The kinds of object the TLS checks read.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum TlsObjectKind {
    /// networking.k8s.io Ingress.
    Ingress,
    /// gateway.networking.k8s.io Gateway.
    Gateway,
}

/// Whether the operator writes to the cluster.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum EnforcementMode {
    /// Create, repair and remove generated objects.
    #[default]
    Enforce,
    /// Report drift only; never write anything but this object's status and Events.
    Audit,
}

/// What to do with generated objects when a namespace is no longer selected.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum OnUnselect {
    /// Remove the objects the baseline generated (and the labels it set).
    #[default]
    Delete,
    /// Leave them in place, no longer kept in line.
    Retain,
}

/// A label selector over namespaces (the metav1.LabelSelector shape, with bounds).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Labels a namespace must carry, all of them, with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "bounded_string_map")]
    pub match_labels: BTreeMap<String, String>,

    /// Set-based requirements, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub match_expressions: Vec<SelectorRequirement>,
}

/// One set-based label requirement.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0"
).message("namespaceSelector.matchExpressions: operators In and NotIn need at least one value; Exists and DoesNotExist take none"))]
pub struct SelectorRequirement {
    /// The label key.
    #[schemars(length(max = 317))]
    pub key: String,
    /// How the key relates to the values.
    pub operator: SelectorOperator,
    /// Values for In and NotIn; empty for Exists and DoesNotExist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub values: Vec<String>,
}

/// Label selector operators.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// Default-deny NetworkPolicies.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySettings {
    /// Which directions are denied by default.
    #[serde(default)]
    pub default_deny: DefaultDeny,
    /// When egress is denied, allow DNS (UDP and TCP 53) to kube-system pods labelled
    /// k8s-app=kube-dns, so workloads can still resolve names.
    #[serde(default = "default_true", rename = "allowDNS")]
    pub allow_dns: bool,
    /// Allow traffic between pods of the same namespace in the denied directions.
    #[serde(default)]
    pub allow_same_namespace: bool,
}

impl Default for NetworkPolicySettings {
    fn default() -> Self {
        Self {
            default_deny: DefaultDeny::default(),
            allow_dns: true,
            allow_same_namespace: false,
        }
    }
}

/// Directions denied by default.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DefaultDeny {
    /// Deny all ingress to every pod of the namespace unless another policy allows it.
    #[serde(default = "default_true")]
    pub ingress: bool,
    /// Deny all egress from every pod of the namespace unless another policy allows it.
    #[serde(default = "default_true")]
    pub egress: bool,
}

impl Default for DefaultDeny {
    fn default() -> Self {
        Self {
            ingress: true,
            egress: true,
        }
    }
}

/// Pod Security admission labels.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new(
        "[has(self.enforce) ? self.enforce : 'restricted', has(self.audit) ? self.audit : 'restricted', has(self.warn) ? self.warn : 'restricted'].all(l, l in ['privileged', 'baseline', 'restricted'])"
    ).message("podSecurity: levels must be one of privileged, baseline, restricted"),
    validation = kube::core::Rule::new(
        "!has(self.rollout) || self.rollout != 'Gated' || has(self.enforce)"
    ).message("podSecurity.rollout: Gated needs an enforce level to hold back"),
)]
pub struct PodSecuritySettings {
    /// Level enforced at admission (pod-security.kubernetes.io/enforce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce: Option<PodSecurityLevel>,
    /// Level whose violations are recorded in the audit log (pod-security.kubernetes.io/audit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<PodSecurityLevel>,
    /// Level whose violations are returned as warnings (pod-security.kubernetes.io/warn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<PodSecurityLevel>,
    /// Pod Security Standards version the levels refer to: latest or v1.N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), regex(pattern = r"^(latest|v1\.[0-9]+)$"))]
    pub version: Option<String>,
    /// How a stricter enforce level reaches a namespace whose running pods it would reject
    /// (the API server's dry run of the label change says which). Immediate (the default):
    /// enforced at once, the rejected pods recorded. Gated: warn and audit get the enforce
    /// level at once; enforce is held until no existing pod violates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<PodSecurityRollout>,
}

/// How a stricter Pod Security enforce level is rolled out.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum PodSecurityRollout {
    /// Enforce at once; pods the new level rejects are reported (`pod-security.preview`).
    #[default]
    Immediate,
    /// Hold enforce until the namespace's existing pods all pass the new level.
    Gated,
}

/// Pod Security Standards levels, from least to most restrictive.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    Privileged,
    Baseline,
    Restricted,
}

impl PodSecurityLevel {
    /// The label value, as Pod Security admission spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }

    /// Parses a label value; None for anything Pod Security admission would not accept.
    pub fn from_label(value: &str) -> Option<Self> {
        match value {
            "privileged" => Some(Self::Privileged),
            "baseline" => Some(Self::Baseline),
            "restricted" => Some(Self::Restricted),
            _ => None,
        }
    }
}

/// Roles provisioned in every selected namespace and the RBAC audit.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RbacSettings {
    /// Roles kept in every selected namespace exactly as written, named
    /// baseline-<baseline>-<role name>.
    #[serde(default)]
    #[schemars(length(max = 32))]
    #[x_kube(validation = kube::core::Rule::new("self.all(r, self.exists_one(o, o.name == r.name))")
        .message("rbac.roles: role names must be unique"))]
    pub roles: Vec<RoleTemplate>,
    /// Report over-privileged Roles and bindings in selected namespaces.
    #[serde(default)]
    pub audit: RbacAuditSettings,
}

/// A namespaced Role to provision.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleTemplate {
    /// Role name suffix; the Role is named baseline-<baseline>-<name>.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The Role's rules. Wildcards and the escalate, bind and impersonate verbs are rejected:
    /// a baseline provisions least privilege only.
    #[schemars(length(min = 1, max = 32))]
    pub rules: Vec<RoleRule>,
}

/// One rule of a provisioned Role (rbac.authorization.k8s.io/v1 PolicyRule, namespaced).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("!self.verbs.exists(v, v == '*')")
        .message("rbac.roles[].rules[].verbs: '*' is not allowed; list the verbs the role needs"),
    validation = kube::core::Rule::new("!self.resources.exists(r, r == '*' || r.startsWith('*/'))")
        .message("rbac.roles[].rules[].resources: '*' is not allowed; list the resources the role needs"),
    validation = kube::core::Rule::new("!self.apiGroups.exists(g, g == '*')")
        .message("rbac.roles[].rules[].apiGroups: '*' is not allowed; list the API groups the role needs"),
    validation = kube::core::Rule::new("!self.verbs.exists(v, v in ['escalate', 'bind', 'impersonate'])")
        .message("rbac.roles[].rules[].verbs: escalate, bind and impersonate grant privilege escalation and are not allowed in a baseline role"),
)]
pub struct RoleRule {
    /// API groups of the resources; "" is the core group.
    #[serde(default)]
    #[schemars(length(max = 32), inner(length(max = 253)))]
    pub api_groups: Vec<String>,
    /// Resources (and subresources such as pods/log) the rule covers.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub resources: Vec<String>,
    /// Verbs allowed on those resources.
    #[schemars(length(min = 1, max = 16), inner(length(max = 32)))]
    pub verbs: Vec<String>,
    /// Restricts the rule to these object names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub resource_names: Vec<String>,
}

/// The RBAC least-privilege audit (report only; the operator never changes a user's RBAC).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RbacAuditSettings {
    /// Turn the audit on or off.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Subjects or roles whose grants are not reported.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub exempt: Vec<AuditExemption>,
}

impl Default for RbacAuditSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            exempt: Vec::new(),
        }
    }
}

/// A subject (User, Group, ServiceAccount) or role (Role, ClusterRole) the audit skips.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.kind in ['ServiceAccount', 'Role'] || !has(self.__namespace__)")
    .message("rbac.audit.exempt[]: namespace only applies to ServiceAccount and Role"))]
pub struct AuditExemption {
    /// What is exempt.
    pub kind: ExemptionKind,
    /// Its name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of a ServiceAccount or Role; unset means every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// Kinds of exemption.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema,
)]
pub enum ExemptionKind {
    User,
    Group,
    ServiceAccount,
    Role,
    ClusterRole,
}

/// ResourceQuota and LimitRange defaults, for quality of service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResourceQuotaSettings {
    /// Hard limits of the ResourceQuota baseline-<baseline>-quota (e.g. requests.cpu: "4",
    /// pods: "50"). Empty: no ResourceQuota is generated.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "bounded_quantity_map")]
    pub hard: BTreeMap<String, IntOrString>,
    /// Container defaults of the LimitRange baseline-<baseline>-limits. Unset: no LimitRange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ContainerLimits>,
}

/// Per-container defaults and bounds (a LimitRange item of type Container).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerLimits {
    /// Limits given to containers that set none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "bounded_quantity_map")]
    pub default: BTreeMap<String, IntOrString>,
    /// Requests given to containers that set none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "bounded_quantity_map")]
    pub default_request: BTreeMap<String, IntOrString>,
    /// Largest limits a container may set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "bounded_quantity_map")]
    pub max: BTreeMap<String, IntOrString>,
    /// Smallest requests a container may set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "bounded_quantity_map")]
    pub min: BTreeMap<String, IntOrString>,
}

/// The audit policy and audit log settings the kube-apiserver must use.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuditPolicySettings {
    /// Built-in policy to render. Baseline follows the CIS Kubernetes Benchmark (3.2.2).
    #[serde(default)]
    pub profile: AuditProfile,
    /// audit.k8s.io/v1 policy rules placed before the profile's rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub additional_rules: Vec<AuditPolicyRule>,
    /// Audit log retention the kube-apiserver must be started with.
    #[serde(default)]
    pub log: AuditLogSettings,
}

/// Built-in audit policy profiles.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum AuditProfile {
    /// Log nothing (the checks of flags and log retention still run).
    None,
    /// Metadata for writes and sensitive reads only.
    Minimal,
    /// CIS-aligned: secrets, configmaps and tokenreviews at Metadata; exec, attach,
    /// portforward and proxy logged; RBAC changes at RequestResponse; noisy system reads dropped.
    #[default]
    Baseline,
    /// Baseline plus request bodies of every write.
    Strict,
}

/// An audit.k8s.io/v1 PolicyRule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuditPolicyRule {
    /// Level of events matched by this rule.
    pub level: AuditLevel,
    /// Users this rule applies to; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub users: Vec<String>,
    /// Groups this rule applies to; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub user_groups: Vec<String>,
    /// Verbs this rule applies to; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 32)))]
    pub verbs: Vec<String>,
    /// Resources this rule applies to; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub resources: Vec<AuditGroupResources>,
    /// Namespaces this rule applies to; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub namespaces: Vec<String>,
    /// Non-resource URL paths this rule applies to (a trailing * is a prefix match).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        rename = "nonResourceURLs"
    )]
    #[schemars(length(max = 32), inner(length(max = 253)))]
    pub non_resource_urls: Vec<String>,
    /// Stages for which no event is recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub omit_stages: Vec<AuditStage>,
}

/// Audit levels, from least to most detail.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    schemars::JsonSchema,
)]
pub enum AuditLevel {
    #[default]
    None,
    Metadata,
    Request,
    RequestResponse,
}

/// Audit stages.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum AuditStage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

/// Resources of one API group, as in an audit policy rule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuditGroupResources {
    /// API group; "" is the core group.
    #[serde(default)]
    #[schemars(length(max = 253))]
    pub group: String,
    /// Resources in that group; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub resources: Vec<String>,
    /// Object names; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub resource_names: Vec<String>,
}

/// Audit log retention flags of the kube-apiserver (CIS 1.2.17-1.2.19: at least 30, 10, 100).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditLogSettings {
    /// Minimum --audit-log-maxage in days.
    #[serde(default = "default_max_age")]
    #[schemars(range(min = 0, max = 3650))]
    pub max_age: i32,
    /// Minimum --audit-log-maxbackup files.
    #[serde(default = "default_max_backup")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_backup: i32,
    /// Minimum --audit-log-maxsize in megabytes.
    #[serde(default = "default_max_size")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_size: i32,
}

impl Default for AuditLogSettings {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            max_backup: default_max_backup(),
            max_size: default_max_size(),
        }
    }
}

/// Kubelet settings and the nodes they are checked on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubeletBaseline {
    /// Node labels selecting the nodes checked; empty selects every node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "bounded_string_map")]
    pub node_selector: BTreeMap<String, String>,
    /// Expected values of the kubelet's effective configuration.
    #[serde(default)]
    pub settings: KubeletSettings,
    /// Mode and owner of the kubelet's kubeconfig, client CA file and config file (CIS
    /// 4.1.5-4.1.10). `{}` checks every CIS recommendation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FileSettings>,
}

/// Expected kubelet settings (KubeletConfiguration fields). Unset fields are not checked.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubeletSettings {
    /// authentication.anonymous.enabled (CIS 4.2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_auth: Option<bool>,
    /// authentication.webhook.enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_authentication: Option<bool>,
    /// authorization.mode (CIS 4.2.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_mode: Option<KubeletAuthorizationMode>,
    /// readOnlyPort (CIS 4.2.4); 0 disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 65535))]
    pub read_only_port: Option<i32>,
    /// protectKernelDefaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protect_kernel_defaults: Option<bool>,
    /// rotateCertificates (CIS 4.2.10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_certificates: Option<bool>,
    /// seccompDefault (CIS 4.2.14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_default: Option<bool>,
    /// makeIPTablesUtilChains (CIS 4.2.6).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "makeIPTablesUtilChains"
    )]
    pub make_iptables_util_chains: Option<bool>,
    /// CIS 4.2.3: a client CA file is set (authentication.x509.clientCAFile or
    /// --client-ca-file). The requirements below are checked only, never written by
    /// --enforce (their compliant values are paths or limits only the admin can choose);
    /// `false` or unset leaves the check out.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "requireClientCAFile"
    )]
    pub require_client_ca_file: Option<bool>,
    /// CIS 4.2.5: streamingConnectionIdleTimeout (--streaming-connection-idle-timeout) is
    /// not 0 (0 keeps idle exec/attach/port-forward streams open forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_streaming_connection_idle_timeout: Option<bool>,
    /// CIS 4.2.7: the kubelet runs without --hostname-override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forbid_hostname_override: Option<bool>,
    /// CIS 4.2.9: tlsCertFile and tlsPrivateKeyFile are set, or serverTLSBootstrap is true
    /// (otherwise the kubelet serves a self-signed certificate).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "requireTLSCertFile"
    )]
    pub require_tls_cert_file: Option<bool>,
    /// CIS 4.2.11: the RotateKubeletServerCertificate feature gate is not turned off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_server_certificate_rotation: Option<bool>,
    /// CIS 4.2.12: tlsCipherSuites (--tls-cipher-suites) is set and lists strong suites only.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "requireStrongTLSCipherSuites"
    )]
    pub require_strong_tls_cipher_suites: Option<bool>,
    /// CIS 4.2.13: podPidsLimit (--pod-max-pids) is positive (the default -1 is unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_pod_pids_limit: Option<bool>,
}

/// Kubelet authorization modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum KubeletAuthorizationMode {
    Webhook,
    AlwaysAllow,
}

/// Read-only hardening checks of the control plane.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneSettings {
    /// kube-apiserver flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server: Option<ApiServerSettings>,
    /// etcd as the kube-apiserver reaches it, and etcd's own flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdSettings>,
    /// kube-controller-manager flags (CIS 1.3), checked on every node running a
    /// kube-apiserver. `{}` checks every CIS recommendation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_manager: Option<ControllerManagerSettings>,
    /// kube-scheduler flags and --config (CIS 1.4), checked on every node running a
    /// kube-apiserver. `{}` checks every CIS recommendation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerSettings>,
    /// Mode and owner of the files the control-plane processes' flags name (CIS 1.1),
    /// checked on every node running a kube-apiserver. `{}` checks every CIS recommendation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FileSettings>,
    /// Real requests the node agent sends, without credentials, to the kube-apiserver and
    /// etcd of every node running a kube-apiserver (CIS 1.2.1 and 2.2 as the servers
    /// behave, not only as their flags read). `{}` probes both. The agent probes only while
    /// a baseline asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_probes: Option<LiveProbeSettings>,
}

/// Live probes of the control plane (apiserver.anonymous-request-live,
/// etcd.client-cert-required-live). Each field defaults to true; `false` leaves that probe
/// out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LiveProbeSettings {
    /// A request without credentials to the kube-apiserver (GET /api/v1/namespaces) must be
    /// answered 401 (CIS 1.2.1).
    #[serde(default = "default_true")]
    pub anonymous_request: bool,
    /// etcd must refuse a TLS client without a certificate (CIS 2.2).
    #[serde(default = "default_true")]
    pub etcd_client_certificate: bool,
}

impl Default for LiveProbeSettings {
    fn default() -> Self {
        Self {
            anonymous_request: true,
            etcd_client_certificate: true,
        }
    }
}

/// Expected modes and owners of the files a component's flags name (CIS 1.1 for the control
/// plane, 4.1 for the kubelet). Each field defaults to true; `false` leaves those checks
/// out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileSettings {
    /// Kubeconfigs and private keys 600, certificates 644, etcd's data directory 700, or
    /// stricter (CIS 1.1.11, 1.1.15, 1.1.17, 1.1.20, 1.1.21; the kubelet's: 4.1.5, 4.1.7, 4.1.9).
    #[serde(default = "default_true")]
    pub permissions: bool,
    /// Kubeconfigs, certificates and keys owned by root:root, etcd's data directory by the
    /// user etcd runs as (CIS 1.1.12, 1.1.16, 1.1.18, 1.1.19; the kubelet's: 4.1.6, 4.1.8,
    /// 4.1.10).
    #[serde(default = "default_true")]
    pub ownership: bool,
}

impl Default for FileSettings {
    fn default() -> Self {
        Self {
            permissions: true,
            ownership: true,
        }
    }
}

/// Expected kube-controller-manager hardening (CIS 1.3). Each field defaults to the CIS
/// recommendation; `false` leaves that check out (the threshold is always checked).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ControllerManagerSettings {
    /// Highest --terminated-pod-gc-threshold allowed; the flag must be set (its default,
    /// 12500, lets terminated pods pile up) (CIS 1.3.1).
    #[serde(
        default = "default_terminated_pod_gc_threshold",
        rename = "maxTerminatedPodGCThreshold"
    )]
    #[schemars(range(min = 1))]
    pub max_terminated_pod_gc_threshold: i64,
    /// --profiling=false (CIS 1.3.2).
    #[serde(default = "default_true")]
    pub profiling_disabled: bool,
    /// --use-service-account-credentials=true (CIS 1.3.3).
    #[serde(default = "default_true")]
    pub use_service_account_credentials: bool,
    /// --service-account-private-key-file set (CIS 1.3.4).
    #[serde(default = "default_true")]
    pub service_account_private_key_file: bool,
    /// --root-ca-file set (CIS 1.3.5).
    #[serde(default = "default_true", rename = "rootCAFile")]
    pub root_ca_file: bool,
    /// The RotateKubeletServerCertificate feature gate not turned off (CIS 1.3.6).
    #[serde(default = "default_true")]
    pub rotate_kubelet_server_certificate: bool,
    /// --bind-address a loopback address (CIS 1.3.7).
    #[serde(default = "default_true")]
    pub loopback_bind_address: bool,
}

impl Default for ControllerManagerSettings {
    fn default() -> Self {
        Self {
            max_terminated_pod_gc_threshold: default_terminated_pod_gc_threshold(),
            profiling_disabled: true,
            use_service_account_credentials: true,
            service_account_private_key_file: true,
            root_ca_file: true,
            rotate_kubelet_server_certificate: true,
            loopback_bind_address: true,
        }
    }
}

/// Expected kube-scheduler hardening (CIS 1.4). Each field defaults to the CIS
/// recommendation; `false` leaves that check out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerSettings {
    /// Profiling off: `enableProfiling: false` in --config, else --profiling=false (CIS 1.4.1).
    #[serde(default = "default_true")]
    pub profiling_disabled: bool,
    /// --bind-address a loopback address (CIS 1.4.2).
    #[serde(default = "default_true")]
    pub loopback_bind_address: bool,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            profiling_disabled: true,
            loopback_bind_address: true,
        }
    }
}

/// Expected hardening of etcd's own flags or --config-file (CIS 2). Each field defaults to
/// the CIS recommendation; `false` leaves that check out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdServerSettings {
    /// --cert-file and --key-file set (CIS 2.1).
    #[serde(default = "default_true", rename = "clientTLS")]
    pub client_tls: bool,
    /// --client-cert-auth=true (CIS 2.2).
    #[serde(default = "default_true")]
    pub client_cert_auth: bool,
    /// --auto-tls not true (CIS 2.3).
    #[serde(default = "default_true", rename = "noAutoTLS")]
    pub no_auto_tls: bool,
    /// --peer-cert-file and --peer-key-file set (CIS 2.4).
    #[serde(default = "default_true", rename = "peerTLS")]
    pub peer_tls: bool,
    /// --peer-client-cert-auth=true (CIS 2.5).
    #[serde(default = "default_true")]
    pub peer_client_cert_auth: bool,
    /// --peer-auto-tls not true (CIS 2.6).
    #[serde(default = "default_true", rename = "noPeerAutoTLS")]
    pub no_peer_auto_tls: bool,
    /// --trusted-ca-file holds no certificate of the Kubernetes CA (the kube-apiserver's
    /// --client-ca-file), so a Kubernetes client certificate does not open etcd (CIS 2.7).
    #[serde(default = "default_true", rename = "distinctCA")]
    pub distinct_ca: bool,
}

impl Default for EtcdServerSettings {
    fn default() -> Self {
        Self {
            client_tls: true,
            client_cert_auth: true,
            no_auto_tls: true,
            peer_tls: true,
            peer_client_cert_auth: true,
            no_peer_auto_tls: true,
            distinct_ca: true,
        }
    }
}

/// Checks that Kubernetes is kept up to date (report only: never repaired).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesVersionSettings {
    /// Report a control plane whose minor release is past its end of life
    /// (version.control-plane-eol), from an embedded, dated table of upstream releases.
    #[serde(default = "default_true")]
    pub support_window: bool,
    /// Support windows that differ from upstream (a vendor's extended support), per minor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = kube::core::Rule::new("self.all(o, self.exists_one(p, p.minor == o.minor))")
        .message("kubernetesVersion.endOfLifeOverrides: one entry per minor"))]
    pub end_of_life_overrides: Vec<EndOfLifeOverride>,
    /// Report kubelets outside the upstream version skew policy (version.kubelet-skew) and
    /// kube-apiservers more than one minor apart (version.apiserver-skew).
    #[serde(default = "default_true")]
    pub skew: bool,
    /// Report requests of API versions removed in the next minor or earlier, from the API
    /// server's apiserver_requested_deprecated_apis metric (version.deprecated-api). Reading
    /// /metrics is an opt-in permission (config/rbac/apiserver-metrics).
    #[serde(default, rename = "deprecatedAPIs")]
    pub deprecated_apis: bool,
}

impl Default for KubernetesVersionSettings {
    fn default() -> Self {
        Self {
            support_window: true,
            end_of_life_overrides: Vec::new(),
            skew: true,
            deprecated_apis: false,
        }
    }
}

/// The end of life of one minor release, where it differs from upstream.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EndOfLifeOverride {
    /// The minor release, e.g. "1.33".
    #[schemars(length(max = 8), regex(pattern = r"^1\.[0-9]{1,3}$"))]
    pub minor: String,
    /// The last supported day (UTC), e.g. "2027-06-28".
    #[schemars(
        length(max = 10),
        regex(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
    )]
    pub end_of_life: String,
    /// Why this minor's support differs, e.g. "EKS extended support".
    #[schemars(length(min = 1, max = 256), regex(pattern = r"\S"))]
    pub reason: String,
}

/// Expected kube-apiserver hardening.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApiServerSettings {
    /// --anonymous-auth (CIS 1.2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_auth: Option<bool>,
    /// Modes --authorization-mode must include; AlwaysAllow is always reported (CIS 1.2.6-1.2.8).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(max = 32)))]
    pub require_authorization_modes: Vec<String>,
    /// Admission plugins --enable-admission-plugins must include, e.g. NodeRestriction (CIS 1.2.14).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 64)))]
    pub require_admission_plugins: Vec<String>,
    /// An --encryption-provider-config with a real provider (aescbc, aesgcm, secretbox, kms)
    /// for secrets (CIS 1.2.27-1.2.28).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_at_rest: Option<bool>,
    /// The other flag recommendations of CIS 1.2. `{}` checks every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<ApiServerFlagSettings>,
}

/// kube-apiserver flag recommendations of CIS 1.2 beyond authentication, authorization,
/// admission, audit and encryption. Each field defaults to the CIS recommendation; `false`
/// leaves that check out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiServerFlagSettings {
    /// No --token-auth-file (static tokens) (CIS 1.2.2).
    #[serde(default = "default_true")]
    pub no_token_auth_file: bool,
    /// --kubelet-client-certificate and --kubelet-client-key set (CIS 1.2.4).
    #[serde(default = "default_true")]
    pub kubelet_client_certificate: bool,
    /// --kubelet-certificate-authority set (CIS 1.2.5).
    #[serde(default = "default_true")]
    pub kubelet_certificate_authority: bool,
    /// --profiling=false (CIS 1.2.15).
    #[serde(default = "default_true")]
    pub profiling_disabled: bool,
    /// --service-account-lookup not false (CIS 1.2.21).
    #[serde(default = "default_true")]
    pub service_account_lookup: bool,
    /// --service-account-key-file set (CIS 1.2.22).
    #[serde(default = "default_true")]
    pub service_account_key_file: bool,
    /// --tls-cert-file and --tls-private-key-file set (CIS 1.2.24).
    #[serde(default = "default_true", rename = "tlsCertificate")]
    pub tls_certificate: bool,
    /// --client-ca-file set (CIS 1.2.25).
    #[serde(default = "default_true", rename = "clientCAFile")]
    pub client_ca_file: bool,
    /// --tls-cipher-suites set, with strong suites only (CIS 1.2.29).
    #[serde(default = "default_true")]
    pub strong_cipher_suites: bool,
    /// --service-account-extend-token-expiration=false (CIS 1.2.30).
    #[serde(default = "default_true")]
    pub no_service_account_token_extension: bool,
}

impl Default for ApiServerFlagSettings {
    fn default() -> Self {
        Self {
            no_token_auth_file: true,
            kubelet_client_certificate: true,
            kubelet_certificate_authority: true,
            profiling_disabled: true,
            service_account_lookup: true,
            service_account_key_file: true,
            tls_certificate: true,
            client_ca_file: true,
            strong_cipher_suites: true,
            no_service_account_token_extension: true,
        }
    }
}

/// Expected etcd hardening: how the kube-apiserver reaches it (clientTLS) and etcd's own
/// flags (server).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSettings {
    /// The kube-apiserver talks to etcd over TLS with a client certificate (CIS 1.2.25, 2.x).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "clientTLS")]
    pub client_tls: Option<bool>,
    /// etcd's own flags (or --config-file), read from the etcd process on every node running
    /// a kube-apiserver (CIS 2.1-2.7). `{}` checks every CIS recommendation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<EtcdServerSettings>,
}

/// Observed state of a SecurityBaseline.
// The schema default makes the API server return `observedGeneration: 0` for a baseline no
// operator has reconciled yet: kstatus (Flux, kpt) reads an object without a status as
// Current, but one whose observedGeneration lags its generation as InProgress.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"observedGeneration": 0}))]
pub struct SecurityBaselineStatus {
    /// The generation this status describes (0: no operator has reconciled it yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Compliant, Reconciling and Stalled (kstatus).
    #[serde(default)]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Counts over namespaces and nodes.
    #[serde(default)]
    pub summary: BaselineSummary,
    /// Number of drift findings, including those not listed in drift.
    #[serde(default)]
    pub drift_total: i64,
    /// The first 50 drift findings, sorted by namespace, kind, name and check.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub drift: Vec<DriftEntry>,
    /// What the kubernetesVersion checks judged with; absent when the baseline sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<KubernetesVersionStatus>,
    /// The first 50 waived findings (not drift), sorted like drift, each with its waiver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub waived: Vec<WaivedEntry>,
    /// Each waiver of spec.waivers: whether it applies and how many findings it matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub waivers: Vec<WaiverStatus>,
}

/// A finding a waiver accepts: a drift entry's fields and the waiver's name.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "camelCase")]
pub struct WaivedEntry {
    /// Namespace of the object; empty for cluster-scoped objects and nodes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 63))]
    pub namespace: String,
    /// Kind of the object.
    #[schemars(length(max = 63))]
    pub kind: String,
    /// Name of the object.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Check ID.
    #[schemars(length(max = 63))]
    pub check: String,
    /// Why this would be drift.
    pub reason: DriftReason,
    /// What differs, for a human.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub message: String,
    /// The waiver (spec.waivers[].name) that accepts it.
    #[schemars(length(max = 63))]
    pub waiver: String,
}

impl WaivedEntry {
    /// The finding `entry`, waived by `waiver`.
    pub fn new(entry: DriftEntry, waiver: &str) -> Self {
        Self {
            namespace: entry.namespace,
            kind: entry.kind,
            name: entry.name,
            check: entry.check,
            reason: entry.reason,
            message: entry.message,
            waiver: waiver.to_owned(),
        }
    }

    /// The finding without its waiver.
    pub fn entry(&self) -> DriftEntry {
        DriftEntry {
            namespace: self.namespace.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            check: self.check.clone(),
            reason: self.reason,
            message: self.message.clone(),
        }
    }
}

/// One waiver as the operator applies it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WaiverStatus {
    /// spec.waivers[].name.
    #[schemars(length(max = 63))]
    pub name: String,
    /// Whether it applies now.
    pub state: WaiverState,
    /// Findings it waives now (0 for an Active waiver: stale, it matches nothing).
    #[serde(default)]
    pub matched: i64,
    /// spec.waivers[].expires, as written.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 64))]
    pub expires: String,
    /// Why it does not apply, or that it is stale.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub message: String,
}

/// Whether a waiver applies.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    schemars::JsonSchema,
)]
pub enum WaiverState {
    /// Granted, not expired: its findings are waived.
    Active,
    /// Past its expiry: its findings are drift again.
    Expired,
    /// Granted more than 5 minutes in the future: not applied yet.
    NotYetValid,
    /// It names a check that does not exist, or a time that cannot be read: not applied.
    Invalid,
}

impl WaiverState {
    /// The state as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Expired => "Expired",
            Self::NotYetValid => "NotYetValid",
            Self::Invalid => "Invalid",
        }
    }
}

/// The control plane version and support window the kubernetesVersion checks used.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesVersionStatus {
    /// The kube-apiserver's gitVersion as /version answered (empty when it could not be read).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 64))]
    pub api_server: String,
    /// The judged minor's last supported day (UTC), empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 10))]
    pub end_of_life: String,
    /// Where that day comes from: "upstream (scheduled)", "upstream (actual)" or
    /// "override: <reason>".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 300))]
    pub end_of_life_source: String,
    /// The date of the release table this version of kube-baseline embeds.
    #[schemars(length(max = 10))]
    pub release_table: String,
}

/// Counts over namespaces and nodes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BaselineSummary {
    /// Namespaces the baseline selects.
    #[serde(default)]
    pub namespaces_selected: i64,
    /// Selected namespaces evaluated at the current generation and found without drift.
    #[serde(default)]
    pub namespaces_compliant: i64,
    /// Selected namespaces with drift.
    #[serde(default)]
    pub namespaces_drifted: i64,
    /// Selected namespaces not yet evaluated at the current generation.
    #[serde(default)]
    pub namespaces_pending: i64,
    /// Nodes the node checks apply to.
    #[serde(default)]
    pub nodes_selected: i64,
    /// Selected nodes without drift (a node without an agent is never compliant).
    #[serde(default)]
    pub nodes_compliant: i64,
    /// Drift repaired in Enforce mode since the operator started on this baseline.
    #[serde(default)]
    pub repairs: i64,
    /// Selected namespaces whose enforce level `podSecurity.rollout: Gated` holds back
    /// (existing pods would be rejected, or that is unknown).
    #[serde(default)]
    pub namespaces_gated: i64,
    /// Findings an active waiver accepts (not counted as drift).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waived: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// One deviation from the baseline.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "camelCase")]
pub struct DriftEntry {
    /// Namespace of the object; empty for cluster-scoped objects and nodes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 63))]
    pub namespace: String,
    /// Kind of the object (NetworkPolicy, Role, Namespace, Node, ...).
    #[schemars(length(max = 63))]
    pub kind: String,
    /// Name of the object (for node checks, the node name).
    #[schemars(length(max = 253))]
    pub name: String,
    /// Stable check ID, e.g. network.default-deny or kubelet.anonymous-auth.
    #[schemars(length(max = 63))]
    pub check: String,
    /// Why this is drift.
    pub reason: DriftReason,
    /// What differs, for a human.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub message: String,
}

/// Why an entry is drift.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    schemars::JsonSchema,
)]
pub enum DriftReason {
    /// A generated object does not exist.
    Missing,
    /// A generated object differs from what the baseline wants.
    Modified,
    /// An object exists that the baseline no longer wants.
    Unexpected,
    /// An audit check failed.
    Violation,
    /// An object with a generated name exists and is not ours.
    Conflict,
    /// The state could not be observed.
    Unknown,
}

impl DriftReason {
    /// The reason as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "Missing",
            Self::Modified => "Modified",
            Self::Unexpected => "Unexpected",
            Self::Violation => "Violation",
            Self::Conflict => "Conflict",
            Self::Unknown => "Unknown",
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_terminated_pod_gc_threshold() -> i64 {
    12500
}
fn default_max_age() -> i32 {
    30
}
fn default_max_backup() -> i32 {
    10
}
fn default_max_size() -> i32 {
    100
}

/// A string map whose keys and values are bounded (label keys are at most 317 characters:
/// a 253-character prefix, a slash and a 63-character name).
fn bounded_string_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 32,
        "additionalProperties": {"type": "string", "maxLength": LABEL_VALUE_MAX},
    })
}

/// A map from resource name to a quantity ("500m", "2Gi", 10), as resource.Quantity is
/// written in Kubernetes' own CRDs: an int-or-string with the quantity pattern.
fn bounded_quantity_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 32,
        "additionalProperties": {
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 64}],
            "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
        },
    })
}

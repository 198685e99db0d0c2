//! The objects a baseline wants in one namespace, built from (baseline, namespace) alone.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::{
    BASELINE_LABEL, ContainerLimits, MANAGED_BY_LABEL, MANAGED_BY_VALUE, PodSecurityLevel,
    PodSecurityRollout, SecurityBaselineSpec,
};
use crate::domain::checks::CheckInfo;

/// Check IDs of namespace enforcement.
pub mod check_ids {
    pub const DEFAULT_DENY: &str = "network.default-deny";
    pub const ALLOW_DNS: &str = "network.allow-dns";
    pub const ALLOW_SAME_NAMESPACE: &str = "network.allow-same-namespace";
    pub const POD_SECURITY: &str = "pod-security.labels";
    pub const POD_SECURITY_PREVIEW: &str = "pod-security.preview";
    pub const ROLE: &str = "role.provisioned";
    pub const RESOURCE_QUOTA: &str = "quota.resource-quota";
    pub const LIMIT_RANGE: &str = "quota.limit-range";
}

/// The checks of namespace enforcement, for the registry.
pub const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        id: check_ids::DEFAULT_DENY,
        description: "The default-deny NetworkPolicy exists and is unchanged",
        cis: &["5.3.2"],
    },
    CheckInfo {
        id: check_ids::ALLOW_DNS,
        description: "The DNS egress allowance exists when egress is denied",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::ALLOW_SAME_NAMESPACE,
        description: "The same-namespace allowance exists when requested",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::POD_SECURITY,
        description: "Pod Security admission labels are at least as strict as the baseline",
        cis: &["5.2.1"],
    },
    CheckInfo {
        id: check_ids::POD_SECURITY_PREVIEW,
        description: "Enforcing the baseline's Pod Security level would reject no existing pod (the API server's own evaluation, on a dry run)",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::ROLE,
        description: "A Role from spec.rbac.roles exists exactly as declared",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::RESOURCE_QUOTA,
        description: "The ResourceQuota exists with the declared hard limits",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::LIMIT_RANGE,
        description: "The LimitRange exists with the declared container defaults",
        cis: &[],
    },
];

/// Kinds of objects the operator generates in namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GeneratedKind {
    NetworkPolicy,
    Role,
    ResourceQuota,
    LimitRange,
}

impl GeneratedKind {
    pub const ALL: [GeneratedKind; 4] = [
        Self::NetworkPolicy,
        Self::Role,
        Self::ResourceQuota,
        Self::LimitRange,
    ];

    /// The Kubernetes kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NetworkPolicy => "NetworkPolicy",
            Self::Role => "Role",
            Self::ResourceQuota => "ResourceQuota",
            Self::LimitRange => "LimitRange",
        }
    }
}

/// A generated (desired) or observed object of one of the generated kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum NamespacedObject {
    NetworkPolicy(NetworkPolicy),
    Role(Role),
    ResourceQuota(ResourceQuota),
    LimitRange(LimitRange),
}

impl NamespacedObject {
    pub fn kind(&self) -> GeneratedKind {
        match self {
            Self::NetworkPolicy(_) => GeneratedKind::NetworkPolicy,
            Self::Role(_) => GeneratedKind::Role,
            Self::ResourceQuota(_) => GeneratedKind::ResourceQuota,
            Self::LimitRange(_) => GeneratedKind::LimitRange,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::NetworkPolicy(o) => &o.metadata,
            Self::Role(o) => &o.metadata,
            Self::ResourceQuota(o) => &o.metadata,
            Self::LimitRange(o) => &o.metadata,
        }
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.metadata().namespace.as_deref().unwrap_or_default()
    }

    /// The label value, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.metadata()
            .labels
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    /// True when the object carries our managed-by label: only such objects may be
    /// modified or deleted.
    pub fn is_managed_by_us(&self) -> bool {
        self.label(MANAGED_BY_LABEL) == Some(MANAGED_BY_VALUE)
    }

    /// The object as a JSON value (for comparisons that walk it; a request body is
    /// serialized straight from the object: see the `Serialize` impl).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The object with the given metadata replaced.
    pub fn with_metadata(&self, metadata: ObjectMeta) -> Self {
        let mut object = self.clone();
        match &mut object {
            Self::NetworkPolicy(o) => o.metadata = metadata,
            Self::Role(o) => o.metadata = metadata,
            Self::ResourceQuota(o) => o.metadata = metadata,
            Self::LimitRange(o) => o.metadata = metadata,
        }
        object
    }
}

/// The object's own JSON form (apiVersion and kind included), written without building a
/// `serde_json::Value` first: a request body, or bytes to hash.
impl serde::Serialize for NamespacedObject {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::NetworkPolicy(o) => o.serialize(serializer),
            Self::Role(o) => o.serialize(serializer),
            Self::ResourceQuota(o) => o.serialize(serializer),
            Self::LimitRange(o) => o.serialize(serializer),
        }
    }
}

/// One object the baseline wants, with the check it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject {
    pub check: &'static str,
    pub object: NamespacedObject,
}

/// The baseline as its generated objects refer to it.
#[derive(Debug, Clone, Copy)]
pub struct BaselineRef<'a> {
    pub name: &'a str,
    pub uid: &'a str,
}

/// Generated name `baseline-<baseline>-<suffix>`, hash-truncated to a valid DNS label.
pub fn generated_name(baseline: &str, suffix: &str) -> String {
    let name = format!("baseline-{baseline}-{suffix}");
    if name.len() <= 63 {
        return name;
    }
    // Keep a readable prefix and make it unique with a stable hash of the full name.
    let hash = format!("{:016x}", fnv1a64(name.as_bytes()));
    let prefix: String = name.chars().take(63 - 1 - 10).collect();
    format!("{}-{}", prefix.trim_end_matches('-'), &hash[..10])
}

/// FNV-1a: stable across releases and platforms, which generated names must be.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn metadata(baseline: BaselineRef<'_>, namespace: &str, suffix: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(generated_name(baseline.name, suffix)),
        namespace: Some(namespace.to_string()),
        labels: Some(BTreeMap::from([
            (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
            (BASELINE_LABEL.to_string(), baseline.name.to_string()),
        ])),
        owner_references: Some(vec![owner_reference(baseline)]),
        ..ObjectMeta::default()
    }
}

/// The ownerReference every generated object carries, so Argo CD shows it under the
/// baseline and garbage collection removes it if the operator is gone.
pub fn owner_reference(baseline: BaselineRef<'_>) -> OwnerReference {
    OwnerReference {
        api_version: "kube-baseline.dev/v1alpha1".to_string(),
        kind: "SecurityBaseline".to_string(),
        name: baseline.name.to_string(),
        uid: baseline.uid.to_string(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

fn select_all() -> LabelSelector {
    LabelSelector::default()
}

/// Every object `spec` wants in `namespace`, sorted by (kind, name).
pub fn desired_objects(
    spec: &SecurityBaselineSpec,
    baseline: BaselineRef<'_>,
    namespace: &str,
) -> Vec<DesiredObject> {
    let mut objects = network_policies(spec, baseline, namespace);
    objects.extend(spec.rbac.roles.iter().map(|template| {
        DesiredObject {
            check: check_ids::ROLE,
            object: NamespacedObject::Role(Role {
                metadata: metadata(baseline, namespace, &template.name),
                rules: Some(
                    template
                        .rules
                        .iter()
                        .map(|rule| PolicyRule {
                            api_groups: Some(rule.api_groups.clone()),
                            resources: Some(rule.resources.clone()),
                            verbs: rule.verbs.clone(),
                            resource_names: (!rule.resource_names.is_empty())
                                .then(|| rule.resource_names.clone()),
                            non_resource_urls: None,
                        })
                        .collect(),
                ),
            }),
        }
    }));
    if let Some(quota) = &spec.resource_quota {
        if !quota.hard.is_empty() {
            objects.push(DesiredObject {
                check: check_ids::RESOURCE_QUOTA,
                object: NamespacedObject::ResourceQuota(ResourceQuota {
                    metadata: metadata(baseline, namespace, "quota"),
                    spec: Some(ResourceQuotaSpec {
                        hard: Some(quantities(&quota.hard)),
                        ..ResourceQuotaSpec::default()
                    }),
                    status: None,
                }),
            });
        }
        if let Some(limits) = &quota.limits {
            objects.push(DesiredObject {
                check: check_ids::LIMIT_RANGE,
                object: NamespacedObject::LimitRange(LimitRange {
                    metadata: metadata(baseline, namespace, "limits"),
                    spec: Some(LimitRangeSpec {
                        limits: vec![container_limits(limits)],
                    }),
                }),
            });
        }
    }
    objects.sort_by(|a, b| {
        (a.object.kind(), a.object.name()).cmp(&(b.object.kind(), b.object.name()))
    });
    objects
}

fn network_policies(
    spec: &SecurityBaselineSpec,
    baseline: BaselineRef<'_>,
    namespace: &str,
) -> Vec<DesiredObject> {
    let settings = &spec.network_policy;
    let deny = &settings.default_deny;
    let mut denied = Vec::new();
    if deny.ingress {
        denied.push("Ingress".to_string());
    }
    if deny.egress {
        denied.push("Egress".to_string());
    }
    if denied.is_empty() {
        return Vec::new();
    }
    let mut policies = vec![DesiredObject {
        check: check_ids::DEFAULT_DENY,
        object: NamespacedObject::NetworkPolicy(NetworkPolicy {
            metadata: metadata(baseline, namespace, "deny-all"),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(select_all()),
                policy_types: Some(denied.clone()),
                // Explicitly empty, so we own these fields: a rule someone adds is then
                // removed by our next apply instead of surviving as another manager's field.
                ingress: Some(Vec::new()),
                egress: Some(Vec::new()),
            }),
        }),
    }];
    if deny.egress && settings.allow_dns {
        let dns_port = |protocol: &str| NetworkPolicyPort {
            protocol: Some(protocol.to_string()),
            port: Some(IntOrString::Int(53)),
            end_port: None,
        };
        policies.push(DesiredObject {
            check: check_ids::ALLOW_DNS,
            object: NamespacedObject::NetworkPolicy(NetworkPolicy {
                metadata: metadata(baseline, namespace, "allow-dns"),
                spec: Some(NetworkPolicySpec {
                    pod_selector: Some(select_all()),
                    policy_types: Some(vec!["Egress".to_string()]),
                    ingress: Some(Vec::new()),
                    egress: Some(vec![NetworkPolicyEgressRule {
                        to: Some(vec![NetworkPolicyPeer {
                            namespace_selector: Some(LabelSelector {
                                match_labels: Some(BTreeMap::from([(
                                    "kubernetes.io/metadata.name".to_string(),
                                    "kube-system".to_string(),
                                )])),
                                match_expressions: None,
                            }),
                            pod_selector: Some(LabelSelector {
                                match_labels: Some(BTreeMap::from([(
                                    "k8s-app".to_string(),
                                    "kube-dns".to_string(),
                                )])),
                                match_expressions: None,
                            }),
                            ip_block: None,
                        }]),
                        ports: Some(vec![dns_port("UDP"), dns_port("TCP")]),
                    }]),
                }),
            }),
        });
    }
    if settings.allow_same_namespace {
        let same_namespace = || {
            Some(vec![NetworkPolicyPeer {
                pod_selector: Some(select_all()),
                namespace_selector: None,
                ip_block: None,
            }])
        };
        policies.push(DesiredObject {
            check: check_ids::ALLOW_SAME_NAMESPACE,
            object: NamespacedObject::NetworkPolicy(NetworkPolicy {
                metadata: metadata(baseline, namespace, "allow-same-namespace"),
                spec: Some(NetworkPolicySpec {
                    pod_selector: Some(select_all()),
                    policy_types: Some(denied),
                    ingress: Some(if deny.ingress {
                        vec![NetworkPolicyIngressRule {
                            from: same_namespace(),
                            ports: None,
                        }]
                    } else {
                        Vec::new()
                    }),
                    egress: Some(if deny.egress {
                        vec![NetworkPolicyEgressRule {
                            to: same_namespace(),
                            ports: None,
                        }]
                    } else {
                        Vec::new()
                    }),
                }),
            }),
        });
    }
    policies
}

fn quantities(values: &BTreeMap<String, IntOrString>) -> BTreeMap<String, Quantity> {
    values
        .iter()
        .map(|(resource, value)| {
            let text = match value {
                IntOrString::Int(i) => i.to_string(),
                IntOrString::String(s) => s.clone(),
            };
            (resource.clone(), Quantity(text))
        })
        .collect()
}

fn container_limits(limits: &ContainerLimits) -> LimitRangeItem {
    let non_empty =
        |values: &BTreeMap<String, IntOrString>| (!values.is_empty()).then(|| quantities(values));
    LimitRangeItem {
        type_: "Container".to_string(),
        default: non_empty(&limits.default),
        default_request: non_empty(&limits.default_request),
        max: non_empty(&limits.max),
        min: non_empty(&limits.min),
        max_limit_request_ratio: None,
    }
}

/// The Pod Security label prefix.
pub const POD_SECURITY_PREFIX: &str = "pod-security.kubernetes.io/";

/// The Pod Security modes, in label order.
pub const POD_SECURITY_MODES: [&str; 3] = ["enforce", "audit", "warn"];

/// Pod Security levels this baseline wants per mode (enforce, audit, warn), and the version.
pub fn wanted_pod_security(
    spec: &SecurityBaselineSpec,
) -> BTreeMap<&'static str, (PodSecurityLevel, Option<&str>)> {
    let mut wanted = BTreeMap::new();
    if let Some(ps) = &spec.pod_security {
        for (mode, level) in POD_SECURITY_MODES
            .into_iter()
            .zip([ps.enforce, ps.audit, ps.warn])
        {
            if let Some(level) = level {
                wanted.insert(mode, (level, ps.version.as_deref()));
            }
        }
        // Gated holds enforce back while pods would be rejected; warn and audit carry the
        // enforce level at once, so users see now what enforcing will reject.
        if let (Some(PodSecurityRollout::Gated), Some(enforce)) = (ps.rollout, ps.enforce) {
            for mode in ["audit", "warn"] {
                let level = wanted.get(mode).map_or(enforce, |(l, _)| enforce.max(*l));
                wanted.insert(mode, (level, ps.version.as_deref()));
            }
        }
    }
    wanted
}

/// Whether the baseline holds its enforce level back while existing pods would be rejected.
pub fn gated_rollout(spec: &SecurityBaselineSpec) -> bool {
    spec.pod_security
        .as_ref()
        .is_some_and(|ps| ps.rollout == Some(PodSecurityRollout::Gated) && ps.enforce.is_some())
}

#[cfg(test)]
mod tests {
    //! The generated policies' content, pinned as the API server stores it: a changed port,
    //! namespace or selector is a behaviour change and must fail here.
    use super::*;
    use serde_json::json;

    const BASELINE: BaselineRef<'static> = BaselineRef {
        name: "b",
        uid: "uid-b",
    };

    fn specs(yaml: &str) -> BTreeMap<String, serde_json::Value> {
        let spec: SecurityBaselineSpec = serde_saphyr::from_str(yaml).expect("spec parses");
        desired_objects(&spec, BASELINE, "shop")
            .iter()
            .filter(|d| d.object.kind() == GeneratedKind::NetworkPolicy)
            .map(|d| {
                (
                    d.object.name().to_string(),
                    d.object.to_json()["spec"].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn deny_all_with_dns_and_same_namespace_allowed() {
        let policies = specs(
            "networkPolicy: {defaultDeny: {ingress: true, egress: true}, allowDNS: true, allowSameNamespace: true}",
        );
        assert_eq!(
            policies.keys().collect::<Vec<_>>(),
            [
                "baseline-b-allow-dns",
                "baseline-b-allow-same-namespace",
                "baseline-b-deny-all"
            ]
        );
        assert_eq!(
            policies["baseline-b-deny-all"],
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []})
        );
        // DNS: UDP and TCP 53 to the kube-dns pods in kube-system only.
        assert_eq!(
            policies["baseline-b-allow-dns"],
            json!({
                "podSelector": {},
                "policyTypes": ["Egress"],
                "ingress": [],
                "egress": [{
                    "to": [{
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}
                    }],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
                }]
            })
        );
        // Same namespace: every pod of this namespace, both directions, no other namespace.
        assert_eq!(
            policies["baseline-b-allow-same-namespace"],
            json!({
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {}}]}],
                "egress": [{"to": [{"podSelector": {}}]}]
            })
        );
    }

    #[test]
    fn ingress_only_denies_no_egress_and_needs_no_dns_policy() {
        let policies = specs(
            "networkPolicy: {defaultDeny: {ingress: true, egress: false}, allowDNS: true, allowSameNamespace: true}",
        );
        assert_eq!(
            policies.keys().collect::<Vec<_>>(),
            ["baseline-b-allow-same-namespace", "baseline-b-deny-all"]
        );
        assert_eq!(
            policies["baseline-b-deny-all"]["policyTypes"],
            json!(["Ingress"])
        );
        assert_eq!(
            policies["baseline-b-allow-same-namespace"],
            json!({
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {}}]}],
                "egress": []
            })
        );
    }

    #[test]
    fn nothing_denied_generates_no_policy() {
        assert!(
            specs("networkPolicy: {defaultDeny: {ingress: false, egress: false}, allowDNS: true}")
                .is_empty()
        );
    }
}

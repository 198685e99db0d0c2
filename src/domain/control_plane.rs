//! Node and control-plane evaluation: kube-apiserver and etcd hardening checks, command-line
//! flag parsing shared with the kubelet checks, and the entry points the controller calls for
//! a node ([`evaluate_node`], [`unknown_node`], [`unobserved_control_plane`]).
//!
//! Everything here is pure: the agent (or `check`) turns processes and files into a
//! [`NodeObservations`]; these functions turn observations and a baseline into drift.
//! Defaults of the kube-apiserver (anonymous auth on, AlwaysAllow, the default-on admission
//! plugins) are applied here, where a flag was not given, so a missing flag is judged by
//! what the process really does, not passed silently.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::api::{
    ApiServerObservation, ApiServerSettings, ControlPlaneSettings, DriftEntry, DriftReason,
    EtcdSettings, NodeObservations, ObservationState, SecurityBaselineSpec,
};
use crate::domain::checks::CheckInfo;
use crate::domain::{audit_policy, kubelet};

/// Check IDs of the kube-apiserver and etcd checks.
pub mod check_ids {
    pub const ANONYMOUS_AUTH: &str = "apiserver.anonymous-auth";
    pub const AUTHORIZATION_MODE: &str = "apiserver.authorization-mode";
    pub const ADMISSION_PLUGINS: &str = "apiserver.admission-plugins";
    pub const ENCRYPTION_AT_REST: &str = "apiserver.encryption-at-rest";
    pub const ETCD_CLIENT_TLS: &str = "etcd.client-tls";
}

/// The kube-apiserver and etcd checks, for the registry.
pub const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        id: check_ids::ANONYMOUS_AUTH,
        description: "kube-apiserver anonymous authentication (--anonymous-auth or --authentication-config) is as the baseline requires",
        cis: &["1.2.1"],
    },
    CheckInfo {
        id: check_ids::AUTHORIZATION_MODE,
        description: "kube-apiserver authorization does not include AlwaysAllow and includes every required mode (e.g. Node, RBAC)",
        cis: &["1.2.6", "1.2.7", "1.2.8"],
    },
    CheckInfo {
        id: check_ids::ADMISSION_PLUGINS,
        description: "Every required admission plugin (e.g. NodeRestriction) is enabled and AlwaysAdmit is not",
        cis: &["1.2.9", "1.2.10", "1.2.11", "1.2.12", "1.2.13", "1.2.14"],
    },
    CheckInfo {
        id: check_ids::ENCRYPTION_AT_REST,
        description: "An --encryption-provider-config encrypts secrets with a real provider (aescbc, aesgcm, secretbox, kms) first",
        cis: &["1.2.27", "1.2.28"],
    },
    CheckInfo {
        id: check_ids::ETCD_CLIENT_TLS,
        description: "The kube-apiserver reaches etcd over https with a client certificate, key and CA (--etcd-certfile, --etcd-keyfile, --etcd-cafile)",
        cis: &["1.2.23", "1.2.26"],
    },
];

/// Kind of drift entries about the control plane as a whole (no node runs a visible
/// kube-apiserver, e.g. a managed control plane).
pub const CONTROL_PLANE_KIND: &str = "ControlPlane";
/// Name of those entries.
pub const CONTROL_PLANE_NAME: &str = "kube-apiserver";

/// The kube-apiserver flags the checks read: the agent reports these and no others, so no
/// unrelated (possibly sensitive) arguments end up in a NodeReport.
pub const API_SERVER_FLAGS: &[&str] = &[
    "anonymous-auth",
    "audit-log-maxage",
    "audit-log-maxbackup",
    "audit-log-maxsize",
    "audit-log-path",
    "audit-policy-file",
    "authentication-config",
    "authorization-config",
    "authorization-mode",
    "disable-admission-plugins",
    "enable-admission-plugins",
    "encryption-provider-config",
    "etcd-cafile",
    "etcd-certfile",
    "etcd-keyfile",
    "etcd-servers",
];

/// Flags that pflag parses as string slices: every occurrence appends, so repeated flags
/// are joined rather than the last one winning.
const LIST_FLAGS: &[&str] = &[
    "authorization-mode",
    "disable-admission-plugins",
    "enable-admission-plugins",
    "etcd-servers",
];

/// Boolean flags of the kubelet and kube-apiserver. pflag never takes a boolean's value
/// from the next argument (`--anonymous-auth false` is not `--anonymous-auth=false`), so
/// the parser must not either.
const BOOL_FLAGS: &[&str] = &[
    "allow-privileged",
    "alsologtostderr",
    "anonymous-auth",
    "authentication-token-webhook",
    "cgroups-per-qos",
    "enable-aggregator-routing",
    "enable-bootstrap-token-auth",
    "enable-controller-attach-detach",
    "enable-debugging-handlers",
    "enable-garbage-collector",
    "enable-priority-and-fairness",
    "enable-server",
    "fail-swap-on",
    "logtostderr",
    "make-iptables-util-chains",
    "profiling",
    "protect-kernel-defaults",
    "register-node",
    "register-schedulable",
    "rotate-certificates",
    "rotate-server-certificates",
    "seccomp-default",
    "service-account-lookup",
    "serialize-image-pulls",
];

/// Admission plugins the kube-apiserver enables when --enable-admission-plugins does not
/// name them (kubernetes pkg/kubeapiserver/options/plugins.go, DefaultOffAdmissionPlugins:
/// the "defaultOnPlugins" set, stable members as of 1.33). NodeRestriction is not among
/// them, which is why CIS 1.2.14 exists.
pub const DEFAULT_ON_ADMISSION_PLUGINS: &[&str] = &[
    "CertificateApproval",
    "CertificateSigning",
    "CertificateSubjectRestriction",
    "ClusterTrustBundleAttest",
    "DefaultIngressClass",
    "DefaultStorageClass",
    "DefaultTolerationSeconds",
    "LimitRanger",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "NamespaceLifecycle",
    "PersistentVolumeClaimResize",
    "PodSecurity",
    "Priority",
    "ResourceQuota",
    "RuntimeClass",
    "ServiceAccount",
    "StorageObjectInUseProtection",
    "TaintNodesByCondition",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
];

/// Encryption providers that really encrypt (identity stores plaintext).
pub const REAL_ENCRYPTION_PROVIDERS: &[&str] = &["aescbc", "aesgcm", "kms", "secretbox"];

/// An error parsing a control-plane config file.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The file is not YAML of the expected shape.
    #[error("{what} is not valid YAML: {source}")]
    Yaml {
        /// Which file ("EncryptionConfiguration", ...).
        what: &'static str,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// The file parses but is not what the flag expects.
    #[error("{what}: {message}")]
    Invalid {
        /// Which file.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A flag's value cannot be parsed.
    #[error("flag --{flag}={value:?} is not a valid {expected}")]
    FlagValue {
        /// The flag name.
        flag: String,
        /// Its value.
        value: String,
        /// What the flag takes.
        expected: &'static str,
    },
}

// ---------------------------------------------------------------------------------------------
// Command-line flags
// ---------------------------------------------------------------------------------------------

/// A process's command-line flags, parsed the way pflag (used by the kubelet and the
/// kube-apiserver) parses them: `--name=value`, `--name value`, and boolean `--name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessFlags {
    /// (name, value) in command-line order; a boolean given without a value has "true".
    entries: Vec<(String, String)>,
}

impl ProcessFlags {
    /// Parses arguments (without the program name). Names are normalized as pflag's
    /// WordSepNormalizeFunc does (`_` becomes `-`); arguments that are not flags are
    /// ignored; `--` ends the flags.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Self {
        let mut entries = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let arg = args[i].as_ref();
            i += 1;
            if arg == "--" {
                break;
            }
            let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                continue;
            };
            if stripped.is_empty() {
                continue;
            }
            let (name, value) = match stripped.split_once('=') {
                Some((name, value)) => (normalize_flag_name(name), value.to_owned()),
                None => {
                    let name = normalize_flag_name(stripped);
                    let next = args.get(i).map(AsRef::as_ref);
                    match next {
                        Some(next)
                            if !BOOL_FLAGS.contains(&name.as_str())
                                && (!next.starts_with('-') || is_number(next)) =>
                        {
                            i += 1;
                            (name, next.to_owned())
                        }
                        _ => (name, "true".to_owned()),
                    }
                }
            };
            entries.push((name, value));
        }
        Self { entries }
    }

    /// The value of the last occurrence of a flag (later flags override earlier ones).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the flag was given at all.
    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// A string-slice flag: every occurrence, split on commas, trimmed, empty items dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// A boolean flag, parsed as Go's strconv.ParseBool does.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ControlPlaneError> {
        self.get(name)
            .map(|value| {
                parse_go_bool(value).ok_or_else(|| ControlPlaneError::FlagValue {
                    flag: name.to_owned(),
                    value: value.to_owned(),
                    expected: "boolean",
                })
            })
            .transpose()
    }

    /// An integer flag.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ControlPlaneError> {
        self.get(name)
            .map(|value| {
                value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| ControlPlaneError::FlagValue {
                        flag: name.to_owned(),
                        value: value.to_owned(),
                        expected: "integer",
                    })
            })
            .transpose()
    }

    /// Every (name, value) in command-line order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The flags in `names`, one entry per flag: the last value, or for string-slice flags
    /// every value joined with commas. Sorted by name.
    pub fn select(&self, names: &[&str]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = names
            .iter()
            .filter(|name| self.has(name))
            .map(|name| {
                let value = if LIST_FLAGS.contains(name) {
                    self.list(name).join(",")
                } else {
                    self.get(name).unwrap_or_default().to_owned()
                };
                ((*name).to_owned(), value)
            })
            .collect();
        out.sort();
        out
    }
}

fn normalize_flag_name(name: &str) -> String {
    name.replace('_', "-")
}

fn is_number(s: &str) -> bool {
    s.strip_prefix('-')
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
}

/// Go's strconv.ParseBool, which pflag uses for boolean flags.
pub fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Config files the kube-apiserver flags point at
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptionConfiguration {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resources: Vec<EncryptionResources>,
}

#[derive(Deserialize)]
struct EncryptionResources {
    #[serde(default)]
    resources: Vec<String>,
    /// Each provider is a one-key map (`aescbc: {keys: ...}`); the keys are never kept.
    #[serde(default)]
    providers: Vec<BTreeMap<String, IgnoredAny>>,
}

/// The providers an EncryptionConfiguration uses for secrets, in order (the first encrypts
/// new writes, the others only decrypt). The first entry whose resources cover secrets
/// (`secrets`, `secrets.`, `*.` or `*.*`) wins, as in the kube-apiserver. Empty when no entry
/// covers secrets (they are stored as plaintext). Key material is never returned.
pub fn secrets_providers(text: &str) -> Result<Vec<String>, ControlPlaneError> {
    const WHAT: &str = "EncryptionConfiguration";
    let config: EncryptionConfiguration =
        serde_saphyr::from_str(text).map_err(|source| ControlPlaneError::Yaml {
            what: WHAT,
            source: Box::new(source),
        })?;
    if config.kind != WHAT {
        return Err(ControlPlaneError::Invalid {
            what: WHAT,
            message: format!("kind is {:?}, want {WHAT}", config.kind),
        });
    }
    let covers_secrets = |r: &String| matches!(r.as_str(), "secrets" | "secrets." | "*." | "*.*");
    Ok(config
        .resources
        .iter()
        .find(|entry| entry.resources.iter().any(covers_secrets))
        .map(|entry| {
            entry
                .providers
                .iter()
                .flat_map(|p| p.keys().cloned())
                .collect()
        })
        .unwrap_or_default())
}

#[derive(Deserialize)]
struct AuthorizationConfiguration {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    authorizers: Vec<Authorizer>,
}

#[derive(Deserialize)]
struct Authorizer {
    #[serde(rename = "type")]
    kind: String,
}

/// The authorizer types of an AuthorizationConfiguration (--authorization-config), in order.
pub fn authorization_config_authorizers(text: &str) -> Result<Vec<String>, ControlPlaneError> {
    const WHAT: &str = "AuthorizationConfiguration";
    let config: AuthorizationConfiguration =
        serde_saphyr::from_str(text).map_err(|source| ControlPlaneError::Yaml {
            what: WHAT,
            source: Box::new(source),
        })?;
    if config.kind != WHAT {
        return Err(ControlPlaneError::Invalid {
            what: WHAT,
            message: format!("kind is {:?}, want {WHAT}", config.kind),
        });
    }
    Ok(config.authorizers.into_iter().map(|a| a.kind).collect())
}

#[derive(Deserialize)]
struct AuthenticationConfiguration {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    anonymous: Option<AnonymousConfig>,
}

#[derive(Deserialize)]
struct AnonymousConfig {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    conditions: Vec<IgnoredAny>,
}

/// anonymous.enabled and the number of anonymous.conditions of an AuthenticationConfiguration
/// (--authentication-config); None when it has no anonymous section.
pub fn authentication_config_anonymous(
    text: &str,
) -> Result<Option<(bool, usize)>, ControlPlaneError> {
    const WHAT: &str = "AuthenticationConfiguration";
    let config: AuthenticationConfiguration =
        serde_saphyr::from_str(text).map_err(|source| ControlPlaneError::Yaml {
            what: WHAT,
            source: Box::new(source),
        })?;
    if config.kind != WHAT {
        return Err(ControlPlaneError::Invalid {
            what: WHAT,
            message: format!("kind is {:?}, want {WHAT}", config.kind),
        });
    }
    Ok(config.anonymous.map(|a| (a.enabled, a.conditions.len())))
}

// ---------------------------------------------------------------------------------------------
// Drift helpers shared by the node checks
// ---------------------------------------------------------------------------------------------

/// Longest message a DriftEntry may carry (its schema's maxLength).
const MESSAGE_MAX: usize = 1024;

/// A drift entry about a node.
pub(crate) fn node_drift(
    node: &str,
    check: &str,
    reason: DriftReason,
    message: impl Into<String>,
) -> DriftEntry {
    DriftEntry {
        namespace: String::new(),
        kind: "Node".to_owned(),
        name: node.to_owned(),
        check: check.to_owned(),
        reason,
        message: truncate(message.into(), MESSAGE_MAX),
    }
}

/// Cuts a string to at most `max` characters, marking the cut.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.chars().count() > max {
        let keep: String = s.chars().take(max.saturating_sub(1)).collect();
        s = keep;
        s.push('…');
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// Every node check of `baseline` against one node's observations.
///
/// Kubelet checks run when the baseline's `kubelet.nodeSelector` selects `node_labels`;
/// control-plane and audit checks run when this node runs a kube-apiserver (on worker nodes
/// they produce nothing: [`unobserved_control_plane`] reports a control plane no agent sees).
/// A check whose input could not be observed is `Unknown`, never passing.
pub fn evaluate_node(
    report: &NodeObservations,
    baseline: &SecurityBaselineSpec,
    node_labels: &BTreeMap<String, String>,
) -> Vec<DriftEntry> {
    let node = report.node_name.as_str();
    let mut drift = Vec::new();
    if let Some(kubelet_baseline) = &baseline.kubelet
        && kubelet::kubelet_selects(kubelet_baseline, node_labels)
    {
        drift.extend(kubelet::evaluate_kubelet(
            node,
            &report.kubelet,
            &kubelet_baseline.settings,
        ));
    }
    drift.extend(evaluate_control_plane(node, &report.api_server, baseline));
    drift.sort();
    drift
}

/// The control-plane and audit checks of `baseline` against one node's kube-apiserver.
/// Nothing when the node runs none.
pub fn evaluate_control_plane(
    node: &str,
    api: &ApiServerObservation,
    baseline: &SecurityBaselineSpec,
) -> Vec<DriftEntry> {
    let mut drift = Vec::new();
    match api.state {
        ObservationState::NotFound => {}
        ObservationState::Error => {
            let why = format!("kube-apiserver could not be observed: {}", api.message);
            for check in control_plane_checks(baseline) {
                drift.push(node_drift(node, check, DriftReason::Unknown, why.clone()));
            }
        }
        ObservationState::Observed => {
            if let Some(audit) = &baseline.audit_policy {
                drift.extend(audit_policy::evaluate_audit(node, api, audit));
            }
            if let Some(control_plane) = &baseline.control_plane {
                drift.extend(evaluate_api_server(node, api, control_plane));
            }
        }
    }
    drift
}

/// The kube-apiserver and etcd checks (audit checks are in [`audit_policy`]).
pub fn evaluate_api_server(
    node: &str,
    api: &ApiServerObservation,
    settings: &ControlPlaneSettings,
) -> Vec<DriftEntry> {
    let mut drift = Vec::new();
    if let Some(api_settings) = &settings.api_server {
        drift.extend(check_anonymous_auth(node, api, api_settings));
        drift.extend(check_authorization(node, api, api_settings));
        drift.extend(check_admission(node, api, api_settings));
        drift.extend(check_encryption(node, api, api_settings));
    }
    if let Some(etcd) = &settings.etcd {
        drift.extend(check_etcd_tls(node, api, etcd));
    }
    drift
}

fn check_anonymous_auth(
    node: &str,
    api: &ApiServerObservation,
    settings: &ApiServerSettings,
) -> Option<DriftEntry> {
    let want = settings.anonymous_auth?;
    let id = check_ids::ANONYMOUS_AUTH;
    let authn = &api.authentication_config;
    let (observed, source) = match (authn.state, authn.anonymous_enabled) {
        (ObservationState::Error, _) => {
            return Some(node_drift(
                node,
                id,
                DriftReason::Unknown,
                format!(
                    "--authentication-config {} could not be read: {}",
                    authn.path, authn.message
                ),
            ));
        }
        (ObservationState::Observed, Some(enabled)) => {
            // Anonymous access restricted to listed paths (health endpoints) is how
            // Kubernetes 1.32+ recommends keeping probes working with anonymous auth off.
            let open = enabled && authn.anonymous_conditions == 0;
            let source = if enabled && !open {
                format!(
                    "anonymous.enabled in --authentication-config {} (limited to {} path condition(s))",
                    authn.path, authn.anonymous_conditions
                )
            } else {
                format!(
                    "anonymous.enabled in --authentication-config {}",
                    authn.path
                )
            };
            (open, source)
        }
        _ => match parse_flag_bool(api, "anonymous-auth") {
            Ok(Some(value)) => (value, "--anonymous-auth".to_owned()),
            // kube-apiserver default: anonymous requests are allowed.
            Ok(None) => (true, "the default (--anonymous-auth not set)".to_owned()),
            Err(err) => {
                return Some(node_drift(
                    node,
                    id,
                    DriftReason::Violation,
                    err.to_string(),
                ));
            }
        },
    };
    (observed != want).then(|| {
        node_drift(
            node,
            id,
            DriftReason::Violation,
            format!(
                "kube-apiserver anonymous authentication is {} by {source}; the baseline wants {}",
                enabled_word(observed),
                enabled_word(want)
            ),
        )
    })
}

fn check_authorization(
    node: &str,
    api: &ApiServerObservation,
    settings: &ApiServerSettings,
) -> Option<DriftEntry> {
    let id = check_ids::AUTHORIZATION_MODE;
    let authz = &api.authorization_config;
    let (modes, source): (Vec<String>, String) = if api.flag("authorization-config").is_some() {
        match authz.state {
            ObservationState::Observed => (
                authz.authorizers.clone(),
                format!("--authorization-config {}", authz.path),
            ),
            _ => {
                return Some(node_drift(
                    node,
                    id,
                    DriftReason::Unknown,
                    format!(
                        "--authorization-config {} could not be read: {}",
                        authz.path, authz.message
                    ),
                ));
            }
        }
    } else {
        let modes = flag_list(api, "authorization-mode");
        if modes.is_empty() {
            // kube-apiserver default without --authorization-mode or --authorization-config.
            (
                vec!["AlwaysAllow".to_owned()],
                "the default (--authorization-mode not set)".to_owned(),
            )
        } else {
            (modes, "--authorization-mode".to_owned())
        }
    };
    let mut problems = Vec::new();
    if modes.iter().any(|m| m == "AlwaysAllow") {
        problems.push("AlwaysAllow authorizes every request".to_owned());
    }
    let missing: Vec<&str> = settings
        .require_authorization_modes
        .iter()
        .filter(|want| !modes.contains(want))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        problems.push(format!("missing required mode(s) {}", missing.join(", ")));
    }
    (!problems.is_empty()).then(|| {
        node_drift(
            node,
            id,
            DriftReason::Violation,
            format!(
                "kube-apiserver authorization is [{}] ({source}): {}",
                modes.join(","),
                problems.join("; ")
            ),
        )
    })
}

fn check_admission(
    node: &str,
    api: &ApiServerObservation,
    settings: &ApiServerSettings,
) -> Option<DriftEntry> {
    let enabled_flag = flag_list(api, "enable-admission-plugins");
    let disabled: BTreeSet<String> = flag_list(api, "disable-admission-plugins")
        .into_iter()
        .collect();
    let mut enabled: BTreeSet<String> = DEFAULT_ON_ADMISSION_PLUGINS
        .iter()
        .map(|p| (*p).to_owned())
        .filter(|p| !disabled.contains(p))
        .collect();
    enabled.extend(enabled_flag);
    let mut problems = Vec::new();
    if enabled.contains("AlwaysAdmit") {
        problems.push("AlwaysAdmit is enabled (it admits every request)".to_owned());
    }
    let missing: Vec<&str> = settings
        .require_admission_plugins
        .iter()
        .filter(|p| !enabled.contains(*p))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "required admission plugin(s) {} not enabled (add them to --enable-admission-plugins)",
            missing.join(", ")
        ));
    }
    (!problems.is_empty()).then(|| {
        node_drift(
            node,
            check_ids::ADMISSION_PLUGINS,
            DriftReason::Violation,
            problems.join("; "),
        )
    })
}

fn check_encryption(
    node: &str,
    api: &ApiServerObservation,
    settings: &ApiServerSettings,
) -> Option<DriftEntry> {
    if settings.encryption_at_rest != Some(true) {
        return None;
    }
    let id = check_ids::ENCRYPTION_AT_REST;
    if api
        .flag("encryption-provider-config")
        .is_none_or(str::is_empty)
    {
        return Some(node_drift(
            node,
            id,
            DriftReason::Violation,
            "kube-apiserver runs without --encryption-provider-config: secrets are stored unencrypted in etcd",
        ));
    }
    let enc = &api.encryption;
    if enc.state != ObservationState::Observed {
        return Some(node_drift(
            node,
            id,
            DriftReason::Unknown,
            format!(
                "encryption provider config {} could not be read: {}",
                enc.path, enc.message
            ),
        ));
    }
    let problem = match enc.secrets_providers.first().map(String::as_str) {
        None => {
            Some("no resources entry covers secrets, so they are stored unencrypted".to_owned())
        }
        Some("identity") if enc.secrets_providers.len() == 1 => {
            Some("secrets use only the identity provider (no encryption)".to_owned())
        }
        Some("identity") => Some(format!(
            "identity is the first provider for secrets, so new secrets are written unencrypted (providers: {})",
            enc.secrets_providers.join(", ")
        )),
        Some(first) if !REAL_ENCRYPTION_PROVIDERS.contains(&first) => Some(format!(
            "the first provider for secrets is {first:?}, not one of {}",
            REAL_ENCRYPTION_PROVIDERS.join(", ")
        )),
        Some(_) => None,
    };
    match problem {
        Some(problem) => Some(node_drift(
            node,
            id,
            DriftReason::Violation,
            format!("{}: {problem}", enc.path),
        )),
        None if enc.pending_restart => Some(node_drift(
            node,
            id,
            DriftReason::Unknown,
            format!(
                "{} encrypts secrets with {}, but it changed after the kube-apiserver started; it is used after a restart",
                enc.path,
                enc.secrets_providers
                    .first()
                    .map(String::as_str)
                    .unwrap_or_default()
            ),
        )),
        None => None,
    }
}

fn check_etcd_tls(
    node: &str,
    api: &ApiServerObservation,
    settings: &EtcdSettings,
) -> Option<DriftEntry> {
    if settings.client_tls != Some(true) {
        return None;
    }
    let mut problems = Vec::new();
    for flag in ["etcd-certfile", "etcd-keyfile", "etcd-cafile"] {
        if api.flag(flag).is_none_or(str::is_empty) {
            problems.push(format!("--{flag} is not set"));
        }
    }
    let servers = flag_list(api, "etcd-servers");
    if servers.is_empty() {
        problems.push("--etcd-servers is not set".to_owned());
    }
    let plain: Vec<&str> = servers
        .iter()
        .filter(|s| !s.starts_with("https://"))
        .map(String::as_str)
        .collect();
    if !plain.is_empty() {
        problems.push(format!("etcd servers without https: {}", plain.join(", ")));
    }
    (!problems.is_empty()).then(|| {
        node_drift(
            node,
            check_ids::ETCD_CLIENT_TLS,
            DriftReason::Violation,
            format!("kube-apiserver to etcd: {}", problems.join("; ")),
        )
    })
}

fn flag_list(api: &ApiServerObservation, name: &str) -> Vec<String> {
    api.flag(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn parse_flag_bool(
    api: &ApiServerObservation,
    name: &str,
) -> Result<Option<bool>, ControlPlaneError> {
    api.flag(name)
        .map(|value| {
            parse_go_bool(value).ok_or_else(|| ControlPlaneError::FlagValue {
                flag: name.to_owned(),
                value: value.to_owned(),
                expected: "boolean",
            })
        })
        .transpose()
}

fn enabled_word(enabled: bool) -> &'static str {
    if enabled { "enabled" } else { "disabled" }
}

/// IDs of the control-plane and audit checks `baseline` asks for.
pub fn control_plane_checks(baseline: &SecurityBaselineSpec) -> Vec<&'static str> {
    let mut checks = Vec::new();
    if baseline.audit_policy.is_some() {
        checks.extend(audit_policy::CHECKS.iter().map(|c| c.id));
    }
    if let Some(control_plane) = &baseline.control_plane {
        if let Some(api) = &control_plane.api_server {
            if api.anonymous_auth.is_some() {
                checks.push(check_ids::ANONYMOUS_AUTH);
            }
            // AlwaysAllow and AlwaysAdmit are reported whenever apiServer checks are on.
            checks.push(check_ids::AUTHORIZATION_MODE);
            checks.push(check_ids::ADMISSION_PLUGINS);
            if api.encryption_at_rest == Some(true) {
                checks.push(check_ids::ENCRYPTION_AT_REST);
            }
        }
        if control_plane
            .etcd
            .as_ref()
            .is_some_and(|e| e.client_tls == Some(true))
        {
            checks.push(check_ids::ETCD_CLIENT_TLS);
        }
    }
    checks
}

/// Drift for a selected node that has no NodeReport at all (no agent runs there): every
/// kubelet check the baseline asks for is Unknown, never silently passing. (Control-plane
/// checks are not node-specific: see [`unobserved_control_plane`].)
pub fn unknown_node(node_name: &str, baseline: &SecurityBaselineSpec) -> Vec<DriftEntry> {
    let Some(kubelet_baseline) = &baseline.kubelet else {
        return Vec::new();
    };
    let mut drift: Vec<DriftEntry> = kubelet::requested_checks(&kubelet_baseline.settings)
        .into_iter()
        .map(|check| {
            node_drift(
                node_name,
                check,
                DriftReason::Unknown,
                "no NodeReport for this node: the kube-baseline agent does not run there (managed node, or the DaemonSet does not tolerate its taints), so its kubelet cannot be checked",
            )
        })
        .collect();
    drift.sort();
    drift
}

/// Drift when no NodeReport shows a kube-apiserver (a managed control plane, or the agent
/// does not run on control-plane nodes): every control-plane and audit check the baseline
/// asks for is Unknown, once for the cluster (kind ControlPlane, name kube-apiserver).
/// Empty when any report observed (or failed to observe) a kube-apiserver.
pub fn unobserved_control_plane<'a>(
    baseline: &SecurityBaselineSpec,
    reports: impl IntoIterator<Item = &'a NodeObservations>,
) -> Vec<DriftEntry> {
    if reports
        .into_iter()
        .any(|r| r.api_server.state != ObservationState::NotFound)
    {
        return Vec::new();
    }
    let mut drift: Vec<DriftEntry> = control_plane_checks(baseline)
        .into_iter()
        .map(|check| DriftEntry {
            namespace: String::new(),
            kind: CONTROL_PLANE_KIND.to_owned(),
            name: CONTROL_PLANE_NAME.to_owned(),
            check: check.to_owned(),
            reason: DriftReason::Unknown,
            message: "no kube-baseline agent observed a kube-apiserver process (managed control plane, or the agent does not run on control-plane nodes), so this check cannot be evaluated".to_owned(),
        })
        .collect();
    drift.sort();
    drift
}

#[cfg(test)]
mod tests;

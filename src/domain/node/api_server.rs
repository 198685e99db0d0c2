//! The kube-apiserver and etcd checks: their IDs, the flags they read (with the
//! kube-apiserver's defaults applied where a flag was not given, so a missing flag is judged
//! by what the process really does), and the control-plane evaluation of one node.

use std::collections::BTreeSet;

use crate::api::{
    ApiServerObservation, ApiServerSettings, ControlPlaneSettings, DriftEntry, DriftReason,
    EtcdSettings, NodeObservations, ObservationState, SecurityBaselineSpec,
};
use crate::domain::checks::CheckInfo;
use crate::domain::node::audit_policy;
use crate::domain::node::config_files::*;
use crate::domain::node::control_plane;
use crate::domain::node::files;
use crate::domain::node::findings::node_drift;
use crate::domain::node::flags::*;
use crate::domain::node::live;

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

/// The kube-apiserver flags the checks read, and where the agent asks it for its version:
/// the agent reports these and no others, so no unrelated (possibly sensitive) arguments
/// end up in a NodeReport.
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
    // Where the agent asks its node's kube-apiserver for its version (`agent::version`).
    "bind-address",
    "disable-admission-plugins",
    "enable-admission-plugins",
    "encryption-provider-config",
    "etcd-cafile",
    "etcd-certfile",
    "etcd-keyfile",
    "etcd-servers",
    "secure-port",
    // The flag-only CIS 1.2 checks (`control_plane::evaluate_api_server_flags`).
    "client-ca-file",
    "kubelet-certificate-authority",
    "kubelet-client-certificate",
    "kubelet-client-key",
    "profiling",
    "service-account-extend-token-expiration",
    "service-account-key-file",
    "service-account-lookup",
    "tls-cert-file",
    "tls-cipher-suites",
    "tls-private-key-file",
    "token-auth-file",
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

/// The control-plane and audit checks of `baseline` against one node's kube-apiserver, and
/// the kube-controller-manager, kube-scheduler and etcd beside it. Nothing when the node
/// runs no kube-apiserver.
pub fn evaluate_control_plane(
    node: &str,
    report: &NodeObservations,
    baseline: &SecurityBaselineSpec,
) -> Vec<DriftEntry> {
    let api = &report.api_server;
    let mut drift = Vec::new();
    match api.header.state {
        ObservationState::NotFound => {}
        ObservationState::Error => {
            let why = format!(
                "kube-apiserver could not be observed: {}",
                api.header.message
            );
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
                drift.extend(evaluate_components(node, report, control_plane));
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
        if let Some(flags) = &api_settings.flags {
            drift.extend(control_plane::evaluate_api_server_flags(node, api, flags));
        }
    }
    if let Some(etcd) = &settings.etcd {
        drift.extend(check_etcd_tls(node, api, etcd));
    }
    if let Some(live_probes) = &settings.live_probes {
        drift.extend(live::evaluate_live(node, api, live_probes));
    }
    drift
}

/// The kube-controller-manager, kube-scheduler and etcd checks of one control-plane node.
pub fn evaluate_components(
    node: &str,
    report: &NodeObservations,
    settings: &ControlPlaneSettings,
) -> Vec<DriftEntry> {
    let mut drift = Vec::new();
    if let Some(cm) = &settings.controller_manager {
        drift.extend(control_plane::evaluate_controller_manager(
            node,
            &report.controller_manager,
            cm,
        ));
    }
    if let Some(scheduler) = &settings.scheduler {
        drift.extend(control_plane::evaluate_scheduler(
            node,
            &report.scheduler,
            scheduler,
        ));
    }
    if let Some(server) = settings.etcd.as_ref().and_then(|e| e.server.as_ref()) {
        drift.extend(control_plane::evaluate_etcd(node, &report.etcd, server));
    }
    if let Some(files) = &settings.files {
        drift.extend(files::evaluate_files(node, report, files));
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
    let (observed, source) = match (authn.header.state, authn.anonymous_enabled) {
        (ObservationState::Error, _) => {
            return Some(node_drift(
                node,
                id,
                DriftReason::Unknown,
                format!(
                    "--authentication-config {} could not be read: {}",
                    authn.path, authn.header.message
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
        match authz.header.state {
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
                        authz.path, authz.header.message
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
    if enc.header.state != ObservationState::Observed {
        return Some(node_drift(
            node,
            id,
            DriftReason::Unknown,
            format!(
                "encryption provider config {} could not be read: {}",
                enc.path, enc.header.message
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
            if let Some(flags) = &api.flags {
                checks.extend(control_plane::requested_api_server_flag_checks(flags));
            }
        }
        if control_plane
            .etcd
            .as_ref()
            .is_some_and(|e| e.client_tls == Some(true))
        {
            checks.push(check_ids::ETCD_CLIENT_TLS);
        }
        checks.extend(control_plane::requested_checks(
            control_plane.controller_manager.as_ref(),
            control_plane.scheduler.as_ref(),
            control_plane.etcd.as_ref().and_then(|e| e.server.as_ref()),
        ));
        if let Some(settings) = &control_plane.files {
            checks.extend(files::requested_checks(settings));
        }
        if let Some(settings) = &control_plane.live_probes {
            checks.extend(live::requested_checks(settings));
        }
    }
    checks
}

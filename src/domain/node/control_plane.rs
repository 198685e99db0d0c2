//! The kube-controller-manager (CIS 1.3), kube-scheduler (CIS 1.4) and etcd (CIS 2) checks:
//! their IDs, the settings they read (from flags, parsed like the component parses them, or
//! from the config file the component reads instead), the components' defaults for a setting
//! not given, and the evaluation on one node.
//!
//! These components are checked on nodes that run a kube-apiserver (a stacked control plane,
//! as kubeadm lays it out); one not found there is `Unknown`, never passing. The
//! kube-apiserver's flag-only CIS 1.2 checks share the same helpers
//! ([`evaluate_api_server_flags`]).

use std::net::IpAddr;

use serde_json::Value;

use crate::api::{
    ApiServerFlagSettings, ApiServerObservation, ComponentObservation, ComponentSetting,
    ControllerManagerSettings, DriftEntry, DriftReason, EtcdObservation, EtcdServerSettings,
    Observation, ObservationState, SchedulerSettings,
};
use crate::domain::checks::CheckInfo;
use crate::domain::node::config_files::ControlPlaneError;
use crate::domain::node::findings::node_drift;
use crate::domain::node::flags::{ProcessFlags, parse_go_bool};

/// Check IDs of the kube-controller-manager, kube-scheduler and etcd checks.
pub mod check_ids {
    pub const CM_TERMINATED_POD_GC: &str = "controller-manager.terminated-pod-gc-threshold";
    pub const CM_PROFILING: &str = "controller-manager.profiling";
    pub const CM_SERVICE_ACCOUNT_CREDENTIALS: &str =
        "controller-manager.use-service-account-credentials";
    pub const CM_SERVICE_ACCOUNT_KEY: &str = "controller-manager.service-account-private-key";
    pub const CM_ROOT_CA: &str = "controller-manager.root-ca-file";
    pub const CM_ROTATE_KUBELET_SERVER_CERT: &str =
        "controller-manager.rotate-kubelet-server-certificate";
    pub const CM_BIND_ADDRESS: &str = "controller-manager.bind-address";
    pub const SCHEDULER_PROFILING: &str = "scheduler.profiling";
    pub const SCHEDULER_BIND_ADDRESS: &str = "scheduler.bind-address";
    pub const ETCD_CLIENT_CERT: &str = "etcd.cert-file";
    pub const ETCD_CLIENT_CERT_AUTH: &str = "etcd.client-cert-auth";
    pub const ETCD_AUTO_TLS: &str = "etcd.auto-tls";
    pub const ETCD_PEER_CERT: &str = "etcd.peer-cert-file";
    pub const ETCD_PEER_CLIENT_CERT_AUTH: &str = "etcd.peer-client-cert-auth";
    pub const ETCD_PEER_AUTO_TLS: &str = "etcd.peer-auto-tls";
    pub const ETCD_DISTINCT_CA: &str = "etcd.distinct-ca";
    pub const API_TOKEN_AUTH_FILE: &str = "apiserver.token-auth-file";
    pub const API_KUBELET_CLIENT_CERT: &str = "apiserver.kubelet-client-certificate";
    pub const API_KUBELET_CA: &str = "apiserver.kubelet-certificate-authority";
    pub const API_PROFILING: &str = "apiserver.profiling";
    pub const API_SERVICE_ACCOUNT_LOOKUP: &str = "apiserver.service-account-lookup";
    pub const API_SERVICE_ACCOUNT_KEY: &str = "apiserver.service-account-key-file";
    pub const API_TLS_CERT: &str = "apiserver.tls-cert-file";
    pub const API_CLIENT_CA: &str = "apiserver.client-ca-file";
    pub const API_CIPHER_SUITES: &str = "apiserver.tls-cipher-suites";
    pub const API_EXTEND_TOKEN_EXPIRATION: &str =
        "apiserver.service-account-extend-token-expiration";
}

/// The kube-controller-manager, kube-scheduler and etcd checks, for the registry.
pub const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        id: check_ids::CM_TERMINATED_POD_GC,
        description: "kube-controller-manager --terminated-pod-gc-threshold is set, positive and at most maxTerminatedPodGCThreshold",
        cis: &["1.3.1"],
    },
    CheckInfo {
        id: check_ids::CM_PROFILING,
        description: "kube-controller-manager runs with --profiling=false",
        cis: &["1.3.2"],
    },
    CheckInfo {
        id: check_ids::CM_SERVICE_ACCOUNT_CREDENTIALS,
        description: "kube-controller-manager runs each controller with its own service account (--use-service-account-credentials=true)",
        cis: &["1.3.3"],
    },
    CheckInfo {
        id: check_ids::CM_SERVICE_ACCOUNT_KEY,
        description: "kube-controller-manager signs service account tokens with --service-account-private-key-file",
        cis: &["1.3.4"],
    },
    CheckInfo {
        id: check_ids::CM_ROOT_CA,
        description: "kube-controller-manager puts --root-ca-file into service account token secrets",
        cis: &["1.3.5"],
    },
    CheckInfo {
        id: check_ids::CM_ROTATE_KUBELET_SERVER_CERT,
        description: "kube-controller-manager's RotateKubeletServerCertificate feature gate is not turned off",
        cis: &["1.3.6"],
    },
    CheckInfo {
        id: check_ids::CM_BIND_ADDRESS,
        description: "kube-controller-manager --bind-address is a loopback address",
        cis: &["1.3.7"],
    },
    CheckInfo {
        id: check_ids::SCHEDULER_PROFILING,
        description: "kube-scheduler profiling is off (enableProfiling: false in --config, else --profiling=false)",
        cis: &["1.4.1"],
    },
    CheckInfo {
        id: check_ids::SCHEDULER_BIND_ADDRESS,
        description: "kube-scheduler --bind-address is a loopback address",
        cis: &["1.4.2"],
    },
    CheckInfo {
        id: check_ids::ETCD_CLIENT_CERT,
        description: "etcd serves clients over TLS (--cert-file and --key-file)",
        cis: &["2.1"],
    },
    CheckInfo {
        id: check_ids::ETCD_CLIENT_CERT_AUTH,
        description: "etcd requires client certificates (--client-cert-auth=true)",
        cis: &["2.2"],
    },
    CheckInfo {
        id: check_ids::ETCD_AUTO_TLS,
        description: "etcd does not serve clients with a self-signed certificate (--auto-tls not true)",
        cis: &["2.3"],
    },
    CheckInfo {
        id: check_ids::ETCD_PEER_CERT,
        description: "etcd talks to its peers over TLS (--peer-cert-file and --peer-key-file)",
        cis: &["2.4"],
    },
    CheckInfo {
        id: check_ids::ETCD_PEER_CLIENT_CERT_AUTH,
        description: "etcd requires peer certificates (--peer-client-cert-auth=true)",
        cis: &["2.5"],
    },
    CheckInfo {
        id: check_ids::ETCD_PEER_AUTO_TLS,
        description: "etcd does not use self-signed peer certificates (--peer-auto-tls not true)",
        cis: &["2.6"],
    },
    CheckInfo {
        id: check_ids::ETCD_DISTINCT_CA,
        description: "etcd's --trusted-ca-file does not trust the Kubernetes CA (the kube-apiserver's --client-ca-file)",
        cis: &["2.7"],
    },
    CheckInfo {
        id: check_ids::API_TOKEN_AUTH_FILE,
        description: "kube-apiserver accepts no static tokens (--token-auth-file not set)",
        cis: &["1.2.2"],
    },
    CheckInfo {
        id: check_ids::API_KUBELET_CLIENT_CERT,
        description: "kube-apiserver authenticates to kubelets with --kubelet-client-certificate and --kubelet-client-key",
        cis: &["1.2.4"],
    },
    CheckInfo {
        id: check_ids::API_KUBELET_CA,
        description: "kube-apiserver verifies kubelets' serving certificates (--kubelet-certificate-authority)",
        cis: &["1.2.5"],
    },
    CheckInfo {
        id: check_ids::API_PROFILING,
        description: "kube-apiserver runs with --profiling=false",
        cis: &["1.2.15"],
    },
    CheckInfo {
        id: check_ids::API_SERVICE_ACCOUNT_LOOKUP,
        description: "kube-apiserver checks that service account tokens' accounts still exist (--service-account-lookup not false)",
        cis: &["1.2.21"],
    },
    CheckInfo {
        id: check_ids::API_SERVICE_ACCOUNT_KEY,
        description: "kube-apiserver verifies service account tokens with --service-account-key-file",
        cis: &["1.2.22"],
    },
    CheckInfo {
        id: check_ids::API_TLS_CERT,
        description: "kube-apiserver serves with --tls-cert-file and --tls-private-key-file (not a self-signed certificate of its own)",
        cis: &["1.2.24"],
    },
    CheckInfo {
        id: check_ids::API_CLIENT_CA,
        description: "kube-apiserver authenticates client certificates against --client-ca-file",
        cis: &["1.2.25"],
    },
    CheckInfo {
        id: check_ids::API_CIPHER_SUITES,
        description: "kube-apiserver --tls-cipher-suites is set and lists strong suites only",
        cis: &["1.2.29"],
    },
    CheckInfo {
        id: check_ids::API_EXTEND_TOKEN_EXPIRATION,
        description: "kube-apiserver does not extend projected service account tokens (--service-account-extend-token-expiration=false)",
        cis: &["1.2.30"],
    },
];

/// The TLS cipher suites CIS 1.2.29 counts as strong (the list of its remediation).
pub const STRONG_CIPHER_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// The kube-controller-manager flags the checks read (reported, and no others).
pub const CONTROLLER_MANAGER_FLAGS: &[&str] = &[
    "bind-address",
    "feature-gates",
    "profiling",
    "root-ca-file",
    "service-account-private-key-file",
    "terminated-pod-gc-threshold",
    "use-service-account-credentials",
];

/// The kube-scheduler flags the checks read.
pub const SCHEDULER_FLAGS: &[&str] = &["bind-address", "profiling"];

/// The etcd flags the checks read (the trusted CA for the CIS 2.7 comparison).
pub const ETCD_FLAGS: &[&str] = &[
    "auto-tls",
    "cert-file",
    "client-cert-auth",
    "key-file",
    "peer-auto-tls",
    "peer-cert-file",
    "peer-client-cert-auth",
    "peer-key-file",
    "peer-trusted-ca-file",
    "trusted-ca-file",
];

/// The kube-controller-manager's default --terminated-pod-gc-threshold.
pub const DEFAULT_TERMINATED_POD_GC_THRESHOLD: i64 = 12500;

const KUBE_SCHEDULER_CONFIG_API: &str = "kubescheduler.config.k8s.io/v1";
const KUBE_SCHEDULER_CONFIG_KIND: &str = "KubeSchedulerConfiguration";

fn from_flags(flags: &ProcessFlags, names: &[&str]) -> Vec<ComponentSetting> {
    flags
        .select(names)
        .into_iter()
        .map(|(name, value)| ComponentSetting {
            origin: format!("flag --{name}"),
            name,
            value,
        })
        .collect()
}

/// The kube-controller-manager's checked settings: its flags (it reads no config file).
pub fn controller_manager_settings(flags: &ProcessFlags) -> Vec<ComponentSetting> {
    from_flags(flags, CONTROLLER_MANAGER_FLAGS)
}

/// The kube-scheduler's checked settings. With `--config`, profiling comes from the
/// file's `enableProfiling` and the deprecated `--profiling` flag is ignored, as the
/// scheduler does; `--bind-address` stays a flag.
pub fn scheduler_settings(
    flags: &ProcessFlags,
    config: Option<(&str, &str)>,
) -> Result<Vec<ComponentSetting>, ControlPlaneError> {
    let Some((path, text)) = config else {
        return Ok(from_flags(flags, SCHEDULER_FLAGS));
    };
    let mut settings = from_flags(flags, &["bind-address"]);
    let doc = parse_yaml(text, path)?;
    let api_version = doc.get("apiVersion").and_then(Value::as_str);
    let kind = doc.get("kind").and_then(Value::as_str);
    if api_version != Some(KUBE_SCHEDULER_CONFIG_API) || kind != Some(KUBE_SCHEDULER_CONFIG_KIND) {
        return Err(ControlPlaneError::ConfigFile {
            path: path.to_owned(),
            message: format!(
                "not a {KUBE_SCHEDULER_CONFIG_API} {KUBE_SCHEDULER_CONFIG_KIND} (apiVersion {}, kind {}): the kube-scheduler does not start with it",
                api_version.unwrap_or("unset"),
                kind.unwrap_or("unset")
            ),
        });
    }
    if let Some(value) = doc.get("enableProfiling") {
        let enabled = value
            .as_bool()
            .ok_or_else(|| ControlPlaneError::ConfigFile {
                path: path.to_owned(),
                message: format!("enableProfiling is {value}, not a boolean"),
            })?;
        settings.push(ComponentSetting {
            name: "profiling".to_owned(),
            value: enabled.to_string(),
            origin: format!("enableProfiling in --config {path}"),
        });
    }
    settings.sort();
    Ok(settings)
}

/// etcd's checked settings. With `--config-file` etcd ignores its other flags and reads
/// the file: the TLS settings are under `client-transport-security` and
/// `peer-transport-security` (reported under their flag names, `peer-` for the latter).
pub fn etcd_settings(
    flags: &ProcessFlags,
    config: Option<(&str, &str)>,
) -> Result<Vec<ComponentSetting>, ControlPlaneError> {
    let Some((path, text)) = config else {
        return Ok(from_flags(flags, ETCD_FLAGS));
    };
    let doc = parse_yaml(text, path)?;
    let mut settings = Vec::new();
    for (section, prefix) in [
        ("client-transport-security", ""),
        ("peer-transport-security", "peer-"),
    ] {
        let Some(section_value) = doc.get(section) else {
            continue;
        };
        for key in [
            "cert-file",
            "key-file",
            "client-cert-auth",
            "trusted-ca-file",
            "auto-tls",
        ] {
            let Some(value) = section_value.get(key) else {
                continue;
            };
            let name = format!("{prefix}{key}");
            if !ETCD_FLAGS.contains(&name.as_str()) {
                continue;
            }
            let value = match value {
                Value::Bool(b) => b.to_string(),
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => {
                    return Err(ControlPlaneError::ConfigFile {
                        path: path.to_owned(),
                        message: format!("{section}.{key} is {other}, not a string or boolean"),
                    });
                }
            };
            settings.push(ComponentSetting {
                name,
                value,
                origin: format!("{section}.{key} in --config-file {path}"),
            });
        }
    }
    settings.sort();
    Ok(settings)
}

fn parse_yaml(text: &str, path: &str) -> Result<Value, ControlPlaneError> {
    let doc: Value = serde_saphyr::from_str(text).map_err(|err| ControlPlaneError::ConfigFile {
        path: path.to_owned(),
        message: err.to_string(),
    })?;
    if doc.is_object() {
        Ok(doc)
    } else {
        Err(ControlPlaneError::ConfigFile {
            path: path.to_owned(),
            message: "not a YAML mapping".to_owned(),
        })
    }
}

/// The settings of one observed component, as the checks read them.
struct Component<'a> {
    /// Its process name, for messages.
    name: &'static str,
    header: &'a Observation,
    settings: &'a [ComponentSetting],
    /// Its config file changed after it started: a passing value read from it is Unknown.
    pending_restart: bool,
}

/// What one check found.
enum Verdict {
    Pass,
    Violation(String),
    Unknown(String),
}

impl Component<'_> {
    fn setting(&self, name: &str) -> Option<&ComponentSetting> {
        self.settings.iter().find(|s| s.name == name)
    }

    /// A passing value read from a config file that changed after the start is Unknown.
    fn pass_unless_pending(&self, setting: Option<&ComponentSetting>) -> Verdict {
        match setting {
            Some(s) if self.pending_restart && !s.origin.starts_with("flag ") => {
                Verdict::Unknown(format!(
                    "{} passes with {} = {} ({}), but that file changed after the {} started; it is used after a restart",
                    self.name, s.name, s.value, s.origin, self.name
                ))
            }
            _ => Verdict::Pass,
        }
    }

    /// A boolean setting must be `want`; `default` applies when it was not given.
    fn boolean(&self, name: &str, default: bool, want: bool) -> Verdict {
        let setting = self.setting(name);
        let (value, source) = match setting {
            None => (default, "the default: not set".to_owned()),
            Some(s) => match parse_go_bool(&s.value) {
                Some(value) => (value, s.origin.clone()),
                None => {
                    return Verdict::Unknown(format!(
                        "{} {} is {:?} ({}), not a boolean",
                        self.name, name, s.value, s.origin
                    ));
                }
            },
        };
        if value == want {
            self.pass_unless_pending(setting)
        } else {
            Verdict::Violation(format!(
                "{} {name} is {value} ({source}); CIS wants {want}",
                self.name
            ))
        }
    }

    /// Every setting of `names` must be given and non-empty.
    fn required(&self, names: &[&str]) -> Verdict {
        let missing: Vec<String> = names
            .iter()
            .filter(|n| self.setting(n).is_none_or(|s| s.value.is_empty()))
            .map(|n| format!("--{n}"))
            .collect();
        if missing.is_empty() {
            let from_file = names
                .iter()
                .find_map(|n| self.setting(n).filter(|s| !s.origin.starts_with("flag ")));
            self.pass_unless_pending(from_file)
        } else {
            Verdict::Violation(format!(
                "{} runs without {}",
                self.name,
                missing.join(" and ")
            ))
        }
    }

    /// `--bind-address` must be a loopback address (both components default to 0.0.0.0).
    fn loopback_bind_address(&self) -> Verdict {
        match self.setting("bind-address") {
            None => Verdict::Violation(format!(
                "{} --bind-address is not set: it serves on every address (0.0.0.0); CIS wants 127.0.0.1",
                self.name
            )),
            Some(s) => match s.value.trim().parse::<IpAddr>() {
                Ok(ip) if ip.is_loopback() => Verdict::Pass,
                Ok(ip) => Verdict::Violation(format!(
                    "{} --bind-address is {ip}, not a loopback address; CIS wants 127.0.0.1",
                    self.name
                )),
                Err(_) => Verdict::Unknown(format!(
                    "{} --bind-address {:?} is not an IP address",
                    self.name, s.value
                )),
            },
        }
    }

    /// An integer setting, or why it is not one.
    fn int(&self, name: &str) -> Result<Option<(i64, &ComponentSetting)>, String> {
        match self.setting(name) {
            None => Ok(None),
            Some(s) => s
                .value
                .trim()
                .parse::<i64>()
                .map(|v| Some((v, s)))
                .map_err(|_| format!("{} --{name} is {:?}, not an integer", self.name, s.value)),
        }
    }

    /// Every check of `checks` Unknown when the component was not observed; else each
    /// check's verdict.
    fn evaluate(&self, node: &str, checks: &[Check<'_>]) -> Vec<DriftEntry> {
        let unobserved = match self.header.state {
            ObservationState::Observed => None,
            ObservationState::NotFound => Some(format!(
                "no {} of this cluster found on this control-plane node{}",
                self.name,
                message_suffix(&self.header.message)
            )),
            ObservationState::Error => Some(format!(
                "{} could not be observed: {}",
                self.name, self.header.message
            )),
        };
        checks
            .iter()
            .filter_map(|(id, check)| {
                let verdict = match &unobserved {
                    Some(why) => Verdict::Unknown(why.clone()),
                    None => check(self),
                };
                match verdict {
                    Verdict::Pass => None,
                    Verdict::Violation(m) => Some(node_drift(node, id, DriftReason::Violation, m)),
                    Verdict::Unknown(m) => Some(node_drift(node, id, DriftReason::Unknown, m)),
                }
            })
            .collect()
    }
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" ({message})")
    }
}

type Check<'f> = (&'static str, &'f dyn Fn(&Component<'_>) -> Verdict);

/// The checks of `all` that `requested` names.
fn only<'f>(all: Vec<Check<'f>>, requested: &[&str]) -> Vec<Check<'f>> {
    all.into_iter()
        .filter(|(id, _)| requested.contains(id))
        .collect()
}

/// The requested kube-controller-manager checks on one control-plane node.
pub fn evaluate_controller_manager(
    node: &str,
    observed: &ComponentObservation,
    settings: &ControllerManagerSettings,
) -> Vec<DriftEntry> {
    let component = Component {
        name: "kube-controller-manager",
        header: &observed.header,
        settings: &observed.settings,
        pending_restart: observed.pending_restart,
    };
    let gc = |c: &Component<'_>| terminated_pod_gc(c, settings.max_terminated_pod_gc_threshold);
    // --profiling defaults to true, --use-service-account-credentials to false.
    let profiling = |c: &Component<'_>| c.boolean("profiling", true, false);
    let credentials = |c: &Component<'_>| c.boolean("use-service-account-credentials", false, true);
    let key = |c: &Component<'_>| c.required(&["service-account-private-key-file"]);
    let root_ca = |c: &Component<'_>| c.required(&["root-ca-file"]);
    let rotate = |c: &Component<'_>| rotate_kubelet_server_certificate(c);
    let bind = |c: &Component<'_>| c.loopback_bind_address();
    let all: Vec<Check<'_>> = vec![
        (check_ids::CM_TERMINATED_POD_GC, &gc),
        (check_ids::CM_PROFILING, &profiling),
        (check_ids::CM_SERVICE_ACCOUNT_CREDENTIALS, &credentials),
        (check_ids::CM_SERVICE_ACCOUNT_KEY, &key),
        (check_ids::CM_ROOT_CA, &root_ca),
        (check_ids::CM_ROTATE_KUBELET_SERVER_CERT, &rotate),
        (check_ids::CM_BIND_ADDRESS, &bind),
    ];
    let requested = requested_checks(Some(settings), None, None);
    component.evaluate(node, &only(all, &requested))
}

fn terminated_pod_gc(component: &Component<'_>, max: i64) -> Verdict {
    match component.int("terminated-pod-gc-threshold") {
        Err(message) => Verdict::Unknown(message),
        Ok(None) => Verdict::Violation(format!(
            "kube-controller-manager --terminated-pod-gc-threshold is not set (the default keeps {DEFAULT_TERMINATED_POD_GC_THRESHOLD} terminated pods); the baseline wants at most {max}"
        )),
        Ok(Some((value, _))) if value <= 0 => Verdict::Violation(format!(
            "kube-controller-manager --terminated-pod-gc-threshold is {value}: terminated pods are never garbage-collected; the baseline wants at most {max}"
        )),
        Ok(Some((value, _))) if value > max => Verdict::Violation(format!(
            "kube-controller-manager --terminated-pod-gc-threshold is {value}; the baseline wants at most {max}"
        )),
        Ok(Some(_)) => Verdict::Pass,
    }
}

/// `--feature-gates` is a map flag: every occurrence adds its `Name=bool` pairs, a later
/// pair overriding an earlier one (component-base's featuregate.Set).
fn rotate_kubelet_server_certificate(component: &Component<'_>) -> Verdict {
    const GATE: &str = "RotateKubeletServerCertificate";
    let Some(gates) = component.setting("feature-gates") else {
        return Verdict::Pass;
    };
    let mut value = None;
    for pair in gates
        .value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
        if name.trim() == GATE {
            value = Some(raw.trim().to_owned());
        }
    }
    match value.as_deref().map(|raw| (raw, parse_go_bool(raw))) {
        None | Some((_, Some(true))) => Verdict::Pass,
        Some((_, Some(false))) => Verdict::Violation(format!(
            "kube-controller-manager runs with --feature-gates {GATE}=false: kubelet serving certificates are not rotated"
        )),
        Some((raw, None)) => Verdict::Unknown(format!(
            "kube-controller-manager --feature-gates {GATE}={raw:?} is not a boolean"
        )),
    }
}

/// The requested kube-scheduler checks on one control-plane node.
pub fn evaluate_scheduler(
    node: &str,
    observed: &ComponentObservation,
    settings: &SchedulerSettings,
) -> Vec<DriftEntry> {
    let component = Component {
        name: "kube-scheduler",
        header: &observed.header,
        settings: &observed.settings,
        pending_restart: observed.pending_restart,
    };
    // enableProfiling and --profiling both default to true.
    let profiling = |c: &Component<'_>| c.boolean("profiling", true, false);
    let bind = |c: &Component<'_>| c.loopback_bind_address();
    let all: Vec<Check<'_>> = vec![
        (check_ids::SCHEDULER_PROFILING, &profiling),
        (check_ids::SCHEDULER_BIND_ADDRESS, &bind),
    ];
    let requested = requested_checks(None, Some(settings), None);
    component.evaluate(node, &only(all, &requested))
}

/// The requested etcd checks on one control-plane node.
pub fn evaluate_etcd(
    node: &str,
    observed: &EtcdObservation,
    settings: &EtcdServerSettings,
) -> Vec<DriftEntry> {
    let component = Component {
        name: "etcd",
        header: &observed.header,
        settings: &observed.settings,
        pending_restart: observed.pending_restart,
    };
    let client_tls = |c: &Component<'_>| c.required(&["cert-file", "key-file"]);
    let client_auth = |c: &Component<'_>| etcd_requires_certificates(c, "");
    let auto_tls = |c: &Component<'_>| etcd_auto_tls(c, "");
    let peer_tls = |c: &Component<'_>| c.required(&["peer-cert-file", "peer-key-file"]);
    let peer_auth = |c: &Component<'_>| etcd_requires_certificates(c, "peer-");
    let peer_auto_tls = |c: &Component<'_>| etcd_auto_tls(c, "peer-");
    let distinct = |c: &Component<'_>| distinct_ca(c, observed);
    let all: Vec<Check<'_>> = vec![
        (check_ids::ETCD_CLIENT_CERT, &client_tls),
        (check_ids::ETCD_CLIENT_CERT_AUTH, &client_auth),
        (check_ids::ETCD_AUTO_TLS, &auto_tls),
        (check_ids::ETCD_PEER_CERT, &peer_tls),
        (check_ids::ETCD_PEER_CLIENT_CERT_AUTH, &peer_auth),
        (check_ids::ETCD_PEER_AUTO_TLS, &peer_auto_tls),
        (check_ids::ETCD_DISTINCT_CA, &distinct),
    ];
    let requested = requested_checks(None, None, Some(settings));
    component.evaluate(node, &only(all, &requested))
}

/// Whether etcd requires client (`prefix` "") or peer (`prefix` "peer-") certificates. etcd
/// asks for and verifies them when `--client-cert-auth` is true **or** a
/// `--trusted-ca-file` is given (client/pkg/transport/listener.go, `ServerConfig`), so
/// `--client-cert-auth=false` beside a trusted CA still requires them. Both default to off.
fn etcd_requires_certificates(component: &Component<'_>, prefix: &str) -> Verdict {
    let auth_flag = format!("{prefix}client-cert-auth");
    let ca_flag = format!("{prefix}trusted-ca-file");
    let auth = component.setting(&auth_flag);
    let ca = component.setting(&ca_flag).filter(|s| !s.value.is_empty());
    match auth.map(|s| (s, parse_go_bool(&s.value))) {
        Some((s, None)) => Verdict::Unknown(format!(
            "etcd {auth_flag} is {:?} ({}), not a boolean",
            s.value, s.origin
        )),
        Some((s, Some(true))) => component.pass_unless_pending(Some(s)),
        _ if ca.is_some() => component.pass_unless_pending(ca),
        _ => Verdict::Violation(format!(
            "etcd does not require {} certificates: {auth_flag} is {} and no --{ca_flag} is given; CIS wants --{auth_flag}=true",
            if prefix.is_empty() { "client" } else { "peer" },
            auth.map_or("not set (default false)".to_owned(), |s| format!(
                "{} ({})",
                s.value, s.origin
            ))
        )),
    }
}

/// Whether etcd serves clients (`prefix` "") or peers ("peer-") with a self-signed
/// certificate: `--auto-tls` is true and neither `--cert-file` nor `--key-file` is given
/// (with them etcd ignores `--auto-tls`, embed/config.go `ClientSelfCert`).
fn etcd_auto_tls(component: &Component<'_>, prefix: &str) -> Verdict {
    let flag = format!("{prefix}auto-tls");
    match component.boolean(&flag, false, false) {
        Verdict::Violation(message) => {
            let certs_given = [format!("{prefix}cert-file"), format!("{prefix}key-file")]
                .iter()
                .any(|name| component.setting(name).is_some_and(|s| !s.value.is_empty()));
            if certs_given {
                Verdict::Pass
            } else {
                Verdict::Violation(format!(
                    "{message}: without --{prefix}cert-file and --{prefix}key-file it uses a self-signed certificate"
                ))
            }
        }
        other => other,
    }
}

fn distinct_ca(component: &Component<'_>, observed: &EtcdObservation) -> Verdict {
    let Some(trusted) = component
        .setting("trusted-ca-file")
        .filter(|s| !s.value.is_empty())
    else {
        return Verdict::Violation(
            "etcd runs without --trusted-ca-file: it has no CA of its own for client certificates"
                .to_owned(),
        );
    };
    match observed.trusted_ca_is_kubernetes_ca {
        Some(true) => Verdict::Violation(format!(
            "etcd trusts the Kubernetes CA: its --trusted-ca-file {} ({}) holds a certificate of the kube-apiserver's --client-ca-file, so every Kubernetes client certificate is an etcd client certificate",
            trusted.value, trusted.origin
        )),
        Some(false) => component.pass_unless_pending(Some(trusted)),
        None => Verdict::Unknown(format!(
            "cannot compare etcd's --trusted-ca-file {} with the Kubernetes CA: {}",
            trusted.value, observed.trusted_ca_message
        )),
    }
}

/// The requested flag-only CIS 1.2 checks of an observed kube-apiserver.
pub fn evaluate_api_server_flags(
    node: &str,
    api: &ApiServerObservation,
    settings: &ApiServerFlagSettings,
) -> Vec<DriftEntry> {
    let settings_given: Vec<ComponentSetting> = api
        .flags
        .iter()
        .map(|f| ComponentSetting {
            name: f.name.clone(),
            value: f.value.clone(),
            origin: format!("flag --{}", f.name),
        })
        .collect();
    let component = Component {
        name: "kube-apiserver",
        header: &api.header,
        settings: &settings_given,
        // Flags only: always what the running process uses.
        pending_restart: false,
    };
    let token_file = |c: &Component<'_>| match c.setting("token-auth-file") {
        Some(s) if !s.value.is_empty() => Verdict::Violation(format!(
            "kube-apiserver accepts the static tokens of --token-auth-file {}; CIS wants it unset",
            s.value
        )),
        _ => Verdict::Pass,
    };
    let kubelet_client =
        |c: &Component<'_>| c.required(&["kubelet-client-certificate", "kubelet-client-key"]);
    let kubelet_ca = |c: &Component<'_>| c.required(&["kubelet-certificate-authority"]);
    // --profiling, --service-account-lookup and --service-account-extend-token-expiration
    // all default to true.
    let profiling = |c: &Component<'_>| c.boolean("profiling", true, false);
    let lookup = |c: &Component<'_>| c.boolean("service-account-lookup", true, true);
    let sa_key = |c: &Component<'_>| c.required(&["service-account-key-file"]);
    let tls = |c: &Component<'_>| c.required(&["tls-cert-file", "tls-private-key-file"]);
    let client_ca = |c: &Component<'_>| c.required(&["client-ca-file"]);
    let ciphers = |c: &Component<'_>| strong_cipher_suites(c);
    let extend =
        |c: &Component<'_>| c.boolean("service-account-extend-token-expiration", true, false);
    let all: Vec<Check<'_>> = vec![
        (check_ids::API_TOKEN_AUTH_FILE, &token_file),
        (check_ids::API_KUBELET_CLIENT_CERT, &kubelet_client),
        (check_ids::API_KUBELET_CA, &kubelet_ca),
        (check_ids::API_PROFILING, &profiling),
        (check_ids::API_SERVICE_ACCOUNT_LOOKUP, &lookup),
        (check_ids::API_SERVICE_ACCOUNT_KEY, &sa_key),
        (check_ids::API_TLS_CERT, &tls),
        (check_ids::API_CLIENT_CA, &client_ca),
        (check_ids::API_CIPHER_SUITES, &ciphers),
        (check_ids::API_EXTEND_TOKEN_EXPIRATION, &extend),
    ];
    component.evaluate(
        node,
        &only(all, &requested_api_server_flag_checks(settings)),
    )
}

/// Without --tls-cipher-suites Go's defaults apply, which include CBC suites CIS does not
/// count as strong; with it, every suite must be on CIS's list.
fn strong_cipher_suites(component: &Component<'_>) -> Verdict {
    let Some(given) = component.setting("tls-cipher-suites") else {
        return Verdict::Violation(
            "kube-apiserver --tls-cipher-suites is not set: Go's default suites (with CBC ones) are offered; CIS wants strong suites only".to_owned(),
        );
    };
    let weak: Vec<&str> = given
        .value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && !STRONG_CIPHER_SUITES.contains(s))
        .collect();
    if weak.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Violation(format!(
            "kube-apiserver --tls-cipher-suites offers suites CIS does not count as strong: {}",
            weak.join(", ")
        ))
    }
}

/// IDs of the flag-only CIS 1.2 checks `settings` asks for.
pub fn requested_api_server_flag_checks(settings: &ApiServerFlagSettings) -> Vec<&'static str> {
    [
        (settings.no_token_auth_file, check_ids::API_TOKEN_AUTH_FILE),
        (
            settings.kubelet_client_certificate,
            check_ids::API_KUBELET_CLIENT_CERT,
        ),
        (
            settings.kubelet_certificate_authority,
            check_ids::API_KUBELET_CA,
        ),
        (settings.profiling_disabled, check_ids::API_PROFILING),
        (
            settings.service_account_lookup,
            check_ids::API_SERVICE_ACCOUNT_LOOKUP,
        ),
        (
            settings.service_account_key_file,
            check_ids::API_SERVICE_ACCOUNT_KEY,
        ),
        (settings.tls_certificate, check_ids::API_TLS_CERT),
        (settings.client_ca_file, check_ids::API_CLIENT_CA),
        (settings.strong_cipher_suites, check_ids::API_CIPHER_SUITES),
        (
            settings.no_service_account_token_extension,
            check_ids::API_EXTEND_TOKEN_EXPIRATION,
        ),
    ]
    .into_iter()
    .filter_map(|(wanted, id)| wanted.then_some(id))
    .collect()
}

/// IDs of the kube-controller-manager, kube-scheduler and etcd checks `settings` asks for.
pub fn requested_checks(
    controller_manager: Option<&ControllerManagerSettings>,
    scheduler: Option<&SchedulerSettings>,
    etcd: Option<&EtcdServerSettings>,
) -> Vec<&'static str> {
    let mut checks = Vec::new();
    if let Some(cm) = controller_manager {
        for (wanted, id) in [
            (true, check_ids::CM_TERMINATED_POD_GC),
            (cm.profiling_disabled, check_ids::CM_PROFILING),
            (
                cm.use_service_account_credentials,
                check_ids::CM_SERVICE_ACCOUNT_CREDENTIALS,
            ),
            (
                cm.service_account_private_key_file,
                check_ids::CM_SERVICE_ACCOUNT_KEY,
            ),
            (cm.root_ca_file, check_ids::CM_ROOT_CA),
            (
                cm.rotate_kubelet_server_certificate,
                check_ids::CM_ROTATE_KUBELET_SERVER_CERT,
            ),
            (cm.loopback_bind_address, check_ids::CM_BIND_ADDRESS),
        ] {
            if wanted {
                checks.push(id);
            }
        }
    }
    if let Some(s) = scheduler {
        if s.profiling_disabled {
            checks.push(check_ids::SCHEDULER_PROFILING);
        }
        if s.loopback_bind_address {
            checks.push(check_ids::SCHEDULER_BIND_ADDRESS);
        }
    }
    if let Some(e) = etcd {
        for (wanted, id) in [
            (e.client_tls, check_ids::ETCD_CLIENT_CERT),
            (e.client_cert_auth, check_ids::ETCD_CLIENT_CERT_AUTH),
            (e.no_auto_tls, check_ids::ETCD_AUTO_TLS),
            (e.peer_tls, check_ids::ETCD_PEER_CERT),
            (
                e.peer_client_cert_auth,
                check_ids::ETCD_PEER_CLIENT_CERT_AUTH,
            ),
            (e.no_peer_auto_tls, check_ids::ETCD_PEER_AUTO_TLS),
            (e.distinct_ca, check_ids::ETCD_DISTINCT_CA),
        ] {
            if wanted {
                checks.push(id);
            }
        }
    }
    checks
}

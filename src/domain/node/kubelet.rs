//! The kubelet's effective configuration and the checks of `spec.kubelet.settings` against it.
//!
//! kube-bench and others read one config file and guess; the kubelet itself computes its
//! configuration as (kubernetes cmd/kubelet/app/server.go, `NewKubeletCommand`):
//!
//! 1. the `--config` file decoded with the KubeletConfiguration v1beta1 defaults
//!    (pkg/kubelet/apis/config/v1beta1/defaults.go, `SetDefaults_KubeletConfiguration`);
//!    without `--config`, the v1beta1 defaults plus the *legacy* command-line defaults
//!    (cmd/kubelet/app/options/options.go, `applyLegacyDefaults`: anonymous auth on, webhook
//!    authentication off, AlwaysAllow, read-only port 10255);
//! 2. every `*.conf` file under `--config-dir`, walked in lexical order
//!    (`mergeKubeletConfigurations`), each of which must be a `kubelet.config.k8s.io/v1beta1`
//!    `KubeletConfiguration` (a file without apiVersion/kind, or empty, stops the kubelet),
//!    applied as a JSON merge patch (RFC 7386: maps merge deeply, lists and scalars are
//!    replaced, null deletes); the result is decoded with Go's encoding/json (keys match
//!    fields case-insensitively) and the v1beta1 defaults are applied *again*, so a field a
//!    drop-in deletes with null gets its default back (`webhook.enabled: null` is true);
//! 3. the command-line flags, re-parsed on top (`kubeletConfigFlagPrecedence`), so a
//!    deprecated flag such as `--anonymous-auth` still wins over every file; except
//!    `--seccomp-default`, which is not configuration: the kubelet ORs it with the
//!    configuration's seccompDefault (`RunKubelet`), so `--seccomp-default=false` changes
//!    nothing;
//! 4. the validation (`ValidateKubeletConfiguration`): e.g. a read-only port out of range
//!    stops the kubelet.
//!
//! [`effective_config`] reproduces that, purely, from texts, for the checked settings, and
//! fails where the kubelet would refuse to start because of them; [`evaluate_kubelet`] checks
//! the result against a baseline (CIS 4.2.x). e2e/tests/kubelet_differential.rs compares it
//! with the kubelet's own code on the fixture sets of tests/fixtures/nodes/kubelet-diff;
//! docs/checks-nodes.md lists what is not modelled.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::api::{
    DriftEntry, DriftReason, EnforcementMode, KubeletAuthorizationMode, KubeletBaseline,
    KubeletObservation, KubeletSettings, KubeletValues, ObservationState, SecurityBaselineSpec,
    SettingOrigin,
};
use crate::domain::checks::CheckInfo;
use crate::domain::node::control_plane::STRONG_CIPHER_SUITES;
use crate::domain::node::findings::node_drift;
use crate::domain::node::flags::{
    ProcessFlags, format_go_duration, parse_go_bool, parse_go_duration,
};

/// Check IDs of the kubelet checks.
pub mod check_ids {
    pub const ANONYMOUS_AUTH: &str = "kubelet.anonymous-auth";
    pub const WEBHOOK_AUTHENTICATION: &str = "kubelet.webhook-authentication";
    pub const AUTHORIZATION_MODE: &str = "kubelet.authorization-mode";
    pub const READ_ONLY_PORT: &str = "kubelet.read-only-port";
    pub const PROTECT_KERNEL_DEFAULTS: &str = "kubelet.protect-kernel-defaults";
    pub const ROTATE_CERTIFICATES: &str = "kubelet.rotate-certificates";
    pub const SECCOMP_DEFAULT: &str = "kubelet.seccomp-default";
    pub const MAKE_IPTABLES_UTIL_CHAINS: &str = "kubelet.make-iptables-util-chains";
    pub const CLIENT_CA_FILE: &str = "kubelet.client-ca-file";
    pub const STREAMING_CONNECTION_IDLE_TIMEOUT: &str = "kubelet.streaming-connection-idle-timeout";
    pub const HOSTNAME_OVERRIDE: &str = "kubelet.hostname-override";
    pub const TLS_CERT_FILE: &str = "kubelet.tls-cert-file";
    pub const ROTATE_SERVER_CERTIFICATES: &str = "kubelet.rotate-server-certificates";
    pub const TLS_CIPHER_SUITES: &str = "kubelet.tls-cipher-suites";
    pub const POD_PIDS_LIMIT: &str = "kubelet.pod-pids-limit";
}

/// The kubelet checks, for the registry.
pub const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        id: check_ids::ANONYMOUS_AUTH,
        description: "Effective authentication.anonymous.enabled equals spec.kubelet.settings.anonymousAuth",
        cis: &["4.2.1"],
    },
    CheckInfo {
        id: check_ids::WEBHOOK_AUTHENTICATION,
        description: "Effective authentication.webhook.enabled equals spec.kubelet.settings.webhookAuthentication",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::AUTHORIZATION_MODE,
        description: "Effective authorization.mode equals spec.kubelet.settings.authorizationMode",
        cis: &["4.2.2"],
    },
    CheckInfo {
        id: check_ids::READ_ONLY_PORT,
        description: "Effective readOnlyPort equals spec.kubelet.settings.readOnlyPort",
        cis: &["4.2.4"],
    },
    CheckInfo {
        id: check_ids::PROTECT_KERNEL_DEFAULTS,
        description: "Effective protectKernelDefaults equals spec.kubelet.settings.protectKernelDefaults",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::ROTATE_CERTIFICATES,
        description: "Effective rotateCertificates equals spec.kubelet.settings.rotateCertificates",
        cis: &["4.2.10"],
    },
    CheckInfo {
        id: check_ids::SECCOMP_DEFAULT,
        description: "Effective seccompDefault equals spec.kubelet.settings.seccompDefault",
        cis: &["4.2.14"],
    },
    CheckInfo {
        id: check_ids::MAKE_IPTABLES_UTIL_CHAINS,
        description: "Effective makeIPTablesUtilChains equals spec.kubelet.settings.makeIPTablesUtilChains",
        cis: &["4.2.6"],
    },
    CheckInfo {
        id: check_ids::CLIENT_CA_FILE,
        description: "The kubelet has a client CA file (authentication.x509.clientCAFile, --client-ca-file)",
        cis: &["4.2.3"],
    },
    CheckInfo {
        id: check_ids::STREAMING_CONNECTION_IDLE_TIMEOUT,
        description: "The kubelet's streamingConnectionIdleTimeout is not 0",
        cis: &["4.2.5"],
    },
    CheckInfo {
        id: check_ids::HOSTNAME_OVERRIDE,
        description: "The kubelet runs without --hostname-override",
        cis: &["4.2.7"],
    },
    CheckInfo {
        id: check_ids::TLS_CERT_FILE,
        description: "The kubelet serves a certificate of its tlsCertFile/tlsPrivateKeyFile or bootstraps one (serverTLSBootstrap), not a self-signed one",
        cis: &["4.2.9"],
    },
    CheckInfo {
        id: check_ids::ROTATE_SERVER_CERTIFICATES,
        description: "The kubelet's RotateKubeletServerCertificate feature gate is not turned off",
        cis: &["4.2.11"],
    },
    CheckInfo {
        id: check_ids::TLS_CIPHER_SUITES,
        description: "The kubelet's tlsCipherSuites is set and lists strong suites only",
        cis: &["4.2.12"],
    },
    CheckInfo {
        id: check_ids::POD_PIDS_LIMIT,
        description: "The kubelet's podPidsLimit is positive",
        cis: &["4.2.13"],
    },
];

/// File name of the drop-in the agent writes with --enforce. "90-" sorts after the usual
/// distribution drop-ins, so the baseline's values win over theirs (the kubelet merges in
/// lexical order, later files override).
pub const DROP_IN_NAME: &str = "90-kube-baseline.conf";

/// Header of the rendered drop-in: says who writes it and why editing it is pointless.
pub const DROP_IN_HEADER: &str = "# Managed by kube-baseline (the node agent with --enforce writes the kubelet settings of\n# every SecurityBaseline in Enforce mode that selects this node). Edits are overwritten;\n# the kubelet reads this file only when it restarts.\n";

/// The API version and kind a KubeletConfiguration file must carry.
const KUBELET_API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
const KUBELET_KIND: &str = "KubeletConfiguration";

/// Origin of a value the kubelet fills in itself.
const ORIGIN_DEFAULT: &str = "default";
/// Origin of a value from the legacy command-line defaults (no --config).
const ORIGIN_LEGACY: &str = "legacy default (no --config)";
/// Origin of a value from the --config file.
const ORIGIN_CONFIG: &str = "config file";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Bool,
    Int,
    Str,
    /// A metav1.Duration: a Go duration string; zero counts as unset (defaulted).
    Duration,
    /// An int64; negative counts as unset (podPidsLimit: defaulted to -1).
    Int64,
    /// A list of strings; its flag is a string slice (every occurrence appends).
    StrList,
    /// One entry of the featureGates map (a boolean); its flag is --feature-gates, a map
    /// flag whose pairs override the files' per gate. The gate name is a map key, matched
    /// exactly (only `featureGates` itself is a field name, matched case-insensitively).
    Gate,
}

/// One checked setting: where it lives in a KubeletConfiguration, the flag that overrides
/// it, and the kubelet's defaults for it.
#[derive(Debug)]
struct Field {
    /// Key in spec.kubelet.settings.
    setting: &'static str,
    check: &'static str,
    path: &'static [&'static str],
    flag: &'static str,
    kind: FieldKind,
    /// SetDefaults_KubeletConfiguration (v1beta1); None: not defaulted (Go zero value).
    default: Option<DefaultValue>,
    /// applyLegacyDefaults, used when the kubelet runs without --config.
    legacy: Option<DefaultValue>,
}

#[derive(Debug, Clone, Copy)]
enum DefaultValue {
    Bool(bool),
    Int(i64),
    Str(&'static str),
}

impl DefaultValue {
    fn to_json(self) -> Value {
        match self {
            Self::Bool(b) => Value::Bool(b),
            Self::Int(i) => json!(i),
            Self::Str(s) => Value::String(s.to_owned()),
        }
    }
}

/// The checked settings. Defaults cite kubernetes pkg/kubelet/apis/config/v1beta1/defaults.go
/// (`SetDefaults_KubeletConfiguration`): anonymous auth false, webhook authentication true,
/// authorization mode Webhook, makeIPTablesUtilChains true, seccompDefault false;
/// readOnlyPort, protectKernelDefaults and rotateCertificates are not defaulted (0, false,
/// false). Legacy defaults cite cmd/kubelet/app/options/options.go (`applyLegacyDefaults`).
const FIELDS: &[Field] = &[
    Field {
        setting: "anonymousAuth",
        check: check_ids::ANONYMOUS_AUTH,
        path: &["authentication", "anonymous", "enabled"],
        flag: "anonymous-auth",
        kind: FieldKind::Bool,
        default: Some(DefaultValue::Bool(false)),
        legacy: Some(DefaultValue::Bool(true)),
    },
    Field {
        setting: "webhookAuthentication",
        check: check_ids::WEBHOOK_AUTHENTICATION,
        path: &["authentication", "webhook", "enabled"],
        flag: "authentication-token-webhook",
        kind: FieldKind::Bool,
        default: Some(DefaultValue::Bool(true)),
        legacy: Some(DefaultValue::Bool(false)),
    },
    Field {
        setting: "authorizationMode",
        check: check_ids::AUTHORIZATION_MODE,
        path: &["authorization", "mode"],
        flag: "authorization-mode",
        kind: FieldKind::Str,
        default: Some(DefaultValue::Str("Webhook")),
        legacy: Some(DefaultValue::Str("AlwaysAllow")),
    },
    Field {
        setting: "readOnlyPort",
        check: check_ids::READ_ONLY_PORT,
        path: &["readOnlyPort"],
        flag: "read-only-port",
        kind: FieldKind::Int,
        default: None,
        legacy: Some(DefaultValue::Int(10255)),
    },
    Field {
        setting: "protectKernelDefaults",
        check: check_ids::PROTECT_KERNEL_DEFAULTS,
        path: &["protectKernelDefaults"],
        flag: "protect-kernel-defaults",
        kind: FieldKind::Bool,
        default: None,
        legacy: None,
    },
    Field {
        setting: "rotateCertificates",
        check: check_ids::ROTATE_CERTIFICATES,
        path: &["rotateCertificates"],
        flag: "rotate-certificates",
        kind: FieldKind::Bool,
        default: None,
        legacy: None,
    },
    Field {
        setting: "seccompDefault",
        check: check_ids::SECCOMP_DEFAULT,
        path: &["seccompDefault"],
        flag: "seccomp-default",
        kind: FieldKind::Bool,
        default: Some(DefaultValue::Bool(false)),
        legacy: None,
    },
    Field {
        setting: "makeIPTablesUtilChains",
        check: check_ids::MAKE_IPTABLES_UTIL_CHAINS,
        path: &["makeIPTablesUtilChains"],
        flag: "make-iptables-util-chains",
        kind: FieldKind::Bool,
        default: Some(DefaultValue::Bool(true)),
        legacy: None,
    },
    // The fields behind the requirement checks ([`REQUIREMENTS`]). Their `setting` is the
    // key in the report's `values` (KubeletValues), not in spec.kubelet.settings.
    Field {
        setting: "clientCAFile",
        check: check_ids::CLIENT_CA_FILE,
        path: &["authentication", "x509", "clientCAFile"],
        flag: "client-ca-file",
        kind: FieldKind::Str,
        default: None,
        legacy: None,
    },
    Field {
        setting: "streamingConnectionIdleTimeout",
        check: check_ids::STREAMING_CONNECTION_IDLE_TIMEOUT,
        path: &["streamingConnectionIdleTimeout"],
        flag: "streaming-connection-idle-timeout",
        kind: FieldKind::Duration,
        // A zero duration in a file is defaulted too: only the flag can make it 0.
        default: Some(DefaultValue::Str("4h0m0s")),
        legacy: None,
    },
    Field {
        setting: "tlsCertFile",
        check: check_ids::TLS_CERT_FILE,
        path: &["tlsCertFile"],
        flag: "tls-cert-file",
        kind: FieldKind::Str,
        default: None,
        legacy: None,
    },
    Field {
        setting: "tlsPrivateKeyFile",
        check: check_ids::TLS_CERT_FILE,
        path: &["tlsPrivateKeyFile"],
        flag: "tls-private-key-file",
        kind: FieldKind::Str,
        default: None,
        legacy: None,
    },
    Field {
        setting: "serverTLSBootstrap",
        check: check_ids::TLS_CERT_FILE,
        path: &["serverTLSBootstrap"],
        flag: "rotate-server-certificates",
        kind: FieldKind::Bool,
        default: None,
        legacy: None,
    },
    Field {
        setting: "rotateKubeletServerCertificate",
        check: check_ids::ROTATE_SERVER_CERTIFICATES,
        path: &["featureGates", ROTATE_SERVER_CERTIFICATE_GATE],
        flag: "feature-gates",
        kind: FieldKind::Gate,
        // The gate's default (on, beta since 1.12) is not written into the map.
        default: None,
        legacy: None,
    },
    Field {
        setting: "tlsCipherSuites",
        check: check_ids::TLS_CIPHER_SUITES,
        path: &["tlsCipherSuites"],
        flag: "tls-cipher-suites",
        kind: FieldKind::StrList,
        default: None,
        legacy: None,
    },
    Field {
        setting: "staticPodPath",
        // Where the manifests of the static Pod file checks are (CIS 1.1.1-1.1.8).
        check: crate::domain::node::files::check_ids::STATIC_POD_MANIFEST_PERMISSIONS,
        path: &["staticPodPath"],
        flag: "pod-manifest-path",
        kind: FieldKind::Str,
        default: None,
        legacy: None,
    },
    Field {
        setting: "podPidsLimit",
        check: check_ids::POD_PIDS_LIMIT,
        path: &["podPidsLimit"],
        flag: "pod-max-pids",
        kind: FieldKind::Int64,
        default: Some(DefaultValue::Int(-1)),
        legacy: None,
    },
];

/// The feature gate of CIS 4.2.11.
const ROTATE_SERVER_CERTIFICATE_GATE: &str = "RotateKubeletServerCertificate";

/// An error computing the effective configuration or rendering a drop-in.
#[derive(Debug, thiserror::Error)]
pub enum KubeletConfigError {
    /// A config file or drop-in is not YAML.
    #[error("kubelet {what} is not valid YAML: {source}")]
    Yaml {
        /// "config file <path>" or "drop-in <name>".
        what: String,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// A file parses but is not a KubeletConfiguration.
    #[error("kubelet {what} is not a KubeletConfiguration: {message}")]
    NotKubeletConfiguration {
        /// Which file.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A checked field has a value of the wrong type, which the kubelet cannot decode (it
    /// refuses to start).
    #[error(
        "kubelet configuration field {path} is {value}, not {expected}: the kubelet would refuse to start"
    )]
    FieldType {
        /// Dotted path of the field.
        path: String,
        /// The value found.
        value: String,
        /// What the field takes.
        expected: &'static str,
    },
    /// A checked field fails the kubelet's validation (it refuses to start).
    #[error("kubelet configuration is invalid: {0}; the kubelet would refuse to start")]
    Invalid(String),
    /// A flag that overrides a checked field has a value the kubelet would reject.
    #[error("kubelet flag --{flag}={value:?} is not a valid {expected}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// What it takes.
        expected: &'static str,
    },
    /// The drop-in could not be serialized.
    #[error("cannot render the kubelet drop-in: {0}")]
    Render(#[source] Box<serde_saphyr::SerializeError>),
}

/// The kubelet's effective configuration and where each checked setting came from.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveConfig {
    /// The merged KubeletConfiguration (v1beta1 field names).
    pub config: Value,
    /// settings key (e.g. "anonymousAuth") -> origin ("default", "drop-in 50-x.conf", ...).
    pub origins: BTreeMap<&'static str, String>,
}

/// Computes the kubelet's effective configuration, the way the kubelet does (module docs):
/// `config` is the text of the `--config` file (None without one), `drop_ins` the
/// `(path relative to --config-dir, text)` of every `*.conf` file there (any order: they are
/// sorted here in the kubelet's walk order), `flags` the kubelet's command line. An error
/// means the kubelet would refuse to start with these files and flags.
pub fn effective_config(
    config: Option<&str>,
    drop_ins: &[(String, String)],
    flags: &ProcessFlags,
) -> Result<EffectiveConfig, KubeletConfigError> {
    let mut origins = BTreeMap::new();
    let mut merged = match config {
        Some(text) => {
            let mut value = parse_kubelet_yaml(text, ORIGIN_CONFIG)?;
            for field in FIELDS {
                // The config file is decoded case-sensitively: other spellings are unknown
                // fields, which the kubelet ignores (and drops before merging drop-ins).
                strip_case_variants(&mut value, field.path, field.kind == FieldKind::Gate);
                if is_unset(field, get_path(&value, field.path)) {
                    if let Some(default) = field.default {
                        set_path(&mut value, field.path, default.to_json());
                    }
                    origins.insert(field.setting, ORIGIN_DEFAULT.to_owned());
                } else {
                    origins.insert(field.setting, ORIGIN_CONFIG.to_owned());
                }
            }
            value
        }
        None => {
            let mut value = Value::Object(Map::new());
            for field in FIELDS {
                let (default, origin) = match (field.legacy, field.default) {
                    (Some(legacy), _) => (Some(legacy), ORIGIN_LEGACY),
                    (None, default) => (default, ORIGIN_DEFAULT),
                };
                if let Some(default) = default {
                    set_path(&mut value, field.path, default.to_json());
                }
                origins.insert(field.setting, origin.to_owned());
            }
            value
        }
    };
    check_types(&merged)?;

    if !drop_ins.is_empty() {
        let mut ordered: Vec<&(String, String)> = drop_ins.iter().collect();
        ordered.sort_by(|a, b| drop_in_order(&a.0, &b.0));
        for (name, text) in ordered {
            let what = format!("drop-in {name}");
            let patch = parse_kubelet_yaml(text, &what)?;
            for field in FIELDS {
                if touches(&patch, field.path, field.kind == FieldKind::Gate) {
                    origins.insert(field.setting, what.clone());
                }
            }
            merge_patch(&mut merged, &patch);
        }
        // Decoded by encoding/json (case-insensitive keys, the last in key order wins), then
        // defaulted again (SetDefaults_KubeletConfiguration after the merge).
        for field in FIELDS {
            let exact = field.kind == FieldKind::Gate;
            if let Some(value) = decode_case_insensitive(&merged, field.path, exact) {
                set_path(&mut merged, field.path, value);
            }
            strip_case_variants(&mut merged, field.path, exact);
        }
        check_types(&merged)?;
        for field in FIELDS {
            if let Some(default) = field.default
                && is_unset(field, get_path(&merged, field.path))
            {
                // A drop-in deleted it (null), or set a value the defaults replace (a zero
                // duration, a negative podPidsLimit).
                let replaced = get_path(&merged, field.path)
                    .filter(|v| !v.is_null())
                    .map_or_else(|| "null".to_owned(), Value::to_string);
                set_path(&mut merged, field.path, default.to_json());
                let origin = match origins.get(field.setting) {
                    Some(from) if from.starts_with("drop-in ") => {
                        format!("{ORIGIN_DEFAULT} ({from} set it to {replaced})")
                    }
                    _ => ORIGIN_DEFAULT.to_owned(),
                };
                origins.insert(field.setting, origin);
            }
        }
    }

    for field in FIELDS {
        let value = match field.kind {
            FieldKind::StrList => string_slice_flag(flags, field.flag),
            FieldKind::Gate => gate_flag(flags, field.flag, ROTATE_SERVER_CERTIFICATE_GATE)?,
            _ => flags
                .get(field.flag)
                .map(|raw| scalar_flag(field, raw))
                .transpose()?,
        };
        let Some(value) = value else {
            continue;
        };
        // --seccomp-default is a KubeletFlags field, ORed with the configuration's value.
        if field.flag == SECCOMP_DEFAULT_FLAG && value == Value::Bool(false) {
            continue;
        }
        set_path(&mut merged, field.path, value);
        origins.insert(field.setting, format!("flag --{}", field.flag));
    }

    validate(&merged)?;
    Ok(EffectiveConfig {
        config: merged,
        origins,
    })
}

/// The flag the kubelet ORs with the configuration instead of overriding it.
const SECCOMP_DEFAULT_FLAG: &str = "seccomp-default";

/// A scalar flag's value as the configuration holds it (a duration as Go prints it).
fn scalar_flag(field: &Field, raw: &str) -> Result<Value, KubeletConfigError> {
    let value = match field.kind {
        FieldKind::Bool => parse_go_bool(raw).map(Value::Bool),
        FieldKind::Int => raw.trim().parse::<i32>().ok().map(|i| json!(i)),
        FieldKind::Int64 => raw.trim().parse::<i64>().ok().map(|i| json!(i)),
        FieldKind::Duration => {
            parse_go_duration(raw).map(|nanos| Value::String(format_go_duration(nanos)))
        }
        FieldKind::Str | FieldKind::StrList | FieldKind::Gate => {
            Some(Value::String(raw.to_owned()))
        }
    };
    value.ok_or_else(|| KubeletConfigError::Flag {
        flag: field.flag,
        value: raw.to_owned(),
        expected: match field.kind {
            FieldKind::Bool | FieldKind::Gate => "boolean",
            FieldKind::Int => "32-bit integer",
            FieldKind::Int64 => "64-bit integer",
            FieldKind::Duration => "duration",
            FieldKind::Str | FieldKind::StrList => "string",
        },
    })
}

/// A string-slice flag (pflag's StringSlice): the first occurrence replaces the file's
/// list, later ones append; each value is split on commas, not trimmed (`--x=` is empty).
fn string_slice_flag(flags: &ProcessFlags, name: &str) -> Option<Value> {
    let values: Vec<&str> = flags
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .collect();
    if values.is_empty() {
        return None;
    }
    let items: Vec<Value> = values
        .into_iter()
        .filter(|v| !v.is_empty())
        .flat_map(|v| v.split(','))
        .map(|item| Value::String(item.to_owned()))
        .collect();
    Some(Value::Array(items))
}

/// One gate of the map flag --feature-gates (component-base's MapStringBool): every
/// occurrence adds `Name=bool` pairs, a later pair overriding an earlier one; the gates
/// the flag names override the files' (kubeletConfigFlagPrecedence keeps the others). A
/// pair without `=` or with a value that is not a boolean stops the kubelet.
fn gate_flag(
    flags: &ProcessFlags,
    name: &'static str,
    gate: &str,
) -> Result<Option<Value>, KubeletConfigError> {
    let mut found = None;
    for (_, raw) in flags.iter().filter(|(n, _)| *n == name) {
        for pair in raw.split(',').filter(|p| !p.is_empty()) {
            let invalid = || KubeletConfigError::Flag {
                flag: name,
                value: raw.to_owned(),
                expected: "list of Name=bool pairs",
            };
            let (key, value) = pair.split_once('=').ok_or_else(invalid)?;
            let value = parse_go_bool(value.trim()).ok_or_else(invalid)?;
            if key.trim() == gate {
                found = Some(Value::Bool(value));
            }
        }
    }
    Ok(found)
}

/// Whether SetDefaults_KubeletConfiguration treats the value as not set: absent or null (a
/// nil pointer), or for the authorization mode the empty string.
fn is_unset(field: &Field, value: Option<&Value>) -> bool {
    match (field.kind, value) {
        (_, None | Some(Value::Null)) => true,
        (FieldKind::Str, Some(Value::String(s))) => s.is_empty(),
        // `if obj.StreamingConnectionIdleTimeout == zeroDuration`.
        (FieldKind::Duration, Some(Value::String(s))) => parse_go_duration(s) == Some(0),
        // `if obj.PodPidsLimit == nil || *obj.PodPidsLimit < int64(0)`.
        (FieldKind::Int64, Some(value)) => value.as_i64().is_some_and(|i| i < 0),
        _ => false,
    }
}

/// The kubelet decodes the configuration into Go types: a checked field of another JSON type
/// (a quoted boolean, a fractional or too large port) stops it.
fn check_types(config: &Value) -> Result<(), KubeletConfigError> {
    for field in FIELDS {
        let Some(value) = get_path(config, field.path).filter(|v| !v.is_null()) else {
            continue;
        };
        let (ok, expected) = match field.kind {
            FieldKind::Bool | FieldKind::Gate => (value.is_boolean(), "a boolean"),
            FieldKind::Int => (
                value.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
                "a 32-bit integer",
            ),
            FieldKind::Str => (value.is_string(), "a string"),
            FieldKind::Duration => (
                value.as_str().and_then(parse_go_duration).is_some(),
                "a duration string (e.g. 4h)",
            ),
            FieldKind::Int64 => (value.as_i64().is_some(), "a 64-bit integer"),
            FieldKind::StrList => (
                value
                    .as_array()
                    .is_some_and(|items| items.iter().all(|i| i.is_string() || i.is_null())),
                "a list of strings",
            ),
        };
        if !ok {
            return Err(KubeletConfigError::FieldType {
                path: field.path.join("."),
                value: value.to_string(),
                expected,
            });
        }
    }
    Ok(())
}

/// ValidateKubeletConfiguration, for the checked fields it validates.
fn validate(config: &Value) -> Result<(), KubeletConfigError> {
    if let Some(port) = get_path(config, &["readOnlyPort"]).and_then(Value::as_i64)
        && !(0..=65535).contains(&port)
    {
        return Err(KubeletConfigError::Invalid(format!(
            "readOnlyPort (--read-only-port) {port} must be between 0 and 65535, inclusive"
        )));
    }
    if get_path(config, &["serverTLSBootstrap"]).and_then(Value::as_bool) == Some(true)
        && !rotate_server_certificate_gate(config)
    {
        return Err(KubeletConfigError::Invalid(
            "serverTLSBootstrap true requires feature gate RotateKubeletServerCertificate"
                .to_owned(),
        ));
    }
    Ok(())
}

/// The RotateKubeletServerCertificate gate in effect: on unless featureGates turns it off.
fn rotate_server_certificate_gate(config: &Value) -> bool {
    get_path(config, &["featureGates", ROTATE_SERVER_CERTIFICATE_GATE])
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// Go's case folding of JSON keys (encoding/json matches a key to a field with
/// bytes.EqualFold): ASCII letters ignore case; the two non-ASCII letters that fold to ASCII
/// ones (the long s and the Kelvin sign) count as `s` and `k`.
fn fold_key(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Keys of `map` that encoding/json decodes into the field named `name`, in the order it
/// reads them (jsonpatch's output is sorted by key).
fn folded_keys<'a>(map: &'a Map<String, Value>, name: &str) -> Vec<&'a String> {
    let want = fold_key(name);
    let mut keys: Vec<&String> = map.keys().filter(|k| fold_key(k) == want).collect();
    keys.sort();
    keys
}

/// The keys along a path at one level: field names fold, a map key (the last component
/// when `exact`) matches only itself.
fn keys_at<'a>(map: &'a Map<String, Value>, name: &str, exact: bool) -> Vec<&'a String> {
    if exact {
        map.keys().filter(|k| k.as_str() == name).collect()
    } else {
        folded_keys(map, name)
    }
}

/// The value encoding/json leaves in the field at `path` after decoding `value` (every key
/// that folds to the field's name is decoded in turn into the same struct, the last wins;
/// into the same map for a map, which keeps its entries: the last value of the key wins
/// too). `exact_last`: the last component is a map key.
fn decode_case_insensitive(value: &Value, path: &[&str], exact_last: bool) -> Option<Value> {
    let (first, rest) = path.split_first()?;
    let map = value.as_object()?;
    let mut found = None;
    for key in keys_at(map, first, exact_last && rest.is_empty()) {
        let child = &map[key.as_str()];
        let decoded = if rest.is_empty() {
            Some(child.clone()).filter(|v| !v.is_null())
        } else {
            decode_case_insensitive(child, rest, exact_last)
        };
        if decoded.is_some() {
            found = decoded;
        }
    }
    found
}

/// Removes the other spellings of the keys along `path` (the exact ones stay).
fn strip_case_variants(value: &mut Value, path: &[&str], exact_last: bool) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Value::Object(map) = value else {
        return;
    };
    let variants: Vec<String> = keys_at(map, first, exact_last && rest.is_empty())
        .into_iter()
        .filter(|k| k.as_str() != *first)
        .cloned()
        .collect();
    for key in variants {
        map.remove(&key);
    }
    if let Some(child) = map.get_mut(*first) {
        strip_case_variants(child, rest, exact_last);
    }
}

/// Whether a drop-in sets or deletes the field at `path` (in any spelling).
fn touches(patch: &Value, path: &[&str], exact_last: bool) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    let Some(map) = patch.as_object() else {
        return false;
    };
    keys_at(map, first, exact_last && rest.is_empty())
        .into_iter()
        .any(|key| {
            let child = &map[key.as_str()];
            rest.is_empty() || child.is_null() || touches(child, rest, exact_last)
        })
}

/// The checked settings of an effective configuration (from [`effective_config`], which
/// re-applies the defaults after drop-ins and rejects values of the wrong type). A field
/// without a default that is absent has the Go zero value, as in the kubelet. An
/// authorization mode other than Webhook/AlwaysAllow (the kubelet's validation accepts it,
/// its start then fails) or a port out of range stays unset, which the checks report as
/// Unknown.
pub fn settings_of(config: &Value) -> KubeletSettings {
    let value = |setting: &str| {
        FIELDS
            .iter()
            .find(|f| f.setting == setting)
            .and_then(|f| get_path(config, f.path))
            .filter(|v| !v.is_null())
    };
    let flag = |setting: &str| Some(value(setting).and_then(Value::as_bool).unwrap_or(false));
    KubeletSettings {
        anonymous_auth: flag("anonymousAuth"),
        webhook_authentication: flag("webhookAuthentication"),
        authorization_mode: match value("authorizationMode").and_then(Value::as_str) {
            Some("Webhook") => Some(KubeletAuthorizationMode::Webhook),
            Some("AlwaysAllow") => Some(KubeletAuthorizationMode::AlwaysAllow),
            _ => None,
        },
        read_only_port: i32::try_from(value("readOnlyPort").and_then(Value::as_i64).unwrap_or(0))
            .ok()
            .filter(|port| (0..=65535).contains(port)),
        protect_kernel_defaults: flag("protectKernelDefaults"),
        rotate_certificates: flag("rotateCertificates"),
        seccomp_default: flag("seccompDefault"),
        make_iptables_util_chains: flag("makeIPTablesUtilChains"),
        ..KubeletSettings::default()
    }
}

/// The values the requirement checks read, from an effective configuration and the
/// kubelet's command line (--hostname-override is a flag only, not configuration).
pub fn values_of(config: &Value, flags: &ProcessFlags) -> KubeletValues {
    let text = |path: &[&str]| {
        get_path(config, path)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    KubeletValues {
        client_ca_file: text(&["authentication", "x509", "clientCAFile"]),
        streaming_connection_idle_timeout: get_path(config, &["streamingConnectionIdleTimeout"])
            .and_then(Value::as_str)
            .and_then(parse_go_duration)
            .map(format_go_duration)
            .unwrap_or_default(),
        hostname_override: flags
            .get(HOSTNAME_OVERRIDE_FLAG)
            .unwrap_or_default()
            .to_owned(),
        tls_cert_file: text(&["tlsCertFile"]),
        tls_private_key_file: text(&["tlsPrivateKeyFile"]),
        server_tls_bootstrap: get_path(config, &["serverTLSBootstrap"])
            .and_then(Value::as_bool)
            .unwrap_or(false),
        rotate_kubelet_server_certificate: rotate_server_certificate_gate(config),
        // Go decodes a null item as "".
        tls_cipher_suites: get_path(config, &["tlsCipherSuites"])
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|i| i.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default(),
        pod_pids_limit: get_path(config, &["podPidsLimit"])
            .and_then(Value::as_i64)
            .unwrap_or(-1),
        static_pod_path: text(&["staticPodPath"]),
    }
}

/// The kubelet flag CIS 4.2.7 forbids (a KubeletFlags field, not configuration).
const HOSTNAME_OVERRIDE_FLAG: &str = "hostname-override";

/// What one requirement check found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Pass,
    Violation(String),
    Unknown(String),
}

/// A requirement of spec.kubelet.settings (`true` checks it): a CIS recommendation on the
/// kubelet's effective values that is not one value to compare (a file that must be set,
/// a timeout that must not be 0).
struct Requirement {
    /// Key in spec.kubelet.settings.
    setting: &'static str,
    check: &'static str,
    /// The [`FIELDS`] it reads: their origins are named in messages, and decide whether a
    /// pass is current (values set by flags always are). Empty: flags only.
    fields: &'static [&'static str],
    verdict: fn(&KubeletValues) -> Verdict,
}

/// The requirement checks (CIS 4.2.3, 4.2.5, 4.2.7, 4.2.9, 4.2.11, 4.2.12, 4.2.13).
const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        setting: "requireClientCAFile",
        check: check_ids::CLIENT_CA_FILE,
        fields: &["clientCAFile"],
        verdict: |v| {
            if v.client_ca_file.is_empty() {
                Verdict::Violation(
                    "kubelet has no client CA file (authentication.x509.clientCAFile, --client-ca-file): it cannot authenticate clients by certificate".to_owned(),
                )
            } else {
                Verdict::Pass
            }
        },
    },
    Requirement {
        setting: "requireStreamingConnectionIdleTimeout",
        check: check_ids::STREAMING_CONNECTION_IDLE_TIMEOUT,
        fields: &["streamingConnectionIdleTimeout"],
        verdict: |v| {
            match parse_go_duration(&v.streaming_connection_idle_timeout) {
            None => Verdict::Unknown(format!(
                "kubelet streamingConnectionIdleTimeout {:?} is not a duration",
                v.streaming_connection_idle_timeout
            )),
            Some(0) => Verdict::Violation(
                "kubelet streamingConnectionIdleTimeout is 0s: idle exec, attach and port-forward streams are never closed".to_owned(),
            ),
            Some(_) => Verdict::Pass,
        }
        },
    },
    Requirement {
        setting: "forbidHostnameOverride",
        check: check_ids::HOSTNAME_OVERRIDE,
        fields: &[],
        verdict: |v| {
            if v.hostname_override.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Violation(format!(
                    "kubelet runs with --hostname-override={}: its node name may not match the name in its certificate",
                    v.hostname_override
                ))
            }
        },
    },
    Requirement {
        setting: "requireTLSCertFile",
        check: check_ids::TLS_CERT_FILE,
        fields: &["tlsCertFile", "tlsPrivateKeyFile", "serverTLSBootstrap"],
        verdict: |v| {
            let missing: Vec<&str> = [
                (v.tls_cert_file.is_empty(), "tlsCertFile (--tls-cert-file)"),
                (
                    v.tls_private_key_file.is_empty(),
                    "tlsPrivateKeyFile (--tls-private-key-file)",
                ),
            ]
            .into_iter()
            .filter_map(|(missing, name)| missing.then_some(name))
            .collect();
            if v.server_tls_bootstrap || missing.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Violation(format!(
                    "kubelet has no {} and serverTLSBootstrap is false: without both files it serves a self-signed certificate (or, with one of them, fails to start)",
                    missing.join(" and no ")
                ))
            }
        },
    },
    Requirement {
        setting: "requireServerCertificateRotation",
        check: check_ids::ROTATE_SERVER_CERTIFICATES,
        fields: &["rotateKubeletServerCertificate"],
        verdict: |v| {
            if v.rotate_kubelet_server_certificate {
                Verdict::Pass
            } else {
                Verdict::Violation(format!(
                    "kubelet runs with the {ROTATE_SERVER_CERTIFICATE_GATE} feature gate off: its serving certificate is never rotated"
                ))
            }
        },
    },
    Requirement {
        setting: "requireStrongTLSCipherSuites",
        check: check_ids::TLS_CIPHER_SUITES,
        fields: &["tlsCipherSuites"],
        verdict: |v| {
            if v.tls_cipher_suites.is_empty() {
                return Verdict::Violation(
                    "kubelet tlsCipherSuites is not set: Go's default suites (with CBC ones) are offered; CIS wants strong suites only".to_owned(),
                );
            }
            let weak: Vec<&str> = v
                .tls_cipher_suites
                .iter()
                .map(String::as_str)
                .filter(|suite| !is_strong_kubelet_suite(suite))
                .collect();
            if weak.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Violation(format!(
                    "kubelet tlsCipherSuites offers suites CIS does not count as strong: {}",
                    weak.join(", ")
                ))
            }
        },
    },
    Requirement {
        setting: "requirePodPidsLimit",
        check: check_ids::POD_PIDS_LIMIT,
        fields: &["podPidsLimit"],
        verdict: |v| {
            if v.pod_pids_limit > 0 {
                Verdict::Pass
            } else {
                Verdict::Violation(format!(
                    "kubelet podPidsLimit is {}: a pod can create processes until the node runs out",
                    v.pod_pids_limit
                ))
            }
        },
    },
];

/// CIS 4.2.12's list for the kubelet adds two RSA key-exchange suites to the
/// kube-apiserver's (1.2.29) list; TLS 1.3 suites (not configurable in Go) and the
/// `_SHA256` aliases of the ChaCha20 suites count too.
fn is_strong_kubelet_suite(suite: &str) -> bool {
    STRONG_CIPHER_SUITES.contains(&suite)
        || matches!(
            suite,
            "TLS_RSA_WITH_AES_256_GCM_SHA384" | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        )
}

/// Whether `settings` sets the requirement (to true).
fn requires(settings: &Map<String, Value>, requirement: &Requirement) -> bool {
    settings.get(requirement.setting) == Some(&Value::Bool(true))
}

/// Origins as reported in a NodeReport, sorted by setting.
pub fn origins_list(origins: &BTreeMap<&'static str, String>) -> Vec<SettingOrigin> {
    origins
        .iter()
        .map(|(setting, origin)| SettingOrigin {
            setting: (*setting).to_owned(),
            origin: origin.clone(),
        })
        .collect()
}

/// The order the kubelet merges drop-ins in (filepath.WalkDir over --config-dir: entries of
/// a directory by name, depth first), for paths relative to the directory: component by
/// component, so `a/b.conf` comes before `a.conf` as in the walk.
pub fn drop_in_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Parses a config file or drop-in as the kubelet does: YAML (a repeated key: the last one
/// wins, as in the kubelet's lenient decoding), a mapping that is a
/// `kubelet.config.k8s.io/v1beta1` `KubeletConfiguration`. An empty document (no text, only
/// comments) has no apiVersion/kind: the kubelet refuses it.
fn parse_kubelet_yaml(text: &str, what: &str) -> Result<Value, KubeletConfigError> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::LastWins,
    };
    let value: Value = serde_saphyr::from_str_with_options(text, options).map_err(|source| {
        KubeletConfigError::Yaml {
            what: what.to_owned(),
            source: Box::new(source),
        }
    })?;
    let not_kubelet = |message: String| KubeletConfigError::NotKubeletConfiguration {
        what: what.to_owned(),
        message,
    };
    let Some(object) = value.as_object() else {
        return Err(not_kubelet(if value.is_null() {
            "the file is empty: no apiVersion/kind".to_owned()
        } else {
            "the document is not a mapping".to_owned()
        }));
    };
    let api_version = object.get("apiVersion").and_then(Value::as_str);
    let kind = object.get("kind").and_then(Value::as_str);
    if api_version != Some(KUBELET_API_VERSION) || kind != Some(KUBELET_KIND) {
        return Err(not_kubelet(format!(
            "apiVersion/kind is {}/{}, want {KUBELET_API_VERSION}/{KUBELET_KIND}",
            api_version.unwrap_or("(none)"),
            kind.unwrap_or("(none)")
        )));
    }
    Ok(value)
}

fn get_path<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |current, key| current.as_object()?.get(*key))
}

fn set_path(value: &mut Value, path: &[&str], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        *value = new;
        return;
    };
    let mut current = value;
    for key in parents {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let Value::Object(map) = current else {
            return;
        };
        current = map
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !current.is_object() {
        *current = Value::Object(Map::new());
    }
    if let Value::Object(map) = current {
        map.insert((*last).to_owned(), new);
    }
}

/// RFC 7386 JSON merge patch, as the kubelet applies drop-ins (jsonpatch.MergePatch).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
        } else {
            merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Whether a baseline's kubelet checks apply to a node with these labels.
pub fn kubelet_selects(baseline: &KubeletBaseline, node_labels: &BTreeMap<String, String>) -> bool {
    baseline
        .node_selector
        .iter()
        .all(|(key, value)| node_labels.get(key) == Some(value))
}

/// The settings a baseline sets, as a JSON object keyed like spec.kubelet.settings.
fn settings_object(settings: &KubeletSettings) -> Map<String, Value> {
    match serde_json::to_value(settings) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// IDs of the checks `settings` asks for (one per set field).
pub fn requested_checks(settings: &KubeletSettings) -> Vec<&'static str> {
    let object = settings_object(settings);
    FIELDS
        .iter()
        .filter(|field| object.contains_key(field.setting))
        .map(|field| field.check)
        .chain(
            REQUIREMENTS
                .iter()
                .filter(|r| requires(&object, r))
                .map(|r| r.check),
        )
        .collect()
}

/// Checks the observed effective kubelet settings against `want` (unset fields are not
/// checked). A kubelet that was not found or whose config could not be read makes every
/// requested check Unknown. A value that passes on disk while the kubelet has not restarted
/// since its files changed is Unknown too (the running kubelet may still use the old value);
/// values set by flags are always current.
pub fn evaluate_kubelet(
    node: &str,
    observed: &KubeletObservation,
    want: &KubeletSettings,
) -> Vec<DriftEntry> {
    let wanted = settings_object(want);
    let have = settings_object(&observed.settings);
    let mut drift = Vec::new();
    for field in FIELDS {
        let Some(want_value) = wanted.get(field.setting) else {
            continue;
        };
        let path = field.path.join(".");
        let entry = match observed.header.state {
            ObservationState::NotFound => Some(node_drift(
                node,
                field.check,
                DriftReason::Unknown,
                if observed.header.message.is_empty() {
                    "no kubelet process found on the node".to_owned()
                } else {
                    observed.header.message.clone()
                },
            )),
            ObservationState::Error => Some(node_drift(
                node,
                field.check,
                DriftReason::Unknown,
                format!(
                    "kubelet configuration could not be read: {}",
                    observed.header.message
                ),
            )),
            ObservationState::Observed => {
                let origin = observed
                    .origins
                    .iter()
                    .find(|o| o.setting == field.setting)
                    .map(|o| o.origin.as_str());
                let from = origin.map(|o| format!(" (from {o})")).unwrap_or_default();
                match have.get(field.setting) {
                    None => Some(node_drift(
                        node,
                        field.check,
                        DriftReason::Unknown,
                        format!("kubelet {path} has no recognizable value{from}"),
                    )),
                    Some(value) if value != want_value => Some(node_drift(
                        node,
                        field.check,
                        DriftReason::Violation,
                        format!("kubelet {path} is {value}{from}; the baseline wants {want_value}"),
                    )),
                    Some(value)
                        if observed.pending_restart
                            && !origin.is_some_and(|o| o.starts_with("flag ")) =>
                    {
                        Some(node_drift(
                            node,
                            field.check,
                            DriftReason::Unknown,
                            format!(
                                "kubelet {path} is {value} on disk{from}, but the kubelet has not restarted since its configuration changed"
                            ),
                        ))
                    }
                    Some(_) => None,
                }
            }
        };
        drift.extend(entry);
    }
    for requirement in REQUIREMENTS.iter().filter(|r| requires(&wanted, r)) {
        let check = requirement.check;
        let verdict = match (observed.header.state, &observed.values) {
            (ObservationState::NotFound, _) => {
                Verdict::Unknown(if observed.header.message.is_empty() {
                    "no kubelet process found on the node".to_owned()
                } else {
                    observed.header.message.clone()
                })
            }
            (ObservationState::Error, _) => Verdict::Unknown(format!(
                "kubelet configuration could not be read: {}",
                observed.header.message
            )),
            (ObservationState::Observed, None) => Verdict::Unknown(
                "the node's report has no kubelet values (an older agent?)".to_owned(),
            ),
            (ObservationState::Observed, Some(values)) => {
                let origins: Vec<&SettingOrigin> = requirement
                    .fields
                    .iter()
                    .filter_map(|f| observed.origins.iter().find(|o| o.setting == *f))
                    .collect();
                let from = if origins.is_empty() {
                    String::new()
                } else {
                    let list: Vec<String> = origins
                        .iter()
                        .map(|o| format!("{} from {}", o.setting, o.origin))
                        .collect();
                    format!(" ({})", list.join(", "))
                };
                let current = !observed.pending_restart
                    || origins.iter().all(|o| o.origin.starts_with("flag "));
                match (requirement.verdict)(values) {
                    Verdict::Violation(message) => Verdict::Violation(format!("{message}{from}")),
                    Verdict::Unknown(message) => Verdict::Unknown(format!("{message}{from}")),
                    Verdict::Pass if !current => Verdict::Unknown(format!(
                        "kubelet passes {check} on disk{from}, but has not restarted since its configuration changed"
                    )),
                    Verdict::Pass => Verdict::Pass,
                }
            }
        };
        match verdict {
            Verdict::Pass => {}
            Verdict::Violation(message) => {
                drift.push(node_drift(node, check, DriftReason::Violation, message));
            }
            Verdict::Unknown(message) => {
                drift.push(node_drift(node, check, DriftReason::Unknown, message));
            }
        }
    }
    drift
}

/// The kubelet settings to write on a node: the union of what every Enforce-mode baseline
/// selecting the node sets. Audit-mode baselines never cause writes. A field two baselines
/// set differently is left out (and named in `conflicts`): the agent will not pick a winner,
/// and the controller reports the baseline that loses as drift.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DesiredKubelet {
    /// What the drop-in should set.
    pub settings: KubeletSettings,
    /// One line per conflicting field.
    pub conflicts: Vec<String>,
}

/// Computes [`DesiredKubelet`] from `(baseline name, spec)` pairs and the node's labels.
pub fn desired_kubelet<'a>(
    baselines: impl IntoIterator<Item = (&'a str, &'a SecurityBaselineSpec)>,
    node_labels: &BTreeMap<String, String>,
) -> DesiredKubelet {
    let mut selected: Vec<(&str, &KubeletBaseline)> = baselines
        .into_iter()
        .filter(|(_, spec)| spec.mode == EnforcementMode::Enforce)
        .filter_map(|(name, spec)| spec.kubelet.as_ref().map(|k| (name, k)))
        .filter(|(_, k)| kubelet_selects(k, node_labels))
        .collect();
    selected.sort_by(|a, b| a.0.cmp(b.0));

    let mut merged: BTreeMap<String, (Value, &str)> = BTreeMap::new();
    let mut conflicting: BTreeSet<String> = BTreeSet::new();
    let mut conflicts = Vec::new();
    for (name, kubelet) in selected {
        // Requirements are checked, never written: their compliant values are the admin's.
        let writable = settings_object(&kubelet.settings)
            .into_iter()
            .filter(|(key, _)| !REQUIREMENTS.iter().any(|r| r.setting == key));
        for (key, value) in writable {
            match merged.get(&key) {
                Some((existing, _)) if *existing == value => {}
                Some((existing, first)) => {
                    if conflicting.insert(key.clone()) {
                        conflicts.push(format!(
                            "{key}: baseline {first} wants {existing}, baseline {name} wants {value}; not written"
                        ));
                    }
                }
                None => {
                    merged.insert(key, (value, name));
                }
            }
        }
    }
    let object: Map<String, Value> = merged
        .into_iter()
        .filter(|(key, _)| !conflicting.contains(key))
        .map(|(key, (value, _))| (key, value))
        .collect();
    DesiredKubelet {
        settings: serde_json::from_value(Value::Object(object)).unwrap_or_default(),
        conflicts,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DropIn {
    api_version: &'static str,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authentication: Option<DropInAuthentication>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization: Option<DropInAuthorization>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_only_port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protect_kernel_defaults: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotate_certificates: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seccomp_default: Option<bool>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        rename = "makeIPTablesUtilChains"
    )]
    make_iptables_util_chains: Option<bool>,
}

#[derive(Serialize)]
struct DropInAuthentication {
    #[serde(skip_serializing_if = "Option::is_none")]
    anonymous: Option<Enabled>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<Enabled>,
}

#[derive(Serialize)]
struct Enabled {
    enabled: bool,
}

#[derive(Serialize)]
struct DropInAuthorization {
    mode: KubeletAuthorizationMode,
}

/// Renders the `90-kube-baseline.conf` drop-in: a KubeletConfiguration with only the fields
/// `settings` sets, deterministic. None when it sets nothing (no file is needed).
pub fn render_drop_in(settings: &KubeletSettings) -> Result<Option<String>, KubeletConfigError> {
    if settings == &KubeletSettings::default() {
        return Ok(None);
    }
    let authentication = (settings.anonymous_auth.is_some()
        || settings.webhook_authentication.is_some())
    .then(|| DropInAuthentication {
        anonymous: settings.anonymous_auth.map(|enabled| Enabled { enabled }),
        webhook: settings
            .webhook_authentication
            .map(|enabled| Enabled { enabled }),
    });
    let drop_in = DropIn {
        api_version: KUBELET_API_VERSION,
        kind: KUBELET_KIND,
        authentication,
        authorization: settings
            .authorization_mode
            .map(|mode| DropInAuthorization { mode }),
        read_only_port: settings.read_only_port,
        protect_kernel_defaults: settings.protect_kernel_defaults,
        rotate_certificates: settings.rotate_certificates,
        seccomp_default: settings.seccomp_default,
        make_iptables_util_chains: settings.make_iptables_util_chains,
    };
    let body = serde_saphyr::to_string(&drop_in)
        .map_err(|err| KubeletConfigError::Render(Box::new(err)))?;
    Ok(Some(format!("{DROP_IN_HEADER}{body}")))
}

#[cfg(test)]
mod tests;

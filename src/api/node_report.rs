//! `NodeReport` (kube-baseline.dev/v1alpha1): what the node agent observed on one node.
//!
//! Audit policy and kubelet settings live on node disks, not in the API, so the agent
//! (`kube-baseline agent`, a DaemonSet) reads them and publishes one cluster-scoped NodeReport
//! per node, named after the node. The controller evaluates every report against every
//! baseline with pure functions (`crate::domain::node::evaluate::evaluate_node`).
//!
//! The observations are the object's `spec`, written only by the agent with server-side apply
//! (field manager `kube-baseline-agent`). A report has no desired state of its own: like a
//! PolicyReport, its content *is* the observation, so one apply creates or updates it and the
//! agent needs no status subresource. The agent rewrites it only when an observation changes,
//! so nothing in here changes on every pass (no timestamps, no PIDs).
//!
//! Only the values the checks read are reported — never key material (encryption keys are
//! reduced to provider names) and never whole config files — and every list and string is
//! bounded, like every other kube-baseline schema.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{AuditPolicyRule, AuditStage, KubeletSettings};

/// Field manager of the agent's server-side applies (distinct from the controller's, so
/// `managedFields` tells who wrote what).
pub const AGENT_FIELD_MANAGER: &str = "kube-baseline-agent";

/// Observations of one node's kubelet, kube-apiserver, audit policy and encryption config.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "kube-baseline.dev",
    version = "v1alpha1",
    kind = "NodeReport",
    plural = "nodereports",
    shortname = "nr",
    category = "security",
    doc = "What the kube-baseline node agent observed on one node (named after it): the kubelet's effective configuration, the kube-apiserver's flags, audit policy and encryption providers. Written by the agent, evaluated by the controller against every SecurityBaseline.",
    printcolumn = r#"{"name":"Kubelet","type":"string","jsonPath":".spec.kubelet.state"}"#,
    printcolumn = r#"{"name":"APIServer","type":"string","jsonPath":".spec.apiServer.state"}"#,
    printcolumn = r#"{"name":"Enforce","type":"boolean","jsonPath":".spec.enforce"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodeReportSpec {
    /// The node observed (equal to metadata.name).
    #[schemars(length(max = 253))]
    pub node_name: String,
    /// Version of the agent that wrote the report.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub agent_version: String,
    /// Whether the agent runs with --enforce (writes the rendered audit policy and kubelet
    /// drop-in). Without it the agent only reads.
    #[serde(default)]
    pub enforce: bool,
    /// The kubelet: its effective configuration (config file, drop-ins, flags, defaults).
    #[serde(default)]
    pub kubelet: KubeletObservation,
    /// The kube-apiserver, when one runs on this node (NotFound on worker nodes).
    #[serde(default)]
    pub api_server: ApiServerObservation,
    /// The kube-controller-manager, when one of this cluster runs on this node.
    #[serde(default)]
    pub controller_manager: ComponentObservation,
    /// The kube-scheduler, when one of this cluster runs on this node.
    #[serde(default)]
    pub scheduler: ComponentObservation,
    /// etcd, when one serving this node's kube-apiserver runs on this node.
    #[serde(default)]
    pub etcd: EtcdObservation,
    /// Mode and owner of the files the control-plane processes' and the kubelet's flags name
    /// (kubeconfigs, certificates, keys, etcd's data directory, the kubelet's config and
    /// client CA file), for the CIS 1.1 and 4.1 checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub files: Vec<FileModeObservation>,
    /// What the agent did (or, without --enforce, would do) with files it manages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub enforcement: Vec<EnforcementResult>,
}

/// The observations the domain evaluates: the NodeReport's spec.
pub type NodeObservations = NodeReportSpec;

/// Whether something could be observed.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum ObservationState {
    /// Found and read.
    Observed,
    /// Not present on this node (no such process, flag or file): checks that need it are
    /// Unknown, or, for a missing flag, evaluated against the component's default.
    #[default]
    NotFound,
    /// Present but unreadable or unparsable; `message` says why. Checks that need it are Unknown.
    Error,
}

/// The header every observation starts with (`state`, `message`), flattened into it so the
/// wire format is that of the fields it replaces. Each observation's schema keeps its own
/// description of `state` (what NotFound and Error mean there) through [`StateDoc`].
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    /// Observed, NotFound or Error.
    #[serde(default)]
    pub state: ObservationState,
    /// Why the state is not Observed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub message: String,
}

impl Observation {
    /// Found and read; `note` is anything worth saying all the same (usually empty).
    pub fn observed(note: String) -> Self {
        Self {
            state: ObservationState::Observed,
            message: note,
        }
    }

    /// Not present on the node, and why that is known.
    pub fn not_found(message: String) -> Self {
        Self {
            state: ObservationState::NotFound,
            message,
        }
    }

    /// Present but unreadable or unparsable, and why.
    pub fn error(message: String) -> Self {
        Self {
            state: ObservationState::Error,
            message,
        }
    }
}

/// Schema transform: the description of a flattened [`Observation`]'s `state` in one
/// observation (the shared header's own doc is generic). The texts are the former field
/// docs verbatim, line breaks included, so the committed CRD stays byte-identical.
#[derive(Debug, Clone, Copy)]
struct StateDoc(&'static str);

impl schemars::transform::Transform for StateDoc {
    fn transform(&mut self, schema: &mut schemars::Schema) {
        if let Some(state) = schema
            .get_mut("properties")
            .and_then(|p| p.get_mut("state"))
            .and_then(serde_json::Value::as_object_mut)
        {
            state.insert("description".to_owned(), self.0.into());
        }
    }
}

/// The kubelet's effective configuration, as the kubelet itself computes it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[schemars(transform = StateDoc("Observed, NotFound (no kubelet process) or Error (config unreadable)."))]
#[serde(rename_all = "camelCase")]
pub struct KubeletObservation {
    /// `state` and `message`, flattened into this object.
    #[serde(flatten)]
    pub header: Observation,
    /// The --config file, as a host path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub config_file: String,
    /// The --config-dir drop-in directory, as a host path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub config_dir: String,
    /// Drop-in files merged, relative to configDir, in the order the kubelet merges them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    pub drop_ins: Vec<String>,
    /// Effective values of the settings a baseline can check (all set when Observed).
    #[serde(default)]
    pub settings: KubeletSettings,
    /// Where each effective setting came from (a default, the config file, a drop-in or a
    /// flag), so a violation names the file to fix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 24))]
    pub origins: Vec<SettingOrigin>,
    /// A config file or drop-in changed after the kubelet started: the running kubelet may
    /// not use what is on disk until it restarts (the agent never restarts it).
    #[serde(default)]
    pub pending_restart: bool,
    /// Effective values behind the requirement checks of spec.kubelet.settings (CIS 4.2.3,
    /// 4.2.5, 4.2.7, 4.2.9, 4.2.11-4.2.13); set when Observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<KubeletValues>,
}

/// The kubelet's effective values that the requirement checks read (file paths, never a
/// file's content). Empty strings are unset values.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubeletValues {
    /// authentication.x509.clientCAFile (--client-ca-file).
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        rename = "clientCAFile"
    )]
    #[schemars(length(max = 4096))]
    pub client_ca_file: String,
    /// streamingConnectionIdleTimeout, as Go prints a duration (e.g. 4h0m0s; 0s: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 64))]
    pub streaming_connection_idle_timeout: String,
    /// --hostname-override (a flag only, not configuration).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 253))]
    pub hostname_override: String,
    /// tlsCertFile (--tls-cert-file).
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        rename = "tlsCertFile"
    )]
    #[schemars(length(max = 4096))]
    pub tls_cert_file: String,
    /// tlsPrivateKeyFile (--tls-private-key-file).
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        rename = "tlsPrivateKeyFile"
    )]
    #[schemars(length(max = 4096))]
    pub tls_private_key_file: String,
    /// serverTLSBootstrap (--rotate-server-certificates).
    #[serde(default, rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: bool,
    /// The RotateKubeletServerCertificate feature gate (featureGates, --feature-gates;
    /// on by default).
    #[serde(default)]
    pub rotate_kubelet_server_certificate: bool,
    /// tlsCipherSuites (--tls-cipher-suites); empty: Go's defaults.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        rename = "tlsCipherSuites"
    )]
    #[schemars(length(max = 64), inner(length(max = 128)))]
    pub tls_cipher_suites: Vec<String>,
    /// podPidsLimit (--pod-max-pids); -1: unlimited.
    #[serde(default)]
    pub pod_pids_limit: i64,
    /// staticPodPath (--pod-manifest-path): where the control-plane manifests of CIS
    /// 1.1.1-1.1.8 are.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub static_pod_path: String,
}

/// The kube-apiserver's flags and the files they point at.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[schemars(transform = StateDoc("Observed, NotFound (no kube-apiserver on this node) or Error."))]
#[serde(rename_all = "camelCase")]
pub struct ApiServerObservation {
    /// `state` and `message`, flattened into this object.
    #[serde(flatten)]
    pub header: Observation,
    /// The flags the checks read, sorted by name; repeated list flags are joined with commas.
    /// Flags not listed were not given (their defaults apply).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub flags: Vec<ObservedFlag>,
    /// The gitVersion this node's own kube-apiserver answered on GET /version (e.g.
    /// v1.36.3), asked at its --bind-address and --secure-port and trusted only with its own
    /// --tls-cert-file: the versions of an HA control plane, one per node. Empty when not
    /// read; versionMessage then says why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 64))]
    pub version: String,
    /// Why version is empty: the kube-apiserver could not be asked or did not answer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub version_message: String,
    /// The policy file --audit-policy-file points at.
    #[serde(default)]
    pub audit_policy: AuditPolicyObservation,
    /// The EncryptionConfiguration --encryption-provider-config points at.
    #[serde(default)]
    pub encryption: EncryptionObservation,
    /// Authorizer types of the AuthorizationConfiguration --authorization-config points at
    /// (it replaces --authorization-mode).
    #[serde(default)]
    pub authorization_config: AuthorizationConfigObservation,
    /// Anonymous authentication of the AuthenticationConfiguration --authentication-config
    /// points at.
    #[serde(default)]
    pub authentication_config: AuthenticationConfigObservation,
    /// The audit policy or another file read at start changed after the kube-apiserver
    /// started: the running process may still use the old content.
    #[serde(default)]
    pub pending_restart: bool,
    /// A real request without credentials (GET /api/v1/namespaces) to this kube-apiserver,
    /// for apiserver.anonymous-request-live (CIS 1.2.1 observed). Absent when not probed.
    #[serde(default, skip_serializing_if = "LiveProbe::is_not_probed")]
    pub anonymous_probe: LiveProbe,
    /// A TLS connection without a client certificate, then GET /version, to the etcd this
    /// kube-apiserver uses, for etcd.client-cert-required-live (CIS 2.2 observed). Absent
    /// when not probed.
    #[serde(default, skip_serializing_if = "LiveProbe::is_not_probed")]
    pub etcd_probe: LiveProbe,
}

/// What a live probe of the node agent found (a request it really sent, not a flag read).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum ProbeOutcome {
    /// Not probed: no SecurityBaseline asks for controlPlane.liveProbes, or the agent ran
    /// with --print. Checks that need it are Unknown.
    #[default]
    NotProbed,
    /// The server refused the unauthenticated client before answering it: a TLS alert
    /// (e.g. certificate required) or a closed connection.
    Refused,
    /// The server answered the request over TLS; status is the HTTP status.
    Answered,
    /// The endpoint is plain http:// and answered the request; status is the HTTP status.
    Plaintext,
    /// The probe could not tell: no endpoint, no connection, no answer in time, another
    /// server's certificate. Checks that need it are Unknown.
    Failed,
}

/// One live probe: where it asked, what happened.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LiveProbe {
    /// NotProbed, Refused, Answered, Plaintext or Failed.
    #[serde(default)]
    pub outcome: ProbeOutcome,
    /// The URL asked (scheme, address, port and path).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 512))]
    pub url: String,
    /// The HTTP status answered (Answered, Plaintext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What happened, in words (the TLS alert, the connection error).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub message: String,
}

impl LiveProbe {
    /// Whether the agent did not probe (nothing to report).
    pub fn is_not_probed(&self) -> bool {
        self.outcome == ProbeOutcome::NotProbed
    }
}

impl ApiServerObservation {
    /// The value of a reported flag, if it was given.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
    }
}

/// A control-plane process other than the kube-apiserver (kube-controller-manager,
/// kube-scheduler): the settings its checks read.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[schemars(transform = StateDoc("Observed, NotFound (no such process of this cluster on this node) or Error (its\n--config unreadable or invalid)."))]
#[serde(rename_all = "camelCase")]
pub struct ComponentObservation {
    /// `state` and `message`, flattened into this object.
    #[serde(flatten)]
    pub header: Observation,
    /// Its --config file, as a host path, when given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub config_file: String,
    /// The checked settings that were given, by flag name, sorted; settings not listed
    /// were not given (the component's defaults apply).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub settings: Vec<ComponentSetting>,
    /// The --config file changed after the process started: it may not use it yet.
    #[serde(default)]
    pub pending_restart: bool,
}

impl ComponentObservation {
    /// A checked setting, if it was given.
    pub fn setting(&self, name: &str) -> Option<&ComponentSetting> {
        self.settings.iter().find(|s| s.name == name)
    }
}

/// etcd: the settings its checks read, and whether it trusts the Kubernetes CA.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[schemars(transform = StateDoc("Observed, NotFound (no etcd serving this node's kube-apiserver on this node) or\nError (its --config-file unreadable or invalid)."))]
#[serde(rename_all = "camelCase")]
pub struct EtcdObservation {
    /// `state` and `message`, flattened into this object.
    #[serde(flatten)]
    pub header: Observation,
    /// Its --config-file, as a host path, when given (etcd then ignores its other flags).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub config_file: String,
    /// The checked settings that were given, by flag name (`client-transport-security` and
    /// `peer-transport-security` keys of --config-file as their flags), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub settings: Vec<ComponentSetting>,
    /// Whether etcd's client --trusted-ca-file holds a certificate of the kube-apiserver's
    /// --client-ca-file (the Kubernetes CA). Unset when either could not be read;
    /// trustedCAMessage then says why.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "trustedCAIsKubernetesCA"
    )]
    pub trusted_ca_is_kubernetes_ca: Option<bool>,
    /// Why trustedCAIsKubernetesCA is unset.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        rename = "trustedCAMessage"
    )]
    #[schemars(length(max = 1024))]
    pub trusted_ca_message: String,
    /// The --config-file changed after etcd started: it may not use it yet.
    #[serde(default)]
    pub pending_restart: bool,
    /// The user ID etcd runs as (effective), for the owner of its data directory.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "runAsUID")]
    pub run_as_uid: Option<u32>,
    /// The group ID etcd runs as (effective).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "runAsGID")]
    pub run_as_gid: Option<u32>,
}

impl EtcdObservation {
    /// A checked setting, if it was given.
    pub fn setting(&self, name: &str) -> Option<&ComponentSetting> {
        self.settings.iter().find(|s| s.name == name)
    }
}

/// What a file named by a process's flag is, for the CIS limits on its mode and owner.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema,
)]
pub enum FileClass {
    /// A kubeconfig (credentials): 600 or stricter, root:root (CIS 1.1.15-1.1.18).
    Kubeconfig,
    /// A certificate or CA bundle: 644 or stricter, root:root (CIS 1.1.19-1.1.20).
    Certificate,
    /// A private key: 600 or stricter, root:root (CIS 1.1.19, 1.1.21).
    PrivateKey,
    /// etcd's data directory: 700 or stricter (CIS 1.1.11).
    EtcdDataDir,
    /// The kubelet's --config file: 600 or stricter, root:root (CIS 4.1.9-4.1.10).
    KubeletConfig,
    /// A static Pod manifest of a control-plane component in the kubelet's staticPodPath:
    /// 600 or stricter, root:root (CIS 1.1.1-1.1.8).
    StaticPodManifest,
}

/// Mode and owner of one file a control-plane process's flag names.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[schemars(transform = StateDoc("Observed, NotFound (no such file) or Error (cannot be read)."))]
#[serde(rename_all = "camelCase")]
pub struct FileModeObservation {
    /// `state` and `message`, flattened into this object.
    #[serde(flatten)]
    pub header: Observation,
    /// Which process and flag name it, e.g. "kube-controller-manager --kubeconfig".
    #[schemars(length(max = 128))]
    pub role: String,
    /// What it is.
    pub class: FileClass,
    /// The host path.
    #[schemars(length(max = 4096))]
    pub path: String,
    /// Its permission bits in octal, e.g. "0600" (set when Observed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 8))]
    pub mode: String,
    /// Owner user ID (set when Observed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Owner group ID (set when Observed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// One setting of a control-plane component, by flag name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSetting {
    /// Flag name without dashes, e.g. profiling.
    #[schemars(length(max = 128))]
    pub name: String,
    /// Its value ("true" for a boolean flag given without one).
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub value: String,
    /// Where it was read: "flag --<name>" or "<key> in --config <path>".
    #[schemars(length(max = 4400))]
    pub origin: String,
}

/// Where one effective kubelet setting came from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct SettingOrigin {
    /// The setting, as in spec.kubelet.settings (e.g. anonymousAuth).
    #[schemars(length(max = 64))]
    pub setting: String,
    /// "default", "legacy default (no --config)", "config file", "drop-in <name>" or
    /// "flag --<name>".
    #[schemars(length(max = 1100))]
    pub origin: String,
}

/// One command-line flag.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ObservedFlag {
    /// Flag name without dashes, e.g. audit-log-path.
    #[schemars(length(max = 128))]
    pub name: String,
    /// Its value ("true" for a boolean flag given without one).
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// The live audit policy, parsed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[schemars(transform = StateDoc("Observed, NotFound (no --audit-policy-file) or Error (unreadable, unparsable or too\nlarge to report)."))]
#[serde(rename_all = "camelCase")]
pub struct AuditPolicyObservation {
    /// `state` and `message`, flattened into this object.
    #[serde(flatten)]
    pub header: Observation,
    /// The policy file, as a host path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub path: String,
    /// The file carries kube-baseline's header: the agent wrote it.
    #[serde(default)]
    pub managed: bool,
    /// Policy-level omitStages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub omit_stages: Vec<AuditStage>,
    /// Policy-level omitManagedFields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omit_managed_fields: Option<bool>,
    /// The rules, in order (the kube-apiserver applies the first that matches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub rules: Vec<AuditPolicyRule>,
    /// The file changed after the kube-apiserver started (it reads the policy only at start).
    #[serde(default)]
    pub pending_restart: bool,
}

/// Encryption at rest, reduced to provider names (never keys).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[schemars(transform = StateDoc("Observed, NotFound (no --encryption-provider-config) or Error."))]
#[serde(rename_all = "camelCase")]
pub struct EncryptionObservation {
    /// `state` and `message`, flattened into this object.
    #[serde(flatten)]
    pub header: Observation,
    /// The EncryptionConfiguration file, as a host path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub path: String,
    /// Providers configured for secrets, in order (the first encrypts new writes), e.g.
    /// [aescbc, identity]. Empty when no entry covers secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 32)))]
    pub secrets_providers: Vec<String>,
    /// The file changed after the kube-apiserver started (it reads it only at start unless
    /// automatic reload is on).
    #[serde(default)]
    pub pending_restart: bool,
}

/// The structured authorization configuration.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[schemars(transform = StateDoc("Observed, NotFound (no --authorization-config) or Error."))]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationConfigObservation {
    /// `state` and `message`, flattened into this object.
    #[serde(flatten)]
    pub header: Observation,
    /// The AuthorizationConfiguration file, as a host path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub path: String,
    /// authorizers[].type in order (Node, RBAC, Webhook, AlwaysAllow, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 64)))]
    pub authorizers: Vec<String>,
}

/// The structured authentication configuration's anonymous settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[schemars(transform = StateDoc("Observed, NotFound (no --authentication-config) or Error."))]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationConfigObservation {
    /// `state` and `message`, flattened into this object.
    #[serde(flatten)]
    pub header: Observation,
    /// The AuthenticationConfiguration file, as a host path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub path: String,
    /// anonymous.enabled; unset when the file has no anonymous section (then the
    /// --anonymous-auth flag decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_enabled: Option<bool>,
    /// Number of anonymous.conditions: when non-zero, anonymous requests are only allowed to
    /// those paths (typically health endpoints).
    #[serde(default)]
    pub anonymous_conditions: i32,
}

/// A file the agent manages, and whether it holds what the baselines render.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnforcementResult {
    /// Which file.
    pub target: EnforcementTarget,
    /// Its host path (empty when it could not be determined).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub path: String,
    /// InSync, Drifted, Skipped or Failed.
    pub state: EnforcementState,
    /// Details for a human.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub message: String,
}

/// Files the agent can write with --enforce.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum EnforcementTarget {
    /// The kube-apiserver's --audit-policy-file.
    AuditPolicy,
    /// `<kubelet --config-dir>/90-kube-baseline.conf`.
    KubeletDropIn,
}

/// How a managed file compares with what the baselines render.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum EnforcementState {
    /// The file holds exactly the rendered content (written by the agent or already equal).
    InSync,
    /// The file differs and was left alone: the agent runs without --enforce.
    Drifted,
    /// Nothing can be written (e.g. the kubelet has no --config-dir); message says why.
    Skipped,
    /// Writing failed; message says why.
    Failed,
}

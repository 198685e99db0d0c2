//! From what was read on a node (process arguments and file texts) to a [`NodeReportSpec`].
//!
//! Pure: no I/O happens here, so `kube-baseline check` builds the same observations from
//! files a user gives it ([`NodeSources`] with [`SourceFile::text`]) and gets exactly the
//! verdicts the controller would reach from an agent's report.

use serde_json::Value;

use super::host::FileStat;
use super::membership::ClusterCa;
use crate::api::{
    ApiServerObservation, AuditPolicyObservation, AuthenticationConfigObservation,
    AuthorizationConfigObservation, ComponentObservation, ComponentSetting, EncryptionObservation,
    EtcdObservation, FileModeObservation, KubeletObservation, LiveProbe, NODE_REPORT_SCHEMA,
    NodeReportSpec, Observation, ObservationState, ObservedFlag,
};
use crate::domain::node::api_server::API_SERVER_FLAGS;
use crate::domain::node::config_files::{
    ControlPlaneError, authentication_config_anonymous, authorization_config_authorizers,
    secrets_providers,
};
use crate::domain::node::control_plane;
use crate::domain::node::files::NamedFile;
use crate::domain::node::findings::truncate;
use crate::domain::node::flags::ProcessFlags;
use crate::domain::node::{audit_policy, kubelet};

/// Longest message or path reported (the NodeReport schema's bounds).
const MESSAGE_MAX: usize = 1024;
const PATH_MAX: usize = 4096;

/// A file a flag points at: its host path and its text, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Host path (as the flag gives it).
    pub path: String,
    /// The text, or a message saying why it is unreadable.
    pub text: Result<String, String>,
    /// The file changed after the process that reads it started.
    pub changed_after_start: bool,
}

impl SourceFile {
    /// A file read successfully (what `check` builds from user-supplied files).
    pub fn text(path: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: Ok(text.into()),
            changed_after_start: false,
        }
    }
}

/// What was read about the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletSources {
    /// Its arguments (after the program name); empty when only files were given.
    pub args: Vec<String>,
    /// The --config file (or the agent's --kubelet-config).
    pub config: Option<SourceFile>,
    /// The --config-dir (host path).
    pub config_dir: Option<String>,
    /// Every `*.conf` file in --config-dir, path relative to it; Err when the directory
    /// could not be listed.
    pub drop_ins: Result<Vec<SourceFile>, String>,
    /// A drop-in was added, removed or renamed in --config-dir after the kubelet started:
    /// the files on disk are not the ones it merged.
    pub config_dir_changed_after_start: bool,
    /// Other processes of this cluster running here too (reported in the message).
    pub note: String,
}

impl Default for KubeletSources {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            config: None,
            config_dir: None,
            drop_ins: Ok(Vec::new()),
            config_dir_changed_after_start: false,
            note: String::new(),
        }
    }
}

/// What was read about the kube-apiserver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiServerSources {
    /// Its arguments (after the program name).
    pub args: Vec<String>,
    /// The --audit-policy-file (or the agent's --audit-policy-file).
    pub audit_policy: Option<SourceFile>,
    /// The --encryption-provider-config.
    pub encryption_config: Option<SourceFile>,
    /// The --authorization-config.
    pub authorization_config: Option<SourceFile>,
    /// The --authentication-config.
    pub authentication_config: Option<SourceFile>,
    /// Other processes of this cluster running here too (reported in the message).
    pub note: String,
}

/// What was read about a kube-controller-manager or kube-scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComponentSources {
    /// Its arguments (after the program name).
    pub args: Vec<String>,
    /// Its config file (kube-scheduler --config, etcd --config-file).
    pub config: Option<SourceFile>,
    /// Other processes of this cluster running here too (reported in the message).
    pub note: String,
}

/// What was read about etcd.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EtcdSources {
    /// Its arguments and --config-file.
    pub component: ComponentSources,
    /// Its client --trusted-ca-file (from the flag or --config-file).
    pub trusted_ca: Option<SourceFile>,
    /// The kube-apiserver's --client-ca-file: the Kubernetes CA.
    pub kubernetes_ca: Option<SourceFile>,
    /// The effective user and group etcd runs as, if /proc says.
    pub owner: Option<(u32, u32)>,
}

/// A file a control-plane process's flag names, with its mode and owner (None: no such
/// file), or why they could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatedFile {
    /// Which file, and what it is.
    pub file: NamedFile,
    /// Its mode and owner.
    pub stat: Result<Option<FileStat>, String>,
}

/// How a component was found on the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Found<T> {
    /// Not running here (and no files given for it).
    #[default]
    NotFound,
    /// Looking for it failed (e.g. /proc unreadable).
    Error(String),
    /// Found; what was read.
    Found(T),
}

/// Everything read on one node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeSources {
    /// The node's name.
    pub node_name: String,
    /// The kubelet.
    pub kubelet: Found<KubeletSources>,
    /// The kube-apiserver.
    pub api_server: Found<ApiServerSources>,
    /// The kube-controller-manager.
    pub controller_manager: Found<ComponentSources>,
    /// The kube-scheduler.
    pub scheduler: Found<ComponentSources>,
    /// etcd.
    pub etcd: Found<EtcdSources>,
    /// The files the control-plane processes' flags name.
    pub files: Vec<StatedFile>,
}

/// Builds the observations of one node. Never fails: what cannot be read or parsed becomes
/// an Error observation with a message, which the checks report as Unknown.
pub fn observe(sources: &NodeSources) -> NodeReportSpec {
    let mut report = NodeReportSpec {
        node_name: sources.node_name.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        enforce: false,
        kubelet: match &sources.kubelet {
            Found::NotFound => KubeletObservation {
                header: Observation::not_found("no kubelet process found on the node".to_owned()),
                ..KubeletObservation::default()
            },
            Found::Error(message) => KubeletObservation {
                header: Observation::error(truncate(message.clone(), MESSAGE_MAX)),
                ..KubeletObservation::default()
            },
            Found::Found(kubelet) => observe_kubelet(kubelet),
        },
        api_server: match &sources.api_server {
            Found::NotFound => ApiServerObservation::default(),
            Found::Error(message) => ApiServerObservation {
                header: Observation::error(truncate(message.clone(), MESSAGE_MAX)),
                ..ApiServerObservation::default()
            },
            Found::Found(api) => observe_api_server(api),
        },
        controller_manager: observe_component(
            &sources.controller_manager,
            "kube-controller-manager",
            |flags, _| Ok(control_plane::controller_manager_settings(flags)),
        ),
        scheduler: observe_component(
            &sources.scheduler,
            "kube-scheduler",
            control_plane::scheduler_settings,
        ),
        etcd: observe_etcd(&sources.etcd),
        // The schema's bound; a control plane names about 30 files.
        files: sources
            .files
            .iter()
            .take(64)
            .map(observe_file_stat)
            .collect(),
        enforcement: Vec::new(),
    };
    fit_to_schema(&mut report);
    report
}

fn kubelet_error(kubelet: &KubeletSources, message: String) -> KubeletObservation {
    KubeletObservation {
        header: Observation::error(truncate(message, MESSAGE_MAX)),
        config_file: kubelet
            .config
            .as_ref()
            .map(|c| truncate(c.path.clone(), PATH_MAX))
            .unwrap_or_default(),
        config_dir: truncate(kubelet.config_dir.clone().unwrap_or_default(), PATH_MAX),
        ..KubeletObservation::default()
    }
}

fn observe_kubelet(kubelet: &KubeletSources) -> KubeletObservation {
    let flags = ProcessFlags::parse(&kubelet.args);
    let config_text = match &kubelet.config {
        None => None,
        Some(file) => match &file.text {
            Ok(text) => Some(text.as_str()),
            Err(message) => {
                return kubelet_error(kubelet, format!("kubelet --config: {message}"));
            }
        },
    };
    let drop_ins = match &kubelet.drop_ins {
        Ok(files) => files,
        Err(message) => return kubelet_error(kubelet, message.clone()),
    };
    let mut texts = Vec::with_capacity(drop_ins.len());
    for file in drop_ins {
        match &file.text {
            Ok(text) => texts.push((file.path.clone(), text.clone())),
            Err(message) => {
                return kubelet_error(kubelet, format!("kubelet drop-in: {message}"));
            }
        }
    }
    let effective = match kubelet::effective_config(config_text, &texts, &flags) {
        Ok(effective) => effective,
        Err(err) => return kubelet_error(kubelet, err.to_string()),
    };
    let mut names: Vec<String> = drop_ins.iter().map(|f| f.path.clone()).collect();
    names.sort_by(|a, b| kubelet::drop_in_order(a, b));
    KubeletObservation {
        header: Observation::observed(truncate(kubelet.note.clone(), MESSAGE_MAX)),
        config_file: kubelet
            .config
            .as_ref()
            .map(|c| truncate(c.path.clone(), PATH_MAX))
            .unwrap_or_default(),
        config_dir: truncate(kubelet.config_dir.clone().unwrap_or_default(), PATH_MAX),
        drop_ins: names,
        settings: kubelet::settings_of(&effective.config),
        values: Some(kubelet::values_of(&effective.config, &flags)),
        origins: kubelet::origins_list(&effective.origins),
        pending_restart: kubelet.config.iter().any(|c| c.changed_after_start)
            || kubelet.config_dir_changed_after_start
            || drop_ins.iter().any(|f| f.changed_after_start),
    }
}

fn observe_api_server(api: &ApiServerSources) -> ApiServerObservation {
    let flags = ProcessFlags::parse(&api.args);
    let observed_flags = flags
        .select(API_SERVER_FLAGS)
        .into_iter()
        .map(|(name, value)| ObservedFlag {
            name,
            value: truncate(value, PATH_MAX),
        })
        .collect();
    let audit_policy = observe_policy(api.audit_policy.as_ref());
    let encryption = observe_encryption(api.encryption_config.as_ref());
    ApiServerObservation {
        header: Observation::observed(truncate(api.note.clone(), MESSAGE_MAX)),
        flags: observed_flags,
        pending_restart: audit_policy.pending_restart || encryption.pending_restart,
        audit_policy,
        encryption,
        authorization_config: observe_authorization(api.authorization_config.as_ref()),
        authentication_config: observe_authentication(api.authentication_config.as_ref()),
        // Asked over the network by the agent's I/O shell (`agent::version`), not read
        // from files: left empty here.
        version: String::new(),
        version_message: String::new(),
        // Probed over the network by the agent's I/O shell (`agent::live`), only while a
        // baseline asks.
        anonymous_probe: LiveProbe::default(),
        etcd_probe: LiveProbe::default(),
    }
}

/// A kube-controller-manager or kube-scheduler: its checked settings from its flags and
/// config file (`settings_of`), or an Error when the config file is unreadable or invalid
/// (the component would not start with it).
fn observe_component(
    found: &Found<ComponentSources>,
    name: &str,
    settings_of: impl FnOnce(
        &ProcessFlags,
        Option<(&str, &str)>,
    ) -> Result<Vec<ComponentSetting>, ControlPlaneError>,
) -> ComponentObservation {
    let sources = match found {
        Found::NotFound => {
            return ComponentObservation {
                header: Observation::not_found(format!("no {name} process of this cluster")),
                ..ComponentObservation::default()
            };
        }
        Found::Error(message) => {
            return ComponentObservation {
                header: Observation::error(truncate(message.clone(), MESSAGE_MAX)),
                ..ComponentObservation::default()
            };
        }
        Found::Found(sources) => sources,
    };
    let config_file = sources
        .config
        .as_ref()
        .map(|c| truncate(c.path.clone(), PATH_MAX))
        .unwrap_or_default();
    let error = |message: String| ComponentObservation {
        header: Observation::error(truncate(message, MESSAGE_MAX)),
        config_file: config_file.clone(),
        ..ComponentObservation::default()
    };
    let config = match &sources.config {
        None => None,
        Some(file) => match &file.text {
            Ok(text) => Some((file.path.as_str(), text.as_str())),
            Err(message) => return error(format!("{name} --config: {message}")),
        },
    };
    match settings_of(&ProcessFlags::parse(&sources.args), config) {
        Ok(settings) => ComponentObservation {
            header: Observation::observed(truncate(sources.note.clone(), MESSAGE_MAX)),
            config_file: config_file.clone(),
            settings: bounded(settings),
            pending_restart: sources
                .config
                .as_ref()
                .is_some_and(|c| c.changed_after_start),
        },
        Err(err) => error(err.to_string()),
    }
}

fn bounded(settings: Vec<ComponentSetting>) -> Vec<ComponentSetting> {
    settings
        .into_iter()
        .map(|s| ComponentSetting {
            name: s.name,
            value: truncate(s.value, PATH_MAX),
            origin: truncate(s.origin, PATH_MAX + 300),
        })
        .collect()
}

/// etcd: its checked settings, and whether its client --trusted-ca-file holds a
/// certificate of the Kubernetes CA (CIS 2.7).
fn observe_etcd(found: &Found<EtcdSources>) -> EtcdObservation {
    let component_found = match found {
        Found::NotFound => Found::NotFound,
        Found::Error(message) => Found::Error(message.clone()),
        Found::Found(sources) => Found::Found(sources.component.clone()),
    };
    let component = observe_component(&component_found, "etcd", control_plane::etcd_settings);
    let mut etcd = EtcdObservation {
        header: component.header,
        config_file: component.config_file,
        settings: component.settings,
        pending_restart: component.pending_restart,
        ..EtcdObservation::default()
    };
    let Found::Found(sources) = found else {
        return etcd;
    };
    if etcd.header.state != ObservationState::Observed {
        return etcd;
    }
    etcd.run_as_uid = sources.owner.map(|(uid, _)| uid);
    etcd.run_as_gid = sources.owner.map(|(_, gid)| gid);
    let compared = match (&sources.trusted_ca, &sources.kubernetes_ca) {
        (None, _) => Err("etcd has no --trusted-ca-file".to_owned()),
        (_, None) => Err(
            "the kube-apiserver on this node has no --client-ca-file (or none runs here)"
                .to_owned(),
        ),
        (Some(trusted), Some(kubernetes)) => match (&trusted.text, &kubernetes.text) {
            (Err(message), _) => Err(format!("etcd --trusted-ca-file: {message}")),
            (_, Err(message)) => Err(format!("kube-apiserver --client-ca-file: {message}")),
            (Ok(trusted_pem), Ok(kubernetes_pem)) => match ClusterCa::from_pem(kubernetes_pem) {
                None => Err(format!(
                    "kube-apiserver --client-ca-file {} holds no certificate",
                    kubernetes.path
                )),
                Some(kubernetes_ca) => Ok(kubernetes_ca.shared_by(trusted_pem)),
            },
        },
    };
    match compared {
        Ok(shared) => etcd.trusted_ca_is_kubernetes_ca = Some(shared),
        Err(message) => etcd.trusted_ca_message = truncate(message, MESSAGE_MAX),
    }
    etcd
}

fn observe_file_stat(stated: &StatedFile) -> FileModeObservation {
    let (header, stat) = match &stated.stat {
        Ok(Some(stat)) => (Observation::observed(String::new()), Some(stat)),
        Ok(None) => (Observation::not_found("no such file".to_owned()), None),
        Err(message) => (
            Observation::error(truncate(message.clone(), MESSAGE_MAX)),
            None,
        ),
    };
    FileModeObservation {
        header,
        role: truncate(stated.file.role.clone(), 128),
        class: stated.file.class,
        path: truncate(stated.file.path.clone(), PATH_MAX),
        mode: stat.map(|s| format!("{:04o}", s.mode)).unwrap_or_default(),
        uid: stat.map(|s| s.uid),
        gid: stat.map(|s| s.gid),
    }
}

/// The header and path of a file read, with its text when Observed.
fn read(file: Option<&SourceFile>) -> (Observation, String, Option<&str>) {
    match file {
        None => (Observation::default(), String::new(), None),
        Some(file) => {
            let path = truncate(file.path.clone(), PATH_MAX);
            match &file.text {
                Ok(text) => (Observation::observed(String::new()), path, Some(text)),
                Err(message) => (
                    Observation::error(truncate(message.clone(), MESSAGE_MAX)),
                    path,
                    None,
                ),
            }
        }
    }
}

/// The kube-apiserver's config file observations: each starts with the same header and a
/// path.
trait FileObservation: Default {
    fn with_header(header: Observation, path: String) -> Self;
}

macro_rules! file_observation {
    ($($observation:ty),*) => {$(
        impl FileObservation for $observation {
            fn with_header(header: Observation, path: String) -> Self {
                Self { header, path, ..Self::default() }
            }
        }
    )*};
}
file_observation!(
    AuditPolicyObservation,
    EncryptionObservation,
    AuthorizationConfigObservation,
    AuthenticationConfigObservation
);

/// One config file into its observation: NotFound without the file, Error (with the reason)
/// when it is unreadable or `parse` rejects it, else what `observed` builds from the parsed
/// value, the text and the path.
fn observe_file<T: FileObservation, V, E: std::fmt::Display>(
    file: Option<&SourceFile>,
    parse: impl FnOnce(&str) -> Result<V, E>,
    observed: impl FnOnce(V, &str, String) -> T,
) -> T {
    let (header, path, text) = read(file);
    let Some(text) = text else {
        return T::with_header(header, path);
    };
    match parse(text) {
        Ok(value) => observed(value, text, path),
        Err(err) => T::with_header(
            Observation::error(truncate(err.to_string(), MESSAGE_MAX)),
            path,
        ),
    }
}

fn observe_policy(file: Option<&SourceFile>) -> AuditPolicyObservation {
    let pending_restart = file.is_some_and(|f| f.changed_after_start);
    observe_file(file, audit_policy::parse_policy, |policy, text, path| {
        AuditPolicyObservation {
            header: Observation::observed(String::new()),
            path,
            managed: audit_policy::is_managed(text),
            omit_stages: policy.omit_stages,
            omit_managed_fields: policy.omit_managed_fields,
            rules: policy.rules,
            pending_restart,
        }
    })
}

fn observe_encryption(file: Option<&SourceFile>) -> EncryptionObservation {
    let pending_restart = file.is_some_and(|f| f.changed_after_start);
    observe_file(file, secrets_providers, |providers, _, path| {
        EncryptionObservation {
            header: Observation::observed(String::new()),
            path,
            secrets_providers: providers.into_iter().map(|p| truncate(p, 32)).collect(),
            pending_restart,
        }
    })
}

fn observe_authorization(file: Option<&SourceFile>) -> AuthorizationConfigObservation {
    observe_file(
        file,
        authorization_config_authorizers,
        |authorizers, _, path| AuthorizationConfigObservation {
            header: Observation::observed(String::new()),
            path,
            authorizers: authorizers.into_iter().map(|a| truncate(a, 64)).collect(),
        },
    )
}

fn observe_authentication(file: Option<&SourceFile>) -> AuthenticationConfigObservation {
    observe_file(
        file,
        authentication_config_anonymous,
        |anonymous, _, path| AuthenticationConfigObservation {
            header: Observation::observed(String::new()),
            path,
            anonymous_enabled: anonymous.map(|(enabled, _)| enabled),
            anonymous_conditions: anonymous
                .map(|(_, conditions)| i32::try_from(conditions).unwrap_or(i32::MAX))
                .unwrap_or(0),
        },
    )
}

/// Where an observation exceeds the NodeReport schema's bounds (maxItems, maxLength),
/// as `.path: what` lines. The API server would reject such a report outright, so
/// [`fit_to_schema`] turns the offending observation into an Error instead.
pub fn schema_violations(report: &NodeReportSpec) -> Vec<String> {
    let schema = NODE_REPORT_SCHEMA
        .pointer("/properties/spec")
        .unwrap_or(&Value::Null);
    let value = serde_json::to_value(report).unwrap_or(Value::Null);
    let mut out = Vec::new();
    walk_bounds(schema, &value, "", &mut out);
    out
}

fn walk_bounds(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let limit = |key: &str| schema.get(key).and_then(Value::as_u64);
    match value {
        Value::String(s) => {
            if let Some(max) = limit("maxLength")
                && s.chars().count() as u64 > max
            {
                out.push(format!("{path}: longer than {max} characters"));
            }
        }
        Value::Array(items) => {
            if let Some(max) = limit("maxItems")
                && items.len() as u64 > max
            {
                out.push(format!("{path}: more than {max} items"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk_bounds(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::Object(map) => {
            if let Some(max) = limit("maxProperties")
                && map.len() as u64 > max
            {
                out.push(format!("{path}: more than {max} properties"));
            }
            for (key, item) in map {
                let child = schema
                    .get("properties")
                    .and_then(|p| p.get(key))
                    .or_else(|| schema.get("additionalProperties"));
                if let Some(child) = child {
                    walk_bounds(child, item, &format!("{path}.{key}"), out);
                }
            }
        }
        _ => {}
    }
}

/// Replaces observations that exceed the schema's bounds with Error observations saying so
/// (e.g. a live audit policy of 300 rules), so the report can always be published.
pub fn fit_to_schema(report: &mut NodeReportSpec) {
    for _ in 0..6 {
        let violations = schema_violations(report);
        let Some(first) = violations.first() else {
            return;
        };
        let message = truncate(
            format!("too large to report: {}", violations.join("; ")),
            MESSAGE_MAX,
        );
        if first.starts_with(".apiServer.auditPolicy") {
            let policy = &mut report.api_server.audit_policy;
            *policy = AuditPolicyObservation::with_header(
                Observation::error(message),
                std::mem::take(&mut policy.path),
            );
        } else if first.starts_with(".apiServer") {
            report.api_server = ApiServerObservation {
                header: Observation::error(message),
                ..ApiServerObservation::default()
            };
        } else if first.starts_with(".controllerManager") {
            report.controller_manager = ComponentObservation {
                header: Observation::error(message),
                ..ComponentObservation::default()
            };
        } else if first.starts_with(".scheduler") {
            report.scheduler = ComponentObservation {
                header: Observation::error(message),
                ..ComponentObservation::default()
            };
        } else if first.starts_with(".etcd") {
            report.etcd = EtcdObservation {
                header: Observation::error(message),
                ..EtcdObservation::default()
            };
        } else if first.starts_with(".kubelet") {
            report.kubelet = KubeletObservation {
                header: Observation::error(message),
                ..KubeletObservation::default()
            };
        } else {
            report.enforcement.clear();
            report.node_name = truncate(std::mem::take(&mut report.node_name), 253);
        }
    }
}

//! Finding the kubelet, kube-apiserver, kube-controller-manager, kube-scheduler and etcd on
//! the node and reading what their flags point at.

use std::time::SystemTime;

use serde_json::Value;

use super::host::{Host, Process, apiserver_args_from_file};
use super::membership::ClusterCa;
use super::observe::{
    ApiServerSources, ComponentSources, EtcdSources, Found, KubeletSources, NodeSources,
    SourceFile, StatedFile,
};
use super::version::serving_cert_path;
use crate::api::FileClass;
use crate::domain::node::control_plane::etcd_settings;
use crate::domain::node::files::{
    NamedFile, STATIC_POD_PATH_ROLE, STATIC_POD_ROLE_PREFIX, kubelet_files, manifest_component,
    named_files, named_files_of_flags,
};
use crate::domain::node::flags::ProcessFlags;
use crate::domain::node::kubelet::{EffectiveConfig, effective_config, values_of};

/// Paths that override discovery (all host paths, resolved under the host root).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOptions {
    /// The kubelet's config file, instead of its --config flag.
    pub kubelet_config: Option<String>,
    /// The kubelet's drop-in directory, instead of its --config-dir flag.
    pub kubelet_config_dir: Option<String>,
    /// The kube-apiserver's flags (static Pod manifest or plain text), instead of its
    /// command line.
    pub apiserver_flags_file: Option<String>,
    /// The audit policy file, instead of the kube-apiserver's --audit-policy-file (it is
    /// also where --enforce writes the rendered policy).
    pub audit_policy_file: Option<String>,
    /// The agent's cluster: only processes of this cluster are observed.
    pub cluster_ca: ClusterCa,
    /// The node's IP (the agent's --host-ip): where the kube-apiserver is asked for its
    /// version when it listens on every address (see [`super::version::address`]).
    pub host_ip: Option<String>,
}

/// The kubelet as found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KubeletTarget {
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// The latest instant the process can have started, for PendingRestart.
    pub started_by: Option<SystemTime>,
    /// Config file (host path).
    pub config: Option<String>,
    /// Drop-in directory (host path).
    pub config_dir: Option<String>,
    /// Other processes of this cluster that run here too, if any.
    pub note: String,
}

/// The kube-apiserver as found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiServerTarget {
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// The latest instant the process can have started, for PendingRestart.
    pub started_by: Option<SystemTime>,
    /// --audit-policy-file (or the override).
    pub audit_policy: Option<String>,
    /// --encryption-provider-config.
    pub encryption_config: Option<String>,
    /// --authorization-config.
    pub authorization_config: Option<String>,
    /// --authentication-config.
    pub authentication_config: Option<String>,
    /// Other processes of this cluster that run here too, if any.
    pub note: String,
}

/// A kube-controller-manager, kube-scheduler or etcd as found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComponentTarget {
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// The latest instant the process can have started, for PendingRestart.
    pub started_by: Option<SystemTime>,
    /// Its config file (kube-scheduler --config, etcd --config-file), as a host path.
    pub config: Option<String>,
    /// The effective user and group it runs as, if /proc says.
    pub owner: Option<(u32, u32)>,
    /// Other processes of this cluster that run here too, if any.
    pub note: String,
}

/// What runs on the node and where its files are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Targets {
    /// The kubelet.
    pub kubelet: Found<KubeletTarget>,
    /// The kube-apiserver.
    pub api_server: Found<ApiServerTarget>,
    /// The kube-controller-manager.
    pub controller_manager: Found<ComponentTarget>,
    /// The kube-scheduler.
    pub scheduler: Found<ComponentTarget>,
    /// etcd.
    pub etcd: Found<ComponentTarget>,
    /// Where the audit policy is (the override, else the kube-apiserver's flag).
    pub audit_policy_path: Option<String>,
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_owned)
}

/// Finds the processes and the paths their flags (or the overrides) name.
pub fn discover(host: &Host, options: &HostOptions) -> Targets {
    let kubelet_files_given =
        options.kubelet_config.is_some() || options.kubelet_config_dir.is_some();
    let kubelets = host.find_processes(&["kubelet"]).map(|all| {
        ours_only(all, "kubelet", |process| {
            kubelet_is_ours(host, process, &options.cluster_ca)
        })
    });
    let kubelet = match kubelets {
        Ok(Some((process, note))) => Found::Found(KubeletTarget {
            note,
            ..kubelet_target(process, options)
        }),
        // Files given explicitly: observe them even without a (visible) process.
        _ if kubelet_files_given => Found::Found(KubeletTarget {
            config: options.kubelet_config.clone(),
            config_dir: options.kubelet_config_dir.clone(),
            ..KubeletTarget::default()
        }),
        Ok(None) => Found::NotFound,
        Err(err) => Found::Error(err.to_string()),
    };

    let process = host.find_processes(&["kube-apiserver"]).map(|all| {
        ours_only(all, "kube-apiserver", |process| {
            api_server_is_ours(host, process, &options.cluster_ca)
        })
    });
    let api_server = match (&options.apiserver_flags_file, process) {
        (Some(file), process) => match host
            .read_text(file)
            .map_err(|e| e.to_string())
            .and_then(|text| apiserver_args_from_file(&text).map_err(|e| format!("{file}: {e}")))
        {
            Ok(args) => Found::Found(api_server_target(
                args,
                process.ok().flatten().and_then(|(p, _)| p.started_by),
                options,
            )),
            Err(message) => Found::Error(format!("--apiserver-flags-file {message}")),
        },
        (None, Ok(Some((process, note)))) => Found::Found(ApiServerTarget {
            note,
            ..api_server_target(process.args, process.started_by, options)
        }),
        (None, Ok(None)) => Found::NotFound,
        (None, Err(err)) => Found::Error(err.to_string()),
    };
    let audit_policy_path = match &api_server {
        Found::Found(target) => target.audit_policy.clone(),
        _ => options.audit_policy_file.clone(),
    };
    let controller_manager = find_component(host, "kube-controller-manager", "", |process| {
        kubeconfig_is_ours(
            host,
            &component_kubeconfig(host, &process.args),
            &options.cluster_ca,
        )
    });
    let scheduler = find_component(host, "kube-scheduler", "config", |process| {
        kubeconfig_is_ours(
            host,
            &component_kubeconfig(host, &process.args),
            &options.cluster_ca,
        )
    });
    // etcd knows nothing of the cluster CA: it is ours when its serving certificate chains
    // to the CA our kube-apiserver trusts etcd with (--etcd-cafile).
    let etcd_ca = match &api_server {
        Found::Found(target) => ProcessFlags::parse(&target.args)
            .get("etcd-cafile")
            .and_then(|path| host.read_text(path).ok())
            .and_then(|pem| ClusterCa::from_pem(&pem)),
        _ => None,
    };
    let etcd = find_component(host, "etcd", "config-file", |process| {
        if !options.cluster_ca.is_known() {
            return true;
        }
        let Some(ca) = &etcd_ca else {
            return false;
        };
        etcd_serving_cert(host, process)
            .and_then(|path| host.read_text(&path).ok())
            .is_some_and(|pem| ca.issued(&pem))
    });
    Targets {
        kubelet,
        api_server,
        controller_manager,
        scheduler,
        etcd,
        audit_policy_path,
    }
}

/// The oldest process named `name` of this cluster, with the file its `config_flag` names.
fn find_component(
    host: &Host,
    name: &str,
    config_flag: &str,
    is_ours: impl Fn(&Process) -> bool,
) -> Found<ComponentTarget> {
    match host
        .find_processes(&[name])
        .map(|all| ours_only(all, name, is_ours))
    {
        Ok(Some((process, note))) => {
            let config = if config_flag.is_empty() {
                None
            } else {
                non_empty(ProcessFlags::parse(&process.args).get(config_flag))
            };
            Found::Found(ComponentTarget {
                config,
                owner: host.process_owner(process.pid),
                started_by: process.started_by,
                args: process.args,
                note,
            })
        }
        Ok(None) => Found::NotFound,
        Err(err) => Found::Error(err.to_string()),
    }
}

/// The kubeconfig a kube-controller-manager or kube-scheduler talks to the API server with:
/// --kubeconfig; for a kube-scheduler with --config, that file's clientConnection.kubeconfig
/// (the scheduler then ignores its deprecated --kubeconfig flag).
fn component_kubeconfig(host: &Host, args: &[String]) -> Option<String> {
    let flags = ProcessFlags::parse(args);
    match non_empty(flags.get("config")) {
        Some(config) => {
            let text = host.read_text(&config).ok()?;
            let doc: Value = serde_saphyr::from_str(&text).ok()?;
            non_empty(doc.pointer("/clientConnection/kubeconfig")?.as_str())
        }
        None => non_empty(flags.get("kubeconfig")),
    }
}

/// etcd's client serving certificate: --cert-file, or the one in its --config-file.
fn etcd_serving_cert(host: &Host, process: &Process) -> Option<String> {
    let flags = ProcessFlags::parse(&process.args);
    let config_path = non_empty(flags.get("config-file"));
    let config_text = match &config_path {
        Some(path) => Some(host.read_text(path).ok()?),
        None => None,
    };
    let settings =
        etcd_settings(&flags, config_path.as_deref().zip(config_text.as_deref())).ok()?;
    settings
        .into_iter()
        .find(|s| s.name == "cert-file")
        .and_then(|s| non_empty(Some(&s.value)))
}

/// The first (oldest) process of this cluster among `all`, with a note naming the others
/// of this cluster when there are several (an upgrade running two versions side by side);
/// processes of other clusters are left out (logged).
fn ours_only(
    all: Vec<Process>,
    what: &str,
    is_ours: impl Fn(&Process) -> bool,
) -> Option<(Process, String)> {
    let (ours, others): (Vec<Process>, Vec<Process>) = all.into_iter().partition(|p| is_ours(p));
    if !others.is_empty() {
        let pids: Vec<u32> = others.iter().map(|p| p.pid).collect();
        tracing::debug!(
            ?pids,
            "{what} processes of another cluster on this host: not observed"
        );
    }
    let mut ours = ours.into_iter();
    let first = ours.next()?;
    let rest: Vec<String> = ours.map(|p| p.pid.to_string()).collect();
    let note = if rest.is_empty() {
        String::new()
    } else {
        format!(
            "{} {what} processes of this cluster run on this node; observed PID {} (the oldest), not PID {}",
            rest.len() + 1,
            first.pid,
            rest.join(", ")
        )
    };
    Some((first, note))
}

/// A kube-apiserver is ours when its serving certificate (--tls-cert-file, else the one it
/// generates in --cert-dir) chains to our cluster's CA.
fn api_server_is_ours(host: &Host, process: &Process, ca: &ClusterCa) -> bool {
    if !ca.is_known() {
        return true;
    }
    let cert = serving_cert_path(&ProcessFlags::parse(&process.args));
    host.read_text(&cert).is_ok_and(|pem| ca.issued(&pem))
}

/// A kubelet is ours when the kubeconfig it talks to the API server with (--kubeconfig)
/// names our cluster's CA.
fn kubelet_is_ours(host: &Host, process: &Process, ca: &ClusterCa) -> bool {
    let flags = ProcessFlags::parse(&process.args);
    kubeconfig_is_ours(host, &non_empty(flags.get("kubeconfig")), ca)
}

/// Whether a kubeconfig names our cluster's CA (always, when that CA is unknown).
fn kubeconfig_is_ours(host: &Host, kubeconfig: &Option<String>, ca: &ClusterCa) -> bool {
    if !ca.is_known() {
        return true;
    }
    let Some(path) = kubeconfig.clone() else {
        return false;
    };
    let Some(kubeconfig) = host
        .read_text(&path)
        .ok()
        .and_then(|text| serde_saphyr::from_str::<Value>(&text).ok())
    else {
        return false;
    };
    let clusters = kubeconfig
        .get("clusters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    clusters
        .iter()
        .filter_map(|c| c.get("cluster"))
        .any(|cluster| {
            let inline = cluster
                .get("certificate-authority-data")
                .and_then(Value::as_str)
                .and_then(|data| {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.decode(data).ok()
                })
                .and_then(|der_or_pem| String::from_utf8(der_or_pem).ok());
            let file = cluster
                .get("certificate-authority")
                .and_then(Value::as_str)
                .and_then(|file| host.read_text(file).ok());
            inline.or(file).is_some_and(|pem| ca.shared_by(&pem))
        })
}

fn kubelet_target(process: Process, options: &HostOptions) -> KubeletTarget {
    let flags = ProcessFlags::parse(&process.args);
    KubeletTarget {
        config: options
            .kubelet_config
            .clone()
            .or_else(|| non_empty(flags.get("config"))),
        config_dir: options
            .kubelet_config_dir
            .clone()
            .or_else(|| non_empty(flags.get("config-dir"))),
        started_by: process.started_by,
        args: process.args,
        note: String::new(),
    }
}

fn api_server_target(
    args: Vec<String>,
    started_by: Option<SystemTime>,
    options: &HostOptions,
) -> ApiServerTarget {
    let flags = ProcessFlags::parse(&args);
    ApiServerTarget {
        audit_policy: options
            .audit_policy_file
            .clone()
            .or_else(|| non_empty(flags.get("audit-policy-file"))),
        encryption_config: non_empty(flags.get("encryption-provider-config")),
        authorization_config: non_empty(flags.get("authorization-config")),
        authentication_config: non_empty(flags.get("authentication-config")),
        args,
        started_by,
        note: String::new(),
    }
}

/// Reads one host file for a process that started by `started_by`.
fn source_file(host: &Host, path: &str, started_by: Option<SystemTime>) -> SourceFile {
    SourceFile {
        path: path.to_owned(),
        text: host.read_text(path).map_err(|e| e.to_string()),
        changed_after_start: changed_after(host, path, started_by),
    }
}

/// Whether a file was modified after the process started (so the process, which reads it
/// only at start, may not use its content yet). Unknown times count as not changed.
fn changed_after(host: &Host, path: &str, started_by: Option<SystemTime>) -> bool {
    match (host.mtime(path), started_by) {
        (Some(modified), Some(started_by)) => modified > started_by,
        _ => false,
    }
}

/// Reads every file the targets point at.
pub fn read_sources(host: &Host, node_name: &str, targets: &Targets) -> NodeSources {
    let kubelet = match &targets.kubelet {
        Found::NotFound => Found::NotFound,
        Found::Error(message) => Found::Error(message.clone()),
        Found::Found(target) => Found::Found(KubeletSources {
            args: target.args.clone(),
            config: target
                .config
                .as_deref()
                .map(|path| source_file(host, path, target.started_by)),
            config_dir: target.config_dir.clone(),
            config_dir_changed_after_start: match (&target.config_dir, target.started_by) {
                (Some(dir), Some(started_by)) => host
                    .latest_dir_change(dir)
                    .is_some_and(|at| at > started_by),
                _ => false,
            },
            drop_ins: match &target.config_dir {
                None => Ok(Vec::new()),
                Some(dir) => host
                    .list_drop_ins(dir)
                    .map_err(|e| e.to_string())
                    .map(|files| {
                        files
                            .into_iter()
                            .map(|(relative, path)| SourceFile {
                                path: relative,
                                ..source_file(host, &path, target.started_by)
                            })
                            .collect()
                    }),
            },
            note: target.note.clone(),
        }),
    };
    let api_server = match &targets.api_server {
        Found::NotFound => Found::NotFound,
        Found::Error(message) => Found::Error(message.clone()),
        Found::Found(target) => {
            let read = |path: &Option<String>| {
                path.as_deref()
                    .map(|path| source_file(host, path, target.started_by))
            };
            Found::Found(ApiServerSources {
                args: target.args.clone(),
                audit_policy: read(&target.audit_policy),
                encryption_config: read(&target.encryption_config),
                authorization_config: read(&target.authorization_config),
                authentication_config: read(&target.authentication_config),
                note: target.note.clone(),
            })
        }
    };
    let component = |found: &Found<ComponentTarget>| match found {
        Found::NotFound => Found::NotFound,
        Found::Error(message) => Found::Error(message.clone()),
        Found::Found(target) => Found::Found(ComponentSources {
            args: target.args.clone(),
            config: target
                .config
                .as_deref()
                .map(|path| source_file(host, path, target.started_by)),
            note: target.note.clone(),
        }),
    };
    let etcd = match component(&targets.etcd) {
        Found::Found(sources) => Found::Found(EtcdSources {
            owner: match &targets.etcd {
                Found::Found(target) => target.owner,
                _ => None,
            },
            ..etcd_sources(host, sources, &targets.api_server)
        }),
        Found::NotFound => Found::NotFound,
        Found::Error(message) => Found::Error(message),
    };
    NodeSources {
        node_name: node_name.to_owned(),
        kubelet,
        api_server,
        controller_manager: component(&targets.controller_manager),
        scheduler: component(&targets.scheduler),
        etcd,
        files: stat_named_files(host, targets),
    }
}

/// The kubelet's client CA file: --client-ca-file, else authentication.x509.clientCAFile of
/// its merged configuration (None when that cannot be read: its checks then see no file).
fn kubelet_client_ca(flags: &ProcessFlags, effective: Option<&EffectiveConfig>) -> Option<String> {
    if let Some(path) = non_empty(flags.get("client-ca-file")) {
        return Some(path);
    }
    non_empty(
        effective?
            .config
            .pointer("/authentication/x509/clientCAFile")
            .and_then(Value::as_str),
    )
}

/// The kubelet's merged configuration (None when it cannot be read: the kubelet's
/// observation then says why).
fn kubelet_effective(
    host: &Host,
    kubelet: &KubeletTarget,
    flags: &ProcessFlags,
) -> Option<EffectiveConfig> {
    let config = match &kubelet.config {
        Some(path) => Some(host.read_text(path).ok()?),
        None => None,
    };
    let drop_ins: Vec<(String, String)> = match &kubelet.config_dir {
        Some(dir) => host
            .list_drop_ins(dir)
            .ok()?
            .into_iter()
            .filter_map(|(relative, path)| Some((relative, host.read_text(&path).ok()?)))
            .collect(),
        None => Vec::new(),
    };
    effective_config(config.as_deref(), &drop_ins, flags).ok()
}

/// The control-plane static Pod manifests in the kubelet's staticPodPath (CIS 1.1.1-1.1.8),
/// named by the component they run; a path that cannot be listed is one unreadable entry.
fn static_pod_manifests(
    host: &Host,
    static_pod_path: &str,
    named: &mut Vec<NamedFile>,
    unlisted: &mut Vec<StatedFile>,
) {
    match host.list_static_pod_manifests(static_pod_path) {
        Ok(paths) => named.extend(paths.into_iter().filter_map(|path| {
            // An unreadable manifest is still named by its file name, as kubeadm names them.
            let text = host.read_text(&path).unwrap_or_default();
            let component = manifest_component(&path, &text)?;
            Some(NamedFile {
                role: format!("{STATIC_POD_ROLE_PREFIX}{component}"),
                class: FileClass::StaticPodManifest,
                path,
            })
        })),
        Err(err) => unlisted.push(StatedFile {
            file: NamedFile {
                role: STATIC_POD_PATH_ROLE.to_owned(),
                class: FileClass::StaticPodManifest,
                path: static_pod_path.to_owned(),
            },
            stat: Err(err.to_string()),
        }),
    }
}

/// Mode and owner of every file the control-plane processes' flags (or config files) name.
fn stat_named_files(host: &Host, targets: &Targets) -> Vec<StatedFile> {
    let mut named: Vec<NamedFile> = Vec::new();
    let mut unlisted: Vec<StatedFile> = Vec::new();
    if let Found::Found(kubelet) = &targets.kubelet {
        let flags = ProcessFlags::parse(&kubelet.args);
        let effective = kubelet_effective(host, kubelet, &flags);
        named.extend(kubelet_files(
            flags.get("kubeconfig"),
            kubelet.config.as_deref(),
            kubelet_client_ca(&flags, effective.as_ref()).as_deref(),
        ));
        if let Some(effective) = &effective {
            let static_pod_path = values_of(&effective.config, &flags).static_pod_path;
            if !static_pod_path.is_empty() {
                static_pod_manifests(host, &static_pod_path, &mut named, &mut unlisted);
            }
        }
    }
    if let Found::Found(api) = &targets.api_server {
        named.extend(named_files_of_flags(
            "kube-apiserver",
            &ProcessFlags::parse(&api.args),
        ));
    }
    if let Found::Found(cm) = &targets.controller_manager {
        named.extend(named_files_of_flags(
            "kube-controller-manager",
            &ProcessFlags::parse(&cm.args),
        ));
    }
    if let Found::Found(scheduler) = &targets.scheduler {
        let kubeconfig = component_kubeconfig(host, &scheduler.args);
        named.extend(named_files("kube-scheduler", |flag| {
            (flag == "kubeconfig")
                .then_some(kubeconfig.as_deref())
                .flatten()
        }));
    }
    if let Found::Found(etcd) = &targets.etcd {
        let flags = ProcessFlags::parse(&etcd.args);
        let config = etcd
            .config
            .as_deref()
            .and_then(|path| Some((path.to_owned(), host.read_text(path).ok()?)));
        let config_ref = config.as_ref().map(|(p, t)| (p.as_str(), t.as_str()));
        let settings = etcd_settings(&flags, config_ref).unwrap_or_default();
        // With --config-file etcd reads its data-dir there too.
        let data_dir = match &config {
            Some((_, text)) => serde_saphyr::from_str::<Value>(text)
                .ok()
                .and_then(|doc| doc.get("data-dir")?.as_str().map(str::to_owned)),
            None => flags.get("data-dir").map(str::to_owned),
        };
        named.extend(named_files("etcd", |flag| {
            if flag == "data-dir" {
                data_dir.as_deref()
            } else {
                settings
                    .iter()
                    .find(|s| s.name == flag)
                    .map(|s| s.value.as_str())
            }
        }));
    }
    named.sort();
    named.dedup();
    named
        .into_iter()
        .map(|file| StatedFile {
            stat: host.stat(&file.path).map_err(|e| e.to_string()),
            file,
        })
        .chain(unlisted)
        .collect()
}

/// etcd's sources plus the two CA files CIS 2.7 compares: its client --trusted-ca-file and
/// the kube-apiserver's --client-ca-file (the Kubernetes CA).
fn etcd_sources(
    host: &Host,
    component: ComponentSources,
    api_server: &Found<ApiServerTarget>,
) -> EtcdSources {
    let flags = ProcessFlags::parse(&component.args);
    let config = component
        .config
        .as_ref()
        .and_then(|file| Some((file.path.as_str(), file.text.as_deref().ok()?)));
    let trusted_ca = etcd_settings(&flags, config)
        .ok()
        .and_then(|settings| settings.into_iter().find(|s| s.name == "trusted-ca-file"))
        .and_then(|s| non_empty(Some(&s.value)))
        .map(|path| source_file(host, &path, None));
    let kubernetes_ca = match api_server {
        Found::Found(target) => non_empty(ProcessFlags::parse(&target.args).get("client-ca-file"))
            .map(|path| source_file(host, &path, None)),
        _ => None,
    };
    EtcdSources {
        component,
        trusted_ca,
        kubernetes_ca,
        owner: None,
    }
}

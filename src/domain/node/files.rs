//! Mode and owner of the files the control-plane processes' flags name (CIS 1.1): which
//! files a process's flags name ([`named_files`]), and the checks of their observed mode and
//! owner against CIS's limits. Paths come from the running processes, never from kubeadm's
//! default locations.

use crate::api::{
    DriftEntry, DriftReason, FileClass, FileModeObservation, FileSettings, NodeObservations,
    ObservationState,
};
use crate::domain::checks::CheckInfo;
use crate::domain::node::findings::node_drift;
use crate::domain::node::flags::ProcessFlags;

/// Check IDs of the file checks.
pub mod check_ids {
    pub const KUBECONFIG_PERMISSIONS: &str = "files.kubeconfig-permissions";
    pub const KUBECONFIG_OWNERSHIP: &str = "files.kubeconfig-ownership";
    pub const CERTIFICATE_PERMISSIONS: &str = "files.certificate-permissions";
    pub const PRIVATE_KEY_PERMISSIONS: &str = "files.private-key-permissions";
    pub const PKI_OWNERSHIP: &str = "files.pki-ownership";
    pub const ETCD_DATA_DIR_PERMISSIONS: &str = "files.etcd-data-dir-permissions";
    pub const ETCD_DATA_DIR_OWNERSHIP: &str = "files.etcd-data-dir-ownership";
    pub const KUBELET_KUBECONFIG_PERMISSIONS: &str = "files.kubelet-kubeconfig-permissions";
    pub const KUBELET_KUBECONFIG_OWNERSHIP: &str = "files.kubelet-kubeconfig-ownership";
    pub const KUBELET_CLIENT_CA_PERMISSIONS: &str = "files.kubelet-client-ca-permissions";
    pub const KUBELET_CLIENT_CA_OWNERSHIP: &str = "files.kubelet-client-ca-ownership";
    pub const KUBELET_CONFIG_PERMISSIONS: &str = "files.kubelet-config-permissions";
    pub const KUBELET_CONFIG_OWNERSHIP: &str = "files.kubelet-config-ownership";
    pub const STATIC_POD_MANIFEST_PERMISSIONS: &str = "files.static-pod-manifest-permissions";
    pub const STATIC_POD_MANIFEST_OWNERSHIP: &str = "files.static-pod-manifest-ownership";
}

/// The file checks, for the registry.
pub const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        id: check_ids::KUBECONFIG_PERMISSIONS,
        description: "The kube-controller-manager's and kube-scheduler's kubeconfigs are 600 or stricter",
        cis: &["1.1.15", "1.1.17"],
    },
    CheckInfo {
        id: check_ids::KUBECONFIG_OWNERSHIP,
        description: "The kube-controller-manager's and kube-scheduler's kubeconfigs are owned by root:root",
        cis: &["1.1.16", "1.1.18"],
    },
    CheckInfo {
        id: check_ids::CERTIFICATE_PERMISSIONS,
        description: "Certificates the control-plane processes' flags name are 644 or stricter",
        cis: &["1.1.20"],
    },
    CheckInfo {
        id: check_ids::PRIVATE_KEY_PERMISSIONS,
        description: "Private keys the control-plane processes' flags name are 600 or stricter",
        cis: &["1.1.21"],
    },
    CheckInfo {
        id: check_ids::PKI_OWNERSHIP,
        description: "Certificates and private keys the control-plane processes' flags name are owned by root:root",
        cis: &["1.1.19"],
    },
    CheckInfo {
        id: check_ids::ETCD_DATA_DIR_PERMISSIONS,
        description: "etcd's --data-dir is 700 or stricter",
        cis: &["1.1.11"],
    },
    CheckInfo {
        id: check_ids::ETCD_DATA_DIR_OWNERSHIP,
        description: "etcd's --data-dir is owned by the user and group etcd runs as",
        cis: &["1.1.12"],
    },
    CheckInfo {
        id: check_ids::KUBELET_KUBECONFIG_PERMISSIONS,
        description: "The kubelet's --kubeconfig is 600 or stricter",
        cis: &["4.1.5"],
    },
    CheckInfo {
        id: check_ids::KUBELET_KUBECONFIG_OWNERSHIP,
        description: "The kubelet's --kubeconfig is owned by root:root",
        cis: &["4.1.6"],
    },
    CheckInfo {
        id: check_ids::KUBELET_CLIENT_CA_PERMISSIONS,
        description: "The kubelet's client CA file (authentication.x509.clientCAFile) is 644 or stricter",
        cis: &["4.1.7"],
    },
    CheckInfo {
        id: check_ids::KUBELET_CLIENT_CA_OWNERSHIP,
        description: "The kubelet's client CA file is owned by root:root",
        cis: &["4.1.8"],
    },
    CheckInfo {
        id: check_ids::KUBELET_CONFIG_PERMISSIONS,
        description: "The kubelet's --config file is 600 or stricter",
        cis: &["4.1.9"],
    },
    CheckInfo {
        id: check_ids::KUBELET_CONFIG_OWNERSHIP,
        description: "The kubelet's --config file is owned by root:root",
        cis: &["4.1.10"],
    },
    CheckInfo {
        id: check_ids::STATIC_POD_MANIFEST_PERMISSIONS,
        description: "The static Pod manifests of the kube-apiserver, kube-controller-manager, kube-scheduler and etcd in the kubelet's staticPodPath are 600 or stricter",
        cis: &["1.1.1", "1.1.3", "1.1.5", "1.1.7"],
    },
    CheckInfo {
        id: check_ids::STATIC_POD_MANIFEST_OWNERSHIP,
        description: "The static Pod manifests of the kube-apiserver, kube-controller-manager, kube-scheduler and etcd are owned by root:root",
        cis: &["1.1.2", "1.1.4", "1.1.6", "1.1.8"],
    },
];

/// The control-plane components whose static Pod manifests CIS 1.1.1-1.1.8 cover.
pub const STATIC_POD_COMPONENTS: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
];

/// Role of a static Pod manifest: "static pod <component>".
pub const STATIC_POD_ROLE_PREFIX: &str = "static pod ";
/// Role of the kubelet's staticPodPath when it cannot be listed.
pub const STATIC_POD_PATH_ROLE: &str = "kubelet staticPodPath";

/// Which control-plane component a static Pod manifest runs: the first container whose
/// command (its program's base name), else image (its name without registry, tag or
/// digest), is one of [`STATIC_POD_COMPONENTS`]. Only a manifest whose containers cannot be
/// read is named by its file name, as kubeadm writes them (`kube-apiserver.yaml`). None:
/// the manifest runs something else.
pub fn manifest_component(path: &str, text: &str) -> Option<&'static str> {
    let known = |word: &str| STATIC_POD_COMPONENTS.iter().copied().find(|c| *c == word);
    let doc: Option<serde_json::Value> = serde_saphyr::from_str(text).ok();
    let containers = doc
        .as_ref()
        .and_then(|d| d.pointer("/spec/containers"))
        .and_then(serde_json::Value::as_array);
    let containers = containers.filter(|c| !c.is_empty());
    let read = containers.is_some();
    for container in containers.into_iter().flatten() {
        let program = container
            .get("command")
            .and_then(serde_json::Value::as_array)
            .and_then(|c| c.first())
            .and_then(serde_json::Value::as_str)
            .map(|c| c.rsplit('/').next().unwrap_or(c));
        if let Some(found) = program.and_then(known) {
            return Some(found);
        }
        let image = container
            .get("image")
            .and_then(serde_json::Value::as_str)
            .map(|image| {
                let last = image.rsplit('/').next().unwrap_or(image);
                last.split(['@', ':']).next().unwrap_or(last)
            });
        if let Some(found) = image.and_then(known) {
            return Some(found);
        }
    }
    if read {
        return None;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    known(name.split('.').next().unwrap_or(name))
}

/// The kubelet's files and what they are, by the role `named_files` gives them.
pub const KUBELET_KUBECONFIG_ROLE: &str = "kubelet --kubeconfig";
/// The kubelet's config file.
pub const KUBELET_CONFIG_ROLE: &str = "kubelet --config";
/// The kubelet's client CA file (`--client-ca-file`, else the configuration's
/// authentication.x509.clientCAFile).
pub const KUBELET_CLIENT_CA_ROLE: &str = "kubelet clientCAFile";

/// The kubelet's files: its --kubeconfig, --config and client CA file, when it has them.
pub fn kubelet_files(
    kubeconfig: Option<&str>,
    config: Option<&str>,
    client_ca: Option<&str>,
) -> Vec<NamedFile> {
    [
        (KUBELET_KUBECONFIG_ROLE, FileClass::Kubeconfig, kubeconfig),
        (KUBELET_CONFIG_ROLE, FileClass::KubeletConfig, config),
        (KUBELET_CLIENT_CA_ROLE, FileClass::Certificate, client_ca),
    ]
    .into_iter()
    .filter_map(|(role, class, path)| {
        Some(NamedFile {
            role: role.to_owned(),
            class,
            path: path.filter(|p| !p.is_empty())?.to_owned(),
        })
    })
    .collect()
}

/// IDs of the kubelet file checks `settings` asks for.
pub fn requested_kubelet_checks(settings: &FileSettings) -> Vec<&'static str> {
    let mut checks = Vec::new();
    if settings.permissions {
        checks.extend([
            check_ids::KUBELET_KUBECONFIG_PERMISSIONS,
            check_ids::KUBELET_CLIENT_CA_PERMISSIONS,
            check_ids::KUBELET_CONFIG_PERMISSIONS,
        ]);
    }
    if settings.ownership {
        checks.extend([
            check_ids::KUBELET_KUBECONFIG_OWNERSHIP,
            check_ids::KUBELET_CLIENT_CA_OWNERSHIP,
            check_ids::KUBELET_CONFIG_OWNERSHIP,
        ]);
    }
    checks
}

/// The requested kubelet file checks on one node. A kubelet not observed makes each
/// `Unknown`; a file it does not use (no --config, no client CA) is not checked.
pub fn evaluate_kubelet_files(
    node: &str,
    report: &NodeObservations,
    settings: &FileSettings,
) -> Vec<DriftEntry> {
    let checks = [
        (
            check_ids::KUBELET_KUBECONFIG_PERMISSIONS,
            KUBELET_KUBECONFIG_ROLE,
            Aspect::Mode,
        ),
        (
            check_ids::KUBELET_KUBECONFIG_OWNERSHIP,
            KUBELET_KUBECONFIG_ROLE,
            Aspect::Owner,
        ),
        (
            check_ids::KUBELET_CLIENT_CA_PERMISSIONS,
            KUBELET_CLIENT_CA_ROLE,
            Aspect::Mode,
        ),
        (
            check_ids::KUBELET_CLIENT_CA_OWNERSHIP,
            KUBELET_CLIENT_CA_ROLE,
            Aspect::Owner,
        ),
        (
            check_ids::KUBELET_CONFIG_PERMISSIONS,
            KUBELET_CONFIG_ROLE,
            Aspect::Mode,
        ),
        (
            check_ids::KUBELET_CONFIG_OWNERSHIP,
            KUBELET_CONFIG_ROLE,
            Aspect::Owner,
        ),
    ];
    let requested = requested_kubelet_checks(settings);
    let kubelet = &report.kubelet.header;
    checks
        .into_iter()
        .filter(|(id, ..)| requested.contains(id))
        .filter_map(|(id, role, aspect)| {
            if kubelet.state != ObservationState::Observed {
                return Some(node_drift(
                    node,
                    id,
                    DriftReason::Unknown,
                    format!(
                        "the kubelet was not observed, so its files are unknown: {}",
                        kubelet.message
                    ),
                ));
            }
            let files: Vec<&FileModeObservation> =
                report.files.iter().filter(|f| f.role == role).collect();
            if files.is_empty() {
                // The kubelet uses no such file.
                return None;
            }
            judge(node, id, &files, aspect, &[])
        })
        .collect()
}

/// The flags that name files, per process, and what those files are.
const FILE_FLAGS: &[(&str, &str, FileClass)] = &[
    ("kube-apiserver", "client-ca-file", FileClass::Certificate),
    ("kube-apiserver", "tls-cert-file", FileClass::Certificate),
    (
        "kube-apiserver",
        "tls-private-key-file",
        FileClass::PrivateKey,
    ),
    ("kube-apiserver", "etcd-cafile", FileClass::Certificate),
    ("kube-apiserver", "etcd-certfile", FileClass::Certificate),
    ("kube-apiserver", "etcd-keyfile", FileClass::PrivateKey),
    (
        "kube-apiserver",
        "kubelet-client-certificate",
        FileClass::Certificate,
    ),
    (
        "kube-apiserver",
        "kubelet-client-key",
        FileClass::PrivateKey,
    ),
    (
        "kube-apiserver",
        "kubelet-certificate-authority",
        FileClass::Certificate,
    ),
    // Public keys that verify service account tokens.
    (
        "kube-apiserver",
        "service-account-key-file",
        FileClass::Certificate,
    ),
    (
        "kube-apiserver",
        "service-account-signing-key-file",
        FileClass::PrivateKey,
    ),
    (
        "kube-apiserver",
        "requestheader-client-ca-file",
        FileClass::Certificate,
    ),
    (
        "kube-apiserver",
        "proxy-client-cert-file",
        FileClass::Certificate,
    ),
    (
        "kube-apiserver",
        "proxy-client-key-file",
        FileClass::PrivateKey,
    ),
    (
        "kube-controller-manager",
        "kubeconfig",
        FileClass::Kubeconfig,
    ),
    (
        "kube-controller-manager",
        "root-ca-file",
        FileClass::Certificate,
    ),
    (
        "kube-controller-manager",
        "service-account-private-key-file",
        FileClass::PrivateKey,
    ),
    (
        "kube-controller-manager",
        "cluster-signing-cert-file",
        FileClass::Certificate,
    ),
    (
        "kube-controller-manager",
        "cluster-signing-key-file",
        FileClass::PrivateKey,
    ),
    ("kube-scheduler", "kubeconfig", FileClass::Kubeconfig),
    ("etcd", "cert-file", FileClass::Certificate),
    ("etcd", "key-file", FileClass::PrivateKey),
    ("etcd", "trusted-ca-file", FileClass::Certificate),
    ("etcd", "peer-cert-file", FileClass::Certificate),
    ("etcd", "peer-key-file", FileClass::PrivateKey),
    ("etcd", "peer-trusted-ca-file", FileClass::Certificate),
    ("etcd", "data-dir", FileClass::EtcdDataDir),
];

/// A file a process's flag names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NamedFile {
    /// "<process> --<flag>".
    pub role: String,
    /// What it is.
    pub class: FileClass,
    /// Its host path.
    pub path: String,
}

/// The files `component`'s settings name (`value_of` gives a flag's effective value: from
/// the command line, or from the config file the component reads instead).
pub fn named_files<'a>(
    component: &str,
    value_of: impl Fn(&str) -> Option<&'a str>,
) -> Vec<NamedFile> {
    FILE_FLAGS
        .iter()
        .filter(|(c, _, _)| *c == component)
        .filter_map(|(c, flag, class)| {
            let path = value_of(flag).filter(|p| !p.is_empty())?;
            Some(NamedFile {
                role: format!("{c} --{flag}"),
                class: *class,
                path: path.to_owned(),
            })
        })
        .collect()
}

/// The files of a process whose flags are all on its command line.
pub fn named_files_of_flags(component: &str, flags: &ProcessFlags) -> Vec<NamedFile> {
    named_files(component, |flag| flags.get(flag))
}

/// The most permissive mode CIS allows for a class.
pub fn mode_limit(class: FileClass) -> u32 {
    match class {
        FileClass::Kubeconfig
        | FileClass::PrivateKey
        | FileClass::KubeletConfig
        | FileClass::StaticPodManifest => 0o600,
        FileClass::Certificate => 0o644,
        FileClass::EtcdDataDir => 0o700,
    }
}

/// IDs of the file checks `settings` asks for.
pub fn requested_checks(settings: &FileSettings) -> Vec<&'static str> {
    let mut checks = Vec::new();
    if settings.permissions {
        checks.extend([
            check_ids::KUBECONFIG_PERMISSIONS,
            check_ids::CERTIFICATE_PERMISSIONS,
            check_ids::PRIVATE_KEY_PERMISSIONS,
            check_ids::ETCD_DATA_DIR_PERMISSIONS,
            check_ids::STATIC_POD_MANIFEST_PERMISSIONS,
        ]);
    }
    if settings.ownership {
        checks.extend([
            check_ids::KUBECONFIG_OWNERSHIP,
            check_ids::PKI_OWNERSHIP,
            check_ids::ETCD_DATA_DIR_OWNERSHIP,
            check_ids::STATIC_POD_MANIFEST_OWNERSHIP,
        ]);
    }
    checks
}

/// What a check compares.
#[derive(Clone, Copy)]
enum Aspect {
    Mode,
    /// Owned by root:root.
    Owner,
    /// Owned by the user and group etcd runs as (unknown: None).
    EtcdOwner(Option<(u32, u32)>),
}

/// The requested file checks on one control-plane node.
pub fn evaluate_files(
    node: &str,
    report: &NodeObservations,
    settings: &FileSettings,
) -> Vec<DriftEntry> {
    let kubeconfig_owners = [&report.controller_manager.header, &report.scheduler.header];
    let etcd_owner = report.etcd.run_as_uid.zip(report.etcd.run_as_gid);
    let checks: [(&str, &[FileClass], Aspect, Vec<String>); 7] = [
        (
            check_ids::KUBECONFIG_PERMISSIONS,
            &[FileClass::Kubeconfig],
            Aspect::Mode,
            unobserved(
                &kubeconfig_owners,
                &["kube-controller-manager", "kube-scheduler"],
            ),
        ),
        (
            check_ids::KUBECONFIG_OWNERSHIP,
            &[FileClass::Kubeconfig],
            Aspect::Owner,
            unobserved(
                &kubeconfig_owners,
                &["kube-controller-manager", "kube-scheduler"],
            ),
        ),
        (
            check_ids::CERTIFICATE_PERMISSIONS,
            &[FileClass::Certificate],
            Aspect::Mode,
            Vec::new(),
        ),
        (
            check_ids::PRIVATE_KEY_PERMISSIONS,
            &[FileClass::PrivateKey],
            Aspect::Mode,
            Vec::new(),
        ),
        (
            check_ids::PKI_OWNERSHIP,
            &[FileClass::Certificate, FileClass::PrivateKey],
            Aspect::Owner,
            Vec::new(),
        ),
        (
            check_ids::ETCD_DATA_DIR_PERMISSIONS,
            &[FileClass::EtcdDataDir],
            Aspect::Mode,
            unobserved(&[&report.etcd.header], &["etcd"]),
        ),
        (
            check_ids::ETCD_DATA_DIR_OWNERSHIP,
            &[FileClass::EtcdDataDir],
            Aspect::EtcdOwner(etcd_owner),
            unobserved(&[&report.etcd.header], &["etcd"]),
        ),
    ];
    let requested = requested_checks(settings);
    let mut drift: Vec<DriftEntry> = checks
        .into_iter()
        .filter(|(id, ..)| requested.contains(id))
        .filter_map(|(id, classes, aspect, missing_processes)| {
            let files: Vec<&FileModeObservation> = report
                .files
                .iter()
                .filter(|f| classes.contains(&f.class) && !f.role.starts_with("kubelet "))
                .collect();
            judge(node, id, &files, aspect, &missing_processes)
        })
        .collect();
    drift.extend(evaluate_static_pod_manifests(node, report, &requested));
    drift
}

/// The requested static Pod manifest checks (CIS 1.1.1-1.1.8) on one control-plane node:
/// every manifest in the kubelet's staticPodPath that runs a kube-apiserver,
/// kube-controller-manager, kube-scheduler or etcd. Without a kubelet on the node no static
/// Pod runs, and a component without a manifest is not one: nothing to check. A kubelet
/// whose configuration cannot be read, or a staticPodPath that cannot be listed, is
/// `Unknown`.
fn evaluate_static_pod_manifests(
    node: &str,
    report: &NodeObservations,
    requested: &[&str],
) -> Vec<DriftEntry> {
    [
        (check_ids::STATIC_POD_MANIFEST_PERMISSIONS, Aspect::Mode),
        (check_ids::STATIC_POD_MANIFEST_OWNERSHIP, Aspect::Owner),
    ]
    .into_iter()
    .filter(|(id, _)| requested.contains(id))
    .filter_map(|(id, aspect)| {
        let kubelet = &report.kubelet.header;
        match kubelet.state {
            ObservationState::NotFound => None,
            ObservationState::Error => Some(node_drift(
                node,
                id,
                DriftReason::Unknown,
                format!(
                    "the kubelet's configuration could not be read, so its staticPodPath is unknown: {}",
                    kubelet.message
                ),
            )),
            ObservationState::Observed => {
                let files: Vec<&FileModeObservation> = report
                    .files
                    .iter()
                    .filter(|f| f.class == FileClass::StaticPodManifest)
                    .collect();
                if files.is_empty() {
                    return None;
                }
                judge(node, id, &files, aspect, &[])
            }
        }
    })
    .collect()
}

/// The processes among `names` whose observation is not Observed (their files are unknown).
fn unobserved(headers: &[&crate::api::Observation], names: &[&str]) -> Vec<String> {
    headers
        .iter()
        .zip(names)
        .filter(|(h, _)| h.state != ObservationState::Observed)
        .map(|(_, n)| (*n).to_owned())
        .collect()
}

fn judge(
    node: &str,
    id: &str,
    files: &[&FileModeObservation],
    aspect: Aspect,
    missing_processes: &[String],
) -> Option<DriftEntry> {
    let mut wrong = Vec::new();
    let mut unreadable = Vec::new();
    for file in files {
        if file.header.state != ObservationState::Observed {
            unreadable.push(format!(
                "{} ({}): {}",
                file.path, file.role, file.header.message
            ));
            continue;
        }
        match aspect {
            Aspect::Mode => match u32::from_str_radix(&file.mode, 8) {
                Ok(mode) if mode & !mode_limit(file.class) & 0o7777 != 0 => wrong.push(format!(
                    "{} ({}) is {}, want {:04o} or stricter",
                    file.path,
                    file.role,
                    file.mode,
                    mode_limit(file.class)
                )),
                Ok(_) => {}
                Err(_) => unreadable.push(format!(
                    "{} ({}): mode {:?} is not octal",
                    file.path, file.role, file.mode
                )),
            },
            Aspect::Owner => match (file.uid, file.gid) {
                (Some(0), Some(0)) => {}
                (Some(uid), Some(gid)) => wrong.push(format!(
                    "{} ({}) is owned by {uid}:{gid}, want root:root (0:0)",
                    file.path, file.role
                )),
                _ => unreadable.push(format!("{} ({}): owner unknown", file.path, file.role)),
            },
            Aspect::EtcdOwner(runs_as) => match (runs_as, file.uid, file.gid) {
                (Some(want), Some(uid), Some(gid)) if want == (uid, gid) => {}
                (Some((want_uid, want_gid)), Some(uid), Some(gid)) => wrong.push(format!(
                    "{} ({}) is owned by {uid}:{gid}, but etcd runs as {want_uid}:{want_gid}",
                    file.path, file.role
                )),
                (None, ..) => unreadable.push(format!(
                    "{} ({}): the user etcd runs as is unknown",
                    file.path, file.role
                )),
                _ => unreadable.push(format!("{} ({}): owner unknown", file.path, file.role)),
            },
        }
    }
    if !wrong.is_empty() {
        let mut message = wrong.join("; ");
        if !unreadable.is_empty() {
            message.push_str(&format!("; not observed: {}", unreadable.join("; ")));
        }
        return Some(node_drift(node, id, DriftReason::Violation, message));
    }
    if !unreadable.is_empty() || !missing_processes.is_empty() || files.is_empty() {
        let mut why = Vec::new();
        if !missing_processes.is_empty() {
            why.push(format!(
                "no {} observed on this node, so its files are unknown",
                missing_processes.join(" or ")
            ));
        }
        if !unreadable.is_empty() {
            why.push(format!("not observed: {}", unreadable.join("; ")));
        }
        if files.is_empty() && missing_processes.is_empty() {
            why.push("no such file is named by the processes observed".to_owned());
        }
        return Some(node_drift(node, id, DriftReason::Unknown, why.join("; ")));
    }
    None
}

//! One node's observations from files the user gives (`--node` with `--kubelet-config`,
//! `--apiserver-flags`, ...), for clusters where no agent runs: the same pure
//! `crate::agent::observe()` the agent uses, so the verdicts are the agent's.
//!
//! Files named on the command line must be readable (else exit 2). Files only named inside
//! the flags (the kubelet's `--config`, the kube-apiserver's `--audit-policy-file`, ...) are
//! read from this machine's filesystem when present; when not, the observation records why
//! and the checks that need it are Unknown, exactly as on a node.

use std::path::{Path, PathBuf};

use crate::agent::host::{Host, HostError, apiserver_args_from_file};
use crate::agent::observe::{ApiServerSources, Found, KubeletSources, NodeSources, SourceFile};
use crate::api::NodeReportSpec;
use crate::domain::node::flags::ProcessFlags;

/// The node file flags of `check`.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Node files (for a node without the kube-baseline agent)")]
pub struct NodeFileArgs {
    /// Name of a node whose kubelet and kube-apiserver files are given with the flags below;
    /// its labels come from a Node manifest of that name, if one is given (or, with --live,
    /// from the cluster).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,

    /// The kubelet's config file (its --config, e.g. /var/lib/kubelet/config.yaml).
    #[arg(long, value_name = "FILE", requires = "node")]
    pub kubelet_config: Option<PathBuf>,

    /// The kubelet's drop-in directory (its --config-dir); every *.conf file in it is
    /// merged in order, as the kubelet does.
    #[arg(long, value_name = "DIR", requires = "node")]
    pub kubelet_config_dir: Option<PathBuf>,

    /// The kubelet's command line (e.g. a copy of /proc/<pid>/cmdline, or one flag per
    /// line); flags override the config file, as on the node.
    #[arg(long, value_name = "FILE", requires = "node")]
    pub kubelet_flags: Option<PathBuf>,

    /// The kube-apiserver's static Pod manifest (/etc/kubernetes/manifests/kube-apiserver.yaml)
    /// or its command line as text.
    #[arg(long, value_name = "FILE", requires = "node")]
    pub apiserver_flags: Option<PathBuf>,

    /// The audit policy file, instead of the path in the kube-apiserver's
    /// --audit-policy-file.
    #[arg(long, value_name = "FILE", requires = "apiserver_flags")]
    pub audit_policy: Option<PathBuf>,

    /// The EncryptionConfiguration, instead of the path in the kube-apiserver's
    /// --encryption-provider-config.
    #[arg(long, value_name = "FILE", requires = "apiserver_flags")]
    pub encryption_config: Option<PathBuf>,

    /// The AuthorizationConfiguration, instead of the path in the kube-apiserver's
    /// --authorization-config.
    #[arg(long, value_name = "FILE", requires = "apiserver_flags")]
    pub authorization_config: Option<PathBuf>,

    /// The AuthenticationConfiguration, instead of the path in the kube-apiserver's
    /// --authentication-config.
    #[arg(long, value_name = "FILE", requires = "apiserver_flags")]
    pub authentication_config: Option<PathBuf>,
}

/// Why the `--node` files cannot be observed (each names the flag and file).
#[derive(Debug, thiserror::Error)]
pub enum NodeFileError {
    #[error(
        "--node {node}: give its files with --kubelet-config, --kubelet-config-dir, --kubelet-flags or --apiserver-flags"
    )]
    NoFiles { node: String },
    /// A file named on the command line could not be read.
    #[error("--{flag} {}: {source}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The --kubelet-config-dir (or a drop-in in it) could not be read.
    #[error("--kubelet-config-dir {dir}: {source}")]
    ConfigDir {
        dir: String,
        #[source]
        source: HostError,
    },
    /// The --apiserver-flags file holds no kube-apiserver command line.
    #[error("--apiserver-flags {}: {source}", path.display())]
    ApiServerFlags {
        path: PathBuf,
        #[source]
        source: HostError,
    },
}

impl NodeFileArgs {
    fn kubelet_given(&self) -> bool {
        self.kubelet_config.is_some()
            || self.kubelet_config_dir.is_some()
            || self.kubelet_flags.is_some()
    }
}

/// The observations of `--node`, or None when it is not given.
pub fn observe_files(args: &NodeFileArgs) -> Result<Option<NodeReportSpec>, NodeFileError> {
    let Some(node) = &args.node else {
        return Ok(None);
    };
    if !args.kubelet_given() && args.apiserver_flags.is_none() {
        return Err(NodeFileError::NoFiles { node: node.clone() });
    }
    let kubelet = if args.kubelet_given() {
        Found::Found(kubelet_sources(args)?)
    } else {
        Found::NotFound
    };
    let api_server = match &args.apiserver_flags {
        Some(file) => Found::Found(api_server_sources(file, args)?),
        None => Found::NotFound,
    };
    // `check --node` takes no kube-controller-manager, kube-scheduler or etcd files: their
    // checks are Unknown (not observed), never passing.
    let sources = NodeSources {
        node_name: node.clone(),
        kubelet,
        api_server,
        ..NodeSources::default()
    };
    Ok(Some(crate::agent::observe(&sources)))
}

fn read_given(flag: &'static str, path: &Path) -> Result<String, NodeFileError> {
    std::fs::read_to_string(path).map_err(|source| NodeFileError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}

/// A file the user named: must be readable.
fn given(flag: &'static str, path: &Path) -> Result<SourceFile, NodeFileError> {
    Ok(SourceFile::text(
        path.display().to_string(),
        read_given(flag, path)?,
    ))
}

/// A file named inside flags: read if possible, else recorded as unreadable.
fn named_in_flags(path: &str) -> SourceFile {
    SourceFile {
        path: path.to_owned(),
        text: Host::new("/")
            .read_text(&absolute(path))
            .map_err(|e| e.to_string()),
        changed_after_start: false,
    }
}

fn absolute(path: &str) -> String {
    std::path::absolute(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_owned())
}

/// Arguments of a command-line file: NUL-separated (/proc/<pid>/cmdline) or whitespace;
/// a leading program name is dropped.
fn command_line(text: &str) -> Vec<String> {
    let mut args: Vec<String> = if text.contains('\0') {
        text.split('\0')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        text.split_whitespace().map(str::to_owned).collect()
    };
    if args.first().is_some_and(|a| !a.starts_with('-')) {
        args.remove(0);
    }
    args
}

fn kubelet_sources(args: &NodeFileArgs) -> Result<KubeletSources, NodeFileError> {
    let flags_args = match &args.kubelet_flags {
        Some(file) => command_line(&read_given("kubelet-flags", file)?),
        None => Vec::new(),
    };
    let flags = ProcessFlags::parse(&flags_args);
    let config = match (&args.kubelet_config, flags.get("config")) {
        (Some(file), _) => Some(given("kubelet-config", file)?),
        (None, Some(path)) if !path.is_empty() => Some(named_in_flags(path)),
        _ => None,
    };
    let (config_dir, drop_ins) = match (&args.kubelet_config_dir, flags.get("config-dir")) {
        (Some(dir), _) => {
            let shown = dir.display().to_string();
            let files = drop_ins(&absolute(&shown)).map_err(|source| NodeFileError::ConfigDir {
                dir: shown.clone(),
                source,
            })?;
            (Some(shown), Ok(files))
        }
        // Named only in the flags: unreadable is an observation (Error), as on a node.
        (None, Some(dir)) if !dir.is_empty() => (
            Some(dir.to_owned()),
            drop_ins(&absolute(dir)).map_err(|e| e.to_string()),
        ),
        _ => (None, Ok(Vec::new())),
    };
    Ok(KubeletSources {
        args: flags_args,
        config,
        config_dir,
        drop_ins,
        // Copies of a node's files say nothing about when its kubelet started.
        config_dir_changed_after_start: false,
        note: String::new(),
    })
}

/// Every `*.conf` under `dir`, path relative to it, as the agent reads them.
fn drop_ins(dir: &str) -> Result<Vec<SourceFile>, HostError> {
    let host = Host::new("/");
    host.list_drop_ins(dir)?
        .into_iter()
        .map(|(relative, path)| {
            host.read_text(&path)
                .map(|text| SourceFile::text(relative, text))
        })
        .collect()
}

fn api_server_sources(file: &Path, args: &NodeFileArgs) -> Result<ApiServerSources, NodeFileError> {
    let text = read_given("apiserver-flags", file)?;
    let apiserver_args =
        apiserver_args_from_file(&text).map_err(|source| NodeFileError::ApiServerFlags {
            path: file.to_owned(),
            source,
        })?;
    let flags = ProcessFlags::parse(&apiserver_args);
    let pick = |override_flag: &'static str,
                given_path: &Option<PathBuf>,
                flag: &str|
     -> Result<Option<SourceFile>, NodeFileError> {
        match (given_path, flags.get(flag)) {
            (Some(path), _) => given(override_flag, path).map(Some),
            (None, Some(path)) if !path.is_empty() => Ok(Some(named_in_flags(path))),
            _ => Ok(None),
        }
    };
    Ok(ApiServerSources {
        audit_policy: pick("audit-policy", &args.audit_policy, "audit-policy-file")?,
        encryption_config: pick(
            "encryption-config",
            &args.encryption_config,
            "encryption-provider-config",
        )?,
        authorization_config: pick(
            "authorization-config",
            &args.authorization_config,
            "authorization-config",
        )?,
        authentication_config: pick(
            "authentication-config",
            &args.authentication_config,
            "authentication-config",
        )?,
        args: apiserver_args,
        note: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_on_nul_or_whitespace_without_the_program() {
        assert_eq!(
            command_line("/usr/bin/kubelet\0--config=/x\0--v=2\0"),
            ["--config=/x", "--v=2"]
        );
        assert_eq!(
            command_line("kubelet\n--read-only-port 10255\n"),
            ["--read-only-port", "10255"]
        );
    }

    #[test]
    fn a_node_needs_files() {
        let args = NodeFileArgs {
            node: Some("n".to_owned()),
            ..NodeFileArgs::default()
        };
        assert!(matches!(
            observe_files(&args),
            Err(NodeFileError::NoFiles { node }) if node == "n"
        ));
        assert!(matches!(observe_files(&NodeFileArgs::default()), Ok(None)));
    }
}

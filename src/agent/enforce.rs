//! `--enforce`: keeping the rendered audit policy and kubelet drop-in on disk.
//!
//! The agent compares each managed file with what the baselines render and writes it
//! (atomically) only when the content differs, so a second pass writes nothing. Without
//! `--enforce` it never writes: a file that differs is reported as Drifted, whoever wrote
//! it. It never restarts the kubelet or kube-apiserver: the next observation reports
//! PendingRestart until the process is newer than the file.
//!
//! The audit policy file is never deleted (a kube-apiserver whose policy file is missing
//! does not start); the kubelet drop-in is removed, with --enforce, once no baseline wants
//! kubelet settings on the node and the file still carries kube-baseline's header.

use std::io::ErrorKind;

use super::discover::Targets;
use super::host::Host;
use super::observe::Found;
use crate::api::{EnforcementResult, EnforcementState, EnforcementTarget};
use crate::domain::node::audit_policy;
use crate::domain::node::findings::truncate;
use crate::domain::node::kubelet::{DROP_IN_HEADER, DROP_IN_NAME};

/// What a managed file should hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Want {
    /// Could not be determined (the cluster was unreachable): leave the file alone.
    #[default]
    Unknown,
    /// No baseline asks for it.
    Absent,
    /// This exact content.
    Content(String),
}

/// What the baselines want on this node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Desired {
    /// The rendered audit policy (from the ConfigMap kube-baseline-audit-policy).
    pub audit_policy: Want,
    /// The rendered kubelet drop-in.
    pub kubelet_drop_in: Want,
    /// Conflicts between baselines over kubelet settings (reported with the drop-in).
    pub kubelet_notes: Vec<String>,
}

/// The result of one enforcement pass.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EnforceOutcome {
    /// One entry per managed file, for the NodeReport.
    pub results: Vec<EnforcementResult>,
    /// Host paths written in this pass.
    pub written: Vec<String>,
    /// Host paths removed in this pass.
    pub removed: Vec<String>,
}

const MESSAGE_MAX: usize = 1024;

/// Compares (and with `enforce`, writes) every managed file.
pub fn enforce_files(
    host: &Host,
    targets: &Targets,
    desired: &Desired,
    enforce: bool,
) -> EnforceOutcome {
    let mut outcome = EnforceOutcome::default();
    enforce_audit_policy(host, targets, &desired.audit_policy, enforce, &mut outcome);
    enforce_drop_in(host, targets, desired, enforce, &mut outcome);
    outcome
}

fn result(
    target: EnforcementTarget,
    path: &str,
    state: EnforcementState,
    message: impl Into<String>,
) -> EnforcementResult {
    EnforcementResult {
        target,
        path: truncate(path.to_owned(), 4096),
        state,
        message: truncate(message.into(), MESSAGE_MAX),
    }
}

fn enforce_audit_policy(
    host: &Host,
    targets: &Targets,
    want: &Want,
    enforce: bool,
    outcome: &mut EnforceOutcome,
) {
    let Want::Content(content) = want else {
        return;
    };
    let target = EnforcementTarget::AuditPolicy;
    match (&targets.audit_policy_path, &targets.api_server) {
        (Some(path), _) => {
            let entry = sync_file(host, target, path, content, enforce, outcome, |current| {
                audit_policy::is_managed(current)
            });
            outcome.results.push(entry);
        }
        (None, Found::Found(_)) => outcome.results.push(result(
            target,
            "",
            EnforcementState::Skipped,
            "the kube-apiserver has no --audit-policy-file (and the agent was given none): there is no file to write; add the flag to the kube-apiserver",
        )),
        // No kube-apiserver on this node: nothing to do.
        (None, _) => {}
    }
}

fn enforce_drop_in(
    host: &Host,
    targets: &Targets,
    desired: &Desired,
    enforce: bool,
    outcome: &mut EnforceOutcome,
) {
    let target = EnforcementTarget::KubeletDropIn;
    let config_dir = match &targets.kubelet {
        Found::Found(kubelet) => kubelet.config_dir.as_deref(),
        _ => None,
    };
    let path = config_dir.map(|dir| format!("{}/{DROP_IN_NAME}", dir.trim_end_matches('/')));
    match (&desired.kubelet_drop_in, path) {
        (Want::Unknown, _) => {}
        (Want::Content(_), None) => {
            let why = match &targets.kubelet {
                Found::Found(_) => {
                    "the kubelet runs without --config-dir, so a drop-in would not be read; add --config-dir (e.g. /etc/kubernetes/kubelet.conf.d) to the kubelet"
                }
                _ => "no kubelet found on the node",
            };
            outcome
                .results
                .push(result(target, "", EnforcementState::Skipped, why));
        }
        (Want::Content(content), Some(path)) => {
            let mut entry = sync_file(host, target, &path, content, enforce, outcome, |current| {
                current.starts_with(DROP_IN_HEADER)
            });
            if !desired.kubelet_notes.is_empty() {
                let notes = desired.kubelet_notes.join("; ");
                entry.message = truncate(
                    if entry.message.is_empty() {
                        notes
                    } else {
                        format!("{}; {notes}", entry.message)
                    },
                    MESSAGE_MAX,
                );
            }
            outcome.results.push(entry);
        }
        (Want::Absent, Some(path)) => {
            // A drop-in of ours that no baseline wants any more.
            let Ok(current) = host.read_text(&path) else {
                return;
            };
            if !current.starts_with(DROP_IN_HEADER) {
                return;
            }
            if !enforce {
                outcome.results.push(result(
                    target,
                    &path,
                    EnforcementState::Drifted,
                    "no baseline sets kubelet settings for this node any more; the stale drop-in is not removed without --enforce",
                ));
                return;
            }
            match host.remove(&path) {
                Ok(()) => {
                    tracing::info!(
                        path,
                        "removed the kubelet drop-in no baseline wants any more"
                    );
                    outcome.removed.push(path);
                }
                Err(err) => outcome.results.push(result(
                    target,
                    &path,
                    EnforcementState::Failed,
                    err.to_string(),
                )),
            }
        }
        (Want::Absent, None) => {}
    }
}

/// Compares a file with `content`; writes it when enforcing and different.
fn sync_file(
    host: &Host,
    target: EnforcementTarget,
    path: &str,
    content: &str,
    enforce: bool,
    outcome: &mut EnforceOutcome,
    is_ours: impl Fn(&str) -> bool,
) -> EnforcementResult {
    let current = match std::fs::read_to_string(host.resolve(path)) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == ErrorKind::NotFound => None,
        Err(err) if !enforce => {
            return result(
                target,
                path,
                EnforcementState::Failed,
                format!("cannot read {path}: {err}"),
            );
        }
        // Unreadable but about to be replaced: writing decides.
        Err(_) => None,
    };
    if current.as_deref() == Some(content) {
        return result(target, path, EnforcementState::InSync, "");
    }
    if !enforce {
        let why = match current.as_deref() {
            None => "missing".to_owned(),
            Some(text) if is_ours(text) => "holds an older rendering by kube-baseline".to_owned(),
            Some(_) => {
                "differs from the rendered content and was not written by kube-baseline".to_owned()
            }
        };
        return result(
            target,
            path,
            EnforcementState::Drifted,
            format!("{path} {why}; not written: the agent runs without --enforce"),
        );
    }
    match host.write_atomic(path, content) {
        Ok(()) => {
            tracing::info!(
                path,
                ?target,
                "wrote the rendered file; the component reads it when it restarts"
            );
            outcome.written.push(path.to_owned());
            result(target, path, EnforcementState::InSync, "")
        }
        Err(err) => result(target, path, EnforcementState::Failed, err.to_string()),
    }
}

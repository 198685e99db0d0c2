//! `check --live`: what enforcing each baseline's Pod Security level would reject, from the
//! API server itself. For every namespace whose enforce label the baseline would raise, the
//! exact label change is sent as a dry run (`dryRun=All`: admission runs, nothing is
//! persisted) and PodSecurity admission's warnings are read (`domain::pod_security::preview`).
//! Needs `patch` on namespaces; without it the finding is Unknown and says so.

use std::collections::BTreeMap;

use kube::Client;

use crate::controller::reconcile::apply::dry_run_namespace_labels;

/// Each namespace's dry-run outcome: PodSecurity's warnings, or why the dry run failed.
pub type DryRuns = Vec<(String, Result<Vec<String>, String>)>;

/// Dry-runs each (namespace, enforce labels) change, one at a time.
pub async fn dry_run_all(
    targets: Vec<(String, BTreeMap<String, String>)>,
) -> Result<DryRuns, kube::Error> {
    let client = Client::try_default().await?;
    let mut outcomes = Vec::with_capacity(targets.len());
    for (namespace, labels) in targets {
        let outcome = dry_run_namespace_labels(&client, &namespace, &labels)
            .await
            .map_err(|error| error.to_string());
        outcomes.push((namespace, outcome));
    }
    Ok(outcomes)
}

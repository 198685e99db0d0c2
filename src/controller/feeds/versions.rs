//! Kubernetes versions (docs/architecture.md §6), controller side: the API server's
//! `/version` and, while some baseline sets `kubernetesVersion.deprecatedAPIs`, the
//! deprecated-API family of its `/metrics`, polled into a cache; Node kubelet versions and
//! the kube-apiserver versions the agents reported come from the Node and NodeReport caches
//! (`feeds::nodes`). Evaluated per baseline by the pure
//! `domain::versions` through [`VersionFacts::evaluate`], the function `check` calls too.
//!
//! - Polling, not watching: neither is a watchable object. `/version` is readable by anyone
//!   (the bootstrap ClusterRole system:public-info-viewer); `/metrics` needs the opt-in
//!   ClusterRole of config/rbac/apiserver-metrics, and without it the check is Unknown.
//! - HA control planes: each GET reaches one kube-apiserver behind the Service; the node
//!   agents report the version of the kube-apiserver on their node (NodeReport
//!   `apiServer.version`, from the NodeReport cache of `feeds::nodes`), so the support window
//!   is judged on the oldest of all and `version.apiserver-skew` compares them.
//! - Triggers: a changed answer refreshes the status of every baseline that sets
//!   kubernetesVersion; the end of life passing is a requeue at the verdict's `next_change`.

use std::sync::Arc;
use std::time::Duration;

use kube::{Client, ResourceExt};
use parking_lot::Mutex;
use tracing::{debug, warn};

use crate::api::{KubernetesVersionStatus, SecurityBaseline};
use crate::controller::state::context::Context;
use crate::domain::snapshot::VersionFacts;
use crate::domain::versions::VersionVerdict;

/// Where the API server's own version was read, as findings name it.
const VERSION_ENDPOINT: &str = "/version";

/// The last answers of the API server.
#[derive(Debug, Default)]
pub struct VersionCache {
    /// `/version`'s gitVersion, or why it could not be read; None before the first poll.
    api_server: Mutex<Option<Result<String, String>>>,
    /// The deprecated-API family of `/metrics`, or why it could not be read; None while no
    /// baseline asks for it.
    deprecated_metrics: Mutex<Option<Result<String, String>>>,
    /// Wakes the poller before its interval: a baseline asks for what was not read yet.
    wake: tokio::sync::Notify,
}

impl VersionCache {
    /// The API server's minor version (1.N → N), once `/version` was read.
    pub fn api_server_minor(&self) -> Option<u64> {
        let version = self.api_server.lock().clone()?.ok()?;
        let parsed = crate::domain::versions::KubeVersion::parse(&version).ok()?;
        (parsed.major == 1).then_some(u64::from(parsed.minor))
    }

    /// Stores `value` in `slot`; true when it changed.
    fn store(
        slot: &Mutex<Option<Result<String, String>>>,
        value: Option<Result<String, String>>,
    ) -> bool {
        let mut current = slot.lock();
        if *current == value {
            return false;
        }
        *current = value;
        true
    }
}

/// The version checks of `baseline` over the caches, and the status block they were judged
/// with; None when it sets none.
pub fn version_status(
    ctx: &Context,
    baseline: &SecurityBaseline,
) -> Option<(VersionVerdict, KubernetesVersionStatus)> {
    let settings = baseline.spec.kubernetes_version.as_ref()?;
    let api_server = ctx
        .versions
        .api_server
        .lock()
        .clone()
        .unwrap_or_else(|| Err("the API server's /version has not been read yet".to_owned()));
    let read_version = api_server.as_deref().unwrap_or_default().to_owned();
    // The version that answered through the Service, and each control-plane node's own as
    // its agent reported it.
    let mut api_servers = vec![(VERSION_ENDPOINT.to_owned(), api_server)];
    api_servers.extend(crate::controller::feeds::nodes::api_server_versions(ctx));
    let facts = VersionFacts {
        api_servers,
        kubelets: crate::controller::feeds::nodes::kubelet_versions(ctx),
        deprecated_metrics: settings.deprecated_apis.then(|| {
            ctx.versions
                .deprecated_metrics
                .lock()
                .clone()
                .unwrap_or_else(|| {
                    // Not asked for until now (the baseline is new): read it now, not at the
                    // next interval (5 minutes by default).
                    ctx.versions.wake.notify_one();
                    Err("the API server's /metrics has not been read yet".to_owned())
                })
        }),
        now: k8s_openapi::jiff::Timestamp::now(),
    };
    let verdict = facts.evaluate(settings);
    let status = verdict.status(&read_version);
    Some((verdict, status))
}

/// Asks for a status refresh of every baseline with version checks.
pub fn refresh_version_baselines(ctx: &Context) {
    for baseline in ctx.readable_baselines() {
        if baseline.spec.kubernetes_version.is_some() {
            ctx.refresh_status(&baseline.name_any());
        }
    }
}

/// Whether some baseline asks for the deprecated-API metrics.
fn metrics_wanted(ctx: &Context) -> bool {
    ctx.readable_baselines().iter().any(|b| {
        b.spec
            .kubernetes_version
            .as_ref()
            .is_some_and(|v| v.deprecated_apis)
    })
}

/// Polls `/version` (and `/metrics` while wanted) every `interval`, and at once when a
/// baseline asks for what was not read; never returns. `/version` is read once before the
/// caches sync, so the first status already has it (no "not read yet" and a second write).
pub async fn run(client: Client, ctx: Arc<Context>, interval: Duration) {
    let first = read_api_server_version(&client).await;
    VersionCache::store(&ctx.versions.api_server, Some(first));
    ctx.wait_ready().await;
    loop {
        let version = read_api_server_version(&client).await;
        let metrics = if metrics_wanted(&ctx) {
            Some(read_deprecated_metrics(&client).await)
        } else {
            None
        };
        let changed = VersionCache::store(&ctx.versions.api_server, Some(version))
            | VersionCache::store(&ctx.versions.deprecated_metrics, metrics);
        if changed {
            debug!("API server version or deprecated-API metrics changed");
            refresh_version_baselines(&ctx);
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = ctx.versions.wake.notified() => {}
        }
    }
}

async fn read_api_server_version(client: &Client) -> Result<String, String> {
    client
        .apiserver_version()
        .await
        .map(|info| info.git_version)
        .map_err(|err| {
            warn!(error = %err, "cannot read the API server's /version");
            format!("GET /version failed: {err}")
        })
}

async fn read_deprecated_metrics(client: &Client) -> Result<String, String> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|err| format!("GET /metrics: {err}"))?;
    match client.request_text(request).await {
        Ok(text) => Ok(crate::domain::versions::deprecated_family(&text)),
        Err(kube::Error::Api(status)) if status.is_forbidden() => Err(format!(
            "GET /metrics is forbidden ({}): apply config/rbac/apiserver-metrics to grant it",
            status.message
        )),
        Err(err) => {
            warn!(error = %err, "cannot read the API server's /metrics");
            Err(format!("GET /metrics failed: {err}"))
        }
    }
}

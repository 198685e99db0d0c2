//! What every reconcile shares: the client, the caches and the results.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;

use super::RunArgs;
use super::cache::NamespacedIndex;
use super::results::Results;
use crate::api::{BASELINE_LABEL, SecurityBaseline};
use crate::domain::generated::{GeneratedKind, NamespacedObject};

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub operator_namespace: String,
    pub baselines: Store<SecurityBaseline>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Our generated objects (label-filtered watches), per kind.
    pub generated: BTreeMap<GeneratedKind, Arc<NamespacedIndex<NamespacedObject>>>,
    /// Names (and labels) of every object of the generated kinds, ours or not, to tell a
    /// free generated name from one taken by someone else without a GET.
    pub names: BTreeMap<GeneratedKind, Arc<NamespacedIndex<ObjectMeta>>>,
    pub results: Results,
    pub metrics: Arc<super::metrics::Metrics>,
    /// Roles, ClusterRoles and bindings, for the RBAC audit.
    pub rbac: Arc<super::rbac::RbacCache>,
    /// Node labels, NodeReports and the published audit policy (node checks).
    pub node_caches: super::nodes::NodeCaches,
    pub recorder: Recorder,
    /// Asks the baseline reconciler to refresh a baseline's status.
    pub status_trigger: UnboundedSender<String>,
    /// When the controller started: drift that appears after it is news (an Event).
    pub started: k8s_openapi::jiff::Timestamp,
    /// Raised once every cache has its first full list.
    caches_synced: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("operator_namespace", &self.operator_namespace)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        client: Client,
        args: &RunArgs,
        baselines: Store<SecurityBaseline>,
        namespaces: Store<PartialObjectMeta<Namespace>>,
        status_trigger: UnboundedSender<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: "kube-baseline".to_string(),
            instance: Some(args.instance.clone()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            operator_namespace: args.namespace.clone(),
            baselines,
            namespaces,
            generated: GeneratedKind::ALL
                .into_iter()
                .map(|k| (k, Arc::default()))
                .collect(),
            names: GeneratedKind::ALL
                .into_iter()
                .map(|k| (k, Arc::default()))
                .collect(),
            results: Results::default(),
            metrics: Arc::default(),
            rbac: Arc::default(),
            node_caches: super::nodes::NodeCaches::default(),
            status_trigger,
            started: k8s_openapi::jiff::Timestamp::now(),
            caches_synced: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Waits until every cache has its first full list: acting on a partial view would
    /// recreate objects that exist or report drift that is not there. Many reconciles wait
    /// at once, so they wait on one flag that [`Context::sync_caches`] raises.
    pub async fn wait_ready(&self) {
        let mut ready = self.caches_synced.subscribe();
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = ready.wait_for(|synced| *synced).await;
    }

    /// Waits for every store and index, then raises the flag reconciles wait on. Runs once,
    /// in one task: kube's `Store::wait_until_ready` wakes only one of several waiters.
    pub async fn sync_caches(&self) {
        // The stores only fail to become ready if their writer is dropped, i.e. on shutdown.
        let _ = self.baselines.wait_until_ready().await;
        let _ = self.namespaces.wait_until_ready().await;
        for index in self.generated.values() {
            index.wait_ready().await;
        }
        for index in self.names.values() {
            index.wait_ready().await;
        }
        self.rbac.wait_ready().await;
        self.node_caches.wait_ready().await;
        self.caches_synced.send_replace(true);
    }

    /// Our objects of `baseline` in `namespace`, every kind.
    pub fn generated_in(&self, namespace: &str, baseline: &str) -> Vec<Arc<NamespacedObject>> {
        self.generated
            .values()
            .flat_map(|index| {
                index.in_namespace(namespace, |o| o.label(BASELINE_LABEL) == Some(baseline))
            })
            .collect()
    }

    /// Whether any object of ours for `baseline` is left anywhere.
    pub fn has_generated(&self, baseline: &str) -> bool {
        self.generated
            .values()
            .any(|index| index.any(|o| o.label(BASELINE_LABEL) == Some(baseline)))
    }

    /// Any object of `kind` named `name` in `namespace`, ours or not.
    pub fn lookup_name(
        &self,
        kind: GeneratedKind,
        namespace: &str,
        name: &str,
    ) -> Option<ObjectMeta> {
        self.names
            .get(&kind)?
            .get(namespace, name)
            .map(|meta| (*meta).clone())
    }

    /// Asks for a status refresh of `baseline`.
    pub fn refresh_status(&self, baseline: &str) {
        // Fails only when the baseline controller is gone (shutdown).
        let _ = self.status_trigger.unbounded_send(baseline.to_string());
    }
}

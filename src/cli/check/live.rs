//! `check --live`: read the cluster through the current kubeconfig, read-only.
//!
//! READ-ONLY BY CONSTRUCTION: the only calls this module makes on the API are `Api::list`
//! (in [`list_pages`]), `GET /version` (readable by anyone, [`read_api_server_version`])
//! and, when a baseline asks for the deprecated-API check, `GET /metrics`
//! ([`read_deprecated_metrics`]); it never creates, patches, replaces or deletes anything, and
//! a unit test fails if one of those calls appears in this file. `check` needs `list` on the
//! kinds below (and `get` on the non-resource URL /metrics for that one check) and nothing
//! else.

use k8s_openapi::api::core::v1::{LimitRange, Namespace, Node, ResourceQuota, Secret};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, TypeMeta};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::baselines::LoadedBaseline;
use super::inventory::{ClusterObject, DuplicateObservations, Inventory};
use crate::api::{NodeReport, SecurityBaseline, SecurityBaselineSpec};
use crate::domain::selection::invalid_selector;
use crate::domain::snapshot::SecretInventory;

/// Why certificates are Unknown in `check --live` without `--tls-secrets`.
const SECRETS_NOT_READ: &str = "check --live reads Secrets only with --tls-secrets";
use crate::domain::tls::GatewayFacts;

/// Objects per list request (the rest come with continue tokens).
const PAGE: u32 = 500;

/// Every object of kind `K` in the cluster (all namespaces), page by page. Through
/// [`list_matching`], the one API call of `check --live`.
async fn list_all<K>(client: &Client) -> Result<Vec<K>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    list_matching(client, None, None).await
}

/// Every object of kind `K` matching `label_selector` and `field_selector` (all when None),
/// page by page.
async fn list_matching<K>(
    client: &Client,
    label_selector: Option<&str>,
    field_selector: Option<&str>,
) -> Result<Vec<K>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    list_pages(Api::all(client.clone()), label_selector, field_selector).await
}

/// Every object `api` lists matching `label_selector` and `field_selector` (all when None),
/// page by page: the one API call of `check --live`.
async fn list_pages<K>(
    api: Api<K>,
    label_selector: Option<&str>,
    field_selector: Option<&str>,
) -> Result<Vec<K>, kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let first = ListParams::default().limit(PAGE);
    let first = match label_selector {
        Some(selector) => first.labels(selector),
        None => first,
    };
    let first = match field_selector {
        Some(selector) => first.fields(selector),
        None => first,
    };
    let mut items = Vec::new();
    let mut params = first.clone();
    loop {
        let page = api.list(&params).await?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = first.clone().continue_token(&token),
            None => return Ok(items),
        }
    }
}

/// Every Gateway (`gateway.networking.k8s.io/v1`), each read on its own (one that cannot be
/// read is a finding, not an error); None when the API serves no Gateways (the Gateway API
/// CRDs are not installed).
async fn list_gateways(c: &Client) -> Result<Option<Vec<ClusterObject>>, kube::Error> {
    use crate::domain::tls::gateway::GROUP;
    let resource = ApiResource {
        group: GROUP.to_owned(),
        version: "v1".to_owned(),
        api_version: format!("{GROUP}/v1"),
        kind: "Gateway".to_owned(),
        plural: "gateways".to_owned(),
    };
    let listed = match list_pages(
        Api::<DynamicObject>::all_with(c.clone(), &resource),
        None,
        None,
    )
    .await
    {
        Err(err) if not_served(&err) => return Ok(None),
        other => other?,
    };
    listed
        .into_iter()
        .map(|mut gateway| {
            // List items may come without apiVersion; they are of the version listed.
            gateway.types.get_or_insert_with(|| TypeMeta {
                api_version: resource.api_version.clone(),
                kind: resource.kind.clone(),
            });
            let value = serde_json::to_value(&gateway).map_err(kube::Error::SerdeError)?;
            Ok(ClusterObject::Gateway {
                facts: GatewayFacts::from_json(&value),
                metadata: gateway.metadata,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The API server's `gitVersion` (`GET /version`), or why it could not be read.
async fn read_api_server_version(client: &Client) -> Result<String, String> {
    client
        .apiserver_version()
        .await
        .map(|info| info.git_version)
        .map_err(|err| format!("GET /version failed: {err}"))
}

/// The deprecated-API family of the API server's `/metrics` (`GET /metrics`), or why it
/// could not be read (forbidden without the opt-in permission).
async fn read_deprecated_metrics(client: &Client) -> Result<String, String> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|err| format!("GET /metrics: {err}"))?;
    match client.request_text(request).await {
        Ok(text) => Ok(crate::domain::versions::deprecated_family(&text)),
        Err(kube::Error::Api(status)) if status.is_forbidden() => Err(format!(
            "GET /metrics is forbidden ({}): grant get on the non-resource URL /metrics (config/rbac/apiserver-metrics)",
            status.message
        )),
        Err(err) => Err(format!("GET /metrics failed: {err}")),
    }
}

/// Why the cluster could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cannot create a Kubernetes client from the current kubeconfig: {0}")]
    Client(#[source] kube::Error),
    /// A list request failed; when forbidden, the message says what permission is missing.
    #[error("cannot list {what}: {source}{}", forbidden_hint(source))]
    List {
        /// The resource, as kubectl names it (`networkpolicies`).
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the SecurityBaseline CRD is not installed in the cluster; pass baselines with --baseline FILE"
    )]
    NoBaselineCrd,
    #[error(transparent)]
    Observations(#[from] DuplicateObservations),
}

fn forbidden_hint(err: &kube::Error) -> &'static str {
    match err {
        kube::Error::Api(status) if status.is_forbidden() => {
            " (check needs list on it: kubectl auth can-i list <resource> --all-namespaces)"
        }
        _ => "",
    }
}

/// The items, or None after recording why they could not be listed.
fn take<T>(
    errors: &mut Vec<LiveError>,
    what: &'static str,
    result: Result<T, kube::Error>,
) -> Option<T> {
    match result {
        Ok(items) => Some(items),
        Err(source) => {
            errors.push(LiveError::List { what, source });
            None
        }
    }
}

fn not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.is_not_found())
}

/// A 404 of any form: an API group that is not installed answers plain text ("404 page
/// not found"), which `Status::is_not_found` (reason NotFound) does not recognise.
fn not_served(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// What `--live` read.
#[derive(Debug)]
pub struct LiveCluster {
    pub inventory: Inventory,
    /// The cluster's SecurityBaselines, when asked for.
    pub baselines: Vec<LoadedBaseline>,
}

/// What only some baselines need read (and a user may not be allowed to read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Optional {
    /// The API server's /metrics (kubernetesVersion.deprecatedAPIs).
    pub metrics: bool,
    /// Ingresses (spec.tls).
    pub ingresses: bool,
    /// Secrets of type kubernetes.io/tls, if Ingresses are read (`--tls-secrets`).
    pub secrets_allowed: bool,
    /// Gateways (spec.tls.gateway).
    pub gateways: bool,
}

impl Optional {
    /// What `specs` need.
    pub fn of<'a>(specs: impl IntoIterator<Item = &'a SecurityBaselineSpec>) -> Self {
        specs
            .into_iter()
            .fold(Self::default(), |wanted, spec| Self {
                metrics: wanted.metrics
                    || spec
                        .kubernetes_version
                        .as_ref()
                        .is_some_and(|v| v.deprecated_apis),
                ingresses: wanted.ingresses || spec.tls.as_ref().is_some_and(|t| t.ingress),
                secrets_allowed: wanted.secrets_allowed,
                gateways: wanted.gateways || spec.tls.as_ref().is_some_and(|t| t.gateway),
            })
    }

    fn or(self, other: Self) -> Self {
        Self {
            metrics: self.metrics || other.metrics,
            ingresses: self.ingresses || other.ingresses,
            secrets_allowed: self.secrets_allowed || other.secrets_allowed,
            gateways: self.gateways || other.gateways,
        }
    }
}

/// Lists everything the evaluation reads; SecurityBaselines only when `want_baselines`.
/// Nodes: only those matching `node_selector`, like the operator's `--node-selector`. What
/// only some baselines need is read when `wanted` (from baselines given in files) or a
/// listed baseline asks for it.
pub async fn read_cluster(
    want_baselines: bool,
    wanted: Optional,
    node_selector: Option<&str>,
) -> Result<LiveCluster, Vec<LiveError>> {
    let client = Client::try_default()
        .await
        .map_err(|err| vec![LiveError::Client(err)])?;
    let c = &client;
    let (namespaces, policies, roles, quotas, limits) = futures::join!(
        list_all::<Namespace>(c),
        list_all::<NetworkPolicy>(c),
        list_all::<Role>(c),
        list_all::<ResourceQuota>(c),
        list_all::<LimitRange>(c),
    );
    let (role_bindings, cluster_roles, cluster_role_bindings, nodes, reports) = futures::join!(
        list_all::<RoleBinding>(c),
        list_all::<ClusterRole>(c),
        list_all::<ClusterRoleBinding>(c),
        list_matching::<Node>(c, node_selector, None),
        list_all::<NodeReport>(c),
    );
    let baselines = if want_baselines {
        Some(list_all::<SecurityBaseline>(c).await)
    } else {
        None
    };
    let listed = baselines
        .as_ref()
        .and_then(|listed| listed.as_ref().ok())
        .map(|listed| Optional::of(listed.iter().map(|b| &b.spec)))
        .unwrap_or_default();
    let wanted = wanted.or(listed);
    let api_server_version = read_api_server_version(c).await;
    let deprecated_metrics = if wanted.metrics {
        Some(read_deprecated_metrics(c).await)
    } else {
        None
    };
    let ingresses = if wanted.ingresses {
        list_all::<Ingress>(c).await
    } else {
        Ok(Vec::new())
    };
    let secrets = if wanted.ingresses && wanted.secrets_allowed {
        Some(list_matching::<Secret>(c, None, Some("type=kubernetes.io/tls")).await)
    } else {
        None
    };
    let gateways = if wanted.gateways {
        list_gateways(c).await
    } else {
        Ok(Some(Vec::new()))
    };

    let mut errors = Vec::new();
    let mut inventory = Inventory::default();
    inventory.api_server_version = Some(api_server_version);
    inventory.deprecated_metrics = deprecated_metrics;
    let namespaces: Option<Vec<Namespace>> = take(&mut errors, "namespaces", namespaces);
    let policies: Option<Vec<NetworkPolicy>> = take(&mut errors, "networkpolicies", policies);
    let roles: Option<Vec<Role>> = take(&mut errors, "roles", roles);
    let quotas: Option<Vec<ResourceQuota>> = take(&mut errors, "resourcequotas", quotas);
    let limits: Option<Vec<LimitRange>> = take(&mut errors, "limitranges", limits);
    let role_bindings: Option<Vec<RoleBinding>> = take(&mut errors, "rolebindings", role_bindings);
    let cluster_roles: Option<Vec<ClusterRole>> = take(&mut errors, "clusterroles", cluster_roles);
    let cluster_role_bindings: Option<Vec<ClusterRoleBinding>> =
        take(&mut errors, "clusterrolebindings", cluster_role_bindings);
    let nodes: Option<Vec<Node>> = take(&mut errors, "nodes", nodes);
    let ingresses: Option<Vec<Ingress>> = take(&mut errors, "ingresses", ingresses);
    match secrets {
        None => inventory.secrets = SecretInventory::NotRead(SECRETS_NOT_READ.to_owned()),
        Some(listed) => {
            if let Some(listed) = take(&mut errors, "secrets", listed) {
                inventory.add_tls_secrets(&listed);
            }
        }
    }
    let gateways = match take(&mut errors, "gateways", gateways) {
        Some(None) => {
            inventory.notes.push(
                "the Gateway API (gateway.networking.k8s.io/v1 Gateway) is not installed: no Gateway is checked".to_owned(),
            );
            None
        }
        listed => listed.flatten(),
    };
    // Without the NodeReport CRD (no agent installed) every node is simply unobserved.
    let reports = match reports {
        Err(err) if not_found(&err) => {
            inventory.notes.push(
                "the NodeReport CRD is not installed: no node is observed by an agent, so node checks are Unknown".to_owned(),
            );
            Some(Vec::new())
        }
        other => take(&mut errors, "nodereports", other),
    };
    let baselines = match baselines {
        None => Some(Vec::new()),
        Some(Err(err)) if not_found(&err) => {
            errors.push(LiveError::NoBaselineCrd);
            None
        }
        Some(result) => take(&mut errors, "securitybaselines", result),
    };
    if !errors.is_empty() {
        return Err(errors);
    }

    let objects = (namespaces
        .into_iter()
        .flatten()
        .map(ClusterObject::Namespace))
    .chain(
        policies
            .into_iter()
            .flatten()
            .map(ClusterObject::NetworkPolicy),
    )
    .chain(roles.into_iter().flatten().map(ClusterObject::Role))
    .chain(
        quotas
            .into_iter()
            .flatten()
            .map(ClusterObject::ResourceQuota),
    )
    .chain(limits.into_iter().flatten().map(ClusterObject::LimitRange))
    .chain(
        role_bindings
            .into_iter()
            .flatten()
            .map(ClusterObject::RoleBinding),
    )
    .chain(
        cluster_roles
            .into_iter()
            .flatten()
            .map(ClusterObject::ClusterRole),
    )
    .chain(
        cluster_role_bindings
            .into_iter()
            .flatten()
            .map(ClusterObject::ClusterRoleBinding),
    )
    .chain(nodes.into_iter().flatten().map(ClusterObject::Node))
    .chain(ingresses.into_iter().flatten().map(ClusterObject::Ingress))
    .chain(gateways.into_iter().flatten())
    .chain(reports.into_iter().flatten().map(ClusterObject::NodeReport));
    for object in objects {
        let origin = format!("the cluster ({object})");
        inventory
            .add(object, &origin)
            .map_err(|e| vec![LiveError::from(e)])?;
    }
    let baselines = baselines
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b.metadata.deletion_timestamp.is_none())
        // Held by the controller, so not evaluated (evaluating "matches nothing" would
        // report its objects as unwanted where the controller leaves them).
        .filter(|b| match invalid_selector(&b.spec) {
            Some(why) => {
                inventory.notes.push(format!(
                    "SecurityBaseline {} is not evaluated: {why} (the controller holds it until it is fixed)",
                    b.name_any()
                ));
                false
            }
            None => true,
        })
        .map(|baseline| LoadedBaseline {
            source: format!("cluster (SecurityBaseline {})", baseline.name_any()),
            baseline,
        })
        .collect();
    Ok(LiveCluster {
        inventory,
        baselines,
    })
}

#[cfg(test)]
mod tests {
    /// The structural guarantee: no write call exists in this module.
    #[test]
    fn this_module_only_lists() {
        let source = include_str!("live.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        for write in [
            ".create(",
            ".patch(",
            ".patch_status(",
            ".replace(",
            ".delete(",
            ".delete_collection(",
            "Patch::",
            "PostParams",
            "PatchParams",
            "DeleteParams",
        ] {
            assert!(!code.contains(write), "live.rs must not call {write}");
        }
        assert_eq!(code.matches("api.").count(), 1, "one API call: api.list");
        assert_eq!(
            code.matches("client.").count(),
            2,
            "two GETs: client.apiserver_version and client.request_text"
        );
        assert_eq!(code.matches("http::Request::").count(), 1);
        assert!(code.contains("http::Request::get(\"/metrics\")"));
    }
}

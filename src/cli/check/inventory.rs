//! From documents to the objects the evaluation reads: the kinds `check` knows are
//! deserialized (an error names the file and document), everything else is counted as
//! ignored. Duplicates and namespaced objects without a namespace are errors, never guesses.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{LimitRange, Namespace, Node, ResourceQuota, Secret};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::documents::{Document, Origin};
use crate::api::{GROUP, NodeReport, NodeReportSpec};
use crate::domain::generated::NamespacedObject;
use crate::domain::node::evaluate::{NodeInventory, nodes_under_check};
use crate::domain::rbac_audit::{RbacIndex, RbacObject};
use crate::domain::snapshot::SecretInventory;
use crate::domain::snapshot::{ClusterSnapshot, Labels, VersionFacts};
use crate::domain::tls::{GatewayFacts, IngressFacts, SecretFacts};
use crate::domain::versions::reported_api_servers;

/// A manifest document `check` cannot use, and where it is.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {problem}")]
pub struct ManifestError {
    pub origin: Origin,
    pub problem: ManifestProblem,
}

/// What is wrong with one manifest document.
#[derive(Debug, thiserror::Error)]
pub enum ManifestProblem {
    #[error("not a Kubernetes object (expected a mapping with apiVersion and kind)")]
    NotAnObject,
    #[error("not a Kubernetes object: apiVersion and kind are required")]
    NoKind,
    /// A kind `check` reads (or its metadata) that does not deserialize.
    #[error("not a valid {kind}: {source}")]
    Invalid {
        kind: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{kind} has no metadata.name")]
    NoName { kind: String },
    /// `default` is never assumed: the object would be evaluated in the wrong namespace.
    #[error("{kind} {name} has no metadata.namespace (check does not assume \"default\"; set it)")]
    NoNamespace { kind: String, name: String },
    /// The same object twice (which one would win is a guess).
    #[error("{kind} {object} is also defined in {first}")]
    Duplicate {
        kind: String,
        /// `namespace/name` or `name`.
        object: String,
        first: String,
    },
    #[error(transparent)]
    Observations(#[from] DuplicateObservations),
    /// An apiVersion of a known kind that no supported Kubernetes serves any more.
    #[error(
        "{api_version} {kind} is not served since Kubernetes {removed_in}; convert it to {current}"
    )]
    RemovedVersion {
        api_version: String,
        kind: String,
        removed_in: &'static str,
        current: &'static str,
    },
}

/// Two sets of observations of one node (NodeReports, --node files).
#[derive(Debug, thiserror::Error)]
#[error(
    "observations of node {node} are given twice ({origin} and an earlier NodeReport or --node)"
)]
pub struct DuplicateObservations {
    pub node: String,
    /// Where the second came from.
    pub origin: String,
}

/// Everything read from manifests (or from the cluster), before evaluation.
#[derive(Debug, Default)]
pub struct Inventory {
    pub namespaces: Vec<(String, Labels)>,
    pub objects: Vec<NamespacedObject>,
    pub roles: Vec<Role>,
    pub cluster_roles: Vec<ClusterRole>,
    pub role_bindings: Vec<RoleBinding>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub nodes: Vec<(String, Labels)>,
    /// Every Ingress, by namespace, as the TLS checks read it.
    pub ingresses: Vec<(String, IngressFacts)>,
    /// The Secrets read (their type and leaf certificate only), for the certificate checks.
    pub secrets: SecretInventory,
    /// Every Gateway, by namespace, as the TLS checks read it.
    pub gateways: Vec<(String, GatewayFacts)>,
    /// Each Node's `status.nodeInfo.kubeletVersion` (empty when absent).
    pub kubelets: Vec<(String, String)>,
    /// The kube-apiserver's version (`/version`, or `--kubernetes-version`), or why it could
    /// not be read; `None` when not given.
    pub api_server_version: Option<Result<String, String>>,
    /// The API server's deprecated-API metrics, or why they could not be read; `None` when
    /// not asked.
    pub deprecated_metrics: Option<Result<String, String>>,
    pub node_reports: Vec<NodeReportSpec>,
    /// The node of the `--node` files: a node the user says exists.
    pub node_of_files: Option<String>,
    /// Objects of other kinds: (origin, "apiVersion kind namespace/name").
    pub ignored: Vec<(String, String)>,
    /// Notes for the user (printed on stderr), e.g. a SecurityBaseline among the manifests.
    pub notes: Vec<String>,
    /// (kind, namespace, name) -> where it was read, to reject duplicates.
    seen: BTreeMap<(String, String, String), String>,
}

/// The kinds `check` reads, by (API group, kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Namespace,
    NetworkPolicy,
    Role,
    ResourceQuota,
    LimitRange,
    RoleBinding,
    ClusterRole,
    ClusterRoleBinding,
    Node,
    NodeReport,
    SecurityBaseline,
    Ingress,
    Secret,
    Gateway,
}

impl Known {
    fn of(group: &str, kind: &str) -> Option<Self> {
        Some(match (group, kind) {
            ("", "Namespace") => Self::Namespace,
            ("networking.k8s.io", "NetworkPolicy") => Self::NetworkPolicy,
            ("rbac.authorization.k8s.io", "Role") => Self::Role,
            ("", "ResourceQuota") => Self::ResourceQuota,
            ("", "LimitRange") => Self::LimitRange,
            ("rbac.authorization.k8s.io", "RoleBinding") => Self::RoleBinding,
            ("rbac.authorization.k8s.io", "ClusterRole") => Self::ClusterRole,
            ("rbac.authorization.k8s.io", "ClusterRoleBinding") => Self::ClusterRoleBinding,
            ("", "Node") => Self::Node,
            ("networking.k8s.io", "Ingress") => Self::Ingress,
            ("", "Secret") => Self::Secret,
            (crate::domain::tls::gateway::GROUP, "Gateway") => Self::Gateway,
            (GROUP, "NodeReport") => Self::NodeReport,
            (GROUP, "SecurityBaseline") => Self::SecurityBaseline,
            _ => return None,
        })
    }

    fn namespaced(self) -> bool {
        matches!(
            self,
            Self::NetworkPolicy
                | Self::Role
                | Self::ResourceQuota
                | Self::LimitRange
                | Self::RoleBinding
                | Self::Ingress
                | Self::Secret
                | Self::Gateway
        )
    }
}

/// One object of a kind `check` evaluates, typed: what a manifest document or a live list
/// item becomes before [`Inventory::add`] decides what it contributes.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "each object is moved once, straight into the inventory"
)]
pub enum ClusterObject {
    Namespace(Namespace),
    Node(Node),
    NodeReport(NodeReport),
    NetworkPolicy(NetworkPolicy),
    ResourceQuota(ResourceQuota),
    LimitRange(LimitRange),
    Role(Role),
    RoleBinding(RoleBinding),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Ingress(Ingress),
    Secret(Secret),
    /// Any version: what cannot be read is a finding of the Gateway checks (`GatewayFacts`),
    /// not a manifest error.
    Gateway {
        metadata: ObjectMeta,
        facts: GatewayFacts,
    },
}

impl ClusterObject {
    fn kind_and_metadata(&self) -> (&'static str, &ObjectMeta) {
        match self {
            Self::Namespace(o) => ("Namespace", &o.metadata),
            Self::Node(o) => ("Node", &o.metadata),
            Self::NodeReport(o) => ("NodeReport", &o.metadata),
            Self::NetworkPolicy(o) => ("NetworkPolicy", &o.metadata),
            Self::ResourceQuota(o) => ("ResourceQuota", &o.metadata),
            Self::LimitRange(o) => ("LimitRange", &o.metadata),
            Self::Role(o) => ("Role", &o.metadata),
            Self::RoleBinding(o) => ("RoleBinding", &o.metadata),
            Self::ClusterRole(o) => ("ClusterRole", &o.metadata),
            Self::ClusterRoleBinding(o) => ("ClusterRoleBinding", &o.metadata),
            Self::Ingress(o) => ("Ingress", &o.metadata),
            Self::Secret(o) => ("Secret", &o.metadata),
            Self::Gateway { metadata, .. } => ("Gateway", metadata),
        }
    }
}

/// `Kind namespace/name`, as messages name an object.
impl std::fmt::Display for ClusterObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, meta) = self.kind_and_metadata();
        let name = meta.name.as_deref().unwrap_or_default();
        match meta.namespace.as_deref() {
            Some(namespace) if !namespace.is_empty() => write!(f, "{kind} {namespace}/{name}"),
            _ => write!(f, "{kind} {name}"),
        }
    }
}

impl Known {
    /// Deserializes a document of this kind (SecurityBaselines are not objects to evaluate).
    fn parse(self, value: &Value, kind: &str) -> Result<Option<ClusterObject>, ManifestProblem> {
        Ok(Some(match self {
            Self::Namespace => ClusterObject::Namespace(typed(value, kind)?),
            Self::Node => ClusterObject::Node(typed(value, kind)?),
            Self::NodeReport => ClusterObject::NodeReport(typed(value, kind)?),
            Self::NetworkPolicy => ClusterObject::NetworkPolicy(typed(value, kind)?),
            Self::ResourceQuota => ClusterObject::ResourceQuota(typed(value, kind)?),
            Self::LimitRange => ClusterObject::LimitRange(typed(value, kind)?),
            Self::Role => ClusterObject::Role(typed(value, kind)?),
            Self::RoleBinding => ClusterObject::RoleBinding(typed(value, kind)?),
            Self::ClusterRole => ClusterObject::ClusterRole(typed(value, kind)?),
            Self::ClusterRoleBinding => ClusterObject::ClusterRoleBinding(typed(value, kind)?),
            Self::Ingress => ClusterObject::Ingress(typed(value, kind)?),
            Self::Secret => ClusterObject::Secret(typed(value, kind)?),
            Self::Gateway => ClusterObject::gateway(value)?,
            Self::SecurityBaseline => return Ok(None),
        }))
    }
}

/// A Secret's type and its `tls.crt` (from `data`, or `stringData` in a manifest written by
/// hand).
fn secret_facts(secret: &Secret) -> SecretFacts {
    let from_data = secret
        .data
        .as_ref()
        .and_then(|data| data.get("tls.crt"))
        .map(|bytes| bytes.0.as_slice());
    let from_string_data = secret
        .string_data
        .as_ref()
        .and_then(|data| data.get("tls.crt"))
        .map(String::as_bytes);
    SecretFacts::from_parts(secret.type_.as_deref(), from_data.or(from_string_data))
}

impl ClusterObject {
    /// A Gateway of any version, read leniently (see [`GatewayFacts::from_json`]).
    pub fn gateway(value: &Value) -> Result<Self, ManifestProblem> {
        let metadata = value
            .get("metadata")
            .map(|m| typed::<ObjectMeta>(m, "metadata"))
            .transpose()?
            .unwrap_or_default();
        Ok(Self::Gateway {
            metadata,
            facts: GatewayFacts::from_json(value),
        })
    }
}

/// The API group of an apiVersion (`v1` is the core group "").
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

fn typed<T: DeserializeOwned>(value: &Value, kind: &str) -> Result<T, ManifestProblem> {
    serde_json::from_value(value.clone()).map_err(|source| ManifestProblem::Invalid {
        kind: kind.to_owned(),
        source,
    })
}

impl Inventory {
    /// Adds every document; returns one error per malformed document.
    pub fn add_documents(&mut self, documents: &[Document]) -> Result<(), Vec<ManifestError>> {
        let errors: Vec<ManifestError> = documents
            .iter()
            .filter_map(|d| {
                self.add_document(d).err().map(|problem| ManifestError {
                    origin: d.origin.clone(),
                    problem,
                })
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn add_document(&mut self, document: &Document) -> Result<(), ManifestProblem> {
        let value = &document.value;
        if !value.is_object() {
            return Err(ManifestProblem::NotAnObject);
        }
        let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default();
        let (api_version, kind) = (text("apiVersion"), text("kind"));
        if api_version.is_empty() || kind.is_empty() {
            return Err(ManifestProblem::NoKind);
        }
        let Some(known) = Known::of(group_of(api_version), kind) else {
            let meta = value.get("metadata");
            let field = |key: &str| {
                meta.and_then(|m| m.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let (namespace, name) = (field("namespace"), field("name"));
            let object = if namespace.is_empty() {
                name
            } else {
                format!("{namespace}/{name}")
            };
            self.ignored.push((
                document.origin.to_string(),
                format!("{api_version} {kind} {object}"),
            ));
            return Ok(());
        };
        // Read with the v1 types, an older Ingress would lose its backend silently.
        if known == Known::Ingress && api_version != "networking.k8s.io/v1" {
            return Err(ManifestProblem::RemovedVersion {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                removed_in: "1.22",
                current: "networking.k8s.io/v1",
            });
        }
        if known == Known::SecurityBaseline {
            let name = value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            self.notes.push(format!(
                "{}: SecurityBaseline {name} is not used as a baseline here; pass its file with --baseline",
                document.origin
            ));
            self.ignored.push((
                document.origin.to_string(),
                format!("{api_version} {kind} {name}"),
            ));
            return Ok(());
        }
        let meta: ObjectMeta = value
            .get("metadata")
            .map(|m| typed::<ObjectMeta>(m, "metadata"))
            .transpose()?
            .unwrap_or_default();
        let name = meta.name.clone().filter(|n| !n.is_empty());
        let Some(name) = name else {
            return Err(ManifestProblem::NoName {
                kind: kind.to_owned(),
            });
        };
        let namespace = meta.namespace.clone().unwrap_or_default();
        if known.namespaced() && namespace.is_empty() {
            return Err(ManifestProblem::NoNamespace {
                kind: kind.to_owned(),
                name,
            });
        }
        let namespace = if known.namespaced() {
            namespace
        } else {
            String::new()
        };
        self.remember(kind, &namespace, &name, &document.origin)?;
        if let Some(object) = known.parse(value, kind)? {
            self.add(object, &document.origin.to_string())?;
        }
        Ok(())
    }

    /// Adds one object, from a manifest or the cluster: the one place that decides what each
    /// kind contributes. A namespace being deleted is left out (its objects go with it).
    pub fn add(
        &mut self,
        object: ClusterObject,
        origin: &str,
    ) -> Result<(), DuplicateObservations> {
        let name_and_labels = |meta: &ObjectMeta| {
            (
                meta.name.clone().unwrap_or_default(),
                meta.labels.clone().unwrap_or_default(),
            )
        };
        match object {
            ClusterObject::Namespace(namespace) => {
                if namespace.metadata.deletion_timestamp.is_none() {
                    self.namespaces.push(name_and_labels(&namespace.metadata));
                }
            }
            ClusterObject::Node(node) => {
                let (name, labels) = name_and_labels(&node.metadata);
                let kubelet = node
                    .status
                    .as_ref()
                    .and_then(|status| status.node_info.as_ref())
                    .map(|info| info.kubelet_version.clone())
                    .unwrap_or_default();
                self.kubelets.push((name.clone(), kubelet));
                self.nodes.push((name, labels));
            }
            ClusterObject::Ingress(ingress) => self.ingresses.push((
                ingress.metadata.namespace.clone().unwrap_or_default(),
                IngressFacts::from_ingress(&ingress),
            )),
            ClusterObject::Secret(secret) => self.add_secrets(&[secret], false),
            ClusterObject::Gateway { metadata, facts } => self
                .gateways
                .push((metadata.namespace.unwrap_or_default(), facts)),
            ClusterObject::NodeReport(report) => {
                let mut spec = report.spec;
                if spec.node_name.is_empty() {
                    spec.node_name = report.metadata.name.unwrap_or_default();
                }
                self.add_node_report(spec, origin)?;
            }
            ClusterObject::NetworkPolicy(policy) => {
                self.objects.push(NamespacedObject::NetworkPolicy(policy));
            }
            ClusterObject::ResourceQuota(quota) => {
                self.objects.push(NamespacedObject::ResourceQuota(quota));
            }
            ClusterObject::LimitRange(limits) => {
                self.objects.push(NamespacedObject::LimitRange(limits));
            }
            ClusterObject::Role(role) => {
                self.objects.push(NamespacedObject::Role(role.clone()));
                self.roles.push(role);
            }
            ClusterObject::RoleBinding(binding) => self.role_bindings.push(binding),
            ClusterObject::ClusterRole(role) => self.cluster_roles.push(role),
            ClusterObject::ClusterRoleBinding(binding) => {
                self.cluster_role_bindings.push(binding);
            }
        }
        Ok(())
    }

    /// Adds Secrets listed with a `type=kubernetes.io/tls` field selector (`check --live
    /// --tls-secrets`): a name not among them may be a Secret of another type.
    pub fn add_tls_secrets(&mut self, secrets: &[Secret]) {
        self.add_secrets(secrets, true);
    }

    /// Keeps each Secret's type and leaf certificate facts (never its data).
    fn add_secrets(&mut self, secrets: &[Secret], only_tls_type: bool) {
        if let SecretInventory::NotRead(_) = self.secrets {
            self.secrets = SecretInventory::Read {
                secrets: Vec::new(),
                only_tls_type,
            };
        }
        if let SecretInventory::Read { secrets: known, .. } = &mut self.secrets {
            known.extend(secrets.iter().map(|secret| {
                (
                    secret.metadata.namespace.clone().unwrap_or_default(),
                    secret.metadata.name.clone().unwrap_or_default(),
                    secret_facts(secret),
                )
            }));
        }
    }

    fn remember(
        &mut self,
        kind: &str,
        namespace: &str,
        name: &str,
        origin: &Origin,
    ) -> Result<(), ManifestProblem> {
        let key = (kind.to_owned(), namespace.to_owned(), name.to_owned());
        if let Some(first) = self.seen.get(&key) {
            let object = if namespace.is_empty() {
                name.to_owned()
            } else {
                format!("{namespace}/{name}")
            };
            return Err(ManifestProblem::Duplicate {
                kind: kind.to_owned(),
                object,
                first: first.clone(),
            });
        }
        self.seen.insert(key, origin.to_string());
        Ok(())
    }

    /// Adds one node's observations (from a NodeReport manifest, the cluster, or node files).
    pub fn add_node_report(
        &mut self,
        report: NodeReportSpec,
        origin: &str,
    ) -> Result<(), DuplicateObservations> {
        if self
            .node_reports
            .iter()
            .any(|r| r.node_name == report.node_name)
        {
            return Err(DuplicateObservations {
                node: report.node_name,
                origin: origin.to_owned(),
            });
        }
        self.node_reports.push(report);
        Ok(())
    }

    /// Namespaces that hold objects but have no Namespace: not evaluated (their labels are
    /// unknown, so selection cannot be decided).
    pub fn namespaces_without_manifest(&self) -> BTreeSet<String> {
        let known: BTreeSet<&str> = self.namespaces.iter().map(|(n, _)| n.as_str()).collect();
        self.objects
            .iter()
            .map(NamespacedObject::namespace)
            .chain(
                self.role_bindings
                    .iter()
                    .filter_map(|b| b.metadata.namespace.as_deref()),
            )
            .filter(|ns| !known.contains(ns))
            .map(str::to_owned)
            .collect()
    }

    /// Counts per kind, for the verbose summary.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let count = |kind: &str| {
            self.objects
                .iter()
                .filter(|o| o.kind().as_str() == kind)
                .count()
        };
        vec![
            ("Namespace", self.namespaces.len()),
            ("NetworkPolicy", count("NetworkPolicy")),
            ("Role", self.roles.len()),
            ("ResourceQuota", count("ResourceQuota")),
            ("LimitRange", count("LimitRange")),
            ("RoleBinding", self.role_bindings.len()),
            ("ClusterRole", self.cluster_roles.len()),
            ("ClusterRoleBinding", self.cluster_role_bindings.len()),
            ("Node", self.nodes.len()),
            ("Ingress", self.ingresses.len()),
            (
                "Secret",
                match &self.secrets {
                    SecretInventory::Read { secrets, .. } => secrets.len(),
                    SecretInventory::NotRead(_) => 0,
                },
            ),
            ("Gateway", self.gateways.len()),
            ("NodeReport", self.node_reports.len()),
        ]
    }

    /// The snapshot the domain evaluates. `check_nodes` is forced for a live cluster;
    /// otherwise nodes are checked when any node information was given. Which nodes are
    /// checked follows `domain::node::evaluate` (a NodeReport without its Node is a leftover when
    /// Nodes are listed).
    pub fn into_snapshot(self, live: bool) -> ClusterSnapshot {
        let rbac = RbacIndex::from_objects(
            self.roles
                .iter()
                .map(RbacObject::from)
                .chain(self.cluster_roles.iter().map(RbacObject::from))
                .chain(self.role_bindings.iter().map(RbacObject::from))
                .chain(self.cluster_role_bindings.iter().map(RbacObject::from)),
        );
        let check_nodes = live || !self.nodes.is_empty() || !self.node_reports.is_empty();
        // A cluster, or manifests with Nodes, list the Nodes; the node of `--node` files
        // is one of them even without its Node object.
        let node_inventory = if live || !self.nodes.is_empty() {
            NodeInventory::Listed
        } else {
            NodeInventory::ReportsOnly
        };
        // The kube-apiserver versions the agents reported, of the nodes under check (the
        // node checks' rule). The `--node` files carry none: files, not a running process.
        let reported = {
            let no_labels = Labels::new();
            let under_check =
                nodes_under_check(node_inventory, &self.nodes, &self.node_reports, &no_labels);
            reported_api_servers(
                under_check
                    .iter()
                    .filter(|node| Some(node.name) != self.node_of_files.as_deref())
                    .filter_map(|node| Some((node.name, node.report?))),
            )
        };
        // Versions are known from a cluster, a given API server version, listed Nodes or
        // reported kube-apiserver versions.
        let versions = (live
            || self.api_server_version.is_some()
            || !self.nodes.is_empty()
            || !reported.is_empty())
        .then(|| VersionFacts {
            api_servers: self
                .api_server_version
                .map(|version| ("/version".to_owned(), version))
                .into_iter()
                .chain(reported)
                .collect(),
            kubelets: self.kubelets,
            deprecated_metrics: self.deprecated_metrics,
            now: k8s_openapi::jiff::Timestamp::now(),
        });
        let mut nodes = self.nodes;
        if let Some(name) = self.node_of_files
            && node_inventory == NodeInventory::Listed
            && !nodes.iter().any(|(node, _)| *node == name)
        {
            nodes.push((name, Labels::new()));
        }
        ClusterSnapshot {
            namespaces: self.namespaces,
            objects: self.objects,
            rbac,
            ingresses: self.ingresses,
            secrets: self.secrets,
            observed_at: k8s_openapi::jiff::Timestamp::now(),
            gateways: self.gateways,
            nodes,
            node_reports: self.node_reports,
            node_inventory,
            check_nodes,
            versions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::check::documents::parse_named;

    fn inventory(text: &str) -> Result<Inventory, Vec<ManifestError>> {
        let documents = parse_named("m.yaml", text).expect("parses");
        let mut inventory = Inventory::default();
        inventory.add_documents(&documents)?;
        Ok(inventory)
    }

    #[test]
    fn reported_apiserver_versions_are_those_of_nodes_under_check_not_of_node_files() {
        let report = |node: &str, version: &str| {
            let mut report = NodeReportSpec {
                node_name: node.to_owned(),
                ..NodeReportSpec::default()
            };
            report.api_server.header = crate::api::Observation::observed(String::new());
            report.api_server.version = version.to_owned();
            report
        };
        let mut inv = Inventory {
            nodes: vec![("cp-1".to_owned(), Labels::new())],
            ..Inventory::default()
        };
        inv.add_node_report(report("cp-1", "v1.36.3"), "m.yaml")
            .expect("added");
        inv.add_node_report(report("gone", "v1.20.0"), "m.yaml")
            .expect("added");
        // The --node files: flags read from files, no running process asked.
        inv.add_node_report(report("cp-9", ""), "--node")
            .expect("added");
        inv.node_of_files = Some("cp-9".to_owned());
        inv.api_server_version = Some(Ok("v1.36.3".to_owned()));
        let versions = inv.into_snapshot(false).versions.expect("versions");
        assert_eq!(
            versions.api_servers,
            [
                ("/version".to_owned(), Ok("v1.36.3".to_owned())),
                ("cp-1".to_owned(), Ok("v1.36.3".to_owned())),
            ]
        );

        // Reports alone (no Node manifests) stand for their nodes, and make versions known.
        let mut inv = Inventory::default();
        inv.add_node_report(report("cp-1", "v1.34.1"), "m.yaml")
            .expect("added");
        let versions = inv.into_snapshot(false).versions.expect("versions");
        assert_eq!(
            versions.api_servers,
            [("cp-1".to_owned(), Ok("v1.34.1".to_owned()))]
        );
        assert!(Inventory::default().into_snapshot(false).versions.is_none());
    }

    #[test]
    fn known_kinds_are_read_and_others_ignored() {
        let inv = inventory(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {env: prod}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: shop}\nrules: []\n",
        )
        .expect("valid");
        assert_eq!(inv.namespaces.len(), 1);
        assert_eq!(inv.roles.len(), 1);
        assert_eq!(inv.objects.len(), 1, "a Role is also a generated kind");
        assert_eq!(
            inv.ignored,
            vec![(
                "m.yaml: document 2".to_owned(),
                "apps/v1 Deployment shop/web".to_owned()
            )]
        );
    }

    #[test]
    fn malformed_known_kinds_missing_namespaces_and_duplicates_are_errors() {
        let errors = inventory(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {policyTypes: 7}\n---\napiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\nhello: world\n",
        )
        .expect_err("invalid");
        assert_eq!(errors.len(), 4, "{errors:#?}");
        // Each error says which file and document, as data and in its message.
        let at: Vec<(&str, usize)> = errors
            .iter()
            .map(|e| (e.origin.file.as_str(), e.origin.document))
            .collect();
        assert_eq!(
            at,
            [("m.yaml", 1), ("m.yaml", 2), ("m.yaml", 4), ("m.yaml", 5)]
        );
        assert!(
            matches!(&errors[0].problem, ManifestProblem::Invalid { kind, .. } if kind == "NetworkPolicy")
        );
        assert!(matches!(
            errors[3].problem,
            ManifestProblem::NotAnObject | ManifestProblem::NoKind
        ));
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(messages[0].starts_with("m.yaml: document 1: not a valid NetworkPolicy"));
        assert!(messages[1].contains("document 2: ResourceQuota q has no metadata.namespace"));
        assert!(
            messages[2].contains("document 4: Namespace x is also defined in m.yaml: document 3")
        );
        assert!(messages[3].contains("document 5: not a Kubernetes object"));
    }

    #[test]
    fn a_node_observed_twice_names_both_documents() {
        let report = "apiVersion: kube-baseline.dev/v1alpha1\nkind: NodeReport\nmetadata: {name: node-1}\nspec: {nodeName: node-1}\n";
        let errors = inventory(&format!("{report}---\n{report}"))
            .expect_err("the second report is an error");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].origin.document, 2);
        assert!(matches!(
            errors[0].problem,
            ManifestProblem::Duplicate { .. }
        ));
        assert!(
            errors[0].to_string().starts_with(
                "m.yaml: document 2: NodeReport node-1 is also defined in m.yaml: document 1"
            ),
            "{errors:#?}"
        );
    }
}

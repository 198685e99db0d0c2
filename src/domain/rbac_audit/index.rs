//! [`RbacIndex`]: every Role, ClusterRole, RoleBinding and ClusterRoleBinding, normalized and
//! cross-referenced so that auditing one namespace touches only what lives in (or is bound
//! into) that namespace, and a change to one object names exactly the namespaces to audit
//! again.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::rules::{EffectiveRule, Rule};

/// The only API group a binding's roleRef may name.
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// A namespace that no ServiceAccount of which is an ordinary workload identity.
const KUBE_SYSTEM: &str = "kube-system";

/// Groups and users that stand for "anyone": requests without credentials, or every
/// authenticated identity.
const PUBLIC_IDENTITIES: [&str; 3] = [
    "system:anonymous",
    "system:unauthenticated",
    "system:authenticated",
];

/// One of the four RBAC objects, borrowed, as the index takes them in.
#[derive(Debug, Clone, Copy)]
pub enum RbacObject<'a> {
    Role(&'a Role),
    ClusterRole(&'a ClusterRole),
    RoleBinding(&'a RoleBinding),
    ClusterRoleBinding(&'a ClusterRoleBinding),
}

impl<'a> From<&'a Role> for RbacObject<'a> {
    fn from(object: &'a Role) -> Self {
        Self::Role(object)
    }
}

impl<'a> From<&'a ClusterRole> for RbacObject<'a> {
    fn from(object: &'a ClusterRole) -> Self {
        Self::ClusterRole(object)
    }
}

impl<'a> From<&'a RoleBinding> for RbacObject<'a> {
    fn from(object: &'a RoleBinding) -> Self {
        Self::RoleBinding(object)
    }
}

impl<'a> From<&'a ClusterRoleBinding> for RbacObject<'a> {
    fn from(object: &'a ClusterRoleBinding) -> Self {
        Self::ClusterRoleBinding(object)
    }
}

/// Names one RBAC object, e.g. from a watch event, whether or not it still exists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RbacObjectRef {
    Role { namespace: String, name: String },
    ClusterRole { name: String },
    RoleBinding { namespace: String, name: String },
    ClusterRoleBinding { name: String },
}

impl RbacObjectRef {
    /// The reference of an object; None when it lacks a name (or a namespace, for the
    /// namespaced kinds), which the API server never returns but a manifest file may.
    pub fn of<'a>(object: impl Into<RbacObject<'a>>) -> Option<Self> {
        fn name(meta: &ObjectMeta) -> Option<String> {
            meta.name.clone().filter(|n| !n.is_empty())
        }
        fn namespace(meta: &ObjectMeta) -> Option<String> {
            meta.namespace.clone().filter(|n| !n.is_empty())
        }
        Some(match object.into() {
            RbacObject::Role(o) => Self::Role {
                namespace: namespace(&o.metadata)?,
                name: name(&o.metadata)?,
            },
            RbacObject::ClusterRole(o) => Self::ClusterRole {
                name: name(&o.metadata)?,
            },
            RbacObject::RoleBinding(o) => Self::RoleBinding {
                namespace: namespace(&o.metadata)?,
                name: name(&o.metadata)?,
            },
            RbacObject::ClusterRoleBinding(o) => Self::ClusterRoleBinding {
                name: name(&o.metadata)?,
            },
        })
    }
}

/// Who a binding grants to, normalized: `User system:serviceaccount:ns:name` is the
/// ServiceAccount ns/name, and a RoleBinding's ServiceAccount without namespace is in the
/// binding's namespace (as the authorizer reads them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Identity {
    ServiceAccount { namespace: String, name: String },
    User(String),
    Group(String),
}

impl Identity {
    /// None for subjects no request can match (unknown kind, empty name, ServiceAccount
    /// without namespace in a ClusterRoleBinding).
    fn from_subject(subject: &Subject, binding_namespace: Option<&str>) -> Option<Self> {
        if subject.name.is_empty() {
            return None;
        }
        match subject.kind.as_str() {
            "ServiceAccount" => {
                let namespace = subject
                    .namespace
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .or(binding_namespace)?;
                Some(Self::ServiceAccount {
                    namespace: namespace.to_owned(),
                    name: subject.name.clone(),
                })
            }
            "User" => Some(
                match subject
                    .name
                    .strip_prefix("system:serviceaccount:")
                    .and_then(|rest| rest.split_once(':'))
                {
                    Some((namespace, name))
                        if !namespace.is_empty() && !name.is_empty() && !name.contains(':') =>
                    {
                        Self::ServiceAccount {
                            namespace: namespace.to_owned(),
                            name: name.to_owned(),
                        }
                    }
                    _ => Self::User(subject.name.clone()),
                },
            ),
            "Group" => Some(Self::Group(subject.name.clone())),
            _ => None,
        }
    }

    /// The namespace whose ServiceAccounts this identity is (some of), if any. A
    /// ClusterRoleBinding to such an identity is audited in that namespace.
    pub fn resident_namespace(&self) -> Option<&str> {
        match self {
            Self::ServiceAccount { namespace, .. } => Some(namespace),
            Self::Group(name) => name
                .strip_prefix("system:serviceaccounts:")
                .filter(|ns| !ns.is_empty()),
            Self::User(_) => None,
        }
    }

    /// Stands for anyone: system:anonymous, system:unauthenticated, system:authenticated.
    pub fn is_public(&self) -> bool {
        match self {
            Self::User(name) | Self::Group(name) => PUBLIC_IDENTITIES.contains(&name.as_str()),
            Self::ServiceAccount { .. } => false,
        }
    }

    /// The control plane's own identities (system:kube-controller-manager, system:nodes,
    /// system:masters, ServiceAccounts of kube-system, ...). They hold their permissions by
    /// design and nobody can take them away, so reporting them is noise. Not control plane:
    /// the public groups, and groups of ServiceAccounts outside kube-system.
    pub fn is_control_plane(&self) -> bool {
        match self {
            Self::ServiceAccount { namespace, .. } => namespace == KUBE_SYSTEM,
            Self::User(name) | Self::Group(name) => {
                if self.is_public() {
                    return false;
                }
                if let Self::Group(group) = self
                    && (group == "system:serviceaccounts"
                        || group.starts_with("system:serviceaccounts:"))
                {
                    return self.resident_namespace() == Some(KUBE_SYSTEM);
                }
                name.starts_with("system:")
            }
        }
    }

    /// "ServiceAccount shop/ci", "User alice", "Group devs".
    pub fn describe(&self) -> String {
        match self {
            Self::ServiceAccount { namespace, name } => {
                format!("ServiceAccount {namespace}/{name}")
            }
            Self::User(name) => format!("User {name}"),
            Self::Group(name) => format!("Group {name}"),
        }
    }
}

/// What a binding's roleRef points at. A RoleBinding's Role is in the binding's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RoleTarget {
    Role(String),
    ClusterRole(String),
}

impl RoleTarget {
    /// None for a roleRef the API server would reject (other group or kind, empty name).
    fn from_role_ref(role_ref: &RoleRef, namespaced: bool) -> Option<Self> {
        if role_ref.api_group != RBAC_GROUP || role_ref.name.is_empty() {
            return None;
        }
        match role_ref.kind.as_str() {
            "Role" if namespaced => Some(Self::Role(role_ref.name.clone())),
            "ClusterRole" => Some(Self::ClusterRole(role_ref.name.clone())),
            _ => None,
        }
    }
}

/// A RoleBinding or ClusterRoleBinding, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BindingRecord {
    pub name: String,
    /// None for a ClusterRoleBinding.
    pub namespace: Option<String>,
    /// None when the roleRef is invalid: the binding then grants nothing.
    pub role: Option<RoleTarget>,
    pub subjects: Vec<Identity>,
}

impl BindingRecord {
    fn new(
        name: String,
        namespace: Option<String>,
        role_ref: &RoleRef,
        subjects: Option<&[Subject]>,
    ) -> Self {
        let role = RoleTarget::from_role_ref(role_ref, namespace.is_some());
        let subjects = subjects
            .unwrap_or_default()
            .iter()
            .filter_map(|s| Identity::from_subject(s, namespace.as_deref()))
            .collect();
        Self {
            name,
            namespace,
            role,
            subjects,
        }
    }

    /// The namespaces a ClusterRoleBinding is audited in.
    fn resident_namespaces(&self) -> BTreeSet<String> {
        self.subjects
            .iter()
            .filter_map(|s| s.resident_namespace().map(str::to_owned))
            .collect()
    }

    fn cluster_role(&self) -> Option<&str> {
        match &self.role {
            Some(RoleTarget::ClusterRole(name)) => Some(name),
            _ => None,
        }
    }

    /// "RoleBinding shop/ci-admin" or "ClusterRoleBinding ci-admin".
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("RoleBinding {namespace}/{}", self.name),
            None => format!("ClusterRoleBinding {}", self.name),
        }
    }
}

/// A ClusterRole, normalized.
#[derive(Debug, Clone, PartialEq)]
struct ClusterRoleRecord {
    labels: BTreeMap<String, String>,
    /// The `rules` field as stored (for an aggregated role, what the controller-manager
    /// last wrote).
    own_rules: Vec<EffectiveRule>,
    /// `aggregationRule.clusterRoleSelectors`, when the role aggregates.
    aggregation: Option<Vec<LabelSelector>>,
}

fn resource_rules(rules: Option<&[PolicyRule]>, source: Option<&str>) -> Vec<EffectiveRule> {
    rules
        .unwrap_or_default()
        .iter()
        .filter_map(Rule::from_policy_rule)
        .map(|rule| EffectiveRule {
            rule,
            source: source.map(str::to_owned),
        })
        .collect()
}

/// metav1.LabelSelector semantics as the aggregation controller applies them: all
/// matchLabels and all expressions must hold; an empty selector matches every ClusterRole;
/// an invalid one (unknown operator, In without values) matches none.
fn label_selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = selector.match_labels.as_ref();
    let expressions = selector.match_expressions.as_deref().unwrap_or_default();
    match_labels
        .into_iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value))
        && expressions.iter().all(|expression| {
            let value = labels.get(&expression.key);
            let values = expression.values.as_deref().unwrap_or_default();
            match expression.operator.as_str() {
                "In" => !values.is_empty() && value.is_some_and(|v| values.contains(v)),
                "NotIn" => !values.is_empty() && value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

type NamespacedName = (String, String);

/// Every RBAC object of the cluster, normalized, with the reverse indexes incremental
/// re-evaluation needs. Build it once from the reflector caches ([`RbacIndex::from_objects`]),
/// then keep it current with [`RbacIndex::upsert`] and [`RbacIndex::remove`], which return
/// the namespaces to audit again.
#[derive(Debug, Default, Clone)]
pub struct RbacIndex {
    /// Rules of each Role, shared between Roles with the same rules (a baseline's Role is
    /// the same in every namespace: 10,000 namespaces hold one copy).
    roles: BTreeMap<NamespacedName, Arc<[EffectiveRule]>>,
    /// One copy of each distinct rule list in `roles`; a list no Role uses any more is
    /// dropped with the last Role that had it.
    role_rule_lists: HashSet<Arc<[EffectiveRule]>>,
    cluster_roles: BTreeMap<String, ClusterRoleRecord>,
    role_bindings: BTreeMap<NamespacedName, BindingRecord>,
    cluster_role_bindings: BTreeMap<String, BindingRecord>,

    /// Effective rules of every aggregating ClusterRole: its own stored rules plus those of
    /// every ClusterRole it reaches through its selectors, transitively.
    aggregated_rules: BTreeMap<String, Vec<EffectiveRule>>,
    /// ClusterRole -> aggregating ClusterRoles that include its rules, transitively.
    aggregated_into: BTreeMap<String, BTreeSet<String>>,
    /// ClusterRole -> RoleBindings that reference it.
    role_bindings_by_cluster_role: BTreeMap<String, BTreeSet<NamespacedName>>,
    /// ClusterRole -> ClusterRoleBindings that reference it.
    cluster_role_bindings_by_cluster_role: BTreeMap<String, BTreeSet<String>>,
    /// Namespace -> ClusterRoleBindings with a subject resident there.
    cluster_role_bindings_by_namespace: BTreeMap<String, BTreeSet<String>>,
}

impl RbacIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// An index of all the given objects, with aggregation resolved once at the end.
    /// Objects without a name (or namespace, for namespaced kinds) are skipped.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = RbacObject<'a>>) -> Self {
        let mut index = Self::new();
        for object in objects {
            index.store(object);
        }
        index.resolve_aggregation();
        index
    }

    /// Adds or replaces an object; returns the namespaces whose audit may change (before
    /// and after the change), empty when nothing the audit reads changed (a resync, a
    /// resourceVersion or annotation bump).
    pub fn upsert<'a>(&mut self, object: impl Into<RbacObject<'a>>) -> BTreeSet<String> {
        let object = object.into();
        let Some(reference) = RbacObjectRef::of(object) else {
            return BTreeSet::new();
        };
        if !self.differs(object, &reference) {
            return BTreeSet::new();
        }
        let mut affected = self.affected_namespaces(&reference);
        self.store(object);
        if matches!(object, RbacObject::ClusterRole(_)) {
            self.resolve_aggregation();
        }
        affected.extend(self.affected_namespaces(&reference));
        affected
    }

    /// Removes an object (a watch delete event); returns the namespaces whose audit may
    /// change. Removing an unknown object changes nothing.
    pub fn remove(&mut self, object: &RbacObjectRef) -> BTreeSet<String> {
        if !self.contains(object) {
            return BTreeSet::new();
        }
        let affected = self.affected_namespaces(object);
        match object {
            RbacObjectRef::Role { namespace, name } => {
                if let Some(rules) = self.roles.remove(&(namespace.clone(), name.clone())) {
                    self.release_role_rules(rules);
                }
            }
            RbacObjectRef::ClusterRole { name } => {
                if self.cluster_roles.remove(name).is_some() {
                    self.resolve_aggregation();
                }
            }
            RbacObjectRef::RoleBinding { namespace, name } => {
                self.unlink_role_binding(&(namespace.clone(), name.clone()));
            }
            RbacObjectRef::ClusterRoleBinding { name } => self.unlink_cluster_role_binding(name),
        }
        affected
    }

    /// The namespaces whose audit depends on an object, as the index stands now:
    /// - a Role or RoleBinding: its own namespace;
    /// - a ClusterRoleBinding: the namespaces of its resident subjects;
    /// - a ClusterRole: the namespaces of every binding to it or to a ClusterRole that
    ///   aggregates it.
    ///
    /// Call it before and after a change (or use [`RbacIndex::upsert`] and
    /// [`RbacIndex::remove`], which do) to cover objects that move.
    pub fn affected_namespaces(&self, object: &RbacObjectRef) -> BTreeSet<String> {
        match object {
            RbacObjectRef::Role { namespace, .. }
            | RbacObjectRef::RoleBinding { namespace, .. } => BTreeSet::from([namespace.clone()]),
            RbacObjectRef::ClusterRoleBinding { name } => self
                .cluster_role_bindings
                .get(name)
                .map(BindingRecord::resident_namespaces)
                .unwrap_or_default(),
            RbacObjectRef::ClusterRole { name } => {
                let mut roles = BTreeSet::from([name.clone()]);
                roles.extend(
                    self.aggregated_into
                        .get(name)
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
                let mut namespaces = BTreeSet::new();
                for role in &roles {
                    for (namespace, _) in self
                        .role_bindings_by_cluster_role
                        .get(role)
                        .into_iter()
                        .flatten()
                    {
                        namespaces.insert(namespace.clone());
                    }
                    for binding in self
                        .cluster_role_bindings_by_cluster_role
                        .get(role)
                        .into_iter()
                        .flatten()
                        .filter_map(|b| self.cluster_role_bindings.get(b))
                    {
                        namespaces.extend(binding.resident_namespaces());
                    }
                }
                namespaces
            }
        }
    }

    /// Whether the index holds the object.
    pub fn contains(&self, object: &RbacObjectRef) -> bool {
        match object {
            RbacObjectRef::Role { namespace, name } => {
                self.roles.contains_key(&(namespace.clone(), name.clone()))
            }
            RbacObjectRef::ClusterRole { name } => self.cluster_roles.contains_key(name),
            RbacObjectRef::RoleBinding { namespace, name } => self
                .role_bindings
                .contains_key(&(namespace.clone(), name.clone())),
            RbacObjectRef::ClusterRoleBinding { name } => {
                self.cluster_role_bindings.contains_key(name)
            }
        }
    }

    /// Rules of the Role `namespace/name`; None when it does not exist.
    pub(super) fn role_rules(&self, namespace: &str, name: &str) -> Option<&[EffectiveRule]> {
        self.roles
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|rules| &**rules)
    }

    /// Effective rules of a ClusterRole, aggregation resolved; None when it does not exist.
    pub(super) fn cluster_role_rules(&self, name: &str) -> Option<&[EffectiveRule]> {
        if let Some(rules) = self.aggregated_rules.get(name) {
            return Some(rules);
        }
        self.cluster_roles.get(name).map(|r| r.own_rules.as_slice())
    }

    /// Whether a ClusterRole aggregates others.
    pub(super) fn is_aggregated(&self, name: &str) -> bool {
        self.cluster_roles
            .get(name)
            .is_some_and(|r| r.aggregation.is_some())
    }

    /// Roles of one namespace, by name.
    pub(super) fn roles_in<'s>(
        &'s self,
        namespace: &'s str,
    ) -> impl Iterator<Item = (&'s str, &'s [EffectiveRule])> + 's {
        self.roles
            .range((namespace.to_owned(), String::new())..)
            .take_while(move |((ns, _), _)| ns == namespace)
            .map(|((_, name), rules)| (name.as_str(), &**rules))
    }

    /// RoleBindings of one namespace, by name.
    pub(super) fn role_bindings_in<'s>(
        &'s self,
        namespace: &'s str,
    ) -> impl Iterator<Item = &'s BindingRecord> + 's {
        self.role_bindings
            .range((namespace.to_owned(), String::new())..)
            .take_while(move |((ns, _), _)| ns == namespace)
            .map(|(_, binding)| binding)
    }

    /// ClusterRoleBindings with a subject resident in `namespace`, by name.
    pub(super) fn cluster_role_bindings_for<'s>(
        &'s self,
        namespace: &str,
    ) -> impl Iterator<Item = &'s BindingRecord> + 's {
        self.cluster_role_bindings_by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .filter_map(|name| self.cluster_role_bindings.get(name))
    }

    /// Whether storing `object` would change what the index holds.
    fn differs(&self, object: RbacObject<'_>, reference: &RbacObjectRef) -> bool {
        match (object, reference) {
            (RbacObject::Role(role), RbacObjectRef::Role { namespace, name }) => {
                self.roles
                    .get(&(namespace.clone(), name.clone()))
                    .map(|r| &**r)
                    != Some(resource_rules(role.rules.as_deref(), None).as_slice())
            }
            (RbacObject::ClusterRole(role), RbacObjectRef::ClusterRole { name }) => {
                self.cluster_roles.get(name) != Some(&cluster_role_record(name, role))
            }
            (RbacObject::RoleBinding(binding), RbacObjectRef::RoleBinding { namespace, name }) => {
                self.role_bindings.get(&(namespace.clone(), name.clone()))
                    != Some(&BindingRecord::new(
                        name.clone(),
                        Some(namespace.clone()),
                        &binding.role_ref,
                        binding.subjects.as_deref(),
                    ))
            }
            (
                RbacObject::ClusterRoleBinding(binding),
                RbacObjectRef::ClusterRoleBinding { name },
            ) => {
                self.cluster_role_bindings.get(name)
                    != Some(&BindingRecord::new(
                        name.clone(),
                        None,
                        &binding.role_ref,
                        binding.subjects.as_deref(),
                    ))
            }
            _ => true,
        }
    }

    /// Distinct Role rule lists held.
    #[cfg(test)]
    pub(super) fn role_rule_lists(&self) -> usize {
        self.role_rule_lists.len()
    }

    /// The shared copy of a Role's rule list.
    fn shared_role_rules(&mut self, rules: Vec<EffectiveRule>) -> Arc<[EffectiveRule]> {
        if let Some(shared) = self.role_rule_lists.get(rules.as_slice()) {
            return shared.clone();
        }
        let shared: Arc<[EffectiveRule]> = rules.into();
        self.role_rule_lists.insert(shared.clone());
        shared
    }

    /// Forgets a rule list a Role no longer holds, once no Role holds it.
    fn release_role_rules(&mut self, rules: Arc<[EffectiveRule]>) {
        // Two references: this one and the set's.
        if Arc::strong_count(&rules) <= 2 {
            self.role_rule_lists.remove(&*rules);
        }
    }

    /// Stores an object and its reverse-index entries; aggregation is resolved by callers.
    fn store(&mut self, object: RbacObject<'_>) {
        let Some(reference) = RbacObjectRef::of(object) else {
            return;
        };
        match (object, reference) {
            (RbacObject::Role(role), RbacObjectRef::Role { namespace, name }) => {
                let rules = self.shared_role_rules(resource_rules(role.rules.as_deref(), None));
                if let Some(old) = self.roles.insert((namespace, name), rules) {
                    self.release_role_rules(old);
                }
            }
            (RbacObject::ClusterRole(role), RbacObjectRef::ClusterRole { name }) => {
                let record = cluster_role_record(&name, role);
                self.cluster_roles.insert(name, record);
            }
            (RbacObject::RoleBinding(binding), RbacObjectRef::RoleBinding { namespace, name }) => {
                let key = (namespace.clone(), name.clone());
                self.unlink_role_binding(&key);
                let record = BindingRecord::new(
                    name,
                    Some(namespace),
                    &binding.role_ref,
                    binding.subjects.as_deref(),
                );
                if let Some(cluster_role) = record.cluster_role() {
                    self.role_bindings_by_cluster_role
                        .entry(cluster_role.to_owned())
                        .or_default()
                        .insert(key.clone());
                }
                self.role_bindings.insert(key, record);
            }
            (
                RbacObject::ClusterRoleBinding(binding),
                RbacObjectRef::ClusterRoleBinding { name },
            ) => {
                self.unlink_cluster_role_binding(&name);
                let record = BindingRecord::new(
                    name.clone(),
                    None,
                    &binding.role_ref,
                    binding.subjects.as_deref(),
                );
                if let Some(cluster_role) = record.cluster_role() {
                    self.cluster_role_bindings_by_cluster_role
                        .entry(cluster_role.to_owned())
                        .or_default()
                        .insert(name.clone());
                }
                for namespace in record.resident_namespaces() {
                    self.cluster_role_bindings_by_namespace
                        .entry(namespace)
                        .or_default()
                        .insert(name.clone());
                }
                self.cluster_role_bindings.insert(name, record);
            }
            _ => {}
        }
    }

    fn unlink_role_binding(&mut self, key: &NamespacedName) {
        let Some(old) = self.role_bindings.remove(key) else {
            return;
        };
        if let Some(cluster_role) = old.cluster_role() {
            remove_from_set(&mut self.role_bindings_by_cluster_role, cluster_role, key);
        }
    }

    fn unlink_cluster_role_binding(&mut self, name: &str) {
        let Some(old) = self.cluster_role_bindings.remove(name) else {
            return;
        };
        let name = name.to_owned();
        if let Some(cluster_role) = old.cluster_role() {
            remove_from_set(
                &mut self.cluster_role_bindings_by_cluster_role,
                cluster_role,
                &name,
            );
        }
        for namespace in old.resident_namespaces() {
            remove_from_set(
                &mut self.cluster_role_bindings_by_namespace,
                &namespace,
                &name,
            );
        }
    }

    /// Recomputes the effective rules of every aggregating ClusterRole and the reverse map.
    /// Aggregation is reachability: an aggregating role holds the rules of every ClusterRole
    /// its selectors reach, transitively (cycles end where a role was already visited), plus
    /// its own stored rules, which the authorizer uses while the controller-manager catches
    /// up. Rules are listed component roles first so a finding names the role to fix.
    fn resolve_aggregation(&mut self) {
        let edges: BTreeMap<&str, Vec<&str>> = self
            .cluster_roles
            .iter()
            .filter_map(|(name, record)| {
                let selectors = record.aggregation.as_ref()?;
                let selected = self
                    .cluster_roles
                    .iter()
                    .filter(|(other, candidate)| {
                        *other != name
                            && selectors
                                .iter()
                                .any(|s| label_selector_matches(s, &candidate.labels))
                    })
                    .map(|(other, _)| other.as_str())
                    .collect();
                Some((name.as_str(), selected))
            })
            .collect();

        let mut aggregated_rules = BTreeMap::new();
        let mut aggregated_into: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for &root in edges.keys() {
            let mut reached = BTreeSet::new();
            let mut pending = vec![root];
            while let Some(current) = pending.pop() {
                for &next in edges.get(current).into_iter().flatten() {
                    if next != root && reached.insert(next) {
                        pending.push(next);
                    }
                }
            }
            let mut rules: Vec<EffectiveRule> = Vec::new();
            for component in reached.iter().copied().chain([root]) {
                if component != root {
                    aggregated_into
                        .entry(component.to_owned())
                        .or_default()
                        .insert(root.to_owned());
                }
                for rule in self
                    .cluster_roles
                    .get(component)
                    .into_iter()
                    .flat_map(|r| &r.own_rules)
                {
                    if !rules.iter().any(|known| known.rule == rule.rule) {
                        rules.push(rule.clone());
                    }
                }
            }
            aggregated_rules.insert(root.to_owned(), rules);
        }
        self.aggregated_rules = aggregated_rules;
        self.aggregated_into = aggregated_into;
    }
}

fn cluster_role_record(name: &str, role: &ClusterRole) -> ClusterRoleRecord {
    ClusterRoleRecord {
        labels: role.metadata.labels.clone().unwrap_or_default(),
        own_rules: resource_rules(role.rules.as_deref(), Some(name)),
        aggregation: role
            .aggregation_rule
            .as_ref()
            .map(|a| a.cluster_role_selectors.clone().unwrap_or_default()),
    }
}

fn remove_from_set<K, Q, V>(map: &mut BTreeMap<K, BTreeSet<V>>, key: &Q, value: &V)
where
    K: Ord + std::borrow::Borrow<Q>,
    Q: Ord + ?Sized,
    V: Ord,
{
    if let Some(set) = map.get_mut(key) {
        set.remove(value);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

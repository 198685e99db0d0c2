//! The RBAC audit against inline YAML fixtures: each check with the grants it must flag and
//! the near misses it must not, aggregation, ClusterRoleBindings, exemptions, and the
//! incremental index. Check IDs are spelled out as strings so renaming one fails here.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Deserialize;

use super::*;
use crate::domain::checks;

/// One fixture document, dispatched on `kind`.
#[derive(Deserialize)]
#[serde(tag = "kind")]
enum Fixture {
    Role(Role),
    ClusterRole(ClusterRole),
    RoleBinding(RoleBinding),
    ClusterRoleBinding(ClusterRoleBinding),
}

impl Fixture {
    fn object(&self) -> RbacObject<'_> {
        match self {
            Self::Role(o) => o.into(),
            Self::ClusterRole(o) => o.into(),
            Self::RoleBinding(o) => o.into(),
            Self::ClusterRoleBinding(o) => o.into(),
        }
    }
}

fn fixtures(yaml: &str) -> Vec<Fixture> {
    serde_saphyr::from_multiple(yaml).expect("fixtures parse")
}

fn index(yaml: &str) -> RbacIndex {
    let fixtures = fixtures(yaml);
    RbacIndex::from_objects(fixtures.iter().map(Fixture::object))
}

fn settings(yaml: &str) -> RbacAuditSettings {
    serde_saphyr::from_str(yaml).expect("settings parse")
}

fn audit(yaml: &str, namespace: &str) -> Vec<DriftEntry> {
    audit_namespace(&index(yaml), namespace, &RbacAuditSettings::default())
}

/// (kind, name, check) of every finding, in output order.
fn found(entries: &[DriftEntry]) -> Vec<(&str, &str, &str)> {
    entries
        .iter()
        .map(|e| (e.kind.as_str(), e.name.as_str(), e.check.as_str()))
        .collect()
}

fn message<'e>(entries: &'e [DriftEntry], check: &str) -> &'e str {
    entries
        .iter()
        .find(|e| e.check == check)
        .map(|e| e.message.as_str())
        .unwrap_or_else(|| panic!("no {check} finding in {entries:#?}"))
}

fn namespaces(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// A Role with the given rules (YAML flow sequence) bound to ServiceAccount shop/app.
fn bound_role(rules: &str) -> String {
    format!(
        r#"
kind: Role
apiVersion: rbac.authorization.k8s.io/v1
metadata: {{name: app, namespace: shop}}
rules: {rules}
---
kind: RoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata: {{name: app, namespace: shop}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: app}}
subjects:
- {{kind: ServiceAccount, name: app, namespace: shop}}
"#
    )
}

/// Findings for a Role with these rules, bound to ServiceAccount shop/app.
fn role_findings(rules: &str) -> Vec<DriftEntry> {
    audit(&bound_role(rules), "shop")
}

/// Check IDs reported for a Role with these rules.
fn role_checks(rules: &str) -> Vec<String> {
    role_findings(rules).into_iter().map(|e| e.check).collect()
}

// ---------------------------------------------------------------- rule checks on Roles

#[test]
fn wildcard_verbs_are_reported_once_on_the_role_naming_its_subjects() {
    let entries = role_findings(r#"[{apiGroups: [""], resources: [pods], verbs: ["*"]}]"#);
    assert_eq!(found(&entries), [("Role", "app", "rbac.wildcard")]);
    let entry = &entries[0];
    assert_eq!(entry.namespace, "shop");
    assert_eq!(entry.reason, DriftReason::Violation);
    assert_eq!(
        entry.message,
        r#"Role shop/app grants "*" verbs on pods: rule {apiGroups: [""], resources: [pods], verbs: ["*"]}; it is bound to ServiceAccount shop/app through RoleBinding shop/app"#
    );
}

#[test]
fn wildcard_resources_and_api_groups_are_reported() {
    assert_eq!(
        role_checks(r#"[{apiGroups: [apps], resources: ["*"], verbs: [list]}]"#),
        ["rbac.wildcard"]
    );
    assert_eq!(
        role_checks(r#"[{apiGroups: ["*"], resources: [deployments], verbs: [get]}]"#),
        ["rbac.wildcard"]
    );
    // `*/scale` is a wildcard over every resource with a scale subresource.
    assert_eq!(
        role_checks(r#"[{apiGroups: [apps], resources: ["*/scale"], verbs: [update]}]"#),
        ["rbac.wildcard"]
    );
    let entries = role_findings(r#"[{apiGroups: ["*"], resources: ["*"], verbs: [list]}]"#);
    assert!(
        message(&entries, "rbac.wildcard")
            .contains(r#"grants list on "*" resources in "*" apiGroups: rule"#)
    );
}

#[test]
fn wildcard_implies_every_verb_and_resource_it_covers() {
    // get on every core resource includes secrets and pods/exec (which a GET can open).
    assert_eq!(
        role_checks(r#"[{apiGroups: [""], resources: ["*"], verbs: [get]}]"#),
        ["rbac.pod-exec", "rbac.secrets-read", "rbac.wildcard"]
    );
    // "*" verbs on secrets is both a wildcard and a read of secrets.
    assert_eq!(
        role_checks(r#"[{apiGroups: [""], resources: [secrets], verbs: ["*"]}]"#),
        ["rbac.secrets-read", "rbac.wildcard"]
    );
    // Everything, as in cluster-admin: every rule check but nodes/proxy, which a Role
    // cannot grant.
    assert_eq!(
        role_checks(r#"[{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]"#),
        [
            "rbac.escalation-verbs",
            "rbac.pod-exec",
            "rbac.secrets-read",
            "rbac.wildcard",
            "rbac.workload-create-with-tokens"
        ]
    );
}

#[test]
fn escalate_bind_and_impersonate_are_reported() {
    assert_eq!(
        role_checks(
            r#"[{apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: [bind]}]"#
        ),
        ["rbac.escalation-verbs"]
    );
    assert_eq!(
        role_checks(
            r#"[{apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [escalate, get]}]"#
        ),
        ["rbac.escalation-verbs"]
    );
    let entries = role_findings(
        r#"[{apiGroups: [""], resources: [serviceaccounts, users], verbs: [impersonate]}]"#,
    );
    assert_eq!(found(&entries), [("Role", "app", "rbac.escalation-verbs")]);
    assert!(
        message(&entries, "rbac.escalation-verbs")
            .contains("grants impersonate on users and serviceaccounts (privilege escalation)"),
        "{entries:#?}"
    );
    assert_eq!(
        role_checks(
            r#"[{apiGroups: [authentication.k8s.io], resources: [userextras/scopes], verbs: [impersonate]}]"#
        ),
        ["rbac.escalation-verbs"]
    );
}

#[test]
fn escalation_near_misses_are_not_reported() {
    // "*" verbs on configmaps include bind and escalate, which mean nothing there.
    assert_eq!(
        role_checks(r#"[{apiGroups: [""], resources: [configmaps], verbs: ["*"]}]"#),
        ["rbac.wildcard"]
    );
    // Managing RBAC objects without escalate or bind is held in check by the API server.
    assert!(
        role_checks(
            r#"[{apiGroups: [rbac.authorization.k8s.io], resources: [roles, rolebindings], verbs: [get, create, update]}]"#
        )
        .is_empty()
    );
}

#[test]
fn reading_secrets_is_reported_with_the_verbs() {
    let entries = role_findings(r#"[{apiGroups: [""], resources: [secrets], verbs: [get, list]}]"#);
    assert_eq!(found(&entries), [("Role", "app", "rbac.secrets-read")]);
    assert!(message(&entries, "rbac.secrets-read").contains("grants get and list on secrets"));
    assert_eq!(
        role_checks(r#"[{apiGroups: [""], resources: [secrets], verbs: [watch]}]"#),
        ["rbac.secrets-read"]
    );
}

#[test]
fn rules_limited_to_resource_names_are_reported_with_the_names() {
    let entries = role_findings(
        r#"[{apiGroups: [""], resources: [secrets], resourceNames: [db-password], verbs: [get]}]"#,
    );
    assert_eq!(found(&entries), [("Role", "app", "rbac.secrets-read")]);
    let text = message(&entries, "rbac.secrets-read");
    assert!(text.contains("resourceNames: [db-password]"), "{text}");
    assert!(
        text.contains("still grant access to the objects they name"),
        "{text}"
    );
}

#[test]
fn secrets_near_misses_are_not_reported() {
    for rules in [
        r#"[{apiGroups: [""], resources: [configmaps], verbs: [get, list, watch]}]"#,
        // Writing a Secret does not reveal others.
        r#"[{apiGroups: [""], resources: [secrets], verbs: [create, delete]}]"#,
        // secrets in another API group are not the core Secret.
        r#"[{apiGroups: [example.com], resources: [secrets], verbs: [get]}]"#,
    ] {
        assert!(role_checks(rules).is_empty(), "{rules}");
    }
}

#[test]
fn exec_attach_and_port_forward_are_reported() {
    for rules in [
        r#"[{apiGroups: [""], resources: [pods/exec], verbs: [create]}]"#,
        r#"[{apiGroups: [""], resources: [pods/attach], verbs: [get]}]"#,
        r#"[{apiGroups: [""], resources: [pods/portforward], verbs: [create]}]"#,
        r#"[{apiGroups: [""], resources: ["*/exec"], verbs: [create]}]"#,
    ] {
        let checks = role_checks(rules);
        assert!(
            checks.contains(&"rbac.pod-exec".to_owned()),
            "{rules}: {checks:?}"
        );
    }
    let entries = role_findings(
        r#"[{apiGroups: [""], resources: [pods/exec, pods/attach], verbs: [create]}]"#,
    );
    assert_eq!(found(&entries), [("Role", "app", "rbac.pod-exec")]);
    assert!(message(&entries, "rbac.pod-exec").contains("create on pods/exec and pods/attach"));
}

#[test]
fn exec_near_misses_are_not_reported() {
    for rules in [
        r#"[{apiGroups: [""], resources: [pods/log], verbs: [get]}]"#,
        r#"[{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}]"#,
        // The authorizer has no `resource/*` wildcard: this grants a subresource named "*".
        r#"[{apiGroups: [""], resources: ["pods/*"], verbs: [get]}]"#,
        r#"[{apiGroups: [""], resources: [pods/exec], verbs: [list]}]"#,
    ] {
        assert!(role_checks(rules).is_empty(), "{rules}");
    }
}

#[test]
fn creating_workloads_with_token_access_is_reported() {
    let entries = role_findings(
        r#"
- {apiGroups: [apps], resources: [deployments], verbs: [create]}
- {apiGroups: [""], resources: [serviceaccounts/token], verbs: [create]}
"#,
    );
    assert_eq!(
        found(&entries),
        [("Role", "app", "rbac.workload-create-with-tokens")]
    );
    let text = message(&entries, "rbac.workload-create-with-tokens");
    assert!(
        text.contains("create on deployments.apps together with service-account token access (create on serviceaccounts/token)"),
        "{text}"
    );
    assert!(
        text.contains("resources: [deployments]")
            && text.contains("resources: [serviceaccounts/token]"),
        "{text}"
    );

    assert_eq!(
        role_checks(
            r#"
- {apiGroups: [""], resources: [pods], verbs: [create]}
- {apiGroups: [""], resources: [secrets], verbs: [list]}
"#
        ),
        ["rbac.secrets-read", "rbac.workload-create-with-tokens"]
    );
    assert_eq!(
        role_checks(
            r#"
- {apiGroups: [batch], resources: [cronjobs], verbs: [create]}
- {apiGroups: [""], resources: [secrets], verbs: [get]}
"#
        ),
        ["rbac.secrets-read", "rbac.workload-create-with-tokens"]
    );
}

#[test]
fn workload_near_misses_are_not_reported() {
    for rules in [
        // create on pods without token access
        r#"[{apiGroups: [""], resources: [pods], verbs: [create, get, list, delete]}]"#,
        // token access without creating workloads
        r#"[{apiGroups: [""], resources: [serviceaccounts/token], verbs: [create]}]"#,
        // updating a workload, reading its tokens' ServiceAccounts
        r#"
- {apiGroups: [apps], resources: [deployments], verbs: [update, patch]}
- {apiGroups: [""], resources: [serviceaccounts], verbs: [get]}
"#,
    ] {
        assert!(role_checks(rules).is_empty(), "{rules}");
    }
}

#[test]
fn an_unbound_role_is_reported_as_not_bound_yet() {
    let entries = audit(
        r#"
kind: Role
metadata: {name: spare, namespace: shop}
rules: [{apiGroups: [""], resources: [secrets], verbs: [list]}]
"#,
        "shop",
    );
    assert_eq!(found(&entries), [("Role", "spare", "rbac.secrets-read")]);
    assert!(
        entries[0]
            .message
            .ends_with("it is not bound to any subject yet")
    );
}

#[test]
fn role_findings_are_not_repeated_on_the_role_bindings() {
    let entries = audit(
        r#"
kind: Role
metadata: {name: deployer, namespace: shop}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
---
kind: RoleBinding
metadata: {name: ci, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}
subjects: [{kind: ServiceAccount, name: ci}]
---
kind: RoleBinding
metadata: {name: ops, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}
subjects: [{kind: Group, name: ops, apiGroup: rbac.authorization.k8s.io}]
"#,
        "shop",
    );
    assert!(entries.iter().all(|e| e.kind == "Role"), "{entries:#?}");
    assert_eq!(entries.len(), 5, "one entry per check: {entries:#?}");
    assert!(
        message(&entries, "rbac.wildcard").ends_with(
            "it is bound to ServiceAccount shop/ci through RoleBinding shop/ci, Group ops through RoleBinding shop/ops"
        ),
        "{entries:#?}"
    );
}

// ------------------------------------------------- rule checks through ClusterRoles

const EDIT_WITH_WILDCARD: &str = r#"
kind: ClusterRole
metadata: {name: edit}
rules:
- {apiGroups: [""], resources: [pods], verbs: ["*"]}
- {apiGroups: [""], resources: [configmaps], verbs: [get, list]}
---
kind: RoleBinding
metadata: {name: ci-admin, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects:
- {kind: ServiceAccount, name: ci, namespace: shop}
"#;

#[test]
fn a_cluster_role_is_reported_on_the_role_binding_naming_subject_role_and_rule() {
    let entries = audit(EDIT_WITH_WILDCARD, "shop");
    assert_eq!(
        found(&entries),
        [("RoleBinding", "ci-admin", "rbac.wildcard")]
    );
    assert_eq!(entries[0].namespace, "shop");
    assert_eq!(
        entries[0].message,
        r#"ServiceAccount shop/ci is granted "*" verbs on pods through RoleBinding shop/ci-admin -> ClusterRole edit: rule {apiGroups: [""], resources: [pods], verbs: ["*"]}"#
    );
    // The ClusterRole itself is nobody's finding in another namespace.
    assert!(audit(EDIT_WITH_WILDCARD, "other").is_empty());
}

#[test]
fn a_binding_of_view_is_not_reported() {
    let entries = audit(
        r#"
kind: ClusterRole
metadata: {name: view}
rules:
- {apiGroups: [""], resources: [pods, configmaps, services], verbs: [get, list, watch]}
- {apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}
- {nonResourceURLs: ["*"], verbs: [get]}
---
kind: RoleBinding
metadata: {name: viewers, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}
- {kind: Group, name: devs, apiGroup: rbac.authorization.k8s.io}
"#,
        "shop",
    );
    assert!(entries.is_empty(), "{entries:#?}");
}

#[test]
fn nodes_proxy_counts_only_through_a_cluster_role_binding() {
    let objects = r#"
kind: ClusterRole
metadata: {name: kubelet-reader}
rules: [{apiGroups: [""], resources: [nodes/proxy, nodes], verbs: [get]}]
---
kind: ClusterRoleBinding
metadata: {name: metrics}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubelet-reader}
subjects: [{kind: ServiceAccount, name: scraper, namespace: monitoring}]
---
kind: RoleBinding
metadata: {name: metrics, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubelet-reader}
subjects: [{kind: ServiceAccount, name: scraper, namespace: shop}]
"#;
    let entries = audit(objects, "monitoring");
    assert_eq!(
        found(&entries),
        [("ClusterRoleBinding", "metrics", "rbac.nodes-proxy")]
    );
    assert_eq!(entries[0].namespace, "monitoring");
    assert!(
        entries[0]
            .message
            .starts_with("ServiceAccount monitoring/scraper is granted get on nodes/proxy"),
        "{entries:#?}"
    );
    // A RoleBinding grants namespaced resources only: nodes/proxy is not among them.
    assert!(audit(objects, "shop").is_empty());
}

#[test]
fn nodes_proxy_near_miss_reading_nodes_is_not_reported() {
    let entries = audit(
        r#"
kind: ClusterRole
metadata: {name: node-reader}
rules: [{apiGroups: [""], resources: [nodes, nodes/status], verbs: [get, list, watch]}]
---
kind: ClusterRoleBinding
metadata: {name: node-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-reader}
subjects: [{kind: ServiceAccount, name: autoscaler, namespace: shop}]
"#,
        "shop",
    );
    assert!(entries.is_empty(), "{entries:#?}");
}

// ------------------------------------------------------------------- aggregation

const AGGREGATED: &str = r#"
kind: ClusterRole
metadata: {name: team}
aggregationRule:
  clusterRoleSelectors:
  - matchLabels: {example.com/aggregate-to-team: "true"}
rules: []   # not filled in yet by the controller-manager
---
kind: ClusterRole
metadata:
  name: team-extras
  labels: {example.com/aggregate-to-team: "true"}
rules: [{apiGroups: [""], resources: [configmaps], verbs: ["*"]}]
---
kind: ClusterRole
metadata:
  name: team-reader
  labels: {example.com/aggregate-to-team: "true"}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
kind: ClusterRole
metadata:
  name: unrelated
  labels: {example.com/aggregate-to-team: "false"}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
---
kind: RoleBinding
metadata: {name: team, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: team}
subjects: [{kind: User, name: bob}]
"#;

#[test]
fn aggregated_cluster_roles_count_with_the_rules_they_select() {
    let entries = audit(AGGREGATED, "shop");
    assert_eq!(found(&entries), [("RoleBinding", "team", "rbac.wildcard")]);
    assert_eq!(
        entries[0].message,
        r#"User bob is granted "*" verbs on configmaps through RoleBinding shop/team -> ClusterRole team (aggregated): rule {apiGroups: [""], resources: [configmaps], verbs: ["*"]} aggregated from ClusterRole team-extras"#
    );
}

#[test]
fn aggregation_is_transitive_matches_expressions_and_survives_cycles() {
    let entries = audit(
        r#"
kind: ClusterRole
metadata: {name: outer, labels: {tier: outer}}
aggregationRule:
  clusterRoleSelectors:
  - matchExpressions: [{key: tier, operator: In, values: [middle]}]
---
kind: ClusterRole
metadata: {name: middle, labels: {tier: middle}}
aggregationRule:
  clusterRoleSelectors:
  - matchExpressions: [{key: tier, operator: In, values: [inner, outer]}]
---
kind: ClusterRole
metadata: {name: inner, labels: {tier: inner}}
rules: [{apiGroups: [""], resources: [secrets], verbs: [list]}]
---
kind: RoleBinding
metadata: {name: outer, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: outer}
subjects: [{kind: User, name: carol}]
"#,
        "shop",
    );
    assert_eq!(
        found(&entries),
        [("RoleBinding", "outer", "rbac.secrets-read")]
    );
    assert!(
        entries[0]
            .message
            .contains("aggregated from ClusterRole inner")
    );
}

#[test]
fn stored_rules_of_an_aggregated_role_count_too() {
    // The authorizer uses the stored rules until the controller-manager rewrites them.
    let entries = audit(
        r#"
kind: ClusterRole
metadata: {name: team}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {example.com/aggregate-to-team: "true"}}]
rules: [{apiGroups: [""], resources: [pods/exec], verbs: [create]}]
---
kind: RoleBinding
metadata: {name: team, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: team}
subjects: [{kind: User, name: bob}]
"#,
        "shop",
    );
    assert_eq!(found(&entries), [("RoleBinding", "team", "rbac.pod-exec")]);
}

// ------------------------------------------------------------ ClusterRoleBindings

#[test]
fn a_cluster_role_binding_counts_in_the_namespaces_of_its_service_accounts() {
    let objects = r#"
kind: ClusterRole
metadata: {name: secret-reader}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get, list, watch]}]
---
kind: ClusterRoleBinding
metadata: {name: secret-readers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secret-reader}
subjects:
- {kind: ServiceAccount, name: vault, namespace: shop}
- {kind: User, name: "system:serviceaccount:billing:exporter"}
- {kind: Group, name: "system:serviceaccounts:ci"}
- {kind: User, name: dave}
"#;
    for namespace in ["shop", "billing", "ci"] {
        let entries = audit(objects, namespace);
        assert_eq!(
            found(&entries),
            [("ClusterRoleBinding", "secret-readers", "rbac.secrets-read")],
            "{namespace}"
        );
        assert_eq!(entries[0].namespace, namespace);
    }
    let shop = audit(objects, "shop");
    // Only the subjects living in the audited namespace are named there.
    assert!(
        shop[0].message.starts_with(
            "ServiceAccount shop/vault is granted get, list and watch on secrets through ClusterRoleBinding secret-readers -> ClusterRole secret-reader"
        ),
        "{shop:#?}"
    );
    assert!(audit(objects, "elsewhere").is_empty());
}

#[test]
fn cluster_role_binding_to_public_groups_is_not_a_namespace_finding() {
    let entries = audit(
        r#"
kind: ClusterRole
metadata: {name: secret-reader}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
---
kind: ClusterRoleBinding
metadata: {name: everyone}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secret-reader}
subjects: [{kind: Group, name: "system:authenticated"}, {kind: Group, name: "system:serviceaccounts"}]
"#,
        "shop",
    );
    assert!(entries.is_empty(), "{entries:#?}");
}

// ----------------------------------------------------------------- subject checks

const CLUSTER_ADMIN: &str = r#"
kind: ClusterRole
metadata: {name: cluster-admin}
rules:
- {apiGroups: ["*"], resources: ["*"], verbs: ["*"]}
- {nonResourceURLs: ["*"], verbs: ["*"]}
"#;

#[test]
fn binding_admin_roles_to_people_is_reported() {
    // `admin` is not among the objects (as in a manifest directory): reported by name.
    let entries = audit(
        r#"
kind: RoleBinding
metadata: {name: alice-admin, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
"#,
        "shop",
    );
    assert_eq!(
        found(&entries),
        [("RoleBinding", "alice-admin", "rbac.admin-binding")]
    );
    assert_eq!(
        entries[0].message,
        "User alice is bound to ClusterRole admin through RoleBinding shop/alice-admin; grant a Role with only the permissions needed instead"
    );

    let objects = format!(
        r#"{CLUSTER_ADMIN}
---
kind: ClusterRoleBinding
metadata: {{name: deployer-is-god}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects: [{{kind: ServiceAccount, name: deployer, namespace: shop}}]
"#
    );
    let entries = audit(&objects, "shop");
    assert_eq!(
        found(&entries),
        [
            (
                "ClusterRoleBinding",
                "deployer-is-god",
                "rbac.admin-binding"
            ),
            (
                "ClusterRoleBinding",
                "deployer-is-god",
                "rbac.escalation-verbs"
            ),
            ("ClusterRoleBinding", "deployer-is-god", "rbac.nodes-proxy"),
            ("ClusterRoleBinding", "deployer-is-god", "rbac.pod-exec"),
            ("ClusterRoleBinding", "deployer-is-god", "rbac.secrets-read"),
            ("ClusterRoleBinding", "deployer-is-god", "rbac.wildcard"),
            (
                "ClusterRoleBinding",
                "deployer-is-god",
                "rbac.workload-create-with-tokens"
            ),
        ]
    );
}

#[test]
fn control_plane_subjects_bound_to_cluster_admin_are_not_reported() {
    let objects = format!(
        r#"{CLUSTER_ADMIN}
---
kind: RoleBinding
metadata: {{name: system-things, namespace: shop}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects:
- {{kind: User, name: "system:serviceaccount:kube-system:generic-garbage-collector"}}
- {{kind: ServiceAccount, name: replicaset-controller, namespace: kube-system}}
- {{kind: Group, name: "system:masters"}}
- {{kind: User, name: "system:kube-controller-manager"}}
---
kind: ClusterRoleBinding
metadata: {{name: cluster-admin}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects:
- {{kind: Group, name: "system:masters"}}
- {{kind: ServiceAccount, name: clusterrole-aggregation-controller, namespace: kube-system}}
"#
    );
    assert!(audit(&objects, "shop").is_empty());
    // Even when kube-system itself is selected (includeSystemNamespaces).
    assert!(audit(&objects, "kube-system").is_empty());
}

#[test]
fn grants_to_the_default_service_account_are_reported() {
    let objects = r#"
kind: Role
metadata: {name: pod-reader, namespace: shop}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
kind: RoleBinding
metadata: {name: default-reads-pods, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects: [{kind: ServiceAccount, name: default}]
---
kind: ClusterRole
metadata: {name: view}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]
---
kind: ClusterRoleBinding
metadata: {name: default-views}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: default, namespace: shop}]
"#;
    let entries = audit(objects, "shop");
    assert_eq!(
        found(&entries),
        [
            (
                "ClusterRoleBinding",
                "default-views",
                "rbac.default-service-account"
            ),
            (
                "RoleBinding",
                "default-reads-pods",
                "rbac.default-service-account"
            ),
        ]
    );
    assert_eq!(
        entries[1].message,
        "ServiceAccount shop/default is granted Role shop/pod-reader through RoleBinding shop/default-reads-pods; every pod that does not set serviceAccountName runs with these permissions, so bind a dedicated ServiceAccount instead"
    );
}

#[test]
fn default_service_account_near_misses_are_not_reported() {
    let entries = audit(
        r#"
kind: Role
metadata: {name: pod-reader, namespace: shop}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
kind: RoleBinding
metadata: {name: builder, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects: [{kind: ServiceAccount, name: default-builder}]
---
kind: RoleBinding
metadata: {name: dangling, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: does-not-exist}
subjects: [{kind: ServiceAccount, name: default}]
---
kind: Role
metadata: {name: nothing, namespace: shop}
rules: []
---
kind: RoleBinding
metadata: {name: empty-role, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: nothing}
subjects: [{kind: ServiceAccount, name: default}]
"#,
        "shop",
    );
    assert!(entries.is_empty(), "{entries:#?}");
}

#[test]
fn grants_to_anonymous_and_all_authenticated_are_reported() {
    let objects = r#"
kind: ClusterRole
metadata: {name: view}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
kind: RoleBinding
metadata: {name: public, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: Group, name: "system:unauthenticated"}
- {kind: User, name: "system:anonymous"}
---
kind: RoleBinding
metadata: {name: everyone, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: Group, name: "system:authenticated"}]
"#;
    let entries = audit(objects, "shop");
    assert_eq!(
        found(&entries),
        [
            ("RoleBinding", "everyone", "rbac.anonymous-grant"),
            ("RoleBinding", "public", "rbac.anonymous-grant"),
        ]
    );
    assert_eq!(
        entries[0].message,
        "Group system:authenticated is granted ClusterRole view through RoleBinding shop/everyone, that is every authenticated user and ServiceAccount of the cluster; grant named users, groups or ServiceAccounts instead"
    );
    assert!(
        entries[1].message.starts_with(
            "Group system:unauthenticated and User system:anonymous are granted ClusterRole view through RoleBinding shop/public, that is anyone who can reach the API server, even without credentials"
        ),
        "{entries:#?}"
    );
}

// ------------------------------------------------------------------- exemptions

const EXEMPTION_FIXTURE: &str = r#"
kind: Role
metadata: {name: platform, namespace: shop}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
---
kind: RoleBinding
metadata: {name: platform, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: platform}
subjects: [{kind: Group, name: platform-admins}]
---
kind: ClusterRole
metadata: {name: secret-reader}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
---
kind: RoleBinding
metadata: {name: vault, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secret-reader}
subjects:
- {kind: ServiceAccount, name: vault}
- {kind: ServiceAccount, name: backup}
"#;

/// The entries of the exemption fixture, as (name, check), under `exempt`.
fn exemption_findings(exempt: &str) -> Vec<(String, String)> {
    let settings = settings(&format!("{{enabled: true, exempt: {exempt}}}"));
    audit_namespace(&index(EXEMPTION_FIXTURE), "shop", &settings)
        .into_iter()
        .map(|e| (e.name, e.check))
        .collect()
}

#[test]
fn exempt_subjects_are_skipped() {
    let all = exemption_findings("[]");
    assert!(all.contains(&("platform".into(), "rbac.wildcard".into())));
    assert!(all.contains(&("vault".into(), "rbac.secrets-read".into())));

    // A Role used only by exempt subjects is exempt too.
    let without_platform = exemption_findings("[{kind: Group, name: platform-admins}]");
    assert!(
        without_platform.iter().all(|(name, _)| name != "platform"),
        "{without_platform:?}"
    );

    // A binding is reported for its remaining subjects, and not at all when none remain.
    let settings = settings("{exempt: [{kind: ServiceAccount, name: vault, namespace: shop}]}");
    let entries = audit_namespace(&index(EXEMPTION_FIXTURE), "shop", &settings);
    let vault = entries
        .iter()
        .find(|e| e.name == "vault" && e.check == "rbac.secrets-read")
        .expect("vault is still reported for backup");
    assert!(
        vault
            .message
            .starts_with("ServiceAccount shop/backup is granted"),
        "{entries:#?}"
    );
    let none_left = exemption_findings(
        "[{kind: ServiceAccount, name: vault}, {kind: User, name: 'system:serviceaccount:shop:backup'}]",
    );
    assert!(
        none_left.iter().all(|(name, _)| name != "vault"),
        "{none_left:?}"
    );

    // An exemption for the same name in another namespace does not apply.
    let elsewhere = exemption_findings(
        "[{kind: ServiceAccount, name: vault, namespace: other}, {kind: ServiceAccount, name: backup, namespace: other}]",
    );
    assert!(elsewhere.contains(&("vault".into(), "rbac.secrets-read".into())));
}

#[test]
fn exempt_roles_are_skipped() {
    let findings = exemption_findings("[{kind: Role, name: platform, namespace: shop}]");
    assert!(
        findings.iter().all(|(name, _)| name != "platform"),
        "{findings:?}"
    );
    let findings = exemption_findings("[{kind: Role, name: platform}]");
    assert!(
        findings.iter().all(|(name, _)| name != "platform"),
        "{findings:?}"
    );
    let findings = exemption_findings("[{kind: ClusterRole, name: secret-reader}]");
    assert!(
        findings.iter().all(|(name, _)| name != "vault"),
        "{findings:?}"
    );
    // A Role exemption does not exempt a ClusterRole of the same name, nor another namespace's Role.
    let findings = exemption_findings(
        "[{kind: Role, name: secret-reader}, {kind: Role, name: platform, namespace: other}]",
    );
    assert_eq!(findings.len(), exemption_findings("[]").len());
}

#[test]
fn a_disabled_audit_reports_nothing() {
    let disabled = settings("{enabled: false}");
    assert!(!exemption_findings("[]").is_empty());
    assert!(audit_namespace(&index(EXEMPTION_FIXTURE), "shop", &disabled).is_empty());
}

// --------------------------------------------------------------- robustness

#[test]
fn malformed_and_dangling_objects_are_skipped_without_panicking() {
    let entries = audit(
        r#"
kind: Role
metadata: {namespace: shop}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
---
kind: Role
metadata: {name: no-rules, namespace: shop}
---
kind: Role
metadata: {name: urls-only, namespace: shop}
rules: [{nonResourceURLs: ["*"], verbs: ["*"]}, {apiGroups: [""], resources: [pods], verbs: []}]
---
kind: ClusterRole
metadata: {name: odd-selector}
aggregationRule:
  clusterRoleSelectors: [{matchExpressions: [{key: a, operator: Sometimes, values: [b]}]}]
---
kind: RoleBinding
metadata: {name: no-subjects, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: odd-selector}
---
kind: RoleBinding
metadata: {name: bad-ref, namespace: shop}
roleRef: {apiGroup: example.com, kind: Role, name: no-rules}
subjects: [{kind: ServiceAccount, name: default}]
---
kind: RoleBinding
metadata: {name: dangling-cluster-role, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gone}
subjects: [{kind: Robot, name: r2d2}, {kind: User, name: ""}, {kind: ServiceAccount, name: default}]
---
kind: ClusterRoleBinding
metadata: {name: sa-without-namespace}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: default}]
---
kind: RoleBinding
metadata: {namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: User, name: mallory}]
"#,
        "shop",
    );
    assert!(entries.is_empty(), "{entries:#?}");
}

#[test]
fn messages_stay_within_the_status_limit() {
    let long = "x".repeat(200);
    let subjects: String = (0..20)
        .map(|i| format!("- {{kind: User, name: user-{i}-{long}}}\n"))
        .collect();
    let entries = audit(
        &format!(
            r#"
kind: ClusterRole
metadata: {{name: big}}
rules:
- {{apiGroups: [""], resources: [secrets], resourceNames: [{long}, b-{long}, c-{long}, d-{long}], verbs: [get]}}
---
kind: RoleBinding
metadata: {{name: many, namespace: shop}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: big}}
subjects:
{subjects}"#
        ),
        "shop",
    );
    assert_eq!(
        found(&entries),
        [("RoleBinding", "many", "rbac.secrets-read")]
    );
    assert!(entries[0].message.chars().count() <= 1024);
    assert!(entries[0].message.ends_with("..."));
    assert!(entries[0].message.contains("and 16 more are granted"));
}

#[test]
fn findings_are_sorted_and_deterministic() {
    let objects = format!(
        "{EXEMPTION_FIXTURE}\n---\n{}",
        EDIT_WITH_WILDCARD.trim_start()
    );
    let first = audit(&objects, "shop");
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(first, sorted);
    // The same objects in another order give the same findings.
    let mut docs = fixtures(&objects);
    docs.reverse();
    let reversed = RbacIndex::from_objects(docs.iter().map(Fixture::object));
    assert_eq!(
        audit_namespace(&reversed, "shop", &RbacAuditSettings::default()),
        first
    );
}

// ---------------------------------------------------- incremental re-evaluation

const DEPENDENCIES: &str = r#"
kind: Role
metadata: {name: local, namespace: shop}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
kind: ClusterRole
metadata: {name: edit, labels: {rbac.example.com/aggregate-to-maintainer: "true"}}
rules: [{apiGroups: [""], resources: [pods], verbs: [create]}]
---
kind: ClusterRole
metadata: {name: maintainer}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {rbac.example.com/aggregate-to-maintainer: "true"}}]
---
kind: ClusterRole
metadata: {name: view}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
kind: RoleBinding
metadata: {name: editors, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{kind: User, name: erin}]
---
kind: RoleBinding
metadata: {name: maintainers, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: maintainer}
subjects: [{kind: User, name: frank}]
---
kind: ClusterRoleBinding
metadata: {name: viewers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: dashboard, namespace: ops}]
"#;

fn cluster_role_ref(name: &str) -> RbacObjectRef {
    RbacObjectRef::ClusterRole { name: name.into() }
}

#[test]
fn affected_namespaces_follow_bindings_and_aggregation() {
    let index = index(DEPENDENCIES);
    let role = RbacObjectRef::Role {
        namespace: "shop".into(),
        name: "local".into(),
    };
    assert_eq!(index.affected_namespaces(&role), namespaces(&["shop"]));
    // edit is bound in shop and aggregated into maintainer, which is bound in dev.
    assert_eq!(
        index.affected_namespaces(&cluster_role_ref("edit")),
        namespaces(&["dev", "shop"])
    );
    assert_eq!(
        index.affected_namespaces(&cluster_role_ref("maintainer")),
        namespaces(&["dev"])
    );
    assert_eq!(
        index.affected_namespaces(&cluster_role_ref("view")),
        namespaces(&["ops"])
    );
    assert_eq!(
        index.affected_namespaces(&RbacObjectRef::ClusterRoleBinding {
            name: "viewers".into()
        }),
        namespaces(&["ops"])
    );
    assert!(
        index
            .affected_namespaces(&cluster_role_ref("unbound"))
            .is_empty()
    );
}

#[test]
fn upserting_an_unchanged_object_affects_nothing() {
    let mut index = index(DEPENDENCIES);
    let objects = fixtures(DEPENDENCIES);
    for object in &objects {
        assert!(index.upsert(object.object()).is_empty());
    }
}

#[test]
fn upsert_and_remove_return_namespaces_before_and_after_the_change() {
    let mut index = index(DEPENDENCIES);

    // A ClusterRoleBinding whose subject moves from ops to qa affects both.
    let moved: ClusterRoleBinding = serde_saphyr::from_str(
        r#"
metadata: {name: viewers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: dashboard, namespace: qa}]
"#,
    )
    .expect("parses");
    assert_eq!(index.upsert(&moved), namespaces(&["ops", "qa"]));
    assert_eq!(
        index.affected_namespaces(&cluster_role_ref("view")),
        namespaces(&["qa"])
    );

    // edit loses its aggregation label: dev (maintainer) is affected as it was before, shop stays.
    let relabelled: ClusterRole = serde_saphyr::from_str(
        r#"
metadata: {name: edit}
rules: [{apiGroups: [""], resources: [pods], verbs: [create]}]
"#,
    )
    .expect("parses");
    assert_eq!(index.upsert(&relabelled), namespaces(&["dev", "shop"]));
    assert_eq!(
        index.affected_namespaces(&cluster_role_ref("edit")),
        namespaces(&["shop"])
    );

    // Removing a RoleBinding affects its namespace and unlinks it from its ClusterRole.
    let binding = RbacObjectRef::RoleBinding {
        namespace: "shop".into(),
        name: "editors".into(),
    };
    assert_eq!(index.remove(&binding), namespaces(&["shop"]));
    assert!(
        index
            .affected_namespaces(&cluster_role_ref("edit"))
            .is_empty()
    );

    // Removing a ClusterRole affects every namespace bound to it, and then nothing.
    assert_eq!(
        index.remove(&cluster_role_ref("maintainer")),
        namespaces(&["dev"])
    );
    assert!(index.remove(&cluster_role_ref("maintainer")).is_empty());
}

#[test]
fn a_changed_component_role_changes_the_audit_of_its_aggregates() {
    let mut index = index(DEPENDENCIES);
    let settings = RbacAuditSettings::default();
    assert!(audit_namespace(&index, "dev", &settings).is_empty());

    let widened: ClusterRole = serde_saphyr::from_str(
        r#"
metadata: {name: edit, labels: {rbac.example.com/aggregate-to-maintainer: "true"}}
rules: [{apiGroups: [""], resources: [pods/exec], verbs: [create]}]
"#,
    )
    .expect("parses");
    let affected = index.upsert(&widened);
    assert_eq!(affected, namespaces(&["dev", "shop"]));
    for namespace in &affected {
        assert_eq!(
            audit_namespace(&index, namespace, &settings)
                .iter()
                .map(|e| e.check.as_str())
                .collect::<Vec<_>>(),
            ["rbac.pod-exec"],
            "{namespace}"
        );
    }
    // Nothing else changed: ops is still clean.
    assert!(audit_namespace(&index, "ops", &settings).is_empty());
}

#[test]
fn an_incrementally_kept_index_audits_like_a_fresh_one() {
    let mut incremental = RbacIndex::new();
    let initial = fixtures(&format!(
        "{DEPENDENCIES}\n---\n{}",
        EXEMPTION_FIXTURE.trim_start()
    ));
    for object in &initial {
        incremental.upsert(object.object());
    }
    incremental.remove(&RbacObjectRef::RoleBinding {
        namespace: "shop".into(),
        name: "vault".into(),
    });
    let widened: Role = serde_saphyr::from_str(
        r#"
metadata: {name: local, namespace: shop}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
"#,
    )
    .expect("parses");
    incremental.upsert(&widened);

    let mut final_objects: Vec<RbacObject<'_>> = initial
        .iter()
        .map(Fixture::object)
        .filter(|o| {
            !matches!(
                RbacObjectRef::of(*o),
                Some(RbacObjectRef::RoleBinding { ref name, .. }) if name == "vault"
            ) && !matches!(
                RbacObjectRef::of(*o),
                Some(RbacObjectRef::Role { ref name, .. }) if name == "local"
            )
        })
        .collect();
    final_objects.push((&widened).into());
    let fresh = RbacIndex::from_objects(final_objects);

    let settings = RbacAuditSettings::default();
    for namespace in ["shop", "dev", "ops"] {
        assert_eq!(
            audit_namespace(&incremental, namespace, &settings),
            audit_namespace(&fresh, namespace, &settings),
            "{namespace}"
        );
    }
    assert!(
        audit_namespace(&incremental, "shop", &settings)
            .iter()
            .any(|e| e.name == "local" && e.check == "rbac.secrets-read")
    );
}

// ------------------------------------------------------------------ registry

#[test]
fn every_check_is_registered_with_its_cis_ids() {
    let expected: [(&str, &[&str]); 9] = [
        ("rbac.admin-binding", &["5.1.1"]),
        ("rbac.secrets-read", &["5.1.2"]),
        ("rbac.wildcard", &["5.1.3"]),
        ("rbac.workload-create-with-tokens", &["5.1.4", "5.1.13"]),
        ("rbac.default-service-account", &["5.1.5"]),
        ("rbac.escalation-verbs", &["5.1.8"]),
        ("rbac.nodes-proxy", &["5.1.10"]),
        ("rbac.pod-exec", &[]),
        ("rbac.anonymous-grant", &[]),
    ];
    let registered: Vec<(&str, &[&str])> = CHECKS.iter().map(|c| (c.id, c.cis)).collect();
    assert_eq!(registered, expected);
    for (id, _) in expected {
        assert_eq!(
            checks::find(id).map(|c| c.id),
            Some(id),
            "{id} is in checks::all()"
        );
    }
}

#[test]
fn roles_with_the_same_rules_share_one_copy_until_the_last_goes() {
    let role = |namespace: &str, verb: &str| -> Role {
        serde_saphyr::from_str(&format!(
            r#"
metadata: {{name: reader, namespace: {namespace}}}
rules: [{{apiGroups: [""], resources: [pods], verbs: [{verb}]}}]
"#
        ))
        .expect("parses")
    };
    let mut index = RbacIndex::new();
    index.upsert(&role("a", "get"));
    index.upsert(&role("b", "get"));
    index.upsert(&role("c", "list"));
    assert_eq!(index.role_rule_lists(), 2);
    let (a, b) = (
        index.role_rules("a", "reader").expect("a"),
        index.role_rules("b", "reader").expect("b"),
    );
    assert!(std::ptr::eq(a.as_ptr(), b.as_ptr()), "one copy for a and b");
    // c changes to a's rules: its old list goes.
    index.upsert(&role("c", "get"));
    assert_eq!(index.role_rule_lists(), 1);
    for namespace in ["a", "b", "c"] {
        index.remove(&RbacObjectRef::Role {
            namespace: namespace.into(),
            name: "reader".into(),
        });
    }
    assert_eq!(index.role_rule_lists(), 0);
}

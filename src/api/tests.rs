use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

#[test]
fn crds_dir_is_the_output_of_the_crd_command() {
    let printed = crds_yaml().expect("CRDs render");
    let path = repo_path("crds/kube-baseline.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        printed == committed,
        "{} is stale: run `cargo run -- crd > crds/kube-baseline.yaml` and commit it",
        path.display()
    );
    let files: Vec<_> = std::fs::read_dir(repo_path("crds"))
        .expect("crds/ exists")
        .map(|e| e.expect("readable entry").file_name())
        .collect();
    let mut files: Vec<_> = files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["kube-baseline.yaml", "kustomization.yaml"],
        "crds/ holds the printer's output and its kustomization"
    );
}

/// Every string and list in the schema must be bounded so the API server can cost CEL rules
/// and a huge object cannot be stored; a field added without bounds fails here.
#[test]
fn every_string_list_and_map_in_the_schema_is_bounded() {
    fn walk(schema: &Value, path: &str, missing: &mut Vec<String>) {
        let Some(object) = schema.as_object() else {
            return;
        };
        let int_or_string = object.get("x-kubernetes-int-or-string") == Some(&json!(true));
        match object.get("type").and_then(Value::as_str) {
            // RFC 3339 timestamps are bounded by their format.
            Some("string")
                if !object.contains_key("maxLength")
                    && !object.contains_key("enum")
                    && object.get("format") != Some(&json!("date-time")) =>
            {
                missing.push(format!("{path}: string without maxLength"))
            }
            Some("array") if !object.contains_key("maxItems") => {
                missing.push(format!("{path}: array without maxItems"))
            }
            Some("object")
                if object.contains_key("additionalProperties")
                    && !object.contains_key("maxProperties") =>
            {
                missing.push(format!("{path}: map without maxProperties"))
            }
            _ => {}
        }
        if let Some(properties) = object.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                walk(property, &format!("{path}.{name}"), missing);
            }
        }
        if let Some(items) = object.get("items") {
            walk(items, &format!("{path}[]"), missing);
        }
        if let Some(values) = object.get("additionalProperties") {
            walk(values, &format!("{path}{{}}"), missing);
        }
        if !int_or_string {
            for branch in object
                .get("anyOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                walk(branch, path, missing);
            }
        }
    }

    for crd in all_crds() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema is JSON");
        let mut missing = Vec::new();
        walk(
            &schema["openAPIV3Schema"],
            &crd.spec.names.kind,
            &mut missing,
        );
        // metav1.Condition comes from k8s-openapi; the API server bounds it itself.
        missing.retain(|m| !m.contains(".status.conditions[]."));
        assert!(
            missing.is_empty(),
            "unbounded fields:\n{}",
            missing.join("\n")
        );
    }
}

fn sample(name: &str) -> Value {
    let path = repo_path(&format!("config/samples/{name}"));
    let text = std::fs::read_to_string(&path).expect("sample exists");
    serde_saphyr::from_str(&text).expect("sample is YAML")
}

#[test]
fn samples_pass_cel_validation_and_deserialize() {
    let dir = repo_path("config/samples");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("samples dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name == "kustomization.yaml" {
            continue;
        }
        let value = sample(&name);
        if let Err(errors) = validate_baseline_cel(&value) {
            panic!("{name} is rejected: {errors}");
        }
        let typed: SecurityBaseline = serde_json::from_value(value).expect("typed sample");
        typed.validate_cel().expect("typed validation agrees");
        checked += 1;
    }
    assert!(checked >= 2, "samples were found");
}

/// Validates `spec` and returns the messages of the failed rules.
fn rejection_messages(spec: Value) -> Vec<String> {
    let object = json!({
        "apiVersion": "kube-baseline.dev/v1alpha1",
        "kind": "SecurityBaseline",
        "metadata": {"name": "t"},
        "spec": spec,
    });
    match validate_baseline_cel(&object) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

fn role_with(rule: Value) -> Value {
    json!({"rbac": {"roles": [{"name": "app", "rules": [rule]}]}})
}

fn assert_rejected_with(spec: Value, expected: &str) {
    let messages = rejection_messages(spec.clone());
    assert!(
        messages.iter().any(|m| m.contains(expected)),
        "expected a rejection containing {expected:?} for {spec}, got {messages:?}"
    );
}

#[test]
fn least_privilege_rule_is_accepted() {
    let spec = role_with(
        json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}),
    );
    assert_eq!(rejection_messages(spec), Vec::<String>::new());
}

#[test]
fn wildcard_verb_is_rejected() {
    assert_rejected_with(
        role_with(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "*"]})),
        "verbs: '*' is not allowed",
    );
}

#[test]
fn wildcard_resource_is_rejected() {
    assert_rejected_with(
        role_with(json!({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]})),
        "resources: '*' is not allowed",
    );
    assert_rejected_with(
        role_with(json!({"apiGroups": [""], "resources": ["*/scale"], "verbs": ["get"]})),
        "resources: '*' is not allowed",
    );
}

#[test]
fn wildcard_api_group_is_rejected() {
    assert_rejected_with(
        role_with(json!({"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]})),
        "apiGroups: '*' is not allowed",
    );
}

#[test]
fn escalating_verbs_are_rejected() {
    for verb in ["escalate", "bind", "impersonate"] {
        assert_rejected_with(
            role_with(
                json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": [verb]}),
            ),
            "escalate, bind and impersonate grant privilege escalation",
        );
    }
}

#[test]
fn unknown_pod_security_level_is_rejected() {
    assert_rejected_with(
        json!({"podSecurity": {"enforce": "strict"}}),
        "podSecurity: levels must be one of privileged, baseline, restricted",
    );
    assert_rejected_with(
        json!({"podSecurity": {"enforce": "restricted", "warn": "Restricted"}}),
        "podSecurity: levels must be one of",
    );
    assert_eq!(
        rejection_messages(json!({"podSecurity": {"enforce": "baseline", "warn": "restricted"}})),
        Vec::<String>::new()
    );
}

#[test]
fn duplicate_role_names_are_rejected() {
    let rule = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]});
    assert_rejected_with(
        json!({"rbac": {"roles": [
            {"name": "reader", "rules": [rule]},
            {"name": "reader", "rules": [rule]},
        ]}}),
        "rbac.roles: role names must be unique",
    );
}

#[test]
fn selector_operator_values_are_checked() {
    assert_rejected_with(
        json!({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In", "values": []}]}}),
        "operators In and NotIn need at least one value",
    );
    assert_rejected_with(
        json!({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "Exists", "values": ["x"]}]}}),
        "Exists and DoesNotExist take none",
    );
}

#[test]
fn exemption_namespace_only_for_namespaced_kinds() {
    assert_rejected_with(
        json!({"rbac": {"audit": {"exempt": [{"kind": "Group", "name": "ops", "namespace": "shop"}]}}}),
        "namespace only applies to ServiceAccount and Role",
    );
    assert_eq!(
        rejection_messages(
            json!({"rbac": {"audit": {"exempt": [{"kind": "ServiceAccount", "name": "ci", "namespace": "shop"}]}}})
        ),
        Vec::<String>::new()
    );
}

#[test]
fn schema_defaults_fill_an_empty_spec() {
    let empty: SecurityBaselineSpec = serde_json::from_value(json!({})).expect("empty spec");
    assert_eq!(empty.mode, EnforcementMode::Enforce);
    assert_eq!(empty.on_unselect, OnUnselect::Delete);
    assert!(empty.network_policy.default_deny.ingress && empty.network_policy.default_deny.egress);
    assert!(empty.network_policy.allow_dns);
    assert!(empty.rbac.audit.enabled);
}

/// The observations' shared header is flattened: a NodeReport keeps `state` and `message`
/// beside each observation's own fields, so reports written before the header existed read
/// the same and the agent writes the same JSON.
#[test]
fn node_report_observations_keep_their_wire_field_names() {
    let wire = json!({
        "nodeName": "cp-1",
        "agentVersion": "0.1.0",
        "enforce": true,
        "kubelet": {
            "state": "Error",
            "message": "kubelet --config: permission denied",
            "configFile": "/var/lib/kubelet/config.yaml",
            "configDir": "/etc/kubernetes/kubelet.conf.d",
            "dropIns": ["10-a.conf"],
            "settings": {"anonymousAuth": false},
            "origins": [{"setting": "anonymousAuth", "origin": "config file"}],
            "pendingRestart": true
        },
        "apiServer": {
            "state": "Observed",
            "message": "a note",
            "flags": [{"name": "audit-log-path", "value": "-"}],
            "auditPolicy": {
                "state": "Error",
                "message": "too large to report",
                "path": "/etc/kubernetes/audit/policy.yaml",
                "managed": true,
                "omitStages": ["RequestReceived"],
                "omitManagedFields": true,
                "rules": [{"level": "Metadata"}],
                "pendingRestart": false
            },
            "encryption": {
                "state": "Observed",
                "path": "/etc/kubernetes/enc.yaml",
                "secretsProviders": ["aescbc", "identity"],
                "pendingRestart": false
            },
            "authorizationConfig": {
                "state": "NotFound",
                "message": "no such file",
                "path": "/etc/kubernetes/authz.yaml",
                "authorizers": ["Node", "RBAC"]
            },
            "authenticationConfig": {
                "state": "Error",
                "message": "not YAML",
                "path": "/etc/kubernetes/authn.yaml",
                "anonymousEnabled": true,
                "anonymousConditions": 2
            },
            "pendingRestart": false
        },
        "controllerManager": {
            "state": "Observed",
            "settings": [{"name": "profiling", "value": "false", "origin": "flag --profiling"}],
            "pendingRestart": false
        },
        "scheduler": {
            "state": "Error",
            "message": "not a mapping",
            "configFile": "/etc/kubernetes/scheduler.yaml",
            "pendingRestart": true
        },
        "etcd": {
            "state": "Observed",
            "configFile": "/etc/etcd.yaml",
            "settings": [{"name": "client-cert-auth", "value": "true", "origin": "client-transport-security.client-cert-auth in --config-file /etc/etcd.yaml"}],
            "trustedCAIsKubernetesCA": false,
            "pendingRestart": false
        },
        "enforcement": [{"target": "AuditPolicy", "path": "/p", "state": "Failed", "message": "m"}]
    });
    let spec: NodeReportSpec = serde_json::from_value(wire.clone()).expect("reads");
    assert_eq!(
        spec.kubelet.header,
        Observation::error("kubelet --config: permission denied".to_owned())
    );
    assert_eq!(
        spec.api_server.header,
        Observation::observed("a note".to_owned())
    );
    assert_eq!(
        spec.api_server.audit_policy.header.state,
        ObservationState::Error
    );
    assert_eq!(
        spec.api_server.encryption.header,
        Observation::observed(String::new())
    );
    assert_eq!(
        spec.api_server.authorization_config.header,
        Observation::not_found("no such file".to_owned())
    );
    assert_eq!(
        spec.api_server.authentication_config.header.message,
        "not YAML"
    );
    assert_eq!(spec.scheduler.config_file, "/etc/kubernetes/scheduler.yaml");
    assert_eq!(spec.etcd.trusted_ca_is_kubernetes_ca, Some(false));
    assert_eq!(
        spec.controller_manager
            .setting("profiling")
            .map(|s| s.value.as_str()),
        Some("false")
    );
    assert_eq!(serde_json::to_value(&spec).expect("writes"), wire);
    // An empty message is left out, as before.
    assert_eq!(
        serde_json::to_value(KubeletObservation::default()).expect("writes"),
        json!({"state": "NotFound", "settings": {}, "pendingRestart": false})
    );
}

fn waiver(granted: &str, expires: &str) -> Value {
    json!({
        "name": "payments-egress",
        "checks": ["network.default-deny", "rbac.*"],
        "objects": [{"kind": "NetworkPolicy", "name": "baseline-b-deny-all", "namespace": "payments"}],
        "reason": "payments calls the card network from every pod",
        "owner": "team-payments",
        "granted": granted,
        "expires": expires,
    })
}

#[test]
fn a_waiver_within_the_maximum_is_accepted() {
    let spec = json!({"waivers": [waiver("2026-12-01T00:00:00Z", "2027-02-28T00:00:00Z")]});
    assert_eq!(rejection_messages(spec), Vec::<String>::new());
}

#[test]
fn a_waiver_must_expire_after_it_was_granted() {
    assert_rejected_with(
        json!({"waivers": [waiver("2026-12-01T00:00:00Z", "2026-11-30T00:00:00Z")]}),
        "expires must be after granted",
    );
}

#[test]
fn a_waiver_longer_than_the_maximum_is_rejected() {
    // 90 days and one second.
    assert_rejected_with(
        json!({"waivers": [waiver("2026-12-01T00:00:00Z", "2027-03-01T00:00:01Z")]}),
        "waiverMaxDuration",
    );
    // A shorter maximum is the baseline's to choose ...
    assert_rejected_with(
        json!({
            "waiverMaxDuration": "720h",
            "waivers": [waiver("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z")],
        }),
        "waiverMaxDuration",
    );
    // ... a longer one too, up to a year.
    let year = json!({
        "waiverMaxDuration": "8760h",
        "waivers": [waiver("2026-12-01T00:00:00Z", "2027-06-01T00:00:00Z")],
    });
    assert_eq!(rejection_messages(year), Vec::<String>::new());
    assert_rejected_with(json!({"waiverMaxDuration": "8761h"}), "at most 8760h");
}

#[test]
fn waivers_deserialize_with_their_wire_names() {
    let spec: SecurityBaselineSpec = serde_json::from_value(json!({
        "waivers": [{
            "name": "legacy",
            "checks": ["rbac.*"],
            "namespaces": ["a"],
            "namespaceSelector": {"matchLabels": {"tier": "legacy"}},
            "reason": "legacy apps until the rewrite",
            "owner": "platform",
            "granted": "2026-12-01T00:00:00Z",
            "expires": "2026-12-31T00:00:00Z",
        }],
    }))
    .expect("spec");
    let waiver = &spec.waivers[0];
    assert_eq!(waiver.checks, ["rbac.*"]);
    assert_eq!(
        waiver
            .namespace_selector
            .as_ref()
            .map(|s| s.match_labels.len()),
        Some(1)
    );
    // The schema says how the list merges (by name) and the default maximum.
    let schema = &*SECURITY_BASELINE_SCHEMA;
    let spec_schema = &schema["properties"]["spec"]["properties"];
    assert_eq!(spec_schema["waivers"]["x-kubernetes-list-type"], "map");
    assert_eq!(
        spec_schema["waivers"]["x-kubernetes-list-map-keys"],
        json!(["name"])
    );
    assert_eq!(spec_schema["waiverMaxDuration"]["default"], "2160h");
    assert_eq!(
        spec_schema["waivers"]["items"]["properties"]["reason"]["minLength"],
        10
    );
}

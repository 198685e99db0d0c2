//! The local control plane is the real thing: version, authentication, RBAC, CRD admission
//! with CEL, garbage collection, namespace deletion and the audit log.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, Config};
use kube_baseline_e2e::*;

#[tokio::test]
async fn server_is_kubernetes_1_36() {
    let version: serde_json::Value =
        serde_json::from_str(&kubectl(&["version", "-o", "json"])).expect("json");
    let server = version["serverVersion"]["gitVersion"]
        .as_str()
        .expect("server version");
    assert!(server.starts_with("v1.36."), "server version {server}");
    let client = version["clientVersion"]["gitVersion"]
        .as_str()
        .expect("client version");
    assert!(client.starts_with("v1.36."), "kubectl version {client}");
}

#[tokio::test]
async fn anonymous_requests_are_refused() {
    let dir = cluster_dir();
    let server = std::fs::read_to_string(dir.join("server"))
        .expect("server")
        .trim()
        .to_string();
    let ca = std::fs::read(dir.join("ca.crt")).expect("ca");
    let mut config = Config::new(server.parse().expect("url"));
    config.root_cert = Some(vec![pem_to_der(&ca)]);
    let anonymous = Client::try_from(config).expect("client");
    let error = Api::<Namespace>::all(anonymous)
        .list(&ListParams::default())
        .await
        .expect_err("anonymous list must fail");
    match error {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 401, "anonymous is unauthenticated: {status:?}")
        }
        other => panic!("expected a 401, got {other}"),
    }
}

fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(pem);
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    decode_base64(&body)
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|c| *c == byte).expect("base64") as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

#[tokio::test]
async fn a_user_without_grants_is_forbidden() {
    let env = TestEnv::new("norbac").await;
    let kubeconfig = env
        .service_account_kubeconfig(&env.name("nobody"), None)
        .await;
    let nobody = client_from_kubeconfig(&kubeconfig).await;
    let error = Api::<Pod>::namespaced(nobody, "default")
        .list(&ListParams::default())
        .await
        .expect_err("a user with no grant cannot list pods");
    match error {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected a 403, got {other}"),
    }
    env.cleanup().await;
}

#[tokio::test]
async fn crds_are_accepted_and_cel_rules_enforced_at_admission() {
    let env = TestEnv::new("cel").await;
    let established = kubectl(&[
        "get",
        "crd",
        "securitybaselines.kube-baseline.dev",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
    ]);
    assert_eq!(established, "True");
    let name = env.name("bad");
    let manifest = format!(
        "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {name}}}\nspec:\n  rbac:\n    roles:\n    - name: all\n      rules:\n      - {{apiGroups: [\"\"], resources: [pods], verbs: [\"*\"]}}\n"
    );
    let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(&manifest));
    assert!(!ok, "a wildcard verb must be rejected");
    assert!(
        stderr.contains("verbs: '*' is not allowed"),
        "message names the problem: {stderr}"
    );
    assert!(
        stderr.contains("spec.rbac.roles[0].rules[0]"),
        "message says where: {stderr}"
    );
    // Defaults are written into the stored object.
    let good = env.apply_baseline("good", "mode: Audit");
    let stored = kubectl(&[
        "get",
        "sbl",
        &good,
        "-o",
        "jsonpath={.spec.onUnselect}/{.spec.networkPolicy.allowDNS}",
    ]);
    assert_eq!(stored, "Delete/true");
    env.cleanup().await;
}

/// The selector rule of the CRD as the API server evaluates it: Exists and DoesNotExist are
/// written without `values` (an absent field is not an empty list to CEL), In and NotIn
/// need values. A malformed key is not checked at admission; the controller holds such a
/// baseline and `check` rejects it (lifecycle.rs, check_cli.rs).
#[tokio::test]
async fn selector_expressions_are_judged_at_admission_as_written() {
    let env = TestEnv::new("celsel").await;
    let apply = |suffix: &str, expression: &str| {
        let name = env.name(suffix);
        let manifest = format!(
            "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {name}, labels: {{{TEST_LABEL}: {}}}}}\nspec:\n  mode: Audit\n  namespaceSelector:\n    matchExpressions:\n    - {expression}\n",
            env.id
        );
        kubectl_result(&["apply", "-f", "-"], Some(&manifest))
    };
    for (suffix, expression) in [
        ("exists", "{key: team, operator: Exists}"),
        ("absent", "{key: team, operator: DoesNotExist}"),
        ("in", "{key: team, operator: In, values: [a]}"),
        ("empty", "{key: team, operator: Exists, values: []}"),
    ] {
        let (ok, _, stderr) = apply(suffix, expression);
        assert!(ok, "{expression} is admitted: {stderr}");
    }
    for (suffix, expression) in [
        ("novalues", "{key: team, operator: In}"),
        ("emptyin", "{key: team, operator: NotIn, values: []}"),
        ("extra", "{key: team, operator: Exists, values: [a]}"),
    ] {
        let (ok, _, stderr) = apply(suffix, expression);
        assert!(!ok, "{expression} is rejected");
        assert!(
            stderr.contains("operators In and NotIn need at least one value"),
            "{expression}: {stderr}"
        );
    }
    env.cleanup().await;
}

#[tokio::test]
async fn garbage_collection_and_namespace_deletion_work() {
    let env = TestEnv::new("gc").await;
    let namespace = env.create_namespace("gc", &[]).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(env.admin.clone(), &namespace);
    let owner = config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("owner");
    let dependent = ConfigMap {
        metadata: ObjectMeta {
            name: Some("dependent".into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "owner".into(),
                uid: owner.metadata.uid.clone().expect("uid"),
                ..Default::default()
            }]),
            labels: Some(BTreeMap::from([("test".into(), "gc".into())])),
            ..Default::default()
        },
        ..Default::default()
    };
    config_maps
        .create(&PostParams::default(), &dependent)
        .await
        .expect("dependent");
    config_maps
        .delete("owner", &DeleteParams::default())
        .await
        .expect("delete owner");
    // The garbage collector pauses while it resyncs its monitors after CRDs appear (other
    // tests install some) and is slower on a loaded machine: a CI run once took over 30 s.
    eventually(
        Duration::from_secs(120),
        "the dependent to be garbage-collected",
        || {
            let config_maps = config_maps.clone();
            async move {
                config_maps
                    .get_opt("dependent")
                    .await
                    .expect("get")
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;

    delete_namespace(&env.admin, &namespace).await;
    let namespaces: Api<Namespace> = Api::all(env.admin.clone());
    eventually(
        Duration::from_secs(60),
        "namespace deletion to complete",
        || {
            let namespaces = namespaces.clone();
            let namespace = namespace.clone();
            async move {
                namespaces
                    .get_opt(&namespace)
                    .await
                    .expect("get")
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;
    env.cleanup().await;
}

#[tokio::test]
async fn requests_appear_in_the_audit_log() {
    let env = TestEnv::new("audit").await;
    let namespace = env.create_namespace("audited", &[]).await;
    let found = eventually(
        Duration::from_secs(10),
        "the namespace creation in the audit log",
        || {
            let namespace = namespace.clone();
            async move {
                audit_events().into_iter().find(|e| {
                    e.verb == "create"
                        && e.object_ref
                            .as_ref()
                            .is_some_and(|o| o.resource == "namespaces" && o.name == namespace)
                })
            }
        },
    )
    .await;
    assert!(
        !found.user.username.is_empty(),
        "the audit event names who made the request"
    );
    env.cleanup().await;
}

//! The Helm chart (charts/kube-baseline) with the real helm (built from the Go module proxy by
//! `e2e/cluster helm`) and the real control plane:
//!
//! - one source of truth: with default values the chart renders exactly the objects of
//!   `kubectl kustomize config/default` (every field of every object), apart from Helm's own
//!   labels and the CRDs' `helm.sh/resource-policy: keep`; its copies of config/prometheus
//!   and config/samples render as those do;
//! - the versions and the image agree: Chart.yaml's version and appVersion are the crate's,
//!   config/default's `images:` and the chart's `image.repository` name the canonical image;
//! - `helm lint --strict` with several value sets, and `helm template` with each value the
//!   chart offers doing what it says (every flag it renders parses in the binary); wrong
//!   values fail with values.schema.json's message;
//! - `helm install` / `helm upgrade` / `helm uninstall` into the local control plane: every
//!   object is accepted by the API server (server-side; with the other value sets, a
//!   server-side dry run), upgrades change what the values
//!   say, an invalid upgrade is refused, and the CRDs (and a SecurityBaseline) outlive the
//!   uninstall;
//! - README.md's values table is the one values.yaml's `# --` comments make;
//! - the GitHub Actions workflows pass actionlint.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use kube_baseline_e2e::*;
use serde_json::Value;

const CHART: &str = "charts/kube-baseline";
/// Where the README (and these tests) install the release.
const RELEASE_NAMESPACE: &str = "kube-baseline-system";
const AGENT_NAMESPACE: &str = "kube-baseline-agent";
/// Labels Helm's conventions add to every object of the chart (templates/_helpers.tpl).
const HELM_LABELS: [&str; 4] = [
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
];

fn parse_objects(yaml: &str, what: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|err| panic!("{what} is not YAML: {err}\n{yaml}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// `helm template` of the chart with `args` (values), in the README's namespace, without
/// the `helm test` hooks: (success, objects or nothing, stderr).
fn template_result(args: &[&str]) -> (bool, Vec<Value>, String) {
    let mut all = vec![
        "template",
        "kube-baseline",
        CHART,
        "--namespace",
        RELEASE_NAMESPACE,
        "--skip-tests",
    ];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = helm_result(&all);
    let objects = if ok {
        parse_objects(&stdout, "helm template")
    } else {
        Vec::new()
    };
    (ok, objects, stderr)
}

fn template(args: &[&str]) -> Vec<Value> {
    let (ok, objects, stderr) = template_result(args);
    assert!(ok, "helm template {args:?} failed: {stderr}");
    objects
}

fn kustomize(dir: &str) -> Vec<Value> {
    parse_objects(
        &kubectl(&["kustomize", dir]),
        &format!("kubectl kustomize {dir}"),
    )
}

/// kind/namespace/name of an object.
fn key(object: &Value) -> String {
    format!(
        "{}/{}/{}",
        object["kind"].as_str().unwrap_or(""),
        object["metadata"]["namespace"].as_str().unwrap_or(""),
        object["metadata"]["name"].as_str().unwrap_or("")
    )
}

fn by_key(objects: &[Value]) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for object in objects {
        assert!(
            map.insert(key(object), object.clone()).is_none(),
            "{} rendered twice",
            key(object)
        );
    }
    map
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} not rendered"))
}

fn has(objects: &[Value], kind: &str) -> bool {
    objects.iter().any(|o| o["kind"] == kind)
}

/// A chart object with Helm's own metadata taken off: the four Helm labels (each must be
/// there, with the release's values) and the resource-policy annotation of the CRDs and the
/// release namespace. Anything else stays, so any other difference from config/ shows.
fn without_helm_metadata(object: &Value, release: &str, version: &str) -> Value {
    let mut object = object.clone();
    let what = key(&object);
    let labels = object["metadata"]["labels"]
        .as_object_mut()
        .unwrap_or_else(|| panic!("{what} has no labels"));
    for label in HELM_LABELS {
        let value = labels
            .remove(label)
            .unwrap_or_else(|| panic!("{what} lacks Helm's label {label}"));
        let expected = match label {
            "app.kubernetes.io/managed-by" => "Helm".to_string(),
            "app.kubernetes.io/instance" => release.to_string(),
            "app.kubernetes.io/version" => version.to_string(),
            _ => format!("kube-baseline-{version}"),
        };
        assert_eq!(value, expected.as_str(), "{what}: label {label}");
    }
    // The CRDs (crds.keep) and the release namespace (Helm keeps the release there) are
    // kept on uninstall.
    let kept = object["kind"] == "CustomResourceDefinition"
        || (object["kind"] == "Namespace" && object["metadata"]["name"] == RELEASE_NAMESPACE);
    if kept {
        let annotations = object["metadata"]["annotations"]
            .as_object_mut()
            .unwrap_or_else(|| panic!("{what}: no annotations (kept on uninstall by default)"));
        assert_eq!(
            annotations.remove("helm.sh/resource-policy"),
            Some(Value::from("keep")),
            "{what}: kept on uninstall by default"
        );
        if annotations.is_empty() {
            object["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("annotations");
        }
    }
    object
}

/// A number written `65535.0` and one written `65535` are one JSON number to the API server
/// (crds/ has the former, kustomize prints the latter): integral floats become integers.
fn normalize_numbers(value: &Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 =>
            {
                #[allow(clippy::cast_possible_truncation)]
                Value::from(f as i64)
            }
            _ => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(normalize_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), normalize_numbers(v)))
                .collect(),
        ),
        _ => value.clone(),
    }
}

/// Compares two object lists by kind/namespace/name and every field; panics listing every
/// difference.
fn assert_same_objects(chart: &[Value], config: &[Value], what: &str) {
    let normalized =
        |objects: &[Value]| -> Vec<Value> { objects.iter().map(normalize_numbers).collect() };
    let chart = by_key(&normalized(chart));
    let config = by_key(&normalized(config));
    let mut differences = Vec::new();
    for (key, object) in &config {
        match chart.get(key) {
            None => differences.push(format!("{key}: in config/, not rendered by the chart")),
            Some(rendered) if rendered != object => differences.push(format!(
                "{key} differs:\n  config/: {object}\n  chart:   {rendered}"
            )),
            Some(_) => {}
        }
    }
    for key in chart.keys().filter(|key| !config.contains_key(*key)) {
        differences.push(format!("{key}: rendered by the chart, not in config/"));
    }
    assert!(
        differences.is_empty(),
        "{what}: {} difference(s):\n{}",
        differences.len(),
        differences.join("\n")
    );
}

fn crate_version() -> String {
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
    manifest
        .lines()
        .find_map(|line| line.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("version in Cargo.toml")
        .to_string()
}

fn chart_yaml() -> Value {
    let text =
        std::fs::read_to_string(repo_root().join(CHART).join("Chart.yaml")).expect("Chart.yaml");
    serde_saphyr::from_str(&text).expect("Chart.yaml is YAML")
}

#[test]
fn default_values_render_config_default() {
    let version = crate_version();
    let chart: Vec<Value> = template(&[])
        .iter()
        .map(|o| without_helm_metadata(o, "kube-baseline", &version))
        .collect();
    assert_same_objects(
        &chart,
        &kustomize("config/default"),
        "chart vs config/default",
    );
}

/// `controller.tlsSecrets` renders what the kustomize component config/rbac/tls-secrets adds
/// to config/default, and nothing else.
#[test]
fn tls_secrets_value_renders_the_tls_secrets_component() {
    let version = crate_version();
    let chart: Vec<Value> = template(&["--set", "controller.tlsSecrets=true"])
        .iter()
        .map(|o| without_helm_metadata(o, "kube-baseline", &version))
        .collect();
    let overlay = DefaultWithComponent::new("rbac/tls-secrets");
    let config = kustomize(&overlay.dir());
    assert!(has(&config, "ClusterRoleBinding"));
    assert_same_objects(
        &chart,
        &config,
        "chart with tlsSecrets vs config/rbac/tls-secrets",
    );
}

#[test]
fn chart_copies_of_prometheus_and_samples_render_as_config() {
    let version = crate_version();
    let rendered = template(&[
        "--set",
        "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true,samples.enabled=true",
    ]);
    let strip = |kinds: &[&str]| -> Vec<Value> {
        rendered
            .iter()
            .filter(|o| kinds.iter().any(|k| o["kind"] == *k))
            .cloned()
            .collect()
    };
    let monitoring: Vec<Value> = strip(&["ServiceMonitor", "PrometheusRule"])
        .iter()
        .map(|o| without_helm_metadata(o, "kube-baseline", &version))
        .collect();
    // config/prometheus without kube-state-metrics' glue (not in the chart), with
    // config/default's part-of label.
    let config: Vec<Value> = kustomize("config/prometheus")
        .into_iter()
        .filter(|o| o["kind"] == "ServiceMonitor" || o["kind"] == "PrometheusRule")
        .map(|mut o| {
            o["metadata"]["labels"]["app.kubernetes.io/part-of"] = Value::from("kube-baseline");
            o
        })
        .collect();
    assert_eq!(config.len(), 2, "config/prometheus has both");
    assert_same_objects(&monitoring, &config, "chart vs config/prometheus");
    // The samples are created once by a post-install hook (their CRD must exist first).
    let samples: Vec<Value> = strip(&["SecurityBaseline"])
        .into_iter()
        .map(|mut sample| {
            let what = key(&sample);
            let metadata = sample["metadata"].as_object_mut().unwrap();
            let annotations = metadata
                .remove("annotations")
                .unwrap_or_else(|| panic!("{what}: no hook annotation"));
            assert_eq!(
                annotations,
                serde_json::json!({"helm.sh/hook": "post-install"}),
                "{what}"
            );
            sample
        })
        .collect();
    assert_same_objects(
        &samples,
        &kustomize("config/samples"),
        "chart vs config/samples",
    );
}

#[test]
fn versions_and_image_agree() {
    let version = crate_version();
    let chart = chart_yaml();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["version"], version.as_str(), "Chart.yaml version");
    assert_eq!(
        chart["appVersion"],
        version.as_str(),
        "Chart.yaml appVersion"
    );
    let kustomization: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("config/default/kustomization.yaml"))
            .expect("config/default/kustomization.yaml"),
    )
    .expect("YAML");
    let images = kustomization["images"].as_array().expect("images:");
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["newName"], CANONICAL_IMAGE);
    assert_eq!(images[0]["newTag"], version.as_str());
    let values: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join(CHART).join("values.yaml")).expect("values"),
    )
    .expect("YAML");
    assert_eq!(values["image"]["repository"], CANONICAL_IMAGE);
    // Both workloads, rendered either way, run the same reference.
    let expected = format!("{CANONICAL_IMAGE}:{version}");
    for objects in [template(&[]), kustomize("config/default")] {
        for (kind, name) in [
            ("Deployment", "kube-baseline"),
            ("DaemonSet", "kube-baseline-agent"),
        ] {
            let workload = find(&objects, kind, name);
            assert_eq!(
                workload["spec"]["template"]["spec"]["containers"][0]["image"],
                expected.as_str(),
                "{kind} {name}"
            );
        }
    }
}

/// Value sets the chart is linted and rendered with.
const VALUE_SETS: &[&[&str]] = &[
    &[],
    &[
        "--set",
        "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "--set",
        "image.pullPolicy=Always,image.pullSecrets={regcred}",
    ],
    &[
        "--set",
        "agent.enabled=false,crds.install=false,networkPolicy.enabled=false",
    ],
    &[
        "--set",
        "agent.enforce=true,crds.keep=false,samples.enabled=true",
    ],
    &[
        "--set",
        "controller.replicas=1,controller.leaderElection.enabled=false,controller.concurrency=16",
        "--set",
        "controller.kubeApiQps=50,controller.kubeApiBurst=200,controller.baselineSelector=tier=prod",
        "--set",
        "controller.namespaceSelector=env in (prod),logFormat=text",
    ],
    &[
        "--set",
        "metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.labels.release=prom",
        "--set",
        "metrics.prometheusRule.enabled=true,metrics.prometheusRule.labels.team=platform",
    ],
];

#[test]
fn helm_lint_passes_with_every_value_set() {
    for set in VALUE_SETS {
        let mut args = vec!["lint", "--strict", CHART, "--namespace", RELEASE_NAMESPACE];
        args.extend_from_slice(set);
        let (ok, stdout, stderr) = helm_result(&args);
        assert!(ok, "helm lint {set:?}:\n{stdout}{stderr}");
        assert!(
            stdout.contains("0 chart(s) failed"),
            "helm lint {set:?}:\n{stdout}"
        );
    }
}

fn container<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    &find(objects, kind, name)["spec"]["template"]["spec"]["containers"][0]
}

fn args_of(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

#[test]
fn helm_template_values_do_what_they_say() {
    // Image by digest, pull policy and secrets: on both workloads.
    let objects = template(VALUE_SETS[1]);
    for (kind, name) in [
        ("Deployment", "kube-baseline"),
        ("DaemonSet", "kube-baseline-agent"),
    ] {
        let c = container(&objects, kind, name);
        assert_eq!(
            c["image"],
            format!(
                "{CANONICAL_IMAGE}@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            )
            .as_str()
        );
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(
            find(&objects, kind, name)["spec"]["template"]["spec"]["imagePullSecrets"],
            serde_json::json!([{"name": "regcred"}])
        );
    }

    // No agent, no CRDs, no NetworkPolicies.
    let objects = template(VALUE_SETS[2]);
    for kind in [
        "DaemonSet",
        "CustomResourceDefinition",
        "NetworkPolicy",
        "ClusterRole",
    ] {
        let present: Vec<String> = objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .map(key)
            .collect();
        match kind {
            // The controller's ClusterRole stays; the agent's goes.
            "ClusterRole" => assert_eq!(present, ["ClusterRole//kube-baseline-manager"]),
            _ => assert!(present.is_empty(), "{kind}: {present:?}"),
        }
    }
    assert!(
        !objects
            .iter()
            .any(|o| o["metadata"]["name"] == AGENT_NAMESPACE),
        "no agent namespace"
    );
    assert!(has(&objects, "Deployment"));

    // The agent writes: --enforce last, the two host directories mounted read-write; CRDs
    // not kept; the samples.
    let objects = template(VALUE_SETS[3]);
    let agent = container(&objects, "DaemonSet", "kube-baseline-agent");
    assert_eq!(args_of(agent).last().map(String::as_str), Some("--enforce"));
    let mounts: Vec<(String, bool)> = agent["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_string(),
                m["readOnly"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        [
            ("/host".to_string(), true),
            ("/host/etc/kubernetes/audit".to_string(), false),
            ("/host/etc/kubernetes/kubelet.conf.d".to_string(), false),
        ]
    );
    for crd in objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
    {
        assert!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"].is_null(),
            "{}: crds.keep=false",
            key(crd)
        );
    }
    let samples: Vec<String> = objects
        .iter()
        .filter(|o| o["kind"] == "SecurityBaseline")
        .map(key)
        .collect();
    assert_eq!(
        samples,
        [
            "SecurityBaseline//restricted",
            "SecurityBaseline//audit-everything"
        ]
    );
    assert!(
        !template(&[])
            .iter()
            .any(|o| o["kind"] == "SecurityBaseline"),
        "samples are off by default"
    );

    // The controller's flags.
    let objects = template(VALUE_SETS[4]);
    let deployment = find(&objects, "Deployment", "kube-baseline");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(
        args_of(&deployment["spec"]["template"]["spec"]["containers"][0]),
        [
            "run",
            "--log-format=text",
            "--metrics-address=0.0.0.0:8080",
            "--concurrency=16",
            "--kube-api-qps=50",
            "--kube-api-burst=200",
            "--baseline-selector=tier=prod",
            "--namespace-selector=env in (prod)",
        ]
    );

    // Prometheus Operator objects with their labels.
    let objects = template(VALUE_SETS[5]);
    assert_eq!(
        find(&objects, "ServiceMonitor", "kube-baseline")["metadata"]["labels"]["release"],
        "prom"
    );
    assert_eq!(
        find(&objects, "PrometheusRule", "kube-baseline")["metadata"]["labels"]["team"],
        "platform"
    );

    // Scheduling values land on the pods; defaults keep config/'s.
    let objects = template(&[
        "--set",
        "controller.nodeSelector.pool=system,controller.priorityClassName=system-cluster-critical",
        "--set",
        "controller.podAnnotations.a=b,agent.priorityClassName=system-node-critical",
        "--set",
        "controller.tolerations[0].key=dedicated,controller.tolerations[0].operator=Exists",
        "--set",
        "controller.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
        "--set",
        "controller.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
        "--set",
        "controller.resources.limits.memory=512Mi",
    ]);
    let pod = &find(&objects, "Deployment", "kube-baseline")["spec"]["template"];
    assert_eq!(pod["spec"]["nodeSelector"]["pool"], "system");
    assert_eq!(pod["spec"]["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["metadata"]["annotations"]["a"], "b");
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "dedicated");
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["key"],
        "pool"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "512Mi"
    );
    assert_eq!(
        find(&objects, "DaemonSet", "kube-baseline-agent")["spec"]["template"]["spec"]["priorityClassName"],
        "system-node-critical"
    );

    // Another release namespace: every reference to it follows.
    let (ok, stdout, stderr) = helm_result(&[
        "template",
        "kb",
        CHART,
        "--namespace",
        "security-system",
        "--skip-tests",
    ]);
    assert!(ok, "{stderr}");
    let objects = parse_objects(&stdout, "helm template");
    assert!(
        !stdout.contains(RELEASE_NAMESPACE),
        "kube-baseline-system left in a release in security-system"
    );
    let guard = find(
        &objects,
        "ValidatingAdmissionPolicy",
        "kube-baseline-write-guard",
    );
    assert!(
        guard["spec"]["matchConditions"][0]["expression"]
            .as_str()
            .unwrap()
            .contains("system:serviceaccounts:security-system"),
        "{guard}"
    );
    assert!(
        args_of(container(&objects, "DaemonSet", "kube-baseline-agent"))
            .contains(&"--namespace=security-system".to_string())
    );
}

/// Every flag the chart can render parses in the binary: `kube-baseline run|agent ARGS
/// --help` exits 0 only when clap accepted each argument before `--help` (an unknown flag or
/// a bad value exits 2).
#[test]
fn every_flag_the_chart_renders_is_accepted_by_the_binary() {
    let objects = template(&[
        "--set",
        "controller.leaderElection.leaseDurationSeconds=20,controller.concurrency=4",
        "--set",
        "controller.kubeApiBurst=50,controller.shard=blue",
        // --set reads 25.5 as a string (the schema refuses it); a values file or JSON does not.
        "--set-json",
        "controller.kubeApiQps=25.5",
        "--set",
        "controller.versionIntervalSeconds=600,controller.checkNodeSelector=pool=system",
        "--set-literal",
        "controller.baselineSelector=tier=prod,team!=x",
        "--set-literal",
        "controller.namespaceSelector=env in (prod,stage)",
        "--set",
        "agent.enforce=true,agent.interval=5m,logFormat=text",
        "--set",
        "controller.tlsSecrets=true",
        "--set",
        "controller.reports=policyreport,controller.reportMaxResults=200",
    ]);
    for (kind, name, subcommand) in [
        ("Deployment", "kube-baseline", "run"),
        ("DaemonSet", "kube-baseline-agent", "agent"),
    ] {
        let args = args_of(container(&objects, kind, name));
        assert_eq!(args[0], subcommand);
        let output = Command::new(operator_binary())
            .args(&args)
            .arg("--help")
            .output()
            .expect("kube-baseline runs");
        assert!(
            output.status.success(),
            "kube-baseline {args:?} --help: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Each value reached its flag.
        let expected: &[&str] = if subcommand == "run" {
            &[
                "--lease-duration-seconds=20",
                "--concurrency=4",
                "--kube-api-qps=25.5",
                "--kube-api-burst=50",
                "--baseline-selector=tier=prod,team!=x",
                "--namespace-selector=env in (prod,stage)",
                "--node-selector=pool=system",
                "--shard=blue",
                "--version-interval-seconds=600",
                "--tls-secrets",
                "--reports=policyreport",
                "--report-max-results=200",
                "--log-format=text",
            ]
        } else {
            &["--interval=5m", "--enforce", "--log-format=text"]
        };
        for flag in expected {
            assert!(args.iter().any(|a| a == flag), "{flag} not in {args:?}");
        }
    }
}

/// Wrong values, and what values.schema.json's message must say about them.
const INVALID: &[(&[&str], &[&str])] = &[
    (
        &["--set-string", "controller.replicas=two"],
        &["/controller/replicas", "integer"],
    ),
    (
        &["--set", "image.pullPolicy=Sometimes"],
        &["/image/pullPolicy", "Always"],
    ),
    (&["--set", "logFormat=xml"], &["/logFormat", "json"]),
    (&["--set", "controler.replicas=1"], &["controler"]),
    (&["--set", "agent.interval=sixty"], &["/agent/interval"]),
    (&["--set", "image.digest=sha256:abc"], &["/image/digest"]),
    (&["--set", "metrics.port=0"], &["/metrics/port", "minimum"]),
    (&["--set", "crds.keep=maybe"], &["/crds/keep", "boolean"]),
    (
        &["--set", "controller.reports=wgpolicy"],
        &["/controller/reports", "openreports"],
    ),
];

#[test]
fn wrong_values_fail_with_the_schemas_message() {
    for (set, message) in INVALID {
        let (ok, _, stderr) = template_result(set);
        assert!(!ok, "helm template {set:?} succeeded");
        assert!(
            stderr.contains("values don't meet the specifications of the schema"),
            "helm template {set:?}: not the schema's error: {stderr}"
        );
        for part in *message {
            assert!(
                stderr.contains(part),
                "helm template {set:?}: the message does not say {part:?}: {stderr}"
            );
        }
    }
}

/// The objects of a release's manifest as kind/namespace/name.
fn release_objects(release: &str) -> Vec<Value> {
    parse_objects(
        &helm(&["get", "manifest", release, "--namespace", RELEASE_NAMESPACE]),
        "helm get manifest",
    )
}

fn kubectl_get(object: &Value) -> Option<Value> {
    let kind = object["kind"].as_str().unwrap();
    let api_version = object["apiVersion"].as_str().unwrap();
    let group = api_version
        .split_once('/')
        .map(|(g, _)| g)
        .unwrap_or_default();
    let resource = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let name = object["metadata"]["name"].as_str().unwrap();
    let mut args = vec!["get", &resource, name, "-o", "json"];
    let namespace;
    if let Some(ns) = object["metadata"]["namespace"].as_str() {
        namespace = ns.to_string();
        args.extend(["-n", &namespace]);
    }
    let (ok, stdout, _) = kubectl_result(&args, None);
    ok.then(|| serde_json::from_str(&stdout).expect("kubectl JSON"))
}

/// Installs, upgrades and uninstalls the chart on the local control plane with the README's
/// command (no pods run there: the node test node_helm.rs has the pods). Other test binaries
/// applied parts of config/ with kubectl before (CRDs, RBAC, the namespace), which the
/// release takes over with `--take-ownership --force-conflicts` (kubectl's server-side
/// apply owns their fields; a user's cluster needs neither flag). The
/// uninstall keeps the CRDs and the release namespace, and the next binaries apply theirs
/// again.
#[tokio::test]
async fn helm_install_upgrade_uninstall_on_the_control_plane() {
    let env = TestEnv::new("helm").await;
    let release = "kb-e2e";
    let version = crate_version();

    // A release left by an interrupted run goes first.
    let (_, _, _) = helm_result(&[
        "uninstall",
        release,
        "--namespace",
        RELEASE_NAMESPACE,
        "--wait",
    ]);

    // Install: every object accepted by the API server and there, as rendered.
    let out = helm(&[
        "install",
        release,
        CHART,
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--take-ownership",
        "--force-conflicts",
    ]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(
        out.contains("helm test kb-e2e"),
        "NOTES.txt says how to check: {out}"
    );
    let objects = release_objects(release);
    assert_same_objects(
        &objects
            .iter()
            .map(|o| without_helm_metadata(o, release, &version))
            .collect::<Vec<_>>(),
        &kustomize("config/default"),
        "installed release vs config/default",
    );
    for object in &objects {
        let live =
            kubectl_get(object).unwrap_or_else(|| panic!("{} not in the cluster", key(object)));
        assert_eq!(
            live["metadata"]["annotations"]["meta.helm.sh/release-name"],
            release,
            "{} belongs to the release",
            key(object)
        );
    }
    let deployment = find(&objects, "Deployment", "kube-baseline");
    assert!(kubectl_get(deployment).is_some());
    assert!(kubectl_get(find(&objects, "DaemonSet", "kube-baseline-agent")).is_some());

    // The other value sets' objects pass the API server's validation too (a server-side dry
    // run, now that both namespaces exist; the Prometheus Operator's CRDs are not installed
    // here, so not the set that renders its objects).
    for set in &VALUE_SETS[1..5] {
        let mut args = vec!["template", release, CHART, "--namespace", RELEASE_NAMESPACE];
        args.extend_from_slice(set);
        let rendered = helm(&args);
        let (ok, stdout, stderr) = kubectl_result(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--dry-run=server",
                "-f",
                "-",
            ],
            Some(&rendered),
        );
        assert!(
            ok,
            "server-side dry run of the chart with {set:?}: {stderr}"
        );
        assert!(stdout.contains("deployment.apps/kube-baseline"), "{stdout}");
    }

    // Upgrade: the values' changes reach the cluster (--force-conflicts again, for the
    // fields kubectl's apply still co-owns).
    helm(&[
        "upgrade",
        release,
        CHART,
        "--namespace",
        RELEASE_NAMESPACE,
        "--force-conflicts",
        "--set",
        "agent.enforce=true,controller.replicas=3,image.tag=9.9.9",
    ]);
    let live = kubectl_get(deployment).expect("Deployment");
    assert_eq!(live["spec"]["replicas"], 3);
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{CANONICAL_IMAGE}:9.9.9").as_str()
    );
    let agent = kubectl_get(find(&objects, "DaemonSet", "kube-baseline-agent")).expect("agent");
    assert_eq!(
        args_of(&agent["spec"]["template"]["spec"]["containers"][0])
            .last()
            .map(String::as_str),
        Some("--enforce")
    );
    // An invalid upgrade is refused before anything is sent, with the schema's message.
    let (ok, _, stderr) = helm_result(&[
        "upgrade",
        release,
        CHART,
        "--namespace",
        RELEASE_NAMESPACE,
        "--set",
        "logFormat=xml",
    ]);
    assert!(!ok && stderr.contains("/logFormat"), "{stderr}");
    let history = helm(&[
        "history",
        release,
        "--namespace",
        RELEASE_NAMESPACE,
        "-o",
        "json",
    ]);
    let history: Vec<Value> = serde_json::from_str(&history).expect("history JSON");
    assert_eq!(history.len(), 2, "install and one upgrade: {history:?}");

    // A SecurityBaseline (Audit: nothing acts on it) outlives the uninstall with its CRD.
    let baseline = env.name("kept");
    let manifest = format!(
        "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\nmetadata:\n  name: {baseline}\n  \
         labels:\n    {TEST_LABEL}: helm\nspec:\n  mode: Audit\n  namespaceSelector:\n    matchLabels:\n      \
         {TEST_LABEL}: helm-none\n"
    );
    let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(&manifest));
    assert!(ok, "create the SecurityBaseline: {stderr}");
    // The agent's namespace is deleted behind every namespace earlier tests left terminating.
    wait_no_terminating_namespaces(&env.admin, Duration::from_secs(600)).await;
    let (ok, _, stderr) = helm_result(&[
        "uninstall",
        release,
        "--namespace",
        RELEASE_NAMESPACE,
        "--wait",
        "--timeout",
        "3m",
    ]);
    assert!(ok, "helm uninstall: {stderr}");
    assert!(
        !stderr.contains("rror"),
        "helm uninstall reported an error: {stderr}"
    );
    for object in &objects {
        let left = kubectl_get(object);
        let kept = object["kind"] == "CustomResourceDefinition"
            || (object["kind"] == "Namespace" && object["metadata"]["name"] == RELEASE_NAMESPACE);
        if kept {
            let left = left.unwrap_or_else(|| panic!("{} not kept", key(object)));
            assert!(
                left["metadata"]["deletionTimestamp"].is_null(),
                "{} is being deleted",
                key(object)
            );
        } else if object["kind"] != "Namespace" {
            assert!(left.is_none(), "{} left after uninstall", key(object));
        }
    }
    kubectl(&["get", "securitybaseline", &baseline]);
    kubectl(&["delete", "securitybaseline", &baseline]);
    // The agent's namespace goes (uninstall --wait waited for it).
    let (ok, _, stderr) = kubectl_result(&["get", "namespace", AGENT_NAMESPACE], None);
    assert!(
        !ok && stderr.contains("NotFound"),
        "namespace {AGENT_NAMESPACE} left after uninstall --wait: {stderr}"
    );
}

/// README.md's values table, as values.yaml's `# --` comments make it: one row per
/// documented value (its dotted path, its default as YAML flow, the comment).
fn values_table() -> String {
    let text =
        std::fs::read_to_string(repo_root().join(CHART).join("values.yaml")).expect("values");
    let mut rows = vec![
        "| value | default | meaning |".to_string(),
        "|---|---|---|".to_string(),
    ];
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut doc: Option<String> = None;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if let Some(comment) = trimmed.strip_prefix("# -- ") {
            doc = Some(comment.to_string());
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("- ") {
            continue;
        }
        let Some((name, value)) = trimmed.split_once(':') else {
            continue;
        };
        path.retain(|(level, _)| *level < indent);
        path.push((indent, name.to_string()));
        if let Some(meaning) = doc.take() {
            let dotted: Vec<&str> = path.iter().map(|(_, n)| n.as_str()).collect();
            let mut default = value.trim().to_string();
            if default.is_empty() {
                // A block value: its lines, as flow YAML through JSON.
                let block: Vec<&str> = lines[i + 1..]
                    .iter()
                    .take_while(|l| {
                        let inner = l.len() - l.trim_start().len();
                        l.trim().is_empty()
                            || inner > indent
                            || (inner == indent && l.trim_start().starts_with("- "))
                    })
                    .copied()
                    .collect();
                let parsed: Value =
                    serde_saphyr::from_str(&block.join("\n")).expect("block value is YAML");
                default = parsed.to_string();
            }
            rows.push(format!(
                "| `{}` | `{}` | {} |",
                dotted.join("."),
                default,
                meaning.replace('|', "\\|")
            ));
        }
    }
    rows.join("\n") + "\n"
}

#[test]
fn readme_values_table_is_generated_from_values_yaml() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let start = "<!-- values table: generated from charts/kube-baseline/values.yaml by e2e/tests/helm_chart.rs -->\n";
    let end = "<!-- end of values table -->";
    let expected = values_table();
    let (_, rest) = readme
        .split_once(start)
        .unwrap_or_else(|| panic!("README.md lacks {start:?}; the table is:\n{expected}"));
    let (table, _) = rest.split_once(end).expect("end of the values table");
    assert!(
        table == expected,
        "README.md's values table is out of date; replace it with:\n{expected}"
    );
}

#[test]
fn workflows_pass_actionlint() {
    let workflows = repo_root().join(".github/workflows");
    let files: Vec<_> = std::fs::read_dir(&workflows)
        .expect(".github/workflows")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(files.len() >= 2, "ci and release workflows: {files:?}");
    let output = Command::new(actionlint_binary())
        .args(["-color=false", "-shellcheck=", "-pyflakes="])
        .current_dir(repo_root())
        .output()
        .expect("actionlint runs");
    assert!(
        output.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

//! `kube-baseline check`, run as a binary: the fixture cases under tests/fixtures/check/
//! (see the README there), the sample manifests under examples/, and the CLI's contract
//! (exit codes, output formats, help).

// A test binary: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kube-baseline");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/check")
}

/// Runs `kube-baseline <args>` in `dir`, feeding `stdin`.
fn run_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("stdin written");
    }
    child.wait_with_output().expect("the binary finishes")
}

fn run(args: &[&str]) -> Output {
    run_in(repo(), args, None)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// A finding as fixtures spell it (messages are not compared).
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Finding {
    #[serde(default)]
    namespace: String,
    kind: String,
    name: String,
    check: String,
    reason: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Expected {
    description: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    stdin: Option<String>,
    exit: i32,
    #[serde(default)]
    drift: Option<BTreeMap<String, Vec<Finding>>>,
    #[serde(default)]
    stderr: Vec<String>,
}

/// Findings per baseline from `-o json` output.
fn findings_by_baseline(stdout: &[u8]) -> BTreeMap<String, Vec<Finding>> {
    let report: Value = serde_json::from_slice(stdout).expect("stdout is one JSON document");
    report["baselines"]
        .as_array()
        .expect("baselines")
        .iter()
        .map(|b| {
            let name = b["name"].as_str().expect("name").to_owned();
            let drift = b["drift"]
                .as_array()
                .expect("drift")
                .iter()
                .map(|d| Finding {
                    namespace: d["namespace"].as_str().unwrap_or_default().to_owned(),
                    kind: d["kind"].as_str().expect("kind").to_owned(),
                    name: d["name"].as_str().expect("name").to_owned(),
                    check: d["check"].as_str().expect("check").to_owned(),
                    reason: d["reason"].as_str().expect("reason").to_owned(),
                })
                .collect();
            (name, drift)
        })
        .collect()
}

/// Runs one fixture case and checks exit code, findings and stderr.
fn fixture_case(name: &str) {
    let dir = fixtures().join(name);
    let expected: Expected = serde_saphyr::from_str(
        &std::fs::read_to_string(dir.join("expected.yaml")).expect("expected.yaml"),
    )
    .expect("expected.yaml parses");
    assert!(!expected.description.is_empty());
    let mut args: Vec<String> = vec!["check".into()];
    if dir.join("baseline.yaml").exists() {
        args.extend(["--baseline".into(), "baseline.yaml".into()]);
    }
    if dir.join("manifests").exists() {
        args.push("manifests".into());
    }
    args.extend(expected.args.iter().cloned());
    args.extend(["-o".into(), "json".into()]);
    let stdin = expected
        .stdin
        .as_ref()
        .map(|f| std::fs::read(dir.join(f)).expect("stdin file"));
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_in(&dir, &arg_refs, stdin.as_deref());

    assert_eq!(
        output.status.code(),
        Some(expected.exit),
        "{name}: {}\n{}",
        expected.description,
        describe(&output)
    );
    if let Some(drift) = &expected.drift {
        assert_eq!(
            &findings_by_baseline(&output.stdout),
            drift,
            "{name}: {}\n{}",
            expected.description,
            describe(&output)
        );
    }
    if expected.exit == 2 {
        assert!(
            output.stdout.is_empty(),
            "{name}: nothing is printed on error\n{}",
            describe(&output)
        );
    }
    let stderr = text(&output.stderr);
    for wanted in &expected.stderr {
        assert!(
            stderr.contains(wanted.as_str()),
            "{name}: stderr lacks {wanted:?}\n{}",
            describe(&output)
        );
    }
}

macro_rules! fixture_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                fixture_case(&stringify!($case).replace('_', "-"));
            }
        )*

        const CASES: &[&str] = &[$(stringify!($case)),*];
    };
}

fixture_cases!(
    apiserver_skew,
    compliant,
    drift,
    malformed_yaml,
    malformed_object,
    missing_namespace,
    invalid_baseline,
    invalid_selector,
    unknown_field,
    stdin,
    list_documents,
    node_files,
    node_reports,
    several_baselines,
    versions,
    tls,
    tls_certificates,
    tls_gateway,
    ingress_v1beta1,
);

#[test]
fn every_fixture_folder_is_a_test_case() {
    let mut folders: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().replace('-', "_"))
        .collect();
    folders.sort();
    let mut cases: Vec<String> = CASES.iter().map(|c| (*c).to_owned()).collect();
    cases.sort();
    assert_eq!(folders, cases);
}

fn finding(namespace: &str, kind: &str, name: &str, check: &str, reason: &str) -> Finding {
    Finding {
        namespace: namespace.into(),
        kind: kind.into(),
        name: name.into(),
        check: check.into(),
        reason: reason.into(),
    }
}

/// The README's main job: the sample cluster against the embedded default baseline.
#[test]
fn examples_cluster_shows_drift_in_a_table_and_exits_1() {
    let output = run(&["check", "examples/cluster"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    // The preview of a stricter enforce level is a server-side dry run: offline, say so.
    assert!(
        text(&output.stderr).contains("note: pod-security.preview (what enforcing the Pod Security level would reject) needs --live"),
        "{}",
        describe(&output)
    );
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with(
            "SecurityBaseline restricted (Enforce mode, from embedded default config/samples/restricted.yaml): drift found"
        ),
        "{stdout}"
    );
    assert!(
        lines[1]
            .split_whitespace()
            .eq(["NAMESPACE", "KIND", "NAME", "CHECK", "REASON", "MESSAGE"]),
        "{stdout}"
    );
    assert_eq!(
        lines.last().copied(),
        Some(
            "6 drift findings in 2 namespaces (2 namespaces selected, nodes: not checked, no Node, NodeReport or --node given)"
        )
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("2 objects of kinds check does not evaluate were ignored"));

    let json = run(&["check", "examples/cluster", "-o", "json"]);
    assert_eq!(
        findings_by_baseline(&json.stdout)["restricted"],
        vec![
            finding(
                "payments",
                "Namespace",
                "payments",
                "pod-security.labels",
                "Modified"
            ),
            finding(
                "payments",
                "NetworkPolicy",
                "baseline-restricted-deny-all",
                "network.default-deny",
                "Missing"
            ),
            finding("payments", "Role", "deployer", "rbac.wildcard", "Violation"),
            finding(
                "payments",
                "RoleBinding",
                "alice-admin",
                "rbac.admin-binding",
                "Violation"
            ),
            finding(
                "sandbox",
                "NetworkPolicy",
                "baseline-restricted-allow-dns",
                "network.allow-dns",
                "Unexpected"
            ),
            finding(
                "sandbox",
                "NetworkPolicy",
                "baseline-restricted-deny-all",
                "network.default-deny",
                "Unexpected"
            ),
        ]
    );
}

#[test]
fn examples_compliant_exits_0() {
    let output = run(&["check", "examples/compliant"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("): compliant\n"), "{stdout}");
    assert!(stdout.contains("0 drift findings in 0 namespaces (1 namespaces selected"));
}

const NODE_FILES: &[&str] = &[
    "--node",
    "cp-1",
    "--kubelet-config",
    "examples/node/kubelet/config.yaml",
    "--kubelet-config-dir",
    "examples/node/kubelet/kubelet.conf.d",
    "--apiserver-flags",
    "examples/node/kube-apiserver.yaml",
    "--audit-policy",
    "examples/node/audit-policy.yaml",
    "--encryption-config",
    "examples/node/encryption-config.yaml",
];

#[test]
fn examples_node_files_add_a_control_plane_node() {
    let mut args = vec!["check", "examples/cluster", "-o", "json"];
    args.extend(NODE_FILES);
    let output = run(&args);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let nodes: Vec<Finding> = findings_by_baseline(&output.stdout)["restricted"]
        .iter()
        .filter(|f| f.namespace.is_empty())
        .cloned()
        .collect();
    assert_eq!(
        nodes,
        vec![
            finding("", "Node", "cp-1", "apiserver.anonymous-auth", "Violation"),
            finding("", "Node", "cp-1", "audit.log-maxage", "Violation"),
            finding("", "Node", "cp-1", "audit.policy-matches", "Violation"),
            // kubeadm's kubelet defaults fail CIS 4.2.13, 4.2.9 and 4.2.12, which the
            // restricted sample requires: no pod PID limit, a self-signed serving
            // certificate, Go's default cipher suites.
            finding("", "Node", "cp-1", "kubelet.pod-pids-limit", "Violation"),
            finding("", "Node", "cp-1", "kubelet.read-only-port", "Violation"),
            finding("", "Node", "cp-1", "kubelet.tls-cert-file", "Violation"),
            finding("", "Node", "cp-1", "kubelet.tls-cipher-suites", "Violation"),
        ]
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("json");
    let summary = &report["baselines"][0]["summary"];
    assert_eq!(summary["nodesChecked"], true);
    assert_eq!(
        (
            summary["nodesSelected"].as_u64(),
            summary["nodesCompliant"].as_u64()
        ),
        (Some(1), Some(0))
    );
}

/// The agent's own report of a node (`agent --print` on a fake host) and `check --node` on
/// the same files reach the same verdicts: one observation code path.
#[test]
fn agent_reports_and_node_files_agree() {
    let host = std::env::temp_dir().join(format!("kube-baseline-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&host);
    let node = repo().join("tests/fixtures/check/node-files/files");
    let place = |from: &Path, to: &str| {
        let target = host.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().expect("parent")).expect("dir");
        std::fs::copy(from, target).expect("copied");
    };
    place(
        &node.join("kubelet-config.yaml"),
        "/var/lib/kubelet/config.yaml",
    );
    for drop_in in ["10-hardening.conf", "20-debug.conf"] {
        place(
            &node.join("kubelet.conf.d").join(drop_in),
            &format!("/etc/kubernetes/kubelet.conf.d/{drop_in}"),
        );
    }
    place(
        &node.join("kube-apiserver-flags.txt"),
        "/etc/kubernetes/apiserver-flags.txt",
    );
    place(
        &node.join("encryption-config.yaml"),
        "/etc/kubernetes/enc/encryption-config.yaml",
    );
    std::fs::create_dir_all(host.join("proc")).expect("proc");

    let host_root = host.display().to_string();
    let agent = run(&[
        "agent",
        "--print",
        "--once",
        "--node-name",
        "cp-1",
        "--host-root",
        &host_root,
        "--kubelet-config",
        "/var/lib/kubelet/config.yaml",
        "--kubelet-config-dir",
        "/etc/kubernetes/kubelet.conf.d",
        "--apiserver-flags-file",
        "/etc/kubernetes/apiserver-flags.txt",
    ]);
    assert_eq!(agent.status.code(), Some(0), "{}", describe(&agent));

    let baseline = fixtures().join("node-files/baseline.yaml");
    let baseline = baseline.display().to_string();
    let from_report = run_in(
        repo(),
        &["check", "-b", &baseline, "-", "-o", "json"],
        Some(&agent.stdout),
    );
    let from_files = run_in(
        &node,
        &[
            "check",
            "-b",
            &baseline,
            "-o",
            "json",
            "--node",
            "cp-1",
            "--kubelet-config",
            "kubelet-config.yaml",
            "--kubelet-config-dir",
            "kubelet.conf.d",
            "--apiserver-flags",
            "kube-apiserver-flags.txt",
            "--encryption-config",
            "encryption-config.yaml",
        ],
        None,
    );
    let _ = std::fs::remove_dir_all(&host);
    assert_eq!(
        from_report.status.code(),
        Some(1),
        "{}",
        describe(&from_report)
    );
    assert_eq!(
        from_files.status.code(),
        Some(1),
        "{}",
        describe(&from_files)
    );
    let reported = findings_by_baseline(&from_report.stdout);
    assert_eq!(reported, findings_by_baseline(&from_files.stdout));
    assert_eq!(
        reported["nodes"],
        vec![
            finding(
                "",
                "Node",
                "cp-1",
                "apiserver.encryption-at-rest",
                "Violation"
            ),
            finding("", "Node", "cp-1", "kubelet.read-only-port", "Violation"),
        ]
    );
}

#[test]
fn yaml_and_json_output_are_one_stable_document() {
    let json = run(&["check", "examples/cluster", "-o", "json"]);
    let yaml = run(&["check", "examples/cluster", "-o", "yaml"]);
    assert_eq!(json.status.code(), Some(1));
    assert_eq!(yaml.status.code(), Some(1));
    let from_json: Value = serde_json::from_slice(&json.stdout).expect("json");
    let from_yaml: Value = serde_saphyr::from_str(&text(&yaml.stdout)).expect("yaml");
    assert_eq!(from_json, from_yaml);
    assert_eq!(from_json["compliant"], false);
    let baseline = &from_json["baselines"][0];
    let keys: Vec<&str> = baseline
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["compliant", "drift", "mode", "name", "source", "summary"],
        "the document's fields (sorted)"
    );
    assert_eq!(baseline["summary"]["driftTotal"], 6);
    assert_eq!(baseline["summary"]["namespacesDrifted"], 1);
    assert_eq!(
        baseline["drift"][0]["message"].as_str().map(str::is_empty),
        Some(false)
    );
}

#[test]
fn help_documents_every_flag_and_gives_examples() {
    let output = run(&["check", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = text(&output.stdout);
    for flag in [
        "--baseline",
        "--live",
        "--output",
        "--operator-namespace",
        "--verbose",
        "--node",
        "--kubelet-config",
        "--kubelet-config-dir",
        "--kubelet-flags",
        "--apiserver-flags",
        "--audit-policy",
        "--encryption-config",
        "--authorization-config",
        "--authentication-config",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("embedded default config/samples/restricted.yaml"));
    assert!(help.contains("Examples:\n  # The sample cluster"));
    assert!(help.contains("kube-baseline check examples/cluster"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["check"],
        vec!["check", "--live", "examples/cluster"],
        vec!["check", "examples/does-not-exist"],
        vec!["check", "examples/cluster", "--kubelet-config", "x.yaml"],
        vec!["check", "examples/cluster", "--node", "n"],
        vec![
            "check",
            "tests/fixtures/check/node-files/files/kubelet.conf.d",
        ],
    ] {
        let output = run(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            describe(&output)
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn live_without_a_reachable_cluster_is_an_error() {
    let home = std::env::temp_dir().join(format!("kube-baseline-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("home");
    let output = Command::new(BIN)
        .args(["check", "--live"])
        .env("KUBECONFIG", home.join("no-such-kubeconfig"))
        .env("HOME", &home)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .expect("runs");
    let _ = std::fs::remove_dir_all(&home);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains("error: cannot create a Kubernetes client"),
        "{}",
        describe(&output)
    );
}

#[test]
fn verbose_lists_ignored_objects_and_namespaces_without_manifest_are_warned() {
    let output = run(&[
        "check",
        "-v",
        "examples/cluster/workloads.yaml",
        "examples/cluster/sandbox.yaml",
    ]);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("ignored: examples/cluster/workloads.yaml: document 1: apps/v1 Deployment shop/storefront"),
        "{stderr}"
    );
    assert!(stderr.contains("read: 2 NetworkPolicy"), "{stderr}");
    assert!(
        stderr.contains("warning: namespace sandbox has objects but no Namespace manifest"),
        "{stderr}"
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

/// The summary says which release table judged the versions, or that nothing about versions
/// was given (no Node, no --kubernetes-version): not checked, never a pass.
#[test]
fn the_summary_names_the_release_table_or_says_versions_were_not_checked() {
    let dir = fixtures().join("versions");
    let checked = run_in(
        &dir,
        &[
            "check",
            "--baseline",
            "baseline.yaml",
            "manifests",
            "--kubernetes-version",
            "v1.33.4",
        ],
        None,
    );
    assert_eq!(checked.status.code(), Some(1), "{}", describe(&checked));
    assert!(
        text(&checked.stdout).contains(&format!(
            "versions: release table of {}",
            kube_baseline::domain::versions::TABLE_DATE
        )),
        "{}",
        describe(&checked)
    );
    let namespace_only = b"apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
    let unchecked = run_in(
        &dir,
        &["check", "--baseline", "baseline.yaml", "-", "-o", "json"],
        Some(namespace_only),
    );
    assert_eq!(unchecked.status.code(), Some(0), "{}", describe(&unchecked));
    let report: serde_json::Value = serde_json::from_slice(&unchecked.stdout).expect("json");
    assert_eq!(
        report["baselines"][0]["summary"]["kubernetesVersion"]["checked"], false,
        "{report}"
    );
}

/// `check` honours spec.waivers offline with the controller's domain code: waived findings
/// are listed apart with their waiver and its reason and do not make the exit code 1; an
/// expired waiver no longer applies. Times are relative to now (check judges at now).
#[test]
fn waivers_are_honoured_offline_and_expire() {
    let dir = std::env::temp_dir().join(format!("kb-check-waivers-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("manifests")).expect("temp dir");
    let compliant = std::fs::read_to_string(fixtures().join("compliant/manifests/all.yaml"))
        .expect("compliant manifests");
    // A second selected namespace holding nothing the baseline wants.
    let manifests = format!(
        "{compliant}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: legacy\n  labels: {{env: prod, tier: legacy}}\n"
    );
    std::fs::write(dir.join("manifests/all.yaml"), manifests).expect("manifests written");
    let baseline_text = std::fs::read_to_string(fixtures().join("compliant/baseline.yaml"))
        .expect("compliant baseline");
    let now = jiff::Timestamp::now();
    let day = jiff::SignedDuration::from_hours(24);
    let write_baseline = |granted: jiff::Timestamp, expires: jiff::Timestamp| {
        let waivers = format!(
            r#"  waivers:
  - name: legacy-apps
    checks: ["network.*", role.provisioned, pod-security.labels]
    namespaceSelector: {{matchLabels: {{tier: legacy}}}}
    reason: legacy is being migrated off this cluster (MIG-4)
    owner: team-legacy
    granted: "{granted}"
    expires: "{expires}"
  - name: stale-one
    checks: [rbac.wildcard]
    namespaces: [shop]
    reason: shop's wildcard role is gone since the audit
    owner: team-shop
    granted: "{granted}"
    expires: "{expires}"
  - name: typo
    checks: [network.default-denied]
    reason: a check ID that does not exist is reported
    owner: team-shop
    granted: "{granted}"
    expires: "{expires}"
"#,
            granted = granted.round(jiff::Unit::Second).expect("round"),
            expires = expires.round(jiff::Unit::Second).expect("round"),
        );
        std::fs::write(
            dir.join("baseline.yaml"),
            format!("{baseline_text}{waivers}"),
        )
        .expect("baseline written");
    };
    write_baseline(now - day, now + day * 30);

    let json = run_in(
        &dir,
        &[
            "check",
            "--baseline",
            "baseline.yaml",
            "manifests",
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(json.status.code(), Some(0), "{}", describe(&json));
    let report: Value = serde_json::from_slice(&json.stdout).expect("json");
    let team = &report["baselines"][0];
    assert_eq!(team["drift"], serde_json::json!([]));
    assert_eq!(team["summary"]["waived"], 4);
    let waived: Vec<(&str, &str, &str)> = team["waived"]
        .as_array()
        .expect("waived")
        .iter()
        .map(|w| {
            assert_eq!(w["namespace"], "legacy");
            assert_eq!(
                w["waiverReason"],
                "legacy is being migrated off this cluster (MIG-4)"
            );
            assert_eq!(w["owner"], "team-legacy");
            (
                w["kind"].as_str().expect("kind"),
                w["check"].as_str().expect("check"),
                w["waiver"].as_str().expect("waiver"),
            )
        })
        .collect();
    assert_eq!(
        waived,
        [
            ("Namespace", "pod-security.labels", "legacy-apps"),
            ("NetworkPolicy", "network.allow-dns", "legacy-apps"),
            ("NetworkPolicy", "network.default-deny", "legacy-apps"),
            ("Role", "role.provisioned", "legacy-apps"),
        ]
    );
    let states: Vec<(&str, &str, i64)> = team["waivers"]
        .as_array()
        .expect("waivers")
        .iter()
        .map(|w| {
            (
                w["name"].as_str().expect("name"),
                w["state"].as_str().expect("state"),
                w["matched"].as_i64().expect("matched"),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("legacy-apps", "Active", 4),
            ("stale-one", "Active", 0),
            ("typo", "Invalid", 0),
        ]
    );

    let table = run_in(
        &dir,
        &["check", "--baseline", "baseline.yaml", "manifests"],
        None,
    );
    assert_eq!(table.status.code(), Some(0), "{}", describe(&table));
    let printed = text(&table.stdout);
    for wanted in [
        "Waived (not drift):",
        "legacy-apps  legacy is being migrated off this cluster (MIG-4)",
        "waiver stale-one (Active): stale",
        "waiver typo (Invalid): no such check: network.default-denied",
        ", 4 waived",
    ] {
        assert!(printed.contains(wanted), "{wanted:?} in\n{printed}");
    }

    // Expired: the same findings are drift again, exit 1.
    write_baseline(now - day * 40, now - day);
    let expired = run_in(
        &dir,
        &[
            "check",
            "--baseline",
            "baseline.yaml",
            "manifests",
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(expired.status.code(), Some(1), "{}", describe(&expired));
    let report: Value = serde_json::from_slice(&expired.stdout).expect("json");
    let team = &report["baselines"][0];
    assert_eq!(team["summary"]["driftTotal"], 4);
    assert!(team.get("waived").is_none());
    assert_eq!(team["waivers"][0]["state"], "Expired");
    std::fs::remove_dir_all(&dir).ok();
}

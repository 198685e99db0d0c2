//! Policy reports end to end, with the real CRDs from the OpenReports reports-api module and
//! Kyverno's wgpolicyk8s.io CRDs (e2e/cluster report-crds), so the API server validates
//! every report: a Report per selected namespace and a ClusterReport per baseline, results
//! that follow drift and waivers, a report deleted when its namespace is unselected, no
//! report write in an idle minute or across a restart, the older PolicyReport API started
//! when its CRDs appear after the operator (and again after they were removed and
//! reinstalled), and a result limit with an exact summary.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp, Unit};
use kube_baseline_e2e::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
/// Longer than the operator's look-up of the report API group (every 30 s).
const DISCOVERY_WAIT: Duration = Duration::from_secs(90);

fn crd_files(prefix: &str) -> Vec<String> {
    let dir = report_crds();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("report CRD dir")
        .filter_map(Result::ok)
        .map(|e| e.path().display().to_string())
        .filter(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with(prefix)))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "two {prefix} CRDs in {}", dir.display());
    files
}

/// Installs (or keeps) the CRDs named `prefix*` and waits until they are established.
fn install_crds(prefix: &str) {
    for file in crd_files(prefix) {
        kubectl(&["apply", "--server-side", "-f", &file]);
    }
    let names: &[&str] = match prefix {
        "openreports" => &["reports.openreports.io", "clusterreports.openreports.io"],
        _ => &[
            "policyreports.wgpolicyk8s.io",
            "clusterpolicyreports.wgpolicyk8s.io",
        ],
    };
    wait_crds_established(names);
}

/// The report `name` of `resource` in `namespace` (None: cluster-scoped), if it exists.
fn report(resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
    let mut args = vec!["get", resource, name, "-o", "json"];
    if let Some(namespace) = namespace {
        args.extend(["-n", namespace]);
    }
    let (ok, stdout, _) = kubectl_result(&args, None);
    ok.then(|| serde_json::from_str(&stdout).expect("report JSON"))
}

/// (result, rule) of each result, and the waiver of skipped ones.
fn results(report: &Value) -> Vec<(String, String, String)> {
    report["results"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["result"].as_str().unwrap_or_default().to_owned(),
                r["rule"].as_str().unwrap_or_default().to_owned(),
                r["properties"]["waiver"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn has(report: &Value, result: &str, rule: &str) -> bool {
    results(report)
        .iter()
        .any(|(r, rule_, _)| r == result && rule_ == rule)
}

fn summary_total(report: &Value) -> u64 {
    ["pass", "fail", "warn", "error", "skip"]
        .iter()
        .map(|k| report["summary"][*k].as_u64().unwrap_or_default())
        .sum()
}

/// Writes of policy reports (any API) by `user`.
fn report_writes(user: &str) -> Vec<String> {
    writes_by(user)
        .into_iter()
        .filter(|e| {
            e.object_ref.as_ref().is_some_and(|o| {
                matches!(
                    o.resource.as_str(),
                    "reports" | "clusterreports" | "policyreports" | "clusterpolicyreports"
                )
            })
        })
        .map(|e| {
            let o = e.object_ref.unwrap();
            format!("{} {} {}/{}", e.verb, o.resource, o.namespace, o.name)
        })
        .collect()
}

fn at(offset_seconds: i64) -> String {
    (Timestamp::now() + SignedDuration::from_secs(offset_seconds))
        .round(Unit::Second)
        .expect("round")
        .to_string()
}

fn admin_binding(namespace: &str) {
    let manifest = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: bob-admin, namespace: {namespace}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}\nsubjects: [{{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}}]\n"
    );
    let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(&manifest));
    assert!(ok, "{stderr}");
}

#[tokio::test]
async fn reports_follow_drift_waivers_and_selection_and_cost_nothing_idle() {
    install_crds("openreports");
    let env = TestEnv::new("rep").await;
    let team = env.name("team");
    let waived = env.name("waived");
    let spec = format!(
        "namespaceSelector: {{matchLabels: {{reports: {id}}}}}\npodSecurity: {{enforce: baseline}}\nkubernetesVersion: {{}}\nwaivers:\n- name: legacy-admin\n  checks: [rbac.admin-binding]\n  namespaces: [{waived}]\n  reason: bob administers this namespace until its migration\n  owner: team-e2e\n  granted: \"{granted}\"\n  expires: \"{expires}\"\n",
        id = env.id,
        granted = at(-60),
        expires = at(30 * 24 * 3600),
    );
    let baseline = env.apply_baseline("b", &spec);
    let uid = kubectl(&["get", "sbl", &baseline, "-o", "jsonpath={.metadata.uid}"]);
    let name = format!("baseline-{baseline}-report");
    env.create_namespace("team", &[("reports", &env.id)]).await;
    env.create_namespace("waived", &[("reports", &env.id)])
        .await;
    let operator = Operator::start(&env, &["--reports", "openreports"]).await;

    // A Report per selected namespace: everything evaluated passes once repaired.
    let first = eventually(WAIT, "a Report in the team namespace", || async {
        report("reports", Some(&team), &name).filter(|r| has(r, "pass", "network.default-deny"))
    })
    .await;
    assert_eq!(first["source"], "kube-baseline");
    assert_eq!(first["scope"]["kind"], "Namespace");
    assert_eq!(first["scope"]["name"], team.as_str());
    assert_eq!(first["metadata"]["ownerReferences"][0]["uid"], uid.trim());
    assert_eq!(
        first["metadata"]["labels"]["kube-baseline.dev/baseline"],
        baseline.as_str()
    );
    for rule in [
        "network.default-deny",
        "network.allow-dns",
        "pod-security.labels",
        "rbac.admin-binding",
    ] {
        assert!(has(&first, "pass", rule), "{rule} passes: {first:#}");
    }
    assert_eq!(first["summary"]["fail"], 0, "{first:#}");
    assert_eq!(
        summary_total(&first),
        first["results"].as_array().unwrap().len() as u64
    );
    let pass = first["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "network.default-deny")
        .unwrap();
    assert_eq!(pass["policy"], baseline.as_str());
    assert_eq!(pass["severity"], "high");
    assert_eq!(pass["category"], "Network policies");
    assert!(pass["timestamp"]["seconds"].as_i64().unwrap() > 0);

    // The version checks are cluster-scoped: a ClusterReport for the baseline.
    let cluster = eventually(WAIT, "a ClusterReport for the baseline", || async {
        report("clusterreports", None, &name)
    })
    .await;
    assert!(
        results(&cluster)
            .iter()
            .all(|(_, rule, _)| rule.starts_with("version.")),
        "{cluster:#}"
    );
    assert!(!results(&cluster).is_empty(), "{cluster:#}");

    // Drift that is not repaired (an RBAC audit violation) fails; waived, it is skipped.
    admin_binding(&team);
    admin_binding(&waived);
    let failed = eventually(WAIT, "rbac.admin-binding failing in the Report", || async {
        report("reports", Some(&team), &name).filter(|r| has(r, "fail", "rbac.admin-binding"))
    })
    .await;
    let result = failed["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "rbac.admin-binding")
        .unwrap()
        .clone();
    assert_eq!(result["resources"][0]["kind"], "RoleBinding");
    assert_eq!(result["resources"][0]["name"], "bob-admin");
    assert_eq!(result["properties"]["reason"], "Violation");
    assert!(!has(&failed, "pass", "rbac.admin-binding"));
    // cluster-admin also grants secrets, wildcards, exec...: each its own failed check.
    let fails = results(&failed)
        .iter()
        .filter(|(r, _, _)| r == "fail")
        .count() as u64;
    assert_eq!(failed["summary"]["fail"].as_u64(), Some(fails));
    let skipped = eventually(WAIT, "rbac.admin-binding skipped where waived", || async {
        report("reports", Some(&waived), &name).filter(|r| has(r, "skip", "rbac.admin-binding"))
    })
    .await;
    assert!(
        results(&skipped).contains(&(
            "skip".to_owned(),
            "rbac.admin-binding".to_owned(),
            "legacy-admin".to_owned()
        )),
        "{skipped:#}"
    );
    assert!(!has(&skipped, "fail", "rbac.admin-binding"), "{skipped:#}");
    assert_eq!(skipped["summary"]["skip"], 1);
    // Printed for the README.
    eprintln!(
        "{}",
        kubectl(&[
            "get",
            "reports",
            "-A",
            "-l",
            &format!("kube-baseline.dev/baseline={baseline}")
        ])
    );

    // Idle: no report write at all.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = report_writes(&operator.user).len();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let idle = report_writes(&operator.user);
    assert_eq!(
        idle.len(),
        before,
        "report writes in an idle minute: {:?}",
        &idle[before..]
    );

    // A restart writes none either (the content hashes match what is there).
    let operator = {
        operator.stop(Duration::from_secs(10));
        // Its own ServiceAccount, so the audit log tells its writes apart.
        Operator::start_named(&env, "again", &["--reports", "openreports"]).await
    };
    let _ = wait_baseline_status(&env.admin, &baseline, "status after the restart", |s| {
        s.summary.namespaces_pending == 0 && condition_status(s, "Ready") == "True"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        report_writes(&operator.user),
        Vec::<String>::new(),
        "report writes after a restart"
    );

    // Unselected: its report is deleted; the other stays.
    kubectl(&["label", "namespace", &waived, "reports-"]);
    eventually(
        WAIT,
        "the unselected namespace's Report deleted",
        || async {
            report("reports", Some(&waived), &name)
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(report("reports", Some(&team), &name).is_some());
    env.cleanup_with(operator).await;
}

#[tokio::test]
async fn policy_reports_start_when_their_crds_appear_and_keep_the_summary_exact() {
    // The older API's CRDs are absent when the operator starts (only this test uses them).
    for crd in [
        "policyreports.wgpolicyk8s.io",
        "clusterpolicyreports.wgpolicyk8s.io",
    ] {
        let _ = kubectl_result(
            &["delete", "crd", crd, "--ignore-not-found", "--wait=true"],
            None,
        );
    }
    let env = TestEnv::new("prep").await;
    let spec = format!(
        "mode: Audit\nnamespaceSelector: {{matchLabels: {{reports: {}}}}}\n",
        env.id
    );
    let baseline = env.apply_baseline("b", &spec);
    let name = format!("baseline-{baseline}-report");
    let ns = env.create_namespace("ns", &[("reports", &env.id)]).await;
    let operator = Operator::start(
        &env,
        &["--reports", "policyreport", "--report-max-results", "2"],
    )
    .await;
    let _ = wait_baseline_status(&env.admin, &baseline, "the namespace evaluated", |s| {
        s.summary.namespaces_pending == 0 && s.drift_total > 0
    })
    .await;
    assert!(
        report_writes(&operator.user).is_empty(),
        "no report without its CRDs"
    );

    install_crds("wgpolicyk8s");
    let written = eventually(
        DISCOVERY_WAIT,
        "a PolicyReport once the CRDs exist",
        || async { report("policyreports", Some(&ns), &name) },
    )
    .await;
    assert_eq!(written["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    // Audit mode: the two generated NetworkPolicies are missing (fail); the RBAC audit's
    // checks pass; two results listed, the summary counts all of them.
    let listed = written["results"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{written:#}");
    assert!(listed.iter().all(|r| r["result"] == "fail"), "{written:#}");
    assert_eq!(written["summary"]["fail"], 2, "{written:#}");
    assert!(
        written["summary"]["pass"].as_u64().unwrap() >= 1,
        "{written:#}"
    );
    assert!(summary_total(&written) > 2);
    // What was sent is what is stored (nothing pruned by the schema).
    assert_eq!(listed[0]["properties"]["reason"], "Missing");
    // No cluster-scoped checks: no ClusterPolicyReport.
    assert!(report("clusterpolicyreports", None, &name).is_none());

    // The CRDs removed (their reports with them) and installed again: written again.
    for crd in [
        "policyreports.wgpolicyk8s.io",
        "clusterpolicyreports.wgpolicyk8s.io",
    ] {
        kubectl(&["delete", "crd", crd, "--wait=true"]);
    }
    install_crds("wgpolicyk8s");
    eventually(
        DISCOVERY_WAIT,
        "the PolicyReport written again after the CRDs came back",
        || async { report("policyreports", Some(&ns), &name) },
    )
    .await;
    env.cleanup_with(operator).await;
}

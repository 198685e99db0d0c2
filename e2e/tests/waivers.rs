//! Waivers (`spec.waivers`) end to end, against a real API server: admission (CEL), a
//! waived finding in status and not in drift, a waiver expiring by itself (no edit, no
//! restart) with its Event, a stale waiver reported, and an enforcement waiver keeping a
//! team's edit to a generated object until it expires.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::{SignedDuration, Timestamp, Unit};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use kube_baseline::api::{DriftReason, SecurityBaselineStatus, WaiverState};
use kube_baseline_e2e::*;

const SETTLE: Duration = Duration::from_secs(30);

/// RFC 3339, to the second, `offset` from now.
fn at(offset: SignedDuration) -> String {
    (Timestamp::now() + offset)
        .round(Unit::Second)
        .expect("round")
        .to_string()
}

fn seconds(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

/// One waiver as spec YAML (indented for `spec:`).
fn waiver(name: &str, body: &str, granted: &str, expires: &str) -> String {
    format!(
        "- name: {name}\n  reason: accepted for the end-to-end test of waivers\n  owner: team-e2e\n  granted: \"{granted}\"\n  expires: \"{expires}\"\n{}",
        body.lines().map(|l| format!("  {l}\n")).collect::<String>()
    )
}

fn spec_with_waivers(head: &str, waivers: &[String]) -> String {
    let mut spec = head.to_owned();
    spec.push_str("waivers:\n");
    for w in waivers {
        spec.push_str(w);
    }
    spec
}

fn waiver_state(status: &SecurityBaselineStatus, name: &str) -> Option<(WaiverState, i64)> {
    status
        .waivers
        .iter()
        .find(|w| w.name == name)
        .map(|w| (w.state, w.matched))
}

#[tokio::test]
async fn admission_bounds_waivers_by_cel() {
    let env = TestEnv::new("wad").await;
    let apply = |spec: &str| {
        let manifest = format!(
            "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {}}}\nspec:\n{}",
            env.name("bad"),
            spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        kubectl_result(&["apply", "--dry-run=server", "-f", "-"], Some(&manifest))
    };
    let body = "checks: [network.default-deny]\n";
    for (spec, message) in [
        (
            spec_with_waivers(
                "",
                &[waiver(
                    "backwards",
                    body,
                    "2026-12-01T00:00:00Z",
                    "2026-11-01T00:00:00Z",
                )],
            ),
            "expires must be after granted",
        ),
        (
            spec_with_waivers(
                "",
                &[waiver(
                    "too-long",
                    body,
                    "2026-12-01T00:00:00Z",
                    "2027-03-01T00:00:01Z",
                )],
            ),
            "waiverMaxDuration",
        ),
        (
            spec_with_waivers(
                "waiverMaxDuration: 720h\n",
                &[waiver(
                    "longer-than-the-baseline-allows",
                    body,
                    "2026-12-01T00:00:00Z",
                    "2027-01-01T00:00:00Z",
                )],
            ),
            "waiverMaxDuration",
        ),
        // null is the default (2160h), not "no bound".
        (
            spec_with_waivers(
                "waiverMaxDuration: null\n",
                &[waiver(
                    "null-is-the-default",
                    body,
                    "2026-12-01T00:00:00Z",
                    "2027-11-01T00:00:00Z",
                )],
            ),
            "waiverMaxDuration",
        ),
        ("waiverMaxDuration: 9000h\n".to_owned(), "at most 8760h"),
        (
            spec_with_waivers(
                "",
                &[
                    waiver("twice", body, "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"),
                    waiver("twice", body, "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"),
                ],
            ),
            "Duplicate value",
        ),
        (
            "waivers:\n- name: no-reason\n  checks: [network.default-deny]\n  reason: short\n  owner: x\n  granted: \"2026-12-01T00:00:00Z\"\n  expires: \"2026-12-02T00:00:00Z\"\n".to_owned(),
            "reason",
        ),
        (
            "waivers:\n- name: bad-time\n  checks: [network.default-deny]\n  reason: a time that is not RFC 3339\n  owner: x\n  granted: \"yesterday\"\n  expires: \"2026-12-02T00:00:00Z\"\n".to_owned(),
            "granted",
        ),
    ] {
        let (ok, _, stderr) = apply(&spec);
        assert!(
            !ok && stderr.contains(message),
            "expected rejection with {message:?} for\n{spec}\ngot ok={ok} {stderr}"
        );
    }
    // Within the maximum, a year when the baseline allows it, and an unknown check ID
    // (reported by the controller, not rejected: checks come with releases).
    let (ok, _, stderr) = apply(&spec_with_waivers(
        "waiverMaxDuration: 8760h\n",
        &[waiver(
            "a-year",
            "checks: [network.default-deny, network.from-a-newer-release, \"rbac.*\"]\nobjects: [{kind: NetworkPolicy, name: frontend, namespace: shop}]\n",
            "2026-12-01T00:00:00Z",
            "2027-11-30T00:00:00Z",
        )],
    ));
    assert!(ok, "{stderr}");
}

#[tokio::test]
async fn a_waived_finding_is_not_drift_and_a_stale_waiver_is_reported() {
    let env = TestEnv::new("wst").await;
    let ns = env.name("ns");
    // A label of this test's own: `check --live` below sees every namespace.
    let spec = spec_with_waivers(
        &format!(
            "mode: Audit\nnamespaceSelector: {{matchLabels: {{waivers: {}}}}}\n",
            env.id
        ),
        &[
            waiver(
                "legacy-network",
                &format!("checks: [\"network.*\"]\nnamespaces: [{ns}]\n"),
                &at(seconds(-60)),
                &at(seconds(30 * 24 * 3600)),
            ),
            waiver(
                "nothing-there",
                &format!("checks: [rbac.wildcard]\nnamespaces: [{ns}]\n"),
                &at(seconds(-60)),
                &at(seconds(30 * 24 * 3600)),
            ),
            waiver(
                "typo",
                "checks: [network.default-denied]\n",
                &at(seconds(-60)),
                &at(seconds(30 * 24 * 3600)),
            ),
        ],
    );
    let baseline = env.apply_baseline("b", &spec);
    let operator = Operator::start(&env, &[]).await;
    let created = env.create_namespace("ns", &[("waivers", &env.id)]).await;
    assert_eq!(created, ns);
    let status = wait_baseline_status(
        &env.admin,
        &baseline,
        "the namespace's findings waived and the baseline Compliant",
        |s| {
            condition_status(s, "Ready") == "True"
                && condition_status(s, "Compliant") == "True"
                && s.summary.waived == 2
        },
    )
    .await;
    assert_eq!(status.drift_total, 0);
    assert!(status.drift.is_empty());
    assert_eq!(status.summary.namespaces_drifted, 0);
    let waived: Vec<(&str, &str, DriftReason, &str)> = status
        .waived
        .iter()
        .map(|w| {
            assert_eq!(w.namespace, ns);
            (
                w.name.as_str(),
                w.check.as_str(),
                w.reason,
                w.waiver.as_str(),
            )
        })
        .collect();
    let deny = format!("baseline-{baseline}-deny-all");
    let dns = format!("baseline-{baseline}-allow-dns");
    assert_eq!(
        waived,
        [
            (
                dns.as_str(),
                "network.allow-dns",
                DriftReason::Missing,
                "legacy-network"
            ),
            (
                deny.as_str(),
                "network.default-deny",
                DriftReason::Missing,
                "legacy-network"
            ),
        ]
    );
    assert_eq!(
        waiver_state(&status, "legacy-network"),
        Some((WaiverState::Active, 2))
    );
    assert_eq!(
        waiver_state(&status, "nothing-there"),
        Some((WaiverState::Active, 0))
    );
    assert_eq!(
        waiver_state(&status, "typo"),
        Some((WaiverState::Invalid, 0))
    );
    let typo = status.waivers.iter().find(|w| w.name == "typo").unwrap();
    assert!(typo.message.contains("network.default-denied"), "{typo:?}");
    let stale = eventually(SETTLE, "a WaiverStale Event", || async {
        events_about(&env, &baseline)
            .await
            .into_iter()
            .find(|(reason, _)| reason == "WaiverStale")
    })
    .await;
    assert!(stale.1.contains("nothing-there"), "{stale:?}");

    // The metrics say the same.
    let metrics = http_get(&format!("{}/metrics", operator.http_url().await)).1;
    let series = |name: &str, waiver: &str| {
        metric_value(
            &metrics,
            &format!("{name}{{baseline=\"{baseline}\",waiver=\"{waiver}\"}}"),
        )
    };
    assert_eq!(
        metric_value(
            &metrics,
            &format!("kube_baseline_waived_findings{{baseline=\"{baseline}\"}}")
        ),
        Some(2.0)
    );
    assert_eq!(
        series("kube_baseline_waiver_matched_findings", "legacy-network"),
        Some(2.0)
    );
    assert_eq!(
        series("kube_baseline_waiver_matched_findings", "nothing-there"),
        Some(0.0)
    );
    assert!(
        series(
            "kube_baseline_waiver_expiry_timestamp_seconds",
            "legacy-network"
        )
        .is_some_and(|at| at > Timestamp::now().as_second() as f64),
        "{metrics}"
    );
    // `check --live` judges the same with the same domain code.
    let report = check_live_report(&[]);
    let checked = baseline_in_report(&report, &baseline);
    assert_eq!(checked["drift"], serde_json::json!([]));
    let checked_waived: Vec<kube_baseline::api::WaivedEntry> = checked["waived"]
        .as_array()
        .expect("waived in check --live")
        .iter()
        .map(|w| {
            assert_eq!(
                w["waiverReason"],
                "accepted for the end-to-end test of waivers"
            );
            let mut entry = w.clone();
            for extra in ["waiverReason", "owner", "expires"] {
                entry.as_object_mut().unwrap().remove(extra);
            }
            serde_json::from_value(entry).expect("a waived entry")
        })
        .collect();
    assert_eq!(checked_waived, status.waived);
    let checked_waivers: Vec<kube_baseline::api::WaiverStatus> =
        serde_json::from_value(checked["waivers"].clone()).expect("waivers");
    assert_eq!(checked_waivers, status.waivers);
    // Printed for the README.
    eprintln!("{}", kubectl(&["get", "sbl", &baseline, "-o", "yaml"]));
    env.cleanup().await;
}

#[tokio::test]
async fn an_expired_waiver_stops_applying_by_itself() {
    let env = TestEnv::new("wex").await;
    let ns = env.name("ns");
    // Expires 20 s after it is applied: the finding returns with no edit and no restart.
    let expires = at(seconds(20));
    let spec = spec_with_waivers(
        "mode: Audit\nnamespaceSelector: {matchLabels: {env: prod}}\n",
        &[waiver(
            "short",
            &format!("checks: [\"network.*\"]\nnamespaces: [{ns}]\n"),
            &at(seconds(-60)),
            &expires,
        )],
    );
    let baseline = env.apply_baseline("b", &spec);
    let _operator = Operator::start(&env, &[]).await;
    env.create_namespace("ns", &[("env", "prod")]).await;
    let before = wait_baseline_status(&env.admin, &baseline, "findings waived", |s| {
        s.summary.waived == 2 && condition_status(s, "Compliant") == "True"
    })
    .await;
    assert_eq!(
        waiver_state(&before, "short"),
        Some((WaiverState::Active, 2))
    );
    let expiry: Timestamp = expires.parse().unwrap();
    assert!(
        Timestamp::now() < expiry,
        "the waiver was seen applying before it expired"
    );
    let generation = Api::<kube_baseline::api::SecurityBaseline>::all(env.admin.clone())
        .get(&baseline)
        .await
        .unwrap()
        .metadata
        .generation;

    let after = wait_baseline_status(&env.admin, &baseline, "the findings to return", |s| {
        s.drift_total == 2 && s.waived.is_empty()
    })
    .await;
    let returned_at = Timestamp::now();
    assert!(returned_at >= expiry, "not before the expiry");
    eprintln!(
        "findings returned {} after the expiry",
        returned_at.duration_since(expiry)
    );
    assert_eq!(condition_status(&after, "Compliant"), "False");
    assert_eq!(
        waiver_state(&after, "short"),
        Some((WaiverState::Expired, 0))
    );
    assert!(after.drift.iter().all(|d| d.namespace == ns));
    let expired = eventually(SETTLE, "a WaiverExpired Event", || async {
        events_about(&env, &baseline)
            .await
            .into_iter()
            .find(|(reason, _)| reason == "WaiverExpired")
    })
    .await;
    assert!(expired.1.contains("short"), "{expired:?}");
    // Nobody edited the baseline.
    let now_generation = Api::<kube_baseline::api::SecurityBaseline>::all(env.admin.clone())
        .get(&baseline)
        .await
        .unwrap()
        .metadata
        .generation;
    assert_eq!(generation, now_generation);
    env.cleanup().await;
}

#[tokio::test]
async fn an_enforcement_waiver_keeps_a_teams_edit_until_it_expires() {
    let env = TestEnv::new("wen").await;
    let head = "namespaceSelector: {matchLabels: {env: prod}}\n";
    let baseline = env.apply_baseline("b", head);
    let operator = Operator::start(&env, &[]).await;
    let ns = env.create_namespace("ns", &[("env", "prod")]).await;
    let deny = format!("baseline-{baseline}-deny-all");
    let policies = Api::<NetworkPolicy>::namespaced(env.admin.clone(), &ns);
    eventually(SETTLE, "the generated deny-all policy", || async {
        policies.get_opt(&deny).await.expect("get")
    })
    .await;
    wait_baseline_status(&env.admin, &baseline, "Compliant", |s| {
        condition_status(s, "Compliant") == "True"
    })
    .await;

    // The team's waiver for its deliberate change, expiring 45 s from now.
    let expires = at(seconds(45));
    let spec = spec_with_waivers(
        head,
        &[waiver(
            "frontend-ingress",
            &format!(
                "checks: [network.default-deny]\nobjects: [{{kind: NetworkPolicy, name: {deny}, namespace: {ns}}}]\n"
            ),
            &at(seconds(-60)),
            &expires,
        )],
    );
    env.apply_baseline("b", &spec);
    wait_baseline_status(
        &env.admin,
        &baseline,
        "the waiver to be seen (stale: nothing to waive yet)",
        |s| waiver_state(s, "frontend-ingress") == Some((WaiverState::Active, 0)),
    )
    .await;

    // The team opens ingress on the generated policy.
    let edit = serde_json::json!({"spec": {"ingress": [{}]}});
    let edited = policies
        .patch(&deny, &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("the team edits deny-all");
    let edited_version = edited.resource_version();
    let edited_at = Instant::now();
    let status = wait_baseline_status(&env.admin, &baseline, "the edit to be waived", |s| {
        s.waived
            .iter()
            .any(|w| w.name == deny && w.reason == DriftReason::Modified)
    })
    .await;
    assert_eq!(condition_status(&status, "Compliant"), "True");
    assert_eq!(
        waiver_state(&status, "frontend-ingress"),
        Some((WaiverState::Active, 1))
    );
    // A while later the edit is still there, untouched.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(edited_at.elapsed())).await;
    let kept = policies.get(&deny).await.expect("get");
    assert_eq!(
        kept.resource_version(),
        edited_version,
        "no write to the waived object"
    );
    assert_eq!(
        kept.spec
            .as_ref()
            .and_then(|s| s.ingress.as_ref())
            .map(Vec::len),
        Some(1)
    );
    let operator_writes_to_policy = || {
        writes_by(&operator.user)
            .into_iter()
            .filter(|e| {
                e.object_ref
                    .as_ref()
                    .is_some_and(|o| o.resource == "networkpolicies" && o.name == deny)
            })
            .count()
    };
    let writes_while_waived = operator_writes_to_policy();

    // At expiry the operator repairs it by itself.
    let expiry: Timestamp = expires.parse().unwrap();
    eventually(
        Duration::from_secs(90),
        "deny-all to be repaired after the expiry",
        || async {
            let policy = policies.get(&deny).await.expect("get");
            policy
                .spec
                .and_then(|s| s.ingress)
                .unwrap_or_default()
                .is_empty()
                .then_some(())
        },
    )
    .await;
    assert!(Timestamp::now() >= expiry, "not repaired before the expiry");
    assert_eq!(
        operator_writes_to_policy(),
        writes_while_waived + 1,
        "one repair, after the expiry; none while waived"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_waived_pod_security_label_is_kept_and_nothing_is_written_while_idle() {
    let env = TestEnv::new("wps").await;
    let ns = env.name("ns");
    let spec = spec_with_waivers(
        "namespaceSelector: {matchLabels: {env: prod}}\npodSecurity: {enforce: restricted}\n",
        &[waiver(
            "batch-baseline-level",
            &format!("checks: [pod-security.labels]\nnamespaces: [{ns}]\n"),
            &at(seconds(-60)),
            &at(seconds(30 * 24 * 3600)),
        )],
    );
    let baseline = env.apply_baseline("b", &spec);
    let operator = Operator::start(&env, &[]).await;
    // The team runs the namespace at the baseline level on purpose.
    env.create_namespace(
        "ns",
        &[
            ("env", "prod"),
            ("pod-security.kubernetes.io/enforce", "baseline"),
        ],
    )
    .await;
    let status = wait_baseline_status(&env.admin, &baseline, "the label finding waived", |s| {
        s.waived
            .iter()
            .any(|w| w.check == "pod-security.labels" && w.namespace == ns)
            && condition_status(s, "Compliant") == "True"
    })
    .await;
    assert_eq!(
        waiver_state(&status, "batch-baseline-level"),
        Some((WaiverState::Active, 1))
    );
    // The generated objects are there (only the label check is waived) ...
    let deny = format!("baseline-{baseline}-deny-all");
    eventually(SETTLE, "the generated deny-all policy", || async {
        Api::<NetworkPolicy>::namespaced(env.admin.clone(), &ns)
            .get_opt(&deny)
            .await
            .expect("get")
    })
    .await;
    // ... and the team's level is kept: the operator never wrote the namespace.
    let namespace = Api::<k8s_openapi::api::core::v1::Namespace>::all(env.admin.clone())
        .get(&ns)
        .await
        .expect("namespace");
    assert_eq!(
        namespace
            .labels()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("baseline")
    );
    let namespace_writes = || {
        writes_by(&operator.user)
            .into_iter()
            .filter(|e| {
                e.object_ref
                    .as_ref()
                    .is_some_and(|o| o.resource == "namespaces" && o.name == ns)
            })
            .count()
    };
    assert_eq!(
        namespace_writes(),
        0,
        "the namespace's labels were not written"
    );

    // Idle: with waivers in status, a quiet cluster costs no write at all.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = writes_by(&operator.user).len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle: Vec<_> = writes_by(&operator.user).into_iter().skip(before).collect();
    assert!(idle.is_empty(), "writes while idle: {idle:#?}");
    env.cleanup().await;
}

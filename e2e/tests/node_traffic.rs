//! The generated NetworkPolicies on real traffic: pods on the test node (e2e/node), policies
//! enforced by kube-network-policies, connections tried with agnhost from inside the pods.
//!
//! For three baselines (default-deny both ways with allowDNS; the same with
//! allowSameNamespace; ingress only) every pair of pods in two selected namespaces, one
//! unselected namespace and the DNS pod (`k8s-app: kube-dns` in kube-system) is tried on
//! TCP 80, TCP 53 and UDP 53, and must connect or not exactly as README's "What it generates"
//! table says ([`expected`] is that table). A user's own allow policy still opens its
//! traffic; a deleted generated policy opens traffic only until the operator restores it.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};
use kube_baseline_e2e::node::{Reach, reach, run_pod, server_pod_manifest, test_node};
use kube_baseline_e2e::*;

/// Label that selects a namespace for the baseline under test.
const SELECTED: (&str, &str) = ("traffic", "selected");

/// One pod of the setup.
#[derive(Debug, Clone)]
struct Endpoint {
    label: &'static str,
    namespace: String,
    pod: String,
    ip: String,
    /// In a namespace the baseline selects.
    selected: bool,
    /// The DNS pod: answers on 53 only.
    dns: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Tcp80,
    Tcp53,
    Udp53,
}

impl Probe {
    fn port_and_protocol(self) -> (u16, &'static str) {
        match self {
            Probe::Tcp80 => (80, "tcp"),
            Probe::Tcp53 => (53, "tcp"),
            Probe::Udp53 => (53, "udp"),
        }
    }
}

/// The policy settings of one baseline.
#[derive(Debug, Clone, Copy)]
struct Settings {
    deny_ingress: bool,
    deny_egress: bool,
    allow_dns: bool,
    allow_same_namespace: bool,
}

impl Settings {
    fn spec(self) -> String {
        format!(
            "mode: Enforce\nnamespaceSelector: {{matchLabels: {{{}: {}}}}}\nnetworkPolicy:\n  \
             defaultDeny: {{ingress: {}, egress: {}}}\n  allowDNS: {}\n  allowSameNamespace: {}\n",
            SELECTED.0,
            SELECTED.1,
            self.deny_ingress,
            self.deny_egress,
            self.allow_dns,
            self.allow_same_namespace
        )
    }

    /// The generated policies' name suffixes, as README's table lists them.
    fn policy_suffixes(self) -> Vec<&'static str> {
        let mut suffixes = Vec::new();
        if self.deny_ingress || self.deny_egress {
            suffixes.push("deny-all");
        }
        if self.deny_egress && self.allow_dns {
            suffixes.push("allow-dns");
        }
        if (self.deny_ingress || self.deny_egress) && self.allow_same_namespace {
            suffixes.push("allow-same-namespace");
        }
        suffixes
    }
}

/// README's table as a function: does `from` reach `to` with `probe`?
/// - deny-all denies every ingress to / egress from pods of a selected namespace, in the
///   denied directions;
/// - allow-dns allows egress on UDP and TCP 53 to `k8s-app=kube-dns` pods in kube-system;
/// - allow-same-namespace allows, in the denied directions, traffic to/from pods of the same
///   namespace.
fn expected(settings: Settings, from: &Endpoint, to: &Endpoint, probe: Probe) -> Reach {
    let same_namespace = from.namespace == to.namespace;
    let egress = !from.selected
        || !settings.deny_egress
        || (settings.allow_dns && to.dns && probe != Probe::Tcp80)
        || (settings.allow_same_namespace && same_namespace);
    let ingress =
        !to.selected || !settings.deny_ingress || (settings.allow_same_namespace && same_namespace);
    if egress && ingress {
        Reach::Open
    } else {
        Reach::Blocked
    }
}

/// Every (from, to, probe) of the setup: pods answer on all three, the DNS pod on 53.
fn cases(endpoints: &[Endpoint]) -> Vec<(usize, usize, Probe)> {
    let mut cases = Vec::new();
    for (i, from) in endpoints.iter().enumerate() {
        if from.dns {
            continue;
        }
        for (j, to) in endpoints.iter().enumerate() {
            if i == j {
                continue;
            }
            for probe in [Probe::Tcp80, Probe::Tcp53, Probe::Udp53] {
                if !(to.dns && probe == Probe::Tcp80) {
                    cases.push((i, j, probe));
                }
            }
        }
    }
    cases
}

/// Tries every case (8 at a time: a blocked one waits its 1 s timeout) and returns the
/// observed reach per case, in order.
async fn observe(endpoints: &[Endpoint], cases: &[(usize, usize, Probe)]) -> Vec<Reach> {
    let mut observed = Vec::with_capacity(cases.len());
    for chunk in cases.chunks(8) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|&(i, j, probe)| {
                let from = endpoints[i].clone();
                let to = endpoints[j].clone();
                tokio::task::spawn_blocking(move || {
                    let (port, protocol) = probe.port_and_protocol();
                    reach(&from.namespace, &from.pod, &to.ip, port, protocol)
                })
            })
            .collect();
        for handle in handles {
            observed.push(handle.await.expect("probe task"));
        }
    }
    observed
}

/// Waits until the generated policies of `settings` exist in every selected namespace (and
/// no other generated ones), then until traffic matches the table: the policy agent applies
/// a change a moment after the API server has it. Returns the last table on mismatch.
async fn assert_truth_table(
    env: &TestEnv,
    baseline: &str,
    settings: Settings,
    endpoints: &[Endpoint],
) {
    let mut wanted: Vec<String> = settings
        .policy_suffixes()
        .iter()
        .map(|s| format!("baseline-{baseline}-{s}"))
        .collect();
    wanted.sort();
    for endpoint in endpoints.iter().filter(|e| e.selected) {
        let namespace = endpoint.namespace.clone();
        eventually(
            Duration::from_secs(30),
            &format!("policies {wanted:?} in {namespace}"),
            || async {
                let mut names: Vec<String> =
                    Api::<NetworkPolicy>::namespaced(env.admin.clone(), &namespace)
                        .list(&Default::default())
                        .await
                        .ok()?
                        .into_iter()
                        .map(|p| p.name_any())
                        .filter(|n| n.starts_with(&format!("baseline-{baseline}-")))
                        .collect();
                names.sort();
                (names == wanted).then_some(())
            },
        )
        .await;
    }
    let cases = cases(endpoints);
    let want: Vec<Reach> = cases
        .iter()
        .map(|&(i, j, probe)| expected(settings, &endpoints[i], &endpoints[j], probe))
        .collect();
    let mut table = String::new();
    for attempt in 1..=4 {
        let observed = observe(endpoints, &cases).await;
        if observed == want {
            eprintln!(
                "{settings:?}: {} connections as the table says ({} open, {} blocked)",
                cases.len(),
                want.iter().filter(|r| **r == Reach::Open).count(),
                want.iter().filter(|r| **r == Reach::Blocked).count()
            );
            return;
        }
        table.clear();
        for (k, &(i, j, probe)) in cases.iter().enumerate() {
            let mark = if observed[k] == want[k] { " " } else { "X" };
            writeln!(
                table,
                "{mark} {:>4} -> {:<4} {probe:?}: want {:?}, got {:?}",
                endpoints[i].label, endpoints[j].label, want[k], observed[k]
            )
            .unwrap();
        }
        eprintln!("{settings:?}, attempt {attempt}: traffic differs from the table:\n{table}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    panic!("{settings:?}: traffic differs from README's table (X):\n{table}");
}

async fn setup(env: &TestEnv) -> Vec<Endpoint> {
    let node = test_node();
    let a = env.create_namespace("a", &[SELECTED, ("team", "a")]).await;
    let b = env.create_namespace("b", &[SELECTED, ("team", "b")]).await;
    let u = env.create_namespace("u", &[("team", "u")]).await;
    let mut endpoints = Vec::new();
    for (label, namespace, pod, selected) in [
        ("a1", &a, "a1", true),
        ("a2", &a, "a2", true),
        ("b", &b, "b", true),
        ("u", &u, "u", false),
    ] {
        let manifest = server_pod_manifest(namespace, pod, &[("app", pod)], &node.agnhost_image);
        let ip = run_pod(&manifest).await;
        endpoints.push(Endpoint {
            label,
            namespace: namespace.clone(),
            pod: pod.to_string(),
            ip,
            selected,
            dns: false,
        });
    }
    let dns_ip = kubectl(&[
        "get",
        "pod",
        "-n",
        "kube-system",
        "-l",
        "k8s-app=kube-dns",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ]);
    assert!(!dns_ip.is_empty(), "the DNS test pod of e2e/node has no IP");
    endpoints.push(Endpoint {
        label: "dns",
        namespace: "kube-system".to_string(),
        pod: String::new(),
        ip: dns_ip,
        selected: false,
        dns: true,
    });
    endpoints
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generated_policies_allow_and_deny_real_traffic_exactly_as_documented() {
    let env = TestEnv::new("traffic").await;
    let endpoints = setup(&env).await;
    // Before any baseline: everything is open (the policy agent itself blocks nothing).
    let open = Settings {
        deny_ingress: false,
        deny_egress: false,
        allow_dns: false,
        allow_same_namespace: false,
    };
    assert_truth_table(&env, "none", open, &endpoints).await;

    let operator = Operator::start(&env, &[]).await;
    let configurations = [
        Settings {
            deny_ingress: true,
            deny_egress: true,
            allow_dns: true,
            allow_same_namespace: false,
        },
        Settings {
            deny_ingress: true,
            deny_egress: true,
            allow_dns: true,
            allow_same_namespace: true,
        },
        Settings {
            deny_ingress: true,
            deny_egress: false,
            allow_dns: true,
            allow_same_namespace: false,
        },
    ];
    let baseline = env.name("net");
    for settings in configurations {
        env.apply_baseline("net", &settings.spec());
        assert_truth_table(&env, &baseline, settings, &endpoints).await;
    }
    env.cleanup_with(operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_users_allow_policy_opens_traffic_and_a_deleted_policy_is_restored() {
    let env = TestEnv::new("traffic-user").await;
    let endpoints = setup(&env).await;
    let (a1, b) = (&endpoints[0], &endpoints[2]);
    let operator = Operator::start(&env, &[]).await;
    let baseline = env.apply_baseline(
        "net",
        &Settings {
            deny_ingress: true,
            deny_egress: true,
            allow_dns: true,
            allow_same_namespace: false,
        }
        .spec(),
    );
    let deny_all = format!("baseline-{baseline}-deny-all");
    let policies_a = Api::<NetworkPolicy>::namespaced(env.admin.clone(), &a1.namespace);
    eventually(
        Duration::from_secs(30),
        "deny-all in namespace a",
        || async { policies_a.get_opt(&deny_all).await.ok().flatten() },
    )
    .await;
    eventually(Duration::from_secs(30), "b -> a1:80 blocked", || async {
        let (b, a1) = (b.clone(), a1.clone());
        let reach =
            tokio::task::spawn_blocking(move || reach(&b.namespace, &b.pod, &a1.ip, 80, "tcp"))
                .await
                .expect("probe");
        (reach == Reach::Blocked).then_some(())
    })
    .await;

    // Policies are additive: the user's own pair of policies (egress from b, ingress to a1
    // from b's namespace) opens exactly that path; kube-baseline leaves them alone.
    let user_policies = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: user-from-b, namespace: {a}}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: a1}}}}\n  policyTypes: [Ingress]\n  ingress:\n  \
         - from: [{{namespaceSelector: {{matchLabels: {{team: b}}}}}}]\n    ports: [{{protocol: TCP, port: 80}}]\n\
         ---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: user-to-a, namespace: {b}}}\n\
         spec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n  \
         - to: [{{namespaceSelector: {{matchLabels: {{team: a}}}}}}]\n    ports: [{{protocol: TCP, port: 80}}]\n",
        a = a1.namespace,
        b = b.namespace,
    );
    let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(&user_policies));
    assert!(ok, "apply the user's policies: {stderr}");
    let a2 = endpoints[1].clone();
    eventually(
        Duration::from_secs(30),
        "b -> a1:80 open through the user's policies",
        || async {
            let (b, a1) = (b.clone(), a1.clone());
            let reach =
                tokio::task::spawn_blocking(move || reach(&b.namespace, &b.pod, &a1.ip, 80, "tcp"))
                    .await
                    .expect("probe");
            (reach == Reach::Open).then_some(())
        },
    )
    .await;
    let (b2, a2c) = (b.clone(), a2.clone());
    let to_a2 =
        tokio::task::spawn_blocking(move || reach(&b2.namespace, &b2.pod, &a2c.ip, 80, "tcp"))
            .await
            .expect("probe");
    assert_eq!(
        to_a2,
        Reach::Blocked,
        "the user's policy opens a1 only, never a2"
    );

    // A deleted generated policy: traffic opens until the operator puts it back. Probing
    // u -> a2 (only deny-all stops it) from the delete until it is blocked again.
    let u = endpoints[3].clone();
    let deleted_at = Instant::now();
    policies_a
        .delete(&deny_all, &DeleteParams::default())
        .await
        .expect("delete the generated deny-all");
    let restored_after = eventually(Duration::from_secs(30), "deny-all restored", || async {
        policies_a
            .get_opt(&deny_all)
            .await
            .ok()
            .flatten()
            .map(|_| deleted_at.elapsed())
    })
    .await;
    let blocked_after = eventually(
        Duration::from_secs(30),
        "u -> a2:80 blocked again",
        || async {
            let (u, a2) = (u.clone(), a2.clone());
            let reach =
                tokio::task::spawn_blocking(move || reach(&u.namespace, &u.pod, &a2.ip, 80, "tcp"))
                    .await
                    .expect("probe");
            (reach == Reach::Blocked).then(|| deleted_at.elapsed())
        },
    )
    .await;
    eprintln!(
        "deleted deny-all: restored by the operator after {restored_after:?}, traffic blocked \
         again after {blocked_after:?} (includes one 1 s probe timeout)"
    );
    assert!(
        restored_after < Duration::from_secs(5),
        "the operator took {restored_after:?} to restore a deleted policy"
    );
    env.cleanup_with(operator).await;
}

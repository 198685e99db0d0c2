//! kube-baseline installed as documented (`kubectl apply --server-side -k config/default`,
//! with the image overridden to the locally built one) on the real test node (`e2e/node
//! up`), and what the install promises, each checked on the running pods:
//!
//! - both controller replicas become Ready through their readinessProbe (`/readyz`), and the
//!   liveness probe is wired to `/healthz`;
//! - the two elect one leader: the Lease names one pod, and only that pod logs that it
//!   acquired it and answers `/readyz` as the leader ("ok"; the other says "standby");
//! - deleting the leader pod hands the Lease to another replica within the lease duration
//!   (measured and printed: the standby or the leader's replacement, whichever asks first),
//!   and the successor reconciles;
//! - the PodDisruptionBudget is in force: one eviction is allowed, a second one while the
//!   first replacement is not Ready is refused with 429;
//! - the NetworkPolicies of kube-baseline-system are in force: the controller accepts TCP
//!   8080 and drops (not refuses) anything else, may reach the API server and the cluster
//!   DNS but nothing else, and any other pod of the namespace can neither send nor receive;
//! - its pods pass the `restricted` Pod Security level its namespace enforces: the
//!   admission's own evaluation of the running pods finds no violation, and the processes
//!   really run as UID 65532 with no capabilities, no_new_privs, seccomp and a read-only
//!   root filesystem;
//! - the installed controller works: a SecurityBaseline in its scope gets its generated
//!   NetworkPolicy, written by the controller's own ServiceAccount, and becomes Compliant.
//!
//! The installation is shared with the other node tests and stays; this test deletes only
//! its own namespaces, pods and baseline.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Probe};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{EvictParams, ListParams};
use kube::{Api, Client, ResourceExt};
use kube_baseline_e2e::node::{
    Conn, INSTALLED_SCOPE, TestNode, conn_verdict, connect_from_pod, install_operator, run_pod,
    server_pod_manifest, test_node,
};
use kube_baseline_e2e::*;

/// The controller's pods (the Deployment's selector in config/manager/deployment.yaml).
const CONTROLLER_PODS: &str =
    "app.kubernetes.io/name=kube-baseline,app.kubernetes.io/component=controller";
/// The Deployment, PodDisruptionBudget and leader Lease are all named this.
const NAME: &str = "kube-baseline";
/// The controller's ServiceAccount as the API server names it.
const CONTROLLER_USER: &str = "system:serviceaccount:kube-baseline-system:kube-baseline";
/// The port the controller serves /metrics, /healthz and /readyz on (the only one allowed in).
const HTTP_PORT: u16 = 8080;
/// A port nothing in the controller's pod listens on.
const CLOSED_PORT: u16 = 9090;
/// Long enough for an image import, two pod starts and a rollout on a loaded machine.
const SETTLE: Duration = Duration::from_secs(180);

#[tokio::test]
async fn installed_as_documented_it_elects_one_leader_hands_over_and_is_confined() {
    let node = test_node();
    let env = TestEnv::new("install").await;
    let mut cleanup = Cleanup::default();
    let client = env.admin.clone();
    let image = install_operator().await;

    // 1. Two replicas, Ready through their probes: the kubelet marks a pod Ready only once
    // its readinessProbe (/readyz) passes; a replica that answered 503 would never count.
    let started = Instant::now();
    let pods = settled_controllers(&client, &image).await;
    eprintln!(
        "two controller pods Ready after {:?}: {}",
        started.elapsed(),
        names(&pods).join(", ")
    );
    for pod in &pods {
        let container = &pod.spec.as_ref().expect("pod spec").containers[0];
        let path = |probe: Option<&Probe>| {
            probe
                .and_then(|p| p.http_get.as_ref())
                .and_then(|get| get.path.clone())
        };
        assert_eq!(
            path(container.readiness_probe.as_ref()).as_deref(),
            Some("/readyz"),
            "{}: Ready must come from a readinessProbe on /readyz",
            pod.name_any()
        );
        assert_eq!(
            path(container.liveness_probe.as_ref()).as_deref(),
            Some("/healthz"),
            "{}: the livenessProbe must be /healthz",
            pod.name_any()
        );
    }

    // 2. One leader: the Lease holder, the only one that logged taking it and that serves as
    // the leader; the other is a standby.
    let (leader, standby) = leader_and_standby(&client, &pods).await;
    eprintln!(
        "leader {}, standby {}",
        leader.name_any(),
        standby.name_any()
    );

    // 3. Deleting the leader hands over within the lease duration.
    let lease_before = lease(&client).await;
    let lease_spec = lease_before.spec.clone().expect("the Lease has a spec");
    let duration = Duration::from_secs(
        u64::try_from(
            lease_spec
                .lease_duration_seconds
                .expect("leaseDurationSeconds"),
        )
        .expect("a positive lease duration"),
    );
    let transitions = lease_spec.lease_transitions.unwrap_or_default();
    let deleted = Instant::now();
    let old_leader = leader.name_any();
    kubectl(&[
        "delete",
        "pod",
        "-n",
        OPERATOR_NAMESPACE,
        &old_leader,
        "--wait=false",
    ]);
    // A released Lease goes to whoever asks first: the standby (it polls every second) or
    // the leader's replacement (it asks as it starts). Either is a handover.
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let (successor, lease_after) = eventually(SETTLE, "another pod to take the Lease", || async {
        let lease = lease(&client).await;
        let holder = lease.spec.as_ref()?.holder_identity.clone()?;
        let live: Vec<Pod> = pod_api
            .list(&ListParams::default().labels(CONTROLLER_PODS))
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && p.name_any() != old_leader)
            .collect();
        Some((holder_pod(&holder, &live)?, lease))
    })
    .await;
    let handover = deleted.elapsed();
    eventually(SETTLE, "the new leader to serve (/readyz ok)", || async {
        let ip = pod_api.get(&successor).await.ok()?.status?.pod_ip?;
        (readyz(&ip) == Some((200, "ok".to_string()))).then_some(())
    })
    .await;
    let serving = deleted.elapsed();
    let which = if successor == standby.name_any() {
        "the standby"
    } else {
        "the leader's replacement"
    };
    eprintln!(
        "handover: {which} {successor} held the Lease {handover:?} after the leader pod's \
         deletion and served as leader after {serving:?} (lease duration {duration:?})"
    );
    assert!(
        handover < duration,
        "the Lease passed {handover:?} after the leader's deletion, not within the lease \
         duration {duration:?}"
    );
    assert!(
        serving < duration,
        "the successor served as leader {serving:?} after the deletion, not within {duration:?}"
    );
    assert_eq!(
        lease_after.spec.as_ref().and_then(|s| s.lease_transitions),
        Some(transitions + 1),
        "one leader transition"
    );
    let pods = settled_controllers(&client, &image).await;
    let (leader, standby) = leader_and_standby(&client, &pods).await;
    assert_eq!(
        leader.name_any(),
        successor,
        "the successor keeps the Lease"
    );

    // 4. The successor reconciles: a baseline in the controller's scope over a namespace in
    // its scope gets its NetworkPolicy from the controller's ServiceAccount, and is Compliant.
    let (scope_key, scope_value) = INSTALLED_SCOPE.split_once('=').expect("key=value");
    let target = env.name("target");
    cleanup.namespaces.push(target.clone());
    kubectl_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {target}\n  labels:\n    {scope_key}: {scope_value}\n"
    ));
    let baseline = env.name("b");
    cleanup.baseline = Some(baseline.clone());
    kubectl_apply(&format!(
        "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\nmetadata:\n  name: {baseline}\n  \
         labels:\n    {scope_key}: {scope_value}\nspec:\n  namespaceSelector:\n    matchLabels:\n      \
         kubernetes.io/metadata.name: {target}\n  networkPolicy:\n    defaultDeny: {{ingress: true, egress: true}}\n"
    ));
    let prefix = format!("baseline-{baseline}-");
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &target);
    let generated = eventually(SETTLE, "the baseline's NetworkPolicy", || async {
        let list = policies.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .map(|p| p.name_any())
            .find(|name| name.starts_with(&prefix))
    })
    .await;
    let status = wait_baseline_status(&client, &baseline, "Compliant with 1 namespace", |s| {
        s.summary.namespaces_selected == 1 && condition_status(s, "Compliant") == "True"
    })
    .await;
    assert_eq!(condition_status(&status, "Ready"), "True", "{status:#?}");
    // The controller creates with server-side apply: a patch answered 201 Created.
    assert!(
        writes_by(CONTROLLER_USER).iter().any(|event| {
            event
                .response_status
                .as_ref()
                .is_some_and(|s| s.code == 201)
                && event.object_ref.as_ref().is_some_and(|o| {
                    o.resource == "networkpolicies" && o.namespace == target && o.name == generated
                })
        }),
        "the installed controller ({CONTROLLER_USER}) created {target}/{generated}"
    );

    // 5. The PodDisruptionBudget: one replica may go, not two.
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let budget = eventually(SETTLE, "the PDB to count two healthy pods", || async {
        let budget = budgets.get(NAME).await.ok()?;
        let status = budget.status.as_ref()?;
        (status.current_healthy == 2 && status.observed_generation == budget.metadata.generation)
            .then_some(budget)
    })
    .await;
    let max_unavailable = budget
        .spec
        .as_ref()
        .and_then(|s| s.max_unavailable.clone())
        .expect("the PDB sets maxUnavailable");
    assert_eq!(
        max_unavailable,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1),
        "config/manager/pdb.yaml: maxUnavailable 1"
    );
    let budget_status = budget.status.expect("status");
    assert_eq!(
        (
            budget_status.expected_pods,
            budget_status.desired_healthy,
            budget_status.disruptions_allowed
        ),
        (2, 1, 1),
        "(expectedPods, desiredHealthy, disruptionsAllowed) of the PDB"
    );
    // kube's client retries a 429 until it passes: the refusal must be seen, not waited out.
    let mut config = kube::Config::infer().await.expect("config from KUBECONFIG");
    config.default_retry = false;
    let no_retry = Client::try_from(config).expect("client");
    let evictions: Api<Pod> = Api::namespaced(no_retry, OPERATOR_NAMESPACE);
    evictions
        .evict(&standby.name_any(), &EvictParams::default())
        .await
        .expect("the PDB allows evicting one of two Ready replicas");
    match evictions
        .evict(&leader.name_any(), &EvictParams::default())
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(
            status.code, 429,
            "a second eviction while the first replacement is not Ready: {status:?}"
        ),
        other => panic!(
            "a second eviction while the first replacement is not Ready must be refused with \
             429, got {other:?}"
        ),
    }
    let pods = settled_controllers(&client, &image).await;
    let (leader, standby) = leader_and_standby(&client, &pods).await;
    assert_eq!(
        leader.name_any(),
        successor,
        "evicting the standby leaves the leader"
    );

    // 6. The NetworkPolicies of kube-baseline-system. A client in a namespace no policy
    // selects; a probe pod in kube-baseline-system that only `default-deny` selects.
    let client_ns = env.create_namespace("client", &[]).await;
    cleanup.namespaces.push(client_ns.clone());
    let client_ip = run_pod(&server_pod_manifest(
        &client_ns,
        "client",
        &[],
        &node.agnhost_image,
    ))
    .await;
    let probe_name = env.name("probe");
    cleanup
        .pods
        .push((OPERATOR_NAMESPACE.to_string(), probe_name.clone()));
    let probe_ip = run_pod(&server_pod_manifest(
        OPERATOR_NAMESPACE,
        &probe_name,
        &[(TEST_LABEL, env.id.as_str())],
        &node.agnhost_image,
    ))
    .await;
    // Controls: where no policy applies, a closed port is refused (so a timeout below is a
    // drop), and both test pods listen on 80.
    assert_eq!(
        connect_from_pod(&client_ns, "client", &client_ip, CLOSED_PORT, "tcp"),
        Conn::Refused,
        "a closed port without a policy"
    );
    assert_eq!(
        connect_from_pod(&client_ns, "client", &client_ip, 80, "tcp"),
        Conn::Open,
        "the client listens on 80"
    );
    assert_eq!(
        connect_from_pod(OPERATOR_NAMESPACE, &probe_name, "127.0.0.1", 80, "tcp"),
        Conn::Open,
        "the probe pod listens on 80"
    );
    for pod in [&leader, &standby] {
        let ip = pod_ip(pod);
        assert_eq!(
            connect_from_pod(&client_ns, "client", &ip, HTTP_PORT, "tcp"),
            Conn::Open,
            "TCP {HTTP_PORT} to {} (metrics and probes) is allowed in",
            pod.name_any()
        );
        assert_eq!(
            connect_from_pod(&client_ns, "client", &ip, CLOSED_PORT, "tcp"),
            Conn::TimedOut,
            "TCP {CLOSED_PORT} to {} must be dropped by the policy (a refusal means nothing \
             dropped it)",
            pod.name_any()
        );
    }
    // Egress, from the controller's own network namespace (its image has no shell).
    let pid = container_pid(&node, &leader);
    let dns = dns_pod_ip(&client).await;
    let api_service = kubectl(&[
        "get",
        "service",
        "-n",
        "default",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let egress = |ip: &str, port: u16, protocol: &str, expected: Conn, what: &str| {
        assert_eq!(
            from_netns(pid, ip, port, protocol),
            expected,
            "controller {} -> {what} ({protocol} {ip}:{port})",
            leader.name_any()
        );
    };
    egress(&api_service, 443, "tcp", Conn::Open, "the API server");
    // The Service address is DNATed to the host's loopback, which the policy engine may never
    // see; the 443/6443 rule itself shows on a pod: the packet passes and the pod refuses it.
    egress(
        &client_ip,
        443,
        "tcp",
        Conn::Refused,
        "TCP 443 to any address",
    );
    egress(
        &client_ip,
        6443,
        "tcp",
        Conn::Refused,
        "TCP 6443 to any address",
    );
    egress(&dns, 53, "udp", Conn::Open, "the cluster DNS over UDP");
    egress(&dns, 53, "tcp", Conn::Open, "the cluster DNS over TCP");
    egress(&client_ip, 80, "tcp", Conn::TimedOut, "any other pod");
    egress(
        &client_ip,
        53,
        "tcp",
        Conn::TimedOut,
        "port 53 of a pod not DNS",
    );
    // default-deny: the probe pod (not the controller) may neither receive nor send.
    assert_eq!(
        connect_from_pod(&client_ns, "client", &probe_ip, 80, "tcp"),
        Conn::TimedOut,
        "ingress to a non-controller pod of {OPERATOR_NAMESPACE} must be dropped"
    );
    assert_eq!(
        connect_from_pod(OPERATOR_NAMESPACE, &probe_name, &client_ip, 80, "tcp"),
        Conn::TimedOut,
        "egress from a non-controller pod of {OPERATOR_NAMESPACE} must be dropped"
    );

    // 7. Restricted Pod Security. The namespace enforces it, the admission's evaluation of
    // the pods there finds nothing (and finds a violation where there is one), and the
    // processes run as the spec says.
    let labels = namespace_labels(OPERATOR_NAMESPACE);
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted"),
        "{OPERATOR_NAMESPACE} enforces restricted: {labels:?}"
    );
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce-version")
            .map(String::as_str),
        Some("latest"),
        "{labels:?}"
    );
    let control = env.create_namespace("psa", &[]).await;
    cleanup.namespaces.push(control.clone());
    kubectl_apply(&root_pod_manifest(&control, &node.agnhost_image));
    let found = restricted_violations(&control);
    assert!(
        found.contains("violate"),
        "the restricted evaluation must report a root pod: {found:?}"
    );
    let found = restricted_violations(OPERATOR_NAMESPACE);
    assert!(
        found.is_empty(),
        "pods in {OPERATOR_NAMESPACE} violate restricted: {found}"
    );
    for pod in [&leader, &standby] {
        let status = process_status(container_pid(&node, pod));
        let field = |key: &str| status.get(key).cloned().unwrap_or_default();
        let name = pod.name_any();
        assert!(
            field("Uid").split_whitespace().all(|id| id == "65532"),
            "{name}: Uid {}",
            field("Uid")
        );
        assert!(
            field("Gid").split_whitespace().all(|id| id == "65532"),
            "{name}: Gid {}",
            field("Gid")
        );
        for caps in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(field(caps), "0000000000000000", "{name}: {caps} (drop ALL)");
        }
        assert_eq!(
            field("NoNewPrivs"),
            "1",
            "{name}: allowPrivilegeEscalation false"
        );
        assert_eq!(
            field("Seccomp"),
            "2",
            "{name}: RuntimeDefault seccomp (filter mode)"
        );
        assert!(
            root_mount_read_only(container_pid(&node, pod)),
            "{name}: readOnlyRootFilesystem"
        );
    }

    drop(cleanup);
}

/// `protocol` to `ip:port` from the network namespace of host process `pid`, with the
/// agnhost binary e2e/cluster built (the controller's image has nothing to run).
fn from_netns(pid: u32, ip: &str, port: u16, protocol: &str) -> Conn {
    let agnhost = cluster_bin_dir().join("agnhost");
    let target = format!("{ip}:{port}");
    let output = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "--"])
        .arg(&agnhost)
        .args([
            "connect",
            "--timeout=1s",
            &format!("--protocol={protocol}"),
            &target,
        ])
        .output()
        .expect("nsenter runs");
    conn_verdict(
        output.status.success(),
        &String::from_utf8_lossy(&output.stderr),
        &format!("netns of pid {pid} -> {protocol} {target}"),
    )
}

/// BIN_DIR of the running control plane (kubectl, agnhost).
fn cluster_bin_dir() -> std::path::PathBuf {
    let env_file = cluster_dir().join("cluster.env");
    let text = std::fs::read_to_string(&env_file).expect("cluster.env of e2e/cluster");
    let dir = text
        .lines()
        .find_map(|l| l.strip_prefix("BIN_DIR="))
        .expect("BIN_DIR in cluster.env");
    std::path::PathBuf::from(dir.trim())
}

/// The host PID of a pod's first container (containerd's task list on the test node).
fn container_pid(node: &TestNode, pod: &Pod) -> u32 {
    let id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.container_id.clone())
        .expect("a running container");
    let id = id.trim_start_matches("containerd://");
    let env = std::fs::read_to_string(node.dir.join("node.env")).expect("node.env");
    let bin = env
        .lines()
        .find_map(|l| l.strip_prefix("NODE_BIN="))
        .expect("NODE_BIN in node.env");
    let output = Command::new(std::path::Path::new(bin.trim()).join("ctr"))
        .arg("--address")
        .arg(node.dir.join("containerd").join("containerd.sock"))
        .args(["--namespace", "k8s.io", "task", "ls"])
        .output()
        .expect("ctr runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(id)).then(|| fields.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no containerd task {id} ({})", pod.name_any()))
}

/// `/proc/PID/status` as key → value.
fn process_status(pid: u32) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("/proc/PID/status")
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Whether `/` is mounted read-only as the process sees it.
fn root_mount_read_only(pid: u32) -> bool {
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mounts")).expect("/proc/PID/mounts");
    let root = mounts
        .lines()
        // The last mount on / is the one the process sees.
        .rfind(|l| l.split_whitespace().nth(1) == Some("/"))
        .expect("a mount on /");
    root.split_whitespace()
        .nth(3)
        .is_some_and(|options| options.split(',').any(|o| o == "ro"))
}

/// Waits until the Deployment has rolled out `image` to two Ready pods and nothing else
/// (no pod terminating, none of another image); returns them sorted by name.
async fn settled_controllers(client: &Client, image: &str) -> Vec<Pod> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    eventually(
        SETTLE,
        "two Ready controller pods of the installed image",
        || async {
            let deployment = deployments.get(NAME).await.ok()?;
            let status = deployment.status.as_ref()?;
            let rolled_out = status.observed_generation == deployment.metadata.generation
                && status.replicas == Some(2)
                && status.updated_replicas == Some(2)
                && status.ready_replicas == Some(2);
            let mut list = pods
                .list(&ListParams::default().labels(CONTROLLER_PODS))
                .await
                .ok()?
                .items;
            list.sort_by_key(|p| p.name_any());
            let settled = list.len() == 2
                && list.iter().all(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && is_ready(p)
                        && p.spec
                            .as_ref()
                            .is_some_and(|s| s.containers[0].image.as_deref() == Some(image))
                });
            (rolled_out && settled).then_some(list)
        },
    )
    .await
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a Ready pod has an IP")
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(ResourceExt::name_any).collect()
}

async fn lease(client: &Client) -> Lease {
    Api::<Lease>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .get(NAME)
        .await
        .expect("the leader Lease exists")
}

/// The pod a Lease holder identity names: the controller's identity is `<POD_NAME>-<pid>`.
fn holder_pod(identity: &str, pods: &[Pod]) -> Option<String> {
    pods.iter().map(ResourceExt::name_any).find(|name| {
        identity
            .strip_prefix(name.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|pid| !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()))
    })
}

/// `/readyz` of a controller pod from this host: (HTTP status, body), None if no answer.
fn readyz(ip: &str) -> Option<(u16, String)> {
    let output = Command::new("curl")
        .args(["-s", "--max-time", "2", "-w", "\n%{http_code}"])
        .arg(format!("http://{ip}:{HTTP_PORT}/readyz"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    let code: u16 = code.trim().parse().ok()?;
    (code != 0).then(|| (code, body.to_string()))
}

/// Splits two settled pods into (leader, standby), checking that they agree on it: the Lease
/// names the leader, only the leader logged acquiring it, and `/readyz` says "ok" on the
/// leader and "standby" on the other.
async fn leader_and_standby(client: &Client, pods: &[Pod]) -> (Pod, Pod) {
    let holder = eventually(SETTLE, "the Lease to name one of the two pods", || async {
        let lease = Api::<Lease>::namespaced(client.clone(), OPERATOR_NAMESPACE)
            .get(NAME)
            .await
            .ok()?;
        holder_pod(lease.spec?.holder_identity.as_deref()?, pods)
    })
    .await;
    let (leaders, standbys): (Vec<&Pod>, Vec<&Pod>) =
        pods.iter().partition(|p| p.name_any() == holder);
    let (leader, standby) = (leaders[0].clone(), standbys[0].clone());
    let acquired: Vec<String> = pods
        .iter()
        .filter(|p| {
            kubectl(&[
                "logs",
                "-n",
                OPERATOR_NAMESPACE,
                &p.name_any(),
                "-c",
                "manager",
            ])
            .contains("acquired the leader lease")
        })
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(
        acquired,
        vec![holder.clone()],
        "exactly one pod, the Lease holder, logged acquiring the lease"
    );
    // The leader says "starting" until its caches are synced.
    let leader_ip = pod_ip(&leader);
    eventually(SETTLE, "the leader's /readyz to say ok", || async {
        (readyz(&leader_ip) == Some((200, "ok".to_string()))).then_some(())
    })
    .await;
    assert_eq!(
        readyz(&pod_ip(&standby)),
        Some((200, "standby".to_string())),
        "{} stands by (Ready, not leading)",
        standby.name_any()
    );
    (leader, standby)
}

/// The cluster DNS pod's IP (kube-system, k8s-app=kube-dns, as the policy selects it).
async fn dns_pod_ip(client: &Client) -> String {
    let pods = Api::<Pod>::namespaced(client.clone(), "kube-system")
        .list(&ListParams::default().labels("k8s-app=kube-dns"))
        .await
        .expect("list DNS pods");
    pods.items
        .iter()
        .find(|p| is_ready(p))
        .map(pod_ip)
        .expect("a Ready cluster DNS pod")
}

fn namespace_labels(namespace: &str) -> BTreeMap<String, String> {
    let json = kubectl(&["get", "namespace", namespace, "-o", "json"]);
    let object: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    serde_json::from_value(object["metadata"]["labels"].clone()).unwrap_or_default()
}

/// The warnings Pod Security admission gives when the namespace's enforce policy would become
/// `restricted`: it evaluates every existing pod and names those that violate it. It does so
/// only when the policy changes, so the dry run pins the version to the API server's own
/// minor (what `latest` means there): the same rules, a different policy value.
fn restricted_violations(namespace: &str) -> String {
    let version: serde_json::Value =
        serde_json::from_str(&kubectl(&["version", "-o", "json"])).expect("JSON");
    let minor: String = version["serverVersion"]["minor"]
        .as_str()
        .expect("serverVersion.minor")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let (ok, _, stderr) = kubectl_result(
        &[
            "label",
            "--dry-run=server",
            "--overwrite",
            "namespace",
            namespace,
            "pod-security.kubernetes.io/enforce=restricted",
            &format!("pod-security.kubernetes.io/enforce-version=v1.{minor}"),
        ],
        None,
    );
    assert!(ok, "dry-run label of {namespace}: {stderr}");
    stderr
        .lines()
        .filter(|l| l.contains("Warning"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A pod running as root with default capabilities (violates restricted), held back by a
/// scheduling gate so it never runs: Pod Security evaluates the object.
fn root_pod_manifest(namespace: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: root\n  namespace: {namespace}\nspec:\n  \
         schedulingGates: [{{name: kube-baseline.dev/never}}]\n  containers:\n  - name: main\n    \
         image: {image}\n    imagePullPolicy: Never\n    args: [pause]\n"
    )
}

fn kubectl_apply(manifest: &str) {
    let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(manifest));
    assert!(ok, "kubectl apply: {stderr}\n{manifest}");
}

/// Deletes what the test made, also when it fails (not the installation: others use it).
#[derive(Debug, Default)]
struct Cleanup {
    baseline: Option<String>,
    pods: Vec<(String, String)>,
    namespaces: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // The baseline first, while its namespace still exists for the controller to release.
        if let Some(baseline) = &self.baseline {
            let _ = kubectl_result(&["delete", "sbl", baseline, "--wait=false"], None);
        }
        for (namespace, pod) in &self.pods {
            let _ = kubectl_result(
                &["delete", "pod", "-n", namespace, pod, "--wait=false"],
                None,
            );
        }
        for namespace in &self.namespaces {
            let _ = kubectl_result(&["delete", "namespace", namespace, "--wait=false"], None);
        }
    }
}

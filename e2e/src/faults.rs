//! Bookkeeping for the fault scenarios (`e2e/tests/faults.rs`, run by `e2e/faults` on a
//! control plane of their own): what existed before the fault, and after it the three
//! figures each scenario reports — generated objects lost, objects that are not ours
//! changed or deleted, and the most mutating requests the operator made to one object
//! within a minute, whatever their response.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};

use crate::{AuditEvent, TestEnv, audit_events, repo_root};
use kube_baseline::api::{BASELINE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// An object: (resource plural, namespace, name).
pub type ObjectKey = (String, String, String);

/// Runs `e2e/cluster ARGS` against the cluster in KUBE_BASELINE_CLUSTER_DIR.
pub fn cluster(args: &[&str]) {
    cluster_with_env(args, &[]);
}

/// [`cluster`] with more environment variables (e.g. KB_APISERVER_EXTRA_FLAGS).
pub fn cluster_with_env(args: &[&str], env: &[(&str, &str)]) {
    let output = Command::new(repo_root().join("e2e").join("cluster"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("e2e/cluster runs");
    assert!(
        output.status.success(),
        "e2e/cluster {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Creates `count` namespaces `<id>-n<i>` with the test label (and `labels`), 32 at a time.
pub async fn create_namespaces(
    env: &TestEnv,
    count: usize,
    labels: &[(&str, &str)],
) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|i| format!("n{i}")).collect();
    let mut created = Vec::with_capacity(count);
    for chunk in names.chunks(32) {
        let batch = chunk
            .iter()
            .map(|suffix| env.create_namespace(suffix, labels));
        created.extend(futures::future::join_all(batch).await);
    }
    created
}

/// Objects that are not ours, created in the first namespaces of a scenario: a
/// NetworkPolicy, a Role and a ConfigMap per namespace. Returns their keys.
pub async fn create_user_objects(client: &Client, namespaces: &[String]) -> Vec<ObjectKey> {
    let mut keys = Vec::new();
    for ns in namespaces {
        let policy: NetworkPolicy = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "user-allow-web", "labels": {"team": "web"}},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}], "policyTypes": ["Ingress"]}
        }))
        .expect("policy");
        Api::<NetworkPolicy>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &policy)
            .await
            .expect("create user policy");
        let role: Role = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "user-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
        }))
        .expect("role");
        Api::<Role>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &role)
            .await
            .expect("create user role");
        let config: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "user-settings"}, "data": {"a": "b"}
        }))
        .expect("config map");
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &config)
            .await
            .expect("create user config map");
        for (resource, name) in [
            ("networkpolicies", "user-allow-web"),
            ("roles", "user-reader"),
            ("configmaps", "user-settings"),
        ] {
            keys.push((resource.to_string(), ns.clone(), name.to_string()));
        }
    }
    keys
}

/// uid and resourceVersion of one object, or None if it does not exist.
async fn identity(client: &Client, key: &ObjectKey) -> Option<(String, String)> {
    let (resource, ns, name) = key;
    let meta = match resource.as_str() {
        "networkpolicies" => {
            Api::<NetworkPolicy>::namespaced(client.clone(), ns)
                .get_metadata_opt(name)
                .await
                .ok()??
                .metadata
        }
        "roles" => {
            Api::<Role>::namespaced(client.clone(), ns)
                .get_metadata_opt(name)
                .await
                .ok()??
                .metadata
        }
        "configmaps" => {
            Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get_metadata_opt(name)
                .await
                .ok()??
                .metadata
        }
        "namespaces" => {
            Api::<Namespace>::all(client.clone())
                .get_metadata_opt(name)
                .await
                .ok()??
                .metadata
        }
        other => panic!("no identity lookup for {other}"),
    };
    Some((meta.uid?, meta.resource_version?))
}

/// What objects that are not ours looked like before the fault.
#[derive(Debug, Clone, Default)]
pub struct UserObjects(BTreeMap<ObjectKey, (String, String)>);

impl UserObjects {
    pub async fn snapshot(client: &Client, keys: &[ObjectKey]) -> Self {
        let mut seen = BTreeMap::new();
        for key in keys {
            let found = identity(client, key)
                .await
                .unwrap_or_else(|| panic!("user object {key:?} exists before the fault"));
            seen.insert(key.clone(), found);
        }
        Self(seen)
    }

    /// Objects as their creator saw them in the create response: (uid, resourceVersion).
    pub fn from_created(created: BTreeMap<ObjectKey, (String, String)>) -> Self {
        Self(created)
    }

    /// Objects deleted, recreated or modified since the snapshot.
    pub async fn changed(&self, client: &Client) -> Vec<String> {
        let mut changed = Vec::new();
        for (key, before) in &self.0 {
            match identity(client, key).await {
                None => changed.push(format!("{key:?} deleted")),
                Some(now) if now.0 != before.0 => changed.push(format!("{key:?} recreated")),
                Some(now) if now.1 != before.1 => changed.push(format!("{key:?} modified")),
                Some(_) => {}
            }
        }
        changed
    }

    pub fn keys(&self) -> BTreeSet<ObjectKey> {
        self.0.keys().cloned().collect()
    }
}

/// Our generated objects of one baseline, cluster-wide: NetworkPolicies and Roles carry
/// the managed-by and baseline labels.
pub async fn generated_objects(client: &Client, baseline: &str) -> BTreeSet<ObjectKey> {
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{BASELINE_LABEL}={baseline}");
    let params = ListParams::default().labels(&selector);
    let mut keys = BTreeSet::new();
    for policy in Api::<NetworkPolicy>::all(client.clone())
        .list_metadata(&params)
        .await
        .expect("list policies")
    {
        keys.insert((
            "networkpolicies".to_string(),
            policy.namespace().unwrap_or_default(),
            policy.name_any(),
        ));
    }
    for role in Api::<Role>::all(client.clone())
        .list_metadata(&params)
        .await
        .expect("list roles")
    {
        keys.insert((
            "roles".to_string(),
            role.namespace().unwrap_or_default(),
            role.name_any(),
        ));
    }
    keys
}

/// Waits until every expected generated object exists (or `within` passes); returns the
/// ones still missing.
pub async fn missing_after(
    client: &Client,
    baseline: &str,
    expected: &BTreeSet<ObjectKey>,
    within: Duration,
) -> Vec<ObjectKey> {
    let deadline = Instant::now() + within;
    loop {
        let present = generated_objects(client, baseline).await;
        let missing: Vec<ObjectKey> = expected.difference(&present).cloned().collect();
        if missing.is_empty() || Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Audit events of `users` received at or after `since`.
pub fn events_since(users: &[&str], since: Timestamp) -> Vec<AuditEvent> {
    audit_events()
        .into_iter()
        .filter(|e| users.contains(&e.user.username.as_str()))
        .filter(|e| {
            e.request_received_timestamp
                .parse::<Timestamp>()
                .is_ok_and(|t| t >= since)
        })
        .collect()
}

fn is_write(event: &AuditEvent) -> bool {
    event.is_write()
}

/// The most writes to one object within any 60 s, over `events`, whatever their response:
/// a request the API server refused (429 from API Priority and Fairness, 409, 422) was a
/// request to that object all the same, and a retry storm of failures is a hot loop too.
/// Lease renewals and Events are bookkeeping, not objects a fight could be about, and are
/// left out: (count, object).
pub fn max_writes_per_object_per_minute(events: &[AuditEvent]) -> (usize, String) {
    let mut times: BTreeMap<String, Vec<Timestamp>> = BTreeMap::new();
    for event in events.iter().filter(|e| is_write(e)) {
        let Some(object) = &event.object_ref else {
            continue;
        };
        if matches!(object.resource.as_str(), "leases" | "events") {
            continue;
        }
        let Ok(at) = event.request_received_timestamp.parse::<Timestamp>() else {
            continue;
        };
        let key = format!(
            "{}{}{} {}/{}",
            object.resource,
            if object.subresource.is_empty() {
                ""
            } else {
                "/"
            },
            object.subresource,
            object.namespace,
            object.name
        );
        times.entry(key).or_default().push(at);
    }
    let mut worst = (0, String::new());
    for (key, mut at) in times {
        at.sort();
        let mut start = 0;
        for end in 0..at.len() {
            while at[end].duration_since(at[start]).as_secs_f64() >= 60.0 {
                start += 1;
            }
            if end + 1 - start > worst.0 {
                worst = (end + 1 - start, key.clone());
            }
        }
    }
    worst
}

/// Writes among `events` to objects in `unowned` (by resource, namespace, name) that the
/// API server carried out; a refused attempt (the write guard's 403, a failed
/// precondition's 409) changed nothing and is counted by [`refused_writes_to`].
pub fn writes_to(events: &[AuditEvent], unowned: &BTreeSet<ObjectKey>) -> Vec<String> {
    attempts_to(events, unowned, true)
}

/// Attempts among `events` to write objects in `unowned` that the API server refused.
pub fn refused_writes_to(events: &[AuditEvent], unowned: &BTreeSet<ObjectKey>) -> Vec<String> {
    attempts_to(events, unowned, false)
}

fn attempts_to(
    events: &[AuditEvent],
    unowned: &BTreeSet<ObjectKey>,
    carried_out: bool,
) -> Vec<String> {
    let succeeded = |e: &AuditEvent| {
        e.response_status
            .as_ref()
            .is_some_and(|s| (200..300).contains(&s.code))
    };
    events
        .iter()
        .filter(|e| is_write(e) && succeeded(e) == carried_out)
        .filter_map(|e| e.object_ref.as_ref().map(|o| (e, o)))
        .filter(|(_, o)| {
            o.subresource.is_empty()
                && unowned.contains(&(o.resource.clone(), o.namespace.clone(), o.name.clone()))
        })
        .map(|(e, o)| format!("{} {} {}/{}", e.verb, o.resource, o.namespace, o.name))
        .collect()
}

/// Responses with `code` among `events`.
pub fn responses_with(events: &[AuditEvent], code: i32) -> usize {
    events
        .iter()
        .filter(|e| e.response_status.as_ref().is_some_and(|s| s.code == code))
        .count()
}

/// The operator's promise: at most this many mutating requests to one object in a minute.
pub const MAX_WRITES_PER_OBJECT_PER_MINUTE: usize = 3;

/// The outcome of one scenario, as printed and written to the report file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub objects_lost: usize,
    pub unowned_changed: usize,
    pub max_writes_per_object_per_minute: usize,
    pub busiest_object: String,
    pub seconds: f64,
    /// Scenario-specific figures (429s seen, takeover time, ...).
    pub details: BTreeMap<String, String>,
    /// What was lost or changed, by name (empty when all is well).
    pub problems: Vec<String>,
}

impl ScenarioReport {
    /// Prints the report, appends it to the report file (JSON lines), then asserts the
    /// promise every scenario keeps: nothing lost, nothing of others changed, and at most
    /// [`MAX_WRITES_PER_OBJECT_PER_MINUTE`] requests to one object within any minute.
    pub fn finish(self) {
        eprintln!(
            "FAULT-REPORT {}",
            serde_json::to_string(&self).expect("report serializes")
        );
        let path = report_file();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("report dir");
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("report file");
        writeln!(
            file,
            "{}",
            serde_json::to_string(&self).expect("report serializes")
        )
        .expect("write report");
        assert_eq!(
            (self.objects_lost, self.unowned_changed),
            (0, 0),
            "{}: objects lost / unowned objects changed: {:#?}",
            self.scenario,
            self.problems
        );
        assert!(
            self.max_writes_per_object_per_minute <= MAX_WRITES_PER_OBJECT_PER_MINUTE,
            "{}: {} requests to {} within a minute (every response counted)",
            self.scenario,
            self.max_writes_per_object_per_minute,
            self.busiest_object
        );
    }
}

/// What a scenario had before its fault, to judge the cluster against after it.
pub struct Before<'a> {
    pub client: &'a Client,
    pub baseline: &'a str,
    /// Objects that are not ours, as they were.
    pub user: &'a UserObjects,
    /// When the scenario began (audit-log window) and its clock.
    pub since: Timestamp,
    pub started: Instant,
}

impl std::fmt::Debug for Before<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Before")
            .field("baseline", &self.baseline)
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

impl Before<'_> {
    /// The report: objects in `want` still missing after `recovery`, user objects changed,
    /// writes by `users` to user objects, and the busiest object of those users.
    pub async fn report(
        &self,
        scenario: &str,
        want: &BTreeSet<ObjectKey>,
        recovery: Duration,
        users: &[&str],
        details: BTreeMap<String, String>,
    ) -> ScenarioReport {
        let lost = missing_after(self.client, self.baseline, want, recovery).await;
        let changed = self.user.changed(self.client).await;
        let events = events_since(users, self.since);
        let unowned_writes = writes_to(&events, &self.user.keys());
        let (max_writes, busiest) = max_writes_per_object_per_minute(&events);
        let mut problems: Vec<String> = lost.iter().map(|k| format!("lost {k:?}")).collect();
        problems.extend(changed.iter().cloned());
        problems.extend(
            unowned_writes
                .iter()
                .map(|w| format!("operator wrote: {w}")),
        );
        ScenarioReport {
            scenario: scenario.to_string(),
            objects_lost: lost.len(),
            unowned_changed: changed.len() + unowned_writes.len(),
            max_writes_per_object_per_minute: max_writes,
            busiest_object: busiest,
            seconds: self.started.elapsed().as_secs_f64(),
            details,
            problems,
        }
    }
}

/// Where reports go: KUBE_BASELINE_FAULTS_REPORT, or target/faults/report.jsonl.
pub fn report_file() -> PathBuf {
    std::env::var("KUBE_BASELINE_FAULTS_REPORT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            repo_root()
                .join("target")
                .join("faults")
                .join("report.jsonl")
        })
}

/// Reads a size from the environment (scenario 7's namespace count), with a default.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

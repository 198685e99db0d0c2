//! Prometheus metrics: controller-runtime's names where they exist, plus drift gauges that
//! alerts are built on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::status::Compliance;

type Labels = Vec<(String, String)>;

/// The values of `kube_baseline_compliant`'s status label, as in the condition.
const COMPLIANT_STATUSES: [&str; 3] = ["True", "False", "Unknown"];

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every metric the controller exposes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconcile_total: Family<Labels, Counter>,
    reconcile_errors: Family<Labels, Counter>,
    reconcile_time: Family<Labels, Histogram>,
    drift: Family<Labels, Gauge>,
    namespaces: Family<Labels, Gauge>,
    nodes: Family<Labels, Gauge>,
    compliant: Family<Labels, Gauge>,
    repairs: Family<Labels, Counter>,
    unreadable: Family<Labels, Gauge>,
    end_of_life: Family<Labels, Gauge>,
    gated: Family<Labels, Gauge>,
    previews: Family<Labels, Counter>,
    report_writes: Family<Labels, Counter>,
    event_failures: Family<Labels, Counter>,
    pod_watches: Gauge,
    waived: Family<Labels, Gauge>,
    waiver_expiry: Family<Labels, Gauge>,
    waiver_matched: Family<Labels, Gauge>,
    /// Waivers last reported per baseline, so series of removed waivers are removed.
    waiver_names: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Checks last reported per baseline, so series of fixed drift are removed.
    drift_checks: Mutex<HashMap<String, BTreeSet<String>>>,
    /// The end-of-life series last set per baseline, so a changed minor replaces it.
    end_of_life_series: Mutex<HashMap<String, Labels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconcile_total = Family::<Labels, Counter>::default();
        let reconcile_errors = Family::<Labels, Counter>::default();
        let reconcile_time = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let drift = Family::<Labels, Gauge>::default();
        let namespaces = Family::<Labels, Gauge>::default();
        let nodes = Family::<Labels, Gauge>::default();
        let compliant = Family::<Labels, Gauge>::default();
        let repairs = Family::<Labels, Counter>::default();
        let unreadable = Family::<Labels, Gauge>::default();
        let end_of_life = Family::<Labels, Gauge>::default();
        let gated = Family::<Labels, Gauge>::default();
        let previews = Family::<Labels, Counter>::default();
        let report_writes = Family::<Labels, Counter>::default();
        let event_failures = Family::<Labels, Counter>::default();
        let pod_watches = Gauge::default();
        let waived = Family::<Labels, Gauge>::default();
        let waiver_expiry = Family::<Labels, Gauge>::default();
        let waiver_matched = Family::<Labels, Gauge>::default();
        // prometheus-client appends `_total` to counters.
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            reconcile_time.clone(),
        );
        registry.register(
            "kube_baseline_drift",
            "Outstanding drift findings per baseline and check",
            drift.clone(),
        );
        registry.register(
            "kube_baseline_namespaces",
            "Namespaces selected by a baseline, by state (compliant, drifted, pending)",
            namespaces.clone(),
        );
        registry.register(
            "kube_baseline_nodes",
            "Nodes selected by a baseline, by state (compliant, drifted)",
            nodes.clone(),
        );
        registry.register(
            "kube_baseline_compliant",
            "The Compliant condition per baseline: 1 for its status (True, False or Unknown while \
             selected namespaces are not yet evaluated), 0 for the other two",
            compliant.clone(),
        );
        registry.register(
            "kube_baseline_repairs",
            "Drift repaired in Enforce mode per baseline",
            repairs.clone(),
        );
        registry.register(
            "kube_baseline_unreadable_objects",
            "Objects that exist but this version cannot read (a newer CRD or agent), by kind; \
             nothing they own is released or changed while they are unreadable",
            unreadable.clone(),
        );
        registry.register(
            "kube_baseline_kubernetes_end_of_life_timestamp_seconds",
            "The first instant the control plane's minor release is no longer supported (00:00 \
             UTC the day after its end of life), per baseline setting kubernetesVersion, with \
             the minor and where the date comes from (upstream release table or override)",
            end_of_life.clone(),
        );
        registry.register(
            "kube_baseline_pod_security_gated_namespaces",
            "Selected namespaces whose Pod Security enforce level a Gated rollout holds back, \
             per baseline",
            gated.clone(),
        );
        registry.register(
            "kube_baseline_pod_security_previews",
            "Dry runs of Pod Security label changes (what enforcing would reject), by outcome \
             (clean, violations, unknown, failed)",
            previews.clone(),
        );
        registry.register(
            "kube_baseline_report_writes",
            "Policy report writes (apply, delete): made only when a report's content changes",
            report_writes.clone(),
        );
        registry.register(
            "kube_baseline_event_failures",
            "Events that could not be published (created, or counted into their series), by \
             reason: repairs and new drift go unannounced while this rises",
            event_failures.clone(),
        );
        registry.register(
            "kube_baseline_pod_watches",
            "Pod metadata watches open (1 while some namespace's preview found violations: its \
             pods' changes trigger a new preview; 0 otherwise)",
            pod_watches.clone(),
        );
        registry.register(
            "kube_baseline_waived_findings",
            "Findings an active waiver accepts (not counted as drift), per baseline",
            waived.clone(),
        );
        registry.register(
            "kube_baseline_waiver_expiry_timestamp_seconds",
            "When each waiver stops applying (spec.waivers[].expires, Unix seconds), per \
             baseline and waiver: alert before it lapses",
            waiver_expiry.clone(),
        );
        registry.register(
            "kube_baseline_waiver_matched_findings",
            "Findings each waiver accepts now, per baseline and waiver (0: stale, or not \
             applying)",
            waiver_matched.clone(),
        );
        Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            drift,
            namespaces,
            nodes,
            compliant,
            repairs,
            unreadable,
            end_of_life,
            gated,
            previews,
            report_writes,
            event_failures,
            pod_watches,
            waived,
            waiver_expiry,
            waiver_matched,
            waiver_names: Mutex::default(),
            drift_checks: Mutex::default(),
            end_of_life_series: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Records one reconcile of `controller` ("namespace" or "securitybaseline").
    pub fn record_reconcile(&self, controller: &str, succeeded: bool, elapsed: Duration) {
        let result = if succeeded { "success" } else { "error" };
        self.reconcile_total
            .get_or_create(&labels(&[("controller", controller), ("result", result)]))
            .inc();
        if !succeeded {
            self.reconcile_errors
                .get_or_create(&labels(&[("controller", controller)]))
                .inc();
        }
        self.reconcile_time
            .get_or_create(&labels(&[("controller", controller)]))
            .observe(elapsed.as_secs_f64());
    }

    /// Sets a baseline's drift, state and compliance gauges from its status.
    pub fn set_baseline(
        &self,
        baseline: &str,
        drift_by_check: &BTreeMap<String, i64>,
        namespaces: [(&str, i64); 3],
        nodes: [(&str, i64); 2],
        compliance: Compliance,
    ) {
        for status in COMPLIANT_STATUSES {
            self.compliant
                .get_or_create(&labels(&[("baseline", baseline), ("status", status)]))
                .set(i64::from(compliance.condition_status() == status));
        }
        let mut known = self.drift_checks.lock();
        let previous = known.remove(baseline).unwrap_or_default();
        for check in previous.iter().filter(|c| !drift_by_check.contains_key(*c)) {
            self.drift
                .remove(&labels(&[("baseline", baseline), ("check", check)]));
        }
        for (check, count) in drift_by_check {
            self.drift
                .get_or_create(&labels(&[("baseline", baseline), ("check", check)]))
                .set(*count);
        }
        known.insert(
            baseline.to_string(),
            drift_by_check.keys().cloned().collect(),
        );
        for (state, count) in namespaces {
            self.namespaces
                .get_or_create(&labels(&[("baseline", baseline), ("state", state)]))
                .set(count);
        }
        for (state, count) in nodes {
            self.nodes
                .get_or_create(&labels(&[("baseline", baseline), ("state", state)]))
                .set(count);
        }
    }

    /// Sets how many objects of `kind` exist but cannot be read.
    pub fn set_unreadable(&self, kind: &str, count: i64) {
        self.unreadable
            .get_or_create(&labels(&[("kind", kind)]))
            .set(count);
    }

    /// Counts repairs.
    pub fn add_repairs(&self, baseline: &str, repairs: u64) {
        self.repairs
            .get_or_create(&labels(&[("baseline", baseline)]))
            .inc_by(repairs);
    }

    /// Removes every series of a deleted baseline.
    /// Sets (or with None removes) a baseline's end-of-life series: (minor, source, the
    /// first unsupported instant in Unix seconds).
    pub fn set_end_of_life(&self, baseline: &str, series: Option<(&str, &str, i64)>) {
        let mut known = self.end_of_life_series.lock();
        let wanted = series.map(|(minor, source, _)| {
            labels(&[("baseline", baseline), ("minor", minor), ("source", source)])
        });
        if let Some(previous) = known.remove(baseline)
            && Some(&previous) != wanted.as_ref()
        {
            self.end_of_life.remove(&previous);
        }
        if let (Some(wanted), Some((_, _, at))) = (wanted, series) {
            self.end_of_life.get_or_create(&wanted).set(at);
            known.insert(baseline.to_owned(), wanted);
        }
    }

    /// Sets a baseline's waiver series: the waived findings, and per waiver its expiry
    /// (when it can be read) and how many findings it matched. Series of waivers no longer
    /// in the spec are removed.
    pub fn set_waivers(
        &self,
        baseline: &str,
        waived: i64,
        waivers: &[crate::api::Waiver],
        matched: &BTreeMap<String, i64>,
    ) {
        self.waived
            .get_or_create(&labels(&[("baseline", baseline)]))
            .set(waived);
        let mut known = self.waiver_names.lock();
        let previous = known.remove(baseline).unwrap_or_default();
        let current: BTreeSet<String> = waivers.iter().map(|w| w.name.clone()).collect();
        for gone in previous.difference(&current) {
            let series = labels(&[("baseline", baseline), ("waiver", gone)]);
            self.waiver_expiry.remove(&series);
            self.waiver_matched.remove(&series);
        }
        for waiver in waivers {
            let series = labels(&[("baseline", baseline), ("waiver", &waiver.name)]);
            match waiver.expires.parse::<k8s_openapi::jiff::Timestamp>() {
                Ok(at) => {
                    self.waiver_expiry
                        .get_or_create(&series)
                        .set(at.as_second());
                }
                Err(_) => {
                    self.waiver_expiry.remove(&series);
                }
            }
            self.waiver_matched
                .get_or_create(&series)
                .set(matched.get(&waiver.name).copied().unwrap_or_default());
        }
        if !current.is_empty() {
            known.insert(baseline.to_owned(), current);
        }
    }

    /// Sets how many of a baseline's namespaces a Gated rollout holds back.
    pub fn set_gated(&self, baseline: &str, count: i64) {
        self.gated
            .get_or_create(&labels(&[("baseline", baseline)]))
            .set(count);
    }

    /// Counts one policy report write (apply or delete).
    pub fn count_report_write(&self, verb: &str) {
        self.report_writes
            .get_or_create(&labels(&[("verb", verb)]))
            .inc();
    }

    /// Counts one Event that could not be published, by its reason.
    pub fn count_event_failure(&self, reason: &str) {
        self.event_failures
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }

    /// Counts one Pod Security preview by outcome.
    pub fn count_preview(&self, outcome: &str) {
        self.previews
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc();
    }

    /// Sets whether the pod metadata watch is open.
    pub fn set_pod_watches(&self, open: i64) {
        self.pod_watches.set(open);
    }

    pub fn forget_baseline(&self, baseline: &str) {
        self.set_end_of_life(baseline, None);
        self.set_waivers(baseline, 0, &[], &BTreeMap::new());
        self.waived.remove(&labels(&[("baseline", baseline)]));
        self.gated.remove(&labels(&[("baseline", baseline)]));
        self.set_baseline(
            baseline,
            &BTreeMap::new(),
            [("compliant", 0), ("drifted", 0), ("pending", 0)],
            [("compliant", 0), ("drifted", 0)],
            Compliance::Pending,
        );
        for status in COMPLIANT_STATUSES {
            self.compliant
                .remove(&labels(&[("baseline", baseline), ("status", status)]));
        }
        for state in ["compliant", "drifted", "pending"] {
            self.namespaces
                .remove(&labels(&[("baseline", baseline), ("state", state)]));
        }
        for state in ["compliant", "drifted"] {
            self.nodes
                .remove(&labels(&[("baseline", baseline), ("state", state)]));
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiver_series_follow_the_spec() {
        let metrics = Metrics::default();
        let waivers: Vec<crate::api::Waiver> = serde_saphyr::from_str(
            r#"
- {name: a, checks: [network.default-deny], reason: a reason long enough, owner: x, granted: "2026-12-01T00:00:00Z", expires: "2026-12-31T00:00:00Z"}
- {name: b, checks: [network.allow-dns], reason: a reason long enough, owner: x, granted: "2026-12-01T00:00:00Z", expires: "2026-12-31T00:00:00Z"}
"#,
        )
        .expect("waivers");
        metrics.set_waivers("base", 3, &waivers, &BTreeMap::from([("a".to_string(), 3)]));
        let text = metrics.encode();
        assert!(
            text.contains(r#"kube_baseline_waived_findings{baseline="base"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"kube_baseline_waiver_matched_findings{baseline="base",waiver="a"} 3"#)
        );
        assert!(
            text.contains(r#"kube_baseline_waiver_matched_findings{baseline="base",waiver="b"} 0"#)
        );
        assert!(text.contains(
            r#"kube_baseline_waiver_expiry_timestamp_seconds{baseline="base",waiver="a"} 1798675200"#
        ), "{text}");
        // Waiver b removed from the spec: its series go.
        metrics.set_waivers(
            "base",
            3,
            &waivers[..1],
            &BTreeMap::from([("a".to_string(), 3)]),
        );
        let text = metrics.encode();
        assert!(!text.contains(r#"waiver="b""#), "{text}");
        metrics.forget_baseline("base");
        assert!(!metrics.encode().contains(r#"baseline="base""#));
    }

    #[test]
    fn exposes_controller_runtime_names_and_drops_fixed_drift() {
        let metrics = Metrics::default();
        metrics.record_reconcile("namespace", true, Duration::from_millis(3));
        metrics.record_reconcile("namespace", false, Duration::from_millis(3));
        metrics.set_baseline(
            "b",
            &BTreeMap::from([("network.default-deny".to_string(), 2)]),
            [("compliant", 1), ("drifted", 1), ("pending", 0)],
            [("compliant", 0), ("drifted", 0)],
            Compliance::Drifted,
        );
        metrics.add_repairs("b", 3);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"controller_runtime_reconcile_total{controller="namespace",result="success"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"controller_runtime_reconcile_errors_total{controller="namespace"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("controller_runtime_reconcile_time_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(r#"kube_baseline_drift{baseline="b",check="network.default-deny"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"kube_baseline_namespaces{baseline="b",state="drifted"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"kube_baseline_repairs_total{baseline="b"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"kube_baseline_compliant{baseline="b",status="False"} 1"#)
                && text.contains(r#"kube_baseline_compliant{baseline="b",status="True"} 0"#),
            "{text}"
        );
        metrics.set_baseline(
            "b",
            &BTreeMap::new(),
            [("compliant", 1), ("drifted", 0), ("pending", 1)],
            [("compliant", 0), ("drifted", 0)],
            Compliance::Pending,
        );
        let text = metrics.encode();
        assert!(
            !text.contains("kube_baseline_drift{"),
            "fixed drift leaves no series"
        );
        assert!(
            text.contains(r#"kube_baseline_compliant{baseline="b",status="Unknown"} 1"#)
                && text.contains(r#"kube_baseline_compliant{baseline="b",status="True"} 0"#),
            "pending namespaces are not compliant: {text}"
        );
        metrics.forget_baseline("b");
        assert!(
            !metrics.encode().contains("kube_baseline_compliant{"),
            "a deleted baseline leaves no series"
        );
    }
}

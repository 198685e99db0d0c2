//! What the namespace reconciler found, per baseline and namespace: the source of each
//! baseline's status.

use std::collections::{BTreeSet, HashMap};

use parking_lot::Mutex;

use crate::api::DriftEntry;
use crate::domain::status::Failure;

/// The outcome of reconciling one namespace for one baseline.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NamespaceResult {
    /// The baseline generation this was computed at.
    pub generation: i64,
    /// Whether the baseline selects the namespace.
    pub selected: bool,
    /// Drift still outstanding after repairs.
    pub findings: Vec<DriftEntry>,
    /// Findings a waiver accepts (not drift).
    pub waived: Vec<crate::api::WaivedEntry>,
    pub failure: Option<Failure>,
    /// Other enforcing baselines whose Pod Security labels are merged with this one's here.
    pub shared_pod_security_with: BTreeSet<String>,
    /// The baseline's Gated rollout holds the enforce level back here.
    pub gated: bool,
}

#[derive(Debug, Default)]
struct BaselineResults {
    namespaces: HashMap<String, NamespaceResult>,
    repairs: i64,
    repairs_seeded: bool,
}

/// Results of every baseline, shared by the reconcilers.
#[derive(Debug, Default)]
pub struct Results {
    by_baseline: Mutex<HashMap<String, BaselineResults>>,
}

impl Results {
    /// Records (or, with None, forgets) a namespace's result; returns the previous one.
    pub fn record(
        &self,
        baseline: &str,
        namespace: &str,
        result: Option<NamespaceResult>,
    ) -> Option<NamespaceResult> {
        let mut all = self.by_baseline.lock();
        match result {
            Some(result) => all
                .entry(baseline.to_string())
                .or_default()
                .namespaces
                .insert(namespace.to_string(), result),
            None => all.get_mut(baseline)?.namespaces.remove(namespace),
        }
    }

    /// Counts repairs made in Enforce mode.
    pub fn add_repairs(&self, baseline: &str, repairs: i64) {
        self.by_baseline
            .lock()
            .entry(baseline.to_string())
            .or_default()
            .repairs += repairs;
    }

    /// Continues the repair count from the status the baseline already has, so a restarted
    /// operator does not rewrite an unchanged status.
    pub fn seed_repairs(&self, baseline: &str, from_status: i64) {
        let mut all = self.by_baseline.lock();
        let entry = all.entry(baseline.to_string()).or_default();
        if !entry.repairs_seeded {
            entry.repairs += from_status;
            entry.repairs_seeded = true;
        }
    }

    /// Reads a baseline's namespace results (by namespace) and repair count in place: a
    /// status is computed from 10,000 results at that scale, several times a second during
    /// a converge, and copying them each time was most of its cost. Reconciles recording a
    /// result wait meanwhile, so `read` must not block.
    pub fn read<T>(
        &self,
        baseline: &str,
        read: impl FnOnce(&HashMap<String, NamespaceResult>, i64) -> T,
    ) -> T {
        let all = self.by_baseline.lock();
        match all.get(baseline) {
            Some(results) => read(&results.namespaces, results.repairs),
            None => read(&HashMap::new(), 0),
        }
    }

    /// Whether any namespace still has a result for the baseline.
    pub fn has_namespaces(&self, baseline: &str) -> bool {
        self.by_baseline
            .lock()
            .get(baseline)
            .is_some_and(|r| !r.namespaces.is_empty())
    }

    /// The baselines with results.
    pub fn baselines(&self) -> Vec<String> {
        self.by_baseline.lock().keys().cloned().collect()
    }

    /// Forgets a baseline entirely (it is gone).
    pub fn forget(&self, baseline: &str) {
        self.by_baseline.lock().remove(baseline);
    }

    /// Forgets a namespace for every baseline (it is being deleted); returns the baselines
    /// that had a result there.
    pub fn forget_namespace(&self, namespace: &str) -> Vec<String> {
        let mut all = self.by_baseline.lock();
        all.iter_mut()
            .filter_map(|(baseline, results)| {
                results
                    .namespaces
                    .remove(namespace)
                    .map(|_| baseline.clone())
            })
            .collect()
    }
}

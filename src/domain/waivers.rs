//! Waivers (`spec.waivers`): accepted deviations, owned and time-bounded. Given the findings,
//! the namespace's labels and the instant, which findings are waived (and by which waiver),
//! each waiver's state and how many findings it matched, and the next instant a waiver
//! starts or stops applying. The controller and `check` both call this, so they agree.
//!
//! Pure: the time is passed in. Kubernetes CEL has no `now()`, so admission only bounds
//! `expires - granted`; a waiver granted in the future (beyond [`CLOCK_SKEW`]) is
//! `NotYetValid` here, one past its expiry `Expired`.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::{DriftEntry, WaivedEntry, Waiver, WaiverState, WaiverStatus};
use crate::domain::selection::{LabelLookup, selector_matches, validate_selector};

/// How far in the future `granted` may be and still apply: clocks differ a little.
pub const CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(300);

/// Every check ID that exists (checked once: waivers are evaluated per namespace).
static KNOWN_CHECKS: LazyLock<BTreeSet<&'static str>> =
    LazyLock::new(|| crate::domain::checks::all().iter().map(|c| c.id).collect());

/// One waiver as judged at an instant.
#[derive(Debug, Clone)]
struct Judged<'a> {
    waiver: &'a Waiver,
    state: WaiverState,
    /// Why it is not Active (empty when it is).
    message: String,
    /// Instants at which its state changes by time alone, if still ahead.
    changes: Vec<Timestamp>,
}

/// The waivers of one baseline, judged at one instant.
#[derive(Debug, Clone)]
pub struct Waivers<'a> {
    judged: Vec<Judged<'a>>,
}

/// Findings split by the waivers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// Not waived: drift.
    pub drift: Vec<DriftEntry>,
    /// Waived, each with its waiver's name.
    pub waived: Vec<WaivedEntry>,
}

/// The namespace the findings are in and its labels (for `namespaceSelector`).
pub type NamespaceLabels<'a> = Option<(&'a str, &'a dyn LabelLookup)>;

impl<'a> Waivers<'a> {
    /// Judges `waivers` at `now`.
    pub fn new(waivers: &'a [Waiver], now: Timestamp) -> Self {
        Self {
            judged: waivers.iter().map(|w| judge(w, now)).collect(),
        }
    }

    /// No waivers at all (nothing is ever waived).
    pub fn none() -> Self {
        Self { judged: Vec::new() }
    }

    /// The name of the first Active waiver (in spec order) that accepts `finding`.
    pub fn waiver_for(&self, finding: &DriftEntry, namespace: NamespaceLabels<'_>) -> Option<&str> {
        self.judged
            .iter()
            .filter(|j| j.state == WaiverState::Active)
            .find(|j| matches(j.waiver, finding, namespace))
            .map(|j| j.waiver.name.as_str())
    }

    /// Splits `findings` into drift and waived. `namespace`: the labels of the namespace
    /// the namespaced findings are in (None: none of them is in a known namespace).
    pub fn split(&self, findings: Vec<DriftEntry>, namespace: NamespaceLabels<'_>) -> Split {
        let mut split = Split::default();
        for finding in findings {
            match self.waiver_for(&finding, namespace) {
                Some(waiver) => split.waived.push(WaivedEntry::new(finding, waiver)),
                None => split.drift.push(finding),
            }
        }
        split
    }

    /// Whether the waiver named `name` applies now.
    pub fn is_active(&self, name: &str) -> bool {
        self.judged
            .iter()
            .any(|j| j.waiver.name == name && j.state == WaiverState::Active)
    }

    /// The next instant a waiver starts or stops applying: the findings must be judged
    /// again then (an expired waiver stops applying by itself).
    pub fn next_change(&self) -> Option<Timestamp> {
        self.judged
            .iter()
            .flat_map(|j| j.changes.iter().copied())
            .min()
    }

    /// Each waiver's status, in spec order, from every finding it waived (over the whole
    /// baseline: namespaces, nodes and the rest).
    pub fn report(&self, waived: &[WaivedEntry]) -> Vec<WaiverStatus> {
        self.judged
            .iter()
            .map(|j| {
                let matched = waived.iter().filter(|w| w.waiver == j.waiver.name).count();
                let message = if j.state == WaiverState::Active && matched == 0 {
                    "stale: it matches no finding (remove it, or fix its checks and objects)"
                        .to_owned()
                } else {
                    j.message.clone()
                };
                WaiverStatus {
                    name: j.waiver.name.clone(),
                    state: j.state,
                    matched: i64::try_from(matched).unwrap_or(i64::MAX),
                    expires: j.waiver.expires.clone(),
                    message,
                }
            })
            .collect()
    }
}

/// Whether a status entry describes a stale waiver: applying, matching nothing.
pub fn is_stale(status: &WaiverStatus) -> bool {
    status.state == WaiverState::Active && status.matched == 0
}

fn judge(waiver: &Waiver, now: Timestamp) -> Judged<'_> {
    let invalid = |message: String| Judged {
        waiver,
        state: WaiverState::Invalid,
        message,
        changes: Vec::new(),
    };
    let unknown: Vec<&str> = waiver
        .checks
        .iter()
        .map(String::as_str)
        .filter(|c| !check_exists(c))
        .collect();
    if !unknown.is_empty() {
        return invalid(format!(
            "no such check: {} (not applied; check IDs are listed in the README and docs/checks-*.md)",
            unknown.join(", ")
        ));
    }
    if let Some(selector) = &waiver.namespace_selector
        && let Err(error) = validate_selector(selector)
    {
        return invalid(format!("namespaceSelector is invalid: {error}"));
    }
    let (granted, expires) = match (
        waiver.granted.parse::<Timestamp>(),
        waiver.expires.parse::<Timestamp>(),
    ) {
        (Ok(granted), Ok(expires)) => (granted, expires),
        (Err(error), _) => return invalid(format!("granted is not an RFC 3339 time: {error}")),
        (_, Err(error)) => return invalid(format!("expires is not an RFC 3339 time: {error}")),
    };
    if expires <= granted {
        return invalid("expires is not after granted".to_owned());
    }
    let valid_from = granted.checked_sub(CLOCK_SKEW).unwrap_or(granted);
    let changes = [valid_from, expires]
        .into_iter()
        .filter(|at| *at > now)
        .collect();
    let (state, message) = if now >= expires {
        (
            WaiverState::Expired,
            format!("expired at {expires}: its findings are drift again"),
        )
    } else if now < valid_from {
        (
            WaiverState::NotYetValid,
            format!("granted at {granted}, in the future: applies from {valid_from}"),
        )
    } else {
        (WaiverState::Active, String::new())
    };
    Judged {
        waiver,
        state,
        message,
        changes,
    }
}

/// Whether a check ID, or a `prefix.*` pattern, names at least one existing check.
fn check_exists(pattern: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(prefix) => KNOWN_CHECKS
            .iter()
            .any(|id| id.strip_prefix(prefix).is_some_and(|r| r.starts_with('.'))),
        None => KNOWN_CHECKS.contains(pattern),
    }
}

fn check_matches(pattern: &str, check: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(prefix) => check
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == check,
    }
}

/// Whether `waiver` accepts `finding`: one of its checks, and every target field it gives.
fn matches(waiver: &Waiver, finding: &DriftEntry, namespace: NamespaceLabels<'_>) -> bool {
    if !waiver
        .checks
        .iter()
        .any(|c| check_matches(c, &finding.check))
    {
        return false;
    }
    if !waiver.namespaces.is_empty() && !waiver.namespaces.contains(&finding.namespace) {
        return false;
    }
    if let Some(selector) = &waiver.namespace_selector {
        // Only a namespaced finding in the namespace whose labels we were given.
        let labels = namespace
            .filter(|(name, _)| !finding.namespace.is_empty() && *name == finding.namespace)
            .map(|(_, labels)| labels);
        if !labels.is_some_and(|labels| selector_matches(selector, labels)) {
            return false;
        }
    }
    if !waiver.objects.is_empty()
        && !waiver.objects.iter().any(|o| {
            o.kind == finding.kind
                && o.name == finding.name
                && o.namespace.as_ref().is_none_or(|n| *n == finding.namespace)
        })
    {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::DriftReason;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn waivers(yaml: &str) -> Vec<Waiver> {
        serde_saphyr::from_str(yaml).expect("waivers parse")
    }

    fn finding(namespace: &str, kind: &str, name: &str, check: &str) -> DriftEntry {
        DriftEntry {
            namespace: namespace.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            check: check.to_owned(),
            reason: DriftReason::Modified,
            message: String::new(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const NOW: &str = "2026-12-02T06:00:00Z";

    const FIXTURE: &str = r#"
- name: payments-egress
  checks: [network.default-deny]
  objects: [{kind: NetworkPolicy, name: baseline-restricted-default-deny, namespace: payments}]
  reason: payments calls the card network from every pod; tracked in SEC-12
  owner: team-payments
  granted: "2026-12-01T00:00:00Z"
  expires: "2026-12-31T00:00:00Z"
- name: legacy-rbac
  checks: ["rbac.*"]
  namespaceSelector: {matchLabels: {tier: legacy}}
  reason: legacy apps keep their wide roles until the rewrite lands
  owner: platform
  granted: "2026-11-01T00:00:00Z"
  expires: "2026-12-01T00:00:00Z"
- name: kubelet-port
  checks: [kubelet.read-only-port]
  objects: [{kind: Node, name: worker-1}]
  reason: the metrics agent on worker-1 still scrapes the read-only port
  owner: sre
  granted: "2026-12-02T05:00:00Z"
  expires: "2027-01-02T00:00:00Z"
- name: future
  checks: [network.default-deny]
  reason: granted for next week's change window
  owner: sre
  granted: "2026-12-09T00:00:00Z"
  expires: "2026-12-20T00:00:00Z"
- name: typo
  checks: [network.default-deny, network.no-such-check]
  reason: a check that does not exist is reported, not applied
  owner: sre
  granted: "2026-12-01T00:00:00Z"
  expires: "2026-12-20T00:00:00Z"
- name: nothing-there
  checks: [tls.certificate-expired]
  namespaces: [shop]
  reason: nothing of this kind is flagged, so the waiver is stale
  owner: sre
  granted: "2026-12-01T00:00:00Z"
  expires: "2026-12-20T00:00:00Z"
"#;

    #[test]
    fn states_follow_the_clock_and_unknown_checks_invalidate() {
        let list = waivers(FIXTURE);
        let judged = Waivers::new(&list, at(NOW));
        let report = judged.report(&[]);
        let states: Vec<(&str, WaiverState)> =
            report.iter().map(|s| (s.name.as_str(), s.state)).collect();
        assert_eq!(
            states,
            [
                ("payments-egress", WaiverState::Active),
                ("legacy-rbac", WaiverState::Expired),
                ("kubelet-port", WaiverState::Active),
                ("future", WaiverState::NotYetValid),
                ("typo", WaiverState::Invalid),
                ("nothing-there", WaiverState::Active),
            ]
        );
        assert!(
            report[4].message.contains("network.no-such-check"),
            "{report:?}"
        );
        assert!(report[4].message.contains("no such check"));
        assert!(!report[4].message.contains("network.default-deny,"));
    }

    #[test]
    fn a_waiver_granted_within_the_clock_skew_applies() {
        let list = waivers(
            r#"
- name: soon
  checks: [network.default-deny]
  reason: granted a minute from now by a fast clock
  owner: sre
  granted: "2026-12-02T06:04:00Z"
  expires: "2026-12-20T00:00:00Z"
"#,
        );
        let judged = Waivers::new(&list, at(NOW));
        assert_eq!(judged.report(&[])[0].state, WaiverState::Active);
        let later = Waivers::new(&list, at("2026-12-02T05:58:00Z"));
        assert_eq!(later.report(&[])[0].state, WaiverState::NotYetValid);
        assert_eq!(later.next_change(), Some(at("2026-12-02T05:59:00Z")));
    }

    #[test]
    fn findings_split_by_check_object_namespace_and_selector() {
        let list = waivers(FIXTURE);
        let judged = Waivers::new(&list, at(NOW));
        let payments = labels(&[("tier", "legacy")]);
        let findings = vec![
            finding(
                "payments",
                "NetworkPolicy",
                "baseline-restricted-default-deny",
                "network.default-deny",
            ),
            // Same object name in another namespace: not this waiver's.
            finding(
                "shop",
                "NetworkPolicy",
                "baseline-restricted-default-deny",
                "network.default-deny",
            ),
            // Same object, another check.
            finding(
                "payments",
                "NetworkPolicy",
                "baseline-restricted-default-deny",
                "network.allow-dns",
            ),
            // legacy-rbac matches by selector but has expired.
            finding(
                "payments",
                "RoleBinding",
                "admins",
                "rbac.cluster-admin-binding",
            ),
        ];
        let split = judged.split(findings, Some(("payments", &payments)));
        assert_eq!(
            split
                .waived
                .iter()
                .map(|w| (w.namespace.as_str(), w.check.as_str(), w.waiver.as_str()))
                .collect::<Vec<_>>(),
            [("payments", "network.default-deny", "payments-egress")]
        );
        assert_eq!(split.drift.len(), 3);

        let nodes = judged.split(
            vec![
                finding("", "Node", "worker-1", "kubelet.read-only-port"),
                finding("", "Node", "worker-2", "kubelet.read-only-port"),
            ],
            None,
        );
        assert_eq!(nodes.waived.len(), 1);
        assert_eq!(nodes.waived[0].waiver, "kubelet-port");
        assert_eq!(nodes.drift[0].name, "worker-2");
    }

    #[test]
    fn prefixes_and_selectors_match_only_what_they_say() {
        let list = waivers(
            r#"
- name: legacy-rbac
  checks: ["rbac.*"]
  namespaceSelector: {matchLabels: {tier: legacy}}
  reason: legacy apps keep their wide roles until the rewrite lands
  owner: platform
  granted: "2026-12-01T00:00:00Z"
  expires: "2026-12-20T00:00:00Z"
"#,
        );
        let judged = Waivers::new(&list, at(NOW));
        let legacy = labels(&[("tier", "legacy")]);
        let other = labels(&[("tier", "web")]);
        let rbac = finding("a", "RoleBinding", "admins", "rbac.cluster-admin-binding");
        assert_eq!(
            judged.waiver_for(&rbac, Some(("a", &legacy))),
            Some("legacy-rbac")
        );
        assert_eq!(judged.waiver_for(&rbac, Some(("a", &other))), None);
        // Labels of another namespace do not count.
        assert_eq!(judged.waiver_for(&rbac, Some(("b", &legacy))), None);
        assert_eq!(judged.waiver_for(&rbac, None), None);
        // "rbac.*" is a prefix of whole segments: not "rbacx.y", not "network.x".
        let network = finding("a", "NetworkPolicy", "x", "network.default-deny");
        assert_eq!(judged.waiver_for(&network, Some(("a", &legacy))), None);
        assert!(check_matches("rbac.*", "rbac.wildcard-verbs"));
        assert!(!check_matches("rbac.*", "rbacx.wildcard"));
        assert!(!check_matches("rbac.*", "rbac"));
    }

    #[test]
    fn no_target_fields_waive_every_object_the_checks_flag() {
        let list = waivers(
            r#"
- name: all-dns
  checks: [network.allow-dns]
  reason: DNS egress is handled by the service mesh everywhere
  owner: platform
  granted: "2026-12-01T00:00:00Z"
  expires: "2026-12-20T00:00:00Z"
"#,
        );
        let judged = Waivers::new(&list, at(NOW));
        let dns = finding(
            "x",
            "NetworkPolicy",
            "baseline-b-allow-dns",
            "network.allow-dns",
        );
        assert_eq!(judged.waiver_for(&dns, None), Some("all-dns"));
    }

    #[test]
    fn matches_are_counted_and_a_waiver_matching_nothing_is_stale() {
        let list = waivers(FIXTURE);
        let judged = Waivers::new(&list, at(NOW));
        let waived = vec![
            WaivedEntry::new(
                finding("payments", "NetworkPolicy", "p", "network.default-deny"),
                "payments-egress",
            ),
            WaivedEntry::new(
                finding("", "Node", "worker-1", "kubelet.read-only-port"),
                "kubelet-port",
            ),
        ];
        let report = judged.report(&waived);
        let by_name = |name: &str| {
            report
                .iter()
                .find(|s| s.name == name)
                .expect("reported")
                .clone()
        };
        assert_eq!(by_name("payments-egress").matched, 1);
        assert!(!is_stale(&by_name("payments-egress")));
        let stale = by_name("nothing-there");
        assert!(is_stale(&stale));
        assert!(stale.message.contains("stale"), "{stale:?}");
        // Not applying is not stale: it is reported by its state.
        assert!(!is_stale(&by_name("legacy-rbac")));
        assert!(!is_stale(&by_name("typo")));
        assert_eq!(by_name("payments-egress").expires, "2026-12-31T00:00:00Z");
    }

    #[test]
    fn the_next_change_is_the_nearest_start_or_expiry_ahead() {
        let list = waivers(FIXTURE);
        let judged = Waivers::new(&list, at(NOW));
        // "future" becomes valid 5 minutes before its granted time; the others expire
        // later; "typo" (invalid) and "legacy-rbac" (past) do not count.
        assert_eq!(judged.next_change(), Some(at("2026-12-08T23:55:00Z")));
        let after_expiry = Waivers::new(&list, at("2027-02-01T00:00:00Z"));
        assert_eq!(after_expiry.next_change(), None);
        let states: Vec<WaiverState> = after_expiry.report(&[]).iter().map(|s| s.state).collect();
        assert!(
            states
                .iter()
                .all(|s| matches!(s, WaiverState::Expired | WaiverState::Invalid)),
            "{states:?}"
        );
    }

    #[test]
    fn an_expired_waiver_stops_applying_at_its_expiry_exactly() {
        let list = waivers(FIXTURE);
        let object = finding(
            "payments",
            "NetworkPolicy",
            "baseline-restricted-default-deny",
            "network.default-deny",
        );
        let before = Waivers::new(&list, at("2026-12-30T23:59:59Z"));
        assert_eq!(before.waiver_for(&object, None), Some("payments-egress"));
        let at_expiry = Waivers::new(&list, at("2026-12-31T00:00:00Z"));
        assert_eq!(at_expiry.waiver_for(&object, None), None);
    }

    #[test]
    fn every_check_prefix_of_the_registry_is_known() {
        for check in crate::domain::checks::all() {
            assert!(check_exists(check.id), "{}", check.id);
            let (area, _) = check.id.split_once('.').expect("area.what");
            assert!(check_exists(&format!("{area}.*")), "{area}.*");
        }
        assert!(!check_exists("nosuch.*"));
        assert!(!check_exists("network"));
    }
}

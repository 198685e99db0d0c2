//! Pod Security admission labels: the merge over several baselines and the drift check;
//! `preview` reads what enforcing a stricter level would break.
//!
//! Labels are applied per namespace by one field manager, so what we apply must be the
//! union over every enforcing baseline selecting the namespace: per mode, the strictest
//! level wins, and the newest version.

pub mod preview;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

#[cfg(test)]
use crate::api::FIELD_MANAGER;
use crate::api::{DriftEntry, DriftReason, PodSecurityLevel};
use crate::domain::generated::{POD_SECURITY_MODES, POD_SECURITY_PREFIX, check_ids};

/// What one baseline wants per mode: level and optional version.
pub type WantedPodSecurity<'a> = BTreeMap<&'static str, (PodSecurityLevel, Option<&'a str>)>;

/// Orders Pod Security versions: `latest` is newest, then v1.N by N. Unknown strings sort first.
pub(super) fn version_rank(version: &str) -> (u8, u64) {
    if version == "latest" {
        return (2, 0);
    }
    match version
        .strip_prefix("v1.")
        .and_then(|minor| minor.parse().ok())
    {
        Some(minor) => (1, minor),
        None => (0, 0),
    }
}

/// The label set our field manager should own on a namespace, from the wants of every
/// enforcing baseline that selects it.
pub fn merged_labels<'a>(
    wants: impl IntoIterator<Item = &'a WantedPodSecurity<'a>>,
) -> BTreeMap<String, String> {
    let mut strictest: BTreeMap<&str, (PodSecurityLevel, Option<&str>)> = BTreeMap::new();
    for want in wants {
        for (mode, (level, version)) in want {
            let entry = strictest.entry(mode).or_insert((*level, *version));
            entry.0 = entry.0.max(*level);
            entry.1 = match (entry.1, *version) {
                (Some(a), Some(b)) => Some(if version_rank(b) > version_rank(a) {
                    b
                } else {
                    a
                }),
                (a, b) => a.or(b),
            };
        }
    }
    let mut labels = BTreeMap::new();
    for (mode, (level, version)) in strictest {
        labels.insert(
            format!("{POD_SECURITY_PREFIX}{mode}"),
            level.as_str().to_string(),
        );
        if let Some(version) = version {
            labels.insert(
                format!("{POD_SECURITY_PREFIX}{mode}-version"),
                version.to_string(),
            );
        }
    }
    labels
}

/// Drift of one baseline's wants against the namespace's labels. A stricter level or a
/// newer version set by someone else (another baseline, the admin) is not drift.
pub fn pod_security_drift(
    namespace: &str,
    want: &WantedPodSecurity<'_>,
    labels: &BTreeMap<String, String>,
) -> Vec<DriftEntry> {
    let mut drift = Vec::new();
    for mode in POD_SECURITY_MODES {
        let Some((level, version)) = want.get(mode) else {
            continue;
        };
        let key = format!("{POD_SECURITY_PREFIX}{mode}");
        let observed = labels.get(&key);
        let problem = match observed.map(|v| (v, PodSecurityLevel::from_label(v))) {
            None => Some((
                DriftReason::Missing,
                format!("label {key} is missing; want {}", level.as_str()),
            )),
            Some((value, parsed)) if parsed.is_none_or(|p| p < *level) => Some((
                DriftReason::Modified,
                format!(
                    "label {key} is {value:?}; want {} or stricter",
                    level.as_str()
                ),
            )),
            Some(_) => version.and_then(|version| {
                let version_key = format!("{key}-version");
                match labels.get(&version_key) {
                    None => Some((
                        DriftReason::Missing,
                        format!("label {version_key} is missing; want {version}"),
                    )),
                    Some(observed) if version_rank(observed) < version_rank(version) => Some((
                        DriftReason::Modified,
                        format!("label {version_key} is {observed:?}; want {version} or newer"),
                    )),
                    Some(_) => None,
                }
            }),
        };
        if let Some((reason, message)) = problem {
            drift.push(DriftEntry {
                namespace: namespace.to_string(),
                kind: "Namespace".to_string(),
                name: namespace.to_string(),
                check: check_ids::POD_SECURITY.to_string(),
                reason,
                message,
            });
        }
    }
    drift
}

/// What a baseline in Audit mode holds on a namespace it selects: the Pod Security labels
/// its spec names that our field manager owns there, at their current values. Audit changes
/// nothing (not even to release a label an earlier Enforce generation set), so these stay
/// in the set we apply; an enforcing baseline may still raise them.
pub fn held_pod_security<'a>(
    want: &WantedPodSecurity<'_>,
    labels: &'a BTreeMap<String, String>,
    owned_by_us: &BTreeSet<String>,
) -> WantedPodSecurity<'a> {
    let ours = |key: &str| owned_by_us.contains(key).then(|| labels.get(key)).flatten();
    let mut held = WantedPodSecurity::new();
    for mode in want.keys() {
        let key = format!("{POD_SECURITY_PREFIX}{mode}");
        let Some(level) = ours(&key).and_then(|value| PodSecurityLevel::from_label(value)) else {
            continue;
        };
        let version = ours(&format!("{key}-version")).map(String::as_str);
        held.insert(mode, (level, version));
    }
    held
}

/// Label keys `manager` (our field manager) owns on an object, read from its managedFields.
pub fn labels_owned_by_us(
    managed_fields: &[ManagedFieldsEntry],
    manager: &str,
) -> BTreeSet<String> {
    managed_fields
        .iter()
        .filter(|entry| {
            entry.manager.as_deref() == Some(manager) && entry.operation.as_deref() == Some("Apply")
        })
        .filter_map(|entry| entry.fields_v1.as_ref())
        .filter_map(|fields| fields.0.get("f:metadata")?.get("f:labels")?.as_object())
        .flat_map(|labels| {
            labels
                .keys()
                .filter_map(|k| k.strip_prefix("f:"))
                .map(str::to_string)
        })
        .collect()
}

/// Of the labels we want, the ones we apply: those we own already, and those whose current
/// value is weaker (a level) or older (a version) than ours, missing, or not a value we can
/// rank. A value someone else set that is as strict or as new as ours is theirs: we neither
/// take it over nor lower it. That someone may be an admin, or another kube-baseline
/// instance sharding the baselines under its own field manager (`--shard`): each instance
/// then leaves the other's stricter labels alone, and together they reach the labels one
/// instance over all the baselines would, without a write fight.
pub fn labels_we_apply(
    desired: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
    owned_by_us: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    desired
        .iter()
        .filter(|(key, wanted)| {
            owned_by_us.contains(*key)
                || observed
                    .get(*key)
                    .is_none_or(|current| !ranked(key, current) || supersedes(key, wanted, current))
        })
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Whether a label value can be ordered (a Pod Security level, or a `-version`).
fn ranked(key: &str, value: &str) -> bool {
    if key.ends_with("-version") {
        version_rank(value) != (0, 0)
    } else {
        PodSecurityLevel::from_label(value).is_some()
    }
}

/// The labels to apply to a namespace, or None when it already carries exactly what we want
/// and we own no label we no longer want (so nothing is written).
pub fn namespace_labels_to_apply(
    desired: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
    owned_by_us: &BTreeSet<String>,
) -> Option<BTreeMap<String, String>> {
    let missing_or_different = desired.iter().any(|(k, v)| observed.get(k) != Some(v));
    let no_longer_wanted = owned_by_us.iter().any(|k| !desired.contains_key(k));
    // We must also own what we want: a label someone else set to the same value would
    // otherwise stay theirs, and our later removal would not take effect.
    let not_yet_owned = desired.keys().any(|k| !owned_by_us.contains(k));
    (missing_or_different || no_longer_wanted || not_yet_owned).then(|| desired.clone())
}

/// The labels to apply while a baseline that may select the namespace cannot be read (a
/// newer CRD): its wants are unknown, so every label our field manager owns stays — at its
/// current value, or at what the readable baselines want where that is stricter (a level)
/// or newer (a version). Nothing is released or loosened; a value this version cannot
/// rank is kept as it is.
pub fn hold_owned_labels(
    desired: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
    owned_by_us: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    let mut held = desired.clone();
    for key in owned_by_us {
        let Some(current) = observed.get(key) else {
            continue;
        };
        let replaced = held
            .get(key)
            .is_some_and(|wanted| supersedes(key, wanted, current));
        if !replaced {
            held.insert(key.clone(), current.clone());
        }
    }
    held
}

/// Whether `wanted` is stricter (a level) or newer (a `-version`) than `current`.
fn supersedes(key: &str, wanted: &str, current: &str) -> bool {
    if key.ends_with("-version") {
        let current = version_rank(current);
        current != (0, 0) && version_rank(wanted) > current
    } else {
        match (
            PodSecurityLevel::from_label(wanted),
            PodSecurityLevel::from_label(current),
        ) {
            (Some(wanted), Some(current)) => wanted > current,
            _ => false,
        }
    }
}

/// The Pod Security labels we apply to a namespace, across every baseline selecting it:
/// what Enforce baselines want, merged (the strictest level and newest version win), plus
/// what Audit baselines hold of ours at its value (Audit leaves a namespace as it is). With
/// `hold_everything` (a baseline this version cannot read may select the namespace and want
/// any of our labels) nothing of ours is released or loosened. Stricter labels set by
/// someone else (an admin, another shard) are neither taken nor lowered.
pub fn labels_to_apply(
    enforcing: &[&WantedPodSecurity<'_>],
    auditing: &[WantedPodSecurity<'_>],
    observed: &BTreeMap<String, String>,
    owned_by_us: &BTreeSet<String>,
    hold_everything: bool,
) -> BTreeMap<String, String> {
    let held: Vec<WantedPodSecurity<'_>> = auditing
        .iter()
        .map(|want| held_pod_security(want, observed, owned_by_us))
        .collect();
    let mut desired = merged_labels(enforcing.iter().copied().chain(&held));
    if hold_everything {
        desired = hold_owned_labels(&desired, observed, owned_by_us);
    }
    labels_we_apply(&desired, observed, owned_by_us)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SecurityBaselineSpec;
    use crate::domain::generated::wanted_pod_security;

    fn spec(yaml: &str) -> SecurityBaselineSpec {
        serde_saphyr::from_str(yaml).expect("spec parses")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn audit_holds_only_the_labels_it_names_that_we_own_at_their_values() {
        let audit = spec(
            "mode: Audit\npodSecurity: {enforce: restricted, warn: restricted, version: v1.30}",
        );
        let want = wanted_pod_security(&audit);
        let observed = labels(&[
            ("pod-security.kubernetes.io/enforce", "baseline"),
            ("pod-security.kubernetes.io/enforce-version", "v1.29"),
            ("pod-security.kubernetes.io/warn", "restricted"),
            ("pod-security.kubernetes.io/audit", "restricted"),
        ]);
        let owned: BTreeSet<String> = [
            "pod-security.kubernetes.io/enforce",
            "pod-security.kubernetes.io/enforce-version",
            "pod-security.kubernetes.io/audit",
        ]
        .map(str::to_string)
        .into();
        let held = held_pod_security(&want, &observed, &owned);
        // enforce: ours, held as it is (not raised to restricted, version not changed);
        // warn: someone else's; audit: ours but not named by this baseline.
        assert_eq!(
            merged_labels([&held]),
            labels(&[
                ("pod-security.kubernetes.io/enforce", "baseline"),
                ("pod-security.kubernetes.io/enforce-version", "v1.29"),
            ])
        );
        let garbage = labels(&[("pod-security.kubernetes.io/enforce", "strict")]);
        assert!(held_pod_security(&want, &garbage, &owned).is_empty());
    }

    #[test]
    fn strictest_level_and_newest_version_win() {
        let a = spec("podSecurity: {enforce: baseline, warn: restricted, version: v1.30}");
        let b = spec("podSecurity: {enforce: restricted, version: latest}");
        let merged = merged_labels([&wanted_pod_security(&a), &wanted_pod_security(&b)]);
        assert_eq!(
            merged,
            labels(&[
                ("pod-security.kubernetes.io/enforce", "restricted"),
                ("pod-security.kubernetes.io/enforce-version", "latest"),
                ("pod-security.kubernetes.io/warn", "restricted"),
                ("pod-security.kubernetes.io/warn-version", "v1.30"),
            ])
        );
    }

    #[test]
    fn stricter_observed_level_is_not_drift_weaker_is() {
        let want = spec("podSecurity: {enforce: baseline}");
        let want = wanted_pod_security(&want);
        assert!(
            pod_security_drift(
                "shop",
                &want,
                &labels(&[("pod-security.kubernetes.io/enforce", "restricted")])
            )
            .is_empty()
        );
        let weaker = pod_security_drift(
            "shop",
            &want,
            &labels(&[("pod-security.kubernetes.io/enforce", "privileged")]),
        );
        assert_eq!(weaker.len(), 1);
        assert_eq!(weaker[0].reason, DriftReason::Modified);
        assert_eq!(weaker[0].check, "pod-security.labels");
        let missing = pod_security_drift("shop", &want, &BTreeMap::new());
        assert_eq!(missing[0].reason, DriftReason::Missing);
        let garbage = pod_security_drift(
            "shop",
            &want,
            &labels(&[("pod-security.kubernetes.io/enforce", "strict")]),
        );
        assert_eq!(garbage[0].reason, DriftReason::Modified);
    }

    #[test]
    fn version_older_than_wanted_is_drift() {
        let want = spec("podSecurity: {enforce: restricted, version: v1.33}");
        let want = wanted_pod_security(&want);
        let older = labels(&[
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "v1.25"),
        ]);
        assert_eq!(
            pod_security_drift("a", &want, &older)[0].reason,
            DriftReason::Modified
        );
        let newer = labels(&[
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
        ]);
        assert!(pod_security_drift("a", &want, &newer).is_empty());
    }

    #[test]
    fn owned_labels_come_from_our_apply_entry_only() {
        let fields: Vec<ManagedFieldsEntry> = serde_json::from_value(serde_json::json!([
            {"manager": "kube-baseline", "operation": "Apply", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:labels": {"f:pod-security.kubernetes.io/enforce": {}}}}},
            {"manager": "kubectl-label", "operation": "Update", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:labels": {"f:env": {}}}}},
        ]))
        .expect("managed fields");
        assert_eq!(
            labels_owned_by_us(&fields, FIELD_MANAGER),
            BTreeSet::from(["pod-security.kubernetes.io/enforce".to_string()])
        );
    }

    #[test]
    fn labels_someone_else_set_as_strict_or_stricter_are_neither_taken_nor_lowered() {
        let desired = labels(&[
            ("pod-security.kubernetes.io/enforce", "baseline"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
            ("pod-security.kubernetes.io/warn", "restricted"),
            ("pod-security.kubernetes.io/audit", "restricted"),
        ]);
        // Another shard (or an admin) set enforce stricter and enforce-version older; warn
        // equal; audit is unrankable; nothing is ours.
        let observed = labels(&[
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "v1.30"),
            ("pod-security.kubernetes.io/warn", "restricted"),
            ("pod-security.kubernetes.io/audit", "strict"),
        ]);
        assert_eq!(
            labels_we_apply(&desired, &observed, &BTreeSet::new()),
            labels(&[
                ("pod-security.kubernetes.io/enforce-version", "latest"),
                ("pod-security.kubernetes.io/audit", "restricted"),
            ])
        );
        // What we own we keep applying (lowering our own label when the spec says so).
        let owned = BTreeSet::from(["pod-security.kubernetes.io/enforce".to_string()]);
        assert_eq!(
            labels_we_apply(&desired, &observed, &owned).get("pod-security.kubernetes.io/enforce"),
            Some(&"baseline".to_string())
        );
        // Missing: ours to set.
        assert_eq!(
            labels_we_apply(&desired, &BTreeMap::new(), &BTreeSet::new()),
            desired
        );
    }

    #[test]
    fn labels_are_applied_only_when_something_changes() {
        let desired = labels(&[("pod-security.kubernetes.io/enforce", "restricted")]);
        let owned = BTreeSet::from(["pod-security.kubernetes.io/enforce".to_string()]);
        let observed = labels(&[
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("env", "prod"),
        ]);
        assert_eq!(namespace_labels_to_apply(&desired, &observed, &owned), None);
        // Someone weakened it: repair.
        let weakened = labels(&[("pod-security.kubernetes.io/enforce", "baseline")]);
        assert_eq!(
            namespace_labels_to_apply(&desired, &weakened, &owned),
            Some(desired.clone())
        );
        // No longer wanted: apply the empty set to release our labels.
        assert_eq!(
            namespace_labels_to_apply(&BTreeMap::new(), &observed, &owned),
            Some(BTreeMap::new())
        );
        // Nothing wanted, nothing owned: no write.
        assert_eq!(
            namespace_labels_to_apply(&BTreeMap::new(), &observed, &BTreeSet::new()),
            None
        );
    }

    #[test]
    fn with_an_unreadable_baseline_nothing_owned_is_released_or_loosened() {
        let owned: BTreeSet<String> = [
            "pod-security.kubernetes.io/enforce",
            "pod-security.kubernetes.io/enforce-version",
            "pod-security.kubernetes.io/warn",
            "pod-security.kubernetes.io/audit",
        ]
        .map(String::from)
        .into();
        let observed = labels(&[
            ("pod-security.kubernetes.io/enforce", "baseline"),
            ("pod-security.kubernetes.io/enforce-version", "v1.30"),
            ("pod-security.kubernetes.io/warn", "restricted"),
            ("pod-security.kubernetes.io/audit", "restricted"),
            ("team", "shop"),
        ]);
        // The readable baselines want: enforce stricter and its version newer (applied),
        // warn looser (not), no audit (kept), and a label we do not own yet (applied).
        let desired = labels(&[
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
            ("pod-security.kubernetes.io/warn", "baseline"),
            ("pod-security.kubernetes.io/warn-version", "v1.31"),
        ]);
        let held = hold_owned_labels(&desired, &observed, &owned);
        assert_eq!(
            held,
            labels(&[
                ("pod-security.kubernetes.io/enforce", "restricted"),
                ("pod-security.kubernetes.io/enforce-version", "latest"),
                ("pod-security.kubernetes.io/warn", "restricted"),
                ("pod-security.kubernetes.io/warn-version", "v1.31"),
                ("pod-security.kubernetes.io/audit", "restricted"),
            ])
        );
        // No readable baseline wants anything: everything owned stays, no write at all.
        let held = hold_owned_labels(&BTreeMap::new(), &observed, &owned);
        assert_eq!(namespace_labels_to_apply(&held, &observed, &owned), None);
        // Without the hold, the same namespace would lose every label (the old behaviour).
        assert_eq!(
            namespace_labels_to_apply(&BTreeMap::new(), &observed, &owned),
            Some(BTreeMap::new())
        );
    }

    #[test]
    fn values_that_cannot_be_ranked_are_kept() {
        let owned: BTreeSet<String> = [
            "pod-security.kubernetes.io/enforce",
            "pod-security.kubernetes.io/enforce-version",
        ]
        .map(String::from)
        .into();
        let observed = labels(&[
            ("pod-security.kubernetes.io/enforce", "strictest"),
            ("pod-security.kubernetes.io/enforce-version", "v2.0"),
        ]);
        let desired = labels(&[
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
        ]);
        assert_eq!(hold_owned_labels(&desired, &observed, &owned), observed);
    }

    fn owned(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    const ENFORCE: &str = "pod-security.kubernetes.io/enforce";

    #[test]
    fn labels_to_apply_merges_enforcing_wants_to_the_strictest() {
        let baseline = spec("podSecurity: {enforce: baseline}");
        let restricted = spec("podSecurity: {enforce: restricted}");
        let applied = labels_to_apply(
            &[
                &wanted_pod_security(&baseline),
                &wanted_pod_security(&restricted),
            ],
            &[],
            &labels(&[]),
            &owned(&[]),
            false,
        );
        assert_eq!(applied.get(ENFORCE).map(String::as_str), Some("restricted"));
    }

    #[test]
    fn labels_to_apply_lets_audit_hold_ours_and_an_unreadable_baseline_hold_everything() {
        let audit = spec("mode: Audit\npodSecurity: {enforce: restricted}");
        let observed = labels(&[(ENFORCE, "restricted")]);
        let ours = owned(&[ENFORCE]);
        // No Enforce baseline wants it any more; the Audit one keeps ours as it is.
        let held = labels_to_apply(&[], &[wanted_pod_security(&audit)], &observed, &ours, false);
        assert_eq!(held, observed);
        // Nobody wants it: released.
        assert!(labels_to_apply(&[], &[], &observed, &ours, false).is_empty());
        // Unless a baseline that cannot be read might.
        assert_eq!(labels_to_apply(&[], &[], &observed, &ours, true), observed);
    }

    #[test]
    fn labels_to_apply_neither_takes_nor_lowers_a_stricter_label_of_someone_else() {
        let baseline = spec("podSecurity: {enforce: baseline}");
        let observed = labels(&[(ENFORCE, "restricted")]);
        let applied = labels_to_apply(
            &[&wanted_pod_security(&baseline)],
            &[],
            &observed,
            &owned(&[]),
            false,
        );
        assert!(!applied.contains_key(ENFORCE), "{applied:?}");
    }
}

//! What enforcing a stricter Pod Security level would break, as the API server itself says.
//!
//! Raising a namespace's `pod-security.kubernetes.io/enforce` label evicts nothing: the new
//! level bites at the next pod creation. On such a label change, PodSecurity admission
//! evaluates the namespace's existing pods and answers with `Warning` headers; made as a dry
//! run (`dryRun=All`) the change persists nothing. This module reads those warnings; the
//! evaluation is the API server's (k8s.io/pod-security-admission, `EvaluatePodsInNamespace`),
//! never re-implemented here.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{DriftEntry, DriftReason, PodSecurityLevel};
use crate::domain::generated::{POD_SECURITY_PREFIX, check_ids};
use crate::domain::pod_security::{WantedPodSecurity, version_rank};

/// The enforce labels to preview on a namespace: the wanted enforce level (and version) when
/// it is stricter or newer than the namespace's, i.e. when PodSecurity admission would
/// evaluate the existing pods on that change. None otherwise (also for `privileged`, which
/// admits every pod).
pub fn target_labels(
    wanted: &WantedPodSecurity<'_>,
    labels: &BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    let (level, version) = wanted.get("enforce")?;
    if *level == PodSecurityLevel::Privileged {
        return None;
    }
    let key = format!("{POD_SECURITY_PREFIX}enforce");
    let version_key = format!("{key}-version");
    let current = labels
        .get(&key)
        .and_then(|v| PodSecurityLevel::from_label(v))
        .unwrap_or(PodSecurityLevel::Privileged);
    let current_version = labels.get(&version_key).map_or("latest", String::as_str);
    let stricter = *level > current;
    let newer = version.is_some_and(|v| version_rank(v) > version_rank(current_version));
    if !stricter && !newer {
        return None;
    }
    let mut target = BTreeMap::from([(key, level.max(&current).as_str().to_owned())]);
    if let Some(version) = version {
        target.insert(version_key, (*version).to_owned());
    }
    Some(target)
}

/// The enforce labels (`enforce`, `enforce-version`) of a label set: what a preview is made
/// for.
pub fn enforce_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let key = format!("{POD_SECURITY_PREFIX}enforce");
    let version_key = format!("{key}-version");
    labels
        .iter()
        .filter(|(k, _)| **k == key || **k == version_key)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Whether applying `desired` raises the namespace's enforce level or version above
/// `observed` (PodSecurity admission then checks its existing pods against the new level).
/// A level it cannot rank counts as privileged; no version is `latest`.
pub fn raises_enforce(
    desired: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
) -> bool {
    let key = format!("{POD_SECURITY_PREFIX}enforce");
    let version_key = format!("{key}-version");
    let Some(level) = desired
        .get(&key)
        .and_then(|v| PodSecurityLevel::from_label(v))
    else {
        return false;
    };
    if level == PodSecurityLevel::Privileged {
        return false;
    }
    let current = observed
        .get(&key)
        .and_then(|v| PodSecurityLevel::from_label(v))
        .unwrap_or(PodSecurityLevel::Privileged);
    let version = |labels: &BTreeMap<String, String>| {
        version_rank(labels.get(&version_key).map_or("latest", String::as_str))
    };
    level > current || (level == current && version(desired) > version(observed))
}

/// `desired` with the enforce change held back (a Gated rollout whose preview is not
/// clean): the enforce labels stay as they are, kept where our field manager owns them and
/// left out where it does not (so never taken over) — unless baselines without a Gated
/// rollout want a stricter enforce level than the current one (`immediate`, their merged
/// labels): that is applied at once, as they ask.
pub fn hold_enforce(
    desired: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
    owned_by_us: &BTreeSet<String>,
    immediate: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut held: BTreeMap<String, String> = desired
        .iter()
        .filter(|(key, _)| !enforce_labels(desired).contains_key(*key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let immediate = enforce_labels(immediate);
    let source = if raises_enforce(&immediate, observed) {
        immediate
    } else {
        enforce_labels(observed)
            .into_iter()
            .filter(|(key, _)| owned_by_us.contains(key))
            .collect()
    };
    held.extend(source);
    held
}

/// The dry run that checks the namespace's pods again once its enforce level is already in
/// place (an Immediate rollout that recorded violations): the same level under the
/// equivalent version spelling (`latest` ↔ `v1.<the API server's minor>`), a change
/// PodSecurity admission evaluates. None when no equivalent exists (an older pinned
/// version) or the API server's minor is unknown.
pub fn recheck_labels(
    enforce: &BTreeMap<String, String>,
    server_minor: Option<u64>,
) -> Option<BTreeMap<String, String>> {
    let key = format!("{POD_SECURITY_PREFIX}enforce");
    let version_key = format!("{key}-version");
    let minor = server_minor?;
    let current = format!("v1.{minor}");
    let flipped = match enforce.get(&version_key).map(String::as_str) {
        None | Some("latest") => current,
        Some(version) if version == current => "latest".to_owned(),
        Some(_) => return None,
    };
    let mut labels = BTreeMap::from([(key.clone(), enforce.get(&key)?.clone())]);
    labels.insert(version_key, flipped);
    Some(labels)
}

/// The `pod-security.preview` finding of a Gated namespace: the preview's, saying what
/// enforce is held at.
pub fn gated_finding(
    namespace: &str,
    preview: &Preview,
    held_at: Option<&str>,
) -> Option<DriftEntry> {
    let mut entry = finding(namespace, preview)?;
    let held = held_at.map_or("enforce stays unset".to_owned(), |level| {
        format!("enforce held at {level:?}")
    });
    entry.message = crate::domain::node::findings::truncate(
        format!(
            "{held} until no existing pod violates the baseline's level (podSecurity.rollout: Gated); {}",
            entry.message
        ),
        1024,
    );
    Some(entry)
}

/// The enforce label's drift says why it stays: a Gated rollout holds it.
pub fn note_held_enforce(drift: &mut [DriftEntry]) {
    let enforce = format!("label {POD_SECURITY_PREFIX}enforce");
    for entry in drift
        .iter_mut()
        .filter(|e| e.check == check_ids::POD_SECURITY && e.message.starts_with(&enforce))
    {
        entry
            .message
            .push_str(" (held by podSecurity.rollout: Gated; see pod-security.preview)");
    }
}

/// The `pod-security.preview` finding of a dry run's outcome: its warnings, or why it
/// failed (then Unknown).
pub fn dry_run_finding(namespace: &str, outcome: Result<&[String], &str>) -> Option<DriftEntry> {
    finding(namespace, &dry_run_preview(outcome))
}

/// The preview a dry run's outcome gives: its warnings read, or Unknown with why it failed.
pub fn dry_run_preview(outcome: Result<&[String], &str>) -> Preview {
    match outcome {
        Ok(warnings) => preview_from_warnings(warnings),
        Err(why) => Preview::Unknown(format!("the dry run of the label change failed: {why}")),
    }
}

/// The `pod-security.preview` finding of a namespace's preview (none when clean).
pub fn finding(namespace: &str, preview: &Preview) -> Option<DriftEntry> {
    let (reason, message) = match preview {
        Preview::Clean => return None,
        Preview::Unknown(why) => (
            DriftReason::Unknown,
            format!("what enforcing the baseline's level would reject is unknown: {why}"),
        ),
        Preview::Violations {
            level,
            pods_in_violation,
            pods,
            capped,
        } => {
            let listed: Vec<String> = pods
                .iter()
                .map(|group| {
                    let others = match group.other_pods {
                        0 => String::new(),
                        1 => " (and 1 other pod)".to_owned(),
                        n => format!(" (and {n} other pods)"),
                    };
                    format!("{}{others}: {}", group.pod, group.reasons.join(", "))
                })
                .collect();
            let capped = capped.map_or(String::new(), |(checked, existing)| {
                format!(" (the API server checked only {checked} of {existing} pods)")
            });
            (
                DriftReason::Violation,
                format!(
                    "enforcing {level} would reject pods like {pods_in_violation} existing ones{capped}: {}",
                    listed.join("; ")
                ),
            )
        }
    };
    Some(DriftEntry {
        namespace: namespace.to_owned(),
        kind: "Namespace".to_owned(),
        name: namespace.to_owned(),
        check: check_ids::POD_SECURITY_PREVIEW.to_owned(),
        reason,
        message: crate::domain::node::findings::truncate(message, 1024),
    })
}

/// Most pods a preview lists by name (the count stays exact).
pub const MAX_LISTED: usize = 20;

/// The warning texts of one `Warning` header value, as apimachinery writes them
/// (`299 - "text"`, with `"` and `\` backslash-escaped, an optional date after the text,
/// several warnings comma-separated). Malformed parts are skipped.
pub fn parse_warning_header(value: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(value);
    let mut warnings = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some(open) = rest.find('"') else { break };
        let mut message = String::new();
        let mut chars = rest[open + 1..].char_indices();
        let mut end = None;
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        message.push(escaped);
                    }
                }
                '"' => {
                    end = Some(open + 1 + index + 1);
                    break;
                }
                c => message.push(c),
            }
        }
        let Some(end) = end else { break };
        warnings.push(message);
        // Past an optional quoted date, to the next comma-separated warning.
        rest = &rest[end..];
        rest = match rest.trim_start().strip_prefix('"') {
            Some(date) => date.find('"').map_or("", |close| &date[close + 1..]),
            None => rest,
        };
        rest = rest
            .find(',')
            .map_or("", |comma| rest[comma + 1..].trim_start());
    }
    warnings
}

/// Pods that share one set of reasons: the lexically first one named, the others counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodViolation {
    pub pod: String,
    pub other_pods: u32,
    pub reasons: Vec<String>,
}

/// What enforcing the target level would do to the namespace's existing pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preview {
    /// No existing pod violates it (or the namespace is exempt from Pod Security).
    Clean,
    /// Existing pods violate it.
    Violations {
        /// The level as the API server names it (`restricted:latest`).
        level: String,
        /// How many pods violate it (exact, unless `capped`).
        pods_in_violation: u32,
        /// At most [`MAX_LISTED`] groups, as the API server lists them.
        pods: Vec<PodViolation>,
        /// The API server checked only some pods: (checked, existing).
        capped: Option<(u32, u32)>,
    },
    /// It could not be decided (the API server checked only some pods and none of those
    /// violated, or could not list them): why.
    Unknown(String),
}

const VIOLATE: &str = "existing pods in namespace ";
const CAPPED: &str = "new PodSecurity enforce level only checked against the first ";
const LIST_FAILED: &str = "failed to list pods while checking new PodSecurity enforce level";

/// Reads the warnings of a dry-run change of a namespace's enforce level. Warnings that
/// are not PodSecurity's are ignored.
pub fn preview_from_warnings(warnings: &[String]) -> Preview {
    let capped = warnings
        .iter()
        .find_map(|w| w.strip_prefix(CAPPED).and_then(parse_capped));
    if warnings.iter().any(|w| w.starts_with(LIST_FAILED)) {
        return Preview::Unknown(
            "the API server could not list the namespace's pods to check them".to_owned(),
        );
    }
    let level = warnings.iter().find_map(|w| {
        w.strip_prefix(VIOLATE)
            .and_then(|rest| rest.split_once("violate the new PodSecurity enforce level "))
            .map(|(_, level)| level.trim_matches('"').to_owned())
    });
    let Some(level) = level else {
        return match capped {
            Some((checked, existing)) => Preview::Unknown(format!(
                "the API server checked only {checked} of the {existing} existing pods (its limit), and none of those violates"
            )),
            None => Preview::Clean,
        };
    };
    let groups: Vec<PodViolation> = warnings.iter().filter_map(|w| pod_line(w)).collect();
    let pods_in_violation = groups.iter().map(|g| 1 + g.other_pods).sum();
    Preview::Violations {
        level,
        pods_in_violation,
        pods: groups.into_iter().take(MAX_LISTED).collect(),
        capped,
    }
}

/// `"%d of %d existing pods"`.
fn parse_capped(rest: &str) -> Option<(u32, u32)> {
    let (checked, rest) = rest.split_once(" of ")?;
    let existing = rest.split_whitespace().next()?;
    Some((checked.parse().ok()?, existing.parse().ok()?))
}

/// `<pod>: <reasons>`, `<pod> (and 1 other pod): <reasons>` or `<pod> (and N other pods):
/// <reasons>`; reasons are joined by ", " and contain none themselves.
fn pod_line(warning: &str) -> Option<PodViolation> {
    if warning.starts_with(VIOLATE) || warning.starts_with(CAPPED) {
        return None;
    }
    let (head, reasons) = warning.split_once(": ")?;
    let (pod, other_pods) = match head.split_once(" (and ") {
        Some((pod, count)) => {
            let count = count
                .strip_suffix(" other pods)")
                .or_else(|| count.strip_suffix(" other pod)"))?;
            (pod, count.parse().ok()?)
        }
        None => (head, 0),
    };
    // A pod name is a DNS subdomain: no spaces.
    if pod.is_empty() || pod.contains(' ') {
        return None;
    }
    Some(PodViolation {
        pod: pod.to_owned(),
        other_pods,
        reasons: reasons.split(", ").map(str::to_owned).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| (*l).to_owned()).collect()
    }

    fn wanted(level: PodSecurityLevel, version: Option<&str>) -> WantedPodSecurity<'_> {
        BTreeMap::from([("enforce", (level, version))])
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_preview_is_due_only_when_admission_would_evaluate_the_change() {
        use PodSecurityLevel::*;
        let enforce = "pod-security.kubernetes.io/enforce";
        let version = "pod-security.kubernetes.io/enforce-version";
        let target = target_labels(&wanted(Restricted, None), &labels(&[]));
        assert_eq!(target, Some(labels(&[(enforce, "restricted")])));
        assert_eq!(
            target_labels(
                &wanted(Restricted, None),
                &labels(&[(enforce, "restricted")])
            ),
            None
        );
        assert_eq!(
            target_labels(&wanted(Baseline, None), &labels(&[(enforce, "restricted")])),
            None
        );
        assert_eq!(target_labels(&wanted(Privileged, None), &labels(&[])), None);
        // A newer version of the same level is evaluated too; the stricter level is kept.
        assert_eq!(
            target_labels(
                &wanted(Baseline, Some("latest")),
                &labels(&[(enforce, "restricted"), (version, "v1.30")])
            ),
            Some(labels(&[(enforce, "restricted"), (version, "latest")]))
        );
        assert_eq!(
            target_labels(
                &wanted(Baseline, Some("v1.30")),
                &labels(&[(enforce, "baseline"), (version, "v1.31")])
            ),
            None
        );
    }

    #[test]
    fn a_clean_preview_is_no_finding_and_the_others_name_the_pods() {
        assert_eq!(finding("shop", &Preview::Clean), None);
        let unknown = finding("shop", &Preview::Unknown("capped".to_owned())).expect("finding");
        assert_eq!(unknown.reason, DriftReason::Unknown);
        let violations = preview_from_warnings(&texts(&[
            "existing pods in namespace \"shop\" violate the new PodSecurity enforce level \"restricted:latest\"",
            "privileged-0 (and 2 other pods): privileged, allowPrivilegeEscalation != false",
        ]));
        let entry = finding("shop", &violations).expect("finding");
        assert_eq!(
            (entry.kind.as_str(), entry.check.as_str(), entry.reason),
            ("Namespace", "pod-security.preview", DriftReason::Violation)
        );
        assert!(entry.message.contains("enforcing restricted:latest would reject pods like 3 existing ones: privileged-0 (and 2 other pods): privileged, allowPrivilegeEscalation != false"), "{}", entry.message);
    }

    #[test]
    fn warning_headers_are_read_as_apimachinery_writes_them() {
        assert_eq!(
            parse_warning_header(br#"299 - "plain text""#),
            vec!["plain text"]
        );
        assert_eq!(
            parse_warning_header(br#"299 - "say \"hi\" \\ back", 299 - "second""#),
            vec![r#"say "hi" \ back"#, "second"]
        );
        assert_eq!(
            parse_warning_header(br#"299 - "dated" "Wed, 02 Dec 2026 00:00:00 GMT", 299 - "next""#),
            vec!["dated", "next"]
        );
        assert_eq!(
            parse_warning_header(b"299 - \"unterminated"),
            Vec::<String>::new()
        );
        assert_eq!(parse_warning_header(b""), Vec::<String>::new());
    }

    /// The texts pod-security-admission v0.36.3 writes (admission.go:593-623).
    #[test]
    fn pod_security_warnings_become_a_preview() {
        let violations = texts(&[
            "existing pods in namespace \"shop\" violate the new PodSecurity enforce level \"restricted:latest\"",
            "privileged-0 (and 2 other pods): privileged, allowPrivilegeEscalation != false",
            "root: runAsNonRoot != true",
            "web-1 (and 1 other pod): seccompProfile",
        ]);
        assert_eq!(
            preview_from_warnings(&violations),
            Preview::Violations {
                level: "restricted:latest".to_owned(),
                pods_in_violation: 6,
                pods: vec![
                    PodViolation {
                        pod: "privileged-0".to_owned(),
                        other_pods: 2,
                        reasons: vec![
                            "privileged".to_owned(),
                            "allowPrivilegeEscalation != false".to_owned()
                        ],
                    },
                    PodViolation {
                        pod: "root".to_owned(),
                        other_pods: 0,
                        reasons: vec!["runAsNonRoot != true".to_owned()],
                    },
                    PodViolation {
                        pod: "web-1".to_owned(),
                        other_pods: 1,
                        reasons: vec!["seccompProfile".to_owned()],
                    },
                ],
                capped: None,
            }
        );
        assert_eq!(preview_from_warnings(&[]), Preview::Clean);
        let unrelated = texts(&["metadata.name: this is some other warning"]);
        assert_eq!(preview_from_warnings(&unrelated), Preview::Clean);
    }

    #[test]
    fn a_capped_or_failed_check_is_never_clean() {
        let capped = texts(&[
            "new PodSecurity enforce level only checked against the first 3000 of 3002 existing pods",
        ]);
        assert!(
            matches!(preview_from_warnings(&capped), Preview::Unknown(why) if why.contains("3000 of the 3002"))
        );
        let capped_with_violation = texts(&[
            "new PodSecurity enforce level only checked against the first 3000 of 3002 existing pods",
            "existing pods in namespace \"big\" violate the new PodSecurity enforce level \"baseline:latest\"",
            "p-0001: privileged",
        ]);
        assert!(matches!(
            preview_from_warnings(&capped_with_violation),
            Preview::Violations {
                capped: Some((3000, 3002)),
                pods_in_violation: 1,
                ..
            }
        ));
        let failed = texts(&["failed to list pods while checking new PodSecurity enforce level"]);
        assert!(matches!(
            preview_from_warnings(&failed),
            Preview::Unknown(_)
        ));
    }

    #[test]
    fn at_most_the_listed_bound_of_groups_is_kept_and_the_count_stays_exact() {
        let mut warnings = texts(&[
            "existing pods in namespace \"n\" violate the new PodSecurity enforce level \"baseline:v1.36\"",
        ]);
        warnings.extend((0..30).map(|i| format!("pod-{i:02} (and 1 other pod): reason {i}")));
        let Preview::Violations {
            pods,
            pods_in_violation,
            ..
        } = preview_from_warnings(&warnings)
        else {
            panic!("violations");
        };
        assert_eq!(pods.len(), MAX_LISTED);
        assert_eq!(pods_in_violation, 60);
    }

    fn ps_labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{POD_SECURITY_PREFIX}{k}"), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_a_stricter_level_or_a_newer_version_raises_enforce() {
        let raises = |desired: &[(&str, &str)], observed: &[(&str, &str)]| {
            raises_enforce(&ps_labels(desired), &ps_labels(observed))
        };
        assert!(raises(&[("enforce", "restricted")], &[]));
        assert!(raises(
            &[("enforce", "restricted")],
            &[("enforce", "baseline")]
        ));
        assert!(raises(&[("enforce", "baseline")], &[("enforce", "bogus")]));
        assert!(!raises(
            &[("enforce", "baseline")],
            &[("enforce", "baseline")]
        ));
        assert!(!raises(&[("enforce", "privileged")], &[]));
        assert!(!raises(&[("warn", "restricted")], &[]));
        // Same level, newer version: evaluated by the API server too.
        assert!(raises(
            &[("enforce", "baseline"), ("enforce-version", "latest")],
            &[("enforce", "baseline"), ("enforce-version", "v1.30")]
        ));
        assert!(!raises(
            &[("enforce", "baseline"), ("enforce-version", "v1.30")],
            &[("enforce", "baseline")]
        ));
    }

    #[test]
    fn a_held_enforce_change_keeps_our_current_label_and_never_takes_anothers() {
        let desired = ps_labels(&[
            ("enforce", "restricted"),
            ("enforce-version", "latest"),
            ("warn", "restricted"),
        ]);
        let owned: BTreeSet<String> = ps_labels(&[("enforce", ""), ("warn", "")])
            .into_keys()
            .collect();
        let none = BTreeMap::new();
        // Ours at baseline: kept there (an apply without it would release it).
        assert_eq!(
            hold_enforce(
                &desired,
                &ps_labels(&[("enforce", "baseline")]),
                &owned,
                &none
            ),
            ps_labels(&[("enforce", "baseline"), ("warn", "restricted")])
        );
        // Someone else's, or none: left out, so untouched.
        assert_eq!(
            hold_enforce(
                &desired,
                &ps_labels(&[("enforce", "baseline")]),
                &BTreeSet::new(),
                &none
            ),
            ps_labels(&[("warn", "restricted")])
        );
        // A baseline without a Gated rollout wants baseline: that is applied at once.
        assert_eq!(
            hold_enforce(
                &desired,
                &BTreeMap::new(),
                &owned,
                &ps_labels(&[("enforce", "baseline"), ("warn", "baseline")])
            ),
            ps_labels(&[("enforce", "baseline"), ("warn", "restricted")])
        );
    }

    #[test]
    fn an_enforced_level_is_rechecked_under_its_equivalent_version() {
        assert_eq!(
            recheck_labels(&ps_labels(&[("enforce", "restricted")]), Some(36)),
            Some(ps_labels(&[
                ("enforce", "restricted"),
                ("enforce-version", "v1.36")
            ]))
        );
        assert_eq!(
            recheck_labels(
                &ps_labels(&[("enforce", "restricted"), ("enforce-version", "v1.36")]),
                Some(36)
            ),
            Some(ps_labels(&[
                ("enforce", "restricted"),
                ("enforce-version", "latest")
            ]))
        );
        assert_eq!(
            recheck_labels(
                &ps_labels(&[("enforce", "restricted"), ("enforce-version", "v1.30")]),
                Some(36)
            ),
            None
        );
        assert_eq!(
            recheck_labels(&ps_labels(&[("enforce", "baseline")]), None),
            None
        );
    }

    #[test]
    fn a_gated_finding_says_what_enforce_is_held_at() {
        let warnings = texts(&[
            "existing pods in namespace \"n\" violate the new PodSecurity enforce level \"restricted:latest\"",
            "privileged-pod: host namespaces, privileged",
        ]);
        let preview = preview_from_warnings(&warnings);
        let entry = gated_finding("n", &preview, Some("baseline")).expect("finding");
        assert_eq!(entry.reason, DriftReason::Violation);
        assert!(
            entry.message.starts_with("enforce held at \"baseline\""),
            "{}",
            entry.message
        );
        assert!(
            entry
                .message
                .contains("privileged-pod: host namespaces, privileged"),
            "{}",
            entry.message
        );
        assert_eq!(gated_finding("n", &Preview::Clean, None), None);
    }
}

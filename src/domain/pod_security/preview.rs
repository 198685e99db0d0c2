//! What enforcing a stricter Pod Security level would break, as the API server itself says.
//!
//! Raising a namespace's `pod-security.kubernetes.io/enforce` label evicts nothing: the new
//! level bites at the next pod creation. On such a label change, PodSecurity admission
//! evaluates the namespace's existing pods and answers with `Warning` headers; made as a dry
//! run (`dryRun=All`) the change persists nothing. This module reads those warnings; the
//! evaluation is the API server's (k8s.io/pod-security-admission, `EvaluatePodsInNamespace`),
//! never re-implemented here.

use std::collections::BTreeMap;

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

/// The `pod-security.preview` finding of a dry run's outcome: its warnings, or why it
/// failed (then Unknown).
pub fn dry_run_finding(namespace: &str, outcome: Result<&[String], &str>) -> Option<DriftEntry> {
    match outcome {
        Ok(warnings) => finding(namespace, &preview_from_warnings(warnings)),
        Err(why) => finding(
            namespace,
            &Preview::Unknown(format!("the dry run of the label change failed: {why}")),
        ),
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
}

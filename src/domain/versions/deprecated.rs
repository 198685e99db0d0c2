//! `version.deprecated-api`: API versions clients still request that the next minor (or the
//! current one) removes, from the kube-apiserver's `apiserver_requested_deprecated_apis`
//! gauge (k8s.io/apiserver pkg/endpoints/metrics): set to 1 per requested deprecated
//! group/version/resource, never reset while the process runs.
//!
//! `/metrics` is several MB; it is read line by line and only this family is kept.

use crate::api::{DriftEntry, DriftReason};
use crate::domain::node::findings::truncate;
use crate::domain::versions::check_ids::DEPRECATED_API;
use crate::domain::versions::version::KubeVersion;
use crate::domain::versions::{MESSAGE_MAX, control_plane_drift};

/// The metric family.
const FAMILY: &str = "apiserver_requested_deprecated_apis";
/// Kind of the findings about one deprecated API.
const DEPRECATED_API_KIND: &str = "DeprecatedAPI";
/// Longest name a DriftEntry may carry (its schema's maxLength).
const NAME_MAX: usize = 253;
/// How much of a malformed line a message quotes.
const QUOTE_MAX: usize = 200;

/// One series of the family: a deprecated API version that was requested.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeprecatedRequest {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    /// "1.37", or "" when the removal is not planned (e.g. a CRD version marked deprecated).
    pub removed_release: String,
}

impl DeprecatedRequest {
    /// `resource[/subresource].version[.group]`, e.g. `servicecidrs.v1beta1.networking.k8s.io`
    /// or `pods.v1` (core group).
    pub fn name(&self) -> String {
        let mut name = self.resource.clone();
        for (separator, part) in [
            ('/', &self.subresource),
            ('.', &self.version),
            ('.', &self.group),
        ] {
            if !part.is_empty() {
                name.push(separator);
                name.push_str(part);
            }
        }
        name
    }
}

/// What the family says: requested series (value ≠ 0) and the lines that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MetricScan<'a> {
    pub requests: Vec<DeprecatedRequest>,
    pub malformed: usize,
    pub first_malformed: Option<&'a str>,
}

/// Reads the family's series from the Prometheus text of `/metrics`; other families,
/// comments and blank lines are skipped.
pub(crate) fn scan(text: &str) -> MetricScan<'_> {
    let mut scan = MetricScan::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(FAMILY) else {
            continue;
        };
        // `apiserver_requested_deprecated_apis_total` would be another family.
        if !rest.starts_with(['{', ' ', '\t']) {
            continue;
        }
        match parse_series(rest) {
            Some(Series { request, value }) => {
                if value != 0.0 && !value.is_nan() {
                    scan.requests.push(request);
                }
            }
            None => {
                scan.malformed += 1;
                scan.first_malformed.get_or_insert(line);
            }
        }
    }
    scan
}

/// Only the family's lines of a `/metrics` text: what the shells keep of the several MB an
/// API server answers (the cache holds this, not the whole text).
pub fn family_lines(text: &str) -> String {
    let mut kept = String::new();
    for line in text.lines().filter(|line| line.starts_with(FAMILY)) {
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

struct Series {
    request: DeprecatedRequest,
    value: f64,
}

/// `{name="value",...} value [timestamp]` after the family name.
fn parse_series(text: &str) -> Option<Series> {
    let (labels, rest) = parse_labels(text.trim_start().strip_prefix('{')?)?;
    let mut fields = rest.split_whitespace();
    let value = fields.next()?.parse::<f64>().ok()?;
    // An optional integer timestamp (milliseconds), nothing more.
    match (fields.next(), fields.next()) {
        (None, _) => {}
        (Some(timestamp), None) if timestamp.parse::<i64>().is_ok() => {}
        _ => return None,
    }
    let mut request = DeprecatedRequest::default();
    let (mut has_resource, mut has_version, mut has_removed) = (false, false, false);
    for (name, value) in labels {
        match name {
            "group" => request.group = value,
            "version" => (request.version, has_version) = (value, true),
            "resource" => (request.resource, has_resource) = (value, true),
            "subresource" => request.subresource = value,
            "removed_release" => (request.removed_release, has_removed) = (value, true),
            _ => {}
        }
    }
    (has_resource && has_version && has_removed && !request.resource.is_empty())
        .then_some(Series { request, value })
}

/// The label pairs up to the closing `}`, and what follows it. Values are unescaped
/// (`\\`, `\"`, `\n`); a trailing comma is allowed, as in the text format.
fn parse_labels(mut text: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let name_end = text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
        let (name, rest) = text.split_at(name_end);
        if name.is_empty() {
            return None;
        }
        let rest = rest
            .trim_start()
            .strip_prefix('=')?
            .trim_start()
            .strip_prefix('"')?;
        let (value, rest) = parse_quoted(rest)?;
        labels.push((name, value));
        let rest = rest.trim_start();
        text = match rest.strip_prefix(',') {
            Some(after_comma) => after_comma,
            None if rest.starts_with('}') => rest,
            None => return None,
        };
    }
}

/// A label value up to its closing quote (the opening one already read), unescaped.
fn parse_quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                // `\\` and `\"`; any other escape keeps the character, leniently.
                other => value.push(other),
            },
            _ => value.push(c),
        }
    }
    None
}

/// The findings of `version.deprecated-api` from what was read of `/metrics`; `current` is
/// the oldest kube-apiserver minor (None when no version could be read).
pub(crate) fn deprecated_api_findings(
    metrics: Option<&Result<&str, String>>,
    current: Option<KubeVersion>,
) -> Vec<DriftEntry> {
    match metrics {
        // Not asked (e.g. `check` without --apiserver-metrics): nothing to say.
        None => Vec::new(),
        Some(Err(why)) => vec![unknown(format!(
            "cannot read the kube-apiserver's /metrics: {why}; reading it needs the opt-in \
             permission config/rbac/apiserver-metrics"
        ))],
        Some(Ok(text)) => findings_from_scan(&scan(text), current),
    }
}

fn findings_from_scan(scan: &MetricScan<'_>, current: Option<KubeVersion>) -> Vec<DriftEntry> {
    let mut findings = Vec::new();
    let mut malformed = scan.malformed;
    let mut first_malformed = scan.first_malformed.map(str::to_owned);
    let mut needs_current = false;
    for request in &scan.requests {
        // Removal not planned: nothing to warn about yet.
        if request.removed_release.is_empty() {
            continue;
        }
        let Ok(removed) = KubeVersion::parse(&request.removed_release) else {
            malformed += 1;
            first_malformed
                .get_or_insert_with(|| format!("removed_release={:?}", request.removed_release));
            continue;
        };
        match current {
            Some(current) if removed.minor_of() <= next_minor(current) => {
                findings.push(violation(request))
            }
            Some(_) => {}
            None => needs_current = true,
        }
    }
    if needs_current {
        findings.push(unknown(
            "no kube-apiserver version is known to compare the removed_release of requested \
             deprecated APIs with"
                .to_owned(),
        ));
    }
    if let Some(line) = first_malformed {
        findings.push(unknown(format!(
            "could not read {malformed} {FAMILY} series of /metrics, the first: {:?}",
            truncate(line, QUOTE_MAX)
        )));
    }
    findings
}

fn next_minor(current: KubeVersion) -> KubeVersion {
    KubeVersion::minor_release(current.major, current.minor.saturating_add(1))
}

fn violation(request: &DeprecatedRequest) -> DriftEntry {
    DriftEntry {
        namespace: String::new(),
        kind: DEPRECATED_API_KIND.to_owned(),
        name: truncate(request.name(), NAME_MAX),
        check: DEPRECATED_API.to_owned(),
        reason: DriftReason::Violation,
        message: truncate(
            format!(
                "requested since the API server started; removed in {}",
                request.removed_release
            ),
            MESSAGE_MAX,
        ),
    }
}

fn unknown(message: String) -> DriftEntry {
    control_plane_drift(DEPRECATED_API, DriftReason::Unknown, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_lines_keep_only_the_family() {
        let text = "# HELP apiserver_requested_deprecated_apis x\n\
            apiserver_request_total{code=\"200\"} 5\n\
            apiserver_requested_deprecated_apis{group=\"g\",removed_release=\"1.37\",resource=\"r\",subresource=\"\",version=\"v1beta1\"} 1\n";
        let kept = family_lines(text);
        assert_eq!(
            kept,
            "apiserver_requested_deprecated_apis{group=\"g\",removed_release=\"1.37\",resource=\"r\",subresource=\"\",version=\"v1beta1\"} 1\n"
        );
        assert_eq!(scan(&kept).requests, scan(text).requests);
    }

    const SAMPLE: &str = r#"# HELP apiserver_requested_deprecated_apis [STABLE] Gauge of deprecated APIs that have been requested, broken out by API group, version, resource, subresource, and removed_release.
# TYPE apiserver_requested_deprecated_apis gauge
apiserver_requested_deprecated_apis{group="networking.k8s.io",removed_release="1.37",resource="servicecidrs",subresource="",version="v1beta1"} 1
apiserver_requested_deprecated_apis{group="storage.k8s.io",removed_release="1.37",resource="volumeattributesclasses",subresource="",version="v1beta1"} 1
apiserver_requested_deprecated_apis{group="resource.k8s.io",removed_release="1.38",resource="resourceclaims",subresource="status",version="v1beta1"} 1
apiserver_requested_deprecated_apis{group="coordination.k8s.io",removed_release="1.39",resource="leasecandidates",subresource="",version="v1beta1"} 1
apiserver_requested_deprecated_apis{group="stable.example.com",removed_release="",resource="crontabs",subresource="",version="v1beta1"} 1
# HELP apiserver_request_total [STABLE] Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 42
"#;

    fn current(text: &str) -> Option<KubeVersion> {
        Some(KubeVersion::parse(text).unwrap())
    }

    /// (kind, name, reason, message) of every finding.
    fn findings(text: &str, at: Option<KubeVersion>) -> Vec<(String, String, DriftReason, String)> {
        let metrics: Result<&str, String> = Ok(text);
        deprecated_api_findings(Some(&metrics), at)
            .into_iter()
            .map(|f| {
                assert_eq!(
                    (f.namespace.as_str(), f.check.as_str()),
                    ("", "version.deprecated-api")
                );
                (f.kind, f.name, f.reason, f.message)
            })
            .collect()
    }

    fn violation_of(name: &str, removed: &str) -> (String, String, DriftReason, String) {
        (
            "DeprecatedAPI".to_owned(),
            name.to_owned(),
            DriftReason::Violation,
            format!("requested since the API server started; removed in {removed}"),
        )
    }

    #[test]
    fn reports_apis_removed_in_the_next_minor_or_earlier() {
        assert_eq!(
            findings(SAMPLE, current("v1.36.3")),
            [
                violation_of("servicecidrs.v1beta1.networking.k8s.io", "1.37"),
                violation_of("volumeattributesclasses.v1beta1.storage.k8s.io", "1.37"),
            ]
        );
        assert_eq!(
            findings(SAMPLE, current("v1.37.0")),
            [
                violation_of("servicecidrs.v1beta1.networking.k8s.io", "1.37"),
                violation_of("volumeattributesclasses.v1beta1.storage.k8s.io", "1.37"),
                violation_of("resourceclaims/status.v1beta1.resource.k8s.io", "1.38"),
            ]
        );
        assert_eq!(findings(SAMPLE, current("v1.35.0")), []);
    }

    #[test]
    fn names_core_group_and_subresources() {
        let text = "apiserver_requested_deprecated_apis{group=\"\",removed_release=\"1.30\",resource=\"pods\",subresource=\"eviction\",version=\"v1beta1\"} 1\n\
                    apiserver_requested_deprecated_apis{group=\"\",removed_release=\"1.30\",resource=\"pods\",subresource=\"\",version=\"v1\"} 1";
        assert_eq!(
            findings(text, current("v1.36.0")),
            [
                violation_of("pods/eviction.v1beta1", "1.30"),
                violation_of("pods.v1", "1.30"),
            ]
        );
    }

    #[test]
    fn reads_labels_in_any_order_with_spaces_escapes_and_a_timestamp() {
        let text = concat!(
            r#"apiserver_requested_deprecated_apis{ version = "v1beta1" , resource="we\"ird\\name",removed_release="1.37",group="x.io", } 1 1700000000000"#,
            "\n",
            r#"apiserver_requested_deprecated_apis{resource="flowschemas",removed_release="1.29",version="v1beta2",group="flowcontrol.apiserver.k8s.io",subresource=""} 1e+00"#,
        );
        let scan = scan(text);
        assert_eq!(scan.malformed, 0, "{:?}", scan.first_malformed);
        assert_eq!(scan.requests[0].resource, "we\"ird\\name");
        assert_eq!(scan.requests[0].group, "x.io");
        assert_eq!(
            findings(text, current("v1.36.0")),
            [
                violation_of("we\"ird\\name.v1beta1.x.io", "1.37"),
                violation_of("flowschemas.v1beta2.flowcontrol.apiserver.k8s.io", "1.29"),
            ]
        );
    }

    #[test]
    fn zero_values_and_unplanned_removals_are_not_reported() {
        let text = "apiserver_requested_deprecated_apis{group=\"a.io\",removed_release=\"1.30\",resource=\"r\",subresource=\"\",version=\"v1\"} 0\n\
                    apiserver_requested_deprecated_apis{group=\"b.io\",removed_release=\"\",resource=\"r\",subresource=\"\",version=\"v1\"} 1\n\
                    apiserver_requested_deprecated_apis{group=\"c.io\",removed_release=\"1.30\",resource=\"r\",subresource=\"\",version=\"v1\"} NaN";
        assert_eq!(findings(text, current("v1.36.0")), []);
    }

    #[test]
    fn other_families_with_the_same_prefix_are_skipped() {
        let text = "apiserver_requested_deprecated_apis_total{group=\"a.io\",removed_release=\"1.30\",resource=\"r\",version=\"v1\"} 1\n\
                    apiserver_requested_deprecated_apisx 1\n\
                    xapiserver_requested_deprecated_apis{group=\"a.io\",removed_release=\"1.30\",resource=\"r\",version=\"v1\"} 1";
        assert_eq!(scan(text), MetricScan::default());
    }

    #[test]
    fn malformed_lines_give_one_unknown_and_keep_the_good_series() {
        let text = [
            "apiserver_requested_deprecated_apis{group=\"a.io\",removed_release=\"1.30\",resource=\"r\",version=\"v1\"} 1",
            "apiserver_requested_deprecated_apis 1",
            "apiserver_requested_deprecated_apis{group=\"a.io\",resource=\"r\",version=\"v1\"} 1",
            "apiserver_requested_deprecated_apis{group=\"a.io\",removed_release=\"1.30\",resource=\"r\",version=\"v1} 1",
            "apiserver_requested_deprecated_apis{group=\"a.io\" removed_release=\"1.30\"} 1",
            "apiserver_requested_deprecated_apis{group=\"a.io\",removed_release=\"1.30\",resource=\"r\",version=\"v1\"} one",
            "apiserver_requested_deprecated_apis{group=\"a.io\",removed_release=\"1.30\",resource=\"r\",version=\"v1\"} 1 2 3",
            "apiserver_requested_deprecated_apis{=\"x\"} 1",
            "apiserver_requested_deprecated_apis{group=\"b.io\",removed_release=\"soon\",resource=\"r\",version=\"v1\"} 1",
        ]
        .join("\n");
        let got = findings(&text, current("v1.36.0"));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], violation_of("r.v1.a.io", "1.30"));
        assert_eq!(
            got[1],
            (
                "ControlPlane".to_owned(),
                "kube-apiserver".to_owned(),
                DriftReason::Unknown,
                "could not read 8 apiserver_requested_deprecated_apis series of /metrics, the first: \
                 \"apiserver_requested_deprecated_apis 1\""
                    .to_owned()
            )
        );
    }

    #[test]
    fn a_huge_malformed_line_is_quoted_short() {
        let text = format!(
            "apiserver_requested_deprecated_apis{{group=\"{}",
            "x".repeat(100_000)
        );
        let got = findings(&text, current("v1.36.0"));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].2, DriftReason::Unknown);
        assert!(got[0].3.chars().count() < 300, "{}", got[0].3.len());
    }

    #[test]
    fn a_huge_metrics_text_keeps_only_the_family() {
        let mut text = String::new();
        for i in 0..50_000 {
            text.push_str(&format!(
                "# HELP other_{i} help\n# TYPE other_{i} counter\napiserver_request_duration_seconds_bucket{{le=\"{i}\",resource=\"pods\"}} {i}\n"
            ));
        }
        text.push_str("apiserver_requested_deprecated_apis{group=\"networking.k8s.io\",removed_release=\"1.37\",resource=\"ipaddresses\",subresource=\"\",version=\"v1beta1\"} 1\n");
        assert!(text.len() > 4_000_000);
        assert_eq!(
            findings(&text, current("v1.36.3")),
            [violation_of(
                "ipaddresses.v1beta1.networking.k8s.io",
                "1.37"
            )]
        );
    }

    #[test]
    fn a_huge_name_is_cut_to_the_schema_limit() {
        let resource = "r".repeat(1_000);
        let text = format!(
            "apiserver_requested_deprecated_apis{{group=\"a.io\",removed_release=\"1.30\",resource=\"{resource}\",version=\"v1\"}} 1"
        );
        let got = findings(&text, current("v1.36.0"));
        assert_eq!(got[0].1.chars().count(), 253);
    }

    #[test]
    fn unreadable_metrics_name_the_overlay() {
        let metrics: Result<&str, String> =
            Err("403 Forbidden: cannot get path \"/metrics\"".to_owned());
        let got = deprecated_api_findings(Some(&metrics), current("v1.36.0"));
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].kind.as_str(), got[0].name.as_str(), got[0].reason),
            ("ControlPlane", "kube-apiserver", DriftReason::Unknown)
        );
        assert_eq!(
            got[0].message,
            "cannot read the kube-apiserver's /metrics: 403 Forbidden: cannot get path \"/metrics\"; \
             reading it needs the opt-in permission config/rbac/apiserver-metrics"
        );
        assert_eq!(deprecated_api_findings(None, current("v1.36.0")), []);
    }

    #[test]
    fn without_a_current_version_planned_removals_are_unknown() {
        let got = findings(SAMPLE, None);
        assert_eq!(
            got,
            [(
                "ControlPlane".to_owned(),
                "kube-apiserver".to_owned(),
                DriftReason::Unknown,
                "no kube-apiserver version is known to compare the removed_release of requested \
                 deprecated APIs with"
                    .to_owned()
            )]
        );
        assert_eq!(findings("", None), []);
    }
}

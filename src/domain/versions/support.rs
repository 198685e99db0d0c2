//! `version.control-plane-eol`: is the oldest kube-apiserver's minor release still supported?
//!
//! The end of life comes from the baseline's override for that minor (a vendor's extended
//! support) or else the release table. The last supported day is a UTC date; the minor is
//! unsupported from 00:00 UTC the day after. Messages carry absolute dates only, so the
//! finding (and status) changes only when a threshold is crossed.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::Offset;

use crate::api::{DriftEntry, DriftReason, EndOfLifeOverride};
use crate::domain::versions::check_ids::CONTROL_PLANE_EOL;
use crate::domain::versions::control_plane_drift;
use crate::domain::versions::observed::ApiServers;
use crate::domain::versions::releases::{self, EolKind, TABLE_DATE};
use crate::domain::versions::version::KubeVersion;

/// When a minor release's support ends, and who says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndOfLife {
    /// The minor release (patch `None`), e.g. 1.33.
    pub minor: KubeVersion,
    /// The last supported day (UTC).
    pub last_day: Date,
    pub source: EolSource,
}

/// Where an end-of-life date comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EolSource {
    /// The release table, a date announced while the branch was supported.
    UpstreamScheduled,
    /// The release table, the day upstream closed the branch.
    UpstreamActual,
    /// The baseline's `endOfLifeOverrides` entry for this minor.
    Override { reason: String },
}

impl EolSource {
    /// A short label value for metrics: `upstream-scheduled`, `upstream-actual`, `override`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::UpstreamScheduled => "upstream-scheduled",
            Self::UpstreamActual => "upstream-actual",
            Self::Override { .. } => "override",
        }
    }
}

impl EndOfLife {
    /// 00:00 UTC the day after the last supported day: the first instant the minor is out of
    /// support (the metric's value, and when the finding appears). Saturates at the end of
    /// time for an override of 9999-12-31.
    pub fn first_unsupported_instant(&self) -> Timestamp {
        self.last_day
            .tomorrow()
            .and_then(|day| Offset::UTC.to_timestamp(day.to_datetime(jiff::civil::Time::MIN)))
            .unwrap_or(Timestamp::MAX)
    }

    /// Whether the minor is out of support at `now`.
    pub fn has_passed(&self, now: Timestamp) -> bool {
        now >= self.first_unsupported_instant()
    }
}

/// "upstream (scheduled)", "upstream (actual)" or "override: <reason>", as shown in status.
impl fmt::Display for EolSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UpstreamScheduled => f.write_str("upstream (scheduled)"),
            Self::UpstreamActual => f.write_str("upstream (actual)"),
            Self::Override { reason } => write!(f, "override: {reason}"),
        }
    }
}

/// The verdict of `version.control-plane-eol`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Support {
    pub finding: Option<DriftEntry>,
    /// The end of life of the judged minor, when one is known.
    pub end_of_life: Option<EndOfLife>,
}

/// Judges the oldest kube-apiserver version read against its end of life at `now`.
pub(crate) fn control_plane_eol(
    servers: &ApiServers<'_>,
    overrides: &[EndOfLifeOverride],
    now: Timestamp,
) -> Support {
    let Some(oldest) = servers.oldest() else {
        return unknown(no_version_message(servers));
    };
    let minor = oldest.version.minor_of();
    let end_of_life = match end_of_life(minor, overrides) {
        Ok(end_of_life) => end_of_life,
        Err((reason, message)) => {
            return Support {
                finding: Some(control_plane_drift(CONTROL_PLANE_EOL, reason, message)),
                end_of_life: None,
            };
        }
    };
    let finding = end_of_life.has_passed(now).then(|| {
        control_plane_drift(
            CONTROL_PLANE_EOL,
            DriftReason::Violation,
            reached_message(&end_of_life),
        )
    });
    Support {
        finding,
        end_of_life: Some(end_of_life),
    }
}

/// Why a minor has no end of life to judge by: the reason and message of its finding.
type NoEndOfLife = (DriftReason, String);

/// The end of life of `minor` (override first, then the table), or why there is none.
fn end_of_life(
    minor: KubeVersion,
    overrides: &[EndOfLifeOverride],
) -> Result<EndOfLife, NoEndOfLife> {
    // Overrides whose minor does not read cannot match; the schema's pattern rules them out.
    let matching = overrides
        .iter()
        .find(|o| KubeVersion::parse(&o.minor).is_ok_and(|v| v.minor_of() == minor));
    if let Some(entry) = matching {
        return from_override(minor, entry);
    }
    from_table(minor)
}

fn from_override(minor: KubeVersion, entry: &EndOfLifeOverride) -> Result<EndOfLife, NoEndOfLife> {
    match parse_day(&entry.end_of_life) {
        Ok(last_day) => Ok(EndOfLife {
            minor,
            last_day,
            source: EolSource::Override {
                reason: entry.reason.clone(),
            },
        }),
        Err(why) => Err((
            DriftReason::Unknown,
            format!(
                "kubernetesVersion.endOfLifeOverrides entry for {} ({:?}): endOfLife {:?} {why}",
                entry.minor, entry.reason, entry.end_of_life
            ),
        )),
    }
}

fn from_table(minor: KubeVersion) -> Result<EndOfLife, NoEndOfLife> {
    if let Some(row) = releases::release(minor.minor).filter(|_| minor.major == 1) {
        return Ok(EndOfLife {
            minor,
            last_day: row.end_of_life,
            source: match row.kind {
                EolKind::Scheduled => EolSource::UpstreamScheduled,
                EolKind::Actual => EolSource::UpstreamActual,
            },
        });
    }
    match releases::oldest_and_newest() {
        Some((oldest, _)) if minor < KubeVersion::minor_release(1, oldest.minor) => Err((
            DriftReason::Violation,
            format!(
                "{minor} is older than every release in the release table of {TABLE_DATE} \
                     (oldest 1.{}, end of life {}), so it is past its end of life",
                oldest.minor, oldest.end_of_life
            ),
        )),
        _ => Err((
            DriftReason::Unknown,
            format!(
                "the release table of {TABLE_DATE} does not know {minor}: update kube-baseline, \
                 or set kubernetesVersion.endOfLifeOverrides for {minor}"
            ),
        )),
    }
}

/// A strict YYYY-MM-DD date; the schema checks the shape, not that the day exists
/// (2027-02-30 passes it).
fn parse_day(text: &str) -> Result<Date, String> {
    let digits = |range| {
        text.get(range)
            .filter(|s: &&str| s.bytes().all(|b| b.is_ascii_digit()))
    };
    let fields = match (text.len(), text.get(4..5), text.get(7..8)) {
        (10, Some("-"), Some("-")) => (digits(0..4), digits(5..7), digits(8..10)),
        _ => (None, None, None),
    };
    // Four and two ASCII digits always fit i16 and i8.
    let (Some(year), Some(month), Some(day)) = (
        fields.0.and_then(|y| y.parse::<i16>().ok()),
        fields.1.and_then(|m| m.parse::<i8>().ok()),
        fields.2.and_then(|d| d.parse::<i8>().ok()),
    ) else {
        return Err("is not a YYYY-MM-DD date".to_owned());
    };
    Date::new(year, month, day).map_err(|_| "is not a day of the calendar".to_owned())
}

fn reached_message(end_of_life: &EndOfLife) -> String {
    let source = match &end_of_life.source {
        EolSource::UpstreamScheduled => {
            format!("upstream, scheduled; release table of {TABLE_DATE}")
        }
        EolSource::UpstreamActual => format!("upstream, actual; release table of {TABLE_DATE}"),
        EolSource::Override { reason } => format!("override: {reason}"),
    };
    format!(
        "{} reached end of life on {} ({source})",
        end_of_life.minor, end_of_life.last_day
    )
}

fn no_version_message(servers: &ApiServers<'_>) -> String {
    if servers.unreadable.is_empty() {
        "no kube-apiserver version was observed".to_owned()
    } else {
        format!(
            "no kube-apiserver version could be read: {}",
            servers.describe_unreadable()
        )
    }
}

fn unknown(message: String) -> Support {
    Support {
        finding: Some(control_plane_drift(
            CONTROL_PLANE_EOL,
            DriftReason::Unknown,
            message,
        )),
        end_of_life: None,
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn api(versions: &[Result<&str, &str>]) -> Vec<(String, Result<String, String>)> {
        versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let at = if i == 0 {
                    "/version".to_owned()
                } else {
                    format!("cp-{i}")
                };
                (at, v.map(str::to_owned).map_err(str::to_owned))
            })
            .collect()
    }

    fn overrides(entries: &[(&str, &str, &str)]) -> Vec<EndOfLifeOverride> {
        entries
            .iter()
            .map(|(minor, end_of_life, reason)| EndOfLifeOverride {
                minor: (*minor).to_owned(),
                end_of_life: (*end_of_life).to_owned(),
                reason: (*reason).to_owned(),
            })
            .collect()
    }

    /// (reason, message) of the finding, if any.
    fn judge(
        versions: &[Result<&str, &str>],
        entries: &[(&str, &str, &str)],
        now: &str,
    ) -> (Option<(DriftReason, String)>, Option<EndOfLife>) {
        let observations = api(versions);
        let support = control_plane_eol(
            &ApiServers::read(&observations),
            &overrides(entries),
            at(now),
        );
        if let Some(f) = &support.finding {
            assert_eq!(
                (
                    f.namespace.as_str(),
                    f.kind.as_str(),
                    f.name.as_str(),
                    f.check.as_str()
                ),
                (
                    "",
                    "ControlPlane",
                    "kube-apiserver",
                    "version.control-plane-eol"
                )
            );
        }
        (
            support.finding.map(|f| (f.reason, f.message)),
            support.end_of_life,
        )
    }

    #[test]
    fn supported_until_the_end_of_the_last_day_utc() {
        // 1.33: last day 2026-06-28 (table, scheduled).
        let cases = [
            ("2026-06-28T23:59:59.999999999Z", None),
            (
                "2026-06-29T00:00:00Z",
                Some(
                    "1.33 reached end of life on 2026-06-28 (upstream, scheduled; release table of 2026-12-01)",
                ),
            ),
            (
                "2026-12-01T12:00:00Z",
                Some(
                    "1.33 reached end of life on 2026-06-28 (upstream, scheduled; release table of 2026-12-01)",
                ),
            ),
        ];
        for (now, want) in cases {
            let (finding, eol) = judge(&[Ok("v1.33.4-eks-1a2b3c")], &[], now);
            assert_eq!(
                finding,
                want.map(|m| (DriftReason::Violation, m.to_owned())),
                "{now}"
            );
            let eol = eol.unwrap();
            assert_eq!(eol.last_day, date(2026, 6, 28));
            assert_eq!(eol.source, EolSource::UpstreamScheduled);
            assert_eq!(eol.first_unsupported_instant(), at("2026-06-29T00:00:00Z"));
        }
    }

    #[test]
    fn actual_dates_say_so() {
        let (finding, eol) = judge(&[Ok("v1.31.14")], &[], "2026-12-01T00:00:00Z");
        assert_eq!(
            finding,
            Some((
                DriftReason::Violation,
                "1.31 reached end of life on 2025-11-11 (upstream, actual; release table of 2026-12-01)".to_owned()
            ))
        );
        assert_eq!(eol.unwrap().source.to_string(), "upstream (actual)");
    }

    #[test]
    fn the_oldest_apiserver_is_judged() {
        // 1.36 is supported, the HA peer at 1.34 is not (last day 2026-10-27).
        let (finding, eol) = judge(
            &[Ok("v1.36.3"), Ok("v1.34.1"), Err("timeout")],
            &[],
            "2026-12-01T00:00:00Z",
        );
        assert_eq!(
            finding.unwrap().1,
            "1.34 reached end of life on 2026-10-27 (upstream, scheduled; release table of 2026-12-01)"
        );
        assert_eq!(eol.unwrap().minor, KubeVersion::minor_release(1, 34));
    }

    #[test]
    fn an_override_replaces_the_table_for_its_minor_only() {
        let entries = [
            ("1.33", "2027-06-28", "EKS extended support"),
            ("1.36", "2026-01-01", "not this cluster's minor"),
        ];
        let (finding, eol) = judge(&[Ok("v1.33.4")], &entries, "2026-12-01T00:00:00Z");
        assert_eq!(finding, None);
        let eol = eol.unwrap();
        assert_eq!(eol.last_day, date(2027, 6, 28));
        assert_eq!(eol.source.to_string(), "override: EKS extended support");

        let (finding, _) = judge(&[Ok("v1.33.4")], &entries, "2027-06-29T00:00:00Z");
        assert_eq!(
            finding,
            Some((
                DriftReason::Violation,
                "1.33 reached end of life on 2027-06-28 (override: EKS extended support)"
                    .to_owned()
            ))
        );
    }

    #[test]
    fn an_override_can_also_shorten_support() {
        let entries = [("1.36", "2026-11-30", "company policy: 7 months")];
        let (finding, _) = judge(&[Ok("v1.36.3")], &entries, "2026-12-01T00:00:00Z");
        assert_eq!(
            finding.unwrap().1,
            "1.36 reached end of life on 2026-11-30 (override: company policy: 7 months)"
        );
    }

    #[test]
    fn an_override_for_a_minor_the_table_does_not_know_is_used() {
        let entries = [("1.38", "2028-02-28", "vendor preview")];
        let (finding, eol) = judge(&[Ok("v1.38.0-beta.0")], &entries, "2026-12-01T00:00:00Z");
        assert_eq!(finding, None);
        assert_eq!(eol.unwrap().last_day, date(2028, 2, 28));
    }

    #[test]
    fn an_impossible_override_date_is_unknown_naming_the_override() {
        for (end_of_life, why) in [
            ("2027-02-30", "is not a day of the calendar"),
            ("2027-13-01", "is not a day of the calendar"),
            ("2027-00-10", "is not a day of the calendar"),
            ("2027-6-28", "is not a YYYY-MM-DD date"),
            ("2027-06-28T00:00:00Z", "is not a YYYY-MM-DD date"),
            ("", "is not a YYYY-MM-DD date"),
            ("+027-06-28", "is not a YYYY-MM-DD date"),
        ] {
            let entries = [("1.33", end_of_life, "EKS extended support")];
            let (finding, eol) = judge(&[Ok("v1.33.4")], &entries, "2026-12-01T00:00:00Z");
            assert_eq!(
                finding,
                Some((
                    DriftReason::Unknown,
                    format!(
                        "kubernetesVersion.endOfLifeOverrides entry for 1.33 (\"EKS extended support\"): \
                         endOfLife {end_of_life:?} {why}"
                    )
                )),
                "{end_of_life}"
            );
            assert_eq!(eol, None);
        }
    }

    #[test]
    fn a_minor_older_than_the_table_is_past_its_end_of_life() {
        let (finding, eol) = judge(&[Ok("v1.27.16")], &[], "2026-12-01T00:00:00Z");
        assert_eq!(
            finding,
            Some((
                DriftReason::Violation,
                "1.27 is older than every release in the release table of 2026-12-01 \
                 (oldest 1.29, end of life 2025-02-28), so it is past its end of life"
                    .to_owned()
            ))
        );
        assert_eq!(eol, None);
        let (finding, _) = judge(&[Ok("v0.9.0")], &[], "2026-12-01T00:00:00Z");
        assert_eq!(finding.unwrap().0, DriftReason::Violation);
    }

    #[test]
    fn a_minor_newer_than_the_table_is_unknown_never_a_pass() {
        for version in ["v1.38.0-beta.0", "v1.38.1", "v2.0.0"] {
            let (finding, eol) = judge(&[Ok(version)], &[], "2026-12-01T00:00:00Z");
            let minor = KubeVersion::parse(version).unwrap();
            assert_eq!(
                finding,
                Some((
                    DriftReason::Unknown,
                    format!(
                        "the release table of 2026-12-01 does not know {minor}: update kube-baseline, \
                         or set kubernetesVersion.endOfLifeOverrides for {minor}"
                    )
                )),
                "{version}"
            );
            assert_eq!(eol, None);
        }
    }

    #[test]
    fn no_readable_version_is_unknown_with_the_errors() {
        let (finding, _) = judge(&[], &[], "2026-12-01T00:00:00Z");
        assert_eq!(
            finding,
            Some((
                DriftReason::Unknown,
                "no kube-apiserver version was observed".to_owned()
            ))
        );
        let (finding, _) = judge(&[Err("403 forbidden"), Ok("")], &[], "2026-12-01T00:00:00Z");
        assert_eq!(
            finding,
            Some((
                DriftReason::Unknown,
                "no kube-apiserver version could be read: /version: 403 forbidden; \
                 cp-1: \"\" is not a Kubernetes version (expected e.g. v1.36.3)"
                    .to_owned()
            ))
        );
    }

    #[test]
    fn the_first_unsupported_instant_saturates_at_the_end_of_time() {
        let eol = EndOfLife {
            minor: KubeVersion::minor_release(1, 33),
            last_day: date(9999, 12, 31),
            source: EolSource::UpstreamScheduled,
        };
        assert_eq!(eol.first_unsupported_instant(), Timestamp::MAX);
        assert!(!eol.has_passed(at("2026-12-01T00:00:00Z")));
        let leap = EndOfLife {
            last_day: date(2028, 2, 28),
            ..eol
        };
        assert_eq!(leap.first_unsupported_instant(), at("2028-02-29T00:00:00Z"));
    }
}

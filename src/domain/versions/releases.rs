//! The embedded table of upstream Kubernetes minor releases and their end of life.
//!
//! Upstream supports a minor for about 14 months (kubernetes.io/releases/patch-releases,
//! "Support period"); the end of life is the last supported day. A date is `Actual` once
//! upstream recorded the day the branch really closed (kubernetes/website
//! `data/releases/eol.yaml`, "reached End of Life on" on kubernetes.io/releases/1.N), else
//! `Scheduled` (the release page's "End Of Life Date" while the branch was supported).
//!
//! Release dates are the `Time` of the `k8s.io/kubernetes@v1.N.0` tag on the Go module proxy
//! (`go list -m -json`, queried 2026-12-01); they are not used by any check, only kept so a
//! reader can see the table is in release order. Update the table (and [`TABLE_DATE`]) with
//! every kube-baseline release; a minor newer than the newest row is `Unknown`, never a pass.

use jiff::civil::{Date, date};

/// The day this table was last checked against upstream, as shown in status and `check`.
pub const TABLE_DATE: &str = "2026-12-01";

/// [`TABLE_DATE`] as a date (a test keeps the two equal).
pub const fn table_date() -> Date {
    date(2026, 12, 1)
}

/// Whether an end-of-life date is the plan or what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EolKind {
    /// Announced while the branch was supported; the last patch may come a little later.
    Scheduled,
    /// Recorded by upstream after the branch closed.
    Actual,
}

/// One minor release `1.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The minor number of `1.minor`.
    pub minor: u32,
    /// The day `v1.minor.0` was tagged.
    pub released: Date,
    /// The last supported day (UTC).
    pub end_of_life: Date,
    pub kind: EolKind,
}

/// Upstream minor releases 1.29 to 1.37, oldest first. 1.38 exists only as a beta
/// (`v1.38.0-beta.0`, 2026-11-06 on the Go module proxy), so it is not here.
pub const RELEASES: &[Release] = &[
    // Released v1.29.0 2023-12-13T16:36:33Z. EOL: eol.yaml `1.29: endOfLifeDate 2025-02-28,
    // finalPatchRelease 1.29.14` (scheduled the same day in schedule.yaml of 2024-10).
    // v1.29.15 was still tagged 2025-03-11, after the EOL, like 1.26.15 (out of band).
    Release {
        minor: 29,
        released: date(2023, 12, 13),
        end_of_life: date(2025, 2, 28),
        kind: EolKind::Actual,
    },
    // Released v1.30.0 2024-04-17T21:00:39Z. EOL: kubernetes.io/releases/1.30 "This release
    // has reached End of Life on 2025-07-15" and eol.yaml (final 1.30.14); scheduled was
    // 2025-06-28.
    Release {
        minor: 30,
        released: date(2024, 4, 17),
        end_of_life: date(2025, 7, 15),
        kind: EolKind::Actual,
    },
    // Released v1.31.0 2024-08-13T07:28:48Z. EOL: eol.yaml `1.31: endOfLifeDate 2025-11-11,
    // finalPatchRelease 1.31.14` (v1.31.14 tagged 2025-11-12T11:37:56Z); scheduled was
    // 2025-10-28 (schedule.yaml of 2024-10).
    Release {
        minor: 31,
        released: date(2024, 8, 13),
        end_of_life: date(2025, 11, 11),
        kind: EolKind::Actual,
    },
    // Released v1.32.0 2024-12-11T21:16:15Z. EOL: no upstream page or eol.yaml entry for
    // 1.32 was reachable. 2026-02-28 follows the schedule of every minor since 1.27
    // (maintenance mode on the 28th, 12 months after release; EOL two months later) and
    // matches secondary tables ("Feb 2026"); v1.32.13 was tagged 2026-02-27T00:14:55Z.
    // UNCERTAIN: the actual day may be a little later, as for 1.30 and 1.31.
    Release {
        minor: 32,
        released: date(2024, 12, 11),
        end_of_life: date(2026, 2, 28),
        kind: EolKind::Scheduled,
    },
    // Released v1.33.0 2025-04-23T13:00:13Z. EOL: kubernetes.io/releases/1.33 "End Of Life
    // Date 2026-06-28" (maintenance from 2026-04-28); v1.33.13 tagged 2026-06-11. The
    // actual date was not found.
    Release {
        minor: 33,
        released: date(2025, 4, 23),
        end_of_life: date(2026, 6, 28),
        kind: EolKind::Scheduled,
    },
    // Released v1.34.0 2025-08-27T10:09:04Z. EOL: kubernetes.io/releases/1.34 "End Of Life
    // Date 2026-10-27" (maintenance from 2026-08-27); v1.34.12 tagged 2026-09-23. The
    // actual date was not found.
    Release {
        minor: 34,
        released: date(2025, 8, 27),
        end_of_life: date(2026, 10, 27),
        kind: EolKind::Scheduled,
    },
    // Released v1.35.0 2025-12-17T12:32:06Z. EOL: kubernetes.io/releases/1.35 "End Of Life
    // Date 2027-02-28" (maintenance from 2026-12-28).
    Release {
        minor: 35,
        released: date(2025, 12, 17),
        end_of_life: date(2027, 2, 28),
        kind: EolKind::Scheduled,
    },
    // Released v1.36.0 2026-04-22T13:51:51Z. EOL: kubernetes.io/releases/1.36 "End Of Life
    // Date 2027-06-28" (maintenance from 2027-04-28).
    Release {
        minor: 36,
        released: date(2026, 4, 22),
        end_of_life: date(2027, 6, 28),
        kind: EolKind::Scheduled,
    },
    // Released v1.37.0 2026-08-26T10:44:20Z. EOL: kubernetes.io/releases/1.37 ("Garhwal")
    // "End Of Life Date 2027-10-28" (maintenance from 2027-08-28).
    Release {
        minor: 37,
        released: date(2026, 8, 26),
        end_of_life: date(2027, 10, 28),
        kind: EolKind::Scheduled,
    },
];

/// The row of `1.minor`, if the table has one.
pub fn release(minor: u32) -> Option<&'static Release> {
    RELEASES.iter().find(|r| r.minor == minor)
}

/// The oldest and newest row (the table is never empty; a test says so).
pub fn oldest_and_newest() -> Option<(&'static Release, &'static Release)> {
    Some((RELEASES.first()?, RELEASES.last()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_date_constant_and_date_agree() {
        assert_eq!(TABLE_DATE.parse::<Date>().unwrap(), table_date());
    }

    #[test]
    fn rows_are_consecutive_minors_from_1_29_to_1_37() {
        let minors: Vec<u32> = RELEASES.iter().map(|r| r.minor).collect();
        assert_eq!(minors, (29..=37).collect::<Vec<_>>());
    }

    #[test]
    fn rows_are_in_release_order_and_end_after_release() {
        for pair in RELEASES.windows(2) {
            assert!(pair[0].released < pair[1].released, "{pair:?}");
            assert!(pair[0].end_of_life < pair[1].end_of_life, "{pair:?}");
        }
        for row in RELEASES {
            // About 14 months of support: between 12 and 16 months.
            let months = row.released.until(row.end_of_life).unwrap().get_days() / 30;
            assert!(
                (12..=16).contains(&months),
                "1.{}: {months} months",
                row.minor
            );
        }
    }

    #[test]
    fn no_release_or_actual_end_of_life_is_after_the_table_date() {
        for row in RELEASES {
            assert!(row.released <= table_date(), "1.{}", row.minor);
            if row.kind == EolKind::Actual {
                assert!(row.end_of_life <= table_date(), "1.{}", row.minor);
            }
        }
    }

    #[test]
    fn finds_rows_by_minor() {
        assert_eq!(release(33).map(|r| r.end_of_life), Some(date(2026, 6, 28)));
        assert_eq!(release(28), None);
        assert_eq!(release(38), None);
        let (oldest, newest) = oldest_and_newest().unwrap();
        assert_eq!((oldest.minor, newest.minor), (29, 37));
    }
}

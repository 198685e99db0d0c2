//! Kubernetes versions as the API reports them (`/version` gitVersion, a Node's
//! `status.nodeInfo.kubeletVersion`, a metric's `removed_release`).

use std::fmt;

/// A Kubernetes version: major, minor and, when given, patch. Vendor suffixes
/// (`-eks-abc123`, `+k3s1`, `-rc.1`) are read past and dropped.
///
/// Ordered by (major, minor, patch); the checks compare minors with [`KubeVersion::minor_of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: Option<u32>,
}

impl KubeVersion {
    /// The minor release `major.minor` (no patch).
    pub const fn minor_release(major: u32, minor: u32) -> Self {
        Self {
            major,
            minor,
            patch: None,
        }
    }

    /// Reads `^v?(\d+)\.(\d+)(?:\.(\d+))?` and ignores the rest, e.g. "v1.36.3",
    /// "v1.36.3-eks-abc123", "v1.36.3+k3s1", "1.33".
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not a Kubernetes version (expected e.g. v1.36.3)");
        let rest = text.strip_prefix('v').unwrap_or(text);
        let (major, rest) = leading_number(rest).ok_or_else(invalid)?;
        let rest = rest.strip_prefix('.').ok_or_else(invalid)?;
        let (minor, rest) = leading_number(rest).ok_or_else(invalid)?;
        // A patch is optional ("1.33"); whatever follows it is a vendor suffix.
        let patch = rest
            .strip_prefix('.')
            .and_then(leading_number)
            .map(|(p, _)| p);
        Ok(Self {
            major,
            minor,
            patch,
        })
    }

    /// This version's minor release (patch dropped), the unit of support and skew.
    pub fn minor_of(self) -> Self {
        Self::minor_release(self.major, self.minor)
    }

    /// How many minors `self` is behind `newer`; `None` across majors (the skew policy and
    /// the release table only speak of 1.x).
    pub fn minors_behind(self, newer: Self) -> Option<u32> {
        (self.major == newer.major).then(|| newer.minor.saturating_sub(self.minor))
    }
}

/// "1.36": the minor release, as Kubernetes names its release series.
impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The ASCII digits at the start of `text` as a number, and what follows them; `None`
/// without digits or when the number does not fit.
fn leading_number(text: &str) -> Option<(u32, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number = text[..end].parse().ok()?;
    Some((number, &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32, patch: Option<u32>) -> KubeVersion {
        KubeVersion {
            major,
            minor,
            patch,
        }
    }

    #[test]
    fn reads_upstream_and_vendor_versions() {
        let cases = [
            ("v1.36.3", v(1, 36, Some(3))),
            ("1.36.3", v(1, 36, Some(3))),
            ("v1.36.3-eks-abc123", v(1, 36, Some(3))),
            ("v1.36.3+k3s1", v(1, 36, Some(3))),
            ("v1.38.0-beta.0", v(1, 38, Some(0))),
            ("v1.30.14-gke.1234000", v(1, 30, Some(14))),
            ("1.33", v(1, 33, None)),
            ("v1.33-dirty", v(1, 33, None)),
            ("v1.33.", v(1, 33, None)),
            ("v1.33.x", v(1, 33, None)),
            ("v01.033.004", v(1, 33, Some(4))),
        ];
        for (text, want) in cases {
            assert_eq!(KubeVersion::parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_version_and_names_it() {
        for text in [
            "",
            "v",
            "garbage",
            "1",
            "v1",
            "v1.",
            "1.x",
            "V1.36.3",
            " v1.36.3",
            "vv1.36",
            "-1.36",
            "1,36",
            "v1.99999999999",
            "v99999999999.1",
        ] {
            let err = KubeVersion::parse(text).expect_err(text);
            assert!(err.contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn an_oversized_patch_is_dropped_not_an_error() {
        // The patch does not matter to any check; the minor does.
        assert_eq!(KubeVersion::parse("v1.36.99999999999"), Ok(v(1, 36, None)));
    }

    #[test]
    fn displays_the_minor_release() {
        assert_eq!(v(1, 36, Some(3)).to_string(), "1.36");
        assert_eq!(KubeVersion::minor_release(1, 9).to_string(), "1.9");
    }

    #[test]
    fn orders_by_major_minor_patch() {
        assert!(v(1, 9, Some(9)) < v(1, 10, None));
        assert!(v(1, 36, None) < v(1, 36, Some(0)));
        assert!(v(1, 99, None) < v(2, 0, None));
        assert_eq!(v(1, 36, Some(3)).minor_of(), v(1, 36, None));
    }

    #[test]
    fn counts_minors_behind_within_a_major_only() {
        assert_eq!(v(1, 33, None).minors_behind(v(1, 36, None)), Some(3));
        assert_eq!(v(1, 37, None).minors_behind(v(1, 36, None)), Some(0));
        assert_eq!(v(1, 36, None).minors_behind(v(2, 0, None)), None);
    }
}

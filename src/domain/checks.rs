//! The registry of stable check IDs and the CIS Kubernetes Benchmark (v1.12) IDs each covers.
//!
//! Check IDs appear in status (`drift[].check`), metrics and `check` output; they never
//! change meaning once released. Each domain module lists its own checks; [`all`] joins them.

/// One check: its stable ID, what it verifies, and the CIS Kubernetes Benchmark IDs it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckInfo {
    /// Stable semantic ID, `area.what` (e.g. `network.default-deny`).
    pub id: &'static str,
    /// One line for a human.
    pub description: &'static str,
    /// CIS Kubernetes Benchmark v1.12 recommendation IDs; empty when none applies.
    pub cis: &'static [&'static str],
}

/// Every check the product runs, in documentation order.
pub fn all() -> Vec<CheckInfo> {
    let groups: [&[CheckInfo]; 11] = [
        crate::domain::generated::CHECKS,
        crate::domain::rbac_audit::CHECKS,
        crate::domain::node::audit_policy::CHECKS,
        crate::domain::node::kubelet::CHECKS,
        crate::domain::node::api_server::CHECKS,
        crate::domain::node::control_plane::CHECKS,
        crate::domain::node::files::CHECKS,
        crate::domain::node::live::CHECKS,
        crate::domain::versions::CHECKS,
        crate::domain::tls::CHECKS,
        crate::domain::tls::gateway::CHECKS,
    ];
    groups.iter().flat_map(|g| g.iter().copied()).collect()
}

/// Looks up a check by ID.
pub fn find(id: &str) -> Option<CheckInfo> {
    all().into_iter().find(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every check has a row (or a mention) in the docs users read: README.md or
    /// docs/checks-*.md, written as `id`.
    #[test]
    fn every_check_is_documented() {
        let docs = [
            include_str!("../../README.md"),
            include_str!("../../docs/checks-rbac.md"),
            include_str!("../../docs/checks-nodes.md"),
            include_str!("../../docs/checks-versions.md"),
            include_str!("../../docs/checks-tls.md"),
        ]
        .concat();
        let missing: Vec<&str> = all()
            .iter()
            .map(|c| c.id)
            .filter(|id| !docs.contains(&format!("`{id}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "checks missing from the docs: {missing:?}"
        );
    }

    #[test]
    fn check_ids_are_unique_and_well_formed() {
        let checks = all();
        let mut ids: Vec<_> = checks.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len(), "duplicate check IDs");
        for id in ids {
            assert!(
                id.len() <= 63
                    && id.contains('.')
                    && id.chars().all(|c| c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || c == '.'
                        || c == '-'),
                "check ID {id:?} must be area.name in lowercase"
            );
        }
    }
}

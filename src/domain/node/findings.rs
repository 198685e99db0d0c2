//! Drift entries about nodes, shared by the node checks.

use crate::api::{DriftEntry, DriftReason};

/// Longest message a DriftEntry may carry (its schema's maxLength).
const MESSAGE_MAX: usize = 1024;

/// A drift entry about a node.
pub(crate) fn node_drift(
    node: &str,
    check: &str,
    reason: DriftReason,
    message: impl Into<String>,
) -> DriftEntry {
    DriftEntry {
        namespace: String::new(),
        kind: "Node".to_owned(),
        name: node.to_owned(),
        check: check.to_owned(),
        reason,
        message: truncate(message.into(), MESSAGE_MAX),
    }
}

/// Cuts a string to at most `max` characters, marking the cut.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.chars().count() > max {
        let keep: String = s.chars().take(max.saturating_sub(1)).collect();
        s = keep;
        s.push('…');
    }
    s
}

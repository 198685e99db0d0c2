//! The Gateway API checks (`gateway.networking.k8s.io` Gateways): `gateway.http-without-https`
//! (an HTTP listener serving hostnames no HTTPS listener of the same Gateway serves) and
//! `gateway.listener-refs` (a listener whose `ResolvedRefs` condition is False, or Unknown
//! while no controller has written status for the current generation).
//!
//! Gateways are custom resources that may be of any version, or malformed: each is reduced
//! from JSON one by one ([`GatewayFacts::from_json`]) and one that cannot be read becomes an
//! Unknown finding naming it, never a pass and never an error of the whole read.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::DriftReason;
use crate::domain::checks::CheckInfo;
use crate::domain::tls::Finding;
use crate::domain::tls::hosts::invalid_host;

/// The API group of Gateways.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// The versions whose Gateway fields these checks read (identical for what is read here).
pub const READ_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// Check IDs of the Gateway checks.
pub mod check_ids {
    pub const HTTP_WITHOUT_HTTPS: &str = "gateway.http-without-https";
    pub const LISTENER_REFS: &str = "gateway.listener-refs";
}

/// The Gateway checks, for the registry.
pub const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        id: check_ids::HTTP_WITHOUT_HTTPS,
        description: "Every hostname an HTTP listener of a Gateway serves is served by an HTTPS listener of the same Gateway",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::LISTENER_REFS,
        description: "Every Gateway listener's references (certificates) resolved, as its controller reports in status",
        cis: &[],
    },
];

/// A Gateway, as far as the checks need it (the controller's cache holds this, not the
/// object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// What the checks read, or why the object could not be read.
    pub content: Result<GatewayContent, String>,
}

/// The parts of a readable Gateway the checks use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayContent {
    /// `metadata.generation` (absent in a manifest).
    pub generation: Option<i64>,
    pub listeners: Vec<Listener>,
    /// `status.listeners[]`, by listener name: each one's `ResolvedRefs` condition, if any.
    pub listener_status: BTreeMap<String, Option<Condition>>,
}

/// `spec.listeners[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub protocol: String,
    /// None: every hostname.
    pub hostname: Option<String>,
}

/// One status condition, without its timestamp (a rewrite of the same condition is no
/// change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub status: String,
    pub reason: String,
    pub message: String,
    pub observed_generation: Option<i64>,
}

impl GatewayFacts {
    /// Reads a Gateway (as the API server or a manifest has it). Never fails: what cannot be
    /// read is kept as the reason in `content`.
    pub fn from_json(object: &Value) -> Self {
        let metadata = object.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let labels = metadata
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            name,
            labels,
            content: read_content(object),
        }
    }
}

fn read_content(object: &Value) -> Result<GatewayContent, String> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let read = api_version
        .strip_prefix(GROUP)
        .and_then(|v| v.strip_prefix('/'))
        .is_some_and(|v| READ_VERSIONS.contains(&v));
    if !read {
        return Err(format!(
            "apiVersion {api_version:?} is not read (only {GROUP}/v1 and {GROUP}/v1beta1 are)"
        ));
    }
    let generation = match object.pointer("/metadata/generation") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_i64()
                .ok_or_else(|| format!("metadata.generation is not an integer: {value}"))?,
        ),
    };
    let listeners = array(object, "/spec/listeners")?
        .iter()
        .enumerate()
        .map(|(i, listener)| read_listener(i, listener))
        .collect::<Result<Vec<_>, _>>()?;
    if listeners.is_empty() {
        return Err("spec.listeners is missing or empty".to_owned());
    }
    let listener_status = array(object, "/status/listeners")?
        .iter()
        .enumerate()
        .map(|(i, status)| read_listener_status(i, status))
        .collect::<Result<_, _>>()?;
    Ok(GatewayContent {
        generation,
        listeners,
        listener_status,
    })
}

/// The array at `pointer`; empty when absent or null.
fn array<'a>(object: &'a Value, pointer: &str) -> Result<&'a [Value], String> {
    match object.pointer(pointer) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(format!("{} is not a list: {other}", field_path(pointer))),
    }
}

fn field_path(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

/// The string at `key` of `item`, if present; an error naming `what` when not a string.
fn string(item: &Value, key: &str, what: &str) -> Result<Option<String>, String> {
    match item.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{what}.{key} is not a string: {other}")),
    }
}

fn read_listener(index: usize, listener: &Value) -> Result<Listener, String> {
    let what = format!("spec.listeners[{index}]");
    let required = |key| {
        string(listener, key, &what)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{what}.{key} is missing"))
    };
    Ok(Listener {
        name: required("name")?,
        protocol: required("protocol")?,
        hostname: string(listener, "hostname", &what)?,
    })
}

fn read_listener_status(
    index: usize,
    status: &Value,
) -> Result<(String, Option<Condition>), String> {
    let what = format!("status.listeners[{index}]");
    let name = string(status, "name", &what)?.ok_or_else(|| format!("{what}.name is missing"))?;
    let conditions = match status.get("conditions") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("{what}.conditions is not a list: {other}")),
    };
    let resolved_refs = conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("ResolvedRefs"));
    let condition = resolved_refs
        .map(|c| read_condition(c, &format!("{what}.conditions[ResolvedRefs]")))
        .transpose()?;
    Ok((name, condition))
}

fn read_condition(condition: &Value, what: &str) -> Result<Condition, String> {
    let observed_generation = match condition.get("observedGeneration") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_i64()
                .ok_or_else(|| format!("{what}.observedGeneration is not an integer: {value}"))?,
        ),
    };
    Ok(Condition {
        status: string(condition, "status", what)?.unwrap_or_default(),
        reason: string(condition, "reason", what)?.unwrap_or_default(),
        message: string(condition, "message", what)?.unwrap_or_default(),
        observed_generation,
    })
}

/// Whether an HTTPS listener's hostname (`None`: every hostname) serves every request an
/// HTTP listener's hostname (`None`: every hostname) accepts. Gateway API listener
/// semantics (gateway-api `Listener.hostname`): `*.example.com` matches `test.example.com`
/// and `foo.test.example.com` (any number of labels), not `example.com`. A wildcard HTTP
/// hostname is served only by a wildcard whose suffix contains its own.
pub fn https_serves(https: Option<&str>, http: Option<&str>) -> bool {
    let (Some(https), Some(http)) = (https, http) else {
        return https.is_none();
    };
    if https.eq_ignore_ascii_case(http) {
        return true;
    }
    let Some(suffix) = https.strip_prefix("*.") else {
        return false;
    };
    let http_suffix = http.strip_prefix("*.");
    let host = http_suffix.unwrap_or(http);
    let dotted = format!(".{}", suffix.to_ascii_lowercase());
    let host = host.to_ascii_lowercase();
    match http_suffix {
        // `*.a.example.com` is within `*.example.com`; `*.example.com` within itself (above).
        Some(_) => host.ends_with(&dotted),
        // At least one label to the left of the suffix.
        None => host.len() > dotted.len() && host.ends_with(&dotted),
    }
}

/// The findings of one Gateway (before exemptions).
pub fn evaluate_gateway(namespace: &str, gateway: &GatewayFacts) -> Vec<Finding> {
    let object = format!("Gateway {namespace}/{}", gateway.name);
    match &gateway.content {
        Err(why) => [check_ids::HTTP_WITHOUT_HTTPS, check_ids::LISTENER_REFS]
            .into_iter()
            .map(|check| {
                Finding::new(
                    check,
                    DriftReason::Unknown,
                    None,
                    format!("{object} cannot be read: {why}"),
                )
            })
            .collect(),
        Ok(content) => content
            .listeners
            .iter()
            .filter_map(|listener| http_finding(&object, content, listener))
            .chain(
                content
                    .listeners
                    .iter()
                    .filter_map(|listener| refs_finding(&object, content, listener)),
            )
            .collect(),
    }
}

fn http_finding(object: &str, content: &GatewayContent, listener: &Listener) -> Option<Finding> {
    if !listener.protocol.eq_ignore_ascii_case("HTTP") {
        return None;
    }
    let hostname = listener.hostname.as_deref();
    let finding = |reason, message| {
        Some(Finding::new(
            check_ids::HTTP_WITHOUT_HTTPS,
            reason,
            hostname.map(str::to_owned),
            message,
        ))
    };
    if let Some(why) = hostname.and_then(invalid_host) {
        return finding(
            DriftReason::Unknown,
            format!(
                "{object}: listener {} hostname {why}, so the API server would reject it",
                listener.name
            ),
        );
    }
    let https: Vec<Option<&str>> = content
        .listeners
        .iter()
        .filter(|l| l.protocol.eq_ignore_ascii_case("HTTPS"))
        .map(|l| l.hostname.as_deref())
        .collect();
    if https.iter().any(|served| https_serves(*served, hostname)) {
        return None;
    }
    let served = if https.is_empty() {
        "the Gateway has no HTTPS listener".to_owned()
    } else {
        format!(
            "its HTTPS listeners serve only {}",
            https
                .iter()
                .map(|h| h.unwrap_or("(every hostname)"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    finding(
        DriftReason::Violation,
        format!(
            "{object}: HTTP listener {} serves {} over plain HTTP with no HTTPS listener of the same Gateway to redirect to ({served})",
            listener.name,
            hostname.map_or("every hostname".to_owned(), |h| format!("hostname {h}")),
        ),
    )
}

fn refs_finding(object: &str, content: &GatewayContent, listener: &Listener) -> Option<Finding> {
    let finding = |reason, message| {
        Some(Finding::new(
            check_ids::LISTENER_REFS,
            reason,
            listener.hostname.clone(),
            message,
        ))
    };
    let prefix = format!("{object}: listener {}", listener.name);
    let Some(status) = content.listener_status.get(&listener.name) else {
        return finding(
            DriftReason::Unknown,
            format!("{prefix} has no status: no Gateway controller has reported on it"),
        );
    };
    let Some(condition) = status else {
        return finding(
            DriftReason::Unknown,
            format!("{prefix} has no ResolvedRefs condition in status"),
        );
    };
    if let Some(generation) = content.generation
        && condition.observed_generation.is_none_or(|o| o < generation)
    {
        return finding(
            DriftReason::Unknown,
            format!(
                "{prefix}: the ResolvedRefs condition is of generation {}, not the current {generation}: no controller has reported on this spec yet",
                condition
                    .observed_generation
                    .map_or("(none)".to_owned(), |o| o.to_string())
            ),
        );
    }
    match condition.status.as_str() {
        "True" => None,
        "False" => finding(
            DriftReason::Violation,
            format!(
                "{prefix}: references not resolved ({}): {}",
                condition.reason, condition.message
            ),
        ),
        other => finding(
            DriftReason::Unknown,
            format!(
                "{prefix}: ResolvedRefs is {other:?} ({}): {}",
                condition.reason, condition.message
            ),
        ),
    }
}

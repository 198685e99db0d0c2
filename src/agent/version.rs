//! The version of this node's own kube-apiserver (`apiServer.version` of the NodeReport), for
//! `version.apiserver-skew`. Nothing in the Kubernetes API carries one version per
//! kube-apiserver, a GET through the Service reaches one of them, and release binaries are
//! built with `-trimpath`, so their files do not tell either: the agent asks the process it
//! observed (docs/checks-versions.md, "Where the versions come from").
//!
//! - Where: `https://<--bind-address>:<--secure-port>/version` ([`address`]). When
//!   `--bind-address` is unspecified (`0.0.0.0`, `::`, empty) the kube-apiserver listens on
//!   every address of the node, and the agent, which runs in the pod network, asks the node's
//!   IP (`--host-ip`, `KB_HOST_IP` from the downward API `status.hostIP`), else 127.0.0.1.
//! - Trust: exactly the leaf certificate of that process's serving certificate
//!   (`--tls-cert-file`, else the one it generates in `--cert-dir`), read from the host on
//!   every pass ([`PinnedLeaf`]): another kube-apiserver on the same host, a load balancer or
//!   anything else listening there cannot answer for it, even with a certificate of the same
//!   CA. Name and validity period are not judged: the pin is the identity.
//! - Who: the agent's own credentials (its kubeconfig, or its ServiceAccount token in a
//!   pod); `/version` is readable by every authenticated client (the bootstrap ClusterRole
//!   `system:public-info-viewer`), so no RBAC is added.
//! - Failure never stops the agent: the version stays empty and `versionMessage` says why.
//!   Messages carry no timings or ports picked by the OS, so an unchanged failure does not
//!   rewrite the report.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use rustls::pki_types::CertificateDer;

use super::host::Host;
use super::server_cert::{Accepts, CheckedServer};
use crate::api::{ApiServerObservation, ObservationState};
use crate::domain::node::findings::truncate;
use crate::domain::node::flags::ProcessFlags;

/// The kube-apiserver's `--secure-port` when the flag is not given.
pub const DEFAULT_SECURE_PORT: u16 = 6443;
/// How long one GET /version may take, connection and TLS handshake included.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The longest version a NodeReport holds (its schema's maxLength).
const VERSION_MAX: usize = 64;
/// The longest versionMessage (its schema's maxLength).
const MESSAGE_MAX: usize = 1024;

/// Where to ask one kube-apiserver, and the only certificate it may answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionProbe {
    /// Its address and port.
    pub address: SocketAddr,
    /// Its serving certificate file (host path), for messages.
    pub cert_path: String,
    /// The DER of the first certificate in that file: the leaf it serves.
    pub leaf: Vec<u8>,
}

/// Where the kube-apiserver of `flags` serves HTTPS, as seen from the agent: its
/// `--bind-address` when that is one address, else `host_ip` (the node's IP), else
/// 127.0.0.1; its `--secure-port`, else 6443.
pub fn address(flags: &ProcessFlags, host_ip: Option<&str>) -> Result<SocketAddr, String> {
    let port = match flags.get("secure-port").map(str::trim) {
        None | Some("") => DEFAULT_SECURE_PORT,
        Some(text) => match text.parse::<u16>() {
            Ok(0) => {
                return Err("--secure-port=0: the kube-apiserver serves no HTTPS to ask".to_owned());
            }
            Ok(port) => port,
            Err(_) => return Err(format!("--secure-port={text} is not a port number")),
        },
    };
    let bind = flags.get("bind-address").map(str::trim).unwrap_or_default();
    let ip = if bind.is_empty() {
        None
    } else {
        let ip: IpAddr = bind
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("--bind-address={bind} is not an IP address"))?;
        (!ip.is_unspecified()).then_some(ip)
    };
    let ip = match (ip, host_ip.map(str::trim).filter(|h| !h.is_empty())) {
        (Some(ip), _) => ip,
        (None, Some(host_ip)) => host_ip
            .parse()
            .map_err(|_| format!("the node IP {host_ip:?} (KB_HOST_IP) is not an IP address"))?,
        (None, None) => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    Ok(SocketAddr::new(ip, port))
}

/// The serving certificate file of the kube-apiserver of `flags` (a host path): its
/// `--tls-cert-file`, else the self-signed one it generates in `--cert-dir`.
pub fn serving_cert_path(flags: &ProcessFlags) -> String {
    match flags.get("tls-cert-file").filter(|f| !f.is_empty()) {
        Some(file) => file.to_owned(),
        None => {
            let dir = flags
                .get("cert-dir")
                .filter(|d| !d.is_empty())
                .unwrap_or("/var/run/kubernetes");
            format!("{}/apiserver.crt", dir.trim_end_matches('/'))
        }
    }
}

/// The DER of the first certificate of PEM text: the leaf, when the file is a chain.
pub fn leaf_certificate(pem_text: &str) -> Option<Vec<u8>> {
    pem::parse_many(pem_text)
        .ok()?
        .into_iter()
        .find(|block| block.tag() == "CERTIFICATE")
        .map(|block| block.contents().to_vec())
}

/// How to ask the kube-apiserver run with `args` on this host, or why it cannot be asked.
pub fn probe(host: &Host, args: &[String], host_ip: Option<&str>) -> Result<VersionProbe, String> {
    let flags = ProcessFlags::parse(args);
    let address = address(&flags, host_ip)?;
    let cert_path = serving_cert_path(&flags);
    let text = host
        .read_text(&cert_path)
        .map_err(|err| format!("cannot read the serving certificate to trust: {err}"))?;
    let leaf = leaf_certificate(&text)
        .ok_or_else(|| format!("serving certificate {cert_path} holds no PEM certificate"))?;
    Ok(VersionProbe {
        address,
        cert_path,
        leaf,
    })
}

/// Why a kube-apiserver's version could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// No client could be built from the agent's configuration.
    #[error("cannot build a client for https://{address}/version: {message}")]
    Client {
        /// Where it was to ask.
        address: SocketAddr,
        /// The cause, with its sources.
        message: String,
    },
    /// Something answered with another certificate than the pinned one.
    #[error(
        "https://{address} answered with another certificate than the kube-apiserver's own \
         {cert_path}: not asked"
    )]
    NotPinned {
        /// Where it asked.
        address: SocketAddr,
        /// The pinned certificate's file.
        cert_path: String,
    },
    /// The request failed (connection, TLS, HTTP status).
    #[error("GET https://{address}/version failed: {message}")]
    Request {
        /// Where it asked.
        address: SocketAddr,
        /// The cause, with its sources.
        message: String,
    },
    /// No answer in time.
    #[error("GET https://{address}/version: no answer within {} s", TIMEOUT.as_secs())]
    Timeout {
        /// Where it asked.
        address: SocketAddr,
    },
    /// An answer without a gitVersion.
    #[error("GET https://{address}/version answered no gitVersion")]
    NoGitVersion {
        /// Where it asked.
        address: SocketAddr,
    },
}

/// An error and its sources, "outer: inner: innermost", without repeating a source whose
/// text the outer one already contains (hyper's "client error (Connect)" says little alone).
fn with_sources(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = cause.source();
    }
    text
}

/// Asks the kube-apiserver of `probe` for its gitVersion with the credentials of `config`,
/// trusting only the pinned certificate, within [`TIMEOUT`].
pub async fn read_version(
    config: &kube::Config,
    probe: &VersionProbe,
) -> Result<String, VersionError> {
    let address = probe.address;
    let (client, verifier) = client(config, probe).map_err(|err| VersionError::Client {
        address,
        message: with_sources(&err),
    })?;
    let request = http::Request::get("/version")
        .body(Vec::new())
        .map_err(|err| VersionError::Client {
            address,
            message: err.to_string(),
        })?;
    let answer = tokio::time::timeout(TIMEOUT, client.request_text(request)).await;
    if verifier.rejected() {
        return Err(VersionError::NotPinned {
            address,
            cert_path: probe.cert_path.clone(),
        });
    }
    let text = answer
        .map_err(|_| VersionError::Timeout { address })?
        .map_err(|err| VersionError::Request {
            address,
            message: with_sources(&err),
        })?;
    git_version(&text).ok_or(VersionError::NoGitVersion { address })
}

/// The gitVersion of a `/version` answer.
fn git_version(answer: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(answer).ok()?;
    value
        .get("gitVersion")
        .and_then(serde_json::Value::as_str)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// A client like the agent's own (credentials, impersonation, headers) for the address of
/// `probe`, directly (never through a proxy), that trusts the pinned certificate only; and
/// that pin's verifier.
fn client(
    config: &kube::Config,
    probe: &VersionProbe,
) -> Result<(kube::Client, Arc<PinnedLeaf>), kube::Error> {
    let mut config = config.clone();
    config.cluster_url = format!("https://{}", probe.address)
        .parse()
        .map_err(|err: http::uri::InvalidUri| kube::Error::HttpError(err.into()))?;
    config.proxy_url = None;
    config.tls_server_name = None;
    // The agent's TLS client settings (its client certificate, if it authenticates with
    // one), with the server verified against the pin alone.
    let mut tls = config.rustls_client_config()?;
    let verifier = Arc::new(PinnedLeaf::new(
        SameLeaf(CertificateDer::from(probe.leaf.clone())),
        tls.crypto_provider().signature_verification_algorithms,
    ));
    tls.dangerous().set_certificate_verifier(verifier.clone());
    // No connect timeout of its own: the caller's one deadline gives one message.
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnector::from((http, Arc::new(tls)));
    let hyper: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok((
        kube::Client::new(service, config.default_namespace),
        verifier,
    ))
}

/// Accepts exactly the leaf certificate the kube-apiserver presented at the first pass.
#[derive(Debug)]
pub struct SameLeaf(pub CertificateDer<'static>);

impl Accepts for SameLeaf {
    fn accepts(&self, end_entity: &CertificateDer<'_>, _: &[CertificateDer<'_>]) -> bool {
        end_entity.as_ref() == self.0.as_ref()
    }
}

/// The verifier of the pinned kube-apiserver: another certificate is rejected and remembered.
pub type PinnedLeaf = CheckedServer<SameLeaf>;

/// Puts what was read into the kube-apiserver observation (only an Observed one: a
/// kube-apiserver that could not be observed has no version to speak of), within the
/// schema's bounds.
pub fn record(api: &mut ApiServerObservation, read: Result<String, String>) {
    if api.header.state != ObservationState::Observed {
        return;
    }
    let (version, message) = match read {
        Ok(version) if version.chars().count() <= VERSION_MAX => (version, String::new()),
        Ok(version) => (
            String::new(),
            truncate(
                format!(
                    "the answered gitVersion is longer than {VERSION_MAX} characters: {version}"
                ),
                MESSAGE_MAX,
            ),
        ),
        Err(why) => (String::new(), truncate(why, MESSAGE_MAX)),
    };
    api.version = version;
    api.version_message = message;
}

#[cfg(test)]
mod tests;

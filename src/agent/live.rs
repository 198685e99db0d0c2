//! The live probes' I/O: one request without credentials to this node's kube-apiserver and
//! to the etcd it uses (`apiServer.anonymousProbe`, `apiServer.etcdProbe` of the NodeReport).
//! The verdicts are in `domain::node::live`; here only what happened is recorded.
//!
//! - kube-apiserver: GET /api/v1/namespaces at the address [`super::version`] asks (its
//!   `--bind-address`, else the node's IP, else 127.0.0.1, and `--secure-port`), trusting
//!   only its own serving certificate (the same pin), with no client certificate and no
//!   token.
//! - etcd: the first usable URL of the kube-apiserver's `--etcd-servers`, else etcd's
//!   `--advertise-client-urls`, `--listen-client-urls` ([`etcd_endpoint`]). TLS without a
//!   client certificate; the server is not verified by name (only whether it demands a
//!   certificate is tested) but, when the kube-apiserver's `--etcd-cafile` is readable, its
//!   certificate must chain to that CA, so another server on the port cannot answer for
//!   etcd. Then GET /version: with TLS 1.3 the client's handshake completes before etcd
//!   checks the (missing) certificate, so only the request shows the refusal.
//! - Every probe ends within [`TIMEOUT`]: a hung endpoint cannot stall a report. Messages
//!   carry no timings or OS-picked ports, so an unchanged outcome does not rewrite the report.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::host::Host;
use super::membership::ClusterCa;
use super::server_cert::{Accepts, CheckedServer};
use super::version::{PinnedLeaf, SameLeaf, VersionProbe};
use crate::api::{ApiServerObservation, LiveProbe, ObservationState, ProbeOutcome};
use crate::domain::node::findings::truncate;
use crate::domain::node::flags::ProcessFlags;

/// How long one probe may take, connection, handshake and answer included.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// etcd's client port when a URL gives none.
const ETCD_DEFAULT_PORT: u16 = 2379;
/// The path asked of the kube-apiserver: one anonymous must not read.
pub const ANONYMOUS_PATH: &str = "/api/v1/namespaces";
/// The path asked of etcd.
pub const ETCD_PATH: &str = "/version";
const URL_MAX: usize = 512;
const MESSAGE_MAX: usize = 1024;

/// Where etcd is asked, and what it must prove to be etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTarget {
    /// https (TLS) or plain http.
    pub https: bool,
    /// Its address and port.
    pub address: SocketAddr,
    /// The CA its serving certificate must chain to (the kube-apiserver's --etcd-cafile),
    /// when readable.
    pub ca: Option<ClusterCa>,
}

impl EtcdTarget {
    /// The URL asked, for the report.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{ETCD_PATH}", self.address)
    }
}

/// One etcd client URL: scheme and address, or why it cannot be used.
fn parse_url(url: &str, host_ip: Option<IpAddr>) -> Result<(bool, SocketAddr), String> {
    let url = url.trim();
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("{url}: not an http(s) URL"));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    // [v6]:port, v4:port, host:port, or a host alone.
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => return Err(format!("{url}: unbalanced [ in the address")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some("") => ETCD_DEFAULT_PORT,
        Some(text) => text
            .parse::<u16>()
            .map_err(|_| format!("{url}: {text} is not a port"))?,
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        // A DNS name is not resolved: the agent asks addresses it can tell apart.
        host.parse::<IpAddr>()
            .map_err(|_| format!("{url}: {host} is not an IP address"))?
    };
    let ip = if ip.is_unspecified() {
        host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    } else {
        ip
    };
    Ok((https, SocketAddr::new(ip, port)))
}

/// Where to ask etcd: the URLs of the kube-apiserver's `--etcd-servers`, then etcd's
/// `--advertise-client-urls` and `--listen-client-urls`. With `host_ip` (the agent runs in
/// the pod network, where 127.0.0.1 is its own) the first URL off loopback is preferred;
/// else the first usable one.
pub fn etcd_endpoint(
    api_flags: &ProcessFlags,
    etcd_flags: Option<&ProcessFlags>,
    host_ip: Option<&str>,
) -> Result<(bool, SocketAddr), String> {
    let host_ip: Option<IpAddr> = host_ip.and_then(|h| h.trim().parse().ok());
    let mut urls: Vec<&str> = Vec::new();
    for value in [
        api_flags.get("etcd-servers"),
        etcd_flags.and_then(|f| f.get("advertise-client-urls")),
        etcd_flags.and_then(|f| f.get("listen-client-urls")),
    ]
    .into_iter()
    .flatten()
    {
        urls.extend(value.split(',').map(str::trim).filter(|u| !u.is_empty()));
    }
    if urls.is_empty() {
        return Err(
            "no etcd client URL: the kube-apiserver has no --etcd-servers and no etcd process with --listen-client-urls runs here"
                .to_owned(),
        );
    }
    let mut usable = Vec::new();
    let mut problems = Vec::new();
    for url in urls {
        match parse_url(url, host_ip) {
            Ok(found) => usable.push(found),
            Err(problem) => problems.push(problem),
        }
    }
    let preferred = host_ip
        .and_then(|_| usable.iter().find(|(_, a)| !a.ip().is_loopback()))
        .or_else(|| usable.first());
    preferred
        .copied()
        .ok_or_else(|| format!("no usable etcd client URL: {}", problems.join("; ")))
}

/// How to probe etcd from the flags of the kube-apiserver (`api_args`) and of etcd (if it
/// runs here), reading the kube-apiserver's `--etcd-cafile`.
pub fn etcd_target(
    host: &Host,
    api_args: &[String],
    etcd_args: Option<&[String]>,
    host_ip: Option<&str>,
) -> Result<EtcdTarget, String> {
    let api_flags = ProcessFlags::parse(api_args);
    let etcd_flags = etcd_args.map(ProcessFlags::parse);
    let (https, address) = etcd_endpoint(&api_flags, etcd_flags.as_ref(), host_ip)?;
    let ca = api_flags
        .get("etcd-cafile")
        .filter(|f| !f.is_empty())
        .and_then(|path| host.read_text(path).ok())
        .and_then(|pem| ClusterCa::from_pem(&pem));
    Ok(EtcdTarget { https, address, ca })
}

/// What to probe, found by the synchronous pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivePlan {
    /// etcd, or why it cannot be probed.
    pub etcd: Result<EtcdTarget, String>,
}

/// Which probes to send (from the baselines' `controlPlane.liveProbes`, or --live-probes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wanted {
    /// The kube-apiserver without credentials.
    pub anonymous: bool,
    /// etcd without a client certificate.
    pub etcd: bool,
}

impl Wanted {
    /// Both probes.
    pub const ALL: Self = Self {
        anonymous: true,
        etcd: true,
    };

    /// What the baselines ask for: a probe any of them wants.
    pub fn of<'a>(specs: impl IntoIterator<Item = &'a crate::api::SecurityBaselineSpec>) -> Self {
        let mut wanted = Self::default();
        for live in specs
            .into_iter()
            .filter_map(|s| s.control_plane.as_ref()?.live_probes.as_ref())
        {
            wanted.anonymous |= live.anonymous_request;
            wanted.etcd |= live.etcd_client_certificate;
        }
        wanted
    }
}

/// Sends the wanted probes and records what happened in the kube-apiserver observation
/// (only an Observed one).
pub async fn probe_all(
    api: &mut ApiServerObservation,
    wanted: Wanted,
    anonymous: Option<&Result<VersionProbe, String>>,
    plan: Option<&LivePlan>,
) {
    if api.header.state != ObservationState::Observed {
        return;
    }
    if wanted.anonymous {
        api.anonymous_probe = bounded(match anonymous {
            None => failed(String::new(), "no kube-apiserver to ask".to_owned()),
            Some(Err(why)) => failed(String::new(), why.clone()),
            Some(Ok(target)) => probe_anonymous(target).await,
        });
    }
    if wanted.etcd {
        api.etcd_probe = bounded(match plan.map(|p| &p.etcd) {
            None => failed(String::new(), "no etcd endpoint to ask".to_owned()),
            Some(Err(why)) => failed(String::new(), why.clone()),
            Some(Ok(target)) => probe_etcd(target).await,
        });
    }
}

fn bounded(probe: LiveProbe) -> LiveProbe {
    LiveProbe {
        url: truncate(probe.url, URL_MAX),
        message: truncate(probe.message, MESSAGE_MAX),
        ..probe
    }
}

fn failed(url: String, message: String) -> LiveProbe {
    LiveProbe {
        outcome: ProbeOutcome::Failed,
        url,
        status: None,
        message,
    }
}

/// GET /api/v1/namespaces without credentials, trusting only the pinned serving certificate.
pub async fn probe_anonymous(target: &VersionProbe) -> LiveProbe {
    let url = format!("https://{}{ANONYMOUS_PATH}", target.address);
    let verifier = Arc::new(PinnedLeaf::new(
        SameLeaf(CertificateDer::from(target.leaf.clone())),
        algorithms(),
    ));
    let outcome = request(target.address, Some(verifier.clone()), ANONYMOUS_PATH).await;
    if verifier.rejected() {
        return failed(
            url,
            format!(
                "it answered with another certificate than the kube-apiserver's own {}: not asked",
                target.cert_path
            ),
        );
    }
    outcome.into_probe(url)
}

/// GET /version without a client certificate (over TLS when the URL is https).
pub async fn probe_etcd(target: &EtcdTarget) -> LiveProbe {
    let url = target.url();
    if !target.https {
        return match request(target.address, None, ETCD_PATH).await {
            Exchange::Answered(status) => LiveProbe {
                outcome: ProbeOutcome::Plaintext,
                url,
                status: Some(status),
                message: "plain http: no TLS, so no client certificate either".to_owned(),
            },
            // A plain endpoint that does not answer says nothing about certificates.
            Exchange::Refused(why) | Exchange::Failed(why) => {
                failed(url, format!("plain http, no answer: {why}"))
            }
        };
    }
    let verifier = Arc::new(CheckedServer::new(
        IssuedByCa(target.ca.clone()),
        algorithms(),
    ));
    let outcome = request(target.address, Some(verifier.clone()), ETCD_PATH).await;
    if verifier.rejected() {
        return failed(
            url,
            "it answered with a certificate not issued by the kube-apiserver's --etcd-cafile: not this cluster's etcd".to_owned(),
        );
    }
    outcome.into_probe(url)
}

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Exchange {
    /// An HTTP status line.
    Answered(u16),
    /// A TLS alert or a closed connection before any answer.
    Refused(String),
    /// No connection, no TLS, no answer in time, or not HTTP.
    Failed(String),
}

impl Exchange {
    fn into_probe(self, url: String) -> LiveProbe {
        match self {
            Self::Answered(status) => LiveProbe {
                outcome: ProbeOutcome::Answered,
                url,
                status: Some(status),
                message: String::new(),
            },
            Self::Refused(message) => LiveProbe {
                outcome: ProbeOutcome::Refused,
                url,
                status: None,
                message,
            },
            Self::Failed(message) => failed(url, message),
        }
    }
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// One GET of `path` at `address` (TLS with `verifier` and no client certificate, else
/// plain), within [`TIMEOUT`].
async fn request(
    address: SocketAddr,
    verifier: Option<Arc<dyn ServerCertVerifier>>,
    path: &str,
) -> Exchange {
    match tokio::time::timeout(TIMEOUT, exchange(address, verifier, path)).await {
        Ok(exchange) => exchange,
        Err(_) => Exchange::Failed(format!("no answer within {} s", TIMEOUT.as_secs())),
    }
}

async fn exchange(
    address: SocketAddr,
    verifier: Option<Arc<dyn ServerCertVerifier>>,
    path: &str,
) -> Exchange {
    let tcp = match TcpStream::connect(address).await {
        Ok(tcp) => tcp,
        Err(err) => return Exchange::Failed(format!("cannot connect: {err}")),
    };
    let Some(verifier) = verifier else {
        return http_get(tcp, address, path).await;
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
        Err(err) => return Exchange::Failed(format!("cannot set up TLS: {err}")),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match connector
        .connect(ServerName::IpAddress(address.ip().into()), tcp)
        .await
    {
        Ok(tls) => http_get(tls, address, path).await,
        // TLS 1.2: a server that demands a certificate fails the handshake itself.
        Err(err) => match alert(&err) {
            Some(alert) => Exchange::Refused(format!("TLS handshake refused: {alert}")),
            None => Exchange::Failed(format!("TLS handshake failed: {err}")),
        },
    }
}

/// The TLS alert the server sent, if that is what `err` is.
fn alert(err: &std::io::Error) -> Option<String> {
    match err.get_ref()?.downcast_ref::<rustls::Error>()? {
        alert @ rustls::Error::AlertReceived(_) => Some(alert.to_string()),
        _ => None,
    }
}

/// Sends the request and reads the status line.
async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    address: SocketAddr,
    path: &str,
) -> Exchange {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: kube-baseline-agent\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    if let Err(err) = stream.write_all(request.as_bytes()).await {
        return refused_or_failed(&err, "sending the request");
    }
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 512];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buffer[..n]);
                if answer.windows(2).any(|w| w == b"\r\n") || answer.len() > 4096 {
                    break;
                }
            }
            Err(err) => {
                if answer.is_empty() {
                    return refused_or_failed(&err, "reading the answer");
                }
                break;
            }
        }
    }
    if answer.is_empty() {
        return Exchange::Refused("the server closed the connection without answering".to_owned());
    }
    match status_of(&answer) {
        Some(status) => Exchange::Answered(status),
        None => Exchange::Failed("the answer is not HTTP".to_owned()),
    }
}

/// After the handshake, a TLS alert or a reset is the server refusing the client (TLS 1.3
/// sends "certificate required" here); anything else says nothing.
fn refused_or_failed(err: &std::io::Error, doing: &str) -> Exchange {
    use std::io::ErrorKind;
    if let Some(alert) = alert(err) {
        return Exchange::Refused(format!("refused after the handshake: {alert}"));
    }
    match err.kind() {
        ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe => {
            Exchange::Refused(format!("the server closed the connection ({doing}): {err}"))
        }
        _ => Exchange::Failed(format!("{doing}: {err}")),
    }
}

/// The status of an HTTP/1.x status line ("HTTP/1.1 401 Unauthorized").
fn status_of(answer: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(answer);
    let line = text.lines().next()?;
    let mut words = line.split_whitespace();
    let version = words.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let status: u16 = words.next()?.parse().ok()?;
    (100..=599).contains(&status).then_some(status)
}

/// Accepts any server certificate when no CA is known (only whether the server demands a
/// client certificate is tested), else one issued by the CA.
#[derive(Debug)]
struct IssuedByCa(Option<ClusterCa>);

impl Accepts for IssuedByCa {
    fn accepts(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> bool {
        let Some(ca) = &self.0 else {
            return true;
        };
        let mut chain = vec![end_entity.clone()];
        chain.extend(intermediates.iter().cloned());
        ca.issued_chain(&chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> ProcessFlags {
        ProcessFlags::parse(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn the_kube_apiservers_etcd_servers_come_first() {
        let api = flags(&["--etcd-servers=https://127.0.0.1:2379,https://10.0.0.2:2379"]);
        let etcd = flags(&["--listen-client-urls=https://10.0.0.9:2379"]);
        assert_eq!(
            etcd_endpoint(&api, Some(&etcd), None),
            Ok((true, addr("127.0.0.1:2379")))
        );
        // In the pod network the agent's 127.0.0.1 is its own: off loopback first.
        assert_eq!(
            etcd_endpoint(&api, Some(&etcd), Some("10.0.0.2")),
            Ok((true, addr("10.0.0.2:2379")))
        );
    }

    #[test]
    fn etcds_own_urls_without_etcd_servers_with_defaults_and_unspecified_addresses() {
        let api = flags(&[]);
        let etcd = flags(&["--listen-client-urls=http://0.0.0.0,https://[::1]:2400"]);
        assert_eq!(
            etcd_endpoint(&api, Some(&etcd), Some("10.0.0.3")),
            Ok((false, addr("10.0.0.3:2379")))
        );
        assert_eq!(
            etcd_endpoint(&api, Some(&etcd), None),
            Ok((false, addr("127.0.0.1:2379")))
        );
        let etcd = flags(&["--advertise-client-urls=https://localhost:2400/"]);
        assert_eq!(
            etcd_endpoint(&api, Some(&etcd), None),
            Ok((true, addr("127.0.0.1:2400")))
        );
    }

    #[test]
    fn no_usable_url_says_why() {
        let err = etcd_endpoint(&flags(&[]), None, None).unwrap_err();
        assert!(err.contains("no etcd client URL"), "{err}");
        let api = flags(&["--etcd-servers=https://etcd.example:2379,unix:///run/etcd.sock"]);
        let err = etcd_endpoint(&api, None, None).unwrap_err();
        assert!(err.contains("etcd.example is not an IP address"), "{err}");
        assert!(err.contains("not an http(s) URL"), "{err}");
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 401 Unauthorized\r\n"), Some(401));
        assert_eq!(status_of(b"HTTP/1.0 200 OK\r\nContent-Type: x"), Some(200));
        assert_eq!(status_of(b"\x15\x03\x03\x00\x02\x02\x28"), None);
        assert_eq!(status_of(b"HTTP/1.1 abc"), None);
    }

    #[test]
    fn wanted_probes_follow_the_baselines() {
        let spec = |yaml: &str| -> crate::api::SecurityBaselineSpec {
            serde_saphyr::from_str(yaml).expect("spec")
        };
        let none = spec("controlPlane:\n  etcd:\n    server: {}\n");
        let etcd_only = spec("controlPlane:\n  liveProbes:\n    anonymousRequest: false\n");
        let all = spec("controlPlane:\n  liveProbes: {}\n");
        assert_eq!(Wanted::of([&none]), Wanted::default());
        assert_eq!(
            Wanted::of([&none, &etcd_only]),
            Wanted {
                anonymous: false,
                etcd: true
            }
        );
        assert_eq!(Wanted::of([&etcd_only, &all]), Wanted::ALL);
    }

    /// A plain server that closes every connection at once, or nothing listening: the
    /// probe cannot tell (never a pass).
    #[tokio::test]
    async fn a_plain_server_that_closes_or_nothing_listening_is_a_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            if let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let target = EtcdTarget {
            https: false,
            address,
            ca: None,
        };
        let probe = probe_etcd(&target).await;
        assert_eq!(probe.outcome, ProbeOutcome::Failed, "{probe:?}");
        assert!(probe.message.contains("closed the connection"), "{probe:?}");
        server.await.expect("server");
        // Nothing listens there any more.
        let probe = probe_etcd(&target).await;
        assert_eq!(probe.outcome, ProbeOutcome::Failed, "{probe:?}");
        assert!(probe.message.contains("cannot connect"), "{probe:?}");
    }

    /// A plain HTTP server answering 200: the answer is recorded as Plaintext with it.
    #[tokio::test]
    async fn a_plain_http_answer_is_plaintext_with_its_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            if let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = [0_u8; 1024];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        });
        let probe = probe_etcd(&EtcdTarget {
            https: false,
            address,
            ca: None,
        })
        .await;
        server.await.expect("server");
        assert_eq!(
            (probe.outcome, probe.status),
            (ProbeOutcome::Plaintext, Some(200)),
            "{probe:?}"
        );
        assert_eq!(probe.url, format!("http://{address}/version"));
    }

    /// A TLS server on 127.0.0.1 (rustls, `version` only) answering one request 200; with
    /// `require_client_cert` it demands a certificate of a CA the client does not have.
    /// Returns its address and its certificate (PEM).
    async fn tls_server(
        require_client_cert: bool,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (SocketAddr, String, tokio::task::JoinHandle<()>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .expect("versions");
        let builder = if require_client_cert {
            let ca_key = rcgen::KeyPair::generate().expect("CA key");
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der().clone()).expect("root");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let mut buffer = [0_u8; 1024];
                let _ = tls.read(&mut buffer).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        (address, cert.pem(), server)
    }

    #[tokio::test]
    async fn tls_1_3_the_refusal_comes_after_the_handshake_and_is_refused() {
        let (address, _, server) = tls_server(true, &rustls::version::TLS13).await;
        let probe = probe_etcd(&EtcdTarget {
            https: true,
            address,
            ca: None,
        })
        .await;
        server.await.expect("server");
        assert_eq!(probe.outcome, ProbeOutcome::Refused, "{probe:?}");
        assert!(probe.message.contains("CertificateRequired"), "{probe:?}");
    }

    #[tokio::test]
    async fn tls_1_2_the_handshake_itself_is_refused() {
        let (address, _, server) = tls_server(true, &rustls::version::TLS12).await;
        let probe = probe_etcd(&EtcdTarget {
            https: true,
            address,
            ca: None,
        })
        .await;
        server.await.expect("server");
        assert_eq!(probe.outcome, ProbeOutcome::Refused, "{probe:?}");
    }

    #[tokio::test]
    async fn a_server_that_does_not_ask_for_a_certificate_answers() {
        let (address, pem, server) = tls_server(false, &rustls::version::TLS13).await;
        // Its own certificate as the CA: it chains (self-signed, trusted as such).
        let probe = probe_etcd(&EtcdTarget {
            https: true,
            address,
            ca: ClusterCa::from_pem(&pem),
        })
        .await;
        server.await.expect("server");
        assert_eq!(
            (probe.outcome, probe.status),
            (ProbeOutcome::Answered, Some(200)),
            "{probe:?}"
        );
    }

    #[tokio::test]
    async fn a_certificate_of_another_ca_is_not_etcds_answer() {
        let (address, _, server) = tls_server(false, &rustls::version::TLS13).await;
        let (_, other, other_server) = tls_server(false, &rustls::version::TLS13).await;
        other_server.abort();
        let probe = probe_etcd(&EtcdTarget {
            https: true,
            address,
            ca: ClusterCa::from_pem(&other),
        })
        .await;
        server.abort();
        assert_eq!(probe.outcome, ProbeOutcome::Failed, "{probe:?}");
        assert!(probe.message.contains("--etcd-cafile"), "{probe:?}");
    }
}

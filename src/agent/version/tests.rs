//! Where the agent asks, what it trusts (a real TLS handshake against a local server with
//! certificates of one CA: tests/fixtures/nodes/certs/make-pinning.sh), and what it records.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use super::*;
use crate::api::Observation;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};

macro_rules! cert {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/nodes/certs/", $name))
    };
}

fn flags(args: &[&str]) -> ProcessFlags {
    ProcessFlags::parse(args)
}

#[test]
fn the_address_is_the_bind_address_else_the_node_ip_else_loopback() {
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        // The local control plane of e2e/cluster.
        (
            &["--bind-address=127.0.0.1", "--secure-port=22566"],
            Some("10.0.0.5"),
            "127.0.0.1:22566",
        ),
        (&["--bind-address=10.0.0.10"], None, "10.0.0.10:6443"),
        (&["--bind-address=fd00::10"], None, "[fd00::10]:6443"),
        // Every address: the node's IP, as the pod network reaches it.
        (
            &["--bind-address=0.0.0.0"],
            Some("10.0.0.5"),
            "10.0.0.5:6443",
        ),
        (&["--bind-address=::"], Some("fd00::5"), "[fd00::5]:6443"),
        (&["--bind-address="], Some("10.0.0.5"), "10.0.0.5:6443"),
        (
            &["--secure-port", "443"],
            Some(" 10.0.0.5 "),
            "10.0.0.5:443",
        ),
        // No node IP given (outside a pod): loopback.
        (&[], None, "127.0.0.1:6443"),
        (&["--bind-address=0.0.0.0"], Some(""), "127.0.0.1:6443"),
    ];
    for (args, host_ip, want) in cases {
        assert_eq!(
            address(&flags(args), *host_ip).map(|a| a.to_string()),
            Ok((*want).to_owned()),
            "{args:?} with node IP {host_ip:?}"
        );
    }
    let errors: &[(&[&str], Option<&str>, &str)] = &[
        (
            &["--secure-port=0"],
            None,
            "--secure-port=0: the kube-apiserver serves no HTTPS",
        ),
        (
            &["--secure-port=http"],
            None,
            "--secure-port=http is not a port number",
        ),
        (
            &["--bind-address=node-1"],
            None,
            "--bind-address=node-1 is not an IP address",
        ),
        (
            &[],
            Some("node-1"),
            "the node IP \"node-1\" (KB_HOST_IP) is not an IP address",
        ),
    ];
    for (args, host_ip, want) in errors {
        let got = address(&flags(args), *host_ip).expect_err("no address");
        assert!(got.starts_with(want), "{args:?}: {got}");
    }
}

#[test]
fn the_pinned_certificate_is_the_serving_certificate_leaf() {
    assert_eq!(
        serving_cert_path(&flags(&[
            "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt"
        ])),
        "/etc/kubernetes/pki/apiserver.crt"
    );
    assert_eq!(
        serving_cert_path(&flags(&["--cert-dir=/srv/certs/"])),
        "/srv/certs/apiserver.crt"
    );
    assert_eq!(
        serving_cert_path(&flags(&[])),
        "/var/run/kubernetes/apiserver.crt"
    );

    let chain = format!("{}{}", cert!("pinned.crt"), cert!("pin-ca.crt"));
    let leaf = leaf_certificate(&chain).expect("a leaf");
    assert_eq!(Some(leaf), leaf_certificate(cert!("pinned.crt")));
    assert_ne!(
        leaf_certificate(cert!("pinned.crt")),
        leaf_certificate(cert!("sibling.crt"))
    );
    assert_eq!(
        leaf_certificate(cert!("pinned.key")),
        None,
        "a key is no certificate"
    );
    assert_eq!(leaf_certificate("garbage"), None);
}

#[test]
fn record_keeps_the_version_or_why_not_within_bounds() {
    let mut api = ApiServerObservation {
        header: Observation::observed(String::new()),
        ..ApiServerObservation::default()
    };
    record(&mut api, Ok("v1.36.3".to_owned()));
    assert_eq!(
        (api.version.as_str(), api.version_message.as_str()),
        ("v1.36.3", "")
    );

    record(&mut api, Err("connection refused".to_owned()));
    assert_eq!(
        (api.version.as_str(), api.version_message.as_str()),
        ("", "connection refused")
    );

    record(&mut api, Ok(format!("v1.36.3-{}", "x".repeat(64))));
    assert_eq!(api.version, "");
    assert!(
        api.version_message
            .starts_with("the answered gitVersion is longer than 64")
    );

    record(&mut api, Err("e".repeat(5000)));
    assert_eq!(api.version_message.chars().count(), MESSAGE_MAX);

    // No kube-apiserver observed: nothing to say about its version.
    let mut none = ApiServerObservation::default();
    record(&mut none, Ok("v1.36.3".to_owned()));
    assert_eq!(none, ApiServerObservation::default());
}

#[test]
fn the_version_fields_round_trip_and_are_left_out_when_empty() {
    let api = ApiServerObservation {
        header: Observation::observed(String::new()),
        version: "v1.36.3".to_owned(),
        version_message: String::new(),
        ..ApiServerObservation::default()
    };
    let json = serde_json::to_value(&api).expect("serializes");
    assert_eq!(json["version"], "v1.36.3");
    assert!(json.get("versionMessage").is_none());
    let back: ApiServerObservation = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back, api);

    let failed = ApiServerObservation {
        version: String::new(),
        version_message: "timeout".to_owned(),
        ..api
    };
    let json = serde_json::to_value(&failed).expect("serializes");
    assert!(json.get("version").is_none());
    assert_eq!(json["versionMessage"], "timeout");
    assert_eq!(
        serde_json::from_value::<ApiServerObservation>(json).expect("deserializes"),
        failed
    );
    // Reports of older agents have neither.
    let old: ApiServerObservation =
        serde_json::from_str(r#"{"state":"Observed"}"#).expect("deserializes");
    assert_eq!(
        (old.version.as_str(), old.version_message.as_str()),
        ("", "")
    );
}

/// A TLS server on 127.0.0.1 presenting `cert`/`key` that answers `connections` requests with
/// a /version body; sends each request's Authorization header back on the channel.
fn version_server(
    cert: &str,
    key: &str,
    connections: usize,
) -> (SocketAddr, mpsc::Receiver<String>) {
    let provider = rustls::crypto::ring::default_provider();
    let chain = vec![CertificateDer::from(leaf_certificate(cert).expect("cert"))];
    let key_der = pem::parse(key).expect("key").contents().to_vec();
    let key = provider
        .key_provider
        .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()))
        .expect("key");
    // Not checked against the certificate, so an impostor can present a stolen certificate.
    let certified = rustls::sign::CertifiedKey::new(chain, key);
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified))),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(stream) = stream else { continue };
            let Ok(connection) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(connection, stream);
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let request = String::from_utf8_lossy(&request).to_lowercase();
            if !request.starts_with("get /version ") {
                continue;
            }
            let authorization = request
                .lines()
                .find_map(|line| line.strip_prefix("authorization: "))
                .unwrap_or_default()
                .trim()
                .to_owned();
            let _ = sender.send(authorization);
            let body =
                r#"{"major":"1","minor":"36","gitVersion":"v1.36.3","platform":"linux/amd64"}"#;
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (address, receiver)
}

/// The agent's configuration: a kubeconfig with a bearer token (its CA is not the one that
/// issued the server's certificate: only the pin is trusted).
async fn agent_config() -> kube::Config {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:443\n    certificate-authority-data: {}\nusers:\n- name: agent\n  user:\n    token: t0ken\ncontexts:\n- name: c\n  context: {{cluster: c, user: agent}}\ncurrent-context: c\n",
        {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(cert!("ours-ca.crt"))
        }
    ))
    .expect("kubeconfig");
    kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .expect("config")
}

fn probe_of(address: SocketAddr, pinned: &str) -> VersionProbe {
    VersionProbe {
        address,
        cert_path: "/etc/kubernetes/pki/apiserver.crt".to_owned(),
        leaf: leaf_certificate(pinned).expect("cert"),
    }
}

#[tokio::test]
async fn the_pinned_kube_apiserver_is_asked_with_the_agents_credentials() {
    let (address, requests) = version_server(cert!("pinned.crt"), cert!("pinned.key"), 1);
    let version = read_version(
        &agent_config().await,
        &probe_of(address, cert!("pinned.crt")),
    )
    .await
    .expect("the version");
    assert_eq!(version, "v1.36.3");
    assert_eq!(requests.recv().expect("a request"), "bearer t0ken");
}

#[tokio::test]
async fn another_certificate_of_the_same_ca_is_not_trusted() {
    // A decoy on the address, with a certificate of the same CA and the same names.
    let (address, requests) = version_server(cert!("sibling.crt"), cert!("sibling.key"), 1);
    let error = read_version(
        &agent_config().await,
        &probe_of(address, cert!("pinned.crt")),
    )
    .await
    .expect_err("not the pinned certificate");
    assert!(matches!(error, VersionError::NotPinned { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "https://{address} answered with another certificate than the kube-apiserver's own \
             /etc/kubernetes/pki/apiserver.crt: not asked"
        )
    );
    assert!(
        requests.try_recv().is_err(),
        "no request (and no token) was sent to it"
    );
}

#[tokio::test]
async fn the_pinned_certificate_without_its_key_is_not_trusted() {
    // An impostor presenting a copy of the pinned certificate cannot sign the handshake.
    let (address, requests) = version_server(cert!("pinned.crt"), cert!("sibling.key"), 1);
    let error = read_version(
        &agent_config().await,
        &probe_of(address, cert!("pinned.crt")),
    )
    .await
    .expect_err("the handshake signature is not the certificate's");
    assert!(matches!(error, VersionError::Request { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("invalid peer certificate: BadSignature"),
        "{error}"
    );
    assert!(requests.try_recv().is_err(), "no request was sent to it");
}

#[test]
fn the_verifier_accepts_the_pinned_leaf_only() {
    let provider = rustls::crypto::ring::default_provider();
    let pinned = CertificateDer::from(leaf_certificate(cert!("pinned.crt")).expect("cert"));
    let sibling = CertificateDer::from(leaf_certificate(cert!("sibling.crt")).expect("cert"));
    let verifier = PinnedLeaf::new(
        SameLeaf(pinned.clone()),
        provider.signature_verification_algorithms,
    );
    let name = ServerName::try_from("127.0.0.1").expect("name");
    // Name and time do not matter: the pin is the identity.
    let other_name = ServerName::try_from("elsewhere.example").expect("name");
    let now = UnixTime::now();
    assert!(
        verifier
            .verify_server_cert(&pinned, &[], &name, &[], now)
            .is_ok()
    );
    assert!(
        verifier
            .verify_server_cert(&pinned, &[], &other_name, &[], now)
            .is_ok()
    );
    assert!(!verifier.rejected());
    assert!(
        verifier
            .verify_server_cert(&sibling, std::slice::from_ref(&pinned), &name, &[], now)
            .is_err()
    );
    assert!(verifier.rejected());
    assert!(!verifier.supported_verify_schemes().is_empty());
}

#[tokio::test]
async fn nothing_listening_is_a_message_not_a_failure_of_the_agent() {
    let address = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let error = read_version(
        &agent_config().await,
        &probe_of(address, cert!("pinned.crt")),
    )
    .await
    .expect_err("nothing listens");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("GET https://{address}/version failed: ")),
        "{message}"
    );
    assert!(
        message.to_lowercase().contains("connection refused"),
        "{message}"
    );
}

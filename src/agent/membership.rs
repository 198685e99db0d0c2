//! Which of the host's kube-apiserver and kubelet processes belong to the agent's cluster.
//!
//! A host can run processes of several clusters (a test machine with several control
//! planes; static pods of two versions during an upgrade). The agent knows its cluster by
//! the CA certificates it trusts the API server with (its kubeconfig or in-cluster CA): a
//! kube-apiserver is ours when its serving certificate (`--tls-cert-file`) chains to that
//! CA; a kubelet is ours when the CA in its `--kubeconfig` is that CA.

use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, Error as CertError, KeyUsage, anchor_from_trusted_cert};

/// The agent's cluster, by its CA certificates (DER). Empty when unknown (`--print`, a
/// kubeconfig without a CA): then every process counts as ours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterCa {
    certs: Vec<Vec<u8>>,
}

impl ClusterCa {
    /// The cluster CA from DER certificates.
    pub fn new(certs: Vec<Vec<u8>>) -> Self {
        Self { certs }
    }

    /// The cluster CA from PEM text (every CERTIFICATE block); None if there is none.
    pub fn from_pem(text: &str) -> Option<Self> {
        let certs = certificates(text);
        (!certs.is_empty()).then_some(Self { certs })
    }

    /// Whether the CA is known (membership can be decided).
    pub fn is_known(&self) -> bool {
        !self.certs.is_empty()
    }

    /// Whether a serving certificate (PEM: the leaf first, then intermediates) was issued
    /// under this CA. Its validity period is not judged here: an expired certificate of our
    /// kube-apiserver is still ours.
    pub fn issued(&self, serving_pem: &str) -> bool {
        let chain: Vec<CertificateDer<'static>> = certificates(serving_pem)
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        self.issued_chain(&chain)
    }

    /// [`Self::issued`] for a chain already in DER (the leaf first), as a TLS server sends it.
    pub fn issued_chain(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        // A self-signed serving certificate the cluster trusts as such.
        if self.certs.iter().any(|ca| ca.as_slice() == leaf.as_ref()) {
            return true;
        }
        let ders: Vec<CertificateDer<'_>> = self
            .certs
            .iter()
            .map(|ca| CertificateDer::from(ca.as_slice()))
            .collect();
        let anchors: Vec<_> = ders
            .iter()
            .filter_map(|der| anchor_from_trusted_cert(der).ok())
            .collect();
        let Ok(cert) = EndEntityCert::try_from(leaf) else {
            return false;
        };
        let verified = cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            intermediates,
            UnixTime::now(),
            KeyUsage::server_auth(),
            None,
            None,
        );
        matches!(
            verified,
            Ok(_) | Err(CertError::CertExpired { .. } | CertError::CertNotValidYet { .. })
        )
    }

    /// Whether a CA bundle (PEM) holds one of this CA's certificates.
    pub fn shared_by(&self, bundle_pem: &str) -> bool {
        certificates(bundle_pem)
            .iter()
            .any(|cert| self.certs.contains(cert))
    }
}

/// The DER of every CERTIFICATE block in PEM text (none if it is not PEM).
fn certificates(text: &str) -> Vec<Vec<u8>> {
    pem::parse_many(text)
        .unwrap_or_default()
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(|block| block.contents().to_vec())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! cert {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/nodes/certs/", $name))
        };
    }

    fn ours() -> ClusterCa {
        ClusterCa::from_pem(cert!("ours-ca.crt")).expect("a CA")
    }

    #[test]
    fn a_serving_certificate_is_ours_only_when_it_chains_to_our_ca() {
        assert!(ours().issued(cert!("apiserver-ours.crt")));
        assert!(!ours().issued(cert!("apiserver-theirs.crt")));
        assert!(
            ours().issued(cert!("apiserver-ours-expired.crt")),
            "expired, but issued by our CA"
        );
        assert!(!ours().issued("not a certificate"));
        assert!(!ours().issued(""));
    }

    #[test]
    fn a_ca_bundle_is_shared_when_it_holds_our_ca() {
        let bundle = format!("{}{}", cert!("theirs-ca.crt"), cert!("ours-ca.crt"));
        assert!(ours().shared_by(&bundle));
        assert!(!ours().shared_by(cert!("theirs-ca.crt")));
        assert!(!ours().shared_by("garbage"));
    }

    #[test]
    fn an_unknown_ca_is_empty() {
        assert_eq!(ClusterCa::from_pem("no pem here"), None);
        assert!(!ClusterCa::default().is_known());
        assert!(ours().is_known());
    }
}

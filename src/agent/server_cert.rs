//! Which server certificate a probe of the node agent accepts, as a rustls verifier that
//! remembers a rejection (so that a probe can say "another certificate" instead of a
//! generic TLS error). Server names are never judged: the agent reaches the control plane
//! by address. Handshake signatures are always checked.

use std::sync::atomic::{AtomicBool, Ordering};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// The rule a [`CheckedServer`] applies to the chain a server presents.
pub trait Accepts: std::fmt::Debug + Send + Sync {
    fn accepts(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> bool;
}

/// A rustls verifier applying `A`, remembering whether it rejected a server.
#[derive(Debug)]
pub struct CheckedServer<A> {
    rule: A,
    algorithms: WebPkiSupportedAlgorithms,
    rejected: AtomicBool,
}

impl<A: Accepts> CheckedServer<A> {
    /// Applies `rule`, checking handshake signatures with `algorithms` (the TLS config's).
    pub fn new(rule: A, algorithms: WebPkiSupportedAlgorithms) -> Self {
        Self {
            rule,
            algorithms,
            rejected: AtomicBool::new(false),
        }
    }

    /// Whether a server presented a certificate the rule refused.
    pub fn rejected(&self) -> bool {
        self.rejected.load(Ordering::Relaxed)
    }
}

impl<A: Accepts> ServerCertVerifier for CheckedServer<A> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.rule.accepts(end_entity, intermediates) {
            Ok(ServerCertVerified::assertion())
        } else {
            self.rejected.store(true, Ordering::Relaxed);
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

//! What the certificate checks read of a `kubernetes.io/tls` Secret: its leaf certificate's
//! expiry and DNS names, nothing else (the key is never read; see the Secret feed).
//! Parsing is x509-cert's (RustCrypto); host matching is [`crate::domain::tls::hosts::covers`],
//! compared in the tests with webpki's own name validation.

use k8s_openapi::jiff::Timestamp;
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// The leaf certificate of a TLS Secret, as far as the checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// The last instant the certificate is valid (`notAfter`).
    pub not_after: Timestamp,
    /// The subjectAltName dNSName entries, as written. The subject's common name is not
    /// read: TLS clients stopped using it (RFC 6125, CA/Browser Forum), and so does webpki.
    pub dns_names: Vec<String>,
}

/// A Secret of the selected namespaces, as far as the checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFacts {
    /// Type `kubernetes.io/tls`: its leaf certificate, or why `tls.crt` could not be read.
    Tls(Result<CertificateFacts, String>),
    /// Another type (named).
    OtherType(String),
}

impl SecretFacts {
    /// Reads `type` and, for a TLS Secret, the first certificate of `tls.crt` (the leaf, by
    /// the Secret type's convention); `tls.key` is not looked at.
    pub fn from_parts(type_: Option<&str>, tls_crt: Option<&[u8]>) -> Self {
        let type_ = type_.unwrap_or("Opaque");
        if type_ != "kubernetes.io/tls" {
            return Self::OtherType(type_.to_owned());
        }
        Self::Tls(match tls_crt {
            None => Err("has no tls.crt".to_owned()),
            Some(pem) => CertificateFacts::from_pem(pem),
        })
    }
}

impl CertificateFacts {
    /// The first `CERTIFICATE` block of `pem`, or why there is none that parses.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let blocks = pem::parse_many(pem).map_err(|e| format!("tls.crt is not PEM: {e}"))?;
        let leaf = blocks
            .iter()
            .find(|block| block.tag() == "CERTIFICATE")
            .ok_or_else(|| "tls.crt holds no PEM CERTIFICATE block".to_owned())?;
        Self::from_der(leaf.contents())
    }

    fn from_der(der: &[u8]) -> Result<Self, String> {
        let certificate = Certificate::from_der(der)
            .map_err(|e| format!("the first certificate of tls.crt does not parse: {e}"))?;
        let tbs = certificate.tbs_certificate();
        let seconds = tbs.validity().not_after.to_unix_duration().as_secs();
        let not_after = i64::try_from(seconds)
            .ok()
            .and_then(|s| Timestamp::from_second(s).ok())
            .ok_or_else(|| format!("notAfter ({seconds} s after 1970) is out of range"))?;
        let dns_names = match tbs.get_extension::<SubjectAltName>() {
            Ok(Some((_, names))) => names
                .0
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DnsName(dns) => Some(dns.to_string()),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => return Err(format!("its subjectAltName does not parse: {e}")),
        };
        Ok(Self {
            not_after,
            dns_names,
        })
    }

    /// Whether the certificate is valid for `host` (a TLS client's view: a SAN `*.S`
    /// matches one label before `.S`).
    pub fn valid_for(&self, host: &str) -> bool {
        self.dns_names
            .iter()
            .any(|name| crate::domain::tls::hosts::covers(name, host))
    }
}

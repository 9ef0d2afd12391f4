//! TLS to the org with a pinned certificate: the initramfs has no system
//! CA store, and a node must talk to its own org only. agent.toml pins the
//! org either by the SHA-256 of its certificate (`org_cert_sha256`) or by a
//! PEM file (`org_ca`) holding the org's certificate itself or the CA that
//! issued it; with both, both must hold.
//!
//! - A certificate listed in `org_ca` (or matching the fingerprint) is
//!   accepted as it is: the pin names that exact certificate, so neither
//!   its names nor its dates are checked (a preboot node's clock may be
//!   wrong). The TLS handshake still proves the server holds its key.
//! - Any other certificate must chain to a certificate of `org_ca` and name
//!   the host of the org URL, checked by webpki (dates included).
//!
//! A refusal names the expected and the actual fingerprint; the client
//! reads it back through [`PinnedOrg::last_refusal`] to say so plainly.
//!
//! The binary carries no root list: [`crate::org_http`] speaks TLS only
//! through the client configuration built here.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("org_ca {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("org_cert_sha256: {0:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")]
    Fingerprint(String),
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// How the org's certificate is recognised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgTrust {
    /// SHA-256 of the org certificate (DER).
    pub cert_sha256: Option<[u8; 32]>,
    /// Certificates (DER) from `org_ca`: the org's own, or its CA.
    pub ca: Vec<Vec<u8>>,
    /// Where `ca` came from, for messages.
    pub ca_path: Option<String>,
}

/// Hex SHA-256 of a certificate, as `fortros-org` prints it.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Parses a fingerprint: 64 hex digits, upper or lower case, colons
/// allowed (as `openssl x509 -fingerprint -sha256` prints it).
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], TrustError> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    hex::decode(&digits)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| TrustError::Fingerprint(text.to_string()))
}

impl OrgTrust {
    /// Reads the pins of agent.toml (`org_ca` is a path, read now).
    pub fn load(ca_path: Option<&str>, cert_sha256: Option<&str>) -> Result<Self, TrustError> {
        let mut trust = OrgTrust {
            cert_sha256: cert_sha256.map(parse_fingerprint).transpose()?,
            ..OrgTrust::default()
        };
        if let Some(path) = ca_path {
            let bad = |reason: String| TrustError::CaFile {
                path: path.to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            trust.ca = parse_pem_certs(&pem).map_err(bad)?;
            trust.ca_path = Some(path.to_string());
        }
        Ok(trust)
    }

    /// True when something is pinned.
    pub fn is_pinned(&self) -> bool {
        self.cert_sha256.is_some() || !self.ca.is_empty()
    }

    /// A rustls client configuration that accepts only the pinned org,
    /// and the verifier (to read back why a handshake was refused).
    pub fn client_config(&self) -> Result<(rustls::ClientConfig, Arc<PinnedOrg>), TrustError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = if self.ca.is_empty() {
            None
        } else {
            let mut roots = RootCertStore::empty();
            for der in &self.ca {
                roots
                    .add(CertificateDer::from(der.clone()))
                    .map_err(|e| TrustError::Tls(format!("org_ca certificate: {e}")))?;
            }
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TrustError::Tls(e.to_string()))?,
            )
        };
        let verifier = Arc::new(PinnedOrg {
            trust: self.clone(),
            webpki,
            provider: provider.clone(),
            refusal: Mutex::new(None),
        });
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TrustError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        Ok((config, verifier))
    }
}

/// The certificates of a PEM file, DER-encoded; at least one.
fn parse_pem_certs(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE in the file".into());
    }
    Ok(certs)
}

/// The certificate check of the TLS handshake (see the module docs).
#[derive(Debug)]
pub struct PinnedOrg {
    trust: OrgTrust,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    /// Why the last handshake was refused, in plain words.
    refusal: Mutex<Option<String>>,
}

impl PinnedOrg {
    /// Why the last certificate was refused, if one was.
    pub fn last_refusal(&self) -> Option<String> {
        self.refusal.lock().ok().and_then(|r| r.clone())
    }

    /// Keeps `why` for [`PinnedOrg::last_refusal`] and returns the error
    /// that ends the handshake: webpki's own when it decided (so the alert
    /// the org receives says expired, bad name or unknown CA), otherwise
    /// "certificate unknown".
    fn refuse(&self, why: String, cause: Option<rustls::Error>) -> rustls::Error {
        if let Ok(mut r) = self.refusal.lock() {
            *r = Some(why.clone());
        }
        cause.unwrap_or_else(|| {
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                Arc::new(std::io::Error::other(why)),
            )))
        })
    }

    /// The decision on the server's certificate: why not, in plain words,
    /// and webpki's error when it was webpki's decision.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), (String, Option<rustls::Error>)> {
        let actual = fingerprint(end_entity);
        if let Some(pin) = &self.trust.cert_sha256 {
            if Sha256::digest(end_entity.as_ref()).as_slice() != pin {
                return Err((
                    format!(
                        "org certificate SHA-256 {actual} is not the pinned org_cert_sha256 {}",
                        hex::encode(pin)
                    ),
                    None,
                ));
            }
        }
        let Some(webpki) = &self.webpki else {
            return Ok(());
        };
        if self.trust.ca.iter().any(|c| c == end_entity.as_ref()) {
            return Ok(());
        }
        webpki
            .verify_server_cert(end_entity, intermediates, server_name, &[], now)
            .map(|_| ())
            .map_err(|e| {
                let expected: Vec<String> = self.trust.ca.iter().map(|c| fingerprint(c)).collect();
                let why = format!(
                    "org certificate SHA-256 {actual} is not in org_ca {} (SHA-256 {}) and is not accepted through it: {e}{}",
                    self.trust.ca_path.as_deref().unwrap_or("?"),
                    expected.join(", "),
                    clock_hint(&e, now)
                );
                (why, Some(e))
            })
    }
}

/// For a refusal on dates: what the node's clock said, readable. Before
/// the OS sets the time, the node's clock is its RTC (a dead CMOS battery
/// puts it years back), and webpki checks a CA-issued certificate's dates
/// against it.
fn clock_hint(e: &rustls::Error, now: UnixTime) -> String {
    match e {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. }
            | CertificateError::Expired
            | CertificateError::ExpiredContext { .. },
        ) => format!(
            "; the node's clock says {} (is its RTC set?)",
            utc(now.as_secs())
        ),
        _ => String::new(),
    }
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic
/// Gregorian calendar; days to civil date after H. Hinnant).
fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Shift the epoch to 0000-03-01 so leap days end a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

impl ServerCertVerifier for PinnedOrg {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.trust.is_pinned() {
            return Err(self.refuse(
                format!(
                    "org certificate SHA-256 {}: no org_ca or org_cert_sha256 pinned, and no system CA store is used",
                    fingerprint(end_entity)
                ),
                None,
            ));
        }
        match self.check(end_entity, intermediates, server_name, now) {
            Ok(()) => {
                if let Ok(mut r) = self.refusal.lock() {
                    *r = None;
                }
                Ok(ServerCertVerified::assertion())
            }
            Err((why, cause)) => Err(self.refuse(why, cause)),
        }
    }

    // The handshake signatures prove the server holds the certificate's key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let hex = "AB".repeat(32);
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(parse_fingerprint(&hex).unwrap(), [0xab; 32]);
        assert_eq!(parse_fingerprint(&colons).unwrap(), [0xab; 32]);
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn clock_in_messages_reads_as_a_utc_date() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(978_307_202), "2001-01-01T00:00:02Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_577_836_799), "2019-12-31T23:59:59Z");
        assert_eq!(utc(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn a_date_refusal_names_the_node_clock_and_others_do_not() {
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(978_307_202));
        let early = rustls::Error::InvalidCertificate(CertificateError::NotValidYet);
        assert_eq!(
            clock_hint(&early, now),
            "; the node's clock says 2001-01-01T00:00:02Z (is its RTC set?)"
        );
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert!(clock_hint(&expired, now).contains("2001-01-01"));
        let issuer = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(clock_hint(&issuer, now), "");
    }

    #[test]
    fn a_pem_file_without_certificates_is_refused() {
        assert!(parse_pem_certs(b"not pem").is_err());
        let e = OrgTrust::load(Some("/nonexistent/org.pem"), None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/org.pem"), "{e}");
    }
}

//! EK certificate checks: the certificate chains to a CA the org
//! configured (the TPM vendor's roots, or swtpm's local CA in tests), and
//! it certifies the very EK the node presented.
//!
//! Checked: each link's signature (RSA PKCS#1 v1.5 with SHA-256/384, or
//! ECDSA P-256 with SHA-256), issuer name equals the parent's subject,
//! issuers are CAs (basicConstraints cA when present), validity periods
//! cover `now` when a time is given, and the leaf's RSA key equals the EK.
//! Not checked: revocation (CRLs are the org's business), name constraints.

use crate::tpm::RsaPublic;
use der::{Decode, Encode};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::signature::Verifier;
use x509_cert::Certificate;

const OID_SHA256_RSA: &str = "1.2.840.113549.1.1.11";
const OID_SHA384_RSA: &str = "1.2.840.113549.1.1.12";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";
/// Longest chain walked (leaf + intermediates); stops loops.
const MAX_DEPTH: usize = 6;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EkCertError {
    #[error("{what}: not a DER X.509 certificate: {reason}")]
    Decode { what: String, reason: String },
    #[error("CA bundle: {0}")]
    Pem(String),
    #[error("EK certificate: no chain to a configured CA (stopped at issuer \"{issuer}\")")]
    NoPath { issuer: String },
    #[error("certificate \"{subject}\": signature algorithm {oid} not supported")]
    UnsupportedAlgorithm { subject: String, oid: String },
    #[error("certificate \"{subject}\": not valid at the given time")]
    Expired { subject: String },
    #[error("EK certificate key: {0}")]
    LeafKey(String),
    #[error("the EK certificate certifies another key than the node's EK")]
    KeyMismatch,
}

/// The CAs an org trusts for EK certificates, plus intermediates it may
/// need to build chains (TPM vendors publish both).
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    pub roots: Vec<Certificate>,
    pub intermediates: Vec<Certificate>,
}

impl TrustAnchors {
    /// Parses a PEM bundle (one or more certificates).
    pub fn parse_pem(pem: &[u8]) -> Result<Vec<Certificate>, EkCertError> {
        Certificate::load_pem_chain(pem).map_err(|e| EkCertError::Pem(e.to_string()))
    }
}

/// What a verified EK certificate says.
#[derive(Debug, Clone)]
pub struct EkCertInfo {
    pub subject: String,
    pub issuer: String,
    /// Subjects from the leaf's issuer up to the root.
    pub chain: Vec<String>,
}

fn decode(der_bytes: &[u8], what: &str) -> Result<Certificate, EkCertError> {
    Certificate::from_der(der_bytes).map_err(|e| EkCertError::Decode {
        what: what.into(),
        reason: e.to_string(),
    })
}

fn is_ca(cert: &Certificate) -> bool {
    let Some(exts) = &cert.tbs_certificate.extensions else {
        return true; // v1 CA certificates carry no extensions
    };
    match exts
        .iter()
        .find(|e| e.extn_id.to_string() == OID_BASIC_CONSTRAINTS)
    {
        None => true,
        Some(e) => x509_cert::ext::pkix::BasicConstraints::from_der(e.extn_value.as_bytes())
            .map(|bc| bc.ca)
            .unwrap_or(false),
    }
}

fn valid_at(cert: &Certificate, now_unix: Option<u64>) -> bool {
    let Some(now) = now_unix else { return true };
    let v = &cert.tbs_certificate.validity;
    let nb = v.not_before.to_unix_duration().as_secs();
    let na = v.not_after.to_unix_duration().as_secs();
    nb <= now && now <= na
}

/// Whether `cert` is signed by `issuer`'s key.
fn signed_by(cert: &Certificate, issuer: &Certificate) -> Result<bool, EkCertError> {
    let subject = cert.tbs_certificate.subject.to_string();
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(|e| EkCertError::Decode {
            what: subject.clone(),
            reason: e.to_string(),
        })?;
    let sig = cert.signature.raw_bytes();
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    let key_bytes = spki.subject_public_key.raw_bytes();
    let oid = cert.signature_algorithm.oid.to_string();
    Ok(match oid.as_str() {
        OID_SHA256_RSA | OID_SHA384_RSA => {
            let Ok(key) = rsa::RsaPublicKey::from_pkcs1_der(key_bytes) else {
                return Ok(false);
            };
            let Ok(sig) = rsa::pkcs1v15::Signature::try_from(sig) else {
                return Ok(false);
            };
            if oid == OID_SHA256_RSA {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key)
                    .verify(&tbs, &sig)
                    .is_ok()
            } else {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(key)
                    .verify(&tbs, &sig)
                    .is_ok()
            }
        }
        OID_ECDSA_SHA256 => {
            let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes) else {
                return Ok(false);
            };
            let Ok(sig) = p256::ecdsa::Signature::from_der(sig) else {
                return Ok(false);
            };
            key.verify(&tbs, &sig).is_ok()
        }
        _ => return Err(EkCertError::UnsupportedAlgorithm { subject, oid }),
    })
}

/// Verifies an EK certificate (DER) against the anchors and, when given,
/// that it certifies `ek` (the RSA EK the node presented).
pub fn verify_ek_certificate(
    ek_cert_der: &[u8],
    anchors: &TrustAnchors,
    ek: Option<&RsaPublic>,
    now_unix: Option<u64>,
) -> Result<EkCertInfo, EkCertError> {
    let leaf = decode(ek_cert_der, "EK certificate")?;
    if let Some(ek) = ek {
        let spki = &leaf.tbs_certificate.subject_public_key_info;
        if spki.algorithm.oid.to_string() != OID_RSA {
            return Err(EkCertError::LeafKey(format!(
                "key algorithm {} is not RSA",
                spki.algorithm.oid
            )));
        }
        let key = rsa::RsaPublicKey::from_pkcs1_der(spki.subject_public_key.raw_bytes())
            .map_err(|e| EkCertError::LeafKey(e.to_string()))?;
        use rsa::traits::PublicKeyParts;
        let exponent = if ek.exponent == 0 { 65537 } else { ek.exponent };
        if key.n().to_bytes_be() != ek.modulus.as_slice()
            || key.e() != &rsa::BigUint::from(exponent)
        {
            return Err(EkCertError::KeyMismatch);
        }
    }
    if !valid_at(&leaf, now_unix) {
        return Err(EkCertError::Expired {
            subject: leaf.tbs_certificate.subject.to_string(),
        });
    }

    let mut chain = Vec::new();
    let mut current = leaf.clone();
    for _ in 0..MAX_DEPTH {
        let issuer_name = &current.tbs_certificate.issuer;
        for root in &anchors.roots {
            if &root.tbs_certificate.subject == issuer_name && signed_by(&current, root)? {
                chain.push(root.tbs_certificate.subject.to_string());
                return Ok(EkCertInfo {
                    subject: leaf.tbs_certificate.subject.to_string(),
                    issuer: leaf.tbs_certificate.issuer.to_string(),
                    chain,
                });
            }
        }
        let mut next = None;
        for ca in &anchors.intermediates {
            if &ca.tbs_certificate.subject == issuer_name
                && is_ca(ca)
                && valid_at(ca, now_unix)
                && signed_by(&current, ca)?
            {
                next = Some(ca.clone());
                break;
            }
        }
        match next {
            Some(ca) => {
                chain.push(ca.tbs_certificate.subject.to_string());
                current = ca;
            }
            None => break,
        }
    }
    Err(EkCertError::NoPath {
        issuer: current.tbs_certificate.issuer.to_string(),
    })
}

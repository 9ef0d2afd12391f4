//! Org-side verification of a node's report evidence: the TPM quote binds
//! the report bytes, the PCR values in the report, and the org's nonce to
//! the node's attestation key (AK). The rules, in the order applied, are
//! listed in docs/report-format.md.

use crate::envelope::ReportEvidence;
use crate::report::Report;
use crate::tpm::{self, attr, EcdsaSignature, Public, QuoteAttest, TpmParseError};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::EncodedPoint;
use sha2::{Digest, Sha256};

/// What the org expects of this evidence.
#[derive(Debug, Clone, Copy)]
pub struct Expectation<'a> {
    /// The nonce the org issued for this enrollment.
    pub nonce: &'a [u8],
    /// The AK (TPMT_PUBLIC bytes) the org enrolled for this node, once it
    /// trusts one; `None` on first contact (the AK is then bound to the EK
    /// by MakeCredential before being trusted).
    pub enrolled_ak: Option<&'a [u8]>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("report: {0}")]
    Report(#[from] crate::codec::CodecError),
    #[error("AK public area: {0}")]
    AkPublic(TpmParseError),
    #[error("AK is not a TPM-resident restricted P-256 signing key: {0}")]
    AkNotAttestationKey(String),
    #[error("the report's AK is not the AK enrolled for this node")]
    AkNotEnrolled,
    #[error("quote attest: {0}")]
    Attest(TpmParseError),
    #[error("quote signature: {0}")]
    SignatureFormat(TpmParseError),
    #[error("quote signature does not verify under the report's AK")]
    BadSignature,
    #[error(
        "the report's nonce is not the nonce issued for this enrollment (stale or replayed report)"
    )]
    NonceMismatch,
    #[error("quote extraData is not SHA-256 of the report bytes")]
    ExtraDataMismatch,
    #[error("quote covers PCRs {quoted:?} in bank 0x{quoted_bank:04x}; the report lists {reported:?} in bank 0x{reported_bank:04x}")]
    PcrSelectionMismatch {
        quoted_bank: u16,
        quoted: Vec<u8>,
        reported_bank: u16,
        reported: Vec<u8>,
    },
    #[error("quote PCR digest does not match the PCR values in the report")]
    PcrDigestMismatch,
    #[error("report PCR {index} value is {len} bytes, not 32")]
    PcrValueLength { index: u8, len: usize },
}

/// A report whose evidence verified, with what the quote told about the TPM.
#[derive(Debug, Clone)]
pub struct VerifiedReport {
    pub report: Report,
    pub attest: QuoteAttest,
    /// TPM name of the AK (`0x000b || SHA-256(TPMT_PUBLIC)`): the node's id.
    pub ak_name: Vec<u8>,
}

/// Checks an AK public area is what an attestation key must be.
pub fn check_ak_public(ak_public: &[u8]) -> Result<tpm::EccPublic, VerifyError> {
    let ecc = match Public::parse(ak_public).map_err(VerifyError::AkPublic)? {
        Public::Ecc(e) => e,
        Public::Rsa(_) => return Err(VerifyError::AkNotAttestationKey("RSA key".into())),
    };
    let need = attr::FIXED_TPM
        | attr::FIXED_PARENT
        | attr::SENSITIVE_DATA_ORIGIN
        | attr::RESTRICTED
        | attr::SIGN;
    let problem = if ecc.attributes & need != need {
        Some(format!(
            "attributes 0x{:08x} lack fixedTPM|fixedParent|sensitiveDataOrigin|restricted|sign",
            ecc.attributes
        ))
    } else if ecc.attributes & attr::DECRYPT != 0 {
        Some("decrypt attribute set".into())
    } else if ecc.curve != tpm::ECC_NIST_P256 {
        Some(format!("curve 0x{:04x} is not P-256", ecc.curve))
    } else if ecc.name_alg != tpm::ALG_SHA256 {
        Some(format!("nameAlg 0x{:04x} is not SHA-256", ecc.name_alg))
    } else if ecc.scheme != (tpm::ALG_ECDSA, tpm::ALG_SHA256) {
        Some(format!("scheme {:04x?} is not ECDSA-SHA256", ecc.scheme))
    } else {
        None
    };
    match problem {
        Some(p) => Err(VerifyError::AkNotAttestationKey(p)),
        None => Ok(ecc),
    }
}

fn scalar32(v: &[u8]) -> Option<[u8; 32]> {
    // The TPM may drop leading zero bytes; pad on the left.
    if v.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out.get_mut(32 - v.len()..)?.copy_from_slice(v);
    Some(out)
}

/// Verifies one report's evidence. See the module comment for the rules.
pub fn verify_report(
    evidence: &ReportEvidence,
    expect: &Expectation,
) -> Result<VerifiedReport, VerifyError> {
    let report_bytes = evidence.report.as_slice();
    let report = Report::from_bytes(report_bytes)?;

    // 1. Freshness: the nonce issued for this enrollment.
    if report.nonce.as_slice() != expect.nonce {
        return Err(VerifyError::NonceMismatch);
    }

    // 2. The key: an attestation key, and the enrolled one if any.
    let ak_public = report.node.ak_public.as_slice();
    let ak = check_ak_public(ak_public)?;
    if let Some(enrolled) = expect.enrolled_ak {
        if enrolled != ak_public {
            return Err(VerifyError::AkNotEnrolled);
        }
    }

    // 3. The quote's signature over the attest bytes.
    let sig = EcdsaSignature::parse(evidence.signature.as_slice())
        .map_err(VerifyError::SignatureFormat)?;
    if sig.hash != tpm::ALG_SHA256 {
        return Err(VerifyError::BadSignature);
    }
    let (x, y) = match (scalar32(&ak.x), scalar32(&ak.y)) {
        (Some(x), Some(y)) => (x, y),
        _ => {
            return Err(VerifyError::AkNotAttestationKey(
                "point coordinates > 32 bytes".into(),
            ))
        }
    };
    let point = EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
    let key = VerifyingKey::from_encoded_point(&point)
        .map_err(|_| VerifyError::AkNotAttestationKey("point not on P-256".into()))?;
    let (r, s) = match (scalar32(&sig.r), scalar32(&sig.s)) {
        (Some(r), Some(s)) => (r, s),
        _ => return Err(VerifyError::BadSignature),
    };
    let signature = Signature::from_scalars(r, s).map_err(|_| VerifyError::BadSignature)?;
    key.verify(evidence.attest.as_slice(), &signature)
        .map_err(|_| VerifyError::BadSignature)?;

    // 4. What was signed: a quote whose extraData is SHA-256(report bytes).
    let attest = QuoteAttest::parse(evidence.attest.as_slice()).map_err(VerifyError::Attest)?;
    if attest.extra_data.as_slice() != Sha256::digest(report_bytes).as_slice() {
        return Err(VerifyError::ExtraDataMismatch);
    }

    // 5. The PCRs: same selection, and the digest of the reported values.
    let reported: Vec<u8> = report.pcrs.values.iter().map(|p| p.index).collect();
    if attest.pcr_select.bank != report.pcrs.bank || attest.pcr_select.pcrs != reported {
        return Err(VerifyError::PcrSelectionMismatch {
            quoted_bank: attest.pcr_select.bank,
            quoted: attest.pcr_select.pcrs.clone(),
            reported_bank: report.pcrs.bank,
            reported,
        });
    }
    for p in &report.pcrs.values {
        if p.digest.0.len() != 32 {
            return Err(VerifyError::PcrValueLength {
                index: p.index,
                len: p.digest.0.len(),
            });
        }
    }
    let digest = tpm::pcr_digest_sha256(report.pcrs.values.iter().map(|p| p.digest.as_slice()));
    if attest.pcr_digest.as_slice() != digest.as_slice() {
        return Err(VerifyError::PcrDigestMismatch);
    }

    Ok(VerifiedReport {
        ak_name: tpm::name_sha256(ak_public),
        report,
        attest,
    })
}

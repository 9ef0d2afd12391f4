//! The messages of the enrollment exchange between agent and org (HTTP
//! bodies, postcard-encoded, each starting with its format version):
//!
//! 1. `POST /v1/nonce` (empty body) → [`NonceGrant`].
//! 2. `POST /v1/enroll` ([`crate::envelope::ReportEvidence`] over a report
//!    carrying that nonce) → [`EnrollResponse`].
//! 3. On first contact the answer is a [`CredentialChallenge`]; the agent
//!    runs TPM2_ActivateCredential and sends `POST /v1/activate`
//!    ([`ActivationRequest`]) → [`EnrollResponse`].
//! 4. The answer is finally a signed policy or "pending operator approval".
//! 5. `POST /v1/outcome` (evidence over a report with a fresh nonce, the
//!    policy received and the actions taken) → [`OutcomeAck`].
//!
//! Backups (before the agent writes its flash, and when it must restore):
//!
//! - `POST /v1/backup` ([`BackupUpload`]: the original image and evidence
//!   over a report with a fresh nonce whose `flash.image_sha256` is the
//!   image's digest) → [`BackupAck`]. The org keeps the image keyed by node
//!   and SHA-256; the agent writes only after this answer.
//! - `POST /v1/backup/fetch` ([`BackupFetch`]: evidence over a report with a
//!   fresh nonce, and the digest wanted) → [`BackupImage`].

use crate::bytes::{Bytes, Digest32};
use crate::codec::{self, CodecError};
use crate::envelope::{ReportEvidence, SignedPolicy};
use crate::FormatVersion;
use serde::{Deserialize, Serialize};

/// The format of every exchange message.
pub const EXCHANGE_FORMAT: FormatVersion = FormatVersion { major: 1, minor: 0 };

/// A fresh, single-use nonce for one report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceGrant {
    pub format: FormatVersion,
    pub nonce: Bytes,
    /// The org forgets (refuses) the nonce after this many seconds.
    pub expires_in_secs: u32,
}

/// MakeCredential output for the node's EK, naming its AK: only the TPM
/// holding both can recover the secret inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialChallenge {
    /// TPM2B_ID_OBJECT contents.
    pub credential_blob: Bytes,
    /// TPM2B_ENCRYPTED_SECRET contents.
    pub encrypted_secret: Bytes,
}

/// The agent's answer to a [`CredentialChallenge`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationRequest {
    pub format: FormatVersion,
    /// The nonce of the enrollment the challenge belongs to.
    pub nonce: Bytes,
    /// What TPM2_ActivateCredential returned.
    pub secret: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollAnswer {
    /// Prove the AK lives in the EK's TPM (first enrollment or new AK).
    Challenge(CredentialChallenge),
    /// Known to the org but waiting for an operator (`nodes approve`).
    Pending { node_id: u64, reason: String },
    /// The node's policy, signed by the org, bound to this AK and nonce.
    Policy(SignedPolicy),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub format: FormatVersion,
    pub answer: EnrollAnswer,
}

/// The org stored the outcome report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeAck {
    pub format: FormatVersion,
    pub node_id: u64,
    pub report_id: u64,
}

/// The original flash image, sent before the first write. `evidence` is a
/// quote over a report carrying a fresh nonce and, in `flash.image_sha256`,
/// the SHA-256 of `image`: only the node's TPM can vouch for the upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupUpload {
    pub format: FormatVersion,
    pub evidence: ReportEvidence,
    pub image: Bytes,
}

/// The org holds the image (newly, or already from an earlier upload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupAck {
    pub format: FormatVersion,
    pub node_id: u64,
    /// SHA-256 the org computed over the bytes it stored.
    pub sha256: Digest32,
    pub size: u64,
    /// True when the org already had this image for this node.
    pub already_held: bool,
}

/// A node asks for one of its own backups back (to restore after an
/// interrupted write). `evidence` is a quote over a report with a fresh
/// nonce; the agent checks the answer's bytes against `sha256` itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFetch {
    pub format: FormatVersion,
    pub evidence: ReportEvidence,
    pub sha256: Digest32,
}

/// A stored backup image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupImage {
    pub format: FormatVersion,
    pub sha256: Digest32,
    pub image: Bytes,
}

macro_rules! exchange_codec {
    ($ty:ty, $what:literal) => {
        impl $ty {
            pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
                codec::encode($what, self)
            }

            pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
                codec::decode($what, bytes, EXCHANGE_FORMAT)
            }
        }
    };
}

exchange_codec!(NonceGrant, "nonce grant");
exchange_codec!(ActivationRequest, "activation request");
exchange_codec!(EnrollResponse, "enroll response");
exchange_codec!(OutcomeAck, "outcome ack");
exchange_codec!(BackupUpload, "backup upload");
exchange_codec!(BackupAck, "backup ack");
exchange_codec!(BackupFetch, "backup fetch");
exchange_codec!(BackupImage, "backup image");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_reject_garbage() {
        let r = EnrollResponse {
            format: EXCHANGE_FORMAT,
            answer: EnrollAnswer::Pending {
                node_id: 7,
                reason: "operator approval".into(),
            },
        };
        let b = r.to_bytes().unwrap();
        assert_eq!(EnrollResponse::from_bytes(&b).unwrap(), r);
        assert!(EnrollResponse::from_bytes(&b[..b.len() - 1]).is_err());
        assert!(NonceGrant::from_bytes(&[9, 0, 1]).is_err());
    }

    #[test]
    fn backup_messages_round_trip() {
        let up = BackupUpload {
            format: EXCHANGE_FORMAT,
            evidence: ReportEvidence {
                format: EXCHANGE_FORMAT,
                report: Bytes(vec![1, 2]),
                attest: Bytes(vec![3]),
                signature: Bytes(vec![4]),
            },
            image: Bytes(vec![0xFF; 4096]),
        };
        let b = up.to_bytes().unwrap();
        assert_eq!(BackupUpload::from_bytes(&b).unwrap(), up);
        assert!(BackupUpload::from_bytes(&b[..b.len() - 1]).is_err());
        let img = BackupImage {
            format: EXCHANGE_FORMAT,
            sha256: Digest32([7; 32]),
            image: Bytes(vec![1; 10]),
        };
        assert_eq!(
            BackupImage::from_bytes(&img.to_bytes().unwrap()).unwrap(),
            img
        );
    }
}

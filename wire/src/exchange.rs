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

use crate::bytes::Bytes;
use crate::codec::{self, CodecError};
use crate::envelope::SignedPolicy;
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
}

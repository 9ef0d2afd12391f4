//! What travels between node and org:
//! - [`SignedPolicy`]: the policy bytes and the org's ed25519 signature.
//! - [`ReportEvidence`]: the report bytes and the TPM quote over them.

use crate::bytes::Bytes;
use crate::codec::CodecError;
use crate::policy::Policy;
use crate::FormatVersion;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Domain separation: an org signature over a policy can never be taken for
/// a signature over anything else.
const POLICY_CONTEXT: &[u8] = b"fortros policy v1\0";

/// The envelope format (the wrapper, not the policy inside it).
pub const ENVELOPE_FORMAT: FormatVersion = FormatVersion { major: 1, minor: 0 };

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPolicy {
    pub format: FormatVersion,
    /// Postcard bytes of a [`Policy`], exactly as signed.
    pub policy: Bytes,
    /// ed25519 over `"fortros policy v1\0" || policy`.
    pub signature: Bytes,
}

/// What the node knows when it receives a policy.
#[derive(Debug, Clone)]
pub struct PolicyExpectation<'a> {
    /// TPM name of this node's AK.
    pub ak_name: &'a [u8],
    /// The nonce of the enrollment this answer belongs to.
    pub nonce: &'a [u8],
    /// Serial of the last policy applied; a new one must be greater.
    pub last_serial: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("policy envelope: {0}")]
    Codec(#[from] CodecError),
    #[error("policy envelope: signature is {0} bytes, not 64")]
    SignatureLength(usize),
    #[error("policy envelope: the org's signature does not verify")]
    BadSignature,
    #[error("policy is for another node (AK name {found}), not this one")]
    WrongNode { found: String },
    #[error("policy answers another enrollment (nonce mismatch)")]
    WrongNonce,
    #[error("policy serial {found} is not above the last applied serial {last} (replay)")]
    StaleSerial { found: u64, last: u64 },
}

impl SignedPolicy {
    /// Encodes and signs a policy with the org's key.
    pub fn sign(policy: &Policy, org_key: &SigningKey) -> Result<Self, CodecError> {
        let bytes = policy.to_bytes()?;
        let signature = org_key.sign(&signed_message(&bytes));
        Ok(SignedPolicy {
            format: ENVELOPE_FORMAT,
            policy: Bytes(bytes),
            signature: Bytes(signature.to_bytes().to_vec()),
        })
    }

    /// Checks the org's signature FIRST (nothing in an unsigned policy is
    /// looked at), then that it is for this node, this enrollment, and newer
    /// than the last one applied. Returns the policy to act on.
    pub fn verify(
        &self,
        org_key: &VerifyingKey,
        expect: &PolicyExpectation,
    ) -> Result<Policy, PolicyError> {
        let sig: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| PolicyError::SignatureLength(self.signature.0.len()))?;
        org_key
            .verify_strict(
                &signed_message(self.policy.as_slice()),
                &Signature::from_bytes(&sig),
            )
            // verify_strict: rejects weak keys and malleable signatures.
            .map_err(|_| PolicyError::BadSignature)?;
        let policy = Policy::from_bytes(self.policy.as_slice())?;
        if policy.node.ak_name.as_slice() != expect.ak_name {
            return Err(PolicyError::WrongNode {
                found: hex::encode(policy.node.ak_name.as_slice()),
            });
        }
        if policy.nonce.as_slice() != expect.nonce {
            return Err(PolicyError::WrongNonce);
        }
        if let Some(last) = expect.last_serial {
            if policy.serial <= last {
                return Err(PolicyError::StaleSerial {
                    found: policy.serial,
                    last,
                });
            }
        }
        Ok(policy)
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        crate::codec::encode("policy envelope", self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        crate::codec::decode("policy envelope", bytes, ENVELOPE_FORMAT)
    }
}

fn signed_message(policy: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(POLICY_CONTEXT.len() + policy.len());
    m.extend_from_slice(POLICY_CONTEXT);
    m.extend_from_slice(policy);
    m
}

/// The node's evidence: report bytes and a TPM2_Quote over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportEvidence {
    pub format: FormatVersion,
    /// Postcard bytes of a [`crate::Report`], exactly as quoted.
    pub report: Bytes,
    /// TPMS_ATTEST (the contents of the TPM2B_ATTEST the TPM returned).
    pub attest: Bytes,
    /// TPMT_SIGNATURE by the AK over `attest`.
    pub signature: Bytes,
}

impl ReportEvidence {
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        crate::codec::encode("report evidence", self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        crate::codec::decode("report evidence", bytes, ENVELOPE_FORMAT)
    }
}

//! Types shared by the agent and the org: the report, the policy and the
//! envelopes around them, with their signing and verification. No I/O.
//!
//! - [`report`], [`policy`]: plain data, postcard-encoded ([`codec`]).
//! - [`envelope`]: the org-signed policy (ed25519) and the node's report
//!   evidence (report bytes + TPM quote).
//! - [`tpm`]: TPM 2.0 structure marshaling shared with the agent's client.
//! - [`verify`]: org-side checks of a quote over a report.
//! - [`credential`]: MakeCredential (binding an AK to an EK).
//! - [`ekcert`]: EK certificate chain checks against configured CAs.
//! - [`me_evidence`]: report extension 1, the reasons behind the ME facts.
//!
//! The format and the verification rules are in docs/report-format.md.

pub mod bytes;
pub mod codec;
pub mod credential;
pub mod ekcert;
pub mod envelope;
pub mod exchange;
pub mod me_evidence;
pub mod policy;
pub mod report;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod tpm;
pub mod verify;

pub use bytes::{Bytes, Digest32};
pub use policy::Policy;
pub use report::Report;

use serde::{Deserialize, Serialize};

/// `major.minor` of a top-level wire value. Readers accept their own major
/// version; a newer minor only appends (see [`codec`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatVersion {
    pub major: u16,
    pub minor: u16,
}

/// The report format this crate writes and reads.
pub const REPORT_FORMAT: FormatVersion = FormatVersion { major: 1, minor: 0 };
/// The policy format this crate writes and reads.
pub const POLICY_FORMAT: FormatVersion = FormatVersion { major: 1, minor: 0 };

impl Report {
    /// The postcard bytes the quote binds.
    pub fn to_bytes(&self) -> Result<Vec<u8>, codec::CodecError> {
        codec::encode("report", self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, codec::CodecError> {
        codec::decode("report", bytes, REPORT_FORMAT)
    }

    /// Pretty JSON for people (digests and keys as hex).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The digest of the measured ME state that the agent extends into the
    /// ME-state PCR: SHA-256 of `"fortros me-state v1\0"` followed by the
    /// postcard bytes of `(flash, live_me, network)`. A verifier recomputes
    /// it from the report to replay the PCR.
    pub fn me_state_digest(&self) -> Result<[u8; 32], codec::CodecError> {
        use sha2::{Digest, Sha256};
        let body = codec::encode("ME state", &(&self.flash, &self.live_me, &self.network))?;
        let mut h = Sha256::new();
        h.update(b"fortros me-state v1\0");
        h.update(&body);
        Ok(h.finalize().into())
    }
}

impl Policy {
    pub fn to_bytes(&self) -> Result<Vec<u8>, codec::CodecError> {
        codec::encode("policy", self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, codec::CodecError> {
        codec::decode("policy", bytes, POLICY_FORMAT)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

//! The org's policy for one node: what to do with its ME. It travels inside
//! a [`crate::envelope::SignedPolicy`] and is acted on only after the
//! envelope verifies (org signature, node binding, nonce, serial).

use crate::bytes::Bytes;
use crate::FormatVersion;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub format: FormatVersion,
    /// Monotonic per node: a node refuses a serial lower than the last one
    /// it applied (replay of an old policy).
    pub serial: u64,
    pub node: NodeBinding,
    /// The nonce of the enrollment this policy answers.
    pub nonce: Bytes,
    pub action: PolicyAction,
    pub extensions: Vec<crate::report::Extension>,
}

/// Which node the policy is for: the TPM name of its attestation key
/// (`0x000b || SHA-256(TPMT_PUBLIC)`), which no other TPM can present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBinding {
    pub ak_name: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyAction {
    /// Touch nothing; report only. The default.
    Ignore,
    /// Disable the ME in flash.
    Neutralize { mode: NeutralizeMode },
    /// Provision and use AMT.
    Use { amt: AmtSettings },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NeutralizeMode {
    /// Set the HAP / AltMeDisable bit only.
    DisableBit,
    /// Set the bit and strip the ME code like me_cleaner, where allowed.
    DisableBitAndStrip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmtSettings {
    /// The AMT admin password, encrypted to this node (never plaintext in
    /// a policy, a report or a log). Opaque here; the agent's apply step
    /// defines the sealing.
    pub admin_password_sealed: Bytes,
    pub control_mode: AmtControlMode,
    /// Host interface name the ME shares, e.g. "eno1".
    pub interface: Option<String>,
    pub enable_kvm: bool,
    pub enable_sol: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AmtControlMode {
    Client,
    Admin,
}

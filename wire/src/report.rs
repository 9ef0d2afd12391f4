//! The report a node sends to its org on every boot: who it is (TPM-bound
//! identity), what it measured (flash image and live ME), what it was told
//! (policy) and what it did (actions and outcomes).
//!
//! Plain data only: strings, digests, raw registers and small enums. The
//! agent converts its own parser types into these; the org reads them.
//! Growth rules (see docs/report-format.md): new fields are appended at the
//! END of [`Report`] in a new minor format version, or carried in
//! [`Report::extensions`]; old readers ignore both.

use crate::bytes::{Bytes, Digest32};
use crate::FormatVersion;
use serde::{Deserialize, Serialize};

/// The whole report. Its postcard bytes are what the TPM quote binds
/// (extraData = SHA-256 of exactly these bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Always first, so any reader can check it before the rest.
    pub format: FormatVersion,
    pub node: NodeIdentity,
    /// The org's nonce for this enrollment, echoed back.
    pub nonce: Bytes,
    /// The agent's own boot counter (as stored by the org's last answer or
    /// the TPM's resetCount); informative, the quote's clockInfo is the
    /// TPM-backed one.
    pub boot_counter: u64,
    pub flash: Option<FlashFacts>,
    pub live_me: Option<LiveMeFacts>,
    pub network: Option<NetworkFacts>,
    pub pcrs: PcrValues,
    pub policy: Option<PolicyReceived>,
    pub actions: Vec<ActionTaken>,
    /// Tagged data added by later versions without a format change.
    pub extensions: Vec<Extension>,
}

/// The node's TPM-bound identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The attestation key: a marshaled TPMT_PUBLIC (restricted ECC P-256
    /// signing key). Its TPM name is `0x000b || SHA-256(ak_public)`.
    pub ak_public: Bytes,
    /// The endorsement key: a marshaled TPMT_PUBLIC (RSA-2048 for
    /// MakeCredential), when the agent could read it.
    pub ek_public: Option<Bytes>,
    /// The EK certificate (DER) from TPM NV, when present.
    pub ek_certificate: Option<Bytes>,
}

/// What the flash image says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashFacts {
    /// Size of the whole flash in bytes.
    pub size: u64,
    /// SHA-256 of the whole image as read.
    pub image_sha256: Digest32,
    pub regions: Vec<RegionDigest>,
    pub descriptor: Option<DescriptorFacts>,
    pub me_image: Option<MeImageFacts>,
}

/// A flash region and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionDigest {
    pub region: RegionKind,
    /// Byte offset of the first byte in the flash.
    pub base: u32,
    /// Byte offset of the last byte (inclusive, as the descriptor says).
    pub limit: u32,
    pub sha256: Digest32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegionKind {
    Descriptor,
    Bios,
    Me,
    Gbe,
    Platform,
    DeviceExpansion,
    Ec,
    /// Any other region number from the descriptor.
    Other(u8),
}

/// Facts from the flash descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorFacts {
    /// Whether the descriptor signature was found (0x0FF0A55A).
    pub valid: bool,
    /// PCH generation family name as the agent inferred it.
    pub platform: Option<String>,
    /// The HAP / AltMeDisable bit, when the layout is known.
    pub me_disable_bit: Option<bool>,
    /// Whether the host CPU/BIOS master may write the ME region (unlocked).
    pub me_region_writable_by_host: Option<bool>,
    /// Whether the descriptor region itself is writable by the host.
    pub descriptor_writable_by_host: Option<bool>,
    /// Raw master access words (FLMSTR1..), for verifiers who decode more.
    pub master_access: Vec<u32>,
}

/// What the ME region of the image holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeImageFacts {
    /// "ME", "TXE", "SPS", ... and generation, e.g. "ME 11".
    pub family: String,
    /// e.g. "11.8.50.3425".
    pub version: Option<String>,
    pub state: MeImageState,
    /// Partitions / modules present, by name, for cleaned-image checks.
    pub partitions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MeImageState {
    Stock,
    /// Stripped like me_cleaner (only the modules needed to boot).
    Cleaned,
    /// The disable bit is set (stock or cleaned code).
    DisableBitSet,
    Corrupted {
        reason: String,
    },
    Absent,
    Unknown,
}

/// What the running ME says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveMeFacts {
    /// Raw HFSTS1..HFSTS6 (PCI config 0x40, 0x48, 0x60, 0x64, 0x68, 0x6C);
    /// `None` where unreadable.
    pub hfsts: [Option<u32>; 6],
    pub state: LiveMeState,
    pub mkhi: Option<MkhiFacts>,
    pub amthi: Option<AmthiFacts>,
    pub boot_guard: Option<BootGuardFacts>,
}

/// HFSTS1 decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveMeState {
    /// Current working state field (e.g. 5 = normal).
    pub working_state: u8,
    /// Operation mode field (e.g. 0 = normal, 3 = soft temporary disable,
    /// 4 = security override / HAP-like).
    pub operation_mode: u8,
    pub error_code: u8,
    pub manufacturing_mode: bool,
    /// One word for people: "normal", "disabled", "recovery", "error", ...
    pub summary: String,
}

/// Results of MKHI requests over /dev/mei0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkhiFacts {
    pub fw_version: Option<String>,
    /// Raw firmware capabilities / feature state words.
    pub capabilities: Vec<u32>,
    /// Request-level errors, by request name.
    pub errors: Vec<String>,
}

/// Results of AMTHI requests over /dev/mei0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmthiFacts {
    /// 0 pre, 1 in, 2 post provisioning.
    pub provisioning_state: Option<u32>,
    /// 0 none, 1 client, 2 admin.
    pub control_mode: Option<u32>,
    pub uuid: Option<Bytes>,
    pub errors: Vec<String>,
}

/// Boot Guard as HFSTS6 / MSR 0x13A show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootGuardFacts {
    /// Raw MSR 0x13A (BOOT_GUARD_SACM_INFO) when readable.
    pub sacm_info_msr: Option<u64>,
    pub verified_boot: Option<bool>,
    pub measured_boot: Option<bool>,
    /// Fuses committed (field-programmed): neutralizing is refused.
    pub fpf_committed: Option<bool>,
}

/// The network side of the ME as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkFacts {
    /// The ME's own MAC address (from AMTHI LAN settings or the GbE region).
    pub me_mac: Option<Bytes>,
    /// The host NIC's MAC address sharing the wire with the ME.
    pub host_mac: Option<Bytes>,
    /// AMT TCP ports found listening (16992-16995, 623, 664, ...).
    pub amt_ports: Vec<u16>,
}

/// PCR values the quote covers, in one bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcrValues {
    /// TPM_ALG_ID of the bank (0x000B = SHA-256).
    pub bank: u16,
    /// In increasing index order, no duplicates.
    pub values: Vec<PcrValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcrValue {
    pub index: u8,
    pub digest: Bytes,
}

/// The policy the agent acted on this boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyReceived {
    pub serial: u64,
    /// SHA-256 of the policy bytes inside the signed envelope.
    pub policy_sha256: Digest32,
    /// Whether it verified (org signature, node binding, nonce, serial).
    pub accepted: bool,
    pub reason: Option<String>,
}

/// One thing the agent did, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionTaken {
    /// e.g. "extend-pcr", "set-hap", "strip-me", "provision-amt".
    pub action: String,
    pub outcome: Outcome,
    /// Digests before/after and the like, for people.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    /// Not attempted because it was unsafe or impossible, and why.
    Refused {
        reason: String,
    },
    /// Attempted and failed; `restored` says whether the original bytes are back.
    Failed {
        reason: String,
        restored: bool,
    },
    Skipped,
}

/// A tagged blob for data added without a format change. Tags are
/// allocated in docs/report-format.md; unknown tags are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub tag: u32,
    pub data: Bytes,
}

/// Extension tag of [`AmtFacts`] in [`Report::extensions`] ("AMT" 1);
/// see docs/report-format.md.
pub const EXTENSION_AMT: u32 = 0x414D_5401;

/// What the agent saw of Intel AMT and did with it under a `use` policy,
/// carried as the postcard bytes of this struct in an [`Extension`] with
/// tag [`EXTENSION_AMT`] (so older readers skip it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AmtFacts {
    /// CodeVersions "AMT", e.g. "16.1.25".
    pub amt_version: Option<String>,
    /// CodeVersions "Sku" (0x08 AMT Pro, 0x10 Standard Manageability).
    pub sku: Option<u32>,
    /// After the agent's work: 0 pre, 1 in, 2 post provisioning.
    pub provisioning_state: Option<u32>,
    /// After the agent's work: 0 none, 1 client (CCM), 2 admin (ACM).
    pub control_mode: Option<u32>,
    /// The ME's own MAC on the wired interface (what switches see).
    pub wired_mac: Option<Bytes>,
    pub link_up: Option<bool>,
    /// Every precondition (name, verdict, detail), in order.
    pub preconditions: Vec<AmtCheck>,
    /// One word: "provisioned", "already-ours", "foreign", "unprovisioned",
    /// "refused", "failed".
    pub result: String,
    /// What was done, step by step, for people.
    pub steps: Vec<String>,
    /// "org-policy" or "node-generated" when a password was set or checked.
    pub password_source: Option<String>,
    /// A node-generated admin password sealed to the org's X25519 key
    /// (`fortros_amt::seal`, context = the node's AK name). Never plaintext.
    pub sealed_password: Option<Bytes>,
}

/// One activation precondition as checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmtCheck {
    pub name: String,
    /// "pass", "fixable", "fail", "unknown", "note".
    pub verdict: String,
    pub detail: String,
}

impl AmtFacts {
    pub fn to_extension(&self) -> Result<Extension, crate::codec::CodecError> {
        let data =
            postcard::to_allocvec(self).map_err(|e| crate::codec::CodecError::Malformed {
                what: "AMT facts",
                offset: 0,
                len: 0,
                reason: e.to_string(),
            })?;
        Ok(Extension {
            tag: EXTENSION_AMT,
            data: Bytes(data),
        })
    }

    /// The AMT facts of a report, if it carries them (malformed: an error).
    pub fn from_report(report: &Report) -> Option<Result<AmtFacts, crate::codec::CodecError>> {
        let ext = report.extensions.iter().find(|e| e.tag == EXTENSION_AMT)?;
        let bytes = ext.data.as_slice();
        Some(
            postcard::from_bytes(bytes).map_err(|e| crate::codec::CodecError::Malformed {
                what: "AMT facts",
                offset: 0,
                len: bytes.len(),
                reason: e.to_string(),
            }),
        )
    }
}

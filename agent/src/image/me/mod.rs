//! The ME region: `$FPT`, `$MN2`/`$MAN` manifests, `$CPD`, IFWI layout and
//! BPDT; family, version, generation, state.
//!
//! Entry points:
//! - [`parse_me_region`]: the bytes of flash region 2 (ME), from its base.
//!   Accepts the classic layout (optional 16-byte ROM bypass, `$FPT` at 0 or
//!   0x10), the CSE layout tables "IFWI 1.6" / "IFWI 1.7" (CSME 12+), and a
//!   bare BPDT at offset 0.
//! - [`find_ifwi_in_bios`]: where a CSE firmware sits inside the BIOS region
//!   (Apollo Lake / Gemini Lake); the result is then given to
//!   [`parse_me_region`] as a sub-slice.
//!
//! Inside: `bytes` (bounded reads, erased-block map), `fpt` (`$FPT`),
//! `ifwi` (CSE layout tables, BPDT), `cpd` (`$CPD`), `manifest` and
//! `signature` (`$MN2`/`$MAN`, RSA checks), `mme` (gen 2 module table,
//! LLUT), `keys` (pinned key ids), `analyze` (the walk and the verdicts).
//! docs/me-region.md explains the states for an operator.
//!
//! Every offset in the returned values is relative to the start of the slice
//! given to [`parse_me_region`] (the "region offset"). Nothing here claims a
//! firmware is Intel-signed: a signature that verifies against the key
//! embedded in the manifest is reported as *consistent*, nothing more.

use serde::Serialize;

mod analyze;
mod bytes;
mod cpd;
mod fpt;
mod ifwi;
mod keys;
mod manifest;
mod met;
mod mme;
mod signature;
#[cfg(test)]
mod tests;

/// The ME firmware family, named as MEAnalyzer names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Family {
    /// Management Engine 1–11 on desktop/mobile PCHs (ARC core up to 10).
    #[serde(rename = "ME")]
    Me,
    /// Trusted Execution Engine 0–2 (Bay Trail, Braswell SoCs).
    #[serde(rename = "TXE")]
    Txe,
    /// Converged Security and Management Engine (ME 11+).
    #[serde(rename = "CSME")]
    Csme,
    /// Converged Security TXE (Apollo Lake, Gemini Lake).
    #[serde(rename = "CSTXE")]
    Cstxe,
    /// Server Platform Services 1–3.
    #[serde(rename = "SPS")]
    Sps,
    /// Converged Security SPS (4+: Purley, Whitley, …).
    #[serde(rename = "CSSPS")]
    Cssps,
}

/// Firmware version as every tool prints it: major.minor.hotfix.build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FwVersion {
    pub major: u16,
    pub minor: u16,
    pub hotfix: u16,
    pub build: u16,
}

impl std::fmt::Display for FwVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.major, self.minor, self.hotfix, self.build
        )
    }
}

/// The generation as me_cleaner counts it; it decides which cleaning and
/// which disable strap apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Generation {
    /// ME 1–5, SPS 1: `$MAN` manifest, code partition `CODE`.
    #[serde(rename = "1")]
    Gen1,
    /// ME 6–10, TXE 0–2, SPS 2–3: FTPR starts with `$MN2` + `$MME` modules.
    #[serde(rename = "2")]
    Gen2,
    /// CSME 11, CSTXE 3, CSSPS 4 (classic `$FPT`): FTPR starts with `$CPD`.
    #[serde(rename = "3")]
    Gen3,
    /// CSME 12+ / CSTXE 3-4 / CSSPS 5+ in an IFWI layout: beyond me_cleaner.
    #[serde(rename = "ifwi")]
    Ifwi,
}

/// The SKU type from the CSE manifest (extension 0x0C) or the gen 2 `$SKU`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkuType {
    Corporate,
    Consumer,
    Slim,
    Server,
    Other(u8),
}

/// What is known about the SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sku {
    pub sku_type: SkuType,
    /// CSME 11 only: "H" or "LP" (SKU platform bits 11:10).
    pub platform: Option<&'static str>,
    /// The raw attribute word it was decoded from.
    pub raw: u64,
}

/// How the region is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Layout {
    /// `$FPT` at `fpt_offset` (0 or 0x10); `rom_bypass` when 16 bytes precede it.
    ClassicFpt { fpt_offset: u64, rom_bypass: bool },
    /// CSE layout table 1.6 (CSME 12–14) at offset 0.
    Ifwi16,
    /// CSE layout table 1.7 (CSME 15+) at offset 0.
    Ifwi17,
    /// A bare BPDT at offset 0 (CSTXE in the BIOS region on APL/GLK).
    Bpdt,
    /// Every byte is 0xFF (or 0x00): nothing to lay out.
    Empty,
}

/// Where a partition was listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionSource {
    /// An entry of the `$FPT` (classic layout or IFWI data partition).
    Fpt,
    /// An entry of a BPDT; `boot_partition` is 1–5 (0: the bare BPDT at
    /// offset 0), `secondary` when listed by an S-BPDT.
    Bpdt { boot_partition: u8, secondary: bool },
    /// A region of the CSE layout table itself (data / boot partition).
    LayoutTable,
}

/// Whether a listed partition's bytes are in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Inside the region and not all 0xFF.
    Present,
    /// Inside the region but every byte is 0xFF (erased / removed).
    Erased,
    /// Entry marked invalid, offset 0 / 0xFFFFFFFF, or length 0: no data.
    NoData,
    /// Starts inside the region but runs past its end.
    Truncated,
    /// Starts beyond the end of the region.
    OutOfRegion,
}

/// One partition as its table lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// Name (ASCII); non-printable names are shown as `0xHHHHHHHH`.
    pub name: String,
    /// Region offset of the data (absolute, not relative to the table).
    pub offset: u64,
    pub length: u64,
    /// FPT partition type (code, data, nvram, …) or BPDT entry type name.
    pub kind: String,
    /// FPT "entry valid" byte is not 0xFF (always true for BPDT entries).
    pub valid: bool,
    pub presence: Presence,
    pub source: PartitionSource,
}

/// Which signature scheme a manifest uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    /// `$MAN`: RSA-2048, PKCS#1 v1.5, SHA-1 (gen 1).
    Rsa2048Pkcs1Sha1,
    /// `$MN2` header 0x10000: RSA-2048, PKCS#1 v1.5, SHA-256.
    Rsa2048Pkcs1Sha256,
    /// `$MN2` header 0x21000: RSA-3072, PSS, SHA-384, 48-byte salt.
    Rsa3072PssSha384,
}

/// The result of checking a manifest signature against the key embedded in
/// the same manifest. "Consistent" proves the manifest was not altered after
/// signing with *that* key; whether the key is Intel's is a separate matter
/// ([`ManifestFacts::known_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Signature {
    Consistent {
        scheme: SignatureScheme,
    },
    Inconsistent {
        scheme: SignatureScheme,
        why: String,
    },
    Unchecked {
        why: String,
    },
}

/// Facts read from one `$MN2` / `$MAN` manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestFacts {
    /// The partition (gen 2: "FTPR") or `$CPD` entry ("FTPR.man") holding it.
    pub name: String,
    /// Region offset of the manifest header.
    pub offset: u64,
    /// `$MN2` or `$MAN`.
    pub tag: String,
    /// 0x10000 (RSA-2048 layout) or 0x21000 (RSA-3072 layout).
    pub header_version: u32,
    /// Header length in bytes and total manifest size in bytes.
    pub header_length: u32,
    pub size: u32,
    pub flags: u32,
    /// Flags bit 31.
    pub debug_signed: bool,
    /// Build date as YYYY-MM-DD (BCD in the header).
    pub date: String,
    pub version: FwVersion,
    pub svn: u32,
    pub key_bits: u32,
    pub exponent: u32,
    /// SHA-256 of the modulus as stored (little-endian), hex: MEA's key id.
    pub key_sha256: String,
    /// Which known key this is, if it is in the pinned list (a label only).
    pub known_key: Option<&'static str>,
    pub signature: Signature,
}

/// How a module's data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Huffman,
    Lzma,
    Unknown,
}

/// One module: a gen 2 `$MME` header or a `$CPD` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Module {
    /// Owning partition ("FTPR", "RBEP", …).
    pub partition: String,
    pub name: String,
    /// Region offset of the data; `None` for gen 2 Huffman modules, whose
    /// data is spread over LLUT chunks.
    pub offset: Option<u64>,
    /// Stored length in bytes.
    pub length: u64,
    pub compression: Compression,
    /// False when every byte of the data is 0xFF (removed by a cleaner),
    /// or, for Huffman modules, when all of its chunks are absent.
    pub present: bool,
    /// CSE modules with a `.met`: the module's hash against its metadata,
    /// whose own hash the signed manifest lists. `None` where the format
    /// gives nothing to check against here (gen 2, CSME 12+ without `.met`).
    pub hash: Option<ModuleHash>,
}

/// A module's data against the hash its signed metadata records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum ModuleHash {
    Matches,
    Mismatch { why: String },
    Unchecked { why: String },
}

/// Facts about the `$FPT` header itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FptFacts {
    pub offset: u64,
    pub header_version: u8,
    pub header_length: u8,
    pub entry_count: u32,
    /// u32 at FPT+0x14: ME 6–10 flags (bit 0 = EFFS present); CSE: flash
    /// layout; 0x21: CRC-32.
    pub flags: u32,
    pub checksum_ok: bool,
    /// FITC version fields set (image built by Intel's FIT).
    pub fitc_version: Option<String>,
}

/// Facts about the CSE layout table / BPDT of an IFWI layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IfwiFacts {
    /// Data partition (offset, length), when the table lists one.
    pub data_partition: Option<(u64, u64)>,
    /// Boot partitions 1–5 (offset, length) as listed (absent ones omitted).
    pub boot_partitions: Vec<(u8, u64, u64)>,
    /// Layout table 1.7 CRC-32 matches (None: 1.6 / bare BPDT).
    pub table_crc_ok: Option<bool>,
}

/// The classification of the region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum RegionState {
    /// As the vendor shipped it: all expected partitions and modules present,
    /// checksums right.
    Stock,
    /// Stripped like me_cleaner does: what remains, whether the FTPR was moved
    /// towards the region start, whether the region was cut short.
    Cleaned {
        remaining_partitions: Vec<String>,
        remaining_modules: Vec<String>,
        relocated: bool,
        truncated: bool,
    },
    /// A structure is damaged: what, and where (region offset).
    Corrupted { what: String, offset: u64 },
    /// Every byte is 0xFF (or 0x00): no firmware.
    Empty,
    /// Parsed, but it fits none of the above.
    Unknown { why: String },
}

/// Everything read from an ME region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeRegion {
    pub layout: Layout,
    pub family: Option<Family>,
    pub version: Option<FwVersion>,
    pub generation: Option<Generation>,
    pub sku: Option<Sku>,
    pub fpt: Option<FptFacts>,
    pub ifwi: Option<IfwiFacts>,
    pub partitions: Vec<Partition>,
    /// The FTPR manifest first (the one that gives version and family), then
    /// any other manifests met (e.g. FTPR2.man on CSSPS 5).
    pub manifests: Vec<ManifestFacts>,
    pub modules: Vec<Module>,
    pub state: RegionState,
}

/// Why a region could not be parsed at all. Damage found *inside* a
/// recognised layout is reported as [`RegionState::Corrupted`] instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeError {
    #[error(
        "{structure} at offset {offset:#x}: needs {needed:#x} bytes, only {available:#x} available"
    )]
    Truncated {
        structure: &'static str,
        offset: u64,
        needed: u64,
        available: u64,
    },
    #[error("{structure} at offset {offset:#x}: {what}")]
    Malformed {
        structure: &'static str,
        offset: u64,
        what: String,
    },
    #[error("no ME layout at offset 0: no $FPT at 0x0/0x10, no CSE layout table, no BPDT")]
    NoLayout,
}

impl MeError {
    /// The region offset the error points at.
    pub fn offset(&self) -> u64 {
        match self {
            MeError::Truncated { offset, .. } | MeError::Malformed { offset, .. } => *offset,
            MeError::NoLayout => 0,
        }
    }
}

/// Parses an ME region (bytes from the region base).
///
/// Returns an error only when no layout can be read at all (no `$FPT`, no
/// CSE layout table, no BPDT, or the top-level table itself cut short).
/// Damage found inside a recognised layout gives `Ok` with
/// [`RegionState::Corrupted`], so the rest of what was read is still
/// reported.
pub fn parse_me_region(region: &[u8]) -> Result<MeRegion, MeError> {
    analyze::parse(region)
}

/// Finds a CSE firmware (BPDT whose FTPR entry holds a `$CPD`) inside a BIOS
/// region, as on Apollo Lake / Gemini Lake. Returns its offset within `bios`;
/// pass `&bios[offset..]` to [`parse_me_region`]. Only 4 KiB-aligned
/// offsets are tried (the IFWI sits on a flash block boundary).
pub fn find_ifwi_in_bios(bios: &[u8]) -> Option<usize> {
    (0..bios.len())
        .step_by(0x1000)
        .find(|&at| analyze::is_ifwi_at(bios, at as u64))
}

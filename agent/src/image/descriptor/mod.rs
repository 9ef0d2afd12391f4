//! The Intel flash descriptor (IFD): the first 4 KiB of an SPI image that
//! says where each region lies, who may read or write it (masters), how the
//! flash chips are wired (component section) and the PCH/CPU straps.
//!
//! Layout facts: `../shared/reference/me-image-formats.md` §2. Every read is
//! bounds-checked; a malformed descriptor gives a [`DescriptorError`] naming
//! the offset and the structure, never a panic.
//!
//! - [`read`]: bounded little-endian reads.
//! - [`component`]: FLCOMP and the flash size it implies.
//! - [`regions`]: FLREG0-15, enabled or not, overlap checks.
//! - [`masters`]: FLMSTRn read/write access per region.
//! - [`version`]: IFD v1/v2 with the evidence and how sure we are.
//! - [`platform`]: which PCH/SoC the descriptor belongs to, or "unknown".

pub mod component;
pub mod masters;
pub mod platform;
mod read;
pub mod regions;
pub mod version;

use serde::Serialize;
use thiserror::Error;

pub use component::Component;
pub use masters::Master;
pub use platform::{Platform, PlatformGuess};
pub use regions::{Region, RegionKind};
pub use version::{Confidence, IfdVersion, VersionGuess};

use read::u32_at;

/// FLVALSIG, the descriptor signature (bytes `5A A5 F0 0F`).
pub const FLVALSIG: u32 = 0x0FF0_A55A;
/// The usual size of the descriptor region; section bases must lie inside it.
pub const DESCRIPTOR_SIZE: usize = 0x1000;

/// Why a descriptor could not be parsed. Each variant names the structure
/// and the image offset involved.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DescriptorError {
    #[error("flash descriptor: no signature 0x0FF0A55A at offset 0x0 or 0x10")]
    NoSignature,
    #[error(
        "flash descriptor: {structure} at offset {offset:#x} (+{len:#x}) lies past the end of the {available:#x}-byte input"
    )]
    Truncated {
        structure: &'static str,
        offset: usize,
        len: usize,
        available: usize,
    },
    #[error("flash descriptor: {structure} base {offset:#x} points into the signature and map")]
    SectionOutOfBounds {
        structure: &'static str,
        offset: usize,
    },
    #[error(
        "flash descriptor: region {a} ({a_name}, {a_base:#x}-{a_limit:#x}) overlaps region {b} ({b_name}, {b_base:#x}-{b_limit:#x}) (FLREG at {offset:#x})"
    )]
    Overlap {
        offset: usize,
        a: u8,
        a_name: &'static str,
        a_base: u32,
        a_limit: u32,
        b: u8,
        b_name: &'static str,
        b_base: u32,
        b_limit: u32,
    },
    #[error(
        "flash descriptor: region {index} ({name}) at {base:#x}-{limit:#x} lies past the end of the {image_len:#x}-byte image (FLREG{index} at {offset:#x})"
    )]
    RegionOutOfImage {
        offset: usize,
        index: u8,
        name: &'static str,
        base: u32,
        limit: u32,
        image_len: usize,
    },
}

/// The descriptor map (FLMAP0-2, and FLMAP3 where the version has one).
/// Bases are image offsets (the field value × 16).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DescriptorMap {
    pub flmap0: u32,
    pub flmap1: u32,
    pub flmap2: u32,
    /// FLMAP3 raw; `None` on IFD v1, where this dword means something else.
    pub flmap3: Option<u32>,
    /// FLMAP0 7:0 × 16: component section base.
    pub fcba: usize,
    /// FLMAP0 9:8 + 1: number of flash chips.
    pub components: u8,
    /// FLMAP0 23:16 × 16: region section base.
    pub frba: usize,
    /// FLMAP0 26:24: number of regions (IFD v1 only; 0 on v2).
    pub nr: u8,
    /// FLMAP1 7:0 × 16: master section base.
    pub fmba: usize,
    /// FLMAP1 9:8: number of masters field.
    pub nm: u8,
    /// FLMAP1 23:16 × 16: PCH/ICH strap base (FPSBA/FISBA).
    pub fpsba: usize,
    /// FLMAP1 31:24: number of PCH strap dwords (PSL/ISL).
    pub psl: u8,
    /// FLMAP2 7:0 × 16: MCH/processor strap base.
    pub fmsba: usize,
    /// FLMAP2 15:8: number of processor strap dwords.
    pub msl: u8,
    /// FLMAP2 23:16: ICC register init base (a platform fingerprint).
    pub iccriba: u8,
}

/// A parsed flash descriptor. It borrows nothing: every field is a small
/// copy, so it can go straight into a report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Descriptor {
    /// Image offset of FLVALSIG: 0x0 (ICH8-10) or 0x10 (PCH and SoCs).
    pub signature_offset: usize,
    pub map: DescriptorMap,
    pub version: VersionGuess,
    pub platform: PlatformGuess,
    pub component: Component,
    /// Every FLREG slot the section holds, enabled or not.
    pub regions: Vec<Region>,
    pub masters: Vec<Master>,
    /// PCHSTRP0..PSL-1 (ICHSTRP on ICH8-10).
    #[serde(serialize_with = "read::hex_u32s")]
    pub pch_straps: Vec<u32>,
    /// MCHSTRP / processor straps 0..MSL-1.
    #[serde(serialize_with = "read::hex_u32s")]
    pub mch_straps: Vec<u32>,
}

impl Descriptor {
    /// Finds the signature (offset 0x10 first, then 0x0) and parses the
    /// descriptor. `bytes` is a whole image or a descriptor file: only the
    /// first 4 KiB are read. Region bounds against the image size are
    /// checked separately by [`Descriptor::check_fits`].
    pub fn parse(bytes: &[u8]) -> Result<Descriptor, DescriptorError> {
        let signature_offset = find_signature(bytes).ok_or(DescriptorError::NoSignature)?;
        let map = read_map(bytes, signature_offset)?;
        let component_flcomp = u32_at(bytes, map.fcba, "FLCOMP (component section)")?;
        let version = version::guess(signature_offset, &map, component_flcomp);
        let component = Component::parse(bytes, &map, version.version)?;
        let regions = regions::parse(bytes, &map, version.version)?;
        regions::check_overlaps(&regions)?;
        let masters = masters::parse(bytes, &map, version.version)?;
        let pch_straps = read_dwords(bytes, map.fpsba, map.psl as usize, "PCH straps (FPSBA)")?;
        let mch_straps = read_dwords(bytes, map.fmsba, map.msl as usize, "MCH straps (FMSBA)")?;
        let platform = platform::guess(signature_offset, &map, version.version);
        let mut map = map;
        if version.version != Some(IfdVersion::V2) {
            map.flmap3 = None;
        }
        Ok(Descriptor {
            signature_offset,
            map,
            version,
            platform,
            component,
            regions,
            masters,
            pch_straps,
            mch_straps,
        })
    }

    /// The region with this FLREG index, if the descriptor has that slot.
    pub fn region(&self, index: u8) -> Option<&Region> {
        self.regions.iter().find(|r| r.index == index)
    }

    /// The ME region (FLREG2) if it is enabled.
    pub fn me_region(&self) -> Option<&Region> {
        self.region(2).filter(|r| r.enabled)
    }

    /// Enabled regions, in FLREG order.
    pub fn enabled_regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter().filter(|r| r.enabled)
    }

    /// Checks that every enabled region lies inside an image of `image_len`
    /// bytes (for a full image; a descriptor file alone has no such bound).
    pub fn check_fits(&self, image_len: usize) -> Result<(), DescriptorError> {
        for r in self.enabled_regions() {
            if r.limit as usize >= image_len {
                return Err(DescriptorError::RegionOutOfImage {
                    offset: r.flreg_offset,
                    index: r.index,
                    name: r.kind.name(),
                    base: r.base,
                    limit: r.limit,
                    image_len,
                });
            }
        }
        Ok(())
    }

    /// PCHSTRPn, if the descriptor has that many straps.
    pub fn pch_strap(&self, n: usize) -> Option<u32> {
        self.pch_straps.get(n).copied()
    }

    /// MCHSTRPn, if the descriptor has that many straps.
    pub fn mch_strap(&self, n: usize) -> Option<u32> {
        self.mch_straps.get(n).copied()
    }
}

/// The signature offset, 0x10 (PCH) preferred over 0x0 (ICH8-10).
pub fn find_signature(bytes: &[u8]) -> Option<usize> {
    [0x10, 0x0]
        .into_iter()
        .find(|&off| u32_at(bytes, off, "FLVALSIG").ok() == Some(FLVALSIG))
}

fn read_map(bytes: &[u8], sig: usize) -> Result<DescriptorMap, DescriptorError> {
    let flmap0 = u32_at(bytes, sig + 4, "FLMAP0")?;
    let flmap1 = u32_at(bytes, sig + 8, "FLMAP1")?;
    let flmap2 = u32_at(bytes, sig + 12, "FLMAP2")?;
    // FLMAP3 only exists on PCH layouts; a short buffer just lacks it.
    let flmap3 = u32_at(bytes, sig + 16, "FLMAP3").ok();
    let base = |v: u32, shift: u32| (((v >> shift) & 0xFF) as usize) << 4;
    let map = DescriptorMap {
        flmap0,
        flmap1,
        flmap2,
        flmap3,
        fcba: base(flmap0, 0),
        components: ((flmap0 >> 8) & 0x3) as u8 + 1,
        frba: base(flmap0, 16),
        nr: ((flmap0 >> 24) & 0x7) as u8,
        fmba: base(flmap1, 0),
        nm: ((flmap1 >> 8) & 0x3) as u8,
        fpsba: base(flmap1, 16),
        psl: (flmap1 >> 24) as u8,
        fmsba: base(flmap2, 0),
        msl: ((flmap2 >> 8) & 0xFF) as u8,
        iccriba: ((flmap2 >> 16) & 0xFF) as u8,
    };
    // Sections pointing at the signature or the map itself are nonsense; a
    // zero base is only legal for an absent strap section (MSL/PSL 0).
    for (structure, offset, needed) in [
        ("component section (FCBA)", map.fcba, true),
        ("region section (FRBA)", map.frba, true),
        ("master section (FMBA)", map.fmba, true),
        ("PCH strap section (FPSBA)", map.fpsba, map.psl > 0),
        ("MCH strap section (FMSBA)", map.fmsba, map.msl > 0),
    ] {
        if needed && offset < sig + 0x14 {
            return Err(DescriptorError::SectionOutOfBounds { structure, offset });
        }
    }
    Ok(map)
}

fn read_dwords(
    bytes: &[u8],
    base: usize,
    count: usize,
    structure: &'static str,
) -> Result<Vec<u32>, DescriptorError> {
    (0..count)
        .map(|n| u32_at(bytes, base + 4 * n, structure))
        .collect()
}

/// The first offset above `from` at which another descriptor section starts,
/// so that a section's slot count never runs into its neighbour.
fn next_section(map: &DescriptorMap, from: usize) -> usize {
    [map.fcba, map.frba, map.fmba, map.fpsba, map.fmsba]
        .into_iter()
        .filter(|&b| b > from)
        .min()
        .unwrap_or(DESCRIPTOR_SIZE)
        .min(DESCRIPTOR_SIZE)
}

#[cfg(test)]
mod tests;

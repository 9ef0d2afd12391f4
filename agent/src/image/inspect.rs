//! `inspect`: what ME is in a flash image and in what state.
//!
//! Accepts a full SPI image, a descriptor alone or an ME region alone, and
//! combines the descriptor ([`super::descriptor`]), the ME region
//! ([`super::me`]), the disable strap ([`super::disable_bit`]), Boot Guard
//! hints ([`super::boot_guard`]) and the digests ([`super::digest`]) into
//! one serializable [`ImageReport`] whose [`State`] comes with the evidence
//! that led to it.
//!
//! Input that is not an image at all is an [`InspectError`] naming the
//! offset and the structure; damage inside a recognised image is a
//! *finding* (state `corrupted`), not an error.

use serde::Serialize;
use thiserror::Error;

use super::boot_guard::{self, BootGuardHints};
use super::descriptor::{Descriptor, DescriptorError, IfdVersion, Platform, Region};
use super::digest::{self, ImageDigests};
use super::disable_bit::{self, DisableBit, DisableState, MeHint};
use super::me::{self, Family, Generation, MeError, MeRegion, RegionState};

/// Version of the report layout; bumped when a field changes meaning.
pub const REPORT_FORMAT: u32 = 1;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InspectError {
    #[error("empty input: no flash descriptor and no ME region at offset 0x0")]
    Empty,
    /// A descriptor was found but cannot be used.
    #[error("{0}")]
    Descriptor(#[from] DescriptorError),
    /// No descriptor signature, and the bytes are not an ME region either.
    #[error("not a flash image: no descriptor signature at 0x0/0x10, and not an ME region ({0})")]
    NotAnImage(MeError),
}

impl InspectError {
    /// The input offset the error points at.
    pub fn offset(&self) -> u64 {
        match self {
            InspectError::Empty => 0,
            InspectError::NotAnImage(e) => e.offset(),
            InspectError::Descriptor(e) => match e {
                DescriptorError::NoSignature => 0,
                DescriptorError::Truncated { offset, .. }
                | DescriptorError::SectionOutOfBounds { offset, .. }
                | DescriptorError::Overlap { offset, .. }
                | DescriptorError::RegionOutOfImage { offset, .. } => *offset as u64,
            },
        }
    }
}

/// What the input turned out to be.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// Descriptor and regions.
    FullImage,
    /// A descriptor (region 0) and nothing after it.
    DescriptorOnly,
    /// The bytes of an ME region, from its base.
    MeRegionOnly,
}

/// Where the ME firmware was found (image offsets).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "where")]
pub enum MeLocation {
    /// Flash region 2, as the descriptor gives it.
    MeRegion { base: u64, len: u64 },
    /// Inside the BIOS region (Apollo/Gemini Lake: the ME region is disabled).
    BiosRegion { base: u64, len: u64 },
    /// The whole input is the ME region.
    WholeInput { len: u64 },
}

impl MeLocation {
    /// Image offset of region offset 0.
    pub fn base(&self) -> u64 {
        match *self {
            MeLocation::MeRegion { base, .. } | MeLocation::BiosRegion { base, .. } => base,
            MeLocation::WholeInput { .. } => 0,
        }
    }
}

/// The ME firmware part of the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MeFinding {
    pub location: MeLocation,
    /// The parsed region; `None` when its bytes could not be parsed.
    pub region: Option<MeRegion>,
    /// Why the region could not be parsed (offsets are image offsets).
    pub error: Option<String>,
}

/// The overall state, for an operator.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Firmware as shipped, disable strap clear (or not readable here:
    /// see the disable bit's own state).
    Stock,
    /// Firmware stripped (me_cleaner-like), disable strap clear or unknown.
    Cleaned,
    /// Firmware as shipped, disable strap (HAP / AltMeDisable) set.
    DisableBitSet,
    /// Stripped and disable strap set (me_cleaner `-S`).
    CleanedAndDisableBitSet,
    /// A structure is damaged: see the evidence.
    Corrupted,
    /// Cannot be classified: see the evidence.
    Unknown,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Stock => "stock",
            State::Cleaned => "cleaned",
            State::DisableBitSet => "disable bit set",
            State::CleanedAndDisableBitSet => "cleaned + disable bit set",
            State::Corrupted => "corrupted",
            State::Unknown => "unknown",
        }
    }
}

/// Everything `inspect` found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImageReport {
    pub format: u32,
    pub input: InputKind,
    pub state: State,
    /// Why the state is what it is, in plain words, most important first.
    pub evidence: Vec<String>,
    pub digests: ImageDigests,
    pub descriptor: Option<Descriptor>,
    pub disable_bit: Option<DisableBit>,
    pub me: Option<MeFinding>,
    pub boot_guard: Option<BootGuardHints>,
}

/// Inspects `bytes`: a full image, a descriptor alone or an ME region alone.
pub fn inspect(bytes: &[u8]) -> Result<ImageReport, InspectError> {
    inspect_as(bytes, Hashing::Digests)
}

/// [`inspect`] without the SHA-256 digests: the same parse, checks and
/// state, but `digests` holds only the size (see
/// [`digest::not_computed`]). Hashing every byte of an 8 MiB image is
/// most of `inspect`'s time; a caller that only needs the structure and
/// the state (neutralize reads its input and re-checks its output) skips
/// it. Never put such a report where digests are expected.
pub fn inspect_structure(bytes: &[u8]) -> Result<ImageReport, InspectError> {
    inspect_as(bytes, Hashing::SizeOnly)
}

/// Whether a report carries digests.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hashing {
    Digests,
    SizeOnly,
}

impl Hashing {
    fn digests(self, bytes: &[u8], regions: &[Region]) -> ImageDigests {
        match self {
            Hashing::Digests => digest::digest(bytes, regions),
            Hashing::SizeOnly => digest::not_computed(bytes.len()),
        }
    }
}

fn inspect_as(bytes: &[u8], hashing: Hashing) -> Result<ImageReport, InspectError> {
    if bytes.is_empty() {
        return Err(InspectError::Empty);
    }
    match Descriptor::parse(bytes) {
        Ok(desc) => Ok(inspect_with_descriptor(bytes, desc, hashing)?),
        Err(DescriptorError::NoSignature) => inspect_me_only(bytes, hashing),
        Err(e) => Err(e.into()),
    }
}

fn inspect_me_only(bytes: &[u8], hashing: Hashing) -> Result<ImageReport, InspectError> {
    let region = me::parse_me_region(bytes).map_err(InspectError::NotAnImage)?;
    let mut evidence = vec!["ME region alone: no descriptor, so no disable strap to read".into()];
    let state = firmware_state(&region, 0, &mut evidence);
    Ok(ImageReport {
        format: REPORT_FORMAT,
        input: InputKind::MeRegionOnly,
        state,
        evidence,
        digests: hashing.digests(bytes, &[]),
        descriptor: None,
        disable_bit: None,
        me: Some(MeFinding {
            location: MeLocation::WholeInput {
                len: bytes.len() as u64,
            },
            region: Some(region),
            error: None,
        }),
        boot_guard: None,
    })
}

fn inspect_with_descriptor(
    bytes: &[u8],
    mut desc: Descriptor,
    hashing: Hashing,
) -> Result<ImageReport, InspectError> {
    // A descriptor file is region 0 and nothing more; anything longer must
    // hold every region the descriptor lists.
    let descriptor_len = desc.region(0).map_or(0x1000, |r| r.len().max(0x1000));
    let input = if bytes.len() <= descriptor_len {
        InputKind::DescriptorOnly
    } else {
        desc.check_fits(bytes.len())?;
        InputKind::FullImage
    };
    let mut evidence = Vec::new();
    let me = (input == InputKind::FullImage)
        .then(|| find_me(bytes, &desc))
        .flatten();
    let parsed = me.as_ref().and_then(|m| m.region.as_ref());
    if let Some(region) = parsed {
        corroborate(&mut desc, region);
    }
    let hint = parsed.and_then(|r| {
        (r.family == Some(Family::Csme) && r.version.map(|v| v.major) == Some(11))
            .then_some(MeHint::Csme11)
    });
    let bit = disable_bit::read(&desc, hint);
    let state = overall_state(input, &desc, me.as_ref(), &bit, &mut evidence);
    let boot_guard = (input == InputKind::FullImage).then(|| boot_guard::hints(bytes));
    Ok(ImageReport {
        format: REPORT_FORMAT,
        input,
        state,
        evidence,
        digests: hashing.digests(bytes, &desc.regions),
        descriptor: Some(desc),
        disable_bit: Some(bit),
        me,
        boot_guard,
    })
}

/// Finds and parses the ME firmware of a full image: region 2, or, when
/// region 2 is disabled, an IFWI inside the BIOS region (APL/GLK).
fn find_me(bytes: &[u8], desc: &Descriptor) -> Option<MeFinding> {
    let (location, slice) = if let Some(r) = desc.me_region() {
        let range = r.range()?;
        let slice = bytes.get(range)?;
        (
            MeLocation::MeRegion {
                base: r.base as u64,
                len: slice.len() as u64,
            },
            slice,
        )
    } else {
        let bios = desc.region(1).filter(|r| r.enabled)?;
        let bios_bytes = bytes.get(bios.range()?)?;
        let at = me::find_ifwi_in_bios(bios_bytes)?;
        let slice = bios_bytes.get(at..)?;
        (
            MeLocation::BiosRegion {
                base: bios.base as u64 + at as u64,
                len: slice.len() as u64,
            },
            slice,
        )
    };
    Some(match me::parse_me_region(slice) {
        Ok(region) => MeFinding {
            location,
            region: Some(region),
            error: None,
        },
        Err(e) => MeFinding {
            location,
            region: None,
            error: Some(format!(
                "{e} (region offset {:#x} = image offset {:#x})",
                e.offset(),
                location.base().saturating_add(e.offset())
            )),
        },
    })
}

/// Lets the ME firmware confirm (or contradict) the descriptor's version
/// and platform guesses.
fn corroborate(desc: &mut Descriptor, region: &MeRegion) {
    let Some(family) = region.family else {
        return;
    };
    let major = region.version.map(|v| v.major);
    let label = match region.version {
        Some(v) => format!("{} {v} in the image", family_name(family)),
        None => format!("{} in the image", family_name(family)),
    };
    let cse = matches!(family, Family::Csme | Family::Cstxe | Family::Cssps)
        || region.generation == Some(Generation::Ifwi);
    desc.version.corroborate(
        if cse { IfdVersion::V2 } else { IfdVersion::V1 },
        &format!(
            "{label} ({})",
            if cse {
                "a CSE firmware"
            } else {
                "a pre-CSE firmware"
            }
        ),
    );
    use Platform::*;
    let compatible: &[Platform] = match (family, major) {
        (Family::Me, Some(1..=5)) => &[Ich8To10],
        (Family::Me, Some(6)) => &[IbexPeak],
        (Family::Me, Some(7 | 8)) => &[CougarOrPantherPoint],
        (Family::Me, Some(9 | 10)) => &[LynxPoint, WildcatPoint],
        (Family::Txe, _) => &[BayTrailOrBraswell],
        (Family::Me | Family::Csme, Some(11)) => &[SunrisePointLp, SunrisePointH],
        (Family::Csme, Some(12 | 14)) => &[CometPointLp],
        (Family::Csme, Some(15)) => &[TigerPointH],
        (Family::Csme, Some(16)) => &[AlderPointS],
        (Family::Cstxe, Some(4)) => &[GeminiLake],
        (Family::Sps | Family::Cssps, _) => &[Lewisburg],
        // CSME 13 (ICL/JSL), 18 (MTL), CSTXE 3 (APL): none of our platforms.
        _ => &[],
    };
    desc.platform.corroborate(compatible, &label);
}

fn overall_state(
    input: InputKind,
    desc: &Descriptor,
    me: Option<&MeFinding>,
    bit: &DisableBit,
    evidence: &mut Vec<String>,
) -> State {
    let bit_set = bit.state == DisableState::Set;
    let bit_line = match (bit.state, bit.bits.first()) {
        (DisableState::Unknown, _) | (_, None) => {
            format!("disable strap: unknown ({})", bit.reason)
        }
        (s, Some(_)) => format!(
            "disable strap {}: {} ({}; {})",
            bit.mechanism.unwrap_or("?"),
            match s {
                DisableState::Set => "set",
                DisableState::Clear => "clear",
                DisableState::Partial => "partly set",
                DisableState::Unknown => "unknown",
            },
            bit.bits
                .iter()
                .map(|b| format!(
                    "{} = {} at byte {:#x} bit {}",
                    b.name, b.set as u8, b.byte_offset, b.byte_bit
                ))
                .collect::<Vec<_>>()
                .join(", "),
            bit.reason
        ),
    };
    if input == InputKind::DescriptorOnly {
        evidence.push("descriptor alone: no ME firmware to classify".into());
        evidence.push(bit_line);
        return if bit_set {
            State::DisableBitSet
        } else {
            State::Unknown
        };
    }
    if bit.state == DisableState::Partial {
        evidence.push(bit_line);
        evidence.push("only part of the disable mechanism is set".into());
        return State::Unknown;
    }
    let firmware = match me {
        Some(MeFinding {
            region: Some(region),
            location,
            ..
        }) => {
            evidence.push(format!(
                "ME firmware found at image offset {:#x}",
                location.base()
            ));
            Some(firmware_state(region, location.base(), evidence))
        }
        Some(MeFinding { error: Some(e), .. }) => {
            evidence.push(format!("ME region does not parse: {e}"));
            Some(State::Corrupted)
        }
        _ => None,
    };
    let state = match firmware {
        Some(State::Stock) if bit_set => State::DisableBitSet,
        Some(State::Cleaned) if bit_set => State::CleanedAndDisableBitSet,
        Some(s) => s,
        None => {
            // No firmware: region 2 disabled and nothing in the BIOS region.
            let ich = desc.platform.platform == Some(Platform::Ich8To10);
            if ich && bit_set {
                evidence.push(
                    "ME region disabled and ICH/MCH MeDisable set: the me_cleaner result on ICH8-10"
                        .into(),
                );
                State::CleanedAndDisableBitSet
            } else {
                evidence
                    .push("ME region disabled and no ME firmware found in the BIOS region".into());
                State::Unknown
            }
        }
    };
    evidence.push(bit_line);
    state
}

/// The family as Intel and MEAnalyzer write it.
pub fn family_name(family: Family) -> &'static str {
    match family {
        Family::Me => "ME",
        Family::Txe => "TXE",
        Family::Csme => "CSME",
        Family::Cstxe => "CSTXE",
        Family::Sps => "SPS",
        Family::Cssps => "CSSPS",
    }
}

/// The state the ME region alone implies; `base` turns region offsets into
/// image offsets for the evidence.
fn firmware_state(region: &MeRegion, base: u64, evidence: &mut Vec<String>) -> State {
    let what = match (region.family, region.version) {
        (Some(f), Some(v)) => format!("{} {v}", family_name(f)),
        (Some(f), None) => format!("{}, version unknown", family_name(f)),
        _ => "firmware of unknown family".into(),
    };
    match &region.state {
        RegionState::Stock => {
            evidence.push(format!("{what}: stock (all expected partitions present)"));
            State::Stock
        }
        RegionState::Cleaned {
            remaining_partitions,
            remaining_modules,
            relocated,
            truncated,
        } => {
            evidence.push(format!(
                "{what}: cleaned; partitions left: {}; modules left: {}{}{}",
                remaining_partitions.join(", "),
                if remaining_modules.is_empty() {
                    "-".to_string()
                } else {
                    remaining_modules.join(", ")
                },
                if *relocated { "; relocated" } else { "" },
                if *truncated { "; truncated" } else { "" },
            ));
            State::Cleaned
        }
        RegionState::Corrupted { what: w, offset } => {
            evidence.push(format!(
                "{what}: corrupted: {w} at region offset {offset:#x} (image offset {:#x})",
                base.saturating_add(*offset)
            ));
            State::Corrupted
        }
        RegionState::Empty => {
            evidence.push("ME region empty (all 0xFF or 0x00): no firmware".into());
            State::Unknown
        }
        RegionState::Unknown { why } => {
            evidence.push(format!("{what}: {why}"));
            State::Unknown
        }
    }
}

#[cfg(test)]
mod tests;

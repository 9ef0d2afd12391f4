//! Deciding what may be done to an image, before any byte changes.
//!
//! Two kinds of "no": a *refusal* (the input must not be touched this way:
//! corrupted firmware, Boot Guard manifests, unknown strap location, …) is
//! an error; a step that is merely *not possible here* (IFWI layout, no
//! descriptor in an ME region file) is an error only when it is the one
//! step asked for — in the default strip+disable mode the other step still
//! runs and the plan says what was skipped and why.

use std::ops::Range;

use serde::Serialize;

use crate::image::descriptor::Descriptor;
use crate::image::disable_bit::{DisableBit, DisableState};
use crate::image::inspect::{family_name, inspect_structure, ImageReport, InputKind, MeLocation};
use crate::image::me::{Family, Generation, Layout, RegionState, Signature};

use super::{Mode, NeutralizeError, Options};

/// What the image was read as (from `inspect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Target {
    pub input: Option<InputKind>,
    /// "ME 8.0.20.1513", "CSME 14.0.10.1204", …
    pub firmware: Option<String>,
    pub generation: Option<Generation>,
    pub platform: Option<String>,
    /// Image offset and length of the ME firmware, when found.
    pub me_offset: Option<u64>,
    pub me_len: Option<u64>,
    /// The state `inspect` gives the input.
    pub state: String,
}

/// The strip flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StripKind {
    /// `$MME` modules (ME 6–10, TXE 1–2).
    Gen2,
    /// `$CPD` modules (CSME 11, CSSPS 4).
    Gen3,
}

/// What will be done.
#[derive(Debug, Clone)]
pub struct Decision {
    pub target: Target,
    pub(super) strip: Option<StripKind>,
    /// Image range of the ME region (set when stripping).
    pub(super) me_range: Range<usize>,
    pub(super) disable_bit: Option<DisableBit>,
    /// `Some(ifd_v2)` when FLMSTR2 is to be restricted.
    pub(super) restrict: Option<bool>,
    pub(super) descriptor: Option<Descriptor>,
    /// Steps not taken, with why.
    pub skipped: Vec<String>,
}

/// Why a step cannot run.
enum No {
    /// Never do it; refuse the whole run.
    Refuse(String),
    /// Not possible here; refuse only when it was the step asked for.
    Impossible(String),
    /// Nothing to do (already done).
    Done(String),
}

/// Reads `image` and decides; refusals and bad options are errors.
/// The read is `inspect` without the digests: deciding needs the
/// structure and the state, not a SHA-256 of every byte.
pub fn decide(image: &[u8], options: &Options) -> Result<Decision, NeutralizeError> {
    let report = inspect_structure(image)?;
    let mode = options.mode;
    if !mode.strips() && (options.relocate || options.truncate) {
        return Err(NeutralizeError::BadOptions(
            "relocate and truncate only go with a strip (mode strip or strip+disable)".into(),
        ));
    }
    if options.truncate && report.input != InputKind::MeRegionOnly {
        return Err(NeutralizeError::BadOptions(
            "truncate needs an ME region file: in a full image the descriptor fixes the region size"
                .into(),
        ));
    }
    let target = target(&report);
    let mut skipped = Vec::new();
    let mut impossible = Vec::new();
    let mut already_done = false;
    let mut note = |step: &str, no: No, alone: bool| -> Result<(), NeutralizeError> {
        match no {
            No::Refuse(why) => Err(NeutralizeError::Refused(format!("{step}: {why}"))),
            No::Impossible(why) if alone => Err(NeutralizeError::Refused(format!("{step}: {why}"))),
            No::Impossible(why) => {
                impossible.push(format!("{step}: {why}"));
                skipped.push(format!("{step}: {why}"));
                Ok(())
            }
            No::Done(why) => {
                already_done = true;
                skipped.push(format!("{step}: {why}"));
                Ok(())
            }
        }
    };

    let mut strip = None;
    let mut me_range = 0..0;
    if mode.strips() {
        match strip_check(&report, options) {
            Ok((kind, range)) => {
                strip = Some(kind);
                me_range = range;
            }
            Err(no) => note("strip", no, mode == Mode::Strip)?,
        }
    }
    let mut disable_bit = None;
    if mode.disables() {
        match bit_check(&report) {
            Ok(bit) => disable_bit = Some(bit),
            Err(no) => note("disable bit", no, mode == Mode::Disable)?,
        }
    }
    let mut restrict = None;
    if options.restrict_me_access {
        if report.descriptor.is_none() {
            return Err(NeutralizeError::BadOptions(
                "restricting the ME's flash access needs a descriptor (a full image)".into(),
            ));
        }
        restrict = Some(match target.generation {
            Some(Generation::Gen2) => false,
            Some(Generation::Gen3) => true,
            _ => return Err(NeutralizeError::Refused(
                "restrict ME access: the FLMSTR2 value is known for gen 2 and gen 3 firmware only"
                    .into(),
            )),
        });
    }
    // Every step asked for is impossible: say so rather than return the
    // input unchanged as if it had been neutralized.
    let nothing = strip.is_none() && disable_bit.is_none() && restrict.is_none();
    if nothing && !already_done && !impossible.is_empty() {
        return Err(NeutralizeError::Refused(format!(
            "nothing can be done: {}",
            impossible.join("; ")
        )));
    }
    Ok(Decision {
        target,
        strip,
        me_range,
        disable_bit,
        restrict,
        descriptor: report.descriptor,
        skipped,
    })
}

fn target(report: &ImageReport) -> Target {
    let me = report.me.as_ref();
    let region = me.and_then(|m| m.region.as_ref());
    let (me_offset, me_len) = match me.map(|m| m.location) {
        Some(MeLocation::MeRegion { base, len } | MeLocation::BiosRegion { base, len }) => {
            (Some(base), Some(len))
        }
        Some(MeLocation::WholeInput { len }) => (Some(0), Some(len)),
        None => (None, None),
    };
    Target {
        input: Some(report.input),
        firmware: region.and_then(|r| {
            let f = family_name(r.family?);
            Some(match r.version {
                Some(v) => format!("{f} {v}"),
                None => f.to_string(),
            })
        }),
        generation: region.and_then(|r| r.generation),
        platform: report
            .descriptor
            .as_ref()
            .and_then(|d| d.platform.platform)
            .map(|p| p.name().to_string()),
        me_offset,
        me_len,
        state: report.state.name().to_string(),
    }
}

/// May the ME firmware be stripped? Gives the flavour and the image range
/// of the ME region.
fn strip_check(report: &ImageReport, options: &Options) -> Result<(StripKind, Range<usize>), No> {
    use No::*;
    if let Some(bg) = &report.boot_guard {
        if (bg.key_manifest || bg.boot_policy_manifest) && !options.allow_boot_guard {
            return Err(Refuse(
                "the BIOS region's FIT lists Boot Guard manifests (types 0x0B/0x0C): a Boot Guard \
                 platform may not boot with a stripped ME; set only the disable bit (--mode disable) \
                 or override with --allow-boot-guard"
                    .into(),
            ));
        }
    }
    let Some(me) = &report.me else {
        return Err(Impossible(match report.input {
            InputKind::DescriptorOnly => "a descriptor alone holds no ME firmware".into(),
            _ => "no ME firmware in the image (ME region disabled or absent)".into(),
        }));
    };
    let (base, len) = match me.location {
        MeLocation::MeRegion { base, len } => (base, len),
        MeLocation::WholeInput { len } => (0, len),
        MeLocation::BiosRegion { .. } => {
            return Err(Impossible(
                "the CSE firmware is an IFWI inside the BIOS region (Apollo/Gemini Lake); \
                 stripping it is not supported"
                    .into(),
            ))
        }
    };
    let Some(region) = &me.region else {
        return Err(Refuse(format!(
            "the ME region does not parse: {}",
            me.error.as_deref().unwrap_or("unknown error")
        )));
    };
    let what = match (region.family, region.version) {
        (Some(f), Some(v)) => format!("{} {v}", family_name(f)),
        _ => "the ME firmware".into(),
    };
    match &region.state {
        RegionState::Corrupted { what: w, offset } => {
            return Err(Refuse(format!(
                "{what} is corrupted: {w} at region offset {offset:#x}"
            )))
        }
        RegionState::Cleaned {
            remaining_partitions,
            ..
        } => {
            return Err(Done(format!(
                "{what} is already cleaned (partitions left: {}); left alone",
                remaining_partitions.join(", ")
            )))
        }
        RegionState::Empty => return Err(Impossible("the ME region is empty".into())),
        RegionState::Unknown { why } => {
            return Err(Refuse(format!("{what}: state unknown ({why})")))
        }
        RegionState::Stock => {}
    }
    let kind = match region.generation {
        Some(Generation::Gen2) => StripKind::Gen2,
        Some(Generation::Gen3) => StripKind::Gen3,
        Some(Generation::Ifwi) => {
            return Err(Impossible(format!(
                "{what} uses the IFWI layout (CSME 12+); its modules cannot be removed \
                 without breaking the boot, so stripping is not supported"
            )))
        }
        Some(Generation::Gen1) => {
            return Err(Refuse(format!(
                "{what} is gen 1 (ME 1-5); stripping gen 1 is not supported"
            )))
        }
        None => return Err(Refuse("the ME firmware generation is unknown".into())),
    };
    if region.family == Some(Family::Me) && region.version.map(|v| v.major) == Some(6) {
        return Err(Refuse(format!(
            "{what}: ME 6 (and its Ignition variant) is not supported: no image to verify against"
        )));
    }
    if !matches!(
        region.layout,
        Layout::ClassicFpt {
            fpt_offset: 0x10,
            ..
        }
    ) {
        return Err(Refuse(
            "the $FPT is not at region offset 0x10 (no ROM bypass): not a layout we strip".into(),
        ));
    }
    if !region.fpt.as_ref().is_some_and(|f| f.checksum_ok) {
        return Err(Refuse("the $FPT header checksum is wrong".into()));
    }
    match region.manifests.first() {
        Some(m) if matches!(m.signature, Signature::Consistent { .. }) => {}
        Some(m) => {
            return Err(Refuse(format!(
                "{} at region offset {:#x} does not verify against its embedded key; \
                 a strip could not be checked",
                m.name, m.offset
            )))
        }
        None => return Err(Refuse("no FTPR manifest found".into())),
    }
    let start = usize::try_from(base).map_err(|_| Refuse("ME region offset too large".into()))?;
    let end = usize::try_from(base + len).map_err(|_| Refuse("ME region too large".into()))?;
    Ok((kind, start..end))
}

/// May the disable bit be set, and where is it?
fn bit_check(report: &ImageReport) -> Result<DisableBit, No> {
    use No::*;
    let Some(bit) = &report.disable_bit else {
        return Err(Impossible(
            "an ME region file has no descriptor, where the disable strap lives; \
             run on a full image or the descriptor"
                .into(),
        ));
    };
    match bit.state {
        DisableState::Unknown => Err(Refuse(format!(
            "{}; the strap location is never guessed",
            bit.reason
        ))),
        DisableState::Set => Err(Done(format!(
            "{} already set",
            bit.mechanism.unwrap_or("disable strap")
        ))),
        DisableState::Clear | DisableState::Partial => Ok(bit.clone()),
    }
}

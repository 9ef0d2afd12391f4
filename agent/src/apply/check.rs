//! The platform check before a neutralize write: is this a flash we know
//! how to change, and does the live ME agree with what the image says?
//!
//! Pure logic over the image's inspection and a few live facts, so it is
//! unit-tested without hardware. The strip's own refusals (Boot Guard
//! manifests in the FIT, corrupted firmware, IFWI layouts, ...) stay in
//! [`crate::image::neutralize`]; this adds what only the node can know.

use crate::hw::mei::classify::MeState;
use crate::hw::mei::probe::LiveMe;
use crate::image::disable_bit::DisableState;
use crate::image::inspect::{ImageReport, InputKind};
use fortros_wire::policy::NeutralizeMode;
use serde::Serialize;

/// What the live ME showed at this boot, as far as applying a policy
/// needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LiveFacts {
    /// The live ME state; `None` when it was not probed.
    pub state: Option<MeState>,
    /// The running firmware's version as MKHI reports it ("11.8.82.3838").
    pub fw_version: Option<String>,
    /// Boot Guard verified boot per MSR 0x13A bit 6; `None` when unreadable.
    pub boot_guard_verified: Option<bool>,
}

impl LiveFacts {
    /// The facts from the boot's probe.
    pub fn from_probe(live: &LiveMe) -> Self {
        LiveFacts {
            state: Some(live.classification.state),
            fw_version: live
                .mkhi
                .as_ref()
                .and_then(|m| m.fw_version.as_ref().ok())
                .map(|v| v.code.to_string()),
            boot_guard_verified: live.boot_guard_msr.as_ref().map(|m| m.verified_boot),
        }
    }
}

/// The check passed: the platform's name and notes for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    pub platform: String,
    /// Things the operator should know that do not stop the write.
    pub notes: Vec<String>,
}

/// Checks that neutralizing `report`'s image in `mode` is safe on this node.
/// `Err` is the refusal's reason, one sentence.
pub fn platform_check(
    report: &ImageReport,
    mode: NeutralizeMode,
    live: &LiveFacts,
) -> Result<Passed, String> {
    let mut notes = Vec::new();
    if report.input != InputKind::FullImage {
        return Err(format!(
            "the flash does not read as a full image with a descriptor ({:?})",
            report.input
        ));
    }
    let platform = report
        .descriptor
        .as_ref()
        .and_then(|d| d.platform.platform)
        .ok_or("the platform (chipset) cannot be told from the descriptor")?;
    let bit = report
        .disable_bit
        .as_ref()
        .ok_or("the disable strap could not be read")?;
    if bit.state == DisableState::Unknown {
        return Err(format!(
            "the disable strap's location is not known for {}: {}",
            platform.name(),
            bit.reason
        ));
    }
    if mode == NeutralizeMode::DisableBitAndStrip && live.boot_guard_verified == Some(true) {
        return Err(
            "Boot Guard verified boot is active (MSR 0x13A bit 6): a stripped ME may stop the \
             platform from booting; use the disable bit only"
                .into(),
        );
    }
    match (live.state, bit.state) {
        (Some(MeState::DisabledByHap), DisableState::Clear) => {
            return Err(format!(
                "the live ME reports it was stopped by the disable strap, but the image's {} \
                 strap reads clear: the strap location does not match this board",
                bit.mechanism.unwrap_or("disable")
            ))
        }
        (Some(MeState::Normal), DisableState::Set) => notes.push(
            "the disable bit is set in flash while the ME still runs: it takes effect at the \
             next power cycle"
                .into(),
        ),
        (Some(MeState::Override), _) => {
            notes.push("the live ME reports a security override (ME region writable)".into())
        }
        _ => {}
    }
    let image_version = report
        .me
        .as_ref()
        .and_then(|m| m.region.as_ref())
        .and_then(|r| r.version)
        .map(|v| v.to_string());
    if let (Some(live_v), Some(image_v)) = (&live.fw_version, &image_version) {
        if live_v != image_v {
            return Err(format!(
                "the running ME firmware is {live_v} but the flash holds {image_v}: the image read \
                 is not the firmware that runs (or an update is pending)"
            ));
        }
    }
    if live.state.is_none() || live.state == Some(MeState::AbsentOrHidden) {
        notes.push("the live ME was not seen: the image alone decided".into());
    }
    Ok(Passed {
        platform: platform.name().to_string(),
        notes,
    })
}

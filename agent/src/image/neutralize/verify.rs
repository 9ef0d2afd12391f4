//! The result is parsed again before it is returned: it must be an image
//! `inspect` reads, only the bytes we meant may differ, a stripped ME must
//! read as cleaned with a valid `$FPT`, an FTPR manifest that still
//! verifies (RSA) and exactly the partitions and modules the plan removed
//! gone, and a disable bit we set must read as set.
//!
//! The re-parse skips `inspect`'s SHA-256 digests: none of the checks
//! reads them, and hashing the whole image was most of the cost. Which
//! bytes changed is known exactly from the byte-for-byte diff of input
//! and output (`Plan::changed`), a stronger check than a digest.

use crate::image::disable_bit::DisableState;
use crate::image::inspect::inspect_structure;
use crate::image::me::{MeRegion, Presence, RegionState, Signature};

use super::partitions::PartitionFate;
use super::plan::Decision;
use super::{NeutralizeError, Plan};

/// Returns the state `inspect` gives the output.
pub(super) fn verify(
    _input: &[u8],
    out: &[u8],
    d: &Decision,
    plan: &Plan,
) -> Result<String, NeutralizeError> {
    let fail = |what: String| Err(NeutralizeError::CheckFailed(what));
    // 1. Nothing outside the ME region, the strap bytes and FLMSTR2.
    let me = d
        .strip
        .map(|_| d.me_range.start as u64..d.me_range.end as u64);
    for r in &plan.changed {
        let in_me = me
            .as_ref()
            .is_some_and(|m| m.start <= r.start && r.end <= m.end);
        let strap = plan
            .disable_bit
            .iter()
            .any(|c| c.byte_offset <= r.start && r.end <= c.byte_offset + 1);
        let master = plan
            .me_master
            .as_ref()
            .is_some_and(|c| c.offset <= r.start && r.end <= c.offset + 4);
        if !(in_me || strap || master) {
            return fail(format!(
                "bytes {:#x}..{:#x} changed outside what the plan allows",
                r.start, r.end
            ));
        }
    }
    let report = match inspect_structure(out) {
        Ok(r) => r,
        Err(e) => return fail(format!("the output does not parse: {e}")),
    };
    // 2. A stripped ME reads as cleaned, with a valid FPT and FTPR manifest,
    //    and what the plan removed is gone, what it kept is there.
    if d.strip.is_some() {
        let Some(region) = report.me.as_ref().and_then(|m| m.region.as_ref()) else {
            return fail("the stripped ME region does not parse".into());
        };
        if !region.fpt.as_ref().is_some_and(|f| f.checksum_ok) {
            return fail("the stripped $FPT checksum is wrong".into());
        }
        match region.manifests.first() {
            Some(m) if matches!(m.signature, Signature::Consistent { .. }) => {}
            _ => return fail("the FTPR manifest no longer verifies".into()),
        }
        if !matches!(region.state, RegionState::Cleaned { .. }) {
            return fail(format!(
                "the stripped ME region reads as {:?}, not cleaned",
                region.state
            ));
        }
        if let Err(what) = removed_as_planned(region, plan) {
            return fail(what);
        }
    }
    // 3. A disable bit we set reads as set.
    if d.disable_bit.is_some()
        && report.disable_bit.as_ref().map(|b| b.state) != Some(DisableState::Set)
    {
        return fail("the disable strap does not read as set".into());
    }
    Ok(report.state.name().to_string())
}

/// The re-parsed region against the plan: every partition the plan erased
/// is no longer listed with data, the kept one is; every module the plan
/// erased reads as absent, every module it kept as present.
fn removed_as_planned(region: &MeRegion, plan: &Plan) -> Result<(), String> {
    let has_data = |name: &str| {
        region.partitions.iter().any(|p| {
            p.name == name && matches!(p.presence, Presence::Present | Presence::Truncated)
        })
    };
    for p in &plan.partitions {
        match p.action {
            PartitionFate::Kept if !has_data(&p.name) => {
                return Err(format!(
                    "kept partition {} has no data after the strip",
                    p.name
                ))
            }
            PartitionFate::Removed if has_data(&p.name) => {
                return Err(format!(
                    "partition {} still has data after the strip",
                    p.name
                ))
            }
            _ => {}
        }
    }
    for m in &plan.modules {
        let Some(found) = region.modules.iter().find(|r| r.name == m.name) else {
            return Err(format!("module {} is no longer listed", m.name));
        };
        if found.present == m.removed {
            return Err(format!(
                "module {} reads as {} after the strip, but the plan {} it",
                m.name,
                if found.present { "present" } else { "absent" },
                if m.removed { "removed" } else { "kept" }
            ));
        }
    }
    Ok(())
}

//! The result is parsed again before it is returned: it must be an image
//! `inspect` reads, only the bytes we meant may differ, a stripped ME must
//! read as cleaned with a valid `$FPT` and an FTPR manifest that still
//! verifies, and a disable bit we set must read as set.

use crate::image::disable_bit::DisableState;
use crate::image::inspect::inspect;
use crate::image::me::{RegionState, Signature};

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
    let report = match inspect(out) {
        Ok(r) => r,
        Err(e) => return fail(format!("the output does not parse: {e}")),
    };
    // 2. A stripped ME reads as cleaned, with a valid FPT and FTPR manifest.
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
    }
    // 3. A disable bit we set reads as set.
    if d.disable_bit.is_some()
        && report.disable_bit.as_ref().map(|b| b.state) != Some(DisableState::Set)
    {
        return fail("the disable strap does not read as set".into());
    }
    Ok(report.state.name().to_string())
}

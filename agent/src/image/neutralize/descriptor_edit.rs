//! Edits to the flash descriptor: the disable strap (HAP / AltMeDisable)
//! at the location the per-platform table gives, and the ME master's access
//! rights (me_cleaner `-d`). Both only OR/AND bits of one dword; the caller
//! has already refused platforms whose strap location is unknown.

use serde::Serialize;

use crate::image::descriptor::Descriptor;
use crate::image::disable_bit::DisableBit;

use super::bytes::{put, put_u32, u32_at};
use super::NeutralizeError;

/// One byte of the descriptor that changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StrapChange {
    /// "PCHSTRP10 bit 7" etc.
    pub name: String,
    /// Image offset of the byte and the bit in it.
    pub byte_offset: u64,
    pub byte_bit: u8,
    pub before: u8,
    pub after: u8,
}

/// Sets every bit of the disable mechanism `bit` describes. Returns the
/// bytes that changed (none when already set).
pub(super) fn set_disable_bit(
    image: &mut [u8],
    bit: &DisableBit,
) -> Result<Vec<StrapChange>, NeutralizeError> {
    let mut changes = Vec::new();
    for b in &bit.bits {
        let at = b.byte_offset as u64;
        let before = super::bytes::get(image, at, 1, "descriptor strap")?[0];
        let after = before | 1 << b.byte_bit;
        if after != before {
            put(image, at, &[after], "descriptor strap")?;
            changes.push(StrapChange {
                name: b.name.clone(),
                byte_offset: at,
                byte_bit: b.byte_bit,
                before,
                after,
            });
        }
    }
    Ok(changes)
}

/// The ME master's access word after me_cleaner `-d`, on the descriptor
/// layout of a gen 2 (IFD v1) or gen 3 (IFD v2) platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MasterChange {
    /// Image offset of FLMSTR2.
    pub offset: u64,
    pub before: u32,
    pub after: u32,
}

/// Restricts FLMSTR2 (the ME) to reading and writing the ME region only
/// (and, on IFD v2, reading the descriptor), as me_cleaner `-d` does.
pub(super) fn restrict_me_master(
    image: &mut [u8],
    desc: &Descriptor,
    ifd_v2: bool,
) -> Result<Option<MasterChange>, NeutralizeError> {
    let offset = desc.map.fmba as u64 + 4;
    let before = u32_at(image, offset, "FLMSTR2")?;
    let after = if ifd_v2 {
        // Read: descriptor (bit 8) and ME (bit 10); write: ME (bit 22).
        0x0040_0500
    } else {
        // Keep the requester ID; read and write the ME region (2) only.
        (before | 0x0404_0000) & 0x0404_FFFF
    };
    if after == before {
        return Ok(None);
    }
    put_u32(image, offset, after, "FLMSTR2")?;
    Ok(Some(MasterChange {
        offset,
        before,
        after,
    }))
}

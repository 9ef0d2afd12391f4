//! The component section (FCBA): FLCOMP says how many flash chips there are
//! and how big; FLILL lists opcodes the controller refuses.

use serde::Serialize;

use super::read::u32_at;
use super::{DescriptorError, DescriptorMap, IfdVersion};

/// FLCOMP decoded, with the raw dwords kept for the record.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Component {
    pub flcomp: u32,
    /// FLILL: invalid (forbidden) instructions.
    pub flill: u32,
    /// FLPB on IFD v1, FLILL1 on v2.
    pub flpb_or_flill1: u32,
    /// Number of chips (FLMAP0.NC + 1).
    pub chips: u8,
    /// Size in bytes of each chip that FLCOMP encodes; `None` for "unused"
    /// or an encoding we do not know.
    pub chip_sizes: Vec<Option<u64>>,
    /// Sum of the chip sizes, when every chip's size is known.
    pub total_size: Option<u64>,
    /// FLCOMP 19:17, the read-clock field (its meaning changed on 500-series).
    pub read_clock: u8,
}

impl Component {
    pub(crate) fn parse(
        bytes: &[u8],
        map: &DescriptorMap,
        version: Option<IfdVersion>,
    ) -> Result<Component, DescriptorError> {
        let flcomp = u32_at(bytes, map.fcba, "FLCOMP (component section)")?;
        let flill = u32_at(bytes, map.fcba + 4, "FLILL (component section)")?;
        let flpb_or_flill1 = u32_at(bytes, map.fcba + 8, "FLPB/FLILL1 (component section)")?;
        // v1 packs each density in 3 bits, v2 in 4; an unknown version is
        // decoded as v2, whose 0xF "unused" code is the safer reading.
        let (width, mask) = match version {
            Some(IfdVersion::V1) => (3, 0x7),
            _ => (4, 0xF),
        };
        let chip_sizes: Vec<Option<u64>> = (0..map.components as u32)
            .map(|i| density_bytes((flcomp >> (i * width)) & mask))
            .collect();
        let total_size = chip_sizes.iter().copied().sum::<Option<u64>>();
        Ok(Component {
            flcomp,
            flill,
            flpb_or_flill1,
            chips: map.components,
            chip_sizes,
            total_size,
            read_clock: ((flcomp >> 17) & 0x7) as u8,
        })
    }
}

/// Density code to bytes: 0 = 512 KiB, doubling up to 7 = 64 MiB.
fn density_bytes(code: u32) -> Option<u64> {
    (code <= 7).then(|| (512 * 1024u64) << code)
}

//! The region section (FRBA): FLREG0-15, each a base and an inclusive limit
//! in 4 KiB units. A slot whose limit is below its base, or whose base field
//! is all ones, is a disabled region (the ME region is disabled this way on
//! Apollo/Gemini Lake, and by me_cleaner on ICH8-10).

use serde::Serialize;

use super::read::u32_at;
use super::{next_section, DescriptorError, DescriptorMap, IfdVersion};

/// What FLREGn is for, by its index (§2.4 of the reference).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RegionKind {
    Descriptor,
    Bios,
    Me,
    Gbe,
    PlatformData,
    DeviceExpansion1,
    SecondaryBios,
    Reserved7,
    Ec,
    DeviceExpansion2,
    InnovationEngine,
    TenGbe0,
    TenGbe1,
    Reserved13,
    Reserved14,
    Ptt,
}

impl RegionKind {
    pub fn from_index(index: u8) -> RegionKind {
        use RegionKind::*;
        [
            Descriptor,
            Bios,
            Me,
            Gbe,
            PlatformData,
            DeviceExpansion1,
            SecondaryBios,
            Reserved7,
            Ec,
            DeviceExpansion2,
            InnovationEngine,
            TenGbe0,
            TenGbe1,
            Reserved13,
            Reserved14,
            Ptt,
        ]
        .get(index as usize)
        .copied()
        .unwrap_or(Reserved14)
    }

    /// A short human name, as tables print it.
    pub fn name(self) -> &'static str {
        use RegionKind::*;
        match self {
            Descriptor => "descriptor",
            Bios => "BIOS",
            Me => "ME",
            Gbe => "GbE",
            PlatformData => "platform data",
            DeviceExpansion1 => "device expansion 1",
            SecondaryBios => "secondary BIOS",
            Reserved7 => "reserved 7",
            Ec => "EC",
            DeviceExpansion2 => "device expansion 2",
            InnovationEngine => "IE",
            TenGbe0 => "10GbE 0",
            TenGbe1 => "10GbE 1",
            Reserved13 => "reserved 13",
            Reserved14 => "reserved 14",
            Ptt => "PTT",
        }
    }
}

/// One FLREG slot.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Region {
    pub index: u8,
    pub kind: RegionKind,
    /// Image offset of this FLREG dword.
    pub flreg_offset: usize,
    pub raw: u32,
    /// First byte (image offset).
    pub base: u32,
    /// Last byte, inclusive (image offset).
    pub limit: u32,
    /// False for "limit below base" or an all-ones base field.
    pub enabled: bool,
}

impl Region {
    /// Size in bytes (0 when disabled).
    pub fn len(&self) -> usize {
        if self.enabled {
            (self.limit - self.base) as usize + 1
        } else {
            0
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The byte range `base..limit+1`, for enabled regions.
    pub fn range(&self) -> Option<std::ops::Range<usize>> {
        self.enabled
            .then(|| self.base as usize..self.limit as usize + 1)
    }
}

/// Reads every FLREG slot the section holds: 5 on IFD v1 (ifdtool), up to
/// 16 on v2, never past the next section.
pub(crate) fn parse(
    bytes: &[u8],
    map: &DescriptorMap,
    version: Option<IfdVersion>,
) -> Result<Vec<Region>, DescriptorError> {
    let max = if version == Some(IfdVersion::V1) {
        5
    } else {
        16
    };
    let room = (next_section(map, map.frba) - map.frba) / 4;
    let count = max.min(room).max(1);
    (0..count)
        .map(|n| {
            let flreg_offset = map.frba + 4 * n;
            let raw = u32_at(bytes, flreg_offset, "FLREG (region section)")?;
            // 15-bit fields as me_cleaner reads them; bits above are reserved.
            let base_field = raw & 0x7FFF;
            let limit_field = (raw >> 16) & 0x7FFF;
            let base = base_field << 12;
            let limit = (limit_field << 12) | 0xFFF;
            let enabled = limit_field >= base_field && base_field != 0x7FFF;
            Ok(Region {
                index: n as u8,
                kind: RegionKind::from_index(n as u8),
                flreg_offset,
                raw,
                base,
                limit,
                enabled,
            })
        })
        .collect()
}

/// Refuses a descriptor whose enabled regions overlap: no real layout does,
/// and a parser that let it pass would hand two owners the same bytes.
pub(crate) fn check_overlaps(regions: &[Region]) -> Result<(), DescriptorError> {
    let enabled: Vec<&Region> = regions.iter().filter(|r| r.enabled).collect();
    for (i, a) in enabled.iter().enumerate() {
        for b in enabled.iter().skip(i + 1) {
            if a.base <= b.limit && b.base <= a.limit {
                return Err(DescriptorError::Overlap {
                    offset: b.flreg_offset,
                    a: a.index,
                    a_name: a.kind.name(),
                    a_base: a.base,
                    a_limit: a.limit,
                    b: b.index,
                    b_name: b.kind.name(),
                    b_base: b.base,
                    b_limit: b.limit,
                });
            }
        }
    }
    Ok(())
}

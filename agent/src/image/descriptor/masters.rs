//! The master section (FMBA): FLMSTRn says which regions each bus master
//! (host CPU, ME, GbE, EC) may read and write. The descriptor is "locked"
//! for the host when FLMSTR1 lacks write access to region 0.

use serde::Serialize;

use super::read::u32_at;
use super::{next_section, DescriptorError, DescriptorMap, IfdVersion};

/// One FLMSTR dword, decoded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Master {
    /// n of FLMSTRn (1-based, as the datasheets count).
    pub number: u8,
    pub name: &'static str,
    /// Image offset of this dword.
    pub offset: usize,
    pub raw: u32,
    /// Region indices this master may read.
    pub read: Vec<u8>,
    /// Region indices this master may write.
    pub write: Vec<u8>,
}

impl Master {
    pub fn can_read(&self, region: u8) -> bool {
        self.read.contains(&region)
    }
    pub fn can_write(&self, region: u8) -> bool {
        self.write.contains(&region)
    }
}

fn master_name(number: u8) -> &'static str {
    match number {
        1 => "host CPU/BIOS",
        2 => "ME",
        3 => "GbE",
        4 => "reserved",
        5 => "EC",
        _ => "other",
    }
}

/// Reads FLMSTR1-3 on IFD v1, FLMSTR1-5 on v2 (never past the next section).
/// v1: read bits 23:16, write 31:24 for regions 0-7. v2: read bits 19:8,
/// write 31:20 for regions 0-11; bits 7:0 (regions 12-15 on platforms with
/// extended regions, requester ID otherwise) stay in `raw` only, because
/// their meaning depends on a platform we may not know.
pub(crate) fn parse(
    bytes: &[u8],
    map: &DescriptorMap,
    version: Option<IfdVersion>,
) -> Result<Vec<Master>, DescriptorError> {
    let (wanted, read_shift, write_shift, regions) = match version {
        Some(IfdVersion::V1) => (3, 16, 24, 8),
        _ => (5, 8, 20, 12),
    };
    let room = (next_section(map, map.fmba) - map.fmba) / 4;
    (0..wanted.min(room).max(1))
        .map(|i| {
            let offset = map.fmba + 4 * i;
            let raw = u32_at(bytes, offset, "FLMSTR (master section)")?;
            let bits = |shift: u32| -> Vec<u8> {
                (0..regions)
                    .filter(|n| raw & (1 << (shift + n)) != 0)
                    .map(|n| n as u8)
                    .collect()
            };
            let number = i as u8 + 1;
            Ok(Master {
                number,
                name: master_name(number),
                offset,
                raw,
                read: bits(read_shift),
                write: bits(write_shift),
            })
        })
        .collect()
}

//! The `$FPT` flash partition table: header (both lengths), its checksum
//! (checksum8, or CRC-32 on header version 0x21) and its 32-byte entries.

use super::bytes::{has_tag, name, slice, sum8, u16_at, u32_at, u8_at, ErasedMap};
use super::{FptFacts, MeError, Partition, PartitionSource, Presence};

const HEADER: &str = "$FPT header";
const ENTRY: &str = "$FPT entry";
/// More entries than any real table holds (the largest seen is ~20): a
/// count above this is damage, not a table.
const MAX_ENTRIES: u32 = 256;
const ENTRY_LEN: u64 = 0x20;

/// One FPT entry, offsets already made region-absolute.
#[derive(Debug, Clone)]
pub(crate) struct FptEntry {
    pub name: String,
    /// Region offset of the entry itself (for error reports).
    pub entry_offset: u64,
    pub offset: u64,
    pub length: u64,
    pub part_type: u8,
    pub valid: bool,
    /// Raw offset field (0 / 0xFFFFFFFF mean "no data").
    pub raw_offset: u32,
}

/// A parsed table: facts for the report plus the entries.
#[derive(Debug, Clone)]
pub(crate) struct Fpt {
    pub facts: FptFacts,
    pub entries: Vec<FptEntry>,
}

/// Parses the `$FPT` at `fpt_offset`. Entry offsets are relative to
/// `entry_base` (the region start in a classic layout, the FPT itself in an
/// IFWI data partition). A bad checksum is reported in the facts, not as an
/// error: the caller decides the region state.
pub(crate) fn parse(region: &[u8], fpt_offset: u64, entry_base: u64) -> Result<Fpt, MeError> {
    if !has_tag(region, fpt_offset, b"$FPT") {
        return Err(MeError::Malformed {
            structure: HEADER,
            offset: fpt_offset,
            what: "no $FPT signature".into(),
        });
    }
    slice(region, fpt_offset, 0x20, HEADER)?;
    let count = u32_at(region, fpt_offset + 4, HEADER)?;
    let header_version = u8_at(region, fpt_offset + 8, HEADER)?;
    let header_length = u8_at(region, fpt_offset + 0xA, HEADER)?;
    let flags = u32_at(region, fpt_offset + 0x14, HEADER)?;
    if count > MAX_ENTRIES {
        return Err(MeError::Malformed {
            structure: HEADER,
            offset: fpt_offset + 4,
            what: format!("{count} entries (more than {MAX_ENTRIES})"),
        });
    }
    let table_len = 0x20 + u64::from(count) * ENTRY_LEN;
    let table = slice(region, fpt_offset, table_len, "$FPT entry table")?;
    let checksum_ok = checksum_ok(region, fpt_offset, header_version, header_length, table)?;

    let mut entries = Vec::with_capacity(count as usize);
    for i in 0..u64::from(count) {
        let at = fpt_offset + 0x20 + i * ENTRY_LEN;
        let e = slice(region, at, ENTRY_LEN, ENTRY)?;
        let raw_offset = u32_at(e, 8, ENTRY)?;
        let length = u64::from(u32_at(e, 0xC, ENTRY)?);
        let eflags = u32_at(e, 0x1C, ENTRY)?;
        entries.push(FptEntry {
            name: name(slice(e, 0, 4, ENTRY)?),
            entry_offset: at,
            offset: entry_base + u64::from(raw_offset),
            length,
            part_type: (eflags & 0x7F) as u8,
            valid: (eflags >> 24) != 0xFF,
            raw_offset,
        });
    }
    Ok(Fpt {
        facts: FptFacts {
            offset: fpt_offset,
            header_version,
            header_length,
            entry_count: count,
            flags,
            checksum_ok,
            fitc_version: fitc_version(region, fpt_offset)?,
        },
        entries,
    })
}

/// Checksum rules (reference §4.2): header version 0x21 carries a CRC-32 at
/// +0x14 over header (CRC zeroed) and entries; older versions a checksum8 at
/// +0xB over the `header_length` bytes that end at FPT+0x20 (the ROM bypass
/// is included when the length is 0x30).
fn checksum_ok(
    region: &[u8],
    fpt: u64,
    version: u8,
    header_length: u8,
    table: &[u8],
) -> Result<bool, MeError> {
    if version >= 0x21 {
        let stored = u32_at(table, 0x14, HEADER)?;
        let mut h = crc32fast::Hasher::new();
        h.update(slice(table, 0, 0x14, HEADER)?);
        h.update(&[0; 4]);
        h.update(table.get(0x18..).unwrap_or(&[]));
        return Ok(h.finalize() == stored);
    }
    let len = u64::from(header_length);
    let start = (fpt + 0x20)
        .checked_sub(len)
        .ok_or_else(|| MeError::Malformed {
            structure: HEADER,
            offset: fpt + 0xA,
            what: format!("header length {len:#x} reaches before the region start"),
        })?;
    if !(0x20..=0x30).contains(&len) {
        return Err(MeError::Malformed {
            structure: HEADER,
            offset: fpt + 0xA,
            what: format!("header length {len:#x} (expected 0x20 or 0x30)"),
        });
    }
    Ok(sum8(slice(region, start, len, HEADER)?) == 0)
}

/// FITC version (u16 ×4 at +0x18), when set: the image was built by FIT.
fn fitc_version(region: &[u8], fpt: u64) -> Result<Option<String>, MeError> {
    let v: Vec<u16> = (0..4)
        .map(|i| u16_at(region, fpt + 0x18 + 2 * i, HEADER))
        .collect::<Result<_, _>>()?;
    if v.iter().all(|&x| x == 0) || v.iter().all(|&x| x == 0xFFFF) {
        return Ok(None);
    }
    Ok(Some(format!("{}.{}.{}.{}", v[0], v[1], v[2], v[3])))
}

/// MEA's names for the partition type in bits 6:0 of the entry flags.
pub(crate) fn type_name(t: u8) -> String {
    match t {
        0 => "code".into(),
        1 => "data".into(),
        2 => "nvram".into(),
        3 => "generic".into(),
        4 => "effs".into(),
        5 => "rom".into(),
        n => format!("type {n}"),
    }
}

/// Where an entry's data is relative to the region's bytes.
pub(crate) fn presence(region: &ErasedMap<'_>, e: &FptEntry) -> Presence {
    if !e.valid || e.raw_offset == 0 || e.raw_offset == u32::MAX || e.length == 0 {
        return Presence::NoData;
    }
    span_presence(region, e.offset, e.length)
}

/// Presence of `[offset, offset+length)` in the region.
pub(crate) fn span_presence(region: &ErasedMap<'_>, offset: u64, length: u64) -> Presence {
    let len = region.bytes.len() as u64;
    if offset >= len {
        Presence::OutOfRegion
    } else if offset.saturating_add(length) > len {
        Presence::Truncated
    } else if region.erased(offset, length) {
        Presence::Erased
    } else {
        Presence::Present
    }
}

/// The entries as report partitions.
pub(crate) fn partitions(region: &ErasedMap<'_>, fpt: &Fpt) -> Vec<Partition> {
    fpt.entries
        .iter()
        .map(|e| Partition {
            name: e.name.clone(),
            offset: e.offset,
            length: e.length,
            kind: type_name(e.part_type),
            valid: e.valid,
            presence: presence(region, e),
            source: PartitionSource::Fpt,
        })
        .collect()
}

//! `$CPD` code partition directories (CSE): header v1 (checksum8) or v2
//! (CRC-32), and 0x18-byte entries naming the manifest, metadata and
//! modules of one sub-partition.

use super::bytes::{has_tag, name, slice, sum8, u32_at, u8_at};
use super::MeError;

const HEADER: &str = "$CPD header";
const ENTRY: &str = "$CPD entry";
const ENTRY_LEN: u64 = 0x18;
/// Real directories hold at most a few dozen entries.
const MAX_ENTRIES: u32 = 1024;

#[derive(Debug, Clone)]
pub(crate) struct CpdEntry {
    pub name: String,
    /// Region offset of the data.
    pub offset: u64,
    /// Stored length (uncompressed length for Huffman entries).
    pub length: u64,
    pub huffman: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Cpd {
    /// Region offset of the `$CPD` tag.
    pub offset: u64,
    pub partition_name: String,
    /// Checksum8 (v1) or CRC-32 (v2) matches.
    pub checksum_ok: bool,
    pub entries: Vec<CpdEntry>,
}

/// True when a `$CPD` directory starts at `offset`.
pub(crate) fn is_cpd(region: &[u8], offset: u64) -> bool {
    has_tag(region, offset, b"$CPD")
}

/// Parses the `$CPD` at `offset`.
pub(crate) fn parse(region: &[u8], offset: u64) -> Result<Cpd, MeError> {
    if !is_cpd(region, offset) {
        return Err(MeError::Malformed {
            structure: HEADER,
            offset,
            what: "no $CPD signature".into(),
        });
    }
    let count = u32_at(region, offset + 4, HEADER)?;
    let header_version = u8_at(region, offset + 8, HEADER)?;
    let header_length = u64::from(u8_at(region, offset + 0xA, HEADER)?);
    if count > MAX_ENTRIES {
        return Err(MeError::Malformed {
            structure: HEADER,
            offset: offset + 4,
            what: format!("{count} entries (more than {MAX_ENTRIES})"),
        });
    }
    let expected_len = if header_version >= 2 { 0x14 } else { 0x10 };
    if header_length != expected_len {
        return Err(MeError::Malformed {
            structure: HEADER,
            offset: offset + 0xA,
            what: format!("header length {header_length:#x} for version {header_version} (expected {expected_len:#x})"),
        });
    }
    let table = slice(
        region,
        offset,
        header_length + u64::from(count) * ENTRY_LEN,
        "$CPD entry table",
    )?;
    let checksum_ok = if header_version >= 2 {
        let stored = u32_at(table, 0x10, HEADER)?;
        let mut h = crc32fast::Hasher::new();
        h.update(slice(table, 0, 0x10, HEADER)?);
        h.update(&[0; 4]);
        h.update(table.get(0x14..).unwrap_or(&[]));
        h.finalize() == stored
    } else {
        // Stored as the two's complement of the byte sum: a right table sums to 0
        // (verified on CSME 11.8/14.0 and CSTXE 4; CSSPS uses another rule).
        sum8(table) == 0
    };
    let mut entries = Vec::with_capacity(count as usize);
    for i in 0..u64::from(count) {
        let e = slice(table, header_length + i * ENTRY_LEN, ENTRY_LEN, ENTRY)?;
        let attr = u32_at(e, 0xC, ENTRY)?;
        entries.push(CpdEntry {
            name: name(slice(e, 0, 12, ENTRY)?),
            offset: offset + u64::from(attr & 0x01FF_FFFF),
            length: u64::from(u32_at(e, 0x10, ENTRY)?),
            huffman: attr & (1 << 25) != 0,
        });
    }
    Ok(Cpd {
        offset,
        partition_name: name(slice(region, offset + 0xC, 4, HEADER)?),
        checksum_ok,
        entries,
    })
}

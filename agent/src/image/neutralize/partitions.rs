//! Step 1 of a strip: the `$FPT`. Every partition except FTPR is erased
//! (0xFF), its entry dropped from the table, the EFFS-present flag cleared
//! and the header checksum fixed — exactly as me_cleaner does it, so that
//! the result is byte-identical to its output on the same input.
//!
//! Layout assumed (checked by the caller): `$FPT` at region offset 0x10,
//! entries from 0x30, 32 bytes each.

use serde::Serialize;

use super::bytes::{ascii_name, erase, get, put, put_u32, u32_at};
use super::NeutralizeError;

/// Region offset of `$FPT`.
pub(super) const FPT: u64 = 0x10;
const ENTRIES: u64 = FPT + 0x20;
const ENTRY_LEN: u64 = 0x20;
/// More entries than fit in the space before any real partition is not an
/// FPT we trust (real images have at most ~25).
const MAX_ENTRIES: u32 = 256;
/// FPT partition type "NVRAM" (lives inside EFFS, no data of its own).
const TYPE_NVRAM: u32 = 2;

/// What happened to one `$FPT` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionAction {
    /// ASCII name, or "????" when not ASCII (as me_cleaner prints it).
    pub name: String,
    /// Region offset and length as listed.
    pub offset: u64,
    pub length: u64,
    pub action: PartitionFate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionFate {
    /// FTPR: entry and data kept.
    Kept,
    /// Data erased, entry dropped.
    Removed,
    /// No data of its own (NVRAM inside EFFS, offset/length 0, or outside
    /// the region): nothing erased, entry dropped.
    EntryDropped,
}

/// Where the FTPR is, once the table is stripped.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ftpr {
    pub offset: u64,
    pub length: u64,
    /// Region offset of its (now first) `$FPT` entry.
    pub entry: u64,
}

/// Strips the `$FPT` of `region`; returns the per-entry actions and FTPR.
/// `cse` selects the checksum span (gen 3: FPT header only; gen 2: ROM
/// bypass + header).
pub(super) fn strip(
    region: &mut [u8],
    cse: bool,
) -> Result<(Vec<PartitionAction>, Ftpr), NeutralizeError> {
    let count = u32_at(region, FPT + 4, "$FPT header")?;
    if count > MAX_ENTRIES {
        return Err(NeutralizeError::Malformed {
            structure: "$FPT header",
            offset: FPT + 4,
            what: format!("{count} entries (at most {MAX_ENTRIES} expected)"),
        });
    }
    let table = get(region, ENTRIES, count as u64 * ENTRY_LEN, "$FPT entries")?.to_vec();
    let region_len = region.len() as u64;
    let mut actions = Vec::new();
    let mut kept: Vec<u8> = Vec::new();
    let mut ftpr = None;
    for e in table.chunks_exact(ENTRY_LEN as usize) {
        let name = e
            .get(..4)
            .and_then(ascii_name)
            .unwrap_or_else(|| "????".into());
        let offset = u32_at(e, 8, "$FPT entry")? as u64;
        let length = u32_at(e, 12, "$FPT entry")? as u64;
        let flags = u32_at(e, 0x1C, "$FPT entry")?;
        let no_data = flags & 0x7F == TYPE_NVRAM
            || offset == 0
            || length == 0
            || offset + length > region_len;
        let action = if no_data {
            PartitionFate::EntryDropped
        } else if name == "FTPR" {
            if ftpr.is_none() {
                ftpr = Some(Ftpr {
                    offset,
                    length,
                    entry: ENTRIES + kept.len() as u64,
                });
            }
            kept.extend_from_slice(e);
            PartitionFate::Kept
        } else {
            erase(region, offset, offset + length);
            PartitionFate::Removed
        };
        actions.push(PartitionAction {
            name,
            offset,
            length,
            action,
        });
    }
    let Some(ftpr) = ftpr else {
        return Err(NeutralizeError::Malformed {
            structure: "$FPT entries",
            offset: ENTRIES,
            what: "no FTPR entry with data inside the region".into(),
        });
    };
    // The new table: kept entries first, 0xFF over the rest of the old one.
    put(region, ENTRIES, &kept, "$FPT entries")?;
    put_u32(
        region,
        FPT + 4,
        (kept.len() as u64 / ENTRY_LEN) as u32,
        "$FPT header",
    )?;
    erase(
        region,
        ENTRIES + kept.len() as u64,
        ENTRIES + table.len() as u64,
    );
    // EFFS is gone: clear its presence flag (bit 0 of FPT+0x14).
    let flags = u32_at(region, FPT + 0x14, "$FPT header")?;
    put_u32(region, FPT + 0x14, flags & !1, "$FPT header")?;
    fix_checksum(region, cse)?;
    Ok((actions, ftpr))
}

/// checksum8 at FPT+0x0B: the bytes that end at FPT+0x20 sum to 0 — from
/// region offset 0 on gen 2 (header length 0x30, ROM bypass included),
/// from FPT on CSE.
fn fix_checksum(region: &mut [u8], cse: bool) -> Result<(), NeutralizeError> {
    let start = if cse { FPT } else { 0 };
    let span = get(region, start, FPT + 0x20 - start, "$FPT header")?;
    let at = (FPT + 0x0B - start) as usize;
    let sum = span
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != at)
        .fold(0u8, |s, (_, &b)| s.wrapping_add(b));
    put(region, FPT + 0x0B, &[0u8.wrapping_sub(sum)], "$FPT header")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &[u8; 4], offset: u32, length: u32, flags: u32) -> Vec<u8> {
        let mut e = vec![0u8; 0x20];
        e[..4].copy_from_slice(name);
        e[8..12].copy_from_slice(&offset.to_le_bytes());
        e[12..16].copy_from_slice(&length.to_le_bytes());
        e[0x1C..].copy_from_slice(&flags.to_le_bytes());
        e
    }

    fn region(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut r = vec![0x11u8; 0x4000];
        r[0x10..0x14].copy_from_slice(b"$FPT");
        r[0x14..0x18].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        r[0x24..0x28].copy_from_slice(&0xFFFF_FC01u32.to_le_bytes());
        for (i, e) in entries.iter().enumerate() {
            r[0x30 + i * 0x20..0x50 + i * 0x20].copy_from_slice(e);
        }
        r
    }

    #[test]
    fn keeps_ftpr_only_and_fixes_header() {
        let mut r = region(&[
            entry(b"EFFS", 0x1000, 0x1000, 4),
            entry(b"NVKR", 0xFFFF_FFFF, 0x100, 2),
            entry(b"FTPR", 0x2000, 0x1000, 0),
            entry(b"NFTP", 0x3000, 0x2000, 0),
        ]);
        let (actions, ftpr) = strip(&mut r, false).unwrap();
        assert_eq!(
            (ftpr.offset, ftpr.length, ftpr.entry),
            (0x2000, 0x1000, 0x30)
        );
        let fates: Vec<_> = actions.iter().map(|a| a.action).collect();
        use PartitionFate::*;
        assert_eq!(fates, [Removed, EntryDropped, Kept, EntryDropped]);
        assert!(r[0x1000..0x2000].iter().all(|&b| b == 0xFF));
        assert!(r[0x2000..0x3000].iter().all(|&b| b == 0x11));
        // NFTP ran past the region end: listed as no data, not erased.
        assert!(r[0x3000..].iter().all(|&b| b == 0x11));
        assert_eq!(u32_at(&r, 0x14, "t").unwrap(), 1);
        assert_eq!(&r[0x30..0x34], b"FTPR");
        assert!(r[0x50..0xB0].iter().all(|&b| b == 0xFF));
        assert_eq!(u32_at(&r, 0x24, "t").unwrap(), 0xFFFF_FC00);
        let sum = r[..0x30].iter().fold(0u8, |s, &b| s.wrapping_add(b));
        assert_eq!(sum, 0);
    }

    #[test]
    fn cse_checksum_skips_rom_bypass() {
        let mut r = region(&[entry(b"FTPR", 0x1000, 0x1000, 0)]);
        strip(&mut r, true).unwrap();
        let sum = r[0x10..0x30].iter().fold(0u8, |s, &b| s.wrapping_add(b));
        assert_eq!(sum, 0);
    }

    #[test]
    fn no_ftpr_is_an_error_and_huge_counts_are_refused() {
        let mut r = region(&[entry(b"MFS\0", 0x1000, 0x1000, 0)]);
        assert!(strip(&mut r, true).is_err());
        let mut r = region(&[]);
        r[0x14..0x18].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        assert!(strip(&mut r, true).is_err());
    }
}

//! IFWI layouts (CSME 12+, CSTXE): the CSE layout tables 1.6 and 1.7 at the
//! region start, and BPDTs (boot partition descriptor tables) with their
//! secondary tables.

use super::bytes::{has_tag, slice, u16_at, u32_at, u8_at};
use super::MeError;

const TABLE: &str = "CSE layout table";
const BPDT: &str = "BPDT";
const BPDT_GREEN: u32 = 0x0000_55AA;
const BPDT_YELLOW: u32 = 0x00AA_55AA;
/// BPDT entry type of the FTPR sub-partition and of a secondary BPDT.
pub(crate) const TYPE_FTPR: u16 = 2;
const TYPE_S_BPDT: u16 = 5;
const MAX_BPDT_ENTRIES: u16 = 128;

/// A CSE layout table.
#[derive(Debug, Clone)]
pub(crate) struct LayoutTable {
    pub version_17: bool,
    pub data: Option<(u64, u64)>,
    /// (index 1–5, offset, size) of the listed boot partitions.
    pub boot: Vec<(u8, u64, u64)>,
    pub crc_ok: Option<bool>,
}

/// `(offset, size)` unless the slot is empty (0 or all ones).
fn slot(region: &[u8], at: u64) -> Result<Option<(u64, u64)>, MeError> {
    let off = u32_at(region, at, TABLE)?;
    let size = u32_at(region, at + 4, TABLE)?;
    let empty = |v: u32| v == 0 || v == u32::MAX;
    Ok((!empty(size) && off != u32::MAX).then_some((u64::from(off), u64::from(size))))
}

/// Interprets the region start as layout table 1.6, then 1.7; a candidate
/// is accepted only if its data partition starts with `$FPT` (what MEA and
/// UEFITool do, as the table has no signature).
pub(crate) fn detect(region: &[u8]) -> Result<Option<LayoutTable>, MeError> {
    for (version_17, data_at, boot_at) in [(false, 0x10u64, 0x18u64), (true, 0x18, 0x20)] {
        let Ok(Some((off, size))) = slot(region, data_at) else {
            continue;
        };
        if !has_tag(region, off, b"$FPT") {
            continue;
        }
        let mut boot = Vec::new();
        for i in 0..5u8 {
            if let Some((o, s)) = slot(region, boot_at + 8 * u64::from(i))? {
                boot.push((i + 1, o, s));
            }
        }
        let crc_ok = if version_17 {
            Some(crc17_ok(region)?)
        } else {
            None
        };
        return Ok(Some(LayoutTable {
            version_17,
            data: Some((off, size)),
            boot,
            crc_ok,
        }));
    }
    Ok(None)
}

/// Layout table 1.7 CRC-32 at +0x14: over bytes 0x10–0x13, four zero bytes
/// (the CRC field), and 0x18 up to 0x10 + size (reference §5.2, verified).
fn crc17_ok(region: &[u8]) -> Result<bool, MeError> {
    let size = u64::from(u16_at(region, 0x10, TABLE)?);
    if size < 8 {
        return Err(MeError::Malformed {
            structure: TABLE,
            offset: 0x10,
            what: format!("table size {size:#x}"),
        });
    }
    let stored = u32_at(region, 0x14, TABLE)?;
    let mut h = crc32fast::Hasher::new();
    h.update(slice(region, 0x10, 4, TABLE)?);
    h.update(&[0; 4]);
    h.update(slice(region, 0x18, size - 8, TABLE)?);
    Ok(h.finalize() == stored)
}

/// True when a BPDT signature (primary or recovery) is at `offset`.
pub(crate) fn is_bpdt(region: &[u8], offset: u64) -> bool {
    matches!(
        u32_at(region, offset, BPDT),
        Ok(BPDT_GREEN) | Ok(BPDT_YELLOW)
    )
}

/// One sub-partition listed by a BPDT, with region-absolute offset.
#[derive(Debug, Clone)]
pub(crate) struct BpdtEntry {
    pub entry_type: u16,
    pub offset: u64,
    pub size: u64,
    /// Listed by a secondary BPDT.
    pub secondary: bool,
}

/// Reads the BPDT at `base` (a boot partition start) and, once, the
/// secondary BPDT it points to. Entry offsets are relative to `base` in
/// both tables. Entries outside `[base, base + limit)` are errors; a
/// secondary table that points back at a table already read is a loop.
pub(crate) fn parse_bpdt(region: &[u8], base: u64, limit: u64) -> Result<Vec<BpdtEntry>, MeError> {
    let mut out = Vec::new();
    let mut tables = vec![base];
    let mut next = Some((base, false));
    while let Some((at, secondary)) = next.take() {
        if !is_bpdt(region, at) {
            return Err(MeError::Malformed {
                structure: BPDT,
                offset: at,
                what: "no BPDT signature".into(),
            });
        }
        let count = u16_at(region, at + 4, BPDT)?;
        if count > MAX_BPDT_ENTRIES {
            return Err(MeError::Malformed {
                structure: BPDT,
                offset: at + 4,
                what: format!("{count} entries"),
            });
        }
        for i in 0..u64::from(count) {
            let e = at + 0x18 + 12 * i;
            let entry_type = u16_at(region, e, "BPDT entry")?;
            let off = u64::from(u32_at(region, e + 4, "BPDT entry")?);
            let size = u64::from(u32_at(region, e + 8, "BPDT entry")?);
            if size == 0 {
                continue;
            }
            if off.checked_add(size).map_or(true, |end| end > limit) {
                return Err(MeError::Malformed {
                    structure: "BPDT entry",
                    offset: e,
                    what: format!("type {entry_type} [{off:#x}, +{size:#x}) outside its boot partition of {limit:#x} bytes"),
                });
            }
            if entry_type == TYPE_S_BPDT {
                let s = base + off;
                if tables.contains(&s) {
                    return Err(MeError::Malformed {
                        structure: "BPDT entry",
                        offset: e,
                        what: format!(
                            "secondary BPDT at {s:#x} loops back to a table already read"
                        ),
                    });
                }
                if secondary {
                    return Err(MeError::Malformed {
                        structure: "BPDT entry",
                        offset: e,
                        what: "secondary BPDT inside a secondary BPDT".into(),
                    });
                }
                tables.push(s);
                next = Some((s, true));
                continue;
            }
            out.push(BpdtEntry {
                entry_type,
                offset: base + off,
                size,
                secondary,
            });
        }
    }
    Ok(out)
}

/// BPDT entry type names (reference §5.3).
pub(crate) fn type_name(t: u16) -> String {
    const NAMES: [&str; 46] = [
        "SMIP", "RBEP", "FTPR", "UCOD", "IBBP", "S-BPDT", "OBBP", "NFTP", "ISHC", "DLMP", "UEBP",
        "UTOK", "UFS PHY", "UFS GPP", "PMCP", "IUNP", "NVMC", "UEP", "WCOD", "LOCL", "OEMP",
        "FITC", "PAVP", "IOMP", "XPHY", "TBTP", "PLTS", "type 27", "type 28", "type 29", "type 30",
        "DPHY", "PCHC", "ISIF", "ISIC", "HBMI", "OMSM", "GTGP", "MDFI", "PUNP", "PHYP", "SAMF",
        "PPHY", "GBST", "TCCP", "PSEP",
    ];
    NAMES
        .get(usize::from(t))
        .map_or_else(|| format!("type {t}"), |s| s.to_string())
}

/// BPDT version 2 (IFWI 1.7) carries a CRC-32 at +8 over the table from +4
/// to the end of its entries, the CRC field zeroed (verified on CSME 16.1).
/// `None` for version 1 tables, whose checksum rule is not established.
pub(crate) fn bpdt_crc_ok(region: &[u8], at: u64) -> Result<Option<bool>, MeError> {
    if u8_at(region, at + 6, BPDT)? != 2 {
        return Ok(None);
    }
    let count = u64::from(u16_at(region, at + 4, BPDT)?);
    let stored = u32_at(region, at + 8, BPDT)?;
    let mut h = crc32fast::Hasher::new();
    h.update(slice(region, at + 4, 4, BPDT)?);
    h.update(&[0; 4]);
    h.update(slice(region, at + 0xC, 0xC + count * 12, BPDT)?);
    Ok(Some(h.finalize() == stored))
}

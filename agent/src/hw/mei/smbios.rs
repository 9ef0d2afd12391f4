//! The HFSTS snapshot the BIOS leaves in SMBIOS (me-runtime.md §1.6): the
//! OEM "FWSTS" structure, found through the type-14 group association named
//! `$MEI`, or as type 0xDB when there is no such group.
//!
//! This is what is left to read when the BIOS hid HECI1 after POST (HAP on
//! CSME 12+, "disable HECI1" options): the values are a POST-time snapshot,
//! and the report says so. Parsing is bounded: every malformed table is an
//! error naming the offset and the structure.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::Serialize;
use thiserror::Error;

use super::sysfs::SysRoot;

/// The SMBIOS structure type fwupd and Intel BIOSes use for FWSTS.
pub const TYPE_FWSTS: u8 = 0xDB;
/// SMBIOS group associations.
const TYPE_GROUP: u8 = 14;
/// End-of-table.
const TYPE_END: u8 = 127;
/// The MEI1 (0:22:0) component of an FWSTS structure.
pub const COMPONENT_MEI1: u8 = 1;

/// Errors reading the SMBIOS table.
#[derive(Debug, Error)]
pub enum SmbiosError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("SMBIOS {structure} at offset {offset:#x}: {what}")]
    Malformed {
        structure: &'static str,
        offset: usize,
        what: String,
    },
}

/// One structure of the table.
#[derive(Debug, Clone, Copy)]
pub struct Structure<'a> {
    pub offset: usize,
    pub kind: u8,
    pub handle: u16,
    /// The formatted area, header included.
    pub formatted: &'a [u8],
    /// The string set (without the final double NUL).
    pub strings: &'a [u8],
}

impl<'a> Structure<'a> {
    /// String number `n` (1-based) of the string set.
    pub fn string(&self, n: u8) -> Option<&'a [u8]> {
        if n == 0 {
            return None;
        }
        self.strings
            .split(|&b| b == 0)
            .nth(usize::from(n) - 1)
            .filter(|s| !s.is_empty())
    }
}

fn malformed(structure: &'static str, offset: usize, what: String) -> SmbiosError {
    SmbiosError::Malformed {
        structure,
        offset,
        what,
    }
}

/// Splits a raw structure table (`/sys/firmware/dmi/tables/DMI`) into structures.
pub fn structures(table: &[u8]) -> Result<Vec<Structure<'_>>, SmbiosError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < table.len() {
        let Some(&[kind, len, h0, h1]) = table.get(pos..pos + 4) else {
            return Err(malformed("structure header", pos, "truncated".into()));
        };
        let len = usize::from(len);
        if len < 4 {
            return Err(malformed(
                "structure header",
                pos,
                format!("length {len} < 4"),
            ));
        }
        let formatted = table.get(pos..pos + len).ok_or_else(|| {
            malformed(
                "structure",
                pos,
                format!("length {len} runs past the table end"),
            )
        })?;
        // The string set ends with two NULs (just two when there are no strings).
        let rest = table.get(pos + len..).unwrap_or(&[]);
        let end = rest
            .windows(2)
            .position(|w| w == [0, 0])
            .ok_or_else(|| malformed("string set", pos + len, "no double NUL".into()))?;
        out.push(Structure {
            offset: pos,
            kind,
            handle: u16::from_le_bytes([h0, h1]),
            formatted,
            strings: rest.get(..end).unwrap_or(&[]),
        });
        pos += len + end + 2;
        if kind == TYPE_END {
            break;
        }
    }
    Ok(out)
}

/// One FWSTS record: a MEI function and its six registers at POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FwstsRecord {
    /// 1 MEI1 (0:22:0), 2 MEI2 (0:22:1), 3 MEI3 (0:22:4), 4 MEI4.
    pub component: u8,
    pub fwsts: [u32; 6],
}

/// The FWSTS structure found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmbiosFwsts {
    pub smbios_type: u8,
    pub handle: u16,
    /// `"$MEI group"` or `"type 0xDB"`.
    pub found_via: &'static str,
    pub records: Vec<FwstsRecord>,
}

impl SmbiosFwsts {
    /// HFSTS1-6 of MEI1, the ME proper.
    pub fn mei1(&self) -> Option<[u32; 6]> {
        self.records
            .iter()
            .find(|r| r.component == COMPONENT_MEI1)
            .map(|r| r.fwsts)
    }
}

/// Parses one FWSTS structure: {version 1, count, count × {component, u32[6]}}.
pub fn parse_fwsts(s: &Structure<'_>) -> Result<Vec<FwstsRecord>, SmbiosError> {
    const S: &str = "FWSTS structure";
    let f = s.formatted;
    let (version, count) = match (f.get(4), f.get(5)) {
        (Some(&v), Some(&c)) => (v, usize::from(c)),
        _ => return Err(malformed(S, s.offset, "shorter than 6 bytes".into())),
    };
    if version != 1 {
        return Err(malformed(
            S,
            s.offset + 4,
            format!("version {version}, expected 1"),
        ));
    }
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let at = 6 + i * 25;
        let rec = f.get(at..at + 25).ok_or_else(|| {
            malformed(
                S,
                s.offset + at,
                format!(
                    "record {i} of {count} runs past the structure's {} bytes",
                    f.len()
                ),
            )
        })?;
        let Some((&component, regs)) = rec.split_first() else {
            continue;
        };
        let mut fwsts = [0u32; 6];
        for (r, b) in fwsts.iter_mut().zip(regs.chunks_exact(4)) {
            *r = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        records.push(FwstsRecord { component, fwsts });
    }
    Ok(records)
}

/// Finds the FWSTS structure: through a `$MEI` group association first (the
/// robust way; type numbers are BIOS-build dependent), else type 0xDB.
pub fn find_fwsts(table: &[u8]) -> Result<Option<SmbiosFwsts>, SmbiosError> {
    let all = structures(table)?;
    let by_group = all
        .iter()
        .filter(|s| {
            s.kind == TYPE_GROUP && s.formatted.get(4).and_then(|&n| s.string(n)) == Some(b"$MEI")
        })
        .flat_map(|g| {
            // Items of 3 bytes after the name: {u8 type, u16 handle}.
            g.formatted
                .get(5..)
                .unwrap_or(&[])
                .chunks_exact(3)
                .map(|c| u16::from_le_bytes([c[1], c[2]]))
        })
        .filter_map(|h| all.iter().find(|s| s.handle == h))
        .find_map(|s| parse_fwsts(s).ok().map(|r| (s, r)));
    if let Some((s, records)) = by_group {
        return Ok(Some(SmbiosFwsts {
            smbios_type: s.kind,
            handle: s.handle,
            found_via: "$MEI group",
            records,
        }));
    }
    match all.iter().find(|s| s.kind == TYPE_FWSTS) {
        Some(s) => Ok(Some(SmbiosFwsts {
            smbios_type: s.kind,
            handle: s.handle,
            found_via: "type 0xDB",
            records: parse_fwsts(s)?,
        })),
        None => Ok(None),
    }
}

/// Reads `/sys/firmware/dmi/tables/DMI` under `root` and finds FWSTS.
/// `Ok(None)` when there is no table or no such structure.
pub fn read_fwsts(root: &SysRoot) -> Result<Option<SmbiosFwsts>, SmbiosError> {
    let path = root.path("/sys/firmware/dmi/tables/DMI");
    let table = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SmbiosError::Io { path, source }),
    };
    find_fwsts(&table)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A structure: formatted area (header built here) + strings.
    pub fn structure(kind: u8, handle: u16, body: &[u8], strings: &[&str]) -> Vec<u8> {
        let mut s = vec![kind, (4 + body.len()) as u8];
        s.extend_from_slice(&handle.to_le_bytes());
        s.extend_from_slice(body);
        for st in strings {
            s.extend_from_slice(st.as_bytes());
            s.push(0);
        }
        if strings.is_empty() {
            s.push(0);
        }
        s.push(0);
        s
    }

    pub fn fwsts_body(records: &[(u8, [u32; 6])]) -> Vec<u8> {
        let mut b = vec![1, records.len() as u8];
        for (c, regs) in records {
            b.push(*c);
            for r in regs {
                b.extend_from_slice(&r.to_le_bytes());
            }
        }
        b
    }

    const HAP: [u32; 6] = [0x0002_0181, 0x100A_0000, 0x20, 0, 0, 0x4000_0000];

    #[test]
    fn finds_fwsts_by_type() {
        let mut t = structure(0, 0, &[1, 2, 3], &["vendor"]);
        t.extend(structure(
            TYPE_FWSTS,
            0x42,
            &fwsts_body(&[(1, HAP), (3, [0; 6])]),
            &[],
        ));
        t.extend(structure(TYPE_END, 0xFFFF, &[], &[]));
        let f = find_fwsts(&t).unwrap().unwrap();
        assert_eq!(f.found_via, "type 0xDB");
        assert_eq!(f.handle, 0x42);
        assert_eq!(f.records.len(), 2);
        assert_eq!(f.mei1(), Some(HAP));
    }

    #[test]
    fn finds_fwsts_through_the_mei_group_at_another_type() {
        // This BIOS put FWSTS at type 0xE0; the $MEI group points at it.
        let mut t = structure(14, 1, &[1, 0xE0, 0x50, 0x00], &["$MEI"]);
        t.extend(structure(0xE0, 0x50, &fwsts_body(&[(1, HAP)]), &[]));
        let f = find_fwsts(&t).unwrap().unwrap();
        assert_eq!(f.found_via, "$MEI group");
        assert_eq!(f.smbios_type, 0xE0);
        assert_eq!(f.mei1(), Some(HAP));
    }

    #[test]
    fn no_fwsts_is_none() {
        let t = structure(0, 0, &[1, 2, 3], &["vendor"]);
        assert_eq!(find_fwsts(&t).unwrap(), None);
        assert_eq!(find_fwsts(&[]).unwrap(), None);
    }

    #[test]
    fn hostile_tables_are_errors_with_offsets() {
        // Length 2 in the header.
        let err = structures(&[0, 2, 0, 0, 0, 0]).unwrap_err();
        assert!(err.to_string().contains("length 2 < 4"), "{err}");
        // Length past the end.
        let err = structures(&[0, 40, 0, 0, 0, 0]).unwrap_err();
        assert!(err.to_string().contains("offset 0x0"), "{err}");
        // No string-set terminator.
        let err = structures(&[0, 4, 0, 0, b'a']).unwrap_err();
        assert!(err.to_string().contains("double NUL"), "{err}");
        // FWSTS claiming 3 records but carrying 1.
        let mut body = fwsts_body(&[(1, HAP)]);
        body[1] = 3;
        let t = structure(TYPE_FWSTS, 7, &body, &[]);
        let err = find_fwsts(&t).unwrap_err();
        assert!(err.to_string().contains("record 1 of 3"), "{err}");
        // Wrong version.
        let mut body = fwsts_body(&[(1, HAP)]);
        body[0] = 2;
        let t = structure(TYPE_FWSTS, 7, &body, &[]);
        assert!(find_fwsts(&t)
            .unwrap_err()
            .to_string()
            .contains("version 2"));
    }
}

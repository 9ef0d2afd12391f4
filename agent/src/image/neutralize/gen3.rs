//! Step 2 of a gen 3 strip (CSME 11, CSSPS 4, classic `$FPT`): the FTPR's
//! `$CPD` entries. Manifests (`.man`), metadata (`.met`) and the modules
//! whose names start with rbe, kernel, syslib or bup stay; the data of every
//! other entry is erased. An entry's data runs to the next entry's offset
//! (the last one to the partition end), as me_cleaner measures it. The
//! `$CPD` table and the manifest are not touched, so the signature holds.

use super::bytes::{ascii_name, erase, get, u32_at};
use super::{ModuleAction, NeutralizeError};

const ESSENTIAL_PREFIXES: [&str; 4] = ["rbe", "kernel", "syslib", "bup"];
const ENTRY_LEN: u64 = 0x18;
const MAX_ENTRIES: u32 = 1024;

/// (name, offset from `$CPD`, Huffman) of each entry.
fn entries(region: &[u8], cpd: u64) -> Result<Vec<(String, u64, bool)>, NeutralizeError> {
    if get(region, cpd, 4, "$CPD")? != b"$CPD" {
        return Err(NeutralizeError::Malformed {
            structure: "$CPD",
            offset: cpd,
            what: "no $CPD tag at the FTPR start".into(),
        });
    }
    let count = u32_at(region, cpd + 4, "$CPD")?;
    if count > MAX_ENTRIES {
        return Err(NeutralizeError::Malformed {
            structure: "$CPD",
            offset: cpd + 4,
            what: format!("{count} entries (at most {MAX_ENTRIES} expected)"),
        });
    }
    let header_len = get(region, cpd + 0xA, 1, "$CPD")?[0] as u64;
    let mut out = Vec::new();
    for i in 0..count as u64 {
        let at = cpd + header_len + i * ENTRY_LEN;
        let e = get(region, at, ENTRY_LEN, "$CPD entry")?;
        let name = e
            .get(..12)
            .and_then(ascii_name)
            .ok_or_else(|| NeutralizeError::Malformed {
                structure: "$CPD entry",
                offset: at,
                what: "name is not ASCII".into(),
            })?;
        let word = u32_at(e, 12, "$CPD entry")?;
        out.push((name, (word & 0x01FF_FFFF) as u64, word & 0x0200_0000 != 0));
    }
    Ok(out)
}

/// Erases the non-essential modules of the FTPR at `ftpr` (length
/// `length`). Returns what was done and the end of the kept data.
pub(super) fn remove_modules(
    region: &mut [u8],
    ftpr: u64,
    length: u64,
) -> Result<(Vec<ModuleAction>, u64), NeutralizeError> {
    let listed = entries(region, ftpr)?;
    // Sorted by offset with a sentinel for the partition end, placed first
    // among equal offsets; only as many spans as there are entries are
    // walked (an entry sorting after the sentinel is left alone — this is
    // what me_cleaner does, and its output is our reference).
    let mut spans: Vec<(Option<(String, bool)>, u64)> = vec![(None, length)];
    spans.extend(listed.iter().map(|(n, o, h)| (Some((n.clone(), *h)), *o)));
    spans.sort_by_key(|s| s.1);
    let mut actions = Vec::new();
    let mut end = 0u64;
    for i in 0..listed.len() {
        let (Some(current), Some(following)) = (spans.get(i), spans.get(i + 1)) else {
            break;
        };
        let (start, stop) = (ftpr + current.1, ftpr + following.1);
        // The sentinel itself: nothing of the partition lies behind it.
        let Some((name, huffman)) = current.0.clone() else {
            continue;
        };
        let metadata = name.ends_with(".man") || name.ends_with(".met");
        let essential = ESSENTIAL_PREFIXES.iter().any(|p| name.starts_with(p));
        let removed = !metadata && !essential;
        if removed {
            erase(region, start, stop);
        } else {
            end = end.max(stop);
        }
        actions.push(ModuleAction {
            storage: if metadata {
                "uncompressed".into()
            } else if huffman {
                "Huffman".into()
            } else {
                "LZMA/uncompressed".into()
            },
            name,
            removed,
        });
    }
    Ok((actions, end))
}

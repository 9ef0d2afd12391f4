//! Step 2 of a gen 2 strip (ME 6–10, TXE 1–2): the FTPR's `$MME` modules.
//! Everything but ROMP and BUP is erased. Uncompressed and LZMA modules
//! are contiguous; Huffman modules are spread over the chunks of the one
//! LLUT, so chunks are erased unless they overlap a chunk of a kept module
//! (reference §7, §10.2).

use super::bytes::{ascii_name, erase, get, u16_at, u32_at};
use super::{ModuleAction, NeutralizeError};

/// Modules the ME needs to bring the platform up and then stop.
const ESSENTIAL: [&str; 2] = ["ROMP", "BUP"];
const HEADERS_AT: u64 = 0x290;
const MAX_MODULES: u32 = 1024;

/// One `$MME` header, the fields the strip needs.
#[derive(Debug, Clone)]
pub(super) struct MmeHeader {
    pub name: String,
    /// Region offset of the data.
    pub data: u64,
    pub stored_size: u64,
    pub compression: u32,
    pub load_base: u32,
    pub size: u32,
}

/// The module headers of the manifest at `ftpr`, or `None` when their
/// layout cannot be told (me_cleaner then skips module removal).
pub(super) fn headers(region: &[u8], ftpr: u64) -> Result<Option<Vec<MmeHeader>>, NeutralizeError> {
    let count = u32_at(region, ftpr + 0x20, "$MN2 manifest")?;
    if count == 0 || count > MAX_MODULES {
        return Ok(None);
    }
    let first = ftpr + HEADERS_AT;
    let tag = |o: u64| {
        get(region, o, 4, "$MME header")
            .map(|t| t == b"$MME")
            .unwrap_or(false)
    };
    let size = if !tag(first) {
        return Ok(None);
    } else if tag(first + 0x60) || count == 1 {
        0x60
    } else if tag(first + 0x80) {
        0x80
    } else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for i in 0..count as u64 {
        let h = get(region, first + i * size, size, "$MME header")?;
        if h.get(..4) != Some(b"$MME".as_slice()) {
            return Ok(None);
        }
        let at = first + i * size;
        let name =
            h.get(4..0x14)
                .and_then(ascii_name)
                .ok_or_else(|| NeutralizeError::Malformed {
                    structure: "$MME header",
                    offset: at + 4,
                    what: "module name is not ASCII".into(),
                })?;
        out.push(MmeHeader {
            name,
            data: ftpr + u32_at(h, 0x38, "$MME header")? as u64,
            stored_size: u32_at(h, 0x40, "$MME header")? as u64,
            compression: (u32_at(h, 0x50, "$MME header")? >> 4) & 7,
            load_base: u32_at(h, 0x34, "$MME header")?,
            size: u32_at(h, 0x3C, "$MME header")?,
        });
    }
    Ok(Some(out))
}

/// One LLUT chunk: `[start, end)` in the region; start 0 = absent.
type Chunk = (u64, u64);

/// The LLUT of the Huffman modules, as much of it as the strip needs.
struct Llut {
    /// Module address of chunk 0.
    base: u64,
    chunk_size: u64,
    chunks: Vec<Chunk>,
}

fn read_llut(region: &[u8], at: u64) -> Result<Llut, NeutralizeError> {
    let bad = |what: &str| NeutralizeError::Malformed {
        structure: "LLUT",
        offset: at,
        what: what.into(),
    };
    if get(region, at, 4, "LLUT")? != b"LLUT" {
        return Err(bad(
            "Huffman modules present but no LLUT at the first one's offset",
        ));
    }
    let count = u32_at(region, at + 4, "LLUT")? as u64;
    let base = u32_at(region, at + 8, "LLUT")? as u64 + 0x1000_0000;
    let stream_end =
        u32_at(region, at + 0x10, "LLUT")? as u64 + u32_at(region, at + 0x14, "LLUT")? as u64;
    let chunk_size = u32_at(region, at + 0x30, "LLUT")? as u64;
    if chunk_size == 0 {
        return Err(bad("chunk size 0"));
    }
    let table = get(region, at + 0x40, count * 4, "LLUT chunk table")?;
    let starts: Vec<u64> = table
        .chunks_exact(4)
        .map(|c| match c {
            [a, b, d, top] if *top != 0x80 => u32::from_le_bytes([*a, *b, *d, 0]) as u64,
            _ => 0,
        })
        .collect();
    // A chunk ends where the next stored chunk (or the Huffman stream) starts.
    let mut sorted: Vec<u64> = starts.iter().copied().filter(|&s| s != 0).collect();
    sorted.push(stream_end);
    sorted.sort_unstable();
    let mut chunks = Vec::with_capacity(starts.len());
    for s in starts {
        if s == 0 {
            chunks.push((0, 0));
            continue;
        }
        // The first position of `s` in the sorted list, then the next one
        // (a duplicate start gives an empty chunk, as in me_cleaner).
        let i = sorted.partition_point(|&x| x < s);
        let end = *sorted
            .get(i + 1)
            .ok_or_else(|| bad("a chunk starts after the end of the Huffman stream"))?;
        chunks.push((s, end));
    }
    Ok(Llut {
        base,
        chunk_size,
        chunks,
    })
}

/// Erases the non-essential modules. Returns what was done and the end of
/// the kept data (region offset).
pub(super) fn remove_modules(
    region: &mut [u8],
    headers: &[MmeHeader],
) -> Result<(Vec<ModuleAction>, u64), NeutralizeError> {
    let mut actions = Vec::new();
    let mut end = 0u64;
    let mut llut: Option<Llut> = None;
    let mut kept_chunks: Vec<Chunk> = Vec::new();
    for h in headers {
        let essential = ESSENTIAL.contains(&h.name.as_str());
        let (kind, removed) = match h.compression {
            0 | 2 => {
                if essential {
                    end = end.max(h.data + h.stored_size);
                } else {
                    erase(region, h.data, h.data + h.stored_size);
                }
                (
                    if h.compression == 0 {
                        "uncompressed"
                    } else {
                        "LZMA"
                    },
                    !essential,
                )
            }
            1 => {
                if llut.is_none() {
                    llut = Some(read_llut(region, h.data)?);
                }
                if let Some(l) = &llut {
                    if essential {
                        let first = (h.load_base as u64).checked_sub(l.base).ok_or_else(|| {
                            NeutralizeError::Malformed {
                                structure: "$MME header",
                                offset: h.data,
                                what: format!("module {} loads below the LLUT base", h.name),
                            }
                        })? / l.chunk_size;
                        let last = first + h.size as u64 / l.chunk_size;
                        kept_chunks.extend(
                            l.chunks
                                .iter()
                                .skip(first as usize)
                                .take((last - first + 1) as usize)
                                .filter(|c| c.0 != 0),
                        );
                    }
                }
                ("Huffman", !essential)
            }
            _ => ("unknown compression, left alone", false),
        };
        actions.push(ModuleAction {
            name: h.name.clone(),
            storage: kind.into(),
            removed,
        });
    }
    if let Some(l) = llut {
        for &(s, e) in &l.chunks {
            let overlaps = kept_chunks
                .iter()
                .any(|&(ks, ke)| (ks <= s && s < ke) || (ks < e && e <= ke));
            if !overlaps && e > s {
                erase(region, s, e);
            }
        }
        let kept_end =
            kept_chunks
                .iter()
                .map(|c| c.1)
                .max()
                .ok_or_else(|| NeutralizeError::Malformed {
                    structure: "LLUT",
                    offset: 0,
                    what: "Huffman modules present but no essential module in them".into(),
                })?;
        end = end.max(kept_end);
    }
    Ok((actions, end))
}

/// The LLUT of the first Huffman module, for relocation: its region offset
/// and the u16 at LLUT+9 (added by the ME to SpiBase).
pub(super) fn llut_for_relocation(
    region: &[u8],
    headers: &[MmeHeader],
) -> Result<Option<(u64, u64)>, NeutralizeError> {
    let Some(h) = headers.iter().find(|h| h.compression == 1) else {
        return Ok(None);
    };
    if h.data == 0 {
        return Ok(None);
    }
    Ok(Some((h.data, u16_at(region, h.data + 9, "LLUT")? as u64)))
}

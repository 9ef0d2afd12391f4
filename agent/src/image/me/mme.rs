//! Gen 2 module table (ME 6–10, TXE 1–2): the `$MME` headers after the FTPR
//! manifest, and the Huffman LLUT whose chunks hold the Huffman modules.

use super::bytes::{clipped, has_tag, name, slice, u32_at, ErasedMap};
use super::{Compression, MeError, Module};

const MME: &str = "$MME module header";
const LLUT: &str = "LLUT Huffman lookup table";
/// Module headers start here, after the header (0x284) and the partition name.
const FIRST_HEADER: u64 = 0x290;
const MAX_MODULES: u32 = 256;
const MAX_CHUNKS: u32 = 1 << 16;

/// The module table of a gen 2 FTPR whose manifest is at `manifest`.
#[derive(Debug, Clone)]
pub(crate) struct ModuleTable {
    pub header_size: u64,
    pub modules: Vec<Module>,
}

/// Reads `count` module headers. The header size (0x60 ME, 0x80 TXE) is
/// decided the way me_cleaner does: a second `$MME` tag at +0x60 or +0x80.
pub(crate) fn parse(
    map: &ErasedMap<'_>,
    manifest: u64,
    count: u32,
    partition: &str,
) -> Result<ModuleTable, MeError> {
    let region = map.bytes;
    let first = manifest + FIRST_HEADER;
    if count == 0 || count > MAX_MODULES {
        return Err(MeError::Malformed {
            structure: "manifest header",
            offset: manifest + 0x20,
            what: format!("module count {count} (expected 1..={MAX_MODULES})"),
        });
    }
    if !has_tag(region, first, b"$MME") {
        return Err(MeError::Malformed {
            structure: MME,
            offset: first,
            what: "no $MME tag after the manifest".into(),
        });
    }
    let header_size = if count == 1 || has_tag(region, first + 0x60, b"$MME") {
        0x60
    } else if has_tag(region, first + 0x80, b"$MME") {
        0x80
    } else {
        return Err(MeError::Malformed {
            structure: MME,
            offset: first,
            what: "cannot tell the header size (0x60 or 0x80)".into(),
        });
    };
    let mut raw = Vec::with_capacity(count as usize);
    for i in 0..u64::from(count) {
        let at = first + i * header_size;
        if !has_tag(region, at, b"$MME") {
            return Err(MeError::Malformed {
                structure: MME,
                offset: at,
                what: format!("header {i} of {count} has no $MME tag"),
            });
        }
        let h = slice(region, at, header_size, MME)?;
        raw.push(RawModule {
            name: name(slice(h, 4, 16, MME)?),
            load_address: u32_at(h, 0x34, MME)?,
            data_offset: manifest + u64::from(u32_at(h, 0x38, MME)?),
            uncompressed: u32_at(h, 0x3C, MME)?,
            compressed: u32_at(h, 0x40, MME)?,
            compression: match (u32_at(h, 0x50, MME)? >> 4) & 7 {
                0 => Compression::None,
                1 => Compression::Huffman,
                2 => Compression::Lzma,
                _ => Compression::Unknown,
            },
        });
    }
    let llut = match raw.iter().find(|m| m.compression == Compression::Huffman) {
        Some(m) => Some(Llut::parse(region, m.data_offset)?),
        None => None,
    };
    let modules = raw
        .into_iter()
        .map(|m| {
            let (offset, length, present) = match (&m.compression, &llut) {
                (Compression::Huffman, Some(l)) => {
                    (None, u64::from(m.uncompressed), l.module_present(map, &m))
                }
                _ => {
                    let len = u64::from(m.compressed);
                    (Some(m.data_offset), len, {
                        !clipped(region, m.data_offset, len).is_empty()
                            && !map.erased(m.data_offset, len)
                    })
                }
            };
            Module {
                partition: partition.to_string(),
                name: m.name,
                offset,
                length,
                compression: m.compression,
                present,
                hash: None,
            }
        })
        .collect();
    Ok(ModuleTable {
        header_size,
        modules,
    })
}

struct RawModule {
    name: String,
    load_address: u32,
    data_offset: u64,
    uncompressed: u32,
    compressed: u32,
    compression: Compression,
}

/// The Huffman chunk table: chunk `i` holds `chunk_size` bytes of module
/// address space starting at `base + i·chunk_size`.
struct Llut {
    base: u64,
    chunk_size: u64,
    /// Region offset of each chunk's data, `None` when the chunk is absent.
    chunks: Vec<Option<u64>>,
    /// Sorted distinct chunk offsets plus the Huffman stream end: a chunk
    /// ends where the next one starts.
    boundaries: Vec<u64>,
}

impl Llut {
    fn parse(region: &[u8], at: u64) -> Result<Llut, MeError> {
        if !has_tag(region, at, b"LLUT") {
            return Err(MeError::Malformed {
                structure: LLUT,
                offset: at,
                what: "Huffman modules but no LLUT tag".into(),
            });
        }
        let count = u32_at(region, at + 4, LLUT)?;
        let chunk_size = u64::from(u32_at(region, at + 0x30, LLUT)?);
        if count > MAX_CHUNKS || chunk_size == 0 {
            return Err(MeError::Malformed {
                structure: LLUT,
                offset: at + 4,
                what: format!("{count} chunks of {chunk_size:#x} bytes"),
            });
        }
        let base = u64::from(u32_at(region, at + 8, LLUT)?) + 0x1000_0000;
        let stream_end = u64::from(u32_at(region, at + 0x10, LLUT)?)
            + u64::from(u32_at(region, at + 0x14, LLUT)?);
        let table = slice(region, at + 0x40, u64::from(count) * 4, LLUT)?;
        let chunks: Vec<Option<u64>> = table
            .chunks_exact(4)
            .map(|c| (c[3] != 0x80).then(|| u64::from(u32::from_le_bytes([c[0], c[1], c[2], 0]))))
            .map(|o| o.filter(|&o| o != 0))
            .collect();
        let mut boundaries: Vec<u64> = chunks.iter().flatten().copied().collect();
        boundaries.push(stream_end);
        boundaries.sort_unstable();
        boundaries.dedup();
        Ok(Llut {
            base,
            chunk_size,
            chunks,
            boundaries,
        })
    }

    fn chunk_end(&self, start: u64) -> u64 {
        let i = self.boundaries.partition_point(|&b| b <= start);
        self.boundaries.get(i).copied().unwrap_or(start)
    }

    /// A Huffman module is present when it owns at least one chunk and every
    /// one of its chunks has data in the region that is not all 0xFF (a
    /// cleaner erases removed chunks, a truncation cuts them off).
    fn module_present(&self, map: &ErasedMap<'_>, m: &RawModule) -> bool {
        let Some(rel) = u64::from(m.load_address).checked_sub(self.base) else {
            return false;
        };
        let first = rel / self.chunk_size;
        // Bounded by the table: a hostile size must not make this loop long.
        let last =
            (first + u64::from(m.uncompressed) / self.chunk_size).min(self.chunks.len() as u64);
        let mut owned = (first..=last)
            .filter_map(|i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.chunks.get(i).copied().flatten())
            })
            .peekable();
        owned.peek().is_some()
            && owned.all(|start| {
                let len = self.chunk_end(start).saturating_sub(start);
                !clipped(map.bytes, start, len).is_empty() && !map.erased(start, len)
            })
    }
}

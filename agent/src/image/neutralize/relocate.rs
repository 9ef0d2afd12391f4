//! Optional: move the FTPR towards the region start (me_cleaner `-r`), so
//! that truncation can cut more. The new offset is 0x400, raised on gen 2
//! so that the LLUT's SpiBase stays representable, and aligned to 0x20.
//! Gen 2 Huffman data is addressed through the LLUT, so its SpiBase, the
//! Huffman stream start and every stored chunk offset move by the same
//! delta. The FPT entry's length is kept (me_cleaner does the same).

use super::bytes::{get, put, put_u32, u32_at};
use super::NeutralizeError;

/// Where me_cleaner puts a relocated FTPR, at the lowest.
const MIN_OFFSET: u64 = 0x400;

/// Moves the FTPR whose `$FPT` entry is at `entry` from `old` to the
/// lowest allowed offset; `llut` is (LLUT region offset, u16 at LLUT+9)
/// on gen 2 with Huffman modules. Returns the new offset (== `old` when
/// the FTPR already sits as low as it may).
pub(super) fn relocate(
    region: &mut [u8],
    entry: u64,
    old: u64,
    length: u64,
    llut: Option<(u64, u64)>,
) -> Result<u64, NeutralizeError> {
    let mut new = MIN_OFFSET;
    if let Some((at, correction)) = llut {
        new = new.max((correction + old).saturating_sub(at + 0x40));
        new = new.div_ceil(0x20) * 0x20;
    }
    if new >= old {
        return Ok(old);
    }
    let delta = old - new;
    put_u32(region, entry + 8, new as u32, "$FPT entry")?;
    if let Some((at, correction)) = llut {
        let bad = |what: &str| NeutralizeError::Malformed {
            structure: "LLUT",
            offset: at,
            what: what.into(),
        };
        // SpiBase: where the chunk table is, minus the correction.
        let spi_base = (at + 0x40)
            .checked_sub(delta + correction)
            .ok_or_else(|| bad("SpiBase would become negative"))?;
        put_u32(region, at + 0x0C, spi_base as u32, "LLUT")?;
        let huffman = u32_at(region, at + 0x14, "LLUT")? as u64;
        let huffman = huffman
            .checked_sub(delta)
            .ok_or_else(|| bad("Huffman start would become negative"))?;
        put_u32(region, at + 0x14, huffman as u32, "LLUT")?;
        let count = u32_at(region, at + 4, "LLUT")? as u64;
        let mut table = get(region, at + 0x40, count * 4, "LLUT chunk table")?.to_vec();
        for c in table.chunks_exact_mut(4) {
            if let [a, b, d, top] = c {
                if *top == 0x80 {
                    continue;
                }
                let v = u32::from_le_bytes([*a, *b, *d, 0]) as u64;
                let v = v
                    .checked_sub(delta)
                    .ok_or_else(|| bad("a chunk offset would become negative"))?;
                let [x, y, z, _] = (v as u32).to_le_bytes();
                (*a, *b, *d) = (x, y, z);
            }
        }
        put(region, at + 0x40, &table, "LLUT chunk table")?;
    }
    // Move the data (the part inside the region) and erase what it leaves.
    let size = length.min((region.len() as u64).saturating_sub(old));
    let (old_u, new_u, size_u) = (old as usize, new as usize, size as usize);
    if !matches!(old_u.checked_add(size_u), Some(e) if e <= region.len()) {
        return Err(NeutralizeError::Malformed {
            structure: "FTPR",
            offset: old,
            what: "partition outside the region".into(),
        });
    }
    region.copy_within(old_u..old_u + size_u, new_u);
    let vacated = (new_u + size_u).max(old_u);
    if let Some(tail) = region.get_mut(vacated..old_u + size_u) {
        tail.fill(0xFF);
    }
    Ok(new)
}

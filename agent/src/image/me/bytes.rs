//! Bounded little-endian reads over the region bytes. Every read names the
//! structure it belongs to, so a short buffer becomes an error that says
//! what was being read and where.

use super::MeError;

/// `len` bytes at `offset`, or a [`MeError::Truncated`] naming `structure`.
pub(crate) fn slice<'a>(
    data: &'a [u8],
    offset: u64,
    len: u64,
    structure: &'static str,
) -> Result<&'a [u8], MeError> {
    let truncated = || MeError::Truncated {
        structure,
        offset,
        needed: len,
        available: (data.len() as u64).saturating_sub(offset),
    };
    let start = usize::try_from(offset).map_err(|_| truncated())?;
    let n = usize::try_from(len).map_err(|_| truncated())?;
    let end = start.checked_add(n).ok_or_else(truncated)?;
    data.get(start..end).ok_or_else(truncated)
}

/// The bytes from `offset` to at most `offset + len`, clipped to the data
/// (empty when `offset` is past the end). For presence checks on
/// partitions that may be truncated.
pub(crate) fn clipped(data: &[u8], offset: u64, len: u64) -> &[u8] {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let end = usize::try_from(offset.saturating_add(len))
        .unwrap_or(usize::MAX)
        .min(data.len());
    data.get(start..end.max(start)).unwrap_or(&[])
}

pub(crate) fn u8_at(data: &[u8], offset: u64, structure: &'static str) -> Result<u8, MeError> {
    Ok(slice(data, offset, 1, structure)?[0])
}

pub(crate) fn u16_at(data: &[u8], offset: u64, structure: &'static str) -> Result<u16, MeError> {
    let b = slice(data, offset, 2, structure)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

pub(crate) fn u32_at(data: &[u8], offset: u64, structure: &'static str) -> Result<u32, MeError> {
    let b = slice(data, offset, 4, structure)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

pub(crate) fn u64_at(data: &[u8], offset: u64, structure: &'static str) -> Result<u64, MeError> {
    let b = slice(data, offset, 8, structure)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
}

/// True when `data` is at `offset` and starts with `tag`.
pub(crate) fn has_tag(data: &[u8], offset: u64, tag: &[u8]) -> bool {
    slice(data, offset, tag.len() as u64, "tag").is_ok_and(|b| b == tag)
}

/// True when every byte is 0xFF (erased flash). Empty input is not erased.
pub(crate) fn is_erased(data: &[u8]) -> bool {
    !data.is_empty() && data.iter().all(|&b| b == 0xFF)
}

/// Which 4 KiB blocks of the region are all 0xFF, computed once, so that
/// "is this span erased?" costs a lookup per block: hostile tables listing
/// hundreds of entries over the same erased megabytes stay cheap.
pub(crate) struct ErasedMap<'a> {
    pub bytes: &'a [u8],
    blocks: Vec<bool>,
}

const BLOCK: usize = 0x1000;

impl<'a> ErasedMap<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        let blocks = bytes
            .chunks(BLOCK)
            .map(|c| c.iter().all(|&b| b == 0xFF))
            .collect();
        ErasedMap { bytes, blocks }
    }

    /// True when the part of `[offset, offset+len)` inside the region is
    /// non-empty and all 0xFF.
    pub(crate) fn erased(&self, offset: u64, len: u64) -> bool {
        let span = clipped(self.bytes, offset, len);
        if span.is_empty() {
            return false;
        }
        // `clipped` returned a sub-slice, so these are in range.
        let start = offset as usize;
        let end = start + span.len();
        let mut at = start;
        while at < end {
            let block = at / BLOCK;
            let block_end = ((block + 1) * BLOCK).min(end);
            let whole = at % BLOCK == 0 && block_end - at == BLOCK;
            let ok = if whole {
                self.blocks.get(block).copied().unwrap_or(false)
            } else {
                is_erased(self.bytes.get(at..block_end).unwrap_or(&[]))
            };
            if !ok {
                return false;
            }
            at = block_end;
        }
        true
    }
}

/// A fixed-width name field as text: NUL padding dropped; anything not
/// printable ASCII is shown as the hex of the whole field.
pub(crate) fn name(field: &[u8]) -> String {
    let trimmed = match field.iter().position(|&b| b == 0) {
        Some(n) => field.get(..n).unwrap_or(field),
        None => field,
    };
    if !trimmed.is_empty() && trimmed.iter().all(|b| b.is_ascii_graphic()) {
        String::from_utf8_lossy(trimmed).into_owned()
    } else {
        format!("0x{}", hex::encode_upper(field))
    }
}

/// Byte sum modulo 256.
pub(crate) fn sum8(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded_and_name_the_structure() {
        let d = [1u8, 2, 3];
        assert_eq!(u16_at(&d, 1, "x").unwrap(), 0x0302);
        let e = u32_at(&d, 1, "widget").unwrap_err();
        assert_eq!(
            e,
            MeError::Truncated {
                structure: "widget",
                offset: 1,
                needed: 4,
                available: 2
            }
        );
        assert!(u8_at(&d, u64::MAX, "x").is_err());
        assert!(slice(&d, 2, u64::MAX, "x").is_err());
    }

    #[test]
    fn clipped_never_overruns() {
        let d = [0xFFu8; 4];
        assert_eq!(clipped(&d, 2, 10).len(), 2);
        assert!(clipped(&d, 9, 10).is_empty());
        assert!(clipped(&d, u64::MAX, u64::MAX).is_empty());
    }

    #[test]
    fn erased_map_agrees_with_a_plain_scan() {
        let mut d = vec![0xFFu8; 0x5000];
        d[0x2345] = 0;
        let m = ErasedMap::new(&d);
        for (off, len) in [
            (0, 0x5000),
            (0, 0x2345),
            (0, 0x2346),
            (0x2346, 0x10000),
            (0x1FFF, 2),
            (0x6000, 4),
            (0, 0),
        ] {
            let plain = is_erased(clipped(&d, off, len));
            assert_eq!(m.erased(off, len), plain, "{off:#x}+{len:#x}");
        }
    }

    #[test]
    fn names_show_non_ascii_as_hex() {
        assert_eq!(name(b"FTPR"), "FTPR");
        assert_eq!(name(b"MFS\0"), "MFS");
        assert_eq!(name(&[0xE0, 0x15, 0, 0x20]), "0xE0150020");
    }
}

//! Bounded little-endian reads and writes over a region buffer. Every
//! access is checked; a miss is a [`NeutralizeError::Malformed`] naming the
//! structure and the region offset.

use super::NeutralizeError;

fn bad(structure: &'static str, offset: u64, what: &str) -> NeutralizeError {
    NeutralizeError::Malformed {
        structure,
        offset,
        what: what.to_string(),
    }
}

/// `len` bytes at `offset`, or an error naming `structure`.
pub(super) fn get<'a>(
    data: &'a [u8],
    offset: u64,
    len: u64,
    structure: &'static str,
) -> Result<&'a [u8], NeutralizeError> {
    let start = usize::try_from(offset).map_err(|_| bad(structure, offset, "offset too large"))?;
    let len = usize::try_from(len).map_err(|_| bad(structure, offset, "length too large"))?;
    start
        .checked_add(len)
        .and_then(|end| data.get(start..end))
        .ok_or_else(|| {
            bad(
                structure,
                offset,
                &format!("needs {len:#x} bytes, the region has {:#x}", data.len()),
            )
        })
}

pub(super) fn u16_at(data: &[u8], offset: u64, s: &'static str) -> Result<u16, NeutralizeError> {
    let b = get(data, offset, 2, s)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

pub(super) fn u32_at(data: &[u8], offset: u64, s: &'static str) -> Result<u32, NeutralizeError> {
    let b = get(data, offset, 4, s)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Overwrites bytes at `offset` (bounds-checked).
pub(super) fn put(
    data: &mut [u8],
    offset: u64,
    bytes: &[u8],
    s: &'static str,
) -> Result<(), NeutralizeError> {
    let dst = range_mut(data, offset, bytes.len() as u64, s)?;
    dst.copy_from_slice(bytes);
    Ok(())
}

pub(super) fn put_u32(
    data: &mut [u8],
    offset: u64,
    v: u32,
    s: &'static str,
) -> Result<(), NeutralizeError> {
    put(data, offset, &v.to_le_bytes(), s)
}

pub(super) fn range_mut<'a>(
    data: &'a mut [u8],
    offset: u64,
    len: u64,
    structure: &'static str,
) -> Result<&'a mut [u8], NeutralizeError> {
    let have = data.len();
    let start = usize::try_from(offset).map_err(|_| bad(structure, offset, "offset too large"))?;
    let len = usize::try_from(len).map_err(|_| bad(structure, offset, "length too large"))?;
    start
        .checked_add(len)
        .and_then(|end| data.get_mut(start..end))
        .ok_or_else(|| {
            bad(
                structure,
                offset,
                &format!("needs {len:#x} bytes, the region has {have:#x}"),
            )
        })
}

/// Fills `[start, end)` with 0xFF, clipped to the buffer (me_cleaner clips
/// every wipe to the region end). An empty or inverted range does nothing.
pub(super) fn erase(data: &mut [u8], start: u64, end: u64) {
    let len = data.len() as u64;
    let (start, end) = (start.min(len), end.min(len));
    if start < end {
        if let Some(d) = data.get_mut(start as usize..end as usize) {
            d.fill(0xFF);
        }
    }
}

/// NUL-trimmed ASCII name; `None` when not ASCII.
pub(super) fn ascii_name(field: &[u8]) -> Option<String> {
    let end = field.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let s = field.get(..end)?;
    s.is_ascii()
        .then(|| String::from_utf8_lossy(s).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded() {
        let d = [1u8, 2, 3, 4, 5];
        assert_eq!(u32_at(&d, 1, "t").unwrap(), 0x0504_0302);
        assert!(u32_at(&d, 2, "t").is_err());
        assert!(u32_at(&d, u64::MAX, "t").is_err());
        assert!(get(&d, 4, u64::MAX, "t").is_err());
    }

    #[test]
    fn erase_clips() {
        let mut d = [0u8; 4];
        erase(&mut d, 2, 100);
        assert_eq!(d, [0, 0, 0xFF, 0xFF]);
        erase(&mut d, 3, 1);
        assert_eq!(d, [0, 0, 0xFF, 0xFF]);
    }

    #[test]
    fn names() {
        assert_eq!(ascii_name(b"FTPR").as_deref(), Some("FTPR"));
        assert_eq!(ascii_name(b"BUP\0\0\0").as_deref(), Some("BUP"));
        assert_eq!(ascii_name(&[0xE0, 0x15, 0, 0x20]), None);
    }
}

//! Bounded little-endian reads over the descriptor bytes.

use super::DescriptorError;

/// The u32 at `offset`, or `Truncated` naming `structure`.
pub(crate) fn u32_at(
    bytes: &[u8],
    offset: usize,
    structure: &'static str,
) -> Result<u32, DescriptorError> {
    let end = offset.checked_add(4);
    match end.and_then(|end| bytes.get(offset..end)) {
        Some(&[a, b, c, d]) => Ok(u32::from_le_bytes([a, b, c, d])),
        _ => Err(DescriptorError::Truncated {
            structure,
            offset,
            len: 4,
            available: bytes.len(),
        }),
    }
}

/// Serializes dwords as `"0x%08x"` strings: straps are read as bit fields.
pub(crate) fn hex_u32s<S: serde::Serializer>(v: &[u32], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|x| format!("{x:#010x}")))
}

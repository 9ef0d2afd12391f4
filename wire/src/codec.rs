//! postcard encoding with a format version in front.
//!
//! Every top-level type starts with a [`FormatVersion`]. A reader accepts
//! its own major version only. A newer minor version may append fields at
//! the end of the top-level struct: an older reader decodes the prefix it
//! knows and ignores the rest. Because signatures and quotes cover the
//! bytes as sent, nothing is lost by ignoring a tail: the verifier hashes
//! the original bytes, never a re-encoding.

use crate::FormatVersion;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("{what}: format version {found_major}.{found_minor} not readable (this reader knows {known_major}.x)")]
    UnsupportedVersion {
        what: &'static str,
        found_major: u16,
        found_minor: u16,
        known_major: u16,
    },
    #[error("{what}: malformed postcard at or after byte {offset} of {len}: {reason}")]
    Malformed {
        what: &'static str,
        offset: usize,
        len: usize,
        reason: String,
    },
    #[error("{what}: {extra} trailing bytes after a version-{major}.{minor} value (only a newer minor version may append)")]
    TrailingBytes {
        what: &'static str,
        extra: usize,
        major: u16,
        minor: u16,
    },
    #[error("{what}: cannot encode: {reason}")]
    Encode { what: &'static str, reason: String },
}

/// Encodes any wire value to postcard bytes.
pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_allocvec(value).map_err(|e| CodecError::Encode {
        what,
        reason: e.to_string(),
    })
}

/// Decodes a versioned top-level value (`Report`, `Policy`, ...), applying
/// the growth rules above. `known` is the version this reader implements.
pub fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    known: FormatVersion,
) -> Result<T, CodecError> {
    let malformed = |rest_len: usize, e: postcard::Error| CodecError::Malformed {
        what,
        offset: bytes.len() - rest_len,
        len: bytes.len(),
        reason: e.to_string(),
    };
    let (found, _) =
        postcard::take_from_bytes::<FormatVersion>(bytes).map_err(|e| malformed(bytes.len(), e))?;
    if found.major != known.major {
        return Err(CodecError::UnsupportedVersion {
            what,
            found_major: found.major,
            found_minor: found.minor,
            known_major: known.major,
        });
    }
    // postcard's error does not carry a position; report the start of the
    // value (offset 0) rather than guess.
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| malformed(bytes.len(), e))?;
    if !rest.is_empty() && found.minor <= known.minor {
        return Err(CodecError::TrailingBytes {
            what,
            extra: rest.len(),
            major: found.major,
            minor: found.minor,
        });
    }
    Ok(value)
}

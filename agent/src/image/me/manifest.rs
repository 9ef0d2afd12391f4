//! `$MN2` / `$MAN` manifests: header fields, the embedded RSA key and its
//! SHA-256 id, the signature check, and (CSE) the extension list, from which
//! the SKU is read.

use sha2::{Digest, Sha256};

use super::bytes::{slice, u32_at, u64_at};
use super::signature::{verify_pkcs1_sha256, verify_pss_sha384};
use super::{keys, FwVersion, ManifestFacts, MeError, Signature, SignatureScheme, Sku, SkuType};

const HEADER: &str = "manifest header";
/// Offset of the RSA modulus in the header (both layouts).
const KEY_AT: u64 = 0x80;
/// CSE manifests are well below this; a bigger size is damage.
const MAX_SIZE: u64 = 0x10_0000;

/// A parsed manifest: report facts plus what callers need.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub facts: ManifestFacts,
    /// Gen 2: module count at +0x20.
    pub module_count: u32,
    pub sku: Option<Sku>,
}

/// Reads the manifest whose header starts at `offset`; `name` labels it.
pub(crate) fn parse(region: &[u8], offset: u64, name: &str) -> Result<Manifest, MeError> {
    let h = slice(region, offset, KEY_AT, HEADER)?;
    let field = |at: u64| u32_at(h, at, HEADER);
    let tag_bytes = slice(h, 0x1C, 4, HEADER)?;
    let tag = match tag_bytes {
        b"$MN2" => "$MN2",
        b"$MAN" => "$MAN",
        _ => {
            return Err(MeError::Malformed {
                structure: HEADER,
                offset: offset + 0x1C,
                what: format!(
                    "tag {} is neither $MN2 nor $MAN",
                    super::bytes::name(tag_bytes)
                ),
            })
        }
    };
    let header_length = u64::from(field(4)?) * 4;
    let header_version = field(8)?;
    let flags = field(0xC)?;
    let size = u64::from(field(0x18)?) * 4;
    let key_len = u64::from(field(0x78)?) * 4;
    let exp_len = u64::from(field(0x7C)?) * 4;
    let malformed = |at: u64, what: String| MeError::Malformed {
        structure: HEADER,
        offset: offset + at,
        what,
    };
    if key_len != 0x100 && key_len != 0x180 {
        return Err(malformed(
            0x78,
            format!("public key of {key_len:#x} bytes (expected 0x100 or 0x180)"),
        ));
    }
    if exp_len != 4 {
        return Err(malformed(
            0x7C,
            format!("exponent of {exp_len} bytes (expected 4)"),
        ));
    }
    if header_length != KEY_AT + key_len + exp_len + key_len {
        return Err(malformed(
            4,
            format!(
                "header length {header_length:#x} does not fit a {}-bit key",
                key_len * 8
            ),
        ));
    }
    if size < header_length || size > MAX_SIZE {
        return Err(malformed(
            0x18,
            format!("manifest size {size:#x} (header is {header_length:#x})"),
        ));
    }
    let body = slice(region, offset, size, "manifest body")?;
    let modulus = slice(body, KEY_AT, key_len, HEADER)?;
    let exponent = u32_at(body, KEY_AT + key_len, HEADER)?;
    let sig = slice(body, KEY_AT + key_len + 4, key_len, HEADER)?;
    let signed: [&[u8]; 2] = [
        slice(body, 0, KEY_AT, HEADER)?,
        slice(body, header_length, size - header_length, HEADER)?,
    ];

    let unsigned = exponent == 0 || modulus.iter().all(|&b| b == 0);
    let signature = match (tag, key_len) {
        // Seen on the GLK SMIP.man: an OEM manifest with no key at all.
        _ if unsigned => Signature::Unchecked {
            why: "the manifest carries no public key (unsigned)".into(),
        },
        ("$MAN", _) => Signature::Unchecked {
            why: "SHA-1 $MAN (gen 1) signatures are not checked".into(),
        },
        (_, 0x100) => verdict(
            SignatureScheme::Rsa2048Pkcs1Sha256,
            verify_pkcs1_sha256(modulus, exponent, sig, &signed),
        ),
        _ => verdict(
            SignatureScheme::Rsa3072PssSha384,
            verify_pss_sha384(modulus, exponent, sig, &signed),
        ),
    };
    let key_sha256 = hex::encode(Sha256::digest(modulus));
    let version = FwVersion {
        major: u16_field(h, 0x24)?,
        minor: u16_field(h, 0x26)?,
        hotfix: u16_field(h, 0x28)?,
        build: u16_field(h, 0x2A)?,
    };
    let date = field(0x14)?;
    let sku = if tag == "$MN2" && u32_at(h, 0, HEADER)? & 0xFFFF == 4 {
        find_sku(body, header_length)
    } else {
        None
    };
    Ok(Manifest {
        facts: ManifestFacts {
            name: name.to_string(),
            offset,
            tag: tag.to_string(),
            header_version,
            header_length: header_length as u32,
            size: size as u32,
            flags,
            debug_signed: flags & (1 << 31) != 0,
            date: format!(
                "{:04x}-{:02x}-{:02x}",
                date >> 16,
                (date >> 8) & 0xFF,
                date & 0xFF
            ),
            version,
            svn: field(0x2C)?,
            key_bits: (key_len * 8) as u32,
            exponent,
            known_key: keys::label(&key_sha256),
            key_sha256,
            signature,
        },
        module_count: field(0x20)?,
        sku,
    })
}

fn u16_field(h: &[u8], at: u64) -> Result<u16, MeError> {
    super::bytes::u16_at(h, at, HEADER)
}

fn verdict(scheme: SignatureScheme, r: Result<(), String>) -> Signature {
    match r {
        Ok(()) => Signature::Consistent { scheme },
        Err(why) => Signature::Inconsistent { scheme, why },
    }
}

/// Walks the CSE extensions after the header for extension 0x0C (client
/// system info) and decodes `FWSKUAttrib` (u64 at +0x28). Gen 2 manifests
/// have module headers here instead; they never carry a valid 0x0C chain
/// from the header end, and a walk that meets garbage simply stops.
fn find_sku(body: &[u8], header_length: u64) -> Option<Sku> {
    let mut at = header_length;
    // Each step advances by at least 8 bytes, so this ends.
    while let (Ok(ext_type), Ok(len)) = (u32_at(body, at, "ext"), u32_at(body, at + 4, "ext")) {
        let len = u64::from(len);
        if len < 8 {
            return None;
        }
        if ext_type == 0x0C {
            let raw = u64_at(body, at + 0x28, "client system info extension").ok()?;
            let sku_type = match (raw >> 4) & 7 {
                0 => SkuType::Corporate,
                1 => SkuType::Consumer,
                2 => SkuType::Slim,
                3 => SkuType::Server,
                n => SkuType::Other(n as u8),
            };
            return Some(Sku {
                sku_type,
                platform: None,
                raw,
            });
        }
        at += len;
    }
    None
}

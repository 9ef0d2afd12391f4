//! CSE module hashes: the chain signed manifest → `.met` → module. The
//! partition manifest lists the SHA-256 of every `<module>.met`; each
//! `.met` carries a module-attributes extension (type 0x0A) with the
//! module's hash at +0x18: SHA-256 when the extension is 0x38 bytes long,
//! SHA-384 when it is 0x48 (CSME 16+, where the manifest lists SHA-384s of
//! the `.met`s too). Hashes are stored byte-reversed. For Huffman
//! modules that hash covers the decompressed code, which is not checked
//! here.

use sha2::{Digest, Sha256, Sha384};

use super::bytes::{clipped, slice, u32_at, u8_at};
use super::cpd::Cpd;
use super::ModuleHash;

const MODULE_ATTRIBUTES: u32 = 0x0A;

/// Checks the module `name` of `dir` against its `.met`, and the `.met`
/// against the partition's manifests (`signed`: their bytes).
pub(crate) fn check(region: &[u8], dir: &Cpd, name: &str, signed: &[&[u8]]) -> Option<ModuleHash> {
    let module = dir.entries.iter().find(|e| e.name == name)?;
    let met_name = format!("{name}.met");
    let met_entry = dir.entries.iter().find(|e| e.name == met_name)?;
    let Ok(met) = slice(
        region,
        met_entry.offset,
        met_entry.length,
        "module metadata",
    ) else {
        return Some(mismatch(format!("{met_name} runs past the region")));
    };
    let Some((compression, expected)) = attributes(met) else {
        return Some(ModuleHash::Unchecked {
            why: format!("{met_name} has no module-attributes extension"),
        });
    };
    let sha384 = expected.len() == 48;
    let met_hash = digest(sha384, met);
    if !signed.iter().any(|m| contains(m, &met_hash)) {
        return Some(mismatch(format!(
            "{met_name} is not the one the manifest lists"
        )));
    }
    if module.huffman || compression == 1 {
        return Some(ModuleHash::Unchecked {
            why: "Huffman module: its hash covers the decompressed code".into(),
        });
    }
    let data = clipped(region, module.offset, module.length);
    if (data.len() as u64) < module.length {
        return Some(mismatch("module data runs past the region".into()));
    }
    if digest(sha384, data) != expected {
        let algo = if sha384 { "SHA-384" } else { "SHA-256" };
        return Some(mismatch(format!(
            "{algo} of {name} differs from {met_name}"
        )));
    }
    Some(ModuleHash::Matches)
}

fn mismatch(why: String) -> ModuleHash {
    ModuleHash::Mismatch { why }
}

/// SHA-256 or SHA-384 of `data`, byte-reversed as Intel stores it.
fn digest(sha384: bool, data: &[u8]) -> Vec<u8> {
    let h = if sha384 {
        Sha384::digest(data).to_vec()
    } else {
        Sha256::digest(data).to_vec()
    };
    h.into_iter().rev().collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// (compression, stored module hash) from the 0x0A extension. The walk
/// advances by each extension's length (at least 8), so it ends.
fn attributes(met: &[u8]) -> Option<(u8, Vec<u8>)> {
    let mut at = 0u64;
    while let (Ok(t), Ok(len)) = (u32_at(met, at, "ext"), u32_at(met, at + 4, "ext")) {
        let len = u64::from(len);
        if len < 8 {
            return None;
        }
        if t == MODULE_ATTRIBUTES {
            let compression = u8_at(met, at + 8, "module attributes").ok()?;
            let hash_len = if len >= 0x48 { 48 } else { 32 };
            let hash = slice(met, at + 0x18, hash_len, "module attributes").ok()?;
            return Some((compression, hash.to_vec()));
        }
        at += len;
    }
    None
}

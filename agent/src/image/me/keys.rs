//! Pinned RSA public keys seen in ME manifests, identified as MEAnalyzer
//! does: SHA-256 of the modulus bytes as stored (little-endian). A match
//! names the key and the family it signs; it is a label for the report and
//! a hint for family detection, not a trust decision.

use super::Family;

struct KnownKey {
    sha256: &'static str,
    label: &'static str,
    family: Option<Family>,
}

/// Measured on the corpus images (reference §15) and consistent with the
/// MEA key database prefixes quoted in the reference (§6.3).
const KEYS: &[KnownKey] = &[
    key(
        "a356e3acc4ac8d87cf0d7ab0731de4e0a7755fc38d0068f31503aa4fb921a835",
        "ME 7-8 production key",
        Some(Family::Me),
    ),
    key(
        "613421a156443f1c038dde342ff6564513a1818e8cc23b0e1d7d7fb0612e04ac",
        "TXE 1 production key",
        Some(Family::Txe),
    ),
    key(
        "46e378312f389af5442a7b3e775f3078e8d0aa511f25c1b3b105e28c09cd68ab",
        "TXE 2 production key",
        Some(Family::Txe),
    ),
    key(
        "69c77ef8082e2bd3142db2f63c361a85b43aa51fad5ced733b6b9ea22f7ca49e",
        "CSME 11 production key",
        Some(Family::Csme),
    ),
    key(
        "de15892b631eac79b0b8464b719c2534fcc9162423762ddf6a00b7051bdb9ede",
        "CSME 14.0 production key",
        Some(Family::Csme),
    ),
    key(
        "be6a10cbeb031617757192a192a1df760b7940f2baae69e48c4fed2b55a7b08f",
        "CSME 16.1 production key",
        Some(Family::Csme),
    ),
    key(
        "ed0274fa0cb016e561dfe8e5aec8a8e4822da4836ae3391d7fd4e30eac3cea1f",
        "CSTXE 4 production key",
        Some(Family::Cstxe),
    ),
    key(
        "779113e94c80072d810f500e9766a99c614ec04792128c706ea85c6dbfed898f",
        "CSSPS 5 FTPR2 key",
        Some(Family::Cssps),
    ),
    // Shared by pre-production ME 6-10, CSME 11, TXE 0-2 and CSSPS 5 FTPR.man: names no family.
    key(
        "86c0e5ef0cfeff6d810d68d83d8c6ecb68306a644c03c0446b646a3971d37894",
        "shared pre-production key",
        None,
    ),
];

const fn key(sha256: &'static str, label: &'static str, family: Option<Family>) -> KnownKey {
    KnownKey {
        sha256,
        label,
        family,
    }
}

/// The label of a known key, if `sha256` (lower-case hex) is pinned.
pub(crate) fn label(sha256: &str) -> Option<&'static str> {
    KEYS.iter().find(|k| k.sha256 == sha256).map(|k| k.label)
}

/// The family a known key signs, when the key is specific to one family.
pub(crate) fn family(sha256: &str) -> Option<Family> {
    KEYS.iter()
        .find(|k| k.sha256 == sha256)
        .and_then(|k| k.family)
}

//! RSA signature checks of ME manifests against the key embedded in the
//! manifest itself: PKCS#1 v1.5 with SHA-256 (RSA-2048) and RSASSA-PSS with
//! SHA-384, MGF1-SHA-384 and a 48-byte salt (RSA-3072). Both are done by
//! hand over `num-bigint`, so that a failure can say *why* (bad padding vs
//! digest mismatch) — the Whitley CSSPS image needs exactly that distinction.

use num_bigint::BigUint;
use sha2::{Digest, Sha256, Sha384};

/// DER prefix of a SHA-256 DigestInfo (RFC 8017 §9.2 note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const PSS_SALT_LEN: usize = 48;

/// `sig^e mod n` as a big-endian block of the modulus length. Modulus and
/// signature are given little-endian, as the manifest stores them.
fn public_op(modulus_le: &[u8], exponent: u32, sig_le: &[u8]) -> Result<Vec<u8>, String> {
    let n = BigUint::from_bytes_le(modulus_le);
    let s = BigUint::from_bytes_le(sig_le);
    if n.bits() < 1024 || exponent < 3 || exponent % 2 == 0 {
        return Err(format!(
            "unusable key ({} bits, exponent {exponent})",
            n.bits()
        ));
    }
    if s >= n {
        return Err("signature is not smaller than the modulus".into());
    }
    let m = s.modpow(&BigUint::from(exponent), &n).to_bytes_be();
    let k = modulus_le.len();
    let mut block = vec![0u8; k.saturating_sub(m.len())];
    block.extend_from_slice(&m);
    Ok(block)
}

/// Verifies an RSASSA-PKCS1-v1_5 SHA-256 signature over `message`.
pub(crate) fn verify_pkcs1_sha256(
    modulus_le: &[u8],
    exponent: u32,
    sig_le: &[u8],
    message: &[&[u8]],
) -> Result<(), String> {
    let em = public_op(modulus_le, exponent, sig_le)?;
    let mut h = Sha256::new();
    message.iter().for_each(|m| h.update(m));
    let digest = h.finalize();
    let k = em.len();
    let tail_len = SHA256_DIGEST_INFO.len() + digest.len();
    // 00 01 FF..FF (at least 8) 00 DigestInfo digest
    let ps_end = k
        .checked_sub(tail_len + 1)
        .ok_or("modulus too short for SHA-256")?;
    let well_formed = em.first() == Some(&0)
        && em.get(1) == Some(&1)
        && ps_end >= 10
        && em
            .get(2..ps_end)
            .is_some_and(|ps| ps.iter().all(|&b| b == 0xFF))
        && em.get(ps_end) == Some(&0)
        && em.get(ps_end + 1..k - digest.len()) == Some(&SHA256_DIGEST_INFO[..]);
    if !well_formed {
        return Err("decrypted block is not PKCS#1 v1.5 SHA-256 padding".into());
    }
    if em.get(k - digest.len()..) != Some(&digest[..]) {
        return Err(
            "well-formed PKCS#1 block, but its SHA-256 digest does not match the manifest".into(),
        );
    }
    Ok(())
}

/// MGF1 with SHA-384 (RFC 8017 B.2.1).
fn mgf1_sha384(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 48);
    let mut counter = 0u32;
    while out.len() < len {
        let mut h = Sha384::new();
        h.update(seed);
        h.update(counter.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// Verifies an RSASSA-PSS SHA-384 signature (MGF1-SHA-384, 48-byte salt)
/// over `message` (RFC 8017 §9.1.2).
pub(crate) fn verify_pss_sha384(
    modulus_le: &[u8],
    exponent: u32,
    sig_le: &[u8],
    message: &[&[u8]],
) -> Result<(), String> {
    let n_bits = BigUint::from_bytes_le(modulus_le).bits() as usize;
    let em_full = public_op(modulus_le, exponent, sig_le)?;
    let em_bits = n_bits - 1;
    let em_len = em_bits.div_ceil(8);
    // The public op gives k bytes; EM is its last em_len bytes, the rest 0.
    let skip = em_full.len() - em_len;
    if em_full
        .get(..skip)
        .is_some_and(|z| z.iter().any(|&b| b != 0))
    {
        return Err("PSS block too large for the modulus".into());
    }
    let em = em_full.get(skip..).ok_or("PSS block too short")?;
    let h_len = 48;
    if em_len < h_len + PSS_SALT_LEN + 2 || em.last() != Some(&0xBC) {
        return Err("decrypted block does not end in 0xBC: not a PSS encoding".into());
    }
    let db_len = em_len - h_len - 1;
    let (masked_db, rest) = em.split_at(db_len);
    let hash = rest.get(..h_len).ok_or("PSS block too short")?;
    let mut db: Vec<u8> = masked_db
        .iter()
        .zip(mgf1_sha384(hash, db_len))
        .map(|(a, b)| a ^ b)
        .collect();
    let top_bits = 8 * em_len - em_bits;
    if let Some(first) = db.first_mut() {
        *first &= 0xFFu8 >> top_bits;
    }
    let ps_len = db_len - PSS_SALT_LEN - 1;
    if db
        .get(..ps_len)
        .is_some_and(|ps| ps.iter().any(|&b| b != 0))
        || db.get(ps_len) != Some(&1)
    {
        return Err("PSS padding malformed (wrong salt length or wrong key)".into());
    }
    let salt = db.get(ps_len + 1..).ok_or("PSS block too short")?;
    let mut mh = Sha384::new();
    message.iter().for_each(|m| mh.update(m));
    let m_hash = mh.finalize();
    let mut h = Sha384::new();
    h.update([0u8; 8]);
    h.update(m_hash);
    h.update(salt);
    if h.finalize().as_slice() != hash {
        return Err(
            "well-formed PSS block, but its SHA-384 hash does not match the manifest".into(),
        );
    }
    Ok(())
}

//! Sealing an AMT credential to the org: X25519 (ephemeral-static) key
//! agreement, HKDF-SHA256, ChaCha20-Poly1305. Only the holder of the org's
//! X25519 secret key (`fortros-org init` writes it) opens it.
//!
//! Sealed form: `version (1) || ephemeral public key (32) || ciphertext+tag`.
//! The associated data binds it to its context (the node's AK name), so a
//! sealed password cannot be replayed as another node's.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use rand_core::{CryptoRngCore, OsRng};
use sha2::Sha256;
use thiserror::Error;
use x25519_dalek::{EphemeralSecret, PublicKey, StaticSecret};
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const INFO: &[u8] = b"fortros amt credential seal v1";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed credential: {0}")]
    Malformed(&'static str),
    #[error("sealed credential does not open (wrong key, other context, or altered)")]
    Open,
    #[error("sealing failed: {0}")]
    Seal(&'static str),
}

fn derive(shared: &[u8; 32], eph: &[u8; 32], org: &[u8; 32]) -> Zeroizing<[u8; 44]> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(eph);
    salt[32..].copy_from_slice(org);
    let hk = Hkdf::<Sha256>::new(Some(&salt), shared);
    let mut okm = Zeroizing::new([0u8; 44]);
    // 32 bytes of key, 12 of nonce: a fresh key per message.
    let _ = hk.expand(INFO, &mut okm[..]);
    okm
}

/// Seals `secret` to the org's X25519 public key.
pub fn seal(org_public: &[u8; 32], secret: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError> {
    seal_with(org_public, secret, context, &mut OsRng)
}

pub fn seal_with(
    org_public: &[u8; 32],
    secret: &[u8],
    context: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, SealError> {
    let eph = EphemeralSecret::random_from_rng(rng);
    let eph_pub = PublicKey::from(&eph);
    let shared = eph.diffie_hellman(&PublicKey::from(*org_public));
    if !shared.was_contributory() {
        return Err(SealError::Seal("org public key is a low-order point"));
    }
    let okm = derive(shared.as_bytes(), eph_pub.as_bytes(), org_public);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&okm[..32]));
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&okm[32..]),
            Payload {
                msg: secret,
                aad: context,
            },
        )
        .map_err(|_| SealError::Seal("AEAD"))?;
    let mut out = Vec::with_capacity(33 + ct.len());
    out.push(VERSION);
    out.extend_from_slice(eph_pub.as_bytes());
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a sealed credential with the org's X25519 secret key.
pub fn open(
    org_secret: &[u8; 32],
    sealed: &[u8],
    context: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let (Some(&version), Some(eph), Some(ct)) =
        (sealed.first(), sealed.get(1..33), sealed.get(33..))
    else {
        return Err(SealError::Malformed("shorter than 33 bytes"));
    };
    if version != VERSION {
        return Err(SealError::Malformed("unknown version"));
    }
    if ct.len() < 16 {
        return Err(SealError::Malformed("no room for the tag"));
    }
    let mut eph_bytes = [0u8; 32];
    eph_bytes.copy_from_slice(eph);
    let secret = StaticSecret::from(*org_secret);
    let org_public = PublicKey::from(&secret);
    let shared = secret.diffie_hellman(&PublicKey::from(eph_bytes));
    if !shared.was_contributory() {
        return Err(SealError::Open);
    }
    let okm = derive(shared.as_bytes(), &eph_bytes, org_public.as_bytes());
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&okm[..32]));
    cipher
        .decrypt(
            Nonce::from_slice(&okm[32..]),
            Payload {
                msg: ct,
                aad: context,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::Open)
}

/// The public half of an org X25519 secret key.
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    *PublicKey::from(&StaticSecret::from(*secret)).as_bytes()
}

/// A fresh X25519 secret key.
pub fn generate_secret() -> Zeroizing<[u8; 32]> {
    let s = StaticSecret::random_from_rng(OsRng);
    Zeroizing::new(s.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let sk = generate_secret();
        let pk = public_key(&sk);
        let sealed = seal(&pk, b"Secr3t-P@ss", b"node-ak-name").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"Secr3"));
        assert_eq!(sealed.len(), 1 + 32 + 11 + 16);
        assert_eq!(
            &open(&sk, &sealed, b"node-ak-name").unwrap()[..],
            b"Secr3t-P@ss"
        );
        // Other context, other key, altered byte, truncation, bad version.
        assert_eq!(open(&sk, &sealed, b"other").unwrap_err(), SealError::Open);
        let other = generate_secret();
        assert_eq!(
            open(&other, &sealed, b"node-ak-name").unwrap_err(),
            SealError::Open
        );
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            open(&sk, &bad, b"node-ak-name").unwrap_err(),
            SealError::Open
        );
        assert!(matches!(
            open(&sk, &sealed[..20], b""),
            Err(SealError::Malformed(_))
        ));
        assert!(matches!(
            open(&sk, &sealed[..40], b""),
            Err(SealError::Malformed(_))
        ));
        let mut v = sealed.clone();
        v[0] = 2;
        assert!(matches!(
            open(&sk, &v, b"node-ak-name"),
            Err(SealError::Malformed(_))
        ));
        // Two seals of the same secret differ (fresh ephemeral key).
        assert_ne!(seal(&pk, b"x", b"").unwrap(), seal(&pk, b"x", b"").unwrap());
        // A low-order "public key" is refused rather than used.
        assert!(seal(&[0u8; 32], b"x", b"").is_err());
    }
}

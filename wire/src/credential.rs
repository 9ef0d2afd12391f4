//! MakeCredential on the verifier side (TPM 2.0 Part 1 §24, "Credential
//! Protection"): encrypts a secret so that only the TPM holding the EK can
//! recover it, and only for the AK with the given name. A node that returns
//! the secret proves its AK lives in the same TPM as its EK.
//!
//! Steps for an RSA-2048 EK with nameAlg SHA-256 and AES-128-CFB:
//! 1. seed = 32 random bytes (the size of the EK's nameAlg digest);
//!    encryptedSecret = RSA-OAEP-SHA256(EK, seed, label "IDENTITY\0").
//! 2. symKey = KDFa(SHA-256, seed, "STORAGE", akName, "", 128).
//! 3. encIdentity = AES-128-CFB(symKey, IV = 0, TPM2B_DIGEST(secret)).
//! 4. hmacKey = KDFa(SHA-256, seed, "INTEGRITY", "", "", 256);
//!    outerHMAC = HMAC-SHA256(hmacKey, encIdentity || akName).
//! 5. credentialBlob (TPM2B_ID_OBJECT contents) = TPM2B(outerHMAC) || encIdentity.

use crate::tpm::{self, RsaPublic, Writer};
use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use rsa::{BigUint, Oaep, RsaPublicKey};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("EK is not usable for MakeCredential: {0}")]
    UnsupportedEk(String),
    #[error("secret is {0} bytes; 1..=32 allowed")]
    SecretSize(usize),
    #[error("RSA-OAEP encryption to the EK failed: {0}")]
    Rsa(String),
}

/// The two TPM2B payloads ActivateCredential takes (without size prefixes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeCredential {
    /// TPM2B_ID_OBJECT contents.
    pub credential_blob: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET contents.
    pub encrypted_secret: Vec<u8>,
}

/// KDFa from TPM 2.0 Part 1 §11.4.10.2 with SHA-256 (counter mode HMAC).
/// `label` is given without its terminating NUL; it is added here.
pub fn kdfa_sha256(
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let bytes = (bits as usize).div_ceil(8);
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter: u32 = 1;
    while out.len() < bytes {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable_mac());
        mac.update(&counter.to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

fn unreachable_mac() -> HmacSha256 {
    // Hmac::new_from_slice only fails for fixed-key-size MACs; HMAC has none.
    <HmacSha256 as Mac>::new_from_slice(&[0u8; 32]).expect("HMAC takes any key length")
}

/// Runs MakeCredential for `secret` to the TPM that holds `ek`, for the
/// object named `ak_name`.
pub fn make_credential(
    ek: &RsaPublic,
    ak_name: &[u8],
    secret: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<MadeCredential, CredentialError> {
    if secret.is_empty() || secret.len() > 32 {
        return Err(CredentialError::SecretSize(secret.len()));
    }
    if ek.name_alg != tpm::ALG_SHA256 {
        return Err(CredentialError::UnsupportedEk(format!(
            "nameAlg 0x{:04x} (SHA-256 supported)",
            ek.name_alg
        )));
    }
    if ek.symmetric != (tpm::ALG_AES, 128, tpm::ALG_CFB) {
        return Err(CredentialError::UnsupportedEk(format!(
            "symmetric {:04x?} (AES-128-CFB supported)",
            ek.symmetric
        )));
    }
    if ek.attributes & tpm::attr::RESTRICTED == 0 || ek.attributes & tpm::attr::DECRYPT == 0 {
        return Err(CredentialError::UnsupportedEk(
            "not a restricted decryption key".into(),
        ));
    }
    let exponent = if ek.exponent == 0 { 65537 } else { ek.exponent };
    let key = RsaPublicKey::new(BigUint::from_bytes_be(&ek.modulus), BigUint::from(exponent))
        .map_err(|e| CredentialError::UnsupportedEk(e.to_string()))?;

    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let encrypted_secret = key
        .encrypt(rng, Oaep::new_with_label::<Sha256, _>("IDENTITY\0"), &seed)
        .map_err(|e| CredentialError::Rsa(e.to_string()))?;

    let sym_key = kdfa_sha256(&seed, "STORAGE", ak_name, &[], 128);
    let mut enc_identity = Writer::new();
    enc_identity.tpm2b(secret);
    let mut enc_identity = enc_identity.buf;
    let cipher = cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(&sym_key, &[0u8; 16])
        .map_err(|e| CredentialError::UnsupportedEk(e.to_string()))?;
    cipher.encrypt(&mut enc_identity);

    let hmac_key = kdfa_sha256(&seed, "INTEGRITY", &[], &[], 256);
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(&hmac_key).unwrap_or_else(|_| unreachable_mac());
    mac.update(&enc_identity);
    mac.update(ak_name);
    let outer_hmac = mac.finalize().into_bytes();

    let mut blob = Writer::new();
    blob.tpm2b(&outer_hmac).bytes(&enc_identity);
    Ok(MadeCredential {
        credential_blob: blob.buf,
        encrypted_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_is_counter_mode_hmac() {
        // One block: HMAC(key, 00000001 || "STORAGE\0" || u || v || 00000080)
        let out = kdfa_sha256(b"k", "STORAGE", b"u", b"v", 128);
        let mut mac = <HmacSha256 as Mac>::new_from_slice(b"k").unwrap();
        mac.update(&[0, 0, 0, 1]);
        mac.update(b"STORAGE\0uv");
        mac.update(&[0, 0, 0, 128]);
        assert_eq!(out, mac.finalize().into_bytes()[..16].to_vec());
        assert_eq!(kdfa_sha256(b"k", "INTEGRITY", &[], &[], 520).len(), 65);
    }
}

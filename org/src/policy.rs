//! Policies as the operator sets them and as the org stores them, and
//! their translation into the signed wire policy for one node.
//!
//! AMT admin passwords are encrypted at rest with XChaCha20-Poly1305 under
//! `secrets.key` (bound, as associated data, to the scope the policy is
//! for, so a ciphertext cannot be moved to another node's row). When the
//! policy is issued to a node, the password is sealed to that node's TPM
//! with MakeCredential (EK + AK name): only that TPM's
//! ActivateCredential recovers it, so it is never in plaintext on the wire.

use crate::store::PolicyScope;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use fortros_wire::credential::make_credential;
use fortros_wire::exchange::CredentialChallenge;
use fortros_wire::policy::{AmtControlMode, AmtSettings, NeutralizeMode, PolicyAction};
use fortros_wire::tpm::{Public, RsaPublic};
use fortros_wire::Bytes;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

/// AMT accepts admin passwords of 8 to 32 characters; 32 is also the most
/// MakeCredential can seal.
pub const AMT_PASSWORD_MAX: usize = 32;
pub const AMT_PASSWORD_MIN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("AMT admin password must be {AMT_PASSWORD_MIN} to {AMT_PASSWORD_MAX} bytes, got {0}")]
    PasswordLength(usize),
    #[error("stored AMT credential for {scope} does not decrypt (wrong secrets.key or moved row)")]
    Decrypt { scope: String },
    #[error("stored policy for {scope} is malformed: {reason}")]
    Stored { scope: String, reason: String },
    #[error("cannot seal the AMT password to the node's TPM: {0}")]
    Seal(String),
}

/// What the operator asked for, as stored in the registry (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum PolicySpec {
    Ignore,
    Neutralize { mode: NeutralizeMode },
    Use { amt: AmtSpec },
}

/// AMT settings with the admin password encrypted at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmtSpec {
    /// 24-byte XChaCha nonce || ciphertext+tag, hex. Empty: no org
    /// password; the node generates one and seals it to the org.
    #[serde(with = "hex::serde", default)]
    pub admin_password_encrypted: Vec<u8>,
    pub control_mode: AmtControlMode,
    pub interface: Option<String>,
    pub enable_kvm: bool,
    pub enable_sol: bool,
    /// Unprovision an AMT provisioned by someone else (CCM only) instead
    /// of leaving it alone.
    #[serde(default)]
    pub unprovision_foreign: bool,
}

/// Policy extension tag: "unprovision a foreign AMT" (the agent's
/// `amt::POLICY_EXT_UNPROVISION_FOREIGN`; docs/report-format.md).
pub const POLICY_EXT_UNPROVISION_FOREIGN: u32 = 0x414D_5402;

/// The policy extensions a spec needs.
pub fn extensions_for(spec: &PolicySpec) -> Vec<fortros_wire::report::Extension> {
    match spec {
        PolicySpec::Use { amt } if amt.unprovision_foreign => {
            vec![fortros_wire::report::Extension {
                tag: POLICY_EXT_UNPROVISION_FOREIGN,
                data: Bytes(Vec::new()),
            }]
        }
        _ => Vec::new(),
    }
}

pub fn scope_label(scope: &PolicyScope) -> String {
    match scope {
        PolicyScope::Node(id) => format!("node {id}"),
        PolicyScope::Group(g) => format!("group {g}"),
    }
}

/// Encrypts an AMT admin password for storage under `scope`.
pub fn encrypt_password(
    key: &[u8; 32],
    scope: &PolicyScope,
    password: &str,
) -> Result<Vec<u8>, PolicyError> {
    let len = password.len();
    if !(AMT_PASSWORD_MIN..=AMT_PASSWORD_MAX).contains(&len) {
        return Err(PolicyError::PasswordLength(len));
    }
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut nonce);
    let aad = scope_label(scope);
    let ct = XChaCha20Poly1305::new(key.into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: password.as_bytes(),
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| PolicyError::Seal("encryption failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts a stored AMT admin password.
pub fn decrypt_password(
    key: &[u8; 32],
    scope: &PolicyScope,
    stored: &[u8],
) -> Result<Vec<u8>, PolicyError> {
    let label = scope_label(scope);
    let (nonce, ct) = (stored.get(..24), stored.get(24..));
    let (Some(nonce), Some(ct)) = (nonce, ct) else {
        return Err(PolicyError::Decrypt { scope: label });
    };
    XChaCha20Poly1305::new(key.into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: label.as_bytes(),
            },
        )
        .map_err(|_| PolicyError::Decrypt { scope: label })
}

/// Parses a stored spec.
pub fn parse_spec(scope: &PolicyScope, json: &str) -> Result<PolicySpec, PolicyError> {
    serde_json::from_str(json).map_err(|e| PolicyError::Stored {
        scope: scope_label(scope),
        reason: e.to_string(),
    })
}

/// The wire action for one node: the AMT password (if any) decrypted and
/// sealed to the node's TPM (`ek_public` TPMT_PUBLIC, `ak_name`).
pub fn to_wire_action(
    spec: &PolicySpec,
    scope: &PolicyScope,
    secrets_key: &[u8; 32],
    ek_public: &[u8],
    ak_name: &[u8],
) -> Result<PolicyAction, PolicyError> {
    to_wire_action_with(spec, scope, secrets_key, ek_public, ak_name, None)
}

/// Like [`to_wire_action`]; `held` is the AMT password the org already
/// holds for this node (it wins over the policy's, so a provisioned node
/// recognises its AMT as the org's). No password at all: the sealed field
/// stays empty and the node generates one.
pub fn to_wire_action_with(
    spec: &PolicySpec,
    scope: &PolicyScope,
    secrets_key: &[u8; 32],
    ek_public: &[u8],
    ak_name: &[u8],
    held: Option<&[u8]>,
) -> Result<PolicyAction, PolicyError> {
    Ok(match spec {
        PolicySpec::Ignore => PolicyAction::Ignore,
        PolicySpec::Neutralize { mode } => PolicyAction::Neutralize { mode: *mode },
        PolicySpec::Use { amt } => {
            let password = match held {
                Some(p) => Some(p.to_vec()),
                None if amt.admin_password_encrypted.is_empty() => None,
                None => Some(decrypt_password(
                    secrets_key,
                    scope,
                    &amt.admin_password_encrypted,
                )?),
            };
            let sealed = match password {
                None => Vec::new(),
                Some(password) => {
                    let ek = rsa_ek(ek_public)?;
                    let made = make_credential(&ek, ak_name, &password, &mut OsRng)
                        .map_err(|e| PolicyError::Seal(e.to_string()))?;
                    let sealed = CredentialChallenge {
                        credential_blob: Bytes(made.credential_blob),
                        encrypted_secret: Bytes(made.encrypted_secret),
                    };
                    postcard::to_allocvec(&sealed).map_err(|e| PolicyError::Seal(e.to_string()))?
                }
            };
            PolicyAction::Use {
                amt: AmtSettings {
                    admin_password_sealed: Bytes(sealed),
                    control_mode: amt.control_mode,
                    interface: amt.interface.clone(),
                    enable_kvm: amt.enable_kvm,
                    enable_sol: amt.enable_sol,
                },
            }
        }
    })
}

/// Parses an EK's TPMT_PUBLIC as the RSA key MakeCredential needs.
pub fn rsa_ek(ek_public: &[u8]) -> Result<RsaPublic, PolicyError> {
    match Public::parse(ek_public) {
        Ok(Public::Rsa(r)) => Ok(r),
        Ok(Public::Ecc(_)) => Err(PolicyError::Seal("EK is ECC; RSA EK required".into())),
        Err(e) => Err(PolicyError::Seal(format!("EK public area: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trips_only_under_its_scope_and_key() {
        let key = [7u8; 32];
        let s = PolicyScope::Node(3);
        let ct = encrypt_password(&key, &s, "Sup3r-Secret!").unwrap();
        assert!(!ct.windows(6).any(|w| w == b"Sup3r-"), "plaintext at rest");
        assert_eq!(decrypt_password(&key, &s, &ct).unwrap(), b"Sup3r-Secret!");
        assert!(decrypt_password(&key, &PolicyScope::Node(4), &ct).is_err());
        assert!(decrypt_password(&[8u8; 32], &s, &ct).is_err());
        assert!(decrypt_password(&key, &s, &ct[..10]).is_err());
        assert!(matches!(
            encrypt_password(&key, &s, "short"),
            Err(PolicyError::PasswordLength(5))
        ));
    }

    #[test]
    fn spec_json_is_tagged() {
        let spec = PolicySpec::Neutralize {
            mode: NeutralizeMode::DisableBit,
        };
        let j = serde_json::to_string(&spec).unwrap();
        assert_eq!(j, r#"{"action":"neutralize","mode":"DisableBit"}"#);
        assert_eq!(parse_spec(&PolicyScope::Node(1), &j).unwrap(), spec);
    }
}

//! Shared test support: an org on loopback and software-TPM nodes.
//!
//! `SoftNode` stands in for a node's TPM where a real one is not needed
//! (load tests, benchmarks): a software P-256 AK that produces quotes in
//! the TPM's exact format (`fortros_wire::testing::SoftAk`) and a software
//! RSA-2048 EK with ActivateCredential done by the book (TPM 2.0 Part 1
//! §24), so the org's MakeCredential challenge is really answered.

#![allow(dead_code)]

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use fortros_agent::enroll::Attester;
use fortros_org::exchange::{ExchangeSettings, Org};
use fortros_org::keys::OrgKeys;
use fortros_org::server::Running;
use fortros_org::store::SqliteRegistry;
use fortros_wire::credential::kdfa_sha256;
use fortros_wire::envelope::ReportEvidence;
use fortros_wire::exchange::CredentialChallenge;
use fortros_wire::testing::SoftAk;
use fortros_wire::tpm::{self, attr, Reader, Writer};
use fortros_wire::{Bytes, Report};
use hmac::{Hmac, Mac};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey};
use sha2::Sha256;
use std::path::Path;
use std::sync::Arc;

/// The EK attributes of the TCG default EK template.
pub const EK_ATTRIBUTES: u32 = attr::FIXED_TPM
    | attr::FIXED_PARENT
    | attr::SENSITIVE_DATA_ORIGIN
    | attr::ADMIN_WITH_POLICY
    | attr::RESTRICTED
    | attr::DECRYPT;

pub struct SoftNode {
    pub ak: SoftAk,
    ek: RsaPrivateKey,
    pub ek_public: Vec<u8>,
}

impl SoftNode {
    /// A node whose AK is derived from `seed` (distinct seeds, distinct
    /// AKs) with a fresh RSA EK.
    pub fn new(seed: u8) -> Self {
        let ek = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA keygen");
        Self::with_ek(seed, ek)
    }

    /// Same EK, another AK: what a node looks like after a TPM clear.
    pub fn with_new_ak(self, seed: u8) -> Self {
        Self::with_ek(seed, self.ek)
    }

    fn with_ek(seed: u8, ek: RsaPrivateKey) -> Self {
        let mut w = Writer::new();
        w.u16(tpm::ALG_RSA)
            .u16(tpm::ALG_SHA256)
            .u32(EK_ATTRIBUTES)
            .tpm2b(&[0x83; 32]); // authPolicy (PolicySecret(endorsement) in real TPMs)
        w.u16(tpm::ALG_AES).u16(128).u16(tpm::ALG_CFB);
        w.u16(tpm::ALG_NULL); // scheme
        w.u16(2048).u32(0);
        w.tpm2b(&ek.n().to_bytes_be());
        SoftNode {
            ak: SoftAk::from_seed(seed),
            ek,
            ek_public: w.buf,
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

impl Attester for SoftNode {
    fn ak_name(&self) -> Vec<u8> {
        tpm::name_sha256(self.ak.public())
    }

    fn attest(&mut self, mut report: Report) -> Result<ReportEvidence, String> {
        report.node.ak_public = Bytes(self.ak.public().to_vec());
        report.node.ek_public = Some(Bytes(self.ek_public.clone()));
        report.node.ek_certificate = None;
        let bytes = report.to_bytes().map_err(|e| e.to_string())?;
        Ok(self.ak.quote(&report, &bytes))
    }

    fn activate_credential(&mut self, ch: &CredentialChallenge) -> Result<Vec<u8>, String> {
        let seed = self
            .ek
            .decrypt(
                Oaep::new_with_label::<Sha256, _>("IDENTITY\0"),
                ch.encrypted_secret.as_slice(),
            )
            .map_err(|e| format!("OAEP: {e}"))?;
        let name = self.ak_name();
        let mut r = Reader::new(ch.credential_blob.as_slice());
        let outer_hmac = r.tpm2b("credential").map_err(|e| e.to_string())?;
        let enc_identity = ch
            .credential_blob
            .as_slice()
            .get(r.offset()..)
            .ok_or("short blob")?;
        let hmac_key = kdfa_sha256(&seed, "INTEGRITY", &[], &[], 256);
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&hmac_key).map_err(|e| e.to_string())?;
        mac.update(enc_identity);
        mac.update(&name);
        mac.verify_slice(outer_hmac)
            .map_err(|_| "integrity check failed (wrong AK name or EK)".to_string())?;
        let sym = kdfa_sha256(&seed, "STORAGE", &name, &[], 128);
        let mut plain = enc_identity.to_vec();
        cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(&sym, &[0u8; 16])
            .map_err(|e| e.to_string())?
            .decrypt(&mut plain);
        let mut r = Reader::new(&plain);
        Ok(r.tpm2b("identity").map_err(|e| e.to_string())?.to_vec())
    }
}

/// An org with fresh keys over a registry file in `dir`, served on an
/// ephemeral loopback port.
pub fn start_org(dir: &Path, keys: OrgKeys, settings: ExchangeSettings) -> (Arc<Org>, Running) {
    let registry = Arc::new(SqliteRegistry::open(&dir.join("registry.sqlite")).unwrap());
    let org = Arc::new(Org {
        registry,
        keys,
        settings,
    });
    let running = Running::start(org.clone(), "127.0.0.1:0").unwrap();
    (org, running)
}

pub fn settings(auto_approve: bool) -> ExchangeSettings {
    ExchangeSettings {
        auto_approve,
        nonce_ttl_secs: 300,
        ek_anchors: None,
    }
}

/// Copies the org keys (OrgKeys is not Clone on purpose).
pub fn copy_keys(k: &OrgKeys) -> OrgKeys {
    OrgKeys {
        signing: ed25519_dalek::SigningKey::from_bytes(k.signing.as_bytes()),
        secrets: k.secrets,
    }
}

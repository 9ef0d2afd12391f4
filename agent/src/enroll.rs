//! The agent's half of the enrollment exchange with the org (see
//! `fortros_wire::exchange` for the messages and docs/operator-guide.md
//! for the org side):
//!
//! 1. ask for a nonce; 2. put it in the report and have the TPM quote the
//!    report; 3. if challenged, run ActivateCredential and answer; 4. verify
//!    the org's policy (signature, this AK, this nonce, serial above the
//!    last applied) before returning it; 5. post the outcome, quoted too.
//!
//! Before a flash write the agent uploads the original image
//! ([`EnrollClient::upload_backup`]), and can fetch it back
//! ([`EnrollClient::fetch_backup`]) to restore after an interrupted write.
//!
//! The TPM is reached through [`Attester`], so the same code runs with the
//! real TPM client, swtpm, or a software stand-in in unit tests.
//!
//! `https://` org URLs need the org's certificate pinned
//! ([`crate::enroll_tls::OrgTrust`]); no system CA store is ever used.

use crate::enroll_tls::{OrgTrust, PinnedOrg, TrustError};
use crate::org_http::{self, OrgUrl};
use ed25519_dalek::VerifyingKey;
use fortros_wire::envelope::{PolicyExpectation, ReportEvidence, SignedPolicy};
use fortros_wire::exchange::*;
use fortros_wire::{Bytes, Policy, Report};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Largest answer read from the org.
const MAX_ANSWER: usize = 1 << 20;
/// Largest backup image answer (a 64 MiB flash and its envelope).
const MAX_BACKUP_ANSWER: usize = (64 << 20) + (64 << 10);

/// What the exchange needs from the node's TPM.
pub trait Attester {
    /// TPM name of the attestation key (`0x000b || SHA-256(TPMT_PUBLIC)`).
    fn ak_name(&self) -> Vec<u8>;
    /// Fills in the node identity and PCR values, encodes the report and
    /// quotes it (extraData = SHA-256 of the report bytes).
    fn attest(&mut self, report: Report) -> Result<ReportEvidence, String>;
    /// TPM2_ActivateCredential with the EK and the AK.
    fn activate_credential(&mut self, challenge: &CredentialChallenge) -> Result<Vec<u8>, String>;
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("org {url}: {reason}")]
    Transport { url: String, reason: String },
    /// The TLS handshake met a certificate that is not the pinned one.
    #[error("org {url}: TLS certificate refused: {reason}")]
    Certificate { url: String, reason: String },
    #[error("org TLS: {0}")]
    Trust(#[from] TrustError),
    #[error("org {url} refused (HTTP {status}): {reason}")]
    Refused {
        url: String,
        status: u16,
        reason: String,
    },
    #[error("org {url}: unreadable answer: {reason}")]
    Answer { url: String, reason: String },
    #[error("TPM: {0}")]
    Tpm(String),
    #[error("org policy rejected: {0}")]
    Policy(#[from] fortros_wire::envelope::PolicyError),
    #[error("org sent a second credential challenge")]
    RepeatedChallenge,
}

/// The result of an enrollment.
#[derive(Debug, Clone)]
pub enum Enrolled {
    /// A verified policy to apply, and its envelope (kept for the report).
    Policy {
        policy: Policy,
        signed: SignedPolicy,
    },
    /// The org knows the node but an operator has not approved it yet.
    Pending { node_id: u64, reason: String },
}

/// A client of one org.
pub struct EnrollClient {
    base: String,
    /// `base` parsed; `None` when it is not a usable URL (said on first use).
    url: Result<OrgUrl, String>,
    org_key: VerifyingKey,
    /// The TLS client of https connections and its certificate check;
    /// `None`: http only.
    tls: Option<(Arc<rustls::ClientConfig>, Arc<PinnedOrg>)>,
}

impl EnrollClient {
    /// `base` is the org's URL (`http://10.0.0.1:8443`); `org_key` the
    /// org's public key from the initramfs configuration. Plain http only:
    /// an `https://` base needs [`EnrollClient::with_trust`].
    pub fn new(base: &str, org_key: VerifyingKey) -> Self {
        Self::build(base, org_key, None)
    }

    /// A client whose https connections accept only the org `trust` pins.
    pub fn with_trust(
        base: &str,
        org_key: VerifyingKey,
        trust: &OrgTrust,
    ) -> Result<Self, EnrollError> {
        let (config, verifier) = trust.client_config()?;
        Ok(Self::build(
            base,
            org_key,
            Some((Arc::new(config), verifier)),
        ))
    }

    fn build(
        base: &str,
        org_key: VerifyingKey,
        tls: Option<(Arc<rustls::ClientConfig>, Arc<PinnedOrg>)>,
    ) -> Self {
        let base = base.trim_end_matches('/').to_string();
        EnrollClient {
            url: OrgUrl::parse(&base),
            base,
            org_key,
            tls,
        }
    }

    /// The org's URL, for messages.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn post(&self, path: &str, body: &[u8]) -> Result<Vec<u8>, EnrollError> {
        self.post_limited(path, body, MAX_ANSWER)
    }

    fn post_limited(&self, path: &str, body: &[u8], limit: usize) -> Result<Vec<u8>, EnrollError> {
        let url = format!("{}{}", self.base, path);
        let org = self.url.as_ref().map_err(|reason| EnrollError::Transport {
            url: url.clone(),
            reason: reason.clone(),
        })?;
        if org.https && self.tls.is_none() {
            return Err(EnrollError::Certificate {
                url,
                reason: "https needs the org certificate pinned (org_ca or org_cert_sha256)".into(),
            });
        }
        let tls = self.tls.as_ref().filter(|_| org.https);
        let answer = match org_http::post(org, tls.map(|(c, _)| c), path, body, limit) {
            Ok(a) => a,
            Err(e) => {
                if let Some(reason) = tls.and_then(|(_, v)| v.last_refusal()) {
                    return Err(EnrollError::Certificate { url, reason });
                }
                return Err(EnrollError::Transport {
                    url,
                    reason: e.to_string(),
                });
            }
        };
        if answer.status >= 400 {
            let reason = String::from_utf8_lossy(&answer.body).trim().to_string();
            return Err(EnrollError::Refused {
                url,
                status: answer.status,
                reason,
            });
        }
        Ok(answer.body)
    }

    fn answer<T>(
        &self,
        path: &str,
        decoded: Result<T, fortros_wire::codec::CodecError>,
    ) -> Result<T, EnrollError> {
        decoded.map_err(|e| EnrollError::Answer {
            url: format!("{}{}", self.base, path),
            reason: e.to_string(),
        })
    }

    /// A fresh nonce from the org.
    pub fn nonce(&self) -> Result<Vec<u8>, EnrollError> {
        let body = self.post("/v1/nonce", &[])?;
        Ok(self
            .answer("/v1/nonce", NonceGrant::from_bytes(&body))?
            .nonce
            .0)
    }

    /// Steps 1-4. `last_serial` is the serial of the last policy this node
    /// applied (a policy must be newer).
    pub fn enroll(
        &self,
        tpm: &mut dyn Attester,
        mut report: Report,
        last_serial: Option<u64>,
    ) -> Result<Enrolled, EnrollError> {
        let nonce = self.nonce()?;
        report.nonce = Bytes(nonce.clone());
        let evidence = tpm.attest(report).map_err(EnrollError::Tpm)?;
        let body = self.post(
            "/v1/enroll",
            &evidence
                .to_bytes()
                .map_err(|e| EnrollError::Tpm(e.to_string()))?,
        )?;
        let mut response = self.answer("/v1/enroll", EnrollResponse::from_bytes(&body))?;
        let mut challenged = false;
        loop {
            match response.answer {
                EnrollAnswer::Challenge(ch) => {
                    if challenged {
                        return Err(EnrollError::RepeatedChallenge);
                    }
                    challenged = true;
                    let secret = tpm.activate_credential(&ch).map_err(EnrollError::Tpm)?;
                    let req = ActivationRequest {
                        format: EXCHANGE_FORMAT,
                        nonce: Bytes(nonce.clone()),
                        secret: Bytes(secret),
                    };
                    let body = self.post(
                        "/v1/activate",
                        &req.to_bytes()
                            .map_err(|e| EnrollError::Tpm(e.to_string()))?,
                    )?;
                    response = self.answer("/v1/activate", EnrollResponse::from_bytes(&body))?;
                }
                EnrollAnswer::Pending { node_id, reason } => {
                    return Ok(Enrolled::Pending { node_id, reason })
                }
                EnrollAnswer::Policy(signed) => {
                    let policy =
                        self.verify_policy(&signed, &tpm.ak_name(), &nonce, last_serial)?;
                    return Ok(Enrolled::Policy { policy, signed });
                }
            }
        }
    }

    /// The checks a policy passes before the agent acts on it.
    pub fn verify_policy(
        &self,
        signed: &SignedPolicy,
        ak_name: &[u8],
        nonce: &[u8],
        last_serial: Option<u64>,
    ) -> Result<Policy, EnrollError> {
        let policy = signed.verify(
            &self.org_key,
            &PolicyExpectation {
                ak_name,
                nonce,
                last_serial,
            },
        )?;
        log::info!("org policy serial {} verified", policy.serial);
        Ok(policy)
    }

    /// Step 5: the report of what the agent did (policy received, actions),
    /// quoted over a fresh nonce.
    pub fn post_outcome(
        &self,
        tpm: &mut dyn Attester,
        mut report: Report,
    ) -> Result<OutcomeAck, EnrollError> {
        report.nonce = Bytes(self.nonce()?);
        let evidence = tpm.attest(report).map_err(EnrollError::Tpm)?;
        let body = self.post(
            "/v1/outcome",
            &evidence
                .to_bytes()
                .map_err(|e| EnrollError::Tpm(e.to_string()))?,
        )?;
        self.answer("/v1/outcome", OutcomeAck::from_bytes(&body))
    }

    /// Sends the original flash `image` to the org before any write
    /// (`POST /v1/backup`), with a quote over `report` carrying a fresh
    /// nonce and the image's SHA-256. Returns the org's acknowledgement,
    /// checked: the digest it computed must be the image's.
    pub fn upload_backup(
        &self,
        tpm: &mut dyn Attester,
        mut report: Report,
        image: &[u8],
    ) -> Result<BackupAck, EnrollError> {
        let sha: [u8; 32] = Sha256::digest(image).into();
        match report.flash.as_mut() {
            Some(f) => f.image_sha256 = fortros_wire::Digest32(sha),
            None => {
                return Err(EnrollError::Tpm(
                    "the report has no flash facts to name the backup".into(),
                ))
            }
        }
        report.nonce = Bytes(self.nonce()?);
        let evidence = tpm.attest(report).map_err(EnrollError::Tpm)?;
        let up = BackupUpload {
            format: EXCHANGE_FORMAT,
            evidence,
            image: Bytes(image.to_vec()),
        };
        let body = self.post(
            "/v1/backup",
            &up.to_bytes().map_err(|e| EnrollError::Tpm(e.to_string()))?,
        )?;
        let ack = self.answer("/v1/backup", BackupAck::from_bytes(&body))?;
        if ack.sha256.0 != sha || ack.size != image.len() as u64 {
            return Err(EnrollError::Answer {
                url: format!("{}/v1/backup", self.base),
                reason: format!(
                    "the org acknowledged {} ({} bytes), not the image sent ({}, {} bytes)",
                    hex::encode(ack.sha256.0),
                    ack.size,
                    hex::encode(sha),
                    image.len()
                ),
            });
        }
        Ok(ack)
    }

    /// Fetches one of this node's backups (`POST /v1/backup/fetch`) and
    /// checks its bytes hash to `sha256`.
    pub fn fetch_backup(
        &self,
        tpm: &mut dyn Attester,
        mut report: Report,
        sha256: [u8; 32],
    ) -> Result<Vec<u8>, EnrollError> {
        report.nonce = Bytes(self.nonce()?);
        let evidence = tpm.attest(report).map_err(EnrollError::Tpm)?;
        let req = BackupFetch {
            format: EXCHANGE_FORMAT,
            evidence,
            sha256: fortros_wire::Digest32(sha256),
        };
        let path = "/v1/backup/fetch";
        let body = self.post_limited(
            path,
            &req.to_bytes()
                .map_err(|e| EnrollError::Tpm(e.to_string()))?,
            MAX_BACKUP_ANSWER,
        )?;
        let img = self.answer(path, BackupImage::from_bytes(&body))?;
        let got: [u8; 32] = Sha256::digest(img.image.as_slice()).into();
        if got != sha256 {
            return Err(EnrollError::Answer {
                url: format!("{}{path}", self.base),
                reason: format!(
                    "the backup hashes to {}, not the {} asked for",
                    hex::encode(got),
                    hex::encode(sha256)
                ),
            });
        }
        Ok(img.image.0)
    }
}

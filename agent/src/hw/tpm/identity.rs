//! The node's TPM-bound identity and the signed report.
//!
//! The attestation key (AK) is a restricted ECC P-256 signing key created
//! with TPM2_CreatePrimary from a fixed template under the OWNER (storage)
//! hierarchy. A primary key is derived from the hierarchy's seed and the
//! template, so:
//! - it is the same on every boot with nothing stored on disk or in NV;
//! - it changes when the TPM is cleared (TPM2_Clear replaces the owner
//!   seed), which is what "a new owner, a new identity" should mean;
//! - the endorsement hierarchy was not chosen because its seed survives
//!   TPM2_Clear: an AK there would outlive a change of owner.
//!
//! Each boot: extend [`ME_STATE_PCR`] with the digest of the measured ME
//! state, read the quoted PCRs into the report, encode it (postcard), and
//! quote with qualifying data = SHA-256 of those bytes.

use super::client::{self, LoadedKey, Tpm, TpmError};
use super::transport::Transport;
use fortros_wire::envelope::{ReportEvidence, ENVELOPE_FORMAT};
use fortros_wire::report::{PcrValue, PcrValues};
use fortros_wire::tpm::{self, PcrSelection, Writer};
use fortros_wire::{Bytes, Report};
use sha2::{Digest, Sha256};

/// The PCR the agent extends with the ME-state digest. PCRs 0-7 belong to
/// firmware; 8-9 boot loaders; 10 IMA; 11-12 systemd-stub (UKI, cmdline);
/// 14 shim (MOK); 15 systemd (machine id, volume keys) and 16/23 are
/// resettable. 13 is the least contended OS PCR: systemd-stub uses it only
/// for system extensions, which do not run before this agent.
pub const ME_STATE_PCR: u8 = 13;

/// The PCRs each quote covers: the firmware's (0-7) and ours.
pub const QUOTED_PCRS: [u8; 9] = [0, 1, 2, 3, 4, 5, 6, 7, ME_STATE_PCR];

/// Entropy for the AK template's `unique` field: any fixed bytes work; a
/// name keeps our primary distinct from other software's P-256 primaries.
const AK_UNIQUE: &[u8] = b"FortrOS attestation key v1";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Tpm(#[from] TpmError),
    #[error("report encoding: {0}")]
    Codec(#[from] fortros_wire::codec::CodecError),
    #[error("the TPM returned an AK that is not the attestation key we asked for: {0}")]
    AkShape(String),
}

/// The AK template (TPMT_PUBLIC): restricted signing, ECDSA-SHA256, P-256.
pub fn ak_template() -> Vec<u8> {
    let mut w = Writer::new();
    tpm::marshal_ecc_p256_public(tpm::AK_ATTRIBUTES, tpm::ALG_ECDSA, AK_UNIQUE, &[], &mut w);
    w.buf
}

/// Creates (re-derives) the AK. The caller flushes `handle` when done.
pub fn load_ak<T: Transport>(tpm: &mut Tpm<T>) -> Result<LoadedKey, IdentityError> {
    let ak = tpm.create_primary(client::RH_OWNER, &ak_template())?;
    // Check the TPM gave what a verifier will demand, before using it.
    fortros_wire::verify::check_ak_public(&ak.public)
        .map_err(|e| IdentityError::AkShape(e.to_string()))?;
    Ok(ak)
}

/// The EK: the persisted one at 0x81010001 when present (as provisioned by
/// the manufacturer or swtpm_setup), else re-derived from the standard
/// template (transient: the caller flushes it; `persistent` says which).
pub fn load_ek<T: Transport>(tpm: &mut Tpm<T>) -> Result<(LoadedKey, bool), IdentityError> {
    match tpm.read_public(client::EK_RSA_PERSISTENT) {
        Ok(k) => Ok((k, true)),
        Err(e) => {
            log::info!("no persisted EK ({e}); deriving it from the TCG template");
            Ok((
                tpm.create_primary(client::RH_ENDORSEMENT, &client::ek_rsa2048_template())?,
                false,
            ))
        }
    }
}

/// The EK certificate from NV, or `None` when the index is absent.
pub fn ek_certificate<T: Transport>(tpm: &mut Tpm<T>) -> Option<Vec<u8>> {
    match tpm.nv_read(client::EK_RSA_CERT_NV) {
        Ok(der) => Some(der),
        Err(e) => {
            log::info!(
                "no RSA EK certificate in NV 0x{:08x}: {e}",
                client::EK_RSA_CERT_NV
            );
            None
        }
    }
}

/// Extends [`ME_STATE_PCR`] with the report's ME-state digest and returns
/// the digest.
pub fn measure_me_state<T: Transport>(
    tpm: &mut Tpm<T>,
    report: &Report,
) -> Result<[u8; 32], IdentityError> {
    let digest = report.me_state_digest()?;
    tpm.pcr_extend_sha256(ME_STATE_PCR, &digest)?;
    Ok(digest)
}

/// Reads [`QUOTED_PCRS`] from the SHA-256 bank.
pub fn read_quoted_pcrs<T: Transport>(tpm: &mut Tpm<T>) -> Result<PcrValues, IdentityError> {
    let values = tpm
        .pcr_read(tpm::ALG_SHA256, &QUOTED_PCRS)?
        .into_iter()
        .map(|(index, d)| PcrValue {
            index,
            digest: Bytes(d),
        })
        .collect();
    Ok(PcrValues {
        bank: tpm::ALG_SHA256,
        values,
    })
}

/// Quotes the report: fills in the AK and the PCR values, encodes it and
/// has the TPM sign a quote whose qualifying data is SHA-256 of the bytes.
/// `report.nonce` must already hold the org's nonce.
pub fn sign_report<T: Transport>(
    tpm: &mut Tpm<T>,
    ak: &LoadedKey,
    report: &mut Report,
) -> Result<ReportEvidence, IdentityError> {
    report.node.ak_public = Bytes(ak.public.clone());
    report.pcrs = read_quoted_pcrs(tpm)?;
    let bytes = report.to_bytes()?;
    let qualifying = Sha256::digest(&bytes);
    let selection = PcrSelection::new(report.pcrs.bank, &QUOTED_PCRS);
    let (attest, signature) = tpm.quote(ak.handle, &qualifying, &selection)?;
    Ok(ReportEvidence {
        format: ENVELOPE_FORMAT,
        report: Bytes(bytes),
        attest: Bytes(attest),
        signature: Bytes(signature),
    })
}

/// The EK for the length of one TPM connection: found or derived on first
/// use, then kept. Deriving the RSA EK is a key generation, which takes
/// seconds on a discrete TPM, and a boot needs it two or three times
/// (report, credential activation, outcome). [`EkCache::release`] flushes
/// a derived one.
#[derive(Debug, Default)]
pub struct EkCache {
    /// The key and whether it is the persisted one (never flushed).
    key: Option<(LoadedKey, bool)>,
}

impl EkCache {
    fn get<T: Transport>(&mut self, tpm: &mut Tpm<T>) -> Result<&LoadedKey, IdentityError> {
        let key = match self.key.take() {
            Some(k) => k,
            None => load_ek(tpm)?,
        };
        Ok(&self.key.insert(key).0)
    }

    /// Flushes a derived EK (the persisted one stays).
    pub fn release<T: Transport>(&mut self, tpm: &mut Tpm<T>) {
        if let Some((k, false)) = self.key.take() {
            let _ = tpm.flush(k.handle);
        }
    }
}

/// The whole boot-time sequence: identity into the report, measure, quote.
/// Flushes the transient keys it created.
pub fn attest_report<T: Transport>(
    tpm: &mut Tpm<T>,
    report: &mut Report,
) -> Result<ReportEvidence, IdentityError> {
    let mut ek = EkCache::default();
    let result = attest_report_with(tpm, report, &mut ek);
    ek.release(tpm);
    result
}

/// [`attest_report`] with the EK kept in `ek` for the next call.
pub fn attest_report_with<T: Transport>(
    tpm: &mut Tpm<T>,
    report: &mut Report,
    ek: &mut EkCache,
) -> Result<ReportEvidence, IdentityError> {
    let ak = load_ak(tpm)?;
    let result = (|| {
        // Without an EK the report still goes out (the org then cannot run
        // MakeCredential and says so); the quote is what must not fail.
        report.node.ek_public = match ek.get(tpm) {
            Ok(k) => Some(Bytes(k.public.clone())),
            Err(e) => {
                log::warn!("EK unavailable, reporting without it: {e}");
                None
            }
        };
        report.node.ek_certificate = ek_certificate(tpm).map(Bytes);
        measure_me_state(tpm, report)?;
        sign_report(tpm, &ak, report)
    })();
    let _ = tpm.flush(ak.handle);
    result
}

/// Answers the org's MakeCredential challenge: proves the AK and the EK
/// are in this TPM by recovering the secret.
pub fn activate_credential<T: Transport>(
    tpm: &mut Tpm<T>,
    credential_blob: &[u8],
    encrypted_secret: &[u8],
) -> Result<Vec<u8>, IdentityError> {
    let mut ek = EkCache::default();
    let result = activate_credential_with(tpm, credential_blob, encrypted_secret, &mut ek);
    ek.release(tpm);
    result
}

/// [`activate_credential`] with the EK kept in `ek` for the next call.
pub fn activate_credential_with<T: Transport>(
    tpm: &mut Tpm<T>,
    credential_blob: &[u8],
    encrypted_secret: &[u8],
    ek: &mut EkCache,
) -> Result<Vec<u8>, IdentityError> {
    let ak = load_ak(tpm)?;
    let result = (|| {
        let ek_handle = ek.get(tpm)?.handle;
        Ok(tpm.activate_credential(ak.handle, ek_handle, credential_blob, encrypted_secret)?)
    })();
    let _ = tpm.flush(ak.handle);
    result
}

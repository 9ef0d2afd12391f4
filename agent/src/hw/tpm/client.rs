//! The TPM 2.0 commands the agent needs, over any [`Transport`]. Each
//! method builds one command frame, sends it, and parses the response with
//! bounded reads (see [`super::frame`]).

use super::frame::{parse_response, Auth, Command, FrameError};
use super::transport::{Transport, TransportError};
use fortros_wire::tpm::{self, PcrSelection, Reader, TpmParseError, Writer};

pub const RH_OWNER: u32 = 0x4000_0001;
pub const RH_NULL: u32 = 0x4000_0007;
pub const RH_ENDORSEMENT: u32 = 0x4000_000B;
pub const RH_PLATFORM: u32 = 0x4000_000C;
/// Where the TCG EK profile (and swtpm_setup) persists the RSA-2048 EK.
pub const EK_RSA_PERSISTENT: u32 = 0x8101_0001;
/// NV index of the RSA-2048 EK certificate (TCG EK Credential Profile).
pub const EK_RSA_CERT_NV: u32 = 0x01c0_0002;

mod cc {
    pub const NV_UNDEFINE_SPACE: u32 = 0x122;
    pub const CLEAR: u32 = 0x126;
    pub const CREATE_PRIMARY: u32 = 0x131;
    pub const ACTIVATE_CREDENTIAL: u32 = 0x147;
    pub const NV_READ: u32 = 0x14E;
    pub const POLICY_SECRET: u32 = 0x151;
    pub const QUOTE: u32 = 0x158;
    pub const FLUSH_CONTEXT: u32 = 0x165;
    pub const NV_READ_PUBLIC: u32 = 0x169;
    pub const READ_PUBLIC: u32 = 0x173;
    pub const START_AUTH_SESSION: u32 = 0x176;
    pub const GET_RANDOM: u32 = 0x17B;
    pub const PCR_READ: u32 = 0x17E;
    pub const PCR_EXTEND: u32 = 0x182;
}

/// The TCG EK Credential Profile's "policy A": PolicySecret(TPM_RH_ENDORSEMENT).
pub const EK_POLICY_A: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xB3, 0xF8, 0x1A, 0x90, 0xCC, 0x8D, 0x46, 0xA5, 0xD7, 0x24,
    0xFD, 0x52, 0xD7, 0x6E, 0x06, 0x52, 0x0B, 0x64, 0xF2, 0xA1, 0xDA, 0x1B, 0x33, 0x14, 0x69, 0xAA,
];

#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("{command}: {source}")]
    Command {
        command: &'static str,
        source: FrameError,
    },
    #[error("{command}: {reason}")]
    Unexpected {
        command: &'static str,
        reason: String,
    },
}

/// A loaded key: its handle, TPMT_PUBLIC bytes and TPM name.
#[derive(Debug, Clone)]
pub struct LoadedKey {
    pub handle: u32,
    pub public: Vec<u8>,
    pub name: Vec<u8>,
}

/// A TPM reached through one transport.
pub struct Tpm<T: Transport> {
    transport: T,
}

impl<T: Transport> Tpm<T> {
    pub fn new(transport: T) -> Self {
        Tpm { transport }
    }

    /// Sends a command and returns the response frame. Resends when the
    /// TPM answers RETRY, YIELDED or TESTING: those mean the command did not
    /// run (libtpms answers RETRY to some ECC signing attempts).
    fn run(&mut self, command: &'static str, c: &Command) -> Result<Vec<u8>, TpmError> {
        const RC_YIELDED: u32 = 0x908;
        const RC_TESTING: u32 = 0x90A;
        const RC_RETRY: u32 = 0x922;
        let bytes = c.to_bytes();
        let mut attempt = 0;
        loop {
            let frame = self.transport.transact(&bytes)?;
            let rc = frame
                .get(6..10)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes);
            attempt += 1;
            match rc {
                Some(RC_YIELDED | RC_TESTING | RC_RETRY) if attempt < 8 => {
                    log::debug!("{command}: TPM asked to retry (attempt {attempt})");
                    std::thread::sleep(std::time::Duration::from_millis(10 * attempt));
                }
                _ => {
                    log::debug!("{command}: {} byte response", frame.len());
                    return Ok(frame);
                }
            }
        }
    }

    pub(super) fn call<R>(
        &mut self,
        command: &'static str,
        c: Command,
        handle_count: usize,
        parse: impl FnOnce(&[u32], &mut Reader) -> Result<R, TpmParseError>,
    ) -> Result<R, TpmError> {
        let frame = self.run(command, &c)?;
        let resp = parse_response(&frame, handle_count)
            .map_err(|source| TpmError::Command { command, source })?;
        let mut r = Reader::new(resp.params);
        parse(&resp.handles, &mut r).map_err(|e| TpmError::Command {
            command,
            source: FrameError::Parse(e),
        })
    }

    /// TPM2_GetRandom: up to 32 bytes per call (more is looped).
    pub fn get_random(&mut self, n: usize) -> Result<Vec<u8>, TpmError> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let want = (n - out.len()).min(32) as u16;
            let mut c = Command::new(cc::GET_RANDOM);
            c.params.u16(want);
            let got = self.call("TPM2_GetRandom", c, 0, |_, r| {
                Ok(r.tpm2b("TPM2B_DIGEST")?.to_vec())
            })?;
            if got.is_empty() {
                return Err(TpmError::Unexpected {
                    command: "TPM2_GetRandom",
                    reason: "returned no bytes".into(),
                });
            }
            out.extend_from_slice(&got);
        }
        out.truncate(n);
        Ok(out)
    }

    /// TPM2_CreatePrimary under `hierarchy` from a TPMT_PUBLIC template.
    /// The same template on the same hierarchy seed yields the same key.
    pub fn create_primary(
        &mut self,
        hierarchy: u32,
        template: &[u8],
    ) -> Result<LoadedKey, TpmError> {
        let mut c = Command::new(cc::CREATE_PRIMARY)
            .handle(hierarchy)
            .auth(Auth::password());
        // TPM2B_SENSITIVE_CREATE: empty userAuth, empty data.
        c.params.u16(4).u16(0).u16(0);
        c.params.tpm2b(template);
        c.params.tpm2b(&[]); // outsideInfo
        c.params.u32(0); // creationPCR: none
        self.call("TPM2_CreatePrimary", c, 1, |h, r| {
            const S: &str = "TPM2_CreatePrimary response";
            let public = r.tpm2b(S)?.to_vec();
            r.tpm2b(S)?; // creationData
            r.tpm2b(S)?; // creationHash
            r.u16(S)?; // creationTicket.tag
            r.u32(S)?; // creationTicket.hierarchy
            r.tpm2b(S)?; // creationTicket.digest
            let name = r.tpm2b(S)?.to_vec();
            let handle = h
                .first()
                .copied()
                .ok_or_else(|| r.invalid(S, "no handle"))?;
            Ok(LoadedKey {
                handle,
                public,
                name,
            })
        })
    }

    /// TPM2_ReadPublic: the TPMT_PUBLIC and name of a loaded object.
    pub fn read_public(&mut self, handle: u32) -> Result<LoadedKey, TpmError> {
        let c = Command::new(cc::READ_PUBLIC).handle(handle);
        self.call("TPM2_ReadPublic", c, 0, |_, r| {
            const S: &str = "TPM2_ReadPublic response";
            let public = r.tpm2b(S)?.to_vec();
            let name = r.tpm2b(S)?.to_vec();
            Ok(LoadedKey {
                handle,
                public,
                name,
            })
        })
    }

    /// TPM2_FlushContext: frees a transient object or session.
    pub fn flush(&mut self, handle: u32) -> Result<(), TpmError> {
        let mut c = Command::new(cc::FLUSH_CONTEXT);
        c.params.u32(handle);
        self.call("TPM2_FlushContext", c, 0, |_, _| Ok(()))
    }

    /// TPM2_PCR_Read of one bank; loops because a TPM returns at most
    /// eight digests per call. Returns (index, value) in index order.
    pub fn pcr_read(&mut self, bank: u16, pcrs: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, TpmError> {
        let mut wanted = PcrSelection::new(bank, pcrs).pcrs;
        let mut out = Vec::new();
        while !wanted.is_empty() {
            let mut c = Command::new(cc::PCR_READ);
            PcrSelection::new(bank, &wanted).marshal(&mut c.params);
            let (got, digests) = self.call("TPM2_PCR_Read", c, 0, |_, r| {
                const S: &str = "TPM2_PCR_Read response";
                r.u32(S)?; // pcrUpdateCounter
                let sel = PcrSelection::parse(r)?;
                let count = r.u32(S)?;
                let mut digests = Vec::new();
                for _ in 0..count.min(64) {
                    digests.push(r.tpm2b(S)?.to_vec());
                }
                Ok((sel, digests))
            })?;
            if got.bank != bank || got.pcrs.len() != digests.len() || got.pcrs.is_empty() {
                return Err(TpmError::Unexpected {
                    command: "TPM2_PCR_Read",
                    reason: format!(
                        "asked for PCRs {wanted:?} in bank 0x{bank:04x}, got {} digests for {:?} (is the bank allocated?)",
                        digests.len(),
                        got.pcrs
                    ),
                });
            }
            for (i, d) in got.pcrs.iter().zip(digests) {
                if !wanted.contains(i) {
                    return Err(TpmError::Unexpected {
                        command: "TPM2_PCR_Read",
                        reason: format!("returned PCR {i} which was not asked for"),
                    });
                }
                out.push((*i, d));
            }
            wanted.retain(|p| !got.pcrs.contains(p));
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out)
    }

    /// TPM2_PCR_Extend of the SHA-256 bank only.
    pub fn pcr_extend_sha256(&mut self, pcr: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
        let mut c = Command::new(cc::PCR_EXTEND)
            .handle(u32::from(pcr))
            .auth(Auth::password());
        c.params.u32(1).u16(tpm::ALG_SHA256).bytes(digest);
        self.call("TPM2_PCR_Extend", c, 0, |_, _| Ok(()))
    }

    /// TPM2_Quote with the key's own scheme. Returns (TPMS_ATTEST bytes,
    /// TPMT_SIGNATURE bytes).
    pub fn quote(
        &mut self,
        key: u32,
        qualifying_data: &[u8],
        selection: &PcrSelection,
    ) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        let mut c = Command::new(cc::QUOTE).handle(key).auth(Auth::password());
        c.params.tpm2b(qualifying_data).u16(tpm::ALG_NULL);
        selection.marshal(&mut c.params);
        self.call("TPM2_Quote", c, 0, |_, r| {
            let attest = r.tpm2b("TPM2B_ATTEST")?.to_vec();
            // The signature is the rest of the (already bounded) parameters.
            let sig = r.bytes(r.remaining(), "TPMT_SIGNATURE")?.to_vec();
            Ok((attest, sig))
        })
    }

    /// Size of an NV index's data (TPM2_NV_ReadPublic).
    pub fn nv_size(&mut self, index: u32) -> Result<u16, TpmError> {
        let c = Command::new(cc::NV_READ_PUBLIC).handle(index);
        self.call("TPM2_NV_ReadPublic", c, 0, |_, r| {
            const S: &str = "TPMS_NV_PUBLIC";
            let n = r.u16(S)? as usize; // TPM2B_NV_PUBLIC size
            let mut p = Reader::new(r.bytes(n, S)?);
            p.u32(S)?; // nvIndex
            p.u16(S)?; // nameAlg
            p.u32(S)?; // attributes
            p.tpm2b(S)?; // authPolicy
            p.u16(S)
        })
    }

    /// Reads a whole NV index in chunks (owner authorization, empty
    /// password, as for the TCG EK certificate indexes).
    pub fn nv_read(&mut self, index: u32) -> Result<Vec<u8>, TpmError> {
        // 512 is below every TPM's MAX_NV_BUFFER_SIZE (commonly 1024+).
        const CHUNK: u16 = 512;
        let size = self.nv_size(index)?;
        let mut out = Vec::with_capacity(usize::from(size));
        while out.len() < usize::from(size) {
            let offset = out.len() as u16;
            let n = CHUNK.min(size - offset);
            let mut c = Command::new(cc::NV_READ)
                .handle(RH_OWNER)
                .handle(index)
                .auth(Auth::password());
            c.params.u16(n).u16(offset);
            let chunk = self.call("TPM2_NV_Read", c, 0, |_, r| {
                Ok(r.tpm2b("TPM2B_MAX_NV_BUFFER")?.to_vec())
            })?;
            if chunk.is_empty() || chunk.len() > usize::from(n) {
                return Err(TpmError::Unexpected {
                    command: "TPM2_NV_Read",
                    reason: format!(
                        "asked {n} bytes at offset {offset} of index 0x{index:08x}, got {}",
                        chunk.len()
                    ),
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Starts an unbound, unsalted SHA-256 policy session.
    pub fn start_policy_session(&mut self) -> Result<u32, TpmError> {
        let nonce = self.get_random(16)?;
        let mut c = Command::new(cc::START_AUTH_SESSION)
            .handle(RH_NULL)
            .handle(RH_NULL);
        c.params
            .tpm2b(&nonce)
            .tpm2b(&[]) // encryptedSalt
            .u8(0x01) // TPM_SE_POLICY
            .u16(tpm::ALG_NULL) // symmetric
            .u16(tpm::ALG_SHA256);
        self.call("TPM2_StartAuthSession", c, 1, |h, r| {
            r.tpm2b("nonceTPM")?;
            h.first()
                .copied()
                .ok_or_else(|| r.invalid("TPM2_StartAuthSession response", "no handle"))
        })
    }

    /// TPM2_PolicySecret(TPM_RH_ENDORSEMENT) into `session`: satisfies the
    /// EK's policy A with the (empty) endorsement password.
    pub fn policy_secret_endorsement(&mut self, session: u32) -> Result<(), TpmError> {
        let mut c = Command::new(cc::POLICY_SECRET)
            .handle(RH_ENDORSEMENT)
            .handle(session)
            .auth(Auth::password());
        c.params.tpm2b(&[]).tpm2b(&[]).tpm2b(&[]).u32(0);
        self.call("TPM2_PolicySecret", c, 0, |_, _| Ok(()))
    }

    /// TPM2_ActivateCredential: recovers the secret MakeCredential sealed
    /// to `ek` for the object `ak`. Needs a fresh policy session for the EK.
    pub fn activate_credential(
        &mut self,
        ak: u32,
        ek: u32,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        let session = self.start_policy_session()?;
        if let Err(e) = self.policy_secret_endorsement(session) {
            let _ = self.flush(session);
            return Err(e);
        }
        let mut c = Command::new(cc::ACTIVATE_CREDENTIAL)
            .handle(ak)
            .handle(ek)
            .auth(Auth::password())
            .auth(Auth::policy(session));
        c.params.tpm2b(credential_blob).tpm2b(encrypted_secret);
        let result = self.call("TPM2_ActivateCredential", c, 0, |_, r| {
            Ok(r.tpm2b("certInfo")?.to_vec())
        });
        if result.is_err() {
            // On failure the TPM keeps the session; free it.
            let _ = self.flush(session);
        }
        result
    }

    /// TPM2_Clear with platform authorization: new owner seed, so keys
    /// under the owner hierarchy (our AK) change; the EK does not. Tests
    /// use it to simulate an owner clearing the TPM.
    pub fn clear(&mut self) -> Result<(), TpmError> {
        let c = Command::new(cc::CLEAR)
            .handle(RH_PLATFORM)
            .auth(Auth::password());
        self.call("TPM2_Clear", c, 0, |_, _| Ok(()))
    }

    /// Removes an NV index with platform authorization (tests only: to
    /// check behaviour when no EK certificate is present).
    pub fn nv_undefine_platform(&mut self, index: u32) -> Result<(), TpmError> {
        let c = Command::new(cc::NV_UNDEFINE_SPACE)
            .handle(RH_PLATFORM)
            .handle(index)
            .auth(Auth::password());
        self.call("TPM2_NV_UndefineSpace", c, 0, |_, _| Ok(()))
    }
}

/// The TCG EK Credential Profile template L-1 (RSA-2048, AES-128-CFB,
/// policy A): the EK every conformant TPM regenerates identically.
pub fn ek_rsa2048_template() -> Vec<u8> {
    let mut w = Writer::new();
    let attrs = tpm::attr::FIXED_TPM
        | tpm::attr::FIXED_PARENT
        | tpm::attr::SENSITIVE_DATA_ORIGIN
        | tpm::attr::ADMIN_WITH_POLICY
        | tpm::attr::RESTRICTED
        | tpm::attr::DECRYPT;
    w.u16(tpm::ALG_RSA).u16(tpm::ALG_SHA256).u32(attrs);
    w.tpm2b(&EK_POLICY_A);
    w.u16(tpm::ALG_AES).u16(128).u16(tpm::ALG_CFB);
    w.u16(tpm::ALG_NULL); // scheme
    w.u16(2048).u32(0);
    w.tpm2b(&[0u8; 256]);
    w.buf
}

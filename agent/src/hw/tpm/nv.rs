//! TPM 2.0 NV storage for what the agent must remember across boots when the
//! node has no disk of its own: the flash write journal and the serial of
//! the last policy applied.
//!
//! Two fixed indexes in the owner range (0x01800000-0x01BFFFFF, TCG
//! "Registry of Reserved TPM 2.0 Handles"):
//!
//! | index | holds | size |
//! |---|---|---|
//! | [`JOURNAL_INDEX`] `0x01A0F001` | the flash write journal (digests only) | min(TPM_PT_NV_INDEX_MAX, 2048) |
//! | [`POLICY_SERIAL_INDEX`] `0x01A0F002` | last applied policy serial | 32 |
//!
//! Attributes ([`FORTROS_NV_ATTRIBUTES`]): an ordinary index that
//! - only the owner hierarchy writes (`OWNERWRITE`; no `AUTHWRITE`, so the
//!   index's own empty auth value does not let anyone write it);
//! - anyone reads (`AUTHREAD` with an empty auth value; `OWNERREAD` too);
//! - `NO_DA`: a wrong password never counts towards dictionary-attack lockout;
//! - NOT `ORDERLY`: an orderly index reaches NV only at an orderly shutdown,
//!   and a journal must survive exactly the power cut it is there for.
//!
//! The agent assumes an empty owner password, as everywhere else. Whoever
//! holds the owner authorization can rewrite or delete these indexes: they
//! guard against accidents (power cuts, replayed policies), not against the
//! TPM's owner. TPM2_Clear removes them (they are not platform-created).
//!
//! Each index holds a payload framed as `u16 big-endian length || payload`;
//! length 0 means empty. Writes are chunked by TPM_PT_NV_BUFFER_MAX; a write
//! of a single chunk is atomic (TPM 2.0 Part 1 §37.6: NV updates complete or
//! do not happen), a multi-chunk write is not, so callers that need it put
//! their own digest in the payload (the journal does).

use super::client::{Tpm, TpmError, RH_OWNER};
use super::frame::{Auth, Command, FrameError};
use super::transport::Transport;
use fortros_wire::tpm::{self, Reader, Writer};

/// The flash write journal (see `hw::flash::nv_journal`).
pub const JOURNAL_INDEX: u32 = 0x01A0_F001;
/// The serial of the last policy this node applied.
pub const POLICY_SERIAL_INDEX: u32 = 0x01A0_F002;
/// The journal index is at most this big (libtpms' default NV index limit).
pub const JOURNAL_MAX_SIZE: u16 = 2048;
/// Size of the policy serial index.
pub const POLICY_SERIAL_SIZE: u16 = 32;

/// TPMA_NV bits (TPM 2.0 Part 2 §13.4).
pub mod attr {
    pub const OWNERWRITE: u32 = 1 << 1;
    pub const AUTHWRITE: u32 = 1 << 2;
    pub const OWNERREAD: u32 = 1 << 17;
    pub const AUTHREAD: u32 = 1 << 18;
    pub const NO_DA: u32 = 1 << 25;
    pub const ORDERLY: u32 = 1 << 26;
    pub const WRITTEN: u32 = 1 << 29;
    /// Bits the TPM sets itself (state, not definition): WRITELOCKED,
    /// WRITTEN, READLOCKED.
    pub const STATE: u32 = (1 << 11) | WRITTEN | (1 << 28);
}

/// The attributes of both FortrOS indexes (see the module docs).
pub const FORTROS_NV_ATTRIBUTES: u32 =
    attr::OWNERWRITE | attr::OWNERREAD | attr::AUTHREAD | attr::NO_DA;

mod cc {
    pub const NV_DEFINE_SPACE: u32 = 0x12A;
    pub const NV_UNDEFINE_SPACE: u32 = 0x122;
    pub const NV_WRITE: u32 = 0x137;
    pub const NV_READ: u32 = 0x14E;
    pub const GET_CAPABILITY: u32 = 0x17A;
    pub const NV_READ_PUBLIC: u32 = 0x169;
}

/// TPM_CAP_TPM_PROPERTIES and the fixed properties we ask for.
const CAP_TPM_PROPERTIES: u32 = 6;
pub const PT_NV_INDEX_MAX: u32 = 0x100 + 23;
pub const PT_NV_BUFFER_MAX: u32 = 0x100 + 44;

#[derive(Debug, thiserror::Error)]
pub enum NvError {
    #[error(transparent)]
    Tpm(#[from] TpmError),
    #[error(
        "NV index 0x{index:08x} exists with attributes 0x{attributes:08x} and size {size}, \
         not FortrOS's (0x{FORTROS_NV_ATTRIBUTES:08x}, {want}): someone else uses it; left alone"
    )]
    NotOurs {
        index: u32,
        attributes: u32,
        size: u16,
        want: u16,
    },
    #[error("NV index 0x{index:08x}: a {len}-byte payload does not fit in {capacity} bytes")]
    TooLarge {
        index: u32,
        len: usize,
        capacity: usize,
    },
    #[error("NV index 0x{index:08x} at offset {offset}: {what}")]
    Malformed {
        index: u32,
        offset: usize,
        what: String,
    },
}

/// TPMS_NV_PUBLIC: what TPM2_NV_ReadPublic says about an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvPublic {
    pub index: u32,
    pub name_alg: u16,
    pub attributes: u32,
    pub auth_policy: Vec<u8>,
    pub data_size: u16,
}

impl NvPublic {
    fn marshal(&self, w: &mut Writer) {
        let mut p = Writer::new();
        p.u32(self.index)
            .u16(self.name_alg)
            .u32(self.attributes)
            .tpm2b(&self.auth_policy)
            .u16(self.data_size);
        w.tpm2b(&p.buf);
    }

    fn parse(r: &mut Reader) -> Result<Self, tpm::TpmParseError> {
        const S: &str = "TPM2B_NV_PUBLIC";
        let mut p = Reader::new(r.tpm2b(S)?);
        let public = NvPublic {
            index: p.u32(S)?,
            name_alg: p.u16(S)?,
            attributes: p.u32(S)?,
            auth_policy: p.tpm2b(S)?.to_vec(),
            data_size: p.u16(S)?,
        };
        p.finish(S)?;
        Ok(public)
    }
}

/// Whether a TPM error is "no such handle" (a format-1 TPM_RC_HANDLE for
/// any handle of the command): how a missing NV index shows.
pub fn is_missing(e: &TpmError) -> bool {
    matches!(
        e,
        TpmError::Command {
            source: FrameError::Tpm { rc, .. },
            ..
        } if rc & 0x80 != 0 && rc & 0x40 == 0 && rc & 0x3f == 0x0b
    )
}

impl<T: Transport> Tpm<T> {
    /// TPM2_GetCapability(TPM_PROPERTIES) for one property.
    pub fn tpm_property(&mut self, property: u32) -> Result<u32, TpmError> {
        let mut c = Command::new(cc::GET_CAPABILITY);
        c.params.u32(CAP_TPM_PROPERTIES).u32(property).u32(1);
        let got = self.call("TPM2_GetCapability", c, 0, |_, r| {
            const S: &str = "TPMS_CAPABILITY_DATA";
            r.u8(S)?; // moreData
            if r.u32(S)? != CAP_TPM_PROPERTIES {
                return Err(r.invalid(S, "not TPM_CAP_TPM_PROPERTIES"));
            }
            let count = r.u32(S)?;
            let mut found = None;
            for _ in 0..count.min(256) {
                let (p, v) = (r.u32(S)?, r.u32(S)?);
                if p == property {
                    found = Some(v);
                }
            }
            Ok(found)
        })?;
        got.ok_or(TpmError::Unexpected {
            command: "TPM2_GetCapability",
            reason: format!("property 0x{property:x} not reported"),
        })
    }

    /// TPM2_NV_ReadPublic; `None` when the index is not defined.
    pub fn nv_read_public(&mut self, index: u32) -> Result<Option<NvPublic>, TpmError> {
        let c = Command::new(cc::NV_READ_PUBLIC).handle(index);
        match self.call("TPM2_NV_ReadPublic", c, 0, |_, r| NvPublic::parse(r)) {
            Ok(p) => Ok(Some(p)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// TPM2_NV_DefineSpace under the owner hierarchy (empty owner password),
    /// SHA-256 name, empty auth value, no policy.
    pub fn nv_define_space(
        &mut self,
        index: u32,
        size: u16,
        attributes: u32,
    ) -> Result<(), TpmError> {
        let mut c = Command::new(cc::NV_DEFINE_SPACE)
            .handle(RH_OWNER)
            .auth(Auth::password());
        c.params.tpm2b(&[]); // auth value of the index: empty
        NvPublic {
            index,
            name_alg: tpm::ALG_SHA256,
            attributes,
            auth_policy: Vec::new(),
            data_size: size,
        }
        .marshal(&mut c.params);
        self.call("TPM2_NV_DefineSpace", c, 0, |_, _| Ok(()))
    }

    /// TPM2_NV_UndefineSpace with owner authorization.
    pub fn nv_undefine_space(&mut self, index: u32) -> Result<(), TpmError> {
        let c = Command::new(cc::NV_UNDEFINE_SPACE)
            .handle(RH_OWNER)
            .handle(index)
            .auth(Auth::password());
        self.call("TPM2_NV_UndefineSpace", c, 0, |_, _| Ok(()))
    }

    /// TPM2_NV_Write with owner authorization, in chunks of the TPM's
    /// MAX_NV_BUFFER_SIZE. Each chunk is atomic; the whole is not.
    pub fn nv_write(&mut self, index: u32, offset: u16, data: &[u8]) -> Result<(), TpmError> {
        let chunk = self.tpm_property(PT_NV_BUFFER_MAX)?.clamp(64, 4096) as usize;
        for (i, piece) in data.chunks(chunk).enumerate() {
            let at = usize::from(offset) + i * chunk;
            let at = u16::try_from(at).map_err(|_| TpmError::Unexpected {
                command: "TPM2_NV_Write",
                reason: format!("offset {at} beyond 65535"),
            })?;
            let mut c = Command::new(cc::NV_WRITE)
                .handle(RH_OWNER)
                .handle(index)
                .auth(Auth::password());
            c.params.tpm2b(piece).u16(at);
            self.call("TPM2_NV_Write", c, 0, |_, _| Ok(()))?;
        }
        Ok(())
    }

    /// TPM2_NV_Read of `len` bytes at `offset`, authorized by the index's
    /// own (empty) auth value (AUTHREAD): no hierarchy password needed.
    pub fn nv_read_at(&mut self, index: u32, offset: u16, len: u16) -> Result<Vec<u8>, TpmError> {
        let chunk = self.tpm_property(PT_NV_BUFFER_MAX)?.clamp(64, 4096) as u16;
        let mut out = Vec::with_capacity(usize::from(len));
        while out.len() < usize::from(len) {
            let done = out.len() as u16;
            let n = chunk.min(len - done);
            let at = offset.checked_add(done).ok_or(TpmError::Unexpected {
                command: "TPM2_NV_Read",
                reason: "offset beyond 65535".into(),
            })?;
            let mut c = Command::new(cc::NV_READ)
                .handle(index)
                .handle(index)
                .auth(Auth::password());
            c.params.u16(n).u16(at);
            let got = self.call("TPM2_NV_Read", c, 0, |_, r| {
                Ok(r.tpm2b("TPM2B_MAX_NV_BUFFER")?.to_vec())
            })?;
            if got.len() != usize::from(n) {
                return Err(TpmError::Unexpected {
                    command: "TPM2_NV_Read",
                    reason: format!(
                        "asked {n} bytes at offset {at} of index 0x{index:08x}, got {}",
                        got.len()
                    ),
                });
            }
            out.extend_from_slice(&got);
        }
        Ok(out)
    }
}

/// One FortrOS index holding a length-prefixed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvSlot {
    pub index: u32,
    /// Size of the index (the payload can use `size - 2`).
    pub size: u16,
}

/// Whether [`NvSlot::ensure`] found the index or had to create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioned {
    Existing,
    Created,
}

impl NvSlot {
    /// The journal slot, sized by what this TPM allows per index.
    pub fn journal<T: Transport>(tpm: &mut Tpm<T>) -> Result<Self, NvError> {
        let max = tpm.tpm_property(PT_NV_INDEX_MAX)?;
        let size = u16::try_from(max.min(u32::from(JOURNAL_MAX_SIZE))).unwrap_or(JOURNAL_MAX_SIZE);
        Ok(NvSlot {
            index: JOURNAL_INDEX,
            size,
        })
    }

    /// The policy serial slot.
    pub fn policy_serial() -> Self {
        NvSlot {
            index: POLICY_SERIAL_INDEX,
            size: POLICY_SERIAL_SIZE,
        }
    }

    /// Bytes a payload may take.
    pub fn capacity(&self) -> usize {
        usize::from(self.size).saturating_sub(2)
    }

    /// Defines the index if it does not exist (and writes an empty payload,
    /// so it reads back as empty rather than "never written"). An index of
    /// the same number with other attributes or another size is someone
    /// else's: an error, never redefined. An index of ours that is smaller
    /// than asked (a TPM with a lower per-index limit at creation) is used
    /// at its size.
    pub fn ensure<T: Transport>(&mut self, tpm: &mut Tpm<T>) -> Result<Provisioned, NvError> {
        if let Some(p) = tpm.nv_read_public(self.index)? {
            let ours = p.attributes & !attr::STATE == FORTROS_NV_ATTRIBUTES
                && p.auth_policy.is_empty()
                && p.data_size >= 2
                && p.data_size <= self.size;
            if !ours {
                return Err(NvError::NotOurs {
                    index: self.index,
                    attributes: p.attributes,
                    size: p.data_size,
                    want: self.size,
                });
            }
            self.size = p.data_size;
            if p.attributes & attr::WRITTEN == 0 {
                tpm.nv_write(self.index, 0, &[0, 0])?;
            }
            return Ok(Provisioned::Existing);
        }
        tpm.nv_define_space(self.index, self.size, FORTROS_NV_ATTRIBUTES)?;
        tpm.nv_write(self.index, 0, &[0, 0])?;
        log::info!(
            "TPM NV index 0x{:08x} defined ({} bytes)",
            self.index,
            self.size
        );
        Ok(Provisioned::Created)
    }

    /// The payload, `None` when the index does not exist or is empty.
    pub fn load<T: Transport>(&self, tpm: &mut Tpm<T>) -> Result<Option<Vec<u8>>, NvError> {
        let Some(p) = tpm.nv_read_public(self.index)? else {
            return Ok(None);
        };
        if p.attributes & attr::WRITTEN == 0 || p.data_size < 2 {
            return Ok(None);
        }
        let head = tpm.nv_read_at(self.index, 0, 2)?;
        let len = head
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .unwrap_or(0);
        if len == 0 {
            return Ok(None);
        }
        if usize::from(len) > usize::from(p.data_size) - 2 {
            return Err(NvError::Malformed {
                index: self.index,
                offset: 0,
                what: format!(
                    "payload length {len} exceeds the index size {}",
                    p.data_size
                ),
            });
        }
        Ok(Some(tpm.nv_read_at(self.index, 2, len)?))
    }

    /// Writes a payload (the index must exist: see [`Self::ensure`]).
    pub fn store<T: Transport>(&self, tpm: &mut Tpm<T>, payload: &[u8]) -> Result<(), NvError> {
        if payload.is_empty() || payload.len() > self.capacity() {
            return Err(NvError::TooLarge {
                index: self.index,
                len: payload.len(),
                capacity: self.capacity(),
            });
        }
        let mut framed = (payload.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(payload);
        tpm.nv_write(self.index, 0, &framed)?;
        Ok(())
    }

    /// Empties the payload: one 2-byte write, atomic.
    pub fn clear<T: Transport>(&self, tpm: &mut Tpm<T>) -> Result<(), NvError> {
        match tpm.nv_write(self.index, 0, &[0, 0]) {
            Err(e) if is_missing(&e) => Ok(()),
            other => Ok(other?),
        }
    }
}

/// Payload of the policy serial index: magic, then the serial (LE).
const SERIAL_MAGIC: &[u8; 8] = b"FRSERIAL";

/// The serial of the last policy applied on this node, `None` when the TPM
/// holds none (first enrollment, or the TPM was cleared since). A payload
/// that is not ours is an error: the caller refuses policies rather than
/// accept a replay.
pub fn load_policy_serial<T: Transport>(tpm: &mut Tpm<T>) -> Result<Option<u64>, NvError> {
    let slot = NvSlot::policy_serial();
    let Some(p) = slot.load(tpm)? else {
        return Ok(None);
    };
    match (p.get(..8), p.get(8..16), p.len()) {
        (Some(magic), Some(v), 16) if magic == SERIAL_MAGIC => {
            let mut b = [0u8; 8];
            b.copy_from_slice(v);
            Ok(Some(u64::from_le_bytes(b)))
        }
        _ => Err(NvError::Malformed {
            index: slot.index,
            offset: 2,
            what: format!("{} bytes that are not a FortrOS policy serial", p.len()),
        }),
    }
}

/// Records the serial of a policy just applied (defines the index on first
/// use). One NV_Write of 18 bytes: atomic.
pub fn store_policy_serial<T: Transport>(tpm: &mut Tpm<T>, serial: u64) -> Result<(), NvError> {
    let mut slot = NvSlot::policy_serial();
    slot.ensure(tpm)?;
    let mut payload = SERIAL_MAGIC.to_vec();
    payload.extend_from_slice(&serial.to_le_bytes());
    slot.store(tpm, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_in_the_owner_range_and_attributes_are_safe() {
        for i in [JOURNAL_INDEX, POLICY_SERIAL_INDEX] {
            assert!((0x0180_0000..=0x01BF_FFFF).contains(&i), "{i:x}");
        }
        assert_eq!(FORTROS_NV_ATTRIBUTES & attr::ORDERLY, 0);
        assert_eq!(FORTROS_NV_ATTRIBUTES & attr::AUTHWRITE, 0);
        assert_ne!(FORTROS_NV_ATTRIBUTES & attr::OWNERWRITE, 0);
    }

    #[test]
    fn nv_public_round_trips_and_truncations_fail() {
        let p = NvPublic {
            index: JOURNAL_INDEX,
            name_alg: tpm::ALG_SHA256,
            attributes: FORTROS_NV_ATTRIBUTES,
            auth_policy: vec![],
            data_size: 2048,
        };
        let mut w = Writer::new();
        p.marshal(&mut w);
        assert_eq!(NvPublic::parse(&mut Reader::new(&w.buf)).unwrap(), p);
        for n in 0..w.buf.len() {
            assert!(NvPublic::parse(&mut Reader::new(&w.buf[..n])).is_err());
        }
    }

    #[test]
    fn missing_handle_is_recognised() {
        let e = |rc| TpmError::Command {
            command: "x",
            source: FrameError::Tpm {
                rc,
                meaning: String::new(),
            },
        };
        assert!(is_missing(&e(0x18b)));
        assert!(is_missing(&e(0x28b)));
        assert!(!is_missing(&e(0x1cb))); // parameter error, not a handle
        assert!(!is_missing(&e(0x14c)));
    }
}

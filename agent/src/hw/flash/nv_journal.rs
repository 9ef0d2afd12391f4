//! The write journal in TPM NV ([`crate::hw::tpm::nv::JOURNAL_INDEX`]): for
//! a node whose only persistent storage besides the flash is its TPM.
//!
//! An NV index is small (libtpms allows 2048 bytes), so the record keeps
//! digests only, never block bytes: device size, block size, old and new
//! image SHA-256, and per entry (a run of changed blocks) its offset, length
//! and old/new SHA-256, in the journal's own encoding
//! ([`super::journal::JournalRecord`], ending with its SHA-256). That is
//! [`RECORD_FIXED_BYTES`] + [`ENTRY_BYTES`] per entry: 25 entries in 2046
//! bytes. A write with more runs is journaled as fewer spans (runs merged
//! across the smallest gaps, digests over the whole span); see
//! [`super::plan::coalesce`]. The bytes to restore come from the org's
//! backup of the original image ([`super::recovery::BackupSource`]).
//!
//! A store is read back and compared before it returns: the engine erases
//! only after a record that is really there. A record that does not decode
//! is therefore a torn store of a write that never began
//! ([`JournalError::Torn`]).

use super::journal::{Journal, JournalError, JournalRecord, ENTRY_BYTES, RECORD_FIXED_BYTES};
use crate::hw::tpm::nv::{NvError, NvSlot, Provisioned};
use crate::hw::tpm::{Tpm, Transport};

/// The journal in the TPM's NV index.
pub struct NvJournal<T: Transport> {
    tpm: Tpm<T>,
    slot: NvSlot,
}

impl<T: Transport> NvJournal<T> {
    /// Opens the journal index, defining it on first use.
    pub fn open(mut tpm: Tpm<T>) -> Result<Self, NvError> {
        let mut slot = NvSlot::journal(&mut tpm)?;
        if slot.ensure(&mut tpm)? == Provisioned::Created {
            log::info!("flash journal: TPM NV index 0x{:08x} created", slot.index);
        }
        Ok(NvJournal { tpm, slot })
    }

    /// Gives the TPM back.
    pub fn into_tpm(self) -> Tpm<T> {
        self.tpm
    }

    fn store_error(&self, e: NvError) -> JournalError {
        JournalError::Store {
            store: self.name(),
            what: e.to_string(),
        }
    }
}

impl<T: Transport> Journal for NvJournal<T> {
    fn name(&self) -> String {
        format!("TPM NV index 0x{:08x}", self.slot.index)
    }
    fn keeps_data(&self) -> bool {
        false
    }
    fn max_entries(&self) -> Option<usize> {
        Some(
            self.slot
                .capacity()
                .saturating_sub(RECORD_FIXED_BYTES)
                .checked_div(ENTRY_BYTES)
                .unwrap_or(0)
                .max(1),
        )
    }
    fn load(&mut self) -> Result<Option<JournalRecord>, JournalError> {
        let bytes = match self.slot.load(&mut self.tpm) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(NvError::Malformed { what, .. }) => {
                return Err(JournalError::Torn {
                    store: self.name(),
                    what,
                })
            }
            Err(e) => return Err(self.store_error(e)),
        };
        JournalRecord::decode(&bytes)
            .map(Some)
            .map_err(|e| JournalError::Torn {
                store: self.name(),
                what: e.to_string(),
            })
    }
    fn store(&mut self, record: &JournalRecord) -> Result<(), JournalError> {
        let mut digests_only = record.clone();
        for b in &mut digests_only.blocks {
            b.old = None;
            b.new = None;
        }
        let bytes = digests_only.encode();
        self.slot
            .store(&mut self.tpm, &bytes)
            .map_err(|e| self.store_error(e))?;
        // Read back: the flash is erased right after this returns.
        match self.slot.load(&mut self.tpm) {
            Ok(Some(back)) if back == bytes => Ok(()),
            Ok(_) => Err(JournalError::Store {
                store: self.name(),
                what: "the record read back differs from the one written".into(),
            }),
            Err(e) => Err(self.store_error(e)),
        }
    }
    fn clear(&mut self) -> Result<(), JournalError> {
        self.slot
            .clear(&mut self.tpm)
            .map_err(|e| self.store_error(e))
    }
}

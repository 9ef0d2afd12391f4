//! What to do at boot when the write journal says a write was in progress
//! (the power was cut, or the agent died, between the first erase and the
//! last verified write).
//!
//! Each journaled block is read and classified by its digest: still old,
//! already new, or neither (torn: erased or half-written). Then:
//! - all new: the write had finished, only the journal clear was lost;
//! - all old: nothing had been written;
//! - otherwise finish the write if the new bytes are at hand (the policy
//!   asked for them and was verified before the journal was written), else
//!   roll back with the old bytes; if finishing fails, roll back.
//!
//! The journal is cleared only once the chip is consistent again.

use super::journal::{Journal, JournalBlock, JournalError, JournalRecord};
use super::write::write_verified;
use super::{sha256, Flash, FlashError};

/// What a journaled block holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    Old,
    New,
    Torn,
}

/// The plan for a journal found at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Every block already holds the new bytes.
    AlreadyComplete,
    /// Every block still holds the old bytes.
    NothingWritten,
    /// Write the blocks that are not new yet.
    RollForward,
    /// Write the old bytes back to the blocks that are not old.
    RollBack,
    /// Mixed state and neither the new nor the old bytes are at hand: stop
    /// and ask the org for the image (never guess).
    NeedImage,
}

/// Decides from the block states and which bytes the journal holds.
pub fn decide(states: &[BlockState], have_new: bool, have_old: bool) -> Decision {
    if states.iter().all(|s| *s == BlockState::New) {
        Decision::AlreadyComplete
    } else if states.iter().all(|s| *s == BlockState::Old) {
        Decision::NothingWritten
    } else if have_new {
        Decision::RollForward
    } else if have_old {
        Decision::RollBack
    } else {
        Decision::NeedImage
    }
}

/// What recovery did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryReport {
    pub decision: Decision,
    /// Set when rolling forward failed and the old bytes were put back.
    pub rolled_back_after_failed_finish: bool,
    /// Offsets of the blocks rewritten.
    pub blocks_rewritten: Vec<u64>,
    /// SHA-256 of the image the chip now holds by construction (old or new).
    pub image_sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("reading {0}")]
    Flash(#[from] FlashError),
    #[error("the journal is for a {journal:#x}-byte flash but {device} is {flash:#x} bytes; left untouched")]
    WrongDevice {
        device: String,
        journal: u64,
        flash: u64,
    },
    #[error(
        "an interrupted write left {device} in a mixed state and the journal holds no bytes: \
         the original image (SHA-256 {old_sha256}) must come from the org"
    )]
    NeedImage { device: String, old_sha256: String },
    #[error(
        "recovery could not make {device} consistent: block {offset:#x}: {cause}; journal kept"
    )]
    Failed {
        device: String,
        offset: u64,
        cause: String,
    },
}

fn classify(flash: &mut dyn Flash, b: &JournalBlock) -> Result<BlockState, FlashError> {
    let mut buf = vec![0u8; b.len as usize];
    flash.read(b.offset, &mut buf)?;
    let d = sha256(&buf);
    Ok(if d == b.new_sha256 {
        BlockState::New
    } else if d == b.old_sha256 {
        BlockState::Old
    } else {
        BlockState::Torn
    })
}

/// Puts every block that is not in `target` state back to `target`'s bytes.
fn rewrite(
    flash: &mut dyn Flash,
    rec: &JournalRecord,
    states: &[BlockState],
    target: BlockState,
    attempts: u32,
    rewritten: &mut Vec<u64>,
) -> Result<(), (u64, String)> {
    for (b, s) in rec.blocks.iter().zip(states) {
        if *s == target {
            continue;
        }
        let data = match target {
            BlockState::New => b.new.as_deref(),
            _ => b.old.as_deref(),
        }
        .ok_or((b.offset, "journal lacks the bytes".to_string()))?;
        write_verified(flash, b.offset, data, attempts).map_err(|e| (b.offset, e))?;
        rewritten.push(b.offset);
    }
    Ok(())
}

/// Checks the journal at boot and, if a write was interrupted, makes the chip
/// consistent. Returns `None` when there was no journal.
pub fn recover(
    flash: &mut dyn Flash,
    journal: &mut dyn Journal,
    attempts: u32,
) -> Result<Option<RecoveryReport>, RecoveryError> {
    let Some(rec) = journal.load()? else {
        return Ok(None);
    };
    let device = flash.name();
    if rec.device_size != flash.size() {
        return Err(RecoveryError::WrongDevice {
            device,
            journal: rec.device_size,
            flash: flash.size(),
        });
    }
    let mut states = Vec::with_capacity(rec.blocks.len());
    for b in &rec.blocks {
        states.push(classify(flash, b)?);
    }
    let have_new = rec.blocks.iter().all(|b| b.new.is_some());
    let have_old = rec.blocks.iter().all(|b| b.old.is_some());
    let decision = decide(&states, have_new, have_old);
    log::warn!(
        "{device}: interrupted flash write found in {}: {} blocks, decision {decision:?}",
        journal.name(),
        rec.blocks.len()
    );
    let mut report = RecoveryReport {
        decision,
        rolled_back_after_failed_finish: false,
        blocks_rewritten: Vec::new(),
        image_sha256: hex::encode(rec.new_image_sha256),
    };
    match decision {
        Decision::AlreadyComplete => {}
        Decision::NothingWritten => report.image_sha256 = hex::encode(rec.old_image_sha256),
        Decision::NeedImage => {
            return Err(RecoveryError::NeedImage {
                device,
                old_sha256: hex::encode(rec.old_image_sha256),
            })
        }
        Decision::RollForward => {
            let mut done = Vec::new();
            if let Err((offset, cause)) =
                rewrite(flash, &rec, &states, BlockState::New, attempts, &mut done)
            {
                log::error!("{device}: finishing failed at {offset:#x}: {cause}; rolling back");
                if !have_old {
                    return Err(RecoveryError::Failed {
                        device,
                        offset,
                        cause,
                    });
                }
                // Re-read: the failed finish changed some blocks.
                let mut now = Vec::with_capacity(rec.blocks.len());
                for b in &rec.blocks {
                    now.push(classify(flash, b)?);
                }
                rewrite(flash, &rec, &now, BlockState::Old, attempts, &mut done).map_err(
                    |(offset, cause)| RecoveryError::Failed {
                        device: device.clone(),
                        offset,
                        cause,
                    },
                )?;
                report.rolled_back_after_failed_finish = true;
                report.image_sha256 = hex::encode(rec.old_image_sha256);
            }
            report.blocks_rewritten = done;
        }
        Decision::RollBack => {
            rewrite(
                flash,
                &rec,
                &states,
                BlockState::Old,
                attempts,
                &mut report.blocks_rewritten,
            )
            .map_err(|(offset, cause)| RecoveryError::Failed {
                device: device.clone(),
                offset,
                cause,
            })?;
            report.image_sha256 = hex::encode(rec.old_image_sha256);
        }
    }
    journal.clear()?;
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::flash::file::MemFlash;
    use crate::hw::flash::journal::MemoryJournal;
    use crate::hw::flash::write::tests::{auth, old_image};
    use crate::hw::flash::write::{write_image, WriteOptions};
    use BlockState::*;

    #[test]
    fn decisions() {
        assert_eq!(decide(&[New, New], false, false), Decision::AlreadyComplete);
        assert_eq!(decide(&[Old, Old], false, false), Decision::NothingWritten);
        assert_eq!(decide(&[New, Torn, Old], true, true), Decision::RollForward);
        assert_eq!(decide(&[New, Torn, Old], false, true), Decision::RollBack);
        assert_eq!(decide(&[New, Old], false, false), Decision::NeedImage);
        assert_eq!(decide(&[], false, false), Decision::AlreadyComplete);
    }

    /// Power cut after `n` successful writes: the write engine dies, the
    /// journal stays, the chip is half-written.
    fn interrupted(n: usize) -> (MemFlash, MemoryJournal, Vec<u8>, Vec<u8>) {
        let old = old_image();
        let mut new = old.clone();
        for a in [0x2000usize, 0x8000, 0x10000] {
            new[a] ^= 0xFF;
        }
        let mut f = MemFlash::new(old.clone(), 4096);
        f.fail_from_write = Some(n);
        let mut j = MemoryJournal::default();
        let _ = write_image(
            &mut f,
            &mut j,
            &old,
            &new,
            &auth(&old),
            WriteOptions { attempts: 1 },
        );
        assert!(j.bytes.is_some(), "journal left behind");
        f.fail_from_write = None; // power is back
        (f, j, old, new)
    }

    #[test]
    fn power_cut_mid_write_is_finished() {
        let (mut f, mut j, _old, new) = interrupted(1);
        let r = recover(&mut f, &mut j, 3).unwrap().unwrap();
        assert_eq!(r.decision, Decision::RollForward);
        // 0x2000 was written, then erased again by the engine's failed restore;
        // 0x8000 was erased when the power went; 0x10000 was never reached.
        assert_eq!(r.blocks_rewritten, vec![0x2000, 0x8000, 0x10000]);
        assert_eq!(f.bytes, new);
        assert!(j.bytes.is_none());
        assert_eq!(recover(&mut f, &mut j, 3).unwrap(), None);
    }

    #[test]
    fn without_new_bytes_a_torn_write_is_rolled_back() {
        let (mut f, mut j, old, _new) = interrupted(1);
        let mut rec = j.load().unwrap().unwrap();
        for b in &mut rec.blocks {
            b.new = None;
        }
        j.store(&rec).unwrap();
        let r = recover(&mut f, &mut j, 3).unwrap().unwrap();
        assert_eq!(r.decision, Decision::RollBack);
        assert_eq!(f.bytes, old);
    }

    #[test]
    fn if_finishing_fails_it_rolls_back() {
        let (mut f, mut j, old, _new) = interrupted(1);
        // The new bytes of block 0x8000 will not stick (3 attempts fail).
        f.corrupt_writes = vec![(0x8000, 3)];
        let r = recover(&mut f, &mut j, 3).unwrap().unwrap();
        assert!(r.rolled_back_after_failed_finish);
        assert_eq!(f.bytes, old);
        assert!(j.bytes.is_none());
    }

    #[test]
    fn digest_only_journal_with_mixed_state_stops() {
        let (mut f, mut j, _old, _new) = interrupted(1);
        let mut rec = j.load().unwrap().unwrap();
        for b in &mut rec.blocks {
            b.new = None;
            b.old = None;
        }
        j.store(&rec).unwrap();
        let before = f.bytes.clone();
        let e = recover(&mut f, &mut j, 3).unwrap_err();
        assert!(matches!(e, RecoveryError::NeedImage { .. }), "{e}");
        assert_eq!(f.bytes, before);
        assert!(j.bytes.is_some(), "journal kept until the image arrives");
    }

    #[test]
    fn cut_before_any_write_or_after_the_last_just_clears() {
        let (mut f, mut j, old, _) = interrupted(0);
        // The first erase happened but its write failed: block 0x2000 is torn (0xFF).
        let r = recover(&mut f, &mut j, 3).unwrap().unwrap();
        assert_eq!(r.decision, Decision::RollForward);

        let mut f2 = MemFlash::new(old.clone(), 4096);
        let mut j2 = MemoryJournal::default();
        let rec = {
            let (_, mut jj, _, _) = interrupted(0);
            jj.load().unwrap().unwrap()
        };
        j2.store(&rec).unwrap();
        let r2 = recover(&mut f2, &mut j2, 3).unwrap().unwrap();
        assert_eq!(r2.decision, Decision::NothingWritten);
        assert!(f2.erased().is_empty());
        assert!(j2.bytes.is_none());
    }

    #[test]
    fn wrong_device_is_left_alone() {
        let (_, mut j, _, _) = interrupted(1);
        let mut other = MemFlash::new(vec![0xFF; 8192], 4096);
        let e = recover(&mut other, &mut j, 3).unwrap_err();
        assert!(matches!(e, RecoveryError::WrongDevice { .. }), "{e}");
    }
}

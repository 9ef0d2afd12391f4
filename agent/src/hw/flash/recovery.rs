//! What to do at boot when the write journal says a write was in progress
//! (the power was cut, or the agent died, between the first erase and the
//! last verified write).
//!
//! Recovery works on the image read once at this boot ([`FlashImage`]): each
//! journaled entry (a run, or a span of runs) is classified by its digest:
//! still old, already new, or neither (torn: erased or half-written). Then:
//! - all new: the write had finished, only the journal clear was lost;
//! - all old: nothing had been written;
//! - otherwise finish the write if the new bytes are at hand (the policy
//!   asked for them and was verified before the journal was written), else
//!   roll back with the old bytes; if finishing fails, roll back;
//! - a digest-only journal (TPM NV) has no bytes: the original image comes
//!   from the org's backup ([`BackupSource`]), is checked against the
//!   journal's old-image SHA-256, and every erase block of a torn entry
//!   that differs from it is rewritten (verified). No backup at hand: stop,
//!   keep the journal, write nothing ([`RecoveryError::NeedImage`]).
//! - a torn journal record is discarded: the engine erases nothing before
//!   its record is stored and read back, so that write never began.
//!
//! Every rewrite is read back ([`write_verified`]) and patched into the boot
//! image, so the image stays what the chip holds without a second full read.
//! The journal is cleared only once the chip is consistent again.

use super::journal::{Journal, JournalBlock, JournalError, JournalRecord};
use super::write::write_verified;
use super::{read_image, sha256, Flash, FlashError, FlashImage};

/// What a journaled entry holds now.
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
    /// Every entry already holds the new bytes.
    AlreadyComplete,
    /// Every entry still holds the old bytes.
    NothingWritten,
    /// Write the entries that are not new yet.
    RollForward,
    /// Write the old bytes back to the entries that are not old.
    RollBack,
    /// Mixed state and neither the new nor the old bytes are in the journal:
    /// the original image must come from the org (never guess).
    NeedImage,
    /// Mixed state; the org's backup of the original image was verified
    /// and the changed blocks restored from it.
    RestoredFromBackup,
    /// The journal record itself was torn: discarded, flash untouched.
    DiscardedTornRecord,
}

/// Decides from the entry states and which bytes the journal holds.
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

/// Where the original image of an interrupted write can be fetched: the
/// org, which received it before the first write.
pub trait BackupSource {
    /// A name for messages (the org's URL).
    fn name(&self) -> String;
    /// The image whose SHA-256 is `sha256` (`size` bytes). The caller
    /// verifies the digest; the source need not be trusted.
    fn fetch(&mut self, sha256: &[u8; 32], size: u64) -> Result<Vec<u8>, String>;
}

/// What recovery did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryReport {
    pub decision: Decision,
    /// Set when rolling forward failed and the old bytes were put back.
    pub rolled_back_after_failed_finish: bool,
    /// Offsets of the runs (or blocks) rewritten.
    pub blocks_rewritten: Vec<u64>,
    /// SHA-256 of the image the chip now holds.
    pub image_sha256: String,
    /// The journal store, and the backup source when one was used.
    pub journal: String,
    pub backup: Option<String>,
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
         the original image (SHA-256 {old_sha256}) must come from the org; journal kept, \
         no flash write this boot"
    )]
    NeedImage { device: String, old_sha256: String },
    #[error(
        "an interrupted write left {device} in a mixed state and the backup from {source_name} \
         could not be had: {reason}; journal kept, no flash write this boot"
    )]
    Backup {
        device: String,
        source_name: String,
        reason: String,
    },
    #[error(
        "recovery could not make {device} consistent: block {offset:#x}: {cause}; journal kept"
    )]
    Failed {
        device: String,
        offset: u64,
        cause: String,
    },
}

/// The bytes of an entry in the boot image (checked against the device
/// size before use).
fn entry_bytes<'a>(image: &'a [u8], b: &JournalBlock) -> &'a [u8] {
    let start = b.offset as usize;
    image
        .get(start..start.saturating_add(b.len as usize))
        .unwrap_or_default()
}

fn classify(image: &[u8], b: &JournalBlock) -> BlockState {
    let d = sha256(entry_bytes(image, b));
    if d == b.new_sha256 {
        BlockState::New
    } else if d == b.old_sha256 {
        BlockState::Old
    } else {
        BlockState::Torn
    }
}

/// Writes `data` at `offset`, verified, and patches the boot image. On
/// failure the chip's bytes there are unknown: re-read them into the image.
fn rewrite_range(
    flash: &mut dyn Flash,
    image: &mut FlashImage,
    offset: u64,
    data: &[u8],
    attempts: u32,
) -> Result<(), (u64, String)> {
    let start = offset as usize;
    let end = start + data.len();
    match write_verified(flash, offset, data, attempts) {
        Ok(_) => {
            if let Some(dst) = image.bytes.get_mut(start..end) {
                dst.copy_from_slice(data);
            }
            Ok(())
        }
        Err(cause) => {
            if let Some(dst) = image.bytes.get_mut(start..end) {
                if let Err(e) = flash.read(offset, dst) {
                    log::error!("{}: re-reading {offset:#x}: {e}", flash.name());
                }
            }
            Err((offset, cause))
        }
    }
}

/// Puts every entry that is not in `target` state back to `target`'s bytes.
fn rewrite(
    flash: &mut dyn Flash,
    image: &mut FlashImage,
    rec: &JournalRecord,
    target: BlockState,
    attempts: u32,
    rewritten: &mut Vec<u64>,
) -> Result<(), (u64, String)> {
    for b in &rec.blocks {
        if classify(&image.bytes, b) == target {
            continue;
        }
        let data = match target {
            BlockState::New => b.new.as_deref(),
            _ => b.old.as_deref(),
        }
        .ok_or((b.offset, "journal lacks the bytes".to_string()))?;
        rewrite_range(flash, image, b.offset, data, attempts)?;
        rewritten.push(b.offset);
    }
    Ok(())
}

/// Restores every torn or new entry from the org's copy of the original
/// image: only the erase blocks that differ from it are rewritten.
fn restore_from_backup(
    flash: &mut dyn Flash,
    image: &mut FlashImage,
    rec: &JournalRecord,
    source: &mut dyn BackupSource,
    attempts: u32,
    rewritten: &mut Vec<u64>,
) -> Result<(), RecoveryError> {
    let device = flash.name();
    let source_name = source.name();
    let backup_err = |reason: String| RecoveryError::Backup {
        device: device.clone(),
        source_name: source_name.clone(),
        reason,
    };
    let original = source
        .fetch(&rec.old_image_sha256, rec.device_size)
        .map_err(&backup_err)?;
    let got = sha256(&original);
    if original.len() as u64 != rec.device_size || got != rec.old_image_sha256 {
        return Err(backup_err(format!(
            "it is {:#x} bytes with SHA-256 {}, the journal expects {:#x} bytes with {}",
            original.len(),
            hex::encode(got),
            rec.device_size,
            hex::encode(rec.old_image_sha256)
        )));
    }
    log::warn!(
        "{device}: original image from {source_name} verified (SHA-256 {}); restoring",
        hex::encode(got)
    );
    let block = rec.block_size as usize;
    // The erase blocks of non-old entries that differ from the original,
    // grouped into runs of adjacent blocks.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for b in &rec.blocks {
        if classify(&image.bytes, b) == BlockState::Old {
            continue;
        }
        let start = b.offset as usize;
        let end = start + b.len as usize;
        for at in (start..end).step_by(block) {
            let now = image.bytes.get(at..at + block).unwrap_or_default();
            if now == original.get(at..at + block).unwrap_or_default() {
                continue;
            }
            match runs.last_mut() {
                Some((s, l)) if *s + *l == at => *l += block,
                _ => runs.push((at, block)),
            }
        }
    }
    for (start, len) in runs {
        let data = original.get(start..start + len).unwrap_or_default();
        rewrite_range(flash, image, start as u64, data, attempts).map_err(|(offset, cause)| {
            RecoveryError::Failed {
                device: device.clone(),
                offset,
                cause,
            }
        })?;
        rewritten.push(start as u64);
    }
    if let Some(b) = rec
        .blocks
        .iter()
        .find(|b| classify(&image.bytes, b) != BlockState::Old)
    {
        return Err(RecoveryError::Failed {
            device,
            offset: b.offset,
            cause: "still differs from the original after restoring".into(),
        });
    }
    Ok(())
}

/// Checks the journal against the image read at this boot and, if a write
/// was interrupted, makes the chip consistent, patching `image` to match.
/// `backup` is where the original comes from when the journal holds only
/// digests (`None`: not reachable yet). Returns `None` when there was no
/// journal.
pub fn recover_image(
    flash: &mut dyn Flash,
    journal: &mut dyn Journal,
    image: &mut FlashImage,
    backup: Option<&mut dyn BackupSource>,
    attempts: u32,
) -> Result<Option<RecoveryReport>, RecoveryError> {
    let device = flash.name();
    let mut report = RecoveryReport {
        decision: Decision::DiscardedTornRecord,
        rolled_back_after_failed_finish: false,
        blocks_rewritten: Vec::new(),
        image_sha256: image.sha256_hex(),
        journal: journal.name(),
        backup: None,
    };
    let rec = match journal.load() {
        Ok(Some(rec)) => rec,
        Ok(None) => return Ok(None),
        Err(JournalError::Torn { store, what }) => {
            log::error!(
                "{device}: the journal record in {store} is torn ({what}): the write it \
                 announced never began; discarding it"
            );
            journal.clear()?;
            return Ok(Some(report));
        }
        Err(e) => return Err(e.into()),
    };
    if rec.device_size != flash.size() || image.bytes.len() as u64 != flash.size() {
        return Err(RecoveryError::WrongDevice {
            device,
            journal: rec.device_size,
            flash: flash.size(),
        });
    }
    let states: Vec<BlockState> = rec
        .blocks
        .iter()
        .map(|b| classify(&image.bytes, b))
        .collect();
    let have_new = rec.blocks.iter().all(|b| b.new.is_some());
    let have_old = rec.blocks.iter().all(|b| b.old.is_some());
    let mut decision = decide(&states, have_new, have_old);
    // Say what is about to happen, not a result: the fetch may still fail.
    let mut plan = format!("decision {decision:?}");
    if let (Decision::NeedImage, Some(source)) = (decision, backup.as_ref()) {
        plan = format!("decision NeedImage: restoring from {}", source.name());
        decision = Decision::RestoredFromBackup;
    }
    log::warn!(
        "{device}: interrupted flash write found in {}: {} entries ({} old, {} new, {} torn), {plan}",
        journal.name(),
        rec.blocks.len(),
        states.iter().filter(|s| **s == BlockState::Old).count(),
        states.iter().filter(|s| **s == BlockState::New).count(),
        states.iter().filter(|s| **s == BlockState::Torn).count(),
    );
    report.decision = decision;
    let failed = |(offset, cause): (u64, String)| RecoveryError::Failed {
        device: device.clone(),
        offset,
        cause,
    };
    match decision {
        Decision::AlreadyComplete | Decision::NothingWritten | Decision::DiscardedTornRecord => {}
        Decision::NeedImage => {
            return Err(RecoveryError::NeedImage {
                device,
                old_sha256: hex::encode(rec.old_image_sha256),
            })
        }
        Decision::RestoredFromBackup => {
            if let Some(source) = backup {
                report.backup = Some(source.name());
                restore_from_backup(
                    flash,
                    image,
                    &rec,
                    source,
                    attempts,
                    &mut report.blocks_rewritten,
                )?;
            }
        }
        Decision::RollForward => {
            let mut done = Vec::new();
            if let Err((offset, cause)) =
                rewrite(flash, image, &rec, BlockState::New, attempts, &mut done)
            {
                log::error!("{device}: finishing failed at {offset:#x}: {cause}; rolling back");
                if !have_old {
                    return Err(failed((offset, cause)));
                }
                rewrite(flash, image, &rec, BlockState::Old, attempts, &mut done)
                    .map_err(failed)?;
                report.rolled_back_after_failed_finish = true;
            }
            report.blocks_rewritten = done;
        }
        Decision::RollBack => {
            rewrite(
                flash,
                image,
                &rec,
                BlockState::Old,
                attempts,
                &mut report.blocks_rewritten,
            )
            .map_err(failed)?;
        }
    }
    if !report.blocks_rewritten.is_empty() {
        image.sha256 = sha256(&image.bytes);
    }
    report.image_sha256 = image.sha256_hex();
    journal.clear()?;
    log::warn!(
        "{device}: recovery {decision:?} done; {} ranges rewritten; flash SHA-256 {}",
        report.blocks_rewritten.len(),
        report.image_sha256
    );
    Ok(Some(report))
}

/// The same for a caller without a boot image (the CLI): reads the whole
/// flash only when there is a journal.
pub fn recover(
    flash: &mut dyn Flash,
    journal: &mut dyn Journal,
    attempts: u32,
) -> Result<Option<RecoveryReport>, RecoveryError> {
    recover_with(flash, journal, None, attempts)
}

/// [`recover`] with a backup source for digest-only journals.
pub fn recover_with(
    flash: &mut dyn Flash,
    journal: &mut dyn Journal,
    backup: Option<&mut dyn BackupSource>,
    attempts: u32,
) -> Result<Option<RecoveryReport>, RecoveryError> {
    match journal.load() {
        Ok(None) => return Ok(None),
        Ok(Some(_)) | Err(JournalError::Torn { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let mut image = read_image(flash)?;
    recover_image(flash, journal, &mut image, backup, attempts)
}

/// A copy of the original image in a file (an operator fetched it from
/// the org). Like any source, used only if its digest matches the journal.
pub struct FileBackup {
    path: std::path::PathBuf,
}

impl FileBackup {
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        FileBackup { path: path.into() }
    }
}

impl BackupSource for FileBackup {
    fn name(&self) -> String {
        self.path.display().to_string()
    }
    fn fetch(&mut self, _sha256: &[u8; 32], size: u64) -> Result<Vec<u8>, String> {
        let len = std::fs::metadata(&self.path)
            .map_err(|e| e.to_string())?
            .len();
        if len != size {
            return Err(format!("{len:#x} bytes, not {size:#x}"));
        }
        std::fs::read(&self.path).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::flash::file::MemFlash;
    use crate::hw::flash::journal::MemoryJournal;
    use crate::hw::flash::write::tests::{auth, old_image, SIZE};
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

    /// A digest-only store with room for `max` entries, as the TPM NV one.
    #[derive(Default)]
    struct DigestOnly {
        inner: MemoryJournal,
        max: usize,
    }

    impl Journal for DigestOnly {
        fn name(&self) -> String {
            "digest-only journal".into()
        }
        fn keeps_data(&self) -> bool {
            false
        }
        fn max_entries(&self) -> Option<usize> {
            Some(self.max)
        }
        fn load(&mut self) -> Result<Option<JournalRecord>, JournalError> {
            self.inner.load()
        }
        fn store(&mut self, record: &JournalRecord) -> Result<(), JournalError> {
            assert!(record.blocks.len() <= self.max, "the engine coalesces");
            let mut r = record.clone();
            for b in &mut r.blocks {
                b.old = None;
                b.new = None;
            }
            self.inner.store(&r)
        }
        fn clear(&mut self) -> Result<(), JournalError> {
            self.inner.clear()
        }
    }

    struct Backup(Option<Vec<u8>>);

    impl BackupSource for Backup {
        fn name(&self) -> String {
            "test org".into()
        }
        fn fetch(&mut self, _sha256: &[u8; 32], _size: u64) -> Result<Vec<u8>, String> {
            self.0.clone().ok_or_else(|| "org unreachable".to_string())
        }
    }

    /// A digest-only journal of two spans over four runs, cut after `n` writes.
    fn interrupted_digest_only(n: usize) -> (MemFlash, DigestOnly, Vec<u8>, Vec<u8>) {
        let old = old_image();
        let mut new = old.clone();
        for a in [0x2000usize, 0x4000, 0x20000, 0x30000] {
            new[a] ^= 0xFF;
        }
        let mut f = MemFlash::new(old.clone(), 4096);
        f.fail_from_write = Some(n);
        let mut j = DigestOnly {
            max: 2,
            ..Default::default()
        };
        let _ = write_image(
            &mut f,
            &mut j,
            &old,
            &new,
            &auth(&old),
            WriteOptions { attempts: 1 },
        );
        f.fail_from_write = None;
        (f, j, old, new)
    }

    #[test]
    fn digest_only_spans_cover_the_runs() {
        let (_, mut j, old, new) = interrupted_digest_only(1);
        let rec = j.load().unwrap().unwrap();
        let spans: Vec<(u64, u32)> = rec.blocks.iter().map(|b| (b.offset, b.len)).collect();
        assert_eq!(spans, vec![(0x2000, 0x3000), (0x20000, 0x11000)]);
        assert_eq!(rec.blocks[1].old_sha256, sha256(&old[0x20000..0x31000]));
        assert_eq!(rec.blocks[1].new_sha256, sha256(&new[0x20000..0x31000]));
    }

    #[test]
    fn digest_only_torn_write_is_restored_from_a_verified_backup() {
        let (mut f, mut j, old, _new) = interrupted_digest_only(1);
        assert_ne!(f.bytes, old, "the cut left the chip mixed");
        let mut image = read_image(&mut f).unwrap();
        let mut backup = Backup(Some(old.clone()));
        let r = recover_image(&mut f, &mut j, &mut image, Some(&mut backup), 3)
            .unwrap()
            .unwrap();
        assert_eq!(r.decision, Decision::RestoredFromBackup);
        assert_eq!(r.backup.as_deref(), Some("test org"));
        assert_eq!(f.bytes, old);
        assert_eq!(image.bytes, old, "the boot image follows the chip");
        assert_eq!(image.sha256, sha256(&old));
        assert!(j.load().unwrap().is_none());
        // Only blocks that differed from the original were rewritten: none
        // of the unchanged blocks inside the spans.
        for off in &r.blocks_rewritten {
            assert!([0x2000u64, 0x4000].contains(off), "{off:#x}");
        }
    }

    #[test]
    fn digest_only_without_backup_keeps_the_journal_and_writes_nothing() {
        let (mut f, mut j, _old, _new) = interrupted_digest_only(1);
        let before = f.bytes.clone();
        let mut image = read_image(&mut f).unwrap();
        let e = recover_image(&mut f, &mut j, &mut image, None, 3).unwrap_err();
        assert!(matches!(e, RecoveryError::NeedImage { .. }), "{e}");
        let mut unreachable = Backup(None);
        let e = recover_image(&mut f, &mut j, &mut image, Some(&mut unreachable), 3).unwrap_err();
        assert!(e.to_string().contains("org unreachable"), "{e}");
        assert!(e.to_string().contains("journal kept"), "{e}");
        let mut wrong = Backup(Some(vec![0u8; SIZE]));
        let e = recover_image(&mut f, &mut j, &mut image, Some(&mut wrong), 3).unwrap_err();
        assert!(e.to_string().contains("the journal expects"), "{e}");
        assert_eq!(f.bytes, before);
        assert!(j.load().unwrap().is_some(), "journal kept");
    }

    #[test]
    fn digest_only_finished_or_untouched_needs_no_backup() {
        // Every run written, only the journal clear lost.
        let (mut f, mut j, old, new) = interrupted_digest_only(99);
        let rec = {
            let (_, mut jj, _, _) = interrupted_digest_only(1);
            jj.load().unwrap().unwrap()
        };
        j.store(&rec).unwrap();
        assert_eq!(f.bytes, new);
        let mut image = read_image(&mut f).unwrap();
        let r = recover_image(&mut f, &mut j, &mut image, None, 3)
            .unwrap()
            .unwrap();
        assert_eq!(r.decision, Decision::AlreadyComplete);
        assert!(j.load().unwrap().is_none());

        let mut f2 = MemFlash::new(old.clone(), 4096);
        j.store(&rec).unwrap();
        let mut image = read_image(&mut f2).unwrap();
        let r = recover_image(&mut f2, &mut j, &mut image, None, 3)
            .unwrap()
            .unwrap();
        assert_eq!(r.decision, Decision::NothingWritten);
        assert!(f2.erased().is_empty());
    }
}

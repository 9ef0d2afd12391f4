//! The safe write engine. Flash is sacred: this is the only code that erases
//! or writes it, and it does so only when
//!
//! 1. the caller holds a [`WriteAuthorization`]: a verified policy, the
//!    digest of the backup the org holds, and a passed platform check;
//! 2. the old image is exactly the backup (its digest matches) and the chip
//!    still holds it in every block about to change;
//! 3. the descriptor lets the host write every changed block;
//!
//! and then it journals the plan, erases and writes only the changed erase
//! blocks (grouped in runs), reads each run back and compares, retries, and
//! on a run that will not verify restores every run it touched to the
//! original bytes.

use super::access::{AccessError, DescriptorAccess};
use super::journal::{Journal, JournalBlock, JournalError, JournalRecord};
use super::plan::{changed_blocks, coalesce, runs, PlanError};
use super::{sha256, Flash, FlashError};

/// Proof that the org's policy signature was checked. Only the policy
/// verifier should build one (from the verified policy's digest); holding it
/// is what lets the engine write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPolicy {
    policy_sha256: [u8; 32],
}

impl VerifiedPolicy {
    /// To be called by the policy verifier, and only after the org's
    /// signature over the policy (whose digest this is) checked out.
    pub fn after_signature_check(policy_sha256: [u8; 32]) -> Self {
        VerifiedPolicy { policy_sha256 }
    }
    pub fn policy_sha256(&self) -> [u8; 32] {
        self.policy_sha256
    }
}

/// The outcome of the platform check (known chipset, Boot Guard off, ...),
/// done by the caller from the measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformCheck {
    Passed { platform: String },
    Refused { reason: String },
}

/// Everything the engine needs before it may touch the chip.
#[derive(Debug, Clone)]
pub struct WriteAuthorization {
    pub policy: VerifiedPolicy,
    /// SHA-256 of the original image as reported to (and kept by) the org.
    pub backup_sha256: [u8; 32],
    pub platform: PlatformCheck,
    /// The descriptor's master access, from the old image.
    pub access: DescriptorAccess,
}

/// Tuning of the engine.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// How many times a run is erased and written before giving up on it.
    pub attempts: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { attempts: 3 }
    }
}

/// A test knob (docs/flash.md, "Power cut under QEMU"): seconds to wait
/// between the last verified run and the journal clear, so that a test can
/// cut the power exactly there. It reaches PID 1 from the kernel command
/// line (`FORTROS_TEST_PAUSE_BEFORE_JOURNAL_CLEAR=300`: words with `=` and
/// no dot become init's environment). Unset, it costs one getenv.
pub const PAUSE_BEFORE_JOURNAL_CLEAR_ENV: &str = "FORTROS_TEST_PAUSE_BEFORE_JOURNAL_CLEAR";

/// The pause the knob's value asks for: whole seconds, at most 10 minutes;
/// anything else is no pause.
pub fn pause_before_journal_clear(value: Option<&str>) -> Option<std::time::Duration> {
    let secs: u64 = value?.trim().parse().ok()?;
    (secs > 0).then(|| std::time::Duration::from_secs(secs.min(600)))
}

/// What a finished write did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WriteReport {
    pub device: String,
    pub block_size: u32,
    /// Offsets of the erase blocks written, ascending.
    pub blocks_written: Vec<u64>,
    /// Runs of adjacent blocks written together: (offset, length).
    pub runs: Vec<(u64, u64)>,
    /// Total erase+write attempts over all runs (equals runs.len() when no retry was needed).
    pub attempts: u32,
    pub old_sha256: String,
    pub new_sha256: String,
}

/// Why nothing was written, or what happened when writing failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("refused: platform check failed: {0}")]
    PlatformRefused(String),
    #[error("refused: the image to replace has SHA-256 {actual}, not the backup's {expected}")]
    BackupMismatch { expected: String, actual: String },
    #[error("refused: {device} is {flash:#x} bytes, the old image {old:#x}")]
    SizeMismatch {
        device: String,
        flash: u64,
        old: u64,
    },
    #[error("refused: {0}")]
    Plan(#[from] PlanError),
    #[error("refused: {0}")]
    Access(#[from] AccessError),
    #[error("refused: {device} no longer holds the old image at {offset:#x} (changed since it was read)")]
    FlashChanged { device: String, offset: u64 },
    #[error("refused: could not record the write journal: {0}")]
    Journal(#[from] JournalError),
    #[error("refused: {0}")]
    Flash(FlashError),
    #[error(
        "write failed at {offset:#x} ({cause}); the original bytes were restored and verified"
    )]
    FailedRestored { offset: u64, cause: String },
    #[error(
        "write failed at {offset:#x} ({cause}) and restoring failed at {restore_offset:#x} \
         ({restore_cause}); the journal is kept so the next boot retries"
    )]
    FailedNotRestored {
        offset: u64,
        cause: String,
        restore_offset: u64,
        restore_cause: String,
    },
}

/// Erases and writes `data` at `offset`, reads it back, compares; up to
/// `attempts` times. Returns the attempts used, or the last failure.
pub(crate) fn write_verified(
    flash: &mut dyn Flash,
    offset: u64,
    data: &[u8],
    attempts: u32,
) -> Result<u32, String> {
    let mut back = vec![0u8; data.len()];
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        match flash
            .erase_and_write(offset, data)
            .and_then(|()| flash.read(offset, &mut back))
        {
            Ok(()) if back == data => return Ok(attempt),
            Ok(()) => {
                let first = back.iter().zip(data).position(|(a, b)| a != b).unwrap_or(0);
                last = format!("read-back differs at {:#x}", offset + first as u64);
            }
            Err(e) => last = e.to_string(),
        }
        log::warn!(
            "{}: run {offset:#x}+{:#x}, attempt {attempt}: {last}",
            flash.name(),
            data.len()
        );
    }
    Err(last)
}

fn slice(bytes: &[u8], offset: u64, len: u64) -> &[u8] {
    bytes
        .get(offset as usize..(offset + len) as usize)
        .unwrap_or_default()
}

/// Replaces `old` (the image read at boot) by `new` on `flash`, under the
/// rules in the module docs. Identical images write nothing.
pub fn write_image(
    flash: &mut dyn Flash,
    journal: &mut dyn Journal,
    old: &[u8],
    new: &[u8],
    auth: &WriteAuthorization,
    options: WriteOptions,
) -> Result<WriteReport, WriteError> {
    let device = flash.name();
    if let PlatformCheck::Refused { reason } = &auth.platform {
        return Err(WriteError::PlatformRefused(reason.clone()));
    }
    let old_sha = sha256(old);
    if old_sha != auth.backup_sha256 {
        return Err(WriteError::BackupMismatch {
            expected: hex::encode(auth.backup_sha256),
            actual: hex::encode(old_sha),
        });
    }
    if flash.size() != old.len() as u64 {
        return Err(WriteError::SizeMismatch {
            device,
            flash: flash.size(),
            old: old.len() as u64,
        });
    }
    let block = flash.erase_block_size();
    let blocks = changed_blocks(old, new, block)?;
    for b in &blocks {
        auth.access.check_write(b.offset, u64::from(b.len))?;
    }
    let runs = runs(&blocks);
    let mut report = WriteReport {
        device: device.clone(),
        block_size: block,
        blocks_written: blocks.iter().map(|b| b.offset).collect(),
        runs: runs.clone(),
        attempts: 0,
        old_sha256: hex::encode(old_sha),
        new_sha256: hex::encode(sha256(new)),
    };
    if blocks.is_empty() {
        log::info!("{device}: new image equals the flash; nothing to write");
        return Ok(report);
    }

    // The chip must still hold what we were authorised to replace.
    for &(offset, len) in &runs {
        let mut now = vec![0u8; len as usize];
        flash.read(offset, &mut now).map_err(WriteError::Flash)?;
        if now != slice(old, offset, len) {
            let first = now
                .iter()
                .zip(slice(old, offset, len))
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(WriteError::FlashChanged {
                device,
                offset: offset + first as u64,
            });
        }
    }

    // The journal names runs (or, for a small store, spans of runs).
    let keep = journal.keeps_data();
    let entries = match journal.max_entries() {
        Some(max) => coalesce(&runs, max),
        None => runs.clone(),
    };
    let mut journal_entries = Vec::with_capacity(entries.len());
    for &(offset, len) in &entries {
        let o = slice(old, offset, len);
        let n = slice(new, offset, len);
        journal_entries.push(JournalBlock {
            offset,
            len: u32::try_from(len).map_err(|_| {
                WriteError::Journal(JournalError::Store {
                    store: journal.name(),
                    what: format!("span {offset:#x}+{len:#x} is longer than 4 GiB"),
                })
            })?,
            old_sha256: sha256(o),
            new_sha256: sha256(n),
            old: keep.then(|| o.to_vec()),
            new: keep.then(|| n.to_vec()),
        });
    }
    journal.store(&JournalRecord {
        device_size: old.len() as u64,
        block_size: block,
        old_image_sha256: old_sha,
        new_image_sha256: sha256(new),
        blocks: journal_entries,
    })?;
    log::info!(
        "{device}: writing {} changed blocks of {block:#x} in {} runs (journal: {})",
        blocks.len(),
        runs.len(),
        journal.name()
    );

    for (i, &(offset, len)) in runs.iter().enumerate() {
        match write_verified(flash, offset, slice(new, offset, len), options.attempts) {
            Ok(n) => {
                report.attempts += n;
                log::info!(
                    "{device}: run {}/{} at {offset:#x}+{len:#x} written and verified",
                    i + 1,
                    runs.len()
                );
            }
            Err(cause) => {
                log::error!("{device}: run at {offset:#x} failed: {cause}; restoring");
                // Restore every run touched so far, this one included.
                for &(r_off, r_len) in runs.get(..=i).unwrap_or_default() {
                    if let Err(restore_cause) =
                        write_verified(flash, r_off, slice(old, r_off, r_len), options.attempts)
                    {
                        return Err(WriteError::FailedNotRestored {
                            offset,
                            cause,
                            restore_offset: r_off,
                            restore_cause,
                        });
                    }
                }
                journal.clear()?;
                return Err(WriteError::FailedRestored { offset, cause });
            }
        }
    }
    let knob = std::env::var(PAUSE_BEFORE_JOURNAL_CLEAR_ENV).ok();
    if let Some(pause) = pause_before_journal_clear(knob.as_deref()) {
        log::warn!(
            "{device}: all runs verified; pausing {} s before clearing the journal \
             ({PAUSE_BEFORE_JOURNAL_CLEAR_ENV}, a test knob)",
            pause.as_secs()
        );
        std::thread::sleep(pause);
    }
    journal.clear()?;
    log::info!(
        "{device}: write verified, new SHA-256 {}",
        report.new_sha256
    );
    Ok(report)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hw::flash::access::{IfdVersion, RegionSpan};
    use crate::hw::flash::file::MemFlash;
    use crate::hw::flash::journal::MemoryJournal;

    pub(crate) const SIZE: usize = 256 * 1024;

    pub(crate) fn old_image() -> Vec<u8> {
        (0..SIZE).map(|i| (i % 251) as u8).collect()
    }

    pub(crate) fn open_access() -> DescriptorAccess {
        DescriptorAccess {
            version: IfdVersion::V2,
            flmstr1: 0xFFFF_FFFF,
            regions: vec![
                RegionSpan {
                    index: 0,
                    base: 0,
                    limit: 0xFFF,
                },
                RegionSpan {
                    index: 2,
                    base: 0x1000,
                    limit: 0x1_FFFF,
                },
                RegionSpan {
                    index: 1,
                    base: 0x2_0000,
                    limit: SIZE as u64 - 1,
                },
            ],
            extended_regions: false,
        }
    }

    /// The engine with a full authorization for `old` and default options.
    fn write(
        f: &mut MemFlash,
        j: &mut MemoryJournal,
        old: &[u8],
        new: &[u8],
    ) -> Result<WriteReport, WriteError> {
        write_image(f, j, old, new, &auth(old), WriteOptions::default())
    }

    pub(crate) fn auth(old: &[u8]) -> WriteAuthorization {
        WriteAuthorization {
            policy: VerifiedPolicy::after_signature_check([9; 32]),
            backup_sha256: sha256(old),
            platform: PlatformCheck::Passed {
                platform: "test".into(),
            },
            access: open_access(),
        }
    }

    fn changed(old: &[u8], at: &[usize]) -> Vec<u8> {
        let mut n = old.to_vec();
        for &a in at {
            n[a] ^= 0xFF;
        }
        n
    }

    #[test]
    fn writes_only_changed_blocks_and_clears_the_journal() {
        let old = old_image();
        let new = changed(&old, &[0x1000 + 5, 0x2000 + 9, 0x9000]);
        let mut f = MemFlash::new(old.clone(), 4096);
        let mut j = MemoryJournal::default();
        let r = write(&mut f, &mut j, &old, &new).unwrap();
        assert_eq!(f.bytes, new);
        assert_eq!(r.blocks_written, vec![0x1000, 0x2000, 0x9000]);
        assert_eq!(r.runs, vec![(0x1000, 0x2000), (0x9000, 0x1000)]);
        assert_eq!(f.erased(), vec![0x1000, 0x9000]);
        assert_eq!(r.attempts, 2);
        assert!(j.bytes.is_none());
    }

    #[test]
    fn identical_image_touches_nothing() {
        let old = old_image();
        let mut f = MemFlash::new(old.clone(), 4096);
        let mut j = MemoryJournal::default();
        let r = write_image(
            &mut f,
            &mut j,
            &old,
            &old,
            &auth(&old),
            WriteOptions::default(),
        )
        .unwrap();
        assert!(r.blocks_written.is_empty());
        assert!(f.erased().is_empty());
        assert!(f.log.iter().all(|(op, _, _)| *op == "read"));
    }

    #[test]
    fn refusals_write_nothing() {
        let old = old_image();
        let new = changed(&old, &[0x3000]);
        let cases: Vec<(WriteAuthorization, &str)> = vec![
            (
                WriteAuthorization {
                    platform: PlatformCheck::Refused {
                        reason: "Boot Guard enabled".into(),
                    },
                    ..auth(&old)
                },
                "Boot Guard",
            ),
            (
                WriteAuthorization {
                    backup_sha256: [0; 32],
                    ..auth(&old)
                },
                "not the backup",
            ),
            (
                WriteAuthorization {
                    access: DescriptorAccess {
                        flmstr1: 1 << 21,
                        ..open_access()
                    },
                    ..auth(&old)
                },
                "region 2 (ME)",
            ),
        ];
        for (a, needle) in cases {
            let mut f = MemFlash::new(old.clone(), 4096);
            let mut j = MemoryJournal::default();
            let e =
                write_image(&mut f, &mut j, &old, &new, &a, WriteOptions::default()).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
            assert_eq!(f.bytes, old);
            assert!(f.erased().is_empty());
            assert!(j.bytes.is_none(), "no journal for a refused write");
        }
    }

    #[test]
    fn refuses_when_the_chip_changed_since_it_was_read() {
        let old = old_image();
        let new = changed(&old, &[0x3000]);
        let mut on_chip = old.clone();
        on_chip[0x3010] = 0;
        let mut f = MemFlash::new(on_chip.clone(), 4096);
        let mut j = MemoryJournal::default();
        let e = write(&mut f, &mut j, &old, &new).unwrap_err();
        assert!(
            matches!(e, WriteError::FlashChanged { offset: 0x3010, .. }),
            "{e}"
        );
        assert_eq!(f.bytes, on_chip);
    }

    #[test]
    fn a_bad_write_is_retried() {
        let old = old_image();
        let new = changed(&old, &[0x5000]);
        let mut f = MemFlash::new(old.clone(), 4096);
        f.corrupt_writes = vec![(0x5000, 1)];
        let mut j = MemoryJournal::default();
        let r = write(&mut f, &mut j, &old, &new).unwrap();
        assert_eq!(r.attempts, 2);
        assert_eq!(f.bytes, new);
    }

    #[test]
    fn a_run_that_never_verifies_is_restored() {
        let old = old_image();
        let new = changed(&old, &[0x2000, 0x8000]);
        let mut f = MemFlash::new(old.clone(), 4096);
        // The second run (0x8000) fails 3 times; the first was already written.
        f.corrupt_writes = vec![(0x8000, 3)];
        let mut j = MemoryJournal::default();
        let e = write(&mut f, &mut j, &old, &new).unwrap_err();
        assert!(
            matches!(e, WriteError::FailedRestored { offset: 0x8000, .. }),
            "{e}"
        );
        assert_eq!(f.bytes, old, "original bytes restored");
        assert!(j.bytes.is_none());
    }

    #[test]
    fn when_restore_fails_too_the_journal_stays() {
        let old = old_image();
        let new = changed(&old, &[0x2000]);
        let mut f = MemFlash::new(old.clone(), 4096);
        f.fail_from_write = Some(0);
        let mut j = MemoryJournal::default();
        let e = write(&mut f, &mut j, &old, &new).unwrap_err();
        assert!(matches!(e, WriteError::FailedNotRestored { .. }), "{e}");
        let rec = j.load().unwrap().expect("journal kept");
        assert_eq!(rec.blocks.len(), 1);
        assert_eq!(rec.blocks[0].offset, 0x2000);
    }

    #[test]
    fn the_test_pause_knob_is_whole_seconds_capped_else_off() {
        use std::time::Duration;
        assert_eq!(pause_before_journal_clear(None), None);
        assert_eq!(
            pause_before_journal_clear(Some("30")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            pause_before_journal_clear(Some("99999")),
            Some(Duration::from_secs(600))
        );
        for off in ["0", "", "-1", "1.5", "yes"] {
            assert_eq!(pause_before_journal_clear(Some(off)), None, "{off:?}");
        }
    }

    #[test]
    fn bigger_erase_blocks_write_whole_blocks() {
        let old = old_image();
        let new = changed(&old, &[0x2_0001]);
        let mut f = MemFlash::new(old.clone(), 65536);
        let mut j = MemoryJournal::default();
        let r = write(&mut f, &mut j, &old, &new).unwrap();
        assert_eq!(r.blocks_written, vec![0x2_0000]);
        assert_eq!(f.erased(), vec![0x2_0000]);
        assert_eq!(f.bytes, new);
    }
}

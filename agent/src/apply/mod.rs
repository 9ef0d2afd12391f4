//! Applying a verified org policy on the node. Today: `neutralize`
//! (`ignore` is a no-op; `use` is not built here).
//!
//! [`neutralize_on_node`] is the whole sequence, free of I/O details: it
//! takes the flash, the journal and the backup store as traits, so unit
//! tests run it on images in memory and the node runs it on `/dev/mtd0`.
//!
//! 1. **platform check** ([`check`]): full image, known platform, known
//!    disable strap, no Boot Guard verified boot for a strip, the live ME
//!    consistent with the image;
//! 2. **new image** from [`crate::image::neutralize`] (its own refusals:
//!    Boot Guard manifests, corrupted or unsupported firmware); identical to
//!    the flash → "already neutralized", nothing written;
//! 3. **master access**: every changed erase block must lie in a region the
//!    descriptor lets the host write (after end of POST the ME cannot be
//!    asked to open its region — HMRFPO is gone — so a locked region would
//!    fail half-way);
//! 4. **backup**: the original image goes to the org before any write; the
//!    write carries the SHA-256 the org acknowledged;
//! 5. **write** through the safe engine ([`crate::hw::flash::write`]):
//!    journal, changed blocks only, read-back, retry, restore on failure;
//! 6. **record** ([`ApplyRecord`]): what was planned, blocks and runs
//!    written, old/new SHA-256, outcome — for the report and the console.

pub mod backup;
pub mod check;

pub use backup::{BackupStore, MemoryBackup, OrgBackup};
pub use check::LiveFacts;

use crate::hw::flash::access::DescriptorAccess;
use crate::hw::flash::journal::Journal;
use crate::hw::flash::plan::changed_blocks;
use crate::hw::flash::write::{
    write_image, PlatformCheck, VerifiedPolicy, WriteAuthorization, WriteError, WriteOptions,
};
use crate::hw::flash::{Flash, FlashImage};
use crate::image::inspect::inspect;
use crate::image::neutralize::{self, Mode, NeutralizeError, Options};
use fortros_wire::policy::NeutralizeMode;
use fortros_wire::report::{ActionTaken, Extension, Outcome};
use serde::Serialize;

/// Report extension tag of an [`ApplyRecord`] (UTF-8 JSON); see
/// docs/report-format.md.
pub const APPLY_RECORD_TAG: u32 = 2;

/// How the apply step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ApplyOutcome {
    /// The new image is on the flash, verified.
    Written,
    /// The flash already holds what the policy asks for; nothing written.
    AlreadyNeutralized,
    /// Not attempted: unsafe or impossible. Nothing was written.
    Refused { reason: String },
    /// Attempted and failed; `restored`: the original bytes are back.
    Failed { reason: String, restored: bool },
}

/// What the apply step did, for the report and the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyRecord {
    /// "neutralize:disable-bit" or "neutralize:strip+disable-bit".
    pub action: String,
    /// The transform's steps, in words (from the neutralize plan).
    pub planned: Vec<String>,
    /// Steps not taken, with why.
    pub skipped: Vec<String>,
    /// Platform-check notes that did not stop the write.
    pub notes: Vec<String>,
    pub platform: Option<String>,
    pub firmware: Option<String>,
    /// `inspect`'s state of the flash before, and of the new image.
    pub state_before: Option<String>,
    pub state_after: Option<String>,
    pub old_sha256: String,
    pub new_sha256: Option<String>,
    /// The digest the org acknowledged for the backup.
    pub backup_sha256: Option<String>,
    pub block_size: u32,
    /// Erase blocks written (ascending offsets), and as runs (offset, len).
    pub blocks_written: Vec<u64>,
    pub runs: Vec<(u64, u64)>,
    /// Erase+write attempts over all runs.
    pub attempts: u32,
    pub outcome: ApplyOutcome,
}

impl ApplyRecord {
    fn new(mode: NeutralizeMode, image: &FlashImage, block_size: u32) -> Self {
        ApplyRecord {
            action: action_name(mode).into(),
            planned: Vec::new(),
            skipped: Vec::new(),
            notes: Vec::new(),
            platform: None,
            firmware: None,
            state_before: None,
            state_after: None,
            old_sha256: image.sha256_hex(),
            new_sha256: None,
            backup_sha256: None,
            block_size,
            blocks_written: Vec::new(),
            runs: Vec::new(),
            attempts: 0,
            outcome: ApplyOutcome::Refused {
                reason: String::new(),
            },
        }
    }

    fn refused(mut self, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        log::warn!("{}: refused: {reason}", self.action);
        self.outcome = ApplyOutcome::Refused { reason };
        self
    }

    /// The wire report's entry: outcome plus a one-line summary.
    pub fn action_taken(&self) -> ActionTaken {
        let (outcome, detail) = match &self.outcome {
            ApplyOutcome::Written => (
                Outcome::Done,
                format!(
                    "wrote {} erase block(s) of {:#x} in {} run(s); flash {} -> {}; backup {} at the org",
                    self.blocks_written.len(),
                    self.block_size,
                    self.runs.len(),
                    self.old_sha256,
                    self.new_sha256.as_deref().unwrap_or("?"),
                    self.backup_sha256.as_deref().unwrap_or("?"),
                ),
            ),
            ApplyOutcome::AlreadyNeutralized => (
                Outcome::Done,
                format!(
                    "already neutralized: nothing written; flash {}",
                    self.old_sha256
                ),
            ),
            ApplyOutcome::Refused { reason } => (
                Outcome::Refused {
                    reason: reason.clone(),
                },
                format!("nothing written; flash {}", self.old_sha256),
            ),
            ApplyOutcome::Failed { reason, restored } => (
                Outcome::Failed {
                    reason: reason.clone(),
                    restored: *restored,
                },
                format!(
                    "flash was {}; {}",
                    self.old_sha256,
                    if *restored {
                        "original bytes restored and verified"
                    } else {
                        "journal kept: the next boot finishes or rolls back"
                    }
                ),
            ),
        };
        ActionTaken {
            action: self.action.clone(),
            outcome,
            detail: Some(detail),
        }
    }

    /// The whole record as a report extension (UTF-8 JSON).
    pub fn extension(&self) -> Option<Extension> {
        serde_json::to_vec(self).ok().map(|data| Extension {
            tag: APPLY_RECORD_TAG,
            data: fortros_wire::Bytes(data),
        })
    }
}

/// The report's name for a mode.
pub fn action_name(mode: NeutralizeMode) -> &'static str {
    match mode {
        NeutralizeMode::DisableBit => "neutralize:disable-bit",
        NeutralizeMode::DisableBitAndStrip => "neutralize:strip+disable-bit",
    }
}

/// The record of a neutralize that could not start: no flash, or no
/// journal to write with.
pub fn refused_without_flash(mode: NeutralizeMode, why: &str) -> ApplyRecord {
    let mut rec = ApplyRecord::new(
        mode,
        &FlashImage {
            bytes: Vec::new(),
            sha256: [0; 32],
        },
        0,
    );
    rec.old_sha256 = String::new();
    rec.refused(why.to_string())
}

/// What one neutralize needs besides the devices.
pub struct Request<'a> {
    pub mode: NeutralizeMode,
    /// Proof the org's policy signature was checked.
    pub policy: VerifiedPolicy,
    /// The flash as read at this boot, with its digest.
    pub image: &'a FlashImage,
    pub live: &'a LiveFacts,
    /// Set when this boot must not write the flash (an interrupted write
    /// could not be recovered, the flash could not be read ...).
    pub write_blocked: Option<&'a str>,
    pub write: WriteOptions,
}

/// Neutralizes the ME on `flash` as the verified policy asks. Never
/// panics; every path ends in a record saying what happened.
pub fn neutralize_on_node(
    req: &Request<'_>,
    flash: &mut dyn Flash,
    journal: &mut dyn Journal,
    backup: &mut dyn BackupStore,
) -> ApplyRecord {
    let old = &req.image.bytes;
    let mut rec = ApplyRecord::new(req.mode, req.image, flash.erase_block_size());
    if let Some(why) = req.write_blocked {
        return rec.refused(format!("the flash must not be written at this boot: {why}"));
    }

    // 1. Platform check.
    let report = match inspect(old) {
        Ok(r) => r,
        Err(e) => return rec.refused(format!("the flash is not an image we can read: {e}")),
    };
    rec.state_before = Some(report.state.name().to_string());
    let passed = match check::platform_check(&report, req.mode, req.live) {
        Ok(p) => p,
        Err(reason) => return rec.refused(format!("platform check: {reason}")),
    };
    rec.platform = Some(passed.platform.clone());
    rec.notes = passed.notes;

    // 2. The new image.
    let options = Options {
        mode: match req.mode {
            NeutralizeMode::DisableBit => Mode::Disable,
            NeutralizeMode::DisableBitAndStrip => Mode::StripAndDisable,
        },
        ..Options::default()
    };
    let outcome = match neutralize::neutralize(old, &options) {
        Ok(o) => o,
        Err(NeutralizeError::CheckFailed(why)) => {
            rec.outcome = ApplyOutcome::Failed {
                reason: format!("the new image failed its re-check, nothing written: {why}"),
                restored: true,
            };
            return rec;
        }
        Err(e) => return rec.refused(e.to_string()),
    };
    let plan = &outcome.plan;
    rec.planned = plan.actions.clone();
    rec.skipped = plan.skipped.clone();
    rec.firmware = plan.target.firmware.clone();
    rec.state_after = Some(plan.result_state.clone());
    let new = &outcome.image;
    rec.new_sha256 = Some(hex::encode(crate::hw::flash::sha256(new)));
    if outcome.unchanged() {
        log::info!("{}: already neutralized, nothing to write", rec.action);
        rec.outcome = ApplyOutcome::AlreadyNeutralized;
        return rec;
    }

    // 3. The host must be able to write every changed block.
    let access = match report
        .descriptor
        .as_ref()
        .ok_or_else(|| "no descriptor".to_string())
        .and_then(|d| DescriptorAccess::from_descriptor(d).map_err(|e| e.to_string()))
    {
        Ok(a) => a,
        Err(e) => return rec.refused(format!("descriptor access: {e}")),
    };
    let blocks = match changed_blocks(old, new, flash.erase_block_size()) {
        Ok(b) => b,
        Err(e) => return rec.refused(e.to_string()),
    };
    for b in &blocks {
        if let Err(e) = access.check_write(b.offset, u64::from(b.len)) {
            return rec.refused(format!(
                "{e}. After end of POST the ME can no longer be asked to open its region \
                 (HMRFPO), so this write would fail half-way; unlock the descriptor with an \
                 external programmer or a BIOS that leaves the region writable"
            ));
        }
    }

    // 4. The original image to the org, before any write.
    let acked = match backup.upload(old, req.image.sha256) {
        Ok(sha) => sha,
        Err(e) => return rec.refused(format!("the org did not take the backup: {e}")),
    };
    rec.backup_sha256 = Some(hex::encode(acked));
    if acked != req.image.sha256 {
        return rec.refused(format!(
            "the org acknowledged backup {} but the flash is {}",
            hex::encode(acked),
            req.image.sha256_hex()
        ));
    }

    // 5. The write.
    let auth = WriteAuthorization {
        policy: req.policy.clone(),
        backup_sha256: acked,
        platform: PlatformCheck::Passed {
            platform: passed.platform,
        },
        access,
    };
    match write_image(flash, journal, old, new, &auth, req.write) {
        Ok(w) => {
            rec.blocks_written = w.blocks_written;
            rec.runs = w.runs;
            rec.attempts = w.attempts;
            rec.outcome = ApplyOutcome::Written;
            log::info!(
                "{}: wrote {} block(s) in {} run(s), flash now {}",
                rec.action,
                rec.blocks_written.len(),
                rec.runs.len(),
                rec.new_sha256.as_deref().unwrap_or("?")
            );
        }
        Err(e @ WriteError::FailedRestored { .. }) => {
            rec.outcome = ApplyOutcome::Failed {
                reason: e.to_string(),
                restored: true,
            }
        }
        Err(e @ WriteError::FailedNotRestored { .. }) => {
            rec.outcome = ApplyOutcome::Failed {
                reason: e.to_string(),
                restored: false,
            }
        }
        Err(e) => return rec.refused(e.to_string()),
    }
    rec
}

#[cfg(test)]
mod tests;

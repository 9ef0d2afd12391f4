//! The agent as `/init` (PID 1): the boot sequence and the failure policy.
//!
//! 1. mount proc, sys, devtmpfs, /tmp, /run;
//! 2. log to /dev/kmsg and the console;
//! 3. read the config;
//! 4. load the configured kernel modules (with their dependencies);
//! 5. open the flash, read the whole flash once (hashing while reading),
//!    check the write journal (TPM NV or file) against that image: finish,
//!    roll back, or clear it;
//! 6. bring the network up (DHCP); if the journal is digest-only and the
//!    chip was left mixed, fetch the original image from the org's backup,
//!    verify it and restore (until then, and if that fails, no flash write
//!    at this boot);
//! 7. run the agent's work (measure, enroll, apply policy): a hook, so the
//!    enrollment code plugs in here;
//! 8. hand off (kexec, switch_root, or power off).
//!
//! A failure in steps 3–7 is printed on the console as one clear line. The
//! failure policy (`[failure]`) decides per kind of failure — boot steps,
//! enrollment, policy application: with `continue` the OS still boots; with
//! `stop` the message stays on the console for `stop_hold_seconds`, then the
//! machine powers off without booting it (no reboot loop). Either way the
//! flash is never left half-written: the write engine restores or keeps its
//! journal, and the next boot's step 5 finishes the job. PID 1 never exits
//! (the kernel would panic).

use super::config::{Config, Failure, FailurePolicy, JournalChoice, CONFIG_PATH};
use super::{handoff, logging, modules, mounts, network};
use crate::hw::flash::journal::{FileJournal, Journal};
use crate::hw::flash::nv_journal::NvJournal;
use crate::hw::flash::recovery::{recover_image, BackupSource, RecoveryError, RecoveryReport};
use crate::hw::flash::{open_spec, read_image, Flash, FlashImage};
use crate::hw::tpm::{DeviceTransport, Tpm};

/// What the agent's work gets from the boot sequence.
pub struct BootContext {
    pub config: Config,
    /// The flash, if it could be opened.
    pub flash: Option<Box<dyn Flash>>,
    /// The whole flash as read at this boot, with its SHA-256.
    pub image: Option<FlashImage>,
    /// What journal recovery did at this boot, if a write had been interrupted.
    pub recovery: Option<RecoveryReport>,
    /// The write journal ([flash] journal), for recovery and for writes.
    pub journal: Option<Box<dyn Journal>>,
    /// Set when the journal is digest-only and the chip was left mixed:
    /// recovery waits for the org's backup (after the network is up).
    pub recovery_needs_backup: bool,
    /// Set when the flash must not be written at this boot (recovery could
    /// not make it consistent, or it could not be read): the reason.
    pub flash_write_blocked: Option<String>,
    /// Failures of the boot steps so far (modules, flash), one line each:
    /// `[failure] policy` decides.
    pub failures: Vec<String>,
    /// Enrollment failed or was impossible (network, org, TPM): decided by
    /// `[failure] on_enroll_failure`.
    pub enroll_failures: Vec<String>,
    /// Policy actions that failed or were refused: decided by
    /// `[failure] on_apply_failure`.
    pub apply_failures: Vec<String>,
}

/// What PID 1 does after its work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    HandOff,
    /// Do not boot the OS: power off, with this reason on the console.
    Stop(String),
}

/// The failure policy as a pure decision: the first kind of failure whose
/// policy is `stop` stops the boot; otherwise the OS boots.
pub fn next_step(cfg: &Failure, boot: &[String], enroll: &[String], apply: &[String]) -> Next {
    let kinds = [
        ("boot", "policy", cfg.policy, boot),
        ("enrollment", "on_enroll_failure", cfg.on_enroll(), enroll),
        (
            "policy application",
            "on_apply_failure",
            cfg.on_apply(),
            apply,
        ),
    ];
    for (kind, key, policy, list) in kinds {
        if let (FailurePolicy::Stop, Some(first)) = (policy, list.first()) {
            return Next::Stop(format!(
                "{} {kind} failure(s), first: {first}; the org's failure policy \
                 ([failure] {key}) is stop",
                list.len()
            ));
        }
    }
    Next::HandOff
}

/// Prints a line on the console even if logging is not up.
fn say(line: &str) {
    log::error!("{line}");
    if !log::log_enabled!(log::Level::Error) {
        eprintln!("fortros: {line}");
    }
}

/// Opens the configured journal: the TPM NV index (default with a TPM), a
/// file, or none.
fn open_journal(config: &Config) -> Result<Option<Box<dyn Journal>>, String> {
    let tpm_present = std::path::Path::new(super::work::TPM_DEVICE).exists();
    match config.flash.journal_choice(tpm_present) {
        JournalChoice::TpmNv => {
            let t = DeviceTransport::open(super::work::TPM_DEVICE)
                .map_err(|e| format!("flash journal: {e}"))?;
            let j = NvJournal::open(Tpm::new(t)).map_err(|e| format!("flash journal: {e}"))?;
            Ok(Some(Box::new(j)))
        }
        JournalChoice::File(path) => Ok(Some(Box::new(FileJournal::new(path)))),
        JournalChoice::None => {
            log::warn!("no TPM and no [flash] journal: flash writes are not journaled");
            Ok(None)
        }
    }
}

/// Step 5: the one full read, then the journal checked against it.
fn flash_step(ctx: &mut BootContext) {
    let spec = ctx.config.flash.device.clone();
    let mut flash = match open_spec(&spec) {
        Ok(f) => f,
        Err(e) => {
            ctx.failures.push(format!("flash {spec}: {e}"));
            ctx.flash_write_blocked = Some("flash could not be opened".into());
            return;
        }
    };
    match read_image(flash.as_mut()) {
        Ok(img) => {
            log::info!("flash {}: SHA-256 {}", flash.name(), img.sha256_hex());
            ctx.image = Some(img);
        }
        Err(e) => {
            ctx.failures.push(format!("flash read: {e}"));
            ctx.flash_write_blocked = Some("flash could not be read".into());
        }
    }
    match open_journal(&ctx.config) {
        Ok(j) => ctx.journal = j,
        Err(e) => {
            ctx.failures.push(e.clone());
            ctx.flash_write_blocked = Some(e);
        }
    }
    ctx.flash = Some(flash);
    recovery_step(ctx, None);
}

/// Checks the journal against the boot image; with `backup`, restores a
/// mixed chip from it. A digest-only journal over a mixed chip without a
/// backup leaves `recovery_needs_backup` set and flash writes blocked.
fn recovery_step(ctx: &mut BootContext, backup: Option<&mut dyn BackupSource>) {
    let (Some(flash), Some(journal), Some(image)) =
        (ctx.flash.as_mut(), ctx.journal.as_mut(), ctx.image.as_mut())
    else {
        return;
    };
    let had_backup = backup.is_some();
    match recover_image(flash.as_mut(), journal.as_mut(), image, backup, 3) {
        Ok(r) => {
            if let Some(r) = &r {
                say(&format!(
                    "flash recovery: {:?} ({} ranges rewritten), flash SHA-256 {}",
                    r.decision,
                    r.blocks_rewritten.len(),
                    r.image_sha256
                ));
            }
            ctx.recovery = r;
            if ctx.recovery_needs_backup {
                ctx.recovery_needs_backup = false;
                ctx.flash_write_blocked = None;
            }
        }
        Err(e @ RecoveryError::NeedImage { .. }) if !had_backup => {
            say(&format!("flash recovery: {e}"));
            ctx.recovery_needs_backup = true;
            ctx.flash_write_blocked = Some(e.to_string());
        }
        Err(e) => {
            ctx.failures.push(format!("flash recovery: {e}"));
            ctx.flash_write_blocked = Some(e.to_string());
        }
    }
}

/// Step 6b: the org's backup for a digest-only journal over a mixed chip.
fn backup_recovery_step(ctx: &mut BootContext) {
    if !ctx.recovery_needs_backup {
        return;
    }
    match super::work::org_backup_source(&ctx.config) {
        Ok(mut source) => recovery_step(ctx, Some(source.as_mut())),
        Err(e) => {
            let line = format!(
                "flash recovery: the original image is needed from the org but {e}; \
                 journal kept, no flash write this boot"
            );
            ctx.failures.push(line);
        }
    }
}

/// Runs the boot sequence with `work` as step 7. Never returns.
pub fn run(work: &mut dyn FnMut(&mut BootContext) -> Result<(), String>) -> ! {
    let mount_result = mounts::mount_early();
    mounts::ensure_console();
    logging::init(log::LevelFilter::Info);
    if let Err(e) = mount_result {
        say(&format!("early mounts: {e}"));
    }
    log::info!("FortrOS agent {} as PID 1", env!("CARGO_PKG_VERSION"));

    let config = match Config::load(CONFIG_PATH) {
        Ok(c) => c,
        Err(e) => {
            say(&format!(
                "config: {e}; cannot enroll or hand off: powering off"
            ));
            let e = handoff::power_off();
            say(&e.to_string());
            halt_forever();
        }
    };
    let mut ctx = BootContext {
        config,
        flash: None,
        image: None,
        recovery: None,
        journal: None,
        recovery_needs_backup: false,
        flash_write_blocked: None,
        failures: Vec::new(),
        enroll_failures: Vec::new(),
        apply_failures: Vec::new(),
    };

    let wanted: Vec<(String, String)> = ctx
        .config
        .modules
        .iter()
        .map(|m| (m.name.clone(), m.params.clone()))
        .collect();
    if !wanted.is_empty() {
        if let Err(e) = modules::load_all(&modules::modules_dir(), &wanted) {
            ctx.failures.push(format!("modules: {e}"));
        }
    }
    flash_step(&mut ctx);
    if let Some(net) = ctx.config.network.clone() {
        // The network is there to reach the org: without it, no enrollment.
        if let Err(e) = network::bring_up("busybox", &net.interface) {
            ctx.enroll_failures.push(format!("network: {e}"));
        }
    }
    backup_recovery_step(&mut ctx);
    if let Err(e) = work(&mut ctx) {
        ctx.failures.push(e);
    }
    let all = ctx
        .failures
        .iter()
        .chain(&ctx.enroll_failures)
        .chain(&ctx.apply_failures);
    let count = all.clone().count();
    for f in all {
        say(&format!("FAILED: {f}"));
    }
    // Close the flash (block2mtd syncs on close) before leaving.
    drop(ctx.flash.take());
    let failure = &ctx.config.failure;
    match next_step(
        failure,
        &ctx.failures,
        &ctx.enroll_failures,
        &ctx.apply_failures,
    ) {
        Next::Stop(reason) => {
            say(&format!("STOP: not booting the OS: {reason}"));
            if failure.stop_hold_seconds > 0 {
                say(&format!(
                    "powering off in {} s ([failure] stop_hold_seconds)",
                    failure.stop_hold_seconds
                ));
                std::thread::sleep(std::time::Duration::from_secs(failure.stop_hold_seconds));
            }
            say(&handoff::power_off().to_string());
        }
        Next::HandOff => {
            if count > 0 {
                say(&format!(
                    "CONTINUE: booting the OS despite {count} failure(s): the org's \
                     failure policy is continue"
                ));
            }
            log::info!("handing off: {:?}", ctx.config.handoff.method);
            say(&handoff::hand_off(&ctx.config.handoff).to_string());
            say("handoff failed: powering off");
            say(&handoff::power_off().to_string());
        }
    }
    halt_forever()
}

/// The work step of a build without enrollment wired in: prints the
/// measurement on the console as `FORTROS-FLASH-SHA256=<hex>` (a line the
/// QEMU tests read) and does nothing else. Enrollment replaces this.
pub fn measure_only(ctx: &mut BootContext) -> Result<(), String> {
    let img = ctx
        .image
        .as_ref()
        .ok_or_else(|| "no flash image to measure".to_string())?;
    println!("FORTROS-FLASH-SHA256={}", img.sha256_hex());
    if let Some(r) = &ctx.recovery {
        println!("FORTROS-FLASH-RECOVERY={:?}", r.decision);
    }
    Ok(())
}

/// The last resort of a PID 1 that must not exit.
fn halt_forever() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_policy() {
        let fail = |policy, enroll, apply| Failure {
            policy,
            on_enroll_failure: enroll,
            on_apply_failure: apply,
            stop_hold_seconds: 0,
        };
        let stop_all = fail(FailurePolicy::Stop, None, None);
        assert_eq!(next_step(&stop_all, &[], &[], &[]), Next::HandOff);
        let go = fail(FailurePolicy::Continue, None, None);
        let x = ["x".to_string()];
        assert_eq!(next_step(&go, &x, &x, &x), Next::HandOff);
        match next_step(&stop_all, &["flash: gone".into(), "y".into()], &[], &[]) {
            Next::Stop(r) => assert!(
                r.contains("2 boot failure(s), first: flash: gone") && r.contains("policy) is"),
                "{r}"
            ),
            other => panic!("{other:?}"),
        }
        // Enrollment stops on its own setting; the default follows `policy`.
        let enroll_stop = fail(FailurePolicy::Continue, Some(FailurePolicy::Stop), None);
        assert_eq!(next_step(&enroll_stop, &x, &[], &x), Next::HandOff);
        match next_step(&enroll_stop, &[], &["enroll: refused".into()], &[]) {
            Next::Stop(r) => assert!(
                r.contains("1 enrollment failure(s), first: enroll: refused")
                    && r.contains("on_enroll_failure"),
                "{r}"
            ),
            other => panic!("{other:?}"),
        }
        let apply_go = fail(FailurePolicy::Stop, None, Some(FailurePolicy::Continue));
        assert_eq!(next_step(&apply_go, &[], &[], &x), Next::HandOff);
        assert!(matches!(
            next_step(&apply_go, &[], &x, &[]),
            Next::Stop(r) if r.contains("enrollment")
        ));
        let apply_stop = fail(FailurePolicy::Continue, None, Some(FailurePolicy::Stop));
        assert!(matches!(
            next_step(&apply_stop, &[], &[], &x),
            Next::Stop(r) if r.contains("policy application") && r.contains("on_apply_failure")
        ));
    }
}

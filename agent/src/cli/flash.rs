//! `fortros-agent flash info|read|write|recover`: the flash backends and the
//! safe write engine from the command line, for operators and tests.
//!
//! Devices are named as in the config: `file:PATH` (or a plain path),
//! `mtd:/dev/mtdN`, `mtd` (discover), `flashrom:PROGRAMMER`.
//!
//! `write` never writes without every authorization input: the digest of
//! the verified policy, the digest of the backup (which must equal what the
//! flash holds now), the platform check, and the descriptor's host master
//! access (FLMSTR1 and the regions: from the flash's own descriptor, or
//! given with --flmstr1 and --region).

use super::{EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK};
use crate::hw::flash::access::{DescriptorAccess, IfdVersion, RegionSpan};
use crate::hw::flash::journal::{FileJournal, Journal, MemoryJournal};
use crate::hw::flash::recovery::{recover_with, FileBackup};
use crate::hw::flash::write::{
    write_image, PlatformCheck, VerifiedPolicy, WriteAuthorization, WriteError, WriteOptions,
};
use crate::hw::flash::{file::FileFlash, open_spec, read_image, Flash, FlashError};
use crate::image::descriptor::Descriptor;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct FlashArgs {
    #[command(subcommand)]
    pub command: FlashCommand,
}

#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// The flash: file:PATH, mtd, mtd:/dev/mtdN, flashrom:PROGRAMMER.
    #[arg(long, short = 'd', default_value = "mtd")]
    pub device: String,
    /// Erase block size for image files (MTD reports its own).
    #[arg(long, value_parser = parse_u32)]
    pub erase_block: Option<u32>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum FlashCommand {
    /// Size and erase block size of the flash.
    Info(DeviceArgs),
    /// Reads the whole flash into a file and prints its SHA-256.
    Read {
        #[command(flatten)]
        dev: DeviceArgs,
        /// Where to write the image.
        #[arg(long, short = 'o')]
        out: PathBuf,
    },
    /// Replaces the flash contents by an image, writing only changed erase
    /// blocks, under the safe write engine's rules.
    Write(WriteArgs),
    /// Finishes or rolls back a write the journal says was interrupted.
    Recover {
        #[command(flatten)]
        dev: DeviceArgs,
        /// A journal file, or `tpm-nv` (the TPM NV index, see --tpm).
        #[arg(long)]
        journal: String,
        /// The TPM for `--journal tpm-nv`: a device, or socket:PATH (swtpm).
        #[arg(long, default_value = "/dev/tpmrm0")]
        tpm: String,
        /// The original image (e.g. fetched from the org) for a digest-only
        /// journal over a mixed chip; used only if its SHA-256 is the
        /// journal's old image digest.
        #[arg(long)]
        backup: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// The new image (same size as the flash).
    #[arg(long)]
    pub image: PathBuf,
    /// SHA-256 of the org policy that was verified and asks for this write.
    #[arg(long)]
    pub verified_policy_sha256: Option<String>,
    /// SHA-256 of the backup of the current flash contents (held by the org).
    #[arg(long)]
    pub backup_sha256: Option<String>,
    /// The platform the check passed for; absent means not checked: refused.
    #[arg(long)]
    pub platform_ok: Option<String>,
    /// FLMSTR1 (host/BIOS master), e.g. 0x00a00f00, with --region: overrides
    /// the flash's own descriptor (default: parsed from the image on the flash).
    #[arg(long, value_parser = parse_u32, requires = "regions")]
    pub flmstr1: Option<u32>,
    /// Descriptor version: 1 or 2.
    #[arg(long, default_value_t = 2)]
    pub ifd_version: u8,
    /// Extended regions 12-15 (access bits 7:4 of FLMSTR1).
    #[arg(long)]
    pub extended_regions: bool,
    /// A descriptor region as INDEX:BASE:LIMIT (hex or decimal), repeatable.
    #[arg(long = "region", value_parser = parse_region)]
    pub regions: Vec<RegionSpan>,
    /// Journal file on persistent storage, or `tpm-nv` (the TPM NV index,
    /// see --tpm) (default: in memory only).
    #[arg(long)]
    pub journal: Option<String>,
    /// The TPM for `--journal tpm-nv`: a device, or socket:PATH (swtpm).
    #[arg(long, default_value = "/dev/tpmrm0")]
    pub tpm: String,
}

/// A journal named on the command line: `tpm-nv` or a file path.
fn open_journal(spec: &str, tpm: &str) -> Result<Box<dyn Journal>, String> {
    use crate::hw::flash::nv_journal::NvJournal;
    use crate::hw::tpm::{DeviceTransport, SocketTransport, Tpm};
    if spec != "tpm-nv" {
        return Ok(Box::new(FileJournal::new(spec)));
    }
    let opened = match tpm.strip_prefix("socket:") {
        Some(path) => SocketTransport::connect(path)
            .map_err(|e| e.to_string())
            .and_then(|t| NvJournal::open(Tpm::new(t)).map_err(|e| e.to_string()))
            .map(|j| Box::new(j) as Box<dyn Journal>),
        None => DeviceTransport::open(tpm)
            .map_err(|e| e.to_string())
            .and_then(|t| NvJournal::open(Tpm::new(t)).map_err(|e| e.to_string()))
            .map(|j| Box::new(j) as Box<dyn Journal>),
    };
    opened.map_err(|e| format!("journal tpm-nv ({tpm}): {e}"))
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?}: {e}"))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    u32::try_from(parse_u64(s)?).map_err(|_| format!("{s:?} does not fit 32 bits"))
}

fn parse_region(s: &str) -> Result<RegionSpan, String> {
    let mut it = s.split(':');
    let (Some(i), Some(b), Some(l), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(format!("{s:?}: expected INDEX:BASE:LIMIT"));
    };
    let index = u8::try_from(parse_u64(i)?).map_err(|_| format!("{i:?}: region index too big"))?;
    let (base, limit) = (parse_u64(b)?, parse_u64(l)?);
    if index > 15 || limit < base {
        return Err(format!("{s:?}: index must be 0..15 and limit >= base"));
    }
    Ok(RegionSpan { index, base, limit })
}

fn parse_digest(name: &str, s: &Option<String>) -> Result<[u8; 32], String> {
    let s = s
        .as_deref()
        .ok_or_else(|| format!("refused: --{name} is required for a write"))?;
    let v = hex::decode(s.trim()).map_err(|e| format!("--{name}: {e}"))?;
    v.try_into()
        .map_err(|_| format!("--{name}: a SHA-256 is 32 bytes (64 hex digits)"))
}

fn open(dev: &DeviceArgs) -> Result<Box<dyn Flash>, FlashError> {
    match (dev.erase_block, dev.device.strip_prefix("file:")) {
        (Some(b), Some(p)) => Ok(Box::new(FileFlash::open(p, b)?)),
        _ => open_spec(&dev.device),
    }
}

fn fail(code: i32, msg: impl std::fmt::Display) -> i32 {
    eprintln!("fortros-agent flash: {msg}");
    code
}

fn print(json: bool, value: serde_json::Value, text: String) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

/// Runs one `flash` subcommand and returns the exit code.
pub fn run(args: FlashArgs) -> i32 {
    match args.command {
        FlashCommand::Info(dev) => match open(&dev) {
            Ok(f) => {
                print(
                    dev.json,
                    serde_json::json!({"device": f.name(), "size": f.size(), "erase_block": f.erase_block_size()}),
                    format!(
                        "{}: size {:#x} ({} bytes), erase block {:#x}",
                        f.name(),
                        f.size(),
                        f.size(),
                        f.erase_block_size()
                    ),
                );
                EXIT_OK
            }
            Err(e) => fail(EXIT_FAILURE, e),
        },
        FlashCommand::Read { dev, out } => {
            let img = match open(&dev).and_then(|mut f| read_image(f.as_mut())) {
                Ok(i) => i,
                Err(e) => return fail(EXIT_FAILURE, e),
            };
            if let Err(e) = std::fs::write(&out, &img.bytes) {
                return fail(EXIT_FAILURE, format!("{}: {e}", out.display()));
            }
            print(
                dev.json,
                serde_json::json!({"out": out, "size": img.bytes.len(), "sha256": img.sha256_hex()}),
                format!("{}  {}", img.sha256_hex(), out.display()),
            );
            EXIT_OK
        }
        FlashCommand::Write(w) => write(w),
        FlashCommand::Recover {
            dev,
            journal,
            tpm,
            backup,
        } => {
            let mut f = match open(&dev) {
                Ok(f) => f,
                Err(e) => return fail(EXIT_FAILURE, e),
            };
            let mut j = match open_journal(&journal, &tpm) {
                Ok(j) => j,
                Err(e) => return fail(EXIT_FAILURE, e),
            };
            let mut file_backup = backup.map(FileBackup::new);
            let source = file_backup
                .as_mut()
                .map(|b| b as &mut dyn crate::hw::flash::recovery::BackupSource);
            match recover_with(f.as_mut(), j.as_mut(), source, 3) {
                Ok(None) => {
                    print(
                        dev.json,
                        serde_json::json!({"journal": null}),
                        "no interrupted write".into(),
                    );
                    EXIT_OK
                }
                Ok(Some(r)) => {
                    print(
                        dev.json,
                        serde_json::to_value(&r).unwrap_or_default(),
                        format!(
                            "recovered: {:?}, {} blocks rewritten, image SHA-256 {}",
                            r.decision,
                            r.blocks_rewritten.len(),
                            r.image_sha256
                        ),
                    );
                    EXIT_OK
                }
                Err(e) => fail(EXIT_FAILURE, e),
            }
        }
    }
}

fn authorization(w: &WriteArgs, old: &[u8]) -> Result<WriteAuthorization, String> {
    let policy = parse_digest("verified-policy-sha256", &w.verified_policy_sha256)?;
    let backup = parse_digest("backup-sha256", &w.backup_sha256)?;
    let platform = w
        .platform_ok
        .clone()
        .ok_or("refused: --platform-ok is required (no platform check, no write)")?;
    let access = match w.flmstr1 {
        Some(flmstr1) => DescriptorAccess {
            version: match w.ifd_version {
                1 => IfdVersion::V1,
                2 => IfdVersion::V2,
                v => return Err(format!("--ifd-version {v}: expected 1 or 2")),
            },
            flmstr1,
            regions: w.regions.clone(),
            extended_regions: w.extended_regions,
        },
        // The flash's own descriptor says what the host may write.
        None => {
            let d = Descriptor::parse(old).map_err(|e| {
                format!("refused: the flash's descriptor: {e} (or give --flmstr1 and --region)")
            })?;
            DescriptorAccess::from_descriptor(&d).map_err(|e| format!("refused: {e}"))?
        }
    };
    if !w.regions.is_empty() && w.flmstr1.is_none() {
        return Err("--region needs --flmstr1".into());
    }
    Ok(WriteAuthorization {
        policy: VerifiedPolicy::after_signature_check(policy),
        backup_sha256: backup,
        platform: PlatformCheck::Passed { platform },
        access,
    })
}

fn write(w: WriteArgs) -> i32 {
    // Check the inputs that need no device first, so a refusal touches nothing.
    if let Err(e) = parse_digest("verified-policy-sha256", &w.verified_policy_sha256)
        .and_then(|_| parse_digest("backup-sha256", &w.backup_sha256))
        .and_then(|_| {
            w.platform_ok
                .as_ref()
                .map(|_| ())
                .ok_or("refused: --platform-ok is required (no platform check, no write)".into())
        })
    {
        return fail(EXIT_BAD_INPUT, e);
    }
    let new = match std::fs::read(&w.image) {
        Ok(b) => b,
        Err(e) => return fail(EXIT_BAD_INPUT, format!("{}: {e}", w.image.display())),
    };
    let mut f = match open(&w.dev) {
        Ok(f) => f,
        Err(e) => return fail(EXIT_FAILURE, e),
    };
    let old = match read_image(f.as_mut()) {
        Ok(i) => i,
        Err(e) => return fail(EXIT_FAILURE, e),
    };
    let auth = match authorization(&w, &old.bytes) {
        Ok(a) => a,
        Err(e) => return fail(EXIT_BAD_INPUT, e),
    };
    let mut journal: Box<dyn Journal> = match &w.journal {
        Some(spec) => match open_journal(spec, &w.tpm) {
            Ok(j) => j,
            Err(e) => return fail(EXIT_FAILURE, e),
        },
        None => Box::new(MemoryJournal::default()),
    };
    match write_image(
        f.as_mut(),
        journal.as_mut(),
        &old.bytes,
        &new,
        &auth,
        WriteOptions::default(),
    ) {
        Ok(r) => {
            print(
                w.dev.json,
                serde_json::to_value(&r).unwrap_or_default(),
                format!(
                    "{}: wrote {} erase blocks of {:#x} in {} runs; SHA-256 {} -> {}",
                    r.device,
                    r.blocks_written.len(),
                    r.block_size,
                    r.runs.len(),
                    r.old_sha256,
                    r.new_sha256
                ),
            );
            EXIT_OK
        }
        Err(
            e @ (WriteError::Flash(_)
            | WriteError::Journal(_)
            | WriteError::FailedRestored { .. }
            | WriteError::FailedNotRestored { .. }),
        ) => fail(EXIT_FAILURE, e),
        Err(e) => fail(EXIT_BAD_INPUT, e),
    }
}

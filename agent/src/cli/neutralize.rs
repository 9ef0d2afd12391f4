//! `fortros-agent neutralize IN -o OUT [--mode strip+disable|disable|strip]
//! [--relocate] [--truncate] [--unlock-descriptor] [--allow-boot-guard]
//! [--dry-run] [--json]`: the me_cleaner transform on an image file.
//!
//! IN is only read. OUT is written whole or not at all (a temporary file
//! beside it, renamed into place) and may not be IN. With `--dry-run`
//! nothing is written: the plan says which partitions and modules would go
//! and which bytes would change.
//!
//! Exit codes: 0 done (or nothing to do), 1 a file cannot be read or
//! written or the result failed its re-check, 2 refused or unusable input
//! (one line on stderr saying why).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK};
use crate::image::neutralize::{self, Mode, NeutralizeError, Options, PartitionFate, Plan};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Strip the firmware where possible and set the disable bit (me_cleaner -S).
    #[value(name = "strip+disable")]
    StripDisable,
    /// Only set the HAP / AltMeDisable bit (me_cleaner -s).
    Disable,
    /// Only strip the firmware (me_cleaner without -S/-s).
    Strip,
}

#[derive(Debug, Args)]
pub struct NeutralizeArgs {
    /// The input image: full SPI image, descriptor alone, or ME region alone.
    pub input: PathBuf,
    /// Where to write the result (required unless --dry-run; never IN).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "strip+disable")]
    pub mode: ModeArg,
    /// Move FTPR to the start of the ME region (me_cleaner -r).
    #[arg(long)]
    pub relocate: bool,
    /// Cut an ME region file after the kept data (me_cleaner -t).
    #[arg(long)]
    pub truncate: bool,
    /// Restrict the ME's own flash access (FLMSTR2) to the ME region (me_cleaner -d).
    #[arg(long = "unlock-descriptor")]
    pub unlock_descriptor: bool,
    /// Strip even though the BIOS carries Boot Guard manifests.
    #[arg(long)]
    pub allow_boot_guard: bool,
    /// Print the plan, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct JsonOut<'a> {
    input: String,
    output: Option<String>,
    dry_run: bool,
    input_sha256: String,
    output_sha256: String,
    plan: &'a Plan,
}

fn fail(code: i32, what: impl std::fmt::Display) -> i32 {
    eprintln!("fortros-agent neutralize: {what}");
    code
}

pub fn run(args: &NeutralizeArgs) -> i32 {
    let input = &args.input;
    if args.output.is_none() && !args.dry_run {
        return fail(EXIT_BAD_INPUT, "-o OUT is required (or --dry-run)");
    }
    if let Some(out) = &args.output {
        if same_file(input, out) {
            return fail(
                EXIT_BAD_INPUT,
                format!("refusing to overwrite the input {}", input.display()),
            );
        }
    }
    let bytes = match std::fs::read(input) {
        Ok(b) => b,
        Err(e) => {
            return fail(
                EXIT_FAILURE,
                format!("cannot read {}: {e}", input.display()),
            )
        }
    };
    let options = Options {
        mode: match args.mode {
            ModeArg::StripDisable => Mode::StripAndDisable,
            ModeArg::Disable => Mode::Disable,
            ModeArg::Strip => Mode::Strip,
        },
        relocate: args.relocate,
        truncate: args.truncate,
        restrict_me_access: args.unlock_descriptor,
        allow_boot_guard: args.allow_boot_guard,
    };
    let outcome = match neutralize::neutralize(&bytes, &options) {
        Ok(o) => o,
        Err(e) => {
            let code = if e.is_refusal() {
                EXIT_BAD_INPUT
            } else {
                EXIT_FAILURE
            };
            let offset = match &e {
                NeutralizeError::NotAnImage(i) => format!(" at offset {:#x}", i.offset()),
                _ => String::new(),
            };
            return fail(code, format!("{}{offset}: {e}", input.display()));
        }
    };
    let written = match (&args.output, args.dry_run) {
        (Some(out), false) => {
            if let Err(e) = write_whole(out, &outcome.image) {
                return fail(EXIT_FAILURE, format!("cannot write {}: {e}", out.display()));
            }
            Some(out.display().to_string())
        }
        _ => None,
    };
    if args.json {
        let j = JsonOut {
            input: input.display().to_string(),
            output: written,
            dry_run: args.dry_run,
            input_sha256: hex::encode(Sha256::digest(&bytes)),
            output_sha256: hex::encode(Sha256::digest(&outcome.image)),
            plan: &outcome.plan,
        };
        match serde_json::to_string_pretty(&j) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(EXIT_FAILURE, format!("cannot encode the plan: {e}")),
        }
    } else {
        print!(
            "{}",
            render(&outcome.plan, args.dry_run, written.as_deref())
        );
    }
    EXIT_OK
}

/// True when both paths name the same existing file (or the same path).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into
/// place: `path` holds either its old content or the whole new image.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The plan for people.
pub fn render(p: &Plan, dry_run: bool, output: Option<&str>) -> String {
    let mut o = String::new();
    let t = &p.target;
    let _ = writeln!(
        o,
        "{:<12}{} ({}), platform {}",
        "firmware",
        t.firmware.as_deref().unwrap_or("none found"),
        match t.generation {
            Some(g) => serde_json::to_value(g)
                .ok()
                .and_then(|v| v.as_str().map(|s| format!("gen {s}")))
                .unwrap_or_default(),
            None => "generation unknown".into(),
        },
        t.platform.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(o, "{:<12}{} -> {}", "state", t.state, p.result_state);
    let _ = writeln!(o, "{:<12}{}", "mode", p.options.mode.name());
    for a in &p.actions {
        let _ = writeln!(o, "{:<12}{a}", if dry_run { "would" } else { "done" });
    }
    for s in &p.skipped {
        let _ = writeln!(o, "{:<12}{s}", "skipped");
    }
    if !p.partitions.is_empty() {
        let _ = writeln!(o, "partitions:");
        for part in &p.partitions {
            let fate = match part.action {
                PartitionFate::Kept => "kept",
                PartitionFate::Removed => "removed",
                PartitionFate::EntryDropped => "entry dropped (no data)",
            };
            let _ = writeln!(
                o,
                "  {:<5} {:#09x} +{:#09x}  {fate}",
                part.name, part.offset, part.length
            );
        }
    }
    if !p.modules.is_empty() {
        let kept: Vec<&str> = p
            .modules
            .iter()
            .filter(|m| !m.removed)
            .map(|m| m.name.as_str())
            .collect();
        let gone: Vec<&str> = p
            .modules
            .iter()
            .filter(|m| m.removed)
            .map(|m| m.name.as_str())
            .collect();
        let _ = writeln!(o, "modules kept:    {}", kept.join(", "));
        let _ = writeln!(o, "modules removed: {}", gone.join(", "));
    }
    if let Some(m) = p.minimum_me_size {
        let _ = writeln!(o, "{:<12}{m:#x} bytes", "ME min size");
    }
    let _ = writeln!(
        o,
        "{:<12}{} bytes in {} range(s); {} -> {} bytes",
        "changed",
        p.changed_bytes,
        p.changed.len(),
        p.input_len,
        p.output_len
    );
    for r in p.changed.iter().take(12) {
        let _ = writeln!(o, "  {:#010x}..{:#010x}", r.start, r.end);
    }
    if p.changed.len() > 12 {
        let _ = writeln!(o, "  … {} more (see --json)", p.changed.len() - 12);
    }
    match output {
        Some(path) => {
            let _ = writeln!(o, "{:<12}{path}", "written");
        }
        None => {
            let _ = writeln!(o, "{:<12}nothing (dry run)", "written");
        }
    }
    o
}

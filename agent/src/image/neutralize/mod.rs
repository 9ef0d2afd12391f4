//! Neutralize: the me_cleaner transform, in Rust, with the refusals
//! me_cleaner lacks. Pure: image bytes in, new image bytes and a [`Plan`]
//! out; the input is never modified.
//!
//! - [`plan`]: reads the image (through [`crate::image::inspect`]) and
//!   decides what may be done — strip, disable bit, or a refusal.
//! - `partitions`, `gen2`, `gen3`, `relocate`: the strip itself
//!   (reference §10), byte-identical to me_cleaner where it is right.
//! - `descriptor_edit`: the disable strap and the ME master's access.
//! - `verify`: the result is parsed again and must be what we meant.
//!
//! Modes (as me_cleaner users know them): strip + disable bit (`-S`, the
//! default), disable bit only (`-s`), strip only (no option); options
//! relocate (`-r`), truncate (`-t`, ME region files only) and restricting
//! the ME's descriptor access (`-d`).

use serde::Serialize;
use thiserror::Error;

use super::inspect::InspectError;

mod apply;
mod bytes;
mod descriptor_edit;
mod gen2;
mod gen3;
mod partitions;
pub mod plan;
mod relocate;
mod verify;

pub use descriptor_edit::{MasterChange, StrapChange};
pub use partitions::{PartitionAction, PartitionFate};
pub use plan::{Decision, Target};

/// What to do to the ME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Strip the firmware where that is possible and safe, and set the
    /// disable bit (me_cleaner `-S`).
    #[default]
    StripAndDisable,
    /// Only set the disable bit (me_cleaner `-s`).
    Disable,
    /// Only strip (me_cleaner without `-S`/`-s`).
    Strip,
}

impl Mode {
    pub fn strips(self) -> bool {
        self != Mode::Disable
    }
    pub fn disables(self) -> bool {
        self != Mode::Strip
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::StripAndDisable => "strip+disable",
            Mode::Disable => "disable",
            Mode::Strip => "strip",
        }
    }
}

/// Mode and options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Options {
    pub mode: Mode,
    /// Move the FTPR to the region start (me_cleaner `-r`).
    pub relocate: bool,
    /// Cut an ME region file after the last kept byte (me_cleaner `-t`).
    pub truncate: bool,
    /// Restrict the ME master (FLMSTR2) to its own region (me_cleaner `-d`).
    pub restrict_me_access: bool,
    /// Strip even though the BIOS carries Boot Guard manifests.
    pub allow_boot_guard: bool,
}

/// What a module became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleAction {
    pub name: String,
    /// How it is stored (uncompressed, LZMA, Huffman, …).
    pub storage: String,
    pub removed: bool,
}

/// A span of changed bytes, `[start, end)` in image offsets of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// Everything the transform did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub options: Options,
    /// What the image was read as.
    pub target: Target,
    /// Steps taken, in plain words.
    pub actions: Vec<String>,
    /// Steps not taken, with why (e.g. "strip: already cleaned").
    pub skipped: Vec<String>,
    pub partitions: Vec<PartitionAction>,
    pub modules: Vec<ModuleAction>,
    /// (from, to) region offsets of the FTPR when relocated.
    pub relocated: Option<(u64, u64)>,
    /// Smallest ME region size that holds the kept data (me_cleaner's
    /// "minimum size": kept data rounded up to 4 KiB, plus 4 spare blocks).
    pub minimum_me_size: Option<u64>,
    pub disable_bit: Vec<StrapChange>,
    pub me_master: Option<MasterChange>,
    /// Input and output length (they differ only with truncation).
    pub input_len: u64,
    pub output_len: u64,
    /// Byte ranges that differ between input and output (over the common
    /// length; a truncated tail is one more range).
    pub changed: Vec<ByteRange>,
    pub changed_bytes: u64,
    /// The state `inspect` gives the output.
    pub result_state: String,
}

/// The new image and how it was made.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub plan: Plan,
    pub image: Vec<u8>,
}

impl Outcome {
    /// True when the output is the input unchanged.
    pub fn unchanged(&self) -> bool {
        self.plan.changed.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NeutralizeError {
    /// The bytes are not an image `inspect` can read.
    #[error("{0}")]
    NotAnImage(#[from] InspectError),
    /// The options make no sense together or for this input.
    #[error("invalid options: {0}")]
    BadOptions(String),
    /// The transform would be unsafe or is impossible; nothing was done.
    #[error("refused: {0}")]
    Refused(String),
    /// A structure the strip reads is damaged (region offsets).
    #[error("{structure} at region offset {offset:#x}: {what}")]
    Malformed {
        structure: &'static str,
        offset: u64,
        what: String,
    },
    /// The output did not pass the re-check: nothing is returned.
    #[error("result check failed: {0}")]
    CheckFailed(String),
}

impl NeutralizeError {
    /// True for errors that mean "this input cannot or must not be
    /// neutralized this way" (CLI exit 2), false for our own failures.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, NeutralizeError::CheckFailed(_))
    }
}

/// Neutralizes `image` as `options` ask. The input is only read.
pub fn neutralize(image: &[u8], options: &Options) -> Result<Outcome, NeutralizeError> {
    let decision = plan::decide(image, options)?;
    let (out, mut plan) = apply::apply(image, options, &decision)?;
    plan.result_state = verify::verify(image, &out, &decision, &plan)?;
    Ok(Outcome { plan, image: out })
}

/// The [`Plan`] without the image (a dry run). Runs the full transform in
/// memory, so the plan lists exactly the bytes a real run changes.
pub fn dry_run(image: &[u8], options: &Options) -> Result<Plan, NeutralizeError> {
    neutralize(image, options).map(|o| o.plan)
}

/// The strip steps run straight on `region` bytes, without the checks of
/// [`plan`] that normally gate them — for fuzzing the strip code itself
/// with hostile bytes (it must return errors, never panic). Not for use.
#[doc(hidden)]
pub fn strip_unchecked(
    region: &[u8],
    gen3: bool,
    relocate: bool,
) -> Result<Vec<u8>, NeutralizeError> {
    let mut out = region.to_vec();
    let kind = if gen3 {
        plan::StripKind::Gen3
    } else {
        plan::StripKind::Gen2
    };
    let options = Options {
        mode: Mode::Strip,
        relocate,
        ..Options::default()
    };
    let mut plan = apply::empty_plan(region, &options, None);
    apply::strip(&mut out, kind, &options, &mut plan)?;
    Ok(out)
}

/// Ranges where `a` and `b` differ (over the common length), plus the
/// tail of the longer one.
pub(crate) fn diff(a: &[u8], b: &[u8]) -> Vec<ByteRange> {
    let mut out: Vec<ByteRange> = Vec::new();
    let common = a.len().min(b.len());
    let mut i = 0;
    while i < common {
        // Compare 64-byte blocks first: the images are mostly equal.
        if i + 64 <= common && a[i..i + 64] == b[i..i + 64] {
            i += 64;
            continue;
        }
        if a[i] != b[i] {
            let start = i;
            while i < common && a[i] != b[i] {
                i += 1;
            }
            match out.last_mut() {
                Some(last) if last.end == start as u64 => last.end = i as u64,
                _ => out.push(ByteRange {
                    start: start as u64,
                    end: i as u64,
                }),
            }
        } else {
            i += 1;
        }
    }
    if a.len() != b.len() {
        out.push(ByteRange {
            start: common as u64,
            end: a.len().max(b.len()) as u64,
        });
    }
    out
}

#[cfg(test)]
mod tests;

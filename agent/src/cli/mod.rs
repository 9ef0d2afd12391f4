//! The `fortros-agent` subcommands.
//!
//! Exit codes, the same for every subcommand:
//! - 0: done;
//! - 1: an operational failure (I/O, device, peer) — one line on stderr;
//! - 2: unusable input (bad arguments, a file that is not what it should be)
//!   — one line on stderr naming the offset and the structure.

use clap::{Parser, Subcommand};

pub mod flash;
pub mod inspect;
pub mod neutralize;
pub mod probe;

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code for an operational failure.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code for unusable input.
pub const EXIT_BAD_INPUT: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "fortros-agent",
    version,
    about = "FortrOS preboot enrollment agent"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Say what ME is in a flash image (full, descriptor or ME region) and in what state.
    Inspect(inspect::InspectArgs),
    /// Flash access: info, read, write (safe engine), recover.
    Flash(flash::FlashArgs),
    /// Read the live Intel ME (HFSTS, MEI, MKHI, AMTHI, Boot Guard) and classify it.
    Probe(probe::ProbeArgs),
    /// Strip the ME firmware and/or set the disable bit (me_cleaner, with refusals).
    Neutralize(neutralize::NeutralizeArgs),
}

/// Runs one parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Flash(a) => flash::run(a),
        Command::Probe(args) => probe::run(args),
        Command::Neutralize(args) => neutralize::run(&args),
    }
}

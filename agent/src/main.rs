//! `fortros-agent`: the FortrOS preboot agent's command line.

use clap::Parser;
use fortros_agent::cli::{self, Cli};

fn main() {
    // As /init in the initramfs, run the boot sequence; it never returns.
    if std::process::id() == 1 {
        fortros_agent::boot::init::run(&mut fortros_agent::boot::work::enroll_and_apply);
    }
    let args = Cli::parse();
    std::process::exit(cli::run(args));
}

//! `fortros-agent`: the FortrOS preboot agent's command line.

use clap::Parser;
use fortros_agent::cli::{self, Cli};

fn main() {
    let args = Cli::parse();
    std::process::exit(cli::run(args));
}

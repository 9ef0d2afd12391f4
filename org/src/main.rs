//! `fortros-org`: see `fortros_org::cli` and docs/operator-guide.md.

use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = fortros_org::cli::Cli::parse();
    if let Err(f) = fortros_org::cli::run(cli) {
        eprintln!("fortros-org: {}", f.message);
        std::process::exit(f.code);
    }
}

//! `meiemu --socket PATH [--scenario FILE]`: serve one emulated ME to one QEMU.

use clap::Parser;
use fortros_meiemu::{Listener, Scenario};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "meiemu",
    about = "Emulated Intel ME (HECI) over vfio-user for QEMU"
)]
struct Args {
    /// Unix socket QEMU's vfio-user-pci connects to (must not exist yet).
    #[arg(long)]
    socket: PathBuf,
    /// Scenario TOML; without it, a healthy CSME 11 with AMT unprovisioned.
    #[arg(long)]
    scenario: Option<PathBuf>,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let scenario = match &args.scenario {
        Some(p) => Scenario::load(p),
        None => Ok(Scenario::default()),
    }
    .and_then(Scenario::resolve);
    let scenario = match scenario {
        Ok(s) => s,
        Err(e) => {
            eprintln!("meiemu: {e}");
            std::process::exit(2);
        }
    };
    let listener = match Listener::bind(&args.socket, scenario) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("meiemu: {e}");
            std::process::exit(1);
        }
    };
    let (_events, result) = listener.serve();
    if let Err(e) = result {
        eprintln!("meiemu: {e}");
        std::process::exit(1);
    }
}

//! `meiemu --socket PATH [--scenario FILE] [--state FILE] [--amt-remote ADDR:PORT] [--qmp PATH]`:
//! serve one emulated ME to one QEMU.

use clap::Parser;
use fortros_meiemu::amt::remote::{self, Qmp};
use fortros_meiemu::amt::state::StateFile;
use fortros_meiemu::amt::{AmtModel, SharedAmt};
use fortros_meiemu::{Listener, Scenario};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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
    /// AMT state file (JSON): provisioning, admin digest, realm, network
    /// settings survive restarts here. Created from the scenario if missing.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Serve AMT's network side (WS-MAN + Digest as admin, once provisioned)
    /// on this TCP address, standing in for the ME's own NIC at 16992.
    #[arg(long)]
    amt_remote: Option<String>,
    /// QEMU's QMP socket: RequestPowerStateChange resets (or quits) QEMU.
    #[arg(long)]
    qmp: Option<PathBuf>,
}

fn fail(code: i32, msg: impl std::fmt::Display) -> ! {
    eprintln!("meiemu: {msg}");
    std::process::exit(code)
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let scenario = match &args.scenario {
        Some(p) => Scenario::load(p),
        None => Ok(Scenario::default()),
    }
    .and_then(Scenario::resolve);
    let scenario = scenario.unwrap_or_else(|e| fail(2, e));
    let model = AmtModel::new(&scenario, args.state.clone().map(StateFile::new))
        .unwrap_or_else(|e| fail(2, e));
    let amt: SharedAmt = Arc::new(Mutex::new(model));
    if let Some(path) = &args.qmp {
        fortros_meiemu::amt::lock(&amt).set_power(Box::new(Qmp { path: path.clone() }));
    }
    if let Some(addr) = &args.amt_remote {
        let l = std::net::TcpListener::bind(addr)
            .unwrap_or_else(|e| fail(1, format!("AMT remote port {addr}: {e}")));
        log::info!("AMT remote port on {addr}");
        remote::spawn(l, amt.clone());
    }
    let listener =
        Listener::bind_with_amt(&args.socket, scenario, amt).unwrap_or_else(|e| fail(1, e));
    let (_events, result) = listener.serve();
    if let Err(e) = result {
        fail(1, e);
    }
}

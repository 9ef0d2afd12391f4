//! Host-side tools for the node tests: the agent's and the org's binaries
//! built for the host (the same code the guest runs), and what the tests
//! compute with them to know what the node must end with.

use crate::{root, work};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `cargo build --bin BIN -p PACKAGE` in its own target folder
/// ($FORTROS_HOST_TARGET, default .work/target-host: `cargo test` holds the
/// lock on the workspace's); returns the binary's path.
pub fn host_bin(package: &str, bin: &str) -> PathBuf {
    let target = std::env::var_os("FORTROS_HOST_TARGET")
        .map(PathBuf::from)
        .unwrap_or_else(|| work().join("target-host"));
    let st = Command::new("cargo")
        .current_dir(root())
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--quiet", "--locked", "-p", package, "--bin", bin])
        .status()
        .expect("run cargo build");
    assert!(st.success(), "building {bin} failed");
    target.join("debug").join(bin)
}

/// The agent's CLI built for the host.
pub fn agent_bin() -> PathBuf {
    host_bin("fortros-agent", "fortros-agent")
}

/// `fortros-agent neutralize IN -o OUT --mode MODE` on the host, through
/// files in `d`: what the node must write.
pub fn host_neutralize(agent: &Path, d: &Path, input: &[u8], mode: &str) -> Vec<u8> {
    let inp = d.join("host-in.bin");
    let out = d.join("host-out.bin");
    std::fs::write(&inp, input).expect("write host-in.bin");
    let _ = std::fs::remove_file(&out);
    let o = Command::new(agent)
        .arg("neutralize")
        .arg(&inp)
        .arg("-o")
        .arg(&out)
        .args(["--mode", mode])
        .output()
        .expect("run fortros-agent neutralize");
    assert!(
        o.status.success(),
        "host neutralize --mode {mode}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(&out).expect("read host-out.bin")
}

/// Sets FLMSTR1 (the host's access) to read/write everything, as an
/// unlocked descriptor has it. FLMAP1 (0x18) bits 7:0 give FMBA / 16.
pub fn unlock_host_master(image: &mut [u8]) {
    let flmap1 = u32::from_le_bytes(image[0x18..0x1C].try_into().unwrap());
    let fmba = ((flmap1 & 0xFF) << 4) as usize;
    image[fmba..fmba + 4].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
}

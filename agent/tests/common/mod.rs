//! Shared by the integration tests that cut the power in the middle of a
//! flash write (cli_flash.rs with a file journal, tpm_nv.rs with the TPM NV
//! journal). Each test file uses what it needs.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A 4 MiB image and a new version of it in which every 4 KiB block
/// changes except one in eight, so a write of it is 128 runs long.
pub fn many_run_images() -> (Vec<u8>, Vec<u8>) {
    let size = 4 << 20;
    let old: Vec<u8> = (0..size).map(|i| (i * 13 % 251) as u8).collect();
    let mut new = old.clone();
    for (i, block) in new.chunks_mut(4096).enumerate() {
        if i % 8 != 7 {
            block[100] ^= 0xFF;
        }
    }
    (old, new)
}

/// Starts `fortros-agent flash write` of `image` over `flash` (the whole
/// chip one ME region the BIOS may write, every write rule satisfied,
/// `journal` the journal arguments) and kills it after `delay`: a power
/// cut wherever the write has got to.
pub fn write_then_kill(flash: &str, image: &Path, old: &[u8], journal: &[&str], delay: Duration) {
    let backup = hex::encode(fortros_agent::hw::flash::sha256(old));
    let region = format!("1:0:{:#x}", old.len() - 1);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fortros-agent"))
        .args(["flash", "write", "-d", flash, "--image"])
        .arg(image)
        .args(["--verified-policy-sha256", &"ab".repeat(32)])
        .args(["--backup-sha256", &backup, "--platform-ok", "test"])
        .args(["--flmstr1", "0xffffffff", "--region", &region])
        .args(journal)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fortros-agent flash write");
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
}

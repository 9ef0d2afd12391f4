//! The agent on a QEMU node (TCG): the MTD flash backend and safe write
//! engine against the kernel's block2mtd, and the agent as PID 1 (modules,
//! flash measurement, failure policy, kexec handoff).
//!
//! Each test builds its own initramfs with scripts/build-initramfs and boots
//! it with scripts/run-node; the guest prints `NODE-RESULT key value` lines
//! (the CLI test) or the agent's own log lines on the serial console.

use fortros_e2e::sha_hex;
use fortros_e2e::{
    agent_initramfs, build_initramfs, fresh_dir, kexec_target, node_available, root,
};
use std::path::{Path, PathBuf};
use std::process::Command;

const SIZE: usize = 1 << 20;

fn pseudo_random(n: usize, mut x: u32) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn dir(name: &str) -> PathBuf {
    fresh_dir("e2e-agent", name)
}

/// Boots and returns (QEMU exit status success, console text).
fn run_node(initrd: &Path, out: &Path, spi: Option<&Path>, append: &str) -> (bool, String) {
    let mut cmd = Command::new(root().join("scripts/run-node"));
    cmd.arg("--initrd")
        .arg(initrd)
        .arg("--out")
        .arg(out)
        .arg("--timeout")
        .arg("240")
        .arg("--append")
        // no_timer_check: under heavy host load, TCG can miss the kernel's
        // IO-APIC timer check and panic ("IO-APIC + timer doesn't work").
        .arg(format!("no_timer_check {append}"));
    if let Some(s) = spi {
        cmd.arg("--spi").arg(s);
    }
    let st = cmd.status().expect("run scripts/run-node");
    let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
    (st.success(), console)
}

/// The value of `NODE-RESULT key value` on the console.
fn result<'a>(console: &'a str, key: &str) -> &'a str {
    let prefix = format!("NODE-RESULT {key} ");
    console
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no NODE-RESULT {key}; console:\n{console}"))
}

/// A measure-only node (no [network]: these tests are about the flash and
/// the handoff, not enrollment).
fn agent_config(extra: &str) -> String {
    format!(
        r#"
mode = "measure-only"

[org]
url = "http://10.0.2.2:18080"
public_key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"

[[modules]]
name = "virtio_pci"

[[modules]]
name = "virtio_blk"

[[modules]]
name = "block2mtd"
params = "block2mtd=/dev/vda,4096"
{extra}
"#
    )
}

#[test]
fn mtd_cli_writes_only_changed_blocks_and_refuses_a_locked_me_region() {
    if !node_available("mtd_cli_writes_only_changed_blocks_and_refuses_a_locked_me_region") {
        return;
    }
    let d = dir("mtd-cli");
    let old = pseudo_random(SIZE, 11);
    let mut new = old.clone();
    new[0x2_0010..0x2_0020].fill(0xFF); // ME region, block 0x20000
    new[0x9_0000] ^= 0x5A; // BIOS region, block 0x90000
    let spi = d.join("spi.bin");
    std::fs::write(&spi, &old).unwrap();
    std::fs::write(d.join("new.bin"), &new).unwrap();
    std::fs::write(
        d.join("args"),
        format!(
            "OLD_SHA={}\nPOLICY_SHA={}\n",
            sha_hex(&old),
            "ab".repeat(32)
        ),
    )
    .unwrap();
    let initrd = d.join("initrd.cpio.gz");
    let init = root().join("tests/guest/flash-cli-init.sh");
    let (new_bin, args) = (d.join("new.bin"), d.join("args"));
    build_initramfs(
        &initrd,
        &[
            "--agent",
            "--init",
            init.to_str().unwrap(),
            "--file",
            new_bin.to_str().unwrap(),
            "/flash/new.bin",
            "--file",
            args.to_str().unwrap(),
            "/flash/args",
        ],
    );
    let (ok, console) = run_node(&initrd, &d.join("out"), Some(&spi), "");
    assert!(ok, "QEMU failed; console:\n{console}");
    assert_eq!(result(&console, "end"), "ok", "console:\n{console}");

    // The kernel's MTD: geometry through MEMGETINFO.
    assert_eq!(
        result(&console, "info.rc"),
        "0",
        "{}",
        result(&console, "info")
    );
    let info: serde_json::Value = serde_json::from_str(result(&console, "info")).unwrap();
    assert_eq!(info["device"], "/dev/mtd0");
    assert_eq!(info["size"], SIZE as u64);
    assert_eq!(info["erase_block"], 4096);

    // Locked descriptor: refused (exit 2), nothing written.
    assert_eq!(result(&console, "locked.rc"), "2");
    assert!(result(&console, "locked").contains("region 2 (ME)"));
    assert!(result(&console, "locked.read").starts_with(&sha_hex(&old)));

    // Authorized: only the two changed erase blocks, verified; the host file is the new image.
    assert_eq!(
        result(&console, "write.rc"),
        "0",
        "{}",
        result(&console, "write")
    );
    let w: serde_json::Value = serde_json::from_str(result(&console, "write")).unwrap();
    assert_eq!(w["blocks_written"], serde_json::json!([0x2_0000, 0x9_0000]));
    assert_eq!(w["device"], "/dev/mtd0");
    assert!(result(&console, "read").starts_with(&sha_hex(&new)));
    let after = std::fs::read(&spi).unwrap();
    assert!(after == new, "host image equals the new image");
}

#[test]
fn agent_as_pid1_loads_modules_and_measures_the_flash() {
    if !node_available("agent_as_pid1_loads_modules_and_measures_the_flash") {
        return;
    }
    let d = dir("pid1-measure");
    let img = pseudo_random(SIZE, 22);
    let spi = d.join("spi.bin");
    std::fs::write(&spi, &img).unwrap();
    let cfg = d.join("agent.toml");
    std::fs::write(&cfg, agent_config("[flash]\ndevice = \"mtd\"\n")).unwrap();
    let initrd = d.join("initrd.cpio.gz");
    agent_initramfs(&initrd, &cfg, None);
    let (ok, console) = run_node(
        &initrd,
        &d.join("out"),
        Some(&spi),
        "FORTROS_MTD_ALLOW_RAM=1",
    );
    assert!(ok, "QEMU failed; console:\n{console}");
    assert!(console.contains("FortrOS agent"), "console:\n{console}");
    assert!(
        console.contains("module block2mtd: Loaded"),
        "console:\n{console}"
    );
    assert!(
        console.contains(&format!("FORTROS-FLASH-SHA256={}", sha_hex(&img))),
        "the agent's digest of /dev/mtd0 equals the host image's; console:\n{console}"
    );
    assert!(!console.contains("FAILED:"), "console:\n{console}");
    assert!(std::fs::read(&spi).unwrap() == img, "flash untouched");
}

/// A node whose kernel exposes no MTD for its flash (Debian's lack
/// spi-intel): the agent as PID 1 reads it through flashrom, this machine's
/// binary with the libraries it links, added by `build-initramfs
/// --flashrom`. The chip is flashrom's `dummy` programmer emulating a
/// 16 MiB W25Q128FV backed by a file in the initramfs.
#[test]
fn agent_as_pid1_reads_the_flash_through_flashrom() {
    let name = "agent_as_pid1_reads_the_flash_through_flashrom";
    if !node_available(name) {
        return;
    }
    let d = dir("pid1-flashrom");
    let mut img = fortros_testkit::synth::sample_full_image();
    img.resize(16 << 20, 0xFF);
    let chip = d.join("chip.bin");
    std::fs::write(&chip, &img).unwrap();
    let programmer = "dummy:emulate=W25Q128FV,image=/flash/chip.bin";
    let cfg = d.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "mode = \"measure-only\"\n\n[org]\nurl = \"http://10.0.2.2:18080\"\n\
             public_key = \"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"\n\n\
             [flash]\ndevice = \"flashrom:{programmer}\"\n"
        ),
    )
    .unwrap();
    let initrd = d.join("initrd.cpio.gz");
    build_initramfs(
        &initrd,
        &[
            "--agent-init",
            "--flashrom",
            "--file",
            cfg.to_str().unwrap(),
            "/etc/fortros/agent.toml",
            "--file",
            chip.to_str().unwrap(),
            "/flash/chip.bin",
        ],
    );
    let (ok, console) = run_node(&initrd, &d.join("out"), None, "");
    assert!(ok, "QEMU failed; console:\n{console}");
    assert!(
        console.contains(&format!("flashrom {programmer}: chip of 0x1000000 bytes")),
        "console:\n{console}"
    );
    assert!(
        console.contains(&format!("FORTROS-FLASH-SHA256={}", sha_hex(&img))),
        "the agent's digest through flashrom equals the chip file's; console:\n{console}"
    );
    assert!(!console.contains("FAILED:"), "console:\n{console}");
}

#[test]
fn agent_as_pid1_with_stop_policy_does_not_boot_the_os() {
    if !node_available("agent_as_pid1_with_stop_policy_does_not_boot_the_os") {
        return;
    }
    let d = dir("pid1-stop");
    let cfg = d.join("agent.toml");
    std::fs::write(
        &cfg,
        agent_config(
            "[flash]\ndevice = \"mtd:/dev/mtd7\"\n\n[failure]\npolicy = \"stop\"\nstop_hold_seconds = 0\n\n\
             [handoff]\nmethod = \"kexec\"\nkernel = \"/boot/vmlinuz\"\n",
        ),
    )
    .unwrap();
    let initrd = d.join("initrd.cpio.gz");
    agent_initramfs(&initrd, &cfg, None);
    let spi = d.join("spi.bin");
    std::fs::write(&spi, vec![0xFFu8; SIZE]).unwrap();
    let (ok, console) = run_node(&initrd, &d.join("out"), Some(&spi), "");
    assert!(
        ok,
        "QEMU failed (the agent must power off); console:\n{console}"
    );
    assert!(
        console.contains("FAILED: flash mtd:/dev/mtd7"),
        "console:\n{console}"
    );
    assert!(
        console.contains("STOP: not booting the OS"),
        "console:\n{console}"
    );
    assert!(!console.contains("handing off"), "console:\n{console}");
}

#[test]
fn agent_as_pid1_hands_off_with_kexec() {
    if !node_available("agent_as_pid1_hands_off_with_kexec") {
        return;
    }
    let d = dir("pid1-kexec");
    // The OS: a second initramfs whose init prints a marker.
    let (vmlinuz, target) = kexec_target(&d);
    let cfg = d.join("agent.toml");
    std::fs::write(
        &cfg,
        agent_config(
            "[flash]\ndevice = \"mtd\"\n\n[handoff]\nmethod = \"kexec\"\n\
             kernel = \"/boot/vmlinuz\"\ninitrd = \"/boot/initrd.img\"\n\
             cmdline = \"console=ttyS0 panic=-1 quiet loglevel=4 no_timer_check fortros.handoff=kexec-test\"\n",
        ),
    )
    .unwrap();
    let initrd = d.join("initrd.cpio.gz");
    agent_initramfs(&initrd, &cfg, Some((&vmlinuz, &target)));
    let img = pseudo_random(SIZE, 33);
    let spi = d.join("spi.bin");
    std::fs::write(&spi, &img).unwrap();
    let (ok, console) = run_node(
        &initrd,
        &d.join("out"),
        Some(&spi),
        "FORTROS_MTD_ALLOW_RAM=1",
    );
    assert!(ok, "QEMU failed; console:\n{console}");
    assert!(
        console.contains(&format!("FORTROS-FLASH-SHA256={}", sha_hex(&img))),
        "console:\n{console}"
    );
    assert!(
        console.contains("kexec loaded /boot/vmlinuz"),
        "console:\n{console}"
    );
    let marker = result(&console, "kexec.target");
    assert!(marker.starts_with("booted "), "{marker}");
    assert!(marker.contains("fortros.handoff=kexec-test"), "{marker}");
}

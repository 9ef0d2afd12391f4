//! The failure policy and the switch_root handoff on a QEMU node (TCG):
//! the agent as PID 1, with a real swtpm and user networking, enrolls with
//! an org that is not there (a closed port on host loopback).
//!
//! - `on_enroll_failure = "continue"`: the failure is said on the console,
//!   then the agent hands off with switch_root onto an ext4 OS disk whose
//!   /sbin/init prints a marker as PID 1;
//! - `on_enroll_failure = "stop"`: the stop message, no handoff, power off.

use fortros_e2e::NODE_MODULES;
use fortros_e2e::{build_initramfs, fresh_dir, node_available, root, switch_root_disk};
use std::path::{Path, PathBuf};
use std::process::Command;

fn dir(name: &str) -> PathBuf {
    fresh_dir("e2e-failure", name)
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The agent's config: org unreachable, switch_root onto /dev/vdb.
fn config(failure: &str) -> String {
    format!(
        r#"
[org]
url = "http://10.0.2.2:{port}"
public_key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"

[failure]
{failure}

[flash]
device = "mtd"

[network]
interface = "eth0"

[handoff]
method = "switch_root"
root = "/dev/vdb"
fstype = "ext4"
init = "/sbin/init"

{NODE_MODULES}

[[modules]]
name = "crc32c_generic"

[[modules]]
name = "ext4"
"#,
        port = closed_port()
    )
}

/// Builds the initramfs with `cfg`, boots with SPI, OS disk, swtpm and
/// network; returns the console.
fn boot(d: &Path, cfg: &str) -> String {
    let cfg_path = d.join("agent.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let initrd = d.join("initrd.cpio.gz");
    build_initramfs(
        &initrd,
        &[
            "--agent-init",
            "--modules",
            "virtio_pci virtio_blk virtio_net mtd block2mtd crc32c_generic ext4",
            "--file",
            cfg_path.to_str().unwrap(),
            "/etc/fortros/agent.toml",
        ],
    );
    let spi = d.join("spi.bin");
    std::fs::write(&spi, fortros_testkit::synth::sample_full_image()).unwrap();
    let disk = switch_root_disk(d);
    let out = d.join("out");
    let st = Command::new(root().join("scripts/run-node"))
        .arg("--initrd")
        .arg(&initrd)
        .arg("--out")
        .arg(&out)
        .arg("--timeout")
        .arg("300")
        .arg("--spi")
        .arg(&spi)
        .arg("--disk")
        .arg(&disk)
        .arg("--tpm")
        .arg(d.join("tpm"))
        .arg("--net")
        .arg("--append")
        .arg("no_timer_check FORTROS_MTD_ALLOW_RAM=1")
        .status()
        .expect("run scripts/run-node");
    let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
    assert!(
        st.success(),
        "QEMU failed (the node must power off); console:\n{console}"
    );
    console
}

/// The `FORTROS-REPORT=` JSON's `enrollment` field.
fn enrollment(console: &str) -> String {
    let line = console
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("FORTROS-REPORT="))
        .unwrap_or_else(|| panic!("no FORTROS-REPORT line; console:\n{console}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("report line is JSON");
    v["enrollment"].as_str().unwrap_or_default().to_string()
}

const MARKER: &str = "NODE-RESULT switch_root.target booted ";

#[test]
fn org_unreachable_with_continue_hands_off_through_switch_root() {
    if !node_available("org_unreachable_with_continue_hands_off_through_switch_root") {
        return;
    }
    let d = dir("continue");
    // Boot failures would stop; enrollment failures continue: the
    // per-kind setting wins over the default.
    let console = boot(
        &d,
        &config("policy = \"stop\"\non_enroll_failure = \"continue\"\nstop_hold_seconds = 0"),
    );
    let e = enrollment(&console);
    assert!(e.starts_with("failed: enroll:"), "enrollment: {e}");
    assert!(
        console.contains("FAILED: enrollment: enroll:"),
        "console:\n{console}"
    );
    assert!(
        console.contains("CONTINUE: booting the OS despite 1 failure(s)"),
        "console:\n{console}"
    );
    assert!(!console.contains("STOP:"), "console:\n{console}");
    let marker = console
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(MARKER))
        .unwrap_or_else(|| panic!("no switch_root marker; console:\n{console}"));
    // The OS's init runs as PID 1 on the ext4 root, with /proc moved along.
    assert!(marker.contains("pid=1 "), "{marker}");
    assert!(marker.contains("fs=ext"), "{marker}");
    assert!(marker.contains("proc=moved"), "{marker}");
}

#[test]
fn org_unreachable_with_stop_does_not_boot_the_os() {
    if !node_available("org_unreachable_with_stop_does_not_boot_the_os") {
        return;
    }
    let d = dir("stop");
    let console = boot(
        &d,
        &config("policy = \"continue\"\non_enroll_failure = \"stop\"\nstop_hold_seconds = 0"),
    );
    assert!(
        enrollment(&console).starts_with("failed: enroll:"),
        "console:\n{console}"
    );
    assert!(
        console.contains(
            "STOP: not booting the OS: 1 enrollment failure(s), first: enrollment: enroll:"
        ),
        "console:\n{console}"
    );
    assert!(console.contains("on_enroll_failure"), "console:\n{console}");
    assert!(!console.contains("handing off"), "console:\n{console}");
    assert!(!console.contains(MARKER), "console:\n{console}");
}

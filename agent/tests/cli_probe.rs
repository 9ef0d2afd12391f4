//! `fortros-agent probe` run as a user runs it: on this machine (CI has no
//! ME, so the answer must be a clear "absent" with reasons and exit 0), and
//! on a temporary tree shaped like sysfs through the hidden `--root`.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fortros-agent"))
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = agent().args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("probe --json prints valid JSON")
}

#[test]
fn probe_on_this_machine_is_clear_and_exits_0() {
    let v = json(&[
        "probe",
        "--json",
        "--dev-state-timeout",
        "1",
        "--reply-timeout",
        "2",
    ]);
    let state = v["classification"]["state"].as_str().unwrap();
    let not_seen: Vec<&str> = v["not_seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    if Path::new("/sys/bus/pci/devices/0000:00:16.0").exists() {
        // A machine with something at 00:16.0: the PCI identity is reported.
        assert!(v["pci"]["vendor"].is_u64());
        eprintln!("00:16.0 present here, state {state}");
    } else {
        assert_eq!(state, "absent_or_hidden");
        assert!(v["pci"].is_null() && v["hfsts"].is_null() && v["mei"].is_null());
        assert!(
            not_seen
                .iter()
                .any(|l| l.contains("no PCI device at 0000:00:16.0")),
            "{not_seen:?}"
        );
    }
    if !Path::new("/dev/cpu/0/msr").exists() {
        assert!(not_seen.iter().any(|l| l.contains("MSR 0x13A")));
    }
    // The human form says the same in words.
    let out = agent().arg("probe").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(&format!("ME state: {state} (")), "{text}");
}

/// Builds a node tree: 00:16.0 with config space, mei0 bound to it.
fn fake_node(root: &Path, hfsts: [u32; 6], fw_status: &str, dev_state: &str) {
    let dev = root.join("sys/devices/pci0000:00/0000:00:16.0");
    fs::create_dir_all(&dev).unwrap();
    fs::write(dev.join("vendor"), "0x8086\n").unwrap();
    fs::write(dev.join("device"), "0xa0e0\n").unwrap();
    fs::write(dev.join("class"), "0x078000\n").unwrap();
    let mut config = vec![0u8; 256];
    for (r, off) in hfsts.iter().zip([0x40, 0x48, 0x60, 0x64, 0x68, 0x6C]) {
        config[off..off + 4].copy_from_slice(&r.to_le_bytes());
    }
    fs::write(dev.join("config"), config).unwrap();
    fs::create_dir_all(root.join("sys/bus/pci/devices")).unwrap();
    symlink(&dev, root.join("sys/bus/pci/devices/0000:00:16.0")).unwrap();
    let mei = dev.join("mei/mei0");
    fs::create_dir_all(&mei).unwrap();
    symlink(&dev, mei.join("device")).unwrap();
    fs::write(mei.join("kind"), "mei\n").unwrap();
    fs::write(mei.join("fw_status"), fw_status).unwrap();
    fs::write(
        mei.join("fw_ver"),
        "0:15.0.41.2158\n0:15.0.41.2158\n0:15.0.22.1554\n",
    )
    .unwrap();
    fs::write(mei.join("dev_state"), dev_state).unwrap();
    fs::create_dir_all(root.join("sys/class/mei")).unwrap();
    symlink(&mei, root.join("sys/class/mei/mei0")).unwrap();
}

#[test]
fn probe_on_a_soft_disabled_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let regs = [0x9003_0245, 0x6000_0000, 0x30, 0, 0, 0x4000_0000];
    fake_node(
        tmp.path(),
        regs,
        "90030245\n60000000\n00000030\n00000000\n00000000\n40000000\n",
        "ENABLED",
    );
    let root = tmp.path().to_str().unwrap();
    let v = json(&["probe", "--json", "--root", root, "--reply-timeout", "1"]);
    assert_eq!(v["classification"]["state"], "soft_disabled");
    assert_eq!(v["family"]["family"], "csme11");
    assert_eq!(v["family"]["source"], "firmware_version");
    assert_eq!(v["hfsts"]["source"], "pci_config");
    assert_eq!(v["hfsts"]["raw_hex"][0], "0x90030245");
    assert_eq!(v["hfsts"]["cross_check_mismatch"], serde_json::json!([]));
    assert_eq!(
        v["hfsts"]["decoded"]["hfsts1"]["operation_mode"],
        "soft_temporary_disable"
    );
    assert_eq!(v["hfsts"]["decoded"]["fw_sku"], "corporate");
    assert_eq!(v["mei"]["dev_state"], "ENABLED");
    // No /dev/mei0 in the tree: MKHI could not be asked, and it says so.
    assert!(v["mkhi"].is_null());
    assert!(v["not_seen"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l.as_str().unwrap().starts_with("MKHI:")));
}

#[test]
fn probe_names_a_stuck_device() {
    let tmp = tempfile::tempdir().unwrap();
    let regs = [0x9000_0245, 0, 0x30, 0, 0, 0x4000_0000];
    fake_node(tmp.path(), regs, "", "DISABLED");
    let root = tmp.path().to_str().unwrap();
    let v = json(&["probe", "--json", "--root", root]);
    assert_eq!(v["classification"]["state"], "broken");
    let out = agent().args(["probe", "--root", root]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("dev_state DISABLED"), "{text}");
}

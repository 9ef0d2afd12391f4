//! The whole node under QEMU (TCG): the agent as PID 1 measures a synthetic
//! SPI image and the emulated ME (qemu/meiemu through the guest's mei_me),
//! enrolls with a real `fortros-org serve` on host loopback (10.0.2.2 from
//! the guest), with the swtpm TPM over /dev/tpmrm0 quoting the report,
//! applies the `ignore` policy, prints `FORTROS-REPORT=` and hands off with
//! kexec. The org's fleet table shows what the node measured. A second boot
//! with the same swtpm state, but the disable bit set in the image and an
//! ME that stopped on it, must be recognised as the same node, with the
//! changes in the org's diff. Then two boots in one QEMU, reset through the
//! QMP monitor (`system_reset`, as an AMT power cycle would) after the
//! original image went back onto the flash: the same node again, and the
//! org's diff shows the flash change.

use fortros_e2e::cut::run_node_command;
use fortros_e2e::org::TestOrg;
use fortros_e2e::qemu::{qmp, wait_for, waiting_os, KilledGroup, OS_BOOTED};
use fortros_e2e::sha_hex;
use fortros_e2e::NODE_MODULES;
use fortros_e2e::{agent_initramfs, fresh_dir, kexec_target, node_available, root};
use fortros_testkit::synth::descriptor::{full_image_with_me, DescriptorBuilder};
use fortros_testkit::synth::me;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn dir(name: &str) -> PathBuf {
    fresh_dir("e2e-enroll", name)
}

/// One boot's QEMU (not started yet): the emulated ME from `scenario`.
fn run_node(initrd: &Path, out: &Path, spi: &Path, tpm: &Path, scenario: &str) -> Command {
    let mut c = run_node_command(
        initrd,
        out,
        spi,
        tpm,
        400,
        "no_timer_check FORTROS_MTD_ALLOW_RAM=1",
    );
    c.arg("--mei-scenario")
        .arg(root().join(format!("qemu/scenarios/{scenario}.toml")));
    c
}

fn boot(initrd: &Path, out: &Path, spi: &Path, tpm: &Path, scenario: &str) -> String {
    let st = run_node(initrd, out, spi, tpm, scenario)
        .status()
        .expect("run scripts/run-node");
    let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
    assert!(st.success(), "QEMU failed; console:\n{console}");
    console
}

/// Every `FORTROS-REPORT=` JSON on the console, in order.
fn report_lines(console: &str) -> Vec<serde_json::Value> {
    console
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("FORTROS-REPORT="))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("report line: {e}: {l}")))
        .collect()
}

/// The JSON after `FORTROS-REPORT=` on the console.
fn report_line(console: &str) -> serde_json::Value {
    let line = console
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("FORTROS-REPORT="))
        .unwrap_or_else(|| panic!("no FORTROS-REPORT line; console:\n{console}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("report line: {e}: {line}"))
}

#[test]
fn node_enrolls_applies_ignore_and_hands_off_then_reenrolls() {
    if !node_available("node_enrolls_applies_ignore_and_hands_off_then_reenrolls") {
        return;
    }
    let d = dir("ignore");
    let org = TestOrg::start(&d.join("org"));
    let (port, public_key) = (org.port, org.public_key());

    // The node: the OS to hand off to is a small initramfs printing a marker.
    let (vmlinuz, target) = kexec_target(&d);
    let cfg = d.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[org]
url = "http://10.0.2.2:{port}"
public_key = "{public_key}"

[flash]
device = "mtd"

[network]
interface = "eth0"

[handoff]
method = "kexec"
kernel = "/boot/vmlinuz"
initrd = "/boot/initrd.img"
cmdline = "console=ttyS0 panic=-1 quiet loglevel=4 no_timer_check fortros.handoff=kexec-test"

{NODE_MODULES}

[[modules]]
name = "mei_me"
"#
        ),
    )
    .unwrap();
    let agent_initrd = |name: &str, os: &Path| {
        let initrd = d.join(name);
        agent_initramfs(&initrd, &cfg, Some((&vmlinuz, os)));
        initrd
    };
    let initrd = agent_initrd("initrd.cpio.gz", &target);
    let img = fortros_testkit::synth::sample_full_image();
    let spi = d.join("spi.bin");
    std::fs::write(&spi, &img).unwrap();
    let tpm = d.join("tpm");

    // First boot: enrollment, a stock CSME 11 running normally.
    let console = boot(&initrd, &d.join("out1"), &spi, &tpm, "csme11-stock");
    assert!(
        console.contains(&format!("FORTROS-FLASH-SHA256={}", sha_hex(&img))),
        "console:\n{console}"
    );
    let line = report_line(&console);
    assert!(
        line["enrollment"]
            .as_str()
            .unwrap_or("")
            .starts_with("policy "),
        "enrollment: {line}"
    );
    let node_id = line["node_id"]
        .as_u64()
        .expect("node id in the report line");
    assert_eq!(
        line["report"]["flash"]["image_sha256"].as_str(),
        Some(sha_hex(&img).as_str())
    );
    // What the node measured is in the report it sent.
    let me_image = &line["report"]["flash"]["me_image"];
    assert_eq!(me_image["family"], "CSME 11", "{me_image}");
    assert_eq!(me_image["version"], "11.8.82.3838", "{me_image}");
    assert_eq!(me_image["state"], "Stock", "{me_image}");
    let live = &line["report"]["live_me"];
    assert_eq!(live["state"]["summary"], "normal", "{live}");
    // csme11-stock.toml's registers, as read through the guest's mei_me.
    assert_eq!(live["hfsts"][0], 0x0000_0245, "{live}");
    assert_eq!(live["mkhi"]["fw_version"], "11.8.50.3425", "{live}");
    assert_eq!(live["amthi"]["provisioning_state"], 0, "{live}");
    assert_eq!(
        line["report"]["network"]["me_mac"], "8c1645112233",
        "the ME's own MAC from AMTHI: {line}"
    );
    let actions = line["report"]["actions"].to_string();
    assert!(
        actions.contains("ignore") && actions.contains("Done"),
        "{actions}"
    );
    assert!(!console.contains("FAILED:"), "console:\n{console}");
    let marker = console
        .lines()
        .find_map(|l| {
            l.trim_end_matches('\r')
                .strip_prefix("NODE-RESULT kexec.target ")
        })
        .unwrap_or_else(|| panic!("no handoff marker; console:\n{console}"));
    assert!(marker.contains("fortros.handoff=kexec-test"), "{marker}");
    assert!(std::fs::read(&spi).unwrap() == img, "flash untouched");

    // The org knows the node, with the flash digest the host computes.
    let nodes = org.json(&["nodes", "list", "--json"]);
    let ids: Vec<u64> = nodes
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|n| n["id"].as_u64())
        .collect();
    assert_eq!(ids, vec![node_id], "{nodes}");
    // The fleet row as an operator reads it: the emulated ME's state and
    // firmware version, the image's ME version and its disable bit.
    let row = &nodes[0];
    assert_eq!(row["me_live"], "normal", "{row}");
    assert_eq!(row["me_live_version"], "11.8.50.3425", "{row}");
    assert_eq!(row["me_image"], "stock", "{row}");
    assert_eq!(row["me_image_version"], "11.8.82.3838", "{row}");
    assert_eq!(row["disable_bit"], "clear", "{row}");
    assert_eq!(row["amt"], "unprovisioned", "{row}");
    let show = org.json(&["nodes", "show", &node_id.to_string(), "--json"]);
    assert_eq!(
        show["last_report"]["flash"]["image_sha256"].as_str(),
        Some(sha_hex(&img).as_str()),
        "{show}"
    );

    // Second boot, same TPM state: the same node, no new one. Meanwhile the
    // image got the HAP bit (as `me_cleaner -s` would set it) and the ME
    // now stops in bring-up on it.
    let hap_img = full_image_with_me(
        DescriptorBuilder::v2().set_pch_strap_bits(0, 1 << 16),
        &me::gen3_stock().bytes,
        8 << 20,
    );
    std::fs::write(&spi, &hap_img).unwrap();
    let console = boot(&initrd, &d.join("out2"), &spi, &tpm, "csme11-hap");
    let line = report_line(&console);
    assert_eq!(line["node_id"].as_u64(), Some(node_id), "{line}");
    let nodes = org.json(&["nodes", "list", "--json"]);
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
    let row = &nodes[0];
    assert_eq!(row["me_live"], "disabled_by_hap", "{row}");
    assert_eq!(row["me_image"], "disable-bit", "{row}");
    assert_eq!(row["disable_bit"], "set", "{row}");
    let show = org.json(&["nodes", "show", &node_id.to_string(), "--json"]);
    let changes: Vec<String> = show["last_diff"]
        .as_array()
        .expect("a diff")
        .iter()
        .map(|c| {
            format!(
                "{}: {} -> {}",
                c["field"].as_str().unwrap_or(""),
                c["before"].as_str().unwrap_or(""),
                c["after"].as_str().unwrap_or("")
            )
        })
        .collect();
    for want in [
        "me.image_state: stock -> disable-bit",
        "me.live_state: normal -> disabled_by_hap",
        "me.disable_bit: clear -> set",
        &format!(
            "flash.image_sha256: {} -> {}",
            sha_hex(&img),
            sha_hex(&hap_img)
        ),
    ] {
        assert!(
            changes.iter().any(|c| c == want),
            "{want:?} in {changes:#?}"
        );
    }
    assert_eq!(
        show["me_evidence"]["live_state"], "disabled_by_hap",
        "{show}"
    );
    let text = org.cli(&["nodes", "show", &node_id.to_string()]);
    assert!(
        text.contains("me.live_state: normal -> disabled_by_hap"),
        "{text}"
    );
    assert!(std::fs::read(&spi).unwrap() == hap_img, "flash untouched");

    // Third and fourth boots in one QEMU, reset through its monitor as an
    // AMT power cycle would: in between, the original image went back onto
    // the flash (someone re-flashed it). The node re-enrolls as the same
    // node and the org's diff shows the change.
    let initrd = agent_initrd("initrd-waiting.cpio.gz", &waiting_os(&d));
    let out = d.join("out3");
    let mut cmd = run_node(&initrd, &out, &spi, &tpm, "csme11-hap");
    cmd.arg("--allow-reboot").stdout(Stdio::null());
    let qemu = KilledGroup(
        cmd.spawn().expect("run scripts/run-node"),
        vec![out.clone(), tpm.clone()],
    );
    let console_path = out.join("console.log");
    wait_for(&console_path, OS_BOOTED, 1, Duration::from_secs(400));
    std::fs::write(&spi, &img).unwrap();
    qmp(&out.join("qmp.sock"), "system_reset");
    let console = wait_for(&console_path, OS_BOOTED, 2, Duration::from_secs(400));
    qmp(&out.join("qmp.sock"), "quit");
    drop(qemu);
    let lines = report_lines(&console);
    assert_eq!(lines.len(), 2, "two boots in one QEMU; console:\n{console}");
    for l in &lines {
        assert_eq!(l["node_id"].as_u64(), Some(node_id), "same identity: {l}");
    }
    assert_eq!(
        lines[1]["report"]["flash"]["image_sha256"].as_str(),
        Some(sha_hex(&img).as_str())
    );
    let nodes = org.json(&["nodes", "list", "--json"]);
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
    let text = org.cli(&["nodes", "show", &node_id.to_string()]);
    for want in [
        "me.image_state: disable-bit -> stock",
        "me.disable_bit: set -> clear",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
}

//! The whole node under QEMU (TCG): the agent as PID 1 measures a synthetic
//! SPI image and the emulated ME (qemu/meiemu through the guest's mei_me),
//! enrolls with a real `fortros-org serve` on host loopback (10.0.2.2 from
//! the guest), with the swtpm TPM over /dev/tpmrm0 quoting the report,
//! applies the `ignore` policy, prints `FORTROS-REPORT=` and hands off with
//! kexec. The org's fleet table shows what the node measured. A second boot
//! with the same swtpm state, but the disable bit set in the image and an
//! ME that stopped on it, must be recognised as the same node, with the
//! changes in the org's diff.

use fortros_e2e::org::{org_bin, run_cli};
use fortros_e2e::NODE_MODULES;
use fortros_e2e::{build_initramfs, fresh_dir, kexec_target, node_available, root};
use fortros_testkit::synth::descriptor::{full_image_with_me, DescriptorBuilder};
use fortros_testkit::synth::me;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn dir(name: &str) -> PathBuf {
    fresh_dir("e2e-enroll", name)
}

fn org(bin: &Path, dir: &Path, args: &[&str]) -> String {
    run_cli(bin, dir, args)
}

/// Kills the org server when the test ends, pass or fail.
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn boot(initrd: &Path, out: &Path, spi: &Path, tpm: &Path, scenario: &str) -> String {
    let st = Command::new(root().join("scripts/run-node"))
        .arg("--initrd")
        .arg(initrd)
        .arg("--out")
        .arg(out)
        .arg("--timeout")
        .arg("400")
        .arg("--spi")
        .arg(spi)
        .arg("--tpm")
        .arg(tpm)
        .arg("--net")
        .arg("--mei-scenario")
        .arg(root().join(format!("qemu/scenarios/{scenario}.toml")))
        .arg("--append")
        .arg("no_timer_check FORTROS_MTD_ALLOW_RAM=1")
        .status()
        .expect("run scripts/run-node");
    let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
    assert!(st.success(), "QEMU failed; console:\n{console}");
    console
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
    // The org: keys, auto-approval (no operator in a test), serve.
    let bin = org_bin();
    let org_dir = d.join("org");
    std::fs::create_dir_all(&org_dir).unwrap();
    org(&bin, &org_dir, &["init"]);
    let toml_path = org_dir.join("org.toml");
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    assert!(toml.contains("auto_approve = false"), "{toml}");
    std::fs::write(
        &toml_path,
        toml.replace("auto_approve = false", "auto_approve = true"),
    )
    .unwrap();
    let port = free_port();
    let _server = Server(
        Command::new(&bin)
            .arg("--dir")
            .arg(&org_dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::fs::File::create(d.join("org.log")).unwrap())
            .stderr(std::fs::File::create(d.join("org.err")).unwrap())
            .spawn()
            .expect("start fortros-org serve"),
    );
    let public_key = org_public_key(&org_dir);

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
    let initrd = d.join("initrd.cpio.gz");
    build_initramfs(
        &initrd,
        &[
            "--agent-init",
            "--file",
            cfg.to_str().unwrap(),
            "/etc/fortros/agent.toml",
            "--file",
            vmlinuz.to_str().unwrap(),
            "/boot/vmlinuz",
            "--file",
            target.to_str().unwrap(),
            "/boot/initrd.img",
        ],
    );
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
    let nodes: serde_json::Value =
        serde_json::from_str(&org(&bin, &org_dir, &["nodes", "list", "--json"])).unwrap();
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
    let show: serde_json::Value = serde_json::from_str(&org(
        &bin,
        &org_dir,
        &["nodes", "show", &node_id.to_string(), "--json"],
    ))
    .unwrap();
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
    let nodes: serde_json::Value =
        serde_json::from_str(&org(&bin, &org_dir, &["nodes", "list", "--json"])).unwrap();
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
    let row = &nodes[0];
    assert_eq!(row["me_live"], "disabled_by_hap", "{row}");
    assert_eq!(row["me_image"], "disable-bit", "{row}");
    assert_eq!(row["disable_bit"], "set", "{row}");
    let show: serde_json::Value = serde_json::from_str(&org(
        &bin,
        &org_dir,
        &["nodes", "show", &node_id.to_string(), "--json"],
    ))
    .unwrap();
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
    let text = org(&bin, &org_dir, &["nodes", "show", &node_id.to_string()]);
    assert!(
        text.contains("me.live_state: normal -> disabled_by_hap"),
        "{text}"
    );
    assert!(std::fs::read(&spi).unwrap() == hap_img, "flash untouched");
}

/// The org's public key (hex) as `init` wrote it.
fn org_public_key(org_dir: &Path) -> String {
    std::fs::read_to_string(org_dir.join("org.pub"))
        .expect("org.pub written by init")
        .trim()
        .to_string()
}

//! `fortros-agent probe --json` inside a QEMU node, against the emulated ME
//! served through the guest's unmodified `mei_me` driver: for each scenario
//! the agent must report exactly what the scenario configured, and injected
//! faults must end in clear errors, not hangs.
//!
//! The node's /init here is a small script written by this file: it loads the
//! modules, runs the static agent, and sends its JSON (newlines removed) as
//! one `RESULT probe …` line on the report port.

use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use fortros_e2e::{node_available, root, work};
use fortros_meiemu::{Listener, Scenario};
use serde_json::Value;

const PROBE_INIT: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
while read -r ko; do
  case $ko in *block2mtd.ko) continue ;; esac
  insmod "$ko" 2>/dev/null
done < /etc/modules.load
report=/dev/null
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = report ] && report=/dev/$(basename "$p")
done
exec 3>"$report"
result() { echo "RESULT $*"; echo "RESULT $*" >&3; }
/bin/fortros-agent probe --json --dev-state-timeout 30 --reply-timeout 4 > /tmp/probe.json 2>/tmp/probe.err
result probe.rc $?
result probe "$(tr -d '\n' < /tmp/probe.json)"
result probe.stderr "$(tr '\n' ' ' < /tmp/probe.err)"
/bin/fortros-agent probe --reply-timeout 4 > /tmp/probe.txt 2>&1
while read -r l; do result probe.text "$l"; done < /tmp/probe.txt
result end ok
exec 3>&-
sync
poweroff -f
"#;

/// Builds (once) the initramfs with the static agent and the probe init.
fn initramfs() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = work().join("e2e");
            std::fs::create_dir_all(&dir).unwrap();
            let init = dir.join("probe-init.sh");
            std::fs::write(&init, PROBE_INIT).unwrap();
            let out = dir.join("initramfs-probe.cpio.gz");
            let st = Command::new(root().join("scripts/build-initramfs"))
                .arg(&out)
                .arg("--agent")
                .arg("--init")
                .arg(&init)
                .status()
                .expect("run scripts/build-initramfs");
            assert!(st.success(), "scripts/build-initramfs failed: {st}");
            out
        })
        .clone()
}

/// What one probe boot gave.
struct Probe {
    json: Value,
    text: String,
    rc: String,
    console: String,
}

/// Boots one node with `scenario` (None: no ME device at all) and returns
/// the agent's output. Boots run one at a time: the machine has 2 cores.
fn probe_boot(name: &str, scenario: Option<&str>) -> Probe {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let initrd = initramfs();
    let dir = work().join("e2e").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(root().join("scripts/run-node"));
    cmd.arg("--initrd")
        .arg(&initrd)
        .arg("--out")
        .arg(&dir)
        .arg("--timeout")
        .arg("240");
    let socket = dir.join("mei.sock");
    let mut emulator = None;
    if let Some(text) = scenario {
        let scenario = Scenario::from_toml(text)
            .and_then(Scenario::resolve)
            .expect("test scenario is valid");
        let listener = Listener::bind(&socket, scenario).expect("bind the MEI emulator socket");
        emulator = Some(std::thread::spawn(move || listener.serve()));
        cmd.arg("--mei-socket").arg(&socket);
    }
    let status = cmd.status().expect("run scripts/run-node");
    if let Some(t) = emulator {
        if !t.is_finished() {
            let _ = UnixStream::connect(&socket);
        }
        let _ = t.join();
    }
    let console = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
    let report = std::fs::read_to_string(dir.join("report.txt")).unwrap_or_default();
    let mut results: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in report.lines() {
        if let Some(rest) = line.strip_prefix("RESULT ") {
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            results.entry(k.into()).or_default().push(v.into());
        }
    }
    assert!(
        status.success(),
        "run-node failed ({status}); console:\n{console}"
    );
    let one = |k: &str| -> String {
        results
            .get(k)
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_else(|| panic!("no RESULT {k}; console:\n{console}"))
    };
    assert_eq!(one("end"), "ok", "the probe init did not finish: {console}");
    let raw = one("probe");
    let json: Value = serde_json::from_str(&raw)
        .unwrap_or_else(|e| panic!("probe --json is not JSON ({e}): {raw}\n{console}"));
    let text = results
        .get("probe.text")
        .map(|v| v.join("\n"))
        .unwrap_or_default();
    Probe {
        json,
        text,
        rc: one("probe.rc"),
        console,
    }
}

fn not_seen(p: &Probe) -> Vec<String> {
    p.json["not_seen"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn stock_csme11_with_amt_unprovisioned() {
    if !node_available("stock_csme11_with_amt_unprovisioned") {
        return;
    }
    // All defaults: Sunrise Point-LP, CSME 11.8.50.3425, AMT present, unprovisioned.
    let p = probe_boot("probe-stock", Some("name = \"stock\"\n"));
    let j = &p.json;
    assert_eq!(p.rc, "0");
    assert_eq!(j["classification"]["state"], "normal", "{}", p.text);
    assert_eq!(j["pci"]["device"], 0x9D3A);
    assert_eq!(j["family"]["family"], "csme11");
    assert_eq!(j["family"]["source"], "firmware_version");
    assert_eq!(j["hfsts"]["source"], "pci_config");
    assert_eq!(
        j["hfsts"]["raw_hex"],
        serde_json::json!([
            "0x00000245",
            "0x89100116",
            "0x00000020",
            "0x00004000",
            "0x00000000",
            "0x40000000"
        ])
    );
    // sysfs fw_status through the real driver agrees with config space
    assert_eq!(j["hfsts"]["cross_check_mismatch"], serde_json::json!([]));
    assert_eq!(j["mei"]["name"], "mei0");
    assert_eq!(j["mei"]["dev_state"], "ENABLED");
    assert_eq!(j["mei"]["kind"], "mei");
    assert_eq!(j["mei"]["amthi_client_listed"], true);
    let mkhi = &j["mkhi"];
    let code = &mkhi["fw_version"]["Ok"]["code"];
    assert_eq!(
        (
            &code["major"],
            &code["minor"],
            &code["hotfix"],
            &code["build"]
        ),
        (
            &Value::from(11),
            &Value::from(8),
            &Value::from(50),
            &Value::from(3425)
        )
    );
    let caps = &mkhi["fw_caps"]["Ok"];
    assert_eq!(caps["capable"], 0x0024_1005);
    assert_eq!(caps["amt_capable"], true);
    assert_eq!(caps["amt_enabled"], true);
    assert_eq!(caps["brand"], "Intel AMT");
    let amt = &j["amthi"]["info"];
    assert_eq!(amt["provisioning_state"]["Ok"], "pre");
    assert_eq!(amt["control_mode"]["Ok"], "none");
    assert_eq!(amt["uuid"]["Ok"], "4c4c4544-0042-3510-8052-b4c04f333232");
    assert_eq!(amt["code_versions"]["Ok"]["amt_version"], "11.8.50");
    assert_eq!(amt["code_versions"]["Ok"]["sku_kind"], "AMT Pro");
    assert_eq!(amt["code_versions"]["Ok"]["bios"], "FORTROS.TEST.BIOS.0001");
    assert_eq!(amt["lan_wired"]["Ok"]["mac"], "02:46:52:54:4f:53");
    assert_eq!(amt["lan_wired"]["Ok"]["link_up"], true);
    assert_eq!(amt["lan_wired"]["Ok"]["dhcp_enabled"], true);
    // the human form carries the same facts
    assert!(p.text.contains("ME state: normal"), "{}", p.text);
    assert!(p.text.contains("MAC 02:46:52:54:4f:53"), "{}", p.text);
}

#[test]
fn amt_provisioned_in_client_control_mode() {
    if !node_available("amt_provisioned_in_client_control_mode") {
        return;
    }
    let scenario = r#"
name = "provisioned"
[pci]
device_id = 0x51E0
hfsts = [0x00000245, 0x89110136, 0x00000030, 0x00004000, 0x00000001, 0x40000000]
[firmware]
code = "16.1.25.2148"
[amt]
provisioning_state = 2
control_mode = 1
uuid = "03000200-0400-0500-0006-000700080009"
code_versions = [["AMT", "16.1.25"], ["Sku", "16392"]]
lan = [{ index = 0, mac = "00:1b:21:aa:bb:cc", link_up = true, dhcp = false, ipv4 = "192.168.7.20" }]
"#;
    let p = probe_boot("probe-provisioned", Some(scenario));
    let j = &p.json;
    assert_eq!(j["classification"]["state"], "normal", "{}", p.text);
    assert_eq!(j["family"]["family"], "csme16");
    assert_eq!(j["hfsts"]["decoded"]["fw_sku"], "corporate");
    assert_eq!(j["mkhi"]["fw_version"]["Ok"]["code"]["major"], 16);
    let amt = &j["amthi"]["info"];
    assert_eq!(amt["provisioning_state"]["Ok"], "post");
    assert_eq!(amt["control_mode"]["Ok"], "client_control");
    assert_eq!(amt["uuid"]["Ok"], "03000200-0400-0500-0006-000700080009");
    let lan = &amt["lan_wired"]["Ok"];
    assert_eq!(lan["mac"], "00:1b:21:aa:bb:cc");
    assert_eq!(lan["dhcp_enabled"], false);
    assert_eq!(lan["ipv4"], "192.168.7.20");
}

#[test]
fn hap_set() {
    if !node_available("hap_set") {
        return;
    }
    // Operation mode 2 while still in bring-up: Alt Disable Mode.
    let scenario = r#"
name = "hap"
[pci]
hfsts = [0x00020181, 0x100A0000, 0x00000020, 0x00004000, 0, 0x40000000]
"#;
    let p = probe_boot("probe-hap", Some(scenario));
    let j = &p.json;
    assert_eq!(
        j["classification"]["state"], "disabled_by_hap",
        "{}",
        p.text
    );
    assert_eq!(
        j["hfsts"]["decoded"]["hfsts1"]["operation_mode"],
        "debug_or_alt_disable"
    );
    assert!(j["classification"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().contains("Alt Disable Mode (HAP)")));
    assert_eq!(j["hfsts"]["raw_hex"][0], "0x00020181");
}

#[test]
fn soft_disabled() {
    if !node_available("soft_disabled") {
        return;
    }
    let scenario = r#"
name = "soft-disabled"
[pci]
hfsts = [0x00030245, 0x89100116, 0x00000020, 0x00004000, 0, 0x40000000]
[amt]
present = false
"#;
    let p = probe_boot("probe-soft", Some(scenario));
    let j = &p.json;
    assert_eq!(j["classification"]["state"], "soft_disabled", "{}", p.text);
    assert_eq!(j["mei"]["amthi_client_listed"], false);
    assert!(j["amthi"].is_null());
    assert!(
        not_seen(&p)
            .iter()
            .any(|l| l.contains("ENOTTY") && l.contains("AMT not present or disabled")),
        "{:?}",
        not_seen(&p)
    );
}

#[test]
fn no_me_device() {
    if !node_available("no_me_device") {
        return;
    }
    let p = probe_boot("probe-none", None);
    let j = &p.json;
    assert_eq!(p.rc, "0");
    assert_eq!(j["classification"]["state"], "absent_or_hidden");
    assert!(j["pci"].is_null() && j["mei"].is_null() && j["mkhi"].is_null());
    assert!(not_seen(&p)
        .iter()
        .any(|l| l.contains("no PCI device at 0000:00:16.0")));
    assert!(p.text.contains("ME state: absent_or_hidden"), "{}", p.text);
}

#[test]
fn faults_end_in_clear_errors() {
    if !node_available("faults_end_in_clear_errors") {
        return;
    }
    // MKHI swallows requests; AMTHI answers "not ready"; the kernel's own
    // version query fails, so fw_ver is zeros and the family comes from the
    // device ID.
    let scenario = r#"
name = "faults"
[[faults]]
client = "mkhi_fix"
action = "timeout"
[[faults]]
client = "mkhi"
action = "timeout"
[[faults]]
client = "amthi"
action = "status"
status = 2
"#;
    let p = probe_boot("probe-faults", Some(scenario));
    let j = &p.json;
    assert_eq!(p.rc, "0", "{}", p.console);
    assert_eq!(j["family"]["source"], "pci_device_id");
    assert_eq!(j["family"]["family"], "csme11");
    let fw = j["mkhi"]["fw_version"]["Err"].as_str().unwrap();
    assert!(fw.contains("no reply within"), "{fw}");
    let prov = j["amthi"]["info"]["provisioning_state"]["Err"]
        .as_str()
        .unwrap();
    assert!(prov.contains("AMT status 2 (not ready)"), "{prov}");
    // HFSTS still decides; the silent MKHI is named as evidence
    assert_eq!(j["classification"]["state"], "normal");
    assert!(j["classification"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().contains("MKHI did not answer")));
}

#[test]
fn malformed_reply_and_me_reset_end_in_clear_errors() {
    if !node_available("malformed_reply_and_me_reset_end_in_clear_errors") {
        return;
    }
    // The first MKHI reply is cut to 2 bytes; the first AMTHI request makes
    // the ME reset itself instead of answering.
    let scenario = r#"
name = "malformed-reset"
[[faults]]
client = "mkhi"
action = "truncate"
times = 1
[[faults]]
client = "amthi"
action = "reset"
times = 1
"#;
    let p = probe_boot("probe-malformed-reset", Some(scenario));
    let j = &p.json;
    assert_eq!(p.rc, "0", "{}", p.console);
    let fw = j["mkhi"]["fw_version"]["Err"].as_str().unwrap();
    assert!(
        fw.contains("GET_FW_VERSION reply: truncated at offset 0: need 4 bytes, have 2"),
        "{fw}"
    );
    // only the first reply was cut: FWCAPS still answered on the same connection
    assert_eq!(j["mkhi"]["fw_caps"]["Ok"]["amt_capable"], true);
    let amt = &j["amthi"]["info"];
    let first = amt["code_versions"]["Err"].as_str().unwrap();
    assert!(
        first.contains("link reset")
            || first.contains("disconnected")
            || first.contains("ENODEV")
            || first.contains("no reply within"),
        "{first}"
    );
    // after a dead link the rest is not asked, rather than timing out one by one
    let rest = amt["lan_wireless"]["Err"].as_str().unwrap();
    assert!(rest.starts_with("not asked"), "{rest}");
    // the second (human) run, after the driver recovered, reads AMT normally
    assert!(p.text.contains("AMT: provisioning state Pre"), "{}", p.text);
}

#[test]
fn sps_firmware() {
    if !node_available("sps_firmware") {
        return;
    }
    // Operation mode 0xF: Server Platform Services (on a client device ID the
    // kernel has no SPS quirk for, so mei_me still binds).
    let scenario = r#"
name = "sps"
[pci]
hfsts = [0x000F0245, 0x89100116, 0x00000020, 0x00004000, 0, 0x40000000]
[amt]
present = false
"#;
    let p = probe_boot("probe-sps", Some(scenario));
    let j = &p.json;
    assert_eq!(j["classification"]["state"], "sps", "{}", p.text);
    assert_eq!(j["hfsts"]["decoded"]["hfsts1"]["operation_mode"], "sps");
}

#[test]
fn amt_capable_but_disabled() {
    if !node_available("amt_capable_but_disabled") {
        return;
    }
    // FWCAPS: AMT in the SKU (rule 0 bit 2) but not enabled (rule 0x20), and
    // no AMTHI client: what a vPro part with AMT off in the BIOS looks like.
    let scenario = r#"
name = "amt-off"
[mkhi]
features_capable = 0x00241005
features_enabled = 0x00241001
[amt]
present = false
"#;
    let p = probe_boot("probe-amt-off", Some(scenario));
    let j = &p.json;
    assert_eq!(j["classification"]["state"], "normal", "{}", p.text);
    let caps = &j["mkhi"]["fw_caps"]["Ok"];
    assert_eq!(caps["amt_capable"], true);
    assert_eq!(caps["amt_enabled"], false);
    assert!(j["amthi"].is_null());
    assert!(
        p.text.contains("AMT capable yes, AMT enabled no"),
        "{}",
        p.text
    );
}

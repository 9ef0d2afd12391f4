//! The `use` policy on a whole node under QEMU (TCG): the agent as PID 1
//! with swtpm and the emulated ME (qemu/meiemu AMT model, state file kept
//! across boots), a real `fortros-org serve` on host loopback.
//!
//! One node (one TPM), several boots:
//! 1. enrolls under `ignore` (the org learns its id);
//! 2. `use` without an org password, unprovisioned AMT: the agent activates
//!    CCM over AMTHI + LME/APF + WS-MAN with a TPM-generated password sealed
//!    to the org; the ME's state file says CCM / post-provisioning with the
//!    A1 of the password the org now holds;
//! 3. the same ME again, with `--allow-reboot` and AMT's remote port: left
//!    alone ("already-ours"); `fortros-org nodes reboot` resets the node
//!    through the emulator's WS-MAN port, and it boots and re-enrolls as the
//!    same node;
//! 4. a consumer-SKU ME: refused with the precondition named;
//! 5. an ME provisioned by someone else: reported "foreign", untouched.
//!
//! Then the console logs, the org database and its log, and the reports are
//! searched for the plaintext password (which the test recovers from the
//! org's database with the org's key): it is nowhere.

use fortros_e2e::cut::run_node_command;
use fortros_e2e::org::org_bin;
use fortros_e2e::qemu::{qmp, wait_for, waiting_os, KilledGroup, OS_BOOTED};
use fortros_e2e::NODE_MODULES;
use fortros_e2e::{agent_initramfs, fresh_dir, kexec_target, node_available, root};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn org_run(bin: &Path, dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("FORTROS_AMT_PASSWORD")
        .output()
        .expect("run fortros-org")
}

fn org(bin: &Path, dir: &Path, args: &[&str]) -> String {
    let out = org_run(bin, dir, args);
    assert!(
        out.status.success(),
        "fortros-org {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Killed(Child);
impl Drop for Killed {
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

/// One boot's QEMU command (not yet started).
fn run_node(
    initrd: &Path,
    out: &Path,
    spi: &Path,
    tpm: &Path,
    scenario: &str,
    state: &Path,
) -> Command {
    let mut c = run_node_command(
        initrd,
        out,
        spi,
        tpm,
        600,
        "no_timer_check FORTROS_MTD_ALLOW_RAM=1",
    );
    c.arg("--mei-scenario")
        .arg(root().join("qemu/scenarios").join(scenario))
        .arg("--amt-state")
        .arg(state);
    c
}

fn boot(cmd: &mut Command, out: &Path) -> String {
    let st = cmd.status().expect("run scripts/run-node");
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

fn one_report(console: &str) -> serde_json::Value {
    let mut r = report_lines(console);
    assert_eq!(r.len(), 1, "console:\n{console}");
    r.remove(0)
}

fn amt_action(line: &serde_json::Value) -> serde_json::Value {
    line["report"]["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["action"] == "provision-amt"))
        .cloned()
        .unwrap_or_else(|| panic!("no provision-amt action: {line}"))
}

fn state(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("AMT state file")).unwrap()
}

#[test]
fn use_policy_provisions_ccm_leaves_it_alone_reboots_through_amt_and_reports_refusals() {
    let name = "use_policy_provisions_ccm_leaves_it_alone_reboots_through_amt_and_reports_refusals";
    if !node_available(name) {
        return;
    }
    let d = fresh_dir("e2e-amt", "use");
    let bin = org_bin();
    let org_dir = d.join("org");
    std::fs::create_dir_all(&org_dir).unwrap();
    let init = org(&bin, &org_dir, &["init"]);
    assert!(init.contains("AMT seal key"), "{init}");
    let toml_path = org_dir.join("org.toml");
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    std::fs::write(
        &toml_path,
        toml.replace("auto_approve = false", "auto_approve = true"),
    )
    .unwrap();
    let port = free_port();
    let _server = Killed(
        Command::new(&bin)
            .arg("--dir")
            .arg(&org_dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(d.join("org.log")).unwrap())
            .stderr(std::fs::File::create(d.join("org.err")).unwrap())
            .spawn()
            .expect("start fortros-org serve"),
    );
    let key = |f: &str| {
        std::fs::read_to_string(org_dir.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    let (public_key, amt_key) = (key("org.pub"), key("amt.pub"));

    // The OS: the usual kexec target (marker, power off), and one that
    // prints a marker and waits to be reset (powers off after 2 min).
    let (vmlinuz, quick_target) = kexec_target(&d);
    let waiting_target = waiting_os(&d);
    let cfg = d.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[org]
url = "http://10.0.2.2:{port}"
public_key = "{public_key}"
amt_key = "{amt_key}"

[flash]
device = "mtd"

[network]
interface = "eth0"

[handoff]
method = "kexec"
kernel = "/boot/vmlinuz"
initrd = "/boot/initrd.img"
cmdline = "console=ttyS0 panic=-1 quiet loglevel=4 no_timer_check"

{NODE_MODULES}

[[modules]]
name = "mei"

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
    let initrd = agent_initrd("initrd.cpio.gz", &quick_target);
    let waiting_initrd = agent_initrd("initrd-waiting.cpio.gz", &waiting_target);
    let img = fortros_testkit::synth::sample_full_image();
    let spi = d.join("spi.bin");
    std::fs::write(&spi, &img).unwrap();
    let tpm = d.join("tpm");
    let amt_state = d.join("amt-state.json");
    let mut consoles = Vec::new();

    // 1. Enrollment under ignore.
    let out = d.join("out1");
    let c = boot(
        &mut run_node(
            &initrd,
            &out,
            &spi,
            &tpm,
            "amt-unprovisioned.toml",
            &amt_state,
        ),
        &out,
    );
    let line = one_report(&c);
    let node_id = line["node_id"].as_u64().expect("node id");
    consoles.push(c);
    assert_eq!(state(&amt_state)["provisioning_state"], 0);

    // 2. use, no org password: CCM with a TPM-generated password.
    let set = org(
        &bin,
        &org_dir,
        &[
            "policy",
            "set",
            "--node",
            &node_id.to_string(),
            "use",
            "--sol",
        ],
    );
    assert!(set.contains("generated by each node"), "{set}");
    let out = d.join("out2");
    let c = boot(
        &mut run_node(
            &initrd,
            &out,
            &spi,
            &tpm,
            "amt-unprovisioned.toml",
            &amt_state,
        ),
        &out,
    );
    let line = one_report(&c);
    let a = amt_action(&line);
    assert_eq!(a["outcome"], "Done", "{a}\nconsole:\n{c}");
    let facts = &line["amt"];
    assert_eq!(facts["result"], "provisioned", "{facts}");
    assert_eq!(facts["control_mode"], 1);
    assert_eq!(facts["provisioning_state"], 2);
    assert_eq!(facts["password_source"], "node-generated");
    let checks = facts["preconditions"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["verdict"] == "pass"), "{checks:?}");
    let steps = facts["steps"].to_string();
    assert!(steps.contains("Setup: ReturnValue 0"), "{steps}");
    assert!(steps.contains("wired interface: DHCP"), "{steps}");
    assert!(steps.contains("redirection service enabled"), "{steps}");
    let st = state(&amt_state);
    assert_eq!(
        (st["control_mode"].clone(), st["provisioning_state"].clone()),
        (1.into(), 2.into()),
        "{st}"
    );
    consoles.push(c);
    let show = org(&bin, &org_dir, &["nodes", "show", &node_id.to_string()]);
    assert!(
        show.contains("admin credential (node-generated) stored encrypted"),
        "{show}"
    );

    // The password the org holds (decrypted here with the org's key) is the
    // one the ME was given: its Digest A1 matches the ME's state file.
    let keys = fortros_org::keys::OrgKeys::load(&org_dir).unwrap();
    let reg = fortros_org::store::SqliteRegistry::open(&org_dir.join("registry.sqlite")).unwrap();
    let password = fortros_org::amt::node_password(&reg, &keys.secrets, node_id)
        .unwrap()
        .expect("the org holds the node's AMT password");
    let password = String::from_utf8(password.to_vec()).unwrap();
    fortros_amt::password::check(&password).expect("AMT's rules");
    let realm = st["realm"].as_str().unwrap();
    assert_eq!(
        st["admin_digest_a1"].as_str().unwrap(),
        fortros_amt::digest::ha1("admin", realm, &password)
    );
    drop(reg);

    // 3. Same ME, AMT's remote port served: left alone; then reset through AMT.
    let remote = format!("127.0.0.1:{}", free_port());
    let out = d.join("out3");
    let mut cmd = run_node(
        &waiting_initrd,
        &out,
        &spi,
        &tpm,
        "amt-unprovisioned.toml",
        &amt_state,
    );
    cmd.args(["--allow-reboot", "--amt-remote", &remote])
        .stdout(Stdio::null());
    let qemu = KilledGroup(
        cmd.spawn().expect("run scripts/run-node"),
        vec![out.clone(), tpm.clone()],
    );
    let console_path = out.join("console.log");
    let c = wait_for(&console_path, OS_BOOTED, 1, Duration::from_secs(500));
    let first = report_lines(&c).remove(0);
    assert_eq!(first["node_id"].as_u64(), Some(node_id));
    assert_eq!(first["amt"]["result"], "already-ours", "{}", first["amt"]);
    assert_eq!(amt_action(&first)["outcome"], "Done");
    let said = org(
        &bin,
        &org_dir,
        &["nodes", "reboot", &node_id.to_string(), "--amt", &remote],
    );
    assert!(said.contains("ReturnValue 0"), "{said}");
    let c = wait_for(&console_path, OS_BOOTED, 2, Duration::from_secs(500));
    qmp(&out.join("qmp.sock"), "quit");
    drop(qemu);
    let lines = report_lines(&c);
    assert_eq!(lines.len(), 2, "two boots in one QEMU");
    assert_eq!(lines[1]["node_id"].as_u64(), Some(node_id), "same identity");
    assert_eq!(lines[1]["amt"]["result"], "already-ours");
    consoles.push(c);
    let nodes: serde_json::Value =
        serde_json::from_str(&org(&bin, &org_dir, &["nodes", "list", "--json"])).unwrap();
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
    let show = org(&bin, &org_dir, &["nodes", "show", &node_id.to_string()]);
    assert!(show.contains("reset through AMT"), "{show}");

    // 4. Consumer SKU: refused, the precondition named.
    let out = d.join("out4");
    let consumer_state = d.join("consumer-state.json");
    let c = boot(
        &mut run_node(
            &initrd,
            &out,
            &spi,
            &tpm,
            "amt-consumer-sku.toml",
            &consumer_state,
        ),
        &out,
    );
    let line = one_report(&c);
    let a = amt_action(&line);
    let reason = a["outcome"]["Refused"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{a}"));
    assert!(
        reason.contains("corporate_sku") && reason.contains("Consumer"),
        "{reason}"
    );
    assert_eq!(line["amt"]["result"], "refused");
    consoles.push(c);

    // 5. Provisioned by someone else: reported, untouched.
    let out = d.join("out5");
    let other_state = d.join("other-state.json");
    let c = boot(
        &mut run_node(
            &initrd,
            &out,
            &spi,
            &tpm,
            "amt-provisioned-other.toml",
            &other_state,
        ),
        &out,
    );
    let before_a1 = state(&other_state)["admin_digest_a1"].clone();
    let line = one_report(&c);
    assert_eq!(line["amt"]["result"], "foreign", "{}", line["amt"]);
    let a = amt_action(&line);
    assert!(a["outcome"]["Refused"]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("someone else"));
    let st = state(&other_state);
    assert_eq!(st["control_mode"], 1);
    assert_eq!(st["admin_digest_a1"], before_a1, "untouched");
    consoles.push(c);

    // The plaintext password is nowhere: consoles, the org's database
    // (and WAL), its logs, the reports as the org shows them.
    let show_json = org(
        &bin,
        &org_dir,
        &["nodes", "show", &node_id.to_string(), "--json"],
    );
    let mut haystacks: Vec<(String, Vec<u8>)> = consoles
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("console {}", i + 1), c.as_bytes().to_vec()))
        .collect();
    for f in ["registry.sqlite", "registry.sqlite-wal"] {
        haystacks.push((f.into(), std::fs::read(org_dir.join(f)).unwrap_or_default()));
    }
    for f in ["org.log", "org.err"] {
        haystacks.push((f.into(), std::fs::read(d.join(f)).unwrap_or_default()));
    }
    haystacks.push(("nodes show --json".into(), show_json.into_bytes()));
    for (what, bytes) in &haystacks {
        assert!(
            !bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes()),
            "plaintext AMT password in {what}"
        );
    }
    assert!(std::fs::read(&spi).unwrap() == img, "flash untouched");
}

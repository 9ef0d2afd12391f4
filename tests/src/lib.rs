//! Harness for the end-to-end tests: boots QEMU test nodes through
//! `scripts/run-node`, with the MEI emulator served from this process (so a
//! test can read what the emulator saw), and parses the `RESULT key value`
//! lines the guest writes to its `report` serial port.
//!
//! When QEMU or the guest kernel are missing (scripts/fetch-qemu and
//! scripts/fetch-kernel not run), tests print a SKIPPED line and pass, unless
//! `FORTROS_REQUIRE_QEMU` is set (scripts/test sets it): then they fail.

use fortros_meiemu::amt::remote::Qmp;
use fortros_meiemu::amt::state::StateFile;
use fortros_meiemu::amt::{AmtEvent, AmtModel};
pub mod cut;
pub mod host;
pub mod org;
pub mod qemu;

use fortros_meiemu::{Event, Listener, Scenario};
use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The `[[modules]]` of the QEMU test node's agent.toml (virtio, block2mtd
/// for the SPI image), shared with scripts/lib-node.sh.
pub const NODE_MODULES: &str = include_str!("../../initramfs/node-modules.toml");

/// SHA-256 in lowercase hex, as the agent and the org print it.
pub fn sha_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// The checkout root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Where fetched and built artefacts live ($FORTROS_WORK, default .work/).
pub fn work() -> PathBuf {
    std::env::var_os("FORTROS_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".work"))
}

/// Returns false (after printing SKIPPED) when the node cannot boot here and
/// that is allowed; panics when it is required.
pub fn node_available(test: &str) -> bool {
    let w = work();
    let missing: Vec<&str> = [
        (w.join("qemu/.complete"), "QEMU (scripts/fetch-qemu)"),
        (
            w.join("kernel/current/.complete"),
            "guest kernel (scripts/fetch-kernel)",
        ),
    ]
    .iter()
    .filter(|(p, _)| !p.exists())
    .map(|(_, what)| *what)
    .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("FORTROS_REQUIRE_QEMU").is_some() {
        panic!(
            "{test}: FORTROS_REQUIRE_QEMU is set but {} missing under {}",
            missing.join(" and "),
            w.display()
        );
    }
    println!(
        "SKIPPED {test}: {} missing under {}",
        missing.join(" and "),
        w.display()
    );
    false
}

/// What goes into the initramfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Image {
    /// busybox test init + modules.
    Base,
    /// plus the static MEI test client.
    MeiClient,
    /// plus the static agent (/bin/fortros-agent) and the MEI test client.
    Agent,
}

/// Builds (once per test process) the initramfs of this kind.
pub fn initramfs(kind: Image) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeMap<Image, PathBuf>>> = OnceLock::new();
    let map = BUILT.get_or_init(|| Mutex::new(BTreeMap::new()));
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = map.get(&kind) {
        return p.clone();
    }
    let out = work().join(format!("e2e/initramfs-{kind:?}.cpio.gz"));
    let mut cmd = Command::new(root().join("scripts/build-initramfs"));
    cmd.arg(&out);
    match kind {
        Image::Base => {}
        Image::MeiClient => {
            cmd.arg("--meiclient");
        }
        Image::Agent => {
            cmd.args(["--meiclient", "--agent"]);
        }
    }
    let st = cmd.status().expect("run scripts/build-initramfs");
    assert!(st.success(), "scripts/build-initramfs failed: {st}");
    map.insert(kind, out.clone());
    out
}

/// One boot's settings.
pub struct Boot<'a> {
    /// Unique per test: the output directory name.
    pub name: &'a str,
    pub image: Image,
    /// Checks for the test init (fortros.test=...).
    pub checks: &'a str,
    /// Extra kernel command line.
    pub append: &'a str,
    /// Scenario TOML for the emulated ME; None = no ME device at all.
    pub scenario: Option<&'a str>,
    /// Raw SPI image to attach as the first virtio disk.
    pub spi: Option<&'a Path>,
    /// Attach a fresh swtpm.
    pub tpm: bool,
    /// User-mode networking (virtio-net).
    pub net: bool,
    /// The emulated AMT's state file (kept across boots; created from the
    /// scenario when missing). None: state in memory for this boot only.
    pub amt_state: Option<&'a Path>,
    /// Serve AMT's network side (the org's WS-MAN port) on this listener;
    /// its power calls reset QEMU through QMP.
    pub amt_remote: Option<&'a std::net::TcpListener>,
    /// A reset reboots the node instead of ending QEMU (run-node --allow-reboot).
    pub allow_reboot: bool,
}

impl Default for Boot<'_> {
    fn default() -> Self {
        Boot {
            name: "node",
            image: Image::Base,
            checks: "",
            append: "",
            scenario: None,
            spi: None,
            tpm: false,
            net: false,
            amt_state: None,
            amt_remote: None,
            allow_reboot: false,
        }
    }
}

/// What came back from a boot.
pub struct Outcome {
    pub dir: PathBuf,
    /// RESULT lines by key (a key may repeat, e.g. kmsg).
    pub results: BTreeMap<String, Vec<String>>,
    /// The serial console (kernel messages and the init's output).
    pub console: String,
    /// What the emulator saw, when there was one.
    pub events: Vec<Event>,
    /// What the emulated AMT did (provisioning, power calls, refusals).
    pub amt_events: Vec<AmtEvent>,
}

impl Outcome {
    /// The single value of `key`; panics with the whole report when absent.
    pub fn get(&self, key: &str) -> &str {
        match self.results.get(key).and_then(|v| v.first()) {
            Some(v) => v,
            None => panic!(
                "no RESULT {key} in the report of {}; console:\n{}",
                self.dir.display(),
                self.console
            ),
        }
    }

    pub fn kmsg(&self) -> String {
        self.results
            .get("kmsg")
            .map(|v| v.join("\n"))
            .unwrap_or_default()
    }
}

/// Boots a node and waits for it to power off.
pub fn boot(b: &Boot) -> Outcome {
    let initrd = initramfs(b.image);
    let dir = work().join("e2e").join(b.name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the boot's output dir");
    let mut cmd = Command::new(root().join("scripts/run-node"));
    cmd.arg("--initrd")
        .arg(&initrd)
        .arg("--out")
        .arg(&dir)
        .arg("--timeout")
        .arg("180")
        .arg("--append")
        .arg(format!("fortros.test={} {}", b.checks, b.append));
    if let Some(spi) = b.spi {
        cmd.arg("--spi").arg(spi);
    }
    if b.tpm {
        cmd.arg("--tpm").arg(dir.join("tpm"));
    }
    if b.net {
        cmd.arg("--net");
    }
    if b.allow_reboot {
        cmd.arg("--allow-reboot");
    }
    let mut emulator = None;
    let mut amt = None;
    let socket = dir.join("mei.sock");
    if let Some(text) = b.scenario {
        let scenario = Scenario::from_toml(text)
            .and_then(Scenario::resolve)
            .expect("test scenario is valid");
        let model = AmtModel::new(&scenario, b.amt_state.map(StateFile::new))
            .expect("the AMT state file is usable");
        let model = std::sync::Arc::new(Mutex::new(model));
        // run-node gives QEMU a QMP socket here: AMT power control resets QEMU
        fortros_meiemu::amt::lock(&model).set_power(Box::new(Qmp {
            path: dir.join("qmp.sock"),
        }));
        if let Some(l) = b.amt_remote {
            let l = l.try_clone().expect("clone the AMT remote listener");
            fortros_meiemu::amt::remote::spawn(l, model.clone());
        }
        amt = Some(model.clone());
        let listener = Listener::bind_with_amt(&socket, scenario, model)
            .expect("bind the MEI emulator socket");
        emulator = Some(std::thread::spawn(move || listener.serve()));
        cmd.arg("--mei-socket").arg(&socket);
    }
    let status = cmd.status().expect("run scripts/run-node");
    let events = match emulator {
        Some(t) => {
            if !t.is_finished() {
                // QEMU never connected (or is gone): unblock the accept.
                let _ = UnixStream::connect(&socket);
            }
            t.join().map(|(ev, _)| ev).unwrap_or_default()
        }
        None => Vec::new(),
    };
    let console = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
    let report = std::fs::read_to_string(dir.join("report.txt")).unwrap_or_default();
    let mut results: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in report.lines() {
        if let Some(rest) = line.strip_prefix("RESULT ") {
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            results
                .entry(k.to_string())
                .or_default()
                .push(v.to_string());
        }
    }
    let amt_events = amt
        .map(|m| fortros_meiemu::amt::lock(&m).events.clone())
        .unwrap_or_default();
    let out = Outcome {
        dir,
        results,
        console,
        events,
        amt_events,
    };
    assert!(
        status.success(),
        "run-node failed ({status}); console:\n{}",
        out.console
    );
    assert_eq!(
        out.results
            .get("end")
            .and_then(|v| v.first())
            .map(String::as_str),
        Some("ok"),
        "the guest init did not finish; console:\n{}",
        out.console
    );
    out
}

/// A fresh, empty folder for one test: `.work/<group>/<name>`.
pub fn fresh_dir(group: &str, name: &str) -> PathBuf {
    let d = work().join(group).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create the test's folder");
    d
}

/// Runs `scripts/build-initramfs OUT ARGS...` and fails the test if it fails.
pub fn build_initramfs(out: &Path, args: &[&str]) {
    let st = Command::new(root().join("scripts/build-initramfs"))
        .arg(out)
        .args(args)
        .status()
        .expect("run scripts/build-initramfs");
    assert!(
        st.success(),
        "scripts/build-initramfs {args:?} failed: {st}"
    );
}

/// An initramfs with the agent as /init, `config` as its agent.toml and,
/// with `os` = (kernel, initramfs), the OS a kexec handoff boots
/// (/boot/vmlinuz, /boot/initrd.img).
pub fn agent_initramfs(out: &Path, config: &Path, os: Option<(&Path, &Path)>) {
    let path = |p: &Path| p.to_str().expect("a UTF-8 path").to_string();
    let mut args = vec![
        "--agent-init".to_string(),
        "--file".into(),
        path(config),
        "/etc/fortros/agent.toml".into(),
    ];
    if let Some((kernel, initrd)) = os {
        args.extend(["--file".into(), path(kernel), "/boot/vmlinuz".into()]);
        args.extend(["--file".into(), path(initrd), "/boot/initrd.img".into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    build_initramfs(out, &args);
}

/// The OS a kexec handoff boots in tests: the guest kernel's vmlinuz and, in
/// `d`, a small initramfs whose init prints `NODE-RESULT kexec.target ...`.
/// Returns (vmlinuz, target initramfs).
pub fn kexec_target(d: &Path) -> (PathBuf, PathBuf) {
    let kernel_dir = work().join("kernel/current");
    let kver = std::fs::read_dir(kernel_dir.join("lib/modules"))
        .expect("the fetched kernel's modules folder")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a kernel version");
    let vmlinuz = kernel_dir.join(format!("boot/vmlinuz-{kver}"));
    let target = d.join("target.cpio.gz");
    let target_init = root().join("tests/guest/kexec-target-init.sh");
    build_initramfs(
        &target,
        // One small module: build-initramfs expects at least one.
        &[
            "--modules",
            "crc16",
            "--init",
            target_init.to_str().expect("a UTF-8 path"),
        ],
    );
    (vmlinuz, target)
}

/// The OS disk a switch_root handoff mounts in tests: an ext4 image in `d`
/// holding a static busybox and an `/sbin/init` that prints
/// `NODE-RESULT switch_root.target booted pid=... fs=... proc=...` and
/// powers off. Made with `mkfs.ext4 -d` (e2fsprogs), no root needed.
pub fn switch_root_disk(d: &Path) -> PathBuf {
    let tree = d.join("os-root");
    let _ = std::fs::remove_dir_all(&tree);
    for sub in ["bin", "sbin", "dev", "proc", "sys", "run", "tmp"] {
        std::fs::create_dir_all(tree.join(sub)).expect("create the OS root tree");
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox (package busybox-static)");
    std::fs::copy(busybox, tree.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "echo", "stat", "poweroff", "cat"] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet))
            .expect("busybox applet link");
    }
    std::fs::copy(
        root().join("tests/guest/switch-root-target-init.sh"),
        tree.join("sbin/init"),
    )
    .expect("copy the OS init");
    let disk = d.join("os-disk.img");
    let _ = std::fs::remove_file(&disk);
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "fortros-os", "-d"])
        .arg(&tree)
        .arg(&disk)
        .arg("16M")
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .status()
        .expect("run mkfs.ext4 (package e2fsprogs)");
    assert!(st.success(), "mkfs.ext4 -d failed: {st}");
    disk
}

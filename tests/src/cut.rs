//! Power cuts for QEMU test nodes: boot a node through `scripts/run-node`
//! in the background, watch its console, and SIGKILL QEMU at a chosen
//! moment — no shutdown, no flush by the guest, exactly what a pulled plug
//! leaves behind (QEMU's own writes to the image file are already in the
//! host's page cache: `cache=writethrough`).
//!
//! The moment is made deterministic with a **slow chip**: QMP
//! `block_set_io_throttle` on the SPI image's drive limits the guest's
//! writes to it (reads stay free). The agent syncs every run to the chip
//! before it logs the run as verified, so with a few hundred bytes a second
//! the next run's first request waits many seconds in QEMU: a kill seen
//! right after "run 1/N" lands mid-write. (Stalling swtpm with SIGSTOP to
//! hold the agent before its journal clear does not work: QEMU's vCPU
//! thread reads the TPM's control socket synchronously and the whole guest
//! freezes; the agent has a pause knob for that moment instead.)

use crate::qemu::Qmp;
use crate::root;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A node booting in the background (`scripts/run-node`).
pub struct RunningNode {
    pub out: PathBuf,
    child: Child,
}

/// `scripts/run-node` for a node with an SPI image, a TPM, the network and
/// `append` on the kernel command line; output in `out` (recreated).
pub fn run_node_command(
    initrd: &Path,
    out: &Path,
    spi: &Path,
    tpm: &Path,
    timeout_s: u32,
    append: &str,
) -> Command {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).expect("create the boot's output folder");
    let mut cmd = Command::new(root().join("scripts/run-node"));
    cmd.arg("--initrd")
        .arg(initrd)
        .arg("--out")
        .arg(out)
        .arg("--timeout")
        .arg(timeout_s.to_string())
        .arg("--spi")
        .arg(spi)
        .arg("--tpm")
        .arg(tpm)
        .arg("--net")
        .arg("--append")
        .arg(append);
    cmd
}

impl RunningNode {
    /// Starts the boot; returns at once.
    pub fn spawn(mut cmd: Command, out: &Path) -> RunningNode {
        let child = cmd.spawn().expect("run scripts/run-node");
        RunningNode {
            out: out.to_path_buf(),
            child,
        }
    }

    /// The serial console so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.out.join("console.log")).unwrap_or_default()
    }

    /// Polls the console until `done` holds (returns the console) or QEMU
    /// ends or `limit` passes (panics with the console).
    pub fn wait_console(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let console = self.console();
            if done(&console) {
                return console;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                // One last look: the line may have come with the exit.
                let console = self.console();
                if done(&console) {
                    return console;
                }
                panic!("QEMU ended ({st}) before {what}; console:\n{console}");
            }
            if start.elapsed() > limit {
                self.force_kill();
                panic!(
                    "no {what} after {} s; console:\n{}",
                    limit.as_secs(),
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// QEMU's pid (run-node passes `-pidfile OUT/qemu.pid`).
    fn qemu_pid(&self) -> Option<String> {
        let p = std::fs::read_to_string(self.out.join("qemu.pid")).ok()?;
        let p = p.trim().to_string();
        (!p.is_empty()).then_some(p)
    }

    /// The power cut: SIGKILL to QEMU, then waits for run-node to end.
    /// swtpm (`--terminate`) exits when its client is gone, as a TPM
    /// loses power with the board.
    pub fn kill_qemu(&mut self) {
        let pid = self
            .qemu_pid()
            .expect("QEMU's pid file (run-node -pidfile)");
        let st = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -KILL {pid} failed");
        let _ = self.child.wait();
    }

    /// Ends QEMU whatever state it is in; no checks.
    fn force_kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Some(pid) = self.qemu_pid() {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
        let _ = self.child.wait();
    }

    /// Waits for QEMU to end by itself; returns run-node's success.
    pub fn wait(mut self) -> (bool, String) {
        let st = self.child.wait().expect("wait for run-node");
        (st.success(), self.console())
    }

    /// Throttles the guest's writes to the drive whose file is `spi` to
    /// `bytes_per_s` (QMP `block_set_io_throttle`; reads unthrottled).
    pub fn slow_writes(&self, spi: &Path, bytes_per_s: u64) {
        let sock = self.out.join("qmp.sock");
        let start = Instant::now();
        let mut qmp = loop {
            match Qmp::connect(&sock) {
                Ok(q) => break q,
                Err(_) if start.elapsed() < Duration::from_secs(60) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("QMP {}: {e}", sock.display()),
            }
        };
        let blocks = qmp.execute("query-block", serde_json::json!({}));
        let spi_path = spi.display().to_string();
        let dev = blocks
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["inserted"]["file"].as_str() == Some(spi_path.as_str()))
            .unwrap_or_else(|| panic!("no drive for {spi_path} in {blocks}"));
        let mut args = serde_json::json!({
            "bps": 0, "bps_rd": 0, "bps_wr": bytes_per_s,
            "iops": 0, "iops_rd": 0, "iops_wr": 0,
        });
        match dev["qdev"].as_str() {
            Some(qdev) if !qdev.is_empty() => args["id"] = qdev.into(),
            _ => args["device"] = dev["device"].clone(),
        }
        qmp.execute("block_set_io_throttle", args);
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        // A failing test must not leave QEMU (and swtpm) running.
        self.force_kill();
    }
}

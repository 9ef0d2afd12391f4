//! A node that stays up between boots: QEMU run with `--allow-reboot`, an
//! OS that prints a marker and waits to be reset, the QMP monitor to reset
//! or quit it, and clean-up of every process the run started.

use crate::build_initramfs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The marker the waiting OS prints once it is up.
pub const OS_BOOTED: &str = "NODE-RESULT os booted";

/// An initramfs for the second kernel that prints [`OS_BOOTED`] and waits
/// to be reset (it powers off by itself after 2 minutes).
pub fn waiting_os(d: &Path) -> PathBuf {
    let init = d.join("waiting-os-init.sh");
    std::fs::write(
        &init,
        format!(
            "#!/bin/sh\nexport PATH=/bin:/sbin\nmount -t proc proc /proc\n\
             mount -t devtmpfs devtmpfs /dev\nexec >/dev/console 2>&1\necho \"{OS_BOOTED}\"\n\
             sleep 120\npoweroff -f\n"
        ),
    )
    .expect("write the waiting OS's init");
    let out = d.join("waiting-os.cpio.gz");
    build_initramfs(
        &out,
        &["--modules", "crc16", "--init", init.to_str().unwrap()],
    );
    out
}

/// A running `scripts/run-node` whose QEMU, emulator and swtpm must be gone
/// when it is dropped: killing the script alone would leave QEMU running
/// (run-node starts it under `timeout`, in a process group of its own),
/// holding the SPI image's lock until its own timeout. So every process
/// naming one of `paths` (the boot's output folder, the TPM state folder)
/// is killed and waited for.
pub struct KilledGroup(pub Child, pub Vec<PathBuf>);

impl Drop for KilledGroup {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        for p in &self.1 {
            let p = p.to_string_lossy().to_string();
            let _ = Command::new("pkill").args(["-KILL", "-f", &p]).status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20)
                && Command::new("pgrep")
                    .args(["-f", &p])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Sends one QMP command (`system_reset`, `quit`) to QEMU's monitor socket;
/// a monitor that is already gone is not an error.
pub fn qmp(sock: &Path, command: &str) {
    if let Ok(mut q) = Qmp::connect(sock) {
        let _ = q.send(command);
    }
}

/// Waits until `path` holds `what` at least `count` times; returns the text.
/// Panics with the text after `limit`.
pub fn wait_for(path: &Path, what: &str, count: usize, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.matches(what).count() >= count {
            return text;
        }
        assert!(
            start.elapsed() < limit,
            "{what:?} x{count} not seen in {limit:?}; console:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A minimal QMP client: one JSON object a line.
pub struct Qmp {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Qmp {
    /// Connects and leaves the greeting and capabilities negotiation done.
    pub fn connect(path: &Path) -> std::io::Result<Qmp> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let w = s.try_clone()?;
        let mut q = Qmp {
            w,
            r: BufReader::new(s),
        };
        let greeting = q.line()?;
        if !greeting.contains("\"QMP\"") {
            return Err(std::io::Error::other(format!("not QMP: {greeting}")));
        }
        q.execute("qmp_capabilities", serde_json::json!({}));
        Ok(q)
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            return Err(std::io::Error::other("QMP closed"));
        }
        Ok(l)
    }

    /// Sends a command and reads one reply line, whatever it says (`quit`
    /// may close the monitor before or after its reply).
    pub fn send(&mut self, cmd: &str) -> std::io::Result<String> {
        writeln!(self.w, "{}", serde_json::json!({"execute": cmd}))?;
        self.line()
    }

    /// Runs a command; panics on an error reply; returns `return`.
    pub fn execute(&mut self, cmd: &str, args: serde_json::Value) -> serde_json::Value {
        let req = serde_json::json!({"execute": cmd, "arguments": args});
        writeln!(self.w, "{req}").expect("write to QMP");
        loop {
            let l = self.line().expect("read from QMP");
            let v: serde_json::Value =
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("QMP reply {l}: {e}"));
            if v.get("event").is_some() {
                continue;
            }
            if let Some(e) = v.get("error") {
                panic!("QMP {cmd} {req}: {e}");
            }
            return v["return"].clone();
        }
    }
}

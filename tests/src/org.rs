//! A real org for end-to-end tests: `fortros-org` built on the host, an org
//! folder, the server on a loopback port (10.0.2.2 from a QEMU guest with
//! user networking), and the operator CLI.

use crate::{root, work};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The org binary, built in its own target folder (`cargo test` holds the
/// lock on the workspace's).
pub fn org_bin() -> PathBuf {
    let target = std::env::var_os("FORTROS_HOST_TARGET")
        .map(PathBuf::from)
        .unwrap_or_else(|| work().join("target-host"));
    let st = Command::new("cargo")
        .current_dir(root())
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--quiet",
            "--locked",
            "-p",
            "fortros-org",
            "--bin",
            "fortros-org",
        ])
        .status()
        .expect("run cargo build");
    assert!(st.success(), "building fortros-org failed");
    target.join("debug/fortros-org")
}

/// An org folder with a running server; the server stops when dropped.
pub struct TestOrg {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
    server: Child,
}

impl TestOrg {
    /// `fortros-org init` in `dir`, auto-approval on (no operator in a
    /// test), then `serve` on a free loopback port, logging to `dir`.
    pub fn start(dir: &Path) -> TestOrg {
        let bin = org_bin();
        std::fs::create_dir_all(dir).expect("create the org folder");
        run_cli(&bin, dir, &["init"]);
        let toml_path = dir.join("org.toml");
        let toml = std::fs::read_to_string(&toml_path).expect("org.toml written by init");
        std::fs::write(
            &toml_path,
            toml.replace("auto_approve = false", "auto_approve = true"),
        )
        .expect("write org.toml");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let server = serve(&bin, dir, port);
        TestOrg {
            bin,
            dir: dir.to_path_buf(),
            port,
            server,
        }
    }

    /// The URL a QEMU guest with user networking uses.
    pub fn guest_url(&self) -> String {
        format!("http://10.0.2.2:{}", self.port)
    }

    /// The org's public key (hex) as `init` wrote it.
    pub fn public_key(&self) -> String {
        std::fs::read_to_string(self.dir.join("org.pub"))
            .expect("org.pub written by init")
            .trim()
            .to_string()
    }

    /// Runs an operator command; panics on failure; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        run_cli(&self.bin, &self.dir, args)
    }

    /// An operator command's `--json` output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }
}

/// `fortros-org serve` on `port`, appending to `dir`/org.log and org.err.
fn serve(bin: &Path, dir: &Path, port: u16) -> Child {
    let log = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    Command::new(bin)
        .arg("--dir")
        .arg(dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(log("org.log"))
        .stderr(log("org.err"))
        .spawn()
        .expect("start fortros-org serve")
}

impl TestOrg {
    /// Stops the server (the org folder stays): nodes find the org
    /// unreachable until [`TestOrg::restart`].
    pub fn stop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }

    /// Starts the server again, same folder and port; waits until it listens.
    pub fn restart(&mut self) {
        self.stop();
        self.server = serve(&self.bin, &self.dir, self.port);
        for _ in 0..600 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("fortros-org did not listen on {} again", self.port);
    }
}

impl Drop for TestOrg {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Runs `fortros-org --dir DIR ARGS`; panics on failure; returns stdout.
pub fn run_cli(bin: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run fortros-org");
    assert!(
        out.status.success(),
        "fortros-org {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The JSON after `PREFIX=` on a console line (e.g. `FORTROS-REPORT`).
pub fn console_json(console: &str, prefix: &str) -> serde_json::Value {
    let key = format!("{prefix}=");
    let line = console
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(key.as_str()))
        .unwrap_or_else(|| panic!("no {prefix} line; console:\n{console}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{prefix} line: {e}: {line}"))
}

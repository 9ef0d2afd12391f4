//! A real org for end-to-end tests: `fortros-org` built on the host, an org
//! folder, the server on a loopback port (10.0.2.2 from a QEMU guest with
//! user networking), and the operator CLI.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The org binary, built for the host ([`crate::host::host_bin`]).
pub fn org_bin() -> PathBuf {
    crate::host::host_bin("fortros-org", "fortros-org")
}

/// An org folder with a running server; the server stops when dropped.
pub struct TestOrg {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
    /// SHA-256 of the org's TLS certificate when it serves https
    /// ([`TestOrg::start_tls`], [`TestOrg::start_tls_files`]).
    pub tls_fingerprint: Option<String>,
    server: Child,
}

impl TestOrg {
    /// `fortros-org init` in `dir`, auto-approval on (no operator in a
    /// test), then `serve` on a free loopback port, logging to `dir`.
    pub fn start(dir: &Path) -> TestOrg {
        Self::start_with(dir, &["init"], None)
    }

    /// Like [`TestOrg::start`], but `init --tls-self-signed HOST`: the
    /// server speaks https with a self-signed certificate naming `host`
    /// (`10.0.2.2` for a QEMU guest), and `tls_fingerprint` is set (what
    /// `init` printed, checked against what `serve` announces). Returns
    /// once the server accepts connections.
    pub fn start_tls(dir: &Path, host: &str) -> TestOrg {
        let org = Self::start_with(dir, &["init", "--tls-self-signed", host], None);
        let printed = org
            .tls_fingerprint
            .clone()
            .expect("init --tls-self-signed printed no fingerprint");
        assert_eq!(org.served_fingerprint(), printed, "init and serve disagree");
        org
    }

    /// Like [`TestOrg::start`], serving https with this certificate chain
    /// and key (PEM; written as the org's `tls_cert` / `tls_key`);
    /// `tls_fingerprint` is what `serve` announces. Returns once the
    /// server accepts connections.
    pub fn start_tls_files(dir: &Path, chain_pem: &str, key_pem: &str) -> TestOrg {
        let mut org = Self::start_with(dir, &["init"], Some((chain_pem, key_pem)));
        org.tls_fingerprint = Some(org.served_fingerprint());
        org
    }

    /// Waits until the server listens, then returns the certificate
    /// SHA-256 its log announces (`TLS certificate SHA-256 <hex> ...`).
    fn served_fingerprint(&self) -> String {
        self.wait_listening();
        let err = self.dir.join("org.err");
        for _ in 0..100 {
            let said = std::fs::read_to_string(&err).unwrap_or_default();
            let found = said.lines().find_map(|l| {
                l.strip_prefix("fortros-org: TLS certificate SHA-256 ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_string)
            });
            if let Some(f) = found {
                return f;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "serve announced no TLS certificate: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
    }

    /// `init` with these arguments, auto-approval, the TLS files when
    /// given (chain, key), then `serve`.
    fn start_with(dir: &Path, init: &[&str], tls_files: Option<(&str, &str)>) -> TestOrg {
        let bin = org_bin();
        std::fs::create_dir_all(dir).expect("create the org folder");
        let said = run_cli(&bin, dir, init);
        // "TLS certificate SHA-256: <hex>  (agent.toml [org]: org_cert_sha256)"
        let tls_fingerprint = said.lines().find_map(|l| {
            l.strip_prefix("TLS certificate SHA-256:")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string)
        });
        let toml_path = dir.join("org.toml");
        let mut toml = std::fs::read_to_string(&toml_path).expect("org.toml written by init");
        if let Some((chain, key)) = tls_files {
            std::fs::write(dir.join("tls-cert.pem"), chain).expect("write tls-cert.pem");
            std::fs::write(dir.join("tls-key.pem"), key).expect("write tls-key.pem");
            toml.push_str("\ntls_cert = \"tls-cert.pem\"\ntls_key = \"tls-key.pem\"\n");
        }
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
            tls_fingerprint,
            server,
        }
    }

    /// The URL a QEMU guest with user networking uses.
    pub fn guest_url(&self) -> String {
        let scheme = if self.tls_fingerprint.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://10.0.2.2:{}", self.port)
    }

    /// Waits (up to 60 s) until the server's port accepts connections;
    /// panics with its log if it exited or never listened.
    pub fn wait_listening(&self) {
        for _ in 0..600 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let err = std::fs::read_to_string(self.dir.join("org.err")).unwrap_or_default();
        panic!("fortros-org serve never listened on {}: {err}", self.port);
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

    /// The org's copy of a node's backup whose SHA-256 is `sha`, fetched
    /// with `nodes backup` into `file`.
    pub fn backup(&self, node: u64, sha: &str, file: &Path) -> Vec<u8> {
        let path = file.to_str().expect("a UTF-8 path");
        self.cli(&[
            "nodes",
            "backup",
            &node.to_string(),
            "-o",
            path,
            "--sha256",
            sha,
        ]);
        std::fs::read(file).expect("read the fetched backup")
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

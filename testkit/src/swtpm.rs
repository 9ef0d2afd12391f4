//! A real software TPM for tests: swtpm in socket mode with its own state
//! folder, optionally manufactured with EK certificates from a private
//! local CA (swtpm_setup + swtpm_localca, all under the temp folder, never
//! /var/lib). The process is killed and the folder removed on drop.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// How to manufacture the TPM before the first start.
#[derive(Debug, Clone, Copy, Default)]
pub struct SwtpmOptions {
    /// Run swtpm_setup: RSA-2048 EK persisted at 0x81010001 with its
    /// certificate in NV 0x01c00002, signed by a fresh local CA.
    pub ek_certificates: bool,
}

pub struct Swtpm {
    dir: PathBuf,
    child: Option<Child>,
}

/// Whether the swtpm binaries are installed (scripts/setup installs them).
pub fn available() -> bool {
    which("swtpm").is_some() && which("swtpm_setup").is_some()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

impl Swtpm {
    /// Starts a TPM, or prints a SKIPPED line and returns `None` when swtpm
    /// is not installed.
    pub fn start_or_skip(test: &str, options: SwtpmOptions) -> Option<Self> {
        if !available() {
            eprintln!(
                "SKIPPED {test}: swtpm/swtpm_setup not installed (scripts/setup installs them)"
            );
            return None;
        }
        Some(Self::start(options).unwrap_or_else(|e| panic!("{test}: starting swtpm: {e}")))
    }

    /// Creates the state folder (manufacturing it if asked) and starts swtpm.
    pub fn start(options: SwtpmOptions) -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "fortros-swtpm-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state"))?;
        let mut tpm = Swtpm { dir, child: None };
        if options.ek_certificates {
            tpm.manufacture()?;
        }
        tpm.spawn()?;
        Ok(tpm)
    }

    fn manufacture(&self) -> io::Result<()> {
        let d = &self.dir;
        std::fs::create_dir_all(d.join("ca"))?;
        let localca = which("swtpm_localca")
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "swtpm_localca not found"))?;
        std::fs::write(
            d.join("setup.conf"),
            format!(
                "create_certs_tool= {}\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
                localca.display(),
                d.join("localca.conf").display(),
                d.join("localca.options").display()
            ),
        )?;
        let ca = d.join("ca");
        std::fs::write(
            d.join("localca.conf"),
            format!(
                "statedir = {0}\nsigningkey = {0}/signkey.pem\nissuercert = {0}/issuercert.pem\ncertserial = {0}/certserial\n",
                ca.display()
            ),
        )?;
        std::fs::write(
            d.join("localca.options"),
            "--platform-manufacturer FortrOS\n--platform-version 2.1\n--platform-model test\n",
        )?;
        let out = Command::new("swtpm_setup")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(d.join("state"))
            .args(["--create-ek-cert", "--create-platform-cert", "--overwrite"])
            .arg("--config")
            .arg(d.join("setup.conf"))
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "swtpm_setup failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    fn spawn(&mut self) -> io::Result<()> {
        let server = self.socket_path();
        let ctrl = self.dir.join("ctrl.sock");
        let _ = std::fs::remove_file(&server);
        let _ = std::fs::remove_file(&ctrl);
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", self.dir.join("state").display()))
            .arg("--server")
            .arg(format!("type=unixio,path={}", server.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", ctrl.display()))
            .args(["--flags", "not-need-init,startup-clear"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // swtpm logs every client disconnect; keep it out of test output.
            .stderr(std::fs::File::create(self.dir.join("swtpm.log"))?)
            .spawn()?;
        self.child = Some(child);
        // Wait for the server socket to accept (swtpm creates it at start).
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&server).is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(io::Error::other(format!("swtpm exited: {status}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "swtpm socket did not appear",
        ))
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Power-cycles the TPM: stops swtpm and starts it again on the same
    /// state (like a reboot of the node).
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// The Unix socket carrying raw TPM command/response bytes.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("server.sock")
    }

    /// The local CA's root certificate (PEM), when manufactured with EK certs.
    pub fn ca_root_pem(&self) -> PathBuf {
        self.dir.join("ca/swtpm-localca-rootca-cert.pem")
    }

    /// The local CA's intermediate (the EK certificate's issuer), PEM.
    pub fn ca_issuer_pem(&self) -> PathBuf {
        self.dir.join("ca/issuercert.pem")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

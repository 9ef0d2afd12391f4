//! The node's network side of AMT: a TCP port standing in for the ME's own
//! NIC at 16992 (`meiemu --amt-remote 127.0.0.1:PORT`), serving the same
//! WS-MAN with Digest auth as `admin` only, and only once provisioned (before
//! that, AMT's network interface is off: the connection is closed unanswered).
//!
//! [`Qmp`] is the power backend: RequestPowerStateChange sends QEMU
//! `system_reset` (or `quit` for off) over its QMP socket (`--qmp PATH`).

use super::http;
use super::server::{self, Via};
use super::{lock, PowerAction, PowerControl, SharedAmt};
use log::{info, warn};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Serves the remote port on a background thread.
pub fn spawn(listener: TcpListener, amt: SharedAmt) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(s) => {
                    let amt = amt.clone();
                    std::thread::spawn(move || connection(s, amt));
                }
                Err(e) => warn!("AMT remote: accept: {e}"),
            }
        }
    })
}

/// One TCP connection: HTTP requests until the peer closes, an error, or
/// `Connection: close`.
fn connection(mut s: TcpStream, amt: SharedAmt) {
    let peer = s
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    if !lock(&amt).provisioned() {
        info!("AMT remote: connection from {peer} closed: AMT is not provisioned");
        return;
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match http::parse(&buf) {
            Ok(Some((req, used))) => {
                buf.drain(..used);
                let reply = {
                    let mut m = lock(&amt);
                    server::serve(&mut m, &req, Via::Remote)
                };
                if let Err(e) = s.write_all(&reply.bytes) {
                    warn!("AMT remote: write to {peer}: {e}");
                    return;
                }
                if reply.close || req.wants_close() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                warn!("AMT remote: {peer}: {e}");
                let version = lock(&amt).config.version.clone();
                let _ = s.write_all(&http::response(e.status, &version, &[], b"", false));
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                info!("AMT remote: {peer}: {e}");
                return;
            }
        }
    }
}

/// QEMU's QMP socket as the power backend.
pub struct Qmp {
    pub path: PathBuf,
}

impl PowerControl for Qmp {
    /// Runs in the background after a short delay: the request that asked
    /// for it must get its answer first, and QEMU's main loop may be waiting
    /// on this very emulator (a vfio-user access) right now.
    fn power(&mut self, action: PowerAction) {
        let path = self.path.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let cmd = match action {
                PowerAction::Reset => "system_reset",
                PowerAction::Off => "quit",
            };
            // QEMU may still be creating its monitor: a few tries
            for attempt in 1..=5 {
                match qmp(&path, cmd) {
                    Ok(()) => {
                        info!("QMP {}: {cmd} sent", path.display());
                        return;
                    }
                    Err(e) => warn!("QMP {} (try {attempt}/5): {cmd}: {e}", path.display()),
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
    }
}

/// Connects, negotiates capabilities, runs `cmd`.
pub fn qmp(path: &std::path::Path, cmd: &str) -> std::io::Result<()> {
    let s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?; // greeting
    if !line.contains("\"QMP\"") {
        return Err(std::io::Error::other(format!(
            "not a QMP greeting: {line:?}"
        )));
    }
    w.write_all(b"{\"execute\":\"qmp_capabilities\"}\n")?;
    expect_return(&mut r)?;
    w.write_all(format!("{{\"execute\":\"{cmd}\"}}\n").as_bytes())?;
    // quit may close the socket before answering
    match expect_return(&mut r) {
        Err(e) if cmd == "quit" => info!("QMP quit: {e}"),
        other => other?,
    }
    Ok(())
}

/// Reads lines until a `return` (skipping events); an `error` fails.
fn expect_return(r: &mut impl BufRead) -> std::io::Result<()> {
    for _ in 0..64 {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("QMP closed"));
        }
        if line.contains("\"return\"") {
            return Ok(());
        }
        if line.contains("\"error\"") {
            return Err(std::io::Error::other(line.trim().to_string()));
        }
    }
    Err(std::io::Error::other("no QMP return"))
}

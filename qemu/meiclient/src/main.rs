//! `meiclient`: a tiny static MEI test client for the QEMU test node. It makes
//! the same system calls as the agent (open /dev/mei0, IOCTL_MEI_CONNECT_CLIENT,
//! one write per message, poll + read with a timeout) and prints what it got
//! as `RESULT key value` lines for the host-side tests.
//!
//!   meiclient mkhi     firmware versions and FWCAPS rules over MKHI
//!   meiclient amthi    AMT state over AMTHI
//!   meiclient lme      APF handshake on the LME client, one HTTP exchange on a
//!                      channel, then what the connection does after CHANNEL_CLOSE
//!
//! Every failure is a RESULT line too (`<client>.error ...`): the tests check
//! that injected faults end in a clear error, not a hang.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;

/// _IOWR('H', 0x01, struct mei_connect_client_data) (16 bytes)
const IOCTL_MEI_CONNECT_CLIENT: u64 = 0xC010_4801;
const MKHI: &str = "8e6a6715-9abc-4043-88ef-9e39c6f63e0f";
const AMTHI: &str = "12f80028-b4b7-4b2d-aca8-46e0ff65814c";
const LME: &str = "6733a4db-0476-4e7b-b3af-bcfc29bee7a7";
/// How long to wait for a reply (the emulator answers in milliseconds).
const TIMEOUT_MS: i32 = 3000;

fn result(key: &str, value: impl std::fmt::Display) {
    println!("RESULT {key} {value}");
}

fn uuid_le(s: &str) -> [u8; 16] {
    let hex: Vec<u8> = s.bytes().filter(|c| *c != b'-').collect();
    let mut b = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate().take(16) {
        let text = std::str::from_utf8(pair).unwrap_or("00");
        b[i] = u8::from_str_radix(text, 16).unwrap_or(0);
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

struct Conn {
    file: File,
    max_len: usize,
}

fn connect(uuid: &str) -> Result<Conn, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mei0")
        .map_err(|e| format!("open /dev/mei0: {e}"))?;
    let mut data = uuid_le(uuid);
    // SAFETY: the ioctl reads and writes exactly 16 bytes, the size of `data`.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            IOCTL_MEI_CONNECT_CLIENT as _,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let name = match e.raw_os_error() {
            Some(libc::ENOTTY) => "ENOTTY",
            Some(libc::EBUSY) => "EBUSY",
            Some(libc::ENODEV) => "ENODEV",
            _ => "other",
        };
        return Err(format!("connect {name} ({e})"));
    }
    let max_len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    Ok(Conn { file, max_len })
}

/// An errno as its name, for RESULT lines.
fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENODEV) => "ENODEV".into(),
        Some(libc::EBUSY) => "EBUSY".into(),
        Some(libc::ENOTTY) => "ENOTTY".into(),
        _ => e.to_string(),
    }
}

impl Conn {
    /// One message, no reply expected.
    fn send(&mut self, req: &[u8]) -> Result<(), String> {
        self.file
            .write_all(req)
            .map_err(|e| format!("write {}", errno_name(&e)))
    }

    /// Waits for one message.
    fn recv(&mut self) -> Result<Vec<u8>, String> {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, TIMEOUT_MS) };
        if n == 0 {
            return Err(format!("timeout after {TIMEOUT_MS} ms"));
        }
        if n < 0 {
            return Err(format!("poll: {}", std::io::Error::last_os_error()));
        }
        let mut buf = vec![0u8; self.max_len.max(16)];
        let n = self
            .file
            .read(&mut buf)
            .map_err(|e| format!("read {}", errno_name(&e)))?;
        buf.truncate(n);
        Ok(buf)
    }

    fn call(&mut self, req: &[u8]) -> Result<Vec<u8>, String> {
        self.file
            .write_all(req)
            .map_err(|e| format!("write: {e}"))?;
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, TIMEOUT_MS) };
        if n == 0 {
            return Err(format!("timeout after {TIMEOUT_MS} ms"));
        }
        if n < 0 {
            return Err(format!("poll: {}", std::io::Error::last_os_error()));
        }
        let mut buf = vec![0u8; self.max_len.max(16)];
        let n = self.file.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        buf.truncate(n);
        Ok(buf)
    }
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?]))
}
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(i)?,
        *b.get(i + 1)?,
        *b.get(i + 2)?,
        *b.get(i + 3)?,
    ]))
}

/// Checks an MKHI reply header against the request; returns the payload.
fn mkhi_payload<'a>(req: &[u8], r: &'a [u8]) -> Result<&'a [u8], String> {
    if r.len() < 4 {
        return Err(format!("short reply: {} bytes", r.len()));
    }
    if r[0] != req[0] || r[1] != (req[1] | 0x80) {
        return Err(format!(
            "reply header {:02x}{:02x} does not match request {:02x}{:02x}",
            r[0], r[1], req[0], req[1]
        ));
    }
    if r[3] != 0 {
        return Err(format!("result {:#04x}", r[3]));
    }
    Ok(&r[4..])
}

fn mkhi() -> Result<(), String> {
    let mut c = connect(MKHI)?;
    result("mkhi.connect", format!("ok max_len={}", c.max_len));
    let req = [0xFF, 0x02, 0, 0];
    let r = c.call(&req)?;
    let p = mkhi_payload(&req, &r)?;
    for (i, name) in ["code", "recovery", "fitc"].iter().enumerate() {
        let b = i * 8;
        let (Some(minor), Some(mj), Some(build), Some(hotfix)) = (
            u16_at(p, b),
            u16_at(p, b + 2),
            u16_at(p, b + 4),
            u16_at(p, b + 6),
        ) else {
            break;
        };
        result(
            &format!("mkhi.fw_version.{name}"),
            format!("{}.{minor}.{hotfix}.{build}", mj & 0xff),
        );
    }
    for (rule, name) in [(0u32, "features_capable"), (0x20, "features_enabled")] {
        let mut req = vec![0x03, 0x02, 0, 0];
        req.extend_from_slice(&rule.to_le_bytes());
        let r = c.call(&req)?;
        let p = mkhi_payload(&req, &r)?;
        let v = u32_at(p, 5).ok_or("short FWCAPS reply")?;
        result(&format!("mkhi.{name}"), format!("{v:#010x}"));
    }
    Ok(())
}

fn amthi_call(c: &mut Conn, command: u32, body: &[u8]) -> Result<Vec<u8>, String> {
    let mut req = vec![1u8, 1, 0, 0];
    req.extend_from_slice(&command.to_le_bytes());
    req.extend_from_slice(&(body.len() as u32).to_le_bytes());
    req.extend_from_slice(body);
    let r = c.call(&req)?;
    let cmd = u32_at(&r, 4).ok_or_else(|| format!("short reply: {} bytes", r.len()))?;
    if cmd != command | 0x0080_0000 {
        return Err(format!(
            "reply command {cmd:#010x} does not match request {command:#010x}"
        ));
    }
    let status = u32_at(&r, 12).ok_or("reply without status")?;
    if status != 0 {
        return Err(format!("status {status}"));
    }
    Ok(r[16..].to_vec())
}

fn amthi() -> Result<(), String> {
    let mut c = connect(AMTHI)?;
    result("amthi.connect", format!("ok max_len={}", c.max_len));
    let p = amthi_call(&mut c, 0x0400_0011, &[])?;
    result("amthi.provisioning_state", u32_at(&p, 0).ok_or("short")?);
    let p = amthi_call(&mut c, 0x0400_006B, &[])?;
    result("amthi.control_mode", u32_at(&p, 0).ok_or("short")?);
    let p = amthi_call(&mut c, 0x0400_005C, &[])?;
    let u = p.get(..16).ok_or("short UUID")?;
    result(
        "amthi.uuid",
        format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            u[3], u[2], u[1], u[0], u[5], u[4], u[7], u[6], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]
        ),
    );
    let p = amthi_call(&mut c, 0x0400_0048, &0u32.to_le_bytes())?;
    let mac = p.get(14..20).ok_or("short LAN settings")?;
    result(
        "amthi.lan0.mac",
        mac.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    );
    result("amthi.lan0.link_up", p.get(13).copied().unwrap_or(0));
    let p = amthi_call(&mut c, 0x0400_001A, &[])?;
    let n = u32_at(&p, 65).ok_or("short code versions")? as usize;
    for i in 0..n.min(50) {
        let b = 69 + i * 44;
        let s = |o: usize| -> Option<String> {
            let len = usize::from(u16_at(&p, o)?).min(20);
            Some(String::from_utf8_lossy(p.get(o + 2..o + 2 + len)?).into_owned())
        };
        if let (Some(d), Some(v)) = (s(b), s(b + 22)) {
            result(&format!("amthi.version.{}", d.replace(' ', "_")), v);
        }
    }
    Ok(())
}

fn be32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(i)?,
        *b.get(i + 1)?,
        *b.get(i + 2)?,
        *b.get(i + 3)?,
    ]))
}

fn apf_string(v: &mut Vec<u8>, s: &str) {
    v.extend_from_slice(&(s.len() as u32).to_be_bytes());
    v.extend_from_slice(s.as_bytes());
}

/// The host side of the APF handshake; returns the forwarded ports.
fn lme_handshake(c: &mut Conn) -> Result<Vec<u32>, String> {
    let mut pv = vec![192u8];
    for w in [1u32, 0, 9] {
        pv.extend_from_slice(&w.to_be_bytes());
    }
    pv.extend_from_slice(&[0u8; 80]);
    c.send(&pv)?;
    let mut ports = Vec::new();
    loop {
        let m = c.recv()?;
        match m.first().copied() {
            // the ME's version: echo ours
            Some(192) => c.send(&pv)?,
            Some(5) => {
                let mut v = vec![6u8];
                apf_string(&mut v, "pfwd@amt.intel.com");
                c.send(&v)?;
            }
            Some(80) => {
                let port = be32(&m, m.len().saturating_sub(4)).ok_or("short GLOBAL_REQUEST")?;
                ports.push(port);
                let mut v = vec![81u8];
                v.extend_from_slice(&port.to_be_bytes());
                c.send(&v)?;
            }
            Some(208) => {
                let mut v = vec![209u8];
                v.extend_from_slice(m.get(1..5).ok_or("short KEEPALIVE")?);
                c.send(&v)?;
                return Ok(ports);
            }
            other => return Err(format!("handshake: unexpected APF {other:?}")),
        }
    }
}

fn lme() -> Result<(), String> {
    let mut c = connect(LME)?;
    result("lme.connect", format!("ok max_len={}", c.max_len));
    let ports = lme_handshake(&mut c)?;
    result(
        "lme.ports",
        ports
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    // CHANNEL_OPEN forwarded-tcpip to the web port, our channel 1
    let mut open = vec![90u8];
    apf_string(&mut open, "forwarded-tcpip");
    for w in [1u32, 4096, 0xFFFF_FFFF] {
        open.extend_from_slice(&w.to_be_bytes());
    }
    apf_string(&mut open, "::1");
    open.extend_from_slice(&ports.first().copied().unwrap_or(16992).to_be_bytes());
    apf_string(&mut open, "::1");
    open.extend_from_slice(&123u32.to_be_bytes());
    c.send(&open)?;
    let m = c.recv()?;
    if m.first() != Some(&91) {
        return Err(format!("CHANNEL_OPEN answered with APF {:?}", m.first()));
    }
    let theirs = be32(&m, 5).ok_or("short confirmation")?;
    let http = b"POST /wsman HTTP/1.1\r\nHost: ::1:16992\r\nContent-Length: 0\r\n\r\n";
    let mut data = vec![94u8];
    data.extend_from_slice(&theirs.to_be_bytes());
    data.extend_from_slice(&(http.len() as u32).to_be_bytes());
    data.extend_from_slice(http);
    c.send(&data)?;
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let m = c.recv()?;
        if m.first() == Some(&94) {
            got.extend_from_slice(m.get(9..).unwrap_or(&[]));
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    result("lme.http_status", text.split(' ').nth(1).unwrap_or("?"));
    if let Some(i) = text.find("realm=\"") {
        let r = &text[i + 7..];
        result("lme.realm", r.split('"').next().unwrap_or(""));
    }
    let mut close = vec![97u8];
    close.extend_from_slice(&theirs.to_be_bytes());
    c.send(&close)?;
    loop {
        match c.recv() {
            Ok(m) if m.first() == Some(&97) => {
                result("lme.close", "ok");
                break;
            }
            Ok(_) => continue,
            Err(e) => return Err(format!("waiting for CHANNEL_CLOSE: {e}")),
        }
    }
    // the ME ends the MEI connection after a channel closes
    match c.recv() {
        Ok(m) => result("lme.after_close", format!("message {:?}", m.first())),
        Err(e) => result("lme.after_close", e),
    }
    drop(c);
    let mut c = connect(LME)?;
    let ports = lme_handshake(&mut c)?;
    result("lme.rehandshake", format!("ok {}", ports.len()));
    Ok(())
}

fn main() {
    for cmd in std::env::args().skip(1) {
        let r = match cmd.as_str() {
            "mkhi" => mkhi(),
            "amthi" => amthi(),
            "lme" => lme(),
            other => Err(format!("unknown command {other}")),
        };
        if let Err(e) = r {
            result(&format!("{cmd}.error"), e);
        }
    }
}

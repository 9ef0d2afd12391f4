//! `meiclient`: a tiny static MEI test client for the QEMU test node. It makes
//! the same system calls as the agent (open /dev/mei0, IOCTL_MEI_CONNECT_CLIENT,
//! one write per message, poll + read with a timeout) and prints what it got
//! as `RESULT key value` lines for the host-side tests.
//!
//!   meiclient mkhi     firmware versions and FWCAPS rules over MKHI
//!   meiclient amthi    AMT state over AMTHI
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

impl Conn {
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

fn main() {
    for cmd in std::env::args().skip(1) {
        let r = match cmd.as_str() {
            "mkhi" => mkhi(),
            "amthi" => amthi(),
            other => Err(format!("unknown command {other}")),
        };
        if let Err(e) = r {
            result(&format!("{cmd}.error"), e);
        }
    }
}

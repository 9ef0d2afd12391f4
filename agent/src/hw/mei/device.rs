//! A client connection on `/dev/meiN` (Linux UAPI `include/uapi/linux/mei.h`,
//! me-runtime.md §1.4).
//!
//! One connection per file descriptor; one firmware message per `write`;
//! `read` has no timeout in the kernel, so every read waits in `poll` with a
//! bound first. The MKHI and AMTHI logic talks to a [`MeiTransport`], so it is
//! testable without a device.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

/// A firmware client GUID, stored in the kernel's `uuid_le` byte order
/// (first three fields little-endian, last 8 bytes as written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientUuid {
    le: [u8; 16],
}

impl ClientUuid {
    /// From the textual fields `d1-d2-d3-d4[0..2]d4[2..8]`.
    pub const fn new(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Self {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        ClientUuid {
            le: [
                a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
                d4[5], d4[6], d4[7],
            ],
        }
    }

    /// The 16 bytes the connect ioctl takes.
    pub fn le_bytes(&self) -> [u8; 16] {
        self.le
    }
}

impl std::fmt::Display for ClientUuid {
    /// Lowercase text, as sysfs shows it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.le;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            l[3], l[2], l[1], l[0], l[5], l[4], l[7], l[6], l[8], l[9]
        )?;
        for b in &l[10..] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// MKHI, dynamic client (me-runtime.md §3.1).
pub const MKHI_UUID: ClientUuid = ClientUuid::new(
    0x8E6A_6715,
    0x9ABC,
    0x4043,
    [0x88, 0xEF, 0x9E, 0x39, 0xC6, 0xF6, 0x3E, 0x0F],
);
/// AMTHI / PTHI, the AMT host interface.
pub const AMTHI_UUID: ClientUuid = ClientUuid::new(
    0x12F8_0028,
    0xB4B7,
    0x4B2D,
    [0xAC, 0xA8, 0x46, 0xE0, 0xFF, 0x65, 0x81, 0x4C],
);

/// `_IOWR('H', 0x01, struct mei_connect_client_data)` (16 bytes).
const IOCTL_MEI_CONNECT_CLIENT: u64 = 0xC010_4801;

/// Errors on `/dev/meiN`.
#[derive(Debug, Error)]
pub enum MeiError {
    #[error("{path}: open: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: firmware client {uuid} is not there (ENOTTY)")]
    ClientAbsent { path: PathBuf, uuid: String },
    #[error("{path}: client {uuid} busy: another holder or firmware busy (EBUSY)")]
    Busy { path: PathBuf, uuid: String },
    #[error("{path}: device not enabled or gone (ENODEV): {op}")]
    DeviceGone { path: PathBuf, op: &'static str },
    #[error("{path}: no reply within {timeout:?}")]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("{path}: client disconnected or device reset (poll {revents:#x})")]
    Disconnected { path: PathBuf, revents: i16 },
    #[error("{path}: {op}: link reset or client disconnected (EIO): reconnect needed")]
    LinkReset { path: PathBuf, op: &'static str },
    #[error("{path}: message of {len} bytes exceeds the client's maximum {max}")]
    TooLong { path: PathBuf, len: usize, max: u32 },
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
}

/// One request-reply exchange with a connected firmware client.
pub trait MeiTransport {
    /// Sends one message and returns the one reply, waiting at most `timeout`.
    fn transact(&mut self, request: &[u8], timeout: Duration) -> Result<Vec<u8>, MeiError>;
}

/// What the connect ioctl returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClientProperties {
    pub max_msg_length: u32,
    pub protocol_version: u8,
}

/// A connected client on `/dev/meiN`. Closing the file disconnects it.
#[derive(Debug)]
pub struct MeiClient {
    file: File,
    path: PathBuf,
    props: ClientProperties,
}

impl MeiClient {
    /// Opens `dev_node` and connects to the client `uuid`.
    pub fn connect(dev_node: &Path, uuid: ClientUuid) -> Result<Self, MeiError> {
        let path = dev_node.to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dev_node)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ENODEV) => MeiError::DeviceGone {
                    path: path.clone(),
                    op: "open",
                },
                _ => MeiError::Open {
                    path: path.clone(),
                    source,
                },
            })?;
        let mut data = uuid.le_bytes();
        // SAFETY: `data` is the 16-byte `mei_connect_client_data` union the
        // ioctl reads (uuid) and overwrites (mei_client); it outlives the call.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                IOCTL_MEI_CONNECT_CLIENT as _,
                data.as_mut_ptr(),
            )
        };
        if rc < 0 {
            let source = io::Error::last_os_error();
            let uuid = uuid.to_string();
            return Err(match source.raw_os_error() {
                Some(libc::ENOTTY) => MeiError::ClientAbsent { path, uuid },
                Some(libc::EBUSY) => MeiError::Busy { path, uuid },
                Some(libc::ENODEV) => MeiError::DeviceGone {
                    path,
                    op: "connect",
                },
                _ => MeiError::Io {
                    path,
                    op: "connect ioctl",
                    source,
                },
            });
        }
        let props = ClientProperties {
            max_msg_length: u32::from_le_bytes([data[0], data[1], data[2], data[3]]),
            protocol_version: data[4],
        };
        Ok(MeiClient { file, path, props })
    }

    /// A client over an already-connected file (tests use a socket pair).
    #[cfg(test)]
    fn from_parts(file: File, path: PathBuf, props: ClientProperties) -> Self {
        MeiClient { file, path, props }
    }

    /// Properties the firmware reported on connect.
    pub fn properties(&self) -> ClientProperties {
        self.props
    }

    /// Sends one message (one `write`).
    pub fn send(&mut self, msg: &[u8]) -> Result<(), MeiError> {
        if msg.len() > self.props.max_msg_length as usize {
            return Err(MeiError::TooLong {
                path: self.path.clone(),
                len: msg.len(),
                max: self.props.max_msg_length,
            });
        }
        match self.file.write(msg) {
            Ok(n) if n == msg.len() => Ok(()),
            Ok(n) => Err(MeiError::Io {
                path: self.path.clone(),
                op: "write",
                source: io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("wrote {n} of {} bytes", msg.len()),
                ),
            }),
            Err(e) => Err(self.io_error("write", e)),
        }
    }

    /// Waits at most `timeout` for one message and returns it.
    pub fn receive(&mut self, timeout: Duration) -> Result<Vec<u8>, MeiError> {
        self.wait_readable(timeout)?;
        // A buffer of max_msg_length always holds one whole message.
        let mut buf = vec![0u8; (self.props.max_msg_length as usize).max(4)];
        let n = self
            .file
            .read(&mut buf)
            .map_err(|e| self.io_error("read", e))?;
        if n == 0 {
            // End of file: the other side is gone.
            return Err(MeiError::Disconnected {
                path: self.path.clone(),
                revents: 0,
            });
        }
        buf.truncate(n);
        Ok(buf)
    }

    fn wait_readable(&self, timeout: Duration) -> Result<(), MeiError> {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        loop {
            // SAFETY: one valid pollfd for the duration of the call.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.io_error("poll", e));
            }
            if rc == 0 {
                return Err(MeiError::Timeout {
                    path: self.path.clone(),
                    timeout,
                });
            }
            if pfd.revents & libc::POLLIN != 0 {
                return Ok(());
            }
            return Err(MeiError::Disconnected {
                path: self.path.clone(),
                revents: pfd.revents,
            });
        }
    }

    fn io_error(&self, op: &'static str, source: io::Error) -> MeiError {
        let path = self.path.clone();
        match source.raw_os_error() {
            Some(libc::ENODEV) => MeiError::DeviceGone { path, op },
            // The driver fails pending I/O with EIO when the ME resets the link.
            Some(libc::EIO) => MeiError::LinkReset { path, op },
            _ => MeiError::Io { path, op, source },
        }
    }
}

impl MeiTransport for MeiClient {
    fn transact(&mut self, request: &[u8], timeout: Duration) -> Result<Vec<u8>, MeiError> {
        self.send(request)?;
        self.receive(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_le_layout_matches_the_kernel() {
        // me-runtime.md §1.4: 12F80028-B4B7-4B2D-ACA8-46E0FF65814C.
        assert_eq!(
            AMTHI_UUID.le_bytes(),
            [
                0x28, 0x00, 0xF8, 0x12, 0xB7, 0xB4, 0x2D, 0x4B, 0xAC, 0xA8, 0x46, 0xE0, 0xFF, 0x65,
                0x81, 0x4C
            ]
        );
        assert_eq!(
            AMTHI_UUID.to_string(),
            "12f80028-b4b7-4b2d-aca8-46e0ff65814c"
        );
        assert_eq!(
            MKHI_UUID.to_string(),
            "8e6a6715-9abc-4043-88ef-9e39c6f63e0f"
        );
    }

    fn pair(max: u32) -> (MeiClient, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let file = File::from(std::os::fd::OwnedFd::from(a));
        let props = ClientProperties {
            max_msg_length: max,
            protocol_version: 1,
        };
        (MeiClient::from_parts(file, "pair".into(), props), b)
    }

    #[test]
    fn receive_waits_with_a_bound() {
        let (mut c, _peer) = pair(64);
        let err = c.receive(Duration::from_millis(30)).unwrap_err();
        assert!(matches!(err, MeiError::Timeout { .. }), "{err}");
    }

    #[test]
    fn one_message_each_way() {
        let (mut c, mut peer) = pair(64);
        c.send(&[0xFF, 0x02, 0, 0]).unwrap();
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, [0xFF, 0x02, 0, 0]);
        peer.write_all(&[0xFF, 0x82, 0, 0, 1, 2]).unwrap();
        assert_eq!(
            c.receive(Duration::from_secs(5)).unwrap(),
            vec![0xFF, 0x82, 0, 0, 1, 2]
        );
        let err = c.send(&[0u8; 65]).unwrap_err();
        assert!(matches!(
            err,
            MeiError::TooLong {
                len: 65,
                max: 64,
                ..
            }
        ));
    }

    #[test]
    fn peer_gone_is_a_disconnect_not_a_hang() {
        let (mut c, peer) = pair(64);
        drop(peer);
        let err = c.receive(Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, MeiError::Disconnected { .. }), "{err}");
    }

    #[test]
    fn connect_on_a_file_that_is_not_a_mei_device_says_so() {
        // A regular file answers the MEI ioctl with ENOTTY: that must read as
        // "client absent", never as success.
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let err = MeiClient::connect(tmp.path(), MKHI_UUID).unwrap_err();
        assert!(matches!(err, MeiError::ClientAbsent { .. }), "{err}");
        let err = MeiClient::connect(Path::new("/nonexistent/mei9"), MKHI_UUID).unwrap_err();
        assert!(matches!(err, MeiError::Open { .. }), "{err}");
    }
}

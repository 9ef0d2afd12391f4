//! Byte pipes to a TPM: the kernel's resource manager (`/dev/tpmrm0`) on a
//! node, a swtpm Unix socket in tests. Both carry raw TPM 2.0 command and
//! response frames.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Largest response accepted (TPM responses are at most a few KiB).
pub const MAX_RESPONSE: usize = 64 * 1024;
const HEADER: usize = 10;
/// Longest wait for one response (RSA key generation in a software TPM on
/// a loaded machine takes seconds, not minutes).
const SOCKET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{device}: open: {source}")]
    Open {
        device: PathBuf,
        source: std::io::Error,
    },
    #[error("{device}: {op} of a {len}-byte frame: {source}")]
    Io {
        device: PathBuf,
        op: &'static str,
        len: usize,
        source: std::io::Error,
    },
    #[error(
        "{device}: response header says {size} bytes (limit {MAX_RESPONSE}, minimum {HEADER})"
    )]
    BadSize { device: PathBuf, size: usize },
}

/// Sends one command frame and returns the whole response frame.
pub trait Transport {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError>;
}

/// `/dev/tpmrm0` (or `/dev/tpm0`): one write, one read per command.
pub struct DeviceTransport {
    path: PathBuf,
    file: File,
}

impl DeviceTransport {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, TransportError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| TransportError::Open {
                device: path.clone(),
                source,
            })?;
        Ok(DeviceTransport { path, file })
    }
}

impl Transport for DeviceTransport {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let io = |op, len, source| TransportError::Io {
            device: self.path.clone(),
            op,
            len,
            source,
        };
        self.file
            .write_all(command)
            .map_err(|e| io("write", command.len(), e))?;
        // The kernel returns the whole response to a single read.
        let mut buf = vec![0u8; MAX_RESPONSE];
        let n = self
            .file
            .read(&mut buf)
            .map_err(|e| io("read", MAX_RESPONSE, e))?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// A swtpm server socket (`swtpm socket --server type=unixio,path=...`).
pub struct SocketTransport {
    path: PathBuf,
    stream: UnixStream,
}

impl SocketTransport {
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, TransportError> {
        let path = path.as_ref().to_path_buf();
        let open = |source| TransportError::Open {
            device: path.clone(),
            source,
        };
        let stream = UnixStream::connect(&path).map_err(open)?;
        // swtpm serves one connection at a time: a second client waits
        // forever. A timeout turns that mistake into an error.
        stream
            .set_read_timeout(Some(SOCKET_TIMEOUT))
            .map_err(open)?;
        Ok(SocketTransport { path, stream })
    }
}

impl Transport for SocketTransport {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let io = |op, len, source| TransportError::Io {
            device: self.path.clone(),
            op,
            len,
            source,
        };
        self.stream
            .write_all(command)
            .map_err(|e| io("write", command.len(), e))?;
        // A stream: read the header, then exactly the size it announces.
        let mut header = [0u8; HEADER];
        self.stream
            .read_exact(&mut header)
            .map_err(|e| io("read header", HEADER, e))?;
        let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
        if !(HEADER..=MAX_RESPONSE).contains(&size) {
            return Err(TransportError::BadSize {
                device: self.path.clone(),
                size,
            });
        }
        let mut frame = header.to_vec();
        frame.resize(size, 0);
        if let Some(body) = frame.get_mut(HEADER..) {
            self.stream
                .read_exact(body)
                .map_err(|e| io("read body", size, e))?;
        }
        Ok(frame)
    }
}

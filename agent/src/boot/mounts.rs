//! The filesystems PID 1 needs before anything else: proc, sys, devtmpfs
//! (Debian's kernel does not mount it itself: DEVTMPFS_MOUNT is off), and a
//! tmpfs on /tmp and /run for flashrom's scratch files and udhcpc.

use std::ffi::CString;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount {fstype} on {target}: {source}")]
    Mount {
        fstype: String,
        target: String,
        source: std::io::Error,
    },
    #[error("{path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: std::io::Error,
    },
}

/// One mount: source, target, fstype, flags, data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountSpec {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: libc::c_ulong,
    pub data: &'static str,
}

/// What PID 1 mounts, in order.
pub const EARLY_MOUNTS: &[MountSpec] = &[
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: "",
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: "",
    },
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: libc::MS_NOSUID,
        data: "mode=0755",
    },
    MountSpec {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=1777",
    },
    MountSpec {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=0755",
    },
];

fn cstr(s: &str) -> CString {
    // Our mount strings are constants or config paths checked for NUL.
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// Mounts `fstype` from `source` on `target`, creating the folder. A target
/// that is already mounted (EBUSY) counts as done.
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<(), MountError> {
    std::fs::create_dir_all(target).map_err(|e| MountError::Io {
        path: target.into(),
        op: "create folder",
        source: e,
    })?;
    let (s, t, f, d) = (cstr(source), cstr(target), cstr(fstype), cstr(data));
    // SAFETY: all pointers are NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            f.as_ptr(),
            flags,
            if data.is_empty() {
                std::ptr::null()
            } else {
                d.as_ptr().cast()
            },
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EBUSY) {
        return Ok(());
    }
    Err(MountError::Mount {
        fstype: fstype.into(),
        target: target.into(),
        source: e,
    })
}

/// Mounts [`EARLY_MOUNTS`]. /dev/pts is skipped: the agent runs no ttys.
pub fn mount_early() -> Result<(), MountError> {
    for m in EARLY_MOUNTS {
        // /tmp and /run may be missing from a tiny initramfs: mount creates them.
        mount(m.source, m.target, m.fstype, m.flags, m.data)?;
    }
    Ok(())
}

/// Gives PID 1 a console on fds 0, 1 and 2 when the kernel could not (an
/// initramfs without a `/dev/console` node starts init with them closed):
/// opens `/dev/console` from devtmpfs and duplicates it onto the closed ones.
pub fn ensure_console() {
    // SAFETY: fcntl(F_GETFD) only queries; open/dup2/close act on fds we own.
    unsafe {
        let closed: Vec<i32> = (0..3)
            .filter(|fd| libc::fcntl(*fd, libc::F_GETFD) == -1)
            .collect();
        if closed.is_empty() {
            return;
        }
        let path = c"/dev/console";
        let fd = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        if fd < 0 {
            return;
        }
        for target in closed {
            if fd != target {
                libc::dup2(fd, target);
            }
        }
        if fd > 2 {
            libc::close(fd);
        }
    }
}

/// Whether `path` is a mount point (its device differs from its parent's).
pub fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Some(parent)) = (std::fs::metadata(path), path.parent()) else {
        return false;
    };
    std::fs::metadata(parent).is_ok_and(|p| p.dev() != m.dev())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_mounts_cover_what_pid1_needs_in_order() {
        let targets: Vec<_> = EARLY_MOUNTS.iter().map(|m| m.target).collect();
        assert_eq!(targets, ["/proc", "/sys", "/dev", "/tmp", "/run"]);
        // devtmpfs must come before anything that opens /dev/kmsg or /dev/mtd0.
        assert_eq!(EARLY_MOUNTS[2].fstype, "devtmpfs");
    }

    #[test]
    fn proc_is_a_mount_point_here() {
        assert!(is_mount_point(Path::new("/proc")));
    }
}

//! Handing the machine to the OS: `kexec_file_load` of the OS kernel (with
//! its initrd and command line, read from the OS root) followed by
//! `reboot(LINUX_REBOOT_CMD_KEXEC)`, or `switch_root` onto the OS root.
//!
//! Note: `kexec_file_load` on x86 takes a bzImage (not the PVH vmlinux), and
//! under lockdown (Secure Boot) it needs a kernel signed by a trusted key;
//! otherwise it fails with EPERM, which we report as such.

use super::config::{Handoff, HandoffMethod};
use super::mounts;
use std::ffi::CString;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Where the OS root is mounted.
pub const NEW_ROOT: &str = "/newroot";

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("handoff: {0}")]
    Mount(#[from] mounts::MountError),
    #[error("handoff: {path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("handoff: kexec_file_load of {kernel}: {source}{hint}")]
    Kexec {
        kernel: String,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("handoff: {0}")]
    Config(String),
}

/// The byte string `kexec_file_load` wants: the command line with its NUL.
pub fn kexec_cmdline(cmdline: &str) -> Result<CString, HandoffError> {
    CString::new(cmdline).map_err(|_| HandoffError::Config("command line contains NUL".into()))
}

/// `path` (absolute, inside the OS root) as a path under [`NEW_ROOT`].
pub fn in_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> HandoffError {
    let path = path.display().to_string();
    move |source| HandoffError::Io { path, op, source }
}

/// Mounts the OS root read-only at [`NEW_ROOT`].
pub fn mount_root(h: &Handoff) -> Result<PathBuf, HandoffError> {
    let dev = h
        .root
        .as_deref()
        .ok_or_else(|| HandoffError::Config("no root device configured".into()))?;
    mounts::mount(dev, NEW_ROOT, &h.fstype, libc::MS_RDONLY, "")?;
    Ok(PathBuf::from(NEW_ROOT))
}

/// Loads the OS kernel for kexec. Does not return on success of [`kexec_now`].
pub fn kexec_load(h: &Handoff, root: &Path) -> Result<(), HandoffError> {
    let kernel_path = in_root(
        root,
        h.kernel
            .as_deref()
            .ok_or_else(|| HandoffError::Config("no kernel configured".into()))?,
    );
    let kernel = std::fs::File::open(&kernel_path).map_err(io(&kernel_path, "open kernel"))?;
    let initrd = match &h.initrd {
        Some(p) => {
            let p = in_root(root, p);
            Some(std::fs::File::open(&p).map_err(io(&p, "open initrd"))?)
        }
        None => None,
    };
    let cmdline = kexec_cmdline(&h.cmdline)?;
    let bytes = cmdline.as_bytes_with_nul();
    let flags: libc::c_ulong = if initrd.is_none() {
        0x4 // KEXEC_FILE_NO_INITRAMFS
    } else {
        0
    };
    // SAFETY: fds are open for the call; cmdline is NUL-terminated with the given length.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            kernel.as_raw_fd(),
            initrd.as_ref().map_or(-1, |f| f.as_raw_fd()),
            bytes.len() as libc::c_ulong,
            bytes.as_ptr(),
            flags,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let hint = match e.raw_os_error() {
            Some(libc::EPERM) => {
                " (lockdown: the kernel must be signed by a key the running kernel trusts)"
            }
            Some(libc::ENOEXEC) => " (not a bzImage the kernel can load)",
            _ => "",
        };
        return Err(HandoffError::Kexec {
            kernel: kernel_path.display().to_string(),
            source: e,
            hint,
        });
    }
    log::info!("handoff: kexec loaded {}", kernel_path.display());
    Ok(())
}

/// Jumps into the loaded kernel. Returns only on failure.
pub fn kexec_now() -> HandoffError {
    // SAFETY: plain syscalls; sync first so nothing buffered is lost.
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_KEXEC);
    }
    HandoffError::Io {
        path: "reboot(KEXEC)".into(),
        op: "kexec",
        source: std::io::Error::last_os_error(),
    }
}

/// The kernel filesystems the OS gets already mounted, as util-linux's
/// switch_root moves them.
pub const MOVED_MOUNTS: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];

/// Moves each of [`MOVED_MOUNTS`] under `root` when `root` has the folder
/// (a read-only root can still be mounted on); otherwise detaches it, so
/// nothing of the initramfs stays reachable. Failures are logged, not
/// fatal: the OS's init mounts what it misses.
fn move_kernel_mounts(root: &Path) {
    for m in MOVED_MOUNTS {
        let target = in_root(root, m);
        let (Ok(src), Ok(dst)) = (CString::new(m), CString::new(target.display().to_string()))
        else {
            continue;
        };
        // SAFETY: NUL-terminated strings that outlive the calls.
        let rc = unsafe {
            if target.is_dir() {
                libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_MOVE,
                    std::ptr::null(),
                )
            } else {
                libc::umount2(src.as_ptr(), libc::MNT_DETACH)
            }
        };
        if rc != 0 {
            log::warn!(
                "handoff: {m} -> {}: {}",
                target.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Makes `root` the root filesystem and executes `init` there as PID 1,
/// with /dev, /proc, /sys and /run moved along. Returns only on failure.
/// (The initramfs's files stay in memory; the agent's initramfs is small.)
pub fn switch_root(root: &Path, init: &str) -> HandoffError {
    let root_s = root.display().to_string();
    let r = (|| -> Result<std::convert::Infallible, HandoffError> {
        let init_path = in_root(root, init);
        if !init_path.exists() {
            return Err(HandoffError::Config(format!(
                "{} does not exist",
                init_path.display()
            )));
        }
        // The console stays open on fds 0-2 through all this: the OS's init
        // inherits it.
        move_kernel_mounts(root);
        std::env::set_current_dir(root).map_err(io(root, "chdir"))?;
        let dot = CString::new(".").unwrap_or_default();
        let slash = CString::new("/").unwrap_or_default();
        let croot =
            CString::new(root_s.as_str()).map_err(|_| HandoffError::Config("root path".into()))?;
        // SAFETY: NUL-terminated strings that outlive the calls.
        unsafe {
            if libc::mount(
                croot.as_ptr(),
                slash.as_ptr(),
                std::ptr::null(),
                libc::MS_MOVE,
                std::ptr::null(),
            ) != 0
            {
                return Err(io(root, "move mount to /")(std::io::Error::last_os_error()));
            }
            if libc::chroot(dot.as_ptr()) != 0 {
                return Err(io(root, "chroot")(std::io::Error::last_os_error()));
            }
        }
        std::env::set_current_dir("/").map_err(io(Path::new("/"), "chdir"))?;
        use std::os::unix::process::CommandExt;
        let e = std::process::Command::new(init).exec();
        Err(io(Path::new(init), "exec init")(e))
    })();
    match r {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

/// Powers the machine off (after `sync`). Returns only on failure.
pub fn power_off() -> HandoffError {
    // SAFETY: plain syscalls.
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF);
    }
    HandoffError::Io {
        path: "reboot(POWER_OFF)".into(),
        op: "power off",
        source: std::io::Error::last_os_error(),
    }
}

/// Performs the configured handoff. Returns only on failure (or, for
/// `None`, after powering off failed).
pub fn hand_off(h: &Handoff) -> HandoffError {
    let r = match h.method {
        HandoffMethod::None => return power_off(),
        // Without a root device, the kernel and initrd are in the initramfs.
        HandoffMethod::Kexec if h.root.is_none() => kexec_load(h, Path::new("/")),
        HandoffMethod::Kexec => mount_root(h).and_then(|root| {
            let r = kexec_load(h, &root);
            // The OS kernel is in memory now; the root can go.
            if let Ok(c) = CString::new(root.display().to_string()) {
                // SAFETY: a NUL-terminated path that outlives the call.
                unsafe { libc::umount(c.as_ptr()) };
            }
            r
        }),
        HandoffMethod::SwitchRoot => mount_root(h).map(|_| ()),
    };
    if let Err(e) = r {
        return e;
    }
    match h.method {
        HandoffMethod::Kexec => kexec_now(),
        _ => switch_root(Path::new(NEW_ROOT), &h.init),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_the_root() {
        assert_eq!(
            in_root(Path::new("/newroot"), "/boot/vmlinuz"),
            PathBuf::from("/newroot/boot/vmlinuz")
        );
    }

    #[test]
    fn cmdline_is_nul_terminated_and_checked() {
        let c = kexec_cmdline("console=ttyS0 quiet").unwrap();
        assert_eq!(c.as_bytes_with_nul().last(), Some(&0));
        assert_eq!(c.as_bytes_with_nul().len(), "console=ttyS0 quiet".len() + 1);
        assert!(kexec_cmdline("a\0b").is_err());
    }

    #[test]
    fn missing_kernel_is_named() {
        let h = Handoff {
            method: HandoffMethod::Kexec,
            root: Some("/dev/null".into()),
            fstype: "ext4".into(),
            kernel: Some("/boot/nope".into()),
            initrd: None,
            cmdline: String::new(),
            init: "/sbin/init".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        let e = kexec_load(&h, dir.path()).unwrap_err().to_string();
        assert!(e.contains("boot/nope: open kernel"), "{e}");
    }
}

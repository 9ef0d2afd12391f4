//! The flash as a Linux MTD character device (`/dev/mtdN`): discovery
//! through `/proc/mtd`, geometry through the MEMGETINFO ioctl, `pread`,
//! MEMERASE per erase block range, `pwrite`.
//!
//! On real Intel hardware the BIOS flash appears as MTD only with the
//! spi-intel driver (not built in Debian's kernels; see docs/flash.md). In
//! the QEMU tests, block2mtd exposes a raw image as `/dev/mtd0`; it reports
//! type `ram`, not `nor`, so RAM-type devices are accepted only when
//! `FORTROS_MTD_ALLOW_RAM=1` is set (a kernel command line word reaches
//! PID 1 as that environment variable).

use super::{check_erase, check_range, Flash, FlashError};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// `struct mtd_info_user` from `<mtd/mtd-abi.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct MtdInfoUser {
    kind: u8,
    flags: u32,
    size: u32,
    erasesize: u32,
    writesize: u32,
    oobsize: u32,
    padding: u64,
}

/// `struct erase_info_user`.
#[repr(C)]
struct EraseInfoUser {
    start: u32,
    length: u32,
}

// _IOR('M', 1, struct mtd_info_user) and _IOW('M', 2, struct erase_info_user).
const MEMGETINFO: u64 = 0x8020_4D01;
const MEMERASE: u64 = 0x4008_4D02;

const MTD_RAM: u8 = 1;
const MTD_NORFLASH: u8 = 3;
const MTD_WRITEABLE: u32 = 0x400;

/// The environment switch that lets tests use block2mtd / mtdram devices.
pub const ALLOW_RAM_ENV: &str = "FORTROS_MTD_ALLOW_RAM";

/// One line of `/proc/mtd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcMtdEntry {
    pub index: u32,
    pub size: u64,
    pub erase_size: u32,
    pub name: String,
}

/// Parses `/proc/mtd`:
/// ```text
/// dev:    size   erasesize  name
/// mtd0: 01000000 00001000 "block2mtd: /dev/vda"
/// ```
pub fn parse_proc_mtd(text: &str) -> Result<Vec<ProcMtdEntry>, FlashError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with("dev:") {
            continue;
        }
        let bad = |what: &str| FlashError::ProcMtd {
            line: line_no,
            what: format!("{what} in {line:?}"),
        };
        let (dev, rest) = line.split_once(':').ok_or_else(|| bad("no ':'"))?;
        let index = dev
            .strip_prefix("mtd")
            .and_then(|i| i.parse::<u32>().ok())
            .ok_or_else(|| bad("device is not mtdN"))?;
        let mut fields = rest.trim_start().splitn(3, ' ');
        let size = fields
            .next()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| bad("bad size"))?;
        let erase_size = fields
            .next()
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .ok_or_else(|| bad("bad erase size"))?;
        let name = fields
            .next()
            .map(|s| s.trim().trim_matches('"').to_string())
            .ok_or_else(|| bad("no name"))?;
        out.push(ProcMtdEntry {
            index,
            size,
            erase_size,
            name,
        });
    }
    Ok(out)
}

/// Picks the BIOS flash among the MTD devices: the only one, or the one
/// whose name says BIOS (spi-intel names its partition so). Anything else
/// is ambiguous and must be named explicitly.
pub fn choose(entries: &[ProcMtdEntry]) -> Result<&ProcMtdEntry, FlashError> {
    match entries {
        [] => Err(FlashError::NoMtd {
            hint: String::new(),
        }),
        [only] => Ok(only),
        many => many
            .iter()
            .find(|e| e.name.to_ascii_lowercase().contains("bios"))
            .ok_or_else(|| FlashError::NoMtd {
                hint: format!(
                    " that is clearly the BIOS flash among {}; name one with mtd:/dev/mtdN",
                    many.iter()
                        .map(|e| format!("mtd{} \"{}\"", e.index, e.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
    }
}

/// An open MTD device.
#[derive(Debug)]
pub struct MtdFlash {
    path: PathBuf,
    file: File,
    info: MtdInfoUser,
    writable: bool,
}

impl MtdFlash {
    /// Finds the flash through `/proc/mtd` and opens it.
    pub fn discover() -> Result<Self, FlashError> {
        let text = std::fs::read_to_string("/proc/mtd").map_err(|source| FlashError::Open {
            device: "/proc/mtd".into(),
            source,
        })?;
        let entries = parse_proc_mtd(&text)?;
        let e = choose(&entries)?;
        log::info!("flash: using mtd{} \"{}\" from /proc/mtd", e.index, e.name);
        Self::open(format!("/dev/mtd{}", e.index))
    }

    /// Opens `/dev/mtdN` and asks the driver for its geometry.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FlashError> {
        let allow_ram = std::env::var(ALLOW_RAM_ENV).is_ok_and(|v| v == "1");
        Self::open_with(path, allow_ram)
    }

    /// As [`MtdFlash::open`], saying whether RAM-type devices are acceptable.
    pub fn open_with(path: impl AsRef<Path>, allow_ram: bool) -> Result<Self, FlashError> {
        let path = path.as_ref().to_path_buf();
        let (file, writable) = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => (f, true),
            Err(_) => (
                File::open(&path).map_err(|source| FlashError::Open {
                    device: path.clone(),
                    source,
                })?,
                false,
            ),
        };
        let mut info = MtdInfoUser::default();
        // SAFETY: MEMGETINFO writes one mtd_info_user into the pointed struct,
        // which is repr(C), of the kernel's size (32 bytes), and lives across the call.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                MEMGETINFO as _,
                &mut info as *mut MtdInfoUser,
            )
        };
        if rc != 0 {
            return Err(FlashError::Io {
                device: path.display().to_string(),
                op: "MEMGETINFO",
                offset: 0,
                len: 0,
                source: std::io::Error::last_os_error(),
            });
        }
        let dev = path.display().to_string();
        match info.kind {
            MTD_NORFLASH => {}
            MTD_RAM if allow_ram => log::warn!("{dev}: RAM-type MTD accepted ({ALLOW_RAM_ENV}=1)"),
            k => {
                return Err(FlashError::Device {
                    device: dev,
                    what: format!(
                        "MTD type {k} is not NOR flash (3){}",
                        if k == MTD_RAM {
                            format!("; set {ALLOW_RAM_ENV}=1 to accept RAM-type test devices")
                        } else {
                            String::new()
                        }
                    ),
                })
            }
        }
        if info.erasesize == 0 || !info.erasesize.is_power_of_two() || info.size == 0 {
            return Err(FlashError::Device {
                device: dev,
                what: format!(
                    "unusable geometry: size {:#x}, erase size {:#x}",
                    info.size, info.erasesize
                ),
            });
        }
        log::info!(
            "{dev}: MTD type {} flags {:#x} size {:#x} erase {:#x} write {:#x}",
            info.kind,
            info.flags,
            info.size,
            info.erasesize,
            info.writesize
        );
        Ok(MtdFlash {
            path,
            file,
            info,
            writable: writable && info.flags & MTD_WRITEABLE != 0,
        })
    }

    fn check_writable(&self, op: &'static str, offset: u64, len: u64) -> Result<(), FlashError> {
        if self.writable {
            Ok(())
        } else {
            Err(self.io_error(
                op,
                offset,
                len,
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "device is read-only (not opened for writing, or MTD_WRITEABLE unset: \
                     spi-intel needs writeable=1)",
                ),
            ))
        }
    }
}

impl MtdFlash {
    /// Makes the bytes just written durable before the caller logs them as
    /// written. mtdchar has no fsync (it fails with EINVAL); the only way to
    /// reach the driver's `_sync` from user space is closing a descriptor
    /// opened for writing (mtdchar_close calls mtd_sync). block2mtd keeps
    /// erases and writes in the page cache of its block device until then,
    /// so without this a power cut loses "verified" runs; spi-nor writes
    /// synchronously and has no `_sync`, so there this costs one open.
    fn sync(&self, offset: u64, len: u64) -> Result<(), FlashError> {
        OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map(drop)
            .map_err(|e| self.io_error("sync (open+close for mtd_sync)", offset, len, e))
    }
}

impl Flash for MtdFlash {
    fn name(&self) -> String {
        self.path.display().to_string()
    }
    fn size(&self) -> u64 {
        u64::from(self.info.size)
    }
    fn erase_block_size(&self) -> u32 {
        self.info.erasesize
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), FlashError> {
        let len = buf.len() as u64;
        check_range(&self.name(), offset, len, self.size())?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| self.io_error("read", offset, len, e))
    }
    fn erase(&mut self, offset: u64, len: u64) -> Result<(), FlashError> {
        check_erase(&self.name(), offset, len, self.size(), self.info.erasesize)?;
        self.check_writable("erase", offset, len)?;
        // One MEMERASE per erase block, so a failure names its block.
        let mut at = offset;
        while at < offset + len {
            let req = EraseInfoUser {
                start: at as u32, // fits: offset < size, which is a u32
                length: self.info.erasesize,
            };
            // SAFETY: MEMERASE reads one erase_info_user (repr(C), 8 bytes) from the pointer.
            let rc = unsafe {
                libc::ioctl(
                    self.file.as_raw_fd(),
                    MEMERASE as _,
                    &req as *const EraseInfoUser,
                )
            };
            if rc != 0 {
                return Err(self.io_error(
                    "MEMERASE",
                    at,
                    u64::from(self.info.erasesize),
                    std::io::Error::last_os_error(),
                ));
            }
            at += u64::from(self.info.erasesize);
        }
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), FlashError> {
        let len = data.len() as u64;
        check_range(&self.name(), offset, len, self.size())?;
        self.check_writable("write", offset, len)?;
        self.file
            .write_all_at(data, offset)
            .map_err(|e| self.io_error("write", offset, len, e))?;
        self.sync(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_mtd() {
        let text = "dev:    size   erasesize  name\nmtd0: 01000000 00001000 \"block2mtd: /dev/vda\"\nmtd1: 00800000 00010000 \"BIOS\"\n";
        let e = parse_proc_mtd(text).unwrap();
        assert_eq!(
            e,
            vec![
                ProcMtdEntry {
                    index: 0,
                    size: 0x100_0000,
                    erase_size: 0x1000,
                    name: "block2mtd: /dev/vda".into()
                },
                ProcMtdEntry {
                    index: 1,
                    size: 0x80_0000,
                    erase_size: 0x1_0000,
                    name: "BIOS".into()
                }
            ]
        );
        assert_eq!(choose(&e).unwrap().index, 1);
        assert_eq!(choose(&e[..1]).unwrap().index, 0);
    }

    #[test]
    fn empty_or_ambiguous_proc_mtd() {
        assert!(parse_proc_mtd("dev:    size   erasesize  name\n")
            .unwrap()
            .is_empty());
        assert!(matches!(choose(&[]), Err(FlashError::NoMtd { .. })));
        let two = parse_proc_mtd("mtd0: 1000 1000 \"a\"\nmtd1: 1000 1000 \"b\"\n").unwrap();
        let e = choose(&two).unwrap_err().to_string();
        assert!(e.contains("mtd0 \"a\", mtd1 \"b\""), "{e}");
    }

    #[test]
    fn malformed_proc_mtd_names_the_line() {
        let e = parse_proc_mtd("dev: x\nmtd0: zz 1000 \"a\"\n").unwrap_err();
        assert!(matches!(e, FlashError::ProcMtd { line: 2, .. }), "{e}");
        assert!(parse_proc_mtd("sda: 1 1 \"x\"").is_err());
        assert!(parse_proc_mtd("mtd0: 1000").is_err());
    }

    #[test]
    fn ioctl_numbers_match_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<MtdInfoUser>(), 32);
        assert_eq!(std::mem::size_of::<EraseInfoUser>(), 8);
        // _IOR = dir 2 << 30 | size << 16 | type << 8 | nr
        assert_eq!(MEMGETINFO, (2 << 30) | (32 << 16) | (0x4D << 8) | 1);
        assert_eq!(MEMERASE, (1 << 30) | (8 << 16) | (0x4D << 8) | 2);
    }

    #[test]
    fn a_regular_file_is_not_an_mtd() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let e = MtdFlash::open_with(tmp.path(), true).unwrap_err();
        assert!(e.to_string().contains("MEMGETINFO"), "{e}");
    }
}

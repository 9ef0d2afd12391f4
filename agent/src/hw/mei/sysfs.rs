//! Finding the ME in sysfs: the PCI function 00:16.0, its config space
//! (HFSTS1-6), and the `mei` class device that belongs to it
//! (me-runtime.md §1.3, §1.5, §8).
//!
//! Every path is taken relative to a root folder ([`SysRoot`]), `/` on a
//! node, a temporary tree shaped like sysfs in tests. `/dev/meiN` is never
//! taken on faith: the class device must have 00:16.0 as its parent and
//! `kind` == `mei` (an iTouch MEI or a discrete GPU's GSC is another meiN).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

use super::hfsts::Hfsts;

/// The PCI address of HECI1, the only function whose HFSTS means the ME status.
pub const ME_BDF: &str = "0000:00:16.0";

/// Config-space offsets of HFSTS1-6 (me-runtime.md §1.3).
pub const HFSTS_OFFSETS: [u64; 6] = [0x40, 0x48, 0x60, 0x64, 0x68, 0x6C];

/// Errors reading sysfs.
#[derive(Debug, Error)]
pub enum SysfsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: config space ends before offset {offset:#x} (reading past 64 bytes needs root)"
    )]
    ConfigTruncated { path: PathBuf, offset: u64 },
    #[error("{path}: line {line}: {what}")]
    Parse {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("{path}: dev_state stayed {last:?} for {waited:?} (wanted ENABLED)")]
    NotEnabled {
        path: PathBuf,
        last: String,
        waited: Duration,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SysfsError + '_ {
    move |source| SysfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The root all sysfs and /dev paths are relative to.
#[derive(Debug, Clone)]
pub struct SysRoot {
    root: PathBuf,
}

impl Default for SysRoot {
    fn default() -> Self {
        SysRoot::new("/")
    }
}

impl SysRoot {
    /// A root folder: `/` on a node.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SysRoot { root: root.into() }
    }

    /// `rel` (an absolute-looking path like `/sys/class/mei`) under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// The sysfs folder of a PCI function.
    pub fn pci_device(&self, bdf: &str) -> PathBuf {
        self.path(&format!("/sys/bus/pci/devices/{bdf}"))
    }
}

/// Identity of a PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PciIds {
    pub vendor: u16,
    pub device: u16,
    pub class: u32,
}

/// Reads vendor, device and class of `bdf`; `Ok(None)` when there is no such device.
pub fn read_pci_ids(root: &SysRoot, bdf: &str) -> Result<Option<PciIds>, SysfsError> {
    let dir = root.pci_device(bdf);
    if !dir.exists() {
        return Ok(None);
    }
    let vendor = read_hex_attr(&dir.join("vendor"))?;
    let device = read_hex_attr(&dir.join("device"))?;
    let class = read_hex_attr(&dir.join("class"))?;
    let narrow = |v: u32, path: PathBuf| {
        u16::try_from(v).map_err(|_| SysfsError::Parse {
            path,
            line: 1,
            what: format!("{v:#x} does not fit 16 bits"),
        })
    };
    Ok(Some(PciIds {
        vendor: narrow(vendor, dir.join("vendor"))?,
        device: narrow(device, dir.join("device"))?,
        class,
    }))
}

/// Reads an attribute like `0x8086\n`.
fn read_hex_attr(path: &Path) -> Result<u32, SysfsError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    let t = text.trim();
    let digits = t.strip_prefix("0x").unwrap_or(t);
    u32::from_str_radix(digits, 16).map_err(|_| SysfsError::Parse {
        path: path.to_path_buf(),
        line: 1,
        what: format!("{t:?} is not a hex number"),
    })
}

/// Reads HFSTS1-6 from the PCI config space of `bdf` (needs root past 64 bytes).
pub fn read_hfsts_config(root: &SysRoot, bdf: &str) -> Result<Hfsts, SysfsError> {
    let path = root.pci_device(bdf).join("config");
    let file = File::open(&path).map_err(io_err(&path))?;
    let mut regs = [0u32; 6];
    for (reg, &offset) in regs.iter_mut().zip(HFSTS_OFFSETS.iter()) {
        let mut buf = [0u8; 4];
        file.read_exact_at(&mut buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                SysfsError::ConfigTruncated {
                    path: path.clone(),
                    offset,
                }
            } else {
                SysfsError::Io {
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        *reg = u32::from_le_bytes(buf);
    }
    Ok(Hfsts(regs))
}

/// One `mei` class device (`/sys/class/mei/meiN`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeiClassDevice {
    /// `meiN`.
    pub name: String,
    /// Its sysfs folder.
    pub sysfs: PathBuf,
    /// Its character device (`/dev/meiN` under the root).
    pub dev_node: PathBuf,
    /// The `kind` attribute (`None` on kernels before 5.8).
    pub kind: Option<String>,
}

/// A `mei` class device that was looked at and not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub name: String,
    pub reason: String,
}

/// The result of looking for the ME's class device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MeiDiscovery {
    pub device: Option<MeiClassDevice>,
    pub rejected: Vec<Rejected>,
}

/// Finds the `mei` class device whose parent is `bdf` and whose kind is `mei`.
/// No `/sys/class/mei` at all is not an error: the driver is not loaded.
pub fn find_mei_device(root: &SysRoot, bdf: &str) -> Result<MeiDiscovery, SysfsError> {
    let class_dir = root.path("/sys/class/mei");
    let mut found = MeiDiscovery::default();
    let entries = match fs::read_dir(&class_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(io_err(&class_dir)(e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mei"))
        .collect();
    // mei0 before mei1 before mei10.
    names.sort_by_key(|n| (n.len(), n.clone()));
    for name in names {
        let sysfs = class_dir.join(&name);
        let parent = fs::canonicalize(sysfs.join("device"))
            .ok()
            .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()));
        if parent.as_deref() != Some(bdf) {
            found.rejected.push(Rejected {
                name,
                reason: format!(
                    "parent is {}, not {bdf}",
                    parent.as_deref().unwrap_or("unknown")
                ),
            });
            continue;
        }
        let kind = fs::read_to_string(sysfs.join("kind"))
            .ok()
            .map(|k| k.trim().to_string());
        if let Some(k) = kind.as_deref() {
            if k != "mei" {
                found.rejected.push(Rejected {
                    name,
                    reason: format!("kind is {k:?}, not \"mei\""),
                });
                continue;
            }
        }
        if found.device.is_none() {
            let dev_node = root.path(&format!("/dev/{name}"));
            found.device = Some(MeiClassDevice {
                name,
                sysfs,
                dev_node,
                kind,
            });
        } else {
            found.rejected.push(Rejected {
                name,
                reason: "a lower-numbered device already matched".into(),
            });
        }
    }
    Ok(found)
}

/// Parses `fw_status`: one `%08X` register per line, HFSTS1 first.
pub fn parse_fw_status(path: &Path, text: &str) -> Result<Vec<u32>, SysfsError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            u32::from_str_radix(l.trim(), 16).map_err(|_| SysfsError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                what: format!("{:?} is not an 8-digit hex register", l.trim()),
            })
        })
        .collect()
}

/// One line of `fw_ver`: `platform:major.minor.hotfix.build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FwVerLine {
    pub platform: u32,
    pub major: u16,
    pub minor: u16,
    pub hotfix: u16,
    pub build: u16,
}

impl FwVerLine {
    /// `0:0.0.0.0`: the kernel could not get the version.
    pub fn is_zero(&self) -> bool {
        self.major == 0 && self.minor == 0 && self.hotfix == 0 && self.build == 0
    }
}

/// Parses `fw_ver` (code, recovery, FITC lines; at least one).
pub fn parse_fw_ver(path: &Path, text: &str) -> Result<Vec<FwVerLine>, SysfsError> {
    let bad = |line: usize, l: &str| SysfsError::Parse {
        path: path.to_path_buf(),
        line,
        what: format!("{l:?} is not platform:major.minor.hotfix.build"),
    };
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        let (platform, rest) = l.split_once(':').ok_or_else(|| bad(i + 1, l))?;
        let platform = platform.parse::<u32>().map_err(|_| bad(i + 1, l))?;
        let nums: Vec<u16> = rest
            .split('.')
            .map(|n| n.parse::<u16>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad(i + 1, l))?;
        let [major, minor, hotfix, build] = nums[..] else {
            return Err(bad(i + 1, l));
        };
        out.push(FwVerLine {
            platform,
            major,
            minor,
            hotfix,
            build,
        });
    }
    if out.is_empty() {
        return Err(bad(1, ""));
    }
    Ok(out)
}

/// Reads and parses `fw_status` of a class device.
pub fn read_fw_status(dev: &MeiClassDevice) -> Result<Vec<u32>, SysfsError> {
    let path = dev.sysfs.join("fw_status");
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    parse_fw_status(&path, &text)
}

/// Reads and parses `fw_ver` of a class device.
pub fn read_fw_ver(dev: &MeiClassDevice) -> Result<Vec<FwVerLine>, SysfsError> {
    let path = dev.sysfs.join("fw_ver");
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    parse_fw_ver(&path, &text)
}

/// Reads a one-line attribute (`hbm_ver`, `dev_state`), trimmed; `None` if absent.
pub fn read_attr(dev: &MeiClassDevice, name: &str) -> Option<String> {
    fs::read_to_string(dev.sysfs.join(name))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Waits until `dev_state` reads ENABLED, checking every `step`, for at most
/// `bound`. Kernels before 5.1 have no `dev_state`: then returns `Ok(None)`
/// and the caller learns the state from `open()`.
pub fn wait_enabled(
    dev: &MeiClassDevice,
    bound: Duration,
    step: Duration,
) -> Result<Option<String>, SysfsError> {
    let path = dev.sysfs.join("dev_state");
    let start = Instant::now();
    loop {
        let state = match fs::read_to_string(&path) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        if state == "ENABLED" {
            return Ok(Some(state));
        }
        // DISABLED is final: the driver gave up after repeated resets.
        if state == "DISABLED" || start.elapsed() >= bound {
            return Err(SysfsError::NotEnabled {
                path,
                last: state,
                waited: start.elapsed(),
            });
        }
        std::thread::sleep(step);
    }
}

/// The firmware clients the kernel enumerated for `bdf`, as lowercase UUIDs
/// (`/sys/bus/mei/devices/<bdf>-<uuid>`). Empty when the bus is absent.
pub fn list_fw_clients(root: &SysRoot, bdf: &str) -> Vec<String> {
    let dir = root.path("/sys/bus/mei/devices");
    let prefix = format!("{bdf}-");
    let mut uuids: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .map(|u| u.to_ascii_lowercase())
        })
        .collect();
    uuids.sort();
    uuids.dedup();
    uuids
}

#[cfg(test)]
pub(crate) mod fake {
    //! A temporary tree shaped like real sysfs, for tests.

    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// Adds PCI function `bdf` with ids and a 256-byte config space holding `hfsts`.
    pub fn add_pci(root: &Path, bdf: &str, vendor: u16, device: u16, hfsts: Option<[u32; 6]>) {
        let real = root.join("sys/devices/pci0000:00").join(bdf);
        fs::create_dir_all(&real).unwrap();
        fs::write(real.join("vendor"), format!("{vendor:#06x}\n")).unwrap();
        fs::write(real.join("device"), format!("{device:#06x}\n")).unwrap();
        fs::write(real.join("class"), "0x078000\n").unwrap();
        let mut config = vec![0u8; 256];
        if let Some(regs) = hfsts {
            for (r, off) in regs.iter().zip(super::HFSTS_OFFSETS) {
                let off = off as usize;
                config[off..off + 4].copy_from_slice(&r.to_le_bytes());
            }
        } else {
            // What an unprivileged reader gets: the first 64 bytes.
            config.truncate(64);
        }
        fs::write(real.join("config"), config).unwrap();
        let bus = root.join("sys/bus/pci/devices");
        fs::create_dir_all(&bus).unwrap();
        symlink(&real, bus.join(bdf)).unwrap();
    }

    /// Adds `/sys/class/mei/<name>` with parent `bdf`, and its attributes.
    pub fn add_mei(root: &Path, name: &str, bdf: &str, kind: &str, fw_status: &str, state: &str) {
        let real = root
            .join("sys/devices/pci0000:00")
            .join(bdf)
            .join("mei")
            .join(name);
        fs::create_dir_all(&real).unwrap();
        let parent = root.join("sys/devices/pci0000:00").join(bdf);
        symlink(&parent, real.join("device")).unwrap();
        fs::write(real.join("kind"), format!("{kind}\n")).unwrap();
        fs::write(real.join("fw_status"), fw_status).unwrap();
        fs::write(
            real.join("fw_ver"),
            "0:16.1.25.1885\n0:16.1.25.1885\n0:16.0.15.1810\n",
        )
        .unwrap();
        fs::write(real.join("hbm_ver"), "2.2\n").unwrap();
        // Real dev_state has no trailing newline.
        fs::write(real.join("dev_state"), state).unwrap();
        let class = root.join("sys/class/mei");
        fs::create_dir_all(&class).unwrap();
        symlink(&real, class.join(name)).unwrap();
    }

    /// Adds an enumerated firmware client under `/sys/bus/mei/devices`.
    pub fn add_client(root: &Path, bdf: &str, uuid: &str) {
        let dir = root
            .join("sys/bus/mei/devices")
            .join(format!("{bdf}-{uuid}"));
        fs::create_dir_all(dir).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGS: [u32; 6] = [0x9000_0245, 0x6000_0000, 0x30, 0, 0x02F6_1F03, 0x4000_0000];
    const FW_STATUS: &str = "90000245\n60000000\n00000030\n00000000\n02F61F03\n40000000\n";

    #[test]
    fn picks_mei_whose_parent_is_1600_and_kind_is_mei() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fake::add_pci(r, ME_BDF, 0x8086, 0x7E70, Some(REGS));
        // A discrete GPU's GSC is mei0; an iTouch on 16.4 is mei1; the ME is mei2.
        fake::add_pci(r, "0000:03:00.0", 0x8086, 0x56A0, Some([0; 6]));
        fake::add_mei(r, "mei0", "0000:03:00.0", "gscfi", "", "ENABLED");
        fake::add_pci(r, "0000:00:16.4", 0x8086, 0x02E4, Some([0; 6]));
        fake::add_mei(r, "mei1", "0000:00:16.4", "itouch", "", "ENABLED");
        fake::add_mei(r, "mei2", ME_BDF, "mei", FW_STATUS, "ENABLED");
        let root = SysRoot::new(r);
        let found = find_mei_device(&root, ME_BDF).unwrap();
        let dev = found.device.expect("mei2 is the ME");
        assert_eq!(dev.name, "mei2");
        assert_eq!(dev.dev_node, r.join("dev/mei2"));
        assert_eq!(found.rejected.len(), 2);
        assert!(found.rejected[0].reason.contains("0000:03:00.0"));
        assert!(found.rejected[1].reason.contains("parent is 0000:00:16.4"));

        assert_eq!(read_fw_status(&dev).unwrap(), REGS.to_vec());
        assert_eq!(read_hfsts_config(&root, ME_BDF).unwrap(), Hfsts(REGS));
        let ver = read_fw_ver(&dev).unwrap();
        assert_eq!(ver.len(), 3);
        assert_eq!((ver[0].major, ver[0].minor, ver[0].build), (16, 1, 1885));
        let ids = read_pci_ids(&root, ME_BDF).unwrap().unwrap();
        assert_eq!(
            (ids.vendor, ids.device, ids.class),
            (0x8086, 0x7E70, 0x078000)
        );
        assert_eq!(read_attr(&dev, "hbm_ver").as_deref(), Some("2.2"));
        let st = wait_enabled(&dev, Duration::from_millis(1), Duration::from_millis(1)).unwrap();
        assert_eq!(st.as_deref(), Some("ENABLED"));
    }

    #[test]
    fn kind_other_than_mei_on_1600_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fake::add_pci(r, ME_BDF, 0x8086, 0x9D3A, Some(REGS));
        fake::add_mei(r, "mei0", ME_BDF, "itouch", "", "ENABLED");
        let found = find_mei_device(&SysRoot::new(r), ME_BDF).unwrap();
        assert_eq!(found.device, None);
        assert!(found.rejected[0].reason.contains("itouch"));
    }

    #[test]
    fn nothing_there() {
        let tmp = tempfile::tempdir().unwrap();
        let root = SysRoot::new(tmp.path());
        assert_eq!(read_pci_ids(&root, ME_BDF).unwrap(), None);
        assert_eq!(find_mei_device(&root, ME_BDF).unwrap().device, None);
        assert!(list_fw_clients(&root, ME_BDF).is_empty());
    }

    #[test]
    fn unprivileged_config_read_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        fake::add_pci(tmp.path(), ME_BDF, 0x8086, 0x9D3A, None);
        let err = read_hfsts_config(&SysRoot::new(tmp.path()), ME_BDF).unwrap_err();
        assert!(matches!(
            err,
            SysfsError::ConfigTruncated { offset: 0x40, .. }
        ));
        assert!(err.to_string().contains("needs root"));
    }

    #[test]
    fn dev_state_wait_is_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fake::add_pci(r, ME_BDF, 0x8086, 0x9D3A, Some(REGS));
        fake::add_mei(r, "mei0", ME_BDF, "mei", FW_STATUS, "INIT_CLIENTS");
        let dev = find_mei_device(&SysRoot::new(r), ME_BDF)
            .unwrap()
            .device
            .unwrap();
        let err =
            wait_enabled(&dev, Duration::from_millis(30), Duration::from_millis(5)).unwrap_err();
        assert!(matches!(err, SysfsError::NotEnabled { ref last, .. } if last == "INIT_CLIENTS"));
        fs::write(dev.sysfs.join("dev_state"), "DISABLED").unwrap();
        let err =
            wait_enabled(&dev, Duration::from_secs(60), Duration::from_millis(5)).unwrap_err();
        assert!(matches!(err, SysfsError::NotEnabled { ref last, .. } if last == "DISABLED"));
    }

    #[test]
    fn fw_clients_are_listed_for_the_me_only() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fake::add_client(r, ME_BDF, "12F80028-B4B7-4B2D-ACA8-46E0FF65814C");
        fake::add_client(r, ME_BDF, "8e6a6715-9abc-4043-88ef-9e39c6f63e0f");
        fake::add_client(r, "0000:03:00.0", "8e6a6715-9abc-4043-88ef-9e39c6f63e0f");
        let clients = list_fw_clients(&SysRoot::new(r), ME_BDF);
        assert_eq!(
            clients,
            vec![
                "12f80028-b4b7-4b2d-aca8-46e0ff65814c".to_string(),
                "8e6a6715-9abc-4043-88ef-9e39c6f63e0f".to_string()
            ]
        );
    }

    #[test]
    fn parsers_reject_garbage_with_line_numbers() {
        let p = Path::new("fw_status");
        assert_eq!(parse_fw_status(p, "").unwrap(), Vec::<u32>::new());
        let err = parse_fw_status(p, "90000245\nZZZ\n").unwrap_err();
        assert!(err.to_string().contains("line 2"));
        let p = Path::new("fw_ver");
        assert!(parse_fw_ver(p, "0:0.0.0.0\n").unwrap()[0].is_zero());
        assert!(parse_fw_ver(p, "").is_err());
        assert!(parse_fw_ver(p, "0:16.0.15\n").is_err());
        assert!(parse_fw_ver(p, "x:16.0.15.1\n").is_err());
        assert!(parse_fw_ver(p, "0:99999.0.15.1\n").is_err());
    }
}

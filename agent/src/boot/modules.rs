//! Kernel module loading for PID 1: dependency order from `modules.dep`,
//! then `finit_module` per module.
//!
//! Compressed modules: Debian's 6.1 kernel ships uncompressed `.ko`
//! (`MODULE_COMPRESS_NONE`); the 6.12 kernels ship `.ko.xz` and can
//! decompress in the kernel (`MODULE_DECOMPRESS=y`) when `finit_module` gets
//! `MODULE_INIT_COMPRESSED_FILE`. We try that first and, if the kernel
//! refuses it, decompress in userspace (pure-Rust xz / zstd) and call
//! `init_module` on the bytes.

use std::collections::{BTreeMap, HashSet};
use std::ffi::CString;
use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// `MODULE_INIT_COMPRESSED_FILE` from `<linux/module.h>`.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;
/// Deepest dependency chain accepted (Debian's deepest is under 10).
const MAX_DEPTH: usize = 64;
/// Upper bound on a decompressed module (the largest Debian module is ~10 MiB).
const MAX_MODULE: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("{path} line {line}: {what}")]
    DepSyntax {
        path: String,
        line: usize,
        what: String,
    },
    #[error("module {0} is not in modules.dep")]
    Unknown(String),
    #[error("module dependency cycle through {0}")]
    Cycle(String),
    #[error("module dependency chain deeper than {MAX_DEPTH} at {0}")]
    TooDeep(String),
    #[error("{path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: decompressing: {what}")]
    Decompress { path: String, what: String },
}

/// `modules.dep`: module path (relative to the modules folder) -> its
/// dependencies' paths, in the order depmod wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModulesDep {
    pub deps: BTreeMap<String, Vec<String>>,
}

/// The name modprobe uses for a module file: basename without `.ko[.xz|.zst|.gz]`,
/// with `-` folded to `_`.
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

impl ModulesDep {
    /// Parses lines `kernel/a/b.ko: kernel/c.ko kernel/d.ko`.
    pub fn parse(text: &str, path: &str) -> Result<Self, ModuleError> {
        let mut deps = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (module, rest) = line.split_once(':').ok_or_else(|| ModuleError::DepSyntax {
                path: path.into(),
                line: n + 1,
                what: format!("no ':' in {line:?}"),
            })?;
            if module.is_empty() || !module.contains(".ko") {
                return Err(ModuleError::DepSyntax {
                    path: path.into(),
                    line: n + 1,
                    what: format!("{module:?} is not a module path"),
                });
            }
            deps.insert(
                module.to_string(),
                rest.split_whitespace().map(str::to_string).collect(),
            );
        }
        Ok(ModulesDep { deps })
    }

    /// Finds a module path by name (`virtio_blk`, `virtio-blk` or a path).
    pub fn resolve(&self, name: &str) -> Result<&str, ModuleError> {
        if let Some((k, _)) = self.deps.get_key_value(name) {
            return Ok(k);
        }
        let want = module_name(name);
        self.deps
            .keys()
            .find(|k| module_name(k) == want)
            .map(String::as_str)
            .ok_or_else(|| ModuleError::Unknown(name.to_string()))
    }

    /// The load order for `wanted`: each module after all of its
    /// dependencies, each once, wanted modules in the given order otherwise.
    pub fn load_order(&self, wanted: &[&str]) -> Result<Vec<String>, ModuleError> {
        let mut done: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for w in wanted {
            let path = self.resolve(w)?.to_string();
            self.visit(&path, &mut Vec::new(), &mut seen, &mut done)?;
        }
        Ok(done)
    }

    fn visit(
        &self,
        path: &str,
        stack: &mut Vec<String>,
        seen: &mut HashSet<String>,
        out: &mut Vec<String>,
    ) -> Result<(), ModuleError> {
        if seen.contains(path) {
            return Ok(());
        }
        if stack.iter().any(|s| s == path) {
            return Err(ModuleError::Cycle(path.to_string()));
        }
        // Real chains are a few deep; a hostile file must not exhaust the stack.
        if stack.len() >= MAX_DEPTH {
            return Err(ModuleError::TooDeep(path.to_string()));
        }
        let deps = self
            .deps
            .get(path)
            .ok_or_else(|| ModuleError::Unknown(path.to_string()))?;
        stack.push(path.to_string());
        // depmod lists a module's dependencies with the deepest last: load
        // from the end so the deepest come first.
        for d in deps.iter().rev() {
            self.visit(d, stack, seen, out)?;
        }
        stack.pop();
        seen.insert(path.to_string());
        out.push(path.to_string());
        Ok(())
    }
}

/// What happened to one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    Loaded,
    /// The kernel already had it (EEXIST).
    AlreadyPresent,
}

/// Compression of a module file, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
}

pub fn compression_of(path: &Path) -> Compression {
    match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => Compression::Xz,
        Some("zst") => Compression::Zstd,
        _ => Compression::None,
    }
}

/// Decompresses a module's bytes in userspace, bounded to [`MAX_MODULE`].
pub fn decompress(bytes: &[u8], how: Compression, path: &str) -> Result<Vec<u8>, ModuleError> {
    let err = |what: String| ModuleError::Decompress {
        path: path.into(),
        what,
    };
    let mut out = Vec::new();
    match how {
        Compression::None => out.extend_from_slice(bytes),
        Compression::Xz => {
            let mut w = BoundedVec {
                buf: &mut out,
                limit: MAX_MODULE as usize,
            };
            lzma_rs::xz_decompress(&mut std::io::BufReader::new(bytes), &mut w)
                .map_err(|e| err(e.to_string()))?;
        }
        Compression::Zstd => {
            let mut input = bytes;
            let dec = ruzstd::decoding::StreamingDecoder::new(&mut input)
                .map_err(|e| err(e.to_string()))?;
            dec.take(MAX_MODULE + 1)
                .read_to_end(&mut out)
                .map_err(|e| err(e.to_string()))?;
            if out.len() as u64 > MAX_MODULE {
                return Err(err(format!("larger than {MAX_MODULE} bytes")));
            }
        }
    }
    Ok(out)
}

/// A `Write` into a Vec that refuses to grow past a limit (a hostile
/// compressed file must not exhaust memory).
struct BoundedVec<'a> {
    buf: &'a mut Vec<u8>,
    limit: usize,
}

impl std::io::Write for BoundedVec<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(std::io::Error::other("decompressed module exceeds 64 MiB"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Loads one module file with parameters (`"block2mtd=/dev/vda,4096"` or "").
pub fn load_file(path: &Path, params: &str) -> Result<Loaded, ModuleError> {
    let p = path.display().to_string();
    let io = |op: &'static str| {
        let p = p.clone();
        move |source| ModuleError::Io {
            path: p,
            op,
            source,
        }
    };
    let cparams = CString::new(params).map_err(|_| ModuleError::Io {
        path: p.clone(),
        op: "parameters",
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    let file = std::fs::File::open(path).map_err(io("open"))?;
    let how = compression_of(path);
    let flags = if how == Compression::None {
        0
    } else {
        MODULE_INIT_COMPRESSED_FILE
    };
    // SAFETY: finit_module reads the fd and a NUL-terminated string we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            cparams.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        return Ok(Loaded::Loaded);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) => return Ok(Loaded::AlreadyPresent),
        // The kernel cannot decompress (no MODULE_DECOMPRESS, or an older
        // kernel that rejects the flag): do it ourselves.
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(libc::ENOEXEC)
            if how != Compression::None => {}
        _ => return Err(io("finit_module")(e)),
    }
    let mut raw = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .map_err(io("read"))?;
    let image = decompress(&raw, how, &p)?;
    // SAFETY: init_module reads `image.len()` bytes and a NUL-terminated string we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len(),
            cparams.as_ptr(),
        )
    };
    if rc == 0 {
        return Ok(Loaded::Loaded);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EEXIST) {
        return Ok(Loaded::AlreadyPresent);
    }
    Err(io("init_module")(e))
}

/// Loads `wanted` (name, params) and their dependencies from
/// `/lib/modules/<release>`, in order. Dependencies get no parameters.
pub fn load_all(
    dir: &Path,
    wanted: &[(String, String)],
) -> Result<Vec<(String, Loaded)>, ModuleError> {
    let dep_path = dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_path).map_err(|source| ModuleError::Io {
        path: dep_path.display().to_string(),
        op: "read",
        source,
    })?;
    let dep = ModulesDep::parse(&text, &dep_path.display().to_string())?;
    let names: Vec<&str> = wanted.iter().map(|(n, _)| n.as_str()).collect();
    let params: BTreeMap<String, &str> = wanted
        .iter()
        .map(|(n, p)| (module_name(n), p.as_str()))
        .collect();
    let mut out = Vec::new();
    for rel in dep.load_order(&names)? {
        let name = module_name(&rel);
        let p = params.get(&name).copied().unwrap_or("");
        let r = load_file(&dir.join(&rel), p)?;
        log::info!("module {name}: {r:?}");
        out.push((name, r));
    }
    Ok(out)
}

/// `/lib/modules/<uname -r>`.
pub fn modules_dir() -> PathBuf {
    // SAFETY: uname fills the struct we pass.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    let release = if unsafe { libc::uname(&mut u) } == 0 {
        // SAFETY: the kernel NUL-terminates release.
        unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    } else {
        String::new()
    };
    Path::new("/lib/modules").join(release)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/mtd/mtd.ko:
kernel/drivers/mtd/devices/block2mtd.ko: kernel/drivers/mtd/mtd.ko
kernel/drivers/misc/mei/mei-me.ko.xz: kernel/drivers/misc/mei/mei.ko.xz
kernel/drivers/misc/mei/mei.ko.xz:
";

    fn pos(order: &[String], name: &str) -> usize {
        order
            .iter()
            .position(|p| module_name(p) == name)
            .unwrap_or_else(|| panic!("{name} missing from {order:?}"))
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let d = ModulesDep::parse(DEP, "modules.dep").unwrap();
        let o = d
            .load_order(&["virtio_pci", "virtio_blk", "virtio_net", "block2mtd"])
            .unwrap();
        assert_eq!(o.len(), 11);
        assert!(pos(&o, "virtio_ring") < pos(&o, "virtio"));
        assert!(pos(&o, "virtio") < pos(&o, "virtio_pci"));
        assert!(pos(&o, "failover") < pos(&o, "net_failover"));
        assert!(pos(&o, "net_failover") < pos(&o, "virtio_net"));
        assert!(pos(&o, "mtd") < pos(&o, "block2mtd"));
        let unique: HashSet<_> = o.iter().collect();
        assert_eq!(unique.len(), o.len());
    }

    #[test]
    fn names_resolve_with_dashes_and_compression() {
        let d = ModulesDep::parse(DEP, "modules.dep").unwrap();
        assert_eq!(
            d.resolve("mei_me").unwrap(),
            "kernel/drivers/misc/mei/mei-me.ko.xz"
        );
        assert_eq!(
            d.resolve("mei-me").unwrap(),
            "kernel/drivers/misc/mei/mei-me.ko.xz"
        );
        let o = d.load_order(&["mei-me"]).unwrap();
        assert_eq!(
            o,
            vec![
                "kernel/drivers/misc/mei/mei.ko.xz",
                "kernel/drivers/misc/mei/mei-me.ko.xz"
            ]
        );
        assert!(matches!(d.resolve("nosuch"), Err(ModuleError::Unknown(_))));
    }

    #[test]
    fn cycles_and_syntax_errors_are_reported() {
        let d = ModulesDep::parse("a.ko: b.ko\nb.ko: a.ko\n", "m").unwrap();
        assert!(matches!(d.load_order(&["a"]), Err(ModuleError::Cycle(_))));
        let e = ModulesDep::parse("a.ko:\nnonsense line\n", "m").unwrap_err();
        assert!(matches!(e, ModuleError::DepSyntax { line: 2, .. }), "{e}");
        let d = ModulesDep::parse("a.ko: missing.ko\n", "m").unwrap();
        assert!(matches!(d.load_order(&["a"]), Err(ModuleError::Unknown(_))));
    }

    #[test]
    fn a_very_deep_chain_is_an_error_not_a_stack_overflow() {
        let text: String = (0..10_000)
            .map(|i| format!("m{i}.ko: m{}.ko\n", i + 1))
            .chain(std::iter::once("m10000.ko:\n".to_string()))
            .collect();
        let d = ModulesDep::parse(&text, "m").unwrap();
        assert!(matches!(
            d.load_order(&["m0"]),
            Err(ModuleError::TooDeep(_))
        ));
    }

    #[test]
    fn decompresses_xz_and_zstd() {
        let module: Vec<u8> = b"\x7fELF"
            .iter()
            .copied()
            .chain((0..100_000).map(|i| (i % 97) as u8))
            .collect();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut std::io::BufReader::new(&module[..]), &mut xz).unwrap();
        assert_eq!(decompress(&xz, Compression::Xz, "m.ko.xz").unwrap(), module);
        let zst = ruzstd::encoding::compress_to_vec(
            &module[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(
            decompress(&zst, Compression::Zstd, "m.ko.zst").unwrap(),
            module
        );
        assert!(matches!(
            decompress(b"garbage", Compression::Xz, "m.ko.xz"),
            Err(ModuleError::Decompress { .. })
        ));
        assert!(decompress(b"garbage", Compression::Zstd, "m.ko.zst").is_err());
        assert_eq!(compression_of(Path::new("a/b.ko.xz")), Compression::Xz);
        assert_eq!(compression_of(Path::new("a/b.ko")), Compression::None);
    }

    #[test]
    fn loading_a_missing_file_names_it() {
        let e = load_file(Path::new("/nonexistent/x.ko"), "").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.ko: open"), "{e}");
    }
}

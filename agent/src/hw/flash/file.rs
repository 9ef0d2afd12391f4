//! An image file standing in for a flash chip: for tests, for offline work
//! on dumps, and for the host side of block2mtd. Erase fills with 0xFF, like
//! NOR flash.

use super::{check_erase, check_range, Flash, FlashError};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The erase block size a file pretends to have unless told otherwise:
/// 4 KiB, the smallest erase of SPI NOR chips.
pub const DEFAULT_BLOCK: u32 = 4096;

/// A flash image file opened for reading and (if permitted) writing.
#[derive(Debug)]
pub struct FileFlash {
    path: PathBuf,
    file: File,
    size: u64,
    block: u32,
}

impl FileFlash {
    /// Opens `path` read-write if possible, else read-only (writes then fail
    /// with a clear error naming the file).
    pub fn open(path: impl AsRef<Path>, block: u32) -> Result<Self, FlashError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .or_else(|_| File::open(&path))
            .map_err(|source| FlashError::Open {
                device: path.clone(),
                source,
            })?;
        let size = file
            .metadata()
            .map_err(|source| FlashError::Open {
                device: path.clone(),
                source,
            })?
            .len();
        if block == 0 || !block.is_power_of_two() {
            return Err(FlashError::Device {
                device: path.display().to_string(),
                what: format!("erase block size {block:#x} is not a power of two"),
            });
        }
        Ok(FileFlash {
            path,
            file,
            size,
            block,
        })
    }
}

impl Flash for FileFlash {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn erase_block_size(&self) -> u32 {
        self.block
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), FlashError> {
        let len = buf.len() as u64;
        check_range(&self.name(), offset, len, self.size)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| self.io_error("read", offset, len, e))
    }

    fn erase(&mut self, offset: u64, len: u64) -> Result<(), FlashError> {
        check_erase(&self.name(), offset, len, self.size, self.block)?;
        let ones = vec![0xFFu8; self.block as usize];
        let mut at = offset;
        while at < offset + len {
            self.file
                .write_all_at(&ones, at)
                .map_err(|e| self.io_error("erase", at, u64::from(self.block), e))?;
            at += u64::from(self.block);
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), FlashError> {
        let len = data.len() as u64;
        check_range(&self.name(), offset, len, self.size)?;
        self.file
            .write_all_at(data, offset)
            .map_err(|e| self.io_error("write", offset, len, e))?;
        // The write is only done when it is on the disk: a power cut after
        // this point must not lose it (the journal relies on that order).
        self.file
            .sync_data()
            .map_err(|e| self.io_error("sync", offset, len, e))
    }
}

/// A flash held in memory, for unit tests of the logic above the trait. It
/// can be told to fail or corrupt particular operations, to exercise the
/// write engine's retry and restore paths.
#[derive(Debug, Clone)]
pub struct MemFlash {
    pub bytes: Vec<u8>,
    pub block: u32,
    /// Operations performed, in order: ("erase"|"write"|"read", offset, len).
    pub log: Vec<(&'static str, u64, u64)>,
    /// Writes at these offsets store corrupted data (one bit flipped) this
    /// many more times.
    pub corrupt_writes: Vec<(u64, u32)>,
    /// The n-th write (counting from 0) and all after it fail with an I/O
    /// error, as if power were lost; `None` = never.
    pub fail_from_write: Option<usize>,
    writes: usize,
}

impl MemFlash {
    pub fn new(bytes: Vec<u8>, block: u32) -> Self {
        MemFlash {
            bytes,
            block,
            log: Vec::new(),
            corrupt_writes: Vec::new(),
            fail_from_write: None,
            writes: 0,
        }
    }

    /// Offsets of erase operations, in order.
    pub fn erased(&self) -> Vec<u64> {
        self.log
            .iter()
            .filter(|(op, _, _)| *op == "erase")
            .map(|(_, o, _)| *o)
            .collect()
    }
}

impl Flash for MemFlash {
    fn name(&self) -> String {
        "memory".into()
    }
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn erase_block_size(&self) -> u32 {
        self.block
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), FlashError> {
        check_range("memory", offset, buf.len() as u64, self.size())?;
        self.log.push(("read", offset, buf.len() as u64));
        let start = offset as usize;
        if let Some(src) = self.bytes.get(start..start + buf.len()) {
            buf.copy_from_slice(src);
        }
        Ok(())
    }
    fn erase(&mut self, offset: u64, len: u64) -> Result<(), FlashError> {
        check_erase("memory", offset, len, self.size(), self.block)?;
        self.log.push(("erase", offset, len));
        if let Some(dst) = self.bytes.get_mut(offset as usize..(offset + len) as usize) {
            dst.fill(0xFF);
        }
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), FlashError> {
        check_range("memory", offset, data.len() as u64, self.size())?;
        let n = self.writes;
        self.writes += 1;
        if self.fail_from_write.is_some_and(|f| n >= f) {
            return Err(FlashError::Io {
                device: "memory".into(),
                op: "write",
                offset,
                len: data.len() as u64,
                source: std::io::Error::other("injected failure"),
            });
        }
        self.log.push(("write", offset, data.len() as u64));
        let start = offset as usize;
        if let Some(dst) = self.bytes.get_mut(start..start + data.len()) {
            // NOR semantics: a write can only clear bits.
            for (d, s) in dst.iter_mut().zip(data) {
                *d &= *s;
            }
            if let Some(c) = self
                .corrupt_writes
                .iter_mut()
                .find(|(o, n)| *o == offset && *n > 0)
            {
                c.1 -= 1;
                if let Some(first) = dst.first_mut() {
                    *first ^= 0x01;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_flash_erase_write_read() {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut tmp, &[0u8; 16384]).unwrap();
        let mut f = FileFlash::open(tmp.path(), 4096).unwrap();
        assert_eq!(f.size(), 16384);
        f.erase(4096, 4096).unwrap();
        f.write(4100, b"abc").unwrap();
        let mut buf = [0u8; 8];
        f.read(4096, &mut buf).unwrap();
        assert_eq!(&buf, &[0xFF, 0xFF, 0xFF, 0xFF, b'a', b'b', b'c', 0xFF]);
        let mut z = [1u8; 4];
        f.read(0, &mut z).unwrap();
        assert_eq!(z, [0; 4]);
    }

    #[test]
    fn file_flash_rejects_bad_ranges() {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut tmp, &[0u8; 8192]).unwrap();
        let mut f = FileFlash::open(tmp.path(), 4096).unwrap();
        let mut buf = [0u8; 16];
        assert!(matches!(
            f.read(8190, &mut buf),
            Err(FlashError::OutOfRange { offset: 8190, .. })
        ));
        assert!(matches!(
            f.erase(100, 4096),
            Err(FlashError::Unaligned { offset: 100, .. })
        ));
        assert!(matches!(
            f.write(u64::MAX, b"x"),
            Err(FlashError::OutOfRange { .. })
        ));
    }

    #[test]
    fn read_image_hashes_what_it_read() {
        let bytes: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i * 7) as u8).collect();
        let mut m = MemFlash::new(bytes.clone(), 4096);
        let img = super::super::read_image(&mut m).unwrap();
        assert_eq!(img.bytes, bytes);
        assert_eq!(img.sha256, super::super::sha256(&bytes));
    }
}

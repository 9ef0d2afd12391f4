//! SPI flash access: MTD, flashrom and image files, behind one trait; safe writes.
//!
//! - [`Flash`]: the small trait every backend implements (size, erase-block
//!   size, read a range, erase blocks, write a range).
//! - Backends: [`file::FileFlash`] (an image file), [`mtd::MtdFlash`]
//!   (`/dev/mtdN`), [`flashrom::FlashromFlash`] (a flashrom subprocess).
//! - [`read_image`]: reads the whole flash once, hashing while reading.
//! - [`plan`]: which erase blocks differ between the old and the new image.
//! - [`access`]: whether the descriptor lets the host (BIOS master) write a region.
//! - [`write`]: the safe write engine (authorize, erase/write only changed
//!   blocks, read back, retry, restore on failure).
//! - [`journal`], [`nv_journal`] and [`recovery`]: a write journal (file or TPM NV) so that a power cut in the
//!   middle of a write is finished or rolled back on the next boot.
//!
//! See `docs/flash.md`.

pub mod access;
pub mod file;
pub mod flashrom;
pub mod journal;
pub mod mtd;
pub mod nv_journal;
pub mod plan;
pub mod recovery;
pub mod write;

use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// What went wrong talking to a flash device. Every variant names the device
/// and, where there is one, the offset.
#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    #[error("{device}: {op} at offset {offset:#x} (length {len:#x}): {source}")]
    Io {
        device: String,
        op: &'static str,
        offset: u64,
        len: u64,
        source: std::io::Error,
    },
    #[error("{device}: range {offset:#x}+{len:#x} is outside the flash of size {size:#x}")]
    OutOfRange {
        device: String,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error(
        "{device}: erase {offset:#x}+{len:#x} is not aligned to the erase block size {block:#x}"
    )]
    Unaligned {
        device: String,
        offset: u64,
        len: u64,
        block: u32,
    },
    #[error("{device}: {what}")]
    Device { device: String, what: String },
    #[error("{device}: cannot open: {source}")]
    Open {
        device: PathBuf,
        source: std::io::Error,
    },
    #[error("/proc/mtd line {line}: {what}")]
    ProcMtd { line: usize, what: String },
    #[error("no MTD device found in /proc/mtd{hint}")]
    NoMtd { hint: String },
    #[error("flashrom {action} failed (exit {exit}): {reason}")]
    Flashrom {
        action: String,
        exit: String,
        reason: String,
    },
    #[error("flashrom could not be started ({program}): {source}")]
    FlashromSpawn {
        program: String,
        source: std::io::Error,
    },
}

/// A flash chip (or a stand-in for one). Offsets are bytes from the start of
/// the chip. Reads and writes may cover any range inside the chip; erases
/// must be whole erase blocks. Writing over bytes that are not erased is the
/// caller's business: real NOR can only clear bits, so the write engine
/// always erases first.
pub trait Flash {
    /// A short human name for messages: `/dev/mtd0`, `image.bin`, `flashrom dummy`.
    fn name(&self) -> String;
    /// An I/O error naming this device, the operation and the range.
    fn io_error(
        &self,
        op: &'static str,
        offset: u64,
        len: u64,
        source: std::io::Error,
    ) -> FlashError {
        FlashError::Io {
            device: self.name(),
            op,
            offset,
            len,
            source,
        }
    }
    /// Size of the chip in bytes.
    fn size(&self) -> u64;
    /// The smallest unit that can be erased, in bytes (a power of two).
    fn erase_block_size(&self) -> u32;
    /// Reads `buf.len()` bytes at `offset` from the device (never a cache).
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), FlashError>;
    /// Erases `len` bytes at `offset` (both multiples of the erase block size)
    /// to 0xFF.
    fn erase(&mut self, offset: u64, len: u64) -> Result<(), FlashError>;
    /// Writes `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), FlashError>;
    /// How many bytes one read call should cover when reading the whole chip:
    /// small for devices (bounded memory per syscall), the whole chip for a
    /// subprocess that costs a start-up per call.
    fn read_chunk_hint(&self) -> usize {
        1 << 20
    }
    /// Erases the blocks under `data` and writes it: one run of whole erase
    /// blocks. Backends that erase as part of writing (flashrom) override
    /// this to do it in one step.
    fn erase_and_write(&mut self, offset: u64, data: &[u8]) -> Result<(), FlashError> {
        self.erase(offset, data.len() as u64)?;
        self.write(offset, data)
    }
}

/// Checks that `offset..offset+len` lies inside a chip of `size` bytes.
pub(crate) fn check_range(
    device: &str,
    offset: u64,
    len: u64,
    size: u64,
) -> Result<(), FlashError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(FlashError::OutOfRange {
            device: device.to_string(),
            offset,
            len,
            size,
        }),
    }
}

/// Checks that an erase covers whole erase blocks.
pub(crate) fn check_erase(
    device: &str,
    offset: u64,
    len: u64,
    size: u64,
    block: u32,
) -> Result<(), FlashError> {
    check_range(device, offset, len, size)?;
    let b = u64::from(block.max(1));
    if offset % b != 0 || len % b != 0 {
        return Err(FlashError::Unaligned {
            device: device.to_string(),
            offset,
            len,
            block,
        });
    }
    Ok(())
}

/// The whole flash as read at boot, with the SHA-256 computed while reading.
#[derive(Debug, Clone)]
pub struct FlashImage {
    pub bytes: Vec<u8>,
    pub sha256: [u8; 32],
}

impl FlashImage {
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Reads the whole flash once, in chunks of the backend's preferred size,
/// hashing each chunk as it arrives (so the digest and the bytes are of the
/// same read).
pub fn read_image(flash: &mut dyn Flash) -> Result<FlashImage, FlashError> {
    let size = flash.size();
    let name = flash.name();
    let len = usize::try_from(size).map_err(|_| FlashError::Device {
        device: name.clone(),
        what: format!("size {size:#x} does not fit in memory"),
    })?;
    let mut bytes = vec![0u8; len];
    let mut hasher = Sha256::new();
    let chunk = flash.read_chunk_hint().max(4096);
    let mut offset = 0usize;
    for piece in bytes.chunks_mut(chunk) {
        flash.read(offset as u64, piece)?;
        hasher.update(&*piece);
        offset += piece.len();
    }
    log::info!("read {name}: {size:#x} bytes");
    Ok(FlashImage {
        bytes,
        sha256: hasher.finalize().into(),
    })
}

/// SHA-256 of a byte slice.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Opens a backend from a device spec, as the CLI and the config name it:
/// - `file:PATH` (or a plain path that is a regular file): an image file;
/// - `mtd:/dev/mtdN`, or `mtd:auto` / `mtd` for discovery through /proc/mtd;
/// - `flashrom:PROGRAMMER` e.g. `flashrom:internal`,
///   `flashrom:dummy:emulate=W25Q128FV,image=/tmp/x.bin`.
pub fn open_spec(spec: &str) -> Result<Box<dyn Flash>, FlashError> {
    if let Some(rest) = spec.strip_prefix("file:") {
        return Ok(Box::new(file::FileFlash::open(rest, file::DEFAULT_BLOCK)?));
    }
    if spec == "mtd" || spec == "mtd:auto" {
        return Ok(Box::new(mtd::MtdFlash::discover()?));
    }
    if let Some(dev) = spec.strip_prefix("mtd:") {
        return Ok(Box::new(mtd::MtdFlash::open(dev)?));
    }
    if let Some(programmer) = spec.strip_prefix("flashrom:") {
        return Ok(Box::new(flashrom::FlashromFlash::open(programmer)?));
    }
    Ok(Box::new(file::FileFlash::open(spec, file::DEFAULT_BLOCK)?))
}

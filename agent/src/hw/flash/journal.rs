//! The write journal: written (and made durable) before the first erase,
//! cleared after the last verified write. If the power is cut in between,
//! the next boot finds it and [`super::recovery`] finishes or rolls back.
//!
//! A record names every run of changed erase blocks the write touches (an
//! "entry"), with the SHA-256 of its old and new contents, and (when the
//! store has room) the bytes themselves. The file store keeps the bytes; the
//! TPM NV store ([`super::nv_journal`]) keeps only the digests, the org keeps
//! the original image. A store with room for few entries gets spans: runs
//! merged with the unchanged blocks between them ([`super::plan::coalesce`]).
//!
//! Encoding (all little-endian), ending with a SHA-256 of everything before it
//! so a torn journal write is recognised rather than trusted:
//!
//! ```text
//! "FRJRNL\0\x01"  magic + format version (8 bytes)
//! u64 device size, u32 erase block size
//! [32] old image SHA-256, [32] new image SHA-256
//! u32 entry count, then per entry (block-aligned, inside the device):
//!   u64 offset, u32 length, [32] old SHA-256, [32] new SHA-256,
//!   u8 flags (bit 0 old bytes follow, bit 1 new bytes follow), [length] old, [length] new
//! [32] SHA-256 of all the bytes above
//! ```
//!
//! Without bytes: 120 bytes plus 77 per entry.

use super::sha256;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"FRJRNL\x00\x01";
/// The largest block a record may describe (16 MiB, the biggest erase any
/// SPI chip has and far above the 4 KiB–64 KiB seen in practice).
const MAX_BLOCK: u32 = 16 << 20;
/// Size of a record without entries (header and trailing digest).
pub const RECORD_FIXED_BYTES: usize = 8 + 8 + 4 + 32 + 32 + 4 + 32;
/// Size of one entry without bytes.
pub const ENTRY_BYTES: usize = 8 + 4 + 32 + 32 + 1;

/// One block the write will touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalBlock {
    pub offset: u64,
    pub len: u32,
    pub old_sha256: [u8; 32],
    pub new_sha256: [u8; 32],
    /// The original bytes, for rolling back (absent in digest-only stores).
    pub old: Option<Vec<u8>>,
    /// The new bytes, for finishing the write (absent in digest-only stores).
    pub new: Option<Vec<u8>>,
}

/// A write in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    pub device_size: u64,
    pub block_size: u32,
    pub old_image_sha256: [u8; 32],
    pub new_image_sha256: [u8; 32],
    pub blocks: Vec<JournalBlock>,
}

/// Journal failures: a record that does not parse (with its offset), or a
/// store that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal record at offset {offset:#x}: {what}")]
    Malformed { offset: usize, what: String },
    /// The store could not keep the record (a TPM error, no room).
    #[error("journal {store}: {what}")]
    Store { store: String, what: String },
    /// The stored record is incomplete: its write was cut. The engine
    /// erases nothing before the record is stored and read back, so the
    /// write it announced never began.
    #[error("journal {store}: torn record ({what})")]
    Torn { store: String, what: String },
    #[error("journal {path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: std::io::Error,
    },
}

fn malformed(offset: usize, what: impl Into<String>) -> JournalError {
    JournalError::Malformed {
        offset,
        what: what.into(),
    }
}

/// A bounds-checked little-endian reader over the record bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], JournalError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| {
                malformed(
                    self.at,
                    format!(
                        "{what}: needs {n:#x} bytes, {:#x} left",
                        self.bytes.len() - self.at
                    ),
                )
            })?;
        let s = self.bytes.get(self.at..end).unwrap_or_default();
        self.at = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], JournalError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self, what: &str) -> Result<u8, JournalError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32, JournalError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, JournalError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
}

impl JournalRecord {
    /// Serialises the record (see the module docs for the layout).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.device_size.to_le_bytes());
        out.extend_from_slice(&self.block_size.to_le_bytes());
        out.extend_from_slice(&self.old_image_sha256);
        out.extend_from_slice(&self.new_image_sha256);
        out.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        for b in &self.blocks {
            out.extend_from_slice(&b.offset.to_le_bytes());
            out.extend_from_slice(&b.len.to_le_bytes());
            out.extend_from_slice(&b.old_sha256);
            out.extend_from_slice(&b.new_sha256);
            let flags = u8::from(b.old.is_some()) | (u8::from(b.new.is_some()) << 1);
            out.push(flags);
            if let Some(old) = &b.old {
                out.extend_from_slice(old);
            }
            if let Some(new) = &b.new {
                out.extend_from_slice(new);
            }
        }
        let digest = sha256(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Parses and checks a record: bounded reads, every length checked
    /// against what remains, blocks inside the device, the trailing digest
    /// and each block's bytes against its digest.
    pub fn decode(bytes: &[u8]) -> Result<Self, JournalError> {
        if bytes.len() < MAGIC.len() + 32 {
            return Err(malformed(
                0,
                format!("{} bytes is too short for a record", bytes.len()),
            ));
        }
        let body_len = bytes.len() - 32;
        let (body, trailer) = bytes.split_at(body_len);
        if sha256(body) != trailer {
            return Err(malformed(
                body_len,
                "trailing SHA-256 does not match: the record is torn or corrupted",
            ));
        }
        let mut r = Reader { bytes: body, at: 0 };
        if r.take(8, "magic")? != MAGIC {
            return Err(malformed(0, "bad magic or unknown format version"));
        }
        let device_size = r.u64("device size")?;
        let block_at = r.at;
        let block_size = r.u32("block size")?;
        if block_size == 0 || !block_size.is_power_of_two() || block_size > MAX_BLOCK {
            return Err(malformed(
                block_at,
                format!("block size {block_size:#x} is not a power of two up to 16 MiB"),
            ));
        }
        let old_image_sha256 = r.array("old image digest")?;
        let new_image_sha256 = r.array("new image digest")?;
        let count_at = r.at;
        let count = r.u32("block count")?;
        // Each block entry takes at least 77 bytes: bound the count by what is left.
        if (count as usize).saturating_mul(77) > body.len() - r.at {
            return Err(malformed(
                count_at,
                format!("block count {count} exceeds the record"),
            ));
        }
        let mut blocks = Vec::with_capacity(count as usize);
        for i in 0..count {
            let entry_at = r.at;
            let offset = r.u64("block offset")?;
            let len = r.u32("block length")?;
            if len == 0 {
                return Err(malformed(entry_at, format!("block {i}: length 0")));
            }
            if offset
                .checked_add(u64::from(len))
                .map_or(true, |e| e > device_size)
            {
                return Err(malformed(
                    entry_at,
                    format!("block {i}: {offset:#x}+{len:#x} is outside the device of size {device_size:#x}"),
                ));
            }
            if offset % u64::from(block_size) != 0 || len % block_size != 0 {
                return Err(malformed(
                    entry_at,
                    format!("block {i}: {offset:#x}+{len:#x} is not aligned to the block size {block_size:#x}"),
                ));
            }
            let old_sha256 = r.array("old block digest")?;
            let new_sha256 = r.array("new block digest")?;
            let flags_at = r.at;
            let flags = r.u8("block flags")?;
            if flags & !3 != 0 {
                return Err(malformed(
                    flags_at,
                    format!("block {i}: unknown flags {flags:#x}"),
                ));
            }
            let mut data = |present: bool,
                            digest: &[u8; 32],
                            what: &str|
             -> Result<Option<Vec<u8>>, JournalError> {
                if !present {
                    return Ok(None);
                }
                let at = r.at;
                let d = r.take(len as usize, what)?;
                if sha256(d) != *digest {
                    return Err(malformed(
                        at,
                        format!("block {i}: {what} do not match their digest"),
                    ));
                }
                Ok(Some(d.to_vec()))
            };
            let old = data(flags & 1 != 0, &old_sha256, "old bytes")?;
            let new = data(flags & 2 != 0, &new_sha256, "new bytes")?;
            blocks.push(JournalBlock {
                offset,
                len,
                old_sha256,
                new_sha256,
                old,
                new,
            });
        }
        if r.at != body.len() {
            return Err(malformed(r.at, "trailing bytes after the last block"));
        }
        Ok(JournalRecord {
            device_size,
            block_size,
            old_image_sha256,
            new_image_sha256,
            blocks,
        })
    }
}

/// Where the journal lives. `store` must be durable when it returns: the
/// write engine erases flash right after.
pub trait Journal {
    /// A name for messages.
    fn name(&self) -> String;
    /// Whether the store keeps block bytes (so recovery needs nothing else).
    fn keeps_data(&self) -> bool;
    /// How many entries a record may have (`None`: no limit). The engine
    /// merges runs into spans to fit.
    fn max_entries(&self) -> Option<usize> {
        None
    }
    /// The pending record, if a write was in progress.
    fn load(&mut self) -> Result<Option<JournalRecord>, JournalError>;
    /// Records a write about to start.
    fn store(&mut self, record: &JournalRecord) -> Result<(), JournalError>;
    /// Marks the write finished (or rolled back).
    fn clear(&mut self) -> Result<(), JournalError>;
}

/// A journal in memory: for tests, and for runs where no persistent store is
/// configured (a power cut is then detected only by the org, from the digest).
#[derive(Debug, Default, Clone)]
pub struct MemoryJournal {
    /// The encoded record, so tests exercise the real encoding.
    pub bytes: Option<Vec<u8>>,
}

impl Journal for MemoryJournal {
    fn name(&self) -> String {
        "memory journal".into()
    }
    fn keeps_data(&self) -> bool {
        true
    }
    fn load(&mut self) -> Result<Option<JournalRecord>, JournalError> {
        self.bytes.as_deref().map(JournalRecord::decode).transpose()
    }
    fn store(&mut self, record: &JournalRecord) -> Result<(), JournalError> {
        self.bytes = Some(record.encode());
        Ok(())
    }
    fn clear(&mut self) -> Result<(), JournalError> {
        self.bytes = None;
        Ok(())
    }
}

/// A journal in a file on persistent storage. Stored atomically: written to
/// a temporary file beside it, synced, renamed over, and the folder synced.
#[derive(Debug, Clone)]
pub struct FileJournal {
    path: PathBuf,
}

impl FileJournal {
    pub fn new(path: impl AsRef<Path>) -> Self {
        FileJournal {
            path: path.as_ref().to_path_buf(),
        }
    }

    fn io(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
        move |source| JournalError::Io {
            path: self.path.display().to_string(),
            op,
            source,
        }
    }

    fn sync_dir(&self) -> Result<(), JournalError> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io("sync folder"))
    }
}

impl Journal for FileJournal {
    fn name(&self) -> String {
        self.path.display().to_string()
    }
    fn keeps_data(&self) -> bool {
        true
    }
    fn load(&mut self) -> Result<Option<JournalRecord>, JournalError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => JournalRecord::decode(&bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("read")(e)),
        }
    }
    fn store(&mut self, record: &JournalRecord) -> Result<(), JournalError> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut f = std::fs::File::create(&tmp).map_err(self.io("create"))?;
        f.write_all(&record.encode()).map_err(self.io("write"))?;
        f.sync_all().map_err(self.io("sync"))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(self.io("rename"))?;
        self.sync_dir()
    }
    fn clear(&mut self) -> Result<(), JournalError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("remove")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> JournalRecord {
        let old = vec![0xAAu8; 4096];
        let new = vec![0x55u8; 4096];
        JournalRecord {
            device_size: 1 << 20,
            block_size: 4096,
            old_image_sha256: [1; 32],
            new_image_sha256: [2; 32],
            blocks: vec![
                JournalBlock {
                    offset: 8192,
                    len: 4096,
                    old_sha256: sha256(&old),
                    new_sha256: sha256(&new),
                    old: Some(old.clone()),
                    new: Some(new.clone()),
                },
                JournalBlock {
                    offset: 65536,
                    len: 4096,
                    old_sha256: sha256(&old),
                    new_sha256: sha256(&new),
                    old: None,
                    new: None,
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        assert_eq!(JournalRecord::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(
                JournalRecord::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_trailer() {
        let mut bytes = sample().encode();
        bytes[100] ^= 0x10;
        let e = JournalRecord::decode(&bytes).unwrap_err();
        assert!(e.to_string().contains("torn or corrupted"), "{e}");
    }

    #[test]
    fn block_outside_the_device_is_refused_with_its_offset() {
        let mut r = sample();
        r.blocks[1].offset = (1 << 20) - 2048;
        let e = JournalRecord::decode(&r.encode()).unwrap_err();
        match e {
            JournalError::Malformed { offset, what } => {
                assert!(what.contains("outside the device"), "{what}");
                assert!(offset > 8 + 8 + 4 + 64 + 4, "{offset}");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn bytes_not_matching_their_digest_are_refused() {
        let mut r = sample();
        r.blocks[0].new = Some(vec![0u8; 4096]);
        let e = JournalRecord::decode(&r.encode()).unwrap_err();
        assert!(e.to_string().contains("new bytes do not match"), "{e}");
    }

    #[test]
    fn file_journal_store_load_clear() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = FileJournal::new(dir.path().join("flash.journal"));
        assert!(j.load().unwrap().is_none());
        j.store(&sample()).unwrap();
        assert_eq!(j.load().unwrap(), Some(sample()));
        assert!(!dir.path().join("flash.journal.tmp").exists());
        j.clear().unwrap();
        assert!(j.load().unwrap().is_none());
        j.clear().unwrap();
    }

    #[test]
    fn memory_journal_round_trips_through_bytes() {
        let mut j = MemoryJournal::default();
        j.store(&sample()).unwrap();
        assert_eq!(j.load().unwrap(), Some(sample()));
        j.clear().unwrap();
        assert_eq!(j.load().unwrap(), None);
    }
}

//! The shared corpus of real ME images (`../shared/corpus`, described by
//! `CORPUS.tsv`). The blobs are Intel's and never committed here: tests read
//! them in place and skip, saying so plainly, when the folder is absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy)]
enum Section {
    Files,
    Full,
    Cleaner,
}

/// One file of the corpus, as a line of CORPUS.tsv lists it.
#[derive(Debug, Clone)]
pub struct CorpusFile {
    pub label: String,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub description: String,
}

/// One me_cleaner reference output: input (a file name, or `full:LABEL`),
/// options, exit status, output size and SHA-256.
#[derive(Debug, Clone)]
pub struct CleanerOutput {
    pub input: String,
    pub options: String,
    pub exit: i32,
    pub size: u64,
    pub sha256: String,
}

/// The corpus folder and its parsed index.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub dir: PathBuf,
    pub files: Vec<CorpusFile>,
    /// Assembled full images: label -> (size, SHA-256).
    pub full_images: BTreeMap<String, (u64, String)>,
    pub cleaner_outputs: Vec<CleanerOutput>,
}

/// Where the corpus is: `$FORTROS_CORPUS`, else `../shared/corpus` beside the
/// workspace root.
pub fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FORTROS_CORPUS") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

impl Corpus {
    /// Opens the corpus, or prints why it is skipped and returns `None` when
    /// the folder is absent. A corpus that is present but unreadable is a
    /// test failure, not a skip. `who` names the test, for the skip line.
    pub fn open_or_skip(who: &str) -> Option<Corpus> {
        let dir = corpus_dir();
        if !dir.join("CORPUS.tsv").exists() {
            eprintln!(
                "SKIPPED {who}: no corpus at {} (set FORTROS_CORPUS)",
                dir.display()
            );
            return None;
        }
        match Corpus::open(&dir) {
            Ok(c) => Some(c),
            Err(e) => panic!("corpus at {} is unreadable: {e}", dir.display()),
        }
    }

    /// Opens and indexes the corpus at `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Corpus> {
        let index = std::fs::read_to_string(dir.join("CORPUS.tsv"))?;
        let mut corpus = Corpus {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            full_images: BTreeMap::new(),
            cleaner_outputs: Vec::new(),
        };
        // CORPUS.tsv has three tables, each introduced by a `# <columns>` header.
        let mut section = Section::Files;
        for line in index.lines() {
            if let Some(header) = line.strip_prefix("# ") {
                if header.starts_with("label\t") {
                    section = Section::Files;
                } else if header.starts_with("full_label\t") {
                    section = Section::Full;
                } else if header.starts_with("input\t") {
                    section = Section::Cleaner;
                }
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            match (section, cols.as_slice()) {
                (Section::Full, [label, size, sha]) => {
                    let label = label.strip_prefix("full:").ok_or_else(|| bad_line(line))?;
                    let size = size.parse().map_err(|_| bad_line(line))?;
                    corpus
                        .full_images
                        .insert(label.to_string(), (size, sha.to_string()));
                }
                (Section::Cleaner, [input, options, exit, size, sha]) => {
                    corpus.cleaner_outputs.push(CleanerOutput {
                        input: input.to_string(),
                        options: options.to_string(),
                        exit: exit.parse().map_err(|_| bad_line(line))?,
                        size: size.parse().map_err(|_| bad_line(line))?,
                        sha256: sha.to_string(),
                    })
                }
                (Section::Files, [label, file, size, sha, description]) => {
                    corpus.files.push(CorpusFile {
                        label: label.to_string(),
                        file: file.to_string(),
                        size: size.parse().map_err(|_| bad_line(line))?,
                        sha256: sha.to_string(),
                        description: description.to_string(),
                    })
                }
                _ => return Err(bad_line(line)),
            }
        }
        Ok(corpus)
    }

    /// The bytes of one corpus file.
    pub fn read(&self, file: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.dir.join(file))
    }

    /// The files that share a label (a descriptor and its ME region, say).
    pub fn files_for(&self, label: &str) -> Vec<&CorpusFile> {
        self.files.iter().filter(|f| f.label == label).collect()
    }

    /// Assembles the full image for `label` as CORPUS.tsv describes: a buffer
    /// of the listed size filled with 0xFF, the descriptor at 0, the ME file
    /// at the ME region's base from the descriptor (FLREG2), or for `glk` the
    /// IFWI file at 0x1000 inside the BIOS region.
    pub fn assemble_full(&self, label: &str) -> std::io::Result<Vec<u8>> {
        let (size, _) = self
            .full_images
            .get(label)
            .ok_or_else(|| not_found(&format!("full:{label}")))?;
        let files = self.files_for(label);
        let descriptor = files
            .iter()
            .find(|f| f.size == 4096)
            .ok_or_else(|| not_found(&format!("descriptor for {label}")))?;
        let payload = files
            .iter()
            .find(|f| f.size != 4096)
            .ok_or_else(|| not_found(&format!("ME file for {label}")))?;
        let desc = self.read(&descriptor.file)?;
        let me = self.read(&payload.file)?;
        let base = if label == "glk" {
            0x1000
        } else {
            me_region_base(&desc).ok_or_else(|| not_found("ME region base in descriptor"))?
        };
        let mut image = vec![0xFF; *size as usize];
        image[..desc.len()].copy_from_slice(&desc);
        let end = base
            .checked_add(me.len())
            .filter(|&e| e <= image.len())
            .ok_or_else(|| not_found("room for the ME file in the image"))?;
        image[base..end].copy_from_slice(&me);
        Ok(image)
    }
}

/// The ME region base from a descriptor (FLVALSIG at 0x10, FLMAP0 FRBA,
/// FLREG2), read minimally: this is test support, not the parser under test.
fn me_region_base(desc: &[u8]) -> Option<usize> {
    let u32_at = |o: usize| {
        desc.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    if u32_at(0x10)? != 0x0FF0_A55A {
        return None;
    }
    let frba = (((u32_at(0x14)? >> 16) & 0xFF) << 4) as usize;
    let flreg2 = u32_at(frba + 8)?;
    Some(((flreg2 & 0x7FFF) as usize) << 12)
}

fn bad_line(line: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("bad CORPUS.tsv line: {line}"),
    )
}

fn not_found(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotFound, format!("corpus: no {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn assembled_full_images_match_corpus_tsv() {
        let Some(corpus) = Corpus::open_or_skip("assembled_full_images_match_corpus_tsv") else {
            return;
        };
        assert!(!corpus.full_images.is_empty());
        for (label, (size, sha)) in &corpus.full_images {
            let image = corpus.assemble_full(label).expect(label);
            assert_eq!(image.len() as u64, *size, "{label}");
            assert_eq!(hex::encode(Sha256::digest(&image)), *sha, "{label}");
        }
    }

    #[test]
    fn corpus_files_match_their_listed_digests() {
        let Some(corpus) = Corpus::open_or_skip("corpus_files_match_their_listed_digests") else {
            return;
        };
        for f in &corpus.files {
            let bytes = corpus.read(&f.file).expect(&f.file);
            assert_eq!(bytes.len() as u64, f.size, "{}", f.file);
            assert_eq!(hex::encode(Sha256::digest(&bytes)), f.sha256, "{}", f.file);
        }
    }
}

//! Which erase blocks a write must touch: those where the old and the new
//! image differ, and nothing else. Pure logic over two byte slices.

/// One erase block that differs between the old and the new image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangedBlock {
    /// Byte offset of the block in the chip (a multiple of the block size).
    pub offset: u64,
    /// Block length in bytes (the erase block size; shorter only for a chip
    /// whose size is not a multiple of it, which the engine refuses).
    pub len: u32,
}

/// Why two images cannot be planned against each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the new image is {new:#x} bytes but the flash holds {old:#x}")]
    SizeMismatch { old: u64, new: u64 },
    #[error("erase block size {0:#x} is not a power of two")]
    BadBlockSize(u32),
    #[error("image size {size:#x} is not a multiple of the erase block size {block:#x}")]
    NotBlockMultiple { size: u64, block: u32 },
}

/// Lists the erase blocks whose bytes differ, in ascending order.
pub fn changed_blocks(old: &[u8], new: &[u8], block: u32) -> Result<Vec<ChangedBlock>, PlanError> {
    if old.len() != new.len() {
        return Err(PlanError::SizeMismatch {
            old: old.len() as u64,
            new: new.len() as u64,
        });
    }
    if block == 0 || !block.is_power_of_two() {
        return Err(PlanError::BadBlockSize(block));
    }
    if old.len() as u64 % u64::from(block) != 0 {
        return Err(PlanError::NotBlockMultiple {
            size: old.len() as u64,
            block,
        });
    }
    let b = block as usize;
    Ok(old
        .chunks(b)
        .zip(new.chunks(b))
        .enumerate()
        .filter(|(_, (o, n))| o != n)
        .map(|(i, (o, _))| ChangedBlock {
            offset: (i * b) as u64,
            len: o.len() as u32,
        })
        .collect())
}

/// Groups adjacent blocks into runs `(offset, len)`, so a backend that costs
/// a start-up per call (flashrom) can erase and write each run at once.
pub fn runs(blocks: &[ChangedBlock]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for b in blocks {
        match out.last_mut() {
            Some((start, len)) if *start + *len == b.offset => *len += u64::from(b.len),
            _ => out.push((b.offset, u64::from(b.len))),
        }
    }
    out
}

/// Merges runs until at most `max` remain, closing the smallest gaps first
/// (a journal with room for few entries then describes spans that include
/// the unchanged blocks between runs; those are equal in the old and the new
/// image, so a span's digests still tell old from new). `max` 0 counts as 1.
pub fn coalesce(runs: &[(u64, u64)], max: usize) -> Vec<(u64, u64)> {
    let max = max.max(1);
    if runs.len() <= max {
        return runs.to_vec();
    }
    // Keep the (max - 1) widest gaps as cuts; close every other gap.
    let mut gaps: Vec<(u64, usize)> = runs
        .windows(2)
        .enumerate()
        .map(|(i, w)| (w[1].0.saturating_sub(w[0].0 + w[0].1), i))
        .collect();
    gaps.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut cut_after: Vec<usize> = gaps.iter().take(max - 1).map(|g| g.1).collect();
    cut_after.sort_unstable();
    let mut out = Vec::with_capacity(max);
    let mut start = 0;
    for end in cut_after.into_iter().chain([runs.len() - 1]) {
        if let (Some(first), Some(last)) = (runs.get(start), runs.get(end)) {
            out.push((first.0, last.0 + last.1 - first.0));
        }
        start = end + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_closes_the_smallest_gaps_first() {
        let r = [
            (0, 0x1000),
            (0x2000, 0x1000),
            (0x10000, 0x1000),
            (0x11000 + 0x1000, 0x1000),
        ];
        assert_eq!(coalesce(&r, 4), r.to_vec());
        assert_eq!(coalesce(&r, 9), r.to_vec());
        assert_eq!(coalesce(&r, 2), vec![(0, 0x3000), (0x10000, 0x3000)]);
        assert_eq!(coalesce(&r, 1), vec![(0, 0x13000)]);
        assert_eq!(coalesce(&r, 0), vec![(0, 0x13000)]);
        assert_eq!(coalesce(&[], 3), vec![]);
    }

    #[test]
    fn identical_images_change_nothing() {
        let a = vec![0x5Au8; 64 * 1024];
        assert!(changed_blocks(&a, &a, 4096).unwrap().is_empty());
    }

    #[test]
    fn one_byte_changes_exactly_its_block() {
        let a = vec![0u8; 64 * 1024];
        let mut b = a.clone();
        b[3 * 4096 + 100] = 1;
        b[3 * 4096 + 4095] = 1;
        b[9 * 4096] = 1;
        let c = changed_blocks(&a, &b, 4096).unwrap();
        assert_eq!(
            c,
            vec![
                ChangedBlock {
                    offset: 3 * 4096,
                    len: 4096
                },
                ChangedBlock {
                    offset: 9 * 4096,
                    len: 4096
                }
            ]
        );
    }

    #[test]
    fn block_boundaries_follow_the_block_size() {
        let a = vec![0u8; 256 * 1024];
        let mut b = a.clone();
        b[65536 + 65535] = 7; // last byte of the second 64 KiB block
        let c = changed_blocks(&a, &b, 65536).unwrap();
        assert_eq!(
            c,
            vec![ChangedBlock {
                offset: 65536,
                len: 65536
            }]
        );
    }

    #[test]
    fn runs_merge_adjacent_blocks_only() {
        let a = vec![0u8; 64 * 1024];
        let mut b = a.clone();
        for i in [1usize, 2, 3, 7, 9, 10] {
            b[i * 4096] = 1;
        }
        let r = runs(&changed_blocks(&a, &b, 4096).unwrap());
        assert_eq!(
            r,
            vec![(4096, 3 * 4096), (7 * 4096, 4096), (9 * 4096, 2 * 4096)]
        );
    }

    #[test]
    fn refuses_mismatched_or_odd_sizes() {
        assert_eq!(
            changed_blocks(&[0; 8192], &[0; 4096], 4096),
            Err(PlanError::SizeMismatch {
                old: 8192,
                new: 4096
            })
        );
        assert_eq!(
            changed_blocks(&[0; 8192], &[0; 8192], 3000),
            Err(PlanError::BadBlockSize(3000))
        );
        assert_eq!(
            changed_blocks(&[0; 5000], &[0; 5000], 4096),
            Err(PlanError::NotBlockMultiple {
                size: 5000,
                block: 4096
            })
        );
    }
}

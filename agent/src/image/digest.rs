//! SHA-256 of the whole image and of each enabled region, so that a report
//! can pin exactly which bytes were measured and an org can compare a
//! region across nodes without the rest of the image.
//!
//! The bytes are walked once per digest stream: the whole-image hash runs on
//! a second thread while this thread hashes the regions, both over the same
//! borrowed slice (no copy). On two cores this costs about one SHA-256 of
//! the image in wall time; if a thread cannot be started, both run here, one
//! after the other. Regions never overlap (the descriptor parser refuses
//! that), so the region hashes together read each byte at most once.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::descriptor::Region;

/// A region's digest, or why there is none.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RegionDigest {
    pub index: u8,
    pub name: &'static str,
    pub base: u32,
    pub len: usize,
    /// Hex SHA-256 of the region's bytes; `None` when the region does not
    /// lie wholly inside the input (a descriptor file alone, a short dump).
    pub sha256: Option<String>,
}

/// The digests of one input.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImageDigests {
    pub size: usize,
    /// Hex SHA-256 of the whole input.
    pub sha256: String,
    pub regions: Vec<RegionDigest>,
}

/// Hashes `bytes` whole and each enabled region of `regions` that fits.
pub fn digest(bytes: &[u8], regions: &[Region]) -> ImageDigests {
    let whole = std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .name("sha256-image".into())
            .spawn_scoped(s, || Sha256::digest(bytes));
        let regions = digest_regions(bytes, regions);
        let whole = match helper {
            Ok(handle) => handle.join().ok(),
            Err(_) => None,
        };
        // A failed spawn (or a helper that died) is not an error: hash here.
        (whole.unwrap_or_else(|| Sha256::digest(bytes)), regions)
    });
    ImageDigests {
        size: bytes.len(),
        sha256: hex::encode(whole.0),
        regions: whole.1,
    }
}

/// The digests of an input that was not hashed: the size, an empty
/// `sha256` and no regions. For reports that stay inside the agent and
/// need no digests (see `inspect::inspect_structure`).
pub fn not_computed(size: usize) -> ImageDigests {
    ImageDigests {
        size,
        sha256: String::new(),
        regions: Vec::new(),
    }
}

/// Hashes the enabled regions that fit in `bytes`, in image order.
fn digest_regions(bytes: &[u8], regions: &[Region]) -> Vec<RegionDigest> {
    let mut order: Vec<&Region> = regions.iter().filter(|r| r.enabled).collect();
    order.sort_by_key(|r| r.base);
    let mut out: Vec<RegionDigest> = order
        .into_iter()
        .map(|r| {
            let sha256 = r
                .range()
                .and_then(|range| bytes.get(range))
                .map(|region_bytes| hex::encode(Sha256::digest(region_bytes)));
            RegionDigest {
                index: r.index,
                name: r.kind.name(),
                base: r.base,
                len: r.len(),
                sha256,
            }
        })
        .collect();
    out.sort_by_key(|d| d.index);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::descriptor::Descriptor;
    use fortros_testkit::synth::descriptor::DescriptorBuilder;

    #[test]
    fn whole_and_region_digests_match_independent_hashes() {
        let mut image = DescriptorBuilder::v2().build_image(8 << 20);
        for (i, b) in image.iter_mut().enumerate().skip(0x1000).take(0x1000) {
            *b = i as u8;
        }
        let d = Descriptor::parse(&image).unwrap();
        let got = digest(&image, &d.regions);
        assert_eq!(got.size, 8 << 20);
        assert_eq!(got.sha256, hex::encode(Sha256::digest(&image)));
        let idx: Vec<u8> = got.regions.iter().map(|r| r.index).collect();
        assert_eq!(idx, vec![0, 1, 2]);
        let me = &got.regions[2];
        assert_eq!((me.base, me.len), (0x1000, 0x1F_F000));
        assert_eq!(
            me.sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&image[0x1000..0x20_0000])).as_str())
        );
        assert_ne!(got.regions[1].sha256, got.regions[2].sha256);
    }

    #[test]
    fn regions_outside_a_short_input_have_no_digest() {
        let desc = DescriptorBuilder::v2().build();
        let d = Descriptor::parse(&desc).unwrap();
        let got = digest(&desc, &d.regions);
        assert!(got.regions[0].sha256.is_some(), "descriptor region fits");
        assert!(got.regions[1].sha256.is_none());
        assert!(got.regions[2].sha256.is_none());
    }

    #[test]
    fn empty_input_has_the_empty_digest() {
        let got = digest(&[], &[]);
        assert_eq!(
            got.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

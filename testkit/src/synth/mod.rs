//! Builders of synthetic flash images (descriptor, ME region) that tests construct themselves.

pub mod descriptor;
pub mod me;

/// The demo's sample: an 8 MiB full image with an IFD v2 descriptor shaped
/// like a 100-series LP part, a synthetic CSME 11.8 region
/// ([`me::gen3_stock`], signed with a test key) and an empty BIOS region.
pub fn sample_full_image() -> Vec<u8> {
    descriptor::full_image_with_me(
        descriptor::DescriptorBuilder::v2(),
        &me::gen3_stock().bytes,
        8 << 20,
    )
}

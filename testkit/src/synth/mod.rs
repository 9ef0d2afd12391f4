//! Builders of synthetic flash images (descriptor, ME region) that tests construct themselves.

pub mod descriptor;
pub mod me;

/// The demo's sample: an 8 MiB full image with an IFD v2 descriptor (ME
/// region 0x1000-0x1FFFFF, BIOS 0x200000-0x7FFFFF) and 0xFF elsewhere.
pub fn sample_full_image() -> Vec<u8> {
    descriptor::DescriptorBuilder::v2().build_image(8 << 20)
}

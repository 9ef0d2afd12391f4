//! The live ME: PCI config space (HFSTS), sysfs, `/dev/meiN` (MKHI, AMTHI), Boot Guard.
//!
//! - [`family`]: which register layout applies (ME <= 10, CSME 11-15, 16-17, 18+).
//! - [`hfsts`]: pure decoders of HFSTS1-6.
//! - [`classify`]: one readable classification with its evidence.
//! - [`sysfs`]: finding 00:16.0, its config space and its `mei` class device.

pub mod amthi;
pub mod classify;
pub mod device;
pub mod family;
pub mod hfsts;
pub mod mkhi;
pub mod probe;
pub mod sysfs;

//! The live ME: PCI config space (HFSTS), sysfs, `/dev/meiN` (MKHI, AMTHI), Boot Guard.
//!
//! - [`family`]: which register layout applies (ME <= 10, CSME 11-15, 16-17, 18+).
//! - [`hfsts`]: pure decoders of HFSTS1-6.
//! - [`classify`]: one readable classification with its evidence.
//! - [`sysfs`]: finding 00:16.0, its config space and its `mei` class device.
//! - [`device`]: a client connection on `/dev/meiN` (connect ioctl, bounded reads).
//! - [`mkhi`], [`amthi`]: request encoders and bounded reply parsers.
//! - [`smbios`]: the BIOS's POST-time HFSTS snapshot, for hidden functions.
//! - [`probe`]: all of the above in order, into one [`probe::LiveMe`].

pub mod amthi;
pub mod classify;
pub mod device;
pub mod family;
pub mod hfsts;
pub mod mkhi;
pub mod probe;
pub mod smbios;
pub mod sysfs;

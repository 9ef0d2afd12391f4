//! Pure parsing and transforms of Intel SPI flash images: bytes in, typed
//! values or new bytes out. No I/O, no panics on hostile input.
//!
//! - [`inspect`]: the top level — what ME is in an image, in what state.
//! - [`boot_guard`]: Boot Guard hints from the FIT.
//! - [`descriptor`]: the flash descriptor (regions, masters, straps,
//!   version and platform).
//! - [`digest`]: SHA-256 of the image and of each region.
//! - [`disable_bit`]: the HAP / AltMeDisable strap, per platform.
//! - [`neutralize`]: the me_cleaner transform (strip, disable bit), with refusals.
//! - [`me`]: the ME region (FPT, manifests, `$CPD`, IFWI/BPDT), its family,
//!   version and state.

pub mod boot_guard;
pub mod descriptor;
pub mod digest;
pub mod disable_bit;
pub mod inspect;
pub mod me;
pub mod neutralize;

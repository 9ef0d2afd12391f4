//! Pure parsing and transforms of Intel SPI flash images: bytes in, typed
//! values or new bytes out. No I/O, no panics on hostile input.
//!
//! - [`descriptor`]: the flash descriptor (regions, masters, straps,
//!   version and platform).
//! - [`digest`]: SHA-256 of the image and of each region.
//! - [`disable_bit`]: the HAP / AltMeDisable strap, per platform.
//! - [`me`]: the ME region (FPT, manifests, `$CPD`, IFWI/BPDT), its family,
//!   version and state.

pub mod descriptor;
pub mod digest;
pub mod disable_bit;
pub mod me;

//! FortrOS preboot agent library.
//!
//! - [`image`]: pure parsing and transforms of SPI flash images (no I/O).
//! - [`hw`]: the node's hardware (flash, MEI, TPM), each part behind a small trait.
//! - [`boot`]: PID-1 duties (mounts, modules, logging, network, handoff).
//! - [`cli`]: the `fortros-agent` subcommands.
//!
//! See `docs/architecture.md` for how the parts fit together.

pub mod boot;
pub mod cli;
pub mod enroll;
pub mod enroll_tls;
pub mod hw;
pub mod image;

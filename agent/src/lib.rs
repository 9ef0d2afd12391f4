//! FortrOS preboot agent library.
//!
//! - [`image`]: pure parsing and transforms of SPI flash images (no I/O).
//! - [`hw`]: the node's hardware, each part behind a small trait.
//! - [`cli`]: the `fortros-agent` subcommands.
//!
//! See `docs/architecture.md` for how the parts fit together.

pub mod cli;
pub mod hw;
pub mod image;

//! FortrOS preboot agent library.
//!
//! - [`amt`]: the `use` policy: AMT activation over the MEI (APF, WS-MAN).
//! - [`image`]: pure parsing and transforms of SPI flash images (no I/O).
//! - [`hw`]: the node's hardware (flash, MEI, TPM), each part behind a small trait.
//! - [`boot`]: PID-1 duties (mounts, modules, logging, network, handoff).
//! - [`cli`]: the `fortros-agent` subcommands.
//! - [`report_facts`]: what was measured, converted into the wire report's facts.
//! - [`apply`]: applying a verified org policy (neutralize) on the node.
//!
//! See `docs/architecture.md` for how the parts fit together.

pub mod amt;
pub mod apply;
pub mod boot;
pub mod cli;
pub mod enroll;
pub mod enroll_tls;
pub mod hw;
pub mod image;
pub mod org_http;
pub mod report_facts;

//! The org side of FortrOS: the enrollment service, the node registry,
//! policy signing and the operator CLI (`fortros-org`).
//!
//! - [`store`]: the registry behind one trait (SQLite now, PostgreSQL later).
//! - [`exchange`]: the enrollment protocol's logic (no HTTP).
//! - [`server`]: the HTTP routes over [`exchange`].
//! - [`backup`]: node flash images kept before a write, served back.
//! - [`policy`]: policies as stored (AMT credentials encrypted at rest) and
//!   as issued (signed, bound to one node and one nonce).
//! - [`diff`]: what changed between two reports of a node.
//! - [`keys`], [`config`]: the org folder.
//! - [`export`]: network-block rules for ME MACs and AMT ports.
//! - [`tls`]: the service's TLS certificate (rustls, ring).
//! - [`amt`]: AMT credentials held per node, and power control through AMT.
//! - [`cli`]: the `fortros-org` subcommands.
//!
//! The operator's view is in docs/operator-guide.md.

pub mod amt;
pub mod backup;
pub mod cli;
pub mod config;
pub mod diff;
pub mod exchange;
pub mod export;
pub mod keys;
pub mod policy;
pub mod server;
pub mod store;
pub mod tls;

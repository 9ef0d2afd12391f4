//! TPM 2.0 client in pure Rust over `/dev/tpmrm0` or a swtpm socket, and
//! the node identity built on it.
//!
//! - [`transport`]: byte pipes (device, socket).
//! - [`frame`]: command/response frames and TPM return codes.
//! - [`client`]: the commands (GetRandom, CreatePrimary, ReadPublic,
//!   PCR_Read/Extend, Quote, NV_Read, sessions, ActivateCredential).
//! - [`identity`]: the attestation key, the ME-state measurement and the
//!   quote over the report.
//!
//! Structures are marshaled by `fortros_wire::tpm`, shared with the org's
//! verifier, so both sides read TPM bytes with the same code.

pub mod client;
pub mod frame;
pub mod identity;
pub mod nv;
pub mod transport;

pub use client::{Tpm, TpmError};
pub use transport::{DeviceTransport, SocketTransport, Transport};

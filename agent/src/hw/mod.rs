//! The node's hardware: flash, MEI, TPM, MSR. Each part sits behind a small
//! trait so the logic above it runs on files and emulators as well as on
//! real machines.

pub mod flash;
pub mod mei;
pub mod msr;
pub mod tpm;

//! PID-1 duties of the agent as `/init`: mounts, kernel modules, console and
//! kmsg logging, network, configuration, and the handoff to the OS.
//!
//! - [`init`]: the boot sequence and the failure policy;
//! - [`mounts`], [`modules`], [`logging`], [`network`]: its steps;
//! - [`config`]: the file `/etc/fortros/agent.toml`;
//! - [`handoff`]: kexec_file_load, switch_root, power off.
//!
//! See `docs/boot.md`.

pub mod config;
pub mod handoff;
pub mod init;
pub mod logging;
pub mod modules;
pub mod mounts;
pub mod network;
pub mod work;

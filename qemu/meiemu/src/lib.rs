//! An emulated Intel ME (the HECI/MEI PCI function at 00:16.0) for QEMU test
//! nodes. QEMU's `vfio-user-pci` device connects to [`vfio::Listener`]; the
//! guest's unmodified `mei_me` driver binds to it and gives the agent a real
//! `/dev/mei0`, while the scenario file decides what the ME says.
//!
//! Modules, from the wire up:
//! - [`vfio`]: the vfio-user server (config space and BAR0 accesses, INTx);
//! - [`pci`]: config space with the HFSTS registers;
//! - [`regs`] and [`device`]: the MEI registers, circular buffers, link
//!   reset, HBM dispatch, connections, flow control, fragmentation, faults;
//! - [`hbm`]: bus message and header encoding;
//! - [`clients`]: MKHI and AMTHI answers;
//! - [`scenario`]: the TOML scenario.

pub mod amt;
pub mod clients;
pub mod device;
pub mod hbm;
#[doc(hidden)]
pub mod hostsim;
pub mod pci;
pub mod regs;
pub mod scenario;
pub mod vfio;

pub use device::{Event, MeDevice};
pub use scenario::{Scenario, ScenarioError};
pub use vfio::{Listener, VfioError};

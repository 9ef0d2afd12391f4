//! The vfio-user front end: serves an [`MeDevice`] to QEMU's `vfio-user-pci`
//! over a unix socket (crate `vfio_user`, rust-vmm). One QEMU connection per
//! server; [`serve`] returns when QEMU disconnects.

use crate::device::{Event, MeDevice};
use crate::pci::{ConfigSpace, CONFIG_SIZE};
use crate::regs::BAR0_SIZE;
use crate::scenario::Resolved;
use log::{debug, info, warn};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use vfio_bindings::bindings::vfio::{
    vfio_region_info, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_SET_ACTION_TRIGGER,
    VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_BAR0_REGION_INDEX,
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS,
    VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_user::{DmaMapFlags, DmaUnmapFlags, IrqInfo, Server, ServerBackend, ServerRegion};

/// Errors of the vfio-user front end.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    #[error("vfio-user socket {path}: {source}")]
    Socket {
        path: String,
        source: vfio_user::Error,
    },
    #[error("vfio-user session on {path}: {source}")]
    Session {
        path: String,
        source: vfio_user::Error,
    },
}

/// The device plus what only the transport knows: config space and the
/// interrupt eventfd.
struct Backend {
    dev: MeDevice,
    cfg: ConfigSpace,
    intx: Option<File>,
    /// The line level last signalled, to send one event per rising edge.
    level: bool,
}

impl Backend {
    /// INTx is level-triggered; QEMU's eventfd delivers edges. mei_me clears
    /// IE in its hard handler and sets it again after draining, so signalling
    /// each rising edge of (IS and IE) delivers every event.
    fn update_irq(&mut self) {
        let level = self.dev.irq_level();
        if level && !self.level {
            if let Some(f) = &mut self.intx {
                debug!("irq: assert");
                if let Err(e) = f.write_all(&1u64.to_le_bytes()) {
                    warn!("INTx eventfd write: {e}");
                }
            }
        }
        self.level = level;
    }
}

fn dword(data: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    for (d, s) in b.iter_mut().zip(data) {
        *d = *s;
    }
    u32::from_le_bytes(b)
}

impl ServerBackend for Backend {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> std::io::Result<()> {
        if region == VFIO_PCI_CONFIG_REGION_INDEX {
            self.cfg.read(offset, data);
        } else if region == VFIO_PCI_BAR0_REGION_INDEX {
            let v = self.dev.bar0_read(offset).to_le_bytes();
            for (d, s) in data.iter_mut().zip(v.iter().chain(std::iter::repeat(&0))) {
                *d = *s;
            }
            self.update_irq();
        } else {
            data.fill(0);
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> std::io::Result<()> {
        if region == VFIO_PCI_CONFIG_REGION_INDEX {
            self.cfg.write(offset, data);
        } else if region == VFIO_PCI_BAR0_REGION_INDEX {
            self.dev.bar0_write(offset, dword(data));
            self.update_irq();
        }
        Ok(())
    }

    fn dma_map(
        &mut self,
        _flags: DmaMapFlags,
        _offset: u64,
        _address: u64,
        _size: u64,
        _fd: Option<File>,
    ) -> std::io::Result<()> {
        Ok(()) // no DMA ring: HBM 2.0 keeps everything in the registers
    }

    fn dma_unmap(&mut self, _f: DmaUnmapFlags, _address: u64, _size: u64) -> std::io::Result<()> {
        Ok(())
    }

    fn reset(&mut self) -> std::io::Result<()> {
        self.dev.reset();
        self.level = false;
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        _start: u32,
        _count: u32,
        fds: Vec<File>,
    ) -> std::io::Result<()> {
        if index == VFIO_PCI_INTX_IRQ_INDEX
            && flags & VFIO_IRQ_SET_ACTION_TRIGGER != 0
            && flags & VFIO_IRQ_SET_DATA_EVENTFD != 0
        {
            self.intx = fds.into_iter().next();
            info!(
                "INTx eventfd {}",
                if self.intx.is_some() {
                    "installed"
                } else {
                    "removed"
                }
            );
            self.level = false;
            self.update_irq();
        } else if flags & VFIO_IRQ_SET_ACTION_UNMASK != 0 {
            // Unmask after a level interrupt: if the line is still up, signal
            // again (matters with KVM's resampling irqfd; harmless under TCG).
            self.level = false;
            self.update_irq();
        }
        Ok(())
    }
}

fn regions() -> Vec<ServerRegion> {
    (0..VFIO_PCI_NUM_REGIONS)
        .map(|index| {
            let mut r = vfio_region_info {
                argsz: std::mem::size_of::<vfio_region_info>() as u32,
                index,
                ..Default::default()
            };
            let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
            if index == VFIO_PCI_CONFIG_REGION_INDEX {
                r.size = CONFIG_SIZE as u64;
                r.flags = rw;
            } else if index == VFIO_PCI_BAR0_REGION_INDEX {
                r.size = BAR0_SIZE;
                r.flags = rw;
            }
            ServerRegion {
                region_info: r,
                sparse_areas: Vec::new(),
                mmap_fd: None,
            }
        })
        .collect()
}

fn irqs() -> Vec<IrqInfo> {
    (0..VFIO_PCI_NUM_IRQS)
        .map(|index| IrqInfo {
            index,
            count: u32::from(index == VFIO_PCI_INTX_IRQ_INDEX),
            flags: if index == VFIO_PCI_INTX_IRQ_INDEX {
                VFIO_IRQ_INFO_EVENTFD
            } else {
                0
            },
        })
        .collect()
}

/// A bound, not yet connected, emulator.
pub struct Listener {
    server: Server,
    path: String,
    backend: Backend,
}

impl Listener {
    /// Binds `socket` (which must not exist) for one QEMU connection.
    pub fn bind(socket: &Path, scenario: Resolved) -> Result<Listener, VfioError> {
        let amt = crate::amt::AmtModel::shared(&scenario);
        Listener::bind_with_amt(socket, scenario, amt)
    }

    /// As [`Listener::bind`], with an AMT model shared with others (the
    /// state file, the remote port).
    pub fn bind_with_amt(
        socket: &Path,
        scenario: Resolved,
        amt: crate::amt::SharedAmt,
    ) -> Result<Listener, VfioError> {
        let path = socket.display().to_string();
        let server =
            Server::new(socket, true, irqs(), regions()).map_err(|source| VfioError::Socket {
                path: path.clone(),
                source,
            })?;
        let cfg = ConfigSpace::new(&scenario.scenario.pci);
        info!("meiemu: scenario {:?} on {path}", scenario.scenario.name);
        Ok(Listener {
            server,
            path,
            backend: Backend {
                dev: MeDevice::with_amt(scenario, amt),
                cfg,
                intx: None,
                level: false,
            },
        })
    }

    /// Serves one QEMU session; returns the transcript when QEMU disconnects.
    /// A session that ends with an error still returns what was seen, with
    /// the error.
    pub fn serve(mut self) -> (Vec<Event>, Result<(), VfioError>) {
        let result = self
            .server
            .run(&mut self.backend)
            .map_err(|source| VfioError::Session {
                path: self.path.clone(),
                source,
            });
        info!("meiemu: session on {} ended", self.path);
        (self.backend.dev.events().to_vec(), result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::{CSR_IE, CSR_IG, CSR_IS, CSR_RDY, CSR_RST, H_CSR, ME_CSR_HA};
    use crate::scenario::Scenario;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    /// A backend whose INTx "eventfd" is one end of a socket pair, so the test
    /// can count the interrupts QEMU would have received.
    fn backend() -> (Backend, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let scenario = Scenario::default().resolve().unwrap();
        let mut be = Backend {
            cfg: ConfigSpace::new(&scenario.scenario.pci),
            dev: MeDevice::new(scenario),
            intx: None,
            level: false,
        };
        let fd: std::os::fd::OwnedFd = a.into();
        be.set_irqs(
            VFIO_PCI_INTX_IRQ_INDEX,
            VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_EVENTFD,
            0,
            1,
            vec![File::from(fd)],
        )
        .unwrap();
        (be, b)
    }

    fn signals(rx: &mut UnixStream) -> usize {
        let mut buf = [0u8; 256];
        match rx.read(&mut buf) {
            Ok(n) => n / 8,
            Err(_) => 0,
        }
    }

    fn write(be: &mut Backend, off: u64, v: u32) {
        be.region_write(VFIO_PCI_BAR0_REGION_INDEX, off, &v.to_le_bytes())
            .unwrap();
    }

    #[test]
    fn one_signal_per_rising_edge_of_is_and_ie() {
        let (mut be, mut rx) = backend();
        assert_eq!(signals(&mut rx), 0);
        // link reset with IE: the ME raises IS -> one edge
        write(&mut be, H_CSR, CSR_RST | CSR_IG | CSR_IS | CSR_IE);
        assert_eq!(signals(&mut rx), 1);
        // the hard handler clears IE: line drops, no signal
        write(&mut be, H_CSR, CSR_RST);
        assert_eq!(signals(&mut rx), 0);
        // IE back on while IS is still set: a new edge
        write(&mut be, H_CSR, CSR_RST | CSR_IE);
        assert_eq!(signals(&mut rx), 1);
        // clear IS (W1C) and release reset: no new event yet
        write(&mut be, H_CSR, CSR_IS | CSR_IE);
        assert_eq!(signals(&mut rx), 0);
        write(&mut be, H_CSR, CSR_RDY | CSR_IE);
        assert_eq!(signals(&mut rx), 0);
    }

    #[test]
    fn config_and_bar_reads_through_the_backend() {
        let (mut be, _rx) = backend();
        let mut b = [0u8; 4];
        be.region_read(VFIO_PCI_CONFIG_REGION_INDEX, 0x40, &mut b)
            .unwrap();
        assert_eq!(u32::from_le_bytes(b), 0x0000_0245);
        be.region_read(VFIO_PCI_BAR0_REGION_INDEX, ME_CSR_HA, &mut b)
            .unwrap();
        assert_eq!(u32::from_le_bytes(b) >> 24, 0x80, "buffer depth");
        // a 2-byte read gets the low half, an unknown region reads zeros
        let mut two = [0xAAu8; 2];
        be.region_read(VFIO_PCI_CONFIG_REGION_INDEX, 0, &mut two)
            .unwrap();
        assert_eq!(two, [0x86, 0x80]);
        let mut z = [0xAAu8; 4];
        be.region_read(VFIO_PCI_CONFIG_REGION_INDEX - 1, 0, &mut z) // expansion ROM
            .unwrap();
        assert_eq!(z, [0; 4]);
    }
}

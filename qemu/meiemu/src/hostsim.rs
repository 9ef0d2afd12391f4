//! Test support: plays the `mei_me` driver's side of the registers against an
//! [`MeDevice`] in-process (link bring-up, fragments, doorbell, HBM, read
//! credits), so unit and integration tests drive the emulator without QEMU.
//! Panics on protocol surprises: it is a test harness, not a parser.

use crate::device::MeDevice;
use crate::hbm::MsgHeader;
use crate::regs::*;
use crate::scenario::Scenario;

/// The host side of one emulated ME.
pub struct HostSim {
    pub dev: MeDevice,
}

impl HostSim {
    /// A device for scenario text (panics on a bad scenario: test support).
    pub fn new(toml: &str) -> HostSim {
        let s = Scenario::from_toml(toml)
            .and_then(Scenario::resolve)
            .expect("test scenario is valid");
        HostSim::with_device(MeDevice::new(s))
    }

    /// Brings the link up on `dev`.
    pub fn with_device(dev: MeDevice) -> HostSim {
        let mut h = HostSim { dev };
        // link bring-up: RST|IG|IS|IE, wait ME_RDY, release, RDY|IE|IG
        h.dev.bar0_write(H_CSR, CSR_RST | CSR_IG | CSR_IS | CSR_IE);
        assert!(h.dev.bar0_read(ME_CSR_HA) & CSR_RDY != 0);
        assert!(h.dev.irq_level());
        h.dev.bar0_write(H_CSR, CSR_IG | CSR_IS | CSR_IE);
        h.dev.bar0_write(H_CSR, CSR_RDY | CSR_IE | CSR_IG);
        h
    }

    /// Writes one fragment and rings the doorbell.
    pub fn write(&mut self, me: u8, host: u8, payload: &[u8], complete: bool) {
        let hdr = MsgHeader {
            me_addr: me,
            host_addr: host,
            length: payload.len() as u16,
            complete,
            internal: false,
        };
        self.dev.bar0_write(H_CB_WW, hdr.encode());
        for w in payload.chunks(4) {
            let mut b = [0u8; 4];
            b[..w.len()].copy_from_slice(w);
            self.dev.bar0_write(H_CB_WW, u32::from_le_bytes(b));
        }
        self.dev
            .bar0_write(H_CSR, CSR_IS | CSR_IE | CSR_RDY | CSR_IG);
    }

    /// Drains the ME buffer (refilling through the doorbell) and returns
    /// the reassembled messages as (me, host, bytes).
    pub fn read_all(&mut self) -> Vec<(u8, u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut partial: Vec<u8> = Vec::new();
        loop {
            let me_csr = self.dev.bar0_read(ME_CSR_HA);
            let filled = ((me_csr >> 16) as u8).wrapping_sub((me_csr >> 8) as u8);
            if filled == 0 {
                self.dev
                    .bar0_write(H_CSR, CSR_IS | CSR_IE | CSR_RDY | CSR_IG);
                let me_csr = self.dev.bar0_read(ME_CSR_HA);
                if (me_csr >> 16) as u8 == (me_csr >> 8) as u8 {
                    return out;
                }
                continue;
            }
            let hdr =
                MsgHeader::parse(self.dev.bar0_read(ME_CB_RW)).expect("ME sent a valid header");
            let mut bytes = Vec::new();
            for _ in 0..usize::from(hdr.length).div_ceil(4) {
                bytes.extend_from_slice(&self.dev.bar0_read(ME_CB_RW).to_le_bytes());
            }
            bytes.truncate(usize::from(hdr.length));
            partial.extend_from_slice(&bytes);
            if hdr.complete {
                out.push((hdr.me_addr, hdr.host_addr, std::mem::take(&mut partial)));
            }
        }
    }

    pub fn bus(&mut self, m: &[u8]) -> Vec<Vec<u8>> {
        self.write(0, 0, m, true);
        self.read_all().into_iter().map(|(_, _, b)| b).collect()
    }

    pub fn connect(&mut self, me: u8, host: u8) {
        let r = self.bus(&[0x06, me, host, 0]);
        assert_eq!(r[0], vec![0x86, me, host, 0]);
        assert_eq!(r[1], vec![0x08, me, host, 0, 0, 0, 0, 0]);
    }

    /// Sends a request, grants one read credit, returns the client's reply.
    pub fn request(&mut self, me: u8, host: u8, req: &[u8]) -> Option<Vec<u8>> {
        for (i, c) in req.chunks(MAX_FRAGMENT).enumerate() {
            let last = (i + 1) * MAX_FRAGMENT >= req.len();
            self.write(me, host, c, last);
        }
        self.write(0, 0, &[0x08, me, host, 0, 0, 0, 0, 0], true);
        self.read_all()
            .into_iter()
            .find(|(m, h, _)| (*m, *h) == (me, host))
            .map(|(_, _, b)| b)
    }
}

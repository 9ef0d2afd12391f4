//! PCI configuration space of the emulated ME function (function 0 of device
//! 0x16): Intel IDs, class 07/80, a 64-bit memory BAR0, INTA, and the six
//! firmware status registers where `mei_me` and the agent read them.

use crate::scenario::Pci;

/// Size of the config space we expose (conventional PCI; no extended space).
pub const CONFIG_SIZE: usize = 256;
/// HFSTS1..6 offsets (`PCI_CFG_HFS_1`..`_6` in the kernel).
pub const HFSTS_OFFSETS: [usize; 6] = [0x40, 0x48, 0x60, 0x64, 0x68, 0x6C];

const INTEL: u32 = 0x8086;
/// The guest may write command, cache-line size, latency timer and interrupt
/// line; everything else is read-only (status bits are not emulated).
const WRITABLE: [usize; 5] = [0x04, 0x05, 0x0C, 0x0D, 0x3C];

pub struct ConfigSpace {
    bytes: [u8; CONFIG_SIZE],
}

impl ConfigSpace {
    pub fn new(p: &Pci) -> ConfigSpace {
        let mut c = ConfigSpace {
            bytes: [0; CONFIG_SIZE],
        };
        c.put(0x00, INTEL | u32::from(p.device_id) << 16);
        // class 0x07 (communication), subclass 0x80 (other), prog-if 0, revision
        c.put(0x08, 0x0780_0000 | u32::from(p.revision));
        c.put(0x10, 0x0000_0004); // BAR0: memory, 64-bit, non-prefetchable
        c.put(0x2C, INTEL | 0x7270 << 16); // subsystem
        c.bytes[0x3D] = 1; // interrupt pin INTA
        for (off, v) in HFSTS_OFFSETS.iter().zip(p.hfsts) {
            c.put(*off, v);
        }
        c
    }

    fn put(&mut self, off: usize, v: u32) {
        if let Some(s) = self.bytes.get_mut(off..off + 4) {
            s.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Reads `data.len()` bytes at `offset`; bytes past the end read as 0.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|a| self.bytes.get(a))
                .copied()
                .unwrap_or(0);
        }
    }

    /// Writes the bytes the guest may change; ignores the rest.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let Some(a) = usize::try_from(offset).ok().and_then(|o| o.checked_add(i)) else {
                continue;
            };
            if WRITABLE.contains(&a) {
                if let Some(slot) = self.bytes.get_mut(a) {
                    *slot = *b;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_hfsts() {
        let p = Pci {
            device_id: 0x51E0,
            revision: 1,
            hfsts: [1, 2, 3, 4, 5, 0xDEAD_BEEF],
        };
        let c = ConfigSpace::new(&p);
        let mut b = [0u8; 4];
        c.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x51E0_8086);
        c.read(0x6C, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0xDEAD_BEEF);
        c.read(0x48, &mut b);
        assert_eq!(u32::from_le_bytes(b), 2);
        c.read(u64::MAX, &mut b);
        assert_eq!(b, [0; 4]);
    }

    #[test]
    fn hfsts_are_read_only() {
        let mut c = ConfigSpace::new(&Pci::default());
        c.write(0x40, &[0, 0, 0, 0]);
        c.write(0x04, &[0x06, 0x04]);
        let mut b = [0u8; 4];
        c.read(0x40, &mut b);
        assert_eq!(u32::from_le_bytes(b), Pci::default().hfsts[0]);
        c.read(0x04, &mut b);
        assert_eq!(&b[..2], &[0x06, 0x04]);
    }
}

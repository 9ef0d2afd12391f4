//! BAR0 register layout of the MEI (HECI) PCI function and its two circular
//! buffers (`drivers/misc/mei/hw-me-regs.h`).

/// Host circular buffer write window: the host writes message dwords here.
pub const H_CB_WW: u64 = 0x00;
/// Host control/status.
pub const H_CSR: u64 = 0x04;
/// ME circular buffer read window: each read pops one ME -> host dword.
pub const ME_CB_RW: u64 = 0x08;
/// ME control/status as the host sees it.
pub const ME_CSR_HA: u64 = 0x0C;
/// Power gating, trace and D0i3 registers: read as 0 (PG capability off,
/// D0i3 not offered because HFSTS1 bit 31 stays clear).
pub const H_HPG_CSR: u64 = 0x10;
pub const ME_TRC: u64 = 0x30;
pub const H_D0I3C: u64 = 0x800;

/// Size of BAR0.
pub const BAR0_SIZE: u64 = 0x1000;

// CSR bits (shared layout for H_CSR and ME_CSR_HA).
pub const CSR_IE: u32 = 1 << 0;
pub const CSR_IS: u32 = 1 << 1;
pub const CSR_IG: u32 = 1 << 2;
pub const CSR_RDY: u32 = 1 << 3;
pub const CSR_RST: u32 = 1 << 4;
/// D0i3 interrupt status in H_CSR (write 1 to clear, like IS).
pub const H_D0I3C_IS: u32 = 1 << 6;

/// Depth of each circular buffer in dwords. The driver reads it from bits
/// 31:24 of the CSRs once as its buffer size.
pub const DEPTH: usize = 0x80;

/// Largest payload of one fragment: the buffer minus the header dword.
pub const MAX_FRAGMENT: usize = (DEPTH - 1) * 4;

/// Packs a CSR value from its parts.
pub fn csr(flags: u32, read_ptr: u8, write_ptr: u8) -> u32 {
    ((DEPTH as u32) << 24) | (u32::from(write_ptr) << 16) | (u32::from(read_ptr) << 8) | flags
}

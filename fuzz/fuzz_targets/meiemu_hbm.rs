//! The MEI emulator faces whatever a (possibly buggy) guest driver writes:
//! bus messages, headers, and arbitrary register access sequences. None of it
//! may panic. The input is both parsed directly as an HBM message and replayed
//! as register accesses against a device that has completed link bring-up.
#![no_main]

use fortros_meiemu::hbm::{HostMsg, MsgHeader};
use fortros_meiemu::regs::{CSR_IE, CSR_IG, CSR_IS, CSR_RDY, CSR_RST, H_CB_WW, H_CSR, ME_CB_RW, ME_CSR_HA};
use fortros_meiemu::{MeDevice, Scenario};
use fortros_meiemu::scenario::Resolved;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// A scenario with every fault kind in play, so the fault paths run too.
/// Parsed once: TOML parsing would dominate each run.
fn scenario() -> Resolved {
    static S: OnceLock<Resolved> = OnceLock::new();
    S.get_or_init(|| {
        Scenario::from_toml(
            "[[faults]]\nclient = \"amthi\"\naction = \"reset\"\nafter = 2\n\
             [[faults]]\nclient = \"mkhi\"\naction = \"truncate\"\nafter = 1\ntimes = 2\n\
             [[faults]]\nclient = \"mkhi_fix\"\naction = \"bad_header\"\nafter = 1\n",
        )
        .and_then(Scenario::resolve)
        .expect("fixed scenario")
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let _ = HostMsg::parse(data);
    if let Some(b) = data.get(..4) {
        let _ = MsgHeader::parse(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    }
    let mut dev = MeDevice::new(scenario());
    dev.bar0_write(H_CSR, CSR_RST | CSR_IG | CSR_IS | CSR_IE);
    dev.bar0_write(H_CSR, CSR_RDY | CSR_IE | CSR_IG);
    // 5-byte operations: kind, then a little-endian dword.
    for op in data.chunks_exact(5) {
        let v = u32::from_le_bytes([op[1], op[2], op[3], op[4]]);
        match op[0] % 6 {
            0 | 1 => dev.bar0_write(H_CB_WW, v),
            2 => dev.bar0_write(H_CSR, v),
            3 => {
                dev.bar0_read(ME_CB_RW);
            }
            4 => {
                dev.bar0_read(ME_CSR_HA);
            }
            _ => dev.bar0_write(H_CSR, CSR_RDY | CSR_IE | CSR_IG | CSR_IS),
        }
    }
    let _ = dev.events().len();
});

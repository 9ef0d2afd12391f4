//! HFSTS decoding and classification on arbitrary registers, for every family,
//! plus the sysfs text parsers and the SMBIOS FWSTS finder: never a panic.
#![no_main]

use std::path::Path;

use fortros_agent::hw::mei::classify::{classify, MeiPresence, Observation, PciPresence};
use fortros_agent::hw::mei::family::Family;
use fortros_agent::hw::mei::hfsts::{decode, Hfsts};
use fortros_agent::hw::mei::smbios::find_fwsts;
use fortros_agent::hw::mei::sysfs::{parse_fw_status, parse_fw_ver};
use fortros_agent::hw::msr::decode_boot_guard_msr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut regs = [0u32; 6];
    for (i, r) in regs.iter_mut().enumerate() {
        if let Some(b) = data.get(i * 4..i * 4 + 4) {
            *r = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    let families = [
        None,
        Some(Family::Me),
        Some(Family::Csme11),
        Some(Family::Csme16),
        Some(Family::Csme18),
    ];
    for family in families {
        let d = decode(Hfsts(regs), family);
        for mei in [
            MeiPresence::NoDevice,
            MeiPresence::Device { dev_state: Some("DISABLED".into()) },
        ] {
            let c = classify(&Observation {
                pci: PciPresence::Present { device: 0xA0E0 },
                server_pch: data.first().is_some_and(|b| b & 1 == 1),
                hfsts: Some(&d),
                mei,
                mkhi_answered: Some(false),
                hfsts_from_smbios: false,
            });
            assert!(!c.evidence.is_empty());
        }
    }
    if let Some(b) = data.get(24..32) {
        let mut m = [0u8; 8];
        m.copy_from_slice(b);
        let _ = decode_boot_guard_msr(u64::from_le_bytes(m));
    }
    // The same registers as a POST snapshot of a hidden function.
    let d = decode(Hfsts(regs), None);
    let _ = classify(&Observation {
        pci: PciPresence::Absent,
        server_pch: false,
        hfsts: Some(&d),
        mei: MeiPresence::NoDevice,
        mkhi_answered: None,
        hfsts_from_smbios: true,
    });
    // The raw bytes as an SMBIOS structure table.
    let _ = find_fwsts(data);
    let text = String::from_utf8_lossy(data);
    let _ = parse_fw_status(Path::new("fw_status"), &text);
    let _ = parse_fw_ver(Path::new("fw_ver"), &text);
});

//! Every MKHI and AMTHI reply parser on hostile bytes: errors, never panics.
#![no_main]

use fortros_agent::hw::mei::{amthi, mkhi};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mkhi::parse_fw_version(data);
    let rule = data.get(4..8).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let _ = mkhi::parse_get_rule(data, rule);
    let _ = mkhi::parse_rule_u32(data, rule);
    let _ = amthi::parse_code_versions(data);
    let _ = amthi::parse_provisioning_state(data);
    let _ = amthi::parse_control_mode(data);
    let _ = amthi::parse_uuid(data);
    let _ = amthi::parse_lan_interface_settings(data, 0);
    if data.len() >= 8 {
        let cmd = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) & !0x0080_0000;
        let _ = amthi::parse_response("fuzz", data, cmd);
    }
});

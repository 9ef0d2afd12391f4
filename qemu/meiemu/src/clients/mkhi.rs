//! MKHI: the ME kernel host interface (versions, capabilities).
//!
//! Header (4 bytes): group, command (bit 7 = response), reserved, result.

use crate::scenario::{FwVersion, Resolved};
use log::info;

pub const GROUP_FWCAPS: u8 = 0x03;
pub const GROUP_HMRFPO: u8 = 0x05;
pub const GROUP_GEN: u8 = 0xFF;
pub const FWCAPS_GET_RULE: u8 = 0x02;
pub const FWCAPS_SET_OS_VER: u8 = 0x06;
pub const HMRFPO_GET_STATUS: u8 = 0x03;
pub const GEN_GET_FW_VERSION: u8 = 0x02;

pub const RESULT_OK: u8 = 0x00;
/// "not found": an unknown FWCAPS rule.
pub const RESULT_NOT_FOUND: u8 = 0x81;
/// "invalid command".
pub const RESULT_INVALID_COMMAND: u8 = 0x8D;
/// "size error": the request is shorter than its command needs.
pub const RESULT_SIZE_ERROR: u8 = 0x05;

pub const RULE_FEATURES_CAPABLE: u32 = 0x00;
pub const RULE_FW_UPDATE_STATE: u32 = 0x07;
pub const RULE_PLATFORM_TYPE: u32 = 0x1D;
pub const RULE_FEATURES_ENABLED: u32 = 0x20;

fn version_block(v: FwVersion, platform: u8) -> [u8; 8] {
    // {u16 minor, u8 major, u8 platform, u16 build, u16 hotfix}
    let mut b = [0u8; 8];
    b[0..2].copy_from_slice(&v.minor.to_le_bytes());
    b[2] = v.major;
    b[3] = platform;
    b[4..6].copy_from_slice(&v.build.to_le_bytes());
    b[6..8].copy_from_slice(&v.hotfix.to_le_bytes());
    b
}

/// The reply to one MKHI request; `None` for messages the ME does not answer
/// (the kernel's OS-version report).
pub fn answer(req: &[u8], s: &Resolved) -> Option<Vec<u8>> {
    let group = req.first().copied().unwrap_or(0);
    let cmd = req.get(1).copied().unwrap_or(0) & 0x7F;
    info!(
        "MKHI: request group {group:#04x} command {cmd:#04x} ({} bytes)",
        req.len()
    );
    let mut r = vec![group, cmd | 0x80, 0, RESULT_OK];
    if req.len() < 4 {
        r[3] = RESULT_SIZE_ERROR;
        return Some(r);
    }
    match (group, cmd) {
        (GROUP_GEN, GEN_GET_FW_VERSION) => {
            let p = s.scenario.firmware.platform;
            for v in [s.code, s.recovery, s.fitc] {
                r.extend_from_slice(&version_block(v, p));
            }
        }
        (GROUP_FWCAPS, FWCAPS_GET_RULE) => {
            let Some(rule) = req.get(4..8) else {
                r[3] = RESULT_SIZE_ERROR;
                return Some(r);
            };
            let rule_id = u32::from_le_bytes([rule[0], rule[1], rule[2], rule[3]]);
            let m = &s.scenario.mkhi;
            let data = match rule_id {
                RULE_FEATURES_CAPABLE => Some(m.features_capable),
                RULE_FW_UPDATE_STATE => Some(m.fw_update_state),
                RULE_PLATFORM_TYPE => Some(m.platform_type),
                RULE_FEATURES_ENABLED => Some(m.features_enabled),
                _ => None,
            };
            r.extend_from_slice(&rule_id.to_le_bytes());
            match data {
                Some(d) => {
                    r.push(4);
                    r.extend_from_slice(&d.to_le_bytes());
                }
                None => {
                    r[3] = RESULT_NOT_FOUND;
                    r.push(0);
                }
            }
        }
        // The kernel reports the OS version and does not wait for an answer.
        (GROUP_FWCAPS, FWCAPS_SET_OS_VER) => return None,
        (GROUP_HMRFPO, HMRFPO_GET_STATUS) => {
            r.extend_from_slice(&[s.scenario.mkhi.hmrfpo_status, 0, 0, 0]);
        }
        _ => r[3] = RESULT_INVALID_COMMAND,
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn scenario(toml: &str) -> Resolved {
        Scenario::from_toml(toml).unwrap().resolve().unwrap()
    }

    #[test]
    fn fw_version_blocks_as_the_kernel_reads_them() {
        let s = scenario("[firmware]\ncode = \"16.1.25.2148\"\nplatform = 3");
        let r = answer(&[0xFF, 0x02, 0, 0], &s).unwrap();
        assert_eq!(r.len(), 4 + 24);
        assert_eq!(&r[..4], &[0xFF, 0x82, 0, 0]);
        // minor 1, major 16, platform 3, build 2148, hotfix 25
        assert_eq!(&r[4..12], &[1, 0, 16, 3, 0x64, 0x08, 25, 0]);
    }

    #[test]
    fn fwcaps_rules() {
        let s = scenario("[mkhi]\nfeatures_enabled = 0x1234");
        let r = answer(&[0x03, 0x02, 0, 0, 0x20, 0, 0, 0], &s).unwrap();
        assert_eq!(
            r,
            vec![0x03, 0x82, 0, 0, 0x20, 0, 0, 0, 4, 0x34, 0x12, 0, 0]
        );
        let r = answer(&[0x03, 0x02, 0, 0, 0x55, 0, 0, 0], &s).unwrap();
        assert_eq!(r[3], RESULT_NOT_FOUND);
        let r = answer(&[0x03, 0x02, 0, 0], &s).unwrap();
        assert_eq!(r[3], RESULT_SIZE_ERROR);
    }

    #[test]
    fn unknown_and_short_requests() {
        let s = scenario("");
        assert_eq!(
            answer(&[0x42, 0x11, 0, 0], &s).unwrap()[3],
            RESULT_INVALID_COMMAND
        );
        assert_eq!(answer(&[0xFF], &s).unwrap()[3], RESULT_SIZE_ERROR);
        assert_eq!(answer(&[0x03, 0x06, 0, 0, 0, 0, 0, 0], &s), None);
    }
}

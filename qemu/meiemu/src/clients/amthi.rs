//! AMTHI (PTHI): the AMT host interface.
//!
//! 12-byte header: u8 major 1, u8 minor 1, u16 reserved, u32 command (bit 23
//! set in responses), u32 payload length. A response payload starts with a
//! u32 status.

use crate::amt::{lock, SharedAmt, LSA_USER};
use crate::scenario::Resolved;
use log::info;

pub const HEADER_LEN: usize = 12;
pub const RESPONSE_BIT: u32 = 0x0080_0000;

pub const GET_PROVISIONING_STATE: u32 = 0x0400_0011;
pub const GET_CODE_VERSIONS: u32 = 0x0400_001A;
pub const GET_LAN_INTERFACE_SETTINGS: u32 = 0x0400_0048;
pub const GET_UUID: u32 = 0x0400_005C;
pub const GET_CONTROL_MODE: u32 = 0x0400_006B;
pub const GET_LOCAL_SYSTEM_ACCOUNT: u32 = 0x0400_0067;
pub const UNPROVISION: u32 = 0x0400_0010;
pub const STOP_CONFIGURATION: u32 = 0x0400_005E;

pub const STATUS_SUCCESS: u32 = 0;
pub const STATUS_INTERNAL_ERROR: u32 = 1;
pub const STATUS_INVALID_AMT_MODE: u32 = 3;
pub const STATUS_NOT_PERMITTED: u32 = 16;
pub const STATUS_INVALID_MESSAGE_LENGTH: u32 = 4;
pub const STATUS_INVALID_PARAMETER: u32 = 36;

/// Builds a request (used by tests and the guest test client's documentation).
pub fn request(command: u32, body: &[u8]) -> Vec<u8> {
    let mut r = vec![1u8, 1, 0, 0];
    r.extend_from_slice(&command.to_le_bytes());
    r.extend_from_slice(&(body.len() as u32).to_le_bytes());
    r.extend_from_slice(body);
    r
}

fn response(command: u32, status: u32, payload: &[u8]) -> Vec<u8> {
    let mut r = vec![1u8, 1, 0, 0];
    r.extend_from_slice(&(command | RESPONSE_BIT).to_le_bytes());
    r.extend_from_slice(&(4 + payload.len() as u32).to_le_bytes());
    r.extend_from_slice(&status.to_le_bytes());
    r.extend_from_slice(payload);
    r
}

/// {u16 length, char[20]}: the fixed-size string AMTHI uses.
fn amt_string(s: &str) -> [u8; 22] {
    let mut b = [0u8; 22];
    let bytes = &s.as_bytes()[..s.len().min(20)];
    b[0..2].copy_from_slice(&(bytes.len() as u16).to_le_bytes());
    b[2..2 + bytes.len()].copy_from_slice(bytes);
    b
}

/// A NUL-padded char[33] (CFG_MAX_ACL_USER_LENGTH).
fn acl_string(s: &str) -> [u8; 33] {
    let mut b = [0u8; 33];
    let n = s.len().min(32);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

/// The reply to one AMTHI request; provisioning facts come from the AMT
/// model (which Setup and the state file change), the rest from the scenario.
pub fn answer(req: &[u8], s: &Resolved, amt: &SharedAmt) -> Vec<u8> {
    let Some(h) = req.get(..HEADER_LEN) else {
        info!("AMTHI: short request ({} bytes)", req.len());
        return response(0, STATUS_INVALID_MESSAGE_LENGTH, &[]);
    };
    let command = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let length = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
    let body = req.get(HEADER_LEN..).unwrap_or(&[]);
    info!(
        "AMTHI: request command {command:#010x} ({} bytes)",
        req.len()
    );
    if body.len() != length {
        return response(command, STATUS_INVALID_MESSAGE_LENGTH, &[]);
    }
    let mut model = lock(amt);
    let amt = &s.scenario.amt;
    match command {
        GET_PROVISIONING_STATE => response(
            command,
            STATUS_SUCCESS,
            &model.state.provisioning_state.to_le_bytes(),
        ),
        GET_CONTROL_MODE => response(
            command,
            STATUS_SUCCESS,
            &model.state.control_mode.to_le_bytes(),
        ),
        GET_LOCAL_SYSTEM_ACCOUNT => {
            if length != 40 {
                return response(command, STATUS_INVALID_MESSAGE_LENGTH, &[]);
            }
            let mut p = Vec::with_capacity(66);
            p.extend_from_slice(&acl_string(LSA_USER));
            p.extend_from_slice(&acl_string(&model.lsa_password));
            response(command, STATUS_SUCCESS, &p)
        }
        UNPROVISION => {
            if length != 4 {
                return response(command, STATUS_INVALID_MESSAGE_LENGTH, &[]);
            }
            if model.state.control_mode == 2 {
                // ACM: only WS-MAN unprovision as admin
                return response(command, STATUS_INVALID_AMT_MODE, &[]);
            }
            if model.state.provisioning_state != 0 {
                model.unprovision();
            }
            response(command, STATUS_SUCCESS, &0u32.to_le_bytes())
        }
        STOP_CONFIGURATION => {
            if model.state.provisioning_state != 1 {
                return response(command, STATUS_NOT_PERMITTED, &[]);
            }
            model.unprovision();
            response(command, STATUS_SUCCESS, &[])
        }
        GET_UUID => response(command, STATUS_SUCCESS, &s.amt_uuid),
        GET_CODE_VERSIONS => {
            let mut p = vec![0u8; 65];
            let bios = amt.bios_version.as_bytes();
            let n = bios.len().min(64);
            p[..n].copy_from_slice(&bios[..n]);
            p.extend_from_slice(&(amt.code_versions.len() as u32).to_le_bytes());
            for (desc, ver) in &amt.code_versions {
                p.extend_from_slice(&amt_string(desc));
                p.extend_from_slice(&amt_string(ver));
            }
            response(command, STATUS_SUCCESS, &p)
        }
        GET_LAN_INTERFACE_SETTINGS => {
            let Some(idx) = body.get(0..4) else {
                return response(command, STATUS_INVALID_MESSAGE_LENGTH, &[]);
            };
            let idx = u32::from_le_bytes([idx[0], idx[1], idx[2], idx[3]]);
            match s.lan.iter().find(|l| l.index == idx) {
                Some(l) => {
                    // the wired interface follows AMT_EthernetPortSettings
                    let (ipv4, dhcp) = if idx == 0 {
                        let e = &model.state.ethernet;
                        let ip = e
                            .ip_address
                            .parse::<std::net::Ipv4Addr>()
                            .map(u32::from)
                            .unwrap_or(l.ipv4);
                        (ip, e.dhcp_enabled)
                    } else {
                        (l.ipv4, l.dhcp)
                    };
                    let mut p = Vec::with_capacity(20);
                    p.extend_from_slice(&u32::from(l.enabled).to_le_bytes());
                    p.extend_from_slice(&ipv4.to_le_bytes());
                    p.extend_from_slice(&u32::from(dhcp).to_le_bytes());
                    p.push(l.dhcp_mode);
                    p.push(u8::from(l.link_up));
                    p.extend_from_slice(&l.mac);
                    response(command, STATUS_SUCCESS, &p)
                }
                None => response(command, STATUS_INVALID_PARAMETER, &[]),
            }
        }
        _ => response(command, STATUS_INTERNAL_ERROR, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn scenario(toml: &str) -> Resolved {
        Scenario::from_toml(toml).unwrap().resolve().unwrap()
    }

    /// Answers with a fresh model for the scenario.
    fn answer(req: &[u8], s: &Resolved) -> Vec<u8> {
        super::answer(req, s, &crate::amt::AmtModel::shared(s))
    }

    fn status(r: &[u8]) -> u32 {
        u32::from_le_bytes(r[12..16].try_into().unwrap())
    }

    #[test]
    fn provisioning_state_and_control_mode() {
        let s = scenario("[amt]\nprovisioning_state = 2\ncontrol_mode = 1");
        let r = answer(&request(GET_PROVISIONING_STATE, &[]), &s);
        assert_eq!(
            &r[4..8],
            &(GET_PROVISIONING_STATE | RESPONSE_BIT).to_le_bytes()
        );
        assert_eq!(&r[8..12], &8u32.to_le_bytes());
        assert_eq!(status(&r), 0);
        assert_eq!(&r[16..], &2u32.to_le_bytes());
        let r = answer(&request(GET_CONTROL_MODE, &[]), &s);
        assert_eq!(&r[16..], &1u32.to_le_bytes());
    }

    #[test]
    fn lan_settings_carry_the_mac() {
        let s = scenario("[amt]\nlan = [{ mac = \"00:16:3e:01:02:03\", ipv4 = \"1.2.3.4\" }]");
        let r = answer(
            &request(GET_LAN_INTERFACE_SETTINGS, &0u32.to_le_bytes()),
            &s,
        );
        assert_eq!(status(&r), 0);
        assert_eq!(r.len(), 16 + 20);
        assert_eq!(&r[20..24], &0x0102_0304u32.to_le_bytes());
        assert_eq!(&r[30..36], &[0x00, 0x16, 0x3e, 1, 2, 3]);
        // no wireless interface in this scenario
        let r = answer(
            &request(GET_LAN_INTERFACE_SETTINGS, &1u32.to_le_bytes()),
            &s,
        );
        assert_eq!(status(&r), STATUS_INVALID_PARAMETER);
    }

    #[test]
    fn code_versions_layout() {
        let s = scenario("");
        let r = answer(&request(GET_CODE_VERSIONS, &[]), &s);
        assert_eq!(status(&r), 0);
        let p = &r[16..];
        assert_eq!(&p[..6], b"FORTRO");
        assert_eq!(&p[65..69], &3u32.to_le_bytes());
        assert_eq!(p.len(), 65 + 4 + 3 * 44);
        assert_eq!(&p[69..71], &3u16.to_le_bytes());
        assert_eq!(&p[71..74], b"AMT");
    }

    #[test]
    fn lsa_unprovision_and_stop_configuration_change_the_model() {
        let s = scenario("[amt]\nprovisioning_state = 2\ncontrol_mode = 1");
        let amt = crate::amt::AmtModel::shared(&s);
        let r = super::answer(&request(GET_LOCAL_SYSTEM_ACCOUNT, &[0; 40]), &s, &amt);
        assert_eq!(status(&r), 0);
        assert_eq!(r.len(), 16 + 66);
        assert_eq!(&r[16..25], b"$$OsAdmin");
        assert_eq!(r[25], 0);
        let pw = std::str::from_utf8(&r[49..49 + 24]).unwrap();
        assert_eq!(pw, lock(&amt).lsa_password);
        // wrong length
        let r = super::answer(&request(GET_LOCAL_SYSTEM_ACCOUNT, &[]), &s, &amt);
        assert_eq!(status(&r), STATUS_INVALID_MESSAGE_LENGTH);
        // StopConfiguration only from "in provisioning"
        let r = super::answer(&request(STOP_CONFIGURATION, &[]), &s, &amt);
        assert_eq!(status(&r), STATUS_NOT_PERMITTED);
        let r = super::answer(&request(UNPROVISION, &0u32.to_le_bytes()), &s, &amt);
        assert_eq!(status(&r), 0);
        let r = super::answer(&request(GET_PROVISIONING_STATE, &[]), &s, &amt);
        assert_eq!(&r[16..], &0u32.to_le_bytes());
        let r = super::answer(&request(GET_CONTROL_MODE, &[]), &s, &amt);
        assert_eq!(&r[16..], &0u32.to_le_bytes());
        // ACM refuses HECI unprovision
        lock(&amt).state.control_mode = 2;
        lock(&amt).state.provisioning_state = 2;
        let r = super::answer(&request(UNPROVISION, &0u32.to_le_bytes()), &s, &amt);
        assert_eq!(status(&r), STATUS_INVALID_AMT_MODE);
        // in provisioning -> StopConfiguration returns to pre-provisioning
        lock(&amt).state.control_mode = 1;
        lock(&amt).state.provisioning_state = 1;
        let r = super::answer(&request(STOP_CONFIGURATION, &[]), &s, &amt);
        assert_eq!(status(&r), 0);
        assert_eq!(lock(&amt).state.provisioning_state, 0);
    }

    #[test]
    fn malformed_requests() {
        let s = scenario("");
        assert_eq!(status(&answer(&[1, 1], &s)), STATUS_INVALID_MESSAGE_LENGTH);
        let mut req = request(GET_UUID, &[]);
        req[8] = 9; // claims 9 body bytes, has none
        assert_eq!(status(&answer(&req, &s)), STATUS_INVALID_MESSAGE_LENGTH);
        assert_eq!(
            status(&answer(&request(0x0400_7777, &[]), &s)),
            STATUS_INTERNAL_ERROR
        );
    }
}

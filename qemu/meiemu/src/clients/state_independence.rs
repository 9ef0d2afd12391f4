//! The "state independence" client (watchdog GUID 05B79A6F-…, ME >= 16.1):
//! IsChangeToAMTEnabled and SetAmtOperationalState, with the 4-byte header
//! {u8 command, u8 byte count, u8 sub-command, u8 version 0x10}.

use crate::amt::{lock, AmtEvent, SharedAmt};
use log::info;

pub const COMMAND: u8 = 0x05;
pub const VERSION: u8 = 0x10;
pub const IS_CHANGE_TO_AMT_ENABLED: u8 = 0x51;
pub const SET_AMT_OPERATIONAL_STATE: u8 = 0x53;

/// Flag bits of the IsChangeToAMTEnabled answer.
pub const FLAG_TRANSITION_ALLOWED: u8 = 1 << 0;
pub const FLAG_AMT_ENABLED: u8 = 1 << 1;
pub const FLAG_TLS_ENFORCED: u8 = 1 << 6;
pub const FLAG_NEW_INTERFACE: u8 = 1 << 7;

/// AMT status codes used here.
const STATUS_SUCCESS: u32 = 0;
const STATUS_INTERNAL_ERROR: u32 = 1;
const STATUS_INVALID_AMT_MODE: u32 = 3;
const STATUS_INVALID_MESSAGE_LENGTH: u32 = 4;
const STATUS_NOT_PERMITTED: u32 = 16;

fn status_reply(h: &[u8], status: u32) -> Vec<u8> {
    let mut r: Vec<u8> = h.iter().copied().take(4).collect();
    r.resize(4, 0);
    r.extend_from_slice(&status.to_le_bytes());
    r
}

/// The reply to one request.
pub fn answer(req: &[u8], amt: &SharedAmt) -> Vec<u8> {
    let Some(h) = req.get(..4) else {
        return status_reply(req, STATUS_INVALID_MESSAGE_LENGTH);
    };
    info!("state independence: request {h:02x?} ({} bytes)", req.len());
    match (h[0], h[2], h[3]) {
        (COMMAND, IS_CHANGE_TO_AMT_ENABLED, VERSION) if req.len() == 4 => {
            let m = lock(amt);
            let mut flags = FLAG_NEW_INTERFACE;
            if m.config.change_allowed {
                flags |= FLAG_TRANSITION_ALLOWED;
            }
            if m.state.operational {
                flags |= FLAG_AMT_ENABLED;
            }
            if m.config.tls_enforced {
                flags |= FLAG_TLS_ENFORCED;
            }
            vec![flags]
        }
        (COMMAND, SET_AMT_OPERATIONAL_STATE, VERSION) if req.len() == 5 => {
            let enable = req.get(4).copied().unwrap_or(0) != 0;
            let mut m = lock(amt);
            let status = if m.state.provisioning_state != 0 {
                STATUS_INVALID_AMT_MODE
            } else if !m.config.change_allowed {
                STATUS_NOT_PERMITTED
            } else {
                if m.state.operational != enable {
                    m.state.operational = enable;
                    m.record(AmtEvent::OperationalState(enable));
                    m.save();
                }
                STATUS_SUCCESS
            };
            status_reply(h, status)
        }
        (COMMAND, IS_CHANGE_TO_AMT_ENABLED | SET_AMT_OPERATIONAL_STATE, VERSION) => {
            status_reply(h, STATUS_INVALID_MESSAGE_LENGTH)
        }
        _ => status_reply(h, STATUS_INTERNAL_ERROR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amt::AmtModel;
    use crate::scenario::Scenario;

    #[test]
    fn flags_and_operational_state() {
        let s = Scenario::from_toml("[amt]\noperational = false\ntls_enforced = true")
            .unwrap()
            .resolve()
            .unwrap();
        let amt = AmtModel::shared(&s);
        assert_eq!(answer(&[5, 2, 0x51, 0x10], &amt), vec![0x80 | 0x40 | 0x01]);
        assert_eq!(
            answer(&[5, 3, 0x53, 0x10, 1], &amt),
            vec![5, 3, 0x53, 0x10, 0, 0, 0, 0]
        );
        assert_eq!(answer(&[5, 2, 0x51, 0x10], &amt), vec![0xC3]);
        lock(&amt).state.provisioning_state = 2;
        assert_eq!(answer(&[5, 3, 0x53, 0x10, 0], &amt)[4], 3);
        assert_eq!(answer(&[5, 3, 0x53, 0x10], &amt)[4], 4);
        assert_eq!(answer(&[5], &amt), vec![5, 0, 0, 0, 4, 0, 0, 0]);
    }
}

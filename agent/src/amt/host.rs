//! The host-interface calls activation needs beyond the read-only probe:
//! AMTHI GetLocalSystemAccount, StopConfiguration, Unprovision
//! (me-runtime.md §4.2), and the ME 16.1+ operational state over the
//! watchdog client (§4.3). Encoders and bounded parsers; the credentials
//! the LSA call returns are wrapped so they never print.

use std::time::Duration;

use zeroize::Zeroizing;

use crate::hw::mei::amthi::{self, AmthiError};
use crate::hw::mei::device::{ClientUuid, MeiTransport};

pub const CMD_GET_LOCAL_SYSTEM_ACCOUNT: u32 = 0x0400_0067;
pub const CMD_STOP_CONFIGURATION: u32 = 0x0400_005E;
pub const CMD_UNPROVISION: u32 = 0x0400_0010;

/// The LME client: APF to AMT's local ports.
pub const LME_UUID: ClientUuid = ClientUuid::new(
    0x6733_A4DB,
    0x0476,
    0x4E7B,
    [0xB3, 0xAF, 0xBC, 0xFC, 0x29, 0xBE, 0xE7, 0xA7],
);
/// The "watchdog" / manageability client (AMT operational state).
pub const WD_UUID: ClientUuid = ClientUuid::new(
    0x05B7_9A6F,
    0x4628,
    0x4D7F,
    [0x89, 0x9D, 0xA9, 0x15, 0x14, 0xCB, 0x32, 0xAB],
);

/// AMT's local system account (the OS admin account, e.g. `$$OsAdmin`).
pub struct LocalSystemAccount {
    pub user: String,
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for LocalSystemAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalSystemAccount({}, password hidden)", self.user)
    }
}

fn c_text(b: &[u8]) -> String {
    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
    String::from_utf8_lossy(b.get(..end).unwrap_or(&[])).into_owned()
}

pub fn encode_get_local_system_account() -> Vec<u8> {
    amthi::encode_request(CMD_GET_LOCAL_SYSTEM_ACCOUNT, &[0u8; 40])
}

/// Parses GetLocalSystemAccount: char[33] user, char[33] password.
pub fn parse_local_system_account(reply: &[u8]) -> Result<LocalSystemAccount, AmthiError> {
    const S: &str = "GetLocalSystemAccount reply";
    let p = amthi::parse_response(S, reply, CMD_GET_LOCAL_SYSTEM_ACCOUNT)?;
    let (Some(user), Some(pass)) = (p.get(..33), p.get(33..66)) else {
        return Err(AmthiError::Truncated {
            structure: S,
            offset: 16,
            need: 66,
            have: p.len(),
        });
    };
    let user = c_text(user);
    if user.is_empty() {
        return Err(AmthiError::Malformed {
            structure: S,
            offset: 16,
            what: "empty user name".into(),
        });
    }
    Ok(LocalSystemAccount {
        user,
        password: Zeroizing::new(c_text(pass)),
    })
}

pub fn get_local_system_account(
    t: &mut dyn MeiTransport,
    timeout: Duration,
) -> Result<LocalSystemAccount, AmthiError> {
    let reply = Zeroizing::new(t.transact(&encode_get_local_system_account(), timeout)?);
    parse_local_system_account(&reply)
}

/// StopConfiguration: "in provisioning" back to pre-provisioning.
pub fn stop_configuration(t: &mut dyn MeiTransport, timeout: Duration) -> Result<(), AmthiError> {
    let reply = t.transact(&amthi::encode_request(CMD_STOP_CONFIGURATION, &[]), timeout)?;
    amthi::parse_response("StopConfiguration reply", &reply, CMD_STOP_CONFIGURATION).map(|_| ())
}

/// Unprovision (mode 0): works in CCM; ACM answers status 3.
pub fn unprovision(t: &mut dyn MeiTransport, timeout: Duration) -> Result<(), AmthiError> {
    let reply = t.transact(
        &amthi::encode_request(CMD_UNPROVISION, &0u32.to_le_bytes()),
        timeout,
    )?;
    amthi::parse_response("Unprovision reply", &reply, CMD_UNPROVISION).map(|_| ())
}

/// IsChangeToAMTEnabled request (intel/lms `ManageabilityCommand.h`).
pub const IS_CHANGE_TO_AMT_ENABLED: [u8; 4] = [0x05, 0x02, 0x51, 0x10];

/// Errors of the watchdog client exchange.
#[derive(Debug, thiserror::Error)]
pub enum WdError {
    #[error("operational state reply: {0}")]
    Malformed(String),
    #[error("SetAmtOperationalState: status {0}")]
    Status(u32),
    #[error(transparent)]
    Transport(#[from] crate::hw::mei::device::MeiError),
}

/// Parses the IsChangeToAMTEnabled reply. Intel's LMS parses the flag byte
/// straight from the start of the reply (`ManageabilityCommandResponse`
/// has no header), so one byte is the answer; a reply that echoes the
/// 4-byte request header before the flags is accepted too.
pub fn parse_is_change_enabled(reply: &[u8]) -> Result<u8, WdError> {
    match (reply, reply.get(2), reply.get(4)) {
        ([flags], _, _) => Ok(*flags),
        (_, Some(0x51), Some(&flags)) if reply.len() == 5 => Ok(flags),
        _ => Err(WdError::Malformed(format!(
            "{} bytes, sub-command {:?}",
            reply.len(),
            reply.get(2)
        ))),
    }
}

pub fn is_change_to_amt_enabled(
    t: &mut dyn MeiTransport,
    timeout: Duration,
) -> Result<u8, WdError> {
    parse_is_change_enabled(&t.transact(&IS_CHANGE_TO_AMT_ENABLED, timeout)?)
}

/// SetAmtOperationalState(enable): header echo then u32 status.
pub fn set_amt_operational_state(
    t: &mut dyn MeiTransport,
    enable: bool,
    timeout: Duration,
) -> Result<(), WdError> {
    let reply = t.transact(&[0x05, 0x03, 0x53, 0x10, u8::from(enable)], timeout)?;
    let status = match (reply.get(2), reply.get(4..8)) {
        (Some(0x53), Some(s)) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        _ => {
            return Err(WdError::Malformed(format!(
                "SetAmtOperationalState reply of {} bytes",
                reply.len()
            )))
        }
    };
    if status == 0 {
        Ok(())
    } else {
        Err(WdError::Status(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::mei::amthi::tests::response;

    #[test]
    fn lsa_parses_and_hides_its_password() {
        let mut p = vec![0u8; 66];
        p[..9].copy_from_slice(b"$$OsAdmin");
        p[33..45].copy_from_slice(b"lsa-P4ssword");
        let lsa =
            parse_local_system_account(&response(CMD_GET_LOCAL_SYSTEM_ACCOUNT, 0, &p)).unwrap();
        assert_eq!(lsa.user, "$$OsAdmin");
        assert_eq!(&*lsa.password, "lsa-P4ssword");
        assert!(!format!("{lsa:?}").contains("P4ss"));
        assert!(
            parse_local_system_account(&response(CMD_GET_LOCAL_SYSTEM_ACCOUNT, 0, &p[..40]))
                .is_err()
        );
        assert!(
            parse_local_system_account(&response(CMD_GET_LOCAL_SYSTEM_ACCOUNT, 0, &[0u8; 66]))
                .is_err()
        );
        assert_eq!(encode_get_local_system_account().len(), 52);
        assert_eq!(LME_UUID.to_string(), "6733a4db-0476-4e7b-b3af-bcfc29bee7a7");
        assert_eq!(WD_UUID.to_string(), "05b79a6f-4628-4d7f-899d-a91514cb32ab");
    }

    #[test]
    fn operational_state_replies() {
        assert_eq!(
            parse_is_change_enabled(&[5, 2, 0x51, 0x10, 0x83]).unwrap(),
            0x83
        );
        assert_eq!(parse_is_change_enabled(&[0x83]).unwrap(), 0x83);
        assert!(parse_is_change_enabled(&[]).is_err());
        assert!(parse_is_change_enabled(&[5, 2, 0x51, 0x10]).is_err());
        assert!(parse_is_change_enabled(&[5, 2, 0x52, 0x10, 1]).is_err());
    }
}

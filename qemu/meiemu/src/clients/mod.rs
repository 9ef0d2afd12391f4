//! The ME clients the emulator offers, and what each answers.
//!
//! A client model is a pure function from one complete request to one reply
//! (or none). The transport (connections, flow control, fragmentation) lives in
//! [`crate::device`]; faults are applied there through [`ClientKind::corrupt`].

pub mod amthi;
pub mod mkhi;
pub mod state_independence;

use crate::amt::SharedAmt;
use crate::hbm::ClientProps;
use crate::scenario::{parse_uuid_le, FaultClient, Resolved};

/// MKHI (dynamic) client GUID.
pub const MKHI_UUID: &str = "8e6a6715-9abc-4043-88ef-9e39c6f63e0f";
/// MKHI "fix" client: the kernel's bus fix-up asks it for the FW version at
/// probe (sysfs `fw_ver`) and reports the OS version to it.
pub const MKHI_FIX_UUID: &str = "55213584-9a29-4916-badf-0fb7ed682aeb";
/// AMT host interface (PTHI).
pub const AMTHI_UUID: &str = "12f80028-b4b7-4b2d-aca8-46e0ff65814c";
/// LME: the APF tunnel to AMT's local ports.
pub const LME_UUID: &str = "6733a4db-0476-4e7b-b3af-bcfc29bee7a7";
/// "Watchdog" / state independence: AMT operational state (ME >= 16.1).
pub const STATE_INDEPENDENCE_UUID: &str = "05b79a6f-4628-4d7f-899d-a91514cb32ab";
/// The LME client's max message length (one APF frame).
pub const LME_MAX_MSG: u32 = 4096;

/// Which model answers a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Mkhi,
    MkhiFix,
    Amthi,
    /// Stateful: answered by an [`crate::amt::lme::LmeSession`] per connection.
    Lme,
    StateIndependence,
}

/// One ME client on the emulated bus.
#[derive(Debug, Clone)]
pub struct MeClient {
    pub addr: u8,
    pub kind: ClientKind,
    pub props: ClientProps,
}

impl ClientKind {
    pub fn fault_client(self) -> FaultClient {
        match self {
            ClientKind::Mkhi => FaultClient::Mkhi,
            ClientKind::MkhiFix => FaultClient::MkhiFix,
            ClientKind::Amthi => FaultClient::Amthi,
            ClientKind::Lme => FaultClient::Lme,
            ClientKind::StateIndependence => FaultClient::StateIndependence,
        }
    }

    /// The reply to one complete request, or `None` when the model stays silent.
    /// The LME is not answered here (see [`crate::amt::lme`]).
    pub fn answer(self, req: &[u8], s: &Resolved, amt: &SharedAmt) -> Option<Vec<u8>> {
        match self {
            ClientKind::Mkhi | ClientKind::MkhiFix => mkhi::answer(req, s),
            ClientKind::Amthi => Some(amthi::answer(req, s, amt)),
            ClientKind::StateIndependence => Some(state_independence::answer(req, amt)),
            ClientKind::Lme => None,
        }
    }

    /// Reply with a header that does not match the request.
    pub fn bad_header(self, mut reply: Vec<u8>) -> Vec<u8> {
        match self {
            // MKHI: another command code (still flagged as a response)
            ClientKind::Mkhi | ClientKind::MkhiFix => {
                if let Some(c) = reply.get_mut(1) {
                    *c ^= 0x01;
                }
            }
            // AMTHI: another operation code in the command word
            ClientKind::Amthi => {
                if let Some(c) = reply.get_mut(4) {
                    *c ^= 0x01;
                }
            }
            // another sub-command
            ClientKind::StateIndependence => {
                if let Some(c) = reply.get_mut(2) {
                    *c ^= 0x01;
                }
            }
            ClientKind::Lme => {}
        }
        reply
    }

    /// Reply with an error status and no payload.
    pub fn with_status(self, mut reply: Vec<u8>, status: u32) -> Vec<u8> {
        match self {
            ClientKind::Mkhi | ClientKind::MkhiFix => {
                reply.truncate(4);
                if let Some(r) = reply.get_mut(3) {
                    *r = status as u8;
                }
            }
            ClientKind::Amthi => {
                reply.truncate(amthi::HEADER_LEN);
                if let Some(len) = reply.get_mut(8..12) {
                    len.copy_from_slice(&4u32.to_le_bytes());
                }
                reply.extend_from_slice(&status.to_le_bytes());
            }
            ClientKind::StateIndependence => {
                reply.resize(4, 0);
                reply.extend_from_slice(&status.to_le_bytes());
            }
            ClientKind::Lme => {}
        }
        reply
    }
}

/// The clients a scenario enumerates, at fixed addresses (as real MEs keep
/// their client addresses stable across boots).
pub fn clients_for(s: &Resolved) -> Vec<MeClient> {
    // The UUID constants are well-formed; a failure here is a programming error
    // caught by the unit tests, so fall back to zeros rather than panic.
    let uuid = |u: &str| parse_uuid_le("builtin", u).unwrap_or([0; 16]);
    let props = |u: &str, max: u32| ClientProps {
        uuid_le: uuid(u),
        protocol_version: 1,
        max_connections: 1,
        fixed_address: 0,
        single_recv_buf: false,
        max_msg_length: max,
    };
    let mut v = vec![
        MeClient {
            addr: 7,
            kind: ClientKind::Mkhi,
            props: props(MKHI_UUID, 2048),
        },
        MeClient {
            addr: 8,
            kind: ClientKind::MkhiFix,
            props: props(MKHI_FIX_UUID, 2048),
        },
    ];
    if s.scenario.amt.present {
        v.push(MeClient {
            addr: 9,
            kind: ClientKind::Amthi,
            props: props(AMTHI_UUID, 4156),
        });
        v.push(MeClient {
            addr: 10,
            kind: ClientKind::Lme,
            props: props(LME_UUID, LME_MAX_MSG),
        });
    }
    if s.has_state_independence() {
        v.push(MeClient {
            addr: 11,
            kind: ClientKind::StateIndependence,
            props: props(STATE_INDEPENDENCE_UUID, 512),
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    #[test]
    fn amt_absent_means_no_amthi_client() {
        let s = Scenario::from_toml("[amt]\npresent = false")
            .unwrap()
            .resolve()
            .unwrap();
        let c = clients_for(&s);
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| c.kind != ClientKind::Amthi));
        assert_ne!(c[0].props.uuid_le, [0; 16]);
        assert_ne!(c[1].props.uuid_le, [0; 16]);
    }

    #[test]
    fn status_fault_replaces_the_payload() {
        let s = Scenario::default().resolve().unwrap();
        let amt = crate::amt::AmtModel::shared(&s);
        let r = ClientKind::Mkhi
            .answer(&[0xFF, 0x02, 0, 0], &s, &amt)
            .unwrap();
        assert_eq!(
            ClientKind::Mkhi.with_status(r, 0x89),
            vec![0xFF, 0x82, 0, 0x89]
        );
        let req = amthi::request(amthi::GET_PROVISIONING_STATE, &[]);
        let r = ClientKind::Amthi.answer(&req, &s, &amt).unwrap();
        let r = ClientKind::Amthi.with_status(r, 2);
        assert_eq!(r.len(), 16);
        assert_eq!(&r[12..], &2u32.to_le_bytes());
    }
}

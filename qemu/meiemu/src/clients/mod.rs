//! The ME clients the emulator offers, and what each answers.
//!
//! A client model is a pure function from one complete request to one reply
//! (or none). The transport (connections, flow control, fragmentation) lives in
//! [`crate::device`]; faults are applied there through [`ClientKind::corrupt`].

pub mod amthi;
pub mod mkhi;

use crate::hbm::ClientProps;
use crate::scenario::{parse_uuid_le, FaultClient, Resolved};

/// MKHI (dynamic) client GUID.
pub const MKHI_UUID: &str = "8e6a6715-9abc-4043-88ef-9e39c6f63e0f";
/// MKHI "fix" client: the kernel's bus fix-up asks it for the FW version at
/// probe (sysfs `fw_ver`) and reports the OS version to it.
pub const MKHI_FIX_UUID: &str = "55213584-9a29-4916-badf-0fb7ed682aeb";
/// AMT host interface (PTHI).
pub const AMTHI_UUID: &str = "12f80028-b4b7-4b2d-aca8-46e0ff65814c";

/// Which model answers a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Mkhi,
    MkhiFix,
    Amthi,
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
        }
    }

    /// The reply to one complete request, or `None` when the model stays silent.
    pub fn answer(self, req: &[u8], s: &Resolved) -> Option<Vec<u8>> {
        match self {
            ClientKind::Mkhi | ClientKind::MkhiFix => mkhi::answer(req, s),
            ClientKind::Amthi => Some(amthi::answer(req, s)),
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
        let r = ClientKind::Mkhi.answer(&[0xFF, 0x02, 0, 0], &s).unwrap();
        assert_eq!(
            ClientKind::Mkhi.with_status(r, 0x89),
            vec![0xFF, 0x82, 0, 0x89]
        );
        let req = amthi::request(amthi::GET_PROVISIONING_STATE, &[]);
        let r = ClientKind::Amthi.answer(&req, &s).unwrap();
        let r = ClientKind::Amthi.with_status(r, 2);
        assert_eq!(r.len(), 16);
        assert_eq!(&r[12..], &2u32.to_le_bytes());
    }
}

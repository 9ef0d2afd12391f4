//! Host Bus Messages (HBM): the MEI bus protocol on address pair 0/0, and the
//! one-dword message header every MEI message starts with.
//!
//! Layouts follow Linux `drivers/misc/mei/hbm.h` / `hw.h`. Parsing is strict
//! and bounded: a short or unknown message is an error naming the command and
//! the offset, never a panic (the bytes come from the guest).

/// Errors decoding a host message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HbmError {
    #[error("empty HBM message")]
    Empty,
    #[error(
        "HBM command {command:#04x}: {len} bytes, needs {need} (offset {len} is past the end)"
    )]
    Short {
        command: u8,
        len: usize,
        need: usize,
    },
    #[error("unknown HBM command {0:#04x} at offset 0")]
    Unknown(u8),
    #[error("MEI header {header:#010x}: {reason}")]
    Header { header: u32, reason: &'static str },
}

// Host -> ME command codes.
pub const HOST_START_REQ: u8 = 0x01;
pub const HOST_STOP_REQ: u8 = 0x02;
pub const ME_STOP_REQ: u8 = 0x03;
pub const HOST_ENUM_REQ: u8 = 0x04;
pub const HOST_CLIENT_PROPERTIES_REQ: u8 = 0x05;
pub const CLIENT_CONNECT_REQ: u8 = 0x06;
pub const CLIENT_DISCONNECT_REQ: u8 = 0x07;
pub const FLOW_CONTROL: u8 = 0x08;
pub const CLIENT_DISCONNECT_RES: u8 = 0x87;
pub const NOTIFY_REQ: u8 = 0x10;
/// A response has the request's code with bit 7 set.
pub const RESPONSE: u8 = 0x80;

/// Connect status codes (`hbm.h` `mei_cl_connect_resp_status`).
pub const CONNECT_SUCCESS: u8 = 0;
pub const CONNECT_NOT_FOUND: u8 = 1;
pub const CONNECT_ALREADY_STARTED: u8 = 2;

/// A decoded host -> ME bus message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMsg {
    Start {
        major: u8,
        minor: u8,
    },
    Stop,
    /// The ME asked to stop and the host agrees (ME_STOP_REQ echoed).
    MeStop,
    Enum {
        flags: u8,
    },
    ClientProperties {
        me_addr: u8,
    },
    Connect {
        me_addr: u8,
        host_addr: u8,
    },
    Disconnect {
        me_addr: u8,
        host_addr: u8,
    },
    /// The host's answer to a disconnect the ME started.
    DisconnectRes {
        me_addr: u8,
        host_addr: u8,
    },
    FlowControl {
        me_addr: u8,
        host_addr: u8,
    },
    Notify {
        me_addr: u8,
        host_addr: u8,
        start: bool,
    },
}

fn need(m: &[u8], n: usize) -> Result<(), HbmError> {
    if m.len() < n {
        return Err(HbmError::Short {
            command: m.first().copied().unwrap_or(0),
            len: m.len(),
            need: n,
        });
    }
    Ok(())
}

fn byte(m: &[u8], i: usize) -> u8 {
    m.get(i).copied().unwrap_or(0)
}

impl HostMsg {
    /// Decodes one complete bus message.
    pub fn parse(m: &[u8]) -> Result<HostMsg, HbmError> {
        let cmd = *m.first().ok_or(HbmError::Empty)?;
        let msg = match cmd {
            HOST_START_REQ => {
                need(m, 4)?;
                HostMsg::Start {
                    minor: byte(m, 2),
                    major: byte(m, 3),
                }
            }
            HOST_STOP_REQ => HostMsg::Stop,
            ME_STOP_REQ => HostMsg::MeStop,
            HOST_ENUM_REQ => {
                need(m, 2)?;
                HostMsg::Enum { flags: byte(m, 1) }
            }
            HOST_CLIENT_PROPERTIES_REQ => {
                need(m, 2)?;
                HostMsg::ClientProperties {
                    me_addr: byte(m, 1),
                }
            }
            CLIENT_CONNECT_REQ | CLIENT_DISCONNECT_REQ | CLIENT_DISCONNECT_RES | FLOW_CONTROL => {
                need(m, 3)?;
                let (me_addr, host_addr) = (byte(m, 1), byte(m, 2));
                match cmd {
                    CLIENT_CONNECT_REQ => HostMsg::Connect { me_addr, host_addr },
                    CLIENT_DISCONNECT_REQ => HostMsg::Disconnect { me_addr, host_addr },
                    CLIENT_DISCONNECT_RES => HostMsg::DisconnectRes { me_addr, host_addr },
                    _ => HostMsg::FlowControl { me_addr, host_addr },
                }
            }
            NOTIFY_REQ => {
                need(m, 4)?;
                HostMsg::Notify {
                    me_addr: byte(m, 1),
                    host_addr: byte(m, 2),
                    start: byte(m, 3) != 0,
                }
            }
            other => return Err(HbmError::Unknown(other)),
        };
        Ok(msg)
    }
}

/// Properties of one ME client, as HOST_CLIENT_PROPERTIES_RES carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientProps {
    pub uuid_le: [u8; 16],
    pub protocol_version: u8,
    pub max_connections: u8,
    pub fixed_address: u8,
    pub single_recv_buf: bool,
    pub max_msg_length: u32,
}

/// ME -> host bus message encoders.
pub mod reply {
    use super::*;

    /// START_RES: we answer HBM 2.0 and say the host's 2.2 is not supported, so
    /// the driver stays with 2.0: no DMA ring, no capabilities exchange.
    pub fn start(me_major: u8, me_minor: u8, host_supported: bool) -> Vec<u8> {
        vec![
            HOST_START_REQ | RESPONSE,
            u8::from(host_supported),
            me_minor,
            me_major,
        ]
    }

    pub fn stop() -> Vec<u8> {
        vec![HOST_STOP_REQ | RESPONSE, 0, 0, 0]
    }

    /// ENUM_RES: a 256-bit map of valid ME client addresses.
    pub fn enumeration(addrs: &[u8]) -> Vec<u8> {
        let mut r = vec![HOST_ENUM_REQ | RESPONSE, 0, 0, 0];
        let mut map = [0u8; 32];
        for a in addrs {
            if let Some(b) = map.get_mut(usize::from(*a / 8)) {
                *b |= 1 << (a % 8);
            }
        }
        r.extend_from_slice(&map);
        r
    }

    /// PROPERTIES_RES; `None` answers "client not found".
    pub fn properties(me_addr: u8, props: Option<&ClientProps>) -> Vec<u8> {
        let mut r = vec![HOST_CLIENT_PROPERTIES_REQ | RESPONSE, me_addr, 0, 0];
        match props {
            Some(p) => {
                r.extend_from_slice(&p.uuid_le);
                r.extend_from_slice(&[
                    p.protocol_version,
                    p.max_connections,
                    p.fixed_address,
                    u8::from(p.single_recv_buf),
                ]);
                r.extend_from_slice(&p.max_msg_length.to_le_bytes());
            }
            None => {
                r[2] = 1;
                r.extend_from_slice(&[0u8; 24]);
            }
        }
        r
    }

    pub fn connect(me_addr: u8, host_addr: u8, status: u8) -> Vec<u8> {
        vec![CLIENT_CONNECT_REQ | RESPONSE, me_addr, host_addr, status]
    }

    /// CLIENT_DISCONNECT_REQ from the ME: it ends a connection itself.
    pub fn me_disconnect(me_addr: u8, host_addr: u8) -> Vec<u8> {
        vec![CLIENT_DISCONNECT_REQ, me_addr, host_addr, 0]
    }

    pub fn disconnect(me_addr: u8, host_addr: u8) -> Vec<u8> {
        vec![CLIENT_DISCONNECT_REQ | RESPONSE, me_addr, host_addr, 0]
    }

    /// FLOW_CONTROL: one send credit for the host on this connection.
    pub fn flow_control(me_addr: u8, host_addr: u8) -> Vec<u8> {
        vec![FLOW_CONTROL, me_addr, host_addr, 0, 0, 0, 0, 0]
    }
}

/// The one-dword MEI message header (`struct mei_msg_hdr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgHeader {
    pub me_addr: u8,
    pub host_addr: u8,
    /// Payload bytes that follow (at most 511).
    pub length: u16,
    pub complete: bool,
    /// Set by the kernel on its own messages.
    pub internal: bool,
}

// Bits 31:28 (Linux hw.h): complete, internal, dma_ring, extended.
const HDR_EXTENDED: u32 = 1 << 28;
const HDR_DMA_RING: u32 = 1 << 29;
/// Set by the kernel on its own messages (e.g. the OS-version report); no
/// meaning for the ME side beyond that.
const HDR_INTERNAL: u32 = 1 << 30;
const HDR_COMPLETE: u32 = 1 << 31;

impl MsgHeader {
    /// Decodes a header dword. DMA-ring and extended headers are refused: we
    /// answer HBM 2.0, so a driver that follows the protocol never sends them.
    pub fn parse(v: u32) -> Result<MsgHeader, HbmError> {
        if v & HDR_DMA_RING != 0 {
            return Err(HbmError::Header {
                header: v,
                reason: "DMA-ring message, but no DMA ring was negotiated",
            });
        }
        if v & HDR_EXTENDED != 0 {
            return Err(HbmError::Header {
                header: v,
                reason: "extended header, but vtags were not negotiated",
            });
        }
        Ok(MsgHeader {
            me_addr: (v & 0xff) as u8,
            host_addr: ((v >> 8) & 0xff) as u8,
            length: ((v >> 16) & 0x1ff) as u16,
            complete: v & HDR_COMPLETE != 0,
            internal: v & HDR_INTERNAL != 0,
        })
    }

    pub fn encode(&self) -> u32 {
        u32::from(self.me_addr)
            | u32::from(self.host_addr) << 8
            | (u32::from(self.length) & 0x1ff) << 16
            | if self.complete { HDR_COMPLETE } else { 0 }
            | if self.internal { HDR_INTERNAL } else { 0 }
    }

    /// Address pair 0/0 is the bus itself (HBM).
    pub fn is_bus(&self) -> bool {
        self.me_addr == 0 && self.host_addr == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_handshake_the_driver_sends() {
        assert_eq!(
            HostMsg::parse(&[0x01, 0, 2, 2]).unwrap(),
            HostMsg::Start { major: 2, minor: 2 }
        );
        assert_eq!(
            HostMsg::parse(&[0x04, 3, 0, 0]).unwrap(),
            HostMsg::Enum { flags: 3 }
        );
        assert_eq!(
            HostMsg::parse(&[0x06, 7, 1, 0]).unwrap(),
            HostMsg::Connect {
                me_addr: 7,
                host_addr: 1
            }
        );
        assert_eq!(
            HostMsg::parse(&[0x08, 7, 1, 0, 0, 0, 0, 0]).unwrap(),
            HostMsg::FlowControl {
                me_addr: 7,
                host_addr: 1
            }
        );
    }

    #[test]
    fn short_and_unknown_messages_are_errors() {
        assert_eq!(HostMsg::parse(&[]), Err(HbmError::Empty));
        assert_eq!(
            HostMsg::parse(&[0x06, 7]),
            Err(HbmError::Short {
                command: 6,
                len: 2,
                need: 3
            })
        );
        assert_eq!(HostMsg::parse(&[0x7f]), Err(HbmError::Unknown(0x7f)));
    }

    #[test]
    fn header_round_trip_and_refusals() {
        let h = MsgHeader {
            me_addr: 7,
            host_addr: 3,
            length: 511,
            complete: true,
            internal: true,
        };
        // the kernel's OS-version report, as seen from a real 6.1 guest
        let osver = MsgHeader::parse(0xC011_0108).unwrap();
        assert_eq!((osver.me_addr, osver.length, osver.internal), (8, 17, true));
        assert_eq!(MsgHeader::parse(h.encode()).unwrap(), h);
        assert!(MsgHeader::parse(HDR_DMA_RING).is_err());
        assert!(MsgHeader::parse(HDR_EXTENDED).is_err());
    }

    #[test]
    fn enumeration_bitmap() {
        let r = reply::enumeration(&[7, 9, 255]);
        assert_eq!(r.len(), 36);
        assert_eq!(r[4], 0x80);
        assert_eq!(r[5], 0x02);
        assert_eq!(r[35], 0x80);
    }

    #[test]
    fn properties_layout() {
        let p = ClientProps {
            uuid_le: [0xAA; 16],
            protocol_version: 1,
            max_connections: 1,
            fixed_address: 0,
            single_recv_buf: false,
            max_msg_length: 2048,
        };
        let r = reply::properties(7, Some(&p));
        assert_eq!(r.len(), 28);
        assert_eq!(&r[..4], &[0x85, 7, 0, 0]);
        assert_eq!(&r[24..], &2048u32.to_le_bytes());
        assert_eq!(reply::properties(3, None)[2], 1);
    }
}

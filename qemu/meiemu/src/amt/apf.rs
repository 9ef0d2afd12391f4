//! APF (AMT Port Forwarding), the SSH-like framing the LME client speaks.
//!
//! One APF message per MEI message. All integers are big-endian, strings are
//! `u32 length + bytes`. Layouts: me-runtime.md §5.2 and Intel's LMS headers
//! (`APF_DISCONNECT_MESSAGE` is `u8, u32 reason, u16 reserved`: 7 bytes).
//! Parsing is strict and bounded: every malformed frame is an [`ApfError`]
//! naming the message, the field and its offset, never a panic.

pub const DISCONNECT: u8 = 1;
pub const SERVICE_REQUEST: u8 = 5;
pub const SERVICE_ACCEPT: u8 = 6;
pub const GLOBAL_REQUEST: u8 = 80;
pub const REQUEST_SUCCESS: u8 = 81;
pub const REQUEST_FAILURE: u8 = 82;
pub const CHANNEL_OPEN: u8 = 90;
pub const CHANNEL_OPEN_CONFIRMATION: u8 = 91;
pub const CHANNEL_OPEN_FAILURE: u8 = 92;
pub const CHANNEL_WINDOW_ADJUST: u8 = 93;
pub const CHANNEL_DATA: u8 = 94;
pub const CHANNEL_CLOSE: u8 = 97;
pub const PROTOCOL_VERSION: u8 = 192;
pub const KEEPALIVE_REQUEST: u8 = 208;
pub const KEEPALIVE_REPLY: u8 = 209;
pub const KEEPALIVE_OPTIONS_REQUEST: u8 = 210;
pub const KEEPALIVE_OPTIONS_REPLY: u8 = 211;

/// DISCONNECT reason codes (the SSH ones).
pub const REASON_PROTOCOL_ERROR: u32 = 2;
pub const REASON_SERVICE_NOT_AVAILABLE: u32 = 7;
pub const REASON_PROTOCOL_VERSION_NOT_SUPPORTED: u32 = 8;
pub const REASON_BY_APPLICATION: u32 = 11;

/// CHANNEL_OPEN_FAILURE reason codes.
pub const OPEN_ADMINISTRATIVELY_PROHIBITED: u32 = 1;
pub const OPEN_CONNECT_FAILED: u32 = 2;
pub const OPEN_UNKNOWN_CHANNEL_TYPE: u32 = 3;
pub const OPEN_RESOURCE_SHORTAGE: u32 = 4;

/// Service and request names.
pub const SERVICE_PFWD: &str = "pfwd@amt.intel.com";
pub const TCPIP_FORWARD: &str = "tcpip-forward";
pub const FORWARDED_TCPIP: &str = "forwarded-tcpip";

/// Longest string field we accept (names and addresses are short).
const MAX_STRING: usize = 256;
/// PROTOCOL_VERSION is always 93 bytes: type, major, minor, trigger, UUID, 64 reserved.
pub const PROTOCOL_VERSION_LEN: usize = 93;

/// A malformed frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApfError {
    #[error("empty APF frame")]
    Empty,
    #[error("APF {msg}: field {field} at offset {offset} needs {need} bytes, frame has {len}")]
    Short {
        msg: &'static str,
        field: &'static str,
        offset: usize,
        need: usize,
        len: usize,
    },
    #[error("APF {msg}: field {field} at offset {offset}: length {value} above the limit {limit}")]
    TooLong {
        msg: &'static str,
        field: &'static str,
        offset: usize,
        value: u32,
        limit: usize,
    },
    #[error("APF {msg}: {extra} trailing bytes after offset {offset}")]
    Trailing {
        msg: &'static str,
        offset: usize,
        extra: usize,
    },
    #[error("APF {msg}: field {field} at offset {offset} is not UTF-8")]
    NotText {
        msg: &'static str,
        field: &'static str,
        offset: usize,
    },
    #[error("APF message type {0} at offset 0 is unknown")]
    Unknown(u8),
}

/// A decoded host -> ME APF message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apf {
    Disconnect {
        reason: u32,
    },
    ServiceRequest {
        name: String,
    },
    ServiceAccept {
        name: String,
    },
    GlobalRequest {
        name: String,
        want_reply: bool,
        address: String,
        port: u32,
    },
    /// REQUEST_SUCCESS, with the bound port when the frame carries one.
    RequestSuccess {
        port: Option<u32>,
    },
    RequestFailure,
    ChannelOpen {
        kind: String,
        sender: u32,
        window: u32,
        connected_address: String,
        connected_port: u32,
        originator_address: String,
        originator_port: u32,
    },
    ChannelOpenConfirmation {
        recipient: u32,
        sender: u32,
        window: u32,
    },
    ChannelOpenFailure {
        recipient: u32,
        reason: u32,
    },
    WindowAdjust {
        recipient: u32,
        bytes: u32,
    },
    ChannelData {
        recipient: u32,
        data: Vec<u8>,
    },
    ChannelClose {
        recipient: u32,
    },
    ProtocolVersion {
        major: u32,
        minor: u32,
        trigger: u32,
        uuid: [u8; 16],
    },
    KeepaliveRequest {
        cookie: u32,
    },
    KeepaliveReply {
        cookie: u32,
    },
    KeepaliveOptionsReply {
        interval: u32,
        timeout: u32,
    },
}

/// A bounded big-endian reader that names what it reads.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    msg: &'static str,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8], msg: &'static str) -> Reader<'a> {
        Reader { b, at: 1, msg }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ApfError> {
        let s = self
            .at
            .checked_add(n)
            .and_then(|end| self.b.get(self.at..end))
            .ok_or(ApfError::Short {
                msg: self.msg,
                field,
                offset: self.at,
                need: n,
                len: self.b.len(),
            })?;
        self.at += n;
        Ok(s)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, ApfError> {
        let s = self.take(4, field)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, ApfError> {
        Ok(self.take(1, field)?[0])
    }

    fn string(&mut self, field: &'static str) -> Result<String, ApfError> {
        let at = self.at;
        let n = self.u32(field)?;
        if n as usize > MAX_STRING {
            return Err(ApfError::TooLong {
                msg: self.msg,
                field,
                offset: at,
                value: n,
                limit: MAX_STRING,
            });
        }
        let s = self.take(n as usize, field)?;
        String::from_utf8(s.to_vec()).map_err(|_| ApfError::NotText {
            msg: self.msg,
            field,
            offset: at + 4,
        })
    }

    fn rest(&self) -> usize {
        self.b.len().saturating_sub(self.at)
    }

    fn end(self) -> Result<(), ApfError> {
        match self.rest() {
            0 => Ok(()),
            extra => Err(ApfError::Trailing {
                msg: self.msg,
                offset: self.at,
                extra,
            }),
        }
    }
}

impl Apf {
    /// Decodes one frame; `max_data` bounds CHANNEL_DATA payloads.
    pub fn parse(b: &[u8], max_data: usize) -> Result<Apf, ApfError> {
        let t = *b.first().ok_or(ApfError::Empty)?;
        let m = match t {
            DISCONNECT => {
                // LMS sends 7 bytes (u16 reserved), some clients 9 (u32): take
                // the reason and allow either reserved width.
                let mut r = Reader::new(b, "DISCONNECT");
                let reason = r.u32("reason")?;
                if !matches!(r.rest(), 0 | 2 | 4) {
                    return Err(ApfError::Trailing {
                        msg: "DISCONNECT",
                        offset: 5,
                        extra: r.rest(),
                    });
                }
                Apf::Disconnect { reason }
            }
            SERVICE_REQUEST | SERVICE_ACCEPT => {
                let msg = if t == SERVICE_REQUEST {
                    "SERVICE_REQUEST"
                } else {
                    "SERVICE_ACCEPT"
                };
                let mut r = Reader::new(b, msg);
                let name = r.string("service name")?;
                r.end()?;
                if t == SERVICE_REQUEST {
                    Apf::ServiceRequest { name }
                } else {
                    Apf::ServiceAccept { name }
                }
            }
            GLOBAL_REQUEST => {
                let mut r = Reader::new(b, "GLOBAL_REQUEST");
                let name = r.string("request name")?;
                let want_reply = r.u8("want_reply")? != 0;
                let address = r.string("address")?;
                let port = r.u32("port")?;
                r.end()?;
                Apf::GlobalRequest {
                    name,
                    want_reply,
                    address,
                    port,
                }
            }
            REQUEST_SUCCESS => {
                let mut r = Reader::new(b, "REQUEST_SUCCESS");
                let port = if r.rest() == 0 {
                    None
                } else {
                    Some(r.u32("port bound")?)
                };
                r.end()?;
                Apf::RequestSuccess { port }
            }
            REQUEST_FAILURE => {
                Reader::new(b, "REQUEST_FAILURE").end()?;
                Apf::RequestFailure
            }
            CHANNEL_OPEN => {
                let mut r = Reader::new(b, "CHANNEL_OPEN");
                let kind = r.string("channel type")?;
                let sender = r.u32("sender channel")?;
                let window = r.u32("initial window")?;
                let _reserved = r.u32("reserved")?;
                let connected_address = r.string("connected address")?;
                let connected_port = r.u32("connected port")?;
                let originator_address = r.string("originator address")?;
                let originator_port = r.u32("originator port")?;
                r.end()?;
                Apf::ChannelOpen {
                    kind,
                    sender,
                    window,
                    connected_address,
                    connected_port,
                    originator_address,
                    originator_port,
                }
            }
            CHANNEL_OPEN_CONFIRMATION => {
                let mut r = Reader::new(b, "CHANNEL_OPEN_CONFIRMATION");
                let recipient = r.u32("recipient channel")?;
                let sender = r.u32("sender channel")?;
                let window = r.u32("initial window")?;
                let _reserved = r.u32("reserved")?;
                r.end()?;
                Apf::ChannelOpenConfirmation {
                    recipient,
                    sender,
                    window,
                }
            }
            CHANNEL_OPEN_FAILURE => {
                let mut r = Reader::new(b, "CHANNEL_OPEN_FAILURE");
                let recipient = r.u32("recipient channel")?;
                let reason = r.u32("reason")?;
                let _ = r.u32("reserved")?;
                let _ = r.u32("reserved2")?;
                r.end()?;
                Apf::ChannelOpenFailure { recipient, reason }
            }
            CHANNEL_WINDOW_ADJUST => {
                let mut r = Reader::new(b, "CHANNEL_WINDOW_ADJUST");
                let recipient = r.u32("recipient channel")?;
                let bytes = r.u32("bytes to add")?;
                r.end()?;
                Apf::WindowAdjust { recipient, bytes }
            }
            CHANNEL_DATA => {
                let mut r = Reader::new(b, "CHANNEL_DATA");
                let recipient = r.u32("recipient channel")?;
                let at = r.at;
                let n = r.u32("data length")?;
                if n as usize > max_data {
                    return Err(ApfError::TooLong {
                        msg: "CHANNEL_DATA",
                        field: "data length",
                        offset: at,
                        value: n,
                        limit: max_data,
                    });
                }
                let data = r.take(n as usize, "data")?.to_vec();
                r.end()?;
                Apf::ChannelData { recipient, data }
            }
            CHANNEL_CLOSE => {
                let mut r = Reader::new(b, "CHANNEL_CLOSE");
                let recipient = r.u32("recipient channel")?;
                r.end()?;
                Apf::ChannelClose { recipient }
            }
            PROTOCOL_VERSION => {
                let mut r = Reader::new(b, "PROTOCOL_VERSION");
                let major = r.u32("major")?;
                let minor = r.u32("minor")?;
                let trigger = r.u32("trigger reason")?;
                let mut uuid = [0u8; 16];
                uuid.copy_from_slice(r.take(16, "uuid")?);
                let _ = r.take(64, "reserved")?;
                r.end()?;
                Apf::ProtocolVersion {
                    major,
                    minor,
                    trigger,
                    uuid,
                }
            }
            KEEPALIVE_REQUEST | KEEPALIVE_REPLY => {
                let msg = if t == KEEPALIVE_REQUEST {
                    "KEEPALIVE_REQUEST"
                } else {
                    "KEEPALIVE_REPLY"
                };
                let mut r = Reader::new(b, msg);
                let cookie = r.u32("cookie")?;
                r.end()?;
                if t == KEEPALIVE_REQUEST {
                    Apf::KeepaliveRequest { cookie }
                } else {
                    Apf::KeepaliveReply { cookie }
                }
            }
            KEEPALIVE_OPTIONS_REPLY => {
                let mut r = Reader::new(b, "KEEPALIVE_OPTIONS_REPLY");
                let interval = r.u32("interval")?;
                let timeout = r.u32("timeout")?;
                r.end()?;
                Apf::KeepaliveOptionsReply { interval, timeout }
            }
            other => return Err(ApfError::Unknown(other)),
        };
        Ok(m)
    }

    /// The name used in logs and events.
    pub fn name(&self) -> &'static str {
        match self {
            Apf::Disconnect { .. } => "DISCONNECT",
            Apf::ServiceRequest { .. } => "SERVICE_REQUEST",
            Apf::ServiceAccept { .. } => "SERVICE_ACCEPT",
            Apf::GlobalRequest { .. } => "GLOBAL_REQUEST",
            Apf::RequestSuccess { .. } => "REQUEST_SUCCESS",
            Apf::RequestFailure => "REQUEST_FAILURE",
            Apf::ChannelOpen { .. } => "CHANNEL_OPEN",
            Apf::ChannelOpenConfirmation { .. } => "CHANNEL_OPEN_CONFIRMATION",
            Apf::ChannelOpenFailure { .. } => "CHANNEL_OPEN_FAILURE",
            Apf::WindowAdjust { .. } => "CHANNEL_WINDOW_ADJUST",
            Apf::ChannelData { .. } => "CHANNEL_DATA",
            Apf::ChannelClose { .. } => "CHANNEL_CLOSE",
            Apf::ProtocolVersion { .. } => "PROTOCOL_VERSION",
            Apf::KeepaliveRequest { .. } => "KEEPALIVE_REQUEST",
            Apf::KeepaliveReply { .. } => "KEEPALIVE_REPLY",
            Apf::KeepaliveOptionsReply { .. } => "KEEPALIVE_OPTIONS_REPLY",
        }
    }
}

/// Encoders for the frames the ME sends (and tests play the host with).
pub mod encode {
    use super::*;

    fn string(v: &mut Vec<u8>, s: &str) {
        v.extend_from_slice(&(s.len() as u32).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
    }

    fn msg(t: u8, words: &[u32]) -> Vec<u8> {
        let mut v = vec![t];
        for w in words {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v
    }

    pub fn disconnect(reason: u32) -> Vec<u8> {
        let mut v = msg(DISCONNECT, &[reason]);
        v.extend_from_slice(&[0, 0]);
        v
    }

    pub fn service_request(name: &str) -> Vec<u8> {
        let mut v = vec![SERVICE_REQUEST];
        string(&mut v, name);
        v
    }

    pub fn service_accept(name: &str) -> Vec<u8> {
        let mut v = vec![SERVICE_ACCEPT];
        string(&mut v, name);
        v
    }

    pub fn global_request(name: &str, want_reply: bool, address: &str, port: u32) -> Vec<u8> {
        let mut v = vec![GLOBAL_REQUEST];
        string(&mut v, name);
        v.push(u8::from(want_reply));
        string(&mut v, address);
        v.extend_from_slice(&port.to_be_bytes());
        v
    }

    pub fn request_success(port: Option<u32>) -> Vec<u8> {
        match port {
            Some(p) => msg(REQUEST_SUCCESS, &[p]),
            None => vec![REQUEST_SUCCESS],
        }
    }

    pub fn request_failure() -> Vec<u8> {
        vec![REQUEST_FAILURE]
    }

    /// CHANNEL_OPEN as the host sends it ("forwarded-tcpip" to a local port).
    pub fn channel_open(
        kind: &str,
        sender: u32,
        window: u32,
        port: u32,
        orig_port: u32,
    ) -> Vec<u8> {
        let mut v = vec![CHANNEL_OPEN];
        string(&mut v, kind);
        for w in [sender, window, 0xFFFF_FFFF] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        string(&mut v, "::1");
        v.extend_from_slice(&port.to_be_bytes());
        string(&mut v, "::1");
        v.extend_from_slice(&orig_port.to_be_bytes());
        v
    }

    pub fn channel_open_confirmation(recipient: u32, sender: u32, window: u32) -> Vec<u8> {
        msg(
            CHANNEL_OPEN_CONFIRMATION,
            &[recipient, sender, window, 0xFFFF_FFFF],
        )
    }

    pub fn channel_open_failure(recipient: u32, reason: u32) -> Vec<u8> {
        msg(CHANNEL_OPEN_FAILURE, &[recipient, reason, 0, 0])
    }

    pub fn window_adjust(recipient: u32, bytes: u32) -> Vec<u8> {
        msg(CHANNEL_WINDOW_ADJUST, &[recipient, bytes])
    }

    pub fn channel_data(recipient: u32, data: &[u8]) -> Vec<u8> {
        let mut v = msg(CHANNEL_DATA, &[recipient, data.len() as u32]);
        v.extend_from_slice(data);
        v
    }

    pub fn channel_close(recipient: u32) -> Vec<u8> {
        msg(CHANNEL_CLOSE, &[recipient])
    }

    pub fn protocol_version(major: u32, minor: u32, trigger: u32, uuid: &[u8; 16]) -> Vec<u8> {
        let mut v = msg(PROTOCOL_VERSION, &[major, minor, trigger]);
        v.extend_from_slice(uuid);
        v.extend_from_slice(&[0u8; 64]);
        v
    }

    pub fn keepalive_request(cookie: u32) -> Vec<u8> {
        msg(KEEPALIVE_REQUEST, &[cookie])
    }

    pub fn keepalive_reply(cookie: u32) -> Vec<u8> {
        msg(KEEPALIVE_REPLY, &[cookie])
    }
}

#[cfg(test)]
mod tests {
    use super::encode::*;
    use super::*;

    #[test]
    fn protocol_version_is_93_bytes_big_endian() {
        let v = protocol_version(1, 0, 9, &[0xAB; 16]);
        assert_eq!(v.len(), PROTOCOL_VERSION_LEN);
        assert_eq!(&v[..5], &[192, 0, 0, 0, 1]);
        assert_eq!(&v[9..13], &[0, 0, 0, 9]);
        assert_eq!(
            Apf::parse(&v, 0).unwrap(),
            Apf::ProtocolVersion {
                major: 1,
                minor: 0,
                trigger: 9,
                uuid: [0xAB; 16]
            }
        );
    }

    #[test]
    fn channel_open_as_rpc_go_sends_it_is_54_bytes() {
        let v = channel_open(FORWARDED_TCPIP, 3, 4096, 16992, 123);
        assert_eq!(v.len(), 54);
        match Apf::parse(&v, 0).unwrap() {
            Apf::ChannelOpen {
                kind,
                sender,
                window,
                connected_port,
                originator_port,
                ..
            } => {
                assert_eq!(kind, "forwarded-tcpip");
                assert_eq!((sender, window), (3, 4096));
                assert_eq!((connected_port, originator_port), (16992, 123));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_trips() {
        for (frame, want) in [
            (
                service_accept(SERVICE_PFWD),
                Apf::ServiceAccept {
                    name: SERVICE_PFWD.into(),
                },
            ),
            (
                request_success(Some(16992)),
                Apf::RequestSuccess { port: Some(16992) },
            ),
            (request_success(None), Apf::RequestSuccess { port: None }),
            (
                window_adjust(7, 100),
                Apf::WindowAdjust {
                    recipient: 7,
                    bytes: 100,
                },
            ),
            (channel_close(7), Apf::ChannelClose { recipient: 7 }),
            (keepalive_reply(42), Apf::KeepaliveReply { cookie: 42 }),
            (disconnect(11), Apf::Disconnect { reason: 11 }),
            (
                channel_data(7, b"GET"),
                Apf::ChannelData {
                    recipient: 7,
                    data: b"GET".to_vec(),
                },
            ),
            (
                global_request(TCPIP_FORWARD, true, "::1", 16992),
                Apf::GlobalRequest {
                    name: TCPIP_FORWARD.into(),
                    want_reply: true,
                    address: "::1".into(),
                    port: 16992,
                },
            ),
        ] {
            assert_eq!(Apf::parse(&frame, 4096).unwrap(), want);
        }
        // DISCONNECT with a u32 reserved field (9 bytes) is accepted too
        assert_eq!(
            Apf::parse(&[1, 0, 0, 0, 2, 0, 0, 0, 0], 0).unwrap(),
            Apf::Disconnect { reason: 2 }
        );
    }

    #[test]
    fn malformed_frames_name_field_and_offset() {
        let e = Apf::parse(&[CHANNEL_DATA, 0, 0, 0, 1, 0, 0, 0, 9, 1, 2], 4096).unwrap_err();
        assert_eq!(
            e.to_string(),
            "APF CHANNEL_DATA: field data at offset 9 needs 9 bytes, frame has 11"
        );
        let e = Apf::parse(&channel_data(1, &[0; 100]), 50).unwrap_err();
        assert!(
            matches!(
                e,
                ApfError::TooLong {
                    offset: 5,
                    value: 100,
                    ..
                }
            ),
            "{e}"
        );
        let mut v = channel_close(1);
        v.push(0);
        assert!(matches!(
            Apf::parse(&v, 0),
            Err(ApfError::Trailing {
                offset: 5,
                extra: 1,
                ..
            })
        ));
        let e = Apf::parse(&[SERVICE_REQUEST, 0xFF, 0, 0, 0], 0).unwrap_err();
        assert!(matches!(e, ApfError::TooLong { offset: 1, .. }), "{e}");
        assert_eq!(Apf::parse(&[], 0), Err(ApfError::Empty));
        assert_eq!(Apf::parse(&[77], 0), Err(ApfError::Unknown(77)));
        let e = Apf::parse(&[SERVICE_REQUEST, 0, 0, 0, 2, 0xFF, 0xFE], 0).unwrap_err();
        assert!(matches!(e, ApfError::NotText { offset: 5, .. }), "{e}");
    }
}

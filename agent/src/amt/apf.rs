//! APF, the AMT port-forwarding protocol spoken over the MEI LME client
//! (me-runtime.md §5.2): an SSH-like message set, big-endian fields.
//!
//! The agent plays LMS: AMT asks it (GLOBAL_REQUEST "tcpip-forward") to
//! listen on 16992/16993 for local software; the agent then opens a
//! "forwarded-tcpip" channel per HTTP exchange and moves the bytes with
//! window accounting both ways. Real AMT drops the LME session when a
//! channel closes, so the handshake is replayed before the next channel.

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::hw::mei::device::{MeiClient, MeiError};

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

/// The port-forwarding service AMT asks for.
pub const PFWD_SERVICE: &str = "pfwd@amt.intel.com";
/// Trigger reason the host sends in its PROTOCOL_VERSION (rpc-go uses 9).
const HOST_TRIGGER: u32 = 9;
/// Receive window the agent offers per channel.
pub const RX_WINDOW: u32 = 4096;
/// Originator port named in CHANNEL_OPEN (as rpc-go).
const ORIGINATOR_PORT: u32 = 123;
/// CHANNEL_DATA header: type, recipient, length.
const DATA_HEADER: usize = 9;
/// Longest name or address accepted in a message.
const MAX_STRING: usize = 256;

#[derive(Debug, Error)]
pub enum ApfError {
    #[error("APF {structure}: truncated at offset {offset}: need {need} bytes, have {have}")]
    Truncated {
        structure: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("APF {structure} at offset {offset}: {what}")]
    Malformed {
        structure: &'static str,
        offset: usize,
        what: String,
    },
    #[error("APF message type {0} unknown")]
    UnknownType(u8),
    #[error("LME: {0}")]
    Link(#[from] MeiError),
    #[error("APF handshake: {0}")]
    Handshake(String),
    #[error("APF channel to port {port}: AMT refused it (reason {reason}: {meaning})")]
    OpenFailed {
        port: u16,
        reason: u32,
        meaning: &'static str,
    },
    #[error("APF: AMT disconnected (reason {0})")]
    Disconnected(u32),
    #[error("APF channel: {0}")]
    Protocol(String),
    #[error("APF: nothing from AMT within {0:?} ({1})")]
    Timeout(Duration, &'static str),
}

/// One APF message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Disconnect {
        reason: u32,
    },
    ServiceRequest(String),
    ServiceAccept(String),
    GlobalRequest {
        name: String,
        want_reply: bool,
        /// For tcpip-forward / cancel-tcpip-forward: address and port.
        forward: Option<(String, u32)>,
    },
    RequestSuccess {
        port: Option<u32>,
    },
    RequestFailure,
    ChannelOpen {
        kind: String,
        sender: u32,
        window: u32,
        connected: (String, u32),
        originator: (String, u32),
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
    Data {
        recipient: u32,
        data: Vec<u8>,
    },
    Close {
        recipient: u32,
    },
    ProtocolVersion {
        major: u32,
        minor: u32,
        trigger: u32,
        uuid: [u8; 16],
    },
    KeepaliveRequest(u32),
    KeepaliveReply(u32),
    KeepaliveOptionsRequest {
        interval: u32,
        timeout: u32,
    },
    KeepaliveOptionsReply {
        interval: u32,
        timeout: u32,
    },
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

impl Message {
    /// The bytes of one message.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::new();
        match self {
            Message::Disconnect { reason } => {
                o.push(DISCONNECT);
                put_u32(&mut o, *reason);
                o.extend_from_slice(&[0, 0]);
            }
            Message::ServiceRequest(n) => {
                o.push(SERVICE_REQUEST);
                put_str(&mut o, n);
            }
            Message::ServiceAccept(n) => {
                o.push(SERVICE_ACCEPT);
                put_str(&mut o, n);
            }
            Message::GlobalRequest {
                name,
                want_reply,
                forward,
            } => {
                o.push(GLOBAL_REQUEST);
                put_str(&mut o, name);
                o.push(u8::from(*want_reply));
                if let Some((addr, port)) = forward {
                    put_str(&mut o, addr);
                    put_u32(&mut o, *port);
                }
            }
            Message::RequestSuccess { port } => {
                o.push(REQUEST_SUCCESS);
                if let Some(p) = port {
                    put_u32(&mut o, *p);
                }
            }
            Message::RequestFailure => o.push(REQUEST_FAILURE),
            Message::ChannelOpen {
                kind,
                sender,
                window,
                connected,
                originator,
            } => {
                o.push(CHANNEL_OPEN);
                put_str(&mut o, kind);
                put_u32(&mut o, *sender);
                put_u32(&mut o, *window);
                put_u32(&mut o, 0xFFFF_FFFF);
                put_str(&mut o, &connected.0);
                put_u32(&mut o, connected.1);
                put_str(&mut o, &originator.0);
                put_u32(&mut o, originator.1);
            }
            Message::ChannelOpenConfirmation {
                recipient,
                sender,
                window,
            } => {
                o.push(CHANNEL_OPEN_CONFIRMATION);
                put_u32(&mut o, *recipient);
                put_u32(&mut o, *sender);
                put_u32(&mut o, *window);
                put_u32(&mut o, 0xFFFF_FFFF);
            }
            Message::ChannelOpenFailure { recipient, reason } => {
                o.push(CHANNEL_OPEN_FAILURE);
                put_u32(&mut o, *recipient);
                put_u32(&mut o, *reason);
                put_u32(&mut o, 0);
                put_u32(&mut o, 0);
            }
            Message::WindowAdjust { recipient, bytes } => {
                o.push(CHANNEL_WINDOW_ADJUST);
                put_u32(&mut o, *recipient);
                put_u32(&mut o, *bytes);
            }
            Message::Data { recipient, data } => {
                o.push(CHANNEL_DATA);
                put_u32(&mut o, *recipient);
                put_u32(&mut o, data.len() as u32);
                o.extend_from_slice(data);
            }
            Message::Close { recipient } => {
                o.push(CHANNEL_CLOSE);
                put_u32(&mut o, *recipient);
            }
            Message::ProtocolVersion {
                major,
                minor,
                trigger,
                uuid,
            } => {
                o.push(PROTOCOL_VERSION);
                put_u32(&mut o, *major);
                put_u32(&mut o, *minor);
                put_u32(&mut o, *trigger);
                o.extend_from_slice(uuid);
                o.extend_from_slice(&[0u8; 64]);
            }
            Message::KeepaliveRequest(c) => {
                o.push(KEEPALIVE_REQUEST);
                put_u32(&mut o, *c);
            }
            Message::KeepaliveReply(c) => {
                o.push(KEEPALIVE_REPLY);
                put_u32(&mut o, *c);
            }
            Message::KeepaliveOptionsRequest { interval, timeout } => {
                o.push(KEEPALIVE_OPTIONS_REQUEST);
                put_u32(&mut o, *interval);
                put_u32(&mut o, *timeout);
            }
            Message::KeepaliveOptionsReply { interval, timeout } => {
                o.push(KEEPALIVE_OPTIONS_REPLY);
                put_u32(&mut o, *interval);
                put_u32(&mut o, *timeout);
            }
        }
        o
    }
}

/// A bounded big-endian reader naming the message in its errors.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    structure: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ApfError> {
        match self
            .pos
            .checked_add(n)
            .and_then(|end| self.b.get(self.pos..end))
        {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(ApfError::Truncated {
                structure: self.structure,
                offset: self.pos,
                need: n,
                have: self.b.len().saturating_sub(self.pos),
            }),
        }
    }

    fn u8(&mut self) -> Result<u8, ApfError> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    fn u32(&mut self) -> Result<u32, ApfError> {
        let s = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(s);
        Ok(u32::from_be_bytes(a))
    }

    fn string(&mut self) -> Result<String, ApfError> {
        let at = self.pos;
        let len = self.u32()? as usize;
        if len > MAX_STRING {
            return Err(ApfError::Malformed {
                structure: self.structure,
                offset: at,
                what: format!("string of {len} bytes (at most {MAX_STRING})"),
            });
        }
        let s = self.take(len)?;
        String::from_utf8(s.to_vec()).map_err(|_| ApfError::Malformed {
            structure: self.structure,
            offset: at + 4,
            what: "string is not UTF-8".into(),
        })
    }

    fn rest(&self) -> usize {
        self.b.len().saturating_sub(self.pos)
    }
}

/// Parses every message in one MEI message (normally exactly one).
pub fn parse_all(bytes: &[u8]) -> Result<Vec<Message>, ApfError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (m, used) = parse_one(bytes.get(at..).unwrap_or(&[]))?;
        out.push(m);
        at += used;
    }
    Ok(out)
}

/// Parses one message from the front of `bytes`: the message and its length.
pub fn parse_one(bytes: &[u8]) -> Result<(Message, usize), ApfError> {
    let t = *bytes.first().ok_or(ApfError::Truncated {
        structure: "message",
        offset: 0,
        need: 1,
        have: 0,
    })?;
    let structure = match t {
        DISCONNECT => "DISCONNECT",
        SERVICE_REQUEST => "SERVICE_REQUEST",
        SERVICE_ACCEPT => "SERVICE_ACCEPT",
        GLOBAL_REQUEST => "GLOBAL_REQUEST",
        REQUEST_SUCCESS => "REQUEST_SUCCESS",
        REQUEST_FAILURE => "REQUEST_FAILURE",
        CHANNEL_OPEN => "CHANNEL_OPEN",
        CHANNEL_OPEN_CONFIRMATION => "CHANNEL_OPEN_CONFIRMATION",
        CHANNEL_OPEN_FAILURE => "CHANNEL_OPEN_FAILURE",
        CHANNEL_WINDOW_ADJUST => "CHANNEL_WINDOW_ADJUST",
        CHANNEL_DATA => "CHANNEL_DATA",
        CHANNEL_CLOSE => "CHANNEL_CLOSE",
        PROTOCOL_VERSION => "PROTOCOL_VERSION",
        KEEPALIVE_REQUEST => "KEEPALIVE_REQUEST",
        KEEPALIVE_REPLY => "KEEPALIVE_REPLY",
        KEEPALIVE_OPTIONS_REQUEST => "KEEPALIVE_OPTIONS_REQUEST",
        KEEPALIVE_OPTIONS_REPLY => "KEEPALIVE_OPTIONS_REPLY",
        other => return Err(ApfError::UnknownType(other)),
    };
    let mut r = Reader {
        b: bytes,
        pos: 1,
        structure,
    };
    let m = match t {
        DISCONNECT => {
            let reason = r.u32()?;
            // Reserved tail: 2 bytes (go-wsman-messages) or 4; take what is there.
            let tail = r.rest().min(2);
            r.take(tail)?;
            Message::Disconnect { reason }
        }
        SERVICE_REQUEST => Message::ServiceRequest(r.string()?),
        SERVICE_ACCEPT => Message::ServiceAccept(r.string()?),
        GLOBAL_REQUEST => {
            let name = r.string()?;
            let want_reply = r.u8()? != 0;
            let forward = if name == "tcpip-forward" || name == "cancel-tcpip-forward" {
                let addr = r.string()?;
                Some((addr, r.u32()?))
            } else {
                // Other requests (udp-send-to) carry data we do not use.
                let n = r.rest();
                r.take(n)?;
                None
            };
            Message::GlobalRequest {
                name,
                want_reply,
                forward,
            }
        }
        REQUEST_SUCCESS => {
            let port = if r.rest() >= 4 { Some(r.u32()?) } else { None };
            Message::RequestSuccess { port }
        }
        REQUEST_FAILURE => Message::RequestFailure,
        CHANNEL_OPEN => {
            let kind = r.string()?;
            let sender = r.u32()?;
            let window = r.u32()?;
            r.u32()?;
            let ca = r.string()?;
            let cp = r.u32()?;
            let oa = r.string()?;
            let op = r.u32()?;
            Message::ChannelOpen {
                kind,
                sender,
                window,
                connected: (ca, cp),
                originator: (oa, op),
            }
        }
        CHANNEL_OPEN_CONFIRMATION => {
            let recipient = r.u32()?;
            let sender = r.u32()?;
            let window = r.u32()?;
            r.u32()?;
            Message::ChannelOpenConfirmation {
                recipient,
                sender,
                window,
            }
        }
        CHANNEL_OPEN_FAILURE => {
            let recipient = r.u32()?;
            let reason = r.u32()?;
            r.take(8)?;
            Message::ChannelOpenFailure { recipient, reason }
        }
        CHANNEL_WINDOW_ADJUST => Message::WindowAdjust {
            recipient: r.u32()?,
            bytes: r.u32()?,
        },
        CHANNEL_DATA => {
            let recipient = r.u32()?;
            let len = r.u32()? as usize;
            Message::Data {
                recipient,
                data: r.take(len)?.to_vec(),
            }
        }
        CHANNEL_CLOSE => Message::Close {
            recipient: r.u32()?,
        },
        PROTOCOL_VERSION => {
            let major = r.u32()?;
            let minor = r.u32()?;
            let trigger = r.u32()?;
            let mut uuid = [0u8; 16];
            uuid.copy_from_slice(r.take(16)?);
            r.take(64)?;
            Message::ProtocolVersion {
                major,
                minor,
                trigger,
                uuid,
            }
        }
        KEEPALIVE_REQUEST => Message::KeepaliveRequest(r.u32()?),
        KEEPALIVE_REPLY => Message::KeepaliveReply(r.u32()?),
        KEEPALIVE_OPTIONS_REQUEST => Message::KeepaliveOptionsRequest {
            interval: r.u32()?,
            timeout: r.u32()?,
        },
        _ => Message::KeepaliveOptionsReply {
            interval: r.u32()?,
            timeout: r.u32()?,
        },
    };
    Ok((m, r.pos))
}

fn open_failure_meaning(reason: u32) -> &'static str {
    match reason {
        1 => "administratively prohibited",
        2 => "connect failed",
        3 => "unknown channel type",
        4 => "resource shortage",
        _ => "unknown",
    }
}

/// Whole messages to and from the LME client.
pub trait Link {
    fn send(&mut self, msg: &[u8]) -> Result<(), MeiError>;
    fn receive(&mut self, timeout: Duration) -> Result<Vec<u8>, MeiError>;
    /// The client's `max_msg_length`.
    fn max_message(&self) -> usize;
}

impl Link for MeiClient {
    fn send(&mut self, msg: &[u8]) -> Result<(), MeiError> {
        MeiClient::send(self, msg)
    }
    fn receive(&mut self, timeout: Duration) -> Result<Vec<u8>, MeiError> {
        MeiClient::receive(self, timeout)
    }
    fn max_message(&self) -> usize {
        self.properties().max_msg_length as usize
    }
}

/// What the handshake showed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handshake {
    pub amt_version: Option<(u32, u32)>,
    /// The ME's system UUID from its PROTOCOL_VERSION.
    pub system_uuid: Option<[u8; 16]>,
    /// Ports AMT asked the host to forward (16992 / 16993, 623 / 664).
    pub forwarded_ports: Vec<u32>,
}

/// Counters for the report and the docs (how much the LME path costs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub handshakes: u32,
    pub channels: u32,
    pub keepalives: u32,
}

/// An APF session over the LME client.
pub struct Session<L: Link> {
    link: L,
    /// Bound for each wait on AMT.
    pub timeout: Duration,
    /// Quiet time after which a handshake counts as finished.
    pub settle: Duration,
    next_channel: u32,
    handshaken: bool,
    pub info: Handshake,
    pub stats: Stats,
}

/// Events the channel loop cares about, after housekeeping.
enum Event {
    Confirmed {
        recipient: u32,
        sender: u32,
        window: u32,
    },
    OpenFailed {
        recipient: u32,
        reason: u32,
    },
    Adjust {
        recipient: u32,
        bytes: u32,
    },
    Data {
        recipient: u32,
        data: Vec<u8>,
    },
    Closed {
        recipient: u32,
    },
    Handshake,
}

impl<L: Link> Session<L> {
    pub fn new(link: L) -> Self {
        Session {
            link,
            timeout: Duration::from_secs(10),
            settle: Duration::from_millis(300),
            next_channel: 1,
            handshaken: false,
            info: Handshake::default(),
            stats: Stats::default(),
        }
    }

    fn send(&mut self, m: &Message) -> Result<(), ApfError> {
        Ok(self.link.send(&m.encode())?)
    }

    /// Answers housekeeping (keepalives, service and forward requests,
    /// version) and returns what a channel needs to see.
    fn handle(&mut self, m: Message) -> Result<Option<Event>, ApfError> {
        match m {
            Message::ProtocolVersion {
                major, minor, uuid, ..
            } => {
                self.info.amt_version = Some((major, minor));
                self.info.system_uuid = Some(uuid);
                Ok(Some(Event::Handshake))
            }
            Message::ServiceRequest(name) => {
                if name == PFWD_SERVICE || name == "auth@amt.intel.com" {
                    self.send(&Message::ServiceAccept(name))?;
                } else {
                    log::warn!("APF: AMT asked for unknown service {name:?}; disconnecting");
                    self.send(&Message::Disconnect { reason: 7 })?;
                }
                Ok(Some(Event::Handshake))
            }
            Message::GlobalRequest {
                name,
                want_reply,
                forward,
            } => {
                let reply = match (name.as_str(), forward) {
                    ("tcpip-forward", Some((_, port))) => {
                        if !self.info.forwarded_ports.contains(&port) {
                            self.info.forwarded_ports.push(port);
                        }
                        Message::RequestSuccess { port: Some(port) }
                    }
                    ("cancel-tcpip-forward", Some((_, port))) => {
                        self.info.forwarded_ports.retain(|p| *p != port);
                        Message::RequestSuccess { port: None }
                    }
                    _ => Message::RequestFailure,
                };
                if want_reply {
                    self.send(&reply)?;
                }
                Ok(Some(Event::Handshake))
            }
            Message::KeepaliveRequest(c) => {
                self.stats.keepalives += 1;
                self.send(&Message::KeepaliveReply(c))?;
                Ok(None)
            }
            Message::KeepaliveOptionsRequest { interval, timeout } => {
                self.send(&Message::KeepaliveOptionsReply { interval, timeout })?;
                Ok(None)
            }
            Message::ChannelOpenConfirmation {
                recipient,
                sender,
                window,
            } => Ok(Some(Event::Confirmed {
                recipient,
                sender,
                window,
            })),
            Message::ChannelOpenFailure { recipient, reason } => {
                Ok(Some(Event::OpenFailed { recipient, reason }))
            }
            Message::WindowAdjust { recipient, bytes } => {
                Ok(Some(Event::Adjust { recipient, bytes }))
            }
            Message::Data { recipient, data } => Ok(Some(Event::Data { recipient, data })),
            Message::Close { recipient } => Ok(Some(Event::Closed { recipient })),
            Message::ChannelOpen { sender, .. } => {
                // AMT opening channels toward the host (alerts) is not served.
                self.send(&Message::ChannelOpenFailure {
                    recipient: sender,
                    reason: 1,
                })?;
                Ok(None)
            }
            Message::Disconnect { reason } => Err(ApfError::Disconnected(reason)),
            Message::ServiceAccept(_)
            | Message::RequestSuccess { .. }
            | Message::RequestFailure
            | Message::KeepaliveReply(_)
            | Message::KeepaliveOptionsReply { .. } => Ok(None),
        }
    }

    /// Waits up to `wait` for one MEI message and handles its APF messages.
    /// `Ok(None)` on quiet.
    fn pump(&mut self, wait: Duration) -> Result<Option<Vec<Event>>, ApfError> {
        let bytes = match self.link.receive(wait) {
            Ok(b) => b,
            Err(MeiError::Timeout { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut events = Vec::new();
        for m in parse_all(&bytes)? {
            if let Some(e) = self.handle(m)? {
                events.push(e);
            }
        }
        Ok(Some(events))
    }

    /// The handshake: our PROTOCOL_VERSION, then AMT's version, service and
    /// forward requests, until AMT has asked to forward `port` and gone quiet.
    pub fn handshake(&mut self, port: u16) -> Result<(), ApfError> {
        self.stats.handshakes += 1;
        self.send(&Message::ProtocolVersion {
            major: 1,
            minor: 0,
            trigger: HOST_TRIGGER,
            uuid: [0; 16],
        })?;
        let start = Instant::now();
        let mut version_seen = false;
        loop {
            let ready = version_seen && self.info.forwarded_ports.contains(&u32::from(port));
            let wait = if ready { self.settle } else { self.timeout };
            if start.elapsed() > self.timeout + self.settle {
                break;
            }
            match self.pump(wait)? {
                None if ready => {
                    self.handshaken = true;
                    return Ok(());
                }
                None => break,
                Some(events) => {
                    for e in events {
                        if let Event::Handshake = e {
                            version_seen |= self.info.amt_version.is_some();
                        }
                    }
                }
            }
        }
        Err(ApfError::Handshake(
            match (version_seen, &self.info.forwarded_ports) {
                (false, _) => format!("no PROTOCOL_VERSION from AMT within {:?}", self.timeout),
                (true, ports) => format!(
                    "AMT did not ask to forward port {port} (forwarded: {ports:?}); on AMT 19+ \
                 local WS-MAN is TLS-only on 16993"
                ),
            },
        ))
    }

    /// One request/response exchange on a fresh channel to `port`: opens
    /// it, sends `request` within AMT's window, collects data until
    /// `complete(&collected)` or AMT closes, then closes the channel.
    pub fn exchange(
        &mut self,
        port: u16,
        request: &[u8],
        complete: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>, ApfError> {
        if !self.handshaken {
            self.handshake(port)?;
        }
        let ours = self.next_channel;
        self.next_channel = self.next_channel.wrapping_add(1).max(1);
        self.stats.channels += 1;
        self.send(&Message::ChannelOpen {
            kind: "forwarded-tcpip".into(),
            sender: ours,
            window: RX_WINDOW,
            connected: ("::1".into(), u32::from(port)),
            originator: ("::1".into(), ORIGINATOR_PORT),
        })?;
        // From here on, the next exchange replays the handshake: real AMT
        // drops the LME session when a channel closes.
        self.handshaken = false;
        let (theirs, mut tx_window) = loop {
            let mut found = None;
            for e in self.next_events("channel open confirmation")? {
                match e {
                    Event::Confirmed {
                        recipient,
                        sender,
                        window,
                    } if recipient == ours => found = Some((sender, window)),
                    Event::OpenFailed { recipient, reason } if recipient == ours => {
                        return Err(ApfError::OpenFailed {
                            port,
                            reason,
                            meaning: open_failure_meaning(reason),
                        })
                    }
                    _ => {}
                }
            }
            if let Some(f) = found {
                break f;
            }
        };
        let mtu = self.link.max_message().saturating_sub(DATA_HEADER).max(1);
        let mut sent = 0usize;
        let mut collected = Vec::new();
        let mut closed = false;
        while sent < request.len() {
            if tx_window == 0 {
                for e in self.next_events("window adjust")? {
                    match e {
                        Event::Adjust { recipient, bytes } if recipient == ours => {
                            tx_window = tx_window.saturating_add(bytes)
                        }
                        Event::Data { recipient, data } if recipient == ours => {
                            self.consume(theirs, &data, &mut collected)?
                        }
                        Event::Closed { recipient } if recipient == ours => closed = true,
                        _ => {}
                    }
                }
                if closed {
                    return Err(ApfError::Protocol(format!(
                        "AMT closed the channel after {sent} of {} request bytes",
                        request.len()
                    )));
                }
                continue;
            }
            let n = (request.len() - sent).min(tx_window as usize).min(mtu);
            let chunk = request.get(sent..sent + n).unwrap_or(&[]).to_vec();
            self.send(&Message::Data {
                recipient: theirs,
                data: chunk,
            })?;
            sent += n;
            tx_window -= n as u32;
        }
        while !closed && !complete(&collected) {
            for e in self.next_events("response data")? {
                match e {
                    Event::Data { recipient, data } if recipient == ours => {
                        self.consume(theirs, &data, &mut collected)?
                    }
                    Event::Closed { recipient } if recipient == ours => closed = true,
                    _ => {}
                }
            }
        }
        // The response is in: closing is best effort. AMT may already have
        // dropped the session (or the MEI client) after its own close.
        if let Err(e) = self.close_channel(theirs, ours, closed) {
            log::debug!("APF channel {ours}: close: {e}");
        }
        Ok(collected)
    }

    /// Sends CHANNEL_CLOSE and takes AMT's own close, so it does not land
    /// in the next exchange; a quiet link is fine.
    fn close_channel(&mut self, theirs: u32, ours: u32, closed: bool) -> Result<(), ApfError> {
        self.send(&Message::Close { recipient: theirs })?;
        if closed {
            return Ok(());
        }
        let until = Instant::now() + self.settle;
        while Instant::now() < until {
            match self.pump(self.settle)? {
                None => break,
                Some(events) => {
                    if events
                        .iter()
                        .any(|e| matches!(e, Event::Closed { recipient } if *recipient == ours))
                    {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn consume(&mut self, theirs: u32, data: &[u8], into: &mut Vec<u8>) -> Result<(), ApfError> {
        if into.len() + data.len() > amt_http_limit() {
            return Err(ApfError::Protocol("response larger than 1 MiB".into()));
        }
        into.extend_from_slice(data);
        // Give the window back as soon as the bytes are ours.
        if !data.is_empty() {
            self.send(&Message::WindowAdjust {
                recipient: theirs,
                bytes: data.len() as u32,
            })?;
        }
        Ok(())
    }

    fn next_events(&mut self, waiting_for: &'static str) -> Result<Vec<Event>, ApfError> {
        match self.pump(self.timeout)? {
            Some(e) => Ok(e),
            None => Err(ApfError::Timeout(self.timeout, waiting_for)),
        }
    }

    pub fn into_link(self) -> L {
        self.link
    }
}

fn amt_http_limit() -> usize {
    fortros_amt::http::MAX_BODY + fortros_amt::http::MAX_HEAD
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// How the fake answers one message: pushes replies onto the inbox.
    pub type Responder = Box<dyn FnMut(&Message, &mut VecDeque<Vec<u8>>)>;

    /// A scripted AMT: answers each message the agent sends by a closure.
    pub struct FakeAmt {
        pub inbox: VecDeque<Vec<u8>>,
        pub sent: Vec<Message>,
        pub max: usize,
        pub respond: Responder,
    }

    impl Link for FakeAmt {
        fn send(&mut self, msg: &[u8]) -> Result<(), MeiError> {
            assert!(msg.len() <= self.max, "message over max_msg_length");
            let m = parse_all(msg).unwrap().remove(0);
            (self.respond)(&m, &mut self.inbox);
            self.sent.push(m);
            Ok(())
        }
        fn receive(&mut self, timeout: Duration) -> Result<Vec<u8>, MeiError> {
            self.inbox.pop_front().ok_or(MeiError::Timeout {
                path: "fake".into(),
                timeout,
            })
        }
        fn max_message(&self) -> usize {
            self.max
        }
    }

    fn version() -> Vec<u8> {
        Message::ProtocolVersion {
            major: 1,
            minor: 0,
            trigger: 254,
            uuid: [7; 16],
        }
        .encode()
    }

    /// AMT as the reference describes it: handshake on every PROTOCOL_VERSION,
    /// a small TX window, the reply in two pieces, then CHANNEL_CLOSE.
    pub fn fake_amt(reply: Vec<u8>, window: u32, max: usize) -> FakeAmt {
        let mut got: Vec<u8> = Vec::new();
        let mut expected = 0usize;
        FakeAmt {
            inbox: VecDeque::new(),
            sent: Vec::new(),
            max,
            respond: Box::new(move |m, inbox| match m {
                Message::ProtocolVersion { .. } => {
                    inbox.push_back(version());
                    inbox.push_back(Message::ServiceRequest(PFWD_SERVICE.into()).encode());
                    inbox.push_back(
                        Message::GlobalRequest {
                            name: "tcpip-forward".into(),
                            want_reply: true,
                            forward: Some(("".into(), 16992)),
                        }
                        .encode(),
                    );
                    inbox.push_back(Message::KeepaliveRequest(42).encode());
                }
                Message::ChannelOpen { sender, .. } => {
                    got.clear();
                    expected = 0;
                    inbox.push_back(
                        Message::ChannelOpenConfirmation {
                            recipient: *sender,
                            sender: 900 + sender,
                            window,
                        }
                        .encode(),
                    );
                }
                Message::Data { recipient, data } => {
                    assert!(data.len() as u32 <= window, "window overrun");
                    got.extend_from_slice(data);
                    // The request is complete when its Content-Length is in.
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(h) = text.find("\r\n\r\n") {
                        let cl = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        expected = h + 4 + cl;
                    }
                    let ours = recipient - 900;
                    if expected > 0 && got.len() >= expected {
                        let (a, b) = reply.split_at(reply.len() / 2);
                        for part in [a, b] {
                            inbox.push_back(
                                Message::Data {
                                    recipient: ours,
                                    data: part.to_vec(),
                                }
                                .encode(),
                            );
                        }
                        inbox.push_back(Message::Close { recipient: ours }.encode());
                    } else {
                        inbox.push_back(
                            Message::WindowAdjust {
                                recipient: ours,
                                bytes: data.len() as u32,
                            }
                            .encode(),
                        );
                    }
                }
                _ => {}
            }),
        }
    }

    #[test]
    fn every_message_round_trips() {
        let all = vec![
            Message::Disconnect { reason: 2 },
            Message::ServiceRequest(PFWD_SERVICE.into()),
            Message::ServiceAccept(PFWD_SERVICE.into()),
            Message::GlobalRequest {
                name: "tcpip-forward".into(),
                want_reply: true,
                forward: Some(("0.0.0.0".into(), 16992)),
            },
            Message::RequestSuccess { port: Some(16992) },
            Message::RequestSuccess { port: None },
            Message::RequestFailure,
            Message::ChannelOpen {
                kind: "forwarded-tcpip".into(),
                sender: 1,
                window: 4096,
                connected: ("::1".into(), 16992),
                originator: ("::1".into(), 123),
            },
            Message::ChannelOpenConfirmation {
                recipient: 1,
                sender: 5,
                window: 1000,
            },
            Message::ChannelOpenFailure {
                recipient: 1,
                reason: 4,
            },
            Message::WindowAdjust {
                recipient: 5,
                bytes: 10,
            },
            Message::Data {
                recipient: 5,
                data: b"abc".to_vec(),
            },
            Message::Close { recipient: 5 },
            Message::ProtocolVersion {
                major: 1,
                minor: 0,
                trigger: 9,
                uuid: [1; 16],
            },
            Message::KeepaliveRequest(3),
            Message::KeepaliveReply(3),
            Message::KeepaliveOptionsRequest {
                interval: 1,
                timeout: 2,
            },
            Message::KeepaliveOptionsReply {
                interval: 1,
                timeout: 2,
            },
        ];
        let mut stream = Vec::new();
        let mut streamed = Vec::new();
        for m in &all {
            let b = m.encode();
            assert_eq!(parse_one(&b).unwrap(), (m.clone(), b.len()), "{m:?}");
            // REQUEST_SUCCESS without a port is only delimited by its MEI
            // message (AMT sends one APF message per MEI message).
            if *m != (Message::RequestSuccess { port: None }) {
                stream.extend_from_slice(&b);
                streamed.push(m.clone());
            }
        }
        assert_eq!(parse_all(&stream).unwrap(), streamed);
    }

    #[test]
    fn layouts_match_the_reference() {
        // me-runtime.md §5.2: PROTOCOL_VERSION is 93 bytes, CHANNEL_OPEN to
        // "::1" is 54 bytes, fields big-endian.
        let v = Message::ProtocolVersion {
            major: 1,
            minor: 0,
            trigger: 9,
            uuid: [0; 16],
        }
        .encode();
        assert_eq!(v.len(), 93);
        assert_eq!(&v[..13], &[192, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9]);
        let o = Message::ChannelOpen {
            kind: "forwarded-tcpip".into(),
            sender: 1,
            window: 4096,
            connected: ("::1".into(), 16992),
            originator: ("::1".into(), 123),
        }
        .encode();
        assert_eq!(o.len(), 54);
        assert_eq!(&o[..5], &[90, 0, 0, 0, 15]);
        assert_eq!(&o[20..24], &[0, 0, 0, 1], "sender channel");
        assert_eq!(&o[24..28], &[0, 0, 0x10, 0], "window 4096");
        assert_eq!(&o[28..32], &[0xFF; 4], "reserved");
        assert_eq!(&o[32..39], &[0, 0, 0, 3, b':', b':', b'1']);
    }

    #[test]
    fn hostile_messages_are_errors_with_offsets() {
        assert!(matches!(parse_one(&[]), Err(ApfError::Truncated { .. })));
        assert!(matches!(parse_one(&[77]), Err(ApfError::UnknownType(77))));
        assert!(matches!(
            parse_one(&[CHANNEL_DATA, 0, 0, 0, 1, 0, 0, 0, 9, 1]),
            Err(ApfError::Truncated {
                structure: "CHANNEL_DATA",
                offset: 9,
                need: 9,
                have: 1
            })
        ));
        assert!(matches!(
            parse_one(&[SERVICE_REQUEST, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(ApfError::Malformed { offset: 1, .. })
        ));
        assert!(matches!(
            parse_one(&[SERVICE_REQUEST, 0, 0, 0, 2, 0xC3, 0x28]),
            Err(ApfError::Malformed { offset: 5, .. })
        ));
        assert!(parse_one(&[PROTOCOL_VERSION; 50]).is_err());
    }

    #[test]
    fn exchange_with_window_accounting_and_handshake_replay() {
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec();
        // TX window 100 and max message 96: the request goes in pieces.
        let amt = fake_amt(reply.clone(), 100, 96);
        let mut s = Session::new(amt);
        s.settle = Duration::from_millis(1);
        let request = fortros_amt::http::Request::soap("[::1]:16992", "x".repeat(300)).to_bytes();
        let got = s
            .exchange(16992, &request, |_| false)
            .expect("first exchange");
        assert_eq!(got, reply);
        let got = s.exchange(16992, &request, |_| false).expect("second");
        assert_eq!(got, reply);
        assert_eq!(s.stats.handshakes, 2, "handshake replayed after a close");
        assert_eq!(s.stats.channels, 2);
        assert_eq!(s.info.system_uuid, Some([7; 16]));
        let amt = s.into_link();
        let sent = &amt.sent;
        // The agent answered the service request, the forward and the keepalive.
        assert!(sent.contains(&Message::ServiceAccept(PFWD_SERVICE.into())));
        assert!(sent.contains(&Message::RequestSuccess { port: Some(16992) }));
        assert!(sent.contains(&Message::KeepaliveReply(42)));
        // It gave back the window for every byte it received.
        let adjusted: u32 = sent
            .iter()
            .filter_map(|m| match m {
                Message::WindowAdjust { bytes, .. } => Some(*bytes),
                _ => None,
            })
            .sum();
        assert_eq!(adjusted as usize, 2 * reply.len());
        // Data messages never exceeded the link's maximum (asserted in send)
        // and reassemble to the request.
        let data: Vec<u8> = sent
            .iter()
            .filter_map(|m| match m {
                Message::Data {
                    recipient: 901,
                    data,
                } => Some(data.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(data, request);
        assert!(sent.contains(&Message::Close { recipient: 901 }));
    }

    #[test]
    fn open_failure_and_missing_forward_are_reported() {
        let mut amt = fake_amt(Vec::new(), 100, 4096);
        amt.respond = Box::new(|m, inbox| match m {
            Message::ProtocolVersion { .. } => {
                inbox.push_back(version());
                inbox.push_back(
                    Message::GlobalRequest {
                        name: "tcpip-forward".into(),
                        want_reply: true,
                        forward: Some(("".into(), 16993)),
                    }
                    .encode(),
                );
            }
            Message::ChannelOpen { sender, .. } => inbox.push_back(
                Message::ChannelOpenFailure {
                    recipient: *sender,
                    reason: 4,
                }
                .encode(),
            ),
            _ => {}
        });
        let mut s = Session::new(amt);
        s.timeout = Duration::from_millis(1);
        s.settle = Duration::from_millis(1);
        let err = s.exchange(16992, b"x", |_| false).unwrap_err();
        assert!(err.to_string().contains("TLS-only on 16993"), "{err}");
        let err = s.exchange(16993, b"x", |_| false).unwrap_err();
        assert!(
            matches!(err, ApfError::OpenFailed { reason: 4, .. }),
            "{err}"
        );
    }
}

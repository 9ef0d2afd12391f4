//! The LME client: one APF session per MEI connection, tunnelling the host's
//! TCP connections to AMT's local ports.
//!
//! Handshake, in lock step (the ME sends its next message only after the
//! host's answer to the previous one):
//! host PROTOCOL_VERSION → ME PROTOCOL_VERSION (trigger 254, system UUID) and
//! SERVICE_REQUEST "pfwd@amt.intel.com" → host SERVICE_ACCEPT → ME
//! GLOBAL_REQUEST tcpip-forward 16992 (16993 TLS) → host REQUEST_SUCCESS →
//! ME GLOBAL_REQUEST tcpip-forward 623 (664) → host REQUEST_SUCCESS → ME
//! KEEPALIVE_REQUEST(cookie). Then the host opens "forwarded-tcpip" channels
//! to the web port and speaks HTTP in CHANNEL_DATA, within the windows.
//!
//! Any malformed or out-of-place frame ends the session: the ME sends
//! DISCONNECT (protocol error), logs the offset and field, and disconnects
//! the MEI client.

use super::apf::{self, encode, Apf};
use super::http;
use super::server::{self, Via};
use super::{lock, OnChannelClose, SharedAmt};
use log::{info, warn};
use std::collections::{BTreeMap, VecDeque};

/// AMT has about 8 forwarded-tcpip slots.
pub const MAX_CHANNELS: usize = 8;
/// APF CHANNEL_DATA header: type, recipient, length.
const DATA_HEADER: usize = 9;
/// LME trigger reason in the ME's PROTOCOL_VERSION.
pub const TRIGGER_LME: u32 = 254;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the host's PROTOCOL_VERSION.
    Start,
    AwaitServiceAccept,
    /// Waiting for the answer to the first (0) or second (1) tcpip-forward.
    AwaitForward(u8),
    Ready,
}

#[derive(Debug, Default)]
struct Channel {
    /// The host's channel number (recipient of what the ME sends).
    host_id: u32,
    /// Bytes the ME may still send to the host.
    tx_window: u32,
    /// Bytes the host may still send to the ME.
    rx_left: u32,
    inbox: Vec<u8>,
    outbox: VecDeque<u8>,
    close_after_flush: bool,
    closed_by_me: bool,
}

/// What one host frame produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LmeOut {
    /// APF frames for the host, in order.
    pub frames: Vec<Vec<u8>>,
    /// The ME disconnects the MEI client once these frames are delivered.
    pub drop_client: bool,
    /// Notable events for the emulator's transcript.
    pub notes: Vec<String>,
}

/// One APF session.
#[derive(Debug)]
pub struct LmeSession {
    phase: Phase,
    channels: BTreeMap<u32, Channel>,
    next_id: u32,
    max_msg: usize,
    cookie: u32,
}

impl LmeSession {
    /// `max_msg`: the LME client's max message length (bounds every frame).
    pub fn new(max_msg: usize) -> LmeSession {
        LmeSession {
            phase: Phase::Start,
            channels: BTreeMap::new(),
            next_id: 1,
            max_msg,
            cookie: 0,
        }
    }

    fn restart(&mut self) {
        self.phase = Phase::Start;
        self.channels.clear();
    }

    fn protocol_error(&mut self, out: &mut LmeOut, what: String) {
        warn!("LME: protocol error: {what}; sending DISCONNECT");
        out.notes.push(format!("protocol error: {what}"));
        out.frames
            .push(encode::disconnect(apf::REASON_PROTOCOL_ERROR));
        out.drop_client = true;
        self.restart();
    }

    /// Handles one host frame.
    pub fn handle(&mut self, frame: &[u8], amt: &SharedAmt) -> LmeOut {
        let mut out = LmeOut::default();
        let msg = match Apf::parse(frame, self.max_msg.saturating_sub(DATA_HEADER)) {
            Ok(m) => m,
            Err(e) => {
                self.protocol_error(&mut out, e.to_string());
                return out;
            }
        };
        info!("LME: <- {} ({:?})", msg.name(), self.phase);
        match (self.phase, msg) {
            (_, Apf::Disconnect { reason }) => {
                info!("LME: host disconnected (reason {reason})");
                out.notes.push(format!("host DISCONNECT {reason}"));
                self.restart();
            }
            (_, Apf::KeepaliveRequest { cookie }) if self.phase != Phase::Start => {
                out.frames.push(encode::keepalive_reply(cookie));
            }
            (_, Apf::KeepaliveReply { cookie }) if self.phase != Phase::Start => {
                if cookie != self.cookie {
                    warn!("LME: KEEPALIVE_REPLY cookie {cookie}, sent {}", self.cookie);
                    out.notes
                        .push(format!("keepalive cookie mismatch {cookie}"));
                }
            }
            (_, Apf::KeepaliveOptionsReply { .. }) if self.phase != Phase::Start => {}
            (
                Phase::AwaitServiceAccept | Phase::AwaitForward(_),
                Apf::ProtocolVersion { major: 1, .. },
            ) => {
                // the host echoing our version (rpc-go does): nothing to answer
            }
            (_, Apf::ProtocolVersion { major, minor, .. }) => {
                if major != 1 {
                    warn!("LME: host protocol version {major}.{minor}");
                    out.notes
                        .push(format!("protocol version {major}.{minor} refused"));
                    out.frames.push(encode::disconnect(
                        apf::REASON_PROTOCOL_VERSION_NOT_SUPPORTED,
                    ));
                    out.drop_client = true;
                    self.restart();
                    return out;
                }
                if self.phase != Phase::Start {
                    out.notes.push("handshake restarted".into());
                }
                self.restart();
                let uuid = lock(amt).config.uuid_le;
                out.frames
                    .push(encode::protocol_version(1, 0, TRIGGER_LME, &uuid));
                out.frames.push(encode::service_request(apf::SERVICE_PFWD));
                self.phase = Phase::AwaitServiceAccept;
            }
            (Phase::AwaitServiceAccept, Apf::ServiceAccept { name })
                if name == apf::SERVICE_PFWD =>
            {
                let port = lock(amt).config.ports().0;
                out.frames.push(encode::global_request(
                    apf::TCPIP_FORWARD,
                    true,
                    "::1",
                    port,
                ));
                self.phase = Phase::AwaitForward(0);
            }
            (Phase::AwaitForward(i), Apf::RequestSuccess { .. } | Apf::RequestFailure) => {
                if i == 0 {
                    let port = lock(amt).config.ports().1;
                    out.frames.push(encode::global_request(
                        apf::TCPIP_FORWARD,
                        true,
                        "::1",
                        port,
                    ));
                    self.phase = Phase::AwaitForward(1);
                } else {
                    self.phase = Phase::Ready;
                    self.cookie = u32::from_be_bytes(
                        super::random_bytes(4).try_into().unwrap_or([0, 0, 0, 1]),
                    );
                    out.frames.push(encode::keepalive_request(self.cookie));
                    out.notes.push("handshake done".into());
                }
            }
            (
                Phase::Ready,
                Apf::ChannelOpen {
                    kind,
                    sender,
                    window,
                    connected_port,
                    ..
                },
            ) => self.open(&mut out, amt, &kind, sender, window, connected_port),
            (Phase::Ready, Apf::ChannelData { recipient, data }) => {
                self.data(&mut out, amt, recipient, &data)
            }
            (Phase::Ready, Apf::WindowAdjust { recipient, bytes }) => {
                let Some(ch) = self.channels.get_mut(&recipient) else {
                    self.protocol_error(
                        &mut out,
                        format!("WINDOW_ADJUST for unknown channel {recipient}"),
                    );
                    return out;
                };
                let Some(w) = ch.tx_window.checked_add(bytes) else {
                    self.protocol_error(
                        &mut out,
                        format!("WINDOW_ADJUST overflows channel {recipient}'s window"),
                    );
                    return out;
                };
                ch.tx_window = w;
                flush(ch, self.max_msg, &mut out);
            }
            (Phase::Ready, Apf::ChannelClose { recipient }) => {
                let Some(ch) = self.channels.remove(&recipient) else {
                    warn!("LME: CHANNEL_CLOSE for unknown channel {recipient} ignored");
                    out.notes
                        .push(format!("close of unknown channel {recipient}"));
                    return out;
                };
                if !ch.closed_by_me {
                    out.frames.push(encode::channel_close(ch.host_id));
                }
                out.notes.push(format!("channel {recipient} closed"));
                let policy = lock(amt).config.on_channel_close;
                match policy {
                    OnChannelClose::Keep => {}
                    OnChannelClose::Reset => self.restart(),
                    OnChannelClose::Disconnect => {
                        self.restart();
                        out.drop_client = true;
                    }
                }
            }
            (Phase::Ready, Apf::GlobalRequest { name, .. }) => {
                info!("LME: host GLOBAL_REQUEST {name:?} refused");
                out.frames.push(encode::request_failure());
            }
            (phase, m) => {
                self.protocol_error(
                    &mut out,
                    format!("{} not expected in phase {phase:?}", m.name()),
                );
            }
        }
        out
    }

    fn open(
        &mut self,
        out: &mut LmeOut,
        amt: &SharedAmt,
        kind: &str,
        sender: u32,
        window: u32,
        port: u32,
    ) {
        let (web, tls, operational, rx) = {
            let m = lock(amt);
            (
                m.config.ports().0,
                m.config.tls_enforced,
                m.state.operational,
                m.config.window,
            )
        };
        let reason = if kind != apf::FORWARDED_TCPIP && kind != "direct-tcpip" {
            Some((
                apf::OPEN_UNKNOWN_CHANNEL_TYPE,
                format!("channel type {kind:?}"),
            ))
        } else if port != web {
            Some((
                apf::OPEN_CONNECT_FAILED,
                format!("port {port} is not served (web port {web})"),
            ))
        } else if tls {
            Some((
                apf::OPEN_CONNECT_FAILED,
                "TLS over APF is not emulated".to_string(),
            ))
        } else if !operational {
            Some((
                apf::OPEN_CONNECT_FAILED,
                "AMT is disabled (operational state)".to_string(),
            ))
        } else if self.channels.len() >= MAX_CHANNELS {
            Some((
                apf::OPEN_RESOURCE_SHORTAGE,
                format!("{MAX_CHANNELS} channels open"),
            ))
        } else {
            None
        };
        if let Some((code, why)) = reason {
            warn!("LME: CHANNEL_OPEN from host channel {sender} refused: {why}");
            out.notes.push(format!("open refused: {why}"));
            out.frames.push(encode::channel_open_failure(sender, code));
            return;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.channels.insert(
            id,
            Channel {
                host_id: sender,
                tx_window: window,
                rx_left: rx,
                ..Channel::default()
            },
        );
        out.notes.push(format!("channel {id} open to port {port}"));
        out.frames
            .push(encode::channel_open_confirmation(sender, id, rx));
    }

    fn data(&mut self, out: &mut LmeOut, amt: &SharedAmt, recipient: u32, data: &[u8]) {
        let max_msg = self.max_msg;
        let Some(ch) = self.channels.get_mut(&recipient) else {
            self.protocol_error(out, format!("CHANNEL_DATA for unknown channel {recipient}"));
            return;
        };
        if ch.closed_by_me {
            info!("LME: data on channel {recipient} after the ME closed it, dropped");
            return;
        }
        let n = data.len() as u32;
        if n > ch.rx_left {
            let left = ch.rx_left;
            self.protocol_error(
                out,
                format!("CHANNEL_DATA of {n} bytes on channel {recipient} exceeds the window ({left} left)"),
            );
            return;
        }
        ch.rx_left -= n;
        ch.inbox.extend_from_slice(data);
        loop {
            match http::parse(&ch.inbox) {
                Ok(None) => break,
                Ok(Some((req, used))) => {
                    ch.inbox.drain(..used);
                    let reply = {
                        let mut m = lock(amt);
                        server::serve(&mut m, &req, Via::Local)
                    };
                    ch.outbox.extend(reply.bytes);
                    if reply.close || req.wants_close() {
                        ch.close_after_flush = true;
                        break;
                    }
                }
                Err(e) => {
                    warn!("LME: channel {recipient}: {e}");
                    out.notes.push(format!("bad HTTP: {e}"));
                    ch.inbox.clear();
                    let version = lock(amt).config.version.clone();
                    ch.outbox
                        .extend(http::response(e.status, &version, &[], b"", false));
                    ch.close_after_flush = true;
                    break;
                }
            }
        }
        // the ME consumed what it got: give the window back
        ch.rx_left += n;
        if n > 0 {
            out.frames.push(encode::window_adjust(ch.host_id, n));
        }
        flush(ch, max_msg, out);
    }
}

/// Sends what fits in the host's window, then the ME's close if one is due.
fn flush(ch: &mut Channel, max_msg: usize, out: &mut LmeOut) {
    let per_frame = max_msg.saturating_sub(DATA_HEADER).max(1);
    while !ch.outbox.is_empty() && ch.tx_window > 0 {
        let n = ch.outbox.len().min(ch.tx_window as usize).min(per_frame);
        let chunk: Vec<u8> = ch.outbox.drain(..n).collect();
        ch.tx_window -= n as u32;
        out.frames.push(encode::channel_data(ch.host_id, &chunk));
    }
    if ch.outbox.is_empty() && ch.close_after_flush && !ch.closed_by_me {
        ch.closed_by_me = true;
        out.frames.push(encode::channel_close(ch.host_id));
    }
}

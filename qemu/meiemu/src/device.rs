//! The emulated ME as the host sees it through BAR0: the link state machine
//! (reset, ready), both circular buffers, the interrupt line, the HBM bus
//! protocol, client connections with flow control and fragmentation, and the
//! scenario's faults. Transport-free: [`crate::vfio`] forwards QEMU's register
//! accesses here, and unit tests drive it directly as the driver would.

use crate::amt::lme::LmeSession;
use crate::amt::{AmtModel, SharedAmt};
use crate::clients::{clients_for, ClientKind, MeClient};
use crate::hbm::{self, reply, HostMsg, MsgHeader};
use crate::regs::*;
use crate::scenario::{FaultAction, Resolved};
use log::{debug, info, warn};
use std::collections::{BTreeMap, VecDeque};

/// Something the emulator saw or did; tests read the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The host reset the link (H_RST).
    LinkReset,
    /// A bus message from the host.
    Hbm(HostMsg),
    /// A complete client request.
    Request { client: ClientKind, bytes: Vec<u8> },
    /// A fault from the scenario was applied to a request.
    Fault {
        client: ClientKind,
        action: FaultAction,
    },
    /// The ME reset itself (fault injection).
    MeReset,
    /// The host broke the protocol; the text says how.
    ProtocolError(String),
    /// Something notable in an LME (APF) session.
    Lme(String),
    /// The ME disconnected a client connection itself (HBM disconnect request).
    MeDisconnect { me_addr: u8, host_addr: u8 },
}

/// One open connection between a host client and an ME client.
#[derive(Debug, Default)]
struct Conn {
    /// Read credits the host granted (it posted a read): we may send that many messages.
    host_credits: u32,
    /// Replies waiting for a host credit.
    pending: VecDeque<Vec<u8>>,
    /// Reassembly of a fragmented host -> ME message.
    rx: Vec<u8>,
    /// The APF session, on LME connections.
    lme: Option<LmeSession>,
    /// The ME disconnects this connection once `pending` is delivered and
    /// the host asks for more (reads or writes again).
    drop_after_flush: bool,
}

/// Counters of one scenario fault.
#[derive(Debug, Default, Clone)]
struct FaultState {
    seen: u32,
    applied: u32,
}

/// The emulated ME.
pub struct MeDevice {
    scenario: Resolved,
    amt: SharedAmt,
    clients: Vec<MeClient>,
    // host side of H_CSR
    h_ie: bool,
    h_is: bool,
    h_rdy: bool,
    h_rst: bool,
    h_wp: u8,
    h_rp: u8,
    host_fifo: Vec<u32>,
    // ME side
    me_rdy: bool,
    me_wp: u8,
    me_rp: u8,
    me_fifo: VecDeque<u32>,
    /// Fragments (header + payload dwords) waiting for room in the ME buffer.
    out_q: VecDeque<Vec<u32>>,
    conns: BTreeMap<(u8, u8), Conn>,
    faults: Vec<FaultState>,
    events: Vec<Event>,
}

impl MeDevice {
    /// A device with its own in-memory AMT model.
    pub fn new(scenario: Resolved) -> MeDevice {
        let amt = AmtModel::shared(&scenario);
        MeDevice::with_amt(scenario, amt)
    }

    /// A device sharing `amt` (state file, remote port) with others.
    pub fn with_amt(scenario: Resolved, amt: SharedAmt) -> MeDevice {
        let clients = clients_for(&scenario);
        let faults = vec![FaultState::default(); scenario.scenario.faults.len()];
        MeDevice {
            scenario,
            amt,
            clients,
            h_ie: false,
            h_is: false,
            h_rdy: false,
            h_rst: false,
            h_wp: 0,
            h_rp: 0,
            host_fifo: Vec::new(),
            me_rdy: true,
            me_wp: 0,
            me_rp: 0,
            me_fifo: VecDeque::new(),
            out_q: VecDeque::new(),
            conns: BTreeMap::new(),
            faults,
            events: Vec::new(),
        }
    }

    pub fn scenario(&self) -> &Resolved {
        &self.scenario
    }

    /// The AMT model behind AMTHI and the LME.
    pub fn amt(&self) -> &SharedAmt {
        &self.amt
    }

    /// What happened so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The interrupt line: asserted while IS and IE are both set (level-triggered).
    pub fn irq_level(&self) -> bool {
        self.h_is && self.h_ie
    }

    /// A PCI function reset (vfio-user DEVICE_RESET): back to power-on state.
    pub fn reset(&mut self) {
        info!("device reset");
        self.drop_link_state();
        self.h_ie = false;
        self.h_is = false;
        self.h_rdy = false;
        self.h_rst = false;
        self.me_rdy = true;
    }

    /// A 32-bit read of BAR0.
    pub fn bar0_read(&mut self, offset: u64) -> u32 {
        match offset {
            H_CSR => self.h_csr(),
            ME_CSR_HA => self.me_csr(),
            ME_CB_RW => match self.me_fifo.pop_front() {
                Some(d) => {
                    self.me_rp = self.me_rp.wrapping_add(1);
                    d
                }
                None => 0,
            },
            // H_HPG_CSR, ME_TRC, H_D0I3C and everything else
            _ => 0,
        }
    }

    /// A 32-bit write of BAR0.
    pub fn bar0_write(&mut self, offset: u64, value: u32) {
        match offset {
            H_CB_WW => {
                if self.host_fifo.len() >= DEPTH {
                    self.protocol_error("host wrote past the end of the host buffer".into());
                } else {
                    self.host_fifo.push(value);
                    self.h_wp = self.h_wp.wrapping_add(1);
                }
            }
            H_CSR => self.write_h_csr(value),
            _ => debug!("BAR0 write {offset:#x} <- {value:#x} ignored"),
        }
    }

    fn h_csr(&self) -> u32 {
        let mut f = 0;
        if self.h_ie {
            f |= CSR_IE;
        }
        if self.h_is {
            f |= CSR_IS;
        }
        if self.h_rdy {
            f |= CSR_RDY;
        }
        if self.h_rst {
            f |= CSR_RST;
        }
        csr(f, self.h_rp, self.h_wp)
    }

    fn me_csr(&self) -> u32 {
        let f = if self.me_rdy { CSR_RDY | CSR_IE } else { 0 };
        csr(f, self.me_rp, self.me_wp)
    }

    fn protocol_error(&mut self, what: String) {
        warn!("protocol error: {what}");
        self.events.push(Event::ProtocolError(what));
    }

    fn drop_link_state(&mut self) {
        self.host_fifo.clear();
        self.h_wp = 0;
        self.h_rp = 0;
        self.me_fifo.clear();
        self.me_wp = 0;
        self.me_rp = 0;
        self.out_q.clear();
        self.conns.clear();
    }

    fn write_h_csr(&mut self, v: u32) {
        if v & (CSR_IS | H_D0I3C_IS) != 0 {
            self.h_is = false; // write 1 to clear
        }
        self.h_ie = v & CSR_IE != 0;
        let was_rst = self.h_rst;
        self.h_rst = v & CSR_RST != 0;
        self.h_rdy = v & CSR_RDY != 0;
        if self.h_rst && !was_rst {
            // Link bring-up step 1: the ME drops everything, reports ready while
            // the host still holds reset, and interrupts.
            info!("link: host asserted H_RST; ME resets and reports ME_RDY");
            self.events.push(Event::LinkReset);
            self.drop_link_state();
            self.h_rdy = false;
            self.me_rdy = true;
            self.h_is = true;
        } else if v & CSR_IG != 0 && !self.h_rst {
            // Doorbell: the host wrote messages, or read ours and freed room.
            let mut notify = false;
            if !self.host_fifo.is_empty() {
                let fifo = std::mem::take(&mut self.host_fifo);
                self.h_rp = self.h_wp; // consumed everything
                self.consume_host(&fifo);
                notify = true;
            }
            if self.refill() {
                notify = true;
            }
            if notify {
                self.h_is = true;
            }
        }
    }

    /// Moves queued fragments into the ME buffer while they fit.
    fn refill(&mut self) -> bool {
        let mut pushed = false;
        while let Some(frag) = self.out_q.front() {
            if DEPTH - self.me_fifo.len() < frag.len() {
                break;
            }
            let Some(frag) = self.out_q.pop_front() else {
                break;
            };
            for d in frag {
                self.me_fifo.push_back(d);
                self.me_wp = self.me_wp.wrapping_add(1);
            }
            pushed = true;
        }
        pushed
    }

    /// Queues a message for the host, split into buffer-sized fragments with
    /// "message complete" on the last.
    fn send(&mut self, me_addr: u8, host_addr: u8, payload: &[u8]) {
        let chunks: Vec<&[u8]> = if payload.is_empty() {
            vec![&[]]
        } else {
            payload.chunks(MAX_FRAGMENT).collect()
        };
        let last = chunks.len() - 1;
        for (i, c) in chunks.into_iter().enumerate() {
            let hdr = MsgHeader {
                me_addr,
                host_addr,
                length: c.len() as u16,
                complete: i == last,
                internal: false,
            };
            let mut frag = vec![hdr.encode()];
            for w in c.chunks(4) {
                let mut b = [0u8; 4];
                b[..w.len()].copy_from_slice(w);
                frag.push(u32::from_le_bytes(b));
            }
            self.out_q.push_back(frag);
        }
    }

    /// Splits what the host wrote into messages and dispatches them.
    fn consume_host(&mut self, fifo: &[u32]) {
        let mut i = 0;
        while let Some(&raw) = fifo.get(i) {
            let hdr = match MsgHeader::parse(raw) {
                Ok(h) => h,
                Err(e) => {
                    self.protocol_error(format!("host buffer dword {i}: {e}"));
                    return;
                }
            };
            let dwords = usize::from(hdr.length).div_ceil(4);
            let Some(body) = fifo.get(i + 1..i + 1 + dwords) else {
                self.protocol_error(format!(
                    "host buffer dword {i}: header says {} bytes, only {} dwords follow",
                    hdr.length,
                    fifo.len() - i - 1
                ));
                return;
            };
            let mut bytes: Vec<u8> = body.iter().flat_map(|d| d.to_le_bytes()).collect();
            bytes.truncate(usize::from(hdr.length));
            i += 1 + dwords;
            if hdr.is_bus() {
                self.bus_message(&bytes);
            } else {
                self.client_data(hdr, &bytes);
            }
        }
    }

    fn bus_message(&mut self, m: &[u8]) {
        let msg = match HostMsg::parse(m) {
            Ok(msg) => msg,
            Err(e) => {
                self.protocol_error(format!("HBM: {e}"));
                return;
            }
        };
        info!("HBM: {msg:?}");
        self.events.push(Event::Hbm(msg.clone()));
        match msg {
            // Answer HBM 2.0 and decline the host's newer version: the driver
            // then runs 2.0 (no DMA ring, no capabilities, no vtags).
            HostMsg::Start { .. } => self.send(0, 0, &reply::start(2, 0, false)),
            HostMsg::Stop => self.send(0, 0, &reply::stop()),
            HostMsg::Enum { .. } => {
                let addrs: Vec<u8> = self.clients.iter().map(|c| c.addr).collect();
                self.send(0, 0, &reply::enumeration(&addrs));
            }
            HostMsg::ClientProperties { me_addr } => {
                let props = self
                    .clients
                    .iter()
                    .find(|c| c.addr == me_addr)
                    .map(|c| c.props.clone());
                self.send(0, 0, &reply::properties(me_addr, props.as_ref()));
            }
            HostMsg::Connect { me_addr, host_addr } => {
                let known = self.clients.iter().any(|c| c.addr == me_addr);
                let status = if !known {
                    hbm::CONNECT_NOT_FOUND
                } else if self.conns.contains_key(&(me_addr, host_addr)) {
                    hbm::CONNECT_ALREADY_STARTED
                } else {
                    hbm::CONNECT_SUCCESS
                };
                self.send(0, 0, &reply::connect(me_addr, host_addr, status));
                if status == hbm::CONNECT_SUCCESS {
                    let lme = self
                        .clients
                        .iter()
                        .find(|c| c.addr == me_addr && c.kind == ClientKind::Lme)
                        .map(|c| LmeSession::new(c.props.max_msg_length as usize));
                    self.conns.insert(
                        (me_addr, host_addr),
                        Conn {
                            lme,
                            ..Conn::default()
                        },
                    );
                    // one send credit: the host may now write one message
                    self.send(0, 0, &reply::flow_control(me_addr, host_addr));
                }
            }
            HostMsg::Disconnect { me_addr, host_addr } => {
                self.conns.remove(&(me_addr, host_addr));
                self.send(0, 0, &reply::disconnect(me_addr, host_addr));
            }
            HostMsg::FlowControl { me_addr, host_addr } => {
                match self.conns.get_mut(&(me_addr, host_addr)) {
                    Some(c) => c.host_credits = c.host_credits.saturating_add(1),
                    None => debug!("flow control for closed connection {me_addr}/{host_addr}"),
                }
                self.flush(me_addr, host_addr);
                let due = self
                    .conns
                    .get(&(me_addr, host_addr))
                    .is_some_and(|c| c.drop_after_flush && c.pending.is_empty());
                if due {
                    self.me_disconnect(me_addr, host_addr);
                }
            }
            HostMsg::MeStop | HostMsg::DisconnectRes { .. } | HostMsg::Notify { .. } => {}
        }
    }

    /// Sends pending replies while the host has credits.
    fn flush(&mut self, me_addr: u8, host_addr: u8) {
        loop {
            let msg = match self.conns.get_mut(&(me_addr, host_addr)) {
                Some(c) if c.host_credits > 0 && !c.pending.is_empty() => {
                    c.host_credits -= 1;
                    c.pending.pop_front()
                }
                _ => None,
            };
            let Some(msg) = msg else { return };
            self.send(me_addr, host_addr, &msg);
        }
    }

    fn client_data(&mut self, hdr: MsgHeader, bytes: &[u8]) {
        let key = (hdr.me_addr, hdr.host_addr);
        let Some(client) = self.clients.iter().find(|c| c.addr == hdr.me_addr).cloned() else {
            self.protocol_error(format!("message for unknown ME client {}", hdr.me_addr));
            return;
        };
        let Some(conn) = self.conns.get_mut(&key) else {
            self.protocol_error(format!(
                "message for unconnected pair me {} host {}",
                hdr.me_addr, hdr.host_addr
            ));
            return;
        };
        if conn.rx.len() + bytes.len() > client.props.max_msg_length as usize {
            conn.rx.clear();
            self.protocol_error(format!(
                "message to ME client {} exceeds its max length {}",
                hdr.me_addr, client.props.max_msg_length
            ));
            return;
        }
        conn.rx.extend_from_slice(bytes);
        if !hdr.complete {
            return;
        }
        let req = std::mem::take(&mut conn.rx);
        if conn.drop_after_flush {
            // the ME already decided to drop this connection
            info!(
                "ME drops connection {}/{}: message discarded",
                hdr.me_addr, hdr.host_addr
            );
            self.me_disconnect(hdr.me_addr, hdr.host_addr);
            return;
        }
        self.events.push(Event::Request {
            client: client.kind,
            bytes: req.clone(),
        });
        if client.kind == ClientKind::Lme {
            self.lme_data(key, &req);
            return;
        }
        let fault = self.fault_for(client.kind);
        if let Some(f) = &fault {
            info!("fault: {:?} on {:?}", f.0, client.kind);
            self.events.push(Event::Fault {
                client: client.kind,
                action: f.0,
            });
        }
        if let Some((FaultAction::Reset, _)) = fault {
            self.me_reset();
            return;
        }
        // The ME consumed the message: the host may send the next one.
        self.send(0, 0, &reply::flow_control(hdr.me_addr, hdr.host_addr));
        let answer = client.kind.answer(&req, &self.scenario, &self.amt);
        let answer = match (answer, fault) {
            (_, Some((FaultAction::Timeout, _))) => None,
            (Some(r), Some((FaultAction::Truncate, _))) => Some(r.into_iter().take(2).collect()),
            (Some(r), Some((FaultAction::BadHeader, _))) => Some(client.kind.bad_header(r)),
            (Some(r), Some((FaultAction::Status, status))) => {
                Some(client.kind.with_status(r, status))
            }
            (a, _) => a,
        };
        if let Some(a) = answer {
            if let Some(c) = self.conns.get_mut(&key) {
                c.pending.push_back(a);
            }
            self.flush(hdr.me_addr, hdr.host_addr);
        }
    }

    /// One APF frame on an LME connection: the session answers with any
    /// number of frames (sent as the host grants read credits).
    fn lme_data(&mut self, key: (u8, u8), req: &[u8]) {
        self.send(0, 0, &reply::flow_control(key.0, key.1));
        let amt = self.amt.clone();
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let Some(session) = conn.lme.as_mut() else {
            return;
        };
        let out = session.handle(req, &amt);
        conn.pending.extend(out.frames);
        if out.drop_client {
            conn.drop_after_flush = true;
        }
        for n in out.notes {
            self.events.push(Event::Lme(n));
        }
        self.flush(key.0, key.1);
    }

    /// The ME ends a connection (HBM CLIENT_DISCONNECT_REQ from the ME side);
    /// the driver answers and its client sees ENODEV.
    fn me_disconnect(&mut self, me_addr: u8, host_addr: u8) {
        info!("ME disconnects client connection {me_addr}/{host_addr}");
        self.conns.remove(&(me_addr, host_addr));
        self.events.push(Event::MeDisconnect { me_addr, host_addr });
        self.send(0, 0, &reply::me_disconnect(me_addr, host_addr));
    }

    /// The first scenario fault that applies to this request of `kind`, if
    /// any. Every fault of the client counts every request (for `after`),
    /// whichever fault is applied.
    fn fault_for(&mut self, kind: ClientKind) -> Option<(FaultAction, u32)> {
        let faults = &self.scenario.scenario.faults;
        let mut chosen = None;
        for (f, st) in faults.iter().zip(self.faults.iter_mut()) {
            if f.client != kind.fault_client() {
                continue;
            }
            st.seen += 1;
            let due = st.seen > f.after && f.times.map_or(true, |t| st.applied < t);
            if due && chosen.is_none() {
                st.applied += 1;
                chosen = Some((f.action, f.status));
            }
        }
        chosen
    }

    /// The ME resets itself: it drops ME_RDY and all connections and interrupts;
    /// the driver sees "FW not ready" and resets the link.
    fn me_reset(&mut self) {
        warn!("ME reset (fault injection)");
        self.events.push(Event::MeReset);
        self.drop_link_state();
        self.me_rdy = false;
        self.h_is = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::amthi;

    /// Plays the mei_me driver's side of the registers.
    type Host = crate::hostsim::HostSim;

    #[test]
    fn handshake_enumerates_the_scenario_clients() {
        let mut h = Host::new("");
        assert_eq!(h.bus(&[0x01, 0, 2, 2]), vec![vec![0x81, 0, 0, 2]]);
        let r = h.bus(&[0x04, 3]);
        assert_eq!(r[0][4], 0x80); // addr 7
        assert_eq!(r[0][5], 0x07); // addrs 8, 9 (AMTHI), 10 (LME)
        let r = h.bus(&[0x05, 9]);
        assert_eq!(&r[0][..4], &[0x85, 9, 0, 0]);
        assert_eq!(r[0][4], 0x28); // AMTHI uuid_le starts 28 00 f8 12
        let r = h.bus(&[0x05, 10]);
        assert_eq!(&r[0][4..8], &[0xDB, 0xA4, 0x33, 0x67]); // LME 6733a4db-...
        assert_eq!(&r[0][24..], &4096u32.to_le_bytes());
        let r = h.bus(&[0x05, 12]);
        assert_eq!(r[0][2], 1); // not found
    }

    #[test]
    fn mkhi_round_trip_waits_for_the_host_credit() {
        let mut h = Host::new("[firmware]\ncode = \"15.0.41.2158\"");
        h.connect(7, 1);
        // request without a read credit: only the flow-control credit comes back
        h.write(7, 1, &[0xFF, 0x02, 0, 0], true);
        let r = h.read_all();
        assert_eq!(r, vec![(0, 0, vec![0x08, 7, 1, 0, 0, 0, 0, 0])]);
        // now the host posts a read
        h.write(0, 0, &[0x08, 7, 1, 0, 0, 0, 0, 0], true);
        let r = h.read_all();
        assert_eq!(r.len(), 1);
        let (me, host, reply) = &r[0];
        assert_eq!((*me, *host), (7, 1));
        assert_eq!(&reply[..4], &[0xFF, 0x82, 0, 0]);
        assert_eq!(reply[6], 15);
    }

    #[test]
    fn long_messages_are_fragmented_both_ways() {
        let mut h = Host::new("");
        h.connect(9, 2);
        // 3000-byte body: the model rejects the length mismatch, but the whole
        // message must be reassembled first, and a long reply fragmented.
        let req = amthi::request(amthi::GET_CODE_VERSIONS, &[]);
        let reply = h.request(9, 2, &req).unwrap();
        assert_eq!(reply.len(), 16 + 65 + 4 + 3 * 44); // > one fragment
        let big = amthi::request(0x0400_7777, &vec![0x5A; 1500]);
        let reply = h.request(9, 2, &big).unwrap();
        assert_eq!(&reply[12..16], &amthi::STATUS_INTERNAL_ERROR.to_le_bytes());
        let seen = h
            .dev
            .events()
            .iter()
            .filter_map(|e| match e {
                Event::Request { bytes, .. } => Some(bytes.len()),
                _ => None,
            })
            .collect::<Vec<_>>();
        assert_eq!(seen, vec![12, 1512]);
    }

    #[test]
    fn unknown_client_connect_is_refused() {
        let mut h = Host::new("[amt]\npresent = false");
        let r = h.bus(&[0x06, 9, 1, 0]);
        assert_eq!(r, vec![vec![0x86, 9, 1, 1]]);
    }

    #[test]
    fn faults_apply_after_and_times() {
        let mut h =
            Host::new("[[faults]]\nclient = \"mkhi\"\naction = \"timeout\"\nafter = 1\ntimes = 1");
        h.connect(7, 1);
        let req = [0xFF, 0x02, 0, 0];
        assert!(h.request(7, 1, &req).is_some()); // first passes
        assert!(h.request(7, 1, &req).is_none()); // second swallowed
        let r = h.request(7, 1, &req); // third: the credit left over from the second
        assert!(r.is_some());
    }

    #[test]
    fn malformed_reply_faults() {
        let mut h = Host::new(
            "[[faults]]\nclient = \"mkhi\"\naction = \"truncate\"\ntimes = 1\n\
             [[faults]]\nclient = \"mkhi\"\naction = \"bad_header\"\ntimes = 1\n\
             [[faults]]\nclient = \"amthi\"\naction = \"status\"\nstatus = 2",
        );
        h.connect(7, 1);
        let req = [0xFF, 0x02, 0, 0];
        assert_eq!(h.request(7, 1, &req).unwrap(), vec![0xFF, 0x82]);
        // the first fault is used up; the second now applies
        assert_eq!(h.request(7, 1, &req).unwrap()[1], 0x83);
        h.connect(9, 2);
        let r = h
            .request(9, 2, &amthi::request(amthi::GET_PROVISIONING_STATE, &[]))
            .unwrap();
        assert_eq!(&r[12..16], &2u32.to_le_bytes());
    }

    #[test]
    fn me_reset_fault_drops_ready_and_recovers_on_host_reset() {
        let mut h = Host::new("[[faults]]\nclient = \"mkhi\"\naction = \"reset\"");
        h.connect(7, 1);
        h.write(7, 1, &[0xFF, 0x02, 0, 0], true);
        assert_eq!(h.dev.bar0_read(ME_CSR_HA) & CSR_RDY, 0);
        assert!(h.dev.irq_level());
        assert!(h.dev.events().contains(&Event::MeReset));
        // the driver resets the link; the ME is ready again, connections gone
        h.dev.bar0_write(H_CSR, CSR_RST | CSR_IG | CSR_IS | CSR_IE);
        assert!(h.dev.bar0_read(ME_CSR_HA) & CSR_RDY != 0);
        h.dev.bar0_write(H_CSR, CSR_RDY | CSR_IE | CSR_IG);
        h.write(7, 1, &[0xFF, 0x02, 0, 0], true);
        assert!(matches!(
            h.dev.events().last(),
            Some(Event::ProtocolError(_))
        ));
    }

    #[test]
    fn hostile_host_buffers_do_not_panic() {
        let mut h = Host::new("");
        // header claiming 511 bytes with nothing after it
        h.dev.bar0_write(H_CB_WW, 0x81FF_0000);
        h.dev.bar0_write(H_CSR, CSR_IG | CSR_RDY | CSR_IE);
        // overfill the host buffer
        for _ in 0..DEPTH + 5 {
            h.dev.bar0_write(H_CB_WW, 0xFFFF_FFFF);
        }
        h.dev.bar0_write(H_CSR, CSR_IG | CSR_RDY | CSR_IE);
        let errors = h
            .dev
            .events()
            .iter()
            .filter(|e| matches!(e, Event::ProtocolError(_)))
            .count();
        assert!(errors >= 2, "{:?}", h.dev.events());
    }
}

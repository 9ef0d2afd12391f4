//! A small AMT client for the emulator's tests: the host side of APF over an
//! in-process MEI link ([`HostSim`]), an HTTP/1.1 response reader and a
//! Digest client. Written against the protocol, not against the server code.

#![allow(dead_code)]

use fortros_meiemu::amt::apf::{self, encode};
use fortros_meiemu::hostsim::HostSim;
use md5::{Digest, Md5};
use std::path::PathBuf;

pub const AMTHI: u8 = 9;
pub const LME: u8 = 10;

pub fn scenario_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../scenarios/{name}.toml"))
}

pub fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// What one exchange with a client connection brought back.
#[derive(Debug, Default)]
pub struct Got {
    pub msgs: Vec<Vec<u8>>,
    /// The ME sent HBM CLIENT_DISCONNECT_REQ for this connection.
    pub me_disconnected: bool,
}

/// Writes `msg` (if any) to (me, host), then grants read credits until the
/// ME has nothing more to say.
pub fn exchange(h: &mut HostSim, me: u8, host: u8, msg: Option<&[u8]>) -> Got {
    let mut got = Got::default();
    let absorb = |h: &mut HostSim, got: &mut Got| -> usize {
        let mut n = 0;
        for (m, hs, b) in h.read_all() {
            if (m, hs) == (me, host) {
                got.msgs.push(b);
                n += 1;
            } else if (m, hs) == (0, 0) && b == [0x07, me, host, 0] {
                got.me_disconnected = true;
            }
        }
        n
    };
    if let Some(msg) = msg {
        let chunks: Vec<&[u8]> = msg.chunks(500).collect();
        let last = chunks.len() - 1;
        for (i, c) in chunks.into_iter().enumerate() {
            h.write(me, host, c, i == last);
        }
        absorb(h, &mut got);
    }
    loop {
        h.write(0, 0, &[0x08, me, host, 0, 0, 0, 0, 0], true);
        if absorb(h, &mut got) == 0 {
            return got;
        }
    }
}

pub fn connect(h: &mut HostSim, me: u8, host: u8) {
    h.write(0, 0, &[0x06, me, host, 0], true);
    let r = h.read_all();
    assert!(
        r.iter().any(|(_, _, b)| b == &vec![0x86, me, host, 0]),
        "connect {me}/{host}: {r:?}"
    );
}

/// The APF handshake as a host (rpc-go style: echo the ME's version).
/// Returns the ME's web port from its first tcpip-forward.
pub fn handshake(h: &mut HostSim, host: u8) -> (u32, u32) {
    let got = exchange(
        h,
        LME,
        host,
        Some(&encode::protocol_version(1, 0, 9, &[0; 16])),
    );
    assert_eq!(got.msgs.len(), 2, "{:?}", got.msgs);
    assert_eq!(got.msgs[0].len(), 93);
    assert_eq!(got.msgs[0][0], apf::PROTOCOL_VERSION);
    assert_eq!(be32(&got.msgs[0], 1), 1, "major");
    assert_eq!(be32(&got.msgs[0], 9), 254, "trigger: LME");
    assert_eq!(got.msgs[1], encode::service_request("pfwd@amt.intel.com"));
    // echo the version: no answer expected
    let got = exchange(
        h,
        LME,
        host,
        Some(&encode::protocol_version(1, 0, 9, &[0; 16])),
    );
    assert!(got.msgs.is_empty(), "{:?}", got.msgs);
    let got = exchange(
        h,
        LME,
        host,
        Some(&encode::service_accept("pfwd@amt.intel.com")),
    );
    assert_eq!(got.msgs.len(), 1);
    let g1 = got.msgs[0].clone();
    assert_eq!(g1[0], apf::GLOBAL_REQUEST);
    let port1 = be32(&g1, g1.len() - 4);
    let got = exchange(h, LME, host, Some(&encode::request_success(Some(port1))));
    let g2 = got.msgs[0].clone();
    assert_eq!(g2[0], apf::GLOBAL_REQUEST);
    let port2 = be32(&g2, g2.len() - 4);
    let got = exchange(h, LME, host, Some(&encode::request_success(Some(port2))));
    assert_eq!(got.msgs.len(), 1);
    assert_eq!(got.msgs[0][0], apf::KEEPALIVE_REQUEST);
    let cookie = be32(&got.msgs[0], 1);
    let got = exchange(h, LME, host, Some(&encode::keepalive_reply(cookie)));
    assert!(got.msgs.is_empty());
    (port1, port2)
}

/// An HTTP response read off a channel.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, n: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a complete response from `b`, or None while incomplete.
pub fn parse_response(b: &[u8]) -> Option<Response> {
    let text = String::from_utf8_lossy(b);
    let head_end = text.find("\r\n\r\n")?;
    let mut lines = text[..head_end].split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    let rest = &text[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked");
    let body = if chunked {
        let mut body = String::new();
        let mut r = rest;
        loop {
            let eol = r.find("\r\n")?;
            let n = usize::from_str_radix(&r[..eol], 16).ok()?;
            if n == 0 {
                if r.len() < eol + 4 {
                    return None;
                }
                break;
            }
            let chunk = r.get(eol + 2..eol + 2 + n)?;
            body.push_str(chunk);
            r = r.get(eol + 4 + n..)?;
        }
        body
    } else {
        let n: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))?
            .1
            .parse()
            .ok()?;
        rest.get(..n)?.to_string()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

/// One HTTP exchange on a fresh channel; `window` is the window we grant.
/// Returns the response and whether the ME dropped the MEI connection after
/// the channel closed.
pub fn http_over_channel(
    h: &mut HostSim,
    host: u8,
    port: u32,
    request: &[u8],
    window: u32,
) -> (Response, bool) {
    let ours = 7;
    let got = exchange(
        h,
        LME,
        host,
        Some(&encode::channel_open(
            "forwarded-tcpip",
            ours,
            window,
            port,
            123,
        )),
    );
    assert_eq!(got.msgs.len(), 1, "{:?}", got.msgs);
    let c = &got.msgs[0];
    assert_eq!(c[0], apf::CHANNEL_OPEN_CONFIRMATION, "{c:?}");
    assert_eq!(be32(c, 1), ours);
    let theirs = be32(c, 5);
    let mut their_window = be32(c, 9);
    let mut our_window = window;
    let mut received = Vec::new();
    let mut pending = request.to_vec();
    let mut adjusts = 0u32;
    let mut sent_adjusts = 0;
    loop {
        let mut msg = None;
        if !pending.is_empty() && their_window > 0 {
            let n = pending.len().min(their_window as usize).min(4000);
            let chunk: Vec<u8> = pending.drain(..n).collect();
            their_window -= n as u32;
            msg = Some(encode::channel_data(theirs, &chunk));
        }
        let got = exchange(h, LME, host, msg.as_deref());
        for f in &got.msgs {
            match f[0] {
                apf::CHANNEL_WINDOW_ADJUST => {
                    assert_eq!(be32(f, 1), ours);
                    their_window += be32(f, 5);
                    adjusts += 1;
                }
                apf::CHANNEL_DATA => {
                    assert_eq!(be32(f, 1), ours);
                    let n = be32(f, 5) as usize;
                    assert!(n as u32 <= our_window, "the ME overran our window");
                    assert!(f.len() <= 4096, "frame above the LME max message");
                    our_window -= n as u32;
                    received.extend_from_slice(&f[9..9 + n]);
                }
                other => panic!("unexpected APF {other} on a channel: {f:?}"),
            }
        }
        if let Some(r) = parse_response(&received) {
            assert!(adjusts > 0, "the ME never returned window");
            let got = exchange(h, LME, host, Some(&encode::channel_close(theirs)));
            assert!(
                got.msgs.contains(&encode::channel_close(ours)),
                "ME answers CHANNEL_CLOSE: {:?}",
                got.msgs
            );
            return (r, got.me_disconnected);
        }
        if our_window == 0 || (pending.is_empty() && got.msgs.is_empty()) {
            // out of window: give the ME more
            assert!(sent_adjusts < 1000, "no progress");
            sent_adjusts += 1;
            exchange_adjust(h, host, theirs, window - our_window);
            our_window = window;
        }
    }
}

fn exchange_adjust(h: &mut HostSim, host: u8, theirs: u32, n: u32) {
    h.write(LME, host, &encode::window_adjust(theirs, n), true);
}

/// A Digest client for one user.
pub struct DigestClient {
    pub user: String,
    /// hex MD5(user:realm:password)
    pub ha1: String,
    pub realm: String,
    pub nonce: String,
    pub nc: u32,
}

/// `key="value"` from a WWW-Authenticate header.
pub fn param(header: &str, key: &str) -> Option<String> {
    let i = header.find(&format!("{key}=\""))? + key.len() + 2;
    let j = header[i..].find('"')? + i;
    Some(header[i..j].to_string())
}

impl DigestClient {
    pub fn from_challenge(user: &str, password: &str, www_authenticate: &str) -> DigestClient {
        let realm = param(www_authenticate, "realm").expect("realm");
        let nonce = param(www_authenticate, "nonce").expect("nonce");
        DigestClient {
            user: user.into(),
            ha1: md5_hex(&format!("{user}:{realm}:{password}")),
            realm,
            nonce,
            nc: 0,
        }
    }

    pub fn authorization(&mut self, method: &str, uri: &str) -> String {
        self.nc += 1;
        let nc = format!("{:08x}", self.nc);
        let cnonce = format!("c{}", self.nc);
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let resp = md5_hex(&format!(
            "{}:{}:{nc}:{cnonce}:auth:{ha2}",
            self.ha1, self.nonce
        ));
        format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", \
             response=\"{resp}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
            self.user, self.realm, self.nonce
        )
    }
}

/// A POST /wsman request; chunked like rpc-go, or with Content-Length.
pub fn post(body: &str, auth: Option<&str>, chunked: bool) -> Vec<u8> {
    let mut r = String::from("POST /wsman HTTP/1.1\r\nHost: ::1:16992\r\nContent-Type: application/soap+xml; charset=UTF-8\r\n");
    if let Some(a) = auth {
        r.push_str(&format!("Authorization: {a}\r\n"));
    }
    if chunked {
        r.push_str("Transfer-Encoding: chunked\r\n\r\n");
        r.push_str(&format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()));
    } else {
        r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    }
    r.into_bytes()
}

pub const AMT: &str = "http://intel.com/wbem/wscim/1/amt-schema/1/";
pub const IPS: &str = "http://intel.com/wbem/wscim/1/ips-schema/1/";
pub const CIM: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/";
pub const GET: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get";
pub const PUT: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Put";

/// A WS-MAN request envelope (our own prefixes).
pub fn wsman(action: &str, resource: &str, selectors: &[(&str, &str)], body: &str) -> String {
    let mut sel = String::new();
    if !selectors.is_empty() {
        sel.push_str("<w:SelectorSet>");
        for (k, v) in selectors {
            sel.push_str(&format!("<w:Selector Name=\"{k}\">{v}</w:Selector>"));
        }
        sel.push_str("</w:SelectorSet>");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Envelope xmlns=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\">\
         <Header><a:Action>{action}</a:Action><a:To>/wsman</a:To><w:ResourceURI>{resource}</w:ResourceURI>\
         <a:MessageID>uuid:test-1</a:MessageID><a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>\
         {sel}</Header><Body>{body}</Body></Envelope>"
    )
}

/// The text of the first `<prefix:name>` element in `xml`, whatever the prefix.
pub fn xml_value(xml: &str, name: &str) -> Option<String> {
    let mut at = 0;
    while let Some(i) = xml[at..].find(&format!(":{name}>")) {
        let start = at + i + name.len() + 2;
        // an opening tag: preceded by '<prefix'
        let open = xml[..at + i].rfind('<')?;
        if !xml[open..at + i].starts_with("</") {
            let end = xml[start..].find("</")? + start;
            return Some(xml[start..end].to_string());
        }
        at = start;
    }
    None
}

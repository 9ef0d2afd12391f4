//! One HTTP/1.1 POST to the org, over TCP or over TLS with the pinned
//! verifier of [`crate::enroll_tls`]: a fresh connection per request
//! (`Connection: close`), the answer read with a hard body limit by
//! `fortros_amt::http` (bounded and fuzzed).
//!
//! Why not an HTTP client crate: the org speaks a handful of binary POSTs,
//! and ureq pulled URL/IDNA/Unicode tables into a binary with a 3 MiB
//! budget (DESIGN.md); this is all the agent needs of it.

use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use fortros_amt::http::{read_response_limited, HttpError};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one read or write may block (not the whole exchange).
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// The parts of an org URL the agent uses: `http(s)://host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgUrl {
    pub https: bool,
    /// Host name or IP address, without the brackets of an IPv6 literal.
    pub host: String,
    pub port: u16,
    /// Path prefix the org is served under, without a trailing `/` ("" at
    /// the root).
    pub prefix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("TLS name {host}: {reason}")]
    TlsName { host: String, reason: String },
    #[error("sending the request: {0}")]
    Send(#[source] io::Error),
    #[error("{0}")]
    Answer(#[from] HttpError),
}

/// A status and the body of an answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl OrgUrl {
    /// Parses an org URL; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url:?} is not an http(s) URL"));
        };
        if rest.contains(['?', '#', '@']) {
            return Err(format!(
                "{url:?}: queries, fragments and user names are not supported in the org URL"
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed [ in the host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?} names no host"));
        }
        let port = match port {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{url:?}: port {p:?} is not a port number"))?,
        };
        Ok(OrgUrl {
            https,
            host: host.to_string(),
            port,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// The Host header: brackets around an IPv6 literal, the port unless it
    /// is the scheme's default.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// POSTs `body` to `path` under `url`; https goes through `tls` (the caller
/// refuses https without one). Any status comes back as an [`Answer`].
pub fn post(
    url: &OrgUrl,
    tls: Option<&Arc<ClientConfig>>,
    path: &str,
    body: &[u8],
    max_body: usize,
) -> Result<Answer, PostError> {
    let tcp = connect(&url.host, url.port)?;
    let head = format!(
        "POST {}{path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        url.prefix,
        url.host_header(),
        body.len()
    );
    let resp = match tls {
        Some(config) => {
            let name = ServerName::try_from(url.host.clone()).map_err(|e| PostError::TlsName {
                host: url.host.clone(),
                reason: e.to_string(),
            })?;
            let conn =
                ClientConnection::new(config.clone(), name).map_err(|e| PostError::TlsName {
                    host: url.host.clone(),
                    reason: e.to_string(),
                })?;
            let mut stream = StreamOwned::new(conn, tcp);
            exchange(&mut stream, &head, body, max_body)?
        }
        None => {
            let mut stream = tcp;
            exchange(&mut stream, &head, body, max_body)?
        }
    };
    Ok(Answer {
        status: resp.status,
        body: resp.body,
    })
}

fn exchange<S: io::Read + Write>(
    stream: &mut S,
    head: &str,
    body: &[u8],
    max_body: usize,
) -> Result<fortros_amt::http::Response, PostError> {
    stream.write_all(head.as_bytes()).map_err(PostError::Send)?;
    stream.write_all(body).map_err(PostError::Send)?;
    stream.flush().map_err(PostError::Send)?;
    Ok(read_response_limited(stream, max_body)?)
}

/// The first address of `host` that answers within [`CONNECT_TIMEOUT`].
fn connect(host: &str, port: u16) -> Result<TcpStream, PostError> {
    let addr_text = format!("{host}:{port}");
    let failed = |source| PostError::Connect {
        addr: addr_text.clone(),
        source,
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for addr in (host, port).to_socket_addrs().map_err(failed)? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_read_timeout(Some(IO_TIMEOUT)).map_err(failed)?;
                s.set_write_timeout(Some(IO_TIMEOUT)).map_err(failed)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(failed(last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn parses_org_urls() {
        let u = OrgUrl::parse("http://10.0.2.2:18080").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.prefix.as_str()),
            (false, "10.0.2.2", 18080, "")
        );
        assert_eq!(u.host_header(), "10.0.2.2:18080");
        let u = OrgUrl::parse("https://org.example/fleet/").unwrap();
        assert_eq!((u.port, u.prefix.as_str()), (443, "/fleet"));
        assert_eq!(u.host_header(), "org.example");
        let u = OrgUrl::parse("https://[fd00::1]:8443/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("fd00::1", 8443));
        assert_eq!(u.host_header(), "[fd00::1]:8443");
    }

    #[test]
    fn refuses_bad_org_urls() {
        for bad in [
            "ftp://x",
            "http://",
            "http://:80",
            "http://h:0",
            "http://h:99999",
            "http://h:x",
            "http://[::1",
            "http://u@h",
            "http://h/?q",
        ] {
            assert!(OrgUrl::parse(bad).is_err(), "{bad}");
        }
    }

    /// A one-shot server: records the request, answers with `answer`.
    fn serve_once(answer: &'static [u8]) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Head, then Content-Length bytes of body.
            loop {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if req.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            s.write_all(answer).unwrap();
            req
        });
        (port, t)
    }

    #[test]
    fn posts_and_reads_the_answer() {
        let (port, t) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
        let url = OrgUrl::parse(&format!("http://127.0.0.1:{port}/org")).unwrap();
        let a = post(&url, None, "/v1/nonce", b"\x01\x02", 1024).unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"abc"[..]));
        let req = t.join().unwrap();
        let text = String::from_utf8_lossy(&req);
        assert!(
            text.starts_with("POST /org/v1/nonce HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
            "{text}"
        );
        assert!(req.ends_with(b"\r\n\r\n\x01\x02"));
    }

    #[test]
    fn an_answer_over_the_limit_is_refused() {
        let (port, t) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n");
        let url = OrgUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let e = post(&url, None, "/v1/x", b"", 1000).unwrap_err();
        assert!(e.to_string().contains("more than 1000 bytes"), "{e}");
        t.join().unwrap();
    }

    #[test]
    fn a_closed_port_names_the_address() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let url = OrgUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let e = post(&url, None, "/v1/x", b"", 10).unwrap_err();
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}

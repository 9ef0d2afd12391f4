//! A WS-MAN client: one HTTP exchange per connection, Digest auth with a
//! retry after the server's 401 challenge, replies parsed into
//! [`wsman::Reply`]. The connection comes from a [`Connector`]: an APF
//! channel over the MEI on the node, a TCP socket at the org.

use crate::digest::{self, DigestClient, DigestError};
use crate::http::{self, HttpError, Request};
use crate::wsman::{self, Reply, WsmanError};
use rand_core::{OsRng, RngCore};
use std::io::{self, Read, Write};
use thiserror::Error;

/// Opens one fresh byte stream to AMT's WS-MAN port per request.
pub trait Connector {
    type Conn: Read + Write;
    fn connect(&mut self) -> io::Result<Self::Conn>;
    /// The Host header value.
    fn host(&self) -> String;
}

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("connect to AMT WS-MAN: {0}")]
    Connect(#[source] io::Error),
    #[error("send request: {0}")]
    Send(#[source] io::Error),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("Digest challenge: {0}")]
    Digest(#[from] DigestError),
    #[error("HTTP 401: credentials of user {user:?} rejected")]
    Unauthorized { user: String },
    #[error("HTTP {status} {reason}")]
    Status { status: u16, reason: String },
    #[error(transparent)]
    Wsman(#[from] WsmanError),
}

impl ClientError {
    /// The server refused these credentials (wrong password / not ours).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClientError::Unauthorized { .. })
    }
}

pub struct WsmanClient<C: Connector> {
    connector: C,
    digest: DigestClient,
    seq: u64,
}

impl<C: Connector> WsmanClient<C> {
    pub fn new(connector: C, user: &str, password: &str) -> Self {
        WsmanClient {
            connector,
            digest: DigestClient::new(user, password),
            seq: 0,
        }
    }

    /// The same connector with other credentials (after Setup: `admin`).
    pub fn with_credentials(self, user: &str, password: &str) -> Self {
        WsmanClient {
            connector: self.connector,
            digest: DigestClient::new(user, password),
            seq: self.seq,
        }
    }

    pub fn connector_mut(&mut self) -> &mut C {
        &mut self.connector
    }

    /// Sends the envelope `build(message_id)` and returns the parsed reply.
    /// A first 401 is answered with Digest credentials; a second is
    /// [`ClientError::Unauthorized`] (unless only the nonce was stale).
    pub fn call(&mut self, build: impl Fn(&str) -> String) -> Result<Reply, ClientError> {
        self.seq += 1;
        let message_id = format!("uuid:00000000-8086-8086-8086-{:012}", self.seq);
        let body = build(&message_id);
        let mut challenged = 0;
        loop {
            let mut req = Request::soap(&self.connector.host(), body.clone());
            let mut cnonce = [0u8; 16];
            OsRng.fill_bytes(&mut cnonce);
            if let Some(auth) = self
                .digest
                .authorization("POST", "/wsman", &hex::encode(cnonce))
            {
                req.headers.push(("Authorization".into(), auth));
            }
            let resp = self.exchange(&req)?;
            if resp.status == 401 {
                challenged += 1;
                let header = resp
                    .headers_named("WWW-Authenticate")
                    .find(|h| h.trim_start().to_ascii_lowercase().starts_with("digest"))
                    .unwrap_or("");
                let c = digest::parse_challenge(header)?;
                let stale = c.stale;
                let had = self.digest.challenge().is_some();
                self.digest.set_challenge(c);
                // Retry once after the first challenge; again only if the
                // server says our nonce merely went stale.
                if challenged == 1 && (!had || stale) || challenged == 2 && stale {
                    continue;
                }
                if challenged == 1 && had {
                    // Our cached nonce was refused: one fresh try.
                    continue;
                }
                return Err(ClientError::Unauthorized {
                    user: self.digest.user().to_string(),
                });
            }
            // SOAP faults arrive with 400/500: the body says why.
            if resp.status == 200 || !resp.body.is_empty() && resp.status >= 400 {
                let parsed = wsman::parse_reply(&resp.body);
                return match (resp.status, parsed) {
                    (200, r) => Ok(r?),
                    (_, Err(e @ WsmanError::Fault { .. })) => Err(e.into()),
                    (status, _) => Err(ClientError::Status {
                        status,
                        reason: resp.reason,
                    }),
                };
            }
            return Err(ClientError::Status {
                status: resp.status,
                reason: resp.reason,
            });
        }
    }

    fn exchange(&mut self, req: &Request) -> Result<http::Response, ClientError> {
        let mut conn = self.connector.connect().map_err(ClientError::Connect)?;
        conn.write_all(&req.to_bytes()).map_err(ClientError::Send)?;
        conn.flush().map_err(ClientError::Send)?;
        Ok(http::read_response(&mut conn)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Serves canned responses and records requests.
    struct Canned {
        replies: VecDeque<Vec<u8>>,
        requests: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    }
    struct Conn {
        reply: io::Cursor<Vec<u8>>,
        sent: Vec<u8>,
        requests: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    }
    impl Read for Conn {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.reply.read(b)
        }
    }
    impl Write for Conn {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.sent.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.requests
                .borrow_mut()
                .push(String::from_utf8_lossy(&self.sent).into_owned());
            Ok(())
        }
    }
    impl Connector for Canned {
        type Conn = Conn;
        fn connect(&mut self) -> io::Result<Conn> {
            let reply = self
                .replies
                .pop_front()
                .ok_or_else(|| io::Error::other("no more replies"))?;
            Ok(Conn {
                reply: io::Cursor::new(reply),
                sent: Vec::new(),
                requests: self.requests.clone(),
            })
        }
        fn host(&self) -> String {
            "[::1]:16992".into()
        }
    }

    fn ok(body: &str) -> Vec<u8> {
        let env = format!("<Envelope><Header/><Body>{body}</Body></Envelope>");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{env}",
            env.len()
        )
        .into_bytes()
    }
    const CHALLENGE: &[u8] = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"Digest:ABC\", nonce=\"n1\", qop=\"auth\"\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn challenge_then_authorized_then_cached_nonce() {
        let requests = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let c = Canned {
            replies: [
                CHALLENGE.to_vec(),
                ok("<Setup_OUTPUT><ReturnValue>0</ReturnValue></Setup_OUTPUT>"),
                ok("<Setup_OUTPUT><ReturnValue>0</ReturnValue></Setup_OUTPUT>"),
            ]
            .into(),
            requests: requests.clone(),
        };
        let mut w = WsmanClient::new(c, "$$OsAdmin", "lsa-secret");
        let r = w.call(|id| wsman::host_based_setup("ab", id)).unwrap();
        assert_eq!(r.return_value("Setup"), Ok(0));
        let r = w.call(|id| wsman::host_based_setup("ab", id)).unwrap();
        assert_eq!(r.return_value("Setup"), Ok(0));
        let reqs = requests.borrow();
        assert_eq!(reqs.len(), 3, "one challenge, then the nonce is reused");
        assert!(!reqs[0].contains("Authorization"));
        assert!(reqs[1].contains("Authorization: Digest username=\"$$OsAdmin\""));
        assert!(reqs[1].contains("nc=00000001"));
        assert!(reqs[2].contains("nc=00000002"));
        assert!(reqs.iter().all(|r| !r.contains("lsa-secret")));
    }

    #[test]
    fn wrong_password_is_unauthorized_and_faults_are_typed() {
        let requests = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let c = Canned {
            replies: [CHALLENGE.to_vec(), CHALLENGE.to_vec()].into(),
            requests: requests.clone(),
        };
        let mut w = WsmanClient::new(c, "admin", "wrong");
        let err = w.call(wsman::commit_changes).unwrap_err();
        assert!(err.is_unauthorized(), "{err}");

        let fault = "<Envelope><Body><Fault><Code><Value>Sender</Value></Code><Reason><Text>no</Text></Reason></Fault></Body></Envelope>";
        let c = Canned {
            replies: [format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{fault}",
                fault.len()
            )
            .into_bytes()]
            .into(),
            requests,
        };
        let mut w = WsmanClient::new(c, "admin", "x");
        let err = w.call(wsman::commit_changes).unwrap_err();
        assert!(
            matches!(err, ClientError::Wsman(WsmanError::Fault { .. })),
            "{err}"
        );
    }
}

//! HTTP Digest access authentication, client side (RFC 7616, RFC 2617),
//! as AMT speaks it: algorithm MD5, `qop="auth"`, a counted `nc` and a
//! fresh `cnonce` per request.
//!
//! The password never leaves this module in clear: only HA1 and the
//! response digest are computed from it. AMT's own `Setup` call takes the
//! same HA1 (`MD5(admin:realm:password)`) as its "network admin password".

use md5::{Digest, Md5};
use thiserror::Error;
use zeroize::Zeroizing;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("WWW-Authenticate at byte {offset}: {what}")]
    Malformed { offset: usize, what: String },
    #[error("WWW-Authenticate: no Digest challenge (got {0:?})")]
    NotDigest(String),
    #[error("WWW-Authenticate: Digest challenge without {0}")]
    Missing(&'static str),
    #[error("WWW-Authenticate: algorithm {0} not supported (MD5 only)")]
    Algorithm(String),
    #[error("WWW-Authenticate: qop {0:?} offers no \"auth\"")]
    Qop(String),
}

/// A server's Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// The server asked for `qop=auth` (otherwise the RFC 2069 form).
    pub qop_auth: bool,
    /// The previous request failed only because the nonce expired.
    pub stale: bool,
}

/// Lowercase hex of MD5.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// HA1 = MD5(user ":" realm ":" password), lowercase hex.
pub fn ha1(user: &str, realm: &str, password: &str) -> String {
    let a1 = Zeroizing::new(format!("{user}:{realm}:{password}"));
    md5_hex(a1.as_bytes())
}

/// Parses a `WWW-Authenticate` value and returns its Digest challenge.
pub fn parse_challenge(header: &str) -> Result<Challenge, DigestError> {
    let trimmed = header.trim_start();
    let lead = header.len() - trimmed.len();
    let Some(rest) = trimmed
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case("digest"))
        .and_then(|_| trimmed.get(6..))
    else {
        return Err(DigestError::NotDigest(
            header.chars().take(40).collect::<String>(),
        ));
    };
    let params = parse_params(rest, lead + 6)?;
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if let Some(a) = get("algorithm") {
        if !a.eq_ignore_ascii_case("MD5") {
            return Err(DigestError::Algorithm(a));
        }
    }
    let qop_auth = match get("qop") {
        None => false,
        Some(q) => {
            if q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")) {
                true
            } else {
                return Err(DigestError::Qop(q));
            }
        }
    };
    Ok(Challenge {
        realm: get("realm").ok_or(DigestError::Missing("realm"))?,
        nonce: get("nonce").ok_or(DigestError::Missing("nonce"))?,
        opaque: get("opaque"),
        qop_auth,
        stale: get("stale")
            .map(|s| s.eq_ignore_ascii_case("true"))
            .unwrap_or(false),
    })
}

/// `name=token` / `name="quoted"` pairs separated by commas. Stops at the
/// next auth scheme (a bare token followed by a space).
fn parse_params(s: &str, base: usize) -> Result<Vec<(String, String)>, DigestError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let err = |i: usize, what: &str| DigestError::Malformed {
        offset: base + i,
        what: what.into(),
    };
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t' || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-' || b[i] == b'_') {
            i += 1;
        }
        if i == start {
            return Err(err(i, "expected a parameter name"));
        }
        let name = &s[start..i];
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            // Another scheme begins ("Digest ..., Basic realm=..."): done.
            if !out.is_empty() {
                return Ok(out);
            }
            return Err(err(i, "expected '='"));
        }
        i += 1;
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(err(i, "unterminated quoted string")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let Some(&c) = b.get(i + 1) else {
                            return Err(err(i, "escape at end"));
                        };
                        v.push(c);
                        i += 2;
                    }
                    Some(&c) => {
                        v.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8(v).map_err(|_| err(i, "quoted string is not UTF-8"))?
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' && b[i] != b' ' {
                i += 1;
            }
            s[vs..i].to_string()
        };
        out.push((name.to_string(), value));
    }
}

/// Credentials plus the state of the last challenge (nonce count).
pub struct DigestClient {
    user: String,
    password: Zeroizing<String>,
    challenge: Option<Challenge>,
    nc: u32,
}

impl std::fmt::Debug for DigestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestClient")
            .field("user", &self.user)
            .field("password", &"(hidden)")
            .finish()
    }
}

impl DigestClient {
    pub fn new(user: &str, password: &str) -> Self {
        DigestClient {
            user: user.into(),
            password: Zeroizing::new(password.into()),
            challenge: None,
            nc: 0,
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Remembers a new challenge (after a 401); the nonce count restarts.
    pub fn set_challenge(&mut self, c: Challenge) {
        self.challenge = Some(c);
        self.nc = 0;
    }

    pub fn challenge(&self) -> Option<&Challenge> {
        self.challenge.as_ref()
    }

    /// The `Authorization` value for the next request, or `None` before any
    /// challenge. `cnonce` must be fresh random text per request.
    pub fn authorization(&mut self, method: &str, uri: &str, cnonce: &str) -> Option<String> {
        let c = self.challenge.clone()?;
        self.nc = self.nc.wrapping_add(1);
        let nc = format!("{:08x}", self.nc);
        Some(authorization_header(
            &self.user,
            &self.password,
            &c,
            method,
            uri,
            &nc,
            cnonce,
        ))
    }
}

/// The full `Authorization: Digest ...` value (RFC 7616 §3.4).
pub fn authorization_header(
    user: &str,
    password: &str,
    c: &Challenge,
    method: &str,
    uri: &str,
    nc: &str,
    cnonce: &str,
) -> String {
    let ha1 = ha1(user, &c.realm, password);
    let ha2 = md5_hex(format!("{method}:{uri}").as_bytes());
    let response = if c.qop_auth {
        md5_hex(format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", c.nonce).as_bytes())
    } else {
        md5_hex(format!("{ha1}:{}:{ha2}", c.nonce).as_bytes())
    };
    let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut h = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", algorithm=MD5",
        q(user),
        q(&c.realm),
        q(&c.nonce),
        q(uri)
    );
    if c.qop_auth {
        h.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{}\"", q(cnonce)));
    }
    if let Some(o) = &c.opaque {
        h.push_str(&format!(", opaque=\"{}\"", q(o)));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_of(header: &str) -> &str {
        let i = header.find("response=\"").unwrap() + 10;
        &header[i..i + 32]
    }

    #[test]
    fn rfc2617_section_3_5_example() {
        let c = parse_challenge(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert!(c.qop_auth);
        let h = authorization_header(
            "Mufasa",
            "Circle Of Life",
            &c,
            "GET",
            "/dir/index.html",
            "00000001",
            "0a4f113b",
        );
        assert_eq!(response_of(&h), "6629fae49393a05397450978507c4ef1");
        assert!(h.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
        assert!(h.contains("nc=00000001"));
    }

    #[test]
    fn rfc7616_section_3_9_1_md5_example() {
        let c = parse_challenge(
            &"Digest\n realm=\"http-auth@example.org\",\n qop=\"auth, auth-int\",\n algorithm=MD5,\n \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\n \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
                .replace('\n', ""),
        );
        let c = c.unwrap();
        let h = authorization_header(
            "Mufasa",
            "Circle of Life",
            &c,
            "GET",
            "/dir/index.html",
            "00000001",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        assert_eq!(response_of(&h), "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn client_counts_nonces_and_restarts_on_a_new_challenge() {
        let mut d = DigestClient::new("admin", "P@ssw0rd!");
        assert!(d.authorization("POST", "/wsman", "c").is_none());
        d.set_challenge(
            parse_challenge("Digest realm=\"Digest:A1\", nonce=\"n\", qop=\"auth\"").unwrap(),
        );
        assert!(d
            .authorization("POST", "/wsman", "c")
            .unwrap()
            .contains("nc=00000001"));
        assert!(d
            .authorization("POST", "/wsman", "c")
            .unwrap()
            .contains("nc=00000002"));
        d.set_challenge(
            parse_challenge("Digest realm=\"Digest:A1\", nonce=\"m\", qop=\"auth\", stale=true")
                .unwrap(),
        );
        assert!(d.challenge().unwrap().stale);
        assert!(d
            .authorization("POST", "/wsman", "c")
            .unwrap()
            .contains("nc=00000001"));
        assert!(!format!("{d:?}").contains("P@ss"));
    }

    #[test]
    fn ha1_is_what_amt_setup_takes() {
        // MD5("admin:Digest:0123456789ABCDEF:P@ssw0rd") computed independently
        // (python3 hashlib).
        assert_eq!(
            ha1("admin", "Digest:0123456789ABCDEF", "P@ssw0rd"),
            md5_hex(b"admin:Digest:0123456789ABCDEF:P@ssw0rd")
        );
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn other_schemes_and_bad_challenges() {
        let c = parse_challenge("Digest realm=\"a\", nonce=\"b\", Basic realm=\"x\"").unwrap();
        assert_eq!(
            (c.realm.as_str(), c.nonce.as_str(), c.qop_auth),
            ("a", "b", false)
        );
        assert!(matches!(
            parse_challenge("Basic realm=\"x\""),
            Err(DigestError::NotDigest(_))
        ));
        assert_eq!(
            parse_challenge("Digest nonce=\"b\""),
            Err(DigestError::Missing("realm"))
        );
        assert!(matches!(
            parse_challenge("Digest realm=\"a\", nonce=\"b\", algorithm=SHA-256"),
            Err(DigestError::Algorithm(_))
        ));
        assert!(matches!(
            parse_challenge("Digest realm=\"a\", nonce=\"b\", qop=\"auth-int\""),
            Err(DigestError::Qop(_))
        ));
        assert!(matches!(
            parse_challenge("Digest realm=\"a"),
            Err(DigestError::Malformed { .. })
        ));
        assert!(matches!(
            parse_challenge("Digest =x"),
            Err(DigestError::Malformed { offset: 7, .. })
        ));
        let c = parse_challenge(r#"Digest realm="a\"b", nonce="n""#).unwrap();
        assert_eq!(c.realm, "a\"b");
    }
}

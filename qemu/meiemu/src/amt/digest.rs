//! HTTP Digest authentication, server side (RFC 2617 / RFC 7616 with MD5 and
//! qop=auth, as AMT does it).
//!
//! The ME answers a request without credentials with 401 and a fresh nonce;
//! a request whose response hash is right but whose nonce is unknown,
//! evicted or replayed (nonce count not above the last one) gets 401 with
//! `stale="true"`; a wrong hash gets 401 with `stale="false"`.

use super::md5_hex;

/// The parts of an `Authorization: Digest ...` header we use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub algorithm: Option<String>,
}

/// Why a header was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("Authorization scheme is not Digest")]
    NotDigest,
    #[error("Authorization header at offset {0}: malformed parameter list")]
    Syntax(usize),
    #[error("Authorization header lacks {0}")]
    Missing(&'static str),
    #[error("Authorization header is longer than {0} bytes")]
    TooLong(usize),
}

const MAX_HEADER: usize = 4096;

/// Parses `Digest k=v, k="v", ...`.
pub fn parse(header: &str) -> Result<Credentials, DigestError> {
    if header.len() > MAX_HEADER {
        return Err(DigestError::TooLong(MAX_HEADER));
    }
    let h = header.trim_start();
    let offset0 = header.len() - h.len();
    let rest = match h.get(..6) {
        Some(s) if s.eq_ignore_ascii_case("digest") => &h[6..],
        _ => return Err(DigestError::NotDigest),
    };
    let base = offset0 + 6;
    let b = rest.as_bytes();
    let mut i = 0;
    let mut c = Credentials::default();
    let (mut have_user, mut have_realm, mut have_nonce, mut have_uri, mut have_resp) =
        (false, false, false, false, false);
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b',' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        let key = rest
            .get(ks..i)
            .ok_or(DigestError::Syntax(base + ks))?
            .trim()
            .to_ascii_lowercase();
        if i >= b.len() || key.is_empty() {
            return Err(DigestError::Syntax(base + ks));
        }
        i += 1; // '='
        let value = if b.get(i) == Some(&b'"') {
            i += 1;
            let mut v = String::new();
            loop {
                match b.get(i) {
                    None => return Err(DigestError::Syntax(base + i)),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let ch = rest.get(i + 1..).and_then(|s| s.chars().next());
                        match ch {
                            Some(ch) => {
                                v.push(ch);
                                i += 1 + ch.len_utf8();
                            }
                            None => return Err(DigestError::Syntax(base + i)),
                        }
                    }
                    Some(_) => {
                        let ch = rest.get(i..).and_then(|s| s.chars().next());
                        match ch {
                            Some(ch) => {
                                v.push(ch);
                                i += ch.len_utf8();
                            }
                            None => return Err(DigestError::Syntax(base + i)),
                        }
                    }
                }
            }
            v
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            rest.get(vs..i)
                .ok_or(DigestError::Syntax(base + vs))?
                .trim()
                .to_string()
        };
        match key.as_str() {
            "username" => {
                c.username = value;
                have_user = true;
            }
            "realm" => {
                c.realm = value;
                have_realm = true;
            }
            "nonce" => {
                c.nonce = value;
                have_nonce = true;
            }
            "uri" => {
                c.uri = value;
                have_uri = true;
            }
            "response" => {
                c.response = value;
                have_resp = true;
            }
            "qop" => c.qop = Some(value),
            "nc" => c.nc = Some(value),
            "cnonce" => c.cnonce = Some(value),
            "algorithm" => c.algorithm = Some(value),
            _ => {} // opaque, userhash, ...: not used by AMT
        }
    }
    for (ok, name) in [
        (have_user, "username"),
        (have_realm, "realm"),
        (have_nonce, "nonce"),
        (have_uri, "uri"),
        (have_resp, "response"),
    ] {
        if !ok {
            return Err(DigestError::Missing(name));
        }
    }
    Ok(c)
}

/// The expected `response` for qop=auth.
pub fn response(ha1: &str, nonce: &str, nc: &str, cnonce: &str, method: &str, uri: &str) -> String {
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
}

/// The WWW-Authenticate header value.
pub fn challenge(realm: &str, nonce: &str, stale: bool) -> String {
    format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", stale=\"{}\", qop=\"auth\"",
        if stale { "true" } else { "false" }
    )
}

/// What checking a request's credentials found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Right password, dead nonce: retry with the new one.
    Stale,
    Denied(String),
}

/// Checks `c` against the user's HA1 (`None`: no such user) for `method`
/// and the request target `target`. The nonce is checked by the caller
/// (it owns the nonce table) only when this returns `Ok`.
pub fn check(
    c: &Credentials,
    ha1: Option<&str>,
    realm: &str,
    method: &str,
    target: &str,
) -> Verdict {
    let Some(ha1) = ha1 else {
        return Verdict::Denied(format!("unknown user {:?}", c.username));
    };
    if c.realm != realm {
        return Verdict::Denied(format!("realm {:?} is not ours", c.realm));
    }
    if c.uri != target {
        return Verdict::Denied(format!(
            "digest uri {:?} differs from the request target {target:?}",
            c.uri
        ));
    }
    if let Some(a) = &c.algorithm {
        if !a.eq_ignore_ascii_case("MD5") {
            return Verdict::Denied(format!("algorithm {a} (only MD5)"));
        }
    }
    if c.qop.as_deref() != Some("auth") {
        return Verdict::Denied("qop=auth is required".into());
    }
    let (Some(nc), Some(cnonce)) = (&c.nc, &c.cnonce) else {
        return Verdict::Denied("qop=auth without nc or cnonce".into());
    };
    if nc.len() != 8 || u32::from_str_radix(nc, 16).is_err() || cnonce.is_empty() {
        return Verdict::Denied(format!("nc {nc:?} is not 8 hex digits, or cnonce empty"));
    }
    let want = response(ha1, &c.nonce, nc, cnonce, method, &c.uri);
    if !want.eq_ignore_ascii_case(&c.response) {
        return Verdict::Denied(format!("wrong response hash for user {:?}", c.username));
    }
    Verdict::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5, the Mufasa example.
    const RFC: &str = r#"Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#;

    #[test]
    fn rfc_2617_example_parses_and_verifies() {
        let c = parse(RFC).unwrap();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        let ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
        assert_eq!(
            response(
                &ha1,
                &c.nonce,
                "00000001",
                "0a4f113b",
                "GET",
                "/dir/index.html"
            ),
            "6629fae49393a05397450978507c4ef1"
        );
        assert_eq!(
            check(
                &c,
                Some(&ha1),
                "testrealm@host.com",
                "GET",
                "/dir/index.html"
            ),
            Verdict::Ok
        );
        let wrong = md5_hex("Mufasa:testrealm@host.com:circle of life");
        assert!(matches!(
            check(
                &c,
                Some(&wrong),
                "testrealm@host.com",
                "GET",
                "/dir/index.html"
            ),
            Verdict::Denied(_)
        ));
        assert!(matches!(
            check(
                &c,
                Some(&ha1),
                "testrealm@host.com",
                "POST",
                "/dir/index.html"
            ),
            Verdict::Denied(_)
        ));
        assert!(matches!(
            check(&c, Some(&ha1), "testrealm@host.com", "GET", "/wsman"),
            Verdict::Denied(_)
        ));
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert_eq!(parse("Basic abc"), Err(DigestError::NotDigest));
        assert_eq!(parse("Digest username=\"x"), Err(DigestError::Syntax(18)));
        assert_eq!(
            parse("Digest username=\"x\", realm=r, nonce=n, uri=/"),
            Err(DigestError::Missing("response"))
        );
        assert!(parse(&"Digest a=b,".repeat(1000)).is_err());
        // escaped quote inside a quoted value
        let c = parse(r#"Digest username="a\"b", realm=r, nonce=n, uri=/, response=x"#).unwrap();
        assert_eq!(c.username, "a\"b");
    }

    #[test]
    fn challenge_header() {
        assert_eq!(
            challenge("Digest:AB", "n1", true),
            "Digest realm=\"Digest:AB\", nonce=\"n1\", stale=\"true\", qop=\"auth\""
        );
    }
}

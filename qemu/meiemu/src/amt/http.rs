//! HTTP/1.1 for the AMT web server: an incremental, bounded request parser
//! (Content-Length and chunked bodies, as LMS and rpc-go send them) and the
//! response encoder. AMT answers WS-MAN with chunked bodies and errors with
//! Content-Length; so does this server, so clients must handle both.

/// Limits: a request that exceeds one is refused with 413/431.
pub const MAX_HEAD: usize = 8192;
pub const MAX_BODY: usize = 65536;
const MAX_HEADERS: usize = 64;

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client asked to close the connection after this exchange.
    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A request the server cannot take; `status` is what it answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {status}: {reason} (at byte {offset})")]
pub struct HttpError {
    pub status: u16,
    pub reason: String,
    pub offset: usize,
}

fn bad(status: u16, offset: usize, reason: impl Into<String>) -> HttpError {
    HttpError {
        status,
        reason: reason.into(),
        offset,
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Tries to take one request from the front of `buf`: `Ok(None)` while it
/// is incomplete, `Ok(Some((request, bytes used)))` when done.
pub fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let Some(head_end) = find(buf, b"\r\n\r\n", 0) else {
        if buf.len() > MAX_HEAD {
            return Err(bad(431, MAX_HEAD, "request head too long"));
        }
        return Ok(None);
    };
    if head_end > MAX_HEAD {
        return Err(bad(431, MAX_HEAD, "request head too long"));
    }
    let head = std::str::from_utf8(buf.get(..head_end).unwrap_or(&[]))
        .map_err(|e| bad(400, e.valid_up_to(), "request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(400, 0, format!("bad request line {request_line:?}")));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(bad(505, 0, format!("version {version:?}")));
    }
    if method.is_empty() || target.is_empty() {
        return Err(bad(400, 0, "empty method or target"));
    }
    let mut headers = Vec::new();
    let mut offset = request_line.len() + 2;
    for line in lines {
        if headers.len() >= MAX_HEADERS {
            return Err(bad(431, offset, "too many header fields"));
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(bad(
                400,
                offset,
                format!("header line without ':' {line:?}"),
            ));
        };
        if k.is_empty() || k.contains(' ') || k.contains('\t') {
            return Err(bad(400, offset, format!("bad header name {k:?}")));
        }
        headers.push((k.to_string(), v.trim().to_string()));
        offset += line.len() + 2;
    }
    let body_start = head_end + 4;
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body: Vec::new(),
    };
    let chunked = req
        .header("transfer-encoding")
        .map(|v| v.eq_ignore_ascii_case("chunked"));
    let length = req.header("content-length");
    let used = match (chunked, length) {
        (Some(true), None) => match dechunk(buf, body_start)? {
            Some((body, end)) => {
                req.body = body;
                end
            }
            None => return Ok(None),
        },
        (Some(false), _) => return Err(bad(501, body_start, "transfer coding other than chunked")),
        (Some(true), Some(_)) => {
            return Err(bad(400, body_start, "both Content-Length and chunked"))
        }
        (None, Some(l)) => {
            let n: usize = l
                .parse()
                .map_err(|_| bad(400, body_start, format!("Content-Length {l:?}")))?;
            if n > MAX_BODY {
                return Err(bad(413, body_start, format!("body of {n} bytes")));
            }
            match buf.get(body_start..body_start + n) {
                Some(b) => {
                    req.body = b.to_vec();
                    body_start + n
                }
                None => return Ok(None),
            }
        }
        (None, None) => body_start,
    };
    Ok(Some((req, used)))
}

/// Decodes a chunked body starting at `at`; `None` while incomplete.
fn dechunk(buf: &[u8], mut at: usize) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(buf, b"\r\n", at) else {
            if buf.len().saturating_sub(at) > 64 {
                return Err(bad(400, at, "chunk size line too long"));
            }
            return Ok(None);
        };
        let line = std::str::from_utf8(buf.get(at..eol).unwrap_or(&[]))
            .map_err(|_| bad(400, at, "chunk size is not text"))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(400, at, format!("chunk size {size_text:?}")))?;
        if body.len() + size > MAX_BODY {
            return Err(bad(413, at, "chunked body too long"));
        }
        let data = eol + 2;
        if size == 0 {
            // no trailers: the final CRLF follows at once
            return match buf.get(data..data + 2) {
                None => Ok(None),
                Some(b"\r\n") => Ok(Some((body, data + 2))),
                Some(_) => Err(bad(400, data, "trailers are not supported")),
            };
        }
        let Some(chunk) = buf.get(data..data + size) else {
            return Ok(None);
        };
        body.extend_from_slice(chunk);
        match buf.get(data + size..data + size + 2) {
            None => return Ok(None),
            Some(b"\r\n") => at = data + size + 2,
            Some(_) => return Err(bad(400, data + size, "chunk not followed by CRLF")),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// One response. `chunked` sends the body in chunks of at most 1024 bytes.
pub fn response(
    status: u16,
    server: &str,
    headers: &[(&str, String)],
    body: &[u8],
    chunked: bool,
) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    r.push_str(&format!(
        "Server: Intel(R) Active Management Technology {server}\r\n"
    ));
    r.push_str("X-Frame-Options: DENY\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut out;
    if chunked {
        r.push_str("Transfer-Encoding: chunked\r\n\r\n");
        out = r.into_bytes();
        for c in body.chunks(1024) {
            out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        r.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        out = r.into_bytes();
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_request_in_pieces() {
        let full = b"POST /wsman HTTP/1.1\r\nHost: ::1:16992\r\nContent-Length: 5\r\n\r\nhelloGET";
        for cut in 0..full.len() - 3 {
            assert_eq!(parse(&full[..cut]).unwrap(), None, "cut {cut}");
        }
        let (r, used) = parse(full).unwrap().unwrap();
        assert_eq!(used, full.len() - 3);
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/wsman");
        assert_eq!(r.header("host"), Some("::1:16992"));
        assert_eq!(r.body, b"hello");
    }

    #[test]
    fn chunked_request_as_rpc_go_sends_it() {
        let full = b"POST /wsman HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n";
        assert_eq!(parse(&full[..full.len() - 1]).unwrap(), None);
        let (r, used) = parse(full).unwrap().unwrap();
        assert_eq!(used, full.len());
        assert_eq!(r.body, b"helloabc");
    }

    #[test]
    fn bad_requests_are_refused_with_a_status() {
        let e = parse(b"POST /wsman\r\n\r\n").unwrap_err();
        assert_eq!(e.status, 400);
        let e = parse(b"POST /wsman HTTP/2\r\n\r\n").unwrap_err();
        assert_eq!(e.status, 505);
        let e = parse(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").unwrap_err();
        assert_eq!(e.status, 413);
        let e = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.offset, 47);
        let e = parse(&[b'a'; MAX_HEAD + 1]).unwrap_err();
        assert_eq!(e.status, 431);
        let e = parse(b"POST / HTTP/1.1\r\nno colon\r\n\r\n").unwrap_err();
        assert_eq!((e.status, e.offset), (400, 17));
    }

    #[test]
    fn responses() {
        let r = response(200, "16.1.25", &[], &[b'x'; 1500], true);
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Transfer-Encoding: chunked\r\n\r\n400\r\n"));
        assert!(text.contains("\r\n1dc\r\n"), "{text}");
        assert!(text.ends_with("\r\n0\r\n\r\n"));
        let r = response(
            401,
            "16.1.25",
            &[("WWW-Authenticate", "Digest x".into())],
            b"",
            false,
        );
        assert!(String::from_utf8(r)
            .unwrap()
            .contains("Content-Length: 0\r\n\r\n"));
    }
}

//! HTTP/1.1 as an AMT WS-MAN client needs it (RFC 9112): one request
//! written, one response read, over any byte stream (an APF channel on the
//! node, a TCP socket at the org). The agent reads the org's answers with
//! it too ([`read_response_limited`]).
//!
//! Responses are read with hard limits (head 16 KiB, body 1 MiB) and every
//! malformed byte becomes an [`HttpError`] naming where it was; bodies come
//! framed by `Content-Length`, `Transfer-Encoding: chunked`, or the end of
//! the stream.

use std::io::{self, Read};
use thiserror::Error;

/// Most bytes of status line + headers accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most body bytes accepted (WS-MAN replies are a few KiB).
pub const MAX_BODY: usize = 1024 * 1024;
/// Most header lines accepted.
const MAX_HEADERS: usize = 64;

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("HTTP {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("HTTP response {structure} at byte {offset}: {what}")]
    Malformed {
        structure: &'static str,
        offset: usize,
        what: String,
    },
    #[error("HTTP response {structure}: more than {limit} bytes")]
    TooLarge {
        structure: &'static str,
        limit: usize,
    },
    #[error("HTTP response {structure}: stream ended at byte {offset}")]
    Truncated {
        structure: &'static str,
        offset: usize,
    },
}

/// One request to write.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub host: String,
    /// Extra headers (Authorization, Content-Type); Host, Content-Length
    /// and Connection are written by [`Request::to_bytes`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// A WS-MAN POST of a SOAP envelope.
    pub fn soap(host: &str, body: String) -> Self {
        Request {
            method: "POST",
            path: "/wsman".into(),
            host: host.into(),
            headers: vec![(
                "Content-Type".into(),
                "application/soap+xml; charset=utf-8".into(),
            )],
            body: body.into_bytes(),
        }
    }

    /// The request as bytes on the wire. `Connection: close`: one exchange
    /// per connection (an APF channel carries exactly one).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.method,
            self.path,
            self.host,
            self.body.len()
        );
        for (k, v) in &self.headers {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// One response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Header names as received; look them up with [`Response::header`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header of that name, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a complete response held in memory (tests, fuzzing).
pub fn parse_response(bytes: &[u8]) -> Result<Response, HttpError> {
    read_response(&mut io::Cursor::new(bytes))
}

/// Reads one response from a stream. The stream may end right after it.
pub fn read_response<R: Read>(stream: &mut R) -> Result<Response, HttpError> {
    read_response_limited(stream, MAX_BODY)
}

/// [`read_response`] with another body limit (the org's answers carry
/// flash images of up to 64 MiB).
pub fn read_response_limited<R: Read>(
    stream: &mut R,
    max_body: usize,
) -> Result<Response, HttpError> {
    let mut r = Buffered::new(stream);
    loop {
        let resp = read_one(&mut r, max_body)?;
        // 1xx interim responses (100 Continue) precede the real one.
        if !(100..200).contains(&resp.status) {
            return Ok(resp);
        }
    }
}

fn read_one<R: Read>(r: &mut Buffered<'_, R>, max_body: usize) -> Result<Response, HttpError> {
    let head_start = r.consumed;
    let status_line = r.line("status line", MAX_HEAD)?;
    let (status, reason) = parse_status_line(&status_line, head_start)?;
    let mut headers = Vec::new();
    loop {
        if r.consumed - head_start > MAX_HEAD {
            return Err(HttpError::TooLarge {
                structure: "head",
                limit: MAX_HEAD,
            });
        }
        let at = r.consumed;
        let line = r.line("header", MAX_HEAD)?;
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(HttpError::TooLarge {
                structure: "header count",
                limit: MAX_HEADERS,
            });
        }
        let Some(colon) = line.find(':') else {
            return Err(malformed("header", at, "no colon"));
        };
        let (name, value) = line.split_at(colon);
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(malformed("header", at, format!("bad name {name:?}")));
        }
        headers.push((name.to_string(), value[1..].trim().to_string()));
    }
    let mut resp = Response {
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    // No body for 1xx, 204, 304 (RFC 9112 §6.3).
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(resp);
    }
    let chunked = resp
        .header("Transfer-Encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    resp.body = if chunked {
        read_chunked(r, max_body)?
    } else if let Some(len) = resp.header("Content-Length") {
        let at = r.consumed;
        let n: usize = len
            .trim()
            .parse()
            .map_err(|_| malformed("Content-Length", at, format!("{len:?}")))?;
        if n > max_body {
            return Err(HttpError::TooLarge {
                structure: "body",
                limit: max_body,
            });
        }
        r.exact(n, "body")?
    } else {
        r.read_to_end(max_body)?
    };
    Ok(resp)
}

fn parse_status_line(line: &str, at: usize) -> Result<(u16, String), HttpError> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(malformed("status line", at, format!("version {version:?}")));
    }
    let code = parts.next().unwrap_or("");
    let status: u16 = match code.parse() {
        Ok(s) if (100..=999).contains(&s) && code.len() == 3 => s,
        _ => return Err(malformed("status line", at, format!("status {code:?}"))),
    };
    Ok((status, parts.next().unwrap_or("").to_string()))
}

fn read_chunked<R: Read>(r: &mut Buffered<'_, R>, max_body: usize) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let at = r.consumed;
        let line = r.line("chunk size", 1024)?;
        // Chunk extensions after ';' are ignored.
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| malformed("chunk size", at, format!("{size_text:?}")))?;
        if size == 0 {
            // Trailer fields until the empty line.
            loop {
                if r.line("chunk trailer", MAX_HEAD)?.is_empty() {
                    return Ok(body);
                }
            }
        }
        if size > max_body || body.len() + size > max_body {
            return Err(HttpError::TooLarge {
                structure: "chunked body",
                limit: max_body,
            });
        }
        body.extend_from_slice(&r.exact(size, "chunk data")?);
        let at = r.consumed;
        if !r.line("chunk end", 2)?.is_empty() {
            return Err(malformed("chunk end", at, "data longer than its size"));
        }
    }
}

fn malformed(structure: &'static str, offset: usize, what: impl Into<String>) -> HttpError {
    HttpError::Malformed {
        structure,
        offset,
        what: what.into(),
    }
}

/// A small read buffer that counts consumed bytes for error offsets.
struct Buffered<'a, R: Read> {
    inner: &'a mut R,
    buf: Vec<u8>,
    pos: usize,
    consumed: usize,
    eof: bool,
}

impl<'a, R: Read> Buffered<'a, R> {
    fn new(inner: &'a mut R) -> Self {
        Buffered {
            inner,
            buf: Vec::new(),
            pos: 0,
            consumed: 0,
            eof: false,
        }
    }

    /// Reads more bytes; false at end of stream.
    fn fill(&mut self) -> Result<bool, HttpError> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut chunk = [0u8; 4096];
        loop {
            match self.inner.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(HttpError::Io { op: "read", source }),
            }
        }
    }

    fn available(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    fn advance(&mut self, n: usize) {
        self.pos += n;
        self.consumed += n;
    }

    /// One CRLF-terminated line (a bare LF is accepted), without the end.
    fn line(&mut self, structure: &'static str, max: usize) -> Result<String, HttpError> {
        loop {
            if let Some(i) = self.available().iter().position(|&b| b == b'\n') {
                let raw = self.available().get(..i).unwrap_or(&[]);
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                if raw.len() > max {
                    return Err(HttpError::TooLarge {
                        structure,
                        limit: max,
                    });
                }
                let at = self.consumed;
                let text = std::str::from_utf8(raw)
                    .map_err(|_| malformed(structure, at, "not UTF-8"))?
                    .to_string();
                self.advance(i + 1);
                return Ok(text);
            }
            if self.available().len() > max + 2 {
                return Err(HttpError::TooLarge {
                    structure,
                    limit: max,
                });
            }
            if !self.fill()? {
                return Err(HttpError::Truncated {
                    structure,
                    offset: self.consumed + self.available().len(),
                });
            }
        }
    }

    fn exact(&mut self, n: usize, structure: &'static str) -> Result<Vec<u8>, HttpError> {
        while self.available().len() < n {
            if !self.fill()? {
                return Err(HttpError::Truncated {
                    structure,
                    offset: self.consumed + self.available().len(),
                });
            }
        }
        let out = self.available().get(..n).unwrap_or(&[]).to_vec();
        self.advance(n);
        Ok(out)
    }

    fn read_to_end(&mut self, max: usize) -> Result<Vec<u8>, HttpError> {
        while self.fill()? {
            if self.available().len() > max {
                return Err(HttpError::TooLarge {
                    structure: "body",
                    limit: max,
                });
            }
        }
        if self.available().len() > max {
            return Err(HttpError::TooLarge {
                structure: "body",
                limit: max,
            });
        }
        let out = self.available().to_vec();
        let n = out.len();
        self.advance(n);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte per read, like a slow channel.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn request_bytes() {
        let r = Request::soap("[::1]:16992", "<x/>".into());
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("POST /wsman HTTP/1.1\r\nHost: [::1]:16992\r\n"));
        assert!(text.contains("Content-Length: 4\r\n"));
        assert!(text.contains("Content-Type: application/soap+xml; charset=utf-8\r\n"));
        assert!(text.ends_with("\r\n\r\n<x/>"));
    }

    #[test]
    fn content_length_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: 5\r\n\r\nhello";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.reason, "OK");
        assert_eq!(r.header("content-type"), Some("application/soap+xml"));
        assert_eq!(r.body, b"hello");
        // The same bytes one at a time.
        let r2 = read_response(&mut Trickle(raw)).unwrap();
        assert_eq!(r, r2);
    }

    #[test]
    fn chunked_body_with_extension_and_trailer() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n";
        let r = read_response(&mut Trickle(raw)).unwrap();
        assert_eq!(r.body, b"Wikipedia");
    }

    #[test]
    fn body_to_end_of_stream_and_interim_response() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"r\"\r\n\r\nno";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(r.body, b"no");
        assert_eq!(r.headers_named("www-authenticate").count(), 1);
    }

    #[test]
    fn hostile_responses_are_errors_with_offsets() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "Truncated"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                "Truncated",
            ),
            (b"SIP/2.0 200 OK\r\n\r\n", "Malformed"),
            (b"HTTP/1.1 20 OK\r\n\r\n", "Malformed"),
            (b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "Malformed"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "Malformed",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
                "TooLarge",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "Malformed",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
                "Malformed",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffff\r\n",
                "TooLarge",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
                "Truncated",
            ),
        ];
        for (raw, kind) in cases {
            let err = parse_response(raw).unwrap_err();
            assert!(
                format!("{err:?}").starts_with(kind),
                "{:?}: {err:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let err = parse_response(b"HTTP/1.1 200 OK\r\nA: 1\r\nB 2\r\n\r\n").unwrap_err();
        assert!(
            matches!(err, HttpError::Malformed { offset: 23, .. }),
            "{err:?}"
        );
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        assert!(matches!(
            parse_response(&huge).unwrap_err(),
            HttpError::TooLarge { .. }
        ));
    }
}

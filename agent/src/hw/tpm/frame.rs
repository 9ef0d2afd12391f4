//! TPM 2.0 command frames out, response frames in (TPM 2.0 Part 1 §18 and
//! Part 3): header, handle area, authorization area, parameters. Responses
//! are hostile input: every length is checked against the frame.

use fortros_wire::tpm::{Reader, TpmParseError, Writer};

pub const ST_NO_SESSIONS: u16 = 0x8001;
pub const ST_SESSIONS: u16 = 0x8002;
/// TPM_RS_PW: the password authorization "session".
pub const RS_PW: u32 = 0x4000_0009;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("TPM response: {0}")]
    Parse(#[from] TpmParseError),
    #[error("TPM response header says {declared} bytes, frame has {actual}")]
    SizeMismatch { declared: usize, actual: usize },
    #[error("TPM response tag 0x{0:04x} is neither NO_SESSIONS nor SESSIONS")]
    BadTag(u16),
    #[error("TPM returned 0x{rc:03x}: {meaning}")]
    Tpm { rc: u32, meaning: String },
}

/// One authorization in a command's auth area.
#[derive(Debug, Clone)]
pub struct Auth {
    pub handle: u32,
    pub nonce: Vec<u8>,
    pub attributes: u8,
    pub hmac: Vec<u8>,
}

impl Auth {
    /// Password authorization with the empty password (the default auth of
    /// the hierarchies, of NV indexes we read and of our AK).
    pub fn password() -> Self {
        Auth {
            handle: RS_PW,
            nonce: vec![],
            attributes: 0,
            hmac: vec![],
        }
    }

    /// A policy session whose policy is already satisfied. Unbound and
    /// unsalted, with no PolicyAuthValue: the TPM checks no HMAC, so it is
    /// empty. continueSession is clear: the TPM flushes it after use.
    pub fn policy(handle: u32) -> Self {
        Auth {
            handle,
            nonce: vec![],
            attributes: 0,
            hmac: vec![],
        }
    }
}

/// A command being built.
pub struct Command {
    cc: u32,
    handles: Vec<u32>,
    auths: Vec<Auth>,
    pub params: Writer,
}

impl Command {
    pub fn new(cc: u32) -> Self {
        Command {
            cc,
            handles: vec![],
            auths: vec![],
            params: Writer::new(),
        }
    }

    pub fn handle(mut self, h: u32) -> Self {
        self.handles.push(h);
        self
    }

    pub fn auth(mut self, a: Auth) -> Self {
        self.auths.push(a);
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut auth = Writer::new();
        for a in &self.auths {
            auth.u32(a.handle)
                .tpm2b(&a.nonce)
                .u8(a.attributes)
                .tpm2b(&a.hmac);
        }
        let mut w = Writer::new();
        let tag = if self.auths.is_empty() {
            ST_NO_SESSIONS
        } else {
            ST_SESSIONS
        };
        w.u16(tag).u32(0).u32(self.cc);
        for &h in &self.handles {
            w.u32(h);
        }
        if !self.auths.is_empty() {
            w.u32(auth.buf.len() as u32).bytes(&auth.buf);
        }
        w.bytes(&self.params.buf);
        let size = (w.buf.len() as u32).to_be_bytes();
        if let Some(s) = w.buf.get_mut(2..6) {
            s.copy_from_slice(&size);
        }
        w.buf
    }
}

/// A successful response split into its areas.
#[derive(Debug)]
pub struct Response<'a> {
    pub handles: Vec<u32>,
    /// The parameter area only (the auth area is dropped).
    pub params: &'a [u8],
}

/// Splits a response frame. `handle_count` is how many handles the command
/// returns (1 for CreatePrimary, StartAuthSession; 0 for most).
pub fn parse_response(frame: &[u8], handle_count: usize) -> Result<Response<'_>, FrameError> {
    const S: &str = "TPM response";
    let mut r = Reader::new(frame);
    let tag = r.u16(S)?;
    let size = r.u32(S)? as usize;
    let rc = r.u32(S)?;
    if size != frame.len() {
        return Err(FrameError::SizeMismatch {
            declared: size,
            actual: frame.len(),
        });
    }
    if rc != 0 {
        return Err(FrameError::Tpm {
            rc,
            meaning: describe_rc(rc),
        });
    }
    if tag != ST_NO_SESSIONS && tag != ST_SESSIONS {
        return Err(FrameError::BadTag(tag));
    }
    let mut handles = Vec::with_capacity(handle_count.min(3));
    for _ in 0..handle_count {
        handles.push(r.u32(S)?);
    }
    let params = if tag == ST_SESSIONS {
        let n = r.u32(S)? as usize;
        r.bytes(n, "TPM response parameters")?
    } else {
        r.bytes(r.remaining(), "TPM response parameters")?
    };
    Ok(Response { handles, params })
}

/// A short reading of a TPM_RC for people (TPM 2.0 Part 2 §6.6).
pub fn describe_rc(rc: u32) -> String {
    if rc & 0x80 != 0 {
        // Format 1: error number with the handle/session/parameter it concerns.
        let n = rc & 0x3f;
        let which = (rc >> 8) & 0xf;
        let what = match n {
            0x01 => "asymmetric algorithm not supported or not correct",
            0x02 => "inconsistent attributes",
            0x03 => "hash algorithm not supported",
            0x04 => "value out of range or not correct",
            0x0b => "handle not correct",
            0x0e => "authorization failure (wrong password or policy)",
            0x12 => "curve not supported",
            0x15 => "structure is the wrong size",
            0x18 => "an input is out of range (size)",
            0x1a => "key size not supported",
            0x1d => "an integrity check failed (credential not for this key or TPM)",
            0x1f => "reserved bits set",
            0x22 => "authorization session is not a policy session or policy failed",
            _ => "format-1 error",
        };
        let place = if rc & 0x40 != 0 {
            format!("parameter {which}")
        } else if which & 0x8 != 0 {
            format!("session {}", which & 0x7)
        } else {
            format!("handle {which}")
        };
        format!("{what} ({place}, error 0x{:02x})", n | 0x80)
    } else {
        match rc {
            0x100 => "TPM not initialized (TPM2_Startup missing)".into(),
            0x101 => "command failed".into(),
            0x143 => "command code not supported".into(),
            0x146 => "NV offset or size out of the index's range".into(),
            0x147 => "NV index too large for this TPM".into(),
            0x149 => "NV index or persistent object area full".into(),
            0x14a => "NV index not written yet".into(),
            0x14c => "NV index already defined".into(),
            0x14b => "NV index not written / not defined".into(),
            0x150 => "NV index is not defined or locked".into(),
            0x184 => "value out of range".into(),
            0x18b => "handle not found".into(),
            0x901 => "TPM busy, retry".into(),
            0x908 => "TPM yielded, retry".into(),
            0x921 => "dictionary-attack lockout".into(),
            0x922 => "TPM retry".into(),
            _ if rc & 0x900 == 0x900 => "warning, retry later".into(),
            _ => "error".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_frame_has_header_handles_auth_and_params() {
        let mut c = Command::new(0x0000_0182).handle(13).auth(Auth::password());
        c.params.u32(1);
        let b = c.to_bytes();
        assert_eq!(&b[0..2], &[0x80, 0x02]);
        assert_eq!(
            u32::from_be_bytes(b[2..6].try_into().unwrap()) as usize,
            b.len()
        );
        assert_eq!(&b[6..10], &[0, 0, 1, 0x82]);
        assert_eq!(&b[10..14], &[0, 0, 0, 13]);
        assert_eq!(&b[14..18], &[0, 0, 0, 9]); // auth area size
        assert_eq!(&b[18..22], &RS_PW.to_be_bytes());
    }

    #[test]
    fn responses_are_bounded_and_errors_are_named() {
        // Error response.
        let err = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x8b];
        assert!(matches!(
            parse_response(&err, 0),
            Err(FrameError::Tpm { rc: 0x18b, .. })
        ));
        // Size lies.
        let lie = [0x80, 0x01, 0, 0, 0, 99, 0, 0, 0, 0];
        assert!(matches!(
            parse_response(&lie, 0),
            Err(FrameError::SizeMismatch { .. })
        ));
        // Parameter size beyond the frame.
        let over = [0x80, 0x02, 0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 1, 0];
        assert!(matches!(
            parse_response(&over, 0),
            Err(FrameError::Parse(TpmParseError::Truncated { .. }))
        ));
        // Every truncation of a good frame is an error, never a panic.
        let good = [
            0x80, 0x02, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 2, 0x12, 0x34, 0, 0, 1, 0,
        ];
        let ok = parse_response(&good, 0).unwrap();
        assert_eq!(ok.params, &[0x12, 0x34]);
        for n in 0..good.len() {
            assert!(parse_response(&good[..n], 0).is_err());
        }
    }
}

//! MKHI, the ME kernel host interface (me-runtime.md §3): firmware version and
//! FWCAPS rules. Read-only: the agent never sends HMRFPO, disable or EOP.
//!
//! Request encoders and reply parsers are pure and bounded; every malformed
//! reply is an error naming the offset and the structure.

use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use super::device::{MeiError, MeiTransport};

/// MKHI group: FW capabilities.
pub const GROUP_FWCAPS: u8 = 0x03;
/// MKHI group: generic.
pub const GROUP_GEN: u8 = 0xFF;
/// FWCAPS GET_RULE.
pub const CMD_GET_RULE: u8 = 0x02;
/// GEN GET_FW_VERSION.
pub const CMD_GET_FW_VERSION: u8 = 0x02;

/// FWCAPS rule: features the SKU is capable of.
pub const RULE_FEATURES_CAPABLE: u32 = 0;
/// FWCAPS rule: platform type (bits 15:12 brand).
pub const RULE_PLATFORM_TYPE: u32 = 0x1D;
/// FWCAPS rule: features enabled.
pub const RULE_FEATURES_ENABLED: u32 = 0x20;
/// Feature bitmap bit: AMT (manageability).
pub const FEATURE_AMT: u32 = 1 << 2;
/// Feature bitmap bit: KVM.
pub const FEATURE_KVM: u32 = 1 << 18;

const HEADER_LEN: usize = 4;

/// Errors of the MKHI exchange.
#[derive(Debug, Error)]
pub enum MkhiError {
    #[error("MKHI {structure}: truncated at offset {offset}: need {need} bytes, have {have}")]
    Truncated {
        structure: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error(
        "MKHI header at offset 0: expected group {group:#04x} command {command:#04x} response, \
         got group {got_group:#04x} command byte {got_command:#04x}"
    )]
    UnexpectedHeader {
        group: u8,
        command: u8,
        got_group: u8,
        got_command: u8,
    },
    #[error("MKHI {structure}: firmware returned result {code:#04x} ({meaning}) at offset 3")]
    Firmware {
        structure: &'static str,
        code: u8,
        meaning: &'static str,
    },
    #[error("MKHI GET_RULE reply at offset 4: rule {got:#x} echoed, asked for {expected:#x}")]
    RuleMismatch { expected: u32, got: u32 },
    #[error(transparent)]
    Transport(#[from] MeiError),
}

fn need(structure: &'static str, bytes: &[u8], offset: usize, len: usize) -> Result<(), MkhiError> {
    if bytes.len() < offset.saturating_add(len) {
        return Err(MkhiError::Truncated {
            structure,
            offset,
            need: len,
            have: bytes.len().saturating_sub(offset),
        });
    }
    Ok(())
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    match (b.get(off), b.get(off + 1)) {
        (Some(&x), Some(&y)) => u16::from_le_bytes([x, y]),
        _ => 0,
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from(u16_at(b, off)) | (u32::from(u16_at(b, off + 2)) << 16)
}

/// Meaning of an MKHI result code (LMS, fwupd).
pub fn result_meaning(code: u8) -> &'static str {
    match code {
        0x00 => "success",
        0x01 => "invalid state",
        0x02 => "message skipped",
        0x05 => "size error",
        0x0B => "perhaps not supported",
        0x0F => "not set",
        0x16 => "invalid argument",
        0x18 => "not available",
        0x81 => "not found",
        0x84 => "invalid access",
        0x85 => "invalid parameters",
        0x88 => "not ready",
        0x89 => "not supported",
        0x8C => "invalid address",
        0x8D => "invalid command",
        0x99 => "generic failure",
        0x9E => "failure",
        0xE4 => "invalid resource",
        0xE5 => "resource in use",
        0xE6 => "no resource",
        0xFE => "retry",
        0xFF => "general error",
        _ => "unknown",
    }
}

/// Checks the 4-byte response header and the result byte; returns the body.
fn check_header<'a>(
    structure: &'static str,
    reply: &'a [u8],
    group: u8,
    command: u8,
) -> Result<&'a [u8], MkhiError> {
    let &[got_group, got_command, _, result, ..] = reply else {
        return Err(MkhiError::Truncated {
            structure,
            offset: 0,
            need: HEADER_LEN,
            have: reply.len(),
        });
    };
    if got_group != group || got_command != (command | 0x80) {
        return Err(MkhiError::UnexpectedHeader {
            group,
            command,
            got_group,
            got_command,
        });
    }
    if result != 0 {
        return Err(MkhiError::Firmware {
            structure,
            code: result,
            meaning: result_meaning(result),
        });
    }
    Ok(reply.get(HEADER_LEN..).unwrap_or(&[]))
}

/// GEN GET_FW_VERSION request.
pub fn encode_get_fw_version() -> [u8; 4] {
    [GROUP_GEN, CMD_GET_FW_VERSION, 0, 0]
}

/// One version block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FwVersion {
    /// High byte of the major field, as the kernel reads it.
    pub platform: u8,
    pub major: u16,
    pub minor: u16,
    pub hotfix: u16,
    pub build: u16,
}

impl std::fmt::Display for FwVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.major, self.minor, self.hotfix, self.build
        )
    }
}

/// The code, recovery and FITC versions (older ME may return only code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FwVersions {
    pub code: FwVersion,
    pub recovery: Option<FwVersion>,
    pub fitc: Option<FwVersion>,
}

/// Parses a GET_FW_VERSION reply.
pub fn parse_fw_version(reply: &[u8]) -> Result<FwVersions, MkhiError> {
    const S: &str = "GET_FW_VERSION reply";
    let body = check_header(S, reply, GROUP_GEN, CMD_GET_FW_VERSION)?;
    let block = |i: usize| -> Option<FwVersion> {
        let off = i * 8;
        body.get(off..off + 8).map(|b| {
            let major_field = u16_at(b, 2);
            FwVersion {
                minor: u16_at(b, 0),
                major: major_field & 0xFF,
                platform: (major_field >> 8) as u8,
                build: u16_at(b, 4),
                hotfix: u16_at(b, 6),
            }
        })
    };
    let code = block(0).ok_or(MkhiError::Truncated {
        structure: S,
        offset: HEADER_LEN,
        need: 8,
        have: body.len(),
    })?;
    Ok(FwVersions {
        code,
        recovery: block(1),
        fitc: block(2),
    })
}

/// FWCAPS GET_RULE request for `rule` (feature id 0).
pub fn encode_get_rule(rule: u32) -> [u8; 8] {
    let r = rule.to_le_bytes();
    [GROUP_FWCAPS, CMD_GET_RULE, 0, 0, r[0], r[1], r[2], r[3]]
}

/// Parses a GET_RULE reply to the rule's data bytes (bounded by the reply).
pub fn parse_get_rule(reply: &[u8], rule: u32) -> Result<Vec<u8>, MkhiError> {
    const S: &str = "GET_RULE reply";
    let body = check_header(S, reply, GROUP_FWCAPS, CMD_GET_RULE)?;
    need(S, reply, HEADER_LEN, 5)?;
    let got = u32_at(body, 0);
    if got != rule {
        return Err(MkhiError::RuleMismatch {
            expected: rule,
            got,
        });
    }
    let len = usize::from(body.get(4).copied().unwrap_or(0));
    need(S, reply, HEADER_LEN + 5, len)?;
    Ok(body.get(5..5 + len).unwrap_or(&[]).to_vec())
}

/// Parses a GET_RULE reply whose data is a u32 bitmap.
pub fn parse_rule_u32(reply: &[u8], rule: u32) -> Result<u32, MkhiError> {
    let data = parse_get_rule(reply, rule)?;
    if data.len() < 4 {
        return Err(MkhiError::Truncated {
            structure: "GET_RULE data (u32)",
            offset: HEADER_LEN + 5,
            need: 4,
            have: data.len(),
        });
    }
    Ok(u32_at(&data, 0))
}

/// What FWCAPS says about AMT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FwCaps {
    /// Rule 0 bitmap.
    pub capable: u32,
    /// Rule 0x20 bitmap (`None` if the firmware refused the rule).
    pub enabled: Option<u32>,
    /// Rule 0x1D value.
    pub platform_type: Option<u32>,
    pub amt_capable: bool,
    pub amt_enabled: Option<bool>,
    /// Platform brand from bits 15:12 of the platform type.
    pub brand: Option<&'static str>,
}

fn brand_name(platform_type: u32) -> &'static str {
    match (platform_type >> 12) & 0xF {
        0 => "none",
        1 => "Intel AMT",
        2 => "Intel Standard Manageability",
        3 => "L3 manageability",
        4 => "RPAT",
        5 => "Small Business Technology",
        _ => "unknown",
    }
}

/// Builds [`FwCaps`] from the three rule values.
pub fn fw_caps(capable: u32, enabled: Option<u32>, platform_type: Option<u32>) -> FwCaps {
    FwCaps {
        capable,
        enabled,
        platform_type,
        amt_capable: capable & FEATURE_AMT != 0,
        amt_enabled: enabled.map(|e| e & FEATURE_AMT != 0),
        brand: platform_type.map(brand_name),
    }
}

/// Asks the firmware version over a connected MKHI client.
pub fn query_fw_version(
    t: &mut dyn MeiTransport,
    timeout: Duration,
) -> Result<FwVersions, MkhiError> {
    let reply = t.transact(&encode_get_fw_version(), timeout)?;
    parse_fw_version(&reply)
}

/// Asks the FWCAPS rules 0, 0x20 and 0x1D. Rule 0 is required; the others
/// are optional (older firmware refuses some).
pub fn query_fw_caps(t: &mut dyn MeiTransport, timeout: Duration) -> Result<FwCaps, MkhiError> {
    let mut rule = |id: u32| -> Result<u32, MkhiError> {
        let reply = t.transact(&encode_get_rule(id), timeout)?;
        parse_rule_u32(&reply, id)
    };
    let capable = rule(RULE_FEATURES_CAPABLE)?;
    let enabled = optional(rule(RULE_FEATURES_ENABLED))?;
    let platform = optional(rule(RULE_PLATFORM_TYPE))?;
    Ok(fw_caps(capable, enabled, platform))
}

/// A firmware refusal of an optional rule is `None`; transport errors stay errors.
fn optional(r: Result<u32, MkhiError>) -> Result<Option<u32>, MkhiError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(MkhiError::Firmware { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A scripted transport: returns the queued replies in order and keeps
    /// the requests it saw.
    pub struct Script {
        pub replies: Vec<Result<Vec<u8>, MeiError>>,
        pub requests: Vec<Vec<u8>>,
    }

    impl MeiTransport for Script {
        fn transact(&mut self, request: &[u8], _t: Duration) -> Result<Vec<u8>, MeiError> {
            self.requests.push(request.to_vec());
            if self.replies.is_empty() {
                return Err(MeiError::Timeout {
                    path: "script".into(),
                    timeout: Duration::ZERO,
                });
            }
            self.replies.remove(0)
        }
    }

    pub fn fw_version_reply(major: u16, minor: u16, hotfix: u16, build: u16) -> Vec<u8> {
        let mut r = vec![GROUP_GEN, CMD_GET_FW_VERSION | 0x80, 0, 0];
        for _ in 0..3 {
            for v in [minor, major, build, hotfix] {
                r.extend_from_slice(&v.to_le_bytes());
            }
        }
        r
    }

    pub fn rule_reply(rule: u32, value: u32) -> Vec<u8> {
        let mut r = vec![GROUP_FWCAPS, CMD_GET_RULE | 0x80, 0, 0];
        r.extend_from_slice(&rule.to_le_bytes());
        r.push(4);
        r.extend_from_slice(&value.to_le_bytes());
        r
    }

    #[test]
    fn encoders() {
        assert_eq!(encode_get_fw_version(), [0xFF, 0x02, 0x00, 0x00]);
        assert_eq!(encode_get_rule(0x20), [0x03, 0x02, 0, 0, 0x20, 0, 0, 0]);
    }

    #[test]
    fn fw_version_round_trip() {
        let v = parse_fw_version(&fw_version_reply(16, 1, 25, 1885)).unwrap();
        assert_eq!(v.code.to_string(), "16.1.25.1885");
        assert!(v.recovery.is_some() && v.fitc.is_some());
        // Platform in the high byte of the major field.
        let mut r = fw_version_reply(16, 0, 15, 1810);
        r[7] = 0x03;
        let v = parse_fw_version(&r).unwrap();
        assert_eq!((v.code.platform, v.code.major), (3, 16));
        // Only a code block (older ME).
        let v = parse_fw_version(&r[..12]).unwrap();
        assert_eq!(v.recovery, None);
    }

    #[test]
    fn fw_version_rejects_bad_replies() {
        let err = parse_fw_version(&[0xFF, 0x82, 0]).unwrap_err();
        assert!(matches!(err, MkhiError::Truncated { offset: 0, .. }));
        let err = parse_fw_version(&[0xFF, 0x82, 0, 0, 1, 2]).unwrap_err();
        assert!(matches!(err, MkhiError::Truncated { offset: 4, .. }));
        assert!(err.to_string().contains("GET_FW_VERSION"));
        let err = parse_fw_version(&[0xFF, 0x02, 0, 0]).unwrap_err();
        assert!(matches!(err, MkhiError::UnexpectedHeader { .. }));
        let err = parse_fw_version(&[0xFF, 0x82, 0, 0x89]).unwrap_err();
        assert!(err.to_string().contains("not supported"));
    }

    #[test]
    fn rules() {
        assert_eq!(
            parse_rule_u32(&rule_reply(0, 0x0004_0004), 0).unwrap(),
            0x40004
        );
        let err = parse_rule_u32(&rule_reply(0x20, 1), 0).unwrap_err();
        assert!(matches!(err, MkhiError::RuleMismatch { got: 0x20, .. }));
        // Declared data length past the end.
        let mut r = rule_reply(0, 1);
        r[8] = 200;
        let err = parse_get_rule(&r, 0).unwrap_err();
        assert!(matches!(
            err,
            MkhiError::Truncated {
                offset: 9,
                need: 200,
                ..
            }
        ));
        // Data shorter than a u32.
        let mut r = rule_reply(0, 1);
        r[8] = 2;
        r.truncate(11);
        assert!(parse_rule_u32(&r, 0).is_err());
    }

    #[test]
    fn caps_query_tolerates_refused_optional_rules() {
        let mut s = Script {
            replies: vec![
                Ok(rule_reply(0, FEATURE_AMT | FEATURE_KVM)),
                Ok(vec![GROUP_FWCAPS, CMD_GET_RULE | 0x80, 0, 0x89]),
                Ok(rule_reply(0x1D, 0x1000)),
            ],
            requests: vec![],
        };
        let caps = query_fw_caps(&mut s, Duration::from_secs(1)).unwrap();
        assert!(caps.amt_capable);
        assert_eq!(caps.amt_enabled, None);
        assert_eq!(caps.brand, Some("Intel AMT"));
        assert_eq!(s.requests[1], encode_get_rule(0x20).to_vec());
    }

    #[test]
    fn caps_query_stops_on_timeout() {
        let mut s = Script {
            replies: vec![],
            requests: vec![],
        };
        let err = query_fw_caps(&mut s, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(
            err,
            MkhiError::Transport(MeiError::Timeout { .. })
        ));
    }
}

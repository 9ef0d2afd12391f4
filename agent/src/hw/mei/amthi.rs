//! AMTHI (PTHI), the AMT host interface (me-runtime.md §4): code versions,
//! provisioning state, control mode, UUID, LAN interface settings.
//! Read-only queries; pure encoders and bounded parsers.

use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use super::device::{MeiError, MeiTransport};

const HEADER_LEN: usize = 12;
const RESPONSE_BIT: u32 = 0x0080_0000;

/// GetCodeVersions.
pub const CMD_GET_CODE_VERSIONS: u32 = 0x0400_001A;
/// GetProvisioningState.
pub const CMD_GET_PROVISIONING_STATE: u32 = 0x0400_0011;
/// GetControlMode.
pub const CMD_GET_CONTROL_MODE: u32 = 0x0400_006B;
/// GetUUID.
pub const CMD_GET_UUID: u32 = 0x0400_005C;
/// GetLanInterfaceSettings.
pub const CMD_GET_LAN_INTERFACE_SETTINGS: u32 = 0x0400_0048;

/// Most entries a CodeVersions reply may carry.
const MAX_VERSIONS: u32 = 50;

/// Errors of the AMTHI exchange.
#[derive(Debug, Error)]
pub enum AmthiError {
    #[error("AMTHI {structure}: truncated at offset {offset}: need {need} bytes, have {have}")]
    Truncated {
        structure: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("AMTHI {structure} at offset {offset}: {what}")]
    Malformed {
        structure: &'static str,
        offset: usize,
        what: String,
    },
    #[error("AMTHI {structure}: AMT status {status} ({meaning})")]
    Status {
        structure: &'static str,
        status: u32,
        meaning: &'static str,
    },
    #[error(transparent)]
    Transport(#[from] MeiError),
}

/// Meaning of an AMT status code.
pub fn status_meaning(status: u32) -> &'static str {
    match status {
        0 => "success",
        1 => "internal error",
        2 => "not ready",
        3 => "invalid AMT mode",
        4 => "invalid message length",
        16 => "not permitted",
        23 => "max limit reached",
        36 => "invalid parameter",
        47 => "RNG generation in progress",
        48 => "RNG not ready",
        49 => "certificate not ready",
        2053 => "invalid handle",
        2068 => "not found",
        0x4000 => "empty response: Intel AMT is disabled",
        _ => "unknown",
    }
}

/// A bounded little-endian reader that names the structure in its errors.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    structure: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], structure: &'static str) -> Self {
        Reader {
            bytes,
            pos: 0,
            structure,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], AmthiError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.bytes.get(self.pos..end)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(AmthiError::Truncated {
                structure: self.structure,
                offset: self.pos,
                need: n,
                have: self.bytes.len().saturating_sub(self.pos),
            }),
        }
    }

    fn u8(&mut self) -> Result<u8, AmthiError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, AmthiError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, AmthiError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn malformed(&self, offset: usize, what: String) -> AmthiError {
        AmthiError::Malformed {
            structure: self.structure,
            offset,
            what,
        }
    }
}

/// Encodes a request: 12-byte header (version 1.1, command, payload length) + payload.
pub fn encode_request(command: u32, payload: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(HEADER_LEN + payload.len());
    r.extend_from_slice(&[1, 1, 0, 0]);
    r.extend_from_slice(&command.to_le_bytes());
    r.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    r.extend_from_slice(payload);
    r
}

/// GetLanInterfaceSettings request for interface 0 (wired) or 1 (wireless).
pub fn encode_get_lan_interface_settings(interface: u32) -> Vec<u8> {
    encode_request(CMD_GET_LAN_INTERFACE_SETTINGS, &interface.to_le_bytes())
}

/// Checks a response header and status; returns the payload after the status.
pub fn parse_response<'a>(
    structure: &'static str,
    reply: &'a [u8],
    command: u32,
) -> Result<&'a [u8], AmthiError> {
    let mut r = Reader::new(reply, structure);
    let version = r.take(2)?;
    if version[0] != 1 {
        return Err(r.malformed(0, format!("header version {}.{}", version[0], version[1])));
    }
    r.take(2)?;
    let got = r.u32()?;
    if got != command | RESPONSE_BIT {
        return Err(r.malformed(
            4,
            format!(
                "command {got:#010x}, expected response {:#010x}",
                command | RESPONSE_BIT
            ),
        ));
    }
    let length = r.u32()? as usize;
    // The declared length covers status + payload and must fit the reply.
    let body = r.take(length)?;
    let mut b = Reader::new(body, structure);
    let status = b.u32().map_err(|_| AmthiError::Truncated {
        structure,
        offset: HEADER_LEN,
        need: 4,
        have: body.len(),
    })?;
    if status != 0 {
        return Err(AmthiError::Status {
            structure,
            status,
            meaning: status_meaning(status),
        });
    }
    Ok(body.get(4..).unwrap_or(&[]))
}

/// One description/version pair of CodeVersions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeVersion {
    pub description: String,
    pub version: String,
}

/// GetCodeVersions, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeVersions {
    pub bios: String,
    pub versions: Vec<CodeVersion>,
    /// The "AMT" entry.
    pub amt_version: Option<String>,
    /// The "Sku" entry as a number (a hint only: rpc-go#466).
    pub sku: Option<u32>,
    /// Sku bit 0x08: AMT Pro (full AMT); bit 0x10: Standard Manageability.
    pub sku_kind: Option<&'static str>,
}

/// Text of a fixed char array up to its first NUL.
fn c_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(bytes.get(..end).unwrap_or(&[])).into_owned()
}

/// Parses a GetCodeVersions reply.
pub fn parse_code_versions(reply: &[u8]) -> Result<CodeVersions, AmthiError> {
    const S: &str = "GetCodeVersions reply";
    let payload = parse_response(S, reply, CMD_GET_CODE_VERSIONS)?;
    let mut r = Reader::new(payload, S);
    let bios = c_text(r.take(65)?);
    let count_at = r.pos;
    let count = r.u32()?;
    if count > MAX_VERSIONS {
        return Err(r.malformed(
            HEADER_LEN + 4 + count_at,
            format!("{count} versions, at most {MAX_VERSIONS}"),
        ));
    }
    let mut versions = Vec::new();
    for _ in 0..count {
        let field = |r: &mut Reader<'_>| -> Result<String, AmthiError> {
            let at = r.pos;
            let len = usize::from(r.u16()?);
            let chars = r.take(20)?;
            if len > 20 {
                return Err(r.malformed(HEADER_LEN + 4 + at, format!("string length {len} > 20")));
            }
            Ok(c_text(chars.get(..len).unwrap_or(&[])))
        };
        let description = field(&mut r)?;
        let version = field(&mut r)?;
        versions.push(CodeVersion {
            description,
            version,
        });
    }
    let find = |name: &str| {
        versions
            .iter()
            .find(|v| v.description == name)
            .map(|v| v.version.clone())
    };
    let amt_version = find("AMT");
    let sku = find("Sku").and_then(|s| s.trim().parse::<u32>().ok());
    let sku_kind = sku.map(|s| {
        if s & 0x08 != 0 {
            "AMT Pro"
        } else if s & 0x10 != 0 {
            "Intel Standard Manageability"
        } else {
            "other"
        }
    });
    Ok(CodeVersions {
        bios,
        versions,
        amt_version,
        sku,
        sku_kind,
    })
}

/// AMT provisioning state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisioningState {
    Pre,
    InProvisioning,
    Post,
    Unknown(u32),
}

/// AMT control mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlMode {
    None,
    ClientControl,
    AdminControl,
    Unknown(u32),
}

fn parse_u32_payload(
    structure: &'static str,
    reply: &[u8],
    command: u32,
) -> Result<u32, AmthiError> {
    let payload = parse_response(structure, reply, command)?;
    Reader::new(payload, structure)
        .u32()
        .map_err(|_| AmthiError::Truncated {
            structure,
            offset: HEADER_LEN + 4,
            need: 4,
            have: payload.len(),
        })
}

/// Parses a GetProvisioningState reply.
pub fn parse_provisioning_state(reply: &[u8]) -> Result<ProvisioningState, AmthiError> {
    let v = parse_u32_payload(
        "GetProvisioningState reply",
        reply,
        CMD_GET_PROVISIONING_STATE,
    )?;
    Ok(match v {
        0 => ProvisioningState::Pre,
        1 => ProvisioningState::InProvisioning,
        2 => ProvisioningState::Post,
        other => ProvisioningState::Unknown(other),
    })
}

/// Parses a GetControlMode reply.
pub fn parse_control_mode(reply: &[u8]) -> Result<ControlMode, AmthiError> {
    let v = parse_u32_payload("GetControlMode reply", reply, CMD_GET_CONTROL_MODE)?;
    Ok(match v {
        0 => ControlMode::None,
        1 => ControlMode::ClientControl,
        2 => ControlMode::AdminControl,
        other => ControlMode::Unknown(other),
    })
}

/// Parses a GetUUID reply to the system UUID in canonical text (first three
/// fields byte-reversed, as SMBIOS and rpc-go show it).
pub fn parse_uuid(reply: &[u8]) -> Result<String, AmthiError> {
    const S: &str = "GetUUID reply";
    let payload = parse_response(S, reply, CMD_GET_UUID)?;
    let b = Reader::new(payload, S)
        .take(16)
        .map_err(|_| AmthiError::Truncated {
            structure: S,
            offset: HEADER_LEN + 4,
            need: 16,
            have: payload.len(),
        })?;
    let hex = |r: &[u8]| r.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let rev = |r: &[u8]| {
        r.iter()
            .rev()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    Ok(format!(
        "{}-{}-{}-{}-{}",
        rev(&b[0..4]),
        rev(&b[4..6]),
        rev(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..16])
    ))
}

/// GetLanInterfaceSettings, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LanInterfaceSettings {
    pub interface: u32,
    pub enabled: bool,
    pub ipv4: String,
    pub dhcp_enabled: bool,
    /// 1 active, else passive.
    pub dhcp_mode: &'static str,
    pub link_up: bool,
    /// The ME's own MAC address (the one switch and firewall rules need).
    pub mac: String,
}

/// Parses a GetLanInterfaceSettings reply.
pub fn parse_lan_interface_settings(
    reply: &[u8],
    interface: u32,
) -> Result<LanInterfaceSettings, AmthiError> {
    const S: &str = "GetLanInterfaceSettings reply";
    let payload = parse_response(S, reply, CMD_GET_LAN_INTERFACE_SETTINGS)?;
    let mut r = Reader::new(payload, S);
    let enabled = r.u32()? != 0;
    let ip = r.u32()?;
    let dhcp_enabled = r.u32()? != 0;
    let dhcp_mode = if r.u8()? == 1 { "active" } else { "passive" };
    let link_up = r.u8()? == 1;
    let mac = r
        .take(6)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let ipv4 = std::net::Ipv4Addr::from(ip).to_string();
    Ok(LanInterfaceSettings {
        interface,
        enabled,
        ipv4,
        dhcp_enabled,
        dhcp_mode,
        link_up,
        mac,
    })
}

/// Everything the agent reads from AMTHI; each query fails on its own.
#[derive(Debug, Serialize)]
pub struct AmthiInfo {
    pub code_versions: Result<CodeVersions, String>,
    pub provisioning_state: Result<ProvisioningState, String>,
    pub control_mode: Result<ControlMode, String>,
    pub uuid: Result<String, String>,
    pub lan_wired: Result<LanInterfaceSettings, String>,
    pub lan_wireless: Result<LanInterfaceSettings, String>,
}

fn s<T>(r: Result<T, AmthiError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

/// Runs all read-only AMTHI queries over one connection. A transport
/// failure (timeout, device gone) stops the remaining queries: they get
/// the same error instead of hanging one timeout each.
pub fn query_all(t: &mut dyn MeiTransport, timeout: Duration) -> AmthiInfo {
    let mut dead: Option<String> = None;
    let mut ask = |req: Vec<u8>| -> Result<Vec<u8>, String> {
        if let Some(e) = &dead {
            return Err(format!("not asked: {e}"));
        }
        t.transact(&req, timeout).map_err(|e| {
            let msg = e.to_string();
            dead = Some(msg.clone());
            msg
        })
    };
    let code_versions =
        ask(encode_request(CMD_GET_CODE_VERSIONS, &[])).and_then(|r| s(parse_code_versions(&r)));
    let provisioning_state = ask(encode_request(CMD_GET_PROVISIONING_STATE, &[]))
        .and_then(|r| s(parse_provisioning_state(&r)));
    let control_mode =
        ask(encode_request(CMD_GET_CONTROL_MODE, &[])).and_then(|r| s(parse_control_mode(&r)));
    let uuid = ask(encode_request(CMD_GET_UUID, &[])).and_then(|r| s(parse_uuid(&r)));
    let lan_wired = ask(encode_get_lan_interface_settings(0))
        .and_then(|r| s(parse_lan_interface_settings(&r, 0)));
    let lan_wireless = ask(encode_get_lan_interface_settings(1))
        .and_then(|r| s(parse_lan_interface_settings(&r, 1)));
    AmthiInfo {
        code_versions,
        provisioning_state,
        control_mode,
        uuid,
        lan_wired,
        lan_wireless,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hw::mei::mkhi::tests::Script;

    /// A response frame: header, status, payload.
    pub fn response(command: u32, status: u32, payload: &[u8]) -> Vec<u8> {
        let mut r = vec![1, 1, 0, 0];
        r.extend_from_slice(&(command | RESPONSE_BIT).to_le_bytes());
        r.extend_from_slice(&((payload.len() + 4) as u32).to_le_bytes());
        r.extend_from_slice(&status.to_le_bytes());
        r.extend_from_slice(payload);
        r
    }

    fn versions_payload(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut p = vec![0u8; 65];
        p[..7].copy_from_slice(b"BIOS1.2");
        p.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (d, v) in entries {
            for s in [d, v] {
                p.extend_from_slice(&(s.len() as u16).to_le_bytes());
                let mut chars = [0u8; 20];
                chars[..s.len()].copy_from_slice(s.as_bytes());
                p.extend_from_slice(&chars);
            }
        }
        p
    }

    pub fn lan_payload(mac: [u8; 6], link: u8) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&0xC0A8_0164u32.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        p.push(1);
        p.push(link);
        p.extend_from_slice(&mac);
        p
    }

    #[test]
    fn request_framing() {
        assert_eq!(
            encode_request(CMD_GET_PROVISIONING_STATE, &[]),
            vec![1, 1, 0, 0, 0x11, 0, 0, 0x04, 0, 0, 0, 0]
        );
        let lan = encode_get_lan_interface_settings(1);
        assert_eq!(lan.len(), 16);
        assert_eq!(&lan[8..], &[4, 0, 0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn code_versions() {
        let p = versions_payload(&[
            ("AMT", "16.1.25"),
            ("Build Number", "1885"),
            ("Sku", "16392"),
        ]);
        let v = parse_code_versions(&response(CMD_GET_CODE_VERSIONS, 0, &p)).unwrap();
        assert_eq!(v.bios, "BIOS1.2");
        assert_eq!(v.versions.len(), 3);
        assert_eq!(v.amt_version.as_deref(), Some("16.1.25"));
        assert_eq!(v.sku, Some(16392));
        assert_eq!(v.sku_kind, Some("AMT Pro"));
    }

    #[test]
    fn code_versions_hostile() {
        let mut p = versions_payload(&[("AMT", "16.1.25")]);
        // Count says 51.
        p[65] = 51;
        let err = parse_code_versions(&response(CMD_GET_CODE_VERSIONS, 0, &p)).unwrap_err();
        assert!(
            matches!(err, AmthiError::Malformed { offset: 81, .. }),
            "{err}"
        );
        // Count 2 but only one entry present.
        let mut p = versions_payload(&[("AMT", "16.1.25")]);
        p[65] = 2;
        let err = parse_code_versions(&response(CMD_GET_CODE_VERSIONS, 0, &p)).unwrap_err();
        assert!(matches!(err, AmthiError::Truncated { .. }));
        // String length beyond its 20-byte field.
        let mut p = versions_payload(&[("AMT", "16.1.25")]);
        p[69] = 21;
        assert!(parse_code_versions(&response(CMD_GET_CODE_VERSIONS, 0, &p)).is_err());
    }

    #[test]
    fn header_and_status_checks() {
        let ok = response(CMD_GET_CONTROL_MODE, 0, &1u32.to_le_bytes());
        assert_eq!(parse_control_mode(&ok).unwrap(), ControlMode::ClientControl);
        // Wrong command echoed.
        let wrong = response(CMD_GET_UUID, 0, &1u32.to_le_bytes());
        assert!(matches!(
            parse_control_mode(&wrong).unwrap_err(),
            AmthiError::Malformed { offset: 4, .. }
        ));
        // Declared length longer than the reply.
        let mut long = ok.clone();
        long[8] = 200;
        assert!(matches!(
            parse_control_mode(&long).unwrap_err(),
            AmthiError::Truncated { offset: 12, .. }
        ));
        // AMT disabled.
        let off = response(CMD_GET_CONTROL_MODE, 0x4000, &[]);
        let err = parse_control_mode(&off).unwrap_err();
        assert!(err.to_string().contains("AMT is disabled"));
        // Status only, no value.
        let empty = response(CMD_GET_CONTROL_MODE, 0, &[]);
        assert!(matches!(
            parse_control_mode(&empty).unwrap_err(),
            AmthiError::Truncated { offset: 16, .. }
        ));
        assert!(parse_control_mode(&[]).is_err());
    }

    #[test]
    fn provisioning_uuid_and_lan() {
        let r = response(CMD_GET_PROVISIONING_STATE, 0, &2u32.to_le_bytes());
        assert_eq!(
            parse_provisioning_state(&r).unwrap(),
            ProvisioningState::Post
        );
        let uuid: [u8; 16] = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD,
            0xEE, 0xFF,
        ];
        let r = response(CMD_GET_UUID, 0, &uuid);
        assert_eq!(
            parse_uuid(&r).unwrap(),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
        let r = response(
            CMD_GET_LAN_INTERFACE_SETTINGS,
            0,
            &lan_payload([0x00, 0x1B, 0x21, 0xAA, 0xBB, 0xCC], 1),
        );
        let lan = parse_lan_interface_settings(&r, 0).unwrap();
        assert_eq!(lan.mac, "00:1b:21:aa:bb:cc");
        assert_eq!(lan.ipv4, "192.168.1.100");
        assert!(lan.link_up && lan.dhcp_enabled && lan.enabled);
        assert_eq!(lan.dhcp_mode, "active");
        let short = response(CMD_GET_LAN_INTERFACE_SETTINGS, 0, &[0; 17]);
        assert!(matches!(
            parse_lan_interface_settings(&short, 0).unwrap_err(),
            AmthiError::Truncated { .. }
        ));
    }

    #[test]
    fn query_all_stops_after_a_timeout() {
        let mut s = Script {
            replies: vec![Ok(response(
                CMD_GET_CODE_VERSIONS,
                0,
                &versions_payload(&[("AMT", "11.8.50")]),
            ))],
            requests: vec![],
        };
        let info = query_all(&mut s, Duration::from_millis(10));
        assert!(info.code_versions.is_ok());
        assert!(info.provisioning_state.unwrap_err().contains("no reply"));
        assert!(info.lan_wireless.unwrap_err().starts_with("not asked"));
        assert_eq!(s.requests.len(), 2, "no more requests after the timeout");
    }
}

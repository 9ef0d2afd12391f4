//! The scenario file: what the emulated ME looks like and how it misbehaves.
//!
//! A scenario is TOML (see `docs/test-node.md` and `qemu/scenarios/`). Every
//! field has a default that describes a healthy CSME 11 part with AMT present
//! and unprovisioned, so a scenario only states what it changes.

use serde::Deserialize;
use std::path::Path;

/// Errors reading or validating a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("reading scenario {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scenario is not valid TOML for the schema: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("scenario field {field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: &str, reason: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name for logs.
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default)]
    pub pci: Pci,
    #[serde(default)]
    pub firmware: Firmware,
    #[serde(default)]
    pub mkhi: Mkhi,
    /// AMT; `None` (no `[amt]` table and `amt.present = false`) means the
    /// AMTHI client is not enumerated, as on parts without AMT.
    #[serde(default)]
    pub amt: Amt,
    /// Misbehaviour to inject, in order of precedence.
    #[serde(default)]
    pub faults: Vec<Fault>,
}

fn default_name() -> String {
    "default".into()
}

/// PCI identity and the firmware status registers in config space.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pci {
    /// PCI device ID (vendor is always Intel 0x8086). It must be one `mei_me`
    /// knows; the default 0x9D3A is Sunrise Point-LP (CSME 11, 6 HFSTS registers).
    #[serde(default = "default_device_id")]
    pub device_id: u16,
    #[serde(default = "default_revision")]
    pub revision: u8,
    /// HFSTS1..6 (config offsets 0x40, 0x48, 0x60, 0x64, 0x68, 0x6C).
    #[serde(default = "default_hfsts")]
    pub hfsts: [u32; 6],
}

fn default_device_id() -> u16 {
    0x9D3A
}
fn default_revision() -> u8 {
    0x21
}
fn default_hfsts() -> [u32; 6] {
    // CSME 11, normal: working state 5, FW init complete, operation mode 0.
    // Bit 31 (D0i3 supported) stays clear: the D0i3 register is not emulated.
    [0x0000_0245, 0x8910_0116, 0x20, 0x4000, 0, 0x4000_0000]
}

impl Default for Pci {
    fn default() -> Self {
        Pci {
            device_id: default_device_id(),
            revision: default_revision(),
            hfsts: default_hfsts(),
        }
    }
}

/// Firmware versions answered to MKHI GET_FW_VERSION (and, through the kernel's
/// own query at probe, shown in sysfs `fw_ver`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firmware {
    /// "major.minor.hotfix.build", e.g. "11.8.50.3425".
    #[serde(default = "default_version")]
    pub code: String,
    /// Defaults to `code`.
    pub recovery: Option<String>,
    /// Defaults to `code`.
    pub fitc: Option<String>,
    /// The "platform" byte (high byte of the major field); sysfs shows it before ':'.
    #[serde(default)]
    pub platform: u8,
}

fn default_version() -> String {
    "11.8.50.3425".into()
}

impl Default for Firmware {
    fn default() -> Self {
        Firmware {
            code: default_version(),
            recovery: None,
            fitc: None,
            platform: 0,
        }
    }
}

/// One firmware version: what MKHI carries per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwVersion {
    pub major: u8,
    pub minor: u16,
    pub hotfix: u16,
    pub build: u16,
}

impl FwVersion {
    /// Parses "major.minor.hotfix.build" (all decimal).
    pub fn parse(field: &str, s: &str) -> Result<FwVersion, ScenarioError> {
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 4 {
            return Err(invalid(
                field,
                format!("{s:?} is not major.minor.hotfix.build"),
            ));
        }
        let num = |i: usize| -> Result<u16, ScenarioError> {
            parts
                .get(i)
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| invalid(field, format!("{s:?}: part {} is not a number", i + 1)))
        };
        let major = u8::try_from(num(0)?).map_err(|_| invalid(field, "major above 255"))?;
        Ok(FwVersion {
            major,
            minor: num(1)?,
            hotfix: num(2)?,
            build: num(3)?,
        })
    }
}

/// MKHI answers beyond the firmware version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mkhi {
    /// FWCAPS rule 0: features the SKU is capable of (bit 2 = AMT).
    #[serde(default = "default_features")]
    pub features_capable: u32,
    /// FWCAPS rule 0x20: features enabled.
    #[serde(default = "default_features")]
    pub features_enabled: u32,
    /// FWCAPS rule 0x1D: platform type (bits 15:12 brand, 1 = AMT).
    #[serde(default = "default_platform_type")]
    pub platform_type: u32,
    /// FWCAPS rule 7: firmware update state (0 disabled, 1 enabled, 2 password).
    #[serde(default = "one")]
    pub fw_update_state: u32,
    /// HMRFPO GET_STATUS: 0 disabled, 1 locked, 2 enabled.
    #[serde(default)]
    pub hmrfpo_status: u8,
}

fn default_features() -> u32 {
    // full network, AMT, KVM, TLS, ...
    0x0024_1005
}
fn default_platform_type() -> u32 {
    0x0000_1401
}
fn one() -> u32 {
    1
}

impl Default for Mkhi {
    fn default() -> Self {
        Mkhi {
            features_capable: default_features(),
            features_enabled: default_features(),
            platform_type: default_platform_type(),
            fw_update_state: 1,
            hmrfpo_status: 0,
        }
    }
}

/// The AMT host interface (AMTHI) client's state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Amt {
    /// Whether the AMTHI client is enumerated at all.
    #[serde(default = "yes")]
    pub present: bool,
    /// 0 pre-provisioning, 1 in provisioning, 2 post-provisioning.
    #[serde(default)]
    pub provisioning_state: u32,
    /// 0 none, 1 client control mode, 2 admin control mode.
    #[serde(default)]
    pub control_mode: u32,
    /// The system UUID, canonical text form.
    #[serde(default = "default_uuid")]
    pub uuid: String,
    #[serde(default = "default_bios")]
    pub bios_version: String,
    /// GetCodeVersions entries: [description, version] pairs.
    #[serde(default = "default_code_versions")]
    pub code_versions: Vec<(String, String)>,
    /// GetLanInterfaceSettings, index 0 wired, 1 wireless.
    #[serde(default = "default_lan")]
    pub lan: Vec<Lan>,
    /// AMT 19+: local ports TLS only (IsChangeToAMTEnabled bit 6; the LME
    /// forwards 16993/664). TLS over APF is not emulated.
    #[serde(default)]
    pub tls_enforced: bool,
    /// AMT enabled (operational state, ME >= 16.1).
    #[serde(default = "yes")]
    pub operational: bool,
    /// SetAmtOperationalState allowed (IsChangeToAMTEnabled bit 0).
    #[serde(default = "yes")]
    pub change_allowed: bool,
    /// Whether the ME offers the "state independence" client (watchdog GUID,
    /// IsChangeToAMTEnabled); default: firmware 16.1 or newer.
    pub state_independence: Option<bool>,
    /// Provisioned scenarios: the admin password someone else set (default:
    /// a random one nobody knows).
    pub admin_password: Option<String>,
    /// The digest realm (default: "Digest:" + 32 random hex digits, fixed
    /// in the state file).
    pub realm: Option<String>,
    /// AMT_GeneralSettings.HostName.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// What the LME does after a CHANNEL_CLOSE: "keep", "reset" or
    /// "disconnect" (docs/test-node.md).
    #[serde(default = "default_on_close")]
    pub lme_on_channel_close: crate::amt::OnChannelClose,
    /// The receive window the LME grants per channel (bytes).
    #[serde(default = "default_window")]
    pub lme_window: u32,
}

fn default_hostname() -> String {
    "fortros-node".into()
}
fn default_on_close() -> crate::amt::OnChannelClose {
    crate::amt::OnChannelClose::Disconnect
}
fn default_window() -> u32 {
    4096
}

fn yes() -> bool {
    true
}
fn default_uuid() -> String {
    "4c4c4544-0042-3510-8052-b4c04f333232".into()
}
fn default_bios() -> String {
    "FORTROS.TEST.BIOS.0001".into()
}
fn default_code_versions() -> Vec<(String, String)> {
    vec![
        ("AMT".into(), "11.8.50".into()),
        ("Build Number".into(), "3425".into()),
        ("Sku".into(), "16392".into()),
    ]
}
fn default_lan() -> Vec<Lan> {
    vec![Lan::default()]
}

impl Default for Amt {
    fn default() -> Self {
        Amt {
            present: true,
            provisioning_state: 0,
            control_mode: 0,
            uuid: default_uuid(),
            bios_version: default_bios(),
            code_versions: default_code_versions(),
            lan: default_lan(),
            tls_enforced: false,
            operational: true,
            change_allowed: true,
            state_independence: None,
            admin_password: None,
            realm: None,
            hostname: default_hostname(),
            lme_on_channel_close: default_on_close(),
            lme_window: default_window(),
        }
    }
}

/// One network interface as AMT reports it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lan {
    /// 0 wired, 1 wireless.
    #[serde(default)]
    pub index: u32,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Dotted IPv4, "0.0.0.0" when none.
    #[serde(default = "default_ip")]
    pub ipv4: String,
    #[serde(default = "yes")]
    pub dhcp: bool,
    /// 1 active, 2 passive.
    #[serde(default = "one_u8")]
    pub dhcp_mode: u8,
    #[serde(default = "yes")]
    pub link_up: bool,
    /// "aa:bb:cc:dd:ee:ff"
    #[serde(default = "default_mac")]
    pub mac: String,
}

fn default_ip() -> String {
    "0.0.0.0".into()
}
fn one_u8() -> u8 {
    1
}
fn default_mac() -> String {
    "02:46:52:54:4f:53".into()
}

impl Default for Lan {
    fn default() -> Self {
        Lan {
            index: 0,
            enabled: true,
            ipv4: default_ip(),
            dhcp: true,
            dhcp_mode: 1,
            link_up: true,
            mac: default_mac(),
        }
    }
}

/// Which ME client a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultClient {
    /// The MKHI client user space connects to.
    Mkhi,
    /// The MKHI "fix" client the kernel queries at probe (sysfs fw_ver).
    MkhiFix,
    Amthi,
    /// Faults on the LME are not applied (its answers are a session, not
    /// one reply); the variant exists so scenarios can name every client.
    Lme,
    StateIndependence,
}

/// What the ME does instead of a good reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Swallow the request: no reply ever comes.
    Timeout,
    /// Reply with only the first 2 bytes of the real reply.
    Truncate,
    /// Reply with a header that does not match the request (wrong command).
    BadHeader,
    /// Reply with the header's status/result set to `status`.
    Status,
    /// The ME resets itself (drops ME_RDY) instead of answering.
    Reset,
}

/// One injected fault.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub client: FaultClient,
    pub action: FaultAction,
    /// For `status`: the MKHI result byte or AMTHI status word.
    #[serde(default)]
    pub status: u32,
    /// Let this many matching requests through before the fault applies.
    #[serde(default)]
    pub after: u32,
    /// Apply this many times (default: every matching request).
    pub times: Option<u32>,
}

/// The scenario with its text fields checked and converted.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub scenario: Scenario,
    pub code: FwVersion,
    pub recovery: FwVersion,
    pub fitc: FwVersion,
    /// uuid in AMTHI byte order (mixed endian, like uuid_le).
    pub amt_uuid: [u8; 16],
    pub lan: Vec<ResolvedLan>,
}

#[derive(Debug, Clone)]
pub struct ResolvedLan {
    pub index: u32,
    pub enabled: bool,
    pub ipv4: u32,
    pub dhcp: bool,
    pub dhcp_mode: u8,
    pub link_up: bool,
    pub mac: [u8; 6],
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: default_name(),
            pci: Pci::default(),
            firmware: Firmware::default(),
            mkhi: Mkhi::default(),
            amt: Amt::default(),
            faults: Vec::new(),
        }
    }
}

impl Scenario {
    /// Parses scenario TOML text.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        Ok(toml::from_str(text)?)
    }

    /// Reads a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::from_toml(&text)
    }

    /// Checks and converts the text fields.
    pub fn resolve(self) -> Result<Resolved, ScenarioError> {
        let code = FwVersion::parse("firmware.code", &self.firmware.code)?;
        let recovery = match &self.firmware.recovery {
            Some(v) => FwVersion::parse("firmware.recovery", v)?,
            None => code,
        };
        let fitc = match &self.firmware.fitc {
            Some(v) => FwVersion::parse("firmware.fitc", v)?,
            None => code,
        };
        let amt_uuid = parse_uuid_le("amt.uuid", &self.amt.uuid)?;
        let mut lan = Vec::new();
        for (i, l) in self.amt.lan.iter().enumerate() {
            let f = |name: &str| format!("amt.lan[{i}].{name}");
            lan.push(ResolvedLan {
                index: l.index,
                enabled: l.enabled,
                ipv4: parse_ipv4(&f("ipv4"), &l.ipv4)?,
                dhcp: l.dhcp,
                dhcp_mode: l.dhcp_mode,
                link_up: l.link_up,
                mac: parse_mac(&f("mac"), &l.mac)?,
            });
        }
        for (i, (d, v)) in self.amt.code_versions.iter().enumerate() {
            if d.len() > 20 || v.len() > 20 {
                return Err(invalid(
                    &format!("amt.code_versions[{i}]"),
                    "description and version are at most 20 bytes",
                ));
            }
        }
        if self.amt.bios_version.len() > 64 {
            return Err(invalid("amt.bios_version", "at most 64 bytes"));
        }
        Ok(Resolved {
            scenario: self,
            code,
            recovery,
            fitc,
            amt_uuid,
            lan,
        })
    }
}

impl Resolved {
    /// Whether the ME offers the state-independence (watchdog GUID) client:
    /// as the scenario says, else on firmware 16.1 and newer.
    pub fn has_state_independence(&self) -> bool {
        let a = &self.scenario.amt;
        a.present
            && a.state_independence
                .unwrap_or(self.code.major > 16 || (self.code.major == 16 && self.code.minor >= 1))
    }
}

/// Parses a canonical UUID into the mixed-endian byte order MEI uses
/// (first three fields little-endian, the rest as written).
pub fn parse_uuid_le(field: &str, s: &str) -> Result<[u8; 16], ScenarioError> {
    let hex: Vec<u8> = s.bytes().filter(|c| *c != b'-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return Err(invalid(field, format!("{s:?} is not a canonical UUID")));
    }
    let mut b = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).map_err(|_| invalid(field, "not ASCII"))?;
        let v = u8::from_str_radix(text, 16)
            .map_err(|_| invalid(field, format!("{s:?} has non-hex digits")))?;
        if let Some(slot) = b.get_mut(i) {
            *slot = v;
        }
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    Ok(b)
}

fn parse_ipv4(field: &str, s: &str) -> Result<u32, ScenarioError> {
    let ip: std::net::Ipv4Addr = s
        .parse()
        .map_err(|_| invalid(field, format!("{s:?} is not a dotted IPv4 address")))?;
    Ok(u32::from(ip))
}

fn parse_mac(field: &str, s: &str) -> Result<[u8; 6], ScenarioError> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(invalid(field, format!("{s:?} is not aa:bb:cc:dd:ee:ff")));
    }
    let mut mac = [0u8; 6];
    for (slot, p) in mac.iter_mut().zip(&parts) {
        *slot = u8::from_str_radix(p, 16)
            .map_err(|_| invalid(field, format!("{s:?} is not aa:bb:cc:dd:ee:ff")))?;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_scenario_is_a_healthy_csme11_with_unprovisioned_amt() {
        let r = Scenario::from_toml("").unwrap().resolve().unwrap();
        assert_eq!(r.scenario.pci.device_id, 0x9D3A);
        assert_eq!(
            r.code,
            FwVersion {
                major: 11,
                minor: 8,
                hotfix: 50,
                build: 3425
            }
        );
        assert_eq!(r.recovery, r.code);
        assert!(r.scenario.amt.present);
        assert_eq!(r.scenario.amt.provisioning_state, 0);
    }

    #[test]
    fn full_scenario_parses() {
        let text = r#"
name = "amt-provisioned"
[pci]
device_id = 0x51E0
hfsts = [0x94000255, 0x0, 0x0, 0x0, 0x0, 0x0]
[firmware]
code = "16.1.25.2148"
fitc = "16.0.0.1"
platform = 1
[amt]
provisioning_state = 2
control_mode = 1
lan = [{ mac = "00:11:22:33:44:55", ipv4 = "10.0.2.15", link_up = false }]
[[faults]]
client = "amthi"
action = "status"
status = 2
after = 1
times = 1
"#;
        let r = Scenario::from_toml(text).unwrap().resolve().unwrap();
        assert_eq!(r.scenario.pci.hfsts[0], 0x9400_0255);
        assert_eq!(r.code.major, 16);
        assert_eq!(r.fitc.build, 1);
        assert_eq!(r.lan[0].mac, [0, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(r.lan[0].ipv4, 0x0A00_020F);
        assert_eq!(r.scenario.faults[0].action, FaultAction::Status);
    }

    #[test]
    fn bad_fields_are_named() {
        let e = Scenario::from_toml("[firmware]\ncode = \"11.8\"")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("firmware.code"), "{e}");
        let e = Scenario::from_toml("[amt]\nuuid = \"zz\"")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("amt.uuid"), "{e}");
        assert!(Scenario::from_toml("[pci]\nbogus = 1").is_err());
    }

    #[test]
    fn uuid_is_mixed_endian() {
        let b = parse_uuid_le("u", "12f80028-b4b7-4b2d-aca8-46e0ff65814c").unwrap();
        assert_eq!(
            b,
            [
                0x28, 0x00, 0xF8, 0x12, 0xB7, 0xB4, 0x2D, 0x4B, 0xAC, 0xA8, 0x46, 0xE0, 0xFF, 0x65,
                0x81, 0x4C
            ]
        );
    }
}

#[cfg(test)]
mod shipped_scenarios {
    use super::*;

    #[test]
    fn every_scenario_file_in_qemu_scenarios_resolves() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
            assert_eq!(s.name, stem, "{}: name matches the file", path.display());
            s.resolve()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
        assert!(n >= 5, "found {n} scenarios in {}", dir.display());
    }
}

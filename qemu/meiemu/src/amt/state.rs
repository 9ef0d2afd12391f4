//! AMT state that survives QEMU reboots and emulator restarts, kept in a JSON
//! state file (`meiemu --state PATH`). Written whole to a temporary file and
//! renamed over the old one, so a crash never leaves half a file.

use crate::scenario::Resolved;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// AMT_RedirectionService.EnabledState: 32768 IDER and SOL disabled,
/// 32769 IDER, 32770 SOL, 32771 both.
pub const REDIRECTION_DISABLED: u32 = 32768;

/// Errors reading or writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("AMT state file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("AMT state file {path}: not valid state JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
}

/// The wired interface as AMT_EthernetPortSettings shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ethernet {
    pub mac: String,
    pub link_up: bool,
    pub dhcp_enabled: bool,
    pub ip_sync_enabled: bool,
    pub shared_static_ip: bool,
    pub shared_mac: bool,
    pub ip_address: String,
    pub subnet_mask: String,
    pub default_gateway: String,
    pub primary_dns: String,
    pub secondary_dns: String,
}

/// Everything the ME keeps in its flash about AMT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmtState {
    /// 0 pre-provisioning, 1 in provisioning, 2 post-provisioning.
    pub provisioning_state: u32,
    /// 0 none, 1 client control mode, 2 admin control mode.
    pub control_mode: u32,
    /// hex(MD5("admin:" + realm + ":" + password)), as Setup sent it.
    pub admin_digest_a1: Option<String>,
    /// "Digest:" + 32 hex digits, fixed per part.
    pub realm: String,
    /// AMT enabled (the ME ≥ 16.1 operational state).
    pub operational: bool,
    pub ethernet: Ethernet,
    pub redirection_state: u32,
    pub redirection_listener: bool,
    pub kvm_enabled: bool,
}

impl AmtState {
    /// The state a scenario starts with.
    pub fn seed(s: &Resolved) -> AmtState {
        let amt = &s.scenario.amt;
        let realm = amt
            .realm
            .clone()
            .unwrap_or_else(|| format!("Digest:{}", super::random_hex(16).to_uppercase()));
        // Provisioned by someone else: their password, when the scenario
        // names it, else one nobody knows.
        let admin_digest_a1 = if amt.provisioning_state == 0 {
            None
        } else {
            let pw = amt
                .admin_password
                .clone()
                .unwrap_or_else(|| super::random_hex(16));
            Some(super::md5_hex(&format!("admin:{realm}:{pw}")))
        };
        let lan = s.lan.iter().find(|l| l.index == 0);
        let mac = lan
            .map(|l| {
                l.mac
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join("-")
            })
            .unwrap_or_else(|| "00-00-00-00-00-00".into());
        let ip = lan
            .map(|l| std::net::Ipv4Addr::from(l.ipv4).to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        AmtState {
            provisioning_state: amt.provisioning_state,
            control_mode: amt.control_mode,
            admin_digest_a1,
            realm,
            operational: amt.operational,
            ethernet: Ethernet {
                mac,
                link_up: lan.is_some_and(|l| l.link_up),
                dhcp_enabled: lan.map_or(true, |l| l.dhcp),
                ip_sync_enabled: true,
                shared_static_ip: false,
                shared_mac: true,
                ip_address: ip,
                subnet_mask: String::new(),
                default_gateway: String::new(),
                primary_dns: String::new(),
                secondary_dns: String::new(),
            },
            redirection_state: REDIRECTION_DISABLED,
            redirection_listener: false,
            kvm_enabled: false,
        }
    }

    /// A log line without the admin hash.
    pub fn summary(&self) -> String {
        format!(
            "provisioning_state {} control_mode {} admin {} operational {}",
            self.provisioning_state,
            self.control_mode,
            if self.admin_digest_a1.is_some() {
                "set"
            } else {
                "unset"
            },
            self.operational
        )
    }
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: std::io::Error) -> StateError {
        StateError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// The stored state, or `None` when the file does not exist yet.
    pub fn load(&self) -> Result<Option<AmtState>, StateError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StateError::Json {
                path: self.path.display().to_string(),
                source,
            })
    }

    pub fn save(&self, s: &AmtState) -> Result<(), StateError> {
        let text = serde_json::to_string_pretty(s).map_err(|source| StateError::Json {
            path: self.path.display().to_string(),
            source,
        })?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        std::fs::write(&tmp, text + "\n").map_err(|e| self.err(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    #[test]
    fn seeded_state_round_trips_through_the_file() {
        let dir = std::env::temp_dir().join(format!("meiemu-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = StateFile::new(dir.join("amt.json"));
        let _ = std::fs::remove_file(f.path());
        assert!(f.load().unwrap().is_none());
        let s = Scenario::from_toml("[amt]\nprovisioning_state = 2\ncontrol_mode = 1\nadmin_password = \"P@ssw0rd!\"\nrealm = \"Digest:00112233445566778899AABBCCDDEEFF\"")
            .unwrap()
            .resolve()
            .unwrap();
        let st = AmtState::seed(&s);
        assert_eq!(
            st.admin_digest_a1.as_deref(),
            Some(
                crate::amt::md5_hex("admin:Digest:00112233445566778899AABBCCDDEEFF:P@ssw0rd!")
                    .as_str()
            )
        );
        assert_eq!(st.ethernet.mac, "02-46-52-54-4f-53");
        f.save(&st).unwrap();
        assert_eq!(f.load().unwrap(), Some(st));
        std::fs::write(f.path(), "{").unwrap();
        let e = f.load().unwrap_err().to_string();
        assert!(e.contains("amt.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

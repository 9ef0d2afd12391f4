//! The org's settings (`org.toml` in the org folder). Every field has a
//! safe default: loopback only, operator approval required.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "org.toml";
pub const DATABASE_FILE: &str = "registry.sqlite";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrgConfig {
    /// Address the enrollment service listens on.
    pub listen: String,
    /// Approve first enrollments without an operator.
    pub auto_approve: bool,
    /// Seconds a nonce (and a credential challenge) stays valid.
    pub nonce_ttl_secs: u32,
    /// PEM bundle(s) of EK root CAs; when empty, EK certificates are not
    /// required (recorded as "unchecked" on the node).
    pub ek_roots: Vec<PathBuf>,
    /// PEM bundle(s) of EK intermediate CAs.
    pub ek_intermediates: Vec<PathBuf>,
    /// TLS certificate chain and key (PEM); both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for OrgConfig {
    fn default() -> Self {
        OrgConfig {
            listen: "127.0.0.1:8443".into(),
            auto_approve: false,
            nonce_ttl_secs: 300,
            ek_roots: vec![],
            ek_intermediates: vec![],
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl OrgConfig {
    /// Reads `org.toml` from the folder; defaults when absent.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let path = dir.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        let cfg: OrgConfig = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if cfg.tls_cert.is_some() != cfg.tls_key.is_some() {
            return Err(ConfigError::Invalid {
                path,
                reason: "tls_cert and tls_key go together".into(),
            });
        }
        // Relative CA paths are relative to the org folder.
        let abs = |p: &PathBuf| {
            if p.is_relative() {
                dir.join(p)
            } else {
                p.clone()
            }
        };
        Ok(OrgConfig {
            ek_roots: cfg.ek_roots.iter().map(abs).collect(),
            ek_intermediates: cfg.ek_intermediates.iter().map(abs).collect(),
            tls_cert: cfg.tls_cert.as_ref().map(abs),
            tls_key: cfg.tls_key.as_ref().map(abs),
            ..cfg
        })
    }

    /// Writes the default file for `init`, unless one exists.
    pub fn write_default(dir: &Path) -> Result<(), ConfigError> {
        let path = dir.join(CONFIG_FILE);
        if path.exists() {
            return Ok(());
        }
        let text = format!(
            "# FortrOS org settings (see docs/operator-guide.md)\n{}",
            toml::to_string(&Self::default()).unwrap_or_default()
        );
        std::fs::write(&path, text).map_err(|source| ConfigError::Io { path, source })
    }
}

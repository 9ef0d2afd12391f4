//! The org's key folder:
//! - `org.key`: the ed25519 signing key for policies (32-byte seed, 0600);
//! - `org.pub`: its public half (hex), to put in every node's initramfs;
//! - `secrets.key`: the XChaCha20-Poly1305 key that encrypts AMT admin
//!   credentials at rest in the registry (0600).
//!
//! `init` refuses to overwrite existing keys: losing the org key means
//! every node must be re-provisioned with a new public key.

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::{OsRng, RngCore};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const SIGNING_KEY_FILE: &str = "org.key";
pub const PUBLIC_KEY_FILE: &str = "org.pub";
pub const SECRETS_KEY_FILE: &str = "secrets.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: already exists; refusing to replace the org's keys")]
    Exists { path: PathBuf },
    #[error("{path}: {len} bytes, expected a 32-byte key")]
    Length { path: PathBuf, len: usize },
    #[error("{path}: readable by group or others (mode {mode:o}); chmod 600 it")]
    Permissions { path: PathBuf, mode: u32 },
}

/// The org's secret keys, loaded.
pub struct OrgKeys {
    pub signing: SigningKey,
    pub secrets: [u8; 32],
}

impl OrgKeys {
    pub fn verifying(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Fresh keys (for tests and benchmarks that need no folder).
    pub fn generate() -> Self {
        let mut secrets = [0u8; 32];
        OsRng.fill_bytes(&mut secrets);
        OrgKeys {
            signing: SigningKey::generate(&mut OsRng),
            secrets,
        }
    }

    /// Creates the three key files in `dir` (which may exist).
    pub fn init(dir: &Path) -> Result<Self, KeyError> {
        fs::create_dir_all(dir).map_err(|source| KeyError::Io {
            path: dir.into(),
            source,
        })?;
        for f in [SIGNING_KEY_FILE, SECRETS_KEY_FILE, PUBLIC_KEY_FILE] {
            let p = dir.join(f);
            if p.exists() {
                return Err(KeyError::Exists { path: p });
            }
        }
        let keys = Self::generate();
        write_secret(&dir.join(SIGNING_KEY_FILE), keys.signing.as_bytes())?;
        write_secret(&dir.join(SECRETS_KEY_FILE), &keys.secrets)?;
        let pub_path = dir.join(PUBLIC_KEY_FILE);
        fs::write(
            &pub_path,
            format!("{}\n", hex::encode(keys.verifying().as_bytes())),
        )
        .map_err(|source| KeyError::Io {
            path: pub_path,
            source,
        })?;
        Ok(keys)
    }

    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let seed = read_secret(&dir.join(SIGNING_KEY_FILE))?;
        let secrets = read_secret(&dir.join(SECRETS_KEY_FILE))?;
        Ok(OrgKeys {
            signing: SigningKey::from_bytes(&seed),
            secrets,
        })
    }
}

fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.into(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

fn read_secret(path: &Path) -> Result<[u8; 32], KeyError> {
    use std::os::unix::fs::MetadataExt;
    let io = |source| KeyError::Io {
        path: path.into(),
        source,
    };
    let mode = fs::metadata(path).map_err(io)?.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.into(),
            mode,
        });
    }
    let bytes = fs::read(path).map_err(io)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Length {
        path: path.into(),
        len: bytes.len(),
    })
}

/// Reads an org public key written by `init` (hex, 64 digits).
pub fn read_public(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.into(),
        source,
    })?;
    let bytes = hex::decode(text.trim()).unwrap_or_default();
    let arr = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Length {
        path: path.into(),
        len: bytes.len(),
    })?;
    VerifyingKey::from_bytes(&arr).map_err(|_| KeyError::Length {
        path: path.into(),
        len: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_load_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let k = OrgKeys::init(dir.path()).unwrap();
        let l = OrgKeys::load(dir.path()).unwrap();
        assert_eq!(k.verifying(), l.verifying());
        assert_eq!(k.secrets, l.secrets);
        assert_eq!(
            read_public(&dir.path().join(PUBLIC_KEY_FILE)).unwrap(),
            k.verifying()
        );
        assert!(matches!(
            OrgKeys::init(dir.path()),
            Err(KeyError::Exists { .. })
        ));
    }

    #[test]
    fn world_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        OrgKeys::init(dir.path()).unwrap();
        let p = dir.path().join(SIGNING_KEY_FILE);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            OrgKeys::load(dir.path()),
            Err(KeyError::Permissions { .. })
        ));
    }
}

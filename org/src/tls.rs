//! TLS for the enrollment service (rustls with the ring provider): the
//! certificate chain and key from org.toml's `tls_cert` / `tls_key`, the
//! certificate's SHA-256 fingerprint that nodes pin (`org_cert_sha256` in
//! agent.toml), and a self-signed certificate for `fortros-org init
//! --tls-self-signed HOST`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls_cert {}: {reason}", path.display())]
    Cert { path: PathBuf, reason: String },
    #[error("tls_key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error(
        "tls_key {} does not belong to tls_cert {} (certificate SHA-256 {fingerprint})",
        key.display(),
        cert.display()
    )]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        fingerprint: String,
    },
    #[error("TLS: {0}")]
    Rustls(String),
    #[error("self-signed certificate for {host:?}: {reason}")]
    SelfSigned { host: String, reason: String },
}

/// Hex SHA-256 of a certificate (DER): what agent.toml's
/// `org_cert_sha256` pins.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A loaded server configuration and the fingerprint of its certificate.
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub fingerprint: String,
}

/// Reads the PEM chain (leaf first) and key, checks that the key is the
/// leaf's, and builds the rustls server configuration.
pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: cert.to_path_buf(),
        reason,
    };
    let key_err = |reason: String| TlsError::Key {
        path: key.to_path_buf(),
        reason,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| cert_err(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(format!("not a PEM certificate file: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(cert_err("no CERTIFICATE in the file".into()));
    };
    let fingerprint = fingerprint(leaf);
    let key_pem = std::fs::read(key).map_err(|e| key_err(e.to_string()))?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| key_err(format!("no private key in the file: {e}")))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing = provider
        .key_provider
        .load_private_key(private.clone_key())
        .map_err(|e| key_err(format!("unusable private key: {e}")))?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    // The key must be the one the certificate names: otherwise every
    // handshake would fail, or worse, a wrong file would go unnoticed.
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::Mismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                fingerprint,
            })
        }
        Err(e) => return Err(key_err(format!("cannot compare with the certificate: {e}"))),
    }
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(ServerTls {
        config: Arc::new(config),
        fingerprint,
    })
}

/// A self-signed certificate (PEM), its key (PEM) and its fingerprint, for
/// `host` (a DNS name or an IP address, which becomes the subject
/// alternative name nodes connect to).
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
    pub fingerprint: String,
}

pub fn self_signed(host: &str) -> Result<SelfSigned, TlsError> {
    let made = rcgen::generate_simple_self_signed(vec![host.to_string()]).map_err(|e| {
        TlsError::SelfSigned {
            host: host.to_string(),
            reason: e.to_string(),
        }
    })?;
    Ok(SelfSigned {
        cert_pem: made.cert.pem(),
        key_pem: made.key_pair.serialize_pem(),
        fingerprint: fingerprint(made.cert.der()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn loads_a_self_signed_pair_and_refuses_a_foreign_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = self_signed("127.0.0.1").unwrap();
        let b = self_signed("127.0.0.1").unwrap();
        let cert = write(dir.path(), "a.pem", &a.cert_pem);
        let key_a = write(dir.path(), "a.key", &a.key_pem);
        let key_b = write(dir.path(), "b.key", &b.key_pem);
        let tls = load(&cert, &key_a).unwrap();
        assert_eq!(tls.fingerprint, a.fingerprint);
        match load(&cert, &key_b) {
            Err(e @ TlsError::Mismatch { .. }) => {
                let m = e.to_string();
                assert!(
                    m.contains("does not belong") && m.contains(&a.fingerprint),
                    "{m}"
                );
            }
            Err(e) => panic!("expected a key mismatch, got {e}"),
            Ok(_) => panic!("a foreign key was accepted"),
        }
    }

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = self_signed("org.example").unwrap();
        let cert = write(dir.path(), "a.pem", &a.cert_pem);
        let empty = write(dir.path(), "empty.pem", "");
        let e = load(&cert, &dir.path().join("none.key")).err().unwrap();
        assert!(
            matches!(e, TlsError::Key { .. }) && e.to_string().contains("none.key"),
            "{e}"
        );
        let e = load(&empty, &cert).err().unwrap();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
        let e = load(&cert, &cert).err().unwrap();
        assert!(e.to_string().contains("no private key"), "{e}");
    }
}

//! The org's side of Intel AMT: the credentials it holds per node and
//! out-of-band power control through them.
//!
//! - A node that generates its AMT admin password seals it to the org's
//!   X25519 key (`fortros_amt::seal`). That key is derived from
//!   `secrets.key` (HKDF), so it needs no file of its own; `init` writes
//!   its public half to `amt.pub` for the agent config (`[org] amt_key`).
//! - The org opens the sealed password from a verified outcome report and
//!   stores it encrypted at rest under `secrets.key` (XChaCha20-Poly1305,
//!   bound to "amt credential node N"): never plaintext in the database.
//! - [`PowerControl`]: reset a node; [`AmtPower`] does it with WS-MAN
//!   `RequestPowerStateChange` over TCP (16992) as `admin`.

use crate::store::{AmtCredential, PolicyScope, Registry, StoreError};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use fortros_amt::client::{ClientError, Connector, WsmanClient};
use fortros_amt::wsman;
use fortros_wire::report::AmtFacts;
use fortros_wire::Report;
use hkdf::Hkdf;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;
use zeroize::Zeroizing;

/// The public half of the org's AMT seal key, in the org folder.
pub const AMT_PUBLIC_KEY_FILE: &str = "amt.pub";
/// The AMT account CCM activation creates.
pub const ADMIN_USER: &str = "admin";

#[derive(Debug, thiserror::Error)]
pub enum AmtError {
    #[error(
        "node {0}: the org holds no AMT credential (not provisioned through a `use` policy yet)"
    )]
    NoCredential(u64),
    #[error("node {node}: stored AMT credential does not decrypt (wrong secrets.key?)")]
    Decrypt { node: u64 },
    #[error("node {node}: sealed AMT password in the report does not open: {reason}")]
    Unseal { node: u64, reason: String },
    #[error("AMT at {addr}: {source}")]
    Wsman {
        addr: String,
        #[source]
        source: ClientError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Crypto(String),
}

/// The org's X25519 seal secret, derived from `secrets.key`.
pub fn seal_secret(secrets: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(b"fortros org"), secrets);
    let mut out = Zeroizing::new([0u8; 32]);
    // A 32-byte output never exceeds HKDF's limit.
    let _ = hk.expand(b"amt seal key v1", &mut out[..]);
    out
}

/// Its public half: what nodes seal generated passwords to.
pub fn seal_public(secrets: &[u8; 32]) -> [u8; 32] {
    fortros_amt::seal::public_key(&seal_secret(secrets))
}

fn aad(node_id: u64) -> String {
    format!("amt credential node {node_id}")
}

/// Encrypts a password for the `amt_credentials` table.
pub fn encrypt_credential(
    secrets: &[u8; 32],
    node_id: u64,
    password: &[u8],
) -> Result<Vec<u8>, AmtError> {
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut nonce);
    let label = aad(node_id);
    let ct = XChaCha20Poly1305::new(secrets.into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: password,
                aad: label.as_bytes(),
            },
        )
        .map_err(|_| AmtError::Crypto("encryption failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts a stored credential's password.
pub fn decrypt_credential(
    secrets: &[u8; 32],
    cred: &AmtCredential,
) -> Result<Zeroizing<Vec<u8>>, AmtError> {
    let label = aad(cred.node_id);
    let stored = &cred.password_encrypted;
    let (Some(nonce), Some(ct)) = (stored.get(..24), stored.get(24..)) else {
        return Err(AmtError::Decrypt { node: cred.node_id });
    };
    XChaCha20Poly1305::new(secrets.into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: label.as_bytes(),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| AmtError::Decrypt { node: cred.node_id })
}

/// The password the org holds for a node, decrypted.
pub fn node_password(
    reg: &dyn Registry,
    secrets: &[u8; 32],
    node_id: u64,
) -> Result<Option<Zeroizing<Vec<u8>>>, AmtError> {
    match reg.amt_credential(node_id)? {
        Some(c) => decrypt_credential(secrets, &c).map(Some),
        None => Ok(None),
    }
}

/// Records what a verified outcome report says about AMT: a provisioned
/// node's password (its own, sealed to the org, or the org's policy
/// password) is stored encrypted; returns an event line for the operator.
pub fn record_outcome(
    reg: &dyn Registry,
    secrets: &[u8; 32],
    node_id: u64,
    ak_name: &[u8],
    report: &Report,
    policy_password: impl FnOnce() -> Result<Option<Zeroizing<Vec<u8>>>, String>,
    now: i64,
) -> Result<Option<String>, AmtError> {
    let facts = match AmtFacts::from_report(report) {
        None => return Ok(None),
        Some(Ok(f)) => f,
        Some(Err(e)) => return Ok(Some(format!("AMT facts unreadable: {e}"))),
    };
    if facts.result != "provisioned" {
        return Ok(Some(format!("AMT: {}", facts.result)));
    }
    let (password, source) = match &facts.sealed_password {
        Some(sealed) => {
            let p = fortros_amt::seal::open(&seal_secret(secrets), sealed.as_slice(), ak_name)
                .map_err(|e| AmtError::Unseal {
                    node: node_id,
                    reason: e.to_string(),
                })?;
            (p, "node-generated")
        }
        None => match policy_password().map_err(AmtError::Crypto)? {
            Some(p) => (p, "org-policy"),
            None => {
                return Ok(Some(
                    "AMT provisioned but the org holds no password for it".into(),
                ))
            }
        },
    };
    reg.set_amt_credential(&AmtCredential {
        node_id,
        username: ADMIN_USER.into(),
        password_encrypted: encrypt_credential(secrets, node_id, &password)?,
        source: source.into(),
        updated_at: now,
    })?;
    Ok(Some(format!(
        "AMT provisioned in CCM; admin credential ({source}) stored encrypted"
    )))
}

/// The policy password of a scope, decrypted (for [`record_outcome`]).
pub fn scope_password(
    secrets: &[u8; 32],
    scope: &PolicyScope,
    encrypted: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
    if encrypted.is_empty() {
        return Ok(None);
    }
    crate::policy::decrypt_password(secrets, scope, encrypted)
        .map(|p| Some(Zeroizing::new(p)))
        .map_err(|e| e.to_string())
}

/// Out-of-band power control of one node.
pub trait PowerControl {
    /// Resets the node (power cycle / master bus reset). Returns what the
    /// management controller said, for the operator.
    fn reset(&mut self) -> Result<String, AmtError>;
}

/// WS-MAN over plain TCP to a node's AMT (port 16992, or the test node's
/// stand-in).
pub struct TcpConnector {
    pub addr: String,
    pub timeout: Duration,
}

impl Connector for TcpConnector {
    type Conn = TcpStream;
    fn connect(&mut self) -> io::Result<TcpStream> {
        let mut last = None;
        for a in self.addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, self.timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(self.timeout))?;
                    s.set_write_timeout(Some(self.timeout))?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other(format!("{}: no address", self.addr))))
    }
    fn host(&self) -> String {
        self.addr.clone()
    }
}

/// Power control through AMT's `CIM_PowerManagementService`.
pub struct AmtPower {
    client: WsmanClient<TcpConnector>,
    addr: String,
}

impl AmtPower {
    pub fn new(addr: &str, user: &str, password: &str) -> Self {
        AmtPower {
            client: WsmanClient::new(
                TcpConnector {
                    addr: addr.into(),
                    timeout: Duration::from_secs(20),
                },
                user,
                password,
            ),
            addr: addr.into(),
        }
    }

    fn change(&mut self, state: u32) -> Result<String, AmtError> {
        let addr = self.addr.clone();
        let wrap = |source| AmtError::Wsman {
            addr: addr.clone(),
            source,
        };
        let reply = self
            .client
            .call(|id| wsman::request_power_state_change(state, id))
            .map_err(wrap)?;
        reply
            .expect_success("RequestPowerStateChange")
            .map_err(|e| wrap(ClientError::Wsman(e)))?;
        Ok(format!(
            "AMT at {} accepted RequestPowerStateChange({state}): ReturnValue 0",
            self.addr
        ))
    }
}

impl PowerControl for AmtPower {
    fn reset(&mut self) -> Result<String, AmtError> {
        self.change(wsman::power_state::RESET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteRegistry;

    #[test]
    fn seal_key_is_stable_and_opens_what_nodes_seal() {
        let secrets = [9u8; 32];
        assert_eq!(seal_public(&secrets), seal_public(&secrets));
        assert_ne!(seal_public(&secrets), seal_public(&[8u8; 32]));
        let sealed =
            fortros_amt::seal::seal(&seal_public(&secrets), b"Gen3rated-Pw!", b"ak").unwrap();
        let opened = fortros_amt::seal::open(&seal_secret(&secrets), &sealed, b"ak").unwrap();
        assert_eq!(&opened[..], b"Gen3rated-Pw!");
    }

    #[test]
    fn credentials_are_encrypted_at_rest_and_bound_to_their_node() {
        let secrets = [3u8; 32];
        let ct = encrypt_credential(&secrets, 5, b"Sup3r-Secret!").unwrap();
        assert!(!ct.windows(5).any(|w| w == b"Sup3r"));
        let mut cred = AmtCredential {
            node_id: 5,
            username: "admin".into(),
            password_encrypted: ct,
            source: "node-generated".into(),
            updated_at: 0,
        };
        assert_eq!(
            &decrypt_credential(&secrets, &cred).unwrap()[..],
            b"Sup3r-Secret!"
        );
        cred.node_id = 6;
        assert!(decrypt_credential(&secrets, &cred).is_err());
    }

    #[test]
    fn registry_keeps_one_credential_per_node() {
        use crate::store::{NewNode, NodeStatus};
        let reg = SqliteRegistry::in_memory().unwrap();
        let n = reg
            .create_node(&NewNode {
                ak_name: vec![1],
                ak_public: vec![2],
                ek_sha256: vec![3],
                ek_public: vec![4],
                ek_certificate: "test".into(),
                status: NodeStatus::Approved,
                now: 1,
            })
            .unwrap();
        let secrets = [1u8; 32];
        assert!(node_password(&reg, &secrets, n.id).unwrap().is_none());
        for (pw, t) in [(&b"First-Pw1!"[..], 10), (&b"Second-Pw2!"[..], 20)] {
            reg.set_amt_credential(&AmtCredential {
                node_id: n.id,
                username: ADMIN_USER.into(),
                password_encrypted: encrypt_credential(&secrets, n.id, pw).unwrap(),
                source: "org-policy".into(),
                updated_at: t,
            })
            .unwrap();
        }
        let got = node_password(&reg, &secrets, n.id).unwrap().unwrap();
        assert_eq!(&got[..], b"Second-Pw2!");
        assert_eq!(reg.amt_credential(n.id).unwrap().unwrap().updated_at, 20);
    }
}

//! The emulated Intel AMT: one model of the management engine's AMT state,
//! shared by every way the host and the network reach it.
//!
//! - [`AmtModel`]: provisioning state, control mode, the admin digest, the
//!   realm, network and redirection settings, persisted in a state file so
//!   they survive QEMU reboots and emulator restarts ([`state`]);
//! - [`apf`] and [`lme`]: the LME client's APF tunnel (host side of 16992);
//! - [`http`], [`digest`], [`wsman`]: the HTTP/1.1 + Digest + WS-MAN server
//!   behind an APF channel and behind the remote port;
//! - [`remote`]: the node's "network side" port (the org's power control) and
//!   the QMP power backend that resets QEMU.
//!
//! What is and is not emulated is listed in docs/test-node.md.

pub mod apf;
pub mod digest;
pub mod http;
pub mod lme;
pub mod remote;
pub mod server;
pub mod state;
pub mod wsman;

use crate::scenario::Resolved;
use log::{info, warn};
use state::{AmtState, StateFile};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

pub use state::StateError;

/// The model, shared between the vfio-user thread (AMTHI, LME) and the
/// remote port's threads.
pub type SharedAmt = Arc<Mutex<AmtModel>>;

/// Locks the model; a poisoned lock (a panicking thread) still yields the data.
pub fn lock(amt: &SharedAmt) -> MutexGuard<'_, AmtModel> {
    amt.lock().unwrap_or_else(|p| p.into_inner())
}

/// The local system account AMTHI hands to the host OS.
pub const LSA_USER: &str = "$$OsAdmin";
/// The AMT administrator account.
pub const ADMIN_USER: &str = "admin";

/// What the LME does when the host closes a channel (see docs/test-node.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnChannelClose {
    /// The APF session stays up; the next CHANNEL_OPEN works.
    Keep,
    /// The APF session starts over: the host must send PROTOCOL_VERSION again.
    Reset,
    /// The ME disconnects the MEI client after the close (the host's next
    /// read or write fails with ENODEV): reopen, reconnect, handshake again.
    Disconnect,
}

/// A power action the org (or the host) asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// PowerState 10 (master bus reset) and 5 (power cycle): QMP system_reset.
    Reset,
    /// PowerState 8 (off, hard): QMP quit.
    Off,
}

/// Something that can reset or power off the node.
pub trait PowerControl: Send {
    fn power(&mut self, action: PowerAction);
}

/// Fixed facts of the part, from the scenario.
#[derive(Debug, Clone)]
pub struct AmtConfig {
    /// AMT major version ("AMT" code version, else the firmware major).
    pub major: u32,
    /// "major.minor.build" for the HTTP Server header.
    pub version: String,
    /// AMT 19+: local ports are TLS only (WD flag bit 6; ports 16993/664).
    pub tls_enforced: bool,
    /// The system UUID in AMTHI byte order.
    pub uuid_le: [u8; 16],
    pub hostname: String,
    pub on_channel_close: OnChannelClose,
    /// The receive window the ME grants per channel.
    pub window: u32,
    /// Whether SetAmtOperationalState may change the state (WD flag bit 0).
    pub change_allowed: bool,
}

impl AmtConfig {
    /// CCM needs CommitChanges after Setup to leave "in provisioning".
    pub fn commit_required(&self) -> bool {
        self.major >= 19
    }

    /// The local WS-MAN port and the redirection port the ME forwards.
    pub fn ports(&self) -> (u32, u32) {
        if self.tls_enforced {
            (16993, 664)
        } else {
            (16992, 623)
        }
    }
}

/// One thing the model did, for tests and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmtEvent {
    Provisioned {
        control_mode: u32,
        state: u32,
    },
    Committed,
    Unprovisioned,
    OperationalState(bool),
    EthernetChanged,
    RedirectionChanged,
    Power(PowerAction),
    /// A request refused (auth, state, fault); the text says why.
    Refused(String),
}

/// An issued Digest nonce and the highest nonce count seen with it.
#[derive(Debug, Clone)]
struct Nonce {
    value: String,
    last_nc: u32,
}

/// How many nonces stay valid; older ones are "stale".
const NONCES: usize = 32;
/// Uses of one nonce before it turns stale.
const NONCE_USES: u32 = 256;

/// The AMT model.
pub struct AmtModel {
    pub config: AmtConfig,
    pub state: AmtState,
    file: Option<StateFile>,
    /// Random per emulator start (the ME regenerates it per boot).
    pub lsa_password: String,
    nonces: VecDeque<Nonce>,
    power: Option<Box<dyn PowerControl>>,
    pub events: Vec<AmtEvent>,
}

impl std::fmt::Debug for AmtModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmtModel")
            .field("config", &self.config)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// `n` random bytes from the OS; a failing RNG is not worth a panic in a
/// test double, so it falls back to the clock.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    if getrandom::getrandom(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
    b
}

pub fn random_hex(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

impl AmtModel {
    /// A model for `scenario`; with `file`, the state comes from (and goes to)
    /// that file, and the scenario only seeds a file that does not exist yet.
    pub fn new(scenario: &Resolved, file: Option<StateFile>) -> Result<AmtModel, StateError> {
        let config = config_for(scenario);
        let seeded = AmtState::seed(scenario);
        let state = match &file {
            Some(f) => match f.load()? {
                Some(s) => {
                    info!("AMT state from {}: {:?}", f.path().display(), s.summary());
                    s
                }
                None => {
                    f.save(&seeded)?;
                    seeded
                }
            },
            None => seeded,
        };
        Ok(AmtModel::build(config, state, file))
    }

    fn build(config: AmtConfig, state: AmtState, file: Option<StateFile>) -> AmtModel {
        let alphabet = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
        let lsa_password = random_bytes(24)
            .iter()
            .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
            .collect();
        AmtModel {
            config,
            state,
            file,
            lsa_password,
            nonces: VecDeque::new(),
            power: None,
            events: Vec::new(),
        }
    }

    /// A shared model without a state file (its state lives in memory).
    pub fn shared(scenario: &Resolved) -> SharedAmt {
        let m = AmtModel::build(config_for(scenario), AmtState::seed(scenario), None);
        Arc::new(Mutex::new(m))
    }

    pub fn set_power(&mut self, p: Box<dyn PowerControl>) {
        self.power = Some(p);
    }

    /// Writes the state file after a change.
    pub fn save(&mut self) {
        if let Some(f) = &self.file {
            if let Err(e) = f.save(&self.state) {
                warn!("AMT: {e}");
            }
        }
    }

    pub fn record(&mut self, e: AmtEvent) {
        info!("AMT: {e:?}");
        self.events.push(e);
    }

    pub fn provisioned(&self) -> bool {
        self.state.provisioning_state == 2
    }

    /// A fresh Digest nonce.
    pub fn new_nonce(&mut self) -> String {
        let value = random_hex(16);
        if self.nonces.len() >= NONCES {
            self.nonces.pop_front();
        }
        self.nonces.push_back(Nonce {
            value: value.clone(),
            last_nc: 0,
        });
        value
    }

    /// Accepts `nc` for `nonce` if the nonce is live and the count grows;
    /// `false` means stale.
    pub fn use_nonce(&mut self, nonce: &str, nc: u32) -> bool {
        match self.nonces.iter_mut().find(|n| n.value == nonce) {
            Some(n) if nc > n.last_nc && nc <= NONCE_USES => {
                n.last_nc = nc;
                true
            }
            _ => false,
        }
    }

    pub fn power(&mut self, action: PowerAction) -> bool {
        self.record(AmtEvent::Power(action));
        match &mut self.power {
            Some(p) => {
                p.power(action);
                true
            }
            None => {
                warn!("AMT: power {action:?} requested, but no power backend (--qmp) is set");
                false
            }
        }
    }

    /// CCM unprovision (AMTHI Unprovision, WS-MAN Unprovision): back to
    /// factory state, keeping the realm.
    pub fn unprovision(&mut self) {
        self.state.provisioning_state = 0;
        self.state.control_mode = 0;
        self.state.admin_digest_a1 = None;
        self.state.redirection_state = state::REDIRECTION_DISABLED;
        self.state.redirection_listener = false;
        self.state.kvm_enabled = false;
        self.record(AmtEvent::Unprovisioned);
        self.save();
    }
}

fn config_for(s: &Resolved) -> AmtConfig {
    let amt = &s.scenario.amt;
    let version = amt
        .code_versions
        .iter()
        .find(|(d, _)| d == "AMT")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| format!("{}.{}.{}", s.code.major, s.code.minor, s.code.hotfix));
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(u32::from(s.code.major));
    AmtConfig {
        major,
        version,
        tls_enforced: amt.tls_enforced,
        uuid_le: s.amt_uuid,
        hostname: amt.hostname.clone(),
        on_channel_close: amt.lme_on_channel_close,
        window: amt.lme_window,
        change_allowed: amt.change_allowed,
    }
}

/// hex(MD5(text)).
pub fn md5_hex(text: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    #[test]
    fn nonces_count_up_and_go_stale() {
        let s = Scenario::default().resolve().unwrap();
        let amt = AmtModel::shared(&s);
        let mut m = lock(&amt);
        let n = m.new_nonce();
        assert_eq!(n.len(), 32);
        assert!(m.use_nonce(&n, 1));
        assert!(m.use_nonce(&n, 2));
        assert!(!m.use_nonce(&n, 2), "a replayed count is stale");
        assert!(!m.use_nonce("feedface", 1), "an unknown nonce is stale");
        for _ in 0..NONCES {
            m.new_nonce();
        }
        assert!(!m.use_nonce(&n, 3), "evicted");
        assert_ne!(m.lsa_password, "");
        assert_eq!(m.config.major, 11);
    }

    #[test]
    fn md5_of_the_rfc_2617_example_a1() {
        // RFC 2617 §3.5: HA1 of Mufasa:testrealm@host.com:Circle Of Life
        assert_eq!(
            md5_hex("Mufasa:testrealm@host.com:Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
    }
}

//! The node registry: everything the org remembers (nonces, challenges,
//! nodes, reports, policies, events), behind one trait so that a
//! PostgreSQL backend can follow the embedded SQLite one without touching
//! the exchange or the CLI.
//!
//! The trait is synchronous; the HTTP server calls it from blocking tasks.
//! Every method is one transaction, so several processes (or servers
//! behind a balancer, with a shared database) never see half a change.

mod migrations;
pub mod sqlite;

pub use sqlite::SqliteRegistry;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("registry database {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "registry database {path}: schema version {found} is newer than this program ({known})"
    )]
    SchemaTooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("registry: stored value {what} is malformed: {reason}")]
    Corrupt { what: String, reason: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Where an issued nonce stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    Fresh,
    Unknown,
    Expired,
    Used,
}

/// A node's standing with the org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Waits for `fortros-org nodes approve`.
    Pending,
    Approved,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Pending => "pending",
            NodeStatus::Approved => "approved",
        }
    }

    fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "pending" => Ok(NodeStatus::Pending),
            "approved" => Ok(NodeStatus::Approved),
            other => Err(StoreError::Corrupt {
                what: "node status".into(),
                reason: format!("unknown status {other:?}"),
            }),
        }
    }
}

/// A node as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub id: u64,
    /// TPM name of the current AK (hex in JSON).
    #[serde(with = "hex::serde")]
    pub ak_name: Vec<u8>,
    #[serde(skip)]
    pub ak_public: Vec<u8>,
    /// SHA-256 of the EK's TPMT_PUBLIC.
    #[serde(with = "hex::serde")]
    pub ek_sha256: Vec<u8>,
    #[serde(skip)]
    pub ek_public: Vec<u8>,
    /// Subject of the verified EK certificate, or why none was checked.
    pub ek_certificate: String,
    pub status: NodeStatus,
    pub group: Option<String>,
    /// The EK came back with a new AK (TPM cleared or re-provisioned).
    pub tpm_cleared: bool,
    /// Serial of the last policy issued.
    pub policy_serial: u64,
    pub enrolled_at: i64,
    pub last_seen: i64,
}

/// What a new node record holds.
#[derive(Debug, Clone)]
pub struct NewNode {
    pub ak_name: Vec<u8>,
    pub ak_public: Vec<u8>,
    pub ek_sha256: Vec<u8>,
    pub ek_public: Vec<u8>,
    pub ek_certificate: String,
    pub status: NodeStatus,
    pub now: i64,
}

/// A MakeCredential challenge waiting for the agent's answer.
#[derive(Debug, Clone)]
pub struct PendingChallenge {
    /// The enrollment nonce (the key of the challenge).
    pub nonce: Vec<u8>,
    pub secret_sha256: Vec<u8>,
    pub ak_name: Vec<u8>,
    pub ak_public: Vec<u8>,
    pub ek_public: Vec<u8>,
    pub ek_certificate: String,
    /// The report evidence that started the enrollment.
    pub evidence: Vec<u8>,
    pub expires_at: i64,
}

/// Why a report was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    Enroll,
    Outcome,
}

impl ReportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Enroll => "enroll",
            ReportKind::Outcome => "outcome",
        }
    }

    fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "enroll" => Ok(ReportKind::Enroll),
            "outcome" => Ok(ReportKind::Outcome),
            other => Err(StoreError::Corrupt {
                what: "report kind".into(),
                reason: format!("unknown kind {other:?}"),
            }),
        }
    }
}

/// A stored report with its evidence (report bytes + quote) and the diff
/// against the node's previous report of the same kind.
#[derive(Debug, Clone)]
pub struct StoredReport {
    pub id: u64,
    pub node_id: u64,
    pub kind: ReportKind,
    pub received_at: i64,
    pub evidence: Vec<u8>,
    /// JSON list of changes (see `diff`), `None` for a node's first report.
    pub diff_json: Option<String>,
}

/// Who a policy applies to. A node's own policy wins over its group's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyScope {
    Node(u64),
    Group(String),
}

/// Something the operator should know about a node.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub node_id: u64,
    pub at: i64,
    pub kind: String,
    pub detail: String,
}

/// A flash image a node sent before writing its flash (the image itself is
/// fetched separately: it may be tens of MiB).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupInfo {
    pub node_id: u64,
    #[serde(with = "hex::serde")]
    pub sha256: Vec<u8>,
    pub size: u64,
    pub received_at: i64,
}

/// An AMT admin credential the org holds for a node (password encrypted
/// at rest; `crate::amt` decrypts it).
#[derive(Debug, Clone)]
pub struct AmtCredential {
    pub node_id: u64,
    pub username: String,
    pub password_encrypted: Vec<u8>,
    /// "org-policy" or "node-generated".
    pub source: String,
    pub updated_at: i64,
}

/// The registry. See the module comment.
pub trait Registry: Send + Sync {
    fn put_nonce(&self, nonce: &[u8], issued_at: i64, expires_at: i64) -> StoreResult<()>;
    fn nonce_status(&self, nonce: &[u8], now: i64) -> StoreResult<NonceStatus>;
    /// Marks a fresh nonce used; `false` when it was not fresh (a replay
    /// racing the first use).
    fn consume_nonce(&self, nonce: &[u8], now: i64) -> StoreResult<bool>;

    fn put_challenge(&self, challenge: &PendingChallenge) -> StoreResult<()>;
    /// Removes and returns the challenge (single use), expired or not.
    fn take_challenge(&self, nonce: &[u8]) -> StoreResult<Option<PendingChallenge>>;

    fn create_node(&self, node: &NewNode) -> StoreResult<Node>;
    fn node(&self, id: u64) -> StoreResult<Option<Node>>;
    fn node_by_ak_name(&self, ak_name: &[u8]) -> StoreResult<Option<Node>>;
    fn node_by_ek(&self, ek_sha256: &[u8]) -> StoreResult<Option<Node>>;
    fn nodes(&self) -> StoreResult<Vec<Node>>;
    /// The EK came back with a new AK: record it and flag the node.
    fn replace_ak(
        &self,
        id: u64,
        ak_name: &[u8],
        ak_public: &[u8],
        status: NodeStatus,
        now: i64,
    ) -> StoreResult<()>;
    fn set_status(&self, id: u64, status: NodeStatus) -> StoreResult<bool>;
    fn set_group(&self, id: u64, group: Option<&str>) -> StoreResult<bool>;
    fn touch(&self, id: u64, now: i64) -> StoreResult<()>;
    /// Increments and returns the node's policy serial.
    fn next_policy_serial(&self, id: u64) -> StoreResult<u64>;

    fn add_report(
        &self,
        node_id: u64,
        kind: ReportKind,
        received_at: i64,
        evidence: &[u8],
        diff_json: Option<&str>,
    ) -> StoreResult<u64>;
    fn last_report(&self, node_id: u64, kind: ReportKind) -> StoreResult<Option<StoredReport>>;
    /// All reports of a node, oldest first.
    fn reports(&self, node_id: u64) -> StoreResult<Vec<StoredReport>>;

    /// Stores the policy spec (JSON of `policy::PolicySpec`) for a scope.
    fn set_policy(&self, scope: &PolicyScope, spec_json: &str, now: i64) -> StoreResult<()>;
    fn policy(&self, scope: &PolicyScope) -> StoreResult<Option<String>>;

    fn add_event(&self, node_id: u64, kind: &str, detail: &str, now: i64) -> StoreResult<()>;
    fn events(&self, node_id: u64) -> StoreResult<Vec<Event>>;

    /// Keeps a node's flash image under its SHA-256 (computed by the
    /// caller over `image`). Returns false when it was already held.
    fn put_backup(&self, node_id: u64, sha256: &[u8], image: &[u8], now: i64) -> StoreResult<bool>;
    /// The image of one backup of a node.
    fn backup(&self, node_id: u64, sha256: &[u8]) -> StoreResult<Option<Vec<u8>>>;
    /// A node's backups, oldest first.
    fn backups(&self, node_id: u64) -> StoreResult<Vec<BackupInfo>>;
    /// Stores (or replaces) a node's AMT credential.
    fn set_amt_credential(&self, cred: &AmtCredential) -> StoreResult<()>;
    fn amt_credential(&self, node_id: u64) -> StoreResult<Option<AmtCredential>>;
}

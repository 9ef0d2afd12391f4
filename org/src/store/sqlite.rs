//! The embedded SQLite registry (WAL mode, one connection behind a mutex:
//! SQLite serialises writers anyway, and the exchange's transactions are
//! short).

use super::migrations::{self, MIGRATIONS};
use super::*;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub struct SqliteRegistry {
    path: String,
    conn: Mutex<Connection>,
}

impl SqliteRegistry {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let shown = path.display().to_string();
        let conn = Connection::open(path).map_err(|source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        })?;
        Self::init(conn, shown)
    }

    /// A private in-memory registry (unit tests, benchmarks).
    pub fn in_memory() -> StoreResult<Self> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Sqlite {
            path: ":memory:".into(),
            source,
        })?;
        Self::init(conn, ":memory:".into())
    }

    fn init(mut conn: Connection, path: String) -> StoreResult<Self> {
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        // WAL: readers (the CLI) never block the server's writers.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        migrate(&mut conn, &path)?;
        Ok(SqliteRegistry {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// The schema version now in the file.
    pub fn schema_version(&self) -> StoreResult<i64> {
        let c = self.lock();
        current_version(&c).map_err(|e| self.err(e))
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.path)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the
        // transaction rolls back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

fn current_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
        [],
    )?;
    Ok(conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| {
            r.get::<_, Option<i64>>(0)
        })?
        .unwrap_or(0))
}

fn migrate(conn: &mut Connection, path: &str) -> StoreResult<()> {
    let err = |source| StoreError::Sqlite {
        path: path.to_string(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    let found = current_version(&tx).map_err(err)?;
    if found > migrations::latest() {
        return Err(StoreError::SchemaTooNew {
            path: path.to_string(),
            found,
            known: migrations::latest(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql).map_err(err)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            params![i as i64 + 1],
        )
        .map_err(err)?;
        log::info!("registry {path}: schema migrated to version {}", i + 1);
    }
    tx.commit().map_err(err)
}

const NODE_COLUMNS: &str = "id, ak_name, ak_public, ek_sha256, ek_public, ek_certificate, status, \
     node_group, tpm_cleared, policy_serial, enrolled_at, last_seen";

fn node_from_row(r: &Row) -> rusqlite::Result<(Node, String)> {
    let status: String = r.get(6)?;
    Ok((
        Node {
            id: r.get::<_, i64>(0)? as u64,
            ak_name: r.get(1)?,
            ak_public: r.get(2)?,
            ek_sha256: r.get(3)?,
            ek_public: r.get(4)?,
            ek_certificate: r.get(5)?,
            status: NodeStatus::Pending,
            group: r.get(7)?,
            tpm_cleared: r.get::<_, i64>(8)? != 0,
            policy_serial: r.get::<_, i64>(9)? as u64,
            enrolled_at: r.get(10)?,
            last_seen: r.get(11)?,
        },
        status,
    ))
}

fn finish_node((mut node, status): (Node, String)) -> StoreResult<Node> {
    node.status = NodeStatus::parse(&status)?;
    Ok(node)
}

fn report_from_row(r: &Row) -> rusqlite::Result<(StoredReport, String)> {
    let kind: String = r.get(2)?;
    Ok((
        StoredReport {
            id: r.get::<_, i64>(0)? as u64,
            node_id: r.get::<_, i64>(1)? as u64,
            kind: ReportKind::Enroll,
            received_at: r.get(3)?,
            evidence: r.get(4)?,
            diff_json: r.get(5)?,
        },
        kind,
    ))
}

fn finish_report((mut rep, kind): (StoredReport, String)) -> StoreResult<StoredReport> {
    rep.kind = ReportKind::parse(&kind)?;
    Ok(rep)
}

const REPORT_COLUMNS: &str = "id, node_id, kind, received_at, evidence, diff";

fn scope_key(scope: &PolicyScope) -> (&'static str, String) {
    match scope {
        PolicyScope::Node(id) => ("node", id.to_string()),
        PolicyScope::Group(g) => ("group", g.clone()),
    }
}

impl Registry for SqliteRegistry {
    fn put_nonce(&self, nonce: &[u8], issued_at: i64, expires_at: i64) -> StoreResult<()> {
        let c = self.lock();
        // Forget long-dead nonces while we are here (keeps the table small).
        c.execute(
            "DELETE FROM nonces WHERE expires_at < ?1",
            params![issued_at - 86_400],
        )
        .map_err(|e| self.err(e))?;
        c.execute(
            "INSERT INTO nonces (nonce, issued_at, expires_at) VALUES (?1, ?2, ?3)",
            params![nonce, issued_at, expires_at],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn nonce_status(&self, nonce: &[u8], now: i64) -> StoreResult<NonceStatus> {
        let c = self.lock();
        let row: Option<(i64, Option<i64>)> = c
            .query_row(
                "SELECT expires_at, used_at FROM nonces WHERE nonce = ?1",
                params![nonce],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(match row {
            None => NonceStatus::Unknown,
            Some((_, Some(_))) => NonceStatus::Used,
            Some((exp, None)) if exp < now => NonceStatus::Expired,
            Some(_) => NonceStatus::Fresh,
        })
    }

    fn consume_nonce(&self, nonce: &[u8], now: i64) -> StoreResult<bool> {
        let c = self.lock();
        let n = c
            .execute(
                "UPDATE nonces SET used_at = ?2 \
                 WHERE nonce = ?1 AND used_at IS NULL AND expires_at >= ?2",
                params![nonce, now],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn put_challenge(&self, ch: &PendingChallenge) -> StoreResult<()> {
        let c = self.lock();
        c.execute(
            "INSERT INTO challenges (nonce, secret_sha256, ak_name, ak_public, ek_public, \
             ek_certificate, evidence, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                ch.nonce,
                ch.secret_sha256,
                ch.ak_name,
                ch.ak_public,
                ch.ek_public,
                ch.ek_certificate,
                ch.evidence,
                ch.expires_at
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn take_challenge(&self, nonce: &[u8]) -> StoreResult<Option<PendingChallenge>> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(|e| self.err(e))?;
        let ch = tx
            .query_row(
                "SELECT nonce, secret_sha256, ak_name, ak_public, ek_public, ek_certificate, \
                 evidence, expires_at FROM challenges WHERE nonce = ?1",
                params![nonce],
                |r| {
                    Ok(PendingChallenge {
                        nonce: r.get(0)?,
                        secret_sha256: r.get(1)?,
                        ak_name: r.get(2)?,
                        ak_public: r.get(3)?,
                        ek_public: r.get(4)?,
                        ek_certificate: r.get(5)?,
                        evidence: r.get(6)?,
                        expires_at: r.get(7)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if ch.is_some() {
            tx.execute("DELETE FROM challenges WHERE nonce = ?1", params![nonce])
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(ch)
    }

    fn create_node(&self, n: &NewNode) -> StoreResult<Node> {
        let c = self.lock();
        c.execute(
            "INSERT INTO nodes (ak_name, ak_public, ek_sha256, ek_public, ek_certificate, status, \
             enrolled_at, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![
                n.ak_name,
                n.ak_public,
                n.ek_sha256,
                n.ek_public,
                n.ek_certificate,
                n.status.as_str(),
                n.now
            ],
        )
        .map_err(|e| self.err(e))?;
        let id = c.last_insert_rowid();
        let row = c
            .query_row(
                &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = ?1"),
                params![id],
                node_from_row,
            )
            .map_err(|e| self.err(e))?;
        finish_node(row)
    }

    fn node(&self, id: u64) -> StoreResult<Option<Node>> {
        self.one_node("id = ?1", params![id as i64])
    }

    fn node_by_ak_name(&self, ak_name: &[u8]) -> StoreResult<Option<Node>> {
        self.one_node("ak_name = ?1", params![ak_name])
    }

    fn node_by_ek(&self, ek_sha256: &[u8]) -> StoreResult<Option<Node>> {
        self.one_node("ek_sha256 = ?1", params![ek_sha256])
    }

    fn nodes(&self) -> StoreResult<Vec<Node>> {
        let c = self.lock();
        let mut st = c
            .prepare(&format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY id"))
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], node_from_row)
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter().map(finish_node).collect()
    }

    fn replace_ak(
        &self,
        id: u64,
        ak_name: &[u8],
        ak_public: &[u8],
        status: NodeStatus,
        now: i64,
    ) -> StoreResult<()> {
        let c = self.lock();
        c.execute(
            "UPDATE nodes SET ak_name = ?2, ak_public = ?3, status = ?4, tpm_cleared = 1, \
             last_seen = ?5 WHERE id = ?1",
            params![id as i64, ak_name, ak_public, status.as_str(), now],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn set_status(&self, id: u64, status: NodeStatus) -> StoreResult<bool> {
        let c = self.lock();
        // Approval also acknowledges a "TPM cleared" flag.
        let n = c
            .execute(
                "UPDATE nodes SET status = ?2, \
                 tpm_cleared = CASE WHEN ?2 = 'approved' THEN 0 ELSE tpm_cleared END \
                 WHERE id = ?1",
                params![id as i64, status.as_str()],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn set_group(&self, id: u64, group: Option<&str>) -> StoreResult<bool> {
        let c = self.lock();
        let n = c
            .execute(
                "UPDATE nodes SET node_group = ?2 WHERE id = ?1",
                params![id as i64, group],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn touch(&self, id: u64, now: i64) -> StoreResult<()> {
        let c = self.lock();
        c.execute(
            "UPDATE nodes SET last_seen = ?2 WHERE id = ?1",
            params![id as i64, now],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn next_policy_serial(&self, id: u64) -> StoreResult<u64> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE nodes SET policy_serial = policy_serial + 1 WHERE id = ?1",
            params![id as i64],
        )
        .map_err(|e| self.err(e))?;
        let serial: i64 = tx
            .query_row(
                "SELECT policy_serial FROM nodes WHERE id = ?1",
                params![id as i64],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(serial as u64)
    }

    fn add_report(
        &self,
        node_id: u64,
        kind: ReportKind,
        received_at: i64,
        evidence: &[u8],
        diff_json: Option<&str>,
    ) -> StoreResult<u64> {
        let c = self.lock();
        c.execute(
            "INSERT INTO reports (node_id, kind, received_at, evidence, diff) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                node_id as i64,
                kind.as_str(),
                received_at,
                evidence,
                diff_json
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(c.last_insert_rowid() as u64)
    }

    fn last_report(&self, node_id: u64, kind: ReportKind) -> StoreResult<Option<StoredReport>> {
        let c = self.lock();
        let row = c
            .query_row(
                &format!(
                    "SELECT {REPORT_COLUMNS} FROM reports WHERE node_id = ?1 AND kind = ?2 \
                     ORDER BY id DESC LIMIT 1"
                ),
                params![node_id as i64, kind.as_str()],
                report_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(finish_report).transpose()
    }

    fn reports(&self, node_id: u64) -> StoreResult<Vec<StoredReport>> {
        let c = self.lock();
        let mut st = c
            .prepare(&format!(
                "SELECT {REPORT_COLUMNS} FROM reports WHERE node_id = ?1 ORDER BY id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![node_id as i64], report_from_row)
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter().map(finish_report).collect()
    }

    fn set_policy(&self, scope: &PolicyScope, spec_json: &str, now: i64) -> StoreResult<()> {
        let (kind, key) = scope_key(scope);
        let c = self.lock();
        c.execute(
            "INSERT INTO policies (scope_kind, scope, spec, updated_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (scope_kind, scope) DO UPDATE SET spec = ?3, updated_at = ?4",
            params![kind, key, spec_json, now],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn policy(&self, scope: &PolicyScope) -> StoreResult<Option<String>> {
        let (kind, key) = scope_key(scope);
        let c = self.lock();
        c.query_row(
            "SELECT spec FROM policies WHERE scope_kind = ?1 AND scope = ?2",
            params![kind, key],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    fn add_event(&self, node_id: u64, kind: &str, detail: &str, now: i64) -> StoreResult<()> {
        let c = self.lock();
        c.execute(
            "INSERT INTO events (node_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            params![node_id as i64, now, kind, detail],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn events(&self, node_id: u64) -> StoreResult<Vec<Event>> {
        let c = self.lock();
        let mut st = c
            .prepare("SELECT node_id, at, kind, detail FROM events WHERE node_id = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![node_id as i64], |r| {
                Ok(Event {
                    node_id: r.get::<_, i64>(0)? as u64,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    detail: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    fn put_backup(&self, node_id: u64, sha256: &[u8], image: &[u8], now: i64) -> StoreResult<bool> {
        let c = self.lock();
        // The same image twice (a write refused, then retried) is kept once.
        let n = c
            .execute(
                "INSERT OR IGNORE INTO backups (node_id, sha256, size, received_at, image) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![node_id as i64, sha256, image.len() as i64, now, image],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn backup(&self, node_id: u64, sha256: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let c = self.lock();
        c.query_row(
            "SELECT image FROM backups WHERE node_id = ?1 AND sha256 = ?2",
            params![node_id as i64, sha256],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    fn set_amt_credential(&self, cred: &AmtCredential) -> StoreResult<()> {
        let c = self.lock();
        c.execute(
            "INSERT INTO amt_credentials (node_id, username, password_encrypted, source, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (node_id) DO UPDATE SET \
             username = ?2, password_encrypted = ?3, source = ?4, updated_at = ?5",
            params![
                cred.node_id as i64,
                cred.username,
                cred.password_encrypted,
                cred.source,
                cred.updated_at
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn amt_credential(&self, node_id: u64) -> StoreResult<Option<AmtCredential>> {
        let c = self.lock();
        c.query_row(
            "SELECT username, password_encrypted, source, updated_at FROM amt_credentials \
             WHERE node_id = ?1",
            params![node_id as i64],
            |r| {
                Ok(AmtCredential {
                    node_id,
                    username: r.get(0)?,
                    password_encrypted: r.get(1)?,
                    source: r.get(2)?,
                    updated_at: r.get(3)?,
                })
            },
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    fn backups(&self, node_id: u64) -> StoreResult<Vec<BackupInfo>> {
        let c = self.lock();
        let mut st = c
            .prepare(
                "SELECT node_id, sha256, size, received_at FROM backups WHERE node_id = ?1 \
                 ORDER BY received_at, rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![node_id as i64], |r| {
                Ok(BackupInfo {
                    node_id: r.get::<_, i64>(0)? as u64,
                    sha256: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    received_at: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }
}

impl SqliteRegistry {
    fn one_node(&self, cond: &str, p: impl rusqlite::Params) -> StoreResult<Option<Node>> {
        let c = self.lock();
        let row = c
            .query_row(
                &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE {cond}"),
                p,
                node_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(finish_node).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_node(tag: u8) -> NewNode {
        NewNode {
            ak_name: vec![tag; 34],
            ak_public: vec![tag; 88],
            ek_sha256: vec![tag; 32],
            ek_public: vec![tag; 280],
            ek_certificate: "CN=test".into(),
            status: NodeStatus::Pending,
            now: 100,
        }
    }

    #[test]
    fn nonces_are_single_use_and_expire() {
        let r = SqliteRegistry::in_memory().unwrap();
        r.put_nonce(b"n1", 10, 20).unwrap();
        assert_eq!(r.nonce_status(b"n1", 15).unwrap(), NonceStatus::Fresh);
        assert_eq!(r.nonce_status(b"n1", 21).unwrap(), NonceStatus::Expired);
        assert_eq!(r.nonce_status(b"nx", 15).unwrap(), NonceStatus::Unknown);
        assert!(
            !r.consume_nonce(b"n1", 21).unwrap(),
            "expired nonce consumed"
        );
        assert!(r.consume_nonce(b"n1", 15).unwrap());
        assert!(!r.consume_nonce(b"n1", 16).unwrap(), "nonce used twice");
        assert_eq!(r.nonce_status(b"n1", 16).unwrap(), NonceStatus::Used);
    }

    #[test]
    fn nodes_reports_policies_and_serials() {
        let r = SqliteRegistry::in_memory().unwrap();
        let n = r.create_node(&new_node(1)).unwrap();
        assert_eq!(n.status, NodeStatus::Pending);
        assert!(
            r.create_node(&new_node(1)).is_err(),
            "duplicate AK accepted"
        );
        assert_eq!(r.node_by_ek(&[1; 32]).unwrap().unwrap().id, n.id);
        assert_eq!(r.next_policy_serial(n.id).unwrap(), 1);
        assert_eq!(r.next_policy_serial(n.id).unwrap(), 2);
        r.add_report(n.id, ReportKind::Enroll, 5, b"a", None)
            .unwrap();
        r.add_report(n.id, ReportKind::Enroll, 6, b"b", Some("[]"))
            .unwrap();
        r.add_report(n.id, ReportKind::Outcome, 7, b"c", None)
            .unwrap();
        let last = r.last_report(n.id, ReportKind::Enroll).unwrap().unwrap();
        assert_eq!(last.evidence, b"b");
        assert_eq!(r.reports(n.id).unwrap().len(), 3);
        r.replace_ak(n.id, &[9; 34], &[9; 88], NodeStatus::Pending, 8)
            .unwrap();
        let n2 = r.node(n.id).unwrap().unwrap();
        assert!(n2.tpm_cleared);
        assert!(r.set_status(n.id, NodeStatus::Approved).unwrap());
        let n3 = r.node_by_ak_name(&[9; 34]).unwrap().unwrap();
        assert_eq!(n3.status, NodeStatus::Approved);
        assert!(!n3.tpm_cleared, "approval acknowledges the flag");
        r.set_policy(&PolicyScope::Group("lab".into()), "{}", 1)
            .unwrap();
        r.set_policy(&PolicyScope::Group("lab".into()), "\"Ignore\"", 2)
            .unwrap();
        assert_eq!(
            r.policy(&PolicyScope::Group("lab".into()))
                .unwrap()
                .unwrap(),
            "\"Ignore\""
        );
        assert!(r.policy(&PolicyScope::Node(n.id)).unwrap().is_none());
    }

    #[test]
    fn backups_are_kept_once_per_node_and_digest() {
        let r = SqliteRegistry::in_memory().unwrap();
        let n = r.create_node(&new_node(4)).unwrap();
        let img = vec![0xA5u8; 8192];
        assert!(r.put_backup(n.id, &[1; 32], &img, 10).unwrap());
        assert!(
            !r.put_backup(n.id, &[1; 32], &img, 11).unwrap(),
            "kept once"
        );
        assert!(r.put_backup(n.id, &[2; 32], &[1, 2, 3], 12).unwrap());
        assert_eq!(r.backup(n.id, &[1; 32]).unwrap().unwrap(), img);
        assert!(r.backup(n.id, &[3; 32]).unwrap().is_none());
        assert!(
            r.backup(n.id + 1, &[1; 32]).unwrap().is_none(),
            "other node"
        );
        let list = r.backups(n.id).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].size, list[0].received_at), (8192, 10));
        assert!(
            r.put_backup(n.id + 7, &[1; 32], &img, 1).is_err(),
            "unknown node refused (foreign key)"
        );
    }

    #[test]
    fn challenges_are_taken_once() {
        let r = SqliteRegistry::in_memory().unwrap();
        let ch = PendingChallenge {
            nonce: b"n".to_vec(),
            secret_sha256: vec![1; 32],
            ak_name: vec![2; 34],
            ak_public: vec![3],
            ek_public: vec![4],
            ek_certificate: String::new(),
            evidence: vec![5],
            expires_at: 50,
        };
        r.put_challenge(&ch).unwrap();
        assert!(r.take_challenge(b"n").unwrap().is_some());
        assert!(r.take_challenge(b"n").unwrap().is_none());
    }

    #[test]
    fn database_file_survives_reopen_and_refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.sqlite");
        {
            let r = SqliteRegistry::open(&p).unwrap();
            r.create_node(&new_node(3)).unwrap();
        }
        let r = SqliteRegistry::open(&p).unwrap();
        assert_eq!(r.nodes().unwrap().len(), 1);
        assert_eq!(r.schema_version().unwrap(), migrations::latest());
        drop(r);
        let c = Connection::open(&p).unwrap();
        c.execute("INSERT INTO schema_version (version) VALUES (99)", [])
            .unwrap();
        drop(c);
        assert!(matches!(
            SqliteRegistry::open(&p),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }
}

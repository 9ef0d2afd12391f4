//! Schema migrations: an ordered list of SQL steps, each applied once in a
//! transaction and recorded in `schema_version`. Never edit a step that has
//! shipped; append a new one. The SQL is plain enough to port to
//! PostgreSQL (INTEGER/TEXT/BLOB columns, no SQLite-only functions).

/// Step N (1-based) brings the schema from version N-1 to N.
pub const MIGRATIONS: &[&str] = &[
    // 1: the registry.
    r#"
    CREATE TABLE nonces (
        nonce       BLOB PRIMARY KEY,
        issued_at   INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        used_at     INTEGER
    );
    CREATE INDEX nonces_expiry ON nonces (expires_at);

    CREATE TABLE challenges (
        nonce          BLOB PRIMARY KEY,
        secret_sha256  BLOB NOT NULL,
        ak_name        BLOB NOT NULL,
        ak_public      BLOB NOT NULL,
        ek_public      BLOB NOT NULL,
        ek_certificate TEXT NOT NULL,
        evidence       BLOB NOT NULL,
        expires_at     INTEGER NOT NULL
    );

    CREATE TABLE nodes (
        id             INTEGER PRIMARY KEY,
        ak_name        BLOB NOT NULL UNIQUE,
        ak_public      BLOB NOT NULL,
        ek_sha256      BLOB NOT NULL UNIQUE,
        ek_public      BLOB NOT NULL,
        ek_certificate TEXT NOT NULL,
        status         TEXT NOT NULL,
        node_group     TEXT,
        tpm_cleared    INTEGER NOT NULL DEFAULT 0,
        policy_serial  INTEGER NOT NULL DEFAULT 0,
        enrolled_at    INTEGER NOT NULL,
        last_seen      INTEGER NOT NULL
    );

    CREATE TABLE reports (
        id          INTEGER PRIMARY KEY,
        node_id     INTEGER NOT NULL REFERENCES nodes (id),
        kind        TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        evidence    BLOB NOT NULL,
        diff        TEXT
    );
    CREATE INDEX reports_node ON reports (node_id, kind, id);

    CREATE TABLE policies (
        scope_kind  TEXT NOT NULL,
        scope       TEXT NOT NULL,
        spec        TEXT NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (scope_kind, scope)
    );

    CREATE TABLE events (
        id       INTEGER PRIMARY KEY,
        node_id  INTEGER NOT NULL REFERENCES nodes (id),
        at       INTEGER NOT NULL,
        kind     TEXT NOT NULL,
        detail   TEXT NOT NULL
    );
    "#,
    // 2: backups of node flash images, kept before the node writes its flash.
    r#"
    CREATE TABLE backups (
        node_id     INTEGER NOT NULL REFERENCES nodes (id),
        sha256      BLOB NOT NULL,
        size        INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        image       BLOB NOT NULL,
        PRIMARY KEY (node_id, sha256)
    );
    "#,
    // 3: AMT admin credentials the org holds per node (encrypted under
    // secrets.key; see org/src/amt.rs).
    r#"
    CREATE TABLE amt_credentials (
        node_id             INTEGER PRIMARY KEY REFERENCES nodes (id),
        username            TEXT NOT NULL,
        password_encrypted  BLOB NOT NULL,
        source              TEXT NOT NULL,
        updated_at          INTEGER NOT NULL
    );
    "#,
];

/// The schema version this program writes.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

//! The audit log's table and statements, for both databases and the key store: here,
//! below `store` and `seal`, which both write records.

/// The audit log (`audit`), on every shard, and in the key store for its own changes.
/// Plain types both databases accept; `at` is in microseconds.
pub const AUDIT_TABLE: &str = "CREATE TABLE IF NOT EXISTS audit_log (
        chain TEXT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL, request_id TEXT NOT NULL,
        actor TEXT, actor_key TEXT, role TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
        before_version BIGINT, after_version BIGINT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
        PRIMARY KEY (chain, seq))";

/// `GET /admin/audit?since=` reads by time.
pub const AUDIT_INDEX: &str = "CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at)";

/// SQLite: the table, and triggers that refuse to change or remove a record. Whoever
/// can write the file can drop them: the chain (`audit::verify`) is what catches that.
pub const SQLITE_AUDIT: &[&str] = &[
    AUDIT_TABLE,
    AUDIT_INDEX,
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END",
];

/// PostgreSQL: the table, and a trigger that refuses UPDATE, DELETE and TRUNCATE
/// (only the table's owner or a superuser can disable it).
pub const POSTGRES_AUDIT: &[&str] = &[
    AUDIT_TABLE,
    AUDIT_INDEX,
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
        RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
     END $$",
    "CREATE OR REPLACE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
];

/// A chain's last audit record.
pub const AUDIT_HEAD: &str = "SELECT seq, hash FROM audit_log WHERE chain = $1 ORDER BY seq DESC LIMIT 1";

/// PostgreSQL: the chain's lock, held to the end of the transaction (`audit::ChainScope`).
pub const AUDIT_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

pub const INSERT_AUDIT: &str = "INSERT INTO audit_log (chain, seq, at, request_id, actor, actor_key, role, action, \
     target, before_version, after_version, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// Audit records from a time on (microseconds), each chain in order.
pub const AUDIT_RECORDS: &str = "SELECT chain, seq, at, request_id, actor, actor_key, role, action, target, \
     before_version, after_version, prev_hash, hash FROM audit_log WHERE at >= $1 ORDER BY chain, seq";

/// A record's 13 fields in [`INSERT_AUDIT`]'s column order, as an array of references
/// that coerces to either driver's parameter type: one list for both bindings.
macro_rules! in_column_order {
    ($record:expr) => {{
        let (r, d) = ($record, &$record.draft);
        [
            &r.chain,
            &r.seq,
            &d.at,
            &d.request_id,
            &d.actor,
            &d.actor_key,
            &d.role,
            &d.action,
            &d.target,
            &d.before_version,
            &d.after_version,
            &r.prev_hash,
            &r.hash,
        ]
    }};
}

impl super::Record {
    /// The record as rusqlite parameters of [`INSERT_AUDIT`] (the raw path's appends
    /// and the key store's changes).
    pub fn sqlite_params(&self) -> [&dyn rusqlite::ToSql; 13] {
        in_column_order!(self)
    }

    /// The record as tokio-postgres parameters of [`INSERT_AUDIT`].
    pub fn pg_params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 13] {
        in_column_order!(self)
    }
}

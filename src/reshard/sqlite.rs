//! The SQLite half of a reshard: copying the old layout's rows into the new layout's
//! files, catching up the writes made meanwhile, comparing the two flight by flight,
//! and fencing the old files at the switch.
//!
//! Rows travel as SQLite values, column for column, so sealed fields, schema versions
//! and audit hashes arrive exactly as stored; nothing is decoded or re-encoded.

use super::sql::{
    AUDIT_HEAD_TIME, AUDIT_SINCE, EVENT_SEQ, EVENT_VERSION, EVENTS, EVENTS_AFTER, EVENTS_NUMBERED, EVENTS_SINCE,
    FLIGHTS, INSERT_AUDIT, INSERT_EVENT, INSERT_FLIGHT, INSERT_NUMBERED_EVENT, PUT_CHECKPOINT, PUT_STATUS,
    RELAY_CHECKPOINTS, RENUMBER, SEQUENCE_HEAD, STATUS, TOUCHED,
};
use super::{AUDIT_SLACK_MICROS, AuditHeads, Bundles, CaughtUp, EventIds, Mismatch, audit_home};
use crate::routing::ShardCount;
use crate::store::schema::{AUDIT_TABLE, INDEXES, SQLITE_AUDIT, SQLITE_SEQUENCING, SQLITE_TABLES, projection_tables};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, params_from_iter};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// The error SQLite raises on a fenced shard; the server recognises it by this text.
pub(super) const FENCE: &[&str] = &[
    "CREATE TRIGGER IF NOT EXISTS flightbench_retired_events BEFORE INSERT ON delay_events
        BEGIN SELECT RAISE(ABORT, 'flightbench: this shard layout was retired by reshard'); END",
    "CREATE TRIGGER IF NOT EXISTS flightbench_retired_status BEFORE UPDATE ON flight_status
        BEGIN SELECT RAISE(ABORT, 'flightbench: this shard layout was retired by reshard'); END",
];
/// How many fence triggers a shard has.
pub(super) const FENCED: &str =
    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'flightbench_retired%'";
pub(super) const UNFENCE: &str =
    "DROP TRIGGER IF EXISTS flightbench_retired_events; DROP TRIGGER IF EXISTS flightbench_retired_status;";

type Row = Vec<Value>;

fn rows(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let width = stmt.column_count();
    let found = stmt.query_map(params, |r| (0..width).map(|i| r.get::<_, Value>(i)).collect())?;
    found.collect()
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Integer(i) => *i,
        _ => 0,
    }
}

fn text(v: &Value) -> &str {
    match v {
        Value::Text(t) => t,
        _ => "",
    }
}

fn put(conn: &Connection, sql: &str, row: &Row) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params_from_iter(row.iter()))
}

/// An old shard, for reading while the server writes (and, at the switch, for holding
/// its write lock).
pub(super) fn open_old(file: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// A new shard file with the tables the copy fills and nothing that slows it down:
/// no secondary indexes, no sequencing trigger, no journal (a crash now leaves a file
/// no manifest names, which the next reshard deletes).
pub(super) fn create_target(file: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(file)?;
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;",
    )?;
    for ddl in SQLITE_TABLES.iter().chain([&AUDIT_TABLE]) {
        conn.execute(ddl, [])?;
    }
    Ok(conn)
}

/// The last event number an old shard has handed out: everything after it is for the
/// catch-up.
pub(super) fn sequence_head(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(SEQUENCE_HEAD, [], |r| r.get(0))
}

/// Each outbox relay's events on old shard `shard` that it has not published: by
/// checkpoint name, (flight, version) in commit order.
pub(super) fn unpublished(conn: &Connection, shard: usize) -> rusqlite::Result<Vec<(String, EventIds)>> {
    let checkpoints: Vec<(String, i64)> = conn
        .prepare(RELAY_CHECKPOINTS)?
        .query_map([shard as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut found = Vec::with_capacity(checkpoints.len());
    for (name, published) in checkpoints {
        let events = conn
            .prepare(EVENTS_SINCE)?
            .query_map([published], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        found.push((name, events));
    }
    Ok(found)
}

/// Sets relay checkpoint `name` of new shard `shard`: before the first of `events`
/// (those of its flights the relay has not published), or at the shard's newest event.
pub(super) fn carry_checkpoint(
    conn: &Connection,
    shard: usize,
    name: &str,
    events: &[(i64, i64)],
) -> rusqlite::Result<i64> {
    let mut position = sequence_head(conn)?;
    for &(flight, version) in events {
        let seq: i64 = conn.query_row(EVENT_SEQ, [flight, version], |r| r.get(0))?;
        position = position.min(seq - 1);
    }
    conn.execute(PUT_CHECKPOINT, rusqlite::params![name, shard as i64, position])?;
    Ok(position)
}

/// The newest audit record's time on a shard (0 with none).
pub(super) fn audit_head_time(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(AUDIT_HEAD_TIME, [], |r| r.get(0))
}

fn begin_all(targets: &[Connection]) -> rusqlite::Result<()> {
    targets.iter().try_for_each(|t| t.execute_batch("BEGIN"))
}

fn commit_all(targets: &[Connection]) -> rusqlite::Result<()> {
    targets.iter().try_for_each(|t| t.execute_batch("COMMIT"))
}

/// Copies one chunk of flight ids of an old shard to the targets each row now belongs
/// to; returns the flights and events copied. Flights, statuses and events are read
/// in three statements, so a flight written between them arrives inconsistent: the
/// catch-up repairs it, since its event numbers are after the cursor taken before
/// the copy began.
pub(super) fn copy_chunk(
    old: &Connection,
    from: i64,
    to_id: i64,
    to: ShardCount,
    targets: &[Connection],
) -> rusqlite::Result<(u64, u64)> {
    begin_all(targets)?;
    let flights = rows(old, FLIGHTS, (from, to_id))?;
    for row in &flights {
        put(&targets[to.shard_for(int(&row[0]))], INSERT_FLIGHT, row)?;
    }
    for row in rows(old, STATUS, (from, to_id))? {
        put(&targets[to.shard_for(int(&row[0]))], PUT_STATUS, &row)?;
    }
    let events = rows(old, EVENTS_NUMBERED, (from, to_id))?;
    for row in &events {
        put(&targets[to.shard_for(int(&row[0]))], INSERT_NUMBERED_EVENT, row)?;
    }
    commit_all(targets)?;
    Ok((flights.len() as u64, events.len() as u64))
}

/// Copies an old shard's audit records made at or after `since` (microseconds) to
/// their chains' new homes; records already there are skipped. Returns the newest
/// time seen.
pub(super) fn copy_audit(
    old: &Connection,
    since: i64,
    to: ShardCount,
    targets: &[Connection],
) -> rusqlite::Result<i64> {
    let found = rows(old, AUDIT_SINCE, [since])?;
    begin_all(targets)?;
    let mut newest = since;
    for row in &found {
        newest = newest.max(int(&row[2]));
        put(&targets[audit_home(text(&row[0]), text(&row[8]), to)], INSERT_AUDIT, row)?;
    }
    commit_all(targets)?;
    Ok(newest)
}

/// Builds what serving needs on a copied shard: event numbers in each flight's order and
/// the trigger that numbers new ones, indexes, the audit log's guards, the read
/// models' tables (empty; the projection runner fills them), statistics, WAL.
pub(super) fn finish_target(conn: &Connection, synchronous: &str) -> rusqlite::Result<()> {
    conn.execute(RENUMBER, [])?;
    for ddl in INDEXES.iter().chain(SQLITE_SEQUENCING).chain(SQLITE_AUDIT) {
        conn.execute_batch(ddl)?;
    }
    for ddl in projection_tables() {
        conn.execute_batch(&ddl)?;
    }
    conn.execute_batch("ANALYZE")?;
    crate::store::drop_planner_samples(conn)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if mode != "wal" {
        let problem = format!("journal_mode is {mode}, not wal");
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(problem),
        ));
    }
    conn.pragma_update(None, "synchronous", synchronous)
}

/// Copies to the new layout every event an old shard numbered after `cursor`, with
/// each touched flight's status; then its recent audit records. Reads one snapshot
/// of the old shard (its own read transaction, or the write transaction the switch
/// holds). Idempotent: a flight gets only the events past its version in the new
/// layout, so a round repeated after a crash copies nothing twice.
pub(super) fn catch_up(
    old: &Connection,
    cursor: i64,
    audit_since: i64,
    to: ShardCount,
    targets: &[Connection],
) -> rusqlite::Result<CaughtUp> {
    let own_snapshot = old.is_autocommit();
    if own_snapshot {
        old.execute_batch("BEGIN")?;
    }
    let result = catch_up_in_snapshot(old, cursor, audit_since, to, targets);
    if own_snapshot {
        old.execute_batch("COMMIT")?;
    }
    result
}

fn catch_up_in_snapshot(
    old: &Connection,
    cursor: i64,
    audit_since: i64,
    to: ShardCount,
    targets: &[Connection],
) -> rusqlite::Result<CaughtUp> {
    let head = sequence_head(old)?;
    let touched: BTreeSet<i64> = rows(old, TOUCHED, (cursor, head))?.iter().map(|r| int(&r[0])).collect();
    begin_all(targets)?;
    let mut events = 0;
    for &flight in &touched {
        let target = &targets[to.shard_for(flight)];
        let have: i64 = target.query_row(EVENT_VERSION, [flight], |r| r.get(0))?;
        for row in rows(old, EVENTS_AFTER, (flight, have))? {
            put(target, INSERT_EVENT, &row)?;
            events += 1;
        }
        for row in rows(old, STATUS, (flight, flight + 1))? {
            put(target, PUT_STATUS, &row)?;
        }
    }
    commit_all(targets)?;
    let audit_since = copy_audit(old, audit_since.saturating_sub(AUDIT_SLACK_MICROS), to, targets)?;
    Ok(CaughtUp { cursor: head, audit_since, events, flights: touched })
}

/// Each flight's version and a BLAKE3 digest of its flight row, status row and events,
/// for the flights with ids in `from..to_id`.
fn bundles(conn: &Connection, from: i64, to_id: i64) -> rusqlite::Result<Bundles> {
    let mut hashers: BTreeMap<i64, (i64, blake3::Hasher)> = BTreeMap::new();
    for (table, sql) in [(0u8, FLIGHTS), (1, STATUS), (2, EVENTS)] {
        for row in rows(conn, sql, (from, to_id))? {
            let (version, hasher) = hashers.entry(int(&row[0])).or_insert_with(|| (0, blake3::Hasher::new()));
            if table == 1 {
                *version = int(&row[1]);
            }
            hasher.update(&[table]);
            for value in &row {
                hash_value(hasher, value);
            }
        }
    }
    Ok(hashers.into_iter().map(|(id, (version, h))| (id, (version, *h.finalize().as_bytes()))).collect())
}

fn hash_value(h: &mut blake3::Hasher, value: &Value) {
    match value {
        Value::Null => h.update(&[0]),
        Value::Integer(i) => h.update(&[1]).update(&i.to_le_bytes()),
        Value::Real(f) => h.update(&[2]).update(&f.to_le_bytes()),
        Value::Text(t) => h.update(&[3]).update(&(t.len() as u64).to_le_bytes()).update(t.as_bytes()),
        Value::Blob(b) => h.update(&[4]).update(&(b.len() as u64).to_le_bytes()).update(b),
    };
}

/// Compares one chunk of flight ids across the layouts: every flight must be on the
/// new shard it hashes to, once, and equal to the old one (`compare_bundles`).
pub(super) fn compare_chunk(
    old: &[Connection],
    new: &[Connection],
    from: i64,
    to_id: i64,
    to: ShardCount,
    moving: &mut BTreeSet<i64>,
) -> Result<u64, Mismatch> {
    let gather = |conns: &[Connection]| -> Result<Vec<Bundles>, Mismatch> {
        conns.iter().map(|conn| bundles(conn, from, to_id).map_err(Mismatch::read)).collect()
    };
    super::compare_gathered(gather(old)?, gather(new)?, to, moving)
}

/// Compares the given flights one by one (`compare_bundles`); returns those still
/// being written.
pub(super) fn compare_flights(
    old: &[Connection],
    new: &[Connection],
    from: ShardCount,
    to: ShardCount,
    ids: &BTreeSet<i64>,
) -> Result<BTreeSet<i64>, Mismatch> {
    let mut moving = BTreeSet::new();
    for &id in ids {
        let before = bundles(&old[from.shard_for(id)], id, id + 1).map_err(Mismatch::read)?;
        let after = bundles(&new[to.shard_for(id)], id, id + 1).map_err(Mismatch::read)?;
        super::compare_bundles(before, after, &mut moving)?;
    }
    Ok(moving)
}

/// Every audit chain's length and last hash over a layout's shards.
pub(super) fn audit_heads(conns: &[Connection]) -> Result<AuditHeads, Mismatch> {
    let mut heads = AuditHeads::new();
    for conn in conns {
        // SQLite takes the bare column `hash` from the row holding MAX(seq).
        let found = rows(conn, "SELECT chain, COUNT(*), MAX(seq), hash FROM audit_log GROUP BY chain", [])
            .map_err(Mismatch::read)?;
        for row in found {
            super::add_head(&mut heads, text(&row[0]).to_owned(), int(&row[1]), int(&row[2]), text(&row[3]).to_owned());
        }
    }
    Ok(heads)
}

//! Opening a SQLite shard: one file, three handles onto it.
//!
//! - an sqlx pool (the `prepared` and `adhoc` paths);
//! - a sea-orm connection wrapping that same pool (the `orm` path), so the ORM shares
//!   connections and data rather than opening its own;
//! - a small pool of rusqlite connections (the `raw` path), used inline on the
//!   calling thread; see [`RawSqlitePool`] for why.
//!
//! Every connection gets the same pragmas: WAL (persistent in the file, set by
//! `seed`), `synchronous` from the configured durability, a busy timeout, and
//! [`MMAP_SIZE`].

use super::{Durability, StoreConfig, StoreError};
use rusqlite::OpenFlags;
use sea_orm::{DatabaseConnection, SqlxSqliteConnector};
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `PRAGMA mmap_size`: read pages straight from the OS page cache instead of copying
/// each into the connection's own cache with `pread`. Under load that copy and its
/// syscall showed in the server's profile (`_copy_to_iter`, `filemap_get_read_batch`);
/// mapping the file shares one copy of every page across all connections. Address
/// space only: memory is used as pages are touched, and SQLite maps at most the file.
pub const MMAP_SIZE: i64 = 1 << 30;

/// The pragmas every shard connection runs with, as reports quote them.
pub fn sqlite_pragmas(config: &StoreConfig) -> Vec<(String, String)> {
    [
        ("journal_mode", "WAL".to_owned()),
        ("synchronous", config.durability.pragma().to_owned()),
        ("mmap_size", MMAP_SIZE.to_string()),
        ("busy_timeout", config.busy_timeout.as_millis().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Deletes the planner's `sqlite_stat4` samples, keeping `sqlite_stat1`.
///
/// With samples present, SQLite re-plans a statement on every execution whose range
/// bounds are bound parameters, to look the values up in the samples: every departures
/// and delay-statistics query re-parsed its SQL. On a 100,000-flight shard that was
/// 95 µs per 50-row departures query against 70 µs without, and 22 against 6.5 µs on
/// each of 16 shards (4 rows; `sqlite3_stmt_status` counted one re-prepare per run;
/// results/shards.md). The plans are the same without them: every airport query is a
/// range on `(origin, sched_dep, id)`, which `sqlite_stat1` already ranks. `seed` calls
/// this after `ANALYZE`; opening a shard calls it for datasets seeded before.
pub(crate) fn drop_planner_samples(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let exists = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, bool>(0));
    if exists("SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat4')")?
        && exists("SELECT EXISTS (SELECT 1 FROM sqlite_stat4)")?
    {
        conn.execute("DELETE FROM sqlite_stat4", [])?;
    }
    Ok(())
}

pub(crate) struct SqliteShard {
    /// The shard file, for probes that open their own connection.
    pub file: PathBuf,
    pub pool: SqlitePool,
    pub orm: DatabaseConnection,
    pub raw: Arc<RawSqlitePool>,
}

impl SqliteShard {
    pub async fn open(shard: usize, file: &Path, config: &StoreConfig) -> Result<Self, StoreError> {
        let unavailable =
            |reason: String| StoreError::Unavailable { shard, location: file.display().to_string(), reason };
        if !file.is_file() {
            return Err(unavailable("shard file is missing; re-seed with `flightbench seed --force`".into()));
        }
        // Before any pooled connection loads the statistics.
        rusqlite::Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .and_then(|c| c.busy_timeout(config.busy_timeout).map(|()| c))
            .and_then(|c| drop_planner_samples(&c))
            .map_err(|e| unavailable(format!("clearing the planner's samples: {e}")))?;
        let options = SqliteConnectOptions::new()
            .filename(file)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match config.durability {
                Durability::Normal => SqliteSynchronous::Normal,
                Durability::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(config.busy_timeout)
            .pragma("mmap_size", MMAP_SIZE.to_string())
            // See `postgres::PostgresShard::open`.
            .disable_statement_logging();
        let pool = SqlitePoolOptions::new()
            .max_connections(config.pool_size)
            .acquire_timeout(config.busy_timeout + Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let raw = RawSqlitePool::open(file.to_owned(), config).map_err(|e| unavailable(e.to_string()))?;
        // Check the file really is a dataset shard, not an empty or foreign database.
        raw.with(|c| c.query_row("SELECT COUNT(*) FROM flight_status WHERE flight_id = 0", [], |r| r.get::<_, i64>(0)))
            .map_err(|e| unavailable(format!("not a flightbench shard: {e}")))?;
        let orm = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone());
        Ok(Self { file: file.to_owned(), pool, orm, raw: Arc::new(raw) })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// rusqlite connections for the `raw` path, checked out and run **inline on the
/// calling thread**.
///
/// sqlx hands every SQLite call to a per-connection worker thread and awaits the
/// answer; on this 2-core machine that hand-off measured 21 µs per point read when
/// pinned to one core and about 120 µs when not, against 3–12 µs for the query itself
/// through rusqlite (see shared/DESIGN.md and `benches/queries.rs`). A point read
/// finishes faster than a thread wake-up, so the raw path runs it where it is.
/// Writes, which may wait for the shard's write lock up to the busy timeout, go to
/// tokio's blocking pool instead (`path::raw`).
///
/// The pool is a mutex-guarded stack: the lock is held only to push or pop a
/// connection, never during a query. It grows on demand (one connection per thread
/// that is using the shard at once) up to `max_idle` kept connections.
pub(crate) struct RawSqlitePool {
    file: PathBuf,
    synchronous: &'static str,
    busy_timeout: Duration,
    idle: Mutex<Vec<rusqlite::Connection>>,
    max_idle: usize,
    /// Connections open (idle or in use). Changes only when one is opened or dropped,
    /// never on an ordinary checkout, so the hot path pays nothing for it.
    open: AtomicUsize,
}

impl RawSqlitePool {
    fn open(file: PathBuf, config: &StoreConfig) -> rusqlite::Result<Self> {
        let pool = Self {
            file,
            synchronous: config.durability.pragma(),
            busy_timeout: config.busy_timeout,
            idle: Mutex::new(Vec::new()),
            max_idle: config.pool_size as usize * 2,
            open: AtomicUsize::new(0),
        };
        let first = pool.connect()?;
        pool.idle().push(first);
        Ok(pool)
    }

    fn connect(&self) -> rusqlite::Result<rusqlite::Connection> {
        // NO_MUTEX: each connection is used by one thread at a time (the pool hands it
        // out exclusively), so SQLite's own per-connection mutex is pure overhead.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&self.file, flags)?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.pragma_update(None, "synchronous", self.synchronous)?;
        conn.pragma_update(None, "mmap_size", MMAP_SIZE)?;
        conn.set_prepared_statement_cache_capacity(32);
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<rusqlite::Connection>> {
        // A panic while holding this lock can only happen inside Vec::push/pop; the
        // stack is still consistent, so a poisoned lock is safe to keep using.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Open connections and how many of them are idle.
    pub fn stats(&self) -> (usize, usize) {
        let idle = self.idle().len();
        (self.open.load(Ordering::Relaxed).max(idle), idle)
    }

    /// Runs `work` on a pooled connection on the current thread.
    pub fn with<R>(&self, work: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<R>) -> rusqlite::Result<R> {
        let popped = self.idle().pop();
        let mut conn = match popped {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = work(&mut conn);
        // A connection left inside a transaction (the work returned early) is dropped,
        // which rolls the transaction back, rather than reused.
        if conn.is_autocommit() {
            let mut idle = self.idle();
            if idle.len() < self.max_idle {
                idle.push(conn);
                return result;
            }
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// How many of 20 runs of a range query with fresh bounds SQLite re-planned.
    fn replans(conn: &rusqlite::Connection, sql: &str) -> i32 {
        let mut stmt = conn.prepare(sql).unwrap();
        for i in 0..20 {
            let rows: Vec<i64> =
                stmt.query_map([i * 10, i * 10 + 50], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
            assert!(!rows.is_empty());
        }
        stmt.get_status(StatementStatus::RePrepare)
    }

    /// The reason for `drop_planner_samples` and for `DEPARTURES_STEPPED`, checked
    /// against the SQLite we link: samples, or a bound `LIMIT`, re-plan every run.
    #[test]
    fn planner_samples_and_a_bound_limit_replan_every_run_and_dropping_them_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("t.sqlite3")).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
             INSERT INTO t SELECT i, i % 1000 FROM n;
             CREATE INDEX t_k ON t (k); ANALYZE;",
        )
        .unwrap();
        let samples =
            |c: &rusqlite::Connection| c.query_row("SELECT COUNT(*) FROM sqlite_stat4", [], |r| r.get::<_, i64>(0));
        assert!(samples(&conn).unwrap() > 0);
        let range = "SELECT id FROM t WHERE k >= ?1 AND k < ?2 ORDER BY k, id";
        assert_eq!(replans(&conn, range), 20);

        drop_planner_samples(&conn).unwrap();
        assert_eq!(samples(&conn).unwrap(), 0);
        // Statistics are read when a connection loads the schema.
        let fresh = rusqlite::Connection::open(dir.path().join("t.sqlite3")).unwrap();
        assert_eq!(replans(&fresh, range), 0);
        assert_eq!(replans(&fresh, &format!("{range} LIMIT 30")), 0);
        let mut bound_limit = fresh.prepare(&format!("{range} LIMIT ?3")).unwrap();
        for i in 0..20 {
            bound_limit.query_map([i * 10, i * 10 + 50, 30], |r| r.get::<_, i64>(0)).unwrap().for_each(drop);
        }
        assert_eq!(bound_limit.get_status(StatementStatus::RePrepare), 20);

        // Idempotent, and harmless on a database that never ran ANALYZE.
        drop_planner_samples(&fresh).unwrap();
        drop_planner_samples(&rusqlite::Connection::open_in_memory().unwrap()).unwrap();
    }
}

//! `events migrate`: rewrites stored events of older schema versions in place as the
//! current version, so the upcasters stop running on every read.
//!
//! Per shard, in batches of `batch` events, each batch one transaction through the
//! bare driver:
//! 1. read the next old events after the last key done (keyset on the primary key, so
//!    the whole pass reads each row once, however many batches);
//! 2. upcast and decode each (`decode::recorded_event`, the readers' own code) and
//!    keep what a reader sees;
//! 3. rewrite each row's payload as `EventRow::new` writes the current version, guarded
//!    by the version read (`AND schema_version = old`), so a row something else
//!    rewrote in between is left alone;
//! 4. read the rewritten rows back and decode them; commit only if readers see the
//!    same events, else roll back and stop with an error naming the batch. The shard's
//!    digests before and after are kept over every committed batch.
//!
//! It is resumable because its state is the data: a killed run loses at most its open
//! batch (rolled back), and the next run finds the rows still old. It is safe under a
//! running server: the service only appends (at the current version) and never updates
//! an event, readers upcast whichever version they meet, and on SQLite a batch holds
//! the write lock for one short transaction (a writer waits, within its busy timeout).

use super::decode::{self, Columns};
use super::path::{OnShard, PgCols, sqlite_rows};
use super::row::{EventRow, event_columns};
use super::schema::{
    DATA_KEY_INDEX, NUMBER_EVENTS, POSTGRES_AUDIT, POSTGRES_SEQUENCING, SQLITE_AUDIT, SQLITE_SEQUENCING,
    projection_tables,
};
use super::{Shard, ShardConn, Store, StoreConfig, StoreError};
use crate::dataset::{MANIFEST_FORMAT, Manifest, ManifestError};
use crate::domain::{RecordedEvent, SCHEMA_VERSION};
use futures_util::FutureExt;
use rusqlite::TransactionBehavior;
use std::path::Path;

const COUNT_OLD: &str = "SELECT COUNT(*) FROM delay_events WHERE schema_version < $1";

const NEWER: &str = "SELECT flight_id, version, schema_version FROM delay_events WHERE schema_version > $1 LIMIT 1";

const PAGE: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM delay_events WHERE (flight_id, version) > ($1, $2) AND schema_version < $3 \
     ORDER BY flight_id, version LIMIT $4"
);

const REWRITE: &str = "UPDATE delay_events SET kind = $1, delay_minutes = $2, reason = $3, schema_version = $4, \
     cause = $5, reported_by = $6 WHERE flight_id = $7 AND version = $8 AND schema_version = $9";

const REREAD: &str = concat!("SELECT ", event_columns!(), " FROM delay_events WHERE flight_id = $1 AND version = $2");

/// What one shard's migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMigration {
    pub shard: usize,
    /// Events rewritten as the current version.
    pub migrated: u64,
    /// BLAKE3 over every migrated event as readers saw it before (upcast) and after
    /// (stored as current): equal, or the migration stopped.
    pub digest_before: String,
    pub digest_after: String,
}

/// An old event as read for migration: the decoded (upcast) event and what the row
/// needs to be rewritten and checked.
struct OldEvent {
    event: RecordedEvent,
    flight_dep: i64,
    stored_version: i64,
}

fn old_event(c: &impl Columns) -> Result<OldEvent, StoreError> {
    Ok(OldEvent { event: decode::recorded_event(c)?, flight_dep: c.int(2)?, stored_version: c.int(7)? })
}

/// One batch's transaction, through the bare driver of either backend.
trait MigrateTx {
    async fn page(&mut self, after: (i64, i64), limit: i64) -> Result<Vec<OldEvent>, StoreError>;
    /// Rewrites each row as given where it is still at the stored version paired with
    /// it; returns the rows changed.
    async fn rewrite_all(&mut self, rows: &[(EventRow<'_>, i64)]) -> Result<u64, StoreError>;
    /// The events at these (flight, version) keys, in order.
    async fn reread_all(&mut self, keys: &[(i64, i64)]) -> Result<Vec<RecordedEvent>, StoreError>;
    async fn commit(self) -> Result<(), StoreError>;
}

/// An event as a reader sees it, as bytes to compare and digest (its JSON, which
/// names every field).
fn event_bytes(e: &RecordedEvent) -> Vec<u8> {
    // Cannot fail: a RecordedEvent is plain data with string keys.
    serde_json::to_vec(e).expect("serialisable")
}

/// Migrates one batch; returns the events migrated and the last key read, or `None`
/// when no old event is left after `after`.
async fn batch(
    mut tx: impl MigrateTx,
    shard: usize,
    after: (i64, i64),
    limit: i64,
    digests: &mut (blake3::Hasher, blake3::Hasher),
) -> Result<Option<(u64, (i64, i64))>, StoreError> {
    let old = tx.page(after, limit).await?;
    let Some(last) = old.last().map(|o| (o.event.flight_id.get(), o.event.version)) else {
        return Ok(None);
    };
    let before: Vec<_> = old.iter().map(|o| event_bytes(&o.event)).collect();
    let mut rows = Vec::with_capacity(old.len());
    for o in &old {
        let dep = decode::time(shard, o.flight_dep)?;
        rows.push((EventRow::new(o.event.flight_id, o.event.version, dep, &o.event.event), o.stored_version));
    }
    let migrated = tx.rewrite_all(&rows).await?;
    let keys: Vec<_> = old.iter().map(|o| (o.event.flight_id.get(), o.event.version)).collect();
    let after_rewrite: Vec<_> = tx.reread_all(&keys).await?.iter().map(event_bytes).collect();
    if before != after_rewrite {
        return Err(StoreError::corrupt(
            shard,
            format!(
                "migrating events up to flight {} version {} changed what readers see; rolled back",
                last.0, last.1
            ),
        ));
    }
    tx.commit().await?;
    for (b, a) in before.iter().zip(&after_rewrite) {
        digests.0.update(b);
        digests.1.update(a);
    }
    Ok(Some((migrated, last)))
}

impl Store {
    /// Stored events older than this build's schema version, per shard.
    pub async fn old_event_counts(&self) -> Result<Vec<u64>, StoreError> {
        let current = i64::from(SCHEMA_VERSION);
        let counts = self.shards.iter().map(|shard| async move {
            let count: i64 = match &shard.conn {
                ShardConn::Sqlite(s) => s.raw.with(|c| c.query_row(COUNT_OLD, [current], |r| r.get(0))).on(shard)?,
                ShardConn::Postgres(p) => {
                    let client = p.raw.get().await.on(shard)?;
                    client.query_one(COUNT_OLD, &[&current]).await.on(shard)?.try_get(0).on(shard)?
                }
            };
            Ok::<_, StoreError>(count.max(0) as u64)
        });
        futures_util::future::try_join_all(counts).await
    }

    /// Rewrites every older event as the current schema version, shard by shard, in
    /// verified batches (module doc); `progress` hears each committed batch's size.
    pub async fn migrate_events(
        &self,
        batch_size: u32,
        progress: impl Fn(u64),
    ) -> Result<Vec<ShardMigration>, StoreError> {
        let mut report = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            report.push(migrate_shard(shard, i64::from(batch_size.max(1)), &progress).await?);
        }
        Ok(report)
    }
}

/// Refuses a shard holding an event newer than this build: a build that cannot read
/// it must not be the one that rewrites the stream (a rolling upgrade half done).
async fn refuse_newer(shard: &Shard) -> Result<(), StoreError> {
    let current = i64::from(SCHEMA_VERSION);
    let newer: Option<(i64, i64, i64)> = match &shard.conn {
        ShardConn::Sqlite(s) => s
            .raw
            .with(|c| {
                rusqlite::OptionalExtension::optional(
                    c.query_row(NEWER, [current], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))),
                )
            })
            .on(shard)?,
        ShardConn::Postgres(p) => {
            let client = p.raw.get().await.on(shard)?;
            let row = client.query_opt(NEWER, &[&current]).await.on(shard)?;
            row.map(|r| {
                Ok::<_, StoreError>((r.try_get(0).on(shard)?, r.try_get(1).on(shard)?, r.try_get(2).on(shard)?))
            })
            .transpose()?
        }
    };
    match newer {
        None => Ok(()),
        Some((flight, version, found)) => Err(StoreError::corrupt(
            shard.index,
            format!(
                "event {version} of flight {flight}: {}",
                crate::domain::EventKindError::NewerSchema { found, known: current }
            ),
        )),
    }
}

async fn migrate_shard(shard: &Shard, limit: i64, progress: &impl Fn(u64)) -> Result<ShardMigration, StoreError> {
    refuse_newer(shard).await?;
    let index = shard.index;
    let mut digests = (blake3::Hasher::new(), blake3::Hasher::new());
    let (mut after, mut migrated) = ((0i64, 0i64), 0u64);
    loop {
        let done = match &shard.conn {
            ShardConn::Sqlite(s) => {
                let raw = s.raw.clone();
                let mut moved = std::mem::take(&mut digests);
                let (done, returned) = tokio::task::spawn_blocking(move || {
                    let done = raw
                        .with(|c| {
                            let tx =
                                SqliteTx { tx: c.transaction_with_behavior(TransactionBehavior::Immediate)?, index };
                            // rusqlite is synchronous: one poll runs the whole batch.
                            Ok(batch(tx, index, after, limit, &mut moved).now_or_never())
                        })
                        .on(index)
                        .and_then(|r| {
                            r.unwrap_or_else(|| {
                                Err(StoreError::Config("a SQLite batch did not complete in one poll".into()))
                            })
                        });
                    (done, moved)
                })
                .await
                .on(shard)?;
                digests = returned;
                done?
            }
            ShardConn::Postgres(p) => {
                let mut client = p.raw.get().await.on(shard)?;
                let tx = client.transaction().await.on(shard)?;
                batch(PgTx { tx, shard }, index, after, limit, &mut digests).await?
            }
        };
        let Some((count, last)) = done else { break };
        (after, migrated) = (last, migrated + count);
        progress(count);
    }
    Ok(ShardMigration {
        shard: index,
        migrated,
        digest_before: digests.0.finalize().to_hex().to_string(),
        digest_after: digests.1.finalize().to_hex().to_string(),
    })
}

struct SqliteTx<'c> {
    tx: rusqlite::Transaction<'c>,
    index: usize,
}

impl MigrateTx for SqliteTx<'_> {
    async fn page(&mut self, after: (i64, i64), limit: i64) -> Result<Vec<OldEvent>, StoreError> {
        let mut stmt = self.tx.prepare_cached(PAGE).on(self.index)?;
        let params = rusqlite::params![after.0, after.1, i64::from(SCHEMA_VERSION), limit];
        let rows = stmt.query_map(params, sqlite_rows(self.index, |c| old_event(c))).on(self.index)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().on(self.index)?.into_iter().collect()
    }

    async fn rewrite_all(&mut self, rows: &[(EventRow<'_>, i64)]) -> Result<u64, StoreError> {
        let mut stmt = self.tx.prepare_cached(REWRITE).on(self.index)?;
        let mut changed = 0;
        for (row, stored_version) in rows {
            let params = rusqlite::params![
                row.kind,
                row.delay_minutes,
                row.reason,
                row.schema_version,
                row.cause,
                row.reported_by,
                row.flight_id,
                row.version,
                stored_version
            ];
            changed += stmt.execute(params).on(self.index)? as u64;
        }
        Ok(changed)
    }

    async fn reread_all(&mut self, keys: &[(i64, i64)]) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut stmt = self.tx.prepare_cached(REREAD).on(self.index)?;
        keys.iter()
            .map(|&(flight, version)| {
                stmt.query_row([flight, version], sqlite_rows(self.index, |c| decode::recorded_event(c)))
                    .on(self.index)?
            })
            .collect()
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().on(self.index)
    }
}

struct PgTx<'c, 's> {
    tx: deadpool_postgres::Transaction<'c>,
    shard: &'s Shard,
}

impl MigrateTx for PgTx<'_, '_> {
    async fn page(&mut self, after: (i64, i64), limit: i64) -> Result<Vec<OldEvent>, StoreError> {
        let stmt = self.tx.prepare_cached(PAGE).await.on(self.shard)?;
        let rows =
            self.tx.query(&stmt, &[&after.0, &after.1, &i64::from(SCHEMA_VERSION), &limit]).await.on(self.shard)?;
        rows.iter().map(|r| old_event(&PgCols::new(r, self.shard))).collect()
    }

    /// The statements are sent pipelined (all futures polled together on the one
    /// connection): one at a time, a round trip each, the default PostgreSQL dataset
    /// migrated at 1,900 events/s; pipelined, see `results/events.md`.
    async fn rewrite_all(&mut self, rows: &[(EventRow<'_>, i64)]) -> Result<u64, StoreError> {
        let stmt = self.tx.prepare_cached(REWRITE).await.on(self.shard)?;
        let (tx, stmt) = (&self.tx, &stmt);
        let updates = rows.iter().map(|(row, stored_version)| async move {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
                &row.kind,
                &row.delay_minutes,
                &row.reason,
                &row.schema_version,
                &row.cause,
                &row.reported_by,
                &row.flight_id,
                &row.version,
                stored_version,
            ];
            tx.execute(stmt, &params).await
        });
        let changed = futures_util::future::try_join_all(updates).await.on(self.shard)?;
        Ok(changed.iter().sum())
    }

    async fn reread_all(&mut self, keys: &[(i64, i64)]) -> Result<Vec<RecordedEvent>, StoreError> {
        let stmt = self.tx.prepare_cached(REREAD).await.on(self.shard)?;
        let (tx, stmt) = (&self.tx, &stmt);
        let reads = keys.iter().map(|(flight, version)| async move { tx.query_one(stmt, &[flight, version]).await });
        let rows = futures_util::future::try_join_all(reads).await.on(self.shard)?;
        rows.iter().map(|r| decode::recorded_event(&PgCols::new(r, self.shard))).collect()
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.on(self.shard)
    }
}

/// Event columns added since format 1, as `ALTER TABLE` adds them to an older dataset:
/// event schema v2's `cause` and `reported_by` (format 2), and the sealing data key's id
/// (format 4).
const ADDED_TEXT_COLUMNS: [&str; 3] = ["cause", "reported_by", "data_key"];

/// Format 3's event number, as `ALTER TABLE` adds it to a format-1 or 2 dataset
/// (`STRICT` SQLite tables take only INTEGER).
const SQLITE_SEQ_COLUMN: &str = "ADD COLUMN seq INTEGER NOT NULL DEFAULT 0";
const POSTGRES_SEQ_COLUMN: &str = "ADD COLUMN seq BIGINT NOT NULL DEFAULT 0";

/// Upgrades an older dataset's table layout in place to this build's (format 4):
/// format 1 gains event schema v2's columns; formats 1 to 3 gain `data_key` and its
/// index and the audit log; formats 1 and 2 gain the per-shard event
/// sequence (existing events numbered oldest first), its trigger and the async read
/// models' tables. Each shard is upgraded in one transaction (both databases make DDL
/// transactional), skipped if it already has the sequence, and the manifest is
/// written last, so a run killed at any point is simply run again. Returns the format
/// found, or `None` when the dataset is already current. Old rows keep NULL in the v2
/// columns, which is exactly how a v1 row reads (`EventRow::as_version_1`).
pub async fn upgrade_layout(dir: &Path, config: &StoreConfig) -> Result<Option<u32>, StoreError> {
    let mut manifest = match Manifest::load_format(dir, 1) {
        Ok(manifest) => manifest,
        Err(ManifestError::Format { found, .. }) if found == MANIFEST_FORMAT => return Ok(None),
        Err(ManifestError::Format { found: found @ (2 | 3), .. }) => Manifest::load_format(dir, found)?,
        Err(e) => return Err(e.into()),
    };
    let found = manifest.format;
    for shard in 0..manifest.shards.get() as usize {
        match (&manifest.sqlite, &manifest.postgres) {
            (Some(sqlite), _) => {
                let file = dir.join(&sqlite.files[shard]);
                let unavailable = |e: rusqlite::Error| StoreError::Unavailable {
                    shard,
                    location: file.display().to_string(),
                    reason: e.to_string(),
                };
                let mut conn =
                    rusqlite::Connection::open_with_flags(&file, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
                        .map_err(unavailable)?;
                conn.busy_timeout(config.busy_timeout).on(shard)?;
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).on(shard)?;
                let present: Vec<String> = tx
                    .prepare("SELECT name FROM pragma_table_info('delay_events')")
                    .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                    .on(shard)?;
                for column in ADDED_TEXT_COLUMNS.iter().filter(|c| !present.iter().any(|p| p == *c)) {
                    tx.execute_batch(&format!("ALTER TABLE delay_events ADD COLUMN {column} TEXT")).on(shard)?;
                }
                if !present.iter().any(|p| p == "seq") {
                    tx.execute_batch(&format!("ALTER TABLE delay_events {SQLITE_SEQ_COLUMN}")).on(shard)?;
                    tx.execute_batch(NUMBER_EVENTS).on(shard)?;
                    for ddl in SQLITE_SEQUENCING {
                        tx.execute_batch(ddl).on(shard)?;
                    }
                    for ddl in projection_tables() {
                        tx.execute_batch(&ddl).on(shard)?;
                    }
                }
                for ddl in std::iter::once(&DATA_KEY_INDEX).chain(SQLITE_AUDIT) {
                    tx.execute_batch(ddl).on(shard)?;
                }
                tx.commit().on(shard)?;
            }
            (None, Some(pg)) => {
                let url = &pg.shard_urls[shard];
                let unavailable = |e: super::pg_tls::ConnectError| StoreError::Unavailable {
                    shard,
                    location: url.clone(),
                    reason: e.to_string(),
                };
                let mut client =
                    super::pg_tls::connect(url, config.pg_password.as_deref()).await.map_err(unavailable)?;
                let tx = client.transaction().await.on(shard)?;
                let add = ADDED_TEXT_COLUMNS.map(|c| format!("ADD COLUMN IF NOT EXISTS {c} TEXT")).join(", ");
                tx.batch_execute(&format!("ALTER TABLE delay_events {add}")).await.on(shard)?;
                let sequenced = tx
                    .query_one("SELECT to_regclass('event_sequence') IS NOT NULL", &[])
                    .await
                    .on(shard)?
                    .get::<_, bool>(0);
                if !sequenced {
                    tx.batch_execute(&format!("ALTER TABLE delay_events {POSTGRES_SEQ_COLUMN}")).await.on(shard)?;
                    tx.batch_execute(NUMBER_EVENTS).await.on(shard)?;
                    for ddl in POSTGRES_SEQUENCING {
                        tx.batch_execute(ddl).await.on(shard)?;
                    }
                    for ddl in projection_tables() {
                        tx.batch_execute(&ddl).await.on(shard)?;
                    }
                }
                for ddl in std::iter::once(&DATA_KEY_INDEX).chain(POSTGRES_AUDIT) {
                    tx.batch_execute(ddl).await.on(shard)?;
                }
                tx.commit().await.on(shard)?;
                drop(client);
            }
            (None, None) => return Err(StoreError::Config("manifest names no shards".into())),
        }
    }
    manifest.format = MANIFEST_FORMAT;
    manifest.save(dir).map_err(|e| StoreError::Config(format!("cannot write the upgraded manifest: {e}")))?;
    Ok(Some(found))
}

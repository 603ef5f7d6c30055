//! `raw`: the driver floor. rusqlite with cached statements on SQLite, tokio-postgres
//! with cached prepared statements on PostgreSQL. It shows how much of the other
//! paths' cost is the library rather than the database.
//!
//! SQLite reads run inline on the calling thread (see `RawSqlitePool` for the
//! measurements behind that); the append runs on tokio's blocking pool because it may
//! wait up to the busy timeout for the shard's write lock, which must not stall a
//! runtime worker.

use super::OnShard;
use super::append::{self, AppendTx, AuditPlan, AuditTx, Inserted};
use crate::audit::Record;
use crate::domain::{
    AirportCode, DelayEvent, DelayHistogram, Departure, FlightId, FlightStatus, FlightView, Limit, RecordedEvent,
    TimeWindow, UtcTime,
};
use crate::store::decode::{self, Columns};
use crate::store::row::{EventRow, StatusRow};
use crate::store::{Shard, ShardConn, StoreError, sql};
use futures_util::FutureExt;
use rusqlite::{OptionalExtension, TransactionBehavior};
use tokio_postgres::error::SqlState;

// ---- column access, one per driver ----

/// A rusqlite row read by position.
pub(crate) struct SqliteCols<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    shard: usize,
}

impl Columns for SqliteCols<'_, '_> {
    fn shard(&self) -> usize {
        self.shard
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.row.get(i).on(self.shard)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.row.get(i).on(self.shard)
    }
    fn text(&self, i: usize) -> Result<&str, StoreError> {
        let value = self.row.get_ref(i).on(self.shard)?;
        value.as_str().on(self.shard)
    }
    fn opt_text(&self, i: usize) -> Result<Option<&str>, StoreError> {
        let value = self.row.get_ref(i).on(self.shard)?;
        value.as_str_or_null().on(self.shard)
    }
}

/// Decodes with `read` inside a rusqlite row callback (which must return rusqlite's
/// own result): driver errors and decoding errors both come out as `StoreError`.
pub(crate) fn sqlite<T>(
    shard: usize,
    read: impl Fn(&SqliteCols<'_, '_>) -> Result<T, StoreError>,
) -> impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<Result<T, StoreError>> {
    move |row| Ok(read(&SqliteCols { row, shard }))
}

/// A tokio-postgres row read by position.
pub(crate) struct PgCols<'r> {
    row: &'r tokio_postgres::Row,
    shard: usize,
}

impl<'r> PgCols<'r> {
    pub(crate) fn new(row: &'r tokio_postgres::Row, shard: &Shard) -> Self {
        Self { row, shard: shard.index }
    }
}

impl Columns for PgCols<'_> {
    fn shard(&self) -> usize {
        self.shard
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.row.try_get(i).on(self.shard)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.row.try_get(i).on(self.shard)
    }
    fn text(&self, i: usize) -> Result<&str, StoreError> {
        self.row.try_get(i).on(self.shard)
    }
    fn opt_text(&self, i: usize) -> Result<Option<&str>, StoreError> {
        self.row.try_get(i).on(self.shard)
    }
}

// ---- operations ----

pub(crate) async fn flight(shard: &Shard, id: FlightId) -> Result<Option<FlightView>, StoreError> {
    match &shard.conn {
        ShardConn::Sqlite(s) => s
            .raw
            .with(|c| {
                let mut stmt = c.prepare_cached(sql::FLIGHT_BY_ID)?;
                stmt.query_row([id.get()], sqlite(shard.index, |c| decode::flight_view(c))).optional()
            })
            .on(shard)?
            .transpose(),
        ShardConn::Postgres(p) => {
            let client = p.raw.get().await.on(shard)?;
            let stmt = client.prepare_cached(sql::FLIGHT_BY_ID).await.on(shard)?;
            let row = client.query_opt(&stmt, &[&id.get()]).await.on(shard)?;
            row.map(|r| decode::flight_view(&PgCols::new(&r, shard))).transpose()
        }
    }
}

pub(crate) async fn departures(
    shard: &Shard,
    airport: AirportCode,
    window: TimeWindow,
    limit: Limit,
) -> Result<Vec<Departure>, StoreError> {
    let (from, to, limit) = (window.from.unix(), window.to.unix(), limit.get());
    match &shard.conn {
        ShardConn::Sqlite(s) => s
            .raw
            .with(|c| {
                let mut stmt = c.prepare_cached(sql::DEPARTURES_STEPPED)?;
                let params = rusqlite::params![airport.as_str(), from, to];
                let rows = stmt.query_map(params, sqlite(shard.index, |c| decode::flight_view(c)))?;
                rows.take(limit).collect::<rusqlite::Result<Vec<_>>>()
            })
            .on(shard)?
            .into_iter()
            .collect(),
        ShardConn::Postgres(p) => {
            let client = p.raw.get().await.on(shard)?;
            let stmt = client.prepare_cached(sql::DEPARTURES).await.on(shard)?;
            let rows = client.query(&stmt, &[&airport.as_str(), &from, &to, &(limit as i64)]).await.on(shard)?;
            rows.iter().map(|r| decode::flight_view(&PgCols::new(r, shard))).collect()
        }
    }
}

pub(crate) async fn events(shard: &Shard, id: FlightId) -> Result<Vec<RecordedEvent>, StoreError> {
    match &shard.conn {
        ShardConn::Sqlite(s) => s
            .raw
            .with(|c| {
                let mut stmt = c.prepare_cached(sql::EVENTS)?;
                let rows = stmt.query_map([id.get()], sqlite(shard.index, |c| decode::recorded_event(c)))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .on(shard)?
            .into_iter()
            .collect(),
        ShardConn::Postgres(p) => {
            let client = p.raw.get().await.on(shard)?;
            let stmt = client.prepare_cached(sql::EVENTS).await.on(shard)?;
            let rows = client.query(&stmt, &[&id.get()]).await.on(shard)?;
            rows.iter().map(|r| decode::recorded_event(&PgCols::new(r, shard))).collect()
        }
    }
}

pub(crate) async fn delay_histogram(
    shard: &Shard,
    airport: AirportCode,
    window: TimeWindow,
) -> Result<DelayHistogram, StoreError> {
    let (from, to) = (window.from.unix(), window.to.unix());
    let groups: Vec<(bool, i64, u64)> = match &shard.conn {
        ShardConn::Sqlite(s) => s
            .raw
            .with(|c| {
                let mut stmt = c.prepare_cached(sql::DELAY_GROUPS)?;
                let rows = stmt.query_map(
                    rusqlite::params![airport.as_str(), from, to],
                    sqlite(shard.index, |c| decode::delay_group(c)),
                )?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .on(shard)?
            .into_iter()
            .collect::<Result<_, _>>()?,
        ShardConn::Postgres(p) => {
            let client = p.raw.get().await.on(shard)?;
            let stmt = client.prepare_cached(sql::DELAY_GROUPS).await.on(shard)?;
            let rows = client.query(&stmt, &[&airport.as_str(), &from, &to]).await.on(shard)?;
            rows.iter().map(|r| decode::delay_group(&PgCols::new(r, shard))).collect::<Result<_, _>>()?
        }
    };
    let mut histogram = DelayHistogram::default();
    for (cancelled, delay, count) in groups {
        histogram.add_group(cancelled, delay, count);
    }
    Ok(histogram)
}

pub(crate) async fn append(
    shard: &Shard,
    id: FlightId,
    expected: i64,
    event: &DelayEvent,
    audit: Option<&AuditPlan>,
) -> Result<FlightStatus, StoreError> {
    match &shard.conn {
        ShardConn::Sqlite(s) => {
            let (raw, event, index, audit) = (s.raw.clone(), event.clone(), shard.index, audit.cloned());
            tokio::task::spawn_blocking(move || {
                raw.with(|c| {
                    let tx = RawSqliteTx { tx: c.transaction_with_behavior(TransactionBehavior::Immediate)?, index };
                    // rusqlite is synchronous: every step of this future completes when
                    // polled, so one poll runs the whole append.
                    Ok(append::append(tx, id, expected, &event, audit.as_ref()).now_or_never())
                })
                .on(index)?
                .unwrap_or_else(|| Err(StoreError::Config("the SQLite append did not complete in one poll".into())))
            })
            .await
            .on(shard)?
        }
        ShardConn::Postgres(p) => {
            let mut client = p.raw.get().await.on(shard)?;
            let tx = client.transaction().await.on(shard)?;
            append::append(RawPgTx { tx, shard }, id, expected, event, audit).await
        }
    }
}

/// An append through rusqlite, on a blocking thread (it may wait for the write lock).
struct RawSqliteTx<'c> {
    tx: rusqlite::Transaction<'c>,
    index: usize,
}

impl AppendTx for RawSqliteTx<'_> {
    async fn status(&mut self, id: FlightId) -> Result<Option<(FlightStatus, UtcTime)>, StoreError> {
        let mut stmt = self.tx.prepare_cached(sql::STATUS_FOR_APPEND).on(self.index)?;
        let read = stmt.query_row([id.get()], sqlite(self.index, |c| decode::status_for_append(c))).optional();
        read.on(self.index)?.transpose()
    }

    async fn update_status(&mut self, next: &StatusRow<'_>, expected: i64) -> Result<u64, StoreError> {
        let mut stmt = self.tx.prepare_cached(sql::UPDATE_STATUS).on(self.index)?;
        let params =
            rusqlite::params![next.version, next.state, next.delay_minutes, next.updated_at, next.flight_id, expected];
        Ok(stmt.execute(params).on(self.index)? as u64)
    }

    async fn insert_event(&mut self, row: &EventRow<'_>) -> Result<Inserted, StoreError> {
        let mut stmt = self.tx.prepare_cached(sql::INSERT_EVENT).on(self.index)?;
        match stmt.execute(&row.sqlite_params()[..]) {
            Ok(_) => Ok(Inserted::Row),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                Ok(Inserted::Duplicate)
            }
            Err(e) => Err(StoreError::database(self.index, e)),
        }
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().on(self.index)
    }
}

impl AuditTx for RawSqliteTx<'_> {
    /// SQLite's writer lock (`BEGIN IMMEDIATE`) is every chain's lock.
    async fn audit_head(&mut self, chain: &str, _lock: bool) -> Result<Option<(i64, String)>, StoreError> {
        let mut stmt = self.tx.prepare_cached(sql::AUDIT_HEAD).on(self.index)?;
        stmt.query_row([chain], |r| Ok((r.get(0)?, r.get(1)?))).optional().on(self.index)
    }

    async fn insert_audit(&mut self, r: &Record) -> Result<(), StoreError> {
        let mut stmt = self.tx.prepare_cached(sql::INSERT_AUDIT).on(self.index)?;
        stmt.execute(&r.sqlite_params()[..]).on(self.index)?;
        Ok(())
    }
}

impl AuditTx for RawPgTx<'_, '_> {
    async fn audit_head(&mut self, chain: &str, lock: bool) -> Result<Option<(i64, String)>, StoreError> {
        if lock {
            let stmt = self.tx.prepare_cached(sql::AUDIT_LOCK).await.on(self.shard)?;
            self.tx.query_one(&stmt, &[&chain]).await.on(self.shard)?;
        }
        let stmt = self.tx.prepare_cached(sql::AUDIT_HEAD).await.on(self.shard)?;
        let row = self.tx.query_opt(&stmt, &[&chain]).await.on(self.shard)?;
        row.map(|r| Ok((r.try_get(0).on(self.shard)?, r.try_get(1).on(self.shard)?))).transpose()
    }

    async fn insert_audit(&mut self, r: &Record) -> Result<(), StoreError> {
        let stmt = self.tx.prepare_cached(sql::INSERT_AUDIT).await.on(self.shard)?;
        self.tx.execute(&stmt, &r.pg_params()).await.on(self.shard)?;
        Ok(())
    }
}

/// An append through tokio-postgres with cached prepared statements.
struct RawPgTx<'c, 's> {
    tx: deadpool_postgres::Transaction<'c>,
    shard: &'s Shard,
}

impl AppendTx for RawPgTx<'_, '_> {
    async fn status(&mut self, id: FlightId) -> Result<Option<(FlightStatus, UtcTime)>, StoreError> {
        let read = self.tx.prepare_cached(sql::STATUS_FOR_APPEND).await.on(self.shard)?;
        let row = self.tx.query_opt(&read, &[&id.get()]).await.on(self.shard)?;
        row.map(|r| decode::status_for_append(&PgCols::new(&r, self.shard))).transpose()
    }

    async fn update_status(&mut self, next: &StatusRow<'_>, expected: i64) -> Result<u64, StoreError> {
        let update = self.tx.prepare_cached(sql::UPDATE_STATUS).await.on(self.shard)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&next.version, &next.state, &next.delay_minutes, &next.updated_at, &next.flight_id, &expected];
        self.tx.execute(&update, &params).await.on(self.shard)
    }

    async fn insert_event(&mut self, row: &EventRow<'_>) -> Result<Inserted, StoreError> {
        let insert = self.tx.prepare_cached(sql::INSERT_EVENT).await.on(self.shard)?;
        match self.tx.execute(&insert, &row.pg_params()).await {
            Ok(_) => Ok(Inserted::Row),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(Inserted::Duplicate),
            Err(e) => Err(StoreError::database(self.shard.index, e)),
        }
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.on(self.shard)
    }
}

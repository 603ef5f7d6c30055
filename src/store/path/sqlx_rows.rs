//! What the `prepared` and `adhoc` paths share, both being sqlx: column extraction,
//! generic over SQLite and PostgreSQL rows, and the append's transaction.

use super::OnShard;
use super::append::{AuditTx, Inserted};
use crate::audit::Record;
use crate::store::decode::Columns;
use crate::store::sql;
use crate::store::{Shard, StoreError};
use sqlx::{ColumnIndex, Database, Decode, Row, Type};
use std::marker::PhantomData;

/// An sqlx row of either backend, read by position (`decode::Columns`).
pub(crate) struct SqlxCols<'r, R> {
    row: &'r R,
    shard: usize,
}

impl<'r, R> SqlxCols<'r, R> {
    pub fn new(row: &'r R, shard: usize) -> Self {
        Self { row, shard }
    }
}

impl<R> Columns for SqlxCols<'_, R>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    R::Database: Database,
{
    fn shard(&self) -> usize {
        self.shard
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.row.try_get::<i64, _>(i).map_err(|e| StoreError::database(self.shard, e))
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.row.try_get::<Option<i64>, _>(i).map_err(|e| StoreError::database(self.shard, e))
    }
    fn text(&self, i: usize) -> Result<&str, StoreError> {
        self.row.try_get::<&str, _>(i).map_err(|e| StoreError::database(self.shard, e))
    }
    fn opt_text(&self, i: usize) -> Result<Option<&str>, StoreError> {
        self.row.try_get::<Option<&str>, _>(i).map_err(|e| StoreError::database(self.shard, e))
    }
}

/// An append's transaction on a shard's sqlx pool. `Style` says how its statements
/// reach the database (`prepared::Bound`, `adhoc::Literal`); each style implements
/// `AppendTx` for both backends.
pub(crate) struct SqlxTx<'c, 's, DB: sqlx::Database, Style> {
    pub tx: sqlx::Transaction<'c, DB>,
    pub shard: &'s Shard,
    style: PhantomData<Style>,
}

impl<'c, 's, DB: sqlx::Database, Style> SqlxTx<'c, 's, DB, Style> {
    pub fn new(tx: sqlx::Transaction<'c, DB>, shard: &'s Shard) -> Self {
        Self { tx, shard, style: PhantomData }
    }
}

/// An event insert's outcome: a unique-key violation means a concurrent append of
/// the same version committed first.
pub(crate) fn inserted<T>(result: Result<T, sqlx::Error>, shard: &Shard) -> Result<Inserted, StoreError> {
    match result {
        Ok(_) => Ok(Inserted::Row),
        Err(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => Ok(Inserted::Duplicate),
        Err(e) => Err(StoreError::database(shard.index, e)),
    }
}

/// The audit record through bound parameters, whichever style the path's own
/// statements use (the log is not what the paths are compared on); expanded for both
/// backends, `$lock` saying whether the backend needs the chain's advisory lock.
macro_rules! sqlx_audit_tx {
    ($db:ty, $lock:literal) => {
        impl<Style> AuditTx for SqlxTx<'_, '_, $db, Style> {
            async fn audit_head(&mut self, chain: &str, lock: bool) -> Result<Option<(i64, String)>, StoreError> {
                if lock && $lock {
                    sqlx::query(sql::AUDIT_LOCK).bind(chain).fetch_one(&mut *self.tx).await.on(self.shard)?;
                }
                let row = sqlx::query(sql::AUDIT_HEAD).bind(chain).fetch_optional(&mut *self.tx).await.on(self.shard)?;
                row.map(|r| Ok((r.try_get::<i64, _>(0).on(self.shard)?, r.try_get::<String, _>(1).on(self.shard)?)))
                    .transpose()
            }

            async fn insert_audit(&mut self, r: &Record) -> Result<(), StoreError> {
                let d = &r.draft;
                sqlx::query(sql::INSERT_AUDIT)
                    .bind(&r.chain)
                    .bind(r.seq)
                    .bind(d.at)
                    .bind(&d.request_id)
                    .bind(&d.actor)
                    .bind(&d.actor_key)
                    .bind(&d.role)
                    .bind(&d.action)
                    .bind(&d.target)
                    .bind(d.before_version)
                    .bind(d.after_version)
                    .bind(&r.prev_hash)
                    .bind(&r.hash)
                    .execute(&mut *self.tx)
                    .await
                    .on(self.shard)?;
                Ok(())
            }
        }
    };
}
sqlx_audit_tx!(sqlx::Sqlite, false);
sqlx_audit_tx!(sqlx::Postgres, true);

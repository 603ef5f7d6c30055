//! What the `prepared` and `adhoc` paths share, both being sqlx: column extraction,
//! generic over SQLite and PostgreSQL rows, and the append's transaction.

use super::append::Inserted;
use crate::store::decode::Columns;
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

//! The optimistic-concurrency append, written once for every query path.
//!
//! Inside one transaction: read the flight's status, check the expected version and
//! the transition (`plan_append`), update the status guarded by the expected version,
//! insert the event row, commit. Each path supplies only an [`AppendTx`]: how those
//! four statements reach its database (bound parameters, literals, the ORM's builder,
//! or the bare driver). The function is generic, so each path gets its own
//! monomorphised copy: no trait object or boxed future on the write path.
//!
//! Any early return drops the transaction, and every driver rolls back on drop.

use super::plan_append;
use crate::audit::{Draft, Record};
use crate::domain::{DelayEvent, FlightId, FlightStatus, UtcTime};
use crate::store::StoreError;
use crate::store::row::{EventRow, StatusRow};

/// What inserting an event row did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    Row,
    /// A row with this (flight, version) exists: another writer committed it first.
    Duplicate,
}

/// The audit record an append writes in its transaction, when the log is on.
#[derive(Debug, Clone)]
pub(crate) struct AuditPlan {
    pub chain: String,
    pub head: Head,
    pub draft: Draft,
    pub key: [u8; 32],
}

/// Where the record's predecessor comes from.
#[derive(Debug, Clone)]
pub(crate) enum Head {
    /// Read in the transaction; with `lock`, after taking the chain's lock (a
    /// per-shard chain on PostgreSQL; SQLite's writer lock already serialises, and a
    /// flight's chain is locked by its status row).
    InTx { lock: bool },
    /// Known to the caller, who holds the chain's lock until the commit (`global`).
    Known(Option<(i64, String)>),
}

impl AuditPlan {
    /// The record this plan writes for an append from `expected` to `after`.
    pub fn record(&self, head: Option<(i64, String)>, expected: i64, after: i64) -> Record {
        let draft = Draft { before_version: Some(expected), after_version: Some(after), ..self.draft.clone() };
        draft.link(&self.chain, head, &self.key)
    }
}

/// Reading a chain's head and adding a record, in an append's transaction.
pub(crate) trait AuditTx {
    /// The chain's last record's (seq, hash); with `lock`, after taking the chain's lock.
    async fn audit_head(&mut self, chain: &str, lock: bool) -> Result<Option<(i64, String)>, StoreError>;
    async fn insert_audit(&mut self, record: &Record) -> Result<(), StoreError>;
}

/// One path's transaction, opened for an append (on SQLite with the write lock taken
/// first, `BEGIN IMMEDIATE`, so the status read below cannot be outdated by a writer
/// that commits before this one upgrades its lock).
pub(crate) trait AppendTx: AuditTx {
    /// The flight's status and scheduled departure, or `None` when there is no such flight.
    async fn status(&mut self, id: FlightId) -> Result<Option<(FlightStatus, UtcTime)>, StoreError>;
    /// Writes `next` where the flight is still at `expected`; returns the rows changed.
    async fn update_status(&mut self, next: &StatusRow<'_>, expected: i64) -> Result<u64, StoreError>;
    async fn insert_event(&mut self, row: &EventRow<'_>) -> Result<Inserted, StoreError>;
    async fn commit(self) -> Result<(), StoreError>;
}

/// Appends `event` to flight `id` if it is at version `expected`; returns the new status.
pub(crate) async fn append(
    mut tx: impl AppendTx,
    id: FlightId,
    expected: i64,
    event: &DelayEvent,
    audit: Option<&AuditPlan>,
) -> Result<FlightStatus, StoreError> {
    let (current, flight_dep) = tx.status(id).await?.ok_or(StoreError::FlightNotFound(id))?;
    let next = plan_append(id, expected, &current, event)?;
    if !event.personal.is_clear() && next.version != expected + 1 {
        // Sealed for version expected + 1 (`store::personal`): written under any other
        // version it would never open.
        return Err(StoreError::Config(format!(
            "flight {id}: a sealed event cannot be written as version {}",
            next.version
        )));
    }
    if tx.update_status(&StatusRow::new(id, &next), expected).await? != 1 {
        return Err(lost_race(id, expected));
    }
    match tx.insert_event(&EventRow::new(id, next.version, flight_dep, event)).await? {
        Inserted::Row => {}
        Inserted::Duplicate => return Err(lost_race(id, expected)),
    }
    if let Some(plan) = audit {
        // After the status update: a flight's chain is then locked by its row.
        let head = match &plan.head {
            Head::InTx { lock } => tx.audit_head(&plan.chain, *lock).await?,
            Head::Known(head) => head.clone(),
        };
        tx.insert_audit(&plan.record(head, expected, next.version)).await?;
    }
    tx.commit().await?;
    Ok(next)
}

/// The guarded status update changed no row, or the event's key was taken: another
/// writer committed in between.
fn lost_race(id: FlightId, expected: i64) -> StoreError {
    StoreError::Conflict { flight: id, expected, current: None }
}

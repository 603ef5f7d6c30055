//! Personal fields at rest (`seal`): with a sealer set, every append seals its event's
//! reason and reporter before the transaction, and every read of an event stream opens
//! them after decoding. The projections, the live feed and `events migrate` see only
//! the sealed form (`Personal::Sealed`): none of them needs a reason.
//!
//! The data subject operations live here too, one place for the admin API and the
//! CLI: erasure (with what it cannot reach), export, and the KEK rotation, each
//! audited as the change it is.

use super::path::OnShard;
use super::path::sqlx_rows::SqlxCols;
use super::{Change, Shard, ShardConn, Store, StoreError, decode};
use crate::audit::action;
use crate::domain::{DelayEvent, FlightId, Personal, Reason, RecordedEvent, SubjectId};
use crate::seal::keystore::Rotation;
use crate::seal::{Opened, SealError, Sealer};
use futures_util::future::try_join_all;
use std::borrow::Cow;
use std::sync::Arc;

const SUBJECT_EVENTS: &str = concat!(
    "SELECT ",
    crate::store::row::event_columns!(),
    " FROM delay_events WHERE data_key = $1 OR reported_by = $2 ORDER BY flight_id, version"
);

impl Store {
    /// Seals every event appended from now on, and opens sealed events on read. Set
    /// once; a second call is ignored.
    pub fn seal_with(&self, sealer: Arc<Sealer>) {
        let _ = self.sealer.set(sealer);
    }

    pub fn sealer(&self) -> Option<&Arc<Sealer>> {
        self.sealer.get()
    }

    /// The event as it will be stored: sealed for version `expected + 1` when a sealer
    /// is set (the append checks the version it writes is that one), as given when not.
    pub(crate) async fn sealed_for_append<'e>(
        &self,
        id: FlightId,
        expected: i64,
        event: &'e DelayEvent,
    ) -> Result<Cow<'e, DelayEvent>, StoreError> {
        let Some(sealer) = self.sealer.get() else { return Ok(Cow::Borrowed(event)) };
        let sealed = sealer.seal(id, expected + 1, event).await?;
        Ok(Cow::Owned(DelayEvent { personal: Personal::Sealed(sealed), ..event.clone() }))
    }

    /// Opens every sealed event in place: its fields in clear, or marked erased.
    pub(crate) async fn open_events(&self, events: &mut [RecordedEvent]) -> Result<(), StoreError> {
        for recorded in events.iter_mut() {
            let Personal::Sealed(sealed) = &recorded.event.personal else { continue };
            let sealer =
                self.sealer.get().ok_or(StoreError::NoKek { flight: recorded.flight_id, version: recorded.version })?;
            let opened = sealer.open(recorded.flight_id, recorded.version, sealed).await?;
            let event = &mut recorded.event;
            match opened {
                Opened::Clear { reported_by, reason } => {
                    event.kind.set_reason(reason);
                    event.reported_by = reported_by;
                    event.personal = Personal::Clear;
                }
                Opened::Erased => {
                    event.kind.set_reason(Reason::default());
                    event.reported_by = None;
                    event.personal = Personal::Erased;
                }
            }
        }
        Ok(())
    }

    /// Erases `subject` (`seal::Sealer::erase`) at `actor`'s request, audited when the
    /// log is on, and counts what erasure cannot reach: the subject's reports from
    /// before sealing was on, still in clear.
    pub async fn erase_subject(
        &self,
        subject: &SubjectId,
        change: &Change,
        actor: Option<&SubjectId>,
    ) -> Result<SubjectErasure, StoreError> {
        let sealer = self.sealer.get().ok_or_else(no_keys)?;
        let draft = self.key_change_draft(change, actor, action::ERASE).await?;
        let key_id = sealer.erase(subject, draft).await?;
        let remaining = self.subject_export(subject).await?.events;
        let still_in_clear = remaining.iter().filter(|e| e.event.reported_by.as_ref() == Some(subject)).count();
        Ok(SubjectErasure { key_id, still_in_clear })
    }

    /// Re-wraps every data key under the newest KEK (`seal::Sealer::rotate`) at
    /// `actor`'s request, audited when the log is on.
    pub async fn rotate_keys(&self, change: &Change, actor: Option<&SubjectId>) -> Result<Rotation, StoreError> {
        let sealer = self.sealer.get().ok_or_else(no_keys)?;
        let draft = self.key_change_draft(change, actor, action::ROTATE).await?;
        Ok(sealer.rotate(draft).await?)
    }

    /// Everything held about the subject: their data key's id, and every event they
    /// reported, on every shard, opened: those sealed under their key, and any they
    /// reported in clear before sealing was turned on. A full scan of each shard for
    /// the clear ones (`reported_by` has no index): seconds on a million flights, for
    /// an admin's export.
    pub async fn subject_export(&self, subject: &SubjectId) -> Result<SubjectExport, StoreError> {
        let data_key = match self.sealer.get() {
            Some(sealer) => sealer.key_id_for(subject).await?,
            None => None,
        };
        let per_shard =
            try_join_all(self.shards.iter().map(|shard| subject_events_on(shard, data_key.as_deref(), subject)))
                .await?;
        let mut events: Vec<RecordedEvent> = per_shard.into_iter().flatten().collect();
        self.open_events(&mut events).await?;
        Ok(SubjectExport { subject: subject.clone(), data_key, events })
    }
}

async fn subject_events_on(
    shard: &Shard,
    key_id: Option<&str>,
    subject: &SubjectId,
) -> Result<Vec<RecordedEvent>, StoreError> {
    with_pool!(shard, |pool| {
        let rows = sqlx::query(SUBJECT_EVENTS).bind(key_id).bind(subject.as_str()).fetch_all(pool).await.on(shard)?;
        rows.iter().map(|r| decode::recorded_event(&SqlxCols::new(r, shard.index))).collect()
    })
}

/// What `GET /admin/subjects/{sub}/export` and `gdpr export` answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubjectExport {
    pub subject: SubjectId,
    /// Their data key's id; `None` when they have none.
    pub data_key: Option<String>,
    pub events: Vec<RecordedEvent>,
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectErasure {
    /// The destroyed key's id; `None` when the subject had none (never reported with
    /// sealing on, or erased before).
    pub key_id: Option<String>,
    /// The subject's reports from before sealing was turned on: erasure cannot reach
    /// them.
    pub still_in_clear: usize,
}

fn no_keys() -> StoreError {
    StoreError::Config("erasing and rotating need the key-encryption keys (--kek-file or FLIGHTBENCH_KEK)".into())
}

impl From<SealError> for StoreError {
    fn from(e: SealError) -> Self {
        StoreError::Sealing(e)
    }
}

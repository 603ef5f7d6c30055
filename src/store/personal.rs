//! Personal fields at rest (`seal`): with a sealer set, every append seals its event's
//! reason and reporter before the transaction, and every read of an event stream opens
//! them after decoding. The projections, the live feed and `events migrate` see only
//! the sealed form (`Personal::Sealed`): none of them needs a reason.

use super::path::OnShard;
use super::path::sqlx_rows::SqlxCols;
use super::{Shard, ShardConn, Store, StoreError, decode};
use crate::domain::{DelayEvent, FlightId, Personal, Reason, RecordedEvent, SubjectId};
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

    /// Every event the subject reported, on every shard, opened: those sealed under
    /// their data key, and any they reported in clear before sealing was turned on.
    /// A full scan of each shard for the clear ones (`reported_by` has no index):
    /// seconds on a million flights, for an admin's export.
    pub async fn subject_events(&self, subject: &SubjectId) -> Result<Vec<RecordedEvent>, StoreError> {
        let key_id = match self.sealer.get() {
            Some(sealer) => sealer.key_id_for(subject).await?,
            None => None,
        };
        let per_shard =
            try_join_all(self.shards.iter().map(|shard| subject_events_on(shard, key_id.as_deref(), subject))).await?;
        let mut events: Vec<RecordedEvent> = per_shard.into_iter().flatten().collect();
        self.open_events(&mut events).await?;
        Ok(events)
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

impl From<SealError> for StoreError {
    fn from(e: SealError) -> Self {
        StoreError::Sealing(e)
    }
}

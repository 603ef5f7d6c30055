//! What each read model does with a batch of events on one target shard.
//!
//! The rules are the domain's: a board row's status is `FlightStatus::apply` folded
//! over the flight's events (the same fold as the inline `flight_status`, so a caught-up
//! board equals the scatter-gather departures row for row), and the tallies are
//! `Tally::add`. This module only routes events to rows and rows to the store.

use super::{ProjectionError, ReadModel};
use crate::domain::{Flight, FlightStatus, Tally};
use crate::routing::ShardCount;
use crate::store::{Generation, ProjectionTx, SequencedEvent, TallyKey};
use std::collections::BTreeMap;

/// An hour as the start of it, in Unix seconds.
pub fn hour_of(unix: i64) -> i64 {
    unix.div_euclid(3600) * 3600
}

impl ReadModel {
    /// The shard a flight's rows of this model live on.
    pub fn target(self, shards: ShardCount, flight: &Flight) -> usize {
        match self {
            ReadModel::DeparturesBoard | ReadModel::AirportHours => shards.shard_for_name(flight.origin.as_str()),
            ReadModel::CarrierOnTime => shards.shard_for_name(flight.carrier.as_str()),
        }
    }

    /// The model's table (its live name).
    pub fn table(self) -> &'static str {
        match self {
            ReadModel::DeparturesBoard => "board_departures",
            ReadModel::AirportHours => "airport_hour_stats",
            ReadModel::CarrierOnTime => "carrier_on_time",
        }
    }

    /// The name its checkpoints are kept under, per generation (a rebuild's are its
    /// own until the swap).
    pub fn checkpoint_name(self, generation: Generation) -> String {
        use crate::choice::Choice;
        match generation {
            Generation::Live => self.name().to_owned(),
            Generation::Next => format!("{}@next", self.name()),
        }
    }

    /// Rows a model starts from before any event: the board lists every flight,
    /// scheduled and on time, until an event says otherwise. The tallies start empty.
    pub fn starts_from_flights(self) -> bool {
        self == ReadModel::DeparturesBoard
    }

    /// Applies `events` (in commit order, all for `target`) to this model's rows of
    /// `generation` in `tx`. The board returns each event's flight status after it, in
    /// the events' order (for the live feed); the tallies return nothing.
    pub async fn apply(
        self,
        tx: &mut ProjectionTx<'_>,
        generation: Generation,
        target: usize,
        events: &[&SequencedEvent],
    ) -> Result<Vec<FlightStatus>, ProjectionError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            ReadModel::DeparturesBoard => apply_board(tx, generation, target, events).await,
            ReadModel::AirportHours => {
                let mut tallies: BTreeMap<(&str, i64), Tally> = BTreeMap::new();
                for e in events {
                    let key = (e.flight.origin.as_str(), hour_of(e.flight.scheduled_departure.unix()));
                    tallies.entry(key).or_default().add(&e.recorded.event);
                }
                let rows: Vec<_> = tallies.into_iter().map(|((a, h), t)| (TallyKey::AirportHour(a, h), t)).collect();
                tx.add_tallies(generation, &rows).await?;
                Ok(Vec::new())
            }
            ReadModel::CarrierOnTime => {
                let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
                for e in events {
                    tallies.entry(e.flight.carrier.as_str()).or_default().add(&e.recorded.event);
                }
                let rows: Vec<_> = tallies.into_iter().map(|(c, t)| (TallyKey::Carrier(c), t)).collect();
                tx.add_tallies(generation, &rows).await?;
                Ok(Vec::new())
            }
        }
    }
}

/// Folds each flight's events onto its board row. A row must be exactly one version
/// behind each event it receives: anything else means the row was changed outside the
/// runner, and the batch stops rather than guess.
async fn apply_board(
    tx: &mut ProjectionTx<'_>,
    generation: Generation,
    target: usize,
    events: &[&SequencedEvent],
) -> Result<Vec<FlightStatus>, ProjectionError> {
    let diverged = |problem: String| ProjectionError::Diverged { model: ReadModel::DeparturesBoard, target, problem };
    let mut ids: Vec<i64> = events.iter().map(|e| e.recorded.flight_id.get()).collect();
    ids.sort_unstable();
    ids.dedup();
    let found = tx.board_statuses(generation, &ids).await?;
    // flight → (version the row is at now, status after this batch)
    let mut folded: BTreeMap<i64, (i64, FlightStatus)> = BTreeMap::new();
    let mut after = Vec::with_capacity(events.len());
    for e in events {
        let id = e.recorded.flight_id.get();
        let (_, current) = match folded.get_mut(&id) {
            Some(entry) => entry,
            None => {
                let row = found.get(&id).ok_or_else(|| diverged(format!("flight {id} has no board row")))?.clone();
                folded.entry(id).or_insert((row.version, row))
            }
        };
        if e.recorded.version != current.version + 1 {
            return Err(diverged(format!(
                "flight {id}'s board row is at version {} but its next event is version {}",
                current.version, e.recorded.version
            )));
        }
        *current = current.apply(&e.recorded.event).map_err(|rule| {
            diverged(format!("flight {id}'s board row cannot take event {}: {rule}", e.recorded.version))
        })?;
        after.push(current.clone());
    }
    let changes: Vec<_> = folded.into_iter().map(|(id, (from, status))| (id, from, status)).collect();
    let changed = tx.update_board(generation, &changes).await?;
    if changed != changes.len() as u64 {
        return Err(diverged(format!(
            "{} of {} board rows changed during the batch",
            changes.len() as u64 - changed,
            changes.len()
        )));
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_start_on_the_hour() {
        assert_eq!(hour_of(7200), 7200);
        assert_eq!(hour_of(7199), 3600);
        assert_eq!(hour_of(-1), -3600);
    }
}

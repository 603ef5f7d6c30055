//! Read models built from the events: which exist, how each is kept up to date, and
//! the runner that keeps the asynchronous ones.
//!
//! Marten's terms: an **inline** projection is written in the event's own
//! transaction (always current, and the writer pays for it); an **async** one is
//! built after the commit by a runner that follows the events (the writer pays
//! nothing, readers see it a little late: the lag, which `/metrics` and `/readyz`
//! report). Here `flight_status` is inline, as it always was (the append's
//! optimistic-concurrency guard is its version), and the three read models below are
//! async, because each lives on the shard its key hashes to (so that reading one is
//! one shard's query, not a scatter over all of them) and that is rarely the event's
//! shard, where an inline write would have to be.
//!
//! `store::projection` explains the ordering (a per-shard commit sequence with no
//! gaps) and the exactly-once rule (each target shard's checkpoint moves in the same
//! transaction as its rows); [`runner`] follows the events; [`model`] is what each
//! read model does with them; [`rebuild`] replays one into a new table beside the live
//! one and swaps them.

pub mod live;
pub mod model;
pub mod rebuild;
pub mod runner;

use crate::store::StoreError;

pub use runner::{CatchUp, Projector, ProjectorConfig, ProjectorStats};

crate::choices! {
    /// An asynchronous read model.
    #[derive(Debug, Hash, PartialOrd, Ord)]
    pub enum ReadModel as "read model" {
        /// Per origin airport: every departure with its current status, on the airport's shard.
        DeparturesBoard = "departures_board",
        /// Per airport and hour of scheduled departure: departures, D15 on time, cancellations, reports.
        AirportHours = "airport_hours",
        /// Per carrier: departures, D15 on time, cancellations, reports.
        CarrierOnTime = "carrier_on_time",
    }
}

crate::choices! {
    /// When a read model is written (Marten's projection lifecycles).
    #[derive(Debug)]
    pub enum Lifecycle as "lifecycle" {
        /// In the event's own transaction.
        Inline = "inline",
        /// After the commit, by the projection runner.
        Async = "async",
    }
}

/// Every async read model's name, for the readiness probe (`ReadModel::ALL`'s names;
/// a test checks they agree).
pub const ASYNC_NAMES: &[&str] = &["departures_board", "airport_hours", "carrier_on_time"];

/// One read model as the service declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declared {
    pub name: &'static str,
    pub lifecycle: Lifecycle,
    /// Where its rows live.
    pub placement: &'static str,
}

/// Every read model the service keeps.
pub const DECLARED: [Declared; 4] = [
    Declared { name: "flight_status", lifecycle: Lifecycle::Inline, placement: "the flight's shard" },
    Declared { name: "departures_board", lifecycle: Lifecycle::Async, placement: "the origin airport's shard" },
    Declared { name: "airport_hours", lifecycle: Lifecycle::Async, placement: "the airport's shard" },
    Declared { name: "carrier_on_time", lifecycle: Lifecycle::Async, placement: "the carrier's shard" },
];

/// What stops a projection from applying a batch. None of them skips an event: the
/// batch is rolled back and retried, or the projection stops and says why.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A checkpoint names events the shard does not have: the read model was built
    /// from other data (a restored backup, a re-seed under a running runner).
    #[error(
        "{model} on shard {target} has applied shard {from_shard}'s events up to {checkpoint}, but that shard's \
         newest event is {head}; rebuild the read model"
    )]
    AheadOfEvents { model: ReadModel, from_shard: usize, target: usize, checkpoint: i64, head: i64 },
    /// A read-model row is not where the events put it: edited outside the runner.
    #[error("{model} on shard {target}: {problem}; rebuild the read model")]
    Diverged { model: ReadModel, target: usize, problem: String },
    /// Another runner moved the checkpoint first; its batch is kept and this one
    /// rolled back.
    #[error("{model}: another runner applied shard {from_shard}'s batch on shard {target} first")]
    LostRace { model: ReadModel, from_shard: usize, target: usize },
}

impl crate::failure::Classify for ProjectionError {
    fn failure(&self) -> crate::failure::Failure {
        use crate::failure::Failure;
        match self {
            ProjectionError::Store(e) => e.failure(),
            ProjectionError::AheadOfEvents { .. } | ProjectionError::Diverged { .. } => Failure::BadInput,
            ProjectionError::LostRace { .. } => Failure::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choice::Choice;

    #[test]
    fn declarations_agree() {
        let names: Vec<_> = ReadModel::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names, ASYNC_NAMES);
        let declared_async: Vec<_> =
            DECLARED.iter().filter(|d| d.lifecycle == Lifecycle::Async).map(|d| d.name).collect();
        assert_eq!(declared_async, ASYNC_NAMES);
    }
}

//! `StoreError`: everything the data layer can report, each naming what went wrong
//! and where (which flight, which shard), so the CLI and the HTTP layer can map it to
//! an exit code or status without inspecting driver errors.

use crate::dataset::ManifestError;
use crate::domain::{EventKindError, FlightId, IdError, TransitionError};

/// A driver error from any of the four libraries, kept as its source.
pub type DriverError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("flight {0} not found")]
    FlightNotFound(FlightId),
    #[error("version conflict on flight {flight}: expected version {expected}, {}", describe_current(*.current))]
    Conflict { flight: FlightId, expected: i64, current: Option<i64> },
    #[error("invalid event: {0}")]
    InvalidEvent(EventKindError),
    #[error("flight {flight}: {rule}")]
    Transition { flight: FlightId, rule: TransitionError },
    #[error("shard {shard}: {cause}")]
    Database { shard: usize, cause: DriverError },
    #[error("shard {shard} holds data this build cannot read: {problem}")]
    Corrupt { shard: usize, problem: String },
    #[error("cannot open shard {shard} ({location}): {reason}")]
    Unavailable { shard: usize, location: String, reason: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{0}")]
    Config(String),
    #[error(
        "event {version} of flight {flight} is sealed, and no key-encryption key was given to open it \
         (--kek-file or FLIGHTBENCH_KEK)"
    )]
    NoKek { flight: FlightId, version: i64 },
    #[error(transparent)]
    Sealing(crate::seal::SealError),
}

fn describe_current(current: Option<i64>) -> String {
    match current {
        Some(v) => format!("current version is {v}"),
        None => "another writer appended first".to_owned(),
    }
}

impl StoreError {
    pub(crate) fn database(shard: usize, source: impl Into<DriverError>) -> Self {
        StoreError::Database { shard, cause: source.into() }
    }

    pub(crate) fn corrupt(shard: usize, problem: impl std::fmt::Display) -> Self {
        StoreError::Corrupt { shard, problem: problem.to_string() }
    }
}

/// Stored rows that fail domain validation are corruption, not user error.
pub(crate) trait CorruptOnShard<T> {
    fn on_shard(self, shard: usize) -> Result<T, StoreError>;
}

impl<T> CorruptOnShard<T> for Result<T, IdError> {
    fn on_shard(self, shard: usize) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::corrupt(shard, e))
    }
}

impl<T> CorruptOnShard<T> for Result<T, EventKindError> {
    fn on_shard(self, shard: usize) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::corrupt(shard, e))
    }
}

impl<T> CorruptOnShard<T> for Result<T, crate::domain::TimeError> {
    fn on_shard(self, shard: usize) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::corrupt(shard, e))
    }
}

impl crate::failure::Classify for StoreError {
    fn failure(&self) -> crate::failure::Failure {
        use crate::failure::Failure;
        match self {
            StoreError::InvalidEvent(_) => Failure::Usage,
            StoreError::FlightNotFound(_)
            | StoreError::Conflict { .. }
            | StoreError::Transition { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Manifest(_)
            | StoreError::Config(_) => Failure::BadInput,
            StoreError::Unavailable { .. } => Failure::Unreachable,
            StoreError::Database { .. } => Failure::Internal,
            StoreError::NoKek { .. } => Failure::Usage,
            StoreError::Sealing(e) => e.failure(),
        }
    }
}

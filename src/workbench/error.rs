//! `WorkbenchError`: every way a workbench run can fail, each naming the cell or file
//! it concerns.

use super::cell::CellId;
use crate::dataset::{Backend, ManifestError};
use crate::failure::{Classify, Failure};
use crate::harness::SampleError;
use crate::load::LoadError;
use crate::seed::SeedError;
use crate::store::StoreError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum WorkbenchError {
    #[error(
        "{dir} holds a {backend} dataset; the workbench runs on the embedded SQLite default, so give it another --dir"
    )]
    NotSqlite { dir: PathBuf, backend: Backend },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Seed(#[from] SeedError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{cell}: {cause}")]
    Load { cell: CellId, cause: LoadError },
    #[error("{cell}: the in-process server: {cause}")]
    Server { cell: CellId, cause: std::io::Error },
    #[error("profile of {cell}: {cause}")]
    Profile { cell: CellId, cause: SampleError },
    #[error("the profile of {0} has no samples")]
    NoSamples(CellId),
    #[error("writing the flamegraph: {0}")]
    Flamegraph(String),
    /// A cell's own settings do not hold together: a bug in the plan.
    #[error("{cell}: {problem}")]
    Plan { cell: CellId, problem: String },
    #[error("a workbench task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the read models: {0}")]
    Projection(#[from] crate::projection::ProjectionError),
    #[error("copying the dataset to reshard, {path}: {cause}")]
    CopyDataset { path: PathBuf, cause: std::io::Error },
    /// `flightbench reshard` failed, or what it did does not add up.
    #[error("the reshard part: {0}")]
    Reshard(String),
    #[error("topology part: {0}")]
    Topology(String),
}

impl Classify for WorkbenchError {
    fn failure(&self) -> Failure {
        match self {
            WorkbenchError::NotSqlite { .. } | WorkbenchError::Manifest(_) => Failure::BadInput,
            WorkbenchError::Seed(e) => e.failure(),
            WorkbenchError::Store(e) => e.failure(),
            WorkbenchError::Read { cause, .. }
            | WorkbenchError::Server { cause, .. }
            | WorkbenchError::CopyDataset { cause, .. } => cause.failure(),
            WorkbenchError::Load { cause, .. } => cause.failure(),
            WorkbenchError::Profile { cause, .. } => cause.failure(),
            WorkbenchError::Projection(e) => e.failure(),
            WorkbenchError::NoSamples(_)
            | WorkbenchError::Flamegraph(_)
            | WorkbenchError::Plan { .. }
            | WorkbenchError::Task(_)
            | WorkbenchError::Reshard(_)
            | WorkbenchError::Topology(_) => Failure::Internal,
        }
    }
}

//! What a load run is: the workload, the loop model, the validated [`LoadConfig`],
//! and [`LoadError`], every way a run can fail before or while it runs.

use super::conn::{Endpoint, Protocol};
use super::workload::{DatasetShape, Mix, Skew, WorkloadError};
use crate::failure::{Classify, Failure};
use http::{HeaderName, HeaderValue};
use std::time::Duration;

/// Bounds past which a run is a typo, not a test: every value below them works.
const MAX_CONNECTIONS: usize = 100_000;
const MAX_STREAMS: usize = 10_000;
const MAX_THREADS: usize = 1_024;
/// A rate below one request a day is a typo (and a schedule slot that far away does
/// not fit in a `Duration` computed from it); above 100 million per second no machine
/// keeps it.
const MIN_RATE: f64 = 1.0 / 86_400.0;
const MAX_RATE: f64 = 1e8;
/// The coarsest `--pacing-tick`: tokio's own timer grid is 1 ms; 10 ms is already a burst.
const MAX_TICK: Duration = Duration::from_millis(10);
/// Longest measured window a run may derive from `--requests` and `--rate`.
const MAX_SECONDS: f64 = 86_400.0;

/// Why a load run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Settings that cannot run together (or values out of range).
    #[error("{0}")]
    Config(String),
    /// The target did not accept a first connection.
    #[error("cannot connect to {target}: {reason}")]
    Unreachable { target: String, reason: String },
    /// The API mix cannot be drawn from this dataset.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// A certificate to trust that cannot be used.
    #[error("{0}")]
    Tls(String),
    /// The generator's own machinery failed (a thread or a runtime could not start,
    /// or a thread panicked).
    #[error("the load generator failed: {0}")]
    Internal(String),
}

impl Classify for LoadError {
    fn failure(&self) -> Failure {
        match self {
            LoadError::Config(_) => Failure::Usage,
            LoadError::Unreachable { .. } => Failure::Unreachable,
            LoadError::Workload(_) | LoadError::Tls(_) => Failure::BadInput,
            LoadError::Internal(_) => Failure::Internal,
        }
    }
}

/// What to request.
#[derive(Debug, Clone)]
pub enum Workload {
    /// The API mix, drawn from a seeded dataset's shape.
    Mix { mix: Mix, shape: DatasetShape, skew: Skew },
    /// One fixed path and query, for any HTTP server.
    Url { path: String },
}

impl Workload {
    pub fn describe(&self) -> String {
        match self {
            Workload::Mix { mix, skew, .. } => format!("mix {mix} ({skew} ids)"),
            Workload::Url { path } => format!("GET {path}"),
        }
    }
}

/// Closed or open loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoopModel {
    Closed,
    /// Requests per second across all connections.
    Open {
        rate: f64,
        /// Slots are sent on this grid instead of exactly (zero: exactly). Exact pacing
        /// sleeps once per request: at 20,000 req/s on the 2-core VM it cost the
        /// generator 56 ms of CPU per 1,000 requests against 17 ms on a 1 ms grid
        /// (`results/load-open-loop.md`), for a send lag p50 of 0.07 ms against 1.1 ms.
        tick: Duration,
    },
}

/// A validated load run.
#[derive(Clone)]
pub struct LoadConfig {
    pub endpoint: Endpoint,
    /// The target as the user gave it (for the report).
    pub target: String,
    pub workload: Workload,
    pub loop_model: LoopModel,
    pub connections: usize,
    pub streams_per_connection: usize,
    pub threads: usize,
    pub warmup: Duration,
    /// Measured time; the run also stops after `requests` measured requests.
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub timeout: Duration,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub seed: u64,
    /// The server runs in this process (`harness`): the report then gives its CPU time
    /// per response, everything the process spent besides the load threads.
    pub server_in_process: bool,
    /// Cores the load threads are pinned to (thread `t` to `cores[t % len]`); empty
    /// leaves them to the scheduler.
    pub cores: Vec<usize>,
}

impl LoadConfig {
    /// Checks what clap cannot: combinations, and values past what a run can do.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |problem: String| Err(LoadError::Config(problem));
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return bad(format!("--connections must be 1..={MAX_CONNECTIONS}, not {}", self.connections));
        }
        if self.streams_per_connection == 0 || self.streams_per_connection > MAX_STREAMS {
            return bad(format!(
                "--streams-per-connection must be 1..={MAX_STREAMS}, not {}",
                self.streams_per_connection
            ));
        }
        if self.endpoint.protocol == Protocol::H1 && self.streams_per_connection > 1 {
            return bad(
                "HTTP/1.1 has one request in flight per connection; use --protocol h2 for --streams-per-connection above 1, or more --connections".into(),
            );
        }
        if self.duration.is_none() && self.requests.is_none() {
            return bad("give --duration, --requests or both: a run must be bounded".into());
        }
        if self.requests == Some(0) {
            return bad("--requests must be at least 1".into());
        }
        if let LoopModel::Open { tick, .. } = self.loop_model
            && tick > MAX_TICK
        {
            return bad(format!(
                "--pacing-tick {tick:?} is past {MAX_TICK:?}: requests would leave in bursts, not on a schedule"
            ));
        }
        if let LoopModel::Open { rate, .. } = self.loop_model
            && !(rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate))
        {
            return bad(format!("--rate {rate} must be a number of requests per second from {MIN_RATE} to {MAX_RATE}"));
        }
        if let (LoopModel::Open { rate, .. }, Some(n), None) = (self.loop_model, self.requests, self.duration)
            && n as f64 / rate > MAX_SECONDS
        {
            return bad(format!("--requests {n} at --rate {rate} would take longer than a day; give --duration"));
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return bad(format!("--threads must be 1..={MAX_THREADS}, not {}", self.threads));
        }
        Ok(())
    }

    pub(super) fn slots(&self) -> usize {
        self.connections * self.streams_per_connection
    }

    /// The measured window's length, if bounded by time (open loop with only
    /// `--requests` derives it from the rate; `validate` bounds it to a day).
    pub(super) fn measured_for(&self) -> Option<Duration> {
        match (self.duration, self.requests, self.loop_model) {
            (Some(d), _, _) => Some(d),
            (None, Some(n), LoopModel::Open { rate, .. }) => {
                Some(Duration::from_secs_f64((n as f64 / rate).min(MAX_SECONDS)))
            }
            _ => None,
        }
    }
}

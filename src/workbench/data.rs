//! `run.json`: every figure of a workbench run, the effective configuration and the
//! provenance, in one versioned document (schema: `run.schema.json`). The report's
//! prose and charts are computed from this and nothing else, so a report can be
//! re-rendered, and two runs compared, from their `run.json` files alone.

use super::cell::{CellId, Wire};
use super::plan::{Part, Preset};
use super::stats::Interval;
use crate::choice::as_text;
use crate::compression::Encoding;
use crate::load::report::LoadReport;
use crate::load::workload::{Mix, Skew};
use crate::machine::Disturbance;
use crate::store::QueryPath;
use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning or goes away. 2: every round's figures
/// (`rounds`, with the server's CPU per request and what disturbed it), the server's
/// CPU per request, placement on cores, the noise guard's settings, headline ratios
/// with intervals.
pub const RUN_SCHEMA_VERSION: u32 = 2;

/// The JSON Schema of `run.json`.
pub const RUN_SCHEMA: &str = include_str!("run.schema.json");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunData {
    pub schema_version: u32,
    /// UTC, RFC 3339.
    pub started_at: String,
    pub elapsed_s: f64,
    pub preset: Preset,
    /// The parts that ran, in order.
    pub parts: Vec<Part>,
    pub provenance: Provenance,
    pub settings: RunSettings,
    pub cells: Vec<Cell>,
    /// The run's headline ratios with their intervals, computed from `cells` when the
    /// run ended (`findings::headlines`), written for readers of `run.json`.
    pub headlines: Vec<super::headline::Headline>,
    /// The flamegraph of the hottest configuration, when the profile part ran.
    pub profile: Option<ProfileSummary>,
    /// The projections part's rebuilds.
    #[serde(default)]
    pub rebuilds: Vec<RebuildRate>,
    /// The reshard part's figures.
    #[serde(default)]
    pub resharding: Option<super::resharding::Resharding>,
    /// The topology part's figures.
    #[serde(default)]
    pub topology: Option<super::topology::Topology>,
}

/// Where the figures come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    pub flightbench_version: String,
    /// `git describe`-style commit of the working directory, or "unknown".
    pub commit: String,
    /// `rustc -V` of the toolchain on this machine, or "unknown".
    pub toolchain: String,
    /// "release" or "debug": debug figures are not worth comparing.
    pub build: String,
    pub host: String,
    pub os: String,
    pub cpu: String,
    pub cores: usize,
    pub dataset: DatasetInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetInfo {
    pub seed: u64,
    pub flights: u64,
    pub days: u32,
    /// Shards of the main dataset (the shard-count part uses its own datasets).
    pub shards: u32,
    pub events: u64,
    pub backend: String,
    /// SQLite pragmas every connection runs with.
    pub sqlite_pragmas: Vec<(String, String)>,
}

/// How every cell was run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSettings {
    pub warmup_s: f64,
    pub measure_s: f64,
    /// Server threads (per-core runtime) and load threads.
    pub server_threads: usize,
    pub load_threads: usize,
    /// Which cores the server and the load generator ran on.
    pub placement: Placement,
    pub h1_connections: usize,
    pub h2_connections: usize,
    pub h2_streams: usize,
    /// The server compresses responses from this size up.
    pub compression_min_bytes: usize,
    /// The shard files were read into the OS page cache before the first cell.
    pub page_cache_prewarmed: bool,
    /// Times each cell was measured, in interleaved rounds; its figures are from the
    /// median round, its intervals from all of them.
    pub rounds: u32,
    /// A cell measured while other work took more than this share of the machine (or
    /// the hypervisor stole as much) is measured again, up to `noise_retries` times,
    /// then kept and marked disturbed.
    pub noise_threshold: f64,
    pub noise_retries: u32,
}

/// Where the threads ran.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Placement {
    /// Server and load generator pinned to disjoint cores.
    pub pinned: bool,
    /// The cores each was pinned to (empty: left to the scheduler).
    pub server_cores: Vec<usize>,
    pub load_cores: Vec<usize>,
}

/// One measured configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cell {
    /// Written as `id` (`part/label`, stable across runs: what `compare` matches on),
    /// `part` and `label`.
    #[serde(flatten, with = "cell_key")]
    pub id: CellId,
    pub config: CellConfig,
    pub requests_per_s: f64,
    pub responses: u64,
    /// Requests that got no answer or an unexpected status.
    pub errors: u64,
    pub latency: Latency,
    /// (percentile, ms) points.
    pub latency_curve: Vec<(f64, f64)>,
    /// Responses per second, one-second buckets.
    pub throughput_per_second: Vec<u64>,
    pub wire_bytes: u64,
    pub decoded_bytes: u64,
    /// The server's point-read cache over the cell, when it was on.
    pub cache_hit_ratio: Option<f64>,
    /// Open loop only.
    pub target_rate: Option<f64>,
    pub rate_kept: Option<bool>,
    /// The server's CPU time (user + system, every thread of the process but the load
    /// generator's) per response, in microseconds.
    pub server_cpu_us_per_request: Option<f64>,
    /// Every round's figures, in the order measured; the figures above are the median
    /// round's.
    pub rounds: Vec<Round>,
    /// Writes answered 201 per second (the projections part's write cells: a 409 or
    /// 422 commits nothing, so only these cost the read models anything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_writes_per_s: Option<f64>,
    /// The slowest follower's lag while the cell measured (runner in-process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection_lag: Option<ProjectionLag>,
}

/// Events committed but not yet applied by the slowest read-model follower, sampled
/// every 10 ms.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProjectionLag {
    pub samples: u64,
    pub p50_events: u64,
    pub p99_events: u64,
    pub max_events: u64,
}

impl ProjectionLag {
    /// From samples in any order; `None` without any.
    pub fn of(mut samples: Vec<u64>) -> Option<Self> {
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        (!samples.is_empty()).then(|| Self {
            samples: samples.len() as u64,
            p50_events: at(0.5),
            p99_events: at(0.99),
            max_events: at(1.0),
        })
    }
}

/// One read model's blue/green rebuild on the main dataset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RebuildRate {
    pub model: crate::projection::ReadModel,
    pub flights: u64,
    pub events: u64,
    pub seconds: f64,
    pub events_per_s: f64,
}

/// One measurement of a cell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Round {
    pub requests_per_s: f64,
    pub server_cpu_us_per_request: Option<f64>,
    pub p99_ms: f64,
    pub errors: u64,
    /// What else the machine did meanwhile (where `/proc/stat` tells).
    pub disturbance: Option<Disturbance>,
    /// Still over the noise threshold after every retry.
    pub disturbed: bool,
    /// Measurements taken for this round (1 plus the retries).
    pub attempts: u32,
}

/// What a cell ran.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CellConfig {
    pub path: QueryPath,
    pub protocol: Wire,
    pub accept_encoding: Option<Encoding>,
    pub cache: bool,
    pub shards: u32,
    #[serde(with = "as_text")]
    pub mix: Mix,
    #[serde(with = "as_text")]
    pub skew: Skew,
    pub connections: usize,
    pub streams_per_connection: usize,
    pub loop_model: LoopKind,
}

crate::choices! {
    /// How a cell's requests were paced.
    #[derive(Debug)]
    pub enum LoopKind as "loop model" {
        /// Each stream sends when its previous answer arrives.
        Closed = "closed",
        /// Requests leave on a fixed schedule.
        Open = "open",
    }
}

/// A cell id in `run.json`: `id`, with its `part` and `label` beside it for readers.
mod cell_key {
    use super::CellId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Key {
        id: String,
        part: String,
        label: String,
    }

    pub fn serialize<S: Serializer>(id: &CellId, s: S) -> Result<S::Ok, S::Error> {
        Key { id: id.to_string(), part: id.part().to_string(), label: id.label().to_string() }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CellId, D::Error> {
        Key::deserialize(d)?.id.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProfileSummary {
    /// The cell whose configuration was profiled.
    #[serde(with = "as_text")]
    pub cell: CellId,
    /// File names beside `run.json`.
    pub svg: String,
    pub folded: String,
    pub samples: u64,
    pub frequency_hz: u32,
    /// Hottest frames by self samples: (frame, share of all samples).
    pub top_frames: Vec<(String, f64)>,
}

impl Cell {
    /// A cell from a load report.
    pub fn from_report(id: CellId, config: CellConfig, report: &LoadReport) -> Self {
        Self {
            id,
            config,
            requests_per_s: report.achieved_rate,
            responses: report.responses,
            errors: report.errors.values().sum::<u64>() + report.unexpected_statuses,
            latency: Latency {
                p50_ms: report.latency.p50_ms,
                p90_ms: report.latency.p90_ms,
                p99_ms: report.latency.p99_ms,
                p999_ms: report.latency.p999_ms,
                max_ms: report.latency.max_ms,
            },
            latency_curve: report.latency_curve.clone(),
            throughput_per_second: report.throughput_per_second.clone(),
            wire_bytes: report.wire_bytes,
            decoded_bytes: report.decoded_bytes,
            cache_hit_ratio: None,
            target_rate: report.setup.target_rate,
            rate_kept: report.rate_kept,
            server_cpu_us_per_request: report.server_cpu_us_per_request,
            rounds: Vec::new(),
            acknowledged_writes_per_s: None,
            projection_lag: None,
        }
    }

    /// This measurement as a round.
    pub fn as_round(&self, disturbance: Option<Disturbance>, disturbed: bool, attempts: u32) -> Round {
        Round {
            requests_per_s: self.requests_per_s,
            server_cpu_us_per_request: self.server_cpu_us_per_request,
            p99_ms: self.latency.p99_ms,
            errors: self.errors,
            disturbance,
            disturbed,
            attempts,
        }
    }

    /// Throughput over the rounds, with its interval.
    pub fn rate_interval(&self) -> Option<Interval> {
        Interval::of(&self.round_rates())
    }

    /// Server CPU per request over the rounds, with its interval.
    pub fn cpu_interval(&self) -> Option<Interval> {
        Interval::of(&self.round_cpu()?)
    }

    pub fn round_rates(&self) -> Vec<f64> {
        self.rounds.iter().map(|r| r.requests_per_s).collect()
    }

    /// Every round's CPU per request, if every round has one.
    pub fn round_cpu(&self) -> Option<Vec<f64>> {
        self.rounds.iter().map(|r| r.server_cpu_us_per_request).collect()
    }

    /// Rounds still disturbed after their retries.
    pub fn disturbed_rounds(&self) -> usize {
        self.rounds.iter().filter(|r| r.disturbed).count()
    }

    /// Body bytes on the wire per response.
    pub fn wire_bytes_per_response(&self) -> f64 {
        self.wire_bytes as f64 / self.responses.max(1) as f64
    }

    /// Wire bytes over decoded bytes (1.0 without compression).
    pub fn compression_ratio(&self) -> f64 {
        self.wire_bytes as f64 / self.decoded_bytes.max(1) as f64
    }
}

impl RunData {
    pub fn cell(&self, id: CellId) -> Option<&Cell> {
        self.cells.iter().find(|c| c.id == id)
    }

    pub fn part(&self, part: Part) -> impl Iterator<Item = &Cell> {
        self.cells.iter().filter(move |c| c.id.part() == part)
    }
}

/// A small run for tests: the cells `findings` and `compare` read, with figures the
/// tests set.
/// A run of every planned cell with made-up figures, for the report and findings tests.
#[cfg(test)]
#[path = "fixture.rs"]
pub(crate) mod fixture;

//! What a workbench run measures: presets, parts and the cells of each part. Every
//! cell of a part differs from its neighbours in the one setting the part is about.

use crate::dataset::{DatasetSpec, Manifest};
use crate::load::conn::Protocol;
use crate::load::workload::Skew;
use crate::store::QueryPath;
use std::path::PathBuf;
use std::time::Duration;

/// How big and how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// 20,000 flights, 1 s per cell: under a minute.
    Quick,
    /// 100,000 flights (`flightbench seed`'s default), 4 s per cell: a few minutes.
    Default,
    /// 1,000,000 flights, 10 s per cell.
    Full,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Quick => "quick",
            Preset::Default => "default",
            Preset::Full => "full",
        }
    }

    pub fn flights(self) -> u64 {
        match self {
            Preset::Quick => 20_000,
            Preset::Default => 100_000,
            Preset::Full => 1_000_000,
        }
    }

    pub fn warmup(self) -> Duration {
        match self {
            Preset::Quick => Duration::from_millis(300),
            Preset::Default => Duration::from_millis(500),
            Preset::Full => Duration::from_secs(1),
        }
    }

    pub fn measure(self) -> Duration {
        match self {
            Preset::Quick => Duration::from_secs(1),
            Preset::Default => Duration::from_secs(4),
            Preset::Full => Duration::from_secs(10),
        }
    }
}

/// The parts of a run, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Part {
    /// Point reads through prepared, adhoc, orm and raw (cache off).
    Paths,
    /// HTTP/1.1 against h2c on cached point reads.
    Protocols,
    /// identity, br, zstd and gzip on the departures endpoint.
    Compression,
    /// 1, 4 and 16 shards: point reads and the scatter-gather departures query.
    Shards,
    /// The point-read cache on and off (Zipf-skewed ids).
    Cache,
    /// An open-loop read/departures/write mix at a fixed rate: tail latency.
    Mixed,
    /// A flamegraph of the fastest configuration measured.
    Profile,
}

impl Part {
    pub const ALL: [Part; 7] =
        [Part::Paths, Part::Protocols, Part::Compression, Part::Shards, Part::Cache, Part::Mixed, Part::Profile];

    pub fn as_str(self) -> &'static str {
        match self {
            Part::Paths => "paths",
            Part::Protocols => "protocols",
            Part::Compression => "compression",
            Part::Shards => "shards",
            Part::Cache => "cache",
            Part::Mixed => "mixed",
            Part::Profile => "profile",
        }
    }
}

/// Shard counts the shards part compares.
pub const SHARD_SERIES: [u32; 3] = [1, 4, 16];
/// Shards of the main dataset (`flightbench seed`'s default).
pub const MAIN_SHARDS: u32 = 8;
/// Codecs the compression part compares (`None` is identity).
pub const CODECS: [Option<&str>; 4] = [None, Some("br"), Some("zstd"), Some("gzip")];
/// Open-loop rate of the mixed part, as a share of the capacity the closed-loop cells
/// imply for that mix.
pub const MIXED_LOAD_SHARE: f64 = 0.5;
/// The mixed part's request mix.
pub const MIXED_MIX: &str = "read=80,departures=15,write=5";
/// Sampling frequency of the profile part.
pub const PROFILE_HZ: u32 = 99;

/// A validated run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub preset: Preset,
    pub parts: Vec<Part>,
    /// The main dataset (`--dir`, see [`Plan::main_dir`]); the shard series lives in
    /// `<dir>/workbench/`.
    pub dir: PathBuf,
    pub flights: u64,
    pub warmup: Duration,
    pub measure: Duration,
    /// Where report files go (the run's own directory).
    pub out: PathBuf,
    pub server_threads: usize,
    pub load_threads: usize,
    /// Times every cell is measured (in alternating order); the median round is kept.
    pub rounds: u32,
}

impl Plan {
    /// Load runs this plan makes: every cell once per round, plus the profile.
    pub fn cell_count(&self) -> usize {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Paths => 4,
                Part::Protocols => 2,
                Part::Compression => CODECS.len(),
                Part::Shards => SHARD_SERIES.len() * 2,
                Part::Cache => 2,
                Part::Mixed => 1,
                Part::Profile => 0,
            })
            .sum::<usize>()
            * self.rounds as usize
            + usize::from(self.parts.contains(&Part::Profile))
    }

    /// Roughly how long the measuring takes (seeding aside).
    pub fn estimate(&self) -> Duration {
        (self.warmup + self.measure + Duration::from_millis(300)) * self.cell_count() as u32
    }

    /// The main dataset: `--dir` when it holds this run's dataset or none at all;
    /// otherwise the workbench's own copy beside the shard series, so a run never
    /// replaces a dataset someone seeded with other settings.
    pub(super) fn main_dir(&self, spec: &DatasetSpec) -> PathBuf {
        let matches = Manifest::load(&self.dir).is_ok_and(|m| {
            m.backend == crate::dataset::Backend::Sqlite && m.dataset == *spec && m.shards.get() == MAIN_SHARDS
        });
        if matches || !Manifest::exists_in(&self.dir) { self.dir.clone() } else { self.workbench_dir(MAIN_SHARDS) }
    }

    /// `<dir>/workbench/<flights>-flights-<shards>-shards`: datasets only runs use.
    pub(super) fn workbench_dir(&self, shards: u32) -> PathBuf {
        self.dir.join("workbench").join(format!("{}-flights-{shards}-shards", self.flights))
    }

    pub(super) fn spec(&self) -> DatasetSpec {
        let start = crate::domain::UtcTime::parse("2026-12-01").expect("a valid constant date");
        DatasetSpec::new(42, self.flights, 30, start).expect("flights were validated")
    }
}

/// One configuration to measure.
pub(super) struct CellPlan {
    pub(super) part: Part,
    pub(super) label: String,
    pub(super) shards: Option<u32>,
    pub(super) path: QueryPath,
    pub(super) cache: bool,
    pub(super) protocol: Protocol,
    pub(super) encoding: Option<&'static str>,
    pub(super) mix: &'static str,
    pub(super) skew: Skew,
    pub(super) rate: Option<f64>,
}

impl CellPlan {
    pub(super) fn new(part: Part, label: impl Into<String>) -> Self {
        Self {
            part,
            label: label.into(),
            shards: None,
            path: QueryPath::Raw,
            cache: false,
            protocol: Protocol::H1,
            encoding: None,
            mix: "read=100",
            skew: Skew::Uniform,
            rate: None,
        }
    }
}

pub(super) fn zipf() -> Skew {
    Skew::Zipf { exponent: 1.0 }
}

/// The cells of one part (the mixed part's rate is filled in when it runs).
pub(super) fn cells_of(part: Part) -> Vec<CellPlan> {
    match part {
        Part::Paths => [QueryPath::Prepared, QueryPath::Adhoc, QueryPath::Orm, QueryPath::Raw]
            .into_iter()
            .map(|path| CellPlan { path, ..CellPlan::new(part, path.as_str()) })
            .collect(),
        Part::Protocols => [Protocol::H1, Protocol::H2]
            .into_iter()
            .map(|protocol| CellPlan {
                protocol,
                cache: true,
                skew: zipf(),
                ..CellPlan::new(part, if protocol == Protocol::H1 { "h1" } else { "h2c" })
            })
            .collect(),
        Part::Compression => CODECS
            .into_iter()
            .map(|encoding| CellPlan {
                encoding,
                mix: "departures=100",
                // Busy airports, whose 2-hour windows fill the 50-row page: bodies
                // big enough for compression to matter.
                skew: zipf(),
                ..CellPlan::new(part, encoding.unwrap_or("identity"))
            })
            .collect(),
        Part::Shards => SHARD_SERIES
            .into_iter()
            .flat_map(|n| {
                [
                    CellPlan { shards: Some(n), ..CellPlan::new(part, format!("read-{n}")) },
                    CellPlan {
                        shards: Some(n),
                        mix: "departures=100",
                        skew: zipf(),
                        ..CellPlan::new(part, format!("departures-{n}"))
                    },
                ]
            })
            .collect(),
        Part::Cache => [false, true]
            .into_iter()
            .map(|cache| CellPlan { cache, skew: zipf(), ..CellPlan::new(part, if cache { "on" } else { "off" }) })
            .collect(),
        Part::Mixed => vec![CellPlan { cache: true, skew: zipf(), mix: MIXED_MIX, ..CellPlan::new(part, "open-loop") }],
        Part::Profile => Vec::new(),
    }
}

//! What a workbench run measures: presets, parts and the cells of each part. Every
//! cell of a part differs from its neighbours in the one setting the part is about.

use super::cell::{AtRest, CellId, Keeping, Signing, Wire};
use super::data::{CellConfig, LoopKind};
use crate::compression::Encoding;
use crate::dataset::{DatasetSpec, Manifest};
use crate::load::workload::{Mix, Skew, WorkloadError};
use crate::store::QueryPath;
use std::path::PathBuf;
use std::time::Duration;

crate::choices! {
    /// How big and how long.
    #[derive(Debug)]
    pub enum Preset as "preset" {
        /// 20,000 flights, one 1 s round per cell (no intervals): about a minute.
        Quick = "quick",
        /// 100,000 flights (`flightbench seed`'s default), 5 rounds of 2 s per cell: about six minutes.
        Default = "default",
        /// 1,000,000 flights, 7 rounds of 4 s per cell.
        Full = "full",
    }
}

impl Preset {
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
            Preset::Default => Duration::from_secs(2),
            Preset::Full => Duration::from_secs(4),
        }
    }

    /// Rounds per cell: enough for intervals narrow enough to act on within the
    /// preset's time (`results/reproducibility.md`); quick takes one and says that its
    /// ratios have no interval.
    pub fn rounds(self) -> u32 {
        match self {
            Preset::Quick => 1,
            Preset::Default => 5,
            Preset::Full => 7,
        }
    }
}

crate::choices! {
    /// The parts of a run, in the order they run.
    #[derive(Debug, PartialOrd, Ord)]
    pub enum Part as "part" {
        /// Point reads through prepared, adhoc, orm and raw (cache off).
        Paths = "paths",
        /// HTTP/1.1 against h2c on cached point reads.
        Protocols = "protocols",
        /// identity, br, zstd and gzip on the departures endpoint.
        Compression = "compression",
        /// 1, 4, 8 and 16 shards: point reads and the scatter-gather departures query.
        Shards = "shards",
        /// The point-read cache on and off (Zipf-skewed ids).
        Cache = "cache",
        /// An open-loop read/departures/write mix at a fixed rate: tail latency.
        Mixed = "mixed",
        /// Writes with the read models off, async and inline (with projection lag);
        /// rebuild rates; the airport-keyed board against the scatter-gather at 16 shards.
        Projections = "projections",
        /// Bearer tokens verified on every request (RS256, ES256, EdDSA, HS256) and
        /// with the token cache, against no auth; TLS against cleartext; writes sealed
        /// and audited against writes in clear.
        Security = "security",
        /// `flightbench reshard` from 8 to 16 shards on a copy of the run's dataset
        /// while the mixed part's load runs at half capacity: how long, the write
        /// pause, throughput and p99 before, during and after, every acknowledged
        /// write looked for afterwards.
        Reshard = "reshard",
        /// The service split: the monolith, the monolith behind the gateway, and the
        /// gateway in front of query, command and notify services over RabbitMQ, as
        /// processes on the same data and load; capacity, CPU per request, latency at
        /// one offered rate, read after write through the front, write-to-webhook
        /// latency, and publisher confirm modes.
        Topology = "topology",
        /// A flamegraph of the fastest configuration measured.
        Profile = "profile",
    }
}

/// Shard counts the shards part compares (8 is the main dataset).
pub const SHARD_SERIES: [u32; 4] = [1, 4, 8, 16];
/// Shards of the dataset the projections part compares the board and the
/// scatter-gather on (the shards part's largest).
pub const PROJECTION_SHARDS: u32 = 16;
/// Shards of the main dataset (`flightbench seed`'s default).
pub const MAIN_SHARDS: u32 = 8;
/// Flights of the second dataset the projections part rebuilds (see
/// [`Plan::large_rebuild`]).
pub const LARGE_REBUILD_FLIGHTS: u64 = 1_000_000;
/// Codings the compression part compares.
pub const CODECS: [Encoding; 4] = [Encoding::Identity, Encoding::Br, Encoding::Zstd, Encoding::Gzip];
/// Open-loop rate of the mixed part, as a share of the capacity the closed-loop cells
/// imply for that mix.
pub const MIXED_LOAD_SHARE: f64 = 0.5;
/// The mixed part's request mix.
pub const MIXED_MIX: &str = "read=80,departures=15,write=5";
/// Sampling frequency of the profile part.
pub const PROFILE_HZ: u32 = 99;
/// A cell measured while other work took more than this share of the machine is
/// measured again (`NOISE_RETRIES` times at most). 10% is a fifth of a core on this
/// 2-core machine: more than its idle background (the databases and brokers it runs,
/// about 1%), less than any real competing job.
pub const NOISE_THRESHOLD: f64 = 0.10;
pub const NOISE_RETRIES: u32 = 2;

/// Which cores the server's threads and the load generator's threads run on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Empty: left to the scheduler.
    pub server_cores: Vec<usize>,
    pub load_cores: Vec<usize>,
}

impl Placement {
    /// Disjoint halves of `cores` (the server takes the first half, rounded up), or
    /// `None` with fewer than 2 cores.
    pub fn split(cores: &[usize]) -> Option<Self> {
        if cores.len() < 2 {
            return None;
        }
        let (server, load) = cores.split_at(cores.len().div_ceil(2));
        Some(Self { server_cores: server.to_vec(), load_cores: load.to_vec() })
    }
}

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
    /// Where the server and the load run (with `server_threads` and `load_threads`
    /// equal to their core counts when pinned).
    pub placement: Placement,
    /// The noise guard (see `NOISE_THRESHOLD`).
    pub noise_threshold: f64,
    pub noise_retries: u32,
}

impl Plan {
    /// The cells this plan measures, part by part.
    pub fn cells(&self) -> impl Iterator<Item = CellId> + '_ {
        self.parts.iter().flat_map(|&part| CellId::of(part))
    }

    /// Load runs this plan makes: every cell once per round, plus the profile.
    pub fn cell_count(&self) -> usize {
        self.cells().count() * self.rounds as usize + usize::from(self.parts.contains(&Part::Profile))
    }

    /// Roughly how long the measuring takes (seeding aside).
    pub fn estimate(&self) -> Duration {
        let cells = (self.warmup + self.measure + Duration::from_millis(300)) * self.cell_count() as u32;
        let reshard = if self.parts.contains(&Part::Reshard) { self.reshard_estimate() } else { Duration::ZERO };
        // Three topologies: starting, a warm-up, a closed and an open window each, and
        // the publish modes (a few seconds).
        let topology = if self.parts.contains(&Part::Topology) {
            (Duration::from_secs(2) + self.warmup + self.measure * 3) * 3 + Duration::from_secs(10)
        } else {
            Duration::ZERO
        };
        cells + reshard + topology
    }

    /// The reshard part: a capacity run, the quiet windows, and the reshard itself at
    /// about 2,500 flights a second (1,000,000 flights took 391 s at nice 19 beside a
    /// server at half its capacity, results/resharding.md).
    fn reshard_estimate(&self) -> Duration {
        let windows = 1 + 2 * super::resharding::QUIET_WINDOWS as u32;
        (self.warmup + self.measure) + self.measure * windows + Duration::from_secs_f64(self.flights as f64 / 2_500.0)
    }

    /// The reshard part's datasets: its own, seeded once and never served, and the copy
    /// each run reshards (removed afterwards).
    pub(super) fn reshard_dirs(&self) -> (PathBuf, PathBuf) {
        let from = super::resharding::RESHARD_FROM;
        let workbench = self.dir.join("workbench");
        (
            workbench.join(format!("reshard-source-{}-flights-{from}-shards", self.flights)),
            workbench.join(format!("reshard-{}-flights", self.flights)),
        )
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
        self.workbench_dir_of(self.flights, shards)
    }

    fn workbench_dir_of(&self, flights: u64, shards: u32) -> PathBuf {
        self.dir.join("workbench").join(format!("{flights}-flights-{shards}-shards"))
    }

    pub(super) fn spec(&self) -> DatasetSpec {
        spec_of(self.flights).expect("flights were validated")
    }

    /// The 1,000,000-flight dataset (8 shards) the projections part rebuilds beside
    /// the run's own, so the rebuild rate is known at the size a user outgrows: seeded
    /// once in `workbench/` (a few minutes), never written by a cell, so its
    /// figure does not grow with use as the main dataset's does. `None` for the quick
    /// preset (a minute's run cannot seed it) and when the run's own dataset is that
    /// large.
    pub(super) fn large_rebuild(&self) -> Option<(PathBuf, DatasetSpec)> {
        let wanted = self.parts.contains(&Part::Projections)
            && self.preset != Preset::Quick
            && self.flights < LARGE_REBUILD_FLIGHTS;
        let spec = spec_of(LARGE_REBUILD_FLIGHTS).filter(|_| wanted)?;
        Some((self.workbench_dir_of(LARGE_REBUILD_FLIGHTS, MAIN_SHARDS), spec))
    }
}

/// Every run's datasets: seed 42, 30 days from 2026-12-01.
fn spec_of(flights: u64) -> Option<DatasetSpec> {
    let start = crate::domain::UtcTime::parse("2026-12-01").ok()?;
    DatasetSpec::new(42, flights, 30, start).ok()
}

/// How one cell is served and loaded; everything but the setting its part is about
/// is the part's common ground.
pub(crate) struct CellPlan {
    pub(super) id: CellId,
    pub(super) shards: Option<u32>,
    pub(super) path: QueryPath,
    pub(super) cache: bool,
    pub(super) wire: Wire,
    pub(super) encoding: Option<Encoding>,
    pub(super) mix: &'static str,
    pub(super) skew: Skew,
    /// Open loop at this rate (the mixed part's is filled in when it runs).
    pub(super) rate: Option<f64>,
    /// The projections part's write cells: who keeps the read models.
    pub(super) keeping: Option<Keeping>,
    /// The security part's cells: the token the requests carry.
    pub(super) signing: Option<Signing>,
    /// Served over TLS (a certificate made for the cell).
    pub(super) tls: bool,
    /// The security part's write cells: how reports are stored.
    pub(super) at_rest: Option<AtRest>,
}

impl CellPlan {
    pub(super) fn of(id: CellId) -> Self {
        let base = Self {
            id,
            shards: None,
            path: QueryPath::Raw,
            cache: false,
            wire: Wire::H1,
            encoding: None,
            mix: "read=100",
            skew: Skew::Uniform,
            rate: None,
            keeping: None,
            signing: None,
            tls: false,
            at_rest: None,
        };
        let zipf = Skew::Zipf { exponent: 1.0 };
        match id {
            CellId::Path(path) => Self { path, ..base },
            CellId::Protocol(wire) => Self { wire, cache: true, skew: zipf, ..base },
            // Busy airports, whose 2-hour windows fill the 50-row page: bodies big
            // enough for compression to matter.
            CellId::Codec(coding) => Self {
                encoding: (coding != Encoding::Identity).then_some(coding),
                mix: "departures=100",
                skew: zipf,
                ..base
            },
            CellId::ShardReads(n) => Self { shards: Some(n), ..base },
            CellId::ShardDepartures(n) => Self { shards: Some(n), mix: "departures=100", skew: zipf, ..base },
            CellId::Cache(cache) => Self { cache, skew: zipf, ..base },
            CellId::OpenLoop => Self { cache: true, skew: zipf, mix: MIXED_MIX, ..base },
            CellId::ProjectionWrites(keeping) => Self { mix: "write=100", keeping: Some(keeping), ..base },
            // The mixed part's requests, but closed loop: as many writes as the
            // readers leave room for, so the lag is the one a reader of the models meets.
            CellId::ProjectionMix => {
                Self { cache: true, skew: zipf, mix: MIXED_MIX, keeping: Some(Keeping::Async), ..base }
            }
            // The protocols part's HTTP/1.1 requests (cached point reads), each with a
            // token: what verifying it costs shows against the cheapest request.
            CellId::Auth(signing) => Self { cache: true, skew: zipf, signing: Some(signing), ..base },
            // The same requests without a token, over each protocol in the clear or TLS.
            CellId::Transport { wire, tls } => Self { cache: true, skew: zipf, wire, tls, ..base },
            // The projections part's write-only load (no runner), each report signed by
            // a reporter (HS256, the cheapest check) so it has a subject to seal under.
            CellId::Writes(at_rest) => Self {
                mix: "write=100",
                keeping: Some(Keeping::Off),
                signing: Some(Signing::Hs256),
                at_rest: Some(at_rest),
                ..base
            },
            // The departures part's requests (busy airports, 2-hour windows, 50 rows),
            // answered from the read model or merged from every shard: the same rows.
            CellId::Board { read_model } => Self {
                shards: Some(PROJECTION_SHARDS),
                mix: if read_model { "board=100" } else { "departures=100" },
                skew: zipf,
                ..base
            },
        }
    }

    /// The dataset's shard count.
    pub(super) fn shard_count(&self) -> u32 {
        self.shards.unwrap_or(MAIN_SHARDS)
    }

    /// What the cell runs with, as `run.json` records it.
    pub(super) fn config(
        &self,
        connections: usize,
        streams_per_connection: usize,
    ) -> Result<CellConfig, WorkloadError> {
        Ok(CellConfig {
            path: self.path,
            protocol: self.wire,
            accept_encoding: self.encoding,
            cache: self.cache,
            shards: self.shard_count(),
            mix: Mix::parse(self.mix)?,
            skew: self.skew,
            connections,
            streams_per_connection,
            loop_model: if self.rate.is_some() { LoopKind::Open } else { LoopKind::Closed },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(preset: Preset, flights: u64, parts: &[Part]) -> Plan {
        Plan {
            preset,
            parts: parts.to_vec(),
            dir: PathBuf::from("shards"),
            flights,
            warmup: preset.warmup(),
            measure: preset.measure(),
            out: PathBuf::from("results"),
            server_threads: 1,
            load_threads: 1,
            rounds: 1,
            placement: Placement::default(),
            noise_threshold: NOISE_THRESHOLD,
            noise_retries: NOISE_RETRIES,
        }
    }

    #[test]
    fn the_million_flight_rebuild_comes_with_the_default_projections_part_only() {
        let (dir, spec) = plan(Preset::Default, 100_000, &[Part::Projections]).large_rebuild().unwrap();
        assert_eq!(dir, PathBuf::from("shards/workbench/1000000-flights-8-shards"));
        assert_eq!(spec.flights, LARGE_REBUILD_FLIGHTS);
        assert!(plan(Preset::Quick, 20_000, &[Part::Projections]).large_rebuild().is_none());
        assert!(plan(Preset::Default, 100_000, &[Part::Paths, Part::Mixed]).large_rebuild().is_none());
        assert!(plan(Preset::Full, 1_000_000, &[Part::Projections]).large_rebuild().is_none(), "its own is 1M");
        assert!(plan(Preset::Default, 2_000_000, &[Part::Projections]).large_rebuild().is_none());
    }
}

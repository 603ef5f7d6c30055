//! Where a run's figures come from: commit, toolchain, machine and dataset.

use super::data::{DatasetInfo, Provenance};
use crate::dataset::Manifest;
use crate::store::StoreConfig;

/// What this machine and build are.
pub(super) fn provenance(manifest: &Manifest) -> Provenance {
    // Taken when the binary was built (build.rs): the code and compiler that produced
    // the figures.
    let commit = env!("FLIGHTBENCH_COMMIT").to_owned();
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let host = read("/proc/sys/kernel/hostname").trim().to_owned();
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    Provenance {
        flightbench_version: env!("CARGO_PKG_VERSION").to_owned(),
        commit,
        toolchain: env!("FLIGHTBENCH_RUSTC").to_owned(),
        build: if cfg!(debug_assertions) { "debug" } else { "release" }.to_owned(),
        host: if host.is_empty() { "unknown".to_owned() } else { host },
        os: format!("{} {kernel}", std::env::consts::OS).trim().to_owned(),
        cpu,
        cores: crate::cli::available_cores(),
        dataset: DatasetInfo {
            seed: manifest.dataset.seed,
            flights: manifest.counts.flights,
            days: manifest.dataset.days,
            shards: manifest.shards.get(),
            events: manifest.counts.events,
            backend: manifest.backend.as_str().to_owned(),
            sqlite_pragmas: crate::store::sqlite_pragmas(&StoreConfig::default()),
        },
    }
}

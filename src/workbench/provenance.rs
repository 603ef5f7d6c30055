//! Where a run's figures come from: the build and machine (`machine`) and the dataset.

use super::data::{DatasetInfo, Provenance};
use crate::dataset::Manifest;
use crate::store::StoreConfig;

/// What this machine and build are, and what the dataset is.
pub(super) fn provenance(manifest: &Manifest) -> Provenance {
    let (build, host) = (crate::machine::build(), crate::machine::host());
    Provenance {
        flightbench_version: build.version,
        commit: build.commit,
        toolchain: build.toolchain,
        build: build.profile,
        host: host.host,
        os: host.os,
        cpu: host.cpu,
        cores: host.cores,
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

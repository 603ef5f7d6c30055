//! Where a run's figures come from: commit, toolchain, machine and dataset.

use super::data::{DatasetInfo, Provenance};
use crate::dataset::Manifest;
use crate::store::StoreConfig;

/// What this machine and build are.
pub(super) fn provenance(manifest: &Manifest) -> Provenance {
    let command = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let commit = match command("git", &["rev-parse", "--short", "HEAD"]).as_str() {
        "unknown" => "unknown".to_owned(),
        commit => {
            let dirty = std::process::Command::new("git")
                .args(["diff", "--quiet", "HEAD", "--", "src", "Cargo.toml", "Cargo.lock"])
                .status()
                .is_ok_and(|s| !s.success());
            if dirty { format!("{commit} (with uncommitted changes)") } else { commit.to_owned() }
        }
    };
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
        toolchain: command("rustc", &["-V"]),
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

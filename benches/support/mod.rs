//! Shared bench setup: datasets built once and cached between runs, the criterion
//! configuration (with the flamegraph profiler), test-mode detection, and the settings
//! file `flightbench bench-report` quotes.
//!
//! Each bench target uses a subset of these helpers, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod profiler;

use criterion::Criterion;
use flightbench::dataset::{Backend, DatasetSpec, Manifest};
use flightbench::domain::UtcTime;
use flightbench::routing::ShardCount;
use flightbench::seed::{PgShards, SeedConfig, SeedTarget, seed};
use flightbench::store::{Durability, PlanCacheMode, Store, StoreConfig};
use std::path::PathBuf;
use std::time::Duration;

/// `cargo bench` passes `--bench`; `cargo test --benches` does not, and then every
/// benchmark runs once on small data as a smoke test.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The dataset benches run on: 1,000,000 flights in 8 shards for real runs, a small
/// one for the smoke test.
pub fn bench_spec() -> (DatasetSpec, u32) {
    let start = UtcTime::parse("2026-12-01").expect("literal date");
    if full_run() {
        (DatasetSpec::new(42, 1_000_000, 30, start).expect("valid spec"), 8)
    } else {
        (DatasetSpec::new(42, 6_000, 10, start).expect("valid spec"), 2)
    }
}

/// The plan-cache comparison's dataset: the same size over 92 days, so the
/// partitioned tables have three monthly partitions to prune.
pub fn plan_cache_spec() -> DatasetSpec {
    let (spec, _) = bench_spec();
    DatasetSpec::new(spec.seed, spec.flights, 92, spec.start).expect("valid spec")
}

/// One driver thread: benches measure one request at a time, so a multi-thread runtime
/// would only add cross-thread wake-ups to every measurement.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

pub fn criterion() -> Criterion {
    let c = Criterion::default().with_profiler(profiler::FlamegraphProfiler::new(997));
    if full_run() { c.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)) } else { c }
}

/// Cargo's target directory (benches get `CARGO_TARGET_TMPDIR` = `<target>/tmp`).
pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().expect("target/tmp has a parent").to_owned()
}

/// Where criterion writes (`CRITERION_HOME` or `<target>/criterion`).
pub fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME").map(PathBuf::from).unwrap_or_else(|| target_dir().join("criterion"))
}

/// Writes `<criterion>/flightbench/<name>.json`, read by `flightbench bench-report`.
pub fn write_settings(name: &str, value: &serde_json::Value) {
    let dir = criterion_dir().join("flightbench");
    std::fs::create_dir_all(&dir).expect("create criterion settings dir");
    std::fs::write(dir.join(format!("{name}.json")), serde_json::to_vec_pretty(value).expect("json"))
        .expect("write bench settings");
}

/// The CPUs this process may run on (`taskset` shows here), for the report.
pub fn cpus_allowed() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:").map(|v| v.trim().to_owned())))
        .unwrap_or_else(|| "unknown".into())
}

pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

fn pg_server() -> String {
    std::env::var("FLIGHTBENCH_BENCH_PG").unwrap_or_else(|_| PG_SERVER.to_owned())
}

fn matches(manifest: &Manifest, spec: &DatasetSpec, shards: u32, backend: Backend) -> bool {
    manifest.dataset == *spec && manifest.shards.get() == shards && manifest.backend == backend
}

/// Bumped whenever what benches write to a cached dataset changes, so a dataset
/// written under other rules is re-seeded rather than reused.
const CACHE_VERSION: u32 = 2;

/// Full runs share a cache across runs. Smoke runs (`cargo test --benches`) are
/// tests: their PostgreSQL databases are named for this process and dropped at the
/// end by [`SmokeCleanup`].
fn dataset_prefix() -> String {
    if full_run() { format!("fbbench_v{CACHE_VERSION}") } else { format!("fbbench_smoke_{}", std::process::id()) }
}

/// Drops this process's smoke-run PostgreSQL databases when dropped (also on panic).
/// Does nothing in full runs, whose datasets are a cache meant to outlive the run.
pub struct SmokeCleanup;

impl Drop for SmokeCleanup {
    fn drop(&mut self) {
        if full_run() {
            return;
        }
        let prefix = format!("{}_", dataset_prefix());
        let server = pg_server();
        // Drop may run during unwinding inside a runtime: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let (client, conn) =
                    tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                let rows =
                    client.query("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", &[&prefix]).await?;
                for row in rows {
                    let name: String = row.get(0);
                    client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
                }
                Ok::<_, tokio_postgres::Error>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop smoke-run databases: {e}"),
            Err(_) => eprintln!("warning: dropping smoke-run databases panicked"),
        }
    }
}

/// Opens the cached dataset for (backend, spec, shards), seeding it first if the cache
/// is missing or was built from other inputs. Benches that write (appends) only touch
/// flights that read benches never draw, so a reused dataset reads the same.
pub async fn dataset(backend: Backend, spec: DatasetSpec, shards: u32, config: &StoreConfig) -> Store {
    let name = format!("{}_s{}_f{}_d{}_n{}", dataset_prefix(), spec.seed, spec.flights, spec.days, shards);
    let dir = target_dir().join("bench-data").join(format!("{}-{name}", backend.as_str()));
    if let Ok(manifest) = Manifest::load(&dir)
        && matches(&manifest, &spec, shards, backend)
        && let Ok(store) = Store::open(&dir, config).await
    {
        return store;
    }
    eprintln!("seeding bench dataset {name} ({}) once; later runs reuse it", backend.as_str());
    let target = match backend {
        Backend::Sqlite => SeedTarget::Sqlite { durability: Durability::Normal },
        Backend::Postgres => {
            SeedTarget::Postgres { shards: PgShards::Base(format!("{}/{name}", pg_server())), password: None }
        }
    };
    let seed_config = SeedConfig {
        dir: dir.clone(),
        spec,
        shards: ShardCount::new(i64::from(shards)).expect("valid shard count"),
        target,
        force: true,
        progress: false,
    };
    seed(&seed_config).await.unwrap_or_else(|e| panic!("seeding bench dataset {name}: {e}"));
    Store::open(&dir, config).await.unwrap_or_else(|e| panic!("opening bench dataset {name}: {e}"))
}

/// Benches issue one request at a time, so two connections per shard and library
/// are plenty; larger pools only hold idle PostgreSQL connections, and with several
/// 8-shard stores open the server's `max_connections` (100 by default) runs out.
pub fn store_config(plan_cache_mode: PlanCacheMode) -> StoreConfig {
    StoreConfig { plan_cache_mode, pool_size: 2, ..StoreConfig::default() }
}

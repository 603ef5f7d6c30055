//! Query paths compared: `prepared` vs `adhoc` vs `orm` vs the `raw` driver floor, for
//! every store operation on SQLite and PostgreSQL; PostgreSQL's plan cache modes on the
//! partitioned tables; one shard vs eight.
//!
//! Like with like: every arm replays the same pre-drawn inputs against the same data,
//! and before an arm is measured its results on all of them are asserted equal to
//! `prepared`'s. All arms decode rows into the same domain values.
//!
//!     cargo bench --bench queries                       # everything
//!     cargo bench --bench queries -- sqlite/point_read  # one group
//!     cargo bench --bench queries -- --profile-time 10 sqlite/point_read/adhoc   # flamegraph

mod support;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flightbench::dataset::{AIRPORTS, Backend, DatasetSpec, Generator};
use flightbench::domain::{AirportCode, DelayEvent, EventKind, FlightId, Limit, Reason, TimeWindow, UtcTime};
use flightbench::store::{PlanCacheMode, QueryPath, Store};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::Cell;
use std::fmt::Debug;
use std::future::Future;
use tokio::runtime::Runtime;

/// Reads query departures and statistics at the busiest airports only.
const READ_HUBS: usize = 16;

/// Inputs drawn once and replayed identically for every arm.
struct Inputs {
    /// Point reads and event streams (uniform over the read-only flights).
    ids: Vec<FlightId>,
    /// Departures: a hub and a 2-hour window; `Limit::DEFAULT` rows.
    departures: Vec<(AirportCode, TimeWindow)>,
    /// Delay statistics: a hub and one calendar day.
    stats: Vec<(AirportCode, TimeWindow)>,
    /// Appends: flights no read can see (ids outside `ids`' range, departing from an
    /// airport that no departures or statistics input names), still open to events.
    /// Writes therefore never change what any read returns, in this run or a later
    /// one on the cached dataset.
    writable: Vec<FlightId>,
}

impl Inputs {
    fn draw(spec: &DatasetSpec) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(2026);
        let n = spec.flights as i64;
        let reserved = (n / 50).max(1_000);
        let ids = (0..256).map(|_| FlightId::new(rng.random_range(1..=n - reserved)).unwrap()).collect();
        let hubs: Vec<AirportCode> =
            AIRPORTS[..READ_HUBS].iter().map(|a| AirportCode::parse(a.code).unwrap()).collect();
        let mut window = |hours: i64| {
            let day = spec.start.plus_seconds(i64::from(rng.random_range(0..spec.days)) * 86_400);
            let from = day.plus_seconds(rng.random_range(0..=24 - hours) * 3_600);
            let hub = hubs[rng.random_range(0..hubs.len())];
            (hub, TimeWindow::new(from, from.plus_seconds(hours * 3_600)).unwrap())
        };
        let departures = (0..64).map(|_| window(2)).collect();
        let stats = (0..64).map(|_| window(24)).collect();
        let generator = Generator::new(*spec);
        let writable: Vec<FlightId> = (n - reserved + 1..=n)
            .map(|id| FlightId::new(id).unwrap())
            .map(|id| generator.flight(id))
            .filter(|g| !g.status.state.is_terminal() && !hubs.contains(&g.flight.origin))
            .map(|g| g.flight.id)
            .take(64)
            .collect();
        assert_eq!(writable.len(), 64, "not enough writable flights outside the read set");
        Self { ids, departures, stats, writable }
    }
}

/// Benchmarks `run` for every arm over `count` inputs, after asserting each arm
/// returns what the first arm does on every input.
fn compare<T, F, Fut>(c: &mut Criterion, rt: &Runtime, group: &str, count: usize, arms: &[(String, QueryPath)], run: F)
where
    T: PartialEq + Debug,
    F: Fn(usize, usize) -> Fut,
    Fut: Future<Output = T>,
{
    let reference: Vec<T> = (0..count).map(|i| rt.block_on(run(0, i))).collect();
    let mut g = c.benchmark_group(group);
    for (arm, (name, _)) in arms.iter().enumerate() {
        for (i, want) in reference.iter().enumerate() {
            assert_eq!(&rt.block_on(run(arm, i)), want, "{group}: {name} differs from {} on input {i}", arms[0].0);
        }
        let next = Cell::new(0);
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(rt).iter(|| {
                let i = next.get();
                next.set((i + 1) % count);
                run(arm, i)
            })
        });
    }
    g.finish();
}

fn path_arms() -> Vec<(String, QueryPath)> {
    QueryPath::ALL.iter().map(|p| (p.to_string(), *p)).collect()
}

/// Which reads a comparison covers.
#[derive(PartialEq)]
enum Reads {
    All,
    /// Point read and departures only: the two reads shard counts and plan caching
    /// change most.
    Headline,
}

/// Read operations, one group per operation; arm `i` uses `stores[i]` (or the last).
fn reads(
    c: &mut Criterion,
    rt: &Runtime,
    prefix: &str,
    which: Reads,
    stores: &[&Store],
    arms: &[(String, QueryPath)],
    inputs: &Inputs,
) {
    let store = |arm: usize| stores[arm.min(stores.len() - 1)];
    let path = |arm: usize| arms[arm].1;
    compare(c, rt, &format!("{prefix}/point_read"), inputs.ids.len(), arms, |arm, i| {
        let (s, p, id) = (store(arm), path(arm), inputs.ids[i]);
        async move { s.flight(p, id).await.unwrap() }
    });
    compare(c, rt, &format!("{prefix}/departures"), inputs.departures.len(), arms, |arm, i| {
        let (s, p, (airport, window)) = (store(arm), path(arm), inputs.departures[i]);
        async move { s.departures(p, airport, window, Limit::DEFAULT).await.unwrap() }
    });
    if which == Reads::Headline {
        return;
    }
    compare(c, rt, &format!("{prefix}/event_stream"), inputs.ids.len(), arms, |arm, i| {
        let (s, p, id) = (store(arm), path(arm), inputs.ids[i]);
        async move { s.events(p, id).await.unwrap() }
    });
    compare(c, rt, &format!("{prefix}/delay_stats"), inputs.stats.len(), arms, |arm, i| {
        let (s, p, (airport, window)) = (store(arm), path(arm), inputs.stats[i]);
        async move { s.delay_stats(p, airport, window).await.unwrap() }
    });
}

/// Appends with the right expected version, cycling over the writable flights. Each
/// arm first checks one append per flight succeeds and is read back.
fn appends(c: &mut Criterion, rt: &Runtime, backend: &str, store: &Store, inputs: &Inputs) {
    let event = |version: i64| {
        DelayEvent::new(
            UtcTime::parse("2026-12-01T00:00:00Z").unwrap(),
            EventKind::Revised { delay_minutes: 1 + version % 90, reason: Reason::parse("bench").unwrap() },
        )
    };
    let mut g = c.benchmark_group(format!("{backend}/append"));
    for &path in QueryPath::ALL {
        let versions: Vec<Cell<i64>> = inputs
            .writable
            .iter()
            .map(|&id| {
                let v = rt.block_on(store.flight(QueryPath::Raw, id)).unwrap().status.version;
                let done = rt.block_on(store.append(path, id, v, &event(v))).unwrap();
                assert_eq!(rt.block_on(store.flight(QueryPath::Raw, id)).unwrap().status, done.status);
                Cell::new(done.status.version)
            })
            .collect();
        let next = Cell::new(0);
        g.bench_function(BenchmarkId::from_parameter(path), |b| {
            b.to_async(rt).iter(|| {
                let i = next.get();
                next.set((i + 1) % versions.len());
                let (id, version) = (inputs.writable[i], &versions[i]);
                async move {
                    let expected = version.get();
                    let done = store.append(path, id, expected, &event(expected)).await.unwrap();
                    version.set(done.status.version);
                }
            })
        });
    }
    g.finish();
}

fn queries(c: &mut Criterion) {
    let _cleanup = support::SmokeCleanup;
    let rt = support::runtime();
    let (spec, shards) = support::bench_spec();
    let inputs = Inputs::draw(&spec);
    let auto = support::store_config(PlanCacheMode::Auto);

    let sqlite = rt.block_on(support::dataset(Backend::Sqlite, spec, shards, &auto));
    let postgres = rt.block_on(support::dataset(Backend::Postgres, spec, shards, &auto));
    write_settings(&rt, &spec, shards, &postgres);

    for (name, store) in [("sqlite", &sqlite), ("postgres", &postgres)] {
        reads(c, &rt, name, Reads::All, &[store], &path_arms(), &inputs);
        appends(c, &rt, name, store, &inputs);
    }

    // Plan cache modes on the partitioned tables. Pruning needs more than one
    // partition, so this group runs on its own 92-day dataset (three monthly
    // partitions per table) with its own inputs spread over all three months.
    let plan_spec = support::plan_cache_spec();
    let plan_inputs = Inputs::draw(&plan_spec);
    let modes = [PlanCacheMode::Auto, PlanCacheMode::ForceCustomPlan, PlanCacheMode::ForceGenericPlan];
    let plan_stores: Vec<Store> = modes
        .iter()
        .map(|&mode| rt.block_on(support::dataset(Backend::Postgres, plan_spec, shards, &support::store_config(mode))))
        .collect();
    let plan_arms: Vec<(String, QueryPath)> = [QueryPath::Prepared, QueryPath::Raw]
        .iter()
        .flat_map(|&p| modes.map(|mode| (format!("{p}/{}", mode.as_str()), p)))
        .collect();
    let by_arm: Vec<&Store> = (0..plan_arms.len()).map(|arm| &plan_stores[arm % modes.len()]).collect();
    reads(c, &rt, "postgres_plan_cache", Reads::Headline, &by_arm, &plan_arms, &plan_inputs);
    for store in &plan_stores {
        rt.block_on(store.close());
    }

    // One shard against the usual count, same data: point reads touch one shard either
    // way; departures scatter to all of them.
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let one = rt.block_on(support::dataset(backend, spec, 1, &auto));
        let many = if backend == Backend::Sqlite { &sqlite } else { &postgres };
        let arms: Vec<(String, QueryPath)> = [QueryPath::Prepared, QueryPath::Raw]
            .iter()
            .flat_map(|&p| [(format!("{p}/1_shard"), p), (format!("{p}/{shards}_shards"), p)])
            .collect();
        let stores = [&one, many, &one, many];
        reads(c, &rt, &format!("{}_shards", backend.as_str()), Reads::Headline, &stores, &arms, &inputs);
        rt.block_on(one.close());
    }
}

fn write_settings(rt: &Runtime, spec: &DatasetSpec, shards: u32, postgres: &Store) {
    let pg_version = postgres
        .manifest()
        .postgres
        .as_ref()
        .map(|p| {
            rt.block_on(async {
                let url = &p.shard_urls[0];
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                client.query_one("SHOW server_version", &[]).await.unwrap().get::<_, String>(0)
            })
        })
        .unwrap_or_default();
    let config = support::store_config(PlanCacheMode::Auto);
    support::write_settings(
        "queries",
        &serde_json::json!({
            "dataset": spec,
            "shards": shards,
            "full_run": support::full_run(),
            "runtime": "tokio current_thread (one driver thread; sqlx runs each SQLite connection on its own worker thread)",
            "cpus_allowed": support::cpus_allowed(),
            "sqlite": { "journal_mode": "wal", "synchronous": config.durability.pragma().to_ascii_lowercase(),
                        "busy_timeout_ms": config.busy_timeout.as_millis() as u64 },
            "pool_size_per_shard": config.pool_size,
            "postgres": { "server_version": pg_version, "plan_cache_mode": "auto, except in postgres_plan_cache where the arm names it", "plan_cache_dataset": support::plan_cache_spec() },
            "inputs": { "point_reads": 256, "departure_windows": "64 × (hub, 2 h), limit 50", "stat_windows": "64 × (hub, 1 day)", "append_flights": 64 },
        }),
    );
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = queries
}
criterion_main!(benches);

//! The departures scatter plan: every shard asked for the whole page (the plan before,
//! `ScatterPlan::full`) against each shard asked for its share plus a margin and
//! topped up where needed (`ScatterPlan::bounded`, the default), on the busiest hubs'
//! 2-hour windows, where pages are full and the two plans differ most. Raw path,
//! SQLite, 8 and 16 shards of the bench dataset (1,000,000 flights in real runs).
//! Both plans' pages are asserted equal on every input before either is timed.
//!
//!     cargo bench --bench scatter

mod support;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flightbench::dataset::{AIRPORTS, Backend};
use flightbench::domain::{AirportCode, Limit, TimeWindow};
use flightbench::store::{PlanCacheMode, QueryPath, ScatterPlan, Store};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::Cell;

/// Departures at the four busiest airports only: their windows fill the page.
const HUBS: usize = 4;

fn scatter(c: &mut Criterion) {
    let rt = support::runtime();
    let (spec, _) = support::bench_spec();
    let config = support::store_config(PlanCacheMode::Auto);
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let inputs: Vec<(AirportCode, TimeWindow)> = (0..64)
        .map(|_| {
            let from = spec.start.plus_seconds(rng.random_range(0..i64::from(spec.days) * 24 - 2) * 3_600);
            let hub = AirportCode::parse(AIRPORTS[rng.random_range(0..HUBS)].code).unwrap();
            (hub, TimeWindow::new(from, from.plus_seconds(2 * 3_600)).unwrap())
        })
        .collect();
    let limit = Limit::DEFAULT;
    for shards in [8u32, 16] {
        let store: Store = rt.block_on(support::dataset(Backend::Sqlite, spec, shards, &config));
        let plans = [("full", ScatterPlan::full(limit)), ("bounded", ScatterPlan::bounded(limit, shards as usize))];
        let run = |plan: ScatterPlan, (airport, window): (AirportCode, TimeWindow)| {
            store.departures_planned(QueryPath::Raw, airport, window, limit, plan)
        };
        for &input in &inputs {
            let full = rt.block_on(run(plans[0].1, input)).unwrap();
            assert_eq!(rt.block_on(run(plans[1].1, input)).unwrap(), full, "{input:?}");
        }
        let mut g = c.benchmark_group(format!("scatter/departures_{shards}_shards"));
        for (name, plan) in plans {
            let next = Cell::new(0);
            g.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    let i = next.replace((next.get() + 1) % inputs.len());
                    rt.block_on(run(plan, inputs[i])).unwrap()
                })
            });
        }
        g.finish();
        rt.block_on(store.close());
    }
}

criterion_group! { name = benches; config = support::criterion(); targets = scatter }
criterion_main!(benches);

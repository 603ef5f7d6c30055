//! Shard routing and the gather step: `shard_for` (jump consistent hash) per call, and
//! the k-way merge of N sorted per-shard departure lists into the first 50.
//!
//!     cargo bench --bench routing

mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flightbench::domain::{
    AirportCode, Carrier, Departure, Flight, FlightId, FlightNumber, FlightStatus, FlightView, UtcTime,
};
use flightbench::routing::shard_for;
use flightbench::store::merge_departures;
use std::hint::black_box;

fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing/shard_for");
    g.throughput(Throughput::Elements(1_024));
    for shards in [1u32, 8, 16, 256] {
        g.bench_function(BenchmarkId::from_parameter(shard_label(shards as usize)), |b| {
            b.iter(|| (1..=1_024i64).fold(0u32, |acc, id| acc ^ shard_for(black_box(id), black_box(shards))))
        });
    }
    g.finish();
}

fn shard_label(shards: usize) -> String {
    if shards == 1 { "1_shard".into() } else { format!("{shards}_shards") }
}

fn departure(id: i64, minute: i64) -> Departure {
    let at = UtcTime::from_unix(1_796_083_200 + minute * 60).unwrap();
    FlightView {
        flight: Flight {
            id: FlightId::new(id).unwrap(),
            carrier: Carrier::parse("BA").unwrap(),
            number: FlightNumber::new(117).unwrap(),
            origin: AirportCode::parse("LHR").unwrap(),
            destination: AirportCode::parse("JFK").unwrap(),
            scheduled_departure: at,
            scheduled_arrival: at.plus_seconds(8 * 3_600),
        },
        status: FlightStatus::initial(),
    }
}

fn merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing/merge_50");
    for shards in [1usize, 4, 8, 16] {
        // Each shard returns its first 50, interleaved in time across shards.
        let lists: Vec<Vec<Departure>> = (0..shards)
            .map(|s| (0..50).map(|i| departure((i * shards + s) as i64 + 1, (i * shards + s) as i64)).collect())
            .collect();
        let merged = merge_departures(lists.clone(), 50);
        assert_eq!(merged.len(), 50.min(50 * shards));
        assert!(merged.windows(2).all(|w| w[0].flight.scheduled_departure <= w[1].flight.scheduled_departure));
        g.bench_function(BenchmarkId::from_parameter(shard_label(shards)), |b| {
            b.iter_batched(|| lists.clone(), |lists| merge_departures(lists, 50), criterion::BatchSize::SmallInput)
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = routing, merge
}
criterion_main!(benches);

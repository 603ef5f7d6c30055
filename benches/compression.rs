//! Compression codecs and levels on real response bodies: what each costs (throughput)
//! and what it saves (compressed size, written for `flightbench bench-report`), so the
//! server's default levels are chosen from data.
//!
//! Bodies are the JSON the API returns, built from the bench dataset through the store:
//! one flight, 50 and 1,000 departures, and an event stream.
//!
//!     cargo bench --bench compression

mod support;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use flightbench::compression::{Encoding, compress, decompress};
use flightbench::dataset::Backend;
use flightbench::domain::{AirportCode, FlightId, Limit, TimeWindow};
use flightbench::store::{PlanCacheMode, QueryPath, Store};

/// Levels per codec: the fast end, the server default, and the slow end that shows
/// why the default is not higher.
fn levels(encoding: Encoding) -> Vec<i32> {
    match encoding {
        Encoding::Br => vec![1, 4, 6, 9, 11],
        Encoding::Zstd => vec![1, 3, 6, 12],
        Encoding::Gzip | Encoding::Deflate => vec![1, 6, 9],
        Encoding::Identity => vec![0],
    }
}

/// The bodies, as the API serialises them.
async fn bodies(store: &Store) -> Vec<(&'static str, Vec<u8>)> {
    let spec = store.manifest().dataset;
    let hub = AirportCode::parse("ATL").unwrap();
    let day = TimeWindow::new(spec.start, spec.start.plus_seconds(86_400)).unwrap();
    let whole = TimeWindow::new(spec.start, spec.end()).unwrap();
    let flight = store.flight(QueryPath::Raw, FlightId::new(17).unwrap()).await.unwrap();
    let fifty = store.departures(QueryPath::Raw, hub, day, Limit::new(50).unwrap()).await.unwrap();
    let thousand = store.departures(QueryPath::Raw, hub, whole, Limit::new(1_000).unwrap()).await.unwrap();
    assert_eq!((fifty.len(), thousand.len()), (50, 1_000), "bench dataset too small for the bodies");
    // The longest stream among the first flights: a hot flight's history.
    let mut events = Vec::new();
    for id in 1..=200 {
        let stream = store.events(QueryPath::Raw, FlightId::new(id).unwrap()).await.unwrap();
        if stream.len() > events.len() {
            events = stream;
        }
    }
    vec![
        ("flight", serde_json::to_vec(&flight).unwrap()),
        ("departures_50", serde_json::to_vec(&fifty).unwrap()),
        ("departures_1000", serde_json::to_vec(&thousand).unwrap()),
        ("event_stream", serde_json::to_vec(&events).unwrap()),
    ]
}

fn codecs(c: &mut Criterion) {
    let rt = support::runtime();
    let (spec, shards) = support::bench_spec();
    let store =
        rt.block_on(support::dataset(Backend::Sqlite, spec, shards, &support::store_config(PlanCacheMode::Auto)));
    let bodies = rt.block_on(bodies(&store));
    let mut sizes = serde_json::Map::new();
    for (name, body) in &bodies {
        let mut g = c.benchmark_group(format!("compression/{name}"));
        // Brotli 11 on the largest body takes tenths of a second: sample flat.
        g.sampling_mode(SamplingMode::Flat).sample_size(10).throughput(Throughput::Bytes(body.len() as u64));
        for encoding in Encoding::COMPRESSED {
            for level in levels(encoding) {
                let packed = rt.block_on(compress(encoding, level, body)).unwrap();
                assert_eq!(&rt.block_on(decompress(encoding, &packed)).unwrap(), body, "{encoding} {level} round trip");
                let id = format!("{encoding}_{level}");
                sizes.insert(
                    format!("compression/{name}/{id}"),
                    serde_json::json!({ "input": body.len(), "output": packed.len() }),
                );
                g.bench_function(BenchmarkId::from_parameter(&id), |b| {
                    b.to_async(&rt).iter(|| compress(encoding, level, body))
                });
            }
        }
        g.finish();
    }
    support::write_settings(
        "compression",
        &serde_json::json!({ "sizes": sizes, "cpus_allowed": support::cpus_allowed() }),
    );
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = codecs
}
criterion_main!(benches);

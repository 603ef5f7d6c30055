//! Reading a stored event: what upcasting a version-1 payload costs next to decoding
//! one already at the current version (`domain::upcast`, then
//! `DelayEvent::from_stored`, as every query path does per event row). Both arms
//! decode to the same event, checked before timing.
//!
//!     cargo bench --bench events

mod support;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flightbench::domain::upcast::{StoredEvent, upcast};
use flightbench::domain::{DelayEvent, UtcTime};
use std::hint::black_box;

fn decode(stored: &StoredEvent<'_>, at: UtcTime) -> DelayEvent {
    let current = upcast(stored.clone()).expect("known version");
    DelayEvent::from_stored(at, &current).expect("valid event")
}

fn events(c: &mut Criterion) {
    let at = UtcTime::from_unix(1_796_083_200).unwrap();
    let v2 = StoredEvent {
        schema_version: 2,
        kind: "revised".into(),
        delay_minutes: 35,
        reason: "weather at destination".into(),
        cause: Some("72".into()),
        reported_by: None,
    };
    let v1 = StoredEvent { schema_version: 1, cause: None, ..v2.clone() };
    assert_eq!(decode(&v1, at), decode(&v2, at), "both arms read the same event");
    let mut g = c.benchmark_group("events/decode");
    for (name, stored) in [("stored_v2", &v2), ("stored_v1_upcast", &v1)] {
        g.bench_function(BenchmarkId::from_parameter(name), |b| b.iter(|| decode(black_box(stored), at)));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = events
}
criterion_main!(benches);

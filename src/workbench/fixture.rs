//! A run of every planned cell with made-up figures, for the report and findings tests.

use super::*;

pub fn cell(id: &str, requests_per_s: f64, p99_ms: f64) -> Cell {
    let id: CellId = id.parse().unwrap();
    let h2 = super::super::plan::CellPlan::of(id).wire == Wire::H2c;
    let (connections, streams) = if h2 { (16, 16) } else { (64, 1) };
    Cell {
        id,
        config: super::super::plan::CellPlan::of(id).config(connections, streams).unwrap(),
        requests_per_s,
        responses: (requests_per_s * 4.0) as u64,
        errors: 0,
        latency: Latency {
            p50_ms: p99_ms / 4.0,
            p90_ms: p99_ms / 2.0,
            p99_ms,
            p999_ms: p99_ms * 2.0,
            max_ms: p99_ms * 3.0,
        },
        latency_curve: vec![(0.0, 0.1), (50.0, p99_ms / 4.0), (99.0, p99_ms)],
        throughput_per_second: vec![requests_per_s as u64; 4],
        wire_bytes: (requests_per_s * 4.0) as u64 * 260,
        decoded_bytes: (requests_per_s * 4.0) as u64 * 260,
        cache_hit_ratio: None,
        target_rate: None,
        rate_kept: None,
        // A server that spends 1.6 cores' worth of CPU on its throughput.
        server_cpu_us_per_request: Some(1.6e6 / requests_per_s),
        rounds: NOISE
            .iter()
            .map(|d| Round {
                requests_per_s: requests_per_s * (1.0 + d),
                server_cpu_us_per_request: Some(1.6e6 / requests_per_s * (1.0 - d / 2.0)),
                p99_ms,
                errors: 0,
                disturbance: None,
                disturbed: false,
                attempts: 1,
            })
            .collect(),
        acknowledged_writes_per_s: None,
        projection_lag: None,
    }
}

/// Five rounds around each cell's figure, throughput within ±2%, CPU within ±1%.
const NOISE: [f64; 5] = [0.0, 0.02, -0.02, 0.01, -0.01];

pub fn run() -> RunData {
    let mut cells = vec![
        cell("paths/prepared", 9_000.0, 4.0),
        cell("paths/adhoc", 5_000.0, 6.0),
        cell("paths/orm", 4_000.0, 7.0),
        cell("paths/raw", 12_000.0, 3.0),
        cell("protocols/h1", 30_000.0, 5.0),
        cell("protocols/h2c", 36_000.0, 6.0),
    ];
    for (codec, wire, rps) in
        [("identity", 6_000u64, 1_000.0), ("br", 660, 700.0), ("zstd", 900, 900.0), ("gzip", 1_100, 800.0)]
    {
        let mut c = cell(&format!("compression/{codec}"), rps, 20.0);
        c.wire_bytes = wire * c.responses;
        c.decoded_bytes = 6_000 * c.responses;
        cells.push(c);
    }
    for (n, read, departures) in
        [(1, 10_000.0, 2_000.0), (4, 11_000.0, 1_000.0), (8, 10_800.0, 600.0), (16, 10_500.0, 300.0)]
    {
        cells.push(cell(&format!("shards/read-{n}"), read, 4.0));
        cells.push(cell(&format!("shards/departures-{n}"), departures, 30.0));
    }
    cells.push(cell("cache/off", 10_000.0, 5.0));
    let mut on = cell("cache/on", 25_000.0, 4.0);
    on.cache_hit_ratio = Some(0.9);
    cells.push(on);
    let mut mixed = cell("mixed/open-loop", 2_000.0, 9.0);
    mixed.target_rate = Some(2_000.0);
    mixed.rate_kept = Some(true);
    mixed.config.loop_model = LoopKind::Open;
    cells.push(mixed);
    for (keeping, rps, committed, p99, lag) in [
        ("off", 4_000.0, 3_000.0, 20.0, None),
        ("async", 3_000.0, 2_400.0, 30.0, Some((40, 300))),
        ("inline", 1_000.0, 800.0, 60.0, Some((2, 20))),
        ("inline-board", 1_500.0, 1_200.0, 50.0, Some((5, 40))),
        ("inline-hours", 2_500.0, 2_000.0, 35.0, Some((20, 200))),
        ("inline-carrier", 2_800.0, 2_200.0, 32.0, Some((30, 250))),
    ] {
        let mut c = cell(&format!("projections/writes-{keeping}"), rps, p99);
        c.acknowledged_writes_per_s = Some(committed);
        c.projection_lag =
            lag.map(|(p50, p99)| ProjectionLag { samples: 250, p50_events: p50, p99_events: p99, max_events: p99 * 2 });
        cells.push(c);
    }
    let mut mix = cell("projections/mix-async", 5_000.0, 12.0);
    mix.acknowledged_writes_per_s = Some(240.0);
    mix.projection_lag = Some(ProjectionLag { samples: 250, p50_events: 6, p99_events: 40, max_events: 55 });
    cells.push(mix);
    cells.push(cell("projections/scatter-16", 300.0, 30.0));
    cells.push(cell("projections/board-16", 1_200.0, 7.0));
    for (signing, rps) in [
        ("off", 30_000.0),
        ("rs256", 20_000.0),
        ("es256", 16_000.0),
        ("eddsa", 18_000.0),
        ("hs256", 28_000.0),
        ("es256-cached", 29_000.0),
        ("h1-tls", 24_000.0),
        ("h2c", 36_000.0),
        ("h2-tls", 30_000.0),
        ("writes-clear", 3_000.0),
        ("writes-sealed", 2_800.0),
        ("writes-audit-flight", 2_500.0),
        ("writes-audit-shard", 2_450.0),
        ("writes-audit-global", 1_900.0),
    ] {
        cells.push(cell(&format!("security/{signing}"), rps, 5.0));
    }
    let mut run = RunData {
        schema_version: RUN_SCHEMA_VERSION,
        started_at: "2026-11-27T06:00:00Z".into(),
        elapsed_s: 120.0,
        preset: Preset::Default,
        parts: Part::ALL.to_vec(),
        provenance: Provenance {
            flightbench_version: "0.1.0".into(),
            commit: "abc1234".into(),
            toolchain: "rustc 1.95.0".into(),
            build: "release".into(),
            host: "bench".into(),
            os: "linux".into(),
            cpu: "AMD EPYC".into(),
            cores: 2,
            dataset: DatasetInfo {
                seed: 42,
                flights: 100_000,
                days: 30,
                shards: 8,
                events: 300_000,
                backend: "sqlite".into(),
                sqlite_pragmas: vec![("journal_mode".into(), "WAL".into())],
            },
        },
        settings: RunSettings {
            warmup_s: 0.5,
            measure_s: 4.0,
            server_threads: 2,
            load_threads: 2,
            placement: Placement { pinned: false, server_cores: Vec::new(), load_cores: Vec::new() },
            h1_connections: 64,
            h2_connections: 16,
            h2_streams: 16,
            compression_min_bytes: 1_024,
            page_cache_prewarmed: true,
            rounds: 5,
            noise_threshold: 0.1,
            noise_retries: 2,
        },
        headlines: Vec::new(),
        cells,
        profile: Some(ProfileSummary {
            cell: CellId::Protocol(Wire::H2c),
            svg: "flamegraph.svg".into(),
            folded: "flamegraph.folded".into(),
            samples: 500,
            frequency_hz: 99,
            top_frames: vec![("memcpy_avx".into(), 0.12), ("hyper::parse".into(), 0.05)],
        }),
        rebuilds: [(100_000, 300_000), (1_000_000, 3_000_000)]
            .into_iter()
            .flat_map(|(flights, events)| {
                crate::projection::ReadModel::ALL.iter().zip([100_000.0, 400_000.0, 700_000.0]).map(
                    move |(&model, rate)| RebuildRate {
                        model,
                        flights,
                        events,
                        seconds: events as f64 / rate,
                        events_per_s: rate,
                    },
                )
            })
            .collect(),
        resharding: Some(resharding()),
        topology: Some(topology()),
    };
    run.headlines = super::super::headline::headlines(&run);
    run
}

/// 100,000 flights from 8 to 16 shards at 2,000 req/s offered: three windows before,
/// five during (one slower), three after, no write lost.
pub fn resharding() -> crate::workbench::resharding::Resharding {
    use crate::workbench::resharding::{Phase, Resharding, Window};
    let phases = [Phase::Before; 3].into_iter().chain([Phase::During; 5]).chain([Phase::After; 3]);
    let windows = phases
        .enumerate()
        .map(|(i, phase)| Window {
            phase,
            start_s: i as f64 * 2.1,
            requests_per_s: if i == 5 { 1_900.0 } else { 2_000.0 },
            p99_ms: match phase {
                Phase::Before => 5.0,
                Phase::During => 12.0 + i as f64,
                Phase::After => 8.0,
            },
            errors: 0,
            unexpected_statuses: 0,
        })
        .collect();
    Resharding {
        flights: 100_000,
        capacity: 4_000.0,
        offered_rate: 2_000.0,
        window_s: 2.0,
        nice: 19,
        windows,
        reshard: crate::reshard::ReshardReport {
            backend: "sqlite".into(),
            from: 8,
            to: 16,
            layout: 2,
            flights: 100_000,
            events_copied: 300_000,
            copy_seconds: 4.0,
            catch_up_rounds: 2,
            events_caught_up: 600,
            catch_up_seconds: 0.1,
            read_models_seconds: 3.0,
            flights_verified: 100_000,
            verify_seconds: 2.5,
            pause_ms: 120.0,
            seconds: 10.5,
            ..Default::default()
        },
        acknowledged_writes: 1_200,
        writes_found: 1_200,
        writes_failed: 0,
    }
}

use crate::bus::bench::{PublishMode, PublishRate};
use crate::workbench::topology::{self, Notifications, Shape, ShapeFigures, Topology};

fn topology_shape(shape: Shape, capacity: f64, cpu: f64, p50: f64, fresh_ms: f64) -> ShapeFigures {
    let latency = topology::Latency { count: 100, p50_ms: p50, p99_ms: p50 * 4.0 };
    let fresh = topology::Freshness {
        writes: 100,
        p50_ms: fresh_ms,
        p99_ms: fresh_ms * 2.0,
        max_ms: fresh_ms * 3.0,
        stale: 0,
        failed: 0,
    };
    ShapeFigures {
        shape,
        processes: vec!["all".into()],
        capacity,
        cpu_us_per_request: Some(cpu),
        reads: latency,
        writes: latency,
        achieved_rate: 500.0,
        errors: 0,
        unexpected_statuses: 0,
        fresh: Some(fresh),
    }
}

pub fn topology() -> Topology {
    Topology {
        flights: 20_000,
        offered_rate: 500.0,
        shapes: vec![
            topology_shape(Shape::Monolith, 2000.0, 300.0, 1.0, 0.5),
            topology_shape(Shape::MonolithBehindGateway, 1000.0, 600.0, 1.5, 1.0),
            topology_shape(Shape::Split, 800.0, 900.0, 2.0, 4.0),
        ],
        notifications: Some(Notifications {
            acknowledged: 40,
            delivered: 40,
            p50_ms: 30.0,
            p99_ms: 90.0,
            deliveries_per_s: 25.0,
        }),
        confirms: vec![
            PublishRate { mode: PublishMode::PerMessage, messages: 1000, seconds: 1.0, per_second: 1000.0 },
            PublishRate { mode: PublishMode::Pipelined, messages: 1000, seconds: 0.2, per_second: 5000.0 },
            PublishRate { mode: PublishMode::Unconfirmed, messages: 1000, seconds: 0.1, per_second: 10000.0 },
        ],
    }
}

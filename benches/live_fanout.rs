//! The live feed's fan-out: many `/live` subscribers on loopback, a steady stream of
//! delay reports through the API, and how long each report takes to reach each
//! subscriber (from the moment its POST was sent to the moment a subscriber has read
//! the change: the append, the runner's batch, the broadcast and the socket).
//!
//! `cargo bench --bench live_fanout`; `SUBSCRIBERS` (1,000), `RATE` (writes/s, 100),
//! `SECONDS` (10) and `FLIGHTS` (20,000) change the shape. Everything runs in this
//! process: the server on one runtime thread, the runner on another, the subscribers
//! and the writer on a third, so on a 2-core machine they share the cores, as they
//! would for a dashboard server and its viewers on one host. Figures go to stdout
//! for `results/projections.md`.

use flightbench::dataset::DatasetSpec;
use flightbench::domain::UtcTime;
use flightbench::harness::LocalServer;
use flightbench::http::ServerConfig;
use flightbench::projection::live::{LiveFeed, LiveUpdate};
use flightbench::projection::{Projector, ProjectorConfig};
use flightbench::routing::ShardCount;
use flightbench::seed::{SeedConfig, SeedTarget, seed};
use flightbench::store::{Durability, QueryPath, Store, StoreConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// When each (flight, version) was sent.
type Sent = Arc<Mutex<HashMap<(i64, i64), Instant>>>;

/// Reads one subscriber's stream, recording each change's latency in microseconds.
async fn subscriber(addr: SocketAddr, airports: String, sent: Sent, connected: Arc<AtomicU64>) -> Vec<u64> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /live?airport={airports} HTTP/1.1\r\nhost: bench\r\naccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut lines = BufReader::new(stream).lines();
    let mut latencies = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.starts_with("event: subscribed") {
            connected.fetch_add(1, Ordering::Relaxed);
        } else if line.starts_with("event: closed") || line.starts_with("event: dropped") {
            if line.contains("dropped") {
                eprintln!("a subscriber was dropped");
            }
            break;
        } else if let Some(data) = line.strip_prefix("data: ") {
            let Ok(update) = serde_json::from_str::<LiveUpdate>(data) else { continue };
            let key = (update.event.flight_id.get(), update.event.version);
            let at = sent.lock().unwrap().get(&key).copied();
            if let Some(at) = at {
                latencies.push(at.elapsed().as_micros() as u64);
            }
        }
    }
    latencies
}

/// POSTs a revision to one of `flights` every 1/`rate` s for `seconds`, over one
/// keep-alive connection per flight in turn; returns the writes acknowledged.
async fn writer(addr: SocketAddr, mut flights: Vec<(i64, i64)>, rate: u64, seconds: u64, sent: Sent) -> u64 {
    let mut stream = BufReader::new(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut acknowledged = 0;
    for i in 0..rate * seconds {
        tokio::time::sleep_until(start + every * i as u32).await;
        let count = flights.len();
        let (id, version) = &mut flights[i as usize % count];
        let body = format!(r#"{{"kind":"revised","delay_minutes":{},"reason":"fan-out bench"}}"#, 10 + i % 120);
        let request = format!(
            "POST /flights/{id}/delays HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\nif-match: \"{version}\"\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        sent.lock().unwrap().insert((*id, *version + 1), Instant::now());
        stream.get_mut().write_all(request.as_bytes()).await.expect("write");
        let mut status = String::new();
        stream.read_line(&mut status).await.expect("status");
        let mut length = 0;
        loop {
            let mut header = String::new();
            stream.read_line(&mut header).await.expect("header");
            if header == "\r\n" {
                break;
            }
            if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.expect("body");
        if status.starts_with("HTTP/1.1 201") {
            acknowledged += 1;
            *version += 1;
        } else {
            eprintln!("write to flight {id} answered {status}");
        }
    }
    acknowledged
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo test --benches` lists benches; nothing to list here.
        return;
    }
    // `cargo bench` passes --bench; `cargo test` (every bench once, on small data) does
    // not, and then every change must still reach every subscriber.
    let measuring = std::env::args().any(|a| a == "--bench");
    let (subscribers, rate, seconds, flights) = if measuring {
        (env("SUBSCRIBERS", 1_000), env("RATE", 100), env("SECONDS", 10), env("FLIGHTS", 20_000))
    } else {
        (20, 50, 1, 2_000)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let spec = DatasetSpec::new(7, flights, 30, UtcTime::parse("2026-12-01").unwrap()).unwrap();
        let config = SeedConfig {
            dir: dir.path().to_owned(),
            spec,
            shards: ShardCount::new(8).unwrap(),
            target: SeedTarget::Sqlite { durability: Durability::Normal },
            force: false,
            progress: false,
        };
        seed(&config).await.expect("seed");
        let store = Arc::new(Store::open(dir.path(), &StoreConfig::default()).await.unwrap());
        let airports: Vec<String> = store.manifest().airports.iter().take(6).cloned().collect();
        // Flights from those airports that still take events.
        let mut open = Vec::new();
        for id in 1..=flights as i64 {
            let view = store.flight(QueryPath::Raw, flightbench::domain::FlightId::new(id).unwrap()).await.unwrap();
            if airports.contains(&view.flight.origin.as_str().to_owned()) && !view.status.state.is_terminal() {
                open.push((id, view.status.version));
            }
            if open.len() == 200 {
                break;
            }
        }

        let feed = LiveFeed::new(100_000);
        let server = LocalServer::start(store.clone(), ServerConfig::default(), 1, &[]).expect("server");
        server.state.serve_live(feed.clone());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let projector = Projector::new(store.clone(), ProjectorConfig::default()).with_feed(feed.clone());
        server.state.report_projector(projector.stats());
        let runner = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(projector.run(stopped));
        });

        let sent: Sent = Arc::default();
        let connected = Arc::new(AtomicU64::new(0));
        let before = rss_kib();
        let list = airports.join(",");
        let readers: Vec<_> = (0..subscribers)
            .map(|_| tokio::spawn(subscriber(server.addr, list.clone(), sent.clone(), connected.clone())))
            .collect();
        let waited = Instant::now();
        while connected.load(Ordering::Relaxed) < subscribers {
            assert!(waited.elapsed() < Duration::from_secs(60), "only {connected:?} subscribers connected in 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let connect_s = waited.elapsed().as_secs_f64();
        let with_subscribers = rss_kib();

        let cpu_before = flightbench::machine::CpuTime::of_process();
        let written = writer(server.addr, open, rate, seconds, sent.clone()).await;
        // Let the last changes arrive, then end every stream.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cpu = flightbench::machine::CpuTime::of_process().zip(cpu_before).map(|(a, b)| (a - b).total_s());
        feed.close();
        let mut histogram = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        let mut delivered = 0u64;
        for reader in readers {
            for latency in reader.await.unwrap() {
                histogram.record(latency).unwrap();
                delivered += 1;
            }
        }
        let _ = stop.send(true);
        runner.join().unwrap();
        server.stop().await.unwrap();
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e3;
        println!(
            "live fan-out: {subscribers} subscribers to {} airports (connected in {connect_s:.1} s, {:.1} KiB each), {written} writes at {rate}/s for {seconds} s",
            airports.len(),
            (with_subscribers.saturating_sub(before)) as f64 / subscribers as f64,
        );
        println!(
            "  delivered {delivered} of {} ({:.4}), dropped {}; POST sent → subscriber read: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            written * subscribers,
            delivered as f64 / (written * subscribers).max(1) as f64,
            feed.stats().dropped.load(Ordering::Relaxed),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            histogram.max() as f64 / 1e3,
        );
        if !measuring {
            assert_eq!(delivered, written * subscribers, "changes lost between the writes and the subscribers");
        }
        if let Some(cpu) = cpu {
            println!(
                "  process CPU {cpu:.1} s over {seconds} s of writes: {:.1} µs per delivered change",
                cpu * 1e6 / delivered.max(1) as f64
            );
        }
    });
}

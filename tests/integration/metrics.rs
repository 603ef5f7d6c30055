//! `GET /metrics`: the counts match what was served, `promtool check metrics` accepts
//! the output, a real Prometheus scrapes it, and the alert rules and the Grafana
//! dashboard name only metrics the server exports.

use crate::app::spawn_app;
use crate::client::{Proto, get, post_delay, send, try_send};
use crate::helpers::{Kind, dataset, spec};
use flightbench::http::ServerConfig;
use http::StatusCode;
use http_body_util::Full;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// `promtool` or `prometheus`, which scripts/test.sh installs (Debian's `prometheus`).
pub fn tool(name: &str) -> &str {
    let found = std::process::Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "{name} is not installed: `apt-get install prometheus` (scripts/test.sh does it)");
    name
}

/// The Prometheus text exposition as `series → value`.
pub fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {l:?}"));
            (series.to_owned(), value.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")))
        })
        .collect()
}

/// `promtool check metrics` passes `text` (lint warnings included).
pub fn promtool_accepts(text: &str) {
    let mut promtool = std::process::Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

pub async fn scrape(addr: SocketAddr) -> String {
    let reply = send(addr, Proto::H1, get("/metrics").body(Full::default()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some(flightbench::http::PROMETHEUS_TEXT));
    String::from_utf8(reply.body.to_vec()).unwrap()
}

fn requests(route: &str, method: &str, status: &str, protocol: &str) -> String {
    format!(
        r#"flightbench_http_request_duration_seconds_count{{route="{route}",method="{method}",status="{status}",protocol="{protocol}"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_was_served_and_promtool_accepts_them() {
    let ds = dataset(Kind::Sqlite, spec(41, 2_000, 10), 2).await;
    let app = spawn_app(&ds, ServerConfig::default(), None).await;
    let addr = app.addr;
    let plain = |uri: &str| get(uri).body(Full::default()).unwrap();
    for id in 1..=3 {
        assert_eq!(send(addr, Proto::H1, plain(&format!("/flights/{id}"))).await.status, StatusCode::OK);
    }
    for _ in 0..2 {
        assert_eq!(send(addr, Proto::H2c, plain("/flights/4")).await.status, StatusCode::OK);
    }
    assert_eq!(send(addr, Proto::H1, plain("/flights/999999")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(send(addr, Proto::H1, plain("/no/such/route")).await.status, StatusCode::NOT_FOUND);
    let window = "from=2026-12-01T00:00:00Z&to=2026-12-05T00:00:00Z";
    let departures = get(&format!("/airports/ATL/departures?{window}&limit=200"))
        .header("accept-encoding", "br")
        .body(Full::default())
        .unwrap();
    let departures = send(addr, Proto::H1, departures).await;
    assert_eq!((departures.status, departures.header("content-encoding")), (StatusCode::OK, Some("br")));
    let version = send(addr, Proto::H1, plain("/flights/5")).await.header("etag").unwrap().to_owned();
    let write = send(addr, Proto::H1, post_delay(5, Some(&version), r#"{"kind":"reported","delay_minutes":15}"#)).await;
    assert_eq!(write.status, StatusCode::CREATED, "{:?}", write.body);

    let text = scrape(addr).await;
    let samples = samples(&text);
    let value = |series: &str| *samples.get(series).unwrap_or_else(|| panic!("{series} missing from:\n{text}"));
    // 1..=3 and 5 over HTTP/1.1, 4 twice over h2c.
    assert_eq!(value(&requests("/flights/{id}", "GET", "2xx", "http/1.1")), 4.0);
    assert_eq!(value(&requests("/flights/{id}", "GET", "2xx", "h2")), 2.0);
    assert_eq!(value(&requests("/flights/{id}", "GET", "4xx", "http/1.1")), 1.0);
    assert_eq!(value(&requests("unmatched", "GET", "4xx", "http/1.1")), 1.0);
    assert_eq!(value(&requests("/airports/{code}/departures", "GET", "2xx", "http/1.1")), 1.0);
    assert_eq!(value(&requests("/flights/{id}/delays", "POST", "2xx", "http/1.1")), 1.0);
    assert!(!text.contains("/flights/1\"") && !text.contains("ATL"), "raw paths never become labels");
    // The departures body was compressed with br: sent is smaller than before.
    let (sent, before) = (
        value(r#"flightbench_http_response_sent_bytes_total{encoding="br"}"#),
        value(r#"flightbench_http_response_uncompressed_bytes_total{encoding="br"}"#),
    );
    assert!(sent > 0.0 && sent == departures.body.len() as f64 && sent < before, "br {sent} of {before}");
    // Departures scatter to both shards; the write and the reads went to their owners.
    for shard in 0..2 {
        let series =
            format!(r#"flightbench_store_query_duration_seconds_count{{op="departures",path="raw",shard="{shard}"}}"#);
        assert_eq!(value(&series), 1.0);
    }
    let appends: f64 = samples
        .iter()
        .filter(|(k, _)| k.starts_with(r#"flightbench_store_query_duration_seconds_count{op="append""#))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(appends, 1.0);
    // Flights 1, 2, 3, 4, 999999 and 5 missed the cache; the second read of 4 hit.
    assert_eq!(
        (value("flightbench_flight_cache_hits_total"), value("flightbench_flight_cache_misses_total")),
        (1.0, 6.0)
    );
    assert_eq!(value("flightbench_http_requests_in_flight"), 1.0, "the scrape itself");
    // The server runs in this test's process: its CPU so far, read at the scrape, is
    // above zero and no more than the process has used by now.
    let cpu = value("flightbench_process_cpu_seconds_total");
    let now = flightbench::machine::CpuTime::of_process().unwrap().total_s();
    assert!(cpu > 0.0 && cpu <= now, "process CPU {cpu} s at the scrape, {now} s now");
    for shard in 0..2 {
        assert_eq!(value(&format!(r#"flightbench_shard_ready{{shard="{shard}"}}"#)), 1.0);
        assert_eq!(value(&format!(r#"flightbench_projection_lag_events{{shard="{shard}"}}"#)), 0.0);
        assert_eq!(value(&format!(r#"flightbench_pool_max_connections{{shard="{shard}",pool="sqlx"}}"#)), 4.0);
    }
    assert_eq!(value("flightbench_http_load_shed_total"), 0.0);

    promtool_accepts(&text);

    // Prometheus asks for OpenMetrics and gets it.
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let openmetrics =
        send(addr, Proto::H1, get("/metrics").header("accept", accept).body(Full::default()).unwrap()).await;
    assert_eq!(openmetrics.header("content-type"), Some(flightbench::http::OPENMETRICS));
    assert!(String::from_utf8_lossy(&openmetrics.body).ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_requests_are_counted_and_metrics_can_be_off() {
    let ds = dataset(Kind::Sqlite, spec(42, 2_000, 10), 2).await;
    let app = spawn_app(&ds, ServerConfig { max_in_flight: 1, ..ServerConfig::default() }, None).await;
    let addr = app.addr;
    // Concurrent scatter-gathers on the sqlx path (which awaits its worker threads)
    // against one permit: some are shed. Repeat until at least one is.
    let mut shed = 0;
    for _ in 0..20 {
        let bursts = (0..32).map(|_| {
            let request = get("/airports/ATL/departures?from=2026-12-01T00:00:00Z&to=2026-12-09T00:00:00Z")
                .header("x-query-path", "prepared")
                .body(Full::default())
                .unwrap();
            tokio::spawn(async move { send(addr, Proto::H1, request).await.status })
        });
        for status in futures_util::future::join_all(bursts).await {
            match status.unwrap() {
                StatusCode::OK => {}
                StatusCode::SERVICE_UNAVAILABLE => shed += 1,
                other => panic!("unexpected {other}"),
            }
        }
        if shed > 0 {
            break;
        }
    }
    assert!(shed > 0, "no request was shed with one permit and 32 at once");
    let samples = samples(&scrape(addr).await);
    assert_eq!(samples["flightbench_http_load_shed_total"], f64::from(shed));
    assert_eq!(samples[&requests("/airports/{code}/departures", "GET", "5xx", "http/1.1")], f64::from(shed));

    let ds = dataset(Kind::Sqlite, spec(43, 500, 10), 1).await;
    let app = spawn_app(&ds, ServerConfig { metrics: false, ..ServerConfig::default() }, None).await;
    let addr = app.addr;
    let reply = send(addr, Proto::H1, get("/metrics").body(Full::default()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

/// A free loopback port (bound and released: a small window for another process).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn prometheus_value(prometheus: SocketAddr, query: &str) -> Option<f64> {
    let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let request = get(&format!("/api/v1/query?query={encoded}")).body(Full::default()).unwrap();
    let reply = try_send(prometheus, Proto::H1, request).await.ok()?;
    let json: serde_json::Value = serde_json::from_slice(&reply.body).ok()?;
    json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

async fn wait_for_value(prometheus: SocketAddr, query: &str, at_least: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(value) = prometheus_value(prometheus, query).await
            && value >= at_least
        {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "Prometheus never saw {query} reach {at_least}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_server() {
    let ds = dataset(Kind::Sqlite, spec(44, 1_000, 10), 2).await;
    let app = spawn_app(&ds, ServerConfig::default(), None).await;
    let addr = app.addr;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: flightbench\n    static_configs:\n      - targets: [\"{addr}\"]\n"
        ),
    )
    .unwrap();
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _prometheus = tokio::process::Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let query = r#"sum(flightbench_http_request_duration_seconds_count{route="/flights/{id}"})"#;
    for id in 1..=5 {
        send(addr, Proto::H1, get(&format!("/flights/{id}")).body(Full::default()).unwrap()).await;
    }
    let first = wait_for_value(web, query, 5.0).await;
    for id in 6..=15 {
        send(addr, Proto::H1, get(&format!("/flights/{id}")).body(Full::default()).unwrap()).await;
    }
    let second = wait_for_value(web, query, first + 10.0).await;
    assert!(second > first, "the counter increased in Prometheus: {first} → {second}");
    assert_eq!(prometheus_value(web, r#"up{job="flightbench"}"#).await, Some(1.0));
}

/// Every `flightbench_*` family an expression names.
fn families_named(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("flightbench_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_pass_their_tests_and_dashboards_name_real_metrics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = std::process::Command::new(tool("promtool")).args(&args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert has a `for:` and a runbook that exists.
    let alerts = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let runbook = std::fs::read_to_string(dir.join("runbook.md")).unwrap().to_lowercase();
    let rules = alerts.matches("- alert: ").count();
    assert_eq!(rules, 5);
    assert_eq!(alerts.matches("\n        for: ").count(), rules);
    for name in alerts.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(alerts.contains(&format!("runbook.md#{}\"", name.to_lowercase())), "{name} has a runbook link");
        assert!(runbook.contains(&format!("## {}", name.to_lowercase())), "runbook.md has a section for {name}");
    }

    // The families a live server exports (with a cache, so its metrics are there).
    let ds = dataset(Kind::Sqlite, spec(45, 500, 10), 2).await;
    let app = spawn_app(&ds, ServerConfig::default(), None).await;
    let addr = app.addr;
    send(addr, Proto::H1, get("/flights/1").body(Full::default()).unwrap()).await;
    let text = scrape(addr).await;
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .flat_map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            match kind {
                "histogram" => vec![format!("{name}_bucket"), format!("{name}_count"), format!("{name}_sum")],
                _ => vec![name.to_owned()],
            }
        })
        .collect();
    let dashboard =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/grafana/flightbench.json"))
            .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut exprs = String::new();
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push_str(target["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    assert!(panels.len() >= 10, "a dashboard with the panels a load test needs");
    for (source, text) in [("alerts.yml", &alerts), ("flightbench.json", &exprs)] {
        let named = families_named(text);
        assert!(!named.is_empty());
        let unknown: Vec<_> = named.difference(&exported).collect();
        assert!(unknown.is_empty(), "{source} names metrics the server does not export: {unknown:?}");
    }
}

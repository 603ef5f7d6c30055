//! The gateway (`serve --role gateway`) as a process in front of real services and a
//! test destination that echoes what it receives: routing by the services' split,
//! forwarding headers, spreading reads over two query instances, no failed read when
//! one is SIGKILLed (retried elsewhere, then taken out), a reload under load that
//! drops nothing, and 502, 504 and 413 problems naming the route.

use crate::app::{ServeProcess, address_in};
use crate::client::{Proto, get, post_delay, send, try_send};
use crate::helpers::{Kind, dataset, spec};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// An HTTP/2 (prior knowledge) destination answering every request with its
/// method, path and headers as JSON; `/slow/…` after 3 s.
async fn echo_destination() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service = service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                    if request.uri().path().starts_with("/slow/") {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                    let headers: serde_json::Map<String, serde_json::Value> = request
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().into()))
                        .collect();
                    let echo = serde_json::json!({
                        "method": request.method().as_str(),
                        "path": request.uri().path(),
                        "version": format!("{:?}", request.version()),
                        "headers": headers,
                    });
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(echo.to_string()))))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// `serve --role gateway` on a free port with `config`; its address.
async fn start_gateway(config: &Path) -> (tokio::process::Child, SocketAddr) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["serve", "--role", "gateway", "--addr", "127.0.0.1:0", "--no-admin", "--runtime", "multi-thread"])
        .arg("--gateway-config")
        .arg(config)
        .args(["--max-body-bytes", "4096"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(first.starts_with("listening on http://"), "{first}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, address_in(&first))
}

fn write_config(path: &Path, query: &[SocketAddr], command: SocketAddr, echo: SocketAddr, closed: SocketAddr) {
    let urls = |addrs: &[SocketAddr]| addrs.iter().map(|a| format!("http://{a}")).collect::<Vec<_>>();
    let config = serde_json::json!({
        "services": {
            "query": { "destinations": urls(query) },
            "command": { "destinations": urls(&[command]) },
            "echo": { "destinations": urls(&[echo]), "timeout_ms": 500 },
            "gone": { "destinations": urls(&[closed]) }
        },
        "routes": [
            { "prefix": "/echo/", "service": "echo" },
            { "prefix": "/slow/", "service": "echo" },
            { "prefix": "/gone/", "service": "gone" }
        ],
        "health": { "interval_ms": 200, "timeout_ms": 500, "eject_after": 2 }
    });
    // Written whole, then renamed: the gateway never reads half a file.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

fn get_req(path: &str) -> http::Request<Full<Bytes>> {
    get(path).body(Full::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_routes_forwards_balances_survives_a_kill_and_reloads() {
    // The command service's relay connects at start: not while a test restarts the broker.
    let _broker = crate::bus::BROKER.lock().await;
    let ds = dataset(Kind::Sqlite, spec(51, 300, 10), 2).await;
    let q1 = ServeProcess::start(ds.dir(), &[], &["--role", "query", "--no-admin", "--cache", "off"], false).await;
    let q2 = ServeProcess::start(ds.dir(), &[], &["--role", "query", "--no-admin", "--cache", "off"], false).await;
    // Its own exchange: the relay must not publish to the machine's default one.
    let exchange = format!("fbtest.gateway.{}", std::process::id());
    let command_args = ["--role", "command", "--no-admin", "--bus-exchange", &exchange];
    let command = ServeProcess::start(ds.dir(), &[], &command_args, false).await;
    let echo = echo_destination().await;
    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.json");
    write_config(&config, &[q1.api, q2.api], command.api, echo, closed);
    let (_gateway, gw) = start_gateway(&config).await;

    // Reads and writes reach their services, over HTTP/1.1 and h2c in front.
    let id = ds.writable_flights(1)[0];
    for proto in [Proto::H1, Proto::H2c] {
        let through = send(gw, proto, get_req(&format!("/flights/{id}"))).await;
        let direct = send(q1.api, Proto::H1, get_req(&format!("/flights/{id}"))).await;
        assert_eq!(through.status, 200);
        assert_eq!(through.json(), direct.json());
    }
    let version =
        send(gw, Proto::H1, get_req(&format!("/flights/{id}"))).await.json()["status"]["version"].as_i64().unwrap();
    let body = r#"{"kind":"revised","delay_minutes":12,"reason":"gateway"}"#;
    let written = send(gw, Proto::H2c, post_delay(id.get(), Some(&format!("\"{version}\"")), body)).await;
    assert_eq!(written.status, 201, "{:?}", written.body);

    // What the service receives: forwarding headers added, hop-by-hop ones gone,
    // Authorization and traceparent passed through, HTTP/2 behind.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = get("/echo/x?y=1")
        .header("authorization", "Bearer abc")
        .header("traceparent", traceparent)
        .header("x-forwarded-for", "203.0.113.7")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .body(Full::default())
        .unwrap();
    let echoed = send(gw, Proto::H1, request).await.json();
    let headers = &echoed["headers"];
    assert_eq!(echoed["path"], "/echo/x");
    assert_eq!(echoed["version"], "HTTP/2.0");
    assert_eq!(headers["authorization"], "Bearer abc");
    assert_eq!(headers["traceparent"], traceparent);
    assert_eq!(headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "localhost");
    assert_eq!(headers["forwarded"], "for=127.0.0.1;proto=http;host=\"localhost\"");
    for gone in ["connection", "x-drop-me", "keep-alive", "host"] {
        assert!(headers.get(gone).is_none(), "{gone} was forwarded: {headers}");
    }

    // Clear errors, never a hang: 502 and 504 name the route; 413 before forwarding.
    let unreachable = send(gw, Proto::H1, get_req("/gone/x")).await;
    assert_eq!(unreachable.status, 502);
    assert!(
        unreachable.json()["detail"].as_str().unwrap().starts_with("route GET /gone/* → gone: "),
        "{:?}",
        unreachable.json()
    );
    let started = Instant::now();
    let slow = send(gw, Proto::H1, get_req("/slow/x")).await;
    assert_eq!(slow.status, 504);
    assert_eq!(slow.json()["detail"], "route GET /slow/* → echo: no answer within 500 ms");
    assert!(started.elapsed() < Duration::from_secs(2), "the time limit held: {:?}", started.elapsed());
    let big = format!(r#"{{"kind":"revised","delay_minutes":12,"reason":"{}"}}"#, "x".repeat(5_000));
    let refused = send(gw, Proto::H1, post_delay(id.get(), Some("\"1\""), &big)).await;
    assert_eq!(refused.status, 413);

    // Reads spread over both query instances.
    let before = [requests_seen(q1.api).await, requests_seen(q2.api).await];
    for _ in 0..40 {
        assert_eq!(send(gw, Proto::H1, get_req(&format!("/flights/{id}"))).await.status, 200);
    }
    let after = [requests_seen(q1.api).await, requests_seen(q2.api).await];
    assert!(after[0] > before[0] + 5 && after[1] > before[1] + 5, "reads not spread: {before:?} → {after:?}");

    // SIGKILL one query instance under a read load: no read fails (retried on the
    // other), and the gateway takes it out.
    let failures = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (failures, reads, stop) = (failures.clone(), reads.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match try_send(gw, Proto::H1, get_req(&format!("/flights/{id}"))).await {
                    Ok(r) if r.status == 200 => {}
                    other => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("read failed: {:?}", other.map(|r| (r.status, r.body)));
                    }
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut q1 = q1;
    q1.child.start_kill().unwrap();
    q1.child.wait().await.unwrap();
    let start = Instant::now();
    loop {
        let ready = send(gw, Proto::H1, get_req("/readyz")).await.json();
        if ready["services"]["query"]["healthy"] == 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the dead instance was not taken out: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A replacement instance comes up elsewhere; the file names it; reads continue.
    let q3 = ServeProcess::start(ds.dir(), &[], &["--role", "query", "--no-admin", "--cache", "off"], false).await;
    write_config(&config, &[q2.api, q3.api], command.api, echo, closed);
    let seen_before = requests_seen(q3.api).await;
    let start = Instant::now();
    while requests_seen(q3.api).await < seen_before + 5 {
        assert!(start.elapsed() < Duration::from_secs(10), "the reloaded destination got no reads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    loader.await.unwrap();
    assert_eq!(failures.load(Ordering::Relaxed), 0, "reads failed across the kill and the reload");
    assert!(reads.load(Ordering::Relaxed) > 50, "the load ran: {} reads", reads.load(Ordering::Relaxed));
    let ready = send(gw, Proto::H1, get_req("/readyz")).await.json();
    assert_eq!(ready["services"]["query"], serde_json::json!({ "healthy": 2, "destinations": 2 }));

    // The gateway's own /metrics counts what it did, and promtool accepts them.
    let text = crate::metrics::scrape(gw).await;
    let samples = crate::metrics::samples(&text);
    let value = |series: &str| *samples.get(series).unwrap_or_else(|| panic!("{series} missing from\n{text}"));
    let duration = |service: &str, status: &str| {
        value(&format!(
            r#"flightbench_gateway_request_duration_seconds_count{{service="{service}",status="{status}"}}"#
        ))
    };
    assert_eq!(duration("gone", "5xx"), 1.0, "the 502");
    assert_eq!(duration("echo", "5xx"), 1.0, "the 504");
    assert_eq!(duration("command", "2xx"), 1.0, "the write");
    assert_eq!(duration("command", "4xx"), 1.0, "the 413");
    let reads = 3.0 + 40.0 + reads.load(Ordering::Relaxed) as f64;
    assert!(duration("query", "2xx") >= reads, "{} query reads counted, {reads} made", duration("query", "2xx"));
    assert_eq!(value("flightbench_gateway_bad_gateway_total"), 1.0);
    assert_eq!(value("flightbench_gateway_timeouts_total"), 1.0);
    assert!(value("flightbench_gateway_reloads_total") >= 1.0);
    for instance in [q2.api, q3.api] {
        let labels = format!(r#"{{service="query",destination="http://{instance}"}}"#);
        assert_eq!(value(&format!("flightbench_gateway_destination_healthy{labels}")), 1.0);
        assert!(value(&format!("flightbench_gateway_destination_requests_total{labels}")) > 0.0);
    }
    let closed_labels = format!(r#"{{service="gone",destination="http://{closed}"}}"#);
    assert_eq!(value(&format!("flightbench_gateway_destination_healthy{closed_labels}")), 0.0);
    assert!(value("flightbench_process_cpu_seconds_total") > 0.0);
    crate::metrics::promtool_accepts(&text);
    let post = http::Request::post("/metrics").header("host", "localhost").body(Full::default()).unwrap();
    assert_eq!(send(gw, Proto::H1, post).await.status, 405);
    drop(command);
    let broker = lapin::Connection::connect(flightbench::bus::DEFAULT_URL, Default::default()).await.unwrap();
    let _ = broker.create_channel().await.unwrap().exchange_delete(exchange.as_str().into(), Default::default()).await;
}

/// Requests a service has answered, from its /metrics.
async fn requests_seen(api: SocketAddr) -> u64 {
    let text = send(api, Proto::H1, get_req("/metrics")).await.body;
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.starts_with("flightbench_http_request_duration_seconds_count") && l.contains("/flights/{id}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

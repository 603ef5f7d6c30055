//! The HTTP server, started in-process on port 0 and driven by a real HTTP client over
//! HTTP/1.1 and h2c: every endpoint, every error status, every encoding.

use crate::app::{self, TestApp};
use crate::client::{PROTOS, Proto, Reply, Transport, get, post_delay, send, try_send};
use crate::helpers::{Kind, TestDataset, dataset, spec};
use flightbench::compression::{Encoding, decompress};
use flightbench::domain::{AirportCode, FlightId, Limit, TimeWindow};
use flightbench::http::ServerConfig;
use flightbench::store::QueryPath;
use http::{Request, StatusCode};
use http_body_util::Full;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server in-process over its own 2,000-flight dataset.
struct ApiApp {
    addr: SocketAddr,
    ds: TestDataset,
    server: TestApp,
}

async fn spawn_app(config: ServerConfig) -> ApiApp {
    spawn_app_with(config, None).await
}

async fn spawn_app_with(config: ServerConfig, tls: Option<tokio_rustls::TlsAcceptor>) -> ApiApp {
    let ds = dataset(Kind::Sqlite, spec(31, 2_000, 10), 2).await;
    let server = app::spawn_app(&ds, config, tls).await;
    ApiApp { addr: server.addr, ds, server }
}

impl ApiApp {
    async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

async fn get_json(app: &ApiApp, proto: Proto, uri: &str) -> Reply {
    send(app.addr, proto, get(uri).body(Full::default()).unwrap()).await
}

fn window(ds: &TestDataset, days: i64) -> TimeWindow {
    TimeWindow::new(ds.spec.start, ds.spec.start.plus_seconds(days * 86_400)).unwrap()
}

/// Every read endpoint on every query path through `transport`, compared with the
/// store; then a write and a read after it.
async fn check_endpoints(app: &ApiApp, transport: Transport) {
    let ds = &app.ds;
    let atl = AirportCode::parse("ATL").unwrap();
    let w = window(ds, 2);
    let (from, to) = (w.from.to_string(), w.to.to_string());
    let plain = |uri: &str| get(uri).body(Full::default()).unwrap();
    let health = send(app.addr, transport.clone(), plain("/healthz")).await;
    assert_eq!((health.status, health.json()["status"].as_str()), (StatusCode::OK, Some("ok")));
    let ready = send(app.addr, transport.clone(), plain("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["shards"].as_array().unwrap().len(), 2);

    for &path in QueryPath::ALL {
        let request = |uri: &str| get(uri).header("x-query-path", path.as_str()).body(Full::default()).unwrap();
        let flight = send(app.addr, transport.clone(), request("/flights/17")).await;
        let want = ds.store.flight(QueryPath::Raw, FlightId::new(17).unwrap()).await.unwrap();
        assert_eq!(flight.status, StatusCode::OK);
        assert_eq!(flight.json(), serde_json::to_value(&want).unwrap(), "{path}");
        assert_eq!(flight.header("etag"), Some(format!("\"{}\"", want.status.version).as_str()));
        assert_eq!(flight.header("content-type"), Some("application/json"));

        let events = send(app.addr, transport.clone(), request("/flights/17/events")).await;
        let want = ds.store.events(QueryPath::Raw, FlightId::new(17).unwrap()).await.unwrap();
        assert_eq!(events.json(), serde_json::to_value(&want).unwrap(), "{path}");

        let uri = format!("/airports/ATL/departures?from={from}&to={to}&limit=25");
        let departures = send(app.addr, transport.clone(), request(&uri)).await;
        let want = ds.store.departures(QueryPath::Raw, atl, w, Limit::new(25).unwrap()).await.unwrap();
        assert_eq!(want.len(), 25);
        assert_eq!(departures.json(), serde_json::to_value(&want).unwrap(), "{path}");

        let delays =
            send(app.addr, transport.clone(), request(&format!("/airports/ATL/delays?from={from}&to={to}"))).await;
        let want = ds.store.delay_stats(QueryPath::Raw, atl, w).await.unwrap();
        assert_eq!(delays.json(), serde_json::to_value(&want).unwrap(), "{path}");
    }

    // A write: 201 with the new version as ETag, and a read after the write sees it.
    let id = ds.all_expected().into_iter().find(|v| !v.status.state.is_terminal()).unwrap().flight.id.get();
    let version = send(app.addr, transport.clone(), plain(&format!("/flights/{id}"))).await.json()["status"]["version"]
        .as_i64()
        .unwrap();
    let body = r#"{"kind":"revised","delay_minutes":42,"reason":"crew's rest","cause":"64","occurred_at":"2026-12-02T08:00:00Z"}"#;
    let created = send(app.addr, transport.clone(), post_delay(id, Some(&format!("\"{version}\"")), body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.header("etag"), Some(format!("\"{}\"", version + 1).as_str()));
    assert_eq!(created.header("location"), Some(format!("/flights/{id}/events").as_str()));
    assert_eq!(created.json()["status"]["version"], version + 1);
    let read = send(app.addr, transport.clone(), plain(&format!("/flights/{id}"))).await;
    assert_eq!(read.json()["status"]["delay_minutes"], 42);
    assert_eq!(read.json()["status"]["version"], version + 1);
    // Stored as event schema v2: the code as given, no reporter without authentication.
    let events = send(app.addr, transport, plain(&format!("/flights/{id}/events"))).await.json();
    let last = events.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["schema_version"], &last["cause"], &last["reported_by"], &last["version"]),
        (&serde_json::json!(2), &serde_json::json!("64"), &serde_json::Value::Null, &serde_json::json!(version + 1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_over_h1_and_h2c_matches_the_store() {
    let app = spawn_app(ServerConfig::default()).await;
    for proto in PROTOS {
        check_endpoints(&app, proto.into()).await;
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_over_tls_with_alpn_h2_and_http11() {
    let tls = crate::helpers::test_tls();
    let cert = tls.cert_pem.clone();
    let app = spawn_app_with(ServerConfig::default(), Some(tls.acceptor.clone())).await;
    for (proto, alpn) in [(Proto::H2c, &b"h2"[..]), (Proto::H1, &b"http/1.1"[..])] {
        let transport = Transport::tls(&cert, proto);
        let probe = send(app.addr, transport.clone(), get("/healthz").body(Full::default()).unwrap()).await;
        assert_eq!(probe.alpn.as_deref(), Some(alpn), "ALPN did not settle on {}", String::from_utf8_lossy(alpn));
        check_endpoints(&app, transport).await;
    }
    // A cleartext client on the TLS port gets no HTTP answer.
    assert!(try_send(app.addr, Proto::H1, get("/healthz").body(Full::default()).unwrap()).await.is_err());
    app.shutdown().await;
}

fn assert_problem(reply: &Reply, status: StatusCode, needle: &str) {
    assert_eq!(reply.status, status, "{:?}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    let json = reply.json();
    assert_eq!(json["status"], status.as_u16());
    let detail = json["detail"].as_str().unwrap();
    assert!(detail.contains(needle), "{status}: {detail:?} does not mention {needle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_status_is_a_problem_document() {
    let app = spawn_app(ServerConfig { max_body_bytes: 512, ..ServerConfig::default() }).await;
    let open = app.ds.all_expected().into_iter().find(|v| !v.status.state.is_terminal()).unwrap();
    let terminal = app.ds.all_expected().into_iter().find(|v| v.status.state.is_terminal()).unwrap();
    let (id, version) = (open.flight.id.get(), open.status.version);
    let valid = r#"{"kind":"reported","delay_minutes":5}"#;
    for proto in PROTOS {
        let p = |uri: &'static str| get_json(&app, proto, uri);
        for (uri, needle) in [
            ("/flights/abc", "flight id \"abc\""),
            ("/airports/atl/departures?from=2026-12-01&to=2026-12-02", "airport code"),
            ("/airports/ATL/departures?from=2026-12-02&to=2026-12-01", "inverted"),
            ("/airports/ATL/departures?from=2026-12-01", "\"to\" is required"),
            ("/airports/ATL/departures?from=2026-12-01&to=2026-12-02&limit=0", "limit"),
            ("/airports/ATL/delays?from=2026-12-01&to=2026-12-02&sort=x", "unknown query parameter"),
        ] {
            assert_problem(&p(uri).await, StatusCode::BAD_REQUEST, needle);
        }
        let bad_path =
            send(app.addr, proto, get("/flights/1").header("x-query-path", "turbo").body(Full::default()).unwrap())
                .await;
        assert_problem(&bad_path, StatusCode::BAD_REQUEST, "turbo");
        assert_problem(&p("/flights/999999").await, StatusCode::NOT_FOUND, "flight 999999 not found");
        assert_problem(&p("/nowhere").await, StatusCode::NOT_FOUND, "/nowhere");

        let delete =
            send(app.addr, proto, Request::delete("/flights/1").header("host", "x").body(Full::default()).unwrap())
                .await;
        assert_problem(&delete, StatusCode::METHOD_NOT_ALLOWED, "DELETE");
        assert_eq!(delete.header("allow"), Some("GET"));

        let refused = send(
            app.addr,
            proto,
            get("/flights/1").header("accept-encoding", "identity;q=0, *;q=0").body(Full::default()).unwrap(),
        )
        .await;
        assert_problem(&refused, StatusCode::NOT_ACCEPTABLE, "identity;q=0");

        let stale = send(app.addr, proto, post_delay(id, Some(&format!("\"{}\"", version + 7)), valid)).await;
        assert_problem(&stale, StatusCode::CONFLICT, "version conflict");
        assert_eq!(stale.json()["current_version"], version);

        let big = format!(r#"{{"kind":"reported","delay_minutes":5,"reason":"{}"}}"#, "x".repeat(600));
        assert_problem(
            &send(app.addr, proto, post_delay(id, Some("\"0\""), &big)).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "512-byte",
        );

        let mut text = post_delay(id, Some("\"0\""), valid);
        text.headers_mut().insert("content-type", "text/plain".parse().unwrap());
        assert_problem(&send(app.addr, proto, text).await, StatusCode::UNSUPPORTED_MEDIA_TYPE, "text/plain");

        assert_problem(
            &send(app.addr, proto, post_delay(id, None, valid)).await,
            StatusCode::PRECONDITION_REQUIRED,
            "If-Match",
        );
        assert_problem(
            &send(app.addr, proto, post_delay(id, Some("\"0\""), "{nope")).await,
            StatusCode::BAD_REQUEST,
            "not JSON",
        );

        let spoofed = r#"{"kind":"reported","delay_minutes":5,"reported_by":"admin"}"#;
        assert_problem(
            &send(app.addr, proto, post_delay(id, Some(&format!("\"{version}\"")), spoofed)).await,
            StatusCode::BAD_REQUEST,
            "reported_by is set by the server",
        );
        let bad_code = r#"{"kind":"reported","delay_minutes":5,"cause":"7A"}"#;
        assert_problem(
            &send(app.addr, proto, post_delay(id, Some(&format!("\"{version}\"")), bad_code)).await,
            StatusCode::BAD_REQUEST,
            "not an IATA delay code",
        );

        let (tid, tv) = (terminal.flight.id.get(), terminal.status.version);
        let after_end = send(app.addr, proto, post_delay(tid, Some(&format!("\"{tv}\"")), valid)).await;
        assert_problem(&after_end, StatusCode::UNPROCESSABLE_ENTITY, "already");
    }
    app.shutdown().await;
}

/// A chunked HTTP/1.1 body over the limit, with no Content-Length to refuse it early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_over_the_limit_get_413() {
    let app = spawn_app(ServerConfig { max_body_bytes: 256, ..ServerConfig::default() }).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let chunk = "x".repeat(200);
    let request = format!(
        "POST /flights/1/delays HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nif-match: \"0\"\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut reply)).await.unwrap().unwrap();
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_encoding_decodes_to_the_identity_body() {
    // A low streaming threshold so both the in-memory and streaming encoders run.
    for stream_min_bytes in [usize::MAX, 4_096] {
        let app = spawn_app(ServerConfig { stream_min_bytes, ..ServerConfig::default() }).await;
        let w = window(&app.ds, 3);
        let uri = format!("/airports/ATL/departures?from={}&to={}&limit=300", w.from, w.to);
        for proto in PROTOS {
            let identity = send(app.addr, proto, get(&uri).body(Full::default()).unwrap()).await;
            assert_eq!(identity.header("content-encoding"), None);
            assert_eq!(identity.header("vary"), Some("accept-encoding"));
            // Several of the streaming encoder's 4 KiB frames, so streaming is exercised.
            assert!(identity.body.len() > 8 * 4_096, "body too small to test streaming: {}", identity.body.len());
            for encoding in Encoding::COMPRESSED {
                let reply = send(
                    app.addr,
                    proto,
                    get(&uri).header("accept-encoding", encoding.as_str()).body(Full::default()).unwrap(),
                )
                .await;
                assert_eq!(reply.status, StatusCode::OK);
                assert_eq!(reply.header("content-encoding"), Some(encoding.as_str()), "{proto:?}");
                assert_eq!(reply.header("vary"), Some("accept-encoding"));
                assert!(reply.body.len() < identity.body.len() / 3, "{encoding} did not compress");
                let decoded = decompress(encoding, &reply.body).await.unwrap();
                assert_eq!(decoded, identity.body, "{proto:?} {encoding} (stream threshold {stream_min_bytes})");
            }
            // Small bodies are not compressed even when the client accepts it.
            let small =
                send(app.addr, proto, get("/healthz").header("accept-encoding", "br").body(Full::default()).unwrap())
                    .await;
            assert_eq!(small.header("content-encoding"), None);
        }
        app.shutdown().await;
    }
}

/// A client that sends its request head one byte at a time is cut off at the header
/// timeout instead of holding the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_at_the_header_timeout() {
    let app = spawn_app(ServerConfig { header_read_timeout: Duration::from_secs(1), ..ServerConfig::default() }).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut closed_at = None;
    for byte in b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n".iter() {
        if stream.write_all(&[*byte]).await.is_err() {
            closed_at = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(400), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                closed_at = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) => {
                closed_at = Some(started.elapsed()); // a 408 reply, then close
                break;
            }
            Err(_) => {} // still open; send the next byte
        }
    }
    let closed_at = closed_at.expect("the server kept a slowloris connection open");
    assert!(closed_at < Duration::from_secs(3), "closed only after {closed_at:?}");
    assert!(closed_at >= Duration::from_millis(900), "closed before the timeout: {closed_at:?}");
    app.shutdown().await;
}

/// With one request allowed in flight, a second is refused with 503 while the first
/// is still sending its body, and served again once it is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_beyond_the_in_flight_limit_is_shed_with_503() {
    let app = spawn_app(ServerConfig { max_in_flight: 1, ..ServerConfig::default() }).await;
    let start_slow = || async {
        let mut slow = TcpStream::connect(app.addr).await.unwrap();
        slow.write_all(b"POST /flights/1/delays HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nif-match: \"0\"\r\ncontent-length: 100\r\n\r\n{").await.unwrap();
        slow
    };
    // The slow request holds the one permit once the server has read its head. If its
    // head arrived while a /healthz held the permit, it was itself shed (an answer is
    // waiting on it): then it is sent again.
    let mut slow = start_slow().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let shed = loop {
        let reply = get_json(&app, Proto::H1, "/healthz").await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            break reply;
        }
        if slow.try_read(&mut [0u8; 512]).is_ok() {
            slow = start_slow().await;
        }
        assert!(tokio::time::Instant::now() < deadline, "/healthz stayed {}", reply.status);
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_problem(&shed, StatusCode::SERVICE_UNAVAILABLE, "limit of 1");
    for proto in PROTOS {
        let shed = get_json(&app, proto, "/healthz").await;
        assert_problem(&shed, StatusCode::SERVICE_UNAVAILABLE, "limit of 1");
        assert_eq!(shed.header("retry-after"), Some("1"));
    }
    drop(slow);
    // The permit comes back once the server notices the closed connection.
    status_becomes(&app, StatusCode::OK).await;
    app.shutdown().await;
}

/// Polls `GET /healthz` until it answers `status`, for up to 10 s.
async fn status_becomes(app: &ApiApp, status: StatusCode) -> Reply {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = get_json(app, Proto::H1, "/healthz").await;
        if reply.status == status {
            return reply;
        }
        assert!(tokio::time::Instant::now() < deadline, "/healthz stayed {}", reply.status);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_returns() {
    let app = spawn_app(ServerConfig::default()).await;
    let addr = app.addr;
    assert_eq!(get_json(&app, Proto::H2c, "/healthz").await.status, StatusCode::OK);
    app.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
}

/// With the cache on, a read that starts after a 201 never sees an older version, even
/// while other readers keep refilling the cache with whatever they last read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_reads_never_return_a_status_older_than_an_acknowledged_write() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let app = spawn_app(ServerConfig::default()).await;
    let id = app.ds.all_expected().into_iter().find(|v| !v.status.state.is_terminal()).unwrap().flight.id;
    let uri = format!("/flights/{id}");
    let first = get_json(&app, Proto::H1, &uri).await;
    assert_eq!(first.header("x-cache"), Some("miss"));
    let again = get_json(&app, Proto::H2c, &uri).await;
    assert_eq!((again.header("x-cache"), &again.body), (Some("hit"), &first.body));
    assert_eq!(again.header("etag"), first.header("etag"));

    let stop = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = PROTOS
        .into_iter()
        .cycle()
        .take(4)
        .map(|proto| {
            let (stop, hits, uri, addr) = (stop.clone(), hits.clone(), uri.clone(), app.addr);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let reply = send(addr, proto, get(&uri).body(Full::default()).unwrap()).await;
                    assert_eq!(reply.status, StatusCode::OK);
                    if reply.header("x-cache") == Some("hit") {
                        hits.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let mut version = first.json()["status"]["version"].as_i64().unwrap();
    for n in 0..150 {
        let body = format!(r#"{{"kind":"revised","delay_minutes":{},"reason":"cache-{n}"}}"#, n % 90 + 1);
        let created = send(app.addr, Proto::H1, post_delay(id.get(), Some(&format!("\"{version}\"")), &body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        version = created.json()["status"]["version"].as_i64().unwrap();
        let read = get_json(&app, PROTOS[n % 2], &uri).await;
        assert_eq!(read.json()["status"]["version"].as_i64(), Some(version), "stale read after write {n}");
        assert_eq!(read.header("etag"), Some(format!("\"{version}\"").as_str()));
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    assert!(hits.load(Ordering::Relaxed) > 0, "the readers never hit the cache; the race was not exercised");
    app.shutdown().await;
}

/// `--cache off`: the same bodies, no `x-cache` header, every read reaches the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_off_reads_go_to_the_store() {
    let app = spawn_app(ServerConfig { cache_capacity: 0, ..ServerConfig::default() }).await;
    let want = app.ds.store.flight(QueryPath::Raw, FlightId::new(5).unwrap()).await.unwrap();
    for _ in 0..2 {
        let reply = get_json(&app, Proto::H1, "/flights/5").await;
        assert_eq!(reply.header("x-cache"), None);
        assert_eq!(reply.json(), serde_json::to_value(&want).unwrap());
    }
    app.shutdown().await;
}

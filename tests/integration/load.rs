//! The load generator against an in-process test server that counts what it gets and
//! can stall: exact counts in closed loop (cleartext and TLS with ALPN), coordinated-
//! omission correction in open loop, the achieved rate, mix proportions and well-formed
//! writes, chunked compressed bodies counted on the wire and decoded, the JSON report
//! against its schema.

use bytes::Bytes;
use flightbench::compression::Encoding;
use flightbench::dataset::Popularity;
use flightbench::load::conn::{Endpoint, Protocol};
use flightbench::load::report::{LOAD_SCHEMA_VERSION, LoadReport};
use flightbench::load::workload::{DatasetShape, Mix, RequestKind, Skew};
use flightbench::load::{LoadConfig, LoopModel, Workload, run};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// What `/gzip-chunked` answers, before compression.
const CHUNKED_TEXT: &str = "departures and delays, departures and delays, departures and delays\n";

type Body = Either<
    Full<Bytes>,
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>>>,
>;

/// A POST as the server saw it.
#[derive(Clone)]
struct SeenWrite {
    content_type: Option<String>,
    if_match: Option<String>,
    body: Bytes,
}

/// A server that answers every request at once, except during its stall window.
#[derive(Clone, Default)]
struct TestServer {
    count: Arc<AtomicU64>,
    requests: Arc<Mutex<Vec<(Method, String)>>>,
    writes: Arc<Mutex<Vec<SeenWrite>>>,
    stall: Arc<Mutex<Option<(Instant, Instant)>>>,
}

impl TestServer {
    async fn start(&self) -> SocketAddr {
        self.start_with(None).await
    }

    /// Serves HTTP/1.1 and h2c, or both over TLS (chosen by ALPN) given an acceptor.
    async fn start_with(&self, tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = self.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (server, tls) = (server.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let server = server.clone();
                        async move { Ok::<_, std::convert::Infallible>(server.answer(request).await) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = match tls {
                        None => builder.serve_connection(TokioIo::new(stream), service).await,
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => builder.serve_connection(TokioIo::new(stream), service).await,
                            Err(_) => return,
                        },
                    };
                });
            }
        });
        addr
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Body> {
        self.count.fetch_add(1, Ordering::SeqCst);
        let (method, path) = (request.method().clone(), request.uri().path().to_owned());
        self.requests.lock().unwrap().push((method.clone(), path.clone()));
        let stall = *self.stall.lock().unwrap();
        if let Some((from, until)) = stall {
            let now = Instant::now();
            if now >= from && now < until {
                tokio::time::sleep_until(until.into()).await;
            }
        }
        if path == "/gzip-chunked" {
            // Two frames and no length: hyper sends it chunked over HTTP/1.1.
            let gzipped = flightbench::compression::compress(Encoding::Gzip, 6, CHUNKED_TEXT.as_bytes()).await.unwrap();
            let (first, second) = gzipped.split_at(gzipped.len() / 2);
            let frames =
                vec![Ok(Frame::data(Bytes::copy_from_slice(first))), Ok(Frame::data(Bytes::copy_from_slice(second)))];
            let body = StreamBody::new(futures_util::stream::iter(frames));
            return Response::builder().header("content-encoding", "gzip").body(Either::Right(body)).unwrap();
        }
        let status = if method == Method::POST {
            let header = |name: &str| request.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
            let (content_type, if_match) = (header("content-type"), header("if-match"));
            let body = request.into_body().collect().await.unwrap().to_bytes();
            self.writes.lock().unwrap().push(SeenWrite { content_type, if_match, body });
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let body = Either::Left(Full::new(Bytes::from_static(b"{}")));
        Response::builder().status(status).header("etag", "\"1\"").body(body).unwrap()
    }
}

fn config(addr: SocketAddr, workload: Workload, loop_model: LoopModel) -> LoadConfig {
    LoadConfig {
        endpoint: Endpoint { addr, host: "127.0.0.1".into(), protocol: Protocol::H1, tls: None },
        target: format!("http://{addr}"),
        workload,
        loop_model,
        connections: 8,
        streams_per_connection: 1,
        threads: 2,
        warmup: Duration::ZERO,
        duration: None,
        requests: None,
        timeout: Duration::from_secs(5),
        headers: Vec::new(),
        seed: 7,
        server_in_process: false,
        cores: Vec::new(),
    }
}

fn url() -> Workload {
    Workload::Url { path: "/ping".into() }
}

async fn run_blocking(config: LoadConfig) -> LoadReport {
    tokio::task::spawn_blocking(move || run(&config, |_, _| {})).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_counts_match_the_server_exactly() {
    for protocol in [Protocol::H1, Protocol::H2] {
        let server = TestServer::default();
        let addr = server.start().await;
        let mut c = config(addr, url(), LoopModel::Closed);
        c.endpoint.protocol = protocol;
        c.streams_per_connection = if protocol == Protocol::H2 { 4 } else { 1 };
        c.requests = Some(3_000);
        let report = run_blocking(c).await;
        assert_eq!(report.responses, 3_000, "{protocol:?}");
        assert_eq!(report.status_counts.get(&200), Some(&3_000));
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        // The probe connection sends nothing, so the server saw exactly the requests.
        assert_eq!(server.count.load(Ordering::SeqCst), 3_000, "{protocol:?}");
        assert_eq!(report.latency.count, 3_000);
    }
}

/// A server that stalls for 1 s once: the corrected p99 shows it, the uncorrected
/// one (what a closed-loop tool would report) does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_latency_counts_a_stall_from_the_schedule() {
    let server = TestServer::default();
    let addr = server.start().await;
    let mut c = config(addr, url(), LoopModel::Open { rate: 400.0, tick: Duration::ZERO });
    c.duration = Some(Duration::from_secs(4));
    let start = Instant::now() + Duration::from_millis(1_500);
    *server.stall.lock().unwrap() = Some((start, start + Duration::from_secs(1)));
    let report = run_blocking(c).await;
    let corrected = report.latency;
    let uncorrected = report.uncorrected_latency.expect("open loop records both");
    // About a quarter of the requests were scheduled inside the stall, delayed by
    // 0–1 s: the 99th percentile lands near 1 s.
    assert!(corrected.p99_ms > 800.0 && corrected.p99_ms < 1_300.0, "corrected p99 {corrected:?}");
    // Only the 8 requests in flight when it began waited from their actual send.
    assert!(uncorrected.p99_ms < 200.0, "uncorrected p99 {uncorrected:?}");
    assert!(uncorrected.max_ms > 800.0, "the stalled requests themselves: {uncorrected:?}");
    assert!(report.errors.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_keeps_its_rate_when_the_server_keeps_up() {
    let server = TestServer::default();
    let addr = server.start().await;
    let mut c = config(addr, url(), LoopModel::Open { rate: 500.0, tick: Duration::ZERO });
    c.duration = Some(Duration::from_secs(3));
    c.warmup = Duration::from_millis(500);
    let report = run_blocking(c).await;
    let off = (report.achieved_rate - 500.0).abs() / 500.0;
    assert!(off < 0.02, "achieved {} req/s of 500 over {} s", report.achieved_rate, report.elapsed_s);
    assert_eq!(report.rate_kept, Some(true));
    assert!(report.rate_warning().is_none());
    // The warm-up's requests reached the server but are not counted.
    assert!(server.count.load(Ordering::SeqCst) > report.responses);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mix_hits_the_right_endpoints_in_the_right_proportions() {
    let server = TestServer::default();
    let addr = server.start().await;
    let shape = DatasetShape {
        writable: None,
        flights: 5_000,
        popularity: Popularity { airport_exponent_centi: 110, flight_exponent_centi: 100, multiplier: 7, offset: 11 },
        airports: vec!["ATL".into(), "DXB".into(), "LHR".into()],
        start_unix: 1_796_083_200,
        days: 30,
    };
    let mix = Mix::parse("read=60,departures=25,delays=5,write=10").unwrap();
    let mut c = config(addr, Workload::Mix { mix, shape, skew: Skew::Zipf { exponent: 1.1 } }, LoopModel::Closed);
    c.requests = Some(4_000);
    let report = run_blocking(c).await;
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 4_000);
    let share = |f: &dyn Fn(&(Method, String)) -> bool| requests.iter().filter(|r| f(r)).count() as f64 / 4_000.0;
    let reads = share(&|(m, p)| m == Method::GET && p.starts_with("/flights/") && !p.ends_with("/events"));
    let departures = share(&|(_, p)| p.ends_with("/departures"));
    let delays = share(&|(m, p)| m == Method::GET && p.ends_with("/delays"));
    let writes = share(&|(m, p)| m == Method::POST && p.ends_with("/delays"));
    for (name, got, want) in
        [("read", reads, 0.60), ("departures", departures, 0.25), ("delays", delays, 0.05), ("write", writes, 0.10)]
    {
        assert!((got - want).abs() < 0.03, "{name}: {got:.3} of requests, want {want}");
    }
    let kinds: Vec<RequestKind> = report.latency_by_kind.keys().copied().collect();
    assert_eq!(kinds, [RequestKind::Read, RequestKind::Departures, RequestKind::Delays, RequestKind::Write]);
    // Every write arrived whole: JSON with its type and the version it expects.
    let writes = server.writes.lock().unwrap().clone();
    assert_eq!(writes.len(), requests.iter().filter(|(m, _)| m == Method::POST).count());
    for SeenWrite { content_type, if_match, body } in writes {
        assert_eq!(content_type.as_deref(), Some("application/json"));
        let if_match = if_match.expect("writes carry If-Match");
        assert!(if_match.trim_matches('"').parse::<i64>().is_ok(), "If-Match {if_match:?}");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
        assert!(json.is_object(), "{json}");
    }
}

/// HTTP/1.1 and HTTP/2 over TLS, the protocol chosen by ALPN: the counts still match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_both_protocols_count_exactly() {
    let tls = crate::helpers::test_tls();
    let server = TestServer::default();
    let addr = server.start_with(Some(tls.acceptor.clone())).await;
    for protocol in [Protocol::H1, Protocol::H2] {
        let before = server.count.load(Ordering::SeqCst);
        let mut c = config(addr, url(), LoopModel::Closed);
        c.endpoint = Endpoint {
            addr,
            host: "localhost".into(),
            protocol,
            tls: Some(flightbench::load::conn::tls_config(tls.cert_pem.as_bytes(), protocol).unwrap()),
        };
        c.requests = Some(1_000);
        let report = run_blocking(c).await;
        assert_eq!(report.status_counts.get(&200), Some(&1_000), "{protocol:?}: {:?}", report.errors);
        assert_eq!(server.count.load(Ordering::SeqCst) - before, 1_000, "{protocol:?}");
    }
}

/// A gzip body sent in chunks: the wire count is the compressed size, the decoded
/// count the text's, on both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_compressed_bodies_are_counted_on_the_wire_and_decoded() {
    let server = TestServer::default();
    let addr = server.start().await;
    let gzipped = flightbench::compression::compress(Encoding::Gzip, 6, CHUNKED_TEXT.as_bytes()).await.unwrap();
    for protocol in [Protocol::H1, Protocol::H2] {
        let mut c = config(addr, Workload::Url { path: "/gzip-chunked".into() }, LoopModel::Closed);
        c.endpoint.protocol = protocol;
        c.requests = Some(200);
        let report = run_blocking(c).await;
        assert_eq!(report.responses, 200, "{protocol:?}: {:?}", report.errors);
        assert_eq!(report.wire_bytes, 200 * gzipped.len() as u64, "{protocol:?}");
        assert_eq!(report.decoded_bytes, 200 * CHUNKED_TEXT.len() as u64, "{protocol:?}");
    }
}

/// `flightbench load --json`: the document validates against the published schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_report_matches_its_schema() {
    let server = TestServer::default();
    let addr = server.start().await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let chart = dir.path().join("load.svg");
    for extra in [&["--requests", "500"][..], &["--rate", "300", "--duration", "1s", "--protocol", "h2", "-m", "2"]] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightbench"))
            .args(["load", "--url", &format!("http://{addr}/ping"), "-c", "2", "--warmup", "0", "--quiet", "--json"])
            .arg(&json)
            .arg("--chart")
            .arg(&chart)
            .args(extra)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("responses in") && stdout.contains("p99"), "{stdout}");
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../src/load/report.schema.json")).unwrap();
        let document: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&document).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{extra:?}: {errors:#?}");
        assert_eq!(document["schema_version"], LOAD_SCHEMA_VERSION);
        let svg = std::fs::read_to_string(&chart).unwrap();
        assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() >= 2, "{svg}");
    }
}

/// A server that never answers in time: every request ends as a timeout error, none
/// as a response, and the run still stops on schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_an_answer_are_timeout_errors() {
    let server = TestServer::default();
    let addr = server.start().await;
    let now = Instant::now();
    *server.stall.lock().unwrap() = Some((now, now + Duration::from_secs(30)));
    let mut c = config(addr, url(), LoopModel::Closed);
    c.connections = 2;
    c.duration = Some(Duration::from_secs(1));
    c.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let report = run_blocking(c).await;
    assert!(started.elapsed() < Duration::from_secs(5), "the run overran its bounds");
    assert_eq!(report.responses, 0);
    let timeouts = report.errors.get(&flightbench::load::recorder::ErrorKind::Timeout).copied().unwrap_or(0);
    assert!(timeouts >= 4, "{:?}", report.errors);
}

//! One request at a time through the real server, over loopback: what a round trip
//! costs on each protocol, with the flight cache hit, through the store on the raw
//! and prepared paths, and against the fixed-body ceiling; and what br costs on a
//! departures board. Client and server share one current-thread runtime, so no figure
//! includes a wake-up on another core (load runs, `scripts/measure-server.sh`, measure
//! throughput with those).
//!
//!     cargo bench --bench http

mod support;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flightbench::compression::{Encoding, decompress};
use flightbench::dataset::Backend;
use flightbench::domain::FlightId;
use flightbench::http::{AppState, ServerConfig, serve_connections, serve_fixed};
use flightbench::store::{PlanCacheMode, QueryPath, Store};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

#[derive(Debug, Clone, Copy)]
enum Proto {
    H1,
    H2c,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::H1 => "h1",
            Proto::H2c => "h2c",
        }
    }
}

enum Client {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

impl Client {
    async fn connect(addr: SocketAddr, proto: Proto) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let io = TokioIo::new(tcp);
        match proto {
            Proto::H1 => {
                let (send, conn) = http1::handshake(io).await.expect("h1 handshake");
                tokio::spawn(conn);
                Client::H1(send)
            }
            Proto::H2c => {
                let (send, conn) = http2::handshake(TokioExecutor::new(), io).await.expect("h2 handshake");
                tokio::spawn(conn);
                Client::H2(send)
            }
        }
    }

    /// GET `uri` with `headers`; returns the body after checking the status.
    async fn get(&mut self, uri: &str, headers: &[(&str, &str)]) -> Bytes {
        let mut request = Request::get(uri).header("host", "localhost");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::new()).expect("request");
        let response = match self {
            Client::H1(send) => {
                send.ready().await.expect("h1 ready");
                send.send_request(request).await
            }
            Client::H2(send) => send.send_request(request).await,
        }
        .expect("response");
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        response.into_body().collect().await.expect("body").to_bytes()
    }
}

/// Starts the real server on port 0 on the current runtime; it runs until the bench
/// process exits.
async fn start_server(store: Arc<Store>, config: ServerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = AppState::new(store, config);
    tokio::spawn(async move { serve_connections(listener, &state, None, std::future::pending()).await });
    addr
}

async fn start_ceiling(body: Bytes) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { serve_fixed(listener, &ServerConfig::default(), body, std::future::pending()).await });
    addr
}

fn http(c: &mut Criterion) {
    let rt = support::runtime();
    let (spec, shards) = support::bench_spec();
    let store = Arc::new(rt.block_on(support::dataset(
        Backend::Sqlite,
        spec,
        shards,
        &support::store_config(PlanCacheMode::Auto),
    )));
    let flights = spec.flights as i64;
    let (cached, uncached, ceiling, flight_17) = rt.block_on(async {
        let cached = start_server(store.clone(), ServerConfig::default()).await;
        let uncached = start_server(store.clone(), ServerConfig { cache_capacity: 0, ..ServerConfig::default() }).await;
        let view = store.flight(QueryPath::Raw, FlightId::new(17).expect("id")).await.expect("flight 17");
        let body = Bytes::from(serde_json::to_vec(&view).expect("json"));
        let ceiling = start_ceiling(body.clone()).await;
        (cached, uncached, ceiling, body)
    });

    let mut g = c.benchmark_group("http/point_read");
    for proto in [Proto::H1, Proto::H2c] {
        // Like for like: every arm returns flight 17's body byte for byte.
        for (name, addr) in [("ceiling", ceiling), ("cache_hit", cached), ("store", uncached)] {
            let mut client = rt.block_on(Client::connect(addr, proto));
            assert_eq!(rt.block_on(client.get("/flights/17", &[])), flight_17, "{name} over {}", proto.name());
        }
        for (name, addr) in [("ceiling", ceiling), ("cache_hit", cached)] {
            let client = Arc::new(Mutex::new(rt.block_on(Client::connect(addr, proto))));
            g.bench_function(BenchmarkId::new(name, proto.name()), |b| {
                b.to_async(&rt).iter(|| {
                    let client = client.clone();
                    async move { client.lock().await.get("/flights/17", &[]).await }
                })
            });
        }
        // Through the store: a different flight each time, as uncached traffic is.
        for path in [QueryPath::Raw, QueryPath::Prepared] {
            let client = Arc::new(Mutex::new(rt.block_on(Client::connect(uncached, proto))));
            let next = Arc::new(AtomicI64::new(0));
            g.bench_function(BenchmarkId::new(format!("store_{path}"), proto.name()), |b| {
                b.to_async(&rt).iter(|| {
                    let (client, next) = (client.clone(), next.clone());
                    async move {
                        let id = next.fetch_add(1, Ordering::Relaxed) % flights + 1;
                        let uri = format!("/flights/{id}");
                        client.lock().await.get(&uri, &[("x-query-path", path.as_str())]).await
                    }
                })
            });
        }
    }
    g.finish();

    // What br costs and saves on a departures board (about 11 KiB of JSON).
    let mut g = c.benchmark_group("http/departures_50");
    let day = format!("from={}&to={}", spec.start, spec.start.plus_seconds(86_400));
    let uri = format!("/airports/ATL/departures?{day}&limit=50");
    let identity = rt.block_on(async {
        Client::connect(uncached, Proto::H1).await.get(&uri, &[("accept-encoding", "identity")]).await
    });
    for encoding in [Encoding::Identity, Encoding::Br] {
        let client = Arc::new(Mutex::new(rt.block_on(Client::connect(uncached, Proto::H1))));
        let token = encoding.as_str();
        let body = rt.block_on(async { client.lock().await.get(&uri, &[("accept-encoding", token)]).await });
        let decoded = rt.block_on(decompress(encoding, &body)).expect("decodes");
        assert_eq!(decoded, identity, "{encoding} body decodes to the identity body");
        g.bench_function(BenchmarkId::from_parameter(token), |b| {
            b.to_async(&rt).iter(|| {
                let (client, uri) = (client.clone(), uri.clone());
                async move { client.lock().await.get(&uri, &[("accept-encoding", token)]).await }
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = http
}
criterion_main!(benches);

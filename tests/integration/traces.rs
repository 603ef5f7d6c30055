//! Traces and logs of a real `flightbench serve` process: spans reach an in-process
//! OTLP/HTTP receiver nested request → store → shard_query, and `--log-format json`
//! writes nothing but JSON lines. Through the gateway, one trace spans the gateway
//! process and the query service process (W3C `traceparent`), and the caller's
//! sampling decision holds in both.

use crate::app::ServeProcess;
use crate::client::{Proto, get, send};
use crate::helpers::{Kind, dataset, spec};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;

#[derive(Debug, Clone)]
struct ReceivedSpan {
    /// The exporting process's `service.name`.
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: HashMap<String, String>,
}

/// An OTLP/HTTP receiver: decodes every `POST /v1/traces` body and keeps its spans.
async fn receiver() -> (SocketAddr, Arc<Mutex<Vec<ReceivedSpan>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let received = spans.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let received = received.clone();
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let received = received.clone();
                async move {
                    assert_eq!(request.uri().path(), "/v1/traces");
                    assert_eq!(request.headers()["content-type"], "application/x-protobuf");
                    let body = request.into_body().collect().await?.to_bytes();
                    let export = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
                    let mut received = received.lock().unwrap();
                    for resource in &export.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|kv| kv.key == "service.name")
                            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                                Value::StringValue(s) => Some(s.clone()),
                                _ => None,
                            })
                            .unwrap_or_default();
                        for span in resource.scope_spans.iter().flat_map(|s| &s.spans) {
                            let attributes = span
                                .attributes
                                .iter()
                                .map(|kv| {
                                    let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                        Some(Value::StringValue(s)) => s.clone(),
                                        Some(Value::IntValue(i)) => i.to_string(),
                                        other => format!("{other:?}"),
                                    };
                                    (kv.key.clone(), value)
                                })
                                .collect();
                            received.push(ReceivedSpan {
                                service: service.clone(),
                                name: span.name.clone(),
                                trace_id: span.trace_id.clone(),
                                span_id: span.span_id.clone(),
                                parent_span_id: span.parent_span_id.clone(),
                                attributes,
                            });
                        }
                    }
                    Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    (addr, spans)
}

/// `flightbench serve` exporting to `collector`, JSON logs at info; returns the child
/// and its API address.
async fn serve(dir: &std::path::Path, collector: SocketAddr, ratio: &str) -> (tokio::process::Child, SocketAddr) {
    let collector = format!("http://{collector}");
    let flags = ["--no-admin", "--cache", "off", "--trace-sample-ratio", ratio, "--otlp-endpoint", &collector];
    let server = ServeProcess::start(dir, &["--log", "info", "--log-format", "json"], &flags, true).await;
    (server.child, server.api)
}

/// SIGTERM: the server drains, flushes the spans still queued and exits; returns its
/// stderr.
async fn stop(mut child: tokio::process::Child) -> String {
    let mut stderr = child.stderr.take().unwrap();
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    let mut logs = String::new();
    stderr.read_to_string(&mut logs).await.unwrap();
    logs
}

const DEPARTURES: &str = "/airports/ATL/departures?from=2026-12-01T00:00:00Z&to=2026-12-03T00:00:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_nested_and_logs_are_json() {
    let ds = dataset(Kind::Sqlite, spec(61, 1_000, 10), 2).await;
    let (collector, spans) = receiver().await;
    let (child, api) = serve(ds.dir(), collector, "1").await;
    let flight = send(api, Proto::H1, get("/flights/7").body(Full::default()).unwrap()).await;
    assert_eq!(flight.status, 200);
    assert_eq!(send(api, Proto::H2c, get(DEPARTURES).body(Full::default()).unwrap()).await.status, 200);
    let logs = stop(child).await;
    assert!(!logs.trim().is_empty(), "info logs were written");
    for line in logs.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
        assert!(line["level"].is_string() && line["fields"].is_object() && line["timestamp"].is_string(), "{line}");
    }
    assert!(logs.contains("shutting down"), "{logs}");
    // The stop summary counts what was served: the flight and the departures.
    assert!(logs.contains("for 2 requests, ") && logs.contains(" µs per request"), "{logs}");

    let spans = spans.lock().unwrap().clone();
    let find = |name: &str, key: &str, value: &str| -> Vec<&ReceivedSpan> {
        spans.iter().filter(|s| s.name == name && s.attributes.get(key).map(String::as_str) == Some(value)).collect()
    };
    let children = |parent: &ReceivedSpan, name: &str| -> Vec<&ReceivedSpan> {
        spans.iter().filter(|s| s.name == name && s.parent_span_id == parent.span_id).collect()
    };
    // GET /flights/7: request → store(flight) → one shard query.
    let [request] = find("request", "route", "/flights/{id}")[..] else {
        panic!("one flight request span: {spans:#?}")
    };
    assert!(request.parent_span_id.is_empty(), "a request is a root span");
    assert_eq!((request.attributes["method"].as_str(), request.attributes["status"].as_str()), ("GET", "200"));
    let [store] = children(request, "store")[..] else { panic!("one store span under the request: {spans:#?}") };
    assert_eq!(store.attributes["op"], "flight");
    let [query] = children(store, "shard_query")[..] else { panic!("one shard query: {spans:#?}") };
    assert_eq!((query.attributes["op"].as_str(), query.attributes["path"].as_str()), ("flight", "raw"));
    assert!([store, query].iter().all(|s| s.trace_id == request.trace_id));

    // Departures over h2: one store span, a query on each of the 2 shards.
    let [request] = find("request", "route", "/airports/{code}/departures")[..] else { panic!("{spans:#?}") };
    assert_eq!(request.attributes["protocol"], "h2");
    let [store] = children(request, "store")[..] else { panic!("{spans:#?}") };
    let mut shards: Vec<&str> = children(store, "shard_query").iter().map(|s| s.attributes["shard"].as_str()).collect();
    shards.sort();
    assert_eq!(shards, ["0", "1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_build_no_spans() {
    let ds = dataset(Kind::Sqlite, spec(62, 1_000, 10), 2).await;
    let (collector, spans) = receiver().await;
    let (child, api) = serve(ds.dir(), collector, "0").await;
    for _ in 0..5 {
        assert_eq!(send(api, Proto::H1, get("/flights/7").body(Full::default()).unwrap()).await.status, 200);
        assert_eq!(send(api, Proto::H1, get(DEPARTURES).body(Full::default()).unwrap()).await.status, 200);
    }
    stop(child).await;
    // Not a request span, and no store or shard span orphaned from one.
    let spans = spans.lock().unwrap();
    assert!(spans.is_empty(), "ratio 0 exported {} spans: {spans:#?}", spans.len());
}

#[test]
fn bad_trace_flags_are_refused() {
    let run =
        |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_flightbench")).args(args).output().unwrap();
    for (args, expected) in [
        (&["serve", "--otlp-endpoint", "https://collector:4318"][..], "must be an http:// URL"),
        (&["serve", "--otlp-endpoint", "collector:4318"][..], "must be an http:// URL"),
        (&["serve", "--trace-sample-ratio", "1.5"][..], "outside 0..=1"),
        (&["serve", "--trace-without-export", "--otlp-endpoint", "http://c:4318"][..], "cannot be used with"),
        (&["--log-format", "yaml", "serve"][..], "invalid value 'yaml'"),
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// Through the gateway: a `gateway` span (continuing the client's trace when it sent
/// one), an `upstream` span under it, and the query service's `request` span under
/// that, in the other process. The query service samples at ratio 0: it traces only
/// because the gateway's `traceparent` says sampled. A client's unsampled
/// `traceparent` is honoured by the gateway (ratio 1) too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_the_gateway_and_the_service_behind_it() {
    // The query role follows the bus: no test may restart the broker meanwhile.
    let _broker = crate::bus::BROKER.lock().await;
    let ds = dataset(Kind::Sqlite, spec(63, 1_000, 10), 2).await;
    let (collector, spans) = receiver().await;
    let collector = format!("http://{collector}");
    let query_args =
        ["--role", "query", "--no-admin", "--cache", "off", "--trace-sample-ratio", "0", "--otlp-endpoint", &collector];
    let query = ServeProcess::start(ds.dir(), &[], &query_args, true).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.json");
    let file = serde_json::json!({ "services": { "query": { "destinations": [format!("http://{}", query.api)] } } });
    std::fs::write(&config, file.to_string()).unwrap();
    let config = config.to_str().unwrap();
    let gateway_args = [
        "--role",
        "gateway",
        "--gateway-config",
        config,
        "--no-admin",
        "--trace-sample-ratio",
        "1",
        "--otlp-endpoint",
        &collector,
    ];
    let gateway = ServeProcess::start(ds.dir(), &[], &gateway_args, true).await;

    const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const CLIENT_SPAN: &str = "b7ad6b7169203331";
    const UNSAMPLED_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traced = |path: &str, traceparent: Option<String>| {
        let mut request = get(path);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request.body(Full::default()).unwrap()
    };
    let sampled = Some(format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"));
    assert_eq!(send(gateway.api, Proto::H1, traced("/flights/7", sampled)).await.status, 200);
    assert_eq!(send(gateway.api, Proto::H2c, traced("/flights/8", None)).await.status, 200);
    let unsampled = Some(format!("00-{UNSAMPLED_TRACE}-00f067aa0ba902b7-00"));
    assert_eq!(send(gateway.api, Proto::H1, traced("/flights/9", unsampled)).await.status, 200);
    // The gateway first: the service's spans must not depend on its shutdown.
    stop(gateway.child).await;
    stop(query.child).await;

    let spans = spans.lock().unwrap().clone();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let named = |name: &str| -> Vec<&ReceivedSpan> { spans.iter().filter(|s| s.name == name).collect() };
    let child_of = |parent: &ReceivedSpan, name: &str| -> Vec<&ReceivedSpan> {
        spans.iter().filter(|s| s.name == name && s.parent_span_id == parent.span_id).collect()
    };
    assert!(spans.iter().all(|s| hex(&s.trace_id) != UNSAMPLED_TRACE), "an unsampled caller's trace: {spans:#?}");
    let gateways = named("gateway");
    assert_eq!(gateways.len(), 2, "a gateway span per sampled request: {spans:#?}");
    for gateway in gateways {
        assert_eq!(gateway.service, "flightbench-gateway");
        assert_eq!(
            (gateway.attributes["route"].as_str(), gateway.attributes["service"].as_str()),
            ("GET /flights/{id}", "query")
        );
        assert_eq!(gateway.attributes["status"], "200");
        if hex(&gateway.trace_id) == CLIENT_TRACE {
            assert_eq!(hex(&gateway.parent_span_id), CLIENT_SPAN, "the client's span is the gateway's parent");
        } else {
            assert!(gateway.parent_span_id.is_empty(), "no traceparent: the gateway starts the trace");
        }
        let [upstream] = child_of(gateway, "upstream")[..] else { panic!("one try: {spans:#?}") };
        assert_eq!(upstream.attributes["destination"], format!("http://{}", query.api));
        assert_eq!(upstream.attributes["status"], "200");
        // The other process: the query service's request span, under the try.
        let [request] = child_of(upstream, "request")[..] else { panic!("the service's span: {spans:#?}") };
        assert_eq!(request.service, "flightbench-query");
        assert_eq!(request.attributes["route"], "/flights/{id}");
        assert_eq!(request.attributes["protocol"], "h2", "the gateway speaks HTTP/2 behind");
        let [store] = child_of(request, "store")[..] else { panic!("{spans:#?}") };
        assert!([upstream, request, store].iter().all(|s| s.trace_id == gateway.trace_id));
    }
    assert_eq!(named("request").len(), 2, "the service traced only what the gateway sampled: {spans:#?}");
}

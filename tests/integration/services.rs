//! The split service over HTTP, as separate `flightbench serve --role` processes on
//! the machine's RabbitMQ: each role answers its own routes and names the others';
//! the query service's cache follows writes made through the command service; a
//! webhook gets each matching event once, signed, after its target recovers; and
//! SIGKILLing the command, notification and query services in turn, restarting the
//! broker and failing the webhook target for a while, all under a write load, loses
//! no notification of an acknowledged write and leaves no cache stale.

use crate::app::ServeProcess;
use crate::client::{Proto, current_version, get, post_delay, send, try_send};
use crate::helpers::{Kind, dataset, spec};
use bytes::Bytes;
use flightbench::domain::FlightId;
use flightbench::notify::signature;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_integration_test_secret";
static NEXT: AtomicU32 = AtomicU32::new(0);

/// One delivery as the webhook target saw it.
#[derive(Debug, Clone)]
struct Received {
    event_id: String,
    signature: String,
    body: Bytes,
    answered: u16,
}

/// A webhook target on loopback that records every delivery and answers 500 while
/// `failing`.
#[derive(Clone, Default)]
struct Target {
    received: Arc<Mutex<Vec<Received>>>,
    failing: Arc<AtomicBool>,
}

impl Target {
    async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let target = target.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                        let target = target.clone();
                        async move {
                            let header = |name: &str| {
                                request.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
                            };
                            let (event_id, signature) = (header("flightbench-event-id"), header(signature::HEADER));
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let answered = if target.failing.load(Ordering::SeqCst) { 500 } else { 204 };
                            target.received.lock().unwrap().push(Received { event_id, signature, body, answered });
                            let mut response = http::Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = http::StatusCode::from_u16(answered).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    /// Distinct event ids answered 2xx, and how many 2xx each got.
    fn delivered(&self) -> BTreeMap<String, usize> {
        let mut delivered = BTreeMap::new();
        for r in self.received.lock().unwrap().iter().filter(|r| r.answered < 300) {
            *delivered.entry(r.event_id.clone()).or_insert(0) += 1;
        }
        delivered
    }

    /// Waits until more than `before` distinct events are delivered; "`what` N s", the
    /// time since `since` (a restart).
    async fn delivers_beyond(&self, before: usize, what: &str, since: Instant, within: Duration) -> String {
        while self.delivered().len() <= before {
            assert!(since.elapsed() < within, "no delivery within {within:?} of {what}'s restart");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        format!("{what} {:.2} s", since.elapsed().as_secs_f64())
    }

    async fn wait_for(&self, ids: &BTreeSet<String>, within: Duration) {
        let start = Instant::now();
        loop {
            let delivered: BTreeSet<String> = self.delivered().into_keys().collect();
            if ids.is_subset(&delivered) {
                return;
            }
            let missing: Vec<_> = ids.difference(&delivered).take(5).collect();
            assert!(
                start.elapsed() < within,
                "{} of {} delivered within {within:?}; missing {missing:?}",
                ids.len() - ids.difference(&delivered).count(),
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A topology's names on the broker (its own exchange and notify queue) and files.
struct Topology {
    dir: PathBuf,
    exchange: String,
    notify_queue: String,
    notify_db: PathBuf,
}

impl Topology {
    fn new(dir: &Path, notify_db: PathBuf) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let exchange = format!("fbtest.services.{}.{n}", std::process::id());
        Self { dir: dir.to_owned(), notify_queue: format!("{exchange}.notify"), exchange, notify_db }
    }

    async fn start(&self, role: &str) -> ServeProcess {
        let db = self.notify_db.display().to_string();
        let mut args = vec!["--role", role, "--no-admin", "--bus-exchange", &self.exchange];
        if role == "notify" {
            args.extend(["--notify-queue", &self.notify_queue, "--notify-db", &db, "--webhook-retry", "100ms"]);
        }
        ServeProcess::start(&self.dir, &[], &args, false).await
    }

    async fn remove(&self) {
        use lapin::options::QueueDeleteOptions;
        let url = flightbench::bus::DEFAULT_URL;
        let c = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await.unwrap();
        let ch = c.create_channel().await.unwrap();
        for q in [self.notify_queue.clone(), format!("{}.errors", self.notify_queue)] {
            let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
        }
        let _ = ch.exchange_delete(self.exchange.as_str().into(), Default::default()).await;
    }
}

async fn subscribe(notify: SocketAddr, url: &str, airports: &[String]) -> i64 {
    let body = serde_json::json!({ "url": url, "airports": airports, "secret": SECRET }).to_string();
    let request = http::Request::post("/subscriptions")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let reply = send(notify, Proto::H1, request).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.json()["secret"], SECRET, "the secret is shown once, at creation");
    reply.json()["id"].as_i64().unwrap()
}

/// What a delay report came to.
#[derive(Debug)]
enum Reported {
    Written(i64),
    /// 409: the flight is at this version (a write whose 201 was lost landed).
    Conflict(i64),
    /// No answer: the command service is down.
    Down,
}

async fn report(command: SocketAddr, id: FlightId, version: i64, minutes: i64) -> Reported {
    let body = format!(r#"{{"kind":"revised","delay_minutes":{minutes},"reason":"split"}}"#);
    match try_send(command, Proto::H1, post_delay(id.get(), Some(&format!("\"{version}\"")), &body)).await {
        Err(_) => Reported::Down,
        Ok(reply) if reply.status == 201 => Reported::Written(reply.json()["status"]["version"].as_i64().unwrap()),
        Ok(reply) if reply.status == 409 => Reported::Conflict(reply.json()["current_version"].as_i64().unwrap()),
        Ok(reply) => panic!("flight {id}: {} {:?}", reply.status, reply.body),
    }
}

async fn write_ok(command: SocketAddr, id: FlightId, version: i64, minutes: i64) -> i64 {
    match report(command, id, version, minutes).await {
        Reported::Written(v) => v,
        other => panic!("flight {id}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_roles_route_cache_and_signed_webhooks() {
    let _broker = crate::bus::BROKER.lock().await;
    let ds = dataset(Kind::Sqlite, spec(41, 400, 10), 2).await;
    let notify_db = tempfile::tempdir().unwrap();
    let topology = Topology::new(ds.dir(), notify_db.path().join("notify.sqlite"));
    let target = Target::default();
    let hook = format!("http://{}/hooks/delays", target.start().await);
    let notify = topology.start("notify").await;
    let query = topology.start("query").await;
    let command = topology.start("command").await;

    // Each role answers its own routes and names the one that serves the others.
    let id = ds.writable_flights(1)[0];
    let misrouted = send(command.api, Proto::H1, get(&format!("/flights/{id}")).body(Full::default()).unwrap()).await;
    assert_eq!(misrouted.status, 404);
    assert_eq!(misrouted.json()["detail"], "/flights/{id} is served by the query service; this is the command service");
    let misrouted = send(query.api, Proto::H1, post_delay(id.get(), Some("\"1\""), "{}")).await;
    assert_eq!(misrouted.status, 404);
    assert!(misrouted.json()["detail"].as_str().unwrap().contains("served by the command service"));
    for api in [notify.api, query.api, command.api] {
        let ready = send(api, Proto::H1, get("/healthz").body(Full::default()).unwrap()).await;
        assert_eq!(ready.status, 200);
    }

    let flight = ds.expected_flight(id.get()).unwrap().flight;
    let sub = subscribe(notify.api, &hook, &[flight.origin.to_string()]).await;
    let refused = serde_json::json!({ "url": "http://169.254.169.254/", "airports": ["FRA"] }).to_string();
    let refused = http::Request::post("/subscriptions")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(refused)))
        .unwrap();
    let refused = send(notify.api, Proto::H1, refused).await;
    assert_eq!(refused.status, 422, "{:?}", refused.body);

    // The query service caches the flight, the command service writes it, and the
    // cache follows within a bound.
    let before = current_version(query.api, Proto::H1, id).await;
    assert_eq!(current_version(query.api, Proto::H1, id).await, before, "served from the cache");
    let written = write_ok(command.api, id, before, 25).await;
    let acknowledged = Instant::now();
    while current_version(query.api, Proto::H1, id).await != written {
        assert!(acknowledged.elapsed() < Duration::from_secs(10), "the query service stayed stale for 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("query cache caught up {:.1} ms after the 201", acknowledged.elapsed().as_secs_f64() * 1e3);

    // The webhook: once, signed over (time, body), naming the event.
    let first = format!("{id}/{written}");
    target.wait_for(&BTreeSet::from([first.clone()]), Duration::from_secs(15)).await;
    let got = target.received.lock().unwrap().iter().find(|r| r.event_id == first).cloned().unwrap();
    let now = flightbench::machine::unix_micros() / 1_000_000;
    assert_eq!(signature::verify(SECRET.as_bytes(), &got.signature, &got.body, now, 300), Ok(()));
    let mut tampered = got.body.to_vec();
    tampered[10] ^= 1;
    assert_eq!(
        signature::verify(SECRET.as_bytes(), &got.signature, &tampered, now, 300),
        Err(signature::SignatureError::Mismatch)
    );
    let payload: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!((payload["flight_id"].as_i64(), payload["version"].as_i64()), (Some(id.get()), Some(written)));
    assert_eq!(payload["contract"], "delay-event.v1");
    assert!(payload.get("reason").is_none(), "no personal fields on the bus");

    // A target that fails for a while gets the next event once it recovers, once.
    target.failing.store(true, Ordering::SeqCst);
    let second_version = write_ok(command.api, id, written, 40).await;
    let second = format!("{id}/{second_version}");
    let start = Instant::now();
    while target.received.lock().unwrap().iter().filter(|r| r.event_id == second).count() < 2 {
        assert!(start.elapsed() < Duration::from_secs(15), "no retry of a failed delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    target.failing.store(false, Ordering::SeqCst);
    target.wait_for(&BTreeSet::from([second.clone()]), Duration::from_secs(15)).await;
    assert_eq!(target.delivered(), BTreeMap::from([(first, 1), (second, 1)]));
    let shown = send(notify.api, Proto::H1, get(&format!("/subscriptions/{sub}")).body(Full::default()).unwrap()).await;
    assert_eq!(shown.json()["deliveries"]["delivered"], 2);
    assert!(shown.json().get("secret").is_none(), "the secret is never shown again");
    // The query instance's queues (its cache's and that queue's error queue) go with it.
    let prefix = format!("flightbench.query-cache.{}.", query.child.id().unwrap());
    let queues = || {
        let out = std::process::Command::new("rabbitmqctl").args(["-q", "list_queues", "name"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().filter(|q| q.starts_with(&prefix)).count()
    };
    assert_eq!(queues(), 2, "the running query instance's queue and its error queue");
    let mut query = query;
    query.child.start_kill().unwrap();
    query.child.wait().await.unwrap();
    let start = Instant::now();
    while queues() > 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the query instance's queues outlived it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((notify, query, command));
    topology.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_each_service_broker_restart_and_failing_target_lose_no_notification() {
    let _broker = crate::bus::BROKER.lock().await;
    let ds = dataset(Kind::Sqlite, spec(42, 600, 10), 2).await;
    let notify_db = tempfile::tempdir().unwrap();
    let topology = Topology::new(ds.dir(), notify_db.path().join("notify.sqlite"));
    let target = Target::default();
    let hook = format!("http://{}/hook", target.start().await);
    let mut notify = topology.start("notify").await;
    let mut query = topology.start("query").await;
    let mut command = topology.start("command").await;
    let flights = ds.writable_flights(24);
    let mut airports: Vec<String> =
        flights.iter().map(|id| ds.expected_flight(id.get()).unwrap().flight.origin.to_string()).collect();
    airports.sort();
    airports.dedup();
    subscribe(notify.api, &hook, &airports).await;

    // One writer per flight group, through whatever command service is up; only
    // 201s count as acknowledged.
    let acknowledged: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let command_addr = Arc::new(Mutex::new(command.api));
    let stop = Arc::new(AtomicBool::new(false));
    let mut versions = BTreeMap::new();
    for &id in &flights {
        versions.insert(id, current_version(query.api, Proto::H1, id).await);
    }
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (acknowledged, command_addr, stop) = (acknowledged.clone(), command_addr.clone(), stop.clone());
            let mut mine: Vec<(FlightId, i64)> = versions.iter().skip(w).step_by(4).map(|(&id, &v)| (id, v)).collect();
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let slot = n % mine.len();
                    let (id, version) = mine[slot];
                    let addr = *command_addr.lock().unwrap();
                    match report(addr, id, version, 1 + (n % 90) as i64).await {
                        Reported::Written(next) => {
                            acknowledged.lock().unwrap().insert(format!("{id}/{next}"));
                            mine[slot].1 = next;
                        }
                        // A write whose 201 was lost with a killed command service.
                        Reported::Conflict(current) => mine[slot].1 = current,
                        Reported::Down => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                mine
            })
        })
        .collect();

    let grows = |by: usize| {
        let acknowledged = acknowledged.clone();
        async move {
            let target = acknowledged.lock().unwrap().len() + by;
            let start = Instant::now();
            while acknowledged.lock().unwrap().len() < target {
                assert!(start.elapsed() < Duration::from_secs(30), "writes stalled");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    grows(40).await;
    let mut recoveries = Vec::new();
    for victim in ["notify", "command", "query"] {
        let service = match victim {
            "notify" => &mut notify,
            "command" => &mut command,
            _ => &mut query,
        };
        service.child.start_kill().unwrap();
        service.child.wait().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let restarted = Instant::now();
        *service = topology.start(victim).await;
        if victim == "command" {
            *command_addr.lock().unwrap() = command.api;
        }
        let delivered_before = target.delivered().len();
        grows(40).await;
        recoveries.push(target.delivers_beyond(delivered_before, victim, restarted, Duration::from_secs(30)).await);
    }
    // The broker, under the same writes: every process's links reconnect by themselves
    // (the relay's outbox holds what is written meanwhile), none restarted by us.
    let guard = crate::bus::RestartGuard;
    tokio::task::spawn_blocking(|| crate::bus::rabbitmqctl(&["-q", "stop_app"])).await.unwrap();
    grows(40).await;
    tokio::task::spawn_blocking(|| crate::bus::rabbitmqctl(&["-q", "start_app"])).await.unwrap();
    let back = Instant::now();
    drop(guard);
    let delivered_before = target.delivered().len();
    grows(40).await;
    recoveries.push(target.delivers_beyond(delivered_before, "broker", back, Duration::from_secs(60)).await);
    // The webhook target fails for a while: deliveries are retried until it answers.
    target.failing.store(true, Ordering::SeqCst);
    grows(40).await;
    target.failing.store(false, Ordering::SeqCst);
    let failed = target.received.lock().unwrap().iter().filter(|r| r.answered >= 300).count();
    assert!(failed > 0, "the target refused deliveries while failing");
    stop.store(true, Ordering::SeqCst);
    let mut last = BTreeMap::new();
    for writer in writers {
        for (id, version) in writer.await.unwrap() {
            last.insert(id, version);
        }
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    target.wait_for(&acknowledged, Duration::from_secs(60)).await;
    let delivered = target.delivered();
    let repeats: usize = delivered.values().map(|n| n - 1).sum();
    // Writes whose 201 was lost with a killed command service may be delivered too;
    // every acknowledged one is, and nothing is delivered that was never written.
    for event_id in delivered.keys() {
        let (flight, version) = event_id.split_once('/').unwrap();
        let id = FlightId::new(flight.parse().unwrap()).unwrap();
        let stream = ds.store.events(flightbench::store::QueryPath::Raw, id).await.unwrap();
        assert!(stream.iter().any(|e| e.version.to_string() == version), "{event_id} delivered but not in the store");
    }
    // The query service's cache (restarted, then reconnected after the broker's
    // restart) shows every flight's last write.
    for (&id, &version) in &last {
        let stored = ds.store.flight(flightbench::store::QueryPath::Raw, id).await.unwrap().status.version;
        assert!(stored >= version);
        assert_eq!(current_version(query.api, Proto::H1, id).await, stored, "flight {id} stale on the query service");
    }
    eprintln!(
        "split under kills: {} acknowledged writes, all delivered ({} repeated deliveries, {} events delivered, {} tries refused by the failing target); recovered after {}",
        acknowledged.len(),
        repeats,
        delivered.len(),
        failed,
        recoveries.join(", ")
    );
    drop((notify, query, command));
    topology.remove().await;
}

/// `flightbench up` starts a whole split topology from one file: writes through its
/// gateway reach the query instances' caches and a subscriber's webhook; SIGTERM stops
/// every process it started and it exits 0; each process's lines carry its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_a_topology_from_one_file_and_stops_all_of_it() {
    use std::io::BufRead;
    let _broker = crate::bus::BROKER.lock().await;
    let ds = dataset(Kind::Sqlite, spec(43, 300, 10), 2).await;
    let scratch = tempfile::tempdir().unwrap();
    let topology = Topology::new(ds.dir(), scratch.path().join("notify.sqlite"));
    let file = serde_json::json!({
        "dir": ds.dir(),
        "bus_exchange": topology.exchange,
        "services": {
            "query": { "addrs": ["127.0.0.1:0", "127.0.0.1:0"] },
            "command": { "addrs": ["127.0.0.1:0"] },
            "notify": { "addrs": ["127.0.0.1:0"], "args": [
                "--notify-db", topology.notify_db, "--notify-queue", topology.notify_queue, "--webhook-retry", "100ms"
            ] }
        },
        "gateway": { "addr": "127.0.0.1:0", "settings": { "health": { "interval_ms": 200, "timeout_ms": 1000, "eject_after": 2 } } }
    });
    let config = scratch.path().join("topology.json");
    std::fs::write(&config, file.to_string()).unwrap();
    let stderr = std::fs::File::create(scratch.path().join("up.log")).unwrap();
    let mut up = std::process::Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["up", "--config", &config.display().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let (lines, front) = tokio::task::spawn_blocking({
        let stdout = up.stdout.take().unwrap();
        move || {
            let mut lines = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line.unwrap();
                lines.push(line.clone());
                if let Some(rest) = line.strip_prefix("up: gateway on http://") {
                    let front: SocketAddr = rest.split(',').next().unwrap().parse().unwrap();
                    return (lines, front);
                }
            }
            panic!("up never said it was ready: {lines:?}");
        }
    })
    .await
    .unwrap();
    let pids: Vec<i32> =
        lines.iter().filter_map(|l| l.split(" pid ").nth(1)?.split(' ').next()?.parse().ok()).collect();
    assert_eq!(pids.len(), 5, "gateway and four services: {lines:?}");

    // Through the gateway: subscribe, read (cached by a query instance), write, and
    // see the write in the read and at the webhook.
    let target = Target::default();
    let hook = format!("http://{}/hooks/delays", target.start().await);
    let id = ds.writable_flights(1)[0];
    let flight = ds.expected_flight(id.get()).unwrap().flight;
    subscribe(front, &hook, &[flight.origin.to_string()]).await;
    let before = current_version(front, Proto::H1, id).await;
    let written = write_ok(front, id, before, 15).await;
    let acknowledged = Instant::now();
    while current_version(front, Proto::H1, id).await != written {
        assert!(acknowledged.elapsed() < Duration::from_secs(10), "reads through the gateway stayed stale for 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    target.wait_for(&BTreeSet::from([format!("{id}/{written}")]), Duration::from_secs(15)).await;

    // SIGTERM: every process stops, up exits 0.
    // SAFETY: kill only sends a signal to our child's pid.
    unsafe { libc::kill(up.id() as libc::pid_t, libc::SIGTERM) };
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = up.try_wait().unwrap() {
            break status;
        }
        assert!(stopping.elapsed() < Duration::from_secs(30), "up did not stop within 30 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    for pid in pids {
        // SAFETY: signal 0 only checks that the pid exists.
        assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "process {pid} outlived up");
    }
    let log = std::fs::read_to_string(scratch.path().join("up.log")).unwrap();
    for name in ["gateway", "query-1", "query-2", "command-1", "notify-1"] {
        assert!(log.contains(&format!("[{name}] listening on ")), "no [{name}] lines in:\n{log}");
    }
    assert!(log.contains("[notify-1] webhooks: 1 recorded"), "{log}");
    topology.remove().await;
}

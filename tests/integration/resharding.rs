//! Online resharding (`flightbench reshard`): a real `serve` process keeps taking
//! writes and reads over HTTP while `reshard` runs, and `reshard` is SIGKILLed in each
//! of its phases, then `serve`. Afterwards every acknowledged
//! write is in the new layout exactly once, no read or write ever failed, and every
//! flight is on the shard it hashes to. Bad input changes nothing.

use crate::app::ServeProcess;
use crate::client::{Proto, current_version, get, post_delay, try_send};
use crate::helpers::{Kind, dataset, spec};
use flightbench::dataset::Manifest;
use flightbench::domain::FlightId;
use flightbench::routing::ShardCount;
use http_body_util::Full;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const WRITERS: usize = 4;
/// Two connections per shard and library: with PostgreSQL, the server, its new
/// layout's pools and `reshard` share the test server's 100 connections with the
/// other tests.
const SERVE: &[&str] = &["--no-admin", "--pool-size", "2"];
const FLIGHTS: usize = 32;

/// Reason → (flight, version its 201 reported); reasons are unique per request.
type Acknowledged = Arc<Mutex<HashMap<String, (FlightId, i64)>>>;

/// Writers and readers against one server until it stops or is told to.
struct Traffic {
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    async fn start(addr: SocketAddr, flights: &[FlightId], acknowledged: &Acknowledged, tag: &str) -> Self {
        let mut versions = Vec::new();
        for &id in flights {
            versions.push(current_version(addr, Proto::H1, id).await);
        }
        let (stop, failures) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let mut mine: Vec<(FlightId, i64)> =
                flights.iter().zip(&versions).skip(w).step_by(WRITERS).map(|(&f, &v)| (f, v)).collect();
            let (stop, failures, acknowledged, tag) =
                (stop.clone(), failures.clone(), acknowledged.clone(), tag.to_owned());
            tasks.push(tokio::spawn(async move {
                let proto = if w % 2 == 0 { Proto::H1 } else { Proto::H2c };
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let slot = n % mine.len();
                    let (id, version) = mine[slot];
                    let reason = format!("reshard-{tag}-w{w}-n{n}");
                    let body = format!(r#"{{"kind":"revised","delay_minutes":{},"reason":"{reason}"}}"#, n % 90 + 1);
                    match try_send(addr, proto, post_delay(id.get(), Some(&format!("\"{version}\"")), &body)).await {
                        Ok(reply) if reply.status == http::StatusCode::CREATED => {
                            let new_version = reply.json()["status"]["version"].as_i64().unwrap();
                            acknowledged.lock().unwrap().insert(reason, (id, new_version));
                            mine[slot].1 = new_version;
                        }
                        Ok(reply) => {
                            let body = String::from_utf8_lossy(&reply.body).into_owned();
                            failures.lock().unwrap().push(format!("write {id}: {} {body}", reply.status));
                            return;
                        }
                        Err(_) => return, // the server was killed
                    }
                }
            }));
        }
        for r in 0..2usize {
            let (stop, failures, flights) = (stop.clone(), failures.clone(), flights.to_vec());
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let uri = if n % 2 == 0 {
                        format!("/flights/{}", flights[(n + r) % flights.len()])
                    } else {
                        "/airports/ATL/departures?from=2026-12-01T06:00:00Z&to=2026-12-01T12:00:00Z&limit=20".to_owned()
                    };
                    match try_send(addr, Proto::H1, get(&uri).body(Full::default()).unwrap()).await {
                        Ok(reply) if reply.status == http::StatusCode::OK => {}
                        Ok(reply) => {
                            failures.lock().unwrap().push(format!("read {uri}: {}", reply.status));
                            return;
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        Traffic { stop, failures, tasks }
    }

    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        self.failures.lock().unwrap().clone()
    }
}

fn reshard_command(dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightbench"));
    // At the server's priority: the writers here use every core, and at a lower one the
    // reshard would wait for idle CPU that never comes.
    command.arg("reshard").arg("--dir").arg(dir).args(args).args(["--quiet", "--nice", "0"]).kill_on_drop(true);
    command
}

/// Starts `reshard --to 8` held in `phase`; returns once it says it is there.
async fn reshard_held_in(dir: &Path, phase: &str) -> tokio::process::Child {
    let mut child = reshard_command(dir, &["--to", "8"])
        .env("FLIGHTBENCH_RESHARD_HOLD", phase)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let wanted = format!("holding in phase {phase}");
    let reached = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(&wanted) {
                return;
            }
            assert!(!line.starts_with("error"), "reshard failed before {phase}: {line}");
        }
        panic!("reshard exited before reaching {phase}");
    });
    reached.await.unwrap_or_else(|_| panic!("reshard did not reach {phase} within 120 s"));
    child
}

async fn acknowledged_grows(acknowledged: &Acknowledged, by: usize, what: &str) {
    let target = acknowledged.lock().unwrap().len() + by;
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < target {
        assert!(Instant::now() < deadline, "writes stalled {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_writes_survives_a_kill_in_every_phase_and_loses_nothing_sqlite() {
    reshard_under_writes(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_writes_survives_a_kill_in_every_phase_and_loses_nothing_postgres() {
    reshard_under_writes(Kind::Postgres).await;
}

/// Every flight id on each shard of the dataset's current layout.
async fn ids_by_shard(dir: &Path) -> Vec<Vec<i64>> {
    let manifest = Manifest::load(dir).unwrap();
    let mut shards = Vec::new();
    match (&manifest.sqlite, &manifest.postgres) {
        (Some(s), _) => {
            for file in &s.files {
                let conn = rusqlite::Connection::open(dir.join(file)).unwrap();
                let mut stmt = conn.prepare("SELECT id FROM flights").unwrap();
                shards.push(stmt.query_map([], |r| r.get::<_, i64>(0)).unwrap().map(Result::unwrap).collect());
            }
        }
        (None, Some(p)) => {
            for url in &p.shard_urls {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                shards.push(
                    client.query("SELECT id FROM flights", &[]).await.unwrap().iter().map(|r| r.get(0)).collect(),
                );
            }
        }
        (None, None) => unreachable!("a loaded manifest names its shards"),
    }
    shards
}

async fn reshard_under_writes(kind: Kind) {
    let ds = dataset(kind, spec(31, 3_000, 10), 4).await;
    let dir = ds.dir().to_owned();
    let flights = ds.writable_flights(FLIGHTS);
    let acknowledged: Acknowledged = Arc::default();
    let mut server = ServeProcess::start(&dir, &[], SERVE, false).await;
    for phase in ["copy", "catch-up", "verify", "switch"] {
        let traffic = Traffic::start(server.api, &flights, &acknowledged, phase).await;
        let mut reshard = reshard_held_in(&dir, phase).await;
        if phase == "switch" {
            // Held after fencing the old shards: writes wait, as in any switch's
            // pause, for at most `follow::LAYOUT_WAIT` (10 s) before a 503.
            tokio::time::sleep(Duration::from_millis(300)).await;
        } else {
            acknowledged_grows(&acknowledged, 20, &format!("with reshard held in {phase}")).await;
        }
        reshard.start_kill().unwrap();
        reshard.wait().await.unwrap();
        // In the switch the old shards are fenced when the reshard dies: the server
        // finds no reshard holding the dataset and takes the fence down.
        acknowledged_grows(&acknowledged, 20, &format!("after reshard was killed in {phase}")).await;
        // Then the server too, mid-traffic; it restarts on whatever the dataset is.
        server.child.start_kill().unwrap();
        server.child.wait().await.unwrap();
        let failures = traffic.finish().await;
        assert!(failures.is_empty(), "{phase}: {failures:?}");
        server = ServeProcess::start(&dir, &[], SERVE, false).await;
        let manifest = Manifest::load(&dir).unwrap();
        assert_eq!((manifest.shards.get(), manifest.layout), (4, 1), "killed in {phase}: the old layout serves");
    }

    // Run to the end (it resumes) while the traffic goes on, then a little more.
    let traffic = Traffic::start(server.api, &flights, &acknowledged, "final").await;
    let out = reshard_command(&dir, &["--to", "8", "--json"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["resumed"], true, "{report}");
    assert_eq!(report["flights_verified"], 3_000, "{report}");
    acknowledged_grows(&acknowledged, 40, "after the switch").await;
    let failures = traffic.finish().await;
    assert!(failures.is_empty(), "final: {failures:?}");

    let manifest = Manifest::load(&dir).unwrap();
    assert_eq!((manifest.shards.get(), manifest.layout), (8, 2));
    // Every flight once, on the shard it hashes to.
    let eight = ShardCount::new(8).unwrap();
    let mut ids = Vec::new();
    for (shard, on_shard) in ids_by_shard(&dir).await.into_iter().enumerate() {
        for id in on_shard {
            assert_eq!(eight.shard_for(id), shard, "flight {id} on the wrong shard");
            ids.push(id);
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=3_000).collect::<Vec<_>>());

    // Every acknowledged write exactly once, at its version, read through a server
    // started on the new layout.
    drop(server);
    let server = ServeProcess::start(&dir, &[], SERVE, false).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 200, "only {} writes acknowledged", acknowledged.len());
    crate::crash::assert_acknowledged_once(server.api, &flights, &acknowledged).await;
    eprintln!("{} acknowledged writes across 4 killed reshards and one that finished", acknowledged.len());
}

/// `reshard`'s answer: exit code and what it printed on stderr.
async fn reshard_answer(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = reshard_command(dir, args).output().await.unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn digests(dir: &Path) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["query", "--dir"])
        .arg(dir)
        .arg("digest")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reshard_requests_are_refused_and_change_nothing_sqlite() {
    bad_requests(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reshard_requests_are_refused_and_change_nothing_postgres() {
    bad_requests(Kind::Postgres).await;
}

async fn bad_requests(kind: Kind) {
    let ds = dataset(kind, spec(32, 600, 5), 4).await;
    let dir = ds.dir().to_owned();
    let before = digests(&dir);

    let (code, err) = reshard_answer(&dir, &["--to", "4"]).await;
    assert_eq!((code, err.contains("already has 4 shards")), (64, true), "{err}");
    for bad in ["0", "257", "x"] {
        let (code, err) = reshard_answer(&dir, &["--to", bad]).await;
        assert_eq!(code, 64, "--to {bad}: {err}");
    }
    let (code, err) = reshard_answer(&dir, &["--abort"]).await;
    assert_eq!((code, err.contains("nothing to abort")), (64, true), "{err}");

    // A directory the new layout would use that holds someone else's data.
    std::fs::create_dir(dir.join("layout-2")).unwrap();
    std::fs::write(dir.join("layout-2/notes.txt"), "mine").unwrap();
    let (code, err) = reshard_answer(&dir, &["--to", "8"]).await;
    assert_eq!((code, err.contains("already exists")), (64, true), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("layout-2/notes.txt")).unwrap(), "mine");
    std::fs::remove_dir_all(dir.join("layout-2")).unwrap();

    // One reshard at a time; an interrupted one to another count is named.
    let mut held = reshard_held_in(&dir, "catch-up").await;
    let (code, err) = reshard_answer(&dir, &["--to", "8"]).await;
    assert_eq!((code, err.contains("another `flightbench reshard` holds")), (64, true), "{err}");
    held.start_kill().unwrap();
    held.wait().await.unwrap();
    let (code, err) = reshard_answer(&dir, &["--to", "6"]).await;
    assert_eq!((code, err.contains("a reshard to 8 shards was interrupted")), (64, true), "{err}");

    // Abort: the new layout and the state go; the old layout is as it was.
    let (code, err) = reshard_answer(&dir, &["--abort"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(!dir.join("layout-2").exists() && !dir.join("reshard.json").exists());
    if let Some(pg) = &ds.pg {
        let (client, conn) =
            tokio_postgres::connect(&format!("{}/postgres", crate::helpers::pg_base()), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        let left = client
            .query("SELECT datname FROM pg_database WHERE datname LIKE $1", &[&format!("{}%_l2_%", pg.name)])
            .await
            .unwrap();
        assert!(left.is_empty(), "abort left the new layout's databases");
    }
    assert_eq!(digests(&dir), before);
    let manifest = Manifest::load(&dir).unwrap();
    assert_eq!((manifest.shards.get(), manifest.layout), (4, 1));

    // And a reshard then goes through, shrinking as well as growing.
    for to in ["8", "3"] {
        let (code, err) = reshard_answer(&dir, &["--to", to]).await;
        assert_eq!(code, 0, "--to {to}: {err}");
    }
    let manifest = Manifest::load(&dir).unwrap();
    assert_eq!((manifest.shards.get(), manifest.layout), (3, 3));
    let fresh = dataset(kind, spec(32, 600, 5), 3).await;
    assert_eq!(digests(&dir), digests(fresh.dir()), "4 → 8 → 3 shards holds what a 3-shard seed holds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_relay_follows_a_reshard_and_publishes_every_acknowledged_write_sqlite() {
    relay_follows_a_reshard(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_relay_follows_a_reshard_and_publishes_every_acknowledged_write_postgres() {
    relay_follows_a_reshard(Kind::Postgres).await;
}

/// Every acknowledged write reaches the queue `recorder` consumes within 30 s.
async fn all_published(recorder: &crate::bus::Recorder, acknowledged: &Acknowledged) {
    let wanted: std::collections::BTreeSet<(i64, i64)> =
        acknowledged.lock().unwrap().values().map(|(id, version)| (id.get(), *version)).collect();
    let start = Instant::now();
    loop {
        let seen = recorder.tally();
        let missing: Vec<_> = wanted.iter().filter(|w| !seen.contains_key(w)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} of {} acknowledged writes never reached the broker, e.g. {:?}",
            missing.len(),
            wanted.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{} acknowledged writes, every one published", wanted.len());
}

/// A relay that was not running during the switch: writes made while it was down,
/// before and after the reshard, are published once it starts on the new layout
/// (from the checkpoints the switch carried there, not from the newest events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_down_during_a_reshard_publishes_what_was_written_meanwhile() {
    let _broker = crate::bus::BROKER.lock().await;
    let (names, recorder, consumer) = crate::bus::recorded_exchange("reshard-down").await;
    let ds = dataset(Kind::Sqlite, spec(34, 1_500, 10), 2).await;
    let dir = ds.dir().to_owned();
    let flights = ds.writable_flights(FLIGHTS);
    let acknowledged: Acknowledged = Arc::default();
    let relaying = [SERVE, &["--relay", "--bus-exchange", &names.exchange]].concat();
    // The relay's first start, and writes it publishes.
    let server = ServeProcess::start(&dir, &[], &relaying, false).await;
    let traffic = Traffic::start(server.api, &flights, &acknowledged, "relayed").await;
    acknowledged_grows(&acknowledged, 20, "with the relay").await;
    assert!(traffic.finish().await.is_empty());
    let mut server = server;
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    // No relay: writes before, during and after the reshard wait in the event log.
    let server = ServeProcess::start(&dir, &[], SERVE, false).await;
    let traffic = Traffic::start(server.api, &flights, &acknowledged, "unrelayed").await;
    acknowledged_grows(&acknowledged, 20, "before the reshard, the relay down").await;
    let out = reshard_command(&dir, &["--to", "4"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    acknowledged_grows(&acknowledged, 20, "after the switch, the relay down").await;
    assert!(traffic.finish().await.is_empty());
    drop(server);
    // The relay starts on the new layout and publishes all of them.
    let server = ServeProcess::start(&dir, &[], &relaying, false).await;
    all_published(&recorder, &acknowledged).await;
    drop(server);
    consumer.stop().await;
    names.remove().await;
}

/// A server with the outbox relay (`--relay`) under writes while `reshard` runs to the
/// end: every write acknowledged before, during and after the switch reaches a queue
/// bound to the relay's exchange (the switch carries the relay's checkpoints to the
/// new layout, and the relay moves there with the server).
async fn relay_follows_a_reshard(kind: Kind) {
    let _broker = crate::bus::BROKER.lock().await;
    let (names, recorder, consumer) = crate::bus::recorded_exchange("reshard").await;
    let ds = dataset(kind, spec(33, 1_500, 10), 2).await;
    let dir = ds.dir().to_owned();
    let flights = ds.writable_flights(FLIGHTS);
    let acknowledged: Acknowledged = Arc::default();
    let relaying = [SERVE, &["--relay", "--bus-exchange", &names.exchange]].concat();
    let server = ServeProcess::start(&dir, &[], &relaying, false).await;
    let traffic = Traffic::start(server.api, &flights, &acknowledged, "relay").await;
    acknowledged_grows(&acknowledged, 20, "before the reshard").await;
    let out = reshard_command(&dir, &["--to", "4", "--json"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    acknowledged_grows(&acknowledged, 40, "after the switch").await;
    let failures = traffic.finish().await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(Manifest::load(&dir).unwrap().shards.get(), 4);

    all_published(&recorder, &acknowledged).await;
    drop(server);
    consumer.stop().await;
    names.remove().await;
}

//! No acknowledged write is lost: a real `flightbench serve` process takes concurrent
//! `POST /flights/{id}/delays`, is killed with SIGKILL at a random moment, and is
//! restarted; every request that got a 201 must then be in its flight's event stream
//! exactly once, and every projection must equal a replay of its events. Three rounds,
//! one of them on the per-core runtime; the cache is on (the default) throughout.

use crate::app::ServeProcess;
use crate::client::{Proto, current_version, get, post_delay, try_send};
use crate::helpers::{Kind, dataset, spec};
use flightbench::domain::{FlightId, FlightStatus, RecordedEvent};
use http_body_util::Full;
use rand::{RngExt, SeedableRng};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WRITERS: usize = 8;
const FLIGHTS: usize = 48;

/// Starts `flightbench serve` on a free port; returns the child and its address.
async fn start_server(dir: &Path, runtime: &str) -> (tokio::process::Child, SocketAddr) {
    let server = ServeProcess::start(dir, &[], &["--runtime", runtime], false).await;
    (server.child, server.api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_across_sigkill() {
    let ds = dataset(Kind::Sqlite, spec(77, 1_000, 10), 4).await;
    let dir = ds.dir().to_owned();
    let flights = ds.writable_flights(FLIGHTS);
    // Reason text → (flight, version the 201 reported). Reasons are unique per request.
    let acknowledged: Arc<Mutex<HashMap<String, (FlightId, i64)>>> = Arc::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);

    for round in 0..3 {
        // Both runtime shapes take the writes; the per-core one on two threads with
        // SO_REUSEPORT listeners.
        let runtime = if round == 1 { "per-core" } else { "multi-thread" };
        let (mut server, addr) = start_server(&dir, runtime).await;
        let mut versions = Vec::new();
        for &id in &flights {
            versions.push(current_version(addr, Proto::H1, id).await);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        // Kill after a random number of this round's writes were acknowledged: the
        // writers are busy then, whatever the machine's speed.
        let kill_after = acknowledged.lock().unwrap().len() + rng.random_range(100..250);
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let acknowledged = acknowledged.clone();
                let mine: Vec<(FlightId, i64)> =
                    flights.iter().zip(&versions).skip(w).step_by(WRITERS).map(|(&f, &v)| (f, v)).collect();
                tokio::spawn(async move {
                    let mut mine = mine;
                    let proto = if w % 2 == 0 { Proto::H1 } else { Proto::H2c };
                    for n in 0.. {
                        if Instant::now() > deadline {
                            break;
                        }
                        let slot = n % mine.len();
                        let (id, version) = mine[slot];
                        let reason = format!("crash-r{round}-w{w}-n{n}");
                        let body =
                            format!(r#"{{"kind":"revised","delay_minutes":{},"reason":"{reason}"}}"#, n % 90 + 1);
                        match try_send(addr, proto, post_delay(id.get(), Some(&format!("\"{version}\"")), &body)).await
                        {
                            Ok(reply) if reply.status == http::StatusCode::CREATED => {
                                let new_version = reply.json()["status"]["version"].as_i64().unwrap();
                                assert_eq!(new_version, version + 1);
                                acknowledged.lock().unwrap().insert(reason, (id, new_version));
                                mine[slot].1 = new_version;
                            }
                            Ok(reply) => panic!("unexpected {} for flight {id}: {:?}", reply.status, reply.body),
                            Err(_) => break, // the server is gone
                        }
                    }
                })
            })
            .collect();
        while acknowledged.lock().unwrap().len() < kill_after {
            assert!(Instant::now() < deadline, "the writers stalled before {kill_after} acknowledged writes");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.start_kill().unwrap();
        server.wait().await.unwrap();
        for writer in writers {
            writer.await.unwrap();
        }
    }

    let total = acknowledged.lock().unwrap().len();
    assert!(total >= 300, "only {total} writes were acknowledged; the test did not exercise the server");

    // Restart once more and check every stream through the server.
    let (_server, addr) = start_server(&dir, "per-core").await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_acknowledged_once(addr, &flights, &acknowledged).await;
    eprintln!("{total} acknowledged writes over 3 SIGKILLs, none lost or duplicated");
}

/// Through the server at `addr`: each flight's stream has versions 1..=n, every
/// acknowledged write (reason → flight and the version its 201 reported) is in it
/// exactly once at that version, and the status equals a replay of the stream.
pub async fn assert_acknowledged_once(
    addr: SocketAddr,
    flights: &[FlightId],
    acknowledged: &HashMap<String, (FlightId, i64)>,
) {
    for &id in flights {
        let reply = try_send(addr, Proto::H1, get(&format!("/flights/{id}/events")).body(Full::default()).unwrap())
            .await
            .unwrap();
        let events: Vec<RecordedEvent> = serde_json::from_slice(&reply.body).unwrap();
        let versions: Vec<i64> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=events.len() as i64).collect::<Vec<_>>(), "flight {id}: gap or duplicate version");
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for e in &events {
            *seen.entry(e.event.kind.reason()).or_default() += 1;
        }
        for (reason, (flight, version)) in acknowledged.iter().filter(|(_, (f, _))| *f == id) {
            assert_eq!(
                seen.get(reason.as_str()),
                Some(&1),
                "flight {flight}: acknowledged {reason} (v{version}) lost or duplicated"
            );
            assert_eq!(
                events[*version as usize - 1].event.kind.reason(),
                reason,
                "flight {flight}: {reason} not at v{version}"
            );
        }
        let status =
            try_send(addr, Proto::H1, get(&format!("/flights/{id}")).body(Full::default()).unwrap()).await.unwrap();
        let stored: FlightStatus = serde_json::from_value(status.json()["status"].clone()).unwrap();
        assert_eq!(
            stored,
            FlightStatus::replay(events.iter().map(|e| &e.event)).unwrap(),
            "flight {id}: projection != replay"
        );
    }
}

//! Read after write through a topology's front: how long after a write's 201 a read
//! of the same flight still answers the old version. The monolith invalidates its
//! cache in the write's own request; the split's query service only when the event
//! has gone through the outbox relay and the broker to its consumer. This is the bound
//! the split puts on stale reads, measured under the part's load.
//!
//! The probe reads a flight (so the cache holds it), writes it, and reads it again
//! every [`POLL`] on one kept connection until the new version shows, one write
//! every [`EVERY`], on flights the checking writer does not touch.

use super::Freshness;
use crate::domain::FlightId;
use crate::store::{QueryPath, Store, StoreError};
use crate::workbench::writer::{Sender, send_kept};
use bytes::Bytes;
use http_body_util::Full;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One probe write every 50 ms: 20 a second, 40 in a 2 s window.
const EVERY: Duration = Duration::from_millis(50);

/// The pause between reads of a write not yet readable: the figures' resolution. A
/// first version read back to back; at a 15 ms p50 that was about 1,500 extra reads a
/// second, a quarter more than the split was offered, and it fell behind the rate.
/// At 2 ms the probe adds about 200 requests a second (20 writes, each with a read
/// before and about 8 after).
const POLL: Duration = Duration::from_millis(2);

/// Flights the probe writes in turn (from the highest id down: the checking writer
/// takes its 64 from the lowest up).
const FLIGHTS: usize = 16;

/// A write still not readable after this counts as stale, and the probe moves on.
pub const FRESH_WAIT: Duration = Duration::from_secs(5);

/// Probes until `stop` is set.
pub(super) async fn probe(
    front: SocketAddr,
    store: Arc<Store>,
    stop: Arc<AtomicBool>,
) -> Result<Freshness, StoreError> {
    let mut flights: Vec<(FlightId, i64)> = Vec::new();
    for id in (1..=store.manifest().counts.flights as i64).rev().filter_map(|id| FlightId::new(id).ok()) {
        if flights.len() == FLIGHTS {
            break;
        }
        let status = store.flight(QueryPath::Raw, id).await?.status;
        if !status.state.is_terminal() {
            flights.push((id, status.version));
        }
    }
    let mut connection = None;
    let mut samples = Vec::new();
    let (mut stale, mut failed) = (0u64, 0u64);
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) && !flights.is_empty() {
        ticks.tick().await;
        let slot = n % flights.len();
        n += 1;
        let id = flights[slot].0;
        // Read first, so that the cache holds the flight when the write lands.
        let Ok(Some(version)) = read_version(&mut connection, front, id).await else {
            failed += 1;
            continue;
        };
        let body = serde_json::json!({"kind": "revised", "delay_minutes": n % 90 + 1, "reason": "freshness probe"});
        let request = http::Request::post(format!("/flights/{id}/delays"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::IF_MATCH, format!("\"{version}\""))
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("a request of valid parts");
        let written = match send_kept(&mut connection, front, request).await {
            Ok((201, answer)) => answer["status"]["version"].as_i64(),
            // The load wrote it in between: next time, from its version.
            Ok((409, _)) => continue,
            Ok((422, _)) => {
                flights.remove(slot);
                continue;
            }
            Ok(_) | Err(_) => None,
        };
        let Some(written) = written else {
            failed += 1;
            continue;
        };
        let acknowledged = Instant::now();
        flights[slot].1 = written;
        loop {
            match read_version(&mut connection, front, id).await {
                // The load may have written it again since: any later version is fresh.
                Ok(Some(seen)) if seen >= written => {
                    samples.push(acknowledged.elapsed().as_secs_f64() * 1e3);
                    break;
                }
                Ok(Some(_)) if acknowledged.elapsed() < FRESH_WAIT => tokio::time::sleep(POLL).await,
                Ok(Some(_)) => {
                    stale += 1;
                    break;
                }
                Ok(None) | Err(_) => {
                    failed += 1;
                    break;
                }
            }
        }
    }
    Ok(Freshness::of(samples, stale, failed))
}

/// The flight's version as a read through `front` answers it.
async fn read_version(connection: &mut Option<Sender>, front: SocketAddr, id: FlightId) -> Result<Option<i64>, String> {
    let request = http::Request::get(format!("/flights/{id}")).body(Full::new(Bytes::new())).expect("valid parts");
    let (status, answer) = send_kept(connection, front, request).await?;
    Ok((status == 200).then(|| answer["status"]["version"].as_i64()).flatten())
}

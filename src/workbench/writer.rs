//! A checking writer, beside a part's load: one keep-alive HTTP/1.1 connection
//! revising the first [`CHECKED_FLIGHTS`] flights that still take events,
//! round-robin, each report with a unique reason and the version its flight's last
//! 201 gave (`If-Match`), recording every 201 and when it came. The reshard part then
//! looks for each in the new layout ([`Acknowledged::found_in`]); the topology part
//! times each one's webhook. (The load generator's own writes learn versions but keep
//! no record of what was acknowledged.)

use crate::domain::FlightId;
use crate::store::{QueryPath, Store, StoreError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Flights the writer revises round-robin.
pub const CHECKED_FLIGHTS: usize = 64;

/// At most this many writes a second (one every 5 ms): a trickle beside the load,
/// enough to have writes in every phase, the switch's pause included.
const EVERY: Duration = Duration::from_millis(5);

/// Every 201 the writer got, and the writes that failed.
#[derive(Debug, Default)]
pub(crate) struct Acknowledged {
    /// reason → (flight, version).
    pub writes: BTreeMap<String, (FlightId, i64)>,
    /// (flight, version) → when its 201 arrived.
    pub at: BTreeMap<(FlightId, i64), std::time::Instant>,
    /// Answered with anything but 201, 409 or 422, or not at all.
    pub failed: u64,
}

/// Writes until `stop` is set. The flights and their versions are read from `store`
/// first.
pub(crate) async fn write_until(
    addr: SocketAddr,
    store: Arc<Store>,
    stop: Arc<AtomicBool>,
) -> Result<Acknowledged, StoreError> {
    let mut versions = BTreeMap::new();
    for id in (1..=store.manifest().counts.flights as i64).filter_map(|id| FlightId::new(id).ok()) {
        if versions.len() == CHECKED_FLIGHTS {
            break;
        }
        let status = store.flight(QueryPath::Raw, id).await?.status;
        if !status.state.is_terminal() {
            versions.insert(id, status.version);
        }
    }
    let flights: Vec<FlightId> = versions.keys().copied().collect();
    let mut acknowledged = Acknowledged::default();
    let mut closed: HashSet<FlightId> = HashSet::new();
    let mut connection = None;
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) && closed.len() < flights.len() {
        ticks.tick().await;
        let id = flights[n as usize % flights.len()];
        n += 1;
        if closed.contains(&id) {
            continue;
        }
        let reason = format!("checked-write-{n}");
        let body = serde_json::json!({"kind": "revised", "delay_minutes": n % 90 + 1, "reason": reason});
        match post(&mut connection, addr, id, versions[&id], body.to_string()).await {
            Ok((201, answer)) => match answer["status"]["version"].as_i64() {
                Some(version) => {
                    versions.insert(id, version);
                    acknowledged.writes.insert(reason, (id, version));
                    acknowledged.at.insert((id, version), std::time::Instant::now());
                }
                None => acknowledged.failed += 1,
            },
            Ok((409, answer)) => {
                if let Some(current) = answer["current_version"].as_i64() {
                    versions.insert(id, current);
                }
            }
            Ok((422, _)) => {
                closed.insert(id);
            }
            Ok(_) | Err(_) => {
                acknowledged.failed += 1;
                connection = None;
            }
        }
    }
    Ok(acknowledged)
}

pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One report on the kept connection (opened again after a failure): the status and
/// the answer's JSON (`null` when it had none).
async fn post(
    connection: &mut Option<Sender>,
    addr: SocketAddr,
    id: FlightId,
    version: i64,
    body: String,
) -> Result<(u16, serde_json::Value), String> {
    let request = http::Request::post(format!("/flights/{id}/delays"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::IF_MATCH, format!("\"{version}\""))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    send_kept(connection, addr, request).await
}

/// `request` on the kept HTTP/1.1 connection to `addr` (opened again after a
/// failure): the status and the answer's JSON (`null` when it had none).
pub(crate) async fn send_kept(
    connection: &mut Option<Sender>,
    addr: SocketAddr,
    mut request: http::Request<Full<Bytes>>,
) -> Result<(u16, serde_json::Value), String> {
    if connection.as_ref().is_none_or(|c| c.is_closed()) {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        *connection = Some(sender);
    }
    let sender = connection.as_mut().ok_or("no connection")?;
    sender.ready().await.map_err(|e| e.to_string())?;
    let host = http::HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?;
    request.headers_mut().insert(http::header::HOST, host);
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)))
}

impl Acknowledged {
    /// How many of the acknowledged writes `store` holds exactly once, each at the
    /// version its 201 gave.
    pub(crate) async fn found_in(&self, store: &Store) -> Result<u64, StoreError> {
        let mut by_flight: BTreeMap<FlightId, Vec<(&str, i64)>> = BTreeMap::new();
        for (reason, &(id, version)) in &self.writes {
            by_flight.entry(id).or_default().push((reason, version));
        }
        let mut found = 0;
        for (id, writes) in by_flight {
            let events = store.events(QueryPath::Raw, id).await?;
            for (reason, version) in writes {
                let at: Vec<i64> =
                    events.iter().filter(|e| e.event.kind.reason() == reason).map(|e| e.version).collect();
                if at == [version] {
                    found += 1;
                }
            }
        }
        Ok(found)
    }
}

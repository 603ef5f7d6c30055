//! The live feed: every departures-board change, as the runner commits it, sent to
//! the subscribers of its airport (`GET /live?airport=…` as Server-Sent Events, and
//! through it the `/dashboard` page).
//!
//! One bounded broadcast channel per airport that has subscribers (tokio's
//! `broadcast`: a send never waits, and each subscriber reads from a ring of
//! [`CAPACITY`] frames at its own pace). A subscriber whose client stops reading
//! stops being polled once its socket's buffers are full, falls [`CAPACITY`] frames
//! behind, and is sent one final `dropped` event and closed: it never holds up the
//! runner, the writers or the other subscribers. Each change is rendered once, as
//! SSE text, and shared by every subscriber of its airport; an airport nobody
//! watches costs a map lookup.

use crate::domain::{AirportCode, Flight, FlightStatus, RecordedEvent};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{BoxStream, Stream};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// Frames a subscriber may fall behind before it is dropped. At the 300 writes/s
/// this machine sustains with the runner beside them (`results/projections.md`) a
/// hub gets a fraction of them, so 256 is several seconds of a client not reading,
/// and 256 shared frames of about 600 bytes per airport at most.
pub const CAPACITY: usize = 256;

/// Airports one subscription may name: the dashboard shows up to 12.
pub const MAX_AIRPORTS: usize = 32;

/// A comment line sent this often when nothing else is, so that a client (or a proxy
/// between) whose connection died is noticed, and idle proxies do not cut it.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One change as subscribers receive it (the `data` of a `delay` event).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct LiveUpdate {
    /// The event's number on its shard.
    pub seq: i64,
    pub shard: usize,
    pub flight: Flight,
    pub event: RecordedEvent,
    /// The flight's status after the event.
    pub status: FlightStatus,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LiveError {
    #[error("the live feed has {0} subscribers, its limit; try again later")]
    Full(u64),
    #[error("the server is shutting down")]
    Closed,
}

/// The feed's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct LiveStats {
    pub subscribers: AtomicU64,
    /// Changes published to airports with subscribers.
    pub published: AtomicU64,
    /// Subscribers dropped for falling [`CAPACITY`] frames behind.
    pub dropped: AtomicU64,
}

/// Subscribers by airport.
pub struct LiveFeed {
    channels: RwLock<HashMap<AirportCode, broadcast::Sender<Bytes>>>,
    max_subscribers: u64,
    closed: AtomicBool,
    stats: Arc<LiveStats>,
}

impl LiveFeed {
    pub fn new(max_subscribers: u64) -> Arc<Self> {
        Arc::new(Self {
            channels: RwLock::new(HashMap::new()),
            max_subscribers,
            closed: AtomicBool::new(false),
            stats: Arc::new(LiveStats::default()),
        })
    }

    pub fn stats(&self) -> &LiveStats {
        &self.stats
    }

    /// Whether anyone watches `airport` (so the caller can skip rendering).
    pub fn watched(&self, airport: &AirportCode) -> bool {
        let channels = self.channels.read().unwrap_or_else(|p| p.into_inner());
        channels.get(airport).is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Sends `update` to its airport's subscribers; never waits.
    pub fn publish(&self, airport: &AirportCode, update: &LiveUpdate) {
        let channels = self.channels.read().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = channels.get(airport).filter(|tx| tx.receiver_count() > 0) else { return };
        let data = serde_json::to_string(update).expect("live updates serialise");
        let frame = format!("id: {}-{}\nevent: delay\ndata: {data}\n\n", update.shard, update.seq);
        // An error means every receiver went away since the check: nobody to tell.
        if tx.send(Bytes::from(frame)).is_ok() {
            self.stats.published.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Subscribes to `airports` (1 to [`MAX_AIRPORTS`], checked by the caller).
    pub fn subscribe(self: &Arc<Self>, airports: &[AirportCode]) -> Result<Subscription, LiveError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LiveError::Closed);
        }
        let now = self.stats.subscribers.fetch_add(1, Ordering::AcqRel);
        let guard = Subscribed(self.stats.clone());
        if now >= self.max_subscribers {
            return Err(LiveError::Full(now));
        }
        let mut channels = self.channels.write().unwrap_or_else(|p| p.into_inner());
        // Channels nobody listens to any more go as new ones come, so the map holds
        // at most the airports watched since the last subscription.
        channels.retain(|_, tx| tx.receiver_count() > 0);
        let receivers = airports
            .iter()
            .map(|a| channels.entry(*a).or_insert_with(|| broadcast::channel(CAPACITY).0).subscribe())
            .collect();
        Ok(Subscription { receivers, airports: airports.to_vec(), guard, feed: self.clone() })
    }

    /// Ends every subscription (each gets a final `closed` event) and refuses new
    /// ones: for a server shutting down, whose graceful drain would otherwise wait for
    /// streams that never end.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.channels.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Counts a subscriber for as long as it lives.
struct Subscribed(Arc<LiveStats>);

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One client's subscription, until it becomes a stream of SSE frames.
pub struct Subscription {
    receivers: Vec<broadcast::Receiver<Bytes>>,
    airports: Vec<AirportCode>,
    guard: Subscribed,
    feed: Arc<LiveFeed>,
}

impl Subscription {
    /// SSE frames: a `subscribed` event first, then a `delay` event per change, a
    /// keep-alive comment every [`KEEP_ALIVE`] of quiet, and, once the client has
    /// fallen too far behind or the server stops, a final `dropped` or `closed` event.
    pub fn frames(self) -> impl Stream<Item = Bytes> + Send + 'static {
        let names: Vec<&str> = self.airports.iter().map(AirportCode::as_str).collect();
        let hello = format!("retry: 2000\nevent: subscribed\ndata: {}\n\n", serde_json::json!({ "airports": names }));
        let merged = futures_util::stream::select_all(self.receivers.into_iter().map(receiver_stream));
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let state = Following { merged, heartbeat, done: false, _guard: self.guard, feed: self.feed };
        futures_util::stream::once(std::future::ready(Bytes::from(hello))).chain(futures_util::stream::unfold(
            state,
            |mut s| async move {
                if s.done {
                    return None;
                }
                let frame = tokio::select! {
                    item = s.merged.next() => match item {
                        Some(Ok(frame)) => frame,
                        Some(Err(RecvError::Lagged(missed))) => {
                            s.done = true;
                            s.feed.stats.dropped.fetch_add(1, Ordering::Relaxed);
                            final_frame("dropped", &format!(
                                "this client fell {CAPACITY} changes behind ({missed} missed) and was disconnected; reconnect and reload the board"
                            ))
                        }
                        Some(Err(RecvError::Closed)) | None => {
                            s.done = true;
                            final_frame("closed", "the server is shutting down")
                        }
                    },
                    _ = s.heartbeat.tick() => Bytes::from_static(b": keep-alive\n\n"),
                };
                Some((frame, s))
            },
        ))
    }
}

struct Following {
    merged: futures_util::stream::SelectAll<BoxStream<'static, Result<Bytes, RecvError>>>,
    heartbeat: tokio::time::Interval,
    done: bool,
    _guard: Subscribed,
    feed: Arc<LiveFeed>,
}

fn receiver_stream(rx: broadcast::Receiver<Bytes>) -> BoxStream<'static, Result<Bytes, RecvError>> {
    futures_util::stream::unfold(rx, |mut rx| async move { Some((rx.recv().await, rx)) }).boxed()
}

fn final_frame(event: &str, reason: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {}\n\n", serde_json::json!({ "reason": reason })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DelayEvent, FlightId};

    fn update(seq: i64) -> LiveUpdate {
        let flight: Flight = serde_json::from_value(serde_json::json!({
            "id": 7, "carrier": "LH", "number": 400, "origin": "FRA", "destination": "JFK",
            "scheduled_departure": "2026-12-01T10:00:00Z", "scheduled_arrival": "2026-12-01T18:00:00Z"
        }))
        .unwrap();
        let kind = crate::domain::EventKind::from_columns("reported", 20, "weather").unwrap();
        let event = DelayEvent::new(crate::domain::UtcTime::parse("2026-12-01T09:00:00Z").unwrap(), kind);
        let status = FlightStatus::initial().apply(&event).unwrap();
        LiveUpdate {
            seq,
            shard: 0,
            flight,
            event: RecordedEvent { flight_id: FlightId::new(7).unwrap(), version: seq, event },
            status,
        }
    }

    fn fra() -> AirportCode {
        AirportCode::parse("FRA").unwrap()
    }

    fn text(frame: &Bytes) -> &str {
        std::str::from_utf8(frame).unwrap()
    }

    #[tokio::test]
    async fn subscribers_get_their_airport_and_a_lagging_one_is_dropped_with_a_final_event() {
        let feed = LiveFeed::new(10);
        let other = AirportCode::parse("ATL").unwrap();
        assert!(!feed.watched(&fra()));
        let mut fast = Box::pin(feed.subscribe(&[fra()]).unwrap().frames());
        let slow = Box::pin(feed.subscribe(&[fra(), other]).unwrap().frames());
        assert_eq!(feed.stats().subscribers.load(Ordering::Relaxed), 2);
        assert!(text(&fast.next().await.unwrap()).contains("event: subscribed\ndata: {\"airports\":[\"FRA\"]}"));
        feed.publish(&other, &update(1));
        feed.publish(&fra(), &update(2));
        let frame = fast.next().await.unwrap();
        assert!(text(&frame).starts_with("id: 0-2\nevent: delay\ndata: {"), "{}", text(&frame));
        let data = text(&frame).lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        assert_eq!(serde_json::from_str::<LiveUpdate>(data).unwrap(), update(2));

        // The slow one reads nothing while CAPACITY + 5 more changes go out; the
        // sender never waits, and the fast one still gets every change.
        for seq in 3..3 + CAPACITY as i64 + 5 {
            feed.publish(&fra(), &update(seq));
            assert!(text(&fast.next().await.unwrap()).contains(&format!("id: 0-{seq}\n")));
        }
        let frames: Vec<Bytes> = slow.collect().await;
        assert!(text(&frames[0]).contains("event: subscribed"));
        let last = text(frames.last().unwrap());
        assert!(last.starts_with("event: dropped\ndata: {\"reason\":\"this client fell 256 changes behind"), "{last}");
        assert_eq!(feed.stats().dropped.load(Ordering::Relaxed), 1);
        assert_eq!(feed.stats().subscribers.load(Ordering::Relaxed), 1, "the dropped one is no longer counted");

        feed.close();
        let last = fast.next().await.unwrap();
        assert!(text(&last).starts_with("event: closed\n"), "{}", text(&last));
        assert!(fast.next().await.is_none());
        assert_eq!(feed.subscribe(&[fra()]).err(), Some(LiveError::Closed));
    }

    #[tokio::test]
    async fn the_subscriber_limit_holds_and_frees_up() {
        let feed = LiveFeed::new(2);
        let a = feed.subscribe(&[fra()]).unwrap();
        let _b = feed.subscribe(&[fra()]).unwrap();
        assert_eq!(feed.subscribe(&[fra()]).err(), Some(LiveError::Full(2)));
        drop(a);
        assert!(feed.subscribe(&[fra()]).is_ok());
    }
}

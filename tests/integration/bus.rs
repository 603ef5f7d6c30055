//! The outbox relay and the consumers against the machine's RabbitMQ: every committed
//! event reaches a bound queue once per (flight, version) and in each flight's order;
//! nothing is marked sent that the broker did not confirm (returned messages hold the
//! relay); poison and failing messages go to the error queue after their tries; and a
//! broker restart under a write load loses no acknowledged write.
//!
//! Each test uses its own exchange and queues (named after the process and a
//! counter) and deletes them. The tests take one lock: the restart test stops the
//! broker, which the others would see.

use crate::helpers::{Kind, TestDataset, dataset, spec};
use flightbench::bus::{
    BusError, Confirms, Consumer, ConsumerConfig, DEFAULT_URL, DelayEventMessage, Handler, Relay, RelayConfig,
};
use flightbench::domain::{DelayEvent, EventKind, FlightId, Reason, UtcTime};
use flightbench::store::{QueryPath, Store};
use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Held by every test that needs the broker up throughout (`services` too).
pub static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn url() -> String {
    std::env::var("FLIGHTBENCH_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Names for one test's exchange and queues, and their removal afterwards.
pub struct Names {
    pub exchange: String,
    queues: Vec<String>,
}

impl Names {
    pub fn new(test: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self { exchange: format!("fbtest.{test}.{}.{n}", std::process::id()), queues: Vec::new() }
    }

    pub fn queue(&mut self, name: &str) -> String {
        let queue = format!("{}.{name}", self.exchange);
        self.queues.push(queue.clone());
        self.queues.push(format!("{queue}.errors"));
        queue
    }

    pub async fn remove(&self) {
        let c = admin().await;
        let ch = c.create_channel().await.unwrap();
        for q in &self.queues {
            let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
        }
        let _ = ch.exchange_delete(self.exchange.as_str().into(), Default::default()).await;
    }
}

/// An exchange of its own for `test` with a queue bound to it, consumed into a
/// [`Recorder`]; `Names::remove` takes both away. The caller holds [`BROKER`].
pub async fn recorded_exchange(test: &str) -> (Names, Recorder, Consumer) {
    let mut names = Names::new(test);
    let recorder = Recorder::default();
    let config =
        ConsumerConfig { exchange: names.exchange.clone(), ..ConsumerConfig::new(&url(), &names.queue("seen")) };
    let consumer = Consumer::start(config, recorder.clone()).await.unwrap();
    (names, recorder, consumer)
}

async fn admin() -> Connection {
    Connection::connect(&url(), ConnectionProperties::default()).await.expect("RabbitMQ on 127.0.0.1:5672")
}

/// Messages waiting in `queue` (a passive declare).
async fn waiting(queue: &str) -> u32 {
    let c = admin().await;
    let ch = c.create_channel().await.unwrap();
    let options = QueueDeclareOptions { passive: true, ..Default::default() };
    ch.queue_declare(queue.into(), options, FieldTable::default()).await.unwrap().message_count()
}

/// Records what it handles; fails every try for flights in `refuse`.
#[derive(Clone, Default)]
pub struct Recorder {
    seen: Arc<Mutex<Vec<DelayEventMessage>>>,
    refuse: Arc<Mutex<Vec<i64>>>,
}

impl Handler for Recorder {
    async fn handle(&self, message: &DelayEventMessage) -> Result<(), String> {
        if self.refuse.lock().unwrap().contains(&message.flight_id.get()) {
            return Err(format!("flight {} refused by the test", message.flight_id));
        }
        self.seen.lock().unwrap().push(message.clone());
        Ok(())
    }
}

impl Recorder {
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Handled (flight, version) pairs and how often each was handled.
    pub fn tally(&self) -> BTreeMap<(i64, i64), usize> {
        let mut tally = BTreeMap::new();
        for m in self.seen.lock().unwrap().iter() {
            *tally.entry((m.flight_id.get(), m.version)).or_insert(0) += 1;
        }
        tally
    }

    /// Each flight's versions in the order they were handled.
    fn orders(&self) -> HashMap<i64, Vec<i64>> {
        let mut orders: HashMap<i64, Vec<i64>> = HashMap::new();
        for m in self.seen.lock().unwrap().iter() {
            orders.entry(m.flight_id.get()).or_default().push(m.version);
        }
        orders
    }

    async fn wait_for(&self, n: usize, within: Duration) {
        let start = Instant::now();
        while self.count() < n {
            assert!(start.elapsed() < within, "handled {} of {n} messages within {within:?}", self.count());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn revise(minutes: i64) -> DelayEvent {
    let at = UtcTime::parse("2026-12-02T10:00:00Z").unwrap().plus_seconds(minutes);
    DelayEvent::new(at, EventKind::Revised { delay_minutes: minutes, reason: Reason::parse("weather").unwrap() })
}

/// Appends one event to `id` at its current version; the acknowledged (flight, version).
async fn write(store: &Store, id: FlightId, minutes: i64) -> (i64, i64) {
    let version = store.flight(QueryPath::Raw, id).await.unwrap().status.version;
    let outcome = store.append(QueryPath::Raw, id, version, &revise(minutes)).await.unwrap();
    (id.get(), outcome.status.version)
}

async fn relay_checkpoints(ds: &TestDataset, config: &RelayConfig) -> Vec<i64> {
    let mut positions = Vec::new();
    for shard in 0..ds.store.shard_count() {
        let own = ds.store.checkpoints(shard, &config.checkpoint()).await.unwrap();
        positions.push(own.into_iter().find(|(s, _)| *s == shard).map(|(_, seq)| seq).unwrap());
    }
    positions
}

async fn heads(ds: &TestDataset) -> Vec<i64> {
    let mut heads = Vec::new();
    for shard in 0..ds.store.shard_count() {
        heads.push(ds.store.event_head(shard).await.unwrap());
    }
    heads
}

async fn relay_holds_until_routable_then_delivers_each_event_once_in_order(kind: Kind, confirms: Confirms) {
    let _broker = BROKER.lock().await;
    let ds = dataset(kind, spec(31, 400, 10), 3).await;
    let mut names = Names::new("relay");
    let config = RelayConfig { exchange: names.exchange.clone(), confirms, ..RelayConfig::new(&url()) };
    let seeded = heads(&ds).await;
    let relay = Relay::start(ds.store.clone(), config.clone()).await.unwrap();
    assert_eq!(relay_checkpoints(&ds, &config).await, seeded, "a first start begins at the newest events");

    // No queue is bound yet: the broker returns every message, and nothing is sent.
    let flights = ds.writable_flights(12);
    let mut written = Vec::new();
    for (i, &id) in flights.iter().enumerate() {
        written.push(write(&ds.store, id, 5 + i as i64).await);
    }
    let start = Instant::now();
    while relay.stats().held.load(Ordering::Relaxed) == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the relay never saw its messages returned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(relay_checkpoints(&ds, &config).await, seeded, "returned messages must not count as sent");
    assert_eq!(relay.stats().confirmed.load(Ordering::Relaxed), 0);

    // A queue appears: the held events arrive, then the ones written after.
    let recorder = Recorder::default();
    let consumer_config =
        ConsumerConfig { exchange: names.exchange.clone(), ..ConsumerConfig::new(&url(), &names.queue("all")) };
    let consumer = Consumer::start(consumer_config, recorder.clone()).await.unwrap();
    for (i, &id) in flights.iter().enumerate().take(6) {
        written.push(write(&ds.store, id, 30 + i as i64).await);
    }
    recorder.wait_for(written.len(), Duration::from_secs(30)).await;
    let expected: BTreeMap<(i64, i64), usize> = written.iter().map(|&w| (w, 1)).collect();
    assert_eq!(recorder.tally(), expected, "every acknowledged write, each exactly once");
    for (flight, versions) in recorder.orders() {
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "flight {flight} handled out of order: {versions:?}");
    }
    let start = Instant::now();
    while relay_checkpoints(&ds, &config).await != heads(&ds).await {
        assert!(start.elapsed() < Duration::from_secs(10), "checkpoints never reached the heads");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let message = recorder.seen.lock().unwrap()[0].clone();
    assert_eq!(message.contract, "delay-event.v1");
    assert_eq!(message.kind, "revised");
    consumer.stop().await;
    relay.stop().await;
    names.remove().await;
}

#[tokio::test]
async fn sqlite_relay_holds_returned_messages_and_delivers_each_event_once() {
    relay_holds_until_routable_then_delivers_each_event_once_in_order(Kind::Sqlite, Confirms::Pipelined).await;
}

#[tokio::test]
async fn sqlite_relay_with_a_confirm_per_message_delivers_the_same() {
    relay_holds_until_routable_then_delivers_each_event_once_in_order(Kind::Sqlite, Confirms::PerMessage).await;
}

#[tokio::test]
async fn postgres_relay_holds_returned_messages_and_delivers_each_event_once() {
    relay_holds_until_routable_then_delivers_each_event_once_in_order(Kind::Postgres, Confirms::Pipelined).await;
}

#[tokio::test]
async fn consumer_dead_letters_poison_and_failing_messages_and_skips_duplicates() {
    let _broker = BROKER.lock().await;
    let mut names = Names::new("errors");
    let recorder = Recorder::default();
    recorder.refuse.lock().unwrap().push(7);
    let queue = names.queue("notify");
    let config = ConsumerConfig {
        exchange: names.exchange.clone(),
        attempts: 3,
        retry_first: Duration::from_millis(10),
        ..ConsumerConfig::new(&url(), &queue)
    };
    let consumer = Consumer::start(config.clone(), recorder.clone()).await.unwrap();
    let c = admin().await;
    let ch = c.create_channel().await.unwrap();
    let publish = |body: Vec<u8>, key: String| {
        let ch = ch.clone();
        let exchange = names.exchange.clone();
        async move {
            let props = BasicProperties::default();
            ch.basic_publish(
                exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await
            .unwrap();
        }
    };
    let message = |flight: i64, version: i64| {
        let json = serde_json::json!({
            "contract": "delay-event.v1", "event_schema_version": 2, "shard": 0, "seq": version,
            "flight_id": flight, "version": version, "carrier": "LH", "number": 400,
            "origin": "FRA", "destination": "JFK", "scheduled_departure": "2026-12-02T10:00:00Z",
            "kind": "revised", "delay_minutes": 20, "cause": null, "occurred_at": "2026-12-02T09:00:00Z"
        });
        serde_json::to_vec(&json).unwrap()
    };
    let key = "delay-event.v1.revised.FRA.JFK".to_owned();
    publish(b"{not json".to_vec(), key.clone()).await;
    publish(message(5, 2), key.clone()).await;
    publish(message(5, 2), key.clone()).await; // a relay's republish
    publish(message(7, 3), key.clone()).await; // refused on every try
    publish(message(5, 3), key.clone()).await;
    publish(message(5, 1), key.clone()).await; // older than one handled: a duplicate
    recorder.wait_for(2, Duration::from_secs(10)).await;
    let start = Instant::now();
    while consumer.stats().duplicates.load(Ordering::Relaxed) < 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "duplicates never acknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(recorder.tally(), BTreeMap::from([((5, 2), 1), ((5, 3), 1)]));
    let stats = consumer.stats();
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 1, "the refused message, after its tries");
    assert_eq!(stats.retries.load(Ordering::Relaxed), 2, "3 tries: 2 retries");
    consumer.stop().await;
    assert_eq!(waiting(&config.error_queue()).await, 2, "the poison body and the refused message");
    assert_eq!(waiting(&queue).await, 0, "every delivery acknowledged");
    names.remove().await;
}

#[tokio::test]
async fn a_relay_refuses_to_start_against_an_unreachable_broker() {
    let ds = dataset(Kind::Sqlite, spec(32, 50, 5), 1).await;
    let config = RelayConfig::new("amqp://guest:guest@127.0.0.1:1/%2f");
    let err = Relay::start(ds.store.clone(), config).await.err().expect("no broker on port 1");
    assert!(matches!(err, BusError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

/// Runs `rabbitmqctl <args>`; panics with its output when it fails.
pub fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl on PATH");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Starts the broker's app again when dropped, so a failed test does not leave it down.
pub struct RestartGuard;

impl Drop for RestartGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl").args(["-q", "start_app"]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_under_writes_loses_no_acknowledged_write() {
    let _broker = BROKER.lock().await;
    let ds = dataset(Kind::Sqlite, spec(33, 600, 10), 2).await;
    let mut names = Names::new("restart");
    let recorder = Recorder::default();
    let consumer_config =
        ConsumerConfig { exchange: names.exchange.clone(), ..ConsumerConfig::new(&url(), &names.queue("all")) };
    let consumer = Consumer::start(consumer_config, recorder.clone()).await.unwrap();
    let relay_config = RelayConfig { exchange: names.exchange.clone(), ..RelayConfig::new(&url()) };
    let relay = Relay::start(ds.store.clone(), relay_config).await.unwrap();

    // A writer appends to 40 flights in turn, every 5 ms, for the whole test.
    let store = ds.store.clone();
    let flights = ds.writable_flights(40);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        let mut i = 0usize;
        while !*stopped.borrow() {
            acknowledged.push(write(&store, flights[i % flights.len()], 1 + (i % 50) as i64).await);
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let guard = RestartGuard;
    tokio::task::spawn_blocking(|| rabbitmqctl(&["-q", "stop_app"])).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down_count = recorder.count();
    tokio::task::spawn_blocking(|| rabbitmqctl(&["-q", "start_app"])).await.unwrap();
    let back = Instant::now();
    drop(guard);
    // Recovered once a message written after the restart arrives.
    while recorder.count() <= down_count {
        assert!(back.elapsed() < Duration::from_secs(60), "nothing delivered within 60 s of the broker's restart");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let recovery = back.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send(true).unwrap();
    let acknowledged = writer.await.unwrap();
    let expected: BTreeMap<(i64, i64), usize> = acknowledged.iter().map(|&w| (w, 1)).collect();
    let start = Instant::now();
    while recorder.tally().len() < expected.len() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of {} writes delivered",
            recorder.tally().len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(recorder.tally(), expected, "every acknowledged write delivered exactly once");
    for (flight, versions) in recorder.orders() {
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "flight {flight} out of order: {versions:?}");
    }
    assert!(relay.stats().reconnects.load(Ordering::Relaxed) >= 1, "the relay reconnected");
    assert!(consumer.stats().reconnects.load(Ordering::Relaxed) >= 1, "the consumer reconnected");
    eprintln!(
        "broker restart: {} writes, delivered again {:.2} s after start_app, {} duplicates skipped",
        acknowledged.len(),
        recovery.as_secs_f64(),
        consumer.stats().duplicates.load(Ordering::Relaxed)
    );
    relay.stop().await;
    consumer.stop().await;
    names.remove().await;
}

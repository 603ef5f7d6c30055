//! Connections to the broker and what every client of it shares: the error type, the
//! exchange's declaration, and the back-off between reconnects.
//!
//! lapin does not reconnect by itself (amqp-rs/lapin #364, #389: a consumer silently
//! stops after a broker restart), and its experimental auto-recovery replays topology
//! but not our own state (a relay's unconfirmed batch, a consumer's retries). So each
//! client here owns one loop: connect, declare, work until the connection fails, wait
//! ([`Backoff`]), and start again from durable state (the relay's checkpoints, the
//! queue's unacknowledged deliveries).

use crate::failure::{Classify, Failure};
use crate::store::StoreError;
use lapin::options::ExchangeDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use std::time::Duration;

/// The broker every machine here runs (RabbitMQ on loopback, the default vhost).
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("broker at {url}: {source}")]
    Connect { url: String, source: lapin::Error },
    #[error("broker: {0}")]
    Amqp(#[from] lapin::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Published with `mandatory` and returned: no queue is bound for it. The outbox
    /// holds it (and everything after it on its shard) until one is.
    #[error("no queue is bound for {routing_key} ({reply}): holding shard {shard}'s events from {seq} on")]
    Unroutable { shard: usize, seq: i64, routing_key: String, reply: String },
    #[error("the broker refused (nack) shard {shard}'s event {seq}")]
    Nacked { shard: usize, seq: i64 },
    /// A publish resolved without a confirm: the channel was not in confirm mode
    /// (lmnr-ai/lmnr #2408). Never marked sent.
    #[error("shard {shard}'s event {seq} was published without a publisher confirm")]
    NotConfirmed { shard: usize, seq: i64 },
    #[error("another relay moved the {checkpoint} checkpoint of shard {shard}: one relay per dataset and exchange")]
    CheckpointMoved { checkpoint: String, shard: usize },
    #[error("the broker did not acknowledge a measured publish: {0}")]
    Unacknowledged(String),
    #[error("the broker did not confirm a message to the error queue {queue}")]
    DeadLetterRefused { queue: String },
    #[error("the broker closed the consumer on {queue}")]
    ConsumerClosed { queue: String },
    /// A broker step that neither finished nor failed within [`STEP_LIMIT`].
    #[error("the broker did not answer {step} within {} s", STEP_LIMIT.as_secs())]
    Stalled { step: &'static str },
    /// The connection failed while it was idle, and nothing waiting on it was told: a
    /// consumer's stream that did not end (seen here after `rabbitmqctl stop_app`), or
    /// the relay between batches.
    #[error("the connection to the broker is gone ({noticed})")]
    LinkLost { noticed: String },
}

impl Classify for BusError {
    fn failure(&self) -> Failure {
        match self {
            BusError::Connect { .. } | BusError::Stalled { .. } => Failure::Unreachable,
            BusError::Store(e) => e.failure(),
            _ => Failure::Internal,
        }
    }
}

/// The longest one broker step may take: connecting, opening a channel, a declare, a
/// publish, its confirm, an ack. Each takes well under 10 ms on loopback; a step still
/// pending after this is on a link that is gone without lapin saying so (a publish
/// on a connection the server closed never resolves, amqp-rs/lapin #409; nor does a
/// connect the broker refuses mid-handshake, #470), and the caller reconnects.
pub const STEP_LIMIT: Duration = Duration::from_secs(10);

/// How often anything waiting on the broker checks that its connection is up: after
/// `rabbitmqctl stop_app`, a consumer's stream (amqp-rs/lapin #389, #364) or an ack
/// sometimes never resolved here, though the connection had failed.
pub const LINK_CHECK: Duration = Duration::from_secs(1);

/// What a broker step needs to stay up while it waits.
pub trait Up {
    fn up(&self) -> bool;
}

impl Up for Connection {
    fn up(&self) -> bool {
        self.status().connected()
    }
}

/// A channel is down once its connection is (lapin fails every channel with it).
impl Up for Channel {
    fn up(&self) -> bool {
        self.status().connected()
    }
}

/// `step`, unless `on` goes down first ([`BusError::LinkLost`], found within
/// [`LINK_CHECK`]) or it takes longer than [`STEP_LIMIT`] ([`BusError::Stalled`]).
pub async fn within<T, E>(
    step: &'static str,
    on: &impl Up,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, BusError>
where
    BusError: From<E>,
{
    let mut work = std::pin::pin!(work);
    // Most steps are done at the first poll: they take no timer. (An interval's first
    // tick is not free: it waits for the timer wheel's next millisecond, and a relay
    // awaiting one per publish and per confirm took 1 s for a batch of 500.)
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(work.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(outcome) = first {
        return Ok(outcome?);
    }
    let limit = tokio::time::sleep(STEP_LIMIT);
    let mut limit = std::pin::pin!(limit);
    let mut check = tokio::time::interval_at(tokio::time::Instant::now() + LINK_CHECK, LINK_CHECK);
    loop {
        tokio::select! {
            outcome = &mut work => return Ok(outcome?),
            _ = &mut limit => return Err(BusError::Stalled { step }),
            _ = check.tick() => {
                if !on.up() {
                    return Err(BusError::LinkLost { noticed: format!("while waiting for {step}") });
                }
            }
        }
    }
}

/// Connects, naming the connection (it shows in `rabbitmqctl list_connections` and
/// the management UI).
pub async fn connect(url: &str, name: &str) -> Result<Connection, BusError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let connecting = Connection::connect(url, properties);
    match tokio::time::timeout(STEP_LIMIT, connecting).await {
        Ok(outcome) => outcome.map_err(|source| BusError::Connect { url: redact(url), source }),
        Err(_) => Err(BusError::Stalled { step: "a connect" }),
    }
}

/// A channel on `connection` with `exchange` declared: topic, durable, so it and
/// its bindings outlive a broker restart.
pub async fn channel_with_exchange(connection: &Connection, exchange: &str) -> Result<Channel, BusError> {
    let channel = within("a channel open", connection, connection.create_channel()).await?;
    let options = ExchangeDeclareOptions { durable: true, ..Default::default() };
    let declaring = channel.exchange_declare(exchange.into(), ExchangeKind::Topic, options, FieldTable::default());
    within("an exchange declare", &channel, declaring).await?;
    Ok(channel)
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Waits between reconnects: 100 ms doubling to 5 s. A broker restart here takes 2 to
/// 5 s (`rabbitmqctl stop_app` / `start_app`), so the first retries are quick and a
/// broker that stays down is asked about once every 5 s.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(100);
    pub const MOST: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The wait before the next attempt; each call doubles the one after.
    pub fn step(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MOST);
        wait
    }

    /// After work succeeded: the next failure is retried quickly again.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link that is up until told otherwise.
    struct Fake(std::sync::atomic::AtomicBool);

    impl Up for Fake {
        fn up(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_that_never_finishes_is_stalled_at_the_limit() {
        let up = Fake(true.into());
        let started = tokio::time::Instant::now();
        let never = std::future::pending::<Result<(), lapin::Error>>();
        let error = within("a publish", &up, never).await.unwrap_err();
        assert!(matches!(error, BusError::Stalled { step: "a publish" }), "{error}");
        assert_eq!(error.to_string(), "the broker did not answer a publish within 10 s");
        assert_eq!(started.elapsed(), STEP_LIMIT);
        assert_eq!(error.failure(), Failure::Unreachable);
        // A step that finishes in time keeps its own outcome.
        assert_eq!(within("a publish", &up, async { Ok::<_, lapin::Error>(7) }).await.unwrap(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_on_a_link_that_goes_down_ends_at_the_next_check() {
        let up = Fake(true.into());
        let started = tokio::time::Instant::now();
        let waiting = within("an ack", &up, std::future::pending::<Result<(), lapin::Error>>());
        let down = async {
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            up.0.store(false, std::sync::atomic::Ordering::Relaxed);
            std::future::pending::<()>().await
        };
        let error = tokio::select! { e = waiting => e.unwrap_err(), _ = down => unreachable!() };
        assert!(matches!(&error, BusError::LinkLost { .. }), "{error}");
        assert_eq!(error.to_string(), "the connection to the broker is gone (while waiting for an ack)");
        // Down at 2.5 s, found by the check at 3 s.
        assert_eq!(started.elapsed(), LINK_CHECK * 3);
    }

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..8).map(|_| b.step().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.step(), Backoff::FIRST);
    }

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(redact("amqp://guest:secret@host:5672/%2f"), "amqp://guest:***@host:5672/%2f");
        assert_eq!(redact("amqp://host:5672"), "amqp://host:5672");
    }
}

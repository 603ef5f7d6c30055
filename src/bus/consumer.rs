//! A consumer of delay events: its own queue bound to the exchange, deliveries handled
//! one at a time in the order they arrive, each acknowledged only once handled.
//!
//! - **In order.** The relay publishes each shard's events in commit order on one
//!   channel, and a flight lives on one shard, so a queue holds a flight's events in
//!   order; handling one delivery at a time (and retrying in place) keeps that order.
//!   After a reconnect the broker redelivers the unacknowledged ones first.
//! - **Idempotent.** A delivery whose (flight, version) is not above the highest this
//!   consumer handled for that flight is a duplicate (a relay's republish, a
//!   redelivery) and is acknowledged without being handled again. The map lives in
//!   memory: a consumer that restarts handles redeliveries once more, which is why a
//!   handler with effects outside this process (a webhook) keeps its own record.
//! - **Retries, then the error queue.** A handler's failure is retried after 100 ms,
//!   doubling, up to `attempts` tries; then the message goes to `<queue>.errors`
//!   (published with a confirm, the reason in a header) and is acknowledged. A body
//!   that is not a message of this contract goes there at once.
//! - **Recovery.** A closed channel, a dropped connection or a broker restart ends
//!   the connected loop; the consumer reconnects with a back-off, declares its
//!   exchange, queues and bindings again and resubscribes. Since lapin's stream does
//!   not always end when its connection fails (seen after `rabbitmqctl stop_app`),
//!   a waiting consumer also checks its connection every `link::LINK_CHECK`, and
//!   every broker step is bounded by `link::STEP_LIMIT`.

use super::contract::DelayEventMessage;
use super::link::{self, Backoff, BusError, Up, within};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// What a consumer does with each message. `Err` is retried, then dead-lettered.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, message: &DelayEventMessage) -> impl Future<Output = Result<(), String>> + Send;

    /// Called each time the consumer has (re)subscribed, before the first delivery:
    /// with a queue that does not outlive the connection, what was published while
    /// it was away is lost, and a handler that mirrors state (a cache) starts over.
    fn subscribed(&self) {}
}

/// How a consumer runs.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub url: String,
    pub exchange: String,
    pub queue: String,
    /// Routing-key patterns to bind (`delay-event.v1.#` for every event).
    pub bindings: Vec<String>,
    /// Durable (survives the broker's restart and this consumer's absence, so events
    /// wait for it) or exclusive to this connection and deleted with it (a cache that
    /// starts empty anyway).
    pub durable: bool,
    /// Deliveries the broker sends ahead of the acknowledgements.
    pub prefetch: u16,
    /// Tries per message before it goes to the error queue.
    pub attempts: u32,
    pub retry_first: Duration,
}

impl ConsumerConfig {
    pub fn new(url: &str, queue: &str) -> Self {
        Self {
            url: url.to_owned(),
            exchange: super::contract::EXCHANGE.to_owned(),
            queue: queue.to_owned(),
            bindings: vec![format!("{}.#", super::contract::CONTRACT)],
            durable: true,
            prefetch: 256,
            attempts: 5,
            retry_first: Duration::from_millis(100),
        }
    }

    pub fn error_queue(&self) -> String {
        format!("{}.errors", self.queue)
    }
}

/// What a consumer has done.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub handled: AtomicU64,
    pub duplicates: AtomicU64,
    /// Failed tries that were tried again.
    pub retries: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Connections made after the first.
    pub reconnects: AtomicU64,
}

/// A running consumer.
pub struct Consumer {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    stats: Arc<ConsumerStats>,
}

impl Consumer {
    /// Connects and declares the queue before returning, so that events published
    /// from then on are routed to it (and a wrong URL fails here); later failures are
    /// recovered from for as long as it runs.
    pub async fn start<H: Handler>(config: ConsumerConfig, handler: H) -> Result<Self, BusError> {
        let connection = link::connect(&config.url, &format!("flightbench consumer {}", config.queue)).await?;
        let channels = declare(&connection, &config).await?;
        let (stop, stopped) = watch::channel(false);
        let stats = Arc::new(ConsumerStats::default());
        let task = tokio::spawn(run(config, Arc::new(handler), stats.clone(), stopped, Some((connection, channels))));
        Ok(Self { stop, task, stats })
    }

    pub fn stats(&self) -> &Arc<ConsumerStats> {
        &self.stats
    }

    /// Stops after the delivery in hand.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A live connection and its channels, as `consume` watches them.
#[derive(Clone, Copy)]
struct Link<'a> {
    connection: &'a Connection,
    channels: &'a Channels,
}

/// The consuming channel and the confirmed one the error queue is fed through.
struct Channels {
    consume: Channel,
    errors: Channel,
}

async fn declare(connection: &Connection, config: &ConsumerConfig) -> Result<Channels, BusError> {
    let consume = link::channel_with_exchange(connection, &config.exchange).await?;
    let options = if config.durable {
        QueueDeclareOptions { durable: true, ..Default::default() }
    } else {
        QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() }
    };
    let declaring = consume.queue_declare(config.queue.as_str().into(), options, FieldTable::default());
    within("a queue declare", &consume, declaring).await?;
    for key in &config.bindings {
        let (queue, exchange) = (config.queue.as_str().into(), config.exchange.as_str().into());
        let binding = consume.queue_bind(
            queue,
            exchange,
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        );
        within("a queue bind", &consume, binding).await?;
    }
    within("a basic.qos", &consume, consume.basic_qos(config.prefetch, BasicQosOptions::default())).await?;
    let errors = within("a channel open", connection, connection.create_channel()).await?;
    within("a confirm.select", &errors, errors.confirm_select(ConfirmSelectOptions::default())).await?;
    // The error queue lives as long as the queue it serves: a query instance's cache
    // queue goes with its connection, and a durable error queue left behind by each
    // instance would pile up on the broker (64 after a day of tests here).
    let declaring = errors.queue_declare(config.error_queue().as_str().into(), options, FieldTable::default());
    within("a queue declare", &errors, declaring).await?;
    Ok(Channels { consume, errors })
}

async fn run<H: Handler>(
    config: ConsumerConfig,
    handler: Arc<H>,
    stats: Arc<ConsumerStats>,
    mut stopped: watch::Receiver<bool>,
    mut first: Option<(Connection, Channels)>,
) {
    let mut backoff = Backoff::new();
    // Kept across reconnects: a redelivery after one is still a duplicate.
    let mut handled: HashMap<i64, i64> = HashMap::new();
    let name = format!("flightbench consumer {}", config.queue);
    loop {
        let connected = match first.take() {
            Some(c) => Ok(c),
            None => match link::connect(&config.url, &name).await {
                Ok(c) => declare(&c, &config).await.map(|channels| (c, channels)),
                Err(e) => Err(e),
            },
        };
        let outcome = match connected {
            Ok((connection, channels)) => {
                let live = Link { connection: &connection, channels: &channels };
                consume(&config, &*handler, &stats, &mut stopped, live, &mut handled, &mut backoff).await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, queue = %config.queue, "consumer: {e}; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.step()) => {}
                    _ = stopped.changed() => return,
                }
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn consume<H: Handler>(
    config: &ConsumerConfig,
    handler: &H,
    stats: &ConsumerStats,
    stopped: &mut watch::Receiver<bool>,
    live: Link<'_>,
    handled: &mut HashMap<i64, i64>,
    backoff: &mut Backoff,
) -> Result<(), BusError> {
    let channels = live.channels;
    let subscribing = channels.consume.basic_consume(
        config.queue.as_str().into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    );
    let mut deliveries = within("a basic.consume", &channels.consume, subscribing).await?;
    handler.subscribed();
    let mut check = tokio::time::interval(link::LINK_CHECK);
    loop {
        let delivery = tokio::select! {
            next = deliveries.next() => next,
            _ = stopped.changed() => return Ok(()),
            _ = check.tick() => {
                if live.connection.up() && channels.consume.up() {
                    continue;
                }
                let noticed = format!("its consumer on {} was not told", config.queue);
                return Err(BusError::LinkLost { noticed });
            }
        };
        let delivery = match delivery {
            Some(delivery) => delivery?,
            None => return Err(BusError::ConsumerClosed { queue: config.queue.clone() }),
        };
        backoff.reset();
        match DelayEventMessage::parse(&delivery.data) {
            Err(reason) => dead_letter(channels, config, &delivery.data, &reason, 0).await?,
            Ok(message) => {
                let flight = message.flight_id.get();
                if handled.get(&flight).is_some_and(|&v| v >= message.version) {
                    stats.duplicates.fetch_add(1, Ordering::Relaxed);
                } else {
                    match handle_with_retries(config, handler, stats, &message).await {
                        Ok(()) => {
                            stats.handled.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(reason) => {
                            dead_letter(channels, config, &delivery.data, &reason, config.attempts).await?;
                            stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    handled.insert(flight, message.version);
                }
            }
        }
        within("an ack", &channels.consume, delivery.acker.ack(BasicAckOptions::default())).await?;
    }
}

async fn handle_with_retries<H: Handler>(
    config: &ConsumerConfig,
    handler: &H,
    stats: &ConsumerStats,
    message: &DelayEventMessage,
) -> Result<(), String> {
    let mut wait = config.retry_first;
    let mut attempt = 1;
    loop {
        match handler.handle(message).await {
            Ok(()) => return Ok(()),
            Err(reason) if attempt >= config.attempts => return Err(reason),
            Err(_) => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
        }
    }
}

/// Publishes `body` to the error queue with the reason and the tries, and waits for the
/// broker's confirm: only then may the original be acknowledged.
async fn dead_letter(
    channels: &Channels,
    config: &ConsumerConfig,
    body: &[u8],
    reason: &str,
    attempts: u32,
) -> Result<(), BusError> {
    let mut headers = FieldTable::default();
    headers.insert("x-flightbench-error".into(), AMQPValue::LongString(reason.into()));
    headers.insert("x-flightbench-attempts".into(), AMQPValue::LongUInt(attempts));
    let properties = BasicProperties::default().with_headers(headers).with_delivery_mode(2);
    let queue = config.error_queue();
    let publishing = channels.errors.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions::default(),
        body,
        properties,
    );
    let confirm = within("an error-queue publish", &channels.errors, publishing).await?;
    let confirm = within("an error-queue confirm", &channels.errors, confirm).await?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        _ => Err(BusError::DeadLetterRefused { queue }),
    }
}

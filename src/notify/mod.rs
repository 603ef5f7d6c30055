//! The notification service: webhook subscriptions, and every delay event from the bus
//! delivered to the subscriptions that match it, signed, retried, dead-lettered.
//!
//! **Exactly one delivery per (subscription, event), through crashes.** The bus
//! consumer's handler ([`Notifier::record`]) only writes a `pending` delivery row per
//! matching subscription, keyed by (subscription, flight, version), and the message is
//! acknowledged after that commit: a redelivered or republished event finds its rows
//! there and adds nothing. A separate deliverer sends what is pending. A POST that
//! succeeded just before a crash, before its row was marked, is sent again on restart,
//! so every delivery carries the event's identity (`flightbench-event-id`, the same
//! on every try) for the receiver to drop the repeat: the usual webhook contract.
//!
//! **Order.** A subscription gets a flight's events in version order: a delivery is
//! not tried while an earlier version for the same subscription and flight is still
//! pending (a dead one no longer blocks).
//!
//! **Retries.** A failed try (a non-2xx, a refused connection, no answer within the
//! timeout) is tried again after `retry_first`, doubling, until `attempts` tries; then
//! the delivery is `dead`, with its last error, and shows in `GET
//! /subscriptions/{id}`.
//!
//! Subscriptions and deliveries live in the service's own SQLite file, never in the
//! dataset's shards: the service owns its data.

pub mod signature;
pub mod webhook;

use crate::bus::{DelayEventMessage, Handler};
use crate::domain::AirportCode;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use webhook::Target;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS subscriptions (id INTEGER PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL, \
     created_at INTEGER NOT NULL) STRICT",
    "CREATE TABLE IF NOT EXISTS subscription_airports (subscription_id INTEGER NOT NULL \
     REFERENCES subscriptions (id) ON DELETE CASCADE, airport TEXT NOT NULL, PRIMARY KEY (airport, subscription_id)) STRICT",
    "CREATE TABLE IF NOT EXISTS deliveries (subscription_id INTEGER NOT NULL REFERENCES subscriptions (id) \
     ON DELETE CASCADE, flight_id INTEGER NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL, \
     state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')), attempts INTEGER NOT NULL DEFAULT 0, \
     next_at INTEGER NOT NULL, last_error TEXT, recorded_at INTEGER NOT NULL, delivered_at INTEGER, \
     PRIMARY KEY (subscription_id, flight_id, version)) STRICT",
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_at)",
];

/// Deliveries whose time has come, each only if no earlier version of its flight is
/// still pending for its subscription.
const DUE: &str = "SELECT d.subscription_id, d.flight_id, d.version, d.body, d.attempts, s.url, s.secret \
     FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id \
     WHERE d.state = 'pending' AND d.next_at <= ?1 AND NOT EXISTS (SELECT 1 FROM deliveries e \
       WHERE e.subscription_id = d.subscription_id AND e.flight_id = d.flight_id AND e.state = 'pending' \
       AND e.version < d.version) \
     ORDER BY d.next_at LIMIT ?2";

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notification store {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("notification store: {0}")]
    Db(#[from] sqlx::Error),
    /// A subscription that cannot be made as asked (422).
    #[error("{0}")]
    Invalid(String),
}

impl crate::failure::Classify for NotifyError {
    fn failure(&self) -> crate::failure::Failure {
        use crate::failure::Failure;
        match self {
            NotifyError::Open { .. } | NotifyError::Invalid(_) => Failure::BadInput,
            NotifyError::Db(_) => Failure::Internal,
        }
    }
}

/// How the notification service runs.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Its SQLite file (created when missing).
    pub db: PathBuf,
    /// Hosts a webhook URL may name.
    pub allowed_hosts: Vec<String>,
    /// Tries per delivery before it is dead.
    pub attempts: u32,
    /// The wait after the first failed try; doubled after each.
    pub retry_first: Duration,
    /// Longest wait between tries.
    pub retry_most: Duration,
    /// One try's time limit, connection included.
    pub timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl NotifyConfig {
    pub fn new(db: PathBuf) -> Self {
        Self {
            db,
            allowed_hosts: vec!["127.0.0.1".into(), "localhost".into(), "::1".into()],
            attempts: 8,
            retry_first: Duration::from_secs(1),
            retry_most: Duration::from_secs(300),
            timeout: Duration::from_secs(5),
            concurrency: 16,
        }
    }

    /// The wait after `tries` failed tries.
    fn retry_after(&self, tries: u32) -> Duration {
        let doubled = self.retry_first.saturating_mul(1u32 << tries.saturating_sub(1).min(20));
        doubled.min(self.retry_most)
    }
}

/// A subscription as asked for (`POST /subscriptions`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    pub url: String,
    /// Events of flights from or to any of these airports.
    pub airports: Vec<String>,
    /// The HMAC key, at least 16 characters; generated (and returned once) when absent.
    pub secret: Option<String>,
}

/// A subscription as shown: the secret only in the answer that created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: i64,
    pub url: String,
    pub airports: Vec<AirportCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub deliveries: DeliveryCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryCounts {
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
    /// The last error of the most recent dead delivery.
    pub last_dead_error: Option<String>,
}

/// One delivery, for tests and the command's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub subscription_id: i64,
    pub flight_id: i64,
    pub version: i64,
    pub state: String,
    pub attempts: i64,
    /// Microseconds from recording the delivery to its 2xx.
    pub latency_micros: Option<i64>,
}

/// What the service has done since it started.
#[derive(Debug, Default)]
pub struct NotifyStats {
    pub recorded: AtomicU64,
    pub delivered: AtomicU64,
    pub failed_tries: AtomicU64,
    pub dead: AtomicU64,
}

/// The notification service's state.
pub struct Notifier {
    db: SqlitePool,
    config: NotifyConfig,
    /// Rung when deliveries are recorded, so the deliverer does not wait for its poll.
    recorded: Notify,
    pub stats: NotifyStats,
}

impl Notifier {
    pub async fn open(config: NotifyConfig) -> Result<Arc<Self>, NotifyError> {
        let path = config.db.display().to_string();
        let options = SqliteConnectOptions::new()
            .filename(&config.db)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let db = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| NotifyError::Open { path: path.clone(), source })?;
        for statement in SCHEMA {
            sqlx::query(*statement)
                .execute(&db)
                .await
                .map_err(|source| NotifyError::Open { path: path.clone(), source })?;
        }
        Ok(Arc::new(Self { db, config, recorded: Notify::new(), stats: NotifyStats::default() }))
    }

    /// Registers a webhook; the answer carries the secret, the only time it is shown.
    pub async fn subscribe(&self, new: NewSubscription) -> Result<Subscription, NotifyError> {
        Target::parse(&new.url, &self.config.allowed_hosts).map_err(NotifyError::Invalid)?;
        if new.airports.is_empty() {
            return Err(NotifyError::Invalid("airports must name at least one airport, e.g. [\"FRA\"]".into()));
        }
        let mut airports = new
            .airports
            .iter()
            .map(|a| AirportCode::parse(a).map_err(|e| NotifyError::Invalid(format!("airports: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        airports.sort_by_key(|a| a.to_string());
        airports.dedup();
        let secret = match new.secret {
            Some(s) if s.len() >= 16 => s,
            Some(_) => return Err(NotifyError::Invalid("secret must be at least 16 characters".into())),
            None => generated_secret(),
        };
        let mut tx = self.db.begin().await?;
        let (id,): (i64,) =
            sqlx::query_as("INSERT INTO subscriptions (url, secret, created_at) VALUES (?1, ?2, ?3) RETURNING id")
                .bind(&new.url)
                .bind(&secret)
                .bind(crate::machine::unix_micros())
                .fetch_one(&mut *tx)
                .await?;
        for airport in &airports {
            sqlx::query("INSERT INTO subscription_airports (subscription_id, airport) VALUES (?1, ?2)")
                .bind(id)
                .bind(airport.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Subscription { id, url: new.url, airports, secret: Some(secret), deliveries: DeliveryCounts::default() })
    }

    /// Every subscription (without secrets), with its delivery counts.
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, NotifyError> {
        let ids: Vec<(i64,)> = sqlx::query_as("SELECT id FROM subscriptions ORDER BY id").fetch_all(&self.db).await?;
        let mut all = Vec::with_capacity(ids.len());
        for (id,) in ids {
            all.extend(self.subscription(id).await?);
        }
        Ok(all)
    }

    /// One subscription (without its secret) and its delivery counts.
    pub async fn subscription(&self, id: i64) -> Result<Option<Subscription>, NotifyError> {
        let Some((url,)) = sqlx::query_as::<_, (String,)>("SELECT url FROM subscriptions WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let airports: Vec<(String,)> =
            sqlx::query_as("SELECT airport FROM subscription_airports WHERE subscription_id = ?1 ORDER BY airport")
                .bind(id)
                .fetch_all(&self.db)
                .await?;
        let airports = airports.into_iter().filter_map(|(a,)| AirportCode::parse(&a).ok()).collect();
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM deliveries WHERE subscription_id = ?1 GROUP BY state")
                .bind(id)
                .fetch_all(&self.db)
                .await?;
        let mut deliveries = DeliveryCounts::default();
        for (state, n) in counts {
            match state.as_str() {
                "pending" => deliveries.pending = n,
                "delivered" => deliveries.delivered = n,
                _ => deliveries.dead = n,
            }
        }
        deliveries.last_dead_error = sqlx::query_as::<_, (Option<String>,)>(
            "SELECT last_error FROM deliveries WHERE subscription_id = ?1 AND state = 'dead' ORDER BY next_at DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.db)
        .await?
        .and_then(|(e,)| e);
        Ok(Some(Subscription { id, url, airports, secret: None, deliveries }))
    }

    /// Removes a subscription and its deliveries; false when there was none.
    pub async fn unsubscribe(&self, id: i64) -> Result<bool, NotifyError> {
        let done = sqlx::query("DELETE FROM subscriptions WHERE id = ?1").bind(id).execute(&self.db).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a pending delivery of `message` for each matching subscription, once:
    /// a message seen before adds nothing. Returns the deliveries added.
    pub async fn record(&self, message: &DelayEventMessage) -> Result<u64, NotifyError> {
        let body = serde_json::to_string(message).expect("a message of plain fields serialises");
        let now = crate::machine::unix_micros();
        let added = sqlx::query(
            "INSERT INTO deliveries (subscription_id, flight_id, version, body, state, next_at, recorded_at) \
             SELECT DISTINCT subscription_id, ?1, ?2, ?3, 'pending', ?4, ?4 FROM subscription_airports \
             WHERE airport IN (?5, ?6) ON CONFLICT DO NOTHING",
        )
        .bind(message.flight_id.get())
        .bind(message.version)
        .bind(&body)
        .bind(now)
        .bind(message.origin.to_string())
        .bind(message.destination.to_string())
        .execute(&self.db)
        .await?
        .rows_affected();
        if added > 0 {
            self.stats.recorded.fetch_add(added, Ordering::Relaxed);
            self.recorded.notify_one();
        }
        Ok(added)
    }

    /// Every delivery of a subscription, in (flight, version) order.
    pub async fn deliveries(&self, subscription: i64) -> Result<Vec<Delivery>, NotifyError> {
        let rows: Vec<(i64, i64, i64, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT subscription_id, flight_id, version, state, attempts, delivered_at - recorded_at FROM deliveries \
             WHERE subscription_id = ?1 ORDER BY flight_id, version",
        )
        .bind(subscription)
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(subscription_id, flight_id, version, state, attempts, latency_micros)| Delivery {
                subscription_id,
                flight_id,
                version,
                state,
                attempts,
                latency_micros,
            })
            .collect())
    }

    /// Sends pending deliveries until `stopped`: what is due, `concurrency` at a time,
    /// then waits for a new recording or the next due time (at most 1 s).
    pub async fn deliver(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let mut backoff = crate::bus::link::Backoff::new();
        loop {
            if *stopped.borrow() {
                return;
            }
            let sent = match self.deliver_due().await {
                Ok(sent) => {
                    backoff.reset();
                    sent
                }
                Err(e) => {
                    tracing::warn!(error = %e, "notify: {e}");
                    tokio::time::sleep(backoff.step()).await;
                    continue;
                }
            };
            if sent == 0 {
                let wait = self.until_next_due().await.unwrap_or(Duration::from_secs(1));
                tokio::select! {
                    _ = self.recorded.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped.changed() => return,
                }
            }
        }
    }

    async fn until_next_due(&self) -> Result<Duration, NotifyError> {
        let (next,): (Option<i64>,) =
            sqlx::query_as("SELECT MIN(next_at) FROM deliveries WHERE state = 'pending'").fetch_one(&self.db).await?;
        let now = crate::machine::unix_micros();
        let micros = next.map_or(1_000_000, |n| (n - now).clamp(1_000, 1_000_000));
        Ok(Duration::from_micros(micros as u64))
    }

    /// One round: every due delivery tried once. Returns how many were tried.
    async fn deliver_due(&self) -> Result<usize, NotifyError> {
        let now = crate::machine::unix_micros();
        let due: Vec<(i64, i64, i64, String, i64, String, String)> =
            sqlx::query_as(DUE).bind(now).bind(self.config.concurrency as i64 * 4).fetch_all(&self.db).await?;
        let tried = due.len();
        let mut tries = futures_util::stream::iter(due.into_iter().map(|row| self.try_one(row)))
            .buffer_unordered(self.config.concurrency);
        while let Some(outcome) = tries.next().await {
            outcome?;
        }
        Ok(tried)
    }

    /// Tries one delivery and records the outcome.
    async fn try_one(&self, row: (i64, i64, i64, String, i64, String, String)) -> Result<(), NotifyError> {
        let (subscription, flight, version, body, attempts, url, secret) = row;
        let outcome = match Target::parse(&url, &self.config.allowed_hosts) {
            Ok(target) => {
                let timestamp = crate::machine::unix_micros() / 1_000_000;
                let headers = [
                    (signature::HEADER, signature::sign(secret.as_bytes(), timestamp, body.as_bytes())),
                    ("flightbench-event-id", format!("{flight}/{version}")),
                    ("flightbench-subscription", subscription.to_string()),
                ];
                webhook::post(&target, &headers, Bytes::from(body), self.config.timeout).await
            }
            Err(e) => Err(e),
        };
        let tries = attempts + 1;
        let now = crate::machine::unix_micros();
        let (state, next_at, delivered_at, error) = match outcome {
            Ok(()) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                ("delivered", now, Some(now), None)
            }
            Err(error) if tries >= i64::from(self.config.attempts) => {
                self.stats.failed_tries.fetch_add(1, Ordering::Relaxed);
                self.stats.dead.fetch_add(1, Ordering::Relaxed);
                ("dead", now, None, Some(error))
            }
            Err(error) => {
                self.stats.failed_tries.fetch_add(1, Ordering::Relaxed);
                ("pending", now + self.config.retry_after(tries as u32).as_micros() as i64, None, Some(error))
            }
        };
        sqlx::query(
            "UPDATE deliveries SET state = ?4, attempts = ?5, next_at = ?6, delivered_at = ?7, last_error = ?8 \
             WHERE subscription_id = ?1 AND flight_id = ?2 AND version = ?3",
        )
        .bind(subscription)
        .bind(flight)
        .bind(version)
        .bind(state)
        .bind(tries)
        .bind(next_at)
        .bind(delivered_at)
        .bind(error)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// 32 random bytes, hex, prefixed the way webhook secrets usually are.
fn generated_secret() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).expect("the system's random source");
    format!("whsec_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The bus consumer's handler: record the deliveries (acknowledged after the commit).
pub struct RecordDeliveries(pub Arc<Notifier>);

impl Handler for RecordDeliveries {
    async fn handle(&self, message: &DelayEventMessage) -> Result<(), String> {
        self.0.record(message).await.map(|_| ()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_the_first_wait_to_the_ceiling() {
        let config = NotifyConfig { retry_first: Duration::from_millis(100), ..NotifyConfig::new("x".into()) };
        let waits: Vec<u128> = (1..=14).map(|t| config.retry_after(t).as_millis()).collect();
        assert_eq!(&waits[..6], &[100, 200, 400, 800, 1_600, 3_200]);
        assert_eq!(waits[13], 300_000, "capped at five minutes");
    }
}

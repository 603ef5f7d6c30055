//! What publisher confirms cost: the same messages published three ways to a queue
//! of their own, for the topology part of `flightbench run`. The relay itself only
//! ever publishes confirmed (`Confirms`); `Unconfirmed` is measured to show what the
//! safety costs, never offered as a way to run.
//!
//! The anchor (RabbitMQ's tutorial 7): 50,000 messages took 5.7 s waiting for each
//! confirm and 1.1 s confirming in batches.

use super::link::{self, BusError};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How the publisher learns its messages arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PublishMode {
    /// Each publish's confirm awaited before the next.
    PerMessage,
    /// A batch published, then its confirms awaited (the relay's default).
    Pipelined,
    /// No confirm mode: the broker says nothing, and nothing is known to have arrived.
    Unconfirmed,
}

impl PublishMode {
    pub const ALL: [PublishMode; 3] = [PublishMode::PerMessage, PublishMode::Pipelined, PublishMode::Unconfirmed];

    pub fn as_str(self) -> &'static str {
        match self {
            PublishMode::PerMessage => "confirm per message",
            PublishMode::Pipelined => "pipelined confirms",
            PublishMode::Unconfirmed => "no confirms",
        }
    }
}

/// One mode's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishRate {
    pub mode: PublishMode,
    pub messages: u64,
    pub seconds: f64,
    pub per_second: f64,
}

/// Publishes `messages` persistent messages of `body_bytes` each to a fresh durable
/// queue (removed afterwards) in `mode`, in batches of `batch` for `Pipelined`.
pub async fn publish_rate(
    url: &str,
    mode: PublishMode,
    messages: u64,
    batch: usize,
    body_bytes: usize,
) -> Result<PublishRate, BusError> {
    let connection = link::connect(url, "flightbench publish bench").await?;
    let channel = connection.create_channel().await?;
    let queue = format!("flightbench.bench.{}.{}", std::process::id(), crate::machine::unix_micros());
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    channel.queue_declare(queue.as_str().into(), durable, FieldTable::default()).await?;
    if mode != PublishMode::Unconfirmed {
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
    }
    let body = vec![b'x'; body_bytes];
    let publish = || {
        let properties = BasicProperties::default().with_delivery_mode(2);
        channel.basic_publish("".into(), queue.as_str().into(), BasicPublishOptions::default(), &body, properties)
    };
    let started = Instant::now();
    let mut sent = 0u64;
    let outcome = async {
        while sent < messages {
            match mode {
                PublishMode::PerMessage => {
                    expect_ack(publish().await?.await?)?;
                    sent += 1;
                }
                PublishMode::Pipelined | PublishMode::Unconfirmed => {
                    let n = (messages - sent).min(batch as u64);
                    let mut pending = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        pending.push(publish().await?);
                    }
                    for confirm in pending {
                        let confirmation = confirm.await?;
                        if mode == PublishMode::Pipelined {
                            expect_ack(confirmation)?;
                        }
                    }
                    sent += n;
                }
            }
        }
        Ok::<(), BusError>(())
    }
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
    let _ = connection.close(200, "done".into()).await;
    outcome?;
    Ok(PublishRate { mode, messages, seconds, per_second: messages as f64 / seconds.max(1e-9) })
}

fn expect_ack(confirmation: Confirmation) -> Result<(), BusError> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        other => Err(BusError::Unacknowledged(format!("{other:?}"))),
    }
}

//! Delay events over RabbitMQ: the outbox relay that publishes every committed event
//! with publisher confirms ([`relay`]), the consumers that follow them idempotently
//! and in order ([`consumer`]), the messages' contract ([`contract`]) and the
//! connections and their recovery ([`link`]).
//!
//! Above `store` (the relay reads the event streams and keeps its checkpoints there),
//! below `http` and the CLI, which decide what a service does with an event.

pub mod bench;
pub mod consumer;
pub mod contract;
pub mod link;
pub mod relay;

pub use consumer::{Consumer, ConsumerConfig, ConsumerStats, Handler};
pub use contract::{CONTRACT, DelayEventMessage, EXCHANGE};
pub use link::{BusError, DEFAULT_URL};
pub use relay::{Confirms, Relay, RelayConfig, RelayStats};

//! `flightbench query`: every store operation from the command line, as JSON.

use super::Refuse;
use super::{DatasetArgs, parse_with};
use crate::domain::{AirportCode, DelayCode, DelayEvent, EventKind, FlightId, Limit, Reason, TimeWindow, UtcTime};
use crate::failure::Failure;
use crate::store::{QueryPath, Store};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Query path: prepared (sqlx, cached statements), adhoc (SQL text with literals),
    /// orm (sea-orm) or raw (rusqlite / tokio-postgres, the driver floor).
    #[arg(long, value_parser = super::choice::<QueryPath>(), env = "FLIGHTBENCH_PATH", default_value_t = QueryPath::Prepared, global = true)]
    pub path: QueryPath,
    #[command(subcommand)]
    pub operation: Operation,
}

/// A half-open window `[from, to)`.
#[derive(Debug, Args)]
pub struct WindowArgs {
    /// Start (RFC 3339 such as 2026-12-01T06:00:00Z, or a date).
    #[arg(long, value_parser = parse_with(UtcTime::parse))]
    pub from: UtcTime,
    /// End, exclusive.
    #[arg(long, value_parser = parse_with(UtcTime::parse))]
    pub to: UtcTime,
}

#[derive(Debug, Subcommand)]
pub enum Operation {
    /// A flight and its current status.
    Flight {
        #[arg(value_parser = parse_with(FlightId::parse))]
        id: FlightId,
    },
    /// Departures from an airport in a window, ordered by time (all shards).
    Departures {
        #[arg(value_parser = parse_with(AirportCode::parse))]
        airport: AirportCode,
        #[command(flatten)]
        window: WindowArgs,
        /// At most this many rows (1 ..= 1000).
        #[arg(long, default_value = "50", value_parser = parse_with(Limit::parse))]
        limit: Limit,
    },
    /// A flight's event stream.
    Events {
        #[arg(value_parser = parse_with(FlightId::parse))]
        id: FlightId,
    },
    /// Delay statistics for departures from an airport in a window (all shards).
    Delays {
        #[arg(value_parser = parse_with(AirportCode::parse))]
        airport: AirportCode,
        #[command(flatten)]
        window: WindowArgs,
    },
    /// Append an event if the flight is at the expected version.
    Append {
        #[arg(value_parser = parse_with(FlightId::parse))]
        id: FlightId,
        /// The version the flight must be at (see `query flight`).
        #[arg(long, allow_negative_numbers = true)]
        expected_version: i64,
        #[arg(long, value_enum)]
        kind: KindArg,
        /// Delay in minutes (reported, revised, departed).
        #[arg(long, allow_negative_numbers = true)]
        delay_minutes: Option<i64>,
        /// Free-text reason (reported, revised, cancelled).
        #[arg(long, default_value = "", value_parser = parse_with(Reason::parse))]
        reason: Reason,
        /// When it happened (default: now).
        #[arg(long, value_parser = parse_with(UtcTime::parse))]
        at: Option<UtcTime>,
        /// IATA delay code, two digits (e.g. 93: late inbound aircraft).
        #[arg(long, value_parser = parse_with(DelayCode::parse))]
        cause: Option<DelayCode>,
    },
    /// BLAKE3 digest of each shard's rows (equal data ⇔ equal digests).
    Digest,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Reported,
    Revised,
    Cancelled,
    Departed,
}

fn event_kind(kind: KindArg, delay: Option<i64>, reason: Reason) -> anyhow::Result<EventKind> {
    let need_delay = || delay.refused(Failure::Usage, || "--delay-minutes is required for this kind".into());
    let event = match kind {
        KindArg::Reported => EventKind::Reported { delay_minutes: need_delay()?, reason },
        KindArg::Revised => EventKind::Revised { delay_minutes: need_delay()?, reason },
        KindArg::Cancelled => {
            super::ensure_usage!(delay.is_none(), "--delay-minutes does not apply to a cancellation");
            EventKind::Cancelled { reason }
        }
        KindArg::Departed => {
            super::ensure_usage!(reason.as_str().is_empty(), "--reason does not apply to a departure");
            EventKind::Departed { delay_minutes: need_delay()? }
        }
    };
    event.validate()?;
    Ok(event)
}

fn print(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    // Validate everything the user typed before touching the database.
    let (operation, path) = (args.operation, args.path);
    let window = |w: &WindowArgs| TimeWindow::new(w.from, w.to);
    let event = match &operation {
        Operation::Append { kind, delay_minutes, reason, at, cause, .. } => Some(
            DelayEvent::new(at.unwrap_or_else(UtcTime::now), event_kind(*kind, *delay_minutes, reason.clone())?)
                .with_cause(*cause),
        ),
        _ => None,
    };
    if let Operation::Departures { window: w, .. } | Operation::Delays { window: w, .. } = &operation {
        window(w)?;
    }

    let store = Store::open(&args.dataset.dir, &args.dataset.store_config()).await?;
    let result = match operation {
        Operation::Flight { id } => print(&store.flight(path, id).await?),
        Operation::Departures { airport, window: w, limit } => {
            print(&store.departures(path, airport, window(&w)?, limit).await?)
        }
        Operation::Events { id } => print(&store.events(path, id).await?),
        Operation::Delays { airport, window: w } => print(&store.delay_stats(path, airport, window(&w)?).await?),
        Operation::Append { id, expected_version, .. } => {
            // Cannot fail: built above for exactly this variant.
            let event = event.expect("event built for append");
            print(&store.append(path, id, expected_version, &event).await?)
        }
        Operation::Digest => print(&store.shard_digests().await?),
    };
    store.close().await;
    result
}

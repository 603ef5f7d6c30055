//! The command line: flags as parsed (clap, with `FLIGHTBENCH_*` environment
//! fallbacks) → validated, typed config → the library. This is the edge where errors
//! become `anyhow` with context and then a one-line message and an exit code
//! ([`failure_of`]; the codes are in `failure`).

mod auth;
mod bench_report;
mod ceiling;
mod cert;
mod events;
pub mod gdpr;
mod load;
mod profile;
mod project;
mod projections;
mod query;
mod reshard;
mod run;
mod runtime;
mod seed;
mod serve;
mod services;
mod up;

use crate::choice::Choice;
use crate::failure::{Classify, Failure};
use crate::store::{Durability, PlanCacheMode, StoreConfig};
use crate::telemetry::{self, LogFormat, Telemetry, Traces};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "flightbench",
    version,
    about = "A performance workbench built around a real flight-delay tracking service"
)]
#[command(long_about = "A performance workbench built around a real flight-delay tracking service.\n\n\
Seed a deterministic dataset into sharded SQLite files (or PostgreSQL), then query it \
through four query paths (prepared, adhoc, orm, raw) that return identical results.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `flightbench=debug`.
    // lapin logs every returned (unroutable) message, body bytes and all, at warn:
    // the relay handles each one and says so in a line of its own.
    #[arg(long, global = true, env = "FLIGHTBENCH_LOG", default_value = "warn,lapin::returned_messages=error")]
    pub log: String,
    /// Log lines as text or as one JSON object per line (for log shippers).
    #[arg(long, global = true, value_parser = choice::<LogFormat>(), env = "FLIGHTBENCH_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The workbench run: seed if needed, measure every configuration, write a report.
    Run(run::RunArgs),
    /// Which figures moved between two workbench runs.
    Compare(run::CompareArgs),
    /// Generate the deterministic dataset into shards (SQLite files or PostgreSQL).
    Seed(seed::SeedArgs),
    /// Run one store operation against the seeded dataset and print JSON.
    Query(query::QueryArgs),
    /// Move the dataset to another shard count while `serve` keeps serving it.
    Reshard(reshard::ReshardArgs),
    /// Maintain the stored event streams (`events migrate`: old schema versions → current).
    Events(events::EventsArgs),
    /// Keep the async read models up to date, apart from the API (`serve` runs the same
    /// runner in-process unless told not to).
    Project(project::ProjectArgs),
    /// Inspect and rebuild the async read models (`projections rebuild NAME`: blue/green).
    Projections(projections::ProjectionsArgs),
    /// Serve the flight API over HTTP/1.1, h2c and (with a certificate) TLS.
    Serve(Box<serve::ServeArgs>),
    /// Start a split topology (gateway, query, command, notify) from one file as
    /// `serve` processes, with each one's log lines prefixed by its name; Ctrl-C stops it.
    Up(up::UpArgs),
    /// A minimal server returning a fixed body: the ceiling load figures are compared to.
    Ceiling(ceiling::CeilingArgs),
    /// Load-test a server: HTTP/1.1 or HTTP/2, closed or open loop, honest latencies.
    Load(load::LoadArgs),
    /// Flamegraph of the server under load; `--compare` adds a differential flamegraph.
    Profile(profile::ProfileArgs),
    /// Write a self-signed certificate for `serve --tls-cert` (local testing).
    Cert(cert::CertArgs),
    /// Development signing keys for `flightbench token` and `serve --auth jwks`.
    Keys(auth::KeysArgs),
    /// Mint a development bearer token (role, subject, lifetime) from a key of `keys`.
    Token(auth::TokenArgs),
    /// Data subjects' rights on a stopped server's dataset: erase (crypto-shredding)
    /// and export.
    Gdpr(gdpr::GdprArgs),
    /// The tamper-evident audit log: `audit verify` checks every chain.
    Audit(gdpr::AuditArgs),
    /// Turn criterion's results (`cargo bench`) into results/benchmarks.md.
    BenchReport(bench_report::BenchReportArgs),
}

/// Where the dataset is and how to open it; shared by every command that reads it.
#[derive(Debug, Clone, Args)]
pub struct DatasetArgs {
    /// Directory holding manifest.json (and the SQLite shard files).
    #[arg(long, env = "FLIGHTBENCH_DIR", default_value = "shards")]
    pub dir: PathBuf,
    /// SQLite `synchronous`: normal (WAL-safe, may lose the last commits on power
    /// loss) or full (sync on every commit).
    #[arg(long, value_parser = choice::<Durability>(), env = "FLIGHTBENCH_DURABILITY", default_value_t = Durability::Normal)]
    pub durability: Durability,
    /// Connections per shard for each database library.
    #[arg(long, env = "FLIGHTBENCH_POOL_SIZE", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub pool_size: u32,
    /// Password for PostgreSQL shards (never written to the manifest).
    #[arg(long, env = "PGPASSWORD", hide_env_values = true)]
    pub pg_password: Option<String>,
    /// PostgreSQL plan_cache_mode for shard connections.
    #[arg(long, value_parser = choice::<PlanCacheMode>(), env = "FLIGHTBENCH_PLAN_CACHE_MODE", default_value_t = PlanCacheMode::Auto)]
    pub plan_cache_mode: PlanCacheMode,
}

impl DatasetArgs {
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            durability: self.durability,
            pool_size: self.pool_size,
            busy_timeout: Duration::from_secs(5),
            pg_password: self.pg_password.clone(),
            plan_cache_mode: self.plan_cache_mode,
        }
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Compare(args) => run::compare_runs(args),
        Command::Seed(args) => seed::run(args).await,
        Command::Query(args) => query::run(args).await,
        Command::Events(args) => events::run(args).await,
        Command::Reshard(args) => reshard::run(args).await,
        Command::Project(args) => project::run(args).await,
        Command::Projections(args) => projections::run(args).await,
        Command::BenchReport(args) => bench_report::run(args),
        Command::Serve(args) => serve::run(*args).await,
        Command::Up(args) => up::run(args).await,
        Command::Cert(args) => cert::run(args),
        Command::Keys(args) => auth::keys(args).await,
        Command::Token(args) => auth::token(args),
        Command::Gdpr(args) => gdpr::run(args).await,
        Command::Audit(args) => gdpr::audit(args).await,
        Command::Load(args) => load::run_load(args).await,
        Command::Profile(args) => profile::run(args).await,
        Command::Ceiling(args) => ceiling::ceiling(args).await,
    }
}

/// Logs go to stderr so stdout stays machine-readable; `serve` may also export traces.
pub fn init_telemetry(cli: &Cli) -> anyhow::Result<Telemetry> {
    let (traces, service) = match &cli.command {
        Command::Serve(args) => (args.traces()?, args.services.role.service_name()),
        _ => (Traces::Off, "flightbench".to_owned()),
    };
    Ok(telemetry::init(&cli.log, cli.log_format, &traces, &service)?)
}

/// An error the CLI itself finds, with its kind: a flag that cannot work (usage), a
/// file or answer that is not what it should be (bad input), a host that does not
/// resolve (unreachable).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub failure: Failure,
    pub message: String,
}

impl Classify for Refused {
    fn failure(&self) -> Failure {
        self.failure
    }
}

/// `return Err(usage!("--x needs --y"))`: an error with the usage exit code.
macro_rules! usage {
    ($($message:tt)*) => {
        anyhow::Error::new($crate::cli::Refused {
            failure: $crate::failure::Failure::Usage,
            message: format!($($message)*),
        })
    };
}
pub(crate) use usage;

/// Like `anyhow::ensure!`, with the usage exit code.
macro_rules! ensure_usage {
    ($condition:expr, $($message:tt)*) => {
        if !$condition {
            return Err($crate::cli::usage!($($message)*));
        }
    };
}
pub(crate) use ensure_usage;

/// `.refused(Failure::Usage, || "…")`: an error (its message appended) or an absence,
/// turned into a [`Refused`] of that kind.
pub(crate) trait Refuse<T> {
    fn refused(self, failure: Failure, message: impl FnOnce() -> String) -> anyhow::Result<T>;
}

impl<T, E: std::fmt::Display> Refuse<T> for Result<T, E> {
    fn refused(self, failure: Failure, message: impl FnOnce() -> String) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::Error::new(Refused { failure, message: format!("{}: {e}", message()) }))
    }
}

impl<T> Refuse<T> for Option<T> {
    fn refused(self, failure: Failure, message: impl FnOnce() -> String) -> anyhow::Result<T> {
        self.ok_or_else(|| anyhow::Error::new(Refused { failure, message: message() }))
    }
}

/// The kind of failure an error chain is, from the first error in it that knows
/// (`failure::Classify`); an error no layer classified is internal.
pub fn failure_of(error: &anyhow::Error) -> Failure {
    use crate::auth::keydir::KeyDirError;
    use crate::bench_report::ReportError;
    use crate::choice::UnknownChoice;
    use crate::dataset::{ManifestError, SpecError};
    use crate::domain::{EventKindError, IdError, LimitError, ReasonError, ReportingError, TimeError};
    use crate::harness::SampleError;
    use crate::http::TlsError;
    use crate::load::LoadError;
    use crate::load::workload::WorkloadError;
    use crate::projection::ProjectionError;
    use crate::seal::SealError;
    use crate::seal::kek::KekError;
    use crate::seal::keystore::KeyStoreError;
    use crate::seed::SeedError;
    use crate::store::StoreError;
    use crate::telemetry::TelemetryError;
    use crate::workbench::WorkbenchError;
    fn classified<E: Classify + std::error::Error + 'static>(
        cause: &(dyn std::error::Error + 'static),
    ) -> Option<Failure> {
        cause.downcast_ref::<E>().map(Classify::failure)
    }
    error
        .chain()
        .find_map(|cause| {
            classified::<Refused>(cause)
                .or_else(|| classified::<WorkbenchError>(cause))
                .or_else(|| classified::<LoadError>(cause))
                .or_else(|| classified::<WorkloadError>(cause))
                .or_else(|| classified::<SampleError>(cause))
                .or_else(|| classified::<ProjectionError>(cause))
                .or_else(|| classified::<StoreError>(cause))
                .or_else(|| classified::<SealError>(cause))
                .or_else(|| classified::<KekError>(cause))
                .or_else(|| classified::<KeyStoreError>(cause))
                .or_else(|| classified::<SeedError>(cause))
                .or_else(|| classified::<crate::reshard::ReshardError>(cause))
                .or_else(|| classified::<crate::bus::BusError>(cause))
                .or_else(|| classified::<crate::notify::NotifyError>(cause))
                .or_else(|| classified::<ManifestError>(cause))
                .or_else(|| classified::<TelemetryError>(cause))
                .or_else(|| classified::<TlsError>(cause))
                .or_else(|| classified::<KeyDirError>(cause))
                .or_else(|| classified::<ReportError>(cause))
                .or_else(|| classified::<UnknownChoice>(cause))
                .or_else(|| classified::<IdError>(cause))
                .or_else(|| classified::<TimeError>(cause))
                .or_else(|| classified::<LimitError>(cause))
                .or_else(|| classified::<EventKindError>(cause))
                .or_else(|| classified::<ReasonError>(cause))
                .or_else(|| classified::<ReportingError>(cause))
                .or_else(|| classified::<SpecError>(cause))
                .or_else(|| classified::<std::io::Error>(cause))
        })
        .unwrap_or(Failure::Internal)
}

/// clap value parser for a [`Choice`] (query paths, protocols, parts…): its names as
/// the possible values, each with its help, parsed through the one `FromStr`.
pub(crate) fn choice<T: Choice + Send + Sync>() -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let names = T::ALL.iter().map(|v| PossibleValue::new(v.name()).help(v.help()));
    PossibleValuesParser::new(names).try_map(|name| crate::choice::parse::<T>(&name))
}

/// clap value parser for any domain `parse` function.
pub(crate) fn parse_with<T, E: std::fmt::Display>(
    f: fn(&str) -> Result<T, E>,
) -> impl Fn(&str) -> Result<T, String> + Clone {
    move |s| f(s).map_err(|e| e.to_string())
}

/// A duration that may be zero (`0s`: every time).
pub(crate) fn parse_interval(text: &str) -> Result<Duration, String> {
    match text {
        "0" | "0s" | "0ms" | "0m" => Ok(Duration::ZERO),
        _ => parse_duration(text),
    }
}

pub(crate) fn parse_ratio(text: &str) -> Result<f64, String> {
    let ratio: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&ratio) { Ok(ratio) } else { Err(format!("{ratio} is outside 0..=1")) }
}

/// clap value parser for durations: `500ms`, `5s`, `2m`, `1h` (a bare number is
/// seconds), up to a day.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 500ms, 5s, 2m or 1h (up to a day)");
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => value / 1_000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3_600.0,
        _ => return Err(bad()),
    };
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("5h"), Ok(Duration::from_secs(18_000)));
        for bad in ["", "0s", "-1s", "25h", "fast", "2d", "100000s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Any text: a duration within (0, a day], or an error; never a panic.
        #[test]
        fn durations_are_bounded_or_refused(text in "[0-9.eE+-]{0,30}(ms|s|m|h|)?") {
            if let Ok(d) = parse_duration(&text) {
                proptest::prop_assert!(d > Duration::ZERO && d <= Duration::from_secs(86_400), "{text} gave {d:?}");
            }
        }

        #[test]
        fn arbitrary_duration_text_never_panics(text in "\\PC{0,40}") {
            let _ = parse_duration(&text);
        }
    }
}

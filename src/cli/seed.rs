//! `flightbench seed`.

use crate::dataset::{Backend, DatasetSpec};
use crate::domain::UtcTime;
use crate::routing::ShardCount;
use crate::seed::{PgShards, SeedConfig, SeedTarget, seed};
use crate::store::Durability;
use anyhow::Context;
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Directory for manifest.json and the SQLite shard files.
    #[arg(long, env = "FLIGHTBENCH_DIR", default_value = "shards")]
    pub dir: PathBuf,
    /// Number of flights (1 ..= 100,000,000).
    #[arg(long, default_value_t = 100_000)]
    pub flights: u64,
    /// Number of shards (1 ..= 256).
    #[arg(long, default_value = "8")]
    pub shards: ShardCount,
    /// Random seed: the same seed and sizes give byte-identical data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Days of schedule.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// First day of the schedule (YYYY-MM-DD, UTC).
    #[arg(long, default_value = "2026-12-01", value_parser = super::parse_with(UtcTime::parse))]
    pub start: UtcTime,
    /// Where the shards live.
    #[arg(long, value_parser = super::choice::<Backend>(), default_value_t = Backend::Sqlite)]
    pub backend: Backend,
    /// PostgreSQL base URL; seed creates one database per shard named after its
    /// database (`…/flightbench` → flightbench_0, flightbench_1, …).
    #[arg(long, env = "FLIGHTBENCH_PG_URL", conflicts_with = "pg_shard_url")]
    pub pg_url: Option<String>,
    /// An existing PostgreSQL database per shard (repeat once per shard, in order);
    /// shards may be on different servers.
    #[arg(long)]
    pub pg_shard_url: Vec<String>,
    /// Password for PostgreSQL (never written to the manifest).
    #[arg(long, env = "PGPASSWORD", hide_env_values = true)]
    pub pg_password: Option<String>,
    /// SQLite `synchronous` setting recorded for serving (normal or full).
    #[arg(long, value_parser = super::choice::<Durability>(), default_value_t = Durability::Normal)]
    pub durability: Durability,
    /// Replace an existing dataset.
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl SeedArgs {
    fn config(&self) -> anyhow::Result<SeedConfig> {
        let spec = DatasetSpec::new(self.seed, self.flights, self.days, self.start)?;
        let target = match self.backend {
            Backend::Sqlite => {
                if self.pg_url.is_some() || !self.pg_shard_url.is_empty() {
                    return Err(super::usage!("--pg-url and --pg-shard-url need --backend postgres"));
                }
                SeedTarget::Sqlite { durability: self.durability }
            }
            Backend::Postgres => {
                let shards = match (&self.pg_url, self.pg_shard_url.is_empty()) {
                    (Some(url), _) => PgShards::Base(url.clone()),
                    (None, false) => PgShards::Explicit(self.pg_shard_url.clone()),
                    (None, true) => {
                        return Err(super::usage!(
                            "--backend postgres needs --pg-url URL (e.g. postgres://postgres@127.0.0.1:5432/flightbench) \
                         or one --pg-shard-url per shard"
                        ));
                    }
                };
                SeedTarget::Postgres { shards, password: self.pg_password.clone() }
            }
        };
        Ok(SeedConfig {
            dir: self.dir.clone(),
            spec,
            shards: self.shards,
            target,
            force: self.force,
            progress: !self.quiet && std::io::stderr().is_terminal(),
        })
    }
}

pub async fn run(args: SeedArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let report = seed(&config).await.context("seed failed")?;
    let m = &report.manifest;
    eprintln!(
        "seeded {} flights and {} events into {} {} shards in {:.1} s; manifest: {}",
        m.counts.flights,
        m.counts.events,
        m.shards.get(),
        m.backend.as_str(),
        report.elapsed.as_secs_f64(),
        crate::dataset::Manifest::path_in(&config.dir).display()
    );
    Ok(())
}

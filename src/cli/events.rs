//! `flightbench events`: maintenance of the stored event streams.

use super::DatasetArgs;
use crate::dataset::MANIFEST_FORMAT;
use crate::domain::SCHEMA_VERSION;
use crate::store::{Store, upgrade_layout};
use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    pub command: EventsCommand,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Rewrite events stored in older schema versions as the current one, in place.
    ///
    /// Each batch is one transaction: the old events are upcast as every reader sees
    /// them, rewritten, read back and compared by digest; a batch that would change
    /// what readers see is rolled back. Safe while `serve` runs (the service only
    /// appends), and resumable: run it again after an interruption. A dataset seeded
    /// by a build before event schema v2 (manifest format 1) gets the new columns first.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Events per transaction. Larger batches migrate faster; on SQLite each batch
    /// holds the shard's write lock while it runs (about 5 ms per 1,000 events here).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    match args.command {
        EventsCommand::Migrate(args) => migrate(args).await,
    }
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let config = args.dataset.store_config();
    if let Some(found) =
        upgrade_layout(&args.dataset.dir, &config).await.context("cannot upgrade the dataset's layout")?
    {
        eprintln!(
            "upgraded every shard's tables in place (manifest format {found} → {MANIFEST_FORMAT}): {}numbered the \
             stored events and added the async read models' tables, which the projection runner fills",
            if found == 1 { "added event schema v2's columns, " } else { "" }
        );
    }
    let store = Store::open(&args.dataset.dir, &config).await?;
    let old: u64 = store.old_event_counts().await?.iter().sum();
    let bar =
        if args.quiet || !std::io::stderr().is_terminal() { ProgressBar::hidden() } else { ProgressBar::new(old) };
    // Cannot fail: the template is a literal.
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} migrating [{bar:30}] {human_pos}/{human_len} events ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let report = store.migrate_events(args.batch, |n| bar.inc(n)).await;
    bar.finish_and_clear();
    store.close().await;
    let report = report.context("migration stopped; batches committed so far are kept, run it again to resume")?;
    for shard in &report {
        println!(
            "shard {}: {} events rewritten as schema v{SCHEMA_VERSION}; digest before {} = after {}",
            shard.shard,
            shard.migrated,
            &shard.digest_before[..16],
            &shard.digest_after[..16]
        );
    }
    let migrated: u64 = report.iter().map(|s| s.migrated).sum();
    println!(
        "migrated {migrated} of {old} older events in {:.1} s; every batch read back identical",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

//! `flightbench project`: the projection runner as its own process, apart from the API.

use super::DatasetArgs;
use crate::choice::Choice;
use crate::projection::{Projector, ProjectorConfig, ReadModel};
use crate::store::Store;
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ProjectArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Apply every event committed so far, then exit (instead of following new ones
    /// until interrupted).
    #[arg(long)]
    pub once: bool,
    /// Read models to keep (comma-separated); all by default.
    #[arg(long, value_delimiter = ',', value_parser = super::choice::<ReadModel>())]
    pub models: Vec<ReadModel>,
    /// Events read per batch; each batch is one transaction per target shard.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// How often an idle follower looks for events written by other processes.
    #[arg(long, default_value = "250ms", value_parser = super::parse_duration)]
    pub poll: Duration,
    /// While events keep coming, the least time between batches (more: fewer write
    /// transactions, more lag).
    #[arg(long, default_value = "250ms", value_parser = super::parse_duration)]
    pub gather: Duration,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub async fn run(args: ProjectArgs) -> anyhow::Result<()> {
    let store = Arc::new(Store::open(&args.dataset.dir, &args.dataset.store_config()).await?);
    let models = if args.models.is_empty() { ReadModel::ALL.to_vec() } else { args.models.clone() };
    let config = ProjectorConfig {
        models: models.clone(),
        batch: i64::from(args.batch),
        poll: args.poll,
        gather: args.gather,
        inline: Vec::new(),
    };
    let projector = Projector::new(store.clone(), config);
    let names: Vec<_> = models.iter().map(|m| m.name()).collect();
    if args.once {
        let bar = if args.quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new_spinner()
        };
        // Cannot fail: the template is a literal.
        bar.set_style(
            ProgressStyle::with_template("{spinner} projecting {human_pos} events ({per_sec})")
                .expect("valid template"),
        );
        let started = std::time::Instant::now();
        let done = projector.catch_up(&|n| bar.inc(n)).await;
        bar.finish_and_clear();
        store.close().await;
        let done = done.context("projection stopped; every batch committed so far is kept, run it again to resume")?;
        for (model, applied) in &done.applied {
            println!("{model}: applied {applied} events");
        }
        if done.gaps > 0 {
            println!(
                "{} event numbers were missing from the shards' sequences (deleted outside the service)",
                done.gaps
            );
        }
        println!("caught up {} in {:.2} s", names.join(", "), started.elapsed().as_secs_f64());
        return Ok(());
    }
    eprintln!("following {} on {} shards; Ctrl-C stops", names.join(", "), store.shard_count());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stats = projector.stats();
    let running = tokio::spawn(async move { projector.run(stopped).await });
    tokio::signal::ctrl_c().await.context("cannot wait for Ctrl-C")?;
    let _ = stop.send(true);
    running.await.context("the runner failed")?;
    store.close().await;
    let applied: u64 = stats.followers.iter().map(|(_, _, f)| f.applied.load(Ordering::Relaxed)).sum();
    println!("stopped after applying {applied} events");
    Ok(())
}

//! `flightbench projections`: inspect and rebuild the async read models.

use super::DatasetArgs;
use crate::choice::Choice;
use crate::projection::rebuild::rebuild;
use crate::projection::{DECLARED, ReadModel};
use crate::store::Store;
use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct ProjectionsArgs {
    #[command(subcommand)]
    pub command: ProjectionsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Every read model, its lifecycle, and each async one's lag behind each shard.
    Status(StatusArgs),
    /// Replay a read model from the events into a new table while the old one keeps
    /// serving, then swap them (blue/green).
    ///
    /// The swap compares the rebuilt table with the live one by digest at the same
    /// checkpoints and refuses if they differ (the live one was changed outside the
    /// runner) unless `--force`. Kill it at any point: the live table keeps serving,
    /// and the next rebuild starts over cleanly.
    Rebuild(RebuildArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The read model to rebuild.
    #[arg(value_parser = super::choice::<ReadModel>())]
    pub model: ReadModel,
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Events read per batch while replaying.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Swap even where the live table differs from the replay.
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub async fn run(args: ProjectionsArgs) -> anyhow::Result<()> {
    match args.command {
        ProjectionsCommand::Status(args) => status(args).await,
        ProjectionsCommand::Rebuild(args) => rebuild_model(args).await,
    }
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.dataset.dir, &args.dataset.store_config()).await?;
    for declared in DECLARED {
        println!("{:<18} {:<7} on {}", declared.name, declared.lifecycle, declared.placement);
    }
    for model in ReadModel::ALL {
        let positions = store.projection_positions(model.name()).await?;
        let lags: Vec<String> = positions
            .iter()
            .enumerate()
            .map(|(shard, (head, low))| match low {
                Some(at) => format!("shard {shard}: {} behind", head - at),
                None => format!("shard {shard}: not started ({head} events)"),
            })
            .collect();
        println!("{}: {}", model.name(), lags.join(", "));
    }
    store.close().await;
    Ok(())
}

async fn rebuild_model(args: RebuildArgs) -> anyhow::Result<()> {
    let store = Arc::new(Store::open(&args.dataset.dir, &args.dataset.store_config()).await?);
    let bar = if args.quiet || !std::io::stderr().is_terminal() { ProgressBar::hidden() } else { ProgressBar::new(0) };
    // Cannot fail: the template is a literal.
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} rebuilding {msg} [{bar:30}] {human_pos}/{human_len} events ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(args.model.name());
    let started = std::time::Instant::now();
    let done =
        rebuild(&store, args.model, i64::from(args.batch), args.force, &|total| bar.set_length(total), &|n| bar.inc(n))
            .await;
    bar.finish_and_clear();
    store.close().await;
    let done = done.context("rebuild stopped; the live read model is unchanged where it was not swapped")?;
    let seconds = started.elapsed().as_secs_f64();
    for shard in &done.shards {
        let verdict = match &shard.live {
            Ok(live) if *live == shard.digest => "equal to the live table".to_owned(),
            Ok(live) => format!("differs from the live table ({live}); replaced (--force)"),
            Err(why) => format!("live table not comparable ({why}); replaced (--force)"),
        };
        println!("shard {}: {} rows, digest {} {verdict}", shard.shard, shard.rows, shard.digest);
    }
    println!(
        "rebuilt {} from {} events in {seconds:.2} s ({:.0} events/s) and swapped it in on {} shards",
        done.model,
        done.replayed,
        done.replayed as f64 / seconds.max(1e-9),
        done.shards.len()
    );
    Ok(())
}

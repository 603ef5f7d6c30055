//! `flightbench reshard`.

use super::DatasetArgs;
use crate::reshard::{ReshardConfig, ReshardReport, reshard};
use crate::routing::ShardCount;
use anyhow::Context;
use clap::Args;
use std::io::IsTerminal;

#[derive(Debug, Args)]
#[command(long_about = "Move the dataset to another shard count while `flightbench serve` keeps serving it.\n\n\
Copies every flight, status row, event and audit record into a new layout beside the old one \
(layout-<n>/), catches up the writes made meanwhile from the event streams, compares every flight \
in both layouts, then switches: writes pause while the last ones are copied and compared, the old \
shards are fenced, and the manifest moves to the new layout. A running server follows without a \
restart. Until the switch the old layout is untouched: after a crash or Ctrl-C, run the same \
command again to resume, or `--abort` to remove the new layout. SQLite datasets only.")]
pub struct ReshardArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// The new shard count (1 ..= 256, not the current one).
    #[arg(long, required_unless_present = "abort")]
    pub to: Option<ShardCount>,
    /// Stop an interrupted reshard: remove its new layout and any fence it left, so
    /// the old layout serves reads and writes as before.
    #[arg(long, conflicts_with = "to")]
    pub abort: bool,
    /// CPU priority while resharding, as a nice value (0 = the server's own, 19 =
    /// lowest). The copy, the read models' build and the verify use whole cores; at the
    /// default the server they run beside keeps the CPU it needs, and the reshard uses
    /// what it leaves (results/resharding.md measures 0 against 19). Beside a server
    /// that uses every core, pass 0 or the reshard may not catch up. The switch runs at
    /// the server's priority when the process may raise it again (root does).
    #[arg(long, default_value_t = 19, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub nice: i32,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: ReshardArgs) -> anyhow::Result<()> {
    crate::reshard::set_priority(args.nice).context("cannot lower the CPU priority (--nice)")?;
    let config = ReshardConfig {
        dir: args.dataset.dir.clone(),
        to: args.to,
        abort: args.abort,
        store: args.dataset.store_config(),
        nice: args.nice,
        progress: !args.quiet && std::io::stderr().is_terminal(),
    };
    let report = reshard(&config).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, args.abort);
    }
    Ok(())
}

fn print_report(r: &ReshardReport, aborted: bool) {
    if aborted {
        println!(
            "aborted the reshard from {} to {} shards: its new layout is removed and the {} old shards serve as before",
            r.from, r.to, r.from
        );
        return;
    }
    let resumed = if r.resumed { " (resumed)" } else { "" };
    println!(
        "resharded {} → {} shards{resumed} in {:.1} s; the dataset is now layout {}",
        r.from, r.to, r.seconds, r.layout
    );
    if !r.resumed {
        println!(
            "  copy:     {} flights, {} events in {:.1} s ({:.0} flights/s)",
            r.flights,
            r.events_copied,
            r.copy_seconds,
            r.flights as f64 / r.copy_seconds.max(1e-9)
        );
    }
    println!(
        "  catch-up: {} events written meanwhile, in {} rounds ({:.1} s)",
        r.events_caught_up, r.catch_up_rounds, r.catch_up_seconds
    );
    println!("  read models built on the new layout in {:.1} s", r.read_models_seconds);
    println!("  verify:   {} flights equal in both layouts ({:.1} s)", r.flights_verified, r.verify_seconds);
    let s = &r.pause_steps;
    println!(
        "  switch:   writes paused {:.1} ms (locks {:.1}, last writes {:.1}, compare {:.1}, audit chains {:.1}, relay checkpoints {:.1}, fences {:.1}, manifest {:.1})",
        r.pause_ms, s.lock_ms, s.catch_up_ms, s.compare_ms, s.audit_ms, s.relay_ms, s.fence_ms, s.manifest_ms
    );
    println!("  the old layout is kept, fenced against writes; remove it when satisfied:");
    for file in &r.old_layout {
        println!("    {file}");
    }
}

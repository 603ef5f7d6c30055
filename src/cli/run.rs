//! `flightbench run` and `flightbench compare`.

use super::{Refuse, Refused, ensure_usage};
use crate::failure::Failure;
use crate::workbench::compare::compare;
use crate::workbench::data::{RUN_SCHEMA_VERSION, RunData};
use crate::workbench::{Part, Placement, Plan, Preset, Progress, findings, report};
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// About a minute: 20,000 flights, one 1 s round per configuration (no intervals).
    #[arg(long, conflicts_with = "full")]
    pub quick: bool,
    /// Larger data and longer runs: 1,000,000 flights, 7 rounds of 4 s per configuration.
    #[arg(long)]
    pub full: bool,
    /// Run only these parts (comma-separated): paths, protocols, compression, shards,
    /// cache, mixed, projections, security, reshard, topology, profile.
    #[arg(long, value_parser = super::choice::<Part>(), value_delimiter = ',', conflicts_with = "skip")]
    pub only: Vec<Part>,
    /// Run every part but these (comma-separated).
    #[arg(long, value_parser = super::choice::<Part>(), value_delimiter = ',')]
    pub skip: Vec<Part>,
    /// The main dataset: used when it holds the preset's dataset, seeded when it holds
    /// none. A dataset seeded with other settings is left alone and the run keeps its
    /// own in <dir>/workbench/, beside the shard series.
    #[arg(long, env = "FLIGHTBENCH_DIR", default_value = "shards")]
    pub dir: PathBuf,
    /// Flights in the datasets, instead of the preset's.
    #[arg(long, value_parser = clap::value_parser!(u64).range(100..=100_000_000))]
    pub flights: Option<u64>,
    /// Measured seconds per configuration, instead of the preset's (e.g. 2s, 500ms).
    #[arg(long, value_parser = super::parse_duration)]
    pub seconds: Option<Duration>,
    /// Measure every configuration this many times, in interleaved rounds (the order
    /// alternating within each part): every ratio gets a 95% interval from them, and
    /// each cell's figures are its median round's. The preset decides by default (5;
    /// --quick 1, whose ratios then have no interval).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=99))]
    pub rounds: Option<u32>,
    /// Pin the server's threads and the load generator's threads to disjoint halves of
    /// the cores (needs 2 or more). Off by default: on the 2-core VM, three default runs
    /// each way spread as much from run to run (median headline ±7.8% pinned, ±7.9%
    /// not), and the intervals within a run were wider pinned (median half-width 20%
    /// against 14%): one server thread on one core feels every stall of that core
    /// (results/reproducibility.md).
    #[arg(long)]
    pub pin: bool,
    /// Measure a cell again when other work took more than this share of the machine
    /// (0–1) while it ran, or the hypervisor stole as much.
    #[arg(long, default_value_t = crate::workbench::NOISE_THRESHOLD, value_parser = parse_share)]
    pub noise_threshold: f64,
    /// How many times a disturbed cell is measured again before it is kept and marked.
    #[arg(long, default_value_t = crate::workbench::NOISE_RETRIES, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub noise_retries: u32,
    /// The report goes into <results>/<date>-<host>/ (a new directory each run).
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Exactly this report directory instead (must not exist or be empty).
    #[arg(long, conflicts_with = "results")]
    pub out: Option<PathBuf>,
}

impl RunArgs {
    fn plan(&self) -> anyhow::Result<Plan> {
        let preset = if self.quick {
            Preset::Quick
        } else if self.full {
            Preset::Full
        } else {
            Preset::Default
        };
        let mut parts: Vec<Part> = if self.only.is_empty() { Part::ALL.to_vec() } else { self.only.clone() };
        parts.retain(|p| !self.skip.contains(p));
        parts.sort();
        parts.dedup();
        ensure_usage!(!parts.is_empty(), "--skip leaves nothing to run");
        let out = match &self.out {
            Some(out) => {
                let empty = std::fs::read_dir(out).map(|mut d| d.next().is_none()).unwrap_or(true);
                ensure_usage!(empty, "--out {} is not empty; the report never overwrites files", out.display());
                out.clone()
            }
            None => fresh_dir(&self.results)?,
        };
        let placement = match self.pin {
            false => None,
            true => Some(Placement::split(&crate::machine::core_ids()).refused(Failure::Usage, || {
                format!("--pin needs 2 or more cores; this machine has {}", crate::machine::cores())
            })?),
        };
        let (server_threads, load_threads) = match &placement {
            Some(p) => (p.server_cores.len(), p.load_cores.len()),
            None => (crate::machine::cores(), crate::machine::cores()),
        };
        Ok(Plan {
            preset,
            parts,
            dir: self.dir.clone(),
            flights: self.flights.unwrap_or(preset.flights()),
            warmup: preset.warmup(),
            measure: self.seconds.unwrap_or(preset.measure()),
            out,
            server_threads,
            load_threads,
            rounds: self.rounds.unwrap_or(preset.rounds()),
            placement: placement.unwrap_or_default(),
            noise_threshold: self.noise_threshold,
            noise_retries: self.noise_retries,
        })
    }
}

/// A share of the machine, 0 to 1.
fn parse_share(text: &str) -> Result<f64, String> {
    let share: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&share) { Ok(share) } else { Err(format!("{share} is outside 0..=1")) }
}

/// `<results>/<date>-<host>`, or `-2`, `-3`… when a run today already wrote one.
fn fresh_dir(results: &Path) -> anyhow::Result<PathBuf> {
    let date = time::OffsetDateTime::now_utc().date();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String =
        host.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let base = if host.is_empty() { date.to_string() } else { format!("{date}-{host}") };
    (1..1_000)
        .map(|n| if n == 1 { results.join(&base) } else { results.join(format!("{base}-{n}")) })
        .find(|dir| !dir.exists())
        .context("no free report directory name")
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let plan = args.plan()?;
    let parts: Vec<&str> = plan.parts.iter().map(|p| p.as_str()).collect();
    println!(
        "flightbench run ({} preset): {} configurations, about {:.0} s of load, parts {}",
        plan.preset.as_str(),
        plan.cell_count(),
        plan.estimate().as_secs_f64(),
        parts.join(", ")
    );
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; its figures are not worth comparing (cargo run --release -- run)");
    }
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    let show = |event: Progress<'_>| match event {
        Progress::Seeding { dir, flights, shards } => {
            bar.set_message(format!("seeding {flights} flights into {shards} shards in {}", dir.display()));
            bar.suspend(|| println!("seeding {flights} flights into {shards} SQLite shards in {}", dir.display()));
        }
        Progress::Cell { index, total, id, left } => {
            bar.set_message(format!("[{index}/{total}] {id}, about {:.0} s left", left.as_secs_f64()));
        }
        Progress::Profiling { index, total, left } => {
            bar.set_message(format!("[{index}/{total}] profile, about {:.0} s left", left.as_secs_f64()));
        }
        Progress::Rebuilding { flights } => {
            bar.set_message(format!("rebuilding the read models of {} flights", findings::count(flights as f64)));
        }
        Progress::Resharding { stage } => bar.set_message(format!("reshard part: {stage}")),
        Progress::Topology { stage } => bar.set_message(format!("topology part: {stage}")),
        Progress::CellDone { cell, round } => bar.suspend(|| {
            let cpu = round.server_cpu_us_per_request.map_or(String::new(), |c| format!("  {c:>6.1} µs CPU/req"));
            let disturbed = match round.disturbance {
                Some(d) if round.disturbed => {
                    format!("  DISTURBED ({:.0}% of the machine elsewhere)", d.others_share.max(d.steal_share) * 100.0)
                }
                _ if round.attempts > 1 => format!("  (measured {} times: the machine was busy)", round.attempts),
                _ => String::new(),
            };
            println!(
                "  {:<24} {:>10} req/s  p99 {:>7.2} ms{cpu}{}{disturbed}",
                cell.id.to_string(),
                findings::count(cell.requests_per_s),
                cell.latency.p99_ms,
                if cell.errors > 0 { format!("  {} errors", cell.errors) } else { String::new() }
            )
        }),
    };
    let data = crate::workbench::run(&plan, &show).await?;
    bar.finish_and_clear();
    let written =
        report::write(&data, &plan.out).with_context(|| format!("writing the report to {}", plan.out.display()))?;
    println!("\nWhat this run found:");
    for finding in findings::findings(&data) {
        println!("- {}", finding.text);
    }
    println!(
        "\nTook {:.0} s. Wrote {} files to {}:",
        data.elapsed_s,
        written.len() + data.profile.iter().count() * 2,
        plan.out.display()
    );
    println!("  {}", plan.out.join("report.md").display());
    println!("  {}", plan.out.join("report.html").display());
    println!("  {}", plan.out.join("run.json").display());
    Ok(())
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The earlier run: its directory or its run.json.
    pub before: PathBuf,
    /// The later run.
    pub after: PathBuf,
    /// A figure moved when it changed by more than this many percent.
    #[arg(long, default_value_t = 10.0)]
    pub threshold: f64,
    /// Write the comparison here (default: compare.md in the later run's directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn load_run(path: &Path) -> anyhow::Result<(RunData, PathBuf)> {
    let file = if path.is_dir() { path.join("run.json") } else { path.to_owned() };
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let version: serde_json::Value =
        serde_json::from_str(&text).refused(Failure::BadInput, || format!("{} is not JSON", file.display()))?;
    if version.get("schema_version").and_then(|v| v.as_u64()) != Some(u64::from(RUN_SCHEMA_VERSION)) {
        return Err(anyhow::Error::new(Refused {
            failure: Failure::BadInput,
            message: format!("{} is not a run.json of schema version {RUN_SCHEMA_VERSION}", file.display()),
        }));
    }
    let run = serde_json::from_value(version)
        .refused(Failure::BadInput, || format!("{} is not a flightbench run.json", file.display()))?;
    Ok((run, file))
}

pub fn compare_runs(args: CompareArgs) -> anyhow::Result<()> {
    ensure_usage!(
        args.threshold > 0.0 && args.threshold < 1_000.0,
        "--threshold {} must be a percentage above 0",
        args.threshold
    );
    let (before, before_file) = load_run(&args.before)?;
    let (after, after_file) = load_run(&args.after)?;
    let comparison = compare(&before, &after, args.threshold / 100.0);
    let name = |file: &Path| {
        file.parent()
            .and_then(|p| p.file_name())
            .map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned())
    };
    let markdown = comparison.markdown(&name(&before_file), &name(&after_file));
    print!("{markdown}");
    let out = args.out.unwrap_or_else(|| after_file.with_file_name("compare.md"));
    std::fs::write(&out, markdown).with_context(|| format!("cannot write {}", out.display()))?;
    println!("\nwrote {}", out.display());
    Ok(())
}

//! `flightbench bench-report`: renders criterion's results as markdown with the
//! provenance of the machine and build that produced them.

use crate::bench_report::{collect, render};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::Command;

#[derive(Debug, Args)]
pub struct BenchReportArgs {
    /// Criterion's output directory.
    #[arg(long, default_value = "target/criterion")]
    pub criterion_dir: PathBuf,
    /// Where to write the report.
    #[arg(long, default_value = "results/benchmarks.md")]
    pub out: PathBuf,
    /// The command that ran the benches, recorded in the report.
    #[arg(long, default_value = "scripts/run-benches.sh")]
    pub command: String,
}

/// First line of a command's output, or "unknown" (provenance must not fail the report).
fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::trim).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown".into())
}

pub fn run(args: BenchReportArgs) -> anyhow::Result<()> {
    let groups = collect(&args.criterion_dir)?;
    let dirty = !Command::new("git")
        .args(["diff", "--quiet", "HEAD", "--", "src", "benches", "Cargo.toml"])
        .status()?
        .success();
    let commit = format!(
        "{}{}",
        first_line("git", &["rev-parse", "--short", "HEAD"]),
        if dirty { " (with uncommitted changes)" } else { "" }
    );
    let provenance = vec![
        ("command".to_owned(), format!("`{}`", args.command)),
        ("commit".to_owned(), commit),
        ("toolchain".to_owned(), first_line("rustc", &["-V"])),
        ("build".to_owned(), "bench profile = release: fat LTO, codegen-units 1, line tables".to_owned()),
        (
            "crate features".to_owned(),
            "sqlx: runtime-tokio, sqlite-bundled, postgres; sea-orm: sqlx-sqlite, sqlx-postgres".to_owned(),
        ),
        (
            "CPU".to_owned(),
            format!("{}, {} cores", cpu_model(), std::thread::available_parallelism().map_or(0, |n| n.get())),
        ),
        ("kernel".to_owned(), first_line("uname", &["-sr"])),
        ("report written".to_owned(), time::OffsetDateTime::now_utc().date().to_string()),
    ];
    let md = render(&groups, &args.criterion_dir.join("flightbench"), &provenance);
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, md).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {} ({} groups)", args.out.display(), groups.len());
    Ok(())
}

//! `flightbench bench-report`: renders criterion's results as markdown with the
//! provenance of the machine and build that produced them.

use crate::bench_report::{collect, render};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

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

pub fn run(args: BenchReportArgs) -> anyhow::Result<()> {
    let groups = collect(&args.criterion_dir)?;
    // The build of this binary: `scripts/run-benches.sh` builds it with the benches,
    // from the same tree and compiler.
    let (build, host) = (crate::machine::build(), crate::machine::host());
    let provenance = vec![
        ("command".to_owned(), format!("`{}`", args.command)),
        ("commit".to_owned(), build.commit),
        ("toolchain".to_owned(), build.toolchain),
        ("build".to_owned(), "bench profile = release: fat LTO, codegen-units 1, line tables".to_owned()),
        (
            "crate features".to_owned(),
            "sqlx: runtime-tokio, sqlite-bundled, postgres; sea-orm: sqlx-sqlite, sqlx-postgres".to_owned(),
        ),
        ("CPU".to_owned(), format!("{}, {} cores", host.cpu, host.cores)),
        ("kernel".to_owned(), host.os),
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

//! `flightbench profile`: a CPU flamegraph of the server under a chosen load, and with
//! `--compare KEY=VALUE` the differential flamegraph of two configurations under the
//! same load.
//!
//! By default the server runs in this process ([`LocalServer`]) and the load generator
//! beside it; the generator's `load-N` threads are left out of the profile. With
//! `--attach` the load goes to a running `flightbench serve` and the profile comes
//! from its admin listener.

mod attach;
mod variant;

use super::DatasetArgs;
use super::serve::Switch;
use crate::cli::{Refuse, ensure_usage};
use crate::dataset::Manifest;
use crate::failure::Failure;
use crate::harness::{LoadShape, LocalServer, sample_under_load};
use crate::http::{QUERY_PATH_HEADER, ServerConfig};
use crate::load::conn::Protocol;
use crate::load::report::LoadReport;
use crate::load::workload::{DatasetShape, Mix, Skew};
use crate::load::{LoadConfig, Workload};
use crate::profile;
use crate::store::{QueryPath, Store};
use anyhow::{Context, ensure};
use clap::Args;
use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use variant::{Key, Names, Variant};

#[derive(Debug, Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Seconds of load to profile (after the warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=600))]
    pub seconds: u32,
    /// Unprofiled load before sampling starts (whole seconds).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=60))]
    pub warmup: u32,
    /// Samples per second per thread.
    #[arg(long, default_value_t = 99, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub frequency: u32,
    /// Query path for every request (sent as x-query-path).
    #[arg(long, value_parser = super::choice::<QueryPath>(), default_value_t = QueryPath::Raw)]
    pub path: QueryPath,
    /// HTTP/1.1 or h2c.
    #[arg(long, value_parser = super::choice::<Protocol>(), default_value_t = Protocol::H1)]
    pub protocol: Protocol,
    /// Accept-Encoding for every request (br, zstd, gzip, deflate); none by default.
    #[arg(long)]
    pub accept_encoding: Option<String>,
    /// The server's point-read cache (in-process server only). Off shows the store's
    /// work; on shows what a hot flight costs.
    #[arg(long, value_enum)]
    pub cache: Option<Switch>,
    /// Request mix, as for `flightbench load` (the default is GET /flights/{id} only).
    #[arg(long, default_value = "read=100", value_parser = super::parse_with(Mix::parse))]
    pub mix: Mix,
    /// Flight and airport draws: uniform, zipf or a Zipf exponent.
    #[arg(long, default_value = "uniform", value_parser = super::parse_with(Skew::parse))]
    pub skew: Skew,
    /// TCP connections (default: 64 for h1, 16 for h2).
    #[arg(long, short = 'c', value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: Option<u32>,
    /// HTTP/2 streams per connection (default 16; HTTP/1.1 always 1).
    #[arg(long, short = 'm', value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub streams_per_connection: Option<u32>,
    /// Profile a second configuration that differs in one setting and write the
    /// differential flamegraph: path=adhoc, protocol=h2, encoding=br or cache=off.
    #[arg(long, value_name = "KEY=VALUE")]
    pub compare: Option<String>,
    /// Name for the files (`profiles/<date>-<label>.svg`); derived from the
    /// configuration by default.
    #[arg(long)]
    pub label: Option<String>,
    /// Directory for the flamegraphs and folded stacks.
    #[arg(long, default_value = "profiles")]
    pub out: PathBuf,
    /// Drive a running server at this address instead of starting one, e.g.
    /// http://127.0.0.1:8080 (needs --admin).
    #[arg(long, requires = "admin")]
    pub attach: Option<String>,
    /// The attached server's admin listener, as `serve` prints it.
    #[arg(long, requires = "attach")]
    pub admin: Option<String>,
}

/// A profile taken under load, and the load's figures.
struct Taken {
    lines: Vec<String>,
    report: LoadReport,
}

pub async fn run(args: ProfileArgs) -> anyhow::Result<()> {
    let names = Names::new(args.label.as_deref(), &args.mix)?;
    let attach = match (&args.attach, &args.admin) {
        (Some(target), Some(admin)) => Some((loopback(target, "--attach")?, loopback(admin, "--admin")?)),
        _ => None,
    };
    let base = Variant {
        path: args.path,
        protocol: args.protocol,
        encoding: args.accept_encoding.clone().filter(|e| e != "identity"),
        cache: args.cache.unwrap_or(Switch::On),
    };
    let compare = args.compare.as_deref().map(|spec| base.with(spec)).transpose()?;
    if attach.is_some() {
        ensure_usage!(
            args.cache.is_none() && !matches!(compare, Some((Key::Cache, _))),
            "the cache is the attached server's setting (serve --cache); it cannot be chosen with --attach"
        );
    }
    let manifest =
        Manifest::load(&args.dataset.dir).context("seed a dataset first (flightbench seed) or pass --dir")?;
    let shape = DatasetShape::from_manifest(&manifest);
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let date = time::OffsetDateTime::now_utc().date();

    let store = match attach {
        Some(_) => None,
        None => Some(Arc::new(Store::open(&args.dataset.dir, &args.dataset.store_config()).await?)),
    };
    let mut variants = vec![base.clone()];
    if let Some((_, other)) = &compare {
        variants.push(other.clone());
    }
    let mut taken = Vec::new();
    for (i, variant) in variants.iter().enumerate() {
        let step = if variants.len() > 1 { format!(" ({}/{})", i + 1, variants.len()) } else { String::new() };
        println!("profiling{step}: {}, {} s at {} Hz", variant.describe(), args.seconds, args.frequency);
        let result = match (attach, &store) {
            (Some((target, admin)), _) => profile_attached(&args, variant, &shape, target, admin).await,
            (None, Some(store)) => profile_local(&args, variant, &shape, store.clone()).await,
            (None, None) => unreachable!("a store is opened whenever no server is attached"),
        };
        let result = match result {
            Ok(result) => result,
            Err(error) => {
                if let Some(store) = &store {
                    store.close().await;
                }
                return Err(error);
            }
        };
        let name = format!("{date}-{}", names.single(variant, compare.as_ref().map(|c| c.0)));
        report_and_write(&args, variant, &result, &args.out, &name)?;
        taken.push(result);
    }
    if let Some(store) = &store {
        store.close().await;
    }
    if let (Some((key, other)), [a, b]) = (&compare, taken.as_slice()) {
        let name = format!("{date}-{}", names.differential(&base, other, *key));
        write_differential(&args, (&base, a), (other, b), &args.out, &name)?;
    }
    Ok(())
}

/// Parses `text` as an http:// URL on a loopback address (profiles drive load).
fn loopback(text: &str, flag: &str) -> anyhow::Result<SocketAddr> {
    let uri: http::Uri = text.parse().refused(Failure::Usage, || format!("{flag} {text:?} is not a URL"))?;
    ensure_usage!(uri.scheme_str() == Some("http"), "{flag} {text}: give an http:// address");
    let authority = uri.authority().refused(Failure::Usage, || format!("{flag} {text} has no host:port"))?;
    let addr: SocketAddr = authority.as_str().parse().refused(Failure::Usage, || {
        format!("{flag} {text}: give an IP address and port, e.g. http://127.0.0.1:8080")
    })?;
    ensure_usage!(
        addr.ip().is_loopback(),
        "{flag} {text}: profiles drive load, so only loopback addresses are allowed"
    );
    Ok(addr)
}

fn load_config(args: &ProfileArgs, variant: &Variant, shape: &DatasetShape, addr: SocketAddr) -> LoadConfig {
    let (connections, streams) = match variant.protocol {
        Protocol::H1 => (args.connections.unwrap_or(64), 1),
        Protocol::H2 => (args.connections.unwrap_or(16), args.streams_per_connection.unwrap_or(16)),
    };
    let mut headers =
        vec![(HeaderName::from_static(QUERY_PATH_HEADER), HeaderValue::from_static(variant.path.as_str()))];
    if let Some(encoding) = &variant.encoding
        && let Ok(value) = HeaderValue::from_str(encoding)
    {
        headers.push((http::header::ACCEPT_ENCODING, value));
    }
    LoadShape {
        protocol: variant.protocol,
        connections: connections as usize,
        streams_per_connection: streams as usize,
        workload: Workload::Mix { mix: args.mix.clone(), shape: shape.clone(), skew: args.skew },
        headers,
        warmup: Duration::from_secs(u64::from(args.warmup)),
        measure: Duration::from_secs(u64::from(args.seconds)),
        rate: None,
        tls: None,
    }
    .config(addr, crate::machine::cores(), &[])
}

/// A progress line on a terminal while the load runs (hidden otherwise).
fn progress_bar() -> indicatif::ProgressBar {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    }
}

/// The phase (warm-up or sampling) and the responses so far.
fn show(bar: &indicatif::ProgressBar, done: u64, since: f64, seconds: u32) {
    let phase = if since < 0.0 {
        format!("warm-up, {:.1} s left", -since)
    } else {
        format!("sampling, {since:.1} of {seconds} s")
    };
    bar.set_message(format!("{phase}: {done} responses"));
    bar.tick();
}

async fn profile_local(
    args: &ProfileArgs,
    variant: &Variant,
    shape: &DatasetShape,
    store: Arc<Store>,
) -> anyhow::Result<Taken> {
    let config = ServerConfig {
        default_path: variant.path,
        cache_capacity: match variant.cache {
            Switch::On => ServerConfig::default().cache_capacity,
            Switch::Off => 0,
        },
        ..ServerConfig::default()
    };
    let server = LocalServer::start(store, config, crate::machine::cores(), &[]).context("cannot start the server")?;
    let load = load_config(args, variant, shape, server.addr);
    let (frequency, seconds) = (args.frequency as i32, args.seconds);
    let bar = progress_bar();
    let taken = tokio::task::spawn_blocking(move || {
        let taken = sample_under_load(&load, frequency, |done, since| show(&bar, done, since, seconds));
        bar.finish_and_clear();
        taken.map(|(lines, report)| Taken { lines, report })
    })
    .await?
    .map_err(anyhow::Error::from);
    server.stop().await.context("stopping the server")?;
    taken
}

async fn profile_attached(
    args: &ProfileArgs,
    variant: &Variant,
    shape: &DatasetShape,
    target: SocketAddr,
    admin_addr: SocketAddr,
) -> anyhow::Result<Taken> {
    let mut load = load_config(args, variant, shape, target);
    let (seconds, frequency, warmup) = (args.seconds, args.frequency, args.warmup);
    // The server samples after its own request arrives, and its first profile can
    // start late (pprof's set-up): the load lasts until the profile is back, with a
    // generous bound in case the admin listener never answers.
    load.duration = Some(Duration::from_secs(u64::from(seconds) + 120));
    let bar = progress_bar();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let sampling = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(u64::from(warmup))).await;
        let folded = attach::fetch_folded(admin_addr, seconds, frequency).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        folded
    });
    let report = tokio::task::spawn_blocking(move || {
        let report = crate::load::run_until(&load, &stop, |done, since| show(&bar, done, since, seconds));
        bar.finish_and_clear();
        report
    })
    .await?;
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            sampling.abort();
            return Err(error.into());
        }
    };
    let lines = sampling.await??;
    Ok(Taken { lines: profile::by_thread_role(&lines, &["load-"]), report })
}

/// Prints what the load achieved and the hottest frames, and writes `name.svg` and
/// `name.folded`.
fn report_and_write(
    args: &ProfileArgs,
    variant: &Variant,
    taken: &Taken,
    dir: &Path,
    name: &str,
) -> anyhow::Result<()> {
    let report = &taken.report;
    let errors: u64 = report.errors.values().sum::<u64>() + report.unexpected_statuses;
    let samples = profile::sample_total(&taken.lines);
    ensure!(
        samples > 0,
        "the profile has no samples: the server used no CPU while it was sampled ({:.0} req/s)",
        report.achieved_rate
    );
    println!(
        "  {:.0} req/s, p99 {:.2} ms, {} errors; {samples} samples",
        report.achieved_rate, report.latency.p99_ms, errors
    );
    if errors > 0 {
        eprintln!("warning: {errors} requests failed during the profile; it shows error handling as well as the path");
    }
    let title = format!("flightbench profile: {}", args.mix.describe());
    let subtitle = format!(
        "{}; {:.0} req/s, {} s at {} Hz, {samples} samples",
        variant.describe(),
        report.achieved_rate,
        args.seconds,
        args.frequency
    );
    let (folded_path, svg_path) = profile::write_lines(&taken.lines, dir, name, &title, Some(&subtitle))
        .with_context(|| format!("cannot write {name}.folded and {name}.svg in {}", dir.display()))?;
    println!("  hottest frames (self samples):");
    for (frame, n) in profile::by_leaf(&taken.lines).iter().take(5) {
        println!("    {:5.1}%  {}", 100.0 * *n as f64 / samples.max(1) as f64, profile::short_frame(frame, 100));
    }
    println!("  wrote {} and {}", svg_path.display(), folded_path.display());
    Ok(())
}

fn write_differential(
    args: &ProfileArgs,
    (a, a_taken): (&Variant, &Taken),
    (b, b_taken): (&Variant, &Taken),
    dir: &Path,
    name: &str,
) -> anyhow::Result<()> {
    let diff = profile::differential(&a_taken.lines, &b_taken.lines)?;
    let ratio = b_taken.report.achieved_rate / a_taken.report.achieved_rate.max(f64::MIN_POSITIVE);
    let title = format!("flightbench profile: {} → {}", a.describe(), b.describe());
    let subtitle = format!(
        "{}: shape of the second; red grew, blue shrank (first scaled to the second's samples); throughput {:.2}×",
        args.mix.describe(),
        ratio
    );
    let svg_path = dir.join(format!("{name}.svg"));
    let mut svg = Vec::new();
    profile::render(&diff, &title, Some(&subtitle), &mut svg)?;
    std::fs::write(&svg_path, svg).with_context(|| format!("cannot write {}", svg_path.display()))?;
    let samples = profile::sample_total(&b_taken.lines).max(1) as f64;
    let changes = profile::by_leaf(&diff);
    println!("differential ({} → {}), throughput {ratio:.2}×:", a.describe(), b.describe());
    println!("  grew most (self samples, share of the second profile):");
    for (frame, n) in changes.iter().filter(|c| c.1 > 0).take(5) {
        println!("    {:+5.1}%  {}", 100.0 * *n as f64 / samples, profile::short_frame(frame, 100));
    }
    println!("  shrank most:");
    for (frame, n) in changes.iter().rev().filter(|c| c.1 < 0).take(5) {
        println!("    {:+5.1}%  {}", 100.0 * *n as f64 / samples, profile::short_frame(frame, 100));
    }
    println!("  wrote {}", svg_path.display());
    Ok(())
}

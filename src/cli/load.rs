//! `flightbench load`: flags → a validated [`LoadConfig`] → the run → summary, JSON and
//! chart.

use super::{Refuse, ensure_usage, usage};
use crate::dataset::Manifest;
use crate::failure::Failure;
use crate::load::conn::{Endpoint, Protocol, tls_config};
use crate::load::workload::{DatasetShape, Mix, Skew};
use crate::load::{LoadConfig, LoopModel, Workload, run};
use crate::store::QueryPath;
use anyhow::Context;
use clap::{Args, ValueEnum};
use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoopArg {
    /// Send the next request as soon as the previous one is answered.
    Closed,
    /// Send on a fixed schedule (`--rate`), measuring from each scheduled time.
    Open,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The server: `http://127.0.0.1:8080` (the API mix) or, with --url, any URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", conflicts_with = "url")]
    pub target: String,
    /// One fixed URL to GET instead of the API mix (any HTTP server).
    #[arg(long)]
    pub url: Option<String>,
    /// HTTP/1.1 or HTTP/2 (h2c with prior knowledge on http://, ALPN h2 on https://).
    #[arg(long, value_parser = super::choice::<Protocol>(), default_value_t = Protocol::H1)]
    pub protocol: Protocol,
    /// TCP connections.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,
    /// Concurrent HTTP/2 streams per connection (HTTP/1.1: 1).
    #[arg(long, short = 'm', default_value_t = 1)]
    pub streams_per_connection: usize,
    /// Load threads, each with its own event loop (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Closed loop (default without --rate) or open loop (default with --rate).
    #[arg(long = "loop", value_enum)]
    pub loop_model: Option<LoopArg>,
    /// Open loop: requests per second across all connections.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: send on this grid (e.g. 1ms) instead of exactly on schedule. Exact
    /// costs the load threads one sleep per request: about 3× the CPU per request at
    /// 20,000 req/s; a 1 ms grid sends up to 1 ms late, in bursts (results/load-open-loop.md).
    #[arg(long, default_value = "0", value_parser = parse_zero_or_duration)]
    pub pacing_tick: Duration,
    /// Measured time, e.g. 10s (after the warm-up).
    #[arg(long, short = 'd', value_parser = super::parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many measured requests.
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// Warm-up before measuring; its requests are sent but not counted.
    #[arg(long, default_value = "1s", value_parser = parse_zero_or_duration)]
    pub warmup: Duration,
    /// A request without a complete answer after this is a timeout error.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub timeout: Duration,
    /// Request mix for the API, as kind=weight: read, events, departures, board, delays, write.
    #[arg(long, default_value = "read=80,departures=15,write=5", value_parser = super::parse_with(Mix::parse))]
    pub mix: Mix,
    /// Flight and airport draws: uniform, zipf (exponent 1) or a Zipf exponent such as 1.2.
    #[arg(long, default_value = "uniform", value_parser = super::parse_with(Skew::parse))]
    pub skew: Skew,
    /// The seeded dataset the mix draws ids and airports from.
    #[arg(long, env = "FLIGHTBENCH_DIR", default_value = "shards")]
    pub dir: PathBuf,
    /// Accept-Encoding sent with every request (e.g. br, gzip, identity).
    #[arg(long)]
    pub accept_encoding: Option<String>,
    /// x-query-path sent with every request (prepared, adhoc, orm, raw).
    #[arg(long, value_parser = super::choice::<QueryPath>())]
    pub query_path: Option<QueryPath>,
    /// Extra request header, `name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Send `Authorization: Bearer TOKEN` with every request (see `flightbench token`).
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub bearer_token: Option<String>,
    /// Like --bearer-token, with the token read from FILE (kept out of the process list).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM certificate to trust for https:// targets (e.g. from `flightbench cert`).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Write every figure as JSON (schema: src/load/report.schema.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an SVG chart: latency by percentile and throughput over time.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Random seed for the request mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn parse_zero_or_duration(text: &str) -> Result<Duration, String> {
    if text == "0" || text == "0s" { Ok(Duration::ZERO) } else { super::parse_duration(text) }
}

/// Resolves `host:port` and checks it is loopback unless allowed otherwise.
async fn resolve(uri: &http::Uri, allow_remote: bool) -> anyhow::Result<(SocketAddr, String, bool)> {
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(usage!("{uri} must start with http:// or https://")),
    };
    let host = uri.host().refused(Failure::Usage, || format!("{uri} has no host"))?.trim_matches(['[', ']']).to_owned();
    // `http::Uri` reads a port it cannot hold as no port at all: 99999 would become 80.
    let authority = uri.authority().map_or("", |a| a.as_str());
    let written = authority.rsplit_once(']').map_or(authority, |(_, after)| after).rsplit_once(':').map(|(_, p)| p);
    let port = match (written, uri.port_u16()) {
        (None, _) => {
            if tls {
                443
            } else {
                80
            }
        }
        (Some(_), Some(port)) if port > 0 => port,
        (Some(port), _) => return Err(usage!("{uri}: port {port:?} is not a port from 1 to 65535")),
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .refused(Failure::Unreachable, || format!("cannot resolve {host}"))?
        .collect();
    let addr = *addrs.first().refused(Failure::Unreachable, || format!("{host} resolves to no address"))?;
    ensure_usage!(
        allow_remote || addrs.iter().all(|a| a.ip().is_loopback()),
        "{host} ({}) is not a loopback address; load tests target 127.0.0.1 unless you pass --allow-remote",
        addr.ip()
    );
    Ok((addr, host, tls))
}

impl LoadArgs {
    async fn config(&self) -> anyhow::Result<LoadConfig> {
        let loop_model = match (self.loop_model, self.rate) {
            (Some(LoopArg::Closed), Some(_)) => {
                return Err(usage!("--rate sets an open-loop schedule; it cannot be used with --loop closed"));
            }
            (Some(LoopArg::Open), None) => return Err(usage!("--loop open needs --rate (requests per second)")),
            (_, Some(rate)) => LoopModel::Open { rate, tick: self.pacing_tick },
            (_, None) => LoopModel::Closed,
        };
        ensure_usage!(
            self.pacing_tick.is_zero() || self.rate.is_some(),
            "--pacing-tick sets the open loop's grid; it needs --rate"
        );
        let text = self.url.as_deref().unwrap_or(&self.target);
        let uri: http::Uri = text.parse().refused(Failure::Usage, || format!("{text:?} is not a URL"))?;
        let (addr, host, tls) = resolve(&uri, self.allow_remote).await?;
        let tls = match (tls, &self.ca_cert) {
            (false, Some(_)) => return Err(usage!("--ca-cert is for https:// targets")),
            (false, None) => None,
            (true, None) => {
                return Err(usage!(
                    "https:// targets need --ca-cert (for example the certificate `flightbench cert` wrote)"
                ));
            }
            (true, Some(path)) => {
                let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
                Some(tls_config(&pem, self.protocol).with_context(|| path.display().to_string())?)
            }
        };
        let workload = match &self.url {
            Some(_) => Workload::Url { path: uri.path_and_query().map_or("/".into(), |p| p.to_string()) },
            None => {
                if uri.path() != "/" {
                    return Err(usage!(
                        "--target is a server address such as http://127.0.0.1:8080; use --url for a fixed URL"
                    ));
                }
                let manifest = Manifest::load(&self.dir)
                    .context("the API mix draws ids from the seeded dataset (or use --url)")?;
                Workload::Mix { mix: self.mix.clone(), shape: DatasetShape::from_manifest(&manifest), skew: self.skew }
            }
        };
        let mut headers = Vec::new();
        if let Some(encoding) = &self.accept_encoding {
            headers.push((
                http::header::ACCEPT_ENCODING,
                HeaderValue::from_str(encoding).refused(Failure::Usage, || "--accept-encoding".into())?,
            ));
        }
        if let Some(path) = self.query_path {
            headers.push((HeaderName::from_static("x-query-path"), HeaderValue::from_static(path.as_str())));
        }
        let token = match (&self.bearer_token, &self.token_file) {
            (Some(token), _) => Some(token.trim().to_owned()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .refused(Failure::BadInput, || format!("--token-file {}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if let Some(token) = token {
            super::ensure_usage!(!token.is_empty(), "the bearer token is empty");
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .refused(Failure::Usage, || "the bearer token is not a valid header value".into())?;
            headers.push((http::header::AUTHORIZATION, value));
        }
        for header in &self.headers {
            let (name, value) =
                header.split_once(':').refused(Failure::Usage, || format!("--header {header:?} is not name: value"))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .refused(Failure::Usage, || format!("--header {header:?}"))?;
            let value =
                HeaderValue::from_str(value.trim()).refused(Failure::Usage, || format!("--header {header:?}"))?;
            headers.push((name, value));
        }
        let threads = self.threads.unwrap_or_else(crate::machine::cores);
        let config = LoadConfig {
            endpoint: Endpoint { addr, host, protocol: self.protocol, tls },
            target: text.to_owned(),
            workload,
            loop_model,
            connections: self.connections,
            streams_per_connection: self.streams_per_connection,
            threads,
            warmup: self.warmup,
            duration: self.duration,
            requests: self.requests,
            timeout: self.timeout,
            headers,
            seed: self.seed,
            server_in_process: false,
            cores: Vec::new(),
        };
        config.validate()?;
        Ok(config)
    }
}

pub async fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    let config = args.config().await?;
    let bar = if args.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new_spinner() };
    let total = config.duration.map(|d| config.warmup + d);
    let report = tokio::task::spawn_blocking(move || {
        run(&config, |done, since| {
            let phase = if since < 0.0 { format!("warm-up, {:.1} s left", -since) } else { format!("{since:.1} s") };
            let rate = if since > 0.5 { format!(", {:.0} req/s", done as f64 / since) } else { String::new() };
            let of = total.map_or(String::new(), |t| format!(" of {:.0} s", t.as_secs_f64()));
            bar.set_message(format!("{phase}{of}: {done} responses{rate}"));
            bar.tick();
        })
        .inspect(|_| bar.finish_and_clear())
    })
    .await??;
    print!("{}", report.summary());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.chart {
        std::fs::write(path, report.chart()).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if let Some(warning) = report.rate_warning() {
        // Loud: the summary has it too, but a script may only watch stderr.
        eprintln!("{warning}");
    }
    Ok(())
}

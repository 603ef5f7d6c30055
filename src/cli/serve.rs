//! `flightbench serve`.

use super::DatasetArgs;
pub use super::runtime::RuntimeArgs;
use crate::http::follow::Projecting;
use crate::http::{AppState, CompressionLevels, ServerConfig, ServiceRole, Stopped, admin, serve_connections, tls};
use crate::projection::live::LiveFeed;
use crate::projection::{ProjectorConfig, ReadModel};
use crate::store::{ProbeConfig, QueryPath, Store};
use crate::telemetry::{self, Traces, notice};
use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Address to listen on; port 0 picks a free port (the real address is printed).
    #[arg(long, env = "FLIGHTBENCH_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Default query path; a request may choose another with the x-query-path header.
    #[arg(long, value_parser = super::choice::<QueryPath>(), env = "FLIGHTBENCH_PATH", default_value_t = QueryPath::Raw)]
    pub path: QueryPath,
    /// Compression level per codec, e.g. `--compression-level br=5` (repeatable).
    #[arg(long, value_name = "CODEC=LEVEL")]
    pub compression_level: Vec<String>,
    /// Responses smaller than this are not compressed.
    #[arg(long, default_value_t = 1_024)]
    pub compression_min_bytes: usize,
    /// Largest request body (413 beyond).
    #[arg(long, default_value_t = 16 * 1_024)]
    pub max_body_bytes: usize,
    /// Largest request head (room for a refused 16 KB bearer token to get its 401).
    #[arg(long, default_value_t = 32 * 1_024)]
    pub max_header_bytes: usize,
    /// Time allowed to send a complete request head, e.g. 5s or 500ms.
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    pub header_timeout: Duration,
    /// HTTP/2 idle connections are pinged after this and closed if silent as long again.
    #[arg(long, default_value = "60s", value_parser = super::parse_duration)]
    pub idle_timeout: Duration,
    /// HTTP/2 concurrent streams per connection.
    #[arg(long, default_value_t = 128)]
    pub max_concurrent_streams: u32,
    /// Requests in flight before the server sheds load with 503.
    #[arg(long, default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// PEM certificate chain: serve TLS (ALPN h2 and http/1.1) instead of cleartext.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// The oldest TLS version accepted: 1.2 or 1.3.
    #[arg(long, value_parser = super::choice::<tls::TlsMin>(), default_value = "1.2", requires = "tls_cert")]
    pub tls_min: tls::TlsMin,
    /// How long shutdown waits for in-flight requests.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub shutdown_grace: Duration,
    /// Cache point-read bodies of hot flights. Writes through this server invalidate
    /// them; turn it off when anything else writes to the shards.
    #[arg(long, value_enum, env = "FLIGHTBENCH_CACHE", default_value_t = Switch::On)]
    pub cache: Switch,
    /// Flights the point-read cache holds (a few hundred bytes each).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub cache_capacity: u32,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub services: super::services::ServiceArgs,
    #[command(flatten)]
    pub auth: super::auth::AuthArgs,
    #[command(flatten)]
    pub seal: super::gdpr::SealArgs,
    /// Admin listener for on-demand CPU profiles (GET /debug/pprof/profile), on its
    /// own address, never the API port; loopback with a free port by default.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub admin_addr: SocketAddr,
    /// Turn the admin listener off.
    #[arg(long)]
    pub no_admin: bool,
    /// Longest profile the admin endpoint takes, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub max_profile_seconds: u32,
    /// Default sampling frequency of admin profiles, in Hz.
    #[arg(long, default_value_t = 99, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub profile_frequency: u32,
    /// Record Prometheus metrics and serve them at GET /metrics (off: nothing is
    /// recorded and /metrics is 404).
    #[arg(long, value_enum, env = "FLIGHTBENCH_METRICS", default_value_t = Switch::On)]
    pub metrics: Switch,
    /// How long /readyz gives every shard to answer its probes.
    #[arg(long, default_value = "2s", value_parser = super::parse_duration)]
    pub readiness_timeout: Duration,
    /// Events a shard's projection may lag behind its event log and still be ready.
    /// The projection is written in the event's own transaction, so the lag is 0
    /// unless something wrote events around the server.
    #[arg(long, default_value_t = 0)]
    pub max_projection_lag: u64,
    /// Who keeps the async read models (departures board, airport hours, carrier
    /// on-time): this process (`in-process`), a separate `flightbench project`
    /// (`external`: /readyz still checks their lag), or nobody (`off`: no lag probe).
    #[arg(long, value_enum, env = "FLIGHTBENCH_PROJECTOR", default_value_t = ProjectorMode::InProcess)]
    pub projector: ProjectorMode,
    /// Events an async read model may lag behind any shard and still be ready.
    #[arg(long, default_value_t = 1_000)]
    pub max_async_lag: u64,
    /// Clients that may follow GET /live (the dashboard's feed) at once; more get 503.
    /// The feed needs --projector in-process.
    #[arg(long, default_value_t = 10_000)]
    pub max_live_subscribers: u64,
    /// async: a delay report is answered at its commit and the read models follow;
    /// inline: it is answered once the runner has applied it to every read model; or
    /// the models to keep inline, comma-separated (departures_board, airport_hours,
    /// carrier_on_time). Inline needs --projector in-process; `flightbench run --only
    /// projections` measures what each costs the writers.
    #[arg(long, default_value = "async", value_parser = parse_read_models)]
    pub read_models: ReadModels,
    /// Close a connection whose client has read nothing the server is sending for
    /// this long (a /live subscriber that stopped reading, say).
    #[arg(long, default_value = "30s", value_parser = super::parse_interval)]
    pub write_stall_timeout: Duration,
    /// How often the probes re-read the projection lag, which scans both tables
    /// (about 20 ms per 100,000 flights on SQLite); in between /readyz and /metrics
    /// report the last reading and its age. 0s reads it on every call.
    #[arg(long, default_value = "10s", value_parser = super::parse_interval)]
    pub projection_check_every: Duration,
    /// Export traces (request → store → shard query spans) over OTLP/HTTP protobuf to
    /// this collector, e.g. http://127.0.0.1:4318 (/v1/traces is added). Off by default.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Fraction of requests traced, 0 to 1, decided per request before any span is
    /// built (a request's spans are kept or dropped together).
    #[arg(long, default_value_t = 0.01, value_parser = super::parse_ratio)]
    pub trace_sample_ratio: f64,
    /// Build and sample spans but export none: measures what tracing costs by itself.
    #[arg(long, conflicts_with = "otlp_endpoint")]
    pub trace_without_export: bool,
}

/// Where the async read models' runner runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProjectorMode {
    InProcess,
    External,
    Off,
}

/// The read models a write is answered after (`--read-models`); empty: all async.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadModels(pub Vec<ReadModel>);

fn parse_read_models(text: &str) -> Result<ReadModels, String> {
    match text {
        "async" => Ok(ReadModels(Vec::new())),
        "inline" => Ok(ReadModels(ReadModel::ALL.to_vec())),
        list => {
            let mut models = Vec::new();
            for name in list.split(',').map(str::trim) {
                let model: ReadModel = name.parse().map_err(|e| {
                    format!(
                        "{e}; expected async, inline or read models (departures_board, airport_hours, carrier_on_time)"
                    )
                })?;
                if !models.contains(&model) {
                    models.push(model);
                }
            }
            Ok(ReadModels(models))
        }
    }
}

/// `on` / `off` for feature switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut levels = CompressionLevels::default();
        for spec in &self.compression_level {
            levels.set(spec).map_err(|e| super::usage!("--compression-level {e}"))?;
        }
        super::ensure_usage!(self.max_body_bytes > 0, "--max-body-bytes must be at least 1");
        super::ensure_usage!(
            self.read_models.0.is_empty() || self.projector() == ProjectorMode::InProcess,
            "--read-models inline needs --projector in-process: the writes wait for this process's runner"
        );
        super::ensure_usage!(self.max_concurrent_streams > 0, "--max-concurrent-streams must be at least 1");
        self.services.check()?;
        Ok(ServerConfig {
            role: self.services.role,
            default_path: self.path,
            compression_min_bytes: self.compression_min_bytes,
            levels,
            max_body_bytes: self.max_body_bytes,
            max_header_bytes: self.max_header_bytes,
            header_read_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_concurrent_streams: self.max_concurrent_streams,
            max_in_flight: self.max_in_flight as usize,
            shutdown_grace: self.shutdown_grace,
            cache_capacity: match self.cache {
                Switch::On => self.cache_capacity as usize,
                Switch::Off => 0,
            },
            probes: ProbeConfig {
                deadline: self.readiness_timeout,
                max_projection_lag: self.max_projection_lag,
                projection_every: self.projection_check_every,
                async_projections: match self.projector() {
                    ProjectorMode::Off => &[],
                    ProjectorMode::InProcess | ProjectorMode::External => crate::projection::ASYNC_NAMES,
                },
                max_async_lag: self.max_async_lag,
            },
            metrics: self.metrics == Switch::On,
            max_live_subscribers: self.max_live_subscribers,
            write_stall_timeout: self.write_stall_timeout,
            inline_read_models: self.read_models.0.clone(),
            trace_sample_ratio: (self.otlp_endpoint.is_some() || self.trace_without_export)
                .then_some(self.trace_sample_ratio),
            ..ServerConfig::default()
        })
    }

    /// Who keeps the async read models, as asked and as the role allows.
    fn projector(&self) -> ProjectorMode {
        self.services.projector(self.projector)
    }

    /// Where the server's spans go.
    pub fn traces(&self) -> anyhow::Result<Traces> {
        Ok(match (&self.otlp_endpoint, self.trace_without_export) {
            (Some(endpoint), _) => Traces::Otlp { endpoint: telemetry::traces_url(endpoint)? },
            (None, true) => Traces::Unexported,
            (None, false) => Traces::Off,
        })
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = args.config()?;
    // Before the store opens: a wrong issuer or key file fails the start at once.
    config.auth = args.auth.verifier().await?;
    // Flag combinations first: a bad one should not wait for the store to open.
    args.runtime.threads()?;
    let acceptor = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            config.hsts = Some(http::HeaderValue::from_static(tls::HSTS));
            Some(tls::acceptor(cert, key, args.tls_min)?)
        }
        _ => None,
    };
    // The gateway opens no store: it only forwards.
    if args.services.role == ServiceRole::Gateway {
        return super::services::run_gateway(&args, &config, acceptor).await;
    }
    // Before the store opens too: a bad KEK file, or a key store another process
    // holds, fails the start.
    let sealer = args.seal.sealer(&args.dataset.dir)?;
    // How the store is opened, now and on each layout a reshard moves the dataset to.
    let open_store: crate::http::follow::OpenStore = {
        let (dir, config) = (args.dataset.dir.clone(), args.dataset.store_config());
        let audit = (!args.seal.no_audit).then_some(args.seal.audit_chain);
        Box::new(move || {
            let (dir, config, sealer) = (dir.clone(), config.clone(), sealer.clone());
            Box::pin(async move {
                let store = Store::open(&dir, &config).await?;
                if let Some(sealer) = sealer {
                    store.seal_with(sealer);
                    if let Some(chain) = audit {
                        store.audit_with(chain).await?;
                    }
                }
                Ok(store)
            })
        })
    };
    let store = open_store().await?;
    let protocols = if acceptor.is_some() {
        "https://{local} (TLS, ALPN h2 and http/1.1)"
    } else {
        "http://{local} (HTTP/1.1 and h2c)"
    };
    let cache = match config.cache_capacity {
        0 => "off".to_owned(),
        n => format!("on ({n} flights)"),
    };
    let default_path = config.default_path;
    let metrics_on = config.metrics;
    let store = Arc::new(store);
    let feed = (args.projector() == ProjectorMode::InProcess).then(|| LiveFeed::new(config.max_live_subscribers));
    let runner_config = ProjectorConfig::for_writes(&config.inline_read_models);
    let auth = config.auth.clone();
    let state = AppState::new(store.clone(), config);
    // The runner shares the store (so appends wake it) on this (main) runtime.
    let projecting = feed.as_ref().map(|feed| Projecting::start(&state, store, runner_config, Some(feed.clone())));
    let projecting = Arc::new(tokio::sync::Mutex::new(projecting));
    if let Some(feed) = feed {
        state.serve_live(feed);
    }
    let (follow_stop, follow_stopped) = tokio::sync::watch::channel(false);
    let following = tokio::spawn(crate::http::follow::follow_layout(
        state.clone(),
        args.dataset.dir.clone(),
        args.dataset.pg_password.clone(),
        open_store,
        projecting.clone(),
        follow_stopped,
    ));
    let services = args.services.start(&state, &args.dataset.dir).await?;
    let cpu_at_start = crate::machine::CpuTime::of_process();
    // The admin listener runs on this (main) runtime, beside the API's threads.
    let (admin_stop, admin_stopped) = tokio::sync::watch::channel(false);
    let mut admin_line = String::new();
    let admin = if args.no_admin {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(args.admin_addr)
            .await
            .with_context(|| format!("cannot listen on {} (--admin-addr)", args.admin_addr))?;
        admin_line = format!("admin (CPU profiles) on http://{}{}", listener.local_addr()?, admin::PROFILE_PATH);
        let admin_state = admin::AdminState::with_auth(
            args.max_profile_seconds,
            args.profile_frequency,
            Arc::new(crate::profile::Sampler),
            auth.clone(),
        );
        Some(tokio::spawn(admin::serve_admin(listener, admin_state, Stopped::new(admin_stopped).wait())))
    };
    let live_on = state.live.get().is_some();
    let announce = |local: SocketAddr, shape: String| {
        let listening = protocols.replace("{local}", &local.to_string());
        // The first line is what scripts and tests read the address from.
        // Not println!: a reader that stopped reading (a script that took the first
        // line) must not make the server panic on a closed pipe.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {listening}, default query path {default_path}, cache {cache}, {shape}");
        if !admin_line.is_empty() {
            let _ = writeln!(out, "{admin_line}");
        }
        let scheme = if listening.starts_with("https") { "https" } else { "http" };
        let metrics = if metrics_on { format!("metrics on {scheme}://{local}/metrics, ") } else { String::new() };
        let _ = writeln!(out, "{metrics}probes on {scheme}://{local}/healthz and /readyz");
        if live_on {
            let _ = writeln!(out, "live dashboard on {scheme}://{local}/dashboard");
        }
        for line in &services.lines {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    };
    let shared = state.clone();
    let served = args
        .runtime
        .serve(args.addr, announce, move |listener, stopped| {
            let (state, acceptor) = (shared.clone(), acceptor.clone());
            async move { serve_connections(listener, &state, acceptor, stopped.wait()).await }
        })
        .await;
    let _ = admin_stop.send(true);
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    services.stop().await.iter().for_each(|line| notice(line));
    let _ = follow_stop.send(true);
    let _ = following.await;
    if let Some(runner) = projecting.lock().await.as_mut() {
        runner.stop().await;
    }
    state.store().close().await;
    if let (Ok(()), Some(metrics), Some(start), Some(end)) =
        (&served, &state.metrics, cpu_at_start, crate::machine::CpuTime::of_process())
    {
        let requests = metrics.requests_handled();
        let cpu = end - start;
        let per_request = cpu.micros_per(requests).map_or(String::new(), |us| format!(", {us:.1} µs per request"));
        notice(&format!(
            "server CPU: {:.2} s user, {:.2} s system for {requests} requests{per_request}",
            cpu.user_s, cpu.system_s
        ));
    }
    if let (Ok(()), Some(cache)) = (&served, &state.cache) {
        let stats = cache.stats();
        let lookups = (stats.hits + stats.misses).max(1);
        notice(&format!(
            "flight cache: {} hits, {} misses ({:.1}% hits), {} flights held",
            stats.hits,
            stats.misses,
            100.0 * stats.hits as f64 / lookups as f64,
            stats.entries
        ));
    }
    served
}

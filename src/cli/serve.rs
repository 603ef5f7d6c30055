//! `flightbench serve`.

use super::DatasetArgs;
use crate::http::{AppState, CompressionLevels, ServerConfig, serve_fixed, serve_with, tls};
use crate::store::{QueryPath, Store};
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
    #[arg(long, value_enum, env = "FLIGHTBENCH_PATH", default_value_t = QueryPath::Raw)]
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
    /// Largest request head.
    #[arg(long, default_value_t = 16 * 1_024)]
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
    /// How long shutdown waits for in-flight requests.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub shutdown_grace: Duration,
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut levels = CompressionLevels::default();
        for spec in &self.compression_level {
            levels.set(spec).map_err(|e| anyhow::anyhow!("--compression-level {e}"))?;
        }
        anyhow::ensure!(self.max_body_bytes > 0, "--max-body-bytes must be at least 1");
        anyhow::ensure!(self.max_concurrent_streams > 0, "--max-concurrent-streams must be at least 1");
        Ok(ServerConfig {
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
            ..ServerConfig::default()
        })
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; SIGINT still stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    eprintln!("shutting down: finishing requests in flight");
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let acceptor = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let store = Store::open(&args.dataset.dir, &args.dataset.store_config()).await?;
    let listener =
        tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("cannot listen on {}", args.addr))?;
    let local = listener.local_addr()?;
    let protocols = if acceptor.is_some() {
        "https://{local} (TLS, ALPN h2 and http/1.1)"
    } else {
        "http://{local} (HTTP/1.1 and h2c)"
    };
    println!(
        "listening on {}, default query path {}",
        protocols.replace("{local}", &local.to_string()),
        config.default_path
    );
    let state = AppState::new(Arc::new(store), config);
    serve_with(listener, state, acceptor, shutdown_signal()).await?;
    Ok(())
}

/// `flightbench ceiling`: the fixed-body server load figures are measured against.
#[derive(Debug, Args)]
pub struct CeilingArgs {
    /// Address to listen on; port 0 picks a free port (the real address is printed).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub addr: SocketAddr,
    /// Size of the fixed JSON body; the default is about one `GET /flights/{id}` reply.
    #[arg(long, default_value_t = 270, value_parser = clap::value_parser!(u32).range(2..=16_777_216))]
    pub body_bytes: u32,
}

pub async fn ceiling(args: CeilingArgs) -> anyhow::Result<()> {
    // A JSON string of the requested size: `"xxx…"`.
    let body = format!("\"{}\"", "x".repeat(args.body_bytes as usize - 2));
    let listener =
        tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("cannot listen on {}", args.addr))?;
    println!("listening on http://{} (HTTP/1.1 and h2c), fixed {}-byte body", listener.local_addr()?, body.len());
    serve_fixed(listener, &ServerConfig::default(), body.into(), shutdown_signal()).await;
    Ok(())
}

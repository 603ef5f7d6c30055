//! Logs and traces: the process's one tracing subscriber.
//!
//! - **Logs** go to stderr as text or, with `--log-format json`, one JSON object per
//!   line, filtered by `--log`.
//! - **Traces**: the server's spans (`request` → `store` → `shard_query`) are at debug
//!   level. With no trace export and the default log filter nothing is interested in
//!   them, so tracing builds no span at all. With `--otlp-endpoint` they go through
//!   tracing-opentelemetry to an OTLP/HTTP (protobuf) exporter. The server samples
//!   at the head: it decides per request, at `--trace-sample-ratio`, whether to build
//!   the request's spans at all, so an unsampled request costs one random draw.
//!   `results/observability.md` measures the cost of each setting.
//!
//! The exporter's HTTP client is [`OtlpHttpClient`]: the SDK exports from its own
//! thread, where an async client finds no tokio runtime and panics (a known trap with
//! reqwest's and hyper's clients), so ours runs its requests on a small runtime of its
//! own.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use std::sync::OnceLock;
use std::time::Duration;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

crate::choices! {
    /// How log lines are written.
    #[derive(Debug)]
    pub enum LogFormat as "log format", default Text {
        /// Human-readable lines.
        Text = "text",
        /// One JSON object per line (timestamp, level, target, fields, spans).
        Json = "json",
    }
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq)]
pub enum Traces {
    /// No span is built (the default).
    Off,
    /// Spans are built but not sent anywhere: what tracing costs by itself.
    Unexported,
    /// Spans are exported over OTLP/HTTP to `endpoint` (`…/v1/traces`).
    Otlp { endpoint: String },
}

static LOG_FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Keeps the trace pipeline alive; [`Telemetry::shutdown`] flushes spans still queued.
#[must_use = "dropping it without shutdown loses spans still queued"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends what is queued and stops the exporter (waits at most a few seconds).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            notice(&format!("trace export did not shut down cleanly: {error}"));
        }
    }
}

/// Why logging or trace export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("--log {filter:?} is not a log filter: {cause}")]
    Filter { filter: String, cause: String },
    #[error(
        "--otlp-endpoint {0:?} must be an http:// URL with a host (OTLP/HTTP, protobuf), e.g. http://127.0.0.1:4318"
    )]
    Endpoint(String),
    #[error("cannot start trace export: {0}")]
    Exporter(String),
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

impl crate::failure::Classify for TelemetryError {
    fn failure(&self) -> crate::failure::Failure {
        match self {
            TelemetryError::Filter { .. } | TelemetryError::Endpoint(_) => crate::failure::Failure::Usage,
            TelemetryError::Exporter(_) | TelemetryError::AlreadyInstalled => crate::failure::Failure::Internal,
        }
    }
}

/// Installs the process's subscriber. `filter` is `EnvFilter` syntax; `service` is the
/// exported spans' `service.name`, which tells a trace's processes apart
/// (`flightbench-gateway`, `flightbench-query`, …).
pub fn init(filter: &str, format: LogFormat, traces: &Traces, service: &str) -> Result<Telemetry, TelemetryError> {
    let _ = LOG_FORMAT.set(format);
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| TelemetryError::Filter { filter: filter.to_owned(), cause: e.to_string() })?;
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
    }
    .with_filter(filter);
    let provider = match traces {
        Traces::Off => None,
        Traces::Unexported => Some(SdkTracerProvider::builder()),
        Traces::Otlp { endpoint } => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_http_client(OtlpHttpClient::start()?)
                .with_endpoint(traces_url(endpoint)?)
                .with_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
            Some(SdkTracerProvider::builder().with_batch_exporter(exporter))
        }
    };
    let provider = provider.map(|builder| {
        builder
            // The server samples at the head (`ServerConfig::trace_sample_ratio`):
            // every span that reaches the SDK belongs to a request chosen for tracing.
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build()
    });
    let spans = provider.as_ref().map(|provider| {
        // Without code locations, thread names, busy/idle timing and OpenTelemetry
        // context activation: each costs allocations or clock reads on every span or
        // every poll, and none is needed to see where a request spent its time.
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("flightbench"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(Targets::new().with_target("flightbench", tracing::Level::DEBUG))
    });
    Registry::default().with(logs).with(spans).try_init().map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(Telemetry { provider })
}

/// `http://host:4318` → `http://host:4318/v1/traces`; a URL with a path is kept as given.
pub fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let uri: http::Uri = endpoint.parse().map_err(|_| TelemetryError::Endpoint(endpoint.to_owned()))?;
    if !(uri.scheme_str() == Some("http") && uri.authority().is_some()) {
        return Err(TelemetryError::Endpoint(endpoint.to_owned()));
    }
    Ok(match uri.path() {
        "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_owned(),
    })
}

/// A line for the person running the command, on stderr: plain text, or with
/// `--log-format json` a JSON object like the log lines, so the stream stays parseable.
pub fn notice(message: &str) {
    match LOG_FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => eprintln!("{message}"),
        LogFormat::Json => {
            let timestamp = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let line = serde_json::json!({
                "timestamp": timestamp,
                "level": "INFO",
                "fields": { "message": message },
                "target": "flightbench",
            });
            eprintln!("{line}");
        }
    }
}

/// The exporter's HTTP client: one HTTP/1.1 connection, kept open between batches and
/// reopened when it fails, driven by a current-thread runtime on its own thread.
#[derive(Debug)]
pub struct OtlpHttpClient {
    runtime: tokio::runtime::Handle,
    connection: std::sync::Arc<tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>>,
    /// Dropping the client stops its thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl OtlpHttpClient {
    pub fn start() -> Result<Self, TelemetryError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TelemetryError::Exporter(format!("no runtime for the exporter: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .map_err(|e| TelemetryError::Exporter(format!("no thread for the exporter: {e}")))?;
        Ok(Self { runtime: handle, connection: Default::default(), _stop: stop })
    }
}

type HttpError = opentelemetry_http::HttpError;

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let connection = self.connection.clone();
        self.runtime.spawn(send(connection, request)).await.map_err(|e| Box::new(e) as HttpError)?
    }
}

async fn send(
    connection: std::sync::Arc<tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>>,
    request: http::Request<Bytes>,
) -> Result<http::Response<Bytes>, HttpError> {
    let mut connection = connection.lock().await;
    let reusable = connection.as_mut().filter(|c| !c.is_closed());
    let sender = match reusable {
        Some(sender) => sender,
        None => {
            let authority = request.uri().authority().ok_or("OTLP endpoint without a host")?.to_string();
            let stream = tokio::net::TcpStream::connect(&authority).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                if let Err(error) = conn.await {
                    tracing::debug!(%error, "OTLP connection closed");
                }
            });
            connection.insert(sender)
        }
    };
    sender.ready().await?;
    let (mut parts, body) = request.into_parts();
    if !parts.headers.contains_key(http::header::HOST)
        && let Some(authority) = parts.uri.authority()
    {
        parts.headers.insert(http::header::HOST, http::HeaderValue::from_str(authority.as_str())?);
    }
    // HTTP/1.1 on a connection: the request line carries the path only.
    parts.uri = parts.uri.path_and_query().map_or("/", |p| p.as_str()).parse()?;
    let response = sender.send_request(http::Request::from_parts(parts, Full::new(body))).await;
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            // The connection is gone; the next batch opens a new one.
            *connection = None;
            return Err(Box::new(error));
        }
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(http::Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_endpoints() {
        assert_eq!(traces_url("http://127.0.0.1:4318").unwrap(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://127.0.0.1:4318/").unwrap(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/custom/traces").unwrap(), "http://c:4318/custom/traces");
        for bad in ["127.0.0.1:4318", "https://c:4318", "not a url", "http:///v1/traces"] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }
}

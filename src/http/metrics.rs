//! `GET /metrics`: the server's Prometheus metrics (OpenMetrics text, which Prometheus
//! and `promtool check metrics` read).
//!
//! Two kinds of figure:
//! - recorded on the hot path: request durations, response bytes, load shedding, and
//!   (in `store::metrics`) store operation durations. Each series' handle is resolved
//!   once and kept in a slot, so a request pays one histogram update (a short
//!   uncontended lock) and no label hashing; `results/observability.md` measures the cost.
//! - read at scrape time from state that already exists: requests in flight (the load
//!   shedding semaphore), flight cache hits and misses, pool sizes. Nothing extra is
//!   counted for them while serving.

use super::cache::CacheStats;
use super::route::{Route, method_label, protocol_label};
use crate::choice::Choice;
use crate::compression::Encoding;
use crate::projection::ProjectorStats;
use crate::projection::runner::FollowerStats;
use crate::store::{AsyncLag, PoolStats, ShardHealth, StoreMetrics, latency_histogram};
use http::{Method, StatusCode, Version};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The media type of the OpenMetrics exposition (Prometheus asks for it first).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The media type of the classic Prometheus text format, for every other client
/// (curl, `promtool check metrics`, older scrapers).
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which exposition a client asked for with its Accept header.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| accept.contains("application/openmetrics-text"))
}

/// The exposition a client asked for (its Accept header) and its media type, from the
/// OpenMetrics text: the server's `/metrics` and the gateway's.
pub fn negotiated(openmetrics: String, accept: Option<&str>) -> (String, &'static str) {
    if wants_openmetrics(accept) {
        (openmetrics, OPENMETRICS)
    } else {
        (to_prometheus_text(&openmetrics), PROMETHEUS_TEXT)
    }
}

/// OpenMetrics text → Prometheus text 0.0.4. prometheus-client writes only the former;
/// the two differ in three ways, all undone here: a counter's family is named without
/// `_total` (its samples have it), `# UNIT` lines, and the closing `# EOF`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut lines = openmetrics.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // HELP precedes TYPE: look ahead to learn whether this family is a counter.
            let name = rest.split(' ').next().unwrap_or_default();
            let is_counter = lines.peek().is_some_and(|next| *next == format!("# TYPE {name} counter"));
            if is_counter && !name.ends_with("_total") {
                out.push_str(&format!("# HELP {name}_total{}\n", &rest[name.len()..]));
                lines.next();
                out.push_str(&format!("# TYPE {name}_total counter\n"));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: &'static str,
    protocol: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EncodingLabels {
    encoding: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    reason: &'static str,
}

const METHODS: [&str; 3] = ["GET", "POST", "other"];
/// Status classes, the label of every duration histogram by status.
pub(crate) const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const PROTOCOLS: [&str; 3] = ["http/1.0", "http/1.1", "h2"];
const ENCODINGS: [Encoding; 5] = [Encoding::Identity, Encoding::Br, Encoding::Zstd, Encoding::Gzip, Encoding::Deflate];

/// Every metric the server records, in its own registry.
pub struct ServerMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Histogram>,
    /// One slot per (route, method, status class, protocol), filled on first use.
    request_slots: Box<[OnceLock<Histogram>]>,
    uncompressed_bytes: [Counter; ENCODINGS.len()],
    sent_bytes: [Counter; ENCODINGS.len()],
    load_shed: Counter,
    auth_refused: Family<AuthLabels, Counter>,
    pub store: Arc<StoreMetrics>,
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetrics").finish_non_exhaustive()
    }
}

impl ServerMetrics {
    /// Registers every family; `shards` sizes the store's slots.
    pub fn new(shards: usize) -> Arc<Self> {
        let mut registry = Registry::with_prefix("flightbench");
        let requests = Family::<RequestLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time from the request head to the response head, by route template, method, status class and protocol",
            Unit::Seconds,
            requests.clone(),
        );
        let uncompressed = Family::<EncodingLabels, Counter>::default();
        registry.register_with_unit(
            "http_response_uncompressed",
            "Response body bytes before compression, by the encoding chosen",
            Unit::Bytes,
            uncompressed.clone(),
        );
        let sent = Family::<EncodingLabels, Counter>::default();
        registry.register_with_unit(
            "http_response_sent",
            "Response body bytes after compression (as sent), by encoding",
            Unit::Bytes,
            sent.clone(),
        );
        let by_encoding = |family: &Family<EncodingLabels, Counter>| {
            ENCODINGS.map(|e| family.get_or_create(&EncodingLabels { encoding: e.as_str() }).clone())
        };
        let load_shed = Counter::default();
        registry.register(
            "http_load_shed",
            "Requests answered 503 at once because --max-in-flight requests were already in flight",
            load_shed.clone(),
        );
        let auth_refused = Family::<AuthLabels, Counter>::default();
        registry.register(
            "auth_refused",
            "Requests refused 401 or 403 (with --auth on), by reason: missing, insufficient_scope, or why the token was invalid",
            auth_refused.clone(),
        );
        register_build_info(&mut registry);
        let store = StoreMetrics::register(&mut registry, shards);
        let slots = Route::ALL.len() * METHODS.len() * CLASSES.len() * PROTOCOLS.len();
        Arc::new(Self {
            uncompressed_bytes: by_encoding(&uncompressed),
            sent_bytes: by_encoding(&sent),
            registry,
            request_slots: (0..slots).map(|_| OnceLock::new()).collect(),
            requests,
            load_shed,
            auth_refused,
            store,
        })
    }

    /// One finished request.
    pub fn observe_request(
        &self,
        route: Route,
        method: &Method,
        status: StatusCode,
        version: Version,
        elapsed: Duration,
    ) {
        let method = method_label(method);
        let method_index = METHODS.iter().position(|m| *m == method).unwrap_or(METHODS.len() - 1);
        let class_index = class_index(status);
        let protocol = protocol_label(version);
        let protocol_index = PROTOCOLS.iter().position(|p| *p == protocol).unwrap_or(1);
        let slot = ((route.index() * METHODS.len() + method_index) * CLASSES.len() + class_index) * PROTOCOLS.len()
            + protocol_index;
        let histogram = self.request_slots[slot].get_or_init(|| {
            let labels = RequestLabels { route: route.template(), method, status: CLASSES[class_index], protocol };
            self.requests.get_or_create(&labels).clone()
        });
        histogram.observe(elapsed.as_secs_f64());
    }

    /// A response body of `uncompressed` bytes sent as `sent` bytes in `encoding`.
    pub fn observe_body(&self, encoding: Encoding, uncompressed: usize, sent: usize) {
        let i = ENCODINGS.iter().position(|e| *e == encoding).unwrap_or(0);
        self.uncompressed_bytes[i].inc_by(uncompressed as u64);
        self.sent_bytes[i].inc_by(sent as u64);
    }

    /// Bytes of a streamed body, counted as its frames leave the encoder.
    pub fn observe_streamed(&self, encoding: Encoding, sent: usize) {
        let i = ENCODINGS.iter().position(|e| *e == encoding).unwrap_or(0);
        self.sent_bytes[i].inc_by(sent as u64);
    }

    pub fn observe_load_shed(&self) {
        self.load_shed.inc();
    }

    /// A request refused by the auth check.
    pub fn observe_auth_refused(&self, error: crate::auth::AuthError) {
        let reason = match error {
            crate::auth::AuthError::Missing(_) => "missing",
            crate::auth::AuthError::Forbidden(_) => "insufficient_scope",
            crate::auth::AuthError::Invalid(rejection) => rejection.label(),
        };
        self.auth_refused.get_or_create(&AuthLabels { reason }).inc();
    }

    /// Requests handled so far, every route and status: the request histogram's counts
    /// added up. Read from the exposition (prometheus-client keeps a histogram's count
    /// private): for `serve`'s stop summary, not for the hot path.
    pub fn requests_handled(&self) -> u64 {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &self.registry);
        text.lines()
            .filter(|l| l.starts_with("flightbench_http_request_duration_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// The exposition: the recorded metrics plus `scraped`, read just now.
    pub fn encode(&self, scraped: Scraped) -> String {
        exposition(&self.registry, scraped)
    }
}

/// OpenMetrics text of `recorded` followed by `scraped` (figures read just now), for
/// the server's `/metrics` and the gateway's.
pub(crate) fn exposition(recorded: &Registry, scraped: impl Collector) -> String {
    let mut at_scrape = Registry::with_prefix("flightbench");
    at_scrape.register_collector(Box::new(scraped));
    let mut text = String::with_capacity(16 * 1_024);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut text, recorded);
    let _ = prometheus_client::encoding::text::encode_registry(&mut text, &at_scrape);
    let _ = prometheus_client::encoding::text::encode_eof(&mut text);
    text
}

/// `build_info`: the running binary, for every process that serves `/metrics`.
pub(crate) fn register_build_info(registry: &mut Registry) {
    let build = Family::<BuildLabels, Gauge>::default();
    build.get_or_create(&BuildLabels::current()).set(1);
    registry.register("build_info", "The running binary: version, commit and compiler", build);
}

/// The index in [`CLASSES`] of a status.
pub(crate) fn class_index(status: StatusCode) -> usize {
    (status.as_u16() / 100).clamp(1, 5) as usize - 1
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
    rustc: &'static str,
    profile: &'static str,
}

impl BuildLabels {
    fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("FLIGHTBENCH_COMMIT"),
            rustc: env!("FLIGHTBENCH_RUSTC"),
            profile: if cfg!(debug_assertions) { "debug" } else { "release" },
        }
    }
}

/// Figures read from the server's state when `/metrics` is asked for.
#[derive(Debug)]
pub struct Scraped {
    pub in_flight: usize,
    pub max_in_flight: usize,
    pub cache: Option<CacheStats>,
    pub pools: Vec<PoolStats>,
    /// The readiness probes, run for this scrape (`store::health`).
    pub shards: Vec<ShardHealth>,
    /// Each async read model's lag behind each shard, read for this scrape.
    pub async_lags: Vec<AsyncLag>,
    /// The counters of the projection runner in this process, if it runs here.
    pub projector: Option<Arc<ProjectorStats>>,
    /// The process's CPU time so far (user + system, every thread).
    pub cpu: Option<crate::machine::CpuTime>,
    /// The live feed's (subscribers, changes published, subscribers dropped), when
    /// this server has one.
    pub live: Option<(u64, u64, u64)>,
    /// Connections closed because their peer stopped reading.
    pub stalled_writes: u64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    shard: usize,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    projection: &'static str,
    shard: usize,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    shard: usize,
    pool: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    shard: usize,
    pool: &'static str,
    state: &'static str,
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        // A family of one sample without labels.
        let one = |value: i64| [(NO_LABELS, value)];
        gauges(e, "http_requests_in_flight", "Requests being handled now", one(self.in_flight as i64))?;
        if let Some(cpu) = self.cpu {
            // rate(this) / rate(http_request_duration_seconds_count): CPU per request.
            process_cpu(e, cpu)?;
        }
        gauges(
            e,
            "http_max_requests_in_flight",
            "Requests in flight beyond which the server sheds load (--max-in-flight)",
            one(self.max_in_flight as i64),
        )?;
        if let Some(cache) = &self.cache {
            counter(e, "flight_cache_hits", "Point reads answered from the flight cache", cache.hits)?;
            counter(e, "flight_cache_misses", "Point reads the flight cache did not hold", cache.misses)?;
            gauges(e, "flight_cache_entries", "Flights the cache holds", one(cache.entries as i64))?;
        }
        let shard = |s: &ShardHealth| ShardLabels { shard: s.shard };
        gauges(
            e,
            "shard_ready",
            "1 when the shard passed every readiness probe in this scrape (it answered in time and its projection does not lag), else 0",
            self.shards.iter().map(|s| (shard(s), i64::from(s.ready))),
        )?;
        gauges(
            e,
            "projection_lag_events",
            "Events in the shard's log not yet applied to its status projection (absent when the shard did not answer)",
            self.shards.iter().filter_map(|s| Some((shard(s), s.projection_lag_events?))),
        )?;
        gauges(
            e,
            "async_projection_lag_events",
            "Events on the shard not yet applied to the async read model (every event before the runner started on it): exact with the runner in this process, else read from the checkpoints, which may overstate under steady writes",
            self.async_lags
                .iter()
                .map(|l| (ProjectionLabels { projection: l.projection, shard: l.shard }, l.lag_events)),
        )?;
        if let Some(projector) = &self.projector {
            let each = |read: fn(&FollowerStats) -> u64| {
                projector
                    .followers
                    .iter()
                    .map(move |(m, s, f)| (ProjectionLabels { projection: m.name(), shard: *s }, read(f)))
            };
            counters(
                e,
                "projection_events_applied",
                "Events the in-process runner applied, per read model and source shard",
                each(|f| f.applied.load(Relaxed)),
            )?;
            counters(
                e,
                "projection_batches",
                "Batches the in-process runner committed, per read model and source shard",
                each(|f| f.batches.load(Relaxed)),
            )?;
            counters(
                e,
                "projection_errors",
                "Batches that failed and were rolled back to be retried (the log says why)",
                each(|f| f.errors.load(Relaxed)),
            )?;
            counters(
                e,
                "projection_sequence_gaps",
                "Event numbers missing from a shard's sequence (only if events were deleted outside the service)",
                each(|f| f.gaps.load(Relaxed)),
            )?;
        }
        counter(
            e,
            "http_connections_write_stalled",
            "Connections closed because the client read nothing the server was sending for --write-stall-timeout",
            self.stalled_writes,
        )?;
        if let Some((subscribers, published, dropped)) = self.live {
            gauges(e, "live_subscribers", "Clients following /live now", one(subscribers as i64))?;
            counter(e, "live_updates_published", "Board changes sent to airports with subscribers", published)?;
            counter(
                e,
                "live_subscribers_dropped",
                "Subscribers disconnected for falling too far behind (their client stopped reading)",
                dropped,
            )?;
        }
        gauges(
            e,
            "shard_probe_duration_seconds",
            "How long the shard took to answer its readiness probes in this scrape",
            self.shards.iter().filter_map(|s| Some((shard(s), s.answered_ms? / 1e3))),
        )?;
        let pool = |p: &PoolStats| PoolLabels { shard: p.shard, pool: p.pool };
        gauges(
            e,
            "pool_connections",
            "Open database connections per shard and pool (sqlx serves prepared, adhoc and orm; raw is the driver floor), idle or in use",
            self.pools.iter().flat_map(|p| {
                [("idle", p.idle), ("in_use", p.open.saturating_sub(p.idle))]
                    .map(|(state, n)| (PoolStateLabels { shard: p.shard, pool: p.pool, state }, n as i64))
            }),
        )?;
        gauges(
            e,
            "pool_max_connections",
            "The most connections each pool opens (the raw SQLite pool grows on demand and has none)",
            self.pools.iter().filter_map(|p| Some((pool(p), p.max? as i64))),
        )?;
        gauges(
            e,
            "pool_waiting",
            "Tasks waiting for a connection, where the pool reports it (PostgreSQL raw pools); a pool at its maximum with none idle is saturated",
            self.pools.iter().filter_map(|p| Some((pool(p), p.waiting? as i64))),
        )
    }
}

pub(crate) const NO_LABELS: &[(&str, &str)] = &[];

/// `process_cpu_seconds_total`: the process's CPU time so far, user and system.
pub(crate) fn process_cpu(
    encoder: &mut DescriptorEncoder,
    cpu: crate::machine::CpuTime,
) -> Result<(), std::fmt::Error> {
    let seconds = ConstCounter::new(cpu.total_s());
    seconds.encode(encoder.encode_descriptor(
        "process_cpu",
        "CPU time the process has used, user and system, every thread",
        Some(&prometheus_client::registry::Unit::Seconds),
        seconds.metric_type(),
    )?)
}

/// One gauge family read at scrape time: its descriptor, then one sample per label set.
pub(crate) fn gauges<L: EncodeLabelSet, N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, N)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in values {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A labelled family of counters kept elsewhere (the projection runner's), read at
/// scrape time.
pub(crate) fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in values {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A counter kept elsewhere (the flight cache counts its own hits), read at scrape time.
pub(crate) fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;

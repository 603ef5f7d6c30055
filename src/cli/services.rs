//! `serve --role`: what a process of the split service runs beside its listener. The
//! command role (or `--relay`) publishes every committed event through the outbox
//! relay; the query role's flight cache follows those events; the notification role
//! (or `--notify`) consumes them into webhook deliveries and sends those.

use super::Refuse;
use super::serve::ProjectorMode;
use crate::bus::{
    Confirms, Consumer, ConsumerConfig, DEFAULT_URL, DelayEventMessage, EXCHANGE, Handler, Relay, RelayConfig,
};
use crate::failure::Failure;
use crate::http::{AppState, ServiceRole};
use crate::notify::{Notifier, NotifyConfig, RecordDeliveries};
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Which part of the service this process is: the whole of it (`all`, the
    /// monolith), or one part of the split: `query` (reads, its cache following the
    /// bus), `command` (writes, published through the outbox relay), `notify` (webhook
    /// subscriptions and deliveries). A route another part serves is a 404 naming it.
    #[arg(long, value_parser = super::choice::<ServiceRole>(), env = "FLIGHTBENCH_ROLE", default_value_t = ServiceRole::All)]
    pub role: ServiceRole,
    /// With `--role all`: publish every delay event to the broker as well (the
    /// command role always does).
    #[arg(long)]
    pub relay: bool,
    /// With `--role all`: run the notification service in this process as well.
    #[arg(long)]
    pub notify: bool,
    /// The gateway's configuration (JSON: each service's destinations, optional extra
    /// routes, health checks, retry budget, time limits; `flightbench serve --help`
    /// and the README show one). Read again when it changes.
    #[arg(long, value_name = "FILE")]
    pub gateway_config: Option<PathBuf>,
    /// The broker's AMQP URL (RabbitMQ), for every role but a plain `all`.
    #[arg(long, env = "FLIGHTBENCH_BUS_URL", default_value = DEFAULT_URL, value_name = "AMQP_URL")]
    pub bus_url: String,
    /// The topic exchange events are published to and consumed from.
    #[arg(long, default_value = EXCHANGE)]
    pub bus_exchange: String,
    /// How the relay waits for publisher confirms: a batch's at once (`pipelined`),
    /// or each before the next publish (`per-message`).
    #[arg(long, value_parser = super::choice::<Confirms>(), default_value_t = Confirms::Pipelined)]
    pub confirms: Confirms,
    /// The notification service's durable queue.
    #[arg(long, default_value = "flightbench.notify")]
    pub notify_queue: String,
    /// The notification service's own SQLite file (default: notify.sqlite in the
    /// dataset directory).
    #[arg(long, value_name = "FILE")]
    pub notify_db: Option<PathBuf>,
    /// Hosts a webhook URL may name, comma-separated: a subscription makes this
    /// server call its URL, so which hosts it may call is the operator's choice.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost,::1")]
    pub webhook_hosts: Vec<String>,
    /// Tries per webhook delivery before it is dead.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub webhook_attempts: u32,
    /// The wait after a delivery's first failed try, doubled after each (at most 5
    /// minutes).
    #[arg(long, default_value = "1s", value_parser = super::parse_duration)]
    pub webhook_retry: Duration,
    /// One delivery try's time limit, connection included.
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    pub webhook_timeout: Duration,
}

impl ServiceArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        super::ensure_usage!(
            (self.role == ServiceRole::Gateway) == self.gateway_config.is_some(),
            "--role gateway needs --gateway-config FILE, and only the gateway takes one"
        );
        super::ensure_usage!(
            self.role == ServiceRole::All || !(self.relay || self.notify),
            "--relay and --notify add a part to the monolith (--role all); --role {} runs its own part",
            self.role
        );
        Ok(())
    }

    fn relays(&self) -> bool {
        self.role == ServiceRole::Command || (self.role == ServiceRole::All && self.relay)
    }

    fn notifies(&self) -> bool {
        self.role == ServiceRole::Notify || (self.role == ServiceRole::All && self.notify)
    }

    /// Who keeps the async read models here: the query service (or the monolith)
    /// as asked; the command and notification services leave them to it, and their
    /// probes still check the lag.
    pub fn projector(&self, asked: ProjectorMode) -> ProjectorMode {
        match (self.role, asked) {
            (ServiceRole::Command | ServiceRole::Notify, ProjectorMode::InProcess) => ProjectorMode::External,
            _ => asked,
        }
    }

    /// Starts this role's parts: consumers first (their queues then exist when the
    /// relay's first messages are published), the relay last.
    pub async fn start(&self, state: &Arc<AppState>, dataset: &Path) -> anyhow::Result<Running> {
        let mut running = Running::default();
        if self.role == ServiceRole::Query && state.cache.is_some() {
            let queue = format!("flightbench.query-cache.{}.{}", std::process::id(), crate::machine::unix_micros());
            let config = ConsumerConfig { durable: false, ..self.consumer(&queue) };
            let consumer = Consumer::start(config, InvalidateCache(state.clone()))
                .await
                .context("the query service's cache follows the bus (or run it with --cache off)")?;
            running.lines.push(format!("flight cache follows the events on {}", self.bus()));
            running.consumers.push(("cache", consumer));
        }
        if self.notifies() {
            let path = self.notify_db.clone().unwrap_or_else(|| dataset.join("notify.sqlite"));
            let config = NotifyConfig {
                allowed_hosts: self.webhook_hosts.iter().map(|h| h.trim().to_ascii_lowercase()).collect(),
                attempts: self.webhook_attempts,
                retry_first: self.webhook_retry,
                timeout: self.webhook_timeout,
                ..NotifyConfig::new(path.clone())
            };
            let notifier = Notifier::open(config).await?;
            let consumer = Consumer::start(self.consumer(&self.notify_queue), RecordDeliveries(notifier.clone()))
                .await
                .context("the notification service consumes the bus")?;
            let (stop, stopped) = watch::channel(false);
            let deliverer = tokio::spawn(notifier.clone().deliver(stopped));
            let _ = state.notifier.set(notifier.clone());
            running.lines.push(format!(
                "webhook subscriptions on /subscriptions, kept in {}; events from queue {} on {}",
                path.display(),
                self.notify_queue,
                self.bus()
            ));
            running.consumers.push(("notify", consumer));
            running.deliverer = Some((stop, deliverer, notifier));
        }
        if self.relays() {
            let config = RelayConfig {
                exchange: self.bus_exchange.clone(),
                confirms: self.confirms,
                ..RelayConfig::new(&self.bus_url)
            };
            // The store the server serves now: the relay moves with a reshard.
            let serving = state.clone();
            let relay = Relay::following(Arc::new(move || serving.store()), config)
                .await
                .context("the outbox relay publishes to the broker")?;
            running.lines.push(format!(
                "publishing every delay event to exchange {} on {} ({} confirms)",
                self.bus_exchange,
                self.bus(),
                self.confirms
            ));
            running.relay = Some(relay);
        }
        Ok(running)
    }

    fn consumer(&self, queue: &str) -> ConsumerConfig {
        ConsumerConfig { exchange: self.bus_exchange.clone(), ..ConsumerConfig::new(&self.bus_url, queue) }
    }

    fn bus(&self) -> String {
        crate::bus::link::redact(&self.bus_url)
    }
}

/// The query service's cache, invalidated by every event and cleared whenever its
/// (exclusive, connection-bound) queue is subscribed anew.
struct InvalidateCache(Arc<AppState>);

impl Handler for InvalidateCache {
    async fn handle(&self, message: &DelayEventMessage) -> Result<(), String> {
        if let Some(cache) = &self.0.cache {
            cache.invalidate(message.flight_id);
        }
        Ok(())
    }

    fn subscribed(&self) {
        if let Some(cache) = &self.0.cache {
            cache.clear();
        }
    }
}

/// What `ServiceArgs::start` started.
#[derive(Default)]
pub struct Running {
    /// What to tell the user at start.
    pub lines: Vec<String>,
    relay: Option<Relay>,
    consumers: Vec<(&'static str, Consumer)>,
    deliverer: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>, Arc<Notifier>)>,
}

impl Running {
    /// Stops every part (the relay after its batch in hand) and says what each did.
    pub async fn stop(self) -> Vec<String> {
        let mut summary = Vec::new();
        if let Some(relay) = self.relay {
            let stats = relay.stats().clone();
            relay.stop().await;
            summary.push(format!(
                "outbox relay: {} events confirmed in {} batches, {} holds, {} reconnects",
                stats.confirmed.load(Ordering::Relaxed),
                stats.batches.load(Ordering::Relaxed),
                stats.held.load(Ordering::Relaxed),
                stats.reconnects.load(Ordering::Relaxed)
            ));
        }
        for (name, consumer) in self.consumers {
            let stats = consumer.stats().clone();
            consumer.stop().await;
            summary.push(format!(
                "{name} consumer: {} handled, {} duplicates skipped, {} dead-lettered, {} reconnects",
                stats.handled.load(Ordering::Relaxed),
                stats.duplicates.load(Ordering::Relaxed),
                stats.dead_lettered.load(Ordering::Relaxed),
                stats.reconnects.load(Ordering::Relaxed)
            ));
        }
        if let Some((stop, task, notifier)) = self.deliverer {
            let _ = stop.send(true);
            let _ = task.await;
            let stats = &notifier.stats;
            summary.push(format!(
                "webhooks: {} recorded, {} delivered, {} failed tries, {} dead",
                stats.recorded.load(Ordering::Relaxed),
                stats.delivered.load(Ordering::Relaxed),
                stats.failed_tries.load(Ordering::Relaxed),
                stats.dead.load(Ordering::Relaxed)
            ));
            notifier.close().await;
        }
        summary
    }
}

/// `serve --role gateway`: loads the file, checks every destination once, then
/// forwards until SIGINT or SIGTERM, checking health and following the file.
pub(super) async fn run_gateway(
    args: &super::serve::ServeArgs,
    config: &crate::http::ServerConfig,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<()> {
    use crate::gateway::{Gateway, config::GatewayConfig};
    let path = args.services.gateway_config.clone().expect("checked with the flags");
    let named = || format!("--gateway-config {}", path.display());
    let text = std::fs::read_to_string(&path).refused(Failure::BadInput, named)?;
    let parsed = GatewayConfig::parse(&text).refused(Failure::BadInput, named)?;
    let gateway =
        Gateway::new(parsed, Some(path.clone()), config, acceptor.is_some()).refused(Failure::BadInput, named)?;
    gateway.check_all().await;
    let (stop, stopped) = watch::channel(false);
    let checks = tokio::spawn(gateway.clone().keep_checking(stopped.clone()));
    let follow = tokio::spawn(gateway.clone().follow_file(stopped));
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let destinations = gateway.destinations();
    let checks_tokens = config.auth.is_some();
    let announce = |local: std::net::SocketAddr, shape: String| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "listening on {scheme}://{local} (gateway, HTTP/1.1 and h2c in front, HTTP/2 behind), {shape}"
        );
        for d in &destinations {
            let state = if d.healthy { "healthy" } else { "failing its checks" };
            let _ = writeln!(out, "  {}: {} ({state})", d.service, d.url);
        }
        let _ = writeln!(out, "routes and destinations from {} (followed)", path.display());
        if checks_tokens {
            let _ = writeln!(out, "tokens checked here before forwarding (--auth)");
        }
        let _ = out.flush();
    };
    let front = gateway.clone();
    let config = config.clone();
    let served = args
        .runtime
        .serve(args.addr, announce, move |listener, stopped| {
            let (gateway, config, acceptor) = (front.clone(), config.clone(), acceptor.clone());
            async move {
                let handler = move |request, peer| {
                    let gateway = gateway.clone();
                    async move { gateway.handle(request, peer).await }
                };
                crate::http::serve_front(listener, &config, acceptor, stopped.wait(), handler).await
            }
        })
        .await;
    let _ = stop.send(true);
    let _ = tokio::join!(checks, follow);
    let stats = &gateway.stats;
    crate::telemetry::notice(&format!(
        "gateway: {} forwarded, {} retried, {} bad gateway, {} timed out, {} reloads",
        stats.forwarded.load(Ordering::Relaxed),
        stats.retries.load(Ordering::Relaxed),
        stats.bad_gateway.load(Ordering::Relaxed),
        stats.timeouts.load(Ordering::Relaxed),
        stats.reloads.load(Ordering::Relaxed)
    ));
    served
}

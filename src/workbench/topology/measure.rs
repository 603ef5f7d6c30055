//! Running the topology part: the copy, each topology's processes, its loads, the
//! checking writer and the webhook sink, and the publish-mode measure.

use super::sink::Sink;
use super::{Latency, Notifications, Shape, ShapeFigures, Topology};
use crate::bus::bench::{PublishMode, publish_rate};
use crate::harness::LoadShape;
use crate::load::report::LoadReport;
use crate::load::workload::{DatasetShape, RequestKind};
use crate::machine::CpuTime;
use crate::store::{Store, StoreConfig};
use crate::workbench::cell::CellId;
use crate::workbench::measure::load_shape;
use crate::workbench::plan::{CellPlan, MIXED_LOAD_SHARE, Plan};
use crate::workbench::served::Served;
use crate::workbench::writer::write_until;
use crate::workbench::{Preset, Progress, WorkbenchError};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the split's deliveries may trail the end of its window.
const DELIVERY_WAIT: Duration = Duration::from_secs(15);

fn fail(problem: impl std::fmt::Display) -> WorkbenchError {
    WorkbenchError::Topology(problem.to_string())
}

/// Copies the main dataset, measures every topology on the copy, removes it.
pub(in crate::workbench) async fn measure(
    plan: &Plan,
    main_dir: &Path,
    progress: &dyn Fn(Progress<'_>),
) -> Result<Topology, WorkbenchError> {
    let url = crate::bus::DEFAULT_URL;
    crate::bus::link::connect(url, "flightbench run")
        .await
        .map_err(|e| fail(format!("{e} (the topology part needs RabbitMQ; run the others with --only)")))?;
    let copy = plan.dir.join("workbench").join(format!("topology-{}-flights", plan.flights));
    progress(Progress::Topology { stage: "copying the dataset" });
    let (from, to) = (main_dir.to_owned(), copy.clone());
    tokio::task::spawn_blocking(move || crate::workbench::resharding::copy_dataset(&from, &to)).await??;
    let exchange = format!("flightbench.run.{}.{}", std::process::id(), crate::machine::unix_micros());
    let measured = measure_copy(plan, &copy, url, &exchange, progress).await;
    remove_exchange(url, &exchange).await;
    let removed = std::fs::remove_dir_all(&copy);
    let mut figures = measured?;
    removed.map_err(|cause| WorkbenchError::CopyDataset { path: copy, cause })?;
    progress(Progress::Topology { stage: "publisher confirms: per message, pipelined, off" });
    let messages = match plan.preset {
        Preset::Quick => 2_000,
        Preset::Default => 10_000,
        Preset::Full => 50_000,
    };
    for mode in PublishMode::ALL {
        figures.confirms.push(publish_rate(url, mode, messages, 500, 400).await.map_err(fail)?);
    }
    Ok(figures)
}

async fn measure_copy(
    plan: &Plan,
    dir: &Path,
    url: &str,
    exchange: &str,
    progress: &dyn Fn(Progress<'_>),
) -> Result<Topology, WorkbenchError> {
    let store = Arc::new(Store::open(dir, &StoreConfig::default()).await?);
    let shape = DatasetShape::from_manifest(store.manifest());
    let cell = CellPlan::of(CellId::OpenLoop);
    let load = load_shape(plan, &cell, &shape, &Served::of(&cell)?)?;
    let launch = Launch { dir: dir.to_owned(), url: url.to_owned(), exchange: exchange.to_owned() };
    // Capacity first, every topology; then each at one rate all of them can take, so
    // their latencies compare service times, not queues.
    let mut capacities = Vec::new();
    for topology in Shape::ALL {
        progress(Progress::Topology { stage: &format!("{}: capacity, closed loop", topology.as_str()) });
        // The split delivers a webhook per write here too: its capacity includes them.
        let sink = Sink::default();
        let hook = if topology == Shape::Split { Some(sink.start().await.map_err(fail)?) } else { None };
        let processes = launch.start(topology, hook.map(|h| (h, shape.airports.as_slice()))).await?;
        let mut closed = load.clone();
        closed.rate = None;
        run_load(plan, &closed, processes.front()).await?; // warm-up: connections, caches, the relay
        closed.warmup = Duration::ZERO;
        let cpu_before = processes.cpu();
        let capacity = run_load(plan, &closed, processes.front()).await?;
        let cpu = processes.cpu().zip(cpu_before).map(|(after, before)| after - before);
        capacities.push((topology, processes.names(), capacity, cpu));
    }
    let slowest = capacities.iter().map(|(_, _, c, _)| c.achieved_rate).fold(f64::INFINITY, f64::min);
    let offered_rate = (slowest * MIXED_LOAD_SHARE).round().max(1.0);
    let mut shapes = Vec::new();
    let mut notifications = None;
    for (topology, names, capacity, cpu) in capacities {
        progress(Progress::Topology { stage: &format!("{}: {offered_rate} req/s, open loop", topology.as_str()) });
        let sink = Sink::default();
        let hook = if topology == Shape::Split { Some(sink.start().await.map_err(fail)?) } else { None };
        let processes = launch.start(topology, hook.map(|h| (h, shape.airports.as_slice()))).await?;
        let front = processes.front();
        let mut open = load.clone();
        open.rate = Some(offered_rate);
        let checking = hook.map(|_| {
            let stop = Arc::new(AtomicBool::new(false));
            (stop.clone(), tokio::spawn(write_until(front, store.clone(), stop)))
        });
        let probe_stop = Arc::new(AtomicBool::new(false));
        let probe = tokio::spawn(super::fresh::probe(front, store.clone(), probe_stop.clone()));
        let delivered_before = sink.delivered();
        let window = Instant::now();
        let latency = run_load(plan, &open, front).await;
        probe_stop.store(true, Ordering::Relaxed);
        let fresh = probe.await??;
        let latency = latency?;
        let window = window.elapsed();
        if let Some((stop, writer)) = checking {
            stop.store(true, Ordering::Relaxed);
            let acknowledged = writer.await??;
            let delivered_during = sink.delivered().saturating_sub(delivered_before);
            notifications = Some(time_deliveries(&acknowledged, &sink, delivered_during, window).await);
        }
        shapes.push(ShapeFigures { fresh: Some(fresh), ..figures(topology, names, &capacity, cpu, &latency) });
        processes.stop();
    }
    store.close().await;
    Ok(Topology { flights: plan.flights, offered_rate, shapes, notifications, confirms: Vec::new() })
}

fn figures(
    shape: Shape,
    processes: Vec<String>,
    capacity: &LoadReport,
    cpu: Option<CpuTime>,
    open: &LoadReport,
) -> ShapeFigures {
    let of = |kind: RequestKind| {
        open.latency_by_kind.get(&kind).map_or(Latency { count: 0, p50_ms: 0.0, p99_ms: 0.0 }, |p| Latency {
            count: p.count,
            p50_ms: p.p50_ms,
            p99_ms: p.p99_ms,
        })
    };
    let errors = |r: &LoadReport| r.errors.values().sum::<u64>();
    ShapeFigures {
        shape,
        processes,
        capacity: capacity.achieved_rate,
        cpu_us_per_request: cpu.and_then(|c| c.micros_per(capacity.responses)),
        reads: of(RequestKind::Read),
        writes: of(RequestKind::Write),
        achieved_rate: open.achieved_rate,
        errors: errors(capacity) + errors(open),
        unexpected_statuses: capacity.unexpected_statuses + open.unexpected_statuses,
        fresh: None,
    }
}

/// Waits (up to [`DELIVERY_WAIT`]) for every checked write's webhook, then times them.
async fn time_deliveries(
    acknowledged: &crate::workbench::writer::Acknowledged,
    sink: &Sink,
    delivered_during: usize,
    window: Duration,
) -> Notifications {
    let ids: Vec<(String, Instant)> =
        acknowledged.at.iter().map(|(&(flight, version), &at)| (format!("{flight}/{version}"), at)).collect();
    let deadline = Instant::now() + DELIVERY_WAIT;
    while Instant::now() < deadline && ids.iter().any(|(id, _)| sink.arrived(id).is_none()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies: Vec<f64> = ids
        .iter()
        .filter_map(|(id, at)| {
            sink.arrived(id).map(|arrived| arrived.saturating_duration_since(*at).as_secs_f64() * 1e3)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        if latencies.is_empty() { 0.0 } else { latencies[((latencies.len() - 1) as f64 * q).round() as usize] }
    };
    Notifications {
        acknowledged: ids.len() as u64,
        delivered: latencies.len() as u64,
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        deliveries_per_s: delivered_during as f64 / window.as_secs_f64().max(1e-9),
    }
}

/// One load run against `front`; the load blocks its thread until it ends.
async fn run_load(plan: &Plan, load: &LoadShape, front: SocketAddr) -> Result<LoadReport, WorkbenchError> {
    let mut config = load.config(front, plan.load_threads, &[]);
    // The servers are other processes: their CPU is read from /proc.
    config.server_in_process = false;
    tokio::task::spawn_blocking(move || crate::load::run(&config, |_, _| {}))
        .await?
        .map_err(|cause| WorkbenchError::Load { cell: CellId::OpenLoop, cause })
}

/// A subscription to every airport's flights, through the gateway.
async fn subscribe(front: SocketAddr, hook: SocketAddr, airports: &[String]) -> Result<(), WorkbenchError> {
    let body = serde_json::json!({ "url": format!("http://{hook}/webhook"), "airports": airports }).to_string();
    let (status, answer) = request(front, http::Method::POST, "/subscriptions", Some(body)).await?;
    if status != 201 {
        return Err(fail(format!("subscribing the webhook through the gateway answered {status}: {answer}")));
    }
    Ok(())
}

/// One request on a new HTTP/1.1 connection: the status and the body as text.
async fn request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    body: Option<String>,
) -> Result<(u16, String), WorkbenchError> {
    use http_body_util::{BodyExt, Full};
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, addr.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| fail(format!("{addr}{path}: no answer within 10 s")))?
        .map_err(|e| fail(format!("{addr}{path}: {e}")))
}

/// How the part starts `flightbench serve` processes.
struct Launch {
    dir: PathBuf,
    url: String,
    exchange: String,
}

impl Launch {
    /// Starts `shape`'s processes and waits until its front is ready; with `hook`, the
    /// split's webhook (its address and the airports it subscribes to) is subscribed
    /// through the front.
    async fn start(&self, shape: Shape, hook: Option<(SocketAddr, &[String])>) -> Result<Processes, WorkbenchError> {
        let mut processes = Processes(Vec::new());
        let gateway = |services: &[(&str, SocketAddr)]| {
            let services: serde_json::Map<String, serde_json::Value> = services
                .iter()
                .map(|(name, addr)| {
                    ((*name).to_owned(), serde_json::json!({ "destinations": [format!("http://{addr}")] }))
                })
                .collect();
            serde_json::json!({ "services": services }).to_string()
        };
        match shape {
            Shape::Monolith => processes.0.push(self.serve("all", &[]).await?),
            Shape::MonolithBehindGateway => {
                let all = self.serve("all", &[]).await?;
                let config = gateway(&[("query", all.api), ("command", all.api), ("notify", all.api)]);
                processes.0.push(self.gateway(&config).await?);
                processes.0.push(all);
            }
            Shape::Split => {
                // Its own subscriptions each time: none left from an earlier start.
                let db = self.dir.join(format!("notify-{}.sqlite", crate::machine::unix_micros()));
                let queue = format!("{}.notify", self.exchange);
                let notify_args = ["--notify-db", &db.display().to_string(), "--notify-queue", &queue];
                let notify = self.serve("notify", &notify_args).await?;
                let query = self.serve("query", &[]).await?;
                let command = self.serve("command", &[]).await?;
                let config = gateway(&[("query", query.api), ("command", command.api), ("notify", notify.api)]);
                processes.0.push(self.gateway(&config).await?);
                processes.0.extend([query, command, notify]);
            }
        }
        wait_ready(processes.front()).await?;
        if let Some((hook, airports)) = hook {
            subscribe(processes.front(), hook, airports).await?;
        }
        Ok(processes)
    }

    async fn serve(&self, role: &str, extra: &[&str]) -> Result<Process, WorkbenchError> {
        let mut args: Vec<String> =
            ["serve", "--role", role, "--addr", "127.0.0.1:0", "--no-admin", "--bus-url", &self.url]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
        args.extend([
            "--bus-exchange".to_owned(),
            self.exchange.clone(),
            "--dir".to_owned(),
            self.dir.display().to_string(),
        ]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Process::spawn(role, &args)
    }

    async fn gateway(&self, config: &str) -> Result<Process, WorkbenchError> {
        let path = self.dir.join(format!("gateway-{}.json", crate::machine::unix_micros()));
        std::fs::write(&path, config).map_err(fail)?;
        let args = ["serve", "--role", "gateway", "--addr", "127.0.0.1:0", "--no-admin", "--gateway-config"];
        let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        args.push(path.display().to_string());
        Process::spawn("gateway", &args)
    }
}

/// Waits for `/readyz` to answer 200 (the gateway's once every service is healthy).
async fn wait_ready(front: SocketAddr) -> Result<(), WorkbenchError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match request(front, http::Method::GET, "/readyz", None).await {
            Ok((200, _)) => return Ok(()),
            outcome if Instant::now() > deadline => {
                return Err(fail(format!("{front} was not ready within 30 s: {outcome:?}")));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A `flightbench serve` child; killed when dropped.
struct Process {
    name: String,
    child: std::process::Child,
    api: SocketAddr,
}

impl Process {
    /// Starts it and reads its address from the first line it prints.
    fn spawn(name: &str, args: &[String]) -> Result<Self, WorkbenchError> {
        let exe = std::env::current_exe().map_err(|e| fail(format!("cannot find this program: {e}")))?;
        let mut child = std::process::Command::new(&exe)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot start {} {}: {e}", exe.display(), args.join(" "))))?;
        let stdout = child.stdout.take().ok_or_else(|| fail("no stdout"))?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(fail(format!("`flightbench {}` exited ({status}) before listening", args.join(" "))));
            }
        };
        // Keep reading, so the child never writes to a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let api = first
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ' ', ',']).next())
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| fail(format!("no address in {first:?}")))?;
        Ok(Self { name: name.to_owned(), child, api })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM first: a graceful stop lets the relay and consumers close cleanly.
        crate::machine::stop_child(&mut self.child, Duration::from_secs(5));
    }
}

/// One topology's processes, the front one first.
struct Processes(Vec<Process>);

impl Processes {
    fn front(&self) -> SocketAddr {
        self.0[0].api
    }

    fn names(&self) -> Vec<String> {
        self.0.iter().map(|p| p.name.clone()).collect()
    }

    /// All of them together; `None` when one cannot be read.
    fn cpu(&self) -> Option<CpuTime> {
        self.0.iter().try_fold(CpuTime::ZERO, |sum, p| Some(sum.plus(CpuTime::of_pid(p.child.id())?)))
    }

    fn stop(self) {
        drop(self);
    }
}

async fn remove_exchange(url: &str, exchange: &str) {
    if let Ok(connection) = crate::bus::link::connect(url, "flightbench run").await
        && let Ok(channel) = connection.create_channel().await
    {
        let _ = channel.exchange_delete(exchange.into(), Default::default()).await;
        let queue = format!("{exchange}.notify");
        for q in [queue.clone(), format!("{queue}.errors")] {
            let _ = channel.queue_delete(q.as_str().into(), Default::default()).await;
        }
    }
}

//! `flightbench load`: the load generator.
//!
//! Threads, not one runtime: each load thread runs a current-thread tokio runtime with
//! its share of the connections (as wrk runs one event loop per thread), so a request
//! and its response never cross cores inside the generator. Every thread keeps its own
//! [`Recorder`]; they are merged once at the end.
//!
//! Two loop models:
//! - **closed**: every stream sends its next request as soon as the previous answer
//!   arrives ("how fast can it go");
//! - **open** (`--rate`): requests follow a fixed schedule, and latency is measured
//!   from each request's *intended* send time, so a server stall shows in the
//!   percentiles (see `recorder`). The schedule's lag and the achieved rate are
//!   reported, with a warning when the generator could not keep the rate.

pub mod conn;
mod h1;
mod http2;
pub mod recorder;
pub mod report;
mod request;
pub mod workload;

use crate::compression::{Encoding, decompress};
use conn::{Endpoint, Protocol, Sender, connect};
use http::{HeaderName, HeaderValue};
use rand::SeedableRng;
use recorder::{ErrorKind, Recorder};
use report::LoadReport;
use request::RequestTemplate;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use workload::{DatasetShape, Mix, Planned, Planner, RequestKind, Skew};

/// What to request.
#[derive(Debug, Clone)]
pub enum Workload {
    /// The API mix, drawn from a seeded dataset's shape.
    Mix { mix: Mix, shape: DatasetShape, skew: Skew },
    /// One fixed path and query, for any HTTP server.
    Url { path: String },
}

impl Workload {
    pub fn describe(&self) -> String {
        match self {
            Workload::Mix { mix, skew, .. } => format!("mix {mix} ({skew} ids)"),
            Workload::Url { path } => format!("GET {path}"),
        }
    }
}

/// Closed or open loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoopModel {
    Closed,
    /// Requests per second across all connections.
    Open {
        rate: f64,
    },
}

/// A validated load run.
#[derive(Clone)]
pub struct LoadConfig {
    pub endpoint: Endpoint,
    /// The target as the user gave it (for the report).
    pub target: String,
    pub workload: Workload,
    pub loop_model: LoopModel,
    pub connections: usize,
    pub streams_per_connection: usize,
    pub threads: usize,
    pub warmup: Duration,
    /// Measured time; the run also stops after `requests` measured requests.
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub timeout: Duration,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub seed: u64,
}

impl LoadConfig {
    /// Checks what clap cannot: combinations.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if self.streams_per_connection == 0 {
            return Err("--streams-per-connection must be at least 1".into());
        }
        if self.endpoint.protocol == Protocol::H1 && self.streams_per_connection > 1 {
            return Err(
                "HTTP/1.1 has one request in flight per connection; use --protocol h2 for --streams-per-connection above 1, or more --connections".into(),
            );
        }
        if self.duration.is_none() && self.requests.is_none() {
            return Err("give --duration, --requests or both: a run must be bounded".into());
        }
        if let LoopModel::Open { rate } = self.loop_model
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(format!("--rate {rate} must be a positive number of requests per second"));
        }
        if self.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        Ok(())
    }

    fn slots(&self) -> usize {
        self.connections * self.streams_per_connection
    }

    /// The measured window's length, if bounded by time (open loop with only
    /// `--requests` derives it from the rate).
    fn measured_for(&self) -> Option<Duration> {
        match (self.duration, self.requests, self.loop_model) {
            (Some(d), _, _) => Some(d),
            (None, Some(n), LoopModel::Open { rate }) => Some(Duration::from_secs_f64(n as f64 / rate)),
            _ => None,
        }
    }
}

/// Shared between the load threads and the progress display.
struct Control {
    /// Measurement starts here (after the warm-up).
    start: Instant,
    /// No request is sent after this (when bounded by time).
    end: Option<Instant>,
    /// Measured requests issued so far (for `--requests`).
    issued: AtomicU64,
    /// Measured responses so far (progress display only).
    completed: AtomicU64,
    stop: AtomicBool,
}

impl Control {
    /// Claims a measured request if the `--requests` budget allows.
    fn claim(&self, limit: Option<u64>, measured: bool) -> bool {
        match limit {
            Some(limit) if measured => self.issued.fetch_add(1, Ordering::Relaxed) < limit,
            _ => true,
        }
    }
}

/// Runs the load test; `progress` is called about four times a second with the
/// measured responses so far and the time since the measurement started (negative
/// during warm-up).
pub fn run(config: &LoadConfig, progress: impl FnMut(u64, f64)) -> Result<LoadReport, String> {
    run_until(config, &AtomicBool::new(false), progress)
}

/// [`run`], also ending (like the end of `--duration`: no new requests, answers in
/// flight counted) once `stop` is set; for a caller whose own work decides how long
/// the load must last.
pub fn run_until(
    config: &LoadConfig,
    stop: &AtomicBool,
    mut progress: impl FnMut(u64, f64),
) -> Result<LoadReport, String> {
    config.validate()?;
    // One connection first: an unreachable or misconfigured target is a clear error,
    // not a run full of connect errors.
    let probe = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    probe.block_on(async {
        tokio::time::timeout(config.timeout, connect(&config.endpoint))
            .await
            .map_err(|_| format!("cannot connect to {}: no answer within {:?}", config.target, config.timeout))?
            .map(drop)
            .map_err(|(_, e)| format!("cannot connect to {}: {e}", config.target))
    })?;
    drop(probe);

    let began = Instant::now();
    let start = began + config.warmup;
    let control = Arc::new(Control {
        start,
        end: config.measured_for().map(|d| start + d),
        issued: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let cpu_before = report::CpuTime::of_process();
    let threads: Vec<_> = (0..config.threads.min(config.connections))
        .map(|t| {
            let (config, control) = (config.clone(), control.clone());
            std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || run_thread(t, &config, &control))
                .map_err(|e| format!("cannot start a load thread: {e}"))
        })
        .collect::<Result<_, _>>()?;
    while !threads.iter().all(|t| t.is_finished()) {
        std::thread::sleep(Duration::from_millis(if stop.load(Ordering::Relaxed) { 10 } else { 250 }));
        if stop.load(Ordering::Relaxed) {
            control.stop.store(true, Ordering::Relaxed);
        }
        let now = Instant::now();
        let since = if now >= start { (now - start).as_secs_f64() } else { -(start - now).as_secs_f64() };
        progress(control.completed.load(Ordering::Relaxed), since);
    }
    let mut total = Recorder::default();
    let mut measured_until = start;
    for thread in threads {
        let (recorder, last) = thread.join().map_err(|_| "a load thread panicked".to_owned())??;
        total.merge(recorder);
        measured_until = measured_until.max(last);
    }
    let cpu = report::CpuTime::of_process().zip(cpu_before).map(|(after, before)| after - before);
    let elapsed = measured_until.saturating_duration_since(start);
    Ok(LoadReport::build(config, total, elapsed, cpu))
}

/// One load thread: its connections (`t`, `t + threads`, …), each with its streams.
/// Returns its recorder and when its last measured response arrived.
fn run_thread(t: usize, config: &LoadConfig, control: &Arc<Control>) -> Result<(Recorder, Instant), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let threads = config.threads.min(config.connections);
    let mine: Vec<usize> = (t..config.connections).step_by(threads).collect();
    let slots = mine.len() * config.streams_per_connection;
    let planner = match &config.workload {
        Workload::Mix { mix, shape, skew } => Some(Planner::new(mix.clone(), shape.clone(), *skew)?),
        Workload::Url { .. } => None,
    };
    let state = Rc::new(ThreadState {
        recorder: RefCell::new(Recorder::default()),
        planner: RefCell::new(planner),
        rng: RefCell::new(rand_chacha::ChaCha8Rng::seed_from_u64(config.seed ^ (t as u64).wrapping_mul(0x9E37))),
        next_slot: Cell::new(0),
        // This thread's share of the rate, in proportion to its streams.
        interval: match config.loop_model {
            LoopModel::Closed => None,
            LoopModel::Open { rate } => Some(Duration::from_secs_f64(config.slots() as f64 / (rate * slots as f64))),
        },
        last: Cell::new(control.start),
        template: RequestTemplate::new(config)?,
    });
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let mut workers = Vec::new();
        for _ in &mine {
            // A connection's streams share it; a broken one is re-opened by whichever
            // stream finds it closed.
            let Some(first) = open(config, control, &state).await else { break };
            let mut senders: Vec<Sender> =
                (1..config.streams_per_connection).filter_map(|_| first.another_stream()).collect();
            senders.push(first);
            for sender in senders {
                let (config, control, state) = (config.clone(), control.clone(), state.clone());
                workers.push(tokio::task::spawn_local(async move { worker(&config, &control, &state, sender).await }));
            }
        }
        // Hard stop: the schedule's end plus one timeout for answers in flight.
        let hard_stop = control.end.map(|end| end + config.timeout);
        let all = futures_util::future::join_all(workers);
        match hard_stop {
            Some(at) => {
                let _ = tokio::time::timeout_at(tokio::time::Instant::from_std(at), all).await;
            }
            None => {
                all.await;
            }
        }
    });
    drop(local);
    let state = Rc::try_unwrap(state).map_err(|_| "load tasks outlived their thread".to_owned())?;
    Ok((state.recorder.into_inner(), state.last.get()))
}

struct ThreadState {
    recorder: RefCell<Recorder>,
    planner: RefCell<Option<Planner>>,
    rng: RefCell<rand_chacha::ChaCha8Rng>,
    /// Open loop: the next schedule slot of this thread.
    next_slot: Cell<u64>,
    interval: Option<Duration>,
    last: Cell<Instant>,
    template: RequestTemplate,
}

/// Opens a connection, counting failures, until it works or the run is over.
async fn open(config: &LoadConfig, control: &Control, state: &ThreadState) -> Option<Sender> {
    loop {
        if control.stop.load(Ordering::Relaxed) || control.end.is_some_and(|end| Instant::now() >= end) {
            return None;
        }
        match tokio::time::timeout(config.timeout, connect(&config.endpoint)).await {
            Ok(Ok((sender, driver))) => {
                // An HTTP/2 connection's I/O runs beside its streams' workers.
                if let Some(driver) = driver {
                    tokio::task::spawn_local(driver);
                }
                return Some(sender);
            }
            Ok(Err((kind, _))) => state.recorder.borrow_mut().error(kind),
            Err(_) => state.recorder.borrow_mut().error(ErrorKind::Connect),
        }
        // Do not spin on a refusing server.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn worker(config: &LoadConfig, control: &Control, state: &ThreadState, sender: Sender) {
    let mut sender = Some(sender);
    // Requests that differ per request (the API mix) are encoded here, reused.
    let mut scratch = Vec::new();
    let deadline = tokio::time::sleep(config.timeout);
    tokio::pin!(deadline);
    loop {
        // When this request is due: now (closed loop) or its schedule slot (open).
        let intended = match state.interval {
            None => Instant::now(),
            Some(interval) => {
                let slot = state.next_slot.get();
                state.next_slot.set(slot + 1);
                control.start - config.warmup + interval.mul_f64(slot as f64)
            }
        };
        if control.stop.load(Ordering::Relaxed) || control.end.is_some_and(|end| intended >= end) {
            return;
        }
        let measured = intended >= control.start;
        if !control.claim(config.requests, measured) {
            control.stop.store(true, Ordering::Relaxed);
            return;
        }
        if intended > Instant::now() {
            tokio::time::sleep_until(tokio::time::Instant::from_std(intended)).await;
            // An idle HTTP/1.1 connection is not polled, so a close by the server is
            // noticed only now; a closed one is replaced below rather than sent into.
            if let Some(connection) = sender.as_mut() {
                connection.check_idle();
            }
        }
        match sender.take() {
            Some(s) if !s.is_closed() => sender = Some(s),
            _ => match open(config, control, state).await {
                Some(s) => sender = Some(s),
                None => return,
            },
        }
        let planned = next_request(config, state);
        let sent = Instant::now();
        // Writes keep their body: a 409 names the current version.
        let keep_body = planned.write.is_some();
        // One timer per worker, moved forward per request: cheaper than a new
        // `timeout` (a timer wheel insert and remove) on every request.
        deadline.as_mut().reset(tokio::time::Instant::from_std(sent + config.timeout));
        let send = sender.as_mut().expect("set above").send(&state.template, &planned, &mut scratch, keep_body);
        let outcome = tokio::select! {
            biased;
            outcome = send => outcome,
            () = &mut deadline => Err(ErrorKind::Timeout),
        };
        let done = Instant::now();
        if let Err(ErrorKind::Timeout | ErrorKind::Reset | ErrorKind::Protocol) = &outcome
            && sender.as_ref().is_some_and(|s| matches!(s, Sender::H1(_)) || s.is_closed())
        {
            // An HTTP/1.1 connection with an unanswered request cannot be reused.
            sender = None;
        }
        if !measured {
            continue;
        }
        state.last.set(done);
        let answer = match outcome {
            Err(kind) => {
                state.recorder.borrow_mut().error(kind);
                continue;
            }
            Ok(answer) => answer,
        };
        // Decoding may await; no recorder borrow is held across it.
        let decoded = decoded_len(&answer).await;
        {
            let mut recorder = state.recorder.borrow_mut();
            recorder.response(planned.kind, answer.status, done - intended, intended - control.start);
            if state.interval.is_some() {
                recorder.uncorrected(planned.kind, done - sent);
                recorder.lag(sent.saturating_duration_since(intended));
            }
            recorder.wire_bytes += answer.body_len;
            recorder.decoded_bytes += decoded;
            if planned.write.is_some() {
                match answer.status {
                    409 => recorder.conflicts += 1,
                    422 => recorder.rejected += 1,
                    _ => {}
                }
            }
        }
        if let Some((flight, _, _)) = &planned.write {
            learn_version(state, *flight, &answer);
        }
        control.completed.fetch_add(1, Ordering::Relaxed);
    }
}

fn next_request(config: &LoadConfig, state: &ThreadState) -> Planned {
    match &config.workload {
        // The template holds the parsed URI; the path is not needed per request.
        Workload::Url { .. } => {
            Planned { kind: RequestKind::Url, method: http::Method::GET, path: String::new(), write: None }
        }
        Workload::Mix { .. } => {
            let mut planner = state.planner.borrow_mut();
            let mut rng = state.rng.borrow_mut();
            planner.as_mut().expect("mix workloads have a planner").next(&mut *rng)
        }
    }
}

async fn decoded_len(answer: &conn::Answer) -> u64 {
    let encoding = match answer.content_encoding.as_ref().map(HeaderValue::as_bytes) {
        None | Some(b"identity") => return answer.body_len,
        Some(b"br") => Encoding::Br,
        Some(b"zstd") => Encoding::Zstd,
        Some(b"gzip") => Encoding::Gzip,
        Some(b"deflate") => Encoding::Deflate,
        Some(_) => return answer.body_len,
    };
    let body = answer.body.as_deref().unwrap_or_default();
    decompress(encoding, body).await.map_or(0, |decoded| decoded.len() as u64)
}

/// A 201 carries the new version in its `ETag`; a 409 in its problem body.
fn learn_version(state: &ThreadState, flight: crate::domain::FlightId, answer: &conn::Answer) {
    let version = match answer.status {
        201 => answer.etag.as_ref().and_then(|e| e.to_str().ok()).and_then(|e| e.trim_matches('"').parse::<i64>().ok()),
        409 => serde_json::from_slice::<serde_json::Value>(answer.body.as_deref().unwrap_or_default())
            .ok()
            .and_then(|v| v["current_version"].as_i64()),
        _ => None,
    };
    if let (Some(version), Some(planner)) = (version, state.planner.borrow_mut().as_mut()) {
        planner.learn(flight, version);
    }
}

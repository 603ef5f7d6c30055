//! Running a load: the first connection as a probe, one thread per share of the
//! connections, the measured window, and the per-thread recorders merged once at the
//! end.

use super::conn::{Sender, connect};
use super::pacer::Pacer;
use super::recorder::{ErrorKind, Recorder};
use super::report::{CpuTime, LoadReport};
use super::request::RequestTemplate;
use super::worker::worker;
use super::workload::Planner;
use super::{LoadConfig, LoadError, LoopModel, Workload};
use rand::SeedableRng;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared between the load threads and the progress display.
pub(super) struct Control {
    /// Measurement starts here (after the warm-up).
    pub start: Instant,
    /// No request is sent after this (when bounded by time).
    pub end: Option<Instant>,
    /// Measured requests issued so far (for `--requests`).
    issued: AtomicU64,
    /// Measured responses so far (progress display only).
    pub completed: AtomicU64,
    pub stop: AtomicBool,
}

impl Control {
    /// Claims a measured request if the `--requests` budget allows.
    pub fn claim(&self, limit: Option<u64>, measured: bool) -> bool {
        match limit {
            Some(limit) if measured => self.issued.fetch_add(1, Ordering::Relaxed) < limit,
            _ => true,
        }
    }

    /// No new request: stopped, or past the end of the measured window.
    pub fn over(&self, at: Instant) -> bool {
        self.stop.load(Ordering::Relaxed) || self.end.is_some_and(|end| at >= end)
    }
}

/// Runs the load test; `progress` is called about four times a second with the
/// measured responses so far and the time since the measurement started (negative
/// during warm-up).
pub fn run(config: &LoadConfig, progress: impl FnMut(u64, f64)) -> Result<LoadReport, LoadError> {
    run_until(config, &AtomicBool::new(false), progress)
}

/// [`run`], also ending (like the end of `--duration`: no new requests, answers in
/// flight counted) once `stop` is set; for a caller whose own work decides how long
/// the load must last.
pub fn run_until(
    config: &LoadConfig,
    stop: &AtomicBool,
    mut progress: impl FnMut(u64, f64),
) -> Result<LoadReport, LoadError> {
    config.validate()?;
    probe(config)?;
    let began = Instant::now();
    let start = began + config.warmup;
    let control = Arc::new(Control {
        start,
        end: config.measured_for().and_then(|d| start.checked_add(d)),
        issued: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let threads: Vec<_> = (0..config.threads.min(config.connections))
        .map(|t| {
            let (config, control) = (config.clone(), control.clone());
            std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || run_thread(t, &config, &control))
                .map_err(|e| LoadError::Internal(format!("cannot start a load thread: {e}")))
        })
        .collect::<Result<_, _>>()?;
    // The process's CPU over the measured window, taken by this (sleeping) thread at
    // its start and once every load thread is done.
    let mut window_before = None;
    while !threads.iter().all(|t| t.is_finished()) {
        let now = Instant::now();
        let nap = if stop.load(Ordering::Relaxed) { Duration::from_millis(10) } else { Duration::from_millis(250) };
        // Wake at the measurement's start to read the CPU clock there.
        let nap = if window_before.is_none() && start > now { nap.min(start - now) } else { nap };
        std::thread::sleep(nap);
        if window_before.is_none() && Instant::now() >= start {
            window_before = CpuTime::of_process();
        }
        if stop.load(Ordering::Relaxed) {
            control.stop.store(true, Ordering::Relaxed);
        }
        let now = Instant::now();
        let since = if now >= start { (now - start).as_secs_f64() } else { -(start - now).as_secs_f64() };
        progress(control.completed.load(Ordering::Relaxed), since);
    }
    let mut total = Recorder::default();
    let mut measured_until = start;
    let (mut generator, mut generator_window) = (Some(CpuTime::ZERO), CpuTime::ZERO);
    for thread in threads {
        let done = thread.join().map_err(|_| LoadError::Internal("a load thread panicked".into()))??;
        total.merge(done.recorder);
        measured_until = measured_until.max(done.last);
        generator = generator.zip(done.cpu).map(|(a, b)| a + b);
        generator_window = generator_window + done.window_cpu;
    }
    // What the rest of the process spent while the load was measured is the server's
    // work, when the server runs in this process.
    let window = CpuTime::of_process().zip(window_before).map(|(after, before)| after - before);
    let server = window.filter(|_| config.server_in_process).map(|w| w - generator_window);
    let elapsed = measured_until.saturating_duration_since(start);
    Ok(LoadReport::build(config, total, elapsed, generator, server))
}

/// One connection first: an unreachable or misconfigured target is a clear error, not
/// a run full of connect errors.
fn probe(config: &LoadConfig) -> Result<(), LoadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::Internal(format!("cannot start a runtime: {e}")))?;
    let unreachable = |reason: String| LoadError::Unreachable { target: config.target.clone(), reason };
    runtime.block_on(async {
        match tokio::time::timeout(config.timeout, connect(&config.endpoint)).await {
            Err(_) => Err(unreachable(format!("no answer within {:?}", config.timeout))),
            Ok(Err((_, reason))) => Err(unreachable(reason)),
            Ok(Ok(_)) => Ok(()),
        }
    })
}

/// What one load thread hands back.
struct ThreadDone {
    recorder: Recorder,
    /// When its last measured response arrived.
    last: Instant,
    /// Its own CPU time: all of it, and from its first measured request to its end.
    cpu: Option<CpuTime>,
    window_cpu: CpuTime,
}

/// One load thread: its connections (`t`, `t + threads`, …), each with its streams.
fn run_thread(t: usize, config: &LoadConfig, control: &Arc<Control>) -> Result<ThreadDone, LoadError> {
    if let Some(&core) = config.cores.get(t % config.cores.len().max(1))
        && !crate::machine::pin_current_thread(core)
    {
        return Err(LoadError::Internal(format!("cannot pin load thread {t} to core {core}")));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::Internal(format!("cannot start a load thread's runtime: {e}")))?;
    let threads = config.threads.min(config.connections);
    let mine: Vec<usize> = (t..config.connections).step_by(threads).collect();
    let slots = mine.len() * config.streams_per_connection;
    let planner = match &config.workload {
        Workload::Mix { mix, shape, skew } => Some(Planner::new(mix.clone(), shape.clone(), *skew)?),
        Workload::Url { .. } => None,
    };
    let local = tokio::task::LocalSet::new();
    // The pacer's timer belongs to this thread's reactor: made inside the runtime.
    let pacer = match config.loop_model {
        LoopModel::Closed => None,
        LoopModel::Open { tick, .. } => Some(
            local
                .block_on(&runtime, async { Pacer::new(tick) })
                .map_err(|e| LoadError::Internal(format!("cannot make the open loop's timer: {e}")))?,
        ),
    };
    let state = Rc::new(ThreadState {
        recorder: RefCell::new(Recorder::default()),
        planner: RefCell::new(planner),
        rng: RefCell::new(rand_chacha::ChaCha8Rng::seed_from_u64(config.seed ^ (t as u64).wrapping_mul(0x9E37))),
        next_slot: Cell::new(0),
        // This thread's share of the rate, in proportion to its streams.
        interval: match config.loop_model {
            LoopModel::Closed => None,
            LoopModel::Open { rate, .. } => {
                Some(Duration::from_secs_f64(config.slots() as f64 / (rate * slots as f64)))
            }
        },
        pacer,
        last: Cell::new(control.start),
        template: RequestTemplate::new(config)?,
        window_start_cpu: Cell::new(None),
    });
    local.block_on(&runtime, async {
        if let Some(pacer) = &state.pacer {
            tokio::task::spawn_local(pacer.clone().drive());
        }
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
        let hard_stop = control.end.and_then(|end| end.checked_add(config.timeout));
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
    let cpu = CpuTime::of_thread();
    let window_cpu = match (cpu, state.window_start_cpu.get()) {
        (Some(end), Some(start)) => end - start,
        _ => CpuTime::ZERO,
    };
    let state = Rc::try_unwrap(state).map_err(|_| LoadError::Internal("load tasks outlived their thread".into()))?;
    Ok(ThreadDone { recorder: state.recorder.into_inner(), last: state.last.get(), cpu, window_cpu })
}

/// What a load thread's workers share (one thread, so `Cell`s and `RefCell`s).
pub(super) struct ThreadState {
    pub recorder: RefCell<Recorder>,
    pub planner: RefCell<Option<Planner>>,
    pub rng: RefCell<rand_chacha::ChaCha8Rng>,
    /// Open loop: the next schedule slot of this thread.
    pub next_slot: Cell<u64>,
    pub interval: Option<Duration>,
    /// Open loop: keeps the schedule (see `pacer`).
    pub pacer: Option<Rc<Pacer>>,
    pub last: Cell<Instant>,
    pub template: RequestTemplate,
    /// The thread's CPU clock when its first measured request was sent.
    pub window_start_cpu: Cell<Option<CpuTime>>,
}

impl ThreadState {
    /// Notes the thread's CPU clock at its first measured request.
    pub fn measuring(&self) {
        if self.window_start_cpu.get().is_none() {
            self.window_start_cpu.set(CpuTime::of_thread());
        }
    }
}

/// Opens a connection, counting failures, until it works or the run is over.
pub(super) async fn open(config: &LoadConfig, control: &Control, state: &ThreadState) -> Option<Sender> {
    loop {
        if control.over(Instant::now()) {
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

//! Running the reshard part: the copy, the server following it, the windows of load,
//! `flightbench reshard` as its own process, and the check of every acknowledged write.

use super::{Phase, QUIET_WINDOWS, RESHARD_FROM, RESHARD_NICE, RESHARD_TO, Resharding, Window};
use crate::harness::{LoadShape, LocalServer};
use crate::http::follow::{OpenStore, follow_layout};
use crate::load::workload::DatasetShape;
use crate::reshard::ReshardReport;
use crate::store::{Store, StoreConfig};
use crate::workbench::cell::CellId;
use crate::workbench::measure::load_shape;
use crate::workbench::plan::{CellPlan, MIXED_LOAD_SHARE, Plan};
use crate::workbench::served::Served;
use crate::workbench::writer::{Acknowledged, write_until};
use crate::workbench::{Progress, WorkbenchError, ensure_dataset};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Seeds the part's pristine dataset once, copies it, reshards the copy under load
/// and removes it.
pub(in crate::workbench) async fn measure(
    plan: &Plan,
    progress: &dyn Fn(Progress<'_>),
) -> Result<Resharding, WorkbenchError> {
    let (source, copy) = plan.reshard_dirs();
    ensure_dataset(&source, &plan.spec(), RESHARD_FROM, progress).await?;
    progress(Progress::Resharding { stage: "copying the dataset" });
    let (from, to) = (source.clone(), copy.clone());
    tokio::task::spawn_blocking(move || copy_dataset(&from, &to)).await??;
    let measured = measure_copy(plan, &copy, progress).await;
    let removed = std::fs::remove_dir_all(&copy);
    let figures = measured?;
    removed.map_err(|cause| WorkbenchError::CopyDataset { path: copy, cause })?;
    Ok(figures)
}

/// Copies the dataset's files into a new `to` (the source is never served, so it has
/// no other layouts to leave out).
pub(in crate::workbench) fn copy_dataset(from: &Path, to: &Path) -> Result<(), WorkbenchError> {
    let fail = |path: &Path| {
        let path = path.to_owned();
        move |cause| WorkbenchError::CopyDataset { path, cause }
    };
    if to.exists() {
        std::fs::remove_dir_all(to).map_err(fail(to))?;
    }
    std::fs::create_dir_all(to).map_err(fail(to))?;
    for entry in std::fs::read_dir(from).map_err(fail(from))? {
        let entry = entry.map_err(fail(from))?;
        if entry.file_type().map_err(fail(from))?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).map_err(fail(&entry.path()))?;
        }
    }
    Ok(())
}

/// Serves `dir` with the mixed part's settings, following its layout as `serve` does,
/// for as long as the load and the reshard take.
async fn measure_copy(plan: &Plan, dir: &Path, progress: &dyn Fn(Progress<'_>)) -> Result<Resharding, WorkbenchError> {
    let store = Arc::new(Store::open(dir, &StoreConfig::default()).await?);
    let shape = DatasetShape::from_manifest(store.manifest());
    let cell = CellPlan::of(CellId::OpenLoop);
    let served = Served::of(&cell)?;
    let server = served.start(plan, store.clone(), CellId::OpenLoop)?;
    let opened = dir.to_owned();
    let open: OpenStore = Box::new(move || {
        let dir = opened.clone();
        Box::pin(async move { Store::open(&dir, &StoreConfig::default()).await })
    });
    let (stop_following, stopped) = tokio::sync::watch::channel(false);
    let following = tokio::spawn(follow_layout(
        server.state.clone(),
        dir.to_owned(),
        None,
        open,
        Arc::new(tokio::sync::Mutex::new(None)),
        stopped,
    ));
    let load = load_shape(plan, &cell, &shape, &served)?;
    let measured = under_load(plan, dir, load, &server, progress).await;
    let _ = stop_following.send(true);
    let _ = following.await;
    let current = server.state.store();
    server.stop().await.map_err(|cause| WorkbenchError::Server { cell: CellId::OpenLoop, cause })?;
    if !Arc::ptr_eq(&current, &store) {
        current.close().await;
    }
    store.close().await;
    measured
}

async fn under_load(
    plan: &Plan,
    dir: &Path,
    mut load: LoadShape,
    server: &LocalServer,
    progress: &dyn Fn(Progress<'_>),
) -> Result<Resharding, WorkbenchError> {
    progress(Progress::Resharding { stage: "measuring the mix's capacity" });
    let capacity = run_load(plan, &load, server).await?.achieved_rate;
    let offered_rate = (capacity * MIXED_LOAD_SHARE).round().max(1.0);
    load.rate = Some(offered_rate);
    // Windows follow each other closely: the connections are opened by the probe
    // before each one starts its clock.
    load.warmup = Duration::ZERO;
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let writer = tokio::spawn(write_until(server.addr, server.state.store(), stop.0.clone()));
    let started = Instant::now();
    let mut windows: Vec<Window> = Vec::new();
    for _ in 0..QUIET_WINDOWS {
        let window = measure_window(plan, &load, server, Phase::Before, started, windows.len(), progress).await?;
        windows.push(window);
    }
    let mut reshard = ReshardProcess::start(dir)?;
    while reshard.running()? {
        let window = measure_window(plan, &load, server, Phase::During, started, windows.len(), progress).await?;
        windows.push(window);
    }
    let report = reshard.finish()?;
    for _ in 0..QUIET_WINDOWS {
        let window = measure_window(plan, &load, server, Phase::After, started, windows.len(), progress).await?;
        windows.push(window);
    }
    stop.0.store(true, Ordering::Relaxed);
    let acknowledged: Acknowledged = writer.await??;
    let now = server.state.store();
    if now.manifest().shards.get() != RESHARD_TO {
        return Err(WorkbenchError::Reshard(format!(
            "the reshard moved the manifest to {RESHARD_TO} shards, but the server still serves {}",
            now.manifest().shards.get()
        )));
    }
    let writes_found = acknowledged.found_in(&now).await?;
    Ok(Resharding {
        flights: report.flights,
        capacity,
        offered_rate,
        window_s: plan.measure.as_secs_f64(),
        nice: RESHARD_NICE,
        windows,
        reshard: report,
        acknowledged_writes: acknowledged.writes.len() as u64,
        writes_found,
        writes_failed: acknowledged.failed,
    })
}

/// One window of the open-loop load, the `before`-th of the run.
async fn measure_window(
    plan: &Plan,
    load: &LoadShape,
    server: &LocalServer,
    phase: Phase,
    started: Instant,
    before: usize,
    progress: &dyn Fn(Progress<'_>),
) -> Result<Window, WorkbenchError> {
    let stage = format!("{} the reshard to {RESHARD_TO} shards: window {}", phase.as_str(), before + 1);
    progress(Progress::Resharding { stage: &stage });
    let start_s = started.elapsed().as_secs_f64();
    let report = run_load(plan, load, server).await?;
    Ok(Window {
        phase,
        start_s,
        requests_per_s: report.achieved_rate,
        p99_ms: report.latency.p99_ms,
        errors: report.errors.values().sum(),
        unexpected_statuses: report.unexpected_statuses,
    })
}

/// One load run of `load` on the server; the load blocks its thread until it ends.
async fn run_load(
    plan: &Plan,
    load: &LoadShape,
    server: &LocalServer,
) -> Result<crate::load::report::LoadReport, WorkbenchError> {
    let config = load.config(server.addr, plan.load_threads, &plan.placement.load_cores);
    tokio::task::spawn_blocking(move || crate::load::run(&config, |_, _| {}))
        .await?
        .map_err(|cause| WorkbenchError::Load { cell: CellId::OpenLoop, cause })
}

/// Stops the checking writer however the part ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `flightbench reshard` as its own process, the way a user runs it beside `serve`;
/// killed if the part ends early.
struct ReshardProcess {
    child: Option<std::process::Child>,
}

impl ReshardProcess {
    fn start(dir: &Path) -> Result<Self, WorkbenchError> {
        let exe: PathBuf = std::env::current_exe()
            .map_err(|e| WorkbenchError::Reshard(format!("cannot find this program to run its reshard: {e}")))?;
        let child = std::process::Command::new(&exe)
            .arg("reshard")
            .arg("--dir")
            .arg(dir)
            .args(["--to", &RESHARD_TO.to_string(), "--nice", &RESHARD_NICE.to_string(), "--quiet", "--json"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| WorkbenchError::Reshard(format!("cannot start {} reshard: {e}", exe.display())))?;
        Ok(Self { child: Some(child) })
    }

    fn running(&mut self) -> Result<bool, WorkbenchError> {
        let child = self.child.as_mut().ok_or_else(|| WorkbenchError::Reshard("no reshard process".into()))?;
        let exited = child.try_wait().map_err(|e| WorkbenchError::Reshard(format!("waiting for the reshard: {e}")))?;
        Ok(exited.is_none())
    }

    /// Its report, once it has ended.
    fn finish(mut self) -> Result<ReshardReport, WorkbenchError> {
        let child = self.child.take().ok_or_else(|| WorkbenchError::Reshard("no reshard process".into()))?;
        let output =
            child.wait_with_output().map_err(|e| WorkbenchError::Reshard(format!("waiting for the reshard: {e}")))?;
        if !output.status.success() {
            return Err(WorkbenchError::Reshard(format!(
                "`flightbench reshard` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        serde_json::from_slice(&output.stdout).map_err(|e| {
            WorkbenchError::Reshard(format!(
                "`flightbench reshard --json` printed no report ({e}): {}",
                String::from_utf8_lossy(&output.stdout).trim()
            ))
        })
    }
}

impl Drop for ReshardProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

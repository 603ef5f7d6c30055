//! A criterion profiler that writes a flamegraph per benchmark.
//!
//! pprof's own `criterion` feature targets criterion 0.5, so this is the small adapter
//! around `flightbench::profile::start_sampling`. Criterion calls it only under
//! `--profile-time N`, so ordinary runs are not sampled:
//!
//!     cargo bench --bench queries -- --profile-time 10 sqlite/point_read
//!
//! writes `target/criterion/<group>/<arm>/profile/flamegraph.{svg,folded}`;
//! `scripts/bench-flamegraphs.sh` copies them into `profiles/` with readable names.

use criterion::profiler::Profiler;
use std::path::Path;

pub struct FlamegraphProfiler {
    frequency: i32,
    active: Option<pprof::ProfilerGuard<'static>>,
}

impl FlamegraphProfiler {
    pub fn new(frequency: i32) -> Self {
        Self { frequency, active: None }
    }
}

impl Profiler for FlamegraphProfiler {
    fn start_profiling(&mut self, _benchmark_id: &str, _dir: &Path) {
        let guard = flightbench::profile::start_sampling(self.frequency).expect("start pprof sampling");
        self.active = Some(guard);
    }

    fn stop_profiling(&mut self, benchmark_id: &str, dir: &Path) {
        let Some(guard) = self.active.take() else { return };
        let report = guard.report().build().expect("build pprof report");
        flightbench::profile::write_profile(&report, dir, "flamegraph", benchmark_id).expect("write flamegraph");
    }
}

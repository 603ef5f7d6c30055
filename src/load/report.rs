//! A load run's results: the JSON document (`--json`, schema [`LOAD_SCHEMA_VERSION`],
//! described field by field in `src/load/report.schema.json`), the human summary, and
//! the SVG chart.

use super::recorder::{ErrorKind, Percentiles, Recorder};
use super::workload::RequestKind;
use super::{LoadConfig, LoopModel};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// Bumped whenever a field changes meaning or disappears.
/// 2: `setup.pacing_tick_ms`.
pub const LOAD_SCHEMA_VERSION: u32 = 2;

/// An open-loop run warns when it achieved less than this share of its target rate.
pub const RATE_TOLERANCE: f64 = 0.98;

pub use crate::machine::CpuTime;

/// How the run was set up.
#[derive(Debug, Clone, Serialize)]
pub struct RunSetup {
    pub target: String,
    pub protocol: super::conn::Protocol,
    pub tls: bool,
    /// "closed" or "open".
    pub loop_model: &'static str,
    pub target_rate: Option<f64>,
    /// Open loop: the grid slots are sent on, ms (0: exactly on schedule).
    pub pacing_tick_ms: Option<f64>,
    pub connections: usize,
    pub streams_per_connection: usize,
    pub threads: usize,
    pub workload: String,
    pub warmup_s: f64,
    pub duration_s: Option<f64>,
    pub requests_limit: Option<u64>,
    pub timeout_s: f64,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub schema_version: u32,
    pub setup: RunSetup,
    /// Measured time: from the end of the warm-up to the last measured response.
    pub elapsed_s: f64,
    /// Measured responses (any status).
    pub responses: u64,
    pub achieved_rate: f64,
    /// Open loop: `achieved_rate / target_rate >= 0.98`.
    pub rate_kept: Option<bool>,
    /// Every request kind together; from the intended send time in open loop.
    pub latency: Percentiles,
    /// Per request kind.
    pub latency_by_kind: BTreeMap<RequestKind, Percentiles>,
    /// Open loop only: from the actual send time, as an uncorrected tool reports.
    pub uncorrected_latency: Option<Percentiles>,
    /// (percentile, ms) points for charts.
    pub latency_curve: Vec<(f64, f64)>,
    pub uncorrected_curve: Option<Vec<(f64, f64)>>,
    /// Open loop only: how late requests left against their schedule.
    pub scheduler_lag: Option<Percentiles>,
    pub status_counts: BTreeMap<u16, u64>,
    /// Requests that got no response, by cause.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Writes answered 409 (stale version): expected under concurrency.
    pub write_conflicts: u64,
    /// Writes answered 422 (flight already departed or cancelled): expected.
    pub write_rejected: u64,
    /// Responses with a status that is neither 2xx nor an expected write outcome.
    pub unexpected_statuses: u64,
    /// Body bytes as received and after decoding `content-encoding`.
    pub wire_bytes: u64,
    pub decoded_bytes: u64,
    /// Measured responses per second, in one-second buckets from the measurement start.
    pub throughput_per_second: Vec<u64>,
    /// The generator's own CPU time: its load threads', warm-up included.
    pub cpu: Option<CpuTime>,
    /// CPU milliseconds the generator spent per 1,000 responses.
    pub cpu_ms_per_1000: Option<f64>,
    /// When the server runs in this process (`LoadConfig::server_in_process`): its CPU
    /// time over the measured window (the process's, less the load threads').
    pub server_cpu: Option<CpuTime>,
    /// That, in microseconds per response.
    pub server_cpu_us_per_request: Option<f64>,
    /// The build and machine that produced these figures.
    pub build: crate::machine::Build,
    pub machine: crate::machine::Host,
}

impl LoadReport {
    pub fn build(
        config: &LoadConfig,
        recorder: Recorder,
        elapsed: Duration,
        cpu: Option<CpuTime>,
        server_cpu: Option<CpuTime>,
    ) -> Self {
        let mut all = recorder.kinds().next().map(|(_, k)| k.latency.clone());
        let mut all_uncorrected = recorder.kinds().next().map(|(_, k)| k.uncorrected.clone());
        for (_, stats) in recorder.kinds().skip(1) {
            if let (Some(a), Some(u)) = (all.as_mut(), all_uncorrected.as_mut()) {
                // Cannot fail: the histograms share bounds.
                a.add(&stats.latency).expect("same bounds");
                u.add(&stats.uncorrected).expect("same bounds");
            }
        }
        let open = matches!(config.loop_model, LoopModel::Open { .. });
        let responses = recorder.responses();
        let elapsed_s = elapsed.as_secs_f64();
        let achieved_rate = if elapsed_s > 0.0 { responses as f64 / elapsed_s } else { 0.0 };
        let target_rate = match config.loop_model {
            LoopModel::Open { rate, .. } => Some(rate),
            LoopModel::Closed => None,
        };
        let expected = |status: u16| (200..300).contains(&status) || status == 409 || status == 422;
        let statuses = recorder.statuses();
        let unexpected_statuses = statuses.iter().filter(|(s, _)| !expected(**s)).map(|(_, n)| n).sum();
        let cpu_ms_per_1000 = cpu.and_then(|c| c.micros_per(responses));
        let endpoint = &config.endpoint;
        LoadReport {
            schema_version: LOAD_SCHEMA_VERSION,
            setup: RunSetup {
                target: config.target.clone(),
                protocol: endpoint.protocol,
                tls: endpoint.tls.is_some(),
                loop_model: if open { "open" } else { "closed" },
                target_rate,
                pacing_tick_ms: match config.loop_model {
                    LoopModel::Open { tick, .. } => Some(tick.as_secs_f64() * 1e3),
                    LoopModel::Closed => None,
                },
                connections: config.connections,
                streams_per_connection: config.streams_per_connection,
                threads: config.threads.min(config.connections),
                workload: config.workload.describe(),
                warmup_s: config.warmup.as_secs_f64(),
                duration_s: config.duration.map(|d| d.as_secs_f64()),
                requests_limit: config.requests,
                timeout_s: config.timeout.as_secs_f64(),
                headers: config
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("<binary>").to_owned()))
                    .collect(),
            },
            elapsed_s,
            responses,
            achieved_rate,
            rate_kept: target_rate.map(|rate| achieved_rate >= rate * RATE_TOLERANCE),
            latency: all.as_ref().map(Percentiles::of).unwrap_or(Percentiles::EMPTY),
            latency_by_kind: recorder.kinds().map(|(k, s)| (k, Percentiles::of(&s.latency))).collect(),
            uncorrected_latency: all_uncorrected.as_ref().filter(|_| open).map(Percentiles::of),
            latency_curve: all.as_ref().map(Percentiles::curve).unwrap_or_default(),
            uncorrected_curve: all_uncorrected.as_ref().filter(|_| open).map(Percentiles::curve),
            scheduler_lag: open.then(|| Percentiles::of(&recorder.lag)),
            status_counts: statuses,
            errors: recorder.errors.clone(),
            write_conflicts: recorder.conflicts,
            write_rejected: recorder.rejected,
            unexpected_statuses,
            wire_bytes: recorder.wire_bytes,
            decoded_bytes: recorder.decoded_bytes,
            throughput_per_second: recorder.per_second.clone(),
            cpu,
            cpu_ms_per_1000,
            server_cpu,
            server_cpu_us_per_request: server_cpu.and_then(|c| c.micros_per(responses)),
            build: crate::machine::build(),
            machine: crate::machine::host(),
        }
    }

    /// The warning an open-loop run must not hide, if it applies.
    pub fn rate_warning(&self) -> Option<String> {
        let rate = self.setup.target_rate?;
        (self.rate_kept == Some(false)).then(|| {
            let lag = self.scheduler_lag.map_or(String::new(), |l| format!("; schedule lag p99 {:.1} ms", l.p99_ms));
            format!(
                "WARNING: achieved {:.0} req/s of the {rate:.0} req/s asked ({:.1}%){lag}. The server or this generator could not keep the rate: every connection was busy or the generator ran out of CPU. Add --connections, or lower --rate.",
                self.achieved_rate,
                100.0 * self.achieved_rate / rate
            )
        })
    }

    /// The summary printed on stdout.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let s = &self.setup;
        let shape = match s.target_rate {
            Some(rate) => format!("open loop at {rate:.0} req/s"),
            None => "closed loop".to_owned(),
        };
        let _ = writeln!(
            out,
            "{} {:?}{} · {shape} · {} connections × {} streams · {} threads · {}",
            s.target,
            s.protocol,
            if s.tls { " (TLS)" } else { "" },
            s.connections,
            s.streams_per_connection,
            s.threads,
            s.workload
        );
        let _ = writeln!(
            out,
            "{} responses in {:.2} s: {:.0} req/s{}",
            self.responses,
            self.elapsed_s,
            self.achieved_rate,
            self.cpu_ms_per_1000.map_or(String::new(), |c| format!(" · generator CPU {c:.1} ms per 1,000 requests"))
        );
        if let Some(server) = self.server_cpu_us_per_request {
            let _ = writeln!(out, "server (in this process) CPU: {server:.1} µs per request");
        }
        let _ = writeln!(
            out,
            "\n{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency ms", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        let row = |out: &mut String, name: &str, p: &Percentiles| {
            let _ = writeln!(
                out,
                "{name:<12} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms
            );
        };
        for (kind, p) in &self.latency_by_kind {
            row(&mut out, kind.as_str(), p);
        }
        if self.latency_by_kind.len() > 1 {
            row(&mut out, "all", &self.latency);
        }
        if let Some(u) = &self.uncorrected_latency {
            row(&mut out, "uncorrected", u);
            if let Some(lag) = &self.scheduler_lag {
                row(&mut out, "send lag", lag);
            }
            let _ = writeln!(
                out,
                "(open loop: latencies count from each request's scheduled send time; \"uncorrected\" counts from the actual send, as closed-loop tools do; \"send lag\" is how late requests left against the schedule: the generator's own lateness, which a fast server's figures include, and up to one --pacing-tick when one is set)"
            );
        }
        let statuses: Vec<String> = self.status_counts.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        let _ =
            writeln!(out, "\nstatus codes: {}", if statuses.is_empty() { "none".into() } else { statuses.join(", ") });
        if self.write_conflicts + self.write_rejected > 0 {
            let _ = writeln!(
                out,
                "writes: {} conflicts (409, stale version; expected), {} rejected (422, flight closed; expected)",
                self.write_conflicts, self.write_rejected
            );
        }
        let errors: Vec<String> = self.errors.iter().map(|(k, n)| format!("{k:?}: {n}").to_lowercase()).collect();
        let _ = writeln!(
            out,
            "errors: {}; unexpected statuses: {}",
            if errors.is_empty() { "none".into() } else { errors.join(", ") },
            self.unexpected_statuses
        );
        if self.wire_bytes > 0 {
            let _ = writeln!(
                out,
                "body bytes: {} on the wire, {} decoded ({:.1}%)",
                self.wire_bytes,
                self.decoded_bytes,
                100.0 * self.wire_bytes as f64 / self.decoded_bytes.max(1) as f64
            );
        }
        if let Some(warning) = self.rate_warning() {
            let _ = writeln!(out, "\n{warning}");
        }
        out
    }
}

impl Percentiles {
    pub const EMPTY: Percentiles =
        Percentiles { count: 0, p50_ms: 0.0, p90_ms: 0.0, p99_ms: 0.0, p999_ms: 0.0, max_ms: 0.0, mean_ms: 0.0 };
}

impl LoadReport {
    /// Latency by percentile (both measurements in open loop) above throughput per
    /// second, as one SVG document.
    pub fn chart(&self) -> String {
        use crate::chart::{Series, XScale, line_chart, stack};
        let mut curves = vec![Series { name: "latency", points: &self.latency_curve }];
        if let Some(uncorrected) = &self.uncorrected_curve {
            curves[0].name = "from intended send";
            curves.push(Series { name: "from actual send", points: uncorrected });
        }
        let throughput: Vec<(f64, f64)> =
            self.throughput_per_second.iter().enumerate().map(|(s, n)| (s as f64, *n as f64)).collect();
        stack(&[
            line_chart(
                &format!("Latency by percentile: {}", self.setup.workload),
                "percentile",
                "milliseconds",
                XScale::Nines,
                &curves,
            ),
            line_chart(
                "Throughput per second",
                "seconds since warm-up ended",
                "responses per second",
                XScale::Linear,
                &[Series { name: "responses/s", points: &throughput }],
            ),
        ])
    }
}

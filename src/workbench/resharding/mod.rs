//! The reshard part: `flightbench reshard` measured the way a user meets it, beside a
//! server that keeps serving. A fresh copy of a dataset of the run's flights on
//! [`RESHARD_FROM`] shards is served in-process (following the layout as `serve`
//! does) and loaded with the mixed part's requests, open loop at
//! [`MIXED_LOAD_SHARE`](super::MIXED_LOAD_SHARE) of the capacity measured on it just
//! before, in back-to-back windows: [`QUIET_WINDOWS`] before, as many as `flightbench
//! reshard --to 16` takes (its own process, at nice [`RESHARD_NICE`], as a user runs
//! it), and [`QUIET_WINDOWS`] after. Beside the load, one connection revises
//! [`CHECKED_FLIGHTS`](super::writer::CHECKED_FLIGHTS) flights and records every 201; afterwards each acknowledged
//! write is looked for in the new layout. `results/resharding.md` has the same at
//! 1,000,000 flights, from `scripts/measure-resharding.sh`.

mod measure;

pub(super) use measure::{copy_dataset, measure};

use super::data::RunData;
use super::findings::count;
use crate::chart::{Series, XScale, line_chart};
use crate::reshard::ReshardReport;
use serde::{Deserialize, Serialize};

/// The shard counts the part moves between: the main dataset's, then twice as many
/// (the move `results/resharding.md` measures at 1M flights).
pub const RESHARD_FROM: u32 = super::MAIN_SHARDS;
pub const RESHARD_TO: u32 = 16;
/// `reshard`'s own default: beside a server using every core, nice 0 took the cores
/// from it (the server fell to a third of the rate offered, p99 4 s;
/// `results/resharding.md`).
pub const RESHARD_NICE: i32 = 19;
/// Windows measured before and after the reshard.
pub const QUIET_WINDOWS: usize = 3;

/// Where a window falls against the reshard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Before,
    During,
    After,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Before, Phase::During, Phase::After];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::During => "during",
            Phase::After => "after",
        }
    }
}

/// One open-loop window of the mixed load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub phase: Phase,
    /// When the window started, seconds after the first one did.
    pub start_s: f64,
    pub requests_per_s: f64,
    pub p99_ms: f64,
    /// Requests that got no answer.
    pub errors: u64,
    /// Answers other than 2xx, 409 and 422.
    pub unexpected_statuses: u64,
}

/// The reshard part's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resharding {
    pub flights: u64,
    /// The mix's closed-loop capacity on the old layout, measured just before, req/s.
    pub capacity: f64,
    /// The open-loop rate every window offered.
    pub offered_rate: f64,
    pub window_s: f64,
    pub nice: i32,
    pub windows: Vec<Window>,
    /// `flightbench reshard --json`'s report.
    pub reshard: ReshardReport,
    /// The checking writer's 201s.
    pub acknowledged_writes: u64,
    /// Of those, found exactly once, at the version the 201 gave, on the new layout.
    pub writes_found: u64,
    /// The checking writer's requests answered with anything but 201, 409 or 422, or
    /// not at all.
    pub writes_failed: u64,
}

/// One phase's windows in short.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseFigures {
    pub windows: usize,
    pub median_rate: f64,
    pub lowest_rate: f64,
    pub median_p99_ms: f64,
    pub highest_p99_ms: f64,
    pub errors: u64,
    pub unexpected_statuses: u64,
}

impl Resharding {
    /// `None` when no window fell in `phase`.
    pub fn phase(&self, phase: Phase) -> Option<PhaseFigures> {
        let windows: Vec<&Window> = self.windows.iter().filter(|w| w.phase == phase).collect();
        let rates: Vec<f64> = windows.iter().map(|w| w.requests_per_s).collect();
        let p99s: Vec<f64> = windows.iter().map(|w| w.p99_ms).collect();
        Some(PhaseFigures {
            windows: windows.len(),
            median_rate: median(&rates)?,
            lowest_rate: rates.iter().copied().fold(f64::INFINITY, f64::min),
            median_p99_ms: median(&p99s)?,
            highest_p99_ms: p99s.iter().copied().fold(0.0, f64::max),
            errors: windows.iter().map(|w| w.errors).sum(),
            unexpected_statuses: windows.iter().map(|w| w.unexpected_statuses).sum(),
        })
    }

    pub fn writes_lost(&self) -> u64 {
        self.acknowledged_writes - self.writes_found.min(self.acknowledged_writes)
    }
}

/// The lower middle of an even count.
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len().checked_sub(1)? / 2).copied()
}

/// The part's tables: the load by phase, then the reshard's own figures.
pub fn tables(r: &Resharding) -> Vec<Vec<Vec<String>>> {
    let header = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let mut load = vec![header(&[
        "mixed load",
        "windows",
        "req/s median",
        "req/s lowest",
        "p99 ms median",
        "p99 ms highest",
        "errors",
        "unexpected statuses",
    ])];
    for phase in Phase::ALL {
        if let Some(p) = r.phase(phase) {
            load.push(vec![
                format!("{} the reshard", phase.as_str()),
                p.windows.to_string(),
                count(p.median_rate),
                count(p.lowest_rate),
                format!("{:.2}", p.median_p99_ms),
                format!("{:.2}", p.highest_p99_ms),
                p.errors.to_string(),
                p.unexpected_statuses.to_string(),
            ]);
        }
    }
    let s = &r.reshard;
    let reshard = vec![
        header(&[
            "reshard",
            "flights",
            "events copied",
            "took s",
            "copy s",
            "catch-up s",
            "read models s",
            "verify s",
            "write pause ms",
            "acknowledged writes found",
        ]),
        vec![
            format!("{} → {} shards", s.from, s.to),
            count(s.flights as f64),
            count((s.events_copied + s.events_caught_up) as f64),
            format!("{:.1}", s.seconds),
            format!("{:.1}", s.copy_seconds),
            format!("{:.1}", s.catch_up_seconds),
            format!("{:.1}", s.read_models_seconds),
            format!("{:.1}", s.verify_seconds),
            format!("{:.0}", s.pause_ms),
            format!("{} of {}", count(r.writes_found as f64), count(r.acknowledged_writes as f64)),
        ],
    ];
    vec![load, reshard]
}

/// Throughput and p99 of each window over time, a line per phase, as (file, SVG).
pub fn charts(r: &Resharding) -> Vec<(String, String)> {
    let points = |phase: Phase, y: fn(&Window) -> f64| -> Vec<(f64, f64)> {
        r.windows.iter().filter(|w| w.phase == phase).map(|w| (w.start_s + r.window_s / 2.0, y(w))).collect()
    };
    let chart = |title: &str, unit: &str, y: fn(&Window) -> f64| {
        let lines: Vec<Vec<(f64, f64)>> = Phase::ALL.iter().map(|&p| points(p, y)).collect();
        let names: Vec<String> = Phase::ALL.iter().map(|p| format!("{} the reshard", p.as_str())).collect();
        let series: Vec<Series<'_>> = names
            .iter()
            .zip(&lines)
            .filter(|(_, points)| !points.is_empty())
            .map(|(name, points)| Series { name, points })
            .collect();
        line_chart(title, "second", unit, XScale::Linear, &series)
    };
    let title = format!("Resharding {} → {} under load", r.reshard.from, r.reshard.to);
    vec![
        (
            "reshard-throughput.svg".to_owned(),
            chart(&format!("{title}: responses per second"), "req/s", |w| w.requests_per_s),
        ),
        ("reshard-p99.svg".to_owned(), chart(&format!("{title}: p99 latency per window"), "ms", |w| w.p99_ms)),
    ]
}

/// What the part found, from its figures.
pub fn findings(run: &RunData) -> Vec<String> {
    let Some(r) = &run.resharding else { return Vec::new() };
    let s = &r.reshard;
    let mut out = vec![format!(
        "Resharding {} flights from {} to {} shards while the server took {} req/s of the mixed load ({:.0}% of its capacity) took {:.0} s (copy {:.0} s, read models {:.0} s, verify {:.0} s) at nice {}; writes paused for {:.0} ms.",
        count(s.flights as f64),
        s.from,
        s.to,
        count(r.offered_rate),
        r.offered_rate / r.capacity.max(1.0) * 100.0,
        s.seconds,
        s.copy_seconds,
        s.read_models_seconds,
        s.verify_seconds,
        r.nice,
        s.pause_ms
    )];
    if let (Some(before), Some(during), Some(after)) =
        (r.phase(Phase::Before), r.phase(Phase::During), r.phase(Phase::After))
    {
        let failed = before.errors + during.errors + after.errors;
        let unexpected = before.unexpected_statuses + during.unexpected_statuses + after.unexpected_statuses;
        out.push(format!(
            "During it the server answered {} req/s (median of {} windows; lowest {}, {:.0}% of the rate offered) at p99 {:.1} ms (highest {:.1} ms), against p99 {:.1} ms before and {:.1} ms after on {} shards; {} requests failed and {} got an unexpected status.",
            count(during.median_rate),
            during.windows,
            count(during.lowest_rate),
            during.lowest_rate / r.offered_rate.max(1.0) * 100.0,
            during.median_p99_ms,
            during.highest_p99_ms,
            before.median_p99_ms,
            after.median_p99_ms,
            s.to,
            failed,
            unexpected
        ));
    }
    out.push(if r.writes_lost() == 0 && r.writes_failed == 0 {
        format!(
            "All {} writes acknowledged across the reshard were found once, at their version, on the new layout.",
            count(r.acknowledged_writes as f64)
        )
    } else {
        format!(
            "{} of {} acknowledged writes were NOT found once at their version on the new layout, and {} writes failed: a defect, not a cost.",
            count(r.writes_lost() as f64),
            count(r.acknowledged_writes as f64),
            count(r.writes_failed as f64)
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(phase: Phase, start_s: f64, requests_per_s: f64, p99_ms: f64) -> Window {
        Window { phase, start_s, requests_per_s, p99_ms, errors: 0, unexpected_statuses: 0 }
    }

    #[test]
    fn phases_are_summed_up_from_their_own_windows() {
        let mut r = super::super::data::fixture::resharding();
        r.windows = vec![
            window(Phase::Before, 0.0, 1000.0, 5.0),
            window(Phase::During, 2.0, 990.0, 20.0),
            window(Phase::During, 4.0, 900.0, 80.0),
            window(Phase::During, 6.0, 1000.0, 10.0),
            window(Phase::During, 8.0, 995.0, 15.0),
        ];
        r.windows[2].errors = 3;
        let during = r.phase(Phase::During).unwrap();
        assert_eq!(during.windows, 4);
        assert_eq!(during.median_rate, 990.0, "lower middle of 900, 990, 995, 1000");
        assert_eq!(during.lowest_rate, 900.0);
        assert_eq!(during.median_p99_ms, 15.0);
        assert_eq!(during.highest_p99_ms, 80.0);
        assert_eq!(during.errors, 3);
        assert!(r.phase(Phase::After).is_none());
        let charts = charts(&r);
        assert_eq!(charts.len(), 2);
        assert!(charts[0].1.contains("before the reshard") && !charts[0].1.contains("after the reshard"));
    }

    #[test]
    fn a_lost_write_is_said_to_be_a_defect() {
        let mut run = super::super::data::fixture::run();
        let found = findings(&run);
        assert!(found.last().unwrap().starts_with("All 1,200 writes acknowledged"), "{found:?}");
        let r = run.resharding.as_mut().unwrap();
        r.writes_found -= 2;
        let found = findings(&run);
        assert!(found.last().unwrap().starts_with("2 of 1,200 acknowledged writes were NOT found"), "{found:?}");
    }
}

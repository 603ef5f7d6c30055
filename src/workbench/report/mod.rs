//! The run's report: `run.json`, `report.md` (charts as SVG files beside it) and a
//! self-contained `report.html` (the same charts inline), all rendered from
//! [`RunData`] alone.

mod html;
mod markdown;

pub use html::html;
pub use markdown::markdown;

use super::data::{Cell, RunData};
use super::findings::count;
use super::plan::Part;
use crate::chart::{Series, XScale, bar_chart, line_chart};
use std::path::{Path, PathBuf};

/// What each part compares, for its heading.
fn part_title(part: Part) -> (&'static str, &'static str) {
    match part {
        Part::Paths => (
            "Query paths",
            "Uncached point reads (GET /flights/{id}, uniform ids, cache off, HTTP/1.1) through each query path.",
        ),
        Part::Protocols => (
            "HTTP/1.1 and h2c",
            "Cached point reads (Zipf ids, cache on, raw path) over HTTP/1.1 and over h2c with multiplexed streams.",
        ),
        Part::Compression => (
            "Response compression",
            "GET /airports/{code}/departures (50 rows, raw path) with each Accept-Encoding; bytes are response bodies on the wire.",
        ),
        Part::Shards => (
            "Shard count",
            "The same flights in 1, 4, 8 and 16 SQLite shards: point reads (one shard each) and departures (each shard asked for its share of the page, merged).",
        ),
        Part::Cache => ("Point-read cache", "Point reads with Zipf-skewed ids, the server's cache off and on."),
        Part::Mixed => (
            "Mixed load at a fixed rate",
            "Open loop: requests leave on a schedule and latency counts from each one's intended send time, so stalls show in the tail.",
        ),
        Part::Projections => (
            "Read models",
            "Delay reports (POST, uniformly over the flights among the first 20,000 that still take events, each from its current version, so nearly every write commits) with no runner, the runner following the commits (async), each write answered once the runner has applied it to every model (inline) or to one model (inline-board, -hours, -carrier); the mixed part's read/departures/write mix, closed loop, with the runner async (mix-async), for the lag readers meet; then the departures part's requests on 16 shards, merged from every shard (scatter) or read from the airport-keyed board. Each read model is rebuilt from the events on the run's dataset and (default preset) on 1,000,000 flights.",
        ),
        Part::Security => (
            "Security",
            "The protocols part's HTTP/1.1 requests (cached point reads, Zipf ids), each carrying one reader's bearer token the server verifies: none (auth off), RS256 (RSA-2048), ES256 (P-256), EdDSA (Ed25519) or HS256 on every request, and ES256 with the verified-token cache (one token for every request: the cache's best case); then the same requests without a token over TLS (HTTP/1.1, h2-tls) and over h2c, each against its cleartext protocol, connections kept open; then the projections part's write-only load, each report signed by one reporter (HS256), stored in clear, sealed (reason and reporter under the reporter's data key), or sealed and audited in a chain per flight, per shard or global.",
        ),
        Part::Reshard => (
            "Online resharding",
            "flightbench reshard --to 16 (its own process, nice 19) on a copy of an 8-shard dataset of the run's flights, while the server keeps serving it and follows the switch: the mixed part's requests, open loop at half the capacity measured on the copy just before, in back-to-back windows before, during and after; beside them one connection revises 64 flights, and every write it got a 201 for is looked for afterwards on the new layout, once, at its version.",
        ),
        Part::Topology => (
            "The service split",
            "flightbench serve processes on a copy of the run's dataset, one topology after another: the monolith; the monolith behind the gateway (one hop); the gateway in front of query, command and notify services, the command's outbox relay publishing every event to RabbitMQ with pipelined confirms, the query cache following the events, and a webhook subscription to every airport. Each takes the mixed part's requests closed loop (capacity, and the CPU of all its processes per response), then, started afresh, open loop at half the smallest of the three capacities (point reads' and writes' latency at one rate every topology can take); during the split's open-loop window one connection's writes are timed from their 201 to their webhook. Then the same persistent messages published with a confirm per message, with pipelined confirms, and with none. One window each (no rounds, so no intervals: run it again to see the spread). Process-based and unpinned: every process shares the machine's cores with the load generator.",
        ),
        Part::Profile => ("Profile", "A flamegraph of the fastest configuration."),
    }
}

/// The projections part's own figures, beside its cells' table: committed writes and
/// lag per write cell, then each rebuild.
fn projection_tables(run: &RunData) -> Vec<Vec<Vec<String>>> {
    let header = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let mut writes =
        vec![header(&["cell with writes", "committed writes/s", "lag p50 (events)", "lag p99", "lag max"])];
    for cell in run.part(Part::Projections).filter(|c| c.acknowledged_writes_per_s.is_some()) {
        let lag = |f: fn(&super::data::ProjectionLag) -> u64| {
            cell.projection_lag.as_ref().map_or("–".into(), |l| count(f(l) as f64))
        };
        writes.push(vec![
            cell.id.to_string(),
            cell.acknowledged_writes_per_s.map_or("–".into(), count),
            lag(|l| l.p50_events),
            lag(|l| l.p99_events),
            lag(|l| l.max_events),
        ]);
    }
    let mut rebuilds = vec![header(&["rebuild", "flights", "events", "seconds", "events/s"])];
    for r in &run.rebuilds {
        rebuilds.push(vec![
            r.model.to_string(),
            count(r.flights as f64),
            count(r.events as f64),
            format!("{:.1}", r.seconds),
            count(r.events_per_s),
        ]);
    }
    [writes, rebuilds].into_iter().filter(|t| t.len() > 1).collect()
}

/// A part's tables beside its cells' (or instead of them).
fn part_tables(run: &RunData, part: Part) -> Vec<Vec<Vec<String>>> {
    match part {
        Part::Projections => projection_tables(run),
        Part::Reshard => run.resharding.as_ref().map(super::resharding::tables).unwrap_or_default(),
        Part::Topology => run.topology.as_ref().map(super::topology::tables).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A chart's file name and its SVG.
struct Chart {
    file: String,
    svg: String,
}

fn charts_for(run: &RunData, part: Part) -> Vec<Chart> {
    if part == Part::Reshard {
        let charts = run.resharding.iter().flat_map(super::resharding::charts);
        return charts.map(|(file, svg)| Chart { file, svg }).collect();
    }
    let cells: Vec<&Cell> = run.part(part).collect();
    if cells.is_empty() {
        return Vec::new();
    }
    let (title, _) = part_title(part);
    let mut charts = Vec::new();
    if part != Part::Mixed {
        let throughput: Vec<(String, f64)> =
            cells.iter().map(|c| (c.id.label().to_string(), c.requests_per_s)).collect();
        charts.push(Chart {
            file: format!("{part}-throughput.svg"),
            svg: bar_chart(&format!("{title}: throughput"), "req/s", &throughput),
        });
        let p99: Vec<(String, f64)> = cells.iter().map(|c| (c.id.label().to_string(), c.latency.p99_ms)).collect();
        charts.push(Chart {
            file: format!("{part}-p99.svg"),
            svg: bar_chart(&format!("{title}: p99 latency"), "ms", &p99),
        });
    }
    // Responses in each second of the measured window: a stall or a slow start shows.
    let over_time: Vec<Vec<(f64, f64)>> = cells
        .iter()
        .map(|c| c.throughput_per_second.iter().enumerate().map(|(i, n)| (i as f64 + 1.0, *n as f64)).collect())
        .collect();
    let labels: Vec<String> = cells.iter().map(|c| c.id.label().to_string()).collect();
    let series: Vec<Series<'_>> = labels.iter().zip(&over_time).map(|(name, points)| Series { name, points }).collect();
    charts.push(Chart {
        file: format!("{part}-throughput-over-time.svg"),
        svg: line_chart(&format!("{title}: responses per second"), "second", "responses", XScale::Linear, &series),
    });
    let series: Vec<Series<'_>> =
        labels.iter().zip(&cells).map(|(name, c)| Series { name, points: &c.latency_curve }).collect();
    charts.push(Chart {
        file: format!("{part}-latency.svg"),
        svg: line_chart(&format!("{title}: latency by percentile"), "percentile", "ms", XScale::Nines, &series),
    });
    charts
}

fn table(cells: &[&Cell]) -> Vec<Vec<String>> {
    let bytes = cells.iter().any(|c| c.config.accept_encoding.is_some() || c.id.part() == Part::Compression);
    let hits = cells.iter().any(|c| c.cache_hit_ratio.is_some());
    let cpu = cells.iter().any(|c| c.server_cpu_us_per_request.is_some());
    let disturbed = cells.iter().any(|c| c.disturbed_rounds() > 0);
    let mut header = vec!["configuration", "req/s [95% CI]"];
    if cpu {
        header.push("server CPU µs/req [95% CI]");
    }
    header.extend(["p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors"]);
    if bytes {
        header.push("body bytes / response");
    }
    if hits {
        header.push("cache hits");
    }
    if disturbed {
        header.push("disturbed rounds");
    }
    let mut rows = vec![header.into_iter().map(str::to_owned).collect::<Vec<_>>()];
    for c in cells {
        let rate = match c.rate_interval().filter(|i| i.has_interval()) {
            Some(i) => format!("{} [{}–{}]", count(c.requests_per_s), count(i.low), count(i.high)),
            None => count(c.requests_per_s),
        };
        let mut row = vec![c.id.label().to_string(), rate];
        if cpu {
            row.push(match (c.server_cpu_us_per_request, c.cpu_interval()) {
                (Some(v), Some(i)) if i.has_interval() => format!("{v:.1} {}", i.bracket(1)),
                (Some(v), _) => format!("{v:.1}"),
                (None, _) => "—".to_owned(),
            });
        }
        row.extend([
            format!("{:.2}", c.latency.p50_ms),
            format!("{:.2}", c.latency.p99_ms),
            format!("{:.2}", c.latency.p999_ms),
            format!("{:.2}", c.latency.max_ms),
            c.errors.to_string(),
        ]);
        if bytes {
            row.push(count(c.wire_bytes_per_response()));
        }
        if hits {
            row.push(c.cache_hit_ratio.map_or("—".to_owned(), |h| format!("{:.1}%", h * 100.0)));
        }
        if disturbed {
            row.push(format!("{} of {}", c.disturbed_rounds(), c.rounds.len()));
        }
        rows.push(row);
    }
    rows
}

fn provenance_lines(run: &RunData) -> Vec<String> {
    let p = &run.provenance;
    let s = &run.settings;
    let d = &p.dataset;
    let pragmas: Vec<String> = d.sqlite_pragmas.iter().map(|(k, v)| format!("{k}={v}")).collect();
    vec![
        format!("Commit {}, flightbench {}, {} build, {}", p.commit, p.flightbench_version, p.build, p.toolchain),
        format!("Machine: {}, {} cores, {}, host {}", p.cpu, p.cores, p.os, p.host),
        format!(
            "Runtime shape: the server in-process on {} current-thread runtimes (per-core, SO_REUSEPORT), the load generator on {} threads beside it, {}",
            s.server_threads,
            s.load_threads,
            if s.placement.pinned {
                format!(
                    "pinned to disjoint cores (server {:?}, load {:?})",
                    s.placement.server_cores, s.placement.load_cores
                )
            } else {
                "both left to the scheduler on the same cores".to_owned()
            }
        ),
        format!(
            "Each cell: {:.1} s warm-up (not counted), then {:.1} s measured, {}; closed loop with {} HTTP/1.1 connections or {} h2c connections × {} streams; the shard files {} read into the page cache before the first cell",
            s.warmup_s,
            s.measure_s,
            if s.rounds > 1 {
                format!(
                    "in {} interleaved rounds (each part's cells in alternating order), the median round's figures shown and every interval taken over the rounds",
                    s.rounds
                )
            } else {
                "once (no intervals)".to_owned()
            },
            s.h1_connections,
            s.h2_connections,
            s.h2_streams,
            if s.page_cache_prewarmed { "were" } else { "were not" }
        ),
        format!(
            "Dataset: {} flights, {} events, {} days, seed {}, {} {} shards (the shard-count part uses its own datasets of the same flights); SQLite pragmas {}",
            count(d.flights as f64),
            count(d.events as f64),
            d.days,
            d.seed,
            d.shards,
            d.backend,
            pragmas.join(", ")
        ),
        format!(
            "Started {}, took {:.0} s, preset {}, parts {}",
            run.started_at,
            run.elapsed_s,
            run.preset,
            run.parts.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
        ),
    ]
}

/// The headline ratios as a table: each with both figures and their intervals.
fn headline_rows(run: &RunData) -> Vec<Vec<String>> {
    let mut rows = vec![
        ["ratio", "by throughput [95% CI]", "by server CPU per request [95% CI]", "steadier"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for h in &run.headlines {
        let cpu = h.cpu.map_or("—".to_owned(), |c| format!("{:.2}× {}", c.estimate, c.bracket(2)));
        rows.push(vec![
            h.name.clone(),
            format!("{:.2}× {}", h.throughput.estimate, h.throughput.bracket(2)),
            cpu,
            h.steadier.to_string(),
        ]);
    }
    rows
}

/// The note under the report: how sure its figures are and how they were guarded.
fn how_to_read(run: &RunData) -> String {
    let s = &run.settings;
    let intervals = if s.rounds > 1 {
        format!(
            "Intervals are 95% confidence intervals over the {} rounds: a paired t-interval on the logarithms of the per-round ratios (cells of a part run seconds apart in every round), so a ratio whose interval excludes 1 is a difference this run can vouch for. Each headline leads with the steadier of its two figures, throughput or the server's CPU time per request (everything the process spent but the load generator's threads, per response).",
            s.rounds
        )
    } else {
        "Each configuration ran once, so no figure has an interval: on a shared machine a single run's ratio can move 20–30% between runs. Run with --rounds 5 (the default preset's) for intervals.".to_owned()
    };
    format!(
        "{intervals} The machine's other work was read from /proc/stat around every measurement; one taken while it used more than {:.0}% of the machine (or the hypervisor stole as much) was measured again, up to {} times, and is marked if it stayed disturbed. `flightbench compare` says which figures moved between two runs.",
        s.noise_threshold * 100.0,
        s.noise_retries
    )
}

/// The parts with figures to show: cells, or the reshard part's own.
fn parts_shown(run: &RunData) -> Vec<Part> {
    let has_figures = |p: Part| {
        run.part(p).next().is_some()
            || (p == Part::Reshard && run.resharding.is_some())
            || (p == Part::Topology && run.topology.is_some())
    };
    run.parts.iter().copied().filter(|&p| has_figures(p)).collect()
}

/// Writes run.json, report.md, report.html and charts/*.svg into `dir`; returns the
/// files written.
pub fn write(run: &RunData, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let charts_dir = dir.join("charts");
    std::fs::create_dir_all(&charts_dir)?;
    let mut written = Vec::new();
    let mut put = |path: PathBuf, text: &str| -> std::io::Result<()> {
        std::fs::write(&path, text)?;
        written.push(path);
        Ok(())
    };
    put(dir.join("run.json"), &serde_json::to_string_pretty(run).map_err(std::io::Error::other)?)?;
    put(dir.join("report.md"), &markdown(run))?;
    put(dir.join("report.html"), &html(run))?;
    for part in parts_shown(run) {
        for chart in charts_for(run, part) {
            put(charts_dir.join(&chart.file), &chart.svg)?;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workbench::data::fixture;

    #[test]
    fn the_projections_part_shows_its_writes_lag_and_rebuilds() {
        let run = fixture::run();
        let md = markdown(&run);
        assert!(md.contains("## Read models"), "{md}");
        assert!(md.contains("| projections/writes-async | 2,400 | 40 | 300 | 600 |"), "{md}");
        assert!(md.contains("| projections/writes-off | 3,000 | – | – | – |"), "{md}");
        assert!(md.contains("| departures_board | 100,000 | 300,000 | 3.0 | 100,000 |"), "{md}");
        let html = html(&run);
        assert_eq!(html.matches(r#"<table class="projection-figures">"#).count(), 2);
        let mut without = run.clone();
        without.rebuilds.clear();
        assert_eq!(projection_tables(&without).len(), 1, "no empty rebuild table");
    }
}

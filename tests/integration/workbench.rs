//! `flightbench run --quick` end to end on a tiny dataset: every report file, a
//! run.json that validates against its schema and re-renders to the same report, the
//! HTML in headless Chromium with its charts drawn, and `compare` on two runs.

use std::path::Path;
use std::process::Command;

fn flightbench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flightbench")).args(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stdout.into_owned()
}

fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium is needed to check report.html: apt-get install -y chromium (scripts/test.sh does)")
}

/// The DOM after Chromium loaded and laid out the page, and a screenshot of it.
fn render_in_chromium(html: &Path, screenshot: &Path) -> String {
    let url = format!("file://{}", html.display());
    let common = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"];
    let dom = Command::new(chromium()).args(common).args(["--dump-dom", &url]).output().unwrap();
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let shot = Command::new(chromium())
        .args(common)
        .args([&format!("--screenshot={}", screenshot.display()), "--window-size=1400,3000", &url])
        .output()
        .unwrap();
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    String::from_utf8(dom.stdout).unwrap()
}

#[test]
fn quick_run_writes_a_complete_report_and_runs_compare() {
    // The run's topology part needs the broker up throughout: no test may restart it
    // meanwhile.
    let _broker = crate::bus::BROKER.blocking_lock();
    let work = tempfile::tempdir().unwrap();
    let (data, first, second) = (work.path().join("shards"), work.path().join("first"), work.path().join("second"));
    let args = |out: &Path| -> Vec<String> {
        ["run", "--quick", "--flights", "3000", "--seconds", "300ms", "--pin", "--dir"]
            .into_iter()
            .map(str::to_owned)
            .chain([data.display().to_string(), "--out".into(), out.display().to_string()])
            .collect()
    };
    let owned = args(&first);
    let stdout = flightbench(&owned.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(stdout.contains("What this run found:"), "{stdout}");

    for file in ["report.md", "report.html", "run.json", "flamegraph.svg", "flamegraph.folded"] {
        assert!(first.join(file).is_file(), "{file} missing");
    }
    let charts: Vec<_> = std::fs::read_dir(first.join("charts")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(charts.len() >= 13, "{charts:?}");
    for chart in &charts {
        let svg = std::fs::read_to_string(chart).unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{}", chart.display());
    }

    // run.json validates against its published schema.
    let text = std::fs::read_to_string(first.join("run.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let schema: serde_json::Value = serde_json::from_str(flightbench::workbench::data::RUN_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let problems: Vec<String> = validator.iter_errors(&json).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(problems.is_empty(), "{problems:#?}");

    // Every cell ran and answered; the report is exactly what run.json renders to, so
    // every finding in it comes from the figures.
    let run: flightbench::workbench::data::RunData = serde_json::from_value(json).unwrap();
    assert_eq!(run.cells.len(), 44, "{:?}", run.cells.iter().map(|c| &c.id).collect::<Vec<_>>());
    // The shard series' 8 is the main dataset, served as such.
    let eight = run.cells.iter().find(|c| c.id == flightbench::workbench::CellId::ShardDepartures(8)).unwrap();
    assert_eq!(eight.config.shards, 8);
    for cell in &run.cells {
        assert!(cell.responses > 0 && cell.requests_per_s > 0.0, "{} measured nothing", cell.id);
        assert_eq!(cell.errors, 0, "{} had errors", cell.id);
    }
    assert!(run.profile.as_ref().is_some_and(|p| p.samples > 0));
    // The projections part: committed writes in each write cell, the lag where a
    // runner ran, a rebuild of each read model over every event.
    use flightbench::workbench::{CellId, Keeping};
    for &keeping in Keeping::ALL {
        let cell = run.cell(CellId::ProjectionWrites(keeping)).unwrap();
        let committed = cell.acknowledged_writes_per_s.unwrap();
        assert!(
            committed > 0.5 * cell.requests_per_s,
            "{}: {committed} of {} writes/s committed",
            cell.id,
            cell.requests_per_s
        );
        assert_eq!(cell.projection_lag.is_some(), keeping != Keeping::Off, "{}", cell.id);
    }
    // Under the mixed mix some writes commit, and the runner's lag was sampled.
    let mix = run.cell(CellId::ProjectionMix).unwrap();
    assert!(mix.acknowledged_writes_per_s.unwrap() > 0.0 && mix.projection_lag.is_some(), "{mix:?}");
    // The security part's cells carried tokens the server accepted: a 401 would have
    // counted as an error above.
    use flightbench::workbench::Signing;
    for &signing in Signing::ALL {
        assert!(run.cell(CellId::Auth(signing)).is_some_and(|c| c.responses > 0 && c.errors == 0), "{signing}");
    }
    // The write cells' reports were signed by a reporter and committed, sealed or not.
    for &at_rest in flightbench::workbench::AtRest::ALL {
        let cell = run.cell(CellId::Writes(at_rest)).unwrap();
        assert!(cell.errors == 0 && cell.acknowledged_writes_per_s.unwrap() > 0.0, "{cell:?}");
    }
    // Quick rebuilds its own dataset only (the default and full presets add 1M flights).
    assert_eq!(run.rebuilds.len(), 3, "{:?}", run.rebuilds);
    assert!(run.rebuilds.iter().all(|r| r.events > 3_000 && r.events_per_s > 0.0), "{:?}", run.rebuilds);
    // The reshard part resharded a copy for real while the server served it and
    // followed the switch: no request failed, every acknowledged write is on the new
    // layout, and the copy is gone.
    let resharding = run.resharding.as_ref().expect("the reshard part's figures");
    let reshard = &resharding.reshard;
    assert_eq!((reshard.from, reshard.to, reshard.flights, reshard.flights_verified), (8, 16, 3_000, 3_000));
    assert!(reshard.pause_ms > 0.0 && reshard.seconds > 0.0 && reshard.events_copied > 3_000, "{reshard:?}");
    use flightbench::workbench::resharding::Phase;
    for phase in Phase::ALL {
        let p = resharding.phase(phase).unwrap_or_else(|| panic!("no window {phase:?} the reshard"));
        assert!(p.median_rate > 0.0, "{phase:?}: {p:?}");
        assert_eq!(p.errors + p.unexpected_statuses, 0, "{phase:?}: {p:?}");
    }
    assert!(resharding.acknowledged_writes > 0, "{resharding:?}");
    assert_eq!((resharding.writes_found, resharding.writes_failed), (resharding.acknowledged_writes, 0));
    let workbench_dirs: Vec<_> =
        std::fs::read_dir(data.join("workbench")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!workbench_dirs.iter().any(|d| d == "reshard-3000-flights"), "the copy is left: {workbench_dirs:?}");
    // The topology part: every topology answered, and in each, every probe write
    // became readable through the front (the split's through the bus).
    let topology = run.topology.as_ref().expect("the topology part's figures");
    assert_eq!(topology.shapes.len(), 3);
    for shape in &topology.shapes {
        assert_eq!(shape.errors + shape.unexpected_statuses, 0, "{shape:?}");
        let fresh = shape.fresh.unwrap_or_else(|| panic!("no read-after-write figures: {shape:?}"));
        assert!(fresh.writes > 0 && fresh.stale == 0 && fresh.failed == 0, "{shape:?}");
        assert!(fresh.p50_ms <= fresh.p99_ms && fresh.p99_ms <= fresh.max_ms, "{fresh:?}");
    }
    // The server ran in-process, so every cell has its CPU per request; quick takes one
    // round, and says its ratios have no interval.
    for cell in &run.cells {
        let cpu = cell.server_cpu_us_per_request.unwrap_or_else(|| panic!("{}: no server CPU", cell.id));
        assert!(cpu > 0.0 && cpu < 1e6, "{}: {cpu} µs per request", cell.id);
        assert_eq!(cell.rounds.len(), 1);
    }
    // --pin: the server and the load on disjoint cores, recorded (CI has 2 or more).
    let placement = &run.settings.placement;
    assert!(placement.pinned, "{placement:?}");
    assert!(placement.server_cores.iter().all(|c| !placement.load_cores.contains(c)), "{placement:?}");
    assert_eq!(
        (run.settings.server_threads, run.settings.load_threads),
        (placement.server_cores.len(), placement.load_cores.len())
    );
    let markdown = std::fs::read_to_string(first.join("report.md")).unwrap();
    assert_eq!(markdown, flightbench::workbench::report::markdown(&run));
    let findings = flightbench::workbench::findings::findings(&run);
    assert!(findings.len() >= 10, "{findings:#?}");
    for finding in &findings {
        assert!(markdown.contains(&finding.text), "{} is not in report.md", finding.text);
    }

    // The HTML loads in a real browser, with every chart drawn inline.
    let screenshot = work.path().join("report.png");
    let dom = render_in_chromium(&first.join("report.html"), &screenshot);
    assert!(dom.matches("<svg").count() >= charts.len(), "charts missing from the rendered page");
    assert!(dom.contains(r#"class="bar""#) && dom.contains(r#"class="series""#));
    assert!(dom.contains(&findings[0].text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")));
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "screenshot of {} bytes", png.len());

    // A second run, of two parts in two rounds, reuses the datasets; compare writes
    // what moved.
    let mut owned = args(&second);
    owned.extend(["--only", "paths,cache", "--rounds", "2"].map(str::to_owned));
    let stdout = flightbench(&owned.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!stdout.contains("seeding"), "the second run re-seeded: {stdout}");
    let rerun: flightbench::workbench::data::RunData =
        serde_json::from_str(&std::fs::read_to_string(second.join("run.json")).unwrap()).unwrap();
    assert_eq!(rerun.cells.len(), 6);
    for cell in &rerun.cells {
        assert_eq!(cell.round_rates().len(), 2, "{}", cell.id);
        let lower = cell.round_rates().iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(cell.requests_per_s, lower, "{}: the median of two rounds is the lower", cell.id);
        assert!(cell.rate_interval().unwrap().has_interval() && cell.cpu_interval().unwrap().has_interval());
    }
    // Two rounds give every figure and headline an interval, in the report and in compare.
    let report = std::fs::read_to_string(second.join("report.md")).unwrap();
    assert!(report.contains("req/s [95% CI]") && report.contains("server CPU µs/req [95% CI]"), "{report}");
    assert!(report.contains("### Headline ratios") && report.contains("| prepared/adhoc | "), "{report}");
    assert!(report.contains("(95% CI "), "a finding with its interval: {report}");
    let compared = flightbench(&["compare", second.to_str().unwrap(), second.to_str().unwrap()]);
    assert!(compared.contains("# flightbench compare") && compared.contains("| paths/raw | req/s |"), "{compared}");
    assert!(compared.contains("Nothing moved beyond 10% with its intervals apart."), "{compared}");
    let paths_raw = compared.lines().find(|l| l.starts_with("| paths/raw | req/s |")).unwrap();
    assert!(paths_raw.matches('[').count() == 2, "both intervals: {paths_raw}");
    let across = flightbench(&["compare", first.to_str().unwrap(), second.to_str().unwrap()]);
    assert!(across.contains("the threshold alone decides"), "one side has one round: {across}");
    assert!(second.join("compare.md").is_file());
}

/// The noise guard: a run measured while something else burns the CPU notices it,
/// measures each cell again, and marks what stayed disturbed, in run.json, in the
/// report and on the console.
#[test]
fn a_busy_machine_is_noticed_and_the_cells_it_disturbed_are_marked() {
    let work = tempfile::tempdir().unwrap();
    let (data, out) = (work.path().join("shards"), work.path().join("out"));
    let args = ["run", "--quick", "--only", "cache", "--flights", "2000", "--seconds", "300ms"];
    let extra = ["--noise-retries", "1", "--dir", data.to_str().unwrap(), "--out", out.to_str().unwrap()];
    // The dataset first, so the burners run while cells are measured, not while seeding.
    flightbench(&[&args[..], &["--noise-threshold", "1"], &extra[..]].concat());
    std::fs::remove_dir_all(&out).unwrap();

    // Burn every core from this (another) process for as long as the run lasts.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burners: Vec<_> = (0..flightbench::machine::cores())
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 1u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
                }
            })
        })
        .collect();
    let stdout = flightbench(&[&args[..], &extra[..]].concat());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    burners.into_iter().for_each(|b| b.join().unwrap());

    let run: flightbench::workbench::data::RunData =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run.cells.len(), 2);
    assert!(!run.settings.placement.pinned, "not pinned without --pin: {:?}", run.settings.placement);
    for cell in &run.cells {
        let round = &cell.rounds[0];
        let disturbance = round.disturbance.expect("the machine's CPU was read");
        assert!(disturbance.others_share > 0.1, "{}: {disturbance:?}", cell.id);
        assert!(round.disturbed, "{}: still disturbed after its retry", cell.id);
        assert_eq!(round.attempts, 2, "{}: measured again once", cell.id);
    }
    assert!(stdout.contains("DISTURBED"), "{stdout}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("was measured while other work took up to"), "{report}");
    assert!(report.contains("disturbed rounds |"), "the table has the column: {report}");
}

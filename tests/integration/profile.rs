//! `flightbench profile`: flamegraphs of the in-process server under load, the
//! differential of two query paths, and a profile taken through a running server's
//! admin listener.

use crate::app::ServeProcess;
use crate::helpers::{Kind, dataset, spec};
use std::path::Path;
use std::process::Command;

fn flightbench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flightbench")).args(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

/// Folded lines parse, and their sample total.
fn folded(path: &Path) -> (String, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut total = 0;
    for line in text.lines() {
        let (stack, count) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a folded line: {line:?}"));
        assert!(!stack.is_empty());
        total += count.parse::<u64>().unwrap_or_else(|_| panic!("bad count in {line:?}"));
    }
    (text, total)
}

fn svg(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.starts_with("<?xml") && text.trim_end().ends_with("</svg>"), "{} is not an SVG", path.display());
    text
}

#[test]
fn compare_writes_both_profiles_and_their_differential() {
    let ds = tokio::runtime::Runtime::new().unwrap().block_on(dataset(Kind::Sqlite, spec(9, 3_000, 10), 2));
    let out = tempfile::tempdir().unwrap();
    let (d, o) = (ds.dir().to_str().unwrap(), out.path().to_str().unwrap());
    let stdout = flightbench(&[
        "profile",
        "--dir",
        d,
        "--out",
        o,
        "--seconds",
        "2",
        "--warmup",
        "0",
        "--frequency",
        "499",
        "--cache",
        "off",
        "-c",
        "4",
        "--label",
        "t",
        "--compare",
        "path=adhoc",
    ]);
    let date = time::OffsetDateTime::now_utc().date().to_string();
    let file = |name: &str| out.path().join(format!("{date}-{name}"));

    let (raw, raw_samples) = folded(&file("t-raw.folded"));
    let (adhoc, adhoc_samples) = folded(&file("t-adhoc.folded"));
    assert!(raw_samples > 0 && adhoc_samples > 0, "no samples:\n{stdout}");
    for (name, text) in [("raw", &raw), ("adhoc", &adhoc)] {
        assert!(text.contains("flightbench::"), "{name}: the server's own functions are named");
        assert!(!text.lines().any(|l| l.starts_with("load")), "{name}: the load generator's threads are left out");
        assert!(!text.contains("pprof::") && !text.contains("backtrace::backtrace"), "{name}: sampler frames");
    }
    assert!(raw.contains("store::path::raw") && !raw.contains("store::path::adhoc"), "raw profile");
    assert!(adhoc.contains("store::path::adhoc") && !adhoc.contains("store::path::raw"), "adhoc profile");

    assert!(svg(&file("t-raw.svg")).contains("store::path::raw"));
    assert!(svg(&file("t-adhoc.svg")).contains("store::path::adhoc"));
    let diff = svg(&file("t-raw-vs-adhoc-diff.svg"));
    assert!(diff.contains("store::path::adhoc"), "the differential has the second profile's shape");
    assert!(stdout.contains("req/s") && stdout.contains("differential"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaches_to_a_running_server() {
    let ds = dataset(Kind::Sqlite, spec(9, 3_000, 10), 2).await;
    let out = tempfile::tempdir().unwrap();
    let d = ds.dir().to_str().unwrap();
    let mut server = ServeProcess::start(ds.dir(), &[], &[], false).await;
    let (api, admin) = (server.api, server.admin.expect("an admin listener"));
    let result = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["profile", "--dir", d, "--out", out.path().to_str().unwrap(), "--seconds", "2", "--warmup", "0"])
        .args(["--frequency", "499", "-c", "4", "--label", "attached"])
        .args(["--attach", &format!("http://{api}"), "--admin", &format!("http://{admin}")])
        .output()
        .await
        .unwrap();
    server.child.kill().await.unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let date = time::OffsetDateTime::now_utc().date().to_string();
    let (text, samples) = folded(&out.path().join(format!("{date}-attached.folded")));
    assert!(samples > 0);
    assert!(text.lines().any(|l| l.starts_with("serve;")), "the server's threads, merged by role");
    assert!(text.contains("flightbench::http"), "the server's own functions are named");
}

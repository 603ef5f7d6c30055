//! The binary: every bad input gives a one-line error naming the problem and a
//! non-zero exit, never a panic.

use std::process::Command;

fn flightbench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flightbench")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn assert_fails_with(args: &[&str], needle: &str) {
    let (ok, _, stderr) = flightbench(args);
    assert!(!ok, "{args:?} should fail");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error:"), "{args:?}: first line {first:?}");
    assert!(first.contains(needle), "{args:?}: {first:?} does not mention {needle:?}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, _, stderr) = flightbench(&["seed", "--dir", d, "--flights", "300", "--shards", "3", "--quiet"]);
    assert!(ok, "{stderr}");

    let q = |rest: &[&'static str]| -> Vec<&str> { [&["query", "--dir", d][..], rest].concat() };
    assert_fails_with(&q(&["flight", "0"]), "flight id \"0\"");
    assert_fails_with(&q(&["flight", "12x"]), "flight id \"12x\"");
    assert_fails_with(&q(&["flight", "301"]), "flight 301 not found");
    assert_fails_with(&q(&["departures", "jfk", "--from", "2026-12-01", "--to", "2026-12-02"]), "airport code \"jfk\"");
    assert_fails_with(&q(&["departures", "JFK", "--from", "2026-12-02", "--to", "2026-12-01"]), "inverted");
    assert_fails_with(&q(&["departures", "JFK", "--from", "2026-12-01", "--to", "2028-12-01"]), "longer than");
    assert_fails_with(&q(&["departures", "JFK", "--from", "tomorrow", "--to", "2026-12-02"]), "\"tomorrow\"");
    assert_fails_with(
        &q(&["departures", "JFK", "--from", "2026-12-01", "--to", "2026-12-02", "--limit", "0"]),
        "limit 0",
    );
    assert_fails_with(
        &q(&["departures", "JFK", "--from", "2026-12-01", "--to", "2026-12-02", "--limit", "5000"]),
        "limit 5000",
    );
    assert_fails_with(&q(&["append", "5", "--expected-version", "0", "--kind", "reported"]), "--delay-minutes");
    assert_fails_with(
        &q(&["append", "5", "--expected-version", "0", "--kind", "reported", "--delay-minutes", "-4"]),
        "-4 minutes",
    );
    assert_fails_with(
        &q(&["append", "5", "--expected-version", "99", "--kind", "reported", "--delay-minutes", "4"]),
        "version conflict",
    );
    assert_fails_with(&q(&["--path", "fast", "flight", "1"]), "fast");
    let serve =
        |rest: &[&'static str]| -> Vec<&str> { [&["serve", "--dir", d, "--addr", "127.0.0.1:0"][..], rest].concat() };
    assert_fails_with(&serve(&["--runtime", "multi-thread", "--threads", "2"]), "--runtime per-core only");
    assert_fails_with(&serve(&["--runtime", "multi-thread", "--pin"]), "--runtime per-core only");
    assert_fails_with(&serve(&["--runtime", "per-core", "--threads", "0"]), "--threads");
    assert_fails_with(&serve(&["--cache", "maybe"]), "maybe");
    assert_fails_with(&serve(&["--cache-capacity", "0"]), "--cache-capacity");

    // Port 9 on loopback: nothing listens there.
    let load = |rest: &[&'static str]| -> Vec<&str> { [&["load", "--dir", d][..], rest].concat() };
    let url = ["--url", "http://127.0.0.1:9/", "--duration", "1s"];
    assert_fails_with(&load(&[&url[..], &["-c", "0"]].concat()), "--connections must be at least 1");
    assert_fails_with(&load(&[&url[..], &["--loop", "closed", "--rate", "100"]].concat()), "--loop closed");
    assert_fails_with(&load(&[&url[..], &["--loop", "open"]].concat()), "needs --rate");
    assert_fails_with(&load(&[&url[..], &["--rate", "0"]].concat()), "--rate");
    assert_fails_with(&load(&[&url[..], &["-m", "8"]].concat()), "one request in flight");
    assert_fails_with(&load(&url), "cannot connect to http://127.0.0.1:9/");
    assert_fails_with(&load(&["--url", "http://127.0.0.1:9/"]), "must be bounded");
    assert_fails_with(&load(&["--url", "http://10.11.12.13/", "-d", "1s"]), "not a loopback address");
    assert_fails_with(&load(&["--url", "ftp://127.0.0.1/", "-d", "1s"]), "http:// or https://");
    assert_fails_with(&load(&["--url", "https://127.0.0.1:9/", "-d", "1s"]), "--ca-cert");
    assert_fails_with(&load(&["--mix", "read=1,fly=2", "-d", "1s"]), "fly");
    assert_fails_with(&load(&["--target", "http://127.0.0.1:9/flights", "-d", "1s"]), "use --url");
    let profile =
        |rest: &[&'static str]| -> Vec<&str> { [&["profile", "--dir", d, "--seconds", "1"][..], rest].concat() };
    assert_fails_with(&profile(&["--compare", "speed=fast"]), "path, protocol, encoding and cache");
    assert_fails_with(&profile(&["--compare", "path=raw"]), "already profiled");
    assert_fails_with(&profile(&["--compare", "path=quick"]), "quick");
    assert_fails_with(&profile(&["--compare", "adhoc"]), "KEY=VALUE");
    assert_fails_with(&profile(&["--label", "a/b"]), "--label");
    let attach = ["--attach", "http://127.0.0.1:9", "--admin", "http://127.0.0.1:10"];
    assert_fails_with(&profile(&[&attach[..], &["--cache", "off"]].concat()), "attached server");
    assert_fails_with(&profile(&[&attach[..], &["--compare", "cache=off"]].concat()), "attached server");
    assert_fails_with(&profile(&["--attach", "http://10.1.2.3:80", "--admin", "http://127.0.0.1:10"]), "loopback");
    assert_fails_with(&profile(&attach), "cannot connect to http://127.0.0.1:9");
    assert_fails_with(&["profile", "--dir", "/nonexistent/flightbench"], "flightbench seed");
    let all = "paths,protocols,compression,shards,cache,mixed,profile";
    assert_fails_with(&["run", "--dir", d, "--skip", all], "--skip leaves nothing to run");
    assert_fails_with(&["run", "--dir", d, "--only", "paths,speed"], "speed");
    assert_fails_with(&["run", "--dir", d, "--out", d], "is not empty");
    assert_fails_with(&["run", "--dir", d, "--flights", "5"], "--flights");
    assert_fails_with(&["run", "--dir", d, "--quick", "--full"], "--full");
    assert_fails_with(&["compare", "/nonexistent/a", "/nonexistent/b"], "cannot read /nonexistent/a");
    let manifest = dir.path().join("manifest.json");
    let m = manifest.to_str().unwrap();
    assert_fails_with(&["compare", m, m], "is not a run.json");
    assert_fails_with(&["query", "--dir", "/nonexistent/flightbench", "flight", "1"], "run `flightbench seed` first");
    assert_fails_with(&["seed", "--dir", d, "--flights", "10", "--quiet"], "--force");
    assert_fails_with(&["seed", "--dir", d, "--flights", "0", "--force", "--quiet"], "--flights 0");
    assert_fails_with(&["seed", "--dir", d, "--shards", "0", "--force", "--quiet"], "shard count 0");
    assert_fails_with(&["seed", "--dir", d, "--backend", "postgres", "--force", "--quiet"], "--pg-url");

    std::fs::write(dir.path().join("manifest.json"), "{\"format\": 1, \"backend\": ").unwrap();
    assert_fails_with(&q(&["flight", "1"]), "not a valid manifest");
}

#[test]
fn query_prints_json_that_parses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(flightbench(&["seed", "--dir", d, "--flights", "200", "--shards", "2", "--quiet"]).0);
    for path in ["prepared", "adhoc", "orm", "raw"] {
        let (ok, stdout, stderr) = flightbench(&["query", "--dir", d, "--path", path, "flight", "7"]);
        assert!(ok, "{stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(json["id"], 7);
        assert!(json["status"]["version"].is_i64());
    }
    let (ok, stdout, _) = flightbench(&["query", "--dir", d, "digest"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Vec<String>>(&stdout).unwrap().len(), 2);
}

//! The binary: every bad input gives a one-line error naming the problem and the
//! documented exit code (`failure`: 64 usage, 65 bad input, 69 unreachable, 70
//! internal), never a panic.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::Command;

const USAGE: i32 = 64;
const BAD_INPUT: i32 = 65;
const UNREACHABLE: i32 = 69;

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn flightbench<S: Into<OsString> + Clone>(args: &[S]) -> Ran {
    let args: Vec<OsString> = args.iter().cloned().map(Into::into).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_flightbench")).args(&args).output().unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// Fails with `code`, an `error:` first line that mentions `needle`, and no panic.
fn assert_fails_with<S: Into<OsString> + Clone + std::fmt::Debug>(args: &[S], needle: &str, code: i32) {
    let ran = flightbench(args);
    assert!(!ran.stderr.contains("panicked"), "{args:?} panicked: {}", ran.stderr);
    assert_eq!(ran.code, Some(code), "{args:?}: exit code; stderr {}", ran.stderr);
    let first = ran.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error:"), "{args:?}: first line {first:?}");
    assert!(ran.stderr.contains(needle), "{args:?}: {:?} does not mention {needle:?}", ran.stderr);
}

fn seeded(flights: &str, shards: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let ran = flightbench(&["seed", "--dir", d, "--flights", flights, "--shards", shards, "--quiet"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    dir
}

#[test]
fn bad_inputs_give_one_line_errors_and_their_exit_codes() {
    let dir = seeded("300", "3");
    let d = dir.path().to_str().unwrap();

    let q = |rest: &[&'static str]| -> Vec<&str> { [&["query", "--dir", d][..], rest].concat() };
    assert_fails_with(&q(&["flight", "0"]), "flight id \"0\"", USAGE);
    assert_fails_with(&q(&["flight", "12x"]), "flight id \"12x\"", USAGE);
    assert_fails_with(&q(&["flight", "301"]), "flight 301 not found", BAD_INPUT);
    assert_fails_with(
        &q(&["departures", "jfk", "--from", "2026-12-01", "--to", "2026-12-02"]),
        "airport code \"jfk\"",
        USAGE,
    );
    assert_fails_with(&q(&["departures", "JFK", "--from", "2026-12-02", "--to", "2026-12-01"]), "inverted", USAGE);
    assert_fails_with(&q(&["departures", "JFK", "--from", "2026-12-01", "--to", "2028-12-01"]), "longer than", USAGE);
    assert_fails_with(&q(&["departures", "JFK", "--from", "tomorrow", "--to", "2026-12-02"]), "\"tomorrow\"", USAGE);
    let window = ["departures", "JFK", "--from", "2026-12-01", "--to", "2026-12-02"];
    assert_fails_with(&q(&[&window[..], &["--limit", "0"]].concat()), "limit 0", USAGE);
    assert_fails_with(&q(&[&window[..], &["--limit", "5000"]].concat()), "limit 5000", USAGE);
    assert_fails_with(&q(&["append", "5", "--expected-version", "0", "--kind", "reported"]), "--delay-minutes", USAGE);
    let append = ["append", "5", "--expected-version"];
    assert_fails_with(
        &q(&[&append[..], &["0", "--kind", "reported", "--delay-minutes", "-4"]].concat()),
        "-4 minutes",
        USAGE,
    );
    assert_fails_with(
        &q(&[&append[..], &["99", "--kind", "reported", "--delay-minutes", "4"]].concat()),
        "version conflict",
        BAD_INPUT,
    );
    assert_fails_with(&q(&["--path", "fast", "flight", "1"]), "fast", USAGE);

    let serve =
        |rest: &[&'static str]| -> Vec<&str> { [&["serve", "--dir", d, "--addr", "127.0.0.1:0"][..], rest].concat() };
    assert_fails_with(&serve(&["--runtime", "multi-thread", "--threads", "2"]), "--runtime per-core only", USAGE);
    assert_fails_with(&serve(&["--runtime", "multi-thread", "--pin"]), "--runtime per-core only", USAGE);
    assert_fails_with(&serve(&["--runtime", "per-core", "--threads", "0"]), "--threads", USAGE);
    assert_fails_with(&serve(&["--cache", "maybe"]), "maybe", USAGE);
    assert_fails_with(&serve(&["--cache-capacity", "0"]), "--cache-capacity", USAGE);
    assert_fails_with(&serve(&["--compression-level", "br=99"]), "outside", USAGE);
    assert_fails_with(
        &serve(&["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"]),
        "/nonexistent/c.pem",
        BAD_INPUT,
    );
    // An address this machine does not have cannot be listened on.
    assert_fails_with(
        &["serve", "--dir", d, "--addr", "192.0.2.1:8080"],
        "cannot listen on 192.0.2.1:8080",
        UNREACHABLE,
    );

    // Port 9 on loopback: nothing listens there.
    let load = |rest: &[&'static str]| -> Vec<&str> { [&["load", "--dir", d][..], rest].concat() };
    let url = ["--url", "http://127.0.0.1:9/", "--duration", "1s"];
    let with_url = |rest: &[&'static str]| -> Vec<&str> { load(&[&url[..], rest].concat()) };
    assert_fails_with(&with_url(&["-c", "0"]), "--connections must be 1..=", USAGE);
    assert_fails_with(&with_url(&["--loop", "closed", "--rate", "100"]), "--loop closed", USAGE);
    assert_fails_with(&with_url(&["--loop", "open"]), "needs --rate", USAGE);
    assert_fails_with(&with_url(&["--rate", "0"]), "--rate", USAGE);
    assert_fails_with(&with_url(&["-m", "8"]), "one request in flight", USAGE);
    assert_fails_with(&load(&url), "cannot connect to http://127.0.0.1:9/", UNREACHABLE);
    assert_fails_with(&load(&["--url", "http://127.0.0.1:9/"]), "must be bounded", USAGE);
    assert_fails_with(&load(&["--url", "http://10.11.12.13/", "-d", "1s"]), "not a loopback address", USAGE);
    assert_fails_with(&load(&["--url", "ftp://127.0.0.1/", "-d", "1s"]), "http:// or https://", USAGE);
    assert_fails_with(&load(&["--url", "https://127.0.0.1:9/", "-d", "1s"]), "--ca-cert", USAGE);
    assert_fails_with(&load(&["--mix", "read=1,fly=2", "-d", "1s"]), "fly", USAGE);
    assert_fails_with(&load(&["--target", "http://127.0.0.1:9/flights", "-d", "1s"]), "use --url", USAGE);
    assert_fails_with(&load(&["--url", "http://nonexistent.invalid/", "-d", "1s"]), "cannot resolve", UNREACHABLE);

    let profile =
        |rest: &[&'static str]| -> Vec<&str> { [&["profile", "--dir", d, "--seconds", "1"][..], rest].concat() };
    assert_fails_with(&profile(&["--compare", "speed=fast"]), "path, protocol, encoding and cache", USAGE);
    assert_fails_with(&profile(&["--compare", "path=raw"]), "already profiled", USAGE);
    assert_fails_with(&profile(&["--compare", "path=quick"]), "quick", USAGE);
    assert_fails_with(&profile(&["--compare", "adhoc"]), "KEY=VALUE", USAGE);
    assert_fails_with(&profile(&["--label", "a/b"]), "--label", USAGE);
    let attach = ["--attach", "http://127.0.0.1:9", "--admin", "http://127.0.0.1:10"];
    assert_fails_with(&profile(&[&attach[..], &["--cache", "off"]].concat()), "attached server", USAGE);
    assert_fails_with(&profile(&[&attach[..], &["--compare", "cache=off"]].concat()), "attached server", USAGE);
    assert_fails_with(
        &profile(&["--attach", "http://10.1.2.3:80", "--admin", "http://127.0.0.1:10"]),
        "loopback",
        USAGE,
    );
    assert_fails_with(&profile(&attach), "cannot connect to http://127.0.0.1:9", UNREACHABLE);
    assert_fails_with(&["profile", "--dir", "/nonexistent/flightbench"], "flightbench seed", BAD_INPUT);

    // Every part, from the one list, so a part added later cannot turn this into a run.
    let all: Vec<&str> = flightbench::workbench::Part::ALL.iter().map(|p| p.as_str()).collect();
    assert_fails_with(&["run", "--dir", d, "--skip", &all.join(",")], "--skip leaves nothing to run", USAGE);
    assert_fails_with(&["run", "--dir", d, "--only", "paths,speed"], "speed", USAGE);
    assert_fails_with(&["run", "--dir", d, "--out", d], "is not empty", USAGE);
    assert_fails_with(&["run", "--dir", d, "--flights", "5"], "--flights", USAGE);
    assert_fails_with(&["run", "--dir", d, "--quick", "--full"], "--full", USAGE);
    assert_fails_with(&["compare", "/nonexistent/a", "/nonexistent/b"], "cannot read /nonexistent/a", BAD_INPUT);
    let manifest = dir.path().join("manifest.json");
    let m = manifest.to_str().unwrap();
    assert_fails_with(&["compare", m, m], "is not a run.json", BAD_INPUT);
    assert_fails_with(
        &["query", "--dir", "/nonexistent/flightbench", "flight", "1"],
        "run `flightbench seed` first",
        BAD_INPUT,
    );
    assert_fails_with(&["seed", "--dir", d, "--flights", "10", "--quiet"], "--force", USAGE);
    assert_fails_with(&["seed", "--dir", d, "--flights", "0", "--force", "--quiet"], "--flights 0", USAGE);
    assert_fails_with(&["seed", "--dir", d, "--shards", "0", "--force", "--quiet"], "shard count 0", USAGE);
    assert_fails_with(&["seed", "--dir", d, "--backend", "postgres", "--force", "--quiet"], "--pg-url", USAGE);

    // Auth: flags that cannot work together, key files that are not there, a provider
    // that does not answer; all before the store is opened.
    let serve = |rest: &[&str]| -> Vec<String> {
        ["serve", "--dir", d, "--no-admin"].iter().chain(rest).map(|s| (*s).to_owned()).collect()
    };
    assert_fails_with(&serve(&["--auth", "jwks", "--audience", "a"]), "--auth jwks needs --oidc-issuer", USAGE);
    assert_fails_with(&serve(&["--auth", "oidc", "--oidc-issuer", "http://i"]), "needs --audience", USAGE);
    assert_fails_with(&serve(&["--audience", "a"]), "--audience has no effect with --auth off", USAGE);
    assert_fails_with(&serve(&["--tls-min", "1.3"]), "--tls-cert", USAGE);
    assert_fails_with(&serve(&["--tls-cert", m, "--tls-key", m, "--tls-min", "1.1"]), "1.1", USAGE);
    let jwks = ["--auth", "jwks", "--oidc-issuer", "i", "--audience", "a"];
    assert_fails_with(&serve(&[&jwks[..], &["--algorithms", "ES256,HS256"]].concat()), "--jwt-secret-file", USAGE);
    assert_fails_with(&serve(&[&jwks[..], &["--algorithms", "none"]].concat()), "none", USAGE);
    assert_fails_with(&serve(&[&jwks[..], &["--leeway", "1h"]].concat()), "--leeway", USAGE);
    assert_fails_with(&serve(&jwks), "--jwks FILE or --jwt-secret-file", USAGE);
    assert_fails_with(
        &serve(&[&jwks[..], &["--jwks", "/nonexistent/jwks.json"]].concat()),
        "/nonexistent/jwks.json",
        BAD_INPUT,
    );
    assert_fails_with(&serve(&[&jwks[..], &["--jwks", m]].concat()), "not a JSON Web Key Set", BAD_INPUT);
    let oidc = ["--auth", "oidc", "--oidc-issuer", "http://127.0.0.1:9", "--audience", "a"];
    assert_fails_with(&serve(&oidc), "discovering the keys of http://127.0.0.1:9", UNREACHABLE);
    let keys = dir.path().join("keys");
    let k = keys.to_str().unwrap();
    assert_fails_with(&["keys", "--dir", k, "new", "--alg", "RS256"], "openssl genpkey", USAGE);
    assert_fails_with(&["keys", "--dir", k, "new", "--kid", "../escape"], "kid \"../escape\"", USAGE);
    assert_fails_with(
        &["keys", "--dir", k, "new", "--alg", "RS256", "--import", m],
        "not a PKCS#8 PEM private key",
        BAD_INPUT,
    );
    assert_fails_with(&["token", "--dir", k], "keys", BAD_INPUT);
    assert_fails_with(&["token", "--dir", k, "--role", "root"], "root", USAGE);
    assert_fails_with(
        &["load", "--url", "http://127.0.0.1:9/", "--bearer-token", "a", "--token-file", m],
        "--token-file",
        USAGE,
    );

    std::fs::write(dir.path().join("manifest.json"), "{\"format\": 1, \"backend\": ").unwrap();
    assert_fails_with(&q(&["flight", "1"]), "not a valid manifest", BAD_INPUT);
}

/// Values at and past their edges, for every flag that takes a number, a duration, a
/// mix, a skew, a URL or a header: each a usage error, none a panic.
#[test]
fn hostile_values_at_and_past_the_edges_are_usage_errors() {
    let dir = seeded("200", "2");
    let d = dir.path().to_str().unwrap();
    let url = "http://127.0.0.1:9/";
    let load_cases: &[(&[&str], &str)] = &[
        (&["--url", url, "--rate", "1e-20", "--requests", "1"], "--rate"),
        (&["--url", url, "--rate", "1e-300", "-d", "1s"], "--rate"),
        (&["--url", url, "--rate", "NaN", "-d", "1s"], "--rate"),
        (&["--url", url, "--rate", "inf", "-d", "1s"], "--rate"),
        (&["--url", url, "--rate", "1e300", "-d", "1s"], "--rate"),
        (&["--url", url, "--rate", "-5", "-d", "1s"], "-5"),
        (&["--url", url, "--rate", "", "-d", "1s"], "--rate"),
        (&["--url", url, "--rate", "0.5", "--requests", "18446744073709551615"], "longer than a day"),
        (&["--url", url, "--rate", "100", "-d", "1s", "--pacing-tick", "11ms"], "--pacing-tick"),
        (&["--url", url, "--rate", "100", "-d", "1s", "--pacing-tick", "-1ms"], "-1"),
        (&["--url", url, "-d", "1s", "--pacing-tick", "1ms"], "needs --rate"),
        (&["--url", url, "-d", "1s", "-c", "18446744073709551616"], "--connections"),
        (&["--url", url, "-d", "1s", "-c", "1000000000"], "--connections must be 1..="),
        (&["--url", url, "-d", "1s", "--protocol", "h2", "-m", "0"], "--streams-per-connection"),
        (&["--url", url, "-d", "1s", "--protocol", "h2", "-m", "4000000000"], "--streams-per-connection"),
        (&["--url", url, "-d", "1s", "--threads", "0"], "--threads"),
        (&["--url", url, "-d", "1s", "--threads", "100000"], "--threads"),
        (&["--url", url, "--requests", "0"], "--requests"),
        (&["--url", url, "-d", "0s"], "duration"),
        (&["--url", url, "-d", "-1s"], "-1"),
        (&["--url", url, "-d", "NaN"], "duration"),
        (&["--url", url, "-d", "1e400"], "duration"),
        (&["--url", url, "-d", "99999999999999999999999m"], "duration"),
        (&["--url", url, "-d", ""], "duration"),
        (&["--url", url, "-d", "1s", "--timeout", "0"], "duration"),
        (&["--url", url, "-d", "1s", "--warmup", "-1s"], "-1"),
        (&["-d", "1s", "--mix", ""], "no request kind"),
        (&["-d", "1s", "--mix", "read=0"], "no request kind"),
        (&["-d", "1s", "--mix", "read=4294967296"], "weight"),
        (&["-d", "1s", "--mix", "read=99999999"], "weight"),
        (&["-d", "1s", "--mix", "read=-1"], "weight"),
        (&["-d", "1s", "--mix", "read=1,read=2"], "more than once"),
        (&["-d", "1s", "--mix", "=,="], "request kind"),
        (&["-d", "1s", "--skew", "NaN"], "skew"),
        (&["-d", "1s", "--skew", "inf"], "skew"),
        (&["-d", "1s", "--skew", "zipf:0"], "skew"),
        (&["-d", "1s", "--skew", "-1"], "-1"),
        (&["-d", "1s", "--skew", "1e309"], "skew"),
        (&["--url", url, "-d", "1s", "--header", "no colon"], "--header"),
        (&["--url", url, "-d", "1s", "--header", "bad name: x"], "--header"),
        (&["--url", url, "-d", "1s", "--header", ": empty name"], "--header"),
        (&["--url", url, "-d", "1s", "--accept-encoding", "a\u{7f}b"], "--accept-encoding"),
        (&["--url", "http://[::1", "-d", "1s"], "is not a URL"),
        (&["--url", "", "-d", "1s"], "URL"),
        (&["--url", "http://127.0.0.1:99999/", "-d", "1s"], "port \"99999\""),
        (&["--url", "http://127.0.0.1:0/", "-d", "1s"], "port \"0\""),
        (&["--url", "http:///nohost", "-d", "1s"], "URL"),
        (&["--target", "not a url", "-d", "1s"], "is not a URL"),
    ];
    for (rest, needle) in load_cases {
        let args: Vec<&str> = [&["load", "--dir", d][..], rest].concat();
        assert_fails_with(&args, needle, USAGE);
    }
    let other_cases: &[&[&str]] = &[
        &["seed", "--dir", d, "--flights", "100000001", "--force", "--quiet"],
        &["seed", "--dir", d, "--flights", "-1", "--force", "--quiet"],
        &["seed", "--dir", d, "--shards", "257", "--force", "--quiet"],
        &["seed", "--dir", d, "--days", "0", "--force", "--quiet"],
        &["seed", "--dir", d, "--start", "1969-12-31", "--force", "--quiet"],
        &["run", "--dir", d, "--rounds", "0"],
        &["run", "--dir", d, "--rounds", "1000000"],
        &["run", "--dir", d, "--seconds", "0s"],
        &["run", "--dir", d, "--seconds", "NaN"],
        &["compare", "a", "b", "--threshold", "NaN"],
        &["compare", "a", "b", "--threshold", "-1"],
        &["serve", "--dir", d, "--max-in-flight", "0"],
        &["serve", "--dir", d, "--header-timeout", "0s"],
        &["serve", "--dir", d, "--trace-sample-ratio", "1.5"],
        &["serve", "--dir", d, "--trace-sample-ratio", "NaN"],
        &["serve", "--dir", d, "--otlp-endpoint", "ftp://x"],
        &["serve", "--dir", d, "--addr", "not-an-address"],
        &["query", "--dir", d, "append", "1", "--expected-version", "0", "--kind", "landed"],
        &["query", "--dir", d, "flight", "99999999999999999999"],
        &["--log", "[[[", "query", "--dir", d, "flight", "1"],
        &["ceiling", "--body-bytes", "1"],
        &["no-such-command"],
    ];
    for args in other_cases {
        let ran = flightbench(args);
        assert!(!ran.stderr.contains("panicked"), "{args:?} panicked: {}", ran.stderr);
        assert_eq!(ran.code, Some(USAGE), "{args:?}: {}", ran.stderr);
        assert!(ran.stderr.trim_start().starts_with("error:"), "{args:?}: {}", ran.stderr);
    }
    // Arguments that are not UTF-8 at all.
    let not_utf8 = OsString::from_vec(vec![0x66, 0xff, 0xfe]);
    for args in [
        vec![
            OsString::from("load"),
            OsString::from("--url"),
            not_utf8.clone(),
            OsString::from("-d"),
            OsString::from("1s"),
        ],
        vec![
            OsString::from("query"),
            OsString::from("--dir"),
            OsString::from(d),
            OsString::from("flight"),
            not_utf8.clone(),
        ],
        vec![not_utf8.clone()],
    ] {
        let ran = flightbench(&args);
        assert!(!ran.stderr.contains("panicked"), "{args:?} panicked: {}", ran.stderr);
        assert_eq!(ran.code, Some(USAGE), "{args:?}: {}", ran.stderr);
    }
    // --help and --version are not errors.
    for args in [["--help"], ["--version"]] {
        let ran = flightbench(&args);
        assert_eq!(ran.code, Some(0), "{args:?}");
        assert!(!ran.stdout.is_empty());
    }
}

#[test]
fn query_prints_json_that_parses() {
    let dir = seeded("200", "2");
    let d = dir.path().to_str().unwrap();
    for path in ["prepared", "adhoc", "orm", "raw"] {
        let ran = flightbench(&["query", "--dir", d, "--path", path, "flight", "7"]);
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        let json: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(json["id"], 7);
        assert!(json["status"]["version"].is_i64());
    }
    let ran = flightbench(&["query", "--dir", d, "digest"]);
    assert_eq!(ran.code, Some(0));
    assert_eq!(serde_json::from_str::<Vec<String>>(&ran.stdout).unwrap().len(), 2);
}

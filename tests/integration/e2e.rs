//! Runs `scripts/e2e-http.sh` (curl and nghttp against a real server process over
//! HTTP/1.1, h2c and TLS) with the binary under test. `scripts/test.sh` installs the
//! tools; a missing tool fails the test rather than skipping it.

#[test]
fn real_clients_agree_on_protocols_and_encodings() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/e2e-http.sh"))
        .env("FLIGHTBENCH_BIN", env!("CARGO_BIN_EXE_flightbench"))
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "e2e script failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(stdout.contains("ok: TLS with ALPN h2"), "{stdout}");
}

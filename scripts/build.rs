//! Records the commit and compiler the binary is built with, so `flightbench run`
//! reports the code that produced its figures even when the checkout or toolchain has
//! moved on since the build.

use std::process::Command;

fn main() {
    for path in [".git/HEAD", ".git/refs", ".git/index", "src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={path}");
    }
    let output = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let commit = match output(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            let dirty = Command::new("git")
                .args(["diff", "--quiet", "HEAD", "--", "src", "Cargo.toml", "Cargo.lock"])
                .status()
                .is_ok_and(|s| !s.success());
            if dirty { format!("{commit} (with uncommitted changes)") } else { commit }
        }
        None => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=FLIGHTBENCH_COMMIT={commit}");
    // The compiler cargo is building with, not whichever rustc is on PATH at run time.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=FLIGHTBENCH_RUSTC={version}");
}

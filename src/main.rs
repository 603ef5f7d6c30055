//! The `flightbench` binary: parse, set up logging and the runtime, run, map the
//! error to a one-line message and an exit code. Everything else is in the library.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = flightbench::cli::Cli::parse();
    let telemetry = match flightbench::cli::init_telemetry(&cli) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(flightbench::cli::run(cli));
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

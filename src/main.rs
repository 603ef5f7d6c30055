//! The `flightbench` binary: parse, set up logging and the runtime, run, map the
//! error to a one-line message and an exit code (`failure` documents the codes).
//! Everything else is in the library.

use clap::Parser;
use flightbench::failure::Failure;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match flightbench::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version print to stdout and succeed; anything else is usage.
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { Failure::Usage.exit_code() } else { 0 });
        }
    };
    let telemetry = match flightbench::cli::init_telemetry(&cli) {
        Ok(telemetry) => telemetry,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    let outcome = runtime.block_on(flightbench::cli::run(cli));
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::from(flightbench::cli::failure_of(error).exit_code())
}

//! `flightbench load`: the load generator.
//!
//! Threads, not one runtime: each load thread runs a current-thread tokio runtime with
//! its share of the connections (as wrk runs one event loop per thread), so a request
//! and its response never cross cores inside the generator. Every thread keeps its own
//! [`Recorder`]; they are merged once at the end.
//!
//! Two loop models:
//! - **closed**: every stream sends its next request as soon as the previous answer
//!   arrives ("how fast can it go");
//! - **open** (`--rate`): requests follow a fixed schedule, and latency is measured
//!   from each request's *intended* send time, so a server stall shows in the
//!   percentiles (see `recorder`). The schedule's lag and the achieved rate are
//!   reported, with a warning when the generator could not keep the rate. The
//!   schedule is kept by `pacer`, to microseconds.
//!
//! Modules: `config` (what a run is, and its errors), `runner` (threads, the measured
//! window), `worker` (one stream's loop), `pacer` (the open loop's clock), `conn`,
//! `h1` and `http2` (the clients), `request` (encoding), `workload` (the mix),
//! `recorder` and `report` (the figures).

mod config;
pub mod conn;
mod h1;
mod http2;
mod pacer;
pub mod recorder;
pub mod report;
mod request;
mod runner;
mod worker;
pub mod workload;

pub use config::{LoadConfig, LoadError, LoopModel, Workload};
pub use runner::{run, run_until};

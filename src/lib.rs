//! # flightbench
//!
//! A flight-delay tracking service built to be measured: the same requests served from
//! 1 or N shards, through prepared statements, ad-hoc SQL, an ORM or the raw driver,
//! and the tooling that benchmarks, load-tests and profiles each choice.
//!
//! # Layout
//!
//! Layers, lowest first; a lower layer never imports a higher one.
//!
//! - [`choice`]: closed sets of named values (`choices!`): one `Display`, `FromStr`
//!   and serde spelling each, and the names the CLI offers. [`failure`]: what kind of
//!   failure an error is (the exit codes). [`machine`]: this machine and build, and
//!   CPU clocks. [`chance`]: the per-request random decisions. Pure or nearly; used
//!   by every layer.
//! - [`domain`]: validated values (ids, codes, times), delay events and the status
//!   projection they fold into. Pure.
//! - [`routing`]: which shard owns a flight (jump consistent hash). Pure.
//! - [`dataset`]: the deterministic generator and the manifest describing a seeded
//!   dataset.
//! - [`audit`]: the tamper-evident audit log's records, keyed BLAKE3 chains and their
//!   verification (which record was altered, deleted, inserted or reordered), and the
//!   log's SQL. Pure but for that text.
//! - [`seal`]: encryption at rest of the personal fields of delay reports: AES-256-GCM
//!   data keys per subject, wrapped by key-encryption keys from a file, in a key store
//!   (SQLite) apart from the shards; erasure by destroying a key; the key store's own
//!   audit chain.
//! - [`store`]: the sharded data layer, SQLite files or PostgreSQL databases, with every
//!   operation under four query paths (`prepared`, `adhoc`, `orm`, `raw`) and
//!   scatter-gather for queries not keyed by flight. One append (`store::path::append`)
//!   and one row mapping per table (`store::row`) serve every path and the seeders.
//!   With a sealer, appends seal and reads open (`personal`); with auditing, every
//!   append writes its audit record in its own transaction (`audited`).
//! - [`projection`]: the async read models (a departures board per airport on the
//!   airport's shard, per-airport-hour and per-carrier punctuality) and the runner that
//!   follows each shard's events in commit order, with checkpoints written in the same
//!   transaction as the rows.
//! - [`seed`]: writes a generated dataset into a fresh store, fast.
//! - [`bus`]: delay events over RabbitMQ: the outbox relay (the event table is the
//!   outbox; publisher confirms, `mandatory`, a checkpoint per shard), idempotent
//!   in-order consumers with retries and an error queue, reconnecting by themselves.
//! - [`reshard`]: moves a dataset to another shard count while it is served (copy,
//!   catch up from the event streams, verify, switch behind a fence); `http::follow`
//!   is the server's half.
//! - [`auth`]: who is calling: bearer tokens verified on `ring` against a static key
//!   set or an OpenID Connect provider's (discovered, refreshed), roles, and the
//!   development keys and tokens of `flightbench keys` and `token`. Uses [`load`]'s TLS
//!   client settings for an https provider; knows nothing of the server.
//! - [`notify`]: the notification service: webhook subscriptions in its own SQLite
//!   file, a delivery row per (subscription, event) recorded by its bus consumer, and a
//!   deliverer that signs (HMAC-SHA256 over time and body), retries and dead-letters.
//! - [`http`]: the server: hyper on tokio, HTTP/1.1, h2c and TLS on one port, the
//!   flight API over the store (`route` → `extract` → `handlers`), negotiated
//!   compression, limits, graceful shutdown, and an admin listener that is handed its
//!   profiler.
//! - [`gateway`]: `serve --role gateway`, the split service's one public listener:
//!   routes from the services' own split (or a JSON file, reloaded on change), HTTP/2
//!   to each destination, two random choices, active and passive health, a retry
//!   budget, 502/504 problems naming the route. Above `http`, whose listener it uses.
//! - [`compression`]: response codecs and their levels (used by the server and
//!   measured by `benches/compression.rs`).
//! - [`load`]: the load generator (its own HTTP/1.1 and HTTP/2 clients, closed loop
//!   and an open loop paced to microseconds, HDR latencies) and [`chart`], the SVG
//!   charts its reports draw.
//! - [`profile`]: pprof samples → collapsed stacks → inferno flamegraphs, plain and
//!   differential.
//! - [`harness`]: the server in-process on a loopback port, for commands that drive it
//!   with the load generator (`profile`).
//! - [`bench_report`]: criterion's estimates → `results/benchmarks.md`.
//! - [`workbench`]: `flightbench run`: every configuration (a typed `CellId`) measured
//!   in one command, a report whose findings are computed from the figures, and run
//!   comparison.
//! - [`telemetry`]: the process's logs (text or JSON) and trace export over OTLP; the
//!   server's metrics are in [`http`] (`GET /metrics`) and [`store`] (per-shard queries).
//!   [`trace_context`]: W3C `traceparent` in and out, so one trace spans the gateway
//!   and the service it forwards to.
//! - [`cli`]: the command line: flags → validated config → the layers above; the only
//!   module that knows clap or `anyhow`, and where errors become exit codes.

pub mod audit;
pub mod auth;
pub mod bench_report;
pub mod bus;
pub mod chance;
pub mod chart;
pub mod choice;
pub mod cli;
pub mod compression;
pub mod dataset;
pub mod domain;
pub mod failure;
pub mod gateway;
pub mod harness;
pub mod http;
pub mod load;
pub mod machine;
pub mod notify;
pub mod profile;
pub mod projection;
pub mod reshard;
pub mod routing;
pub mod seal;
pub mod seed;
pub mod store;
pub mod telemetry;
pub mod trace_context;
pub mod workbench;

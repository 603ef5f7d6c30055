//! Integration tests: one binary (see STYLE.md), one module per concern. Each test
//! seeds its own dataset, in a temp directory or uniquely named PostgreSQL databases
//! that are dropped afterwards.

mod admin;
mod api;
mod app;
mod audit;
mod auth;
mod bus;
mod cli;
mod client;
mod crash;
mod dashboard;
mod e2e;
mod gateway;
mod helpers;
mod injection;
mod load;
mod metrics;
mod oidc;
mod partitions;
mod paths;
mod pg_tls;
mod probes;
mod profile;
mod projections;
mod resharding;
mod sealing;
mod seeding;
mod services;
mod tls;
mod traces;
mod versions;
mod workbench;
mod writes;

//! Store metrics: the duration of every per-shard query, by operation, query path and
//! shard, and each shard's pool sizes read at scrape time.
//!
//! Per shard, not per store call: a departures request is a scatter over every shard,
//! and the slow shard is what an operator needs to see. The store call as a whole is
//! the request's duration minus HTTP work, and its trace span shows it.

use super::{QueryPath, Shard, ShardConn};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Latency buckets from 50 µs to about 3.3 s, doubling: a cached read on loopback
/// takes tens of microseconds, a scatter-gather under load tens of milliseconds.
/// Requests and store queries share them, so their histograms line up.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, 2.0, 17)
}

/// A histogram over [`latency_buckets`], as a metric family's constructor.
pub fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// A store operation, as metrics and spans name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Flight,
    Departures,
    Events,
    DelayHistogram,
    Append,
}

impl Op {
    const COUNT: usize = 5;

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Flight => "flight",
            Op::Departures => "departures",
            Op::Events => "events",
            Op::DelayHistogram => "delay_histogram",
            Op::Append => "append",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    op: &'static str,
    path: &'static str,
    shard: usize,
}

/// Per-shard query durations, one lazily resolved series per (op, path, shard).
pub struct StoreMetrics {
    queries: Family<QueryLabels, Histogram>,
    slots: Box<[OnceLock<Histogram>]>,
    shards: usize,
}

impl StoreMetrics {
    pub fn register(registry: &mut Registry, shards: usize) -> Arc<Self> {
        let queries = Family::<QueryLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "store_query_duration",
            "One query on one shard, by store operation, query path and shard",
            Unit::Seconds,
            queries.clone(),
        );
        let slots = (0..Op::COUNT * QueryPath::ALL.len() * shards).map(|_| OnceLock::new()).collect();
        Arc::new(Self { queries, slots, shards })
    }

    pub fn observe(&self, op: Op, path: QueryPath, shard: usize, elapsed: Duration) {
        let series =
            || self.queries.get_or_create(&QueryLabels { op: op.as_str(), path: path.as_str(), shard }).clone();
        // A shard beyond the count registered (a server that followed a reshard to more
        // shards) has no slot: it is looked up each time rather than filed under
        // another shard's slot.
        if shard >= self.shards {
            return series().observe(elapsed.as_secs_f64());
        }
        let path_index = QueryPath::ALL.iter().position(|p| *p == path).unwrap_or(0);
        let slot = (op as usize * QueryPath::ALL.len() + path_index) * self.shards + shard;
        let Some(slot) = self.slots.get(slot) else { return };
        slot.get_or_init(series).observe(elapsed.as_secs_f64());
    }
}

/// One pool of one shard, as `/metrics` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    pub shard: usize,
    /// `sqlx` (the prepared, adhoc and orm paths) or `raw`.
    pub pool: &'static str,
    pub open: usize,
    pub idle: usize,
    /// The most connections the pool opens; the raw SQLite pool has no fixed maximum.
    pub max: Option<usize>,
    /// Tasks waiting for a connection, where the pool reports it.
    pub waiting: Option<usize>,
}

pub(crate) fn pool_stats(shard: &Shard, pool_size: u32) -> [PoolStats; 2] {
    let sqlx_pool = |open: u32, idle: usize| PoolStats {
        shard: shard.index,
        pool: "sqlx",
        open: open as usize,
        idle,
        max: Some(pool_size as usize),
        waiting: None,
    };
    match &shard.conn {
        ShardConn::Sqlite(s) => {
            let (open, idle) = s.raw.stats();
            [
                sqlx_pool(s.pool.size(), s.pool.num_idle()),
                PoolStats { shard: shard.index, pool: "raw", open, idle, max: None, waiting: None },
            ]
        }
        ShardConn::Postgres(p) => {
            let status = p.raw.status();
            [
                sqlx_pool(p.pool.size(), p.pool.num_idle()),
                PoolStats {
                    shard: shard.index,
                    pool: "raw",
                    open: status.size,
                    idle: status.available,
                    max: Some(status.max_size),
                    waiting: Some(status.waiting),
                },
            ]
        }
    }
}

//! The PostgreSQL half of a reshard: the same steps as `sqlite`, over one database per
//! shard. The new layout's databases are created beside the old ones, on the servers
//! the old shards use (new shard `j` on old shard `j mod n`'s server), named after the
//! old ones with the layout's generation (`flightbench_0` → `flightbench_l2_0`).
//!
//! Rows are read with their declared types (every column is `BIGINT` or `TEXT`) and
//! written with binary `COPY`, so sealed fields and hashes arrive byte for byte. The
//! switch locks each old shard's `flight_status` in EXCLUSIVE mode (writers wait;
//! readers do not; see [`pause`]), and the fence is a trigger, committed in the same
//! transaction.

use super::sql::{
    AUDIT_HEAD_TIME, AUDIT_SINCE, EVENT_SEQ, EVENT_VERSION, EVENTS, EVENTS_AFTER, EVENTS_NUMBERED, EVENTS_SINCE,
    FLIGHTS, INSERT_AUDIT, INSERT_EVENT, PUT_CHECKPOINT, PUT_STATUS, RELAY_CHECKPOINTS, RENUMBER, SEQUENCE_HEAD,
    STATUS, TOUCHED,
};
use super::{Bundles, CaughtUp, EventIds, Mismatch, audit_home};
use crate::routing::ShardCount;
use crate::store::row::{event_columns, flight_columns, status_columns};
use crate::store::schema::{
    AUDIT_TABLE, INDEXES, POSTGRES_AUDIT, POSTGRES_SEQUENCING, POSTGRES_TABLES, postgres_partitions, projection_tables,
};
use bytes::BytesMut;
use std::collections::{BTreeMap, BTreeSet};
use std::pin::pin;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

pub(super) const FENCE: &str = "CREATE OR REPLACE FUNCTION flightbench_retired() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN RAISE EXCEPTION 'flightbench: this shard layout was retired by reshard'; END $$;
     CREATE OR REPLACE TRIGGER flightbench_retired_events BEFORE INSERT ON delay_events
        FOR EACH ROW EXECUTE FUNCTION flightbench_retired();
     CREATE OR REPLACE TRIGGER flightbench_retired_status BEFORE UPDATE ON flight_status
        FOR EACH ROW EXECUTE FUNCTION flightbench_retired();";
/// How many fence triggers a shard has.
pub(super) const FENCED: &str = "SELECT COUNT(*) FROM pg_trigger WHERE tgname LIKE 'flightbench_retired%'";
pub(super) const UNFENCE: &str = "DROP TRIGGER IF EXISTS flightbench_retired_events ON delay_events; \
     DROP TRIGGER IF EXISTS flightbench_retired_status ON flight_status; \
     DROP FUNCTION IF EXISTS flightbench_retired();";

/// A column value as stored: every column of these tables is BIGINT or TEXT.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Val {
    Int(Option<i64>),
    Text(Option<String>),
}

impl ToSql for Val {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Int(v) => v.to_sql(ty, out),
            Val::Text(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <Option<i64> as ToSql>::accepts(ty) || <Option<String> as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

type Row = Vec<Val>;

async fn rows(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(Vec<Type>, Vec<Row>), tokio_postgres::Error> {
    let statement = client.prepare(sql).await?;
    let types: Vec<Type> = statement.columns().iter().map(|c| c.type_().clone()).collect();
    let found = client.query(&statement, params).await?;
    let mut out = Vec::with_capacity(found.len());
    for row in found {
        let mut values = Vec::with_capacity(types.len());
        for (i, ty) in types.iter().enumerate() {
            values.push(if *ty == Type::TEXT { Val::Text(row.try_get(i)?) } else { Val::Int(row.try_get(i)?) });
        }
        out.push(values);
    }
    Ok((types, out))
}

fn int(v: &Val) -> i64 {
    match v {
        Val::Int(Some(i)) => *i,
        _ => 0,
    }
}

fn text(v: &Val) -> &str {
    match v {
        Val::Text(Some(t)) => t,
        _ => "",
    }
}

fn params(row: &Row) -> Vec<&(dyn ToSql + Sync)> {
    row.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

pub(super) async fn sequence_head(client: &Client) -> Result<i64, tokio_postgres::Error> {
    client.query_one(SEQUENCE_HEAD, &[]).await.map(|r| r.get(0))
}

/// Each outbox relay's events on old shard `shard` that it has not published: by
/// checkpoint name, (flight, version) in commit order.
pub(super) async fn unpublished(
    client: &Client,
    shard: usize,
) -> Result<Vec<(String, EventIds)>, tokio_postgres::Error> {
    let mut found = Vec::new();
    for row in client.query(RELAY_CHECKPOINTS, &[&(shard as i64)]).await? {
        let (name, published): (String, i64) = (row.get(0), row.get(1));
        let events = client.query(EVENTS_SINCE, &[&published]).await?;
        found.push((name, events.iter().map(|r| (r.get(0), r.get(1))).collect()));
    }
    Ok(found)
}

/// Sets relay checkpoint `name` of new shard `shard`: before the first of `events`
/// (those of its flights the relay has not published), or at the shard's newest event.
pub(super) async fn carry_checkpoint(
    client: &Client,
    shard: usize,
    name: &str,
    events: &[(i64, i64)],
) -> Result<i64, tokio_postgres::Error> {
    let mut position = sequence_head(client).await?;
    for (flight, version) in events {
        let seq: i64 = client.query_one(EVENT_SEQ, &[flight, version]).await?.get(0);
        position = position.min(seq - 1);
    }
    client.execute(PUT_CHECKPOINT, &[&name, &(shard as i64), &position]).await?;
    Ok(position)
}

pub(super) async fn audit_head_time(client: &Client) -> Result<i64, tokio_postgres::Error> {
    client.query_one(AUDIT_HEAD_TIME, &[]).await.map(|r| r.get(0))
}

/// A new shard database's tables, as `seed` creates them before its load: no
/// secondary indexes, no sequencing trigger yet.
pub(super) async fn create_target(
    client: &Client,
    spec: &crate::dataset::DatasetSpec,
) -> Result<(), tokio_postgres::Error> {
    for ddl in POSTGRES_TABLES {
        client.batch_execute(ddl).await?;
    }
    for ddl in postgres_partitions(spec) {
        client.batch_execute(&ddl).await?;
    }
    client.batch_execute(AUDIT_TABLE).await
}

/// Writes `rows` of one table to each target with binary `COPY`.
async fn copy_in(
    targets: &[Client],
    table: &str,
    columns: &str,
    types: &[Type],
    routed: Vec<Vec<Row>>,
) -> Result<(), tokio_postgres::Error> {
    for (target, rows) in targets.iter().zip(routed) {
        if rows.is_empty() {
            continue;
        }
        let sink = target.copy_in(&format!("COPY {table} ({columns}) FROM STDIN BINARY")).await?;
        let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
        for row in &rows {
            writer.as_mut().write(&params(row)).await?;
        }
        writer.finish().await?;
    }
    Ok(())
}

fn route(rows: Vec<Row>, to: ShardCount) -> Vec<Vec<Row>> {
    let mut routed = vec![Vec::new(); to.get() as usize];
    for row in rows {
        routed[to.shard_for(int(&row[0]))].push(row);
    }
    routed
}

/// `sqlite::copy_chunk` on PostgreSQL.
pub(super) async fn copy_chunk(
    old: &Client,
    from: i64,
    to_id: i64,
    to: ShardCount,
    targets: &[Client],
) -> Result<(u64, u64), tokio_postgres::Error> {
    let (types, flights) = rows(old, FLIGHTS, &[&from, &to_id]).await?;
    let n = flights.len() as u64;
    copy_in(targets, "flights", flight_columns!(), &types, route(flights, to)).await?;
    let (types, status) = rows(old, STATUS, &[&from, &to_id]).await?;
    copy_in(targets, "flight_status", status_columns!(), &types, route(status, to)).await?;
    let (types, events) = rows(old, EVENTS_NUMBERED, &[&from, &to_id]).await?;
    let e = events.len() as u64;
    copy_in(targets, "delay_events", concat!(event_columns!(), ", seq"), &types, route(events, to)).await?;
    Ok((n, e))
}

/// `sqlite::copy_audit` on PostgreSQL.
pub(super) async fn copy_audit(
    old: &Client,
    since: i64,
    to: ShardCount,
    targets: &[Client],
) -> Result<i64, tokio_postgres::Error> {
    let (_, found) = rows(old, AUDIT_SINCE, &[&since]).await?;
    let mut newest = since;
    for row in &found {
        newest = newest.max(int(&row[2]));
        targets[audit_home(text(&row[0]), text(&row[8]), to)].execute(INSERT_AUDIT, &params(row)).await?;
    }
    Ok(newest)
}

/// `sqlite::finish_target` on PostgreSQL.
pub(super) async fn finish_target(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(RENUMBER).await?;
    for ddl in INDEXES.iter().chain(POSTGRES_SEQUENCING).chain(POSTGRES_AUDIT) {
        client.batch_execute(ddl).await?;
    }
    for ddl in projection_tables() {
        client.batch_execute(&ddl).await?;
    }
    client.batch_execute("ANALYZE").await
}

/// `sqlite::catch_up` on PostgreSQL: its own repeatable-read snapshot unless `held`
/// (the switch's transaction).
pub(super) async fn catch_up(
    old: &Client,
    held: bool,
    cursor: i64,
    audit_since: i64,
    to: ShardCount,
    targets: &[Client],
) -> Result<CaughtUp, tokio_postgres::Error> {
    if !held {
        old.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
    }
    let result = catch_up_in_snapshot(old, cursor, audit_since, to, targets).await;
    if !held {
        old.batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" }).await?;
    }
    result
}

async fn catch_up_in_snapshot(
    old: &Client,
    cursor: i64,
    audit_since: i64,
    to: ShardCount,
    targets: &[Client],
) -> Result<CaughtUp, tokio_postgres::Error> {
    let head = sequence_head(old).await?;
    let touched: BTreeSet<i64> = old.query(TOUCHED, &[&cursor, &head]).await?.iter().map(|r| r.get(0)).collect();
    let mut events = 0;
    for &flight in &touched {
        let target = &targets[to.shard_for(flight)];
        let have: i64 = target.query_one(EVENT_VERSION, &[&flight]).await?.get(0);
        let (_, missing) = rows(old, EVENTS_AFTER, &[&flight, &have]).await?;
        let (_, status) = rows(old, STATUS, &[&flight, &(flight + 1)]).await?;
        target.batch_execute("BEGIN").await?;
        for row in &missing {
            target.execute(INSERT_EVENT, &params(row)).await?;
            events += 1;
        }
        for row in &status {
            target.execute(PUT_STATUS, &params(row)).await?;
        }
        target.batch_execute("COMMIT").await?;
    }
    let since = audit_since.saturating_sub(super::AUDIT_SLACK_MICROS);
    let audit_since = copy_audit(old, since, to, targets).await?;
    Ok(CaughtUp { cursor: head, audit_since, events, flights: touched })
}

async fn bundles(client: &Client, from: i64, to_id: i64) -> Result<Bundles, tokio_postgres::Error> {
    let mut hashers: BTreeMap<i64, (i64, blake3::Hasher)> = BTreeMap::new();
    for (table, sql) in [(0u8, FLIGHTS), (1, STATUS), (2, EVENTS)] {
        for row in rows(client, sql, &[&from, &to_id]).await?.1 {
            let (version, hasher) = hashers.entry(int(&row[0])).or_insert_with(|| (0, blake3::Hasher::new()));
            if table == 1 {
                *version = int(&row[1]);
            }
            hasher.update(&[table]);
            for value in &row {
                match value {
                    Val::Int(None) | Val::Text(None) => hasher.update(&[0]),
                    Val::Int(Some(i)) => hasher.update(&[1]).update(&i.to_le_bytes()),
                    Val::Text(Some(t)) => {
                        hasher.update(&[3]).update(&(t.len() as u64).to_le_bytes()).update(t.as_bytes())
                    }
                };
            }
        }
    }
    Ok(hashers.into_iter().map(|(id, (version, h))| (id, (version, *h.finalize().as_bytes()))).collect())
}

fn read(e: tokio_postgres::Error) -> Mismatch {
    Mismatch::Read(e.to_string())
}

/// `sqlite::compare_chunk` on PostgreSQL.
pub(super) async fn compare_chunk(
    old: &[Client],
    new: &[Client],
    from: i64,
    to_id: i64,
    to: ShardCount,
    moving: &mut BTreeSet<i64>,
) -> Result<u64, Mismatch> {
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for client in old {
        before.push(bundles(client, from, to_id).await.map_err(read)?);
    }
    for client in new {
        after.push(bundles(client, from, to_id).await.map_err(read)?);
    }
    super::compare_gathered(before, after, to, moving)
}

/// `sqlite::compare_flights` on PostgreSQL.
pub(super) async fn compare_flights(
    old: &[Client],
    new: &[Client],
    from: ShardCount,
    to: ShardCount,
    ids: &BTreeSet<i64>,
) -> Result<BTreeSet<i64>, Mismatch> {
    let mut moving = BTreeSet::new();
    for &id in ids {
        let before = bundles(&old[from.shard_for(id)], id, id + 1).await.map_err(read)?;
        let after = bundles(&new[to.shard_for(id)], id, id + 1).await.map_err(read)?;
        super::compare_bundles(before, after, &mut moving)?;
    }
    Ok(moving)
}

/// `sqlite::audit_heads` on PostgreSQL.
pub(super) async fn audit_heads(clients: &[Client]) -> Result<super::AuditHeads, Mismatch> {
    let mut heads = super::AuditHeads::new();
    for client in clients {
        let found = client
            .query(
                "SELECT chain, COUNT(*)::BIGINT, MAX(seq)::BIGINT, (array_agg(hash ORDER BY seq DESC))[1] \
                 FROM audit_log GROUP BY chain",
                &[],
            )
            .await
            .map_err(read)?;
        for row in found {
            super::add_head(&mut heads, row.get(0), row.get(1), row.get(2), row.get(3));
        }
    }
    Ok(heads)
}

/// Pauses writes on an old shard: its transaction holds `flight_status` in EXCLUSIVE
/// mode (readers go on). Every append updates the flight's status row before it
/// inserts the event, so this one lock stops them all: an append that updated its
/// status first commits before the lock is granted, any later one waits at its
/// update. Locking `delay_events` as well would deadlock with an append between its
/// two statements.
pub(super) async fn pause(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("BEGIN; LOCK TABLE flight_status IN EXCLUSIVE MODE").await
}

/// Fences an old shard in the transaction [`pause`] opened, and commits.
pub(super) async fn fence_and_commit(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(FENCE).await?;
    client.batch_execute("COMMIT").await
}

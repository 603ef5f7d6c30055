//! PostgreSQL range partitioning: a one-day departures query touches one partition.

use crate::helpers::{Kind, dataset, spec};
use flightbench::store::sql;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_day_departures_query_touches_one_partition() {
    // 45 days from 2026-12-01: partitions for December and January.
    let ds = dataset(Kind::Postgres, spec(21, 600, 45), 1).await;
    let url = ds.store.manifest().postgres.as_ref().unwrap().shard_urls[0].clone();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);

    let partitions: Vec<String> = client
        .query("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'flights'::regclass ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(partitions, ["flights_y2026m12", "flights_y2027m01"]);

    let day = flightbench::domain::UtcTime::parse("2026-12-10").unwrap().unix();
    let explain = |sql: String| {
        let client = &client;
        async move {
            let rows = client.query(&format!("EXPLAIN {sql}"), &[]).await.unwrap();
            rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n")
        }
    };
    let departures = sql::DEPARTURES
        .replace("$1", "'ATL'")
        .replace("$2", &day.to_string())
        .replace("$3", &(day + 86_400).to_string())
        .replace("$4", "50");
    let plan = explain(departures).await;
    assert!(plan.contains("flights_y2026m12"), "{plan}");
    assert!(!plan.contains("flights_y2027m01"), "the January partition was not pruned:\n{plan}");

    // A window across the month boundary does need both.
    let jan1 = flightbench::domain::UtcTime::parse("2027-01-01").unwrap().unix();
    let across = sql::DEPARTURES
        .replace("$1", "'ATL'")
        .replace("$2", &(jan1 - 3_600).to_string())
        .replace("$3", &(jan1 + 3_600).to_string())
        .replace("$4", "50");
    let plan = explain(across).await;
    assert!(plan.contains("flights_y2026m12") && plan.contains("flights_y2027m01"), "{plan}");
}

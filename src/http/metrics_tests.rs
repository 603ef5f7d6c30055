//! The metrics encoding's tests.

use super::*;

#[test]
fn openmetrics_becomes_prometheus_text() {
    let openmetrics = "# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests_total 3\n\
         # HELP x_duration_seconds Time.\n# TYPE x_duration_seconds histogram\n# UNIT x_duration_seconds seconds\n\
         x_duration_seconds_count 1\n# EOF\n";
    assert_eq!(
        to_prometheus_text(openmetrics),
        "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\nx_requests_total 3\n\
         # HELP x_duration_seconds Time.\n# TYPE x_duration_seconds histogram\nx_duration_seconds_count 1\n"
    );
    assert!(wants_openmetrics(Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")));
    assert!(!wants_openmetrics(Some("*/*")) && !wants_openmetrics(None));
}

#[test]
fn requests_land_in_their_series() {
    let metrics = ServerMetrics::new(2);
    let ms = Duration::from_millis(3);
    metrics.observe_request(Route::Flight, &Method::GET, StatusCode::OK, Version::HTTP_11, ms);
    metrics.observe_request(Route::Flight, &Method::GET, StatusCode::NOT_FOUND, Version::HTTP_2, ms);
    metrics.observe_request(Route::Flight, &Method::GET, StatusCode::OK, Version::HTTP_11, ms);
    metrics.observe_body(Encoding::Br, 1_000, 150);
    metrics.store.observe(crate::store::Op::Departures, crate::store::QueryPath::Raw, 1, ms);
    let shard = |shard, ready, lag| ShardHealth {
        shard,
        ready,
        answered_ms: Some(1.5),
        projection_lag_events: lag,
        projection_checked_ms_ago: lag.map(|_| 0),
        error: None,
    };
    let shards = vec![shard(0, true, Some(0)), shard(1, false, None)];
    let cpu = Some(crate::machine::CpuTime { user_s: 1.5, system_s: 0.25 });
    let async_lags = vec![AsyncLag { projection: "carrier_on_time", shard: 1, lag_events: 7, started: true }];
    let projector = ProjectorStats::new(vec![(
        crate::projection::ReadModel::CarrierOnTime,
        1,
        Arc::new(FollowerStats { applied: 42.into(), ..FollowerStats::default() }),
    )]);
    let scraped = Scraped {
        in_flight: 2,
        max_in_flight: 8,
        cache: None,
        pools: Vec::new(),
        shards,
        async_lags,
        projector: Some(Arc::new(projector)),
        cpu,
        live: Some((3, 40, 1)),
        stalled_writes: 2,
    };
    let text = to_prometheus_text(&metrics.encode(scraped));
    let sample = |prefix: &str| {
        text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix} missing:\n{text}")).to_owned()
    };
    let ok = r#"flightbench_http_request_duration_seconds_count{route="/flights/{id}",method="GET",status="2xx",protocol="http/1.1"}"#;
    assert_eq!(sample(ok), format!("{ok} 2"));
    let not_found = r#"flightbench_http_request_duration_seconds_count{route="/flights/{id}",method="GET",status="4xx",protocol="h2"}"#;
    assert_eq!(sample(not_found), format!("{not_found} 1"));
    assert_eq!(sample(r#"flightbench_http_response_sent_bytes_total{encoding="br"}"#).split(' ').nth(1), Some("150"));
    let shard = r#"flightbench_store_query_duration_seconds_count{op="departures",path="raw",shard="1"}"#;
    assert_eq!(sample(shard), format!("{shard} 1"));
    assert_eq!(sample("flightbench_http_requests_in_flight "), "flightbench_http_requests_in_flight 2");
    assert_eq!(sample("flightbench_process_cpu_seconds_total "), "flightbench_process_cpu_seconds_total 1.75");
    assert!(sample("flightbench_build_info{").ends_with(" 1"));
    assert_eq!(sample(r#"flightbench_shard_ready{shard="1"}"#), r#"flightbench_shard_ready{shard="1"} 0"#);
    assert_eq!(
        sample(r#"flightbench_projection_lag_events{shard="0"}"#),
        r#"flightbench_projection_lag_events{shard="0"} 0"#
    );
    assert!(!text.contains(r#"flightbench_projection_lag_events{shard="1"}"#), "unknown lag is absent, not 0");
    let lag = r#"flightbench_async_projection_lag_events{projection="carrier_on_time",shard="1"}"#;
    assert_eq!(sample(lag), format!("{lag} 7"));
    let applied = r#"flightbench_projection_events_applied_total{projection="carrier_on_time",shard="1"}"#;
    assert_eq!(sample(applied), format!("{applied} 42"));
    assert_eq!(sample("flightbench_live_subscribers "), "flightbench_live_subscribers 3");
    let stalled = "flightbench_http_connections_write_stalled_total ";
    assert_eq!(sample(stalled), format!("{stalled}2"));
    assert_eq!(sample("flightbench_live_subscribers_dropped_total "), "flightbench_live_subscribers_dropped_total 1");
}

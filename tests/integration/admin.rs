//! The admin listener of a real `flightbench serve` process: a CPU profile of the
//! server under load in each format, one profile at a time, bad parameters refused,
//! and nothing of it on the public port.

use crate::app::ServeProcess;
use crate::client::{Proto, get, try_send};
use crate::helpers::{Kind, dataset, spec};
use http::StatusCode;
use http_body_util::Full;
use std::net::SocketAddr;

async fn profile(admin: SocketAddr, query: &str) -> crate::client::Reply {
    let uri = format!("/debug/pprof/profile?{query}");
    try_send(admin, Proto::H1, get(&uri).body(Full::default()).unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_of_the_live_server() {
    let ds = dataset(Kind::Sqlite, spec(5, 2_000, 10), 2).await;
    let mut server = ServeProcess::start(ds.dir(), &[], &["--admin-addr", "127.0.0.1:0"], false).await;
    let (api, admin) = (server.api, server.admin.expect("an admin listener"));
    assert_eq!(admin.ip(), std::net::Ipv4Addr::LOCALHOST, "loopback by default");
    assert_ne!(api.port(), admin.port());

    // Load in the background until every profile is taken (a fixed duration would
    // race a slow machine and leave a profile of an idle server).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_load = stop.clone();
    let load = tokio::spawn(async move {
        while !stop_load.load(std::sync::atomic::Ordering::Relaxed) {
            let id = rand::random_range(1..=2_000);
            let _ = try_send(api, Proto::H1, get(&format!("/flights/{id}")).body(Full::default()).unwrap()).await;
        }
    });

    // Two at once: exactly one runs (whichever arrives first), the other is refused
    // with 409 while it does.
    let query = "seconds=2&format=folded&frequency=499";
    let (first, second) = tokio::join!(profile(admin, query), profile(admin, query));
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "{:?} / {:?}", first.body, second.body);
    let (a, b) = if first.status == StatusCode::OK { (first, second) } else { (second, first) };
    assert!(String::from_utf8_lossy(&b.body).contains("already running"), "{:?}", b.body);
    let folded = String::from_utf8(a.body.to_vec()).unwrap();
    let mut samples = 0;
    for line in folded.lines() {
        let (stack, count) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a folded line: {line:?}"));
        assert!(!stack.is_empty());
        samples += count.parse::<u64>().unwrap_or_else(|_| panic!("bad count in {line:?}"));
    }
    assert!(samples > 0, "no samples");
    assert!(folded.contains("flightbench::"), "the server's own functions are named");

    let svg = profile(admin, "seconds=2&frequency=499").await;
    assert_eq!(svg.status, StatusCode::OK);
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    let svg = String::from_utf8(svg.body.to_vec()).unwrap();
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"), "{}", &svg[..200.min(svg.len())]);
    assert!(svg.contains("flightbench::"), "SVG names the server's functions");

    // The protobuf parses as pprof's profile.proto, as `go tool pprof` reads it.
    let proto = profile(admin, "seconds=2&format=pprof&frequency=499").await;
    assert_eq!(proto.status, StatusCode::OK);
    assert_eq!(proto.header("content-type"), Some("application/octet-stream"));
    let decoded = <pprof::protos::Profile as pprof::protos::Message>::decode(proto.body.as_ref()).unwrap();
    let names = &decoded.string_table;
    assert_eq!(names.first().map(String::as_str), Some(""), "the string table starts empty");
    let sample_type = decoded.sample_type.first().expect("a sample type");
    assert_eq!(names[sample_type.ty as usize], "samples");
    assert!(decoded.sample.iter().map(|s| s.value[0]).sum::<i64>() > 0, "no samples");
    assert!(
        decoded.function.iter().any(|f| names[f.name as usize].contains("flightbench::")),
        "the protobuf names the server's functions"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();

    for bad in ["seconds=0", "seconds=-1", "seconds=100000", "format=png"] {
        let reply = profile(admin, bad).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(String::from_utf8_lossy(&reply.body).contains(bad.split('=').next().unwrap()), "{bad}");
    }
    // The public port does not serve it.
    let public =
        try_send(api, Proto::H1, get("/debug/pprof/profile?seconds=1").body(Full::default()).unwrap()).await.unwrap();
    assert_eq!(public.status, StatusCode::NOT_FOUND);
    server.child.start_kill().unwrap();
}

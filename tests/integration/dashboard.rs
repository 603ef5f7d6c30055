//! The live dashboard and its feed: a real browser sees a posted delay, a subscriber
//! that stops reading is dropped with a final event while writes and the others go
//! on, and a server shutting down ends its streams instead of waiting for them.

use crate::app::ServeProcess;
use crate::client::{PROTOS, get, post_delay, send};
use crate::helpers::{Kind, TestDataset, dataset, spec};
use http_body_util::Full;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Headless Chromium driven over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: commands in on fd 3, replies out on fd 4, each a JSON
/// message ended by a NUL byte), so no WebSocket client is needed.
struct Chromium {
    child: std::process::Child,
    commands: std::io::PipeWriter,
    replies: std::sync::mpsc::Receiver<Value>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Chromium {
    fn start() -> Self {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let binary = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
            .expect("headless Chromium is needed for the dashboard test: apt-get install -y chromium (scripts/test.sh does)");
        let profile = tempfile::tempdir().unwrap();
        let (their_commands, commands) = std::io::pipe().unwrap();
        let (mut replies_in, their_replies) = std::io::pipe().unwrap();
        let (read_fd, write_fd) = (their_commands.as_raw_fd(), their_replies.as_raw_fd());
        let mut command = std::process::Command::new(binary);
        command
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"])
            .args(["--remote-debugging-pipe", "--window-size=1400,1000", "about:blank"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: dup2 is async-signal-safe; the child only moves two descriptors it
        // inherited into the places the protocol expects (dup2 clears close-on-exec).
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(read_fd, 3) < 0 || libc::dup2(write_fd, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        drop((their_commands, their_replies));
        let (tx, replies) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n) = replies_in.read(&mut buf) {
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(value) = serde_json::from_slice(&message[..end]) {
                        let _ = tx.send(value);
                    }
                }
            }
        });
        Self { child, commands, replies, next_id: 0, _profile: profile }
    }

    /// Sends a command (to a page's session when given) and returns its result.
    fn call(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self.replies.recv_timeout(left).unwrap_or_else(|_| panic!("no reply to {method} in 30 s"));
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Opens `url` in a new page; returns the page's session.
    fn open(&mut self, url: &str) -> String {
        let target = self.call("Target.createTarget", json!({ "url": url }), None);
        let attached =
            self.call("Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }), None);
        attached["sessionId"].as_str().unwrap().to_owned()
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, session: &str, expression: &str) -> Value {
        let result =
            self.call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true }), Some(session));
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is truthy; returns its value and how long that took.
    fn wait_for(&mut self, session: &str, expression: &str, within: Duration) -> (Value, Duration) {
        let started = Instant::now();
        loop {
            let value = self.eval(session, expression);
            if !(value.is_null() || value == json!(false) || value == json!("")) {
                return (value, started.elapsed());
            }
            assert!(started.elapsed() < within, "{expression:?} still not true after {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
    digits
        .chunks(4)
        .flat_map(|chunk| {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
            n.to_be_bytes()[1..chunk.len()].to_vec()
        })
        .collect()
}

/// A flight that still takes events, and its origin.
fn open_flight(ds: &TestDataset) -> (i64, i64, String) {
    let id = (1..=ds.flight_count()).find(|&id| !ds.expected_flight(id).unwrap().status.state.is_terminal()).unwrap();
    let view = ds.expected_flight(id).unwrap();
    (id, view.status.version, view.flight.origin.as_str().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_posted_through_the_api_appears_on_the_dashboard_in_a_real_browser() {
    let ds = dataset(Kind::Sqlite, spec(91, 800, 6), 2).await;
    let server = ServeProcess::start(ds.dir(), &[], &["--no-admin"], false).await;
    let (id, version, origin) = open_flight(&ds);
    // The flight's airport first, then the busiest others.
    let mut airports = vec![origin.clone()];
    airports.extend(ds.store.manifest().airports.iter().filter(|a| **a != origin).take(5).cloned());
    let url = format!("http://{}/dashboard?airports={}", server.api, airports.join(","));
    let mut browser = tokio::task::block_in_place(Chromium::start);
    let session = tokio::task::block_in_place(|| browser.open(&url));
    let ready = "document.body.dataset.live === 'yes' && document.body.dataset.loaded === 'yes'";
    tokio::task::block_in_place(|| browser.wait_for(&session, ready, Duration::from_secs(20)));
    let shown = tokio::task::block_in_place(|| browser.eval(&session, "document.querySelector('h2').textContent"));
    assert_eq!(shown, json!(origin));

    let body = r#"{"kind":"reported","delay_minutes":47,"reason":"browser test"}"#;
    let posted = send(server.api, PROTOS[0], post_delay(id, Some(&format!("\"{version}\"")), body)).await;
    assert_eq!(posted.status, 201, "{:?}", posted.body);
    let event = format!("document.querySelector('li[data-flight=\"{id}\"]')?.textContent");
    let (text, took) = tokio::task::block_in_place(|| browser.wait_for(&session, &event, Duration::from_secs(10)));
    let text = text.as_str().unwrap().to_owned();
    assert!(text.contains(": delayed 47 min (browser test)"), "{text}");
    let flight = ds.expected_flight(id).unwrap().flight;
    assert!(text.contains(&format!(
        "{} {} → {}",
        flight.carrier.as_str(),
        flight.number.get(),
        flight.destination.as_str()
    )));
    eprintln!("the posted delay was on the page {took:?} after the API answered");
    // The read models' lag, from /readyz: once the runner has caught up with the post,
    // the page says so (it polls every 2 s).
    let caught_up =
        "document.getElementById('lag').dataset.maxLag === '0' && document.getElementById('lag').textContent";
    let (lag, _) = tokio::task::block_in_place(|| browser.wait_for(&session, caught_up, Duration::from_secs(10)));
    assert_eq!(lag, json!("read models up to date"));

    let shot = tokio::task::block_in_place(|| {
        browser.call("Page.captureScreenshot", json!({ "format": "png" }), Some(&session))
    });
    let png = base64_decode(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot of {} bytes", png.len());
    // `FLIGHTBENCH_DASHBOARD_SCREENSHOT=results/dashboard.png` keeps it.
    if let Ok(path) = std::env::var("FLIGHTBENCH_DASHBOARD_SCREENSHOT") {
        std::fs::write(path, &png).unwrap();
    }
}

/// An SSE client on a raw socket: what a browser sends, and a receive buffer as
/// small as the kernel allows, so a client that stops reading fills up quickly.
async fn subscribe(addr: SocketAddr, airport: &str) -> (tokio::net::TcpStream, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4_096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request =
        format!("GET /live?airport={airport} HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "event: subscribed", Duration::from_secs(10)).await;
    assert!(seen.starts_with("HTTP/1.1 200 OK\r\n"), "{seen}");
    assert!(seen.to_ascii_lowercase().contains("content-type: text/event-stream"), "{seen}");
    (stream, seen)
}

async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut String, wanted: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = vec![0u8; 64 * 1024];
    // Only what arrived since the last look (and a marker's length before it) is
    // searched: the streams here run to megabytes.
    let mut from = 0;
    while !seen[from..].contains(wanted) {
        from = seen.len().saturating_sub(wanted.len());
        while !seen.is_char_boundary(from) {
            from -= 1;
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                let tail = &seen[seen.floor_char_boundary(seen.len().saturating_sub(300))..];
                panic!("{wanted:?} not received within {within:?}; got {} bytes, ending {tail:?}", seen.len())
            })
            .unwrap();
        assert!(n > 0, "the stream closed before {wanted:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// `/metrics`' value of `series` (a full sample name, labels and all).
async fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let metrics = send(addr, PROTOS[0], get("/metrics").body(Full::default()).unwrap()).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_dropped_while_writes_and_others_go_on() {
    const WRITERS: usize = 4;
    const WRITES: usize = 8_000;
    let ds = dataset(Kind::Sqlite, spec(92, 800, 6), 2).await;
    let args = ["--no-admin", "--shutdown-grace", "60s", "--write-stall-timeout", "20s"];
    let server = ServeProcess::start(ds.dir(), &[], &args, false).await;
    // Flights that take events, from the airport with most of them.
    let open: Vec<_> = (1..=ds.flight_count())
        .map(|id| ds.expected_flight(id).unwrap())
        .filter(|v| !v.status.state.is_terminal())
        .collect();
    let origin = open
        .iter()
        .map(|v| v.flight.origin.as_str())
        .max_by_key(|a| open.iter().filter(|v| v.flight.origin.as_str() == *a).count())
        .unwrap()
        .to_owned();
    let flights: Vec<(i64, i64)> = open
        .iter()
        .filter(|v| v.flight.origin.as_str() == origin)
        .take(WRITERS)
        .map(|v| (v.flight.id.get(), v.status.version))
        .collect();
    assert_eq!(flights.len(), WRITERS);

    // One subscriber pauses (and reads again later), one never reads again, one reads
    // all along. Over loopback the kernel buffers up to 4 MiB for a client that does
    // not read (the server's send buffer grows to tcp_wmem's maximum), so the changes
    // carry the longest reason there is (200 three-byte characters, about 1.1 kB a
    // change), and there are enough of them to fill that and the feed's 256 twice.
    let (mut slow, mut slow_seen) = subscribe(server.api, &origin).await;
    let (_never, _) = subscribe(server.api, &origin).await;
    let (mut fast, mut fast_seen) = subscribe(server.api, &origin).await;
    // How many changes the reading subscriber has seen. The writes below stay at most
    // half the feed's ring ahead of it: a reader starved of CPU by the other tests
    // (cargo runs them in parallel) must not fall 256 behind and be dropped, which is
    // the very thing this test expects of the other two.
    let seen_by_reader = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader_count = seen_by_reader.clone();
    let reading = tokio::spawn(async move {
        let started = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        let mut counted = (0, 0);
        while counted.0 < WRITES {
            assert!(started.elapsed() < Duration::from_secs(120), "the reading subscriber stalled");
            let n = tokio::time::timeout(Duration::from_secs(30), fast.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "the reading subscriber's stream closed");
            fast_seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            // Frames are whole lines by the time a blank line follows them.
            let complete = fast_seen.rfind("\n\n").map_or(counted.1, |i| i + 2);
            counted = (counted.0 + fast_seen[counted.1..complete].matches("event: delay\n").count(), complete);
            reader_count.store(counted.0, std::sync::atomic::Ordering::Release);
        }
        (fast, fast_seen)
    });
    // Revisions of those flights, written into the shards beside the server (as
    // another writer would; its runner picks them up from the commit sequence), as
    // fast as they commit.
    let reason = flightbench::domain::Reason::parse(&"✈".repeat(200)).unwrap();
    let mut versions = flights.clone();
    for i in 0..WRITES {
        let wait = Instant::now();
        while i >= seen_by_reader.load(std::sync::atomic::Ordering::Acquire) + 128 {
            assert!(wait.elapsed() < Duration::from_secs(60), "the reading subscriber stopped at {i} writes");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (id, version) = &mut versions[i % WRITERS];
        let kind =
            flightbench::domain::EventKind::Revised { delay_minutes: 10 + (i % 50) as i64, reason: reason.clone() };
        let event = flightbench::domain::DelayEvent::new(flightbench::domain::UtcTime::now(), kind);
        let id_ = flightbench::domain::FlightId::new(*id).unwrap();
        ds.store.append(flightbench::store::QueryPath::Raw, id_, *version, &event).await.unwrap();
        *version += 1;
    }
    let (mut fast, mut fast_seen) = reading.await.unwrap();
    assert_eq!(fast_seen.matches("event: delay\n").count(), WRITES, "the reading subscriber got every change");

    // Reading again, the paused one finds what had been buffered for it, then the end.
    read_until(&mut slow, &mut slow_seen, "event: dropped\n", Duration::from_secs(10)).await;
    let got = slow_seen.matches("event: delay\n").count();
    assert!(got < WRITES, "the paused subscriber got all {got} changes: it was never behind");
    assert!(slow_seen.contains("\"reason\":\"this client fell 256 changes behind"), "{slow_seen}");

    // The one that never reads is closed once the server's writes to it stall for
    // 20 s; then only the reading subscriber is left.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dropped = metric(server.api, "flightbench_live_subscribers_dropped_total").await;
        let stalled = metric(server.api, "flightbench_http_connections_write_stalled_total").await;
        let subscribers = metric(server.api, "flightbench_live_subscribers").await;
        // The never-reading one may have been found behind too, in a last poll before
        // its socket filled: dropped is 1 or 2.
        if dropped.is_some_and(|d| d >= 1.0) && (stalled, subscribers) == (Some(1.0), Some(1.0)) {
            break;
        }
        assert!(Instant::now() < deadline, "dropped {dropped:?}, stalled {stalled:?}, subscribers {subscribers:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A server without the runner has no feed, and says why.
    let external = ServeProcess::start(ds.dir(), &[], &["--no-admin", "--projector", "external"], false).await;
    let refused =
        send(external.api, PROTOS[0], get(&format!("/live?airport={origin}")).body(Full::default()).unwrap()).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json()["title"], "Live feed not served here");
    assert!(refused.json()["detail"].as_str().unwrap().contains("--projector in-process"));

    // Shutting down ends the live streams with a final event instead of waiting out
    // the 60 s grace period for them.
    let mut server = server;
    let stopping = Instant::now();
    let pid = server.child.id().unwrap() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    read_until(&mut fast, &mut fast_seen, "event: closed\n", Duration::from_secs(20)).await;
    let status =
        tokio::time::timeout(Duration::from_secs(30), server.child.wait()).await.expect("serve exits").unwrap();
    assert!(status.success(), "{status}");
    assert!(stopping.elapsed() < Duration::from_secs(30), "shutdown took {:?}", stopping.elapsed());
}

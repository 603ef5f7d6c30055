//! The services' destinations: HTTP/2 connections to each, reused by every request
//! (streams multiplex; a closed connection is replaced on the next request), the
//! choice between them, and their health.
//!
//! **One connection per destination per server thread** ([`Destination::upstream`]).
//! The server runs a current-thread runtime per core; a connection's task lives on
//! the runtime that opened it, so with one shared connection every request from the
//! other thread crossed threads twice (its stream handed to the connection's task,
//! the response handed back), and one thread did all of the destination's socket
//! I/O. Each thread now sends on a connection its own runtime drives.
//!
//! **Choice: power of two choices** on requests outstanding: two healthy destinations
//! at random, the less busy one wins. It needs no shared queue and avoids the herd a
//! plain least-outstanding choice sends to one idle destination.
//!
//! **Health.** Active: every destination's `/readyz` is asked every `interval`; a pass
//! puts it (back) in, `eject_after` consecutive failures take it out. Passive: a
//! request that fails in transport, or is answered 502, 503 or 504, counts as a
//! failure too, so a destination that dies is out after a few requests, not after
//! the next check.

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub type Upstream = SendRequest<Full<Bytes>>;

/// Connection slots per destination. Threads take lanes in the order they first send;
/// a server has a thread per core plus the main one, so 64 lanes give every thread its
/// own below 63 cores (beyond, threads share a lane's connection, which still works).
const LANES: usize = 64;

/// The calling thread's lane.
fn lane() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static LANE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % LANES;
    }
    LANE.with(|lane| *lane)
}

/// One instance of a service.
#[derive(Debug)]
pub struct Destination {
    pub url: String,
    /// `host:port`: the TCP connect's address and every request URI's authority.
    authority: http::uri::Authority,
    pub outstanding: AtomicUsize,
    healthy: AtomicBool,
    failures: AtomicU32,
    /// A connection slot per lane ([`lane`]): each thread uses its own.
    connections: Box<[tokio::sync::Mutex<Option<Upstream>>]>,
    /// Requests sent, for the tests and the stop summary.
    pub sent: AtomicU64,
}

impl Destination {
    pub fn new(url: &str) -> Result<Arc<Self>, String> {
        Ok(Arc::new(Self {
            url: url.trim_end_matches('/').to_owned(),
            authority: super::config::authority(url)?,
            outstanding: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            connections: (0..LANES).map(|_| tokio::sync::Mutex::new(None)).collect(),
            sent: AtomicU64::new(0),
        }))
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The absolute URI of `path_and_query` here (the HTTP/2 client takes `:scheme`
    /// and `:authority` from it; destinations are cleartext, see `config::authority`).
    pub fn uri(&self, path_and_query: &str) -> Result<http::Uri, String> {
        http::Uri::builder()
            .scheme(http::uri::Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| format!("{}{path_and_query}: {e}", self.url))
    }

    /// This thread's HTTP/2 connection, made (or made again) when there is none usable.
    pub async fn upstream(&self) -> Result<Upstream, String> {
        let mut held = self.connections[lane()].lock().await;
        if let Some(sender) = held.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let tcp =
            tokio::net::TcpStream::connect(self.authority.as_str()).await.map_err(|e| format!("{}: {e}", self.url))?;
        let _ = tcp.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("{}: HTTP/2 handshake: {e}", self.url))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *held = Some(sender.clone());
        Ok(sender)
    }

    /// A request or check went well.
    pub fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// A request or check failed; out once `eject_after` have failed in a row.
    pub fn failed(&self, eject_after: u32) {
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= eject_after
            && self.healthy.swap(false, Ordering::Relaxed)
        {
            tracing::warn!(destination = %self.url, "gateway: {} taken out after {eject_after} failures", self.url);
        }
    }

    /// An active check passed: back in.
    pub fn passed_check(&self) {
        self.succeeded();
        if !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!(destination = %self.url, "gateway: {} is back", self.url);
        }
    }
}

/// A service's destinations.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    pub destinations: Vec<Arc<Destination>>,
    /// Its requests' durations, when the gateway records metrics.
    pub durations: Option<super::metrics::ServiceDurations>,
}

impl Service {
    /// Power of two choices among the healthy destinations other than `avoid` (a
    /// retry's first choice); `None` when there is none.
    pub fn pick(&self, avoid: Option<&Arc<Destination>>) -> Option<Arc<Destination>> {
        let healthy: Vec<&Arc<Destination>> =
            self.destinations.iter().filter(|d| d.healthy() && avoid.is_none_or(|a| !Arc::ptr_eq(a, d))).collect();
        match healthy.len() {
            0 => None,
            1 => Some(healthy[0].clone()),
            n => {
                let first = crate::chance::below(n);
                let second = (first + 1 + crate::chance::below(n - 1)) % n;
                let (a, b) = (healthy[first], healthy[second]);
                let busier = |d: &Destination| d.outstanding.load(Ordering::Relaxed);
                Some(if busier(b) < busier(a) { b.clone() } else { a.clone() })
            }
        }
    }

    pub fn healthy_count(&self) -> usize {
        self.destinations.iter().filter(|d| d.healthy()).count()
    }
}

/// Retries as a share of requests (see `GatewayFile::retry_budget_percent`), kept in
/// hundredths of a retry.
#[derive(Debug)]
pub struct RetryBudget {
    hundredths: Mutex<u32>,
    per_request: u32,
}

impl RetryBudget {
    /// At most ten retries banked: a quiet period does not buy a storm.
    const MOST: u32 = 1_000;

    /// Starts with one retry banked.
    pub fn new(percent: u32) -> Self {
        Self { hundredths: Mutex::new(100), per_request: percent }
    }

    pub fn deposit(&self) {
        let mut banked = self.hundredths.lock().unwrap_or_else(|p| p.into_inner());
        *banked = (*banked + self.per_request).min(Self::MOST);
    }

    /// Spends a retry if there is one.
    pub fn withdraw(&self) -> bool {
        let mut banked = self.hundredths.lock().unwrap_or_else(|p| p.into_inner());
        if *banked >= 100 {
            *banked -= 100;
            true
        } else {
            false
        }
    }
}

/// Asks `/readyz` of `destination` within `timeout`: true for a 2xx.
pub async fn check(destination: &Destination, timeout: Duration) -> bool {
    let ask = async {
        let mut upstream = destination.upstream().await?;
        let request =
            http::Request::get(destination.uri("/readyz")?).body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
        upstream.ready().await.map_err(|e| e.to_string())?;
        let response = upstream.send_request(request).await.map_err(|e| e.to_string())?;
        Ok::<bool, String>(response.status().is_success())
    };
    matches!(tokio::time::timeout(timeout, ask).await, Ok(Ok(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(n: usize) -> Service {
        let destinations =
            (0..n).map(|i| Destination::new(&format!("http://127.0.0.1:{}", 9000 + i)).unwrap()).collect();
        Service { name: "query".into(), destinations, durations: None }
    }

    #[test]
    fn two_choices_prefer_the_less_busy_and_skip_the_unhealthy() {
        let s = service(2);
        s.destinations[0].outstanding.store(5, Ordering::Relaxed);
        for _ in 0..20 {
            assert!(Arc::ptr_eq(&s.pick(None).unwrap(), &s.destinations[1]), "with two, both are compared");
        }
        for _ in 0..3 {
            s.destinations[1].failed(3);
        }
        assert!(!s.destinations[1].healthy());
        assert!(Arc::ptr_eq(&s.pick(None).unwrap(), &s.destinations[0]));
        assert!(s.pick(Some(&s.destinations[0])).is_none(), "a retry has nowhere else to go");
        s.destinations[0].failed(1);
        assert!(s.pick(None).is_none());
        s.destinations[1].passed_check();
        assert_eq!(s.healthy_count(), 1);
        // Among many, load spreads: every destination gets picked.
        let many = service(5);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(many.pick(None).unwrap().url.clone());
        }
        assert_eq!(seen.len(), 5);
    }

    /// An HTTP/2 server answering 200 to everything on a thread of its own; its
    /// address and the count of connections it accepted.
    fn counting_h2_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((stream, _)) = listener.accept().await {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let answer = hyper::service::service_fn(|_: http::Request<hyper::body::Incoming>| async {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
                        });
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), answer)
                            .await;
                    });
                }
            });
        });
        (addr, accepted)
    }

    #[test]
    fn each_thread_sends_on_a_connection_of_its_own_and_keeps_it() {
        let (addr, accepted) = counting_h2_server();
        let destination = Destination::new(&format!("http://{addr}")).unwrap();
        // Two server threads, each with its current-thread runtime, three requests each.
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let destination = destination.clone();
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    runtime.block_on(async move {
                        for _ in 0..3 {
                            let mut upstream = destination.upstream().await.unwrap();
                            upstream.ready().await.unwrap();
                            let request = http::Request::get(destination.uri("/x?y=1").unwrap())
                                .body(Full::new(Bytes::new()))
                                .unwrap();
                            assert_eq!(upstream.send_request(request).await.unwrap().status(), 200);
                        }
                    })
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "one connection per thread, reused by its later requests");
    }

    #[test]
    fn a_destination_uri_keeps_the_path_and_query() {
        let destination = Destination::new("http://127.0.0.1:9000/").unwrap();
        assert_eq!(destination.uri("/flights/7?x=1").unwrap().to_string(), "http://127.0.0.1:9000/flights/7?x=1");
        assert!(destination.uri("no slash").is_err());
    }

    #[test]
    fn the_retry_budget_is_a_share_of_requests() {
        let budget = RetryBudget::new(20);
        assert!(budget.withdraw(), "one retry banked at start");
        assert!(!budget.withdraw());
        for _ in 0..10 {
            budget.deposit();
        }
        assert!(budget.withdraw(), "ten requests at 20% buy two retries");
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }
}

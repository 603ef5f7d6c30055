//! The services' destinations: one HTTP/2 connection to each, reused by every request
//! (streams multiplex; a closed connection is replaced on the next request), the
//! choice between them, and their health.
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

/// One instance of a service.
#[derive(Debug)]
pub struct Destination {
    pub url: String,
    pub authority: String,
    pub outstanding: AtomicUsize,
    healthy: AtomicBool,
    failures: AtomicU32,
    connection: tokio::sync::Mutex<Option<Upstream>>,
    /// Requests sent, for the tests and the stop summary.
    pub sent: AtomicU64,
}

impl Destination {
    pub fn new(url: &str) -> Result<Arc<Self>, String> {
        let authority = super::config::authority(url)?;
        Ok(Arc::new(Self {
            url: url.trim_end_matches('/').to_owned(),
            authority,
            outstanding: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            connection: tokio::sync::Mutex::new(None),
            sent: AtomicU64::new(0),
        }))
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The HTTP/2 connection, made (or made again) when there is none usable.
    pub async fn upstream(&self) -> Result<Upstream, String> {
        let mut held = self.connection.lock().await;
        if let Some(sender) = held.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let tcp = tokio::net::TcpStream::connect(&self.authority).await.map_err(|e| format!("{}: {e}", self.url))?;
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
        let request = http::Request::get(format!("{}/readyz", destination.url))
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
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
        Service { name: "query".into(), destinations }
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

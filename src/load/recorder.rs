//! What one load thread measured; merged across threads at the end (no sharing while
//! running). Latencies go into HDR histograms in microseconds, per request kind.
//!
//! In open-loop runs each response is recorded twice: from its **intended** send time
//! (the schedule), which is what a user arriving on that schedule would see, and from
//! its **actual** send time, which is what a closed-loop tool such as wrk reports. A
//! server stall delays every request scheduled during it; only the first histogram
//! shows that (coordinated omission, Gil Tene's term).

use super::workload::RequestKind;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Highest latency the histograms hold: an hour, in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    // Cannot fail: 3 significant digits and a fixed range are valid bounds.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_MICROS)
}

/// Why a request got no HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The TCP (or TLS) connection could not be made.
    Connect,
    /// No complete response within `--timeout`.
    Timeout,
    /// The server closed or reset the connection mid-request.
    Reset,
    /// The response could not be parsed, or the HTTP/2 session failed.
    Protocol,
    /// The body is in a content coding the generator does not know, or does not decode.
    Decode,
}

/// One request kind's latencies.
pub struct KindStats {
    /// From the intended send time (open loop) or the actual one (closed loop).
    pub latency: Histogram<u64>,
    /// Open loop only: from the actual send time, as an uncorrected tool would report.
    pub uncorrected: Histogram<u64>,
}

impl KindStats {
    fn new() -> Self {
        Self { latency: histogram(), uncorrected: histogram() }
    }
}

/// Status codes a response can carry: three digits (`httparse` and HPACK refuse
/// anything else), counted in an array indexed by the code.
const STATUSES: usize = 1_000;

/// Everything one thread counted. Per-kind stats and status counts sit in arrays
/// indexed by kind and by code, so recording a response walks no map.
pub struct Recorder {
    kinds: [Option<KindStats>; RequestKind::ALL.len()],
    statuses: Box<[u64; STATUSES]>,
    pub errors: BTreeMap<ErrorKind, u64>,
    /// 409s on writes: an expected outcome under concurrency, not an error.
    pub conflicts: u64,
    /// 422s on writes to departed or cancelled flights: expected, not an error.
    pub rejected: u64,
    /// Response body bytes as received, and after decoding `content-encoding`.
    pub wire_bytes: u64,
    pub decoded_bytes: u64,
    /// Completed responses per second since the measurement started.
    pub per_second: Vec<u64>,
    /// Open loop: how late each request left against its schedule.
    pub lag: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            kinds: Default::default(),
            statuses: Box::new([0; STATUSES]),
            errors: BTreeMap::new(),
            conflicts: 0,
            rejected: 0,
            wire_bytes: 0,
            decoded_bytes: 0,
            per_second: Vec::new(),
            lag: histogram(),
        }
    }
}

impl Recorder {
    /// A response. `since_start` places it in its one-second bucket.
    pub fn response(&mut self, kind: RequestKind, status: u16, latency: Duration, since_start: Duration) {
        self.kind(kind).latency.saturating_record(micros(latency));
        // A code past three digits cannot come from either client; count it as 999.
        self.statuses[usize::from(status).min(STATUSES - 1)] += 1;
        let second = since_start.as_secs() as usize;
        if self.per_second.len() <= second {
            self.per_second.resize(second + 1, 0);
        }
        self.per_second[second] += 1;
    }

    fn kind(&mut self, kind: RequestKind) -> &mut KindStats {
        self.kinds[kind.index()].get_or_insert_with(KindStats::new)
    }

    /// Open loop: the same response measured from its actual send time.
    pub fn uncorrected(&mut self, kind: RequestKind, latency: Duration) {
        self.kind(kind).uncorrected.saturating_record(micros(latency));
    }

    /// Each kind that was recorded, with its histograms.
    pub fn kinds(&self) -> impl Iterator<Item = (RequestKind, &KindStats)> {
        RequestKind::ALL.iter().filter_map(|&kind| self.kinds[kind.index()].as_ref().map(|stats| (kind, stats)))
    }

    /// Responses by status code.
    pub fn statuses(&self) -> BTreeMap<u16, u64> {
        (0..STATUSES as u16)
            .filter(|&s| self.statuses[usize::from(s)] > 0)
            .map(|s| (s, self.statuses[usize::from(s)]))
            .collect()
    }

    pub fn lag(&mut self, lag: Duration) {
        self.lag.saturating_record(micros(lag));
    }

    pub fn error(&mut self, kind: ErrorKind) {
        *self.errors.entry(kind).or_default() += 1;
    }

    pub fn merge(&mut self, other: Recorder) {
        for (kind, stats) in other.kinds() {
            let mine = self.kind(kind);
            // Cannot fail: every histogram has the same bounds.
            mine.latency.add(&stats.latency).expect("same bounds");
            mine.uncorrected.add(&stats.uncorrected).expect("same bounds");
        }
        for (mine, theirs) in self.statuses.iter_mut().zip(other.statuses.iter()) {
            *mine += theirs;
        }
        for (error, n) in other.errors {
            *self.errors.entry(error).or_default() += n;
        }
        self.conflicts += other.conflicts;
        self.rejected += other.rejected;
        self.wire_bytes += other.wire_bytes;
        self.decoded_bytes += other.decoded_bytes;
        if self.per_second.len() < other.per_second.len() {
            self.per_second.resize(other.per_second.len(), 0);
        }
        for (mine, theirs) in self.per_second.iter_mut().zip(&other.per_second) {
            *mine += theirs;
        }
        self.lag.add(&other.lag).expect("same bounds");
    }

    pub fn responses(&self) -> u64 {
        self.statuses.iter().sum()
    }
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1_000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1_000.0,
        }
    }

    /// The curve for charts: (percentile, ms) at 0, 50, 90, 99, 99.9, 99.99, 100.
    pub fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
        [0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0]
            .into_iter()
            .map(|p| (p, h.value_at_percentile(p) as f64 / 1_000.0))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_everything() {
        let mut a = Recorder::default();
        a.response(RequestKind::Read, 200, Duration::from_millis(1), Duration::from_millis(10));
        a.error(ErrorKind::Timeout);
        let mut b = Recorder::default();
        b.response(RequestKind::Read, 200, Duration::from_millis(3), Duration::from_millis(2_500));
        b.response(RequestKind::Write, 409, Duration::from_millis(2), Duration::from_millis(100));
        b.conflicts += 1;
        a.merge(b);
        assert_eq!(a.responses(), 3);
        assert_eq!(a.per_second, [2, 0, 1]);
        assert_eq!(a.statuses()[&409], 1);
        assert_eq!(a.errors[&ErrorKind::Timeout], 1);
        let read = Percentiles::of(&a.kinds().find(|(k, _)| *k == RequestKind::Read).unwrap().1.latency);
        assert_eq!(read.count, 2);
        assert!((read.max_ms - 3.0).abs() < 0.01, "{read:?}");
    }
}

//! The departures scatter plan: ask each shard for its share of the page first, then
//! top up only the shards that could still hold rows of it.
//!
//! Asking every shard for the whole `limit` made a 16-shard departures board read and
//! decode up to 16 × 50 rows to return 50. Flights land on shards by a hash of their
//! id, so a shard holds about `limit / shards` of any page. The first round asks each
//! shard for that share plus a margin of three standard deviations (see
//! [`ScatterPlan::bounded`]); the rare shard that holds more than its first answer is
//! topped up, once, and only up to the page's last row. The answer is exactly the old
//! plan's, for every first-round size: `Store::departures_planned` takes the size so
//! tests can force top-ups and benches can run the old plan beside the new.

use super::merge::merge_departures;
use crate::domain::{Departure, FlightId, Limit, TimeWindow, UtcTime};
use futures_util::future::try_join_all;
use std::future::Future;

/// How many rows the first round asks each shard for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScatterPlan {
    first_round: usize,
}

impl ScatterPlan {
    /// A shard's expected share of a `limit`-row page over `shards` shards plus three
    /// standard deviations (the share is binomial: each row is on a given shard with
    /// probability 1/shards), and one row; at most `limit`. For the board's 50 rows:
    /// 10 per shard on 16 shards, 15 on 8, 23 on 4; a shard needs a top-up in about
    /// one page in a thousand when the page is full.
    pub fn bounded(limit: Limit, shards: usize) -> Self {
        let (n, p) = (limit.get() as f64, 1.0 / shards.max(1) as f64);
        let share = n * p + 3.0 * (n * p * (1.0 - p)).sqrt() + 1.0;
        Self::first_round(share.ceil() as usize, limit)
    }

    /// Every shard asked for the whole page: the plan before this one, which never
    /// needs a top-up.
    pub fn full(limit: Limit) -> Self {
        Self { first_round: limit.get() }
    }

    /// A first round of `rows` per shard (clamped to 1..=limit).
    pub fn first_round(rows: usize, limit: Limit) -> Self {
        Self { first_round: rows.clamp(1, limit.get()) }
    }

    pub fn rows_per_shard(self) -> usize {
        self.first_round
    }
}

/// The sort key of a departures page.
fn key(d: &Departure) -> (UtcTime, FlightId) {
    (d.flight.scheduled_departure, d.flight.id)
}

/// A second query for one shard: its rows after `after`, in `window`, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TopUp {
    shard: usize,
    window: TimeWindow,
    limit: Limit,
    after: (UtcTime, FlightId),
}

/// Runs `plan` over `shards` shards with `query(shard, window, limit)`, each answer
/// sorted by (scheduled departure, id), and returns the first `limit` rows overall.
pub(crate) async fn gather<E, F, Fut>(
    shards: usize,
    window: TimeWindow,
    limit: Limit,
    plan: ScatterPlan,
    query: F,
) -> Result<Vec<Departure>, E>
where
    F: Fn(usize, TimeWindow, Limit) -> Fut,
    Fut: Future<Output = Result<Vec<Departure>, E>>,
{
    let first = Limit::new(plan.first_round.min(limit.get()) as i64).unwrap_or(limit);
    let mut per_shard = try_join_all((0..shards).map(|shard| query(shard, window, first))).await?;
    let top_ups = top_ups(&per_shard, first.get(), window, limit);
    let more = try_join_all(top_ups.iter().map(|t| query(t.shard, t.window, t.limit))).await?;
    for (top_up, rows) in top_ups.iter().zip(more) {
        per_shard[top_up.shard].extend(rows.into_iter().filter(|d| key(d) > top_up.after));
    }
    Ok(merge_departures(per_shard, limit.get()))
}

/// The shards whose first answer may have stopped short of the page.
///
/// A shard that returned fewer than `asked` rows has no more. One that returned
/// `asked` may hold more, which matter only if they could precede the page's last row:
/// its last row is before the `limit`-th of all rows fetched (`frontier`), or there
/// are not yet `limit` rows at all. Such a shard is asked again from its last row's
/// departure (rows tying with it are fetched again and dropped by `after`), up to the
/// frontier's departure, for the rows it still lacks of its old-plan `limit`. One top-up
/// suffices: afterwards each shard holds either all of its rows that can precede the
/// frontier (at most `limit` of them) or a last row at or past it, and the frontier only
/// moves earlier as rows arrive.
fn top_ups(per_shard: &[Vec<Departure>], asked: usize, window: TimeWindow, limit: Limit) -> Vec<TopUp> {
    // Shards whose answer was full but short of the old plan's whole page; usually
    // none, and then the frontier is never needed.
    let open: Vec<(usize, &Vec<Departure>)> =
        per_shard.iter().enumerate().filter(|(_, rows)| rows.len() >= asked && rows.len() < limit.get()).collect();
    if open.is_empty() {
        return Vec::new();
    }
    let mut keys: Vec<(UtcTime, FlightId)> = per_shard.iter().flatten().map(key).collect();
    let frontier = (keys.len() >= limit.get()).then(|| *keys.select_nth_unstable(limit.get() - 1).1);
    open.into_iter()
        .filter_map(|(shard, rows)| {
            let after = key(rows.last()?);
            if frontier.is_some_and(|f| after >= f) {
                return None;
            }
            // `from` is at or before the frontier's departure, both inside the window,
            // so `to` is after `from`; and ties <= rows.len(), so wanted <= limit.
            let to = frontier.map_or(window.to, |(at, _)| at.plus_seconds(1).min(window.to));
            let from = after.0;
            let ties = rows.iter().rev().take_while(|d| d.flight.scheduled_departure == from).count();
            let wanted = ties + limit.get() - rows.len();
            // Neither fallback is taken (see above); each would still be exact, only
            // slower: the whole window, or the whole page, filtered by `after`.
            Some(TopUp {
                shard,
                window: TimeWindow::new(from, to).unwrap_or(window),
                limit: Limit::new(wanted as i64).unwrap_or(limit),
                after,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;
    use crate::store::merge::tests::{START, dep};
    use proptest::prelude::*;
    use std::cell::RefCell;

    fn window(from_minute: i64, to_minute: i64) -> TimeWindow {
        let at = |m: i64| UtcTime::from_unix(START + m * 60).unwrap();
        TimeWindow::new(at(from_minute), at(to_minute)).unwrap()
    }

    /// In-memory shards answering like the SQL: in window, sorted, at most `limit`.
    /// Records every query asked.
    struct Shards {
        rows: Vec<Vec<Departure>>,
        asked: RefCell<Vec<(usize, TimeWindow, usize)>>,
    }

    impl Shards {
        fn new(rows: Vec<Vec<Departure>>) -> Self {
            Self { rows, asked: RefCell::new(Vec::new()) }
        }

        fn run(&self, w: TimeWindow, limit: Limit, plan: ScatterPlan) -> Vec<Departure> {
            let query = |shard: usize, w: TimeWindow, limit: Limit| {
                self.asked.borrow_mut().push((shard, w, limit.get()));
                let mut rows: Vec<Departure> =
                    self.rows[shard].iter().filter(|d| w.contains(d.flight.scheduled_departure)).cloned().collect();
                rows.sort_by_key(key);
                rows.truncate(limit.get());
                std::future::ready(Ok::<_, ()>(rows))
            };
            futures_executor_block_on(gather(self.rows.len(), w, limit, plan, query)).unwrap()
        }

        fn oracle(&self, w: TimeWindow, limit: Limit) -> Vec<Departure> {
            let mut all: Vec<Departure> =
                self.rows.iter().flatten().filter(|d| w.contains(d.flight.scheduled_departure)).cloned().collect();
            all.sort_by_key(key);
            all.truncate(limit.get());
            all
        }

        fn top_ups(&self) -> usize {
            self.asked.borrow().len().saturating_sub(self.rows.len())
        }
    }

    /// The futures here are ready at once; a one-line executor keeps tokio out.
    fn futures_executor_block_on<T>(f: impl Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => unreachable!("in-memory shards are always ready"),
        }
    }

    #[test]
    fn the_first_round_is_a_share_plus_three_deviations() {
        let fifty = Limit::DEFAULT;
        let rows = |shards| ScatterPlan::bounded(fifty, shards).rows_per_shard();
        assert_eq!([rows(1), rows(2), rows(4), rows(8), rows(16), rows(64)], [50, 37, 23, 15, 10, 5]);
        assert_eq!(ScatterPlan::bounded(Limit::new(1).unwrap(), 16).rows_per_shard(), 1);
        assert_eq!(ScatterPlan::full(fifty).rows_per_shard(), 50);
        assert_eq!(ScatterPlan::first_round(0, fifty).rows_per_shard(), 1);
        assert_eq!(ScatterPlan::first_round(500, fifty).rows_per_shard(), 50);
    }

    #[test]
    fn one_shard_holding_every_row_is_topped_up_once_and_only_to_the_page() {
        // Shard 2 holds 30 rows, the others none: the first round sees 3.
        let mut rows = vec![Vec::new(); 4];
        rows[2] = (1..=30).map(|i| dep(i, i)).collect();
        let shards = Shards::new(rows);
        let limit = Limit::new(20).unwrap();
        let got = shards.run(window(0, 100), limit, ScatterPlan::first_round(3, limit));
        assert_eq!(got, shards.oracle(window(0, 100), limit));
        assert_eq!(got.len(), 20);
        let asked = shards.asked.borrow();
        // Four first-round queries, then shard 2 again from its third row's departure
        // for the 17 it lacks plus the 1 it ties with.
        assert_eq!(asked.len(), 5);
        assert_eq!(asked[4], (2, window(3, 100), 18));
    }

    #[test]
    fn rows_tying_on_departure_are_neither_lost_nor_doubled() {
        // Every row departs at minute 5: the order is by id alone.
        let rows: Vec<Vec<Departure>> = (0..3)
            .map(|s| (0..12).map(|i| dep(1 + s + 3 * i, 5)).filter(|d| d.flight.id.get() % 5 != 0).collect())
            .collect();
        let shards = Shards::new(rows);
        for limit in [1, 2, 7, 15, 40] {
            let limit = Limit::new(limit).unwrap();
            for first in 1..=limit.get() {
                let got = shards.run(window(0, 10), limit, ScatterPlan::first_round(first, limit));
                assert_eq!(got, shards.oracle(window(0, 10), limit), "limit {limit:?} first {first}");
            }
        }
    }

    #[test]
    fn a_full_page_from_the_first_round_needs_no_top_up() {
        let rows: Vec<Vec<Departure>> = (0..4).map(|s| (0..20).map(|i| dep(1 + s + 4 * i, i)).collect()).collect();
        let shards = Shards::new(rows);
        let limit = Limit::new(20).unwrap();
        // Each shard holds 5 rows of the page; its sixth is past the page's last row.
        shards.run(window(0, 100), limit, ScatterPlan::first_round(6, limit));
        assert_eq!(shards.top_ups(), 0);
    }

    fn shard_sets() -> impl Strategy<Value = Vec<Vec<Departure>>> {
        // Up to 8 shards; departures on a coarse grid of minutes so that ties are
        // common; a skew that can put every row on one shard.
        (1usize..=8, 0usize..=60, 0u8..=3).prop_flat_map(|(shards, rows, skew)| {
            proptest::collection::vec((0..shards, 0i64..40), rows).prop_map(move |placed| {
                let mut per = vec![Vec::new(); shards];
                for (i, (shard, minute)) in placed.into_iter().enumerate() {
                    let shard = if skew == 0 { 0 } else { shard };
                    per[shard].push(dep(i as i64 + 1, minute - minute % 5));
                }
                per
            })
        })
    }

    proptest! {
        #[test]
        fn every_plan_returns_the_oracles_page(
            rows in shard_sets(),
            from in 0i64..30,
            len in 1i64..50,
            limit in 1i64..=70,
            first in 1usize..=70,
        ) {
            let shards = Shards::new(rows);
            let (w, limit) = (window(from, from + len), Limit::new(limit).unwrap());
            let want = shards.oracle(w, limit);
            prop_assert_eq!(&shards.run(w, limit, ScatterPlan::first_round(first, limit)), &want);
            prop_assert_eq!(&shards.run(w, limit, ScatterPlan::bounded(limit, shards.rows.len())), &want);
            prop_assert_eq!(&shards.run(w, limit, ScatterPlan::full(limit)), &want);
        }
    }
}

//! The open loop's clock: each load thread's schedule kept to microseconds.
//!
//! tokio's timer wheel has a 1 ms tick and rounds every sleep up to the next tick, so
//! a request due at 10.2 ms left at about 11 ms: an open-loop run against a server
//! answering in 0.2 ms measured a send lag p50 of 1.05 ms and a corrected p50 of
//! 1.27 ms against an uncorrected 0.19 ms (issue 16). Every corrected latency carried
//! the generator's own lateness.
//!
//! A [`Pacer`] is a `timerfd` on `CLOCK_MONOTONIC` in the load thread's own reactor,
//! armed at an absolute time for the earliest slot any of the thread's workers waits
//! for (nanosecond resolution, no timer slack: `timerfd` hrtimers are exact), and a
//! small task that wakes the workers whose slots are due. Slots are handed out in
//! order, so the waiting list is a queue. A slot already due when its worker asks is
//! not waited for at all. On the load thread's current-thread runtime everything here
//! is single-threaded: `RefCell`, no locks.
//!
//! Exactness has a price: the thread sleeps and wakes once per request rather than once
//! per millisecond. At 20,000 req/s against a 0.2 ms server on the 2-core VM the
//! generator spent 56 ms of CPU per 1,000 requests against 17 ms with tokio's timer,
//! nearly all of it kernel time in the sleep and wake-up. A `tick` (`--pacing-tick`)
//! arms the timer only on that grid, so every slot due within a tick leaves together,
//! up to a tick late: 1 ms buys back the old cost and the old lateness.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

/// Wakes each waiting worker when its slot is due.
pub(super) struct Pacer {
    timer: AsyncFd<OwnedFd>,
    /// `Instant` and `CLOCK_MONOTONIC` read together, to turn one into the other (std's
    /// `Instant` is `CLOCK_MONOTONIC` on Linux, but keeps its value private).
    origin: (Instant, Duration),
    /// Workers waiting, earliest slot first.
    waiting: RefCell<VecDeque<(Instant, Waker)>>,
    /// The grid the timer is armed on (zero: exactly).
    tick: Duration,
    /// When the timer is armed for, if it is.
    armed: Cell<Option<Instant>>,
    /// Wakes the driver task when a worker starts waiting ahead of the armed slot.
    driver: RefCell<Option<Waker>>,
    /// Set with that wake-up, so the driver re-arms rather than waits on.
    notified: Cell<bool>,
}

/// What the driver task woke up for.
enum Event {
    Expired,
    Notified,
    Closed,
}

impl Pacer {
    pub(super) fn new(tick: Duration) -> std::io::Result<Rc<Self>> {
        // SAFETY: timerfd_create has no memory arguments; a negative return is an error.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let origin = (Instant::now(), monotonic_now()?);
        // SAFETY: an `OwnedFd` keeps its descriptor open, and the same, until dropped,
        // which happens only with the `AsyncFd`.
        let timer = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }?;
        Ok(Rc::new(Self {
            timer,
            origin,
            tick,
            waiting: RefCell::new(VecDeque::new()),
            armed: Cell::new(None),
            driver: RefCell::new(None),
            notified: Cell::new(false),
        }))
    }

    /// Resolves at `due` (at once if it has passed).
    pub(super) fn until(self: &Rc<Self>, due: Instant) -> Until {
        Until { pacer: self.clone(), due, queued: false }
    }

    /// The task that keeps the timer armed for the earliest waiter and wakes the due
    /// ones. Runs until the thread's runtime stops.
    pub(super) async fn drive(self: Rc<Self>) {
        loop {
            let next = self.wake_due();
            if let Some(due) = next
                && self.armed.get() != Some(due)
                && self.arm(due).is_err()
            {
                // Cannot happen with a valid descriptor and time; if it did, waking
                // everyone keeps the run going, only less precisely.
                self.waiting.borrow_mut().drain(..).for_each(|(_, waker)| waker.wake());
                continue;
            }
            match std::future::poll_fn(|cx| self.poll_event(cx)).await {
                Event::Expired => self.armed.set(None),
                Event::Notified => {}
                Event::Closed => return,
            }
        }
    }

    /// Wakes every worker whose slot has come; returns the next slot waited for.
    fn wake_due(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut waiting = self.waiting.borrow_mut();
        while let Some((due, _)) = waiting.front()
            && *due <= now
        {
            if let Some((_, waker)) = waiting.pop_front() {
                waker.wake();
            }
        }
        waiting.front().map(|(due, _)| *due)
    }

    /// The timer expired, or a worker queued ahead of the armed slot.
    fn poll_event(&self, cx: &mut Context<'_>) -> Poll<Event> {
        if self.notified.replace(false) {
            return Poll::Ready(Event::Notified);
        }
        *self.driver.borrow_mut() = Some(cx.waker().clone());
        match self.timer.poll_read_ready(cx) {
            Poll::Ready(Ok(mut ready)) => {
                let mut expirations = [0u8; 8];
                // SAFETY: reads at most 8 bytes into an 8-byte buffer. The count is not
                // needed: an expiry (or a spurious wake-up, EAGAIN) only means "look again".
                let _ =
                    unsafe { libc::read(self.timer.as_raw_fd(), expirations.as_mut_ptr().cast(), expirations.len()) };
                // The descriptor is not readable again until the next expiry.
                ready.clear_ready();
                Poll::Ready(Event::Expired)
            }
            // The reactor is shutting down with the thread.
            Poll::Ready(Err(_)) => Poll::Ready(Event::Closed),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Arms the timer for `due` (absolute, `CLOCK_MONOTONIC`), or for the first grid
    /// point at or after it.
    fn arm(&self, due: Instant) -> std::io::Result<()> {
        let at = on_grid(self.origin.1 + due.saturating_duration_since(self.origin.0), self.tick);
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: at.as_secs() as libc::time_t, tv_nsec: at.subsec_nanos() as _ },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
        let done = unsafe {
            libc::timerfd_settime(self.timer.as_raw_fd(), libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut())
        };
        if done < 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.armed.set(Some(due));
        Ok(())
    }
}

/// `at` rounded up to a multiple of `tick` (unchanged for a zero tick).
fn on_grid(at: Duration, tick: Duration) -> Duration {
    let tick_ns = tick.as_nanos();
    if tick_ns == 0 {
        return at;
    }
    let rounded = at.as_nanos().div_ceil(tick_ns) * tick_ns;
    Duration::new((rounded / 1_000_000_000) as u64, (rounded % 1_000_000_000) as u32)
}

fn monotonic_now() -> std::io::Result<Duration> {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `now`.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}

/// A worker waiting for its slot.
pub(super) struct Until {
    pacer: Rc<Pacer>,
    due: Instant,
    queued: bool,
}

impl Future for Until {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.due {
            return Poll::Ready(());
        }
        if !self.queued {
            self.queued = true;
            let pacer = &self.pacer;
            let mut waiting = pacer.waiting.borrow_mut();
            // Slots are handed out in order, so this is almost always a push at the back.
            let at = waiting.iter().rposition(|(due, _)| *due <= self.due).map_or(0, |i| i + 1);
            waiting.insert(at, (self.due, cx.waker().clone()));
            drop(waiting);
            if at == 0 {
                pacer.notified.set(true);
                if let Some(driver) = pacer.driver.borrow().as_ref() {
                    driver.wake_by_ref();
                }
            }
        } else {
            // Woken early (another wake-up of this task): stay queued with the new waker.
            let pacer = &self.pacer;
            let mut waiting = pacer.waiting.borrow_mut();
            match waiting.iter_mut().find(|(due, _)| *due == self.due) {
                Some(entry) => entry.1 = cx.waker().clone(),
                None => waiting.push_front((self.due, cx.waker().clone())),
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots a few hundred microseconds apart wake in order and none early. How late
    /// they wake depends on the machine's load, so it is a figure
    /// (`results/load-open-loop.md`), not asserted here; what makes it small is that the
    /// timer is armed exactly (next test).
    #[test]
    fn workers_wake_at_their_slots_in_order() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        let woken: Rc<RefCell<Vec<(usize, Instant, Instant)>>> = Rc::default();
        local.block_on(&runtime, async {
            let pacer = Pacer::new(Duration::ZERO).unwrap();
            let driver = tokio::task::spawn_local(pacer.clone().drive());
            let start = Instant::now() + Duration::from_millis(5);
            let workers: Vec<_> = (0..20)
                .map(|i| {
                    let (pacer, woken) = (pacer.clone(), woken.clone());
                    let due = start + Duration::from_micros(300 * i as u64);
                    tokio::task::spawn_local(async move {
                        pacer.until(due).await;
                        woken.borrow_mut().push((i, due, Instant::now()));
                    })
                })
                .collect();
            for w in workers {
                w.await.unwrap();
            }
            // A slot already past resolves at once.
            pacer.until(Instant::now() - Duration::from_millis(1)).await;
            driver.abort();
        });
        let woken = woken.borrow();
        assert_eq!(woken.iter().map(|(i, ..)| *i).collect::<Vec<_>>(), (0..20).collect::<Vec<_>>(), "in slot order");
        let early: Vec<_> = woken.iter().filter(|(_, due, at)| at < due).map(|(i, ..)| i).collect();
        assert!(early.is_empty(), "slots {early:?} woke before they were due");
    }

    /// A worker waiting for a slot 50 ms ahead gets the timer armed for that very
    /// nanosecond (tokio's timer would round it up to its next 1 ms tick): what the
    /// kernel holds, read back with `timerfd_gettime`, is the slot to within the time
    /// the read itself takes.
    #[test]
    fn the_timer_is_armed_for_the_waiting_slot_exactly() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let pacer = Pacer::new(Duration::ZERO).unwrap();
            let driver = tokio::task::spawn_local(pacer.clone().drive());
            let due = Instant::now() + Duration::from_millis(50) + Duration::from_nanos(123_457);
            let waiter = tokio::task::spawn_local(pacer.clone().until(due));
            while pacer.armed.get() != Some(due) {
                tokio::task::yield_now().await;
            }
            let mut spec = libc::itimerspec {
                it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
                it_value: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            };
            let before = Instant::now();
            // SAFETY: writes one itimerspec into `spec`.
            assert_eq!(unsafe { libc::timerfd_gettime(pacer.timer.as_raw_fd(), &mut spec) }, 0);
            let after = Instant::now();
            let left = Duration::new(spec.it_value.tv_sec as u64, spec.it_value.tv_nsec as u32);
            // `due - after <= left <= due - before`, give or take the microsecond the
            // Instant-to-CLOCK_MONOTONIC conversion may round.
            let slack = Duration::from_micros(1);
            assert!(
                left + slack >= due - after && left <= due - before + slack,
                "{left:?} left for a slot {:?} away",
                due - before
            );
            waiter.await.unwrap();
            assert!(Instant::now() >= due);
            driver.abort();
        });
    }

    #[test]
    fn a_tick_rounds_the_timer_up_to_its_grid() {
        let ms = Duration::from_millis;
        assert_eq!(on_grid(Duration::new(5, 123_456), Duration::ZERO), Duration::new(5, 123_456));
        assert_eq!(on_grid(Duration::new(5, 123_456), ms(1)), Duration::new(5, 1_000_000));
        assert_eq!(on_grid(ms(7), ms(1)), ms(7), "a slot on the grid is not moved");
        assert_eq!(on_grid(Duration::new(9, 999_999_999), ms(1)), Duration::from_secs(10));
        assert_eq!(on_grid(ms(21), ms(10)), ms(30));
    }

    /// On a 2 ms grid, slots 300 µs apart leave in groups: the ones due within one tick
    /// wake together, never before their slot and never a whole tick after the grid
    /// point that covers them.
    #[test]
    fn a_tick_sends_the_slots_of_one_tick_together() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        let woken: Rc<RefCell<Vec<Instant>>> = Rc::default();
        let tick = Duration::from_millis(2);
        let dues: Vec<Instant> = {
            let start = Instant::now() + Duration::from_millis(5);
            (0..20).map(|i| start + Duration::from_micros(300 * i)).collect()
        };
        local.block_on(&runtime, async {
            let pacer = Pacer::new(tick).unwrap();
            let driver = tokio::task::spawn_local(pacer.clone().drive());
            let workers: Vec<_> = dues
                .iter()
                .map(|&due| {
                    let (pacer, woken) = (pacer.clone(), woken.clone());
                    tokio::task::spawn_local(async move {
                        pacer.until(due).await;
                        woken.borrow_mut().push(Instant::now());
                    })
                })
                .collect();
            for w in workers {
                w.await.unwrap();
            }
            driver.abort();
        });
        let woken = woken.borrow();
        assert!(woken.iter().zip(&dues).all(|(at, due)| at >= due), "none leaves before its slot");
        // 20 slots over 5.7 ms on a 2 ms grid: about 4 wake-ups, not 20. Wake-ups more
        // than 200 µs apart are separate; within a group they are one timer expiry.
        let groups = 1 + woken.windows(2).filter(|w| w[1] - w[0] > Duration::from_micros(200)).count();
        assert!(groups <= 6, "{groups} separate wake-ups for 20 slots on a 2 ms grid");
    }
}

//! Per-request randomness: a per-thread xorshift64 generator for the decisions made
//! on every request (trace sampling, the gateway's two random choices), where a
//! lock, a syscall or a cryptographic generator would cost more than the decision.
//! Not for anything an attacker may predict to their benefit.

use std::cell::Cell;

thread_local! {
    /// Any non-zero seed that differs between threads and between runs.
    static STATE: Cell<u64> = Cell::new(
        std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8) | 1,
    );
}

fn next() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    })
}

/// A number in `0..n`; `n` must be above 0.
pub fn below(n: usize) -> usize {
    (next() % n as u64) as usize
}

/// True for about `ratio` of calls (always at 1.0 and above, never at 0.0 and below).
pub fn one_in(ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    // The top 53 bits as a fraction in [0, 1).
    ((next() >> 11) as f64 / (1u64 << 53) as f64) < ratio
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_reaches_every_value() {
        let mut seen = [0u32; 3];
        for _ in 0..3_000 {
            seen[below(3)] += 1;
        }
        assert!(seen.iter().all(|&count| count > 800), "{seen:?}");
    }

    #[test]
    fn one_in_follows_the_ratio() {
        assert!((0..1_000).all(|_| one_in(1.0)));
        assert!((0..1_000).all(|_| !one_in(0.0)));
        let hits = (0..10_000).filter(|_| one_in(0.25)).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
    }
}

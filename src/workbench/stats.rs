//! How sure a run is of its figures: 95% confidence intervals from repeated rounds.
//!
//! A run measures each cell of a part once per round, the part's cells interleaved
//! (ABCD DCBA …), so the rounds of two cells of a part were taken seconds apart on the
//! same machine state. A ratio between two cells is therefore taken **per round** and
//! the rounds' ratios are summarised: the estimate is their geometric mean, and the
//! interval is a Student's t interval on their logarithms (a ratio's noise is
//! multiplicative, so it is symmetric on a log scale): `exp(mean ± t(0.975, n−1) ·
//! sd / √n)`. A single cell's figure gets the same interval over its rounds. One
//! round has no interval.
//!
//! Named in the README as "a paired t-interval on log ratios"; with 5 rounds it needs
//! no resampling and gives the same interval every time for the same figures.

use serde::{Deserialize, Serialize};

/// An estimate with its 95% interval (`low == high == estimate` from one round).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    /// Rounds it is computed from.
    pub rounds: usize,
}

impl Interval {
    /// The interval of positive figures, one per round (`None` if any is not positive
    /// or there are none).
    pub fn of(values: &[f64]) -> Option<Interval> {
        if values.is_empty() || values.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return None;
        }
        let logs: Vec<f64> = values.iter().map(|v| v.ln()).collect();
        let n = logs.len();
        let mean = logs.iter().sum::<f64>() / n as f64;
        if n == 1 {
            return Some(Interval { estimate: mean.exp(), low: mean.exp(), high: mean.exp(), rounds: 1 });
        }
        let variance = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let half = t_975(n - 1) * (variance / n as f64).sqrt();
        Some(Interval { estimate: mean.exp(), low: (mean - half).exp(), high: (mean + half).exp(), rounds: n })
    }

    /// The interval of `a / b`, paired round by round (both in measurement order).
    pub fn ratio(a: &[f64], b: &[f64]) -> Option<Interval> {
        if a.len() != b.len() || b.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return None;
        }
        let ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
        Interval::of(&ratios)
    }

    /// Whether there is an interval at all (more than one round).
    pub fn has_interval(&self) -> bool {
        self.rounds > 1
    }

    /// Half the interval's width relative to the estimate: how sure, in one number.
    pub fn relative_half_width(&self) -> f64 {
        (self.high - self.low) / 2.0 / self.estimate
    }

    /// Whether the two intervals share any value.
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.low <= other.high && other.low <= self.high
    }

    /// `1.32× (95% CI 1.28–1.36×)`, or `1.32× (one round: no interval)`.
    pub fn times(&self) -> String {
        self.times_by("")
    }

    /// `1.32× by throughput (95% CI 1.28–1.36×)`: the ratio, what it is of, its interval.
    pub fn times_by(&self, what: &str) -> String {
        let what = if what.is_empty() { String::new() } else { format!(" by {what}") };
        if self.has_interval() {
            format!("{:.2}×{what} (95% CI {:.2}–{:.2}×)", self.estimate, self.low, self.high)
        } else {
            format!("{:.2}×{what} (one round: no interval)", self.estimate)
        }
    }

    /// `[1.28–1.36]` in `precision` decimals, or `[—]` from one round.
    pub fn bracket(&self, precision: usize) -> String {
        if self.has_interval() {
            format!("[{:.p$}–{:.p$}]", self.low, self.high, p = precision)
        } else {
            "[—]".to_owned()
        }
    }
}

/// The 0.975 quantile of Student's t distribution with `df` degrees of freedom.
fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        _ => 1.96,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_configurations_give_an_interval_around_one() {
        // Two cells that are the same configuration, measured in interleaved rounds
        // on a noisy machine: their ratio's interval contains 1.
        let a = [10_100.0, 9_600.0, 10_400.0, 9_900.0, 10_050.0];
        let b = [9_900.0, 9_800.0, 10_300.0, 10_200.0, 9_950.0];
        let ratio = Interval::ratio(&a, &b).unwrap();
        assert!(ratio.low < 1.0 && ratio.high > 1.0, "{ratio:?}");
        assert_eq!(ratio.rounds, 5);
    }

    #[test]
    fn a_real_difference_excludes_one_and_the_interval_narrows_with_agreement() {
        let fast = [13_000.0, 12_800.0, 13_300.0, 12_900.0, 13_100.0];
        let slow = [10_000.0, 9_900.0, 10_200.0, 10_000.0, 10_050.0];
        let ratio = Interval::ratio(&fast, &slow).unwrap();
        assert!(ratio.low > 1.25 && ratio.high < 1.35, "{ratio:?}");
        let noisy = [13_000.0, 9_000.0, 16_000.0, 11_000.0, 14_000.0];
        let wide = Interval::ratio(&noisy, &slow).unwrap();
        assert!(wide.relative_half_width() > ratio.relative_half_width() * 3.0);
        assert!(!Interval::of(&[1.0, 1.01]).unwrap().overlaps(&Interval::of(&[2.0, 2.02]).unwrap()));
    }

    #[test]
    fn one_round_has_no_interval_and_bad_figures_none() {
        let one = Interval::of(&[5.0]).unwrap();
        assert!(!one.has_interval());
        assert_eq!(one.times(), "5.00× (one round: no interval)");
        assert_eq!(Interval::of(&[]), None);
        assert_eq!(Interval::of(&[1.0, 0.0]), None);
        assert_eq!(Interval::ratio(&[1.0], &[0.0]), None);
        assert_eq!(Interval::ratio(&[1.0, 2.0], &[1.0]), None);
        let two = Interval::of(&[2.0, 2.0]).unwrap();
        assert_eq!((two.low, two.high), (2.0, 2.0));
        assert!(two.times().starts_with("2.00× (95% CI 2.00–2.00×)"));
    }

    #[test]
    fn t_quantiles() {
        assert_eq!(t_975(4), 2.776);
        assert_eq!(t_975(100), 1.96);
        assert!(t_975(0).is_infinite());
    }
}

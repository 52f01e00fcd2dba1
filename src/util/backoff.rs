//! The one jittered backoff of every retry loop, and the spread of a suggested `Retry-After`.
//!
//! - [`Backoff`]: before retry number `attempt` (1-based) wait `initial × 2^(attempt−1)`, the
//!   doublings bounded and the delay capped, drawn at random over the upper half of that ceiling
//!   (`[ceiling / 2, ceiling]`), so that the retries of many callers spread out yet still grow.
//! - [`spread`]: a base delay plus a random share of it (`[base, base × (1 + share))`), for the
//!   `Retry-After` of an answer that asks many clients to come back later.

use std::time::Duration;

use rand::Rng as _;

/// An exponential backoff with jitter over the upper half of each delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max_doublings: u32,
    max: Duration,
}

impl Backoff {
    /// Starts at `initial` and doubles at most `max_doublings` times; no cap on the delay.
    #[must_use]
    pub const fn new(initial: Duration, max_doublings: u32) -> Self {
        Self { initial, max_doublings, max: Duration::MAX }
    }

    /// The same backoff, never longer than `max`.
    #[must_use]
    pub const fn capped_at(self, max: Duration) -> Self {
        Self { max, ..self }
    }

    /// The longest wait before retry number `attempt` (1-based):
    /// `initial × 2^min(attempt−1, max_doublings)`, at most the cap.
    #[must_use]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        secs(self.ceiling_secs(attempt))
    }

    /// The wait before retry number `attempt` (1-based): random over `[ceiling / 2, ceiling]`.
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling_secs(attempt);
        secs(rand::rng().random_range(ceiling / 2.0..=ceiling))
    }

    fn ceiling_secs(&self, attempt: u32) -> f64 {
        let doublings = i32::try_from(attempt.saturating_sub(1).min(self.max_doublings)).unwrap_or(i32::MAX);
        (self.initial.as_secs_f64() * 2f64.powi(doublings)).min(self.max.as_secs_f64())
    }
}

/// `base` plus a random part of up to `share` of it (`0.5`: up to 50 %), so that the retries of
/// many callers told to come back after `base` spread out.
#[must_use]
pub fn spread(base: Duration, share: f64) -> Duration {
    base + base.mul_f64(rand::rng().random_range(0.0..share))
}

/// Seconds as a duration, the longest one when they do not fit.
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_over_the_upper_half_and_is_capped() {
        let b = Backoff::new(Duration::from_secs(1), 30).capped_at(Duration::from_secs(10));
        for (attempt, hi) in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (40, 10.0)] {
            let d = b.delay(attempt).as_secs_f64();
            assert!(d >= hi / 2.0 && d <= hi, "attempt {attempt}: {d}");
        }
    }

    #[test]
    fn doublings_stop_at_their_bound() {
        let b = Backoff::new(Duration::from_millis(100), 10);
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(11), Duration::from_millis(102_400));
        assert_eq!(b.ceiling(40), Duration::from_millis(102_400));
        assert_eq!(b.ceiling(0), Duration::from_millis(100), "attempt 0 counts as the first");
    }

    #[test]
    fn spread_adds_up_to_its_share() {
        let base = Duration::from_secs(30);
        for _ in 0..100 {
            let d = spread(base, 1.0);
            assert!(d >= base && d < base * 2, "{d:?}");
            let d = spread(base, 0.5);
            assert!(d >= base && d < base.mul_f64(1.5), "{d:?}");
        }
    }
}

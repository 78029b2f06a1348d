//! Capped exponential backoff with jitter.
//!
//! Every retry path of the UserOperation client (bundler unreachable, paymaster down, a node
//! that times out) goes through one [`Backoff`], so a fleet of nodes that lost their bundler at
//! the same moment does not come back in lock-step and hammer it: the delay doubles up to a cap,
//! and each sleep is drawn from the upper half of the current step ("equal jitter"), which keeps
//! a floor under the delay while still spreading the herd.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Retry timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// First delay (before jitter).
    pub initial: Duration,
    /// Largest delay (before jitter).
    pub max: Duration,
    /// Give up once this much time has been spent waiting, counted across retries.
    pub max_elapsed: Duration,
}

impl Default for BackoffPolicy {
    /// 250 ms doubling to 8 s, for at most 2 minutes: long enough to ride out a bundler restart,
    /// short enough that a node notices a dead dependency within its boot timeout.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(8),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

/// One retry sequence.
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    step: Duration,
    waited: Duration,
    attempts: u32,
    rng: RandomState,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            step: policy.initial,
            waited: Duration::ZERO,
            attempts: 0,
            rng: RandomState::new(),
        }
    }

    /// The next delay, or `None` when the time budget is spent.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.waited >= self.policy.max_elapsed {
            return None;
        }
        let step = self.step.min(self.policy.max);
        let half = step / 2;
        let delay = half + self.jitter(step - half);
        let delay = delay.min(self.policy.max_elapsed - self.waited);
        self.step = step.saturating_mul(2).min(self.policy.max);
        self.waited += delay;
        self.attempts += 1;
        Some(delay)
    }

    /// Sleeps for the next delay; `false` when the budget is spent (the caller gives up).
    pub async fn wait(&mut self) -> bool {
        match self.next_delay() {
            Some(d) => {
                tokio::time::sleep(d).await;
                true
            }
            None => false,
        }
    }

    /// Retries done so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time spent sleeping so far.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Uniform in `[0, range]` from a randomly keyed hasher: jitter needs spread, not secrecy.
    fn jitter(&self, range: Duration) -> Duration {
        let mut h = self.rng.build_hasher();
        h.write_u32(self.attempts);
        h.write_u128(self.waited.as_nanos());
        let nanos = range.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(h.finish() % (nanos + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_and_stops_at_the_budget() {
        let p = BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(800),
            max_elapsed: Duration::from_secs(5),
        };
        let mut b = Backoff::new(p);
        let mut steps = vec![];
        while let Some(d) = b.next_delay() {
            steps.push(d);
        }
        let expected_steps = [100u64, 200, 400, 800, 800, 800];
        for (d, s) in steps.iter().zip(expected_steps) {
            let s = Duration::from_millis(s);
            assert!(*d >= s / 2 && *d <= s, "{d:?} not in [{:?}, {s:?}]", s / 2);
        }
        let total: Duration = steps.iter().sum();
        assert_eq!(
            total, p.max_elapsed,
            "the last delay is clipped to the budget"
        );
        assert_eq!(b.waited(), p.max_elapsed);
        assert_eq!(b.attempts() as usize, steps.len());
        assert!(b.next_delay().is_none());
    }

    #[test]
    fn jitter_spreads() {
        let p = BackoffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(100),
        };
        let firsts: std::collections::HashSet<_> =
            (0..16).map(|_| Backoff::new(p).next_delay()).collect();
        assert!(
            firsts.len() > 1,
            "16 fresh sequences all drew the same delay"
        );
    }
}

//! Capped exponential backoff with jitter: the one retry schedule of the workspace.
//!
//! Every retry path (the UserOperation client's bundler and paymaster calls, the node's boot
//! and CSK retries, the Indexer intake's reconnects, the TLS bridge's redials) draws its delays
//! from one [`Backoff`], so a fleet that lost a dependency at the same moment does not come back
//! in lock-step and hammer it: the step doubles from `initial` up to `max`, and each delay is
//! drawn from the upper half of the current step ("equal jitter"), which keeps a floor under the
//! delay while still spreading the herd.
//!
//! Sans-IO like the rest of this crate: [`Backoff::next_delay`] says how long to wait and the
//! caller sleeps on its own clock (tokio's, or a paused one in tests). The jitter source is a
//! [`Jitter`] the caller may inject, so a test can pin every delay.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Retry timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// First step (before jitter).
    pub initial: Duration,
    /// Largest step (before jitter).
    pub max: Duration,
    /// Give up once this much time has been spent waiting, counted across retries;
    /// `Duration::MAX` retries forever (see [`BackoffPolicy::forever`]).
    pub max_elapsed: Duration,
}

impl BackoffPolicy {
    /// A policy that never gives up: the caller bounds it (a stop flag, a shutdown signal).
    pub const fn forever(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            max_elapsed: Duration::MAX,
        }
    }
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

/// Where the jitter comes from: uniform 64-bit draws. Jitter needs spread between agents, not
/// unpredictability against an adversary.
pub trait Jitter {
    fn next_u64(&mut self) -> u64;

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// SplitMix64: a small non-cryptographic PRNG, deterministic for a given seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Seeded from the process's random hash keys (std's `RandomState`), so two agents started
    /// at the same instant still draw different delays.
    pub fn random() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u8(0);
        Self(h.finish())
    }
}

impl Jitter for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// One retry sequence.
#[derive(Debug, Clone)]
pub struct Backoff<J = SplitMix64> {
    policy: BackoffPolicy,
    step: Duration,
    waited: Duration,
    attempts: u32,
    jitter: J,
}

impl Backoff<SplitMix64> {
    /// A sequence with randomly seeded jitter.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self::with_jitter(policy, SplitMix64::random())
    }
}

impl<J: Jitter> Backoff<J> {
    /// A sequence drawing its jitter from `jitter` (a seeded [`SplitMix64`] in tests).
    pub fn with_jitter(policy: BackoffPolicy, jitter: J) -> Self {
        Self {
            policy,
            step: policy.initial,
            waited: Duration::ZERO,
            attempts: 0,
            jitter,
        }
    }

    /// The next delay, or `None` when the time budget is spent (the caller gives up).
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.waited >= self.policy.max_elapsed {
            return None;
        }
        let step = self.step.min(self.policy.max);
        let half = step / 2;
        let delay = half + (step - half).mul_f64(self.jitter.unit());
        let delay = delay.min(self.policy.max_elapsed - self.waited);
        self.step = step.saturating_mul(2).min(self.policy.max);
        self.waited += delay;
        self.attempts = self.attempts.saturating_add(1);
        Some(delay)
    }

    /// Starts the schedule over (the dependency was healthy again); the budget too.
    pub fn reset(&mut self) {
        self.step = self.policy.initial;
        self.waited = Duration::ZERO;
        self.attempts = 0;
    }

    /// Retries done so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time spent waiting so far (the sum of the delays handed out).
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The jitter source, for callers that draw other samples from the same stream.
    pub fn jitter_mut(&mut self) -> &mut J {
        &mut self.jitter
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Always draws the top (or bottom) of the range, pinning every delay.
    struct Fixed(u64);
    impl Jitter for Fixed {
        fn next_u64(&mut self) -> u64 {
            self.0
        }
    }

    #[test]
    fn doubles_to_the_cap_with_jitter_and_stops_at_the_budget() {
        let p = BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(800),
            max_elapsed: Duration::from_secs(5),
        };
        let mut b = Backoff::with_jitter(p, SplitMix64::new(7));
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
    fn injected_jitter_pins_the_delays() {
        let p = BackoffPolicy::forever(Duration::from_millis(100), Duration::from_millis(400));
        let mut low = Backoff::with_jitter(p, Fixed(0));
        let lows: Vec<_> = (0..4).map(|_| low.next_delay().unwrap()).collect();
        assert_eq!(
            lows,
            [50, 100, 200, 200].map(Duration::from_millis),
            "the floor is half the step"
        );
        let mut high = Backoff::with_jitter(p, Fixed(u64::MAX));
        for s in [100u64, 200, 400, 400] {
            let d = high.next_delay().unwrap();
            let s = Duration::from_millis(s);
            assert!(d <= s && s - d < Duration::from_micros(1), "{d:?} vs {s:?}");
        }
        let again: Vec<_> = {
            let mut b = Backoff::with_jitter(p, SplitMix64::new(42));
            (0..8).map(|_| b.next_delay()).collect()
        };
        let mut b = Backoff::with_jitter(p, SplitMix64::new(42));
        assert_eq!(again, (0..8).map(|_| b.next_delay()).collect::<Vec<_>>());
    }

    #[test]
    fn forever_never_gives_up_and_reset_starts_over() {
        let p = BackoffPolicy::forever(Duration::from_millis(250), Duration::from_secs(30));
        let mut b = Backoff::with_jitter(p, SplitMix64::new(1));
        for _ in 0..10_000 {
            let d = b.next_delay().expect("a forever policy never runs out");
            assert!(d <= p.max);
        }
        assert_eq!(b.attempts(), 10_000);
        b.reset();
        assert_eq!(b.attempts(), 0);
        let d = b.next_delay().unwrap();
        assert!(d >= p.initial / 2 && d <= p.initial, "{d:?}");
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
        let mut b = Backoff::with_jitter(p, SplitMix64::new(3));
        let seeded: std::collections::HashSet<_> = (0..16)
            .map(|_| {
                b.reset();
                b.next_delay()
            })
            .collect();
        assert!(seeded.len() > 1, "one stream kept drawing the same delay");
    }
}

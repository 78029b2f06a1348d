//! Per-client rate limit of the JSON-RPC endpoint: a token bucket per remote IP.
//!
//! Every request costs the service chain reads (provenance, fees, a registration simulation)
//! and a database write, so one client must not be able to flood it and starve the nodes. Over
//! the limit a client gets HTTP 429 with a JSON-RPC error (-32005 "limit exceeded") that says
//! so, and a `Retry-After` header.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Requests per second and burst per client IP.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second per IP.
    pub per_sec: f64,
    /// Requests a client may make at once after being idle.
    pub burst: u32,
}

impl Default for RateLimit {
    /// 20 requests per second, bursts of 40: a node makes two per operation.
    fn default() -> Self {
        Self {
            per_sec: 20.0,
            burst: 40,
        }
    }
}

/// Buckets kept before idle (full) ones are dropped, so a spray of source addresses costs
/// bounded memory.
const MAX_BUCKETS: usize = 100_000;

/// The token buckets.
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter enforcing `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one token for `ip` at `now`; `false` when its bucket is empty.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let burst = f64::from(self.limit.burst.max(1));
        let rate = self.limit.per_sec.max(0.0);
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_BUCKETS && !b.contains_key(&ip) {
            b.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            if b.len() >= MAX_BUCKETS {
                // Every tracked client is mid-burst: refuse newcomers rather than grow.
                return false;
            }
        }
        let (tokens, at) = b.entry(ip).or_insert((burst, now));
        let refilled =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            true
        } else {
            *tokens = refilled;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_empties_refills_and_is_per_ip() {
        let l = RateLimiter::new(RateLimit {
            per_sec: 2.0,
            burst: 3,
        });
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.allow(a, t0)));
        assert!(!l.allow(a, t0), "burst used up");
        assert!(l.allow(b, t0), "another client has its own bucket");
        assert!(!l.allow(a, t0 + Duration::from_millis(400)));
        assert!(
            l.allow(a, t0 + Duration::from_millis(600)),
            "refilled at 2/s"
        );
    }
}

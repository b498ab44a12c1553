//! Limits the pipeline enforces besides policy: blast radius per environment and tool (handed to
//! policy, which denies with the numbers), and token-bucket rate limits per principal and effect.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opsgate_core::Effect;

/// The most things one write may touch, by environment and by tool. A call gets the tightest
/// limit that applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlastRadiusLimits {
    pub environments: BTreeMap<String, u64>,
    pub tools: BTreeMap<String, u64>,
}

impl BlastRadiusLimits {
    pub fn max_for(&self, tool: &str, environment: Option<&str>) -> Option<u64> {
        let by_environment = environment.and_then(|environment| self.environments.get(environment));
        match (by_environment, self.tools.get(tool)) {
            (Some(left), Some(right)) => Some(*left.min(right)),
            (one, other) => one.or(other).copied(),
        }
    }
}

/// A sustained rate with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_minute: f64,
    pub burst: f64,
}

/// Rates per tool effect; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    pub read: Option<Rate>,
    pub write: Option<Rate>,
}

impl Default for RateLimits {
    /// Reads are not limited; writes (and destructive calls, which share the write bucket) get
    /// 60 a minute with bursts of 20 per principal: enough for a human-paced agent, a brake on a
    /// runaway loop.
    fn default() -> Self {
        RateLimits { read: None, write: Some(Rate { per_minute: 60.0, burst: 20.0 }) }
    }
}

impl RateLimits {
    fn rate(&self, effect: Effect) -> Option<Rate> {
        match effect {
            Effect::Read => self.read,
            Effect::Write | Effect::Destructive => self.write,
        }
    }
}

/// A token bucket: `capacity` at once, refilled at `per_second`. Shared by the rate limits here
/// and the identity stage's throttle on store lookups for unknown API keys.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub(crate) fn new(capacity: f64, per_second: f64) -> Self {
        TokenBucket { capacity, per_second, tokens: capacity, updated: Instant::now() }
    }

    /// Takes a token, or says how long until one is free.
    pub(crate) fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.per_second <= 0.0 {
            Err(Duration::from_secs(60))
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_second))
        }
    }

    /// Whether it would be full by now: a full bucket is the same as no bucket.
    fn full_at(&self, now: Instant) -> bool {
        self.tokens + now.duration_since(self.updated).as_secs_f64() * self.per_second >= self.capacity
    }

    fn refill(&mut self, now: Instant) {
        let refilled = now.duration_since(self.updated).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refilled).min(self.capacity);
        self.updated = now;
    }
}

/// Token buckets keyed by principal, one map per effect class (reads, writes), so that a lookup
/// by `&str` needs no owned key.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<[HashMap<String, TokenBucket>; 2]>,
}

/// Buckets kept per effect class before idle ones are dropped.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter { limits, buckets: Mutex::new([HashMap::new(), HashMap::new()]) }
    }

    /// Takes one token for `principal`'s call of `effect`, or says how long until one is free.
    pub fn check(&self, principal: &str, effect: Effect) -> Result<(), Duration> {
        let Some(rate) = self.limits.rate(effect) else { return Ok(()) };
        // A panic elsewhere while holding the lock leaves the buckets sound: limits stay on.
        let mut classes = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let buckets = &mut classes[usize::from(effect != Effect::Read)];
        // The common case, a principal seen before, allocates nothing.
        if let Some(bucket) = buckets.get_mut(principal) {
            return bucket.take();
        }
        if buckets.len() >= MAX_BUCKETS {
            let now = Instant::now();
            buckets.retain(|_, bucket| !bucket.full_at(now));
        }
        buckets
            .entry(principal.to_string())
            .or_insert_with(|| TokenBucket::new(rate.burst, rate.per_minute / 60.0))
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_blast_radius_limit_applies() {
        let limits = BlastRadiusLimits {
            environments: BTreeMap::from([("production".to_string(), 10)]),
            tools: BTreeMap::from([("silence_alert".to_string(), 25), ("expire_silence".to_string(), 5)]),
        };
        assert_eq!(limits.max_for("silence_alert", Some("production")), Some(10));
        assert_eq!(limits.max_for("expire_silence", Some("production")), Some(5));
        assert_eq!(limits.max_for("silence_alert", Some("staging")), Some(25));
        assert_eq!(limits.max_for("other", Some("staging")), None);
    }

    #[test]
    fn a_burst_is_allowed_then_calls_wait_for_the_rate() {
        let limiter = RateLimiter::new(RateLimits { read: None, write: Some(Rate { per_minute: 60.0, burst: 3.0 }) });
        for _ in 0..3 {
            assert_eq!(limiter.check("agent", Effect::Write), Ok(()));
        }
        let wait = limiter.check("agent", Effect::Destructive).expect_err("the fourth write waits");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        // Another principal has its own bucket; reads are unlimited.
        assert_eq!(limiter.check("other", Effect::Write), Ok(()));
        for _ in 0..100 {
            assert_eq!(limiter.check("agent", Effect::Read), Ok(()));
        }
    }
}

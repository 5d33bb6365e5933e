//! Client-side rate limiting: one bucket per (connection, location), so that weft stays under an app's documented
//! limit instead of learning it from 429s (GHL: 100 requests per 10 s and 200,000 per day, per location).
//!
//! The bucket holds `requests` tokens and each token taken comes back `per_seconds` later. That is a sliding
//! window: at no point do more than `requests` calls start within any `per_seconds` span, which keeps a
//! fixed-window server (which resets on its own schedule) as happy as a sliding-window one. The daily cap is a
//! counter over 24 h from the first call of the day window.
//!
//! Time comes from a [`Clock`]: [`TokioClock`] sleeps for real, [`SimulatedClock`] only moves a number forward,
//! which is how [`simulate`] can tell dry-run what a plan of N calls would cost without waiting for it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::catalog::manifest::RateLimit;
use crate::transport::BoxFuture;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A source of time that can also wait.
pub trait Clock: Send + Sync {
    /// Time since the clock's start.
    fn now(&self) -> Duration;
    /// Wait `duration`. A simulated clock returns at once, having moved its time forward.
    fn sleep(&self, duration: Duration) -> BoxFuture<'_, ()>;
}

/// Wall time through tokio (so that `tokio::time::pause` works in tests that want it).
#[derive(Debug)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        Self { start: tokio::time::Instant::now() }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Virtual time: `sleep` moves time forward instead of waiting. Concurrent sleepers that started at the same
/// instant and wait the same time end at the same instant (time moves to the latest wake-up, it does not add up).
#[derive(Debug, Default)]
pub struct SimulatedClock {
    now: Mutex<Duration>,
}

impl SimulatedClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Move time forward to `instant` (never backwards).
    pub fn advance_to(&self, instant: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = (*now).max(instant);
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'_, ()> {
        let wake = self.now() + duration;
        self.advance_to(wake);
        Box::pin(std::future::ready(()))
    }
}

/// Which bucket a call draws from: limits apply per connection and, for GHL, per location.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BucketKey {
    pub connection: String,
    pub location: Option<String>,
}

impl BucketKey {
    pub fn new(connection: &str, location: Option<&str>) -> Self {
        Self { connection: connection.to_string(), location: location.map(str::to_string) }
    }
}

/// The state of one bucket. Pure arithmetic on instants, shared by the limiter and [`simulate`].
#[derive(Debug, Default)]
struct Bucket {
    limit: Option<RateLimit>,
    /// Start times of the most recent calls, at most `requests` of them.
    recent: VecDeque<Duration>,
    day_start: Duration,
    day_count: u32,
    /// Nobody starts a call before this (set after a 429 or an exhausted `X-RateLimit-Remaining`).
    hold_until: Duration,
}

impl Bucket {
    fn new(limit: Option<RateLimit>) -> Self {
        Self { limit, ..Self::default() }
    }

    fn window(limit: &RateLimit) -> (usize, Duration) {
        (limit.requests.max(1) as usize, Duration::from_secs(u64::from(limit.per_seconds)))
    }

    /// The earliest instant, at or after `now`, at which a call may start.
    fn ready_at(&self, now: Duration) -> Duration {
        let mut at = now.max(self.hold_until);
        if let Some(limit) = &self.limit {
            let (requests, window) = Self::window(limit);
            if self.recent.len() >= requests {
                // The oldest of the last `requests` calls gives its token back one window after it started.
                at = at.max(self.recent[self.recent.len() - requests] + window);
            }
            if let Some(per_day) = limit.per_day {
                if self.day_count >= per_day && now < self.day_start + DAY {
                    at = at.max(self.day_start + DAY);
                }
            }
        }
        at
    }

    /// Record a call starting at `now` (which must be at or after `ready_at`).
    fn take(&mut self, now: Duration) {
        let Some(limit) = &self.limit else { return };
        let (requests, _) = Self::window(limit);
        while self.recent.len() >= requests {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        if self.day_count == 0 || now >= self.day_start + DAY {
            self.day_start = now;
            self.day_count = 0;
        }
        self.day_count += 1;
    }
}

/// All buckets of a process, on one clock.
pub struct RateLimiter {
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter").field("now", &self.clock.now()).finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock, buckets: Mutex::new(HashMap::new()) }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Set (or clear) the limit of a bucket. A bucket without a limit still honours holds.
    pub fn configure(&self, key: BucketKey, limit: Option<RateLimit>) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.entry(key).or_default().limit = limit;
    }

    /// Wait until the bucket has a token, take it, and return how long the limit made it wait (zero when a
    /// token was there at once).
    pub async fn acquire(&self, key: &BucketKey) -> Duration {
        let start = self.clock.now();
        let mut slept = false;
        loop {
            let wait = {
                let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
                let bucket = buckets.entry(key.clone()).or_default();
                let now = self.clock.now();
                let ready = bucket.ready_at(now);
                if ready <= now {
                    bucket.take(now);
                    return if slept { now.saturating_sub(start) } else { Duration::ZERO };
                }
                ready - now
            };
            // Re-check after waking: another caller may have taken the token that freed up.
            self.clock.sleep(wait).await;
            slept = true;
        }
    }

    /// Stop every caller of this bucket from starting a call for `duration` (the server said to back off).
    pub fn hold(&self, key: &BucketKey, duration: Duration) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(key.clone()).or_default();
        bucket.hold_until = bucket.hold_until.max(self.clock.now() + duration);
    }

    /// How long a call on this bucket would wait if it started now.
    pub fn ready_in(&self, key: &BucketKey) -> Duration {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.clock.now();
        buckets.get(key).map(|b| b.ready_at(now) - now).unwrap_or_default()
    }
}

/// What a sequence of calls costs under a rate limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    pub calls: usize,
    /// From the first call's start to the last call's start, throttled to the limit.
    pub duration: Duration,
    /// The first call (1-based) that sent at full speed would exceed the limit, i.e. get a 429.
    pub first_throttled_call: Option<usize>,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} calls take at least {:.1} s", self.calls, self.duration.as_secs_f64())?;
        match self.first_throttled_call {
            Some(k) => write!(f, "; without throttling, call {k} would get a 429"),
            None => f.write_str("; all within the rate limit"),
        }
    }
}

/// Throttle `calls` back-to-back calls through one bucket on a simulated clock.
pub fn simulate(limit: &RateLimit, calls: usize) -> Budget {
    let clock = SimulatedClock::new();
    let mut bucket = Bucket::new(Some(limit.clone()));
    let mut first_throttled_call = None;
    for call in 1..=calls {
        let now = clock.now();
        let ready = bucket.ready_at(now);
        if ready > now {
            first_throttled_call.get_or_insert(call);
            clock.advance_to(ready);
        }
        bucket.take(clock.now());
    }
    Budget { calls, duration: clock.now(), first_throttled_call }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u32, per_seconds: u32, per_day: Option<u32>) -> RateLimit {
        RateLimit { requests, per_seconds, per_day }
    }

    #[test]
    fn ghl_burst_window() {
        let b = simulate(&limit(100, 10, Some(200_000)), 250);
        assert_eq!(b.duration, Duration::from_secs(20));
        assert_eq!(b.first_throttled_call, Some(101));
        assert_eq!(simulate(&limit(100, 10, None), 100).first_throttled_call, None);
    }

    #[test]
    fn daily_cap_waits_for_the_next_day() {
        let b = simulate(&limit(100, 1, Some(150)), 151);
        assert_eq!(b.first_throttled_call, Some(101));
        assert_eq!(b.duration, DAY);
    }

    #[tokio::test]
    async fn hold_delays_everyone_on_the_simulated_clock() {
        let clock = Arc::new(SimulatedClock::new());
        let limiter = RateLimiter::new(clock.clone());
        let key = BucketKey::new("ghl", Some("loc"));
        limiter.hold(&key, Duration::from_secs(3));
        assert_eq!(limiter.acquire(&key).await, Duration::from_secs(3));
        assert_eq!(limiter.acquire(&key).await, Duration::ZERO);
    }
}

//! What goes wrong on purpose: the rate limit (429 with `Retry-After` and GHL's `X-RateLimit-*` headers) and
//! injected faults (500, 502, a timeout, a dropped connection), drawn from a small xorshift generator.
//!
//! The limit is a sliding window per (connector, `Authorization` header), like GHL's burst limit of 100 requests
//! per 10 s per app and location; a rejected request does not use up the window. A daily budget (GHL's 200 000)
//! is counted since start-up. The fault kinds are chosen so that a client sees each the way it sees the real
//! thing: a status, a request that outlives any sane client timeout, or a connection that closes before a
//! response arrives.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// GHL's documented daily budget per app and location.
pub const DAILY_LIMIT: u32 = 200_000;

/// How long an injected timeout holds the request: longer than weft's default 30 s client timeout.
pub const TIMEOUT_DELAY: Duration = Duration::from_secs(35);

/// A tiny, seedable pseudo-random generator (xorshift64*). Good enough for fault dice and ids; not crypto.
#[derive(Clone, Debug)]
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Xorshift {
        // Zero is xorshift's one fixed point; any other seed walks the full period.
        Xorshift(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    /// Seeded from the clock, so two sandboxes started together still differ.
    pub fn from_clock() -> Xorshift {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        Xorshift::new((nanos as u64) ^ ((nanos >> 64) as u64) ^ u64::from(std::process::id()).rotate_left(32))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` characters drawn from `alphabet`.
    pub fn string(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len).map(|_| alphabet[self.below(alphabet.len() as u64) as usize] as char).collect()
    }
}

/// An injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 500 Internal Server Error in the connector's error shape.
    Internal,
    /// 502 Bad Gateway in the connector's error shape.
    BadGateway,
    /// The request is held for [`TIMEOUT_DELAY`], then answered 504: the client has given up long before.
    Timeout,
    /// The connection closes without a complete response (see `mod.rs`: the body stream fails, so hyper drops
    /// the connection; a reqwest client reports a connection error, not a status).
    Reset,
}

impl Fault {
    /// How the log names it.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Internal => "500",
            Fault::BadGateway => "502",
            Fault::Timeout => "timeout",
            Fault::Reset => "reset",
        }
    }

    /// With probability `rate`, one of the four kinds, equally likely.
    pub fn roll(rng: &mut Xorshift, rate: f64) -> Option<Fault> {
        if rate <= 0.0 || rng.next_f64() >= rate {
            return None;
        }
        Some([Fault::Internal, Fault::BadGateway, Fault::Timeout, Fault::Reset][rng.below(4) as usize])
    }
}

/// What the limiter decided about one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    pub allowed: bool,
    pub max: u32,
    pub remaining: u32,
    pub window: Duration,
    pub daily_remaining: u32,
    /// When refused: whole seconds until a slot frees up (at least 1).
    pub retry_after: Option<u64>,
}

impl Admission {
    /// GHL's headers, on successes and on 429s alike (plus `Retry-After` on a 429).
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        put("x-ratelimit-limit-daily", DAILY_LIMIT.to_string());
        put("x-ratelimit-daily-remaining", self.daily_remaining.to_string());
        put("x-ratelimit-interval-milliseconds", self.window.as_millis().to_string());
        put("x-ratelimit-max", self.max.to_string());
        put("x-ratelimit-remaining", self.remaining.to_string());
        if let Some(secs) = self.retry_after {
            put("retry-after", secs.to_string());
        }
        h
    }
}

/// Sliding-window counters per (connector, Authorization).
#[derive(Debug)]
pub struct RateLimiter {
    max: u32,
    window: Duration,
    recent: HashMap<(String, String), VecDeque<Instant>>,
    daily: HashMap<(String, String), u32>,
}

impl RateLimiter {
    pub fn new(max: u32, window: Duration) -> RateLimiter {
        RateLimiter { max, window, recent: HashMap::new(), daily: HashMap::new() }
    }

    pub fn admit(&mut self, connector: &str, authorization: &str, now: Instant) -> Admission {
        let key = (connector.to_string(), authorization.to_string());
        let recent = self.recent.entry(key.clone()).or_default();
        while recent.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            recent.pop_front();
        }
        let used_today = self.daily.entry(key).or_default();
        let in_window = recent.len() as u32;
        if in_window >= self.max || *used_today >= DAILY_LIMIT {
            let wait = recent.front().map_or(self.window, |t| self.window.saturating_sub(now.duration_since(*t)));
            return Admission {
                allowed: false,
                max: self.max,
                remaining: 0,
                window: self.window,
                daily_remaining: DAILY_LIMIT.saturating_sub(*used_today),
                retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            };
        }
        recent.push_back(now);
        *used_today += 1;
        Admission {
            allowed: true,
            max: self.max,
            remaining: self.max - in_window - 1,
            window: self.window,
            daily_remaining: DAILY_LIMIT - *used_today,
            retry_after: None,
        }
    }
}

/// `100/10s`, `5/1s`, `20/500ms`, `1000/1m`, `100/10` (seconds); `off` or `none` disables the limit.
pub fn parse_rate_limit(text: &str) -> Result<Option<(u32, Duration)>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") || text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let bad = || format!("invalid rate limit `{text}`: expected REQUESTS/WINDOW such as 100/10s, 5/500ms or off");
    let (count, window) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let window = window.trim();
    let (number, unit) =
        window.split_at(window.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(window.len()));
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(bad()),
    };
    if count == 0 || seconds <= 0.0 || !seconds.is_finite() {
        return Err(bad());
    }
    Ok(Some((count, Duration::from_secs_f64(seconds))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides_and_says_when_to_come_back() {
        let mut limiter = RateLimiter::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.admit("ghl", "Bearer a", t0).remaining, 1);
        assert_eq!(limiter.admit("ghl", "Bearer a", t0 + Duration::from_secs(4)).remaining, 0);
        let refused = limiter.admit("ghl", "Bearer a", t0 + Duration::from_secs(5));
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Some(5));
        // Another token, or another connector, has its own window.
        assert!(limiter.admit("ghl", "Bearer b", t0 + Duration::from_secs(5)).allowed);
        assert!(limiter.admit("razorpay", "Bearer a", t0 + Duration::from_secs(5)).allowed);
        // The first call leaves the window after 10 s.
        assert!(limiter.admit("ghl", "Bearer a", t0 + Duration::from_secs(10)).allowed);
    }

    #[test]
    fn rate_limits_parse() {
        assert_eq!(parse_rate_limit("100/10s"), Ok(Some((100, Duration::from_secs(10)))));
        assert_eq!(parse_rate_limit("5/500ms"), Ok(Some((5, Duration::from_millis(500)))));
        assert_eq!(parse_rate_limit("60/1m"), Ok(Some((60, Duration::from_secs(60)))));
        assert_eq!(parse_rate_limit("7/3"), Ok(Some((7, Duration::from_secs(3)))));
        assert_eq!(parse_rate_limit("off"), Ok(None));
        assert!(parse_rate_limit("0/1s").is_err());
        assert!(parse_rate_limit("100 per 10s").is_err());
        assert!(parse_rate_limit("100/10 days").is_err());
    }

    #[test]
    fn faults_follow_the_rate() {
        let mut rng = Xorshift::new(7);
        assert!((0..1000).all(|_| Fault::roll(&mut rng, 0.0).is_none()));
        let all: Vec<Fault> = (0..1000).filter_map(|_| Fault::roll(&mut rng, 1.0)).collect();
        assert_eq!(all.len(), 1000);
        for kind in [Fault::Internal, Fault::BadGateway, Fault::Timeout, Fault::Reset] {
            assert!(all.contains(&kind), "{kind:?} never drawn");
        }
        let some = (0..10_000).filter(|_| Fault::roll(&mut rng, 0.1).is_some()).count();
        assert!((700..1300).contains(&some), "{some} faults at rate 0.1");
    }
}

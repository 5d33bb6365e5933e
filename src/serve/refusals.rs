//! Refused deliveries in the log, at a bounded rate.
//!
//! Each refusal (unknown connection, bad signature, stale or replayed, not JSON) is a WARN line saying why,
//! never with the body. A flood of forged or malformed requests must not become a flood of log lines that
//! fills the disk or buries everything else: at most [`LINES`] refusals are logged per [`WINDOW`]; past that
//! one line says the rest of the window is only counted, and the first line of the next window says how many
//! went unlogged. `weft_events_rejected_total` counts every refusal either way.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Refusals logged per window.
pub const LINES: u32 = 20;
/// The window they are counted in.
pub const WINDOW: Duration = Duration::from_secs(10);

/// What to do with one refusal's log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Log it; first say that `unlogged` refusals of the previous window were not (when it is not 0).
    Log { unlogged: u64 },
    /// Do not log it. `first`: the first one left out this window (say that the rest are only counted).
    Quiet { first: bool },
}

#[derive(Debug)]
pub struct RefusalLog {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    logged: u32,
    unlogged: u64,
}

impl RefusalLog {
    pub fn new(now: Instant) -> RefusalLog {
        RefusalLog { window: Mutex::new(Window { started: now, logged: 0, unlogged: 0 }) }
    }

    /// Decide for a refusal at `now` (a lock held for a few instructions, taken only on the refusal path).
    pub fn admit(&self, now: Instant) -> Admit {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(window.started) >= WINDOW {
            let unlogged = window.unlogged;
            *window = Window { started: now, logged: 1, unlogged: 0 };
            return Admit::Log { unlogged };
        }
        if window.logged < LINES {
            window.logged += 1;
            return Admit::Log { unlogged: 0 };
        }
        window.unlogged += 1;
        Admit::Quiet { first: window.unlogged == 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_logged_up_to_the_limit_then_counted_then_reported() {
        let start = Instant::now();
        let log = RefusalLog::new(start);
        let at = |ms: u64| start + Duration::from_millis(ms);
        for i in 0..LINES {
            assert_eq!(log.admit(at(u64::from(i))), Admit::Log { unlogged: 0 }, "refusal {i}");
        }
        assert_eq!(log.admit(at(100)), Admit::Quiet { first: true });
        for _ in 0..499 {
            assert_eq!(log.admit(at(200)), Admit::Quiet { first: false });
        }
        // The next window: logged again, with the count of what was left out.
        let next = at(WINDOW.as_millis() as u64);
        assert_eq!(log.admit(next), Admit::Log { unlogged: 500 });
        assert_eq!(log.admit(next), Admit::Log { unlogged: 0 });
        // A quiet window after it reports nothing left out.
        assert_eq!(log.admit(next + WINDOW * 3), Admit::Log { unlogged: 0 });
    }

    #[test]
    fn a_clock_that_goes_backwards_does_not_reopen_the_window() {
        let start = Instant::now() + Duration::from_secs(60);
        let log = RefusalLog::new(start);
        for _ in 0..LINES {
            assert!(matches!(log.admit(start), Admit::Log { .. }));
        }
        assert_eq!(log.admit(start - Duration::from_secs(30)), Admit::Quiet { first: true });
    }
}

//! Schedule triggers: at each cron time, in the flow's time zone, enqueue one event (`schedule` / the flow's
//! name) whose id is the flow and the time, so that two servers on one database, or a restart within the minute,
//! fire it once. The last time each flow fired is kept in the store: a server that was down over one or more of
//! a flow's times runs it once on start-up, for the latest time it missed, not once per missed time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use super::Service;
use crate::dsl::zone::Zone;
use crate::store::NewEvent;

/// How many cron times a catch-up looks through between the last fire and now (a minutely cron over a week
/// of downtime is 10,080); past that it settles for the latest it saw.
const CATCH_UP_LIMIT: usize = 100_000;

/// A scheduled flow, compiled.
pub(super) struct Schedule {
    pub flow: String,
    pub cron: croner::Cron,
    pub zone: Zone,
}

impl Schedule {
    /// The first cron time after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        fn next<Z: TimeZone>(cron: &croner::Cron, zone: &Z, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
            cron.find_next_occurrence(&after.with_timezone(zone), false).ok().map(|t| t.with_timezone(&Utc))
        }
        match &self.zone {
            Zone::Fixed(offset) => next(&self.cron, offset, after),
            Zone::Named(tz) => next(&self.cron, tz, after),
        }
    }

    /// The latest cron time in `(since, now]`, if any.
    fn latest_missed(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut latest = None;
        let mut at = since;
        for _ in 0..CATCH_UP_LIMIT {
            match self.next_after(at) {
                Some(t) if t <= now => {
                    latest = Some(t);
                    at = t;
                }
                _ => break,
            }
        }
        latest
    }
}

impl Service {
    /// Fire scheduled flows at their times until shutdown; first, each flow that missed a time while the server
    /// was down runs once.
    pub async fn schedule(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        self.catch_up(Utc::now());
        loop {
            let flows = self.current();
            let now = Utc::now();
            let next = flows.schedules.iter().filter_map(|s| s.next_after(now)).min();
            // Nothing scheduled: wait for a reload (or shutdown).
            let wait = next.map_or(Duration::from_secs(3600), |at| (at - now).to_std().unwrap_or_default());
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.reloaded.notified() => {
                    // A flow the reload added starts counting now (and one that missed a time runs it).
                    self.catch_up(Utc::now());
                    continue;
                }
                _ = shutdown.changed() => return,
            }
            let Some(at) = next else { continue };
            for s in flows.schedules.iter().filter(|s| s.next_after(now) == Some(at)) {
                self.fire(s, at);
            }
            self.wake.notify_one();
        }
    }

    /// Each schedule that has fired before and missed one or more times since (the server was down) fires
    /// once, for the latest; one that never fired starts counting from `now`.
    pub fn catch_up(&self, now: DateTime<Utc>) {
        for s in &self.current().schedules {
            let last = self.store.poll_cursor(&cursor_key(&s.flow)).ok().flatten();
            match last.and_then(|t| DateTime::parse_from_rfc3339(&t).ok()) {
                Some(last) => {
                    if let Some(missed) = s.latest_missed(last.with_timezone(&Utc), now) {
                        tracing::info!("{} missed its run at {missed} while stopped; running it once", s.flow);
                        self.fire(s, missed);
                        self.wake.notify_one();
                    }
                }
                None => {
                    if let Err(e) = self.store.save_poll_cursor(&cursor_key(&s.flow), &now.to_rfc3339()) {
                        tracing::error!("could not save the schedule of {}: {e}", s.flow);
                    }
                }
            }
        }
    }

    /// Queue the run of `s` for the time `at`, and remember `at` as its last.
    fn fire(&self, s: &Schedule, at: DateTime<Utc>) {
        let event = NewEvent {
            connection: "schedule".into(),
            event_id: format!("{}@{}", s.flow, at.to_rfc3339()),
            kind: s.flow.clone(),
            payload: json!({"scheduled_at": at.to_rfc3339(), "flow": s.flow}).into(),
            received_at_ms: Utc::now().timestamp_millis(),
        };
        if let Err(e) = self.store.enqueue_polled(&cursor_key(&s.flow), &[event], &at.to_rfc3339()) {
            tracing::error!("could not queue the scheduled run of {}: {e}", s.flow);
        }
    }
}

/// Where a schedule's last time is kept (beside the poll cursors, under a name no poll flow can have).
fn cursor_key(flow: &str) -> String {
    format!("schedule:{flow}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, tz: &str) -> Schedule {
        Schedule { flow: "f".into(), cron: cron.parse().unwrap(), zone: Zone::parse(Some(tz)).unwrap() }
    }

    fn utc(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_named_zone_follows_daylight_saving() {
        let nine = schedule("0 9 * * *", "America/New_York");
        // EST (UTC-5) in January, EDT (UTC-4) in July.
        assert_eq!(nine.next_after(utc("2026-01-15T00:00:00Z")), Some(utc("2026-01-15T14:00:00Z")));
        assert_eq!(nine.next_after(utc("2026-07-15T00:00:00Z")), Some(utc("2026-07-15T13:00:00Z")));
        let kolkata = schedule("30 2 * * *", "Asia/Kolkata");
        assert_eq!(kolkata.next_after(utc("2026-03-01T00:00:00Z")), Some(utc("2026-03-01T21:00:00Z")));
        let fixed = schedule("0 2 * * *", "+05:30");
        assert_eq!(fixed.next_after(utc("2026-03-01T00:00:00Z")), Some(utc("2026-03-01T20:30:00Z")));
    }

    #[test]
    fn downtime_over_many_times_catches_up_with_the_latest_only() {
        let hourly = schedule("0 * * * *", "UTC");
        let missed = hourly.latest_missed(utc("2026-03-01T00:00:00Z"), utc("2026-03-01T05:30:00Z"));
        assert_eq!(missed, Some(utc("2026-03-01T05:00:00Z")));
        assert_eq!(hourly.latest_missed(utc("2026-03-01T05:00:00Z"), utc("2026-03-01T05:30:00Z")), None);
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert_eq!(Zone::parse(Some("Asia/Kolkatta")), None);
        assert_eq!(Zone::parse(Some("+5:30")), None);
        assert!(Zone::parse(Some("Europe/London")).is_some());
    }
}

//! The time zone of a schedule trigger, as the flow file names it.

/// The zone cron fields are read in: a fixed offset, or an IANA zone whose offset follows daylight saving.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Zone {
    Fixed(chrono::FixedOffset),
    Named(chrono_tz::Tz),
}

impl Zone {
    /// `UTC` (the default), `+05:30`, or an IANA name such as `Asia/Kolkata` (what validation accepts).
    pub fn parse(tz: Option<&str>) -> Option<Zone> {
        match tz {
            None | Some("UTC") | Some("Z") => chrono::FixedOffset::east_opt(0).map(Zone::Fixed),
            Some(t) if t.len() == 6 && (t.starts_with('+') || t.starts_with('-')) && &t[3..4] == ":" => {
                let sign = if t.starts_with('-') { -1 } else { 1 };
                let hours: i32 = t[1..3].parse().ok()?;
                let minutes: i32 = t[4..6].parse().ok()?;
                chrono::FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)).map(Zone::Fixed)
            }
            Some(name) => name.parse::<chrono_tz::Tz>().ok().map(Zone::Named),
        }
    }
}

//! Time zones as the policy names them: `UTC`, a fixed offset (`+02:00`), or an IANA name
//! (`Europe/Berlin`, from chrono-tz's compiled-in database, so a container without
//! `/usr/share/zoneinfo` reads them the same). Local wall-clock times are converted to instants
//! here, once, with the rules for the hours a daylight-saving change skips or repeats.

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Zone {
    Fixed(FixedOffset),
    Named(Tz),
}

impl Default for Zone {
    fn default() -> Self {
        Zone::Fixed(FixedOffset::east_opt(0).expect("zero offset"))
    }
}

impl Zone {
    /// `UTC` (any case), `+HH:MM` / `-HH:MM` (at most ±14:00), or an IANA name; with the name
    /// as it should be written back.
    pub fn parse(s: &str) -> Option<(String, Zone)> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("utc") {
            return Some(("UTC".to_owned(), Zone::default()));
        }
        if let Some(sign) = match s.as_bytes().first()? {
            b'+' => Some(1),
            b'-' => Some(-1),
            _ => None,
        } {
            let (h, m) = s[1..].split_once(':')?;
            if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
                return None;
            }
            let hours: i32 = h.parse().ok()?;
            let minutes: i32 = m.parse().ok()?;
            let offset = hours * 60 + minutes;
            if minutes >= 60 || offset > 14 * 60 {
                return None;
            }
            return Some((s.to_owned(), Zone::Fixed(FixedOffset::east_opt(sign * offset * 60)?)));
        }
        let tz: Tz = s.parse().ok()?;
        Some((tz.name().to_owned(), Zone::Named(tz)))
    }

    /// The zone named `s`, UTC when it is not one (the policy parser has refused it already).
    pub fn named(s: &str) -> Zone {
        Zone::parse(s).map(|(_, z)| z).unwrap_or_default()
    }

    /// The wall-clock time at instant `ms`.
    pub fn local(&self, ms: i64) -> NaiveDateTime {
        let utc = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        match self {
            Zone::Fixed(o) => utc.with_timezone(o).naive_local(),
            Zone::Named(tz) => utc.with_timezone(tz).naive_local(),
        }
    }

    /// The offset from UTC at instant `ms`, in seconds east.
    pub fn offset_seconds(&self, ms: i64) -> i32 {
        let utc = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        match self {
            Zone::Fixed(o) => o.local_minus_utc(),
            Zone::Named(tz) => tz.offset_from_utc_datetime(&utc.naive_utc()).fix().local_minus_utc(),
        }
    }

    /// The instant a wall-clock time happens: of a time that happens twice (clocks going back),
    /// the first; of one that never happens (clocks going forward), the moment the clocks jump
    /// (what a calendar does with a 02:30 meeting on a spring-forward night).
    pub fn instant(&self, local: NaiveDateTime) -> i64 {
        let resolve = |r: LocalResult<i64>, gap: &dyn Fn() -> i64| match r {
            LocalResult::Single(t) => t,
            LocalResult::Ambiguous(a, b) => a.min(b),
            LocalResult::None => gap(),
        };
        match self {
            Zone::Fixed(o) => resolve(o.from_local_datetime(&local).map(|d| d.timestamp_millis()), &|| 0),
            Zone::Named(tz) => resolve(tz.from_local_datetime(&local).map(|d| d.timestamp_millis()), &|| {
                // The first minute after the gap exists: its instant is when the clocks jumped.
                let mut t = local;
                for _ in 0..(24 * 60) {
                    t += chrono::Duration::minutes(1);
                    if let LocalResult::Single(d) | LocalResult::Ambiguous(d, _) = tz.from_local_datetime(&t) {
                        return d.timestamp_millis();
                    }
                }
                local.and_utc().timestamp_millis()
            }),
        }
    }

    /// `2026-12-07 09:30 CET`-like, for texts: local date and time with the offset.
    pub fn format(&self, ms: i64) -> String {
        let local = self.local(ms);
        let off = self.offset_seconds(ms);
        let sign = if off < 0 { '-' } else { '+' };
        let off = off.abs();
        format!("{} {}{:02}:{:02}", local.format("%Y-%m-%d %H:%M"), sign, off / 3600, off % 3600 / 60)
    }

    /// RFC 3339 with the local offset (`2026-11-30T00:00:00+01:00`).
    pub fn rfc3339(&self, ms: i64) -> String {
        let off = FixedOffset::east_opt(self.offset_seconds(ms)).unwrap_or(Utc.fix());
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap_or_default()
            .with_timezone(&off)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap()
    }

    #[test]
    fn parses_utc_offsets_and_iana_names() {
        assert_eq!(Zone::parse("utc").unwrap().0, "UTC");
        assert_eq!(Zone::parse("+02:00").unwrap().1.offset_seconds(0), 7200);
        assert_eq!(Zone::parse("-05:30").unwrap().1.offset_seconds(0), -19800);
        assert_eq!(Zone::parse("Europe/Berlin").unwrap().0, "Europe/Berlin");
        assert!(Zone::parse("Europe/Berlinn").is_none());
        assert!(Zone::parse("+15:00").is_none());
        assert!(Zone::parse("+2:00").is_none());
        assert!(Zone::parse("").is_none());
    }

    #[test]
    fn wall_clock_times_across_daylight_saving_changes() {
        let berlin = Zone::named("Europe/Berlin");
        // Winter: UTC+1.
        assert_eq!(berlin.instant(at(2026, 12, 7, 9, 30)), at(2026, 12, 7, 8, 30).and_utc().timestamp_millis());
        // Summer: UTC+2.
        assert_eq!(berlin.instant(at(2026, 7, 6, 9, 30)), at(2026, 7, 6, 7, 30).and_utc().timestamp_millis());
        // 2026-03-29 02:30 does not exist in Berlin: the jump (01:00 UTC).
        assert_eq!(berlin.instant(at(2026, 3, 29, 2, 30)), at(2026, 3, 29, 1, 0).and_utc().timestamp_millis());
        // 2026-10-25 02:30 happens twice: the first (00:30 UTC).
        assert_eq!(berlin.instant(at(2026, 10, 25, 2, 30)), at(2026, 10, 25, 0, 30).and_utc().timestamp_millis());
        assert_eq!(berlin.format(at(2026, 12, 7, 8, 30).and_utc().timestamp_millis()), "2026-12-07 09:30 +01:00");
        assert_eq!(berlin.rfc3339(at(2026, 7, 6, 7, 30).and_utc().timestamp_millis()), "2026-07-06T09:30:00+02:00");
    }
}

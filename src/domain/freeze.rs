//! Freeze windows (SPEC §2, §3.7) and expiring approvals: when an environment's gate is closed by
//! the calendar, until when, and why. Pure: no I/O, no async, no clock (every question takes
//! `now`).
//!
//! A window is either
//! * **recurring**: a standard 5-field cron expression in a time zone, each of whose fire times
//!   starts a freeze lasting `duration` of *elapsed* time (a Friday 16:00 window of 64 h ends on
//!   Monday 08:00 in winter and on Monday 07:00 when the clocks went back during the weekend);
//! * **a date range**: from local midnight of `from` to local midnight of the day after `to` (the
//!   `to` day is frozen too), in its time zone.
//!
//! Windows that overlap or chain (one ends exactly when, or after, another starts) freeze without
//! a break: [`Freeze::active_at`] says until the end of the whole stretch, since the gate stays
//! closed until the last of them ends.
//!
//! How occurrences are found: [croner] parses the expression and matches days (`L`, `#`, `W`,
//! day-of-month *or* day-of-week as in Vixie cron) and the hours and minutes of a day; the fire
//! times are then laid out here a local day at a time. On a day without a daylight-saving change
//! the day's occurrences are a fixed list of intervals, computed once per window, so a window that
//! fires every minute costs one step per day, not 1,440. On a day with a change each fire time is
//! resolved as croner (and cron) does: a fixed-time job (one hour, one minute) in the skipped hour
//! fires when the clocks jump, and once in a repeated hour; a job with several times skips the
//! skipped hour and fires in both passes of a repeated one (a test holds the two together).
//!
//! Every question has a budget of steps (days and intervals looked at), so a hostile policy cannot
//! make an evaluation expensive; a policy that needs more to show that its windows end is refused.

use std::time::Duration;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::zone::Zone;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// The longest a recurring window may last: a year and a day.
pub const MAX_CRON_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// At most this many windows per environment.
pub const MAX_WINDOWS: usize = 50;

/// Whether the windows never end is simulated over this long (four years and a day: a whole
/// leap-year cycle, eight daylight-saving changes)…
pub const NEVER_ENDS_HORIZON_MS: i64 = (4 * 365 + 2) * DAY_MS;

/// …from this instant, 2027-01-01T00:00:00Z: a fixed one, so that a policy file gets the same
/// verdict whenever it is read (its verdict is cached by blob SHA).
pub const NEVER_ENDS_FROM_MS: i64 = 1_798_761_600_000;

/// How far past the instant asked about occurrences are looked for: a stretch that has not ended
/// by then is said to end then (it is looked at again at that time).
const AHEAD_MS: i64 = NEVER_ENDS_HORIZON_MS + 2 * DAY_MS;

/// Steps one question may take (a step is a day or an interval looked at): a few thousand for
/// real policies; this many takes tens of milliseconds.
pub const STEPS: u32 = 500_000;

/// How many steps a question may still take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget(u32);

impl Budget {
    pub fn new(steps: u32) -> Budget {
        Budget(steps)
    }

    /// The steps left.
    pub fn left(&self) -> u32 {
        self.0
    }

    pub fn exhausted(&self) -> bool {
        self.0 == 0
    }

    /// Takes `n` steps; false when there were not that many left (none are left then).
    pub fn spend(&mut self, n: u32) -> bool {
        match self.0.checked_sub(n) {
            Some(left) => {
                self.0 = left;
                true
            }
            None => {
                self.0 = 0;
                false
            }
        }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget(STEPS)
    }
}

// ---------------------------------------------------------------------------------------------
// Expiring approvals
// ---------------------------------------------------------------------------------------------

/// When an approval given at `given_at_ms` stops counting, with `approvals_expire_after: after`.
pub fn expires_at(given_at_ms: i64, after: Duration) -> i64 {
    given_at_ms.saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX))
}

/// Whether an approval given at `given_at_ms` no longer counts at `now_ms`: from the instant it
/// expires on (an approval given at 10:00 with `1h` counts until 10:59:59.999).
pub fn expired(given_at_ms: i64, after: Duration, now_ms: i64) -> bool {
    now_ms >= expires_at(given_at_ms, after)
}

// ---------------------------------------------------------------------------------------------
// Windows
// ---------------------------------------------------------------------------------------------

/// The freeze windows of one environment (`freeze:`), in policy order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Freeze {
    pub windows: Vec<Window>,
}

/// One freeze window.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub schedule: Schedule,
    /// The time zone as written back (`Europe/Berlin`, `UTC`, `+02:00`).
    pub timezone: String,
    pub zone: Zone,
    /// Why deployments are frozen, shown on the gate.
    pub reason: String,
}

/// When a window freezes.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// From each fire time of a cron expression, for a duration of elapsed time.
    Cron(Box<CronSchedule>),
    /// From local midnight of `from` to local midnight of the day after `to`.
    Dates { from: NaiveDate, to: NaiveDate },
}

/// A parsed cron expression with its duration, and the occurrences of an ordinary day (one
/// without a daylight-saving change) laid out once.
#[derive(Clone, Debug, PartialEq)]
pub struct CronSchedule {
    expression: String,
    duration_ms: i64,
    cron: Cron,
    /// The fire times of a matching day, in minutes after local midnight, ascending.
    times: Vec<i64>,
    /// croner's "fixed-time job": one hour and one minute. Such a job runs once in a repeated
    /// hour and, when its time is skipped, at the jump; others skip the skipped hour and run in
    /// both passes of a repeated one.
    fixed: bool,
    /// The occurrences of a matching ordinary day, merged: (start, end) in ms after local
    /// midnight (the end can be days later).
    day: Vec<(i64, i64)>,
}

impl CronSchedule {
    /// A standard 5-field expression (minute, hour, day of month, month, day of week; names like
    /// `FRI` and `DEC`; `L`, `#`, `W`; `@daily`-style nicknames) lasting `duration` from each fire
    /// time. The error explains what is wrong.
    pub fn parse(expression: &str, duration: Duration) -> Result<CronSchedule, String> {
        let text = expression.trim();
        if text.split_whitespace().count() != 5 && !text.starts_with('@') {
            return Err(format!(
                "`{text}` is not a standard cron expression: write 5 fields, minute hour day-of-month month \
                 day-of-week, like `0 16 * * FRI` (no seconds or years)"
            ));
        }
        let parser = CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
        let cron = parser.parse(text).map_err(|e| format!("`{text}` is not a valid cron expression: {e}"))?;
        if duration < Duration::from_secs(60) {
            return Err("a freeze window must last at least one minute".to_owned());
        }
        if duration > MAX_CRON_DURATION {
            return Err("a recurring freeze window may last at most 366d".to_owned());
        }
        let duration_ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        let hours = cron.pattern.hours.values();
        let minutes = cron.pattern.minutes.values();
        let mut times: Vec<i64> =
            hours.iter().flat_map(|h| minutes.iter().map(move |m| i64::from(*h) * 60 + i64::from(*m))).collect();
        times.sort_unstable();
        times.dedup();
        if times.is_empty() {
            return Err(format!("`{text}` never fires"));
        }
        let fixed = cron.determine_job_type() == croner::JobType::FixedTime;
        let mut day = Vec::new();
        merge_into(times.iter().map(|m| m * MINUTE_MS), duration_ms, &mut day);
        Ok(CronSchedule { expression: text.to_owned(), duration_ms, cron, times, fixed, day })
    }

    /// The expression as written (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn duration(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.duration_ms).unwrap_or(0))
    }

    /// Whether a day of the four years from [`NEVER_ENDS_FROM_MS`] matches (`0 0 30 2 *` never
    /// fires); true too when `budget` runs out first.
    pub fn fires(&self, budget: &mut Budget) -> bool {
        let first = DateTime::<Utc>::from_timestamp_millis(NEVER_ENDS_FROM_MS).unwrap_or_default().date_naive();
        let mut day = first;
        while (day - first).num_milliseconds() < NEVER_ENDS_HORIZON_MS {
            if !budget.spend(1) || self.matches_day(day) {
                return true;
            }
            let Some(next) = day.succ_opt() else { return true };
            day = next;
        }
        false
    }

    fn matches_day(&self, day: NaiveDate) -> bool {
        let weekday = croner::Weekday::from_days_from_sunday(day.weekday().num_days_from_sunday());
        let p = &self.cron.pattern;
        p.month_match(day.month()).unwrap_or(false)
            && p.day_match(day.year(), day.month(), day.day(), weekday).unwrap_or(false)
    }

    /// The fire times of local day `day`, as instants, ascending, appended to `out`.
    fn fires_on(&self, zone: &Zone, day: NaiveDate, out: &mut Vec<i64>) {
        if !self.matches_day(day) {
            return;
        }
        let midnight = day.and_time(NaiveTime::MIN);
        let from = out.len();
        for m in &self.times {
            resolve(zone, midnight + chrono::Duration::minutes(*m), self.fixed, out);
        }
        out[from..].sort_unstable();
        let mut kept: Vec<i64> = out.drain(from..).collect();
        kept.dedup();
        out.extend(kept);
    }

    /// The occurrences starting on local day `day`, merged, in order, appended to `out`; the
    /// steps this took.
    fn occurrences_on(&self, zone: &Zone, day: NaiveDate, out: &mut Vec<(i64, i64)>) -> u32 {
        if !self.matches_day(day) {
            return 1;
        }
        let midnight = day.and_time(NaiveTime::MIN);
        let start = zone.instant(midnight);
        let next = zone.instant(midnight + chrono::Duration::days(1));
        if next - start == DAY_MS && zone.offset_seconds(start) == zone.offset_seconds(next - 1) {
            // An ordinary day: the occurrences laid out once.
            out.extend(self.day.iter().map(|(a, b)| (start + a, start + b)));
            return 1 + self.day.len() as u32;
        }
        // A day whose clocks change: each fire time as cron resolves it.
        let mut fires = Vec::with_capacity(self.times.len() + 4);
        self.fires_on(zone, day, &mut fires);
        merge_into(fires.into_iter(), self.duration_ms, out);
        1 + self.times.len() as u32
    }
}

/// The instants a fire time at wall-clock `local` happens (see [`CronSchedule::fixed`]).
fn resolve(zone: &Zone, local: NaiveDateTime, fixed: bool, out: &mut Vec<i64>) {
    let Zone::Named(tz) = zone else {
        out.push(zone.instant(local));
        return;
    };
    match tz.from_local_datetime(&local) {
        LocalResult::Single(d) => out.push(d.timestamp_millis()),
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.timestamp_millis(), b.timestamp_millis());
            if fixed {
                out.push(a.min(b));
            } else {
                out.extend([a, b]);
            }
        }
        // Skipped by the clocks: a fixed-time job runs when they jump (zone.rs's rule).
        LocalResult::None if fixed => out.push(zone.instant(local)),
        LocalResult::None => {}
    }
}

/// Occurrences `[start, start + duration)` of ascending `starts`, merged where one starts before
/// or when the previous ends.
fn merge_into(starts: impl Iterator<Item = i64>, duration_ms: i64, out: &mut Vec<(i64, i64)>) {
    let mut current: Option<(i64, i64)> = None;
    for s in starts {
        let end = s.saturating_add(duration_ms);
        current = match current {
            Some((a, b)) if s <= b => Some((a, b.max(end))),
            Some(done) => {
                out.push(done);
                Some((s, end))
            }
            None => Some((s, end)),
        };
    }
    out.extend(current);
}

impl Window {
    /// A recurring window; the error explains what is wrong.
    pub fn cron(expression: &str, duration: Duration, timezone: &str, reason: &str) -> Result<Window, String> {
        let (timezone, zone) = zone(timezone)?;
        let schedule = Schedule::Cron(Box::new(CronSchedule::parse(expression, duration)?));
        Ok(Window { schedule, timezone, zone, reason: reason.trim().to_owned() })
    }

    /// A date range, `to` included; the error explains what is wrong.
    pub fn dates(from: NaiveDate, to: NaiveDate, timezone: &str, reason: &str) -> Result<Window, String> {
        let (timezone, zone) = zone(timezone)?;
        if to < from {
            return Err(format!("`to` ({to}) is before `from` ({from})"));
        }
        Ok(Window { schedule: Schedule::Dates { from, to }, timezone, zone, reason: reason.trim().to_owned() })
    }

    /// The window's occurrences that end after `after` (and start before `after` + [`AHEAD_MS`]),
    /// merged, in order.
    fn runs(&self, after: i64) -> Runs<'_> {
        let source = match &self.schedule {
            Schedule::Cron(c) => {
                // Back far enough to find an occurrence that started before `after` and still runs.
                let first = self.zone.local(after.saturating_sub(c.duration_ms)).date() - chrono::Duration::days(1);
                let last = self.zone.local(after.saturating_add(AHEAD_MS)).date();
                Source::Cron { schedule: c, zone: self.zone, day: first, last, buffer: Vec::new(), at: 0 }
            }
            Schedule::Dates { from, to } => {
                let start = self.zone.instant(from.and_time(NaiveTime::MIN));
                let end = self.zone.instant(to.and_time(NaiveTime::MIN) + chrono::Duration::days(1));
                Source::Once(Some((start, end)))
            }
        };
        Runs { source, after, peeked: None }
    }

    /// `cron "0 16 * * FRI" for 64h in Europe/Berlin` or `2026-12-23 to 2027-01-02 in Europe/Berlin`.
    pub fn describe(&self) -> String {
        match &self.schedule {
            Schedule::Cron(c) => {
                format!("cron `{}` for {} in {}", c.expression, policy_duration(c.duration_ms), self.timezone)
            }
            Schedule::Dates { from, to } => format!("{from} to {to} in {}", self.timezone),
        }
    }
}

/// A duration as a policy writes it: `64h`, `7d`, `1h30m`, `90s`.
pub fn policy_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if s > 0 && s % 86_400 == 0 {
        return format!("{d}d");
    }
    let hours = d * 24 + h;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

/// A zone the policy names: `UTC`, `±HH:MM` or an IANA name (zone.rs).
fn zone(timezone: &str) -> Result<(String, Zone), String> {
    Zone::parse(timezone).ok_or_else(|| format!("`{}` is not a time zone", timezone.trim()))
}

/// Where a window's occurrences come from.
enum Source<'a> {
    Cron { schedule: &'a CronSchedule, zone: Zone, day: NaiveDate, last: NaiveDate, buffer: Vec<(i64, i64)>, at: usize },
    Once(Option<(i64, i64)>),
}

impl Source<'_> {
    fn next(&mut self, budget: &mut Budget) -> Option<(i64, i64)> {
        match self {
            Source::Once(o) => o.take(),
            Source::Cron { schedule, zone, day, last, buffer, at } => loop {
                if let Some(o) = buffer.get(*at) {
                    *at += 1;
                    return Some(*o);
                }
                if *day > *last || budget.exhausted() {
                    return None;
                }
                buffer.clear();
                *at = 0;
                let steps = schedule.occurrences_on(zone, *day, buffer);
                budget.spend(steps);
                *day = day.succ_opt()?;
            },
        }
    }
}

/// One window's occurrences merged into runs (a run: a stretch frozen without a break by this
/// window alone), those that end after `after`. A run that covers `after` may start later than it
/// really did (it was looked for from `after` less the window's duration): only its end counts.
struct Runs<'a> {
    source: Source<'a>,
    after: i64,
    peeked: Option<(i64, i64)>,
}

impl Runs<'_> {
    fn next(&mut self, budget: &mut Budget) -> Option<(i64, i64)> {
        let mut run = match self.peeked.take() {
            Some(r) => r,
            None => loop {
                let o = self.source.next(budget)?;
                if o.1 > self.after {
                    break o;
                }
            },
        };
        while let Some(o) = self.source.next(budget) {
            if o.0 <= run.1 {
                run.1 = run.1.max(o.1);
            } else {
                self.peeked = Some(o);
                break;
            }
        }
        Some(run)
    }
}

// ---------------------------------------------------------------------------------------------
// Questions
// ---------------------------------------------------------------------------------------------

/// A freeze in force.
#[derive(Clone, Debug, PartialEq)]
pub struct Active {
    /// When the stretch of windows that covers `now` ends: the gate stays closed until then.
    pub until_ms: i64,
    /// The reasons of the windows that cover `now`, in policy order, joined with `; `.
    pub reason: String,
    /// The zone of the window that ends last, for showing `until`.
    pub zone: Zone,
}

impl Active {
    /// `frozen until Mon 7 Dec 2026 08:00 CET (weekend)`: what the gate shows. The reason is the
    /// policy's text as written (no control characters, at most 200 characters each): escape it
    /// where it becomes markdown or HTML.
    pub fn text(&self) -> String {
        format!("frozen until {} ({})", local_time(&self.zone, self.until_ms), self.reason)
    }
}

/// Whether the windows end ([`Freeze::ending`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// There is a break: the gate opens again.
    Ends,
    /// From [`NEVER_ENDS_FROM_MS`] on, no break in [`NEVER_ENDS_HORIZON_MS`]: the gate would never
    /// open.
    Never,
    /// The budget ran out before either was shown.
    TooComplex,
}

impl Freeze {
    pub fn new(windows: Vec<Window>) -> Freeze {
        Freeze { windows }
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The freeze in force at `now_ms`, if any.
    pub fn active_at(&self, now_ms: i64) -> Option<Active> {
        let mut budget = Budget::default();
        let mut reasons: Vec<&str> = Vec::new();
        // The window covering `now` that ends last, should the stretch not be found.
        let mut covering: Option<(i64, usize)> = None;
        for (i, w) in self.windows.iter().enumerate() {
            if let Some((start, end)) = w.runs(now_ms).next(&mut budget)
                && start <= now_ms
            {
                if !reasons.contains(&w.reason.as_str()) {
                    reasons.push(&w.reason);
                }
                if covering.is_none_or(|(e, _)| end > e) {
                    covering = Some((end, i));
                }
            }
        }
        let (end, window) = covering?;
        // Frozen, whatever the budget: at worst until the end of what covers `now`.
        let (until_ms, last) = match self.stretch(now_ms, |_| true, &mut Budget::default()) {
            Some((_, until, last)) if until >= end => (until, last),
            _ => (end, window),
        };
        Some(Active { until_ms, reason: reasons.join("; "), zone: self.windows[last].zone })
    }

    /// The next instant after `now_ms` at which a window starts or ends, that is, at which the
    /// gate or the reasons it shows may change (a window that starts again before, or when, it
    /// ends does not end in between). None: nothing changes any more (in the next four years).
    pub fn next_change_after(&self, now_ms: i64) -> Option<i64> {
        let mut budget = Budget::default();
        let next = self
            .windows
            .iter()
            .filter_map(|w| {
                let (start, end) = w.runs(now_ms).next(&mut budget)?;
                Some(if start > now_ms { start } else { end })
            })
            .min();
        if budget.exhausted() {
            // Some windows were not looked at: look again in a minute rather than miss a change.
            return Some(next.map_or(now_ms + MINUTE_MS, |n| n.min(now_ms + MINUTE_MS)));
        }
        next
    }

    /// Whether the recurring windows, together, leave the gate open at some time; date ranges
    /// always end. Simulated from [`NEVER_ENDS_FROM_MS`] over [`NEVER_ENDS_HORIZON_MS`]: a cron
    /// that fires every hour for an hour, `* * * * *` for a minute, or any window lasting longer
    /// than the time between two of its starts never ends.
    pub fn ending(&self) -> Ending {
        self.ending_within(&mut Budget::default())
    }

    /// [`Freeze::ending`] taking its steps from `budget` (a policy's checks share one).
    pub fn ending_within(&self, budget: &mut Budget) -> Ending {
        let from = NEVER_ENDS_FROM_MS;
        let recurring = |w: &Window| matches!(w.schedule, Schedule::Cron(_));
        match self.stretch(from, recurring, budget) {
            _ if budget.exhausted() => Ending::TooComplex,
            Some((start, end, _)) if start <= from && end >= from + NEVER_ENDS_HORIZON_MS => Ending::Never,
            _ => Ending::Ends,
        }
    }

    /// Shorthand for `ending() == Ending::Never`.
    pub fn never_ends(&self) -> bool {
        self.ending() == Ending::Never
    }

    /// The first stretch of the chosen windows that ends after `after`: (start, end, the index of
    /// the window that ends it). The runs of all windows merged in order of start, as long as each
    /// starts before, or when, the stretch so far ends.
    fn stretch(&self, after: i64, chosen: impl Fn(&Window) -> bool, budget: &mut Budget) -> Option<(i64, i64, usize)> {
        let mut streams: Vec<Stream<'_>> = Vec::new();
        for (window, w) in self.windows.iter().enumerate().filter(|(_, w)| chosen(w)) {
            let mut runs = w.runs(after);
            let head = runs.next(budget);
            streams.push(Stream { window, runs, head });
        }
        // The stream whose next run starts first.
        let earliest =
            |streams: &[Stream<'_>]| streams.iter().enumerate().filter_map(|(k, s)| s.head.map(|h| (h.0, k))).min();
        let mut stretch: Option<(i64, i64, usize)> = None;
        while let Some((s, k)) = earliest(&streams) {
            let stream = &mut streams[k];
            let (_, e) = stream.head.take()?;
            stretch = match stretch {
                None => Some((s, e, stream.window)),
                Some((start, end, _)) if e > end && s <= end => Some((start, e, stream.window)),
                Some(current) if s <= current.1 => Some(current),
                // A break: the stretch is over.
                Some(_) => break,
            };
            stream.head = stream.runs.next(budget);
            if budget.exhausted() {
                break;
            }
        }
        stretch
    }
}

/// One window's runs, with the next one.
struct Stream<'a> {
    window: usize,
    runs: Runs<'a>,
    head: Option<(i64, i64)>,
}

/// `Fri 27 Dec 2026 09:00 CET`: a local time with its weekday, date and the zone's abbreviation
/// (`UTC`, or the offset for a fixed one, `+05:30`).
pub fn local_time(zone: &Zone, ms: i64) -> String {
    let utc = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    match zone {
        Zone::Named(tz) => utc.with_timezone(tz).format("%a %-d %b %Y %H:%M %Z").to_string(),
        Zone::Fixed(o) if o.local_minus_utc() == 0 => utc.format("%a %-d %b %Y %H:%M UTC").to_string(),
        Zone::Fixed(o) => utc.with_timezone(o).format("%a %-d %b %Y %H:%M %:z").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy;

    /// The instant of a UTC wall-clock time.
    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap().and_utc().timestamp_millis()
    }

    /// The instant of a wall-clock time in Berlin.
    fn berlin(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
        Zone::named("Europe/Berlin").instant(NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap())
    }

    fn hours(h: u64) -> Duration {
        Duration::from_secs(h * 3600)
    }

    fn cron(expression: &str, duration: Duration, reason: &str) -> Window {
        Window::cron(expression, duration, "Europe/Berlin", reason).unwrap()
    }

    fn dates(from: &str, to: &str, reason: &str) -> Window {
        Window::dates(from.parse().unwrap(), to.parse().unwrap(), "Europe/Berlin", reason).unwrap()
    }

    fn weekend() -> Window {
        cron("0 16 * * FRI", hours(64), "weekend")
    }

    #[test]
    fn a_friday_window_lasts_64_hours_of_elapsed_time_across_the_clocks_going_back() {
        let f = Freeze::new(vec![weekend()]);
        // Friday 2026-10-23 16:00 CEST (14:00 UTC); the clocks go back on Sunday the 25th; 64 h
        // later is Monday 06:00 UTC, 07:00 CET (not 08:00, as a wall-clock "Monday 08:00" would be).
        let start = berlin(2026, 10, 23, 16, 0);
        assert_eq!(start, utc(2026, 10, 23, 14, 0));
        let end = start + 64 * 3_600_000;
        assert_eq!(end, utc(2026, 10, 26, 6, 0));
        assert_eq!(f.active_at(start - 1), None);
        let active = f.active_at(start).expect("frozen from the first minute");
        assert_eq!(active.until_ms, end);
        assert_eq!(active.reason, "weekend");
        assert_eq!(active.text(), "frozen until Mon 26 Oct 2026 07:00 CET (weekend)");
        assert_eq!(f.active_at(berlin(2026, 10, 25, 2, 30)).map(|a| a.until_ms), Some(end), "in the repeated hour");
        assert_eq!(f.active_at(end - 1).map(|a| a.until_ms), Some(end));
        assert_eq!(f.active_at(end), None, "open from the instant it ends");
        // An ordinary weekend: Friday 16:00 to Monday 08:00 CET.
        let active = f.active_at(berlin(2026, 11, 7, 12, 0)).unwrap();
        assert_eq!(active.until_ms, berlin(2026, 11, 9, 8, 0));
        // The clocks going forward: Friday 16:00 CET to Monday 09:00 CEST, still 64 h.
        let active = f.active_at(berlin(2027, 3, 28, 12, 0)).unwrap();
        assert_eq!(active.until_ms, berlin(2027, 3, 29, 9, 0));
        assert_eq!(active.until_ms - berlin(2027, 3, 26, 16, 0), 64 * 3_600_000);
        assert_eq!(active.text(), "frozen until Mon 29 Mar 2027 09:00 CEST (weekend)");
    }

    #[test]
    fn a_date_range_includes_its_to_day() {
        let f = Freeze::new(vec![dates("2026-12-23", "2027-01-02", "holidays")]);
        assert_eq!(f.active_at(berlin(2026, 12, 22, 23, 59)), None);
        let active = f.active_at(berlin(2026, 12, 23, 0, 0)).expect("from local midnight of `from`");
        assert_eq!(active.until_ms, berlin(2027, 1, 3, 0, 0));
        assert_eq!(active.until_ms, utc(2027, 1, 2, 23, 0));
        assert_eq!(active.text(), "frozen until Sun 3 Jan 2027 00:00 CET (holidays)");
        assert!(f.active_at(berlin(2027, 1, 2, 23, 59)).is_some(), "the `to` day is frozen");
        assert_eq!(f.active_at(berlin(2027, 1, 3, 0, 0)), None);
        // One day: from == to.
        let one = Freeze::new(vec![dates("2026-12-24", "2026-12-24", "eve")]);
        assert_eq!(one.active_at(berlin(2026, 12, 24, 12, 0)).unwrap().until_ms, berlin(2026, 12, 25, 0, 0));
        // A range across the clocks going forward is shorter by the skipped hour.
        let spring = Freeze::new(vec![dates("2027-03-28", "2027-03-28", "x")]);
        let a = spring.active_at(berlin(2027, 3, 28, 12, 0)).unwrap();
        assert_eq!(a.until_ms - berlin(2027, 3, 28, 0, 0), 23 * 3_600_000);
        // `to` before `from` is refused.
        let e = Window::dates("2027-01-02".parse().unwrap(), "2026-12-23".parse().unwrap(), "UTC", "x").unwrap_err();
        assert!(e.contains("before"), "{e}");
    }

    #[test]
    fn overlapping_and_chained_windows_freeze_until_the_whole_stretch_ends() {
        // The weekend before Christmas runs into the holidays, and the holidays into the weekend
        // after New Year: frozen from Friday 18 December 16:00 to Monday 4 January 08:00.
        let f = Freeze::new(vec![weekend(), dates("2026-12-21", "2027-01-02", "holidays")]);
        let a = f.active_at(berlin(2026, 12, 19, 10, 0)).unwrap();
        assert_eq!(a.until_ms, berlin(2027, 1, 4, 8, 0));
        assert_eq!(a.reason, "weekend");
        assert_eq!(a.text(), "frozen until Mon 4 Jan 2027 08:00 CET (weekend)");
        let a = f.active_at(berlin(2026, 12, 22, 10, 0)).unwrap();
        assert_eq!((a.until_ms, a.reason.as_str()), (berlin(2027, 1, 4, 8, 0), "holidays"));
        let a = f.active_at(berlin(2027, 1, 2, 10, 0)).unwrap();
        assert_eq!(a.reason, "weekend; holidays", "both cover it, in policy order");
        // Exactly chained: 08:00–12:00 then 12:00–14:00; a gap before 15:00.
        let utc_window = |e: &str, h: u64, r: &str| Window::cron(e, hours(h), "UTC", r).unwrap();
        let f = Freeze::new(vec![
            utc_window("0 8 * * *", 4, "morning"),
            utc_window("0 12 * * *", 2, "lunch"),
            utc_window("0 15 * * *", 1, "tea"),
        ]);
        let a = f.active_at(utc(2026, 12, 1, 9, 0)).unwrap();
        assert_eq!((a.until_ms, a.reason.as_str()), (utc(2026, 12, 1, 14, 0), "morning"));
        assert_eq!(a.text(), "frozen until Tue 1 Dec 2026 14:00 UTC (morning)");
        assert_eq!(f.active_at(utc(2026, 12, 1, 12, 0)).unwrap().reason, "lunch");
        assert_eq!(f.active_at(utc(2026, 12, 1, 14, 30)), None);
        assert_eq!(f.active_at(utc(2026, 12, 1, 15, 0)).unwrap().until_ms, utc(2026, 12, 1, 16, 0));
        // Two windows with the same reason say it once.
        let f = Freeze::new(vec![utc_window("0 8 * * *", 4, "x"), utc_window("0 9 * * *", 4, "x")]);
        let a = f.active_at(utc(2026, 12, 1, 10, 0)).unwrap();
        assert_eq!((a.until_ms, a.reason.as_str()), (utc(2026, 12, 1, 13, 0), "x"));
    }

    #[test]
    fn the_next_change_is_when_a_window_starts_or_ends() {
        let f = Freeze::new(vec![weekend()]);
        let friday = berlin(2026, 11, 6, 16, 0);
        let monday = berlin(2026, 11, 9, 8, 0);
        assert_eq!(f.next_change_after(berlin(2026, 11, 4, 12, 0)), Some(friday));
        assert_eq!(f.next_change_after(friday - 1), Some(friday));
        assert_eq!(f.next_change_after(friday), Some(monday), "at the start: its end");
        assert_eq!(f.next_change_after(monday - 1), Some(monday));
        assert_eq!(f.next_change_after(monday), Some(berlin(2026, 11, 13, 16, 0)), "at the end: the next start");
        // Chained windows: the reason changes when the holidays start, the gate when all end.
        let f = Freeze::new(vec![weekend(), dates("2026-12-21", "2027-01-02", "holidays")]);
        let saturday = berlin(2026, 12, 19, 10, 0);
        assert_eq!(f.next_change_after(saturday), Some(berlin(2026, 12, 21, 0, 0)));
        assert_eq!(f.next_change_after(berlin(2026, 12, 21, 0, 0)), Some(berlin(2026, 12, 21, 8, 0)));
        // A window that starts again every hour for an hour, in December only, is one change.
        let december = Freeze::new(vec![Window::cron("0 * * 12 *", hours(1), "UTC", "december").unwrap()]);
        assert_eq!(december.next_change_after(utc(2026, 12, 10, 0, 0)), Some(utc(2027, 1, 1, 0, 0)));
        assert_eq!(december.active_at(utc(2026, 12, 10, 0, 0)).unwrap().until_ms, utc(2027, 1, 1, 0, 0));
        assert_eq!(Freeze::default().next_change_after(0), None);
        assert_eq!(Freeze::default().active_at(0), None);
        // A date range that is over changes nothing any more.
        let past = Freeze::new(vec![dates("2026-01-01", "2026-01-02", "past")]);
        assert_eq!(past.next_change_after(berlin(2026, 6, 1, 0, 0)), None);
    }

    #[test]
    fn a_window_that_started_before_now_is_found() {
        // Started on the 1st, 20 days long: in force on the 15th.
        let f =
            Freeze::new(vec![Window::cron("0 0 1 * *", Duration::from_secs(20 * 86_400), "UTC", "month end").unwrap()]);
        let a = f.active_at(utc(2026, 12, 15, 12, 0)).expect("looked back far enough");
        assert_eq!(a.until_ms, utc(2026, 12, 21, 0, 0));
        assert_eq!(f.active_at(utc(2026, 12, 21, 0, 0)), None);
        assert_eq!(f.next_change_after(utc(2026, 12, 15, 12, 0)), Some(utc(2026, 12, 21, 0, 0)));
        // A year-long window that started eleven months ago.
        let f = Freeze::new(vec![Window::cron("0 0 1 1 *", Duration::from_secs(360 * 86_400), "UTC", "y").unwrap()]);
        assert!(f.active_at(utc(2026, 12, 1, 0, 0)).is_some());
    }

    #[test]
    fn windows_that_never_end_are_found() {
        let alone =
            |e: &str, d: Duration| Freeze::new(vec![Window::cron(e, d, "Europe/Berlin", "r").unwrap()]).ending();
        let minutes = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(alone("0 * * * *", hours(1)), Ending::Never, "every hour for an hour");
        assert_eq!(alone("* * * * *", minutes(1)), Ending::Never);
        assert_eq!(alone("*/15 * * * *", minutes(20)), Ending::Never);
        assert_eq!(alone("0 0 * * *", hours(25)), Ending::Never, "longer than the time between starts");
        assert_eq!(alone("0 16 * * FRI", hours(7 * 24 + 1)), Ending::Never);
        // A week of elapsed time from Friday 16:00 ends at 15:00 on the Friday after the clocks went
        // back: that hour is open. In UTC it never is.
        assert_eq!(alone("0 16 * * FRI", hours(7 * 24)), Ending::Ends);
        let utc_week = Freeze::new(vec![Window::cron("0 16 * * FRI", hours(7 * 24), "UTC", "r").unwrap()]);
        assert_eq!(utc_week.ending(), Ending::Never);
        assert_eq!(alone("0 0 1 1 *", Duration::from_secs(366 * 86_400)), Ending::Never);
        assert_eq!(alone("0 * * * *", minutes(59)), Ending::Ends);
        assert_eq!(alone("0 16 * * FRI", hours(64)), Ending::Ends);
        assert_eq!(alone("* 0-22 * * *", minutes(1)), Ending::Ends, "an hour a day open");
        assert_eq!(alone("0 0 * 1-11 *", hours(24)), Ending::Ends, "open in December");
        // A year a year: open on the last day of a leap year (2028).
        assert_eq!(alone("0 0 1 1 *", Duration::from_secs(365 * 86_400)), Ending::Ends);
        // Together: weekdays and weekends, each alone ends.
        let utc = |e: &str, r: &str| Window::cron(e, hours(24), "UTC", r).unwrap();
        let together = Freeze::new(vec![utc("0 0 * * MON-FRI", "week"), utc("0 0 * * SAT,SUN", "weekend")]);
        assert_eq!(together.ending(), Ending::Never);
        assert!(together.never_ends());
        // In Berlin a day of 24 h from midnight leaves open the hour the clocks give back.
        let berlin_days =
            Freeze::new(vec![cron("0 0 * * MON-FRI", hours(24), "w"), cron("0 0 * * SAT,SUN", hours(24), "e")]);
        assert_eq!(berlin_days.ending(), Ending::Ends);
        assert_eq!(Freeze::new(vec![together.windows[0].clone()]).ending(), Ending::Ends);
        // Date ranges always end, however long.
        assert_eq!(Freeze::new(vec![dates("2020-01-01", "2099-12-31", "long")]).ending(), Ending::Ends);
        assert_eq!(Freeze::default().ending(), Ending::Ends);
    }

    #[test]
    fn a_freeze_that_is_too_fine_grained_to_check_is_said_so_quickly() {
        // Two windows taking turns every minute, all year: hundreds of thousands of occurrences.
        let f = Freeze::new(vec![
            Window::cron("0-58/2 * * * *", Duration::from_secs(60), "UTC", "even").unwrap(),
            Window::cron("1-59/2 * * * *", Duration::from_secs(60), "UTC", "odd").unwrap(),
        ]);
        let started = std::time::Instant::now();
        assert_eq!(f.ending(), Ending::TooComplex);
        let a = f.active_at(utc(2026, 12, 1, 0, 0)).expect("frozen");
        assert!(a.until_ms > utc(2026, 12, 2, 0, 0), "as far as the budget reached");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    }

    /// Every fire time croner finds, and none more, across daylight-saving changes in zones that
    /// change at 02:00, at midnight and by half an hour.
    #[test]
    fn fire_times_are_cron_s_own() {
        let patterns = [
            "0 16 * * FRI",
            "30 2 * * *",
            "0 0 * * *",
            "*/15 * * * *",
            "0 2,3 * * *",
            "15 1-3 * * *",
            "* 2 * * *",
            "0 0 L * *",
            "0 12 * * 5#2",
            "30 0 * * *",
        ];
        let cases = [
            ("Europe/Berlin", (2026, 3, 27), (2026, 4, 1)),
            ("Europe/Berlin", (2026, 10, 23), (2026, 10, 28)),
            ("America/New_York", (2026, 3, 6), (2026, 3, 10)),
            ("America/New_York", (2026, 10, 30), (2026, 11, 3)),
            ("America/Santiago", (2026, 4, 3), (2026, 4, 7)),
            ("America/Santiago", (2026, 9, 4), (2026, 9, 8)),
            ("Australia/Lord_Howe", (2026, 4, 3), (2026, 4, 6)),
            ("Australia/Lord_Howe", (2026, 10, 2), (2026, 10, 6)),
            ("+05:30", (2026, 1, 29), (2026, 2, 2)),
        ];
        for pattern in patterns {
            for (timezone, (y0, m0, d0), (y1, m1, d1)) in cases {
                let w = Window::cron(pattern, Duration::from_secs(60), timezone, "r").unwrap();
                let Schedule::Cron(c) = &w.schedule else { unreachable!() };
                let first = NaiveDate::from_ymd_opt(y0, m0, d0).unwrap();
                let last = NaiveDate::from_ymd_opt(y1, m1, d1).unwrap();
                let mut ours = Vec::new();
                let mut day = first;
                while day <= last {
                    let mut fires = Vec::new();
                    c.fires_on(&w.zone, day, &mut fires);
                    // The laid-out day is the same as its fire times merged.
                    let (mut laid, mut merged) = (Vec::new(), Vec::new());
                    c.occurrences_on(&w.zone, day, &mut laid);
                    merge_into(fires.iter().copied(), c.duration_ms, &mut merged);
                    assert_eq!(laid, merged, "{pattern} in {timezone} on {day}");
                    ours.extend(fires);
                    day = day.succ_opt().unwrap();
                }
                let from = w.zone.instant(first.and_time(NaiveTime::MIN));
                let to = w.zone.instant(last.succ_opt().unwrap().and_time(NaiveTime::MIN));
                let theirs: Vec<i64> = match w.zone {
                    Zone::Named(tz) => {
                        let start = tz.timestamp_millis_opt(from - 1).unwrap();
                        c.cron.iter_after(start).map(|d| d.timestamp_millis()).take_while(|t| *t < to).collect()
                    }
                    Zone::Fixed(o) => {
                        let start = o.timestamp_millis_opt(from - 1).unwrap();
                        c.cron.iter_after(start).map(|d| d.timestamp_millis()).take_while(|t| *t < to).collect()
                    }
                };
                assert_eq!(ours, theirs, "{pattern} in {timezone} from {first} to {last}");
            }
        }
    }

    #[test]
    fn cron_expressions_are_standard_5_field_ones() {
        for good in ["0 16 * * FRI", "0 16 * * fri", "0 16 * * 5", "0 9-17/2 * * MON-FRI", "0 0 1 DEC *", "@weekly"] {
            assert!(CronSchedule::parse(good, hours(1)).is_ok(), "{good}");
        }
        for bad in ["0 16 * *", "0 0 16 * * FRI", "0 16 * * FRX", "61 * * * *", "", "0 16 * * FRI 2027"] {
            let e = CronSchedule::parse(bad, hours(1)).expect_err(bad);
            assert!(e.contains("cron expression"), "{bad}: {e}");
        }
        let fires = |e: &str| CronSchedule::parse(e, hours(1)).unwrap().fires(&mut Budget::default());
        assert!(fires("0 0 29 2 *"), "in 2028");
        assert!(!fires("0 0 30 2 *"));
        assert!(!fires("0 0 31 4,6,9,11 *"));
        assert!(CronSchedule::parse("0 16 * * FRI", Duration::from_secs(30)).is_err());
        assert!(CronSchedule::parse("0 16 * * FRI", Duration::from_secs(367 * 86_400)).is_err());
        // Sunday is 0 and 7; 5 is Friday (not Thursday, as in Quartz-style crons).
        let friday = Freeze::new(vec![Window::cron("0 16 * * 5", hours(1), "UTC", "r").unwrap()]);
        assert_eq!(friday.next_change_after(utc(2026, 12, 1, 0, 0)), Some(utc(2026, 12, 4, 16, 0)));
    }

    #[test]
    fn local_times_name_the_day_and_the_zone() {
        let t = utc(2026, 12, 27, 8, 0);
        assert_eq!(local_time(&Zone::named("Europe/Berlin"), t), "Sun 27 Dec 2026 09:00 CET");
        assert_eq!(local_time(&Zone::named("UTC"), t), "Sun 27 Dec 2026 08:00 UTC");
        assert_eq!(local_time(&Zone::named("+05:30"), t), "Sun 27 Dec 2026 13:30 +05:30");
        assert_eq!(local_time(&Zone::named("America/New_York"), t), "Sun 27 Dec 2026 03:00 EST");
        assert_eq!(policy_duration(64 * 3_600_000), "64h");
        assert_eq!(policy_duration(7 * 86_400_000), "7d");
        assert_eq!(policy_duration(90 * 60_000), "1h30m");
    }

    #[test]
    fn approvals_expire_after_their_duration() {
        let given = utc(2026, 12, 1, 10, 0);
        assert_eq!(expires_at(given, hours(24)), utc(2026, 12, 2, 10, 0));
        assert!(!expired(given, hours(24), utc(2026, 12, 2, 10, 0) - 1));
        assert!(expired(given, hours(24), utc(2026, 12, 2, 10, 0)));
        assert!(!expired(given, Duration::MAX, i64::MAX - 1));
        let p = policy::parse("environments:\n  production:\n    approvals_expire_after: 24h\n").unwrap();
        let env = p.environment("production").unwrap();
        assert_eq!(env.approvals_expire_after, Some(hours(24)));
        assert_eq!(env.approval_expires_at(given), Some(utc(2026, 12, 2, 10, 0)));
        assert!(env.approval_expired(given, utc(2026, 12, 3, 0, 0)));
        let staging = policy::parse("environments:\n  staging: {}\n").unwrap();
        let staging = staging.environment("staging").unwrap();
        assert_eq!((staging.approvals_expire_after, staging.approval_expires_at(given)), (None, None));
        assert!(!staging.approval_expired(given, i64::MAX));
    }

    // ----- the policy ---------------------------------------------------------------------------

    fn env(freeze: &str) -> String {
        format!("environments:\n  production:\n    freeze:\n{freeze}")
    }

    /// The errors of a policy, as (line, column, message).
    fn errors(yaml: &str) -> Vec<(usize, usize, String)> {
        match policy::parse(yaml) {
            Ok(p) => panic!("expected errors, got {p:#?}"),
            Err(errors) => errors.into_iter().map(|e| (e.line, e.column, e.message)).collect(),
        }
    }

    fn one_error(yaml: &str) -> (usize, usize, String) {
        let errors = errors(yaml);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.into_iter().next().unwrap()
    }

    #[test]
    fn the_spec_example_parses() {
        let yaml = concat!(
            "environments:\n",
            "  production:\n",
            "    approvals_expire_after: 24h      # an approval older than this no longer counts\n",
            "    freeze:                          # no deploys in these windows, except break-glass\n",
            "      - { cron: \"0 16 * * FRI\", duration: 64h, timezone: Europe/Berlin, reason: weekend }\n",
            "      - { from: 2026-12-23, to: 2027-01-02, timezone: Europe/Berlin, reason: holidays }\n",
            "      - cron: \"0 22 * * *\"\n",
            "        duration: 7h\n",
            "        timezone: utc\n",
            "        reason: nightly backups\n",
        );
        let p = policy::parse(yaml).unwrap();
        let env = p.environment("production").unwrap();
        assert_eq!(env.approvals_expire_after, Some(hours(24)));
        let w = &env.freeze.windows;
        assert_eq!(w.len(), 3);
        assert_eq!(w[0], weekend());
        assert_eq!(w[1], dates("2026-12-23", "2027-01-02", "holidays"));
        assert_eq!((w[2].timezone.as_str(), w[2].reason.as_str()), ("UTC", "nightly backups"));
        assert_eq!(w[0].describe(), "cron `0 16 * * FRI` for 64h in Europe/Berlin");
        assert_eq!(w[1].describe(), "2026-12-23 to 2027-01-02 in Europe/Berlin");
        // The holidays run into the weekend after them (Friday 1 January 16:00 for 64 h).
        let a = env.freeze.active_at(berlin(2026, 12, 24, 12, 0)).unwrap();
        assert_eq!(a.text(), "frozen until Mon 4 Jan 2027 08:00 CET (holidays)");
    }

    #[test]
    fn bad_windows_are_refused_with_their_line_and_column() {
        let (line, column, message) =
            one_error(&env("      - { cron: \"0 16 * * FRI\", duration: 64h, timezone: Europe/Berlin }\n"));
        assert_eq!((line, column), (4, 9));
        assert!(message.contains("no `reason`"), "{message}");
        let (line, column, message) =
            one_error(&env("      - { cron: \"0 16 * * FRI\", duration: 64h, timezone: UTC, reason: \"  \" }\n"));
        assert_eq!((line, column), (4, 71));
        assert!(message.contains("`reason` must not be empty"), "{message}");
        let (line, column, message) =
            one_error(&env("      - { cron: \"0 16 * * FRI\", duration: 64h, timezone: Europe/Berlinn, reason: w }\n"));
        assert_eq!((line, column), (4, 58));
        assert!(message.contains("IANA time zone") && message.contains("did you mean `Europe/Berlin`?"), "{message}");
        let (_, _, message) =
            one_error(&env("      - { cron: \"0 16 * * FRI\", duration: 64h, timezone: berlin, reason: w }\n"));
        assert!(message.contains("did you mean `Europe/Berlin`?"), "{message}");
        let (line, column, message) = one_error(&env("      - { cron: \"0 16 * * FRI\", duration: 64h, reason: w }\n"));
        assert_eq!((line, column), (4, 9));
        assert!(message.contains("no `timezone`"), "{message}");
        let (line, column, message) = one_error(&env(
            "      - { cron: \"0 16 * * FRI\", duration: 64h, from: 2026-12-23, to: 2026-12-24, timezone: UTC, reason: w }\n",
        ));
        assert_eq!((line, column), (4, 9));
        assert!(message.contains("not both"), "{message}");
        let (line, column, message) =
            one_error(&env("      - { cron: \"0 16 * * FRY\", duration: 64h, timezone: UTC, reason: w }\n"));
        assert_eq!((line, column), (4, 17));
        assert!(message.starts_with("`cron`: `0 16 * * FRY` is not a valid cron expression"), "{message}");
        let (_, _, message) =
            one_error(&env("      - { cron: \"0 16 * *\", duration: 64h, timezone: UTC, reason: w }\n"));
        assert!(message.contains("write 5 fields"), "{message}");
        let (line, column, message) =
            one_error(&env("      - { cron: \"0 0 30 2 *\", duration: 1h, timezone: UTC, reason: w }\n"));
        assert_eq!((line, column), (4, 17));
        assert!(message.contains("`0 0 30 2 *` never fires"), "{message}");
        let (line, column, message) =
            one_error(&env("      - { cron: \"0 16 * * FRI\", duration: 0m, timezone: UTC, reason: w }\n"));
        assert_eq!((line, column), (4, 43));
        assert!(message.contains("`duration` must be more than zero"), "{message}");
        let (_, _, message) =
            one_error(&env("      - { cron: \"0 16 * * FRI\", duration: 64, timezone: UTC, reason: w }\n"));
        assert!(message.contains("needs a unit"), "{message}");
        let (_, _, message) =
            one_error(&env("      - { cron: \"0 16 * * FRI\", duration: 400d, timezone: UTC, reason: w }\n"));
        assert!(message.contains("at most 366d"), "{message}");
        let (_, _, message) = one_error(&env("      - { cron: \"0 16 * * FRI\", timezone: UTC, reason: w }\n"));
        assert!(message.contains("no `duration`"), "{message}");
        let (_, _, message) = one_error(&env("      - { duration: 1h, timezone: UTC, reason: w }\n"));
        assert!(message.contains("no `cron`"), "{message}");
        let (_, _, message) = one_error(&env("      - { timezone: UTC, reason: w }\n"));
        assert!(message.contains("`cron` and `duration`") && message.contains("`from` and `to`"), "{message}");
        let (line, column, message) =
            one_error(&env("      - { from: 2027-01-02, to: 2026-12-23, timezone: UTC, reason: w }\n"));
        assert_eq!((line, column), (4, 33));
        assert!(message.contains("`to` (2026-12-23) is before `from` (2027-01-02)"), "{message}");
        let (_, _, message) = one_error(&env("      - { from: 2027-01-02, timezone: UTC, reason: w }\n"));
        assert!(message.contains("no `to`"), "{message}");
        let (line, column, message) =
            one_error(&env("      - { from: 2027-02-30, to: 2027-03-01, timezone: UTC, reason: w }\n"));
        assert_eq!((line, column), (4, 17));
        assert!(message.contains("not a day of the calendar"), "{message}");
        let (_, _, message) = one_error(&env("      - { from: 27-1-2, to: 2027-03-01, timezone: UTC, reason: w }\n"));
        assert!(message.contains("YYYY-MM-DD"), "{message}");
        // Unknown keys, with the closest.
        let (line, column, message) =
            one_error(&env("      - { cron: \"0 16 * * FRI\", duration: 64h, timezone: UTC, reason: w, reasn: x }\n"));
        assert_eq!((line, column), (4, 74));
        assert!(message.contains("unknown key `reasn` in a freeze window; did you mean `reason`?"), "{message}");
        let (_, _, message) = one_error("environments:\n  production:\n    freez: []\n");
        assert!(message.contains("did you mean `freeze`?"), "{message}");
        // Not a list, not a mapping.
        let (_, _, message) = one_error(&env("      weekend\n").replace("freeze:\n      ", "freeze: "));
        assert!(message.contains("`freeze` must be a list"), "{message}");
        let (_, _, message) = one_error(&env("      - weekend\n"));
        assert!(message.contains("each freeze window must be a mapping"), "{message}");
        // approvals_expire_after.
        let (line, column, message) = one_error("environments:\n  production:\n    approvals_expire_after: 0h\n");
        assert_eq!((line, column), (3, 29));
        assert!(message.contains("more than zero"), "{message}");
        let (_, _, message) = one_error("environments:\n  production:\n    approvals_expire_after: soon\n");
        assert!(message.contains("is not a duration"), "{message}");
    }

    #[test]
    fn a_policy_whose_windows_never_end_is_refused() {
        let (line, column, message) = one_error(&env(concat!(
            "      - { cron: \"0 16 * * FRI\", duration: 64h, timezone: Europe/Berlin, reason: weekend }\n",
            "      - { cron: \"0 * * * *\", duration: 1h, timezone: Europe/Berlin, reason: always }\n",
        )));
        assert_eq!((line, column), (5, 9));
        assert!(
            message.starts_with("this freeze window never ends: cron `0 * * * *` for 1h in Europe/Berlin"),
            "{message}"
        );
        let (line, column, message) = one_error(&env(concat!(
            "      - { cron: \"0 0 * * MON-FRI\", duration: 24h, timezone: UTC, reason: week }\n",
            "      - { cron: \"0 0 * * SAT,SUN\", duration: 24h, timezone: UTC, reason: weekend }\n",
        )));
        assert_eq!((line, column), (4, 7));
        assert!(message.starts_with("together, these freeze windows never end"), "{message}");
        // One that ends is accepted; so are long date ranges.
        policy::parse(&env("      - { cron: \"0 * * * *\", duration: 59m, timezone: UTC, reason: x }\n")).unwrap();
        policy::parse(&env("      - { from: 2026-01-01, to: 2099-12-31, timezone: UTC, reason: x }\n")).unwrap();
        // Too many windows.
        let many = "      - { from: 2026-01-01, to: 2026-01-01, timezone: UTC, reason: x }\n".repeat(MAX_WINDOWS + 1);
        let (_, _, message) = one_error(&env(&many));
        assert!(message.contains("at most 50"), "{message}");
    }

    #[test]
    fn a_hostile_policy_of_many_freezes_is_checked_quickly() {
        // Many environments, each with windows that keep taking turns: the policy's checks share
        // one budget.
        let mut yaml = String::from("environments:\n");
        for i in 0..40 {
            yaml.push_str(&format!(
                "  e{i}:\n    freeze:\n      - {{ cron: \"0-58/2 * * * *\", duration: 1m, timezone: UTC, reason: a }}\n      \
                 - {{ cron: \"1-59/2 * * * *\", duration: 1m, timezone: UTC, reason: b }}\n"
            ));
        }
        let started = std::time::Instant::now();
        let errors = errors(&yaml);
        assert_eq!(errors.len(), 40, "{errors:#?}");
        assert!(errors.iter().all(|e| e.2.contains("too fine-grained")), "{errors:#?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    }
}

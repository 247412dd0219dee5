//! The weekly infrastructure report (issue 17, SPEC §5): which week is due, the figures of a
//! window against the policy's targets, and the same report as markdown (the issue, `shipgate
//! report`) and as JSON (`--format json`, `GET /api/reports/…`; the shape is documented in
//! `docs/figures.md` and scripts rely on it). Pure: the store reads the facts, `figures` computes.

use chrono::{Datelike, Duration, NaiveDate, NaiveTime, Weekday as ChronoWeekday};
use serde_json::{Value, json};

use super::alert::md_text;
use super::figures::{self, Durations, Facts, Figures};
use super::messages::duration;
use super::policy::{Targets, WeeklySchedule};
use super::zone::Zone;

/// The label of report issues.
pub const LABEL: &str = "weekly-report";

/// Weeks in the report's charts (this one included).
pub const HISTORY_WEEKS: usize = 8;

/// The facts a report needs reach this far back before its window (the charts' weeks, and a
/// day for change failures).
pub const LOOKBACK_MS: i64 = (HISTORY_WEEKS as i64 + 1) * 7 * 86_400_000;

/// A time window `[from, to)`: an ISO week in a time zone, or the last so-many days.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub from: i64,
    pub to: i64,
    /// The ISO week (year, week), when it is one.
    pub week: Option<(i32, u32)>,
}

impl Window {
    /// `2026-W49`, or `2026-11-30 00:00 → 2026-12-07 00:00` for other windows.
    pub fn label(&self, zone: &Zone) -> String {
        match self.week {
            Some((y, w)) => format!("{y}-W{w:02}"),
            None => format!("{} → {}", zone.format(self.from), zone.format(self.to)),
        }
    }

    /// The window before this one: the previous ISO week, or as long a window ending where this
    /// one starts.
    pub fn previous(&self, zone: &Zone) -> Window {
        match self.week {
            Some((y, w)) => {
                let monday =
                    NaiveDate::from_isoywd_opt(y, w, ChronoWeekday::Mon).unwrap_or_default() - Duration::days(7);
                let iso = monday.iso_week();
                week(zone, iso.year(), iso.week()).unwrap_or_else(|| shifted(self))
            }
            None => shifted(self),
        }
    }
}

fn shifted(w: &Window) -> Window {
    let len = w.to - w.from;
    Window { from: w.from - len, to: w.from, week: None }
}

/// ISO week `week` of `year` in `zone`: Monday 00:00 to the next Monday 00:00, local time (a week
/// with a daylight-saving change is an hour shorter or longer).
pub fn week(zone: &Zone, year: i32, week: u32) -> Option<Window> {
    let monday = NaiveDate::from_isoywd_opt(year, week, ChronoWeekday::Mon)?;
    let next = monday + Duration::days(7);
    Some(Window {
        from: zone.instant(monday.and_time(NaiveTime::MIN)),
        to: zone.instant(next.and_time(NaiveTime::MIN)),
        week: Some((year, week)),
    })
}

/// The ISO week instant `ms` falls in, in `zone`.
pub fn week_of(zone: &Zone, ms: i64) -> Window {
    let iso = zone.local(ms).date().iso_week();
    week(zone, iso.year(), iso.week()).expect("an ISO week that exists")
}

/// `2026-W49` (or `2026-w49`), of a four-digit year.
pub fn parse_week(s: &str) -> Option<(i32, u32)> {
    let (y, w) = s.trim().split_once(['W', 'w'])?;
    // Four digits: a year the calendar holds with its neighbours, and labels that sort.
    let y = y.strip_suffix('-').filter(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))?;
    let y: i32 = y.parse().ok()?;
    let w: u32 = w.parse().ok()?;
    NaiveDate::from_isoywd_opt(y, w, ChronoWeekday::Mon).map(|_| (y, w))
}

/// `7d`, `24h`, `90m`: a window length in ms (at most a year).
pub fn parse_since(s: &str) -> Option<i64> {
    let s = s.trim();
    let unit = match s.chars().last()? {
        'd' => 86_400_000,
        'h' => 3_600_000,
        'm' => 60_000,
        _ => return None,
    };
    let n: i64 = s[..s.len() - 1].parse().ok()?;
    let ms = n.checked_mul(unit)?;
    (n > 0 && ms <= 366 * 86_400_000).then_some(ms)
}

/// Which window a report asked for (`shipgate report`, the API) covers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Period {
    /// The last complete ISO week (what the weekly issue reports).
    LastWeek,
    Week(i32, u32),
    /// The last so-many ms up to now.
    Since(i64),
}

impl Period {
    /// From `--week` / `--since` (at most one): an error says which value is wrong.
    pub fn parse(week: Option<&str>, since: Option<&str>) -> Result<Period, String> {
        match (week, since) {
            (Some(_), Some(_)) => Err("give either a week or a window, not both".into()),
            (Some(w), None) => parse_week(w)
                .map(|(y, n)| Period::Week(y, n))
                .ok_or_else(|| format!("`{w}` is not an ISO week: write it like 2026-W49")),
            (None, Some(s)) => parse_since(s)
                .map(Period::Since)
                .ok_or_else(|| format!("`{s}` is not a window: write it like 7d, 24h or 90m (at most 366d)")),
            (None, None) => Ok(Period::LastWeek),
        }
    }

    pub fn window(self, zone: &Zone, now: i64) -> Window {
        match self {
            Period::LastWeek => week_of(zone, now).previous(zone),
            Period::Week(y, w) => week(zone, y, w).unwrap_or_else(|| week_of(zone, now)),
            Period::Since(ms) => Window { from: now - ms, to: now, week: None },
        }
    }
}

/// The latest moment `schedule` named at or before `now`, and the week it reports: the ISO week
/// before the one that moment falls in. A report missed while the App was down is still due: the
/// caller runs it once per week (claimed by the week), and only the latest.
pub fn due(schedule: &WeeklySchedule, now: i64) -> (i64, Window) {
    let zone = schedule.zone();
    let local = zone.local(now);
    let back = (local.weekday().num_days_from_monday() + 7 - schedule.day.days_from_monday()) % 7;
    let time = NaiveTime::from_hms_opt(schedule.hour, schedule.minute, 0).unwrap_or(NaiveTime::MIN);
    let mut date = local.date() - Duration::days(i64::from(back));
    let mut at = zone.instant(date.and_time(time));
    if at > now {
        date -= Duration::days(7);
        at = zone.instant(date.and_time(time));
    }
    let iso = (date - Duration::days(7)).iso_week();
    (at, week(&zone, iso.year(), iso.week()).expect("an ISO week that exists"))
}

/// The figures of a window, of the one before, and of the weeks the charts show, against the
/// policy's targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub repository: String,
    pub window: Window,
    pub timezone: String,
    pub figures: Figures,
    pub previous: Figures,
    /// Oldest first, ending with this window: (label, figures).
    pub history: Vec<(String, Figures)>,
    pub targets: Targets,
    pub checks: Vec<Check>,
    /// Open requests not updated for 7 days at the window's end.
    pub stale_requests: Vec<i64>,
    /// Incidents open at the window's end and past their deadline: (title, opened at).
    pub overdue_incidents: Vec<(String, i64)>,
    /// Last week's report issue, linked from this one.
    pub previous_issue: Option<i64>,
}

/// One figure against its target.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub key: &'static str,
    pub name: &'static str,
    /// The figure in the target's unit (percent, minutes, a count); None without data.
    pub value: Option<f64>,
    pub previous: Option<f64>,
    pub target: f64,
    /// `at_least` or `at_most`.
    pub comparison: &'static str,
    /// None without data.
    pub met: Option<bool>,
}

impl Check {
    fn new(key: &'static str, name: &'static str, value: Option<f64>, previous: Option<f64>, target: f64) -> Check {
        let at_most = matches!(key, "mean_time_to_deploy" | "mean_time_to_recovery" | "open_critical_security");
        let met = value.map(|v| if at_most { v <= target } else { v >= target });
        Check { key, name, value, previous, target, comparison: if at_most { "at_most" } else { "at_least" }, met }
    }

    fn unit(&self) -> Unit {
        match self.key {
            "mean_time_to_deploy" | "mean_time_to_recovery" => Unit::Minutes,
            "open_critical_security" => Unit::Count,
            _ => Unit::Percent,
        }
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Percent,
    Minutes,
    Count,
}

/// All environments' deployments: succeeded over all, in percent.
pub fn deployment_success_percent(f: &Figures) -> Option<f64> {
    let (n, ok) = f.deployments.values().fold((0, 0), |(n, ok), e| (n + e.count, ok + e.succeeded));
    (n > 0).then(|| 100.0 * ok as f64 / n as f64)
}

/// Mean time to recovery of CI and alert incidents together (security alerts are reported apart),
/// in minutes.
pub fn mean_time_to_recovery_minutes(f: &Figures) -> Option<f64> {
    let (n, sum) = ["ci", "alert"]
        .iter()
        .filter_map(|k| f.incidents.get(*k))
        .filter_map(|i| Some((i.time_to_recovery.count, i.time_to_recovery.mean_seconds?)))
        .fold((0usize, 0.0), |(n, sum), (c, mean)| (n + c, sum + mean * c as f64));
    (n > 0).then(|| sum / n as f64 / 60.0)
}

fn checks(f: &Figures, p: &Figures, t: &Targets) -> Vec<Check> {
    let pct = |x: Option<f64>| x.map(|v| v * 100.0);
    let minutes = |d: &Durations| d.mean_seconds.map(|s| s / 60.0);
    vec![
        Check::new("uptime", "Uptime", pct(f.uptime), pct(p.uptime), t.uptime),
        Check::new(
            "deployment_success",
            "Deployment success",
            deployment_success_percent(f),
            deployment_success_percent(p),
            t.deploy_success,
        ),
        Check::new("ci_green", "CI green rate", pct(f.ci_green_rate), pct(p.ci_green_rate), t.ci_green),
        Check::new(
            "mean_time_to_deploy",
            "Mean time to deploy",
            minutes(&f.time_to_deploy),
            minutes(&p.time_to_deploy),
            t.mttd_minutes,
        ),
        Check::new(
            "mean_time_to_recovery",
            "Mean time to recovery",
            mean_time_to_recovery_minutes(f),
            mean_time_to_recovery_minutes(p),
            t.mttr_minutes,
        ),
        Check::new(
            "open_critical_security",
            "Open critical security alerts",
            Some(f.open_critical_security as f64),
            Some(p.open_critical_security as f64),
            0.0,
        ),
    ]
}

/// The report of `window` from `facts` (which reach back [`LOOKBACK_MS`] before it).
pub fn build(
    repository: &str,
    facts: &Facts,
    window: Window,
    timezone: &str,
    targets: &Targets,
    previous_issue: Option<i64>,
) -> Report {
    let zone = Zone::named(timezone);
    let figures = figures::compute(facts, window.from, window.to);
    let prev_window = window.previous(&zone);
    let previous = figures::compute(facts, prev_window.from, prev_window.to);
    let mut windows = vec![window.clone()];
    while windows.len() < HISTORY_WEEKS {
        let w = windows.last().expect("one").previous(&zone);
        windows.push(w);
    }
    windows.reverse();
    let history = windows
        .iter()
        .map(|w| {
            let label = match w.week {
                Some((_, n)) => format!("W{n:02}"),
                None => zone.local(w.from).format("%m-%d").to_string(),
            };
            (label, figures::compute(facts, w.from, w.to))
        })
        .collect();
    let to = window.to;
    let mut stale_requests: Vec<i64> = facts
        .requests
        .iter()
        .filter(|r| r.open && to - r.updated_at > figures::STALE_AFTER_MS)
        .map(|r| r.issue)
        .collect();
    stale_requests.sort_unstable();
    let mut overdue_incidents: Vec<(String, i64)> = facts
        .incidents
        .iter()
        .filter(|i| i.opened_at < to && i.recovered_at.is_none_or(|r| r >= to) && i.deadline < to)
        .map(|i| (i.title.clone(), i.opened_at))
        .collect();
    overdue_incidents.sort_by_key(|(_, at)| *at);
    Report {
        repository: repository.to_string(),
        checks: checks(&figures, &previous, targets),
        window,
        timezone: timezone.to_string(),
        figures,
        previous,
        history,
        targets: targets.clone(),
        stale_requests,
        overdue_incidents,
        previous_issue,
    }
}

/// The report issue's title.
pub fn title(label: &str) -> String {
    format!("📊 Weekly infrastructure report — {label}")
}

/// The report issue's idempotency marker (one issue per repository and week).
pub fn marker(label: &str) -> String {
    format!("weekly-report:{label}")
}

fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn show(v: Option<f64>, unit: Unit) -> String {
    match (v, unit) {
        (None, _) => "—".into(),
        (Some(v), Unit::Percent) => format!("{}%", number(v)),
        (Some(v), Unit::Minutes) => duration((v * 60_000.0).round() as i64),
        (Some(v), Unit::Count) => number(v),
    }
}

fn change(now: Option<f64>, before: Option<f64>, unit: Unit) -> String {
    let (Some(a), Some(b)) = (now, before) else { return "—".into() };
    let d = a - b;
    if d.abs() < 1e-9 {
        return "±0".into();
    }
    let sign = if d > 0.0 { "+" } else { "−" };
    match unit {
        Unit::Percent => format!("{sign}{} pt", number(d.abs())),
        Unit::Minutes => format!("{sign}{}", duration((d.abs() * 60_000.0).round() as i64)),
        Unit::Count => format!("{sign}{}", number(d.abs())),
    }
}

fn mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "—",
    }
}

fn secs(d: Option<f64>) -> String {
    d.map(|s| duration((s * 1000.0).round() as i64)).unwrap_or_else(|| "—".into())
}

fn rate(r: Option<f64>) -> String {
    r.map(|r| format!("{}%", number(r * 100.0))).unwrap_or_else(|| "—".into())
}

/// One line of attacker-chosen text (a workflow, a job, an incident's title) as inert markdown.
fn text(s: &str) -> String {
    md_text(&s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The report as the issue (and `shipgate report`) shows it.
pub fn markdown(r: &Report) -> String {
    let zone = Zone::named(&r.timezone);
    let f = &r.figures;
    let mut out = String::new();
    let label = r.window.label(&zone);
    out.push_str(&format!("## {}\n\n", title(&label)));
    let last = zone.local(r.window.to - 1).date();
    out.push_str(&format!(
        "**{}** — {} to {} ({}).",
        r.repository,
        zone.local(r.window.from).format("%A %-d %B %Y"),
        last.format("%A %-d %B %Y"),
        r.timezone
    ));
    if let Some(n) = r.previous_issue {
        out.push_str(&format!(" Previous report: #{n}."));
    }
    out.push_str("\n\n| Figure | This week | Target | | Last week | Change |\n|---|---|---|---|---|---|\n");
    for c in &r.checks {
        let target = match (c.unit(), c.comparison) {
            (Unit::Count, _) => number(c.target),
            (u, "at_most") => format!("≤ {}", show(Some(c.target), u)),
            (u, _) => format!("≥ {}", show(Some(c.target), u)),
        };
        let mut value = show(c.value, c.unit());
        if c.key == "mean_time_to_deploy" && f.time_to_deploy.p95_seconds.is_some() {
            value.push_str(&format!(" (p95 {})", secs(f.time_to_deploy.p95_seconds)));
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            c.name,
            value,
            target,
            mark(c.met),
            show(c.previous, c.unit()),
            change(c.value, c.previous, c.unit())
        ));
    }

    out.push_str("\n### Needs attention\n\n");
    let mut attention: Vec<String> = r
        .checks
        .iter()
        .filter(|c| c.met == Some(false))
        .map(|c| format!("✗ {}: {} (target {})", c.name, show(c.value, c.unit()), show(Some(c.target), c.unit())))
        .collect();
    if !r.stale_requests.is_empty() {
        let list: Vec<String> = r.stale_requests.iter().map(|n| format!("#{n}")).collect();
        attention.push(format!("Stale requests (no update for 7 days): {}", list.join(", ")));
    }
    for (title, opened) in &r.overdue_incidents {
        attention.push(format!("Past its deadline: {} (open since {})", text(title), zone.format(*opened)));
    }
    if attention.is_empty() {
        out.push_str("Nothing: every figure meets its target.\n");
    } else {
        for a in attention {
            out.push_str(&format!("- {a}\n"));
        }
    }

    out.push_str("\n### Deployments\n\n");
    if f.deployments.is_empty() {
        out.push_str("No deployment finished this week.\n");
    } else {
        out.push_str("| Environment | Deployments | Succeeded | Success rate |\n|---|---|---|---|\n");
        for (env, e) in &f.deployments {
            out.push_str(&format!("| {} | {} | {} | {} |\n", text(env), e.count, e.succeeded, rate(e.success_rate)));
        }
    }

    out.push_str(
        "\n### Incidents\n\n| Kind | Opened | Open at the end | Mean time to recovery | p95 |\n|---|---|---|---|---|\n",
    );
    for (kind, name) in [("ci", "CI"), ("alert", "Alerts"), ("security", "Security")] {
        let i = f.incidents.get(kind).cloned().unwrap_or_default();
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            i.count,
            i.open,
            secs(i.time_to_recovery.mean_seconds),
            secs(i.time_to_recovery.p95_seconds)
        ));
    }
    out.push_str(&format!("\nOpen critical security alerts: {}.\n", f.open_critical_security));

    out.push_str("\n### DORA\n\n| Figure | This week | Last week |\n|---|---|---|\n");
    let p = &r.previous;
    let freq = |f: &Figures| format!("{}/day", number(f.dora.deployment_frequency_per_day));
    out.push_str(&format!("| Deployment frequency (production) | {} | {} |\n", freq(f), freq(p)));
    out.push_str(&format!(
        "| Lead time for changes (median) | {} | {} |\n",
        secs(f.dora.lead_time.median_seconds),
        secs(p.dora.lead_time.median_seconds)
    ));
    out.push_str(&format!(
        "| Change failure rate | {} | {} |\n",
        rate(f.dora.change_failure_rate),
        rate(p.dora.change_failure_rate)
    ));
    for (kind, name) in [("ci", "CI"), ("alert", "alerts")] {
        let m = |f: &Figures| f.dora.time_to_restore.get(kind).and_then(|d| d.median_seconds);
        out.push_str(&format!("| Time to restore, {name} (median) | {} | {} |\n", secs(m(f)), secs(m(p))));
    }

    out.push_str("\n### CI\n\n");
    if f.flaky.is_empty() {
        out.push_str("No flaky job this week.\n");
    } else {
        out.push_str("Flaky jobs (failed, then passed on a re-run of the same commit):\n");
        for (job, n) in &f.flaky {
            out.push_str(&format!("- {} ×{n}\n", text(job)));
        }
    }
    out.push_str(&format!("\nRequests: {} open, {} stale.\n", f.open_requests, f.stale_requests));

    out.push_str("\n### Break-glass\n\n");
    if f.breakglass.is_empty() {
        out.push_str("No break-glass this week.\n");
    } else {
        out.push_str(&format!("{} use(s) of break-glass this week:\n", f.breakglass.len()));
        for b in &f.breakglass {
            let review = if b.reviewed {
                "reviewed"
            } else if b.overdue {
                "review overdue"
            } else {
                "review pending"
            };
            out.push_str(&format!(
                "- {} by {} ({}): {review}\n",
                zone.format(b.at),
                b.by.as_deref().map(|l| format!("@{l}")).unwrap_or_else(|| "someone".into()),
                text(&b.title)
            ));
        }
    }

    out.push_str(&charts(r));
    out
}

/// Mermaid charts GitHub draws itself: deployments and CI green rate per week.
fn charts(r: &Report) -> String {
    let labels: Vec<String> = r.history.iter().map(|(l, _)| format!("\"{l}\"")).collect();
    let deployments: Vec<usize> =
        r.history.iter().map(|(_, f)| f.deployments.values().map(|e| e.count).sum()).collect();
    let green: Vec<String> =
        r.history.iter().map(|(_, f)| number(f.ci_green_rate.map(|g| g * 100.0).unwrap_or(0.0))).collect();
    let top = deployments.iter().copied().max().unwrap_or(0).max(1);
    format!(
        "\n### The last {} weeks\n\n```mermaid\nxychart-beta\n    title \"Deployments\"\n    x-axis [{}]\n    y-axis \"Deployments\" 0 --> {}\n    bar [{}]\n```\n\n```mermaid\nxychart-beta\n    title \"CI green rate (%; 0 without runs)\"\n    x-axis [{}]\n    y-axis \"Green %\" 0 --> 100\n    line [{}]\n```\n",
        r.history.len(),
        labels.join(", "),
        top,
        deployments.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
        labels.join(", "),
        green.join(", ")
    )
}

fn durations(d: &Durations) -> Value {
    json!({ "count": d.count, "mean_seconds": d.mean_seconds, "median_seconds": d.median_seconds,
            "p95_seconds": d.p95_seconds })
}

fn figures_json(f: &Figures, zone: &Zone) -> Value {
    let deployments: serde_json::Map<String, Value> = f
        .deployments
        .iter()
        .map(|(env, e)| {
            (env.clone(), json!({ "count": e.count, "succeeded": e.succeeded, "success_rate": e.success_rate }))
        })
        .collect();
    let incidents: serde_json::Map<String, Value> = f
        .incidents
        .iter()
        .map(|(kind, i)| {
            (
                kind.clone(),
                json!({ "count": i.count, "open": i.open,
                        "mean_time_to_recovery_seconds": i.time_to_recovery.mean_seconds,
                        "p95_time_to_recovery_seconds": i.time_to_recovery.p95_seconds,
                        "recovered": i.time_to_recovery.count }),
            )
        })
        .collect();
    let restore: serde_json::Map<String, Value> =
        f.dora.time_to_restore.iter().map(|(k, d)| (k.clone(), json!(d.median_seconds))).collect();
    json!({
        "deployments": deployments,
        "deployment_success_rate": deployment_success_percent(f).map(|p| p / 100.0),
        "time_to_deploy": durations(&f.time_to_deploy),
        "ci": { "green_rate": f.ci_green_rate, "flaky": f.flaky },
        "breakglass": f.breakglass.iter().map(|b| json!({ "title": b.title, "by": b.by,
            "at": zone.rfc3339(b.at),
            "reviewed": b.reviewed, "overdue": b.overdue })).collect::<Vec<_>>(),
        "incidents": incidents,
        "requests": { "open": f.open_requests, "stale": f.stale_requests },
        "security": { "open_critical": f.open_critical_security },
        "uptime": f.uptime,
        "dora": {
            "deployment_frequency": f.dora.deployment_frequency_per_day,
            "lead_time_seconds": f.dora.lead_time.median_seconds,
            "lead_time": durations(&f.dora.lead_time),
            "change_failure_rate": f.dora.change_failure_rate,
            "time_to_restore_seconds": restore,
        },
    })
}

/// The report as JSON (documented in `docs/figures.md`; additions only, never a change of
/// meaning).
pub fn json(r: &Report) -> Value {
    let zone = Zone::named(&r.timezone);
    let mut v = figures_json(&r.figures, &zone);
    let o = v.as_object_mut().expect("an object");
    o.insert("repository".into(), json!(r.repository));
    o.insert("week".into(), json!(r.window.week.map(|(y, w)| format!("{y}-W{w:02}"))));
    o.insert("from".into(), json!(zone.rfc3339(r.window.from)));
    o.insert("to".into(), json!(zone.rfc3339(r.window.to)));
    o.insert("timezone".into(), json!(r.timezone));
    let targets: serde_json::Map<String, Value> = r
        .checks
        .iter()
        .map(|c| {
            (
                c.key.to_string(),
                json!({ "value": c.value, "target": c.target, "comparison": c.comparison, "met": c.met,
                        "previous": c.previous }),
            )
        })
        .collect();
    o.insert("targets".into(), Value::Object(targets));
    o.insert("attention".into(), json!({ "stale_requests": r.stale_requests,
        "overdue_incidents": r.overdue_incidents.iter().map(|(t, at)| json!({ "title": t, "opened_at": zone.rfc3339(*at) })).collect::<Vec<_>>() }));
    o.insert("previous".into(), figures_json(&r.previous, &zone));
    o.insert(
        "history".into(),
        json!(
            r.history
                .iter()
                .map(|(l, f)| json!({ "week": l, "deployments": f.deployments.values().map(|e| e.count).sum::<usize>(),
                                      "ci_green_rate": f.ci_green_rate }))
                .collect::<Vec<_>>()
        ),
    );
    v
}

/// The `weekly_report` notification: the figures against their targets, linked to the issue
/// being created (by its marker).
pub fn notice(r: &Report) -> super::notify::Notice {
    let zone = Zone::named(&r.timezone);
    let label = r.window.label(&zone);
    let judged: Vec<&Check> = r.checks.iter().filter(|c| c.met.is_some()).collect();
    let met = judged.iter().filter(|c| c.met == Some(true)).count();
    super::notify::Notice {
        repo: r.repository.clone(),
        title: title(&label),
        summary: format!("{met} of {} figures meet their targets.", judged.len()),
        fields: r
            .checks
            .iter()
            .map(|c| (c.name.to_string(), format!("{} {}", show(c.value, c.unit()), mark(c.met))))
            .collect(),
        link: super::notify::NoticeLink { issue: None, marker: Some(marker(&label)), url: None },
        cause: format!("weekly-report-{label}"),
        request: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::figures::{DeploymentFact, IncidentFact, RequestFact, RunFact};
    use crate::domain::policy::Weekday;
    use chrono::NaiveDate;

    const H: i64 = 3_600_000;
    const DAY: i64 = 24 * H;
    /// Monday 2026-11-30 00:00 UTC.
    const MON: i64 = 1_795_996_800_000;

    fn schedule(day: Weekday, hour: u32, minute: u32, tz: &str) -> WeeklySchedule {
        WeeklySchedule { day, hour, minute, timezone: tz.into() }
    }

    #[test]
    fn the_week_due_is_the_one_before_the_scheduled_moment() {
        let s = schedule(Weekday::Monday, 9, 30, "UTC");
        // Monday 2026-12-07 09:30 UTC exactly: W49 (Nov 30 – Dec 6) is due.
        let (at, w) = due(&s, MON + 7 * DAY + 9 * H + 30 * 60_000);
        assert_eq!(at, MON + 7 * DAY + 9 * H + 30 * 60_000);
        assert_eq!((w.from, w.to, w.week), (MON, MON + 7 * DAY, Some((2026, 49))));
        // A minute before: still last Monday's moment, which reported W48.
        let (at, w) = due(&s, MON + 7 * DAY + 9 * H + 29 * 60_000);
        assert_eq!(at, MON + 9 * H + 30 * 60_000);
        assert_eq!(w.week, Some((2026, 48)));
        // Down from Sunday until Thursday: the latest moment (Monday) is still due, for W49 only.
        let (_, w) = due(&s, MON + 10 * DAY);
        assert_eq!(w.week, Some((2026, 49)));
    }

    #[test]
    fn weeks_in_a_time_zone_with_daylight_saving() {
        let berlin = Zone::named("Europe/Berlin");
        // W44 of 2026: Monday 26 October (after the change back on Sunday 25th), 168 hours.
        // W43: Monday 19 October 00:00 CEST (22:00 UTC Sunday) to Monday 26 October 00:00 CET
        // (23:00 UTC Sunday): 169 hours.
        let w43 = week(&berlin, 2026, 43).unwrap();
        assert_eq!(w43.to - w43.from, 169 * H);
        let w13 = week(&berlin, 2026, 13).unwrap(); // 23–29 March: clocks go forward on the 29th
        assert_eq!(w13.to - w13.from, 167 * H);
        assert_eq!(w43.previous(&berlin).week, Some((2026, 42)));
        assert_eq!(week(&berlin, 2026, 1).unwrap().previous(&berlin).week, Some((2025, 52)));
        // Monday 09:30 in Berlin, winter: 08:30 UTC.
        let s = schedule(Weekday::Monday, 9, 30, "Europe/Berlin");
        let (at, w) = due(&s, MON + 7 * DAY + 8 * H + 30 * 60_000);
        assert_eq!(at, MON + 7 * DAY + 8 * H + 30 * 60_000);
        assert_eq!((w.from, w.week), (MON - H, Some((2026, 49))));
        let (at, _) = due(&s, MON + 7 * DAY + 8 * H + 29 * 60_000);
        assert_eq!(at, MON + 8 * H + 30 * 60_000);
    }

    #[test]
    fn weeks_and_lengths_parse() {
        assert_eq!(parse_week("2026-W49"), Some((2026, 49)));
        assert_eq!(parse_week("2026-w01"), Some((2026, 1)));
        assert_eq!(parse_week("2026-W54"), None);
        assert_eq!(parse_week("2026W49"), None);
        // Years chrono's calendar barely holds: the week before overflows it (a panic in the
        // API's handler, `?week=-262143-W02`); and a label must stay 4 digits to sort.
        for far in ["-262143-W02", "262142-W52", "0-W01", "10000-W01", "+2026-W49"] {
            assert_eq!(parse_week(far), None, "{far}");
        }
        assert_eq!(parse_since("7d"), Some(7 * DAY));
        assert_eq!(parse_since("36h"), Some(36 * H));
        assert_eq!(parse_since("0d"), None);
        assert_eq!(parse_since("400d"), None);
        assert_eq!(parse_since("7"), None);
        let z = Zone::default();
        let now = MON + 7 * DAY + H; // Monday of W50
        assert_eq!(Period::parse(None, None).unwrap().window(&z, now).week, Some((2026, 49)));
        assert_eq!(Period::parse(Some("2026-W10"), None).unwrap().window(&z, now).week, Some((2026, 10)));
        assert_eq!(
            Period::parse(None, Some("7d")).unwrap().window(&z, now),
            Window { from: now - 7 * DAY, to: now, week: None }
        );
        assert!(Period::parse(Some("2026-W10"), Some("7d")).is_err());
        assert!(Period::parse(Some("W10"), None).unwrap_err().contains("2026-W49"));
    }

    fn week_of_history() -> Facts {
        let d = |env: &str, at: i64, ok: bool, approved: i64| DeploymentFact {
            environment: env.into(),
            finished_at: Some(at),
            succeeded: ok,
            approved_at: Some(approved),
            ..DeploymentFact::default()
        };
        Facts {
            deployments: vec![
                d("production", MON + DAY, true, MON + DAY - 20 * 60_000),
                d("production", MON + 2 * DAY, false, MON + 2 * DAY - 5 * 60_000),
                d("staging", MON + 2 * DAY, true, MON + 2 * DAY - 10 * 60_000),
                // Last week: one success.
                d("production", MON - 3 * DAY, true, MON - 3 * DAY - 10 * 60_000),
            ],
            runs: vec![
                RunFact { run_id: 1, attempt: 1, incident_branch: true, kind: "success".into(), completed_at: MON + H },
                RunFact { run_id: 2, attempt: 1, incident_branch: true, kind: "failure".into(), completed_at: MON + H },
            ],
            incidents: vec![
                IncidentFact {
                    kind: "ci".into(),
                    title: "CI failing: build | *main*".into(),
                    started_at: MON + H,
                    opened_at: MON + H,
                    deadline: MON + 2 * H,
                    recovered_at: None,
                    ..IncidentFact::default()
                },
                IncidentFact {
                    kind: "review".into(),
                    title: "Post-incident review: break-glass deployment of api to production (#9)".into(),
                    actor: Some("sre".into()),
                    started_at: MON + 2 * H,
                    opened_at: MON + 2 * H,
                    deadline: MON + 2 * DAY + 2 * H,
                    recovered_at: None,
                    ..IncidentFact::default()
                },
            ],
            requests: vec![RequestFact { issue: 7, open: true, updated_at: MON - 3 * DAY }],
            flaky: Vec::new(),
        }
    }

    #[test]
    fn checks_compare_each_figure_with_its_target() {
        let w = week(&Zone::default(), 2026, 49).unwrap();
        let r = build("acme/api", &week_of_history(), w, "UTC", &Targets::default(), Some(41));
        let by = |k: &str| r.checks.iter().find(|c| c.key == k).unwrap().clone();
        let ds = by("deployment_success");
        assert_eq!((ds.value.map(|v| v.round()), ds.met, ds.previous), (Some(67.0), Some(false), Some(100.0)));
        let ttd = by("mean_time_to_deploy");
        assert_eq!((ttd.value, ttd.met), (Some(15.0), Some(true)));
        assert_eq!((by("ci_green").value, by("ci_green").met), (Some(50.0), Some(false)));
        assert_eq!((by("uptime").value, by("uptime").met), (None, None));
        assert_eq!(by("open_critical_security").met, Some(true));
        assert_eq!(r.stale_requests, [7]);
        // The CI incident and the break-glass review, both past their deadlines.
        assert_eq!(r.overdue_incidents.len(), 2);
        let bg = &r.figures.breakglass;
        assert_eq!((bg.len(), bg[0].by.as_deref(), bg[0].overdue, bg[0].reviewed), (1, Some("sre"), true, false));
        assert!(r.previous.breakglass.is_empty(), "a use counts in its own week only");
        assert_eq!(r.history.len(), HISTORY_WEEKS);
        assert_eq!(r.history.last().unwrap().0, "W49");
        let j = json(&r);
        assert_eq!(j["week"], "2026-W49");
        assert_eq!(j["deployments"]["production"]["count"], 2);
        assert_eq!(j["deployments"]["production"]["succeeded"], 1);
        assert_eq!(j["deployments"]["production"]["success_rate"], 0.5);
        assert_eq!(j["ci"]["green_rate"], 0.5);
        assert_eq!(j["targets"]["ci_green"]["met"], false);
        assert_eq!(j["incidents"]["ci"]["count"], 1);
        assert_eq!(j["dora"]["change_failure_rate"], 0.5);
        assert_eq!(j["previous"]["deployments"]["production"]["count"], 1);
        assert_eq!(j["from"], "2026-11-30T00:00:00Z");
    }

    #[test]
    fn the_markdown_report() {
        let w = week(&Zone::default(), 2026, 49).unwrap();
        let r = build("acme/api", &week_of_history(), w, "UTC", &Targets::default(), Some(41));
        let md = markdown(&r);
        // Attacker-chosen text is inert.
        assert!(md.contains("CI failing: build \\| \\*main\\*"), "{md}");
        insta::assert_snapshot!(md);
    }

    #[test]
    fn a_week_across_a_daylight_saving_change_is_counted_in_local_time() {
        let berlin = Zone::named("Europe/Berlin");
        let local = |d: u32, h: u32, m: u32| {
            berlin.instant(NaiveDate::from_ymd_opt(2026, 10, d).unwrap().and_hms_opt(h, m, 0).unwrap())
        };
        let ok = |at: i64| DeploymentFact {
            environment: "production".into(),
            finished_at: Some(at),
            succeeded: true,
            ..DeploymentFact::default()
        };
        // W43 runs from Monday 19 October 00:00 CEST to Monday 26 October 00:00 CET; the clocks
        // go back on Sunday the 25th at 03:00.
        let facts = Facts {
            deployments: vec![
                ok(local(18, 23, 30)), // Sunday before: W42
                ok(local(19, 0, 30)),  // Monday 00:30 CEST (Sunday 22:30 UTC): W43
                ok(local(25, 2, 30)),  // 02:30 happens twice that night: the first, W43
                ok(local(25, 23, 30)), // Sunday 23:30 CET (22:30 UTC): W43
                ok(local(26, 0, 30)),  // Monday 00:30 CET (Sunday 23:30 UTC): W44
            ],
            ..Facts::default()
        };
        let r = build("acme/api", &facts, week(&berlin, 2026, 43).unwrap(), "Europe/Berlin", &Targets::default(), None);
        assert_eq!(r.figures.deployments["production"].count, 3);
        assert_eq!(r.previous.deployments["production"].count, 1);
        // Three a day over a week of 169 hours.
        assert!((r.figures.dora.deployment_frequency_per_day - 3.0 / (169.0 / 24.0)).abs() < 1e-12);
        assert_eq!(json(&r)["to"], "2026-10-26T00:00:00+01:00");
        assert_eq!(json(&r)["from"], "2026-10-19T00:00:00+02:00");
    }

    #[test]
    fn an_empty_week_reports_no_data_not_failures() {
        let w = week(&Zone::named("Europe/Berlin"), 2026, 49).unwrap();
        let r = build("acme/api", &Facts::default(), w, "Europe/Berlin", &Targets::default(), None);
        assert!(r.checks.iter().all(|c| c.met != Some(false)));
        let md = markdown(&r);
        assert!(md.contains("Nothing: every figure meets its target."), "{md}");
        assert!(md.contains("Monday 30 November 2026 to Sunday 6 December 2026 (Europe/Berlin)"), "{md}");
        assert_eq!(json(&r)["from"], "2026-11-30T00:00:00+01:00");
    }
}

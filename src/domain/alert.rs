//! Alerts from the monitoring stack as incidents (SPEC §4.2): what an alert incident records and
//! how its issue reads. The seed's triggers: a monitoring alert is investigated at once (CPU,
//! memory, errors, latency — app or infrastructure?), a performance degradation through metrics,
//! slow query logs and profiling, a cost alert by analysing the spend (above 20% → the PM).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ci::{format_duration, format_time};
use super::policy::{ALERT_CATEGORIES, Policy};

/// One alert of a notification.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AmAlert {
    /// `firing` or `resolved`.
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: String,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
    /// Grafana's contact point names the alert's dashboard here.
    #[serde(default, rename = "dashboardURL", skip_serializing_if = "String::is_empty")]
    pub dashboard_url: String,
}

impl AmAlert {
    /// Alertmanager's fingerprint, or (a sender that gives none) a hash of the labels.
    pub fn fingerprint(&self) -> String {
        let f = self.fingerprint.trim();
        if !f.is_empty() && f.len() <= 64 && f.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return f.to_string();
        }
        let mut h = Sha256::new();
        for (k, v) in &self.labels {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..8])
    }

    pub fn alertname(&self) -> &str {
        self.labels.get("alertname").map(String::as_str).unwrap_or("alert")
    }
}

/// The label every alert incident's issue carries, beside its category.
pub const ALERT_LABEL: &str = "alert";

/// A resolved alert firing again within this long reopens its incident.
pub const REOPEN_WITHIN_MS: i64 = 24 * 3_600_000;

/// The issue marker of an alert incident: one per repository, fingerprint and incident number.
pub fn marker(fingerprint: &str, seq: i64) -> String {
    format!("alert:{fingerprint}:{seq}")
}

/// The category an alert names (`category` label), or `infra`.
pub fn category(label: Option<&str>) -> String {
    let c = label.unwrap_or_default().trim().to_ascii_lowercase();
    if ALERT_CATEGORIES.contains(&c.as_str()) { c } else { "infra".to_string() }
}

/// Why an alert incident escalates at once, if it does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AtOnce {
    /// `severity: critical`.
    Critical,
    /// A cost alert whose increase is above the policy's threshold.
    CostIncrease { percent: f64, threshold: f64 },
}

/// What an alert incident records of its alert (the incident row's `details`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct AlertDoc {
    pub alertname: String,
    pub category: String,
    pub severity: String,
    pub summary: String,
    pub description: String,
    pub dashboard_url: Option<String>,
    pub runbook_url: Option<String>,
    pub generator_url: Option<String>,
    /// The alert's own `startsAt` (ms).
    pub starts_at: i64,
    /// When it resolved (`endsAt`, ms), once it has.
    pub ends_at: Option<i64>,
    /// The role it escalates to, and why at once (None: at its deadline).
    pub escalate_role: Option<String>,
    pub at_once: Option<AtOnce>,
    /// The deadline to respond by (ms).
    pub respond_by: i64,
    /// How many times it fired (a reopened incident counts each).
    pub firings: i64,
    /// Its `slo` label: `availability` makes its firing time downtime in the figures.
    #[serde(default)]
    pub slo: Option<String>,
    /// The latest firing's start (`startsAt`): a resolution of an earlier one, delivered late,
    /// closes nothing. 0 in records made before it was kept: the first start then.
    #[serde(default)]
    pub last_starts_at: i64,
    /// Kept by the App, no issue: a security alert of a repository that is not private, or an
    /// alert the App heard of only once it had resolved. Decided when the incident opens.
    #[serde(default)]
    pub kept: bool,
    /// A reopened incident's earlier firings, (start, end) in ms, oldest first (at most
    /// [`MAX_EARLIER_FIRINGS`]): downtime too, when the alert is about availability.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<(i64, i64)>,
}

/// How many earlier firings an alert incident remembers (a flapping alert's record stays small).
pub const MAX_EARLIER_FIRINGS: usize = 500;

impl AlertDoc {
    /// The latest firing's start.
    pub fn last_start(&self) -> i64 {
        self.last_starts_at.max(self.starts_at)
    }
}

impl AlertDoc {
    /// What the issue shows; two docs that show the same need no edit.
    pub fn shown(&self) -> (String, String) {
        (alert_title(self), alert_body(self))
    }
}

/// The role an alert of `category` escalates to, and whether at once, under `policy`.
pub fn escalation(
    policy: &Policy,
    category: &str,
    severity: &str,
    increase_percent: Option<f64>,
) -> (Option<String>, Option<AtOnce>) {
    let role_for = |c: &str| policy.alerts.escalate.get(c).cloned();
    let threshold = policy.alerts.cost_increase_percent;
    if category == "cost"
        && let Some(p) = increase_percent.filter(|p| *p > threshold)
    {
        return (role_for("cost"), Some(AtOnce::CostIncrease { percent: p, threshold }));
    }
    let at_once = severity.eq_ignore_ascii_case("critical").then_some(AtOnce::Critical);
    (role_for(category), at_once)
}

/// Who an escalation to `role` mentions: its users (@login) and teams (@org/slug).
pub fn mentions(policy: &Policy, role: Option<&str>) -> Vec<String> {
    let Some(r) = role.and_then(|r| policy.roles.get(r)) else { return vec![] };
    r.users.iter().map(|u| format!("@{u}")).chain(r.teams.iter().map(|t| format!("@{}/{}", t.org, t.slug))).collect()
}

fn checklist(category: &str) -> &'static str {
    match category {
        "app" => {
            "- [ ] Investigate at once: errors, latency, recent deploys of the app\n\
             - [ ] App issue or infrastructure? Escalate accordingly\n\
             - [ ] Roll back the last deployment if it caused this\n\
             - [ ] Confirm recovery on the dashboard"
        }
        "performance" => {
            "- [ ] Check the metrics (p50, p95, p99 response time, error rate)\n\
             - [ ] Check the database's slow query logs\n\
             - [ ] Profile the application\n\
             - [ ] App issue → Backend Lead; infrastructure → own it"
        }
        "cost" => {
            "- [ ] Analyse the spend: which service, which resource\n\
             - [ ] Identify the cause (traffic, a leak, a misconfiguration)\n\
             - [ ] Above the threshold: present the options to the PM"
        }
        "security" => {
            "- [ ] Assess the severity and the exposure\n\
             - [ ] Determine whether a patch or a rotation is needed\n\
             - [ ] Critical: PM and QA at once"
        }
        _ => {
            "- [ ] Investigate at once: CPU, memory, errors, latency\n\
             - [ ] Disk space, network, container restarts\n\
             - [ ] App issue or infrastructure? Escalate accordingly\n\
             - [ ] Confirm recovery on the dashboard"
        }
    }
}

/// Cuts `s` to at most `max` characters, on a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { format!("{}…", s.chars().take(max).collect::<String>()) }
}

/// The sender's text, made inert in the App's issue: no @mention pings anyone (only the
/// escalation names people, from the policy's roles), and no HTML comment can pass for one of the
/// App's markers.
fn defuse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '@' && chars.peek().is_some_and(|n| n.is_ascii_alphanumeric()) {
            out.push('\u{2060}'); // a word joiner: shown as nothing, and not a mention
        }
    }
    out.replace("<!--", "&lt;!--")
}

/// The sender's text as plain text in markdown: every ASCII punctuation mark markdown reads is
/// escaped (no link, image, heading, emphasis or entity: `&#64;` stays text), then defused.
pub(crate) fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '`'
                | '*'
                | '_'
                | '{'
                | '}'
                | '['
                | ']'
                | '('
                | ')'
                | '#'
                | '+'
                | '-'
                | '!'
                | '|'
                | '<'
                | '>'
                | '~'
                | '&'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    defuse(&out)
}

/// One line of text from an annotation (a title must not break into several), defused.
fn one_line(s: &str) -> String {
    defuse(&s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// One line for a table cell.
fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

pub fn alert_title(d: &AlertDoc) -> String {
    let name = cut(&one_line(&d.alertname), 80);
    match one_line(&d.summary) {
        s if s.is_empty() => format!("🔔 Alert: {name}"),
        s => format!("🔔 Alert: {name}: {}", cut(&s, 120)),
    }
}

/// A link only when it is an http(s) address (an annotation is the sender's text).
fn link(label: &str, url: Option<&str>) -> Option<String> {
    let url = url?.trim();
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && !url.chars().any(|c| c.is_whitespace() || matches!(c, '(' | ')' | '<' | '>'));
    ok.then(|| format!("[{label}]({url})"))
}

fn escalation_line(d: &AlertDoc) -> String {
    let role = d.escalate_role.as_deref();
    let to = match role {
        Some(r) => format!("to `{r}`"),
        None => format!("(no role is set in `alerts.escalate.{}` of `.github/shipgate.yml`)", d.category),
    };
    match &d.at_once {
        Some(AtOnce::Critical) => format!("**Escalated at once** {to}: the alert is critical."),
        Some(AtOnce::CostIncrease { percent, threshold }) => {
            format!("**Escalated at once** {to}: cost up {percent}% (above {threshold}%).")
        }
        None => format!("Escalates {to} if still firing at {}.", format_time(d.respond_by)),
    }
}

pub fn alert_body(d: &AlertDoc) -> String {
    let mut out = format!(
        "## 🔔 Alert firing: {}\n\n{}\n\n| | |\n|---|---|\n| Severity | **{}** |\n| Category | {} |\n| Started | {} |\n\
         | Respond by | {} |\n",
        cut(&one_line(&d.alertname), 200),
        super::links::DETAILS_LINE,
        cut(&cell(&d.severity), 40),
        d.category,
        format_time(d.starts_at),
        format_time(d.respond_by),
    );
    if d.firings > 1 {
        out.push_str(&format!("| Fired | {} times |\n", d.firings));
    }
    out.push('\n');
    if !d.summary.trim().is_empty() {
        out.push_str(&format!("**{}**\n\n", md_text(&cut(&one_line(&d.summary), 500))));
    }
    if !d.description.trim().is_empty() {
        let lines: Vec<String> = cut(d.description.trim(), 4000).lines().map(md_text).collect();
        out.push_str(&format!("{}\n\n", lines.join("  \n")));
    }
    let links: Vec<String> = [
        link("Dashboard", d.dashboard_url.as_deref()),
        link("Runbook", d.runbook_url.as_deref()),
        link("Source", d.generator_url.as_deref()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !links.is_empty() {
        out.push_str(&format!("{}\n\n", links.join(" · ")));
    }
    out.push_str(&escalation_line(d));
    out.push_str(&format!(
        "\n\n### Debugging checklist\n{}\n\n<sub>shipgate closes this issue when the alert resolves.</sub>",
        checklist(&d.category)
    ));
    out
}

/// The body once the alert resolved: the time to restore, then the incident as it was.
pub fn resolved_body(d: &AlertDoc, ttr_ms: i64) -> String {
    format!(
        "## ✅ Resolved: the alert stopped firing after {} (restored at {})\n\n---\n\n{}",
        format_duration(ttr_ms),
        format_time(d.ends_at.unwrap_or(d.starts_at + ttr_ms)),
        alert_body(d).replacen("## 🔔 Alert firing:", "## Alert (resolved):", 1)
    )
}

/// The comment on an incident reopened by the same alert firing again.
pub fn refired_comment(d: &AlertDoc, resolved_at: i64) -> String {
    format!(
        "## 🔁 Firing again: {}\n\nThe alert resolved at {} and fired again at {}; this incident is open again.",
        cut(&one_line(&d.alertname), 200),
        format_time(resolved_at),
        format_time(d.starts_at)
    )
}

/// The escalation comment of an alert incident.
pub fn escalation_comment(d: &AlertDoc, title: &str, mentions: &str) -> String {
    let who = if mentions.trim().is_empty() {
        format!("Nobody to mention: name a role in `alerts.escalate.{}` of `.github/shipgate.yml`.", d.category)
    } else {
        format!("{mentions}: please take this over.")
    };
    let why = match &d.at_once {
        Some(AtOnce::Critical) => "A critical alert is firing.".to_string(),
        Some(AtOnce::CostIncrease { percent, threshold }) => {
            format!("Cost rose {percent}%, above the {threshold}% threshold.")
        }
        None => format!("The alert is still firing after its response deadline ({}).", format_time(d.respond_by)),
    };
    format!("## 🚨 Escalated: {title}\n\n{why} {who}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy;

    fn doc() -> AlertDoc {
        AlertDoc {
            alertname: "HighLatency".into(),
            category: "performance".into(),
            severity: "warning".into(),
            summary: "API p95 at 800ms (was 200ms)".into(),
            description: "Database load 85%.".into(),
            dashboard_url: Some("https://grafana.example.com/d/api".into()),
            runbook_url: Some("javascript:alert(1)".into()),
            generator_url: None,
            starts_at: 1_796_600_000_000,
            ends_at: None,
            escalate_role: Some("backend-lead".into()),
            at_once: None,
            respond_by: 1_796_603_600_000,
            firings: 1,
            slo: None,
            last_starts_at: 0,
            kept: false,
            earlier: Vec::new(),
        }
    }

    #[test]
    fn texts() {
        let d = doc();
        insta::assert_snapshot!("alert_title", alert_title(&d));
        insta::assert_snapshot!("alert_body", alert_body(&d));
        let mut critical = d.clone();
        critical.at_once = Some(AtOnce::Critical);
        insta::assert_snapshot!("alert_escalation_critical", escalation_comment(&critical, &alert_title(&d), "@ops"));
        insta::assert_snapshot!("alert_resolved", resolved_body(&d, 25 * 60_000));
        let mut again = d.clone();
        again.firings = 2;
        insta::assert_snapshot!("alert_refired", refired_comment(&again, 1_796_599_000_000));
    }

    #[test]
    fn the_senders_text_pings_nobody_and_forges_no_marker() {
        let mut d = doc();
        d.summary = "ping @octocat and @acme/sre".into();
        d.description = "<!-- shipgate:request --> @admin\n<!-- shipgate:details-link -->".into();
        d.severity = "high|low".into();
        let body = alert_body(&d);
        assert!(!body.contains("@octocat") && !body.contains("@acme") && !body.contains("@admin"), "{body}");
        assert!(body.contains("@\u{2060}octocat"), "{body}");
        // The App's own placeholder for the details link is the only comment marker left.
        assert_eq!(body.matches("<!--").count(), 1, "{body}");
        assert!(!body.replace(crate::domain::links::DETAILS_LINE, "").contains("<!--"), "{body}");
        assert!(body.contains("**high\\|low**"), "{body}");
        assert!(!alert_title(&d).contains("@octocat"));
    }

    #[test]
    fn the_senders_markdown_is_text() {
        let mut d = doc();
        d.summary = "[click](https://evil.example) &#64;octocat".into();
        d.description = "# Heading\n![img](https://evil.example/x.png)\n- [ ] fake task".into();
        let body = alert_body(&d);
        assert!(body.contains("\\[click\\]\\(https://evil.example\\) \\&\\#64;octocat"), "{body}");
        assert!(body.contains("\\# Heading  \n\\!\\[img\\]"), "{body}");
        assert!(body.contains("\\- \\[ \\] fake task"), "{body}");
    }

    #[test]
    fn only_web_links_are_linked() {
        let body = alert_body(&doc());
        assert!(body.contains("[Dashboard](https://grafana.example.com/d/api)"), "{body}");
        assert!(!body.contains("javascript:"), "{body}");
    }

    #[test]
    fn escalation_by_category_severity_and_cost() {
        let p = policy::parse(
            "roles:\n  pm: { users: [alice] }\n  devops: { teams: [acme/sre] }\n\
             alerts:\n  escalate: { infra: devops, cost: pm }\n  cost_increase_percent: 20\n",
        )
        .expect("policy");
        assert_eq!(escalation(&p, "infra", "warning", None), (Some("devops".into()), None));
        assert_eq!(escalation(&p, "infra", "critical", None), (Some("devops".into()), Some(AtOnce::Critical)));
        assert_eq!(escalation(&p, "app", "critical", None), (None, Some(AtOnce::Critical)));
        assert_eq!(escalation(&p, "cost", "info", Some(20.0)), (Some("pm".into()), None), "not above 20");
        assert_eq!(
            escalation(&p, "cost", "info", Some(35.5)),
            (Some("pm".into()), Some(AtOnce::CostIncrease { percent: 35.5, threshold: 20.0 }))
        );
        assert_eq!(mentions(&p, Some("devops")), ["@acme/sre"]);
        assert_eq!(category(Some("COST")), "cost");
        assert_eq!(category(Some("weird")), "infra");
        assert_eq!(category(None), "infra");
    }
}

//! Notifications (SPEC §5): the events a policy's `notify:` rules name, where they go, and the
//! texts the App sends. Pure: what the App was given (Slack channels, mail domains) comes in as a
//! [`Directory`] of names, never a URL; sending is the relay's (`crate::notify`).
//!
//! A repository names channels, never URLs or servers: `slack:NAME` is the channel `NAME` the
//! operator gave the repository's own account (`SHIPGATE_SLACK_WEBHOOKS=acme/NAME=https://…`),
//! `email:ADDRESS` an address in a domain the operator allows that account
//! (`SHIPGATE_MAIL_DOMAINS`), `role:NAME` the public e-mail of a role's users and team members,
//! in those domains too.
//!
//! Every notification is an outbox action of its own ([`Action::Notify`]): written in the
//! transaction of the change it reports, sent once, retried, parked when it keeps failing, and
//! never in the way of the App's GitHub calls (its own outbox subject).
//!
//! For a new kind of incident (alerts from outside GitHub, say), build a [`Notice`] whose title
//! names it (the alertname) and whose `link` names its issue (`marker` while the App is creating
//! it), then add `notifications(&policy, account_of(repo), NotifyEvent::IncidentOpened, &notice)`
//! to the effects of the transaction that opens it, as `handlers::ci` does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::action::Action;
use super::policy::Policy;

/// The events a `notify:` rule can name (SPEC §2, §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A request's gate opened: every condition is met.
    GateOpened,
    /// Approvals of an open request no longer count (a push, an edit, expiry).
    ApprovalsStale,
    /// A request's deployment started.
    Deploying,
    /// A request's deployment succeeded.
    Deployed,
    /// A request's deployment (or rollback) failed.
    DeployFailed,
    /// `/rollback` was accepted, and when the rollback succeeded.
    Rollback,
    /// An incident was opened (failed CI on an incident branch; alerts).
    IncidentOpened,
    /// An incident was still open at its deadline.
    Escalated,
    /// An incident was closed by recovery (a passing run, a fixed alert).
    Recovered,
    /// A high or critical security alert opened an incident.
    SecurityAlert,
    /// The weekly report (accepted in policies; sent once the report exists).
    WeeklyReport,
    /// `/breakglass` opened a request's gate (SPEC §3.7).
    BreakGlass,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 12] = [
        NotifyEvent::GateOpened,
        NotifyEvent::ApprovalsStale,
        NotifyEvent::Deploying,
        NotifyEvent::Deployed,
        NotifyEvent::DeployFailed,
        NotifyEvent::Rollback,
        NotifyEvent::IncidentOpened,
        NotifyEvent::Escalated,
        NotifyEvent::Recovered,
        NotifyEvent::SecurityAlert,
        NotifyEvent::WeeklyReport,
        NotifyEvent::BreakGlass,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::GateOpened => "gate_opened",
            NotifyEvent::ApprovalsStale => "approvals_stale",
            NotifyEvent::Deploying => "deploying",
            NotifyEvent::Deployed => "deployed",
            NotifyEvent::DeployFailed => "deploy_failed",
            NotifyEvent::Rollback => "rollback",
            NotifyEvent::IncidentOpened => "incident_opened",
            NotifyEvent::Escalated => "escalated",
            NotifyEvent::Recovered => "recovered",
            NotifyEvent::SecurityAlert => "security_alert",
            NotifyEvent::WeeklyReport => "weekly_report",
            NotifyEvent::BreakGlass => "break_glass",
        }
    }

    /// The event called `name` (exactly; event names are lowercase).
    pub fn parse(name: &str) -> Option<NotifyEvent> {
        NotifyEvent::ALL.into_iter().find(|e| e.as_str() == name)
    }

    pub fn names() -> Vec<&'static str> {
        NotifyEvent::ALL.iter().map(|e| e.as_str()).collect()
    }
}

impl fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a rule sends: as written in the policy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetKind {
    /// `slack:NAME`: the channel NAME of the repository's account.
    Slack(String),
    /// `email:ADDRESS`.
    Email(String),
    /// `role:NAME`: the public e-mail of the role's users and team members.
    Role(String),
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetKind::Slack(n) => write!(f, "slack:{n}"),
            TargetKind::Email(a) => write!(f, "email:{a}"),
            TargetKind::Role(r) => write!(f, "role:{r}"),
        }
    }
}

/// A target and where the policy names it (for warnings with a line and column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyTarget {
    pub kind: TargetKind,
    pub line: usize,
    pub column: usize,
}

/// One `notify:` rule: `{ on: [events], to: [targets] }`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NotifyRule {
    pub on: Vec<NotifyEvent>,
    pub to: Vec<NotifyTarget>,
}

/// A channel name: letters, digits, `-`, `_`, `.` (as Slack names channels), at most 80.
fn channel_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 80
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// An e-mail address as a policy may name it: `local@domain.tld`, plain ASCII, no display name,
/// no quoting, no spaces. Its domain, lowercased, when valid.
pub fn address_domain(address: &str) -> Option<String> {
    let (local, domain) = address.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let domain_ok = domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    (local_ok && domain_ok).then(|| domain.to_ascii_lowercase())
}

/// Reads a `to:` entry: `slack:NAME`, `email:ADDRESS` or `role:NAME`. A role's existence is the
/// policy's to check.
pub fn parse_target(text: &str) -> Result<TargetKind, String> {
    let text = text.trim();
    let explain = || {
        format!(
            "`{}` is not a notification target: write `slack:NAME` (a channel the App was given for this \
             account), `email:ADDRESS` or `role:NAME`",
            show(text)
        )
    };
    let (scheme, rest) = text.split_once(':').ok_or_else(explain)?;
    let rest = rest.trim();
    match scheme.trim() {
        "slack" => {
            let name = rest.strip_prefix('#').unwrap_or(rest);
            if name.starts_with("http") || name.contains("://") {
                return Err(format!(
                    "`{}`: a policy names a channel, never its webhook URL (the URL is an App setting, \
                     SHIPGATE_SLACK_WEBHOOKS)",
                    show(text)
                ));
            }
            if name.contains('/') {
                return Err(format!(
                    "`{}`: name the channel without an account (`slack:{}`): a repository uses only its own \
                     account's channels",
                    show(text),
                    show(name.rsplit('/').next().unwrap_or(name))
                ));
            }
            if !channel_name_ok(name) {
                return Err(format!(
                    "`{}` is not a channel name (letters, digits, `-`, `_` and `.`, at most 80)",
                    show(name)
                ));
            }
            Ok(TargetKind::Slack(name.to_ascii_lowercase()))
        }
        "email" | "mailto" => match address_domain(rest) {
            Some(_) => {
                let (local, domain) = rest.rsplit_once('@').unwrap_or((rest, ""));
                Ok(TargetKind::Email(format!("{local}@{}", domain.to_ascii_lowercase())))
            }
            None => Err(format!("`{}` is not an e-mail address like `oncall@example.com`", show(rest))),
        },
        "role" => {
            if rest.is_empty() {
                Err("`role:` names no role (write `role:pm`)".to_string())
            } else {
                Ok(TargetKind::Role(rest.to_string()))
            }
        }
        _ => Err(explain()),
    }
}

/// What the App was given by its operator, as names: the Slack channels of each account (never
/// their URLs), the mail domains each account may write to, and whether e-mail can be sent at
/// all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    /// (account, channel), lowercase.
    pub slack: BTreeSet<(String, String)>,
    /// account (lowercase) → allowed domains (lowercase).
    pub mail_domains: BTreeMap<String, Vec<String>>,
    /// `SHIPGATE_SMTP_URL` and `SHIPGATE_MAIL_FROM` are set.
    pub mail: bool,
}

impl Directory {
    pub fn has_slack(&self, account: &str, name: &str) -> bool {
        self.slack.contains(&(account.to_ascii_lowercase(), name.to_ascii_lowercase()))
    }

    /// Whether `account` may send mail to `address` (its domain, or a subdomain of one, is
    /// allowed for the account).
    pub fn mail_allowed(&self, account: &str, address: &str) -> bool {
        let Some(domain) = address_domain(address) else { return false };
        self.mail_domains
            .get(&account.to_ascii_lowercase())
            .is_some_and(|allowed| allowed.iter().any(|d| domain == *d || domain.ends_with(&format!(".{d}"))))
    }
}

/// A policy's notification problems that depend on the App's settings: said beside the verdict
/// (the check run, `shipgate check-config`), never making a policy invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

/// The warnings of `policy` in a repository of `account`, given what the App has (`dir`): a
/// channel the App was not given, an address outside the account's mail domains, e-mail without
/// an SMTP server, a role whose members cannot be e-mailed.
pub fn warnings(policy: &Policy, account: &str, dir: &Directory) -> Vec<Warning> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for rule in &policy.notify {
        for t in &rule.to {
            if !seen.insert((t.kind.clone(), t.line, t.column)) {
                continue;
            }
            let message = match &t.kind {
                TargetKind::Slack(name) if !dir.has_slack(account, name) => Some(format!(
                    "Slack channel `{name}` is not configured for `{account}` (SHIPGATE_SLACK_WEBHOOKS has no \
                     `{account}/{name}`): nothing is sent to it until the App's operator adds it"
                )),
                TargetKind::Email(_) | TargetKind::Role(_) if !dir.mail => Some(format!(
                    "`{}`: the App sends no e-mail (SHIPGATE_SMTP_URL and SHIPGATE_MAIL_FROM are not both set)",
                    t.kind
                )),
                TargetKind::Email(address) if !dir.mail_allowed(account, address) => Some(format!(
                    "`{address}` is not in a mail domain the App allows `{account}` ({}): nothing is sent to it",
                    match dir.mail_domains.get(&account.to_ascii_lowercase()) {
                        Some(d) if !d.is_empty() => format!("SHIPGATE_MAIL_DOMAINS allows {}", d.join(", ")),
                        _ => "SHIPGATE_MAIL_DOMAINS names none for it".to_string(),
                    }
                )),
                TargetKind::Role(role) => {
                    let r = policy.role(role);
                    match r {
                        Some(r) if r.users.is_empty() && r.teams.is_empty() => Some(format!(
                            "role `{role}` is a permission level only: its holders are not e-mailed (only a role's \
                             users and team members with a public e-mail are)"
                        )),
                        _ if !dir.mail_domains.contains_key(&account.to_ascii_lowercase()) => Some(format!(
                            "`role:{role}`: SHIPGATE_MAIL_DOMAINS allows `{account}` no domain, so none of its \
                             members' addresses is written to"
                        )),
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some(message) = message {
                out.push(Warning { line: t.line, column: t.column, message });
            }
        }
    }
    out
}

/// Where a notification goes, as its outbox row names it: a channel, never its URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Channel {
    /// The Slack channel `account/name` of `SHIPGATE_SLACK_WEBHOOKS`.
    Slack { account: String, name: String },
    /// One address (checked against the account's mail domains when sent).
    Email { account: String, to: String },
    /// A role's users and team members (as the policy named them when the event happened),
    /// e-mailed at their public address in the account's mail domains.
    Role { account: String, name: String, users: Vec<String>, teams: Vec<String> },
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Slack { account, name } => write!(f, "slack:{account}/{name}"),
            Channel::Email { to, .. } => write!(f, "email:{to}"),
            Channel::Role { account, name, .. } => write!(f, "role:{account}/{name}"),
        }
    }
}

/// The issue a notification links back to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeLink {
    /// The issue, when its number is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<i64>,
    /// An issue the App creates (an incident), by its marker: its number is looked up when the
    /// notification is sent (it waits while the issue is being created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    /// Where to link when there is no issue (an alert kept by the App, a run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The deployment request whose checklist ticks "Notify team" once a `deployed` notification was
/// really sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRef {
    pub repository_id: i64,
    pub issue: i64,
}

/// Stands in a notification's texts for the link to its issue (written when it is sent).
pub const LINK: &str = "{shipgate:issue-url}";

/// What happened, for the texts: a title naming the request or the incident, one line, and
/// fields. Built by the functions below (and by other handlers for their own incidents).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notice {
    /// `owner/name`.
    pub repo: String,
    /// One line naming the request or the incident (`Deployment request #5 …`).
    pub title: String,
    /// What happened, one or two sentences.
    pub summary: String,
    /// (label, value), shown in order.
    pub fields: Vec<(String, String)>,
    pub link: NoticeLink,
    /// What caused it, unique among the repository's notices of this event (names the outbox
    /// subject, so that each notice is in order only with itself).
    pub cause: String,
    /// A deployment request's `deployed`: its checklist is ticked once really sent.
    pub request: Option<RequestRef>,
}

/// The account of `owner/name`.
pub fn account_of(repo: &str) -> &str {
    repo.split_once('/').map_or(repo, |(owner, _)| owner)
}

/// The notifications `policy` asks for on `event`: one action per distinct target of the rules
/// that name it, for a repository of `account`. None when no rule names the event.
pub fn notifications(policy: &Policy, account: &str, event: NotifyEvent, notice: &Notice) -> Vec<Action> {
    let mut targets: Vec<&TargetKind> = Vec::new();
    for rule in policy.notify.iter().filter(|r| r.on.contains(&event)) {
        for t in &rule.to {
            if !targets.contains(&&t.kind) {
                targets.push(&t.kind);
            }
        }
    }
    if targets.is_empty() {
        return Vec::new();
    }
    let (subject, text, slack) = render(event, notice);
    let account = account.to_ascii_lowercase();
    targets
        .into_iter()
        .map(|t| {
            let channel = match t {
                TargetKind::Slack(name) => Channel::Slack { account: account.clone(), name: name.clone() },
                TargetKind::Email(to) => Channel::Email { account: account.clone(), to: to.clone() },
                TargetKind::Role(name) => {
                    let role = policy.role(name);
                    Channel::Role {
                        account: account.clone(),
                        name: name.clone(),
                        users: role.map(|r| r.users.clone()).unwrap_or_default(),
                        teams: role.map(|r| r.teams.iter().map(|t| t.to_string()).collect()).unwrap_or_default(),
                    }
                }
            };
            Action::Notify {
                repo: notice.repo.clone(),
                channel,
                event: event.as_str().to_string(),
                key: notice.cause.clone(),
                subject: subject.clone(),
                text: text.clone(),
                slack: if matches!(t, TargetKind::Slack(_)) { slack.clone() } else { Value::Null },
                link: notice.link.clone(),
                request: notice.request.filter(|_| event == NotifyEvent::Deployed),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The texts
// ---------------------------------------------------------------------------------------------

/// Text from outside (a title, a login, a branch) for a plain-text line: no control characters,
/// at most `max` characters.
fn clean(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        out.push(if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') { ' ' } else { c });
    }
    out.trim().to_string()
}

/// User text inside Slack `mrkdwn`: `&`, `<` and `>` escaped as Slack asks, so that nobody's text
/// becomes a link, a mention (`<!channel>`, `<@U…>`) or a command.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn show(s: &str) -> String {
    clean(s, 60)
}

/// The subject (e-mail) / header (Slack), the plain text (the e-mail's body) and the Slack
/// message (Block Kit `blocks` with a `text` fallback) of a notice. The link to the issue is
/// [`LINK`], written when it is sent.
pub fn render(event: NotifyEvent, n: &Notice) -> (String, String, Value) {
    let title = clean(&n.title, 150);
    let subject = format!("[{}] {title}", clean(&n.repo, 100));
    let summary = clean(&n.summary, 2000);
    let fields: Vec<(String, String)> = n.fields.iter().take(10).map(|(k, v)| (clean(k, 60), clean(v, 500))).collect();
    let what = if n.link.issue.is_some() || n.link.marker.is_some() { "The issue" } else { "Details" };

    let mut text = format!("{title}\n\n{summary}\n\n");
    for (k, v) in &fields {
        text.push_str(&format!("{k}: {v}\n"));
    }
    text.push_str(&format!("\n{what}: {LINK}\n\n-- \nshipgate, event `{event}` for {}\n", clean(&n.repo, 100)));

    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": title, "emoji": false } }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": slack_escape(&summary) } }),
    ];
    if !fields.is_empty() {
        let items: Vec<Value> = fields
            .iter()
            .map(|(k, v)| json!({ "type": "mrkdwn", "text": format!("*{}*\n{}", slack_escape(k), slack_escape(v)) }))
            .collect();
        blocks.push(json!({ "type": "section", "fields": items }));
    }
    let label = match n.link.issue {
        Some(i) => format!("{}#{i}", slack_escape(&clean(&n.repo, 100))),
        None if n.link.marker.is_some() && event == NotifyEvent::WeeklyReport => "the report issue".to_string(),
        None if n.link.marker.is_some() => "the incident issue".to_string(),
        None => "details".to_string(),
    };
    blocks.push(json!({ "type": "context", "elements": [
        { "type": "mrkdwn", "text": format!("<{LINK}|Open {label} on GitHub> · shipgate · `{event}`") }
    ] }));
    let fallback = format!("{}: <{LINK}|{label}>", slack_escape(&title));
    (subject, text, json!({ "text": fallback, "blocks": blocks }))
}

/// `aaaaaaa` of a SHA (whole, when not ASCII hex).
fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// A deployment request's notice: the title names it (`#5: api → production`).
pub struct RequestNotice<'a> {
    pub repo: &'a str,
    pub repository_id: i64,
    pub issue: i64,
    pub service: Option<&'a str>,
    pub environment: Option<&'a str>,
}

impl RequestNotice<'_> {
    fn base(&self, what: &str, summary: String, cause: String) -> Notice {
        let service = self.service.unwrap_or("(service?)");
        let env = self.environment.unwrap_or("(environment?)");
        Notice {
            repo: self.repo.to_string(),
            title: format!("Deployment request #{}: {service} → {env} {what}", self.issue),
            summary,
            fields: vec![("Service".into(), service.into()), ("Environment".into(), env.into())],
            link: NoticeLink { issue: Some(self.issue), ..NoticeLink::default() },
            cause: format!("request-{}-{cause}", self.issue),
            request: Some(RequestRef { repository_id: self.repository_id, issue: self.issue }),
        }
    }

    /// Every gate passes (`approvers`: who approved).
    pub fn gate_opened(&self, approvers: &[String], revision: i64, heads: &[String]) -> Notice {
        let by = if approvers.is_empty() {
            "no approval was required".to_string()
        } else {
            format!("approved by {}", approvers.iter().map(|a| format!("@{a}")).collect::<Vec<_>>().join(", "))
        };
        let mut n = self.base(
            "is approved",
            format!("The deploy gate is open: every condition is met ({by})."),
            format!("gate-r{revision}-{}", heads.iter().map(|h| short(h)).collect::<Vec<_>>().join("-")),
        );
        if !heads.is_empty() {
            n.fields.push(("Commits".into(), heads.iter().map(|h| short(h)).collect::<Vec<_>>().join(", ")));
        }
        n
    }

    /// `/breakglass` by `by`: the gate is open for one deployment of `heads` until `until`,
    /// overriding `overridden`.
    pub fn break_glass(&self, by: &str, reason: &str, heads: &[String], overridden: &[String], until: i64) -> Notice {
        let mut n = self.base(
            "was opened by break-glass",
            format!(
                "@{by} broke the glass: the deploy gate is open for one deployment until {}, overriding: {}. A \
                 post-incident review follows.",
                super::messages::timestamp(until),
                if overridden.is_empty() { "nothing".to_string() } else { overridden.join("; ") }
            ),
            format!("breakglass-{}-{until}", heads.iter().map(|h| short(h)).collect::<Vec<_>>().join("-")),
        );
        n.fields.push(("By".into(), format!("@{by}")));
        n.fields.push(("Reason".into(), reason.split_whitespace().collect::<Vec<_>>().join(" ")));
        if !heads.is_empty() {
            n.fields.push(("Commits".into(), heads.iter().map(|h| short(h)).collect::<Vec<_>>().join(", ")));
        }
        n.request = None;
        n
    }

    /// Approvals that no longer count: (login, why).
    pub fn approvals_stale(&self, stale: &[(String, String)], revision: i64, heads: &[String]) -> Notice {
        let list: Vec<String> = stale.iter().map(|(who, why)| format!("@{who}: {why}")).collect();
        let mut n = self.base(
            "needs approval again",
            format!(
                "{} no longer count{} and must be given again: {}.",
                if stale.len() == 1 { "An approval" } else { "Approvals" },
                if stale.len() == 1 { "s" } else { "" },
                list.join("; ")
            ),
            format!(
                "stale-r{revision}-{}-{}",
                heads.iter().map(|h| short(h)).collect::<Vec<_>>().join("-"),
                stale.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>().join("-")
            ),
        );
        n.request = None;
        n
    }

    /// A deployment of the request started, is done, or failed (`state`: deploying, deployed,
    /// deploy_failed), or a rollback (requested or done).
    pub fn deployment(&self, event: NotifyEvent, d: &DeploymentNotice<'_>) -> Notice {
        let sha = short(d.sha);
        let (what, summary) = match (event, d.rollback) {
            (NotifyEvent::Deploying, _) => {
                ("is deploying", format!("Deploying `{sha}` to {} has started.", d.environment))
            }
            (NotifyEvent::Deployed, _) => (
                "is deployed",
                match d.took_ms {
                    Some(ms) => format!(
                        "`{sha}` deployed to {} successfully in {}.",
                        d.environment,
                        super::messages::duration(ms)
                    ),
                    None => format!("`{sha}` deployed to {} successfully.", d.environment),
                },
            ),
            (NotifyEvent::DeployFailed, true) => {
                ("rollback failed", format!("The rollback to `{sha}` on {} ended in {}.", d.environment, d.state))
            }
            (NotifyEvent::DeployFailed, false) => (
                "failed to deploy",
                format!(
                    "Deploying `{sha}` to {} ended in {}: the request shows its rollback plan, and an approver may \
                     `/rollback`.",
                    d.environment, d.state
                ),
            ),
            (_, _) if d.state == "requested" => (
                "is rolling back",
                match d.by {
                    Some(by) => format!("@{by} asked to roll {} back to `{sha}`.", d.environment),
                    None => format!("A rollback of {} to `{sha}` was asked for.", d.environment),
                },
            ),
            (_, _) => ("is rolled back", format!("{} is rolled back to `{sha}`.", d.environment)),
        };
        let mut n = self.base(what, summary, format!("{}-{}-{}", d.key, event, d.state));
        n.fields.push(("Commit".into(), sha.to_string()));
        if let Some(url) = d.log_url {
            n.fields.push(("Run".into(), url.to_string()));
        }
        n
    }
}

/// A deployment, for its notices.
pub struct DeploymentNotice<'a> {
    /// What makes it unique in the request (its deployment id, or its `/rollback`'s key).
    pub key: String,
    pub sha: &'a str,
    pub environment: &'a str,
    /// GitHub's state (`in_progress`, `success`, `failure`, …), or `requested`.
    pub state: &'a str,
    pub rollback: bool,
    /// Who asked (a `/rollback`).
    pub by: Option<&'a str>,
    /// The deployment's own duration.
    pub took_ms: Option<i64>,
    /// The run's page (only a repository's own Actions run page).
    pub log_url: Option<&'a str>,
}

/// A CI incident, for its notices.
#[derive(Clone, Copy)]
pub struct IncidentNotice<'a> {
    pub repo: &'a str,
    /// The incident's title (`🔴 CI failing: build on main`).
    pub title: &'a str,
    /// Its issue: the number, or the marker of the issue being created.
    pub issue: Option<i64>,
    pub marker: &'a str,
    /// Where to link when there is no issue (a public repository's security alert).
    pub url: Option<&'a str>,
}

impl IncidentNotice<'_> {
    fn base(&self, prefix: &str, summary: String, cause: &str) -> Notice {
        Notice {
            repo: self.repo.to_string(),
            title: format!("{prefix}{}", self.title),
            summary,
            fields: Vec::new(),
            link: NoticeLink {
                issue: self.issue,
                marker: Some(self.marker.to_string()).filter(|_| self.issue.is_none() && self.url.is_none()),
                url: self.url.map(str::to_string),
            },
            cause: format!("incident-{}-{cause}", self.marker),
            request: None,
        }
    }

    /// A workflow failed on an incident branch: `run` is the failing run's page.
    pub fn opened(&self, workflow: &str, branch: &str, run_url: &str, jobs: &[String], deadline: &str) -> Notice {
        let mut n = self.base(
            "",
            format!("{workflow} failed on {branch}. Debug it by {deadline}, or it is escalated."),
            "opened",
        );
        n.fields.push(("Workflow".into(), workflow.into()));
        n.fields.push(("Branch".into(), branch.into()));
        if !jobs.is_empty() {
            n.fields.push(("Failed jobs".into(), jobs.join(", ")));
        }
        if !run_url.is_empty() {
            n.fields.push(("Run".into(), run_url.into()));
        }
        n
    }

    /// Still open at its deadline: `to` names who it is escalated to.
    pub fn escalated(&self, deadline: &str, to: &str) -> Notice {
        let who = if to.is_empty() { "the team".to_string() } else { to.to_string() };
        let mut n = self.base(
            "Escalated: ",
            format!("Still open at its deadline ({deadline}): escalated to {who}."),
            "escalated",
        );
        n.fields.push(("Deadline".into(), deadline.into()));
        n
    }

    /// Closed by recovery after `ttr_ms` (a passing run, a fixed or dismissed alert).
    pub fn recovered(&self, how: &str, ttr_ms: i64) -> Notice {
        let took = super::messages::duration(ttr_ms);
        let mut n = self.base("Recovered: ", format!("Recovered ({how}) after {took}."), "recovered");
        n.fields.push(("Time to recovery".into(), took));
        n
    }

    /// A security alert (`severity`, `summary`) opened the incident.
    pub fn security_alert(&self, kind: &str, severity: &str, summary: &str, escalate_to: Option<&str>) -> Notice {
        let mut n = self.base(
            "",
            format!(
                "A {severity} {kind} alert: {summary}.{}",
                escalate_to.map(|r| format!(" Escalated at once to {r}.")).unwrap_or_default()
            ),
            "security",
        );
        n.fields.push(("Severity".into(), severity.into()));
        n.fields.push(("Alert".into(), kind.into()));
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy;

    const POLICY: &str = r#"
roles:
  pm: { users: [alice], teams: [acme/product] }
  ops: { permission: maintain }
notify:
  - { on: [gate_opened, deployed, deploy_failed], to: [slack:deploys] }
  - { on: [deployed, incident_opened], to: [slack:deploys, email:oncall@example.com, role:pm] }
  - { on: [weekly_report, break_glass], to: ["slack:#team", role:ops, email:ceo@elsewhere.org] }
"#;

    fn policy() -> Policy {
        policy::parse(POLICY).expect("valid")
    }

    #[test]
    fn events_round_trip() {
        for e in NotifyEvent::ALL {
            assert_eq!(NotifyEvent::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), json!(e.as_str()));
        }
        assert_eq!(NotifyEvent::parse("Deployed"), None);
    }

    #[test]
    fn targets_are_read_strictly() {
        assert_eq!(parse_target("slack:Deploys"), Ok(TargetKind::Slack("deploys".into())));
        assert_eq!(parse_target("slack:#oncall"), Ok(TargetKind::Slack("oncall".into())));
        assert_eq!(parse_target("email:Ops@Example.COM"), Ok(TargetKind::Email("Ops@example.com".into())));
        assert_eq!(parse_target("role:pm"), Ok(TargetKind::Role("pm".into())));
        for bad in [
            "deploys",
            "sms:123",
            "slack:",
            "slack:other/deploys",
            "slack:https://hooks.slack.com/services/T/B/X",
            "slack:a b",
            "email:nobody",
            "email:a@b",
            "email:\"Eve\" <eve@example.com>",
            "email:eve@example.com\nBcc: x@evil.org",
            "role:",
        ] {
            assert!(parse_target(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_spec_example_parses() {
        let p = policy::parse(concat!(
            "roles:\n  pm: { users: [alice], teams: [acme/product] }\n",
            "notify:\n",
            "  - { on: [gate_opened, deployed, deploy_failed, rollback], to: [slack:deploys] }\n",
            "  - { on: [incident_opened, escalated, security_alert, break_glass], to: [slack:oncall, email:oncall@example.com] }\n",
            "  - { on: [weekly_report], to: [role:pm, slack:team] }\n",
        ))
        .expect("the SPEC's notify section is valid");
        assert_eq!(p.notify.len(), 3);
        assert_eq!(p.notify[2].on, [NotifyEvent::WeeklyReport]);
        let to: Vec<String> = p.notify[1].to.iter().map(|t| t.kind.to_string()).collect();
        assert_eq!(to, ["slack:oncall", "email:oncall@example.com"]);
        assert_eq!((p.notify[2].to[1].line, p.notify[2].to[1].column), (6, 42));
    }

    #[test]
    fn unknown_events_targets_and_roles_are_errors_with_their_place() {
        let errors = policy::parse(concat!(
            "roles:\n  pm: { users: [alice] }\n",
            "notify:\n",
            "  - { on: [deployd, gate_opened], to: [slack:deploys, role:qa] }\n",
            "  - { on: [recovered], to: [\"slack:https://hooks.slack.com/services/X\", pager:1] }\n",
            "  - { on: deployed, to: [] }\n",
            "  - { to: [slack:x], at: 3 }\n",
            "  - slack:deploys\n",
        ))
        .expect_err("invalid");
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        insta::assert_snapshot!(lines.join("\n"));
        let top = policy::parse("notfiy: []\n").expect_err("unknown key");
        assert!(top[0].message.contains("did you mean `notify`?"), "{top:?}");
    }

    #[test]
    fn one_action_per_distinct_target_naming_the_channel() {
        let p = policy();
        let notice = RequestNotice {
            repo: "acme/app",
            repository_id: 7,
            issue: 5,
            service: Some("api"),
            environment: Some("production"),
        };
        let d = DeploymentNotice {
            key: "deployment-900".into(),
            sha: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
            environment: "production",
            state: "success",
            rollback: false,
            by: None,
            took_ms: Some(252_000),
            log_url: None,
        };
        let n = notice.deployment(NotifyEvent::Deployed, &d);
        let actions = notifications(&p, "Acme", NotifyEvent::Deployed, &n);
        let channels: Vec<String> = actions
            .iter()
            .map(|a| match a {
                Action::Notify { channel, .. } => channel.to_string(),
                _ => panic!("not a notification"),
            })
            .collect();
        assert_eq!(channels, ["slack:acme/deploys", "email:oncall@example.com", "role:acme/pm"]);
        for a in &actions {
            let Action::Notify { request, slack, channel, .. } = a else { unreachable!() };
            assert_eq!(*request, Some(RequestRef { repository_id: 7, issue: 5 }));
            assert_eq!(slack.is_null(), !matches!(channel, Channel::Slack { .. }));
            let json = serde_json::to_string(a).unwrap();
            assert!(!json.contains("hooks.slack.com") && !json.contains("https://"), "{json}");
        }
        let Action::Notify { channel: Channel::Role { users, teams, .. }, .. } = &actions[2] else { panic!() };
        assert_eq!(
            (users.as_slice(), teams.as_slice()),
            (&["alice".to_string()][..], &["acme/product".to_string()][..])
        );
        // A gate opening goes to the deploys channel only, and ticks no checklist.
        let g = notice.gate_opened(&["alice".into()], 1, &["aaaaaaa1".into()]);
        let actions = notifications(&p, "acme", NotifyEvent::GateOpened, &g);
        assert_eq!(actions.len(), 1);
        assert!(matches!(&actions[0], Action::Notify { request: None, .. }));
        assert!(notifications(&p, "acme", NotifyEvent::Escalated, &g).is_empty());
    }

    #[test]
    fn warnings_name_what_the_app_was_not_given() {
        let p = policy();
        let mut dir = Directory { mail: true, ..Directory::default() };
        dir.slack.insert(("acme".into(), "deploys".into()));
        dir.mail_domains.insert("acme".into(), vec!["example.com".into()]);
        let w: Vec<String> = warnings(&p, "acme", &dir).iter().map(|w| w.to_string()).collect();
        insta::assert_snapshot!(w.join("\n"));
        // Another account has none of acme's channels.
        let other = warnings(&p, "globex", &dir);
        assert!(other.iter().any(|w| w.message.contains("`deploys` is not configured for `globex`")), "{other:?}");
        assert!(dir.mail_allowed("acme", "a@mail.example.com") && !dir.mail_allowed("acme", "a@example.com.evil.org"));
        assert!(!dir.mail_allowed("globex", "a@example.com"));
    }

    #[test]
    fn user_text_never_becomes_a_mention_or_a_link_in_slack() {
        let n = Notice {
            repo: "acme/app".into(),
            title: "Deployment request #5: <!channel> → production is deployed".into(),
            summary: "by <@U123|boss> & <https://evil.example|click>\nline two".into(),
            fields: vec![("Service".into(), "<!here>".into())],
            link: NoticeLink { issue: Some(5), ..NoticeLink::default() },
            cause: "x".into(),
            request: None,
        };
        let (subject, text, slack) = render(NotifyEvent::Deployed, &n);
        assert!(!subject.contains('\n') && subject.starts_with("[acme/app] "), "{subject}");
        // Slack reads `<…>` (links, mentions) in mrkdwn text and the fallback, never in
        // plain_text: there, only the App's own link may open one.
        let mut mrkdwn = vec![slack["text"].as_str().unwrap().to_string()];
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if m.get("type").and_then(Value::as_str) == Some("mrkdwn") {
                        out.push(m["text"].as_str().unwrap_or_default().to_string());
                    }
                    m.values().for_each(|x| walk(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                _ => {}
            }
        }
        walk(&slack["blocks"], &mut mrkdwn);
        assert!(mrkdwn.len() >= 4, "{mrkdwn:?}");
        for m in &mrkdwn {
            let rest = m.replace(&format!("<{LINK}|"), "");
            assert!(!rest.contains('<'), "user text opens a link or mention in Slack: {m}");
        }
        let json = slack.to_string();
        assert!(json.contains("&lt;!here&gt;") && json.contains("&lt;!channel&gt;") && json.contains(LINK), "{json}");
        assert!(text.contains("<!channel>"), "the e-mail is plain text: {text}");
    }

    #[test]
    fn notification_texts() {
        let r = RequestNotice {
            repo: "acme/app",
            repository_id: 7,
            issue: 5,
            service: Some("api"),
            environment: Some("production"),
        };
        let sha = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
        let d = |state: &'static str, rollback: bool, by: Option<&'static str>| DeploymentNotice {
            key: "deployment-900".into(),
            sha,
            environment: "production",
            state,
            rollback,
            by,
            took_ms: Some(252_000),
            log_url: Some("https://github.com/acme/app/actions/runs/7"),
        };
        let i = IncidentNotice {
            repo: "acme/app",
            title: "🔴 CI failing: build on main",
            issue: None,
            marker: "ci-incident-1-main-1",
            url: None,
        };
        let cases = [
            (NotifyEvent::GateOpened, r.gate_opened(&["alice".into(), "bob".into()], 2, &[sha.into()])),
            (
                NotifyEvent::ApprovalsStale,
                r.approvals_stale(&[("alice".into(), "given for aaaaaaa, the head is now bbbbbbb".into())], 2, &[]),
            ),
            (NotifyEvent::Deploying, r.deployment(NotifyEvent::Deploying, &d("in_progress", false, None))),
            (NotifyEvent::Deployed, r.deployment(NotifyEvent::Deployed, &d("success", false, None))),
            (NotifyEvent::DeployFailed, r.deployment(NotifyEvent::DeployFailed, &d("failure", false, None))),
            (NotifyEvent::Rollback, r.deployment(NotifyEvent::Rollback, &d("requested", true, Some("alice")))),
            (NotifyEvent::Rollback, r.deployment(NotifyEvent::Rollback, &d("success", true, None))),
            (
                NotifyEvent::IncidentOpened,
                i.opened(
                    "build",
                    "main",
                    "https://github.com/acme/app/actions/runs/30",
                    &["test".into()],
                    "2026-11-29 11:31 UTC",
                ),
            ),
            (
                NotifyEvent::Escalated,
                IncidentNotice { issue: Some(42), ..i }.escalated("2026-11-29 11:31 UTC", "@alice @acme/sre"),
            ),
            (NotifyEvent::Recovered, IncidentNotice { issue: Some(42), ..i }.recovered("a passing run", 3_723_000)),
            (
                NotifyEvent::SecurityAlert,
                IncidentNotice {
                    title: "🛡️ Security alert: critical dependabot alert #3",
                    url: Some("https://github.com/acme/app/security/dependabot/3"),
                    ..i
                }
                .security_alert("dependabot", "critical", "a vulnerable dependency", Some("pm")),
            ),
        ];
        let mut out = String::new();
        for (event, notice) in &cases {
            let (subject, text, slack) = render(*event, notice);
            out.push_str(&format!(
                "=== {event} (cause {})\nSubject: {subject}\n\n{text}\n--- slack\n{}\n\n",
                notice.cause,
                serde_json::to_string_pretty(&slack).unwrap()
            ));
        }
        insta::assert_snapshot!(out);
    }
}

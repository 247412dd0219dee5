//! The change request in a `DEPLOYMENT_REQUEST` issue body (SPEC §3.1).
//!
//! [`parse`] reads the fields of the change-request template out of whatever layout the requester
//! used, and mixtures of them:
//!
//! * the seed's plain blocks: `CHANGE REQUEST:` / `- Service/component: api` / `IMPLEMENTATION:`
//!   with numbered items `1. Code changes https://…` / `TESTING:` with `- [x] …`;
//! * markdown headings, `## Service` followed by the answer (GitHub renders an issue form as
//!   `### Label` + answer, `_No response_` for an empty one);
//! * bold labels, `**Environment:** production` or `**Environment**: production`;
//! * plain labels, `Environment: production` or `* Environment - production`;
//! * two-column tables, `| Environment | production |`.
//!
//! It is forgiving about markdown and exact about meaning: a template placeholder left in
//! (`[why needed]`) is no answer, a rollback time it cannot read is not guessed, and headings or
//! labels it cannot map to a field are named in [`ChangeRequest::unreadable`]. It never fails and
//! never panics. [`ChangeRequest::problems`] then judges the result against the policy.
//!
//! Pure: no I/O, no async.

use std::fmt;

use serde::Serialize;

/// The change request read from an issue body. Every field is what the requester wrote (trimmed,
/// HTML comments removed), except `environment` (normalised: lower case, `prod` → `production`,
/// …), `rollback_minutes` (parsed from `rollback_time`), `pull_requests` and `commit`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ChangeRequest {
    pub service: Option<String>,
    pub environment: Option<String>,
    pub reason: Option<String>,
    pub downtime: Option<String>,
    pub rollback_time: Option<String>,
    /// Parsed from `rollback_time`: `"<5 min"`, `"3 minutes"`, `"90s"`, `"2m"`, `"1 hour"`,
    /// `"under 5 minutes"`, `"30 sec"`, `"2-3 min"` (the upper bound), `"1h 30m"`. `None` when it
    /// cannot be read as an upper bound (`"5"`, `"soon"`, `"> 5 min"`, two separate durations).
    pub rollback_minutes: Option<f64>,
    pub dependencies: Option<String>,
    pub data_migration: Option<String>,
    /// In the order written, without duplicates.
    pub pull_requests: Vec<PrRef>,
    /// A 7–40 hex SHA (lower case), from the commit field or a commit URL in the PR field.
    pub commit: Option<String>,
    pub infrastructure_changes: Option<String>,
    pub database_migration: Option<String>,
    pub deployment_steps: Option<String>,
    pub verification: Option<String>,
    pub rollback_plan: Option<String>,
    pub testing: Vec<ChecklistItem>,
    pub documentation: Option<String>,
    /// Headings and labels found but not mapped to a field, by their text; also the labels of
    /// fields whose value could not be read (a commit that is not a SHA, a rollback time that is
    /// not a duration, a PR field with no PR reference in it).
    pub unreadable: Vec<String>,
}

/// A pull request named in the request: `#12`, or qualified by repository (`owner/repo#12` or a
/// URL `https://github.com/owner/repo/pull/12`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum PrRef {
    Number(i64),
    Url { owner: String, repo: String, number: i64 },
}

impl fmt::Display for PrRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrRef::Number(n) => write!(f, "#{n}"),
            PrRef::Url { owner, repo, number } => write!(f, "{owner}/{repo}#{number}"),
        }
    }
}

/// One item of the testing checklist (`- [x] All tests passing in CI`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChecklistItem {
    pub checked: bool,
    pub text: String,
}

/// Something missing or invalid in a request, by field (`"service"`, `"environment"`,
/// `"reason"`, `"pull_requests"`, `"rollback_plan"`, `"rollback_time"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub field: &'static str,
    pub message: String,
}

impl Problem {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Problem { field, message: message.into() }
    }
}

// ---------------------------------------------------------------------------------------------
// Judging a parsed request

impl ChangeRequest {
    /// A digest of the request's content as approvers read it: the environment (the policy's
    /// name for it), service, reason, impact, linked PRs and commit, infrastructure and migration,
    /// steps, verification, rollback plan and documentation. Any change makes approvals stale
    /// (SPEC §3.3); white space inside a field does not count, nor do ticks in the testing list.
    pub fn fingerprint(&self, environment: Option<&str>) -> String {
        use sha2::{Digest, Sha256};
        let norm = |f: &Option<String>| f.as_deref().map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "));
        let content = serde_json::json!({
            "environment": environment,
            "service": norm(&self.service),
            "reason": norm(&self.reason),
            "downtime": norm(&self.downtime),
            "rollback_time": norm(&self.rollback_time),
            "dependencies": norm(&self.dependencies),
            "data_migration": norm(&self.data_migration),
            "pull_requests": self.pull_requests.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "commit": self.commit,
            "infrastructure_changes": norm(&self.infrastructure_changes),
            "database_migration": norm(&self.database_migration),
            "deployment_steps": norm(&self.deployment_steps),
            "verification": norm(&self.verification),
            "rollback_plan": norm(&self.rollback_plan),
            "documentation": norm(&self.documentation),
        });
        format!("v2:{}", hex::encode(Sha256::digest(content.to_string().as_bytes())))
    }

    /// Everything that is missing or invalid, by field name, given the environments the policy
    /// defines and the rollback limit for the chosen environment (`None` = no limit; it is called
    /// with the policy's own spelling of the environment). Does NOT check that PRs exist (the
    /// caller asks GitHub), nor that they are in this repository (see [`Self::pr_problems`]).
    pub fn problems(
        &self,
        known_environments: &[&str],
        max_rollback_minutes: impl Fn(&str) -> Option<u32>,
    ) -> Vec<Problem> {
        let mut out = Vec::new();
        let defined = if known_environments.is_empty() {
            "none".to_string()
        } else {
            known_environments.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ")
        };

        if !has_answer(&self.service) {
            out.push(Problem::new("service", "Service/component is missing: name the service or component to deploy"));
        }

        let env_key = self.environment_key(known_environments);
        match (&self.environment, env_key) {
            (None, _) => {
                out.push(Problem::new("environment", format!("Environment is missing; the policy defines: {defined}")))
            }
            (Some(env), None) if env.contains([',', '/', '\n']) || env.contains(" and ") => out.push(Problem::new(
                "environment",
                format!("give one environment, not `{env}`; the policy defines: {defined}"),
            )),
            (Some(env), None) => out.push(Problem::new(
                "environment",
                format!("`{env}` is not an environment the policy defines (defined: {defined})"),
            )),
            (Some(_), Some(_)) => {}
        }

        if !has_answer(&self.reason) {
            out.push(Problem::new("reason", "Reason is missing: say why the change is needed"));
        }

        if self.pull_requests.is_empty() && self.commit.is_none() {
            out.push(Problem::new(
                "pull_requests",
                "at least one pull request is required (`#12`, `owner/repo#12` or a pull request URL), \
                 or an explicit commit SHA",
            ));
        }

        match &self.rollback_plan {
            None => out.push(Problem::new("rollback_plan", "a rollback plan is required: say how to undo this change")),
            Some(plan) if is_none_answer(plan) => out.push(Problem::new(
                "rollback_plan",
                format!("a rollback plan is required: `{}` is not a plan", plan.trim()),
            )),
            Some(_) => {}
        }

        // The rollback time is checked against the chosen environment's limit; without a valid
        // environment there is no limit to check (the environment problem is already listed).
        if let Some(key) = env_key
            && let Some(limit) = max_rollback_minutes(key)
        {
            match (&self.rollback_time, self.rollback_minutes) {
                (None, _) => out.push(Problem::new(
                    "rollback_time",
                    format!("Rollback time is missing; `{key}` allows at most {limit} minutes"),
                )),
                (Some(text), None) => out.push(Problem::new(
                    "rollback_time",
                    format!(
                        "cannot read rollback time `{text}` as a duration (write e.g. `3 minutes` or `< 5 min`); \
                         `{key}` allows at most {limit} minutes"
                    ),
                )),
                (Some(text), Some(minutes)) if minutes > f64::from(limit) => out.push(Problem::new(
                    "rollback_time",
                    format!(
                        "rollback time `{text}` ({} min) is over the {limit}-minute limit for `{key}`",
                        format_minutes(minutes)
                    ),
                )),
                (Some(_), Some(_)) => {}
            }
        }
        out
    }

    /// The policy's spelling of the requested environment, if the policy defines it: compared
    /// case-insensitively and through the aliases (`prod` = `production`, …), so a policy that
    /// calls it `prod` matches a request that says `production`.
    pub fn environment_key<'a>(&self, known_environments: &[&'a str]) -> Option<&'a str> {
        let env = self.environment.as_deref()?;
        let exact = known_environments.iter().copied().find(|k| k.trim().to_lowercase() == env);
        exact.or_else(|| known_environments.iter().copied().find(|k| normalize_environment(k) == env))
    }

    /// Normalised PR numbers for `repo` ("owner/name"): numbers, and URLs (or `owner/repo#N`) into
    /// the same repository, compared case-insensitively; in order, without duplicates. References
    /// into another repository are left out: [`Self::pr_problems`] names them.
    pub fn pr_numbers(&self, repo: &str) -> Vec<i64> {
        let mut out = Vec::new();
        for pr in &self.pull_requests {
            let number = match pr {
                PrRef::Number(n) => Some(*n),
                PrRef::Url { owner, repo: name, number } => same_repo(repo, owner, name).then_some(*number),
            };
            if let Some(n) = number
                && !out.contains(&n)
            {
                out.push(n);
            }
        }
        out
    }

    /// The `pull_requests` problems that need the repository to judge: each reference into another
    /// repository, and, when every reference is foreign and no commit is given, that nothing is
    /// left to deploy.
    pub fn pr_problems(&self, repo: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        for pr in &self.pull_requests {
            if let PrRef::Url { owner, repo: name, .. } = pr
                && !same_repo(repo, owner, name)
            {
                out.push(Problem::new(
                    "pull_requests",
                    format!("{pr} is in another repository; link pull requests of {repo}"),
                ));
            }
        }
        if !self.pull_requests.is_empty() && self.pr_numbers(repo).is_empty() && self.commit.is_none() {
            out.push(Problem::new("pull_requests", format!("no pull request of {repo} is named")));
        }
        out
    }
}

fn same_repo(repo: &str, owner: &str, name: &str) -> bool {
    match repo.trim().split_once('/') {
        Some((o, n)) => o.eq_ignore_ascii_case(owner) && n.eq_ignore_ascii_case(name),
        None => false,
    }
}

fn format_minutes(minutes: f64) -> String {
    if minutes.fract() == 0.0 { format!("{minutes:.0}") } else { format!("{minutes:.1}") }
}

/// Whether an answer is given: present and not a "none" answer.
fn has_answer(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !is_none_answer(v))
}

#[rustfmt::skip]
const NONE_ANSWERS: &[&str] = &[
    "", "none", "n/a", "na", "n.a", "-", "--", "—", "–", "nothing", "no", "nil", "null", "tbd", "todo",
    "to do", "?", "no response", "not applicable", "unknown",
];

/// `none`, `N/A`, `-`, `TBD`, …: a valid answer for downtime, dependencies or data migration, but
/// no answer for a required field (a rollback plan of `N/A` is not a plan).
fn is_none_answer(value: &str) -> bool {
    let v = value.trim().trim_matches(|c: char| c.is_whitespace() || matches!(c, '.' | '!' | '_' | '*' | '`'));
    let v = v.to_lowercase();
    NONE_ANSWERS.contains(&v.as_str())
}

/// Normalises an environment name as a request or a command gives it: trimmed, markdown and
/// decoration stripped, lower case, `prod` → `production`, `stg`/`stage` → `staging`,
/// `dev` → `development`.
pub fn normalize_environment(raw: &str) -> String {
    let cleaned = clean_inline(raw);
    let cleaned = cleaned.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
    match cleaned.as_str() {
        "prod" | "production" => "production".to_string(),
        "stg" | "stage" | "staging" => "staging".to_string(),
        "dev" | "development" => "development".to_string(),
        _ => cleaned,
    }
}

// ---------------------------------------------------------------------------------------------
// Fields and their labels

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Service,
    Environment,
    Reason,
    Downtime,
    RollbackTime,
    Dependencies,
    DataMigration,
    PullRequests,
    Commit,
    InfrastructureChanges,
    DatabaseMigration,
    DeploymentSteps,
    Verification,
    RollbackPlan,
    Testing,
    Documentation,
}

const FIELD_COUNT: usize = 16;

impl Field {
    fn index(self) -> usize {
        self as usize
    }

    /// The field's name in [`ChangeRequest`] and its `id` in the issue form.
    fn id(self) -> &'static str {
        match self {
            Field::Service => "service",
            Field::Environment => "environment",
            Field::Reason => "reason",
            Field::Downtime => "downtime",
            Field::RollbackTime => "rollback_time",
            Field::Dependencies => "dependencies",
            Field::DataMigration => "data_migration",
            Field::PullRequests => "pull_requests",
            Field::Commit => "commit",
            Field::InfrastructureChanges => "infrastructure_changes",
            Field::DatabaseMigration => "database_migration",
            Field::DeploymentSteps => "deployment_steps",
            Field::Verification => "verification",
            Field::RollbackPlan => "rollback_plan",
            Field::Testing => "testing",
            Field::Documentation => "documentation",
        }
    }

    /// Fields whose answer is one line by nature: under their heading, a following
    /// `Label: value` line starts another field instead of continuing the answer.
    fn is_single_line(self) -> bool {
        matches!(self, Field::Service | Field::Environment | Field::RollbackTime | Field::Commit)
    }

    /// The default label, for `unreadable` when the requester's own spelling is not known.
    fn default_label(self) -> &'static str {
        match self {
            Field::PullRequests => "Pull request(s)",
            Field::Commit => "Commit",
            Field::RollbackTime => "Rollback time",
            _ => self.id(),
        }
    }
}

/// Label synonyms, normalised (see [`normalize_label`]).
const FIELD_LABELS: &[(&str, Field)] = &[
    ("service", Field::Service),
    ("component", Field::Service),
    ("service/component", Field::Service),
    ("component/service", Field::Service),
    ("service or component", Field::Service),
    ("service name", Field::Service),
    ("environment", Field::Environment),
    ("env", Field::Environment),
    ("target environment", Field::Environment),
    ("target env", Field::Environment),
    ("reason", Field::Reason),
    ("why", Field::Reason),
    ("motivation", Field::Reason),
    ("reason for change", Field::Reason),
    ("reason for the change", Field::Reason),
    ("downtime", Field::Downtime),
    ("expected downtime", Field::Downtime),
    ("rollback time", Field::RollbackTime),
    ("roll back time", Field::RollbackTime),
    ("time to roll back", Field::RollbackTime),
    ("time to rollback", Field::RollbackTime),
    ("rollback duration", Field::RollbackTime),
    ("dependencies", Field::Dependencies),
    ("dependency", Field::Dependencies),
    ("data migration", Field::DataMigration),
    ("data migrations", Field::DataMigration),
    ("pull request", Field::PullRequests),
    ("pull requests", Field::PullRequests),
    ("pull request(s)", Field::PullRequests),
    ("pull request url", Field::PullRequests),
    ("pull request urls", Field::PullRequests),
    ("pull request url(s)", Field::PullRequests),
    ("pr", Field::PullRequests),
    ("prs", Field::PullRequests),
    ("pr(s)", Field::PullRequests),
    ("code changes", Field::PullRequests),
    ("code change", Field::PullRequests),
    ("commit", Field::Commit),
    ("commit sha", Field::Commit),
    ("commit hash", Field::Commit),
    ("sha", Field::Commit),
    ("infrastructure changes", Field::InfrastructureChanges),
    ("infrastructure change", Field::InfrastructureChanges),
    ("infrastructure", Field::InfrastructureChanges),
    ("infra changes", Field::InfrastructureChanges),
    ("database migration", Field::DatabaseMigration),
    ("database migrations", Field::DatabaseMigration),
    ("db migration", Field::DatabaseMigration),
    ("db migrations", Field::DatabaseMigration),
    ("deployment steps", Field::DeploymentSteps),
    ("deploy steps", Field::DeploymentSteps),
    ("steps", Field::DeploymentSteps),
    ("verification", Field::Verification),
    ("verification steps", Field::Verification),
    ("how to verify", Field::Verification),
    ("rollback plan", Field::RollbackPlan),
    ("rollback", Field::RollbackPlan),
    ("roll back plan", Field::RollbackPlan),
    ("roll back", Field::RollbackPlan),
    ("rollback procedure", Field::RollbackPlan),
    ("testing", Field::Testing),
    ("tests", Field::Testing),
    ("testing checklist", Field::Testing),
    ("test checklist", Field::Testing),
    ("documentation", Field::Documentation),
    ("docs", Field::Documentation),
];

/// Section titles of the seed template that group fields but are not fields: known, so not
/// "unreadable", and what follows them is read as labels.
const GROUP_LABELS: &[&str] =
    &["change request", "impact analysis", "implementation", "approval", "approvals", "deployment request"];

/// Table header cells, neither fields nor unreadable.
const TABLE_HEADERS: &[&str] = &["field", "value", "item", "key", "name", "question", "answer", "details"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Field(Field),
    Group,
    Unknown,
}

/// Normalises a label for lookup: emphasis and code marks removed, `-`/`_` as spaces, lower case,
/// decoration (emoji, `:`, `?`, a required-marker `*`) trimmed at both ends, whitespace collapsed,
/// no spaces around `/`.
fn normalize_label(label: &str) -> String {
    let mut s = String::with_capacity(label.len());
    for c in label.chars() {
        match c {
            '*' | '`' => {}
            '-' | '_' => s.push(' '),
            c => s.extend(c.to_lowercase()),
        }
    }
    let s = s.trim_matches(|c: char| !c.is_alphanumeric() && c != ')');
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.replace(" /", "/").replace("/ ", "/")
}

/// What a label names: a field, a group, or nothing known. A trailing parenthetical is ignored
/// when the whole is not known (`Rollback time (minutes)`, `Environment (dev/staging/prod)`).
fn lookup(label: &str) -> Kind {
    let norm = normalize_label(label);
    let find = |n: &str| -> Option<Kind> {
        if let Some((_, field)) = FIELD_LABELS.iter().find(|(l, _)| *l == n) {
            return Some(Kind::Field(*field));
        }
        GROUP_LABELS.contains(&n).then_some(Kind::Group)
    };
    if let Some(kind) = find(&norm) {
        return kind;
    }
    if norm.ends_with(')')
        && let Some(open) = norm.rfind('(')
        && let Some(kind) = find(norm[..open].trim())
    {
        return kind;
    }
    Kind::Unknown
}

/// Whether an unknown `X: y` line looks like a field label rather than a sentence with a colon.
fn looks_like_label(label: &str) -> bool {
    let words = label.split_whitespace().count();
    (1..=3).contains(&words)
        && label.chars().count() <= 30
        && label.chars().next().is_some_and(|c| c.is_alphabetic() || c == '*' || c == '_')
        && !label.contains("http")
}

// ---------------------------------------------------------------------------------------------
// Reading labels out of a line

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `**Label:** value`, `**Label**: value`, `**Label**`
    Bold,
    /// `Label: value`, `Label - value`
    Plain,
    /// `Code changes https://…` (a known label without a separator, in a numbered item)
    Bare,
}

#[derive(Debug, Clone, Copy)]
struct Found<'a> {
    kind: Kind,
    label: &'a str,
    value: &'a str,
    form: Form,
}

/// The label at the start of a line's body (list marker and indentation already removed), if any.
/// `allow_bare` permits a known label with no separator (the seed's numbered items).
fn read_label(body: &str, allow_bare: bool) -> Option<Found<'_>> {
    if let Some((label, value)) = bold_label(body) {
        return Some(Found { kind: lookup(label), label, value, form: Form::Bold });
    }
    let plain = plain_label(body).map(|(label, value)| Found { kind: lookup(label), label, value, form: Form::Plain });
    if plain.is_some_and(|f| f.kind != Kind::Unknown) {
        return plain;
    }
    if allow_bare && let Some(found) = bare_label(body) {
        return Some(found);
    }
    plain
}

/// `**Label:** value`, `**Label**: value`, `**Label** - value`, `**Label: value**`, `**Label**`,
/// also with `__`; single `*`/`_` emphasis only with a colon (`*Label:* value`).
fn bold_label(body: &str) -> Option<(&str, &str)> {
    for delim in ["**", "__", "*", "_"] {
        let Some(after_open) = body.strip_prefix(delim) else { continue };
        let Some(close) = after_open.find(delim) else { continue };
        let inner = after_open[..close].trim();
        let rest = after_open[close + delim.len()..].trim();
        if inner.is_empty() || inner.chars().count() > 60 {
            return None;
        }
        // `**Label: value**` or `**Label:** value`
        if let Some((label, inner_value)) = inner.split_once(':') {
            let label = label.trim();
            if label.is_empty() {
                return None;
            }
            let value = if inner_value.trim().is_empty() { rest } else { inner_value.trim() };
            return Some((label, value));
        }
        // `**Label**: value`, `**Label** - value`
        for sep in [":", "-", "–", "—"] {
            if let Some(value) = rest.strip_prefix(sep) {
                return Some((inner, value.trim()));
            }
        }
        let single = delim.len() == 1;
        if rest.is_empty() && !single {
            return Some((inner, ""));
        }
        // `**Environment** production`: only for a known label, else it is prose in bold.
        if !single && lookup(inner) != Kind::Unknown {
            return Some((inner, rest));
        }
        return None;
    }
    None
}

/// `Label: value`, `Label - value` (also `–`, `—`), `Label:value` for a known label. The label is
/// at most five words, so a sentence with a colon is not a label.
fn plain_label(body: &str) -> Option<(&str, &str)> {
    let (pos, sep_len) = find_separator(body)?;
    let label = body.get(..pos)?.trim();
    let value = body.get(pos + sep_len..)?.trim();
    if label.is_empty() || label.chars().count() > 40 || label.split_whitespace().count() > 5 || label.contains("://") {
        return None;
    }
    Some((label, value))
}

fn find_separator(body: &str) -> Option<(usize, usize)> {
    for (i, c) in body.char_indices() {
        match c {
            ':' => {
                let after = body.get(i + 1..).and_then(|s| s.chars().next());
                // `: ` or `:` at the end; `Environment:prod` only for a known label, so URLs
                // (`https://…`) and times (`10:30`) are not labels.
                if after.is_none_or(char::is_whitespace) || (i <= 60 && lookup(&body[..i]) != Kind::Unknown) {
                    return Some((i, 1));
                }
            }
            ' ' => {
                for sep in [" - ", " – ", " — "] {
                    if body[i..].starts_with(sep) {
                        return Some((i, sep.len()));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// A known label of up to four words at the start of the body, with no separator:
/// `Code changes https://github.com/o/r/pull/12`, `Rollback plan [if something goes wrong]`.
fn bare_label(body: &str) -> Option<Found<'_>> {
    let mut ends = Vec::new();
    let mut in_word = false;
    for (i, c) in body.char_indices() {
        if c.is_whitespace() {
            if in_word {
                ends.push(i);
                if ends.len() == 4 {
                    break;
                }
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    if in_word && ends.len() < 4 {
        ends.push(body.len());
    }
    for &end in ends.iter().rev() {
        let label = body.get(..end)?;
        if let Kind::Field(field) = lookup(label) {
            let value = body.get(end..)?.trim();
            let value = value.trim_start_matches([':', '-', '–', '—']).trim();
            return Some(Found { kind: Kind::Field(field), label, value, form: Form::Bare });
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Line structure

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Bullet,
    Numbered,
}

#[derive(Debug, Clone, Copy)]
struct TextLine<'a> {
    /// The line as it stands (HTML comments removed), kept for multi-line values.
    raw: &'a str,
    indent: usize,
    marker: Option<Marker>,
    /// `Some(checked)` for a task-list item `- [x] …`.
    checkbox: Option<bool>,
    /// The text after indentation, list marker and checkbox.
    body: &'a str,
}

/// Leading indentation in columns (a tab counts 4).
fn indent_of(line: &str) -> usize {
    let mut n = 0;
    for c in line.chars() {
        match c {
            ' ' => n += 1,
            '\t' => n += 4,
            _ => break,
        }
    }
    n
}

/// `-`, `*`, `+`, `•` bullets and `1.`/`1)` numbers; returns the marker and the rest.
fn split_marker(s: &str) -> (Option<Marker>, &str) {
    for bullet in ['-', '*', '+', '•'] {
        if let Some(rest) = s.strip_prefix(bullet)
            && (rest.is_empty() || rest.starts_with([' ', '\t']))
        {
            return (Some(Marker::Bullet), rest.trim_start());
        }
    }
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    if (1..=9).contains(&digits) {
        // ASCII digits: `digits` is also a byte offset.
        let rest = &s[digits..];
        if let Some(rest) = rest.strip_prefix('.').or_else(|| rest.strip_prefix(')'))
            && (rest.is_empty() || rest.starts_with([' ', '\t']))
        {
            return (Some(Marker::Numbered), rest.trim_start());
        }
    }
    (None, s)
}

/// `[ ]`, `[x]`, `[X]` at the start of a list item.
fn split_checkbox(s: &str) -> (Option<bool>, &str) {
    for (mark, checked) in [("[ ]", false), ("[x]", true), ("[X]", true)] {
        if let Some(rest) = s.strip_prefix(mark)
            && (rest.is_empty() || rest.starts_with(char::is_whitespace))
        {
            return (Some(checked), rest.trim_start());
        }
    }
    (None, s)
}

/// A thematic break: `---`, `***`, `___`, `- - -`.
fn is_rule(trimmed: &str) -> bool {
    let mut chars = trimmed.chars().filter(|c| !c.is_whitespace());
    let Some(first) = chars.next() else { return false };
    matches!(first, '-' | '*' | '_')
        && trimmed.chars().filter(|c| !c.is_whitespace()).count() >= 3
        && chars.all(|c| c == first)
}

/// The text of an ATX heading (`## Text ##`), if the line is one.
fn heading_text(trimmed: &str) -> Option<&str> {
    let hashes = trimmed.chars().take_while(|&c| c == '#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &trimmed[hashes..]; // '#' is ASCII
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None; // `#12` is a PR reference, not a heading
    }
    let text = rest.trim();
    // An optional closing sequence of '#'s, preceded by a space.
    let without = text.trim_end_matches('#');
    if without.len() != text.len() && (without.is_empty() || without.ends_with([' ', '\t'])) {
        return Some(without.trim_end());
    }
    Some(text)
}

struct Fence {
    ch: char,
    len: usize,
}

fn opening_fence(line: &str) -> Option<Fence> {
    if indent_of(line) > 3 {
        return None;
    }
    let t = line.trim_start();
    let ch = t.chars().next()?;
    if ch != '`' && ch != '~' {
        return None;
    }
    let len = t.chars().take_while(|&c| c == ch).count();
    // Backtick fences cannot have backticks in their info string.
    if len < 3 || (ch == '`' && t[len..].contains('`')) {
        return None;
    }
    Some(Fence { ch, len })
}

fn closes_fence(line: &str, fence: &Fence) -> bool {
    let t = line.trim();
    !t.is_empty() && t.chars().all(|c| c == fence.ch) && t.chars().count() >= fence.len
}

/// Removes HTML comments, which may span lines (`in_comment` carries over). Returns the rest of
/// the line and whether a comment was removed.
fn strip_comments(line: &str, in_comment: &mut bool) -> (String, bool) {
    let mut out = String::new();
    let mut rest = line;
    let mut had = false;
    loop {
        if *in_comment {
            had = true;
            match rest.find("-->") {
                Some(i) => {
                    rest = &rest[i + 3..];
                    *in_comment = false;
                }
                None => break,
            }
        } else {
            match rest.find("<!--") {
                Some(i) => {
                    out.push_str(&rest[..i]);
                    rest = &rest[i + 4..];
                    *in_comment = true;
                }
                None => {
                    out.push_str(rest);
                    break;
                }
            }
        }
    }
    (out, had)
}

// ---------------------------------------------------------------------------------------------
// The reader: one pass over the lines, collecting each field's lines

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A heading (or a line that is only a bold label): the answer runs to the next heading.
    Heading,
    /// A `Label: value` line, maybe a list item: lines indented under it continue it.
    Label,
}

#[derive(Debug, Clone, Copy)]
struct Section {
    field: Field,
    origin: Origin,
    indent: usize,
    list_item: bool,
    /// Started with no value on the label line (`TESTING:`): the following lines are the answer.
    block: bool,
    saw_blank: bool,
    /// Index in the field's lines where this section's continuation lines start (for dedent).
    first_continuation: usize,
}

enum Action {
    Content,
    Start(Field),
    Group,
    Unreadable,
    End,
    Ignore,
}

struct Reader {
    lines: [Vec<String>; FIELD_COUNT],
    /// The label as the requester spelled it, first time seen.
    labels: [Option<String>; FIELD_COUNT],
    unreadable: Vec<String>,
    current: Option<Section>,
    /// Inside a template group (`IMPACT ANALYSIS:`), where unknown `X: y` items are labels.
    in_group: bool,
}

/// Reads a change request from an issue body. Never fails: what it cannot read is left `None` and
/// named in `unreadable`.
pub fn parse(body: &str) -> ChangeRequest {
    let mut reader = Reader {
        lines: std::array::from_fn(|_| Vec::new()),
        labels: std::array::from_fn(|_| None),
        unreadable: Vec::new(),
        current: None,
        in_group: false,
    };
    let mut fence: Option<Fence> = None;
    let mut in_comment = false;
    for raw in body.lines() {
        // Inside a fenced code block everything is content (a `# comment` is not a heading).
        if let Some(open) = &fence {
            if closes_fence(raw, open) {
                fence = None;
            }
            reader.push(raw);
            continue;
        }
        let (line, had_comment) = strip_comments(raw, &mut in_comment);
        if had_comment && line.trim().is_empty() {
            continue; // a template's instructions, not a blank line of the answer
        }
        if let Some(open) = opening_fence(&line) {
            fence = Some(open);
            reader.push(&line);
            continue;
        }
        reader.line(&line);
    }
    reader.close();
    reader.finish()
}

impl Reader {
    fn line(&mut self, line: &str) {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            if let Some(section) = &mut self.current {
                section.saw_blank = true;
                self.lines[section.field.index()].push(String::new());
            }
            return;
        }
        if is_rule(trimmed) {
            return;
        }
        let indent = indent_of(line);
        if indent <= 3
            && let Some(text) = heading_text(trimmed)
        {
            self.heading(text);
            return;
        }
        if trimmed.starts_with('|') {
            self.table_row(line, trimmed);
            return;
        }
        let (marker, rest) = split_marker(trimmed);
        let (checkbox, body) = if marker.is_some() { split_checkbox(rest) } else { (None, rest) };
        self.text(TextLine { raw: line, indent, marker, checkbox, body });
    }

    fn heading(&mut self, text: &str) {
        self.close();
        let text = text.trim();
        if text.is_empty() {
            self.in_group = false;
            return;
        }
        // `## Environment: production` carries its value; `### Service/component` does not.
        let found = read_label(text, false).filter(|f| f.kind != Kind::Unknown);
        let (kind, label, value) = match found {
            Some(f) => (f.kind, f.label, f.value),
            None => (lookup(text), text, ""),
        };
        match kind {
            Kind::Field(field) => self.start(field, label, value, Origin::Heading, 0, false),
            Kind::Group => self.in_group = true,
            Kind::Unknown => {
                self.in_group = false;
                self.add_unreadable(text);
            }
        }
    }

    fn table_row(&mut self, raw: &str, trimmed: &str) {
        // A table inside an answer is part of it, unless a blank line ended a one-line answer.
        if let Some(section) = self.current {
            if section.origin == Origin::Label && section.saw_blank && !section.block {
                self.close();
            } else {
                self.push(raw);
                return;
            }
        }
        let inner = trimmed.strip_prefix('|').unwrap_or(trimmed);
        let inner = inner.strip_suffix('|').unwrap_or(inner);
        let cells: Vec<&str> = inner.split('|').map(str::trim).collect();
        let first = cells.first().copied().unwrap_or("");
        if cells.len() < 2 || first.chars().all(|c| matches!(c, '-' | ':' | ' ')) {
            return; // not a label row, or the header separator
        }
        match lookup(first) {
            Kind::Field(field) => {
                let value = cells[1..].join(" | ");
                self.start(field, first, value.trim_end_matches([' ', '|']), Origin::Label, 0, false);
                self.close(); // a row is complete in itself
            }
            Kind::Group => self.in_group = true,
            Kind::Unknown => {
                let header = TABLE_HEADERS.contains(&normalize_label(first).as_str());
                if !header && looks_like_label(first) {
                    self.add_unreadable(first);
                }
            }
        }
    }

    fn text(&mut self, t: TextLine<'_>) {
        // Lines indented under a list item or label line continue it, whatever they say.
        if let Some(section) = &self.current
            && section.origin == Origin::Label
            && t.indent > section.indent
        {
            self.push(t.raw);
            return;
        }
        // Task-list items are checklist content, never labels.
        if t.checkbox.is_some() {
            self.push(t.raw);
            return;
        }
        let numbered = t.marker == Some(Marker::Numbered);
        let action;
        let found;
        match self.current {
            None => {
                found = read_label(t.body, numbered);
                action = match found {
                    Some(Found { kind: Kind::Field(f), .. }) => Action::Start(f),
                    Some(Found { kind: Kind::Group, .. }) => Action::Group,
                    Some(Found { kind: Kind::Unknown, form: Form::Bold, .. }) => Action::Unreadable,
                    Some(Found { kind: Kind::Unknown, label, .. })
                        if (t.marker.is_some() || self.in_group) && looks_like_label(label) =>
                    {
                        Action::Unreadable
                    }
                    _ => Action::Ignore,
                };
            }
            Some(section) if section.origin == Origin::Heading => {
                // Under a heading only another heading or a bold label ends the answer; plain
                // `Label: value` lines are part of a prose answer ("Verification: …" in a
                // rollback plan), except after a one-line field.
                found = read_label(t.body, false);
                action = match found {
                    Some(Found { kind: Kind::Field(f), form: Form::Bold, .. }) => Action::Start(f),
                    Some(Found { kind: Kind::Group, form: Form::Bold, .. }) => Action::Group,
                    Some(Found { kind: Kind::Field(f), .. }) if section.field.is_single_line() => Action::Start(f),
                    Some(Found { kind: Kind::Group, .. }) if section.field.is_single_line() => Action::Group,
                    _ => Action::Content,
                };
            }
            Some(section) => {
                // After a label line. A sibling is a line at the same level of the same list
                // (or of the same run of unmarked `Label: value` lines).
                let sibling = t.marker.is_some() == section.list_item;
                found = read_label(t.body, numbered && section.list_item);
                action = match found {
                    Some(Found { kind: Kind::Field(f), .. }) => Action::Start(f),
                    Some(Found { kind: Kind::Group, .. }) => Action::Group,
                    Some(Found { kind: Kind::Unknown, form: Form::Bold, .. }) if sibling => Action::Unreadable,
                    Some(Found { kind: Kind::Unknown, label, .. })
                        if sibling && !section.block && looks_like_label(label) =>
                    {
                        Action::Unreadable
                    }
                    // A one-line answer ends at a blank line followed by unindented text.
                    _ if section.saw_blank && !section.block => Action::End,
                    _ => Action::Content,
                };
            }
        }
        match (action, found) {
            (Action::Content, _) => self.push(t.raw),
            (Action::Start(field), Some(f)) => {
                // A bold-only line (`**Service**`) that is not a list item acts as a heading.
                if f.form == Form::Bold && f.value.is_empty() && t.marker.is_none() {
                    self.start(field, f.label, "", Origin::Heading, 0, false);
                } else {
                    self.start(field, f.label, f.value, Origin::Label, t.indent, t.marker.is_some());
                }
            }
            (Action::Group, _) => {
                self.close();
                self.in_group = true;
            }
            (Action::Unreadable, Some(f)) => {
                self.close();
                self.add_unreadable(f.label);
            }
            (Action::End, _) => {
                // The line is not part of the answer it follows: read it afresh.
                self.close();
                self.text(t);
            }
            _ => {}
        }
    }

    fn start(&mut self, field: Field, label: &str, value: &str, origin: Origin, indent: usize, list_item: bool) {
        self.close();
        let label = clean_inline(label);
        let slot = &mut self.labels[field.index()];
        if slot.is_none() && !label.is_empty() {
            *slot = Some(truncate(&label, 80));
        }
        let lines = &mut self.lines[field.index()];
        if !lines.is_empty() {
            lines.push(String::new()); // the field is given again: keep both answers
        }
        let value = value.trim();
        if !value.is_empty() {
            lines.push(value.to_string());
        }
        let first_continuation = lines.len();
        self.current = Some(Section {
            field,
            origin,
            indent,
            list_item,
            block: value.is_empty(),
            saw_blank: false,
            first_continuation,
        });
    }

    /// A line of the current answer (ignored outside any field).
    fn push(&mut self, line: &str) {
        if let Some(section) = &self.current {
            self.lines[section.field.index()].push(line.trim_end().to_string());
        }
    }

    /// Ends the current section, removing the common indentation of its continuation lines.
    fn close(&mut self) {
        if let Some(section) = self.current.take()
            && let Some(lines) = self.lines[section.field.index()].get_mut(section.first_continuation..)
        {
            dedent(lines);
        }
    }

    fn add_unreadable(&mut self, label: &str) {
        let label = truncate(&clean_inline(label), 80);
        if !label.is_empty() && !self.unreadable.contains(&label) {
            self.unreadable.push(label);
        }
    }

    fn label(&self, field: Field) -> String {
        self.labels[field.index()].clone().unwrap_or_else(|| field.default_label().to_string())
    }

    /// The field's answer: `_No response_` lines dropped, blank lines at the ends trimmed and
    /// runs of blank lines collapsed; a bare template placeholder (`[why needed]`) is no answer.
    fn value(&self, field: Field) -> Option<String> {
        let mut out: Vec<&str> = Vec::new();
        for line in &self.lines[field.index()] {
            if line.trim().eq_ignore_ascii_case("_no response_") {
                continue;
            }
            if line.trim().is_empty() && out.last().is_none_or(|l| l.trim().is_empty()) {
                continue;
            }
            out.push(line);
        }
        while out.last().is_some_and(|l| l.trim().is_empty()) {
            out.pop();
        }
        let text = out.join("\n");
        let trimmed = text.trim();
        if trimmed.is_empty() || is_placeholder(trimmed) {
            return None;
        }
        Some(text)
    }

    /// A one-line answer: the lines joined with spaces, markdown emphasis stripped.
    fn single_line(&self, field: Field) -> Option<String> {
        let value = self.value(field)?;
        let joined = value.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
        let cleaned = clean_inline(&joined);
        (!cleaned.is_empty() && !is_placeholder(&cleaned)).then_some(cleaned)
    }

    fn finish(self) -> ChangeRequest {
        let mut cr = ChangeRequest {
            service: self.single_line(Field::Service),
            reason: self.value(Field::Reason),
            downtime: self.value(Field::Downtime),
            dependencies: self.value(Field::Dependencies),
            data_migration: self.value(Field::DataMigration),
            infrastructure_changes: self.value(Field::InfrastructureChanges),
            database_migration: self.value(Field::DatabaseMigration),
            deployment_steps: self.value(Field::DeploymentSteps),
            verification: self.value(Field::Verification),
            rollback_plan: self.value(Field::RollbackPlan),
            documentation: self.value(Field::Documentation),
            testing: checklist(&self.lines[Field::Testing.index()]),
            unreadable: self.unreadable.clone(),
            ..ChangeRequest::default()
        };

        // Environment: each line normalised; several different ones are kept, joined, so that
        // `problems` can say "give one environment" rather than silently pick one.
        if let Some(value) = self.value(Field::Environment) {
            let mut envs: Vec<String> = Vec::new();
            for line in value.lines() {
                let env = normalize_environment(line);
                if !env.is_empty() && !is_placeholder(line.trim()) && !envs.contains(&env) {
                    envs.push(env);
                }
            }
            if !envs.is_empty() {
                cr.environment = Some(envs.join(", "));
            }
        }

        if let Some(text) = self.single_line(Field::RollbackTime) {
            cr.rollback_minutes = parse_duration_minutes(&text);
            if cr.rollback_minutes.is_none() {
                cr.unreadable.push(self.label(Field::RollbackTime));
            }
            cr.rollback_time = Some(text);
        }

        let mut commit_from_prs = None;
        if let Some(text) = self.value(Field::PullRequests) {
            let (refs, commit) = find_pr_refs(&text);
            if refs.is_empty() && commit.is_none() && !is_none_answer(&text) {
                cr.unreadable.push(self.label(Field::PullRequests));
            }
            cr.pull_requests = refs;
            commit_from_prs = commit;
        }

        if let Some(text) = self.value(Field::Commit) {
            cr.commit = find_sha(&text);
            if cr.commit.is_none() && !is_none_answer(&text) {
                cr.unreadable.push(self.label(Field::Commit));
            }
        }
        if cr.commit.is_none() {
            cr.commit = commit_from_prs;
        }
        let mut seen = Vec::new();
        cr.unreadable.retain(|label| {
            let new = !seen.contains(label);
            seen.push(label.clone());
            new
        });
        cr
    }
}

/// Removes the common leading whitespace of the non-blank lines.
fn dedent(lines: &mut [String]) {
    let common = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.chars().take_while(|c| *c == ' ' || *c == '\t').count())
        .min()
        .unwrap_or(0);
    if common == 0 {
        return;
    }
    for line in lines.iter_mut() {
        let cut: usize = line.chars().take(common).take_while(|c| *c == ' ' || *c == '\t').map(char::len_utf8).sum();
        line.drain(..cut);
    }
}

/// A value that is nothing but a bracketed template placeholder: `[why needed]`,
/// `[dev/staging/prod]` (but not a checkbox, nor a link `[text](url)`).
fn is_placeholder(value: &str) -> bool {
    let v = value.trim();
    v.len() > 3
        && v.starts_with('[')
        && v.ends_with(']')
        && !v[1..v.len() - 1].contains(['[', ']'])
        && !matches!(v, "[ ]" | "[x]" | "[X]")
}

/// Strips surrounding emphasis, code marks and quotes: `**api**` → `api`, `` `prod` `` → `prod`.
fn clean_inline(s: &str) -> String {
    let mut v = s.trim();
    loop {
        let before = v;
        for pair in ["**", "__", "`", "*", "_", "\"", "'"] {
            if v.len() >= 2 * pair.len()
                && let Some(inner) = v.strip_prefix(pair).and_then(|r| r.strip_suffix(pair))
            {
                v = inner.trim();
            }
        }
        if v == before {
            return v.to_string();
        }
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Checklist items in the testing answer: `- [x] text`, `* [ ] text`, and the `☐`/`☑`/`✅`
/// symbols some people paste.
fn checklist(lines: &[String]) -> Vec<ChecklistItem> {
    let mut items = Vec::new();
    for line in lines {
        let (marker, rest) = split_marker(line.trim());
        if marker.is_some()
            && let (Some(checked), text) = split_checkbox(rest)
        {
            items.push(ChecklistItem { checked, text: text.trim().to_string() });
            continue;
        }
        for (symbol, checked) in [("☐", false), ("□", false), ("☑", true), ("✅", true), ("✔", true), ("✓", true)]
        {
            if let Some(text) = rest.strip_prefix(symbol) {
                items.push(ChecklistItem { checked, text: text.trim().to_string() });
                break;
            }
        }
    }
    items
}

// ---------------------------------------------------------------------------------------------
// Values: pull requests, commits, durations

/// PR references anywhere in a text: `#12`, `owner/repo#12`, `https://github.com/o/r/pull/12`
/// (also `…/pull/12/files`, `#discussion…`, any GitHub host); and a commit SHA from a commit URL.
fn find_pr_refs(text: &str) -> (Vec<PrRef>, Option<String>) {
    let mut refs: Vec<PrRef> = Vec::new();
    let mut commit = None;
    let tokens = text.split(|c: char| c.is_whitespace() || "()[]<>{},;\"'`|*".contains(c));
    for token in tokens {
        let token = token.trim_matches(|c: char| matches!(c, '.' | ':' | '!' | '?'));
        if token.is_empty() {
            continue;
        }
        let found = match url_ref(token, &mut commit) {
            Some(r) => Some(r),
            None if token.contains("://") => None,
            None => short_ref(token),
        };
        if let Some(r) = found
            && !refs.contains(&r)
        {
            refs.push(r);
        }
    }
    (refs, commit)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// `https://host/owner/repo/pull/12[/files][#…]`; a `…/commit/<sha>` URL sets `commit`.
fn url_ref(token: &str, commit: &mut Option<String>) -> Option<PrRef> {
    let rest = strip_prefix_ignore_case(token, "https://")
        .or_else(|| strip_prefix_ignore_case(token, "http://"))
        .or_else(|| strip_prefix_ignore_case(token, "www.github.com/").map(|_| token))
        .or_else(|| strip_prefix_ignore_case(token, "github.com/").map(|_| token))?;
    let (_host, path) = rest.split_once('/')?;
    let path = path.split(['?', '#']).next()?;
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let [owner, repo, kind, id, ..] = segments.as_slice() else { return None };
    if !valid_name(owner) || !valid_name(repo) {
        return None;
    }
    if kind.eq_ignore_ascii_case("pull") || kind.eq_ignore_ascii_case("pulls") {
        let number = parse_number(id)?;
        return Some(PrRef::Url { owner: owner.to_string(), repo: repo.to_string(), number });
    }
    if kind.eq_ignore_ascii_case("commit") && is_sha(id) && commit.is_none() {
        *commit = Some(id.to_ascii_lowercase());
    }
    None
}

/// `#12` or `owner/repo#12`.
fn short_ref(token: &str) -> Option<PrRef> {
    if let Some(number) = token.strip_prefix('#') {
        return parse_number(number).map(PrRef::Number);
    }
    let (left, number) = token.split_once('#')?;
    let number = parse_number(number)?;
    let (owner, repo) = left.split_once('/')?;
    (valid_name(owner) && valid_name(repo)).then(|| PrRef::Url {
        owner: owner.to_string(),
        repo: repo.to_string(),
        number,
    })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A positive PR number of at most 15 digits (no overflow).
fn parse_number(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 15 || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok().filter(|n| *n > 0)
}

fn is_sha(s: &str) -> bool {
    (7..=40).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The first 7–40 hex token of a text, lower case: `abc1234`, `` `e83c516…` ``, or the SHA in a
/// commit URL.
fn find_sha(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric()).find(|t| is_sha(t)).map(str::to_ascii_lowercase)
}

fn unit_minutes(word: &str) -> Option<f64> {
    Some(match word {
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0 / 60.0,
        "m" | "mn" | "min" | "mins" | "minute" | "minutes" => 1.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 60.0,
        "d" | "day" | "days" => 24.0 * 60.0,
        _ => return None,
    })
}

fn number_word(word: &str) -> Option<f64> {
    let n = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
        .iter()
        .position(|w| *w == word)?;
    Some(n as f64)
}

/// Words that make a duration a lower bound, which cannot be checked against a limit.
const LOWER_BOUND_WORDS: &[&str] = &["more", "over", "least", "above", "longer", "minimum", "exceeds", "plus"];

/// Words that may sit inside a duration without changing it.
#[rustfmt::skip]
const FILLER_WORDS: &[&str] = &[
    "under", "less", "than", "within", "up", "to", "at", "most", "about", "around", "approx", "approximately",
    "roughly", "max", "maximum", "below", "ca", "circa", "tops", "just", "only", "nearly", "almost", "or",
    "and", "expected", "est", "estimated", "is", "it", "takes", "take", "in", "worst", "case", "should", "be",
    "ish",
];

/// Parses a rollback time into minutes, as an upper bound: `<5 min` → 5, `3 minutes` → 3,
/// `90s` → 1.5, `2m` → 2, `1 hour` → 60, `under 5 minutes` → 5, `30 sec` → 0.5, `2-3 min` → 3,
/// `1h 30m` → 90, `1h30` → 90, `an hour` → 60, `half an hour` → 30. `None` for a bare number
/// (`5`: which unit?), a lower bound (`> 5 min`, `at least 5 minutes`, `5+ min`), several separate
/// durations that differ (`2 min to revert, 3 min to verify`, `5 min (worst case 10 min)`), or no
/// duration at all.
pub fn parse_duration_minutes(text: &str) -> Option<f64> {
    enum Tok {
        Num(f64),
        Word(String),
        Dash,
        Plus,
        LowerBound,
        /// `/ , ; ( ) |`: what follows is another duration (`5 min / 300 s`).
        Break,
    }
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next_is_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if c.is_ascii_digit() || (c == '.' && next_is_digit) {
            let start = i;
            let mut seen_dot = false;
            while let Some(&d) = chars.get(i) {
                let dot = d == '.' && !seen_dot && chars.get(i + 1).is_some_and(char::is_ascii_digit);
                if !(d.is_ascii_digit() || dot) {
                    break;
                }
                seen_dot |= dot;
                i += 1;
            }
            if i - start > 12 {
                return None;
            }
            let s: String = chars[start..i].iter().collect();
            toks.push(Tok::Num(s.parse().ok()?));
        } else if c.is_alphabetic() {
            let start = i;
            while chars.get(i).is_some_and(|c| c.is_alphabetic()) {
                i += 1;
            }
            toks.push(Tok::Word(chars[start..i].iter().collect::<String>().to_lowercase()));
        } else {
            match c {
                '-' | '–' | '—' => toks.push(Tok::Dash),
                '+' => toks.push(Tok::Plus),
                '>' | '≥' => toks.push(Tok::LowerBound),
                '/' | ',' | ';' | '(' | ')' | '|' => toks.push(Tok::Break),
                _ => {}
            }
            i += 1;
        }
    }

    let mut durations: Vec<f64> = Vec::new(); // separate duration expressions
    let mut total: Option<f64> = None; // the current expression
    let mut pending: Option<f64> = None; // a number waiting for its unit
    let mut range_low: Option<f64> = None; // `2` in `2-3 min`
    let mut last_unit = 0.0;
    let mut article = false; // `a`/`an`: one unit
    let mut half = false;
    /// Ends a duration expression. A number left after `1h` is minutes (`1h30`); a number left
    /// after another unit is ambiguous (false); one with no duration is a count (`2 commits`).
    fn end_expression(
        durations: &mut Vec<f64>,
        total: &mut Option<f64>,
        pending: &mut Option<f64>,
        last_unit: f64,
    ) -> bool {
        if let Some(n) = pending.take() {
            match total {
                Some(t) if last_unit == 60.0 => *t += n,
                Some(_) => return false,
                None => {}
            }
        }
        if let Some(t) = total.take() {
            durations.push(t);
        }
        true
    }
    for tok in toks {
        match tok {
            Tok::Num(n) => {
                if pending.is_some() {
                    return None; // `5 10 min`, `00:05`
                }
                pending = Some(n);
            }
            Tok::Word(w) => {
                if let Some(unit) = unit_minutes(&w) {
                    let n = match pending.take() {
                        Some(n) => n,
                        None if article || half => 1.0,
                        None => continue, // `minutes` on its own
                    };
                    let mut value = n * unit;
                    if half {
                        value *= 0.5;
                    }
                    if let Some(low) = range_low.take() {
                        value = value.max(low * unit);
                    }
                    // Components add up only with strictly smaller units (`1h 30m`, `2m30s`);
                    // `5 minutes, worst case 10 minutes` is two durations.
                    if let Some(t) = total
                        && unit >= last_unit
                    {
                        durations.push(t);
                        total = None;
                    }
                    total = Some(total.unwrap_or(0.0) + value);
                    last_unit = unit;
                    article = false;
                    half = false;
                } else if let Some(n) = number_word(&w) {
                    if pending.is_some() {
                        return None;
                    }
                    pending = Some(n);
                } else if w == "a" || w == "an" {
                    article = true;
                } else if w == "half" {
                    half = true;
                } else if w == "to" && pending.is_some() {
                    range_low = pending.take(); // `2 to 3 minutes`
                } else if LOWER_BOUND_WORDS.contains(&w.as_str()) {
                    return None;
                } else if FILLER_WORDS.contains(&w.as_str()) {
                } else {
                    // Any other word ends the duration (`5 min (revert the deploy)`).
                    if !end_expression(&mut durations, &mut total, &mut pending, last_unit) {
                        return None;
                    }
                    range_low = None;
                    article = false;
                    half = false;
                }
            }
            Tok::Dash => {
                if pending.is_some() {
                    range_low = pending.take();
                }
            }
            Tok::Plus => {
                if pending.is_some() {
                    return None; // `5+ min`
                }
                if !end_expression(&mut durations, &mut total, &mut pending, last_unit) {
                    return None;
                }
            }
            Tok::LowerBound => return None,
            Tok::Break => {
                if !end_expression(&mut durations, &mut total, &mut pending, last_unit) {
                    return None;
                }
                range_low = None;
            }
        }
    }
    if !end_expression(&mut durations, &mut total, &mut pending, last_unit) {
        return None;
    }
    // Several durations are read only when they agree (`5 min / 300 s`).
    let first = *durations.first()?;
    let agree = durations.iter().all(|d| (d - first).abs() < 1e-9);
    (agree && first.is_finite() && first >= 0.0).then_some(first)
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testutil::XorShift;

    /// The seed's "Response Format for Infrastructure Changes", verbatim.
    const SEED_TEMPLATE: &str = "CHANGE REQUEST:
[Describe what's changing]
- Service/component: [name]
- Environment: [dev/staging/prod]
- Reason: [why needed]

IMPACT ANALYSIS:
- Downtime: [expected] (zero for rolling deploy)
- Rollback time: [expected, should be <5 min]
- Dependencies: [what else might break?]
- Data migration: [any data movement needed?]

IMPLEMENTATION:
1. Code changes [pull request URL]
2. Infrastructure changes [terraform changes]
3. Database migration [if needed]
4. Deployment steps [exact steps to execute]
5. Verification [how to confirm success]
6. Rollback plan [if something goes wrong]

TESTING:
- [ ] All tests passing in CI
- [ ] Staging deployment successful
- [ ] Staging smoke tests passed
- [ ] Production deployment successful
- [ ] Production smoke tests passed
- [ ] Monitoring alerts active

DOCUMENTATION:
- Update Infrastructure_Deployment.md
- Update runbooks for this service
- Update incident response procedures

APPROVAL:
- PM approval for production
- Backend Lead approval if API changes
- Frontend Lead approval if frontend changes
";

    /// The seed's format, filled in.
    const SEED_FILLED: &str = "CHANGE REQUEST:
Move the payments API to the new cluster
- Service/component: payments-api
- Environment: prod
- Reason: the old cluster is end-of-life

IMPACT ANALYSIS:
- Downtime: none (rolling deploy)
- Rollback time: <5 min
- Dependencies: checkout-web calls it
- Data migration: none

IMPLEMENTATION:
1. Code changes https://github.com/acme/shop/pull/12 and #13
2. Infrastructure changes terraform: new node pool
3. Database migration: none
4. Deployment steps:
   1. merge #12
   2. run `make deploy ENV=prod`
5. Verification: curl https://api.acme.test/health returns 200
6. Rollback plan: revert #12 and redeploy the previous image

TESTING:
- [x] All tests passing in CI
- [X] Staging deployment successful
- [ ] Production smoke tests passed

DOCUMENTATION:
- Update Infrastructure_Deployment.md

APPROVAL:
- PM approval for production
";

    fn limit_5(_: &str) -> Option<u32> {
        Some(5)
    }

    fn fields(problems: &[Problem]) -> Vec<&'static str> {
        problems.iter().map(|p| p.field).collect()
    }

    const ENVS: &[&str] = &["production", "staging"];

    #[test]
    fn seed_template_unfilled_is_all_placeholders() {
        let cr = parse(SEED_TEMPLATE);
        assert_eq!(cr.service, None);
        assert_eq!(cr.environment, None);
        assert_eq!(cr.reason, None);
        assert_eq!(cr.rollback_time, None, "the placeholder `[expected, should be <5 min]` is not 5 minutes");
        assert_eq!(cr.rollback_minutes, None);
        assert!(cr.pull_requests.is_empty());
        assert_eq!(cr.rollback_plan, None);
        assert_eq!(cr.deployment_steps, None);
        assert_eq!(cr.downtime.as_deref(), Some("[expected] (zero for rolling deploy)"));
        assert_eq!(cr.testing.len(), 6);
        assert!(cr.testing.iter().all(|i| !i.checked));
        assert_eq!(cr.testing[0].text, "All tests passing in CI");
        assert!(cr.documentation.as_deref().is_some_and(|d| d.contains("Update runbooks for this service")));
        assert!(cr.unreadable.is_empty(), "{:?}", cr.unreadable);
        assert_eq!(
            fields(&cr.problems(ENVS, limit_5)),
            ["service", "environment", "reason", "pull_requests", "rollback_plan"]
        );
    }

    #[test]
    fn seed_format_filled() {
        let cr = parse(SEED_FILLED);
        assert_eq!(cr.service.as_deref(), Some("payments-api"));
        assert_eq!(cr.environment.as_deref(), Some("production"));
        assert_eq!(cr.reason.as_deref(), Some("the old cluster is end-of-life"));
        assert_eq!(cr.downtime.as_deref(), Some("none (rolling deploy)"));
        assert_eq!(cr.rollback_time.as_deref(), Some("<5 min"));
        assert_eq!(cr.rollback_minutes, Some(5.0));
        assert_eq!(cr.dependencies.as_deref(), Some("checkout-web calls it"));
        assert_eq!(cr.data_migration.as_deref(), Some("none"));
        assert_eq!(
            cr.pull_requests,
            vec![PrRef::Url { owner: "acme".into(), repo: "shop".into(), number: 12 }, PrRef::Number(13)]
        );
        assert_eq!(cr.pr_numbers("acme/shop"), vec![12, 13]);
        assert_eq!(cr.infrastructure_changes.as_deref(), Some("terraform: new node pool"));
        assert_eq!(cr.database_migration.as_deref(), Some("none"));
        assert_eq!(cr.deployment_steps.as_deref(), Some("1. merge #12\n2. run `make deploy ENV=prod`"));
        assert_eq!(cr.verification.as_deref(), Some("curl https://api.acme.test/health returns 200"));
        assert_eq!(cr.rollback_plan.as_deref(), Some("revert #12 and redeploy the previous image"));
        assert_eq!(
            cr.testing,
            vec![
                ChecklistItem { checked: true, text: "All tests passing in CI".into() },
                ChecklistItem { checked: true, text: "Staging deployment successful".into() },
                ChecklistItem { checked: false, text: "Production smoke tests passed".into() },
            ]
        );
        assert_eq!(cr.documentation.as_deref(), Some("- Update Infrastructure_Deployment.md"));
        assert!(cr.unreadable.is_empty(), "{:?}", cr.unreadable);
        assert!(cr.problems(ENVS, limit_5).is_empty());
        assert!(cr.pr_problems("acme/shop").is_empty());
    }

    /// The issue form in `templates/DEPLOYMENT_REQUEST.yml`: (type, id, label, checkbox options).
    fn issue_form() -> Vec<(String, String, String, Vec<String>)> {
        let yml = include_str!("../../templates/DEPLOYMENT_REQUEST.yml");
        let mut out: Vec<(String, String, String, Vec<String>)> = Vec::new();
        let unquote = |s: &str| s.trim().trim_matches('"').to_string();
        for line in yml.lines() {
            if let Some(kind) = line.strip_prefix("  - type: ") {
                out.push((kind.trim().to_string(), String::new(), String::new(), Vec::new()));
            } else if let Some(last) = out.last_mut() {
                if let Some(id) = line.strip_prefix("    id: ") {
                    last.1 = id.trim().to_string();
                } else if let Some(label) = line.strip_prefix("      label: ") {
                    last.2 = unquote(label);
                } else if let Some(option) = line.strip_prefix("        - label: ") {
                    last.3.push(unquote(option));
                }
            }
        }
        out.retain(|(kind, ..)| kind != "markdown");
        out
    }

    /// Renders answers the way GitHub writes an issue-form submission into the issue body.
    fn render_issue_form(answers: &[(&str, &str)], checked: &[&str]) -> String {
        let mut body = String::new();
        for (kind, id, label, options) in issue_form() {
            body.push_str(&format!("### {label}\n\n"));
            if kind == "checkboxes" {
                for option in options {
                    let mark = if checked.contains(&option.as_str()) { "X" } else { " " };
                    body.push_str(&format!("- [{mark}] {option}\n"));
                }
                body.push('\n');
            } else {
                let answer = answers.iter().find(|(k, _)| *k == id).map_or("_No response_", |(_, v)| v);
                body.push_str(&format!("{answer}\n\n"));
            }
        }
        body
    }

    #[test]
    fn issue_form_ids_match_the_fields_their_labels_name() {
        let form = issue_form();
        assert_eq!(form.len(), FIELD_COUNT, "one form field per request field");
        for (_, id, label, _) in &form {
            match lookup(label) {
                Kind::Field(field) => assert_eq!(field.id(), id, "label {label:?}"),
                other => panic!("label {label:?} maps to {other:?}"),
            }
        }
        let yml = include_str!("../../templates/DEPLOYMENT_REQUEST.yml");
        assert!(yml.contains("labels: [DEPLOYMENT_REQUEST]"));
    }

    #[test]
    fn issue_form_rendering() {
        let body = render_issue_form(
            &[
                ("service", "api"),
                ("environment", "Staging"),
                ("reason", "Fix the login redirect.\n\nSee the incident from Monday."),
                ("rollback_time", "3 minutes"),
                ("pull_requests", "#12, #13\nhttps://github.com/acme/shop/pull/14/files"),
                ("deployment_steps", "```shell\n# deploy\nmake deploy\n```"),
                ("rollback_plan", "1. Revert the PR\n2. Verification: check /health"),
            ],
            &["All tests passing in CI"],
        );
        let cr = parse(&body);
        assert_eq!(cr.service.as_deref(), Some("api"));
        assert_eq!(cr.environment.as_deref(), Some("staging"));
        assert_eq!(cr.reason.as_deref(), Some("Fix the login redirect.\n\nSee the incident from Monday."));
        assert_eq!(cr.downtime, None, "_No response_ is no answer");
        assert_eq!(cr.rollback_minutes, Some(3.0));
        assert_eq!(cr.pr_numbers("acme/shop"), vec![12, 13, 14]);
        // A `# comment` inside a fence is not a heading.
        assert_eq!(cr.deployment_steps.as_deref(), Some("```shell\n# deploy\nmake deploy\n```"));
        // Under a heading, "Verification: …" is part of the rollback plan, not a new field.
        assert_eq!(cr.rollback_plan.as_deref(), Some("1. Revert the PR\n2. Verification: check /health"));
        assert_eq!(cr.verification, None);
        assert_eq!(cr.testing.len(), 6);
        assert_eq!(cr.testing.iter().filter(|i| i.checked).count(), 1);
        assert!(cr.testing[0].checked);
        assert!(cr.unreadable.is_empty(), "{:?}", cr.unreadable);
        assert!(cr.problems(ENVS, |_| None).is_empty());
    }

    #[test]
    fn issue_form_all_empty() {
        let cr = parse(&render_issue_form(&[], &[]));
        assert_eq!(cr, ChangeRequest { testing: cr.testing.clone(), ..ChangeRequest::default() });
        assert_eq!(
            fields(&cr.problems(ENVS, limit_5)),
            ["service", "environment", "reason", "pull_requests", "rollback_plan"]
        );
    }

    #[test]
    fn markdown_template_unfilled_and_filled() {
        let template = include_str!("../../templates/DEPLOYMENT_REQUEST.md");
        // GitHub drops the front matter when it creates the issue.
        let body = template.splitn(3, "---\n").nth(2).expect("front matter");
        let cr = parse(body);
        assert!(cr.unreadable.is_empty(), "{:?}", cr.unreadable);
        assert_eq!(cr.service, None);
        assert_eq!(cr.rollback_plan, None);
        assert_eq!(cr.testing.len(), 6);

        let filled = body
            .replacen("### Service/component\n", "### Service/component\nweb\n", 1)
            .replacen("### Environment\n", "### Environment\nprod\n", 1)
            .replacen("### Reason\n", "### Reason\nnew checkout\n", 1)
            .replacen("### Rollback time\n", "### Rollback time\n2 min\n", 1)
            .replacen("### Pull request(s)\n", "### Pull request(s)\n#7\n", 1)
            .replacen("### Rollback plan\n", "### Rollback plan\nredeploy v1.2\n", 1);
        let cr = parse(&filled);
        assert_eq!(cr.service.as_deref(), Some("web"));
        assert_eq!(cr.environment.as_deref(), Some("production"));
        assert_eq!(cr.rollback_minutes, Some(2.0));
        assert_eq!(cr.pull_requests, vec![PrRef::Number(7)]);
        assert_eq!(cr.rollback_plan.as_deref(), Some("redeploy v1.2"));
        assert!(cr.problems(ENVS, limit_5).is_empty(), "{:?}", cr.problems(ENVS, limit_5));
    }

    #[test]
    fn bold_labels_both_styles() {
        let body = "**Service:** api\n**Environment**: Production\n**Reason** - hotfix\n\
                    **PRs:** #5\n**Rollback plan:** revert\n**Rollback time:** 90s\n**Risk level:** low\n";
        let cr = parse(body);
        assert_eq!(cr.service.as_deref(), Some("api"));
        assert_eq!(cr.environment.as_deref(), Some("production"));
        assert_eq!(cr.reason.as_deref(), Some("hotfix"));
        assert_eq!(cr.pull_requests, vec![PrRef::Number(5)]);
        assert_eq!(cr.rollback_minutes, Some(1.5));
        assert_eq!(cr.unreadable, vec!["Risk level".to_string()]);
        assert!(cr.problems(ENVS, limit_5).is_empty());
    }

    #[test]
    fn bold_only_lines_act_as_headings() {
        let body = "**Service**\npayments\n\n**Rollback plan:**\n- scale down\n- restore snapshot\n";
        let cr = parse(body);
        assert_eq!(cr.service.as_deref(), Some("payments"));
        assert_eq!(cr.rollback_plan.as_deref(), Some("- scale down\n- restore snapshot"));
    }

    #[test]
    fn plain_labels_bullets_dashes_and_mixed_case() {
        let body = "* Environment - stage\nSERVICE: worker\n+ why: queue backlog\n\
                    - pull request(s): octo/app#3 #4\n  - ROLLBACK: redeploy previous tag\n\
                    target environment:stg\n";
        let cr = parse(body);
        assert_eq!(cr.environment.as_deref(), Some("staging"), "the same environment twice is one");
        assert_eq!(cr.service.as_deref(), Some("worker"));
        assert_eq!(cr.reason.as_deref(), Some("queue backlog"));
        // The indented `- ROLLBACK:` continues the PR item it is nested under.
        assert_eq!(cr.rollback_plan, None);
        assert_eq!(
            cr.pull_requests,
            vec![PrRef::Url { owner: "octo".into(), repo: "app".into(), number: 3 }, PrRef::Number(4)]
        );
    }

    #[test]
    fn mixture_of_layouts() {
        let body = "## Change request\n\n**Service/component:** api\nEnvironment: dev\n\n\
                    ### Reason\nCustomers see 500s\nwhen paying.\n\n\
                    ## Implementation\n1. Code changes https://github.com/acme/shop/pull/77\n\
                    2. Rollback plan [if something goes wrong]\n   revert #77\n\n\
                    | Field | Value |\n|---|---|\n| Rollback time | 4 min |\n| Owner | @alice |\n";
        let cr = parse(body);
        assert_eq!(cr.service.as_deref(), Some("api"));
        assert_eq!(cr.environment.as_deref(), Some("development"));
        assert_eq!(cr.reason.as_deref(), Some("Customers see 500s\nwhen paying."));
        assert_eq!(cr.pr_numbers("acme/shop"), vec![77]);
        // The placeholder and the answer under it: the placeholder line stays, it is not alone.
        assert_eq!(cr.rollback_plan.as_deref(), Some("[if something goes wrong]\nrevert #77"));
        assert_eq!(cr.rollback_minutes, Some(4.0));
        assert_eq!(cr.unreadable, vec!["Owner".to_string()]);
    }

    #[test]
    fn crlf_unicode_and_emoji() {
        let body = "### 🚀 Service\r\n\r\nZahlungsdienst 💳\r\n\r\n### Environment ✅\r\n\r\n**prod**\r\n\r\n\
                    ### Reason\r\n\r\nBehebt den Fehler „Zahlung abgelehnt“ 🐛\r\n\r\n### PR(s)\r\n\r\n#42\r\n\r\n\
                    ### Rollback plan\r\n\r\nRücksetzen auf v1 ↩️\r\n\r\n### Rollback time\r\n\r\n≤ 2 min\r\n";
        let cr = parse(body);
        assert_eq!(cr.service.as_deref(), Some("Zahlungsdienst 💳"));
        assert_eq!(cr.environment.as_deref(), Some("production"));
        assert_eq!(cr.reason.as_deref(), Some("Behebt den Fehler „Zahlung abgelehnt“ 🐛"));
        assert_eq!(cr.pull_requests, vec![PrRef::Number(42)]);
        assert_eq!(cr.rollback_plan.as_deref(), Some("Rücksetzen auf v1 ↩️"));
        assert_eq!(cr.rollback_minutes, Some(2.0));
        assert!(!cr.service.as_deref().unwrap_or_default().contains('\r'));
        assert!(cr.problems(ENVS, limit_5).is_empty());
    }

    #[test]
    fn html_comments_are_ignored() {
        let body = "<!-- Fill this in.\nService: not-this -->\n### Service\n<!-- e.g. api -->\napi <!-- inline -->\n\
                    ### Reason\n<!--\nmulti\nline\n-->\n_No response_\n";
        let cr = parse(body);
        assert_eq!(cr.service.as_deref(), Some("api"));
        assert_eq!(cr.reason, None);
    }

    #[test]
    fn none_answers() {
        let body = "- Downtime: none\n- Dependencies: N/A\n- Data migration: -\n- Rollback plan: N/A\n\
                    - Service: x\n- Environment: production\n- Reason: r\n- PR: #1\n- Rollback time: 1 min\n";
        let cr = parse(body);
        assert_eq!(cr.downtime.as_deref(), Some("none"));
        assert_eq!(cr.dependencies.as_deref(), Some("N/A"));
        assert_eq!(cr.data_migration.as_deref(), Some("-"));
        let problems = cr.problems(ENVS, limit_5);
        assert_eq!(fields(&problems), ["rollback_plan"]);
        assert!(problems[0].message.contains("`N/A` is not a plan"));
    }

    #[test]
    fn missing_fields_are_listed_by_field() {
        let cr = parse("Service: api\n");
        let problems = cr.problems(ENVS, limit_5);
        assert_eq!(fields(&problems), ["environment", "reason", "pull_requests", "rollback_plan"]);
        assert!(problems[0].message.contains("`production`, `staging`"), "{}", problems[0].message);

        let cr = parse("Environment: qa\n");
        let problems = cr.problems(ENVS, limit_5);
        assert_eq!(problems[1].field, "environment");
        assert!(problems[1].message.contains("`qa` is not an environment"), "{}", problems[1].message);

        let cr = parse("Environment: production, staging\n");
        let p = cr.problems(ENVS, limit_5);
        assert!(p[1].message.starts_with("give one environment"), "{}", p[1].message);

        let cr = parse("### Environment\nproduction\nstaging\n");
        assert_eq!(cr.environment.as_deref(), Some("production, staging"));
    }

    #[test]
    fn environment_matching_is_case_insensitive_and_through_aliases() {
        let cr = parse("Environment: PROD\n");
        assert_eq!(cr.environment_key(&["Production"]), Some("Production"));
        assert_eq!(cr.environment_key(&["prod"]), Some("prod"), "a policy spelling `prod` matches");
        assert_eq!(cr.environment_key(&["staging"]), None);
        let cr = parse("Environment: Prod-EU\n");
        assert_eq!(cr.environment_key(&["prod-eu"]), Some("prod-eu"));
    }

    #[test]
    fn commit_instead_of_pull_request() {
        let cr = parse("Commit: `E83C5163316F89BFBDE7D9AB23CA2E25604AF290`\n");
        assert_eq!(cr.commit.as_deref(), Some("e83c5163316f89bfbde7d9ab23ca2e25604af290"));
        assert!(!fields(&cr.problems(ENVS, |_| None)).contains(&"pull_requests"));

        let cr = parse("Commit: the latest one\n");
        assert_eq!(cr.commit, None);
        assert_eq!(cr.unreadable, vec!["Commit".to_string()]);

        let cr = parse("PR: https://github.com/acme/shop/commit/abc1234\n");
        assert_eq!(cr.commit.as_deref(), Some("abc1234"));
        assert!(cr.pull_requests.is_empty());
    }

    #[test]
    fn rollback_time_limit() {
        let base = "Service: api\nEnvironment: production\nReason: r\nPR: #1\nRollback plan: revert\n";
        let check = |time: &str| {
            let cr = parse(&format!("{base}Rollback time: {time}\n"));
            cr.problems(ENVS, |env| (env == "production").then_some(5))
        };
        assert!(check("<5 min").is_empty());
        assert!(check("under 5 minutes").is_empty());
        assert!(check("300s").is_empty());
        let over = check("10 minutes");
        assert_eq!(fields(&over), ["rollback_time"]);
        assert!(over[0].message.contains("over the 5-minute limit for `production`"), "{}", over[0].message);
        assert_eq!(fields(&check("1 hour")), ["rollback_time"]);
        let unreadable = check("quick");
        assert!(unreadable[0].message.starts_with("cannot read rollback time `quick`"), "{}", unreadable[0].message);
        assert_eq!(fields(&check("> 2 min")), ["rollback_time"], "a lower bound cannot be checked");

        let cr = parse(base);
        assert_eq!(fields(&cr.problems(ENVS, limit_5)), ["rollback_time"], "missing with a limit");
        assert!(cr.problems(ENVS, |_| None).is_empty(), "no limit, no rollback time needed");
        // Staging has no limit here: an unreadable time is no problem.
        let cr = parse(&base.replace("production", "staging").replace("PR: #1", "PR: #1\nRollback time: soon"));
        assert!(cr.problems(ENVS, |env| (env == "production").then_some(5)).is_empty());
        assert_eq!(cr.unreadable, vec!["Rollback time".to_string()]);
    }

    #[test]
    fn durations() {
        let cases: &[(&str, Option<f64>)] = &[
            ("<5 min", Some(5.0)),
            ("< 5 mins", Some(5.0)),
            ("3 minutes", Some(3.0)),
            ("90s", Some(1.5)),
            ("2m", Some(2.0)),
            ("1 hour", Some(60.0)),
            ("under 5 minutes", Some(5.0)),
            ("30 sec", Some(0.5)),
            ("2-3 min", Some(3.0)),
            ("2 to 3 minutes", Some(3.0)),
            ("1h 30m", Some(90.0)),
            ("1h30", Some(90.0)),
            ("1 hour and 30 minutes", Some(90.0)),
            ("1.5 hours", Some(90.0)),
            ("an hour", Some(60.0)),
            ("half an hour", Some(30.0)),
            ("~2 min (revert the deploy)", Some(2.0)),
            ("about five minutes", Some(5.0)),
            ("5 minutes max", Some(5.0)),
            ("0 min", Some(0.0)),
            ("5", None),
            ("soon", None),
            ("> 5 min", None),
            ("at least 5 minutes", None),
            ("5+ min", None),
            ("more than 2 minutes", None),
            ("2 min to revert, 3 min to verify", None),
            ("5 minutes (worst case 10 minutes)", None),
            ("5 min / 300 s", Some(5.0)),
            ("2m30s", Some(2.5)),
            ("1:30", None),
            ("instant", None),
            ("00:05", None),
            ("", None),
            ("99999999999999999999 min", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration_minutes(text), *want, "{text:?}");
        }
    }

    #[test]
    fn pull_request_references() {
        let (refs, _) = find_pr_refs(
            "#12, #13 and acme/shop#14, see https://github.com/acme/shop/pull/15/files and \
             [#16](https://github.com/Acme/Shop/pull/16#discussion_r1) also <https://github.com/other/lib/pull/9>. \
             Not: &#17; issue#18 #0 #x 12 https://github.com/acme/shop/issues/19",
        );
        let url = |owner: &str, repo: &str, number| PrRef::Url { owner: owner.into(), repo: repo.into(), number };
        assert_eq!(
            refs,
            vec![
                PrRef::Number(12),
                PrRef::Number(13),
                url("acme", "shop", 14),
                url("acme", "shop", 15),
                PrRef::Number(16),
                url("Acme", "Shop", 16),
                url("other", "lib", 9),
            ]
        );
    }

    #[test]
    fn cross_repo_pull_request_url() {
        let cr = parse("PRs: #3 https://github.com/other/lib/pull/9\n");
        assert_eq!(cr.pr_numbers("acme/shop"), vec![3]);
        let problems = cr.pr_problems("acme/shop");
        assert_eq!(fields(&problems), ["pull_requests"]);
        assert!(problems[0].message.contains("other/lib#9 is in another repository"), "{}", problems[0].message);

        let only_foreign = parse("PR: https://github.com/other/lib/pull/9\n");
        assert!(!fields(&only_foreign.problems(ENVS, |_| None)).contains(&"pull_requests"), "it names a PR");
        assert_eq!(only_foreign.pr_problems("acme/shop").len(), 2, "foreign, and nothing of acme/shop left");
        assert_eq!(only_foreign.pr_numbers("OTHER/LIB"), vec![9], "repository match is case-insensitive");
    }

    #[test]
    fn pull_request_field_without_reference_is_named() {
        let cr = parse("Pull request: coming soon\n");
        assert!(cr.pull_requests.is_empty());
        assert_eq!(cr.unreadable, vec!["Pull request".to_string()]);
    }

    #[test]
    fn unknown_headings_are_named_and_their_content_ignored() {
        let body = "## Summary\nWe move to prod: faster\n\
                    ### Service\napi\n### Additional context\nenvironment is prod\n";
        let cr = parse(body);
        assert_eq!(cr.unreadable, vec!["Summary".to_string(), "Additional context".to_string()]);
        assert_eq!(cr.service.as_deref(), Some("api"));
        assert_eq!(cr.environment, None);
    }

    #[test]
    fn headings_with_values_and_single_line_fields() {
        let body = "## Environment: staging\n### Service\napi\nRollback time: 2 min\n### Reason\nNote: urgent\n";
        let cr = parse(body);
        assert_eq!(cr.environment.as_deref(), Some("staging"));
        assert_eq!(cr.service.as_deref(), Some("api"));
        assert_eq!(cr.rollback_minutes, Some(2.0), "a label after a one-line answer starts a field");
        assert_eq!(cr.reason.as_deref(), Some("Note: urgent"), "prose keeps its colons");
    }

    #[test]
    fn multi_line_values_keep_their_lines() {
        let body = "Deployment steps:\n\n1. drain node\n2. deploy\n   - wait for green\n\nVerification:\n\
                    - check /health\n- watch error rate\n\nRollback plan:\n```sh\n# Rollback: undo\nkubectl rollout undo deploy/api\n```\n";
        let cr = parse(body);
        assert_eq!(cr.deployment_steps.as_deref(), Some("1. drain node\n2. deploy\n   - wait for green"));
        assert_eq!(cr.verification.as_deref(), Some("- check /health\n- watch error rate"));
        assert_eq!(cr.rollback_plan.as_deref(), Some("```sh\n# Rollback: undo\nkubectl rollout undo deploy/api\n```"));
    }

    #[test]
    fn one_line_answer_ends_at_a_blank_line() {
        let cr = parse("Reason: hotfix\nfor login\n\nThanks, Bob\n");
        assert_eq!(cr.reason.as_deref(), Some("hotfix\nfor login"));
        // The line after the blank is read afresh: here it starts the seed's numbered fields.
        let cr = parse("Service: api\n\n1. Deployment steps\n2. run migrations\n");
        assert_eq!(cr.service.as_deref(), Some("api"));
        assert_eq!(cr.deployment_steps.as_deref(), Some("2. run migrations"));
    }

    #[test]
    fn serialises() {
        let json = serde_json::to_value(parse(SEED_FILLED)).expect("serialise");
        assert_eq!(json["environment"], "production");
        assert_eq!(json["pull_requests"][1], serde_json::json!({ "Number": 13 }));
    }

    /// Mutates `sample` by inserting markdown-significant fragments, deleting, duplicating and
    /// swapping spans (on chars, so the result stays valid UTF-8).
    fn mutate(rng: &mut XorShift, sample: &str, fragments: &[&str]) -> String {
        let mut chars: Vec<char> = sample.chars().collect();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(chars.len() + 1);
            match rng.below(5) {
                0 | 1 => {
                    let fragment = fragments[rng.below(fragments.len())];
                    chars.splice(at..at, fragment.chars());
                }
                2 => {
                    let end = (at + rng.below(20)).min(chars.len());
                    chars.drain(at..end);
                }
                3 => {
                    let end = (at + rng.below(40)).min(chars.len());
                    let copy: Vec<char> = chars[at..end].to_vec();
                    let to = rng.below(chars.len() + 1);
                    chars.splice(to..to, copy);
                }
                _ => {
                    let c = char::from_u32(rng.below(0x2_0000) as u32).unwrap_or('\u{fffd}');
                    chars.insert(at, c);
                }
            }
        }
        chars.into_iter().collect()
    }

    #[test]
    fn never_panics_on_random_mutations() {
        let samples = [
            SEED_TEMPLATE.to_string(),
            SEED_FILLED.to_string(),
            render_issue_form(&[("service", "api"), ("rollback_time", "1h30"), ("pull_requests", "#1")], &[]),
            "**Service:** api\n| Rollback time | 4 min |\n<!-- x -->\n```\n# y\n".to_string(),
        ];
        let fragments = [
            "\n",
            "\r\n",
            "#",
            "## ",
            "**",
            "*",
            "_",
            "`",
            "```",
            "~~~",
            "<!--",
            "-->",
            "[x]",
            "[ ]",
            "|",
            ":",
            " - ",
            "1. ",
            "- ",
            "> ",
            "    ",
            "\t",
            "_No response_",
            "Rollback time: ",
            "Environment:",
            "#12",
            "/pull/",
            "https://github.com/a/b/pull/",
            "é",
            "🚀",
            "„",
            "\u{200b}",
            "9999999999999999999",
            ".",
            "h30",
            "(",
            ")",
            "—",
        ];
        let mut rng = XorShift::new(0x5eed_1234_abcd_0042);
        for i in 0..2_000 {
            let sample = &samples[i % samples.len()];
            let body = mutate(&mut rng, sample, &fragments);
            let cr = parse(&body);
            let _ = cr.problems(ENVS, limit_5);
            let _ = cr.pr_numbers("a/b");
            let _ = cr.pr_problems("a/b");
            let _ = serde_json::to_string(&cr);
            if let Some(m) = cr.rollback_minutes {
                assert!(m.is_finite() && m >= 0.0, "{body:?}");
            }
        }
    }
}

//! The repository policy, `.github/shipgate.yml` (SPEC §2): its types, the strict parser and the
//! built-in default.
//!
//! Pure: no I/O, no async. [`parse`] turns the file's text into a validated [`Policy`] or into
//! every problem found, each with a 1-based line and column pointing at the offending key or
//! value. [`default_policy`] is the policy that applies when a repository has no file at all;
//! an existing file, even an empty one, never falls back to it.
//!
//! How it works: serde-saphyr (with tight budgets, so alias bombs and deep nesting stop early)
//! reads the YAML into a small tree of [`Spanned`] nodes, and a hand-written validation pass walks
//! that tree. A derived `#[serde(deny_unknown_fields)]` struct would stop at the first unknown key
//! or wrong type; walking the tree instead lets one run report every problem of the file, in
//! document order, while keeping exact positions for semantic errors (an unknown role, a bad
//! glob) as well as structural ones.
//!
//! Conventions of the file format:
//! * every key is optional; an omitted key, or one given as `null` / left empty, takes its default;
//! * keys are case-sensitive; enumerated values (`all`, `deploy`, `day`, conclusions) are not;
//! * booleans are YAML 1.2's `true` / `false` (`yes` / `no` / `on` / `off` are refused, not guessed);
//! * `when_paths` globs match whole paths from the repository root: `*` stays within one directory,
//!   `**` crosses directories, a trailing `/` means "everything below", a leading `/` is ignored.
//! * `freeze:` windows (see [`super::freeze`]) name their time zone and reason, and must end: a
//!   set of recurring windows that would keep the gate closed for good is refused, like any
//!   other error, with the line and column of the window (or of the list, when only together
//!   they never end).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::freeze::{self, Budget, CronSchedule, Ending, Freeze, Schedule, Window};

/// The label that marks a deployment request when the policy does not name one.
pub const DEFAULT_LABEL: &str = "DEPLOYMENT_REQUEST";

/// A policy file larger than this is refused before it is parsed (GitHub's contents API serves
/// file contents up to 1 MB; a real policy is a few kilobytes).
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// [`parse`] lists at most this many problems, then one that counts the rest (a comment or a
/// check run cannot hold thousands).
pub const MAX_ERRORS: usize = 100;

/// The failure categories of SPEC §4, in the order [`CiPolicy::categorize`] tries them.
pub const CATEGORIES: [&str; 5] = ["Lint", "Type-check", "Test", "Build", "Deploy"];

/// The built-in default policy of SPEC §2, as YAML. `parse(DEFAULT_POLICY_YAML)` equals
/// [`default_policy()`] (a test holds them together); useful as a template for repositories.
/// It fails closed: nobody is trusted by a name the App made up; production needs one approval
/// from someone with maintain or admin permission on the repository.
pub const DEFAULT_POLICY_YAML: &str = r#"label: DEPLOYMENT_REQUEST            # case-insensitive match
roles:
  maintainers:   { permission: maintain }   # everyone with maintain or admin on the repository
environments:
  production:
    approvals:
      - role: maintainers
    require_checks: all              # or a list of check names
    require_staging_first: false     # true: the same commit must have deployed to staging
    allow_self_approval: false
    deploy: none                     # or: protection_rule | deployment (the App creates it)
  staging:
    approvals: []
    require_checks: all
ci:
  incident_branches: [main]          # failures here open an incident issue
  ignore_conclusions: [cancelled, skipped]
  debug_within: 1h                   # then escalate
  block_deploys_while_red: true
"#;

// ---------------------------------------------------------------------------------------------
// The validated policy
// ---------------------------------------------------------------------------------------------

/// A validated repository policy.
///
/// `Policy::default()` is what an *empty* file yields (the default label, no roles, no
/// environments, default `ci` and `report`); it is not [`default_policy()`], which applies only
/// when the repository has no policy file.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The issue label that marks a deployment request (matched case-insensitively).
    pub label: String,
    pub roles: BTreeMap<String, Role>,
    /// Keyed by the name as written; look names up with [`Policy::environment`] (case-insensitive).
    pub environments: BTreeMap<String, Environment>,
    pub ci: CiPolicy,
    pub report: ReportPolicy,
    pub alerts: AlertsPolicy,
    /// `notify:` rules (SPEC §5): which events go to which channels.
    pub notify: Vec<super::notify::NotifyRule>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            label: DEFAULT_LABEL.to_owned(),
            roles: BTreeMap::new(),
            environments: BTreeMap::new(),
            ci: CiPolicy::default(),
            report: ReportPolicy::default(),
            alerts: AlertsPolicy::default(),
            notify: Vec::new(),
        }
    }
}

/// The kinds of alert the monitoring stack sends (the `category` label, SPEC §4.2).
pub const ALERT_CATEGORIES: &[&str] = &["app", "infra", "performance", "cost", "security"];

/// What the App does with alerts from the monitoring stack (SPEC §4.2).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsPolicy {
    /// The role an alert of each category escalates to (category → role name).
    pub escalate: BTreeMap<String, String>,
    /// A cost alert whose `increase_percent` annotation exceeds this escalates at once. Default 20.
    pub cost_increase_percent: f64,
    /// An alert incident still open this long after the alert started is escalated. Default 60.
    pub respond_within_minutes: u32,
}

impl Default for AlertsPolicy {
    fn default() -> Self {
        AlertsPolicy { escalate: BTreeMap::new(), cost_increase_percent: 20.0, respond_within_minutes: 60 }
    }
}

impl Policy {
    /// The environment called `name`, compared case-insensitively.
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environment_entry(name).map(|(_, env)| env)
    }

    /// The environment called `name` (case-insensitively) with its name as the policy spells it.
    pub fn environment_entry(&self, name: &str) -> Option<(&str, &Environment)> {
        if let Some((key, env)) = self.environments.get_key_value(name) {
            return Some((key.as_str(), env));
        }
        self.environments.iter().find(|(key, _)| eq_fold(key, name)).map(|(key, env)| (key.as_str(), env))
    }

    /// Whether an issue label is the deployment-request label (case-insensitive).
    pub fn label_matches(&self, label: &str) -> bool {
        eq_fold(&self.label, label)
    }

    /// The role called `name` (role names are case-sensitive, as written in `roles`).
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }
}

/// A role: the GitHub users, the teams whose members, and the repository permission level whose
/// holders may approve for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Role {
    /// GitHub logins, as written (GitHub compares logins case-insensitively). Each is resolved to
    /// its account id and pinned the first time it is seen.
    pub users: Vec<String>,
    pub teams: Vec<TeamRef>,
    /// Everyone with at least this permission on the repository.
    pub permission: Option<Permission>,
}

/// A repository permission level, lowest first (GitHub's `role_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    pub const NAMES: [&'static str; 5] = ["read", "triage", "write", "maintain", "admin"];

    pub fn parse(s: &str) -> Option<Permission> {
        Some(match s.to_ascii_lowercase().as_str() {
            "read" | "pull" => Permission::Read,
            "triage" => Permission::Triage,
            "write" | "push" => Permission::Write,
            "maintain" => Permission::Maintain,
            "admin" => Permission::Admin,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// A GitHub team, written `org/team-slug`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TeamRef {
    pub org: String,
    pub slug: String,
}

impl TeamRef {
    /// Parses `org/team-slug`; the error explains the expected form.
    pub fn parse(s: &str) -> Result<TeamRef, String> {
        parse_team(s)
    }
}

impl fmt::Display for TeamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.slug)
    }
}

/// What a deployment to one environment requires.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub approvals: Vec<ApprovalRule>,
    /// `all` (the default) or the named checks.
    pub require_checks: RequireChecks,
    /// The same SHA must first have deployed successfully to `staging_environment`. Default false.
    pub require_staging_first: bool,
    /// The GitHub environment that counts as staging. Default `"staging"`.
    pub staging_environment: String,
    /// The requester or PR author may approve. Default false.
    pub allow_self_approval: bool,
    /// One person may fill two roles of one request. Default false.
    pub allow_multiple_roles: bool,
    /// The longest rollback time a request may state, in minutes (at least 1). Default: no limit.
    pub max_rollback_minutes: Option<u32>,
    /// How a deployment happens. Default `none`.
    pub deploy: DeployMode,
    /// The branch deployed from (for `block_deploys_while_red`); `None` = the default branch.
    pub branch: Option<String>,
    /// `approvals_expire_after`: an approval older than this no longer counts (more than zero,
    /// whole minutes). Default: approvals do not expire. See [`Environment::approval_expired`].
    pub approvals_expire_after: Option<Duration>,
    /// `freeze:`: windows in which the gate is closed, whatever else holds (break-glass aside).
    /// Default: none. Its windows end: a policy whose windows never end is refused.
    pub freeze: Freeze,
}

impl Environment {
    /// When an approval given at `given_at_ms` stops counting; None when approvals do not expire.
    pub fn approval_expires_at(&self, given_at_ms: i64) -> Option<i64> {
        self.approvals_expire_after.map(|after| freeze::expires_at(given_at_ms, after))
    }

    /// Whether an approval given at `given_at_ms` no longer counts at `now_ms`.
    pub fn approval_expired(&self, given_at_ms: i64, now_ms: i64) -> bool {
        self.approvals_expire_after.is_some_and(|after| freeze::expired(given_at_ms, after, now_ms))
    }
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            approvals: Vec::new(),
            require_checks: RequireChecks::All,
            require_staging_first: false,
            staging_environment: "staging".to_owned(),
            allow_self_approval: false,
            allow_multiple_roles: false,
            max_rollback_minutes: None,
            deploy: DeployMode::None,
            branch: None,
            approvals_expire_after: None,
            freeze: Freeze::default(),
        }
    }
}

/// One required approval: a role, needed only when a changed file matches `when_paths` (if any).
#[derive(Clone)]
pub struct ApprovalRule {
    pub role: String,
    /// Globs as written in the policy.
    pub when_paths: Vec<String>,
    /// `when_paths` compiled; `None` when `when_paths` is empty.
    matcher: Option<GlobSet>,
}

impl ApprovalRule {
    /// A rule for `role`, compiling `when_paths` (see the module docs for the glob dialect).
    pub fn new(role: impl Into<String>, when_paths: Vec<String>) -> Result<ApprovalRule, globset::Error> {
        let matcher = if when_paths.is_empty() {
            None
        } else {
            let mut set = GlobSetBuilder::new();
            for pattern in &when_paths {
                set.add(compile_glob(pattern)?);
            }
            Some(set.build()?)
        };
        Ok(ApprovalRule { role: role.into(), when_paths, matcher })
    }

    /// True when the rule has no `when_paths`, or when any changed file matches any of them.
    pub fn applies_to<'a>(&self, changed_files: impl IntoIterator<Item = &'a str>) -> bool {
        match &self.matcher {
            None => true,
            Some(set) => changed_files.into_iter().any(|file| set.is_match(file.trim_start_matches('/'))),
        }
    }
}

impl PartialEq for ApprovalRule {
    fn eq(&self, other: &Self) -> bool {
        self.role == other.role && self.when_paths == other.when_paths
    }
}

impl fmt::Debug for ApprovalRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApprovalRule").field("role", &self.role).field("when_paths", &self.when_paths).finish()
    }
}

/// Which checks must have passed on a PR's head SHA.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RequireChecks {
    /// Every check run and commit status (the App's own excepted).
    #[default]
    All,
    /// Only these check names.
    Named(Vec<String>),
}

/// How a deployment to an environment happens (SPEC §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeployMode {
    /// The GitHub Environment lists the App as a custom deployment protection rule.
    ProtectionRule,
    /// `/deploy` makes the App create a GitHub Deployment.
    Deployment,
    /// The deploying job asks the App first (`POST /gate/wait` with its OIDC token, the
    /// composite action in `action/`): works on every GitHub plan.
    Workflow,
    /// The App only gates; something else deploys.
    #[default]
    None,
}

impl DeployMode {
    /// The spelling used in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployMode::ProtectionRule => "protection_rule",
            DeployMode::Deployment => "deployment",
            DeployMode::Workflow => "workflow",
            DeployMode::None => "none",
        }
    }
}

/// What the App does with failed CI (SPEC §4).
#[derive(Debug, Clone, PartialEq)]
pub struct CiPolicy {
    /// Branches whose failures open an incident issue; empty = the default branch.
    pub incident_branches: Vec<String>,
    /// Workflow-run conclusions that are not failures (lowercase).
    pub ignore_conclusions: Vec<String>,
    /// An incident still open after this many minutes is escalated. Default 60.
    pub debug_within_minutes: u32,
    /// The role mentioned on escalation. Default none.
    pub escalate_to: Option<String>,
    /// No deployment while the deployed branch has an open CI incident. False here; true in
    /// [`default_policy()`].
    pub block_deploys_while_red: bool,
    /// How failed jobs and steps are sorted, tried in order; the built-in patterns by default.
    pub categories: Vec<CategoryRule>,
}

impl Default for CiPolicy {
    fn default() -> Self {
        CiPolicy {
            incident_branches: Vec::new(),
            ignore_conclusions: ["cancelled", "skipped", "neutral", "action_required"].map(String::from).to_vec(),
            debug_within_minutes: 60,
            escalate_to: None,
            block_deploys_while_red: false,
            categories: default_categories(),
        }
    }
}

impl CiPolicy {
    /// The category of a failed job or step: the first rule with a pattern contained in `name`
    /// (case-insensitively); `None` means "Other".
    pub fn categorize(&self, name: &str) -> Option<&str> {
        let name = name.to_lowercase();
        self.categories
            .iter()
            .find(|rule| rule.patterns.iter().any(|p| !p.is_empty() && name.contains(&p.to_lowercase())))
            .map(|rule| rule.category.as_str())
    }

    /// Whether a workflow-run conclusion is ignored (case-insensitive).
    pub fn ignores_conclusion(&self, conclusion: &str) -> bool {
        self.ignore_conclusions.iter().any(|c| c.eq_ignore_ascii_case(conclusion))
    }
}

/// One failure category and the patterns that select it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryRule {
    /// One of [`CATEGORIES`].
    pub category: String,
    /// Case-insensitive substrings of job or step names.
    pub patterns: Vec<String>,
}

/// The built-in category patterns, in [`CATEGORIES`] order. A policy's `ci.categories` replaces
/// the patterns of each category it names and keeps these for the others.
pub fn default_categories() -> Vec<CategoryRule> {
    let rule = |category: &str, patterns: &[&str]| CategoryRule {
        category: category.to_owned(),
        patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
    };
    vec![
        rule("Lint", &["lint", "clippy", "fmt", "format", "prettier", "ruff", "flake8", "rubocop", "shellcheck"]),
        rule(
            "Type-check",
            &["type-check", "typecheck", "type check", "type_check", "tsc", "mypy", "pyright", "cargo check"],
        ),
        rule("Test", &["test", "rspec", "jest", "mocha", "cypress", "playwright", "e2e", "coverage"]),
        rule("Build", &["build", "compile", "bundle", "webpack", "docker", "package"]),
        rule("Deploy", &["deploy", "release", "publish", "rollout", "helm", "terraform", "kubectl"]),
    ]
}

/// The weekly report and the targets figures are measured against (SPEC §5).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReportPolicy {
    /// When the weekly report issue is opened; `None` = no weekly report.
    pub weekly: Option<WeeklySchedule>,
    pub targets: Targets,
}

/// A weekly time: `{ day: monday, time: "09:30", timezone: UTC }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklySchedule {
    pub day: Weekday,
    /// 0–23.
    pub hour: u32,
    /// 0–59.
    pub minute: u32,
    /// `"UTC"`, a fixed offset such as `"+02:00"` / `"-05:30"`, or an IANA name such as
    /// `"Europe/Berlin"`.
    pub timezone: String,
}

impl Default for WeeklySchedule {
    /// Monday 09:30 UTC (what `weekly: {}` gives).
    fn default() -> Self {
        WeeklySchedule { day: Weekday::Monday, hour: 9, minute: 30, timezone: "UTC".to_owned() }
    }
}

impl WeeklySchedule {
    /// The time zone the day and time are in.
    pub fn zone(&self) -> super::zone::Zone {
        super::zone::Zone::named(&self.timezone)
    }
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    pub const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    /// The lowercase English name, as written in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Weekday::Monday => "monday",
            Weekday::Tuesday => "tuesday",
            Weekday::Wednesday => "wednesday",
            Weekday::Thursday => "thursday",
            Weekday::Friday => "friday",
            Weekday::Saturday => "saturday",
            Weekday::Sunday => "sunday",
        }
    }

    /// Monday = 0 … Sunday = 6.
    pub fn days_from_monday(self) -> u32 {
        self as u32
    }

    /// The day named `s`, case-insensitively (full English names only).
    pub fn from_name(s: &str) -> Option<Weekday> {
        Weekday::ALL.into_iter().find(|day| day.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// Targets the weekly report compares figures with. Percentages are 0–100; minutes are ≥ 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub uptime: f64,
    pub deploy_success: f64,
    pub ci_green: f64,
    /// Mean time to deploy (the seed's MTTD): request approved → deployment succeeded.
    pub mttd_minutes: f64,
    /// Mean time to recover.
    pub mttr_minutes: f64,
}

impl Default for Targets {
    fn default() -> Self {
        Targets { uptime: 99.5, deploy_success: 98.0, ci_green: 95.0, mttd_minutes: 30.0, mttr_minutes: 5.0 }
    }
}

/// One problem in a policy file, at a 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ConfigError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The built-in policy of SPEC §2, which applies when a repository has no policy file.
pub fn default_policy() -> Policy {
    let maintainers = Role { permission: Some(Permission::Maintain), ..Role::default() };
    let production = Environment {
        approvals: vec![ApprovalRule::new("maintainers", vec![]).expect("no globs")],
        require_checks: RequireChecks::All,
        require_staging_first: false,
        allow_self_approval: false,
        deploy: DeployMode::None,
        ..Environment::default()
    };
    let staging = Environment { approvals: Vec::new(), require_checks: RequireChecks::All, ..Environment::default() };
    Policy {
        label: DEFAULT_LABEL.to_owned(),
        roles: BTreeMap::from([("maintainers".to_owned(), maintainers)]),
        environments: BTreeMap::from([("production".to_owned(), production), ("staging".to_owned(), staging)]),
        ci: CiPolicy {
            incident_branches: vec!["main".to_owned()],
            ignore_conclusions: vec!["cancelled".to_owned(), "skipped".to_owned()],
            debug_within_minutes: 60,
            escalate_to: None,
            block_deploys_while_red: true,
            categories: default_categories(),
        },
        report: ReportPolicy { weekly: None, targets: Targets::default() },
        alerts: AlertsPolicy::default(),
        notify: Vec::new(),
    }
}

/// Parses a duration — `90s`, `30m`, `1h`, `2d`, or components from the largest unit down such as
/// `1h30m` — into minutes, rounding seconds up. The error explains the accepted forms.
pub fn parse_duration_minutes(s: &str) -> Result<u32, String> {
    let explain = || {
        format!(
            "`{}` is not a duration: write a whole number followed by a unit, `s`, `m`, `h` or `d` \
             (`90s`, `30m`, `1h`, `2d`), or combine them from the largest unit down (`1h30m`)",
            show(s)
        )
    };
    let too_long = || format!("`{}` is too long a duration (at most {} minutes)", show(s), u32::MAX);
    let text = s.trim();
    if text.is_empty() {
        return Err(explain());
    }
    let mut rest = text;
    let mut total_seconds: u64 = 0;
    let mut previous_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(explain());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        let mut after = rest[digits..].chars();
        let (seconds, rank) = match after.next().map(|c| c.to_ascii_lowercase()) {
            Some('s') => (1, 0),
            Some('m') => (60, 1),
            Some('h') => (3_600, 2),
            Some('d') => (86_400, 3),
            _ => return Err(explain()),
        };
        if rank >= previous_rank {
            return Err(explain());
        }
        previous_rank = rank;
        total_seconds = number.checked_mul(seconds).and_then(|n| n.checked_add(total_seconds)).ok_or_else(too_long)?;
        rest = after.as_str();
    }
    u32::try_from(total_seconds.div_ceil(60)).map_err(|_| too_long())
}

/// What changed between two versions of the policy file (None: no file, the built-in policy), for
/// the audit log: whether each is valid, the environments and roles added, removed or changed,
/// and the other top-level keys that changed. Read as plain YAML, so an invalid file is compared
/// too (as far as it parses).
pub fn change_summary(old: Option<&str>, new: Option<&str>) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let tree = |text: Option<&str>| -> Option<Map<String, Value>> {
        let text = text?;
        match serde_saphyr::from_str::<Value>(text) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        }
    };
    let (before, after) = (tree(old), tree(new));
    let empty = Map::new();
    let (b, a) = (before.as_ref().unwrap_or(&empty), after.as_ref().unwrap_or(&empty));
    let section = |key: &str| -> Value {
        let none = Map::new();
        let pick =
            |m: &Map<String, Value>| m.get(key).and_then(Value::as_object).cloned().unwrap_or_else(|| none.clone());
        let (b, a) = (pick(b), pick(a));
        let added: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
        let removed: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
        let changed: Vec<&String> = a.keys().filter(|k| b.get(*k).is_some_and(|v| Some(v) != a.get(*k))).collect();
        json!({ "added": added, "removed": removed, "changed": changed })
    };
    let mut other: Vec<&String> = a
        .keys()
        .chain(b.keys().filter(|k| !a.contains_key(*k)))
        .filter(|k| !matches!(k.as_str(), "environments" | "roles") && a.get(*k) != b.get(*k))
        .collect();
    other.sort();
    other.dedup();
    let valid = |text: Option<&str>| text.map(|t| parse(t).is_ok());
    json!({
        "file_before": old.is_some(),
        "file_after": new.is_some(),
        "valid_before": valid(old),
        "valid_after": valid(new),
        "environments": section("environments"),
        "roles": section("roles"),
        "other_keys_changed": other,
    })
}

/// Parses and validates a policy file. On failure, returns every problem found, in document order
/// (a YAML syntax error stops the parse, so it comes alone).
pub fn parse(yaml: &str) -> Result<Policy, Vec<ConfigError>> {
    if yaml.len() > MAX_POLICY_BYTES {
        return Err(vec![ConfigError {
            line: 1,
            column: 1,
            message: format!(
                "the file is {} bytes long; a policy may be at most {} bytes",
                yaml.len(),
                MAX_POLICY_BYTES
            ),
        }]);
    }
    let root: Spanned<Node> = match serde_saphyr::from_str_with_options(yaml, yaml_options()) {
        Ok(root) => root,
        Err(err) => return Err(vec![yaml_error(&err)]),
    };
    let mut checker =
        Checker { src: yaml, errors: Vec::new(), freeze_steps: Budget::new(FREEZE_STEPS), zone_hints: ZONE_HINTS };
    let policy = checker.policy(&root);
    if checker.errors.is_empty() {
        return Ok(policy);
    }
    let mut errors = checker.errors;
    errors.sort_by_key(|e| (e.line, e.column));
    errors.dedup();
    if errors.len() > MAX_ERRORS {
        let more = errors.len() - MAX_ERRORS;
        errors.truncate(MAX_ERRORS + 1);
        errors[MAX_ERRORS].message = format!("…and {more} more problems; fix the ones above first");
    }
    Err(errors)
}

#[cfg(test)]
mod change_summary_tests {
    use super::change_summary;
    use serde_json::json;

    #[test]
    fn names_what_changed() {
        let old = "label: X\nroles:\n  pm: { users: [alice] }\n  qa: { users: [q] }\nenvironments:\n  production:\n    approvals: [{ role: pm }]\n";
        let new = "label: Y\nroles:\n  pm: { users: [mallory] }\nenvironments:\n  production:\n    approvals: [{ role: pm }]\n  staging: {}\n";
        let d = change_summary(Some(old), Some(new));
        assert_eq!(d["roles"], json!({ "added": [], "removed": ["qa"], "changed": ["pm"] }));
        assert_eq!(d["environments"], json!({ "added": ["staging"], "removed": [], "changed": [] }));
        assert_eq!(d["other_keys_changed"], json!(["label"]));
        let d = change_summary(None, Some("label: [unclosed"));
        assert_eq!((d["file_before"].clone(), d["valid_after"].clone()), (json!(false), json!(false)));
    }
}

// ---------------------------------------------------------------------------------------------
// YAML reading: a tree of spanned nodes
// ---------------------------------------------------------------------------------------------

/// A YAML node as serde-saphyr infers it (YAML 1.2 core schema, strict booleans).
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<N>),
    /// Entries in document order; duplicates are kept (and reported by the checker).
    Map(Vec<(N, N)>),
}

type N = Spanned<Node>;

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;

        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
                Node::deserialize(deserializer)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
                Ok(Node::Int(v))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
                Ok(i128::try_from(v).map_or(Node::Float(v as f64), Node::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Node, E> {
                Ok(Node::Str(String::from_utf8_lossy(v).into_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<N>()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<N>()? {
                    let value = map.next_value::<N>()?;
                    entries.push((key, value));
                }
                Ok(Node::Map(entries))
            }
        }

        deserializer.deserialize_any(NodeVisitor)
    }
}

/// Parser options: a policy is small, so the budgets are far tighter than serde-saphyr's defaults
/// (an alias bomb or a 10,000-level nesting fails fast, and the node tree stays shallow).
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 100_000;
    budget.max_nodes = 20_000;
    budget.max_aliases = 2_000;
    budget.max_anchors = 2_000;
    budget.max_depth = 32;
    budget.flow_nesting_limit = 32;
    budget.max_documents = 2;
    budget.max_total_scalar_bytes = 2 * MAX_POLICY_BYTES;
    budget.max_recorded_anchor_events = 10_000;
    budget.max_recorded_anchor_bytes = 2 * MAX_POLICY_BYTES;
    budget.max_merge_keys = 1_000;
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = 10_000;
    alias_limits.max_replay_stack_depth = 16;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits = alias_limits;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    options.strict_booleans = true;
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
    options.with_snippet = false;
    options
}

/// A serde-saphyr error (syntax, budget, several documents) as one user-facing `ConfigError`.
fn yaml_error(err: &serde_saphyr::Error) -> ConfigError {
    use serde_saphyr::Error as E;
    use serde_saphyr::MessageFormatter;
    let mut inner = err;
    while let E::WithSnippet { error, .. } | E::AliasError { error, .. } = inner {
        inner = error.as_ref();
    }
    let message = match inner {
        E::MultipleDocuments { .. } => {
            "the file holds more than one YAML document (a second `---`); a policy is a single document".to_owned()
        }
        E::Budget { breach, .. } => {
            format!("the file is too large or too deeply nested for a policy ({})", budget_breach(breach))
        }
        _ => {
            let text = serde_saphyr::UserMessageFormatter.format_message(inner);
            format!("invalid YAML: {}", show_long(&text, 300))
        }
    };
    let (line, column) =
        err.location().filter(|l| l.line() > 0).map_or((1, 1), |l| (to_usize(l.line()), to_usize(l.column()).max(1)));
    ConfigError { line, column, message }
}

fn budget_breach(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match breach {
        B::Depth { .. } => "more than 32 levels of nesting".to_owned(),
        B::Documents { .. } => "more than one document".to_owned(),
        B::Aliases { .. } | B::Anchors { .. } => "too many anchors or aliases".to_owned(),
        _ => "too many values, anchors or aliases".to_owned(),
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

const TOP_KEYS: &[&str] = &["label", "roles", "environments", "ci", "report", "alerts", "notify"];
const ROLE_KEYS: &[&str] = &["users", "teams", "permission"];
const ENV_KEYS: &[&str] = &[
    "approvals",
    "require_checks",
    "require_staging_first",
    "staging_environment",
    "allow_self_approval",
    "allow_multiple_roles",
    "max_rollback_minutes",
    "deploy",
    "branch",
    "approvals_expire_after",
    "freeze",
];
const FREEZE_KEYS: &[&str] = &["cron", "duration", "from", "to", "timezone", "reason"];
const APPROVAL_KEYS: &[&str] = &["role", "when_paths"];
const CI_KEYS: &[&str] = &[
    "incident_branches",
    "ignore_conclusions",
    "debug_within",
    "escalate_to",
    "block_deploys_while_red",
    "categories",
];
const REPORT_KEYS: &[&str] = &["weekly", "targets"];
const ALERT_KEYS: &[&str] = &["escalate", "cost_increase_percent", "respond_within"];
const WEEKLY_KEYS: &[&str] = &["day", "time", "timezone"];
const TARGET_KEYS: &[&str] = &["uptime", "deploy_success", "ci_green", "mttd_minutes", "mttr_minutes"];
const NOTIFY_KEYS: &[&str] = &["on", "to"];

/// Where each key belongs, to point a misplaced key to its section.
const SECTIONS: &[(&[&str], &str)] = &[
    (TOP_KEYS, "at the top level"),
    (ROLE_KEYS, "in a role (`roles.<name>`)"),
    (ENV_KEYS, "in an environment (`environments.<name>`)"),
    (APPROVAL_KEYS, "in an approval rule (`- role: …`)"),
    (CI_KEYS, "in `ci`"),
    (REPORT_KEYS, "in `report`"),
    (WEEKLY_KEYS, "in `report.weekly`"),
    (TARGET_KEYS, "in `report.targets`"),
    (ALERT_KEYS, "in `alerts`"),
    (NOTIFY_KEYS, "in a `notify` rule (`- { on: […], to: […] }`)"),
    (FREEZE_KEYS, "in a freeze window (`freeze: - { cron: …, duration: …, timezone: …, reason: … }`)"),
];

/// The steps all of a policy's freeze checks may take together (each at most [`freeze::STEPS`]),
/// so that a file with many environments costs no more than a few.
const FREEZE_STEPS: u32 = 4 * freeze::STEPS;

/// How many misspelt time zones get a "did you mean" (each looks through the zone names).
const ZONE_HINTS: u32 = 20;

/// The longest `reason` of a freeze window (it is shown on the gate).
const MAX_REASON_CHARS: usize = 200;

const CONCLUSIONS: &[&str] = &[
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "skipped",
    "stale",
    "startup_failure",
    "success",
    "timed_out",
];

struct Checker<'s> {
    src: &'s str,
    errors: Vec<ConfigError>,
    /// What is left of [`FREEZE_STEPS`].
    freeze_steps: Budget,
    /// What is left of [`ZONE_HINTS`].
    zone_hints: u32,
}

/// The allowed keys present in a mapping, in document order, with their key and value nodes.
struct Fields<'n> {
    entries: Vec<(&'static str, &'n N, &'n N)>,
}

impl<'n> Fields<'n> {
    /// The value of `key`, unless absent or null (null means "take the default").
    fn get(&self, key: &str) -> Option<&'n N> {
        self.entries.iter().find(|(k, _, v)| *k == key && !matches!(v.value, Node::Null)).map(|(_, _, v)| *v)
    }
}

/// The defined roles: their names in document order (for messages), and which have nobody in them.
#[derive(Default)]
struct RoleNames {
    in_order: Vec<String>,
    defined: HashSet<String>,
    empty: HashSet<String>,
}

impl<'s> Checker<'s> {
    fn error(&mut self, node: &N, message: impl Into<String>) {
        let (line, column) = position(node);
        self.errors.push(ConfigError { line, column, message: message.into() });
    }

    /// The text of a scalar: strings as they are, numbers as written in the source.
    fn scalar_text(&self, node: &N) -> Option<String> {
        match &node.value {
            Node::Str(s) => Some(s.clone()),
            Node::Int(_) | Node::Float(_) => Some(self.source_text(node).map_or_else(
                || match &node.value {
                    Node::Int(i) => i.to_string(),
                    Node::Float(f) => f.to_string(),
                    _ => String::new(),
                },
                str::to_owned,
            )),
            _ => None,
        }
    }

    fn source_text(&self, node: &N) -> Option<&'s str> {
        let span = node.defined.span();
        let start = usize::try_from(span.byte_offset()?).ok()?;
        let len = usize::try_from(span.byte_len()?).ok()?;
        let text = self.src.get(start..start.checked_add(len)?)?;
        (!text.is_empty()).then_some(text)
    }

    /// How a node reads in a message: "the string `pm`", "a list", …
    fn describe(&self, node: &N) -> String {
        match &node.value {
            Node::Null => "nothing (null)".to_owned(),
            Node::Bool(b) => format!("`{b}`"),
            Node::Int(_) | Node::Float(_) => {
                format!("the number `{}`", show(&self.scalar_text(node).unwrap_or_default()))
            }
            Node::Str(s) => format!("the string `{}`", show(s)),
            Node::Seq(_) => "a list".to_owned(),
            Node::Map(_) => "a mapping".to_owned(),
        }
    }

    /// The entries of a mapping whose keys are names (roles, environments, categories): checks
    /// that it is a mapping, that keys are strings, and drops (reporting) duplicate keys.
    fn entries<'n>(&mut self, node: &'n N, what: &str, shape: &str) -> Vec<(String, &'n N, &'n N)> {
        let pairs = match &node.value {
            Node::Map(pairs) => pairs,
            Node::Null => return Vec::new(),
            _ => {
                let found = self.describe(node);
                self.error(node, format!("{what} must be a mapping{shape}, found {found}"));
                return Vec::new();
            }
        };
        let mut out: Vec<(String, &'n N, &'n N)> = Vec::new();
        let mut first_at: HashMap<String, (usize, usize)> = HashMap::new();
        for (key, value) in pairs {
            let Some(name) = self.scalar_text(key) else {
                let found = self.describe(key);
                self.error(key, format!("keys in {what} must be names (strings), found {found}"));
                continue;
            };
            if let Some((line, column)) = first_at.get(&name) {
                self.error(
                    key,
                    format!("duplicate key `{}` (first given at line {line}, column {column})", show(&name)),
                );
                continue;
            }
            first_at.insert(name.clone(), position(key));
            out.push((name, key, value));
        }
        out
    }

    /// The entries of a mapping with a fixed set of keys; unknown keys are reported with the
    /// allowed ones and a "did you mean" when one is close.
    fn fields<'n>(&mut self, node: &'n N, what: &str, shape: &str, allowed: &'static [&'static str]) -> Fields<'n> {
        let mut fields = Fields { entries: Vec::new() };
        for (name, key, value) in self.entries(node, what, shape) {
            match allowed.iter().find(|a| **a == name) {
                Some(known) => fields.entries.push((known, key, value)),
                None => {
                    let message = unknown_key_message(&name, what, allowed);
                    self.error(key, message);
                }
            }
        }
        fields
    }

    fn string(&mut self, node: &N, key: &str) -> Option<String> {
        match self.scalar_text(node) {
            Some(s) if s.trim().is_empty() => {
                self.error(node, format!("`{key}` must not be empty"));
                None
            }
            Some(s) if s.chars().any(char::is_control) => {
                self.error(node, format!("`{key}` must not contain control characters"));
                None
            }
            Some(s) => Some(s),
            None => {
                let found = self.describe(node);
                self.error(node, format!("`{key}` must be a string, found {found}"));
                None
            }
        }
    }

    fn boolean(&mut self, node: &N, key: &str) -> Option<bool> {
        if let Node::Bool(b) = node.value {
            return Some(b);
        }
        let found = self.describe(node);
        self.error(node, format!("`{key}` must be `true` or `false`, found {found}"));
        None
    }

    fn list<'n>(&mut self, node: &'n N, key: &str, example: &str) -> Option<&'n [N]> {
        if let Node::Seq(items) = &node.value {
            return Some(items);
        }
        let found = self.describe(node);
        let hint = match &node.value {
            Node::Str(s) => format!(" (for one item, write a list: `[{}]`)", show(s)),
            _ => String::new(),
        };
        self.error(node, format!("`{key}` must be a list{example}, found {found}{hint}"));
        None
    }

    /// A list of non-empty strings, each with its node.
    fn string_list<'n>(&mut self, node: &'n N, key: &str, example: &str) -> Vec<(String, &'n N)> {
        let Some(items) = self.list(node, key, example) else { return Vec::new() };
        let mut out = Vec::new();
        for item in items {
            match self.scalar_text(item) {
                Some(s) if s.trim().is_empty() => self.error(item, format!("an entry of `{key}` is empty")),
                Some(s) if s.chars().any(char::is_control) => {
                    self.error(item, format!("an entry of `{key}` contains control characters"))
                }
                Some(s) => out.push((s, item)),
                None => {
                    let found = self.describe(item);
                    self.error(item, format!("each entry of `{key}` must be a string, found {found}"));
                }
            }
        }
        out
    }

    fn number(&mut self, node: &N, key: &str) -> Option<f64> {
        match node.value {
            Node::Int(i) => Some(i as f64),
            Node::Float(f) => Some(f),
            _ => {
                let found = self.describe(node);
                let hint = match &node.value {
                    Node::Str(s) if s.trim_end().ends_with('%') => " (write the number without `%`)",
                    _ => "",
                };
                self.error(node, format!("`{key}` must be a number, found {found}{hint}"));
                None
            }
        }
    }

    fn policy(&mut self, root: &N) -> Policy {
        let mut policy = Policy::default();
        let top = self.fields(
            root,
            "the policy",
            " with the keys label, roles, environments, ci, report, alerts and notify",
            TOP_KEYS,
        );
        let (roles, role_names) = match top.get("roles") {
            Some(node) => self.roles(node),
            None => (BTreeMap::new(), RoleNames::default()),
        };
        policy.roles = roles;
        if let Some(node) = top.get("label")
            && let Some(label) = self.string(node, "label")
        {
            if label.chars().count() > 50 {
                self.error(node, "`label` must be at most 50 characters (GitHub's limit for a label)");
            } else {
                policy.label = label.trim().to_owned();
            }
        }
        if let Some(node) = top.get("environments") {
            policy.environments = self.environments(node, &role_names);
        }
        if let Some(node) = top.get("ci") {
            policy.ci = self.ci(node, &role_names);
        }
        if let Some(node) = top.get("report") {
            policy.report = self.report(node);
        }
        if let Some(node) = top.get("alerts") {
            policy.alerts = self.alerts(node, &role_names);
        }
        if let Some(node) = top.get("notify") {
            policy.notify = self.notify(node, &role_names);
        }
        policy
    }

    fn alerts(&mut self, node: &N, roles: &RoleNames) -> AlertsPolicy {
        let mut alerts = AlertsPolicy::default();
        let shape = " with `escalate`, `cost_increase_percent` and/or `respond_within`";
        let fields = self.fields(node, "`alerts`", shape, ALERT_KEYS);
        if let Some(node) = fields.get("escalate") {
            let shape = " of categories to roles, like `{ app: backend-lead, cost: pm }`";
            for (name, key, value) in self.entries(node, "`alerts.escalate`", shape) {
                let lower = name.trim().to_ascii_lowercase();
                if !ALERT_CATEGORIES.contains(&lower.as_str()) {
                    let mut message = format!("unknown alert category `{}`", show(&name));
                    if let Some(close) = suggest(&lower, ALERT_CATEGORIES.iter().copied()) {
                        message.push_str(&format!("; did you mean `{close}`?"));
                    }
                    message.push_str(&format!(" (allowed: {})", ALERT_CATEGORIES.join(", ")));
                    self.error(key, message);
                    continue;
                }
                if let Some(role) = self.string(value, &lower)
                    && self.role_reference(value, &role, roles, "the escalation would mention nobody")
                {
                    alerts.escalate.insert(lower, role);
                }
            }
        }
        if let Some(node) = fields.get("cost_increase_percent")
            && let Some(value) = self.number(node, "cost_increase_percent")
        {
            if value < 0.0 || !value.is_finite() {
                let text = self.scalar_text(node).unwrap_or_default();
                self.error(
                    node,
                    format!("`cost_increase_percent` must be a percentage, 0 or more, found `{}`", show(&text)),
                );
            } else {
                alerts.cost_increase_percent = value;
            }
        }
        if let Some(node) = fields.get("respond_within") {
            match &node.value {
                Node::Str(s) => match parse_duration_minutes(s) {
                    Ok(0) => self.error(node, "`respond_within` must be at least one minute"),
                    Ok(minutes) => alerts.respond_within_minutes = minutes,
                    Err(message) => self.error(node, format!("`respond_within`: {message}")),
                },
                _ => {
                    let found = self.describe(node);
                    self.error(node, format!("`respond_within` must be a duration like `30m` or `1h`, found {found}"));
                }
            }
        }
        alerts
    }

    /// `notify:`, a list of `{ on: [events], to: [targets] }`: an unknown event, target or role is
    /// an error; whether the App has the channel is a warning said elsewhere (`notify::warnings`).
    fn notify(&mut self, node: &N, roles: &RoleNames) -> Vec<super::notify::NotifyRule> {
        use super::notify::{NotifyEvent, NotifyRule, NotifyTarget, TargetKind, parse_target};
        let shape = " of rules like `- { on: [deployed], to: [slack:deploys] }`";
        let Some(items) = self.list(node, "notify", shape) else { return Vec::new() };
        let mut rules = Vec::new();
        for item in items {
            if !matches!(item.value, Node::Map(_)) {
                let found = self.describe(item);
                self.error(item, format!("each `notify` rule must be a mapping with `on` and `to`, found {found}"));
                continue;
            }
            let fields = self.fields(item, "a `notify` rule", " with `on` and `to`", NOTIFY_KEYS);
            let mut rule = NotifyRule::default();
            match fields.get("on") {
                Some(on) => {
                    if matches!(&on.value, Node::Seq(items) if items.is_empty()) {
                        self.error(on, "`on` is empty: name at least one event, like `[deployed]`");
                    }
                    for (name, entry) in self.string_list(on, "on", " of events, like `[deployed, deploy_failed]`") {
                        match NotifyEvent::parse(name.trim()) {
                            Some(e) if !rule.on.contains(&e) => rule.on.push(e),
                            Some(_) => {}
                            None => {
                                let mut message = format!("unknown event `{}`", show(&name));
                                if let Some(close) = suggest(name.trim(), NotifyEvent::names()) {
                                    message.push_str(&format!("; did you mean `{close}`?"));
                                }
                                message.push_str(&format!(" (allowed: {})", NotifyEvent::names().join(", ")));
                                self.error(entry, message);
                            }
                        }
                    }
                }
                None => self.error(item, "this `notify` rule has no `on` (write `on: [deployed]`)"),
            }
            match fields.get("to") {
                Some(to) => {
                    if matches!(&to.value, Node::Seq(items) if items.is_empty()) {
                        self.error(to, "`to` is empty: name at least one target, like `[slack:deploys]`");
                    }
                    let example = " of targets, like `[slack:deploys, email:oncall@example.com, role:pm]`";
                    for (text, entry) in self.string_list(to, "to", example) {
                        match parse_target(&text) {
                            Ok(TargetKind::Role(role))
                                if !self.role_reference(entry, &role, roles, "nobody would be notified") => {}
                            Ok(kind) => {
                                let (line, column) = position(entry);
                                rule.to.push(NotifyTarget { kind, line, column });
                            }
                            Err(message) => self.error(entry, message),
                        }
                    }
                }
                None => self.error(item, "this `notify` rule has no `to` (write `to: [slack:deploys]`)"),
            }
            rules.push(rule);
        }
        rules
    }

    fn roles(&mut self, node: &N) -> (BTreeMap<String, Role>, RoleNames) {
        let mut roles = BTreeMap::new();
        let mut names = RoleNames::default();
        for (name, key, value) in self.entries(node, "`roles`", " of role names to `{ users: […], teams: […] }`") {
            if !valid_name(&name) {
                self.error(
                    key,
                    format!("role name `{}` may contain only letters, digits, `-`, `_` and `.`", show(&name)),
                );
            }
            names.in_order.push(name.clone());
            names.defined.insert(name.clone());
            let what = format!("`roles.{}`", show(&name));
            if matches!(value.value, Node::Null) {
                self.error(
                    key,
                    format!("role `{}` is empty: give it `users`, `teams` and/or `permission`", show(&name)),
                );
                continue;
            }
            let fields = self.fields(value, &what, " with `users`, `teams` and/or `permission`", ROLE_KEYS);
            let mut role = Role::default();
            if let Some(users) = fields.get("users") {
                for (login, item) in self.string_list(users, "users", " of GitHub logins, like `[alice, bob]`") {
                    match check_login(&login) {
                        Ok(()) => role.users.push(login),
                        Err(message) => self.error(item, message),
                    }
                }
            }
            if let Some(teams) = fields.get("teams") {
                for (team, item) in self.string_list(teams, "teams", " of teams, like `[acme/sre]`") {
                    match parse_team(&team) {
                        Ok(team) => role.teams.push(team),
                        Err(message) => self.error(item, message),
                    }
                }
            }
            if let Some(node) = fields.get("permission")
                && let Some(text) = self.string(node, "permission")
            {
                match Permission::parse(text.trim()) {
                    Some(p) => role.permission = Some(p),
                    None => self.error(
                        node,
                        format!(
                            "`permission` must be one of {}, found `{}`",
                            Permission::NAMES.join(", "),
                            show(&text)
                        ),
                    ),
                }
            }
            if role.users.is_empty() && role.teams.is_empty() && role.permission.is_none() {
                names.empty.insert(name.clone());
            }
            roles.insert(name, role);
        }
        (roles, names)
    }

    /// Checks a reference to a role (an approval or `escalate_to`).
    fn role_reference(&mut self, node: &N, role: &str, roles: &RoleNames, consequence: &str) -> bool {
        if roles.defined.contains(role) {
            if roles.empty.contains(role) {
                self.error(node, format!("role `{}` has no users and no teams: {consequence}", show(role)));
                return false;
            }
            return true;
        }
        let mut message = format!("unknown role `{}`", show(role));
        if roles.in_order.is_empty() {
            message.push_str(" (no roles are defined: define it under `roles:`)");
        } else {
            message.push_str(&format!(" (defined: {})", list_of(&roles.in_order)));
            if let Some(close) = suggest(role, roles.in_order.iter().map(String::as_str)) {
                message.push_str(&format!("; did you mean `{}`?", show(close)));
            }
        }
        self.error(node, message);
        false
    }

    fn environments(&mut self, node: &N, roles: &RoleNames) -> BTreeMap<String, Environment> {
        let mut environments: BTreeMap<String, Environment> = BTreeMap::new();
        // Lowercased name → the name as first written and where.
        let mut seen: HashMap<String, (String, (usize, usize))> = HashMap::new();
        for (name, key, value) in self.entries(node, "`environments`", " of environment names to their rules") {
            if name.trim().is_empty() || name.chars().count() > 255 {
                self.error(key, "an environment name must have 1 to 255 characters");
                continue;
            }
            let folded = fold(&name);
            if let Some((first, (line, column))) = seen.get(&folded) {
                let message = format!(
                    "environment `{}` is already defined as `{}` at line {line}, column {column} \
                     (environment names are case-insensitive)",
                    show(&name),
                    show(first)
                );
                self.error(key, message);
                continue;
            }
            seen.insert(folded, (name.clone(), position(key)));
            let env = self.environment(value, &name, roles);
            environments.insert(name, env);
        }
        environments
    }

    fn environment(&mut self, node: &N, name: &str, roles: &RoleNames) -> Environment {
        let mut env = Environment::default();
        let what = format!("`environments.{}`", show(name));
        let fields = self.fields(node, &what, " of settings such as `approvals` and `deploy`", ENV_KEYS);
        if let Some(approvals) = fields.get("approvals") {
            let example = " of approval rules, like `- role: pm`";
            for item in self.list(approvals, "approvals", example).unwrap_or_default() {
                if let Some(rule) = self.approval(item, roles) {
                    env.approvals.push(rule);
                }
            }
        }
        if let Some(node) = fields.get("require_checks") {
            match &node.value {
                Node::Str(s) if s.trim().eq_ignore_ascii_case("all") => env.require_checks = RequireChecks::All,
                Node::Seq(_) => {
                    let names = self.string_list(node, "require_checks", "");
                    env.require_checks = RequireChecks::Named(names.into_iter().map(|(n, _)| n).collect());
                }
                _ => {
                    let found = self.describe(node);
                    let hint = match &node.value {
                        Node::Str(s) => format!(" (to require only that check, write `[{}]`)", show(s)),
                        _ => String::new(),
                    };
                    self.error(
                        node,
                        format!("`require_checks` must be `all` or a list of check names, found {found}{hint}"),
                    );
                }
            }
        }
        for (key, slot) in [
            ("require_staging_first", &mut env.require_staging_first),
            ("allow_self_approval", &mut env.allow_self_approval),
            ("allow_multiple_roles", &mut env.allow_multiple_roles),
        ] {
            if let Some(node) = fields.get(key)
                && let Some(b) = self.boolean(node, key)
            {
                *slot = b;
            }
        }
        if let Some(node) = fields.get("staging_environment")
            && let Some(s) = self.string(node, "staging_environment")
        {
            env.staging_environment = s.trim().to_owned();
        }
        if let Some(node) = fields.get("max_rollback_minutes") {
            env.max_rollback_minutes = self.max_rollback_minutes(node);
        }
        if let Some(node) = fields.get("deploy") {
            let text = self.scalar_text(node).unwrap_or_default();
            let modes = [DeployMode::ProtectionRule, DeployMode::Deployment, DeployMode::Workflow, DeployMode::None];
            match modes.into_iter().find(|m| m.as_str().eq_ignore_ascii_case(text.trim())) {
                Some(mode) if matches!(node.value, Node::Str(_)) => env.deploy = mode,
                _ => {
                    let found = self.describe(node);
                    let mut message = format!(
                        "`deploy` must be `protection_rule`, `workflow`, `deployment` or `none`, found {found}"
                    );
                    if let Some(close) = suggest(&text, modes.iter().map(|m| m.as_str())) {
                        message.push_str(&format!("; did you mean `{close}`?"));
                    }
                    self.error(node, message);
                }
            }
        }
        if let Some(node) = fields.get("branch")
            && let Some(branch) = self.string(node, "branch")
        {
            if branch.trim().chars().any(char::is_whitespace) {
                self.error(node, format!("`branch` must be a branch name, found `{}`", show(&branch)));
            } else {
                env.branch = Some(branch.trim().to_owned());
            }
        }
        if let Some(node) = fields.get("approvals_expire_after")
            && let Some(minutes) = self.positive_duration(node, "approvals_expire_after")
        {
            env.approvals_expire_after = Some(Duration::from_secs(u64::from(minutes) * 60));
        }
        if let Some(node) = fields.get("freeze") {
            env.freeze = self.freeze(node);
        }
        env
    }

    /// A duration more than zero (`30m`, `1h`, `24h`, `7d`), in whole minutes (seconds round up).
    fn positive_duration(&mut self, node: &N, key: &str) -> Option<u32> {
        match &node.value {
            Node::Str(s) => match parse_duration_minutes(s) {
                Ok(0) => {
                    self.error(node, format!("`{key}` must be more than zero, found `{}`", show(s)));
                    None
                }
                Ok(minutes) => Some(minutes),
                Err(message) => {
                    self.error(node, format!("`{key}`: {message}"));
                    None
                }
            },
            Node::Int(_) => {
                let text = self.scalar_text(node).unwrap_or_default();
                self.error(
                    node,
                    format!("`{key}` needs a unit: write `{}m` for minutes, or `1h`, `24h`, `7d`…", show(&text)),
                );
                None
            }
            _ => {
                let found = self.describe(node);
                self.error(node, format!("`{key}` must be a duration like `30m`, `1h`, `24h` or `7d`, found {found}"));
                None
            }
        }
    }

    /// `freeze:`, a list of windows; refused when they never end (see [`Freeze::ending`]).
    fn freeze(&mut self, node: &N) -> Freeze {
        let example = " of windows, like `- { cron: \"0 16 * * FRI\", duration: 64h, timezone: Europe/Berlin, \
                       reason: weekend }`";
        let Some(items) = self.list(node, "freeze", example) else { return Freeze::default() };
        if items.len() > freeze::MAX_WINDOWS {
            self.error(
                node,
                format!(
                    "`freeze` has {} windows; an environment may have at most {}",
                    items.len(),
                    freeze::MAX_WINDOWS
                ),
            );
            return Freeze::default();
        }
        let mut windows = Vec::new();
        let mut nodes = Vec::new();
        for item in items {
            if let Some(window) = self.freeze_window(item) {
                windows.push(window);
                nodes.push(item);
            }
        }
        let freeze = Freeze::new(windows);
        // Checked even when some windows were refused: if these never end, all of them never do.
        match self.freeze_ending(&freeze) {
            Ending::Ends => {}
            Ending::TooComplex => self.error(
                node,
                "these freeze windows are too fine-grained to check that they end: use fewer windows, or ones \
                 that start less often",
            ),
            Ending::Never => {
                let mut alone = false;
                for (window, item) in freeze.windows.iter().zip(&nodes) {
                    if matches!(window.schedule, Schedule::Cron(_))
                        && self.freeze_ending(&Freeze::new(vec![window.clone()])) == Ending::Never
                    {
                        alone = true;
                        let message = format!(
                            "this freeze window never ends: {} starts again before it is over, so the gate would \
                             never open (no break in the four years from 2027-01-01); shorten `duration` or make \
                             it start less often",
                            window.describe()
                        );
                        self.error(item, message);
                    }
                }
                if !alone {
                    self.error(
                        node,
                        "together, these freeze windows never end: each starts before another is over, so the gate \
                         would never open (no break in the four years from 2027-01-01); shorten a `duration` or \
                         leave a gap between them",
                    );
                }
            }
        }
        freeze
    }

    /// [`Freeze::ending_within`], taking its steps from what the policy's checks have left.
    fn freeze_ending(&mut self, freeze: &Freeze) -> Ending {
        if freeze.windows.iter().all(|w| !matches!(w.schedule, Schedule::Cron(_))) {
            return Ending::Ends;
        }
        let mut budget = Budget::new(self.freeze_steps.left().min(freeze::STEPS));
        let before = budget.left();
        let ending = freeze.ending_within(&mut budget);
        self.freeze_steps.spend(before - budget.left());
        ending
    }

    fn freeze_window(&mut self, item: &N) -> Option<Window> {
        let shape = " like `{ cron: \"0 16 * * FRI\", duration: 64h, timezone: Europe/Berlin, reason: weekend }` or \
                     `{ from: 2026-12-23, to: 2027-01-02, timezone: Europe/Berlin, reason: holidays }`";
        if !matches!(item.value, Node::Map(_)) {
            let found = self.describe(item);
            self.error(item, format!("each freeze window must be a mapping{shape}, found {found}"));
            return None;
        }
        let fields = self.fields(item, "a freeze window", shape, FREEZE_KEYS);
        let (cron, duration, from, to) =
            (fields.get("cron"), fields.get("duration"), fields.get("from"), fields.get("to"));
        let recurring = cron.is_some() || duration.is_some();
        let dated = from.is_some() || to.is_some();
        let schedule = match (recurring, dated) {
            (true, true) => {
                self.error(
                    item,
                    "a freeze window is either `cron` with `duration`, or `from` with `to`, not both: make it two \
                     windows",
                );
                None
            }
            (false, false) => {
                self.error(
                    item,
                    "this freeze window says not when it is: give it `cron` and `duration` (recurring), or `from` \
                     and `to` (dates)",
                );
                None
            }
            (true, false) => {
                let minutes = match duration {
                    Some(node) => self.positive_duration(node, "duration").filter(|minutes| {
                        let ok = u64::from(*minutes) * 60 <= freeze::MAX_CRON_DURATION.as_secs();
                        if !ok {
                            let text = self.scalar_text(node).unwrap_or_default();
                            self.error(
                                node,
                                format!("a recurring freeze window may last at most 366d, found `{}`", show(&text)),
                            );
                        }
                        ok
                    }),
                    None => {
                        self.error(item, "this freeze window has a `cron` but no `duration` (write `duration: 64h`)");
                        None
                    }
                };
                let expression = match cron {
                    Some(node) => {
                        match &node.value {
                            Node::Str(s) => Some((s.clone(), node)),
                            _ => {
                                let found = self.describe(node);
                                self.error(
                                node,
                                format!("`cron` must be a cron expression in quotes, like \"0 16 * * FRI\", found {found}"),
                            );
                                None
                            }
                        }
                    }
                    None => {
                        self.error(
                            item,
                            "this freeze window has a `duration` but no `cron` (write `cron: \"0 16 * * FRI\"`)",
                        );
                        None
                    }
                };
                match (expression, minutes) {
                    (Some((text, node)), Some(minutes)) => {
                        match CronSchedule::parse(&text, Duration::from_secs(u64::from(minutes) * 60)) {
                            Ok(c) if !c.fires(&mut self.freeze_steps) => {
                                let message = format!(
                                    "`cron`: `{}` never fires (no day of the four years from 2027-01-01 matches it)",
                                    show(c.expression())
                                );
                                self.error(node, message);
                                None
                            }
                            Ok(c) => Some(Schedule::Cron(Box::new(c))),
                            Err(message) => {
                                self.error(node, format!("`cron`: {}", show_long(&message, 300)));
                                None
                            }
                        }
                    }
                    _ => None,
                }
            }
            (false, true) => {
                let from = self.date_of(item, from, "from", "to");
                let to = self.date_of(item, to, "to", "from");
                match (from, to) {
                    (Some((from, _)), Some((to, node))) if to < from => {
                        self.error(
                            node,
                            format!(
                                "`to` ({to}) is before `from` ({from}); the `to` day is included, so a one-day \
                                 window is `from: {from}, to: {from}`"
                            ),
                        );
                        None
                    }
                    (Some((from, _)), Some((to, _))) => Some(Schedule::Dates { from, to }),
                    _ => None,
                }
            }
        };
        let timezone = match fields.get("timezone") {
            Some(node) => self.freeze_timezone(node),
            None => {
                self.error(
                    item,
                    "this freeze window has no `timezone` (write `timezone: Europe/Berlin`, or `UTC`): its times \
                     are local times",
                );
                None
            }
        };
        let reason = match fields.get("reason") {
            Some(node) => match self.string(node, "reason") {
                Some(r) if r.trim().chars().count() > MAX_REASON_CHARS => {
                    self.error(node, format!("`reason` must be at most {MAX_REASON_CHARS} characters"));
                    None
                }
                other => other,
            },
            None => {
                self.error(item, "this freeze window has no `reason` (write `reason: weekend`): the gate shows it");
                None
            }
        };
        let (timezone, zone) = timezone?;
        Some(Window { schedule: schedule?, timezone, zone, reason: reason?.trim().to_owned() })
    }

    /// The day `key` of a freeze window (`item`) with its node, the window's error when it has
    /// only `other`.
    fn date_of<'n>(
        &mut self,
        item: &N,
        node: Option<&'n N>,
        key: &str,
        other: &str,
    ) -> Option<(chrono::NaiveDate, &'n N)> {
        match node {
            Some(node) => self.date(node, key).map(|d| (d, node)),
            None => {
                self.error(
                    item,
                    format!("this freeze window has a `{other}` but no `{key}` (write `{key}: 2026-12-23`)"),
                );
                None
            }
        }
    }

    /// A day written `YYYY-MM-DD`.
    fn date(&mut self, node: &N, key: &str) -> Option<chrono::NaiveDate> {
        let text = match &node.value {
            Node::Str(s) => Some(s.trim()),
            _ => None,
        };
        let strict = |s: &str| {
            s.len() == 10
                && s.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() })
        };
        if let Some(s) = text
            && strict(s)
        {
            if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                return Some(d);
            }
            self.error(node, format!("`{key}`: `{}` is not a day of the calendar", show(s)));
            return None;
        }
        let found = self.describe(node);
        self.error(node, format!("`{key}` must be a day written YYYY-MM-DD, like 2026-12-23, found {found}"));
        None
    }

    /// A freeze window's `timezone`: an IANA name (or `UTC`, `±HH:MM`), with a "did you mean".
    fn freeze_timezone(&mut self, node: &N) -> Option<(String, super::zone::Zone)> {
        let text = match &node.value {
            Node::Str(s) => Some(s.as_str()),
            _ => None,
        };
        if let Some(zone) = text.and_then(parse_timezone) {
            return Some(zone);
        }
        let found = self.describe(node);
        let mut message = format!(
            "`timezone` must be an IANA time zone name like `Europe/Berlin` or `America/New_York` (or `UTC`, or a \
             fixed offset like `+05:30`), found {found}"
        );
        if let Some(text) = text
            && self.zone_hints > 0
        {
            self.zone_hints -= 1;
            if let Some(close) = suggest_zone(text) {
                message.push_str(&format!("; did you mean `{close}`?"));
            }
        }
        self.error(node, message);
        None
    }

    fn max_rollback_minutes(&mut self, node: &N) -> Option<u32> {
        match node.value {
            Node::Int(i) if i < 1 => {
                let text = self.scalar_text(node).unwrap_or_default();
                self.error(node, format!("`max_rollback_minutes` must be at least 1, found `{}`", show(&text)));
                None
            }
            Node::Int(i) => match u32::try_from(i) {
                Ok(minutes) => Some(minutes),
                Err(_) => {
                    self.error(node, format!("`max_rollback_minutes` must be at most {}", u32::MAX));
                    None
                }
            },
            _ => {
                let found = self.describe(node);
                self.error(
                    node,
                    format!("`max_rollback_minutes` must be a whole number of minutes, like `5`, found {found}"),
                );
                None
            }
        }
    }

    fn approval(&mut self, item: &N, roles: &RoleNames) -> Option<ApprovalRule> {
        if !matches!(item.value, Node::Map(_)) {
            let found = self.describe(item);
            let hint = match &item.value {
                Node::Str(s) => format!(" (write `- role: {}`)", show(s)),
                _ => String::new(),
            };
            self.error(item, format!("each approval must be a mapping like `- role: pm`, found {found}{hint}"));
            return None;
        }
        let fields = self.fields(item, "an approval rule", "", APPROVAL_KEYS);
        let role = match fields.get("role") {
            Some(node) => {
                let role = self.string(node, "role");
                match role {
                    Some(role) if self.role_reference(node, &role, roles, "nobody could give this approval") => {
                        Some(role)
                    }
                    _ => None,
                }
            }
            None => {
                self.error(item, "this approval has no `role` (write `role: <name>`)");
                None
            }
        };
        let mut patterns = Vec::new();
        let mut globs_ok = true;
        if let Some(node) = fields.get("when_paths") {
            let example = " of globs, like `[\"apps/backend/**\"]`";
            for (pattern, item) in self.string_list(node, "when_paths", example) {
                match compile_glob(&pattern) {
                    Ok(glob) => patterns.push((pattern, glob, item)),
                    Err(err) => {
                        globs_ok = false;
                        self.error(item, glob_message(&pattern, &err));
                    }
                }
            }
        }
        let role = role?;
        if !globs_ok {
            return None;
        }
        let when_paths: Vec<String> = patterns.iter().map(|(p, _, _)| p.clone()).collect();
        let matcher = if patterns.is_empty() {
            None
        } else {
            let mut set = GlobSetBuilder::new();
            for (_, glob, _) in &patterns {
                set.add(glob.clone());
            }
            match set.build() {
                Ok(set) => Some(set),
                Err(err) => {
                    // Compiling the set can fail (a pattern too large): point at that pattern.
                    let culprit = patterns
                        .iter()
                        .find(|(_, glob, _)| Some(glob.regex()) == err.glob() || Some(glob.glob()) == err.glob());
                    match culprit {
                        Some((pattern, _, node)) => self.error(node, glob_message(pattern, &err)),
                        None => self
                            .error(item, format!("invalid `when_paths`: {}", show_long(&err.kind().to_string(), 200))),
                    }
                    return None;
                }
            }
        };
        Some(ApprovalRule { role, when_paths, matcher })
    }

    fn ci(&mut self, node: &N, roles: &RoleNames) -> CiPolicy {
        let mut ci = CiPolicy::default();
        let fields = self.fields(node, "`ci`", "", CI_KEYS);
        if let Some(node) = fields.get("incident_branches") {
            let branches = self.string_list(node, "incident_branches", " of branch names, like `[main]`");
            ci.incident_branches = Vec::new();
            for (branch, item) in branches {
                if branch.trim().chars().any(char::is_whitespace) {
                    self.error(item, format!("`{}` is not a branch name", show(&branch)));
                } else {
                    ci.incident_branches.push(branch.trim().to_owned());
                }
            }
        }
        if let Some(node) = fields.get("ignore_conclusions") {
            let conclusions =
                self.string_list(node, "ignore_conclusions", " of conclusions, like `[cancelled, skipped]`");
            ci.ignore_conclusions = Vec::new();
            for (conclusion, item) in conclusions {
                let lower = conclusion.trim().to_ascii_lowercase();
                if lower == "failure" || lower == "success" {
                    self.error(
                        item,
                        format!("`{lower}` cannot be ignored: it is what tells a failed run from a good one"),
                    );
                } else if CONCLUSIONS.contains(&lower.as_str()) {
                    ci.ignore_conclusions.push(lower);
                } else {
                    let allowed: Vec<&str> =
                        CONCLUSIONS.iter().copied().filter(|c| *c != "failure" && *c != "success").collect();
                    let mut message = format!("unknown conclusion `{}`", show(&conclusion));
                    if let Some(close) = suggest(&lower, allowed.iter().copied()) {
                        message.push_str(&format!("; did you mean `{close}`?"));
                    }
                    message.push_str(&format!(" (allowed: {})", allowed.join(", ")));
                    self.error(item, message);
                }
            }
        }
        if let Some(node) = fields.get("debug_within") {
            match &node.value {
                Node::Str(s) => match parse_duration_minutes(s) {
                    Ok(0) => self.error(node, "`debug_within` must be at least one minute"),
                    Ok(minutes) => ci.debug_within_minutes = minutes,
                    Err(message) => self.error(node, format!("`debug_within`: {message}")),
                },
                Node::Int(_) => {
                    let text = self.scalar_text(node).unwrap_or_default();
                    self.error(
                        node,
                        format!("`debug_within` needs a unit: write `{}m` for minutes or `1h`, `2d`…", show(&text)),
                    );
                }
                _ => {
                    let found = self.describe(node);
                    self.error(node, format!("`debug_within` must be a duration like `30m` or `1h`, found {found}"));
                }
            }
        }
        if let Some(node) = fields.get("escalate_to")
            && let Some(role) = self.string(node, "escalate_to")
            && self.role_reference(node, &role, roles, "the escalation would mention nobody")
        {
            ci.escalate_to = Some(role);
        }
        if let Some(node) = fields.get("block_deploys_while_red")
            && let Some(b) = self.boolean(node, "block_deploys_while_red")
        {
            ci.block_deploys_while_red = b;
        }
        if let Some(node) = fields.get("categories") {
            let shape = " of categories to patterns, like `{ Lint: [eslint], Test: [jest] }`";
            for (name, key, value) in self.entries(node, "`ci.categories`", shape) {
                let Some(canonical) = CATEGORIES.iter().find(|c| c.eq_ignore_ascii_case(name.trim())) else {
                    let mut message = format!("unknown category `{}`", show(&name));
                    if let Some(close) = suggest(&name, CATEGORIES.iter().copied()) {
                        message.push_str(&format!("; did you mean `{close}`?"));
                    }
                    message.push_str(&format!(" (allowed: {})", CATEGORIES.join(", ")));
                    self.error(key, message);
                    continue;
                };
                let patterns: Vec<String> = if matches!(value.value, Node::Null) {
                    Vec::new()
                } else {
                    let example = " of name fragments, like `[eslint, prettier]`";
                    self.string_list(value, canonical, example).into_iter().map(|(p, _)| p).collect()
                };
                if let Some(rule) = ci.categories.iter_mut().find(|r| r.category == *canonical) {
                    rule.patterns = patterns;
                }
            }
        }
        ci
    }

    fn report(&mut self, node: &N) -> ReportPolicy {
        let mut report = ReportPolicy::default();
        let fields = self.fields(node, "`report`", " with `weekly` and/or `targets`", REPORT_KEYS);
        if let Some(node) = fields.get("weekly") {
            report.weekly = self.weekly(node);
        }
        if let Some(node) = fields.get("targets") {
            let fields = self.fields(node, "`report.targets`", "", TARGET_KEYS);
            let targets = &mut report.targets;
            for (key, slot, percentage) in [
                ("uptime", &mut targets.uptime, true),
                ("deploy_success", &mut targets.deploy_success, true),
                ("ci_green", &mut targets.ci_green, true),
                ("mttd_minutes", &mut targets.mttd_minutes, false),
                ("mttr_minutes", &mut targets.mttr_minutes, false),
            ] {
                let Some(node) = fields.get(key) else { continue };
                let Some(value) = self.number(node, key) else { continue };
                let text = self.scalar_text(node).unwrap_or_default();
                if percentage && !(0.0..=100.0).contains(&value) {
                    self.error(
                        node,
                        format!("`{key}` is a percentage: it must be between 0 and 100, found `{}`", show(&text)),
                    );
                } else if !percentage && (value < 0.0 || !value.is_finite()) {
                    self.error(
                        node,
                        format!("`{key}` must be a number of minutes, 0 or more, found `{}`", show(&text)),
                    );
                } else {
                    *slot = value;
                }
            }
        }
        report
    }

    fn weekly(&mut self, node: &N) -> Option<WeeklySchedule> {
        let shape = " like `{ day: monday, time: \"09:30\", timezone: UTC }`";
        if !matches!(node.value, Node::Map(_)) {
            let found = self.describe(node);
            self.error(node, format!("`weekly` must be a mapping{shape}, found {found}"));
            return None;
        }
        let fields = self.fields(node, "`report.weekly`", shape, WEEKLY_KEYS);
        let mut schedule = WeeklySchedule::default();
        if let Some(node) = fields.get("day") {
            let text = self.scalar_text(node).unwrap_or_default();
            match Weekday::from_name(&text) {
                Some(day) if matches!(node.value, Node::Str(_)) => schedule.day = day,
                _ => {
                    let found = self.describe(node);
                    let mut message = format!("`day` must be a day of the week, `monday` to `sunday`, found {found}");
                    if let Some(close) = suggest(&text.to_ascii_lowercase(), Weekday::ALL.iter().map(|d| d.as_str())) {
                        message.push_str(&format!("; did you mean `{close}`?"));
                    }
                    self.error(node, message);
                }
            }
        }
        if let Some(node) = fields.get("time") {
            let text = match &node.value {
                Node::Str(s) => Some(s.as_str()),
                _ => None,
            };
            match text.and_then(parse_time) {
                Some((hour, minute)) => (schedule.hour, schedule.minute) = (hour, minute),
                None => {
                    let found = self.describe(node);
                    self.error(
                        node,
                        format!("`time` must be a time of day written HH:MM, like \"09:30\", found {found}"),
                    );
                }
            }
        }
        if let Some(node) = fields.get("timezone") {
            let text = match &node.value {
                Node::Str(s) => Some(s.as_str()),
                _ => None,
            };
            match text.and_then(parse_timezone) {
                Some((zone, _)) => schedule.timezone = zone,
                None => {
                    let found = self.describe(node);
                    self.error(
                        node,
                        format!(
                            "`timezone` must be `UTC`, a fixed offset from UTC like `+02:00` or `-05:30`, \
                             or an IANA time zone name like `Europe/Berlin`, found {found}"
                        ),
                    );
                }
            }
        }
        Some(schedule)
    }
}

/// Where a node is, 1-based: where it is defined (for an alias or a merged value, the anchored
/// text, which is where a fix goes), else where it is used, else the start of the file.
fn position(node: &N) -> (usize, usize) {
    [node.defined, node.referenced]
        .into_iter()
        .find(|l| l.line() > 0)
        .map_or((1, 1), |l| (to_usize(l.line()), to_usize(l.column()).max(1)))
}

fn unknown_key_message(name: &str, what: &str, allowed: &[&str]) -> String {
    if name == "dismiss_stale_approvals" {
        return "`dismiss_stale_approvals` was removed: approvals are always bound to the commit they were given \
                for, and a new push makes them stale; delete this line"
            .to_owned();
    }
    let mut message = format!("unknown key `{}` in {what}", show(name));
    if let Some(close) = suggest(name, allowed.iter().copied()) {
        message.push_str(&format!("; did you mean `{close}`?"));
    } else if let Some((_, section)) = SECTIONS.iter().find(|(keys, _)| keys.contains(&name)) {
        message.push_str(&format!("; `{name}` belongs {section}"));
    }
    message.push_str(&format!(" (allowed: {})", allowed.join(", ")));
    message
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Bounded, so that a hostile file cannot make suggestions cost quadratic time.
    const MAX_LEN: usize = 64;
    const MAX_CANDIDATES: usize = 100;
    let word_len = word.chars().count();
    if word_len == 0 || word_len > MAX_LEN {
        return None;
    }
    let candidates: Vec<&'a str> = candidates.into_iter().take(MAX_CANDIDATES + 1).collect();
    if candidates.len() > MAX_CANDIDATES {
        return None;
    }
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates.into_iter().filter(|c| c.chars().count() <= MAX_LEN) {
        let candidate_lower = candidate.to_lowercase();
        let distance = if candidate_lower == lower {
            0
        } else if (word_len >= 3 && (candidate_lower.starts_with(&lower) || lower.starts_with(&candidate_lower)))
            || (word_len >= 4 && (candidate_lower.contains(&lower) || lower.contains(&candidate_lower)))
        {
            1
        } else {
            // Optimal string alignment over chars: a swap of two neighbours is one edit (`lable`).
            strsim::osa_distance(&lower, &candidate_lower)
        };
        let limit = (word_len.max(candidate.chars().count()) / 3).max(1);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// Compiles one `when_paths` glob: `*` stays within a directory, a trailing `/` means everything
/// below, a leading `/` or `./` is dropped (changed files are repository-relative).
fn compile_glob(pattern: &str) -> Result<Glob, globset::Error> {
    let trimmed = pattern.trim();
    let mut normalized = trimmed.strip_prefix("./").unwrap_or(trimmed).trim_start_matches('/').to_owned();
    if normalized.ends_with('/') {
        normalized.push_str("**");
    }
    GlobBuilder::new(&normalized).literal_separator(true).backslash_escape(true).build()
}

fn glob_message(pattern: &str, err: &globset::Error) -> String {
    if pattern.trim().is_empty() {
        return "a `when_paths` glob is empty".to_owned();
    }
    format!("invalid glob `{}`: {}", show(pattern), show_long(&err.kind().to_string(), 200))
}

fn check_login(login: &str) -> Result<(), String> {
    let login = login.trim();
    if let Some(rest) = login.strip_prefix('@') {
        return Err(format!("write the login without `@`: `{}`", show(rest)));
    }
    if login.contains('/') {
        return Err(format!("`{}` looks like a team: list it under `teams`", show(login)));
    }
    let valid = !login.is_empty()
        && login.chars().count() <= 39
        && !login.starts_with('-')
        && login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!("`{}` is not a GitHub login (letters, digits and hyphens, at most 39 characters)", show(login)))
    }
}

fn parse_team(team: &str) -> Result<TeamRef, String> {
    let text = team.trim();
    if let Some(rest) = text.strip_prefix('@') {
        return Err(format!("write the team without `@`: `{}`", show(rest)));
    }
    let explain = || format!("team `{}` must be written `org/team-slug`, like `acme/sre`", show(text));
    let (org, slug) = text.split_once('/').ok_or_else(explain)?;
    let org_ok = !org.is_empty()
        && org.chars().count() <= 39
        && !org.starts_with('-')
        && org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let slug_ok = !slug.is_empty() && slug.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if org_ok && slug_ok { Ok(TeamRef { org: org.to_owned(), slug: slug.to_owned() }) } else { Err(explain()) }
}

/// Role names: letters, digits, `-`, `_`, `.`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `HH:MM` (or `H:MM`) → (hour, minute).
fn parse_time(s: &str) -> Option<(u32, u32)> {
    let (h, m) = s.trim().split_once(':')?;
    let digits = |t: &str, max_len: usize| {
        (!t.is_empty() && t.len() <= max_len && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse::<u32>().ok())?
    };
    let hour = digits(h, 2)?;
    let minute = if m.len() == 2 { digits(m, 2)? } else { return None };
    (hour < 24 && minute < 60).then_some((hour, minute))
}

/// The IANA zone name closest to `s`: the same name in other case, the same city (`Berlin`), or
/// one or two typing mistakes away (`Europe/Berlinn`).
fn suggest_zone(s: &str) -> Option<&'static str> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > 64 {
        return None;
    }
    let names = || chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
    if let Some(name) = names().find(|n| n.eq_ignore_ascii_case(s)) {
        return Some(name);
    }
    let city = s.rsplit('/').next().unwrap_or(s).replace(' ', "_");
    if let Some(name) =
        names().find(|n| n.contains('/') && n.rsplit('/').next().is_some_and(|c| c.eq_ignore_ascii_case(&city)))
    {
        return Some(name);
    }
    let lower = s.to_lowercase();
    let limit = (s.chars().count() / 5).max(1);
    names()
        .filter(|n| n.len().abs_diff(s.len()) <= limit)
        .map(|n| (strsim::osa_distance(&lower, &n.to_lowercase()), n))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, n)| n)
}

/// `UTC` or `±HH:MM` (up to ±14:00) → (normalized text, minutes east of UTC).
fn parse_timezone(s: &str) -> Option<(String, super::zone::Zone)> {
    super::zone::Zone::parse(s)
}

/// Names for a message: `a, b, c`, at most ten of them.
fn list_of(names: &[String]) -> String {
    const MAX: usize = 10;
    let mut shown: Vec<String> = names.iter().take(MAX).map(|n| show(n)).collect();
    if names.len() > MAX {
        shown.push(format!("and {} more", names.len() - MAX));
    }
    shown.join(", ")
}

/// Case-insensitive comparison (Unicode lowercase, character by character).
pub fn eq_fold(a: &str, b: &str) -> bool {
    a == b || a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
}

/// The key [`eq_fold`] compares by.
fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// User text for a message: control characters escaped, cut at 60 characters.
fn show(s: &str) -> String {
    show_long(s, 60)
}

fn show_long(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testutil::XorShift;

    fn errors(yaml: &str) -> Vec<ConfigError> {
        match parse(yaml) {
            Ok(policy) => panic!("expected errors, got {policy:#?}"),
            Err(errors) => errors,
        }
    }

    /// The one error of `yaml`, as `(line, column, message)`.
    fn one_error(yaml: &str) -> (usize, usize, String) {
        let errors = errors(yaml);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = &errors[0];
        (e.line, e.column, e.message.clone())
    }

    fn ok(yaml: &str) -> Policy {
        match parse(yaml) {
            Ok(policy) => policy,
            Err(errors) => panic!("expected a policy, got {errors:#?}"),
        }
    }

    const ROLES: &str = "roles:\n  pm: { users: [alice] }\n  backend-lead: { teams: [acme/backend-leads] }\n";

    // ----- the default policy ------------------------------------------------------------------

    #[test]
    fn the_spec_yaml_parses_to_exactly_the_default_policy() {
        assert_eq!(ok(DEFAULT_POLICY_YAML), default_policy());
    }

    #[test]
    fn the_default_policy_fails_closed() {
        let policy = default_policy();
        assert_eq!(policy.label, "DEPLOYMENT_REQUEST");
        // No user or team is named: one role, by repository permission.
        assert_eq!(policy.roles.keys().collect::<Vec<_>>(), ["maintainers"]);
        assert_eq!(
            policy.roles["maintainers"],
            Role { users: vec![], teams: vec![], permission: Some(Permission::Maintain) }
        );
        let production = policy.environment("production").unwrap();
        assert_eq!(production.approvals.iter().map(|a| a.role.as_str()).collect::<Vec<_>>(), ["maintainers"]);
        assert!(production.approvals[0].when_paths.is_empty());
        assert_eq!(production.require_checks, RequireChecks::All);
        assert!(!production.require_staging_first && !production.allow_self_approval);
        assert!(!production.allow_multiple_roles);
        assert_eq!(production.deploy, DeployMode::None);
        let staging = policy.environment("staging").unwrap();
        assert_eq!(staging, &Environment::default());
        assert!(staging.approvals.is_empty());
        assert_eq!(policy.ci.escalate_to, None);
        assert!(policy.ci.block_deploys_while_red);
        assert_eq!(policy.report.weekly, None);
    }

    #[test]
    fn permission_roles_and_the_removed_dismiss_setting() {
        let policy = ok("roles:\n  m: { permission: Maintain }\n  a: { permission: admin, users: [x] }\n");
        assert_eq!(policy.roles["m"].permission, Some(Permission::Maintain));
        assert_eq!(policy.roles["a"].permission, Some(Permission::Admin));
        assert!(Permission::Admin > Permission::Maintain && Permission::Maintain > Permission::Write);
        let (line, column, message) = one_error("roles:\n  m: { permission: owner }\n");
        assert_eq!((line, column), (2, 20));
        assert!(message.contains("`permission` must be one of read, triage, write, maintain, admin"), "{message}");
        let (line, _, message) =
            one_error("environments:\n  production:\n    approvals: []\n    dismiss_stale_approvals: false\n");
        assert_eq!(line, 4);
        assert!(
            message.contains("`dismiss_stale_approvals` was removed") && message.contains("always bound"),
            "{message}"
        );
    }

    #[test]
    fn an_empty_file_or_one_with_only_a_label_is_not_the_default_policy() {
        for yaml in ["", "---\n", "# nothing here\n", "...\n"] {
            assert_eq!(ok(yaml), Policy::default(), "{yaml:?}");
        }
        let policy = ok("label: deploy-me\n");
        assert_eq!(policy.label, "deploy-me");
        assert!(policy.roles.is_empty() && policy.environments.is_empty());
        assert_eq!(policy.ci, CiPolicy::default());
        assert_eq!(policy.report, ReportPolicy::default());
        assert_eq!(policy.report.weekly, None);
        assert_ne!(policy, default_policy());
    }

    #[test]
    fn omitted_and_null_keys_take_their_defaults() {
        let policy = ok("label:\nroles:\nenvironments:\n  staging:\nci:\nreport:\n  weekly: {}\n");
        assert_eq!(policy.label, DEFAULT_LABEL);
        assert_eq!(policy.environments["staging"], Environment::default());
        assert_eq!(policy.ci, CiPolicy::default());
        assert_eq!(policy.report.weekly, Some(WeeklySchedule::default()));
        let ci = ok("ci: { debug_within: 1h30m }\n").ci;
        assert_eq!(ci.ignore_conclusions, ["cancelled", "skipped", "neutral", "action_required"]);
        assert_eq!(ci.debug_within_minutes, 90);
    }

    #[test]
    fn every_setting_is_read() {
        let policy = ok(concat!(
            "label: Deploy\n",
            "roles:\n  qa: { users: [carol-1, Dave] }\n",
            "environments:\n",
            "  Production:\n",
            "    approvals: [{ role: qa, when_paths: [\"src/\", \"/docs/*.md\"] }]\n",
            "    require_checks: [\"ci / test\", lint]\n",
            "    require_staging_first: true\n",
            "    staging_environment: preprod\n",
            "    allow_self_approval: true\n",
            "    allow_multiple_roles: true\n",
            "    max_rollback_minutes: 15\n",
            "    deploy: Deployment\n",
            "    branch: release\n",
            "ci:\n",
            "  incident_branches: [main, release]\n",
            "  ignore_conclusions: [Cancelled, timed_out]\n",
            "  debug_within: 90s\n",
            "  escalate_to: qa\n",
            "  block_deploys_while_red: false\n",
            "  categories: { lint: [biome], Deploy: [] }\n",
            "report:\n",
            "  weekly: { day: Friday, time: \"17:05\", timezone: \"-05:30\" }\n",
            "  targets: { uptime: 99.9, deploy_success: 100, ci_green: 0, mttd_minutes: 0, mttr_minutes: 12.5 }\n",
        ));
        assert_eq!(policy.label, "Deploy");
        assert_eq!(policy.roles["qa"].users, ["carol-1", "Dave"]);
        let (name, env) = policy.environment_entry("production").unwrap();
        assert_eq!(name, "Production");
        assert_eq!(env.approvals, [ApprovalRule::new("qa", vec!["src/".into(), "/docs/*.md".into()]).unwrap()]);
        assert_eq!(env.require_checks, RequireChecks::Named(vec!["ci / test".into(), "lint".into()]));
        assert!(env.require_staging_first && env.allow_self_approval && env.allow_multiple_roles);
        assert_eq!(env.staging_environment, "preprod");
        assert_eq!(env.max_rollback_minutes, Some(15));
        assert_eq!(env.deploy, DeployMode::Deployment);
        assert_eq!(env.branch.as_deref(), Some("release"));
        assert_eq!(policy.ci.incident_branches, ["main", "release"]);
        assert_eq!(policy.ci.ignore_conclusions, ["cancelled", "timed_out"]);
        assert_eq!(policy.ci.debug_within_minutes, 2);
        assert_eq!(policy.ci.escalate_to.as_deref(), Some("qa"));
        assert_eq!(policy.ci.categorize("Run biome"), Some("Lint"));
        assert_eq!(policy.ci.categorize("npm run lint"), None, "the Lint patterns were replaced");
        assert_eq!(policy.ci.categorize("deploy to prod"), None, "the Deploy patterns were emptied");
        assert_eq!(policy.ci.categorize("cargo test"), Some("Test"));
        let weekly = policy.report.weekly.unwrap();
        assert_eq!((weekly.day, weekly.hour, weekly.minute), (Weekday::Friday, 17, 5));
        assert_eq!(weekly.zone().offset_seconds(0), -330 * 60);
        assert_eq!(policy.report.targets.mttr_minutes, 12.5);
        assert_eq!(policy.report.targets.ci_green, 0.0);
    }

    #[test]
    fn lookups_are_case_insensitive() {
        let policy = default_policy();
        assert!(policy.environment("PRODUCTION").is_some());
        assert!(policy.environment("Staging").is_some());
        assert!(policy.environment("prod").is_none());
        assert!(policy.label_matches("deployment_request"));
        assert!(policy.label_matches("DEPLOYMENT_REQUEST"));
        assert!(!policy.label_matches("deployment"));
    }

    #[test]
    fn default_categories_sort_the_seed_workflow_steps() {
        let ci = CiPolicy::default();
        assert_eq!(ci.categorize("Run npm run lint"), Some("Lint"));
        assert_eq!(ci.categorize("Run npm run type-check"), Some("Type-check"));
        assert_eq!(ci.categorize("Run npm run test"), Some("Test"));
        assert_eq!(ci.categorize("Run npm run build"), Some("Build"));
        assert_eq!(ci.categorize("deploy-production"), Some("Deploy"));
        assert_eq!(ci.categorize("Set up job"), None);
        assert!(ci.ignores_conclusion("CANCELLED") && !ci.ignores_conclusion("failure"));
    }

    // ----- applies_to ----------------------------------------------------------------------------

    #[test]
    fn applies_to_matches_when_paths_against_changed_files() {
        let backend = ApprovalRule::new("backend-lead", vec!["apps/backend/**".into()]).unwrap();
        assert!(backend.applies_to(["apps/backend/src/main.rs"]));
        assert!(backend.applies_to(["README.md", "apps/backend/Cargo.toml"]));
        assert!(backend.applies_to(["apps/backend/a/b/c/d.sql"]));
        assert!(!backend.applies_to(["apps/frontend/src/app.ts"]));
        assert!(!backend.applies_to(["apps/backend-old/x.rs", "apps/backendx", "docs/apps/backend/x.md"]));
        assert!(!backend.applies_to(Vec::<&str>::new()));
        let files = ["apps/backend/x.rs".to_string()];
        assert!(backend.applies_to(files.iter().map(String::as_str)));

        let always = ApprovalRule::new("pm", vec![]).unwrap();
        assert!(always.applies_to(Vec::<&str>::new()));
        assert!(always.applies_to(["anything"]));

        let star = ApprovalRule::new("docs", vec!["docs/*.md".into(), "migrations/".into()]).unwrap();
        assert!(star.applies_to(["docs/a.md"]));
        assert!(!star.applies_to(["docs/sub/a.md"]), "`*` stays within one directory");
        assert!(star.applies_to(["migrations/0001_init.sql"]), "a trailing `/` covers everything below");
        assert!(ApprovalRule::new("x", vec!["[".into()]).is_err());
    }

    // ----- durations -----------------------------------------------------------------------------

    #[test]
    fn durations_parse_into_minutes() {
        for (text, minutes) in [
            ("90s", 2),
            ("60s", 1),
            ("1s", 1),
            ("0s", 0),
            ("30m", 30),
            ("1h", 60),
            ("2d", 2880),
            ("1h30m", 90),
            ("1d2h3m4s", 1564),
            (" 45m ", 45),
            ("1H", 60),
        ] {
            assert_eq!(parse_duration_minutes(text), Ok(minutes), "{text}");
        }
        for text in ["", "1 hour", "60", "h", "1x", "30m1h", "1h1h", "1.5h", "-1h", "1h 30m", "m30"] {
            let err = parse_duration_minutes(text).unwrap_err();
            assert!(err.contains("is not a duration"), "{text}: {err}");
        }
        assert_eq!(
            parse_duration_minutes("1 hour").unwrap_err(),
            "`1 hour` is not a duration: write a whole number followed by a unit, `s`, `m`, `h` or `d` \
             (`90s`, `30m`, `1h`, `2d`), or combine them from the largest unit down (`1h30m`)"
        );
        assert!(parse_duration_minutes("99999999999999999999999d").unwrap_err().contains("too long"));
        assert!(parse_duration_minutes("4294967296m").unwrap_err().contains("too long"));
        assert_eq!(parse_duration_minutes("4294967295m"), Ok(u32::MAX));
    }

    // ----- errors, one kind at a time, with their exact position --------------------------------

    #[test]
    fn yaml_syntax_errors_point_at_the_problem() {
        assert_eq!(one_error("roles: [a, b\n"), (1, 8, "invalid YAML: unclosed bracket '['".into()));
        assert_eq!(
            one_error("label: a\nci: b: c\n"),
            (2, 6, "invalid YAML: mapping values are not allowed in this context".into())
        );
        assert_eq!(
            one_error("ci:\n\tdebug_within: 1h\n"),
            (2, 2, "invalid YAML: tabs disallowed within this context (block indentation)".into())
        );
        assert_eq!(
            one_error("label: a\n---\nlabel: b\n"),
            (3, 1, "the file holds more than one YAML document (a second `---`); a policy is a single document".into())
        );
        assert_eq!(one_error("label: *nowhere\n").0, 1);
    }

    #[test]
    fn unknown_keys_name_the_allowed_ones_and_the_closest() {
        assert_eq!(
            one_error("lable: X\n"),
            (
                1,
                1,
                "unknown key `lable` in the policy; did you mean `label`? (allowed: label, roles, environments, ci, report, \
                 alerts, notify)"
                    .into()
            )
        );
        assert_eq!(
            one_error("environments:\n  production:\n    aprovals: []\n"),
            (
                3,
                5,
                "unknown key `aprovals` in `environments.production`; did you mean `approvals`? (allowed: approvals, \
                 require_checks, require_staging_first, staging_environment, allow_self_approval, \
                 allow_multiple_roles, max_rollback_minutes, deploy, branch, approvals_expire_after, freeze)"
                    .into()
            )
        );
        assert_eq!(
            one_error("ci:\n  debug_within_minutes: 60\n"),
            (
                2,
                3,
                "unknown key `debug_within_minutes` in `ci`; did you mean `debug_within`? (allowed: incident_branches, \
                 ignore_conclusions, debug_within, escalate_to, block_deploys_while_red, categories)"
                    .into()
            )
        );
        assert_eq!(
            one_error("report:\n  deploy: none\n"),
            (
                2,
                3,
                "unknown key `deploy` in `report`; `deploy` belongs in an environment (`environments.<name>`) \
                 (allowed: weekly, targets)"
                    .into()
            )
        );
        assert_eq!(
            one_error("roles:\n  pm: { users: [a], team: [acme/x] }\n"),
            (
                2,
                21,
                "unknown key `team` in `roles.pm`; did you mean `teams`? (allowed: users, teams, permission)".into()
            )
        );
        assert_eq!(
            one_error("report: { weekly: { day: monday, hour: 9 } }\n"),
            (1, 34, "unknown key `hour` in `report.weekly` (allowed: day, time, timezone)".into())
        );
        assert_eq!(
            one_error(&format!("{ROLES}environments:\n  p:\n    approvals:\n      - {{ role: pm, paths: [x] }}\n")),
            (
                7,
                21,
                "unknown key `paths` in an approval rule; did you mean `when_paths`? (allowed: role, when_paths)"
                    .into()
            )
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert_eq!(
            one_error("label: a\nroles: {}\nlabel: b\n"),
            (3, 1, "duplicate key `label` (first given at line 1, column 1)".into())
        );
        assert_eq!(
            one_error("roles:\n  pm: { users: [a] }\n  pm: { users: [b] }\n"),
            (3, 3, "duplicate key `pm` (first given at line 2, column 3)".into())
        );
        assert_eq!(
            one_error("environments:\n  production: {}\n  Production: {}\n"),
            (
                3,
                3,
                "environment `Production` is already defined as `production` at line 2, column 3 \
                 (environment names are case-insensitive)"
                    .into()
            )
        );
    }

    #[test]
    fn wrong_types_are_refused() {
        assert_eq!(
            one_error(&format!("{ROLES}environments:\n  production:\n    approvals: pm\n")),
            (
                6,
                16,
                "`approvals` must be a list of approval rules, like `- role: pm`, found the string `pm` \
                 (for one item, write a list: `[pm]`)"
                    .into()
            )
        );
        assert_eq!(
            one_error(&format!("{ROLES}environments:\n  production:\n    approvals:\n      - pm\n")),
            (
                7,
                9,
                "each approval must be a mapping like `- role: pm`, found the string `pm` (write `- role: pm`)".into()
            )
        );
        assert_eq!(
            one_error("environments: [production]\n"),
            (1, 15, "`environments` must be a mapping of environment names to their rules, found a list".into())
        );
        assert_eq!(
            one_error("environments:\n  production:\n    allow_self_approval: yes\n"),
            (3, 26, "`allow_self_approval` must be `true` or `false`, found the string `yes`".into())
        );
        assert_eq!(one_error("label: [a]\n"), (1, 8, "`label` must be a string, found a list".into()));
        assert_eq!(one_error("label: \"\"\n"), (1, 8, "`label` must not be empty".into()));
        assert_eq!(
            one_error("[]\n"),
            (
                1,
                1,
                "the policy must be a mapping with the keys label, roles, environments, ci, report, alerts and notify, \
                 found a list"
                    .into()
            )
        );
        assert_eq!(
            one_error("roles:\n  pm:\n"),
            (2, 3, "role `pm` is empty: give it `users`, `teams` and/or `permission`".into())
        );
        assert_eq!(
            one_error("roles:\n  pm: { users: alice }\n"),
            (
                2,
                16,
                "`users` must be a list of GitHub logins, like `[alice, bob]`, found the string `alice` \
                 (for one item, write a list: `[alice]`)"
                    .into()
            )
        );
        assert_eq!(
            one_error("ci: { block_deploys_while_red: 1 }\n"),
            (1, 32, "`block_deploys_while_red` must be `true` or `false`, found the number `1`".into())
        );
    }

    #[test]
    fn approvals_and_escalation_must_name_a_defined_role() {
        assert_eq!(
            one_error(&format!("{ROLES}environments:\n  production:\n    approvals:\n      - role: qa\n")),
            (7, 15, "unknown role `qa` (defined: pm, backend-lead)".into())
        );
        assert_eq!(
            one_error(&format!("{ROLES}ci:\n  escalate_to: backend-leed\n")),
            (5, 16, "unknown role `backend-leed` (defined: pm, backend-lead); did you mean `backend-lead`?".into())
        );
        assert_eq!(
            one_error("environments:\n  production:\n    approvals: [{ role: pm }]\n"),
            (3, 25, "unknown role `pm` (no roles are defined: define it under `roles:`)".into())
        );
        // A role defined after its use is still defined.
        ok("ci: { escalate_to: sre }\nroles: { sre: { teams: [acme/sre] } }\n");
        assert_eq!(
            one_error("roles: { qa: { users: [] } }\nci: { escalate_to: qa }\n"),
            (2, 20, "role `qa` has no users and no teams: the escalation would mention nobody".into())
        );
        assert_eq!(
            one_error(&format!("{ROLES}environments:\n  production:\n    approvals:\n      - when_paths: [x]\n")),
            (7, 9, "this approval has no `role` (write `role: <name>`)".into())
        );
    }

    #[test]
    fn users_and_teams_are_checked() {
        assert_eq!(
            one_error("roles:\n  pm: { teams: [backend-leads] }\n"),
            (2, 17, "team `backend-leads` must be written `org/team-slug`, like `acme/sre`".into())
        );
        assert_eq!(
            one_error("roles:\n  pm: { teams: [\"acme/Backend Leads\"] }\n"),
            (2, 17, "team `acme/Backend Leads` must be written `org/team-slug`, like `acme/sre`".into())
        );
        assert_eq!(
            one_error("roles:\n  pm: { teams: [\"@acme/sre\"] }\n"),
            (2, 17, "write the team without `@`: `acme/sre`".into())
        );
        assert_eq!(
            one_error("roles:\n  pm: { users: [\"@alice\"] }\n"),
            (2, 17, "write the login without `@`: `alice`".into())
        );
        assert_eq!(
            one_error("roles:\n  pm: { users: [acme/sre] }\n"),
            (2, 17, "`acme/sre` looks like a team: list it under `teams`".into())
        );
        assert_eq!(
            one_error("roles:\n  pm: { users: [\"al ice\"] }\n"),
            (2, 17, "`al ice` is not a GitHub login (letters, digits and hyphens, at most 39 characters)".into())
        );
        assert_eq!(ok("roles:\n  pm: { users: [1234] }\n").roles["pm"].users, ["1234"]);
    }

    #[test]
    fn bad_globs_are_reported_with_globsets_message() {
        assert_eq!(
            one_error(&format!(
                "{ROLES}environments:\n  production:\n    approvals:\n      - role: backend-lead\n        when_paths: [\"apps/**\", \"apps/[\"]\n"
            )),
            (8, 33, "invalid glob `apps/[`: unclosed character class; missing ']'".into())
        );
        let errors = errors(&format!(
            "{ROLES}environments:\n  p:\n    approvals:\n      - role: pm\n        when_paths: [\"{{a,b\", \"ok/**\", \"[z-a]\"]\n"
        ));
        assert_eq!(
            errors,
            [
                ConfigError {
                    line: 8,
                    column: 22,
                    message:
                        "invalid glob `{a,b`: unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)"
                            .into()
                },
                ConfigError { line: 8, column: 39, message: "invalid glob `[z-a]`: invalid range; 'z' > 'a'".into() },
            ]
        );
        assert_eq!(
            one_error(&format!(
                "{ROLES}environments:\n  p:\n    approvals:\n      - role: pm\n        when_paths: apps/**\n"
            )),
            (
                8,
                21,
                "`when_paths` must be a list of globs, like `[\"apps/backend/**\"]`, found the string `apps/**` \
                 (for one item, write a list: `[apps/**]`)"
                    .into()
            )
        );
    }

    #[test]
    fn bad_durations_explain_the_accepted_forms() {
        assert_eq!(
            one_error("ci:\n  debug_within: 1 hour\n"),
            (
                2,
                17,
                "`debug_within`: `1 hour` is not a duration: write a whole number followed by a unit, `s`, `m`, `h` or \
                 `d` (`90s`, `30m`, `1h`, `2d`), or combine them from the largest unit down (`1h30m`)"
                    .into()
            )
        );
        assert_eq!(
            one_error("ci:\n  debug_within: 60\n"),
            (2, 17, "`debug_within` needs a unit: write `60m` for minutes or `1h`, `2d`…".into())
        );
        assert_eq!(
            one_error("ci:\n  debug_within: 0m\n"),
            (2, 17, "`debug_within` must be at least one minute".into())
        );
    }

    #[test]
    fn require_checks_is_all_or_a_list_of_names() {
        assert_eq!(
            ok("environments: { p: { require_checks: ALL } }\n").environments["p"].require_checks,
            RequireChecks::All
        );
        assert_eq!(
            one_error("environments:\n  p:\n    require_checks: ci/test\n"),
            (
                3,
                21,
                "`require_checks` must be `all` or a list of check names, found the string `ci/test` \
                 (to require only that check, write `[ci/test]`)"
                    .into()
            )
        );
        assert_eq!(
            one_error("environments:\n  p:\n    require_checks: true\n"),
            (3, 21, "`require_checks` must be `all` or a list of check names, found `true`".into())
        );
        assert_eq!(
            one_error("environments:\n  p:\n    require_checks: [test, { a: b }]\n"),
            (3, 28, "each entry of `require_checks` must be a string, found a mapping".into())
        );
    }

    #[test]
    fn deploy_must_be_one_of_three() {
        assert_eq!(
            one_error("environments:\n  p:\n    deploy: deplyment\n"),
            (
                3,
                13,
                "`deploy` must be `protection_rule`, `workflow`, `deployment` or `none`, found the string `deplyment`; did you \
                 mean `deployment`?"
                    .into()
            )
        );
        assert_eq!(
            one_error("environments:\n  p:\n    deploy: 3\n"),
            (
                3,
                13,
                "`deploy` must be `protection_rule`, `workflow`, `deployment` or `none`, found the number `3`".into()
            )
        );
        assert_eq!(ok("environments: { p: { deploy: none } }\n").environments["p"].deploy, DeployMode::None);
    }

    #[test]
    fn the_weekly_schedule_is_checked() {
        assert_eq!(
            one_error("report:\n  weekly: { day: mondey }\n"),
            (2, 18, "`day` must be a day of the week, `monday` to `sunday`, found the string `mondey`; did you mean `monday`?".into())
        );
        assert_eq!(
            one_error("report:\n  weekly: { day: 1 }\n"),
            (2, 18, "`day` must be a day of the week, `monday` to `sunday`, found the number `1`".into())
        );
        for time in ["\"9.30\"", "\"24:00\"", "\"09:60\"", "\"09:3\"", "930", "noon", "\"-1:00\""] {
            let (line, column, message) = one_error(&format!("report:\n  weekly: {{ time: {time} }}\n"));
            assert_eq!((line, column), (2, 19), "{time}");
            assert!(
                message.starts_with("`time` must be a time of day written HH:MM, like \"09:30\", found"),
                "{message}"
            );
        }
        assert_eq!(
            one_error("report:\n  weekly: { time: \"9.30\" }\n").2,
            "`time` must be a time of day written HH:MM, like \"09:30\", found the string `9.30`"
        );
        assert_eq!(ok("report: { weekly: { time: 7:05 } }\n").report.weekly.unwrap().hour, 7);
        assert_eq!(
            one_error("report:\n  weekly: { timezone: Europe/Pariss }\n"),
            (
                2,
                23,
                "`timezone` must be `UTC`, a fixed offset from UTC like `+02:00` or `-05:30`, or an IANA time zone \
                 name like `Europe/Berlin`, found the string `Europe/Pariss`"
                    .into()
            )
        );
        let berlin = ok("report: { weekly: { timezone: Europe/Berlin } }\n").report.weekly.unwrap();
        assert_eq!(berlin.timezone, "Europe/Berlin");
        assert_eq!(berlin.zone(), crate::domain::zone::Zone::Named(chrono_tz::Tz::Europe__Berlin));
        for zone in ["\"+15:00\"", "\"+02:60\"", "\"0200\"", "\"+2:00\"", "Mars/Olympus"] {
            assert_eq!(errors(&format!("report: {{ weekly: {{ timezone: {zone} }} }}\n")).len(), 1, "{zone}");
        }
        let weekly = ok("report: { weekly: { timezone: \"+02:00\" } }\n").report.weekly.unwrap();
        assert_eq!((weekly.timezone.as_str(), weekly.zone().offset_seconds(0)), ("+02:00", 7200));
        assert_eq!(ok("report: { weekly: { timezone: utc } }\n").report.weekly.unwrap().timezone, "UTC");
        assert_eq!(
            one_error("report:\n  weekly: monday\n"),
            (
                2,
                11,
                "`weekly` must be a mapping like `{ day: monday, time: \"09:30\", timezone: UTC }`, found the string `monday`"
                    .into()
            )
        );
    }

    #[test]
    fn targets_must_be_in_range() {
        assert_eq!(
            one_error("report:\n  targets: { uptime: 100.5 }\n"),
            (2, 22, "`uptime` is a percentage: it must be between 0 and 100, found `100.5`".into())
        );
        assert_eq!(
            one_error("report:\n  targets:\n    ci_green: -1\n"),
            (3, 15, "`ci_green` is a percentage: it must be between 0 and 100, found `-1`".into())
        );
        assert_eq!(
            one_error("report:\n  targets:\n    mttr_minutes: -0.5\n"),
            (3, 19, "`mttr_minutes` must be a number of minutes, 0 or more, found `-0.5`".into())
        );
        assert_eq!(
            one_error("report:\n  targets:\n    mttd_minutes: .inf\n"),
            (3, 19, "`mttd_minutes` must be a number of minutes, 0 or more, found `.inf`".into())
        );
        assert_eq!(
            one_error("report:\n  targets:\n    deploy_success: \"98%\"\n"),
            (3, 21, "`deploy_success` must be a number, found the string `98%` (write the number without `%`)".into())
        );
        assert_eq!(
            one_error("report:\n  targets:\n    uptime: .nan\n"),
            (3, 13, "`uptime` is a percentage: it must be between 0 and 100, found `.nan`".into())
        );
    }

    #[test]
    fn max_rollback_minutes_must_be_a_positive_whole_number() {
        let yaml = |value: &str| format!("environments:\n  production:\n    max_rollback_minutes: {value}\n");
        assert_eq!(one_error(&yaml("0")), (3, 27, "`max_rollback_minutes` must be at least 1, found `0`".into()));
        assert_eq!(one_error(&yaml("-5")), (3, 27, "`max_rollback_minutes` must be at least 1, found `-5`".into()));
        assert_eq!(
            one_error(&yaml("2.5")),
            (
                3,
                27,
                "`max_rollback_minutes` must be a whole number of minutes, like `5`, found the number `2.5`".into()
            )
        );
        assert_eq!(
            one_error(&yaml("5m")),
            (3, 27, "`max_rollback_minutes` must be a whole number of minutes, like `5`, found the string `5m`".into())
        );
        assert_eq!(one_error(&yaml("4294967296")), (3, 27, "`max_rollback_minutes` must be at most 4294967295".into()));
        assert_eq!(ok(&yaml("1")).environments["production"].max_rollback_minutes, Some(1));
    }

    #[test]
    fn ci_lists_are_checked() {
        assert_eq!(
            one_error("ci:\n  ignore_conclusions: [canceled]\n"),
            (
                2,
                24,
                "unknown conclusion `canceled`; did you mean `cancelled`? (allowed: action_required, cancelled, \
                 neutral, skipped, stale, startup_failure, timed_out)"
                    .into()
            )
        );
        assert_eq!(
            one_error("ci:\n  ignore_conclusions: [failure]\n"),
            (2, 24, "`failure` cannot be ignored: it is what tells a failed run from a good one".into())
        );
        assert_eq!(
            one_error("ci:\n  categories: { Tests: [pytest] }\n"),
            (
                2,
                17,
                "unknown category `Tests`; did you mean `Test`? (allowed: Lint, Type-check, Test, Build, Deploy)"
                    .into()
            )
        );
        assert_eq!(
            one_error("ci:\n  incident_branches: main\n"),
            (
                2,
                22,
                "`incident_branches` must be a list of branch names, like `[main]`, found the string `main` \
                 (for one item, write a list: `[main]`)"
                    .into()
            )
        );
    }

    // ----- all errors at once ----------------------------------------------------------------------

    #[test]
    fn every_error_is_reported_in_document_order() {
        let yaml = concat!(
            "label: DEPLOYMENT_REQUEST\n",                                       // 1
            "roles:\n",                                                          // 2
            "  pm: { users: [alice, \"@bob\"], teams: [acme/product, sre] }\n",  // 3
            "  backend-lead: { teams: [acme/backend-leads], user: [x] }\n",      // 4
            "environments:\n",                                                   // 5
            "  production:\n",                                                   // 6
            "    aprovals: []\n",                                                // 7
            "    approvals:\n",                                                  // 8
            "      - role: qa\n",                                                // 9
            "      - role: backend-leed\n",                                      // 10
            "        when_paths: [\"apps/[\", \"api/**\"]\n",                    // 11
            "    require_checks: some\n",                                        // 12
            "    deploy: deplyment\n",                                           // 13
            "    max_rollback_minutes: 0\n",                                     // 14
            "ci:\n",                                                             // 15
            "  debug_within: 1 hour\n",                                          // 16
            "  escalate_to: qa\n",                                               // 17
            "report:\n",                                                         // 18
            "  weekly: { day: mon, time: \"9.30\", timezone: Europe/Pariss }\n", // 19
            "  targets: { uptime: 101, mttr_minutes: -1 }\n",                    // 20
        );
        let errors = errors(yaml);
        let positions: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(
            positions,
            [
                (3, 24),
                (3, 55),
                (4, 48),
                (7, 5),
                (9, 15),
                (10, 15),
                (11, 22),
                (12, 21),
                (13, 13),
                (14, 27),
                (16, 17),
                (17, 16),
                (19, 18),
                (19, 29),
                (19, 47),
                (20, 22),
                (20, 41),
            ],
            "{errors:#?}"
        );
        assert_eq!(errors[0].to_string(), "line 3, column 24: write the login without `@`: `bob`");
        assert_eq!(errors[4].to_string(), "line 9, column 15: unknown role `qa` (defined: pm, backend-lead)");
        assert_eq!(
            errors[12].message,
            "`day` must be a day of the week, `monday` to `sunday`, found the string `mon`; did you mean `monday`?"
        );
    }

    #[test]
    fn errors_inside_anchors_point_at_the_anchored_text_once() {
        let yaml = concat!(
            "roles:\n",
            "  pm: { users: [alice] }\n",
            "environments:\n",
            "  production:\n",
            "    approvals: &rules\n",
            "      - role: pm\n",
            "      - role: nobody\n",
            "  staging:\n",
            "    approvals: *rules\n",
        );
        assert_eq!(one_error(yaml), (7, 15, "unknown role `nobody` (defined: pm)".into()));
        let merged = "roles:\n  pm: &base\n    users: [alice]\n  qa:\n    <<: *base\n    teams: [acme/qa]\n";
        let policy = ok(merged);
        assert_eq!(policy.roles["qa"].users, ["alice"]);
        assert_eq!(policy.roles["qa"].teams, [TeamRef { org: "acme".into(), slug: "qa".into() }]);
    }

    // ----- adversarial input -----------------------------------------------------------------------

    #[test]
    fn adversarial_inputs_never_panic() {
        // Valid, if odd.
        for yaml in ["", "---", "--- \n...\n", "\u{feff}label: X\n", "%YAML 1.2\n---\nlabel: X\n", "label: !!str 12\n"]
        {
            assert!(parse(yaml).is_ok(), "{yaml:?}");
        }
        // Refused, with one error at a sensible place.
        let long_key = format!("{}: 1\n", "k".repeat(100_000));
        let long_value = format!("label: {}\n", "v".repeat(100_000));
        let deep_flow = "[".repeat(10_000);
        let deep_flow_map = "{a: ".repeat(10_000);
        let deep_block = "- ".repeat(10_000) + "x\n";
        let mut deep_block_map = String::new();
        for level in 0..1_000 {
            deep_block_map.push_str(&" ".repeat(level));
            deep_block_map.push_str("a:\n");
        }
        let too_big = "#".repeat(MAX_POLICY_BYTES + 1);
        let binary = String::from_utf8_lossy(&[0xff, 0xfe, 0, 1, 2, 3, b':', b'\n', 0x80, 0x1b]).into_owned();
        let cases: Vec<(&str, String)> = vec![
            ("a list", "[]".into()),
            ("a scalar", "hello".into()),
            ("a number", "42".into()),
            ("tabs", "roles:\n\tpm: {}\n".into()),
            ("a long key", long_key),
            ("a long value", long_value),
            ("10k nested flow lists", deep_flow),
            ("10k nested flow maps", deep_flow_map),
            ("10k nested block lists", deep_block),
            ("1k nested block maps", deep_block_map),
            ("too big", too_big),
            ("binary", binary),
            ("NUL", "label: \"a\\0b\"\n".into()),
            ("a control character", "label: a\u{7}b\n".into()),
            ("an unknown anchor", "label: *a\n".into()),
            ("a complex key", "? [a]\n: b\n".into()),
            ("a null key", "~: b\n".into()),
            ("an unclosed quote", "label: \"abc\n".into()),
            ("a huge integer", "environments: { p: { max_rollback_minutes: 99999999999999999999999999 } }\n".into()),
        ];
        for (what, yaml) in &cases {
            let errors = errors(yaml);
            assert!(!errors.is_empty(), "{what}");
            assert!(errors.iter().all(|e| e.line >= 1 && e.column >= 1 && !e.message.is_empty()), "{what}: {errors:?}");
            assert!(errors.iter().all(|e| e.message.chars().count() < 600), "{what}: messages stay short");
        }
        assert_eq!(one_error(&"[".repeat(10_000)), (1, 33, "invalid YAML: recursion limit exceeded".into()));
        assert_eq!(
            one_error(&"#".repeat(MAX_POLICY_BYTES + 1)).2,
            "the file is 1048577 bytes long; a policy may be at most 1048576 bytes"
        );
    }

    #[test]
    fn a_hostile_file_is_bounded_in_time_and_in_errors() {
        let mut yaml = String::from("roles:\n");
        for i in 0..1_500 {
            yaml.push_str(&format!("  role-{i}: {{ users: [u{i}] }}\n"));
        }
        yaml.push_str("environments:\n  production:\n    approvals:\n");
        for i in 0..1_500 {
            yaml.push_str(&format!("      - role: missing-{i}\n"));
        }
        for i in 0..1_500 {
            yaml.push_str(&format!("label{i}: x\n"));
        }
        let started = std::time::Instant::now();
        let errors = errors(&yaml);
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
        assert_eq!(errors.len(), MAX_ERRORS + 1);
        assert_eq!(
            errors[0].message,
            "unknown role `missing-0` (defined: role-0, role-1, role-2, role-3, role-4, role-5, role-6, role-7, \
             role-8, role-9, and 1490 more)"
        );
        assert_eq!(errors[MAX_ERRORS].message, "…and 2900 more problems; fix the ones above first");
        assert_eq!((errors[MAX_ERRORS].line, errors[MAX_ERRORS].column), (1505 + MAX_ERRORS, 15));
    }

    #[test]
    fn an_alias_bomb_is_stopped_quickly() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (name, previous) in
            ["b", "c", "d", "e", "f", "g", "h", "i"].into_iter().zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            let refs = vec![format!("*{previous}"); 10].join(", ");
            bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let (_, _, message) = one_error(&bomb);
        assert!(message.starts_with("the file is too large or too deeply nested for a policy"), "{message}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn random_edits_of_the_spec_yaml_never_panic() {
        const INTERESTING: &[u8] = b" \t\n:-[]{}&*!|>'\"#%@`,?~0123456789abcxyz/\\.\x00\x7f\xc3\xa9";
        let base = DEFAULT_POLICY_YAML.as_bytes();
        let mut rng = XorShift::new(0x5eed_1234_abcd_9876);
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..2_000 {
            let mut bytes = base.to_vec();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(bytes.len() + 1);
                match rng.below(6) {
                    0 if at < bytes.len() => bytes[at] = INTERESTING[rng.below(INTERESTING.len())],
                    1 => bytes.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
                    2 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    3 => {
                        let len = rng.below(40).min(bytes.len() - at.min(bytes.len()));
                        let chunk: Vec<u8> = bytes[at..at + len].to_vec();
                        let to = rng.below(bytes.len() + 1);
                        bytes.splice(to..to, chunk);
                    }
                    4 if at < bytes.len() => bytes[at] = rng.next() as u8,
                    _ => {
                        let end = (at + rng.below(20)).min(bytes.len());
                        bytes.drain(at..end);
                    }
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            match parse(&text) {
                Ok(policy) => {
                    accepted += 1;
                    for name in policy.environments.keys() {
                        let env = policy.environment(name).expect("every environment can be found by its name");
                        for rule in &env.approvals {
                            let _ = rule.applies_to(["apps/backend/x.rs", "README.md"]);
                        }
                    }
                }
                Err(errors) => {
                    refused += 1;
                    assert!(!errors.is_empty());
                    assert!(errors.iter().all(|e| e.line >= 1 && e.column >= 1));
                    assert!(errors.windows(2).all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)));
                }
            }
        }
        assert!(accepted > 0 && refused > 0, "accepted {accepted}, refused {refused}");
    }
}

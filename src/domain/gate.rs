//! Gate evaluation (SPEC §3.3): pure, from facts the worker fetched. Every gate must pass:
//! a valid request and policy, green tests on each linked PR head, an approval from a current
//! holder of every required role, staging first where required, and no hold or denial.
//! The result is a list of gates, each with a state and a human explanation, which the sticky
//! comment, the check run and the labels all render from.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::ids::UserId;
use super::policy::{ConfigError, Environment, Policy, RequireChecks};
use super::request::Problem;

/// A GitHub user: the id is the identity, the login is for display.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub login: String,
}

impl User {
    /// A user object of a GitHub payload or answer (`{"id": …, "login": …}`); missing fields are
    /// empty, never a panic.
    pub fn of(v: &serde_json::Value) -> User {
        User {
            id: UserId(v["id"].as_i64().unwrap_or_default()),
            login: v["login"].as_str().unwrap_or_default().to_string(),
        }
    }
}

/// One check run or commit status on a head SHA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckFact {
    pub name: String,
    /// queued | in_progress | completed
    pub status: String,
    pub conclusion: Option<String>,
    /// The GitHub Actions run it belongs to (from its details URL), when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
}

/// A linked pull request as GitHub last described it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrFacts {
    pub number: i64,
    pub head_sha: String,
    pub author: User,
    /// open | closed | merged
    pub state: String,
    /// Changed files, when a `when_paths` rule needed them.
    pub files: Option<Vec<String>>,
    /// Check runs and statuses on the head SHA (the App's own excluded).
    pub checks: Vec<CheckFact>,
    /// GitHub lists fewer files than the PR changes (over 3,000): every path-bound rule applies.
    #[serde(default)]
    pub files_truncated: bool,
    /// Ids of everyone who authored or committed a commit of the PR (read when an approval needs
    /// them): like the author, they cannot approve it unless self-approval is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushers: Option<Vec<UserId>>,
    /// When its first commit was authored (Unix ms), read with the pushers: where DORA's lead
    /// time for changes starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_commit_at: Option<i64>,
    /// Once merged: the commit the merge produced on the base branch (SPEC §3.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_commit: Option<String>,
    /// When it was merged (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_at: Option<i64>,
    /// The branch it merges into (a merge elsewhere than where the environment deploys from is not
    /// covered), and the repository's default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_branch: Option<String>,
}

/// Whether an approval rule applies to these PRs: no `when_paths`, a changed file (under its new
/// or its previous name) matches, or a PR changes more files than GitHub lists.
pub fn rule_applies(rule: &super::policy::ApprovalRule, prs: &[PrFacts]) -> bool {
    if rule.when_paths.is_empty() {
        return true;
    }
    prs.iter().any(|p| p.files_truncated)
        || rule.applies_to(prs.iter().flat_map(|p| p.files.iter().flatten()).map(String::as_str))
}

/// A stored approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalFact {
    pub comment_id: i64,
    pub user: User,
    pub environment: String,
    pub head_shas: Vec<String>,
    pub revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateState {
    Pass,
    Pending,
    Fail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gate {
    pub name: &'static str,
    pub state: GateState,
    pub detail: String,
}

/// A role the request needs, and who (if anyone) fills it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RoleStatus {
    pub role: String,
    pub approved_by: Option<String>,
    /// Who may approve, for the comment: "@alice, acme/product".
    pub who: String,
    /// The paths that made it required, if any.
    pub because: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub gates: Vec<Gate>,
    pub roles: Vec<RoleStatus>,
    pub open: bool,
    /// Open by break-glass (SPEC §3.7) and not otherwise: who, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakglass: Option<String>,
}

impl Evaluation {
    /// What is still missing, one line each, for the check run.
    pub fn missing(&self) -> Vec<String> {
        self.gates.iter().filter(|g| g.state != GateState::Pass).map(|g| format!("{}: {}", g.name, g.detail)).collect()
    }

    /// The gates a break-glass overrides (what would be missing without it).
    pub fn overridden(&self) -> Vec<String> {
        if self.breakglass.is_some() { self.missing() } else { Vec::new() }
    }
}

pub struct GateInput<'a> {
    pub policy: &'a Policy,
    /// Errors of `.github/shipgate.yml`; non-empty closes every gate.
    pub policy_errors: &'a [ConfigError],
    /// What is missing or invalid in the request (parsing, and PRs that do not exist).
    pub problems: &'a [Problem],
    /// The request's environment, normalised, if it names one the policy defines.
    pub environment: Option<&'a str>,
    pub requester: &'a User,
    pub prs: &'a [PrFacts],
    /// Active approvals (not withdrawn); stale ones are filtered here by SHA and revision.
    pub approvals: &'a [ApprovalFact],
    pub revision: i64,
    /// Does `user` currently hold `role`? (users by login, teams by membership)
    pub holds: &'a dyn Fn(&User, &str) -> bool,
    /// Has the same SHA deployed to staging successfully? None when not known.
    pub staging_ok: Option<bool>,
    pub hold_by: Option<&'a str>,
    pub denied: Option<(&'a str, &'a str)>,
    /// An open CI incident on the target branch (SPEC §3.3.5), if any.
    pub ci_red: Option<&'a str>,
    /// Workflow runs waiting on this request to deploy: their own check runs (the deploy job
    /// itself, waiting) are not tests the gate waits for.
    pub deploying_runs: &'a [i64],
    /// The environment's freeze window covering now, said as the gate says it ("frozen until …
    /// (reason)"), if one does (SPEC §3.7).
    pub frozen: Option<&'a str>,
    /// Dry-run (no GitHub credentials): what could not be read, said as such (never as a verdict
    /// about the repository): the policy file, and these linked PRs.
    pub unread: Unread<'a>,
}

/// What dry-run could not read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unread<'a> {
    pub policy: bool,
    pub prs: &'a [i64],
}

/// The App's own check runs do not count as tests.
pub fn is_own_check(name: &str) -> bool {
    name.starts_with("shipgate /")
}

/// Does an approval still hold for the current heads and revision? Approvals are always bound
/// to the commits they were given for (SPEC §3.3): `None` when it holds, else why not.
pub fn approval_is_current(a: &ApprovalFact, heads: &[String], revision: i64) -> Option<String> {
    if a.revision != revision {
        return Some("the request changed after it was given".into());
    }
    let mut given: Vec<&String> = a.head_shas.iter().collect();
    let mut now: Vec<&String> = heads.iter().collect();
    given.sort();
    now.sort();
    if given != now {
        let short =
            |v: &[&String]| v.iter().map(|s| s.chars().take(7).collect::<String>()).collect::<Vec<_>>().join(", ");
        return Some(format!("given for {}, the head is now {}", short(&given), short(&now)));
    }
    None
}

pub fn evaluate(i: &GateInput<'_>) -> Evaluation {
    let mut gates = Vec::new();
    let mut roles = Vec::new();

    // 1. The policy and the request.
    if i.unread.policy {
        gates.push(Gate {
            name: "Config",
            state: GateState::Pending,
            detail: "`.github/shipgate.yml` not read (dry-run: no GitHub credentials); the built-in policy applies"
                .into(),
        });
    } else if i.policy_errors.is_empty() {
        gates.push(Gate { name: "Config", state: GateState::Pass, detail: "`.github/shipgate.yml` is valid".into() });
    } else {
        let first = &i.policy_errors[0];
        gates.push(Gate {
            name: "Config",
            state: GateState::Fail,
            detail: format!(
                "`.github/shipgate.yml` is invalid ({} error{}; first at {first})",
                i.policy_errors.len(),
                if i.policy_errors.len() == 1 { "" } else { "s" }
            ),
        });
    }
    if i.problems.is_empty() {
        gates.push(Gate { name: "Request", state: GateState::Pass, detail: "complete".into() });
    } else {
        let fields: Vec<&str> = i.problems.iter().map(|p| p.field).collect();
        gates.push(Gate {
            name: "Request",
            state: GateState::Fail,
            detail: format!("missing or invalid: {}", fields.join(", ")),
        });
    }
    let env = i.environment.and_then(|e| i.policy.environment(e));

    // 2. Tests on each linked PR's head.
    if i.prs.is_empty() && !i.unread.prs.is_empty() {
        let list: Vec<String> = i.unread.prs.iter().map(|n| format!("#{n}")).collect();
        gates.push(Gate {
            name: "Tests",
            state: GateState::Pending,
            detail: format!("{} not read (dry-run: no GitHub credentials)", list.join(", ")),
        });
    } else {
        gates.push(tests_gate(i.prs, env.map(|e| &e.require_checks), i.deploying_runs));
    }

    // 3. Approvals.
    match env {
        None => gates.push(Gate { name: "Approvals", state: GateState::Pending, detail: "no environment yet".into() }),
        Some(env) => {
            let (gate, r) = approvals_gate(i, env);
            gates.push(gate);
            roles = r;
        }
    }

    // 4. Staging first.
    if let Some(env) = env
        && env.require_staging_first
    {
        let (state, detail) = match i.staging_ok {
            Some(true) => {
                (GateState::Pass, format!("the same SHA deployed to {} successfully", env.staging_environment))
            }
            Some(false) | None => (
                GateState::Pending,
                format!("waiting for a successful deployment of the same SHA to {}", env.staging_environment),
            ),
        };
        gates.push(Gate { name: "Staging first", state, detail });
    }

    // 5. A freeze window: the gate stays closed until it ends.
    if let Some(env) = env
        && !env.freeze.is_empty()
    {
        gates.push(match i.frozen {
            Some(text) => Gate { name: "Freeze", state: GateState::Fail, detail: text.to_string() },
            None => Gate { name: "Freeze", state: GateState::Pass, detail: "no freeze window now".into() },
        });
    }

    // 6. Hold, denial, red CI.
    let (state, detail) = match (i.denied, i.hold_by, i.ci_red) {
        (Some((by, reason)), _, _) => (GateState::Fail, format!("denied by @{by}: {reason}")),
        (None, Some(by), _) => (GateState::Fail, format!("on hold by @{by} (`/unhold` to release)")),
        (None, None, Some(incident)) => (GateState::Fail, format!("CI is red on the target branch: {incident}")),
        (None, None, None) => (GateState::Pass, "no hold, no denial".into()),
    };
    gates.push(Gate { name: "Hold", state, detail });

    let open = gates.iter().all(|g| g.state == GateState::Pass);
    Evaluation { gates, roles, open, breakglass: None }
}

/// The gate with an unspent break-glass (SPEC §3.7), said as `text` ("by @sre: checkout is down"):
/// open for one deployment whatever else is missing (approvals, tests, a red branch, a freeze, a
/// hold), except a `/deny` or an invalid policy, which it never overrides. An evaluation that is
/// open anyway is left as it is (break-glass is not what opens it).
pub fn with_breakglass(mut e: Evaluation, text: &str, denied: bool, policy_invalid: bool) -> Evaluation {
    if e.open {
        return e;
    }
    if denied || policy_invalid {
        let why = if denied { "a `/deny` stands" } else { "`.github/shipgate.yml` is invalid" };
        e.gates.push(Gate {
            name: "Break-glass",
            state: GateState::Fail,
            detail: format!("{text}; it does not override this: {why}"),
        });
        return e;
    }
    e.gates.push(Gate {
        name: "Break-glass",
        state: GateState::Pass,
        detail: format!("{text}; open for one deployment"),
    });
    e.open = true;
    e.breakglass = Some(text.to_string());
    e
}

pub fn tests_gate(prs: &[PrFacts], require: Option<&RequireChecks>, deploying_runs: &[i64]) -> Gate {
    if prs.is_empty() {
        return Gate { name: "Tests", state: GateState::Pending, detail: "no linked pull request".into() };
    }
    let mut failing = Vec::new();
    let mut pending = Vec::new();
    for pr in prs {
        let checks: Vec<&CheckFact> = pr
            .checks
            .iter()
            .filter(|c| !is_own_check(&c.name))
            // The deploying run's unfinished jobs (the deploy job waiting on the gate); its
            // finished ones, a failed test included, still count.
            .filter(|c| c.status == "completed" || c.run_id.is_none_or(|run| !deploying_runs.contains(&run)))
            .collect();
        let sha: String = pr.head_sha.chars().take(7).collect();
        match require {
            Some(RequireChecks::Named(names)) => {
                for n in names {
                    match checks.iter().find(|c| c.name.eq_ignore_ascii_case(n)) {
                        None => pending.push(format!("`{n}` has not reported on #{} ({sha})", pr.number)),
                        Some(c) => classify(c, pr.number, &mut failing, &mut pending),
                    }
                }
            }
            _ => {
                if checks.is_empty() {
                    pending.push(format!("no checks have reported on #{} ({sha}) yet", pr.number));
                }
                for c in checks {
                    classify(c, pr.number, &mut failing, &mut pending);
                }
            }
        }
    }
    if !failing.is_empty() {
        Gate { name: "Tests", state: GateState::Fail, detail: failing.join("; ") }
    } else if !pending.is_empty() {
        Gate { name: "Tests", state: GateState::Pending, detail: pending.join("; ") }
    } else {
        let shas: Vec<String> =
            prs.iter().map(|p| format!("#{} ({})", p.number, p.head_sha.chars().take(7).collect::<String>())).collect();
        Gate { name: "Tests", state: GateState::Pass, detail: format!("all checks green on {}", shas.join(", ")) }
    }
}

fn classify(c: &CheckFact, pr: i64, failing: &mut Vec<String>, pending: &mut Vec<String>) {
    if c.status != "completed" {
        pending.push(format!("`{}` is {} on #{pr}", c.name, c.status.replace('_', " ")));
        return;
    }
    match c.conclusion.as_deref() {
        Some("success") | Some("neutral") | Some("skipped") => {}
        other => failing.push(format!("`{}` {} on #{pr}", c.name, other.unwrap_or("failed"))),
    }
}

fn approvals_gate(i: &GateInput<'_>, env: &Environment) -> (Gate, Vec<RoleStatus>) {
    let heads: Vec<String> = i.prs.iter().map(|p| p.head_sha.clone()).collect();
    let env_name = i.environment.unwrap_or_default();
    let authors: BTreeSet<UserId> = i
        .prs
        .iter()
        .flat_map(|p| std::iter::once(p.author.id).chain(p.pushers.iter().flatten().copied()))
        .chain([i.requester.id])
        .collect();

    // The roles this request needs.
    let mut needed = Vec::new();
    for rule in &env.approvals {
        if rule_applies(rule, i.prs) && !needed.iter().any(|(r, _): &(String, Option<String>)| *r == rule.role) {
            let because = (!rule.when_paths.is_empty()).then(|| rule.when_paths.join(", "));
            needed.push((rule.role.clone(), because));
        }
    }
    // Approvals that count: current, for this environment, not from the requester or a PR author
    // (unless allowed); one per user.
    let mut seen = BTreeSet::new();
    let candidates: Vec<&ApprovalFact> = i
        .approvals
        .iter()
        .filter(|a| a.environment.eq_ignore_ascii_case(env_name))
        .filter(|a| approval_is_current(a, &heads, i.revision).is_none())
        .filter(|a| env.allow_self_approval || !authors.contains(&a.user.id))
        .filter(|a| seen.insert(a.user.id))
        .collect();
    // Assign approvers to roles: a matching, so that one person fills at most one role unless
    // the policy allows more.
    let can: Vec<Vec<usize>> = needed
        .iter()
        .map(|(role, _)| {
            candidates.iter().enumerate().filter(|(_, a)| (i.holds)(&a.user, role)).map(|(k, _)| k).collect()
        })
        .collect();
    let assignment = assign(&can, candidates.len(), env.allow_multiple_roles);
    let mut roles = Vec::new();
    let mut missing = Vec::new();
    for (k, (role, because)) in needed.iter().enumerate() {
        let by = assignment[k].map(|c| candidates[c].user.login.clone());
        if by.is_none() {
            missing.push(role.clone());
        }
        roles.push(RoleStatus {
            role: role.clone(),
            approved_by: by,
            who: who_may(i.policy, role),
            because: because.clone(),
        });
    }
    let gate = if needed.is_empty() {
        Gate { name: "Approvals", state: GateState::Pass, detail: format!("{env_name} needs no approval") }
    } else if missing.is_empty() {
        let by: Vec<String> =
            roles.iter().map(|r| format!("{} by @{}", r.role, r.approved_by.clone().unwrap_or_default())).collect();
        Gate { name: "Approvals", state: GateState::Pass, detail: by.join(", ") }
    } else {
        Gate { name: "Approvals", state: GateState::Pending, detail: format!("waiting for {}", missing.join(", ")) }
    };
    (gate, roles)
}

/// Assigns candidates to roles (`can[role]` = candidates able to fill it), maximising the roles
/// filled; with `shared`, one candidate may fill several roles.
fn assign(can: &[Vec<usize>], n: usize, shared: bool) -> Vec<Option<usize>> {
    if shared {
        return can.iter().map(|c| c.first().copied()).collect();
    }
    // Augmenting paths (Kuhn's algorithm): roles and approvers are few.
    let mut owner: Vec<Option<usize>> = vec![None; n];
    fn try_role(r: usize, can: &[Vec<usize>], owner: &mut Vec<Option<usize>>, seen: &mut Vec<bool>) -> bool {
        for &c in &can[r] {
            if seen[c] {
                continue;
            }
            seen[c] = true;
            if owner[c].is_none_or(|other| try_role(other, can, owner, seen)) {
                owner[c] = Some(r);
                return true;
            }
        }
        false
    }
    for r in 0..can.len() {
        let mut seen = vec![false; n];
        try_role(r, can, &mut owner, &mut seen);
    }
    let mut out = vec![None; can.len()];
    for (c, r) in owner.iter().enumerate() {
        if let Some(r) = r {
            out[*r] = Some(c);
        }
    }
    out
}

fn who_may(policy: &Policy, role: &str) -> String {
    match policy.roles.get(role) {
        None => "nobody (the role is not defined)".into(),
        Some(r) => {
            let mut v: Vec<String> = r.users.iter().map(|u| format!("@{u}")).collect();
            v.extend(r.teams.iter().map(|t| format!("@{}/{}", t.org, t.slug)));
            if let Some(p) = r.permission {
                v.push(match p {
                    super::policy::Permission::Admin => "repository admins".to_string(),
                    p => format!("anyone with {} or higher permission", p.as_str()),
                });
            }
            if v.is_empty() { "nobody (the role is empty)".into() } else { v.join(", ") }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy;

    const POLICY: &str = r#"
roles:
  pm: { users: [alice] }
  backend-lead: { teams: [acme/backend] }
environments:
  production:
    approvals:
      - role: pm
      - role: backend-lead
        when_paths: ["apps/backend/**"]
    require_staging_first: true
  staging:
    approvals: []
"#;
    const HEAD: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";

    fn user(id: i64, login: &str) -> User {
        User { id: UserId(id), login: login.into() }
    }

    /// The facts of one evaluation, built up by each test (policy-bot's test context).
    struct Facts {
        policy: Policy,
        errors: Vec<ConfigError>,
        problems: Vec<Problem>,
        environment: Option<&'static str>,
        prs: Vec<PrFacts>,
        approvals: Vec<ApprovalFact>,
        revision: i64,
        staging_ok: Option<bool>,
        hold_by: Option<&'static str>,
        denied: Option<(&'static str, &'static str)>,
        ci_red: Option<&'static str>,
    }

    impl Facts {
        /// Production, one PR by dave (301) touching the backend, checks green, staging done.
        fn new() -> Facts {
            Facts {
                policy: policy::parse(POLICY).expect("policy"),
                errors: vec![],
                problems: vec![],
                environment: Some("production"),
                prs: vec![PrFacts {
                    number: 12,
                    head_sha: HEAD.into(),
                    author: user(301, "dave"),
                    state: "open".into(),
                    files: Some(vec!["apps/backend/api.rs".into()]),
                    checks: vec![CheckFact {
                        name: "build".into(),
                        status: "completed".into(),
                        conclusion: Some("success".into()),
                        run_id: None,
                    }],
                    files_truncated: false,
                    pushers: Some(vec![UserId(301)]),
                    first_commit_at: None,
                    merge_commit: None,
                    merged_at: None,
                    base_ref: None,
                    default_branch: None,
                }],
                approvals: vec![],
                revision: 1,
                staging_ok: Some(true),
                hold_by: None,
                denied: None,
                ci_red: None,
            }
        }

        fn approve(mut self, id: i64, login: &str) -> Facts {
            let n = self.approvals.len() as i64;
            self.approvals.push(ApprovalFact {
                comment_id: 1000 + n,
                user: user(id, login),
                environment: "production".into(),
                head_shas: vec![HEAD.into()],
                revision: 1,
            });
            self
        }

        fn eval(&self) -> Evaluation {
            // alice (101) is pm, bob (201) a backend lead, carol (401) the requester is both.
            let holds = |u: &User, role: &str| match role {
                "pm" => matches!(u.id.get(), 101 | 401 | 202),
                "backend-lead" => matches!(u.id.get(), 201 | 401 | 301 | 202),
                _ => false,
            };
            evaluate(&GateInput {
                policy: &self.policy,
                policy_errors: &self.errors,
                problems: &self.problems,
                environment: self.environment,
                requester: &user(401, "carol"),
                prs: &self.prs,
                approvals: &self.approvals,
                revision: self.revision,
                holds: &holds,
                staging_ok: self.staging_ok,
                hold_by: self.hold_by,
                denied: self.denied,
                ci_red: self.ci_red,
                deploying_runs: &[],
                frozen: None,
                unread: Unread::default(),
            })
        }
    }

    fn gate(e: &Evaluation, name: &str) -> (GateState, String) {
        let g = e.gates.iter().find(|g| g.name == name).unwrap_or_else(|| panic!("no {name} gate: {e:?}"));
        (g.state, g.detail.clone())
    }

    #[test]
    fn every_gate_passes_and_the_gate_opens() {
        let e = Facts::new().approve(101, "alice").approve(201, "bob").eval();
        assert!(e.open, "{e:?}");
        assert_eq!(gate(&e, "Approvals").1, "pm by @alice, backend-lead by @bob");
    }

    #[test]
    fn breakglass_opens_a_closed_gate_but_never_past_a_denial_or_a_broken_policy() {
        // No approval, red CI, a hold: break-glass opens it, and says what it overrides.
        let mut f = Facts::new();
        f.ci_red = Some("CI #7 on main");
        let e = with_breakglass(f.eval(), "by @sre: checkout is down", false, false);
        assert!(e.open && e.breakglass.is_some(), "{e:?}");
        assert_eq!(gate(&e, "Break-glass").0, GateState::Pass);
        let overridden = e.overridden().join("; ");
        assert!(overridden.contains("Approvals") && overridden.contains("CI is red"), "{overridden}");
        // An open gate is left as it is.
        let open = Facts::new().approve(101, "alice").approve(201, "bob").eval();
        assert_eq!(with_breakglass(open.clone(), "by @sre: x", false, false), open);
        // A denial or a broken policy keeps it closed, and says so.
        for (denied, invalid) in [(true, false), (false, true)] {
            let e = with_breakglass(Facts::new().eval(), "by @sre: x", denied, invalid);
            assert!(!e.open && e.breakglass.is_none(), "{e:?}");
            assert_eq!(gate(&e, "Break-glass").0, GateState::Fail);
        }
    }

    #[test]
    fn a_broken_policy_or_request_closes_it() {
        let mut f = Facts::new().approve(101, "alice").approve(201, "bob");
        f.errors = vec![ConfigError { line: 3, column: 5, message: "unknown role `qa`".into() }];
        let e = f.eval();
        assert!(!e.open);
        assert_eq!(gate(&e, "Config").0, GateState::Fail);
        let mut f = Facts::new().approve(101, "alice").approve(201, "bob");
        f.problems = vec![Problem { field: "rollback_plan", message: "missing".into() }];
        assert_eq!(gate(&f.eval(), "Request"), (GateState::Fail, "missing or invalid: rollback_plan".into()));
    }

    #[test]
    fn tests_gate() {
        let mut f = Facts::new().approve(101, "alice").approve(201, "bob");
        f.prs[0].checks.push(CheckFact {
            name: "lint".into(),
            status: "in_progress".into(),
            conclusion: None,
            run_id: None,
        });
        assert_eq!(gate(&f.eval(), "Tests").0, GateState::Pending);
        f.prs[0].checks[1] = CheckFact {
            name: "lint".into(),
            status: "completed".into(),
            conclusion: Some("failure".into()),
            run_id: None,
        };
        assert_eq!(gate(&f.eval(), "Tests"), (GateState::Fail, "`lint` failure on #12".into()));
        // The App's own check runs never count; neutral and skipped pass.
        f.prs[0].checks[1] = CheckFact {
            name: "shipgate / deploy gate (production)".into(),
            status: "completed".into(),
            conclusion: Some("failure".into()),
            run_id: None,
        };
        f.prs[0].checks.push(CheckFact {
            name: "docs".into(),
            status: "completed".into(),
            conclusion: Some("skipped".into()),
            run_id: None,
        });
        assert_eq!(gate(&f.eval(), "Tests").0, GateState::Pass);
        f.prs[0].checks.clear();
        assert_eq!(gate(&f.eval(), "Tests").0, GateState::Pending, "no check at all is not green");
    }

    #[test]
    fn approvals_gate() {
        // Missing roles are named.
        assert_eq!(gate(&Facts::new().approve(101, "alice").eval(), "Approvals").1, "waiting for backend-lead");
        // The requester, the PR author and a pusher never count.
        let mut f = Facts::new().approve(101, "alice").approve(401, "carol");
        assert_eq!(gate(&f.eval(), "Approvals").0, GateState::Pending);
        f = Facts::new().approve(101, "alice").approve(301, "dave");
        assert_eq!(gate(&f.eval(), "Approvals").0, GateState::Pending);
        f = Facts::new().approve(101, "alice").approve(201, "bob");
        f.prs[0].pushers = Some(vec![UserId(301), UserId(201)]);
        assert_eq!(gate(&f.eval(), "Approvals").0, GateState::Pending, "bob pushed to the PR");
        // One person fills one role.
        assert_eq!(gate(&Facts::new().approve(202, "both").eval(), "Approvals").0, GateState::Pending);
        // A path-bound role applies only to its files, unless GitHub lists fewer than changed.
        let mut f = Facts::new().approve(101, "alice");
        f.prs[0].files = Some(vec!["docs/readme.md".into()]);
        assert!(f.eval().open, "no backend file: pm alone");
        f.prs[0].files_truncated = true;
        assert_eq!(gate(&f.eval(), "Approvals").1, "waiting for backend-lead");
        // An approval for another environment counts nothing here.
        let mut f = Facts::new().approve(101, "alice").approve(201, "bob");
        f.approvals[1].environment = "staging".into();
        assert_eq!(gate(&f.eval(), "Approvals").0, GateState::Pending);
        // No environment yet.
        let mut f = Facts::new();
        f.environment = None;
        assert_eq!(gate(&f.eval(), "Approvals"), (GateState::Pending, "no environment yet".into()));
    }

    #[test]
    fn stale_approvals_say_why() {
        let a = ApprovalFact {
            comment_id: 1,
            user: user(101, "alice"),
            environment: "production".into(),
            head_shas: vec![HEAD.into()],
            revision: 1,
        };
        assert_eq!(approval_is_current(&a, &[HEAD.into()], 1), None);
        assert_eq!(approval_is_current(&a, &[HEAD.into()], 2), Some("the request changed after it was given".into()));
        let now = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2".to_string();
        assert_eq!(approval_is_current(&a, &[now], 1), Some("given for aaaaaaa, the head is now bbbbbbb".into()));
        // Stale approvals do not fill roles.
        let mut f = Facts::new().approve(101, "alice").approve(201, "bob");
        f.revision = 2;
        assert_eq!(gate(&f.eval(), "Approvals").1, "waiting for pm, backend-lead");
    }

    #[test]
    fn staging_hold_denial_and_red_ci() {
        let mut f = Facts::new().approve(101, "alice").approve(201, "bob");
        f.staging_ok = Some(false);
        assert_eq!(gate(&f.eval(), "Staging first").0, GateState::Pending);
        f.staging_ok = None;
        assert_eq!(gate(&f.eval(), "Staging first").0, GateState::Pending);
        f.staging_ok = Some(true);
        f.hold_by = Some("eve");
        assert_eq!(gate(&f.eval(), "Hold"), (GateState::Fail, "on hold by @eve (`/unhold` to release)".into()));
        f.denied = Some(("alice", "budget"));
        assert_eq!(gate(&f.eval(), "Hold"), (GateState::Fail, "denied by @alice: budget".into()));
        f.hold_by = None;
        f.denied = None;
        f.ci_red = Some("CI failing on main");
        assert_eq!(gate(&f.eval(), "Hold").0, GateState::Fail);
        assert!(!f.eval().open);
    }

    #[test]
    fn matching_fills_as_many_roles_as_possible() {
        // Role 0 can be filled by A or B, role 1 only by A: A→1, B→0.
        assert_eq!(assign(&[vec![0, 1], vec![0]], 2, false), vec![Some(1), Some(0)]);
        // One person, two roles, not shared: only one filled.
        assert_eq!(assign(&[vec![0], vec![0]], 1, false).iter().filter(|x| x.is_some()).count(), 1);
        assert_eq!(assign(&[vec![0], vec![0]], 1, true), vec![Some(0), Some(0)]);
    }
}

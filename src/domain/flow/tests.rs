//! The request's whole decision, rule by rule, over facts built by hand (policy-bot's test
//! context): no database, no GitHub, no async.

use super::*;
use crate::domain::gate::CheckFact;
use crate::domain::ids::{InstallationId, IssueNumber, RepoId, UserId};
use crate::domain::policy;

const POLICY: &str = r#"
roles:
  pm: { users: [alice] }
  sre: { permission: maintain }
  backend-lead: { teams: [acme/backend] }
environments:
  production:
    approvals:
      - role: pm
      - role: backend-lead
        when_paths: ["apps/backend/**"]
    deploy: deployment
  staging:
    approvals: []
"#;
const HEAD: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
const HEAD2: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2";
const ISSUE: i64 = 5;

fn user(id: i64, login: &str) -> User {
    User { id: UserId(id), login: login.into() }
}

fn alice() -> User {
    user(101, "alice")
}

fn carol() -> User {
    user(401, "carol")
}

fn target() -> Target {
    Target { installation: InstallationId(1), repo_id: RepoId(2), repo: "acme/app".into(), issue: IssueNumber(ISSUE) }
}

fn body(env: &str, pr: &str, migration: &str) -> String {
    format!(
        "CHANGE REQUEST:\n- Service/component: api\n- Environment: {env}\n- Reason: new endpoint\n\nIMPACT ANALYSIS:\n\
         - Downtime: none\n- Rollback time: 3 min\n- Dependencies: none\n- Data migration: {migration}\n\nIMPLEMENTATION:\n\
         1. Code changes {pr}\n4. Deployment steps: merge and deploy\n5. Verification: smoke tests\n\
         6. Rollback plan: revert the PR and redeploy\n"
    )
}

fn pr(head: &str) -> PrFacts {
    PrFacts {
        number: 12,
        head_sha: head.into(),
        author: user(301, "dave"),
        state: "open".into(),
        files: Some(vec!["apps/web/page.tsx".into()]),
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
    }
}

/// Production, PR #12 by dave (301) at HEAD with green checks, requested by carol (401), alice
/// pinned as the `pm`.
fn facts() -> Facts {
    Facts {
        policy: policy::parse(POLICY).expect("policy"),
        issue: IssueSnapshot {
            author: carol(),
            open: true,
            body: body("production", "#12", "none"),
            labels: vec!["DEPLOYMENT_REQUEST".into()],
            updated_at: Some(1_000),
        },
        prs: vec![pr(HEAD)],
        review_approved: true,
        pinned: [("alice".to_string(), UserId(101))].into(),
        ..Facts::default()
    }
}

fn comment(id: i64, who: User, text: &str) -> Trigger {
    Trigger::Comment { id, user: who, bot: false, body: text.into(), created_at: Some(2_000), on_pr: None, sole: true }
}

/// The request after one evaluation, as the next evaluation finds it.
fn after(prev: &Prev, d: &Decision) -> Prev {
    prev.after(d, 0)
}

fn run(prev: &Prev, trigger: Trigger, f: &Facts) -> (Prev, Decision) {
    let d = decide(&target(), prev, &trigger, f, 10_000);
    (after(prev, &d), d)
}

fn kinds(d: &Decision) -> Vec<String> {
    d.effects
        .iter()
        .filter_map(|o| match o {
            Out::Audit { kind, .. } => Some(kind.clone()),
            _ => None,
        })
        .collect()
}

fn replies(d: &Decision) -> Vec<String> {
    d.replies
        .iter()
        .filter_map(|a| match a {
            Action::UpsertComment { body, .. } => Some(body.clone()),
            _ => None,
        })
        .collect()
}

fn reacted(d: &Decision) -> bool {
    d.replies.iter().any(|a| matches!(a, Action::AddReaction { .. }))
}

/// The body of the comment `d` writes whose marker starts with `marker`.
fn upserted(d: &Decision, marker: &str) -> Option<String> {
    acts(d).into_iter().find_map(|a| match a {
        Action::UpsertComment { marker: m, body, .. } if m.starts_with(marker) => Some(body.clone()),
        _ => None,
    })
}

fn acts(d: &Decision) -> Vec<&Action> {
    d.effects
        .iter()
        .filter_map(|o| match o {
            Out::Act(a) => Some(a),
            _ => None,
        })
        .collect()
}

/// A new request, then alice's approval: the gate opens.
fn approved() -> (Prev, Facts) {
    let f = facts();
    let (prev, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    let (prev, d) = run(&prev, comment(7, alice(), "/approve"), &f);
    assert!(d.row.gate_open == 1, "{:?}", kinds(&d));
    (prev, f)
}

#[test]
fn a_new_request_is_parsed_shown_checked_and_labelled() {
    let f = facts();
    let (_, d) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    assert_eq!(kinds(&d), ["request.parsed"]);
    assert_eq!(d.row.state, "awaiting-approval");
    assert_eq!(d.row.gate_open, 0);
    let a = acts(&d);
    assert!(matches!(a[0], Action::UpsertComment { marker, .. } if marker == messages::REQUEST_MARKER));
    assert!(
        matches!(a[1], Action::UpsertCheckRun { head_sha, conclusion: Some(c), .. } if head_sha == HEAD && c == "action_required")
    );
    assert!(matches!(a[2], Action::SetLabels { add, .. } if add == &["awaiting-approval"]));
    assert_eq!(d.links, [(Link::Pr, "12".to_string()), (Link::Sha, HEAD.to_string())]);
}

#[test]
fn an_issue_without_the_label_and_never_a_request_is_no_concern() {
    let mut f = facts();
    f.issue.labels.clear();
    assert!(!concerns(&Prev::default(), &f.policy, &f.issue));
    let (prev, _) = approved();
    assert!(concerns(&prev, &f.policy, &f.issue), "a request once is one until its row goes");
}

#[test]
fn the_role_holder_approves_and_the_gate_opens() {
    let (prev, _) = approved();
    let a = &prev.approvals[0];
    assert_eq!(
        (a.user.id, a.state, a.head_shas.as_slice()),
        (UserId(101), Some(ApprovalState::Active), &[HEAD.to_string()][..])
    );
    let row = prev.row.expect("row");
    assert_eq!((row.state.as_str(), row.approved_at), ("approved", Some(10_000)));
}

#[test]
fn an_approval_is_audited_with_who_and_what_and_answered_with_a_reaction() {
    let f = facts();
    let (prev, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    let (_, d) = run(&prev, comment(7, alice(), "/approve"), &f);
    assert_eq!(kinds(&d), ["gate.opened", "approval.given"]);
    assert!(reacted(&d) && replies(&d).is_empty());
}

#[test]
fn someone_without_the_role_is_refused_and_nothing_changes() {
    let f = facts();
    let (prev, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    let (next, d) = run(&prev, comment(7, user(501, "eve"), "/approve"), &f);
    assert!(next.approvals.is_empty() && d.row.gate_open == 0);
    assert!(replies(&d)[0].starts_with("@eve "), "{:?}", replies(&d));
    assert!(!reacted(&d));
}

#[test]
fn a_login_pinned_to_another_account_fills_no_role_and_is_said() {
    let f = facts();
    let (prev, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    // Someone else now owns the login `alice` (a rename, then a new registration).
    let (next, d) = run(&prev, comment(7, user(999, "alice"), "/approve"), &f);
    assert!(next.approvals.is_empty());
    let remembered: Remembered = serde_json::from_str(&d.row.facts).expect("facts");
    assert!(remembered.identity_notes[0].contains("now belongs to another account (id 999)"), "{remembered:?}");
}

#[test]
fn a_new_head_makes_the_approval_stale_and_a_push_back_never_revives_it() {
    let (prev, mut f) = approved();
    f.prs = vec![pr(HEAD2)];
    let (prev, d) = run(&prev, Trigger::Recheck { checks_only: false }, &f);
    assert_eq!(kinds(&d), ["gate.closed", "approval.stale"]);
    assert_eq!(prev.approvals[0].state, Some(ApprovalState::Stale));
    f.prs = vec![pr(HEAD)];
    let (_, d) = run(&prev, Trigger::Recheck { checks_only: false }, &f);
    assert_eq!(d.row.gate_open, 0, "stale stays stale");
}

#[test]
fn any_change_of_the_content_makes_approvals_stale() {
    let (prev, mut f) = approved();
    f.issue.body = body("production", "#12", "DROP TABLE users;");
    let (next, d) = run(&prev, Trigger::Issue { action: "edited".into() }, &f);
    assert_eq!(d.row.revision, 2);
    assert_eq!(next.approvals[0].note.as_deref(), Some("the request changed after it was given"));
    assert!(kinds(&d).contains(&"request.revised".to_string()) && d.row.gate_open == 0);
}

#[test]
fn closing_and_reopening_starts_over() {
    let (prev, mut f) = approved();
    f.issue.open = false;
    let (prev, d) = run(&prev, Trigger::Issue { action: "closed".into() }, &f);
    assert_eq!(d.row.state, "closed");
    f.issue.open = true;
    let (_, d) = run(&prev, Trigger::Issue { action: "reopened".into() }, &f);
    assert_eq!((d.row.revision, d.row.gate_open, d.row.state.as_str()), (3, 0, "awaiting-approval"));
}

#[test]
fn deleting_or_editing_out_the_approving_comment_withdraws_it() {
    let (prev, f) = approved();
    let (next, d) = run(&prev, Trigger::CommentDeleted { id: 7 }, &f);
    assert_eq!(next.approvals[0].state, Some(ApprovalState::Withdrawn));
    assert!(kinds(&d).contains(&"approval.withdrawn".to_string()) && d.row.gate_open == 0);
    let edit = Trigger::CommentEdited {
        id: 7,
        author: alice(),
        editor: user(501, "eve"),
        body: "LGTM".into(),
        before: Some("/approve".into()),
        on_pr: None,
        by_app: false,
    };
    let (next, _) = run(&prev, edit, &f);
    assert_eq!(
        next.approvals[0].note.as_deref(),
        Some("the approving comment was edited and no longer says `/approve`")
    );
}

#[test]
fn a_command_edited_in_is_answered_not_applied() {
    let f = facts();
    let (prev, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    let edit = Trigger::CommentEdited {
        id: 8,
        author: alice(),
        editor: user(501, "eve"),
        body: "/approve".into(),
        before: Some("LGTM".into()),
        on_pr: None,
        by_app: false,
    };
    let (next, d) = run(&prev, edit, &f);
    assert!(next.approvals.is_empty());
    assert_eq!(replies(&d), [format!("@eve {}", messages::edited_command())]);
    // Its creation, delivered late, carries nothing either.
    let (next, _) = run(&next, comment(8, alice(), "/approve"), &f);
    assert!(next.approvals.is_empty());
}

#[test]
fn a_comment_on_the_pr_from_before_the_label_carries_no_command() {
    let f = facts();
    let (prev, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    let early = Trigger::Comment {
        id: 9,
        user: alice(),
        bot: false,
        body: "/approve".into(),
        created_at: Some(500),
        on_pr: Some(12),
        sole: true,
    };
    let (next, d) = run(&prev, early, &f);
    assert!(next.approvals.is_empty());
    assert!(replies(&d)[0].contains("written before the issue became a deployment request"));
}

#[test]
fn only_the_holder_lifts_a_hold() {
    let (prev, mut f) = approved();
    f.permissions = [(UserId(501), Some(Permission::Write)), (UserId(502), Some(Permission::Write))].into();
    let (prev, d) = run(&prev, comment(10, user(501, "eve"), "/hold"), &f);
    assert_eq!((d.row.state.as_str(), d.row.hold_by_id), ("on-hold", Some(501)));
    let (prev, d) = run(&prev, comment(11, user(502, "mallory"), "/unhold"), &f);
    assert_eq!(d.row.hold_by_id, Some(501), "{:?}", replies(&d));
    let (_, d) = run(&prev, comment(12, user(501, "eve"), "/unhold"), &f);
    assert_eq!((d.row.hold_by_id, d.row.state.as_str()), (None, "approved"));
}

#[test]
fn deploy_creates_the_deployment_of_the_approved_head_once() {
    let (prev, mut f) = approved();
    f.permissions = [(UserId(101), Some(Permission::Write))].into();
    let (prev, d) = run(&prev, comment(20, alice(), "/deploy"), &f);
    let created: Vec<_> = acts(&d).into_iter().filter(|a| matches!(a, Action::CreateDeployment { .. })).collect();
    assert!(
        matches!(created[..], [Action::CreateDeployment { git_ref, key, .. }] if git_ref == HEAD && key == "request-5-20")
    );
    assert_eq!((d.row.deploy_state.as_deref(), d.row.state.as_str()), (Some("requested"), "approved"));
    // A second `/deploy` while that one is asked for is refused.
    let (_, d) = run(&prev, comment(21, alice(), "/deploy"), &f);
    assert!(!acts(&d).iter().any(|a| matches!(a, Action::CreateDeployment { .. })), "{:?}", replies(&d));
}

#[test]
fn deploy_is_refused_while_the_gate_is_closed() {
    let f = facts();
    let (prev, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    let (_, d) = run(&prev, comment(20, alice(), "/deploy"), &f);
    assert!(!acts(&d).iter().any(|a| matches!(a, Action::CreateDeployment { .. })));
    assert!(replies(&d)[0].contains("/deploy"), "{:?}", replies(&d));
}

fn deployment(id: i64, issue: Option<i64>, sha: &str, state: DeployState, origin: &str) -> DeploymentFact {
    DeploymentFact {
        deployment_id: id,
        issue,
        sha: sha.into(),
        environment: "production".into(),
        state,
        origin: origin.into(),
        created_at: 9_000,
        started_at: Some(9_100),
        finished_at: state.is_final().then_some(9_900),
        log_url: None,
    }
}

#[test]
fn its_own_successful_deployment_closes_the_request_with_a_summary() {
    let (prev, mut f) = approved();
    f.deployment = Some(deployment(77, Some(ISSUE), HEAD, DeployState::Success, "app"));
    let (_, d) = run(&prev, Trigger::Deployment { id: 77 }, &f);
    assert_eq!(d.row.state, "deployed");
    assert!(acts(&d).iter().any(|a| matches!(a, Action::UpsertComment { marker, .. } if marker == "summary-77")));
    assert!(acts(&d).iter().any(|a| matches!(a, Action::UpdateIssue { state: Some(s), .. } if s == "closed")));
    assert!(kinds(&d).contains(&"request.closed".to_string()));
}

#[test]
fn a_failed_deployment_posts_the_rollback_plan_and_rollback_goes_only_to_a_commit_the_app_deployed() {
    let (prev, mut f) = approved();
    f.deployment = Some(deployment(77, Some(ISSUE), HEAD, DeployState::Failure, "app"));
    f.last_good = [(("production".to_string(), HEAD.to_string()), None)].into();
    let (prev, d) = run(&prev, Trigger::Deployment { id: 77 }, &f);
    assert_eq!(d.row.state, "deploy-failed");
    assert!(acts(&d).iter().any(|a| matches!(a, Action::UpsertComment { marker, .. } if marker == "deploy-failed-77")));
    f.deployment = None;
    f.current_deployment = Some(deployment(77, Some(ISSUE), HEAD, DeployState::Failure, "app"));
    let (_, d) = run(&prev, comment(30, alice(), "/rollback"), &f);
    assert!(!acts(&d).iter().any(|a| matches!(a, Action::CreateDeployment { .. })), "nothing to roll back to");
    f.last_good = [(("production".to_string(), HEAD.to_string()), Some(HEAD2.to_string()))].into();
    let (_, d) = run(&prev, comment(31, alice(), "/rollback"), &f);
    assert!(acts(&d).iter().any(|a| matches!(a, Action::CreateDeployment { git_ref, .. } if git_ref == HEAD2)));
}

#[test]
fn someone_elses_deployment_never_counts_and_is_reported_while_the_gate_is_closed() {
    let f = facts();
    let (prev, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    let mut f = f;
    f.deployment = Some(deployment(88, None, HEAD, DeployState::Success, "manual"));
    let (_, d) = run(&prev, Trigger::Deployment { id: 88 }, &f);
    assert_eq!((d.row.deployment_id, d.row.state.as_str()), (None, "awaiting-approval"));
    assert!(kinds(&d).contains(&"deployment.ungated".to_string()));
}

#[test]
fn a_waiting_run_is_approved_rejected_or_told_what_is_missing() {
    let run_for = |sha: &str| WaitingRun {
        run_id: 3,
        environment: "production".into(),
        sha: sha.into(),
        ..WaitingRun::default()
    };
    let f = Facts { waiting_runs: vec![run_for(HEAD)], ..facts() };
    let (prev, d) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    assert!(d.effects.iter().any(|o| matches!(o, Out::ReportRule { run_id: 3, .. })));
    let (prev, d) = run(&prev, comment(7, alice(), "/approve"), &f);
    assert!(d.effects.iter().any(|o| matches!(o, Out::AnswerRule { state, .. } if state == "approved")));
    let (_, d) = run(&prev, comment(8, alice(), "/deny not today"), &f);
    assert!(d.effects.iter().any(|o| matches!(o, Out::AnswerRule { state, .. } if state == "rejected")));
    // A run of a commit the request does not cover is not its to answer.
    let f = Facts { waiting_runs: vec![run_for(HEAD2)], ..facts() };
    let (_, d) = run(&prev, Trigger::Recheck { checks_only: false }, &f);
    assert!(!d.effects.iter().any(|o| matches!(o, Out::AnswerRule { .. } | Out::ReportRule { .. })));
}

#[test]
fn a_recheck_that_changes_nothing_sends_nothing_to_github() {
    let (prev, f) = approved();
    let (_, d) = run(&prev, Trigger::Recheck { checks_only: true }, &f);
    assert!(acts(&d).is_empty() && d.replies.is_empty(), "{:?}", acts(&d));
    assert!(kinds(&d).is_empty());
}

#[test]
fn a_path_rule_asks_for_its_team_only_when_the_files_need_it() {
    let (prev, mut f) = approved();
    let trigger = comment(9, user(601, "bob"), "/approve");
    let more = plan_more(&target(), &prev, &trigger, &f);
    assert!(more.teams.is_empty() && more.roles == ["pm".to_string()].into());
    f.prs[0].files = Some(vec!["apps/backend/api.rs".into()]);
    let more = plan_more(&target(), &prev, &trigger, &f);
    assert_eq!(more.teams.len(), 1);
    assert!(more.people.iter().any(|u| u.id == UserId(601)) && more.people.iter().any(|u| u.id == UserId(101)));
    // The gate waits for the backend lead; a member of the team fills the role.
    let (_, d) = run(&prev, Trigger::Recheck { checks_only: false }, &f);
    assert_eq!(d.row.gate_open, 0);
    f.team_members = [("acme/backend".to_string(), [UserId(601)].into())].into();
    let (_, d) = run(&prev, trigger, &f);
    assert_eq!(d.row.gate_open, 1, "{:?}", replies(&d));
}

#[test]
fn plan_reads_only_what_the_trigger_can_change() {
    let (prev, f) = approved();
    let t = target();
    let p = |trigger: &Trigger| plan(&t, &prev, trigger, &f.policy, &[], &f.issue);
    assert_eq!(p(&comment(9, alice(), "Looks good.")).prs, PrReads::Reuse);
    assert_eq!(p(&comment(9, alice(), "/hold")).prs, PrReads::Reuse);
    assert_eq!(p(&comment(9, alice(), "/approve cancel")).prs, PrReads::Reuse);
    // What can open the gate or deploy reads the checks again (a lost check event).
    for cmd in ["/approve", "Fine.\n/approve production", "/deploy", "/rollback", "/unhold", "/undeny"] {
        assert_eq!(p(&comment(9, alice(), cmd)).prs, PrReads::ChecksOnly, "{cmd}");
    }
    assert_eq!(p(&comment(9, alice(), "/recheck")).prs, PrReads::Fetch);
    assert_eq!(p(&Trigger::Recheck { checks_only: true }).prs, PrReads::ChecksOnly);
    assert_eq!(p(&Trigger::Recheck { checks_only: false }).prs, PrReads::Fetch);
    assert_eq!(p(&Trigger::Issue { action: "edited".into() }).prs, PrReads::Fetch);
    let wanted = p(&Trigger::Deployment { id: 4 });
    assert_eq!((wanted.prs, wanted.deployment, wanted.files), (PrReads::Reuse, Some(4), true));
    assert_eq!(wanted.waiting_runs.as_deref(), Some("production"));
    assert_eq!(wanted.ci_red, None, "ci.block_deploys_while_red is off by default");

    // Check events folded in since the last read are no facts: whatever comes next reads the
    // checks again, and a decision made on them has nothing absorbed left.
    let mut row = prev.row.clone().unwrap();
    let mut rem = prev.remembered().clone();
    rem.absorbed = true;
    row.facts = serde_json::to_string(&rem).unwrap();
    let dirty = Prev::new(Some(row), prev.approvals.clone());
    for trigger in [comment(9, alice(), "/approve"), Trigger::Deployment { id: 4 }] {
        assert_eq!(plan(&t, &dirty, &trigger, &f.policy, &[], &f.issue).prs, PrReads::ChecksOnly, "{trigger:?}");
    }
    let (after, _) = run(&dirty, comment(9, alice(), "/approve"), &f);
    assert!(!after.remembered().absorbed);
    // A new request knows nothing yet: everything is read.
    assert_eq!(
        plan(&t, &Prev::default(), &comment(9, alice(), "/approve"), &f.policy, &[], &f.issue).prs,
        PrReads::Fetch
    );
}

#[test]
fn permissions_and_pushers_are_read_only_for_commands_that_need_them() {
    let (prev, f) = approved();
    let t = target();
    let more = plan_more(&t, &prev, &comment(9, user(501, "eve"), "/hold"), &f);
    assert_eq!((more.permissions.iter().map(|u| u.id).collect::<Vec<_>>(), more.pushers), (vec![UserId(501)], false));
    let more = plan_more(&t, &prev, &comment(9, user(501, "eve"), "/approve"), &f);
    assert_eq!((more.permissions.len(), more.pushers), (0, true));
    let more = plan_more(&t, &prev, &Trigger::Recheck { checks_only: false }, &f);
    assert_eq!((more.permissions.len(), more.pushers, more.people.len()), (0, false, 1));
    assert_eq!(more.logins, ["alice"]);
}

#[test]
fn a_pusher_cannot_approve() {
    let f = facts();
    let (prev, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    let f = Facts { recorded_pushers: [(12, vec![UserId(101)])].into(), ..f };
    let (next, d) = run(&prev, comment(7, alice(), "/approve"), &f);
    assert!(next.approvals.is_empty());
    assert!(replies(&d)[0].contains("#12"), "{:?}", replies(&d));
}

#[test]
fn a_new_pin_is_recorded_and_audited_first() {
    let f = Facts { new_pins: vec![("alice".into(), UserId(101))], ..facts() };
    let (_, d) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    assert_eq!(d.effects[0], Out::PinLogin { login: "alice".into(), user_id: UserId(101) });
    assert_eq!(kinds(&d)[0], "login.pinned");
}

#[test]
fn a_stale_copy_of_the_issue_is_not_its_state() {
    let (prev, _) = approved();
    assert!(snapshot_is_current(&prev, Some(1_000)));
    assert!(!snapshot_is_current(&prev, Some(999)));
    assert!(snapshot_is_current(&prev, None));
}

// ---- Does plan/plan_more ask for every fact decide uses? (from an independent review) ----------
// For many (policy, prev, trigger) combinations, decide over the full universe of facts must equal
// decide over only the facts plan/plan_more asked for (what the handler gathers).

const POLICY_WIDE: &str = r#"
roles:
  pm: { users: [alice] }
  sre: { permission: maintain }
  backend-lead: { teams: [acme/backend] }
  break_glass: { teams: [acme/oncall] }
ci:
  block_deploys_while_red: true
environments:
  production:
    approvals:
      - role: pm
      - role: sre
      - role: backend-lead
        when_paths: ["apps/backend/**"]
    deploy: deployment
    require_staging_first: true
  staging:
    approvals: []
    deploy: deployment
"#;

fn universe(policy_text: &str, env: &str) -> Facts {
    let mut p = pr(HEAD);
    p.files = Some(vec!["apps/backend/api.rs".into()]);
    Facts {
        policy: policy::parse(policy_text).expect("policy"),
        issue: IssueSnapshot {
            author: carol(),
            open: true,
            body: body(env, "#12", "none"),
            labels: vec!["DEPLOYMENT_REQUEST".into()],
            updated_at: Some(1_000),
        },
        prs: vec![p],
        review_approved: true,
        pinned: [("alice".to_string(), UserId(101))].into(),
        team_members: [
            ("acme/backend".to_string(), [UserId(601)].into()),
            ("acme/oncall".to_string(), [UserId(801)].into()),
        ]
        .into(),
        permissions: [
            (UserId(101), Some(Permission::Write)),
            (UserId(601), Some(Permission::Maintain)),
            (UserId(501), Some(Permission::Write)),
            (UserId(701), Some(Permission::Admin)),
            (UserId(401), Some(Permission::Write)),
            (UserId(301), Some(Permission::Write)),
        ]
        .into(),
        recorded_pushers: [(12, vec![UserId(301)])].into(),
        staging_ok: Some(true),
        ci_red: None,
        deployment: None,
        current_deployment: None,
        last_good: Default::default(),
        waiting_runs: vec![WaitingRun {
            run_id: 3,
            environment: env.into(),
            sha: HEAD.into(),
            ..WaitingRun::default()
        }],
        ..Facts::default()
    }
}

/// What the handler would have gathered: the universe, cut down to what plan/plan_more ask for.
fn gathered(prev: &Prev, trigger: &Trigger, u: &Facts) -> Facts {
    let t = target();
    let w = plan(&t, prev, trigger, &u.policy, &u.config_errors, &u.issue);
    let mut f = Facts {
        policy: u.policy.clone(),
        config_errors: u.config_errors.clone(),
        issue: u.issue.clone(),
        ..Facts::default()
    };
    match w.prs {
        PrReads::Reuse => {
            let r = prev.remembered();
            f.prs = r.prs.clone();
            f.missing_prs = r.missing_prs.clone();
            f.review_approved = r.review_approved;
        }
        _ => {
            f.prs = u.prs.iter().map(|p| PrFacts { pushers: None, ..p.clone() }).collect();
            f.review_approved = u.review_approved;
            // pushers carried over from memory when the head is the same
            let r = prev.remembered();
            for p in f.prs.iter_mut() {
                p.pushers = r
                    .prs
                    .iter()
                    .find(|q| q.number == p.number && q.head_sha == p.head_sha)
                    .and_then(|q| q.pushers.clone());
            }
        }
    }
    if let Some(id) = w.deployment {
        f.deployment = u.deployment.clone().filter(|d| d.deployment_id == id);
    }
    if let Some(id) = w.current_deployment {
        f.current_deployment =
            [u.current_deployment.clone(), u.deployment.clone()].into_iter().flatten().find(|d| d.deployment_id == id);
    }
    if let Some(env) = &w.waiting_runs {
        f.waiting_runs = u.waiting_runs.iter().filter(|r| &r.environment == env).cloned().collect();
    }
    if w.ci_red.is_some() {
        f.ci_red = u.ci_red.clone();
    }
    let more = plan_more(&t, prev, trigger, &f);
    f.pinned = u.pinned.iter().filter(|(l, _)| more.logins.contains(l)).map(|(l, i)| (l.clone(), *i)).collect();
    for team in &more.teams {
        let k = format!("{}/{}", team.org, team.slug);
        if let Some(m) = u.team_members.get(&k) {
            f.team_members.insert(k, m.clone());
        }
    }
    for user in &more.permissions {
        f.permissions.insert(user.id, u.permissions.get(&user.id).copied().flatten());
    }
    if more.pushers {
        for p in f.prs.iter_mut() {
            if p.pushers.is_none() {
                p.pushers = u.prs.iter().find(|q| q.number == p.number).and_then(|q| q.pushers.clone());
            }
            f.recorded_pushers.insert(p.number, u.recorded_pushers.get(&p.number).cloned().unwrap_or_default());
        }
    }
    if more.staging.is_some() {
        f.staging_ok = u.staging_ok;
    }
    for k in &more.last_good {
        f.last_good.insert(k.clone(), u.last_good.get(k).cloned().flatten());
    }
    f
}

fn assert_same(prev: &Prev, trigger: &Trigger, u: &Facts, what: &str) -> Decision {
    // The triggering deployment is a fact of a Deployment trigger only.
    let mut u = u.clone();
    if !matches!(trigger, Trigger::Deployment { .. }) {
        u.deployment = None;
    }
    let u = &u;
    let g = gathered(prev, trigger, u);
    let norm = |mut d: Decision| {
        let mut r: Remembered = serde_json::from_str(&d.row.facts).unwrap_or_default();
        for p in r.prs.iter_mut() {
            p.pushers = None;
        }
        // Which runs were deploying is remembered only to classify check events between
        // evaluations (`signal::absorb`), never to decide; unread, it is simply not known.
        r.deploying_runs.clear();
        d.row.facts = serde_json::to_string(&r).unwrap();
        d
    };
    let full = norm(decide(&target(), prev, trigger, u, 10_000));
    let part = norm(decide(&target(), prev, trigger, &g, 10_000));
    if full != part {
        let show = |d: &Decision| {
            format!(
                "row.state={} gate={} hold={:?} deny={:?} deploy={:?}\nreplies={:?}\nkinds={:?}",
                d.row.state,
                d.row.gate_open,
                d.row.hold_by,
                d.row.denied_by,
                d.row.deploy_state,
                replies(d),
                kinds(d)
            )
        };
        let a = format!("{:#?}", full);
        let b = format!("{:#?}", part);
        for (x, y) in a.lines().zip(b.lines()) {
            if x != y {
                eprintln!("FULL   {x}\nPLANNED {y}");
            }
        }
        panic!("{what}: decide differs with only the planned facts\nFULL: {}\nPLANNED: {}", show(&full), show(&part));
    }
    full
}

#[test]
fn plan_asks_for_every_fact_decide_uses() {
    let people = [
        user(101, "alice"),
        user(601, "bob"),
        user(501, "eve"),
        user(701, "frank"),
        carol(),
        user(301, "dave"),
        user(801, "sre"),
    ];
    let cmds = [
        "/approve",
        "/approve cancel",
        "/deny no",
        "/undeny",
        "/hold",
        "/unhold",
        "/deploy",
        "/rollback",
        "/recheck",
        "/hold\n/deploy",
        "/approve\n/deploy",
        "/deploy\n/rollback",
        "/unhold\n/deploy",
        "/undeny\n/deploy",
        "/breakglass on fire",
        "/breakglass on fire\n/deploy",
    ];
    for (ptext, env) in
        [(POLICY_WIDE, "production"), (POLICY_WIDE, "staging"), (POLICY, "production"), (POLICY, "staging")]
    {
        let u = universe(ptext, env);
        // a few previous states, built by running decide over the universe
        let (p0, _) = (Prev::default(), ());
        let (p1, _) = run(&p0, Trigger::Issue { action: "labeled".into() }, &u);
        let (p2, _) = run(&p1, comment(7, alice(), "/approve"), &u);
        let (p3, _) = run(&p2, comment(8, user(601, "bob"), "/approve"), &u);
        let (p4, _) = run(&p3, comment(9, user(501, "eve"), "/hold"), &u);
        let (p5, _) = run(&p3, comment(10, alice(), "/deny nope"), &u);
        let mut ud = u.clone();
        ud.deployment = Some(deployment(77, Some(ISSUE), HEAD, DeployState::Failure, "app"));
        if let Some(d) = ud.deployment.as_mut() {
            d.environment = env.into();
        }
        ud.last_good = [((env.to_string(), HEAD.to_string()), Some(HEAD2.to_string()))].into();
        let mut p6 = p3.clone();
        if let Some(r) = p6.row.as_mut() {
            r.deployment_id = Some(77);
            r.deploy_sha = Some(HEAD.into());
            r.deploy_state = Some("failure".into());
        }
        ud.current_deployment = ud.deployment.clone();
        if ud.policy.ci.block_deploys_while_red {
            ud.ci_red = Some("run 9".into());
        }
        ud.last_good.insert((env.to_string(), HEAD2.to_string()), Some("c".repeat(40)));
        let mut p7 = p3.clone();
        if let Some(r) = p7.row.as_mut() {
            r.deploy_sha = Some(HEAD2.into());
            r.deploy_state = Some("success".into());
        }
        // A live break-glass by sre (on call), where the policy defines the role.
        let (p8, _) = run(&p4, comment(11, user(801, "sre"), "/breakglass on fire"), &ud);
        for (pi, prev) in [&p0, &p1, &p2, &p3, &p4, &p5, &p6, &p7, &p8].into_iter().enumerate() {
            for who in &people {
                for c in cmds {
                    let tr = comment(50, who.clone(), c);
                    assert_same(prev, &tr, &ud, &format!("{env} prev#{pi} {} {c:?}", who.login));
                }
            }
            assert_same(prev, &Trigger::Recheck { checks_only: false }, &ud, &format!("{env} prev#{pi} recheck"));
            let mut closed = ud.clone();
            closed.issue.open = false;
            for who in &people {
                for c in cmds {
                    assert_same(
                        prev,
                        &comment(51, who.clone(), c),
                        &closed,
                        &format!("{env} prev#{pi} closed {} {c:?}", who.login),
                    );
                    let onpr = Trigger::Comment {
                        id: 52,
                        user: who.clone(),
                        bot: false,
                        body: c.into(),
                        created_at: Some(2_000),
                        on_pr: Some(12),
                        sole: true,
                    };
                    assert_same(prev, &onpr, &ud, &format!("{env} prev#{pi} on PR {} {c:?}", who.login));
                }
            }
            assert_same(prev, &Trigger::Recheck { checks_only: true }, &ud, &format!("{env} prev#{pi} recheck checks"));
            assert_same(prev, &Trigger::Deployment { id: 77 }, &ud, &format!("{env} prev#{pi} deployment"));
            assert_same(prev, &Trigger::CommentDeleted { id: 7 }, &ud, &format!("{env} prev#{pi} deleted"));
        }
    }
}

#[test]
fn a_box_a_person_ticks_in_the_sticky_comment_stays_ticked() {
    let f = facts();
    let (prev, d) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    let sticky = upserted(&d, messages::REQUEST_MARKER).expect("sticky");
    assert!(sticky.contains("- [ ] Smoke tests passing") && sticky.contains("- [ ] Notify team\n"), "{sticky}");
    // Someone ticks two boxes in the App's comment (GitHub sends the edit, the App as author),
    // and a box of the App's own, which the App decides.
    let ticked = format!(
        "{}\n\n<!-- shipgate:request -->",
        sticky
            .replace("- [ ] Smoke tests passing", "- [x] Smoke tests passing")
            .replace("- [ ] Notify team", "- [x] Notify team")
            .replace("- [ ] Code review approved (shipgate)", "- [x] Code review approved (shipgate)")
    );
    let edit = Trigger::CommentEdited {
        id: 900,
        author: user(9, "shipgate[bot]"),
        editor: alice(),
        body: ticked,
        before: Some(sticky),
        on_pr: None,
        by_app: true,
    };
    let f2 = Facts { review_approved: false, ..f.clone() };
    let (prev, d) = run(&prev, edit, &f2);
    let (_, d2) = run(&prev, comment(7, alice(), "/approve"), &f2);
    for d in [&d, &d2] {
        let body = acts(d)
            .into_iter()
            .find_map(|a| match a {
                Action::UpsertComment { marker, body, .. } if marker == messages::REQUEST_MARKER => Some(body.clone()),
                _ => None,
            })
            .expect("the App edits its comment");
        assert!(body.contains("- [x] Smoke tests passing") && body.contains("- [x] Notify team"), "{body}");
        assert!(body.contains("- [ ] Code review approved (shipgate)"), "the App's own boxes are the App's: {body}");
    }
    // The same edit in someone else's comment (a copy of the marker) ticks nothing.
    let fake = Trigger::CommentEdited {
        id: 901,
        author: user(501, "eve"),
        editor: user(501, "eve"),
        body: "- [x] Release notes prepared\n<!-- shipgate:request -->".into(),
        before: None,
        on_pr: None,
        by_app: false,
    };
    let (_, d) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    let _ = d;
    let (p1, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    let (p2, _) = run(&p1, fake, &f);
    let r: Remembered = serde_json::from_str(&p2.row.expect("row").facts).expect("facts");
    assert!(r.ticked.is_empty());
}

#[test]
fn multi_line_fields_are_shown_whole() {
    let mut f = facts();
    f.issue.body = f.issue.body.replace(
        "6. Rollback plan: revert the PR and redeploy\n",
        "6. Rollback plan:\n   - revert the PR\n   - run the down migration\n   - redeploy\n",
    );
    let (_, d) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    let body = acts(&d)
        .into_iter()
        .find_map(|a| match a {
            Action::UpsertComment { body, .. } => Some(body.clone()),
            _ => None,
        })
        .expect("sticky");
    let row = body.lines().find(|l| l.starts_with("| Rollback plan |")).expect("row");
    assert!(
        row.contains("revert the PR") && row.contains("run the down migration") && row.contains("redeploy"),
        "{row}"
    );
}

/// The events a policy's `notify:` names, by the request's decisions (SPEC §5): each once, as an
/// outbox action naming the channel.
#[test]
fn the_requests_events_are_notified_once_each() {
    let notify = "notify:\n  - { on: [gate_opened, approvals_stale, deploying, deployed, deploy_failed, rollback], \
                  to: [slack:deploys] }\n";
    let with_notify = || {
        let mut f = facts();
        f.policy = policy::parse(&format!("{POLICY}{notify}")).expect("policy");
        f
    };
    let events = |d: &Decision| -> Vec<String> {
        acts(d)
            .iter()
            .filter_map(|a| match a {
                Action::Notify { event, channel, request, .. } => {
                    assert_eq!(channel.to_string(), "slack:acme/deploys");
                    // Only a `deployed` notice ticks the checklist once sent.
                    assert_eq!(request.is_some(), event == "deployed", "{event}");
                    Some(event.clone())
                }
                _ => None,
            })
            .collect()
    };
    let f = with_notify();
    let (prev, d) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    assert!(events(&d).is_empty());
    let (opened, d) = run(&prev, comment(7, alice(), "/approve"), &f);
    assert_eq!(events(&d), ["gate_opened"]);
    // A recheck of an open gate says nothing again.
    let (_, d) = run(&opened, Trigger::Recheck { checks_only: false }, &f);
    assert!(events(&d).is_empty());
    // A push makes the approval stale (and closes the gate): said once.
    let mut pushed = f.clone();
    pushed.prs = vec![pr(HEAD2)];
    let (stale, d) = run(&opened, Trigger::Recheck { checks_only: false }, &pushed);
    assert_eq!(events(&d), ["approvals_stale"]);
    let (_, d) = run(&stale, Trigger::Recheck { checks_only: false }, &pushed);
    assert!(events(&d).is_empty());
    // Closing the request makes approvals stale too, but that is no news to send.
    let mut closed = f.clone();
    closed.issue.open = false;
    let (_, d) = run(&opened, Trigger::Issue { action: "closed".into() }, &closed);
    assert!(events(&d).is_empty(), "{:?}", events(&d));
    // Deploying once (queued → in progress is no news), then deployed.
    let mut g = f.clone();
    g.deployment = Some(deployment(77, Some(ISSUE), HEAD, DeployState::Queued, "app"));
    let (p, d) = run(&opened, Trigger::Deployment { id: 77 }, &g);
    assert_eq!(events(&d), ["deploying"]);
    g.deployment = Some(deployment(77, Some(ISSUE), HEAD, DeployState::InProgress, "app"));
    let (p, d) = run(&p, Trigger::Deployment { id: 77 }, &g);
    assert!(events(&d).is_empty());
    g.deployment = Some(deployment(77, Some(ISSUE), HEAD, DeployState::Success, "app"));
    let (_, d) = run(&p, Trigger::Deployment { id: 77 }, &g);
    assert_eq!(events(&d), ["deployed"]);
    // A failure, then /rollback: the rollback is said when accepted and when it succeeded.
    g.deployment = Some(deployment(78, Some(ISSUE), HEAD, DeployState::Failure, "app"));
    g.last_good = [(("production".to_string(), HEAD.to_string()), Some(HEAD2.to_string()))].into();
    let (failed, d) = run(&opened, Trigger::Deployment { id: 78 }, &g);
    assert_eq!(events(&d), ["deploy_failed"]);
    g.deployment = None;
    g.current_deployment = Some(deployment(78, Some(ISSUE), HEAD, DeployState::Failure, "app"));
    let (rolling, d) = run(&failed, comment(31, alice(), "/rollback"), &g);
    assert_eq!(events(&d), ["rollback"]);
    let n = acts(&d)
        .into_iter()
        .find_map(|a| match a {
            Action::Notify { text, .. } => Some(text.clone()),
            _ => None,
        })
        .unwrap();
    assert!(n.contains("@alice asked to roll production back to `bbbbbbb`."), "{n}");
    g.current_deployment = None;
    g.deployment = Some(deployment(79, Some(ISSUE), HEAD2, DeployState::Success, "app"));
    let (_, d) = run(&rolling, Trigger::Deployment { id: 79 }, &g);
    assert_eq!(events(&d), ["rollback"]);
    // Without `notify:`, nothing of the kind.
    let (_, d) = run(&prev, comment(7, alice(), "/approve"), &facts());
    assert!(events(&d).is_empty());
}

/// The relay says a `deployed` notice was sent: the checklist's "Notify team" is ticked by the
/// App, naming where it went, and a second channel is added, never twice.
#[test]
fn a_sent_deployed_notice_ticks_notify_team() {
    let (prev, f) = approved();
    let sent = |channel: &str| Trigger::Notified { event: "deployed".into(), channel: channel.into() };
    let (p, d) = run(&prev, sent("slack:acme/deploys"), &f);
    let sticky = |d: &Decision| {
        acts(d)
            .into_iter()
            .find_map(|a| match a {
                Action::UpsertComment { marker, body, .. } if marker == messages::REQUEST_MARKER => Some(body.clone()),
                _ => None,
            })
            .expect("the sticky comment")
    };
    assert!(sticky(&d).contains("- [x] Notify team (shipgate: sent to slack:acme/deploys)\n"), "{}", sticky(&d));
    let (p, d) = run(&p, sent("email:oncall@example.com"), &f);
    assert!(sticky(&d).contains("- [x] Notify team (shipgate: sent to slack:acme/deploys, email:oncall@example.com)"));
    let (_, d) = run(&p, sent("slack:acme/deploys"), &f);
    assert!(!acts(&d).iter().any(|a| matches!(a, Action::UpsertComment { .. })), "nothing new to show");
    // Another event's notice ticks nothing.
    let (_, d) =
        run(&prev, Trigger::Notified { event: "gate_opened".into(), channel: "slack:acme/deploys".into() }, &f);
    assert!(!acts(&d).iter().any(|a| matches!(a, Action::UpsertComment { .. })));
    assert!(!kinds(&d).iter().any(|k| k.starts_with("approval")), "{:?}", kinds(&d));
}

// ---- Break-glass (SPEC §3.7) -------------------------------------------------------------------

const POLICY_BG: &str = r#"
roles:
  pm: { users: [alice] }
  break_glass: { teams: [acme/oncall] }
ci:
  block_deploys_while_red: true
  escalate_to: pm
environments:
  production:
    approvals:
      - role: pm
    deploy: deployment
notify:
  - { on: [break_glass], to: [slack:oncall] }
"#;

fn sre() -> User {
    user(801, "sre")
}

/// A production request (deploy mode `mode`) that nothing lets through: no approval, CI red, a
/// hold by eve (a freeze is in the scenario tests, which have a clock); sre (801) is on call and holds `break_glass`.
fn stuck(mode: &str) -> (Prev, Facts) {
    let text = POLICY_BG.replace("deploy: deployment", &format!("deploy: {mode}"));
    let mut f = facts();
    f.policy = policy::parse(&text).expect("policy");
    f.ci_red = Some("CI failing on main (run 9)".into());
    f.team_members = [("acme/oncall".to_string(), [UserId(801)].into())].into();
    f.permissions = [(UserId(501), Some(Permission::Write))].into();
    let (prev, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    let (prev, _) = run(&prev, comment(6, user(501, "eve"), "/hold"), &f);
    assert_eq!(prev.row.as_ref().map(|r| r.gate_open), Some(0));
    (prev, f)
}

fn remembered(d: &Decision) -> Remembered {
    serde_json::from_str(&d.row.facts).expect("facts")
}

fn review(d: &Decision) -> Option<(String, String, i64)> {
    d.effects.iter().find_map(|o| match o {
        Out::OpenReview { title, assignee, due_at, .. } => Some((title.clone(), assignee.clone(), *due_at)),
        _ => None,
    })
}

#[test]
fn breakglass_opens_a_stuck_gate_for_one_deploy_and_the_holders_deploy_spends_it() {
    let (prev, f) = stuck("deployment");
    let (prev, d) = run(&prev, comment(20, sre(), "/breakglass checkout is down, the fix is #12"), &f);
    assert!(reacted(&d), "{:?}", replies(&d));
    assert_eq!(d.row.gate_open, 1);
    assert!(kinds(&d).contains(&"breakglass.used".to_string()), "{:?}", kinds(&d));
    assert!(kinds(&d).contains(&"gate.opened".to_string()));
    assert!(acts(&d).iter().any(|a| matches!(a, Action::SetLabels { add, .. } if add == &["break-glass"])));
    assert!(acts(&d).iter().any(|a| matches!(a, Action::Notify { event, .. } if event == "break_glass")));
    // No "gate opened" notification besides: the break-glass one says it.
    assert!(!acts(&d).iter().any(|a| matches!(a, Action::Notify { event, .. } if event == "gate_opened")));
    let (title, assignee, due) = review(&d).expect("a follow-up review");
    assert!(title.starts_with("Post-incident review:") && title.contains("(#5)"), "{title}");
    assert_eq!(assignee, "sre");
    assert!(due > 10_000);
    // What it overrides is said: approvals, the freeze, the hold, red CI.
    let comment_body = upserted(&d, messages::REQUEST_MARKER).expect("the sticky comment");
    assert!(comment_body.contains("open by break-glass"), "{comment_body}");
    assert!(comment_body.contains("| Break-glass | ✅"), "{comment_body}");
    // A pipe in the reason is escaped once, as table text (twice, it would break the cell).
    let (_, piped) = run(&stuck("deployment").0, comment(40, sre(), "/breakglass api | db down"), &f);
    let body = upserted(&piped, messages::REQUEST_MARKER).expect("the sticky comment");
    let row = body.lines().find(|l| l.starts_with("| Break-glass |")).expect("the row").to_string();
    assert!(row.contains("api \\| db down") && !row.contains("\\\\|"), "{row}");
    let check = acts(&d)
        .iter()
        .find_map(|a| match a {
            Action::UpsertCheckRun { conclusion, title, summary, .. } => {
                Some((conclusion.clone(), title.clone(), summary.clone()))
            }
            _ => None,
        })
        .expect("a check run");
    assert_eq!(check.0.as_deref(), Some("success"));
    assert!(check.2.contains("Approvals: waiting for pm") && check.2.contains("on hold by @eve"), "{}", check.2);
    // The same comment delivered again is the same use: no second review.
    let (_, again) = run(&prev, comment(20, sre(), "/breakglass checkout is down, the fix is #12"), &f);
    assert!(review(&again).is_none() && !kinds(&again).contains(&"breakglass.used".to_string()));

    // The holder's own /deploy: a deployment of the head, and the break-glass is spent.
    let (prev, d) = run(&prev, comment(21, sre(), "/deploy"), &f);
    assert!(reacted(&d), "{:?}", replies(&d));
    assert!(acts(&d).iter().any(|a| matches!(a, Action::CreateDeployment { git_ref, .. } if git_ref == HEAD)));
    assert!(kinds(&d).contains(&"breakglass.spent".to_string()), "{:?}", kinds(&d));
    assert_eq!(d.row.gate_open, 0, "one deployment only: the gate is closed again");
    assert!(d.row.approved_at.is_some());
    // Its success closes the request with a summary that says break-glass was used, and how.
    let mut done = f.clone();
    done.deployment = Some(deployment(77, Some(ISSUE), HEAD, DeployState::Success, "app"));
    let (_, s) = run(&prev, Trigger::Deployment { id: 77 }, &done);
    let summary = upserted(&s, "summary-").expect("a closing summary");
    assert!(
        summary.contains("Break-glass was used on this request by @sre") && summary.contains("`/deploy` by @sre"),
        "{summary}"
    );
    // A second /deploy (after the first is no longer under way) is refused: the gate is closed.
    let mut later = prev.clone();
    if let Some(r) = later.row.as_mut() {
        r.deploy_state = Some("failure".into());
    }
    let (_, d) = run(&later, comment(22, sre(), "/deploy"), &f);
    assert!(!reacted(&d));
    assert!(replies(&d).iter().any(|r| r.contains("not accepted")), "{:?}", replies(&d));
}

#[test]
fn breakglass_is_refused_without_the_role_a_reason_or_a_need_and_never_passes_a_denial() {
    let (prev, f) = stuck("deployment");
    // Not on call: an approver is not a break-glass holder.
    let (next, d) = run(&prev, comment(20, alice(), "/breakglass trust me"), &f);
    assert!(!reacted(&d) && replies(&d)[0].contains("do not hold the `break_glass` role"), "{:?}", replies(&d));
    assert_eq!(next.row.as_ref().map(|r| r.gate_open), Some(0));
    assert!(review(&d).is_none() && !kinds(&d).iter().any(|k| k.starts_with("breakglass.")));
    // No reason.
    let (_, d) = run(&prev, comment(21, sre(), "/breakglass"), &f);
    assert!(!reacted(&d) && replies(&d)[0].contains("needs a reason"), "{:?}", replies(&d));
    // No role defined at all.
    let mut no_role = f.clone();
    no_role.policy.roles.remove(BREAK_GLASS_ROLE);
    let (_, d) = run(&prev, comment(22, sre(), "/breakglass down"), &no_role);
    assert!(replies(&d)[0].contains("defines no `break_glass` role"), "{:?}", replies(&d));
    // A denial stands.
    let (denied, _) = run(&prev, comment(23, alice(), "/deny not this way"), &f);
    let (_, d) = run(&denied, comment(24, sre(), "/breakglass down"), &f);
    assert!(replies(&d)[0].contains("never overrides a `/deny`"), "{:?}", replies(&d));
    assert_eq!(d.row.gate_open, 0);
    // A denial after the break-glass closes the gate again.
    let (glass, _) = run(&prev, comment(25, sre(), "/breakglass down"), &f);
    let (_, d) = run(&glass, comment(26, alice(), "/deny not this way"), &f);
    assert_eq!(d.row.gate_open, 0);
    assert!(kinds(&d).contains(&"gate.closed".to_string()));
    // A broken policy: never.
    let mut broken = f.clone();
    broken.config_errors = vec![policy::ConfigError { line: 1, column: 1, message: "bad".into() }];
    let (_, d) = run(&prev, comment(27, sre(), "/breakglass down"), &broken);
    assert!(!reacted(&d), "{:?}", replies(&d));
    assert_eq!(d.row.gate_open, 0);
    // An open gate needs none.
    let mut open = f.clone();
    open.ci_red = None;
    let (fine, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &open);
    let (fine, _) = run(&fine, comment(7, alice(), "/approve"), &open);
    assert_eq!(fine.row.as_ref().map(|r| r.gate_open), Some(1));
    let (_, d) = run(&fine, comment(28, sre(), "/breakglass down"), &open);
    assert!(replies(&d)[0].contains("open already"), "{:?}", replies(&d));
    // A second one while the first is live.
    let (_, d) = run(&glass, comment(29, sre(), "/breakglass again"), &f);
    assert!(replies(&d)[0].contains("unspent until"), "{:?}", replies(&d));
}

#[test]
fn breakglass_approves_the_first_waiting_run_only() {
    let (prev, mut f) = stuck("protection_rule");
    let waiting =
        |id| WaitingRun { run_id: id, environment: "production".into(), sha: HEAD.into(), ..WaitingRun::default() };
    f.waiting_runs = vec![waiting(3), waiting(4)];
    let (prev, d) = run(&prev, comment(20, sre(), "/breakglass db failover"), &f);
    let answers: Vec<(i64, String)> = d
        .effects
        .iter()
        .filter_map(|o| match o {
            Out::AnswerRule { run_id, state, .. } => Some((*run_id, state.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(answers, vec![(3, "approved".to_string())]);
    assert!(d.effects.iter().any(|o| matches!(o, Out::ReportRule { run_id: 4, .. })), "the second run waits");
    assert!(kinds(&d).contains(&"breakglass.spent".to_string()), "{:?}", kinds(&d));
    assert_eq!(d.row.gate_open, 0);
    let bg = remembered(&d).breakglass;
    assert_eq!(bg.len(), 1);
    assert_eq!(bg[0].ended.as_ref().map(|e| e.how.as_str()), Some("spent"));
    // Spent, the next evaluation approves nothing.
    f.waiting_runs = vec![waiting(4)];
    let (_, d) = run(&prev, Trigger::Recheck { checks_only: false }, &f);
    assert!(!d.effects.iter().any(|o| matches!(o, Out::AnswerRule { .. })));
}

#[test]
fn breakglass_lapses_after_two_hours_by_the_timer_and_ends_with_a_new_head_or_a_lost_role() {
    let (prev, f) = stuck("workflow");
    let t = target();
    let d = decide(&t, &prev, &comment(20, sre(), "/breakglass down"), &f, 10_000);
    let glass = prev.after(&d, 10_000);
    // It lasts from when its comment was written (2_000), not from when it was handled.
    let until = 2_000 + breakglass::LASTS_MS;
    assert!(d.effects.iter().any(|o| matches!(o, Out::Timer { due_at } if due_at.is_some_and(|at| at <= until))));
    // Just before: still open. At the lapse: closed, audited, with no event.
    let d = decide(&t, &glass, &Trigger::Recheck { checks_only: false }, &f, until - 1);
    assert_eq!(d.row.gate_open, 1);
    let d = decide(&t, &glass, &Trigger::Recheck { checks_only: false }, &f, until);
    assert_eq!(d.row.gate_open, 0);
    assert!(kinds(&d).contains(&"breakglass.lapsed".to_string()), "{:?}", kinds(&d));
    // A new head: the break-glass was for the old one.
    let mut pushed = f.clone();
    pushed.prs = vec![pr(HEAD2)];
    let d = decide(&t, &glass, &Trigger::Recheck { checks_only: false }, &pushed, 20_000);
    assert_eq!(d.row.gate_open, 0);
    assert!(kinds(&d).contains(&"breakglass.superseded".to_string()), "{:?}", kinds(&d));
    // The holder left the on-call team.
    let mut left = f.clone();
    left.team_members = [("acme/oncall".to_string(), Default::default())].into();
    let d = decide(&t, &glass, &Trigger::Recheck { checks_only: false }, &left, 20_000);
    assert_eq!(d.row.gate_open, 0);
    assert!(kinds(&d).contains(&"breakglass.revoked".to_string()), "{:?}", kinds(&d));
}

#[test]
fn a_breakglass_holder_may_roll_back() {
    let (prev, mut f) = stuck("deployment");
    let mut deployed = prev.clone();
    if let Some(r) = deployed.row.as_mut() {
        r.deployment_id = Some(77);
        r.deploy_sha = Some(HEAD.into());
        r.deploy_state = Some("failure".into());
    }
    f.last_good = [(("production".to_string(), HEAD.to_string()), Some(HEAD2.to_string()))].into();
    let (_, d) = run(&deployed, comment(30, sre(), "/rollback"), &f);
    assert!(reacted(&d), "{:?}", replies(&d));
    assert!(acts(&d).iter().any(|a| matches!(a, Action::CreateDeployment { git_ref, .. } if git_ref == HEAD2)));
    // Someone with neither role may not.
    let (_, d) = run(&deployed, comment(31, user(501, "eve"), "/rollback"), &f);
    assert!(!reacted(&d), "{:?}", replies(&d));
}

// ---- Break-glass review (attacker's view) -----------------------------------------------------

const POLICY_BG_TWO_ENVS: &str = r#"
roles:
  pm: { users: [alice] }
  break_glass: { teams: [acme/oncall] }
ci:
  block_deploys_while_red: true
environments:
  production:
    approvals:
      - role: pm
    deploy: protection_rule
  staging:
    approvals:
      - role: pm
    deploy: protection_rule
"#;

/// A break-glass broken for one environment must not open the gate of another: editing the
/// request's environment (anyone who may edit the issue, the requester included) after a holder
/// broke the glass for staging must not let a production run through on it.
#[test]
fn bgreview_breakglass_does_not_follow_an_environment_edit() {
    let mut f = facts();
    f.policy = policy::parse(POLICY_BG_TWO_ENVS).expect("policy");
    f.ci_red = Some("CI failing on main (run 9)".into());
    f.team_members = [("acme/oncall".to_string(), [UserId(801)].into())].into();
    f.issue.body = body("staging", "#12", "none");
    let (prev, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    assert_eq!(prev.row.as_ref().map(|r| r.gate_open), Some(0));
    let (prev, d) = run(&prev, comment(20, sre(), "/breakglass staging is down"), &f);
    assert!(reacted(&d), "{:?}", replies(&d));
    assert_eq!(remembered(&d).breakglass[0].environment, "staging");
    // The requester edits the request to production; a production run is waiting for HEAD.
    let mut edited = f.clone();
    edited.issue.body = body("production", "#12", "none");
    edited.waiting_runs =
        vec![WaitingRun { run_id: 3, environment: "production".into(), sha: HEAD.into(), ..WaitingRun::default() }];
    let (_, d) = run(&prev, Trigger::Issue { action: "edited".into() }, &edited);
    let approved: Vec<i64> = d
        .effects
        .iter()
        .filter_map(|o| match o {
            Out::AnswerRule { run_id, state, .. } if state == "approved" => Some(*run_id),
            _ => None,
        })
        .collect();
    assert!(approved.is_empty(), "a staging break-glass approved production run(s) {approved:?}");
    assert_eq!(d.row.gate_open, 0, "the production gate is open on a staging break-glass");
}

/// `plan_asks_for_every_fact_decide_uses`, with `break_glass` held by a pinned user or by a
/// permission level rather than a team (and the requester's own approvals, a hold and red CI).
#[test]
fn bgreview_plan_asks_for_every_fact_decide_uses_with_other_break_glass_roles() {
    let people = [alice(), user(601, "bob"), user(501, "eve"), carol(), user(801, "sre")];
    let cmds = ["/breakglass on fire", "/breakglass on fire\n/deploy", "/deploy", "/rollback", "/recheck", "/hold"];
    for role in ["{ users: [sre] }", "{ permission: admin }", "{ users: [sre], permission: admin }"] {
        let text = POLICY_WIDE.replace("break_glass: { teams: [acme/oncall] }", &format!("break_glass: {role}"));
        let mut u = universe(&text, "production");
        u.pinned.insert("sre".into(), UserId(801));
        u.permissions.insert(UserId(801), Some(Permission::Admin));
        u.ci_red = Some("run 9".into());
        u.last_good = [(("production".to_string(), HEAD.to_string()), Some(HEAD2.to_string()))].into();
        let (p1, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &u);
        let (p2, _) = run(&p1, comment(9, user(501, "eve"), "/hold"), &u);
        let (p3, d) = run(&p2, comment(11, user(801, "sre"), "/breakglass on fire"), &u);
        assert!(reacted(&d), "{role}: {:?}", replies(&d));
        for (pi, prev) in [&p1, &p2, &p3].into_iter().enumerate() {
            assert_same(prev, &Trigger::Recheck { checks_only: false }, &u, &format!("{role} prev#{pi} recheck"));
            for who in &people {
                for c in cmds {
                    assert_same(
                        prev,
                        &comment(50, who.clone(), c),
                        &u,
                        &format!("{role} prev#{pi} {} {c:?}", who.login),
                    );
                }
            }
        }
    }
}

/// A `/breakglass` comment handled late (queue backlog, the App down and the delivery asked for
/// again, a parked delivery retried) counts from when it is handled, not from when it was
/// written: written more than two hours ago it still opens the gate, for two more hours. An
/// approval's life counts from its comment ("a late delivery adds nothing to an approval's
/// life"); a break-glass should too.
#[test]
fn bgreview_a_late_breakglass_comment_gets_no_extra_life() {
    let (prev, f) = stuck("deployment");
    // Written at 2_000 (see `comment`), handled three hours later.
    let now = 2_000 + breakglass::LASTS_MS + 3600 * 1000;
    let d = decide(&target(), &prev, &comment(20, sre(), "/breakglass checkout is down"), &f, now);
    let bg = remembered(&d).breakglass;
    assert!(
        bg.iter().all(|b| b.until <= 2_000 + breakglass::LASTS_MS),
        "a break-glass written at 2000 lives until {:?}",
        bg.iter().map(|b| b.until).collect::<Vec<_>>()
    );
    assert_eq!(d.row.gate_open, 0, "a comment written over two hours ago opened the gate");
}

/// The first deployment after the glass is broken spends it. If the gate meanwhile opened on its
/// own (the pm approved) the deployment that goes through does not spend it, and the unspent
/// break-glass opens the gate again for another deployment once something closes it (here a
/// `/hold` placed after that deployment): two deployments, the second past a hold.
#[test]
fn bgreview_a_deployment_while_the_gate_is_open_anyway_spends_the_breakglass() {
    let text = POLICY_BG.replace("deploy: deployment", "deploy: protection_rule");
    let mut f = facts();
    f.policy = policy::parse(&text).expect("policy");
    f.team_members = [("acme/oncall".to_string(), [UserId(801)].into())].into();
    f.permissions = [(UserId(501), Some(Permission::Write))].into();
    let (prev, _) = run(&Prev::default(), Trigger::Issue { action: "labeled".into() }, &f);
    let (prev, d) = run(&prev, comment(20, sre(), "/breakglass checkout is down"), &f);
    assert!(reacted(&d), "{:?}", replies(&d));
    // The pm approves: the gate is open without the break-glass; run 3 is approved.
    let (prev, _) = run(&prev, comment(21, alice(), "/approve"), &f);
    let waiting =
        |id| WaitingRun { run_id: id, environment: "production".into(), sha: HEAD.into(), ..WaitingRun::default() };
    let mut with_run = f.clone();
    with_run.waiting_runs = vec![waiting(3)];
    let (prev, d) = run(&prev, Trigger::Recheck { checks_only: false }, &with_run);
    assert!(d.effects.iter().any(|o| matches!(o, Out::AnswerRule { run_id: 3, state, .. } if state == "approved")));
    // Eve holds further deploys; a second run waits for the same head.
    let (prev, _) = run(&prev, comment(22, user(501, "eve"), "/hold"), &f);
    let mut second = f.clone();
    second.waiting_runs = vec![waiting(4)];
    let (_, d) = run(&prev, Trigger::Recheck { checks_only: false }, &second);
    assert!(
        !d.effects.iter().any(|o| matches!(o, Out::AnswerRule { run_id: 4, state, .. } if state == "approved")),
        "a second deployment went through the same break-glass, past a hold; kinds {:?}",
        kinds(&d)
    );
}

/// A `/breakglass` written on the issue before it carried the label (its delivery handled after
/// the `labeled` one: out of order, or asked for again after a failed delivery) must not count:
/// only comments created after the issue became a request carry commands. On a linked PR this
/// is checked; on the request itself it is not.
#[test]
fn bgreview_a_breakglass_written_before_the_label_never_counts_on_the_issue_either() {
    let (prev, f) = stuck("deployment");
    // The request became one at 1_000 (the `labeled` event's updated_at); the comment is older.
    let early = Trigger::Comment {
        id: 20,
        user: sre(),
        bot: false,
        body: "/breakglass checkout is down".into(),
        created_at: Some(500),
        on_pr: None,
        sole: true,
    };
    let (_, d) = run(&prev, early, &f);
    assert!(!kinds(&d).contains(&"breakglass.used".to_string()), "a pre-label comment broke the glass");
    assert_eq!(d.row.gate_open, 0);
}

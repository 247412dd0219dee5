//! Who may do what to a deployment request (SPEC §1, §3.4): the rules for each command, as one
//! pure function over facts the handler gathered, with a typed [`Refusal`] that
//! `messages::refusal_text` renders. No I/O: [`plan_command`] says which facts a command needs (a
//! permission read, a PR's pushers), so a command that cannot need them costs no API call.
//!
//! The handler asks `plan`, gathers what it says, calls [`decide_command`], and applies the [`Outcome`]
//! (an approval row, a hold, a denial) or answers the refusal.

use serde::Serialize;

use crate::domain::commands::Command;
use crate::domain::gate::User;
use crate::domain::ids::UserId;
use crate::domain::policy::Permission;

/// What a command needs read from GitHub before it can be decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandWants {
    /// The sender's repository permission.
    pub permission: bool,
    /// Who pushed to the linked PRs (only an approval needs them, and only when self-approval is
    /// not allowed).
    pub pushers: bool,
}

/// The facts a command is decided on.
pub fn plan_command(cmd: &Command, allow_self_approval: bool) -> CommandWants {
    match cmd {
        Command::Approve { .. } => CommandWants { permission: false, pushers: !allow_self_approval },
        Command::Hold | Command::Unhold | Command::Undeny => CommandWants { permission: true, pushers: false },
        _ => CommandWants::default(),
    }
}

/// The request as a command finds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestState {
    /// Open and labelled: a request at all.
    pub active: bool,
    /// Still labelled (a closed request keeps its label).
    pub labelled: bool,
    /// The request's issue number.
    pub issue: i64,
    /// Its environment, when the policy defines it.
    pub environment: Option<String>,
    pub requester: UserId,
    /// (account id, login) of who placed the hold; id None for holds stored before ids were.
    pub hold: Option<(Option<UserId>, String)>,
    /// (account id, login) of who denied it.
    pub denial: Option<(Option<UserId>, String)>,
}

/// What is known about the sender and the linked PRs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandFacts {
    pub sender: User,
    /// The request the command names (`/approve #45`), if any.
    pub target: Option<i64>,
    /// The roles the request needs (its environment's rules that apply to its files).
    pub needed_roles: Vec<String>,
    /// Which of them the sender holds now.
    pub held_roles: Vec<String>,
    pub allow_self_approval: bool,
    /// Authors of the linked PRs.
    pub pr_authors: Vec<UserId>,
    /// For each linked PR, its number and who pushed to it (when read).
    pub pushers: Vec<(i64, Vec<UserId>)>,
    /// The sender's permission on the repository (None: none, or not readable).
    pub permission: Option<Permission>,
    /// Whether the sender has an approval on this request.
    pub has_approved: bool,
    /// Whether the sender holds the `break_glass` role now (None: the policy defines none).
    pub break_glass: Option<bool>,
}

/// Why a command was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum Refusal {
    /// The comment names another request.
    NamesAnother {
        named: i64,
        this: i64,
    },
    /// The request is closed (still labelled).
    Closed,
    /// The issue is no longer labelled as a request.
    NotARequest,
    /// The request names no environment the policy defines.
    NoEnvironment,
    /// `/approve staging` on a production request.
    WrongEnvironment {
        asked: String,
        environment: String,
    },
    /// The sender holds none of the roles the environment needs.
    NoRole {
        environment: String,
        roles: Vec<String>,
    },
    /// The requester or a PR's author.
    SelfApproval,
    /// The sender pushed a commit to linked PR `pr`.
    Pusher {
        pr: i64,
    },
    NothingToCancel,
    /// `/deny` from someone with no required role.
    DenyNeedsRole,
    AlreadyDenied {
        by: String,
    },
    NotDenied,
    /// `/undeny` from neither the denier nor an admin.
    NotDenier {
        by: String,
    },
    /// `/hold` without (confirmed) write access.
    NeedsWrite,
    AlreadyOnHold {
        by: String,
    },
    NotOnHold,
    /// `/unhold` from neither the holder, a role holder who is not the requester, nor an admin.
    NotHolder {
        by: String,
        environment: String,
    },
    /// `/deploy` or `/rollback` from someone who holds none of `roles` (none: needs write access).
    NotAnApprover {
        roles: Vec<String>,
    },
    /// `/deploy` while a deployment of this request is under way.
    DeployUnderWay,
    /// `/deploy` where the environment deploys another way.
    NotDeployedByTheApp {
        environment: String,
        mode: String,
    },
    /// `/deploy` on a closed or unlabelled request.
    DeployClosed,
    /// `/deploy` while the gate is closed: what is missing.
    GateClosed {
        missing: Vec<String>,
    },
    AlreadyDeployed,
    /// Neither one pull request nor a full commit SHA to deploy.
    NoCommit,
    SeveralPullRequests,
    /// `/rollback` where the environment has `deploy: none`.
    NoRollbackMode {
        environment: String,
    },
    NothingDeployed,
    /// No earlier commit that the App deployed or approved there.
    NoEarlierCommit {
        environment: String,
    },
    /// `/breakglass` where the policy defines no `break_glass` role.
    NoBreakGlassRole,
    /// `/breakglass` from someone who does not hold the `break_glass` role.
    NotBreakGlassHolder,
    /// `/breakglass` on a denied request: a `/deny` stands.
    BreakGlassDenied {
        by: String,
    },
    /// `/breakglass` while `.github/shipgate.yml` is invalid.
    BreakGlassPolicyInvalid,
    /// `/breakglass` while the gate is open anyway.
    BreakGlassNeedless,
    /// `/breakglass` while an earlier one is still unspent.
    BreakGlassActive {
        by: String,
        until: String,
    },
    /// `/breakglass` on a request that covers no commit yet.
    BreakGlassNothingCovered,
    /// `/breakglass` handled more than its life after it was written (a late delivery).
    BreakGlassTooLate {
        written: String,
    },
}

/// What an accepted command does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An approval for these roles, bound to the current heads and revision.
    Approve {
        roles: Vec<String>,
    },
    /// The sender's approvals are withdrawn.
    CancelApprovals,
    Deny {
        reason: String,
    },
    Undeny,
    Hold,
    Unhold,
    Recheck,
    /// `/deploy` or `/rollback`: decided after the gate is evaluated.
    DeployAsk,
    /// `/breakglass` from a holder: decided after the gate is evaluated (it must be closed, and
    /// closed by something break-glass may override).
    BreakGlassAsk {
        reason: String,
    },
}

/// Decides one command. Pure: every fact it needs is in `state` and `facts`.
pub fn decide_command(cmd: &Command, state: &RequestState, facts: &CommandFacts) -> Result<Outcome, Refusal> {
    if let Some(named) = facts.target.filter(|n| *n != state.issue) {
        return Err(Refusal::NamesAnother { named, this: state.issue });
    }
    // A closed request takes `/rollback` only; an unlabelled issue takes nothing.
    if !(state.active || matches!(cmd, Command::Rollback) && state.labelled) {
        return Err(if state.labelled { Refusal::Closed } else { Refusal::NotARequest });
    }
    let sender = &facts.sender;
    let is_requester = sender.id == state.requester;
    let env = state.environment.clone().unwrap_or_default();
    let admin = facts.permission == Some(Permission::Admin);
    match cmd {
        Command::Approve { environment: asked } => {
            if state.environment.is_none() {
                return Err(Refusal::NoEnvironment);
            }
            if let Some(a) = asked
                && !a.eq_ignore_ascii_case(&env)
            {
                return Err(Refusal::WrongEnvironment { asked: a.clone(), environment: env });
            }
            if facts.held_roles.is_empty() {
                return Err(Refusal::NoRole { environment: env, roles: facts.needed_roles.clone() });
            }
            if !facts.allow_self_approval {
                if is_requester || facts.pr_authors.contains(&sender.id) {
                    return Err(Refusal::SelfApproval);
                }
                if let Some((pr, _)) = facts.pushers.iter().find(|(_, ids)| ids.contains(&sender.id)) {
                    return Err(Refusal::Pusher { pr: *pr });
                }
            }
            Ok(Outcome::Approve { roles: facts.held_roles.clone() })
        }
        Command::ApproveCancel if !facts.has_approved => Err(Refusal::NothingToCancel),
        Command::ApproveCancel => Ok(Outcome::CancelApprovals),
        Command::Deny { reason } => {
            if facts.held_roles.is_empty() {
                return Err(Refusal::DenyNeedsRole);
            }
            // One denial at a time: a second would make its author the one who may lift it.
            if let Some((_, by)) = &state.denial {
                return Err(Refusal::AlreadyDenied { by: by.clone() });
            }
            Ok(Outcome::Deny { reason: reason.clone() })
        }
        Command::Undeny => {
            let Some((id, by)) = &state.denial else { return Err(Refusal::NotDenied) };
            let own = match id {
                Some(id) => *id == sender.id,
                None => by.eq_ignore_ascii_case(&sender.login),
            };
            if own || admin { Ok(Outcome::Undeny) } else { Err(Refusal::NotDenier { by: by.clone() }) }
        }
        Command::Hold => {
            if facts.permission.is_none_or(|p| p < Permission::Write) {
                return Err(Refusal::NeedsWrite);
            }
            if let Some((_, by)) = &state.hold {
                return Err(Refusal::AlreadyOnHold { by: by.clone() });
            }
            Ok(Outcome::Hold)
        }
        Command::Unhold => {
            let Some((id, by)) = &state.hold else { return Err(Refusal::NotOnHold) };
            let own = match id {
                Some(id) => *id == sender.id,
                None => by.eq_ignore_ascii_case(&sender.login),
            };
            // The holder, a holder of a role the environment needs who is not the requester, or
            // an admin.
            if own || (!facts.held_roles.is_empty() && !is_requester) || admin {
                Ok(Outcome::Unhold)
            } else {
                Err(Refusal::NotHolder { by: by.clone(), environment: env })
            }
        }
        Command::Recheck => Ok(Outcome::Recheck),
        Command::Deploy | Command::Rollback => Ok(Outcome::DeployAsk),
        Command::BreakGlass { reason } => {
            match facts.break_glass {
                None => return Err(Refusal::NoBreakGlassRole),
                Some(false) => return Err(Refusal::NotBreakGlassHolder),
                Some(true) => {}
            }
            if state.environment.is_none() {
                return Err(Refusal::NoEnvironment);
            }
            // Never past a `/deny` (SPEC §3.7): whoever denied must lift it.
            if let Some((_, by)) = &state.denial {
                return Err(Refusal::BreakGlassDenied { by: by.clone() });
            }
            Ok(Outcome::BreakGlassAsk { reason: reason.clone() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE: i64 = 5;

    fn user(id: i64, login: &str) -> User {
        User { id: UserId(id), login: login.into() }
    }

    /// An open production request by carol (401) for a PR by dave (301).
    fn state() -> RequestState {
        RequestState {
            active: true,
            labelled: true,
            issue: ISSUE,
            environment: Some("production".into()),
            requester: UserId(401),
            hold: None,
            denial: None,
        }
    }

    /// Facts about `sender`, who holds `held` of the roles pm and backend-lead.
    fn facts(sender: User, held: &[&str]) -> CommandFacts {
        CommandFacts {
            sender,
            target: None,
            needed_roles: vec!["pm".into(), "backend-lead".into()],
            held_roles: held.iter().map(|r| r.to_string()).collect(),
            allow_self_approval: false,
            pr_authors: vec![UserId(301)],
            pushers: vec![(12, vec![UserId(301)])],
            permission: Some(Permission::Write),
            has_approved: false,
            break_glass: Some(false),
        }
    }

    fn approve() -> Command {
        Command::Approve { environment: None }
    }

    #[test]
    fn plan_reads_only_what_a_command_needs() {
        assert_eq!(plan_command(&approve(), false), CommandWants { permission: false, pushers: true });
        assert_eq!(plan_command(&approve(), true), CommandWants::default());
        for cmd in [Command::Hold, Command::Unhold, Command::Undeny] {
            assert_eq!(plan_command(&cmd, false), CommandWants { permission: true, pushers: false }, "{cmd:?}");
        }
        for cmd in [
            Command::Recheck,
            Command::Deploy,
            Command::Rollback,
            Command::ApproveCancel,
            Command::BreakGlass { reason: "down".into() },
        ] {
            assert_eq!(plan_command(&cmd, false), CommandWants::default(), "{cmd:?}");
        }
    }

    #[test]
    fn approvals() {
        let alice = user(101, "alice");
        assert_eq!(
            decide_command(&approve(), &state(), &facts(alice.clone(), &["pm"])),
            Ok(Outcome::Approve { roles: vec!["pm".into()] })
        );
        // No role.
        assert_eq!(
            decide_command(&approve(), &state(), &facts(user(501, "eve"), &[])),
            Err(Refusal::NoRole { environment: "production".into(), roles: vec!["pm".into(), "backend-lead".into()] })
        );
        // The requester, the PR author, a pusher: never, unless self-approval is allowed.
        assert_eq!(
            decide_command(&approve(), &state(), &facts(user(401, "carol"), &["pm"])),
            Err(Refusal::SelfApproval)
        );
        assert_eq!(
            decide_command(&approve(), &state(), &facts(user(301, "dave"), &["pm"])),
            Err(Refusal::SelfApproval)
        );
        let mut f = facts(user(201, "bob"), &["backend-lead"]);
        f.pushers = vec![(12, vec![UserId(301), UserId(201)])];
        assert_eq!(decide_command(&approve(), &state(), &f), Err(Refusal::Pusher { pr: 12 }));
        f.allow_self_approval = true;
        assert!(decide_command(&approve(), &state(), &f).is_ok());
        let mut f = facts(user(401, "carol"), &["pm"]);
        f.allow_self_approval = true;
        assert!(decide_command(&approve(), &state(), &f).is_ok());
        // The environment.
        let staging = Command::Approve { environment: Some("staging".into()) };
        assert_eq!(
            decide_command(&staging, &state(), &facts(alice.clone(), &["pm"])),
            Err(Refusal::WrongEnvironment { asked: "staging".into(), environment: "production".into() })
        );
        let production = Command::Approve { environment: Some("Production".into()) };
        assert!(decide_command(&production, &state(), &facts(alice.clone(), &["pm"])).is_ok());
        let no_env = RequestState { environment: None, ..state() };
        assert_eq!(decide_command(&approve(), &no_env, &facts(alice.clone(), &["pm"])), Err(Refusal::NoEnvironment));
        // Cancelling needs an approval to cancel.
        assert_eq!(
            decide_command(&Command::ApproveCancel, &state(), &facts(alice.clone(), &[])),
            Err(Refusal::NothingToCancel)
        );
        let mut f = facts(alice, &[]);
        f.has_approved = true;
        assert_eq!(decide_command(&Command::ApproveCancel, &state(), &f), Ok(Outcome::CancelApprovals));
    }

    #[test]
    fn closed_unlabelled_and_other_requests() {
        let alice = facts(user(101, "alice"), &["pm"]);
        let closed = RequestState { active: false, ..state() };
        assert_eq!(decide_command(&approve(), &closed, &alice), Err(Refusal::Closed));
        assert_eq!(decide_command(&Command::Hold, &closed, &alice), Err(Refusal::Closed));
        assert_eq!(decide_command(&Command::Rollback, &closed, &alice), Ok(Outcome::DeployAsk));
        let unlabelled = RequestState { active: false, labelled: false, ..state() };
        assert_eq!(decide_command(&Command::Rollback, &unlabelled, &alice), Err(Refusal::NotARequest));
        let mut named = alice.clone();
        named.target = Some(6);
        assert_eq!(decide_command(&approve(), &state(), &named), Err(Refusal::NamesAnother { named: 6, this: ISSUE }));
        named.target = Some(ISSUE);
        assert!(decide_command(&approve(), &state(), &named).is_ok());
    }

    #[test]
    fn holds() {
        let eve = facts(user(501, "eve"), &[]);
        assert_eq!(decide_command(&Command::Hold, &state(), &eve), Ok(Outcome::Hold));
        // Write access is needed, and must be confirmed (dry-run reads none).
        for p in [None, Some(Permission::Read), Some(Permission::Triage)] {
            let mut f = eve.clone();
            f.permission = p;
            assert_eq!(decide_command(&Command::Hold, &state(), &f), Err(Refusal::NeedsWrite), "{p:?}");
        }
        let held = RequestState { hold: Some((Some(UserId(501)), "eve".into())), ..state() };
        // A second hold would make its author the one who may lift it.
        let carol = facts(user(401, "carol"), &[]);
        assert_eq!(decide_command(&Command::Hold, &held, &carol), Err(Refusal::AlreadyOnHold { by: "eve".into() }));
        // Lifted by the holder, a role holder who is not the requester, or an admin.
        assert_eq!(decide_command(&Command::Unhold, &held, &eve), Ok(Outcome::Unhold));
        assert_eq!(decide_command(&Command::Unhold, &held, &facts(user(101, "alice"), &["pm"])), Ok(Outcome::Unhold));
        let mut admin = facts(user(601, "frank"), &[]);
        admin.permission = Some(Permission::Admin);
        assert_eq!(decide_command(&Command::Unhold, &held, &admin), Ok(Outcome::Unhold));
        let not = Err(Refusal::NotHolder { by: "eve".into(), environment: "production".into() });
        assert_eq!(decide_command(&Command::Unhold, &held, &carol), not);
        assert_eq!(decide_command(&Command::Unhold, &held, &facts(user(401, "carol"), &["pm"])), not, "the requester");
        assert_eq!(decide_command(&Command::Unhold, &held, &facts(user(301, "dave"), &[])), not);
        // A renamed holder's old login lifts nothing; a hold stored with a login only compares it.
        assert_eq!(decide_command(&Command::Unhold, &held, &facts(user(999, "eve"), &[])), not);
        let legacy = RequestState { hold: Some((None, "Eve".into())), ..state() };
        assert_eq!(decide_command(&Command::Unhold, &legacy, &eve), Ok(Outcome::Unhold));
        assert_eq!(decide_command(&Command::Unhold, &state(), &eve), Err(Refusal::NotOnHold));
    }

    #[test]
    fn denials() {
        let alice = facts(user(101, "alice"), &["pm"]);
        assert_eq!(
            decide_command(&Command::Deny { reason: "budget".into() }, &state(), &alice),
            Ok(Outcome::Deny { reason: "budget".into() })
        );
        assert_eq!(
            decide_command(&Command::Deny { reason: "x".into() }, &state(), &facts(user(501, "eve"), &[])),
            Err(Refusal::DenyNeedsRole)
        );
        let denied = RequestState { denial: Some((Some(UserId(101)), "alice".into())), ..state() };
        let bob = facts(user(201, "bob"), &["backend-lead"]);
        assert_eq!(
            decide_command(&Command::Deny { reason: "me too".into() }, &denied, &bob),
            Err(Refusal::AlreadyDenied { by: "alice".into() })
        );
        // Lifted by the denier or an admin only: another role holder cannot.
        assert_eq!(decide_command(&Command::Undeny, &denied, &bob), Err(Refusal::NotDenier { by: "alice".into() }));
        assert_eq!(decide_command(&Command::Undeny, &denied, &alice), Ok(Outcome::Undeny));
        let mut admin = facts(user(601, "frank"), &[]);
        admin.permission = Some(Permission::Admin);
        assert_eq!(decide_command(&Command::Undeny, &denied, &admin), Ok(Outcome::Undeny));
        let mut maintainer = admin.clone();
        maintainer.permission = Some(Permission::Maintain);
        assert!(decide_command(&Command::Undeny, &denied, &maintainer).is_err());
        assert_eq!(decide_command(&Command::Undeny, &state(), &alice), Err(Refusal::NotDenied));
    }

    #[test]
    fn breakglass_is_for_holders_of_a_defined_role_and_never_past_a_denial() {
        let bg = Command::BreakGlass { reason: "checkout down".into() };
        let mut sre = facts(user(701, "sre"), &[]);
        sre.break_glass = Some(true);
        assert_eq!(decide_command(&bg, &state(), &sre), Ok(Outcome::BreakGlassAsk { reason: "checkout down".into() }));
        // The requester may break the glass of their own request: the on-call engineer at 2 a.m.
        let mut own = facts(user(401, "carol"), &[]);
        own.break_glass = Some(true);
        assert!(decide_command(&bg, &state(), &own).is_ok());
        // An approver who does not hold break_glass may not; nor anyone where no role is defined.
        assert_eq!(
            decide_command(&bg, &state(), &facts(user(101, "alice"), &["pm"])),
            Err(Refusal::NotBreakGlassHolder)
        );
        let mut none = sre.clone();
        none.break_glass = None;
        assert_eq!(decide_command(&bg, &state(), &none), Err(Refusal::NoBreakGlassRole));
        let denied = RequestState { denial: Some((Some(UserId(101)), "alice".into())), ..state() };
        assert_eq!(decide_command(&bg, &denied, &sre), Err(Refusal::BreakGlassDenied { by: "alice".into() }));
        let closed = RequestState { active: false, ..state() };
        assert_eq!(decide_command(&bg, &closed, &sre), Err(Refusal::Closed));
        let no_env = RequestState { environment: None, ..state() };
        assert_eq!(decide_command(&bg, &no_env, &sre), Err(Refusal::NoEnvironment));
    }
}

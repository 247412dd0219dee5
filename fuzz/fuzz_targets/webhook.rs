//! Fuzzes a webhook body on its way in and through the worker's first reading of it: the envelope
//! the intake stores (action, installation, repository, subject), the stored (compressed) body,
//! and the typed payloads the handlers read (`github::events`). Any bytes: a refusal is an error,
//! never a panic, and what is stored reads back as what came in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use shipgate::domain::messages::{self, DeployView};
use shipgate::github::client::parse_rfc3339_ms;
use shipgate::github::envelope::{Envelope, EnvelopeError};
use shipgate::github::events::{
    DeploymentStatusEvent, IssueCommentEvent, IssuesEvent, ProtectionRuleEvent, PushEvent, RelatedEvent,
};
use shipgate::store::deliveries::{compress, inflate};

fuzz_target!(|data: &[u8]| {
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    let envelope = match Envelope::parse(data) {
        Ok(e) => e,
        Err(EnvelopeError::NotAnObject) => {
            assert_ne!(first, Some(&b'{'));
            return;
        }
        Err(EnvelopeError::Json(message)) => {
            assert_eq!(first, Some(&b'{'));
            assert!(!message.is_empty());
            return;
        }
    };
    assert_eq!(first, Some(&b'{'));
    // What the intake stores (src/http/webhook.rs).
    // serde_json skips the strings of fields it ignores without checking their UTF-8, so the
    // intake checks the whole body and refuses one that is not (400).
    let Ok(text) = std::str::from_utf8(data) else { return };
    let subject = envelope.subject("push");
    let number = envelope
        .issue
        .as_ref()
        .and_then(|i| i.number)
        .or_else(|| envelope.pull_request.as_ref().and_then(|p| p.number));
    let expected = match (&envelope.repository, number, &envelope.installation) {
        (Some(r), Some(n), _) => format!("repo:{}#{n}", r.id),
        (Some(r), None, _) => format!("repo:{}", r.id),
        (None, _, Some(i)) => format!("installation:{}", i.id),
        (None, _, None) => "app".to_string(),
    };
    assert_eq!(subject, expected);
    // A check event's subject is its repository's, or that of one commit of it (lowercase hex).
    for event in ["check_run", "check_suite", "status"] {
        let s = envelope.subject(event);
        if s != expected {
            let repo = envelope.repository.as_ref().expect("only a repository's checks have commits").id;
            let sha = s.strip_prefix(&format!("repo:{repo}@")).expect("a commit of the repository");
            assert!((1..=64).contains(&sha.len()) && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{s}");
        }
    }
    let stored = compress(text);
    assert_eq!(inflate("", Some(&stored)).expect("a stored body inflates"), text);
    assert_eq!(inflate(text, None).expect("a plain body"), text);

    // What the worker reads of it (src/handlers): any event's shape, tried on the same body.
    let Ok(v) = serde_json::from_str::<Value>(text) else { panic!("parsed once, not twice") };
    if let Ok(e) = serde_json::from_value::<IssuesEvent>(v.clone()) {
        let _ = (e.issue.snapshot(), e.issue.is_pull_request(), e.issue.user.is_bot());
    }
    if let Ok(e) = serde_json::from_value::<IssueCommentEvent>(v.clone()) {
        let _ = (e.before(), e.comment.created_at(), e.issue.snapshot(), e.sender.user());
        if let Some(body) = &e.comment.body {
            let _ = shipgate::domain::commands::parse_targeted(body);
        }
    }
    if let Ok(e) = serde_json::from_value::<DeploymentStatusEvent>(v.clone()) {
        // As `on_deployment_status` reads it, and the request comment's line about it.
        let (dep, st) = (&e.deployment, &e.deployment_status);
        let created_at = dep.created_at.as_deref().and_then(parse_rfc3339_ms).unwrap_or(0);
        let status_at = st.created_at.as_deref().and_then(parse_rfc3339_ms).unwrap_or(created_at);
        if let Some(state) = shipgate::domain::state::DeployState::parse(&st.state) {
            let view = DeployView {
                state,
                sha: dep.sha.clone(),
                environment: dep.environment.clone().or(st.environment.clone()).unwrap_or_default(),
                deployment_id: Some(dep.id),
                started_at: Some(created_at),
                finished_at: Some(status_at),
                rollback: false,
                gate_opened_at: Some(created_at),
                log_url: st.log_url.clone(),
            };
            let _ = messages::deploy_line(&view, created_at);
            let _ = messages::deploy_failed(&view, Some("revert"), Some(&dep.sha));
        }
    }
    if let Ok(e) = serde_json::from_value::<ProtectionRuleEvent>(v.clone()) {
        // As `on_protection_rule` reads it, and what it answers when no request covers the run.
        if let (Some(_run), Some(environment), Some(sha)) = (e.run_id(), e.environment.as_deref(), e.sha.as_deref()) {
            let _ = messages::rule_uncovered(environment, sha);
        }
    }
    if let Ok(e) = serde_json::from_value::<PushEvent>(v.clone()) {
        let _ = (e.default_branch(), e.touches(".github/shipgate.yml"));
    }
    if let Ok(e) = serde_json::from_value::<RelatedEvent>(v.clone()) {
        let _ = e.pr_number();
        if let Some(run) = &e.check_run {
            let _ = shipgate::github::facts::actions_run_id(run.details_url.as_deref(), run.app.slug.as_deref());
        }
    }
    if let Some(issue) = shipgate::github::events::Issue::read(v["issue"].clone()) {
        let _ = issue.updated_at();
    }
});

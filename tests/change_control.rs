//! Change control by time (issue 19, SPEC §3.7), on both backends with a manual clock: an approval
//! older than `approvals_expire_after` closes the gate when it expires, and a freeze window closes
//! it when it starts and lets it open when it ends, across a DST change in Europe/Berlin, all with
//! no event at all: the App's timer evaluates the request again at each of those instants.

mod common;
mod fake_github;
mod world;

use std::time::Duration;

use common::{TestApp, TestDb};
use shipgate::clock::Clock;
use shipgate::server::Options;
use world::*;

/// A world whose App and fake GitHub share a manual clock starting at `t0`.
async fn world_at(db: &TestDb, policy: &str, t0: i64) -> (World, Clock) {
    let clock = Clock::manual(t0);
    let gh = fake_github::FakeGitHub::start().await;
    gh.use_clock(clock.clone());
    gh.install(INST, &[REPO]);
    gh.file(REPO, ".github/shipgate.yml", policy);
    for (id, login) in [ALICE, BOB, CAROL, DAVE, EVE] {
        gh.permission(REPO, login, "write");
        gh.user(login, id);
    }
    gh.pull(REPO, 12, DAVE, SHA, &["README.md"]);
    gh.ci(REPO, SHA, "build", "completed", Some("success"));
    let opts = Options { github: Some(fast_github(&gh.url)), clock: clock.clone(), ..Options::default() };
    let app = TestApp::start_with(app_config(db, &gh), opts).await;
    (World { gh, app, n: Default::default() }, clock)
}

/// Waits (at most 20 s) until the gate check run on SHA says `conclusion`; the sticky comment
/// then.
async fn gate_becomes(w: &World, conclusion: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        w.settle().await;
        let runs = w.gh.gate_checks(REPO, SHA);
        if runs.first().is_some_and(|r| r.1 == conclusion) {
            return w.sticky();
        }
        assert!(tokio::time::Instant::now() < deadline, "the gate never became {conclusion}: {runs:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `/approve` by alice, written (as GitHub says) at the App's clock's now.
async fn approve_now(w: &World, clock: &Clock) {
    w.comment_written_at(ALICE, "/approve", clock.now_ms()).await;
}

fn policy(extra: &str) -> String {
    format!(
        r#"
label: DEPLOYMENT_REQUEST
roles:
  pm: {{ users: [alice] }}
environments:
  production:
    approvals:
      - role: pm
    require_checks: all
{extra}
  staging:
    approvals: []
"#
    )
}

const HOUR: i64 = 3_600_000;

/// An approval given for a day no longer counts a day later: the gate closes at that instant
/// with no event, and the comment says the approval expired.
async fn an_expired_approval_closes_the_gate_without_any_event(db: &TestDb) {
    let t0 = 1_796_000_000_000; // Mon 30 Nov 2026 00:53:20 UTC
    let (w, clock) = world_at(db, &policy("    approvals_expire_after: 24h"), t0).await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    approve_now(&w, &clock).await;
    let c = gate_becomes(&w, "success").await;
    assert!(c.contains("The gate is open"), "{c}");
    let timer = shipgate::store::timers::get(&w.app.db, INST, REPO_ID, 5).await.expect("timer");
    assert_eq!(timer, Some(t0 + 24 * HOUR), "the timer is set for the approval's expiry");

    // A minute before: still open. Then past the expiry, with nothing delivered.
    clock.advance_ms(24 * HOUR - 60_000);
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success");
    clock.advance_ms(61_000);
    let c = gate_becomes(&w, "action_required").await;
    assert!(c.contains("@alice: expired: given") && c.contains("approvals count for 1d"), "{c}");
    assert!(!c.contains("The gate is open"), "{c}");
    // Approving again opens it again, for another day.
    approve_now(&w, &clock).await;
    gate_becomes(&w, "success").await;
    w.replies();
    w.done().await;
}
both_backends!(an_expired_approval_closes_the_gate_without_any_event);

/// A weekend freeze from Friday 16:00 for 64 hours, Europe/Berlin, over the night the clocks go
/// back (25 October 2026): the gate closes at 16:00 CEST (14:00 UTC) and opens 64 elapsed hours
/// later, Monday 06:00 UTC, which is 07:00 CET (not the 08:00 a wall-clock count would give).
async fn a_freeze_window_closes_and_reopens_the_gate_across_a_dst_change(db: &TestDb) {
    let friday_1300_utc = 1_792_760_400_000; // Fri 23 Oct 2026 13:00 UTC = 15:00 CEST
    let freeze = r#"    freeze:
      - { cron: "0 16 * * FRI", duration: 64h, timezone: Europe/Berlin, reason: weekend }"#;
    let (w, clock) = world_at(db, &policy(freeze), friday_1300_utc).await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    approve_now(&w, &clock).await;
    let c = gate_becomes(&w, "success").await;
    assert!(c.contains("| Freeze | ✅ | no freeze window now |"), "{c}");

    // 16:00 CEST: frozen until Monday 07:00 CET, with no event.
    clock.advance_ms(HOUR + 1_000);
    let c = gate_becomes(&w, "action_required").await;
    assert!(c.contains("frozen until Mon 26 Oct 2026 07:00 CET (weekend)"), "{c}");
    let (_, summary) = w.gate(SHA);
    assert!(summary.contains("Freeze: frozen until Mon 26 Oct 2026 07:00 CET (weekend)"), "{summary}");

    // Sunday, after the clocks went back: still frozen.
    clock.advance_ms(48 * HOUR);
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "action_required");
    // Monday 05:59 UTC: still; 06:00 UTC (07:00 CET, 64 hours after it began): open again.
    clock.advance_ms(16 * HOUR - 2_000); // Mon 05:59:59 UTC
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "action_required", "one second before the end");
    clock.advance_ms(2_000);
    let c = gate_becomes(&w, "success").await;
    assert!(c.contains("The gate is open") && c.contains("no freeze window now"), "{c}");
    w.replies();
    w.done().await;
}
both_backends!(a_freeze_window_closes_and_reopens_the_gate_across_a_dst_change);

/// REVIEW: an approval counts from when it was given (the comment's `created_at`), not from when
/// the App got round to it. A delivery that comes in 23 h late (an outage, a redelivery the App
/// asked for, a backlog) must not give the approval another 23 h.
async fn a_late_delivered_approval_expires_from_when_it_was_written(db: &TestDb) {
    let t0 = 1_796_000_000_000;
    let (w, clock) = world_at(db, &policy("    approvals_expire_after: 24h"), t0).await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    // Alice writes /approve one second after the label; the App sees it 23 h later.
    clock.advance_ms(1_000);
    let given = t0 + 1_000;
    clock.advance_ms(23 * HOUR);
    w.comment_written_at(ALICE, "/approve", given).await;
    gate_becomes(&w, "success").await;
    let timer = shipgate::store::timers::get(&w.app.db, INST, REPO_ID, 5).await.expect("timer");
    // 24 h after it was written, it no longer counts.
    assert_eq!(timer, Some(given + 24 * HOUR), "the timer counts from when it was written");
    clock.advance_ms(HOUR + 1_000);
    gate_becomes(&w, "action_required").await;
    let (gate, _) = w.gate(SHA);
    assert_eq!(
        (timer, gate.as_str()),
        (Some(given + 24 * HOUR), "action_required"),
        "an approval written at {given} counts until {} (the timer says {timer:?}): 24 h from when the App processed it",
        given + 24 * HOUR
    );
    w.replies();
    w.done().await;
}
both_backends!(a_late_delivered_approval_expires_from_when_it_was_written);

/// A run waiting on the protection rule through a freeze is approved when the freeze ends, with
/// no event, if everything else holds (SPEC §3.7); told why it waits meanwhile.
async fn a_protection_rule_waiting_through_a_freeze_is_approved_when_it_ends(db: &TestDb) {
    let t0 = 1_796_000_000_000; // Mon 30 Nov 2026 00:53:20 UTC
    let extra = "    deploy: protection_rule\n    freeze:\n      \
                 - { from: 2026-11-30, to: 2026-11-30, timezone: UTC, reason: release day }";
    let (w, clock) = world_at(db, &policy(extra), t0).await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    approve_now(&w, &clock).await;
    let c = gate_becomes(&w, "action_required").await;
    assert!(c.contains("frozen until Tue 1 Dec 2026 00:00 UTC (release day)"), "{c}");
    w.protection_rule(777, "production", SHA).await;
    w.settle().await;
    let answers = |w: &World| -> Vec<String> {
        w.gh.model()
            .protection_reviews
            .iter()
            .filter(|(_, run, _)| *run == 777)
            .map(|(_, _, b)| format!("{} {}", b["state"].as_str().unwrap_or("report"), b["comment"]))
            .collect()
    };
    let a = answers(&w);
    assert!(a.len() == 1 && a[0].starts_with("report") && a[0].contains("frozen until"), "{a:?}");
    // Midnight: the freeze ends, and the waiting run is approved with nothing delivered.
    let midnight = 1_796_083_200_000; // Tue 1 Dec 2026 00:00 UTC
    clock.advance_ms(midnight - t0 + 1_000);
    gate_becomes(&w, "success").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !answers(&w).iter().any(|x| x.starts_with("approved")) {
        assert!(tokio::time::Instant::now() < deadline, "never approved: {:?}", answers(&w));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    w.done().await;
}
both_backends!(a_protection_rule_waiting_through_a_freeze_is_approved_when_it_ends);

//! The command line's part of freeze windows (issue 19): `shipgate check-config` refuses windows
//! that never end, and `shipgate simulate --at TIME` takes the moment to judge the gate at.

use std::path::Path;
use std::process::Command;

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shipgate")).args(args).output().expect("run");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn check_config_refuses_freeze_windows_that_never_end() {
    let dir = tempfile::tempdir().expect("dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let env = "environments:\n  production:\n    approvals_expire_after: 24h\n    freeze:\n";
    let good = write(
        "good.yml",
        &format!(
            "{env}      - {{ cron: \"0 16 * * FRI\", duration: 64h, timezone: Europe/Berlin, reason: weekend }}\n      \
             - {{ from: 2026-12-23, to: 2027-01-02, timezone: Europe/Berlin, reason: holidays }}\n"
        ),
    );
    let (code, text) = run(&["check-config".as_ref(), good.as_os_str()]);
    assert_eq!(code, Some(0), "{text}");
    // What the valid windows mean from now (frozen now, or the next window), and the rest of
    // change control.
    let freeze = text.lines().find(|l| l.starts_with("    freeze: ")).unwrap_or_else(|| panic!("{text}"));
    assert!(
        freeze.contains("frozen until") && (freeze.contains("(weekend)") || freeze.contains("(holidays)")),
        "{text}"
    );
    assert!(text.contains("    approvals count for 1d"), "{text}");
    assert!(text.contains("break-glass: none (no `break_glass` role): `/breakglass` is refused"), "{text}");
    let endless = write(
        "endless.yml",
        &format!("{env}      - {{ cron: \"* * * * *\", duration: 1m, timezone: UTC, reason: always }}\n"),
    );
    let (code, text) = run(&["check-config".as_ref(), endless.as_os_str()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("endless.yml:5:9: this freeze window never ends"), "{text}");
    let together = write(
        "together.yml",
        &format!(
            "{env}      - {{ cron: \"0 0 * * 1-5\", duration: 24h, timezone: UTC, reason: week }}\n      \
             - {{ cron: \"0 0 * * 6,0\", duration: 24h, timezone: UTC, reason: weekend }}\n"
        ),
    );
    let (code, text) = run(&["check-config".as_ref(), together.as_os_str()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("together.yml:5:7: together, these freeze windows never end"), "{text}");
}

#[test]
fn simulate_takes_the_time_to_judge_the_gate_at() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/simulate");
    let files = [example.join("shipgate.yml"), example.join("request.md"), example.join("facts.yml")];
    let path = |p: &Path| p.to_str().expect("a UTF-8 path").to_owned();
    let base: Vec<String> = vec![
        "simulate".into(),
        "--policy".into(),
        path(&files[0]),
        "--request".into(),
        path(&files[1]),
        "--facts".into(),
        path(&files[2]),
    ];
    let (code, without) = run(&base);
    assert_eq!(code, Some(0), "{without}");
    let mut at = base.clone();
    at.extend(["--at".into(), "2026-12-24T10:00:00+01:00".into()]);
    let (code, with) = run(&at);
    assert_eq!(code, Some(0), "{with}");
    assert!(with.contains("The gate is open"), "{with}");
    assert_eq!(with, without, "the example's policy has no freeze and no expiry");
    let mut bad = base.clone();
    bad.extend(["--at".into(), "Friday 16:00".into()]);
    let (code, text) = run(&bad);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("--at: `Friday 16:00` is not an RFC 3339 time"), "{text}");
}

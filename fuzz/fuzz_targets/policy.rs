//! Fuzzes the repository policy parser: `parse` must return (a policy or errors) on any text,
//! never panic, give the same answer each time (also through `change_summary`), and a policy it
//! returns must be usable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shipgate::domain::policy;

fuzz_target!(|data: &[u8]| {
    // The policy is read from a UTF-8 file; other bytes never reach `parse`.
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(minutes) = policy::parse_duration_minutes(text) {
        // A duration reads back from its minutes.
        assert_eq!(policy::parse_duration_minutes(&format!("{minutes}m")), Ok(minutes), "{text:?}");
    }
    let parsed = policy::parse(text);
    // Parsing is a function of the text: a policy validated again is the same policy.
    assert_eq!(policy::parse(text), parsed);
    let summary = policy::change_summary(Some(text), Some(text));
    assert_eq!(summary["valid_before"], summary["valid_after"]);
    assert_eq!(summary["valid_after"], serde_json::json!(parsed.is_ok()));
    assert_eq!(summary["other_keys_changed"], serde_json::json!([]), "{text:?} changed against itself");
    for section in ["environments", "roles"] {
        for how in ["added", "removed", "changed"] {
            assert_eq!(summary[section][how], serde_json::json!([]), "{section} {how}: {text:?}");
        }
    }
    match parsed {
        Ok(policy) => {
            let _ = policy.label_matches(text);
            let _ = policy.environment(text);
            let _ = policy.ci.categorize(text);
            let files = ["", "/", "apps/backend/src/main.rs", "README.md", text];
            for (name, env) in &policy.environments {
                let found = policy.environment(name).expect("an environment is found by its own name");
                assert_eq!(found, env);
                let _ = policy.environment(&name.to_uppercase());
                for rule in &env.approvals {
                    assert!(policy.roles.contains_key(&rule.role), "an approval names a defined role");
                    let _ = rule.applies_to(files);
                    if rule.when_paths.is_empty() {
                        assert!(rule.applies_to(std::iter::empty()));
                    }
                }
            }
            if let Some(role) = &policy.ci.escalate_to {
                assert!(policy.roles.contains_key(role), "escalate_to names a defined role");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for error in &errors {
                assert!(error.line >= 1 && error.column >= 1 && !error.message.is_empty());
            }
            assert!(errors.windows(2).all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)));
        }
    }
});

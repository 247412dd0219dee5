//! Fuzzes the repository policy parser: `parse` must return (a policy or errors) on any text,
//! never panic, and a policy it returns must be usable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shipgate::domain::policy;

fuzz_target!(|data: &[u8]| {
    // The policy is read from a UTF-8 file; other bytes never reach `parse`.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = policy::parse_duration_minutes(text);
    match policy::parse(text) {
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

//! Dependencies point one way (ENGINEERING.md, "The shape"): http → queue → handlers →
//! domain/store/github. These read the sources, so a change that makes a lower layer import a
//! higher one, or two siblings import each other, fails here.

use std::path::Path;

fn sources(dir: &str) -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("source dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push((path.display().to_string(), std::fs::read_to_string(&path).expect("read")));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut out = Vec::new();
    walk(&root, &mut out);
    assert!(!out.is_empty(), "no sources in {}", root.display());
    out
}

fn file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(path)).expect("read")
}

#[test]
fn lower_layers_never_import_higher_ones() {
    let higher = ["crate::cli", "crate::server", "crate::http", "crate::queue", "crate::handlers"];
    for layer in ["store", "domain", "github"] {
        for (path, text) in sources(layer) {
            for h in higher {
                assert!(!text.contains(h), "{path} imports {h}");
            }
        }
    }
    for (path, text) in sources("handlers") {
        for h in ["crate::cli", "crate::server", "crate::http", "crate::queue"] {
            assert!(!text.contains(h), "{path} imports {h}");
        }
    }
}

#[test]
fn siblings_do_not_import_each_other() {
    let ci = file("handlers/ci.rs");
    for needle in ["super::requests", "handlers::requests", ", requests}", "{requests,"] {
        assert!(!ci.contains(needle), "handlers/ci imports handlers/requests ({needle})");
    }
    let requests = file("handlers/requests.rs");
    assert!(!requests.contains("super::ci::"), "handlers/requests imports handlers/ci");
    let completer = file("queue/completer.rs");
    assert!(!completer.contains("ingest::"), "queue/completer imports queue/ingest");
}

/// The domain decides; it never fetches. No database, no GitHub, no async, no clock: every fact
/// comes in as a value (`domain::flow::Facts`), so each rule is a plain unit test.
#[test]
fn the_domain_is_pure() {
    let sources = sources("domain");
    assert!(sources.iter().any(|(p, _)| p.ends_with("flow/mod.rs")), "the decision lives in domain::flow");
    for (path, text) in sources {
        for needle in ["crate::store", "crate::github", "tokio", "sqlx", "async fn", ".await", "SystemTime", "Utc::now"]
        {
            assert!(!text.contains(needle), "{path} uses {needle}: the domain is pure");
        }
    }
}

//! Fuzzes the reading of a GitHub Actions OIDC token at `POST /gate/wait` (anyone can send one):
//! its header, algorithm and key id are read before any key is fetched. The issuer here is an
//! address where nothing listens, asked once and then not again for a day, so every run after the
//! first stops where a key would be needed: no token is accepted, and none may panic.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shipgate::clock::Clock;
use shipgate::github::oidc::{OidcConfig, OidcError, OidcVerifier};

struct Fixture {
    rt: tokio::runtime::Runtime,
    verifier: OidcVerifier,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let cfg = OidcConfig {
            // The discard port on loopback: refused at once.
            issuer: "http://127.0.0.1:9".into(),
            audience: "shipgate".into(),
            jwks_refresh: Duration::from_secs(86_400),
            leeway: Duration::from_secs(60),
        };
        let verifier =
            rt.block_on(async { OidcVerifier::new(cfg, Clock::manual(1_800_000_000_000)) }).expect("verifier");
        Fixture { rt, verifier }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let f = fixture();
    match f.rt.block_on(f.verifier.verify(token)) {
        Ok(claims) => panic!("a token was accepted without a key: {claims:?}"),
        Err(OidcError::Algorithm(alg)) => assert_ne!(alg, "RS256"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

//! A fake GitHub Actions OIDC issuer for `POST /gate/wait`: its discovery document and JWKS (the
//! public half of `tests/fixtures/test-app-key.pem`), a token endpoint like the runner's
//! (`ACTIONS_ID_TOKEN_REQUEST_URL`), and token minting with any claims, key or algorithm.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::routing::get;
use serde_json::{Value, json};

pub const KID: &str = "shipgate-test";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).expect("fixture")
}

struct Shared {
    url: String,
    jwks_fetches: AtomicUsize,
    /// The claims the token endpoint puts in the tokens it hands out (besides `aud`).
    claims: Mutex<Value>,
}

#[derive(Clone)]
pub struct FakeIssuer {
    pub url: String,
    shared: Arc<Shared>,
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() as i64
}

impl FakeIssuer {
    pub async fn start() -> FakeIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake issuer");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let shared =
            Arc::new(Shared { url: url.clone(), jwks_fetches: AtomicUsize::new(0), claims: Mutex::new(json!({})) });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(s): State<Arc<Shared>>| async move {
                    axum::Json(json!({ "issuer": s.url, "jwks_uri": format!("{}/jwks", s.url),
                                       "id_token_signing_alg_values_supported": ["RS256"] }))
                }),
            )
            .route(
                "/jwks",
                get(|State(s): State<Arc<Shared>>| async move {
                    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                    let jwks: Value = serde_json::from_str(&fixture("oidc-jwks.json")).expect("jwks");
                    axum::Json(jwks)
                }),
            )
            // The runner's token endpoint: `?audience=…`, answers `{"value": token}`.
            .route(
                "/token",
                get(|State(s): State<Arc<Shared>>, Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let mut claims = s.claims.lock().unwrap().clone();
                    claims["aud"] = json!(q.get("audience").cloned().unwrap_or_default());
                    axum::Json(json!({ "value": sign(&claims, KID) }))
                }),
            )
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeIssuer { url, shared }
    }

    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// The claims of a real Actions token for a job of `repository` (id `repository_id`) deploying
    /// `sha` from `main` to `environment` in run `run_id`, issued now for five minutes.
    pub fn claims(
        &self,
        repository: &str,
        repository_id: i64,
        sha: &str,
        environment: Option<&str>,
        run_id: i64,
    ) -> Value {
        let now = now_s();
        let mut c = json!({
            "iss": self.url, "aud": "shipgate", "sub": format!("repo:{repository}:environment:{}", environment.unwrap_or("")),
            "repository": repository, "repository_id": repository_id.to_string(), "repository_owner": "acme",
            "sha": sha, "ref": "refs/heads/main", "ref_type": "branch", "event_name": "push",
            "run_id": run_id.to_string(), "run_number": "7", "run_attempt": "1", "actor": "dave",
            "workflow_ref": format!("{repository}/.github/workflows/deploy.yml@refs/heads/main"),
            "iat": now, "nbf": now, "exp": now + 300,
        });
        if let Some(e) = environment {
            c["environment"] = json!(e);
        }
        c
    }

    /// What the token endpoint hands out from now on.
    pub fn hand_out(&self, claims: Value) {
        *self.shared.claims.lock().unwrap() = claims;
    }
}

/// A token with these claims, signed RS256 with the test key under key id `kid`.
pub fn sign(claims: &Value, kid: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(fixture("test-app-key.pem").as_bytes()).expect("key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

/// A token signed with a key the issuer does not publish (same key id).
pub fn sign_with_unknown_key(claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(fixture("oidc-unknown-key.pem").as_bytes()).expect("key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(KID.into());
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

/// An unsigned token (`alg: none`).
pub fn unsigned(claims: &Value) -> String {
    use base64::Engine;
    let b = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", b(&json!({ "alg": "none", "typ": "JWT", "kid": KID })), b(claims))
}

/// A token signed HS256 with the public key's bytes as the secret (the classic confusion).
pub fn hs256_with_public_key(claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(KID.into());
    let key = jsonwebtoken::EncodingKey::from_secret(fixture("oidc-jwks.json").as_bytes());
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

//! GitHub Actions OIDC tokens, verified (deploy mode `workflow`, `POST /gate/wait`): a job proves
//! which repository, commit, ref, environment and run it is with a token GitHub signed. Checked:
//! the issuer's discovery document and keys (`SHIPGATE_OIDC_ISSUER`, GitHub's by default; the
//! keys cached and fetched again at most once per `jwks_refresh` when a token names an unknown
//! key), the RS256 signature (no other algorithm, never `none`), `iss`, `aud`
//! (`SHIPGATE_OIDC_AUDIENCE`), `exp`, `nbf` and `iat` with a small skew.

use std::sync::Mutex;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use octocrab::Octocrab;
use serde::Deserialize;
use serde_json::Value;

use crate::clock::Clock;

/// GitHub's issuer for Actions tokens.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// The settings of the verifier.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    pub issuer: String,
    pub audience: String,
    /// At most one fetch of the keys per this long (an unknown `kid` asks again after it).
    pub jwks_refresh: Duration,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            issuer: GITHUB_ISSUER.into(),
            audience: "shipgate".into(),
            jwks_refresh: Duration::from_secs(60),
            leeway: Duration::from_secs(60),
        }
    }
}

/// The claims of an Actions token the gate reads.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ActionsClaims {
    pub iss: String,
    pub repository: String,
    pub repository_id: String,
    pub sha: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The job's environment (none: the job names no environment).
    #[serde(default)]
    pub environment: Option<String>,
    /// `push`, `workflow_dispatch`, `pull_request`, …
    pub event_name: String,
    pub run_id: String,
    /// Which attempt of the run (a re-run is a new attempt).
    #[serde(default)]
    pub run_attempt: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub workflow_ref: Option<String>,
    pub iat: i64,
}

/// Why a token was refused (said in the 401).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OidcError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's algorithm {0} is not RS256")]
    Algorithm(String),
    #[error("the token names no key id")]
    NoKeyId,
    #[error("the token is signed with a key the issuer does not publish ({0})")]
    UnknownKey(String),
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the token was issued in the future")]
    IssuedInTheFuture,
    #[error("the issuer's keys cannot be read: {0}")]
    Issuer(String),
}

impl OidcError {
    /// The issuer could not be reached: not the caller's fault (503, try again).
    pub fn unavailable(&self) -> bool {
        matches!(self, OidcError::Issuer(_))
    }
}

pub struct OidcVerifier {
    cfg: OidcConfig,
    http: Octocrab,
    clock: Clock,
    /// The keys and when they were fetched (Unix ms).
    keys: Mutex<Option<(JwkSet, i64)>>,
    /// When the keys were last asked for, successfully or not (Unix ms): an unknown key, or an
    /// issuer that fails, is asked again only after `jwks_refresh`.
    asked_at: Mutex<Option<i64>>,
    /// Serializes fetches of the keys.
    fetching: tokio::sync::Mutex<()>,
}

impl OidcVerifier {
    pub fn new(cfg: OidcConfig, clock: Clock) -> Result<OidcVerifier, String> {
        let http = Octocrab::builder()
            .set_connect_timeout(Some(Duration::from_secs(5)))
            .set_read_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(OidcVerifier {
            cfg,
            http,
            clock,
            keys: Mutex::new(None),
            asked_at: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    pub fn audience(&self) -> &str {
        &self.cfg.audience
    }

    /// Verifies a token and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<ActionsClaims, OidcError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            // An algorithm the library does not even name (`none`, `HS256` spelled oddly, …).
            let alg = alg_of(token);
            if alg != "?" && alg != "RS256" { OidcError::Algorithm(alg) } else { OidcError::Malformed(e.to_string()) }
        })?;
        if header.alg != Algorithm::RS256 {
            return Err(OidcError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(OidcError::NoKeyId)?;
        let key = self.key(&kid).await?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        v.set_audience(&[self.cfg.audience.as_str()]);
        v.leeway = self.cfg.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud", "iat"]);
        let data =
            jsonwebtoken::decode::<ActionsClaims>(token, &key, &v).map_err(|e| OidcError::Invalid(e.to_string()))?;
        let now_s = self.clock.now_ms() / 1000;
        if data.claims.iat > now_s + self.cfg.leeway.as_secs() as i64 {
            return Err(OidcError::IssuedInTheFuture);
        }
        Ok(data.claims)
    }

    /// The issuer's key `kid`: from the cache, or fetched (at most once per `jwks_refresh`).
    async fn key(&self, kid: &str) -> Result<DecodingKey, OidcError> {
        let cached = |keys: &Mutex<Option<(JwkSet, i64)>>| {
            keys.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|(set, _)| set.find(kid).cloned())
        };
        if let Some(jwk) = cached(&self.keys) {
            return DecodingKey::from_jwk(&jwk).map_err(|e| OidcError::Issuer(e.to_string()));
        }
        let _one = self.fetching.lock().await;
        if let Some(jwk) = cached(&self.keys) {
            return DecodingKey::from_jwk(&jwk).map_err(|e| OidcError::Issuer(e.to_string()));
        }
        let asked_at = *self.asked_at.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_ms();
        if asked_at.is_some_and(|at| now - at < self.cfg.jwks_refresh.as_millis() as i64) {
            let have_keys = self.keys.lock().unwrap_or_else(|p| p.into_inner()).is_some();
            return Err(if have_keys {
                OidcError::UnknownKey(kid.to_string())
            } else {
                OidcError::Issuer("the issuer failed a moment ago; not asked again yet".into())
            });
        }
        *self.asked_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        let set = self.fetch_keys().await?;
        let jwk = set.find(kid).cloned();
        *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = Some((set, now));
        let jwk = jwk.ok_or_else(|| OidcError::UnknownKey(kid.to_string()))?;
        DecodingKey::from_jwk(&jwk).map_err(|e| OidcError::Issuer(e.to_string()))
    }

    async fn fetch_keys(&self) -> Result<JwkSet, OidcError> {
        let discovery = format!("{}/.well-known/openid-configuration", self.cfg.issuer.trim_end_matches('/'));
        let doc = self.get_json(&discovery).await?;
        if doc["issuer"].as_str().map(|i| i.trim_end_matches('/')) != Some(self.cfg.issuer.trim_end_matches('/')) {
            return Err(OidcError::Issuer(format!("{discovery} names another issuer")));
        }
        let jwks_uri =
            doc["jwks_uri"].as_str().ok_or_else(|| OidcError::Issuer(format!("{discovery} has no jwks_uri")))?;
        let keys = self.get_json(jwks_uri).await?;
        serde_json::from_value(keys).map_err(|e| OidcError::Issuer(format!("{jwks_uri}: {e}")))
    }

    async fn get_json(&self, url: &str) -> Result<Value, OidcError> {
        use http_body_util::BodyExt;
        let err = |e: String| OidcError::Issuer(format!("{url}: {e}"));
        let builder = http::Request::builder()
            .method(http::Method::GET)
            .uri(url)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, concat!("shipgate/", env!("CARGO_PKG_VERSION")));
        let req = self.http.build_request::<()>(builder, None).map_err(|e| err(e.to_string()))?;
        let resp = self.http.execute(req).await.map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(|e| err(e.to_string()))?.to_bytes();
        if !status.is_success() {
            return Err(err(format!("HTTP {status}")));
        }
        serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))
    }
}

/// The `alg` a token's header claims, for the refusal (when the library does not know it).
fn alg_of(token: &str) -> String {
    use base64::Engine;
    token
        .split('.')
        .next()
        .and_then(|h| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["alg"].as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

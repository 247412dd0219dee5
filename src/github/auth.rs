//! GitHub App authentication: the App's JWT (RS256), and installation tokens cached per
//! installation and renewed well before they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::config::{GithubCredentials, PrivateKeySource, Secret};

/// Renew an installation token when less than this is left (tokens last an hour).
pub const TOKEN_RENEW_MARGIN_MS: i64 = 10 * 60 * 1000;
/// The JWT is backdated by 60 s for clock drift, and lasts 9 minutes (GitHub allows at most 10).
const JWT_BACKDATE_S: i64 = 60;
const JWT_LIFETIME_S: i64 = 9 * 60;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{var}: {msg}")]
    Key { var: &'static str, msg: String },
    #[error("signing the App's JWT failed: {0}")]
    Sign(String),
}

#[derive(Serialize)]
struct Claims<'a> {
    iat: i64,
    exp: i64,
    iss: &'a str,
}

/// The App's identity: its id (or client id) and private key.
pub struct AppAuth {
    app_id: String,
    key: EncodingKey,
    jwt: Mutex<Option<(String, i64)>>,
}

impl std::fmt::Debug for AppAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppAuth").field("app_id", &self.app_id).field("key", &"[redacted]").finish()
    }
}

impl AppAuth {
    /// Loads the private key. Errors name the variable and never include the key.
    pub fn from_credentials(c: &GithubCredentials) -> Result<AppAuth, AuthError> {
        let (var, pem): (&'static str, Secret) = match &c.private_key {
            PrivateKeySource::Pem(p) => ("GITHUB_PRIVATE_KEY", p.clone()),
            PrivateKeySource::Path(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| AuthError::Key {
                    var: "GITHUB_PRIVATE_KEY_PATH",
                    msg: format!("cannot read {}: {e}", path.display()),
                })?;
                ("GITHUB_PRIVATE_KEY_PATH", Secret::new(text))
            }
        };
        let key = EncodingKey::from_rsa_pem(pem.expose().as_bytes()).map_err(|e| AuthError::Key {
            var,
            msg: format!(
                "not an RSA private key in PEM form ({}); use the .pem file GitHub generated for the App",
                e.kind_name()
            ),
        })?;
        Ok(AppAuth { app_id: c.app_id.clone(), key, jwt: Mutex::new(None) })
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The App's JWT at `now_ms`, reused while it has more than a minute left.
    pub fn jwt(&self, now_ms: i64) -> Result<String, AuthError> {
        let now = now_ms / 1000;
        let mut cached = self.jwt.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, exp)) = cached.as_ref()
            && *exp - 60 > now
        {
            return Ok(token.clone());
        }
        let claims = Claims { iat: now - JWT_BACKDATE_S, exp: now + JWT_LIFETIME_S, iss: &self.app_id };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| AuthError::Sign(e.kind_name()))?;
        *cached = Some((token.clone(), now + JWT_LIFETIME_S));
        Ok(token)
    }
}

trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for jsonwebtoken::errors::Error {
    /// The error's kind only: jsonwebtoken's messages never carry key material, but keep it terse.
    fn kind_name(&self) -> String {
        format!("{:?}", self.kind()).chars().take(80).collect()
    }
}

/// An installation token and when it expires (Unix ms).
#[derive(Clone)]
pub struct InstallationToken {
    pub token: Secret,
    pub expires_at: i64,
}

/// Installation tokens by installation, each behind its own lock so that concurrent callers
/// wait for one renewal instead of each asking GitHub.
#[derive(Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<Option<InstallationToken>>>>>,
}

impl TokenCache {
    pub fn slot(&self, installation: i64) -> Arc<tokio::sync::Mutex<Option<InstallationToken>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).entry(installation).or_default().clone()
    }

    /// Forgets a token GitHub refused (revoked, or the installation changed).
    pub async fn invalidate(&self, installation: i64) {
        *self.slot(installation).lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_key_names_the_variable_and_hides_the_key() {
        let creds = GithubCredentials {
            app_id: "1".into(),
            private_key: PrivateKeySource::Pem(Secret::new(
                "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----",
            )),
        };
        let e = AppAuth::from_credentials(&creds).unwrap_err().to_string();
        assert!(e.starts_with("GITHUB_PRIVATE_KEY:"), "{e}");
        assert!(!e.contains("c2VjcmV0"), "{e}");
        let creds =
            GithubCredentials { app_id: "1".into(), private_key: PrivateKeySource::Path("/nonexistent.pem".into()) };
        let e = AppAuth::from_credentials(&creds).unwrap_err().to_string();
        assert!(e.starts_with("GITHUB_PRIVATE_KEY_PATH:"), "{e}");
    }
}

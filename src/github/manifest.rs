//! GitHub's App manifest flow (`/setup`): the manifest built from `app-manifest.yml`, and the
//! exchange of the code GitHub hands back for the App's credentials
//! (`POST /app-manifests/{code}/conversions`, which takes no authentication).
//! <https://docs.github.com/apps/sharing-github-apps/registering-a-github-app-from-a-manifest>

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use http_body_util::BodyExt;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use super::client::GhError;
use crate::config::Secret;

/// The manifest file, compiled in: the App registers with exactly what it declares.
pub const MANIFEST_YAML: &str = include_str!("../../app-manifest.yml");

/// GitHub's App manifest, as `app-manifest.yml` holds it. Unknown keys are refused, so nothing in
/// the file is silently left out of what is posted to GitHub.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub public: bool,
    pub hook_attributes: HookAttributes,
    pub redirect_url: String,
    pub default_permissions: BTreeMap<String, String>,
    pub default_events: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HookAttributes {
    pub url: String,
    pub active: bool,
}

impl Manifest {
    /// The manifest file as it is.
    pub fn from_file() -> Result<Manifest, String> {
        serde_saphyr::from_str(MANIFEST_YAML).map_err(|e| format!("app-manifest.yml: {e}"))
    }

    /// The manifest for an App reached at `public_url` (no trailing `/`): webhooks to
    /// `{public_url}/webhook`, GitHub's redirect back to `{public_url}/setup/callback`; the rest
    /// as in the file.
    pub fn for_public_url(public_url: &str) -> Result<Manifest, String> {
        let mut m = Manifest::from_file()?;
        let base = public_url.trim_end_matches('/');
        m.hook_attributes.url = format!("{base}/webhook");
        m.redirect_url = format!("{base}/setup/callback");
        Ok(m)
    }

    /// The JSON GitHub's `settings/apps/new` page takes in its `manifest` form field.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a manifest serialises")
    }
}

/// What the conversion answers, the parts the App keeps.
pub struct Conversion {
    pub id: i64,
    pub slug: String,
    pub html_url: String,
    pub owner: String,
    pub pem: Secret,
    /// None when GitHub made no secret (an App without a webhook URL: never ours).
    pub webhook_secret: Option<Secret>,
}

impl std::fmt::Debug for Conversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversion")
            .field("id", &self.id)
            .field("slug", &self.slug)
            .field("html_url", &self.html_url)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RawConversion {
    id: i64,
    slug: String,
    html_url: String,
    owner: RawOwner,
    pem: String,
    webhook_secret: Option<String>,
}

#[derive(Deserialize)]
struct RawOwner {
    login: String,
}

/// The route as metrics and errors name it (never the one-time code).
const ROUTE: &str = "/app-manifests/{code}/conversions";

/// Exchanges GitHub's one-time `code` for the App's id, private key and webhook secret, against
/// `api_url` (`GITHUB_API_URL`). One try: the code is single-use, so a failure is shown to the
/// person, who may try again.
pub async fn convert(api_url: &str, code: &str, timeout: Duration) -> Result<Conversion, GhError> {
    let method = Method::POST;
    let transport =
        |message: String| GhError::Transport { method: method.to_string(), route: ROUTE.to_string(), message };
    // A bare client, not octocrab's: its tracing layer writes the full URL (the code in it: the
    // credential of this one call) into the logs at debug level.
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| transport(format!("TLS set-up failed: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let path = format!("/app-manifests/{}/conversions", utf8_percent_encode(code, NON_ALPHANUMERIC));
    let req = http::Request::builder()
        .method(method.clone())
        .uri(format!("{}{path}", api_url.trim_end_matches('/')))
        .header(http::header::ACCEPT, "application/vnd.github+json")
        .header(http::header::USER_AGENT, concat!("shipgate/", env!("CARGO_PKG_VERSION")))
        .header("x-github-api-version", "2022-11-28")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .map_err(|e| transport(e.to_string()))?;
    let sent = async {
        let resp = client.request(req).await.map_err(|e| transport(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        // An App's answer is a few KiB: more is not GitHub's.
        let bytes = http_body_util::Limited::new(body, 1 << 20)
            .collect()
            .await
            .map_err(|e| transport(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok::<_, GhError>((parts.status.as_u16(), bytes))
    };
    let (status, body) = tokio::time::timeout(timeout, sent).await.map_err(|_| transport("timed out".into()))??;
    metrics::counter!("shipgate_github_calls_total", "route" => ROUTE, "method" => "POST", "status" => status.to_string())
        .increment(1);
    if status != 201 {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        return Err(GhError::Status { status, method: method.to_string(), route: ROUTE.into(), message });
    }
    let raw: RawConversion =
        serde_json::from_slice(&body).map_err(|e| GhError::Decode { route: ROUTE.into(), message: e.to_string() })?;
    Ok(Conversion {
        id: raw.id,
        slug: raw.slug,
        html_url: raw.html_url,
        owner: raw.owner.login,
        pem: Secret::new(raw.pem),
        webhook_secret: raw.webhook_secret.filter(|s| !s.is_empty()).map(Secret::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The file read as plain YAML, with no struct in between.
    fn file_as_json() -> Value {
        serde_saphyr::from_str(MANIFEST_YAML).expect("app-manifest.yml is YAML")
    }

    #[test]
    fn permissions_and_events_are_the_files() {
        let m = Manifest::for_public_url("https://shipgate.example.com/").expect("manifest");
        let posted: Value = serde_json::from_str(&m.to_json()).expect("JSON");
        let file = file_as_json();
        assert_eq!(posted["default_permissions"], file["default_permissions"]);
        assert_eq!(posted["default_events"], file["default_events"]);
        assert_eq!(posted["name"], file["name"]);
        assert_eq!(posted["public"], Value::Bool(false), "the App is installable only on its owner's account");
        assert_eq!(posted["hook_attributes"]["active"], Value::Bool(true));
        // Nothing in the file is dropped, and nothing is added but what the URLs change.
        let mut expected = file.clone();
        expected["hook_attributes"]["url"] = "https://shipgate.example.com/webhook".into();
        expected["redirect_url"] = "https://shipgate.example.com/setup/callback".into();
        assert_eq!(posted, expected);
        // What the App needs, and not more: a sample the code depends on.
        assert_eq!(posted["default_permissions"]["checks"], "write");
        assert_eq!(posted["default_permissions"]["contents"], "read");
        assert!(posted["default_events"].as_array().expect("events").iter().any(|e| e == "deployment_protection_rule"));
        assert!(posted["default_permissions"].get("administration").is_none());
    }

    #[test]
    fn urls_come_from_the_public_url() {
        let m = Manifest::for_public_url("http://127.0.0.1:8080").expect("manifest");
        assert_eq!(m.hook_attributes.url, "http://127.0.0.1:8080/webhook");
        assert_eq!(m.redirect_url, "http://127.0.0.1:8080/setup/callback");
        assert_eq!(m.url, file_as_json()["url"], "the homepage stays the file's");
        let m = Manifest::for_public_url("https://ops.example.com/shipgate").expect("manifest");
        assert_eq!(m.hook_attributes.url, "https://ops.example.com/shipgate/webhook");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let text = format!("{MANIFEST_YAML}\nsetup_url: https://x\n");
        assert!(serde_saphyr::from_str::<Manifest>(&text).is_err());
    }

    #[test]
    fn a_conversion_prints_no_secret() {
        let c = Conversion {
            id: 1,
            slug: "s".into(),
            html_url: "https://github.com/apps/s".into(),
            owner: "o".into(),
            pem: Secret::new("PEM-TEXT"),
            webhook_secret: Some(Secret::new("HOOK-SECRET")),
        };
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("PEM-TEXT") && !dbg.contains("HOOK-SECRET"), "{dbg}");
    }
}

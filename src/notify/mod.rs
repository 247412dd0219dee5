//! Sends notifications (SPEC §5): the relay hands each [`Action::Notify`] here. Slack through
//! incoming webhooks (an HTTPS POST of the Block Kit message), e-mail through SMTP (lettre:
//! STARTTLS when the server offers it, unless the URL says otherwise).
//!
//! The outbox row names the channel (`slack:acme/oncall`); its URL is looked up here, when sent,
//! from `SHIPGATE_SLACK_WEBHOOKS`, and never written to a log, an error or the database. An
//! address is written to only in a domain the operator allows the repository's account
//! (`SHIPGATE_MAIL_DOMAINS`), checked again here whatever the policy said.

use std::time::Duration;

use http_body_util::BodyExt;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use octocrab::Octocrab;

use crate::config::{NotifySettings, Secret};
use crate::domain::notify::{self, Channel, Directory, NoticeLink};
use crate::github::actions::{Action, ActionError};
use crate::github::client::GitHub;
use crate::github::facts;
use crate::store::{Db, objects, outbox};

/// How long a notice waits between looks at the issue it links to while that issue is being
/// created.
const LINK_WAIT_MS: i64 = 1000;

/// What a send did.
#[derive(Debug)]
pub struct Sent {
    /// For `actions list`: where it went (a channel, never a URL).
    pub outcome: String,
    /// Someone was really notified (a role without an address in an allowed domain is not).
    pub delivered: bool,
}

pub struct Notifier {
    settings: NotifySettings,
    directory: Directory,
    /// The web address issues are linked at (`https://github.com`, or a GHES host).
    web_url: String,
    http: Option<Octocrab>,
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Option<Mailbox>,
}

impl Notifier {
    /// Checks the settings (an SMTP URL that does not load stops the start, naming the variable
    /// but not the URL, which may hold a password).
    pub fn new(settings: NotifySettings, web_url: &str) -> anyhow::Result<Notifier> {
        let http = if settings.slack.is_empty() {
            None
        } else {
            Some(
                Octocrab::builder()
                    .set_connect_timeout(Some(Duration::from_secs(5)))
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .set_write_timeout(Some(Duration::from_secs(10)))
                    .build()
                    .map_err(|e| anyhow::anyhow!("no HTTP client for Slack: {e}"))?,
            )
        };
        let smtp = settings.smtp_url.as_ref().map(|u| smtp_transport(u, settings.smtp_ca.as_deref())).transpose()?;
        let from = match &settings.mail_from {
            Some(f) => Some(f.parse::<Mailbox>().map_err(|e| anyhow::anyhow!("SHIPGATE_MAIL_FROM: {e}"))?),
            None => None,
        };
        let directory = settings.directory();
        Ok(Notifier { settings, directory, web_url: web_url.trim_end_matches('/').to_string(), http, smtp, from })
    }

    /// What the App was given, as names.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Sends one notification. `installation` reads GitHub (a role's members and their public
    /// e-mail; the number of an issue being created).
    pub async fn send(
        &self,
        gh: &GitHub,
        db: &Db,
        installation: i64,
        action: &Action,
        now: i64,
    ) -> Result<Sent, ActionError> {
        let Action::Notify { repo, channel, text, slack, link, subject, .. } = action else {
            return Err(ActionError::Permanent("not a notification".into()));
        };
        // A policy names only its own account's channels: the row says which account, and it
        // must be the repository's (a forged or stale row cannot borrow another's channel).
        let account = match channel {
            Channel::Slack { account, .. } | Channel::Email { account, .. } | Channel::Role { account, .. } => account,
        };
        if !account.eq_ignore_ascii_case(notify::account_of(repo)) {
            return Err(ActionError::Permanent(format!("{channel} is not a channel of {repo}'s account")));
        }
        let url = self.link_url(db, installation, repo, link, now).await?;
        match channel {
            Channel::Slack { account, name } => {
                let body = slack.to_string().replace(notify::LINK, &url);
                self.slack(account, name, body, now).await?;
                Ok(Sent { outcome: format!("sent to {channel}"), delivered: true })
            }
            Channel::Email { account, to } => {
                if !self.directory.mail_allowed(account, to) {
                    return Err(ActionError::Permanent(format!(
                        "{to} is not in a mail domain SHIPGATE_MAIL_DOMAINS allows {account}: not sent"
                    )));
                }
                self.mail(std::slice::from_ref(to), subject, &text.replace(notify::LINK, &url)).await?;
                Ok(Sent { outcome: format!("sent to {channel}"), delivered: true })
            }
            Channel::Role { account, name, users, teams } => {
                let to = self.role_addresses(gh, installation, account, users, teams).await?;
                if to.is_empty() {
                    return Ok(Sent {
                        outcome: format!(
                            "not sent: no member of role {name} shows a public e-mail in a domain allowed for {account}"
                        ),
                        delivered: false,
                    });
                }
                self.mail(&to, subject, &text.replace(notify::LINK, &url)).await?;
                Ok(Sent { outcome: format!("sent to {channel} ({} addresses)", to.len()), delivered: true })
            }
        }
    }

    /// The link to the notice's issue: known, or the issue the App is creating (waited for while
    /// it is being created), else the notice's own page, else the repository's issues.
    async fn link_url(
        &self,
        db: &Db,
        installation: i64,
        repo: &str,
        link: &NoticeLink,
        now: i64,
    ) -> Result<String, ActionError> {
        let issue_url = |n: i64| format!("{}/{repo}/issues/{n}", self.web_url);
        if let Some(n) = link.issue {
            return Ok(issue_url(n));
        }
        if let Some(marker) = &link.marker {
            let key = format!("{repo}:{marker}");
            let number = || async {
                Ok::<_, ActionError>(objects::get(db, installation, "issue", &key).await?.filter(|n| *n > 0))
            };
            if let Some(n) = number().await? {
                return Ok(issue_url(n));
            }
            if outbox::subject_open(db, &format!("{installation}:{repo}:issue:{marker}")).await? {
                return Err(ActionError::Wait {
                    until: now + LINK_WAIT_MS,
                    why: "the issue it links to is being created".into(),
                });
            }
            // The creation may have ended between the two reads: the relay records the number
            // before it closes the creating action, so it is there now if it was made. (Without
            // this second read the notice linked the issue list:
            // tests/ci.rs::incident_notifications_link_back_to_the_issue, under load.)
            if let Some(n) = number().await? {
                return Ok(issue_url(n));
            }
        }
        Ok(link.url.clone().filter(|u| safe_url(u)).unwrap_or_else(|| format!("{}/{repo}/issues", self.web_url)))
    }

    async fn slack(&self, account: &str, name: &str, body: String, now: i64) -> Result<(), ActionError> {
        let key = (account.to_ascii_lowercase(), name.to_ascii_lowercase());
        let (Some(url), Some(http)) = (self.settings.slack.get(&key), self.http.as_ref()) else {
            return Err(ActionError::Permanent(format!(
                "Slack channel {account}/{name} is not configured (SHIPGATE_SLACK_WEBHOOKS)"
            )));
        };
        // Errors are said without the URL: it is the channel's secret.
        let hide = |e: String| e.replace(url.expose(), "[webhook URL]");
        let builder = http::Request::builder()
            .method(http::Method::POST)
            .uri(url.expose())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, concat!("shipgate/", env!("CARGO_PKG_VERSION")));
        let req = http
            .build_request(builder, Some(&serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()))
            .map_err(|e| ActionError::Permanent(hide(format!("the Slack request cannot be made: {e}"))))?;
        let resp = http
            .execute(req)
            .await
            .map_err(|e| ActionError::Retry(hide(format!("cannot reach Slack ({account}/{name}): {e}"))))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok());
        let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let said: String = String::from_utf8_lossy(&bytes).chars().filter(|c| !c.is_control()).take(120).collect();
        let said = hide(said);
        match status.as_u16() {
            200..=299 => Ok(()),
            429 => Err(ActionError::RateLimited(now + retry_after.unwrap_or(30).clamp(1, 3600) * 1000)),
            s @ 500..=599 => Err(ActionError::Retry(format!("Slack answered {s} for {account}/{name}: {said}"))),
            // 400 invalid_payload, 403 action_prohibited, 404 no_service / channel_not_found,
            // 410 channel_is_archived: the same every time.
            s => Err(ActionError::Permanent(format!("Slack answered {s} for {account}/{name}: {said}"))),
        }
    }

    async fn mail(&self, to: &[String], subject: &str, text: &str) -> Result<(), ActionError> {
        let (Some(smtp), Some(from)) = (self.smtp.as_ref(), self.from.as_ref()) else {
            return Err(ActionError::Permanent(
                "no e-mail is sent: SHIPGATE_SMTP_URL and SHIPGATE_MAIL_FROM are not set".into(),
            ));
        };
        let mut b = Message::builder().from(from.clone()).subject(subject).header(ContentType::TEXT_PLAIN);
        for address in to {
            let mailbox = address
                .parse::<Mailbox>()
                .map_err(|e| ActionError::Permanent(format!("{address} is not an address: {e}")))?;
            b = b.to(mailbox);
        }
        let message = b.body(text.to_string()).map_err(|e| ActionError::Permanent(format!("the e-mail: {e}")))?;
        match smtp.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(ActionError::Permanent(format!("the SMTP server refused: {e}"))),
            Err(e) => Err(ActionError::Retry(format!("e-mail not sent: {e}"))),
        }
    }

    /// The public e-mail of a role's users and team members, in the account's mail domains.
    async fn role_addresses(
        &self,
        gh: &GitHub,
        installation: i64,
        account: &str,
        users: &[String],
        teams: &[String],
    ) -> Result<Vec<String>, ActionError> {
        let mut logins: Vec<String> = users.iter().map(|u| u.to_ascii_lowercase()).collect();
        for team in teams {
            let Some((org, slug)) = team.split_once('/') else { continue };
            logins.extend(
                facts::team_member_logins(gh, installation, org, slug)
                    .await?
                    .into_iter()
                    .map(|l| l.to_ascii_lowercase()),
            );
        }
        logins.sort();
        logins.dedup();
        let mut out = Vec::new();
        for login in logins {
            if let Some(address) = facts::public_email(gh, installation, &login).await?
                && self.directory.mail_allowed(account, &address)
                && !out.contains(&address)
            {
                out.push(address);
            }
        }
        Ok(out)
    }
}

/// A link from outside (a run or alert page) that may stand in a text and in Slack's `<url|…>`:
/// `https://`, nothing that would end the link or the JSON string.
fn safe_url(u: &str) -> bool {
    u.starts_with("https://")
        && u.len() <= 500
        && u.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '|' | '"' | '\\' | '`'))
}

/// The SMTP transport of `SHIPGATE_SMTP_URL`: `smtp://` opportunistic STARTTLS (TLS when the
/// server offers it) unless `?tls=required` or `?tls=none`; `smtps://` TLS from the start. With
/// `ca` (a PEM file), the server's certificate may also chain to those CAs.
fn smtp_transport(url: &Secret, ca: Option<&std::path::Path>) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let raw = url.expose();
    let (base, query) = raw.split_once('?').unwrap_or((raw, ""));
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    let tls = pairs.iter().find_map(|p| p.strip_prefix("tls=")).map(str::to_string);
    let effective = match (raw.starts_with("smtp://"), tls.as_deref()) {
        (true, None) => {
            pairs.push("tls=opportunistic");
            format!("{base}?{}", pairs.join("&"))
        }
        (true, Some("none")) => {
            pairs.retain(|p| !p.starts_with("tls="));
            if pairs.is_empty() { base.to_string() } else { format!("{base}?{}", pairs.join("&")) }
        }
        (true, Some("required" | "opportunistic")) | (false, _) => raw.to_string(),
        (true, Some(other)) => {
            anyhow::bail!("SHIPGATE_SMTP_URL: `tls={other}` is not one of required, opportunistic, none")
        }
    };
    // lettre's messages quote the URL: say only what is wrong.
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&effective)
        .map_err(|e| anyhow::anyhow!("SHIPGATE_SMTP_URL does not load: {}", e.to_string().replace(raw, "[url]")))?;
    if let Some(path) = ca {
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("SHIPGATE_SMTP_CA_FILE {}: {e}", path.display()))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("SHIPGATE_SMTP_CA_FILE {}: not a PEM certificate: {e}", path.display()))?;
        let params = TlsParameters::builder(smtp_host(raw).to_string())
            .add_root_certificate(cert)
            .build_rustls()
            .map_err(|e| anyhow::anyhow!("SHIPGATE_SMTP_CA_FILE: {e}"))?;
        let mode = effective.split_once("tls=").map(|(_, m)| m.split('&').next().unwrap_or_default());
        builder = match (raw.starts_with("smtps://"), mode) {
            (true, _) => builder.tls(Tls::Wrapper(params)),
            (false, Some("required")) => builder.tls(Tls::Required(params)),
            (false, Some("opportunistic")) => builder.tls(Tls::Opportunistic(params)),
            (false, _) => builder, // tls=none: no TLS, no CA to use
        };
    }
    Ok(builder.timeout(Some(Duration::from_secs(20))).build())
}

/// The host of an `smtp://[user:password@]host[:port][/…][?…]` URL (the name its certificate must
/// carry).
fn smtp_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_https_links_from_outside() {
        assert!(safe_url("https://github.com/acme/app/security/dependabot/3"));
        for bad in ["http://x.org", "https://x.org/a|b", "https://x.org/<!here>", "https://x.org/\"", "javascript:x"] {
            assert!(!safe_url(bad), "{bad}");
        }
    }

    #[test]
    fn smtp_urls_default_to_starttls_when_offered() {
        for ok in ["smtp://h:25", "smtp://u:p%40ss@h:587?tls=required", "smtp://h?tls=none", "smtps://h"] {
            assert!(smtp_transport(&Secret::new(ok), None).is_ok(), "{ok}");
        }
        let e = smtp_transport(&Secret::new("smtp://u:hunter2@h?tls=maybe"), None).err().unwrap().to_string();
        assert!(e.contains("tls=maybe") && !e.contains("hunter2"), "{e}");
        assert_eq!(smtp_host("smtp://u:p@ss@mail.example.com:587/x?tls=required"), "mail.example.com");
        assert_eq!(smtp_host("smtps://[::1]:465"), "::1");
        assert_eq!(smtp_host("smtp://127.0.0.1"), "127.0.0.1");
    }
}

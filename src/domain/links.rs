//! Signed links to the details pages (SPEC.md §6): an HMAC over the installation, the repository,
//! the page and the expiry, with a key derived from `SHIPGATE_AUDIT_KEY`. Whoever holds a link may
//! read that one page until it expires; a changed field, a late link, or a link whose page now
//! belongs to another installation shows nothing.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a link opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Page {
    /// A deployment request: its issue number.
    Request { issue: i64 },
    /// An incident: its issue's marker (the incident's id within the repository).
    Incident { marker: String },
}

impl Page {
    fn kind(&self) -> &'static str {
        match self {
            Page::Request { .. } => "request",
            Page::Incident { .. } => "incident",
        }
    }
}

/// One link's identity and expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub installation: i64,
    pub repository_id: i64,
    pub page: Page,
    /// Unix seconds.
    pub expires: i64,
}

/// Why a link is refused (the page says only "this link is not valid").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    BadSignature,
    Expired,
}

/// The key links are signed with (32 bytes, derived from the audit key).
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(…)")
    }
}

impl LinkKey {
    pub fn new(bytes: [u8; 32]) -> LinkKey {
        LinkKey(bytes)
    }

    fn mac(&self, l: &Link) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        // A JSON array: unambiguous whatever a marker holds.
        let key = match &l.page {
            Page::Request { issue } => issue.to_string(),
            Page::Incident { marker } => marker.clone(),
        };
        let fields =
            serde_json::json!(["shipgate-link-v1", l.page.kind(), l.installation, l.repository_id, key, l.expires]);
        m.update(fields.to_string().as_bytes());
        m
    }

    /// The signature, lower-case hex.
    pub fn sign(&self, l: &Link) -> String {
        hex::encode(self.mac(l).finalize().into_bytes())
    }

    /// Checks `sig` (in constant time) and then the expiry against `now_s`.
    pub fn verify(&self, l: &Link, sig: &str, now_s: i64) -> Result<(), Refused> {
        let sig = hex::decode(sig).map_err(|_| Refused::BadSignature)?;
        self.mac(l).verify_slice(&sig).map_err(|_| Refused::BadSignature)?;
        if now_s >= l.expires {
            return Err(Refused::Expired);
        }
        Ok(())
    }

    /// The page's path and query: `/requests/{installation}/{repository}/{issue}?expires=…&sig=…`
    /// or `/incidents/{installation}/{repository}/{marker}?…`.
    pub fn path(&self, l: &Link) -> String {
        let sig = self.sign(l);
        let page = match &l.page {
            Page::Request { issue } => format!("requests/{}/{}/{issue}", l.installation, l.repository_id),
            Page::Incident { marker } => {
                format!("incidents/{}/{}/{}", l.installation, l.repository_id, encode_segment(marker))
            }
        };
        format!("/{page}?expires={}&sig={sig}", l.expires)
    }
}

/// Mints links for one App: its key, its public address and how long a link lives.
#[derive(Clone, Debug)]
pub struct Minter {
    pub key: LinkKey,
    /// `SHIPGATE_PUBLIC_URL`, without a trailing `/`.
    pub base: String,
    pub ttl_s: i64,
}

impl Minter {
    /// The page's full address and its expiry (Unix seconds), valid from `now_ms`.
    pub fn url(&self, installation: i64, repository_id: i64, page: Page, now_ms: i64) -> (String, i64) {
        let expires = now_ms.div_euclid(1000) + self.ttl_s;
        let l = Link { installation, repository_id, page, expires };
        (format!("{}{}", self.base, self.key.path(&l)), expires)
    }

    /// `text` with its [`DETAILS_LINE`] written as a link to `page` (or, without one, dropped).
    pub fn fill(&self, text: &str, link: Option<(i64, i64, Page)>, now_ms: i64) -> String {
        fill_details(
            text,
            link.map(|(installation, repo, page)| {
                let line = match &page {
                    Page::Request { .. } => details_line as fn(&str, &str) -> String,
                    Page::Incident { .. } => incident_details_line,
                };
                let (url, expires) = self.url(installation, repo, page, now_ms);
                line(&url, &super::ci::format_time(expires * 1000))
            }),
        )
    }
}

/// `text` with its first [`DETAILS_LINE`] (a line of its own) replaced by `line`, and every other
/// one (or all, without a line) removed.
pub fn fill_details(text: &str, line: Option<String>) -> String {
    if !text.contains(DETAILS_LINE) {
        return text.to_string();
    }
    let mut line = line;
    let mut out: Vec<String> = Vec::new();
    for l in text.split('\n') {
        if l.trim() == DETAILS_LINE {
            if let Some(x) = line.take() {
                out.push(x);
            }
            continue;
        }
        out.push(l.to_string());
    }
    out.join("\n")
}

/// A path segment: everything but unreserved characters percent-encoded.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Stands, on a line of its own, in a request's sticky comment and an incident's issue: the relay
/// writes the signed link there when it sends the text (a fresh link on every update), or removes
/// the line when the App has no `SHIPGATE_PUBLIC_URL`. The relay only ever links the page of the
/// very request or incident the text is about, whatever the line claims.
pub const DETAILS_LINE: &str = "<!-- shipgate:details-link -->";

/// Stands for the `details_url` of a request's check run (replaced, or dropped, likewise).
pub const DETAILS_URL: &str = "shipgate:details-link";

/// The line the relay writes for a link.
pub fn details_line(url: &str, expires_text: &str) -> String {
    format!(
        "🔎 [Why the gate is open or closed, approvals and audit entries]({url}) <sub>(link valid until {expires_text})</sub>"
    )
}

/// The line for an incident's issue.
pub fn incident_details_line(url: &str, expires_text: &str) -> String {
    format!("🔎 [Incident details and audit entries]({url}) <sub>(link valid until {expires_text})</sub>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> LinkKey {
        LinkKey::new([b; 32])
    }

    fn link() -> Link {
        Link { installation: 7, repository_id: 42, page: Page::Request { issue: 3 }, expires: 2_000 }
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let k = key(1);
        let sig = k.sign(&link());
        assert_eq!(k.verify(&link(), &sig, 1_999), Ok(()));
        assert_eq!(k.verify(&link(), &sig, 2_000), Err(Refused::Expired));
        assert_eq!(k.verify(&link(), &sig, 9_999), Err(Refused::Expired));
    }

    #[test]
    fn every_tampered_field_is_refused() {
        let k = key(1);
        let sig = k.sign(&link());
        let tampered = [
            Link { installation: 8, ..link() },
            Link { repository_id: 43, ..link() },
            Link { page: Page::Request { issue: 4 }, ..link() },
            Link { page: Page::Incident { marker: "3".into() }, ..link() },
            // A later expiry is a different link: nobody extends their own.
            Link { expires: 3_000, ..link() },
        ];
        for t in tampered {
            assert_eq!(k.verify(&t, &sig, 1_000), Err(Refused::BadSignature), "{t:?}");
        }
        // Another key (another App, or a rotated audit key), a changed or truncated signature.
        assert_eq!(key(2).verify(&link(), &sig, 1_000), Err(Refused::BadSignature));
        let mut flipped = sig.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        assert_eq!(k.verify(&link(), std::str::from_utf8(&flipped).unwrap(), 1_000), Err(Refused::BadSignature));
        assert_eq!(k.verify(&link(), &sig[..32], 1_000), Err(Refused::BadSignature));
        assert_eq!(k.verify(&link(), "", 1_000), Err(Refused::BadSignature));
        assert_eq!(k.verify(&link(), "zz", 1_000), Err(Refused::BadSignature));
    }

    #[test]
    fn the_placeholder_becomes_one_link_or_nothing() {
        let text = format!("a\n{DETAILS_LINE}\nb\n  {DETAILS_LINE}\nc {DETAILS_LINE} inline");
        assert_eq!(fill_details(&text, Some("LINK".into())), format!("a\nLINK\nb\nc {DETAILS_LINE} inline"));
        assert_eq!(fill_details(&text, None), format!("a\nb\nc {DETAILS_LINE} inline"));
        assert_eq!(fill_details("plain", Some("LINK".into())), "plain");
        let m = Minter { key: key(1), base: "https://sg.example".into(), ttl_s: 30 * 86400 };
        let (url, expires) = m.url(7, 42, Page::Request { issue: 3 }, 1_000_500);
        assert_eq!(expires, 1_000 + 30 * 86400);
        assert!(url.starts_with("https://sg.example/requests/7/42/3?expires=2593000&sig="), "{url}");
    }

    #[test]
    fn markers_cannot_be_confused_by_what_they_hold() {
        let k = key(1);
        let a = Link { page: Page::Incident { marker: "ci:1\",\"x".into() }, ..link() };
        let b = Link { page: Page::Incident { marker: "ci:1".into() }, ..link() };
        assert_ne!(k.sign(&a), k.sign(&b));
        assert!(k.path(&a).starts_with("/incidents/7/42/ci%3A1%22%2C%22x?expires=2000&sig="));
        assert_eq!(k.path(&link()), format!("/requests/7/42/3?expires=2000&sig={}", k.sign(&link())));
    }
}

//! What an evidence pack (`shipgate audit evidence`, issue 19) is made of, read from the
//! database: the request, its approvals and deployments as the tables hold them, and the part of
//! the audit log that records them. `crate::evidence` turns it into the bundle and checks one.
//!
//! The log part is a *segment* of the installation's chain: every entry from the request's first
//! to its last (or to the first anchor on GitHub after it), so that the links between them can
//! be followed offline. Entries of the same repository are given whole; entries of other
//! requests and repositories in between are given only as their position, links and key (their
//! content stays private). Before the pack is made every entry given is checked under the audit
//! key: the App signs only a pack whose entries it found intact, as it anchors only a head whose
//! seal checks out.

use std::collections::BTreeMap;

use super::anchor::{Anchor, PublicKey};
use super::audit::{self, AuditKeys, AuditRow};
use super::deploys::{self, DeploymentRow};
use super::requests::{self, ApprovalRow, RequestRow};
use super::{Db, Result};

/// What the pack is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A request, by its issue number.
    Request(i64),
    /// A deployment, by GitHub's id: the request it belongs to, with it marked.
    Deployment(i64),
}

/// Why no pack is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// What was asked for cannot be answered (no such request, no key): exit 2.
    Usage(String),
    /// The log or the tables do not check out: exit 1.
    Invalid(String),
}

/// Everything read for one pack.
#[derive(Clone, Debug)]
pub struct Gathered {
    pub installation_id: i64,
    pub repository_id: i64,
    pub repository: String,
    pub issue: i64,
    pub marked_deployment: Option<i64>,
    /// The request's row as the App holds it now (None: the log knows a request the table lost).
    pub request: Option<RequestRow>,
    pub approvals: Vec<ApprovalRow>,
    pub deployments: Vec<DeploymentRow>,
    /// The chain from the request's first entry on, contiguous.
    pub segment: Vec<AuditRow>,
    /// Entries before the segment that it relies on: the repository's last `policy.changed`
    /// before the request began (the policy in force then).
    pub context: Vec<AuditRow>,
    /// Policy texts by blob SHA (`policy_texts`), for every blob the entries name.
    pub policy_texts: BTreeMap<String, String>,
    /// Anchors from GitHub (`--anchors`) on the segment, signed by the App's key.
    pub anchors: Vec<Anchor>,
    /// Anchors found and left out, and why.
    pub anchor_notes: Vec<String>,
    /// Whether anchors were given at all.
    pub anchors_given: bool,
    /// The audit key the entries' seals were checked under (None: an unkeyed log).
    pub checked_under: Option<String>,
}

impl Gathered {
    /// Whether an entry is given whole: this request's, or its repository's own (no issue).
    pub fn is_own(&self, r: &AuditRow) -> bool {
        r.repository_id == Some(self.repository_id) && (r.issue == Some(self.issue) || r.issue.is_none())
    }
}

/// Reads what a pack of `subject` in repository `repo` (owner/name) needs. `anchors`: the text of
/// the closing summaries as GitHub has them, if given; `public`: the App's public key their
/// signatures are checked with.
pub async fn gather(
    db: &Db,
    keys: &AuditKeys,
    repo: &str,
    subject: Subject,
    anchors_text: Option<&str>,
    public: Option<&PublicKey>,
) -> Result<std::result::Result<Gathered, Refusal>> {
    // The repository that has this name now, then everything by id (names move).
    let named = super::tenancy::named(db, repo).await?;
    let mut found = Vec::new();
    for (repository_id, installation) in named {
        let issue = match subject {
            Subject::Request(issue) => {
                let known = requests::get(db, installation, repository_id, issue).await?.is_some()
                    || audit::issue_span(db, installation, repository_id, issue).await?.is_some();
                known.then_some(issue)
            }
            Subject::Deployment(id) => match deploys::get(db, installation, repository_id, id).await? {
                None => None,
                Some(d) => match d.issue {
                    Some(issue) => Some(issue),
                    None => {
                        return Ok(Err(Refusal::Invalid(format!(
                            "deployment {id} of {repo} belongs to no request: the App neither created nor approved it \
                             (a deployment made by hand, or one GitHub reported before any request covered it)"
                        ))));
                    }
                },
            },
        };
        if let Some(issue) = issue {
            found.push((installation, repository_id, issue));
        }
    }
    let (installation_id, repository_id, issue) = match found[..] {
        [one] => one,
        [] => {
            let what = match subject {
                Subject::Request(n) => format!("request #{n}"),
                Subject::Deployment(id) => format!("deployment {id}"),
            };
            return Ok(Err(Refusal::Usage(format!("no {what} of `{repo}` in this database"))));
        }
        _ => {
            return Ok(Err(Refusal::Usage(format!(
                "several repositories were called `{repo}`: {found:?} (installation, repository id, issue)"
            ))));
        }
    };
    let marked_deployment = match subject {
        Subject::Deployment(id) => Some(id),
        Subject::Request(_) => None,
    };
    let request = requests::get(db, installation_id, repository_id, issue).await?;
    let approvals = requests::approvals(db, installation_id, repository_id, issue).await?;
    let mut deployments = deploys::for_request(db, installation_id, repository_id, issue).await?;
    if let Some(id) = marked_deployment
        && !deployments.iter().any(|d| d.deployment_id == id)
        && let Some(d) = deploys::get(db, installation_id, repository_id, id).await?
    {
        deployments.push(d);
    }

    // The anchors on GitHub: only those the App's key signed count (anyone can write the tag).
    let mut anchor_notes = Vec::new();
    let mut signed = Vec::new();
    for a in anchors_text.map(super::anchor::parse_all).unwrap_or_default() {
        let a = match a {
            Ok(a) => a,
            Err(why) => {
                anchor_notes.push(format!("ignored: {why}"));
                continue;
            }
        };
        let at = format!("installation {} entry {}", a.installation_id, a.position);
        if a.installation_id != installation_id {
            continue; // another installation's chain
        }
        match public {
            Some(k) if !a.verify(k) => {
                anchor_notes.push(format!("ignored: the anchor of {at} is not signed by the App's key {}", k.id()));
                continue;
            }
            None => {
                anchor_notes.push(format!(
                    "ignored: the anchor of {at}: no public key (SHIPGATE_SIGNING_KEY or --public-key) to check it with"
                ));
                continue;
            }
            Some(_) => {}
        }
        // A signed anchor the log does not match: the log was cut or rewritten since.
        match audit::entry_at(db, installation_id, a.position).await? {
            Some(row) if row.hash == a.hash => signed.push(a),
            Some(row) => {
                return Ok(Err(Refusal::Invalid(format!(
                    "{at} has hash {}, but the anchor on GitHub says {}: the entry was rewritten (run `shipgate audit \
                     verify --anchors`)",
                    row.hash, a.hash
                ))));
            }
            None => {
                return Ok(Err(Refusal::Invalid(format!(
                    "the log has no {at}, which an anchor on GitHub records: entries were removed (run `shipgate audit \
                     verify --anchors`)"
                ))));
            }
        }
    }
    signed.sort_by_key(|a| a.position);
    signed.dedup_by_key(|a| a.position);

    let (segment, context) = match audit::issue_span(db, installation_id, repository_id, issue).await? {
        None => (Vec::new(), Vec::new()),
        Some((first, last)) => {
            // To the first anchor at or after the request's last entry, so that the anchor covers it all.
            let to = signed.iter().map(|a| a.position).find(|p| *p >= last).unwrap_or(last);
            let segment = audit::range(db, installation_id, first, to).await?;
            let context = audit::last_before(db, installation_id, repository_id, "policy.changed", first)
                .await?
                .into_iter()
                .collect();
            (segment, context)
        }
    };
    let (from, to) = (segment.first().map(|r| r.position), segment.last().map(|r| r.position));
    let anchors: Vec<Anchor> = signed
        .into_iter()
        .filter(|a| {
            let inside = from.zip(to).is_some_and(|(f, t)| a.position >= f && a.position <= t);
            if !inside {
                anchor_notes.push(format!(
                    "left out: the anchor of installation {} entry {} is outside the request's part of the log",
                    a.installation_id, a.position
                ));
            }
            inside
        })
        .collect();

    // Every entry given is checked under the audit key, and the segment's links followed.
    let mut checked_under = None;
    for r in context.iter().chain(&segment) {
        if let Some(id) = &r.key_id {
            if keys.find(id).is_none() {
                return Ok(Err(Refusal::Usage(format!(
                    "entry {} is sealed under audit key {id}, which is not given: set SHIPGATE_AUDIT_KEY (and \
                     SHIPGATE_AUDIT_KEY_RETIRED for keys rotated away from). The App signs only entries whose seals it \
                     checked",
                    r.position
                ))));
            }
            checked_under = Some(id.clone());
        }
        if audit::expected_hash(r, keys).as_deref() != Some(r.hash.as_str()) {
            return Ok(Err(Refusal::Invalid(format!(
                "installation {installation_id} entry {} (seq {}) does not match its seal: the log was edited (run \
                 `shipgate audit verify`)",
                r.position, r.seq
            ))));
        }
    }
    for pair in segment.windows(2) {
        if pair[1].position != pair[0].position + 1 || pair[1].prev_hash != pair[0].hash {
            return Ok(Err(Refusal::Invalid(format!(
                "installation {installation_id}'s chain is broken at entry {} (run `shipgate audit verify`)",
                pair[1].position
            ))));
        }
    }

    let mut g = Gathered {
        installation_id,
        repository_id,
        repository: repo.to_string(),
        issue,
        marked_deployment,
        request,
        approvals,
        deployments,
        segment,
        context,
        policy_texts: BTreeMap::new(),
        anchors,
        anchor_notes,
        anchors_given: anchors_text.is_some(),
        checked_under,
    };
    // Deployments the request's entries name that are not its own (one made outside its gate).
    let mut named = std::collections::BTreeSet::new();
    for r in g.segment.iter().filter(|r| g.is_own(r) && r.issue.is_some()) {
        let d: serde_json::Value = serde_json::from_str(&r.detail).unwrap_or_default();
        if let Some(id) = d["deployment_id"].as_i64() {
            named.insert(id);
        }
    }
    for id in named {
        if !g.deployments.iter().any(|d| d.deployment_id == id)
            && let Some(d) = deploys::get(db, installation_id, repository_id, id).await?
        {
            g.deployments.push(d);
        }
    }
    g.deployments.sort_by_key(|d| (d.created_at, d.deployment_id));
    // The texts of the policies the entries name.
    let mut blobs = std::collections::BTreeSet::new();
    for r in g.context.iter().chain(&g.segment).filter(|r| g.is_own(r)) {
        let d: serde_json::Value = serde_json::from_str(&r.detail).unwrap_or_default();
        for k in ["policy_blob", "blob"] {
            if let Some(b) = d[k].as_str().filter(|b| !b.is_empty()) {
                blobs.insert(b.to_string());
            }
        }
    }
    for blob in blobs {
        if let Some(text) = requests::policy_text(db, installation_id, repository_id, &blob).await? {
            g.policy_texts.insert(blob, text);
        }
    }
    Ok(Ok(g))
}

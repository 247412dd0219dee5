//! Evidence packs (issue 19): one self-contained, signed bundle per change request for an
//! auditor — `shipgate audit evidence` makes one, `shipgate audit verify-evidence` checks one
//! offline with the App's public key only.
//!
//! A pack is a flat set of files (a directory, or a `.tar.gz` of the same files):
//!
//! * `index.md`: what a person reads first, rendered from the JSON files below (and checked to be
//!   exactly that rendering).
//! * `request.json` (the request as read at each revision), `policy.json` (the policies in force,
//!   blob SHA and text), `approvals.json`, `checks.json` (the commits each gate decision covered
//!   and the checks on each), `deployments.json`, `events.json` (break-glass and freeze entries),
//!   `audit-entries.json` (the part of the audit log they come from, with every entry's
//!   `prev_hash`, `hash` and key id), `anchors.json` (the signed anchors of the log on GitHub).
//! * `MANIFEST.json`: who made the pack for what, and every other file with its SHA-256;
//!   `MANIFEST.sig`: the App's Ed25519 signature of the manifest's bytes (`SHIPGATE_SIGNING_KEY`);
//!   `public-key.pem`: its public half, for convenience only (a key shipped in the pack proves
//!   nothing by itself: check it against `/.well-known/shipgate-audit.pub`).
//!
//! Verification: the manifest's signature under the key given, every listed file present with its
//! hash and no other, then the files against each other and against the audit entries: the chain
//! links each entry's `prev_hash` to the hash before, unkeyed entries hash to their seal, every
//! approval, revision, gate decision, deployment status and policy agrees with the entry that
//! recorded it, and every such entry is listed. What cannot be checked offline (an HMAC seal needs
//! the audit key) the index says.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::store::anchor::{self, PublicKey, SigningKey};
use crate::store::audit::{self, AuditRow, rfc3339};
use crate::store::evidence::Gathered;

/// The pack's format, in its manifest.
pub const FORMAT: &str = "shipgate-evidence/v1";
/// What made the pack (the index is checked to be this version's rendering only when it matches).
pub const GENERATOR: &str = concat!("shipgate ", env!("CARGO_PKG_VERSION"));
pub const MANIFEST: &str = "MANIFEST.json";
pub const SIGNATURE: &str = "MANIFEST.sig";
pub const PUBLIC_KEY: &str = "public-key.pem";
pub const INDEX: &str = "index.md";
/// The machine-readable files, each in every pack.
pub const DATA_FILES: [&str; 8] = [
    "request.json",
    "policy.json",
    "approvals.json",
    "checks.json",
    "deployments.json",
    "events.json",
    "audit-entries.json",
    "anchors.json",
];
/// The most a pack being read may unpack to.
const MAX_BYTES: u64 = 512 << 20;

/// The entries that record what was asked, and the fields of theirs a revision shows.
const REVISION_KINDS: [&str; 2] = ["request.parsed", "request.revised"];
const REVISION_FIELDS: [&str; 6] =
    ["revision", "request", "environment", "pull_requests", "policy_blob", "policy_sha256"];
/// The gate's decisions, and the fields of theirs `checks.json` shows.
const GATE_KINDS: [&str; 2] = ["gate.opened", "gate.closed"];
const GATE_FIELDS: [&str; 6] = ["covers", "heads", "commits", "missing", "policy_blob", "policy_sha256"];

/// Break-glass and freeze entries (SPEC §3.7), whatever their kinds are called after the dot.
pub fn is_emergency(kind: &str) -> bool {
    ["breakglass.", "break_glass.", "freeze."].iter().any(|p| kind.starts_with(p))
}

/// A pack's files, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bundle {
    pub files: BTreeMap<String, Vec<u8>>,
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(v).expect("JSON values serialise");
    bytes.push(b'\n');
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn detail(r: &AuditRow) -> Value {
    serde_json::from_str(&r.detail).unwrap_or(Value::Null)
}

/// An entry as the pack gives it: whole, or (another request's) only its place in the chain.
fn entry_json(r: &AuditRow, whole: bool) -> Value {
    if !whole {
        return json!({ "position": r.position, "redacted": true, "prev_hash": r.prev_hash, "hash": r.hash,
                       "key_id": r.key_id });
    }
    json!({
        "position": r.position,
        "seq": r.seq,
        "installation_id": r.installation_id,
        "repository_id": r.repository_id,
        "repository": r.repository,
        "issue": r.issue,
        "kind": r.kind,
        "actor_id": r.actor_id,
        "actor_login": r.actor_login,
        "delivery_id": r.delivery_id,
        "at": r.at,
        "time": rfc3339(r.at),
        "detail": detail(r),
        "detail_canonical": r.detail,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
        "key_id": r.key_id,
    })
}

/// An item that shows an entry: where and when, by whom, and `fields` of its detail.
fn from_entry(r: &AuditRow, fields: &[&str]) -> Value {
    let d = detail(r);
    let mut item = json!({ "position": r.position, "kind": r.kind, "at": r.at, "time": rfc3339(r.at),
                           "actor_id": r.actor_id, "actor_login": r.actor_login });
    for f in fields {
        item[*f] = d.get(*f).cloned().unwrap_or(Value::Null);
    }
    item
}

/// The machine-readable files of the pack of `g`.
fn data_files(g: &Gathered) -> BTreeMap<String, Value> {
    let own: Vec<&AuditRow> = g.segment.iter().filter(|r| g.is_own(r)).collect();
    let of_request: Vec<&AuditRow> = own.iter().copied().filter(|r| r.issue == Some(g.issue)).collect();
    let mut files = BTreeMap::new();

    let table = g.request.as_ref().map(|r| {
        json!({
            "author_id": r.author_id, "author_login": r.author_login, "environment": r.environment,
            "state": r.state, "open": r.open == 1, "labelled": r.labelled == 1, "revision": r.revision,
            "gate_open": r.gate_open == 1, "held_by": r.hold_by, "denied_by": r.denied_by,
            "deny_reason": r.deny_reason, "created_at": r.created_at, "approved_at": r.approved_at,
            "deployment_id": r.deployment_id, "deploy_state": r.deploy_state, "deploy_sha": r.deploy_sha,
        })
    });
    let revisions: Vec<Value> = of_request
        .iter()
        .filter(|r| REVISION_KINDS.contains(&r.kind.as_str()))
        .map(|r| from_entry(r, &REVISION_FIELDS))
        .collect();
    files.insert(
        "request.json".into(),
        json!({ "installation_id": g.installation_id, "repository_id": g.repository_id, "repository": g.repository,
                "issue": g.issue, "table": table, "revisions": revisions }),
    );

    // The policies: each `policy.changed` given, and the one each decision was made under (as
    // its entry says, or, for entries written before they said, the last change before it).
    #[derive(Default)]
    struct Pol {
        first: i64,
        recorded: BTreeSet<String>,
        changed_at: Vec<i64>,
        used_at: Vec<i64>,
        inferred_at: Vec<i64>,
    }
    let mut pols: BTreeMap<Option<String>, Pol> = BTreeMap::new();
    let mut current: Option<Option<String>> = None;
    for r in g.context.iter().chain(own.iter().copied()) {
        let d = detail(r);
        let blob = |k: &str| d[k].as_str().filter(|b| !b.is_empty()).map(str::to_string);
        if r.kind == "policy.changed" {
            let p = pols.entry(blob("blob")).or_insert_with(|| Pol { first: r.position, ..Pol::default() });
            p.changed_at.push(r.position);
            if let Some(s) = d["yaml_sha256"].as_str() {
                p.recorded.insert(s.to_string());
            }
            current = Some(blob("blob"));
        } else if r.issue == Some(g.issue)
            && (REVISION_KINDS.contains(&r.kind.as_str()) || GATE_KINDS.contains(&r.kind.as_str()))
        {
            if d.get("policy_blob").is_some() {
                let p = pols.entry(blob("policy_blob")).or_insert_with(|| Pol { first: r.position, ..Pol::default() });
                p.used_at.push(r.position);
                if let Some(s) = d["policy_sha256"].as_str() {
                    p.recorded.insert(s.to_string());
                }
            } else if let Some(b) = &current {
                pols.get_mut(b).expect("the current policy is listed").inferred_at.push(r.position);
            }
        }
    }
    let mut policies: Vec<(i64, Value)> = pols
        .into_iter()
        .map(|(blob, p)| {
            let text = blob.as_ref().and_then(|b| g.policy_texts.get(b));
            (
                p.first,
                json!({ "blob": blob, "text": text, "text_sha256": text.map(|t| sha256_hex(t.as_bytes())),
                        "recorded_sha256": p.recorded, "changed_at": p.changed_at, "used_at": p.used_at,
                        "inferred_at": p.inferred_at }),
            )
        })
        .collect();
    policies.sort_by_key(|(first, _)| *first);
    files.insert("policy.json".into(), json!({ "policies": policies.into_iter().map(|(_, v)| v).collect::<Vec<_>>() }));

    let approvals: Vec<Value> = g
        .approvals
        .iter()
        .map(|a| {
            let entries: Vec<i64> = of_request
                .iter()
                .filter(|r| r.kind.starts_with("approval.") && detail(r)["comment_id"].as_i64() == Some(a.comment_id))
                .map(|r| r.position)
                .collect();
            let heads: Vec<&str> = a.head_shas.split(',').filter(|s| !s.is_empty()).collect();
            json!({ "comment_id": a.comment_id, "approver_id": a.user_id, "approver_login": a.login,
                    "roles": a.roles, "environment": a.environment, "head_shas": heads, "revision": a.revision,
                    "state": a.state, "note": a.note, "given_at": a.created_at, "time": rfc3339(a.created_at),
                    "entries": entries })
        })
        .collect();
    files.insert("approvals.json".into(), json!({ "approvals": approvals }));

    let gates: Vec<Value> = of_request
        .iter()
        .filter(|r| GATE_KINDS.contains(&r.kind.as_str()))
        .map(|r| from_entry(r, &GATE_FIELDS))
        .collect();
    files.insert("checks.json".into(), json!({ "gates": gates }));

    let deployments: Vec<Value> = g
        .deployments
        .iter()
        .map(|d| {
            let entries: Vec<Value> = of_request
                .iter()
                .filter(|r| detail(r)["deployment_id"].as_i64() == Some(d.deployment_id))
                .map(|r| from_entry(r, &["state"]))
                .collect();
            json!({ "deployment_id": d.deployment_id, "environment": d.environment, "sha": d.sha, "ref": d.git_ref,
                    "state": d.state, "origin": d.origin, "request": d.issue, "own": d.issue == Some(g.issue),
                    "marked": Some(d.deployment_id) == g.marked_deployment, "created_at": d.created_at,
                    "started_at": d.started_at, "finished_at": d.finished_at, "status_at": d.status_at,
                    "log_url": d.log_url, "rollback": d.rollback == 1, "entries": entries })
        })
        .collect();
    files.insert("deployments.json".into(), json!({ "marked": g.marked_deployment, "deployments": deployments }));

    let events: Vec<Value> = of_request
        .iter()
        .filter(|r| is_emergency(&r.kind))
        .map(|r| {
            let mut e = from_entry(r, &[]);
            e["detail"] = detail(r);
            e
        })
        .collect();
    files.insert("events.json".into(), json!({ "events": events }));

    let segment = g.segment.first().zip(g.segment.last()).map(|(f, l)| json!({ "from": f.position, "to": l.position }));
    files.insert(
        "audit-entries.json".into(),
        json!({
            "installation_id": g.installation_id,
            "segment": segment,
            "checked_under": g.checked_under,
            "entries": g.segment.iter().map(|r| entry_json(r, g.is_own(r))).collect::<Vec<_>>(),
            "context": g.context.iter().map(|r| entry_json(r, true)).collect::<Vec<_>>(),
        }),
    );

    let anchors: Vec<Value> = g
        .anchors
        .iter()
        .map(|a| {
            json!({ "installation_id": a.installation_id, "position": a.position, "hash": a.hash,
                    "key_id": a.signature.as_ref().map(|s| &s.0), "signature": a.signature.as_ref().map(|s| &s.1),
                    "line": a.render() })
        })
        .collect();
    files.insert(
        "anchors.json".into(),
        json!({ "given": g.anchors_given, "anchors": anchors, "notes": g.anchor_notes }),
    );
    files
}

/// The pack of `g`, made at `now`, signed with `signing` when the App has a key.
pub fn build(g: &Gathered, now: i64, signing: Option<&SigningKey>) -> Bundle {
    let data = data_files(g);
    let meta = json!({
        "format": FORMAT,
        "generator": GENERATOR,
        "created_at": now,
        "time": rfc3339(now),
        "installation_id": g.installation_id,
        "repository_id": g.repository_id,
        "repository": g.repository,
        "issue": g.issue,
        "deployment": g.marked_deployment,
        "signing_key_id": signing.map(|k| k.public().id().to_string()),
    });
    let mut files: BTreeMap<String, Vec<u8>> = data.iter().map(|(n, v)| (n.clone(), pretty(v))).collect();
    files.insert(INDEX.into(), render_index(&meta, &data).into_bytes());
    if let Some(k) = signing {
        files.insert(PUBLIC_KEY.into(), k.public().to_pem().into_bytes());
    }
    let mut manifest = meta;
    manifest["files"] = files
        .iter()
        .map(|(name, bytes)| json!({ "name": name, "sha256": sha256_hex(bytes), "bytes": bytes.len() }))
        .collect();
    let manifest = pretty(&manifest);
    if let Some(k) = signing {
        files.insert(SIGNATURE.into(), format!("{}\n", k.sign_bytes(&manifest)).into_bytes());
    }
    files.insert(MANIFEST.into(), manifest);
    Bundle { files }
}

/// Writes `bundle` to `path`: a gzipped tar when the name ends in `.tar.gz` or `.tgz` (entries
/// sorted by name, each with mode 0644, owner 0 and the pack's time, so the same pack gives the
/// same bytes), else a new directory. Never over an existing file or a non-empty directory.
pub fn write(bundle: &Bundle, path: &Path, mtime_secs: u64) -> Result<(), String> {
    let shown = path.display();
    if is_archive(path) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| format!("{shown}: cannot create ({e}); the pack is never written over a file"))?;
        // A pack half written is no pack: the file goes.
        return write_archive(bundle, file, mtime_secs).map_err(|e| {
            let _ = std::fs::remove_file(path);
            format!("{shown}: {e}")
        });
    }
    if path.exists() {
        let empty = std::fs::read_dir(path).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !empty {
            return Err(format!("{shown} exists and is not an empty directory; the pack is never written over files"));
        }
    }
    std::fs::create_dir_all(path).map_err(|e| format!("{shown}: cannot create the directory ({e})"))?;
    for (name, bytes) in &bundle.files {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path.join(name))
            .map_err(|e| format!("{shown}/{name}: {e}"))?;
        f.write_all(bytes).map_err(|e| format!("{shown}/{name}: {e}"))?;
    }
    Ok(())
}

fn write_archive(bundle: &Bundle, file: std::fs::File, mtime_secs: u64) -> std::io::Result<()> {
    let gz = flate2::GzBuilder::new().mtime(0).write(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in &bundle.files {
        let mut h = tar::Header::new_ustar();
        h.set_path(name)?;
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime_secs);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        tar.append(&h, bytes.as_slice())?;
    }
    tar.into_inner()?.finish()?.sync_all()
}

fn is_archive(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// Why a pack could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Nothing there, or not readable: bad usage.
    Usage(String),
    /// Something there that is not a pack as written (a directory inside, a link, a broken archive).
    Invalid(String),
}

/// The files of the pack at `path` (a directory, or a `.tar.gz` of one).
pub fn read(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, ReadError> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| ReadError::Usage(format!("{shown}: {e}")))?;
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| ReadError::Usage(format!("{shown}: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| ReadError::Usage(format!("{shown}: {e}")))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().map_err(|e| ReadError::Usage(format!("{shown}/{name}: {e}")))?;
            if !kind.is_file() {
                return Err(ReadError::Invalid(format!(
                    "{name} is not a plain file (a pack holds only files, no directories or links)"
                )));
            }
            let mut bytes = Vec::new();
            std::fs::File::open(entry.path())
                .and_then(|f| f.take(MAX_BYTES - total + 1).read_to_end(&mut bytes))
                .map_err(|e| ReadError::Usage(format!("{shown}/{name}: {e}")))?;
            total += bytes.len() as u64;
            if total > MAX_BYTES {
                return Err(ReadError::Invalid(format!("the pack holds more than {MAX_BYTES} bytes")));
            }
            files.insert(name, bytes);
        }
        return Ok(files);
    }
    let file = std::fs::File::open(path).map_err(|e| ReadError::Usage(format!("{shown}: {e}")))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let bad = |e: std::io::Error| ReadError::Invalid(format!("{shown} is not a readable .tar.gz: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        // An archive made again from the directory (`tar -czf p.tar.gz -C pack .`) reads the same.
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = raw.strip_prefix("./").unwrap_or(&raw).to_string();
        if entry.header().entry_type() == tar::EntryType::Directory && matches!(name.as_str(), "" | ".") {
            continue;
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(ReadError::Invalid(format!(
                "{name} is not a plain file (a pack holds only files, no directories or links)"
            )));
        }
        let mut bytes = Vec::new();
        (&mut entry).take(MAX_BYTES - total + 1).read_to_end(&mut bytes).map_err(bad)?;
        total += bytes.len() as u64;
        if total > MAX_BYTES {
            return Err(ReadError::Invalid(format!("the pack holds more than {MAX_BYTES} bytes")));
        }
        if files.insert(name.clone(), bytes).is_some() {
            return Err(ReadError::Invalid(format!("{name} is in the archive twice")));
        }
    }
    Ok(files)
}

/// Where the key a pack is checked with came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `--public-key`: the auditor's own copy (a signature is then required).
    Given,
    /// The public half of the configured `SHIPGATE_SIGNING_KEY`.
    Configured,
}

/// What a valid pack is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The key that signed it (its id), and whether that key came from outside the pack; None:
    /// unsigned.
    pub signed_by: Option<(String, bool)>,
    /// What the checks found worth saying (what could not be checked, what is missing).
    pub notes: Vec<String>,
    /// One line: what was checked.
    pub summary: String,
}

/// Checks a pack's files. `key`: the public key to check the signature with and where it came
/// from; without one a signed pack is checked with the key it carries, and said so. Err names the
/// first problem.
pub fn verify(files: &BTreeMap<String, Vec<u8>>, key: Option<(&PublicKey, KeySource)>) -> Result<Verified, String> {
    let manifest_bytes = files.get(MANIFEST).ok_or_else(|| format!("{MANIFEST} is missing"))?;
    let manifest: Value = serde_json::from_slice(manifest_bytes).map_err(|e| format!("{MANIFEST} is not JSON: {e}"))?;
    if manifest["format"] != FORMAT {
        return Err(format!("{MANIFEST} is not a {FORMAT} manifest (format {})", manifest["format"]));
    }
    let mut notes = Vec::new();

    // The signature: the manifest is what the App vouches for.
    let named_key = manifest["signing_key_id"].as_str();
    let bundled = match files.get(PUBLIC_KEY) {
        None => None,
        Some(pem) => Some(
            std::str::from_utf8(pem)
                .map_err(|e| e.to_string())
                .and_then(PublicKey::from_pem)
                .map_err(|e| format!("{PUBLIC_KEY}: {e}"))?,
        ),
    };
    let signed_by = match files.get(SIGNATURE) {
        None => {
            if let Some(id) = named_key {
                return Err(format!("{SIGNATURE} is missing, but the manifest says the pack was signed by key {id}"));
            }
            // With a key at hand (given, or the configured App's), a pack must be signed by it: an
            // unsigned one is anybody's, whatever it says (a signature stripped, the rest edited).
            match key {
                Some((_, KeySource::Given)) => {
                    return Err(format!(
                        "the pack is not signed ({SIGNATURE} is missing), and a public key was given to check its \
                         signature with"
                    ));
                }
                Some((_, KeySource::Configured)) => {
                    return Err(format!(
                        "the pack is not signed ({SIGNATURE} is missing), and this App signs its packs (the \
                         configured SHIPGATE_SIGNING_KEY): nothing shows who made it"
                    ));
                }
                None => {}
            }
            None
        }
        Some(sig) => {
            let sig = std::str::from_utf8(sig).map_err(|_| format!("{SIGNATURE} is not base64 text"))?;
            let (k, outside) = match (key, &bundled) {
                (Some((k, _)), _) => (k.clone(), true),
                (None, Some(b)) => (b.clone(), false),
                (None, None) => {
                    return Err(format!(
                        "{SIGNATURE} cannot be checked: no public key given (--public-key), none configured \
                         (SHIPGATE_SIGNING_KEY), and none in the pack"
                    ));
                }
            };
            if !k.verify_bytes(manifest_bytes, sig) {
                let which = match named_key {
                    Some(id) if id != k.id() => format!(" (the manifest names key {id})"),
                    _ => String::new(),
                };
                return Err(format!(
                    "{SIGNATURE} is not a valid signature of {MANIFEST} by key {}{which}: the manifest was changed, or \
                     someone else signed it",
                    k.id()
                ));
            }
            if named_key != Some(k.id()) {
                return Err(format!(
                    "{MANIFEST} names signing key {}, but it is signed by key {}",
                    named_key.unwrap_or("none"),
                    k.id()
                ));
            }
            if !outside {
                notes.push(format!(
                    "the signature was checked with the key inside the pack ({PUBLIC_KEY}, key {}), which proves \
                     nothing by itself: compare it with the App's key at /.well-known/shipgate-audit.pub, or give \
                     that key with --public-key",
                    k.id()
                ));
            }
            if let (Some(b), true) = (&bundled, outside)
                && b.id() != k.id()
            {
                return Err(format!("{PUBLIC_KEY} in the pack is key {}, not the signing key {}", b.id(), k.id()));
            }
            Some((k.id().to_string(), outside))
        }
    };
    // The key anchors are checked with: the one the pack was checked with.
    let anchor_key = match (&signed_by, key) {
        (_, Some((k, _))) => Some(k.clone()),
        (Some(_), None) => bundled.clone(),
        (None, None) => None,
    };

    // Every file listed, with its hash, and nothing else.
    let listed = manifest["files"].as_array().ok_or_else(|| format!("{MANIFEST} lists no files"))?;
    let mut names = BTreeSet::new();
    for f in listed {
        let name = f["name"].as_str().ok_or_else(|| format!("{MANIFEST} lists a file without a name"))?;
        if name == MANIFEST || name == SIGNATURE || name.contains(['/', '\\']) || !names.insert(name) {
            return Err(format!("{MANIFEST} lists {name:?}, which a pack cannot hold"));
        }
        let bytes = files.get(name).ok_or_else(|| format!("{name} is missing (the manifest lists it)"))?;
        if f["sha256"].as_str() != Some(sha256_hex(bytes).as_str()) {
            return Err(format!("{name} does not match its SHA-256 in the manifest: it was changed"));
        }
    }
    if let Some(extra) = files.keys().find(|n| *n != MANIFEST && *n != SIGNATURE && !names.contains(n.as_str())) {
        return Err(format!("{extra} is not listed in the manifest: it was added"));
    }
    for name in DATA_FILES.iter().chain([&INDEX]) {
        if !names.contains(name) {
            return Err(format!("{name} is missing from the pack (and from its manifest)"));
        }
    }

    // The files against each other and against the audit entries.
    let mut data = BTreeMap::new();
    for name in DATA_FILES {
        let v: Value = serde_json::from_slice(&files[name]).map_err(|e| format!("{name} is not JSON: {e}"))?;
        data.insert(name.to_string(), v);
    }
    let facts = consistency(&manifest, &data, anchor_key.as_ref(), &mut notes)?;
    let mut meta = manifest.clone();
    if let Some(m) = meta.as_object_mut() {
        m.remove("files");
    }
    if manifest["generator"] == GENERATOR {
        if render_index(&meta, &data).as_bytes() != files[INDEX].as_slice() {
            return Err(format!("{INDEX} is not what the pack's data says (it was edited)"));
        }
    } else {
        notes.push(format!(
            "{INDEX} was made by {} and not compared with the data (this is {GENERATOR})",
            manifest["generator"].as_str().unwrap_or("an unknown version")
        ));
    }
    Ok(Verified { signed_by, notes, summary: facts })
}

/// A 64-hex-digit hash field.
fn hash_field(e: &Value, field: &str, pos: i64) -> Result<String, String> {
    match e[field].as_str() {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(h.to_string()),
        _ => Err(format!("audit-entries.json: entry {pos} has no valid {field}")),
    }
}

/// The stored row an entry of the pack stands for (to compute an unkeyed entry's hash).
fn row_of(e: &Value, pos: i64) -> Result<AuditRow, String> {
    let text = |k: &str| e[k].as_str().map(str::to_string);
    Ok(AuditRow {
        seq: e["seq"].as_i64().unwrap_or(0),
        installation_id: e["installation_id"].as_i64().ok_or_else(|| format!("entry {pos} has no installation"))?,
        position: pos,
        repository_id: e["repository_id"].as_i64(),
        repository: text("repository"),
        issue: e["issue"].as_i64(),
        kind: text("kind").ok_or_else(|| format!("audit-entries.json: entry {pos} has no kind"))?,
        actor_id: e["actor_id"].as_i64(),
        actor_login: text("actor_login"),
        delivery_id: text("delivery_id"),
        at: e["at"].as_i64().ok_or_else(|| format!("audit-entries.json: entry {pos} has no time"))?,
        detail: text("detail_canonical").ok_or_else(|| format!("audit-entries.json: entry {pos} has no detail"))?,
        prev_hash: hash_field(e, "prev_hash", pos)?,
        hash: hash_field(e, "hash", pos)?,
        key_id: text("key_id"),
    })
}

/// What can be checked of a whole entry without the audit key: its detail is its canonical text,
/// and an unkeyed entry's hash is the SHA-256 of its content.
fn check_whole(e: &Value, pos: i64, installation: i64) -> Result<(), String> {
    let row = row_of(e, pos)?;
    if row.installation_id != installation {
        return Err(format!("audit-entries.json: entry {pos} is of installation {}", row.installation_id));
    }
    if audit::canonical_json(&e["detail"]) != row.detail {
        return Err(format!("audit-entries.json: entry {pos}'s detail is not its sealed text: it was edited"));
    }
    if row.key_id.is_none() && audit::entry_hash(&row) != row.hash {
        return Err(format!("audit-entries.json: entry {pos} does not match its hash: it was edited"));
    }
    Ok(())
}

/// Whether an item of a data file shows entry `e` as it is: the same place, kind, time and actor,
/// and the same `fields` of its detail.
fn shows(item: &Value, e: &Value, fields: &[&str]) -> bool {
    ["position", "kind", "at", "actor_id", "actor_login"].iter().all(|k| item[*k] == e[*k])
        && fields.iter().all(|f| item[*f] == e["detail"].get(*f).cloned().unwrap_or(Value::Null))
}

/// The cross-checks. Returns one line saying what was checked.
fn consistency(
    manifest: &Value,
    data: &BTreeMap<String, Value>,
    anchor_key: Option<&PublicKey>,
    notes: &mut Vec<String>,
) -> Result<String, String> {
    let request = &data["request.json"];
    let audit_file = &data["audit-entries.json"];
    let installation = audit_file["installation_id"].as_i64().ok_or("audit-entries.json names no installation")?;
    let (repository_id, issue) = (request["repository_id"].as_i64(), request["issue"].as_i64());
    for (k, v) in [("installation_id", Some(installation)), ("repository_id", repository_id), ("issue", issue)] {
        if manifest[k].as_i64() != v || (k != "installation_id" && request[k].as_i64() != v) {
            return Err(format!("{MANIFEST} and the data do not name the same request ({k})"));
        }
    }
    if manifest["repository"] != request["repository"] {
        return Err(format!("{MANIFEST} and request.json do not name the same repository"));
    }

    // The chain: contiguous positions, each prev_hash the hash before.
    let entries = audit_file["entries"].as_array().ok_or("audit-entries.json has no entries")?;
    let mut by_position: BTreeMap<i64, &Value> = BTreeMap::new();
    let mut last: Option<(i64, String)> = None;
    let mut keyed = 0usize;
    let mut redacted = 0usize;
    for e in entries {
        let pos = e["position"].as_i64().ok_or("audit-entries.json: an entry without a position")?;
        let (hash, prev_hash) = (hash_field(e, "hash", pos)?, hash_field(e, "prev_hash", pos)?);
        if let Some((p, h)) = &last {
            if pos != p + 1 {
                return Err(format!(
                    "audit-entries.json: entry {pos} follows entry {p}: the chain is not whole (an entry was removed or \
                     moved)"
                ));
            }
            if prev_hash != *h {
                return Err(format!(
                    "audit-entries.json: entry {pos}'s prev_hash is not the hash of entry {p} before it: the chain is \
                     broken (an entry was removed, moved or rewritten)"
                ));
            }
        }
        if e["redacted"] == true {
            redacted += 1;
        } else {
            check_whole(e, pos, installation)?;
        }
        if !e["key_id"].is_null() {
            keyed += 1;
        }
        by_position.insert(pos, e);
        last = Some((pos, hash));
    }
    let segment = &audit_file["segment"];
    let (from, to) = (by_position.keys().next().copied(), by_position.keys().last().copied());
    if segment["from"].as_i64() != from || segment["to"].as_i64() != to {
        return Err("audit-entries.json: its segment is not the entries it holds".into());
    }
    let context = audit_file["context"].as_array().ok_or("audit-entries.json has no context")?;
    for e in context {
        let pos = e["position"].as_i64().ok_or("audit-entries.json: a context entry without a position")?;
        if from.is_some_and(|f| pos >= f) || by_position.contains_key(&pos) {
            return Err(format!("audit-entries.json: context entry {pos} is inside the segment"));
        }
        hash_field(e, "hash", pos)?;
        check_whole(e, pos, installation)?;
        by_position.insert(pos, e);
    }
    // The request's own entries (the repository's without an issue count as its own too).
    let own = |e: &&Value| {
        e["redacted"] != true
            && e["repository_id"].as_i64() == repository_id
            && (e["issue"].as_i64() == issue || e["issue"].is_null())
    };
    let of_request = |e: &&Value| own(e) && e["issue"].as_i64() == issue;
    let entry =
        |file: &str, pos: &Value| -> Result<&Value, String> {
            let p = pos.as_i64().ok_or_else(|| format!("{file}: an item without an entry position"))?;
            by_position.get(&p).copied().filter(own).ok_or_else(|| {
                format!("{file} refers to audit entry {p}, which the pack does not hold as this request's")
            })
        };
    let kinds = |ks: &[&str]| -> BTreeSet<i64> {
        by_position
            .iter()
            .filter(|(_, e)| of_request(e) && e["kind"].as_str().is_some_and(|k| ks.contains(&k)))
            .map(|(p, _)| *p)
            .collect()
    };
    let list = |file: &str, key: &str| -> Result<Vec<Value>, String> {
        data[file][key].as_array().cloned().ok_or_else(|| format!("{file} has no {key}"))
    };

    // Revisions and gate decisions: each item is its entry, and every such entry is an item.
    for (file, key, ks, fields) in [
        ("request.json", "revisions", &REVISION_KINDS[..], &REVISION_FIELDS[..]),
        ("checks.json", "gates", &GATE_KINDS[..], &GATE_FIELDS[..]),
    ] {
        let items = list(file, key)?;
        let mut seen = BTreeSet::new();
        for item in &items {
            let e = entry(file, &item["position"])?;
            if !ks.contains(&e["kind"].as_str().unwrap_or_default()) || !shows(item, e, fields) {
                return Err(format!("{file}: the item of entry {} is not what the entry says", item["position"]));
            }
            seen.insert(item["position"].as_i64().unwrap_or_default());
        }
        if let Some(missing) = kinds(ks).difference(&seen).next() {
            return Err(format!("{file} leaves out entry {missing}"));
        }
    }
    let events = list("events.json", "events")?;
    let mut seen = BTreeSet::new();
    for item in &events {
        let e = entry("events.json", &item["position"])?;
        if !is_emergency(e["kind"].as_str().unwrap_or_default())
            || !shows(item, e, &[])
            || item["detail"] != e["detail"]
        {
            return Err(format!("events.json: the event of entry {} is not what the entry says", item["position"]));
        }
        seen.insert(item["position"].as_i64().unwrap_or_default());
    }
    let emergencies: BTreeSet<i64> = by_position
        .iter()
        .filter(|(_, e)| of_request(e) && is_emergency(e["kind"].as_str().unwrap_or_default()))
        .map(|(p, _)| *p)
        .collect();
    if let Some(missing) = emergencies.difference(&seen).next() {
        return Err(format!("events.json leaves out entry {missing}"));
    }

    // Approvals: each has the entries that gave it and changed it, as the table says.
    let approvals = list("approvals.json", "approvals")?;
    let mut approval_entries = BTreeSet::new();
    for a in &approvals {
        let who = format!(
            "approvals.json: the approval of {} (comment {})",
            a["approver_login"].as_str().unwrap_or("?"),
            a["comment_id"]
        );
        let positions = a["entries"].as_array().cloned().unwrap_or_default();
        if positions.is_empty() {
            return Err(format!("{who} has no audit entry: it was not recorded by the App"));
        }
        let mut found = Vec::new();
        for p in &positions {
            let e = entry("approvals.json", p)?;
            if !e["kind"].as_str().unwrap_or_default().starts_with("approval.")
                || e["detail"]["comment_id"] != a["comment_id"]
                || e["issue"].as_i64() != issue
            {
                return Err(format!("{who} lists entry {p}, which is not about it"));
            }
            approval_entries.insert(p.as_i64().unwrap_or_default());
            found.push(e);
        }
        found.sort_by_key(|e| e["position"].as_i64());
        let first = found[0];
        let d = &first["detail"];
        let heads: Vec<&str> =
            d["head_shas"].as_str().unwrap_or_default().split(',').filter(|s| !s.is_empty()).collect();
        if first["kind"] != "approval.given"
            || d["approver_id"] != a["approver_id"]
            || d["approver"] != a["approver_login"]
            || d["environment"] != a["environment"]
            || d["revision"] != a["revision"]
            || d["roles"] != a["roles"]
            || json!(heads) != a["head_shas"]
        {
            return Err(format!("{who} is not what its approval.given entry {} recorded", first["position"]));
        }
        let state = a["state"].as_str().unwrap_or_default();
        match crate::domain::state::ApprovalState::parse(state) {
            Some(s) if found.last().is_some_and(|e| e["kind"] != s.audit_kind()) => {
                return Err(format!("{who} is {state}, but its last entry is {}", found[found.len() - 1]["kind"]));
            }
            Some(_) => {}
            None => notes.push(format!("{who} is in state {state:?}, which this version does not know")),
        }
    }
    let approval_kinds: BTreeSet<i64> = by_position
        .iter()
        .filter(|(_, e)| of_request(e) && e["kind"].as_str().is_some_and(|k| k.starts_with("approval.")))
        .map(|(p, _)| *p)
        .collect();
    if let Some(missing) = approval_kinds.difference(&approval_entries).next() {
        return Err(format!("approvals.json leaves out entry {missing} (an approval the log records)"));
    }

    // Deployments: every entry naming one is listed under it, as it says.
    let deployments = list("deployments.json", "deployments")?;
    let mut deployment_entries = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for d in &deployments {
        let id = d["deployment_id"].as_i64().ok_or("deployments.json: a deployment without an id")?;
        ids.insert(id);
        for item in d["entries"].as_array().cloned().unwrap_or_default() {
            let e = entry("deployments.json", &item["position"])?;
            if e["detail"]["deployment_id"].as_i64() != Some(id) || !shows(&item, e, &["state"]) {
                return Err(format!(
                    "deployments.json: deployment {id}'s entry {} is not what the entry says",
                    item["position"]
                ));
            }
            deployment_entries.insert(item["position"].as_i64().unwrap_or_default());
        }
    }
    for (p, e) in by_position.iter().filter(|(_, e)| of_request(e)) {
        if let Some(id) = e["detail"]["deployment_id"].as_i64()
            && !deployment_entries.contains(p)
        {
            return Err(format!("deployments.json leaves out entry {p} (about deployment {id})"));
        }
    }
    let marked = &data["deployments.json"]["marked"];
    if let Some(m) = marked.as_i64() {
        let is_marked = |d: &&Value| d["deployment_id"].as_i64() == Some(m) && d["marked"] == true;
        if !deployments.iter().any(|d| is_marked(&d)) {
            return Err(format!("deployments.json marks deployment {m}, which it does not list"));
        }
    }
    if manifest["deployment"] != *marked {
        return Err(format!("{MANIFEST} and deployments.json do not mark the same deployment"));
    }

    // Policies: each text is the one the log sealed the hash of.
    let policies = list("policy.json", "policies")?;
    let mut policy_entries = BTreeSet::new();
    let mut texts = 0usize;
    for p in &policies {
        let blob = &p["blob"];
        let sha = match p["text"].as_str() {
            Some(text) => {
                texts += 1;
                let sha = sha256_hex(text.as_bytes());
                if p["text_sha256"].as_str() != Some(sha.as_str()) {
                    return Err(format!("policy.json: the text of blob {blob} does not match its SHA-256"));
                }
                Some(sha)
            }
            None => {
                if blob.is_string() {
                    notes.push(format!("the text of policy blob {blob} is not in the pack (not kept by the App)"));
                }
                None
            }
        };
        for (key, kind_ok, blob_key, sha_key) in
            [("changed_at", true, "blob", "yaml_sha256"), ("used_at", false, "policy_blob", "policy_sha256")]
        {
            for pos in p[key].as_array().cloned().unwrap_or_default() {
                let e = entry("policy.json", &pos)?;
                let d = &e["detail"];
                let is_change = e["kind"] == "policy.changed";
                let same_blob = d[blob_key].as_str().filter(|b| !b.is_empty()) == blob.as_str();
                if is_change != kind_ok || !same_blob {
                    return Err(format!("policy.json: entry {pos} does not name policy blob {blob}"));
                }
                if let (Some(sha), Some(recorded)) = (&sha, d[sha_key].as_str())
                    && recorded != sha
                {
                    return Err(format!(
                        "policy.json: the text of blob {blob} is not the one entry {pos} sealed the SHA-256 of"
                    ));
                }
                policy_entries.insert(pos.as_i64().unwrap_or_default());
            }
        }
        for pos in p["inferred_at"].as_array().cloned().unwrap_or_default() {
            entry("policy.json", &pos)?;
        }
    }
    for (p, e) in by_position.iter().filter(|(_, e)| own(e)) {
        let names = e["kind"] == "policy.changed" || (of_request(e) && e["detail"].get("policy_blob").is_some());
        if names && !policy_entries.contains(p) {
            return Err(format!("policy.json leaves out entry {p}"));
        }
    }

    // Anchors: signed by the App's key, each on an entry of the segment with its hash.
    let anchors = list("anchors.json", "anchors")?;
    let mut covered_to = None;
    for a in &anchors {
        let line = a["line"].as_str().unwrap_or_default();
        let parsed = anchor::parse_all(line);
        let Some(Ok(found)) = parsed.first() else {
            return Err(format!("anchors.json: {line:?} is not an anchor"));
        };
        let fields_match = json!(found.installation_id) == a["installation_id"]
            && json!(found.position) == a["position"]
            && json!(found.hash) == a["hash"]
            && json!(found.signature.as_ref().map(|s| &s.0)) == a["key_id"]
            && json!(found.signature.as_ref().map(|s| &s.1)) == a["signature"];
        if !fields_match || found.installation_id != installation {
            return Err(format!("anchors.json: the anchor of entry {} is not its line", a["position"]));
        }
        match anchor_key {
            Some(k) if !found.verify(k) => {
                return Err(format!(
                    "anchors.json: the anchor of entry {} is not signed by key {}",
                    found.position,
                    k.id()
                ));
            }
            Some(_) => {}
            None => notes.push(format!("the anchor of entry {}: no public key to check it with", found.position)),
        }
        match by_position.get(&found.position) {
            Some(e) if e["hash"] == json!(found.hash) && from.is_some_and(|f| found.position >= f) => {}
            _ => {
                return Err(format!(
                    "anchors.json: the anchor on GitHub records entry {} with hash {}, which the pack's entries do not \
                     have",
                    found.position, found.hash
                ));
            }
        }
        covered_to = covered_to.max(Some(found.position));
    }
    let last_own = by_position.iter().filter(|(_, e)| of_request(e)).map(|(p, _)| *p).next_back();
    match (covered_to, last_own) {
        (None, Some(_)) => notes.push(
            "no anchor on GitHub covers the entries (none was given when the pack was made): they rest on the pack's \
             signature alone"
                .into(),
        ),
        (Some(c), Some(l)) if c < l => notes.push(format!(
            "the entries after {c} (up to {l}) are not covered by an anchor on GitHub: they rest on the pack's \
             signature alone"
        )),
        _ => {}
    }
    if keyed > 0 {
        notes.push(format!(
            "{keyed} entries are sealed with an HMAC under the audit key: their links are checked here, their seals \
             only by `shipgate audit verify` with the key"
        ));
    }
    let own_count = by_position.values().filter(|e| own(e)).count();
    Ok(format!(
        "{} audit entries ({own_count} of this request and its repository, {redacted} of others given as links only), {} \
         revision(s), {} approval(s), {} gate decision(s), {} deployment(s), {} policy version(s) ({texts} with \
         text), {} anchor(s), {} break-glass/freeze event(s)",
        entries.len() + context.len(),
        list("request.json", "revisions")?.len(),
        approvals.len(),
        list("checks.json", "gates")?.len(),
        deployments.len(),
        policies.len(),
        anchors.len(),
        events.len()
    ))
}

/// Text from the data for a markdown table cell or a line: one line, markdown and HTML
/// punctuation escaped (a request's text cannot make headings, links or tables of its own).
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn md_value(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => md(s),
        other => md(&other.to_string()),
    }
}

fn time_of(v: &Value) -> String {
    v.as_i64().map(rfc3339).unwrap_or_else(|| "—".into())
}

fn short(sha: &Value) -> String {
    match sha.as_str() {
        Some(s) => format!("`{}`", md(&s[..s.len().min(12)]).replace('`', "")),
        None => "—".into(),
    }
}

fn who(login: &Value, id: &Value) -> String {
    match (login.as_str(), id.as_i64()) {
        (Some(l), Some(i)) => format!("{} (id {i})", md(l)),
        (Some(l), None) => md(l),
        (None, Some(i)) => format!("id {i}"),
        (None, None) => "the App".into(),
    }
}

/// A fenced block that no line of `text` can close.
fn fenced(text: &str, lang: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat((longest + 1).max(3));
    format!("{fence}{lang}\n{}\n{fence}\n", text.trim_end_matches('\n'))
}

/// `index.md`: the pack for a person, rendered from the manifest's fields (`meta`) and the data
/// files only, so that `verify-evidence` can render it again and compare.
pub fn render_index(meta: &Value, data: &BTreeMap<String, Value>) -> String {
    let mut s = String::new();
    let request = &data["request.json"];
    let repo = md_value(&request["repository"]);
    let issue = request["issue"].as_i64().unwrap_or_default();
    let _ = writeln!(s, "# Evidence pack: {repo}#{issue}\n");
    let _ = writeln!(
        s,
        "Made {} by {} from the App's database and audit log (installation {}, repository id {}).",
        md_value(&meta["time"]),
        md_value(&meta["generator"]),
        md_value(&meta["installation_id"]),
        md_value(&meta["repository_id"])
    );
    if let Some(d) = meta["deployment"].as_i64() {
        let _ = writeln!(s, "Made for **deployment {d}**, marked ★ below.");
    }
    match meta["signing_key_id"].as_str() {
        Some(id) => {
            let _ = writeln!(
                s,
                "\nSigned with the App's Ed25519 key **{}** (`{MANIFEST}` lists every file with its SHA-256; \
                 `{SIGNATURE}` is the signature of its bytes; `{PUBLIC_KEY}` is the key's public half, for \
                 convenience only).",
                md(id)
            );
        }
        None => {
            let _ = writeln!(
                s,
                "\n**Not signed**: the App had no SHIPGATE_SIGNING_KEY. The pack can be checked for internal \
                 consistency only; anyone could have made it."
            );
        }
    }

    let _ = writeln!(s, "\n## How to check this pack\n");
    let _ = writeln!(
        s,
        "```\ncurl -s https://SHIPGATE/.well-known/shipgate-audit.pub > shipgate-audit.pub\n\
         shipgate audit verify-evidence PACK --public-key shipgate-audit.pub\n```\n"
    );
    let _ = writeln!(
        s,
        "It needs no secret and no network. It checks, and names the first thing that fails:\n\n\
         - the manifest's signature under the App's public key (fetch that key from the App yourself: the copy in \
         the pack proves nothing on its own);\n\
         - every file listed with its SHA-256, and no file that is not listed;\n\
         - the audit entries' chain: positions without gaps, each entry's `prev_hash` the hash of the one before; an \
         entry written without an audit key hashes to its own `hash`;\n\
         - each anchor on GitHub: signed by the App's key, on an entry of the pack with that hash;\n\
         - every approval, revision, gate decision, deployment status, break-glass or freeze event and policy in the \
         JSON files is what its audit entry says, and every such entry is in them;\n\
         - this page is exactly what the JSON files say.\n"
    );
    let _ = writeln!(
        s,
        "What it cannot check offline: an entry's HMAC seal needs the audit key (`SHIPGATE_AUDIT_KEY`), which \
         stays with the App's operator. The App checked every seal in this pack under its key before signing it, as \
         it does before it anchors the log; an operator can check them again with `shipgate audit verify`. Whether \
         the log was cut short or rebuilt after the last anchor on GitHub only later anchors (later closing \
         summaries) can show. Entries of other requests in between are given as links only (position, \
         `prev_hash`, `hash`), so that the chain can be followed without disclosing them.\n"
    );

    // The request.
    let _ = writeln!(s, "## The request\n");
    let table = &request["table"];
    if table.is_null() {
        let _ = writeln!(s, "The App's tables no longer hold this request; what follows comes from the audit log.\n");
    } else {
        let _ = writeln!(
            s,
            "Asked by {} on {}, for **{}**. Now: {} ({}), revision {}, gate {}{}{}.\n",
            who(&table["author_login"], &table["author_id"]),
            time_of(&table["created_at"]),
            md_value(&table["environment"]),
            md_value(&table["state"]),
            if table["open"] == true { "open" } else { "closed" },
            md_value(&table["revision"]),
            if table["gate_open"] == true { "open" } else { "closed" },
            table["held_by"].as_str().map(|h| format!(", held by {}", md(h))).unwrap_or_default(),
            table["denied_by"]
                .as_str()
                .map(|d| format!(", denied by {} ({})", md(d), md_value(&table["deny_reason"])))
                .unwrap_or_default(),
        );
    }
    let revisions = request["revisions"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(s, "### As read at each revision\n");
    if revisions.is_empty() {
        let _ = writeln!(s, "The audit log holds no `request.parsed` entry for this request.\n");
    }
    for r in &revisions {
        let _ = writeln!(
            s,
            "**Revision {}** — entry {} (`{}`), {}, by {}:\n",
            md_value(&r["revision"]),
            md_value(&r["position"]),
            md_value(&r["kind"]),
            time_of(&r["at"]),
            who(&r["actor_login"], &r["actor_id"])
        );
        let req = &r["request"];
        if req.is_null() {
            let _ = writeln!(
                s,
                "- **Missing**: the request's text at this revision is not in the log (written before the App \
                 recorded it there). Environment: {}; pull requests: {}.\n",
                md_value(&r["environment"]),
                md_value(&r["pull_requests"])
            );
            continue;
        }
        for (label, key) in [
            ("Service", "service"),
            ("Environment", "environment"),
            ("Reason", "reason"),
            ("Downtime", "downtime"),
            ("Rollback time", "rollback_time"),
            ("Dependencies", "dependencies"),
            ("Data migration", "data_migration"),
            ("Commit", "commit"),
            ("Infrastructure changes", "infrastructure_changes"),
            ("Database migration", "database_migration"),
            ("Deployment steps", "deployment_steps"),
            ("Verification", "verification"),
            ("Rollback plan", "rollback_plan"),
            ("Documentation", "documentation"),
        ] {
            if !req[key].is_null() {
                let _ = writeln!(s, "- {label}: {}", md_value(&req[key]));
            }
        }
        let prs = req["pull_requests"].as_array().cloned().unwrap_or_default();
        if !prs.is_empty() {
            // `{"Number": 12}` or `{"Url": {"owner", "repo", "number"}}`, as the request names it.
            let pr = |v: &Value| match (&v["Number"], &v["Url"]) {
                (Value::Number(n), _) => format!("#{n}"),
                (_, u) if u.is_object() => {
                    format!("{}/{}#{}", md_value(&u["owner"]), md_value(&u["repo"]), md_value(&u["number"]))
                }
                _ => md_value(v),
            };
            let shown: Vec<String> = prs.iter().map(pr).collect();
            let _ = writeln!(s, "- Pull requests: {}", shown.join(", "));
        }
        for item in req["testing"].as_array().cloned().unwrap_or_default() {
            let tick = if item["checked"] == true { "x" } else { " " };
            let _ = writeln!(s, "- Testing: \\[{tick}\\] {}", md_value(&item["text"]));
        }
        let _ = writeln!(s);
    }

    // The policy.
    let _ = writeln!(s, "## Policy in force\n");
    let policies = data["policy.json"]["policies"].as_array().cloned().unwrap_or_default();
    if policies.is_empty() {
        let _ = writeln!(s, "**Missing**: the log records no policy for these entries.\n");
    }
    for p in &policies {
        let name = match p["blob"].as_str() {
            Some(b) => format!("`.github/shipgate.yml` blob {}", short(&json!(b))),
            None => "no `.github/shipgate.yml`: the built-in policy".into(),
        };
        let positions = |k: &str| {
            p[k].as_array().map(|a| a.iter().map(md_value).collect::<Vec<_>>().join(", ")).unwrap_or_default()
        };
        let _ = writeln!(s, "### {name}\n");
        if !positions("changed_at").is_empty() {
            let _ = writeln!(s, "- Taking effect (`policy.changed`): entries {}", positions("changed_at"));
        }
        if !positions("used_at").is_empty() {
            let _ = writeln!(s, "- In force for entries {} (as each records)", positions("used_at"));
        }
        if !positions("inferred_at").is_empty() {
            let _ = writeln!(
                s,
                "- In force for entries {} (the last `policy.changed` before them: those entries were written before \
                 they named their policy)",
                positions("inferred_at")
            );
        }
        match p["text"].as_str() {
            Some(text) => {
                let _ = writeln!(s, "- SHA-256 of the text: `{}`\n", md_value(&p["text_sha256"]).replace('`', ""));
                let _ = write!(s, "{}", fenced(text, "yaml"));
            }
            None if p["blob"].is_string() => {
                let _ = writeln!(s, "- **Missing**: its text was not kept (read before the App kept every version).");
            }
            None => {}
        }
        let _ = writeln!(s);
    }

    // Approvals.
    let _ = writeln!(s, "## Approvals\n");
    let approvals = data["approvals.json"]["approvals"].as_array().cloned().unwrap_or_default();
    if approvals.is_empty() {
        let _ = writeln!(s, "None.\n");
    } else {
        let _ =
            writeln!(s, "| Approver | Roles | Environment | For commits | Revision | Given | State now | Entries |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for a in &approvals {
            let heads: Vec<String> = a["head_shas"].as_array().cloned().unwrap_or_default().iter().map(short).collect();
            let entries: Vec<String> =
                a["entries"].as_array().cloned().unwrap_or_default().iter().map(md_value).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {}{} | {} |",
                who(&a["approver_login"], &a["approver_id"]),
                md_value(&a["roles"]),
                md_value(&a["environment"]),
                if heads.is_empty() { "—".into() } else { heads.join(", ") },
                md_value(&a["revision"]),
                time_of(&a["given_at"]),
                md_value(&a["state"]),
                a["note"].as_str().map(|n| format!(" ({})", md(n))).unwrap_or_default(),
                entries.join(", ")
            );
        }
        let _ = writeln!(s);
    }

    // Checks.
    let _ = writeln!(s, "## Gate decisions and the checks on each covered commit\n");
    let gates = data["checks.json"]["gates"].as_array().cloned().unwrap_or_default();
    if gates.is_empty() {
        let _ = writeln!(s, "The gate never opened or closed for this request.\n");
    }
    for g in &gates {
        let verb = if g["kind"] == "gate.opened" { "opened" } else { "closed" };
        let _ = writeln!(s, "### Gate {verb} — entry {}, {}\n", md_value(&g["position"]), time_of(&g["at"]));
        if let Some(covers) = g["covers"].as_array() {
            let shown: Vec<String> = covers.iter().map(short).collect();
            let _ = writeln!(s, "Covers: {}.", if shown.is_empty() { "no commit".into() } else { shown.join(", ") });
        }
        let missing = g["missing"].as_array().cloned().unwrap_or_default();
        if !missing.is_empty() {
            let shown: Vec<String> = missing.iter().map(md_value).collect();
            let _ = writeln!(s, "Missing then: {}.", shown.join("; "));
        }
        match g["commits"].as_array() {
            None => {
                let _ = writeln!(
                    s,
                    "\n**Missing**: the checks the gate read are not in this entry (written before the App recorded \
                     them). Heads: {}.\n",
                    g["heads"]
                        .as_array()
                        .map(|h| h.iter().map(short).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                );
            }
            Some(commits) if commits.is_empty() => {
                let _ = writeln!(s, "\nNo pull request: no checks were read.\n");
            }
            Some(commits) => {
                let _ = writeln!(s, "\n| PR | Commit | State | Check | Status | Conclusion |");
                let _ = writeln!(s, "|---|---|---|---|---|---|");
                for c in commits {
                    let checks = c["checks"].as_array().cloned().unwrap_or_default();
                    if checks.is_empty() {
                        let _ = writeln!(
                            s,
                            "| #{} | {} | {} | (none) | | |",
                            md_value(&c["pr"]),
                            short(&c["sha"]),
                            md_value(&c["state"])
                        );
                    }
                    for k in checks {
                        let _ = writeln!(
                            s,
                            "| #{} | {} | {} | {} | {} | {} |",
                            md_value(&c["pr"]),
                            short(&c["sha"]),
                            md_value(&c["state"]),
                            md_value(&k["name"]),
                            md_value(&k["status"]),
                            md_value(&k["conclusion"])
                        );
                    }
                }
                let _ = writeln!(s);
            }
        }
    }

    // Deployments.
    let _ = writeln!(s, "## Deployments\n");
    let deployments = data["deployments.json"]["deployments"].as_array().cloned().unwrap_or_default();
    if deployments.is_empty() {
        let _ = writeln!(s, "None.\n");
    } else {
        let _ = writeln!(
            s,
            "| | Deployment | Environment | Commit | Made by | Created | Started | Finished | State | Statuses (entries) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        for d in &deployments {
            let statuses: Vec<String> = d["entries"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|e| {
                    let state = e["state"].as_str().map(|st| format!(" {}", md(st))).unwrap_or_default();
                    format!(
                        "{}{state} at {} (entry {})",
                        md_value(&e["kind"]),
                        time_of(&e["at"]),
                        md_value(&e["position"])
                    )
                })
                .collect();
            let origin = match (d["origin"].as_str(), d["own"] == true) {
                (Some("app"), true) => "the App, for this request".to_string(),
                (Some("approved"), true) => "a run the App approved for this request".to_string(),
                (o, _) => format!("{} — **not through this request's gate**", md(o.unwrap_or("?"))),
            };
            let _ = writeln!(
                s,
                "| {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} |",
                if d["marked"] == true { "★" } else { "" },
                md_value(&d["deployment_id"]),
                if d["rollback"] == true { " (rollback)" } else { "" },
                md_value(&d["environment"]),
                short(&d["sha"]),
                origin,
                time_of(&d["created_at"]),
                time_of(&d["started_at"]),
                time_of(&d["finished_at"]),
                md_value(&d["state"]),
                if statuses.is_empty() { "—".into() } else { statuses.join("; ") }
            );
        }
        let _ = writeln!(s);
    }

    // Emergencies.
    let _ = writeln!(s, "## Break-glass and freeze\n");
    let events = data["events.json"]["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        let _ = writeln!(s, "None recorded.\n");
    } else {
        for e in &events {
            let _ = writeln!(
                s,
                "- `{}` — entry {}, {}, by {}: {}",
                md_value(&e["kind"]).replace('`', ""),
                md_value(&e["position"]),
                time_of(&e["at"]),
                who(&e["actor_login"], &e["actor_id"]),
                md_value(&e["detail"])
            );
        }
        let _ = writeln!(s);
    }

    // The log.
    let _ = writeln!(s, "## Audit log\n");
    let audit_file = &data["audit-entries.json"];
    let entries = audit_file["entries"].as_array().cloned().unwrap_or_default();
    match (audit_file["segment"]["from"].as_i64(), audit_file["segment"]["to"].as_i64()) {
        (Some(f), Some(t)) => {
            let _ = writeln!(
                s,
                "Entries {f} to {t} of installation {}'s chain (`audit-entries.json`), each with its `prev_hash`, \
                 `hash` and key id; {}.\n",
                md_value(&audit_file["installation_id"]),
                match audit_file["checked_under"].as_str() {
                    Some(k) => format!("every seal was checked under audit key {} when the pack was made", md(k)),
                    None => "written without an audit key (plain SHA-256: anyone can recompute them)".into(),
                }
            );
        }
        _ => {
            let _ = writeln!(s, "**Missing**: the audit log holds no entry of this request.\n");
        }
    }
    if !entries.is_empty() {
        let _ = writeln!(s, "| Entry | Time | Kind | By | Hash |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for e in audit_file["context"].as_array().cloned().unwrap_or_default().iter().chain(&entries) {
            if e["redacted"] == true {
                let _ = writeln!(
                    s,
                    "| {} | | (another request's entry: links only) | | {} |",
                    md_value(&e["position"]),
                    short(&e["hash"])
                );
                continue;
            }
            let _ = writeln!(
                s,
                "| {} | {} | `{}` | {} | {} |",
                md_value(&e["position"]),
                time_of(&e["at"]),
                md_value(&e["kind"]).replace('`', ""),
                who(&e["actor_login"], &e["actor_id"]),
                short(&e["hash"])
            );
        }
        let _ = writeln!(s);
    }
    let anchors = &data["anchors.json"];
    let list = anchors["anchors"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(s, "### Anchors on GitHub\n");
    if list.is_empty() {
        let _ = writeln!(
            s,
            "**Missing**: {}. Make the pack again with `--anchors` and the closing summaries' text (`gh api --paginate \
             repos/OWNER/NAME/issues/ISSUE/comments --jq '.[].body'`).\n",
            if anchors["given"] == true {
                "none of the anchors given is on this request's part of the log"
            } else {
                "no anchors were given when the pack was made"
            }
        );
    }
    for a in &list {
        let _ = writeln!(
            s,
            "- Entry {}, hash {}, signed by key {}",
            md_value(&a["position"]),
            short(&a["hash"]),
            md_value(&a["key_id"])
        );
    }
    for n in anchors["notes"].as_array().cloned().unwrap_or_default() {
        let _ = writeln!(s, "- ({})", md_value(&n));
    }
    if !list.is_empty() {
        let _ = writeln!(s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_from_the_data_cannot_make_its_own_structure() {
        assert_eq!(md("a|b\n# Approvals\n[x](http://e)"), "a\\|b \\# Approvals \\[x\\](http://e)");
        assert_eq!(md("<script>`x`"), "\\<script\\>\\`x\\`");
        let f = fenced("a\n```\nb", "yaml");
        assert!(f.starts_with("````yaml\n") && f.ends_with("\n````\n"), "{f}");
    }

    /// An unkeyed entry (a dry run's, or one written before the App had a key) after `prev`.
    fn entry(prev: Option<&AuditRow>, repository_id: i64, issue: Option<i64>, kind: &str, detail: Value) -> AuditRow {
        let mut r = AuditRow {
            seq: prev.map_or(1, |p| p.seq + 1),
            installation_id: 1,
            position: prev.map_or(1, |p| p.position + 1),
            repository_id: Some(repository_id),
            repository: Some("acme/app".into()),
            issue,
            kind: kind.into(),
            actor_id: Some(101),
            actor_login: Some("alice".into()),
            delivery_id: Some("d".into()),
            at: 1_795_942_800_000 + prev.map_or(0, |p| p.position),
            detail: audit::canonical_json(&detail),
            prev_hash: prev.map_or(audit::GENESIS.to_string(), |p| p.hash.clone()),
            hash: String::new(),
            key_id: None,
        };
        r.hash = audit::entry_hash(&r);
        r
    }

    /// A request decided by an older version: its entries say nothing of the request's text, the
    /// checks or the policy, and the policy's text was not kept. Its pack verifies and says
    /// plainly what is missing; the unkeyed entries are checked against their hashes.
    #[test]
    fn an_older_requests_pack_says_what_is_missing() {
        let sha = "a".repeat(40);
        let policy = entry(None, 10, None, "policy.changed", json!({ "blob": "b1", "yaml_sha256": "00" }));
        let parsed = entry(
            Some(&policy),
            10,
            Some(5),
            "request.parsed",
            json!({ "revision": 1, "environment": "production", "pull_requests": [12] }),
        );
        let other = entry(Some(&parsed), 11, Some(9), "request.held", json!({ "secret": "x" }));
        let opened = entry(Some(&other), 10, Some(5), "gate.opened", json!({ "missing": [], "heads": [sha] }));
        let given = entry(
            Some(&opened),
            10,
            Some(5),
            "approval.given",
            json!({
            "approver": "alice", "approver_id": 101, "roles": "[\"pm\"]", "environment": "production",
            "head_shas": sha, "revision": 1, "note": null, "comment_id": 77 }),
        );
        let g = Gathered {
            installation_id: 1,
            repository_id: 10,
            repository: "acme/app".into(),
            issue: 5,
            marked_deployment: None,
            request: None,
            approvals: vec![crate::store::requests::ApprovalRow {
                seq: 1,
                comment_id: 77,
                user_id: 101,
                login: "alice".into(),
                roles: "[\"pm\"]".into(),
                environment: "production".into(),
                head_shas: sha.clone(),
                revision: 1,
                state: "active".into(),
                note: None,
                created_at: given.at,
            }],
            deployments: vec![],
            segment: vec![parsed, other, opened, given],
            context: vec![policy],
            policy_texts: BTreeMap::new(),
            anchors: vec![],
            anchor_notes: vec![],
            anchors_given: false,
            checked_under: None,
        };
        let bundle = build(&g, 1_795_942_900_000, None);
        let v = verify(&bundle.files, None).expect("the pack verifies");
        assert_eq!(v.signed_by, None);
        assert!(v.notes.iter().any(|n| n.contains("the text of policy blob \"b1\" is not in the pack")), "{v:?}");
        let index = String::from_utf8(bundle.files[INDEX].clone()).unwrap();
        for needle in [
            "**Not signed**",
            "**Missing**: the request's text at this revision is not in the log",
            "**Missing**: the checks the gate read are not in this entry",
            "**Missing**: its text was not kept",
            "**Missing**: no anchors were given",
            "In force for entries 2, 4 (the last `policy.changed` before them",
            "| 3 | | (another request's entry: links only) |",
            "The App's tables no longer hold this request",
        ] {
            assert!(index.contains(needle), "{needle:?} not in:\n{index}");
        }
        let text = String::from_utf8(bundle.files["audit-entries.json"].clone()).unwrap();
        assert!(!text.contains("secret"), "{text}");

        // An unkeyed entry rewritten, its canonical text too: its hash no longer fits.
        let mut files = bundle.files.clone();
        let mut a: Value = serde_json::from_slice(&files["audit-entries.json"]).unwrap();
        a["entries"][2]["detail"]["missing"] = json!(["forged"]);
        a["entries"][2]["detail_canonical"] = json!(audit::canonical_json(&a["entries"][2]["detail"]));
        files.insert("audit-entries.json".into(), pretty(&a));
        let mut m: Value = serde_json::from_slice(&files[MANIFEST]).unwrap();
        for f in m["files"].as_array_mut().unwrap() {
            f["sha256"] = json!(sha256_hex(&files[f["name"].as_str().unwrap()]));
        }
        files.insert(MANIFEST.into(), pretty(&m));
        let e = verify(&files, None).unwrap_err();
        assert_eq!(e, "audit-entries.json: entry 4 does not match its hash: it was edited");

        // Signed, and checked with the key inside the pack only: valid, and said to prove nothing.
        let k = SigningKey::from_bytes(&[3u8; 32]);
        let signed = build(&g, 1_795_942_900_000, Some(&k));
        let v = verify(&signed.files, None).expect("verifies");
        assert_eq!(v.signed_by, Some((k.public().id().to_string(), false)));
        assert!(v.notes.iter().any(|n| n.contains("proves nothing by itself")), "{v:?}");
        let other = SigningKey::from_bytes(&[4u8; 32]);
        let e = verify(&signed.files, Some((other.public(), KeySource::Given))).unwrap_err();
        assert!(e.contains("is not a valid signature of MANIFEST.json by key"), "{e}");
    }

    #[test]
    fn emergencies_are_found_by_their_kinds_prefix() {
        assert!(is_emergency("breakglass.used") && is_emergency("freeze.started"));
        assert!(!is_emergency("gate.opened") && !is_emergency("freezer"));
    }
}

//! Anchors of the audit log outside the database (SPEC.md §3.6).
//!
//! The HMAC chain stops a database writer who lacks `SHIPGATE_AUDIT_KEY` from rewriting entries,
//! but not from cutting the log short (dropping its last entries, or a whole chain), and not
//! someone who has the key. So each closing summary the App posts on GitHub carries an anchor:
//! the chain's installation, its last entry's position and hash, signed with the App's Ed25519
//! key (`SHIPGATE_SIGNING_KEY`, PKCS#8 PEM). The public half is served at
//! `/.well-known/shipgate-audit.pub`, so anyone can check an anchor without a secret;
//! `shipgate audit verify --anchors FILE` checks the log against the anchors found in FILE
//! (the closing summaries' text as GitHub has it).
//!
//! The anchor is written when the comment is sent (the relay swaps [`PLACEHOLDER`] for it), from
//! the chain's last entry, and only after that entry's seal checks out under the audit key: the
//! App never signs a head that a database writer put there.
//!
//! Without a signing key an anchor carries the position and hash unsigned and says so.

use base64::Engine;
use ed25519_dalek::Signer;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use sha2::{Digest, Sha256};

use super::audit::{self, AuditKeys};
use super::{Db, Result};

/// The tag that starts an anchor's fields, in the comment and in the signed message.
pub const TAG: &str = "shipgate-audit-anchor/v1";

/// Where the relay writes the anchor in a comment's body.
pub use crate::domain::messages::AUDIT_ANCHOR as PLACEHOLDER;

/// The App's Ed25519 signing key.
#[derive(Clone)]
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public.id)
    }
}

impl SigningKey {
    /// From PKCS#8 PEM text (`openssl genpkey -algorithm ed25519`).
    pub fn from_pem(pem: &str) -> std::result::Result<SigningKey, String> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| {
            format!(
                "not an Ed25519 private key in PKCS#8 PEM ({e}); make one with `openssl genpkey -algorithm ed25519`"
            )
        })?;
        let public = PublicKey::new(key.verifying_key());
        Ok(SigningKey { key, public })
    }

    /// From 32 secret bytes (tests).
    pub fn from_bytes(bytes: &[u8; 32]) -> SigningKey {
        let key = ed25519_dalek::SigningKey::from_bytes(bytes);
        let public = PublicKey::new(key.verifying_key());
        SigningKey { key, public }
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, message: &str) -> String {
        self.sign_bytes(message.as_bytes())
    }

    /// An Ed25519 signature of `bytes`, base64 (an evidence pack's `MANIFEST.sig`).
    pub fn sign_bytes(&self, bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.sign(bytes).to_bytes())
    }
}

/// The public half: what `/.well-known/shipgate-audit.pub` serves and anchors are checked with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key: ed25519_dalek::VerifyingKey,
    /// The first 16 hex digits of the SHA-256 of the raw public key: which key signed an anchor.
    id: String,
}

impl PublicKey {
    fn new(key: ed25519_dalek::VerifyingKey) -> PublicKey {
        let id = hex::encode(Sha256::digest(key.as_bytes()))[..16].to_string();
        PublicKey { key, id }
    }

    /// From SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), as served.
    pub fn from_pem(pem: &str) -> std::result::Result<PublicKey, String> {
        ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim())
            .map(PublicKey::new)
            .map_err(|e| format!("not an Ed25519 public key in PEM ({e})"))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn to_pem(&self) -> String {
        self.key.to_public_key_pem(Default::default()).expect("an Ed25519 public key encodes")
    }

    fn verify(&self, message: &str, signature: &str) -> bool {
        self.verify_bytes(message.as_bytes(), signature)
    }

    /// Whether `signature` (base64, surrounding white space ignored) is this key's Ed25519
    /// signature of `message`.
    pub fn verify_bytes(&self, message: &[u8], signature: &str) -> bool {
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(&bytes) else {
            return false;
        };
        self.key.verify_strict(message, &sig).is_ok()
    }
}

/// A chain's position and hash, as anchored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub installation_id: i64,
    pub position: i64,
    pub hash: String,
    /// The signing key's id and the signature (base64), or None: unsigned.
    pub signature: Option<(String, String)>,
}

impl Anchor {
    /// What is signed.
    fn message(&self) -> String {
        format!("{TAG} installation={} entry={} sha256={}", self.installation_id, self.position, self.hash)
    }

    fn signed(installation_id: i64, position: i64, hash: String, key: Option<&SigningKey>) -> Anchor {
        let mut a = Anchor { installation_id, position, hash, signature: None };
        if let Some(k) = key {
            a.signature = Some((k.public.id.clone(), k.sign(&a.message())));
        }
        a
    }

    /// The line in a comment: readable, and parsed back by [`parse_all`].
    pub fn render(&self) -> String {
        let fields = match &self.signature {
            Some((key, sig)) => format!("{} key={key} ed25519={sig}", self.message()),
            None => format!("{} unsigned", self.message()),
        };
        let how = match &self.signature {
            Some(_) => "signed with the App's key (public half at `/.well-known/shipgate-audit.pub`)",
            None => "not signed: the App has no SHIPGATE_SIGNING_KEY",
        };
        format!("<sub>Audit log anchor, {how}: {fields}</sub>")
    }

    /// Whether the signature checks out under `key` (false when unsigned or by another key).
    pub fn verify(&self, key: &PublicKey) -> bool {
        match &self.signature {
            Some((id, sig)) => *id == key.id && key.verify(&self.message(), sig),
            None => false,
        }
    }
}

/// Every anchor in `text` (comments as GitHub has them, one after another, in any wrapping),
/// or why one that starts with the tag does not parse.
pub fn parse_all(text: &str) -> Vec<std::result::Result<Anchor, String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(TAG) {
        rest = &rest[at + TAG.len()..];
        let end = rest.find(['<', '\n', '"', '\\']).unwrap_or(rest.len());
        out.push(parse_fields(&rest[..end]));
    }
    out
}

fn parse_fields(fields: &str) -> std::result::Result<Anchor, String> {
    let (mut installation, mut position, mut hash, mut key, mut sig, mut unsigned) =
        (None, None, None, None, None, false);
    for token in fields.split_whitespace() {
        match token.split_once('=') {
            Some(("installation", v)) => installation = v.parse::<i64>().ok(),
            Some(("entry", v)) => position = v.parse::<i64>().ok(),
            Some(("sha256", v)) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                hash = Some(v.to_ascii_lowercase())
            }
            Some(("key", v)) => key = Some(v.to_string()),
            Some(("ed25519", v)) => sig = Some(v.to_string()),
            None if token == "unsigned" => unsigned = true,
            _ => {}
        }
    }
    let what = format!("{TAG}{}", fields.trim_end());
    match (installation, position, hash) {
        (Some(installation_id), Some(position), Some(hash)) if position >= 0 => {
            let signature = match (key, sig, unsigned) {
                (Some(k), Some(s), false) => Some((k, s)),
                (None, None, true) => None,
                _ => return Err(format!("an anchor with neither a whole signature nor `unsigned`: {what}")),
            };
            Ok(Anchor { installation_id, position, hash, signature })
        }
        _ => Err(format!("an anchor without installation, entry and sha256: {what}")),
    }
}

/// The anchor of installation `installation_id`'s chain as it stands: its last entry, once its
/// seal checks out under `keys`. Err (never an anchor) when it does not: the text says why.
pub async fn current(
    db: &Db,
    installation_id: i64,
    keys: &AuditKeys,
    signing: Option<&SigningKey>,
) -> Result<std::result::Result<Anchor, String>> {
    let Some(last) = audit::last_entry(db, installation_id).await? else {
        return Ok(Ok(Anchor::signed(installation_id, 0, audit::GENESIS.into(), signing)));
    };
    if let Some(current) = &keys.current
        && last.key_id.as_deref() != Some(current.id())
    {
        return Ok(Err(format!("entry {} is not sealed under the current audit key", last.position)));
    }
    if audit::expected_hash(&last, keys).as_deref() != Some(last.hash.as_str()) {
        return Ok(Err(format!("entry {}'s seal does not check out under the audit key", last.position)));
    }
    Ok(Ok(Anchor::signed(installation_id, last.position, last.hash, signing)))
}

/// The anchor's line for a comment that carries [`PLACEHOLDER`]: the anchor, or a loud line
/// saying why there is none (the log needs checking).
pub async fn render_current(
    db: &Db,
    installation_id: i64,
    keys: &AuditKeys,
    signing: Option<&SigningKey>,
) -> Result<String> {
    Ok(match current(db, installation_id, keys, signing).await? {
        Ok(a) => a.render(),
        Err(why) => {
            tracing::error!(installation = installation_id, why = %why, "audit log anchor withheld");
            metrics::counter!("shipgate_audit_anchor_withheld_total").increment(1);
            format!("<sub>⚠️ Audit log anchor withheld: {why}. An operator should run `shipgate audit verify`.</sub>")
        }
    })
}

/// What checking one anchor against the log found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// The chain holds the anchored entry with the anchored hash; signed by the key given.
    Matches { signed: bool },
    /// The signature does not check out under the public key (or another key signed it).
    BadSignature { key_id: Option<String> },
    /// The chain has fewer entries than the anchor's position: it was cut short.
    Missing { entries: i64 },
    /// The entry at the anchored position has another hash: it was rewritten.
    Differs { found: String },
}

/// Checks `anchor` against the stored chain (its entry at the anchored position) and, when
/// `key` is given, its signature. The chain's own links are [`audit::verify`]'s business: an
/// anchor vouches for a prefix, and verify for each link of it.
pub async fn check(db: &Db, anchor: &Anchor, key: Option<&PublicKey>) -> Result<Check> {
    if let Some(k) = key
        && !anchor.verify(k)
        && anchor.signature.is_some()
    {
        return Ok(Check::BadSignature { key_id: anchor.signature.as_ref().map(|s| s.0.clone()) });
    }
    if anchor.position == 0 {
        if anchor.hash != audit::GENESIS {
            return Ok(Check::Differs { found: audit::GENESIS.into() });
        }
        return Ok(Check::Matches { signed: anchor.signature.is_some() && key.is_some() });
    }
    match audit::entry_at(db, anchor.installation_id, anchor.position).await? {
        None => Ok(Check::Missing { entries: audit::chain_length(db, anchor.installation_id).await? }),
        Some(row) if row.hash != anchor.hash => Ok(Check::Differs { found: row.hash }),
        Some(_) => Ok(Check::Matches { signed: anchor.signature.is_some() && key.is_some() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn an_anchor_renders_parses_back_and_verifies() {
        let k = key();
        let a = Anchor::signed(42, 17, "ab".repeat(32), Some(&k));
        let text = format!("## done\n\nsome table\n\n{}\n", a.render());
        let found = parse_all(&text);
        assert_eq!(found, vec![Ok(a.clone())]);
        assert!(a.verify(k.public()));
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert!(!a.verify(other.public()), "another key");
        let mut forged = a.clone();
        forged.position = 18;
        assert!(!forged.verify(k.public()), "a changed position");
        let mut forged = a;
        forged.hash = "cd".repeat(32);
        assert!(!forged.verify(k.public()), "a changed hash");
    }

    #[test]
    fn unsigned_anchors_say_so_and_never_verify() {
        let a = Anchor::signed(1, 3, "00".repeat(32), None);
        assert!(a.render().contains("unsigned"), "{}", a.render());
        assert_eq!(parse_all(&a.render()), vec![Ok(a.clone())]);
        assert!(!a.verify(key().public()));
    }

    #[test]
    fn anchors_are_found_in_json_escaped_text_and_bad_ones_named() {
        let a = Anchor::signed(5, 9, "ef".repeat(32), Some(&key()));
        let json = serde_json::to_string(&serde_json::json!([{ "body": format!("x\n{}\ny", a.render()) }])).unwrap();
        assert_eq!(parse_all(&json), vec![Ok(a)]);
        let bad =
            parse_all(&format!("{TAG} installation=1 entry=2\n{TAG} installation=1 entry=2 sha256={}", "0".repeat(64)));
        assert_eq!(bad.len(), 2);
        assert!(bad[0].as_ref().unwrap_err().contains("without installation"), "{bad:?}");
        assert!(bad[1].as_ref().unwrap_err().contains("neither a whole signature"), "{bad:?}");
    }

    #[test]
    fn keys_load_from_pem_and_the_public_half_round_trips() {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let pem = key().key.to_pkcs8_pem(Default::default()).unwrap();
        let k = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(k.public(), key().public());
        assert_eq!(PublicKey::from_pem(&k.public().to_pem()).unwrap(), *k.public());
        let e = SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").unwrap_err();
        assert!(e.contains("openssl genpkey -algorithm ed25519"), "{e}");
    }
}

//! The credentials file `/setup` writes (SQLite only): the GitHub App's id, private key and
//! webhook secret, and the audit and signing keys it generated, as `KEY=VALUE` lines beside the
//! database (`shipgate.db` → `shipgate.credentials.env`), mode 0600. `Config::from_env` reads it;
//! the process environment wins over it, variable by variable.
//!
//! PostgreSQL replicas never read it: their secrets belong in a secret manager (README,
//! "Registering the App in one click").

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::Secret;

/// What replaces the database file's extension.
pub const EXTENSION: &str = "credentials.env";

/// The variables the file may hold. Anything else in it is refused, so a hand-edited file cannot
/// quietly change other settings.
pub const VARIABLES: &[&str] =
    &["GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET", "SHIPGATE_AUDIT_KEY", "SHIPGATE_SIGNING_KEY"];

/// Variables that say the same thing in two ways: one of a group set in the environment hides
/// the whole group in the file (a key given by path in the environment is not mixed with the
/// file's key text).
const GROUPS: &[&[&str]] = &[
    &["GITHUB_APP_ID", "GITHUB_CLIENT_ID"],
    &["GITHUB_PRIVATE_KEY", "GITHUB_PRIVATE_KEY_PATH"],
    &["SHIPGATE_SIGNING_KEY", "SHIPGATE_SIGNING_KEY_PATH"],
];

/// The credentials file of a `DATABASE_URL`: the SQLite file's path with its extension replaced
/// by `credentials.env`, in the same directory. None for PostgreSQL and in-memory databases.
pub fn path_for(database_url: &str) -> Option<PathBuf> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        return None;
    }
    let path =
        database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:")).unwrap_or(database_url);
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(Path::new(path).with_extension(EXTENSION))
}

/// A file read: its variables, and what is wrong with how it is kept.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    vars: Vec<(String, Secret)>,
    /// A file others may read (mode wider than 0600): said at start-up, not refused.
    pub warnings: Vec<String>,
}

impl Loaded {
    /// The file's value of `var`, unless `env` sets it or another variable of its group.
    pub fn get_unless_env(&self, var: &str, env: &impl Fn(&str) -> Option<String>) -> Option<String> {
        let group: &[&str] = GROUPS.iter().find(|g| g.contains(&var)).copied().unwrap_or(&[]);
        if env(var).is_some() || group.iter().any(|v| env(v).is_some()) {
            return None;
        }
        self.vars.iter().find(|(k, _)| k == var).map(|(_, v)| v.expose().to_string())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|(k, _)| k.as_str())
    }
}

/// Reads the file at `path`, if there is one. An unreadable or malformed file is an error naming
/// the file and the line, never a value.
pub fn load(path: &Path) -> Result<Option<Loaded>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {} ({e})", path.display())),
    };
    let vars = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut warnings = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            // Others may change it: whoever could would choose the App's key and secrets.
            if mode & 0o022 != 0 {
                return Err(format!(
                    "{} holds the App's credentials but others may write to it (mode {mode:o}): `chmod 600 {}` \
                     after checking its content",
                    path.display(),
                    path.display()
                ));
            }
            if mode & 0o077 != 0 {
                warnings.push(format!(
                    "{} holds the App's private key and secrets but others may read it (mode {mode:o}): \
                     `chmod 600 {}`",
                    path.display(),
                    path.display()
                ));
            }
        }
    }
    Ok(Some(Loaded { path: path.to_path_buf(), vars, warnings }))
}

/// `KEY=VALUE` lines; blank lines and `#` comments are skipped. A value in single or double quotes
/// loses them; nothing else is unescaped (`\n` in a PEM stands for a line break: the configuration
/// turns it back).
pub fn parse(text: &str) -> Result<Vec<(String, Secret)>, String> {
    let mut out: Vec<(String, Secret)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {} is not KEY=VALUE", i + 1));
        };
        let key = key.trim();
        if !VARIABLES.contains(&key) {
            return Err(format!("line {}: {key:?} is not one of {}", i + 1, VARIABLES.join(", ")));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(format!("line {}: {key} is given twice", i + 1));
        }
        let value = value.trim();
        let unquoted =
            ['\'', '"'].iter().find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q))).unwrap_or(value);
        out.push((key.to_string(), Secret::new(unquoted)));
    }
    Ok(out)
}

/// What GitHub gave back for the App registered from the manifest.
#[derive(Debug)]
pub struct Registered {
    pub app_id: i64,
    pub slug: String,
    pub owner: String,
    pub private_key_pem: Secret,
    pub webhook_secret: Secret,
}

/// The file's text: a header saying what it is and how to move it, then the variables, each in
/// single quotes so that a shell can load the file as it is (`set -a; . ./FILE`). The audit and
/// signing keys only when given (made because the environment had none).
pub fn render(
    app: &Registered,
    audit_key: Option<&Secret>,
    signing_key_pem: Option<&Secret>,
    written_at: &str,
) -> Result<String, String> {
    let one_line = |var: &str, v: &str| -> Result<String, String> {
        let v = v.replace("\r\n", "\n").trim().replace('\n', "\\n");
        if v.is_empty() || v.chars().any(|c| c.is_control() || c == '\'') {
            return Err(format!("{var} is empty or holds control characters or quotes"));
        }
        Ok(format!("{var}='{v}'\n"))
    };
    // What GitHub named the App and its owner: a slug or login, never anything a line could hold.
    let name = |what: &str, v: &str| -> Result<(), String> {
        let ok = (1..=100).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok { Ok(()) } else { Err(format!("GitHub's answer names the App's {what} {v:?}, not a GitHub name")) }
    };
    name("slug", &app.slug)?;
    name("owner", &app.owner)?;
    let secret = app.webhook_secret.expose();
    if secret.len() < crate::config::MIN_WEBHOOK_SECRET_LEN || secret.contains(',') || secret.trim() != secret {
        return Err(format!(
            "GitHub's webhook secret cannot be used as GITHUB_WEBHOOK_SECRET (shorter than {} characters, or holding \
             a comma or surrounding spaces)",
            crate::config::MIN_WEBHOOK_SECRET_LEN
        ));
    }
    let mut s = format!(
        "# shipgate: the GitHub App's credentials, written by /setup at {written_at} for the App {slug} (id {id}) of {owner}.\n\
         # Read at every start of shipgate on this SQLite database; the environment wins over it, variable by variable.\n\
         # Keep it like the private key it holds: mode 0600, readable by the App's user only, never in a repository or a backup others read.\n\
         # PostgreSQL replicas do not read it: move each variable below into your secret manager, to be given to every replica\n\
         # as an environment variable (fly secrets set, a Kubernetes Secret, ...), then delete this file. README.md says more.\n\
         # The values are quoted for a shell: `set -a; . ./THIS-FILE; set +a` loads them (`\\n` stands for a line break).\n",
        slug = app.slug,
        id = app.app_id,
        owner = app.owner,
    );
    s += &format!("GITHUB_APP_ID='{}'\n", app.app_id);
    s += &one_line("GITHUB_PRIVATE_KEY", app.private_key_pem.expose())?;
    s += &one_line("GITHUB_WEBHOOK_SECRET", app.webhook_secret.expose())?;
    if let Some(k) = audit_key {
        s += &one_line("SHIPGATE_AUDIT_KEY", k.expose())?;
    }
    if let Some(k) = signing_key_pem {
        s += &one_line("SHIPGATE_SIGNING_KEY", k.expose())?;
    }
    Ok(s)
}

/// Writes `text` to `path`, which must not exist yet: a temporary file in the same directory,
/// created with mode 0600 and synced, is linked to `path` (which fails if `path` exists, so two
/// writers can never both succeed, nor one overwrite a file), then removed; the directory is
/// synced.
pub fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if path.exists() {
        return Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
    }
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", hex::encode(nonce)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    result?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// 32 random bytes as 64 hex digits: a new `SHIPGATE_AUDIT_KEY`.
pub fn new_audit_key() -> Result<Secret, String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness from the operating system: {e}"))?;
    Ok(Secret::new(hex::encode(bytes)))
}

/// A new Ed25519 key in PKCS#8 PEM (what `openssl genpkey -algorithm ed25519` writes): a new
/// `SHIPGATE_SIGNING_KEY`.
pub fn new_signing_key_pem() -> Result<Secret, String> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness from the operating system: {e}"))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&bytes);
    let pem = key.to_pkcs8_pem(Default::default()).map_err(|e| format!("cannot encode the signing key: {e}"))?;
    Ok(Secret::new(pem.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_sits_beside_the_sqlite_database() {
        assert_eq!(path_for("sqlite://shipgate.db"), Some(PathBuf::from("shipgate.credentials.env")));
        assert_eq!(
            path_for("sqlite:///var/lib/sg/app.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/sg/app.credentials.env"))
        );
        assert_eq!(path_for("sqlite:data/x.sqlite3"), Some(PathBuf::from("data/x.credentials.env")));
        assert_eq!(path_for("/srv/state"), Some(PathBuf::from("/srv/state.credentials.env")));
        assert_eq!(path_for("postgres://u@h/db"), None);
        assert_eq!(path_for("postgresql://h/db"), None);
        assert_eq!(path_for("sqlite://:memory:"), None);
    }

    fn registered() -> Registered {
        Registered {
            app_id: 77,
            slug: "shipgate-acme".into(),
            owner: "acme".into(),
            private_key_pem: Secret::new("-----BEGIN RSA PRIVATE KEY-----\nAAA\nBBB\n-----END RSA PRIVATE KEY-----\n"),
            webhook_secret: Secret::new("0123456789abcdef0123"),
        }
    }

    #[test]
    fn rendered_files_parse_back_and_say_what_they_are() {
        let audit = new_audit_key().expect("key");
        assert_eq!(audit.expose().len(), 64);
        let signing = new_signing_key_pem().expect("key");
        assert!(
            crate::store::anchor::SigningKey::from_pem(signing.expose()).is_ok(),
            "a key SHIPGATE_SIGNING_KEY takes"
        );
        let text = render(&registered(), Some(&audit), Some(&signing), "2026-12-01T10:00:00Z").expect("render");
        assert!(text.starts_with("# shipgate: the GitHub App's credentials"), "{text}");
        assert!(text.contains("secret manager"), "{text}");
        let vars = parse(&text).expect("parses");
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.expose().to_string());
        assert_eq!(get("GITHUB_APP_ID").as_deref(), Some("77"));
        assert_eq!(
            get("GITHUB_PRIVATE_KEY").as_deref(),
            Some("-----BEGIN RSA PRIVATE KEY-----\\nAAA\\nBBB\\n-----END RSA PRIVATE KEY-----")
        );
        assert_eq!(get("SHIPGATE_AUDIT_KEY").as_deref(), Some(audit.expose()));
        let pem = get("SHIPGATE_SIGNING_KEY").expect("signing key").replace("\\n", "\n");
        assert!(crate::store::anchor::SigningKey::from_pem(&pem).is_ok());
        // Without generated keys, neither line.
        let text = render(&registered(), None, None, "now").expect("render");
        assert!(!text.contains("SHIPGATE_AUDIT_KEY=") && !text.contains("SHIPGATE_SIGNING_KEY="), "{text}");
        let mut bad = registered();
        bad.webhook_secret = Secret::new("a\u{7}b");
        assert!(render(&bad, None, None, "now").is_err());
    }

    #[test]
    fn malformed_files_name_the_line_never_the_value() {
        let e = parse("GITHUB_APP_ID=1\nno-equals-sign-hunter2\n").unwrap_err();
        assert_eq!(e, "line 2 is not KEY=VALUE");
        let e = parse("DATABASE_URL=postgres://x\n").unwrap_err();
        assert!(e.starts_with("line 1: \"DATABASE_URL\" is not one of"), "{e}");
        let e = parse("GITHUB_APP_ID=1\nGITHUB_APP_ID=2\n").unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn written_once_with_mode_0600_and_never_over_a_file() {
        let dir = tempfile_dir();
        let path = dir.join("shipgate.credentials.env");
        write_new(&path, "GITHUB_APP_ID=1\n").expect("written");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "GITHUB_APP_ID=1\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        }
        let e = write_new(&path, "GITHUB_APP_ID=2\n").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "GITHUB_APP_ID=1\n");
        let left: Vec<_> = std::fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
        let loaded = load(&path).expect("loads").expect("exists");
        assert!(loaded.warnings.is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let loaded = load(&path).expect("loads").expect("exists");
            assert!(loaded.warnings[0].contains("mode 644"), "{:?}", loaded.warnings);
        }
        assert!(load(&dir.join("none.env")).expect("no file is fine").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_environment_hides_the_file_variable_by_variable_and_group_by_group() {
        let loaded = Loaded {
            path: "x".into(),
            vars: parse("GITHUB_APP_ID=1\nGITHUB_PRIVATE_KEY=PEM\nSHIPGATE_AUDIT_KEY=file-key\n").expect("parse"),
            warnings: vec![],
        };
        let env = |k: &str| (k == "GITHUB_PRIVATE_KEY_PATH" || k == "SHIPGATE_AUDIT_KEY").then(|| "env".to_string());
        assert_eq!(loaded.get_unless_env("GITHUB_APP_ID", &env).as_deref(), Some("1"));
        assert_eq!(loaded.get_unless_env("GITHUB_PRIVATE_KEY", &env), None, "a key path in the environment");
        assert_eq!(loaded.get_unless_env("SHIPGATE_AUDIT_KEY", &env), None);
        assert_eq!(loaded.get_unless_env("SHIPGATE_SIGNING_KEY", &env), None, "not in the file");
    }

    /// Review 18b: the header comment takes GitHub's slug and owner as they come; a line break in
    /// either (a malicious or broken GitHub Enterprise Server, or a man in the middle of its API)
    /// adds a line of its own to the file: a variable (here an audit key the attacker knows, read by
    /// every later start when the environment sets none), or a duplicate that stops every start.
    #[test]
    fn review18b_a_slug_or_owner_cannot_add_a_line_to_the_file() {
        let mut problems = Vec::new();
        // A slug that adds a variable the file did not have (the environment set the audit key,
        // so /setup made none: the file now carries one the attacker chose); an owner that
        // repeats one (every start stops on "given twice").
        let injected = [
            ("slug", format!("x\nSHIPGATE_AUDIT_KEY={}\n#", "0".repeat(64))),
            ("owner", "acme\nGITHUB_WEBHOOK_SECRET=attacker-known-secret-1234\n#".to_string()),
        ];
        for (field, value) in injected {
            let mut app = registered();
            if field == "slug" {
                app.slug = value;
            } else {
                app.owner = value;
            }
            let Ok(text) = render(&app, None, None, "now") else { continue };
            match parse(&text) {
                Err(e) => problems.push(format!("{field}: the file does not read back ({e})")),
                Ok(vars) => {
                    let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
                    if names != ["GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET"] {
                        problems.push(format!("{field}: the file holds {names:?}"));
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }

    /// Review 18b: `GITHUB_WEBHOOK_SECRET` is comma-separated (rotation), but the file's value is
    /// written as it came: a secret holding a comma comes back as two secrets, each half
    /// accepted on its own (half the strength), and GitHub's whole secret matches neither.
    #[test]
    fn review18b_the_webhook_secret_round_trips_through_the_file() {
        let dir = tempfile_dir();
        let db = format!("sqlite://{}", dir.join("app.db").display());
        let pem = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-app-key.pem"))
            .expect("key");
        let secret = "0123456789abcdef,fedcba9876543210";
        let mut app = registered();
        app.private_key_pem = Secret::new(pem);
        app.webhook_secret = Secret::new(secret);
        let audit = new_audit_key().expect("key");
        let Ok(text) = render(&app, Some(&audit), None, "now") else { return };
        write_new(&dir.join("app.credentials.env"), &text).expect("written");
        let env = |k: &str| (k == "DATABASE_URL").then(|| db.clone());
        let cfg = crate::config::Config::from_env_and_file(env).expect("config");
        let got: Vec<&str> = cfg.webhook_secrets.iter().map(|s| s.expose()).collect();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(got, [secret], "the secret GitHub gave, whole");
    }

    /// Review 18b: a credentials file others may write (group or world write bit: a file put in
    /// place by hand, a `chmod 666` to "fix" a read error, a copy through a tool that keeps no
    /// modes) lets any local user swap the webhook secret or the App's key; it is only warned
    /// about, and the start goes on with whatever it holds.
    #[cfg(unix)]
    #[test]
    fn review18b_a_file_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile_dir();
        let path = dir.join("shipgate.credentials.env");
        write_new(&path, "GITHUB_WEBHOOK_SECRET='0123456789abcdef0123'\n").expect("written");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let loaded = load(&path);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            loaded.is_err(),
            "a world-writable credentials file is used: {:?}",
            loaded.map(|l| l.map(|l| l.warnings))
        );
    }

    fn tempfile_dir() -> PathBuf {
        let mut n = [0u8; 8];
        getrandom::getrandom(&mut n).expect("random");
        let d = std::env::temp_dir().join(format!("shipgate-cred-{}", hex::encode(n)));
        std::fs::create_dir_all(&d).expect("dir");
        d
    }
}

//! The few fields of a webhook body the intake needs: action, installation, repository and the
//! subject (the issue or PR a delivery is about) that orders processing.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub installation: Option<Id>,
    #[serde(default)]
    pub repository: Option<Repo>,
    #[serde(default)]
    pub issue: Option<Numbered>,
    #[serde(default)]
    pub pull_request: Option<Numbered>,
    /// The commit of a `check_run` or `check_suite` event.
    #[serde(default)]
    pub check_run: Option<Commit>,
    #[serde(default)]
    pub check_suite: Option<Commit>,
    /// The commit of a `status` event.
    #[serde(default)]
    pub sha: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Commit {
    #[serde(default)]
    pub head_sha: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Id {
    pub id: i64,
}

#[derive(Debug, Deserialize)]
pub struct Repo {
    pub id: i64,
    pub full_name: String,
}

#[derive(Debug, Deserialize)]
pub struct Numbered {
    #[serde(default)]
    pub number: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error("the body is not valid JSON: {0}")]
    Json(String),
}

impl Envelope {
    pub fn parse(body: &[u8]) -> Result<Envelope, EnvelopeError> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(EnvelopeError::NotAnObject);
        }
        serde_json::from_slice(body).map_err(|e| EnvelopeError::Json(e.to_string()))
    }

    /// Deliveries about one issue or pull request, or else one commit's checks, or else one
    /// repository, or else one installation, are processed one at a time and in arrival order.
    ///
    /// A check event (`check_run`, `check_suite`, `status`) only finds the requests linking its
    /// commit and hands them the news on their own subjects, so a repository's check events
    /// need an order per commit only: on one subject per repository, a monorepo's CI queued up
    /// behind itself (~130 a second on PostgreSQL, docs/benchmarks.md). `workflow_run` keeps the
    /// repository's subject: its CI incidents and PR comments are read and written per workflow.
    pub fn subject(&self, event: &str) -> String {
        let number =
            self.issue.as_ref().and_then(|i| i.number).or_else(|| self.pull_request.as_ref().and_then(|p| p.number));
        let commit = match event {
            "check_run" => self.check_run.as_ref().and_then(|c| c.head_sha.as_deref()),
            "check_suite" => self.check_suite.as_ref().and_then(|c| c.head_sha.as_deref()),
            "status" => self.sha.as_deref(),
            _ => None,
        }
        .filter(|sha| (1..=64).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit()));
        match (&self.repository, number, commit, &self.installation) {
            (Some(r), Some(n), _, _) => format!("repo:{}#{}", r.id, n),
            (Some(r), None, Some(sha), _) => format!("repo:{}@{}", r.id, sha.to_ascii_lowercase()),
            (Some(r), None, None, _) => format!("repo:{}", r.id),
            (None, _, _, Some(i)) => format!("installation:{}", i.id),
            (None, _, _, None) => "app".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_objects() {
        for body in [&b"[1,2]"[..], b"", b"  ", b"null", b"\"x\"", b"3"] {
            assert_eq!(Envelope::parse(body).unwrap_err(), EnvelopeError::NotAnObject, "{body:?}");
        }
        assert!(matches!(Envelope::parse(b"{\"a\":"), Err(EnvelopeError::Json(_))));
        assert!(matches!(Envelope::parse(b"{} trailing"), Err(EnvelopeError::Json(_))));
    }

    #[test]
    fn subjects() {
        let e = Envelope::parse(br#"{"action":"created","issue":{"number":7},"repository":{"id":3,"full_name":"o/r"},"installation":{"id":9}}"#).unwrap();
        assert_eq!(e.subject("issue_comment"), "repo:3#7");
        let e = Envelope::parse(br#"{"pull_request":{"number":8},"repository":{"id":3,"full_name":"o/r"}}"#).unwrap();
        assert_eq!(e.subject("pull_request"), "repo:3#8");
        let e = Envelope::parse(br#"{"repository":{"id":3,"full_name":"o/r"}}"#).unwrap();
        assert_eq!(e.subject("push"), "repo:3");
        let e = Envelope::parse(br#"{"installation":{"id":9}}"#).unwrap();
        assert_eq!(e.subject("installation"), "installation:9");
        assert_eq!(Envelope::parse(b"{}").unwrap().subject("ping"), "app");
    }

    #[test]
    fn check_events_are_ordered_per_commit() {
        let repo = r#""repository":{"id":3,"full_name":"o/r"}"#;
        let parse = |s: String| Envelope::parse(s.as_bytes()).unwrap();
        let run = parse(format!(r#"{{"check_run":{{"head_sha":"ABC123","check_suite":{{"head_sha":"x"}}}},{repo}}}"#));
        assert_eq!(run.subject("check_run"), "repo:3@abc123");
        let suite = parse(format!(r#"{{"check_suite":{{"head_sha":"abc123"}},{repo}}}"#));
        assert_eq!(suite.subject("check_suite"), "repo:3@abc123");
        let status = parse(format!(r#"{{"sha":"abc123",{repo}}}"#));
        assert_eq!(status.subject("status"), "repo:3@abc123");
        // Only check events, and only a commit that is one: anything else keeps the repository's.
        assert_eq!(status.subject("push"), "repo:3");
        for sha in ["", "not-a-sha", "abc/../x", &"a".repeat(65)] {
            let e = parse(format!(r#"{{"sha":{},{repo}}}"#, serde_json::json!(sha)));
            assert_eq!(e.subject("status"), "repo:3", "{sha:?}");
        }
        // A check event about a pull request's number is still that PR's (none do today).
        let pr = parse(format!(r#"{{"sha":"abc","pull_request":{{"number":8}},{repo}}}"#));
        assert_eq!(pr.subject("status"), "repo:3#8");
    }
}

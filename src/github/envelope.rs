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

    /// Deliveries about one issue or pull request, or else one repository, or else one
    /// installation, are processed one at a time and in arrival order.
    pub fn subject(&self) -> String {
        let number =
            self.issue.as_ref().and_then(|i| i.number).or_else(|| self.pull_request.as_ref().and_then(|p| p.number));
        match (&self.repository, number, &self.installation) {
            (Some(r), Some(n), _) => format!("repo:{}#{}", r.id, n),
            (Some(r), None, _) => format!("repo:{}", r.id),
            (None, _, Some(i)) => format!("installation:{}", i.id),
            (None, _, None) => "app".to_string(),
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
        assert_eq!(e.subject(), "repo:3#7");
        let e = Envelope::parse(br#"{"pull_request":{"number":8},"repository":{"id":3,"full_name":"o/r"}}"#).unwrap();
        assert_eq!(e.subject(), "repo:3#8");
        let e = Envelope::parse(br#"{"repository":{"id":3,"full_name":"o/r"}}"#).unwrap();
        assert_eq!(e.subject(), "repo:3");
        let e = Envelope::parse(br#"{"installation":{"id":9}}"#).unwrap();
        assert_eq!(e.subject(), "installation:9");
        assert_eq!(Envelope::parse(b"{}").unwrap().subject(), "app");
    }
}

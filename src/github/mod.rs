//! Everything about GitHub's side: webhook bodies (and, later, the API client).

pub mod envelope;
pub mod signature;

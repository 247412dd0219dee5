//! Everything about GitHub's side: webhook bodies (and, later, the API client).

pub mod actions;
pub mod auth;
pub mod client;
pub mod envelope;
pub mod events;
pub mod facts;
pub mod manifest;
pub mod oidc;
pub mod redelivery;
pub mod signature;

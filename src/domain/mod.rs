//! The domain: plain Rust, no I/O, no async. Parsers for the repository policy
//! (`.github/shipgate.yml`), the change request in an issue body, and the commands in comments;
//! gate evaluation and the messages the App writes.

pub mod commands;
pub mod gate;
pub mod messages;
pub mod policy;
pub mod request;

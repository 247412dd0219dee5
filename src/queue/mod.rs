//! The inbox's two ends: group-committed intake, and the worker that claims and processes.

pub mod ingest;
pub mod worker;

//! Queues: the group-committed intake, the generic leased-queue runner, and its jobs.

pub mod coalescer;
pub mod completer;
pub mod ingest;
pub mod relay;
pub mod runner;
pub mod worker;

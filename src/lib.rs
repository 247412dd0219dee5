//! shipgate: a GitHub App that turns `DEPLOYMENT_REQUEST` issues into an approval gate and failed
//! CI into tracked incidents. See README.md and docs/.

pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod domain;
pub mod evidence;
pub mod github;
pub mod handlers;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod queue;
pub mod server;
pub mod simulate;
pub mod store;
pub mod telemetry;

//! writer-sync: keeps a Writer organization in step with Okta by pulling.
//!
//! The binary (`src/main.rs`) is a thin shell over this library; the module
//! map and each module's invariant are in ARCHITECTURE.md.

pub mod check;
pub mod config;
pub mod daemon;
pub mod fsperm;
pub mod metrics;
pub mod model;
pub mod okta;
pub mod reconcile;
pub mod secret;
pub mod server;
pub mod store;
pub mod systemd;
pub mod telemetry;

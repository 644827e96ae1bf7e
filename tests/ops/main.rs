//! Operations suite (issue #15): writer-sync as an admin runs it. The
//! daemon's systemd STATUS and run statuses, the metrics and their names
//! (checked by `promtool`), and the command line's edges (closed pipes).

#[path = "../common/mod.rs"]
mod common;

mod lifecycle;
mod metrics;
mod support;

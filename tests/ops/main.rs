//! Operations suite (issue #15): writer-sync as an admin runs it. The
//! daemon's systemd STATUS and run statuses, the metrics and their names
//! (checked by `promtool`), the command line's edges (closed pipes,
//! `--version`, completions and man pages, `healthcheck`), and the
//! Dockerfile against the binary it packages.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod lifecycle;
mod metrics;
mod support;

//! Operations suite (issue #15): writer-sync as an admin installs and runs
//! it. The units as shipped (run as an unprivileged user with the unit's
//! environment and `/proc` view), their restart policy and systemd's own
//! checks; the daemon's systemd STATUS and run statuses; the metrics and
//! their names (checked by `promtool`) and the alert rules and dashboard
//! over them; the command line's edges (closed pipes, `--version`,
//! completions and man pages, `healthcheck`); and the Dockerfile against
//! the binary it packages. The Debian package itself is built and checked
//! by `scripts/deb.sh`.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod install;
mod lifecycle;
mod metrics;
mod monitoring;
mod support;
mod units;

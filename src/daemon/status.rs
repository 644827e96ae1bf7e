//! The lines the daemon gives systemd as `STATUS=` (what `systemctl
//! status` shows): the last run, a pause (who, since when, why), a refused
//! reload.
//!
//! Invariant: one line each: values from the store or an operator are
//! escaped, so none can add a line to the notify protocol.

use chrono::{DateTime, Utc};

use crate::reconcile::report::{Report, Status};

/// The systemd STATUS= line after a run, e.g.
/// `last run ok 12:00:03, +3 users, 1 deactivated`, or when paused
/// `PAUSED by alice@ops1 since 2026-… UTC: reason; last run 12:00:03
/// planned 3 changes, applied nothing`.
pub fn status_line(report: &Report, now: DateTime<Utc>) -> String {
    if let (Status::Paused, Some(pause)) = (report.status, &report.paused) {
        return format!(
            "PAUSED {}; last run {} planned {} changes, applied nothing",
            // Escaped: STATUS= is one line of the notify protocol, and
            // the reason must not add assignments (`\nREADY=1`).
            shorten(
                &crate::telemetry::escape_message(pause.describe().trim_start_matches("paused ")),
                160
            ),
            now.format("%H:%M:%S"),
            report.planned
        );
    }
    let c = &report.counts;
    let mut parts = Vec::new();
    if c.users_created > 0 {
        parts.push(format!("+{} users", c.users_created));
    }
    if c.users_deactivated > 0 {
        parts.push(format!("{} deactivated", c.users_deactivated));
    }
    if c.users_reactivated > 0 {
        parts.push(format!("{} reactivated", c.users_reactivated));
    }
    if c.users_updated > 0 {
        parts.push(format!("{} updated", c.users_updated));
    }
    let memberships = c.memberships_added + c.memberships_removed + c.roles_changed;
    if memberships > 0 {
        parts.push(format!("{memberships} membership changes"));
    }
    if parts.is_empty() {
        parts.push("no changes".into());
    }
    let status = if report.lock_busy() {
        "skipped (lock held elsewhere)"
    } else {
        report.status.as_str()
    };
    let mut line = format!(
        "last run {status} {}, {}",
        now.format("%H:%M:%S"),
        parts.join(", ")
    );
    if let Some(e) = &report.error {
        line.push_str(&format!(" — {}", shorten(e, 120)));
    }
    line
}

/// The systemd STATUS= line when a reload was refused, e.g. `config reload
/// refused, running the old config: /etc/writer-sync/config.toml:
/// sync.schedule: …` (the reason cut to 160 characters).
pub fn reload_refused_status(why: &str) -> String {
    format!(
        "config reload refused, running the old config: {}",
        shorten(why, 160)
    )
}

/// `text` cut to `max` characters, with `…` when cut.
pub(super) fn shorten(text: &str, max: usize) -> String {
    let mut short: String = text.chars().take(max).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

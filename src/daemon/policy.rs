//! The daemon's scheduling policy: what happens after a run (kube-rs's
//! `error_policy`: a small pure function of the run's outcome), the next
//! cron tick, the failure backoff and when `/readyz` gives up on a schedule.
//!
//! Invariant: pure; no clock but the `now` it is given (except
//! `unready_after`, which measures the schedule from the present).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::CronSchedule;
use crate::reconcile::report::FailureKind;

/// What the loop does after a run, decided by [`next_step`] from the run's
/// outcome alone (kube-rs's `error_policy`: scheduling is data returned by a
/// small pure function, not a side effect of the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// The run did its job (or was blocked, which only a person can lift):
    /// run at the next tick, or at once when ticks passed during the run.
    CatchUp,
    /// Run at the next tick, without catching up on ticks that passed:
    /// another instance held the lock (it did the work), or the trouble is
    /// a credential or configuration problem that retrying cannot fix (a
    /// config reload runs at once instead).
    NextTick,
    /// Transient trouble: run at the first tick after this backoff.
    Backoff(Duration),
}

/// The daemon's failure policy. `transient_failures` counts the consecutive
/// transient failures including this run's. A 503 or an unreachable store
/// backs off (30 s doubling to 30 min, at ticks); a 401/403 or a bad config
/// does not escalate and does not retry early: every tick tries again (and
/// logs the error), and reloading the config retries at once.
pub fn next_step(failure: Option<FailureKind>, transient_failures: u32) -> NextStep {
    match failure {
        None => NextStep::CatchUp,
        Some(FailureKind::Transient) => NextStep::Backoff(failure_backoff(transient_failures)),
        Some(
            FailureKind::Credential
            | FailureKind::Configuration
            | FailureKind::LockHeld
            | FailureKind::Interrupted,
        ) => NextStep::NextTick,
    }
}

pub(super) fn next_tick(schedule: &CronSchedule, now: DateTime<Utc>) -> DateTime<Utc> {
    schedule
        .next_after(now)
        .unwrap_or_else(|| now + chrono::Duration::days(365))
}

/// Backoff after `failures` consecutive failed runs: 30 s, 1, 2, 4 … min,
/// at most 30 min.
pub fn failure_backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    Duration::from_secs((30u64 << exp).min(1800))
}

/// When to run next: the next cron tick, but after consecutive failures not
/// before the backoff has passed (the first tick at or after it).
pub fn next_run_after(schedule: &CronSchedule, now: DateTime<Utc>, failures: u32) -> DateTime<Utc> {
    if failures == 0 {
        return next_tick(schedule, now);
    }
    let not_before =
        now + chrono::Duration::from_std(failure_backoff(failures)).unwrap_or_default();
    next_tick(schedule, not_before - chrono::Duration::seconds(1))
}

/// Three schedule periods (measured between the next two ticks), at least
/// one minute.
pub(super) fn unready_after(schedule: &CronSchedule) -> Duration {
    let now = Utc::now();
    let a = next_tick(schedule, now);
    let b = next_tick(schedule, a);
    ((b - a).to_std().unwrap_or(Duration::from_secs(600)) * 3).max(Duration::from_secs(60))
}

//! Operator runs that apply a list of changes decided before the run
//! (`writer-sync apply FILE`, `writer-sync revert RUN_ID`, SPEC §8): no
//! Okta, no planner, no guard (a human reviewed the changes), but the same
//! lock, run record, apply path (`apply`, `txorder`) and audit rows as a
//! sync.
//!
//! Invariant: the changes are decided against the store state read inside
//! the sync lock, and a refusal writes nothing (not even a run record).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::model::{Change, Counts, Finding, StoreState};
use crate::reconcile::apply::{ApplyError, ApplyOptions, apply};
use crate::reconcile::report::{Report, Status};
use crate::reconcile::{Trigger, error_chain, record_outcome};
use crate::store::{Store, StoreError};

/// Why an operator command did not run.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The input is wrong (unreadable plan file, unknown run id): exit 2.
    #[error("{0}")]
    Usage(String),
    /// The command refuses to apply (stale or edited plan, a change that no
    /// longer applies, a run that cannot be reverted): exit 4, nothing
    /// was written.
    #[error("{0}")]
    Refused(String),
    /// The store failed or its lock is held: exit 1, nothing was written.
    #[error("{}; nothing was written", error_chain(.0))]
    Store(#[from] StoreError),
}

/// What the caller decided to apply, inside the lock.
pub struct Decided {
    pub changes: Vec<Change>,
    /// Warnings for the report (kept changes, the reverted run, …).
    pub findings: Vec<Finding>,
    pub skipped: usize,
    pub unmanaged: usize,
}

/// How to run.
pub struct ControlRun<'a> {
    pub store: &'a Store,
    pub holder: &'a str,
    pub trigger: Trigger,
    pub dry_run: bool,
    pub writes_per_second: Option<NonZeroU32>,
    pub stop: Arc<AtomicBool>,
}

/// Takes the lock (not for a dry run), reads the store, lets `decide` turn
/// the state into the changes to apply (or refuse), then applies them as
/// one recorded run with `trigger`. A dry run reports what would be
/// applied and writes nothing.
pub async fn run_decided(
    run: &ControlRun<'_>,
    decide: impl FnOnce(&StoreState) -> Result<Decided, ControlError>,
) -> Result<Report, ControlError> {
    let started = Instant::now();
    let store = run.store;
    let lock = if run.dry_run {
        None
    } else {
        Some(store.try_lock(run.holder).await?)
    };
    let result = decided_inner(run, lock.as_ref(), decide, started).await;
    if let Some(lock) = lock
        && let Err(e) = lock.release().await
    {
        tracing::warn!(error = %error_chain(&e), "could not release the sync lock (it expires on its own)");
    }
    result
}

async fn decided_inner(
    run: &ControlRun<'_>,
    lock: Option<&crate::store::SyncLock>,
    decide: impl FnOnce(&StoreState) -> Result<Decided, ControlError>,
    started: Instant,
) -> Result<Report, ControlError> {
    let store = run.store;
    if lock.is_some() {
        match store.close_interrupted_runs().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                runs = n,
                "marked runs of a process that died mid-run as failed"
            ),
            Err(e) => tracing::warn!(error = %error_chain(&e), "could not close interrupted runs"),
        }
    }
    let state = store.load_state().await?;
    let decided = decide(&state)?;
    drop(state);
    let mut report = Report::new(None);
    report.findings = decided.findings;
    report.planned = decided.changes.len();
    for f in &report.findings {
        tracing::warn!(finding = %f.message, "warning");
    }
    if run.dry_run {
        report.status = Status::DryRun;
        report.counts = Counts::tally(&decided.changes, decided.skipped, decided.unmanaged);
        report.changes = decided.changes;
        report.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    let run_id = store.start_run(run.trigger.as_str(), run.holder).await?;
    report.run_id = Some(run_id);
    let progress = |_: usize| {};
    let opts = ApplyOptions {
        run_id,
        writes_per_second: run.writes_per_second,
        stop: &run.stop,
        lock: lock.map(|l| l.checker()),
        progress: &progress,
        cursor: None,
        missing: None,
    };
    let mut changes = decided.changes;
    let (applied, result) = apply(store, &changes, &opts).await;
    changes.truncate(applied);
    report.counts = Counts::tally(&changes, decided.skipped, decided.unmanaged);
    report.changes = changes;
    match result {
        Ok(()) => report.status = Status::Ok,
        Err(e) => {
            report.error = Some(format!(
                "{}; {applied} of {} changes were applied",
                error_chain(&e),
                report.planned
            ));
            report.failure = Some(e.failure_kind());
            if matches!(e, ApplyError::Stopped { .. }) {
                report.status = Status::Interrupted;
            }
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    record_outcome(store, run_id, &mut report).await;
    crate::reconcile::log_finished(&report, run.trigger.as_str());
    Ok(report)
}

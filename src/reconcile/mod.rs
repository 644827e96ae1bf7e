//! One reconcile run: observe (Okta and the store) → plan (pure) → guard →
//! apply, recorded in `sync_runs` and reported.
//!
//! Invariant: a run applies nothing unless it holds the store's sync lock,
//! observed every Okta listing completely, and the safety guard passed (or
//! `--force`). `run_once` never panics or returns early without a report:
//! every outcome, including failures, is a [`Report`].

pub mod applies;
pub mod apply;
pub mod control;
pub mod events;
pub mod guard;
pub mod incremental;
pub mod observe;
pub mod plan;
pub mod planfile;
pub mod report;
pub mod revert;
pub mod txorder;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::config::Config;
use crate::model::{Counts, Plan, Severity};
use crate::okta::OktaClient;
use crate::reconcile::apply::{ApplyOptions, apply};
use crate::reconcile::report::{FailureKind, Report, Status};
use crate::store::Store;

/// What started a run (recorded in `sync_runs.run_trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `run --once`.
    Once,
    /// The daemon's first run (`sync.run_on_start`).
    Start,
    /// A cron tick.
    Schedule,
    /// SIGUSR1.
    Signal,
    /// `writer-sync demo`.
    Demo,
    /// An incremental run from the System Log (SPEC §7).
    Events,
    /// A full reconcile an incremental run asked for (SPEC §7 fallback).
    Fallback,
    /// `writer-sync apply FILE`: a reviewed plan file (SPEC §8).
    PlanFile,
    /// `writer-sync revert RUN_ID` (SPEC §8).
    Revert,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Once => "once",
            Trigger::Start => "start",
            Trigger::Schedule => "schedule",
            Trigger::Signal => "signal",
            Trigger::Demo => "demo",
            Trigger::Events => "events",
            Trigger::Fallback => "fallback",
            Trigger::PlanFile => "plan_file",
            Trigger::Revert => "revert",
        }
    }
}

/// What a run needs from the outside world.
pub struct SyncContext {
    pub config: Arc<Config>,
    pub store: Store,
    pub okta: OktaClient,
    /// Who runs (host:pid), recorded with runs and locks.
    pub holder: String,
}

/// How to run.
pub struct RunOptions {
    pub trigger: Trigger,
    pub dry_run: bool,
    pub force: bool,
    /// Set to stop between apply batches (graceful shutdown).
    pub stop: Arc<AtomicBool>,
    /// Progress callback (pages observed or changes applied), for the watchdog.
    pub progress: Arc<dyn Fn(usize) + Send + Sync>,
}

impl RunOptions {
    pub fn new(trigger: Trigger) -> RunOptions {
        RunOptions {
            trigger,
            dry_run: false,
            force: false,
            stop: Arc::new(AtomicBool::new(false)),
            progress: Arc::new(|_| {}),
        }
    }
}

/// `host:pid` of this process. The host name comes from `uname(2)`, which
/// works where `/proc/sys` is hidden (the unit's `ProcSubset=pid`).
pub fn holder_id() -> String {
    let uname = rustix::system::uname();
    let host = uname.nodename().to_string_lossy();
    let host = host.trim();
    let host = if host.is_empty() {
        "unknown-host"
    } else {
        host
    };
    format!("{host}:{}", std::process::id())
}

/// Runs one reconcile and returns its report. Logs one event per applied
/// change and one `sync finished` event.
#[tracing::instrument(name = "reconcile", skip_all, fields(trigger = opts.trigger.as_str(), run_id))]
pub async fn run_once(ctx: &SyncContext, opts: &RunOptions) -> Report {
    let started = Instant::now();
    let report = run_inner(ctx, opts, started).await;
    log_finished(&report, opts.trigger.as_str());
    report
}

/// The `sync finished` event of a run (full or incremental), with its
/// trigger and counts; the lock-held non-run is logged as skipped.
pub fn log_finished(report: &Report, trigger: &str) {
    let counts = &report.counts;
    let fields = serde_json::to_value(counts).unwrap_or_default();
    if report.lock_busy() {
        // Normal with several instances on one store: not an error.
        tracing::info!(
            error = report.error.as_deref(),
            "sync skipped: another instance holds the store's sync lock"
        );
        return;
    }
    let level_error = matches!(report.status, Status::Failed | Status::Blocked);
    let level_warn = report.status == Status::Interrupted;
    macro_rules! finished {
        ($lvl:ident) => {
            tracing::$lvl!(
                status = report.status.as_str(),
                trigger,
                run_id = report.run_id,
                duration_ms = report.duration_ms,
                planned = report.planned,
                users_created = counts.users_created,
                users_updated = counts.users_updated,
                users_deactivated = counts.users_deactivated,
                users_reactivated = counts.users_reactivated,
                users_linked = counts.users_linked,
                memberships_added = counts.memberships_added,
                memberships_removed = counts.memberships_removed,
                roles_changed = counts.roles_changed,
                teams_linked = counts.teams_linked,
                teams_created = counts.teams_created,
                skipped = counts.skipped,
                unmanaged = counts.unmanaged,
                warnings = report.findings.len(),
                error = report.error.as_deref(),
                counts = %fields,
                "sync finished"
            )
        };
    }
    if level_error {
        finished!(error);
    } else if level_warn {
        finished!(warn);
    } else {
        finished!(info);
    }
}

async fn run_inner(ctx: &SyncContext, opts: &RunOptions, started: Instant) -> Report {
    let failed = |error: String, run_id: Option<i64>, kind: FailureKind| Report {
        status: Status::Failed,
        counts: Counts::default(),
        changes: Vec::new(),
        findings: Vec::new(),
        error: Some(error),
        run_id,
        duration_ms: started.elapsed().as_millis() as u64,
        planned: 0,
        failure: Some(kind),
        paused: None,
        pending_deactivations: Vec::new(),
    };
    let store = &ctx.store;

    // Dry runs write nothing, so they need no lock and record no run.
    let lock = if opts.dry_run {
        None
    } else {
        match store.try_lock(&ctx.holder).await {
            Ok(lock) => Some(lock),
            Err(e) => {
                return failed(
                    format!("{}; nothing was applied", error_chain(&e)),
                    None,
                    FailureKind::of_store(&e),
                );
            }
        }
    };
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
    let run_id = if opts.dry_run {
        None
    } else {
        match store.start_run(opts.trigger.as_str(), &ctx.holder).await {
            Ok(id) => Some(id),
            Err(e) => {
                release(lock).await;
                return failed(error_chain(&e), None, FailureKind::of_store(&e));
            }
        }
    };
    if let Some(id) = run_id {
        tracing::Span::current().record("run_id", id);
    }

    let mut report = observe_plan_apply(
        ctx,
        opts,
        lock.as_ref().map(|l| l.checker()),
        run_id,
        started,
    )
    .await;
    report.duration_ms = started.elapsed().as_millis() as u64;
    // A stop request (SIGTERM/SIGINT) is not a failure of the sync: the
    // run is recorded and counted as `interrupted`.
    if report.failure == Some(FailureKind::Interrupted) {
        report.status = Status::Interrupted;
    }
    if let Some(id) = run_id {
        record_outcome(store, id, &mut report).await;
    }
    release(lock).await;
    report
}

/// Records a run's outcome in `sync_runs`; an `ok` run whose record cannot
/// be written is reported `failed`.
pub(crate) async fn record_outcome(store: &crate::store::Store, run_id: i64, report: &mut Report) {
    let counts = serde_json::to_string(&report.counts).unwrap_or_default();
    if let Err(e) = store
        .finish_run(
            run_id,
            report.status.as_str(),
            &counts,
            report.error.as_deref(),
        )
        .await
    {
        tracing::error!(run_id, error = %error_chain(&e), "could not record the run outcome");
        if report.status == Status::Ok {
            report.status = Status::Failed;
            report.failure = Some(FailureKind::of_store(&e));
            report.error = Some(format!(
                "changes applied but the run outcome was not recorded: {}",
                error_chain(&e)
            ));
        }
    }
}

async fn release(lock: Option<crate::store::SyncLock>) {
    if let Some(lock) = lock
        && let Err(e) = lock.release().await
    {
        tracing::warn!(error = %error_chain(&e), "could not release the sync lock (it expires on its own)");
    }
}

/// What a full run observed and planned.
pub(crate) struct Observed {
    pub okta_state: crate::model::OktaState,
    pub store_state: crate::model::StoreState,
    pub plan: Plan,
    /// The org's findings (the plan's own are in `plan.findings`).
    pub findings: Vec<crate::model::Finding>,
    /// When observing started (epoch ms), the System Log cursor's floor.
    pub observe_started_ms: i64,
}

/// Observe (Okta and the store at once) and plan: the first half of a full
/// run, shared with `writer-sync plan -o`. On failure the report says why
/// and `None` is returned: nothing has been written.
pub(crate) async fn observe_and_plan(
    ctx: &SyncContext,
    opts: &RunOptions,
    started: Instant,
    report: &mut Report,
) -> Option<Observed> {
    let config = &ctx.config;
    // Observe: Okta and the store at once; any failure means no plan at all.
    // A stop request while observing ends the run at once: nothing has
    // been written yet, so there is nothing to finish. Events from this
    // moment on are the next poll's (SPEC §7: the cursor's floor).
    let observe_started_ms = crate::store::now_ms();
    let observed = tokio::select! {
        both = async {
            tokio::join!(
                observe::observe(&ctx.okta, config, opts.progress.as_ref()),
                ctx.store.load_state()
            )
        } => both,
        () = stop_requested(&opts.stop) => {
            report.error = Some("stopped by request while reading Okta; nothing was applied".into());
            report.failure = Some(FailureKind::Interrupted);
            return None;
        }
    };
    let (observed, store_state) = observed;
    let observed = match observed {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(format!(
                "reading Okta failed, nothing was applied: {}",
                error_chain(&e)
            ));
            report.failure = Some(FailureKind::of_okta(&e));
            return None;
        }
    };
    let store_state = match store_state {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(format!(
                "reading the store failed, nothing was applied: {}",
                error_chain(&e)
            ));
            report.failure = Some(FailureKind::of_store(&e));
            return None;
        }
    };
    let okta_state = observed.state;
    tracing::info!(
        okta_users = okta_state.users.len(),
        okta_groups = okta_state.groups.len(),
        store_users = store_state.users.len(),
        store_teams = store_state.teams.len(),
        observe_ms = started.elapsed().as_millis() as u64,
        app_user_statuses = %serde_json::to_string(&observed.app_user_statuses).unwrap_or_default(),
        peak_rss_mb = crate::telemetry::peak_rss_mb(),
        "observed"
    );
    observe::log_smaller_pages(&observed.smaller_pages);

    let grace = match load_grace(config, &ctx.store).await {
        Ok(grace) => grace,
        Err(e) => {
            report.error = Some(format!(
                "reading the store failed, nothing was applied: {}",
                error_chain(&e)
            ));
            report.failure = Some(FailureKind::of_store(&e));
            return None;
        }
    };
    let planning = Instant::now();
    let plan = plan::plan_with_grace(
        &okta_state,
        &store_state,
        &config.policy(),
        &plan::scope::Scope::Full,
        &grace,
    );
    let plan_ms = planning.elapsed().as_millis() as u64;
    tracing::info!(
        planned = plan.changes.len(),
        plan_ms,
        peak_rss_mb = crate::telemetry::peak_rss_mb(),
        "planned"
    );
    Some(Observed {
        okta_state,
        store_state,
        plan,
        findings: observed.findings,
        observe_started_ms,
    })
}

async fn observe_plan_apply(
    ctx: &SyncContext,
    opts: &RunOptions,
    lock: Option<crate::store::LockCheck>,
    run_id: Option<i64>,
    started: Instant,
) -> Report {
    let config = &ctx.config;
    let mut report = Report::new(run_id);
    let Some(Observed {
        okta_state,
        store_state,
        plan,
        findings,
        observe_started_ms,
    }) = observe_and_plan(ctx, opts, started, &mut report).await
    else {
        return report;
    };
    let cursor = incremental::full_run_cursor(
        config,
        &okta_state,
        &plan,
        observe_started_ms,
        ctx.okta.okta_time_ms(observe_started_ms),
    );
    drop(store_state);
    drop(okta_state);
    log_findings(&findings);
    report.findings = findings;
    let Some(before) = since_full(ctx, &mut report).await else {
        return report;
    };
    let report = guard_and_apply(ctx, opts, lock, plan, report, None, before).await;
    if report.status == Status::Ok
        && let Some(cursor) = cursor
    {
        let moved = match ctx.store.event_cursor().await {
            Ok(previous) => {
                ctx.store
                    .set_event_cursor(&incremental::after_full_run(cursor, previous))
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = moved {
            // The older cursor stays: the next poll reads more events again.
            tracing::warn!(error = %error_chain(&e), "could not move the System Log cursor to this full reconcile");
        }
    }
    report
}

/// The deactivation grace a plan needs (SPEC §8): the configured
/// `safety.deactivate_after`, now, and the store's `missing_since` records
/// (not read when there is no grace).
pub(crate) async fn load_grace(
    config: &Config,
    store: &Store,
) -> Result<crate::model::Grace, crate::store::StoreError> {
    let after_ms = i64::try_from(config.safety.deactivate_after.as_millis()).unwrap_or(i64::MAX);
    if after_ms == 0 {
        return Ok(crate::model::Grace::default());
    }
    Ok(crate::model::Grace {
        after_ms,
        now_ms: crate::store::now_ms(),
        missing_since: store.missing_since().await?,
    })
}

/// The deactivations and removals incremental runs applied since the last
/// full reconcile, which count against a full run's limits too (SPEC §2
/// over §7); `None` (the report says why) when the store cannot be read.
pub(crate) async fn since_full(ctx: &SyncContext, report: &mut Report) -> Option<guard::SinceFull> {
    let config = &ctx.config;
    if !config.events.enabled() {
        return Some(guard::SinceFull::default());
    }
    match ctx.store.event_cursor().await {
        Ok(previous) => Some(incremental::since_full(previous.as_ref(), config)),
        Err(e) => {
            report.error = Some(format!(
                "reading the store failed, nothing was applied: {}",
                error_chain(&e)
            ));
            report.failure = Some(FailureKind::of_store(&e));
            None
        }
    }
}

/// Guard, then apply (or not): the part of a run after its plan, the same
/// for a full reconcile and an incremental run. `cursor` is written with
/// the last batch (an incremental run's System Log position).
pub(crate) async fn guard_and_apply(
    ctx: &SyncContext,
    opts: &RunOptions,
    lock: Option<crate::store::LockCheck>,
    plan: Plan,
    mut report: Report,
    cursor: Option<&crate::store::EventCursor>,
    before: guard::SinceFull,
) -> Report {
    let config = &ctx.config;
    let run_id = report.run_id;
    log_findings(&plan.findings);
    report.findings.extend(plan.findings.iter().cloned());
    report.planned = plan.changes.len();
    let reasons = guard::guard_since_full(&plan, &config.safety_limits(), before);
    let Plan {
        changes,
        skipped,
        unmanaged,
        pending_deactivations,
        missing,
        ..
    } = plan;
    report.pending_deactivations = pending_deactivations;
    let changes = txorder::group_new_users(changes);

    // The pause (SPEC §8) is read after the plan, just before applying, so
    // a `pause` made while this run read Okta still stops it. Unreadable:
    // nothing is applied (an operator may have asked for no changes).
    let paused = match ctx.store.pause_state().await {
        Ok(paused) => paused,
        Err(e) => {
            report.counts = Counts::tally(&[], skipped, unmanaged);
            report.error = Some(format!(
                "cannot read whether the store is paused, nothing was applied: {}",
                error_chain(&e)
            ));
            report.failure = Some(FailureKind::of_store(&e));
            return report;
        }
    };
    if opts.dry_run {
        report.status = Status::DryRun;
        report.counts = Counts::tally(&changes, skipped, unmanaged);
        report.changes = changes;
        if let Some(pause) = paused {
            report.error = Some(format!(
                "a real run would apply nothing: the store is {}; {}",
                pause.describe(),
                report::RESUME_HINT
            ));
            report.paused = Some(pause);
        } else if !reasons.is_empty() {
            report.error = Some(format!(
                "a real run would be blocked: {}; to apply this plan once, run `writer-sync run --once --force`",
                reasons.join("; ")
            ));
        }
        return report;
    }
    if let Some(pause) = paused {
        let mut why = format!(
            "the store is {}; nothing was applied; {}",
            pause.describe(),
            report::RESUME_HINT
        );
        if !reasons.is_empty() {
            why.push_str(&format!(
                "; the safety guard would block this plan too: {}",
                reasons.join("; ")
            ));
        }
        tracing::warn!(
            paused_by = %pause.by,
            paused_on = %pause.host,
            reason = %pause.reason,
            planned = changes.len(),
            "sync paused: planned and applied nothing"
        );
        report.status = Status::Paused;
        report.counts = Counts::tally(&changes, skipped, unmanaged);
        report.changes = changes;
        report.error = Some(why);
        report.paused = Some(pause);
        return report;
    }
    if !reasons.is_empty() {
        let why = reasons.join("; ");
        if !opts.force {
            tracing::error!(
                reasons = %why,
                "sync blocked by the safety guard: nothing applied; review the plan with `writer-sync run --once --dry-run`, then apply it once with `writer-sync run --once --force`"
            );
            report.status = Status::Blocked;
            report.counts = Counts::tally(&changes, skipped, unmanaged);
            report.changes = changes;
            report.error = Some(format!(
                "blocked by the safety guard: {why}; nothing was applied: {}",
                report::UNBLOCK_HINT
            ));
            return report;
        }
        tracing::warn!(reasons = %why, "safety guard overridden by --force; applying");
    }

    // A disk that cannot hold the apply refuses it before its first write
    // (SQLite; a full disk mid-apply still keeps whole batches only).
    if let Err(e) = ctx.store.check_room_for(changes.len()) {
        report.status = Status::Failed;
        report.counts = Counts::tally(&[], skipped, unmanaged);
        report.error = Some(format!("{}; nothing was applied", error_chain(&e)));
        report.failure = Some(FailureKind::of_store(&e));
        return report;
    }
    let progress = Arc::clone(&opts.progress);
    let progress_fn = move |n: usize| progress(n);
    let apply_opts = ApplyOptions {
        run_id: run_id.unwrap_or_default(),
        writes_per_second: config.store.writes_per_second,
        stop: &opts.stop,
        lock,
        progress: &progress_fn,
        cursor,
        missing: (!missing.is_empty()).then_some(&missing),
    };
    let applying = Instant::now();
    let (applied, result) = apply(&ctx.store, &changes, &apply_opts).await;
    tracing::info!(
        applied,
        apply_ms = applying.elapsed().as_millis() as u64,
        peak_rss_mb = crate::telemetry::peak_rss_mb(),
        "applied"
    );
    let mut changes = changes;
    changes.truncate(applied);
    report.counts = Counts::tally(&changes, skipped, unmanaged);
    report.changes = changes;
    if result.is_ok()
        && report.changes.is_empty()
        && !missing.is_empty()
        && let Err(e) = ctx.store.update_missing(&missing).await
    {
        // Only bookkeeping: the next run records it again (a later
        // deactivation, never an earlier one).
        tracing::warn!(error = %error_chain(&e), "could not record users missing from scope");
    }
    match result {
        Ok(()) => report.status = Status::Ok,
        Err(e) => {
            report.error = Some(format!(
                "{}; {applied} of {} changes were applied (the next run converges)",
                error_chain(&e),
                report.planned
            ));
            report.failure = Some(e.failure_kind());
        }
    }
    report
}

/// Resolves once `stop` is set (polled: the flag is set from signal tasks).
pub(crate) async fn stop_requested(stop: &AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub(crate) fn log_findings(findings: &[crate::model::Finding]) {
    for f in findings {
        match f.severity {
            Severity::Error => tracing::error!(finding = %f.message, "skipped"),
            Severity::Warning => tracing::warn!(finding = %f.message, "warning"),
        }
    }
}

/// An error and its sources, joined with ": ".
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

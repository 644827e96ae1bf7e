//! One reconcile run: observe (Okta and the store) → plan (pure) → guard →
//! apply, recorded in `sync_runs` and reported.
//!
//! Invariant: a run applies nothing unless it holds the store's sync lock,
//! observed every Okta listing completely, and the safety guard passed (or
//! `--force`). `run_once` never panics or returns early without a report:
//! every outcome, including failures, is a [`Report`].

pub mod apply;
pub mod guard;
pub mod observe;
pub mod plan;
pub mod report;
pub mod txorder;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::config::Config;
use crate::model::{Counts, Plan, Severity};
use crate::okta::OktaClient;
use crate::reconcile::apply::{ApplyError, ApplyOptions, apply};
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
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Once => "once",
            Trigger::Start => "start",
            Trigger::Schedule => "schedule",
            Trigger::Signal => "signal",
            Trigger::Demo => "demo",
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

/// `host:pid` of this process.
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host}:{}", std::process::id())
}

/// Runs one reconcile and returns its report. Logs one event per applied
/// change and one `sync finished` event.
#[tracing::instrument(name = "reconcile", skip_all, fields(trigger = opts.trigger.as_str(), run_id))]
pub async fn run_once(ctx: &SyncContext, opts: &RunOptions) -> Report {
    let started = Instant::now();
    let report = run_inner(ctx, opts, started).await;
    let counts = &report.counts;
    let fields = serde_json::to_value(counts).unwrap_or_default();
    if report.lock_busy() {
        // Normal with several instances on one store: not an error.
        tracing::info!(
            error = report.error.as_deref(),
            "sync skipped: another instance holds the store's sync lock"
        );
        return report;
    }
    let level_error = matches!(report.status, Status::Failed | Status::Blocked);
    macro_rules! finished {
        ($lvl:ident) => {
            tracing::$lvl!(
                status = report.status.as_str(),
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
    } else {
        finished!(info);
    }
    report
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
    if let Some(id) = run_id {
        let counts = serde_json::to_string(&report.counts).unwrap_or_default();
        if let Err(e) = store
            .finish_run(id, report.status.as_str(), &counts, report.error.as_deref())
            .await
        {
            tracing::error!(run_id = id, error = %error_chain(&e), "could not record the run outcome");
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
    release(lock).await;
    report
}

async fn release(lock: Option<crate::store::SyncLock>) {
    if let Some(lock) = lock
        && let Err(e) = lock.release().await
    {
        tracing::warn!(error = %error_chain(&e), "could not release the sync lock (it expires on its own)");
    }
}

async fn observe_plan_apply(
    ctx: &SyncContext,
    opts: &RunOptions,
    lock: Option<crate::store::LockCheck>,
    run_id: Option<i64>,
    started: Instant,
) -> Report {
    let config = &ctx.config;
    let mut report = Report {
        status: Status::Failed,
        counts: Counts::default(),
        changes: Vec::new(),
        findings: Vec::new(),
        error: None,
        run_id,
        duration_ms: 0,
        planned: 0,
        failure: None,
    };

    // Observe: Okta and the store at once; any failure means no plan at all.
    // A stop request while observing ends the run at once: nothing has
    // been written yet, so there is nothing to finish.
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
            return report;
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
            return report;
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
            return report;
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
        "observed"
    );
    observe::log_smaller_pages(&observed.smaller_pages);

    let planning = Instant::now();
    let plan = plan::plan(&okta_state, &store_state, &config.policy());
    let plan_ms = planning.elapsed().as_millis() as u64;
    drop(store_state);
    drop(okta_state);
    log_findings(&observed.findings);
    log_findings(&plan.findings);
    report.findings = observed.findings;
    report.findings.extend(plan.findings.iter().cloned());
    report.planned = plan.changes.len();
    tracing::info!(planned = report.planned, plan_ms, "planned");
    let reasons = guard::guard(&plan, &config.safety_limits());
    let Plan {
        changes,
        skipped,
        unmanaged,
        ..
    } = plan;
    let changes = txorder::group_new_users(changes);

    if opts.dry_run {
        report.status = Status::DryRun;
        report.counts = Counts::tally(&changes, skipped, unmanaged);
        report.changes = changes;
        if !reasons.is_empty() {
            report.error = Some(format!(
                "a real run would be blocked: {}",
                reasons.join("; ")
            ));
        }
        return report;
    }
    if !reasons.is_empty() {
        let why = reasons.join("; ");
        if !opts.force {
            tracing::error!(
                reasons = %why,
                "sync blocked by the safety guard: nothing applied; review the plan with `writer-sync run --once --dry-run` and apply it once with `writer-sync run --once --force`"
            );
            report.status = Status::Blocked;
            report.counts = Counts::tally(&changes, skipped, unmanaged);
            report.changes = changes;
            report.error = Some(format!("blocked by the safety guard: {why}"));
            return report;
        }
        tracing::warn!(reasons = %why, "safety guard overridden by --force; applying");
    }

    let progress = Arc::clone(&opts.progress);
    let progress_fn = move |n: usize| progress(n);
    let apply_opts = ApplyOptions {
        run_id: run_id.unwrap_or_default(),
        writes_per_second: config.store.writes_per_second,
        stop: &opts.stop,
        lock,
        progress: &progress_fn,
    };
    let applying = Instant::now();
    let (applied, result) = apply(&ctx.store, &changes, &apply_opts).await;
    tracing::info!(
        applied,
        apply_ms = applying.elapsed().as_millis() as u64,
        "applied"
    );
    let mut changes = changes;
    changes.truncate(applied);
    report.counts = Counts::tally(&changes, skipped, unmanaged);
    report.changes = changes;
    match result {
        Ok(()) => report.status = Status::Ok,
        Err(e) => {
            report.error = Some(format!(
                "{}; {applied} of {} changes were applied (the next run converges)",
                error_chain(&e),
                report.planned
            ));
            report.failure = Some(match &e {
                ApplyError::Stopped { .. } => FailureKind::Interrupted,
                ApplyError::Write { source, .. } | ApplyError::Store(source) => {
                    FailureKind::of_store(source)
                }
                // A planner bug: a retry plans the same again.
                ApplyError::Dangling(_) => FailureKind::Configuration,
            });
        }
    }
    report
}

/// Resolves once `stop` is set (polled: the flag is set from signal tasks).
async fn stop_requested(stop: &AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn log_findings(findings: &[crate::model::Finding]) {
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

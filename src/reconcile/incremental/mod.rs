//! One incremental run (SPEC §7): read the System Log from the cursor, turn
//! its events into the users to read again, read those (and every user
//! sharing an email with them) from Okta, and plan over that part of Okta
//! with the one planner, guard and apply of a full run (`trigger =
//! "events"`). When in doubt, hand over to a full reconcile.
//!
//! Invariant: the cursor moves in the same transaction as the last change
//! its events led to (or alone when they led to none), never before: a
//! crash anywhere reads the same events again, and since events are only
//! hints re-read as state, applying them twice plans nothing. A run that
//! cannot tell the whole effect of its events (an event it cannot scope,
//! a burst, a read error, a cursor Okta refuses) writes nothing and asks
//! for a full reconcile.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::{Config, PushGroups};
use crate::model::{OktaState, Plan, StoreState};
use crate::okta::OktaClient;
use crate::okta::error::OktaError;
use crate::okta::syslog::LogEvent;
use crate::reconcile::events::{self, EventContext, FallbackReason};
use crate::reconcile::guard::SinceFull;
use crate::reconcile::plan::scope::Scope;
use crate::reconcile::report::{FailureKind, Report, Status};
use crate::reconcile::{RunOptions, SyncContext, error_chain, guard_and_apply};
use crate::store::{EventCursor, StoreError, now_ms};

mod scoped;

use scoped::{Known, Scoped, observe_scoped};

/// Events published this long before a full reconcile's observe started
/// are read again by the first poll after it: Okta persists events a little
/// after `published`, and a change made while the full run read its page is
/// not in its view.
pub const SINCE_MARGIN: Duration = Duration::from_secs(5 * 60);

/// A cursor this old is past the log's retention (Okta keeps 90 days and
/// refuses a `since` over 180 days): the events in between are gone, so a
/// full reconcile is needed.
pub const MAX_CURSOR_AGE: Duration = Duration::from_secs(80 * 24 * 3600);

/// What the last successful full reconcile saw that a plan over part of
/// Okta needs; kept with the cursor (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// The app and the pushed-groups setting it was made under.
    pub config_key: String,
    /// The pushed groups: id and name.
    pub pushed: Vec<(String, String)>,
    /// Groups assigned to the app, when that is what is pushed.
    pub app_groups: Option<Vec<String>>,
    /// Okta users skipped while their email was usable, with the email key
    /// they wanted (`Plan::email_skips`).
    pub email_skips: Vec<(String, String)>,
    /// Okta's time (epoch ms) when the full reconcile began to read: events
    /// published before it are in its view, so a poll drops them (the
    /// query starts [`SINCE_MARGIN`] earlier, for events Okta persists
    /// late).
    pub covered_until_ms: i64,
    /// Deactivations and membership removals incremental runs applied since
    /// that full reconcile: the safety guard's limits hold for them together
    /// (written with the last change of each incremental run).
    #[serde(default)]
    pub since_full: SinceFull,
}

/// How an incremental run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing new in the System Log (one request).
    Idle,
    /// Events were read and planned over: the report (a run was recorded
    /// when the plan had changes, failed or was blocked).
    Ran(Box<Report>),
    /// A full reconcile is needed instead; nothing was written.
    Fallback {
        reason: FallbackReason,
        detail: String,
    },
    /// The credential may not read the System Log (SPEC §7: full reconciles
    /// only, `check` says `events: unavailable`).
    Unavailable(String),
    /// Another instance holds the store's sync lock.
    LockHeld,
    /// The store could not be used.
    StoreFailed(String),
}

/// An incremental run's outcome and what it read.
#[derive(Debug)]
pub struct EventsRun {
    pub outcome: Outcome,
    /// Events read this run, by type (after dropping repeats).
    pub events_by_type: BTreeMap<String, u64>,
    /// `published` of the newest event processed.
    pub newest_published_ms: Option<i64>,
    /// Okta requests this run made.
    pub requests: u64,
}

impl EventsRun {
    fn new(outcome: Outcome) -> EventsRun {
        EventsRun {
            outcome,
            events_by_type: BTreeMap::new(),
            newest_published_ms: None,
            requests: 0,
        }
    }
}

/// The config a cursor belongs to: a change of app or pushed groups makes
/// the baseline stale.
pub fn config_key(config: &Config) -> String {
    let groups = match &config.teams.push_groups {
        PushGroups::Assigned => "assigned".to_string(),
        PushGroups::Named(names) => format!("named:{}", names.join("\u{1f}")),
    };
    format!(
        "app={};groups={groups}",
        config.okta.app_id.as_deref().unwrap_or("")
    )
}

/// The cursor a successful full reconcile leaves: start at its observe
/// (less [`SINCE_MARGIN`]), with what it saw. `None` with events off.
pub fn full_run_cursor(
    config: &Config,
    okta: &OktaState,
    plan: &Plan,
    observe_started_ms: i64,
    okta_started_ms: Option<i64>,
) -> Option<EventCursor> {
    if !config.events.enabled() {
        return None;
    }
    let baseline = Baseline {
        config_key: config_key(config),
        pushed: okta
            .groups
            .iter()
            .map(|g| (g.id.clone(), g.name.clone()))
            .collect(),
        app_groups: matches!(config.teams.push_groups, PushGroups::Assigned)
            .then(|| okta.groups.iter().map(|g| g.id.clone()).collect()),
        email_skips: plan.email_skips.clone(),
        // Without an estimate of Okta's clock, nothing is taken as covered
        // beyond what the margin re-reads anyway.
        covered_until_ms: okta_started_ms
            .unwrap_or(observe_started_ms - SINCE_MARGIN.as_millis() as i64),
        // A full reconcile that applied starts the guard's stretch again.
        since_full: SinceFull::default(),
    };
    Some(EventCursor {
        next_url: None,
        since_ms: observe_started_ms - SINCE_MARGIN.as_millis() as i64,
        last_published_ms: None,
        seen: Vec::new(),
        baseline: serde_json::to_string(&baseline).unwrap_or_default(),
        pending_full: None,
    })
}

/// What incremental runs applied since the last full reconcile, for the
/// guard of the full reconcile that ends their stretch: zero without a
/// cursor, or when the cursor was made under another app or groups setting.
pub fn since_full(cursor: Option<&EventCursor>, config: &Config) -> SinceFull {
    cursor
        .and_then(|c| serde_json::from_str::<Baseline>(&c.baseline).ok())
        .filter(|b| b.config_key == config_key(config))
        .map(|b| b.since_full)
        .unwrap_or_default()
}

/// The cursor a successful full reconcile writes, given the one before it:
/// when a poll handed over to this run, polls carry on from where that poll
/// stopped reading (every event it read happened before this run began to
/// read Okta, so is in its view); otherwise from this run's observe.
pub fn after_full_run(fresh: EventCursor, previous: Option<EventCursor>) -> EventCursor {
    match previous {
        Some(previous) if previous.pending_full.is_some() => EventCursor {
            next_url: previous.next_url,
            last_published_ms: previous.last_published_ms,
            seen: previous.seen,
            ..fresh
        },
        _ => fresh,
    }
}

/// One incremental run: lock, poll, plan over what the events name, apply.
pub async fn run_events(ctx: &SyncContext, opts: &RunOptions) -> EventsRun {
    let started = Instant::now();
    let requests_before = requests_of(&ctx.okta);
    let lock = match ctx.store.try_lock(&ctx.holder).await {
        Ok(lock) => lock,
        Err(StoreError::Locked { .. }) => return EventsRun::new(Outcome::LockHeld),
        Err(e) => return EventsRun::new(Outcome::StoreFailed(error_chain(&e))),
    };
    let mut run = poll_plan_apply(ctx, opts, &lock, started).await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %error_chain(&e), "could not release the sync lock (it expires on its own)");
    }
    run.requests = requests_of(&ctx.okta).saturating_sub(requests_before);
    run
}

fn requests_of(okta: &OktaClient) -> u64 {
    okta.stats().requests.values().sum()
}

async fn poll_plan_apply(
    ctx: &SyncContext,
    opts: &RunOptions,
    lock: &crate::store::SyncLock,
    started: Instant,
) -> EventsRun {
    let config = &ctx.config;
    let fallback = |reason, detail: String| EventsRun::new(Outcome::Fallback { reason, detail });
    let cursor = match ctx.store.event_cursor().await {
        Ok(Some(cursor)) => cursor,
        Ok(None) => {
            return fallback(
                FallbackReason::NoCursor,
                "no full reconcile has set a System Log cursor yet".into(),
            );
        }
        Err(e) => return EventsRun::new(Outcome::StoreFailed(error_chain(&e))),
    };
    if let Some(pending) = &cursor.pending_full {
        return fallback(
            FallbackReason::from_label(pending).unwrap_or(FallbackReason::GroupWide),
            "a full reconcile is still pending".into(),
        );
    }
    let baseline: Baseline = match serde_json::from_str(&cursor.baseline) {
        Ok(b) => b,
        Err(e) => {
            return fallback(
                FallbackReason::ConfigChanged,
                format!("the cursor's baseline is unreadable: {e}"),
            );
        }
    };
    if baseline.config_key != config_key(config) {
        return fallback(
            FallbackReason::ConfigChanged,
            "okta.app_id or teams.push_groups changed since the last full reconcile".into(),
        );
    }
    let last_seen = cursor.last_published_ms.unwrap_or(0).max(cursor.since_ms);
    if now_ms() - last_seen > MAX_CURSOR_AGE.as_millis() as i64 {
        return fallback(
            FallbackReason::CursorExpired,
            format!(
                "the cursor is {} days old; the System Log keeps 90",
                (now_ms() - last_seen) / 86_400_000
            ),
        );
    }
    let start = match &cursor.next_url {
        Some(url) => match Url::parse(url) {
            Ok(url) => url,
            Err(e) => {
                return fallback(
                    FallbackReason::CursorRejected,
                    format!("the stored next link is not a URL: {e}"),
                );
            }
        },
        None => {
            let since =
                chrono::DateTime::from_timestamp_millis(cursor.since_ms).unwrap_or_default();
            ctx.okta
                .logs_since_url(since, &events::log_filter(config.okta.app_id.as_deref()))
        }
    };

    let poll = match ctx.okta.poll_logs(&start).await {
        Ok(poll) => poll,
        Err(e) => return read_failure(&e, "reading the System Log"),
    };
    let seen: HashSet<&str> = cursor.seen.iter().map(String::as_str).collect();
    let mut batch = HashSet::new();
    let covered = |e: &LogEvent| {
        e.published_at()
            .is_some_and(|t| t.timestamp_millis() < baseline.covered_until_ms)
    };
    let fresh: Vec<LogEvent> = poll
        .events
        .into_iter()
        .filter(|e| !covered(e) && !seen.contains(e.uuid.as_str()) && batch.insert(e.uuid.clone()))
        .collect();
    let mut run = EventsRun::new(Outcome::Idle);
    run.newest_published_ms = fresh
        .iter()
        .filter_map(|e| e.published_at())
        .map(|t| t.timestamp_millis())
        .max();
    let moved = EventCursor {
        next_url: Some(poll.next.to_string()),
        since_ms: cursor.since_ms,
        last_published_ms: run.newest_published_ms.or(cursor.last_published_ms),
        seen: fresh.iter().map(|e| e.uuid.clone()).collect(),
        baseline: cursor.baseline.clone(),
        pending_full: None,
    };

    if fresh.is_empty() {
        // Switch from `since` to Okta's own cursor as soon as there is one;
        // later idle polls write nothing (reading an empty stretch again
        // after a restart is one request).
        if cursor.next_url.is_none() {
            let idle = EventCursor {
                seen: cursor.seen.clone(),
                ..moved
            };
            if let Err(e) = ctx.store.set_event_cursor(&idle).await {
                return EventsRun::new(Outcome::StoreFailed(error_chain(&e)));
            }
        }
        return run;
    }

    let store_state = match ctx.store.load_state().await {
        Ok(state) => state,
        Err(e) => {
            run.outcome = Outcome::StoreFailed(error_chain(&e));
            return run;
        }
    };
    let linked: BTreeSet<&str> = store_state
        .teams
        .iter()
        .filter_map(|t| t.okta_group_id.as_deref())
        .collect();
    let event_ctx = EventContext {
        app_id: config.okta.app_id.as_deref(),
        pushed: baseline.pushed.iter().map(|(id, _)| id.as_str()).collect(),
        linked,
        app_groups: baseline
            .app_groups
            .as_ref()
            .map(|ids| ids.iter().map(String::as_str).collect()),
        push_group_names: match &config.teams.push_groups {
            PushGroups::Assigned => None,
            PushGroups::Named(names) => Some(names.iter().map(String::as_str).collect()),
        },
    };
    let hints = events::hints(&fresh, &event_ctx);
    run.events_by_type = hints.by_type.clone();
    tracing::info!(
        events = fresh.len(),
        pages = poll.pages,
        users = hints.users.len(),
        ignored = hints.ignored,
        by_type = %serde_json::to_string(&hints.by_type).unwrap_or_default(),
        "events read"
    );
    if let Some((reason, detail)) = hints.full {
        run.outcome = hand_over(ctx, &moved, reason, detail).await;
        return run;
    }
    let max = config.events.max_affected_users as usize;
    if hints.users.len() > max {
        let detail = format!(
            "{} users in one poll, more than events.max_affected_users = {max}",
            hints.users.len()
        );
        run.outcome = hand_over(ctx, &moved, FallbackReason::Burst, detail).await;
        return run;
    }
    let (scoped, full) = request_estimates(&hints, &store_state, &baseline);
    if scoped > full && scoped > SMALL_COST {
        let detail = format!(
            "reading {} users one by one (about {scoped} requests) costs more than a full \
             reconcile (about {full})",
            hints.users.len()
        );
        run.outcome = hand_over(ctx, &moved, FallbackReason::Burst, detail).await;
        return run;
    }
    if hints.users.is_empty() {
        // Only events that change nothing the sync reads: move on.
        if let Err(e) = ctx.store.set_event_cursor(&moved).await {
            run.outcome = Outcome::StoreFailed(error_chain(&e));
        }
        return run;
    }

    let known = Known {
        pushed: &baseline.pushed,
        email_skips: &baseline.email_skips,
    };
    let observed = tokio::select! {
        observed = observe_scoped(&ctx.okta, config, &known, &store_state, hints.users, &hints.assignment) => observed,
        () = crate::reconcile::stop_requested(&opts.stop) => {
            run.outcome = Outcome::Idle;
            return run;
        }
    };
    let (okta_state, scope) = match observed {
        Ok(found) => found,
        Err(Scoped::Okta(e)) => {
            run.outcome = match read_failure(&e, "reading the users events named").outcome {
                Outcome::Fallback { reason, detail } => {
                    hand_over(ctx, &moved, reason, detail).await
                }
                other => other,
            };
            return run;
        }
        Err(Scoped::TooWide(n)) => {
            let detail = format!(
                "{n} users share emails with the ones events named, more than \
                 events.max_affected_users = {max}"
            );
            run.outcome = hand_over(ctx, &moved, FallbackReason::Burst, detail).await;
            return run;
        }
    };
    let scope_size = scope.len();
    let grace = match crate::reconcile::load_grace(config, &ctx.store).await {
        Ok(grace) => grace,
        Err(e) => {
            run.outcome = Outcome::StoreFailed(error_chain(&e));
            return run;
        }
    };
    let plan = crate::reconcile::plan::plan_with_grace(
        &okta_state,
        &store_state,
        &config.policy(),
        &Scope::Users(scope.clone()),
        &grace,
    );
    // The skips this plan decided replace those of the users it saw: a
    // user skipped for an email now waits for that email like one the last
    // full run skipped.
    let mut baseline = baseline;
    baseline.email_skips.retain(|(id, _)| !scope.contains(id));
    baseline
        .email_skips
        .extend(plan.email_skips.iter().cloned());
    // The guard weighs this plan with what earlier polls applied; the
    // cursor that carries the sum is written only with the last change.
    let before = baseline.since_full;
    baseline.since_full = before.plus(&plan);
    let moved = EventCursor {
        baseline: serde_json::to_string(&baseline).unwrap_or_else(|_| cursor.baseline.clone()),
        ..moved
    };
    drop(store_state);
    tracing::info!(
        users = scope_size,
        planned = plan.changes.len(),
        observe_ms = started.elapsed().as_millis() as u64,
        "observed events"
    );
    if plan.changes.is_empty() && !opts.dry_run {
        crate::reconcile::log_findings(&plan.findings);
        if let Err(e) = ctx.store.set_event_cursor(&moved).await {
            run.outcome = Outcome::StoreFailed(error_chain(&e));
            return run;
        }
        if !plan.missing.is_empty()
            && let Err(e) = ctx.store.update_missing(&plan.missing).await
        {
            tracing::warn!(error = %error_chain(&e), "could not record users missing from scope");
        }
        let mut report = Report::new(None);
        report.status = Status::Ok;
        report.findings = plan.findings;
        report.pending_deactivations = plan.pending_deactivations;
        report.counts = crate::model::Counts::tally(&[], plan.skipped, plan.unmanaged);
        report.duration_ms = started.elapsed().as_millis() as u64;
        run.outcome = Outcome::Ran(Box::new(report));
        return run;
    }

    let run_id = if opts.dry_run {
        None
    } else {
        match ctx.store.start_run("events", &ctx.holder).await {
            Ok(id) => Some(id),
            Err(e) => {
                run.outcome = Outcome::StoreFailed(error_chain(&e));
                return run;
            }
        }
    };
    let report = Report::new(run_id);
    let mut report = guard_and_apply(
        ctx,
        opts,
        Some(lock.checker()),
        plan,
        report,
        (!opts.dry_run).then_some(&moved),
        before,
    )
    .await;
    report.duration_ms = started.elapsed().as_millis() as u64;
    if let Some(id) = run_id {
        crate::reconcile::record_outcome(&ctx.store, id, &mut report).await;
    }
    run.outcome = Outcome::Ran(Box::new(report));
    run
}

/// Request counts below which a scoped run is never traded for a full one.
const SMALL_COST: u64 = 20;

/// Okta requests of reading `hints`'s users one by one (the read, and their
/// groups when groups are pushed), against those of a full reconcile, both
/// estimated from the store: the app read, app users 500 a page, the app's
/// groups (200 a page), and every pushed group of the baseline with its
/// members 1,000 a page (as many as its linked team has; a listing ends
/// with a page that is not full, so `n / size + 1` pages).
fn request_estimates(hints: &events::Hints, store: &StoreState, baseline: &Baseline) -> (u64, u64) {
    let per_user = 1 + u64::from(!baseline.pushed.is_empty());
    let scoped = hints.users.len() as u64 * per_user;
    let pages = |n: u64, size: u64| n / size + 1;
    let managed = store.users.iter().filter(|u| u.okta_id.is_some()).count() as u64;
    let mut team_sizes: BTreeMap<i64, u64> = BTreeMap::new();
    for m in &store.memberships {
        *team_sizes.entry(m.team_id).or_default() += 1;
    }
    let group_sizes: BTreeMap<&str, u64> = store
        .teams
        .iter()
        .filter_map(|t| {
            let group = t.okta_group_id.as_deref()?;
            Some((group, team_sizes.get(&t.id).copied().unwrap_or(0)))
        })
        .collect();
    let members: u64 = baseline
        .pushed
        .iter()
        .map(|(group, _)| pages(group_sizes.get(group.as_str()).copied().unwrap_or(0), 1000))
        .sum();
    let full = 1 + pages(managed, 500) + pages(baseline.pushed.len() as u64, 200) + members;
    (scoped, full)
}

/// Hands over to a full reconcile past the events this poll read: they
/// happened before that run begins to read Okta, so are in its view, and
/// nothing reads them again (SPEC §7). Polls wait for it.
async fn hand_over(
    ctx: &SyncContext,
    moved: &EventCursor,
    reason: FallbackReason,
    detail: String,
) -> Outcome {
    let pending = EventCursor {
        pending_full: Some(reason.as_str().to_owned()),
        ..moved.clone()
    };
    match ctx.store.set_event_cursor(&pending).await {
        Ok(()) => Outcome::Fallback { reason, detail },
        Err(e) => Outcome::StoreFailed(error_chain(&e)),
    }
}

/// Why a read failed: no permission for the System Log, a cursor Okta
/// refuses, or any other error (a full reconcile then reads everything).
fn read_failure(e: &OktaError, what: &str) -> EventsRun {
    let detail = format!("{what} failed: {}", error_chain(e));
    let outcome = match e {
        OktaError::Forbidden { endpoint, .. } if endpoint.path.ends_with("/logs") => {
            Outcome::Unavailable(detail)
        }
        OktaError::OAuth(_) if FailureKind::of_okta(e) == FailureKind::Credential => {
            Outcome::Unavailable(detail)
        }
        OktaError::UnexpectedStatus { failure, .. }
            if failure.error_code.as_deref() == Some("E0000053") =>
        {
            Outcome::Fallback {
                reason: FallbackReason::CursorRejected,
                detail,
            }
        }
        _ => Outcome::Fallback {
            reason: FallbackReason::ReadError,
            detail,
        },
    };
    EventsRun::new(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Role, StoreMembership, StoreTeam, StoreUser};

    fn user(id: i64) -> StoreUser {
        StoreUser {
            id,
            email: format!("u{id}@x.example").into(),
            okta_id: Some(format!("00u{id}").into()),
            first_name: "".into(),
            last_name: "".into(),
            display_name: "".into(),
            active: true,
        }
    }

    /// The burst decision weighs a poll against a full reconcile: the full
    /// one reads every pushed group's members, linked to a team yet or
    /// not, and a group of 2,500 members takes three pages.
    #[test]
    fn a_full_reconcile_is_estimated_with_every_pushed_group_and_its_member_pages() {
        let team = |id: i64, group: Option<&str>| StoreTeam {
            id,
            name: format!("t{id}"),
            okta_group_id: group.map(str::to_owned),
        };
        let member = |team_id: i64, user_id: i64| StoreMembership {
            team_id,
            user_id,
            role: Role::Member,
        };
        let store = StoreState {
            users: (1..=1_200).map(user).collect(),
            teams: vec![
                team(1, Some("00gbig")),
                team(2, Some("00gsmall")),
                team(3, None),
            ],
            memberships: (1..=1_200)
                .map(|u| member(1, u))
                .chain((1..=1_200).map(|u| member(1, u + 1_200)))
                .chain((1..=100).map(|u| member(1, u + 2_400)))
                .chain((1..=10).map(|u| member(2, u)))
                .chain((1..=50).map(|u| member(3, u)))
                .collect(),
        };
        let baseline = Baseline {
            pushed: ["00gbig", "00gsmall", "00gnew", "00gempty"]
                .iter()
                .map(|g| (g.to_string(), g.to_string()))
                .collect(),
            ..Baseline::default()
        };
        let hints = events::Hints {
            users: (1..=7).map(|i| format!("00u{i}")).collect(),
            ..events::Hints::default()
        };
        let (scoped, full) = request_estimates(&hints, &store, &baseline);
        // Each user read, and its groups.
        assert_eq!(scoped, 14);
        // The app, 3 pages of 1,200 app users, 1 page of 4 groups, then
        // members: 2,500 -> 3 pages, 10 -> 1, unlinked and empty -> 1 each.
        assert_eq!(full, 1 + 3 + 1 + (3 + 1 + 1 + 1));
    }
}

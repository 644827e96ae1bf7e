//! Applies a plan to the store.
//!
//! Invariant: changes are applied in the given order, in transactions of
//! about [`BATCH`] changes (see `txorder`: a created user and its
//! memberships always share one); each change and its audit row are written
//! in the same transaction, so a crash leaves whole batches applied and the
//! next run's plan picks up exactly what is missing. Writes are paced by one
//! limiter (`store.writes_per_second`, one permit per change). A stop
//! request and a lost lock are honoured between batches.
//!
//! Inside a batch, consecutive changes of one kind form a run written with
//! multi-row statements: creations (`INSERT … RETURNING`), membership adds
//! and role changes (one upsert), deactivations and reactivations
//! (`… WHERE id IN (…)`) and removals; the other kinds, rare and
//! order-sensitive (email-change chains), are written one by one. The audit
//! rows of a batch are written, in order, by multi-row inserts before the
//! commit. When a write of the batch fails, the batch is rolled back and,
//! unless the store was unreachable, redone one change at a time in a new
//! transaction that is always rolled back: the first failing change names
//! the error, exactly as the one-by-one path always did.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::model::{Change, TeamRef, UserRef};
use crate::reconcile::report::{ChangeView, FailureKind, change_json};
use crate::store::{AuditRow, EventCursor, LockCheck, NewUser, Store, StoreError, StoreTx};

/// Changes per transaction: small enough that a stop request or a crash
/// loses little, large enough that commits do not dominate.
pub const BATCH: usize = 500;

/// Most permits taken at once from the write limiter (its burst).
const MAX_BURST: u32 = 500;

/// Why applying stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A store write failed; the current batch was rolled back.
    #[error("applying {action} for {target} failed")]
    Write {
        action: &'static str,
        target: String,
        #[source]
        source: StoreError,
    },
    /// A change refers to a user or team created earlier in the plan that
    /// was not created (a planner bug; nothing of this batch is written).
    #[error("plan refers to {0}, which this run did not create")]
    Dangling(String),
    /// The sync lock was lost or the store failed between batches.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Shutdown was requested; the last batch committed.
    #[error("stopped by request after {applied} changes")]
    Stopped { applied: usize },
}

impl ApplyError {
    /// What kind of failure this makes the run (the daemon's policy reads it).
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            ApplyError::Stopped { .. } => FailureKind::Interrupted,
            ApplyError::Write { source, .. } | ApplyError::Store(source) => {
                FailureKind::of_store(source)
            }
            // A planner bug: a retry plans the same again.
            ApplyError::Dangling(_) => FailureKind::Configuration,
        }
    }
}

/// Options for one apply.
pub struct ApplyOptions<'a> {
    pub run_id: i64,
    pub writes_per_second: Option<NonZeroU32>,
    /// Set to stop between batches (graceful shutdown).
    pub stop: &'a AtomicBool,
    /// Checked between batches; a lost lock stops the apply.
    pub lock: Option<LockCheck>,
    /// Called after each committed batch with the number of changes applied
    /// so far (progress for the watchdog).
    pub progress: &'a (dyn Fn(usize) + Send + Sync),
    /// An incremental run's System Log position, written in the last
    /// batch's transaction (SPEC §7: the cursor moves with the changes its
    /// events led to, or not at all).
    pub cursor: Option<&'a EventCursor>,
    /// The deactivation grace's records (SPEC §8), written in the last
    /// batch's transaction.
    pub missing: Option<&'a crate::model::MissingUpdate>,
}

/// Applies `changes` in order. Returns how many were applied (committed);
/// on error, the changes before that count are committed and the rest are not.
pub async fn apply(
    store: &Store,
    changes: &[Change],
    opts: &ApplyOptions<'_>,
) -> (usize, Result<(), ApplyError>) {
    let pacer = Pacer::new(opts.writes_per_second);
    // Ids of rows created by committed batches of this apply.
    let mut created = NewIds::default();
    let mut applied = 0;
    let ranges = crate::reconcile::txorder::batches(changes, BATCH);
    let last = ranges.len().saturating_sub(1);
    for (n, range) in ranges.into_iter().enumerate() {
        let batch = &changes[range];
        let (cursor, missing) = if n == last {
            (opts.cursor, opts.missing)
        } else {
            (None, None)
        };
        if opts.stop.load(Ordering::SeqCst) {
            return (applied, Err(ApplyError::Stopped { applied }));
        }
        if let Some(lock) = &opts.lock
            && let Err(e) = lock.check()
        {
            return (applied, Err(e.into()));
        }
        let views: Vec<ChangeView> = batch.iter().map(change_json).collect();
        let tail = Tail { cursor, missing };
        match write_batch(store, batch, &views, opts.run_id, &pacer, &created, tail).await {
            Ok(staged) => created.absorb(staged),
            Err(e) => return (applied, Err(e)),
        }
        for (i, (change, view)) in batch.iter().zip(&views).enumerate() {
            tracing::info!(
                run_id = opts.run_id,
                action = change.kind(),
                target = %view.target,
                change = %view.detail,
                seq = applied + i + 1,
                "change applied"
            );
        }
        applied += batch.len();
        (opts.progress)(applied);
    }
    (applied, Ok(()))
}

/// What the last batch's transaction also writes.
struct Tail<'a> {
    cursor: Option<&'a EventCursor>,
    missing: Option<&'a crate::model::MissingUpdate>,
}

/// Writes and commits one batch; returns the ids it created.
async fn write_batch(
    store: &Store,
    batch: &[Change],
    views: &[ChangeView],
    run_id: i64,
    pacer: &Pacer,
    created: &NewIds,
    tail: Tail<'_>,
) -> Result<NewIds, ApplyError> {
    let mut tx = store.begin().await?;
    let mut ids = Ids::new(created);
    match write_runs(&mut tx, batch, views, run_id, pacer, &mut ids).await {
        Ok(()) => {
            if let Some(cursor) = tail.cursor {
                tx.set_event_cursor(cursor).await?;
            }
            if let Some(missing) = tail.missing {
                tx.update_missing(missing).await?;
            }
            tx.commit().await?;
            Ok(ids.staged)
        }
        Err(e) => {
            // Rolled back now, not when the connection is next used: on
            // SQLite the write lock must be free for the redo.
            let _ = tx.rollback().await;
            let unreachable = matches!(
                &e,
                ApplyError::Write { source, .. } | ApplyError::Store(source) if source.is_transient()
            );
            if unreachable {
                return Err(e);
            }
            Err(first_failing_change(store, batch, views, run_id, created)
                .await
                .unwrap_or(e))
        }
    }
}

/// Redoes a failed batch one change at a time in a transaction that is
/// always rolled back, and returns the error of the first change that
/// fails, named by its action and target (`None` when none fails).
async fn first_failing_change(
    store: &Store,
    batch: &[Change],
    views: &[ChangeView],
    run_id: i64,
    created: &NewIds,
) -> Option<ApplyError> {
    let mut tx = store.begin().await.ok()?;
    let mut ids = Ids::new(created);
    for (change, view) in batch.iter().zip(views) {
        let written = match write_one(&mut tx, change, view, &mut ids).await {
            Ok(()) => {
                let (before, after) = audit_values(view);
                tx.audit(
                    Some(run_id),
                    change.kind(),
                    &view.target,
                    before.as_deref(),
                    after.as_deref(),
                )
                .await
                .map_err(named(change, view))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            let _ = tx.rollback().await;
            return Some(e);
        }
    }
    let _ = tx.rollback().await;
    None
}

/// How a change is written: the kinds that share multi-row statements, and
/// the rest (one statement per change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    CreateUsers,
    /// `AddMembership` and `ChangeRole`: the same upsert.
    UpsertMemberships,
    RemoveMemberships,
    SetActive(bool),
    One,
}

impl Run {
    fn of(change: &Change) -> Run {
        match change {
            Change::CreateUser { .. } => Run::CreateUsers,
            Change::AddMembership { .. } | Change::ChangeRole { .. } => Run::UpsertMemberships,
            Change::RemoveMembership { .. } => Run::RemoveMemberships,
            Change::DeactivateUser { .. } => Run::SetActive(false),
            Change::ReactivateUser { .. } => Run::SetActive(true),
            Change::CreateTeam { .. }
            | Change::LinkTeam { .. }
            | Change::LinkUser { .. }
            | Change::UpdateUser { .. } => Run::One,
        }
    }
}

/// The runs of a batch: maximal ranges of one multi-row kind, or single
/// changes.
fn runs(batch: &[Change]) -> Vec<(Run, Range<usize>)> {
    let mut out: Vec<(Run, Range<usize>)> = Vec::new();
    for (i, change) in batch.iter().enumerate() {
        let kind = Run::of(change);
        match out.last_mut() {
            Some((last, range)) if *last == kind && kind != Run::One => range.end = i + 1,
            _ => out.push((kind, i..i + 1)),
        }
    }
    out
}

/// Writes a batch's changes run by run, then its audit rows (in order).
async fn write_runs(
    tx: &mut StoreTx,
    batch: &[Change],
    views: &[ChangeView],
    run_id: i64,
    pacer: &Pacer,
    ids: &mut Ids<'_>,
) -> Result<(), ApplyError> {
    for (kind, range) in runs(batch) {
        let mut start = range.start;
        while start < range.end {
            let end = range.end.min(start.saturating_add(pacer.rows));
            pacer.wait(end - start).await;
            write_run(tx, kind, &batch[start..end], &views[start..end], ids).await?;
            start = end;
        }
    }
    let values: Vec<(Option<String>, Option<String>)> = views.iter().map(audit_values).collect();
    let rows: Vec<AuditRow<'_>> = batch
        .iter()
        .zip(views)
        .zip(&values)
        .map(|((change, view), (before, after))| AuditRow {
            action: change.kind(),
            target: &view.target,
            before: before.as_deref(),
            after: after.as_deref(),
        })
        .collect();
    tx.audit_rows(Some(run_id), &rows)
        .await
        .map_err(named_run(batch, views))
}

/// Writes the changes of one run (all of kind `kind`).
async fn write_run(
    tx: &mut StoreTx,
    kind: Run,
    changes: &[Change],
    views: &[ChangeView],
    ids: &mut Ids<'_>,
) -> Result<(), ApplyError> {
    if let [change] = changes {
        return write_one(tx, change, &views[0], ids).await;
    }
    match kind {
        Run::One => {
            for (change, view) in changes.iter().zip(views) {
                write_one(tx, change, view, ids).await?;
            }
        }
        Run::CreateUsers => {
            let users: Vec<NewUser<'_>> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::CreateUser { okta_id, attrs } => Some(NewUser { okta_id, attrs }),
                    _ => None,
                })
                .collect();
            let new_ids = tx
                .insert_users(&users)
                .await
                .map_err(named_run(changes, views))?;
            let mut by_okta_id: HashMap<String, i64> = new_ids.into_iter().collect();
            for user in &users {
                let id = by_okta_id.remove(user.okta_id).ok_or_else(|| {
                    named_run(changes, views)(StoreError::Corrupt(format!(
                        "insert users: no id came back for Okta user {}",
                        user.okta_id
                    )))
                })?;
                ids.staged.users.insert(user.okta_id.to_owned(), id);
            }
        }
        Run::UpsertMemberships => {
            let mut rows = Vec::with_capacity(changes.len());
            for change in changes {
                match change {
                    Change::AddMembership {
                        team, user, role, ..
                    } => rows.push((ids.team(team)?, ids.user(user)?, *role)),
                    Change::ChangeRole {
                        team_id,
                        user_id,
                        to,
                        ..
                    } => rows.push((*team_id, *user_id, *to)),
                    _ => {}
                }
            }
            tx.upsert_memberships(&rows)
                .await
                .map_err(named_run(changes, views))?;
        }
        Run::RemoveMemberships => {
            let rows: Vec<(i64, i64)> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::RemoveMembership {
                        team_id, user_id, ..
                    } => Some((*team_id, *user_id)),
                    _ => None,
                })
                .collect();
            tx.delete_memberships(&rows)
                .await
                .map_err(named_run(changes, views))?;
        }
        Run::SetActive(active) => {
            let users: Vec<i64> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::DeactivateUser { user_id, .. }
                    | Change::ReactivateUser { user_id, .. } => Some(*user_id),
                    _ => None,
                })
                .collect();
            tx.set_users_active(&users, active)
                .await
                .map_err(named_run(changes, views))?;
        }
    }
    Ok(())
}

/// Writes one change's row (its audit row is the caller's).
async fn write_one(
    tx: &mut StoreTx,
    change: &Change,
    view: &ChangeView,
    ids: &mut Ids<'_>,
) -> Result<(), ApplyError> {
    let write = named(change, view);
    match change {
        Change::CreateTeam {
            name,
            okta_group_id,
        } => {
            let id = tx
                .insert_team(name, Some(okta_group_id))
                .await
                .map_err(write)?;
            ids.staged.teams.insert(name.clone(), id);
        }
        Change::LinkTeam {
            team_id,
            okta_group_id,
            ..
        } => tx
            .set_team_group(*team_id, Some(okta_group_id))
            .await
            .map_err(write)?,
        Change::CreateUser { okta_id, attrs } => {
            let id = tx
                .insert_user(attrs, Some(okta_id), true)
                .await
                .map_err(write)?;
            ids.staged.users.insert(okta_id.to_string(), id);
        }
        Change::LinkUser {
            user_id, okta_id, ..
        } => tx
            .set_user_okta_id(*user_id, Some(okta_id))
            .await
            .map_err(write)?,
        Change::UpdateUser { user_id, after, .. } => {
            tx.update_user_attrs(*user_id, after).await.map_err(write)?;
        }
        Change::ReactivateUser { user_id, .. } => {
            tx.set_user_active(*user_id, true).await.map_err(write)?;
        }
        Change::DeactivateUser { user_id, .. } => {
            tx.set_user_active(*user_id, false).await.map_err(write)?;
        }
        Change::AddMembership {
            team, user, role, ..
        } => {
            let team_id = ids.team(team)?;
            let user_id = ids.user(user)?;
            tx.upsert_membership(team_id, user_id, *role)
                .await
                .map_err(write)?;
        }
        Change::ChangeRole {
            team_id,
            user_id,
            to,
            ..
        } => tx
            .upsert_membership(*team_id, *user_id, *to)
            .await
            .map_err(write)?,
        Change::RemoveMembership {
            team_id, user_id, ..
        } => tx
            .delete_membership(*team_id, *user_id)
            .await
            .map_err(write)?,
    }
    Ok(())
}

/// The audit row's `before` and `after` JSON texts of a change.
fn audit_values(view: &ChangeView) -> (Option<String>, Option<String>) {
    (
        view.before.as_ref().map(ToString::to_string),
        view.after.as_ref().map(ToString::to_string),
    )
}

/// Names a failed write after its change.
fn named(change: &Change, view: &ChangeView) -> impl FnOnce(StoreError) -> ApplyError {
    let action = change.kind();
    let target = view.target.clone();
    move |source| ApplyError::Write {
        action,
        target,
        source,
    }
}

/// Names a failed multi-row write after the changes it held (used when the
/// one-by-one redo finds no failing change, e.g. the store went away).
fn named_run(changes: &[Change], views: &[ChangeView]) -> impl Fn(StoreError) -> ApplyError {
    let action = changes.first().map_or("apply", Change::kind);
    let target = match views {
        [] => String::new(),
        [one] => one.target.clone(),
        [first, rest @ ..] => format!(
            "{} and {} more changes written together",
            first.target,
            rest.len()
        ),
    };
    move |source| ApplyError::Write {
        action,
        target: target.clone(),
        source,
    }
}

/// Ids of users (by Okta id) and teams (by name) created by this apply.
#[derive(Debug, Default)]
struct NewIds {
    users: HashMap<String, i64>,
    teams: HashMap<String, i64>,
}

impl NewIds {
    fn absorb(&mut self, other: NewIds) {
        self.users.extend(other.users);
        self.teams.extend(other.teams);
    }
}

/// Id lookups during one batch: the ids of committed batches, and those
/// of the batch being written (dropped with it if it rolls back).
struct Ids<'a> {
    committed: &'a NewIds,
    staged: NewIds,
}

impl<'a> Ids<'a> {
    fn new(committed: &'a NewIds) -> Ids<'a> {
        Ids {
            committed,
            staged: NewIds::default(),
        }
    }

    fn user(&self, r: &UserRef) -> Result<i64, ApplyError> {
        match r {
            UserRef::Existing(id) => Ok(*id),
            UserRef::New { okta_id } => self
                .staged
                .users
                .get(&**okta_id)
                .or_else(|| self.committed.users.get(&**okta_id))
                .copied()
                .ok_or_else(|| ApplyError::Dangling(format!("new user {okta_id}"))),
        }
    }

    fn team(&self, r: &TeamRef) -> Result<i64, ApplyError> {
        match r {
            TeamRef::Existing(id) => Ok(*id),
            TeamRef::New { name } => self
                .staged
                .teams
                .get(&**name)
                .or_else(|| self.committed.teams.get(&**name))
                .copied()
                .ok_or_else(|| ApplyError::Dangling(format!("new team {name:?}"))),
        }
    }
}

/// The write pacing: one permit per change, taken before a statement for
/// all the changes it writes (at most the limiter's burst).
struct Pacer {
    limiter: Option<DefaultDirectRateLimiter>,
    /// Changes per statement (and permits per request) at most.
    rows: usize,
}

impl Pacer {
    fn new(rate: Option<NonZeroU32>) -> Pacer {
        match rate {
            Some(rate) => {
                let burst = rate.min(NonZeroU32::new(MAX_BURST).unwrap_or(rate));
                Pacer {
                    limiter: Some(RateLimiter::direct(
                        Quota::per_second(rate).allow_burst(burst),
                    )),
                    rows: burst.get() as usize,
                }
            }
            None => Pacer {
                limiter: None,
                rows: usize::MAX,
            },
        }
    }

    async fn wait(&self, changes: usize) {
        if let Some(limiter) = &self.limiter
            && let Some(n) = NonZeroU32::new(u32::try_from(changes).unwrap_or(u32::MAX))
        {
            // `changes` never exceeds the burst, so this cannot fail.
            let _ = limiter.until_n_ready(n).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeactivationReason, Role};
    use crate::reconcile::txorder::tests::create;

    fn role(user: i64) -> Change {
        Change::ChangeRole {
            team_id: 1,
            team_name: "Eng".into(),
            user_id: user,
            email: format!("{user}@x.example").into(),
            from: Role::Member,
            to: Role::Admin,
        }
    }

    fn add(id: &str) -> Change {
        Change::AddMembership {
            team: TeamRef::Existing(1),
            team_name: "Eng".into(),
            user: UserRef::New { okta_id: id.into() },
            email: format!("{id}@x.example").into(),
            role: Role::Member,
        }
    }

    fn deactivate(user: i64) -> Change {
        Change::DeactivateUser {
            user_id: user,
            okta_id: format!("o{user}"),
            email: format!("{user}@x.example"),
            reason: DeactivationReason::NotInScope,
        }
    }

    fn reactivate(user: i64) -> Change {
        Change::ReactivateUser {
            user_id: user,
            okta_id: format!("o{user}"),
            email: format!("{user}@x.example"),
        }
    }

    fn link(user: i64) -> Change {
        Change::LinkUser {
            user_id: user,
            email: format!("{user}@x.example"),
            okta_id: format!("o{user}"),
            previous_okta_id: None,
        }
    }

    #[test]
    fn runs_group_consecutive_changes_of_one_statement_kind() {
        let batch = vec![
            link(1),
            link(2),
            create("a"),
            create("b"),
            add("a"),
            role(3),
            add("b"),
            deactivate(4),
            deactivate(5),
            reactivate(6),
            create("c"),
        ];
        assert_eq!(
            runs(&batch),
            vec![
                (Run::One, 0..1),
                (Run::One, 1..2),
                (Run::CreateUsers, 2..4),
                (Run::UpsertMemberships, 4..7),
                (Run::SetActive(false), 7..9),
                (Run::SetActive(true), 9..10),
                (Run::CreateUsers, 10..11),
            ]
        );
        assert!(runs(&[]).is_empty());
    }
}

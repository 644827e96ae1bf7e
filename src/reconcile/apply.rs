//! Applies a plan to the store.
//!
//! Invariant: changes are applied in the given order, in transactions of
//! about [`BATCH`] changes (see `txorder`: a created user and its
//! memberships always share one); each change and its audit row are written in the same
//! transaction, so a crash leaves whole batches applied and the next run's
//! plan picks up exactly what is missing. Writes are paced by one limiter
//! (`store.writes_per_second`). A stop request is honoured between batches.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::model::{Change, TeamRef, UserRef};
use crate::reconcile::report::change_json;
use crate::store::{LockCheck, Store, StoreError};

/// Changes per transaction: small enough that a stop request or a crash
/// loses little, large enough that commits do not dominate.
pub const BATCH: usize = 500;

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
}

/// Applies `changes` in order. Returns how many were applied (committed);
/// on error, the changes before that count are committed and the rest are not.
pub async fn apply(
    store: &Store,
    changes: &[Change],
    opts: &ApplyOptions<'_>,
) -> (usize, Result<(), ApplyError>) {
    let limiter: Option<Arc<DefaultDirectRateLimiter>> = opts.writes_per_second.map(|rate| {
        Arc::new(RateLimiter::direct(Quota::per_second(rate).allow_burst(
            rate.min(NonZeroU32::new(BATCH as u32).unwrap_or(rate)),
        )))
    });
    // Ids of rows created by this apply. A failed batch ends the apply, so
    // ids of a rolled-back batch are never used.
    let mut new_users: HashMap<String, i64> = HashMap::new();
    let mut new_teams: HashMap<String, i64> = HashMap::new();
    let mut applied = 0;
    for range in crate::reconcile::txorder::batches(changes, BATCH) {
        let batch = &changes[range];
        if opts.stop.load(Ordering::SeqCst) {
            return (applied, Err(ApplyError::Stopped { applied }));
        }
        if let Some(lock) = &opts.lock
            && let Err(e) = lock.check()
        {
            return (applied, Err(e.into()));
        }
        let mut tx = match store.begin().await {
            Ok(tx) => tx,
            Err(e) => return (applied, Err(e.into())),
        };
        for change in batch {
            if let Some(limiter) = &limiter {
                limiter.until_ready().await;
            }
            let view = change_json(change);
            let target = view.target.clone();
            let action = change.kind();
            let write = |source| ApplyError::Write {
                action,
                target: target.clone(),
                source,
            };
            let result: Result<(), ApplyError> = async {
                match change {
                    Change::CreateTeam {
                        name,
                        okta_group_id,
                    } => {
                        let id = tx
                            .insert_team(name, Some(okta_group_id))
                            .await
                            .map_err(write)?;
                        new_teams.insert(name.clone(), id);
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
                        new_users.insert(okta_id.clone(), id);
                    }
                    Change::LinkUser {
                        user_id, okta_id, ..
                    } => {
                        tx.set_user_okta_id(*user_id, Some(okta_id))
                            .await
                            .map_err(write)?;
                    }
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
                        let team_id = resolve_team(&new_teams, team)?;
                        let user_id = resolve_user(&new_users, user)?;
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
                    } => {
                        tx.delete_membership(*team_id, *user_id)
                            .await
                            .map_err(write)?;
                    }
                }
                let before = view.before.as_ref().map(ToString::to_string);
                let after = view.after.as_ref().map(ToString::to_string);
                tx.audit(
                    Some(opts.run_id),
                    action,
                    &view.target,
                    before.as_deref(),
                    after.as_deref(),
                )
                .await
                .map_err(write)
            }
            .await;
            if let Err(e) = result {
                // The transaction rolls back when dropped.
                drop(tx);
                return (applied, Err(e));
            }
        }
        if let Err(e) = tx.commit().await {
            return (applied, Err(e.into()));
        }
        for (i, change) in batch.iter().enumerate() {
            let view = change_json(change);
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

fn resolve_user(new_users: &HashMap<String, i64>, r: &UserRef) -> Result<i64, ApplyError> {
    match r {
        UserRef::Existing(id) => Ok(*id),
        UserRef::New { okta_id } => new_users
            .get(okta_id)
            .copied()
            .ok_or_else(|| ApplyError::Dangling(format!("new user {okta_id}"))),
    }
}

fn resolve_team(new_teams: &HashMap<String, i64>, r: &TeamRef) -> Result<i64, ApplyError> {
    match r {
        TeamRef::Existing(id) => Ok(*id),
        TeamRef::New { name } => new_teams
            .get(name)
            .copied()
            .ok_or_else(|| ApplyError::Dangling(format!("new team {name:?}"))),
    }
}

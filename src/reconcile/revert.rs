//! `writer-sync revert RUN_ID` (SPEC §8): the inverse of the changes an
//! applied run made, built from its audit rows, applied as a new run
//! (`trigger = "revert"`) with its own audit rows.
//!
//! Inverses, newest change first: user deactivated → reactivated, user
//! reactivated → deactivated, user created → deactivated (reason
//! `reverted`), attributes updated → the old attributes, membership added →
//! removed, membership removed → added with its old role, role changed →
//! the old role. Links (user linked, team linked) and created teams are
//! kept: there is no unlink or team deletion, and a link or an empty team
//! grants nothing by itself once the memberships are reverted; the report
//! lists each kept change.
//!
//! Invariant: a run is reverted fully or not at all. It must have completed
//! (status `ok`), each of its audit rows must name the rows it touched, and
//! every inverse must apply to the store as it is now (inside the lock, see
//! `applies`): when the store has moved on for a user, team or membership
//! since that run, nothing is written and the refusal names the change.

use serde_json::Value;

use crate::model::{Change, DeactivationReason, Finding, Role, Severity, StoreState, UserAttrs};
use crate::reconcile::applies::check_applies;
use crate::reconcile::control::{ControlError, ControlRun, Decided, run_decided};
use crate::reconcile::report::Report;
use crate::store::AuditRecord;

/// The warning every revert carries: a sync re-applies Okta's view. With
/// the store paused (`writer-sync pause`), that waits for `resume`.
pub fn next_sync_warning(paused: bool) -> String {
    if paused {
        "the store is paused, so the revert stays until `writer-sync resume`; the first sync after it \
         re-applies Okta's view (fix Okta first, or the revert is undone)"
            .to_owned()
    } else {
        "the next sync re-applies Okta's view and undoes this revert unless the store is paused \
         (`writer-sync pause`) or Okta is changed first"
            .to_owned()
    }
}

/// Reverts run `run_id` (or, with `run.dry_run`, reports the inverse and
/// writes nothing). Unknown run: [`ControlError::Usage`]; a run that did
/// not complete, applied nothing, or cannot be inverted fully now:
/// [`ControlError::Refused`].
pub async fn revert(run: &ControlRun<'_>, run_id: i64) -> Result<Report, ControlError> {
    let store = run.store;
    let record = store.run_record(run_id).await?.ok_or_else(|| {
        ControlError::Usage(format!(
            "there is no run {run_id} in this store (see `writer-sync history`)"
        ))
    })?;
    if record.status != "ok" {
        return Err(ControlError::Refused(format!(
            "refused: run {run_id} is `{}`, not `ok`: only a completed run can be reverted \
             (a failed or interrupted run's changes are converged by the next sync; \
             a blocked or dry run applied nothing); nothing was written",
            record.status
        )));
    }
    let audit = store.audit_of_run(run_id).await?;
    if audit.is_empty() {
        return Err(ControlError::Refused(format!(
            "refused: run {run_id} applied no changes: there is nothing to revert"
        )));
    }
    let paused = store.pause_state().await?.is_some();
    let about = format!(
        "this run reverts run {run_id} (trigger {}, {} changes)",
        record.trigger,
        audit.len()
    );
    run_decided(run, move |state| {
        let (changes, kept) = inverse(run_id, &audit, state)?;
        let refused = check_applies(state, &changes);
        if !refused.is_empty() {
            return Err(ControlError::Refused(format!(
                "refused: run {run_id} cannot be reverted fully: the store has moved on since it for \
                 {} of its changes; nothing was written; the inverse changes that no longer apply: {}",
                refused.len(),
                refused.join("; ")
            )));
        }
        let warn = |message: String| Finding {
            severity: Severity::Warning,
            message,
        };
        let mut findings = vec![warn(about)];
        findings.extend(kept.into_iter().map(warn));
        findings.push(warn(next_sync_warning(paused)));
        Ok(Decided {
            changes,
            findings,
            skipped: 0,
            unmanaged: 0,
        })
    })
    .await
}

/// The inverse of a run's audit rows against `state` (newest first), and
/// a note for each change that is kept.
fn inverse(
    run_id: i64,
    audit: &[AuditRecord],
    state: &StoreState,
) -> Result<(Vec<Change>, Vec<String>), ControlError> {
    let mut changes = Vec::new();
    let mut kept = Vec::new();
    let mut cannot = Vec::new();
    for row in audit.iter().rev() {
        match invert(row, state) {
            Ok(Inverse::Change(c)) => changes.push(*c),
            Ok(Inverse::Kept(why)) => {
                kept.push(format!("kept: {} {}: {why}", row.action, row.target))
            }
            Err(why) => cannot.push(format!(
                "{} {} (audit row {}): {why}",
                row.action, row.target, row.id
            )),
        }
    }
    if !cannot.is_empty() {
        return Err(ControlError::Refused(format!(
            "refused: run {run_id} cannot be reverted fully: {} of its changes cannot be inverted; \
             nothing was written: {}",
            cannot.len(),
            cannot.join("; ")
        )));
    }
    Ok((changes, kept))
}

enum Inverse {
    Change(Box<Change>),
    Kept(&'static str),
}

fn parse(text: Option<&str>, which: &str) -> Result<Value, String> {
    let text = text.ok_or_else(|| format!("the audit row has no `{which}`"))?;
    serde_json::from_str(text).map_err(|e| format!("the audit row's `{which}` is not JSON: {e}"))
}

fn id(v: &Value, key: &str) -> Result<i64, String> {
    v[key].as_i64().ok_or_else(|| {
        format!("the audit row does not name the `{key}` (written by an older writer-sync)")
    })
}

fn text(v: &Value, key: &str) -> Result<String, String> {
    v[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("the audit row has no `{key}`"))
}

fn role(v: &Value) -> Result<Role, String> {
    text(v, "role")?.parse()
}

fn attrs(v: &Value) -> Result<UserAttrs, String> {
    Ok(UserAttrs {
        email: text(v, "email")?.into(),
        first_name: text(v, "first_name")?.into(),
        last_name: text(v, "last_name")?.into(),
        display_name: text(v, "display_name")?.into(),
    })
}

/// The user now: (email, Okta id).
fn user_now(state: &StoreState, user_id: i64) -> Result<(String, String), String> {
    let user = state
        .users
        .iter()
        .find(|u| u.id == user_id)
        .ok_or_else(|| format!("user {user_id} no longer exists"))?;
    let okta_id = user.okta_id.as_deref().map(str::to_owned).ok_or_else(|| {
        format!(
            "user {user_id} ({}) is no longer linked to Okta",
            user.email
        )
    })?;
    Ok((user.email.to_string(), okta_id))
}

fn user_email(state: &StoreState, user_id: i64) -> Result<String, String> {
    state
        .users
        .iter()
        .find(|u| u.id == user_id)
        .map(|u| u.email.to_string())
        .ok_or_else(|| format!("user {user_id} no longer exists"))
}

fn team_name(state: &StoreState, team_id: i64) -> Result<String, String> {
    state
        .teams
        .iter()
        .find(|t| t.id == team_id)
        .map(|t| t.name.clone())
        .ok_or_else(|| format!("team {team_id} no longer exists"))
}

/// A membership's ids from the `team_ref`/`user_ref` an added membership
/// records (a user or team created in the same run is named by Okta id or
/// name, both unique in the store).
fn membership_ids(state: &StoreState, after: &Value) -> Result<(i64, i64), String> {
    let (team, user) = (&after["team_ref"], &after["user_ref"]);
    let team_id = match (team["team_id"].as_i64(), team["name"].as_str()) {
        (Some(id), _) => id,
        (None, Some(name)) => state
            .teams
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.id)
            .ok_or_else(|| format!("team {name:?} no longer exists"))?,
        _ => {
            return Err(
                "the audit row does not name the team (written by an older writer-sync)".into(),
            );
        }
    };
    let user_id = match (user["user_id"].as_i64(), user["okta_id"].as_str()) {
        (Some(id), _) => id,
        (None, Some(okta_id)) => state
            .users
            .iter()
            .find(|u| u.okta_id.as_deref() == Some(okta_id))
            .map(|u| u.id)
            .ok_or_else(|| format!("no user is linked to Okta user {okta_id} any more"))?,
        _ => {
            return Err(
                "the audit row does not name the user (written by an older writer-sync)".into(),
            );
        }
    };
    Ok((team_id, user_id))
}

fn invert(row: &AuditRecord, state: &StoreState) -> Result<Inverse, String> {
    let before = || parse(row.before.as_deref(), "before");
    let after = || parse(row.after.as_deref(), "after");
    let change = match row.action.as_str() {
        "team_created" => {
            return Ok(Inverse::Kept(
                "a team is never deleted; the memberships the run added are removed",
            ));
        }
        "team_linked" => {
            return Ok(Inverse::Kept(
                "a team link is kept; the memberships the run changed are reverted",
            ));
        }
        "user_linked" => {
            return Ok(Inverse::Kept(
                "a user's link to Okta is kept; its status, attributes and memberships are reverted",
            ));
        }
        "user_created" => {
            let okta_id = text(&after()?, "okta_id")?;
            let user = state
                .users
                .iter()
                .find(|u| u.okta_id.as_deref() == Some(okta_id.as_str()))
                .ok_or_else(|| format!("no user is linked to Okta user {okta_id} any more"))?;
            Change::DeactivateUser {
                user_id: user.id,
                okta_id,
                email: user.email.to_string(),
                reason: DeactivationReason::Reverted,
            }
        }
        "user_reactivated" => {
            let user_id = id(&after()?, "user_id")?;
            let (email, okta_id) = user_now(state, user_id)?;
            Change::DeactivateUser {
                user_id,
                okta_id,
                email,
                reason: DeactivationReason::Reverted,
            }
        }
        "user_deactivated" => {
            let user_id = id(&after()?, "user_id")?;
            let (email, okta_id) = user_now(state, user_id)?;
            Change::ReactivateUser {
                user_id,
                okta_id,
                email,
            }
        }
        "user_updated" => {
            let (old, new) = (before()?, after()?);
            let user_id = id(&new, "user_id")?;
            let (_, okta_id) = user_now(state, user_id)?;
            Change::UpdateUser {
                user_id,
                okta_id,
                before: Box::new(attrs(&new)?),
                after: Box::new(attrs(&old)?),
            }
        }
        "membership_added" => {
            let new = after()?;
            let (team_id, user_id) = membership_ids(state, &new)?;
            Change::RemoveMembership {
                team_id,
                team_name: team_name(state, team_id)?.into(),
                user_id,
                email: user_email(state, user_id)?.into(),
                role: role(&new)?,
            }
        }
        "membership_removed" => {
            let old = before()?;
            let (team_id, user_id) = (id(&old, "team_id")?, id(&old, "user_id")?);
            Change::AddMembership {
                team: crate::model::TeamRef::Existing(team_id),
                team_name: team_name(state, team_id)?.into(),
                user: crate::model::UserRef::Existing(user_id),
                email: user_email(state, user_id)?.into(),
                role: role(&old)?,
            }
        }
        "role_changed" => {
            let (old, new) = (before()?, after()?);
            let (team_id, user_id) = (id(&new, "team_id")?, id(&new, "user_id")?);
            Change::ChangeRole {
                team_id,
                team_name: team_name(state, team_id)?.into(),
                user_id,
                email: user_email(state, user_id)?.into(),
                from: role(&new)?,
                to: role(&old)?,
            }
        }
        other => return Err(format!("unknown audit action {other:?}")),
    };
    Ok(Inverse::Change(Box::new(change)))
}

//! Reviewed plans (SPEC §8): `writer-sync plan -o FILE` writes what a
//! `run --once --dry-run` would plan, with what is needed to tell later
//! whether it is stale; `writer-sync apply FILE` applies exactly those
//! changes, or refuses.
//!
//! Invariant: a plan file is applied only to the store state it was made
//! against (the fingerprint, recomputed inside the sync lock), only with
//! the change list it was written with (the checksum), and only when every
//! change still applies (`applies::check_applies`); otherwise nothing is
//! written. The guard is not re-run: a human reviewed the plan.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::{Change, StoreState};
use crate::reconcile::applies::check_applies;
use crate::reconcile::control::{ControlError, ControlRun, Decided, run_decided};
use crate::reconcile::report::Report;
use crate::reconcile::{
    Observed, RunOptions, SyncContext, Trigger, guard, guard_and_apply, log_findings,
    observe_and_plan, since_full,
};

/// The plan file format this version writes and reads.
pub const FORMAT: u32 = 1;

/// A plan file: the SPEC §4 report of the plan, and what `apply` checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanFile {
    /// [`FORMAT`].
    pub format: u32,
    /// The writer-sync that made the plan (`CARGO_PKG_VERSION`).
    pub writer_sync_version: String,
    /// When the plan was made (RFC 3339, UTC).
    pub created_at: String,
    /// The store state the plan was made against.
    pub store: StoreSnapshot,
    /// The Okta view the plan was made from.
    pub okta: OktaSnapshot,
    /// What the safety guard says of this plan (`apply` does not re-run it).
    pub guard: GuardVerdict,
    /// The SPEC §4 report of `run --once --dry-run --json` for this plan
    /// (for people; its `changes` are a rendering, not what is applied).
    pub report: Value,
    /// SHA-256 (hex) of `changes` as serialized compactly
    /// ([`changes_checksum`]): an edited change list does not match.
    pub changes_sha256: String,
    /// The changes, complete and in apply order: exactly what `apply` writes.
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreSnapshot {
    /// [`store_fingerprint`] of the state the plan read.
    pub fingerprint: String,
    pub users: usize,
    pub teams: usize,
    pub memberships: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OktaSnapshot {
    /// When observing started (RFC 3339, UTC).
    pub observed_at: String,
    pub org_url: String,
    pub app_id: Option<String>,
    pub users_in_scope: usize,
    pub groups: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuardVerdict {
    /// A `run --once` of this plan would be blocked.
    pub would_block: bool,
    pub reasons: Vec<String>,
}

/// Why a plan file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the plan file {}", .path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 over every store row the planner reads (users, teams,
/// memberships), in id order, one JSON array per row: the same state
/// gives the same fingerprint on SQLite and PostgreSQL, and any change to a
/// row the plan depends on (an attribute, a status, a link, a role) changes
/// it.
pub fn store_fingerprint(state: &StoreState) -> String {
    let mut users: Vec<_> = state.users.iter().collect();
    users.sort_by_key(|u| u.id);
    let mut teams: Vec<_> = state.teams.iter().collect();
    teams.sort_by_key(|t| t.id);
    let mut members: Vec<_> = state.memberships.iter().collect();
    members.sort_by_key(|m| (m.team_id, m.user_id));
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut line = |v: Value| {
        ctx.update(v.to_string().as_bytes());
        ctx.update(b"\n");
    };
    for u in users {
        line(json!([
            "u",
            u.id,
            u.email.as_str(),
            u.okta_id.as_deref(),
            u.first_name.as_str(),
            u.last_name.as_str(),
            u.display_name.as_str(),
            u.active
        ]));
    }
    for t in teams {
        line(json!(["t", t.id, t.name, t.okta_group_id]));
    }
    for m in members {
        line(json!(["m", m.team_id, m.user_id, m.role]));
    }
    hex(ctx.finish().as_ref())
}

/// SHA-256 (hex) of a change list's compact JSON.
pub fn changes_checksum(changes: &[Change]) -> String {
    let text = serde_json::to_vec(changes).unwrap_or_default();
    hex(ring::digest::digest(&ring::digest::SHA256, &text).as_ref())
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Observes and plans exactly as `run --once --dry-run` does (guard
/// included) and returns the dry-run report and the plan file. Writes
/// nothing. On failure, the report says why.
pub async fn make_plan(ctx: &SyncContext) -> Result<(Report, PlanFile), Report> {
    let started = Instant::now();
    let mut opts = RunOptions::new(Trigger::Once);
    opts.dry_run = true;
    let mut report = Report::new(None);
    let Some(Observed {
        okta_state,
        store_state,
        plan,
        findings,
        observe_started_ms,
    }) = observe_and_plan(ctx, &opts, started, &mut report).await
    else {
        report.duration_ms = started.elapsed().as_millis() as u64;
        return Err(report);
    };
    let store = StoreSnapshot {
        fingerprint: store_fingerprint(&store_state),
        users: store_state.users.len(),
        teams: store_state.teams.len(),
        memberships: store_state.memberships.len(),
    };
    let okta = OktaSnapshot {
        observed_at: rfc3339(observe_started_ms),
        org_url: ctx.config.okta.org_url.to_string(),
        app_id: ctx.config.okta.app_id.clone(),
        users_in_scope: plan.okta_users_in_scope,
        groups: okta_state.groups.len(),
    };
    drop(store_state);
    drop(okta_state);
    log_findings(&findings);
    report.findings = findings;
    let Some(before) = since_full(ctx, &mut report).await else {
        report.duration_ms = started.elapsed().as_millis() as u64;
        return Err(report);
    };
    let reasons = guard::guard_since_full(&plan, &ctx.config.safety_limits(), before);
    let mut report = guard_and_apply(ctx, &opts, None, plan, report, None, before).await;
    report.duration_ms = started.elapsed().as_millis() as u64;
    let file = PlanFile {
        format: FORMAT,
        writer_sync_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: rfc3339(crate::store::now_ms()),
        store,
        okta,
        guard: GuardVerdict {
            would_block: !reasons.is_empty(),
            reasons,
        },
        report: report.to_json(),
        changes_sha256: changes_checksum(&report.changes),
        changes: report.changes.clone(),
    };
    Ok((report, file))
}

/// Writes `file` to `path` atomically (a temporary file beside it, then a
/// rename) with mode 0600: it holds emails and names.
pub fn write_plan_file(path: &Path, file: &PlanFile) -> Result<(), WriteError> {
    let err = |source| WriteError {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| err(std::io::Error::other("the path names no file")))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut buf = std::io::BufWriter::new(&mut out);
        serde_json::to_writer_pretty(&mut buf, file)?;
        buf.write_all(b"\n")?;
        buf.flush()?;
        drop(buf);
        out.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(err)
}

/// Reads a plan file; an unreadable or malformed file is a usage error.
pub fn read_plan_file(path: &Path) -> Result<PlanFile, ControlError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ControlError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let file: PlanFile = serde_json::from_str(&text).map_err(|e| {
        ControlError::Usage(format!(
            "{} is not a writer-sync plan file: {e}",
            path.display()
        ))
    })?;
    if file.format != FORMAT {
        return Err(ControlError::Usage(format!(
            "{} is a plan file of format {}, this writer-sync reads format {FORMAT}",
            path.display(),
            file.format
        )));
    }
    Ok(file)
}

/// A plan file's change list no longer matches its checksum.
pub fn check_unedited(file: &PlanFile) -> Result<(), ControlError> {
    let actual = changes_checksum(&file.changes);
    if actual != file.changes_sha256 {
        return Err(ControlError::Refused(format!(
            "refused: the plan file was edited: its change list's SHA-256 is {actual}, \
             the file says {}; nothing was written; make a new plan with `writer-sync plan -o FILE`",
            file.changes_sha256
        )));
    }
    Ok(())
}

/// Applies a plan file as one run (`trigger = "plan_file"`), or refuses:
/// edited, stale (the store changed since the plan was made, also by
/// applying it), or a change that no longer applies.
pub async fn apply_plan_file(run: &ControlRun<'_>, file: PlanFile) -> Result<Report, ControlError> {
    check_unedited(&file)?;
    let counts = &file.report["counts"];
    let count = |key: &str| counts[key].as_u64().unwrap_or(0) as usize;
    let (skipped, unmanaged) = (count("skipped"), count("unmanaged"));
    let PlanFile {
        changes,
        store: planned,
        created_at,
        guard,
        ..
    } = file;
    let mut findings = Vec::new();
    if guard.would_block {
        findings.push(crate::model::Finding {
            severity: crate::model::Severity::Warning,
            message: format!(
                "applied without the safety guard, which would block this plan in a sync: {}",
                guard.reasons.join("; ")
            ),
        });
    }
    run_decided(run, move |state| {
        let now = store_fingerprint(state);
        if now != planned.fingerprint {
            return Err(ControlError::Refused(format!(
                "refused: the plan is stale: the store changed since the plan was made at {created_at} \
                 (it had {} users, {} teams, {} memberships; now {}, {}, {}; fingerprint {} then, {now} now), \
                 for example by another sync or by applying this plan already; nothing was written; \
                 make a new plan with `writer-sync plan -o FILE`",
                planned.users,
                planned.teams,
                planned.memberships,
                state.users.len(),
                state.teams.len(),
                state.memberships.len(),
                planned.fingerprint,
            )));
        }
        let refused = check_applies(state, &changes);
        if !refused.is_empty() {
            return Err(ControlError::Refused(format!(
                "refused: {} of the plan's changes no longer apply; nothing was written: {}",
                refused.len(),
                refused.join("; ")
            )));
        }
        Ok(Decided {
            changes,
            findings,
            skipped,
            unmanaged,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        DeactivationReason, Role, StoreMembership, StoreTeam, StoreUser, TeamRef, UserAttrs,
        UserRef,
    };

    fn every_kind() -> Vec<Change> {
        let attrs = |e: &str| UserAttrs {
            email: e.into(),
            first_name: "Zoë \"Z\"".into(),
            last_name: "L\u{fffd}".into(),
            display_name: "Z L".into(),
        };
        vec![
            Change::CreateTeam {
                name: "New".into(),
                okta_group_id: "00g2".into(),
            },
            Change::LinkTeam {
                team_id: 3,
                name: "Old".into(),
                okta_group_id: "00g3".into(),
            },
            Change::CreateUser {
                okta_id: "00u9".into(),
                attrs: Box::new(attrs("n@x.com")),
            },
            Change::LinkUser {
                user_id: 4,
                email: "l@x.com".into(),
                okta_id: "00u4".into(),
                previous_okta_id: Some("00u0".into()),
            },
            Change::UpdateUser {
                user_id: 5,
                okta_id: "00u5".into(),
                before: Box::new(attrs("a@x.com")),
                after: Box::new(attrs("b@x.com")),
            },
            Change::ReactivateUser {
                user_id: 6,
                okta_id: "00u6".into(),
                email: "r@x.com".into(),
            },
            Change::DeactivateUser {
                user_id: 7,
                okta_id: "00u7".into(),
                email: "d@x.com".into(),
                reason: DeactivationReason::NotInScope,
            },
            Change::AddMembership {
                team: TeamRef::New { name: "New".into() },
                team_name: "New".into(),
                user: UserRef::New {
                    okta_id: "00u9".into(),
                },
                email: "n@x.com".into(),
                role: Role::Admin,
            },
            Change::AddMembership {
                team: TeamRef::Existing(3),
                team_name: "Old".into(),
                user: UserRef::Existing(5),
                email: "b@x.com".into(),
                role: Role::Member,
            },
            Change::RemoveMembership {
                team_id: 3,
                team_name: "Old".into(),
                user_id: 7,
                email: "d@x.com".into(),
                role: Role::Member,
            },
            Change::ChangeRole {
                team_id: 3,
                team_name: "Old".into(),
                user_id: 6,
                email: "r@x.com".into(),
                from: Role::Member,
                to: Role::Admin,
            },
        ]
    }

    #[test]
    fn changes_of_every_kind_round_trip_through_the_file_form() {
        let changes = every_kind();
        let text = serde_json::to_string(&changes).unwrap();
        let back: Vec<Change> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, changes);
        // The tag is the change's kind, as in the report.
        let v: Value = serde_json::from_str(&text).unwrap();
        for (c, j) in changes.iter().zip(v.as_array().unwrap()) {
            assert_eq!(j["action"], c.kind());
        }
        // A field that is not the change's is refused, not ignored.
        let bad = text.replacen("\"okta_group_id\"", "\"extra\":1,\"okta_group_id\"", 1);
        assert!(serde_json::from_str::<Vec<Change>>(&bad).is_err());
    }

    #[test]
    fn the_checksum_changes_with_any_edit_of_the_list() {
        let changes = every_kind();
        let sum = changes_checksum(&changes);
        assert_eq!(sum.len(), 64);
        assert_eq!(sum, changes_checksum(&every_kind()));
        let mut edited = every_kind();
        if let Change::ChangeRole { to, .. } = &mut edited[10] {
            *to = Role::Member;
        }
        assert_ne!(changes_checksum(&edited), sum);
        assert_ne!(changes_checksum(&changes[1..]), sum);
    }

    #[test]
    fn the_fingerprint_follows_every_row_the_plan_reads_and_not_their_order() {
        let state = StoreState {
            users: vec![
                StoreUser {
                    id: 1,
                    email: "a@x.com".into(),
                    okta_id: Some("00u1".into()),
                    first_name: "A".into(),
                    last_name: "B".into(),
                    display_name: "A B".into(),
                    active: true,
                },
                StoreUser {
                    id: 2,
                    email: "c@x.com".into(),
                    okta_id: None,
                    first_name: String::new().into(),
                    last_name: String::new().into(),
                    display_name: String::new().into(),
                    active: true,
                },
            ],
            teams: vec![StoreTeam {
                id: 1,
                name: "Eng".into(),
                okta_group_id: None,
            }],
            memberships: vec![StoreMembership {
                team_id: 1,
                user_id: 1,
                role: Role::Member,
            }],
        };
        let base = store_fingerprint(&state);
        let mut reordered = state.clone();
        reordered.users.reverse();
        assert_eq!(store_fingerprint(&reordered), base);
        let edits: [fn(&mut StoreState); 6] = [
            |s| s.users[0].active = false,
            |s| s.users[0].display_name = "A  B".into(),
            |s| s.users[1].okta_id = Some("00u2".into()),
            |s| s.teams[0].okta_group_id = Some("00g1".into()),
            |s| s.memberships[0].role = Role::Admin,
            |s| s.memberships.clear(),
        ];
        for edit in edits {
            let mut s = state.clone();
            edit(&mut s);
            assert_ne!(store_fingerprint(&s), base);
        }
    }
}

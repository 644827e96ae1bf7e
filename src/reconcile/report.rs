//! The run report: what `run --once` prints (human or the JSON object of
//! SPEC §4), what is recorded in `sync_runs`, and the JSON of each change
//! (also the audit log's before/after).
//!
//! Invariant: pure formatting; the shape of the JSON report is defined here
//! and nowhere else.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{
    Change, Counts, Finding, PendingDeactivation, Severity, TeamRef, UserAttrs, UserRef,
};
use crate::store::Pause;

/// How to end a pause: the `error` of a paused report says it.
pub const RESUME_HINT: &str = "`writer-sync resume` applies again from the next run";

/// How to proceed from a blocked run: the `error` of its report, its human
/// summary and its `sync blocked` log line say it.
pub const UNBLOCK_HINT: &str = "review the plan with `writer-sync run --once --dry-run`, \
     then apply it once with `writer-sync run --once --force`";

/// Outcome of a run (SPEC §4 `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
    Blocked,
    DryRun,
    /// A stop was requested (SIGTERM/SIGINT, e.g. a deploy) and the run
    /// ended early: what was committed stays, the next run converges. Not
    /// a failure: it is counted apart so it pages nobody.
    Interrupted,
    /// The store is paused (`writer-sync pause`, SPEC §8): the run observed
    /// and planned, and applied nothing.
    Paused,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Ok,
        Status::Failed,
        Status::Blocked,
        Status::DryRun,
        Status::Interrupted,
        Status::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Blocked => "blocked",
            Status::DryRun => "dry_run",
            Status::Interrupted => "interrupted",
            Status::Paused => "paused",
        }
    }
}

/// The report of one run.
#[derive(Debug, Clone)]
pub struct Report {
    pub status: Status,
    /// For `ok`/`failed`: what was applied. For `dry_run`/`blocked`: what the
    /// plan would apply (nothing was).
    pub counts: Counts,
    pub changes: Vec<Change>,
    pub findings: Vec<Finding>,
    pub error: Option<String>,
    /// The recorded run id (none for dry runs and runs that never started).
    pub run_id: Option<i64>,
    pub duration_ms: u64,
    /// Changes in the plan (applied or not).
    pub planned: usize,
    /// Why the run failed (status `failed`; [`FailureKind::Interrupted`]
    /// for status `interrupted`), as the daemon's next step and the
    /// operator need it; `None` for every other status.
    pub failure: Option<FailureKind>,
    /// The pause in force (status `paused`; `None` for every other status).
    pub paused: Option<Pause>,
    /// Managed users out of scope waiting out `safety.deactivate_after`.
    pub pending_deactivations: Vec<PendingDeactivation>,
}

/// What kind of trouble failed a run. The daemon's retry policy
/// (`daemon::next_step`), `/readyz` and the `writer_sync_run_failures_total`
/// metric read it; the error text says the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Okta or the store unreachable, 5xx, 429s or timeouts beyond the retry
    /// budget, a lost lock: the next run may well succeed on its own.
    Transient,
    /// Okta refused the credential (401), its permissions (403, a missing
    /// scope or admin role) or the OAuth client: nothing heals until someone
    /// changes the token, key or grants.
    Credential,
    /// Something must change in the configuration, in Okta's data or in the
    /// store before a retry can succeed (a wrong `okta.app_id`, an Okta
    /// object that cannot be read, a store written by a newer version).
    Configuration,
    /// Another instance holds the store's sync lock: not a failure of this
    /// instance; the run did not start.
    LockHeld,
    /// A stop was requested (SIGTERM/SIGINT) and the run ended early; what
    /// was committed stays, and the next run converges.
    Interrupted,
}

impl FailureKind {
    pub const ALL: [FailureKind; 5] = [
        FailureKind::Transient,
        FailureKind::Credential,
        FailureKind::Configuration,
        FailureKind::LockHeld,
        FailureKind::Interrupted,
    ];

    /// The label of metrics and `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Credential => "credential",
            FailureKind::Configuration => "configuration",
            FailureKind::LockHeld => "lock_held",
            FailureKind::Interrupted => "interrupted",
        }
    }

    /// The kind of an Okta error.
    pub fn of_okta(e: &crate::okta::error::OktaError) -> FailureKind {
        use crate::okta::error::OktaError;
        match e {
            OktaError::Unauthorized { .. } | OktaError::Forbidden { .. } | OktaError::OAuth(_) => {
                FailureKind::Credential
            }
            e if e.is_transient() => FailureKind::Transient,
            _ => FailureKind::Configuration,
        }
    }

    /// The kind of a store error.
    pub fn of_store(e: &crate::store::StoreError) -> FailureKind {
        match e {
            crate::store::StoreError::Locked { .. } => FailureKind::LockHeld,
            e if e.is_transient() => FailureKind::Transient,
            _ => FailureKind::Configuration,
        }
    }
}

/// The SPEC §4 object, serialized straight from the report: a change
/// becomes JSON only while it is written, so printing the report of a
/// 100,000-user first sync does not hold a second copy of it in memory.
#[derive(Serialize)]
pub struct JsonReport<'a> {
    status: Status,
    counts: &'a Counts,
    changes: ChangesJson<'a>,
    warnings: Vec<&'a str>,
    error: Option<&'a str>,
    /// Only in a `paused` report: who paused, when and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    paused: Option<&'a Pause>,
    /// Only with a deactivation grace and users waiting it out.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pending_deactivations: &'a [PendingDeactivation],
}

struct ChangesJson<'a>(&'a [Change]);

impl Serialize for ChangesJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|c| change_json(c).detail))
    }
}

impl Report {
    /// A report to fill in: `failed` with no error yet, nothing counted.
    pub fn new(run_id: Option<i64>) -> Report {
        Report {
            status: Status::Failed,
            counts: Counts::default(),
            changes: Vec::new(),
            findings: Vec::new(),
            error: None,
            run_id,
            duration_ms: 0,
            planned: 0,
            failure: None,
            paused: None,
            pending_deactivations: Vec::new(),
        }
    }

    /// The run did not start because another process held the store's sync
    /// lock (status `failed`; the daemon treats it as a skipped tick).
    pub fn lock_busy(&self) -> bool {
        self.failure == Some(FailureKind::LockHeld)
    }

    /// The JSON object of SPEC §4, to serialize (e.g. with
    /// `serde_json::to_writer`).
    pub fn json(&self) -> JsonReport<'_> {
        JsonReport {
            status: self.status,
            counts: &self.counts,
            changes: ChangesJson(&self.changes),
            warnings: self.findings.iter().map(|f| f.message.as_str()).collect(),
            error: self.error.as_deref(),
            paused: self.paused.as_ref(),
            pending_deactivations: &self.pending_deactivations,
        }
    }

    /// The JSON object of SPEC §4 as a value.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.json()).unwrap_or(Value::Null)
    }

    /// A summary for people: status line, counts, then each change and finding.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let counts = self.counts.nonzero();
        let counts_text = if counts.is_empty() {
            "no changes".to_owned()
        } else {
            counts
                .iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let headline = match self.status {
            Status::Ok => format!("sync ok: {counts_text}"),
            Status::DryRun => format!("dry run (nothing written): would apply {counts_text}"),
            Status::Blocked => {
                format!("sync BLOCKED by the safety guard, nothing applied: plan had {counts_text}")
            }
            Status::Failed => format!("sync FAILED after applying {counts_text}"),
            Status::Interrupted => {
                format!("sync INTERRUPTED by a stop request after applying {counts_text}")
            }
            Status::Paused => {
                format!("sync PAUSED, nothing applied: plan had {counts_text}")
            }
        };
        let _ = writeln!(out, "{headline}");
        let _ = writeln!(
            out,
            "skipped={} unmanaged={} duration={:.1}s{}",
            self.counts.skipped,
            self.counts.unmanaged,
            self.duration_ms as f64 / 1000.0,
            self.run_id
                .map(|id| format!(" run={id}"))
                .unwrap_or_default()
        );
        if let Some(error) = &self.error {
            let _ = writeln!(out, "error: {error}");
        }
        if !self.changes.is_empty() {
            let verb = match self.status {
                Status::Ok | Status::Failed | Status::Interrupted => "applied",
                Status::DryRun | Status::Blocked | Status::Paused => "planned",
            };
            let _ = writeln!(out, "changes {verb}:");
            for change in &self.changes {
                let _ = writeln!(
                    out,
                    "  {:<19} {}",
                    change.kind(),
                    change_json(change).summary
                );
            }
        }
        if !self.findings.is_empty() {
            let _ = writeln!(out, "warnings:");
            for f in &self.findings {
                let tag = match f.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                let _ = writeln!(out, "  {tag}: {}", f.message);
            }
        }
        out
    }
}

/// One change rendered for the report, the logs and the audit log.
///
/// `before`/`after` (the audit row) also name the rows the change touched
/// (`user_id`, `team_id`, `okta_id`, or the `team_ref`/`user_ref` of a
/// membership of a user or team created in the same run), so that
/// `writer-sync revert` can build the inverse from the audit log alone.
pub struct ChangeView {
    /// What the change is about: an email, a team name, or `email in team`.
    pub target: String,
    /// The full JSON object of the report's `changes` list.
    pub detail: Value,
    /// State before (audit log); `None` for creations.
    pub before: Option<Value>,
    /// State after (audit log); `None` for removals.
    pub after: Option<Value>,
    /// One human line.
    pub summary: String,
}

fn attrs_json(a: &UserAttrs) -> Value {
    json!({
        "email": a.email,
        "first_name": a.first_name,
        "last_name": a.last_name,
        "display_name": a.display_name,
    })
}

/// `attrs` with the keys of `ids` added.
fn with_ids(mut attrs: Value, ids: Value) -> Value {
    if let (Value::Object(a), Value::Object(i)) = (&mut attrs, ids) {
        a.extend(i);
    }
    attrs
}

fn user_ref(r: &UserRef) -> Value {
    match r {
        UserRef::Existing(id) => json!({"user_id": id}),
        UserRef::New { okta_id } => json!({"okta_id": okta_id}),
    }
}

fn team_ref(r: &TeamRef) -> Value {
    match r {
        TeamRef::Existing(id) => json!({"team_id": id}),
        TeamRef::New { name } => json!({"name": name}),
    }
}

/// Renders a change. The `action` field is [`Change::kind`].
pub fn change_json(change: &Change) -> ChangeView {
    let action = change.kind();
    match change {
        Change::CreateTeam {
            name,
            okta_group_id,
        } => ChangeView {
            target: name.clone(),
            detail: json!({"action": action, "team": name, "okta_group_id": okta_group_id}),
            before: None,
            after: Some(json!({"name": name, "okta_group_id": okta_group_id})),
            summary: format!("{name} (Okta group {okta_group_id})"),
        },
        Change::LinkTeam {
            team_id,
            name,
            okta_group_id,
        } => ChangeView {
            target: name.clone(),
            detail: json!({"action": action, "team": name, "team_id": team_id, "okta_group_id": okta_group_id}),
            before: Some(json!({"okta_group_id": null})),
            after: Some(json!({"okta_group_id": okta_group_id, "team_id": team_id})),
            summary: format!("{name} -> Okta group {okta_group_id}"),
        },
        Change::CreateUser { okta_id, attrs } => ChangeView {
            target: attrs.email.to_string(),
            detail: json!({"action": action, "email": attrs.email, "okta_id": okta_id, "after": attrs_json(attrs)}),
            before: None,
            after: Some(json!({"okta_id": okta_id, "active": true, "attrs": attrs_json(attrs)})),
            summary: format!("{} ({okta_id}) {:?}", attrs.email, attrs.display_name),
        },
        Change::LinkUser {
            user_id,
            email,
            okta_id,
            previous_okta_id,
        } => ChangeView {
            target: email.clone(),
            detail: json!({
                "action": action, "email": email, "user_id": user_id,
                "okta_id": okta_id, "previous_okta_id": previous_okta_id,
            }),
            before: Some(json!({"okta_id": previous_okta_id})),
            after: Some(json!({"okta_id": okta_id, "user_id": user_id})),
            summary: match previous_okta_id {
                Some(prev) => format!("{email} relinked {prev} -> {okta_id} (rehire)"),
                None => format!("{email} -> {okta_id}"),
            },
        },
        Change::UpdateUser {
            user_id,
            okta_id,
            before,
            after,
        } => {
            let mut diff = Vec::new();
            for (field, b, a) in [
                ("email", &before.email, &after.email),
                ("first_name", &before.first_name, &after.first_name),
                ("last_name", &before.last_name, &after.last_name),
                ("display_name", &before.display_name, &after.display_name),
            ] {
                if b != a {
                    diff.push(format!("{field} {b:?} -> {a:?}"));
                }
            }
            ChangeView {
                target: after.email.to_string(),
                detail: json!({
                    "action": action, "email": after.email, "user_id": user_id, "okta_id": okta_id,
                    "before": attrs_json(before), "after": attrs_json(after),
                }),
                before: Some(attrs_json(before)),
                after: Some(with_ids(
                    attrs_json(after),
                    json!({"user_id": user_id, "okta_id": okta_id}),
                )),
                summary: format!("{} ({okta_id}): {}", after.email, diff.join(", ")),
            }
        }
        Change::ReactivateUser {
            user_id,
            okta_id,
            email,
        } => ChangeView {
            target: email.clone(),
            detail: json!({"action": action, "email": email, "user_id": user_id, "okta_id": okta_id}),
            before: Some(json!({"active": false})),
            after: Some(json!({"active": true, "user_id": user_id, "okta_id": okta_id})),
            summary: format!("{email} ({okta_id})"),
        },
        Change::DeactivateUser {
            user_id,
            okta_id,
            email,
            reason,
        } => ChangeView {
            target: email.clone(),
            detail: json!({
                "action": action, "email": email, "user_id": user_id, "okta_id": okta_id, "reason": reason,
            }),
            before: Some(json!({"active": true})),
            after: Some(json!({
                "active": false, "reason": reason, "user_id": user_id, "okta_id": okta_id,
            })),
            summary: format!(
                "{email} ({okta_id}): {}",
                serde_json::to_value(reason)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or_default()
            ),
        },
        Change::AddMembership {
            team,
            team_name,
            user,
            email,
            role,
        } => ChangeView {
            target: format!("{email} in {team_name}"),
            detail: json!({
                "action": action, "team": team_name, "email": email, "role": role,
                "team_ref": team_ref(team), "user_ref": user_ref(user),
            }),
            before: None,
            after: Some(
                json!({"role": role, "team_ref": team_ref(team), "user_ref": user_ref(user)}),
            ),
            summary: format!("{email} -> {team_name} as {role}"),
        },
        Change::RemoveMembership {
            team_id,
            team_name,
            user_id,
            email,
            role,
        } => ChangeView {
            target: format!("{email} in {team_name}"),
            detail: json!({
                "action": action, "team": team_name, "email": email, "role": role,
                "team_id": team_id, "user_id": user_id,
            }),
            before: Some(json!({"role": role, "team_id": team_id, "user_id": user_id})),
            after: None,
            summary: format!("{email} out of {team_name} (was {role})"),
        },
        Change::ChangeRole {
            team_id,
            team_name,
            user_id,
            email,
            from,
            to,
        } => ChangeView {
            target: format!("{email} in {team_name}"),
            detail: json!({
                "action": action, "team": team_name, "email": email, "from": from, "to": to,
                "team_id": team_id, "user_id": user_id,
            }),
            before: Some(json!({"role": from})),
            after: Some(json!({"role": to, "team_id": team_id, "user_id": user_id})),
            summary: format!("{email} in {team_name}: {from} -> {to}"),
        },
    }
}

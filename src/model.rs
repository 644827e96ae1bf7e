//! Domain types shared by the observe, plan and apply stages.
//!
//! Invariant: plain data only. Nothing here does I/O, reads a clock or knows
//! about HTTP or SQL; `okta` and `store` convert to and from these types at
//! their edges, and `reconcile::plan` works on nothing else.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The role of a team membership in Writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    /// Parses the stored form exactly (`admin` / `member`). Okta attribute
    /// values are normalized by the planner, not here.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(format!(
                "unknown role {other:?} (expected \"admin\" or \"member\")"
            )),
        }
    }
}

/// A string of a user record (Okta's or the store's): up to 24 bytes are
/// kept inline (Okta ids, statuses, most names), longer ones on the heap.
/// A view of a million users is then not millions of small allocations.
pub type Text = compact_str::CompactString;

// ---------------------------------------------------------------------------
// What Okta says (observed, flattened from the wire types).
// ---------------------------------------------------------------------------

/// One in-scope Okta user: assigned to the app (or a member of a pushed group
/// when no app is configured), in any status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OktaUser {
    /// Okta user id (`00u…`).
    pub id: Text,
    /// Okta user status as sent (`ACTIVE`, `SUSPENDED`, …).
    pub status: Text,
    pub email: Option<Text>,
    pub first_name: Option<Text>,
    pub last_name: Option<Text>,
    pub display_name: Option<Text>,
    /// Raw value of the configured role attribute, when present and not null.
    /// Non-string JSON values arrive as their JSON text.
    pub role: Option<Text>,
}

/// One pushed Okta group with the ids of its members (any status, in scope
/// or not; the planner intersects with the in-scope users).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OktaGroup {
    pub id: String,
    pub name: String,
    /// Shared: a user in several pushed groups is one allocation (the
    /// observer interns them).
    pub member_ids: Vec<Shared>,
    /// Okta's group type (`OKTA_GROUP`, `APP_GROUP` for AD/LDAP imports,
    /// `BUILT_IN`), when Okta sent it; only named in warnings.
    pub kind: Option<String>,
}

/// The whole in-scope Okta view of one run. Only built from complete listings:
/// a run never plans on a partial view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OktaState {
    pub users: Vec<OktaUser>,
    pub groups: Vec<OktaGroup>,
    /// Names listed in `teams.push_groups` that matched no Okta group.
    pub missing_group_names: Vec<String>,
}

// ---------------------------------------------------------------------------
// What the Writer org store holds.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUser {
    pub id: i64,
    pub email: Text,
    /// Set once the user is managed (linked to an Okta user).
    pub okta_id: Option<Text>,
    pub first_name: Text,
    pub last_name: Text,
    pub display_name: Text,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreTeam {
    pub id: i64,
    pub name: String,
    /// Set once the team is linked to an Okta group.
    pub okta_group_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreMembership {
    pub team_id: i64,
    pub user_id: i64,
    pub role: Role,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreState {
    pub users: Vec<StoreUser>,
    pub teams: Vec<StoreTeam>,
    pub memberships: Vec<StoreMembership>,
}

// ---------------------------------------------------------------------------
// Policy: the parts of the configuration the planner needs.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `sync.default_team`: users created by the sync are added to it once.
    pub default_team: Option<String>,
    /// `teams.create_missing`.
    pub create_missing_teams: bool,
}

/// The deactivation grace (`safety.deactivate_after`, SPEC §8): what the
/// planner needs to tell a user who merely left scope and is still within
/// the grace from one to deactivate. `after_ms = 0` (the default) is no
/// grace: every managed user out of scope is deactivated at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grace {
    /// `safety.deactivate_after` in milliseconds.
    pub after_ms: i64,
    /// Now (epoch milliseconds): an input, so the planner stays pure.
    pub now_ms: i64,
    /// Okta id → since when (epoch ms) its managed user has been out of
    /// scope, as the store's `missing_since` table records it.
    pub missing_since: std::collections::BTreeMap<String, i64>,
}

/// A managed user out of scope, waiting out the grace (reported, and
/// deactivated by the first run after `deactivate_at` unless it is back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingDeactivation {
    pub user_id: i64,
    pub okta_id: String,
    pub email: String,
    /// Epoch milliseconds.
    pub missing_since: i64,
    /// Epoch milliseconds.
    pub deactivate_at: i64,
}

/// What a plan changes in the store's `missing_since` table, written with
/// its changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MissingUpdate {
    /// Okta ids newly out of scope, and since when.
    pub start: Vec<(String, i64)>,
    /// Okta ids no longer waiting (back in scope, deactivated, relinked).
    pub clear: Vec<String>,
}

impl MissingUpdate {
    pub fn is_empty(&self) -> bool {
        self.start.is_empty() && self.clear.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SafetyLimits {
    pub max_deactivations: u32,
    pub max_deactivations_percent: f64,
    pub max_membership_removals: u32,
}

// ---------------------------------------------------------------------------
// The plan.
// ---------------------------------------------------------------------------

/// A string a plan repeats (a team's name, a user's email and Okta id in
/// each of its memberships), allocated once and shared by the changes that
/// name it: a first sync holds a change per membership.
pub type Shared = std::sync::Arc<str>;

/// A user a change refers to: one already in the store, or one created
/// earlier in the same plan (identified by its Okta id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRef {
    Existing(i64),
    New { okta_id: Shared },
}

/// A team a change refers to: one already in the store, or one created
/// earlier in the same plan (identified by its name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamRef {
    Existing(i64),
    New { name: Shared },
}

/// The attributes of a Writer user that follow Okta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAttrs {
    pub email: Text,
    pub first_name: Text,
    pub last_name: Text,
    pub display_name: Text,
}

/// Why a managed user is deactivated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeactivationReason {
    /// The Okta user is in scope but its status is not active-like.
    Inactive,
    /// The Okta user is no longer assigned (or no longer exists).
    NotInScope,
    /// `writer-sync revert` undoes the run that created or reactivated the
    /// user (never planned by the planner).
    Reverted,
}

/// One change to the store. The planner emits them in dependency order:
/// teams, then users, then memberships, then deactivations.
///
/// Serialized (for plan files, `writer-sync plan -o`) with an `action` tag
/// that is [`Change::kind`]; the form round-trips exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", deny_unknown_fields)]
pub enum Change {
    #[serde(rename = "team_created")]
    CreateTeam { name: String, okta_group_id: String },
    #[serde(rename = "team_linked")]
    LinkTeam {
        team_id: i64,
        name: String,
        okta_group_id: String,
    },
    /// The attributes are boxed (as are `UpdateUser`'s) so that every
    /// `Change` stays small: a first sync holds one per membership.
    #[serde(rename = "user_created")]
    CreateUser {
        /// Shared with the memberships the plan adds for the new user.
        okta_id: Shared,
        attrs: Box<UserAttrs>,
    },
    /// Link an existing Writer user to an Okta user: an unmanaged user matched
    /// by email (`previous_okta_id` is `None`), or a rehire relink.
    #[serde(rename = "user_linked")]
    LinkUser {
        user_id: i64,
        email: String,
        okta_id: String,
        previous_okta_id: Option<String>,
    },
    #[serde(rename = "user_updated")]
    UpdateUser {
        user_id: i64,
        okta_id: String,
        before: Box<UserAttrs>,
        after: Box<UserAttrs>,
    },
    #[serde(rename = "user_reactivated")]
    ReactivateUser {
        user_id: i64,
        okta_id: String,
        email: String,
    },
    #[serde(rename = "user_deactivated")]
    DeactivateUser {
        user_id: i64,
        okta_id: String,
        email: String,
        reason: DeactivationReason,
    },
    #[serde(rename = "membership_added")]
    AddMembership {
        team: TeamRef,
        team_name: Shared,
        user: UserRef,
        email: Shared,
        role: Role,
    },
    #[serde(rename = "membership_removed")]
    RemoveMembership {
        team_id: i64,
        team_name: Shared,
        user_id: i64,
        email: Shared,
        role: Role,
    },
    #[serde(rename = "role_changed")]
    ChangeRole {
        team_id: i64,
        team_name: Shared,
        user_id: i64,
        email: Shared,
        from: Role,
        to: Role,
    },
}

impl Change {
    /// The snake_case name of the change kind, for logs, metrics and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::CreateTeam { .. } => "team_created",
            Change::LinkTeam { .. } => "team_linked",
            Change::CreateUser { .. } => "user_created",
            Change::LinkUser { .. } => "user_linked",
            Change::UpdateUser { .. } => "user_updated",
            Change::ReactivateUser { .. } => "user_reactivated",
            Change::DeactivateUser { .. } => "user_deactivated",
            Change::AddMembership { .. } => "membership_added",
            Change::RemoveMembership { .. } => "membership_removed",
            Change::ChangeRole { .. } => "role_changed",
        }
    }
}

/// Counts by kind of change (SPEC §4 `counts`, in its order): of a plan, or
/// of the changes a run applied. The one definition the planner's guard,
/// the report and the run record share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub users_created: usize,
    pub users_updated: usize,
    pub users_deactivated: usize,
    pub users_reactivated: usize,
    pub users_linked: usize,
    pub memberships_added: usize,
    pub memberships_removed: usize,
    pub roles_changed: usize,
    pub teams_linked: usize,
    pub teams_created: usize,
    pub skipped: usize,
    pub unmanaged: usize,
}

impl Counts {
    /// Tallies `changes` by kind; `skipped` and `unmanaged` come from the
    /// plan they belong to.
    pub fn tally(changes: &[Change], skipped: usize, unmanaged: usize) -> Counts {
        let mut c = Counts {
            skipped,
            unmanaged,
            ..Counts::default()
        };
        for change in changes {
            let slot = match change {
                Change::CreateTeam { .. } => &mut c.teams_created,
                Change::LinkTeam { .. } => &mut c.teams_linked,
                Change::CreateUser { .. } => &mut c.users_created,
                Change::LinkUser { .. } => &mut c.users_linked,
                Change::UpdateUser { .. } => &mut c.users_updated,
                Change::ReactivateUser { .. } => &mut c.users_reactivated,
                Change::DeactivateUser { .. } => &mut c.users_deactivated,
                Change::AddMembership { .. } => &mut c.memberships_added,
                Change::RemoveMembership { .. } => &mut c.memberships_removed,
                Change::ChangeRole { .. } => &mut c.roles_changed,
            };
            *slot += 1;
        }
        c
    }

    /// The counts of a whole plan.
    pub fn of_plan(plan: &Plan) -> Counts {
        Counts::tally(&plan.changes, plan.skipped, plan.unmanaged)
    }

    /// The non-zero change counts as `name=n` pairs (for summaries).
    pub fn nonzero(&self) -> Vec<(&'static str, usize)> {
        [
            ("users_created", self.users_created),
            ("users_updated", self.users_updated),
            ("users_deactivated", self.users_deactivated),
            ("users_reactivated", self.users_reactivated),
            ("users_linked", self.users_linked),
            ("memberships_added", self.memberships_added),
            ("memberships_removed", self.memberships_removed),
            ("roles_changed", self.roles_changed),
            ("teams_linked", self.teams_linked),
            ("teams_created", self.teams_created),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

/// How serious a finding of the planner is. Both kinds go to the report's
/// `warnings`; `Error` is logged at error level (SPEC calls these errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A finding that does not stop the run: a skipped user or group, an unknown
/// role value, an orphaned team link. The message names the Okta ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
}

/// The output of the pure planner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub findings: Vec<Finding>,
    /// Okta users and groups skipped (no email, duplicate email, collision,
    /// ambiguous or unmatched group).
    pub skipped: usize,
    /// Writer users and teams that stay unmanaged after this plan.
    pub unmanaged: usize,
    /// Active managed users before the plan (the base of the percent guard).
    pub active_managed_users: usize,
    /// In-scope Okta users seen.
    pub okta_users_in_scope: usize,
    /// Planned over a part of Okta (an incremental run, SPEC §7): the users
    /// seen are the ones events named, not the whole in-scope set.
    pub scoped: bool,
    /// Okta users skipped while their email was usable (shared with another
    /// Okta user, or taken by another Writer user), with the email key they
    /// wanted: a change of any other holder of that email can unblock them,
    /// so an incremental run reads them again (SPEC §7).
    pub email_skips: Vec<(String, String)>,
    /// Managed users out of scope within the deactivation grace.
    pub pending_deactivations: Vec<PendingDeactivation>,
    /// The grace's bookkeeping to write with the changes.
    pub missing: MissingUpdate,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A first sync holds a `Change` per membership (5 million in a
    /// 1M-user org): boxed attributes and shared names keep each one small.
    #[test]
    fn a_change_stays_small() {
        let size = std::mem::size_of::<Change>();
        assert!(size <= 96, "a Change takes {size} bytes");
    }
}

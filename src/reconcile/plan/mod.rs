//! The pure planner: compares what Okta says with what the Writer org store
//! holds and returns the changes that make the store follow Okta (SPEC §1),
//! plus the safety guard that may block a plan (SPEC §2).
//!
//! No I/O, no clock, no randomness, no panics: the same inputs, in any vector
//! order, give the same plan. Every rule is a short doc comment next to the
//! code that implements it. Decisions where SPEC is silent:
//!
//! - Okta ids listed twice are one user; when the copies differ, the smallest
//!   copy (by id, status, email, names, role) wins, so input order never
//!   matters. `okta_users_in_scope` counts distinct ids.
//! - Skips (no usable email, duplicate email, collision) apply to in-scope
//!   users of every status: a skipped user is hands off, except that an
//!   inactive skipped user's Writer user is still deactivated through its
//!   Okta id link (the email is not needed for that, and leaving a suspended
//!   person active is the unsafe choice).
//! - Store rows that break the store's own uniqueness (two Writer users linked
//!   to one Okta id, two teams linked to one group, two Writer users whose
//!   emails are equal ignoring case, two teams with one name) are never
//!   guessed at: the Okta user or group concerned is skipped with an error
//!   (or a warning for team names).
//! - `CreateUser` changes come *after* `UpdateUser` changes (the brief listed
//!   them before): a new user may take an email that an existing user gives
//!   up in the same plan, so the update has to be applied first.
//! - A default team that is linked to a group (even an orphaned link) is only
//!   governed by the linked-team rules, never by the default-team rules.
//! - A configured default team that does not exist gives one warning per plan
//!   (every run, so the misconfiguration stays visible).
//! - `missing_group_names` give warnings but are not counted as skipped: they
//!   are configuration problems, not Okta objects the run saw and left out.
//! - Memberships whose user or team id is not in the store are left alone.
//! - Unknown role values are reported only for active, not skipped users.
//! - Okta statuses are compared exactly as sent (`ACTIVE`, not `active`).
//! - A new user may take an email whose Writer holder changes it away in the
//!   same plan (rule 5c); skips cascade along such chains (a skipped user
//!   keeps its email, so whoever waited for it is skipped too).
//! - A group listed twice is one group (members merged). A group linked to
//!   several teams is skipped with an error; several store teams with the
//!   default team's name disable the default-team rules (with a warning).
//! - Default-team roles follow Okta for users managed after this plan,
//!   including users linked by it.
//! - Within a kind: users by their email after this plan, memberships by team
//!   name then email, updates in chain order then by new email.
//! - Guard: the percent check only applies when something is deactivated; a
//!   percent limit that is not a number blocks (fail closed).
//! - Rule 6a, the deactivation grace (`plan_with_grace`): a managed user
//!   that only left scope waits `Grace::after_ms` from the recorded
//!   `missing_since` (now when none) and is hands off meanwhile, memberships
//!   included; an Okta user that is in scope but inactive never waits.
//! - Hash maps use a fixed, std-only hasher: no random seed, and fast enough
//!   for 100,000 users. Nothing depends on map iteration order.
//!
//! The rules live in one file each, all working on one [`Planner`] whose
//! phases `plan_detailed` runs in order:
//!
//! - `values.rs`: the value rules (status, role, email, display name);
//! - `index.rs`: inputs sorted and deduplicated, the fixed hasher and the id
//!   indexes the rules look things up in;
//! - `users.rs`: SPEC §1.2 (skips, links, email collisions, chains and
//!   cycles, rehire) and who governs each Writer user;
//! - `teams.rs`: SPEC §1.3 (links, orphaned links, the default team);
//! - `emit.rs`: the memberships, the order of rule 14, and the `Change`s.
//!
//! The safety guard (SPEC §2) is `reconcile::guard`.

mod emit;
mod index;
pub mod scope;
mod teams;
mod users;
pub mod values;

#[cfg(test)]
mod grace_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod tests;

use std::borrow::Cow;
use std::collections::BTreeSet;

use crate::model::{
    Finding, Grace, OktaState, Plan, Policy, Severity, StoreMembership, StoreState, StoreTeam,
    StoreUser,
};
use crate::reconcile::plan::index::{Holders, IdIndex, Map, Owners};
use crate::reconcile::plan::scope::Scope;
use crate::reconcile::plan::users::Target;
use crate::reconcile::plan::values::OktaEntry;

/// Plans the changes that make `store` follow `okta` (SPEC §1). Pure and
/// deterministic; see the module documentation for the decisions it makes.
pub fn plan(okta: &OktaState, store: &StoreState, policy: &Policy) -> Plan {
    plan_detailed(okta, store, policy).plan
}

/// Plans over a part of Okta: the same rules as [`plan`], applied to the
/// users `scope` names. When only those users changed in Okta since the store
/// last followed it, and the scope is closed under shared emails (every Okta
/// user and linked Okta id holding an email of one of them is in it), the
/// plan equals the full plan (`proptests.rs` pins this). Team-level findings
/// (orphaned links, unmatched groups, a missing default team) belong to full
/// runs and are not repeated here, and the guard's "Okta returned zero
/// users" check does not apply (`Plan::scoped`).
pub fn plan_scoped(okta: &OktaState, store: &StoreState, policy: &Policy, scope: &Scope) -> Plan {
    plan_in(okta, store, policy, scope).plan
}

/// [`plan`] or [`plan_scoped`] with a deactivation grace (SPEC §8
/// `safety.deactivate_after`): managed users that left scope less than
/// `grace.after_ms` ago are left as they are and listed in
/// `Plan::pending_deactivations`; `Plan::missing` says what to record.
/// With `after_ms = 0` the plan is exactly [`plan`]'s.
pub fn plan_with_grace(
    okta: &OktaState,
    store: &StoreState,
    policy: &Policy,
    scope: &Scope,
    grace: &Grace,
) -> Plan {
    plan_graced(okta, store, policy, scope, grace).plan
}

/// The plan plus what the tests need to check it.
struct Detailed {
    plan: Plan,
    #[cfg_attr(not(test), allow(dead_code))]
    skipped_okta_ids: BTreeSet<String>,
}

fn plan_detailed(okta: &OktaState, store: &StoreState, policy: &Policy) -> Detailed {
    plan_in(okta, store, policy, &Scope::Full)
}

/// Without a deactivation grace.
fn plan_in(okta: &OktaState, store: &StoreState, policy: &Policy, scope: &Scope) -> Detailed {
    plan_graced(okta, store, policy, scope, &NO_GRACE)
}

/// The phases, in order.
fn plan_graced(
    okta: &OktaState,
    store: &StoreState,
    policy: &Policy,
    scope: &Scope,
    grace: &Grace,
) -> Detailed {
    // Rules 14/15: sorted, deduplicated inputs and their indexes (index.rs).
    let mut p = Planner::new(okta, store, policy, scope);
    p.grace = grace;
    // SPEC §1.2, in order: who is skipped, what each Okta user becomes, which
    // email changes collide or go round in cycles (users.rs).
    p.skip_unusable_emails();
    p.skip_duplicate_emails();
    p.skip_ambiguous_store_links();
    p.resolve_targets();
    let rdeps = p.check_email_collisions();
    p.drop_update_cycles(&rdeps);
    p.warn_unknown_roles();
    // SPEC §1.3: which teams are linked, created or orphaned (teams.rs).
    let teams = p.resolve_teams(okta);
    // Memberships, deactivations, rule 14's order and the changes (emit.rs).
    p.finish(&teams)
}

/// Ids or names joined for a message (`00u1, 00u2`).
fn join<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> String {
    items
        .into_iter()
        .map(|s| s.as_ref().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The state the planner's phases share: the deduplicated inputs, their
/// indexes, and what each phase decided so far (indices into `okta` are
/// Okta entries `i`, into `users` store users `s`).
struct Planner<'a> {
    policy: &'a Policy,
    okta: Vec<OktaEntry<'a>>,
    okta_idx: Map<&'a str, usize>,
    users: Vec<&'a StoreUser>,
    /// Email key of each store user.
    user_keys: Vec<Cow<'a, str>>,
    /// The Okta entry of each store user's Okta id, when in scope.
    user_okta: Vec<Option<usize>>,
    /// The store users linked to each Okta entry.
    linked: Vec<Option<Holders>>,
    user_idx: IdIndex,
    /// Store users by email key; built only when some user needs it.
    users_by_email: Map<Cow<'a, str>, Holders>,
    teams: Vec<&'a StoreTeam>,
    /// Deduplicated memberships sorted by (team, user) (the store's own
    /// rows when they already are); `team_ranges` maps a team id to its
    /// slice.
    memberships: Cow<'a, [StoreMembership]>,
    team_ranges: Map<i64, (usize, usize)>,
    skipped: Vec<bool>,
    target: Vec<Option<Target>>,
    /// Store user index -> the Okta entry that targets it.
    owner: Owners,
    /// Okta entry -> store users holding the email it takes, which must give
    /// it up in this plan (rule 5c, 7); only the entries that have some.
    needs: Map<usize, Vec<usize>>,
    findings: Vec<Finding>,
    skipped_groups: usize,
    /// `Some` in a scoped plan: the Okta ids read again.
    observed: Option<&'a BTreeSet<String>>,
    /// The deactivation grace (none unless `plan_with_grace`).
    grace: &'a Grace,
}

/// No deactivation grace: what [`plan`] and [`plan_scoped`] use.
static NO_GRACE: Grace = Grace {
    after_ms: 0,
    now_ms: 0,
    missing_since: std::collections::BTreeMap::new(),
};

impl<'a> Planner<'a> {
    /// Whether this plan saw Okta user `okta_id` (always, in a full plan).
    fn is_observed(&self, okta_id: &str) -> bool {
        self.observed.is_none_or(|ids| ids.contains(okta_id))
    }

    fn warn(&mut self, message: String) {
        self.findings.push(Finding {
            severity: Severity::Warning,
            message,
        });
    }

    fn error(&mut self, message: String) {
        self.findings.push(Finding {
            severity: Severity::Error,
            message,
        });
    }

    fn okta_id(&self, i: usize) -> &'a str {
        self.okta[i].user.id.as_str()
    }

    fn wanted_email(&self, i: usize) -> &'a str {
        self.okta[i].wanted.as_ref().map_or("", |w| w.email)
    }

    fn wanted_key(&self, i: usize) -> &str {
        self.okta[i].wanted.as_ref().map_or("", |w| &w.key)
    }

    fn memberships_of(&self, team_id: i64) -> &[StoreMembership] {
        self.team_ranges
            .get(&team_id)
            .and_then(|&(from, to)| self.memberships.get(from..to))
            .unwrap_or(&[])
    }
}

//! From the resolved users and teams to the plan: who is linked, created,
//! reactivated and deactivated (rules 4–6), the memberships and roles of
//! linked teams and the default team (rules 9, 11), the order of rule 14,
//! and each `Change` built once.
//!
//! Changes are first collected as small [`Records`] naming *subjects* (a
//! store user `s`, or a user this plan creates, `users.len() + i`), then
//! ranked and sorted, and only then built: nothing is cloned for a change
//! that is not emitted, and sorting moves indices, not strings.

use std::collections::BTreeSet;

use crate::model::{
    Change, DeactivationReason, MissingUpdate, PendingDeactivation, Plan, Role, Shared,
    StoreMembership, TeamRef, UserRef,
};
use crate::reconcile::plan::index::prefix_u64;
use crate::reconcile::plan::teams::TeamPhase;
use crate::reconcile::plan::users::{Owner, Target};
use crate::reconcile::plan::values::store_attrs;
use crate::reconcile::plan::{Detailed, Planner};

/// A team whose memberships a plan changes: a linked team (by position) or
/// the default team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum TeamSlot {
    /// A linked team by its position (`u32`: a membership record is 16
    /// bytes, and a first sync has one per membership).
    Linked(u32),
    Default,
}

impl TeamSlot {
    fn linked(k: usize) -> TeamSlot {
        TeamSlot::Linked(u32::try_from(k).unwrap_or(u32::MAX))
    }
}

/// The changes of a plan before they are built, by kind.
#[derive(Default)]
struct Records {
    /// (Okta entry, store user) linked by email or relinked (rehire).
    link_users: Vec<(usize, usize)>,
    /// Okta entries a Writer user is created for.
    create_users: Vec<usize>,
    /// (Okta entry, store user) reactivated.
    reactivations: Vec<(usize, usize)>,
    /// Okta entries whose Writer user's attributes change.
    updates: Vec<usize>,
    /// (team, Okta entry) memberships added.
    /// (`u32`: a first sync of a million users has five million.)
    adds: Vec<(TeamSlot, u32)>,
    /// (team, store user, from, to).
    role_changes: Vec<(TeamSlot, usize, Role, Role)>,
    /// (team, store user, role) memberships removed.
    removals: Vec<(TeamSlot, usize, Role)>,
    deactivations: Vec<(usize, DeactivationReason)>,
}

/// Rule 14's ranks: of every subject a change names, by its email after
/// this plan, and of every team a change names, by its name.
struct Ranks {
    subject: Vec<u32>,
    linked_team: Vec<usize>,
    default_team: usize,
}

impl Ranks {
    fn team(&self, slot: TeamSlot) -> usize {
        match slot {
            TeamSlot::Linked(k) => self
                .linked_team
                .get(k as usize)
                .copied()
                .unwrap_or(usize::MAX),
            TeamSlot::Default => self.default_team,
        }
    }
}

impl<'a> Planner<'a> {
    /// The last phase: collect, order and build the changes, and count what
    /// the report needs (rule 13).
    pub(super) fn finish(mut self, teams: &TeamPhase) -> Detailed {
        let owners: Vec<Owner> = (0..self.users.len()).map(|s| self.owner_of(s)).collect();
        let mut records = Records::default();
        self.collect_users(teams, &owners, &mut records);
        self.collect_linked_memberships(teams, &owners, &mut records);
        self.collect_default_team_roles(teams, &owners, &mut records);
        records.updates = (0..self.okta.len())
            .filter(|&i| !self.skipped[i] && self.update_for(i).is_some())
            .collect();
        // The records grew by doubling; the changes built next are the
        // plan's peak, so the unused tails go first.
        records.adds.shrink_to_fit();
        records.role_changes.shrink_to_fit();
        records.removals.shrink_to_fit();
        let ranks = self.rank(teams, &owners, &records);
        let update_order = self.sort(&ranks, &mut records);
        let changes = self.build(teams, &owners, &records, &update_order);

        // Rule 13.
        let n = self.okta.len();
        let unmanaged_users = owners.iter().filter(|&&o| o == Owner::Unmanaged).count();
        let unmanaged_teams = self
            .teams
            .iter()
            .filter(|t| t.okta_group_id.is_none() && !teams.linked_now.contains(&t.id))
            .count();
        let active_managed_users = self
            .users
            .iter()
            .filter(|u| u.okta_id.is_some() && u.active)
            .count();
        let skipped_okta_ids: BTreeSet<String> = (0..n)
            .filter(|&i| self.skipped[i])
            .map(|i| self.okta_id(i).to_string())
            .collect();
        let skipped = skipped_okta_ids.len() + self.skipped_groups;
        let email_skips = (0..n)
            .filter(|&i| self.skipped[i])
            .filter_map(|i| {
                let wanted = self.okta[i].wanted.as_ref()?;
                Some((self.okta_id(i).to_string(), wanted.key.to_string()))
            })
            .collect();
        let (pending_deactivations, missing) = self.grace_records(&owners);
        Detailed {
            plan: Plan {
                changes,
                findings: std::mem::take(&mut self.findings),
                skipped,
                unmanaged: unmanaged_users + unmanaged_teams,
                active_managed_users,
                okta_users_in_scope: n,
                scoped: self.observed.is_some(),
                email_skips,
                pending_deactivations,
                missing,
            },
            skipped_okta_ids,
        }
    }

    /// Rule 6a's records: the users waiting out the grace (with a warning
    /// each), the Okta ids newly missing, and the recorded ones that no
    /// longer wait (seen by this plan, not waiting). Nothing without a grace.
    fn grace_records(&mut self, owners: &[Owner]) -> (Vec<PendingDeactivation>, MissingUpdate) {
        let grace = self.grace;
        let mut pending = Vec::new();
        let mut missing = MissingUpdate::default();
        if grace.after_ms == 0 {
            return (pending, missing);
        }
        let mut waiting = BTreeSet::new();
        for (s, _) in owners
            .iter()
            .enumerate()
            .filter(|(_, o)| **o == Owner::Waiting)
        {
            let user = self.users[s];
            let Some(okta_id) = user.okta_id.as_deref() else {
                continue;
            };
            let since = match grace.missing_since.get(okta_id) {
                Some(&since) => since,
                None => {
                    missing.start.push((okta_id.to_owned(), grace.now_ms));
                    grace.now_ms
                }
            };
            waiting.insert(okta_id);
            pending.push(PendingDeactivation {
                user_id: user.id,
                okta_id: okta_id.to_owned(),
                email: user.email.to_string(),
                missing_since: since,
                deactivate_at: since.saturating_add(grace.after_ms),
            });
        }
        pending.sort_by(|a, b| (&a.email, &a.okta_id).cmp(&(&b.email, &b.okta_id)));
        missing.start.sort();
        for p in &pending {
            let at = chrono::DateTime::from_timestamp_millis(p.deactivate_at)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default();
            self.warn(format!(
                "{} (Okta user {}) is no longer in scope; deactivated at {at} unless it \
                 comes back (safety.deactivate_after)",
                p.email, p.okta_id
            ));
        }
        missing.clear = grace
            .missing_since
            .keys()
            .filter(|id| self.is_observed(id) && !waiting.contains(id.as_str()))
            .cloned()
            .collect();
        (pending, missing)
    }

    /// An active, not skipped Okta user with a Writer user to become.
    fn eligible(&self, i: usize) -> bool {
        !self.skipped[i] && self.target[i].is_some()
    }

    /// The subject an Okta entry's changes name: its Writer user, or the
    /// user this plan creates for it.
    fn okta_subject(&self, i: usize) -> usize {
        self.target[i]
            .and_then(Target::store_user)
            .unwrap_or(self.users.len() + i)
    }

    /// Rules 4 and 5: links, creates (with the one default-team membership)
    /// and reactivations of active, not skipped users. Rule 6: managed users
    /// whose Okta user is inactive or gone are deactivated (never deleted)
    /// when active; their attributes stay as they are.
    fn collect_users(&self, teams: &TeamPhase, owners: &[Owner], records: &mut Records) {
        for i in (0..self.okta.len()).filter(|&i| self.eligible(i)) {
            let Some(target) = self.target[i] else {
                continue;
            };
            match target {
                Target::Create => {
                    records.create_users.push(i);
                    if teams.default_team.is_some() {
                        records.adds.push((TeamSlot::Default, entry_u32(i)));
                    }
                }
                Target::Linked(_) => {}
                Target::Link(t) | Target::Rehire(t) => records.link_users.push((i, t)),
            }
            if let Some(t) = target.store_user().filter(|&t| !self.users[t].active) {
                records.reactivations.push((i, t));
            }
        }
        for (s, owner) in owners.iter().enumerate() {
            if let (Owner::Gone(reason), true) = (owner, self.users[s].active) {
                records.deactivations.push((s, *reason));
            }
        }
    }

    /// Rule 9: in linked teams, a managed user is a member exactly when its
    /// Okta user is in scope, active, not skipped and in the group, with its
    /// Okta role. Unmanaged users and users of skipped Okta users are left
    /// alone. `stamp` marks the wanted members of the current team (odd) and
    /// the ones already found among its memberships (even).
    fn collect_linked_memberships(
        &self,
        teams: &TeamPhase,
        owners: &[Owner],
        records: &mut Records,
    ) {
        let mut stamp = vec![0usize; self.okta.len()];
        for (k, team) in teams.linked.iter().enumerate() {
            let slot = TeamSlot::linked(k);
            let wanted = 2 * k + 1;
            let found = wanted + 1;
            for i in team.members.iter().map(|&i| i as usize) {
                if self.eligible(i) {
                    stamp[i] = wanted;
                }
            }
            let current = team.team_id.map_or(&[][..], |id| self.memberships_of(id));
            for &StoreMembership { user_id, role, .. } in current {
                let Some(s) = self.user_idx.get(user_id) else {
                    continue;
                };
                match owners[s] {
                    Owner::Unmanaged | Owner::Skipped | Owner::Unobserved | Owner::Waiting => {}
                    Owner::Active(i) if stamp[i] == wanted => {
                        stamp[i] = found;
                        let to = self.okta[i].role;
                        if to != role {
                            records.role_changes.push((slot, s, role, to));
                        }
                    }
                    Owner::Active(_) | Owner::Gone(_) => records.removals.push((slot, s, role)),
                }
            }
            records.adds.extend(
                team.members
                    .iter()
                    .filter(|&&i| stamp[i as usize] == wanted)
                    .map(|&i| (slot, i)),
            );
        }
    }

    /// Rule 11: in the (unlinked) default team only roles follow Okta, for
    /// users whose Okta user is active and not skipped.
    fn collect_default_team_roles(
        &self,
        teams: &TeamPhase,
        owners: &[Owner],
        records: &mut Records,
    ) {
        let Some((team_id, _)) = &teams.default_team else {
            return;
        };
        for &StoreMembership { user_id, role, .. } in self.memberships_of(*team_id) {
            if let Some(s) = self.user_idx.get(user_id)
                && let Owner::Active(i) = owners[s]
                && self.okta[i].role != role
            {
                records
                    .role_changes
                    .push((TeamSlot::Default, s, role, self.okta[i].role));
            }
        }
    }

    /// Rule 14: within a kind, users sort by their email after this plan
    /// (then by subject), memberships by team name and then user. Only the
    /// subjects that changes name are ranked.
    fn rank(&self, teams: &TeamPhase, owners: &[Owner], records: &Records) -> Ranks {
        let n = self.okta.len();
        let u = self.users.len();
        let mut named = vec![false; u + n];
        let subjects = records
            .link_users
            .iter()
            .chain(&records.reactivations)
            .map(|&(_, t)| t)
            .chain(records.create_users.iter().map(|&i| u + i))
            .chain(records.updates.iter().map(|&i| self.okta_subject(i)))
            .chain(
                records
                    .adds
                    .iter()
                    .map(|&(_, i)| self.okta_subject(i as usize)),
            )
            .chain(records.role_changes.iter().map(|&(_, s, _, _)| s))
            .chain(records.removals.iter().map(|&(_, s, _)| s))
            .chain(records.deactivations.iter().map(|&(s, _)| s));
        for subject in subjects {
            named[subject] = true;
        }
        let subject_key = |subject: usize| match owners.get(subject) {
            Some(Owner::Active(i)) => self.wanted_key(*i),
            Some(_) => &self.user_keys[subject],
            None => self.wanted_key(subject - u),
        };
        // The first eight bytes, big-endian, order like the string does and
        // settle most comparisons without following the pointer.
        let mut ranked: Vec<(u64, &str, usize)> = (0..u + n)
            .filter(|&x| named[x])
            .map(|x| {
                let key = subject_key(x);
                (prefix_u64(key), key, x)
            })
            .collect();
        ranked.sort_unstable();
        let mut subject = vec![0u32; u + n];
        for (r, &(_, _, s)) in ranked.iter().enumerate() {
            subject[s] = u32::try_from(r).unwrap_or(u32::MAX);
        }

        let mut team_names: Vec<(&str, TeamSlot)> = teams
            .linked
            .iter()
            .enumerate()
            .map(|(k, t)| (&*t.name, TeamSlot::linked(k)))
            .chain(
                teams
                    .default_team
                    .as_ref()
                    .map(|(_, name)| (&**name, TeamSlot::Default)),
            )
            .collect();
        team_names.sort_unstable();
        let mut linked_team = vec![0usize; teams.linked.len()];
        let mut default_team = 0;
        for (r, &(_, slot)) in team_names.iter().enumerate() {
            match slot {
                TeamSlot::Linked(k) => {
                    if let Some(x) = linked_team.get_mut(k as usize) {
                        *x = r;
                    }
                }
                TeamSlot::Default => default_team = r,
            }
        }
        Ranks {
            subject,
            linked_team,
            default_team,
        }
    }

    /// Sorts every kind by its ranks; returns the order of the updates
    /// (rule 7: a user giving an email up comes before the user taking it).
    fn sort(&self, ranks: &Ranks, records: &mut Records) -> Vec<usize> {
        let rank = &ranks.subject;
        let u = self.users.len();
        let (update_order, _) = self.topo_order_updates(|i| rank[self.okta_subject(i)]);
        records.link_users.sort_by_cached_key(|&(_, t)| rank[t]);
        records.create_users.sort_by_cached_key(|&i| rank[u + i]);
        records.reactivations.sort_by_cached_key(|&(_, t)| rank[t]);
        // Memberships (a first sync has millions) sort by keys that are two
        // array reads: recomputed rather than cached (both sorts are stable).
        records
            .adds
            .sort_by_key(|&(slot, i)| (ranks.team(slot), rank[self.okta_subject(i as usize)]));
        records
            .role_changes
            .sort_by_key(|&(slot, s, _, _)| (ranks.team(slot), rank[s]));
        records
            .removals
            .sort_by_key(|&(slot, s, _)| (ranks.team(slot), rank[s]));
        records.deactivations.sort_by_cached_key(|&(s, _)| rank[s]);
        update_order
    }

    /// Builds the changes, in the order of rule 14: teams created, teams
    /// linked, users linked, updated, created, reactivated, memberships
    /// added, roles changed, memberships removed, users deactivated.
    fn build(
        &self,
        teams: &TeamPhase,
        owners: &[Owner],
        records: &Records,
        update_order: &[usize],
    ) -> Vec<Change> {
        // Emails (an Okta entry's wanted one, a store user's) and new users'
        // Okta ids, allocated once for all the memberships that name them.
        let mut okta_emails = SharedStrings::new(self.okta.len());
        let mut store_emails = SharedStrings::new(self.users.len());
        let mut new_ids = SharedStrings::new(self.okta.len());
        let team_of = |slot: TeamSlot| match slot {
            TeamSlot::Linked(k) => teams.linked.get(k as usize).map(|t| {
                (
                    t.team.clone(),
                    t.team_id.unwrap_or_default(),
                    Shared::clone(&t.name),
                )
            }),
            TeamSlot::Default => teams
                .default_team
                .as_ref()
                .map(|(id, name)| (TeamRef::Existing(*id), *id, Shared::clone(name))),
        };
        let mut create_teams = teams.create.clone();
        create_teams.sort_by(|a, b| team_change_name(a).cmp(&team_change_name(b)));
        let mut link_teams = teams.link.clone();
        link_teams.sort_by(|a, b| team_change_name(a).cmp(&team_change_name(b)));
        let total = create_teams.len()
            + link_teams.len()
            + records.link_users.len()
            + update_order.len()
            + records.create_users.len()
            + records.reactivations.len()
            + records.adds.len()
            + records.role_changes.len()
            + records.removals.len()
            + records.deactivations.len();
        let mut changes = Vec::with_capacity(total);
        changes.extend(create_teams);
        changes.extend(link_teams);
        changes.extend(records.link_users.iter().map(|&(i, t)| {
            let user = self.users[t];
            Change::LinkUser {
                user_id: user.id,
                email: user.email.to_string(),
                okta_id: self.okta_id(i).to_string(),
                previous_okta_id: user.okta_id.as_deref().map(str::to_owned),
            }
        }));
        changes.extend(update_order.iter().filter_map(|&i| {
            let t = self.update_for(i)?;
            Some(Change::UpdateUser {
                user_id: self.users[t].id,
                okta_id: self.okta_id(i).to_string(),
                before: Box::new(store_attrs(self.users[t])),
                after: Box::new(self.okta[i].wanted.as_ref()?.attrs()),
            })
        }));
        changes.extend(records.create_users.iter().filter_map(|&i| {
            Some(Change::CreateUser {
                okta_id: new_ids.get(i, || self.okta_id(i)),
                attrs: Box::new(self.okta[i].wanted.as_ref()?.attrs()),
            })
        }));
        changes.extend(
            records
                .reactivations
                .iter()
                .map(|&(i, t)| Change::ReactivateUser {
                    user_id: self.users[t].id,
                    okta_id: self.okta_id(i).to_string(),
                    email: self.wanted_email(i).to_string(),
                }),
        );
        changes.extend(records.adds.iter().filter_map(|&(slot, i)| {
            let i = i as usize;
            let (team, _, team_name) = team_of(slot)?;
            let user = match self.target[i]? {
                Target::Create => UserRef::New {
                    okta_id: new_ids.get(i, || self.okta_id(i)),
                },
                Target::Linked(t) | Target::Link(t) | Target::Rehire(t) => {
                    UserRef::Existing(self.users[t].id)
                }
            };
            Some(Change::AddMembership {
                team,
                team_name,
                user,
                email: okta_emails.get(i, || self.wanted_email(i)),
                role: self.okta[i].role,
            })
        }));
        // A membership's email is the user's after this plan.
        let mut final_email = |s: usize| match owners[s] {
            Owner::Active(i) => okta_emails.get(i, || self.wanted_email(i)),
            _ => store_emails.get(s, || self.users[s].email.as_str()),
        };
        changes.extend(
            records
                .role_changes
                .iter()
                .filter_map(|&(slot, s, from, to)| {
                    let (_, team_id, team_name) = team_of(slot)?;
                    Some(Change::ChangeRole {
                        team_id,
                        team_name,
                        user_id: self.users[s].id,
                        email: final_email(s),
                        from,
                        to,
                    })
                }),
        );
        changes.extend(records.removals.iter().filter_map(|&(slot, s, role)| {
            let (_, team_id, team_name) = team_of(slot)?;
            Some(Change::RemoveMembership {
                team_id,
                team_name,
                user_id: self.users[s].id,
                email: final_email(s),
                role,
            })
        }));
        changes.extend(records.deactivations.iter().filter_map(|&(s, reason)| {
            let user = self.users[s];
            Some(Change::DeactivateUser {
                user_id: user.id,
                okta_id: user.okta_id.as_deref()?.to_owned(),
                email: user.email.to_string(),
                reason,
            })
        }));
        changes
    }
}

/// An Okta entry index as a record stores it (a plan never has 2^32).
fn entry_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Strings shared by the changes that repeat them, by index (`0..len`),
/// made on first use; the table itself only once a change asks for one.
struct SharedStrings {
    len: usize,
    slots: Vec<Option<Shared>>,
}

impl SharedStrings {
    fn new(len: usize) -> SharedStrings {
        SharedStrings {
            len,
            slots: Vec::new(),
        }
    }

    fn get<'s>(&mut self, index: usize, value: impl FnOnce() -> &'s str) -> Shared {
        if self.slots.is_empty() {
            self.slots = vec![None; self.len];
        }
        match self.slots.get_mut(index) {
            Some(slot) => Shared::clone(slot.get_or_insert_with(|| value().into())),
            None => value().into(),
        }
    }
}

/// The sort key of a team change: its name, then its group id.
fn team_change_name(change: &Change) -> (&str, &str) {
    match change {
        Change::CreateTeam {
            name,
            okta_group_id,
        }
        | Change::LinkTeam {
            name,
            okta_group_id,
            ..
        } => (name, okta_group_id),
        _ => ("", ""),
    }
}

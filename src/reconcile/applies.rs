//! Whether a list of changes still applies to a store state, change by
//! change in order: the check `writer-sync apply FILE` and `writer-sync
//! revert` make inside the sync lock before they write anything.
//!
//! Invariant: pure; a list it accepts is one `apply` can write without a
//! constraint failing and without touching a row that is not as the change
//! expects it (the user to reactivate is inactive, the role to change is
//! still `from`, the email to take is free, …). Each change is checked
//! against the state the earlier changes of the list leave.

use std::collections::HashMap;

use crate::model::{Change, Role, StoreState, TeamRef, UserAttrs, UserRef};
use crate::reconcile::report::change_json;
use crate::store::email_key;

#[derive(Debug, Clone)]
struct SimUser {
    email_key: String,
    okta_id: Option<String>,
    attrs: UserAttrs,
    active: bool,
}

#[derive(Debug, Clone)]
struct SimTeam {
    name: String,
    group: Option<String>,
}

/// The store as the changes checked so far leave it. Users and teams
/// created by the list get negative ids.
struct Sim {
    users: HashMap<i64, SimUser>,
    by_email: HashMap<String, i64>,
    by_okta: HashMap<String, i64>,
    teams: HashMap<i64, SimTeam>,
    team_by_name: HashMap<String, i64>,
    team_by_group: HashMap<String, i64>,
    members: HashMap<(i64, i64), Role>,
    next_new: i64,
}

impl Sim {
    fn new(state: &StoreState) -> Sim {
        let mut sim = Sim {
            users: HashMap::new(),
            by_email: HashMap::new(),
            by_okta: HashMap::new(),
            teams: HashMap::new(),
            team_by_name: HashMap::new(),
            team_by_group: HashMap::new(),
            members: HashMap::new(),
            next_new: -1,
        };
        for u in &state.users {
            let user = SimUser {
                email_key: email_key(&u.email),
                okta_id: u.okta_id.as_deref().map(str::to_owned),
                attrs: UserAttrs {
                    email: u.email.clone(),
                    first_name: u.first_name.clone(),
                    last_name: u.last_name.clone(),
                    display_name: u.display_name.clone(),
                },
                active: u.active,
            };
            sim.by_email.insert(user.email_key.clone(), u.id);
            if let Some(o) = &u.okta_id {
                sim.by_okta.insert(o.to_string(), u.id);
            }
            sim.users.insert(u.id, user);
        }
        for t in &state.teams {
            sim.team_by_name.insert(t.name.clone(), t.id);
            if let Some(g) = &t.okta_group_id {
                sim.team_by_group.insert(g.clone(), t.id);
            }
            sim.teams.insert(
                t.id,
                SimTeam {
                    name: t.name.clone(),
                    group: t.okta_group_id.clone(),
                },
            );
        }
        for m in &state.memberships {
            sim.members.insert((m.team_id, m.user_id), m.role);
        }
        sim
    }

    fn user(&self, id: i64) -> Result<&SimUser, String> {
        self.users
            .get(&id)
            .ok_or_else(|| format!("user {id} does not exist"))
    }

    fn user_ref(&self, r: &UserRef) -> Result<i64, String> {
        match r {
            UserRef::Existing(id) => self.user(*id).map(|_| *id),
            UserRef::New { okta_id } => self
                .by_okta
                .get(&**okta_id)
                .copied()
                .filter(|id| *id < 0)
                .ok_or_else(|| format!("no earlier change creates Okta user {okta_id}")),
        }
    }

    fn team_ref(&self, r: &TeamRef) -> Result<i64, String> {
        match r {
            TeamRef::Existing(id) => self
                .teams
                .get(id)
                .map(|_| *id)
                .ok_or_else(|| format!("team {id} does not exist")),
            TeamRef::New { name } => self
                .team_by_name
                .get(&**name)
                .copied()
                .filter(|id| *id < 0)
                .ok_or_else(|| format!("no earlier change creates team {name:?}")),
        }
    }

    fn okta_free(&self, okta_id: &str, for_user: Option<i64>) -> Result<(), String> {
        match self.by_okta.get(okta_id) {
            Some(holder) if Some(*holder) != for_user => Err(format!(
                "Okta user {okta_id} is already linked to user {holder}"
            )),
            _ => Ok(()),
        }
    }

    fn expect_okta(&self, id: i64, okta_id: &str) -> Result<&SimUser, String> {
        let user = self.user(id)?;
        if user.okta_id.as_deref() != Some(okta_id) {
            return Err(format!(
                "user {id} is linked to {} now, not to {okta_id}",
                user.okta_id.as_deref().unwrap_or("no Okta user")
            ));
        }
        Ok(user)
    }

    /// Checks one change against the current state and, when it applies,
    /// makes it.
    fn step(&mut self, change: &Change) -> Result<(), String> {
        match change {
            Change::CreateTeam {
                name,
                okta_group_id,
            } => {
                if self.team_by_name.contains_key(name) {
                    return Err("a team of that name exists".into());
                }
                if let Some(t) = self.team_by_group.get(okta_group_id) {
                    return Err(format!(
                        "Okta group {okta_group_id} is already linked to team {t}"
                    ));
                }
                let id = self.new_id();
                self.team_by_name.insert(name.clone(), id);
                self.team_by_group.insert(okta_group_id.clone(), id);
                self.teams.insert(
                    id,
                    SimTeam {
                        name: name.clone(),
                        group: Some(okta_group_id.clone()),
                    },
                );
            }
            Change::LinkTeam {
                team_id,
                okta_group_id,
                ..
            } => {
                let team = self
                    .teams
                    .get(team_id)
                    .ok_or_else(|| format!("team {team_id} does not exist"))?;
                if let Some(g) = &team.group {
                    return Err(format!("team {:?} is already linked to {g}", team.name));
                }
                if let Some(t) = self.team_by_group.get(okta_group_id) {
                    return Err(format!(
                        "Okta group {okta_group_id} is already linked to team {t}"
                    ));
                }
                self.team_by_group.insert(okta_group_id.clone(), *team_id);
                if let Some(team) = self.teams.get_mut(team_id) {
                    team.group = Some(okta_group_id.clone());
                }
            }
            Change::CreateUser { okta_id, attrs } => {
                let key = email_key(&attrs.email);
                if let Some(holder) = self.by_email.get(&key) {
                    return Err(format!("user {holder} already has that email"));
                }
                self.okta_free(okta_id, None)?;
                let id = self.new_id();
                self.by_email.insert(key.clone(), id);
                self.by_okta.insert(okta_id.to_string(), id);
                self.users.insert(
                    id,
                    SimUser {
                        email_key: key,
                        okta_id: Some(okta_id.to_string()),
                        attrs: (**attrs).clone(),
                        active: true,
                    },
                );
            }
            Change::LinkUser {
                user_id,
                okta_id,
                previous_okta_id,
                ..
            } => {
                let user = self.user(*user_id)?;
                if user.okta_id != *previous_okta_id {
                    return Err(format!(
                        "user {user_id} is linked to {} now, not to {}",
                        user.okta_id.as_deref().unwrap_or("no Okta user"),
                        previous_okta_id.as_deref().unwrap_or("no Okta user")
                    ));
                }
                self.okta_free(okta_id, Some(*user_id))?;
                if let Some(prev) = previous_okta_id {
                    self.by_okta.remove(prev);
                }
                self.by_okta.insert(okta_id.clone(), *user_id);
                if let Some(user) = self.users.get_mut(user_id) {
                    user.okta_id = Some(okta_id.clone());
                }
            }
            Change::UpdateUser {
                user_id,
                okta_id,
                before,
                after,
            } => {
                let user = self.expect_okta(*user_id, okta_id)?;
                if user.attrs != **before {
                    return Err(format!(
                        "user {user_id}'s attributes changed since: {:?} {:?} {:?} {:?}, expected {:?} {:?} {:?} {:?}",
                        user.attrs.email,
                        user.attrs.first_name,
                        user.attrs.last_name,
                        user.attrs.display_name,
                        before.email,
                        before.first_name,
                        before.last_name,
                        before.display_name
                    ));
                }
                let old_key = user.email_key.clone();
                let key = email_key(&after.email);
                if let Some(holder) = self.by_email.get(&key)
                    && holder != user_id
                {
                    return Err(format!(
                        "user {holder} already has the email {:?}",
                        after.email
                    ));
                }
                self.by_email.remove(&old_key);
                self.by_email.insert(key.clone(), *user_id);
                if let Some(user) = self.users.get_mut(user_id) {
                    user.email_key = key;
                    user.attrs = (**after).clone();
                }
            }
            Change::ReactivateUser {
                user_id, okta_id, ..
            } => {
                if self.expect_okta(*user_id, okta_id)?.active {
                    return Err(format!("user {user_id} is already active"));
                }
                self.set_active(*user_id, true);
            }
            Change::DeactivateUser {
                user_id, okta_id, ..
            } => {
                if !self.expect_okta(*user_id, okta_id)?.active {
                    return Err(format!("user {user_id} is already inactive"));
                }
                self.set_active(*user_id, false);
            }
            Change::AddMembership {
                team, user, role, ..
            } => {
                let key = (self.team_ref(team)?, self.user_ref(user)?);
                if let Some(r) = self.members.get(&key) {
                    return Err(format!("the membership exists (as {r})"));
                }
                self.members.insert(key, *role);
            }
            Change::RemoveMembership {
                team_id,
                user_id,
                role,
                ..
            } => match self.members.get(&(*team_id, *user_id)) {
                Some(r) if r == role => {
                    self.members.remove(&(*team_id, *user_id));
                }
                Some(r) => return Err(format!("the membership's role is {r} now, not {role}")),
                None => return Err("the membership does not exist".into()),
            },
            Change::ChangeRole {
                team_id,
                user_id,
                from,
                to,
                ..
            } => match self.members.get(&(*team_id, *user_id)) {
                Some(r) if r == from => {
                    self.members.insert((*team_id, *user_id), *to);
                }
                Some(r) => return Err(format!("the membership's role is {r} now, not {from}")),
                None => return Err("the membership does not exist".into()),
            },
        }
        Ok(())
    }

    fn new_id(&mut self) -> i64 {
        let id = self.next_new;
        self.next_new -= 1;
        id
    }

    fn set_active(&mut self, id: i64, active: bool) {
        if let Some(user) = self.users.get_mut(&id) {
            user.active = active;
        }
    }
}

/// Why each change of `changes` that does not apply to `state` (after the
/// changes before it) does not: one line per refused change, naming its
/// action and target; empty when all apply. A refused change is not made,
/// so the changes after it are checked as if it were left out.
pub fn check_applies(state: &StoreState, changes: &[Change]) -> Vec<String> {
    let mut sim = Sim::new(state);
    let mut refused = Vec::new();
    for (n, change) in changes.iter().enumerate() {
        if let Err(why) = sim.step(change) {
            refused.push(format!(
                "change {} ({} {}): {why}",
                n + 1,
                change.kind(),
                change_json(change).target
            ));
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeactivationReason, StoreMembership, StoreTeam, StoreUser};

    fn attrs(email: &str) -> UserAttrs {
        UserAttrs {
            email: email.into(),
            first_name: "F".into(),
            last_name: "L".into(),
            display_name: "F L".into(),
        }
    }

    fn state() -> StoreState {
        let user = |id: i64, email: &str, okta: Option<&str>, active: bool| StoreUser {
            id,
            email: email.into(),
            okta_id: okta.map(Into::into),
            first_name: "F".into(),
            last_name: "L".into(),
            display_name: "F L".into(),
            active,
        };
        StoreState {
            users: vec![
                user(1, "a@x.com", Some("00u1"), true),
                user(2, "b@x.com", Some("00u2"), false),
                user(3, "c@x.com", None, true),
            ],
            teams: vec![StoreTeam {
                id: 10,
                name: "Eng".into(),
                okta_group_id: Some("00g1".into()),
            }],
            memberships: vec![StoreMembership {
                team_id: 10,
                user_id: 1,
                role: Role::Member,
            }],
        }
    }

    #[test]
    fn changes_made_for_this_state_apply() {
        let changes = vec![
            Change::CreateUser {
                okta_id: "00u9".into(),
                attrs: Box::new(attrs("new@x.com")),
            },
            Change::AddMembership {
                team: TeamRef::Existing(10),
                team_name: "Eng".into(),
                user: UserRef::New {
                    okta_id: "00u9".into(),
                },
                email: "new@x.com".into(),
                role: Role::Admin,
            },
            Change::ReactivateUser {
                user_id: 2,
                okta_id: "00u2".into(),
                email: "b@x.com".into(),
            },
            Change::ChangeRole {
                team_id: 10,
                team_name: "Eng".into(),
                user_id: 1,
                email: "a@x.com".into(),
                from: Role::Member,
                to: Role::Admin,
            },
            Change::LinkUser {
                user_id: 3,
                email: "c@x.com".into(),
                okta_id: "00u3".into(),
                previous_okta_id: None,
            },
        ];
        assert_eq!(check_applies(&state(), &changes), Vec::<String>::new());
    }

    #[test]
    fn a_change_the_store_has_moved_past_is_refused_by_name() {
        let changes = vec![
            // Already exists.
            Change::CreateUser {
                okta_id: "00u9".into(),
                attrs: Box::new(attrs("A@x.com")),
            },
            // Already active.
            Change::ReactivateUser {
                user_id: 1,
                okta_id: "00u1".into(),
                email: "a@x.com".into(),
            },
            // Role is member, not admin.
            Change::ChangeRole {
                team_id: 10,
                team_name: "Eng".into(),
                user_id: 1,
                email: "a@x.com".into(),
                from: Role::Admin,
                to: Role::Member,
            },
            // No such membership.
            Change::RemoveMembership {
                team_id: 10,
                team_name: "Eng".into(),
                user_id: 2,
                email: "b@x.com".into(),
                role: Role::Member,
            },
            // Attributes differ.
            Change::UpdateUser {
                user_id: 1,
                okta_id: "00u1".into(),
                before: Box::new(attrs("old@x.com")),
                after: Box::new(attrs("a@x.com")),
            },
            // Inactive already.
            Change::DeactivateUser {
                user_id: 2,
                okta_id: "00u2".into(),
                email: "b@x.com".into(),
                reason: DeactivationReason::Reverted,
            },
        ];
        let refused = check_applies(&state(), &changes);
        assert_eq!(refused.len(), 6, "{refused:#?}");
        assert!(refused[0].starts_with("change 1 (user_created A@x.com): user 1 already has"));
        assert!(refused[1].contains("already active"));
        assert!(refused[2].contains("role is member now, not admin"));
        assert!(refused[3].contains("does not exist"));
        assert!(refused[4].contains("attributes changed since"));
        assert!(refused[5].contains("already inactive"));
    }

    #[test]
    fn later_changes_see_the_earlier_ones() {
        // Swapping two emails through a third is a chain the planner emits.
        let (a, b) = (attrs("a@x.com"), attrs("b@x.com"));
        let tmp = attrs("tmp@x.com");
        let upd = |id: i64, okta: &str, before: &UserAttrs, after: &UserAttrs| Change::UpdateUser {
            user_id: id,
            okta_id: okta.into(),
            before: Box::new(before.clone()),
            after: Box::new(after.clone()),
        };
        let chain = vec![
            upd(1, "00u1", &a, &tmp),
            upd(2, "00u2", &b, &a),
            upd(1, "00u1", &tmp, &b),
        ];
        assert!(check_applies(&state(), &chain).is_empty());
        // Without the first step the second takes an email in use.
        let refused = check_applies(&state(), &chain[1..]);
        assert!(
            refused[0].contains("user 1 already has the email"),
            "{refused:?}"
        );
        // The same change twice: the second finds it made.
        let twice = vec![
            Change::ReactivateUser {
                user_id: 2,
                okta_id: "00u2".into(),
                email: "b@x.com".into(),
            };
            2
        ];
        let refused = check_applies(&state(), &twice);
        assert_eq!(refused.len(), 1);
        assert!(refused[0].starts_with("change 2 "));
    }
}

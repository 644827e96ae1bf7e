//! The planner's property tests: on random worlds (and on worlds made of
//! email moves) a plan converges, keeps the store consistent, leaves
//! unmanaged and skipped users alone, matches Okta once applied, respects
//! the guard, and does not depend on input order.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;

use super::*;
use crate::model::{Change, OktaGroup, OktaUser, Role, TeamRef, UserRef};
use crate::reconcile::guard::guard;
use crate::reconcile::guard::tests::{limits, plan_with};
use crate::reconcile::plan::index::okta_user_key;
use crate::reconcile::plan::scope::{ids_holding, okta_email_key, scope_email_keys};
use crate::reconcile::plan::tests::*;
use crate::reconcile::plan::values::{
    UnknownRole, desired_attrs, email_key, is_active_status, normalize_role, store_attrs,
    usable_email,
};

// -----------------------------------------------------------------------
// Properties.
// -----------------------------------------------------------------------

/// Applies a plan the way the store would, checking every change against
/// the state it applies to (the store's unique constraints included).
fn apply(store: &StoreState, plan: &Plan) -> Result<StoreState, String> {
    let mut s = store.clone();
    let mut next_user = s.users.iter().map(|u| u.id).max().unwrap_or(0) + 1;
    let mut next_team = s.teams.iter().map(|t| t.id).max().unwrap_or(0) + 1;
    let mut new_users: HashMap<String, i64> = HashMap::new();
    let mut new_teams: HashMap<String, i64> = HashMap::new();
    fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
        if ok { Ok(()) } else { Err(what()) }
    }
    fn user<'s>(
        s: &'s mut StoreState,
        id: i64,
        okta_id: &str,
    ) -> Result<&'s mut StoreUser, String> {
        s.users
            .iter_mut()
            .find(|u| u.id == id && u.okta_id.as_deref() == Some(okta_id))
            .ok_or_else(|| format!("no user {id} linked to {okta_id}"))
    }
    let email_free = |s: &StoreState, email: &str, except: i64| {
        !s.users
            .iter()
            .any(|u| u.id != except && email_key(&u.email) == email_key(email))
    };
    for c in &plan.changes {
        match c {
            Change::CreateTeam {
                name,
                okta_group_id,
            } => {
                check(
                    !s.teams.iter().any(|t| {
                        t.name == *name || t.okta_group_id.as_ref() == Some(okta_group_id)
                    }),
                    || format!("{c:?}: name or group taken"),
                )?;
                s.teams.push(StoreTeam {
                    id: next_team,
                    name: name.clone(),
                    okta_group_id: Some(okta_group_id.clone()),
                });
                new_teams.insert(name.clone(), next_team);
                next_team += 1;
            }
            Change::LinkTeam {
                team_id,
                name,
                okta_group_id,
            } => {
                check(
                    !s.teams
                        .iter()
                        .any(|t| t.okta_group_id.as_ref() == Some(okta_group_id)),
                    || format!("{c:?}: group taken"),
                )?;
                let t = s
                    .teams
                    .iter_mut()
                    .find(|t| t.id == *team_id && t.name == *name && t.okta_group_id.is_none())
                    .ok_or_else(|| format!("{c:?}: no such unlinked team"))?;
                t.okta_group_id = Some(okta_group_id.clone());
            }
            Change::CreateUser { okta_id, attrs } => {
                check(
                    !s.users
                        .iter()
                        .any(|u| u.okta_id.as_deref() == Some(&**okta_id)),
                    || format!("{c:?}: okta id taken"),
                )?;
                check(email_free(&s, &attrs.email, -1), || {
                    format!("{c:?}: email taken")
                })?;
                s.users.push(StoreUser {
                    id: next_user,
                    email: attrs.email.clone(),
                    okta_id: Some((**okta_id).into()),
                    first_name: attrs.first_name.clone(),
                    last_name: attrs.last_name.clone(),
                    display_name: attrs.display_name.clone(),
                    active: true,
                });
                new_users.insert(okta_id.to_string(), next_user);
                next_user += 1;
            }
            Change::LinkUser {
                user_id,
                email,
                okta_id,
                previous_okta_id,
            } => {
                check(
                    !s.users
                        .iter()
                        .any(|u| u.okta_id.as_deref() == Some(okta_id.as_str())),
                    || format!("{c:?}: okta id taken"),
                )?;
                let u = s
                    .users
                    .iter_mut()
                    .find(|u| {
                        u.id == *user_id && u.okta_id.as_deref() == previous_okta_id.as_deref()
                    })
                    .ok_or_else(|| format!("{c:?}: no such user"))?;
                check(u.email == *email, || format!("{c:?}: email differs"))?;
                u.okta_id = Some(okta_id.as_str().into());
            }
            Change::UpdateUser {
                user_id,
                okta_id,
                before,
                after,
            } => {
                check(email_free(&s, &after.email, *user_id), || {
                    format!("{c:?}: email taken")
                })?;
                let u = user(&mut s, *user_id, okta_id)?;
                check(store_attrs(u) == **before, || {
                    format!("{c:?}: stale before")
                })?;
                check(before != after, || format!("{c:?}: no-op"))?;
                u.email = after.email.as_str().into();
                u.first_name = after.first_name.as_str().into();
                u.last_name = after.last_name.as_str().into();
                u.display_name = after.display_name.as_str().into();
            }
            Change::ReactivateUser {
                user_id, okta_id, ..
            } => {
                let u = user(&mut s, *user_id, okta_id)?;
                check(!u.active, || format!("{c:?}: already active"))?;
                u.active = true;
            }
            Change::DeactivateUser {
                user_id, okta_id, ..
            } => {
                let u = user(&mut s, *user_id, okta_id)?;
                check(u.active, || format!("{c:?}: already inactive"))?;
                u.active = false;
            }
            Change::AddMembership {
                team, user, role, ..
            } => {
                let team_id = match team {
                    TeamRef::Existing(id) => Some(*id),
                    TeamRef::New { name } => new_teams.get(&**name).copied(),
                }
                .ok_or_else(|| format!("{c:?}: unknown team"))?;
                let user_id = match user {
                    UserRef::Existing(id) => Some(*id),
                    UserRef::New { okta_id } => new_users.get(&**okta_id).copied(),
                }
                .ok_or_else(|| format!("{c:?}: unknown user"))?;
                check(
                    s.teams.iter().any(|t| t.id == team_id)
                        && s.users.iter().any(|u| u.id == user_id),
                    || format!("{c:?}: dangling"),
                )?;
                check(
                    !s.memberships
                        .iter()
                        .any(|m| m.team_id == team_id && m.user_id == user_id),
                    || format!("{c:?}: already a member"),
                )?;
                s.memberships.push(member(team_id, user_id, *role));
            }
            Change::RemoveMembership {
                team_id,
                user_id,
                role,
                ..
            } => {
                let before = s.memberships.len();
                s.memberships.retain(|m| {
                    !(m.team_id == *team_id && m.user_id == *user_id && m.role == *role)
                });
                check(s.memberships.len() + 1 == before, || {
                    format!("{c:?}: not exactly one membership")
                })?;
            }
            Change::ChangeRole {
                team_id,
                user_id,
                from,
                to,
                ..
            } => {
                check(from != to, || format!("{c:?}: no-op"))?;
                let m = s
                    .memberships
                    .iter_mut()
                    .find(|m| m.team_id == *team_id && m.user_id == *user_id)
                    .ok_or_else(|| format!("{c:?}: no membership"))?;
                check(m.role == *from, || format!("{c:?}: stale role"))?;
                m.role = *to;
            }
        }
    }
    Ok(s)
}

/// The store's unique constraints.
fn store_is_consistent(s: &StoreState) -> Result<(), String> {
    let mut emails = HashSet::new();
    let mut okta_ids = HashSet::new();
    for u in &s.users {
        if !emails.insert(email_key(&u.email)) {
            return Err(format!("two users with email {}", u.email));
        }
        if let Some(k) = &u.okta_id
            && !okta_ids.insert(k.clone())
        {
            return Err(format!("two users with okta id {k}"));
        }
    }
    let mut names = HashSet::new();
    let mut groups = HashSet::new();
    for t in &s.teams {
        if !names.insert(t.name.clone()) {
            return Err(format!("two teams named {}", t.name));
        }
        if let Some(g) = &t.okta_group_id
            && !groups.insert(g.clone())
        {
            return Err(format!("two teams linked to {g}"));
        }
    }
    Ok(())
}

fn matches_okta(w: &World) -> Result<(), TestCaseError> {
    let d = plan_detailed(&w.okta, &w.store, &w.policy);
    let applied = apply(&w.store, &d.plan).unwrap_or_default();
    let mut okta: BTreeMap<&str, &OktaUser> = BTreeMap::new();
    for u in &w.okta.users {
        let e = okta.entry(u.id.as_str()).or_insert(u);
        if okta_user_key(u) < okta_user_key(e) {
            *e = u;
        }
    }
    let wanted = |k: &str| {
        okta.get(k)
            .filter(|u| is_active_status(&u.status) && !d.skipped_okta_ids.contains(k))
            .copied()
    };
    for id in okta.keys() {
        if let Some(u) = wanted(id) {
            let linked: Vec<&StoreUser> = applied
                .users
                .iter()
                .filter(|s| s.okta_id.as_deref() == Some(*id))
                .collect();
            prop_assert_eq!(linked.len(), 1, "{}", id);
            let email = usable_email(u.email.as_deref()).unwrap_or("");
            prop_assert_eq!(store_attrs(linked[0]), desired_attrs(u, email));
            prop_assert!(linked[0].active);
        }
    }
    for s in &applied.users {
        if let Some(k) = s.okta_id.as_deref()
            && wanted(k).is_none()
            && !d.skipped_okta_ids.contains(k)
        {
            prop_assert!(!s.active, "{:?} should be inactive", s);
        }
    }
    let pushed: BTreeMap<&str, &OktaGroup> =
        w.okta.groups.iter().map(|g| (g.id.as_str(), g)).collect();
    let user_okta: HashMap<i64, &str> = applied
        .users
        .iter()
        .filter_map(|u| Some((u.id, u.okta_id.as_deref()?)))
        .collect();
    for t in &applied.teams {
        let Some(g) = t.okta_group_id.as_deref().and_then(|g| pushed.get(g)) else {
            continue;
        };
        // A group listed twice was merged; skip such inputs here.
        if w.okta.groups.iter().filter(|x| x.id == g.id).count() > 1 {
            continue;
        }
        let members: HashMap<&str, Role> = applied
            .memberships
            .iter()
            .filter(|m| m.team_id == t.id)
            .filter_map(|m| Some((*user_okta.get(&m.user_id)?, m.role)))
            .collect();
        for (k, role) in &members {
            if d.skipped_okta_ids.contains(*k) {
                continue;
            }
            let u = wanted(k);
            prop_assert!(
                u.is_some() && g.member_ids.iter().any(|m| **m == **k),
                "{} in {}",
                k,
                t.name
            );
            let expected =
                normalize_role(u.and_then(|u| u.role.as_deref())).unwrap_or(UnknownRole::FALLBACK);
            prop_assert_eq!(*role, expected);
        }
        for k in &g.member_ids {
            if wanted(k).is_some() {
                prop_assert!(members.contains_key(&**k), "{} missing from {}", k, t.name);
            }
        }
    }
    Ok(())
}

fn converges(w: &World) -> Result<(), TestCaseError> {
    let p = w.plan();
    let applied = apply(&w.store, &p);
    prop_assert!(applied.is_ok(), "{:?}\n{:#?}", applied, p.changes);
    let applied = applied.unwrap_or_default();
    prop_assert_eq!(store_is_consistent(&applied), Ok(()));
    let again = plan(&w.okta, &applied, &w.policy);
    prop_assert!(
        again.changes.is_empty(),
        "not converged: {:#?}\nfirst: {:#?}",
        again.changes,
        p.changes
    );
    prop_assert_eq!(again.skipped, p.skipped);
    Ok(())
}

/// Store users 0..n+2 hold distinct emails (managed or not; the last two
/// linked to Okta ids that are not in scope); Okta users 0..n take a
/// shuffled set of the same emails, in varying case.
fn arb_email_moves() -> impl Strategy<Value = World> {
    let pool: Vec<&'static str> = EMAILS[..8].to_vec();
    (2..7usize)
        .prop_flat_map(move |n| {
            (
                Just(n),
                Just(pool.clone()).prop_shuffle(),
                Just(pool.clone()).prop_shuffle(),
                prop::collection::vec(0..4u8, n + 2),
                prop::collection::vec(0..6u8, n),
            )
        })
        .prop_map(|(n, store_emails, okta_emails, store_kind, okta_kind)| {
            let users = (0..n + 2)
                .map(|i| {
                    let u = store_user(i as i64 + 1, store_emails[i]);
                    match store_kind[i] {
                        0 => u,
                        1 => u.managed(&format!("00u{i}")).inactive(),
                        _ => u.managed(&format!("00u{i}")),
                    }
                })
                .collect();
            let okta_users = (0..n)
                .map(|i| {
                    let email = if okta_kind[i] == 1 {
                        okta_emails[i].to_uppercase()
                    } else {
                        okta_emails[i].to_string()
                    };
                    let u = okta_user(&format!("00u{i}"), &email);
                    if okta_kind[i] == 0 {
                        u.status("SUSPENDED")
                    } else {
                        u
                    }
                })
                .collect();
            world().okta(okta_users).store(users)
        })
}

const EMAILS: [&str; 9] = [
    "a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com", "f@x.com", "g@x.com", "h@x.com", "bad",
];
const STATUSES: [&str; 8] = [
    "ACTIVE",
    "ACTIVE",
    "ACTIVE",
    "SUSPENDED",
    "STAGED",
    "DEPROVISIONED",
    "PROVISIONED",
    "LOCKED_OUT",
];
const NAMES: [Option<&str>; 3] = [None, Some("Ann"), Some(" Bob ")];
const ROLES: [Option<&str>; 5] = [
    None,
    Some("admin"),
    Some("Team_Member"),
    Some("TEAM ADMIN"),
    Some("boss"),
];
const GROUP_NAMES: [&str; 4] = ["Eng", "Sales", "Everyone", "eng"];
const TEAM_NAMES: [&str; 4] = ["Eng", "Sales", "Everyone", "Misc"];

fn arb_email() -> impl Strategy<Value = String> {
    (0..EMAILS.len(), 0..3u8).prop_map(|(i, case)| match case {
        0 => EMAILS[i].to_string(),
        1 => EMAILS[i].to_uppercase(),
        _ => format!(" {} ", EMAILS[i].replacen('a', "A", 1)),
    })
}

fn arb_okta_user() -> impl Strategy<Value = OktaUser> {
    (
        0..8usize,
        0..STATUSES.len(),
        prop::option::weighted(0.9, arb_email()),
        0..NAMES.len(),
        0..NAMES.len(),
        0..NAMES.len(),
        0..ROLES.len(),
    )
        .prop_map(|(id, status, email, first, last, display, role)| OktaUser {
            id: format!("00u{id}").into(),
            status: STATUSES[status].to_string().into(),
            email: email.map(Into::into),
            first_name: NAMES[first].map(str::to_string).map(Into::into),
            last_name: NAMES[last].map(str::to_string).map(Into::into),
            display_name: NAMES[display].map(str::to_string).map(Into::into),
            role: ROLES[role].map(str::to_string).map(Into::into),
        })
}

fn arb_group() -> impl Strategy<Value = OktaGroup> {
    (
        0..4usize,
        0..GROUP_NAMES.len(),
        prop::collection::vec(0..10usize, 0..10),
    )
        .prop_map(|(id, name, members)| OktaGroup {
            id: format!("00g{id}"),
            name: GROUP_NAMES[name].to_string(),
            member_ids: members
                .into_iter()
                .map(|m| format!("00u{m}").into())
                .collect(),
            kind: None,
        })
}

fn arb_store_user() -> impl Strategy<Value = StoreUser> {
    (
        arb_email(),
        prop::option::of(0..10usize),
        0..NAMES.len(),
        0..NAMES.len(),
        any::<bool>(),
    )
        .prop_map(|(email, okta, first, last, active)| {
            let first = NAMES[first].unwrap_or("").trim().to_string();
            let last = NAMES[last].unwrap_or("").trim().to_string();
            StoreUser {
                id: 0,
                email: email.trim().to_string().into(),
                okta_id: okta.map(|k| format!("00u{k}")).map(Into::into),
                display_name: format!("{first} {last}").trim().to_string().into(),
                first_name: first.into(),
                last_name: last.into(),
                active,
            }
        })
}

fn arb_world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec(arb_okta_user(), 0..8),
        prop::collection::vec(arb_group(), 0..4),
        prop::collection::vec(arb_store_user(), 0..10),
        prop::collection::vec((0..TEAM_NAMES.len(), prop::option::of(0..6usize)), 0..5),
        prop::collection::vec((0..6usize, 0..10usize, any::<bool>()), 0..30),
        0..3usize,
        any::<bool>(),
    )
        .prop_map(
            |(okta_users, groups, store_users, teams, ms, default, create)| {
                // The store's own unique constraints hold on the input.
                let mut emails = HashSet::new();
                let mut okta_ids = HashSet::new();
                let users: Vec<StoreUser> = store_users
                    .into_iter()
                    .filter(|u| {
                        emails.insert(email_key(&u.email).into_owned())
                            && u.okta_id
                                .as_ref()
                                .is_none_or(|k| okta_ids.insert(k.clone()))
                    })
                    .enumerate()
                    .map(|(i, u)| StoreUser {
                        id: i as i64 + 1,
                        ..u
                    })
                    .collect();
                let mut names = HashSet::new();
                let mut group_ids = HashSet::new();
                let teams: Vec<StoreTeam> = teams
                    .into_iter()
                    .filter(|(name, g)| {
                        names.insert(*name) && g.is_none_or(|g| group_ids.insert(g))
                    })
                    .enumerate()
                    .map(|(i, (name, g))| StoreTeam {
                        id: 100 + i as i64,
                        name: TEAM_NAMES[name].to_string(),
                        okta_group_id: g.map(|g| format!("00g{g}")),
                    })
                    .collect();
                let mut pairs = HashSet::new();
                let memberships = ms
                    .into_iter()
                    .filter_map(|(t, u, admin)| {
                        let team = teams.get(t)?;
                        let user = users.get(u)?;
                        pairs.insert((team.id, user.id)).then(|| {
                            member(
                                team.id,
                                user.id,
                                if admin { Role::Admin } else { Role::Member },
                            )
                        })
                    })
                    .collect();
                World {
                    okta: OktaState {
                        users: okta_users,
                        groups,
                        missing_group_names: Vec::new(),
                    },
                    store: StoreState {
                        users,
                        teams,
                        memberships,
                    },
                    policy: Policy {
                        default_team: [None, Some("Everyone"), Some("Nope")][default]
                            .map(str::to_string),
                        create_missing_teams: create,
                    },
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(768))]

    /// (1) convergence and (4) the store stays consistent.
    #[test]
    fn applying_the_plan_converges_and_keeps_the_store_consistent(w in arb_world()) {
        converges(&w)?;
    }

    /// The same, on worlds made of email moves: chains, swaps, rehires.
    #[test]
    fn email_moves_converge_and_keep_emails_unique(w in arb_email_moves()) {
        converges(&w)?;
    }

    /// After applying, the store says what SPEC §1 says: every active,
    /// not skipped in-scope user has one active Writer user with its
    /// attributes; other managed users are inactive (unless hands off);
    /// linked teams hold exactly the group's active, not skipped users.
    #[test]
    fn applied_store_matches_okta(w in arb_world()) {
        matches_okta(&w)?;
    }

    #[test]
    fn applied_store_matches_okta_after_email_moves(w in arb_email_moves()) {
        matches_okta(&w)?;
    }

    /// (2) unmanaged users and users of skipped Okta users are never
    /// changed; only linked teams lose members.
    #[test]
    fn unmanaged_and_skipped_users_are_hands_off(w in arb_world()) {
        let d = plan_detailed(&w.okta, &w.store, &w.policy);
        let in_scope: HashSet<&str> = w.okta.users.iter().map(|u| u.id.as_str()).collect();
        let linked_now: HashSet<i64> = d.plan.changes.iter().filter_map(|c| match c {
            Change::LinkUser { user_id, .. } => Some(*user_id),
            _ => None,
        }).collect();
        let pushed: HashSet<&str> = w.okta.groups.iter().map(|g| g.id.as_str()).collect();
        let team_linked_now: HashSet<i64> = d.plan.changes.iter().filter_map(|c| match c {
            Change::LinkTeam { team_id, .. } => Some(*team_id),
            _ => None,
        }).collect();
        for c in &d.plan.changes {
            let target = match c {
                Change::UpdateUser { user_id, .. }
                | Change::ReactivateUser { user_id, .. }
                | Change::DeactivateUser { user_id, .. }
                | Change::RemoveMembership { user_id, .. }
                | Change::ChangeRole { user_id, .. }
                | Change::AddMembership { user: UserRef::Existing(user_id), .. } => Some(*user_id),
                _ => None,
            };
            if let Some(id) = target {
                let u = w.store.users.iter().find(|u| u.id == id);
                prop_assert!(u.is_some(), "{:?}", c);
                let u = u.cloned().unwrap_or_else(|| store_user(0, ""));
                prop_assert!(u.okta_id.is_some() || linked_now.contains(&id), "unmanaged: {:?}", c);
                // A skipped Okta user's Writer user is only ever
                // deactivated (and so removed from linked teams), and
                // only when that Okta user is inactive.
                if let Some(k) = &u.okta_id
                    && d.skipped_okta_ids.contains(k.as_str())
                {
                    let inactive = w.okta.users.iter().any(|o| o.id == k && !is_active_status(&o.status));
                    let allowed = matches!(c, Change::DeactivateUser { .. } | Change::RemoveMembership { .. });
                    prop_assert!(inactive && allowed, "skipped: {:?}", c);
                }
            }
            if let Change::LinkUser { user_id, previous_okta_id, okta_id, .. } = c {
                prop_assert!(!d.skipped_okta_ids.contains(okta_id));
                let prev = previous_okta_id.as_deref();
                prop_assert!(prev.is_none_or(|k| !in_scope.contains(k)), "steals: {:?}", c);
                prop_assert!(w.store.users.iter().any(|u| u.id == *user_id && u.okta_id.as_deref() == prev));
            }
            if let Change::RemoveMembership { team_id, .. } = c {
                let t = w.store.teams.iter().find(|t| t.id == *team_id);
                let linked = t.is_some_and(|t| {
                    t.okta_group_id.as_deref().is_some_and(|g| pushed.contains(g))
                        || team_linked_now.contains(&t.id)
                });
                prop_assert!(linked, "removal outside a linked team: {:?}", c);
            }
        }
    }

    /// (3) the guard blocks every plan above max_deactivations.
    #[test]
    fn guard_blocks_every_plan_above_max_deactivations(
        w in arb_world(), max in 0..4u32, percent in 0.0..150.0f64, removals in 0..4u32,
    ) {
        let p = w.plan();
        let l = limits(max, percent, removals);
        let c = counts(&p);
        let reasons = guard(&p, &l);
        if c.users_deactivated > max as usize {
            prop_assert!(!reasons.is_empty());
        }
        if c.memberships_removed > removals as usize {
            prop_assert!(!reasons.is_empty());
        }
        if c.users_deactivated == 0 && c.memberships_removed <= removals as usize
            && (p.okta_users_in_scope > 0 || p.active_managed_users == 0) {
            prop_assert!(reasons.is_empty(), "{:?}", reasons);
        }
    }

    /// SPEC §2: a plan the guard lets through never exceeds any limit:
    /// not the count, not the percent (NaN and infinite percents
    /// included), not the removals, and never an empty Okta view over
    /// active managed users. Any plan shape, any limits.
    #[test]
    fn the_guard_never_lets_more_than_its_limits_through(
        deactivations in 0..300usize, removals in 0..700usize,
        extra_active in 0..3000usize, in_scope in 0..3usize,
        max in 0..400u32, max_removals in 0..800u32,
        percent in prop_oneof![
            0.0..=100.0f64,
            Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(-0.0f64),
        ],
    ) {
        // Deactivations only ever hit active managed users.
        let active = deactivations + extra_active;
        let p = plan_with(deactivations, removals, active, in_scope);
        let reasons = guard(&p, &limits(max, percent, max_removals));
        if reasons.is_empty() {
            prop_assert!(deactivations <= max as usize);
            prop_assert!(removals <= max_removals as usize);
            prop_assert!(deactivations == 0 || (deactivations as f64) * 100.0 <= percent * active as f64);
            prop_assert!(in_scope > 0 || active == 0);
        } else {
            // Blocked only for a reason that holds.
            let over_percent = deactivations > 0
                && !matches!(
                    ((deactivations as f64) * 100.0).partial_cmp(&(percent * active as f64)),
                    Some(Ordering::Less | Ordering::Equal)
                );
            prop_assert!(
                deactivations > max as usize
                    || removals > max_removals as usize
                    || over_percent
                    || (in_scope == 0 && active > 0),
                "{:?}", reasons
            );
        }
    }

    /// No deactivation outside the managed set: every deactivated
    /// Writer user is an active store user linked to exactly that Okta
    /// id, and no Okta id whose in-scope copies are all active-like is
    /// ever deactivated; the guard's denominator is never exceeded.
    #[test]
    fn deactivations_only_hit_managed_users_okta_no_longer_has_active(w in arb_world()) {
        let p = w.plan();
        let mut deactivated = HashSet::new();
        for c in &p.changes {
            if let Change::DeactivateUser { user_id, okta_id, .. } = c {
                let u = w.store.users.iter().find(|u| u.id == *user_id);
                prop_assert!(u.is_some_and(|u| u.active && u.okta_id.as_deref() == Some(okta_id.as_str())), "{:?}", c);
                let copies: Vec<&OktaUser> = w.okta.users.iter().filter(|o| o.id == okta_id).collect();
                prop_assert!(
                    copies.is_empty() || copies.iter().any(|o| !is_active_status(&o.status)),
                    "an active in-scope Okta user was deactivated: {:?}", c
                );
                prop_assert!(deactivated.insert(*user_id), "deactivated twice: {:?}", c);
            }
        }
        prop_assert!(deactivated.len() <= p.active_managed_users);
    }

    /// Rule 14: the plan does not depend on the order of the inputs.
    #[test]
    fn plan_is_independent_of_input_order(w in arb_world()) {
        let mut r = w.clone();
        r.okta.users.reverse();
        r.okta.groups.reverse();
        r.store.users.reverse();
        r.store.teams.reverse();
        r.store.memberships.reverse();
        prop_assert_eq!(w.plan(), r.plan());
    }
}

// -----------------------------------------------------------------------
// Scoped plans (SPEC §7).
// -----------------------------------------------------------------------

/// Widens `scope` the way an incremental run's observe does, with the whole
/// of `okta` standing in for Okta's answers: every Okta user holding an email
/// key that an observed user wants or whose Writer user holds, every Okta id
/// linked to a Writer user holding one, and every Okta user the last full
/// plan skipped for one of those emails (`hints`, which also say what an
/// observed user wanted before), until nothing is added.
fn widen(
    okta: &OktaState,
    store: &StoreState,
    hints: &[(String, String)],
    mut scope: BTreeSet<String>,
) -> BTreeSet<String> {
    loop {
        let keys = scope_email_keys(&okta.users, store, hints, &scope);
        let before = scope.len();
        scope.extend(ids_holding(&keys, store, hints));
        scope.extend(
            okta.users
                .iter()
                .filter(|u| okta_email_key(u).is_some_and(|k| keys.contains(&k)))
                .map(|u| u.id.to_string()),
        );
        if scope.len() == before {
            return scope;
        }
    }
}

/// What an incremental run reads for `scope`: those users (when assigned),
/// and every pushed group with only them as members.
fn partial_view(okta: &OktaState, scope: &BTreeSet<String>) -> OktaState {
    OktaState {
        users: okta
            .users
            .iter()
            .filter(|u| scope.contains(u.id.as_str()))
            .cloned()
            .collect(),
        groups: okta
            .groups
            .iter()
            .map(|g| OktaGroup {
                member_ids: g
                    .member_ids
                    .iter()
                    .filter(|m| scope.contains(&***m))
                    .cloned()
                    .collect(),
                ..g.clone()
            })
            .collect(),
        missing_group_names: Vec::new(),
    }
}

/// A store that follows Okta (a random world, planned and applied), then
/// Okta changes for a few users only (status, email, names, role, assignment,
/// group memberships): the world after the change, the ids events would
/// name, and the skips of the full plan the store followed.
fn arb_scoped_change() -> impl Strategy<Value = (World, BTreeSet<String>, Vec<(String, String)>)> {
    let edit = (0..10usize, 0..6u8, arb_okta_user(), any::<u8>());
    (arb_world(), prop::collection::vec(edit, 1..4)).prop_filter_map(
        "a store that follows Okta",
        |(w, edits)| {
            let store = apply(&w.store, &w.plan()).ok()?;
            let hints = plan_detailed(&w.okta, &store, &w.policy).plan.email_skips;
            let mut okta = w.okta.clone();
            let mut changed = BTreeSet::new();
            for (n, what, fresh, groups) in edits {
                let id = format!("00u{n}");
                changed.insert(id.clone());
                match what {
                    // Unassigned (or deleted).
                    0 => okta.users.retain(|u| u.id != id),
                    // Only its group memberships change.
                    1 => {}
                    // A new state of the user (or a new assignment).
                    _ => {
                        okta.users.retain(|u| u.id != id);
                        okta.users.push(OktaUser {
                            id: id.clone().into(),
                            ..fresh
                        });
                    }
                }
                for (k, g) in okta.groups.iter_mut().enumerate() {
                    g.member_ids.retain(|m| **m != *id);
                    if groups & (1 << k) != 0 {
                        g.member_ids.push(id.as_str().into());
                    }
                }
            }
            Some((
                World {
                    okta,
                    store,
                    policy: w.policy,
                },
                changed,
                hints,
            ))
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// SPEC §7: "plan over a subset" is a property of the one planner. When
    /// only some users changed in Okta since the store followed it, a plan
    /// over exactly those users (widened by shared emails, as the
    /// incremental observe does) plans the same changes as the full plan,
    /// and skips the same users among them.
    #[test]
    fn a_scoped_plan_equals_the_full_plan_when_only_its_users_changed(
        (w, changed, hints) in arb_scoped_change()
    ) {
        let scope = widen(&w.okta, &w.store, &hints, changed);
        let full = plan_detailed(&w.okta, &w.store, &w.policy);
        let scoped = plan_in(&partial_view(&w.okta, &scope), &w.store, &w.policy, &Scope::Users(scope.clone()));
        prop_assert_eq!(&scoped.plan.changes, &full.plan.changes, "scope {:?}", scope);
        let full_skips: BTreeSet<String> = full.skipped_okta_ids.iter().filter(|k| scope.contains(*k)).cloned().collect();
        prop_assert_eq!(&scoped.skipped_okta_ids, &full_skips);
        prop_assert!(scoped.plan.scoped && !full.plan.scoped);
    }

    /// A scoped plan never touches a Writer user linked to an Okta id it did
    /// not read, whatever Okta says about that id.
    #[test]
    fn a_scoped_plan_leaves_unobserved_users_alone(
        w in arb_world(), mask in any::<u16>()
    ) {
        let scope: BTreeSet<String> = (0..10).filter(|n| mask & (1 << n) != 0).map(|n| format!("00u{n}")).collect();
        let p = plan_scoped(&partial_view(&w.okta, &scope), &w.store, &w.policy, &Scope::Users(scope.clone()));
        let unobserved: HashSet<i64> = w.store.users.iter()
            .filter(|u| u.okta_id.as_deref().is_some_and(|k| !scope.contains(k)))
            .map(|u| u.id)
            .collect();
        for c in &p.changes {
            let touched = match c {
                Change::LinkUser { user_id, .. } | Change::UpdateUser { user_id, .. }
                | Change::ReactivateUser { user_id, .. } | Change::DeactivateUser { user_id, .. }
                | Change::RemoveMembership { user_id, .. } | Change::ChangeRole { user_id, .. } => Some(*user_id),
                Change::AddMembership { user: UserRef::Existing(id), .. } => Some(*id),
                _ => None,
            };
            prop_assert!(touched.is_none_or(|id| !unobserved.contains(&id)), "{:?}", c);
        }
        // And the guard's empty-view check is for full views only.
        let reasons = guard(&p, &limits(u32::MAX, 100.0, u32::MAX));
        prop_assert!(!reasons.iter().any(|r| r.contains("zero in-scope users")), "{:?}", reasons);
    }
}

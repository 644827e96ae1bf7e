//! The order and transaction boundaries in which a plan is applied.
//!
//! Invariant: a user created by the sync and the memberships it gets with
//! its creation (the default team, SPEC §1: "once, at creation", and its
//! linked teams) commit in one transaction. The default-team membership is
//! planned only when the user is created, so a crash between the creation
//! and that membership would lose it for good: the next run sees an
//! existing managed user and plans no default-team membership. Found by the
//! crash harness (`examples/reliability.rs crash`).
//!
//! [`group_new_users`] moves every `AddMembership` of a new user right after
//! its `CreateUser` (everything else keeps the planner's order; the moved
//! memberships only depend on teams created or linked before any user), and
//! [`batches`] never ends a transaction between them.

use std::collections::HashMap;
use std::ops::Range;

use crate::model::{Change, UserRef};

/// The plan's changes in apply order: each new user's memberships follow
/// its creation. Stable otherwise.
pub fn group_new_users(changes: Vec<Change>) -> Vec<Change> {
    let mut of_new_user: HashMap<String, Vec<Change>> = HashMap::new();
    let mut rest = Vec::with_capacity(changes.len());
    for change in changes {
        match &change {
            Change::AddMembership {
                user: UserRef::New { okta_id },
                ..
            } => of_new_user.entry(okta_id.clone()).or_default().push(change),
            _ => rest.push(change),
        }
    }
    if of_new_user.is_empty() {
        return rest;
    }
    let mut out =
        Vec::with_capacity(rest.len() + of_new_user.values().map(Vec::len).sum::<usize>());
    for change in rest {
        let created = match &change {
            Change::CreateUser { okta_id, .. } => of_new_user.remove(okta_id),
            _ => None,
        };
        out.push(change);
        out.extend(created.into_iter().flatten());
    }
    // A membership of a user the plan does not create (a planner bug) stays
    // at the end, where apply reports it as dangling.
    let mut orphans: Vec<Change> = of_new_user.into_values().flatten().collect();
    orphans.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    out.extend(orphans);
    out
}

/// Transaction boundaries: ranges of at most `max` changes, extended past
/// `max` only to keep a `CreateUser` with the new-user memberships right
/// after it (at most one per team).
pub fn batches(changes: &[Change], max: usize) -> Vec<Range<usize>> {
    let max = max.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < changes.len() {
        let mut end = (start + max).min(changes.len());
        while end < changes.len()
            && matches!(
                changes[end],
                Change::AddMembership {
                    user: UserRef::New { .. },
                    ..
                }
            )
        {
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Role, TeamRef, UserAttrs};

    fn create(id: &str) -> Change {
        Change::CreateUser {
            okta_id: id.into(),
            attrs: UserAttrs {
                email: format!("{id}@x.example"),
                first_name: String::new(),
                last_name: String::new(),
                display_name: String::new(),
            },
        }
    }

    fn add(id: &str, team: &str) -> Change {
        Change::AddMembership {
            team: TeamRef::New { name: team.into() },
            team_name: team.into(),
            user: UserRef::New { okta_id: id.into() },
            email: format!("{id}@x.example"),
            role: Role::Member,
        }
    }

    fn add_existing(user: i64, team: &str) -> Change {
        Change::AddMembership {
            team: TeamRef::Existing(1),
            team_name: team.into(),
            user: UserRef::Existing(user),
            email: format!("{user}@x.example"),
            role: Role::Member,
        }
    }

    fn reactivate(user: i64) -> Change {
        Change::ReactivateUser {
            user_id: user,
            okta_id: format!("o{user}"),
            email: format!("{user}@x.example"),
        }
    }

    #[test]
    fn new_users_memberships_follow_their_creation_and_the_rest_keeps_its_order() {
        let plan = vec![
            create("a"),
            create("b"),
            reactivate(7),
            add("a", "Eng"),
            add_existing(7, "Eng"),
            add("b", "Eng"),
            add("a", "Everyone"),
        ];
        let ordered = group_new_users(plan.clone());
        assert_eq!(
            ordered,
            vec![
                create("a"),
                add("a", "Eng"),
                add("a", "Everyone"),
                create("b"),
                add("b", "Eng"),
                reactivate(7),
                add_existing(7, "Eng"),
            ]
        );
        // Same changes, nothing lost or added.
        let mut a: Vec<String> = plan.iter().map(|c| format!("{c:?}")).collect();
        let mut b: Vec<String> = ordered.iter().map(|c| format!("{c:?}")).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn batches_never_split_a_creation_from_its_memberships() {
        let changes = group_new_users(vec![
            create("a"),
            create("b"),
            create("c"),
            add("a", "T1"),
            add("a", "T2"),
            add("b", "T1"),
            add("c", "T1"),
        ]);
        // [a, a@T1, a@T2, b, b@T1, c, c@T1]
        assert_eq!(batches(&changes, 1), vec![0..3, 3..5, 5..7]);
        assert_eq!(batches(&changes, 2), vec![0..3, 3..5, 5..7]);
        assert_eq!(batches(&changes, 4), vec![0..5, 5..7]);
        assert_eq!(batches(&changes, 100), vec![0..7]);
        assert_eq!(batches(&[], 5), Vec::<Range<usize>>::new());
        let plain: Vec<Change> = (0..5).map(reactivate).collect();
        assert_eq!(batches(&plain, 2), vec![0..2, 2..4, 4..5]);
    }
}

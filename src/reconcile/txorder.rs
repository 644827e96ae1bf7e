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
//! [`group_new_users`] cuts the run of `CreateUser`s into chunks of
//! [`NEW_USER_CHUNK`] and moves every `AddMembership` of a new user right
//! after its chunk (in the planner's order). Everything else keeps the
//! planner's order; the moved memberships only depend on teams created or
//! linked before any user. Chunks give `apply` long runs of one kind
//! (creations, then memberships), which it writes with multi-row statements.
//! [`batches`] only ends a transaction where no user created before the cut
//! has a new-user membership after it, so a chunk is never split.

use std::collections::HashMap;
use std::ops::Range;

use crate::model::{Change, UserRef};

/// New users per chunk of the apply order: a chunk (its creations and their
/// memberships, about 2.5 changes per user) is the smallest unit a
/// transaction can end after, so it stays well below `apply::BATCH`.
pub const NEW_USER_CHUNK: usize = 64;

/// The plan's changes in apply order: new users in chunks of
/// [`NEW_USER_CHUNK`] consecutive creations, each chunk followed by those
/// users' memberships. Stable otherwise.
pub fn group_new_users(changes: Vec<Change>) -> Vec<Change> {
    group_new_users_in_chunks(changes, NEW_USER_CHUNK)
}

/// [`group_new_users`] with chunks of `chunk` users (at least 1).
pub fn group_new_users_in_chunks(mut changes: Vec<Change>, chunk: usize) -> Vec<Change> {
    let chunk = chunk.max(1);
    // Which chunk each creation falls in: runs of consecutive creations
    // (new-user memberships aside, they move anyway) cut every `chunk`.
    let mut chunk_at: Vec<Option<usize>> = vec![None; changes.len()];
    let mut chunk_of: HashMap<&str, usize> = HashMap::new();
    let mut chunks = 0;
    let mut in_chunk = 0;
    for (i, change) in changes.iter().enumerate() {
        match change {
            Change::AddMembership {
                user: UserRef::New { .. },
                ..
            } => {}
            Change::CreateUser { okta_id, .. } => {
                if in_chunk == 0 || in_chunk == chunk {
                    chunks += 1;
                    in_chunk = 0;
                }
                in_chunk += 1;
                chunk_at[i] = Some(chunks - 1);
                chunk_of.entry(&**okta_id).or_insert(chunks - 1);
            }
            _ => in_chunk = 0,
        }
    }
    if chunks == 0 {
        return changes;
    }
    // Each new-user membership goes to the chunk of its user's creation.
    let member_chunk: Vec<Option<usize>> = changes
        .iter()
        .map(|change| match change {
            Change::AddMembership {
                user: UserRef::New { okta_id },
                ..
            } => chunk_of.get(&**okta_id).copied(),
            _ => None,
        })
        .collect();
    // The new order as indices, then the changes moved into it in place:
    // the plan's changes are never held twice.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); chunks];
    let mut orphans = Vec::new();
    let mut rest = Vec::with_capacity(changes.len());
    for (i, change) in changes.iter().enumerate() {
        match (change, member_chunk[i]) {
            (_, Some(c)) => members[c].push(i),
            (
                Change::AddMembership {
                    user: UserRef::New { .. },
                    ..
                },
                None,
            ) => orphans.push(i),
            _ => rest.push(i),
        }
    }
    drop(member_chunk);
    // The chunk whose creations are being placed; its memberships follow
    // its last creation.
    let mut open: Option<usize> = None;
    let mut order = Vec::with_capacity(changes.len());
    for i in rest {
        let this = chunk_at[i];
        if let Some(c) = open
            && this != Some(c)
        {
            order.append(&mut members[c]);
        }
        open = this;
        order.push(i);
    }
    if let Some(c) = open {
        order.append(&mut members[c]);
    }
    // A membership of a user the plan does not create (a planner bug) stays
    // at the end, where apply reports it as dangling.
    orphans.sort_by(|&a, &b| format!("{:?}", changes[a]).cmp(&format!("{:?}", changes[b])));
    order.extend(orphans);
    permute(&mut changes, &order);
    changes
}

/// Reorders `items` in place so that `items[k]` becomes the former
/// `items[order[k]]`; `order` is a permutation of `0..items.len()`. Each
/// cycle of the permutation is followed once with swaps.
fn permute<T>(items: &mut [T], order: &[usize]) {
    assert_eq!(
        items.len(),
        order.len(),
        "the new order places every change"
    );
    let mut placed = vec![false; items.len()];
    for start in 0..items.len() {
        // The element first at `start` sits at `hole` until its place.
        let mut hole = start;
        while !placed[hole] {
            placed[hole] = true;
            let from = order[hole];
            if from == start {
                break;
            }
            items.swap(hole, from);
            hole = from;
        }
    }
}

/// Transaction boundaries: ranges of `max` changes (at least 1), each
/// extended past `max` only as far as the next allowed cut. A cut before
/// index `i` is allowed unless a user created before `i` has a new-user
/// membership at `i` or later (one O(n) scan of how far creations reach).
pub fn batches(changes: &[Change], max: usize) -> Vec<Range<usize>> {
    let max = max.max(1);
    let allowed = allowed_cuts(changes);
    let mut out = Vec::new();
    let mut start = 0;
    while start < changes.len() {
        let mut end = (start + max).min(changes.len());
        while !allowed[end] {
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// `allowed[i]` (for `i` in `0..=len`): whether a transaction may end
/// before index `i`. Always true at 0 and at the end.
fn allowed_cuts(changes: &[Change]) -> Vec<bool> {
    // Where each user is created, and how far each creation reaches: the
    // index of the last membership of that user placed after it.
    let mut created_at: HashMap<&str, usize> = HashMap::new();
    let mut reach: Vec<usize> = (0..changes.len()).collect();
    for (i, change) in changes.iter().enumerate() {
        match change {
            Change::CreateUser { okta_id, .. } => {
                created_at.entry(&**okta_id).or_insert(i);
            }
            Change::AddMembership {
                user: UserRef::New { okta_id },
                ..
            } => {
                if let Some(&c) = created_at.get(&**okta_id) {
                    reach[c] = reach[c].max(i);
                }
            }
            _ => {}
        }
    }
    let mut allowed = vec![true; changes.len() + 1];
    let mut furthest = 0;
    for i in 1..changes.len() {
        furthest = furthest.max(reach[i - 1]);
        allowed[i] = furthest < i;
    }
    allowed
}

#[cfg(test)]
pub(super) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::{Role, TeamRef, UserAttrs};

    proptest! {
        /// `permute` moves every element to its place in the new order,
        /// whatever the permutation's cycles.
        #[test]
        fn permute_places_each_element_where_the_order_says(
            order in (0usize..200).prop_flat_map(|n| Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        ) {
            let mut items: Vec<String> = (0..order.len()).map(|i| format!("c{i}")).collect();
            let expected: Vec<String> = order.iter().map(|&i| items[i].clone()).collect();
            permute(&mut items, &order);
            prop_assert_eq!(items, expected);
        }
    }

    /// A new user `id` (also used by apply's tests).
    pub(in crate::reconcile) fn create(id: &str) -> Change {
        Change::CreateUser {
            okta_id: id.into(),
            attrs: Box::new(UserAttrs {
                email: format!("{id}@x.example").into(),
                first_name: String::new().into(),
                last_name: String::new().into(),
                display_name: String::new().into(),
            }),
        }
    }

    fn add(id: &str, team: &str) -> Change {
        Change::AddMembership {
            team: TeamRef::New { name: team.into() },
            team_name: team.into(),
            user: UserRef::New { okta_id: id.into() },
            email: format!("{id}@x.example").into(),
            role: Role::Member,
        }
    }

    fn add_existing(user: i64, team: &str) -> Change {
        Change::AddMembership {
            team: TeamRef::Existing(1),
            team_name: team.into(),
            user: UserRef::Existing(user),
            email: format!("{user}@x.example").into(),
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
        let ordered = group_new_users_in_chunks(plan.clone(), 1);
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
        assert_same_changes(&plan, &ordered);
        // In one chunk: both creations, then their memberships in plan order.
        let chunked = group_new_users(plan.clone());
        assert_eq!(
            chunked,
            vec![
                create("a"),
                create("b"),
                add("a", "Eng"),
                add("b", "Eng"),
                add("a", "Everyone"),
                reactivate(7),
                add_existing(7, "Eng"),
            ]
        );
        assert_same_changes(&plan, &chunked);
    }

    #[test]
    fn creations_are_cut_into_chunks_each_followed_by_its_memberships() {
        let plan = vec![
            create("a"),
            create("b"),
            create("c"),
            reactivate(7),
            create("d"),
            add("a", "Eng"),
            add("c", "Eng"),
            add("d", "Eng"),
            add("a", "Everyone"),
            add("b", "Everyone"),
            add("c", "Everyone"),
            add("zz", "Eng"),
        ];
        let ordered = group_new_users_in_chunks(plan.clone(), 2);
        assert_eq!(
            ordered,
            vec![
                create("a"),
                create("b"),
                add("a", "Eng"),
                add("a", "Everyone"),
                add("b", "Everyone"),
                create("c"),
                add("c", "Eng"),
                add("c", "Everyone"),
                reactivate(7),
                create("d"),
                add("d", "Eng"),
                // A membership of a user the plan does not create: last.
                add("zz", "Eng"),
            ]
        );
        assert_same_changes(&plan, &ordered);
        // [a b a@ a@ b@ | c c@ c@ | r7 | d d@ | zz@]
        assert_eq!(batches(&ordered, 1), vec![0..5, 5..8, 8..9, 9..11, 11..12]);
        assert_eq!(batches(&ordered, 6), vec![0..8, 8..12]);
        assert_eq!(batches(&ordered, 9), vec![0..9, 9..12]);
    }

    fn assert_same_changes(a: &[Change], b: &[Change]) {
        let mut a: Vec<String> = a.iter().map(|c| format!("{c:?}")).collect();
        let mut b: Vec<String> = b.iter().map(|c| format!("{c:?}")).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn batches_never_split_a_creation_from_its_memberships() {
        let changes = group_new_users_in_chunks(
            vec![
                create("a"),
                create("b"),
                create("c"),
                add("a", "T1"),
                add("a", "T2"),
                add("b", "T1"),
                add("c", "T1"),
            ],
            1,
        );
        // [a, a@T1, a@T2, b, b@T1, c, c@T1]
        assert_eq!(batches(&changes, 1), vec![0..3, 3..5, 5..7]);
        assert_eq!(batches(&changes, 2), vec![0..3, 3..5, 5..7]);
        assert_eq!(batches(&changes, 4), vec![0..5, 5..7]);
        assert_eq!(batches(&changes, 100), vec![0..7]);
        assert_eq!(batches(&[], 5), Vec::<Range<usize>>::new());
        let plain: Vec<Change> = (0..5).map(reactivate).collect();
        assert_eq!(batches(&plain, 2), vec![0..2, 2..4, 4..5]);
        // Chunked: [a, b, c, a@T1, a@T2, b@T1, c@T1] is one unit.
        let chunked = group_new_users_in_chunks(changes, 3);
        assert_eq!(batches(&chunked, 1), vec![0..7]);
    }

    fn arb_plan() -> impl Strategy<Value = Vec<Change>> {
        // A plan in the planner's shape: teams and other changes, a run of
        // creations, reactivations, memberships of new and existing users
        // (team-major), more changes; sizes and interleaving random.
        (
            0usize..6,
            0usize..40,
            prop::collection::vec(0u8..4, 0..40),
            prop::collection::vec(0usize..3, 0..10),
            0usize..6,
        )
            .prop_map(|(before, users, teams_per_user, existing, after)| {
                let mut plan: Vec<Change> = (0..before as i64).map(reactivate).collect();
                plan.extend((0..users).map(|u| create(&format!("u{u}"))));
                plan.extend((100..100 + after as i64).map(reactivate));
                for team in ["Eng", "Everyone", "Ops", "Sales"] {
                    for (u, &k) in teams_per_user.iter().enumerate().take(users) {
                        let wanted = ["Everyone", "Eng", "Ops", "Sales"]
                            .iter()
                            .take(k as usize)
                            .any(|t| *t == team);
                        if wanted {
                            plan.push(add(&format!("u{u}"), team));
                        }
                    }
                    for &e in &existing {
                        plan.push(add_existing(e as i64, team));
                    }
                }
                plan.push(reactivate(1000));
                plan
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// For any plan, chunk size and batch size: the order is a
        /// permutation that keeps everything but new-user memberships in
        /// place, and every new user's memberships commit in the
        /// transaction of its creation.
        #[test]
        fn every_creation_commits_with_its_memberships(
            plan in arb_plan(),
            chunk in 1usize..12,
            max in 1usize..30,
        ) {
            let ordered = group_new_users_in_chunks(plan.clone(), chunk);
            let key = |c: &Change| format!("{c:?}");
            let mut a: Vec<String> = plan.iter().map(key).collect();
            let mut b: Vec<String> = ordered.iter().map(key).collect();
            a.sort();
            b.sort();
            prop_assert_eq!(a, b);
            let is_new_member = |c: &Change| matches!(
                c,
                Change::AddMembership { user: UserRef::New { .. }, .. }
            );
            let fixed_before: Vec<&Change> = plan.iter().filter(|c| !is_new_member(c)).collect();
            let fixed_after: Vec<&Change> = ordered.iter().filter(|c| !is_new_member(c)).collect();
            prop_assert_eq!(fixed_before, fixed_after);

            let ranges = batches(&ordered, max);
            // A partition of the changes, each batch cut at `max` or at the
            // first allowed cut after it.
            let mut next = 0;
            for r in &ranges {
                prop_assert_eq!(r.start, next);
                prop_assert!(r.end > r.start);
                next = r.end;
            }
            prop_assert_eq!(next, ordered.len());
            let batch_of = |i: usize| ranges.iter().position(|r| r.contains(&i)).unwrap();
            let mut created: HashMap<&str, usize> = HashMap::new();
            for (i, change) in ordered.iter().enumerate() {
                match change {
                    Change::CreateUser { okta_id, .. } => {
                        created.insert(okta_id, i);
                    }
                    Change::AddMembership { user: UserRef::New { okta_id }, .. } => {
                        let c = created.get(&**okta_id).copied();
                        prop_assert!(c.is_some(), "membership before its creation at {}", i);
                        prop_assert_eq!(batch_of(c.unwrap_or(0)), batch_of(i));
                    }
                    _ => {}
                }
            }
            // No batch is longer than needed: every cut inside
            // `start + max .. end` would split a creation from a membership.
            for r in &ranges {
                for cut in (r.start + max)..r.end {
                    let splits = ordered[..cut].iter().any(|c| match c {
                        Change::CreateUser { okta_id, .. } => ordered[cut..].iter().any(|m| matches!(
                            m,
                            Change::AddMembership { user: UserRef::New { okta_id: o }, .. } if **o == **okta_id
                        )),
                        _ => false,
                    });
                    prop_assert!(splits, "batch {:?} could end at {}", r, cut);
                }
            }
        }
    }
}

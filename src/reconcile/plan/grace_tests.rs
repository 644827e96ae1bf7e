//! Table tests of rule 6a, the deactivation grace (SPEC §8
//! `safety.deactivate_after`), with the builders of `tests.rs`.

use super::tests::*;
use super::*;
use crate::model::{DeactivationReason, MissingUpdate, PendingDeactivation, Role};
use crate::reconcile::plan::scope::Scope;

const HOUR: i64 = 3_600_000;
const NOW: i64 = 1_800_000_000_000;

fn grace(after_ms: i64, missing: &[(&str, i64)]) -> Grace {
    Grace {
        after_ms,
        now_ms: NOW,
        missing_since: missing.iter().map(|(id, t)| (id.to_string(), *t)).collect(),
    }
}

/// Alice (00u1) stays assigned; Bob (00u2) left the app; both in Eng.
fn bob_left() -> World {
    world()
        .okta(vec![okta_user("00u1", "a@x.com")])
        .groups(vec![group("00g1", "Eng", &["00u1"])])
        .store(vec![
            store_user(1, "a@x.com").managed("00u1"),
            store_user(2, "b@x.com").managed("00u2"),
        ])
        .teams(vec![linked_team(10, "Eng", "00g1")])
        .memberships(vec![
            member(10, 1, Role::Member),
            member(10, 2, Role::Member),
        ])
}

fn plan_at(w: &World, grace: &Grace) -> Plan {
    plan_with_grace(&w.okta, &w.store, &w.policy, &Scope::Full, grace)
}

#[test]
fn rule_6a_a_user_newly_out_of_scope_waits_and_keeps_its_memberships() {
    let p = plan_at(&bob_left(), &grace(4 * HOUR, &[]));
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(
        p.pending_deactivations,
        [PendingDeactivation {
            user_id: 2,
            okta_id: "00u2".into(),
            email: "b@x.com".into(),
            missing_since: NOW,
            deactivate_at: NOW + 4 * HOUR,
        }]
    );
    assert_eq!(
        p.missing,
        MissingUpdate {
            start: vec![("00u2".into(), NOW)],
            clear: vec![],
        }
    );
    assert_eq!(
        findings_with(
            &p,
            Severity::Warning,
            &["b@x.com", "00u2", "deactivate_after"]
        ),
        1
    );
}

#[test]
fn rule_6a_a_user_still_within_the_grace_keeps_its_recorded_start() {
    let p = plan_at(&bob_left(), &grace(4 * HOUR, &[("00u2", NOW - 3 * HOUR)]));
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(p.pending_deactivations[0].missing_since, NOW - 3 * HOUR);
    assert_eq!(p.pending_deactivations[0].deactivate_at, NOW + HOUR);
    assert_eq!(p.missing, MissingUpdate::default(), "nothing new to record");
}

#[test]
fn rule_6a_a_user_missing_past_the_grace_is_deactivated_as_without_one() {
    let w = bob_left();
    let p = plan_at(&w, &grace(4 * HOUR, &[("00u2", NOW - 4 * HOUR)]));
    assert_eq!(p.changes, w.plan().changes);
    assert_eq!(
        p.changes,
        [
            remove(10, "Eng", 2, "b@x.com", Role::Member),
            deactivate(2, "00u2", "b@x.com", DeactivationReason::NotInScope),
        ]
    );
    assert!(p.pending_deactivations.is_empty());
    assert_eq!(p.missing.clear, ["00u2"]);
}

#[test]
fn rule_6a_explicitly_inactive_users_are_deactivated_at_once() {
    for status in ["SUSPENDED", "DEPROVISIONED"] {
        let w = world()
            .okta(vec![okta_user("00u1", "a@x.com").status(status)])
            .store(vec![store_user(1, "a@x.com").managed("00u1")]);
        let p = plan_at(&w, &grace(4 * HOUR, &[]));
        assert_eq!(
            p.changes,
            [deactivate(
                1,
                "00u1",
                "a@x.com",
                DeactivationReason::Inactive
            )],
            "{status}"
        );
        assert!(p.pending_deactivations.is_empty());
    }
}

#[test]
fn rule_6a_a_user_back_in_scope_is_forgotten() {
    let w = world()
        .okta(vec![okta_user("00u1", "a@x.com")])
        .store(vec![store_user(1, "a@x.com").managed("00u1")]);
    let p = plan_at(&w, &grace(4 * HOUR, &[("00u1", NOW - HOUR)]));
    assert!(p.changes.is_empty());
    assert_eq!(p.missing.clear, ["00u1"]);
}

#[test]
fn rule_6a_an_inactive_writer_user_does_not_wait() {
    let w = world().store(vec![store_user(1, "a@x.com").managed("00u1").inactive()]);
    let p = plan_at(&w, &grace(4 * HOUR, &[("00u1", NOW - HOUR)]));
    assert!(p.changes.is_empty());
    assert!(p.pending_deactivations.is_empty());
    assert_eq!(p.missing.clear, ["00u1"]);
}

#[test]
fn rule_6a_without_a_grace_the_plan_is_exactly_the_plain_plan() {
    let w = bob_left();
    let p = plan_at(&w, &grace(0, &[("00u2", NOW)]));
    assert_eq!(p, w.plan());
    assert!(p.missing.is_empty());
}

#[test]
fn rule_6a_a_scoped_plan_waits_too_and_leaves_unobserved_records() {
    let w = world().store(vec![
        store_user(1, "a@x.com").managed("00u1"),
        store_user(2, "b@x.com").managed("00u2"),
    ]);
    let g = grace(4 * HOUR, &[("00u2", NOW - 5 * HOUR)]);
    let p = plan_with_grace(
        &w.okta,
        &w.store,
        &w.policy,
        &Scope::Users(["00u1".to_string()].into()),
        &g,
    );
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(p.missing.start, [("00u1".to_string(), NOW)]);
    assert!(p.missing.clear.is_empty(), "00u2 was not read again");
    // Read again past its grace: deactivated.
    let p = plan_with_grace(
        &w.okta,
        &w.store,
        &w.policy,
        &Scope::Users(["00u2".to_string()].into()),
        &g,
    );
    assert_eq!(
        p.changes,
        [deactivate(
            2,
            "00u2",
            "b@x.com",
            DeactivationReason::NotInScope
        )]
    );
}

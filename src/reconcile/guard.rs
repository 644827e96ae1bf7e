//! The safety guard of SPEC §2: the reasons a plan is blocked (too many
//! deactivations, absolute or as a share of the active managed users; an
//! empty Okta view over active managed users; too many membership removals).
//!
//! Between two full reconciles, incremental runs (SPEC §7) apply small plans
//! one after another; the limits hold for all of them together, and for the
//! full reconcile that ends the stretch ([`SinceFull`]), so a mass
//! deactivation that trickles in one user per poll blocks like one that
//! arrives in a single plan.
//!
//! Invariant: pure; it only reads the plan's counts, what was applied since
//! the last full reconcile and the configured limits, and fails closed (a
//! percent limit that is not a number blocks any deactivation).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::model::{Counts, Plan, SafetyLimits};

/// What incremental runs applied since the last full reconcile that applied
/// (kept with the System Log cursor; a full reconcile that applies starts
/// again from zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinceFull {
    pub deactivations: u64,
    pub removals: u64,
}

impl SinceFull {
    /// These counts with a plan's applied on top.
    pub fn plus(self, plan: &Plan) -> SinceFull {
        let c = Counts::of_plan(plan);
        SinceFull {
            deactivations: self.deactivations + c.users_deactivated as u64,
            removals: self.removals + c.memberships_removed as u64,
        }
    }
}

/// Reasons the safety guard blocks this plan (empty = may apply). SPEC §2:
/// too many deactivations (absolute or percent of active managed users), an
/// empty Okta view while the store has active managed users, or too many
/// membership removals. A percent limit that is not a number blocks any
/// deactivation (fail closed).
pub fn guard(plan: &Plan, limits: &SafetyLimits) -> Vec<String> {
    guard_since_full(plan, limits, SinceFull::default())
}

/// [`guard`] over this plan and what incremental runs applied before it
/// since the last full reconcile: the limits bound the sum. The percent is
/// of the active managed users before those deactivations.
pub fn guard_since_full(plan: &Plan, limits: &SafetyLimits, before: SinceFull) -> Vec<String> {
    let c = Counts::of_plan(plan);
    let mut reasons = Vec::new();
    let planned = c.users_deactivated as u64;
    let deactivations = planned + before.deactivations;
    // With earlier incremental runs the reason says what they applied:
    // "plan deactivates 2 users (7 with the 5 that incremental runs applied
    // since the last full reconcile)".
    let earlier = |n: u64, total: u64| {
        if n == 0 {
            String::new()
        } else {
            format!(
                " ({total} with the {n} that incremental runs applied since the last full reconcile)"
            )
        }
    };
    // A plan that deactivates nothing is never blocked for what came before.
    if planned > 0 && deactivations > u64::from(limits.max_deactivations) {
        reasons.push(format!(
            "plan deactivates {planned} users{}, more than safety.max_deactivations = {}",
            earlier(before.deactivations, deactivations),
            limits.max_deactivations
        ));
    }
    let active = plan.active_managed_users as u64 + before.deactivations;
    if active > 0 && planned > 0 {
        let share = deactivations as f64 * 100.0;
        let allowed = limits.max_deactivations_percent * active as f64;
        if !matches!(
            share.partial_cmp(&allowed),
            Some(Ordering::Less | Ordering::Equal)
        ) {
            let of = if before.deactivations == 0 {
                format!("plan deactivates {planned} of {active} active managed users")
            } else {
                format!(
                    "plan deactivates {planned} users and incremental runs since the last full \
                     reconcile deactivated {}: {deactivations} of {active} active managed users",
                    before.deactivations
                )
            };
            reasons.push(format!(
                "{of} ({:.1}%), more than safety.max_deactivations_percent = {}%",
                share / active as f64,
                limits.max_deactivations_percent
            ));
        }
    }
    // Only a full view can be empty: a scoped plan sees the users events
    // named, possibly none of them still assigned.
    if !plan.scoped && plan.okta_users_in_scope == 0 && plan.active_managed_users > 0 {
        reasons.push(format!(
            "Okta returned zero in-scope users while the store has {} active managed users",
            plan.active_managed_users
        ));
    }
    let planned = c.memberships_removed as u64;
    let removals = planned + before.removals;
    if planned > 0 && removals > u64::from(limits.max_membership_removals) {
        reasons.push(format!(
            "plan removes {planned} team memberships{}, more than \
             safety.max_membership_removals = {}",
            earlier(before.removals, removals),
            limits.max_membership_removals
        ));
    }
    reasons
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{DeactivationReason, Role};
    use crate::reconcile::plan::tests::{deactivate, remove};

    // -----------------------------------------------------------------------
    // Rule 16: the guard.
    // -----------------------------------------------------------------------

    pub(crate) fn limits(max: u32, percent: f64, removals: u32) -> SafetyLimits {
        SafetyLimits {
            max_deactivations: max,
            max_deactivations_percent: percent,
            max_membership_removals: removals,
        }
    }

    pub(crate) fn plan_with(
        deactivations: usize,
        removals: usize,
        active: usize,
        in_scope: usize,
    ) -> Plan {
        let mut changes = Vec::new();
        for i in 0..deactivations {
            changes.push(deactivate(
                i as i64,
                "o",
                "e",
                DeactivationReason::NotInScope,
            ));
        }
        for i in 0..removals {
            changes.push(remove(1, "T", i as i64, "e", Role::Member));
        }
        Plan {
            changes,
            active_managed_users: active,
            okta_users_in_scope: in_scope,
            ..Plan::default()
        }
    }

    #[test]
    fn guard_allows_a_plan_within_the_limits() {
        assert!(guard(&plan_with(5, 500, 50, 50), &limits(5, 10.0, 500)).is_empty());
        assert!(guard(&plan_with(0, 0, 0, 0), &limits(0, 0.0, 0)).is_empty());
    }

    #[test]
    fn guard_blocks_above_max_deactivations() {
        let reasons = guard(&plan_with(7, 0, 1000, 1000), &limits(5, 10.0, 500));
        assert_eq!(
            reasons,
            ["plan deactivates 7 users, more than safety.max_deactivations = 5"]
        );
    }

    #[test]
    fn guard_blocks_above_max_deactivations_percent() {
        let reasons = guard(&plan_with(3, 0, 20, 20), &limits(50, 10.0, 500));
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].contains("safety.max_deactivations_percent = 10%"));
        assert!(reasons[0].contains("3 of 20"));
        // Exactly at the limit is allowed.
        assert!(guard(&plan_with(2, 0, 20, 20), &limits(50, 10.0, 500)).is_empty());
        // A percent that is not a number fails closed.
        assert_eq!(
            guard(&plan_with(1, 0, 20, 20), &limits(50, f64::NAN, 500)).len(),
            1
        );
    }

    #[test]
    fn guard_blocks_when_okta_returns_zero_users() {
        let reasons = guard(&plan_with(0, 0, 4, 0), &limits(50, 100.0, 500));
        assert_eq!(
            reasons,
            ["Okta returned zero in-scope users while the store has 4 active managed users"]
        );
    }

    #[test]
    fn guard_counts_what_incremental_runs_applied_since_the_last_full_reconcile() {
        let before = SinceFull {
            deactivations: 4,
            removals: 2,
        };
        // One more deactivation is within max 5; two are not.
        assert!(
            guard_since_full(&plan_with(1, 0, 1000, 1000), &limits(5, 100.0, 500), before)
                .is_empty()
        );
        assert_eq!(
            guard_since_full(&plan_with(2, 0, 1000, 1000), &limits(5, 100.0, 500), before),
            [
                "plan deactivates 2 users (6 with the 4 that incremental runs applied since the \
              last full reconcile), more than safety.max_deactivations = 5"
            ]
        );
        // The percent is of the users active before the earlier
        // deactivations: 6 of 20 is 30%.
        let reasons = guard_since_full(&plan_with(2, 0, 16, 16), &limits(50, 25.0, 500), before);
        assert_eq!(
            reasons,
            [
                "plan deactivates 2 users and incremental runs since the last full reconcile \
              deactivated 4: 6 of 20 active managed users (30.0%), more than \
              safety.max_deactivations_percent = 25%"
            ]
        );
        assert_eq!(
            guard_since_full(&plan_with(0, 2, 10, 10), &limits(50, 100.0, 3), before),
            [
                "plan removes 2 team memberships (4 with the 2 that incremental runs applied \
              since the last full reconcile), more than safety.max_membership_removals = 3"
            ]
        );
        // Nothing planned: nothing to block, whatever came before.
        assert!(guard_since_full(&plan_with(0, 0, 10, 10), &limits(0, 0.0, 0), before).is_empty());
    }

    #[test]
    fn since_full_adds_a_plans_deactivations_and_removals() {
        let after = SinceFull {
            deactivations: 1,
            removals: 1,
        }
        .plus(&plan_with(2, 3, 10, 10));
        assert_eq!(
            after,
            SinceFull {
                deactivations: 3,
                removals: 4
            }
        );
    }

    #[test]
    fn guard_blocks_above_max_membership_removals() {
        let reasons = guard(&plan_with(0, 3, 10, 10), &limits(50, 10.0, 2));
        assert_eq!(
            reasons,
            ["plan removes 3 team memberships, more than safety.max_membership_removals = 2"]
        );
    }
}

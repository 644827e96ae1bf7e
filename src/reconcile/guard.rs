//! The safety guard of SPEC §2: the reasons a plan is blocked (too many
//! deactivations, absolute or as a share of the active managed users; an
//! empty Okta view over active managed users; too many membership removals).
//!
//! Invariant: pure; it only reads the plan's counts and the configured
//! limits, and fails closed (a percent limit that is not a number blocks any
//! deactivation).

use std::cmp::Ordering;

use crate::model::{Counts, Plan, SafetyLimits};

/// Reasons the safety guard blocks this plan (empty = may apply). SPEC §2:
/// too many deactivations (absolute or percent of active managed users), an
/// empty Okta view while the store has active managed users, or too many
/// membership removals. A percent limit that is not a number blocks any
/// deactivation (fail closed).
pub fn guard(plan: &Plan, limits: &SafetyLimits) -> Vec<String> {
    let c = Counts::of_plan(plan);
    let mut reasons = Vec::new();
    let deactivations = c.users_deactivated;
    if deactivations as u64 > u64::from(limits.max_deactivations) {
        reasons.push(format!(
            "plan deactivates {deactivations} users, more than safety.max_deactivations = {}",
            limits.max_deactivations
        ));
    }
    let active = plan.active_managed_users;
    if active > 0 && deactivations > 0 {
        let share = deactivations as f64 * 100.0;
        let allowed = limits.max_deactivations_percent * active as f64;
        if !matches!(
            share.partial_cmp(&allowed),
            Some(Ordering::Less | Ordering::Equal)
        ) {
            reasons.push(format!(
                "plan deactivates {deactivations} of {active} active managed users ({:.1}%), \
                 more than safety.max_deactivations_percent = {}%",
                share / active as f64,
                limits.max_deactivations_percent
            ));
        }
    }
    // Only a full view can be empty: a scoped plan sees the users events
    // named, possibly none of them still assigned.
    if !plan.scoped && plan.okta_users_in_scope == 0 && active > 0 {
        reasons.push(format!(
            "Okta returned zero in-scope users while the store has {active} active managed users"
        ));
    }
    let removals = c.memberships_removed;
    if removals as u64 > u64::from(limits.max_membership_removals) {
        reasons.push(format!(
            "plan removes {removals} team memberships, more than \
             safety.max_membership_removals = {}",
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
    fn guard_blocks_above_max_membership_removals() {
        let reasons = guard(&plan_with(0, 3, 10, 10), &limits(50, 10.0, 2));
        assert_eq!(
            reasons,
            ["plan removes 3 team memberships, more than safety.max_membership_removals = 2"]
        );
    }
}

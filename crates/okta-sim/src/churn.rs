//! Random changes to an org, as an Okta admin makes them, so that the
//! System Log has something to say: what `okta-sim --churn-every-ms` and the
//! incremental-sync benchmark (`benches/events.rs`) feed it with.
//!
//! Invariant: every change goes through [`Org`]'s mutations, so it logs the
//! events Okta would; a change names the one user it touched and what a
//! sync must leave in the store for it.

use serde_json::json;

use crate::org::{Org, UserStatus};

/// One change, and what a sync that saw it leaves in the Writer store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The user's `lastName` became this.
    LastName { user: String, name: String },
    /// The user was suspended (its Writer user is deactivated) or
    /// unsuspended (reactivated).
    Active { user: String, active: bool },
}

impl Change {
    /// The Okta id of the user it changed.
    pub fn user(&self) -> &str {
        match self {
            Change::LastName { user, .. } | Change::Active { user, .. } => user,
        }
    }
}

/// Makes one random change to one of `candidates` (Okta user ids): eight in
/// ten a rename (`lastName` = `Churn{n}`), otherwise a suspension, or the
/// reactivation of a suspended user. `None` when `candidates` is empty or
/// the chosen id is not in the org.
pub fn random_change(
    org: &mut Org,
    rng: &mut fastrand::Rng,
    candidates: &[String],
    n: u64,
) -> Option<Change> {
    if candidates.is_empty() {
        return None;
    }
    let user = candidates[rng.usize(..candidates.len())].clone();
    let status = org.user_status(&user)?;
    if rng.u8(..10) < 8 {
        let name = format!("Churn{n}");
        org.set_user_attr(&user, "lastName", json!(name)).ok()?;
        return Some(Change::LastName { user, name });
    }
    let active = status == UserStatus::Suspended;
    let to = if active {
        UserStatus::Active
    } else {
        UserStatus::Suspended
    };
    org.set_user_status(&user, to).ok()?;
    Some(Change::Active { user, active })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::GenSpec;

    #[test]
    fn every_change_is_in_the_org_and_in_its_system_log() {
        let mut org = Org::generate(&GenSpec::new(50, 4, 2, 3));
        let candidates = org.app_user_ids();
        let mut rng = fastrand::Rng::with_seed(7);
        let before = org.event_log().entries().len();
        let mut kinds = (0, 0);
        for n in 0..200 {
            match random_change(&mut org, &mut rng, &candidates, n).expect("a change") {
                Change::LastName { user, name } => {
                    kinds.0 += 1;
                    assert_eq!(org.user_profile(&user).unwrap()["lastName"], json!(name));
                }
                Change::Active { user, active } => {
                    kinds.1 += 1;
                    let status = org.user_status(&user).unwrap();
                    assert_eq!(status == UserStatus::Active, active, "{user}: {status:?}");
                }
            }
        }
        assert!(kinds.0 > 100 && kinds.1 > 10, "{kinds:?}");
        // The simulator stamps what was logged when it next answers.
        org.log.stamp(
            std::time::SystemTime::now(),
            crate::syslog::LogTiming::default(),
        );
        assert!(org.event_log().entries().len() >= before + 200);
        assert_eq!(random_change(&mut org, &mut rng, &[], 0), None);
    }
}

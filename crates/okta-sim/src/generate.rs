//! Deterministic org generator: from 10 to 1,000,000 users.
//!
//! Invariant: everything is a pure function of (seed, number), so the same
//! [`GenSpec`] always yields the same org, and user profiles need not be
//! stored: the org renders them on demand (`profile.rs`).

use serde_json::{Map, Value, json};

use crate::hash::draw;
use crate::org::{GroupAssignment, Id, Org, Profile, SimApp, SimGroup, UserStatus};
use crate::profile::{DEPARTMENTS, user_email, user_profile};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSpec {
    pub users: u32,
    pub groups: u32,
    /// How many groups are assigned to the app (spread over large and small
    /// groups; capped at `groups`).
    pub pushed_groups: u32,
    pub seed: u64,
    /// Percentage of (non-deprovisioned) users also assigned directly, with
    /// a `writerRole` in their app-user profile most of the time.
    pub direct_percent: u8,
    /// Number of users (taken from the end) whose email repeats an earlier
    /// user's email in different letter case.
    pub duplicate_emails: u32,
    /// How group sizes are drawn.
    pub group_sizes: GroupSizes,
}

/// How the generator sizes groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSizes {
    /// Each user joins 0–3 groups, biased to low group numbers.
    Random,
    /// Zipf-like: group `i` (from 0) has `largest / (i + 1)^s` members, with
    /// `s` chosen so the last group has `smallest` (the benchmark's org:
    /// 20,000 down to 5). Members are spread over all users.
    Zipf { largest: u32, smallest: u32 },
    /// Log-uniform: each group's size is drawn between `smallest` and
    /// `largest` with a uniform logarithm, so small, middle and big groups
    /// are all common (an org whose users sit in several pushed groups:
    /// 200 of 1,000 groups from 5 to 20,000 hold about 470,000 memberships).
    LogUniform { smallest: u32, largest: u32 },
}

/// Size of group `index` under [`GroupSizes::LogUniform`], capped at `users`.
pub fn log_uniform_size(seed: u64, index: u32, smallest: u32, largest: u32, users: u32) -> u32 {
    let largest = largest.max(1);
    let smallest = smallest.clamp(1, largest);
    let (low, high) = (f64::from(smallest).ln(), f64::from(largest).ln());
    let size = (low + (high - low) * unit(seed, u64::from(index), 11))
        .exp()
        .round() as u32;
    size.clamp(smallest, largest).min(users)
}

/// Size of group `index` of `groups` under [`GroupSizes::Zipf`], capped at
/// `users`.
pub fn zipf_size(index: u32, groups: u32, largest: u32, smallest: u32, users: u32) -> u32 {
    let largest = largest.max(1);
    let smallest = smallest.clamp(1, largest);
    let exponent = if groups > 1 {
        (f64::from(largest) / f64::from(smallest)).ln() / f64::from(groups).ln()
    } else {
        0.0
    };
    let size = (f64::from(largest) / f64::from(index + 1).powf(exponent)).round() as u32;
    size.clamp(smallest, largest).min(users)
}

impl GenSpec {
    /// `direct_percent` 10, no duplicate emails.
    pub fn new(users: u32, groups: u32, pushed_groups: u32, seed: u64) -> GenSpec {
        GenSpec {
            users,
            groups,
            pushed_groups,
            seed,
            direct_percent: 10,
            duplicate_emails: 0,
            group_sizes: GroupSizes::Random,
        }
    }
}

/// The app of generated orgs.
pub const GENERATED_APP_ID: &str = "0oa1writer0gen0app01";

const REGIONS: [&str; 6] = ["EMEA", "AMER", "APAC", "Berlin", "Austin", "Tokyo"];

/// A uniform sample in `[0, 1)`.
fn unit(seed: u64, n: u64, salt: u64) -> f64 {
    (draw(seed, n, salt) >> 11) as f64 / (1u64 << 53) as f64
}

fn status_of(seed: u64, n: u32) -> UserStatus {
    match draw(seed, u64::from(n), 4) % 1000 {
        0..900 => UserStatus::Active,
        900..930 => UserStatus::Suspended,
        930..950 => UserStatus::Staged,
        950..970 => UserStatus::Deprovisioned,
        970..980 => UserStatus::Provisioned,
        980..990 => UserStatus::PasswordExpired,
        990..995 => UserStatus::LockedOut,
        _ => UserStatus::Recovery,
    }
}

fn group_name(index: u32) -> String {
    let departments = DEPARTMENTS.len() as u32;
    let department = DEPARTMENTS[(index % departments) as usize];
    match index / departments {
        0 => department.to_owned(),
        round => {
            let region = REGIONS[((round - 1) % REGIONS.len() as u32) as usize];
            let cycle = (round - 1) / REGIONS.len() as u32;
            if cycle == 0 {
                format!("{department} {region}")
            } else {
                format!("{department} {region} {}", cycle + 1)
            }
        }
    }
}

/// The app-user profile of a direct assignment: mostly a valid role, some
/// spelled like admins type them, a few junk values, some without any.
fn direct_profile(seed: u64, n: u32) -> Map<String, Value> {
    let role = match draw(seed, u64::from(n), 5) % 20 {
        0 | 1 => Some("admin"),
        2 => Some("Team Admin"),
        3 => Some("team_member"),
        4 => Some("owner"),
        5..=15 => Some("member"),
        _ => None,
    };
    let mut profile = Map::new();
    if let Some(role) = role {
        profile.insert("writerRole".into(), json!(role));
    }
    profile
}

impl Org {
    /// A deterministic org: `spec.users` users (90 % ACTIVE, the rest
    /// SUSPENDED, STAGED, DEPROVISIONED, PROVISIONED, PASSWORD_EXPIRED,
    /// LOCKED_OUT, RECOVERY), `spec.groups` groups whose sizes range from a
    /// large share of the org down to a handful (each user joins 0–3 groups,
    /// biased to low group numbers), `spec.pushed_groups` of them assigned to
    /// the app (priority by order; the last one hands out `writerRole:
    /// admin`), and `spec.direct_percent` % of users assigned directly.
    ///
    /// Memory: generated profiles are rendered on demand, so a user costs
    /// its id, status and group list (about 150 bytes with the indexes).
    pub fn generate(spec: &GenSpec) -> Org {
        let seed = spec.seed;
        let mut org = Org::with_seed(
            SimApp {
                id: GENERATED_APP_ID.to_owned(),
                label: "Writer".to_owned(),
                name: "writer_generated".to_owned(),
                status: "ACTIVE".to_owned(),
            },
            seed,
        );
        let group_ids: Vec<Id> = (0..spec.groups)
            .map(|index| {
                let id = org.new_id("00g");
                let imported = index % 7 == 6;
                org.insert_group(
                    id.clone(),
                    SimGroup {
                        name: group_name(index),
                        description: if imported {
                            Some("Imported from Active Directory".to_owned())
                        } else if index % 3 == 0 {
                            None
                        } else {
                            Some(format!("{} team", group_name(index)))
                        },
                        group_type: if imported { "APP_GROUP" } else { "OKTA_GROUP" }.to_owned(),
                        extra: Map::new(),
                        members: Default::default(),
                    },
                );
                id
            })
            .collect();

        let duplicates_from = spec.users.saturating_sub(spec.duplicate_emails);
        let random_groups = spec.group_sizes == GroupSizes::Random;
        let mut user_ids: Vec<Id> = Vec::new();
        for n in 0..spec.users {
            let id = org.new_id("00u");
            let status = status_of(seed, n);
            let profile = if n >= duplicates_from && n > 0 {
                // Same email as an earlier user, different case.
                let original = n % duplicates_from.max(1);
                let mut profile = user_profile(seed, n);
                let email = user_email(seed, original).to_uppercase();
                profile.insert("email".into(), json!(email));
                Profile::Stored(Box::new(profile))
            } else {
                Profile::Generated(n)
            };
            org.insert_user(id.clone(), status, profile);
            if !random_groups {
                user_ids.push(id.clone());
            }

            if random_groups && !group_ids.is_empty() {
                let memberships = match draw(seed, u64::from(n), 6) % 10 {
                    0 => 0,
                    1..=5 => 1,
                    6..=8 => 2,
                    _ => 3,
                };
                for j in 0..memberships {
                    let r = unit(seed, u64::from(n) * 4 + j, 7);
                    let index = ((r * r * r) * group_ids.len() as f64) as usize;
                    let group_id = &group_ids[index.min(group_ids.len() - 1)];
                    org.add_member_ids(group_id, &id);
                }
            }
            if status != UserStatus::Deprovisioned
                && draw(seed, u64::from(n), 8) % 100 < u64::from(spec.direct_percent)
            {
                org.direct.insert(id, direct_profile(seed, n));
            }
        }

        let sized = match spec.group_sizes {
            GroupSizes::Random => None,
            sizes => Some(sizes),
        };
        if let Some(sizes) = sized
            && !user_ids.is_empty()
        {
            let users = user_ids.len() as u64;
            // A stride coprime with the number of users visits distinct users.
            let stride = [7_919u64, 7_907, 7_901, 7_883, 7_877]
                .into_iter()
                .find(|p| !users.is_multiple_of(*p))
                .unwrap_or(1);
            for (index, group_id) in group_ids.iter().enumerate() {
                let size = match sizes {
                    GroupSizes::Zipf { largest, smallest } => {
                        zipf_size(index as u32, spec.groups, largest, smallest, users as u32)
                    }
                    GroupSizes::LogUniform { smallest, largest } => {
                        log_uniform_size(seed, index as u32, smallest, largest, users as u32)
                    }
                    GroupSizes::Random => 0,
                };
                let start = draw(seed, index as u64, 9) % users;
                for k in 0..u64::from(size) {
                    let user = &user_ids[((start + k * stride) % users) as usize];
                    org.add_member_ids(group_id, user);
                }
            }
        }

        let pushed = spec.pushed_groups.min(spec.groups);
        for k in 0..pushed {
            let index = (u64::from(k) * u64::from(spec.groups) / u64::from(pushed)) as usize;
            let mut profile = Map::new();
            if k + 1 == pushed && pushed > 1 {
                profile.insert("writerRole".into(), json!("admin"));
            }
            org.assigned_groups.insert(
                group_ids[index].clone(),
                GroupAssignment {
                    priority: k,
                    profile,
                },
            );
        }
        org
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    #[test]
    fn log_uniform_sizes_stay_in_range_and_spread_over_the_decades() {
        let sizes: Vec<u32> = (0..1_000)
            .map(|i| log_uniform_size(1, i, 5, 20_000, 100_000))
            .collect();
        assert!(sizes.iter().all(|&n| (5..=20_000).contains(&n)));
        for (low, high) in [(5, 50), (50, 500), (500, 5_000), (5_000, 20_001)] {
            let n = sizes.iter().filter(|&&s| (low..high).contains(&s)).count();
            assert!(n > 120, "{n} groups of {low}..{high}");
        }
        // Mean (largest - smallest) / ln(largest / smallest): about 2,400.
        let mean = sizes.iter().map(|&n| f64::from(n)).sum::<f64>() / 1_000.0;
        assert!((2_000.0..2_900.0).contains(&mean), "{mean}");
        assert_eq!(
            log_uniform_size(1, 7, 5, 20_000, 300),
            log_uniform_size(1, 7, 5, 20_000, 300)
        );
        assert!(log_uniform_size(1, 7, 5, 20_000, 3) <= 3);
    }

    #[test]
    fn same_spec_same_org() {
        let spec = GenSpec::new(500, 12, 4, 42);
        let a = Org::generate(&spec);
        let b = Org::generate(&spec);
        assert_eq!(a.user_ids(), b.user_ids());
        assert_eq!(a.app_user_ids(), b.app_user_ids());
        let id = &a.user_ids()[17];
        assert_eq!(a.user_profile(id), b.user_profile(id));
        let other = Org::generate(&GenSpec { seed: 43, ..spec });
        assert_ne!(a.user_ids(), other.user_ids());
    }

    #[test]
    fn realistic_mix_of_statuses_groups_roles_and_emails() {
        let spec = GenSpec {
            duplicate_emails: 3,
            ..GenSpec::new(5_000, 40, 6, 7)
        };
        let org = Org::generate(&spec);
        assert_eq!(org.user_count(), 5_000);
        assert_eq!(org.group_count(), 40);
        assert_eq!(org.assigned_group_ids().len(), 6);

        let mut statuses: BTreeMap<UserStatus, usize> = BTreeMap::new();
        for id in org.user_ids() {
            *statuses.entry(org.user_status(&id).unwrap()).or_default() += 1;
        }
        assert_eq!(statuses.len(), 8, "{statuses:?}");
        let active = statuses[&UserStatus::Active];
        assert!((4_300..4_700).contains(&active), "{active}");

        let mut sizes: Vec<usize> = org
            .group_ids()
            .iter()
            .map(|g| org.group_members(g).unwrap().len())
            .collect();
        sizes.sort();
        assert!(sizes[0] < 50, "{sizes:?}");
        assert!(*sizes.last().unwrap() > 1_000, "{sizes:?}");

        let app_users = org.app_user_ids();
        assert!(app_users.len() > 1_000 && app_users.len() < 5_000);
        assert!(
            app_users
                .iter()
                .all(|id| org.user_status(id) != Some(UserStatus::Deprovisioned))
        );
        let roles: BTreeSet<String> = app_users
            .iter()
            .filter_map(|id| org.app_user_profile(id))
            .filter_map(|(_, profile)| profile.get("writerRole").cloned())
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        for expected in ["admin", "Team Admin", "member", "owner"] {
            assert!(roles.contains(expected), "{roles:?}");
        }

        let mut emails: BTreeMap<String, usize> = BTreeMap::new();
        for id in org.user_ids() {
            let profile = org.user_profile(&id).unwrap();
            let email = profile["email"].as_str().unwrap().to_lowercase();
            *emails.entry(email).or_default() += 1;
        }
        assert_eq!(emails.values().filter(|n| **n > 1).count(), 3);
        let names: BTreeSet<String> = org
            .group_ids()
            .iter()
            .map(|g| org.group_name(g).unwrap().to_owned())
            .collect();
        assert_eq!(names.len(), 40, "group names are unique");
    }

    #[test]
    fn zipf_groups_run_from_the_largest_to_the_smallest_size() {
        assert_eq!(zipf_size(0, 1_000, 20_000, 5, 100_000), 20_000);
        assert_eq!(zipf_size(999, 1_000, 20_000, 5, 100_000), 5);
        assert!(zipf_size(1, 1_000, 20_000, 5, 100_000) < 20_000);
        assert_eq!(
            zipf_size(0, 1_000, 20_000, 5, 300),
            300,
            "capped at the org"
        );
        assert_eq!(zipf_size(0, 1, 20, 5, 100), 20);

        let spec = GenSpec {
            group_sizes: GroupSizes::Zipf {
                largest: 400,
                smallest: 3,
            },
            ..GenSpec::new(1_000, 30, 5, 3)
        };
        let org = Org::generate(&spec);
        let sizes: Vec<usize> = org
            .group_ids()
            .iter()
            .map(|g| org.group_members(g).unwrap().len())
            .collect();
        let mut expected: Vec<usize> = (0..30)
            .map(|i| zipf_size(i, 30, 400, 3, 1_000) as usize)
            .collect();
        let mut sorted = sizes.clone();
        sorted.sort_unstable();
        expected.sort_unstable();
        assert_eq!(sorted, expected, "members are distinct users");
    }

    #[test]
    fn tiny_and_degenerate_specs_work() {
        let org = Org::generate(&GenSpec::new(10, 1, 1, 1));
        assert_eq!(org.user_count(), 10);
        assert_eq!(org.assigned_group_ids().len(), 1);
        let empty = Org::generate(&GenSpec::new(0, 0, 3, 1));
        assert_eq!(empty.user_count(), 0);
        assert!(empty.app_user_ids().is_empty());
        let no_groups = Org::generate(&GenSpec::new(20, 0, 0, 1));
        assert_eq!(no_groups.group_count(), 0);
    }

    #[test]
    fn group_names_stay_unique_for_many_groups() {
        let names: BTreeSet<String> = (0..2_000).map(group_name).collect();
        assert_eq!(names.len(), 2_000);
    }
}

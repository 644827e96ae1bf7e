//! The profiles of generated users: names, emails, departments and the
//! occasional `writerRole`, rendered from (seed, user number) whenever the
//! org lists a user, so a million generated users need not store them.
//!
//! Invariant: a pure function of (seed, number): the same user always gets
//! the same profile, and emails are unique ignoring case.

use serde_json::{Map, Value, json};

use crate::hash::draw;

const FIRST_NAMES: [&str; 48] = [
    "Ada", "Alan", "Amara", "Ana", "Arjun", "Ben", "Bianca", "Carlos", "Chen", "Chloe", "Daniel",
    "Diego", "Elena", "Emeka", "Fatima", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jamal", "Julia",
    "Kenji", "Lara", "Leon", "Lucia", "Maria", "Mateo", "Mei", "Nadia", "Noah", "Olga", "Omar",
    "Priya", "Rafael", "Rosa", "Sami", "Sara", "Sofia", "Tariq", "Theo", "Uma", "Victor", "Wei",
    "Yara", "Yusuf", "Zoe", "Zheng",
];

const LAST_NAMES: [&str; 48] = [
    "Adeyemi", "Alvarez", "Andersen", "Bauer", "Becker", "Brown", "Chen", "Cohen", "Costa",
    "Dubois", "Eriksson", "Fischer", "Garcia", "Gomez", "Hansen", "Ito", "Jansen", "Kim",
    "Kowalski", "Kumar", "Laurent", "Lee", "Lopez", "Martin", "Meyer", "Moreau", "Nakamura",
    "Nguyen", "Novak", "Okafor", "Olsen", "Patel", "Perez", "Rossi", "Sato", "Schmidt", "Silva",
    "Singh", "Smith", "Suzuki", "Tanaka", "Taylor", "Wagner", "Wang", "Weber", "Wilson", "Yilmaz",
    "Zhang",
];

pub(crate) const DEPARTMENTS: [&str; 24] = [
    "Engineering",
    "Sales",
    "Marketing",
    "Finance",
    "Legal",
    "Support",
    "Product",
    "Design",
    "Operations",
    "People",
    "Security",
    "Data",
    "Research",
    "Customer Success",
    "IT",
    "Partnerships",
    "Procurement",
    "Facilities",
    "Communications",
    "Platform",
    "Infrastructure",
    "Mobile",
    "Growth",
    "Quality",
];

fn user_names(seed: u64, n: u32) -> (&'static str, &'static str) {
    let h = draw(seed, u64::from(n), 1);
    (
        FIRST_NAMES[(h % 48) as usize],
        LAST_NAMES[((h >> 16) % 48) as usize],
    )
}

/// The email of generated user `n`: unique ignoring case (the number is part
/// of it), occasionally with capitals as people type them.
pub(crate) fn user_email(seed: u64, n: u32) -> String {
    let (first, last) = user_names(seed, n);
    let h = draw(seed, u64::from(n), 2);
    if h.is_multiple_of(25) {
        format!("{first}.{last}{n}@Example.com")
    } else {
        format!(
            "{}.{}{n}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        )
    }
}

/// The profile of generated user `n`, as Okta would send it. A `writerRole`
/// sits in the *user* profile of about 5 % of users (for
/// `sync.role_source = "user"`); app-profile roles are set by assignment.
pub(crate) fn user_profile(seed: u64, n: u32) -> Map<String, Value> {
    let (first, last) = user_names(seed, n);
    let email = user_email(seed, n);
    let h = draw(seed, u64::from(n), 3);
    let mut profile = Map::new();
    profile.insert("login".into(), json!(email.to_lowercase()));
    profile.insert("email".into(), json!(email));
    profile.insert("firstName".into(), json!(first));
    profile.insert("lastName".into(), json!(last));
    profile.insert("secondEmail".into(), Value::Null);
    profile.insert("mobilePhone".into(), Value::Null);
    if h.is_multiple_of(5) {
        profile.insert("displayName".into(), json!(format!("{first} {last}")));
    }
    profile.insert(
        "department".into(),
        json!(DEPARTMENTS[((h >> 8) % DEPARTMENTS.len() as u64) as usize]),
    );
    profile.insert("employeeNumber".into(), json!(format!("E{n:07}")));
    match (h >> 20) % 40 {
        0 => {
            profile.insert("writerRole".into(), json!("admin"));
        }
        1 => {
            profile.insert("writerRole".into(), json!("member"));
        }
        _ => {}
    }
    profile
}

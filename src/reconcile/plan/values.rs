//! The value rules: which Okta statuses are active (SPEC §1.1), how a role
//! attribute value reads (§1.4), what a usable email is and its identity key
//! (§1.2), and the attributes a Writer user should have (email, names,
//! display name). Pure functions of one value each.

use std::borrow::Cow;
use std::fmt;

use crate::model::{OktaUser, Role, StoreUser, UserAttrs};

/// Okta statuses that make a user active in Writer (SPEC §1.1). Compared
/// exactly, as Okta sends them.
const ACTIVE_STATUSES: [&str; 5] = [
    "ACTIVE",
    "PROVISIONED",
    "RECOVERY",
    "PASSWORD_EXPIRED",
    "LOCKED_OUT",
];

/// Okta status -> active-like? `ACTIVE`, `PROVISIONED`, `RECOVERY`,
/// `PASSWORD_EXPIRED`, `LOCKED_OUT` are; anything else (`SUSPENDED`,
/// `DEPROVISIONED`, `STAGED`, unknown values) is not.
pub fn is_active_status(status: &str) -> bool {
    ACTIVE_STATUSES.contains(&status)
}

/// A role attribute value that is neither an admin nor a member spelling.
/// The user gets [`UnknownRole::FALLBACK`] and the caller warns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole {
    /// The value as Okta sent it.
    pub value: String,
}

impl UnknownRole {
    /// The role used for an unknown value (SPEC §1.4).
    pub const FALLBACK: Role = Role::Member;
}

/// Normalizes a role attribute value (SPEC §1.4): case, whitespace, `_` and
/// `-` are ignored; `admin`/`teamadmin` => admin; `member`/`teammember`,
/// empty or absent => member; anything else is `Err` (role member, warn).
pub fn normalize_role(raw: Option<&str>) -> Result<Role, UnknownRole> {
    let Some(raw) = raw else {
        return Ok(Role::Member);
    };
    let ignored = |c: &char| c.is_whitespace() || *c == '_' || *c == '-';
    // ASCII values (all real ones) are folded on the stack; longer than the
    // longest spelling means unknown.
    let mut folded = [0u8; 10];
    let mut len = 0;
    let mut ascii = true;
    for c in raw.chars().filter(|c| !ignored(c)) {
        match (
            u8::try_from(c).ok().filter(u8::is_ascii),
            folded.get_mut(len),
        ) {
            (Some(b), Some(slot)) => {
                *slot = b.to_ascii_lowercase();
                len += 1;
            }
            (Some(_), None) => {
                len = usize::MAX;
                break;
            }
            (None, _) => {
                ascii = false;
                break;
            }
        }
    }
    let owned: String;
    let key: &[u8] = if ascii {
        folded.get(..len).unwrap_or(b"?")
    } else {
        owned = raw
            .chars()
            .filter(|c| !ignored(c))
            .flat_map(char::to_lowercase)
            .collect();
        owned.as_bytes()
    };
    match key {
        b"admin" | b"teamadmin" => Ok(Role::Admin),
        b"member" | b"teammember" | b"" => Ok(Role::Member),
        _ => Err(UnknownRole {
            value: raw.to_string(),
        }),
    }
}

/// Lower-cased, trimmed email: the identity key (rule 1). Borrowed when the
/// email already is its own key (the common case).
pub(super) fn email_key(email: &str) -> Cow<'_, str> {
    let email = email.trim();
    if email
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        Cow::Borrowed(email)
    } else {
        Cow::Owned(email.to_lowercase())
    }
}

/// A usable email is non-empty after trimming and contains `@` (rule 1).
pub(super) fn usable_email(raw: Option<&str>) -> Option<&str> {
    let email = raw?.trim();
    (!email.is_empty() && email.contains('@')).then_some(email)
}

/// A display name borrowed from the Okta data: as is, or "first last".
#[derive(Debug, Clone, Copy)]
pub(super) enum DisplayName<'a> {
    Plain(&'a str),
    Joined(&'a str, &'a str),
}

impl DisplayName<'_> {
    pub(super) fn is(&self, s: &str) -> bool {
        match *self {
            DisplayName::Plain(d) => s == d,
            DisplayName::Joined(first, last) => {
                s.len() == first.len() + 1 + last.len()
                    && s.starts_with(first)
                    && s.ends_with(last)
                    && s.as_bytes().get(first.len()) == Some(&b' ')
            }
        }
    }
}

impl fmt::Display for DisplayName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisplayName::Plain(d) => f.write_str(d),
            DisplayName::Joined(first, last) => write!(f, "{first} {last}"),
        }
    }
}

/// What an Okta user's Writer user should look like, borrowed from the Okta
/// data (attributes are only allocated for the changes that carry them).
pub(super) struct Wanted<'a> {
    pub(super) key: Cow<'a, str>,
    pub(super) email: &'a str,
    pub(super) first: &'a str,
    pub(super) last: &'a str,
    pub(super) display: DisplayName<'a>,
}

impl<'a> Wanted<'a> {
    /// Rule 2: the email as Okta sends it (trimmed, case kept), first/last
    /// trimmed (missing => ""), the display name when set and not blank,
    /// else "first last" trimmed.
    pub(super) fn new(user: &'a OktaUser, email: &'a str) -> Self {
        let first = user.first_name.as_deref().unwrap_or("").trim();
        let last = user.last_name.as_deref().unwrap_or("").trim();
        let display = match user.display_name.as_deref().map(str::trim) {
            Some(d) if !d.is_empty() => DisplayName::Plain(d),
            _ if last.is_empty() => DisplayName::Plain(first),
            _ if first.is_empty() => DisplayName::Plain(last),
            _ => DisplayName::Joined(first, last),
        };
        Wanted {
            key: email_key(email),
            email,
            first,
            last,
            display,
        }
    }

    pub(super) fn attrs(&self) -> UserAttrs {
        UserAttrs {
            email: self.email.to_string(),
            first_name: self.first.to_string(),
            last_name: self.last.to_string(),
            display_name: self.display.to_string(),
        }
    }

    pub(super) fn matches(&self, u: &StoreUser) -> bool {
        u.email == self.email
            && u.first_name == self.first
            && u.last_name == self.last
            && self.display.is(&u.display_name)
    }
}

#[cfg(test)]
pub(super) fn desired_attrs(user: &OktaUser, email: &str) -> UserAttrs {
    Wanted::new(user, email).attrs()
}

pub(super) fn store_attrs(user: &StoreUser) -> UserAttrs {
    UserAttrs {
        email: user.email.clone(),
        first_name: user.first_name.clone(),
        last_name: user.last_name.clone(),
        display_name: user.display_name.clone(),
    }
}

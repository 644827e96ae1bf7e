//! The value rules: which Okta statuses are active (SPEC §1.1), how a role
//! attribute value reads (§1.4), what a usable email is and its identity key
//! (§1.2, §9), and the attributes a Writer user should have (email, names,
//! display name): pure functions of one value each, and [`OktaEntry`], what
//! they make of one Okta user.

use std::borrow::Cow;
use std::fmt;

use crate::model::{OktaUser, Role, StoreUser, Text, UserAttrs};

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

/// The longest email SPEC §9 accepts, in characters (the length of an SMTP
/// path, RFC 5321, less its angle brackets).
pub const MAX_EMAIL_CHARS: usize = 254;
/// First names, last names and display names longer than this (in
/// characters, after trimming) skip the user (SPEC §9).
pub const MAX_NAME_CHARS: usize = 1024;
/// How much of an unusable value a warning quotes.
const QUOTED_CHARS: usize = 64;

/// Rule 1 and SPEC §9: a usable email, trimmed, has exactly one `@` with
/// something on both sides, no whitespace or control characters inside, and
/// at most [`MAX_EMAIL_CHARS`] characters. `Err` says why not, quoting the
/// value (shortened and escaped, so a warning never carries a line break or
/// a terminal escape).
pub(super) fn usable_email(raw: Option<&str>) -> Result<&str, String> {
    let Some(raw) = raw else {
        return Err("no email".into());
    };
    let email = raw.trim();
    let problem = if email.is_empty() {
        Some("empty".to_string())
    } else if email.chars().any(char::is_control) {
        Some("contains a control character".into())
    } else if email.chars().any(char::is_whitespace) {
        Some("contains whitespace".into())
    } else {
        match email.split_once('@') {
            None => Some("no @".into()),
            Some((_, domain)) if domain.contains('@') => Some("more than one @".into()),
            Some(("", _)) | Some((_, "")) => Some("nothing before or after the @".into()),
            Some(_) => {
                let n = email.chars().count();
                (n > MAX_EMAIL_CHARS)
                    .then(|| format!("{n} characters, more than {MAX_EMAIL_CHARS}"))
            }
        }
    };
    match problem {
        None => Ok(email),
        Some(why) => Err(format!("{}: {why}", quoted(raw))),
    }
}

/// Why an Okta user is skipped for its values (rule 1, SPEC §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unusable {
    /// The email is missing or not usable (the value, quoted, and why).
    Email(String),
    /// A name is too long to store.
    Name(String),
}

impl Unusable {
    /// The warning, naming the Okta user.
    pub(super) fn message(&self, okta_id: &str) -> String {
        match self {
            Unusable::Email(why) => {
                format!("Okta user {okta_id} has no usable email ({why}); skipped")
            }
            Unusable::Name(why) => format!("Okta user {okta_id}: {why}; skipped"),
        }
    }
}

/// The values of an Okta user the planner can use: its usable email, or
/// why the user is skipped.
pub(super) fn usable_values(user: &OktaUser) -> Result<&str, Unusable> {
    let email = usable_email(user.email.as_deref()).map_err(Unusable::Email)?;
    match unusable_names(user) {
        Some(why) => Err(Unusable::Name(why)),
        None => Ok(email),
    }
}

/// SPEC §9: the first reason (if any) why a user's names skip it: a first
/// name, last name or display name longer than [`MAX_NAME_CHARS`].
fn unusable_names(user: &OktaUser) -> Option<String> {
    [
        ("first name", &user.first_name),
        ("last name", &user.last_name),
        ("display name", &user.display_name),
    ]
    .into_iter()
    .find_map(|(what, value)| {
        let n = value.as_deref().map_or(0, |v| v.trim().chars().count());
        (n > MAX_NAME_CHARS)
            .then(|| format!("its {what} has {n} characters, more than {MAX_NAME_CHARS}"))
    })
}

/// A value for a message: Debug-quoted (control characters escaped), and cut
/// to [`QUOTED_CHARS`] characters with its length when longer.
fn quoted(value: &str) -> String {
    let n = value.chars().count();
    if n <= QUOTED_CHARS {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(QUOTED_CHARS).collect();
        format!("{head:?}… ({n} characters)")
    }
}

/// SPEC §9: control characters in names become U+FFFD. Borrowed when there
/// are none (the common case).
fn without_controls(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(
            s.chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// A display name: as set in Okta, or "first last".
#[derive(Debug, Clone, Copy)]
pub(super) enum DisplayName<'w> {
    Plain(&'w str),
    Joined(&'w str, &'w str),
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
/// data where it can be (attributes are only allocated for the changes that
/// carry them, and names only when they held control characters). The
/// names are derived again when asked for ([`Names`]), so a plan over a
/// million users keeps two fields per user, not five.
pub(super) struct Wanted<'a> {
    pub(super) key: Cow<'a, str>,
    pub(super) email: &'a str,
    user: &'a OktaUser,
}

/// The names rule 2 makes of an Okta user's profile.
struct Names<'a> {
    first: Cow<'a, str>,
    last: Cow<'a, str>,
    /// The display name set in Okta, when not blank.
    set_display: Option<Cow<'a, str>>,
}

impl<'a> Names<'a> {
    /// First/last trimmed (missing => ""), the display name when set and
    /// not blank; control characters become U+FFFD (SPEC §9).
    fn of(user: &'a OktaUser) -> Self {
        let name = |v: &'a Option<Text>| without_controls(v.as_deref().unwrap_or("").trim());
        let set_display = user
            .display_name
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(without_controls);
        Names {
            first: name(&user.first_name),
            last: name(&user.last_name),
            set_display,
        }
    }

    /// The display name: the one set in Okta, else "first last" trimmed.
    fn display(&self) -> DisplayName<'_> {
        let (first, last) = (self.first.as_ref(), self.last.as_ref());
        match &self.set_display {
            Some(d) => DisplayName::Plain(d),
            None if last.is_empty() => DisplayName::Plain(first),
            None if first.is_empty() => DisplayName::Plain(last),
            None => DisplayName::Joined(first, last),
        }
    }
}

impl<'a> Wanted<'a> {
    /// Rule 2: the email as Okta sends it (trimmed, case kept), and the
    /// names of [`Names`].
    pub(super) fn new(user: &'a OktaUser, email: &'a str) -> Self {
        Wanted {
            key: email_key(email),
            email,
            user,
        }
    }

    pub(super) fn attrs(&self) -> UserAttrs {
        let names = Names::of(self.user);
        UserAttrs {
            email: self.email.into(),
            first_name: Text::from(names.first.as_ref()),
            last_name: Text::from(names.last.as_ref()),
            display_name: Text::from(names.display().to_string()),
        }
    }

    pub(super) fn matches(&self, u: &StoreUser) -> bool {
        let names = Names::of(self.user);
        u.email == self.email
            && u.first_name == names.first
            && u.last_name == names.last
            && names.display().is(&u.display_name)
    }
}

/// One distinct in-scope Okta user, with what the planner derives from it.
pub(super) struct OktaEntry<'a> {
    pub(super) user: &'a OktaUser,
    pub(super) active: bool,
    /// `None` when the email or a name is not usable (`unusable` says why).
    pub(super) wanted: Option<Wanted<'a>>,
    pub(super) unusable: Option<Unusable>,
    pub(super) role: Role,
    pub(super) unknown_role: bool,
}

impl<'a> OktaEntry<'a> {
    /// What the value rules make of one Okta user: active or not, the Writer
    /// user it wants (or why it is skipped), its role.
    pub(super) fn new(user: &'a OktaUser) -> Self {
        let (role, unknown_role) = match normalize_role(user.role.as_deref()) {
            Ok(role) => (role, false),
            Err(_) => (UnknownRole::FALLBACK, true),
        };
        let (wanted, unusable) = match usable_values(user) {
            Ok(email) => (Some(Wanted::new(user, email)), None),
            Err(why) => (None, Some(why)),
        };
        OktaEntry {
            user,
            active: is_active_status(&user.status),
            wanted,
            unusable,
            role,
            unknown_role,
        }
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

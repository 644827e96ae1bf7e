//! The pure planner: compares what Okta says with what the Writer org store
//! holds and returns the changes that make the store follow Okta (SPEC §1),
//! plus the safety guard that may block a plan (SPEC §2).
//!
//! No I/O, no clock, no randomness, no panics: the same inputs, in any vector
//! order, give the same plan. Every rule is a short doc comment next to the
//! code that implements it. Decisions where SPEC is silent:
//!
//! - Okta ids listed twice are one user; when the copies differ, the smallest
//!   copy (by id, status, email, names, role) wins, so input order never
//!   matters. `okta_users_in_scope` counts distinct ids.
//! - Skips (no usable email, duplicate email, collision) apply to in-scope
//!   users of every status: a skipped user is hands off, except that an
//!   inactive skipped user's Writer user is still deactivated through its
//!   Okta id link (the email is not needed for that, and leaving a suspended
//!   person active is the unsafe choice).
//! - Store rows that break the store's own uniqueness (two Writer users linked
//!   to one Okta id, two teams linked to one group, two Writer users whose
//!   emails are equal ignoring case, two teams with one name) are never
//!   guessed at: the Okta user or group concerned is skipped with an error
//!   (or a warning for team names).
//! - `CreateUser` changes come *after* `UpdateUser` changes (the brief listed
//!   them before): a new user may take an email that an existing user gives
//!   up in the same plan, so the update has to be applied first.
//! - A default team that is linked to a group (even an orphaned link) is only
//!   governed by the linked-team rules, never by the default-team rules.
//! - A configured default team that does not exist gives one warning per plan
//!   (every run, so the misconfiguration stays visible).
//! - `missing_group_names` give warnings but are not counted as skipped: they
//!   are configuration problems, not Okta objects the run saw and left out.
//! - Memberships whose user or team id is not in the store are left alone.
//! - Unknown role values are reported only for active, not skipped users.
//! - Okta statuses are compared exactly as sent (`ACTIVE`, not `active`).
//! - A new user may take an email whose Writer holder changes it away in the
//!   same plan (rule 5c); skips cascade along such chains (a skipped user
//!   keeps its email, so whoever waited for it is skipped too).
//! - A group listed twice is one group (members merged). A group linked to
//!   several teams is skipped with an error; several store teams with the
//!   default team's name disable the default-team rules (with a warning).
//! - Default-team roles follow Okta for users managed after this plan,
//!   including users linked by it.
//! - Within a kind: users by their email after this plan, memberships by team
//!   name then email, updates in chain order then by new email.
//! - Guard: the percent check only applies when something is deactivated; a
//!   percent limit that is not a number blocks (fail closed).
//! - Hash maps use a fixed, std-only hasher: no random seed, and fast enough
//!   for 100,000 users. Nothing depends on map iteration order.

use std::borrow::Cow;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use serde::Serialize;

use crate::model::{
    Change, DeactivationReason, Finding, OktaState, OktaUser, Plan, Policy, Role, SafetyLimits,
    Severity, StoreState, StoreTeam, StoreUser, TeamRef, UserAttrs, UserRef,
};

// ---------------------------------------------------------------------------
// Small public helpers.
// ---------------------------------------------------------------------------

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

impl Change {
    /// The snake_case name of the change kind, for logs, metrics and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::CreateTeam { .. } => "team_created",
            Change::LinkTeam { .. } => "team_linked",
            Change::CreateUser { .. } => "user_created",
            Change::LinkUser { .. } => "user_linked",
            Change::UpdateUser { .. } => "user_updated",
            Change::ReactivateUser { .. } => "user_reactivated",
            Change::DeactivateUser { .. } => "user_deactivated",
            Change::AddMembership { .. } => "membership_added",
            Change::RemoveMembership { .. } => "membership_removed",
            Change::ChangeRole { .. } => "role_changed",
        }
    }
}

/// Counts per kind of change, for the report (SPEC §4 `counts`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub users_created: usize,
    pub users_updated: usize,
    pub users_deactivated: usize,
    pub users_reactivated: usize,
    pub users_linked: usize,
    pub memberships_added: usize,
    pub memberships_removed: usize,
    pub roles_changed: usize,
    pub teams_linked: usize,
    pub teams_created: usize,
    pub skipped: usize,
    pub unmanaged: usize,
}

/// Counts the changes of a plan by kind; `skipped` and `unmanaged` are copied
/// from the plan.
pub fn counts(plan: &Plan) -> Counts {
    let mut c = Counts {
        skipped: plan.skipped,
        unmanaged: plan.unmanaged,
        ..Counts::default()
    };
    for change in &plan.changes {
        let n = match change {
            Change::CreateUser { .. } => &mut c.users_created,
            Change::UpdateUser { .. } => &mut c.users_updated,
            Change::DeactivateUser { .. } => &mut c.users_deactivated,
            Change::ReactivateUser { .. } => &mut c.users_reactivated,
            Change::LinkUser { .. } => &mut c.users_linked,
            Change::AddMembership { .. } => &mut c.memberships_added,
            Change::RemoveMembership { .. } => &mut c.memberships_removed,
            Change::ChangeRole { .. } => &mut c.roles_changed,
            Change::LinkTeam { .. } => &mut c.teams_linked,
            Change::CreateTeam { .. } => &mut c.teams_created,
        };
        *n += 1;
    }
    c
}

// ---------------------------------------------------------------------------
// The safety guard (SPEC §2).
// ---------------------------------------------------------------------------

/// Reasons the safety guard blocks this plan (empty = may apply). SPEC §2:
/// too many deactivations (absolute or percent of active managed users), an
/// empty Okta view while the store has active managed users, or too many
/// membership removals. A percent limit that is not a number blocks any
/// deactivation (fail closed).
pub fn guard(plan: &Plan, limits: &SafetyLimits) -> Vec<String> {
    let c = counts(plan);
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
    if plan.okta_users_in_scope == 0 && active > 0 {
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

// ---------------------------------------------------------------------------
// ---------------------------------------------------------------------------
// The planner.
// ---------------------------------------------------------------------------

/// Plans the changes that make `store` follow `okta` (SPEC §1). Pure and
/// deterministic; see the module documentation for the decisions it makes.
pub fn plan(okta: &OktaState, store: &StoreState, policy: &Policy) -> Plan {
    plan_detailed(okta, store, policy).plan
}

/// The plan plus what the tests need to check it.
struct Detailed {
    plan: Plan,
    #[cfg_attr(not(test), allow(dead_code))]
    skipped_okta_ids: BTreeSet<String>,
}

fn plan_detailed(okta: &OktaState, store: &StoreState, policy: &Policy) -> Detailed {
    let mut p = Planner::new(okta, store, policy);
    p.skip_unusable_emails();
    p.skip_duplicate_emails();
    p.skip_ambiguous_store_links();
    p.resolve_targets();
    let rdeps = p.check_email_collisions();
    p.drop_update_cycles(&rdeps);
    p.warn_unknown_roles();
    let teams = p.resolve_teams(okta);
    p.finish(&teams)
}

/// A fixed multiply-rotate hasher (no random seed: the planner reads no
/// randomness). Inputs are Okta ids, emails and store ids, not attacker
/// controlled hash floods.
#[derive(Default, Clone, Copy)]
struct FixedHasher(u64);

impl FixedHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for FixedHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn write_i64(&mut self, n: i64) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // Final avalanche so that both the low and the high bits vary.
        let mut h = self.0;
        h ^= h >> 32;
        h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }
}

type Fixed = BuildHasherDefault<FixedHasher>;
type Map<K, V> = HashMap<K, V, Fixed>;
type Set<K> = HashSet<K, Fixed>;

fn map_with_capacity<K, V>(n: usize) -> Map<K, V> {
    Map::with_capacity_and_hasher(n, Fixed::default())
}

/// Lower-cased, trimmed email: the identity key (rule 1). Borrowed when the
/// email already is its own key (the common case).
fn email_key(email: &str) -> Cow<'_, str> {
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
fn usable_email(raw: Option<&str>) -> Option<&str> {
    let email = raw?.trim();
    (!email.is_empty() && email.contains('@')).then_some(email)
}

/// A display name borrowed from the Okta data: as is, or "first last".
#[derive(Debug, Clone, Copy)]
enum DisplayName<'a> {
    Plain(&'a str),
    Joined(&'a str, &'a str),
}

impl DisplayName<'_> {
    fn is(&self, s: &str) -> bool {
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
struct Wanted<'a> {
    key: Cow<'a, str>,
    email: &'a str,
    first: &'a str,
    last: &'a str,
    display: DisplayName<'a>,
}

impl<'a> Wanted<'a> {
    /// Rule 2: the email as Okta sends it (trimmed, case kept), first/last
    /// trimmed (missing => ""), the display name when set and not blank,
    /// else "first last" trimmed.
    fn new(user: &'a OktaUser, email: &'a str) -> Self {
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

    fn attrs(&self) -> UserAttrs {
        UserAttrs {
            email: self.email.to_string(),
            first_name: self.first.to_string(),
            last_name: self.last.to_string(),
            display_name: self.display.to_string(),
        }
    }

    fn matches(&self, u: &StoreUser) -> bool {
        u.email == self.email
            && u.first_name == self.first
            && u.last_name == self.last
            && self.display.is(&u.display_name)
    }
}

#[cfg(test)]
fn desired_attrs(user: &OktaUser, email: &str) -> UserAttrs {
    Wanted::new(user, email).attrs()
}

fn store_attrs(user: &StoreUser) -> UserAttrs {
    UserAttrs {
        email: user.email.clone(),
        first_name: user.first_name.clone(),
        last_name: user.last_name.clone(),
        display_name: user.display_name.clone(),
    }
}

fn join<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> String {
    items
        .into_iter()
        .map(|s| s.as_ref().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn okta_user_key(u: &OktaUser) -> impl Ord + '_ {
    (
        u.id.as_str(),
        u.status.as_str(),
        u.email.as_deref(),
        u.first_name.as_deref(),
        u.last_name.as_deref(),
        u.display_name.as_deref(),
        u.role.as_deref(),
    )
}

fn store_user_key(u: &StoreUser) -> impl Ord + '_ {
    (
        u.id,
        u.email.as_str(),
        u.okta_id.as_deref(),
        u.first_name.as_str(),
        u.last_name.as_str(),
        u.display_name.as_str(),
        u.active,
    )
}

fn store_team_key(t: &StoreTeam) -> impl Ord + '_ {
    (t.id, t.name.as_str(), t.okta_group_id.as_deref())
}

/// Sorts rows by their full key (so duplicates of an id resolve the same way
/// whatever the input order) and keeps the first row of each id. Inputs that
/// are already sorted (the common case) are only checked.
fn sort_dedup_by_id<T: ?Sized>(
    rows: &mut Vec<&T>,
    cmp: impl Fn(&T, &T) -> Ordering,
    same_id: impl Fn(&T, &T) -> bool,
) {
    if !rows.is_sorted_by(|a, b| cmp(a, b) != Ordering::Greater) {
        rows.sort_unstable_by(|a, b| cmp(a, b));
    }
    rows.dedup_by(|later, earlier| same_id(later, earlier));
}

/// Store id -> row index. Store ids are usually dense (auto-increment), so
/// a plain array is used when the ids span at most four times their count.
enum IdIndex {
    Dense { min: i64, rows: Vec<u32> },
    Sparse(Map<i64, usize>),
}

impl IdIndex {
    const NONE: u32 = u32::MAX;

    /// `ids` must be sorted and distinct.
    fn new(ids: impl ExactSizeIterator<Item = i64> + Clone) -> Self {
        let len = ids.len();
        let (min, max) = (ids.clone().next(), ids.clone().last());
        let span = min
            .zip(max)
            .and_then(|(min, max)| max.checked_sub(min))
            .and_then(|span| usize::try_from(span).ok())
            .filter(|&span| span < len.saturating_mul(4).saturating_add(64));
        match (min, span, u32::try_from(len)) {
            (Some(min), Some(span), Ok(_)) => {
                let mut rows = vec![Self::NONE; span + 1];
                for (row, id) in ids.enumerate() {
                    let slot = id
                        .checked_sub(min)
                        .and_then(|off| usize::try_from(off).ok())
                        .and_then(|off| rows.get_mut(off));
                    if let (Some(slot), Ok(row)) = (slot, u32::try_from(row)) {
                        *slot = row;
                    }
                }
                IdIndex::Dense { min, rows }
            }
            _ => IdIndex::Sparse(ids.enumerate().map(|(row, id)| (id, row)).collect()),
        }
    }

    fn get(&self, id: i64) -> Option<usize> {
        match self {
            IdIndex::Dense { min, rows } => id
                .checked_sub(*min)
                .and_then(|off| usize::try_from(off).ok())
                .and_then(|off| rows.get(off))
                .filter(|&&row| row != Self::NONE)
                .and_then(|&row| usize::try_from(row).ok()),
            IdIndex::Sparse(map) => map.get(&id).copied(),
        }
    }
}

/// The first eight bytes of `s`, big-endian (zero padded): orders like the
/// string does, as far as it goes.
fn prefix_u64(s: &str) -> u64 {
    let mut prefix = [0u8; 8];
    for (to, from) in prefix.iter_mut().zip(s.bytes()) {
        *to = from;
    }
    u64::from_be_bytes(prefix)
}

/// Store users sharing a key (an email or an Okta id). Almost always one.
#[derive(Debug, Clone)]
enum Holders {
    One(usize),
    Many(Vec<usize>),
}

impl Holders {
    fn push(&mut self, s: usize) {
        match self {
            Holders::One(first) => *self = Holders::Many(vec![*first, s]),
            Holders::Many(all) => all.push(s),
        }
    }

    fn as_slice(&self) -> &[usize] {
        match self {
            Holders::One(s) => std::slice::from_ref(s),
            Holders::Many(all) => all,
        }
    }
}

fn add_holder<K: std::hash::Hash + Eq>(map: &mut Map<K, Holders>, key: K, s: usize) {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().push(s),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(Holders::One(s));
        }
    }
}

/// One distinct in-scope Okta user, with what the planner derives from it.
struct OktaEntry<'a> {
    user: &'a OktaUser,
    active: bool,
    /// `None` when the email is not usable.
    wanted: Option<Wanted<'a>>,
    role: Role,
    unknown_role: bool,
}

/// Which Writer user an active, not skipped Okta user ends up linked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Already linked (store `okta_id` == Okta id).
    Linked(usize),
    /// Unmanaged Writer user with the same email: linked now (rule 5a).
    Link(usize),
    /// Managed Writer user whose Okta id is not in scope at all: relinked
    /// (rehire, rule 5b).
    Rehire(usize),
    /// No Writer user has the email (or its holder gives it up): created.
    Create,
}

impl Target {
    fn store_user(self) -> Option<usize> {
        match self {
            Target::Linked(t) | Target::Link(t) | Target::Rehire(t) => Some(t),
            Target::Create => None,
        }
    }
}

/// Who governs a store user after this plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Not linked and not linked by this plan: never touched.
    Unmanaged,
    /// Linked to a skipped Okta user: hands off.
    Skipped,
    /// Linked to this active, not skipped Okta user (entry index).
    Active(usize),
    /// Linked to an Okta user that is inactive or not in scope.
    Gone(DeactivationReason),
}

/// A pushed group whose team's memberships follow the group (rule 9).
struct LinkedTeam {
    team: TeamRef,
    /// Store id of the team, `None` when created by this plan.
    team_id: Option<i64>,
    name: String,
    /// In-scope members (Okta entry indices), deduplicated.
    members: Vec<usize>,
}

/// The outcome of the team rules (rule 8, 10, default team).
struct TeamPhase {
    linked: Vec<LinkedTeam>,
    create: Vec<Change>,
    link: Vec<Change>,
    /// Store team ids linked by this plan.
    linked_now: Set<i64>,
    /// The default team when it gets the default-team rules: id and name.
    default_team: Option<(i64, String)>,
}

struct Planner<'a> {
    policy: &'a Policy,
    okta: Vec<OktaEntry<'a>>,
    okta_idx: Map<&'a str, usize>,
    users: Vec<&'a StoreUser>,
    /// Email key of each store user.
    user_keys: Vec<Cow<'a, str>>,
    /// The Okta entry of each store user's Okta id, when in scope.
    user_okta: Vec<Option<usize>>,
    /// The store users linked to each Okta entry.
    linked: Vec<Option<Holders>>,
    user_idx: IdIndex,
    /// Store users by email key; built only when some user needs it.
    users_by_email: Map<Cow<'a, str>, Holders>,
    teams: Vec<&'a StoreTeam>,
    /// Deduplicated memberships sorted by (team, user); `team_ranges` maps
    /// a team id to its slice.
    memberships: Vec<(i64, i64, Role)>,
    team_ranges: Map<i64, (usize, usize)>,
    skipped: Vec<bool>,
    target: Vec<Option<Target>>,
    /// Store user index -> the Okta entry that targets it.
    owner: Map<usize, usize>,
    /// Okta entry -> store users holding the email it takes, which must give
    /// it up in this plan (rule 5c, 7).
    needs: Vec<Vec<usize>>,
    findings: Vec<Finding>,
    skipped_groups: usize,
}

impl<'a> Planner<'a> {
    /// Rule 14/15: inputs are sorted by id and deduplicated, so the plan does
    /// not depend on the order of the input vectors.
    fn new(okta: &'a OktaState, store: &'a StoreState, policy: &'a Policy) -> Self {
        // Sorted by id (an 8-byte prefix settles most comparisons without
        // following the pointer), then by the whole user for equal ids.
        let mut raw: Vec<(u64, &OktaUser)> =
            okta.users.iter().map(|u| (prefix_u64(&u.id), u)).collect();
        let cmp = |a: &(u64, &OktaUser), b: &(u64, &OktaUser)| {
            a.0.cmp(&b.0)
                .then_with(|| okta_user_key(a.1).cmp(&okta_user_key(b.1)))
        };
        if !raw.is_sorted_by(|a, b| cmp(a, b) != Ordering::Greater) {
            raw.sort_unstable_by(cmp);
        }
        raw.dedup_by(|later, earlier| later.1.id == earlier.1.id);
        let entries: Vec<OktaEntry<'a>> = raw
            .into_iter()
            .map(|(_, user)| {
                let (role, unknown_role) = match normalize_role(user.role.as_deref()) {
                    Ok(role) => (role, false),
                    Err(_) => (UnknownRole::FALLBACK, true),
                };
                OktaEntry {
                    user,
                    active: is_active_status(&user.status),
                    wanted: usable_email(user.email.as_deref()).map(|e| Wanted::new(user, e)),
                    role,
                    unknown_role,
                }
            })
            .collect();
        let mut okta_idx = map_with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            okta_idx.insert(e.user.id.as_str(), i);
        }

        let mut users: Vec<&StoreUser> = store.users.iter().collect();
        sort_dedup_by_id(
            &mut users,
            |a, b| store_user_key(a).cmp(&store_user_key(b)),
            |a, b| a.id == b.id,
        );
        let user_keys: Vec<Cow<'a, str>> = users.iter().map(|u| email_key(&u.email)).collect();
        let user_idx = IdIndex::new(users.iter().map(|u| u.id));
        let mut user_okta = Vec::with_capacity(users.len());
        let mut linked: Vec<Option<Holders>> = vec![None; entries.len()];
        for (s, u) in users.iter().enumerate() {
            let i = u.okta_id.as_deref().and_then(|k| okta_idx.get(k).copied());
            if let Some(slot) = i.and_then(|i| linked.get_mut(i)) {
                match slot {
                    Some(holders) => holders.push(s),
                    None => *slot = Some(Holders::One(s)),
                }
            }
            user_okta.push(i);
        }

        let mut teams: Vec<&StoreTeam> = store.teams.iter().collect();
        sort_dedup_by_id(
            &mut teams,
            |a, b| store_team_key(a).cmp(&store_team_key(b)),
            |a, b| a.id == b.id,
        );

        let mut memberships: Vec<(i64, i64, Role)> = store
            .memberships
            .iter()
            .map(|m| (m.team_id, m.user_id, m.role))
            .collect();
        if !memberships.is_sorted() {
            memberships.sort_unstable();
        }
        memberships.dedup_by(|later, earlier| later.0 == earlier.0 && later.1 == earlier.1);
        let mut team_ranges: Map<i64, (usize, usize)> = Map::default();
        let mut from = 0;
        for (at, window) in memberships.windows(2).enumerate() {
            if let [a, b] = window
                && a.0 != b.0
            {
                team_ranges.insert(a.0, (from, at + 1));
                from = at + 1;
            }
        }
        if let Some(last) = memberships.last() {
            team_ranges.insert(last.0, (from, memberships.len()));
        }

        let n = entries.len();
        Planner {
            policy,
            okta: entries,
            okta_idx,
            users,
            user_keys,
            user_okta,
            linked,
            user_idx,
            users_by_email: Map::default(),
            teams,
            memberships,
            team_ranges,
            skipped: vec![false; n],
            target: vec![None; n],
            owner: Map::default(),
            needs: vec![Vec::new(); n],
            findings: Vec::new(),
            skipped_groups: 0,
        }
    }

    fn warn(&mut self, message: String) {
        self.findings.push(Finding {
            severity: Severity::Warning,
            message,
        });
    }

    fn error(&mut self, message: String) {
        self.findings.push(Finding {
            severity: Severity::Error,
            message,
        });
    }

    fn okta_id(&self, i: usize) -> &'a str {
        self.okta[i].user.id.as_str()
    }

    fn wanted_email(&self, i: usize) -> &'a str {
        self.okta[i].wanted.as_ref().map_or("", |w| w.email)
    }

    fn wanted_key(&self, i: usize) -> &str {
        self.okta[i].wanted.as_ref().map_or("", |w| &w.key)
    }

    fn memberships_of(&self, team_id: i64) -> &[(i64, i64, Role)] {
        self.team_ranges
            .get(&team_id)
            .and_then(|&(from, to)| self.memberships.get(from..to))
            .unwrap_or(&[])
    }

    /// Rule 1: an in-scope user (any status) without a usable email is
    /// skipped with a warning naming its Okta id.
    fn skip_unusable_emails(&mut self) {
        for i in 0..self.okta.len() {
            if self.okta[i].wanted.is_none() {
                self.skipped[i] = true;
                let user = self.okta[i].user;
                self.warn(format!(
                    "Okta user {} has no usable email ({:?}); skipped",
                    user.id,
                    user.email.as_deref().unwrap_or("")
                ));
            }
        }
    }

    /// Rule 1: in-scope users (any status) whose emails are equal ignoring
    /// case are all skipped, with one error naming all their ids.
    fn skip_duplicate_emails(&mut self) {
        let mut by_email: Map<&str, Holders> = map_with_capacity(self.okta.len());
        for (i, e) in self.okta.iter().enumerate() {
            if let Some(w) = &e.wanted {
                add_holder(&mut by_email, &w.key, i);
            }
        }
        let duplicates: BTreeMap<&str, Vec<usize>> = by_email
            .into_iter()
            .filter_map(|(email, ids)| match ids {
                Holders::Many(ids) => Some((email, ids)),
                Holders::One(_) => None,
            })
            .collect();
        let mut messages = Vec::new();
        for (email, ids) in duplicates {
            messages.push(format!(
                "Okta users {} have the same email {email} (ignoring case); all of them are skipped",
                join(ids.iter().map(|&i| self.okta_id(i)))
            ));
            for i in ids {
                self.skipped[i] = true;
            }
        }
        for m in messages {
            self.error(m);
        }
    }

    /// Store integrity: an Okta id linked to several Writer users is not
    /// guessed at; the Okta user is skipped (hands off all of them).
    fn skip_ambiguous_store_links(&mut self) {
        for i in 0..self.okta.len() {
            if self.skipped[i] {
                continue;
            }
            let id = self.okta_id(i);
            if let Some(Holders::Many(linked)) = &self.linked[i] {
                let ids = join(linked.iter().map(|&s| self.users[s].id.to_string()));
                self.skipped[i] = true;
                self.error(format!(
                    "Okta user {id} is linked to several Writer users ({ids}); skipped"
                ));
            }
        }
    }

    /// Rules 4 and 5: finds the Writer user each active, not skipped Okta
    /// user becomes (linked, link by email, rehire relink, or create). Rule 6:
    /// inactive users never get a target (never created or linked).
    fn resolve_targets(&mut self) {
        let wants = |p: &Self, i: usize| !p.skipped[i] && p.okta[i].active;
        let needs_email_index = (0..self.okta.len()).any(|i| {
            wants(self, i)
                && match &self.linked[i] {
                    Some(Holders::One(t)) => self.user_keys[*t] != self.wanted_key(i),
                    Some(Holders::Many(_)) => false,
                    None => true,
                }
        });
        if needs_email_index {
            let mut by_email = map_with_capacity(self.users.len());
            for (s, key) in self.user_keys.iter().enumerate() {
                add_holder(&mut by_email, key.clone(), s);
            }
            self.users_by_email = by_email;
        }
        for i in 0..self.okta.len() {
            if !wants(self, i) {
                continue;
            }
            let id = self.okta_id(i);
            let key = self.wanted_key(i);
            let holders = || {
                self.users_by_email
                    .get(key)
                    .map_or(&[][..], Holders::as_slice)
            };
            let (target, needs) = match &self.linked[i] {
                // Rule 4/7: an email change (ignoring case) needs every other
                // holder of the new email to give it up.
                Some(Holders::One(t)) => {
                    let t = *t;
                    let needs = if self.user_keys[t] != key {
                        holders().to_vec()
                    } else {
                        Vec::new()
                    };
                    (Target::Linked(t), needs)
                }
                Some(Holders::Many(_)) => continue,
                None => match holders() {
                    [] => (Target::Create, Vec::new()),
                    &[h] => match self.users[h].okta_id.as_deref() {
                        // Rule 5a: an unmanaged user with that email is linked.
                        None => (Target::Link(h), Vec::new()),
                        // Rule 5b: rehire, the old Okta id is gone.
                        Some(_) if self.user_okta[h].is_none() => (Target::Rehire(h), Vec::new()),
                        // Rule 5c: the email belongs to another in-scope
                        // user; only fine when it gives it up in this plan.
                        Some(_) => (Target::Create, vec![h]),
                    },
                    many => {
                        let ids = join(many.iter().map(|&s| self.users[s].id.to_string()));
                        let message = format!(
                            "Okta user {id}: several Writer users ({ids}) have the email {key} \
                             (ignoring case); skipped"
                        );
                        self.skipped[i] = true;
                        self.error(message);
                        continue;
                    }
                },
            };
            if let Some(t) = target.store_user() {
                self.owner.insert(t, i);
            }
            self.target[i] = Some(target);
            self.needs[i] = needs;
        }
    }

    /// Rules 5c and 7: a user that takes an email held by another Writer user
    /// is skipped unless that user gives the email up in this plan (it does
    /// iff it is the target of another active, not skipped Okta user, whose
    /// email necessarily differs since Okta emails are unique by now). Skips
    /// cascade: a skipped user keeps its email, so whoever waited for it is
    /// skipped too. Returns the reverse dependencies (giver -> takers).
    fn check_email_collisions(&mut self) -> Map<usize, Vec<usize>> {
        let mut rdeps: Map<usize, Vec<usize>> = Map::default();
        let mut queue = Vec::new();
        for i in 0..self.okta.len() {
            if self.skipped[i] || self.needs[i].is_empty() {
                continue;
            }
            let mut blocker = None;
            for &h in &self.needs[i] {
                match self.owner.get(&h) {
                    Some(&o) if o != i && !self.skipped[o] => {
                        rdeps.entry(o).or_default().push(i);
                    }
                    _ => {
                        blocker = Some(h);
                        break;
                    }
                }
            }
            if let Some(h) = blocker {
                self.skip_for_collision(i, Some(h));
                queue.push(i);
            }
        }
        self.propagate_skips(&rdeps, queue);
        rdeps
    }

    fn propagate_skips(&mut self, rdeps: &Map<usize, Vec<usize>>, mut queue: Vec<usize>) {
        while let Some(o) = queue.pop() {
            let Some(takers) = rdeps.get(&o) else {
                continue;
            };
            for &d in takers {
                if self.skipped[d] {
                    continue;
                }
                let holder = self.needs[d]
                    .iter()
                    .copied()
                    .find(|h| self.owner.get(h) == Some(&o));
                self.skip_for_collision(d, holder);
                queue.push(d);
            }
        }
    }

    fn describe_store_user(&self, s: usize) -> String {
        let u = self.users[s];
        match u.okta_id.as_deref() {
            None => format!("unmanaged Writer user {} <{}>", u.id, u.email),
            Some(k) => format!("Writer user {} <{}> (Okta user {k})", u.id, u.email),
        }
    }

    fn skip_for_collision(&mut self, i: usize, holder: Option<usize>) {
        self.skipped[i] = true;
        let id = self.okta_id(i);
        let email = self.wanted_email(i);
        let what = match self.target[i] {
            Some(Target::Linked(t)) => {
                format!("changing its email from {} to {email}", self.users[t].email)
            }
            _ => format!("new user with email {email}"),
        };
        let held_by = holder
            .map(|h| self.describe_store_user(h))
            .unwrap_or_else(|| "another Writer user".to_string());
        self.error(format!(
            "Okta user {id}: {what} collides with {held_by}, which keeps that email in this run; \
             skipped"
        ));
    }

    /// The store user an Okta entry updates (rule 4/5), if its attributes
    /// differ.
    fn update_for(&self, i: usize) -> Option<usize> {
        let t = self.target[i]?.store_user()?;
        let wanted = self.okta[i].wanted.as_ref()?;
        (!wanted.matches(self.users[t])).then_some(t)
    }

    /// Rule 7: updates that wait on each other in a cycle (a swap) are all
    /// skipped with an error, and whoever waited on them is skipped too.
    /// (The order of the remaining updates is settled in `finish`.)
    fn drop_update_cycles(&mut self, rdeps: &Map<usize, Vec<usize>>) {
        loop {
            let (_, left) = self.topo_order_updates(|_| 0);
            if left.is_empty() {
                return;
            }
            let left_set: Set<usize> = left.iter().copied().collect();
            // Each giver has at most one taker (Okta emails are unique), so
            // following the taker from any left-over node walks its cycle.
            let mut taker: Map<usize, usize> = Map::default();
            for &i in &left {
                for &h in &self.needs[i] {
                    if let Some(&o) = self.owner.get(&h).filter(|o| left_set.contains(o)) {
                        taker.insert(o, i);
                    }
                }
            }
            let mut seen = Set::default();
            let mut messages = Vec::new();
            for &start in &left {
                let mut cycle = Vec::new();
                let mut cur = start;
                while seen.insert(cur) {
                    cycle.push(cur);
                    match taker.get(&cur) {
                        Some(&next) => cur = next,
                        None => break,
                    }
                }
                if cycle.is_empty() {
                    continue;
                }
                cycle.sort_unstable();
                let steps = cycle.iter().map(|&i| {
                    let from = match self.target[i] {
                        Some(Target::Linked(t)) => self.users[t].email.as_str(),
                        _ => "",
                    };
                    format!("{} {from} -> {}", self.okta_id(i), self.wanted_email(i))
                });
                messages.push(format!(
                    "Okta users {} change their emails in a cycle ({}); all of them are skipped",
                    join(cycle.iter().map(|&i| self.okta_id(i))),
                    join(steps)
                ));
            }
            for m in messages {
                self.error(m);
            }
            for &i in &left {
                self.skipped[i] = true;
            }
            self.propagate_skips(rdeps, left);
        }
    }

    /// Kahn's algorithm over the pending updates: a user giving an email up
    /// comes before the user taking it, ties by `rank` then entry. Returns
    /// the order and the nodes left in cycles.
    fn topo_order_updates(&self, rank: impl Fn(usize) -> u32) -> (Vec<usize>, Vec<usize>) {
        let n = self.okta.len();
        let mut is_node = vec![false; n];
        let mut nodes = Vec::new();
        for (i, node) in is_node.iter_mut().enumerate() {
            if !self.skipped[i] && self.update_for(i).is_some() {
                *node = true;
                nodes.push(i);
            }
        }
        let mut indegree = vec![0usize; n];
        let mut takers: Map<usize, Vec<usize>> = Map::default();
        for &i in &nodes {
            for &h in &self.needs[i] {
                if let Some(&o) = self.owner.get(&h).filter(|&&o| is_node[o]) {
                    indegree[i] += 1;
                    takers.entry(o).or_default().push(i);
                }
            }
        }
        let mut ready: Vec<(u32, usize)> = nodes
            .iter()
            .filter(|&&i| indegree[i] == 0)
            .map(|&i| (rank(i), i))
            .collect();
        if ready.len() == nodes.len() {
            // Nobody waits for anybody (the usual case): just sort.
            ready.sort_unstable();
            return (ready.into_iter().map(|(_, i)| i).collect(), Vec::new());
        }
        let mut ready: BinaryHeap<Reverse<(u32, usize)>> = ready.into_iter().map(Reverse).collect();
        let mut order = Vec::with_capacity(nodes.len());
        while let Some(Reverse((_, i))) = ready.pop() {
            order.push(i);
            for &t in takers.get(&i).map_or(&[][..], Vec::as_slice) {
                indegree[t] = indegree[t].saturating_sub(1);
                if indegree[t] == 0 {
                    ready.push(Reverse((rank(t), t)));
                }
            }
        }
        let left = nodes.into_iter().filter(|&i| indegree[i] > 0).collect();
        (order, left)
    }

    /// Rule 12: an unknown role value is a warning, once per active, not
    /// skipped user.
    fn warn_unknown_roles(&mut self) {
        let mut messages = Vec::new();
        for (i, e) in self.okta.iter().enumerate() {
            if e.unknown_role && e.active && !self.skipped[i] {
                messages.push(format!(
                    "Okta user {} has the unknown role value {:?}; using role member",
                    e.user.id,
                    e.user.role.as_deref().unwrap_or("")
                ));
            }
        }
        for m in messages {
            self.warn(m);
        }
    }

    /// Rules 8 and 10, and which team gets the default-team rules (5d, 11).
    fn resolve_teams(&mut self, okta: &'a OktaState) -> TeamPhase {
        // Rule 15: a group listed twice is one group (members merged, the
        // smallest name kept). Members not in scope are ignored (rule 9).
        let mut groups: BTreeMap<&str, (&str, Vec<usize>)> = BTreeMap::new();
        for g in &okta.groups {
            let entry = groups
                .entry(g.id.as_str())
                .or_insert_with(|| (g.name.as_str(), Vec::with_capacity(g.member_ids.len())));
            entry.0 = entry.0.min(g.name.as_str());
            entry.1.extend(
                g.member_ids
                    .iter()
                    .filter_map(|m| self.okta_idx.get(m.as_str()).copied()),
            );
        }
        for (_, members) in groups.values_mut() {
            members.sort_unstable();
            members.dedup();
        }
        let mut ids_by_name: Map<&str, Vec<&str>> = Map::default();
        for (&id, &(name, _)) in &groups {
            ids_by_name.entry(name).or_default().push(id);
        }
        let mut teams_by_group: Map<&str, Vec<usize>> = Map::default();
        let mut teams_by_name: Map<&str, Vec<usize>> = Map::default();
        for (ti, t) in self.teams.iter().enumerate() {
            if let Some(g) = t.okta_group_id.as_deref() {
                teams_by_group.entry(g).or_default().push(ti);
            }
            teams_by_name.entry(t.name.as_str()).or_default().push(ti);
        }
        // Rule 10: a link to a group that is not pushed is reported and left
        // exactly as it is.
        let mut orphans: Vec<&StoreTeam> = self
            .teams
            .iter()
            .copied()
            .filter(|t| {
                t.okta_group_id
                    .as_deref()
                    .is_some_and(|g| !groups.contains_key(g))
            })
            .collect();
        orphans.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));

        let mut phase = TeamPhase {
            linked: Vec::new(),
            create: Vec::new(),
            link: Vec::new(),
            linked_now: Set::default(),
            default_team: None,
        };
        let mut created_names: Set<&str> = Set::default();
        let mut ambiguous: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut messages: Vec<(Severity, String)> = Vec::new();
        for (gid, (name, members)) in groups {
            match teams_by_group.get(gid).map(Vec::as_slice) {
                // Rule 8: linked by group id; a renamed group keeps its team
                // and the team keeps its name.
                Some(&[ti]) => {
                    let t = self.teams[ti];
                    phase.linked.push(LinkedTeam {
                        team: TeamRef::Existing(t.id),
                        team_id: Some(t.id),
                        name: t.name.clone(),
                        members,
                    });
                    continue;
                }
                Some(many) if !many.is_empty() => {
                    let ids = join(many.iter().map(|&ti| self.teams[ti].id.to_string()));
                    self.skipped_groups += 1;
                    messages.push((
                        Severity::Error,
                        format!(
                            "Okta group {gid} ({name}) is linked to several Writer teams ({ids}); \
                             skipped"
                        ),
                    ));
                    continue;
                }
                _ => {}
            }
            // First link. Rule 8: a name shared by several pushed groups
            // links none of the unlinked ones.
            if ids_by_name.get(name).is_some_and(|ids| ids.len() > 1) {
                ambiguous.entry(name).or_default().push(gid);
                continue;
            }
            match teams_by_name.get(name).map(Vec::as_slice) {
                Some(&[ti]) => {
                    let t = self.teams[ti];
                    match t.okta_group_id.as_deref() {
                        None => {
                            phase.linked_now.insert(t.id);
                            phase.link.push(Change::LinkTeam {
                                team_id: t.id,
                                name: t.name.clone(),
                                okta_group_id: gid.to_string(),
                            });
                            phase.linked.push(LinkedTeam {
                                team: TeamRef::Existing(t.id),
                                team_id: Some(t.id),
                                name: t.name.clone(),
                                members,
                            });
                        }
                        Some(other) => {
                            self.skipped_groups += 1;
                            messages.push((
                                Severity::Warning,
                                format!(
                                    "Okta group {gid} ({name}): Writer team {name:?} is already \
                                     linked to Okta group {other}; skipped"
                                ),
                            ));
                        }
                    }
                }
                Some(many) if !many.is_empty() => {
                    self.skipped_groups += 1;
                    messages.push((
                        Severity::Warning,
                        format!(
                            "Okta group {gid} ({name}): several Writer teams are named {name:?}; \
                             skipped"
                        ),
                    ));
                }
                _ if self.policy.create_missing_teams => {
                    created_names.insert(name);
                    phase.create.push(Change::CreateTeam {
                        name: name.to_string(),
                        okta_group_id: gid.to_string(),
                    });
                    phase.linked.push(LinkedTeam {
                        team: TeamRef::New {
                            name: name.to_string(),
                        },
                        team_id: None,
                        name: name.to_string(),
                        members,
                    });
                }
                _ => {
                    self.skipped_groups += 1;
                    messages.push((
                        Severity::Warning,
                        format!(
                            "Okta group {gid} ({name}): no Writer team is named {name:?} and \
                             teams.create_missing is false; skipped"
                        ),
                    ));
                }
            }
        }
        for (name, ids) in ambiguous {
            self.skipped_groups += ids.len();
            messages.push((
                Severity::Error,
                format!(
                    "pushed Okta groups {} have the same name {name:?}; none of them is linked \
                     to a team",
                    join(ids)
                ),
            ));
        }
        // `missing_group_names`: one warning each, not counted as skipped.
        let missing: BTreeSet<&str> = okta
            .missing_group_names
            .iter()
            .map(String::as_str)
            .collect();
        for name in missing {
            messages.push((
                Severity::Warning,
                format!("teams.push_groups names {name:?}, which matches no Okta group"),
            ));
        }
        for t in orphans {
            messages.push((
                Severity::Warning,
                format!(
                    "orphaned link: Writer team {:?} is linked to Okta group {}, which is not \
                     pushed; its members are left as they are",
                    t.name,
                    t.okta_group_id.as_deref().unwrap_or("")
                ),
            ));
        }
        // Rule 5d/11: the default team, by exact name, gets the default-team
        // rules only when it is not linked (before or by this plan).
        if let Some(name) = self.policy.default_team.as_deref() {
            match teams_by_name.get(name).map(Vec::as_slice) {
                Some(&[ti]) => {
                    let t = self.teams[ti];
                    if t.okta_group_id.is_none() && !phase.linked_now.contains(&t.id) {
                        phase.default_team = Some((t.id, t.name.clone()));
                    }
                }
                Some(many) if !many.is_empty() => messages.push((
                    Severity::Warning,
                    format!(
                        "several Writer teams are named {name:?} (sync.default_team); no user \
                         is added to a default team"
                    ),
                )),
                _ if created_names.contains(name) => {}
                _ => messages.push((
                    Severity::Warning,
                    format!(
                        "default team {name:?} (sync.default_team) does not exist; created users \
                         are not added to it"
                    ),
                )),
            }
        }
        for (severity, message) in messages {
            self.findings.push(Finding { severity, message });
        }
        phase
    }

    fn owner_of(&self, s: usize) -> Owner {
        if let Some(&i) = self.owner.get(&s).filter(|&&i| !self.skipped[i]) {
            return Owner::Active(i);
        }
        match self.users[s].okta_id.as_deref() {
            None => Owner::Unmanaged,
            Some(_) => match self.user_okta[s] {
                None => Owner::Gone(DeactivationReason::NotInScope),
                // An inactive Okta user is deactivated through its id link
                // even when skipped (its email is unusable or shared): the
                // email is not needed to find the Writer user, and leaving a
                // suspended person active would be the unsafe choice.
                Some(i) if !self.okta[i].active => Owner::Gone(DeactivationReason::Inactive),
                // Skipped, or (store integrity) not the one linked user.
                Some(_) => Owner::Skipped,
            },
        }
    }

    fn finish(mut self, teams: &TeamPhase) -> Detailed {
        let n = self.okta.len();
        let u = self.users.len();
        let owners: Vec<Owner> = (0..u).map(|s| self.owner_of(s)).collect();
        let eligible = |i: usize| !self.skipped[i] && self.target[i].is_some();
        // A "subject" is a store user (`s`) or a user created by this plan
        // (`u + i`); changes are first collected as small records naming
        // subjects, sorted, and only then built (each `Change` once).
        let okta_subject = |i: usize| self.target[i].and_then(Target::store_user).unwrap_or(u + i);

        let mut link_users: Vec<(usize, usize)> = Vec::new();
        let mut create_users: Vec<usize> = Vec::new();
        let mut reactivations: Vec<(usize, usize)> = Vec::new();
        let mut adds: Vec<(TeamSlot, usize)> = Vec::new();
        let mut role_changes: Vec<(TeamSlot, usize, Role, Role)> = Vec::new();
        let mut removals: Vec<(TeamSlot, usize, Role)> = Vec::new();
        let mut deactivations: Vec<(usize, DeactivationReason)> = Vec::new();

        // Rules 4 and 5: links, creates (with the one default-team
        // membership) and reactivations of active, not skipped users.
        for i in (0..n).filter(|&i| eligible(i)) {
            let Some(target) = self.target[i] else {
                continue;
            };
            match target {
                Target::Create => {
                    create_users.push(i);
                    if teams.default_team.is_some() {
                        adds.push((TeamSlot::Default, i));
                    }
                }
                Target::Linked(_) => {}
                Target::Link(t) | Target::Rehire(t) => link_users.push((i, t)),
            }
            if let Some(t) = target.store_user().filter(|&t| !self.users[t].active) {
                reactivations.push((i, t));
            }
        }

        // Rule 6: managed users whose Okta user is inactive or gone are
        // deactivated (never deleted) when active; their attrs stay as are.
        for (s, owner) in owners.iter().enumerate() {
            if let (Owner::Gone(reason), true) = (owner, self.users[s].active) {
                deactivations.push((s, *reason));
            }
        }

        // Rule 9: in linked teams, a managed user is a member exactly when
        // its Okta user is in scope, active, not skipped and in the group.
        // Unmanaged users and users of skipped Okta users are left alone.
        // `stamp` marks the wanted members of the current team (odd) and the
        // ones already found among its memberships (even).
        let mut stamp = vec![0usize; n];
        for (k, team) in teams.linked.iter().enumerate() {
            let slot = TeamSlot::Linked(k);
            let wanted = 2 * k + 1;
            let found = wanted + 1;
            for &i in &team.members {
                if eligible(i) {
                    stamp[i] = wanted;
                }
            }
            let current = team.team_id.map_or(&[][..], |id| self.memberships_of(id));
            for &(_, user_id, role) in current {
                let Some(s) = self.user_idx.get(user_id) else {
                    continue;
                };
                match owners[s] {
                    Owner::Unmanaged | Owner::Skipped => {}
                    Owner::Active(i) if stamp[i] == wanted => {
                        stamp[i] = found;
                        let to = self.okta[i].role;
                        if to != role {
                            role_changes.push((slot, s, role, to));
                        }
                    }
                    Owner::Active(_) | Owner::Gone(_) => removals.push((slot, s, role)),
                }
            }
            adds.extend(
                team.members
                    .iter()
                    .filter(|&&i| stamp[i] == wanted)
                    .map(|&i| (slot, i)),
            );
        }

        // Rule 11: in the (unlinked) default team only roles follow Okta,
        // for users whose Okta user is active and not skipped.
        if let Some((team_id, _)) = &teams.default_team {
            for &(_, user_id, role) in self.memberships_of(*team_id) {
                if let Some(s) = self.user_idx.get(user_id)
                    && let Owner::Active(i) = owners[s]
                    && self.okta[i].role != role
                {
                    role_changes.push((TeamSlot::Default, s, role, self.okta[i].role));
                }
            }
        }

        // Rule 14: within a kind, users sort by their email after this plan
        // (then by subject), memberships by team name and then user. Only
        // the subjects that changes name are ranked.
        let updates: Vec<usize> = (0..n)
            .filter(|&i| !self.skipped[i] && self.update_for(i).is_some())
            .collect();
        let mut named = vec![false; u + n];
        let subjects = link_users
            .iter()
            .chain(&reactivations)
            .map(|&(_, t)| t)
            .chain(create_users.iter().map(|&i| u + i))
            .chain(updates.iter().map(|&i| okta_subject(i)))
            .chain(adds.iter().map(|&(_, i)| okta_subject(i)))
            .chain(role_changes.iter().map(|&(_, s, _, _)| s))
            .chain(removals.iter().map(|&(_, s, _)| s))
            .chain(deactivations.iter().map(|&(s, _)| s));
        for subject in subjects {
            named[subject] = true;
        }
        let subject_key = |subject: usize| match owners.get(subject) {
            Some(Owner::Active(i)) => self.wanted_key(*i),
            Some(_) => &self.user_keys[subject],
            None => self.wanted_key(subject - u),
        };
        // The first eight bytes, big-endian, order like the string does and
        // settle most comparisons without following the pointer.
        let mut ranked: Vec<(u64, &str, usize)> = (0..u + n)
            .filter(|&x| named[x])
            .map(|x| {
                let key = subject_key(x);
                (prefix_u64(key), key, x)
            })
            .collect();
        ranked.sort_unstable();
        let mut rank = vec![0u32; u + n];
        for (r, &(_, _, subject)) in ranked.iter().enumerate() {
            rank[subject] = u32::try_from(r).unwrap_or(u32::MAX);
        }
        let mut team_names: Vec<(&str, TeamSlot)> = teams
            .linked
            .iter()
            .enumerate()
            .map(|(k, t)| (t.name.as_str(), TeamSlot::Linked(k)))
            .chain(
                teams
                    .default_team
                    .as_ref()
                    .map(|(_, name)| (name.as_str(), TeamSlot::Default)),
            )
            .collect();
        team_names.sort_unstable();
        let mut linked_rank = vec![0usize; teams.linked.len()];
        let mut default_rank = 0;
        for (r, &(_, slot)) in team_names.iter().enumerate() {
            match slot {
                TeamSlot::Linked(k) => {
                    if let Some(x) = linked_rank.get_mut(k) {
                        *x = r;
                    }
                }
                TeamSlot::Default => default_rank = r,
            }
        }
        let team_rank = |slot: TeamSlot| match slot {
            TeamSlot::Linked(k) => linked_rank.get(k).copied().unwrap_or(usize::MAX),
            TeamSlot::Default => default_rank,
        };

        let (update_order, _) = self.topo_order_updates(|i| rank[okta_subject(i)]);
        link_users.sort_by_cached_key(|&(_, t)| rank[t]);
        create_users.sort_by_cached_key(|&i| rank[u + i]);
        reactivations.sort_by_cached_key(|&(_, t)| rank[t]);
        adds.sort_by_cached_key(|&(slot, i)| (team_rank(slot), rank[okta_subject(i)]));
        role_changes.sort_by_cached_key(|&(slot, s, _, _)| (team_rank(slot), rank[s]));
        removals.sort_by_cached_key(|&(slot, s, _)| (team_rank(slot), rank[s]));
        deactivations.sort_by_cached_key(|&(s, _)| rank[s]);

        // Build the changes, in the order of rule 14.
        let final_email = |s: usize| match owners[s] {
            Owner::Active(i) => self.wanted_email(i),
            _ => self.users[s].email.as_str(),
        };
        let team_of = |slot: TeamSlot| match slot {
            TeamSlot::Linked(k) => teams.linked.get(k).map(|t| {
                (
                    t.team.clone(),
                    t.team_id.unwrap_or_default(),
                    t.name.as_str(),
                )
            }),
            TeamSlot::Default => teams
                .default_team
                .as_ref()
                .map(|(id, name)| (TeamRef::Existing(*id), *id, name.as_str())),
        };
        let mut create_teams = teams.create.clone();
        create_teams.sort_by(|a, b| team_change_name(a).cmp(&team_change_name(b)));
        let mut link_teams = teams.link.clone();
        link_teams.sort_by(|a, b| team_change_name(a).cmp(&team_change_name(b)));
        let total = create_teams.len()
            + link_teams.len()
            + link_users.len()
            + update_order.len()
            + create_users.len()
            + reactivations.len()
            + adds.len()
            + role_changes.len()
            + removals.len()
            + deactivations.len();
        let mut changes = Vec::with_capacity(total);
        changes.extend(create_teams);
        changes.extend(link_teams);
        changes.extend(link_users.iter().map(|&(i, t)| {
            let user = self.users[t];
            Change::LinkUser {
                user_id: user.id,
                email: user.email.clone(),
                okta_id: self.okta_id(i).to_string(),
                previous_okta_id: user.okta_id.clone(),
            }
        }));
        changes.extend(update_order.iter().filter_map(|&i| {
            let t = self.update_for(i)?;
            Some(Change::UpdateUser {
                user_id: self.users[t].id,
                okta_id: self.okta_id(i).to_string(),
                before: store_attrs(self.users[t]),
                after: self.okta[i].wanted.as_ref()?.attrs(),
            })
        }));
        changes.extend(create_users.iter().filter_map(|&i| {
            Some(Change::CreateUser {
                okta_id: self.okta_id(i).to_string(),
                attrs: self.okta[i].wanted.as_ref()?.attrs(),
            })
        }));
        changes.extend(reactivations.iter().map(|&(i, t)| Change::ReactivateUser {
            user_id: self.users[t].id,
            okta_id: self.okta_id(i).to_string(),
            email: self.wanted_email(i).to_string(),
        }));
        changes.extend(adds.iter().filter_map(|&(slot, i)| {
            let (team, _, team_name) = team_of(slot)?;
            let user = match self.target[i]? {
                Target::Create => UserRef::New {
                    okta_id: self.okta_id(i).to_string(),
                },
                Target::Linked(t) | Target::Link(t) | Target::Rehire(t) => {
                    UserRef::Existing(self.users[t].id)
                }
            };
            Some(Change::AddMembership {
                team,
                team_name: team_name.to_string(),
                user,
                email: self.wanted_email(i).to_string(),
                role: self.okta[i].role,
            })
        }));
        changes.extend(role_changes.iter().filter_map(|&(slot, s, from, to)| {
            let (_, team_id, team_name) = team_of(slot)?;
            Some(Change::ChangeRole {
                team_id,
                team_name: team_name.to_string(),
                user_id: self.users[s].id,
                email: final_email(s).to_string(),
                from,
                to,
            })
        }));
        changes.extend(removals.iter().filter_map(|&(slot, s, role)| {
            let (_, team_id, team_name) = team_of(slot)?;
            Some(Change::RemoveMembership {
                team_id,
                team_name: team_name.to_string(),
                user_id: self.users[s].id,
                email: final_email(s).to_string(),
                role,
            })
        }));
        changes.extend(deactivations.iter().filter_map(|&(s, reason)| {
            let user = self.users[s];
            Some(Change::DeactivateUser {
                user_id: user.id,
                okta_id: user.okta_id.clone()?,
                email: user.email.clone(),
                reason,
            })
        }));

        // Rule 13.
        let unmanaged_users = owners.iter().filter(|&&o| o == Owner::Unmanaged).count();
        let unmanaged_teams = self
            .teams
            .iter()
            .filter(|t| t.okta_group_id.is_none() && !teams.linked_now.contains(&t.id))
            .count();
        let active_managed_users = self
            .users
            .iter()
            .filter(|u| u.okta_id.is_some() && u.active)
            .count();
        let skipped_okta_ids: BTreeSet<String> = (0..n)
            .filter(|&i| self.skipped[i])
            .map(|i| self.okta_id(i).to_string())
            .collect();
        let skipped = skipped_okta_ids.len() + self.skipped_groups;
        Detailed {
            plan: Plan {
                changes,
                findings: std::mem::take(&mut self.findings),
                skipped,
                unmanaged: unmanaged_users + unmanaged_teams,
                active_managed_users,
                okta_users_in_scope: n,
            },
            skipped_okta_ids,
        }
    }
}

/// A team whose memberships a plan changes: a linked team (by position) or
/// the default team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum TeamSlot {
    Linked(usize),
    Default,
}

fn team_change_name(change: &Change) -> (&str, &str) {
    match change {
        Change::CreateTeam {
            name,
            okta_group_id,
        }
        | Change::LinkTeam {
            name,
            okta_group_id,
            ..
        } => (name, okta_group_id),
        _ => ("", ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OktaGroup, StoreMembership};
    use proptest::prelude::*;

    // -----------------------------------------------------------------------
    // Builders: tests read like the rules.
    // -----------------------------------------------------------------------

    fn okta_user(id: &str, email: &str) -> OktaUser {
        OktaUser {
            id: id.to_string(),
            status: "ACTIVE".to_string(),
            email: Some(email.to_string()),
            first_name: None,
            last_name: None,
            display_name: None,
            role: None,
        }
    }

    trait OktaUserExt {
        fn status(self, status: &str) -> Self;
        fn names(self, first: &str, last: &str) -> Self;
        fn display(self, display: &str) -> Self;
        fn role(self, role: &str) -> Self;
        fn email(self, email: Option<&str>) -> Self;
    }

    impl OktaUserExt for OktaUser {
        fn status(mut self, status: &str) -> Self {
            self.status = status.to_string();
            self
        }
        fn names(mut self, first: &str, last: &str) -> Self {
            self.first_name = Some(first.to_string());
            self.last_name = Some(last.to_string());
            self
        }
        fn display(mut self, display: &str) -> Self {
            self.display_name = Some(display.to_string());
            self
        }
        fn role(mut self, role: &str) -> Self {
            self.role = Some(role.to_string());
            self
        }
        fn email(mut self, email: Option<&str>) -> Self {
            self.email = email.map(str::to_string);
            self
        }
    }

    fn store_user(id: i64, email: &str) -> StoreUser {
        StoreUser {
            id,
            email: email.to_string(),
            okta_id: None,
            first_name: String::new(),
            last_name: String::new(),
            display_name: String::new(),
            active: true,
        }
    }

    trait StoreUserExt {
        fn managed(self, okta_id: &str) -> Self;
        fn inactive(self) -> Self;
        fn names(self, first: &str, last: &str, display: &str) -> Self;
    }

    impl StoreUserExt for StoreUser {
        fn managed(mut self, okta_id: &str) -> Self {
            self.okta_id = Some(okta_id.to_string());
            self
        }
        fn inactive(mut self) -> Self {
            self.active = false;
            self
        }
        fn names(mut self, first: &str, last: &str, display: &str) -> Self {
            self.first_name = first.to_string();
            self.last_name = last.to_string();
            self.display_name = display.to_string();
            self
        }
    }

    fn group(id: &str, name: &str, members: &[&str]) -> OktaGroup {
        OktaGroup {
            id: id.to_string(),
            name: name.to_string(),
            member_ids: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn team(id: i64, name: &str) -> StoreTeam {
        StoreTeam {
            id,
            name: name.to_string(),
            okta_group_id: None,
        }
    }

    fn linked_team(id: i64, name: &str, group_id: &str) -> StoreTeam {
        StoreTeam {
            okta_group_id: Some(group_id.to_string()),
            ..team(id, name)
        }
    }

    fn member(team_id: i64, user_id: i64, role: Role) -> StoreMembership {
        StoreMembership {
            team_id,
            user_id,
            role,
        }
    }

    #[derive(Debug, Clone)]
    struct World {
        okta: OktaState,
        store: StoreState,
        policy: Policy,
    }

    fn world() -> World {
        World {
            okta: OktaState::default(),
            store: StoreState::default(),
            policy: Policy {
                default_team: None,
                create_missing_teams: false,
            },
        }
    }

    impl World {
        fn okta(mut self, users: Vec<OktaUser>) -> Self {
            self.okta.users = users;
            self
        }
        fn groups(mut self, groups: Vec<OktaGroup>) -> Self {
            self.okta.groups = groups;
            self
        }
        fn missing_groups(mut self, names: &[&str]) -> Self {
            self.okta.missing_group_names = names.iter().map(|n| n.to_string()).collect();
            self
        }
        fn store(mut self, users: Vec<StoreUser>) -> Self {
            self.store.users = users;
            self
        }
        fn teams(mut self, teams: Vec<StoreTeam>) -> Self {
            self.store.teams = teams;
            self
        }
        fn memberships(mut self, memberships: Vec<StoreMembership>) -> Self {
            self.store.memberships = memberships;
            self
        }
        fn default_team(mut self, name: &str) -> Self {
            self.policy.default_team = Some(name.to_string());
            self
        }
        fn create_missing(mut self) -> Self {
            self.policy.create_missing_teams = true;
            self
        }
        fn plan(&self) -> Plan {
            plan(&self.okta, &self.store, &self.policy)
        }
    }

    fn kinds(plan: &Plan) -> Vec<&'static str> {
        plan.changes.iter().map(Change::kind).collect()
    }

    fn attrs(email: &str, first: &str, last: &str, display: &str) -> UserAttrs {
        UserAttrs {
            email: email.to_string(),
            first_name: first.to_string(),
            last_name: last.to_string(),
            display_name: display.to_string(),
        }
    }

    /// The findings of `severity` whose message contains every needle.
    fn findings_with(plan: &Plan, severity: Severity, needles: &[&str]) -> usize {
        plan.findings
            .iter()
            .filter(|f| f.severity == severity && needles.iter().all(|n| f.message.contains(n)))
            .count()
    }

    fn create(okta_id: &str, email: &str) -> Change {
        Change::CreateUser {
            okta_id: okta_id.to_string(),
            attrs: attrs(email, "", "", ""),
        }
    }

    fn deactivate(user_id: i64, okta_id: &str, email: &str, reason: DeactivationReason) -> Change {
        Change::DeactivateUser {
            user_id,
            okta_id: okta_id.to_string(),
            email: email.to_string(),
            reason,
        }
    }

    fn update(user_id: i64, okta_id: &str, before: UserAttrs, after: UserAttrs) -> Change {
        Change::UpdateUser {
            user_id,
            okta_id: okta_id.to_string(),
            before,
            after,
        }
    }

    fn add(team: TeamRef, team_name: &str, user: UserRef, email: &str, role: Role) -> Change {
        Change::AddMembership {
            team,
            team_name: team_name.to_string(),
            user,
            email: email.to_string(),
            role,
        }
    }

    fn remove(team_id: i64, team_name: &str, user_id: i64, email: &str, role: Role) -> Change {
        Change::RemoveMembership {
            team_id,
            team_name: team_name.to_string(),
            user_id,
            email: email.to_string(),
            role,
        }
    }

    fn new_user(okta_id: &str) -> UserRef {
        UserRef::New {
            okta_id: okta_id.to_string(),
        }
    }

    // -----------------------------------------------------------------------
    // Small helpers.
    // -----------------------------------------------------------------------

    #[test]
    fn active_like_statuses_table() {
        for (status, active) in [
            ("ACTIVE", true),
            ("PROVISIONED", true),
            ("RECOVERY", true),
            ("PASSWORD_EXPIRED", true),
            ("LOCKED_OUT", true),
            ("SUSPENDED", false),
            ("DEPROVISIONED", false),
            ("STAGED", false),
            ("active", false),
            ("", false),
        ] {
            assert_eq!(is_active_status(status), active, "{status}");
        }
    }

    #[test]
    fn role_normalization_table() {
        let unknown = |v: &str| {
            Err(UnknownRole {
                value: v.to_string(),
            })
        };
        for (raw, expected) in [
            (None, Ok(Role::Member)),
            (Some(""), Ok(Role::Member)),
            (Some("  "), Ok(Role::Member)),
            (Some("admin"), Ok(Role::Admin)),
            (Some("ADMIN"), Ok(Role::Admin)),
            (Some("Team Admin"), Ok(Role::Admin)),
            (Some("team_admin"), Ok(Role::Admin)),
            (Some("team-ADMIN"), Ok(Role::Admin)),
            (Some(" member "), Ok(Role::Member)),
            (Some("Team_Member"), Ok(Role::Member)),
            (Some("teammember"), Ok(Role::Member)),
            (Some("owner"), unknown("owner")),
            (Some("true"), unknown("true")),
            (Some("administrator"), unknown("administrator")),
            (Some("\u{a0}Admin\t"), Ok(Role::Admin)),
            (Some("ADM\u{130}N"), unknown("ADM\u{130}N")),
            (Some("\u{ff21}dmin"), unknown("\u{ff21}dmin")),
            (
                Some("team-member-team-member"),
                unknown("team-member-team-member"),
            ),
        ] {
            assert_eq!(normalize_role(raw), expected, "{raw:?}");
        }
        assert_eq!(UnknownRole::FALLBACK, Role::Member);
    }

    #[test]
    fn change_kinds_are_snake_case_names() {
        let w = world()
            .okta(vec![okta_user("00u1", "a@x.com")])
            .groups(vec![group("00g1", "Eng", &["00u1"])])
            .create_missing();
        let p = w.plan();
        assert_eq!(
            kinds(&p),
            ["team_created", "user_created", "membership_added"]
        );
        let all = [
            (
                Change::LinkTeam {
                    team_id: 1,
                    name: "T".into(),
                    okta_group_id: "g".into(),
                },
                "team_linked",
            ),
            (
                Change::LinkUser {
                    user_id: 1,
                    email: "e".into(),
                    okta_id: "o".into(),
                    previous_okta_id: None,
                },
                "user_linked",
            ),
            (
                update(1, "o", attrs("a", "", "", ""), attrs("b", "", "", "")),
                "user_updated",
            ),
            (
                Change::ReactivateUser {
                    user_id: 1,
                    okta_id: "o".into(),
                    email: "e".into(),
                },
                "user_reactivated",
            ),
            (
                deactivate(1, "o", "e", DeactivationReason::Inactive),
                "user_deactivated",
            ),
            (remove(1, "T", 1, "e", Role::Admin), "membership_removed"),
            (
                Change::ChangeRole {
                    team_id: 1,
                    team_name: "T".into(),
                    user_id: 1,
                    email: "e".into(),
                    from: Role::Admin,
                    to: Role::Member,
                },
                "role_changed",
            ),
        ];
        for (change, kind) in all {
            assert_eq!(change.kind(), kind);
        }
    }

    // -----------------------------------------------------------------------
    // Rule 1: email identity and skips.
    // -----------------------------------------------------------------------

    #[test]
    fn duplicate_emails_skip_both_users_with_an_error_naming_both_ids() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "a@x.com").names("New", "Name"),
                okta_user("00u2", " A@X.com"),
                okta_user("00u3", "b@x.com"),
            ])
            .store(vec![store_user(1, "a@x.com").managed("00u1")]);
        let p = w.plan();
        assert_eq!(p.changes, [create("00u3", "b@x.com")]);
        assert_eq!(findings_with(&p, Severity::Error, &["00u1", "00u2"]), 1);
        assert_eq!(p.skipped, 2);
    }

    #[test]
    fn user_without_usable_email_is_skipped_with_a_warning() {
        for email in [None, Some(""), Some("   "), Some("not-an-email")] {
            let w = world()
                .okta(vec![
                    okta_user("00u1", "x").email(email).status("SUSPENDED"),
                    okta_user("00u2", "x").email(email),
                ])
                .store(vec![store_user(1, "a@x.com").managed("00u1")]);
            let p = w.plan();
            // Skipped, but the suspended 00u1's Writer user is deactivated
            // through its id link.
            assert_eq!(p.changes.len(), 1, "{email:?}: {:?}", p.changes);
            assert!(matches!(
                &p.changes[0],
                Change::DeactivateUser { user_id: 1, .. }
            ));
            assert_eq!(findings_with(&p, Severity::Warning, &["00u1", "usable"]), 1);
            assert_eq!(findings_with(&p, Severity::Warning, &["00u2", "usable"]), 1);
            assert_eq!(p.skipped, 2);
        }
    }

    #[test]
    fn skipped_inactive_user_is_still_deactivated_through_its_id_link() {
        // 00u1 is suspended and shares its email with 00u2: both are skipped
        // (no update, no link), but the Writer user linked to 00u1 is still
        // deactivated and leaves its linked team: the id link needs no email.
        let w = world()
            .okta(vec![
                okta_user("00u1", "a@x.com")
                    .status("SUSPENDED")
                    .names("X", "Y"),
                okta_user("00u2", "A@x.com"),
            ])
            .groups(vec![group("00g1", "Eng", &["00u2"])])
            .store(vec![store_user(1, "a@x.com").managed("00u1")])
            .teams(vec![linked_team(10, "Eng", "00g1")])
            .memberships(vec![member(10, 1, Role::Admin)]);
        let p = w.plan();
        assert_eq!(p.changes.len(), 2, "{:?}", p.changes);
        assert!(matches!(
            &p.changes[0],
            Change::RemoveMembership {
                team_id: 10,
                user_id: 1,
                ..
            }
        ));
        assert!(matches!(
            &p.changes[1],
            Change::DeactivateUser {
                user_id: 1,
                reason: DeactivationReason::Inactive,
                ..
            }
        ));
        assert_eq!(p.skipped, 2);
    }

    // -----------------------------------------------------------------------
    // Rule 2: attributes.
    // -----------------------------------------------------------------------

    #[test]
    fn display_name_falls_back_to_first_and_last_name() {
        let table = [
            (
                Some(" Ada "),
                Some("Lovelace"),
                None,
                attrs("a@x.com", "Ada", "Lovelace", "Ada Lovelace"),
            ),
            (
                Some("Ada"),
                None,
                Some("   "),
                attrs("a@x.com", "Ada", "", "Ada"),
            ),
            (None, Some("L"), None, attrs("a@x.com", "", "L", "L")),
            (None, None, None, attrs("a@x.com", "", "", "")),
            (
                Some("A"),
                Some("B"),
                Some(" The Countess "),
                attrs("a@x.com", "A", "B", "The Countess"),
            ),
        ];
        let p = world()
            .okta(vec![
                okta_user("00u1", "a@x.com").names("A", "B").display("Ada"),
            ])
            .plan();
        assert_eq!(
            p.changes,
            [Change::CreateUser {
                okta_id: "00u1".into(),
                attrs: attrs("a@x.com", "A", "B", "Ada")
            }]
        );
        for (first, last, display, expected) in table {
            let mut u = okta_user("00u1", "  a@x.com ");
            u.first_name = first.map(str::to_string);
            u.last_name = last.map(str::to_string);
            u.display_name = display.map(str::to_string);
            let p = world().okta(vec![u]).plan();
            assert_eq!(
                p.changes,
                [Change::CreateUser {
                    okta_id: "00u1".into(),
                    attrs: expected
                }]
            );
        }
    }

    // -----------------------------------------------------------------------
    // Rules 3-5: linked, link by email, rehire, create.
    // -----------------------------------------------------------------------

    #[test]
    fn linked_user_attributes_follow_okta() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "a@x.com").names("Ann", "Lee"),
                okta_user("00u2", "b@x.com"),
            ])
            .store(vec![
                store_user(1, "a@x.com")
                    .managed("00u1")
                    .names("Ann", "", "Ann"),
                store_user(2, "b@x.com").managed("00u2"),
            ]);
        let p = w.plan();
        assert_eq!(
            p.changes,
            [update(
                1,
                "00u1",
                attrs("a@x.com", "Ann", "", "Ann"),
                attrs("a@x.com", "Ann", "Lee", "Ann Lee")
            )]
        );
    }

    #[test]
    fn case_only_email_change_is_an_update_not_a_collision() {
        let w = world()
            .okta(vec![okta_user("00u1", "Ann@X.com")])
            .store(vec![store_user(1, "ann@x.com").managed("00u1")]);
        let p = w.plan();
        assert_eq!(
            p.changes,
            [update(
                1,
                "00u1",
                attrs("ann@x.com", "", "", ""),
                attrs("Ann@X.com", "", "", "")
            )]
        );
        assert!(p.findings.is_empty());
    }

    #[test]
    fn inactive_linked_user_is_reactivated() {
        let w = world()
            .okta(vec![okta_user("00u1", "a@x.com").status("LOCKED_OUT")])
            .store(vec![store_user(1, "a@x.com").managed("00u1").inactive()]);
        let p = w.plan();
        assert_eq!(kinds(&p), ["user_reactivated"]);
    }

    #[test]
    fn unmanaged_user_with_the_same_email_is_linked_not_duplicated() {
        let w = world()
            .okta(vec![okta_user("00u1", "ann@x.com").names("Ann", "")])
            .store(vec![store_user(1, "Ann@X.com").inactive()]);
        let p = w.plan();
        assert_eq!(
            p.changes,
            [
                Change::LinkUser {
                    user_id: 1,
                    email: "Ann@X.com".into(),
                    okta_id: "00u1".into(),
                    previous_okta_id: None
                },
                update(
                    1,
                    "00u1",
                    attrs("Ann@X.com", "", "", ""),
                    attrs("ann@x.com", "Ann", "", "Ann")
                ),
                Change::ReactivateUser {
                    user_id: 1,
                    okta_id: "00u1".into(),
                    email: "ann@x.com".into()
                },
            ]
        );
        assert_eq!(p.unmanaged, 0);
    }

    #[test]
    fn rehire_relinks_and_reactivates_instead_of_duplicating() {
        let w = world()
            .okta(vec![okta_user("00uNEW", "a@x.com")])
            .store(vec![store_user(1, "a@x.com").managed("00uOLD").inactive()]);
        let p = w.plan();
        assert_eq!(
            p.changes,
            [
                Change::LinkUser {
                    user_id: 1,
                    email: "a@x.com".into(),
                    okta_id: "00uNEW".into(),
                    previous_okta_id: Some("00uOLD".into())
                },
                Change::ReactivateUser {
                    user_id: 1,
                    okta_id: "00uNEW".into(),
                    email: "a@x.com".into()
                },
            ]
        );
    }

    #[test]
    fn email_of_another_in_scope_users_writer_user_is_a_collision() {
        // 00u1 (suspended) changed its Okta email, but its Writer user still
        // holds a@x.com: the new 00u2 is skipped, not linked to it.
        let w = world()
            .okta(vec![
                okta_user("00u1", "old.a@x.com").status("SUSPENDED"),
                okta_user("00u2", "A@x.com"),
            ])
            .store(vec![store_user(1, "a@x.com").managed("00u1")]);
        let p = w.plan();
        assert_eq!(
            p.changes,
            [deactivate(
                1,
                "00u1",
                "a@x.com",
                DeactivationReason::Inactive
            )]
        );
        assert_eq!(findings_with(&p, Severity::Error, &["00u2", "00u1"]), 1);
        assert_eq!(p.skipped, 1);
    }

    #[test]
    fn new_user_may_take_an_email_given_up_in_the_same_plan() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "a2@x.com"),
                okta_user("00u2", "a@x.com"),
            ])
            .store(vec![store_user(1, "a@x.com").managed("00u1")]);
        let p = w.plan();
        assert_eq!(
            p.changes,
            [
                update(
                    1,
                    "00u1",
                    attrs("a@x.com", "", "", ""),
                    attrs("a2@x.com", "", "", "")
                ),
                create("00u2", "a@x.com"),
            ]
        );
    }

    #[test]
    fn new_user_is_created_with_the_default_team_membership() {
        let w = world()
            .okta(vec![okta_user("00u1", "a@x.com").role("Team Admin")])
            .teams(vec![team(20, "Everyone")])
            .default_team("Everyone");
        let p = w.plan();
        assert_eq!(
            p.changes,
            [
                create("00u1", "a@x.com"),
                add(
                    TeamRef::Existing(20),
                    "Everyone",
                    new_user("00u1"),
                    "a@x.com",
                    Role::Admin
                ),
            ]
        );
    }

    #[test]
    fn missing_default_team_warns_once() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "a@x.com"),
                okta_user("00u2", "b@x.com"),
            ])
            .teams(vec![team(20, "everyone")])
            .default_team("Everyone");
        let p = w.plan();
        assert_eq!(kinds(&p), ["user_created", "user_created"]);
        assert_eq!(findings_with(&p, Severity::Warning, &["\"Everyone\""]), 1);
        assert_eq!(p.findings.len(), 1);
    }

    #[test]
    fn linked_default_team_gets_no_default_membership() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "a@x.com"),
                okta_user("00u2", "b@x.com"),
            ])
            .groups(vec![group("00g1", "Everyone", &["00u1"])])
            .teams(vec![linked_team(20, "Everyone", "00g1")])
            .default_team("Everyone");
        let p = w.plan();
        let adds: Vec<&Change> = p
            .changes
            .iter()
            .filter(|c| c.kind() == "membership_added")
            .collect();
        assert_eq!(
            adds,
            [&add(
                TeamRef::Existing(20),
                "Everyone",
                new_user("00u1"),
                "a@x.com",
                Role::Member
            )]
        );
        // Created by this plan from a group: linked, so no default rules and
        // no "missing default team" warning either.
        let w = world()
            .okta(vec![okta_user("00u1", "a@x.com")])
            .groups(vec![group("00g1", "Everyone", &[])])
            .default_team("Everyone")
            .create_missing();
        let p = w.plan();
        assert_eq!(kinds(&p), ["team_created", "user_created"]);
        assert!(p.findings.is_empty(), "{:?}", p.findings);
    }

    // -----------------------------------------------------------------------
    // Rule 6: deactivation.
    // -----------------------------------------------------------------------

    #[test]
    fn suspended_user_is_deactivated_and_removed_from_linked_teams() {
        let w = world()
            .okta(vec![okta_user("00u1", "a@x.com").status("SUSPENDED")])
            .groups(vec![group("00g1", "Eng", &["00u1"])])
            .store(vec![store_user(1, "a@x.com").managed("00u1")])
            .teams(vec![linked_team(10, "Eng", "00g1"), team(11, "Misc")])
            .memberships(vec![
                member(10, 1, Role::Admin),
                member(11, 1, Role::Member),
            ]);
        let p = w.plan();
        assert_eq!(
            p.changes,
            [
                remove(10, "Eng", 1, "a@x.com", Role::Admin),
                deactivate(1, "00u1", "a@x.com", DeactivationReason::Inactive),
            ]
        );
    }

    #[test]
    fn unassigned_user_is_deactivated_as_not_in_scope() {
        let w = world().okta(vec![okta_user("00u1", "a@x.com")]).store(vec![
            store_user(1, "a@x.com").managed("00u1"),
            store_user(2, "b@x.com").managed("00u2"),
            store_user(3, "c@x.com").managed("00u3").inactive(),
        ]);
        let p = w.plan();
        assert_eq!(
            p.changes,
            [deactivate(
                2,
                "00u2",
                "b@x.com",
                DeactivationReason::NotInScope
            )]
        );
        assert_eq!(p.active_managed_users, 2);
    }

    #[test]
    fn staged_user_is_not_created() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "a@x.com").status("STAGED"),
                okta_user("00u2", "b@x.com").status("DEPROVISIONED"),
            ])
            .store(vec![store_user(2, "b@x.com")]);
        let p = w.plan();
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        assert_eq!(p.unmanaged, 1);
    }

    #[test]
    fn inactive_user_keeps_its_attributes() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "new@x.com")
                    .status("SUSPENDED")
                    .names("New", "Name"),
            ])
            .store(vec![store_user(1, "a@x.com").managed("00u1")]);
        let p = w.plan();
        assert_eq!(
            p.changes,
            [deactivate(
                1,
                "00u1",
                "a@x.com",
                DeactivationReason::Inactive
            )]
        );
    }

    // -----------------------------------------------------------------------
    // Rule 7: email changes.
    // -----------------------------------------------------------------------

    #[test]
    fn email_change_into_a_taken_email_is_skipped() {
        for holder in [
            store_user(2, "B@x.com"),
            store_user(2, "b@x.com").managed("00uGONE"),
            store_user(2, "b@x.com").managed("00u3"),
        ] {
            let w = world()
                .okta(vec![
                    okta_user("00u1", "b@x.com").names("New", ""),
                    okta_user("00u3", "c@x.com").status("SUSPENDED"),
                ])
                .store(vec![
                    store_user(1, "a@x.com").managed("00u1"),
                    holder.clone(),
                ]);
            let p = w.plan();
            assert!(
                !p.changes.iter().any(|c| matches!(
                    c,
                    Change::UpdateUser { user_id: 1, .. } | Change::LinkUser { .. }
                )),
                "{holder:?}: {:?}",
                p.changes
            );
            let holder_okta = holder.okta_id.as_deref().unwrap_or("unmanaged");
            assert_eq!(
                findings_with(&p, Severity::Error, &["00u1", "Writer user 2", holder_okta]),
                1,
                "{:?}",
                p.findings
            );
            assert_eq!(p.skipped, 1);
        }
    }

    #[test]
    fn email_swap_chain_is_ordered() {
        // 00u1 takes b@ from 00u2, which moves on to c@: 00u2 goes first
        // although b@ sorts before c@.
        let w = world()
            .okta(vec![
                okta_user("00u1", "b@x.com"),
                okta_user("00u2", "c@x.com"),
                okta_user("00u3", "a@x.com"),
            ])
            .store(vec![
                store_user(1, "a@x.com").managed("00u1"),
                store_user(2, "b@x.com").managed("00u2"),
            ]);
        let p = w.plan();
        let order: Vec<(i64, &str)> = p
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::UpdateUser { user_id, after, .. } => Some((*user_id, after.email.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(order, [(2, "c@x.com"), (1, "b@x.com")]);
        assert_eq!(p.changes.last(), Some(&create("00u3", "a@x.com")));
        assert!(p.findings.is_empty());
    }

    #[test]
    fn email_swap_cycle_skips_every_user_in_it() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "b@x.com"),
                okta_user("00u2", "c@x.com"),
                okta_user("00u3", "a@x.com"),
                okta_user("00u4", "e@x.com"),
            ])
            .store(vec![
                store_user(1, "a@x.com").managed("00u1"),
                store_user(2, "b@x.com").managed("00u2"),
                store_user(3, "c@x.com").managed("00u3"),
                store_user(4, "d@x.com").managed("00u4"),
            ]);
        let p = w.plan();
        assert_eq!(kinds(&p), ["user_updated"]);
        assert_eq!(
            findings_with(&p, Severity::Error, &["00u1", "00u2", "00u3", "cycle"]),
            1
        );
        assert_eq!(p.skipped, 3);
    }

    #[test]
    fn email_change_collision_cascades_along_the_chain() {
        // 00u2 cannot take c@ (unmanaged), so it keeps b@, so 00u1 cannot
        // take b@ either.
        let w = world()
            .okta(vec![
                okta_user("00u1", "b@x.com"),
                okta_user("00u2", "c@x.com"),
            ])
            .store(vec![
                store_user(1, "a@x.com").managed("00u1"),
                store_user(2, "b@x.com").managed("00u2"),
                store_user(3, "c@x.com"),
            ]);
        let p = w.plan();
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        assert_eq!(findings_with(&p, Severity::Error, &["00u2", "c@x.com"]), 1);
        assert_eq!(findings_with(&p, Severity::Error, &["00u1", "00u2"]), 1);
        assert_eq!(p.skipped, 2);
    }

    // -----------------------------------------------------------------------
    // Rules 8 and 10: teams.
    // -----------------------------------------------------------------------

    #[test]
    fn group_rename_keeps_link_and_team_name() {
        let w = world()
            .okta(vec![okta_user("00u1", "a@x.com")])
            .groups(vec![group("00g1", "Platform", &["00u1"])])
            .store(vec![store_user(1, "a@x.com").managed("00u1")])
            .teams(vec![
                linked_team(10, "Engineering", "00g1"),
                team(11, "Platform"),
            ]);
        let p = w.plan();
        assert_eq!(
            p.changes,
            [add(
                TeamRef::Existing(10),
                "Engineering",
                UserRef::Existing(1),
                "a@x.com",
                Role::Member
            )]
        );
    }

    #[test]
    fn first_link_needs_the_identical_team_name() {
        let w = world()
            .okta(vec![okta_user("00u1", "a@x.com")])
            .groups(vec![group("00g1", "Sales", &["00u1"])])
            .store(vec![store_user(1, "a@x.com").managed("00u1")])
            .teams(vec![team(10, "sales")]);
        let p = w.plan();
        assert!(p.changes.is_empty());
        assert_eq!(findings_with(&p, Severity::Warning, &["00g1", "Sales"]), 1);
        assert_eq!(p.skipped, 1);

        let w = w.teams(vec![team(10, "sales"), team(11, "Sales")]);
        let p = w.plan();
        assert_eq!(
            p.changes,
            [
                Change::LinkTeam {
                    team_id: 11,
                    name: "Sales".into(),
                    okta_group_id: "00g1".into()
                },
                add(
                    TeamRef::Existing(11),
                    "Sales",
                    UserRef::Existing(1),
                    "a@x.com",
                    Role::Member
                ),
            ]
        );
        assert_eq!(p.unmanaged, 1);
    }

    #[test]
    fn duplicate_group_names_link_none_with_an_error() {
        let w = world()
            .groups(vec![
                group("00g2", "Eng", &[]),
                group("00g1", "Eng", &[]),
                group("00g3", "Ops", &[]),
            ])
            .teams(vec![team(10, "Eng")])
            .create_missing();
        let p = w.plan();
        assert_eq!(
            p.changes,
            [Change::CreateTeam {
                name: "Ops".into(),
                okta_group_id: "00g3".into()
            }]
        );
        assert_eq!(findings_with(&p, Severity::Error, &["00g1, 00g2"]), 1);
        assert_eq!(p.skipped, 2);
    }

    #[test]
    fn team_linked_to_another_group_is_skipped_with_a_warning() {
        let w = world()
            .groups(vec![group("00g1", "Eng", &[])])
            .teams(vec![linked_team(10, "Eng", "00g9")])
            .create_missing();
        let p = w.plan();
        assert!(p.changes.is_empty());
        assert_eq!(findings_with(&p, Severity::Warning, &["00g1", "00g9"]), 1);
        assert_eq!(
            findings_with(&p, Severity::Warning, &["orphaned link", "00g9"]),
            1
        );
        assert_eq!(p.skipped, 1);
    }

    #[test]
    fn missing_team_is_created_only_when_create_missing_is_set() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "a@x.com").role("admin"),
                okta_user("00u2", "b@x.com"),
            ])
            .groups(vec![group("00g1", "New", &["00u2", "00u1"])])
            .store(vec![store_user(1, "a@x.com").managed("00u1")]);
        let p = w.plan();
        assert_eq!(kinds(&p), ["user_created"]);
        assert_eq!(
            findings_with(&p, Severity::Warning, &["00g1", "New", "create_missing"]),
            1
        );
        assert_eq!(p.skipped, 1);

        let p = w.create_missing().plan();
        let new_team = || TeamRef::New { name: "New".into() };
        assert_eq!(
            p.changes,
            [
                Change::CreateTeam {
                    name: "New".into(),
                    okta_group_id: "00g1".into()
                },
                create("00u2", "b@x.com"),
                add(
                    new_team(),
                    "New",
                    UserRef::Existing(1),
                    "a@x.com",
                    Role::Admin
                ),
                add(new_team(), "New", new_user("00u2"), "b@x.com", Role::Member),
            ]
        );
        assert_eq!(p.skipped, 0);
    }

    #[test]
    fn missing_group_names_warn_without_skipping() {
        let p = world().missing_groups(&["Ghost", "Ghost"]).plan();
        assert_eq!(findings_with(&p, Severity::Warning, &["Ghost"]), 1);
        assert_eq!(p.skipped, 0);
    }

    #[test]
    fn orphaned_link_keeps_members() {
        let w = world()
            .okta(vec![okta_user("00u1", "a@x.com").status("SUSPENDED")])
            .store(vec![store_user(1, "a@x.com").managed("00u1")])
            .teams(vec![linked_team(10, "Old", "00gOLD")])
            .memberships(vec![member(10, 1, Role::Admin)]);
        let p = w.plan();
        assert_eq!(
            p.changes,
            [deactivate(
                1,
                "00u1",
                "a@x.com",
                DeactivationReason::Inactive
            )]
        );
        assert_eq!(
            findings_with(&p, Severity::Warning, &["orphaned link", "Old", "00gOLD"]),
            1
        );
    }

    // -----------------------------------------------------------------------
    // Rules 9, 11, 12: memberships and roles.
    // -----------------------------------------------------------------------

    #[test]
    fn memberships_follow_the_group() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "a@x.com"),
                okta_user("00u2", "b@x.com"),
                okta_user("00u3", "c@x.com"),
            ])
            .groups(vec![group(
                "00g1",
                "Eng",
                &["00u1", "00u1", "00u3", "00uOUT", "00uGONE"],
            )])
            .store(vec![
                store_user(1, "a@x.com").managed("00u1"),
                store_user(2, "b@x.com").managed("00u2"),
                store_user(3, "c@x.com").managed("00u3"),
                store_user(4, "d@x.com"),
                store_user(5, "e@x.com").managed("00uGONE"),
            ])
            .teams(vec![linked_team(10, "Eng", "00g1")])
            .memberships(vec![
                member(10, 2, Role::Member),
                member(10, 3, Role::Member),
                member(10, 3, Role::Member),
                member(10, 4, Role::Admin),
                member(10, 5, Role::Member),
                member(10, 99, Role::Member),
            ]);
        let p = w.plan();
        assert_eq!(
            p.changes,
            [
                add(
                    TeamRef::Existing(10),
                    "Eng",
                    UserRef::Existing(1),
                    "a@x.com",
                    Role::Member
                ),
                remove(10, "Eng", 2, "b@x.com", Role::Member),
                remove(10, "Eng", 5, "e@x.com", Role::Member),
                deactivate(5, "00uGONE", "e@x.com", DeactivationReason::NotInScope),
            ]
        );
    }

    #[test]
    fn demotion_in_okta_demotes_in_writer() {
        let w = world()
            .okta(vec![okta_user("00u1", "a@x.com").role("member")])
            .groups(vec![group("00g1", "Eng", &["00u1"])])
            .store(vec![store_user(1, "a@x.com").managed("00u1")])
            .teams(vec![linked_team(10, "Eng", "00g1"), team(20, "Everyone")])
            .memberships(vec![member(10, 1, Role::Admin), member(20, 1, Role::Admin)])
            .default_team("Everyone");
        let p = w.plan();
        let changed: Vec<(i64, Role, Role)> = p
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::ChangeRole {
                    team_id, from, to, ..
                } => Some((*team_id, *from, *to)),
                _ => None,
            })
            .collect();
        assert_eq!(
            changed,
            [
                (10, Role::Admin, Role::Member),
                (20, Role::Admin, Role::Member)
            ]
        );
        assert_eq!(p.changes.len(), 2);
    }

    #[test]
    fn default_team_membership_only_at_creation() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "a@x.com"),
                okta_user("00u2", "b@x.com").role("admin"),
                okta_user("00u4", "d@x.com").status("SUSPENDED"),
                okta_user("00u5", "e@x.com").role("admin"),
            ])
            .store(vec![
                store_user(1, "a@x.com").managed("00u1"),
                store_user(2, "b@x.com").managed("00u2"),
                store_user(3, "c@x.com"),
                store_user(4, "d@x.com").managed("00u4"),
            ])
            .teams(vec![team(20, "Everyone")])
            .memberships(vec![
                member(20, 2, Role::Member),
                member(20, 3, Role::Member),
                member(20, 4, Role::Admin),
            ])
            .default_team("Everyone");
        let p = w.plan();
        assert_eq!(
            kinds(&p),
            [
                "user_created",
                "membership_added",
                "role_changed",
                "user_deactivated"
            ]
        );
        assert!(matches!(
            &p.changes[1],
            Change::AddMembership { user: UserRef::New { okta_id }, role: Role::Admin, .. }
                if okta_id == "00u5"
        ));
        assert!(matches!(
            &p.changes[2],
            Change::ChangeRole {
                user_id: 2,
                to: Role::Admin,
                ..
            }
        ));
    }

    #[test]
    fn unknown_role_is_member_with_one_warning() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "a@x.com").role("boss"),
                okta_user("00u2", "b@x.com")
                    .role("boss")
                    .status("SUSPENDED"),
            ])
            .groups(vec![group("00g1", "Eng", &["00u1"])])
            .teams(vec![team(10, "Eng")]);
        let p = w.plan();
        assert_eq!(
            p.findings,
            [Finding {
                severity: Severity::Warning,
                message: "Okta user 00u1 has the unknown role value \"boss\"; using role member"
                    .into()
            }]
        );
        assert!(p.changes.iter().any(|c| matches!(
            c,
            Change::AddMembership {
                role: Role::Member,
                ..
            }
        )));
    }

    // -----------------------------------------------------------------------
    // Rules 3, 13-15: scope of management, report numbers, order, duplicates.
    // -----------------------------------------------------------------------

    #[test]
    fn unmanaged_users_and_teams_are_never_touched() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "a@x.com").status("SUSPENDED"),
                okta_user("00u2", "zed@x.com"),
            ])
            .groups(vec![group("00g1", "Eng", &["00u2"])])
            .store(vec![
                store_user(1, "a@x.com"),
                store_user(2, "b@x.com").inactive(),
            ])
            .teams(vec![team(10, "Misc"), linked_team(11, "Eng", "00g1")])
            .memberships(vec![
                member(10, 1, Role::Admin),
                member(11, 1, Role::Admin),
                member(11, 2, Role::Member),
            ]);
        let p = w.plan();
        assert_eq!(kinds(&p), ["user_created", "membership_added"]);
        assert_eq!(p.unmanaged, 3);
    }

    #[test]
    fn report_numbers_and_counts() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "a@x.com"),
                okta_user("00u2", "b@x.com"),
                okta_user("00u2", "b@x.com"),
                okta_user("00u3", "no-email"),
            ])
            .groups(vec![group("00g1", "Eng", &["00u1", "00u2"])])
            .store(vec![
                store_user(1, "a@x.com").managed("00u1").inactive(),
                store_user(2, "x@x.com").managed("00uX"),
                store_user(3, "y@x.com").managed("00uY"),
                store_user(4, "z@x.com"),
            ])
            .teams(vec![team(10, "Eng"), team(11, "Misc")]);
        let p = w.plan();
        assert_eq!(p.okta_users_in_scope, 3);
        assert_eq!(p.active_managed_users, 2);
        assert_eq!(p.unmanaged, 2);
        assert_eq!(p.skipped, 1);
        assert_eq!(
            counts(&p),
            Counts {
                users_created: 1,
                users_updated: 0,
                users_deactivated: 2,
                users_reactivated: 1,
                users_linked: 0,
                memberships_added: 2,
                memberships_removed: 0,
                roles_changed: 0,
                teams_linked: 1,
                teams_created: 0,
                skipped: 1,
                unmanaged: 2,
            }
        );
    }

    #[test]
    fn counts_serialize_in_the_report_order() {
        let names = [
            "users_created",
            "users_updated",
            "users_deactivated",
            "users_reactivated",
            "users_linked",
            "memberships_added",
            "memberships_removed",
            "roles_changed",
            "teams_linked",
            "teams_created",
            "skipped",
            "unmanaged",
        ];
        // A serializer that records field names, so no JSON crate is needed.
        struct Names(Vec<&'static str>);
        impl serde::ser::SerializeStruct for &mut Names {
            type Ok = ();
            type Error = std::fmt::Error;
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                key: &'static str,
                _: &T,
            ) -> Result<(), Self::Error> {
                self.0.push(key);
                Ok(())
            }
            fn end(self) -> Result<(), Self::Error> {
                Ok(())
            }
        }
        struct Ser<'n>(&'n mut Names);
        macro_rules! unsupported {
            ($($name:ident($($t:ty),*)),*) => {$(
                fn $name(self, $(_: $t),*) -> Result<(), std::fmt::Error> { Err(std::fmt::Error) }
            )*};
        }
        impl<'n> serde::Serializer for Ser<'n> {
            type Ok = ();
            type Error = std::fmt::Error;
            type SerializeSeq = serde::ser::Impossible<(), std::fmt::Error>;
            type SerializeTuple = serde::ser::Impossible<(), std::fmt::Error>;
            type SerializeTupleStruct = serde::ser::Impossible<(), std::fmt::Error>;
            type SerializeTupleVariant = serde::ser::Impossible<(), std::fmt::Error>;
            type SerializeMap = serde::ser::Impossible<(), std::fmt::Error>;
            type SerializeStruct = &'n mut Names;
            type SerializeStructVariant = serde::ser::Impossible<(), std::fmt::Error>;
            unsupported!(
                serialize_bool(bool),
                serialize_i8(i8),
                serialize_i16(i16),
                serialize_i32(i32),
                serialize_i64(i64),
                serialize_u8(u8),
                serialize_u16(u16),
                serialize_u32(u32),
                serialize_u64(u64),
                serialize_f32(f32),
                serialize_f64(f64),
                serialize_char(char),
                serialize_str(&str),
                serialize_bytes(&[u8]),
                serialize_none(),
                serialize_unit(),
                serialize_unit_struct(&'static str),
                serialize_unit_variant(&'static str, u32, &'static str)
            );
            fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), Self::Error> {
                Err(std::fmt::Error)
            }
            fn serialize_newtype_struct<T: ?Sized + Serialize>(
                self,
                _: &'static str,
                _: &T,
            ) -> Result<(), Self::Error> {
                Err(std::fmt::Error)
            }
            fn serialize_newtype_variant<T: ?Sized + Serialize>(
                self,
                _: &'static str,
                _: u32,
                _: &'static str,
                _: &T,
            ) -> Result<(), Self::Error> {
                Err(std::fmt::Error)
            }
            fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
                Err(std::fmt::Error)
            }
            fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Self::Error> {
                Err(std::fmt::Error)
            }
            fn serialize_tuple_struct(
                self,
                _: &'static str,
                _: usize,
            ) -> Result<Self::SerializeTupleStruct, Self::Error> {
                Err(std::fmt::Error)
            }
            fn serialize_tuple_variant(
                self,
                _: &'static str,
                _: u32,
                _: &'static str,
                _: usize,
            ) -> Result<Self::SerializeTupleVariant, Self::Error> {
                Err(std::fmt::Error)
            }
            fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
                Err(std::fmt::Error)
            }
            fn serialize_struct(
                self,
                _: &'static str,
                _: usize,
            ) -> Result<Self::SerializeStruct, Self::Error> {
                Ok(self.0)
            }
            fn serialize_struct_variant(
                self,
                _: &'static str,
                _: u32,
                _: &'static str,
                _: usize,
            ) -> Result<Self::SerializeStructVariant, Self::Error> {
                Err(std::fmt::Error)
            }
        }
        let mut seen = Names(Vec::new());
        assert!(Counts::default().serialize(Ser(&mut seen)).is_ok());
        assert_eq!(seen.0, names);
    }

    #[test]
    fn duplicate_okta_ids_are_one_user() {
        let u = okta_user("00u1", "a@x.com");
        let p = world().okta(vec![u.clone(), u]).plan();
        assert_eq!(p.changes, [create("00u1", "a@x.com")]);
        assert!(p.findings.is_empty());
        assert_eq!(p.okta_users_in_scope, 1);
    }

    #[test]
    fn change_order_follows_rule_14() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "a@x.com").names("A", ""),
                okta_user("00u2", "b@x.com"),
                okta_user("00u3", "c@x.com").role("admin"),
                okta_user("00u4", "d@x.com").status("SUSPENDED"),
                okta_user("00u5", "e@x.com"),
            ])
            .groups(vec![
                group("00g1", "Eng", &["00u1", "00u2", "00u3", "00u5"]),
                group("00g2", "Ops", &["00u1"]),
                group("00g3", "New", &["00u1"]),
            ])
            .store(vec![
                store_user(1, "a@x.com").managed("00u1").inactive(),
                store_user(2, "b@x.com"),
                store_user(3, "c@x.com").managed("00u3"),
                store_user(4, "d@x.com").managed("00u4"),
            ])
            .teams(vec![linked_team(10, "Eng", "00g1"), team(11, "Ops")])
            .memberships(vec![
                member(10, 3, Role::Member),
                member(10, 4, Role::Member),
            ])
            .create_missing();
        let p = w.plan();
        assert_eq!(
            kinds(&p),
            [
                "team_created",
                "team_linked",
                "user_linked",
                "user_updated",
                "user_created",
                "user_reactivated",
                "membership_added",
                "membership_added",
                "membership_added",
                "membership_added",
                "membership_added",
                "role_changed",
                "membership_removed",
                "user_deactivated",
            ]
        );
        // Within a kind: by team name, then email.
        let adds: Vec<(&str, &str)> = p
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::AddMembership {
                    team_name, email, ..
                } => Some((team_name.as_str(), email.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            adds,
            [
                ("Eng", "a@x.com"),
                ("Eng", "b@x.com"),
                ("Eng", "e@x.com"),
                ("New", "a@x.com"),
                ("Ops", "a@x.com")
            ]
        );
    }

    #[test]
    fn plan_does_not_depend_on_input_order() {
        let w = world()
            .okta(vec![
                okta_user("00u1", "b@x.com"),
                okta_user("00u2", "c@x.com").role("admin"),
                okta_user("00u3", "a@x.com"),
                okta_user("00u4", "D@x.com").status("SUSPENDED"),
                okta_user("00u5", "d@x.com"),
            ])
            .groups(vec![
                group("00g1", "Eng", &["00u1", "00u2", "00u3"]),
                group("00g2", "Eng", &[]),
                group("00g3", "Ops", &["00u3", "00u1"]),
            ])
            .store(vec![
                store_user(1, "a@x.com").managed("00u1"),
                store_user(2, "b@x.com").managed("00u2"),
                store_user(3, "z@x.com").managed("00u9"),
            ])
            .teams(vec![team(10, "Ops"), team(11, "Eng")])
            .memberships(vec![
                member(10, 3, Role::Admin),
                member(10, 2, Role::Member),
            ])
            .create_missing()
            .default_team("Everyone");
        let mut reversed = w.clone();
        reversed.okta.users.reverse();
        reversed.okta.groups.reverse();
        for g in &mut reversed.okta.groups {
            g.member_ids.reverse();
        }
        reversed.store.users.reverse();
        reversed.store.teams.reverse();
        reversed.store.memberships.reverse();
        assert_eq!(w.plan(), reversed.plan());
    }

    // -----------------------------------------------------------------------
    // Rule 16: the guard.
    // -----------------------------------------------------------------------

    fn limits(max: u32, percent: f64, removals: u32) -> SafetyLimits {
        SafetyLimits {
            max_deactivations: max,
            max_deactivations_percent: percent,
            max_membership_removals: removals,
        }
    }

    fn plan_with(deactivations: usize, removals: usize, active: usize, in_scope: usize) -> Plan {
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

    // -----------------------------------------------------------------------
    // Properties.
    // -----------------------------------------------------------------------

    /// Applies a plan the way the store would, checking every change against
    /// the state it applies to (the store's unique constraints included).
    fn apply(store: &StoreState, plan: &Plan) -> Result<StoreState, String> {
        let mut s = store.clone();
        let mut next_user = s.users.iter().map(|u| u.id).max().unwrap_or(0) + 1;
        let mut next_team = s.teams.iter().map(|t| t.id).max().unwrap_or(0) + 1;
        let mut new_users: HashMap<String, i64> = HashMap::new();
        let mut new_teams: HashMap<String, i64> = HashMap::new();
        fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
            if ok { Ok(()) } else { Err(what()) }
        }
        fn user<'s>(
            s: &'s mut StoreState,
            id: i64,
            okta_id: &str,
        ) -> Result<&'s mut StoreUser, String> {
            s.users
                .iter_mut()
                .find(|u| u.id == id && u.okta_id.as_deref() == Some(okta_id))
                .ok_or_else(|| format!("no user {id} linked to {okta_id}"))
        }
        let email_free = |s: &StoreState, email: &str, except: i64| {
            !s.users
                .iter()
                .any(|u| u.id != except && email_key(&u.email) == email_key(email))
        };
        for c in &plan.changes {
            match c {
                Change::CreateTeam {
                    name,
                    okta_group_id,
                } => {
                    check(
                        !s.teams.iter().any(|t| {
                            t.name == *name || t.okta_group_id.as_ref() == Some(okta_group_id)
                        }),
                        || format!("{c:?}: name or group taken"),
                    )?;
                    s.teams.push(StoreTeam {
                        id: next_team,
                        name: name.clone(),
                        okta_group_id: Some(okta_group_id.clone()),
                    });
                    new_teams.insert(name.clone(), next_team);
                    next_team += 1;
                }
                Change::LinkTeam {
                    team_id,
                    name,
                    okta_group_id,
                } => {
                    check(
                        !s.teams
                            .iter()
                            .any(|t| t.okta_group_id.as_ref() == Some(okta_group_id)),
                        || format!("{c:?}: group taken"),
                    )?;
                    let t = s
                        .teams
                        .iter_mut()
                        .find(|t| t.id == *team_id && t.name == *name && t.okta_group_id.is_none())
                        .ok_or_else(|| format!("{c:?}: no such unlinked team"))?;
                    t.okta_group_id = Some(okta_group_id.clone());
                }
                Change::CreateUser { okta_id, attrs } => {
                    check(
                        !s.users.iter().any(|u| u.okta_id.as_ref() == Some(okta_id)),
                        || format!("{c:?}: okta id taken"),
                    )?;
                    check(email_free(&s, &attrs.email, -1), || {
                        format!("{c:?}: email taken")
                    })?;
                    s.users.push(StoreUser {
                        id: next_user,
                        email: attrs.email.clone(),
                        okta_id: Some(okta_id.clone()),
                        first_name: attrs.first_name.clone(),
                        last_name: attrs.last_name.clone(),
                        display_name: attrs.display_name.clone(),
                        active: true,
                    });
                    new_users.insert(okta_id.clone(), next_user);
                    next_user += 1;
                }
                Change::LinkUser {
                    user_id,
                    email,
                    okta_id,
                    previous_okta_id,
                } => {
                    check(
                        !s.users.iter().any(|u| u.okta_id.as_ref() == Some(okta_id)),
                        || format!("{c:?}: okta id taken"),
                    )?;
                    let u = s
                        .users
                        .iter_mut()
                        .find(|u| u.id == *user_id && u.okta_id == *previous_okta_id)
                        .ok_or_else(|| format!("{c:?}: no such user"))?;
                    check(u.email == *email, || format!("{c:?}: email differs"))?;
                    u.okta_id = Some(okta_id.clone());
                }
                Change::UpdateUser {
                    user_id,
                    okta_id,
                    before,
                    after,
                } => {
                    check(email_free(&s, &after.email, *user_id), || {
                        format!("{c:?}: email taken")
                    })?;
                    let u = user(&mut s, *user_id, okta_id)?;
                    check(store_attrs(u) == *before, || format!("{c:?}: stale before"))?;
                    check(before != after, || format!("{c:?}: no-op"))?;
                    u.email = after.email.clone();
                    u.first_name = after.first_name.clone();
                    u.last_name = after.last_name.clone();
                    u.display_name = after.display_name.clone();
                }
                Change::ReactivateUser {
                    user_id, okta_id, ..
                } => {
                    let u = user(&mut s, *user_id, okta_id)?;
                    check(!u.active, || format!("{c:?}: already active"))?;
                    u.active = true;
                }
                Change::DeactivateUser {
                    user_id, okta_id, ..
                } => {
                    let u = user(&mut s, *user_id, okta_id)?;
                    check(u.active, || format!("{c:?}: already inactive"))?;
                    u.active = false;
                }
                Change::AddMembership {
                    team, user, role, ..
                } => {
                    let team_id = match team {
                        TeamRef::Existing(id) => Some(*id),
                        TeamRef::New { name } => new_teams.get(name).copied(),
                    }
                    .ok_or_else(|| format!("{c:?}: unknown team"))?;
                    let user_id = match user {
                        UserRef::Existing(id) => Some(*id),
                        UserRef::New { okta_id } => new_users.get(okta_id).copied(),
                    }
                    .ok_or_else(|| format!("{c:?}: unknown user"))?;
                    check(
                        s.teams.iter().any(|t| t.id == team_id)
                            && s.users.iter().any(|u| u.id == user_id),
                        || format!("{c:?}: dangling"),
                    )?;
                    check(
                        !s.memberships
                            .iter()
                            .any(|m| m.team_id == team_id && m.user_id == user_id),
                        || format!("{c:?}: already a member"),
                    )?;
                    s.memberships.push(member(team_id, user_id, *role));
                }
                Change::RemoveMembership {
                    team_id,
                    user_id,
                    role,
                    ..
                } => {
                    let before = s.memberships.len();
                    s.memberships.retain(|m| {
                        !(m.team_id == *team_id && m.user_id == *user_id && m.role == *role)
                    });
                    check(s.memberships.len() + 1 == before, || {
                        format!("{c:?}: not exactly one membership")
                    })?;
                }
                Change::ChangeRole {
                    team_id,
                    user_id,
                    from,
                    to,
                    ..
                } => {
                    check(from != to, || format!("{c:?}: no-op"))?;
                    let m = s
                        .memberships
                        .iter_mut()
                        .find(|m| m.team_id == *team_id && m.user_id == *user_id)
                        .ok_or_else(|| format!("{c:?}: no membership"))?;
                    check(m.role == *from, || format!("{c:?}: stale role"))?;
                    m.role = *to;
                }
            }
        }
        Ok(s)
    }

    /// The store's unique constraints.
    fn store_is_consistent(s: &StoreState) -> Result<(), String> {
        let mut emails = HashSet::new();
        let mut okta_ids = HashSet::new();
        for u in &s.users {
            if !emails.insert(email_key(&u.email)) {
                return Err(format!("two users with email {}", u.email));
            }
            if let Some(k) = &u.okta_id
                && !okta_ids.insert(k.clone())
            {
                return Err(format!("two users with okta id {k}"));
            }
        }
        let mut names = HashSet::new();
        let mut groups = HashSet::new();
        for t in &s.teams {
            if !names.insert(t.name.clone()) {
                return Err(format!("two teams named {}", t.name));
            }
            if let Some(g) = &t.okta_group_id
                && !groups.insert(g.clone())
            {
                return Err(format!("two teams linked to {g}"));
            }
        }
        Ok(())
    }

    fn matches_okta(w: &World) -> Result<(), TestCaseError> {
        let d = plan_detailed(&w.okta, &w.store, &w.policy);
        let applied = apply(&w.store, &d.plan).unwrap_or_default();
        let mut okta: BTreeMap<&str, &OktaUser> = BTreeMap::new();
        for u in &w.okta.users {
            let e = okta.entry(u.id.as_str()).or_insert(u);
            if okta_user_key(u) < okta_user_key(e) {
                *e = u;
            }
        }
        let wanted = |k: &str| {
            okta.get(k)
                .filter(|u| is_active_status(&u.status) && !d.skipped_okta_ids.contains(k))
                .copied()
        };
        for id in okta.keys() {
            if let Some(u) = wanted(id) {
                let linked: Vec<&StoreUser> = applied
                    .users
                    .iter()
                    .filter(|s| s.okta_id.as_deref() == Some(*id))
                    .collect();
                prop_assert_eq!(linked.len(), 1, "{}", id);
                let email = usable_email(u.email.as_deref()).unwrap_or("");
                prop_assert_eq!(store_attrs(linked[0]), desired_attrs(u, email));
                prop_assert!(linked[0].active);
            }
        }
        for s in &applied.users {
            if let Some(k) = s.okta_id.as_deref()
                && wanted(k).is_none()
                && !d.skipped_okta_ids.contains(k)
            {
                prop_assert!(!s.active, "{:?} should be inactive", s);
            }
        }
        let pushed: BTreeMap<&str, &OktaGroup> =
            w.okta.groups.iter().map(|g| (g.id.as_str(), g)).collect();
        let user_okta: HashMap<i64, &str> = applied
            .users
            .iter()
            .filter_map(|u| Some((u.id, u.okta_id.as_deref()?)))
            .collect();
        for t in &applied.teams {
            let Some(g) = t.okta_group_id.as_deref().and_then(|g| pushed.get(g)) else {
                continue;
            };
            // A group listed twice was merged; skip such inputs here.
            if w.okta.groups.iter().filter(|x| x.id == g.id).count() > 1 {
                continue;
            }
            let members: HashMap<&str, Role> = applied
                .memberships
                .iter()
                .filter(|m| m.team_id == t.id)
                .filter_map(|m| Some((*user_okta.get(&m.user_id)?, m.role)))
                .collect();
            for (k, role) in &members {
                if d.skipped_okta_ids.contains(*k) {
                    continue;
                }
                let u = wanted(k);
                prop_assert!(
                    u.is_some() && g.member_ids.iter().any(|m| m == k),
                    "{} in {}",
                    k,
                    t.name
                );
                let expected = normalize_role(u.and_then(|u| u.role.as_deref()))
                    .unwrap_or(UnknownRole::FALLBACK);
                prop_assert_eq!(*role, expected);
            }
            for k in &g.member_ids {
                if wanted(k).is_some() {
                    prop_assert!(
                        members.contains_key(k.as_str()),
                        "{} missing from {}",
                        k,
                        t.name
                    );
                }
            }
        }
        Ok(())
    }

    fn converges(w: &World) -> Result<(), TestCaseError> {
        let p = w.plan();
        let applied = apply(&w.store, &p);
        prop_assert!(applied.is_ok(), "{:?}\n{:#?}", applied, p.changes);
        let applied = applied.unwrap_or_default();
        prop_assert_eq!(store_is_consistent(&applied), Ok(()));
        let again = plan(&w.okta, &applied, &w.policy);
        prop_assert!(
            again.changes.is_empty(),
            "not converged: {:#?}\nfirst: {:#?}",
            again.changes,
            p.changes
        );
        prop_assert_eq!(again.skipped, p.skipped);
        Ok(())
    }

    /// Store users 0..n+2 hold distinct emails (managed or not; the last two
    /// linked to Okta ids that are not in scope); Okta users 0..n take a
    /// shuffled set of the same emails, in varying case.
    fn arb_email_moves() -> impl Strategy<Value = World> {
        let pool: Vec<&'static str> = EMAILS[..8].to_vec();
        (2..7usize)
            .prop_flat_map(move |n| {
                (
                    Just(n),
                    Just(pool.clone()).prop_shuffle(),
                    Just(pool.clone()).prop_shuffle(),
                    prop::collection::vec(0..4u8, n + 2),
                    prop::collection::vec(0..6u8, n),
                )
            })
            .prop_map(|(n, store_emails, okta_emails, store_kind, okta_kind)| {
                let users = (0..n + 2)
                    .map(|i| {
                        let u = store_user(i as i64 + 1, store_emails[i]);
                        match store_kind[i] {
                            0 => u,
                            1 => u.managed(&format!("00u{i}")).inactive(),
                            _ => u.managed(&format!("00u{i}")),
                        }
                    })
                    .collect();
                let okta_users = (0..n)
                    .map(|i| {
                        let email = if okta_kind[i] == 1 {
                            okta_emails[i].to_uppercase()
                        } else {
                            okta_emails[i].to_string()
                        };
                        let u = okta_user(&format!("00u{i}"), &email);
                        if okta_kind[i] == 0 {
                            u.status("SUSPENDED")
                        } else {
                            u
                        }
                    })
                    .collect();
                world().okta(okta_users).store(users)
            })
    }

    const EMAILS: [&str; 9] = [
        "a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com", "f@x.com", "g@x.com", "h@x.com",
        "bad",
    ];
    const STATUSES: [&str; 8] = [
        "ACTIVE",
        "ACTIVE",
        "ACTIVE",
        "SUSPENDED",
        "STAGED",
        "DEPROVISIONED",
        "PROVISIONED",
        "LOCKED_OUT",
    ];
    const NAMES: [Option<&str>; 3] = [None, Some("Ann"), Some(" Bob ")];
    const ROLES: [Option<&str>; 5] = [
        None,
        Some("admin"),
        Some("Team_Member"),
        Some("TEAM ADMIN"),
        Some("boss"),
    ];
    const GROUP_NAMES: [&str; 4] = ["Eng", "Sales", "Everyone", "eng"];
    const TEAM_NAMES: [&str; 4] = ["Eng", "Sales", "Everyone", "Misc"];

    fn arb_email() -> impl Strategy<Value = String> {
        (0..EMAILS.len(), 0..3u8).prop_map(|(i, case)| match case {
            0 => EMAILS[i].to_string(),
            1 => EMAILS[i].to_uppercase(),
            _ => format!(" {} ", EMAILS[i].replacen('a', "A", 1)),
        })
    }

    fn arb_okta_user() -> impl Strategy<Value = OktaUser> {
        (
            0..8usize,
            0..STATUSES.len(),
            prop::option::weighted(0.9, arb_email()),
            0..NAMES.len(),
            0..NAMES.len(),
            0..NAMES.len(),
            0..ROLES.len(),
        )
            .prop_map(|(id, status, email, first, last, display, role)| OktaUser {
                id: format!("00u{id}"),
                status: STATUSES[status].to_string(),
                email,
                first_name: NAMES[first].map(str::to_string),
                last_name: NAMES[last].map(str::to_string),
                display_name: NAMES[display].map(str::to_string),
                role: ROLES[role].map(str::to_string),
            })
    }

    fn arb_group() -> impl Strategy<Value = OktaGroup> {
        (
            0..4usize,
            0..GROUP_NAMES.len(),
            prop::collection::vec(0..10usize, 0..10),
        )
            .prop_map(|(id, name, members)| OktaGroup {
                id: format!("00g{id}"),
                name: GROUP_NAMES[name].to_string(),
                member_ids: members.into_iter().map(|m| format!("00u{m}")).collect(),
            })
    }

    fn arb_store_user() -> impl Strategy<Value = StoreUser> {
        (
            arb_email(),
            prop::option::of(0..10usize),
            0..NAMES.len(),
            0..NAMES.len(),
            any::<bool>(),
        )
            .prop_map(|(email, okta, first, last, active)| {
                let first = NAMES[first].unwrap_or("").trim().to_string();
                let last = NAMES[last].unwrap_or("").trim().to_string();
                StoreUser {
                    id: 0,
                    email: email.trim().to_string(),
                    okta_id: okta.map(|k| format!("00u{k}")),
                    display_name: format!("{first} {last}").trim().to_string(),
                    first_name: first,
                    last_name: last,
                    active,
                }
            })
    }

    fn arb_world() -> impl Strategy<Value = World> {
        (
            prop::collection::vec(arb_okta_user(), 0..8),
            prop::collection::vec(arb_group(), 0..4),
            prop::collection::vec(arb_store_user(), 0..10),
            prop::collection::vec((0..TEAM_NAMES.len(), prop::option::of(0..6usize)), 0..5),
            prop::collection::vec((0..6usize, 0..10usize, any::<bool>()), 0..30),
            0..3usize,
            any::<bool>(),
        )
            .prop_map(
                |(okta_users, groups, store_users, teams, ms, default, create)| {
                    // The store's own unique constraints hold on the input.
                    let mut emails = HashSet::new();
                    let mut okta_ids = HashSet::new();
                    let users: Vec<StoreUser> = store_users
                        .into_iter()
                        .filter(|u| {
                            emails.insert(email_key(&u.email).into_owned())
                                && u.okta_id
                                    .as_ref()
                                    .is_none_or(|k| okta_ids.insert(k.clone()))
                        })
                        .enumerate()
                        .map(|(i, u)| StoreUser {
                            id: i as i64 + 1,
                            ..u
                        })
                        .collect();
                    let mut names = HashSet::new();
                    let mut group_ids = HashSet::new();
                    let teams: Vec<StoreTeam> = teams
                        .into_iter()
                        .filter(|(name, g)| {
                            names.insert(*name) && g.is_none_or(|g| group_ids.insert(g))
                        })
                        .enumerate()
                        .map(|(i, (name, g))| StoreTeam {
                            id: 100 + i as i64,
                            name: TEAM_NAMES[name].to_string(),
                            okta_group_id: g.map(|g| format!("00g{g}")),
                        })
                        .collect();
                    let mut pairs = HashSet::new();
                    let memberships = ms
                        .into_iter()
                        .filter_map(|(t, u, admin)| {
                            let team = teams.get(t)?;
                            let user = users.get(u)?;
                            pairs.insert((team.id, user.id)).then(|| {
                                member(
                                    team.id,
                                    user.id,
                                    if admin { Role::Admin } else { Role::Member },
                                )
                            })
                        })
                        .collect();
                    World {
                        okta: OktaState {
                            users: okta_users,
                            groups,
                            missing_group_names: Vec::new(),
                        },
                        store: StoreState {
                            users,
                            teams,
                            memberships,
                        },
                        policy: Policy {
                            default_team: [None, Some("Everyone"), Some("Nope")][default]
                                .map(str::to_string),
                            create_missing_teams: create,
                        },
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(768))]

        /// (1) convergence and (4) the store stays consistent.
        #[test]
        fn applying_the_plan_converges_and_keeps_the_store_consistent(w in arb_world()) {
            converges(&w)?;
        }

        /// The same, on worlds made of email moves: chains, swaps, rehires.
        #[test]
        fn email_moves_converge_and_keep_emails_unique(w in arb_email_moves()) {
            converges(&w)?;
        }

        /// After applying, the store says what SPEC §1 says: every active,
        /// not skipped in-scope user has one active Writer user with its
        /// attributes; other managed users are inactive (unless hands off);
        /// linked teams hold exactly the group's active, not skipped users.
        #[test]
        fn applied_store_matches_okta(w in arb_world()) {
            matches_okta(&w)?;
        }

        #[test]
        fn applied_store_matches_okta_after_email_moves(w in arb_email_moves()) {
            matches_okta(&w)?;
        }

        /// (2) unmanaged users and users of skipped Okta users are never
        /// changed; only linked teams lose members.
        #[test]
        fn unmanaged_and_skipped_users_are_hands_off(w in arb_world()) {
            let d = plan_detailed(&w.okta, &w.store, &w.policy);
            let in_scope: HashSet<&str> = w.okta.users.iter().map(|u| u.id.as_str()).collect();
            let linked_now: HashSet<i64> = d.plan.changes.iter().filter_map(|c| match c {
                Change::LinkUser { user_id, .. } => Some(*user_id),
                _ => None,
            }).collect();
            let pushed: HashSet<&str> = w.okta.groups.iter().map(|g| g.id.as_str()).collect();
            let team_linked_now: HashSet<i64> = d.plan.changes.iter().filter_map(|c| match c {
                Change::LinkTeam { team_id, .. } => Some(*team_id),
                _ => None,
            }).collect();
            for c in &d.plan.changes {
                let target = match c {
                    Change::UpdateUser { user_id, .. }
                    | Change::ReactivateUser { user_id, .. }
                    | Change::DeactivateUser { user_id, .. }
                    | Change::RemoveMembership { user_id, .. }
                    | Change::ChangeRole { user_id, .. }
                    | Change::AddMembership { user: UserRef::Existing(user_id), .. } => Some(*user_id),
                    _ => None,
                };
                if let Some(id) = target {
                    let u = w.store.users.iter().find(|u| u.id == id);
                    prop_assert!(u.is_some(), "{:?}", c);
                    let u = u.cloned().unwrap_or_else(|| store_user(0, ""));
                    prop_assert!(u.okta_id.is_some() || linked_now.contains(&id), "unmanaged: {:?}", c);
                    // A skipped Okta user's Writer user is only ever
                    // deactivated (and so removed from linked teams), and
                    // only when that Okta user is inactive.
                    if let Some(k) = &u.okta_id
                        && d.skipped_okta_ids.contains(k)
                    {
                        let inactive = w.okta.users.iter().any(|o| &o.id == k && !is_active_status(&o.status));
                        let allowed = matches!(c, Change::DeactivateUser { .. } | Change::RemoveMembership { .. });
                        prop_assert!(inactive && allowed, "skipped: {:?}", c);
                    }
                }
                if let Change::LinkUser { user_id, previous_okta_id, okta_id, .. } = c {
                    prop_assert!(!d.skipped_okta_ids.contains(okta_id));
                    let prev = previous_okta_id.as_deref();
                    prop_assert!(prev.is_none_or(|k| !in_scope.contains(k)), "steals: {:?}", c);
                    prop_assert!(w.store.users.iter().any(|u| u.id == *user_id && u.okta_id.as_deref() == prev));
                }
                if let Change::RemoveMembership { team_id, .. } = c {
                    let t = w.store.teams.iter().find(|t| t.id == *team_id);
                    let linked = t.is_some_and(|t| {
                        t.okta_group_id.as_deref().is_some_and(|g| pushed.contains(g))
                            || team_linked_now.contains(&t.id)
                    });
                    prop_assert!(linked, "removal outside a linked team: {:?}", c);
                }
            }
        }

        /// (3) the guard blocks every plan above max_deactivations.
        #[test]
        fn guard_blocks_every_plan_above_max_deactivations(
            w in arb_world(), max in 0..4u32, percent in 0.0..150.0f64, removals in 0..4u32,
        ) {
            let p = w.plan();
            let l = limits(max, percent, removals);
            let c = counts(&p);
            let reasons = guard(&p, &l);
            if c.users_deactivated > max as usize {
                prop_assert!(!reasons.is_empty());
            }
            if c.memberships_removed > removals as usize {
                prop_assert!(!reasons.is_empty());
            }
            if c.users_deactivated == 0 && c.memberships_removed <= removals as usize
                && (p.okta_users_in_scope > 0 || p.active_managed_users == 0) {
                prop_assert!(reasons.is_empty(), "{:?}", reasons);
            }
        }

        /// SPEC §2: a plan the guard lets through never exceeds any limit:
        /// not the count, not the percent (NaN and infinite percents
        /// included), not the removals, and never an empty Okta view over
        /// active managed users. Any plan shape, any limits.
        #[test]
        fn the_guard_never_lets_more_than_its_limits_through(
            deactivations in 0..300usize, removals in 0..700usize,
            extra_active in 0..3000usize, in_scope in 0..3usize,
            max in 0..400u32, max_removals in 0..800u32,
            percent in prop_oneof![
                0.0..=100.0f64,
                Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(-0.0f64),
            ],
        ) {
            // Deactivations only ever hit active managed users.
            let active = deactivations + extra_active;
            let p = plan_with(deactivations, removals, active, in_scope);
            let reasons = guard(&p, &limits(max, percent, max_removals));
            if reasons.is_empty() {
                prop_assert!(deactivations <= max as usize);
                prop_assert!(removals <= max_removals as usize);
                prop_assert!(deactivations == 0 || (deactivations as f64) * 100.0 <= percent * active as f64);
                prop_assert!(in_scope > 0 || active == 0);
            } else {
                // Blocked only for a reason that holds.
                let over_percent = deactivations > 0
                    && !matches!(
                        ((deactivations as f64) * 100.0).partial_cmp(&(percent * active as f64)),
                        Some(Ordering::Less | Ordering::Equal)
                    );
                prop_assert!(
                    deactivations > max as usize
                        || removals > max_removals as usize
                        || over_percent
                        || (in_scope == 0 && active > 0),
                    "{:?}", reasons
                );
            }
        }

        /// No deactivation outside the managed set: every deactivated
        /// Writer user is an active store user linked to exactly that Okta
        /// id, and no Okta id whose in-scope copies are all active-like is
        /// ever deactivated; the guard's denominator is never exceeded.
        #[test]
        fn deactivations_only_hit_managed_users_okta_no_longer_has_active(w in arb_world()) {
            let p = w.plan();
            let mut deactivated = HashSet::new();
            for c in &p.changes {
                if let Change::DeactivateUser { user_id, okta_id, .. } = c {
                    let u = w.store.users.iter().find(|u| u.id == *user_id);
                    prop_assert!(u.is_some_and(|u| u.active && u.okta_id.as_deref() == Some(okta_id.as_str())), "{:?}", c);
                    let copies: Vec<&OktaUser> = w.okta.users.iter().filter(|o| &o.id == okta_id).collect();
                    prop_assert!(
                        copies.is_empty() || copies.iter().any(|o| !is_active_status(&o.status)),
                        "an active in-scope Okta user was deactivated: {:?}", c
                    );
                    prop_assert!(deactivated.insert(*user_id), "deactivated twice: {:?}", c);
                }
            }
            prop_assert!(deactivated.len() <= p.active_managed_users);
        }

        /// Rule 14: the plan does not depend on the order of the inputs.
        #[test]
        fn plan_is_independent_of_input_order(w in arb_world()) {
            let mut r = w.clone();
            r.okta.users.reverse();
            r.okta.groups.reverse();
            r.store.users.reverse();
            r.store.teams.reverse();
            r.store.memberships.reverse();
            prop_assert_eq!(w.plan(), r.plan());
        }
    }
}

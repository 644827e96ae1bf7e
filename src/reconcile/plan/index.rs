//! The planner's lookups: a fixed (seedless) hasher, store-id indexes,
//! holders of a shared key, sort keys and deduplication by id (rules 14 and
//! 15: the plan does not depend on input order or on duplicate rows), and
//! [`Planner::new`], which builds all of them once per plan.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::model::{
    OktaState, OktaUser, Policy, StoreMembership, StoreState, StoreTeam, StoreUser,
};
use crate::reconcile::plan::Planner;
use crate::reconcile::plan::scope::Scope;
use crate::reconcile::plan::values::{OktaEntry, email_key};

/// A fixed multiply-rotate hasher (no random seed: the planner reads no
/// randomness). Inputs are Okta ids, emails and store ids, not attacker
/// controlled hash floods.
#[derive(Default, Clone, Copy)]
pub(super) struct FixedHasher(u64);

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

pub(super) type Fixed = BuildHasherDefault<FixedHasher>;
pub(super) type Map<K, V> = HashMap<K, V, Fixed>;
pub(super) type Set<K> = HashSet<K, Fixed>;

pub(super) fn map_with_capacity<K, V>(n: usize) -> Map<K, V> {
    Map::with_capacity_and_hasher(n, Fixed::default())
}

pub(super) fn okta_user_key(u: &OktaUser) -> impl Ord + '_ {
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

pub(super) fn store_user_key(u: &StoreUser) -> impl Ord + '_ {
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

pub(super) fn store_team_key(t: &StoreTeam) -> impl Ord + '_ {
    (t.id, t.name.as_str(), t.okta_group_id.as_deref())
}

/// Sorts rows by their full key (so duplicates of an id resolve the same way
/// whatever the input order) and keeps the first row of each id. Inputs that
/// are already sorted (the common case) are only checked.
pub(super) fn sort_dedup_by_id<T: ?Sized>(
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
pub(super) enum IdIndex {
    Dense { min: i64, rows: Vec<u32> },
    Sparse(Map<i64, usize>),
}

impl IdIndex {
    const NONE: u32 = u32::MAX;

    /// `ids` must be sorted and distinct.
    pub(super) fn new(ids: impl ExactSizeIterator<Item = i64> + Clone) -> Self {
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

    pub(super) fn get(&self, id: i64) -> Option<usize> {
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
pub(super) fn prefix_u64(s: &str) -> u64 {
    let mut prefix = [0u8; 8];
    for (to, from) in prefix.iter_mut().zip(s.bytes()) {
        *to = from;
    }
    u64::from_be_bytes(prefix)
}

/// Store user index -> the Okta entry that targets it: one slot per store
/// user (`usize::MAX` for none), not a hash map of them.
pub(super) struct Owners(Vec<usize>);

impl Owners {
    const NONE: usize = usize::MAX;

    fn new(users: usize) -> Owners {
        Owners(vec![Self::NONE; users])
    }

    pub(super) fn insert(&mut self, s: usize, i: usize) {
        if let Some(slot) = self.0.get_mut(s) {
            *slot = i;
        }
    }

    pub(super) fn get(&self, s: &usize) -> Option<&usize> {
        self.0.get(*s).filter(|&&i| i != Self::NONE)
    }
}

/// The store users an Okta entry needs to give up its email (none for most).
pub(super) fn needs_of(needs: &Map<usize, Vec<usize>>, i: usize) -> &[usize] {
    needs.get(&i).map_or(&[], Vec::as_slice)
}

/// Store users sharing a key (an email or an Okta id). Almost always one.
#[derive(Debug, Clone)]
pub(super) enum Holders {
    One(usize),
    Many(Vec<usize>),
}

impl Holders {
    pub(super) fn push(&mut self, s: usize) {
        match self {
            Holders::One(first) => *self = Holders::Many(vec![*first, s]),
            Holders::Many(all) => all.push(s),
        }
    }

    pub(super) fn as_slice(&self) -> &[usize] {
        match self {
            Holders::One(s) => std::slice::from_ref(s),
            Holders::Many(all) => all,
        }
    }
}

pub(super) fn add_holder<K: std::hash::Hash + Eq>(map: &mut Map<K, Holders>, key: K, s: usize) {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().push(s),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(Holders::One(s));
        }
    }
}

impl<'a> Planner<'a> {
    /// Rule 14/15: inputs are sorted by id and deduplicated, so the plan does
    /// not depend on the order of the input vectors.
    pub(super) fn new(
        okta: &'a OktaState,
        store: &'a StoreState,
        policy: &'a Policy,
        scope: &'a Scope,
    ) -> Self {
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
            .map(|(_, user)| OktaEntry::new(user))
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

        // The store's rows as they are when already sorted by (team, user)
        // without a pair twice (the store reads them so); otherwise a
        // sorted copy keeping the first row of each pair by (team, user,
        // role).
        let pair = |m: &StoreMembership| (m.team_id, m.user_id);
        let memberships: Cow<'a, [StoreMembership]> = if store
            .memberships
            .windows(2)
            .all(|w| pair(&w[0]) < pair(&w[1]))
        {
            Cow::Borrowed(&store.memberships)
        } else {
            let mut rows = store.memberships.clone();
            rows.sort_unstable_by_key(|m| (m.team_id, m.user_id, m.role));
            rows.dedup_by(|later, earlier| pair(later) == pair(earlier));
            Cow::Owned(rows)
        };
        let mut team_ranges: Map<i64, (usize, usize)> = Map::default();
        let mut from = 0;
        for (at, window) in memberships.windows(2).enumerate() {
            if let [a, b] = window
                && a.team_id != b.team_id
            {
                team_ranges.insert(a.team_id, (from, at + 1));
                from = at + 1;
            }
        }
        if let Some(last) = memberships.last() {
            team_ranges.insert(last.team_id, (from, memberships.len()));
        }

        let n = entries.len();
        let users_len = users.len();
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
            owner: Owners::new(users_len),
            needs: Map::default(),
            findings: Vec::new(),
            skipped_groups: 0,
            observed: match scope {
                Scope::Full => None,
                Scope::Users(ids) => Some(ids),
            },
            grace: &super::NO_GRACE,
        }
    }
}

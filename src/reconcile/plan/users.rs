//! The user rules of SPEC §1.2: skips (no usable email, shared emails,
//! ambiguous store links), the Writer user each Okta user becomes (linked,
//! linked by email, rehire relink, created), email changes that collide, wait
//! on each other in chains or go round in cycles, unknown roles, and who
//! governs each Writer user afterwards.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use crate::model::DeactivationReason;
use crate::reconcile::plan::index::{Holders, Map, Set, add_holder, map_with_capacity, needs_of};

use crate::reconcile::plan::{Planner, join};

/// Which Writer user an active, not skipped Okta user ends up linked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
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
    pub(super) fn store_user(self) -> Option<usize> {
        match self {
            Target::Linked(t) | Target::Link(t) | Target::Rehire(t) => Some(t),
            Target::Create => None,
        }
    }
}

/// Who governs a store user after this plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// Not linked and not linked by this plan: never touched.
    Unmanaged,
    /// Linked to a skipped Okta user: hands off.
    Skipped,
    /// Out of scope within the deactivation grace (SPEC §8
    /// `safety.deactivate_after`): hands off until it ends.
    Waiting,
    /// Linked to this active, not skipped Okta user (entry index).
    Active(usize),
    /// Linked to an Okta user that is inactive or not in scope.
    Gone(DeactivationReason),
    /// Linked to an Okta user a scoped plan did not read: left exactly as
    /// it is (SPEC §7).
    Unobserved,
}

impl<'a> Planner<'a> {
    /// Rule 1 and SPEC §9: an in-scope user (any status) without a usable
    /// email, or with a name too long to store, is skipped with a warning
    /// naming its Okta id and saying why.
    pub(super) fn skip_unusable_emails(&mut self) {
        for i in 0..self.okta.len() {
            if let Some(why) = &self.okta[i].unusable {
                self.skipped[i] = true;
                let message = why.message(&self.okta[i].user.id);
                self.warn(message);
            }
        }
    }

    /// Rule 1: in-scope users (any status) whose emails are equal ignoring
    /// case are all skipped, with one error naming all their ids.
    pub(super) fn skip_duplicate_emails(&mut self) {
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
    pub(super) fn skip_ambiguous_store_links(&mut self) {
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
    pub(super) fn resolve_targets(&mut self) {
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
                        // (Never over an unobserved id: it may well
                        // still be assigned; a scoped plan's observe reads
                        // such holders again, SPEC §7.)
                        Some(old) if self.user_okta[h].is_none() && self.is_observed(old) => {
                            (Target::Rehire(h), Vec::new())
                        }
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
            if !needs.is_empty() {
                self.needs.insert(i, needs);
            }
        }
    }

    /// Rules 5c and 7: a user that takes an email held by another Writer user
    /// is skipped unless that user gives the email up in this plan (it does
    /// iff it is the target of another active, not skipped Okta user, whose
    /// email necessarily differs since Okta emails are unique by now). Skips
    /// cascade: a skipped user keeps its email, so whoever waited for it is
    /// skipped too. Returns the reverse dependencies (giver -> takers).
    pub(super) fn check_email_collisions(&mut self) -> Map<usize, Vec<usize>> {
        let mut rdeps: Map<usize, Vec<usize>> = Map::default();
        let mut queue = Vec::new();
        for i in 0..self.okta.len() {
            if self.skipped[i] || needs_of(&self.needs, i).is_empty() {
                continue;
            }
            let mut blocker = None;
            for &h in needs_of(&self.needs, i) {
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

    pub(super) fn propagate_skips(
        &mut self,
        rdeps: &Map<usize, Vec<usize>>,
        mut queue: Vec<usize>,
    ) {
        while let Some(o) = queue.pop() {
            let Some(takers) = rdeps.get(&o) else {
                continue;
            };
            for &d in takers {
                if self.skipped[d] {
                    continue;
                }
                let holder = needs_of(&self.needs, d)
                    .iter()
                    .copied()
                    .find(|h| self.owner.get(h) == Some(&o));
                self.skip_for_collision(d, holder);
                queue.push(d);
            }
        }
    }

    pub(super) fn describe_store_user(&self, s: usize) -> String {
        let u = self.users[s];
        match u.okta_id.as_deref() {
            None => format!("unmanaged Writer user {} <{}>", u.id, u.email),
            Some(k) => format!("Writer user {} <{}> (Okta user {k})", u.id, u.email),
        }
    }

    pub(super) fn skip_for_collision(&mut self, i: usize, holder: Option<usize>) {
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
    pub(super) fn update_for(&self, i: usize) -> Option<usize> {
        let t = self.target[i]?.store_user()?;
        let wanted = self.okta[i].wanted.as_ref()?;
        (!wanted.matches(self.users[t])).then_some(t)
    }

    /// Rule 7: updates that wait on each other in a cycle (a swap) are all
    /// skipped with an error, and whoever waited on them is skipped too.
    /// (The order of the remaining updates is settled in `finish`.)
    pub(super) fn drop_update_cycles(&mut self, rdeps: &Map<usize, Vec<usize>>) {
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
                for &h in needs_of(&self.needs, i) {
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
    pub(super) fn topo_order_updates(
        &self,
        rank: impl Fn(usize) -> u32,
    ) -> (Vec<usize>, Vec<usize>) {
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
            for &h in needs_of(&self.needs, i) {
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
    pub(super) fn warn_unknown_roles(&mut self) {
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

    /// Rule 6a (the deactivation grace): an active managed user whose Okta
    /// user merely left scope waits `safety.deactivate_after` from when a
    /// run first saw it missing (now, when none did yet). Explicitly
    /// inactive Okta users never wait.
    fn waits(&self, s: usize, okta_id: &str) -> bool {
        let grace = self.grace;
        grace.after_ms > 0
            && self.users[s].active
            && grace
                .missing_since
                .get(okta_id)
                .is_none_or(|&since| grace.now_ms.saturating_sub(since) < grace.after_ms)
    }

    pub(super) fn owner_of(&self, s: usize) -> Owner {
        if let Some(&i) = self.owner.get(&s).filter(|&&i| !self.skipped[i]) {
            return Owner::Active(i);
        }
        match self.users[s].okta_id.as_deref() {
            None => Owner::Unmanaged,
            Some(okta_id) => match self.user_okta[s] {
                None if !self.is_observed(okta_id) => Owner::Unobserved,
                None if self.waits(s, okta_id) => Owner::Waiting,
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
}

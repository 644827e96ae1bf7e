//! Plans over a part of Okta (SPEC §7): which users a scoped plan must see.
//!
//! An incremental run reads again only the users events named. A plan over
//! them equals the full plan when every user whose outcome their change can
//! move is read too: the users sharing an email with them (a duplicate that
//! stops or starts, an email given up or taken), found on the store's side
//! (Writer users holding the email), on Okta's (a search by email) and in
//! the last full plan's email skips (users waiting for an email). These
//! functions say which emails and ids; the observe reads them, and widens
//! again until nothing is added.

use std::collections::BTreeSet;

use crate::model::{OktaUser, StoreState};
use crate::reconcile::plan::values::{email_key, usable_email};

/// What part of Okta an [`OktaState`] covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole in-scope Okta view (a full reconcile).
    Full,
    /// Only these Okta user ids were read again (an incremental run, SPEC
    /// §7): the ones in `OktaState::users` are assigned, the others are not
    /// (or no longer exist). Its groups hold only these users as members.
    /// Every other Okta id is *unobserved*: its Writer user is left exactly
    /// as it is.
    Users(BTreeSet<String>),
}

/// The email keys a plan over `scope` depends on: the usable emails its
/// observed users (`observed`, the assigned ones among `scope`) want, the
/// emails their Writer users hold now, and the emails the last full plan's
/// email skips among them (`hints`: Okta id, email key) wanted then.
pub fn scope_email_keys(
    observed: &[OktaUser],
    store: &StoreState,
    hints: &[(String, String)],
    scope: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = observed
        .iter()
        .filter(|u| scope.contains(u.id.as_str()))
        .filter_map(|u| usable_email(u.email.as_deref()).ok())
        .map(|e| email_key(e).into_owned())
        .collect();
    keys.extend(
        store
            .users
            .iter()
            .filter(|s| s.okta_id.as_deref().is_some_and(|k| scope.contains(k)))
            .map(|s| email_key(&s.email).into_owned()),
    );
    keys.extend(
        hints
            .iter()
            .filter(|(id, _)| scope.contains(id))
            .map(|(_, key)| key.clone()),
    );
    keys
}

/// The Okta ids that hold one of `keys` on the store's side (linked Writer
/// users with that email) or waited for one in the last full plan (`hints`).
/// Okta's own holders come from a search by email.
pub fn ids_holding(
    keys: &BTreeSet<String>,
    store: &StoreState,
    hints: &[(String, String)],
) -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = store
        .users
        .iter()
        .filter(|s| keys.contains(email_key(&s.email).as_ref()))
        .filter_map(|s| s.okta_id.as_deref().map(str::to_owned))
        .collect();
    ids.extend(
        hints
            .iter()
            .filter(|(_, key)| keys.contains(key))
            .map(|(id, _)| id.clone()),
    );
    ids
}

/// The email key of an Okta user's usable email, as Okta's search by email
/// compares it (ignoring case).
pub fn okta_email_key(user: &OktaUser) -> Option<String> {
    usable_email(user.email.as_deref())
        .ok()
        .map(|e| email_key(e).into_owned())
}

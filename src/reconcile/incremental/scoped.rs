//! The scoped read of an incremental run: the users its events name, read
//! again from Okta (as app users when their assignment may have changed,
//! as users when only their own profile or status did), widened by every
//! user sharing an email with them until nothing is added.
//!
//! Invariant: reads only; a read that cannot finish (an Okta error, more
//! users than `events.max_affected_users`) is an error, never a partial
//! view.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Config;
use crate::model::{OktaGroup, OktaState, OktaUser, StoreState};
use crate::okta::OktaClient;
use crate::okta::error::OktaError;
use crate::reconcile::observe::{from_app_user, from_user, role_value};
use crate::reconcile::plan::scope::{ids_holding, okta_email_key, scope_email_keys};

/// How many times the scope is widened by shared emails before the run
/// gives up and asks for a full reconcile.
const MAX_WIDENINGS: usize = 4;

/// What the last full reconcile knew that the scoped read needs (from the
/// cursor's baseline).
pub(super) struct Known<'a> {
    /// The pushed groups: id and name.
    pub(super) pushed: &'a [(String, String)],
    /// Okta users skipped while their email was usable, and the email key
    /// they wanted.
    pub(super) email_skips: &'a [(String, String)],
}

pub(super) enum Scoped {
    Okta(OktaError),
    TooWide(usize),
}

impl From<OktaError> for Scoped {
    fn from(e: OktaError) -> Scoped {
        Scoped::Okta(e)
    }
}

/// What an incremental run reads for `users`: each one's app assignment
/// (with its user) and groups, widened by shared emails
/// (`plan::scope`) until nothing is added. Returns the partial Okta view
/// and the scope (every id read; the ones not in the view are unassigned or
/// gone).
pub(super) async fn observe_scoped(
    client: &OktaClient,
    config: &Config,
    known: &Known<'_>,
    store: &StoreState,
    users: BTreeSet<String>,
    assignment: &BTreeSet<String>,
) -> Result<(OktaState, BTreeSet<String>), Scoped> {
    let max = config.events.max_affected_users as usize;
    let pushed: BTreeMap<&str, &str> = known
        .pushed
        .iter()
        .map(|(id, name)| (id.as_str(), name.as_str()))
        .collect();
    let mut scope: BTreeSet<String> = BTreeSet::new();
    let mut found: BTreeMap<String, (OktaUser, Vec<String>)> = BTreeMap::new();
    let users_named = users.clone();
    let mut to_read = users;
    let mut searched: BTreeSet<String> = BTreeSet::new();
    for _ in 0..=MAX_WIDENINGS {
        for id in std::mem::take(&mut to_read) {
            if !scope.insert(id.clone()) {
                continue;
            }
            if scope.len() > max {
                return Err(Scoped::TooWide(scope.len()));
            }
            // Users found by shared emails may be anyone: read as app users.
            let how = if users_named.contains(&id) && !assignment.contains(&id) {
                Read::OwnChange
            } else {
                Read::Assignment
            };
            if let Some(read) = read_user(client, config, &pushed, store, &id, how).await? {
                found.insert(id, read);
            }
        }
        let observed: Vec<OktaUser> = found.values().map(|(u, _)| u.clone()).collect();
        let keys = scope_email_keys(&observed, store, known.email_skips, &scope);
        let mut more = ids_holding(&keys, store, known.email_skips);
        // Okta's holders: only where an email is new to the store's view
        // (a new user, a changed email, a waiting skip); otherwise any other
        // holder is already a skip of the last full run or named by its own
        // events.
        for key in search_keys(&observed, store, known.email_skips, &keys) {
            if searched.insert(key.clone()) {
                for user in client.find_users_by_email(&key).await? {
                    if okta_email_key(&from_user(user.clone(), None)).as_deref() == Some(&key) {
                        more.insert(user.id);
                    }
                }
            }
        }
        more.retain(|id| !scope.contains(id));
        if more.is_empty() {
            let groups = pushed
                .iter()
                .map(|(id, name)| OktaGroup {
                    id: (*id).to_string(),
                    name: (*name).to_string(),
                    member_ids: found
                        .iter()
                        .filter(|(_, (_, groups))| groups.iter().any(|g| g == id))
                        .map(|(user, _)| user.as_str().into())
                        .collect(),
                    // The baseline keeps no group types: they only name the
                    // groups in the shared-name warning, which the full
                    // reconcile reports with them.
                    kind: None,
                })
                .collect();
            let state = OktaState {
                users: found.into_values().map(|(u, _)| u).collect(),
                groups,
                missing_group_names: Vec::new(),
            };
            return Ok((state, scope));
        }
        to_read = more;
    }
    Err(Scoped::TooWide(scope.len()))
}

/// The email keys worth a search in Okta: those of observed users that are
/// new to the store (no Writer user linked) or changed their email, and
/// those a waiting skip wants.
fn search_keys(
    observed: &[OktaUser],
    store: &StoreState,
    hints: &[(String, String)],
    keys: &BTreeSet<String>,
) -> BTreeSet<String> {
    let linked_key = |okta_id: &str| {
        store
            .users
            .iter()
            .find(|s| s.okta_id.as_deref() == Some(okta_id))
            .map(|s| s.email.trim().to_lowercase())
    };
    let mut out: BTreeSet<String> = observed
        .iter()
        .filter_map(|u| {
            let key = okta_email_key(u)?;
            (linked_key(&u.id).as_deref() != Some(key.as_str())).then_some(key)
        })
        .collect();
    out.extend(
        hints
            .iter()
            .filter(|(_, key)| keys.contains(key))
            .map(|(_, key)| key.clone()),
    );
    out
}

/// How a user is read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Its assignment may have changed: `GET /apps/{app}/users/{id}`, in the
    /// app's bucket.
    Assignment,
    /// Only its own status or profile changed: `GET /users/{id}`, in its own
    /// (large) bucket, when it is linked to an active Writer user; the
    /// assignment is then the one the store knows, the app-user role the one
    /// its memberships carry.
    OwnChange,
}

/// One user as an incremental run reads it: `None` when it is not in scope
/// (not assigned, deactivated — Okta unassigns deactivated users from every
/// app — deleted, or, without an app, in no pushed group); otherwise the
/// user and the ids of its pushed groups.
async fn read_user(
    client: &OktaClient,
    config: &Config,
    pushed: &BTreeMap<&str, &str>,
    store: &StoreState,
    user_id: &str,
    how: Read,
) -> Result<Option<(OktaUser, Vec<String>)>, OktaError> {
    let role_attribute = config.sync.role_attribute.as_str();
    // Only an active linked user was assigned when last read: an inactive
    // one may be unassigned as well as suspended, so it is read as an app
    // user (its assignment is not known).
    let linked = store
        .users
        .iter()
        .find(|u| u.okta_id.as_deref() == Some(user_id) && u.active);
    let user = match (&config.okta.app_id, how, linked) {
        (Some(app_id), Read::Assignment, _) | (Some(app_id), Read::OwnChange, None) => {
            match client.get_app_user(app_id, user_id).await? {
                Some(app_user) if crate::reconcile::observe::app_user_in_scope(&app_user) => Some(
                    from_app_user(app_user, role_attribute, config.sync.role_source),
                ),
                _ => None,
            }
        }
        (Some(_), Read::OwnChange, Some(linked)) => match client.get_user(user_id).await? {
            Some(user) if user.status != "DEPROVISIONED" => {
                let role = match config.sync.role_source {
                    crate::config::RoleSource::User => {
                        role_value(&user.profile.extra, role_attribute)
                    }
                    // The app-user profile did not change (that is an event
                    // of its own): the role the memberships carry.
                    crate::config::RoleSource::AppUser => store
                        .memberships
                        .iter()
                        .find(|m| m.user_id == linked.id)
                        .map(|m| m.role.as_str().to_owned()),
                };
                Some(from_user(user, role))
            }
            _ => None,
        },
        (None, _, _) => client.get_user(user_id).await?.map(|user| {
            let role = role_value(&user.profile.extra, role_attribute);
            from_user(user, role)
        }),
    };
    let Some(user) = user else {
        return Ok(None);
    };
    let groups: Vec<String> = if pushed.is_empty() {
        Vec::new()
    } else {
        client
            .list_user_groups(user_id)
            .await?
            .into_iter()
            .map(|g| g.id)
            .filter(|id| pushed.contains_key(id.as_str()))
            .collect()
    };
    if config.okta.app_id.is_none() && groups.is_empty() {
        return Ok(None);
    }
    Ok(Some((user, groups)))
}

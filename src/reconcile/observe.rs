//! Observe: read the whole in-scope Okta state into [`OktaState`].
//!
//! Invariant: returns a complete view or an error, never a partial view.
//! Every listing it starts must finish; the first failure aborts the others.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{Config, PushGroups, RoleSource};
use crate::model::{OktaGroup, OktaState, OktaUser};
use crate::okta::OktaClient;
use crate::okta::error::Endpoint;
use crate::okta::error::OktaError;
use crate::okta::wire::{AppUser, User};

/// Reads users, pushed groups and their members. `progress` is called with
/// the number of objects read by each finished listing (for the watchdog).
///
/// The app-user listing is one chain of pages (each page names the next) in
/// the `apps` rate-limit family, the slowest part of a big sync; the pushed
/// groups and then their members are read beside it, in other families, so
/// they cost no wall time. Pages are turned into compact values as they
/// arrive: only one page of JSON per listing is in memory at a time.
pub async fn observe(
    client: &OktaClient,
    config: &Config,
    progress: &(dyn Fn(usize) + Send + Sync),
) -> Result<OktaState, OktaError> {
    let role_attribute = config.sync.role_attribute.as_str();
    let role_source = config.sync.role_source;

    let users_fut = async {
        let Some(app_id) = &config.okta.app_id else {
            return Ok(None);
        };
        let mut users: Vec<OktaUser> = Vec::new();
        client
            .for_each_page(client.app_users_url(app_id)?, |page: Vec<AppUser>| {
                users.extend(
                    page.into_iter()
                        .map(|au| from_app_user(au, role_attribute, role_source)),
                );
                Ok::<(), OktaError>(())
            })
            .await?;
        progress(users.len());
        Ok::<_, OktaError>(Some(users))
    };
    // Without an app, the in-scope users are the pushed groups' members, so
    // their profiles are kept too.
    let keep_member_profiles = config.okta.app_id.is_none();
    let groups_fut = async {
        let (groups, missing) = pushed_groups(client, config).await?;
        progress(groups.len());
        // The app-user chain is the critical path: leave it a request slot
        // so the member listings fill the gaps instead of queueing ahead.
        let slots = config.okta.max_concurrent_requests.get();
        let lanes = if keep_member_profiles {
            slots
        } else {
            slots.saturating_sub(1).max(1)
        };
        let members = group_members(
            client,
            &groups,
            keep_member_profiles.then_some(role_attribute),
            lanes,
            progress,
        )
        .await?;
        Ok::<_, OktaError>((groups, missing, members))
    };
    // The first failure drops the other listing (and aborts its tasks).
    let (app_users, (groups, missing_group_names, mut members)) =
        tokio::try_join!(users_fut, groups_fut)?;

    let users: Vec<OktaUser> = match app_users {
        Some(users) => users,
        None => {
            let mut by_id: BTreeMap<String, OktaUser> = BTreeMap::new();
            for group in members.values_mut() {
                for user in group.profiles.drain(..) {
                    by_id.entry(user.id.clone()).or_insert(user);
                }
            }
            by_id.into_values().collect()
        }
    };
    let groups = groups
        .into_iter()
        .map(|(id, name)| OktaGroup {
            member_ids: members.remove(&id).map(|m| m.ids).unwrap_or_default(),
            id,
            name,
        })
        .collect();
    Ok(OktaState {
        users,
        groups,
        missing_group_names,
    })
}

/// The pushed groups as `(id, name)`, and the configured names no group has.
async fn pushed_groups(
    client: &OktaClient,
    config: &Config,
) -> Result<(Vec<(String, String)>, Vec<String>), OktaError> {
    match (&config.teams.push_groups, &config.okta.app_id) {
        (PushGroups::Assigned, Some(app_id)) => {
            let assigned = client.list_app_groups(app_id).await?;
            let mut groups = Vec::with_capacity(assigned.len());
            for g in assigned {
                let Some(group) = g.group else {
                    return Err(OktaError::Decode {
                        endpoint: Endpoint::get(&client.app_groups_url(app_id)?),
                        reason: format!(
                            "group assignment {} came without its group (expand=group)",
                            g.id
                        ),
                    });
                };
                groups.push((g.id, group.profile.name));
            }
            Ok((groups, Vec::new()))
        }
        (PushGroups::Assigned, None) => Ok((Vec::new(), Vec::new())),
        (PushGroups::Named(names), _) => {
            let mut groups = Vec::new();
            let mut missing = Vec::new();
            for name in names {
                let found = client.find_groups_by_name(name).await?;
                if found.is_empty() {
                    missing.push(name.clone());
                }
                groups.extend(found.into_iter().map(|g| (g.id, g.profile.name)));
            }
            Ok((groups, missing))
        }
    }
}

/// The members of one group: their ids in Okta's order, and their profiles
/// when the caller asked for them.
#[derive(Debug, Default)]
struct Members {
    ids: Vec<String>,
    profiles: Vec<OktaUser>,
}

/// Members of every group, `lanes` groups at a time (the client's budget,
/// semaphore and per-family pacing decide when each request runs).
/// `profiles_role`: keep each member's profile, with the role read from
/// this user-profile attribute.
async fn group_members(
    client: &OktaClient,
    groups: &[(String, String)],
    profiles_role: Option<&str>,
    lanes: usize,
    progress: &(dyn Fn(usize) + Send + Sync),
) -> Result<BTreeMap<String, Members>, OktaError> {
    let mut members: BTreeMap<String, Members> = BTreeMap::new();
    let mut tasks = JoinSet::new();
    let lanes = Arc::new(Semaphore::new(lanes.max(1)));
    for (id, _) in groups {
        let client = client.clone();
        let id = id.clone();
        let role = profiles_role.map(str::to_owned);
        let lanes = Arc::clone(&lanes);
        tasks.spawn(async move {
            // Never closed; holding it until the listing ends.
            let _lane = lanes.acquire_owned().await;
            let mut found = Members::default();
            let listed = match client.group_members_url(&id) {
                Ok(url) => {
                    client
                        .for_each_page(url, |page: Vec<User>| {
                            for user in page {
                                found.ids.push(user.id.clone());
                                if let Some(role) = &role {
                                    let role = role_value(&user.profile.extra, role);
                                    found.profiles.push(from_user(user, role));
                                }
                            }
                            Ok::<(), OktaError>(())
                        })
                        .await
                }
                Err(e) => Err(e),
            };
            (id, listed.map(|_| found))
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (id, listed) = match joined {
            Ok(done) => done,
            // A listing task only ends without a value if it panicked (a
            // bug): surface the panic rather than plan on a partial view.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        match listed {
            Ok(found) => {
                progress(found.ids.len());
                members.insert(id, found);
            }
            Err(e) => {
                tasks.abort_all();
                return Err(e);
            }
        }
    }
    Ok(members)
}

pub(crate) fn from_app_user(
    app_user: AppUser,
    role_attribute: &str,
    role_source: RoleSource,
) -> OktaUser {
    let role_from_app = role_value(&app_user.profile, role_attribute);
    match app_user.user {
        Some(user) => {
            let role = match role_source {
                RoleSource::AppUser => role_from_app,
                RoleSource::User => role_value(&user.profile.extra, role_attribute),
            };
            from_user(user, role)
        }
        // `expand=user` should always embed the user. Without it there is no
        // email, so the planner skips this user with a warning and leaves its
        // Writer user alone (never treated as unassigned).
        None => OktaUser {
            id: app_user.id,
            status: app_user.status.unwrap_or_default(),
            email: None,
            first_name: None,
            last_name: None,
            display_name: None,
            role: role_from_app,
        },
    }
}

pub(crate) fn from_user(user: User, role: Option<String>) -> OktaUser {
    let p = user.profile;
    OktaUser {
        id: user.id,
        status: user.status,
        email: p.email,
        first_name: p.first_name,
        last_name: p.last_name,
        display_name: p.display_name,
        role,
    }
}

/// The role attribute's value as text: strings as they are, null/absent as
/// `None`, anything else as its JSON text (the planner then warns about it).
pub(crate) fn role_value(profile: &Map<String, Value>, attribute: &str) -> Option<String> {
    match profile.get(attribute)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// App-user statuses that mean the user no longer has the app: disabled and
/// waiting for deprovisioning, deprovisioned, or inactive (Okta's
/// `AppUserStatus`); such an app user is treated as unassigned.
pub(crate) fn app_user_in_scope(app_user: &AppUser) -> bool {
    !matches!(
        app_user.status.as_deref(),
        Some("REVOKED" | "DEPROVISIONED" | "INACTIVE")
    )
}

//! Observe: read the whole in-scope Okta state into [`OktaState`].
//!
//! Invariant: returns a complete view or an error, never a partial view.
//! Every listing it starts must finish; the first failure aborts the others.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::config::{Config, PushGroups, RoleSource};
use crate::model::{OktaGroup, OktaState, OktaUser};
use crate::okta::OktaClient;
use crate::okta::error::Endpoint;
use crate::okta::error::OktaError;
use crate::okta::wire::{AppUser, User};

/// Reads users, pushed groups and their members. `progress` is called with
/// a running count of objects read (for the watchdog).
pub async fn observe(
    client: &OktaClient,
    config: &Config,
    progress: &(dyn Fn(usize) + Send + Sync),
) -> Result<OktaState, OktaError> {
    let role_attribute = config.sync.role_attribute.as_str();
    let role_source = config.sync.role_source;

    // Users (the app's assignments) and the pushed groups are independent
    // listings in different rate-limit families: read them concurrently.
    let users_fut = async {
        match &config.okta.app_id {
            Some(app_id) => client.list_app_users(app_id).await.map(Some),
            None => Ok(None),
        }
    };
    let groups_fut = async {
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
                Ok::<_, OktaError>((groups, Vec::new()))
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
    };
    let (app_users, groups) = tokio::join!(users_fut, groups_fut);
    let app_users = app_users?;
    let (groups, missing_group_names) = groups?;
    progress(app_users.as_ref().map_or(0, Vec::len) + groups.len());

    // Members of every pushed group, a few groups at a time (the client's
    // own limiter and semaphore pace the requests).
    let mut members: BTreeMap<String, Vec<User>> = BTreeMap::new();
    let mut tasks = JoinSet::new();
    for (id, _) in &groups {
        let client = client.clone();
        let id = id.clone();
        tasks.spawn(async move {
            let users = client.list_group_members(&id).await;
            (id, users)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (id, users) = match joined {
            Ok(done) => done,
            // A listing task only ends without a value if it panicked (a
            // bug): surface the panic rather than plan on a partial view.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        match users {
            Ok(users) => {
                progress(users.len());
                members.insert(id, users);
            }
            Err(e) => {
                tasks.abort_all();
                return Err(e);
            }
        }
    }

    let users: Vec<OktaUser> = match app_users {
        Some(app_users) => app_users
            .into_iter()
            .map(|au| from_app_user(au, role_attribute, role_source))
            .collect(),
        // Without an app, the in-scope set is the union of the pushed
        // groups' members; the role comes from the user profile.
        None => {
            let mut by_id: BTreeMap<String, OktaUser> = BTreeMap::new();
            for user in members.values().flatten() {
                by_id.entry(user.id.clone()).or_insert_with(|| {
                    from_user(user, role_value(&user.profile.extra, role_attribute))
                });
            }
            by_id.into_values().collect()
        }
    };
    let groups = groups
        .into_iter()
        .map(|(id, name)| OktaGroup {
            member_ids: members
                .get(&id)
                .map(|m| m.iter().map(|u| u.id.clone()).collect())
                .unwrap_or_default(),
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

fn from_app_user(app_user: AppUser, role_attribute: &str, role_source: RoleSource) -> OktaUser {
    let role_from_app = role_value(&app_user.profile, role_attribute);
    match &app_user.user {
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
            id: app_user.id.clone(),
            status: app_user.status.clone().unwrap_or_default(),
            email: None,
            first_name: None,
            last_name: None,
            display_name: None,
            role: role_from_app,
        },
    }
}

fn from_user(user: &User, role: Option<String>) -> OktaUser {
    let p = &user.profile;
    OktaUser {
        id: user.id.clone(),
        status: user.status.clone(),
        email: p.email.clone(),
        first_name: p.first_name.clone(),
        last_name: p.last_name.clone(),
        display_name: p.display_name.clone(),
        role,
    }
}

/// The role attribute's value as text: strings as they are, null/absent as
/// `None`, anything else as its JSON text (the planner then warns about it).
fn role_value(profile: &Map<String, Value>, attribute: &str) -> Option<String> {
    match profile.get(attribute)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

//! Observe: read the whole in-scope Okta state into [`OktaState`], plus what
//! only the run reports about it ([`Observed`]).
//!
//! Invariant: returns a complete view or an error, never a partial view.
//! Every listing it starts must finish; the first failure aborts the others.
//! The only Okta answers it turns into something other than a failure are
//! facts about the org: a pushed group that is gone (404 on its member
//! listing) is left out with a warning, exactly as if it had been deleted
//! before the run, and the app's status becomes a warning.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{Config, PushGroups, RoleSource};
use crate::model::{Finding, OktaGroup, OktaState, OktaUser, Severity, Shared, Text};
use crate::okta::error::{Endpoint, OktaError, Resource};
use crate::okta::wire::{AppUser, User};
use crate::okta::{OktaClient, SmallerPages};

/// App-user statuses that mean the assignment is over or not in force
/// (Okta's `AppUserStatus`: `REVOKED` "disabled and waiting for
/// deprovisioning acknowledgment", `DEPROVISIONED` "removed by the
/// provisioning operation", `INACTIVE`). Such app users are treated as not
/// assigned: not in scope.
pub const UNASSIGNED_APP_USER_STATUSES: [&str; 3] = ["REVOKED", "DEPROVISIONED", "INACTIVE"];

/// Okta's group type of its built-in groups (`Everyone`).
const BUILT_IN: &str = "BUILT_IN";

/// What one observe read.
#[derive(Debug, Default)]
pub struct Observed {
    /// What the planner plans on.
    pub state: OktaState,
    /// Warnings about the org for the run's report (skipped built-in
    /// groups, a group deleted while the run read it, an inactive app).
    pub findings: Vec<Finding>,
    /// Listed app users by app-user status (`ACTIVE`, `REVOKED`, …;
    /// `(none)` when Okta sent none), unassigned ones included.
    pub app_user_statuses: BTreeMap<String, usize>,
    /// Listings that had to continue with smaller pages.
    pub smaller_pages: Vec<SmallerPages>,
}

/// Reads users, pushed groups and their members, and the app's status.
/// `progress` is called with the number of objects read by each finished
/// listing (for the watchdog).
///
/// The app-user listing is one chain of pages (each page names the next) in
/// the `apps` rate-limit bucket, the slowest part of a big sync. The pushed
/// groups (`apps` too) and then their members are read beside it: the
/// member listings are in Okta's `groups` bucket (with group search), so
/// they cost the chain no share of its bucket, only request slots, and
/// they leave the chain one slot. The app itself (`app_by_id`, a bucket of
/// its own) is one GET per run. Pages are turned into compact values as
/// they arrive: only one page of JSON per listing is in memory at a time.
pub async fn observe(
    client: &OktaClient,
    config: &Config,
    progress: &(dyn Fn(usize) + Send + Sync),
) -> Result<Observed, OktaError> {
    let role_attribute = config.sync.role_attribute.as_str();
    let role_source = config.sync.role_source;

    let users_fut = async {
        let Some(app_id) = &config.okta.app_id else {
            return Ok(None);
        };
        let mut users: Vec<OktaUser> = Vec::new();
        let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
        let listed = client
            .for_each_page(client.app_users_url(app_id)?, |page: Vec<AppUser>| {
                for app_user in page {
                    let status = app_user.status.as_deref().unwrap_or("(none)");
                    *statuses.entry(status.to_owned()).or_default() += 1;
                    if !app_user_in_scope(&app_user) {
                        continue;
                    }
                    users.push(from_app_user(app_user, role_attribute, role_source));
                }
                Ok::<(), OktaError>(())
            })
            .await?;
        // The vector grew by doubling: give back the unused tail (up to
        // half of it) before the plan needs the memory.
        users.shrink_to_fit();
        progress(users.len());
        Ok::<_, OktaError>(Some((users, statuses, listed.smaller_pages)))
    };
    // Without an app, the in-scope users are the pushed groups' members, so
    // their profiles are kept too.
    let keep_member_profiles = config.okta.app_id.is_none();
    let groups_fut = async {
        let pushed = pushed_groups(client, config).await?;
        progress(pushed.groups.len());
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
            &pushed.groups,
            keep_member_profiles.then_some(role_attribute),
            lanes,
            progress,
        )
        .await?;
        Ok::<_, OktaError>((pushed, members))
    };
    let app_fut = async {
        match &config.okta.app_id {
            Some(app_id) => Some(app_status_finding(client, app_id).await),
            None => None,
        }
    };
    // The first failure drops the other listing (and aborts its tasks).
    let (app_users, (pushed, mut members), app_finding) =
        tokio::try_join!(users_fut, groups_fut, async { Ok(app_fut.await) })?;

    let mut observed = Observed {
        findings: pushed.findings,
        ..Observed::default()
    };
    observed.findings.extend(app_finding.flatten());
    let users: Vec<OktaUser> = match app_users {
        Some((users, statuses, smaller)) => {
            observed.app_user_statuses = statuses;
            observed.smaller_pages.extend(smaller);
            users
        }
        None => {
            let mut by_id: BTreeMap<String, OktaUser> = BTreeMap::new();
            for group in members.listed.values_mut() {
                for user in group.profiles.drain(..) {
                    by_id.entry(user.id.to_string()).or_insert(user);
                }
            }
            by_id.into_values().collect()
        }
    };
    observed.smaller_pages.append(&mut members.smaller_pages);
    let mut groups = Vec::with_capacity(pushed.groups.len());
    for group in pushed.groups {
        if members.gone.contains(&group.id) {
            observed.findings.push(Finding {
                severity: Severity::Warning,
                message: format!(
                    "Okta group {} ({}) was deleted while this run read it (its member listing \
                     answered 404): it is treated as no longer existing, and a Writer team linked \
                     to it keeps its members",
                    group.id, group.name
                ),
            });
            continue;
        }
        groups.push(OktaGroup {
            member_ids: members
                .listed
                .remove(&group.id)
                .map(|m| m.ids)
                .unwrap_or_default(),
            id: group.id,
            name: group.name,
            kind: group.kind,
        });
    }
    observed.state = OktaState {
        users,
        groups,
        missing_group_names: pushed.missing,
    };
    Ok(observed)
}

/// Logs, once per run, the listings that continued with smaller pages than
/// they asked for (Okta answered the bigger ones too slowly, or refused
/// their `limit`).
pub fn log_smaller_pages(smaller: &[SmallerPages]) {
    if smaller.is_empty() {
        return;
    }
    let listings: Vec<String> = smaller
        .iter()
        .map(|s| format!("{} (limit {} -> {})", s.endpoint, s.requested, s.smallest))
        .collect();
    tracing::warn!(
        listings = smaller.len(),
        endpoints = %listings.join(", "),
        final_limit = smaller.iter().map(|s| s.smallest).min(),
        "okta pages were read with a smaller limit than asked for: Okta answered the bigger \
         pages too slowly (timeouts or 5xx) or refused their limit"
    );
}

/// A pushed group before its members are read.
struct Pushed {
    id: String,
    name: String,
    /// Okta's group type (`OKTA_GROUP`, `APP_GROUP`, `BUILT_IN`).
    kind: Option<String>,
}

/// The groups to push, the configured names no group has, and the
/// warnings about groups left out.
struct PushedGroups {
    groups: Vec<Pushed>,
    missing: Vec<String>,
    findings: Vec<Finding>,
}

/// The pushed groups: the app's assigned groups except Okta's built-in
/// ones (`Everyone` holds every user of the org, not the app's), or the
/// groups of the configured names (a built-in one included: naming it is
/// deliberate).
async fn pushed_groups(client: &OktaClient, config: &Config) -> Result<PushedGroups, OktaError> {
    let mut pushed = PushedGroups {
        groups: Vec::new(),
        missing: Vec::new(),
        findings: Vec::new(),
    };
    match (&config.teams.push_groups, &config.okta.app_id) {
        (PushGroups::Assigned, Some(app_id)) => {
            let assigned = client.list_app_groups(app_id).await?;
            let mut built_in = Vec::new();
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
                if group.group_type.as_deref() == Some(BUILT_IN) {
                    built_in.push(format!("{} ({})", g.id, group.profile.name));
                    continue;
                }
                pushed.groups.push(Pushed {
                    id: g.id,
                    name: group.profile.name,
                    kind: group.group_type,
                });
            }
            if !built_in.is_empty() {
                pushed.findings.push(Finding {
                    severity: Severity::Warning,
                    message: format!(
                        "Okta's built-in group {} is assigned to the app and is not pushed to a \
                         team: it holds every user of the org (teams.push_groups = \"assigned\" \
                         skips BUILT_IN groups; name it in teams.push_groups to push it)",
                        built_in.join(", ")
                    ),
                });
            }
        }
        (PushGroups::Assigned, None) => {}
        (PushGroups::Named(names), _) => {
            for name in names {
                let found = client.find_groups_by_name(name).await?;
                if found.is_empty() {
                    pushed.missing.push(name.clone());
                }
                pushed.groups.extend(found.into_iter().map(|g| Pushed {
                    id: g.id,
                    name: g.profile.name,
                    kind: g.group_type,
                }));
            }
        }
    }
    Ok(pushed)
}

/// A warning when the app is not `ACTIVE`, or when its status could not be
/// read (the listings decide whether the run can go on).
async fn app_status_finding(client: &OktaClient, app_id: &str) -> Option<Finding> {
    match client.get_app(app_id).await {
        Ok(app) if app.status.is_empty() || app.status == "ACTIVE" => None,
        Ok(app) => Some(Finding {
            severity: Severity::Warning,
            message: inactive_app_warning(&app),
        }),
        Err(e) => Some(Finding {
            severity: Severity::Warning,
            message: format!(
                "could not read the status of the Okta app {app_id}: {}",
                crate::reconcile::error_chain(&e)
            ),
        }),
    }
}

/// The warning `check` and every run give for an app that is not active.
pub fn inactive_app_warning(app: &crate::okta::wire::App) -> String {
    format!(
        "the Okta app {} ({:?}) is {}, not ACTIVE: Okta leaves the assignments of users \
         deactivated while the app is inactive untouched, so its user list may keep people who \
         left; activate the app in Okta (Applications > the app > Activate)",
        app.id, app.label, app.status
    )
}

/// The members of one group: their ids in Okta's order, and their profiles
/// when the caller asked for them.
#[derive(Debug, Default)]
struct Members {
    ids: Vec<Shared>,
    profiles: Vec<OktaUser>,
}

/// The member listings of a run.
#[derive(Debug, Default)]
struct AllMembers {
    listed: BTreeMap<String, Members>,
    /// Every member id listed so far, once: a user in several groups is
    /// one allocation however many groups list it.
    ids: HashSet<Shared>,
    /// Groups whose member listing answered 404: deleted meanwhile.
    gone: BTreeSet<String>,
    smaller_pages: Vec<SmallerPages>,
}

/// Members of every group, `lanes` groups at a time (the client's budget,
/// semaphore and per-family pacing decide when each request runs).
/// `profiles_role`: keep each member's profile, with the role read from
/// this user-profile attribute.
async fn group_members(
    client: &OktaClient,
    groups: &[Pushed],
    profiles_role: Option<&str>,
    lanes: usize,
    progress: &(dyn Fn(usize) + Send + Sync),
) -> Result<AllMembers, OktaError> {
    let mut all = AllMembers::default();
    let mut tasks = JoinSet::new();
    let lanes = Arc::new(Semaphore::new(lanes.max(1)));
    for group in groups {
        let client = client.clone();
        let id = group.id.clone();
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
                                found.ids.push(Shared::from(user.id.as_str()));
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
            (id, listed.map(|listed| (found, listed.smaller_pages)))
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
            Ok((mut found, smaller)) => {
                found.ids.shrink_to_fit();
                progress(found.ids.len());
                all.smaller_pages.extend(smaller);
                for id in &mut found.ids {
                    match all.ids.get(&**id) {
                        Some(known) => *id = Shared::clone(known),
                        None => {
                            all.ids.insert(Shared::clone(id));
                        }
                    }
                }
                all.listed.insert(id, found);
            }
            // The group was deleted after it was listed: what it had
            // collected is dropped with it.
            Err(OktaError::NotFound {
                resource: Resource::Group(gone),
                ..
            }) if gone == id => {
                all.gone.insert(id);
            }
            Err(e) => {
                tasks.abort_all();
                return Err(e);
            }
        }
    }
    Ok(all)
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
            id: app_user.id.into(),
            status: app_user.status.unwrap_or_default().into(),
            email: None,
            first_name: None,
            last_name: None,
            display_name: None,
            role: role_from_app.map(Text::from),
        },
    }
}

pub(crate) fn from_user(user: User, role: Option<String>) -> OktaUser {
    let p = user.profile;
    OktaUser {
        id: user.id.into(),
        status: user.status.into(),
        email: p.email.map(Text::from),
        first_name: p.first_name.map(Text::from),
        last_name: p.last_name.map(Text::from),
        display_name: p.display_name.map(Text::from),
        role: role.map(Text::from),
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

/// Whether an app user is in scope: its status is not one of
/// [`UNASSIGNED_APP_USER_STATUSES`] (the full listing and an incremental
/// run's single read decide the same way).
pub(crate) fn app_user_in_scope(app_user: &AppUser) -> bool {
    !app_user
        .status
        .as_deref()
        .is_some_and(|s| UNASSIGNED_APP_USER_STATUSES.contains(&s))
}

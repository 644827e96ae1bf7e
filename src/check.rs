//! `writer-sync check`: read-only probes of Okta that tell an operator what
//! works and what to fix (credential, scopes, app id, pushed groups).
//!
//! Invariant: never writes anywhere; each probe reports instead of failing.

use crate::config::{Config, PushGroups};
use crate::okta::OktaClient;
use crate::reconcile::error_chain;

/// One line of the `check` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Short label (`okta app`, `okta users`, …).
    pub what: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Probes Okta with the configured credential: the app, its assigned users
/// and groups (one listing each), or the named push groups.
pub async fn probe(client: &OktaClient, config: &Config) -> Vec<Probe> {
    let mut out = Vec::new();
    if let Some(app_id) = &config.okta.app_id {
        match client.get_app(app_id).await {
            Ok(app) => out.push(Probe {
                what: "okta app",
                ok: app.status.is_empty() || app.status == "ACTIVE",
                detail: format!(
                    "{} {:?} ({}), status {}",
                    app.id, app.label, app.name, app.status
                ),
            }),
            Err(e) => {
                // Without the app nothing else can be read: stop here with
                // the message that says what to fix.
                out.push(Probe {
                    what: "okta app",
                    ok: false,
                    detail: error_chain(&e),
                });
                return out;
            }
        }
        out.push(match client.list_app_users(app_id).await {
            Ok(users) => {
                let active = users
                    .iter()
                    .filter(|u| {
                        u.user
                            .as_ref()
                            .is_some_and(|u| crate::reconcile::plan::is_active_status(&u.status))
                    })
                    .count();
                Probe {
                    what: "okta users",
                    ok: true,
                    detail: format!("{} assigned users ({active} active-like)", users.len()),
                }
            }
            Err(e) => Probe {
                what: "okta users",
                ok: false,
                detail: error_chain(&e),
            },
        });
    }
    match &config.teams.push_groups {
        PushGroups::Assigned => {
            if let Some(app_id) = &config.okta.app_id {
                out.push(match client.list_app_groups(app_id).await {
                    Ok(groups) => Probe {
                        what: "okta groups",
                        ok: true,
                        detail: format!(
                            "{} groups assigned to the app: {}",
                            groups.len(),
                            groups
                                .iter()
                                .take(10)
                                .map(|g| g
                                    .group
                                    .as_ref()
                                    .map_or(g.id.as_str(), |g| g.profile.name.as_str()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    },
                    Err(e) => Probe {
                        what: "okta groups",
                        ok: false,
                        detail: error_chain(&e),
                    },
                });
            }
        }
        PushGroups::Named(names) => {
            for name in names {
                out.push(match client.find_groups_by_name(name).await {
                    Ok(found) if found.is_empty() => Probe {
                        what: "okta group",
                        ok: false,
                        detail: format!("no Okta group named {name:?} (teams.push_groups)"),
                    },
                    Ok(found) => Probe {
                        what: "okta group",
                        ok: true,
                        detail: format!(
                            "{name:?}: {}",
                            found
                                .iter()
                                .map(|g| g.id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    },
                    Err(e) => Probe {
                        what: "okta group",
                        ok: false,
                        detail: error_chain(&e),
                    },
                });
            }
        }
    }
    out
}

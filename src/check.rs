//! `writer-sync check`: read-only probes of Okta that tell an operator what
//! works and what to fix (credential, OAuth token and scopes, app id, pushed
//! groups).
//!
//! Invariant: never writes anywhere; each probe reports instead of failing.

use crate::config::{Config, OktaAuth, PushGroups};
use crate::okta::OktaClient;
use crate::okta::auth::AuthInfo;
use crate::okta::error::{OAuthError, OktaError};
use crate::okta::oauth::TokenInfo;
use crate::reconcile::error_chain;

/// One line of the `check` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Short label (`okta app`, `okta users`, …).
    pub what: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Probes Okta with the configured credential: with OAuth the token (DPoP,
/// granted scopes), then the app, its assigned users and groups (one listing
/// each), or the named push groups.
pub async fn probe(client: &OktaClient, config: &Config) -> Vec<Probe> {
    let mut out = Vec::new();
    match client.auth_info().await {
        Ok(AuthInfo::Ssws) => {}
        Ok(AuthInfo::OAuth(info)) => out.push(token_probe(&info, config)),
        Err(e) => {
            // Without a token nothing else can be read.
            out.push(Probe {
                what: "okta token",
                ok: false,
                detail: error_chain(&e),
            });
            let wrong_key = matches!(&e, OktaError::OAuth(inner)
                if matches!(**inner, OAuthError::InvalidClient { .. }));
            if wrong_key
                && let OktaAuth::OAuth {
                    private_key,
                    key_id,
                    ..
                } = &config.okta.auth
            {
                // The public half only: what the app's Public Keys must hold.
                // Information, not a second failure.
                out.push(Probe {
                    what: "okta key",
                    ok: true,
                    detail: format!(
                        "the public key (JWK) of the configured private key, to register in the \
                         app: {}",
                        private_key.public_jwk(key_id.as_deref())
                    ),
                });
            }
            return out;
        }
    }
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
                        u.user.as_ref().is_some_and(|u| {
                            crate::reconcile::plan::values::is_active_status(&u.status)
                        })
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
    out.push(events_probe(client, config).await);
    out
}

/// Whether the incremental sync can read the System Log (SPEC §7): one
/// request for the last minute. Without permission the sync still works
/// (full reconciles only), so this probe never fails `check`; it says
/// `events: unavailable` and what to grant.
async fn events_probe(client: &OktaClient, config: &Config) -> Probe {
    if !config.events.enabled() {
        return Probe {
            what: "events",
            ok: true,
            detail: "off (events.source = \"off\"): full reconciles only".into(),
        };
    }
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    let url = client.logs_since_url(
        since,
        &crate::reconcile::events::log_filter(config.okta.app_id.as_deref()),
    );
    let detail = match client.poll_logs(&url).await {
        Ok(poll) => format!(
            "System Log readable ({} events in the last minute); polled every {}s between full \
             reconciles",
            poll.events.len(),
            config.events.poll_interval.as_secs()
        ),
        Err(e @ (OktaError::Forbidden { .. } | OktaError::OAuth(_))) => format!(
            "unavailable: {} — the sync runs full reconciles only; grant the scope \
             okta.logs.read (OAuth) or an admin role that can read the System Log (SSWS)",
            error_chain(&e)
        ),
        Err(e) => format!("unavailable: {}", error_chain(&e)),
    };
    Probe {
        what: "events",
        ok: true,
        detail,
    }
}

/// The scopes the sync's reads need under this config.
pub fn needed_scopes(config: &Config) -> Vec<&'static str> {
    let mut needed = Vec::new();
    if config.okta.app_id.is_some() {
        needed.push("okta.apps.read");
    }
    needed.push("okta.groups.read");
    needed
}

/// Whether `granted` covers `scope` (`*.manage` includes `*.read`).
fn covers(granted: &[String], scope: &str) -> bool {
    granted.iter().any(|g| {
        g == scope
            || scope
                .strip_suffix(".read")
                .is_some_and(|base| *g == format!("{base}.manage"))
    })
}

fn token_probe(info: &TokenInfo, config: &Config) -> Probe {
    let missing: Vec<&str> = needed_scopes(config)
        .into_iter()
        .filter(|scope| !covers(&info.scopes, scope))
        .collect();
    let mut detail = format!(
        "{} for OAuth client {}: scopes {} (expires in {}s)",
        if info.dpop {
            "DPoP-bound access token (DPoP on)"
        } else {
            "Bearer access token (DPoP off)"
        },
        info.client_id,
        if info.scopes.is_empty() {
            "none".to_owned()
        } else {
            info.scopes.join(" ")
        },
        info.expires_in.as_secs()
    );
    if !missing.is_empty() {
        detail.push_str(&format!(
            "; missing {} needed by the sync: add to okta.oauth.scopes and grant to the app",
            missing.join(" ")
        ));
    }
    if config.events.enabled() && !covers(&info.scopes, crate::okta::oauth::LOGS_SCOPE) {
        detail.push_str(&format!(
            "; without {} the System Log cannot be read (events: unavailable, full \
             reconciles only)",
            crate::okta::oauth::LOGS_SCOPE
        ));
    }
    Probe {
        what: "okta token",
        ok: missing.is_empty(),
        detail,
    }
}

//! `writer-sync check`: read-only probes of Okta that tell an operator what
//! works and what to fix (credential, OAuth token and scopes, app id and
//! status, the role attribute in the schema, pushed groups), with a short
//! retry budget of its own so a broken setup is diagnosed at once.
//!
//! Invariant: never writes anywhere; each probe reports instead of failing.

use std::time::Duration;

use crate::config::{Config, OktaAuth, PushGroups, RoleSource};
use crate::okta::auth::AuthInfo;
use crate::okta::error::{OAuthError, OktaError};
use crate::okta::oauth::TokenInfo;
use crate::okta::{OktaClient, OktaClientConfig};
use crate::reconcile::error_chain;
use crate::reconcile::observe::inactive_app_warning;

/// The retry budget of `check`'s requests (at most; a smaller
/// `okta.retry_budget` wins): enough to ride out one blip, short enough
/// that an unreachable Okta is reported in seconds, not in the daemon's
/// five minutes.
pub const CHECK_RETRY_BUDGET: Duration = Duration::from_secs(10);

/// The Okta client settings of `check`: the configured ones with the retry
/// budget capped at [`CHECK_RETRY_BUDGET`].
pub fn okta_client_config(config: &Config) -> OktaClientConfig {
    let mut client = config.okta_client_config();
    client.retry_budget = client.retry_budget.min(CHECK_RETRY_BUDGET);
    client
}

/// One line of the `check` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Short label (`okta app`, `okta users`, …).
    pub what: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Probes Okta with the configured credential: with OAuth the token (DPoP,
/// granted scopes), then the app (a warning when it is not active), its
/// assigned users, the role attribute in the schema it is read from (a
/// warning when it is not defined there; "could not verify" without
/// `okta.schemas.read`), and its groups (one listing each), or the named
/// push groups.
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
            Ok(app) => {
                let active = app.status.is_empty() || app.status == "ACTIVE";
                out.push(Probe {
                    what: "okta app",
                    ok: true,
                    detail: if active {
                        format!(
                            "{} {:?} ({}), status {}",
                            app.id, app.label, app.name, app.status
                        )
                    } else {
                        format!("warning: {}", inactive_app_warning(&app))
                    },
                });
            }
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
    out.push(schema_probe(client, config).await);
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

/// Whether `sync.role_attribute` is defined in the schema it is read from:
/// the app-user schema (`role_source = "app_user"` with an app) or the
/// default user schema. A missing attribute is a warning (every role would
/// be `member`); an unreadable schema is reported as not verified.
async fn schema_probe(client: &OktaClient, config: &Config) -> Probe {
    let attribute = config.sync.role_attribute.as_str();
    let (schema, which) = match (&config.okta.app_id, config.sync.role_source) {
        (Some(app_id), RoleSource::AppUser) => (
            client.get_app_user_schema(app_id).await,
            format!("the app-user schema of app {app_id}"),
        ),
        _ => (
            client.get_user_schema().await,
            "the Okta user schema (default user type)".to_owned(),
        ),
    };
    let detail = match schema {
        Ok(schema) if schema.defines(attribute) => {
            format!("sync.role_attribute {attribute:?} is defined in {which}")
        }
        Ok(_) => format!(
            "warning: sync.role_attribute {attribute:?} is not defined in {which}: every synced \
             user would get the role member; add the attribute to that schema in Okta (Directory \
             > Profile Editor) or fix sync.role_attribute / sync.role_source"
        ),
        Err(e) => {
            let permission = matches!(&e, OktaError::Forbidden { .. } | OktaError::OAuth(_));
            format!(
                "could not verify that sync.role_attribute {attribute:?} is defined in {which}{}: \
                 {}",
                if permission {
                    " (reading schemas needs the scope okta.schemas.read and an admin role that \
                     can read them; optional)"
                } else {
                    ""
                },
                error_chain(&e)
            )
        }
    };
    Probe {
        what: "okta schema",
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

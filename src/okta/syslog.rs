//! What an incremental sync reads (SPEC §7): the System Log as a polling
//! query, and the single objects events name (one app user, one user and
//! its groups, users by email).
//!
//! Invariant: a polling query never ends by itself (Okta always sends a
//! `next` link, even after an empty page), so [`OktaClient::poll_logs`]
//! reads pages until one is shorter than its `limit` and hands back the
//! `next` link to resume from; it never uses `for_each_page` (whose cursor
//! loop guard would refuse Okta repeating a link when nothing happened).
//! Events are hints: they are decoded leniently and only their type,
//! outcome, targets, `published` and `uuid` are used.

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::LINK;
use serde::{Deserialize, Deserializer};
use tracing::instrument;
use url::Url;

use crate::okta::error::{Endpoint, OktaError};
use crate::okta::page::{self, PageGuard, next_link, resolve_next};
use crate::okta::response::decode;
use crate::okta::wire::{AppUser, Group, User};
use crate::okta::{OktaClient, valid_id};

/// Events per System Log page (Okta's maximum).
pub const LOG_PAGE_SIZE: u32 = 1_000;

/// Pages one poll reads at most: 50,000 events is far past any
/// `events.max_affected_users`, so the caller falls back to a full
/// reconcile long before.
pub const MAX_LOG_PAGES: usize = 50;

/// One System Log event, as far as the sync reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEvent {
    #[serde(default, deserialize_with = "string_or_default")]
    pub uuid: String,
    /// RFC 3339 as sent.
    #[serde(default, deserialize_with = "string_or_default")]
    pub published: String,
    #[serde(default, deserialize_with = "string_or_default")]
    pub event_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub outcome: Outcome,
    /// `target` is `null` in Okta's hook previews: tolerated.
    #[serde(default, deserialize_with = "null_as_default")]
    pub target: Vec<Target>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Outcome {
    /// `SUCCESS`, `FAILURE`, `SKIPPED`, `ALLOW`, `DENY`, `CHALLENGE`, …
    #[serde(default, deserialize_with = "string_or_default")]
    pub result: String,
}

/// An object an event is about: `User` (`00u…`), `UserGroup` (`00g…`),
/// `AppInstance` (`0oa…`), `AppUser` (`0ua…`, which is not the user id).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[serde(default, deserialize_with = "string_or_default")]
    pub id: String,
    #[serde(rename = "type", default, deserialize_with = "string_or_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "string_or_default")]
    pub display_name: String,
}

impl LogEvent {
    /// The ids of the targets of `kind`.
    pub fn targets(&self, kind: &str) -> impl Iterator<Item = &str> {
        self.target
            .iter()
            .filter(move |t| t.kind == kind && !t.id.is_empty())
            .map(|t| t.id.as_str())
    }

    /// `published` as a time, when it parses.
    pub fn published_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.published)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// What one poll read.
#[derive(Debug, Clone)]
pub struct LogPoll {
    /// The events of every page read, in Okta's order.
    pub events: Vec<LogEvent>,
    /// Where the next poll starts: Okta's `next` link after the last page.
    pub next: Url,
    /// Requests made.
    pub pages: usize,
}

fn string_or_default<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => s.replace('\0', "\u{fffd}"),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    })
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl OktaClient {
    /// The first URL of a polling query (SPEC §7): `since`, ascending, no
    /// `until`, Okta's largest page, and `filter`.
    pub fn logs_since_url(&self, since: DateTime<Utc>, filter: &str) -> Url {
        let since = since.to_rfc3339_opts(SecondsFormat::Millis, true);
        let limit = LOG_PAGE_SIZE.to_string();
        self.api_url(
            &["logs"],
            &[
                ("since", &since),
                ("sortOrder", "ASCENDING"),
                ("limit", &limit),
                ("filter", filter),
            ],
        )
    }

    /// Reads the System Log from `start` (a [`OktaClient::logs_since_url`]
    /// or a `next` link a poll returned) until a page shorter than its limit:
    /// an idle poll is one request. At most [`MAX_LOG_PAGES`] pages; then
    /// the events so far and the link to go on from are returned.
    #[instrument(skip_all)]
    pub async fn poll_logs(&self, start: &Url) -> Result<LogPoll, OktaError> {
        let endpoint = Endpoint::get(start);
        let pagination = |reason| OktaError::Pagination {
            endpoint: endpoint.clone(),
            reason,
        };
        // Only the origin is guarded: a polling query may repeat its link.
        let mut guard = PageGuard::new(self.org_url(), usize::MAX);
        guard.admit(start).map_err(pagination)?;
        let mut url = start.clone();
        let mut events = Vec::new();
        let mut pages = 0;
        loop {
            let limit = page_limit(&url);
            let fetched = self.get(&url).await?;
            let page: Vec<LogEvent> = decode(&fetched.endpoint, &fetched.body)?;
            pages += 1;
            let mut links = Vec::new();
            for value in fetched.headers.get_all(LINK) {
                links.push(value.to_str().map_err(|_| {
                    pagination(page::PageError::MalformedLink {
                        value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                        reason: "not visible ASCII",
                    })
                })?);
            }
            let next = match next_link(links).map_err(pagination)? {
                Some(target) => {
                    let next = resolve_next(&url, &target).map_err(pagination)?;
                    if !page::same_origin(&next, self.org_url()) {
                        return Err(pagination(page::PageError::ForeignOrigin {
                            next: next.to_string(),
                            expected: self.org_url().to_string(),
                        }));
                    }
                    next
                }
                // A polling query always has one; without it, polling again
                // from the same link reads the same events again (harmless).
                None => url.clone(),
            };
            let short = page.len() < limit;
            events.extend(page);
            if short || pages >= MAX_LOG_PAGES {
                return Ok(LogPoll {
                    events,
                    next,
                    pages,
                });
            }
            url = next;
        }
    }

    /// One app user with its user: `GET /api/v1/apps/{appId}/users/{userId}
    /// ?expand=user`. `None` when the user is not assigned (404).
    #[instrument(skip_all, fields(user_id = %user_id))]
    pub async fn get_app_user(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<Option<AppUser>, OktaError> {
        let url = self.api_url(
            &[
                "apps",
                valid_id("app", app_id)?,
                "users",
                valid_id("user", user_id)?,
            ],
            &[("expand", "user")],
        );
        match self.get(&url).await {
            Ok(fetched) => decode(&fetched.endpoint, &fetched.body).map(Some),
            // Okta names what it did not find: the assignment (`AppUser`,
            // not assigned) or the app itself (`AppInstance`, a wrong
            // `okta.app_id`, which is an error).
            Err(OktaError::NotFound { failure, .. })
                if !failure
                    .error_summary
                    .as_deref()
                    .is_some_and(|s| s.contains("AppInstance")) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// One user: `GET /api/v1/users/{userId}`. `None` when it does not exist
    /// (deleted).
    #[instrument(skip_all, fields(user_id = %user_id))]
    pub async fn get_user(&self, user_id: &str) -> Result<Option<User>, OktaError> {
        let url = self.api_url(&["users", valid_id("user", user_id)?], &[]);
        match self.get(&url).await {
            Ok(fetched) => decode(&fetched.endpoint, &fetched.body).map(Some),
            Err(OktaError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The groups a user is a member of: `GET /api/v1/users/{userId}/groups`
    /// (every page). Empty when the user does not exist.
    #[instrument(skip_all, fields(user_id = %user_id))]
    pub async fn list_user_groups(&self, user_id: &str) -> Result<Vec<Group>, OktaError> {
        let limit = crate::okta::GROUPS_PAGE_SIZE.to_string();
        let url = self.api_url(
            &["users", valid_id("user", user_id)?, "groups"],
            &[("limit", &limit)],
        );
        let mut groups = Vec::new();
        let listed = self
            .for_each_page(url, |page: Vec<Group>| {
                groups.extend(page);
                Ok::<(), OktaError>(())
            })
            .await;
        match listed {
            Ok(_) => Ok(groups),
            Err(OktaError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Users whose `profile.email` equals `email` (Okta compares ignoring
    /// case; the caller compares exactly as the planner does):
    /// `GET /api/v1/users?search=profile.email eq "…"`.
    #[instrument(skip_all)]
    pub async fn find_users_by_email(&self, email: &str) -> Result<Vec<User>, OktaError> {
        let limit = crate::okta::GROUPS_PAGE_SIZE.to_string();
        let expression = format!(
            "profile.email eq \"{}\"",
            crate::okta::escape_search_value(email)
        );
        let url = self.api_url(&["users"], &[("search", &expression), ("limit", &limit)]);
        let mut users = Vec::new();
        self.for_each_page(url, |page: Vec<User>| {
            users.extend(page);
            Ok::<(), OktaError>(())
        })
        .await?;
        Ok(users)
    }
}

/// The `limit` of a log page URL (the page size Okta answers to).
fn page_limit(url: &Url) -> usize {
    url.query_pairs()
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(LOG_PAGE_SIZE as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_leniently() {
        let events: Vec<LogEvent> = serde_json::from_str(
            r#"[
              {"uuid": "e1", "published": "2026-01-01T00:00:00.123Z",
               "eventType": "application.user_membership.add",
               "outcome": {"result": "SUCCESS", "reason": null},
               "target": [
                 {"id": "0ua1", "type": "AppUser", "alternateId": "a@x.com"},
                 {"id": "0oa1", "type": "AppInstance"},
                 {"id": "00u1", "type": "User", "displayName": "A"}
               ], "actor": {"id": "x"}, "debugContext": {"debugData": {}}},
              {"uuid": "e2", "eventType": "user.lifecycle.suspend", "target": null,
               "outcome": null, "published": 5}
            ]"#,
        )
        .unwrap();
        assert_eq!(events[0].targets("User").collect::<Vec<_>>(), ["00u1"]);
        assert_eq!(events[0].targets("AppUser").collect::<Vec<_>>(), ["0ua1"]);
        assert_eq!(events[0].outcome.result, "SUCCESS");
        assert_eq!(
            events[0].published_at().map(|t| t.timestamp_millis()),
            Some(1_767_225_600_123)
        );
        assert!(events[1].target.is_empty());
        assert_eq!(events[1].published, "5");
        assert!(events[1].published_at().is_none());
    }

    #[test]
    fn page_limits_come_from_the_link() {
        let url = Url::parse("https://x.okta.com/api/v1/logs?after=abc&limit=200").unwrap();
        assert_eq!(page_limit(&url), 200);
        let url = Url::parse("https://x.okta.com/api/v1/logs?after=abc").unwrap();
        assert_eq!(page_limit(&url), 1_000);
    }
}

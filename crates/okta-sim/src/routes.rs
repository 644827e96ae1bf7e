//! The simulator's endpoints: which path answers what, the Okta-shaped
//! bodies, search and filter expressions, and pagination with opaque
//! cursors and `Link` headers.

use std::collections::BTreeMap;
use std::ops::Bound;

use axum::http::StatusCode;
use serde_json::Value;
use url::Url;

use crate::cursor::{decode_cursor, encode_cursor};
use crate::filter::{self, Expr};
use crate::lock;
use crate::org::{Id, Org, SimGroup, SimUser, UserStatus};
use crate::server::{Ctx, Reply, Routed, Shared};

impl Shared {
    pub(crate) fn absolute(&self, path: &str, query: Option<&str>) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        url.set_query(query);
        url
    }

    /// The same request with `after` set to `cursor` (first, as Okta does).
    pub(crate) fn next_url(&self, ctx: &Ctx<'_>, cursor: &str) -> Url {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("after", cursor);
        for (key, value) in ctx.params.iter().filter(|(key, _)| key != "after") {
            query.append_pair(key, value);
        }
        self.absolute(ctx.path, Some(&query.finish()))
    }

    pub(crate) fn route(&self, org: &Org, ctx: &Ctx<'_>) -> Result<Routed, Reply> {
        let base = self.base.as_str();
        let segments: Vec<&str> = ctx.path.trim_end_matches('/').split('/').collect();
        let not_found = |id: &str, kind: &str| {
            Reply::error(
                StatusCode::NOT_FOUND,
                "E0000007",
                &format!("Not found: Resource not found: {id} ({kind})"),
                ctx.serial,
            )
        };
        let after = match ctx.param("after") {
            None => None,
            Some(cursor) => Some(decode_cursor(cursor).ok_or_else(|| {
                Reply::error(
                    StatusCode::BAD_REQUEST,
                    "E0000001",
                    "Api validation failed: after",
                    ctx.serial,
                )
            })?),
        };
        let after_id = after.as_ref().map(|(_, id)| id.as_str());
        let max_page = lock(&self.config).options.max_page_size;
        let limit = |default: usize, min: usize, max: usize| {
            let asked = ctx
                .param("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(default);
            let size = asked.clamp(min, max);
            max_page.map_or(size, |cap| size.min(cap.max(1)))
        };
        let expands = |what: &str| {
            ctx.param("expand")
                .is_some_and(|e| e.split(',').any(|part| part.trim() == what))
        };
        match segments.as_slice() {
            ["", "api", "v1", "apps", app_id] => {
                if *app_id != org.app_id() {
                    return Err(not_found(app_id, "AppInstance"));
                }
                Ok(Routed::Object(org.app_json(base)))
            }
            ["", "api", "v1", "apps", app_id, "users"] => {
                if *app_id != org.app_id() {
                    return Err(not_found(app_id, "AppInstance"));
                }
                let embed = expands("user");
                Ok(self.page(
                    ctx.page,
                    limit(50, 1, 500),
                    range_after(&org.users, after_id).filter_map(|(id, user)| {
                        let (scope, profile) = org.app_assignment(id, user)?;
                        Some((id, org.app_user_json(base, id, user, scope, profile, embed)))
                    }),
                ))
            }
            ["", "api", "v1", "apps", app_id, "groups"] => {
                if *app_id != org.app_id() {
                    return Err(not_found(app_id, "AppInstance"));
                }
                let embed = expands("group");
                Ok(self.page(
                    ctx.page,
                    limit(20, 20, 200),
                    range_after(&org.assigned_groups, after_id).map(|(id, assignment)| {
                        (id, org.app_group_json(base, id, assignment, embed))
                    }),
                ))
            }
            ["", "api", "v1", "groups"] => {
                let query = self.query_expr(ctx)?;
                let prefix = ctx.param("q").map(str::to_lowercase);
                Ok(self.page(
                    ctx.page,
                    limit(200, 1, 200),
                    range_after(&org.groups, after_id)
                        .filter(|(id, group)| {
                            query.as_ref().is_none_or(|(expr, ignore_case)| {
                                expr.matches(&|attr| group_attr(id, group, attr), *ignore_case)
                            }) && prefix
                                .as_ref()
                                .is_none_or(|p| group.name.to_lowercase().starts_with(p))
                        })
                        .map(|(id, group)| (id, org.group_json(base, id, group))),
                ))
            }
            ["", "api", "v1", "groups", group_id, "users"] => {
                let Some(group) = org.groups.get(*group_id) else {
                    return Err(not_found(group_id, "UserGroup"));
                };
                let members_limit = lock(&self.config).options.members_limit;
                let max = members_limit.map_or(1000, |m| m.max.max(1));
                if let Some(asked) = ctx.param("limit").and_then(|l| l.parse::<usize>().ok())
                    && asked > max
                    && members_limit.is_some_and(|m| m.refuse_above)
                {
                    return Err(Reply::error_with_causes(
                        StatusCode::BAD_REQUEST,
                        "E0000001",
                        "Api validation failed: limit",
                        &[&format!("limit: The limit must be between 1 and {max}.")],
                        ctx.serial,
                    ));
                }
                let members = match after_id {
                    Some(after) => group
                        .members
                        .range::<str, _>((Bound::Excluded(after), Bound::Unbounded)),
                    None => group.members.range::<str, _>(..),
                };
                Ok(self.page(
                    ctx.page,
                    limit(1000.min(max), 1, max),
                    members.filter_map(|id| {
                        let user = org.users.get(id)?;
                        Some((id, org.user_json(base, id, user)))
                    }),
                ))
            }
            ["", "api", "v1", "users"] => {
                let query = self.query_expr(ctx)?;
                Ok(self.page(
                    ctx.page,
                    limit(200, 1, 200),
                    range_after(&org.users, after_id)
                        .filter(|(id, user)| match &query {
                            // A plain list omits DEPROVISIONED users; filter
                            // and search include them.
                            None => user.status != UserStatus::Deprovisioned,
                            Some((expr, ignore_case)) => {
                                expr.matches(&|attr| user_attr(org, id, user, attr), *ignore_case)
                            }
                        })
                        .map(|(id, user)| (id, org.user_json(base, id, user))),
                ))
            }
            [
                "",
                "api",
                "v1",
                "meta",
                "schemas",
                "apps",
                app_id,
                "default",
            ] => {
                if *app_id != org.app_id() {
                    return Err(not_found(app_id, "AppInstance"));
                }
                let custom = lock(&self.config).options.schema_custom_attributes.clone();
                Ok(Routed::Object(org.app_user_schema_json(base, &custom)))
            }
            ["", "api", "v1", "meta", "schemas", "user", "default"] => {
                let custom = lock(&self.config).options.schema_custom_attributes.clone();
                Ok(Routed::Object(org.user_schema_json(base, &custom)))
            }
            _ => self
                .route_incremental(org, ctx, &segments)
                .unwrap_or_else(|| Err(not_found(ctx.path, "Resource"))),
        }
    }

    /// What an incremental sync reads (SPEC §7): the System Log, one app
    /// user, one user and its groups. `None`: not one of these paths.
    fn route_incremental(
        &self,
        org: &Org,
        ctx: &Ctx<'_>,
        segments: &[&str],
    ) -> Option<Result<Routed, Reply>> {
        let base = self.base.as_str();
        let not_found = |id: &str, kind: &str| {
            Err(Reply::error(
                StatusCode::NOT_FOUND,
                "E0000007",
                &format!("Not found: Resource not found: {id} ({kind})"),
                ctx.serial,
            ))
        };
        Some(match segments {
            ["", "api", "v1", "logs"] => self.system_log(org, ctx),
            ["", "api", "v1", "apps", app_id, "users", user_id] => {
                if *app_id != org.app_id() {
                    return Some(not_found(app_id, "AppInstance"));
                }
                let embed = ctx
                    .param("expand")
                    .is_some_and(|e| e.split(',').any(|part| part.trim() == "user"));
                match org.users.get_key_value(*user_id) {
                    Some((id, user)) => match org.app_assignment(id, user) {
                        Some((scope, profile)) => Ok(Routed::Object(
                            org.app_user_json(base, id, user, scope, profile, embed),
                        )),
                        None => not_found(user_id, "AppUser"),
                    },
                    None => not_found(user_id, "User"),
                }
            }
            ["", "api", "v1", "users", user_id] => match org.users.get_key_value(*user_id) {
                Some((id, user)) => Ok(Routed::Object(org.user_json(base, id, user))),
                None => not_found(user_id, "User"),
            },
            ["", "api", "v1", "users", user_id, "groups"] => match org.users.get(*user_id) {
                Some(user) => {
                    let mut ids: Vec<&Id> = user.groups.iter().collect();
                    ids.sort();
                    Ok(Routed::Listing {
                        items: ids
                            .into_iter()
                            .filter_map(|g| Some(org.group_json(base, g, org.groups.get(g)?)))
                            .collect(),
                        next: None,
                    })
                }
                None => not_found(user_id, "User"),
            },
            _ => return None,
        })
    }

    /// `GET /api/v1/logs` as a polling query: `since` or an `after` cursor,
    /// ascending, `limit` (0–1,000, default 100), `filter`; the `next` link
    /// is always there, also after an empty page.
    fn system_log(&self, org: &Org, ctx: &Ctx<'_>) -> Result<Routed, Reply> {
        let bad = |code: &str, summary: &str| {
            Err(Reply::error(
                StatusCode::BAD_REQUEST,
                code,
                summary,
                ctx.serial,
            ))
        };
        if lock(&self.config).options.logs_forbidden {
            return Err(Reply::error(
                StatusCode::FORBIDDEN,
                "E0000006",
                "You do not have permission to perform the requested action",
                ctx.serial,
            ));
        }
        if ctx.param("until").is_some()
            || ctx
                .param("sortOrder")
                .is_some_and(|o| !o.eq_ignore_ascii_case("ASCENDING"))
        {
            return bad(
                "E0000001",
                "Api validation failed: the simulator serves polling queries only \
                 (sortOrder=ASCENDING, no until)",
            );
        }
        let now = self.clock.wall(tokio::time::Instant::now());
        let since = match ctx.param("since") {
            None => None,
            Some(text) => match crate::syslog::parse_rfc3339(text) {
                Some(since) => Some(since),
                None => return bad("E0000001", "Api validation failed: since"),
            },
        };
        if since.is_some_and(|s| {
            now.duration_since(s)
                .is_ok_and(|age| age > crate::syslog::MAX_SINCE_AGE)
        }) {
            return bad(
                "E0000053",
                "Invalid request: The since parameter is over 180 days prior to the current day.",
            );
        }
        let after = match ctx.param("after") {
            None => None,
            Some(cursor) => {
                let parsed = decode_cursor(cursor).and_then(|(_, last)| {
                    let (ms, seq) = last.split_once(':')?;
                    Some((ms.parse().ok()?, seq.parse().ok()?))
                });
                match parsed {
                    Some(after) => Some(after),
                    None => return bad("E0000001", "Api validation failed: after"),
                }
            }
        };
        let filter = match ctx.param("filter") {
            None => None,
            Some(text) => match filter::parse(text) {
                Ok(expr) => Some(expr),
                Err(e) => return bad("E0000053", &format!("Invalid filter: {e}")),
            },
        };
        let limit = ctx
            .param("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(100)
            .min(1_000);
        let (page, (ms, seq)) = org.event_log().poll(
            &crate::syslog::LogQuery {
                since,
                after,
                limit,
                filter: filter.as_ref(),
            },
            now,
        );
        Ok(Routed::Listing {
            items: page.into_iter().map(crate::syslog::entry_json).collect(),
            next: Some(encode_cursor(0, &format!("{ms}:{seq}"))),
        })
    }

    /// `search` (values compared ignoring case) or `filter` (only `eq`, exact).
    pub(crate) fn query_expr(&self, ctx: &Ctx<'_>) -> Result<Option<(Expr, bool)>, Reply> {
        let invalid = |reason: String| {
            tracing::debug!(%reason, "simulator refused a search expression");
            Reply::error(
                StatusCode::BAD_REQUEST,
                "E0000031",
                "Invalid search criteria.",
                ctx.serial,
            )
        };
        if let Some(search) = ctx.param("search") {
            return filter::parse(search)
                .map(|expr| Some((expr, true)))
                .map_err(invalid);
        }
        if let Some(filter) = ctx.param("filter") {
            let expr = filter::parse(filter).map_err(invalid)?;
            if !expr.only_eq() {
                return Err(invalid("filter allows only eq".into()));
            }
            return Ok(Some((expr, false)));
        }
        Ok(None)
    }

    /// Takes up to `limit` items; a full page gets a cursor to the next one
    /// (which may then be empty, as with Okta).
    pub(crate) fn page<'a>(
        &self,
        page: u32,
        limit: usize,
        items: impl Iterator<Item = (&'a Id, Value)>,
    ) -> Routed {
        let mut values = Vec::with_capacity(limit.min(1_000));
        let mut last: Option<&Id> = None;
        for (id, value) in items.take(limit) {
            values.push(value);
            last = Some(id);
        }
        let next = match last {
            Some(last) if values.len() == limit => Some(encode_cursor(page, last)),
            _ => None,
        };
        Routed::Listing {
            items: values,
            next,
        }
    }
}

pub(crate) fn range_after<'a, V>(
    map: &'a BTreeMap<Id, V>,
    after: Option<&str>,
) -> std::collections::btree_map::Range<'a, Id, V> {
    match after {
        Some(after) => map.range::<str, _>((Bound::Excluded(after), Bound::Unbounded)),
        None => map.range::<str, _>(..),
    }
}

pub(crate) fn group_attr(id: &str, group: &SimGroup, attr: &str) -> Option<String> {
    match attr {
        "id" => Some(id.to_owned()),
        "type" => Some(group.group_type.clone()),
        "profile.name" => Some(group.name.clone()),
        "profile.description" => group.description.clone(),
        other => other
            .strip_prefix("profile.")
            .and_then(|key| group.extra.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

pub(crate) fn user_attr(org: &Org, id: &str, user: &SimUser, attr: &str) -> Option<String> {
    match attr {
        "id" => Some(id.to_owned()),
        "status" => Some(user.status.as_str().to_owned()),
        other => {
            let key = other.strip_prefix("profile.")?;
            org.render_profile(&user.profile)
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
        }
    }
}

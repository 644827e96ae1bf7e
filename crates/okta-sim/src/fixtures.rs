//! Orgs built from the recorded Okta responses in the repository's
//! `tests/fixtures/okta` (writer-sync's tests read them too).
//!
//! Invariant: deterministic. The recordings hold users, groups and one
//! recorded group membership but no app, so the app assignment is a fixed
//! plan over the users sorted by id (documented on [`Org::from_fixtures`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::org::{Id, Org, OrgError, Profile, SimApp, SimGroup, UserStatus};

/// The app of fixture-based orgs (and of [`Org::sample`]).
pub const FIXTURE_APP_ID: &str = "0oa1writer0fix0app01";

const USERS_HAR: &str = include_str!("../../../tests/fixtures/okta/list-users.har");
const GROUPS_HAR: &str = include_str!("../../../tests/fixtures/okta/list-groups.har");
const GROUP_OPS_HAR: &str = include_str!("../../../tests/fixtures/okta/group-user-operations.har");

/// The recorded groups the assignment plan uses (all `OKTA_GROUP`).
const ADMINS: &str = "Admin Users Group";
const OIDC: &str = "OpenID Connect Group";
const WEST: &str = "West Coast Users";
const TEST: &str = "Test Group";

/// Direct-assignment roles, cycled: one unknown value, then valid ones.
const DIRECT_ROLES: [&str; 4] = ["superuser", "admin", "member", "Team Admin"];

struct FixtureUser {
    status: UserStatus,
    profile: Map<String, Value>,
}

#[derive(Default)]
struct FixtureData {
    users: BTreeMap<String, FixtureUser>,
    groups: BTreeMap<String, SimGroup>,
    /// (group id, user id) from recorded `/groups/{id}/users` responses.
    memberships: BTreeSet<(String, String)>,
}

impl FixtureData {
    fn parse(
        users_har: &str,
        groups_har: &str,
        group_ops_har: &str,
    ) -> Result<FixtureData, OrgError> {
        let mut data = FixtureData::default();
        for (what, har) in [
            ("users HAR", users_har),
            ("groups HAR", groups_har),
            ("group operations HAR", group_ops_har),
        ] {
            for (method, url, body) in har_responses(what, har)? {
                let items = match body {
                    Value::Array(items) => items,
                    object @ Value::Object(_) => vec![object],
                    _ => continue,
                };
                let members_of = group_members_path(&method, &url);
                for item in items {
                    if let Some((id, user)) = as_user(what, &item)? {
                        if let Some(group_id) = &members_of {
                            data.memberships.insert((group_id.clone(), id.clone()));
                        }
                        data.users.insert(id, user);
                    } else if let Some((id, group)) = as_group(&item) {
                        data.groups.insert(id, group);
                    }
                }
            }
        }
        Ok(data)
    }
}

/// (method, url, parsed body) of every entry with a JSON body.
fn har_responses(what: &'static str, har: &str) -> Result<Vec<(String, String, Value)>, OrgError> {
    let fixture = |reason: String| OrgError::Fixture { what, reason };
    let har: Value = serde_json::from_str(har).map_err(|err| fixture(err.to_string()))?;
    let entries = har["log"]["entries"]
        .as_array()
        .ok_or_else(|| fixture("no log.entries array".into()))?;
    let mut responses = Vec::new();
    for entry in entries {
        let method = entry["request"]["method"].as_str().unwrap_or("").to_owned();
        let url = entry["request"]["url"].as_str().unwrap_or("").to_owned();
        let Some(text) = entry["response"]["content"]["text"].as_str() else {
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let body: Value = serde_json::from_str(text)
            .map_err(|err| fixture(format!("response to {method} {url}: {err}")))?;
        responses.push((method, url, body));
    }
    Ok(responses)
}

/// The group id of a recorded `GET /api/v1/groups/{id}/users`.
fn group_members_path(method: &str, url: &str) -> Option<String> {
    if method != "GET" {
        return None;
    }
    let path = url::Url::parse(url).ok()?.path().to_owned();
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["", "api", "v1", "groups", id, "users"] => Some((*id).to_owned()),
        _ => None,
    }
}

fn as_user(what: &'static str, item: &Value) -> Result<Option<(String, FixtureUser)>, OrgError> {
    let (Some(id), Some(status), Some(profile)) = (
        item["id"].as_str(),
        item["status"].as_str(),
        item["profile"].as_object(),
    ) else {
        return Ok(None);
    };
    if !profile.contains_key("login") {
        return Ok(None);
    }
    let status = UserStatus::parse(status).ok_or_else(|| OrgError::Fixture {
        what,
        reason: format!("user {id} has unknown status {status}"),
    })?;
    Ok(Some((
        id.to_owned(),
        FixtureUser {
            status,
            profile: profile.clone(),
        },
    )))
}

fn as_group(item: &Value) -> Option<(String, SimGroup)> {
    let id = item["id"].as_str()?;
    let group_type = item["type"].as_str()?;
    if !matches!(group_type, "OKTA_GROUP" | "APP_GROUP" | "BUILT_IN") {
        return None;
    }
    let profile = item["profile"].as_object()?;
    let name = profile.get("name")?.as_str()?.to_owned();
    let description = profile
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut extra = profile.clone();
    extra.remove("name");
    extra.remove("description");
    Some((
        id.to_owned(),
        SimGroup {
            name,
            description,
            group_type: group_type.to_owned(),
            extra,
            members: BTreeSet::new(),
        },
    ))
}

fn fixture_app() -> SimApp {
    SimApp {
        id: FIXTURE_APP_ID.to_owned(),
        label: "Writer".to_owned(),
        name: "writer_fixture".to_owned(),
        status: "ACTIVE".to_owned(),
    }
}

impl Org {
    /// An org with every user and group of the recorded HARs (text of
    /// `list-users.har`, `list-groups.har`, `group-user-operations.har`) and
    /// the recorded group membership, plus this fixed plan (users sorted by
    /// id, `i` = position):
    /// * the `BUILT_IN` group (Everyone) contains every user, as in Okta;
    /// * `West Coast Users` gets `i % 3 == 0`, `OpenID Connect Group`
    ///   `i % 4 == 1`, `Test Group` (the `OKTA_GROUP` one) `i % 5 == 2`,
    ///   `Admin Users Group` `i % 17 == 0`;
    /// * the app is assigned to `Admin Users Group` (priority 0, `writerRole:
    ///   admin`), `OpenID Connect Group` (1, `member`), `West Coast Users`
    ///   (2, no role) and `Test Group` (3, `Team Admin`);
    /// * users with `i % 10 == 5` are also assigned directly, `writerRole`
    ///   cycling through `superuser` (unknown), `admin`, `member`, `Team Admin`.
    ///
    /// Groups of the plan missing from the given HARs are skipped.
    pub fn from_fixtures(
        users_har: &str,
        groups_har: &str,
        group_ops_har: &str,
    ) -> Result<Org, OrgError> {
        let data = FixtureData::parse(users_har, groups_har, group_ops_har)?;
        let mut org = Org::new(fixture_app());
        let user_ids: Vec<Id> = data.users.keys().map(|id| Id::from(id.as_str())).collect();
        fill(&mut org, data, &user_ids, &BTreeSet::new());
        Ok(org)
    }

    /// A small deterministic org from the embedded recordings, for `writer-sync
    /// demo`: 30 users (every recorded status: 6 PROVISIONED / PASSWORD_EXPIRED
    /// / LOCKED_OUT / SUSPENDED users, the 3 recorded users sharing the email
    /// `vijet.mahabaleshwar@okta.com` (2 ACTIVE, 1 STAGED), 3 more STAGED and
    /// 18 ACTIVE users), the four plan groups of [`Org::from_fixtures`]
    /// assigned to the app with the same plan, `Everyone`, and the recorded
    /// `APP_GROUP` also named `Test Group` (not assigned; it makes a search by
    /// that name return two groups). The users sharing an email are all
    /// assigned directly (`writerRole: member`) so the duplicate-email rule
    /// shows.
    pub fn sample() -> Org {
        // The embedded recordings are part of the crate and covered by tests;
        // failing to parse them is a build defect, not a runtime condition.
        let data = FixtureData::parse(USERS_HAR, GROUPS_HAR, GROUP_OPS_HAR)
            .expect("embedded Okta fixtures parse");
        let mut by_email: BTreeMap<String, Vec<&String>> = BTreeMap::new();
        for (id, user) in &data.users {
            if let Some(email) = user.profile.get("email").and_then(Value::as_str) {
                by_email.entry(email.to_lowercase()).or_default().push(id);
            }
        }
        let shared: BTreeSet<String> = by_email
            .values()
            .filter(|ids| ids.len() > 1)
            .flatten()
            .map(|id| (*id).clone())
            .collect();
        let pick = |status: UserStatus, count: usize| -> Vec<String> {
            data.users
                .iter()
                .filter(|(id, user)| user.status == status && !shared.contains(*id))
                .take(count)
                .map(|(id, _)| id.clone())
                .collect()
        };
        let mut chosen: BTreeSet<String> = shared.clone();
        chosen.extend(
            data.users
                .iter()
                .filter(|(_, u)| !matches!(u.status, UserStatus::Active | UserStatus::Staged))
                .map(|(id, _)| id.clone()),
        );
        chosen.extend(pick(UserStatus::Staged, 3));
        chosen.extend(pick(UserStatus::Active, 18));
        let user_ids: Vec<Id> = chosen.iter().map(|id| Id::from(id.as_str())).collect();

        let mut data = data;
        data.users.retain(|id, _| chosen.contains(id));
        data.memberships.retain(|(_, user)| chosen.contains(user));
        data.groups.retain(|_, group| {
            group.group_type == "BUILT_IN"
                || group.name == TEST
                || (group.group_type == "OKTA_GROUP"
                    && [ADMINS, OIDC, WEST].contains(&group.name.as_str()))
        });
        let mut org = Org::new(fixture_app());
        fill(&mut org, data, &user_ids, &shared);
        org
    }
}

/// Loads users and groups into `org` and applies the assignment plan.
fn fill(org: &mut Org, data: FixtureData, user_ids: &[Id], assign_directly: &BTreeSet<String>) {
    for (id, user) in data.users {
        org.insert_user(
            Id::from(id.as_str()),
            user.status,
            Profile::Stored(Box::new(user.profile)),
        );
    }
    for (id, group) in data.groups {
        org.insert_group(Id::from(id.as_str()), group);
    }
    for (group_id, user_id) in &data.memberships {
        // Both exist: they were recorded together, or filtered together.
        let _ = org.add_member(group_id, user_id);
    }
    let group_named = |org: &Org, name: &str, group_type: &str| -> Option<Id> {
        org.groups
            .iter()
            .find(|(_, g)| g.name == name && g.group_type == group_type)
            .map(|(id, _)| id.clone())
    };
    let everyone = org
        .groups
        .iter()
        .find(|(_, g)| g.group_type == "BUILT_IN")
        .map(|(id, _)| id.clone());
    let plan: [(&str, usize, usize, u32, Option<&str>); 4] = [
        (ADMINS, 17, 0, 0, Some("admin")),
        (OIDC, 4, 1, 1, Some("member")),
        (WEST, 3, 0, 2, None),
        (TEST, 5, 2, 3, Some("Team Admin")),
    ];
    for (name, modulus, remainder, priority, role) in plan {
        let Some(group_id) = group_named(org, name, "OKTA_GROUP") else {
            continue;
        };
        for (i, user_id) in user_ids.iter().enumerate() {
            if i % modulus == remainder {
                org.add_member_ids(&group_id, user_id);
            }
        }
        let mut profile = Map::new();
        if let Some(role) = role {
            profile.insert("writerRole".into(), json!(role));
        }
        let _ = org.assign_group(&group_id, priority, profile);
    }
    if let Some(everyone) = everyone {
        for user_id in user_ids {
            org.add_member_ids(&everyone, user_id);
        }
    }
    for (i, user_id) in user_ids.iter().enumerate() {
        if i % 10 == 5 {
            let role = DIRECT_ROLES[(i / 10) % DIRECT_ROLES.len()];
            let _ = org.assign_user(
                user_id,
                json!({"writerRole": role})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        if assign_directly.contains(user_id.as_ref()) {
            let _ = org.assign_user(
                user_id,
                json!({"writerRole": "member"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::org::Scope;

    #[test]
    fn fixture_org_has_every_recorded_user_and_group() {
        let org = Org::from_fixtures(USERS_HAR, GROUPS_HAR, GROUP_OPS_HAR).unwrap();
        // 161 listed users + the one created in the group operations recording.
        assert_eq!(org.user_count(), 162);
        assert_eq!(org.group_count(), 155);
        let recorded_group = "00gb64ui4gnBHnTQY0h7";
        assert_eq!(
            org.group_members(recorded_group).unwrap(),
            vec!["00ub64epvgAGkGZ0e0h7".to_owned()]
        );
        let everyone = org.group_ids_named("Everyone");
        assert_eq!(org.group_members(&everyone[0]).unwrap().len(), 162);
        assert_eq!(org.assigned_group_ids().len(), 4);
        let app_users = org.app_user_ids();
        assert!(
            app_users.len() > 80 && app_users.len() < 162,
            "{}",
            app_users.len()
        );
        // Custom attributes of recorded profiles survive.
        let with_division = org
            .user_ids()
            .into_iter()
            .filter(|id| org.user_profile(id).unwrap().contains_key("division"))
            .count();
        assert_eq!(with_division, 4);
    }

    #[test]
    fn bad_har_is_an_error_naming_the_file() {
        let err = Org::from_fixtures("{", GROUPS_HAR, GROUP_OPS_HAR).unwrap_err();
        assert!(err.to_string().contains("users HAR"), "{err}");
        let err = Org::from_fixtures(USERS_HAR, "{\"log\":{}}", GROUP_OPS_HAR).unwrap_err();
        assert!(err.to_string().contains("groups HAR"), "{err}");
    }

    #[test]
    fn sample_org_is_small_varied_and_stable() {
        let org = Org::sample();
        assert_eq!(org.user_count(), 30);
        assert_eq!(org.user_ids(), Org::sample().user_ids());

        let mut statuses: BTreeMap<UserStatus, usize> = BTreeMap::new();
        for id in org.user_ids() {
            *statuses.entry(org.user_status(&id).unwrap()).or_default() += 1;
        }
        assert_eq!(statuses[&UserStatus::Active], 20);
        assert_eq!(statuses[&UserStatus::Staged], 4);
        assert_eq!(statuses[&UserStatus::Suspended], 1);
        assert_eq!(statuses[&UserStatus::LockedOut], 1);

        // The three users sharing an email are all in scope.
        let app_users = org.app_user_ids();
        let sharing: Vec<String> = app_users
            .iter()
            .filter(|id| {
                org.user_profile(id).unwrap()["email"]
                    .as_str()
                    .unwrap()
                    .eq_ignore_ascii_case("vijet.mahabaleshwar@okta.com")
            })
            .cloned()
            .collect();
        assert_eq!(sharing.len(), 3);

        assert_eq!(org.assigned_group_ids().len(), 4);
        assert_eq!(org.group_ids_named("Test Group").len(), 2);
        for group_id in org.assigned_group_ids() {
            assert!(
                !org.group_members(&group_id).unwrap().is_empty(),
                "{group_id}"
            );
        }

        let roles: BTreeSet<String> = app_users
            .iter()
            .filter_map(|id| org.app_user_profile(id))
            .filter(|(scope, _)| *scope == Scope::User)
            .filter_map(|(_, p)| {
                p.get("writerRole")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        assert!(
            roles.contains("admin") && roles.contains("member") && roles.contains("superuser"),
            "{roles:?}"
        );
        assert_eq!(app_users.len(), 19);
    }
}

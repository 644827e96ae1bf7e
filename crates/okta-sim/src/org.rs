//! The simulator's in-memory Okta org: users, groups, one app and its
//! assignments, plus the mutations tests and the demo apply between runs.
//!
//! Invariant: a user's `groups` list and the groups' `members` sets always
//! agree (only the methods here change them), and every id in them exists.
//! Choices where Okta's behaviour is not documented or not worth modelling:
//! * Deleting a user removes it everywhere (it simply vanishes from listings).
//! * Setting a user `DEPROVISIONED` removes its direct app assignment (Okta
//!   removes app assignments on deactivation); group memberships stay, and
//!   DEPROVISIONED users are never app users, also not through a group.
//! * App-user profile of a user assigned through groups: the profile of the
//!   assigned group with the lowest `priority` number (ties: lowest group id);
//!   a direct assignment always wins (scope `USER`).
//! * `/api/v1/groups/{id}/users` lists members in every status.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::syslog::{EventLog, LogTarget};

use crate::hash::mix;
use crate::profile::user_profile;

/// An Okta id (`00u…`, `00g…`), shared between the maps that index it.
pub type Id = Arc<str>;

/// Okta user statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UserStatus {
    Staged,
    Provisioned,
    Active,
    Recovery,
    PasswordExpired,
    LockedOut,
    Suspended,
    Deprovisioned,
}

impl UserStatus {
    pub const ALL: [UserStatus; 8] = [
        UserStatus::Staged,
        UserStatus::Provisioned,
        UserStatus::Active,
        UserStatus::Recovery,
        UserStatus::PasswordExpired,
        UserStatus::LockedOut,
        UserStatus::Suspended,
        UserStatus::Deprovisioned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Staged => "STAGED",
            UserStatus::Provisioned => "PROVISIONED",
            UserStatus::Active => "ACTIVE",
            UserStatus::Recovery => "RECOVERY",
            UserStatus::PasswordExpired => "PASSWORD_EXPIRED",
            UserStatus::LockedOut => "LOCKED_OUT",
            UserStatus::Suspended => "SUSPENDED",
            UserStatus::Deprovisioned => "DEPROVISIONED",
        }
    }

    pub fn parse(value: &str) -> Option<UserStatus> {
        UserStatus::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl fmt::Display for UserStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one app of the simulated org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimApp {
    pub id: String,
    pub label: String,
    pub name: String,
    /// `ACTIVE` or `INACTIVE`.
    pub status: String,
}

/// A group's assignment to the app.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupAssignment {
    /// Lower numbers win (Okta lists priority 0 first).
    pub priority: u32,
    /// App attribute values given to the group's members.
    pub profile: Map<String, Value>,
}

/// Whether an app user is assigned directly or through a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    Group,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "USER",
            Scope::Group => "GROUP",
        }
    }
}

/// Errors of org mutations and of building an org from fixtures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgError {
    /// No user with that id.
    #[error("no user with id {0}")]
    UnknownUser(String),
    /// No group with that id.
    #[error("no group with id {0}")]
    UnknownGroup(String),
    /// The user is not assigned to the app directly.
    #[error("user {0} is not assigned to the app directly")]
    NotAssigned(String),
    /// A HAR fixture could not be read.
    #[error("bad fixture {what}: {reason}")]
    Fixture { what: &'static str, reason: String },
}

/// How a user's profile is held: generated users keep only their number and
/// are rendered on demand (so a million of them stay small); fixture users
/// and users changed by a mutation keep a JSON map.
#[derive(Debug, Clone)]
pub(crate) enum Profile {
    Generated(u32),
    Stored(Box<Map<String, Value>>),
}

#[derive(Debug, Clone)]
pub(crate) struct SimUser {
    pub(crate) status: UserStatus,
    pub(crate) profile: Profile,
    /// Ids of the groups the user is a member of.
    pub(crate) groups: Vec<Id>,
}

#[derive(Debug, Clone)]
pub(crate) struct SimGroup {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    /// `OKTA_GROUP`, `APP_GROUP` or `BUILT_IN`.
    pub(crate) group_type: String,
    /// Profile attributes besides name and description.
    pub(crate) extra: Map<String, Value>,
    pub(crate) members: BTreeSet<Id>,
}

/// The simulated org. Listings are ordered by id, which is also what the
/// simulator's cursors point into, so mutations between pages behave like
/// Okta's id cursors (nothing skipped or repeated that was not changed).
#[derive(Clone)]
pub struct Org {
    pub(crate) app: SimApp,
    pub(crate) users: BTreeMap<Id, SimUser>,
    pub(crate) groups: BTreeMap<Id, SimGroup>,
    /// Direct app assignments with their app-user profile.
    pub(crate) direct: BTreeMap<Id, Map<String, Value>>,
    pub(crate) assigned_groups: BTreeMap<Id, GroupAssignment>,
    /// App-user statuses other than `ACTIVE` (`REVOKED`, …), per user.
    pub(crate) app_user_status: BTreeMap<Id, String>,
    /// Seed of generated profiles.
    pub(crate) seed: u64,
    /// Counter behind new ids.
    next_serial: u64,
    /// An entry for every change (`syslog.rs`).
    pub(crate) log: EventLog,
}

impl fmt::Debug for Org {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Org")
            .field("app", &self.app)
            .field("users", &self.users.len())
            .field("groups", &self.groups.len())
            .field("direct_assignments", &self.direct.len())
            .field("assigned_groups", &self.assigned_groups.len())
            .finish()
    }
}

impl Org {
    /// An empty org with one app.
    pub fn new(app: SimApp) -> Org {
        Org::with_seed(app, 0)
    }

    pub(crate) fn with_seed(app: SimApp, seed: u64) -> Org {
        Org {
            app,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            direct: BTreeMap::new(),
            assigned_groups: BTreeMap::new(),
            app_user_status: BTreeMap::new(),
            seed,
            next_serial: 0,
            log: EventLog::with_seed(seed),
        }
    }

    pub fn app(&self) -> &SimApp {
        &self.app
    }

    pub fn app_id(&self) -> &str {
        &self.app.id
    }

    /// Sets the app's status (`ACTIVE`, `INACTIVE`), as an admin
    /// deactivating the app in Okta would.
    pub fn set_app_status(&mut self, status: &str) {
        status.clone_into(&mut self.app.status);
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// All user ids, sorted.
    pub fn user_ids(&self) -> Vec<String> {
        self.users.keys().map(|id| id.to_string()).collect()
    }

    /// All group ids, sorted.
    pub fn group_ids(&self) -> Vec<String> {
        self.groups.keys().map(|id| id.to_string()).collect()
    }

    pub fn user_status(&self, user_id: &str) -> Option<UserStatus> {
        self.users.get(user_id).map(|user| user.status)
    }

    /// The user's profile as Okta would send it.
    pub fn user_profile(&self, user_id: &str) -> Option<Map<String, Value>> {
        self.users
            .get(user_id)
            .map(|user| self.render_profile(&user.profile))
    }

    /// Ids of the groups named exactly `name`, sorted.
    pub fn group_ids_named(&self, name: &str) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, group)| group.name == name)
            .map(|(id, _)| id.to_string())
            .collect()
    }

    pub fn group_name(&self, group_id: &str) -> Option<&str> {
        self.groups.get(group_id).map(|group| group.name.as_str())
    }

    /// Member ids of a group, sorted.
    pub fn group_members(&self, group_id: &str) -> Option<Vec<String>> {
        self.groups
            .get(group_id)
            .map(|group| group.members.iter().map(|id| id.to_string()).collect())
    }

    /// Ids of the groups assigned to the app, by priority then id.
    pub fn assigned_group_ids(&self) -> Vec<String> {
        let mut assigned: Vec<(&u32, &Id)> = self
            .assigned_groups
            .iter()
            .map(|(id, assignment)| (&assignment.priority, id))
            .collect();
        assigned.sort();
        assigned.into_iter().map(|(_, id)| id.to_string()).collect()
    }

    /// The app users (direct ∪ through assigned groups, never DEPROVISIONED),
    /// sorted by id, as the simulator lists them.
    pub fn app_user_ids(&self) -> Vec<String> {
        self.users
            .iter()
            .filter(|(id, user)| self.app_assignment(id, user).is_some())
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// The scope and app-user profile of a user's assignment, if any.
    pub fn app_user_profile(&self, user_id: &str) -> Option<(Scope, Map<String, Value>)> {
        let (id, user) = self.users.get_key_value(user_id)?;
        self.app_assignment(id, user)
            .map(|(scope, profile)| (scope, profile.clone()))
    }

    pub(crate) fn app_assignment<'a>(
        &'a self,
        id: &Id,
        user: &SimUser,
    ) -> Option<(Scope, &'a Map<String, Value>)> {
        if user.status == UserStatus::Deprovisioned {
            return None;
        }
        if let Some(profile) = self.direct.get(id) {
            return Some((Scope::User, profile));
        }
        user.groups
            .iter()
            .filter_map(|group_id| {
                self.assigned_groups
                    .get(group_id)
                    .map(|assignment| (assignment.priority, group_id, assignment))
            })
            .min_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
            .map(|(_, _, assignment)| (Scope::Group, &assignment.profile))
    }

    pub(crate) fn render_profile(&self, profile: &Profile) -> Map<String, Value> {
        match profile {
            Profile::Generated(n) => user_profile(self.seed, *n),
            Profile::Stored(map) => (**map).clone(),
        }
    }

    /// A new id with an Okta-like shape: `prefix` + 17 base62 characters,
    /// unique within this org (the serial number is part of it).
    pub(crate) fn new_id(&mut self, prefix: &str) -> Id {
        loop {
            let serial = self.next_serial;
            self.next_serial += 1;
            let id = okta_like_id(prefix, self.seed, serial);
            if !self.users.contains_key(id.as_str()) && !self.groups.contains_key(id.as_str()) {
                return Id::from(id);
            }
        }
    }

    // ------------------------------------------------------------------
    // Mutations.
    // ------------------------------------------------------------------

    /// Adds a user and returns its new id.
    pub fn add_user(&mut self, status: UserStatus, profile: Map<String, Value>) -> String {
        let id = self.new_id("00u");
        self.insert_user(id.clone(), status, Profile::Stored(Box::new(profile)));
        self.log_user("user.lifecycle.create", &id);
        if status == UserStatus::Active {
            self.log_user("user.lifecycle.activate", &id);
        }
        id.to_string()
    }

    pub(crate) fn insert_user(&mut self, id: Id, status: UserStatus, profile: Profile) {
        self.users.insert(
            id,
            SimUser {
                status,
                profile,
                groups: Vec::new(),
            },
        );
    }

    /// Changes a user's status. DEPROVISIONED also removes the direct app
    /// assignment (see the module docs).
    pub fn set_user_status(&mut self, user_id: &str, status: UserStatus) -> Result<(), OrgError> {
        let access = self.app_access([user_id]);
        let user = self
            .users
            .get_mut(user_id)
            .ok_or_else(|| OrgError::UnknownUser(user_id.to_owned()))?;
        let before = std::mem::replace(&mut user.status, status);
        if status == UserStatus::Deprovisioned {
            self.direct.remove(user_id);
        }
        if let Some(event_type) = status_event(before, status) {
            self.log_user(event_type, user_id);
        }
        self.log_app_access(access);
        Ok(())
    }

    /// Sets (or with `Value::Null`, removes) a user-profile attribute.
    pub fn set_user_attr(
        &mut self,
        user_id: &str,
        key: &str,
        value: Value,
    ) -> Result<(), OrgError> {
        let seed = self.seed;
        let user = self
            .users
            .get_mut(user_id)
            .ok_or_else(|| OrgError::UnknownUser(user_id.to_owned()))?;
        if let Profile::Generated(n) = user.profile {
            user.profile = Profile::Stored(Box::new(user_profile(seed, n)));
        }
        if let Profile::Stored(map) = &mut user.profile {
            if value.is_null() {
                map.remove(key);
            } else {
                map.insert(key.to_owned(), value);
            }
        }
        self.log_user("user.account.update_profile", user_id);
        Ok(())
    }

    /// Deletes a user: gone from listings, groups and assignments.
    pub fn delete_user(&mut self, user_id: &str) -> Result<(), OrgError> {
        let access = self.app_access([user_id]);
        let target = self.user_target(user_id);
        let (id, user) = self
            .users
            .remove_entry(user_id)
            .ok_or_else(|| OrgError::UnknownUser(user_id.to_owned()))?;
        for group_id in &user.groups {
            if let Some(group) = self.groups.get_mut(group_id) {
                group.members.remove(&id);
            }
        }
        self.direct.remove(&id);
        self.log.record(
            "user.lifecycle.delete.initiated",
            "SUCCESS",
            vec![target.clone()],
        );
        self.log
            .record("user.lifecycle.delete.completed", "SUCCESS", vec![target]);
        self.log_app_access(access);
        Ok(())
    }

    /// Adds an `OKTA_GROUP` and returns its new id.
    pub fn add_group(&mut self, name: &str, description: Option<&str>) -> String {
        let id = self.new_id("00g");
        self.insert_group(
            id.clone(),
            SimGroup {
                name: name.to_owned(),
                description: description.map(str::to_owned),
                group_type: "OKTA_GROUP".to_owned(),
                extra: Map::new(),
                members: BTreeSet::new(),
            },
        );
        self.log_group("group.lifecycle.create", &id);
        id.to_string()
    }

    /// Adds a group of Okta type `group_type` (`OKTA_GROUP`, `APP_GROUP` as
    /// imported from AD/LDAP, `BUILT_IN` like Everyone) and returns its id.
    pub fn add_group_of_type(&mut self, name: &str, group_type: &str) -> String {
        let id = self.add_group(name, None);
        if let Some(group) = self.groups.get_mut(id.as_str()) {
            group_type.clone_into(&mut group.group_type);
        }
        id
    }

    pub(crate) fn insert_group(&mut self, id: Id, group: SimGroup) {
        self.groups.insert(id, group);
    }

    pub fn rename_group(&mut self, group_id: &str, name: &str) -> Result<(), OrgError> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| OrgError::UnknownGroup(group_id.to_owned()))?;
        group.name = name.to_owned();
        self.log_group("group.profile.update", group_id);
        Ok(())
    }

    /// Deletes a group with its memberships and app assignment.
    pub fn delete_group(&mut self, group_id: &str) -> Result<(), OrgError> {
        let members = self.group_members(group_id).unwrap_or_default();
        let access = self.app_access(members.iter().map(String::as_str));
        let target = self
            .groups
            .get(group_id)
            .map(|g| LogTarget::group(group_id, &g.name));
        let (id, group) = self
            .groups
            .remove_entry(group_id)
            .ok_or_else(|| OrgError::UnknownGroup(group_id.to_owned()))?;
        for member in &group.members {
            if let Some(user) = self.users.get_mut(member) {
                user.groups.retain(|g| *g != id);
            }
        }
        self.assigned_groups.remove(&id);
        if let Some(target) = target {
            self.log
                .record("group.lifecycle.delete", "SUCCESS", vec![target]);
        }
        self.log_app_access(access);
        Ok(())
    }

    /// Adds a member (no-op when already a member).
    pub fn add_member(&mut self, group_id: &str, user_id: &str) -> Result<(), OrgError> {
        let gid = self
            .groups
            .get_key_value(group_id)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| OrgError::UnknownGroup(group_id.to_owned()))?;
        let uid = self
            .users
            .get_key_value(user_id)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| OrgError::UnknownUser(user_id.to_owned()))?;
        let access = self.app_access([user_id]);
        let added = self
            .groups
            .get(&gid)
            .is_some_and(|g| !g.members.contains(&uid));
        self.add_member_ids(&gid, &uid);
        if added {
            self.log_membership("group.user_membership.add", group_id, user_id);
        }
        self.log_app_access(access);
        Ok(())
    }

    pub(crate) fn add_member_ids(&mut self, group_id: &Id, user_id: &Id) {
        if let (Some(group), Some(user)) =
            (self.groups.get_mut(group_id), self.users.get_mut(user_id))
            && group.members.insert(user_id.clone())
        {
            user.groups.push(group_id.clone());
        }
    }

    /// Removes a member (no-op when not a member).
    pub fn remove_member(&mut self, group_id: &str, user_id: &str) -> Result<(), OrgError> {
        let access = self.app_access([user_id]);
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| OrgError::UnknownGroup(group_id.to_owned()))?;
        let user = self
            .users
            .get_mut(user_id)
            .ok_or_else(|| OrgError::UnknownUser(user_id.to_owned()))?;
        let removed = group.members.remove(user_id);
        user.groups.retain(|g| g.as_ref() != group_id);
        if removed {
            self.log_membership("group.user_membership.remove", group_id, user_id);
        }
        self.log_app_access(access);
        Ok(())
    }

    /// Assigns the app to a user directly (replacing an earlier direct
    /// assignment's profile).
    pub fn assign_user(
        &mut self,
        user_id: &str,
        profile: Map<String, Value>,
    ) -> Result<(), OrgError> {
        let id = self
            .users
            .get_key_value(user_id)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| OrgError::UnknownUser(user_id.to_owned()))?;
        let access = self.app_access([user_id]);
        self.direct.insert(id, profile);
        if access.iter().all(|(_, had)| *had) {
            self.log_app_user("application.user_membership.update", user_id);
        }
        self.log_app_access(access);
        Ok(())
    }

    /// Removes a direct assignment (group-based access stays).
    pub fn unassign_user(&mut self, user_id: &str) -> Result<(), OrgError> {
        let access = self.app_access([user_id]);
        self.direct
            .remove(user_id)
            .ok_or_else(|| OrgError::NotAssigned(user_id.to_owned()))?;
        if self.app_access([user_id]).iter().all(|(_, has)| *has) {
            // Still assigned through a group: its app-user profile changed.
            self.log_app_user("application.user_membership.update", user_id);
        }
        self.log_app_access(access);
        Ok(())
    }

    /// Sets the app-user status Okta reports for a user's assignment
    /// (`ACTIVE` by default; `REVOKED`, `DEPROVISIONED`, `INACTIVE`, … as a
    /// provisioning-enabled app shows them). The assignment itself stays.
    pub fn set_app_user_status(&mut self, user_id: &str, status: &str) -> Result<(), OrgError> {
        let id = self
            .users
            .get_key_value(user_id)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| OrgError::UnknownUser(user_id.to_owned()))?;
        if status == "ACTIVE" {
            self.app_user_status.remove(&id);
        } else {
            self.app_user_status.insert(id, status.to_owned());
        }
        Ok(())
    }

    /// Sets (or with `Value::Null`, removes) an attribute of a direct
    /// assignment's app-user profile.
    pub fn set_app_user_attr(
        &mut self,
        user_id: &str,
        key: &str,
        value: Value,
    ) -> Result<(), OrgError> {
        let profile = self
            .direct
            .get_mut(user_id)
            .ok_or_else(|| OrgError::NotAssigned(user_id.to_owned()))?;
        if value.is_null() {
            profile.remove(key);
        } else {
            profile.insert(key.to_owned(), value);
        }
        self.log_app_user("application.user_membership.update", user_id);
        Ok(())
    }

    /// Assigns the app to a group (replacing an earlier assignment).
    pub fn assign_group(
        &mut self,
        group_id: &str,
        priority: u32,
        profile: Map<String, Value>,
    ) -> Result<(), OrgError> {
        let id = self
            .groups
            .get_key_value(group_id)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| OrgError::UnknownGroup(group_id.to_owned()))?;
        let members = self.group_members(group_id).unwrap_or_default();
        let access = self.app_access(members.iter().map(String::as_str));
        let update = self.assigned_groups.contains_key(&id);
        self.assigned_groups
            .insert(id, GroupAssignment { priority, profile });
        let event_type = if update {
            "group.application_assignment.update"
        } else {
            "group.application_assignment.add"
        };
        self.log_group_assignment(event_type, group_id);
        self.log_app_access(access);
        Ok(())
    }

    pub fn unassign_group(&mut self, group_id: &str) -> Result<(), OrgError> {
        let members = self.group_members(group_id).unwrap_or_default();
        let access = self.app_access(members.iter().map(String::as_str));
        self.assigned_groups
            .remove(group_id)
            .ok_or_else(|| OrgError::UnknownGroup(group_id.to_owned()))?;
        self.log_group_assignment("group.application_assignment.remove", group_id);
        self.log_app_access(access);
        Ok(())
    }

    // ------------------------------------------------------------------
    // JSON as Okta sends it.
    // ------------------------------------------------------------------

    pub(crate) fn user_json(&self, base: &str, id: &str, user: &SimUser) -> Value {
        let created = timestamp(self.seed, id);
        json!({
            "id": id,
            "status": user.status.as_str(),
            "created": created,
            "activated": if user.status == UserStatus::Staged { Value::Null } else { json!(created) },
            "statusChanged": created,
            "lastLogin": Value::Null,
            "lastUpdated": created,
            "passwordChanged": created,
            "type": {"id": "oty1simdefault0000001"},
            "profile": self.render_profile(&user.profile),
            "credentials": {"password": {}, "provider": {"type": "OKTA", "name": "OKTA"}},
            "_links": {"self": {"href": format!("{base}api/v1/users/{id}")}}
        })
    }

    pub(crate) fn group_json(&self, base: &str, id: &str, group: &SimGroup) -> Value {
        let created = timestamp(self.seed, id);
        let mut profile = group.extra.clone();
        profile.insert("name".to_owned(), json!(group.name));
        profile.insert(
            "description".to_owned(),
            group.description.clone().map_or(Value::Null, Value::String),
        );
        json!({
            "id": id,
            "created": created,
            "lastUpdated": created,
            "lastMembershipUpdated": created,
            "objectClass": ["okta:user_group"],
            "type": group.group_type,
            "profile": profile,
            "_links": {
                "users": {"href": format!("{base}api/v1/groups/{id}/users")},
                "apps": {"href": format!("{base}api/v1/groups/{id}/apps")}
            }
        })
    }

    pub(crate) fn app_json(&self, base: &str) -> Value {
        let app = &self.app;
        json!({
            "id": app.id,
            "name": app.name,
            "label": app.label,
            "status": app.status,
            "created": "2024-01-02T03:04:05.000Z",
            "lastUpdated": "2024-01-02T03:04:05.000Z",
            "signOnMode": "SAML_2_0",
            "features": [],
            "_links": {
                "users": {"href": format!("{base}api/v1/apps/{}/users", app.id)},
                "groups": {"href": format!("{base}api/v1/apps/{}/groups", app.id)}
            }
        })
    }

    pub(crate) fn app_user_json(
        &self,
        base: &str,
        id: &str,
        user: &SimUser,
        scope: Scope,
        profile: &Map<String, Value>,
        embed_user: bool,
    ) -> Value {
        let created = timestamp(self.seed, id);
        let login = match &user.profile {
            Profile::Stored(map) => map.get("login").cloned().unwrap_or(Value::Null),
            Profile::Generated(_) => self
                .render_profile(&user.profile)
                .remove("login")
                .unwrap_or(Value::Null),
        };
        let mut value = json!({
            "id": id,
            "externalId": Value::Null,
            "created": created,
            "lastUpdated": created,
            "scope": scope.as_str(),
            "status": self.app_user_status.get(id).map_or("ACTIVE", String::as_str),
            "statusChanged": created,
            "passwordChanged": Value::Null,
            "syncState": "DISABLED",
            "credentials": {"userName": login},
            "profile": profile,
            "_links": {
                "app": {"href": format!("{base}api/v1/apps/{}", self.app.id)},
                "user": {"href": format!("{base}api/v1/users/{id}")}
            }
        });
        if embed_user {
            value["_embedded"] = json!({"user": self.user_json(base, id, user)});
        }
        value
    }

    pub(crate) fn app_group_json(
        &self,
        base: &str,
        id: &str,
        assignment: &GroupAssignment,
        embed_group: bool,
    ) -> Value {
        let mut value = json!({
            "id": id,
            "lastUpdated": timestamp(self.seed, id),
            "priority": assignment.priority,
            "profile": assignment.profile,
            "_links": {
                "app": {"href": format!("{base}api/v1/apps/{}", self.app.id)},
                "self": {"href": format!("{base}api/v1/apps/{}/groups/{id}", self.app.id)},
                "group": {"href": format!("{base}api/v1/groups/{id}")}
            }
        });
        if embed_group && let Some(group) = self.groups.get(id) {
            value["_embedded"] = json!({"group": self.group_json(base, id, group)});
        }
        value
    }
}

/// `prefix` + 17 base62 characters: 7 derived from a hash (so ids do not sort
/// in creation order, like Okta's) and 10 encoding the serial (so they are
/// unique).
pub(crate) fn okta_like_id(prefix: &str, seed: u64, serial: u64) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut id = String::with_capacity(prefix.len() + 17);
    id.push_str(prefix);
    let mut hash = mix(seed ^ serial.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for _ in 0..7 {
        id.push(char::from(ALPHABET[(hash % 62) as usize]));
        hash /= 62;
    }
    let mut serial_digits = [0u8; 10];
    let mut rest = serial;
    for digit in serial_digits.iter_mut().rev() {
        *digit = ALPHABET[(rest % 62) as usize];
        rest /= 62;
    }
    id.extend(serial_digits.iter().map(|b| char::from(*b)));
    id
}

/// A stable, plausible timestamp per object.
fn timestamp(seed: u64, id: &str) -> String {
    let hash = id.bytes().fold(seed, |acc, b| mix(acc ^ u64::from(b)));
    let minutes = hash % (3 * 365 * 24 * 60);
    let base = chrono::DateTime::from_timestamp(1_640_995_200, 0).unwrap_or_default();
    (base + chrono::Duration::minutes(minutes as i64))
        .format("%Y-%m-%dT%H:%M:%S.000Z")
        .to_string()
}

/// The lifecycle event of a status change, if Okta logs one the sync reads.
pub(crate) fn status_event(before: UserStatus, after: UserStatus) -> Option<&'static str> {
    use UserStatus::{Active, Deprovisioned, LockedOut, Staged, Suspended};
    Some(match (before, after) {
        (a, b) if a == b => return None,
        (_, Suspended) => "user.lifecycle.suspend",
        (_, Deprovisioned) => "user.lifecycle.deactivate",
        (Suspended, _) => "user.lifecycle.unsuspend",
        (Deprovisioned, _) => "user.lifecycle.reactivate",
        (_, LockedOut) => "user.account.lock",
        (LockedOut, _) => "user.account.unlock_by_admin",
        (Staged, _) | (_, Active) => "user.lifecycle.activate",
        _ => "user.account.update_profile",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> SimApp {
        SimApp {
            id: "0oaTEST".into(),
            label: "Writer".into(),
            name: "writer".into(),
            status: "ACTIVE".into(),
        }
    }

    fn profile(email: &str) -> Map<String, Value> {
        json!({"login": email, "email": email})
            .as_object()
            .unwrap()
            .clone()
    }

    fn role(value: &str) -> Map<String, Value> {
        json!({"writerRole": value}).as_object().unwrap().clone()
    }

    #[test]
    fn ids_are_unique_okta_shaped_and_not_in_creation_order() {
        let ids: Vec<String> = (0..1000).map(|n| okta_like_id("00u", 7, n)).collect();
        assert!(ids.iter().all(|id| id.len() == 20 && id.starts_with("00u")));
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        let mut sorted = ids.clone();
        sorted.sort();
        assert_ne!(sorted, ids);
    }

    #[test]
    fn app_users_are_direct_or_through_groups_and_never_deprovisioned() {
        let mut org = Org::new(app());
        let direct = org.add_user(UserStatus::Active, profile("d@example.com"));
        let via_group = org.add_user(UserStatus::Suspended, profile("g@example.com"));
        let both = org.add_user(UserStatus::Active, profile("b@example.com"));
        let outsider = org.add_user(UserStatus::Active, profile("o@example.com"));
        let gone = org.add_user(UserStatus::Active, profile("x@example.com"));
        let high = org.add_group("High", None);
        let low = org.add_group("Low", None);
        let unassigned = org.add_group("Unassigned", None);
        org.assign_group(&high, 0, role("admin")).unwrap();
        org.assign_group(&low, 5, role("member")).unwrap();
        org.assign_user(&direct, role("Team Admin")).unwrap();
        org.assign_user(&both, role("junk")).unwrap();
        org.assign_user(&gone, Map::new()).unwrap();
        for user in [&via_group, &both, &gone] {
            org.add_member(&low, user).unwrap();
        }
        org.add_member(&high, &via_group).unwrap();
        org.add_member(&unassigned, &outsider).unwrap();
        org.set_user_status(&gone, UserStatus::Deprovisioned)
            .unwrap();

        let mut expected = vec![direct.clone(), via_group.clone(), both.clone()];
        expected.sort();
        assert_eq!(org.app_user_ids(), expected);
        assert_eq!(
            org.app_user_profile(&via_group),
            Some((Scope::Group, role("admin")))
        );
        assert_eq!(
            org.app_user_profile(&both),
            Some((Scope::User, role("junk")))
        );
        assert_eq!(org.app_user_profile(&outsider), None);
        // Deprovisioning dropped the direct assignment for good.
        org.set_user_status(&gone, UserStatus::Active).unwrap();
        assert_eq!(
            org.app_user_profile(&gone),
            Some((Scope::Group, role("member")))
        );
        assert!(org.unassign_user(&gone).is_err());
    }

    #[test]
    fn mutations_keep_memberships_consistent() {
        let mut org = Org::new(app());
        let a = org.add_user(UserStatus::Active, profile("a@example.com"));
        let b = org.add_user(UserStatus::Active, profile("b@example.com"));
        let g = org.add_group("G", Some("d"));
        org.add_member(&g, &a).unwrap();
        org.add_member(&g, &a).unwrap();
        org.add_member(&g, &b).unwrap();
        let mut both = vec![a.clone(), b.clone()];
        both.sort();
        assert_eq!(org.group_members(&g).unwrap(), both);
        org.delete_user(&a).unwrap();
        assert_eq!(org.group_members(&g).unwrap(), vec![b.clone()]);
        org.remove_member(&g, &b).unwrap();
        assert_eq!(org.group_members(&g).unwrap(), Vec::<String>::new());
        org.add_member(&g, &b).unwrap();
        org.assign_group(&g, 1, Map::new()).unwrap();
        assert_eq!(org.app_user_ids(), vec![b.clone()]);
        org.delete_group(&g).unwrap();
        assert!(org.app_user_ids().is_empty());
        assert!(org.users[b.as_str()].groups.is_empty());
        assert_eq!(
            org.add_member(&g, &b),
            Err(OrgError::UnknownGroup(g.clone()))
        );
        assert_eq!(
            org.set_user_status("00uNOPE", UserStatus::Active),
            Err(OrgError::UnknownUser("00uNOPE".into()))
        );
    }

    #[test]
    fn renaming_and_attribute_changes_show_in_json() {
        let mut org = Org::new(app());
        let u = org.add_user(UserStatus::Active, profile("a@example.com"));
        let g = org.add_group("Old", None);
        org.rename_group(&g, "New").unwrap();
        assert_eq!(org.group_ids_named("New"), vec![g.clone()]);
        org.set_user_attr(&u, "email", json!("new@example.com"))
            .unwrap();
        org.set_user_attr(&u, "login", Value::Null).unwrap();
        let profile = org.user_profile(&u).unwrap();
        assert_eq!(profile["email"], json!("new@example.com"));
        assert!(!profile.contains_key("login"));
        let (id, user) = org.users.get_key_value(u.as_str()).unwrap();
        let value = org.user_json("http://x/", id, user);
        assert_eq!(value["profile"]["email"], json!("new@example.com"));
        assert_eq!(value["status"], json!("ACTIVE"));
    }
}

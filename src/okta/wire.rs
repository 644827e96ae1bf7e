//! The Okta objects the sync reads, as serde models.
//!
//! Invariant: lenient. Unknown fields are ignored, missing and `null` fields
//! become `None` / empty, base profile strings of an unexpected JSON type are
//! kept as their JSON text rather than failing the whole listing, and every
//! profile attribute without a field of its own (custom attributes included)
//! is kept in an `extra` / `profile` map. Every string the sync stores
//! (ids, profile strings, group names) comes out storable: U+0000, which
//! PostgreSQL text cannot hold, becomes U+FFFD, so one odd Okta value can
//! never make every apply fail.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// An Okta user (`GET /api/v1/users`, `/groups/{id}/users`, or
/// `_embedded.user` of an app user).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct User {
    #[serde(deserialize_with = "storable_string")]
    pub id: String,
    /// `ACTIVE`, `SUSPENDED`, `DEPROVISIONED`, … as sent.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub profile: UserProfile,
}

/// The base profile attributes the sync uses, plus everything else.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    #[serde(default, deserialize_with = "lenient_string")]
    pub login: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub first_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub last_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub display_name: Option<String>,
    /// All other attributes, base (`department`, …) and custom (`writerRole`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An app assignment (`GET /api/v1/apps/{appId}/users?expand=user`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AppUser {
    /// The Okta user id.
    #[serde(deserialize_with = "storable_string")]
    pub id: String,
    /// App-user status (`ACTIVE`, `PROVISIONED`, …), not the user's status.
    #[serde(default, deserialize_with = "lenient_string")]
    pub status: Option<String>,
    /// `USER` (direct assignment) or `GROUP` (through a group).
    #[serde(default, deserialize_with = "lenient_string")]
    pub scope: Option<String>,
    /// The app-user profile: app attributes such as a role.
    #[serde(default, deserialize_with = "null_as_default")]
    pub profile: Map<String, Value>,
    /// `_embedded.user`, present with `expand=user`.
    #[serde(rename = "_embedded", default, deserialize_with = "embedded_user")]
    pub user: Option<User>,
}

/// An Okta group.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Group {
    #[serde(deserialize_with = "storable_string")]
    pub id: String,
    /// `OKTA_GROUP`, `APP_GROUP` or `BUILT_IN`.
    #[serde(rename = "type", default, deserialize_with = "lenient_string")]
    pub group_type: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub profile: GroupProfile,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GroupProfile {
    #[serde(default, deserialize_with = "lenient_string_or_empty")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub description: Option<String>,
    /// Other attributes (`dn`, `samAccountName`, `googleExternalId`, custom).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A group assignment of an app (`GET /api/v1/apps/{appId}/groups?expand=group`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AppGroup {
    /// The group id.
    #[serde(deserialize_with = "storable_string")]
    pub id: String,
    /// Lower numbers win when a user gets the app through several groups.
    #[serde(default)]
    pub priority: Option<i64>,
    /// App attribute values given to the group's members.
    #[serde(default, deserialize_with = "null_as_default")]
    pub profile: Map<String, Value>,
    /// `_embedded.group`, present with `expand=group`.
    #[serde(rename = "_embedded", default, deserialize_with = "embedded_group")]
    pub group: Option<Group>,
}

/// An app instance (`GET /api/v1/apps/{appId}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct App {
    pub id: String,
    #[serde(default, deserialize_with = "lenient_string_or_empty")]
    pub label: String,
    #[serde(default, deserialize_with = "lenient_string_or_empty")]
    pub name: String,
    /// `ACTIVE` or `INACTIVE`.
    #[serde(default, deserialize_with = "lenient_string_or_empty")]
    pub status: String,
}

/// A user schema: the app-user schema (`GET
/// /api/v1/meta/schemas/apps/{appId}/default`) or the default user schema
/// (`GET /api/v1/meta/schemas/user/default`). Only the attribute names are
/// read: `definitions.base.properties` and `definitions.custom.properties`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct UserSchema {
    #[serde(default, deserialize_with = "null_as_default")]
    pub definitions: SchemaDefinitions,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SchemaDefinitions {
    #[serde(default, deserialize_with = "null_as_default")]
    pub base: SchemaPart,
    #[serde(default, deserialize_with = "null_as_default")]
    pub custom: SchemaPart,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SchemaPart {
    /// Attribute name → its definition (not read).
    #[serde(default, deserialize_with = "null_as_default")]
    pub properties: Map<String, Value>,
}

impl UserSchema {
    /// Whether the schema defines the attribute `name` (base or custom;
    /// attribute names are case-sensitive in Okta).
    pub fn defines(&self, name: &str) -> bool {
        self.definitions.base.properties.contains_key(name)
            || self.definitions.custom.properties.contains_key(name)
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A string attribute: strings as is, numbers and booleans as their JSON
/// text, `null`, arrays and objects as `None`.
fn lenient_string<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match Value::deserialize(deserializer)? {
        Value::String(s) => Some(storable(s)),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    })
}

/// `s` with every NUL replaced by U+FFFD.
fn storable(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    }
}

fn storable_string<'de, D>(deserializer: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    String::deserialize(deserializer).map(storable)
}

fn lenient_string_or_empty<'de, D>(deserializer: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(lenient_string(deserializer)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct EmbeddedUser {
    #[serde(default)]
    user: Option<User>,
}

#[derive(Deserialize)]
struct EmbeddedGroup {
    #[serde(default)]
    group: Option<Group>,
}

fn embedded_user<'de, D>(deserializer: D) -> Result<Option<User>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<EmbeddedUser>::deserialize(deserializer)?.and_then(|e| e.user))
}

fn embedded_group<'de, D>(deserializer: D) -> Result<Option<Group>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<EmbeddedGroup>::deserialize(deserializer)?.and_then(|e| e.group))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn minimal_user_with_nulls_and_unknown_fields() {
        let user: User = serde_json::from_value(json!({
            "id": "00u1",
            "status": null,
            "profile": {"login": "a@example.com", "email": null, "firstName": 7,
                        "writerRole": "admin", "tags": ["x"]},
            "somethingNew": {"nested": true}
        }))
        .unwrap();
        assert_eq!(user.status, "");
        assert_eq!(user.profile.login.as_deref(), Some("a@example.com"));
        assert_eq!(user.profile.email, None);
        assert_eq!(user.profile.first_name.as_deref(), Some("7"));
        assert_eq!(user.profile.extra["writerRole"], json!("admin"));
        assert_eq!(user.profile.extra["tags"], json!(["x"]));
        let bare: User = serde_json::from_value(json!({"id": "00u2"})).unwrap();
        assert_eq!(bare.profile, UserProfile::default());
        let null_profile: User =
            serde_json::from_value(json!({"id": "00u3", "profile": null})).unwrap();
        assert_eq!(null_profile.profile, UserProfile::default());
    }

    #[test]
    fn app_user_embedded_user_is_optional() {
        let with: AppUser = serde_json::from_value(json!({
            "id": "00u1", "scope": "GROUP", "profile": {"writerRole": "member"},
            "_embedded": {"user": {"id": "00u1", "status": "ACTIVE", "profile": {}}}
        }))
        .unwrap();
        assert_eq!(with.user.unwrap().status, "ACTIVE");
        assert_eq!(with.profile["writerRole"], json!("member"));
        let without: AppUser =
            serde_json::from_value(json!({"id": "00u1", "_embedded": null, "profile": null}))
                .unwrap();
        assert_eq!(without.user, None);
        assert!(without.profile.is_empty());
        let other_embedded: AppUser =
            serde_json::from_value(json!({"id": "00u1", "_embedded": {"metadata": {}}})).unwrap();
        assert_eq!(other_embedded.user, None);
    }

    #[test]
    fn group_with_null_description_and_extra_attributes() {
        let group: Group = serde_json::from_value(json!({
            "id": "00g1", "type": "APP_GROUP",
            "profile": {"name": "Eng", "description": null, "dn": "CN=Eng"}
        }))
        .unwrap();
        assert_eq!(group.profile.name, "Eng");
        assert_eq!(group.profile.description, None);
        assert_eq!(group.profile.extra["dn"], json!("CN=Eng"));
        let app_group: AppGroup = serde_json::from_value(json!({
            "id": "00g1", "priority": 3,
            "_embedded": {"group": {"id": "00g1", "profile": {"name": "Eng"}}}
        }))
        .unwrap();
        assert_eq!(app_group.priority, Some(3));
        assert_eq!(app_group.group.unwrap().profile.name, "Eng");
    }

    #[test]
    fn nul_characters_become_replacement_characters() {
        let user: User = serde_json::from_str(
            r#"{"id": "00u\u0000x", "profile": {"email": "a\u0000@x.example", "lastName": "\u0000"}}"#,
        )
        .unwrap();
        assert_eq!(user.id, "00u\u{FFFD}x");
        assert_eq!(user.profile.email.as_deref(), Some("a\u{FFFD}@x.example"));
        assert_eq!(user.profile.last_name.as_deref(), Some("\u{FFFD}"));
        let group: AppGroup = serde_json::from_str(
            r#"{"id": "00g1", "_embedded": {"group": {"id": "00g1", "profile": {"name": "E\u0000ng"}}}}"#,
        )
        .unwrap();
        assert_eq!(group.group.unwrap().profile.name, "E\u{FFFD}ng");
    }

    #[test]
    fn schema_attributes_are_base_and_custom_properties() {
        let schema: UserSchema = serde_json::from_value(json!({
            "id": "https://acme.okta.com/meta/schemas/apps/0oa1/default",
            "definitions": {
                "base": {"id": "#base", "properties": {"userName": {"type": "string"}}},
                "custom": {"id": "#custom", "properties": {"writerRole": {"type": "string"}}}
            }
        }))
        .unwrap();
        assert!(schema.defines("writerRole"));
        assert!(schema.defines("userName"));
        assert!(!schema.defines("writerrole"), "names are case-sensitive");
        let empty: UserSchema =
            serde_json::from_value(json!({"definitions": {"custom": null}})).unwrap();
        assert!(!empty.defines("writerRole"));
    }

    #[test]
    fn missing_id_is_an_error_with_position() {
        let err = serde_json::from_str::<Vec<User>>("[{\"status\":\"ACTIVE\"}]").unwrap_err();
        assert!(err.to_string().contains("missing field `id`"), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}

//! The simulator's user schemas: the app-user schema
//! (`/api/v1/meta/schemas/apps/{appId}/default`) and the default user schema
//! (`/api/v1/meta/schemas/user/default`), in Okta's shape: JSON Schema
//! draft-04 with the attributes under `definitions.base.properties` and
//! `definitions.custom.properties`.

use serde_json::{Map, Value, json};

use crate::org::Org;

/// One custom string attribute as Okta describes it.
fn custom_attribute(name: &str) -> Value {
    json!({
        "title": name,
        "description": format!("{name} (custom attribute)"),
        "type": "string",
        "required": false,
        "scope": "NONE",
        "mutability": "READ_WRITE",
        "permissions": [{"principal": "SELF", "action": "READ_ONLY"}],
        "master": {"type": "PROFILE_MASTER"}
    })
}

fn string_attribute(title: &str, required: bool) -> Value {
    json!({
        "title": title,
        "type": "string",
        "required": required,
        "scope": "NONE",
        "mutability": "READ_WRITE",
        "permissions": [{"principal": "SELF", "action": "READ_WRITE"}],
        "master": {"type": "PROFILE_MASTER"}
    })
}

fn schema(
    id: String,
    name: &str,
    title: &str,
    base: Map<String, Value>,
    custom: &[String],
) -> Value {
    let required: Vec<Value> = base
        .iter()
        .filter(|(_, attribute)| attribute["required"] == json!(true))
        .map(|(name, _)| json!(name))
        .collect();
    let custom: Map<String, Value> = custom
        .iter()
        .map(|name| (name.clone(), custom_attribute(name)))
        .collect();
    json!({
        "id": id,
        "$schema": "http://json-schema.org/draft-04/schema#",
        "name": name,
        "title": title,
        "lastUpdated": "2024-01-02T03:04:05.000Z",
        "created": "2024-01-02T03:04:05.000Z",
        "definitions": {
            "base": {"id": "#base", "type": "object", "properties": base, "required": required},
            "custom": {"id": "#custom", "type": "object", "properties": custom, "required": []}
        },
        "type": "object",
        "properties": {
            "base": {"$ref": "#/definitions/base"},
            "custom": {"$ref": "#/definitions/custom"}
        }
    })
}

impl Org {
    /// The app-user schema of the app, with `custom` as its custom
    /// attributes.
    pub(crate) fn app_user_schema_json(&self, base: &str, custom: &[String]) -> Value {
        let mut properties = Map::new();
        properties.insert("userName".into(), string_attribute("Username", true));
        schema(
            format!("{base}meta/schemas/apps/{}/default", self.app().id),
            &self.app().name,
            &format!("{} User", self.app().label),
            properties,
            custom,
        )
    }

    /// The default user schema, with `custom` as its custom attributes.
    pub(crate) fn user_schema_json(&self, base: &str, custom: &[String]) -> Value {
        let mut properties = Map::new();
        for (name, title, required) in [
            ("login", "Username", true),
            ("firstName", "First name", true),
            ("lastName", "Last name", true),
            ("email", "Primary email", true),
            ("displayName", "Display name", false),
            ("department", "Department", false),
        ] {
            properties.insert(name.into(), string_attribute(title, required));
        }
        schema(
            format!("{base}meta/schemas/user/default"),
            "user",
            "User",
            properties,
            custom,
        )
    }
}

//! `store dump` / `store load`: the org store as JSON (SPEC §4).
//!
//! Invariant: a load validates the whole document before writing anything,
//! then merges it in one transaction with an audit row per changed row, so a
//! bad file changes nothing and a good one lands entirely.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use crate::model::{Role, UserAttrs};
use crate::store::{Store, StoreError, email_key, now_ms, query_err};

/// The dump document. Users sorted by email (ignoring case), teams by name,
/// members by email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dump {
    pub users: Vec<DumpUser>,
    pub teams: Vec<DumpTeam>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DumpUser {
    pub email: String,
    pub okta_id: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub display_name: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DumpTeam {
    pub name: String,
    pub okta_group_id: Option<String>,
    pub members: Vec<DumpMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DumpMember {
    pub email: String,
    pub role: Role,
}

/// A problem in a load document, located by its JSON path.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file is not JSON at all.
    #[error("not valid JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    /// A value is missing, has the wrong type, or contradicts another.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// Writing failed; the transaction was rolled back.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a load changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadSummary {
    pub users_inserted: usize,
    pub users_updated: usize,
    pub teams_inserted: usize,
    pub teams_updated: usize,
    pub memberships_added: usize,
    pub memberships_updated: usize,
}

impl std::fmt::Display for LoadSummary {
    /// One line for people and logs, e.g. `users: 3 inserted, 1 updated;
    /// teams: 1 inserted, 0 updated; memberships: 7 added, 0 updated`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "users: {} inserted, {} updated; teams: {} inserted, {} updated; memberships: {} added, {} updated",
            self.users_inserted,
            self.users_updated,
            self.teams_inserted,
            self.teams_updated,
            self.memberships_added,
            self.memberships_updated
        )
    }
}

impl Store {
    /// The whole org store as the dump document.
    pub async fn dump(&self) -> Result<Dump, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(query_err("acquire"))?;
        let mut users = Vec::new();
        let mut email_by_id = HashMap::new();
        for r in sqlx::query(
            "SELECT id, email, okta_id, first_name, last_name, display_name, active FROM users ORDER BY email_key",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err("read users"))?
        {
            let id: i64 = r.try_get("id").map_err(query_err("decode users"))?;
            let user = DumpUser {
                email: r.try_get("email").map_err(query_err("decode users"))?,
                okta_id: r.try_get("okta_id").map_err(query_err("decode users"))?,
                first_name: r.try_get("first_name").map_err(query_err("decode users"))?,
                last_name: r.try_get("last_name").map_err(query_err("decode users"))?,
                display_name: r.try_get("display_name").map_err(query_err("decode users"))?,
                active: r.try_get::<i64, _>("active").map_err(query_err("decode users"))? != 0,
            };
            email_by_id.insert(id, user.email.clone());
            users.push(user);
        }
        let mut members: BTreeMap<i64, Vec<DumpMember>> = BTreeMap::new();
        for r in sqlx::query("SELECT team_id, user_id, role FROM memberships")
            .fetch_all(&mut *conn)
            .await
            .map_err(query_err("read memberships"))?
        {
            let team_id: i64 = r
                .try_get("team_id")
                .map_err(query_err("decode memberships"))?;
            let user_id: i64 = r
                .try_get("user_id")
                .map_err(query_err("decode memberships"))?;
            let role: String = r.try_get("role").map_err(query_err("decode memberships"))?;
            let email = email_by_id.get(&user_id).cloned().ok_or_else(|| {
                StoreError::Corrupt(format!("membership of missing user {user_id}"))
            })?;
            members.entry(team_id).or_default().push(DumpMember {
                email,
                role: role.parse().map_err(StoreError::Corrupt)?,
            });
        }
        let mut teams = Vec::new();
        for r in sqlx::query("SELECT id, name, okta_group_id FROM teams")
            .fetch_all(&mut *conn)
            .await
            .map_err(query_err("read teams"))?
        {
            let id: i64 = r.try_get("id").map_err(query_err("decode teams"))?;
            let mut team_members = members.remove(&id).unwrap_or_default();
            team_members.sort_by_key(|m| email_key(&m.email));
            teams.push(DumpTeam {
                name: r.try_get("name").map_err(query_err("decode teams"))?,
                okta_group_id: r
                    .try_get("okta_group_id")
                    .map_err(query_err("decode teams"))?,
                members: team_members,
            });
        }
        teams.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Dump { users, teams })
    }

    /// Validates `text` and merges it into the store: users are matched by
    /// Okta id, else by email (ignoring case); teams by Okta group id, else by
    /// name; listed rows take the file's values, unlisted rows are kept.
    /// Members listed for a team are added or get the listed role; other
    /// members stay.
    pub async fn load_json(&self, text: &str) -> Result<LoadSummary, LoadError> {
        let doc = parse_document(text)?;
        let mut tx = self.begin().await?;
        let mut summary = LoadSummary::default();
        let mut user_ids: HashMap<String, i64> = HashMap::new();
        let now = now_ms();

        for (i, user) in doc.users.iter().enumerate() {
            let path = format!("$.users[{i}]");
            let by_okta = match &user.okta_id {
                Some(okta_id) => fetch_user(&mut tx, Lookup::OktaId, okta_id).await?,
                None => None,
            };
            let by_email = fetch_user(&mut tx, Lookup::Key, &email_key(&user.attrs.email)).await?;
            let existing = match (by_okta, by_email) {
                (Some(a), Some(b)) if a.0 != b.0 => {
                    return Err(LoadError::Invalid {
                        path: format!("{path}.email"),
                        message: format!(
                            "{} belongs to another user than okta_id {} in the store",
                            user.attrs.email,
                            user.okta_id.as_deref().unwrap_or_default()
                        ),
                    });
                }
                (Some(a), _) => Some(a),
                (None, b) => b,
            };
            let after = user_json(user);
            let id = match existing {
                Some((id, before)) => {
                    if before != after {
                        sqlx::query(
                            "UPDATE users SET email = $1, email_key = $2, okta_id = $3, first_name = $4, last_name = $5, \
                             display_name = $6, active = $7, updated_at = $8 WHERE id = $9",
                        )
                        .bind(user.attrs.email.as_str())
                        .bind(email_key(&user.attrs.email))
                        .bind(user.okta_id.as_deref())
                        .bind(user.attrs.first_name.as_str())
                        .bind(user.attrs.last_name.as_str())
                        .bind(user.attrs.display_name.as_str())
                        .bind(i64::from(user.active))
                        .bind(now)
                        .bind(id)
                        .execute(&mut *tx.tx)
                        .await
                        .map_err(|e| load_conflict(&path, e))?;
                        tx.audit(
                            None,
                            "load_user_updated",
                            &user.attrs.email,
                            Some(&before.to_string()),
                            Some(&after.to_string()),
                        )
                        .await?;
                        summary.users_updated += 1;
                    }
                    id
                }
                None => {
                    let id = tx
                        .insert_user(&user.attrs, user.okta_id.as_deref(), user.active)
                        .await
                        .map_err(|e| store_conflict(&path, e))?;
                    tx.audit(
                        None,
                        "load_user_inserted",
                        &user.attrs.email,
                        None,
                        Some(&after.to_string()),
                    )
                    .await?;
                    summary.users_inserted += 1;
                    id
                }
            };
            user_ids.insert(email_key(&user.attrs.email), id);
        }

        for (i, team) in doc.teams.iter().enumerate() {
            let path = format!("$.teams[{i}]");
            let by_group = match &team.okta_group_id {
                Some(g) => fetch_team(&mut tx, Lookup::OktaId, g).await?,
                None => None,
            };
            let by_name = fetch_team(&mut tx, Lookup::Key, &team.name).await?;
            let existing = match (by_group, by_name) {
                (Some(a), Some(b)) if a.0 != b.0 => {
                    return Err(LoadError::Invalid {
                        path: format!("{path}.name"),
                        message: format!(
                            "team name {:?} belongs to another team than okta_group_id {}",
                            team.name,
                            team.okta_group_id.as_deref().unwrap_or_default()
                        ),
                    });
                }
                (Some(a), _) => Some(a),
                (None, b) => b,
            };
            let after = serde_json::json!({"name": team.name, "okta_group_id": team.okta_group_id});
            let team_id = match existing {
                Some((id, before)) => {
                    if before != after {
                        sqlx::query("UPDATE teams SET name = $1, okta_group_id = $2, updated_at = $3 WHERE id = $4")
                            .bind(&team.name)
                            .bind(team.okta_group_id.as_deref())
                            .bind(now)
                            .bind(id)
                            .execute(&mut *tx.tx)
                            .await
                            .map_err(|e| load_conflict(&path, e))?;
                        tx.audit(
                            None,
                            "load_team_updated",
                            &team.name,
                            Some(&before.to_string()),
                            Some(&after.to_string()),
                        )
                        .await?;
                        summary.teams_updated += 1;
                    }
                    id
                }
                None => {
                    let id = tx
                        .insert_team(&team.name, team.okta_group_id.as_deref())
                        .await
                        .map_err(|e| store_conflict(&path, e))?;
                    tx.audit(
                        None,
                        "load_team_inserted",
                        &team.name,
                        None,
                        Some(&after.to_string()),
                    )
                    .await?;
                    summary.teams_inserted += 1;
                    id
                }
            };
            for (j, member) in team.members.iter().enumerate() {
                let mpath = format!("{path}.members[{j}].email");
                let key = email_key(&member.email);
                let user_id = match user_ids.get(&key) {
                    Some(id) => *id,
                    None => tx.user_id_by_email(&member.email).await?.ok_or_else(|| {
                        LoadError::Invalid {
                            path: mpath.clone(),
                            message: format!(
                                "no user with email {} in the file or the store",
                                member.email
                            ),
                        }
                    })?,
                };
                let current =
                    sqlx::query("SELECT role FROM memberships WHERE team_id = $1 AND user_id = $2")
                        .bind(team_id)
                        .bind(user_id)
                        .fetch_optional(&mut *tx.tx)
                        .await
                        .map_err(query_err("read membership"))?
                        .map(|r| r.try_get::<String, _>(0))
                        .transpose()
                        .map_err(query_err("read membership"))?;
                let target = format!("{} in {}", member.email, team.name);
                match current {
                    Some(role) if role == member.role.as_str() => {}
                    Some(role) => {
                        tx.upsert_membership(team_id, user_id, member.role).await?;
                        tx.audit(
                            None,
                            "load_role_changed",
                            &target,
                            Some(&role),
                            Some(member.role.as_str()),
                        )
                        .await?;
                        summary.memberships_updated += 1;
                    }
                    None => {
                        tx.upsert_membership(team_id, user_id, member.role).await?;
                        tx.audit(
                            None,
                            "load_membership_added",
                            &target,
                            None,
                            Some(member.role.as_str()),
                        )
                        .await?;
                        summary.memberships_added += 1;
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(summary)
    }
}

type Tx = crate::store::StoreTx;

/// How a load finds an existing row.
#[derive(Clone, Copy)]
enum Lookup {
    OktaId,
    Key,
}

async fn fetch_user(
    tx: &mut Tx,
    by: Lookup,
    value: &str,
) -> Result<Option<(i64, Value)>, StoreError> {
    let sql = match by {
        Lookup::OktaId => {
            "SELECT id, email, okta_id, first_name, last_name, display_name, active FROM users WHERE okta_id = $1"
        }
        Lookup::Key => {
            "SELECT id, email, okta_id, first_name, last_name, display_name, active FROM users WHERE email_key = $1"
        }
    };
    let row = sqlx::query(sql)
        .bind(value)
        .fetch_optional(&mut *tx.tx)
        .await
        .map_err(query_err("find user"))?;
    row.map(|r| -> Result<(i64, Value), sqlx::Error> {
        Ok((
            r.try_get("id")?,
            serde_json::json!({
                "email": r.try_get::<String, _>("email")?,
                "okta_id": r.try_get::<Option<String>, _>("okta_id")?,
                "first_name": r.try_get::<String, _>("first_name")?,
                "last_name": r.try_get::<String, _>("last_name")?,
                "display_name": r.try_get::<String, _>("display_name")?,
                "active": r.try_get::<i64, _>("active")? != 0,
            }),
        ))
    })
    .transpose()
    .map_err(query_err("decode user"))
}

async fn fetch_team(
    tx: &mut Tx,
    by: Lookup,
    value: &str,
) -> Result<Option<(i64, Value)>, StoreError> {
    let sql = match by {
        Lookup::OktaId => "SELECT id, name, okta_group_id FROM teams WHERE okta_group_id = $1",
        Lookup::Key => "SELECT id, name, okta_group_id FROM teams WHERE name = $1",
    };
    let row = sqlx::query(sql)
        .bind(value)
        .fetch_optional(&mut *tx.tx)
        .await
        .map_err(query_err("find team"))?;
    row.map(|r| -> Result<(i64, Value), sqlx::Error> {
        Ok((
            r.try_get("id")?,
            serde_json::json!({
                "name": r.try_get::<String, _>("name")?,
                "okta_group_id": r.try_get::<Option<String>, _>("okta_group_id")?,
            }),
        ))
    })
    .transpose()
    .map_err(query_err("decode team"))
}

fn user_json(user: &LoadUser) -> Value {
    serde_json::json!({
        "email": user.attrs.email,
        "okta_id": user.okta_id,
        "first_name": user.attrs.first_name,
        "last_name": user.attrs.last_name,
        "display_name": user.attrs.display_name,
        "active": user.active,
    })
}

fn load_conflict(path: &str, e: sqlx::Error) -> LoadError {
    LoadError::Invalid {
        path: path.to_owned(),
        message: format!("conflicts with another row in the store: {e}"),
    }
}

fn store_conflict(path: &str, e: StoreError) -> LoadError {
    match e {
        StoreError::Query { source, .. } => load_conflict(path, source),
        other => LoadError::Store(other),
    }
}

// ---------------------------------------------------------------------------
// Validation: the whole document, before any write.
// ---------------------------------------------------------------------------

struct LoadDoc {
    users: Vec<LoadUser>,
    teams: Vec<LoadTeam>,
}

struct LoadUser {
    attrs: UserAttrs,
    okta_id: Option<String>,
    active: bool,
}

struct LoadTeam {
    name: String,
    okta_group_id: Option<String>,
    members: Vec<DumpMember>,
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> LoadError {
    LoadError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

fn object<'a>(
    v: &'a Value,
    path: &str,
    keys: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, LoadError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(path, "expected an object"))?;
    if let Some(unknown) = obj.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(invalid(
            format!("{path}.{unknown}"),
            format!("unknown field (expected one of: {})", keys.join(", ")),
        ));
    }
    Ok(obj)
}

fn string(
    obj: &serde_json::Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<String, LoadError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(invalid(format!("{path}.{key}"), "expected a string")),
        None => Err(invalid(format!("{path}.{key}"), "missing")),
    }
}

fn optional_string(
    obj: &serde_json::Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<String>, LoadError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(invalid(
            format!("{path}.{key}"),
            "must be null or a non-empty string",
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(
            format!("{path}.{key}"),
            "expected a string or null",
        )),
    }
}

fn array<'a>(
    obj: &'a serde_json::Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<&'a [Value], LoadError> {
    match obj.get(key) {
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(invalid(format!("{path}.{key}"), "expected an array")),
        None => Ok(&[]),
    }
}

fn parse_document(text: &str) -> Result<LoadDoc, LoadError> {
    let root: Value = serde_json::from_str(text)?;
    let top = object(&root, "$", &["users", "teams"])?;
    let mut users = Vec::new();
    let mut emails = HashMap::new();
    let mut okta_ids = HashMap::new();
    for (i, v) in array(top, "$", "users")?.iter().enumerate() {
        let path = format!("$.users[{i}]");
        let o = object(
            v,
            &path,
            &[
                "email",
                "okta_id",
                "first_name",
                "last_name",
                "display_name",
                "active",
            ],
        )?;
        let email = string(o, &path, "email")?.trim().to_owned();
        if email.is_empty() || !email.contains('@') {
            return Err(invalid(
                format!("{path}.email"),
                format!("{email:?} is not an email address"),
            ));
        }
        if let Some(first) = emails.insert(email_key(&email), i) {
            return Err(invalid(
                format!("{path}.email"),
                format!(
                    "{email} is also the email of $.users[{first}] (emails are unique ignoring case)"
                ),
            ));
        }
        let okta_id = optional_string(o, &path, "okta_id")?;
        if let Some(id) = &okta_id
            && let Some(first) = okta_ids.insert(id.clone(), i)
        {
            return Err(invalid(
                format!("{path}.okta_id"),
                format!("{id} is also the okta_id of $.users[{first}]"),
            ));
        }
        let opt_name = |key: &str| -> Result<String, LoadError> {
            Ok(optional_string_or_empty(o, &path, key)?.unwrap_or_default())
        };
        let active = match o.get("active") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid(format!("{path}.active"), "expected true or false")),
        };
        users.push(LoadUser {
            attrs: UserAttrs {
                email: email.into(),
                first_name: opt_name("first_name")?.into(),
                last_name: opt_name("last_name")?.into(),
                display_name: opt_name("display_name")?.into(),
            },
            okta_id,
            active,
        });
    }
    let mut teams = Vec::new();
    let mut names = HashMap::new();
    let mut group_ids = HashMap::new();
    for (i, v) in array(top, "$", "teams")?.iter().enumerate() {
        let path = format!("$.teams[{i}]");
        let o = object(v, &path, &["name", "okta_group_id", "members"])?;
        let name = string(o, &path, "name")?;
        if name.trim().is_empty() {
            return Err(invalid(format!("{path}.name"), "must not be empty"));
        }
        if let Some(first) = names.insert(name.clone(), i) {
            return Err(invalid(
                format!("{path}.name"),
                format!("{name:?} is also the name of $.teams[{first}]"),
            ));
        }
        let okta_group_id = optional_string(o, &path, "okta_group_id")?;
        if let Some(g) = &okta_group_id
            && let Some(first) = group_ids.insert(g.clone(), i)
        {
            return Err(invalid(
                format!("{path}.okta_group_id"),
                format!("{g} is also the okta_group_id of $.teams[{first}]"),
            ));
        }
        let mut members = Vec::new();
        let mut seen = HashSet::new();
        for (j, m) in array(o, &path, "members")?.iter().enumerate() {
            let mpath = format!("{path}.members[{j}]");
            let mo = object(m, &mpath, &["email", "role"])?;
            let email = string(mo, &mpath, "email")?.trim().to_owned();
            if !seen.insert(email_key(&email)) {
                return Err(invalid(
                    format!("{mpath}.email"),
                    format!("{email} is listed twice in this team"),
                ));
            }
            let role = match mo.get("role") {
                None => Role::Member,
                Some(Value::String(r)) => r
                    .parse::<Role>()
                    .map_err(|m| invalid(format!("{mpath}.role"), m))?,
                Some(_) => {
                    return Err(invalid(
                        format!("{mpath}.role"),
                        "expected \"admin\" or \"member\"",
                    ));
                }
            };
            members.push(DumpMember { email, role });
        }
        teams.push(LoadTeam {
            name,
            okta_group_id,
            members,
        });
    }
    Ok(LoadDoc { users, teams })
}

fn optional_string_or_empty(
    obj: &serde_json::Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<String>, LoadError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("{path}.{key}"), "expected a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse_document(text) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted: {text}"),
        }
    }

    #[test]
    fn malformed_documents_name_the_json_path() {
        assert!(err("{").starts_with("not valid JSON"));
        assert_eq!(err(r#"{"users": {}}"#), "$.users: expected an array");
        assert_eq!(
            err(r#"{"users": [{"okta_id": null}]}"#),
            "$.users[0].email: missing"
        );
        assert_eq!(
            err(r#"{"users": [{"email": "a@x"}, {"email": "nope"}]}"#),
            "$.users[1].email: \"nope\" is not an email address"
        );
        assert!(
            err(r#"{"users": [{"email": "a@x"}, {"email": "A@X"}]}"#)
                .starts_with("$.users[1].email: A@X is also")
        );
        assert_eq!(
            err(r#"{"users": [{"email": "a@x", "active": "yes"}]}"#),
            "$.users[0].active: expected true or false"
        );
        assert!(
            err(r#"{"users": [{"email": "a@x", "nick": 1}]}"#)
                .starts_with("$.users[0].nick: unknown field")
        );
        assert!(
            err(r#"{"teams": [{"name": "T", "members": [{"email": "a@x", "role": "owner"}]}]}"#)
                .starts_with("$.teams[0].members[0].role: unknown role")
        );
        assert!(err(r#"{"teams": [{"name": "T"}, {"name": "T"}]}"#).starts_with("$.teams[1].name"));
        assert!(err(r#"{"extra": 1}"#).starts_with("$.extra: unknown field"));
    }
}

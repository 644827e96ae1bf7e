//! `writer-sync audit` (SPEC §8): the audit log read back with its run, by
//! run, user, team and age.
//!
//! Invariant: read-only. The user and team filters match what the writers
//! put in `target` (an email, a team name, or `email in team`) and the
//! emails in `before`/`after`, ignoring case, in Rust rather than SQL
//! (SQLite's `LOWER` folds ASCII only), over pages of the log newest first.
//! For a plain ASCII email or name, SQL first keeps only rows that contain
//! it (a necessary condition), so a rare user does not read the whole log.

use serde::Serialize;
use sqlx::Row;

use crate::store::{Store, StoreError, email_key, query_err};

/// Which audit rows to read; the filters combine with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub run_id: Option<i64>,
    /// An email: rows about this user.
    pub user: Option<String>,
    /// A team name: rows about this team.
    pub team: Option<String>,
    /// Epoch milliseconds: rows at or after.
    pub since_ms: Option<i64>,
    /// Rows at most (newest first).
    pub limit: u32,
}

/// One audit row with its run.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    /// `None` for `store load`, `pause` and `resume`.
    pub run_id: Option<i64>,
    /// Epoch milliseconds.
    pub at: i64,
    pub action: String,
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    /// The run's trigger and status (`None` without a run).
    pub trigger: Option<String>,
    pub status: Option<String>,
}

/// Rows read per query while filtering in Rust.
const PAGE: i64 = 1000;

impl AuditEntry {
    /// The user the row is about: the email of a user action's target or
    /// of a membership's `email in team`.
    fn target_user(&self) -> Option<&str> {
        match Kind::of(&self.action) {
            Kind::User => Some(&self.target),
            Kind::Membership => self.target.split_once(" in ").map(|(e, _)| e),
            Kind::Team | Kind::Other => None,
        }
    }

    /// The team the row is about: the target of a team action, the team of
    /// a membership's `email in team`.
    fn target_team(&self) -> Option<&str> {
        match Kind::of(&self.action) {
            Kind::Team => Some(&self.target),
            Kind::Membership => self.target.split_once(" in ").map(|(_, t)| t),
            Kind::User | Kind::Other => None,
        }
    }

    fn about_user(&self, email: &str) -> bool {
        let key = email_key(email);
        if self.target_user().is_some_and(|e| email_key(e) == key) {
            return true;
        }
        // An email change names the old address only in `before`.
        Kind::of(&self.action) == Kind::User
            && [&self.before, &self.after].into_iter().flatten().any(|v| {
                v.get("email")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|e| email_key(e) == key)
            })
    }

    fn about_team(&self, name: &str) -> bool {
        let key = name.to_lowercase();
        self.target_team().is_some_and(|t| t.to_lowercase() == key)
    }

    fn matches(&self, filter: &AuditFilter) -> bool {
        filter.user.as_deref().is_none_or(|u| self.about_user(u))
            && filter.team.as_deref().is_none_or(|t| self.about_team(t))
    }
}

/// What an audit row's `target` holds, by its action: the change kinds of
/// a run (`user_created`, `membership_added`, `team_linked` …), those of
/// `store load` (`load_user_inserted`, `load_membership_added` …), and
/// the pause's (`pause`, `resume`: target `store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An email.
    User,
    /// `email in team`.
    Membership,
    /// A team name.
    Team,
    Other,
}

impl Kind {
    fn of(action: &str) -> Kind {
        if action.contains("membership") || action.ends_with("role_changed") {
            Kind::Membership
        } else if action.contains("team_") {
            Kind::Team
        } else if action.contains("user_") {
            Kind::User
        } else {
            Kind::Other
        }
    }
}

impl Store {
    /// The audit rows `filter` selects, newest first, with their runs.
    pub async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut found = Vec::new();
        let mut before_id = i64::MAX;
        let user_like = filter
            .user
            .as_deref()
            .and_then(|u| like_pattern(&email_key(u)));
        let team_like = filter
            .team
            .as_deref()
            .and_then(|t| like_pattern(&t.to_lowercase()));
        loop {
            let rows = sqlx::query(
                "SELECT a.id, a.run_id, a.at, a.action, a.target, a.before, a.after, \
                 r.run_trigger, r.status FROM audit_log a LEFT JOIN sync_runs r ON r.id = a.run_id \
                 WHERE a.id < $1 AND ($2 IS NULL OR a.run_id = $2) AND ($3 IS NULL OR a.at >= $3) \
                 AND ($5 IS NULL OR LOWER(a.target) LIKE $5 ESCAPE '\\' \
                      OR LOWER(COALESCE(a.before, '')) LIKE $5 ESCAPE '\\' \
                      OR LOWER(COALESCE(a.after, '')) LIKE $5 ESCAPE '\\') \
                 AND ($6 IS NULL OR LOWER(a.target) LIKE $6 ESCAPE '\\') \
                 ORDER BY a.id DESC LIMIT $4",
            )
            .bind(before_id)
            .bind(filter.run_id)
            .bind(filter.since_ms)
            .bind(PAGE)
            .bind(user_like.as_deref())
            .bind(team_like.as_deref())
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("read audit log"))?;
            let page = rows.len();
            for row in &rows {
                let entry = decode(row).map_err(query_err("decode audit log"))?;
                before_id = entry.id;
                if entry.matches(filter) {
                    found.push(entry);
                    if found.len() >= filter.limit as usize {
                        return Ok(found);
                    }
                }
            }
            if page < PAGE as usize {
                return Ok(found);
            }
        }
    }
}

/// `%key%` for SQL's `LIKE … ESCAPE '\'`, when SQL can prefilter `key`:
/// ASCII (SQLite's `LOWER` folds nothing else) and without `"` or `\`
/// (JSON would escape them in `before`/`after`).
fn like_pattern(key: &str) -> Option<String> {
    if !key.is_ascii() || key.contains(['"', '\\']) {
        return None;
    }
    let mut pattern = String::from("%");
    for c in key.chars() {
        if matches!(c, '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    Some(pattern)
}

fn decode(r: &sqlx::any::AnyRow) -> Result<AuditEntry, sqlx::Error> {
    let json = |text: Option<String>| {
        text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
    };
    Ok(AuditEntry {
        id: r.try_get("id")?,
        run_id: r.try_get("run_id")?,
        at: r.try_get("at")?,
        action: r.try_get("action")?,
        target: r.try_get("target")?,
        before: json(r.try_get("before")?),
        after: json(r.try_get("after")?),
        trigger: r.try_get("run_trigger")?,
        status: r.try_get("status")?,
    })
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn the_sql_prefilter_escapes_like_wildcards_and_steps_aside_when_it_could_miss() {
        assert_eq!(
            like_pattern("a_b%c@x.example").as_deref(),
            Some("%a\\_b\\%c@x.example%")
        );
        // SQLite's LOWER folds ASCII only; JSON escapes quotes and backslashes.
        assert_eq!(like_pattern("jürgen@x.example"), None);
        assert_eq!(like_pattern("a\"b@x.example"), None);
        assert_eq!(like_pattern("a\\b@x.example"), None);
    }
}

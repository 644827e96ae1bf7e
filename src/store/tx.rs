//! Writes: the [`StoreTx`] every change goes through with its audit row, and
//! the multi-row statements apply uses for runs of one kind.

use sqlx::{Any, Row};

use crate::model::{Role, UserAttrs};
use crate::store::{Backend, Store, StoreError, email_key, now_ms, query_err};

impl Store {
    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<StoreTx, StoreError> {
        let tx = self.pool.begin().await.map_err(query_err("begin"))?;
        Ok(StoreTx {
            tx,
            backend: self.backend,
        })
    }
}

/// A write transaction. Every mutating method takes what the audit row needs;
/// nothing is visible to others until [`StoreTx::commit`].
pub struct StoreTx {
    pub(super) tx: sqlx::Transaction<'static, Any>,
    pub(super) backend: Backend,
}

/// Bind parameters of one multi-row statement at most: well under SQLite's
/// 32,766 and PostgreSQL's 65,535.
pub const MAX_BIND_PARAMS: usize = 16_000;

/// Bytes of bind values one PostgreSQL statement carries at most. sqlx 0.9.0
/// leaves Nagle's algorithm on (no `TCP_NODELAY`, sqlx issue #4335): a
/// message larger than the socket's initial send buffer (16 KiB on Linux)
/// goes out in two writes and the second waits about 40 ms for a delayed
/// ACK. Measured on loopback: ~0.4 ms per statement up to ~16 KiB, ~44 ms
/// above. 8 KiB keeps a wide margin and still holds dozens of rows.
const PG_STATEMENT_BYTES: usize = 8 * 1024;

/// Bytes a bind value costs on the wire besides its data (PostgreSQL's
/// length prefix and format code).
const PARAM_OVERHEAD: usize = 6;

/// Splits rows of `cols` bind values (`row_bytes(i)`: data bytes of row
/// `i`) into statements: as many rows as the bind-parameter limit and, on
/// PostgreSQL, [`PG_STATEMENT_BYTES`] allow, rounded down to a power of two
/// so that only a few statement shapes are prepared and cached.
fn statement_rows(
    backend: Backend,
    cols: usize,
    rows: usize,
    row_bytes: impl Fn(usize) -> usize,
) -> Vec<std::ops::Range<usize>> {
    let max_rows = (MAX_BIND_PARAMS / cols).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < rows {
        let mut end = start;
        let mut bytes = 0;
        while end < rows && end - start < max_rows {
            bytes += row_bytes(end) + cols * PARAM_OVERHEAD;
            if backend == Backend::Postgres && end > start && bytes > PG_STATEMENT_BYTES {
                break;
            }
            end += 1;
        }
        let n = end - start;
        let n = 1 << (usize::BITS - 1 - n.leading_zeros());
        out.push(start..start + n);
        start += n;
    }
    out
}

/// A managed, active user to create ([`StoreTx::insert_users`]).
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    pub okta_id: &'a str,
    pub attrs: &'a UserAttrs,
}

/// One audit-log row of [`StoreTx::audit_rows`].
#[derive(Debug, Clone, Copy)]
pub struct AuditRow<'a> {
    pub action: &'a str,
    pub target: &'a str,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
}

/// Placeholders for `rows` rows of `cols` values, numbered from `first`:
/// `($1, $2), ($3, $4)` on PostgreSQL, `(?, ?), (?, ?)` on SQLite (sqlx's
/// SQLite driver looks numbered placeholders up by name, which is quadratic
/// in their number; anonymous ones bind in order). With `cols == 1` the
/// list is bare (`$1, $2`) for `IN (…)`. Only placeholders, never values.
fn placeholders(backend: Backend, first: usize, rows: usize, cols: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(rows * (cols * 8 + 2));
    let mut n = first;
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        if cols > 1 {
            out.push('(');
        }
        for c in 0..cols {
            if c > 0 {
                out.push_str(", ");
            }
            match backend {
                Backend::Sqlite => out.push('?'),
                Backend::Postgres => {
                    // sql: placeholders only
                    let _ = write!(out, "${n}");
                }
            }
            n += 1;
        }
        if cols > 1 {
            out.push(')');
        }
    }
    out
}

impl StoreTx {
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(query_err("commit"))
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await.map_err(query_err("rollback"))
    }

    /// Inserts a user and returns its id.
    pub async fn insert_user(
        &mut self,
        attrs: &UserAttrs,
        okta_id: Option<&str>,
        active: bool,
    ) -> Result<i64, StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO users (email, email_key, okta_id, first_name, last_name, display_name, active, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
        )
        .bind(attrs.email.as_str())
        .bind(email_key(&attrs.email))
        .bind(okta_id)
        .bind(attrs.first_name.as_str())
        .bind(attrs.last_name.as_str())
        .bind(attrs.display_name.as_str())
        .bind(i64::from(active))
        .bind(now)
        .fetch_one(&mut *self.tx)
        .await
        .and_then(|r| r.try_get::<i64, _>(0))
        .map_err(query_err("insert user"))
    }

    pub async fn update_user_attrs(
        &mut self,
        user_id: i64,
        attrs: &UserAttrs,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE users SET email = $1, email_key = $2, first_name = $3, last_name = $4, display_name = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(attrs.email.as_str())
        .bind(email_key(&attrs.email))
        .bind(attrs.first_name.as_str())
        .bind(attrs.last_name.as_str())
        .bind(attrs.display_name.as_str())
        .bind(now_ms())
        .bind(user_id)
        .execute(&mut *self.tx)
        .await
        .map_err(query_err("update user"))
        .and_then(expect_one("update user"))
    }

    pub async fn set_user_okta_id(
        &mut self,
        user_id: i64,
        okta_id: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET okta_id = $1, updated_at = $2 WHERE id = $3")
            .bind(okta_id)
            .bind(now_ms())
            .bind(user_id)
            .execute(&mut *self.tx)
            .await
            .map_err(query_err("link user"))
            .and_then(expect_one("link user"))
    }

    pub async fn set_user_active(&mut self, user_id: i64, active: bool) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET active = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::from(active))
            .bind(now_ms())
            .bind(user_id)
            .execute(&mut *self.tx)
            .await
            .map_err(query_err("set user status"))
            .and_then(expect_one("set user status"))
    }

    /// Inserts a team and returns its id.
    pub async fn insert_team(
        &mut self,
        name: &str,
        okta_group_id: Option<&str>,
    ) -> Result<i64, StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO teams (name, okta_group_id, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id",
        )
        .bind(name)
        .bind(okta_group_id)
        .bind(now)
        .fetch_one(&mut *self.tx)
        .await
        .and_then(|r| r.try_get::<i64, _>(0))
        .map_err(query_err("insert team"))
    }

    pub async fn set_team_group(
        &mut self,
        team_id: i64,
        okta_group_id: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE teams SET okta_group_id = $1, updated_at = $2 WHERE id = $3")
            .bind(okta_group_id)
            .bind(now_ms())
            .bind(team_id)
            .execute(&mut *self.tx)
            .await
            .map_err(query_err("link team"))
            .and_then(expect_one("link team"))
    }

    /// Adds a membership, or sets its role when it already exists.
    pub async fn upsert_membership(
        &mut self,
        team_id: i64,
        user_id: i64,
        role: Role,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO memberships (team_id, user_id, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at",
        )
        .bind(team_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *self.tx)
        .await
        .map(|_| ())
        .map_err(query_err("add membership"))
    }

    pub async fn delete_membership(
        &mut self,
        team_id: i64,
        user_id: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM memberships WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .execute(&mut *self.tx)
            .await
            .map(|_| ())
            .map_err(query_err("remove membership"))
    }

    /// Writes one audit-log row (in this transaction).
    pub async fn audit(
        &mut self,
        run_id: Option<i64>,
        action: &str,
        target: &str,
        before: Option<&str>,
        after: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (run_id, at, action, target, before, after) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(run_id)
        .bind(now_ms())
        .bind(action)
        .bind(target)
        .bind(before)
        .bind(after)
        .execute(&mut *self.tx)
        .await
        .map(|_| ())
        .map_err(query_err("write audit log"))
    }

    /// Inserts managed, active users with multi-row statements and returns
    /// each one's id by Okta id (not relying on the order of `RETURNING`).
    pub async fn insert_users(
        &mut self,
        users: &[NewUser<'_>],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        const COLS: usize = 9;
        let mut ids = Vec::with_capacity(users.len());
        let statements = statement_rows(self.backend, COLS, users.len(), |i| {
            let (u, a) = (&users[i], users[i].attrs);
            2 * a.email.len()
                + u.okta_id.len()
                + a.first_name.len()
                + a.last_name.len()
                + a.display_name.len()
                + 24
        });
        for range in statements {
            let chunk = &users[range];
            let now = now_ms();
            // sql: placeholders only
            let sql = format!(
                "INSERT INTO users (email, email_key, okta_id, first_name, last_name, display_name, active, created_at, updated_at) \
                 VALUES {} RETURNING id, okta_id",
                placeholders(self.backend, 1, chunk.len(), COLS)
            );
            // sql: placeholders only
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for user in chunk {
                query = query
                    .bind(user.attrs.email.as_str())
                    .bind(email_key(&user.attrs.email))
                    .bind(user.okta_id)
                    .bind(user.attrs.first_name.as_str())
                    .bind(user.attrs.last_name.as_str())
                    .bind(user.attrs.display_name.as_str())
                    .bind(1_i64)
                    .bind(now)
                    .bind(now);
            }
            let rows = query
                .fetch_all(&mut *self.tx)
                .await
                .map_err(query_err("insert users"))?;
            if rows.len() != chunk.len() {
                return Err(StoreError::Corrupt(format!(
                    "insert users: expected {} new rows, got {}",
                    chunk.len(),
                    rows.len()
                )));
            }
            for row in &rows {
                let id: i64 = row.try_get(0).map_err(query_err("insert users"))?;
                let okta_id: Option<String> = row.try_get(1).map_err(query_err("insert users"))?;
                let okta_id = okta_id.ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "insert users: user {id} came back without an Okta id"
                    ))
                })?;
                ids.push((okta_id, id));
            }
        }
        Ok(ids)
    }

    /// [`StoreTx::upsert_membership`] for many `(team_id, user_id, role)`
    /// rows, in order, with multi-row statements. A statement never holds
    /// one membership twice (PostgreSQL refuses to update a row twice in one
    /// statement), so a repeated membership ends with its last role, as
    /// one-by-one upserts would.
    pub async fn upsert_memberships(
        &mut self,
        rows: &[(i64, i64, Role)],
    ) -> Result<(), StoreError> {
        const COLS: usize = 5;
        // Runs without a repeated membership, then statements within them.
        let mut seen = std::collections::HashSet::new();
        let mut statements = Vec::new();
        let mut start = 0;
        while start < rows.len() {
            seen.clear();
            let mut end = start;
            while end < rows.len() && seen.insert((rows[end].0, rows[end].1)) {
                end += 1;
            }
            statements.extend(
                statement_rows(self.backend, COLS, end - start, |_| 38)
                    .into_iter()
                    .map(|r| r.start + start..r.end + start),
            );
            start = end;
        }
        for range in statements {
            let chunk = &rows[range];
            let now = now_ms();
            // sql: placeholders only
            let sql = format!(
                "INSERT INTO memberships (team_id, user_id, role, created_at, updated_at) VALUES {} \
                 ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at",
                placeholders(self.backend, 1, chunk.len(), COLS)
            );
            // sql: placeholders only
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (team_id, user_id, role) in chunk {
                query = query
                    .bind(*team_id)
                    .bind(*user_id)
                    .bind(role.as_str())
                    .bind(now)
                    .bind(now);
            }
            query
                .execute(&mut *self.tx)
                .await
                .map_err(query_err("add memberships"))?;
        }
        Ok(())
    }

    /// [`StoreTx::delete_membership`] for many `(team_id, user_id)` pairs.
    pub async fn delete_memberships(&mut self, rows: &[(i64, i64)]) -> Result<(), StoreError> {
        const COLS: usize = 2;
        for range in statement_rows(self.backend, COLS, rows.len(), |_| 16) {
            let chunk = &rows[range];
            // sql: placeholders only
            let sql = format!(
                "DELETE FROM memberships WHERE (team_id, user_id) IN (VALUES {})",
                placeholders(self.backend, 1, chunk.len(), COLS)
            );
            // sql: placeholders only
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (team_id, user_id) in chunk {
                query = query.bind(*team_id).bind(*user_id);
            }
            query
                .execute(&mut *self.tx)
                .await
                .map_err(query_err("remove memberships"))?;
        }
        Ok(())
    }

    /// [`StoreTx::set_user_active`] for many users; fails (as it does) when
    /// one of them does not exist.
    pub async fn set_users_active(
        &mut self,
        user_ids: &[i64],
        active: bool,
    ) -> Result<(), StoreError> {
        for range in statement_rows(self.backend, 1, user_ids.len(), |_| 8) {
            let chunk = &user_ids[range];
            let head = match self.backend {
                Backend::Sqlite => "UPDATE users SET active = ?, updated_at = ? WHERE id IN (",
                Backend::Postgres => "UPDATE users SET active = $1, updated_at = $2 WHERE id IN (",
            };
            // sql: placeholders only
            let sql = format!("{head}{})", placeholders(self.backend, 3, chunk.len(), 1));
            // sql: placeholders only
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(i64::from(active))
                .bind(now_ms());
            for id in chunk {
                query = query.bind(*id);
            }
            let changed = query
                .execute(&mut *self.tx)
                .await
                .map_err(query_err("set user status"))?
                .rows_affected();
            let distinct = chunk.iter().collect::<std::collections::HashSet<_>>().len();
            if changed != distinct as u64 {
                return Err(StoreError::Corrupt(format!(
                    "set user status: expected to change {distinct} rows, changed {changed}"
                )));
            }
        }
        Ok(())
    }

    /// Writes audit-log rows of one run (in this transaction), in order.
    pub async fn audit_rows(
        &mut self,
        run_id: Option<i64>,
        rows: &[AuditRow<'_>],
    ) -> Result<(), StoreError> {
        const COLS: usize = 6;
        let statements = statement_rows(self.backend, COLS, rows.len(), |i| {
            let r = &rows[i];
            16 + r.action.len()
                + r.target.len()
                + r.before.map_or(0, str::len)
                + r.after.map_or(0, str::len)
        });
        for range in statements {
            let chunk = &rows[range];
            let now = now_ms();
            // sql: placeholders only
            let sql = format!(
                "INSERT INTO audit_log (run_id, at, action, target, before, after) VALUES {}",
                placeholders(self.backend, 1, chunk.len(), COLS)
            );
            // sql: placeholders only
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in chunk {
                query = query
                    .bind(run_id)
                    .bind(now)
                    .bind(row.action)
                    .bind(row.target)
                    .bind(row.before)
                    .bind(row.after);
            }
            query
                .execute(&mut *self.tx)
                .await
                .map_err(query_err("write audit log"))?;
        }
        Ok(())
    }

    /// Finds a user id by email, ignoring case.
    pub async fn user_id_by_email(&mut self, email: &str) -> Result<Option<i64>, StoreError> {
        sqlx::query("SELECT id FROM users WHERE email_key = $1")
            .bind(email_key(email))
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(query_err("find user"))?
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()
            .map_err(query_err("find user"))
    }
}

fn expect_one(
    what: &'static str,
) -> impl FnOnce(sqlx::any::AnyQueryResult) -> Result<(), StoreError> {
    move |r| {
        if r.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "{what}: expected to change 1 row, changed {}",
                r.rows_affected()
            )))
        }
    }
}

//! Reading the store: the whole state the planner needs, and the managed-user
//! counts the metrics report.

use sqlx::Row;

use crate::model::{StoreMembership, StoreState, StoreTeam, StoreUser};
use crate::store::{Store, StoreError, query_err};

impl Store {
    /// Reads everything the planner needs.
    pub async fn load_state(&self) -> Result<StoreState, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(query_err("acquire"))?;
        let users = sqlx::query(
            "SELECT id, email, okta_id, first_name, last_name, display_name, active FROM users ORDER BY id",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err("read users"))?
        .iter()
        .map(|r| -> Result<StoreUser, sqlx::Error> {
            Ok(StoreUser {
                id: r.try_get("id")?,
                email: r.try_get("email")?,
                okta_id: r.try_get("okta_id")?,
                first_name: r.try_get("first_name")?,
                last_name: r.try_get("last_name")?,
                display_name: r.try_get("display_name")?,
                active: r.try_get::<i64, _>("active")? != 0,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(query_err("decode users"))?;
        let teams = sqlx::query("SELECT id, name, okta_group_id FROM teams ORDER BY id")
            .fetch_all(&mut *conn)
            .await
            .map_err(query_err("read teams"))?
            .iter()
            .map(|r| -> Result<StoreTeam, sqlx::Error> {
                Ok(StoreTeam {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    okta_group_id: r.try_get("okta_group_id")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err("decode teams"))?;
        let rows =
            sqlx::query("SELECT team_id, user_id, role FROM memberships ORDER BY team_id, user_id")
                .fetch_all(&mut *conn)
                .await
                .map_err(query_err("read memberships"))?;
        let mut memberships = Vec::with_capacity(rows.len());
        for r in &rows {
            let role: String = r.try_get("role").map_err(query_err("decode memberships"))?;
            memberships.push(StoreMembership {
                team_id: r
                    .try_get("team_id")
                    .map_err(query_err("decode memberships"))?,
                user_id: r
                    .try_get("user_id")
                    .map_err(query_err("decode memberships"))?,
                role: role.parse().map_err(StoreError::Corrupt)?,
            });
        }
        Ok(StoreState {
            users,
            teams,
            memberships,
        })
    }

    /// Managed users by state: (active, inactive).
    pub async fn managed_user_counts(&self) -> Result<(u64, u64), StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(active), 0) AS BIGINT), CAST(COUNT(*) AS BIGINT) FROM users WHERE okta_id IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(query_err("count managed users"))?;
        let active: i64 = row.try_get(0).map_err(query_err("count managed users"))?;
        let total: i64 = row.try_get(1).map_err(query_err("count managed users"))?;
        Ok((active.max(0) as u64, (total - active).max(0) as u64))
    }
}

//! Reading the store: the whole state the planner needs, and the managed-user
//! counts the metrics report.

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, Row};

use crate::model::{StoreMembership, StoreState, StoreTeam, StoreUser, Text};
use crate::store::{Store, StoreError, query_err};

impl Store {
    /// Reads everything the planner needs. Rows are decoded as they stream
    /// in, so the driver's rows of a million memberships are never all in
    /// memory at once: only the compact values are kept.
    pub async fn load_state(&self) -> Result<StoreState, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(query_err("acquire"))?;
        let users = decode_all(
            &mut conn,
            "SELECT id, email, okta_id, first_name, last_name, display_name, active FROM users ORDER BY id",
            ("read users", "decode users"),
            |r| {
                let text = |column| r.try_get::<&str, _>(column).map(Text::from);
                Ok(StoreUser {
                    id: r.try_get("id")?,
                    email: text("email")?,
                    okta_id: r.try_get::<Option<&str>, _>("okta_id")?.map(Text::from),
                    first_name: text("first_name")?,
                    last_name: text("last_name")?,
                    display_name: text("display_name")?,
                    active: r.try_get::<i64, _>("active")? != 0,
                })
            },
        )
        .await?;
        let teams = decode_all(
            &mut conn,
            "SELECT id, name, okta_group_id FROM teams ORDER BY id",
            ("read teams", "decode teams"),
            |r| {
                Ok(StoreTeam {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    okta_group_id: r.try_get("okta_group_id")?,
                })
            },
        )
        .await?;
        let memberships = decode_all(
            &mut conn,
            "SELECT team_id, user_id, role FROM memberships ORDER BY team_id, user_id",
            ("read memberships", "decode memberships"),
            |r| {
                let role: &str = r.try_get("role")?;
                Ok(StoreMembership {
                    team_id: r.try_get("team_id")?,
                    user_id: r.try_get("user_id")?,
                    role: role.parse().map_err(Bad::Corrupt)?,
                })
            },
        )
        .await?;
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

/// Why a row could not be decoded: the driver's error, or a value no
/// writer of this program stores (`StoreError::Corrupt`).
enum Bad {
    Sql(sqlx::Error),
    Corrupt(String),
}

impl From<sqlx::Error> for Bad {
    fn from(e: sqlx::Error) -> Bad {
        Bad::Sql(e)
    }
}

/// Runs `sql` and decodes each row with `decode` as it arrives; `read`
/// and `decoding` name the query and the decoding in errors.
async fn decode_all<T>(
    conn: &mut PoolConnection<Any>,
    sql: &'static str,
    (read, decoding): (&'static str, &'static str),
    decode: impl Fn(&AnyRow) -> Result<T, Bad>,
) -> Result<Vec<T>, StoreError> {
    // sql: placeholders only (a `&'static str`: one of load_state's literals)
    let mut rows = sqlx::query(sql).fetch(&mut **conn);
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await.map_err(query_err(read))? {
        match decode(&row) {
            Ok(value) => out.push(value),
            Err(Bad::Sql(e)) => return Err(query_err(decoding)(e)),
            Err(Bad::Corrupt(why)) => return Err(StoreError::Corrupt(why)),
        }
    }
    out.shrink_to_fit();
    Ok(out)
}

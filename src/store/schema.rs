//! The schema found under the sync lock: a store whose tables are all gone
//! (the database was dropped and recreated empty, or emptied by hand) is
//! migrated again; one with only some of them gone is refused.
//!
//! Invariant: never recreates a table beside live data; runs only while the
//! caller holds the store's exclusive lock (PostgreSQL advisory lock or the
//! SQLite OS lock), so two processes never migrate at once.

use sqlx::Row;

use crate::store::{Backend, Store, StoreError, migrator, query_err};

/// Every table the migrations create.
const TABLES: [&str; 9] = [
    "users",
    "teams",
    "memberships",
    "sync_runs",
    "audit_log",
    "sync_state",
    "sync_lock",
    "event_cursor",
    "missing_since",
];

/// What a schema check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SchemaCheck {
    /// Every table is there.
    Present,
    /// None was there: the migrations ran again (an empty store now).
    Recreated,
}

impl Store {
    async fn table_exists(&self, name: &str) -> Result<bool, StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = $1"
            }
        };
        let row = sqlx::query(sql)
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(query_err("look up the store's tables"))?;
        Ok(row
            .try_get::<i64, _>(0)
            .map_err(query_err("look up the store's tables"))?
            > 0)
    }

    async fn missing_tables(&self) -> Result<Vec<&'static str>, StoreError> {
        let mut missing = Vec::new();
        for table in TABLES {
            if !self.table_exists(table).await? {
                missing.push(table);
            }
        }
        Ok(missing)
    }

    /// Checks the store still has its tables; when all of them are gone,
    /// runs the migrations again (logging a WARN). Call only under the sync
    /// lock.
    pub(super) async fn restore_schema_if_missing(&self) -> Result<SchemaCheck, StoreError> {
        // A process migrating this SQLite file right now holds the
        // migration lock: look once it is done, not halfway.
        let _migrating = self.migration_lock().await?;
        let mut missing = self.missing_tables().await?;
        if missing.is_empty() {
            return Ok(SchemaCheck::Present);
        }
        if missing.len() < TABLES.len() {
            // Another process may be migrating this store right now (its
            // connect is not under the sync lock): give its migrations a
            // few seconds to commit, then look again.
            let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !missing.is_empty() && std::time::Instant::now() < until {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                missing = self.missing_tables().await?;
            }
            missing = self.missing_tables().await?;
            if missing.is_empty() {
                return Ok(SchemaCheck::Present);
            }
            return Err(StoreError::SchemaDamaged {
                location: self.location.clone(),
                missing: missing.join(", "),
            });
        }
        tracing::warn!(
            store = %self.location,
            "the store's tables are gone (the database was emptied or recreated): creating them again; \
             the next run is a first sync into an empty store"
        );
        // The migration history may have survived a `DROP TABLE` of the
        // product's tables; with none of them left, it describes nothing.
        if self.table_exists("_sqlx_migrations").await? {
            sqlx::query("DELETE FROM _sqlx_migrations")
                .execute(&self.pool)
                .await
                .map_err(query_err("reset the migration history of an empty store"))?;
        }
        migrator(self.backend)
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                location: self.location.clone(),
                source,
            })?;
        Ok(SchemaCheck::Recreated)
    }
}

#[cfg(test)]
mod tests {
    use super::TABLES;

    /// The check knows every table the migrations create (both dialects).
    #[test]
    fn the_checked_tables_are_the_migrations_tables() {
        for dialect in ["sqlite", "postgres"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dialect);
            let mut created: Vec<String> = Vec::new();
            for entry in std::fs::read_dir(dir).unwrap() {
                let sql = std::fs::read_to_string(entry.unwrap().path()).unwrap();
                created.extend(sql.split("CREATE TABLE ").skip(1).map(|rest| {
                    rest.split(|c: char| c.is_whitespace() || c == '(')
                        .next()
                        .unwrap()
                        .to_owned()
                }));
            }
            created.sort();
            let mut known: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
            known.sort();
            assert_eq!(created, known, "{dialect}");
        }
    }
}

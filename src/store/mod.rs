//! The Writer org store: users, teams, memberships, sync runs, the audit log,
//! sync state and the sync lock, on SQLite or PostgreSQL at a [`StoreUrl`]
//! (`url.rs`; the config layer parses `store.url` with it).
//!
//! Files: `mod.rs` (connect, migrations, errors), `state.rs` (the state the
//! planner reads), `tx.rs` (every write, with its audit row), `runs.rs` (run
//! records, the audit log read back, sync state), `control.rs` (the pause of
//! SPEC §8 and its events), `audit.rs` (`writer-sync audit`), `lock.rs` (one
//! sync at a time), `schema.rs` (an emptied store migrated again under the
//! lock), `space.rs` (room for an apply on SQLite), `dump.rs` (`store dump` /
//! `store load`), `url.rs` (`store.url`).
//!
//! Invariant: all SQL of the product lives in this module,
//! always parameterized, portable between the two backends through sqlx's
//! Any driver. The only SQL assembled at run time is the placeholder lists
//! of multi-row writes (`placeholders`), never values. Writes happen only
//! inside a [`StoreTx`], so every change and its audit row commit or roll
//! back together. Migrations run on connect.

pub mod audit;
mod control;
mod cursor;
pub mod dump;
mod lock;
mod runs;
mod schema;
pub mod space;
mod state;
mod tx;
mod url;

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, SqlSafeStr};

pub use self::control::{ControlEvent, Pause, PauseOutcome};
pub use self::cursor::EventCursor;
pub use self::lock::{LockCheck, SyncLock};
pub use self::runs::{AuditRecord, RunRecord};
pub use self::tx::{AuditRow, MAX_BIND_PARAMS, NewUser, StoreTx};
pub use self::url::StoreUrl;

/// A store error. Messages never contain the database password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or opened.
    #[error("cannot open the store at {location}")]
    Connect {
        location: String,
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed; the store is left at the previous version.
    #[error("cannot migrate the store at {location}")]
    Migrate {
        location: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed (the database went away, a constraint was violated…).
    #[error("store query failed ({what})")]
    Query {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A row holds a value this version cannot read (e.g. an unknown role).
    #[error("store holds an invalid value: {0}")]
    Corrupt(String),
    /// Another process holds the sync lock.
    #[error("another writer-sync run holds the sync lock on this store ({holder})")]
    Locked { holder: String },
    /// The SQLite database's file system cannot hold the planned apply.
    #[error(
        "not enough disk space for this apply: {free} bytes free on the database's file system, \
         the {changes} changes need about {needed} bytes; free space (or move store.url) and run again"
    )]
    NoSpace {
        free: u64,
        needed: u64,
        changes: usize,
    },
    /// The free space of the database's file system cannot be read.
    #[error("cannot read the free space of {}", path.display())]
    FreeSpace {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Some of the store's tables are gone while others remain.
    #[error(
        "the store at {location} lost tables ({missing}) while others remain: restore it from a \
         backup, or empty it completely (every table) and let the next run create it again"
    )]
    SchemaDamaged { location: String, missing: String },
    /// The SQLite lock file beside the database cannot be opened or locked.
    #[error("cannot use the sync lock file {}", path.display())]
    LockFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The sync lock lease was lost while a run held it (SQLite only).
    #[error("the sync lock lease was lost during the run (the store was unreachable for too long)")]
    LockLost,
}

impl StoreError {
    /// Whether retrying later may succeed (the database was unreachable or
    /// busy) rather than the data or schema being wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect { .. }
            | StoreError::Locked { .. }
            | StoreError::LockLost
            | StoreError::NoSpace { .. } => true,
            StoreError::Query { source, .. } => matches!(
                source,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::WorkerCrashed
            ),
            StoreError::Migrate { .. }
            | StoreError::Corrupt(_)
            | StoreError::LockFile { .. }
            | StoreError::SchemaDamaged { .. }
            | StoreError::FreeSpace { .. } => false,
        }
    }
}

fn query_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the store (cheap to clone).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    location: String,
    /// The database file (SQLite only).
    sqlite_path: Option<std::path::PathBuf>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("location", &self.location)
            .finish()
    }
}

/// Opens (creating, never truncating) a lock file beside an SQLite
/// database: the sync lock's `<db>.lock`, the migrations' `<db>.migrate.lock`.
fn open_lock_file(path: std::path::PathBuf) -> Result<std::fs::File, StoreError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| StoreError::LockFile { path, source })
}

/// Takes a blocking `flock` on `<db>.migrate.lock` beside an SQLite
/// database, held until the returned file is dropped: two processes opening
/// a fresh file at once (a daemon and `history`, a test and its daemon)
/// would otherwise both create its tables, and one fails with "table users
/// already exists" (sqlx's SQLite migrator takes no lock; its PostgreSQL
/// one takes an advisory lock of its own). `None` without a file.
async fn migration_lock(
    sqlite_path: Option<&std::path::Path>,
) -> Result<Option<std::fs::File>, StoreError> {
    let Some(db) = sqlite_path else {
        return Ok(None);
    };
    let mut name = db.as_os_str().to_owned();
    name.push(".migrate.lock");
    let path = std::path::PathBuf::from(name);
    let file = open_lock_file(path.clone())?;
    // Held only while migrations run (milliseconds); the wait is a
    // blocking call, so it runs off the async threads.
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| StoreError::LockFile {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map(Some)
        .map_err(|source| StoreError::LockFile { path, source })
}

fn migrator(backend: Backend) -> Migrator {
    // (version, name, SQLite, PostgreSQL): one list, so both dialects always
    // carry the same migrations.
    let migrations: [(i64, &str, &str, &str); 3] = [
        (
            1,
            "init",
            include_str!("../../migrations/sqlite/0001_init.sql"),
            include_str!("../../migrations/postgres/0001_init.sql"),
        ),
        (
            2,
            "missing_since",
            include_str!("../../migrations/sqlite/0002_missing_since.sql"),
            include_str!("../../migrations/postgres/0002_missing_since.sql"),
        ),
        (
            4,
            "event_cursor",
            include_str!("../../migrations/sqlite/0004_event_cursor.sql"),
            include_str!("../../migrations/postgres/0004_event_cursor.sql"),
        ),
    ];
    Migrator::with_migrations(
        migrations
            .into_iter()
            .map(|(version, name, sqlite, postgres)| {
                let sql = match backend {
                    Backend::Sqlite => sqlite,
                    Backend::Postgres => postgres,
                };
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Current time as Unix epoch milliseconds (the store's timestamp unit).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    /// Opens (creating an SQLite file if missing) and migrates the store.
    pub async fn connect(url: &StoreUrl) -> Result<Store, StoreError> {
        match Store::open(url, false).await? {
            Some(store) => Ok(store),
            None => Err(StoreError::Corrupt(
                "an SQLite store opened for writing was not created".into(),
            )),
        }
    }

    /// Opens the store for `check` without writing anything: no migration
    /// runs, and an SQLite file is opened read-only and never created
    /// (`None`: it does not exist yet). [`Store::pending_migrations`] says
    /// what the next run would migrate.
    pub async fn inspect(url: &StoreUrl) -> Result<Option<Store>, StoreError> {
        Store::open(url, true).await
    }

    async fn open(url: &StoreUrl, inspect: bool) -> Result<Option<Store>, StoreError> {
        sqlx::any::install_default_drivers();
        let location = url.redacted();
        let sqlite_path = match url {
            StoreUrl::Sqlite(path) => Some(path.clone()),
            StoreUrl::Postgres(_) => None,
        };
        let (backend, conn_url) = match url {
            StoreUrl::Sqlite(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
                    && !parent.exists()
                {
                    return Err(StoreError::Connect {
                        location,
                        source: sqlx::Error::Configuration(
                            format!("directory {} does not exist", parent.display()).into(),
                        ),
                    });
                }
                if inspect && !path.exists() {
                    return Ok(None);
                }
                let url = sqlite_url(path);
                let url = if inspect {
                    url.replace("?mode=rwc", "?mode=ro")
                } else {
                    url
                };
                (Backend::Sqlite, url)
            }
            StoreUrl::Postgres(secret) => (Backend::Postgres, secret.expose().to_owned()),
        };
        let options: AnyConnectOptions =
            conn_url.parse().map_err(|source| StoreError::Connect {
                location: location.clone(),
                source,
            })?;
        let pool_options = AnyPoolOptions::new()
            .max_connections(match backend {
                // One writer at a time is all SQLite can do; a few readers
                // beside it serve the health endpoint and `history`.
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .acquire_timeout(Duration::from_secs(30));
        let pool_options = if backend == Backend::Sqlite && inspect {
            // Read-only: only the wait for a writer's lock.
            pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::query("PRAGMA busy_timeout = 10000")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
        } else if backend == Backend::Sqlite {
            pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; the pragmas are
                    // per connection except journal_mode, which sticks to the file.
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 10000")
                        .execute(&mut *conn)
                        .await?;
                    // FULL: in WAL mode every commit syncs the WAL before it
                    // returns, so a run reported `ok` survives power loss
                    // (NORMAL syncs only at checkpoints and may lose the
                    // last commits). Cost: docs/BENCHMARKS.md.
                    sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
        } else {
            pool_options
        };
        let pool =
            pool_options
                .connect_with(options)
                .await
                .map_err(|source| StoreError::Connect {
                    location: location.clone(),
                    source,
                })?;
        if !inspect {
            let guard = migration_lock(sqlite_path.as_deref()).await?;
            migrator(backend)
                .run(&pool)
                .await
                .map_err(|source| StoreError::Migrate {
                    location: location.clone(),
                    source,
                })?;
            drop(guard);
        }
        Ok(Some(Store {
            pool,
            backend,
            location,
            sqlite_path,
        }))
    }

    /// The versions of the migrations this store has not run yet (all of
    /// them for an empty database), without running any.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let applied: Vec<i64> =
            match sqlx::query("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
            {
                Ok(rows) => rows
                    .iter()
                    .filter_map(|r| sqlx::Row::try_get::<i64, _>(r, 0).ok())
                    .collect(),
                // No history table: nothing ran yet.
                Err(sqlx::Error::Database(_)) => Vec::new(),
                Err(e) => return Err(query_err("read the migration history")(e)),
            };
        Ok(migrator(self.backend)
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the store is, safe to log.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Waits for the SQLite migration lock of this store (see
    /// [`migration_lock`]); `None` for PostgreSQL.
    pub(super) async fn migration_lock(&self) -> Result<Option<std::fs::File>, StoreError> {
        migration_lock(self.sqlite_path.as_deref()).await
    }

    /// `<db>.lock` beside an SQLite database: the file the sync lock's
    /// `flock` is taken on.
    pub fn sqlite_lock_path(&self) -> Option<std::path::PathBuf> {
        self.sqlite_path.as_ref().map(|p| {
            let mut name = p.as_os_str().to_owned();
            name.push(".lock");
            std::path::PathBuf::from(name)
        })
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Checks the store answers (for `check` and `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(query_err("ping"))
    }
}

fn sqlite_url(path: &Path) -> String {
    // sqlx parses the path part of the URL; percent-encode what would end it.
    let raw = path.to_string_lossy();
    let encoded: String = raw
        .chars()
        .map(|c| match c {
            '%' => "%25".to_owned(),
            '?' => "%3F".to_owned(),
            '#' => "%23".to_owned(),
            ' ' => "%20".to_owned(),
            c => c.to_string(),
        })
        .collect();
    format!("sqlite://{encoded}?mode=rwc")
}

/// The case-insensitive identity of an email.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pooled SQLite connection commits durably: `synchronous` reads
    /// back FULL (2) on each of them, not only on the first one opened.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_sqlite_connection_syncs_each_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&StoreUrl::Sqlite(dir.path().join("w.db")))
            .await
            .unwrap();
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(store.pool.acquire().await.unwrap());
        }
        for conn in &mut held {
            let (sync, journal): (i64, String) = (
                sqlx::query_scalar("PRAGMA synchronous")
                    .fetch_one(&mut **conn)
                    .await
                    .unwrap(),
                sqlx::query_scalar("PRAGMA journal_mode")
                    .fetch_one(&mut **conn)
                    .await
                    .unwrap(),
            );
            assert_eq!((sync, journal.as_str()), (2, "wal"));
        }
        drop(held);
        store.close().await;
    }
}

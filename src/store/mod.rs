//! The Writer org store: users, teams, memberships, sync runs, the audit log,
//! sync state and the sync lock, on SQLite or PostgreSQL at a [`StoreUrl`]
//! (`url.rs`; the config layer parses `store.url` with it).
//!
//! Invariant: all SQL of the product lives in this module (and `dump.rs`),
//! always parameterized, portable between the two backends through sqlx's
//! Any driver. The only SQL assembled at run time is the placeholder lists
//! of multi-row writes (`placeholders`), never values. Writes happen only
//! inside a [`StoreTx`], so every change and its audit row commit or roll
//! back together. Migrations run on connect.

pub mod dump;
mod url;

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Row, SqlSafeStr};

use crate::model::{Role, StoreMembership, StoreState, StoreTeam, StoreUser, UserAttrs};

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
    /// The sync lock lease was lost while a run held it (SQLite only).
    #[error("the sync lock lease was lost during the run (the store was unreachable for too long)")]
    LockLost,
}

impl StoreError {
    /// Whether retrying later may succeed (the database was unreachable or
    /// busy) rather than the data or schema being wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect { .. } | StoreError::Locked { .. } | StoreError::LockLost => true,
            StoreError::Query { source, .. } => matches!(
                source,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::WorkerCrashed
            ),
            StoreError::Migrate { .. } | StoreError::Corrupt(_) => false,
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
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("location", &self.location)
            .finish()
    }
}

fn migrator(backend: Backend) -> Migrator {
    let (init, name) = match backend {
        Backend::Sqlite => (
            include_str!("../../migrations/sqlite/0001_init.sql"),
            "init",
        ),
        Backend::Postgres => (
            include_str!("../../migrations/postgres/0001_init.sql"),
            "init",
        ),
    };
    Migrator::with_migrations(vec![Migration::new(
        1,
        Cow::Borrowed(name),
        MigrationType::Simple,
        init.into_sql_str(),
        false,
    )])
}

/// Current time as Unix epoch milliseconds (the store's timestamp unit).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    /// Opens (creating an SQLite file if missing) and migrates the store.
    pub async fn connect(url: &StoreUrl) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let location = url.redacted();
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
                (Backend::Sqlite, sqlite_url(path))
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
        let pool_options = if backend == Backend::Sqlite {
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
                    sqlx::query("PRAGMA synchronous = NORMAL")
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
        migrator(backend)
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                location: location.clone(),
                source,
            })?;
        Ok(Store {
            pool,
            backend,
            location,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the store is, safe to log.
    pub fn location(&self) -> &str {
        &self.location
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

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<StoreTx, StoreError> {
        let tx = self.pool.begin().await.map_err(query_err("begin"))?;
        Ok(StoreTx {
            tx,
            backend: self.backend,
        })
    }

    /// Records the start of a sync run and returns its id.
    pub async fn start_run(&self, trigger: &str, holder: &str) -> Result<i64, StoreError> {
        sqlx::query(
            "INSERT INTO sync_runs (started_at, run_trigger, status, holder) VALUES ($1, $2, 'running', $3) RETURNING id",
        )
        .bind(now_ms())
        .bind(trigger)
        .bind(holder)
        .fetch_one(&self.pool)
        .await
        .and_then(|row| row.try_get::<i64, _>(0))
        .map_err(query_err("record run start"))
    }

    /// Marks runs still `running` as failed: called by the lock holder, so
    /// any such run belongs to a process that died mid-run. Their end time
    /// stays unknown (NULL). Returns how many were closed.
    pub async fn close_interrupted_runs(&self) -> Result<u64, StoreError> {
        sqlx::query(
            "UPDATE sync_runs SET status = 'failed', \
             error = 'interrupted: the process ended before the run finished (the next run converges)' \
             WHERE status = 'running'",
        )
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(query_err("close interrupted runs"))
    }

    /// Records the outcome of a sync run.
    pub async fn finish_run(
        &self,
        run_id: i64,
        status: &str,
        counts_json: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sync_runs SET finished_at = $1, status = $2, counts = $3, error = $4 WHERE id = $5",
        )
        .bind(now_ms())
        .bind(status)
        .bind(counts_json)
        .bind(error)
        .bind(run_id)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(query_err("record run outcome"))
    }

    /// The most recent runs, newest first.
    pub async fn recent_runs(&self, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, started_at, finished_at, run_trigger, status, counts, error, holder FROM sync_runs ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read runs"))?;
        rows.iter()
            .map(|r| -> Result<RunRecord, sqlx::Error> {
                let counts: Option<String> = r.try_get("counts")?;
                Ok(RunRecord {
                    id: r.try_get("id")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    trigger: r.try_get("run_trigger")?,
                    status: r.try_get("status")?,
                    counts: counts.and_then(|c| serde_json::from_str(&c).ok()),
                    error: r.try_get("error")?,
                    holder: r.try_get("holder")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err("decode runs"))
    }

    /// Audit rows of one run, in order (for tests and investigations).
    pub async fn audit_of_run(&self, run_id: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, run_id, at, action, target, before, after FROM audit_log WHERE run_id = $1 ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read audit log"))?;
        decode_audit(&rows)
    }

    /// The whole audit log in order.
    pub async fn audit_log(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, run_id, at, action, target, before, after FROM audit_log ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read audit log"))?;
        decode_audit(&rows)
    }

    /// Reads a sync-state value.
    pub async fn get_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query("SELECT value FROM sync_state WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("read sync state"))?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()
            .map_err(query_err("decode sync state"))
    }

    /// Writes a sync-state value.
    pub async fn set_state(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sync_state (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(value)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(query_err("write sync state"))
    }

    /// Takes the store-wide sync lock without waiting: an advisory lock on
    /// PostgreSQL (held by a dedicated connection, released if the process
    /// dies), a renewed lease row on SQLite (taken over once it expires).
    pub async fn try_lock(&self, holder: &str) -> Result<SyncLock, StoreError> {
        match self.backend {
            Backend::Postgres => {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(query_err("acquire lock connection"))?;
                let got: bool =
                    sqlx::query("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
                        .bind(PG_LOCK_CLASS)
                        .fetch_one(&mut *conn)
                        .await
                        .and_then(|r| r.try_get::<bool, _>(0))
                        .map_err(query_err("take advisory lock"))?;
                if !got {
                    return Err(StoreError::Locked {
                        holder: self.describe_pg_holder().await,
                    });
                }
                // Never hand this connection back to the pool: it may hold
                // the session lock (after `release` it is simply closed).
                conn.close_on_drop();
                // The session can end under us (server restart, failover,
                // pg_terminate_backend): that frees the lock for another
                // instance, so this run must notice and stop applying.
                let conn = Arc::new(tokio::sync::Mutex::new(Some(conn)));
                let lost = Arc::new(AtomicBool::new(false));
                let watch = tokio::spawn(watch_pg_session(Arc::clone(&conn), Arc::clone(&lost)));
                Ok(SyncLock {
                    inner: LockInner::Postgres { conn, lost, watch },
                })
            }
            Backend::Sqlite => {
                let now = now_ms();
                let expires = now + LEASE_MS;
                let taken = sqlx::query(
                    "INSERT INTO sync_lock (name, holder, acquired_at, expires_at) VALUES ('sync', $1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at, \
                     expires_at = excluded.expires_at WHERE sync_lock.expires_at < $2 OR sync_lock.holder = $1",
                )
                .bind(holder)
                .bind(now)
                .bind(expires)
                .execute(&self.pool)
                .await
                .map_err(query_err("take lock lease"))?
                .rows_affected();
                if taken == 0 {
                    let current =
                        sqlx::query("SELECT holder, expires_at FROM sync_lock WHERE name = 'sync'")
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(query_err("read lock lease"))?;
                    let holder = match current {
                        Some(r) => format!(
                            "held by {} for {} more seconds unless renewed",
                            r.try_get::<String, _>(0).unwrap_or_default(),
                            (r.try_get::<i64, _>(1).unwrap_or(now) - now).max(0) / 1000
                        ),
                        None => "held by another process".into(),
                    };
                    return Err(StoreError::Locked { holder });
                }
                let lost = Arc::new(AtomicBool::new(false));
                let renew = tokio::spawn(renew_lease(
                    self.pool.clone(),
                    holder.to_owned(),
                    Arc::clone(&lost),
                ));
                Ok(SyncLock {
                    inner: LockInner::Sqlite {
                        pool: self.pool.clone(),
                        holder: holder.to_owned(),
                        lost,
                        renew,
                    },
                })
            }
        }
    }

    async fn describe_pg_holder(&self) -> String {
        let row = sqlx::query(
            "SELECT COALESCE(a.client_addr::text, 'local') || ' pid ' || l.pid::text FROM pg_locks l \
             LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
             AND l.classid::bigint = $1 AND l.objid::bigint = (hashtext(current_schema())::bigint & 4294967295) LIMIT 1",
        )
        .bind(i64::from(PG_LOCK_CLASS))
        .fetch_optional(&self.pool)
        .await;
        match row {
            Ok(Some(r)) => format!(
                "advisory lock held by backend {}",
                r.try_get::<String, _>(0).unwrap_or_default()
            ),
            _ => "advisory lock held by another session".into(),
        }
    }
}

/// First key of the PostgreSQL advisory lock ("WS" in ASCII); the second is
/// a hash of the store's schema, so stores in different schemas of one
/// database never block each other, while every instance on one store
/// (same database and schema) contends for the same lock.
const PG_LOCK_CLASS: i32 = 0x5753;
/// Lease length of the SQLite lock row; renewed every third of it.
const LEASE_MS: i64 = 30_000;

/// How often the PostgreSQL lock session is checked to be alive.
const PG_WATCH_MS: u64 = 2_000;

async fn watch_pg_session(
    conn: Arc<tokio::sync::Mutex<Option<PoolConnection<Any>>>>,
    lost: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(Duration::from_millis(PG_WATCH_MS)).await;
        let mut guard = conn.lock().await;
        let Some(c) = guard.as_mut() else { return };
        if let Err(e) = sqlx::query("SELECT 1").execute(&mut **c).await {
            tracing::error!(error = %e, "the session holding the sync lock ended; stopping the run");
            lost.store(true, Ordering::SeqCst);
            return;
        }
    }
}

async fn renew_lease(pool: AnyPool, holder: String, lost: Arc<AtomicBool>) {
    let mut failures = 0;
    loop {
        tokio::time::sleep(Duration::from_millis((LEASE_MS / 3) as u64)).await;
        let now = now_ms();
        let res =
            sqlx::query("UPDATE sync_lock SET expires_at = $1 WHERE name = 'sync' AND holder = $2")
                .bind(now + LEASE_MS)
                .bind(&holder)
                .execute(&pool)
                .await;
        match res {
            Ok(r) if r.rows_affected() == 1 => failures = 0,
            Ok(_) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "could not renew the sync lock lease");
                if failures >= 2 {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}

/// The held sync lock. Call [`SyncLock::release`]; dropping it without
/// releasing closes the PostgreSQL session (which frees the lock) or lets the
/// SQLite lease expire.
pub struct SyncLock {
    inner: LockInner,
}

enum LockInner {
    Postgres {
        conn: Arc<tokio::sync::Mutex<Option<PoolConnection<Any>>>>,
        lost: Arc<AtomicBool>,
        watch: tokio::task::JoinHandle<()>,
    },
    Sqlite {
        pool: AnyPool,
        holder: String,
        lost: Arc<AtomicBool>,
        renew: tokio::task::JoinHandle<()>,
    },
}

/// A cheap, shareable view of whether a [`SyncLock`] is still held.
#[derive(Debug, Clone)]
pub struct LockCheck(Option<Arc<AtomicBool>>);

impl LockCheck {
    /// Fails when the lease was lost (another process may now hold the lock).
    pub fn check(&self) -> Result<(), StoreError> {
        match &self.0 {
            Some(lost) if lost.load(Ordering::SeqCst) => Err(StoreError::LockLost),
            _ => Ok(()),
        }
    }
}

impl SyncLock {
    /// A handle that tells whether the lock is still held: a PostgreSQL
    /// advisory lock is lost with its session (checked every 2 s), the
    /// SQLite lease when renewals fail.
    pub fn checker(&self) -> LockCheck {
        match &self.inner {
            LockInner::Sqlite { lost, .. } | LockInner::Postgres { lost, .. } => {
                LockCheck(Some(Arc::clone(lost)))
            }
        }
    }

    pub async fn release(mut self) -> Result<(), StoreError> {
        match &mut self.inner {
            LockInner::Postgres { conn, watch, .. } => {
                watch.abort();
                if let Some(mut c) = conn.lock().await.take() {
                    sqlx::query("SELECT pg_advisory_unlock($1, hashtext(current_schema()))")
                        .bind(PG_LOCK_CLASS)
                        .execute(&mut *c)
                        .await
                        .map_err(query_err("release advisory lock"))?;
                }
                Ok(())
            }
            LockInner::Sqlite {
                pool,
                holder,
                renew,
                ..
            } => {
                renew.abort();
                sqlx::query("DELETE FROM sync_lock WHERE name = 'sync' AND holder = $1")
                    .bind(holder.as_str())
                    .execute(&*pool)
                    .await
                    .map(|_| ())
                    .map_err(query_err("release lock lease"))
            }
        }
    }
}

impl Drop for SyncLock {
    fn drop(&mut self) {
        match &mut self.inner {
            // The connection is marked close-on-drop, so it never goes back
            // to the pool still holding the session lock.
            LockInner::Postgres { watch, .. } => watch.abort(),
            LockInner::Sqlite { renew, .. } => renew.abort(),
        }
    }
}

fn decode_audit(rows: &[sqlx::any::AnyRow]) -> Result<Vec<AuditRecord>, StoreError> {
    rows.iter()
        .map(|r| -> Result<AuditRecord, sqlx::Error> {
            Ok(AuditRecord {
                id: r.try_get("id")?,
                run_id: r.try_get("run_id")?,
                at: r.try_get("at")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                before: r.try_get("before")?,
                after: r.try_get("after")?,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(query_err("decode audit log"))
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

/// One recorded sync run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub trigger: String,
    pub status: String,
    pub counts: Option<serde_json::Value>,
    pub error: Option<String>,
    pub holder: String,
}

/// One audit-log row.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub run_id: Option<i64>,
    pub at: i64,
    pub action: String,
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A write transaction. Every mutating method takes what the audit row needs;
/// nothing is visible to others until [`StoreTx::commit`].
pub struct StoreTx {
    tx: sqlx::Transaction<'static, Any>,
    backend: Backend,
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
        .bind(&attrs.email)
        .bind(email_key(&attrs.email))
        .bind(okta_id)
        .bind(&attrs.first_name)
        .bind(&attrs.last_name)
        .bind(&attrs.display_name)
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
        .bind(&attrs.email)
        .bind(email_key(&attrs.email))
        .bind(&attrs.first_name)
        .bind(&attrs.last_name)
        .bind(&attrs.display_name)
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
                    .bind(&user.attrs.email)
                    .bind(email_key(&user.attrs.email))
                    .bind(user.okta_id)
                    .bind(&user.attrs.first_name)
                    .bind(&user.attrs.last_name)
                    .bind(&user.attrs.display_name)
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

/// The case-insensitive identity of an email.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

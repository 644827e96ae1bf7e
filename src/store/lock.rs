//! One sync at a time per store: a PostgreSQL advisory lock held by a
//! dedicated session, or on SQLite an OS lock (`flock` on `<db>.lock`) and a
//! lease row; and the [`LockCheck`] apply consults between batches.
//!
//! SQLite: the OS lock dies with its process, so a killed run never blocks
//! the next one on the same host: when the OS lock is free, a lease left by
//! a holder on this host is taken over at once. The lease stays for what
//! the OS lock cannot see: a holder on another host sharing the file (a
//! network file system where `flock` may not reach) keeps it until it
//! expires (30 s without renewal).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Row};

use crate::store::{Backend, Store, StoreError, now_ms, open_lock_file, query_err};

impl Store {
    /// Takes the store-wide sync lock without waiting: an advisory lock on
    /// PostgreSQL (held by a dedicated connection, released if the process
    /// dies); on SQLite an OS lock on `<db>.lock` and a renewed lease row
    /// (taken over at once from a dead holder on this host, after it
    /// expires from one on another host). Holding the exclusive part, it
    /// recreates the tables of an emptied store (`schema.rs`).
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
                // Under the lock: an emptied database gets its tables back
                // (an error drops the connection, which frees the lock).
                self.restore_schema_if_missing().await?;
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
                // The OS lock first: held by a live process on this host,
                // the store is busy; free, any lease of this host is stale.
                let os_lock = self.take_os_lock()?;
                // Under the OS lock: an emptied database gets its tables
                // back before the lease row needs one.
                self.restore_schema_if_missing().await?;
                let now = now_ms();
                let expires = now + LEASE_MS;
                let this_host = holder
                    .rsplit_once(':')
                    .map_or(holder, |(host, _)| host)
                    .to_owned()
                    + ":";
                let taken = sqlx::query(
                    "INSERT INTO sync_lock (name, holder, acquired_at, expires_at) VALUES ('sync', $1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at, \
                     expires_at = excluded.expires_at WHERE sync_lock.expires_at < $2 OR sync_lock.holder = $1 \
                     OR substr(sync_lock.holder, 1, length($4)) = $4",
                )
                .bind(holder)
                .bind(now)
                .bind(expires)
                .bind(this_host)
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
                        _os_lock: os_lock,
                    },
                })
            }
        }
    }

    /// Takes `flock(LOCK_EX | LOCK_NB)` on `<db>.lock` (created if
    /// missing), held until the returned file is closed; the kernel frees it
    /// when the process dies, however it dies.
    fn take_os_lock(&self) -> Result<std::fs::File, StoreError> {
        let path = self
            .sqlite_lock_path()
            .ok_or_else(|| StoreError::Corrupt("an SQLite store without a file path".into()))?;
        let file = open_lock_file(path.clone())?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                holder: format!(
                    "a live process on this host holds the OS lock on {}",
                    path.display()
                ),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::LockFile { path, source }),
        }
    }

    pub(super) async fn describe_pg_holder(&self) -> String {
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
/// releasing closes the PostgreSQL session (which frees the lock) or frees
/// the SQLite OS lock and leaves the lease (taken over at once on this
/// host, expiring on its own for others).
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
        /// The `flock` on `<db>.lock`, released when this is dropped.
        _os_lock: std::fs::File,
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

//! The run record (`sync_runs`), the audit log read back, and the key/value
//! sync state.

use serde::Serialize;
use sqlx::Row;

use crate::store::{Store, StoreError, now_ms, query_err};

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

impl Store {
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
            .map(decode_run)
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err("decode runs"))
    }

    /// One run by id (`None` when there is no such run).
    pub async fn run_record(&self, run_id: i64) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, started_at, finished_at, run_trigger, status, counts, error, holder FROM sync_runs WHERE id = $1",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("read run"))?;
        row.map(|r| decode_run(&r))
            .transpose()
            .map_err(query_err("decode run"))
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
}

fn decode_run(r: &sqlx::any::AnyRow) -> Result<RunRecord, sqlx::Error> {
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

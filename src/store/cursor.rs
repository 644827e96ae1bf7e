//! The System Log cursor of the incremental sync (SPEC §7): one row per
//! event source in `event_cursor`.
//!
//! Invariant: an incremental run moves the cursor in the same transaction
//! as the last of the changes its events led to ([`StoreTx::set_event_cursor`]),
//! so a crash never skips an event's effect; applying one twice plans
//! nothing, since events are read again as state. The baseline is the
//! reconcile layer's JSON; the store keeps it as text.

use sqlx::Row;

use crate::store::{Store, StoreError, StoreTx, now_ms, query_err};

/// Where the next poll starts and what plans over a part of Okta need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    /// Okta's `rel="next"` link after the last processed poll, verbatim;
    /// `None`: start at `since_ms`.
    pub next_url: Option<String>,
    /// The start of the last successful full reconcile's observe (epoch ms).
    pub since_ms: i64,
    /// `published` of the newest event processed (epoch ms).
    pub last_published_ms: Option<i64>,
    /// The uuids of the last processed poll's events (to drop repeats).
    pub seen: Vec<String>,
    /// What the last successful full reconcile saw (JSON, owned by
    /// `reconcile::incremental`).
    pub baseline: String,
    /// Set when a poll handed over to a full reconcile (the reason): polls
    /// wait for it, and it carries on from `next_url`, past the events that
    /// poll read (they happened before it began to read Okta).
    pub pending_full: Option<String>,
}

const SOURCE: &str = "system_log";

impl Store {
    /// The cursor, if a full reconcile ever set one.
    pub async fn event_cursor(&self) -> Result<Option<EventCursor>, StoreError> {
        let row = sqlx::query(
            "SELECT next_url, since_ms, last_published_ms, seen, baseline, pending_full FROM event_cursor WHERE name = $1",
        )
        .bind(SOURCE)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("read event cursor"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let decode = |e| query_err("decode event cursor")(e);
        let seen: String = row.try_get("seen").map_err(decode)?;
        Ok(Some(EventCursor {
            next_url: row.try_get("next_url").map_err(decode)?,
            since_ms: row.try_get("since_ms").map_err(decode)?,
            last_published_ms: row.try_get("last_published_ms").map_err(decode)?,
            seen: serde_json::from_str(&seen)
                .map_err(|e| StoreError::Corrupt(format!("event_cursor.seen: {e}")))?,
            baseline: row.try_get("baseline").map_err(decode)?,
            pending_full: row.try_get("pending_full").map_err(decode)?,
        }))
    }

    /// Writes the cursor on its own (a full reconcile resetting it, or a
    /// poll whose events changed nothing).
    pub async fn set_event_cursor(&self, cursor: &EventCursor) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.set_event_cursor(cursor).await?;
        tx.commit().await
    }

    /// Forgets the cursor: the next poll waits for a full reconcile.
    pub async fn clear_event_cursor(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM event_cursor WHERE name = $1")
            .bind(SOURCE)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(query_err("clear event cursor"))
    }
}

impl StoreTx {
    /// Writes the cursor inside this transaction.
    pub async fn set_event_cursor(&mut self, cursor: &EventCursor) -> Result<(), StoreError> {
        let seen = serde_json::to_string(&cursor.seen).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO event_cursor (name, next_url, since_ms, last_published_ms, seen, baseline, pending_full, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name) DO UPDATE SET next_url = excluded.next_url, since_ms = excluded.since_ms, \
             last_published_ms = excluded.last_published_ms, seen = excluded.seen, \
             baseline = excluded.baseline, pending_full = excluded.pending_full, updated_at = excluded.updated_at",
        )
        .bind(SOURCE)
        .bind(cursor.next_url.as_deref())
        .bind(cursor.since_ms)
        .bind(cursor.last_published_ms)
        .bind(seen)
        .bind(cursor.baseline.as_str())
        .bind(cursor.pending_full.as_deref())
        .bind(now_ms())
        .execute(&mut *self.tx)
        .await
        .map(|_| ())
        .map_err(query_err("write event cursor"))
    }
}

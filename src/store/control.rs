//! Operator controls kept in the store (SPEC §8): the pause every instance
//! sharing the store honours, and its pause/resume events.
//!
//! Invariant: the pause (the `sync_state` row `paused`) and its audit row
//! commit together, so the audit log holds every pause and resume that ever
//! took effect.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::model::MissingUpdate;
use crate::store::{Store, StoreError, StoreTx, now_ms, query_err};

/// The `sync_state` key of the pause.
const PAUSE_KEY: &str = "paused";

/// Who paused the store, when and why (the `paused` row, as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// The local user who ran `writer-sync pause`.
    pub by: String,
    /// The host it ran on.
    pub host: String,
    /// Epoch milliseconds.
    pub at: i64,
    /// `--reason`, or empty.
    #[serde(default)]
    pub reason: String,
}

impl Pause {
    /// A pause (or resume) by this process's local user on this host, now:
    /// `$USER`, else `$LOGNAME`, else `uid N`; the host from `uname(2)`.
    pub fn here(reason: &str) -> Pause {
        let by = ["USER", "LOGNAME"]
            .into_iter()
            .filter_map(|k| std::env::var(k).ok())
            .map(|v| v.trim().to_owned())
            .find(|v| !v.is_empty())
            .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()));
        let uname = rustix::system::uname();
        let host = uname.nodename().to_string_lossy().trim().to_owned();
        Pause {
            by,
            host: if host.is_empty() {
                "unknown-host".into()
            } else {
                host
            },
            at: now_ms(),
            reason: reason.to_owned(),
        }
    }

    /// `paused by alice@host since 2026-… UTC: reason`, for reports,
    /// `/readyz` and STATUS=.
    pub fn describe(&self) -> String {
        let since = chrono::DateTime::from_timestamp_millis(self.at)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "an unknown time".into());
        let mut text = format!("paused by {}@{} since {since}", self.by, self.host);
        if !self.reason.is_empty() {
            text.push_str(": ");
            text.push_str(&self.reason);
        }
        text
    }
}

/// What `pause` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseOutcome {
    /// The store was not paused; now it is.
    Paused,
    /// It was already paused: the record (reason, who, when) was replaced.
    Updated { previous: Pause },
}

/// One pause or resume, as the audit log holds it (for `history`).
#[derive(Debug, Clone, Serialize)]
pub struct ControlEvent {
    pub id: i64,
    pub at: i64,
    /// `pause` or `resume`.
    pub action: String,
    pub by: String,
    pub host: String,
    pub reason: String,
}

impl Store {
    /// The pause in force, if any. A row that does not decode (written by
    /// hand, or by a newer version) still pauses: failing open would apply
    /// while an operator asked for no changes.
    pub async fn pause_state(&self) -> Result<Option<Pause>, StoreError> {
        let Some(value) = self.get_state(PAUSE_KEY).await? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_str(&value).unwrap_or_else(|_| {
            Pause {
                by: "unknown".into(),
                host: "unknown".into(),
                at: 0,
                reason: format!("unreadable pause record: {value}"),
            }
        })))
    }

    /// Pauses the store (or replaces the reason of the pause in force), with
    /// its audit row, in one transaction.
    pub async fn pause(&self, pause: &Pause) -> Result<PauseOutcome, StoreError> {
        let value = serde_json::to_string(pause).unwrap_or_default();
        let mut tx = self.begin().await?;
        let previous = sqlx::query("SELECT value FROM sync_state WHERE key = $1")
            .bind(PAUSE_KEY)
            .fetch_optional(&mut *tx.tx)
            .await
            .map_err(query_err("read the pause"))?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()
            .map_err(query_err("decode the pause"))?;
        sqlx::query(
            "INSERT INTO sync_state (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(PAUSE_KEY)
        .bind(&value)
        .bind(now_ms())
        .execute(&mut *tx.tx)
        .await
        .map_err(query_err("write the pause"))?;
        tx.audit(None, "pause", "store", previous.as_deref(), Some(&value))
            .await?;
        tx.commit().await?;
        Ok(match previous {
            None => PauseOutcome::Paused,
            Some(text) => PauseOutcome::Updated {
                previous: serde_json::from_str(&text).unwrap_or(Pause {
                    by: "unknown".into(),
                    host: "unknown".into(),
                    at: 0,
                    reason: text,
                }),
            },
        })
    }

    /// Ends the pause, with its audit row (`after` says who resumed), in one
    /// transaction. Returns the pause that ended, or `None` (and writes
    /// nothing) when the store was not paused.
    pub async fn resume(&self, by: &Pause) -> Result<Option<Pause>, StoreError> {
        let mut tx = self.begin().await?;
        let previous = sqlx::query("SELECT value FROM sync_state WHERE key = $1")
            .bind(PAUSE_KEY)
            .fetch_optional(&mut *tx.tx)
            .await
            .map_err(query_err("read the pause"))?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()
            .map_err(query_err("decode the pause"))?;
        let Some(previous) = previous else {
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query("DELETE FROM sync_state WHERE key = $1")
            .bind(PAUSE_KEY)
            .execute(&mut *tx.tx)
            .await
            .map_err(query_err("end the pause"))?;
        let after = serde_json::to_string(by).unwrap_or_default();
        tx.audit(None, "resume", "store", Some(&previous), Some(&after))
            .await?;
        tx.commit().await?;
        Ok(Some(serde_json::from_str(&previous).unwrap_or(Pause {
            by: "unknown".into(),
            host: "unknown".into(),
            at: 0,
            reason: previous,
        })))
    }

    /// The most recent pauses and resumes, newest first.
    pub async fn control_events(&self, limit: u32) -> Result<Vec<ControlEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, action, after FROM audit_log \
             WHERE run_id IS NULL AND action IN ('pause', 'resume') ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read pause events"))?;
        rows.iter()
            .map(|r| -> Result<ControlEvent, sqlx::Error> {
                let after: Option<String> = r.try_get("after")?;
                let who: Option<Pause> =
                    after.as_deref().and_then(|a| serde_json::from_str(a).ok());
                let action: String = r.try_get("action")?;
                Ok(ControlEvent {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    by: who
                        .as_ref()
                        .map_or_else(|| "unknown".into(), |p| p.by.clone()),
                    host: who
                        .as_ref()
                        .map_or_else(|| "unknown".into(), |p| p.host.clone()),
                    reason: if action == "pause" {
                        who.map(|p| p.reason).unwrap_or_default()
                    } else {
                        String::new()
                    },
                    action,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err("decode pause events"))
    }
}

impl Store {
    /// The deactivation grace's records (SPEC §8): Okta id → since when its
    /// managed user has been out of scope (epoch ms).
    pub async fn missing_since(
        &self,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let rows = sqlx::query("SELECT okta_id, since FROM missing_since")
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("read missing_since"))?;
        rows.iter()
            .map(|r| Ok((r.try_get("okta_id")?, r.try_get("since")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_err("decode missing_since"))
    }

    /// Writes a plan's grace records in a transaction of their own (a plan
    /// with no changes to carry them).
    pub async fn update_missing(&self, update: &MissingUpdate) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.update_missing(update).await?;
        tx.commit().await
    }
}

impl StoreTx {
    /// Records the Okta ids newly out of scope and forgets the ones no
    /// longer waiting (in this transaction).
    pub async fn update_missing(&mut self, update: &MissingUpdate) -> Result<(), StoreError> {
        for okta_id in &update.clear {
            sqlx::query("DELETE FROM missing_since WHERE okta_id = $1")
                .bind(okta_id)
                .execute(&mut *self.tx)
                .await
                .map_err(query_err("clear missing_since"))?;
        }
        for (okta_id, since) in &update.start {
            sqlx::query(
                "INSERT INTO missing_since (okta_id, since) VALUES ($1, $2) \
                 ON CONFLICT (okta_id) DO NOTHING",
            )
            .bind(okta_id)
            .bind(since)
            .execute(&mut *self.tx)
            .await
            .map_err(query_err("record missing_since"))?;
        }
        Ok(())
    }
}

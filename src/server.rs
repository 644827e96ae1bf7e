//! The HTTP endpoints on `server.listen`: `/healthz`, `/readyz`, `/metrics`,
//! and the [`Health`] they read.
//!
//! Invariant: read-only; handlers never take the sync lock or touch Okta.
//! The daemon writes [`Health`]; the server only reads it.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;
use crate::reconcile::report::FailureKind;
use crate::store::Store;

/// What the endpoints report on: the process metrics, the store to ping,
/// and how long failing runs may go on before the daemon is unready.
pub struct Health {
    pub metrics: Arc<Metrics>,
    /// `None` until the store is connected and migrated.
    pub store: RwLock<Option<Store>>,
    /// Runs failing for longer than this since the last success (or start)
    /// make `/readyz` fail: three schedule periods.
    pub unready_after: RwLock<Duration>,
}

impl Health {
    pub fn new(metrics: Arc<Metrics>, unready_after: Duration) -> Health {
        Health {
            metrics,
            store: RwLock::new(None),
            unready_after: RwLock::new(unready_after),
        }
    }

    pub fn set_store(&self, store: Store) {
        *self
            .store
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(store);
    }

    pub fn set_unready_after(&self, after: Duration) {
        *self
            .unready_after
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = after;
    }
}

/// Binds `addr` and serves in the background until the process exits.
pub async fn start(
    addr: SocketAddr,
    health: Arc<Health>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health);
    tracing::info!(listen = %bound, "serving /healthz /readyz /metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    }))
}

/// The process is alive and its loop runs.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: the store answers, the last run did not fail with trouble only a
/// person can fix (a credential or configuration problem), and runs have not
/// been failing for longer than three schedule periods since the last
/// success (or since start).
async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let store = health
        .store
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let Some(store) = store else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: store not connected yet\n".to_owned(),
        );
    };
    if let Err(e) = store.ping().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: store unreachable: {}\n",
                crate::reconcile::error_chain(&e)
            ),
        );
    }
    if let Some(kind @ (FailureKind::Credential | FailureKind::Configuration)) =
        health.metrics.last_failure()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the last run failed with a {} problem, which needs a fix before a \
                 retry can succeed (see the sync finished log event)\n",
                kind.as_str()
            ),
        );
    }
    let (last_status, started) = health.metrics.last_status();
    let limit = *health
        .unready_after
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let since = health.metrics.last_success().unwrap_or(started);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    if last_status == Some("failed") && now - since > limit.as_secs_f64() {
        let kind = health
            .metrics
            .last_failure()
            .map_or("unknown", FailureKind::as_str);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: runs have failed ({kind}) for {:.0}s (more than {}s, three schedule \
                 periods)\n",
                now - since,
                limit.as_secs()
            ),
        );
    }
    // Paused (SPEC §8) is a deliberate state, not trouble: ready, and why.
    match paused(&health, &store).await {
        Some(pause) => (
            StatusCode::OK,
            format!(
                "ready: {}; runs plan and apply nothing until `writer-sync resume`\n",
                crate::telemetry::escape_message(&pause.describe())
            ),
        ),
        None => (StatusCode::OK, "ready\n".to_owned()),
    }
}

/// The pause in force, read from the store (at most 2 s; an answer that
/// does not come in time keeps the gauge as it was). Updates the
/// `writer_sync_paused` gauge.
async fn paused(health: &Health, store: &Store) -> Option<crate::store::Pause> {
    match tokio::time::timeout(Duration::from_secs(2), store.pause_state()).await {
        Ok(Ok(pause)) => {
            health.metrics.set_paused(pause.is_some());
            pause
        }
        _ => None,
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let store = health
        .store
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(store) = store {
        paused(&health, &store).await;
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        health.metrics.render(),
    )
}

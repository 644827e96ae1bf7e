//! The HTTP endpoints on `server.listen`: `/healthz`, `/readyz`, `/metrics`.
//!
//! Invariant: read-only; handlers never take the sync lock or touch Okta.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::daemon::Shared;

/// Binds `addr` and serves in the background until the process exits.
pub async fn start(
    addr: SocketAddr,
    shared: Arc<Shared>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared);
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

/// Ready: the store answers, and runs have not been failing for longer than
/// three schedule periods since the last success (or since start).
async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let store = shared
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
    let (last_status, started) = shared.metrics.last_status();
    let limit = *shared
        .unready_after
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let since = shared.metrics.last_success().unwrap_or(started);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    if last_status == Some("failed") && now - since > limit.as_secs_f64() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: runs have failed for {:.0}s (more than {}s, three schedule periods)\n",
                now - since,
                limit.as_secs()
            ),
        );
    }
    (StatusCode::OK, "ready\n".to_owned())
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

//! The HTTP endpoints on `server.listen`: `/healthz`, `/readyz`, `/metrics`,
//! and the [`Health`] they read.
//!
//! Invariant: read-only; handlers never take the sync lock or touch Okta.
//! The daemon writes [`Health`]; the server only reads it. Clients cannot
//! take what the sync needs: at most [`MAX_CONNECTIONS`] connections (fewer
//! under a low open-file limit) are open at once, the oldest one closed to
//! admit a new one; a request's headers must arrive within
//! [`HEADER_READ_TIMEOUT`], which also bounds an idle keep-alive connection.

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

/// Most connections the endpoints keep open at once.
pub const MAX_CONNECTIONS: usize = 256;

/// Time a client has to send a request's headers; a kept-alive connection
/// waiting for its next request is closed after the same time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection cap for an open-file limit: [`MAX_CONNECTIONS`], or a
/// quarter of the limit when that is lower, so three quarters of the
/// descriptors always stay with the sync (store, Okta, logs).
pub fn connection_cap(open_files_limit: Option<u64>) -> usize {
    open_files_limit
        .map_or(MAX_CONNECTIONS, |n| {
            usize::try_from(n / 4)
                .unwrap_or(usize::MAX)
                .min(MAX_CONNECTIONS)
        })
        .max(1)
}

fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The open connections, oldest first, and one permit per connection
/// (held until its socket is closed); a connection past the cap closes the
/// oldest and waits for its permit, so idle clients cannot keep a new one
/// (`/healthz`) out and never hold more than `cap` descriptors.
struct Slots {
    cap: usize,
    permits: Arc<tokio::sync::Semaphore>,
    open: std::sync::Mutex<std::collections::VecDeque<(u64, Arc<tokio::sync::Notify>)>>,
}

impl Slots {
    fn new(cap: usize) -> Slots {
        Slots {
            cap,
            permits: Arc::new(tokio::sync::Semaphore::new(cap)),
            open: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// A permit for one more connection: at once below the cap, else after
    /// the oldest connection was told to close and has closed.
    async fn permit(&self) -> tokio::sync::OwnedSemaphorePermit {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return permit;
        }
        self.close_oldest();
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    fn close_oldest(&self) {
        let oldest = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front();
        if let Some((_, close)) = oldest {
            close.notify_one();
        }
    }

    fn admit(&self, id: u64) -> Arc<tokio::sync::Notify> {
        let close = Arc::new(tokio::sync::Notify::new());
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back((id, Arc::clone(&close)));
        close
    }

    fn leave(&self, id: u64) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(at) = open.iter().position(|(i, _)| *i == id) {
            open.remove(at);
        }
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
    let slots = Arc::new(Slots::new(connection_cap(open_files_limit())));
    tracing::info!(listen = %bound, max_connections = slots.cap, "serving /healthz /readyz /metrics");
    Ok(tokio::spawn(serve(listener, app, slots)))
}

async fn serve(listener: tokio::net::TcpListener, app: Router, slots: Arc<Slots>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let mut next_id = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or a connection reset
                // before it was accepted: pause instead of spinning.
                tracing::warn!(error = %e, "could not accept a connection on the metrics port");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = slots.permit().await;
        next_id += 1;
        let id = next_id;
        let close = slots.admit(id);
        let conn = http.serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(app.clone()),
        );
        let slots = Arc::clone(&slots);
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {}
                () = close.notified() => {}
            }
            // The socket is closed (the connection dropped): its permit
            // goes back.
            slots.leave(id);
            drop(permit);
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_three_quarters_of_the_descriptors() {
        assert_eq!(connection_cap(None), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(65_536)), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(1_024)), 256);
        assert_eq!(connection_cap(Some(256)), 64);
        assert_eq!(connection_cap(Some(2)), 1);
    }

    #[test]
    fn a_connection_past_the_cap_closes_the_oldest_and_waits_for_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let slots = Arc::new(Slots::new(2));
            let (p1, p2) = (slots.permit().await, slots.permit().await);
            let first = slots.admit(1);
            let _second = slots.admit(2);
            // The third waits until the oldest has closed.
            let waiting = tokio::spawn({
                let slots = Arc::clone(&slots);
                async move { slots.permit().await }
            });
            tokio::time::timeout(Duration::from_secs(1), first.notified())
                .await
                .expect("the oldest connection is told to close");
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!waiting.is_finished(), "no permit before it closed");
            slots.leave(1);
            drop(p1);
            let p3 = tokio::time::timeout(Duration::from_secs(1), waiting)
                .await
                .expect("a permit once the oldest closed")
                .unwrap();
            let ids: Vec<u64> = slots.open.lock().unwrap().iter().map(|(i, _)| *i).collect();
            assert_eq!(ids, [2]);
            drop((p2, p3));
        });
    }
}

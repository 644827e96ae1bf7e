//! An in-process Okta simulator: an axum server over an in-memory [`Org`],
//! speaking the slice of the management API the sync reads, with Okta's
//! pagination, rate-limit headers, error bodies and injectable faults.
//! Used by writer-sync's tests, `writer-sync demo` and benchmarks, and as a
//! process by the `okta-sim` binary (`src/main.rs`).
//!
//! Invariant: the simulator shares no code with the client (it does not
//! depend on writer-sync at all): it builds Okta-shaped JSON and headers
//! itself, verifies OAuth assertions itself and files requests into rate-limit
//! windows by its own [`Bucket`] table, so tests of the client against it
//! check the client, not a mirror of it. Time comes from tokio's clock
//! (windows, latency, `Date`), so paused-time tests stay exact.

mod bucket;
pub mod churn;
mod cursor;
mod faults;
mod filter;
pub mod fixtures;
pub mod generate;
mod hash;
pub mod oauth;
pub mod org;
mod org_log;
mod profile;
mod routes;
mod schema;
mod server;
pub mod syslog;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

pub use crate::bucket::{Bucket, Route};
pub use crate::oauth::SimOAuth;
use crate::org::Org;
pub use crate::syslog::LogTiming;

/// Requests per window per [`Bucket`]. Defaults are Okta's last published
/// org-wide per-minute limits (Workforce Identity): a single token may by
/// default use only 50 % of them, so set them to half to model one token's
/// share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    pub apps: u32,
    pub app_by_id: u32,
    /// Group list and search, and the member listings.
    pub groups: u32,
    pub group_by_id: u32,
    pub users: u32,
    pub user_by_id: u32,
    pub logs: u32,
    pub other: u32,
    /// Window length (Okta: 60 s; shorter to scale time in benchmarks).
    pub window: Duration,
}

impl RateLimits {
    pub fn okta_defaults() -> RateLimits {
        RateLimits {
            apps: 100,
            app_by_id: 500,
            groups: 500,
            group_by_id: 1_000,
            users: 600,
            user_by_id: 2_000,
            logs: 120,
            other: 1_200,
            window: Duration::from_secs(60),
        }
    }

    /// The same limit for every bucket.
    pub fn uniform(limit: u32, window: Duration) -> RateLimits {
        RateLimits {
            apps: limit,
            app_by_id: limit,
            groups: limit,
            group_by_id: limit,
            users: limit,
            user_by_id: limit,
            logs: limit,
            other: limit,
            window,
        }
    }

    /// No practical limit (headers still sent).
    pub fn unlimited() -> RateLimits {
        RateLimits::uniform(u32::MAX, Duration::from_secs(60))
    }

    pub fn limit(&self, bucket: Bucket) -> u32 {
        match bucket {
            Bucket::Apps => self.apps,
            Bucket::AppById => self.app_by_id,
            Bucket::Groups => self.groups,
            Bucket::GroupById => self.group_by_id,
            Bucket::Users => self.users,
            Bucket::UserById => self.user_by_id,
            Bucket::Logs => self.logs,
            Bucket::Other => self.other,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::okta_defaults()
    }
}

/// Big pages that Okta cannot answer in time (Teleport saw app-user pages of
/// 500 take more than 30 s; Okta's docs: "If you receive an HTTP 500 status
/// code, you likely exceeded the request timeout. Retry your request with a
/// smaller limit"): every listing page with more than `more_than` items
/// gets `answer`, smaller pages are answered normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowPages {
    pub more_than: usize,
    pub answer: SlowAnswer,
}

/// How a page above [`SlowPages::more_than`] is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowAnswer {
    /// The page, after this delay (set it above the client's timeout).
    Delay(Duration),
    /// 500 E0000009, as Okta answers when its own request timeout fires.
    ServerError,
}

/// How the member listing (`/api/v1/groups/{id}/users`) treats `limit`.
/// Okta's spec documents 1,000 as a legacy default that "will change" and
/// recommends 200; this models Okta lowering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembersLimit {
    /// Pages hold at most this many members.
    pub max: usize,
    /// A `limit` above `max` is refused with 400 E0000001 ("Api validation
    /// failed: limit") instead of clamped.
    pub refuse_above: bool,
}

/// How the `self` and `next` relations are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStyle {
    /// One `Link` header line per relation, as Okta does.
    SeparateLines,
    /// One `Link` header with comma-joined link-values.
    CommaJoined,
}

/// Which requests a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultTarget {
    /// Only this bucket (`None`: any).
    pub family: Option<Bucket>,
    /// Only this route (`None`: any), e.g. the member listings, which share
    /// their bucket with group search.
    pub route: Option<Route>,
    /// Only this page of a listing, 1-based (`None`: any request).
    pub page: Option<u32>,
}

impl FaultTarget {
    pub fn any() -> FaultTarget {
        FaultTarget {
            family: None,
            route: None,
            page: None,
        }
    }

    /// Page `page` of any listing in `bucket`.
    pub fn page(bucket: Bucket, page: u32) -> FaultTarget {
        FaultTarget {
            family: Some(bucket),
            route: None,
            page: Some(page),
        }
    }

    /// Page `page` of the listings of `route`.
    pub fn route_page(route: Route, page: u32) -> FaultTarget {
        FaultTarget {
            family: None,
            route: Some(route),
            page: Some(page),
        }
    }

    /// Every request of `route`.
    pub fn route(route: Route) -> FaultTarget {
        FaultTarget {
            family: None,
            route: Some(route),
            page: None,
        }
    }
}

/// How often a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    Once,
    Count(u32),
    Always,
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this 5xx status and an Okta error body (503 → E0000010,
    /// else E0000009).
    ServerError(u16),
    /// 429 E0000047 with the bucket window's real headers, remaining 0.
    RateLimited,
    /// 429 as for a concurrency limit: `X-Rate-Limit-Limit: 0`.
    ConcurrencyLimited,
    /// Delay the response.
    Slow(Duration),
    /// A 200 whose JSON body is cut in half.
    TruncatedBody,
    /// A `next` link to another host.
    ForeignNextLink,
    /// A `next` link to the page just served (a cursor loop).
    RepeatCursor,
    /// A 200 whose body stops after half of it: the connection is closed
    /// mid-response (chunked encoding, no final chunk), as when a proxy or
    /// the network resets it.
    ConnectionReset,
    /// 404 E0000007, as for an object deleted meanwhile (a group deleted
    /// between the app's group listing and its member listing).
    NotFound,
    /// 403 E0000006, as when the credential may not read this endpoint
    /// (e.g. the schemas without `okta.schemas.read`).
    Forbidden,
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub target: FaultTarget,
    pub times: Times,
    pub kind: FaultKind,
}

impl Fault {
    pub fn new(target: FaultTarget, times: Times, kind: FaultKind) -> Fault {
        Fault {
            target,
            times,
            kind,
        }
    }

    /// The next `count` requests (any bucket) get 429.
    pub fn rate_limit_storm(count: u32) -> Fault {
        Fault::new(
            FaultTarget::any(),
            Times::Count(count),
            FaultKind::RateLimited,
        )
    }
}

/// Options of [`Simulator::start`].
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Default `127.0.0.1:0` (a free port).
    pub listen: SocketAddr,
    /// The one accepted SSWS token. Default: random.
    pub token: String,
    pub rate_limits: RateLimits,
    /// Delay before each request is handled (and counted against its window).
    pub latency: Duration,
    /// Extra uniform delay in `[0, latency_jitter)`, deterministic per request.
    pub latency_jitter: Duration,
    /// Caps every page size below Okta's own caps (like a server clamping).
    pub max_page_size: Option<usize>,
    pub link_style: LinkStyle,
    /// In-flight requests above this get a concurrency 429.
    pub max_concurrent: Option<usize>,
    /// Answer every authenticated request with 403 E0000006.
    pub forbidden: bool,
    pub faults: Vec<Fault>,
    /// An OAuth service app: enables `POST /oauth2/v1/token` and access
    /// tokens on the API (the SSWS token keeps working too).
    pub oauth: Option<SimOAuth>,
    /// When System Log entries become visible (`syslog.rs`).
    pub log_timing: LogTiming,
    /// Answer `/api/v1/logs` with 403 E0000006 (a token whose admin may not
    /// read the System Log).
    pub logs_forbidden: bool,
    /// Pages too big to answer in time (default: none).
    pub slow_pages: Option<SlowPages>,
    /// A lower page limit of the member listings (default: Okta's documented
    /// 1,000).
    pub members_limit: Option<MembersLimit>,
    /// Custom attributes of the app-user schema and of the user schema
    /// (`/api/v1/meta/schemas/…/default`). Default: `writerRole`.
    pub schema_custom_attributes: Vec<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        let token: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(42)
            .collect();
        SimOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: format!("00{token}"),
            rate_limits: RateLimits::okta_defaults(),
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            max_page_size: None,
            link_style: LinkStyle::SeparateLines,
            max_concurrent: None,
            forbidden: false,
            faults: Vec::new(),
            oauth: None,
            log_timing: LogTiming::default(),
            logs_forbidden: false,
            slow_pages: None,
            members_limit: None,
            schema_custom_attributes: vec!["writerRole".to_owned()],
        }
    }
}

/// One request the simulator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The rate-limit bucket the request counted against.
    pub family: Bucket,
    /// What the path asks for.
    pub route: Route,
    /// 1-based page of a listing (1 without a cursor).
    pub page: u32,
    pub status: u16,
    /// Whether the credential was accepted: the right SSWS token, a valid
    /// access token (with its DPoP proof), or a granted token request.
    pub authorized: bool,
    /// The scheme of the `Authorization` header (`SSWS`, `Bearer`, `DPoP`).
    pub auth_scheme: Option<String>,
    /// Whether the request carried a `DPoP` proof header.
    pub dpop: bool,
    pub user_agent: Option<String>,
    pub accept: Option<String>,
    pub retry_for: Option<String>,
    pub retry_count: Option<String>,
    /// When it arrived, since the simulator started (tokio clock).
    pub at: Duration,
}

/// Counters since start (or the last [`SimHandle::reset_log`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    pub requests: u64,
    /// Requests per rate-limit bucket.
    pub requests_by_family: BTreeMap<Bucket, u64>,
    /// 429 responses (rate limit, storms and concurrency).
    pub rate_limited: u64,
    pub rate_limited_by_family: BTreeMap<Bucket, u64>,
}

/// Errors starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("could not listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Binds `options.listen` and serves `org` until [`SimHandle::shutdown`]
    /// (or the handle is dropped).
    pub async fn start(org: Org, options: SimOptions) -> Result<SimHandle, SimError> {
        let bind_error = |reason: std::io::Error| SimError::Bind {
            addr: options.listen,
            reason: reason.to_string(),
        };
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(bind_error)?;
        let mut addr = listener.local_addr().map_err(bind_error)?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let url = Url::parse(&format!("http://{addr}/")).map_err(|err| SimError::Bind {
            addr,
            reason: err.to_string(),
        })?;
        let shared = Arc::new(server::Shared::new(org, options, url.clone()));
        let router = axum::Router::new()
            .fallback(server::handle)
            .with_state(shared.clone());
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.await;
                })
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "okta simulator stopped");
            }
        });
        tracing::info!(url = %url, "okta simulator listening");
        Ok(SimHandle {
            shared,
            url,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }
}

/// A running simulator.
pub struct SimHandle {
    shared: Arc<server::Shared>,
    url: Url,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// Base URL, e.g. `http://127.0.0.1:40123/` (use as `okta.org_url`).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The accepted SSWS token.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    pub fn app_id(&self) -> String {
        self.org(|org| org.app_id().to_owned())
    }

    /// Reads the org.
    pub fn org<R>(&self, f: impl FnOnce(&Org) -> R) -> R {
        f(&lock(&self.shared.org))
    }

    /// Changes the org between (or during) runs. Every change is written to
    /// the System Log, published now (the simulator's clock).
    pub fn org_mut<R>(&self, f: impl FnOnce(&mut Org) -> R) -> R {
        let timing = lock(&self.shared.config).options.log_timing;
        let now = self.shared.clock.wall(tokio::time::Instant::now());
        let mut org = lock(&self.shared.org);
        let result = f(&mut org);
        org.log.stamp(now, timing);
        result
    }

    /// Makes `/api/v1/logs` answer 403 (or read normally again).
    pub fn set_logs_forbidden(&self, forbidden: bool) {
        lock(&self.shared.config).options.logs_forbidden = forbidden;
    }

    /// Changes when System Log entries become visible.
    pub fn set_log_timing(&self, timing: LogTiming) {
        lock(&self.shared.config).options.log_timing = timing;
    }

    /// The simulator's wall clock (tokio time plus the configured offset).
    pub fn now(&self) -> std::time::SystemTime {
        self.shared.clock.wall(tokio::time::Instant::now())
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Vec<Fault>) {
        lock(&self.shared.config).set_faults(faults);
    }

    pub fn set_forbidden(&self, forbidden: bool) {
        lock(&self.shared.config).options.forbidden = forbidden;
    }

    /// Replaces the rate limits and starts fresh windows.
    pub fn set_rate_limits(&self, limits: RateLimits) {
        lock(&self.shared.config).options.rate_limits = limits;
        lock(&self.shared.windows).clear();
    }

    pub fn set_latency(&self, latency: Duration, jitter: Duration) {
        let mut config = lock(&self.shared.config);
        config.options.latency = latency;
        config.options.latency_jitter = jitter;
    }

    pub fn set_link_style(&self, style: LinkStyle) {
        lock(&self.shared.config).options.link_style = style;
    }

    pub fn set_max_page_size(&self, max: Option<usize>) {
        lock(&self.shared.config).options.max_page_size = max;
    }

    pub fn set_slow_pages(&self, slow: Option<SlowPages>) {
        lock(&self.shared.config).options.slow_pages = slow;
    }

    pub fn set_members_limit(&self, limit: Option<MembersLimit>) {
        lock(&self.shared.config).options.members_limit = limit;
    }

    pub fn set_schema_custom_attributes(&self, attributes: Vec<String>) {
        lock(&self.shared.config).options.schema_custom_attributes = attributes;
    }

    /// Changes the OAuth app (e.g. `require_dpop`, granted scopes).
    /// Does nothing when the simulator was started without one.
    pub fn update_oauth(&self, change: impl FnOnce(&mut SimOAuth)) {
        if let Some(oauth) = lock(&self.shared.config).options.oauth.as_mut() {
            change(oauth);
        }
    }

    /// Every access token issued so far expires now.
    pub fn expire_access_tokens(&self) {
        lock(&self.shared.oauth).expire_tokens(tokio::time::Instant::now());
    }

    /// The DPoP nonce the token endpoint currently hands out.
    pub fn dpop_nonce(&self) -> String {
        lock(&self.shared.oauth).nonce().to_owned()
    }

    /// Rotates the DPoP nonce (the previous one stays valid; older ones
    /// are refused) and returns the new one.
    pub fn rotate_dpop_nonce(&self) -> String {
        lock(&self.shared.oauth).rotate_nonce()
    }

    /// Every access token issued and not yet pruned (tests check that none
    /// ever reaches a log or an error).
    pub fn access_tokens(&self) -> Vec<String> {
        lock(&self.shared.oauth).token_values()
    }

    /// Sets the simulated server's clock `secs` ahead of the host's
    /// (negative: behind): `Date`, rate-limit resets and OAuth time checks
    /// follow it.
    pub fn set_clock_offset(&self, secs: i64) {
        self.shared.set_clock_offset(secs);
    }

    /// The most recent requests (up to 100,000), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).iter().cloned().collect()
    }

    pub fn stats(&self) -> SimStats {
        lock(&self.shared.stats).clone()
    }

    /// Clears the request log and the counters.
    pub fn reset_log(&self) {
        lock(&self.shared.log).clear();
        *lock(&self.shared.stats) = SimStats::default();
    }

    /// Stops accepting connections and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

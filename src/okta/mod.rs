//! The Okta management API client: its settings, the endpoints writer-sync
//! reads and their URLs. The request path itself is `request.rs`; reading
//! response bodies (size cap, error bodies) is `response.rs`.
//!
//! Invariant: all I/O to Okta goes through `OktaClient::execute`, the single
//! request function: it takes the per-family pacing gate, a concurrency slot
//! and a cell of the one client-wide budget before every attempt, and owns the
//! retry loop. Listings are built on one primitive, [`OktaClient::for_each_page`],
//! and either deliver every page or fail: a partial listing is never a success.

pub mod auth;
pub mod error;
pub mod jwt;
pub mod key;
pub mod limit;
pub mod oauth;
pub mod page;
mod refusal;
mod request;
mod response;
pub mod syslog;
pub mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::instrument;
use url::Url;

use crate::okta::auth::{Authenticator, OktaAuth};
use crate::okta::error::{Endpoint, OktaError};
use crate::okta::limit::{Budget, Family, RateLimitHeaders, RetryPolicy, ServerClock};
use crate::okta::request::Gate;
use crate::okta::response::{decode, error_chain};
use crate::okta::wire::{App, AppGroup, AppUser, Group, User, UserSchema};

/// Default for [`OktaClientConfig::rate_limit_share`]: Okta lets one token
/// or OAuth app use 50 % of a bucket unless an admin changes it.
pub const DEFAULT_RATE_LIMIT_SHARE: u8 = 50;

/// Default for [`OktaClientConfig::retry_budget`]: long enough to sit out a
/// few rate-limit windows (60 s each) and a short Okta incident.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(300);

/// Default for [`OktaClientConfig::request_timeout`]: big app-user pages
/// (`expand=user`, 500 per page) of large apps take more than 30 s in Okta
/// (Teleport raised its client timeout for exactly that).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Default for [`OktaClientConfig::max_response_bytes`] (SPEC §9): 64 MiB,
/// more than 100 times a full page of 500 app users with their users.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// Page sizes requested per listing: the maximum Okta allows (app users,
/// app groups), Okta's own default where it states no maximum (group
/// members: 1,000; the client takes whatever page size Okta answers with,
/// follows `next`, and after a 400 about `limit` asks for the recommended
/// 200 for the rest of its life), or the recommended size (group search).
/// A page that fails twice in a row with a timeout or 5xx is asked again
/// with half the `limit` (see `request.rs`).
pub const APP_USERS_PAGE_SIZE: u32 = 500;
pub const APP_GROUPS_PAGE_SIZE: u32 = 200;
pub const GROUPS_PAGE_SIZE: u32 = 200;
pub const GROUP_MEMBERS_PAGE_SIZE: u32 = 1_000;

/// Everything the client needs, in its own terms (the config layer builds
/// it from a validated config; this module never names that layer).
#[derive(Debug, Clone)]
pub struct OktaClientConfig {
    /// Base URL of the org (https, or http on loopback). Only its scheme,
    /// host and port are used: the API lives at `/api/v1` on the org's root.
    pub org_url: Url,
    pub auth: OktaAuth,
    /// Client-side budget across all endpoints (the token's share of Okta's
    /// limits; Okta gives one token 50 % of each bucket by default).
    pub requests_per_minute: NonZeroU32,
    /// Percentage of each Okta bucket (`X-Rate-Limit-Limit`) this client
    /// uses per window; the rest is left to the org's other integrations.
    /// See [`DEFAULT_RATE_LIMIT_SHARE`].
    pub rate_limit_share: u8,
    pub max_concurrent_requests: NonZeroUsize,
    /// Timeout of one attempt, connect to last body byte.
    pub request_timeout: Duration,
    /// Total time one request may spend on retries (waits included) before
    /// the client gives up: no retry starts that would begin past it, so the
    /// worst case is this plus one `request_timeout`. See
    /// [`DEFAULT_RETRY_BUDGET`].
    pub retry_budget: Duration,
    /// Largest response body accepted; see [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub max_response_bytes: u64,
}

/// The Okta client. Cheap to clone (one `Arc`); `Debug` shows the org and
/// the limits, never the credential.
#[derive(Clone)]
pub struct OktaClient {
    inner: Arc<Inner>,
}

/// A snapshot of what the client has done, for metrics and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OktaStats {
    /// Attempts by family and HTTP status (`"200"`, `"429"`, …) or `"error"`
    /// when no response arrived.
    pub requests: BTreeMap<(Family, String), u64>,
    /// Responses with status 429.
    pub rate_limited: u64,
    /// Attempts that were retries of an earlier attempt.
    pub retries: u64,
    /// The last rate-limit headers seen per family.
    pub rate_limit: BTreeMap<Family, RateLimitHeaders>,
}

impl OktaStats {
    /// Total attempts of a family.
    pub fn requests_of(&self, family: Family) -> u64 {
        self.requests
            .iter()
            .filter(|((f, _), _)| *f == family)
            .map(|(_, n)| n)
            .sum()
    }
}

/// What a finished listing reports besides its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub pages: usize,
    /// Set when some page was asked again with a smaller `limit` (slow
    /// pages, or Okta refusing the `limit`).
    pub smaller_pages: Option<SmallerPages>,
}

/// A listing that continued with smaller pages than it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallerPages {
    pub endpoint: Endpoint,
    /// The `limit` of the first page.
    pub requested: u32,
    /// The smallest `limit` a page was read with.
    pub smallest: u32,
}

struct Inner {
    http: reqwest::Client,
    org_url: Url,
    auth: OktaAuth,
    authenticator: Authenticator,
    budget: Budget,
    slots: Semaphore,
    gates: [Mutex<Gate>; Family::ALL.len()],
    stats: Mutex<OktaStats>,
    /// Okta's clock, estimated from `Date` headers (for reset waits).
    server_clock: Mutex<ServerClock>,
    policy: RetryPolicy,
    requests_per_minute: NonZeroU32,
    rate_limit_share: u8,
    max_concurrent_requests: NonZeroUsize,
    request_timeout: Duration,
    retry_budget: Duration,
    max_response_bytes: u64,
    /// The `limit` of member listings: [`GROUP_MEMBERS_PAGE_SIZE`] until Okta
    /// refuses it once, then the fallback for the client's lifetime.
    group_members_limit: AtomicU32,
}

impl fmt::Debug for OktaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OktaClient")
            .field("org_url", &self.inner.org_url.as_str())
            .field("auth", &self.inner.auth.kind())
            .field("requests_per_minute", &self.inner.requests_per_minute)
            .field("rate_limit_share", &self.inner.rate_limit_share)
            .field(
                "max_concurrent_requests",
                &self.inner.max_concurrent_requests,
            )
            .field("request_timeout", &self.inner.request_timeout)
            .field("retry_budget", &self.inner.retry_budget)
            .field("max_response_bytes", &self.inner.max_response_bytes)
            .finish_non_exhaustive()
    }
}

impl OktaClient {
    pub fn new(cfg: OktaClientConfig) -> Result<OktaClient, OktaError> {
        // reqwest is built without a default crypto provider; install ring
        // once per process. An error only means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();

        if cfg.org_url.cannot_be_a_base() || cfg.org_url.host_str().is_none() {
            return Err(OktaError::InvalidConfig {
                reason: format!("okta.org_url {} has no host", cfg.org_url),
            });
        }
        let mut org_url = cfg.org_url.clone();
        org_url.set_path("/");
        org_url.set_query(None);
        org_url.set_fragment(None);
        let authenticator = Authenticator::new(&cfg.auth, &org_url)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("writer-sync/", env!("CARGO_PKG_VERSION")))
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(10)))
            // A redirect would carry the request elsewhere; Okta does not
            // redirect API calls, so one is reported instead of followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| OktaError::HttpClient {
                reason: error_chain(&err),
            })?;
        Ok(OktaClient {
            inner: Arc::new(Inner {
                http,
                org_url,
                auth: cfg.auth,
                authenticator,
                budget: Budget::new(cfg.requests_per_minute),
                slots: Semaphore::new(cfg.max_concurrent_requests.get()),
                gates: Default::default(),
                stats: Mutex::new(OktaStats::default()),
                server_clock: Mutex::new(ServerClock::default()),
                policy: RetryPolicy::default(),
                requests_per_minute: cfg.requests_per_minute,
                rate_limit_share: cfg.rate_limit_share,
                max_concurrent_requests: cfg.max_concurrent_requests,
                request_timeout: cfg.request_timeout,
                retry_budget: cfg.retry_budget,
                max_response_bytes: cfg.max_response_bytes,
                group_members_limit: AtomicU32::new(GROUP_MEMBERS_PAGE_SIZE),
            }),
        })
    }

    /// The `limit` member listings ask for now.
    pub fn group_members_limit(&self) -> u32 {
        self.inner.group_members_limit.load(Ordering::Relaxed)
    }

    /// The org's base URL (scheme, host, port; path `/`).
    pub fn org_url(&self) -> &Url {
        &self.inner.org_url
    }

    /// Okta's clock at local epoch milliseconds `local_ms`, estimated from
    /// the `Date` headers seen so far (never ahead of Okta's); `None` before
    /// any response.
    pub fn okta_time_ms(&self, local_ms: i64) -> Option<i64> {
        let local = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(local_ms).ok()?);
        let okta = lock(&self.inner.server_clock).now(local)?;
        okta.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_millis()).ok())
    }

    /// A snapshot of the request counters.
    pub fn stats(&self) -> OktaStats {
        lock(&self.inner.stats).clone()
    }

    /// `GET /api/v1/apps/{appId}` (for `check`). 404 is
    /// [`OktaError::NotFound`] with a hint to check `okta.app_id`.
    #[instrument(skip_all, fields(app_id = %app_id))]
    pub async fn get_app(&self, app_id: &str) -> Result<App, OktaError> {
        let url = self.api_url(&["apps", valid_id("app", app_id)?], &[]);
        let fetched = self.get(&url).await?;
        decode(&fetched.endpoint, &fetched.body)
    }

    /// The app-user schema of the app:
    /// `GET /api/v1/meta/schemas/apps/{appId}/default` (scope
    /// `okta.schemas.read`).
    #[instrument(skip_all, fields(app_id = %app_id))]
    pub async fn get_app_user_schema(&self, app_id: &str) -> Result<UserSchema, OktaError> {
        let url = self.api_url(
            &[
                "meta",
                "schemas",
                "apps",
                valid_id("app", app_id)?,
                "default",
            ],
            &[],
        );
        let fetched = self.get(&url).await?;
        decode(&fetched.endpoint, &fetched.body)
    }

    /// The default user schema: `GET /api/v1/meta/schemas/user/default`
    /// (scope `okta.schemas.read`).
    #[instrument(skip_all)]
    pub async fn get_user_schema(&self) -> Result<UserSchema, OktaError> {
        let url = self.api_url(&["meta", "schemas", "user", "default"], &[]);
        let fetched = self.get(&url).await?;
        decode(&fetched.endpoint, &fetched.body)
    }

    /// Every assignment of the app, with the user embedded:
    /// `GET /api/v1/apps/{appId}/users?limit=500&expand=user`.
    #[instrument(skip_all, fields(app_id = %app_id))]
    pub async fn list_app_users(&self, app_id: &str) -> Result<Vec<AppUser>, OktaError> {
        self.collect(self.app_users_url(app_id)?).await
    }

    /// Every group assignment of the app, with the group embedded:
    /// `GET /api/v1/apps/{appId}/groups?limit=200&expand=group`.
    #[instrument(skip_all, fields(app_id = %app_id))]
    pub async fn list_app_groups(&self, app_id: &str) -> Result<Vec<AppGroup>, OktaError> {
        self.collect(self.app_groups_url(app_id)?).await
    }

    /// Groups whose `profile.name` is exactly `name`. Okta's search compares
    /// values case-insensitively (and is eventually consistent), so the
    /// results are filtered to exact matches here.
    #[instrument(skip_all, fields(group_name = %name))]
    pub async fn find_groups_by_name(&self, name: &str) -> Result<Vec<Group>, OktaError> {
        let mut groups: Vec<Group> = self.collect(self.group_search_url(name)).await?;
        groups.retain(|group| group.profile.name == name);
        Ok(groups)
    }

    /// Every member of a group: `GET /api/v1/groups/{groupId}/users?limit=1000`
    /// (see [`OktaClient::group_members_url`]).
    #[instrument(skip_all, fields(group_id = %group_id))]
    pub async fn list_group_members(&self, group_id: &str) -> Result<Vec<User>, OktaError> {
        self.collect(self.group_members_url(group_id)?).await
    }

    /// First-page URL of [`OktaClient::list_app_users`], for streaming with
    /// [`OktaClient::for_each_page`].
    pub fn app_users_url(&self, app_id: &str) -> Result<Url, OktaError> {
        let limit = APP_USERS_PAGE_SIZE.to_string();
        Ok(self.api_url(
            &["apps", valid_id("app", app_id)?, "users"],
            &[("limit", &limit), ("expand", "user")],
        ))
    }

    /// First-page URL of [`OktaClient::list_app_groups`].
    pub fn app_groups_url(&self, app_id: &str) -> Result<Url, OktaError> {
        let limit = APP_GROUPS_PAGE_SIZE.to_string();
        Ok(self.api_url(
            &["apps", valid_id("app", app_id)?, "groups"],
            &[("limit", &limit), ("expand", "group")],
        ))
    }

    /// First-page URL of [`OktaClient::list_group_members`]: `limit` 1,000,
    /// or 200 once Okta refused 1,000.
    pub fn group_members_url(&self, group_id: &str) -> Result<Url, OktaError> {
        let limit = self.group_members_limit().to_string();
        Ok(self.api_url(
            &["groups", valid_id("group", group_id)?, "users"],
            &[("limit", &limit)],
        ))
    }

    /// First-page URL of the search behind [`OktaClient::find_groups_by_name`]:
    /// `search=profile.name eq "<name>"` with `"` and `\` escaped.
    pub fn group_search_url(&self, name: &str) -> Url {
        let limit = GROUPS_PAGE_SIZE.to_string();
        let expression = format!("profile.name eq \"{}\"", escape_search_value(name));
        self.api_url(&["groups"], &[("search", &expression), ("limit", &limit)])
    }

    /// `{org}/api/v1/{segments…}?{query}`. Segments are percent-encoded;
    /// callers pass ids through [`valid_id`] first.
    fn api_url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.inner.org_url.clone();
        url.set_path(&format!(
            "/api/v1/{}",
            segments
                .iter()
                .map(|segment| encode_component(segment))
                .collect::<Vec<_>>()
                .join("/")
        ));
        if !query.is_empty() {
            let query = query
                .iter()
                .map(|(key, value)| {
                    format!("{}={}", encode_component(key), encode_component(value))
                })
                .collect::<Vec<_>>()
                .join("&");
            url.set_query(Some(&query));
        }
        url
    }
}

/// Locks a mutex, ignoring poisoning: the guarded data (counters, instants)
/// stays meaningful even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accepts an Okta id for use as a path segment: 1 to 128 ASCII letters,
/// digits, `-` or `_`. Okta ids are base62, so this refuses nothing real,
/// and it keeps `/`, `..`, `?`, `#` and `%` out of paths.
pub fn valid_id<'a>(kind: &'static str, id: &'a str) -> Result<&'a str, OktaError> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(id)
    } else {
        Err(OktaError::InvalidId {
            kind,
            id: id.to_owned(),
        })
    }
}

/// Escapes a value for a double-quoted string in an Okta search expression.
pub(crate) fn escape_search_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '"' || c == '\\' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so spaces
/// become `%20` (as in Okta's docs) rather than `+`.
fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn client() -> OktaClient {
        OktaClient::new(OktaClientConfig {
            org_url: Url::parse("https://acme.okta.com/some/path?x=1").unwrap(),
            auth: OktaAuth::Ssws(Secret::new("00secretTOKEN")),
            requests_per_minute: NonZeroU32::new(600).unwrap(),
            rate_limit_share: 100,
            max_concurrent_requests: NonZeroUsize::new(4).unwrap(),
            request_timeout: Duration::from_secs(30),
            retry_budget: DEFAULT_RETRY_BUDGET,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
        .unwrap()
    }

    #[test]
    fn client_is_send_sync_clone_and_debug_hides_the_token() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<OktaClient>();
        let client = client();
        let debug = format!("{client:?}");
        assert!(!debug.contains("00secretTOKEN"), "{debug}");
        assert!(debug.contains("ssws"), "{debug}");
        assert_eq!(client.org_url().as_str(), "https://acme.okta.com/");
    }

    #[test]
    fn urls_use_the_org_root_and_encode_queries() {
        let client = client();
        assert_eq!(
            client.app_users_url("0oa1abc").unwrap().as_str(),
            "https://acme.okta.com/api/v1/apps/0oa1abc/users?limit=500&expand=user"
        );
        assert_eq!(
            client.app_groups_url("0oa1abc").unwrap().as_str(),
            "https://acme.okta.com/api/v1/apps/0oa1abc/groups?limit=200&expand=group"
        );
        assert_eq!(
            client.group_members_url("00g1").unwrap().as_str(),
            "https://acme.okta.com/api/v1/groups/00g1/users?limit=1000"
        );
        assert_eq!(
            client.group_search_url(r#"R&D "core" \ 5%"#).as_str(),
            "https://acme.okta.com/api/v1/groups?search=profile.name%20eq%20%22R%26D%20%5C%22core%5C%22%20%5C%5C%205%25%22&limit=200"
        );
    }

    #[test]
    fn ids_that_could_change_the_path_are_refused() {
        let client = client();
        for bad in [
            "",
            "..",
            "a/b",
            "a?b",
            "a#b",
            "a%2Fb",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            let err = client.app_users_url(bad).unwrap_err();
            assert!(
                matches!(err, OktaError::InvalidId { kind: "app", .. }),
                "{bad}"
            );
            assert!(client.group_members_url(bad).is_err());
        }
        assert!(client.group_members_url("00g_-Az9").is_ok());
    }
}

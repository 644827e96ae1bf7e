//! The Okta management API client.
//!
//! Invariant: all I/O to Okta goes through [`OktaClient::get`], the single
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
pub mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, DATE, HeaderMap, HeaderValue, LINK};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{debug, instrument, warn};
use url::Url;

use crate::okta::auth::{Authenticator, OktaAuth};
use crate::okta::error::{Endpoint, Failure, OktaError, Resource};
use crate::okta::limit::{
    Budget, Family, RateLimitHeaders, RetryCause, RetryPolicy, ServerClock, pacing_delay,
    parse_http_date, retry_delay, supersedes,
};
use crate::okta::page::{MAX_PAGES, PageGuard, next_link, resolve_next};
use crate::okta::wire::{App, AppGroup, AppUser, Group, User};

/// Default for [`OktaClientConfig::rate_limit_share`]: Okta lets one token
/// or OAuth app use 50 % of a bucket unless an admin changes it.
pub const DEFAULT_RATE_LIMIT_SHARE: u8 = 50;

/// Default for [`OktaClientConfig::retry_budget`]: long enough to sit out a
/// few rate-limit windows (60 s each) and a short Okta incident.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(300);

/// Page sizes requested per listing: the maximum Okta allows (app users,
/// app groups), Okta's own default where it states no maximum (group
/// members: 1,000, five times fewer requests than the recommended 200 on
/// the family a big sync spends most requests in), or the recommended size
/// (group search).
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

struct Inner {
    http: reqwest::Client,
    org_url: Url,
    auth: OktaAuth,
    authenticator: Authenticator,
    budget: Budget,
    slots: Semaphore,
    gates: [Mutex<Gate>; 5],
    stats: Mutex<OktaStats>,
    /// Okta's clock, estimated from `Date` headers (for reset waits).
    server_clock: Mutex<ServerClock>,
    policy: RetryPolicy,
    requests_per_minute: NonZeroU32,
    rate_limit_share: u8,
    max_concurrent_requests: NonZeroUsize,
    request_timeout: Duration,
    retry_budget: Duration,
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
            .finish_non_exhaustive()
    }
}

/// Per-family pacing state: no request of the family starts before `until`.
#[derive(Debug, Default)]
struct Gate {
    until: Option<Instant>,
    /// (reset, remaining) of the observation `until` was computed from.
    seen: Option<(i64, u32)>,
}

/// A successful (2xx) response; for token requests also a refusal (4xx),
/// which the OAuth code interprets.
struct Fetched {
    status: StatusCode,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Vec<u8>,
}

enum Attempt {
    Done(Fetched),
    Retry {
        cause: RetryCause,
        failure: Box<Failure>,
    },
    Fatal(OktaError),
    /// 401 on an API request with OAuth: retry once at once, with a renewed
    /// token (`renew` names the refused one) or a new DPoP nonce.
    Reauth {
        renew: Option<u64>,
        reason: String,
        failure: Box<Failure>,
    },
}

/// What one logical request sends.
#[derive(Clone, Copy)]
enum Call<'a> {
    /// A management API GET with the configured credential.
    Get(&'a Url),
    /// The OAuth token POST. Its body (a fresh client assertion) and DPoP
    /// proof are built anew for every attempt.
    Token {
        url: &'a Url,
        build: &'a (dyn Fn() -> Result<oauth::TokenRequest, OktaError> + Sync),
    },
}

impl Call<'_> {
    fn url(&self) -> &Url {
        match self {
            Call::Get(url) | Call::Token { url, .. } => url,
        }
    }

    fn endpoint(&self) -> Endpoint {
        match self {
            Call::Get(url) => Endpoint::get(url),
            Call::Token { url, .. } => Endpoint {
                method: "POST",
                path: url.path().to_owned(),
            },
        }
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
            }),
        })
    }

    /// The org's base URL (scheme, host, port; path `/`).
    pub fn org_url(&self) -> &Url {
        &self.inner.org_url
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

    /// Every member of a group: `GET /api/v1/groups/{groupId}/users?limit=1000`.
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

    /// First-page URL of [`OktaClient::list_group_members`].
    pub fn group_members_url(&self, group_id: &str) -> Result<Url, OktaError> {
        let limit = GROUP_MEMBERS_PAGE_SIZE.to_string();
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

    /// Fetches every page of a listing starting at `first_url` (which must be
    /// on the org), decodes each page as a JSON array of `T` and hands it to
    /// `on_page`, one page in memory at a time. Follows `rel="next"` verbatim
    /// within the org; refuses foreign hosts, cursor loops and more than
    /// [`MAX_PAGES`] pages. Returns the number of pages.
    ///
    /// An error from `on_page` stops the listing and is returned as is; the
    /// caller must then discard what it collected.
    pub async fn for_each_page<T, E, F>(&self, first_url: Url, mut on_page: F) -> Result<usize, E>
    where
        T: DeserializeOwned,
        E: From<OktaError>,
        F: FnMut(Vec<T>) -> Result<(), E>,
    {
        let mut guard = PageGuard::new(&self.inner.org_url, MAX_PAGES);
        guard
            .admit(&first_url)
            .map_err(|reason| OktaError::Pagination {
                endpoint: Endpoint::get(&first_url),
                reason,
            })?;
        let mut url = first_url;
        let mut pages = 0;
        loop {
            let fetched = self.get(&url).await?;
            let items: Vec<T> = decode(&fetched.endpoint, &fetched.body)?;
            let pagination = |reason| OktaError::Pagination {
                endpoint: fetched.endpoint.clone(),
                reason,
            };
            let mut links = Vec::new();
            for value in fetched.headers.get_all(LINK) {
                let value = value.to_str().map_err(|_| {
                    pagination(page::PageError::MalformedLink {
                        value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                        reason: "not visible ASCII",
                    })
                })?;
                links.push(value);
            }
            let next = next_link(links).map_err(pagination)?;
            let next_url = match next {
                Some(target) => {
                    let next_url = resolve_next(&url, &target).map_err(pagination)?;
                    guard.admit(&next_url).map_err(pagination)?;
                    Some(next_url)
                }
                None => None,
            };
            drop(fetched);
            pages += 1;
            on_page(items)?;
            match next_url {
                Some(next_url) => url = next_url,
                None => return Ok(pages),
            }
        }
    }

    async fn collect<T: DeserializeOwned>(&self, first_url: Url) -> Result<Vec<T>, OktaError> {
        let mut all = Vec::new();
        self.for_each_page(first_url, |page: Vec<T>| {
            all.extend(page);
            Ok::<(), OktaError>(())
        })
        .await?;
        Ok(all)
    }

    /// GET `url` through [`OktaClient::execute`].
    async fn get(&self, url: &Url) -> Result<Fetched, OktaError> {
        self.execute(Call::Get(url)).await
    }

    /// The request function: sends `call` with retries until success, a
    /// permanent error, or the retry budget is spent. A 401 with OAuth is
    /// retried once at once (renewed token or new DPoP nonce).
    async fn execute(&self, call: Call<'_>) -> Result<Fetched, OktaError> {
        let inner = &self.inner;
        let endpoint = call.endpoint();
        let family = Family::of_path(call.url().path());
        let started = Instant::now();
        let mut attempts: u32 = 0;
        let mut retry_for: Option<String> = None;
        let mut reauthorized = false;
        loop {
            attempts += 1;
            let retry_header = retry_for.as_deref().map(|id| (id, attempts - 1));
            let (cause, failure) = match self.attempt(call, family, &endpoint, retry_header).await {
                Attempt::Done(fetched) => return Ok(fetched),
                Attempt::Fatal(err) => return Err(err),
                Attempt::Reauth {
                    renew,
                    reason,
                    failure,
                } => {
                    if reauthorized {
                        return Err(inner
                            .authenticator
                            .rejected_again(&endpoint, failure, reason));
                    }
                    reauthorized = true;
                    inner.authenticator.before_reauth(renew).await;
                    warn!(
                        %endpoint,
                        reason = %reason,
                        renew = renew.is_some(),
                        "okta refused the access token; retrying once with a new token or DPoP nonce"
                    );
                    continue;
                }
                Attempt::Retry { cause, failure } => (cause, failure),
            };
            let delay = retry_delay(
                attempts,
                &cause,
                SystemTime::now(),
                &inner.policy,
                fastrand::f64(),
            );
            let elapsed = started.elapsed();
            if elapsed + delay > inner.retry_budget {
                warn!(%endpoint, attempts, last = %failure, "okta request failed; retry budget spent");
                return Err(OktaError::RetriesExhausted {
                    endpoint,
                    attempts,
                    elapsed,
                    budget: inner.retry_budget,
                    last: failure,
                });
            }
            if let RetryCause::RateLimited { .. } = cause {
                // Hold back the whole family, not only this request.
                self.hold_family_until(family, Instant::now() + delay);
                retry_for = failure.request_id.clone();
                warn!(
                    %endpoint,
                    attempt = attempts,
                    delay_ms = delay.as_millis() as u64,
                    failure = %failure,
                    "okta rate limit reached; waiting for the reset"
                );
            } else {
                warn!(
                    %endpoint,
                    attempt = attempts,
                    delay_ms = delay.as_millis() as u64,
                    failure = %failure,
                    "okta request failed; retrying"
                );
            }
            lock(&inner.stats).retries += 1;
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: get the credential, wait for pacing, a slot and the
    /// budget, send, classify.
    async fn attempt(
        &self,
        call: Call<'_>,
        family: Family,
        endpoint: &Endpoint,
        retry: Option<(&str, u32)>,
    ) -> Attempt {
        let inner = &self.inner;
        let url = call.url();
        // The credential comes first: getting an OAuth token is itself a
        // request that needs a slot and the budget.
        let credential = match call {
            Call::Get(_) => match inner.authenticator.credential(self).await {
                Ok(credential) => Some(credential),
                Err(err) => return Attempt::Fatal(err),
            },
            Call::Token { .. } => None,
        };
        let _slot = loop {
            self.wait_for_family(family).await;
            let slot = inner
                .slots
                .acquire()
                .await
                .expect("the request semaphore is never closed");
            // Another response may have moved the family's gate while this
            // request waited for a slot.
            if self.family_ready(family) {
                break slot;
            }
        };
        inner.budget.acquire().await;

        let mut request = match call {
            Call::Get(url) => inner.http.get(url.clone()),
            Call::Token { url, build } => {
                let token_request = match build() {
                    Ok(token_request) => token_request,
                    Err(err) => return Attempt::Fatal(err),
                };
                let mut request = inner
                    .http
                    .post(url.clone())
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(token_request.body);
                if let Some(proof) = token_request.dpop {
                    request = request.header("DPoP", proof);
                }
                request
            }
        }
        .header(ACCEPT, "application/json");
        if let Some(credential) = &credential {
            match inner
                .authenticator
                .headers(credential, endpoint.method, url)
            {
                Ok(headers) => {
                    for (name, value) in headers {
                        request = request.header(name, value);
                    }
                }
                Err(err) => return Attempt::Fatal(err),
            }
        }
        if let Some((request_id, count)) = retry
            && let Ok(request_id) = HeaderValue::from_str(request_id)
        {
            request = request
                .header("X-Okta-Retry-For", request_id)
                .header("X-Okta-Retry-Count", count.to_string());
        }
        let sent = Instant::now();
        let response = request.send().await;
        // When the headers (and their `Date`) arrived.
        let arrived = SystemTime::now();
        let (status, headers, body) = match response {
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                match response.bytes().await {
                    Ok(body) => (status, headers, body.to_vec()),
                    Err(err) => return self.transport_failure(family, endpoint, sent, &err),
                }
            }
            Err(err) => return self.transport_failure(family, endpoint, sent, &err),
        };

        inner.authenticator.observe(&headers);
        let request_id = headers
            .get("x-okta-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let rate = RateLimitHeaders::from_headers(&headers);
        // Okta's "now" for reset waits: from all `Date` headers seen so far
        // (finer than this one alone), else the local clock.
        let server_date = match headers
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date)
        {
            Some(date) => {
                let mut clock = lock(&inner.server_clock);
                clock.observe(date, arrived);
                clock.now(SystemTime::now())
            }
            None => None,
        };
        debug!(
            method = endpoint.method,
            path = %endpoint.path,
            status = status.as_u16(),
            request_id = request_id.as_deref().unwrap_or(""),
            duration_ms = sent.elapsed().as_millis() as u64,
            remaining = rate.remaining,
            "okta request"
        );
        self.record(family, &status.as_u16().to_string(), Some(rate));
        if status != StatusCode::TOO_MANY_REQUESTS {
            self.pace_family(family, &rate, server_date);
        }

        let token_refusal = matches!(call, Call::Token { .. })
            && status.is_client_error()
            && status != StatusCode::TOO_MANY_REQUESTS
            && status != StatusCode::REQUEST_TIMEOUT;
        if status.is_success() || token_refusal {
            return Attempt::Done(Fetched {
                status,
                endpoint: endpoint.clone(),
                headers,
                body,
            });
        }
        let failure = Box::new(failure_from(status, request_id, &body));
        let endpoint = endpoint.clone();
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                lock(&inner.stats).rate_limited += 1;
                Attempt::Retry {
                    cause: RetryCause::RateLimited {
                        headers: rate,
                        server_date,
                    },
                    failure,
                }
            }
            StatusCode::REQUEST_TIMEOUT => Attempt::Retry {
                cause: RetryCause::ServerError,
                failure,
            },
            status if status.is_server_error() => Attempt::Retry {
                cause: RetryCause::ServerError,
                failure,
            },
            StatusCode::UNAUTHORIZED => {
                inner
                    .authenticator
                    .unauthorized(credential.as_ref(), &endpoint, failure, &headers)
            }
            StatusCode::FORBIDDEN => Attempt::Fatal(inner.authenticator.forbidden(
                credential.as_ref(),
                family,
                &endpoint,
                failure,
                &headers,
            )),
            StatusCode::NOT_FOUND => Attempt::Fatal(OktaError::NotFound {
                resource: resource_of_path(&endpoint.path),
                endpoint,
                failure,
            }),
            _ => Attempt::Fatal(OktaError::UnexpectedStatus { endpoint, failure }),
        }
    }

    fn transport_failure(
        &self,
        family: Family,
        endpoint: &Endpoint,
        sent: Instant,
        err: &reqwest::Error,
    ) -> Attempt {
        let detail = if err.is_timeout() {
            format!("timed out after {:?}", self.inner.request_timeout)
        } else {
            error_chain(err)
        };
        debug!(
            method = endpoint.method,
            path = %endpoint.path,
            duration_ms = sent.elapsed().as_millis() as u64,
            error = %detail,
            "okta request failed without a response"
        );
        self.record(family, "error", None);
        let failure = Box::new(Failure {
            transport: Some(detail),
            ..Failure::default()
        });
        if err.is_builder() {
            return Attempt::Fatal(OktaError::UnexpectedStatus {
                endpoint: endpoint.clone(),
                failure,
            });
        }
        Attempt::Retry {
            cause: RetryCause::Transport,
            failure,
        }
    }

    fn record(&self, family: Family, status: &str, rate: Option<RateLimitHeaders>) {
        let mut stats = lock(&self.inner.stats);
        *stats
            .requests
            .entry((family, status.to_owned()))
            .or_default() += 1;
        if let Some(rate) = rate
            && rate.remaining.is_some()
        {
            stats.rate_limit.insert(family, rate);
        }
    }

    /// Recomputes the family's gate from a response's rate-limit headers,
    /// unless a newer observation of the window was already used (responses
    /// of concurrent requests can arrive out of order).
    fn pace_family(
        &self,
        family: Family,
        rate: &RateLimitHeaders,
        server_date: Option<SystemTime>,
    ) {
        let (Some(reset), Some(remaining)) = (rate.reset, rate.remaining) else {
            return;
        };
        let mut gate = lock(&self.inner.gates[family.index()]);
        if !supersedes(gate.seen, (reset, remaining)) {
            return;
        }
        let pace = pacing_delay(
            rate,
            server_date.unwrap_or_else(SystemTime::now),
            &self.inner.policy,
            self.inner.rate_limit_share,
        );
        if !pace.is_zero() {
            debug!(
                family = family.as_str(),
                remaining,
                delay_ms = pace.as_millis() as u64,
                "pacing okta requests"
            );
        }
        gate.seen = Some((reset, remaining));
        let now = Instant::now();
        // A rate-limit hold still running is not shortened by pacing.
        gate.until = Some(
            gate.until
                .filter(|until| *until > now)
                .map_or(now + pace, |until| until.max(now + pace)),
        );
    }

    /// Holds the family back until at least `until` (after a 429).
    fn hold_family_until(&self, family: Family, until: Instant) {
        let mut gate = lock(&self.inner.gates[family.index()]);
        gate.until = Some(gate.until.map_or(until, |current| current.max(until)));
    }

    fn family_ready(&self, family: Family) -> bool {
        lock(&self.inner.gates[family.index()])
            .until
            .is_none_or(|until| until <= Instant::now())
    }

    async fn wait_for_family(&self, family: Family) {
        loop {
            let until = lock(&self.inner.gates[family.index()]).until;
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
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
fn escape_search_value(value: &str) -> String {
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

/// Which object a 404 is about, from the request path.
fn resource_of_path(path: &str) -> Resource {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        ["", "api", "v1", "apps", id, ..] => Resource::App((*id).to_owned()),
        ["", "api", "v1", "groups", id, ..] => Resource::Group((*id).to_owned()),
        _ => Resource::Other,
    }
}

fn decode<T: DeserializeOwned>(endpoint: &Endpoint, body: &[u8]) -> Result<T, OktaError> {
    serde_json::from_slice(body).map_err(|err| OktaError::Decode {
        endpoint: endpoint.clone(),
        reason: format!("{err} (body of {} bytes)", body.len()),
    })
}

/// Okta's error body fields, when the body is one.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ErrorBody {
    error_code: Option<String>,
    error_summary: Option<String>,
}

fn failure_from(status: StatusCode, request_id: Option<String>, body: &[u8]) -> Failure {
    let error: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    Failure {
        status: Some(status.as_u16()),
        error_code: error.error_code,
        error_summary: error.error_summary,
        request_id,
        transport: None,
    }
}

/// An error and its causes on one line (reqwest's own message is terse).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

    #[test]
    fn not_found_resource_comes_from_the_path() {
        assert_eq!(
            resource_of_path("/api/v1/apps/0oa1/users"),
            Resource::App("0oa1".into())
        );
        assert_eq!(
            resource_of_path("/api/v1/groups/00g1/users"),
            Resource::Group("00g1".into())
        );
        assert_eq!(resource_of_path("/api/v1/groups"), Resource::Other);
        assert_eq!(
            Resource::App("0oa1".into()).to_string(),
            "no app with id 0oa1 (check okta.app_id)"
        );
    }

    #[test]
    fn failure_reads_okta_error_bodies_and_tolerates_others() {
        let body = br#"{"errorCode":"E0000047","errorSummary":"API call exceeded rate limit due to too many requests.","errorLink":"E0000047","errorId":"x","errorCauses":[]}"#;
        let failure = failure_from(StatusCode::TOO_MANY_REQUESTS, Some("r1".into()), body);
        assert_eq!(failure.error_code.as_deref(), Some("E0000047"));
        assert_eq!(failure.status, Some(429));
        let html = failure_from(StatusCode::BAD_GATEWAY, None, b"<html>bad gateway</html>");
        assert_eq!(html.error_code, None);
        assert_eq!(html.to_string(), "HTTP 502");
    }
}

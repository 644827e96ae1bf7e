//! The one request path: [`OktaClient::execute`] and its attempts (pacing
//! gate, concurrency slot, budget cell, credential, send, classify, retry,
//! smaller pages), the listing primitive [`OktaClient::for_each_page`]
//! built on it, and the rate-limit headers of responses. Bodies are read by
//! `response.rs`.

use std::time::SystemTime;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, DATE, HeaderMap, HeaderValue, LINK};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::{debug, warn};
use url::Url;

use crate::okta::error::{Endpoint, Failure, OktaError};
use crate::okta::limit::{
    Family, RateLimitHeaders, RetryCause, pacing_delay, parse_http_date, retry_delay, supersedes,
};
use crate::okta::page::{self, MAX_PAGES, PageGuard, next_link, resolve_next};
use crate::okta::response::{
    BodyError, decode, error_chain, failure_from, read_body, resource_of_path,
};
use crate::okta::{Listed, OktaClient, SmallerPages, lock};

/// Per-family pacing state: no request of the family starts before `until`.
#[derive(Debug, Default)]
pub(super) struct Gate {
    pub(super) until: Option<Instant>,
    /// (reset, remaining) of the observation `until` was computed from.
    pub(super) seen: Option<(i64, u32)>,
}

/// A successful (2xx) response; for token requests also a refusal (4xx),
/// which the OAuth code interprets.
pub(super) struct Fetched {
    pub(super) status: StatusCode,
    pub(super) endpoint: Endpoint,
    /// The URL that answered: a page's URL with a smaller `limit` when the
    /// page had to be asked again smaller.
    pub(super) url: Url,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

pub(super) enum Attempt {
    Done(Fetched),
    Retry {
        cause: RetryCause,
        failure: Box<Failure>,
        /// A timeout or 5xx: what a page too big for Okta to answer in time
        /// looks like.
        slow: bool,
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
pub(super) enum Call<'a> {
    /// A management API GET with the configured credential.
    Get(&'a Url),
    /// A GET of one page of a listing: like `Get`, but a page that keeps
    /// failing slowly is asked again with a smaller `limit`, and a member
    /// listing whose `limit` Okta refuses falls back to 200.
    Page(&'a Url),
    /// The OAuth token POST. Its body (a fresh client assertion) and DPoP
    /// proof are built anew for every attempt.
    Token {
        url: &'a Url,
        build: &'a (dyn Fn() -> Result<TokenRequest, OktaError> + Sync),
    },
}

/// One token POST: the form body and the DPoP header, built per attempt
/// (by `oauth`, which owns what goes in them).
pub(super) struct TokenRequest {
    pub(super) body: String,
    pub(super) dpop: Option<HeaderValue>,
}

impl Call<'_> {
    fn url(&self) -> &Url {
        match self {
            Call::Get(url) | Call::Page(url) | Call::Token { url, .. } => url,
        }
    }

    fn endpoint(&self) -> Endpoint {
        match self {
            Call::Get(url) | Call::Page(url) => Endpoint::get(url),
            Call::Token { url, .. } => Endpoint {
                method: "POST",
                path: url.path().to_owned(),
            },
        }
    }
}

impl OktaClient {
    /// Fetches every page of a listing starting at `first_url` (which must be
    /// on the org), decodes each page as a JSON array of `T` and hands it to
    /// `on_page`, one page in memory at a time. Follows `rel="next"` verbatim
    /// within the org; refuses foreign hosts, cursor loops and more than
    /// [`MAX_PAGES`] pages. Returns the number of pages and whether some
    /// page had to be read with a smaller `limit` (see [`Call::Page`]).
    ///
    /// An error from `on_page` stops the listing and is returned as is; the
    /// caller must then discard what it collected.
    pub async fn for_each_page<T, E, F>(&self, first_url: Url, mut on_page: F) -> Result<Listed, E>
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
        let requested = page::limit_of(&first_url);
        let mut smallest = requested;
        let mut url = first_url;
        let mut pages = 0;
        loop {
            let fetched = self.execute(Call::Page(&url)).await?;
            if let Some(limit) = page::limit_of(&fetched.url) {
                smallest = Some(smallest.map_or(limit, |s| s.min(limit)));
            }
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
                    let next_url = resolve_next(&fetched.url, &target).map_err(pagination)?;
                    guard.admit(&next_url).map_err(pagination)?;
                    Some(next_url)
                }
                None => None,
            };
            let endpoint = fetched.endpoint.clone();
            drop(fetched);
            pages += 1;
            on_page(items)?;
            match next_url {
                Some(next_url) => url = next_url,
                None => {
                    let smaller_pages = match (requested, smallest) {
                        (Some(requested), Some(smallest)) if smallest < requested => {
                            Some(SmallerPages {
                                endpoint,
                                requested,
                                smallest,
                            })
                        }
                        _ => None,
                    };
                    return Ok(Listed {
                        pages,
                        smaller_pages,
                    });
                }
            }
        }
    }

    pub(super) async fn collect<T: DeserializeOwned>(
        &self,
        first_url: Url,
    ) -> Result<Vec<T>, OktaError> {
        let mut all = Vec::new();
        self.for_each_page(first_url, |page: Vec<T>| {
            all.extend(page);
            Ok::<(), OktaError>(())
        })
        .await?;
        Ok(all)
    }

    /// GET `url` through [`OktaClient::execute`].
    pub(super) async fn get(&self, url: &Url) -> Result<Fetched, OktaError> {
        self.execute(Call::Get(url)).await
    }

    /// The request function: sends `call` with retries until success, a
    /// permanent error, or the retry budget is spent. A 401 with OAuth is
    /// retried once at once (renewed token or new DPoP nonce).
    ///
    /// A page ([`Call::Page`]) that failed twice in a row with a timeout or
    /// a 5xx is asked again with its `limit` halved (only that query
    /// parameter changes), down to [`page::PAGE_SIZE_FLOOR`], within the
    /// same retry budget: Okta answers a page too big to build in time with
    /// a 500 or not at all, and recommends a smaller `limit`. A member page
    /// whose `limit` Okta refuses (400 `E0000001`) is asked again at once
    /// with 200, and member listings ask for 200 from then on.
    pub(super) async fn execute(&self, call: Call<'_>) -> Result<Fetched, OktaError> {
        let inner = &self.inner;
        let endpoint = call.endpoint();
        let family = Family::of_path(call.url().path());
        let rules = match call {
            Call::Page(url) => Some(page::PageRules::of_path(url.path())),
            Call::Get(_) | Call::Token { .. } => None,
        };
        // The page's URL once its `limit` was changed.
        let mut smaller: Option<Url> = None;
        let mut slow_in_a_row: u32 = 0;
        let started = Instant::now();
        let mut attempts: u32 = 0;
        let mut retry_for: Option<String> = None;
        let mut reauthorized = false;
        loop {
            attempts += 1;
            let this_call = match (&smaller, call) {
                (Some(url), Call::Page(_)) => Call::Page(url),
                _ => call,
            };
            let retry_header = retry_for.as_deref().map(|id| (id, attempts - 1));
            let (cause, failure, slow) = match self
                .attempt(this_call, family, &endpoint, retry_header)
                .await
            {
                Attempt::Done(fetched) => return Ok(fetched),
                Attempt::Fatal(err) => {
                    let url = this_call.url();
                    if let Some(rules) = rules
                        && let Some(fallback) = limit_refused(&err, url, rules)
                        && let Some(retry_url) = page::with_limit(url, fallback)
                    {
                        if rules.group_members {
                            inner
                                .group_members_limit
                                .fetch_min(fallback, std::sync::atomic::Ordering::Relaxed);
                        }
                        warn!(
                            %endpoint,
                            refused_limit = page::limit_of(url),
                            limit = fallback,
                            error = %err,
                            "okta refused the page size; asking again with the smaller limit \
                             (member listings use it from now on)"
                        );
                        smaller = Some(retry_url);
                        slow_in_a_row = 0;
                        continue;
                    }
                    return Err(err);
                }
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
                Attempt::Retry {
                    cause,
                    failure,
                    slow,
                } => (cause, failure, slow),
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
                warn!(
                    %endpoint,
                    attempts,
                    cause = cause_name(&cause, slow),
                    last = %failure,
                    budget_ms = inner.retry_budget.as_millis() as u64,
                    "okta request failed; retry budget spent"
                );
                return Err(OktaError::RetriesExhausted {
                    endpoint,
                    attempts,
                    elapsed,
                    budget: inner.retry_budget,
                    last: failure,
                });
            }
            let budget_left_ms = (inner.retry_budget - elapsed).as_millis() as u64;
            slow_in_a_row = if slow { slow_in_a_row + 1 } else { 0 };
            // Two slow failures in a row on a page: ask for a smaller one.
            let mut next_limit = None;
            if slow_in_a_row >= 2
                && let Some(rules) = rules
            {
                let url = this_call.url();
                if let Some(limit) = page::limit_of(url)
                    && let Some(half) = page::halved(limit, rules.floor)
                    && let Some(retry_url) = page::with_limit(url, half)
                {
                    smaller = Some(retry_url);
                    next_limit = Some(half);
                    slow_in_a_row = 0;
                }
            }
            if let RetryCause::RateLimited { .. } = cause {
                // Hold back the whole family, not only this request.
                self.hold_family_until(family, Instant::now() + delay);
                retry_for = failure.request_id.clone();
                warn!(
                    %endpoint,
                    attempt = attempts,
                    cause = cause_name(&cause, slow),
                    failure = %failure,
                    delay_ms = delay.as_millis() as u64,
                    budget_left_ms,
                    "okta rate limit reached; waiting for the reset"
                );
            } else {
                warn!(
                    %endpoint,
                    attempt = attempts,
                    cause = cause_name(&cause, slow),
                    failure = %failure,
                    delay_ms = delay.as_millis() as u64,
                    budget_left_ms,
                    next_limit,
                    "okta request failed; retrying"
                );
            }
            lock(&inner.stats).retries += 1;
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: get the credential, wait for pacing, a slot and the
    /// budget, send, classify.
    pub(super) async fn attempt(
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
            Call::Get(_) | Call::Page(_) => match inner.authenticator.credential(self).await {
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
            Call::Get(url) | Call::Page(url) => inner.http.get(url.clone()),
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
                match read_body(response, endpoint, inner.max_response_bytes).await {
                    Ok(body) => (status, headers, body),
                    Err(BodyError::Transport(err)) => {
                        return self.transport_failure(family, endpoint, sent, &err);
                    }
                    Err(BodyError::TooLarge(err)) => {
                        self.record(family, &status.as_u16().to_string(), None);
                        return Attempt::Fatal(err);
                    }
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
                url: url.clone(),
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
                    slow: false,
                }
            }
            StatusCode::REQUEST_TIMEOUT => Attempt::Retry {
                cause: RetryCause::ServerError,
                failure,
                slow: true,
            },
            status if status.is_server_error() => Attempt::Retry {
                cause: RetryCause::ServerError,
                failure,
                slow: true,
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

    pub(super) fn transport_failure(
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
            slow: err.is_timeout(),
        }
    }

    pub(super) fn record(&self, family: Family, status: &str, rate: Option<RateLimitHeaders>) {
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
    pub(super) fn pace_family(
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
    pub(super) fn hold_family_until(&self, family: Family, until: Instant) {
        let mut gate = lock(&self.inner.gates[family.index()]);
        gate.until = Some(gate.until.map_or(until, |current| current.max(until)));
    }

    pub(super) fn family_ready(&self, family: Family) -> bool {
        lock(&self.inner.gates[family.index()])
            .until
            .is_none_or(|until| until <= Instant::now())
    }

    pub(super) async fn wait_for_family(&self, family: Family) {
        loop {
            let until = lock(&self.inner.gates[family.index()]).until;
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }
}

/// The name of a retry cause in logs.
fn cause_name(cause: &RetryCause, slow: bool) -> &'static str {
    match cause {
        RetryCause::RateLimited { headers, .. } if headers.limit == Some(0) => {
            "concurrency_limited"
        }
        RetryCause::RateLimited { .. } => "rate_limited",
        RetryCause::ServerError => "server_error",
        RetryCause::Transport if slow => "timeout",
        RetryCause::Transport => "transport",
    }
}

/// The `limit` to ask a page again with after `err`: a 400 `E0000001`
/// (Okta's validation error; its text is not a contract, so any validation
/// error of a page asked with more than the fallback qualifies) on a
/// listing that has a fallback below the `limit` of `url`.
fn limit_refused(err: &OktaError, url: &Url, rules: page::PageRules) -> Option<u32> {
    let OktaError::UnexpectedStatus { failure, .. } = err else {
        return None;
    };
    let fallback = rules.limit_fallback?;
    let asked = page::limit_of(url)?;
    (failure.status == Some(400)
        && failure.error_code.as_deref() == Some("E0000001")
        && asked > fallback)
        .then_some(fallback)
}

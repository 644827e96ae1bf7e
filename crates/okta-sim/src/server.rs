//! The simulator's request handling: authentication, rate-limit windows,
//! faults, and the response envelope. What each path answers is
//! `routes.rs`.
//!
//! Invariant: every response carries `X-Okta-Request-Id` and `Date`; every
//! response past authentication carries the bucket window's
//! `X-Rate-Limit-Limit/-Remaining/-Reset`; every error body has Okta's shape
//! (OAuth's `{error, error_description}` on the token endpoint).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::time::Instant;
use url::Url;

use crate::bucket::{Bucket, Route};
use crate::cursor::decode_cursor;
use crate::hash::mix;
use crate::oauth::{self, OAuthState};
use crate::org::{Org, okta_like_id};
use crate::{Fault, LinkStyle, RequestRecord, SimOptions, SimStats, SlowAnswer, lock};

/// Requests kept in the log.
const LOG_CAPACITY: usize = 100_000;

pub(crate) struct Shared {
    pub(crate) org: Mutex<Org>,
    pub(crate) config: Mutex<Config>,
    pub(crate) token: String,
    pub(crate) base: Url,
    pub(crate) clock: SimClock,
    pub(crate) windows: Mutex<BTreeMap<Bucket, Window>>,
    pub(crate) log: Mutex<VecDeque<RequestRecord>>,
    pub(crate) stats: Mutex<SimStats>,
    pub(crate) oauth: Mutex<OAuthState>,
    pub(crate) next_request: AtomicU64,
    pub(crate) in_flight: AtomicUsize,
}

pub(crate) struct Config {
    pub(crate) options: SimOptions,
    /// Faults with how often each has fired.
    pub(crate) faults: Vec<(Fault, u32)>,
}

/// Wall time derived from tokio's clock, so `Date` and `X-Rate-Limit-Reset`
/// move with paused time in tests.
pub(crate) struct SimClock {
    wall_at_start: SystemTime,
    start: Instant,
    /// How far the simulated server's clock is ahead (negative: behind) of
    /// the host's, in milliseconds.
    offset_ms: AtomicI64,
}

impl SimClock {
    pub(crate) fn wall(&self, at: Instant) -> SystemTime {
        let wall = self.wall_at_start + at.saturating_duration_since(self.start);
        let offset = self.offset_ms.load(Ordering::SeqCst);
        let shift = Duration::from_millis(offset.unsigned_abs());
        if offset >= 0 {
            wall + shift
        } else {
            wall.checked_sub(shift).unwrap_or(UNIX_EPOCH)
        }
    }

    fn epoch_secs(&self, at: Instant) -> u64 {
        self.wall(at)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// One bucket's fixed window: it starts with the first request after the
/// previous one ended (Okta's windows are not aligned to the minute).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    started: Instant,
    count: u32,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct RateHeaders {
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    pub(crate) reset: u64,
}

/// A response before it becomes HTTP.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Vec<u8>,
    pub(crate) links: Vec<String>,
    pub(crate) rate: Option<RateHeaders>,
    /// More headers (`WWW-Authenticate`, `DPoP-Nonce`, `Cache-Control`).
    pub(crate) headers: Vec<(header::HeaderName, String)>,
    /// Whether the request's credential was accepted.
    pub(crate) authorized: bool,
    /// Close the connection after sending half the body.
    pub(crate) reset: bool,
}

impl Reply {
    pub(crate) fn json(status: StatusCode, value: &Value) -> Reply {
        Reply {
            status,
            body: serde_json::to_vec(value).unwrap_or_default(),
            links: Vec::new(),
            rate: None,
            headers: Vec::new(),
            authorized: false,
            reset: false,
        }
    }

    pub(crate) fn from_outcome(outcome: oauth::Outcome) -> Reply {
        let mut reply = Reply::json(outcome.status, &outcome.body);
        reply.headers = outcome.headers;
        reply
    }

    pub(crate) fn error(status: StatusCode, code: &str, summary: &str, serial: u64) -> Reply {
        Reply::error_with_causes(status, code, summary, &[], serial)
    }

    /// An Okta error body whose `errorCauses` holds one `{errorSummary}`
    /// per cause (Okta's shape for validation errors).
    pub(crate) fn error_with_causes(
        status: StatusCode,
        code: &str,
        summary: &str,
        causes: &[&str],
        serial: u64,
    ) -> Reply {
        let causes: Vec<Value> = causes
            .iter()
            .map(|cause| json!({"errorSummary": cause}))
            .collect();
        Reply::json(
            status,
            &json!({
                "errorCode": code,
                "errorSummary": summary,
                "errorLink": code,
                "errorId": okta_like_id("oae", 0xE7707, serial),
                "errorCauses": causes
            }),
        )
    }
}

/// What a route produced.
pub(crate) enum Routed {
    Object(Value),
    Listing {
        items: Vec<Value>,
        /// Cursor of the next page, when this page was full.
        next: Option<String>,
    },
}

/// Everything about the request the handlers need.
pub(crate) struct Ctx<'a> {
    pub(crate) serial: u64,
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) bucket: Bucket,
    pub(crate) route: Route,
    pub(crate) page: u32,
    /// Whether the `Authorization` header carried the right SSWS token.
    pub(crate) authorized: bool,
    pub(crate) concurrent: usize,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
}

impl Ctx<'_> {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    pub(crate) fn new(org: Org, mut options: SimOptions, base: Url) -> Shared {
        let faults = std::mem::take(&mut options.faults);
        let mut config = Config {
            options,
            faults: Vec::new(),
        };
        config.set_faults(faults);
        let token = config.options.token.clone();
        let mut org = org;
        org.log.forget();
        Shared {
            org: Mutex::new(org),
            config: Mutex::new(config),
            token,
            base,
            clock: SimClock {
                wall_at_start: SystemTime::now(),
                start: Instant::now(),
                offset_ms: AtomicI64::new(0),
            },
            windows: Mutex::new(BTreeMap::new()),
            log: Mutex::new(VecDeque::new()),
            stats: Mutex::new(SimStats::default()),
            oauth: Mutex::new(OAuthState::new()),
            next_request: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Sets the simulated server clock `secs` ahead of the host's
    /// (negative: behind).
    pub(crate) fn set_clock_offset(&self, secs: i64) {
        self.clock
            .offset_ms
            .store(secs.saturating_mul(1000), Ordering::SeqCst);
    }

    async fn respond(&self, ctx: &Ctx<'_>) -> Reply {
        if ctx.path == oauth::TOKEN_PATH {
            return self.token_endpoint(ctx).await;
        }
        if *ctx.method != Method::GET {
            return Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "E0000022",
                "The endpoint does not support the provided HTTP method",
                ctx.serial,
            );
        }
        let grant = match self.authenticate(ctx) {
            Ok(grant) => grant,
            Err(reply) => return reply,
        };
        let mut reply = self.respond_authorized(ctx, grant.as_ref()).await;
        reply.authorized = true;
        if let Some(grant) = grant {
            reply.headers.extend(grant.headers);
        }
        reply
    }

    /// The request's credential: the SSWS token (`Ok(None)`: every scope),
    /// or with OAuth configured an access token (`Ok(Some(grant))`).
    fn authenticate(&self, ctx: &Ctx<'_>) -> Result<Option<oauth::Grant>, Reply> {
        if ctx.authorized {
            return Ok(None);
        }
        let oauth_config = lock(&self.config).options.oauth.clone();
        let scheme = ctx
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(' ').next())
            .unwrap_or_default()
            .to_ascii_lowercase();
        match oauth_config {
            Some(config) if scheme == "bearer" || scheme == "dpop" => {
                let now = Instant::now();
                let htu = self.absolute(ctx.path, None).to_string();
                let mut state = lock(&self.oauth);
                oauth::authenticate(
                    &config,
                    &mut state,
                    ctx.method.as_str(),
                    &htu,
                    self.clock.epoch_secs(now),
                    now,
                    ctx.headers,
                )
                .map(Some)
                .map_err(Reply::from_outcome)
            }
            _ => Err(Reply::error(
                StatusCode::UNAUTHORIZED,
                "E0000011",
                "Invalid token provided",
                ctx.serial,
            )),
        }
    }

    /// `POST /oauth2/v1/token`: faults and the rate window apply as to API
    /// requests (bucket `other`).
    async fn token_endpoint(&self, ctx: &Ctx<'_>) -> Reply {
        let Some(config) = lock(&self.config).options.oauth.clone() else {
            return Reply::error(
                StatusCode::NOT_FOUND,
                "E0000007",
                "Not found: Resource not found: /oauth2/v1/token (no OAuth app configured)",
                ctx.serial,
            );
        };
        if *ctx.method != Method::POST {
            return Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "E0000022",
                "The endpoint does not support the provided HTTP method",
                ctx.serial,
            );
        }
        if let Some(reply) = self.injected_fault(ctx).await {
            return reply;
        }
        let rate = match self.admit(ctx.bucket) {
            Ok(rate) => rate,
            Err(rate) => return self.rate_limited(ctx, rate),
        };
        let token_url = self.absolute(oauth::TOKEN_PATH, None).to_string();
        let now = Instant::now();
        let outcome = {
            let mut state = lock(&self.oauth);
            oauth::token_endpoint(
                &config,
                &mut state,
                &token_url,
                self.clock.epoch_secs(now),
                now,
                ctx.headers,
                ctx.body,
            )
        };
        let mut reply = Reply::from_outcome(outcome);
        reply.authorized = reply.status.is_success();
        reply.rate = Some(rate);
        reply
    }

    async fn respond_authorized(&self, ctx: &Ctx<'_>, grant: Option<&oauth::Grant>) -> Reply {
        let (forbidden, max_concurrent) = {
            let config = lock(&self.config);
            (config.options.forbidden, config.options.max_concurrent)
        };
        if forbidden {
            return Reply::error(
                StatusCode::FORBIDDEN,
                "E0000006",
                "You do not have permission to perform the requested action",
                ctx.serial,
            );
        }
        if let Some(grant) = grant
            && let Some(needed) = oauth::required_scope(ctx.path)
            && !oauth::has_scope(&grant.scopes, needed)
        {
            return Reply::from_outcome(oauth::insufficient_scope(
                grant.scheme,
                needed,
                ctx.serial,
            ));
        }
        if max_concurrent.is_some_and(|max| ctx.concurrent > max) {
            return self.concurrency_429(ctx);
        }
        if let Some(reply) = self.injected_fault(ctx).await {
            return reply;
        }
        let rate = match self.admit(ctx.bucket) {
            Ok(rate) => rate,
            Err(rate) => return self.rate_limited(ctx, rate),
        };
        let routed = {
            let org = lock(&self.org);
            self.route(&org, ctx)
        };
        let mut reply = match routed {
            Err(reply) => reply,
            Ok(Routed::Object(value)) => Reply::json(StatusCode::OK, &value),
            Ok(Routed::Listing { items, next }) => {
                // A page too big to answer in time: late, or a 500 as when
                // Okta's own request timeout fires.
                let slow = lock(&self.config).options.slow_pages;
                match slow {
                    Some(slow) if items.len() > slow.more_than => match slow.answer {
                        SlowAnswer::Delay(delay) => tokio::time::sleep(delay).await,
                        SlowAnswer::ServerError => {
                            let mut reply = Reply::error(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "E0000009",
                                "Internal Server Error",
                                ctx.serial,
                            );
                            reply.rate = Some(rate);
                            return reply;
                        }
                    },
                    _ => {}
                }
                let mut reply = Reply::json(StatusCode::OK, &Value::Array(items));
                let self_url = self.absolute(ctx.path, ctx.query);
                let mut next_url = next.map(|cursor| self.next_url(ctx, &cursor));
                self.post_fault(ctx, &mut reply, &self_url, &mut next_url);
                reply.links.push(format!("<{self_url}>; rel=\"self\""));
                if let Some(next_url) = next_url {
                    reply.links.push(format!("<{next_url}>; rel=\"next\""));
                }
                reply
            }
        };
        reply.rate = Some(rate);
        reply
    }

    pub(crate) fn concurrency_429(&self, ctx: &Ctx<'_>) -> Reply {
        let reset = epoch_ceil(self.clock.wall(Instant::now()) + Duration::from_secs(1));
        self.rate_limited(
            ctx,
            RateHeaders {
                limit: 0,
                remaining: 0,
                reset,
            },
        )
    }

    pub(crate) fn rate_limited(&self, ctx: &Ctx<'_>, rate: RateHeaders) -> Reply {
        let mut reply = Reply::error(
            StatusCode::TOO_MANY_REQUESTS,
            "E0000047",
            "API call exceeded rate limit due to too many requests.",
            ctx.serial,
        );
        reply.rate = Some(rate);
        reply
    }

    /// Counts a request against its bucket's window, or refuses it.
    fn admit(&self, bucket: Bucket) -> Result<RateHeaders, RateHeaders> {
        let (limit, length) = {
            let config = lock(&self.config);
            (
                config.options.rate_limits.limit(bucket),
                config.options.rate_limits.window,
            )
        };
        let now = Instant::now();
        let mut windows = lock(&self.windows);
        let window = windows.entry(bucket).or_insert(Window {
            started: now,
            count: 0,
        });
        if now >= window.started + length {
            *window = Window {
                started: now,
                count: 0,
            };
        }
        let reset = epoch_ceil(self.clock.wall(window.started + length));
        if window.count >= limit {
            return Err(RateHeaders {
                limit,
                remaining: 0,
                reset,
            });
        }
        window.count += 1;
        Ok(RateHeaders {
            limit,
            remaining: limit - window.count,
            reset,
        })
    }

    /// The bucket window's headers without counting a request.
    pub(crate) fn peek_window(&self, bucket: Bucket) -> RateHeaders {
        let (limit, length) = {
            let config = lock(&self.config);
            (
                config.options.rate_limits.limit(bucket),
                config.options.rate_limits.window,
            )
        };
        let now = Instant::now();
        let windows = lock(&self.windows);
        match windows.get(&bucket) {
            Some(window) if now < window.started + length => RateHeaders {
                limit,
                remaining: limit.saturating_sub(window.count),
                reset: epoch_ceil(self.clock.wall(window.started + length)),
            },
            _ => RateHeaders {
                limit,
                remaining: limit,
                reset: epoch_ceil(self.clock.wall(now + length)),
            },
        }
    }
}

/// The axum handler for every request.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // Only the token endpoint reads a body (a small form).
    let body = if parts.uri.path() == oauth::TOKEN_PATH {
        axum::body::to_bytes(body, 64 * 1024)
            .await
            .unwrap_or_default()
    } else {
        axum::body::Bytes::new()
    };
    let serial = shared.next_request.fetch_add(1, Ordering::SeqCst);
    let request_id = okta_like_id("Xsim", 0x5EED, serial);
    let concurrent = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_flight = InFlight(&shared.in_flight);

    let (latency, jitter) = {
        let config = lock(&shared.config);
        (config.options.latency, config.options.latency_jitter)
    };
    let sample = (mix(serial) >> 11) as f64 / (1u64 << 53) as f64;
    let delay = latency + jitter.mul_f64(sample);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let arrived = Instant::now();

    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let params: Vec<(String, String)> = query
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let bucket = Bucket::of_path(&path);
    let route = Route::of_path(&path);
    let page = match params.iter().find(|(key, _)| key == "after") {
        None => 1,
        Some((_, cursor)) => decode_cursor(cursor).map_or(0, |(page, _)| page + 1),
    };
    let header = |name: header::HeaderName| header_string(&parts.headers, name);
    let authorized = header(header::AUTHORIZATION)
        .is_some_and(|value| value.strip_prefix("SSWS ") == Some(shared.token.as_str()));
    let ctx = Ctx {
        serial,
        method: &parts.method,
        path: &path,
        query: query.as_deref(),
        params,
        bucket,
        route,
        page,
        authorized,
        concurrent,
        headers: &parts.headers,
        body: &body,
    };
    let reply = shared.respond(&ctx).await;

    tracing::debug!(
        method = %parts.method,
        path = %path,
        status = reply.status.as_u16(),
        request_id = %request_id,
        "okta simulator request"
    );
    let record = RequestRecord {
        request_id: request_id.clone(),
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        family: bucket,
        route,
        page,
        status: reply.status.as_u16(),
        authorized: authorized || reply.authorized,
        auth_scheme: header(header::AUTHORIZATION)
            .and_then(|value| value.split(' ').next().map(str::to_owned)),
        dpop: parts.headers.contains_key("dpop"),
        user_agent: header(header::USER_AGENT),
        accept: header(header::ACCEPT),
        retry_for: header_string(
            &parts.headers,
            header::HeaderName::from_static("x-okta-retry-for"),
        ),
        retry_count: header_string(
            &parts.headers,
            header::HeaderName::from_static("x-okta-retry-count"),
        ),
        at: arrived.saturating_duration_since(shared.clock.start),
    };
    {
        let mut stats = lock(&shared.stats);
        stats.requests += 1;
        *stats.requests_by_family.entry(bucket).or_default() += 1;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            stats.rate_limited += 1;
            *stats.rate_limited_by_family.entry(bucket).or_default() += 1;
        }
    }
    {
        let mut log = lock(&shared.log);
        if log.len() == LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(record);
    }

    let link_style = lock(&shared.config).options.link_style;
    let mut builder = Response::builder()
        .status(reply.status)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-okta-request-id", request_id)
        .header(header::DATE, http_date(shared.clock.wall(Instant::now())));
    for (name, value) in &reply.headers {
        builder = builder.header(name, value);
    }
    if let Some(rate) = reply.rate {
        builder = builder
            .header("x-rate-limit-limit", rate.limit)
            .header("x-rate-limit-remaining", rate.remaining)
            .header("x-rate-limit-reset", rate.reset);
    }
    match link_style {
        LinkStyle::SeparateLines => {
            for link in &reply.links {
                builder = builder.header(header::LINK, link);
            }
        }
        LinkStyle::CommaJoined if !reply.links.is_empty() => {
            builder = builder.header(header::LINK, reply.links.join(", "));
        }
        LinkStyle::CommaJoined => {}
    }
    let body = if reply.reset {
        // Half the body, then an error: hyper aborts the connection without
        // the final chunk, so the client sees it closed mid-response.
        let mut first = reply.body;
        first.truncate(first.len() / 2);
        Body::from_stream(futures_util::stream::iter([
            Ok(first),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "okta simulator: injected connection reset",
            )),
        ]))
    } else {
        Body::from(reply.body)
    };
    builder.body(body).unwrap_or_else(|err| {
        tracing::error!(error = %err, "okta simulator built an invalid response");
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
    })
}

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn http_date(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Epoch seconds, rounded up (a reset is never announced early).
fn epoch_ceil(at: SystemTime) -> u64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    since.as_secs() + u64::from(since.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_resets() {
        let at = UNIX_EPOCH + Duration::from_millis(784_887_151_250);
        assert_eq!(http_date(at), "Tue, 15 Nov 1994 08:12:31 GMT");
        assert_eq!(epoch_ceil(at), 784_887_152);
        assert_eq!(epoch_ceil(UNIX_EPOCH + Duration::from_secs(5)), 5);
    }
}

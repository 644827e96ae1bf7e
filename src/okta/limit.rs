//! Rate limiting and retry timing: the client-side budget, per-family pacing
//! from Okta's `X-Rate-Limit-*` headers, and the delay before a retry.
//!
//! Invariant: the arithmetic is pure (callers pass "now" and the jitter
//! sample), and everything that waits does so on tokio's clock, so tests with
//! paused time are exact and instant. The only stateful piece is [`Budget`],
//! the one governor limiter every request of a client goes through.

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use reqwest::header::HeaderMap;

/// Okta's rate-limit buckets, as this client files its requests: one
/// family per bucket, so a 429 hold or a pacing wait on one family holds
/// exactly the requests that drain that bucket in Okta.
///
/// The table (Okta matches a request to the bucket of its exact path first,
/// else of its longest prefix) comes from Okta's own mapping in the
/// terraform provider (`okta/internal/apimutex/apimutex.go` in
/// okta/terraform-provider-okta, `normalizeKey`, which cites Okta's internal
/// "rate-limit-mappings-CLASSIC-DEFAULT" file) and the last published
/// per-bucket table of Okta's docs (`rl-global-mgmt`), both summarized in
/// the team's Okta research, part A.1 #3 and A.2. It classifies GET
/// requests, the only management calls this client makes: the methods that
/// change objects have buckets of their own in Okta (e.g. `POST
/// /api/v1/users/{id}`), which this client never uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `/api/v1/apps` and everything below it except the app itself: the
    /// app-user and app-group listings.
    Apps,
    /// `/api/v1/apps/{id}` exactly (the app object): a bucket of its own.
    AppById,
    /// `/api/v1/groups` and everything below it except a group itself:
    /// group search and list, and the member listings
    /// `/api/v1/groups/{id}/users`, which share this bucket in Okta.
    Groups,
    /// `/api/v1/groups/{id}` exactly (a group object).
    GroupById,
    /// `/api/v1/users` and everything below it except a user itself.
    Users,
    /// `GET /api/v1/users/{idOrLogin}` exactly (a user object).
    UserById,
    /// `/api/v1/logs` (the System Log): a bucket of its own.
    Logs,
    /// Everything else ("most other endpoints" in Okta's table; the token
    /// endpoint and the schemas included).
    Other,
}

impl Family {
    pub const ALL: [Family; 8] = [
        Family::Apps,
        Family::AppById,
        Family::Groups,
        Family::GroupById,
        Family::Users,
        Family::UserById,
        Family::Logs,
        Family::Other,
    ];

    /// The family's name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Apps => "apps",
            Family::AppById => "app_by_id",
            Family::Groups => "groups",
            Family::GroupById => "group_by_id",
            Family::Users => "users",
            Family::UserById => "user_by_id",
            Family::Logs => "logs",
            Family::Other => "other",
        }
    }

    /// The family of a GET request's path (percent-encoded, without the
    /// query; a trailing `/` does not matter). This match is the table.
    pub fn of_path(path: &str) -> Family {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match segments.as_slice() {
            ["", "api", "v1", "apps", _] => Family::AppById,
            ["", "api", "v1", "apps", ..] => Family::Apps,
            ["", "api", "v1", "groups", _] => Family::GroupById,
            ["", "api", "v1", "groups", ..] => Family::Groups,
            ["", "api", "v1", "users", _] => Family::UserById,
            ["", "api", "v1", "users", ..] => Family::Users,
            ["", "api", "v1", "logs"] => Family::Logs,
            _ => Family::Other,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Family::Apps => 0,
            Family::AppById => 1,
            Family::Groups => 2,
            Family::GroupById => 3,
            Family::Users => 4,
            Family::UserById => 5,
            Family::Logs => 6,
            Family::Other => 7,
        }
    }
}

/// The `X-Rate-Limit-*` headers of one response. Missing or unparsable
/// headers are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// `X-Rate-Limit-Limit`; 0 on a concurrency-limit 429.
    pub limit: Option<u32>,
    /// `X-Rate-Limit-Remaining`.
    pub remaining: Option<u32>,
    /// `X-Rate-Limit-Reset`, UTC epoch seconds.
    pub reset: Option<i64>,
}

impl RateLimitHeaders {
    pub fn from_headers(headers: &HeaderMap) -> RateLimitHeaders {
        fn number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
            headers.get(name)?.to_str().ok()?.trim().parse().ok()
        }
        RateLimitHeaders {
            limit: number(headers, "x-rate-limit-limit"),
            remaining: number(headers, "x-rate-limit-remaining"),
            reset: number(headers, "x-rate-limit-reset"),
        }
    }
}

/// Parses an HTTP `Date` header (IMF-fixdate, e.g. `Tue, 15 Nov 1994 08:12:31 GMT`).
pub fn parse_http_date(value: &str) -> Option<SystemTime> {
    let parsed = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    let secs = u64::try_from(parsed.timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Timing knobs of retries and pacing. The defaults follow okta-sdk-golang
/// (+1 s after the reset, by the server's clock) plus jitter so that several
/// clients do not return in the same instant.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// First backoff after a 5xx / transport error.
    pub backoff_initial: Duration,
    /// Ceiling of the exponential backoff.
    pub backoff_max: Duration,
    /// Added to "until the reset": the reset has one-second resolution and
    /// the window may close a little after the second it names.
    pub reset_slack: Duration,
    /// Upper bound of the uniform jitter added to rate-limit waits.
    pub rate_limit_jitter: Duration,
    /// No rate-limit wait is longer than this (Okta windows are 60 s, so a
    /// reset further away is an estimate or a clock problem).
    pub max_rate_limit_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            reset_slack: Duration::from_secs(1),
            rate_limit_jitter: Duration::from_secs(1),
            max_rate_limit_wait: Duration::from_secs(90),
        }
    }
}

/// Why an attempt is retried.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryCause {
    /// 429, with its rate-limit headers and the server's `Date` header.
    RateLimited {
        headers: RateLimitHeaders,
        server_date: Option<SystemTime>,
    },
    /// 5xx (incl. 503 E0000010) or 408.
    ServerError,
    /// Timeout, connection error, broken body.
    Transport,
}

/// How long to wait before retry number `attempt` (1 = the first retry).
///
/// * 429: until `X-Rate-Limit-Reset` measured on the server's clock (`Date`;
///   `local_now` only when the response had none) plus `reset_slack`, plus
///   uniform jitter in `[0, rate_limit_jitter)`, capped at
///   `max_rate_limit_wait`. A reset in the past waits only slack + jitter. A
///   concurrency 429 (`X-Rate-Limit-Limit: 0`, reset only an estimate) waits
///   the shorter of that and the exponential backoff. No reset header: backoff.
/// * 5xx / transport: exponential backoff `backoff_initial * 2^(attempt-1)`
///   capped at `backoff_max`, with "equal jitter": uniform in `[cap/2, cap]`.
///
/// `jitter` is a sample in `[0, 1)` (clamped), so tests can pin it.
pub fn retry_delay(
    attempt: u32,
    cause: &RetryCause,
    local_now: SystemTime,
    policy: &RetryPolicy,
    jitter: f64,
) -> Duration {
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let backoff = backoff_ceiling(attempt, policy);
    let equal_jitter = backoff / 2 + (backoff / 2).mul_f64(jitter);
    match cause {
        RetryCause::RateLimited {
            headers,
            server_date,
        } => {
            let now = server_date.unwrap_or(local_now);
            let until_reset = headers
                .reset
                .map(|reset| until_epoch(reset, now) + policy.reset_slack);
            let base = match (headers.limit, until_reset) {
                (Some(0), Some(wait)) => wait.min(equal_jitter),
                (_, Some(wait)) => wait,
                (_, None) => equal_jitter,
            };
            (base + policy.rate_limit_jitter.mul_f64(jitter)).min(policy.max_rate_limit_wait)
        }
        RetryCause::ServerError | RetryCause::Transport => equal_jitter,
    }
}

fn backoff_ceiling(attempt: u32, policy: &RetryPolicy) -> Duration {
    let doublings = attempt.saturating_sub(1).min(20);
    policy
        .backoff_initial
        .saturating_mul(1 << doublings)
        .min(policy.backoff_max)
}

/// The part of a bucket this client may use: `share_percent` of the
/// window's `X-Rate-Limit-Limit` (Okta gives one token 50 % of each bucket
/// by default; the rest is left to the org's other integrations). At least
/// one request, at most the whole limit.
pub fn share_of(limit: u32, share_percent: u8) -> u32 {
    let share = u64::from(share_percent.clamp(1, 100));
    (u64::from(limit) * share)
        .div_ceil(100)
        .clamp(1, u64::from(limit.max(1))) as u32
}

/// How long to hold back the next request of a family after a successful
/// response carrying these headers, so the client stays inside its share of
/// the bucket ([`share_of`]) and Okta never has to refuse it. The requests
/// this client may still send in the window are `remaining` minus the part
/// of the limit reserved for others:
/// * none left: wait until the reset (+ slack), capped at
///   `max_rate_limit_wait`;
/// * otherwise, or without complete headers, or on a concurrency report
///   (`limit == 0`): no delay.
///
/// Within its share the client does not slow down: spreading the last
/// requests of a window over the time to its reset sends no more requests
/// per window, it only delays them (and a listing's last pages with them).
/// The client-wide budget (`requests_per_minute`) is what spaces requests.
pub fn pacing_delay(
    headers: &RateLimitHeaders,
    server_now: SystemTime,
    policy: &RetryPolicy,
    share_percent: u8,
) -> Duration {
    let (Some(limit), Some(remaining), Some(reset)) =
        (headers.limit, headers.remaining, headers.reset)
    else {
        return Duration::ZERO;
    };
    if limit == 0 {
        return Duration::ZERO;
    }
    let reserved = limit - share_of(limit, share_percent);
    if remaining > reserved {
        return Duration::ZERO;
    }
    (until_epoch(reset, server_now) + policy.reset_slack).min(policy.max_rate_limit_wait)
}

/// Okta's clock as seen from here, finer than its `Date` header.
///
/// `Date` has one-second resolution, so "now" read from a single response
/// is up to a second early, and every wait for a reset computed from it up
/// to a second long. A response's `Date` (truncated when the response was
/// made) minus the local time it arrived is never more than the true
/// offset between the clocks; the largest such difference seen so far is a
/// lower bound that closes in on the offset within a few responses (minus
/// the network latency). Estimating Okta's time from it never runs ahead of
/// Okta's clock, so a wait for a reset never ends early.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerClock {
    /// Largest `Date − local arrival` seen, in milliseconds.
    offset_ms: Option<i64>,
}

impl ServerClock {
    /// Takes one response's `Date` and the local time it arrived.
    pub fn observe(&mut self, date: SystemTime, local: SystemTime) {
        let offset = epoch_ms(date) - epoch_ms(local);
        self.offset_ms = Some(self.offset_ms.map_or(offset, |seen| seen.max(offset)));
    }

    /// Okta's time at local time `local`, or `None` before any `Date`.
    pub fn now(&self, local: SystemTime) -> Option<SystemTime> {
        let ms = epoch_ms(local) + self.offset_ms?;
        Some(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).ok()?))
    }
}

fn epoch_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Whether a rate-limit observation `(reset, remaining)` is at least as new
/// as the one seen before: a later window, or the same window with no more
/// requests left (remaining only falls within a window). Lets the pacing
/// ignore responses that arrive out of order.
pub fn supersedes(seen: Option<(i64, u32)>, new: (i64, u32)) -> bool {
    match seen {
        None => true,
        Some((reset, remaining)) => new.0 > reset || (new.0 == reset && new.1 <= remaining),
    }
}

/// Time from `now` until the epoch second `reset`; zero when it has passed.
fn until_epoch(reset: i64, now: SystemTime) -> Duration {
    let Ok(reset) = u64::try_from(reset) else {
        return Duration::ZERO;
    };
    (UNIX_EPOCH + Duration::from_secs(reset))
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
}

/// Spacing of the client-side budget: 1 % more than `60 s / rpm`.
///
/// Why burst 1 and a margin: a GCRA limiter with burst `b` lets through
/// `b + rpm - 1` requests in some 60 s window (the burst at once, then one
/// every `60/rpm` s), so any burst above 1 breaks "never more than rpm in any
/// 60 s window". With burst 1 exactly `rpm` requests fit in a 60 s window, the
/// last one `60 - 60/rpm` s after the first, so a request that reaches Okta
/// earlier than its predecessors (network jitter) could still land in a window
/// that already holds `rpm`. Stretching the spacing by 1 % makes the `rpm + 1`-th
/// request leave 60.6 s after the first, which absorbs up to 600 ms of jitter.
pub fn budget_interval(requests_per_minute: NonZeroU32) -> Duration {
    const STRETCHED_MINUTE_NANOS: u64 = 60_600_000_000;
    Duration::from_nanos(STRETCHED_MINUTE_NANOS.div_ceil(u64::from(requests_per_minute.get())))
}

/// A governor clock that reads tokio's clock, so the budget follows paused
/// time in tests and real monotonic time otherwise.
#[derive(Debug, Clone)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> TokioClock {
        TokioClock {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.start.elapsed())
    }
}

/// The client-wide request budget: one governor limiter, burst 1, spacing
/// [`budget_interval`].
#[derive(Debug)]
pub struct Budget {
    limiter: RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>,
    clock: TokioClock,
}

impl Budget {
    pub fn new(requests_per_minute: NonZeroU32) -> Budget {
        let interval = budget_interval(requests_per_minute);
        // `with_period` is `None` only for a zero interval, impossible here:
        // the interval is at least 60.6e9 / u32::MAX ns, i.e. 14 ns.
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN).allow_burst(NonZeroU32::MIN));
        let clock = TokioClock::new();
        Budget {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
        }
    }

    /// Waits (on tokio's clock) until the budget allows one more request,
    /// and takes it.
    pub async fn acquire(&self) {
        loop {
            match self.limiter.check() {
                Ok(()) => return,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    tokio::time::sleep(wait.max(Duration::from_micros(1))).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn rate_limited(limit: u32, reset: Option<i64>, date: Option<u64>) -> RetryCause {
        RetryCause::RateLimited {
            headers: RateLimitHeaders {
                limit: Some(limit),
                remaining: Some(0),
                reset,
            },
            server_date: date.map(at),
        }
    }

    /// GUARD: the families are Okta's buckets (research A.1 #3): member
    /// listings share `groups` with group search, the app and a user are
    /// buckets of their own, the System Log too.
    #[test]
    fn families_are_oktas_buckets() {
        let cases = [
            ("/api/v1/apps", Family::Apps),
            ("/api/v1/apps/0oa1/users", Family::Apps),
            ("/api/v1/apps/0oa1/groups", Family::Apps),
            ("/api/v1/apps/0oa1/users/00u1", Family::Apps),
            ("/api/v1/apps/0oa1", Family::AppById),
            ("/api/v1/apps/0oa1/", Family::AppById),
            ("/api/v1/groups", Family::Groups),
            ("/api/v1/groups/", Family::Groups),
            ("/api/v1/groups/00g1/users", Family::Groups),
            ("/api/v1/groups/00g1", Family::GroupById),
            ("/api/v1/users", Family::Users),
            ("/api/v1/users/00u1/groups", Family::Users),
            ("/api/v1/users/00u1", Family::UserById),
            ("/api/v1/logs", Family::Logs),
            ("/api/v1/meta/schemas/apps/0oa1/default", Family::Other),
            ("/oauth2/v1/token", Family::Other),
            ("/", Family::Other),
        ];
        for (path, family) in cases {
            assert_eq!(Family::of_path(path), family, "{path}");
        }
        for family in Family::ALL {
            assert_eq!(Family::ALL[family.index()], family);
        }
        let names: Vec<&str> = Family::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(
            names,
            [
                "apps",
                "app_by_id",
                "groups",
                "group_by_id",
                "users",
                "user_by_id",
                "logs",
                "other"
            ]
        );
    }

    #[test]
    fn headers_are_parsed_leniently() {
        let mut headers = HeaderMap::new();
        headers.insert("X-Rate-Limit-Limit", "600".parse().unwrap());
        headers.insert("x-rate-limit-remaining", " 12 ".parse().unwrap());
        headers.insert("X-Rate-Limit-Reset", "soon".parse().unwrap());
        assert_eq!(
            RateLimitHeaders::from_headers(&headers),
            RateLimitHeaders {
                limit: Some(600),
                remaining: Some(12),
                reset: None
            }
        );
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Tue, 15 Nov 1994 08:12:31 GMT"),
            Some(at(784_887_151))
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn rate_limited_waits_until_reset_by_the_server_clock() {
        let policy = RetryPolicy::default();
        // The local clock is 100 s ahead of the server; the server's clock wins.
        let delay = retry_delay(
            1,
            &rate_limited(600, Some(1_030), Some(1_000)),
            at(1_100),
            &policy,
            0.0,
        );
        assert_eq!(delay, Duration::from_secs(31));
        let delay = retry_delay(
            1,
            &rate_limited(600, Some(1_030), Some(1_000)),
            at(1_100),
            &policy,
            0.5,
        );
        assert_eq!(delay, Duration::from_millis(31_500));
    }

    #[test]
    fn rate_limited_without_date_uses_the_local_clock() {
        let policy = RetryPolicy::default();
        let delay = retry_delay(
            1,
            &rate_limited(600, Some(1_010), None),
            at(1_000),
            &policy,
            0.0,
        );
        assert_eq!(delay, Duration::from_secs(11));
    }

    #[test]
    fn reset_in_the_past_waits_only_slack_and_jitter() {
        let policy = RetryPolicy::default();
        let delay = retry_delay(
            3,
            &rate_limited(600, Some(990), Some(1_000)),
            at(1_000),
            &policy,
            0.25,
        );
        assert_eq!(delay, Duration::from_millis(1_250));
    }

    #[test]
    fn rate_limit_wait_is_capped() {
        let policy = RetryPolicy::default();
        let delay = retry_delay(
            1,
            &rate_limited(600, Some(1_000 + 3_600), Some(1_000)),
            at(1_000),
            &policy,
            0.9,
        );
        assert_eq!(delay, policy.max_rate_limit_wait);
    }

    #[test]
    fn concurrency_429_waits_the_shorter_of_backoff_and_reset_estimate() {
        let policy = RetryPolicy::default();
        // Reset estimate 59 s away; attempt 1 backoff is 250..500 ms.
        let delay = retry_delay(
            1,
            &rate_limited(0, Some(1_059), Some(1_000)),
            at(1_000),
            &policy,
            0.0,
        );
        assert_eq!(delay, Duration::from_millis(250));
        // Reset estimate closer than the backoff.
        let delay = retry_delay(
            8,
            &rate_limited(0, Some(1_001), Some(1_000)),
            at(1_000),
            &policy,
            0.0,
        );
        assert_eq!(delay, Duration::from_secs(2));
    }

    #[test]
    fn rate_limited_without_reset_backs_off() {
        let policy = RetryPolicy::default();
        let cause = RetryCause::RateLimited {
            headers: RateLimitHeaders::default(),
            server_date: None,
        };
        assert_eq!(
            retry_delay(2, &cause, at(0), &policy, 1.0),
            Duration::from_millis(1_000 + 1_000)
        );
    }

    #[test]
    fn server_error_backoff_grows_exponentially_and_is_capped() {
        let policy = RetryPolicy::default();
        let ceilings: Vec<Duration> = (1..=8)
            .map(|attempt| retry_delay(attempt, &RetryCause::ServerError, at(0), &policy, 1.0))
            .collect();
        let expected_ms = [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000];
        assert_eq!(
            ceilings,
            expected_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect::<Vec<_>>()
        );
        // Huge attempt numbers do not overflow.
        assert_eq!(
            retry_delay(u32::MAX, &RetryCause::Transport, at(0), &policy, 1.0),
            policy.backoff_max
        );
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let policy = RetryPolicy::default();
        for attempt in 1..10 {
            let ceiling = retry_delay(attempt, &RetryCause::ServerError, at(0), &policy, 1.0);
            for sample in [0.0, 0.1, 0.5, 0.999, -3.0, 7.0, f64::NAN] {
                let delay = retry_delay(attempt, &RetryCause::Transport, at(0), &policy, sample);
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "{attempt} {sample}"
                );
            }
            for sample in [0.0, 0.5, 0.999, 2.0] {
                let delay = retry_delay(
                    attempt,
                    &rate_limited(600, Some(1_020), Some(1_000)),
                    at(0),
                    &policy,
                    sample,
                );
                assert!(delay >= Duration::from_secs(21), "{delay:?}");
                assert!(delay <= Duration::from_secs(22), "{delay:?}");
            }
        }
    }

    #[test]
    fn pacing_is_free_while_plenty_is_left() {
        let policy = RetryPolicy::default();
        let headers = RateLimitHeaders {
            limit: Some(600),
            remaining: Some(61),
            reset: Some(1_030),
        };
        assert_eq!(
            pacing_delay(&headers, at(1_000), &policy, 100),
            Duration::ZERO
        );
        assert_eq!(
            pacing_delay(&RateLimitHeaders::default(), at(1_000), &policy, 100),
            Duration::ZERO
        );
    }

    #[test]
    fn pacing_uses_the_whole_share_then_waits_for_the_reset() {
        let policy = RetryPolicy::default();
        let one_left = RateLimitHeaders {
            limit: Some(600),
            remaining: Some(1),
            reset: Some(1_030),
        };
        assert_eq!(
            pacing_delay(&one_left, at(1_000), &policy, 100),
            Duration::ZERO
        );
        let none_left = RateLimitHeaders {
            remaining: Some(0),
            ..one_left
        };
        assert_eq!(
            pacing_delay(&none_left, at(1_000), &policy, 100),
            Duration::from_secs(31)
        );
        // A reset already passed: only the slack.
        assert_eq!(
            pacing_delay(&none_left, at(1_040), &policy, 100),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn pacing_waits_for_the_reset_when_nothing_is_left() {
        let policy = RetryPolicy::default();
        let headers = RateLimitHeaders {
            limit: Some(100),
            remaining: Some(0),
            reset: Some(1_012),
        };
        assert_eq!(
            pacing_delay(&headers, at(1_000), &policy, 100),
            Duration::from_secs(13)
        );
        // A concurrency report says nothing about the time bucket.
        let concurrency = RateLimitHeaders {
            limit: Some(0),
            ..headers
        };
        assert_eq!(
            pacing_delay(&concurrency, at(1_000), &policy, 100),
            Duration::ZERO
        );
        // A limit of 1 with a 50 % share still gets its one request.
        let tiny = RateLimitHeaders {
            limit: Some(1),
            remaining: Some(0),
            reset: Some(1_004),
        };
        assert_eq!(
            pacing_delay(&tiny, at(1_000), &policy, 50),
            Duration::from_secs(5)
        );
        assert_eq!(share_of(1, 50), 1);
    }

    #[test]
    fn pacing_keeps_to_the_clients_share_of_the_bucket() {
        let policy = RetryPolicy::default();
        // 100 per window, half of it ours: 50 used leaves nothing for us.
        let at_share = RateLimitHeaders {
            limit: Some(100),
            remaining: Some(50),
            reset: Some(1_006),
        };
        assert_eq!(
            pacing_delay(&at_share, at(1_000), &policy, 50),
            Duration::from_secs(7)
        );
        // The whole bucket is ours at 100 %: 50 left is plenty.
        assert_eq!(
            pacing_delay(&at_share, at(1_000), &policy, 100),
            Duration::ZERO
        );
        // One of ours left: no delay.
        let one = RateLimitHeaders {
            remaining: Some(51),
            ..at_share
        };
        assert_eq!(pacing_delay(&one, at(1_000), &policy, 50), Duration::ZERO);
        // Others used part of our half too: wait all the same.
        let others = RateLimitHeaders {
            remaining: Some(20),
            ..at_share
        };
        assert_eq!(
            pacing_delay(&others, at(1_000), &policy, 50),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn a_share_is_at_least_one_request_and_at_most_the_limit() {
        assert_eq!(share_of(100, 50), 50);
        assert_eq!(share_of(101, 50), 51);
        assert_eq!(share_of(1, 1), 1);
        assert_eq!(share_of(600, 100), 600);
        assert_eq!(share_of(600, 0), 6, "0 % is treated as 1 %");
        assert_eq!(share_of(600, 255), 600);
    }

    #[test]
    fn server_clock_closes_in_on_the_offset_without_running_ahead() {
        let local = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let mut clock = ServerClock::default();
        assert_eq!(clock.now(local(5_000)), None);
        // Okta is 2.7 s ahead; Dates are truncated to the second and arrive
        // 20 ms after they were made.
        let date_of = |arrival: u64| {
            let server_ms = arrival - 20 + 2_700;
            UNIX_EPOCH + Duration::from_secs(server_ms / 1_000)
        };
        clock.observe(date_of(10_000), local(10_000));
        // One response: up to a second behind Okta.
        assert_eq!(clock.now(local(10_000)), Some(local(12_000)));
        for arrival in (10_000..12_000).step_by(97) {
            clock.observe(date_of(arrival), local(arrival));
        }
        let estimate = clock.now(local(20_000)).unwrap();
        let truth = local(22_700);
        assert!(estimate <= truth, "never ahead of Okta: {estimate:?}");
        assert!(
            truth.duration_since(estimate).unwrap() <= Duration::from_millis(120),
            "{:?} behind",
            truth.duration_since(estimate).unwrap()
        );
    }

    #[test]
    fn newer_observations_supersede_stale_ones() {
        assert!(supersedes(None, (100, 5)));
        assert!(supersedes(Some((100, 5)), (100, 4)));
        assert!(supersedes(Some((100, 5)), (100, 5)));
        assert!(
            !supersedes(Some((100, 5)), (100, 6)),
            "late response of the same window"
        );
        assert!(supersedes(Some((100, 0)), (160, 99)), "a new window");
        assert!(
            !supersedes(Some((160, 99)), (100, 0)),
            "late response of an old window"
        );
    }

    #[test]
    fn budget_interval_is_a_stretched_minute_over_rpm() {
        assert_eq!(
            budget_interval(NonZeroU32::new(600).unwrap()),
            Duration::from_millis(101)
        );
        assert_eq!(
            budget_interval(NonZeroU32::new(1).unwrap()),
            Duration::from_millis(60_600)
        );
        assert!(budget_interval(NonZeroU32::MAX) > Duration::ZERO);
    }

    /// GUARD: the budget must never allow more than `rpm` requests in any
    /// 60 s window, also right after an idle period (no saved-up burst).
    #[tokio::test(start_paused = true)]
    async fn budget_never_exceeds_rpm_in_any_sixty_second_window() {
        let rpm = 30;
        let budget = Budget::new(NonZeroU32::new(rpm).unwrap());
        let start = tokio::time::Instant::now();
        let mut sent = Vec::new();
        // Idle first, so a burst-capable limiter would have saved up tokens.
        tokio::time::sleep(Duration::from_secs(600)).await;
        for _ in 0..(3 * rpm) {
            budget.acquire().await;
            sent.push(start.elapsed());
        }
        for (i, first) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .take_while(|t| **t < *first + Duration::from_secs(60))
                .count();
            assert!(
                in_window <= rpm as usize,
                "{in_window} requests after {first:?}"
            );
        }
        // And it does not throttle needlessly: 90 requests take ~3 minutes.
        let span = *sent.last().unwrap() - sent[0];
        assert!(span < Duration::from_secs(182), "{span:?}");
    }
}

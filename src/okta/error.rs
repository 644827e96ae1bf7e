//! Errors of the Okta client: [`OktaError`] and the OAuth setup mistakes
//! ([`OAuthError`]) it wraps.
//!
//! The bottom of the credential code: `oauth` and `auth` build these errors,
//! and this file names neither of them, so the imports of `error` ←
//! `oauth` ← `auth` go one way.
//!
//! Invariant: every message is complete on its own (it names the endpoint and
//! includes the underlying cause), so no variant exposes a `source()`; printing
//! a cause chain would only repeat it. No message ever contains the API token,
//! an OAuth access token or key material: they only exist inside request
//! headers and bodies, which no variant carries.

use std::fmt;
use std::time::Duration;

use crate::okta::limit::Family;
use crate::okta::page::PageError;

/// Method and path (without the query) of a request: what errors, logs and
/// metrics name. The query is left out because it carries cursors and search
/// expressions that only add noise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub method: &'static str,
    pub path: String,
}

impl Endpoint {
    pub fn get(url: &url::Url) -> Endpoint {
        Endpoint {
            method: "GET",
            path: url.path().to_owned(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// What went wrong with one attempt: the HTTP status and Okta's error body
/// fields, or a transport error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    pub status: Option<u16>,
    /// `errorCode`, e.g. `E0000047`.
    pub error_code: Option<String>,
    /// `errorSummary`.
    pub error_summary: Option<String>,
    /// The `X-Okta-Request-Id` response header (quote it to Okta support).
    pub request_id: Option<String>,
    /// Timeout / connection error text when there was no HTTP response.
    pub transport: Option<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(status) = self.status {
            parts.push(format!("HTTP {status}"));
        }
        if let Some(code) = &self.error_code {
            parts.push(code.clone());
        }
        if let Some(summary) = &self.error_summary {
            parts.push(format!("{summary:?}"));
        }
        if let Some(transport) = &self.transport {
            parts.push(transport.clone());
        }
        if parts.is_empty() {
            parts.push("no response".to_owned());
        }
        f.write_str(&parts.join(" "))?;
        if let Some(request_id) = &self.request_id {
            write!(f, ", request id {request_id}")?;
        }
        Ok(())
    }
}

/// How big an oversized response body was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySize {
    /// Its `Content-Length` (nothing was read).
    Announced(u64),
    /// No (or a smaller) `Content-Length`: reading stopped after this many
    /// bytes.
    MoreThan(u64),
}

impl fmt::Display for BodySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodySize::Announced(n) => write!(f, "{n} bytes (Content-Length)"),
            BodySize::MoreThan(n) => write!(f, "more than {n} bytes (reading stopped there)"),
        }
    }
}

/// The Okta object a 404 was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    App(String),
    Group(String),
    Other,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::App(id) => write!(f, "no app with id {id} (check okta.app_id)"),
            Resource::Group(id) => {
                write!(f, "no group with id {id} (it may have been deleted)")
            }
            Resource::Other => f.write_str("resource not found"),
        }
    }
}

/// Errors of [`crate::okta::OktaClient`].
#[derive(Debug, thiserror::Error)]
pub enum OktaError {
    /// The client configuration cannot work (an org URL without a host, a
    /// token that cannot be sent in a header). Permanent until the config
    /// changes.
    #[error("invalid okta client configuration: {reason}")]
    InvalidConfig { reason: String },

    /// reqwest could not build its HTTP client (TLS setup). Permanent.
    #[error("could not build the HTTP client for okta: {reason}")]
    HttpClient { reason: String },

    /// An id given to the client is not a plausible Okta id, so it is refused
    /// before it can change the request path. Permanent.
    #[error("invalid okta {kind} id {id:?}: expected 1 to 128 letters, digits, '-' or '_'")]
    InvalidId { kind: &'static str, id: String },

    /// 401: the credential was refused. Permanent until the token is replaced.
    #[error(
        "okta rejected the API token on {endpoint} ({failure}): the SSWS token is invalid, \
         expired (tokens expire after 30 days unused) or revoked; create a new one in the \
         Okta Admin Console (Security > API > Tokens) and update WRITER_SYNC_OKTA_API_TOKEN, \
         okta.api_token_file or the okta-api-token credential"
    )]
    Unauthorized {
        endpoint: Endpoint,
        failure: Box<Failure>,
    },

    /// 403: the credential is valid but may not read this endpoint.
    /// Permanent until the admin role / scopes change.
    #[error(
        "okta refused {endpoint} ({failure}): the token's admin lacks permission / the OAuth \
         app lacks the scope or admin role needed for {endpoint} (it needs {scope} and an \
         admin role that can read it, e.g. Read-Only Administrator)"
    )]
    Forbidden {
        endpoint: Endpoint,
        scope: &'static str,
        failure: Box<Failure>,
    },

    /// 404: the app or group in the path does not exist (a wrong
    /// `okta.app_id`, or a group deleted while the run was reading it).
    #[error("{resource} ({endpoint}: {failure})")]
    NotFound {
        endpoint: Endpoint,
        resource: Resource,
        failure: Box<Failure>,
    },

    /// Any other status that retrying cannot fix (400, 405, 3xx…).
    #[error("unexpected okta response to {endpoint}: {failure}")]
    UnexpectedStatus {
        endpoint: Endpoint,
        failure: Box<Failure>,
    },

    /// 429, 5xx, timeouts or connection errors kept happening until the retry
    /// budget was spent. Transient: the next run may well succeed.
    #[error(
        "gave up on {endpoint} after {attempts} attempts in {:.1}s (retry budget {}s): {last}",
        elapsed.as_secs_f64(),
        budget.as_secs()
    )]
    RetriesExhausted {
        endpoint: Endpoint,
        attempts: u32,
        elapsed: Duration,
        budget: Duration,
        last: Box<Failure>,
    },

    /// OAuth 2.0: the token endpoint refused the client (wrong key, scope,
    /// DPoP, clock), or an API request refused the access token. Permanent
    /// until the configuration or the Okta app changes.
    #[error(transparent)]
    OAuth(Box<OAuthError>),

    /// A response body larger than the configured cap
    /// (`okta.max_response_bytes`): refused from its `Content-Length`
    /// before reading, or abandoned once that many bytes were read. Not
    /// retried: Okta would send the same again, and a body this big is
    /// either hostile or a listing no page of which should be that large.
    #[error(
        "the okta response to {endpoint} is too large: {size}, and okta.max_response_bytes is \
         {limit} bytes; the response was not used"
    )]
    ResponseTooLarge {
        endpoint: Endpoint,
        size: BodySize,
        limit: u64,
    },

    /// A 2xx body that is not the JSON we expect (truncated, wrong shape).
    /// Not retried: the response was complete as far as HTTP is concerned.
    #[error("could not decode the okta response to {endpoint}: {reason}")]
    Decode { endpoint: Endpoint, reason: String },

    /// The `Link` headers of a listing cannot be followed safely (foreign
    /// host, cursor loop, malformed header, too many pages). The listing is
    /// abandoned: a partial listing is never returned.
    #[error("cannot follow the pages of {endpoint}: {reason}")]
    Pagination {
        endpoint: Endpoint,
        reason: PageError,
    },
}

impl OktaError {
    /// Whether retrying the whole operation later (the next run) may succeed
    /// without anyone changing the configuration or Okta.
    pub fn is_transient(&self) -> bool {
        matches!(self, OktaError::RetriesExhausted { .. })
    }

    /// A short stable label for metrics (`okta_errors_total{kind=…}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            OktaError::InvalidConfig { .. } => "invalid_config",
            OktaError::HttpClient { .. } => "http_client",
            OktaError::InvalidId { .. } => "invalid_id",
            OktaError::Unauthorized { .. } => "unauthorized",
            OktaError::Forbidden { .. } => "forbidden",
            OktaError::NotFound { .. } => "not_found",
            OktaError::UnexpectedStatus { .. } => "unexpected_status",
            OktaError::RetriesExhausted { .. } => "retries_exhausted",
            OktaError::OAuth(_) => "oauth",
            OktaError::ResponseTooLarge { .. } => "response_too_large",
            OktaError::Decode { .. } => "decode",
            OktaError::Pagination { .. } => "pagination",
        }
    }
}

/// OAuth failures: each names the client id and says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error(
        "okta refused the client assertion of OAuth client {client_id} ({detail}): the private \
         key ({key_source}) does not match a public key registered for the app{kid_hint}, or \
         {client_id} is not the service app's client id. Register this key's public half in the \
         app (Applications > the app > General > Public Keys) or fix okta.oauth.client_id, \
         okta.oauth.private_key_file or okta.oauth.key_id"
    )]
    InvalidClient {
        client_id: String,
        key_source: String,
        kid_hint: String,
        detail: String,
    },
    #[error(
        "okta refused the client assertion of OAuth client {client_id} for its time claims \
         ({detail}){skew}: the clock of this host is probably wrong; check it and its NTP \
         synchronisation (timedatectl status, chronyc tracking)"
    )]
    ClockSkew {
        client_id: String,
        detail: String,
        skew: String,
    },
    #[error(
        "okta did not grant the scopes \"{requested}\" to OAuth client {client_id} ({detail}): \
         grant each of them to the app (its Okta API Scopes tab; a Super Admin must do it) or \
         remove the ones not granted from okta.oauth.scopes"
    )]
    ScopeNotGranted {
        client_id: String,
        requested: String,
        detail: String,
    },
    #[error(
        "the Okta app of OAuth client {client_id} requires DPoP ({detail}) but okta.oauth.dpop = \
         \"never\": set dpop = \"auto\" (or \"always\")"
    )]
    DpopRequired { client_id: String, detail: String },
    #[error(
        "okta rejected the DPoP proof of OAuth client {client_id} on {endpoint} ({detail}){skew}; \
         DPoP proofs carry the time of this host, so check its clock and NTP synchronisation"
    )]
    DpopRejected {
        client_id: String,
        endpoint: Endpoint,
        detail: String,
        skew: String,
    },
    #[error(
        "okta refused the client credentials grant of OAuth client {client_id} ({detail}): the \
         app must be an API Services app allowed to use the client credentials grant"
    )]
    GrantNotAllowed { client_id: String, detail: String },
    #[error(
        "okta refused a token for OAuth client {client_id}: {failure} ({detail}); check that \
         okta.org_url is the Okta org itself (its /oauth2/v1/token is the only one that issues \
         Okta API scopes) and the service app's settings"
    )]
    TokenRefused {
        client_id: String,
        failure: Box<Failure>,
        detail: String,
    },
    #[error("okta sent an unusable token response to OAuth client {client_id}: {reason}")]
    BadTokenResponse { client_id: String, reason: String },
    #[error(
        "okta rejected the access token of OAuth client {client_id} on {endpoint} even after a \
         renewal ({detail}{failure}): check that okta.org_url is the org the service app belongs \
         to and that the app is active"
    )]
    TokenRejected {
        client_id: String,
        endpoint: Endpoint,
        detail: String,
        failure: Box<Failure>,
    },
    #[error(
        "okta refused {endpoint} to OAuth client {client_id} ({failure}): the access token lacks \
         the scope {scope} (granted: {granted}); add {scope} to okta.oauth.scopes and grant it to \
         the app (Okta API Scopes tab)"
    )]
    MissingScope {
        client_id: String,
        endpoint: Endpoint,
        scope: String,
        granted: String,
        failure: Box<Failure>,
    },
    #[error(
        "okta refused {endpoint} to OAuth client {client_id} ({failure}) although the token has \
         the scope {scope}: the app's admin role does not cover this resource; assign the service \
         app an admin role that can read it (e.g. Read-Only Administrator, Admin Roles tab)"
    )]
    MissingRole {
        client_id: String,
        endpoint: Endpoint,
        scope: String,
        failure: Box<Failure>,
    },
    #[error(
        "could not sign the {what} of OAuth client {client_id} (system random generator failed)"
    )]
    Signing {
        client_id: String,
        what: &'static str,
    },
}

impl From<OAuthError> for OktaError {
    fn from(err: OAuthError) -> Self {
        OktaError::OAuth(Box::new(err))
    }
}

/// Which scope an endpoint family needs, for the 403 message.
pub(crate) fn required_scope(family: Family) -> &'static str {
    match family {
        Family::Apps | Family::AppById => "okta.apps.read",
        Family::Groups | Family::GroupById => "okta.groups.read",
        Family::Users | Family::UserById => "okta.users.read",
        Family::Logs => "okta.logs.read",
        Family::Other => "the okta.*.read scope of that endpoint",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_display_names_status_code_summary_and_request_id() {
        let failure = Failure {
            status: Some(503),
            error_code: Some("E0000010".into()),
            error_summary: Some("Service is in read only mode".into()),
            request_id: Some("reqABC".into()),
            transport: None,
        };
        assert_eq!(
            failure.to_string(),
            "HTTP 503 E0000010 \"Service is in read only mode\", request id reqABC"
        );
        let transport = Failure {
            transport: Some("timed out after 30s".into()),
            ..Failure::default()
        };
        assert_eq!(transport.to_string(), "timed out after 30s");
        assert_eq!(Failure::default().to_string(), "no response");
    }

    #[test]
    fn only_exhausted_retries_are_transient() {
        let endpoint = Endpoint {
            method: "GET",
            path: "/api/v1/apps/x/users".into(),
        };
        let exhausted = OktaError::RetriesExhausted {
            endpoint: endpoint.clone(),
            attempts: 3,
            elapsed: Duration::from_secs(10),
            budget: Duration::from_secs(10),
            last: Box::default(),
        };
        assert!(exhausted.is_transient());
        let unauthorized = OktaError::Unauthorized {
            endpoint,
            failure: Box::default(),
        };
        assert!(!unauthorized.is_transient());
        assert_eq!(unauthorized.metric_label(), "unauthorized");
    }
}

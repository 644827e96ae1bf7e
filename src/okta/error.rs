//! Errors of the Okta client.
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
    OAuth(Box<crate::okta::oauth::OAuthError>),

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
            OktaError::Decode { .. } => "decode",
            OktaError::Pagination { .. } => "pagination",
        }
    }
}

/// Which scope an endpoint family needs, for the 403 message.
pub(crate) fn required_scope(family: Family) -> &'static str {
    match family {
        Family::Apps => "okta.apps.read",
        Family::Groups | Family::GroupMembers => "okta.groups.read",
        Family::Users => "okta.users.read",
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

//! Reading Okta's responses: bodies (capped at `max_response_bytes`, read
//! into the one buffer they are decoded from), Okta's error bodies, and
//! which object a 404 is about.

use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use crate::okta::error::{BodySize, Endpoint, Failure, OktaError, Resource};

/// Why reading a body failed.
pub(super) enum BodyError {
    /// The connection broke or timed out: retried like any transport error.
    Transport(reqwest::Error),
    /// Past `max_response_bytes`: not retried.
    TooLarge(OktaError),
}

/// Reads a response body into one buffer of at most
/// `max_response_bytes`: a larger `Content-Length` is refused before
/// anything is read, and a body without one (chunked) is abandoned as
/// soon as it passes the cap. The buffer is what the JSON is decoded
/// from: no second copy.
pub(super) async fn read_body(
    mut response: reqwest::Response,
    endpoint: &Endpoint,
    limit: u64,
) -> Result<Vec<u8>, BodyError> {
    let too_large = |size| {
        BodyError::TooLarge(OktaError::ResponseTooLarge {
            endpoint: endpoint.clone(),
            size,
            limit,
        })
    };
    let announced = response.content_length();
    if let Some(length) = announced
        && length > limit
    {
        return Err(too_large(BodySize::Announced(length)));
    }
    // A true Content-Length sizes the buffer once; without one it grows
    // by doubling (at most twice the cap at the moment it is moved).
    let capacity = announced.unwrap_or(0).min(limit);
    let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large(BodySize::MoreThan(limit)));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Which object a 404 is about, from the request path.
pub(super) fn resource_of_path(path: &str) -> Resource {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        ["", "api", "v1", "apps", id, ..] => Resource::App((*id).to_owned()),
        ["", "api", "v1", "groups", id, ..] => Resource::Group((*id).to_owned()),
        _ => Resource::Other,
    }
}

pub(super) fn decode<T: DeserializeOwned>(
    endpoint: &Endpoint,
    body: &[u8],
) -> Result<T, OktaError> {
    serde_json::from_slice(body).map_err(|err| OktaError::Decode {
        endpoint: endpoint.clone(),
        reason: format!("{err} (body of {} bytes)", body.len()),
    })
}

/// Okta's error body fields, when the body is one.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct ErrorBody {
    error_code: Option<String>,
    error_summary: Option<String>,
}

pub(super) fn failure_from(status: StatusCode, request_id: Option<String>, body: &[u8]) -> Failure {
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
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
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

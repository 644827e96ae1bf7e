//! What the token endpoint's refusals say: its OAuth error body, whether a
//! description is about the assertion's time claims, the clock skew its
//! `Date` header shows, and the `WWW-Authenticate` challenges of RFC 6750 /
//! RFC 9449 (DPoP nonces, missing scopes). Pure parsing for `oauth`, which
//! turns them into an [`OAuthError`](crate::okta::error::OAuthError).
//!
//! Invariant: no I/O; nothing here sees a token or key material, only
//! what Okta answered.

use std::time::SystemTime;

use reqwest::header::HeaderMap;

use crate::okta::limit::parse_http_date;

/// The OAuth error body of the token endpoint.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct ErrorBody {
    pub(super) error: String,
    pub(super) error_description: String,
}

impl ErrorBody {
    pub(super) fn detail(&self, status: u16) -> String {
        match (self.error.is_empty(), self.error_description.is_empty()) {
            (true, _) => format!("HTTP {status}"),
            (false, true) => format!("HTTP {status} {}", self.error),
            (false, false) => format!("HTTP {status} {}: {}", self.error, self.error_description),
        }
    }
}

/// Whether an `invalid_client` description is about the assertion's time
/// claims (expired, issued in the future, expiry too far ahead).
pub(super) fn mentions_time(description: &str) -> bool {
    let text = description.to_ascii_lowercase();
    [
        "expired",
        "expiration",
        "future",
        "'iat'",
        "\"iat\"",
        "iat claim",
        "'exp'",
        "\"exp\"",
        "exp claim",
        "not yet valid",
        "clock",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Okta's clock minus ours in seconds, from the response's `Date`.
pub(super) fn clock_skew(headers: &HeaderMap) -> Option<i64> {
    let date = headers
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date)?;
    let now = SystemTime::now();
    Some(match date.duration_since(now) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
        Err(behind) => -i64::try_from(behind.duration().as_secs()).unwrap_or(i64::MAX),
    })
}

pub(super) fn describe_skew(skew: i64) -> String {
    if skew < 0 {
        format!(
            "; this host's clock is about {} s ahead of Okta's",
            skew.unsigned_abs()
        )
    } else {
        format!("; this host's clock is about {skew} s behind Okta's")
    }
}

/// The parameters of `WWW-Authenticate` challenges that matter here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Challenge {
    pub(super) error: Option<String>,
    pub(super) description: Option<String>,
    pub(super) scope: Option<String>,
}

impl Challenge {
    pub(super) fn describe(&self) -> String {
        match (&self.error, &self.description) {
            (Some(error), Some(description)) => format!("{error}: {description}"),
            (Some(error), None) => error.clone(),
            (None, Some(description)) => description.clone(),
            (None, None) => String::new(),
        }
    }
}

pub(super) fn challenge_of(headers: &HeaderMap) -> Challenge {
    let mut challenge = Challenge::default();
    for value in headers.get_all(reqwest::header::WWW_AUTHENTICATE) {
        if let Ok(value) = value.to_str() {
            let parsed = parse_challenge(value);
            challenge.error = challenge.error.or(parsed.error);
            challenge.description = challenge.description.or(parsed.description);
            challenge.scope = challenge.scope.or(parsed.scope);
        }
    }
    challenge
}

/// Reads `error`, `error_description` and `scope` from a `WWW-Authenticate`
/// value like `DPoP algs="ES256", error="invalid_token", error_description="…"`
/// (RFC 9110 §11.6.1 auth-params: quoted strings with `\` escapes, or tokens).
pub(super) fn parse_challenge(value: &str) -> Challenge {
    let mut challenge = Challenge::default();
    let mut chars = value.chars().peekable();
    // Skip the scheme.
    while chars.peek().is_some_and(|c| !c.is_whitespace()) {
        chars.next();
    }
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            // A new scheme name (several challenges in one value).
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut param = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            param.push(escaped);
                        }
                    }
                    '"' => break,
                    other => param.push(other),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                param.push(c);
                chars.next();
            }
        }
        let slot = match name.to_ascii_lowercase().as_str() {
            "error" => &mut challenge.error,
            "error_description" => &mut challenge.description,
            "scope" => &mut challenge.scope,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(param);
        }
    }
    challenge
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed_with_quotes_commas_and_escapes() {
        let c = parse_challenge(
            r#"Bearer authorization_uri="http://x/oauth2/v1/authorize", realm="IdentityMgmt", scope="okta.users.read", error="insufficient_scope", error_description="The access token provided does not contain the required scopes.", resource="/api/v1/users""#,
        );
        assert_eq!(c.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(c.scope.as_deref(), Some("okta.users.read"));
        assert_eq!(
            c.description.as_deref(),
            Some("The access token provided does not contain the required scopes.")
        );
        let c = parse_challenge(
            r#"DPoP algs="RS256 ES256", error="invalid_dpop_proof", error_description="'htu' claim \"x\", is invalid""#,
        );
        assert_eq!(c.error.as_deref(), Some("invalid_dpop_proof"));
        assert_eq!(
            c.description.as_deref(),
            Some(r#"'htu' claim "x", is invalid"#)
        );
        let c = parse_challenge("DPoP error=use_dpop_nonce, Bearer realm=\"x\"");
        assert_eq!(c.error.as_deref(), Some("use_dpop_nonce"));
        assert_eq!(parse_challenge("Bearer"), Challenge::default());
        assert_eq!(parse_challenge(""), Challenge::default());
        assert_eq!(
            parse_challenge("Bearer error=\"unterminated")
                .error
                .as_deref(),
            Some("unterminated")
        );
    }

    #[test]
    fn time_related_descriptions_are_recognised() {
        assert!(mentions_time("The client_assertion token is expired."));
        assert!(mentions_time(
            "The client_assertion token has an expiration too far into the future."
        ));
        assert!(mentions_time("The 'iat' claim is in the future"));
        assert!(!mentions_time("The client_assertion signature is invalid."));
        assert!(!mentions_time("Invalid value for 'client_id' parameter."));
        assert!(!mentions_time("Not appropriate for this client."));
    }

    #[test]
    fn skew_is_described_from_our_side() {
        assert!(describe_skew(-600).contains("600 s ahead"));
        assert!(describe_skew(45).contains("45 s behind"));
    }
}

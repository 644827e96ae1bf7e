//! Pagination: RFC 8288 `Link` header parsing and the guards that make
//! following `rel="next"` safe.
//!
//! Invariant: pure functions, no I/O. A listing follows the `next` target
//! verbatim (Okta warns that parameter names and cursor formats change), but
//! only to the org's own origin, never to a URL it already fetched, and never
//! past [`MAX_PAGES`].

use std::collections::HashSet;

use url::Url;

/// Upper bound on the pages of one listing: 100,000 pages of 200 objects is
/// 20 million objects, far beyond any org this daemon is meant for, so
/// reaching it means the server keeps inventing cursors.
pub const MAX_PAGES: usize = 100_000;

/// Why a listing's pages cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// A `Link` header value that does not follow RFC 8288.
    #[error("malformed Link header {value:?}: {reason}")]
    MalformedLink { value: String, reason: &'static str },

    /// Two `rel="next"` links with different targets in one response.
    #[error("the response has two different rel=\"next\" links: {first} and {second}")]
    AmbiguousNext { first: String, second: String },

    /// The `next` target is not a valid URL reference.
    #[error("the rel=\"next\" link {target:?} is not a valid URL: {reason}")]
    InvalidTarget { target: String, reason: String },

    /// The `next` URL points to another scheme, host or port than the org.
    #[error("the next page link points to {next}, not to the okta org {expected}")]
    ForeignOrigin { next: String, expected: String },

    /// The `next` URL was already fetched in this listing.
    #[error("cursor loop: the next page link {url} was already fetched in this listing")]
    CursorLoop { url: String },

    /// More than [`MAX_PAGES`] pages.
    #[error("the listing has more than {max} pages")]
    TooManyPages { max: usize },
}

/// One link-value of a `Link` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkValue {
    /// The URI-reference between `<` and `>`, as sent.
    pub target: String,
    /// The relation types of the `rel` parameter, lowercased.
    pub rels: Vec<String>,
}

/// Parses one `Link` header value, which may hold several comma-separated
/// link-values. Parameters other than `rel` are skipped; `rel` may be quoted
/// or not and may list several space-separated relation types.
pub fn parse_link_header(value: &str) -> Result<Vec<LinkValue>, PageError> {
    let malformed = |reason| PageError::MalformedLink {
        value: value.to_owned(),
        reason,
    };
    let bytes = value.as_bytes();
    let mut links = Vec::new();
    let mut i = 0;
    loop {
        // Empty list elements (", ,") are allowed by the #rule.
        while i < bytes.len() && (bytes[i] == b',' || bytes[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i == bytes.len() {
            return Ok(links);
        }
        if bytes[i] != b'<' {
            return Err(malformed("expected '<' at the start of a link"));
        }
        let Some(close) = value[i + 1..].find('>') else {
            return Err(malformed("missing '>' after the link target"));
        };
        let target = value[i + 1..i + 1 + close].trim().to_owned();
        i += close + 2;
        let mut rels = Vec::new();
        loop {
            i = skip_whitespace(bytes, i);
            if i == bytes.len() || bytes[i] == b',' {
                break;
            }
            if bytes[i] != b';' {
                return Err(malformed("expected ';' or ',' after a link"));
            }
            i = skip_whitespace(bytes, i + 1);
            let name_start = i;
            while i < bytes.len() && !matches!(bytes[i], b'=' | b';' | b',') {
                if bytes[i].is_ascii_whitespace() {
                    break;
                }
                i += 1;
            }
            let name = &value[name_start..i];
            i = skip_whitespace(bytes, i);
            let mut param_value = String::new();
            if i < bytes.len() && bytes[i] == b'=' {
                i = skip_whitespace(bytes, i + 1);
                if i < bytes.len() && bytes[i] == b'"' {
                    i += 1;
                    let mut closed = false;
                    while i < bytes.len() {
                        match bytes[i] {
                            b'\\' if i + 1 < bytes.len() => {
                                param_value.push(char::from(bytes[i + 1]));
                                i += 2;
                            }
                            b'"' => {
                                closed = true;
                                i += 1;
                                break;
                            }
                            other => {
                                param_value.push(char::from(other));
                                i += 1;
                            }
                        }
                    }
                    if !closed {
                        return Err(malformed("unterminated quoted parameter value"));
                    }
                } else {
                    let start = i;
                    while i < bytes.len()
                        && !matches!(bytes[i], b';' | b',')
                        && !bytes[i].is_ascii_whitespace()
                    {
                        i += 1;
                    }
                    param_value.push_str(&value[start..i]);
                }
            }
            if name.is_empty() {
                if param_value.is_empty() {
                    continue;
                }
                return Err(malformed("parameter without a name"));
            }
            // RFC 8288 §3.3: only the first `rel` parameter counts.
            if name.eq_ignore_ascii_case("rel") && rels.is_empty() {
                rels = param_value
                    .split_ascii_whitespace()
                    .map(str::to_ascii_lowercase)
                    .collect();
            }
        }
        links.push(LinkValue { target, rels });
    }
}

fn skip_whitespace(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The target of the `rel="next"` link among all `Link` header values of a
/// response (several header lines, each possibly comma-joined), or `None` at
/// the end of the listing.
pub fn next_link<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
) -> Result<Option<String>, PageError> {
    let mut next: Option<String> = None;
    for value in header_values {
        for link in parse_link_header(value)? {
            if !link.rels.iter().any(|rel| rel == "next") {
                continue;
            }
            match &next {
                Some(first) if *first != link.target => {
                    return Err(PageError::AmbiguousNext {
                        first: first.clone(),
                        second: link.target,
                    });
                }
                Some(_) => {}
                None => next = Some(link.target),
            }
        }
    }
    Ok(next)
}

/// Resolves a `next` target against the URL of the page that sent it
/// (absolute targets, which Okta sends, come back unchanged).
pub fn resolve_next(current: &Url, target: &str) -> Result<Url, PageError> {
    current
        .join(target)
        .map_err(|err| PageError::InvalidTarget {
            target: target.to_owned(),
            reason: err.to_string(),
        })
}

/// Guards one listing: same origin as the org, no URL twice, bounded length.
#[derive(Debug)]
pub struct PageGuard {
    org: Url,
    visited: HashSet<String>,
    max_pages: usize,
}

impl PageGuard {
    pub fn new(org: &Url, max_pages: usize) -> PageGuard {
        PageGuard {
            org: org.clone(),
            visited: HashSet::new(),
            max_pages,
        }
    }

    /// Records that `url` is about to be fetched, or refuses it.
    pub fn admit(&mut self, url: &Url) -> Result<(), PageError> {
        if !same_origin(&self.org, url) {
            return Err(PageError::ForeignOrigin {
                next: url.origin().ascii_serialization(),
                expected: self.org.origin().ascii_serialization(),
            });
        }
        if self.visited.len() >= self.max_pages {
            return Err(PageError::TooManyPages {
                max: self.max_pages,
            });
        }
        if !self.visited.insert(url.as_str().to_owned()) {
            return Err(PageError::CursorLoop {
                url: url.as_str().to_owned(),
            });
        }
        Ok(())
    }
}

/// Scheme, host and port (with the scheme's default port filled in) match.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn okta_style_separate_header_lines() {
        let lines = [
            r#"<https://acme.okta.com/api/v1/users?limit=200>; rel="self""#,
            r#"<https://acme.okta.com/api/v1/users?after=00ud4tVDDXYVKPXKVLCO&limit=200>; rel="next""#,
        ];
        assert_eq!(
            next_link(lines).unwrap().as_deref(),
            Some("https://acme.okta.com/api/v1/users?after=00ud4tVDDXYVKPXKVLCO&limit=200")
        );
    }

    #[test]
    fn one_comma_joined_header_line() {
        let line = r#"<https://a.okta.com/x?limit=2>; rel="self", <https://a.okta.com/x?after=b,c&limit=2>; rel="next""#;
        assert_eq!(
            next_link([line]).unwrap().as_deref(),
            Some("https://a.okta.com/x?after=b,c&limit=2")
        );
    }

    #[test]
    fn rel_may_be_unquoted_list_several_types_and_use_any_case() {
        assert_eq!(
            next_link(["</p2>; rel=next"]).unwrap().as_deref(),
            Some("/p2")
        );
        assert_eq!(
            next_link([r#"</p2>; title="a; b, c"; REL="prefetch Next""#])
                .unwrap()
                .as_deref(),
            Some("/p2")
        );
        assert_eq!(next_link([r#"</p2>;rel="nextpage""#]).unwrap(), None);
    }

    #[test]
    fn only_the_first_rel_parameter_counts() {
        assert_eq!(
            next_link([r#"</p2>; rel="self"; rel="next""#]).unwrap(),
            None
        );
    }

    #[test]
    fn no_next_means_the_listing_ended() {
        assert_eq!(
            next_link([r#"<https://a.okta.com/x?limit=200>; rel="self""#]).unwrap(),
            None
        );
        assert_eq!(next_link(std::iter::empty::<&str>()).unwrap(), None);
        assert_eq!(next_link([""]).unwrap(), None);
    }

    #[test]
    fn malformed_values_are_errors_not_a_silent_end_of_listing() {
        for bad in [
            "https://a.okta.com/x; rel=next",
            "<https://a.okta.com/x; rel=next",
            r#"<https://a.okta.com/x>; rel="next"#,
            r#"<https://a.okta.com/x> rel="next""#,
        ] {
            assert!(
                matches!(next_link([bad]), Err(PageError::MalformedLink { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn two_different_next_links_are_ambiguous() {
        let lines = [r#"</a>; rel="next""#, r#"</b>; rel="next""#];
        assert!(matches!(
            next_link(lines),
            Err(PageError::AmbiguousNext { .. })
        ));
        // The same target twice is harmless.
        let lines = [r#"</a>; rel="next""#, r#"</a>; rel=next"#];
        assert_eq!(next_link(lines).unwrap().as_deref(), Some("/a"));
    }

    #[test]
    fn relative_targets_resolve_against_the_current_page() {
        let current = url("https://a.okta.com/api/v1/users?limit=2");
        assert_eq!(
            resolve_next(&current, "/api/v1/users?after=x")
                .unwrap()
                .as_str(),
            "https://a.okta.com/api/v1/users?after=x"
        );
        assert_eq!(
            resolve_next(&current, "https://a.okta.com/api/v1/users?after=y")
                .unwrap()
                .as_str(),
            "https://a.okta.com/api/v1/users?after=y"
        );
    }

    #[test]
    fn guard_refuses_other_origins_and_names_both() {
        let mut guard = PageGuard::new(&url("https://acme.okta.com"), 10);
        guard
            .admit(&url("https://acme.okta.com:443/api/v1/users"))
            .unwrap();
        for foreign in [
            "https://evil.example/api/v1/users?after=1",
            "http://acme.okta.com/api/v1/users?after=1",
            "https://acme.okta.com:8443/api/v1/users?after=1",
        ] {
            let err = guard.admit(&url(foreign)).unwrap_err();
            let message = err.to_string();
            assert!(message.contains("https://acme.okta.com"), "{message}");
            assert!(matches!(err, PageError::ForeignOrigin { .. }));
        }
    }

    #[test]
    fn guard_refuses_a_url_seen_before_and_too_many_pages() {
        let mut guard = PageGuard::new(&url("https://acme.okta.com"), 3);
        guard
            .admit(&url("https://acme.okta.com/x?after=1"))
            .unwrap();
        assert!(matches!(
            guard.admit(&url("https://acme.okta.com/x?after=1")),
            Err(PageError::CursorLoop { .. })
        ));
        guard
            .admit(&url("https://acme.okta.com/x?after=2"))
            .unwrap();
        guard
            .admit(&url("https://acme.okta.com/x?after=3"))
            .unwrap();
        assert_eq!(
            guard.admit(&url("https://acme.okta.com/x?after=4")),
            Err(PageError::TooManyPages { max: 3 })
        );
    }

    proptest! {
        /// Whatever the cursors look like (commas, semicolons, quotes are all
        /// legal inside `<…>`), separate lines and one joined line agree.
        #[test]
        fn separate_and_joined_headers_agree(
            cursor in "[A-Za-z0-9_~.,;=\"-]{1,40}",
            extra_rels in proptest::collection::vec("[a-z]{1,8}", 0..3),
            next_first in any::<bool>(),
        ) {
            let next_target = format!("https://a.okta.com/api/v1/users?after={cursor}&limit=200");
            let self_link = "<https://a.okta.com/api/v1/users?limit=200>; rel=\"self\"".to_owned();
            let mut rels = extra_rels.clone();
            rels.retain(|rel| rel != "next");
            rels.push("next".to_owned());
            let next = format!("<{next_target}>; rel=\"{}\"", rels.join(" "));
            let lines = if next_first { vec![next, self_link] } else { vec![self_link, next] };
            let joined = lines.join(", ");
            let from_lines = next_link(lines.iter().map(String::as_str)).unwrap();
            let from_joined = next_link([joined.as_str()]).unwrap();
            prop_assert_eq!(from_lines.as_deref(), Some(next_target.as_str()));
            prop_assert_eq!(from_joined.as_deref(), Some(next_target.as_str()));
        }
    }
}

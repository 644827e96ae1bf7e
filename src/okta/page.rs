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
    #[error(
        "the next page link points to {next}, not to the okta org {expected}; if Okta serves \
         this org on another host (a custom domain), set okta.org_url to the host Okta uses in \
         its links ({next})"
    )]
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

/// The smallest page size the client shrinks a slow listing to: Okta's
/// minimum for app groups (`limit` 20..200) and small enough that a page is
/// cheap for any listing.
pub const PAGE_SIZE_FLOOR: u32 = 20;

/// The page size a listing falls back to when Okta refuses the requested
/// `limit` with a 400 (`E0000001`): the member listing's documented
/// recommendation (Okta's spec calls 1,000 a legacy default that "will
/// change" and recommends 200). Other listings ask for a documented maximum
/// and have no fallback.
pub const GROUP_MEMBERS_FALLBACK_LIMIT: u32 = 200;

/// How a listing's page size may change while it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRules {
    /// Halving a slow page stops here.
    pub floor: u32,
    /// The `limit` to retry with after a 400 about it, if any.
    pub limit_fallback: Option<u32>,
    /// Whether this is the member listing (`/api/v1/groups/{id}/users`),
    /// whose fallback the client keeps for its lifetime.
    pub group_members: bool,
}

impl PageRules {
    /// The rules of the listing at `path`.
    pub fn of_path(path: &str) -> PageRules {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let group_members = matches!(segments.as_slice(), ["", "api", "v1", "groups", _, "users"]);
        PageRules {
            floor: PAGE_SIZE_FLOOR,
            limit_fallback: group_members.then_some(GROUP_MEMBERS_FALLBACK_LIMIT),
            group_members,
        }
    }
}

/// The value of the `limit` query parameter, when there is exactly one and
/// it is a number.
pub fn limit_of(url: &Url) -> Option<u32> {
    let mut limits = url.query_pairs().filter(|(key, _)| key == "limit");
    let (_, value) = limits.next()?;
    if limits.next().is_some() {
        return None;
    }
    value.parse().ok()
}

/// `url` with the value of its `limit` query parameter replaced by `limit`
/// and every other byte of the URL kept as it was (Okta's cursors and
/// search expressions are opaque). `None` when the URL has not exactly one
/// `limit` parameter.
pub fn with_limit(url: &Url, limit: u32) -> Option<Url> {
    limit_of(url)?;
    let query = url.query()?;
    let mut found = false;
    let rewritten: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("limit", _)) => {
                found = true;
                format!("limit={limit}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    if !found {
        return None;
    }
    let mut out = url.clone();
    out.set_query(Some(&rewritten.join("&")));
    Some(out)
}

/// Half of `limit`, not below `floor`; `None` when `limit` is at the floor
/// already.
pub fn halved(limit: u32, floor: u32) -> Option<u32> {
    (limit > floor).then(|| (limit / 2).max(floor))
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
            assert!(
                message.contains("set okta.org_url to the host Okta uses in its links"),
                "{message}"
            );
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

    #[test]
    fn only_the_limit_parameter_is_rewritten() {
        let next = url(
            "https://acme.okta.com/api/v1/apps/0oa1/users?after=00u%2Fx&limit=500&expand=user&search=profile.name%20eq%20%22R%26D%22",
        );
        assert_eq!(limit_of(&next), Some(500));
        assert_eq!(
            with_limit(&next, 250).unwrap().as_str(),
            "https://acme.okta.com/api/v1/apps/0oa1/users?after=00u%2Fx&limit=250&expand=user&search=profile.name%20eq%20%22R%26D%22"
        );
        // `limit` first or last, and parameters that merely contain "limit".
        let first = url("https://a.okta.com/x?limit=200&xlimit=7&after=abc");
        assert_eq!(
            with_limit(&first, 100).unwrap().as_str(),
            "https://a.okta.com/x?limit=100&xlimit=7&after=abc"
        );
        // No limit, two limits, or a limit that is not a number: left alone.
        assert_eq!(with_limit(&url("https://a.okta.com/x?after=1"), 10), None);
        assert_eq!(
            with_limit(&url("https://a.okta.com/x?limit=1&limit=2"), 10),
            None
        );
        assert_eq!(with_limit(&url("https://a.okta.com/x?limit=all"), 10), None);
    }

    #[test]
    fn halving_stops_at_the_floor() {
        let sizes: Vec<u32> =
            std::iter::successors(Some(500), |l| halved(*l, PAGE_SIZE_FLOOR)).collect();
        assert_eq!(sizes, [500, 250, 125, 62, 31, 20]);
        assert_eq!(halved(20, 20), None);
        assert_eq!(halved(5, 20), None, "never grows a small page");
    }

    #[test]
    fn only_member_listings_fall_back_to_200() {
        let members = PageRules::of_path("/api/v1/groups/00g1/users");
        assert_eq!(members.limit_fallback, Some(200));
        assert!(members.group_members);
        for other in ["/api/v1/apps/0oa1/users", "/api/v1/groups", "/api/v1/users"] {
            let rules = PageRules::of_path(other);
            assert_eq!(rules.limit_fallback, None, "{other}");
            assert!(!rules.group_members);
            assert_eq!(rules.floor, PAGE_SIZE_FLOOR);
        }
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

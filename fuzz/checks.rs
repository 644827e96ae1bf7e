#![allow(dead_code)] // each fuzz target uses one of these checks
//! The properties each fuzz target checks, shared by the libFuzzer targets
//! (`fuzz/fuzz_targets/*.rs`) and `cargo test` (which replays
//! `fuzz/regressions/` and runs the same checks on random bytes on stable).
//! Each function must not panic for any input, except through its asserts.

use std::path::Path;

use writer_sync::config::{ConfigEnv, parse, validate_org_url};
use writer_sync::okta::page::{PageGuard, next_link, parse_link_header, resolve_next, same_origin};
use writer_sync::okta::wire::{App, AppGroup, AppUser, Group, User};
use writer_sync::secret::Secret;

/// okta::wire: decoding never panics; lenient decoding is stable (the
/// same JSON value decodes to the same users twice).
pub fn wire(data: &[u8]) {
    let _ = serde_json::from_slice::<Vec<AppUser>>(data);
    let _ = serde_json::from_slice::<Vec<AppGroup>>(data);
    let _ = serde_json::from_slice::<Vec<Group>>(data);
    let _ = serde_json::from_slice::<App>(data);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(users) = serde_json::from_value::<Vec<User>>(value.clone())
    {
        let again: Vec<User> = serde_json::from_value(value).expect("decodes twice");
        assert_eq!(users, again);
        // Nothing the store cannot hold comes out (see okta::wire).
        for u in &users {
            assert!(!u.id.contains('\0'));
            for s in [
                &u.profile.email,
                &u.profile.first_name,
                &u.profile.last_name,
                &u.profile.display_name,
            ] {
                assert!(!s.as_deref().unwrap_or_default().contains('\0'));
            }
        }
    }
}

/// okta::page: parsing never panics, and a `next` URL the guard admits is
/// always on the org's origin. Lines of the input are separate headers.
pub fn link_header(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_link_header(text);
    let lines: Vec<&str> = text.split('\n').collect();
    let org = url::Url::parse("https://acme.okta.com/").expect("org url");
    let current =
        url::Url::parse("https://acme.okta.com/api/v1/apps/0oa1/users?limit=500").expect("url");
    if let Ok(Some(target)) = next_link(lines)
        && let Ok(next) = resolve_next(&current, &target)
    {
        let mut guard = PageGuard::new(&org, 10);
        if guard.admit(&next).is_ok() {
            assert!(
                same_origin(&org, &next),
                "admitted a foreign next link: {next}"
            );
        }
    }
}

/// config::parse: never panics, and an accepted config is valid. The
/// environment supplies a token, so that files without a credential of
/// their own are accepted (a `Config` always has one).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = ConfigEnv {
        okta_api_token: Some(Secret::new("fuzz-token")),
        ..ConfigEnv::default()
    };
    if let Ok(config) = parse(text, Path::new("fuzz.toml"), &env) {
        assert!(validate_org_url(config.okta.org_url.as_str()).is_ok());
        assert!(config.okta.requests_per_minute.get() > 0);
        assert!(!config.okta.request_timeout.is_zero());
        assert!((0.0..=100.0).contains(&config.safety.max_deactivations_percent));
    }
}

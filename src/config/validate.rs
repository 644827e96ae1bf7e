//! Stage 2 of the configuration: [`RawConfig`] → [`ConfigFile`], a
//! [`Config`], or a [`StoreOnly`] when no credential is configured. Every
//! value is checked here (URLs, ids, rates, durations, cron, scopes, the log
//! filter, the listen address) and the secrets are resolved (through
//! `secrets`).
//!
//! Invariant: the first problem found fails the whole file, with an error
//! that names the file and the key (`ConfigError::Invalid`), the secret file
//! (`ConfigError::SecretFile`), or the line (stage 1); values are checked in
//! the order of the file's tables, so the same file always gets the same
//! message.

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::config::raw::{RawConfig, RawOAuth, RawPushGroups, RawScopes};
use crate::config::schedule::CronSchedule;
use crate::config::secrets::{resolve_private_key, resolve_ssws_token, ssws_configured};
use crate::config::{
    Config, ConfigEnv, ConfigError, ConfigFile, EventSource, EventsConfig, LogConfig, LogFormat,
    OktaAuth, OktaConfig, PushGroups, RoleSource, SafetyConfig, ServerConfig, StoreConfig,
    StoreOnly, SyncConfig, TeamsConfig,
};
use crate::okta::oauth::{DEFAULT_SCOPES, DpopMode};
use crate::store::StoreUrl;

/// Where the SQLite store lives when neither `store.url` nor systemd's
/// `STATE_DIRECTORY` says.
const DEFAULT_STATE_DIR: &str = "/var/lib/writer-sync";

/// Checks every value of `raw` in the order of the file's tables. A file
/// without a credential is valid here: [`ConfigFile::NoCredential`].
pub(super) fn validate(
    raw: RawConfig,
    path: &Path,
    env: &ConfigEnv,
) -> Result<ConfigFile, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        key: key.to_owned(),
        message,
    };

    let org_url = validate_org_url(&raw.okta.org_url).map_err(|m| invalid("okta.org_url", m))?;
    let app_id = match raw.okta.app_id {
        Some(id) => Some(validate_okta_id(&id).map_err(|m| invalid("okta.app_id", m))?),
        None => None,
    };
    let requests_per_minute = positive_u32(raw.okta.requests_per_minute)
        .map_err(|m| invalid("okta.requests_per_minute", m))?;
    let rate_limit_share = u8::try_from(raw.okta.rate_limit_share)
        .ok()
        .filter(|share| (1..=100).contains(share))
        .ok_or_else(|| {
            invalid(
                "okta.rate_limit_share",
                format!(
                    "{} must be a percentage between 1 and 100",
                    raw.okta.rate_limit_share
                ),
            )
        })?;
    let max_concurrent_requests = positive_u32(raw.okta.max_concurrent_requests)
        .map_err(|m| invalid("okta.max_concurrent_requests", m))
        .and_then(|n| {
            NonZeroUsize::try_from(n)
                .map_err(|e| invalid("okta.max_concurrent_requests", e.to_string()))
        })?;
    let request_timeout = parse_duration(&raw.okta.request_timeout)
        .map_err(|m| invalid("okta.request_timeout", m))?;
    if request_timeout.is_zero() {
        return Err(invalid(
            "okta.request_timeout",
            "must be greater than 0".into(),
        ));
    }
    let retry_budget =
        parse_duration(&raw.okta.retry_budget).map_err(|m| invalid("okta.retry_budget", m))?;
    let max_response_bytes = u64::try_from(raw.okta.max_response_bytes)
        .ok()
        .filter(|n| *n >= MIN_RESPONSE_BYTES)
        .ok_or_else(|| {
            invalid(
                "okta.max_response_bytes",
                format!(
                    "{} must be a number of bytes of at least {MIN_RESPONSE_BYTES} (default {}, \
                     64 MiB)",
                    raw.okta.max_response_bytes,
                    crate::okta::DEFAULT_MAX_RESPONSE_BYTES
                ),
            )
        })?;

    let auth = match raw.okta.oauth {
        None => resolve_ssws_token(raw.okta.api_token_file.as_deref(), path, env)?,
        Some(oauth) => {
            if let Some(other) = ssws_configured(raw.okta.api_token_file.as_deref(), env) {
                return Err(invalid(
                    "okta.oauth",
                    format!(
                        "cannot be combined with an SSWS API token ({other}); configure exactly \
                         one Okta credential: remove {other} or the [okta.oauth] table"
                    ),
                ));
            }
            Some(resolve_oauth(oauth, path, env)?)
        }
    };

    let store_url = match raw.store.url {
        Some(u) => StoreUrl::parse(&u).map_err(|m| invalid("store.url", m))?,
        None => StoreUrl::Sqlite(
            env.state_directory
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
                .join("writer.db"),
        ),
    };
    let writes_per_second = match raw.store.writes_per_second {
        0 => None,
        n => Some(positive_u32(n).map_err(|m| invalid("store.writes_per_second", m))?),
    };

    let events = validate_events(&raw.events).map_err(|(key, m)| invalid(key, m))?;
    let schedule = match &raw.sync.schedule {
        Some(expr) => expr.as_str(),
        None if events.enabled() => DEFAULT_SCHEDULE_WITH_EVENTS,
        None => DEFAULT_SCHEDULE,
    };
    let schedule = CronSchedule::parse(schedule).map_err(|m| invalid("sync.schedule", m))?;
    let default_team = match raw.sync.default_team {
        Some(t) if t.trim().is_empty() => {
            return Err(invalid(
                "sync.default_team",
                "must not be empty (omit the key to disable)".into(),
            ));
        }
        other => other,
    };
    if raw.sync.role_attribute.trim().is_empty() {
        return Err(invalid("sync.role_attribute", "must not be empty".into()));
    }
    let role_source = match raw.sync.role_source.as_str() {
        "app_user" => RoleSource::AppUser,
        "user" => RoleSource::User,
        other => {
            return Err(invalid(
                "sync.role_source",
                format!("{other:?} is not one of \"app_user\", \"user\""),
            ));
        }
    };

    let push_groups = match raw.teams.push_groups {
        RawPushGroups::Mode(m) if m == "assigned" => PushGroups::Assigned,
        RawPushGroups::Mode(m) => {
            return Err(invalid(
                "teams.push_groups",
                format!("{m:?} is neither \"assigned\" nor a list of Okta group names"),
            ));
        }
        RawPushGroups::Names(names) => {
            if let Some(blank) = names.iter().position(|n| n.trim().is_empty()) {
                return Err(invalid(
                    "teams.push_groups",
                    format!("entry {} is empty", blank + 1),
                ));
            }
            let mut unique = names.clone();
            unique.sort();
            unique.dedup();
            if unique.len() != names.len() {
                return Err(invalid(
                    "teams.push_groups",
                    "lists a group name twice".into(),
                ));
            }
            PushGroups::Named(names)
        }
    };
    if app_id.is_none() && push_groups == PushGroups::Assigned {
        return Err(invalid(
            "okta.app_id",
            "is required unless teams.push_groups is a list of group names".into(),
        ));
    }

    let max_deactivations = non_negative_u32(raw.safety.max_deactivations)
        .map_err(|m| invalid("safety.max_deactivations", m))?;
    let pct = raw.safety.max_deactivations_percent;
    if !(0.0..=100.0).contains(&pct) {
        return Err(invalid(
            "safety.max_deactivations_percent",
            format!("{pct} is not between 0 and 100"),
        ));
    }
    let max_membership_removals = non_negative_u32(raw.safety.max_membership_removals)
        .map_err(|m| invalid("safety.max_membership_removals", m))?;
    let deactivate_after = parse_duration(&raw.safety.deactivate_after)
        .map_err(|m| invalid("safety.deactivate_after", m))?;
    if deactivate_after > Duration::from_secs(365 * 86_400) {
        return Err(invalid(
            "safety.deactivate_after",
            format!(
                "{:?} is more than a year: an unassigned person would keep access that long",
                raw.safety.deactivate_after
            ),
        ));
    }

    let format = match raw.log.format.as_str() {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            return Err(invalid(
                "log.format",
                format!("{other:?} is not one of \"json\", \"text\""),
            ));
        }
    };
    tracing_subscriber::EnvFilter::builder()
        .parse(&raw.log.level)
        .map_err(|e| invalid("log.level", format!("{:?}: {e}", raw.log.level)))?;

    let listen = match raw.server.listen {
        Some(addr) => Some(addr.parse::<std::net::SocketAddr>().map_err(|e| {
            invalid(
                "server.listen",
                format!("{addr:?} is not an ip:port address: {e}"),
            )
        })?),
        None => None,
    };

    let store = StoreConfig {
        url: store_url,
        writes_per_second,
    };
    let log = LogConfig {
        format,
        level: raw.log.level,
    };
    let Some(auth) = auth else {
        return Ok(ConfigFile::NoCredential(StoreOnly {
            path: path.to_path_buf(),
            store,
            log,
        }));
    };
    Ok(ConfigFile::Complete(Box::new(Config {
        path: path.to_path_buf(),
        okta: OktaConfig {
            org_url,
            app_id,
            auth,
            requests_per_minute,
            rate_limit_share,
            max_concurrent_requests,
            request_timeout,
            retry_budget,
            max_response_bytes,
        },
        store,
        sync: SyncConfig {
            schedule,
            run_on_start: raw.sync.run_on_start,
            default_team,
            role_attribute: raw.sync.role_attribute,
            role_source,
        },
        teams: TeamsConfig {
            push_groups,
            create_missing: raw.teams.create_missing,
        },
        safety: SafetyConfig {
            max_deactivations,
            max_deactivations_percent: pct,
            max_membership_removals,
            deactivate_after,
        },
        log,
        server: ServerConfig { listen },
        events,
    })))
}

/// The full reconcile's schedule when `sync.schedule` is unset and events
/// are on (SPEC §7: the System Log carries changes between them) …
pub const DEFAULT_SCHEDULE_WITH_EVENTS: &str = "0 * * * *";
/// … and with `events.source = "off"`.
pub const DEFAULT_SCHEDULE: &str = "*/10 * * * *";

fn validate_events(raw: &super::raw::RawEvents) -> Result<EventsConfig, (&'static str, String)> {
    let source = match raw.source.as_str() {
        "system_log" => EventSource::SystemLog,
        "off" => EventSource::Off,
        other => {
            return Err((
                "events.source",
                format!("{other:?} is not \"system_log\" or \"off\""),
            ));
        }
    };
    let poll_interval =
        parse_duration(&raw.poll_interval).map_err(|m| ("events.poll_interval", m))?;
    if poll_interval < Duration::from_secs(1) {
        return Err((
            "events.poll_interval",
            "must be at least 1s (each poll is a request in the logs bucket)".into(),
        ));
    }
    let max_affected_users = u32::try_from(raw.max_affected_users)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            (
                "events.max_affected_users",
                format!(
                    "{} must be a whole number between 1 and {}",
                    raw.max_affected_users,
                    u32::MAX
                ),
            )
        })?;
    Ok(EventsConfig {
        source,
        poll_interval,
        max_affected_users,
    })
}

fn positive_u32(n: i64) -> Result<NonZeroU32, String> {
    u32::try_from(n)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| format!("{n} must be a whole number between 1 and {}", u32::MAX))
}

fn non_negative_u32(n: i64) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("{n} must be a whole number between 0 and {}", u32::MAX))
}

/// Okta ids are opaque but always short ASCII alphanumerics; refusing
/// anything else keeps ids out of URL paths they could escape from.
fn validate_okta_id(id: &str) -> Result<String, String> {
    let id = id.trim();
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "{id:?} is not an Okta id (letters and digits only)"
        ));
    }
    Ok(id.to_owned())
}

/// HTTPS is required; plain HTTP only for loopback hosts (tests, the demo
/// and local simulators). The URL must be the bare org URL.
pub fn validate_org_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    let host = url.host().ok_or_else(|| format!("{raw:?} has no host"))?;
    let loopback = match &host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "{raw:?} uses plain http; Okta must be reached over https (http is only accepted for loopback hosts)"
            ));
        }
        other => return Err(format!("{raw:?} has scheme {other:?}; use https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
        return Err(format!(
            "{raw:?} must be the bare org URL like https://acme.okta.com (no path or query)"
        ));
    }
    Ok(url)
}

fn resolve_oauth(raw: RawOAuth, path: &Path, env: &ConfigEnv) -> Result<OktaAuth, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        key: key.to_owned(),
        message,
    };
    let client_id = match raw.client_id {
        Some(id) => validate_okta_id(&id).map_err(|m| {
            invalid(
                "okta.oauth.client_id",
                m.replace("an Okta id", "an Okta client id"),
            )
        })?,
        None => {
            return Err(invalid(
                "okta.oauth.client_id",
                "is required: the client id of the Okta API Services app".into(),
            ));
        }
    };
    let (private_key, source) = resolve_private_key(raw.private_key_file, path, env)?;
    let key_id = match raw.key_id {
        None => None,
        Some(kid) => {
            let kid = kid.trim();
            if kid.is_empty() || kid.len() > 256 || !kid.chars().all(|c| c.is_ascii_graphic()) {
                return Err(invalid(
                    "okta.oauth.key_id",
                    format!(
                        "{kid:?} is not a key id (1 to 256 printable ASCII characters, no spaces)"
                    ),
                ));
            }
            Some(kid.to_owned())
        }
    };
    let scopes = match raw.scopes {
        None => DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        Some(raw) => validate_scopes(raw).map_err(|m| invalid("okta.oauth.scopes", m))?,
    };
    let dpop = match raw.dpop.as_deref() {
        None | Some("auto") => DpopMode::Auto,
        Some("always") => DpopMode::Always,
        Some("never") => DpopMode::Never,
        Some(other) => {
            return Err(invalid(
                "okta.oauth.dpop",
                format!("{other:?} is not one of \"auto\", \"always\", \"never\""),
            ));
        }
    };
    Ok(OktaAuth::OAuth {
        client_id,
        private_key,
        key_source: source,
        key_id,
        scopes,
        dpop,
    })
}

/// Scopes as a space-separated string or a list; each an RFC 6749
/// scope-token, none twice, at least one.
fn validate_scopes(raw: RawScopes) -> Result<Vec<String>, String> {
    let scopes: Vec<String> = match raw {
        RawScopes::Joined(text) => text.split_whitespace().map(str::to_owned).collect(),
        RawScopes::List(list) => {
            for (i, scope) in list.iter().enumerate() {
                if scope.trim().contains(char::is_whitespace) {
                    return Err(format!(
                        "entry {} ({scope:?}) contains a space; list each scope separately",
                        i + 1
                    ));
                }
            }
            list.into_iter().map(|s| s.trim().to_owned()).collect()
        }
    };
    if scopes.is_empty() {
        return Err("must name at least one scope, e.g. \"okta.users.read\"".into());
    }
    for (i, scope) in scopes.iter().enumerate() {
        let valid = !scope.is_empty()
            && scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
            return Err(format!("{scope:?} is not a valid OAuth scope"));
        }
        if scopes[..i].contains(scope) {
            return Err(format!("lists {scope:?} twice"));
        }
    }
    Ok(scopes)
}

/// Smallest `okta.max_response_bytes`: one Okta error body fits easily.
const MIN_RESPONSE_BYTES: u64 = 4096;

/// Parses durations like `30s`, `500ms`, `5m`, `1h`, `7d`, `1m30s`, or a
/// bare number of seconds (the config's durations and `audit --since`).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("empty duration (use e.g. \"30s\")".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "{raw:?} is not a duration like \"30s\", \"5m\" or \"1h\""
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{raw:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => {
                return Err(format!(
                    "{raw:?} has unknown unit {unit:?} (use ms, s, m, h or d)"
                ));
            }
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

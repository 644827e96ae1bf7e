//! Stage 1 of the configuration: the file's shape, exactly. The serde
//! structs ([`RawConfig`] and its tables) with every default of SPEC §5,
//! [`KNOWN_KEYS`], and the walk that turns an unknown key into an error
//! naming the key, the file and the line.
//!
//! No I/O and no judgement of values: a `RawConfig` has the right keys and
//! types, nothing more; `validate` decides whether the values make sense.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::ConfigError;

/// Parses config text into the raw structs: TOML syntax, then unknown keys
/// (so a typo is named before a type error elsewhere), then the types.
pub(super) fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: toml_message(&e, text),
    })?;
    check_known_keys(&table, text, path)?;
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: toml_message(&e, text),
    })
}

/// Every key the file may contain, as dotted paths; tables end with `.*`
/// implicitly by being prefixes of their keys.
pub(super) const KNOWN_KEYS: &[&str] = &[
    "okta.org_url",
    "okta.app_id",
    "okta.api_token_file",
    "okta.requests_per_minute",
    "okta.rate_limit_share",
    "okta.max_concurrent_requests",
    "okta.request_timeout",
    "okta.retry_budget",
    "okta.max_response_bytes",
    "okta.oauth.client_id",
    "okta.oauth.private_key_file",
    "okta.oauth.key_id",
    "okta.oauth.scopes",
    "okta.oauth.dpop",
    "store.url",
    "store.writes_per_second",
    "sync.schedule",
    "sync.run_on_start",
    "sync.default_team",
    "sync.role_attribute",
    "sync.role_source",
    "teams.push_groups",
    "teams.create_missing",
    "safety.max_deactivations",
    "safety.max_deactivations_percent",
    "safety.max_membership_removals",
    "safety.deactivate_after",
    "log.format",
    "log.level",
    "server.listen",
    "events.source",
    "events.poll_interval",
    "events.max_affected_users",
];

fn check_known_keys(table: &toml::Table, text: &str, path: &Path) -> Result<(), ConfigError> {
    fn walk(
        table: &toml::Table,
        prefix: &str,
        found: &mut Vec<String>,
        text: &str,
        path: &Path,
    ) -> Result<(), ConfigError> {
        for (key, value) in table {
            let dotted = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            let is_leaf = KNOWN_KEYS.contains(&dotted.as_str());
            let is_table = KNOWN_KEYS
                .iter()
                .any(|k| k.starts_with(&format!("{dotted}.")));
            match value {
                toml::Value::Table(inner) if is_table => walk(inner, &dotted, found, text, path)?,
                _ if is_leaf => found.push(dotted),
                _ => {
                    return Err(ConfigError::UnknownKey {
                        path: path.to_path_buf(),
                        line: find_key_line(text, key),
                        key: dotted,
                    });
                }
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    walk(table, "", &mut found, text, path)
}

/// Best-effort line number of a key for messages: the first line whose
/// trimmed text starts with the key followed by `=` or is its table header.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let l = line.trim_start();
            let after = l.strip_prefix(key).map(str::trim_start);
            matches!(after, Some(rest) if rest.starts_with('=') || rest.starts_with('.'))
                || l.starts_with(&format!("[{key}]"))
                || l.starts_with(&format!("[{key}."))
                || l.contains(&format!(".{key}]"))
        })
        .map(|i| i + 1)
}

/// The whole file: `[okta]` is required, every other table has defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) okta: RawOkta,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) sync: RawSync,
    #[serde(default)]
    pub(super) teams: RawTeams,
    #[serde(default)]
    pub(super) safety: RawSafety,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) events: RawEvents,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOkta {
    pub(super) org_url: String,
    pub(super) app_id: Option<String>,
    pub(super) api_token_file: Option<PathBuf>,
    #[serde(default = "default_rpm")]
    pub(super) requests_per_minute: i64,
    #[serde(default = "default_share")]
    pub(super) rate_limit_share: i64,
    #[serde(default = "default_concurrency")]
    pub(super) max_concurrent_requests: i64,
    #[serde(default = "default_timeout")]
    pub(super) request_timeout: String,
    #[serde(default = "default_retry_budget")]
    pub(super) retry_budget: String,
    #[serde(default = "default_max_response_bytes")]
    pub(super) max_response_bytes: i64,
    pub(super) oauth: Option<RawOAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOAuth {
    pub(super) client_id: Option<String>,
    pub(super) private_key_file: Option<PathBuf>,
    pub(super) key_id: Option<String>,
    pub(super) scopes: Option<RawScopes>,
    pub(super) dpop: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawScopes {
    /// Space-separated, as in OAuth's `scope` parameter.
    Joined(String),
    List(Vec<String>),
}

fn default_rpm() -> i64 {
    300
}
fn default_share() -> i64 {
    i64::from(crate::okta::DEFAULT_RATE_LIMIT_SHARE)
}
fn default_concurrency() -> i64 {
    4
}
fn default_timeout() -> String {
    format!("{}s", crate::okta::DEFAULT_REQUEST_TIMEOUT.as_secs())
}
fn default_retry_budget() -> String {
    format!("{}s", crate::okta::DEFAULT_RETRY_BUDGET.as_secs())
}
fn default_max_response_bytes() -> i64 {
    i64::try_from(crate::okta::DEFAULT_MAX_RESPONSE_BYTES).unwrap_or(i64::MAX)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) url: Option<String>,
    #[serde(default = "default_writes_per_second")]
    pub(super) writes_per_second: i64,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            url: None,
            writes_per_second: default_writes_per_second(),
        }
    }
}

fn default_writes_per_second() -> i64 {
    500
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    /// Unset: hourly with events on, every ten minutes with events off
    /// (SPEC §7).
    pub(super) schedule: Option<String>,
    #[serde(default = "default_true")]
    pub(super) run_on_start: bool,
    pub(super) default_team: Option<String>,
    #[serde(default = "default_role_attribute")]
    pub(super) role_attribute: String,
    #[serde(default = "default_role_source")]
    pub(super) role_source: String,
}

impl Default for RawSync {
    fn default() -> Self {
        RawSync {
            schedule: None,
            run_on_start: true,
            default_team: None,
            role_attribute: default_role_attribute(),
            role_source: default_role_source(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_role_attribute() -> String {
    "writerRole".into()
}
fn default_role_source() -> String {
    "app_user".into()
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawPushGroups {
    Mode(String),
    Names(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTeams {
    #[serde(default = "default_push_groups")]
    pub(super) push_groups: RawPushGroups,
    #[serde(default)]
    pub(super) create_missing: bool,
}

impl Default for RawTeams {
    fn default() -> Self {
        RawTeams {
            push_groups: default_push_groups(),
            create_missing: false,
        }
    }
}

fn default_push_groups() -> RawPushGroups {
    RawPushGroups::Mode("assigned".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSafety {
    #[serde(default = "default_max_deactivations")]
    pub(super) max_deactivations: i64,
    #[serde(default = "default_max_deactivations_percent")]
    pub(super) max_deactivations_percent: f64,
    #[serde(default = "default_max_membership_removals")]
    pub(super) max_membership_removals: i64,
    #[serde(default = "default_deactivate_after")]
    pub(super) deactivate_after: String,
}

fn default_deactivate_after() -> String {
    "0s".into()
}

impl Default for RawSafety {
    fn default() -> Self {
        RawSafety {
            max_deactivations: default_max_deactivations(),
            max_deactivations_percent: default_max_deactivations_percent(),
            max_membership_removals: default_max_membership_removals(),
            deactivate_after: default_deactivate_after(),
        }
    }
}

fn default_max_deactivations() -> i64 {
    50
}
fn default_max_deactivations_percent() -> f64 {
    10.0
}
fn default_max_membership_removals() -> i64 {
    500
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    #[serde(default = "default_log_format")]
    pub(super) format: String,
    #[serde(default = "default_log_level")]
    pub(super) level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

fn default_log_format() -> String {
    "json".into()
}
fn default_log_level() -> String {
    "info".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    #[serde(default = "default_event_source")]
    pub(super) source: String,
    #[serde(default = "default_poll_interval")]
    pub(super) poll_interval: String,
    #[serde(default = "default_max_affected_users")]
    pub(super) max_affected_users: i64,
}

impl Default for RawEvents {
    fn default() -> Self {
        RawEvents {
            source: default_event_source(),
            poll_interval: default_poll_interval(),
            max_affected_users: default_max_affected_users(),
        }
    }
}

fn default_event_source() -> String {
    "system_log".into()
}
fn default_poll_interval() -> String {
    "15s".into()
}
fn default_max_affected_users() -> i64 {
    2000
}

fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_owned();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

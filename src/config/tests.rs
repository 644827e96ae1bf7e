use chrono::{DateTime, Utc};

use super::*;
use crate::config::raw::KNOWN_KEYS;
use crate::config::schedule::translate_weekdays;
use crate::config::validate::parse_duration;
use crate::okta::oauth::DEFAULT_SCOPES;

fn env() -> ConfigEnv {
    ConfigEnv {
        okta_api_token: Some(Secret::new("tok-SECRET-123")),
        ..ConfigEnv::default()
    }
}

fn parse_ok(text: &str) -> Config {
    parse(text, Path::new("/etc/ws.toml"), &env()).unwrap()
}

fn parse_err(text: &str) -> String {
    parse(text, Path::new("/etc/ws.toml"), &env())
        .unwrap_err()
        .to_string()
}

const MINIMAL: &str = "[okta]\norg_url = \"https://acme.okta.com\"\napp_id = \"0oa1\"\n";

#[test]
fn minimal_config_gets_every_default() {
    let c = parse_ok(MINIMAL);
    assert_eq!(c.okta.org_url.as_str(), "https://acme.okta.com/");
    assert_eq!(c.okta.requests_per_minute.get(), 300);
    assert_eq!(c.okta.rate_limit_share, 50);
    assert_eq!(c.okta.max_concurrent_requests.get(), 4);
    // 120 s, not SPEC §5's 30 s: issue #14 (big app-user pages take longer).
    assert_eq!(c.okta.request_timeout, Duration::from_secs(120));
    assert_eq!(c.okta.retry_budget, Duration::from_secs(300));
    assert_eq!(c.okta.max_response_bytes, 64 * 1024 * 1024);
    assert_eq!(
        c.store.url,
        StoreUrl::Sqlite(PathBuf::from("/var/lib/writer-sync/writer.db"))
    );
    assert_eq!(c.store.writes_per_second.map(NonZeroU32::get), Some(500));
    // SPEC §7: with the System Log on (the default), full reconciles are
    // hourly; with it off, every ten minutes.
    assert_eq!(c.sync.schedule.expr(), "0 * * * *");
    assert!(c.events.enabled());
    assert_eq!(c.events.poll_interval, Duration::from_secs(15));
    assert_eq!(c.events.max_affected_users, 2000);
    let off = parse_ok(&format!("{MINIMAL}\n[events]\nsource = \"off\"\n"));
    assert_eq!(off.sync.schedule.expr(), "*/10 * * * *");
    assert!(!off.events.enabled());
    assert!(c.sync.run_on_start);
    assert_eq!(c.sync.default_team, None);
    assert_eq!(c.sync.role_attribute, "writerRole");
    assert_eq!(c.sync.role_source, RoleSource::AppUser);
    assert_eq!(c.teams.push_groups, PushGroups::Assigned);
    assert!(!c.teams.create_missing);
    assert_eq!(c.safety.max_deactivations, 50);
    assert!((c.safety.max_deactivations_percent - 10.0).abs() < f64::EPSILON);
    assert_eq!(c.safety.max_membership_removals, 500);
    assert_eq!(c.safety.deactivate_after, Duration::ZERO);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.server.listen, None);
}

#[test]
fn store_defaults_to_the_systemd_state_directory() {
    let env = ConfigEnv {
        state_directory: Some(PathBuf::from("/var/lib/private/writer-sync")),
        ..env()
    };
    let c = parse(MINIMAL, Path::new("x.toml"), &env).unwrap();
    assert_eq!(
        c.store.url,
        StoreUrl::Sqlite(PathBuf::from("/var/lib/private/writer-sync/writer.db"))
    );
}

#[test]
fn unknown_keys_are_errors_naming_key_file_and_line() {
    let err = parse_err(&format!("{MINIMAL}[sync]\nschedul = \"* * * * *\"\n"));
    assert!(err.contains("`sync.schedul`"), "{err}");
    assert!(err.contains("/etc/ws.toml"), "{err}");
    assert!(err.contains("line 5"), "{err}");
    let err = parse_err(&format!("{MINIMAL}[sink]\nx = 1\n"));
    assert!(err.contains("`sink`"), "{err}");
    let err = parse_err(&format!("{MINIMAL}colour = 1\n"));
    assert!(err.contains("`okta.colour`"), "{err}");
    let err = parse_err(&format!("{MINIMAL}[okta.oauth]\nclient_secret = \"x\"\n"));
    assert!(err.contains("`okta.oauth.client_secret`"), "{err}");
    assert!(err.contains("line 5"), "{err}");
}

#[test]
fn every_invalid_value_names_its_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[okta]\norg_url = \"http://acme.okta.com\"\napp_id=\"0oa1\"",
            "okta.org_url",
        ),
        (
            "[okta]\norg_url = \"https://acme.okta.com/api\"\napp_id=\"0oa1\"",
            "okta.org_url",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"../x\"",
            "okta.app_id",
        ),
        ("[okta]\norg_url = \"https://a.okta.com\"", "okta.app_id"),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nrequests_per_minute = 0",
            "okta.requests_per_minute",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nrate_limit_share = 0",
            "okta.rate_limit_share",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nrate_limit_share = 101",
            "okta.rate_limit_share",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nmax_concurrent_requests = -1",
            "okta.max_concurrent_requests",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nrequest_timeout = \"30 parsecs\"",
            "okta.request_timeout",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nrequest_timeout = \"0s\"",
            "okta.request_timeout",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nretry_budget = \"soon\"",
            "okta.retry_budget",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nmax_response_bytes = 100",
            "okta.max_response_bytes",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nmax_response_bytes = -1",
            "okta.max_response_bytes",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[store]\nurl = \"mysql://x\"",
            "store.url",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[store]\nwrites_per_second = -5",
            "store.writes_per_second",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[sync]\nschedule = \"* * *\"",
            "sync.schedule",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[sync]\nschedule = \"61 * * * *\"",
            "sync.schedule",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[sync]\ndefault_team = \" \"",
            "sync.default_team",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[sync]\nrole_source = \"group\"",
            "sync.role_source",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[sync]\nrole_attribute = \"\"",
            "sync.role_attribute",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[teams]\npush_groups = \"all\"",
            "teams.push_groups",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[teams]\npush_groups = [\"A\", \"A\"]",
            "teams.push_groups",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[safety]\nmax_deactivations_percent = 101",
            "safety.max_deactivations_percent",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[safety]\nmax_deactivations = -1",
            "safety.max_deactivations",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[safety]\nmax_membership_removals = -1",
            "safety.max_membership_removals",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[safety]\ndeactivate_after = \"soon\"",
            "safety.deactivate_after",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[safety]\ndeactivate_after = \"400d\"",
            "safety.deactivate_after",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[log]\nformat = \"xml\"",
            "log.format",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[log]\nlevel = \"info,[\"",
            "log.level",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[server]\nlisten = \"localhost\"",
            "server.listen",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[events]\nsource = \"webhook\"",
            "events.source",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[events]\npoll_interval = \"200ms\"",
            "events.poll_interval",
        ),
        (
            "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[events]\nmax_affected_users = 0",
            "events.max_affected_users",
        ),
    ];
    for (text, key) in cases {
        let err = parse_err(text);
        assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        assert!(err.contains("/etc/ws.toml"), "{key}: {err}");
    }
}

#[test]
fn wrong_types_name_the_line() {
    let err = parse_err(&format!("{MINIMAL}requests_per_minute = \"many\"\n"));
    assert!(err.contains("line 4"), "{err}");
    assert!(err.contains("/etc/ws.toml"), "{err}");
}

#[test]
fn missing_org_url_is_an_error() {
    let err = parse_err("[okta]\napp_id = \"0oa1\"\n");
    assert!(err.contains("org_url"), "{err}");
}

#[test]
fn push_groups_list_makes_app_id_optional() {
    let c = parse_ok(
        "[okta]\norg_url = \"https://a.okta.com\"\n[teams]\npush_groups = [\"Eng\", \"Sales\"]\n",
    );
    assert_eq!(c.okta.app_id, None);
    assert_eq!(
        c.teams.push_groups,
        PushGroups::Named(vec!["Eng".into(), "Sales".into()])
    );
}

#[test]
fn http_is_accepted_only_for_loopback() {
    for ok in [
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:9",
    ] {
        validate_org_url(ok).unwrap();
    }
    for bad in [
        "http://10.0.0.1",
        "http://acme.okta.com",
        "ftp://x",
        "https://u:p@a.okta.com",
    ] {
        assert!(validate_org_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn token_precedence_env_then_file_then_credential() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tok");
    std::fs::write(&file, "from-file\n").unwrap();
    std::fs::write(dir.path().join(TOKEN_CREDENTIAL), "from-cred").unwrap();
    let text = format!(
        "{MINIMAL}api_token_file = {:?}\n",
        file.display().to_string()
    );
    let with_env = parse(&text, Path::new("c"), &env()).unwrap();
    assert!(matches!(
        with_env.okta.auth,
        OktaAuth::Ssws {
            source: TokenSource::Env,
            ..
        }
    ));
    let no_env = ConfigEnv {
        credentials_directory: Some(dir.path().to_path_buf()),
        ..ConfigEnv::default()
    };
    let c = parse(&text, Path::new("c"), &no_env).unwrap();
    match c.okta.auth {
        OktaAuth::Ssws {
            token,
            source: TokenSource::File(_),
        } => {
            assert_eq!(token.expose(), "from-file");
        }
        other => panic!("{other:?}"),
    }
    let c = parse(MINIMAL, Path::new("c"), &no_env).unwrap();
    match c.okta.auth {
        OktaAuth::Ssws {
            token,
            source: TokenSource::Credential(_),
        } => {
            assert_eq!(token.expose(), "from-cred");
        }
        other => panic!("{other:?}"),
    }
    let err = parse(MINIMAL, Path::new("c"), &ConfigEnv::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(TOKEN_ENV) && err.contains("api_token_file"),
        "{err}"
    );
}

#[test]
fn empty_token_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty");
    std::fs::write(&file, "\n").unwrap();
    let text = format!(
        "{MINIMAL}api_token_file = {:?}\n",
        file.display().to_string()
    );
    let err = parse(&text, Path::new("c"), &ConfigEnv::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("okta.api_token_file") && err.contains("empty"),
        "{err}"
    );
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let text = format!("{MINIMAL}[store]\nurl = \"postgres://app:pg-PASSWORD@db/writer\"\n");
    let c = parse_ok(&text);
    let debug = format!("{c:?}");
    assert!(!debug.contains("tok-SECRET-123"), "{debug}");
    assert!(!debug.contains("pg-PASSWORD"), "{debug}");
    assert!(debug.contains("[redacted]"), "{debug}");
    assert_eq!(
        c.store.url.redacted(),
        "postgres://app:[redacted]@db/writer"
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
    assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
    assert_eq!(
        parse_duration("7d").unwrap(),
        Duration::from_secs(7 * 86_400)
    );
    assert!(parse_duration("").is_err());
    assert!(parse_duration("s").is_err());
    assert!(parse_duration("3 days").is_err());
}

#[test]
fn cron_accepts_five_and_six_fields_in_utc() {
    let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    let five = CronSchedule::parse("*/10 * * * *").unwrap();
    assert_eq!(
        five.next_after(t("2026-01-01T00:03:00Z")),
        Some(t("2026-01-01T00:10:00Z"))
    );
    let six = CronSchedule::parse("*/15 * * * * *").unwrap();
    assert_eq!(
        six.next_after(t("2026-01-01T00:00:01Z")),
        Some(t("2026-01-01T00:00:15Z"))
    );
}

#[test]
fn cron_weekdays_follow_classic_cron_numbering() {
    let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    // 2026-01-03 is a Saturday; "1-5" = Monday..Friday => Monday 2026-01-05.
    let weekdays = CronSchedule::parse("0 9 * * 1-5").unwrap();
    assert_eq!(
        weekdays.next_after(t("2026-01-03T00:00:00Z")),
        Some(t("2026-01-05T09:00:00Z"))
    );
    // 0 and 7 are both Sunday => 2026-01-04.
    for expr in ["0 9 * * 0", "0 9 * * 7", "0 9 * * SUN"] {
        let s = CronSchedule::parse(expr).unwrap();
        assert_eq!(
            s.next_after(t("2026-01-03T00:00:00Z")),
            Some(t("2026-01-04T09:00:00Z")),
            "{expr}"
        );
    }
    // 5-7 = Friday..Sunday.
    let weekend = CronSchedule::parse("0 9 * * 5-7").unwrap();
    assert_eq!(
        weekend.next_after(t("2026-01-05T00:00:00Z")),
        Some(t("2026-01-09T09:00:00Z"))
    );
    assert_eq!(translate_weekdays("5-7").unwrap(), "6-7,1");
    assert!(CronSchedule::parse("0 9 * * 8").is_err());
}

/// The example with its `[okta.oauth]` block uncommented, the SSWS
/// token file removed and the key path pointing to `key_file`.
fn oauth_example(text: &str, key_file: &Path) -> String {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line == "# [okta.oauth]" {
            in_block = true;
        } else if line.trim().is_empty() {
            in_block = false;
        }
        if line.starts_with("api_token_file") {
            continue;
        }
        if in_block {
            let line = line.strip_prefix("# ").unwrap();
            if line.starts_with("private_key_file") {
                out.push(format!(
                    "private_key_file = {:?}",
                    key_file.display().to_string()
                ));
                continue;
            }
            out.push(line.to_owned());
        } else {
            out.push(line.to_owned());
        }
    }
    out.join("\n")
}

#[test]
fn example_config_parses_with_every_key() {
    let text = include_str!("../../config.example.toml");
    let c = parse_ok(text);
    assert_eq!(c.okta.app_id.as_deref(), Some("0oa1writerapp"));
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, RSA_KEY).unwrap();
    let oauth_text = oauth_example(text, &key_file);
    let oauth = parse(&oauth_text, Path::new("c"), &ConfigEnv::default()).unwrap();
    match oauth.okta.auth {
        OktaAuth::OAuth {
            client_id,
            key_id,
            scopes,
            dpop,
            ..
        } => {
            assert_eq!(client_id, "0oa1serviceapp");
            assert_eq!(key_id.as_deref(), Some("writer-sync-1"));
            assert_eq!(scopes, DEFAULT_SCOPES);
            assert_eq!(dpop, DpopMode::Auto);
        }
        other => panic!("{other:?}"),
    }
    // The example documents every known key: uncommented, commented out
    // as `# key = default`, or in the commented-out [okta.oauth] block.
    let defaults_uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| !k.contains(' ')) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let tables: Vec<toml::Table> = [text, oauth_text.as_str(), defaults_uncommented.as_str()]
        .iter()
        .map(|t| toml::from_str(t).unwrap())
        .collect();
    for key in KNOWN_KEYS {
        let found = tables.iter().any(|table| {
            let mut node = table;
            let parts: Vec<&str> = key.split('.').collect();
            for (i, part) in parts.iter().enumerate() {
                let Some(value) = node.get(*part) else {
                    return false;
                };
                if i + 1 < parts.len() {
                    node = value.as_table().unwrap();
                }
            }
            true
        });
        assert!(found, "example lacks {key}");
    }
}

const RSA_KEY: &str = include_str!("../../tests/fixtures/keys/rsa-2048.pkcs8.pem");
const EC_KEY: &str = include_str!("../../tests/fixtures/keys/ec-p256.sec1.pem");

/// A config with `[okta.oauth]`; `extra` lines go into that table.
fn oauth_config(key_file: &Path, extra: &str) -> String {
    format!(
        "{MINIMAL}[okta.oauth]\nclient_id = \"0oa1svc\"\nprivate_key_file = {:?}\n{extra}",
        key_file.display().to_string()
    )
}

fn key_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key.pem");
    std::fs::write(&file, RSA_KEY).unwrap();
    (dir, file)
}

#[test]
fn oauth_defaults_and_forms() {
    let (dir, file) = key_dir();
    let c = parse(
        &oauth_config(&file, ""),
        Path::new("c"),
        &ConfigEnv::default(),
    )
    .unwrap();
    let OktaAuth::OAuth {
        client_id,
        private_key,
        key_source,
        key_id,
        scopes,
        dpop,
    } = c.okta.auth.clone()
    else {
        panic!("{:?}", c.okta.auth)
    };
    assert_eq!(client_id, "0oa1svc");
    assert_eq!(private_key.describe(), "RSA 2048-bit (RS256)");
    assert_eq!(key_source, KeySource::File(file.clone()));
    assert_eq!(key_id, None);
    assert_eq!(scopes, DEFAULT_SCOPES);
    assert_eq!(dpop, DpopMode::Auto);

    let joined = oauth_config(
        &file,
        "scopes = \" okta.users.read  okta.groups.manage \"\ndpop = \"always\"\nkey_id = \"k1\"\n",
    );
    let c = parse(&joined, Path::new("c"), &ConfigEnv::default()).unwrap();
    let OktaAuth::OAuth {
        scopes,
        dpop,
        key_id,
        ..
    } = c.okta.auth
    else {
        panic!()
    };
    assert_eq!(scopes, ["okta.users.read", "okta.groups.manage"]);
    assert_eq!(dpop, DpopMode::Always);
    assert_eq!(key_id.as_deref(), Some("k1"));
    let list = oauth_config(&file, "scopes = [\"okta.apps.read\"]\ndpop = \"never\"\n");
    let c = parse(&list, Path::new("c"), &ConfigEnv::default()).unwrap();
    assert!(matches!(
        c.okta.auth,
        OktaAuth::OAuth { ref scopes, dpop: DpopMode::Never, .. } if scopes == &["okta.apps.read"]
    ));

    // The key from the systemd credential, EC in SEC1 form.
    std::fs::write(dir.path().join(KEY_CREDENTIAL), EC_KEY).unwrap();
    let env = ConfigEnv {
        credentials_directory: Some(dir.path().to_path_buf()),
        ..ConfigEnv::default()
    };
    let text = format!("{MINIMAL}[okta.oauth]\nclient_id = \"0oa1svc\"\n");
    let c = parse(&text, Path::new("c"), &env).unwrap();
    let OktaAuth::OAuth {
        private_key,
        key_source,
        ..
    } = c.okta.auth
    else {
        panic!()
    };
    assert_eq!(private_key.describe(), "EC P-256 (ES256)");
    assert_eq!(
        key_source,
        KeySource::Credential(dir.path().join(KEY_CREDENTIAL))
    );
    assert!(key_source.to_string().contains("systemd credential"));
}

#[test]
fn exactly_one_credential() {
    let (dir, file) = key_dir();
    // SSWS token file + [okta.oauth].
    let text = format!(
        "{MINIMAL}api_token_file = \"/x\"\n[okta.oauth]\nclient_id = \"0oa1svc\"\nprivate_key_file = {:?}\n",
        file.display().to_string()
    );
    let err = parse(&text, Path::new("/etc/ws.toml"), &ConfigEnv::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`okta.oauth`") && err.contains("`okta.api_token_file`"),
        "{err}"
    );
    // The environment token + [okta.oauth].
    let err = parse_err(&oauth_config(&file, ""));
    assert!(
        err.contains("`okta.oauth`") && err.contains(TOKEN_ENV),
        "{err}"
    );
    // The okta-api-token credential + [okta.oauth].
    std::fs::write(dir.path().join(TOKEN_CREDENTIAL), "tok").unwrap();
    let env = ConfigEnv {
        credentials_directory: Some(dir.path().to_path_buf()),
        ..ConfigEnv::default()
    };
    let err = parse(&oauth_config(&file, ""), Path::new("c"), &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains(TOKEN_CREDENTIAL), "{err}");
    // Neither: loads for the store commands (they need no credential), and
    // commands that need Okta get an error naming both ways.
    let none = parse_store(MINIMAL, Path::new("c"), &ConfigEnv::default()).unwrap();
    assert_eq!(none.store.url, parse_ok(MINIMAL).store.url);
    // They still validate the whole file, with the same messages.
    let bad = format!("{MINIMAL}[sync]\nschedule = \"nonsense\"\n");
    let store_err = parse_store(&bad, Path::new("c"), &ConfigEnv::default())
        .unwrap_err()
        .to_string();
    assert!(store_err.contains("`sync.schedule`"), "{store_err}");
    let err = parse(MINIMAL, Path::new("c"), &ConfigEnv::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("okta.api_token_file") && err.contains("[okta.oauth]"),
        "{err}"
    );
}

#[test]
fn oauth_mistakes_name_their_key() {
    let (dir, file) = key_dir();
    let env = ConfigEnv::default();
    let err = |text: &str| {
        parse(text, Path::new("/etc/ws.toml"), &env)
            .unwrap_err()
            .to_string()
    };
    let no_id = format!(
        "{MINIMAL}[okta.oauth]\nprivate_key_file = {:?}\n",
        file.display().to_string()
    );
    assert!(
        err(&no_id).contains("`okta.oauth.client_id`"),
        "{}",
        err(&no_id)
    );
    let no_key = format!("{MINIMAL}[okta.oauth]\nclient_id = \"0oa1\"\n");
    let message = err(&no_key);
    assert!(
        message.contains("`okta.oauth.private_key_file`") && message.contains(KEY_CREDENTIAL),
        "{message}"
    );
    for (extra, key) in [
        ("dpop = \"sometimes\"\n", "okta.oauth.dpop"),
        ("scopes = \"\"\n", "okta.oauth.scopes"),
        (
            "scopes = [\"okta.users.read okta.apps.read\"]\n",
            "okta.oauth.scopes",
        ),
        ("scopes = [\"a\", \"a\"]\n", "okta.oauth.scopes"),
        ("scopes = \"bad\\\\scope\"\n", "okta.oauth.scopes"),
        ("key_id = \"has space\"\n", "okta.oauth.key_id"),
    ] {
        let message = err(&oauth_config(&file, extra));
        assert!(message.contains(&format!("`{key}`")), "{extra}: {message}");
    }
    let bad_id = oauth_config(&file, "").replace("0oa1svc", "../x");
    assert!(err(&bad_id).contains("`okta.oauth.client_id`"));

    // A key file that is not a usable key: the message names the key,
    // the file and what to do, and never quotes the file.
    let public = dir.path().join("public.pem");
    std::fs::write(
        &public,
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let message = err(&oauth_config(&public, ""));
    assert!(
        message.contains("okta.oauth.private_key_file")
            && message.contains("public.pem")
            && message.contains("a public key"),
        "{message}"
    );
    assert!(!message.contains("MCowBQYDK2VwAyEA"), "{message}");
    let missing = dir.path().join("nope.pem");
    let message = err(&oauth_config(&missing, ""));
    assert!(message.contains("nope.pem"), "{message}");
}

#[test]
fn the_private_key_never_appears_in_debug_output() {
    let (_dir, file) = key_dir();
    let c = parse(
        &oauth_config(&file, ""),
        Path::new("c"),
        &ConfigEnv::default(),
    )
    .unwrap();
    let debug = format!("{c:?}");
    for line in RSA_KEY.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!debug.contains(line), "{debug}");
    }
    assert!(debug.contains("[redacted]"), "{debug}");
    assert!(debug.contains("0oa1svc"), "{debug}");
}

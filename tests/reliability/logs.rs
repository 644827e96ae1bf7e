//! What the logs let through. Text lines quote and escape every value that
//! came from Okta or the store, so a newline, CR, ESC, NUL or bidi control
//! in an email, a name or a group name can neither forge a log line nor reach
//! the terminal (SPEC §9). JSON lines are one object with unique keys and
//! nested values, and the README's `jq` recipes work on them as written.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};

use crate::hostile::{APP, TOKEN, app_user, group_assignment, member, script, start};
use crate::{common, config_text};

/// Every character that could forge a line, hide one or drive a terminal.
const HOSTILE: [char; 6] = ['\n', '\r', '\u{1b}', '\u{0}', '\u{202e}', '\u{2028}'];

/// An org whose every logged value carries hostile characters: the email
/// (usable, with a bidi control; or unusable, with a newline and an ESC
/// sequence), the names, and the pushed group's (so the team's) name.
fn hostile_org() -> crate::hostile::Script {
    let forged = "\n2026-01-01T00:00:00.000000Z  INFO forged: sync finished status=\"ok\"";
    let users = vec![
        app_user(
            "00ubidi",
            "ACTIVE",
            json!("bi\u{202e}di@x.example"),
            json!(format!("First{forged}")),
            json!("Last\r\u{1b}[2J\u{0}"),
        ),
        app_user(
            "00uescape",
            "ACTIVE",
            json!(format!("esc\u{1b}[31m{forged}@x.example")),
            json!("E"),
            json!("S"),
        ),
        app_user(
            "00uplain",
            "ACTIVE",
            json!("plain@x.example"),
            json!("P"),
            json!("L"),
        ),
    ];
    let members = json!([member("00ubidi"), member("00uplain")]);
    script(
        vec![Value::Array(users)],
        vec![(
            group_assignment("00gevil", &format!("Evil\u{202e}Team\r{forged}\u{2028}")),
            vec![members],
        )],
    )
}

/// Runs `run --once` through the binary against `org` with logs in `format`;
/// returns stderr.
async fn run_binary(kind: common::Kind, format: &str) -> Option<String> {
    let (base, server) = start(hostile_org()).await;
    let db = common::TestDb::new(kind, "logs").await?;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = config_text(&base, APP, &db.config_url, "")
        .replace("format = \"json\"", &format!("format = \"{format}\""));
    common::write_file_mode(&path, &text, 0o600);
    let out = common::checked_output(
        std::process::Command::new(crate::BIN)
            .arg("--config")
            .arg(&path)
            .args(["run", "--once", "--json"])
            .env("WRITER_SYNC_OKTA_API_TOKEN", TOKEN)
            .env_remove("RUST_LOG"),
        &[TOKEN],
    );
    server.abort();
    let stderr = String::from_utf8(out.stderr).expect("logs are UTF-8");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    Some(stderr)
}

both_kinds!(
    text_logs_quote_and_escape_every_value_from_okta,
    |kind: common::Kind| async move {
        let Some(stderr) = run_binary(kind, "text").await else {
            return;
        };
        for line in stderr.lines() {
            for c in HOSTILE {
                assert!(
                    !line.contains(c),
                    "a raw {c:?} reached the text log: {line:?}"
                );
            }
        }
        // Every line is a real event: it starts with a timestamp and a
        // level; no value started a line of its own.
        for line in stderr.lines() {
            let mut words = line.split_whitespace();
            let stamp = words.next().unwrap_or("");
            assert!(
                stamp.len() >= 20 && stamp.as_bytes()[4] == b'-' && stamp.ends_with('Z'),
                "a line that is not an event: {line:?}"
            );
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&words.next().unwrap_or("")),
                "{line:?}"
            );
        }
        // The forged event text is there, escaped, inside real lines only.
        let forged: Vec<&str> = stderr.lines().filter(|l| l.contains("forged")).collect();
        assert!(!forged.is_empty(), "{stderr}");
        assert!(
            !forged.iter().any(|l| l.starts_with("2026-01-01T00:00:00")),
            "{forged:#?}"
        );
        assert!(stderr.contains("\\u{202e}"), "{stderr}");
        // Values are quoted: the team's name and the skipped email.
        assert!(
            stderr.contains("target=\"Evil\\u{202e}Team\\r\\n"),
            "{stderr}"
        );
        assert!(
            stderr.contains("00uescape") && stderr.contains("\\u{1b}[31m"),
            "{stderr}"
        );
    }
);

both_kinds!(
    json_logs_have_unique_keys_nested_values_and_the_readme_recipes_work,
    |kind: common::Kind| async move {
        let Some(stderr) = run_binary(kind, "json").await else {
            return;
        };
        let mut messages = BTreeSet::new();
        for line in stderr.lines() {
            let event = strict_json(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(
                event["module"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("writer_sync"))
            );
            messages.insert(event["message"].as_str().unwrap_or("").to_owned());
            if event["message"] == "change applied" {
                let target = event["target"].as_str().unwrap_or("");
                assert!(!target.starts_with("writer_sync"), "{line}");
                assert!(event["change"].is_object(), "{line}");
            }
            if event["message"] == "sync finished" {
                assert!(event["counts"]["users_created"].is_u64(), "{line}");
                assert_eq!(event["span"]["name"], "reconcile", "{line}");
            }
        }
        assert!(messages.contains("change applied") && messages.contains("sync finished"));

        // The README's recipes, as written, over this run's log.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("journal.txt");
        std::fs::write(&log, &stderr).unwrap();
        let recipes = readme_jq_recipes();
        assert!(recipes.len() >= 3, "{recipes:?}");
        for recipe in &recipes {
            let out = jq(recipe, &log);
            if recipe.contains("sync finished") {
                let finished: Value = serde_json::from_str(out.trim()).unwrap();
                assert_eq!(finished["status"], "ok", "{recipe}: {out}");
                assert!(
                    finished["counts"]["users_created"].as_u64() >= Some(2),
                    "{out}"
                );
            }
            if recipe.contains("@tsv") {
                let rows: Vec<&str> = out.lines().collect();
                assert!(!rows.is_empty(), "{recipe}: nothing");
                for row in rows {
                    let (action, target) = row.split_once('\t').unwrap_or((row, ""));
                    assert!(action.contains('_'), "{recipe}: {row}");
                    assert!(
                        !target.is_empty() && !target.starts_with("writer_sync"),
                        "{row}"
                    );
                }
            }
        }
    }
);

/// The `jq` programs of the README's "Reading the logs" recipes
/// (`journalctl -u writer-sync -o cat | jq '…'`).
fn readme_jq_recipes() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    readme
        .lines()
        .filter_map(|l| l.strip_prefix("journalctl -u writer-sync -o cat | jq "))
        .map(|rest| rest.trim().trim_matches('\'').to_owned())
        .collect()
}

fn jq(program: &str, input: &Path) -> String {
    let out = std::process::Command::new("jq")
        .args(["-r", program])
        .arg(input)
        .output()
        .expect("jq is needed for this test (Debian package jq; .ci/run installs it)");
    assert!(
        out.status.success(),
        "jq {program:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Parses one JSON value, refusing any object with a repeated key (serde_json
/// alone keeps the last one silently).
fn strict_json(text: &str) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value.0)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
        }
        Ok(Value::Object(object))
    }
}

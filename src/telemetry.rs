//! Logging, set up once per process: stderr, JSON or text, level from the
//! config unless `RUST_LOG` is set, and the two line formats.
//!
//! Invariant: stdout never carries log lines (it is reserved for command
//! output); the filter can be swapped at runtime through [`LogHandle`].
//! A JSON line is one object with unique keys, whose JSON-valued fields
//! (`counts`, `change`) are nested objects, not strings; a text line quotes
//! and escapes every field value and escapes the message, so no value that
//! came from Okta or the store can start a new line, rewrite one (CR), reach
//! the terminal as an escape sequence, or reorder it (bidi controls).

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::LogFormat;

/// Quiets chatty dependencies unless the operator asks for them.
const DEPENDENCY_LEVELS: &str = "sqlx=warn,hyper=warn,reqwest=warn,rustls=warn,h2=warn,tower=warn";

/// Fields logged as JSON text (`counts = %json`) that a JSON line carries
/// as nested values.
const JSON_VALUED_FIELDS: [&str; 4] = ["counts", "change", "by_type", "app_user_statuses"];

/// Keys a JSON line sets itself; an event field of the same name is written
/// as `field.<name>` so keys stay unique.
const RESERVED_KEYS: [&str; 5] = ["timestamp", "level", "module", "message", "span"];

/// Changes the log filter of the running process (SIGHUP reload).
#[derive(Clone)]
pub struct LogHandle {
    handle: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
}

impl LogHandle {
    /// Applies a new `log.level`; ignored when `RUST_LOG` is in charge.
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        if self.from_env {
            return Ok(());
        }
        let filter = build_filter(level)?;
        self.handle.reload(filter).map_err(|e| e.to_string())
    }
}

fn build_filter(level: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder()
        .parse(format!("{DEPENDENCY_LEVELS},{level}"))
        .map_err(|e| e.to_string())
}

/// Installs the global subscriber. Call once, as early as the config is known.
pub fn init(format: LogFormat, level: &str) -> LogHandle {
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let from_env = env.is_some();
    let filter = env
        .as_deref()
        .and_then(|v| EnvFilter::builder().parse(v).ok())
        .or_else(|| build_filter(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonLine)
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(EscapedFields)
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
    crate::fsperm::flush_warnings();
    LogHandle { handle, from_env }
}

// ---------------------------------------------------------------------------
// JSON lines.
// ---------------------------------------------------------------------------

/// One JSON object per event: `timestamp`, `level`, `module` (the Rust
/// module that logged), `message`, the event's fields in order, and `span`
/// (the current span's name and fields).
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = JsonVisitor::default();
        event.record(&mut fields);
        let mut line = serde_json::Map::new();
        let mut keys: Vec<String> = Vec::new();
        let mut put = |key: String, value: serde_json::Value| {
            if !line.contains_key(&key) {
                keys.push(key.clone());
            }
            line.insert(key, value);
        };
        put(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        put("level".into(), meta.level().as_str().into());
        put("module".into(), meta.target().into());
        put(
            "message".into(),
            fields.message.take().unwrap_or_default().into(),
        );
        for (name, value) in fields.fields {
            let key = if RESERVED_KEYS.contains(&name) {
                format!("field.{name}")
            } else {
                name.to_owned()
            };
            put(key, value);
        }
        if let Some(span) = ctx.lookup_current() {
            let mut object = serde_json::Map::new();
            object.insert("name".into(), span.name().into());
            let extensions = span.extensions();
            if let Some(recorded) = extensions.get::<FormattedFields<N>>()
                && let Ok(serde_json::Value::Object(span_fields)) =
                    serde_json::from_str::<serde_json::Value>(recorded)
            {
                for (k, v) in span_fields {
                    object.entry(k).or_insert(v);
                }
            }
            put("span".into(), object.into());
        }
        // Written in the order the keys were first set (the map alone would
        // sort them): timestamp, level, module and message lead.
        writer.write_char('{')?;
        for (n, key) in keys.iter().enumerate() {
            if n > 0 {
                writer.write_char(',')?;
            }
            let value = line.get(key).unwrap_or(&serde_json::Value::Null);
            let pair = serde_json::to_string(key)
                .and_then(|k| Ok(format!("{k}:{}", serde_json::to_string(value)?)))
                .map_err(|_| fmt::Error)?;
            writer.write_str(&pair)?;
        }
        writer.write_str("}\n")
    }
}

/// Collects an event's fields as JSON values, in the order they were given.
#[derive(Default)]
struct JsonVisitor {
    message: Option<String>,
    fields: Vec<(&'static str, serde_json::Value)>,
}

impl JsonVisitor {
    fn push(&mut self, field: &Field, value: serde_json::Value) {
        match field.name() {
            "message" => {
                self.message = Some(match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
            }
            name => self.fields.push((name, value)),
        }
    }
}

impl Visit for JsonVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, json_text(field.name(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, json_text(field.name(), format!("{value:?}")));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }
}

/// A text field's JSON value: nested JSON for the JSON-valued fields (when
/// the text is JSON), else a string.
fn json_text(name: &str, text: String) -> serde_json::Value {
    if JSON_VALUED_FIELDS.contains(&name)
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(&text)
    {
        return value;
    }
    serde_json::Value::String(text)
}

// ---------------------------------------------------------------------------
// Text lines.
// ---------------------------------------------------------------------------

/// Fields of text lines: `name="value"` with the value quoted and escaped
/// (numbers and booleans as they are); the message escaped, unquoted.
struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = TextVisitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut visitor = TextVisitor {
            writer: current.as_writer(),
            result: Ok(()),
            first,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextVisitor<'writer> {
    writer: Writer<'writer>,
    result: fmt::Result,
    first: bool,
}

impl TextVisitor<'_> {
    fn write(&mut self, field: &Field, value: &str, quote: bool) {
        if self.result.is_err() {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            write!(self.writer, "{sep}{}", escape_message(value))
        } else if quote {
            write!(self.writer, "{sep}{}={value:?}", field.name())
        } else {
            write!(self.writer, "{sep}{}={value}", field.name())
        };
    }
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, value, true);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, &format!("{value:?}"), true);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.write(field, &value.to_string(), false);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.write(field, &value.to_string(), false);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.write(field, &value.to_string(), false);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.write(field, &value.to_string(), false);
    }
}

/// The message of a text line, unquoted, with every character Rust's
/// `Debug` would escape (control characters, bidi controls, separators)
/// written as its escape.
/// The process's peak resident memory so far in MB (`VmHWM` of
/// `/proc/self/status`), for the `observed`, `planned` and `applied` log
/// events: a run's memory per phase. `None` off Linux.
pub fn peak_rss_mb() -> Option<u64> {
    peak_rss_kb(&std::fs::read_to_string("/proc/self/status").ok()?).map(|kb| kb / 1024)
}

fn peak_rss_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse().ok())
}

pub fn escape_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c == '"' || c == '\\' || c == '\'' {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_read_from_vmhwm() {
        let status =
            "Name:\twriter-sync\nVmPeak:\t  900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  100 kB\n";
        assert_eq!(peak_rss_kb(status), Some(204_800));
        assert_eq!(peak_rss_kb("VmRSS:\t100 kB\n"), None);
        assert!(peak_rss_mb().is_some_and(|mb| mb > 0));
    }

    #[test]
    fn text_messages_escape_what_could_forge_or_hide_a_line() {
        assert_eq!(
            escape_message("plain \"quoted\" text"),
            "plain \"quoted\" text"
        );
        assert_eq!(
            escape_message("a\nb\rc\u{1b}[31md\u{0}e\u{202e}f"),
            "a\\nb\\rc\\u{1b}[31md\\0e\\u{202e}f"
        );
    }

    #[test]
    fn json_valued_fields_nest_and_others_stay_strings() {
        assert_eq!(
            json_text("counts", r#"{"users_created":1}"#.into()),
            serde_json::json!({"users_created": 1})
        );
        assert_eq!(
            json_text("target", r#"{"x":1}"#.into()),
            serde_json::json!(r#"{"x":1}"#)
        );
        assert_eq!(json_text("change", "not json".into()), "not json");
    }
}

//! Logging, set up once per process: stderr, JSON or text, level from the
//! config unless `RUST_LOG` is set.
//!
//! Invariant: stdout never carries log lines (it is reserved for command
//! output); the filter can be swapped at runtime through [`LogHandle`].

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

use crate::config::LogFormat;

/// Quiets chatty dependencies unless the operator asks for them.
const DEPENDENCY_LEVELS: &str = "sqlx=warn,hyper=warn,reqwest=warn,rustls=warn,h2=warn,tower=warn";

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
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_ansi(false).with_writer(std::io::stderr))
            .init(),
    }
    crate::fsperm::flush_warnings();
    LogHandle { handle, from_env }
}

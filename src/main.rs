//! The `writer-sync` binary: parses the command line, loads the config, sets
//! up logging and runs one command. The only place that uses anyhow and the
//! only place that maps outcomes to exit codes (SPEC §4):
//! 0 ok, 1 sync failed, 2 usage or config error, 3 blocked by the safety guard.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use writer_sync::config::{self, Config, ConfigEnv};
use writer_sync::store::Store;
use writer_sync::store::dump::LoadError;
use writer_sync::telemetry;

use crate::cli::{Cli, Command, HistoryArgs, StoreCommand};

/// Exit codes of SPEC §4.
mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    #[allow(dead_code)]
    pub const BLOCKED: u8 = 3;
}

/// An error with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: exit::FAILED,
            error: e.into(),
        }
    }
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: exit::USAGE,
        error: error.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("writer-sync: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure { code, error }) => {
            eprintln!("writer-sync: {error:#}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let env = ConfigEnv::from_process();
    let config_path = config::resolve_path(
        cli.config.as_deref(),
        std::env::var("WRITER_SYNC_CONFIG").ok().as_deref(),
    );
    match cli.command {
        Command::Store { command } => {
            let config = load_config(&config_path, &env)?;
            let store = open_store(&config).await?;
            let code = match command {
                StoreCommand::Dump => store_dump(&store).await,
                StoreCommand::Load { file } => store_load(&store, &file).await,
            };
            store.close().await;
            code
        }
        Command::History(args) => {
            let config = load_config(&config_path, &env)?;
            let store = open_store(&config).await?;
            let code = history(&store, &args).await;
            store.close().await;
            code
        }
        Command::Run(_) | Command::Check | Command::Demo(_) => Err(usage(anyhow::anyhow!(
            "this command arrives with the reconciler"
        ))),
    }
}

/// Loads the config and sets up logging from it.
fn load_config(path: &std::path::Path, env: &ConfigEnv) -> Result<Config, Failure> {
    let config = config::load(path, env).map_err(usage)?;
    telemetry::init(config.log.format, &config.log.level);
    Ok(config)
}

async fn open_store(config: &Config) -> Result<Store, Failure> {
    Store::connect(&config.store.url)
        .await
        .map_err(Failure::from)
}

async fn store_dump(store: &Store) -> Result<u8, Failure> {
    let dump = store.dump().await?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &dump).context("cannot write the dump")?;
    writeln!(out).context("cannot write the dump")?;
    Ok(exit::OK)
}

async fn store_load(store: &Store, file: &std::path::Path) -> Result<u8, Failure> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {}", file.display()))
        .map_err(usage)?;
    match store.load_json(&text).await {
        Ok(summary) => {
            tracing::info!(file = %file.display(), ?summary, "store loaded");
            println!(
                "{}",
                serde_json::to_string(&summary).context("cannot print the summary")?
            );
            Ok(exit::OK)
        }
        Err(e @ (LoadError::Syntax(_) | LoadError::Invalid { .. })) => {
            Err(usage(anyhow::Error::new(e).context(format!(
                "{} was not loaded; the store is unchanged",
                file.display()
            ))))
        }
        Err(LoadError::Store(e)) => Err(Failure::from(anyhow::Error::new(e).context(format!(
            "{} was not loaded; the store is unchanged",
            file.display()
        )))),
    }
}

async fn history(store: &Store, args: &HistoryArgs) -> Result<u8, Failure> {
    let runs = store.recent_runs(args.limit).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &runs).context("cannot print history")?;
        writeln!(out).context("cannot print history")?;
        return Ok(exit::OK);
    }
    if runs.is_empty() {
        writeln!(out, "no sync runs recorded yet").context("cannot print history")?;
        return Ok(exit::OK);
    }
    writeln!(
        out,
        "{:>6}  {:<20}  {:<9}  {:<8}  {:>9}  changes",
        "run", "started (UTC)", "trigger", "status", "duration"
    )
    .context("cannot print history")?;
    for run in &runs {
        let started = chrono::DateTime::from_timestamp_millis(run.started_at)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let duration = run
            .finished_at
            .map(|f| format!("{:.1}s", (f - run.started_at) as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        let changes = run
            .counts
            .as_ref()
            .and_then(|c| c.as_object())
            .map(|c| {
                c.iter()
                    .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let changes = match &run.error {
            Some(e) => format!("{changes} error: {e}"),
            None => changes,
        };
        writeln!(
            out,
            "{:>6}  {:<20}  {:<9}  {:<8}  {:>9}  {}",
            run.id,
            started,
            run.trigger,
            run.status,
            duration,
            changes.trim()
        )
        .context("cannot print history")?;
    }
    Ok(exit::OK)
}

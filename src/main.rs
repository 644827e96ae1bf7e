//! The `writer-sync` binary: parses the command line, loads the config, sets
//! up logging and runs one command. The only place that uses anyhow and the
//! only place that maps outcomes to exit codes (SPEC §4):
//! 0 ok, 1 sync failed, 2 usage or config error, 3 blocked by the safety guard
//! or paused (SPEC §8), 4 refused by `apply` or `revert` (nothing written).

mod assets;
mod cli;
mod controls;
#[cfg(feature = "demo")]
mod demo;
mod healthcheck;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use writer_sync::config::{self, Config, ConfigEnv, ConfigFile, StoreOnly};
use writer_sync::daemon;
use writer_sync::okta::OktaClient;
use writer_sync::reconcile::control::{ControlError, ControlRun};
use writer_sync::reconcile::report::{Report, Status};
use writer_sync::reconcile::{self, RunOptions, SyncContext, Trigger, planfile};
use writer_sync::store::dump::LoadError;
use writer_sync::store::{Store, StoreUrl};
use writer_sync::telemetry;

use crate::cli::{ApplyArgs, Cli, Command, HistoryArgs, PlanArgs, RevertArgs, StoreCommand};

/// Exit codes of SPEC §4.
mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const BLOCKED: u8 = 3;
    /// The store is paused (SPEC §8): the same code as a block.
    pub const PAUSED: u8 = 3;
    pub const REFUSED: u8 = 4;
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
        // `writer-sync store dump | head`: the reader has what it wanted.
        // Like ripgrep, end quietly with success.
        Err(Failure { error, .. }) if error.is::<StdoutClosed>() => ExitCode::from(exit::OK),
        Err(Failure { code, error }) => {
            eprintln!("writer-sync: {error:#}");
            ExitCode::from(code)
        }
    }
}

/// Writing to stdout failed because its reader went away (EPIPE). Only
/// [`Printing::printing`] makes this error, so a closed socket elsewhere
/// (Okta, the store) is never mistaken for it.
#[derive(Debug)]
struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// The result of a write to stdout: a closed pipe becomes [`StdoutClosed`],
/// any other error says what could not be printed.
trait Printing<T> {
    fn printing(self, what: &'static str) -> Result<T, Failure>;
}

impl<T> Printing<T> for std::io::Result<T> {
    fn printing(self, what: &'static str) -> Result<T, Failure> {
        self.map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Failure::from(StdoutClosed),
            _ => Failure::from(anyhow::Error::new(e).context(what)),
        })
    }
}

impl<T> Printing<T> for serde_json::Result<T> {
    fn printing(self, what: &'static str) -> Result<T, Failure> {
        self.map_err(|e| match e.io_error_kind() {
            Some(std::io::ErrorKind::BrokenPipe) => Failure::from(StdoutClosed),
            _ => Failure::from(anyhow::Error::new(e).context(what)),
        })
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
            let config = load_store_config(&config_path, &env)?;
            let store = open_store(&config.store.url).await?;
            let code = match command {
                StoreCommand::Dump => store_dump(&store).await,
                StoreCommand::Load { file } => store_load(&store, &file).await,
            };
            store.close().await;
            code
        }
        Command::History(args) => {
            let config = load_store_config(&config_path, &env)?;
            let store = open_store(&config.store.url).await?;
            let code = history(&store, &args).await;
            store.close().await;
            code
        }
        Command::Pause(args) => {
            let config = load_store_config(&config_path, &env)?;
            let store = open_store(&config.store.url).await?;
            let code = controls::pause(&store, args.reason.as_deref()).await;
            store.close().await;
            code
        }
        Command::Resume => {
            let config = load_store_config(&config_path, &env)?;
            let store = open_store(&config.store.url).await?;
            let code = controls::resume(&store).await;
            store.close().await;
            code
        }
        Command::Audit(args) => {
            let config = load_store_config(&config_path, &env)?;
            let store = open_store(&config.store.url).await?;
            let code = controls::audit(&store, &args).await;
            store.close().await;
            code
        }
        Command::Plan(args) => {
            let (file, _) = load_config_file(&config_path, &env)?;
            let config = file.into_config().map_err(usage)?;
            plan(config, &args).await
        }
        Command::Apply(args) => {
            let config = load_store_config(&config_path, &env)?;
            apply_file(&config, &args).await
        }
        Command::Revert(args) => {
            let config = load_store_config(&config_path, &env)?;
            revert(&config, &args).await
        }
        Command::Run(args) => {
            if !args.once && (args.force || args.json) {
                return Err(usage(anyhow::anyhow!("--force and --json need --once")));
            }
            if args.once {
                let (file, _) = load_config_file(&config_path, &env)?;
                let config = file.into_config().map_err(usage)?;
                run_once(config, &args).await
            } else {
                let (file, log) = load_config_file(&config_path, &env)?;
                let config = file.into_config().map_err(usage)?;
                daemon::run(config_path, env, config, log, args.dry_run)
                    .await
                    .map_err(Failure::from)?;
                Ok(exit::OK)
            }
        }
        Command::Check => {
            let (file, _) = load_config_file(&config_path, &env)?;
            check(file).await
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(&args.db).await.map_err(Failure::from),
        Command::Healthcheck(args) => {
            healthcheck::check(&args.addr, std::time::Duration::from_secs(args.timeout))?;
            Ok(exit::OK)
        }
        Command::GenerateAssets { dir } => {
            let mut out = std::io::stdout().lock();
            for path in assets::generate(&dir)? {
                writeln!(out, "{}", path.display()).printing("cannot print")?;
            }
            Ok(exit::OK)
        }
    }
}

/// Builds the Okta client from the config.
fn okta_client(config: &Config) -> Result<OktaClient, Failure> {
    OktaClient::new(config.okta_client_config()).map_err(usage)
}

async fn run_once(config: Config, args: &cli::RunArgs) -> Result<u8, Failure> {
    let okta = okta_client(&config)?;
    let store = open_store(&config.store.url).await?;
    let ctx = SyncContext {
        config: Arc::new(config),
        store,
        okta,
        holder: reconcile::holder_id(),
    };
    let mut opts = RunOptions::new(Trigger::Once);
    opts.dry_run = args.dry_run;
    opts.force = args.force;
    // SIGINT/SIGTERM: stop between apply batches (the current one commits).
    let stop = Arc::clone(&opts.stop);
    let signals = tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::warn!("stop requested: finishing the current batch");
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let report = reconcile::run_once(&ctx, &opts).await;
    signals.abort();
    ctx.store.close().await;
    // The run happened: its exit code stands even when nobody reads the
    // report any more (`run --once | head -1`).
    match print_report(&report, args.json) {
        Err(Failure { error, .. }) if error.is::<StdoutClosed>() => {}
        other => other?,
    }
    Ok(match report.status {
        Status::Ok | Status::DryRun => exit::OK,
        // Interrupted by SIGTERM/SIGINT: the sync did not complete.
        Status::Failed | Status::Interrupted => exit::FAILED,
        Status::Blocked => exit::BLOCKED,
        // Paused (SPEC §8): planned, nothing applied, like a block.
        Status::Paused => exit::PAUSED,
    })
}

/// `plan -o FILE`: the dry-run report, and the plan file beside it.
async fn plan(config: Config, args: &PlanArgs) -> Result<u8, Failure> {
    let okta = okta_client(&config)?;
    let store = open_store(&config.store.url).await?;
    let ctx = SyncContext {
        config: Arc::new(config),
        store,
        okta,
        holder: reconcile::holder_id(),
    };
    let made = planfile::make_plan(&ctx).await;
    ctx.store.close().await;
    let (report, file) = match made {
        Ok(made) => made,
        Err(report) => {
            print_report(&report, args.json)?;
            return Ok(exit::FAILED);
        }
    };
    planfile::write_plan_file(&args.output, &file)?;
    tracing::info!(
        file = %args.output.display(),
        changes = file.changes.len(),
        would_block = file.guard.would_block,
        "plan written"
    );
    print_report(&report, args.json)?;
    if !args.json {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "plan written to {} ({} changes); review it, then apply it with `writer-sync apply {}`",
            args.output.display(),
            file.changes.len(),
            args.output.display()
        )
        .printing("cannot print the report")?;
    }
    Ok(exit::OK)
}

/// The context of `apply FILE` and `revert RUN_ID`.
fn control_run<'a>(
    store: &'a Store,
    holder: &'a str,
    config: &StoreOnly,
    trigger: Trigger,
    dry_run: bool,
) -> ControlRun<'a> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    // SIGINT/SIGTERM: stop between apply batches (the current one commits).
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::warn!("stop requested: finishing the current batch");
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    ControlRun {
        store,
        holder,
        trigger,
        dry_run,
        writes_per_second: config.store.writes_per_second,
        stop,
    }
}

/// The exit code of an operator command's outcome.
fn control_outcome(result: Result<Report, ControlError>, json: bool) -> Result<u8, Failure> {
    match result {
        Ok(report) => {
            match print_report(&report, json) {
                Err(Failure { error, .. }) if error.is::<StdoutClosed>() => {}
                other => other?,
            }
            Ok(match report.status {
                Status::Ok | Status::DryRun => exit::OK,
                Status::Blocked => exit::BLOCKED,
                Status::Paused => exit::PAUSED,
                Status::Failed | Status::Interrupted => exit::FAILED,
            })
        }
        Err(e @ ControlError::Usage(_)) => Err(usage(e)),
        Err(e @ ControlError::Refused(_)) => Err(Failure {
            code: exit::REFUSED,
            error: e.into(),
        }),
        Err(e @ ControlError::Store(_)) => Err(Failure::from(e)),
    }
}

async fn apply_file(config: &StoreOnly, args: &ApplyArgs) -> Result<u8, Failure> {
    let file = match planfile::read_plan_file(&args.file) {
        Ok(file) => file,
        Err(e) => return control_outcome(Err(e), args.json),
    };
    let store = open_store(&config.store.url).await?;
    let holder = reconcile::holder_id();
    let run = control_run(&store, &holder, config, Trigger::PlanFile, args.dry_run);
    let result = planfile::apply_plan_file(&run, file).await;
    store.close().await;
    control_outcome(result, args.json)
}

async fn revert(config: &StoreOnly, args: &RevertArgs) -> Result<u8, Failure> {
    let store = open_store(&config.store.url).await?;
    let holder = reconcile::holder_id();
    let run = control_run(&store, &holder, config, Trigger::Revert, args.dry_run);
    let result = reconcile::revert::revert(&run, args.run_id).await;
    store.close().await;
    control_outcome(result, args.json)
}

fn print_report(report: &Report, json: bool) -> Result<(), Failure> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        serde_json::to_writer(&mut out, &report.json()).printing("cannot print the report")?;
        writeln!(out).printing("cannot print the report")?;
    } else {
        write!(out, "{}", report.human()).printing("cannot print the report")?;
    }
    out.flush().printing("cannot print the report")?;
    Ok(())
}

/// `check`: the config is valid (it loaded), then it must have a
/// credential; reach the store and Okta and say what was found. Exit 0 when
/// both answer, 1 otherwise.
async fn check(file: ConfigFile) -> Result<u8, Failure> {
    let mut out = std::io::stdout().lock();
    let mut ok = true;
    let mut line = |text: String| writeln!(out, "{text}").printing("cannot print");
    line(format!("config      {} (valid)", file.path().display()))?;
    let config = file.into_config().map_err(usage)?;
    let mode = match &config.okta.auth {
        config::OktaAuth::Ssws { source, .. } => format!("SSWS token from {source}"),
        config::OktaAuth::OAuth {
            client_id,
            private_key,
            key_source,
            dpop,
            ..
        } => format!(
            "OAuth 2.0 client {client_id}, {} key from {key_source}, DPoP {dpop}",
            private_key.describe()
        ),
    };
    line(format!("okta        {} ({mode})", config.okta.org_url))?;
    line(format!(
        "schedule    {} (UTC), next {}",
        config.sync.schedule.expr(),
        config
            .sync
            .schedule
            .next_after(chrono::Utc::now())
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "never".into())
    ))?;
    // Read-only: `check` creates no file and runs no migration; it says
    // what the first run will do instead.
    match Store::inspect(&config.store.url).await {
        Ok(None) => line(format!(
            "store       {}: does not exist yet (the first run creates it)",
            config.store.url.redacted()
        ))?,
        Ok(Some(store)) => {
            let pending = store.pending_migrations().await;
            let loaded = match pending {
                Ok(pending) if !pending.is_empty() => Ok(Err(pending)),
                Ok(_) => store.load_state().await.map(Ok),
                Err(e) => Err(e),
            };
            match loaded {
                Ok(Ok(state)) => line(format!(
                    "store       {} ({:?}): {} users ({} managed), {} teams ({} linked), {} memberships",
                    store.location(),
                    store.backend(),
                    state.users.len(),
                    state.users.iter().filter(|u| u.okta_id.is_some()).count(),
                    state.teams.len(),
                    state
                        .teams
                        .iter()
                        .filter(|t| t.okta_group_id.is_some())
                        .count(),
                    state.memberships.len()
                ))?,
                Ok(Err(pending)) => line(format!(
                    "store       {} ({:?}): {} migration(s) pending ({}); the next run applies them",
                    store.location(),
                    store.backend(),
                    pending.len(),
                    pending
                        .iter()
                        .map(|v| format!("{v:04}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))?,
                Err(e) => {
                    ok = false;
                    line(format!(
                        "store       FAILED: {}",
                        reconcile::error_chain(&e)
                    ))?;
                }
            }
            store.close().await;
        }
        Err(e) => {
            ok = false;
            line(format!(
                "store       FAILED: {}",
                reconcile::error_chain(&e)
            ))?;
        }
    }
    let client = OktaClient::new(writer_sync::check::okta_client_config(&config)).map_err(usage)?;
    for finding in writer_sync::check::probe(&client, &config).await {
        ok &= finding.ok;
        line(format!(
            "{:<11} {}{}",
            finding.what,
            if finding.ok { "" } else { "FAILED: " },
            finding.detail
        ))?;
    }
    Ok(if ok { exit::OK } else { exit::FAILED })
}

/// Loads the whole config file and sets up logging from it. Whether the
/// command needs the credential is the caller's decision (after logging is
/// up, so permission warnings are logged before a missing credential fails).
fn load_config_file(
    path: &std::path::Path,
    env: &ConfigEnv,
) -> Result<(ConfigFile, telemetry::LogHandle), Failure> {
    let file = config::load_file(path, env).map_err(usage)?;
    let log = telemetry::init(file.log().format, &file.log().level);
    Ok((file, log))
}

/// Loads the config of a store-only command and sets up logging from it.
fn load_store_config(path: &std::path::Path, env: &ConfigEnv) -> Result<StoreOnly, Failure> {
    let config = config::load_store(path, env).map_err(usage)?;
    telemetry::init(config.log.format, &config.log.level);
    Ok(config)
}

async fn open_store(url: &StoreUrl) -> Result<Store, Failure> {
    Store::connect(url).await.map_err(Failure::from)
}

async fn store_dump(store: &Store) -> Result<u8, Failure> {
    let dump = store.dump().await?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &dump).printing("cannot write the dump")?;
    writeln!(out).printing("cannot write the dump")?;
    Ok(exit::OK)
}

async fn store_load(store: &Store, file: &std::path::Path) -> Result<u8, Failure> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {}", file.display()))
        .map_err(usage)?;
    match store.load_json(&text).await {
        Ok(summary) => {
            tracing::info!(
                file = %file.display(),
                users_inserted = summary.users_inserted,
                users_updated = summary.users_updated,
                teams_inserted = summary.teams_inserted,
                teams_updated = summary.teams_updated,
                memberships_added = summary.memberships_added,
                memberships_updated = summary.memberships_updated,
                summary = %summary,
                "store loaded"
            );
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &summary).printing("cannot print the summary")?;
            writeln!(out).printing("cannot print the summary")?;
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

/// One line of `history`: a run, or a pause or resume (SPEC §8).
enum HistoryItem {
    Run(writer_sync::store::RunRecord),
    Control(writer_sync::store::ControlEvent),
}

impl HistoryItem {
    fn at(&self) -> i64 {
        match self {
            HistoryItem::Run(r) => r.started_at,
            HistoryItem::Control(e) => e.at,
        }
    }
}

async fn history(store: &Store, args: &HistoryArgs) -> Result<u8, Failure> {
    let runs = store.recent_runs(args.limit).await?;
    let events = store.control_events(args.limit).await?;
    let mut items: Vec<HistoryItem> = runs
        .into_iter()
        .map(HistoryItem::Run)
        .chain(events.into_iter().map(HistoryItem::Control))
        .collect();
    items.sort_by_key(|i| std::cmp::Reverse(i.at()));
    items.truncate(args.limit as usize);
    let mut out = std::io::stdout().lock();
    if args.json {
        // Runs as they always were; a pause or resume is an object with
        // `event` ("pause" or "resume").
        let values: Vec<serde_json::Value> = items
            .iter()
            .map(|i| match i {
                HistoryItem::Run(r) => serde_json::to_value(r).unwrap_or_default(),
                HistoryItem::Control(e) => serde_json::json!({
                    "event": e.action, "id": e.id, "at": e.at, "by": e.by,
                    "host": e.host, "reason": e.reason,
                }),
            })
            .collect();
        serde_json::to_writer(&mut out, &values).printing("cannot print history")?;
        writeln!(out).printing("cannot print history")?;
        return Ok(exit::OK);
    }
    if items.is_empty() {
        writeln!(out, "no sync runs recorded yet").printing("cannot print history")?;
        return Ok(exit::OK);
    }
    writeln!(
        out,
        "{:>6}  {:<20}  {:<9}  {:<11}  {:>9}  changes",
        "run", "started (UTC)", "trigger", "status", "duration"
    )
    .printing("cannot print history")?;
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default()
    };
    for item in &items {
        let run = match item {
            HistoryItem::Run(run) => run,
            HistoryItem::Control(e) => {
                let mut what = format!("by {}@{}", e.by, e.host);
                if !e.reason.is_empty() {
                    what.push_str(&format!(": {}", e.reason));
                }
                writeln!(
                    out,
                    "{:>6}  {:<20}  {:<9}  {:<11}  {:>9}  {}",
                    "-",
                    time(e.at),
                    "operator",
                    e.action,
                    "-",
                    writer_sync::telemetry::escape_message(&what)
                )
                .printing("cannot print history")?;
                continue;
            }
        };
        let started = time(run.started_at);
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
            "{:>6}  {:<20}  {:<9}  {:<11}  {:>9}  {}",
            run.id,
            started,
            run.trigger,
            run.status,
            duration,
            changes.trim()
        )
        .printing("cannot print history")?;
    }
    Ok(exit::OK)
}

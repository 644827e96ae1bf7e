//! `writer-sync run`: the daemon's control loop.
//!
//! Invariant: one `select!` over a closed set of [`Event`]s decides
//! everything: cron ticks, SIGUSR1 (sync now), SIGHUP (reload), SIGTERM/SIGINT
//! (shutdown), the watchdog, and the end of a run. At most one run is in
//! flight; a tick or SIGUSR1 during a run is coalesced into one follow-up
//! run. Okta or the store being unreachable never ends the loop.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use crate::config::{self, Config, ConfigEnv};
use crate::metrics::Metrics;
use crate::okta::OktaClient;
use crate::reconcile::events::FallbackReason;
use crate::reconcile::incremental::{self, EventsRun};
use crate::reconcile::report::{FailureKind, Report, Status};
use crate::reconcile::{self, RunOptions, SyncContext, Trigger, error_chain};
use crate::server::{self, Health};
use crate::store::Store;
use crate::systemd;
use crate::telemetry::LogHandle;

mod policy;
mod status;

pub use policy::{NextStep, failure_backoff, next_run_after, next_step};
use policy::{next_tick, unready_after};
use status::shorten;
pub use status::{reload_refused_status, status_line};

/// How long a graceful shutdown waits for the current run's batch to commit
/// before giving up and exiting anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Why the daemon could not start (it never stops for Okta or store trouble
/// once running).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The Okta client could not be built from the config.
    #[error("cannot set up the Okta client")]
    Okta(#[source] crate::okta::error::OktaError),
    /// Installing a signal handler failed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// The HTTP server could not bind `server.listen`.
    #[error("cannot listen on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A second shutdown signal arrived while the run was finishing.
    #[error("stopped at once by a second signal")]
    Forced,
}

/// What the loop reacts to.
#[derive(Debug)]
enum Event {
    /// The schedule (or a retry after failures) says run now.
    Tick(Trigger),
    /// SIGUSR1.
    RunNow,
    /// SIGHUP.
    Reload,
    /// SIGTERM or SIGINT.
    Shutdown,
    /// Time to tell systemd we are alive (if we are).
    Watchdog,
    /// The run in flight ended.
    RunDone(Box<Report>),
    /// Time to read the System Log (SPEC §7).
    Poll,
    /// The incremental run in flight ended.
    PollDone(Box<EventsRun>),
    /// While the last run was paused: time to look whether the store was
    /// resumed (one store read, no Okta request).
    ResumeCheck,
}

/// Runs the daemon until SIGTERM/SIGINT. `config` is already validated.
pub async fn run(
    config_path: PathBuf,
    env: ConfigEnv,
    config: Config,
    log: LogHandle,
    dry_run: bool,
) -> Result<(), DaemonError> {
    // Signal streams are created first so no signal is lost once READY.
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(DaemonError::Signals)?;

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(
        Arc::clone(&metrics),
        unready_after(&config.sync.schedule),
    ));
    let mut config = Arc::new(config);
    let mut okta = OktaClient::new(config.okta_client_config()).map_err(DaemonError::Okta)?;
    let _server = match config.server.listen {
        Some(addr) => Some(
            server::start(addr, Arc::clone(&health))
                .await
                .map_err(|source| DaemonError::Listen { addr, source })?,
        ),
        None => None,
    };
    let holder = reconcile::holder_id();
    tracing::info!(
        config = %config_path.display(),
        store = %config.store.url,
        schedule = config.sync.schedule.expr(),
        dry_run,
        holder = %holder,
        "writer-sync daemon starting"
    );

    // The store: connect and migrate before READY; keep trying (with
    // backoff) while it is unreachable, but stay stoppable.
    let mut attempt = 0u32;
    let store = loop {
        match Store::connect(&config.store.url).await {
            Ok(store) => break store,
            Err(e) => {
                attempt += 1;
                let wait = failure_backoff(attempt);
                tracing::error!(error = %error_chain(&e), retry_in_s = wait.as_secs(), "store unreachable at start");
                systemd::status(&format!("waiting for the store: {}", error_chain(&e)));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = term.recv() => return Ok(()),
                    _ = int.recv() => return Ok(()),
                }
            }
        }
    };
    health.set_store(store.clone());
    let mut store = store;
    if let Ok((active, inactive)) = store.managed_user_counts().await {
        metrics.set_managed_users(active, inactive);
    }
    systemd::ready();
    systemd::status(&format!(
        "ready; next run {}",
        describe_next(&config, Utc::now())
    ));

    let progress = Arc::new(AtomicUsize::new(0));
    let watchdog = systemd::watchdog_interval();
    // Set while the last run found the store paused: the loop then looks
    // for a resume every RESUME_CHECK_INTERVAL and syncs at once on one.
    let mut paused = false;
    let mut resume_timer = tokio::time::interval(RESUME_CHECK_INTERVAL);
    resume_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watchdog_timer = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    watchdog_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_progress_seen = u64::MAX;

    let mut next_run: DateTime<Utc> = if config.sync.run_on_start {
        Utc::now()
    } else {
        next_tick(&config.sync.schedule, Utc::now())
    };
    let mut next_trigger = if config.sync.run_on_start {
        Trigger::Start
    } else {
        Trigger::Schedule
    };
    let mut running: Option<(JoinHandle<Report>, Arc<std::sync::atomic::AtomicBool>)> = None;
    // The incremental run in flight; never beside a full run.
    let mut polling: Option<(JoinHandle<EventsRun>, Arc<std::sync::atomic::AtomicBool>)> = None;
    // When the next System Log poll is due; `None` while polls wait for a
    // full reconcile (none succeeded yet, the last one failed or was
    // blocked, the log is unreadable, or events are off).
    let mut next_poll: Option<tokio::time::Instant> = None;
    // Without a run at start, polls carry on from the cursor a full
    // reconcile of an earlier process left.
    if events_on(&config, dry_run) && !config.sync.run_on_start {
        match store.event_cursor().await {
            Ok(Some(_)) => {
                next_poll = Some(tokio::time::Instant::now() + config.events.poll_interval);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "could not read the System Log cursor; polls start after the next full reconcile")
            }
        }
    }
    let mut pending: Option<Trigger> = None;
    let mut transient_failures = 0u32;
    // Set while the last run failed with trouble only a person can fix: a
    // config reload then runs at once.
    let mut awaiting_fix = false;
    // Why the last `systemctl reload` was refused, until one succeeds.
    let mut reload_refused: Option<String> = None;

    loop {
        let sleep_for = (next_run - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        let idle = running.is_none() && polling.is_none();
        let poll_at = next_poll.unwrap_or_else(tokio::time::Instant::now);
        let event = tokio::select! {
            _ = tokio::time::sleep(sleep_for), if idle => Event::Tick(next_trigger),
            _ = tokio::time::sleep_until(poll_at), if idle && next_poll.is_some() => Event::Poll,
            done = async { polling.as_mut().map(|(h, _)| h).expect("guarded by if").await }, if polling.is_some() => {
                polling = None;
                match done {
                    Ok(run) => Event::PollDone(Box::new(run)),
                    Err(e) => {
                        tracing::error!(error = %e, "incremental sync task panicked");
                        Event::PollDone(Box::new(EventsRun {
                            outcome: incremental::Outcome::Fallback {
                                reason: FallbackReason::ReadError,
                                detail: format!("the incremental sync task panicked: {e}"),
                            },
                            events_by_type: Default::default(),
                            newest_published_ms: None,
                            requests: 0,
                        }))
                    }
                }
            }
            _ = usr1.recv() => Event::RunNow,
            _ = hup.recv() => Event::Reload,
            _ = term.recv() => Event::Shutdown,
            _ = int.recv() => Event::Shutdown,
            _ = watchdog_timer.tick(), if watchdog.is_some() => Event::Watchdog,
            _ = resume_timer.tick(), if idle && paused => Event::ResumeCheck,
            done = async { running.as_mut().map(|(h, _)| h).expect("guarded by if").await }, if running.is_some() => {
                running = None;
                match done {
                    Ok(report) => Event::RunDone(Box::new(report)),
                    Err(e) => {
                        // A panic in a run is a bug; report it as a failed run.
                        tracing::error!(error = %e, "sync task panicked");
                        Event::RunDone(Box::new(panicked_report(e.to_string())))
                    }
                }
            }
        };
        match event {
            Event::Tick(trigger) => {
                running = Some(spawn_run(
                    &config, &store, &okta, &holder, trigger, dry_run, &progress,
                ));
                // The tick is consumed: the next one is the following slot.
                next_run = next_tick(&config.sync.schedule, Utc::now());
                systemd::status(&format!("syncing ({})", trigger.as_str()));
            }
            Event::RunNow => {
                if running.is_some() || polling.is_some() {
                    tracing::info!("SIGUSR1 during a run: one more run follows it");
                    pending = Some(Trigger::Signal);
                } else {
                    tracing::info!("SIGUSR1: syncing now");
                    running = Some(spawn_run(
                        &config,
                        &store,
                        &okta,
                        &holder,
                        Trigger::Signal,
                        dry_run,
                        &progress,
                    ));
                }
            }
            Event::Poll => {
                polling = Some(spawn_poll(&config, &store, &okta, &holder, &progress));
            }
            Event::PollDone(run) => {
                metrics.set_okta_stats(okta.stats());
                metrics.record_events(&run);
                let interval = config.events.poll_interval;
                let after_interval = Some(tokio::time::Instant::now() + interval);
                match run.outcome {
                    incremental::Outcome::Idle | incremental::Outcome::LockHeld => {
                        next_poll = after_interval;
                    }
                    incremental::Outcome::Ran(report) => {
                        reconcile::log_finished(&report, Trigger::Events.as_str());
                        paused = report.status == Status::Paused;
                        if report.run_id.is_some() {
                            let managed = store.managed_user_counts().await;
                            if let Ok((active, inactive)) = managed {
                                metrics.set_managed_users(active, inactive);
                            }
                            metrics.record_run(&report);
                            systemd::status(&status_line(&report, Utc::now()));
                        }
                        next_poll = match report.status {
                            // Blocked: the guard wants a person; the next
                            // full reconcile tries again (and blocks too,
                            // until it is forced).
                            Status::Blocked => None,
                            // Paused: the cursor stayed, so each poll reads
                            // the same events again; slower polls keep the
                            // history readable, and pick up a resume.
                            Status::Paused => Some(
                                tokio::time::Instant::now() + interval.max(PAUSED_POLL_INTERVAL),
                            ),
                            _ => after_interval,
                        };
                    }
                    incremental::Outcome::Fallback { reason, detail } => {
                        tracing::info!(reason = reason.as_str(), detail = %detail, "incremental sync falls back to a full reconcile");
                        next_poll = None;
                        if transient_failures == 0 {
                            next_run = Utc::now();
                            next_trigger = Trigger::Fallback;
                        }
                    }
                    incremental::Outcome::Unavailable(why) => {
                        tracing::error!(error = %why, "the System Log cannot be read with this credential: full reconciles only, on sync.schedule (grant okta.logs.read or an admin role that can read the System Log)");
                        next_poll = None;
                    }
                    incremental::Outcome::StoreFailed(why) => {
                        tracing::warn!(error = %why, "incremental sync could not use the store; polling again later");
                        next_poll = after_interval;
                    }
                }
            }
            Event::Reload => match reload(&config_path, &env, &config, &log).await {
                Ok((new_config, new_store)) => {
                    match OktaClient::new(new_config.okta_client_config()) {
                        Ok(client) => {
                            metrics.set_okta_stats(okta.stats());
                            metrics.retire_okta_client();
                            okta = client;
                        }
                        Err(e) => {
                            let why = error_chain(&e);
                            tracing::error!(error = %why, "reloaded config rejected: keeping the old one");
                            systemd::status(&reload_refused_status(&why));
                            reload_refused = Some(why);
                            continue;
                        }
                    }
                    if let Some(s) = new_store {
                        store = s;
                        health.set_store(store.clone());
                    }
                    health.set_unready_after(unready_after(&new_config.sync.schedule));
                    config = Arc::new(new_config);
                    if !events_on(&config, dry_run) {
                        next_poll = None;
                    }
                    if running.is_none() {
                        next_run = if awaiting_fix {
                            tracing::info!(
                                "the last run failed with a credential or configuration problem: running with the reloaded config now"
                            );
                            Utc::now()
                        } else {
                            next_tick(&config.sync.schedule, Utc::now())
                        };
                        next_trigger = Trigger::Schedule;
                    }
                    reload_refused = None;
                    tracing::info!(schedule = config.sync.schedule.expr(), "config reloaded");
                    systemd::status(&format!(
                        "config reloaded; next run {}",
                        describe_next(&config, Utc::now())
                    ));
                }
                Err(why) => {
                    tracing::error!(error = %why, "config reload failed: keeping the old config");
                    systemd::status(&reload_refused_status(&why));
                    reload_refused = Some(why);
                }
            },
            Event::Shutdown => {
                systemd::stopping();
                if let Some((handle, stop)) = polling.take() {
                    // An incremental run commits its cursor with its last
                    // batch, or stops before writing anything.
                    stop.store(true, Ordering::SeqCst);
                    if tokio::time::timeout(SHUTDOWN_GRACE, handle).await.is_err() {
                        tracing::error!(
                            grace_s = SHUTDOWN_GRACE.as_secs(),
                            "the incremental run did not stop in time; exiting"
                        );
                    }
                }
                match running.take() {
                    None => {
                        tracing::info!("stopping: no run in flight");
                        break;
                    }
                    Some((handle, stop)) => {
                        tracing::info!("stopping: letting the current batch commit");
                        stop.store(true, Ordering::SeqCst);
                        let second = async {
                            tokio::select! {
                                _ = term.recv() => {}
                                _ = int.recv() => {}
                            }
                        };
                        tokio::select! {
                            done = tokio::time::timeout(SHUTDOWN_GRACE, handle) => {
                                match done {
                                    Ok(Ok(report)) => {
                                        metrics.record_run(&report);
                                    }
                                    Ok(Err(e)) => tracing::error!(error = %e, "sync task panicked during shutdown"),
                                    Err(_) => tracing::error!(grace_s = SHUTDOWN_GRACE.as_secs(), "the run did not stop in time; exiting (the store rolls back the open transaction)"),
                                }
                            }
                            _ = second => {
                                tracing::warn!("second stop signal: exiting now");
                                return Err(DaemonError::Forced);
                            }
                        }
                        break;
                    }
                }
            }
            Event::ResumeCheck => match store.pause_state().await {
                Ok(None) => {
                    tracing::info!("the store was resumed: syncing now");
                    paused = false;
                    next_run = Utc::now();
                    next_trigger = Trigger::Signal;
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "could not read the pause state; the next run reads it again");
                }
            },
            Event::Watchdog => {
                // Alive: the loop turned. Making progress: idle, or the run
                // did some Okta request or store batch since the last ping.
                let now_progress = progress.load(Ordering::Relaxed) as u64
                    + okta.stats().requests.values().sum::<u64>();
                if (running.is_none() && polling.is_none()) || now_progress != last_progress_seen {
                    systemd::watchdog();
                    last_progress_seen = now_progress;
                } else {
                    tracing::warn!(
                        "no progress since the last watchdog ping; withholding WATCHDOG=1"
                    );
                }
            }
            Event::RunDone(report) => {
                // Read the store first, then publish everything at once: a
                // scrape that sees the new run count also sees its users.
                let managed = store.managed_user_counts().await;
                metrics.set_okta_stats(okta.stats());
                if let Ok((active, inactive)) = managed {
                    metrics.set_managed_users(active, inactive);
                }
                metrics.record_run(&report);
                paused = report.status == Status::Paused;
                let now = Utc::now();
                // Polls carry on from a full reconcile that succeeded (it
                // set the cursor); after a failed or blocked one they wait
                // for the next. Each full run tries the System Log again
                // (SPEC §7: one error per full run without permission).
                next_poll = (events_on(&config, dry_run) && report.status == Status::Ok)
                    .then(|| tokio::time::Instant::now() + config.events.poll_interval);
                if report.failure == Some(FailureKind::Transient) {
                    transient_failures += 1;
                } else {
                    transient_failures = 0;
                }
                awaiting_fix = matches!(
                    report.failure,
                    Some(FailureKind::Credential | FailureKind::Configuration)
                );
                let mut line = status_line(&report, now);
                if let Some(why) = &reload_refused {
                    // Until a reload succeeds, `systemctl status` keeps
                    // saying the running config is not the file's.
                    line.push_str(&format!("; config reload refused: {}", shorten(why, 100)));
                }
                systemd::status(&line);
                let step = next_step(report.failure, transient_failures);
                next_trigger = Trigger::Schedule;
                if let Some(trigger) = pending.take() {
                    // SIGUSR1 during the run.
                    next_run = now;
                    next_trigger = trigger;
                } else {
                    match step {
                        // Ticks that came during the run coalesce into one run now.
                        NextStep::CatchUp if next_run <= now => next_run = now,
                        NextStep::CatchUp | NextStep::NextTick => {
                            next_run = next_tick(&config.sync.schedule, now);
                        }
                        NextStep::Backoff(wait) => {
                            next_run =
                                next_run_after(&config.sync.schedule, now, transient_failures);
                            tracing::warn!(
                                consecutive_failures = transient_failures,
                                backoff_s = wait.as_secs(),
                                next_run = %next_run.to_rfc3339(),
                                "run failed; retrying at the next tick after backoff"
                            );
                        }
                    }
                    if awaiting_fix {
                        tracing::warn!(
                            kind = report.failure.map_or("", FailureKind::as_str),
                            next_run = %next_run.to_rfc3339(),
                            "run failed with a problem retrying cannot fix; trying again at the next tick or on reload"
                        );
                    }
                }
            }
        }
    }
    store.close().await;
    tracing::info!("writer-sync daemon stopped");
    Ok(())
}

/// Whether this daemon polls the System Log between full reconciles (not
/// in a dry-run daemon, which writes nothing, cursor included).
fn events_on(config: &Config, dry_run: bool) -> bool {
    config.events.enabled() && !dry_run
}

/// A System Log poll on its own task, and its stop flag.
fn spawn_poll(
    config: &Arc<Config>,
    store: &Store,
    okta: &OktaClient,
    holder: &str,
    progress: &Arc<AtomicUsize>,
) -> (JoinHandle<EventsRun>, Arc<std::sync::atomic::AtomicBool>) {
    let (ctx, opts) = run_setup(
        config,
        store,
        okta,
        holder,
        Trigger::Events,
        false,
        progress,
    );
    let stop = Arc::clone(&opts.stop);
    (
        tokio::spawn(async move { incremental::run_events(&ctx, &opts).await }),
        stop,
    )
}

/// A full reconcile on its own task, and its stop flag.
fn spawn_run(
    config: &Arc<Config>,
    store: &Store,
    okta: &OktaClient,
    holder: &str,
    trigger: Trigger,
    dry_run: bool,
    progress: &Arc<AtomicUsize>,
) -> (JoinHandle<Report>, Arc<std::sync::atomic::AtomicBool>) {
    let (ctx, opts) = run_setup(config, store, okta, holder, trigger, dry_run, progress);
    let stop = Arc::clone(&opts.stop);
    (
        tokio::spawn(async move { reconcile::run_once(&ctx, &opts).await }),
        stop,
    )
}

/// The context and options of a run or poll the loop starts: its progress
/// (pages and changes, at least one a call) counts into `progress` for the
/// watchdog.
fn run_setup(
    config: &Arc<Config>,
    store: &Store,
    okta: &OktaClient,
    holder: &str,
    trigger: Trigger,
    dry_run: bool,
    progress: &Arc<AtomicUsize>,
) -> (SyncContext, RunOptions) {
    let ctx = SyncContext {
        config: Arc::clone(config),
        store: store.clone(),
        okta: okta.clone(),
        holder: holder.to_owned(),
    };
    let mut opts = RunOptions::new(trigger);
    opts.dry_run = dry_run;
    let counter = Arc::clone(progress);
    opts.progress = Arc::new(move |n| {
        counter.fetch_add(n.max(1), Ordering::Relaxed);
    });
    (ctx, opts)
}

/// Re-reads and validates the config. Returns the new config and, when the
/// store URL changed, the new store (connected and migrated).
async fn reload(
    path: &std::path::Path,
    env: &ConfigEnv,
    old: &Config,
    log: &LogHandle,
) -> Result<(Config, Option<Store>), String> {
    let env = ConfigEnv {
        // The token file or credential may have been rotated: re-read them,
        // but keep the environment the process started with.
        ..env.clone()
    };
    let new = config::load(path, &env).map_err(|e| error_chain(&e))?;
    let store = if new.store.url != old.store.url {
        Some(
            Store::connect(&new.store.url)
                .await
                .map_err(|e| format!("new store.url unusable: {}", error_chain(&e)))?,
        )
    } else {
        None
    };
    if new.server.listen != old.server.listen {
        tracing::warn!("server.listen changed: restart writer-sync to move the HTTP server");
    }
    log.set_level(&new.log.level)
        .map_err(|e| format!("log.level: {e}"))?;
    Ok((new, store))
}

fn describe_next(config: &Config, now: DateTime<Utc>) -> String {
    if config.sync.run_on_start {
        "now".into()
    } else {
        next_tick(&config.sync.schedule, now)
            .format("%H:%M:%S UTC")
            .to_string()
    }
}

/// How often a daemon whose last run was paused looks whether the store was
/// resumed (a store read): a `writer-sync resume` takes effect within this
/// long, not at the next tick.
pub const RESUME_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// How often a paused daemon polls the System Log at most (SPEC §8): each
/// such poll reads the events the pause holds back again.
pub const PAUSED_POLL_INTERVAL: Duration = Duration::from_secs(300);

fn panicked_report(message: String) -> Report {
    Report {
        status: Status::Failed,
        counts: Default::default(),
        changes: Vec::new(),
        findings: Vec::new(),
        error: Some(format!("the sync task panicked: {message}")),
        run_id: None,
        duration_ms: 0,
        planned: 0,
        failure: Some(FailureKind::Configuration),
        paused: None,
        pending_deactivations: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CronSchedule;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(failure_backoff(1), Duration::from_secs(30));
        assert_eq!(failure_backoff(2), Duration::from_secs(60));
        assert_eq!(failure_backoff(4), Duration::from_secs(240));
        assert_eq!(failure_backoff(20), Duration::from_secs(1800));
    }

    #[test]
    fn failed_runs_wait_for_the_first_tick_after_the_backoff() {
        let every_minute = CronSchedule::parse("* * * * *").unwrap();
        let now = t("2026-01-01T00:00:10Z");
        assert_eq!(
            next_run_after(&every_minute, now, 0),
            t("2026-01-01T00:01:00Z")
        );
        // 1 failure: 30 s backoff, next tick 00:01 is after it.
        assert_eq!(
            next_run_after(&every_minute, now, 1),
            t("2026-01-01T00:01:00Z")
        );
        // 3 failures: 2 min backoff (00:02:10) => tick 00:03.
        assert_eq!(
            next_run_after(&every_minute, now, 3),
            t("2026-01-01T00:03:00Z")
        );
        // With a 10-minute schedule the backoff rarely matters.
        let ten = CronSchedule::parse("*/10 * * * *").unwrap();
        assert_eq!(next_run_after(&ten, now, 3), t("2026-01-01T00:10:00Z"));
    }

    #[test]
    fn credential_trouble_does_not_back_off_like_transient_trouble() {
        assert_eq!(next_step(None, 0), NextStep::CatchUp);
        assert_eq!(
            next_step(Some(FailureKind::Transient), 1),
            NextStep::Backoff(Duration::from_secs(30))
        );
        assert_eq!(
            next_step(Some(FailureKind::Transient), 3),
            NextStep::Backoff(Duration::from_secs(120))
        );
        for kind in [
            FailureKind::Credential,
            FailureKind::Configuration,
            FailureKind::LockHeld,
            FailureKind::Interrupted,
        ] {
            // However many times in a row: never a growing backoff, never an
            // immediate catch-up run.
            assert_eq!(next_step(Some(kind), 0), NextStep::NextTick, "{kind:?}");
        }
    }

    #[test]
    fn a_paused_status_line_says_who_and_why_on_one_line() {
        let mut r = panicked_report(String::new());
        r.status = Status::Paused;
        r.planned = 3;
        r.paused = Some(crate::store::Pause {
            by: "alice".into(),
            host: "ops1".into(),
            at: 0,
            reason: "bad import\nREADY=1".into(),
        });
        assert_eq!(
            status_line(&r, t("2026-01-01T12:00:03Z")),
            "PAUSED by alice@ops1 since 1970-01-01 00:00:00 UTC: bad import\\nREADY=1; \
             last run 12:00:03 planned 3 changes, applied nothing"
        );
    }

    #[test]
    fn status_line_reads_like_a_sentence() {
        let mut r = panicked_report(String::new());
        r.status = Status::Ok;
        r.error = None;
        r.counts.users_created = 3;
        r.counts.users_deactivated = 1;
        assert_eq!(
            status_line(&r, t("2026-01-01T12:00:03Z")),
            "last run ok 12:00:03, +3 users, 1 deactivated"
        );
    }
}

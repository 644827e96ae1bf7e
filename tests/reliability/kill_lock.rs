//! A dead process never blocks the next run (#13.2): SIGKILL of the
//! binary's own pid at 10 points spread over the apply of a first sync;
//! each next run starts at once (SQLite: its OS lock died with the
//! process; PostgreSQL: the advisory lock died with the session) and the
//! store converges to an uninterrupted run's.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use okta_sim::generate::GenSpec;
use okta_sim::org::Org;
use okta_sim::{RateLimits, SimOptions, Simulator};
use writer_sync::store::Store;

use crate::{common, config_text, dump};

const KILLS: usize = 10;

/// What one run of the binary did.
struct Outcome {
    /// Ended by the SIGKILL (not a run that had just exited).
    killed: bool,
    /// `change applied` events it logged.
    applied: usize,
    stdout: String,
    stderr: String,
    /// From spawn to its `observed` event.
    observed: Option<Duration>,
    /// From its first `change applied` event to its last.
    apply_span: Duration,
}

/// One run of the binary, SIGKILLed (to its own pid) `kill_after` after
/// its first committed batch (its first `change applied` event), or left to
/// finish.
fn run(config: &std::path::Path, token: &str, kill_after: Option<Duration>) -> Outcome {
    let spawned = Instant::now();
    let mut child = Command::new(crate::BIN)
        .arg("--config")
        .arg(config)
        .args(["run", "--once", "--json"])
        .env("WRITER_SYNC_OKTA_API_TOKEN", token)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut applied, mut killed, mut observed) = (0usize, false, None);
    let (mut first_applied, mut last_applied) = (None, None);
    let mut kill_at: Option<Instant> = None;
    let mut lines = Vec::new();
    loop {
        let wait = kill_at.map_or(Duration::from_secs(600), |at| {
            at.saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(wait) {
            Ok(line) => {
                if observed.is_none() && line.contains("\"message\":\"observed\"") {
                    observed = Some(spawned.elapsed());
                }
                if line.contains("\"message\":\"change applied\"") {
                    applied += 1;
                    let now = Instant::now();
                    first_applied.get_or_insert(now);
                    last_applied = Some(now);
                    if applied == 1 && !killed {
                        kill_at = kill_after.map(|d| Instant::now() + d);
                    }
                }
                lines.push(line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if kill_at.is_some_and(|at| Instant::now() >= at) {
            // Child::kill is SIGKILL to the binary's own pid.
            killed = child.kill().is_ok();
            kill_at = None;
        }
    }
    let status = child.wait().unwrap();
    // Killed only if the signal ended it (not a run that had just exited).
    killed = killed && status.code().is_none();
    reader.join().unwrap();
    let stdout = out.join().unwrap();
    let stderr = lines.join("\n");
    common::assert_no_secrets("run output", &format!("{stdout}{stderr}"), &[token]);
    let apply_span = match (first_applied, last_applied) {
        (Some(first), Some(last)) => last - first,
        _ => Duration::ZERO,
    };
    Outcome {
        killed,
        applied,
        stdout,
        stderr,
        observed,
        apply_span,
    }
}

both_kinds!(
    a_killed_run_never_blocks_the_next_and_the_store_converges,
    |kind| async move {
        let Some(reference_db) = common::TestDb::new(kind, "kill_lock_ref").await else {
            return;
        };
        let db = common::TestDb::new(kind, "kill_lock").await.unwrap();
        let sim = Simulator::start(
            Org::generate(&GenSpec::new(8_000, 8, 4, 7)),
            SimOptions {
                rate_limits: RateLimits::unlimited(),
                ..SimOptions::default()
            },
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let token = sim.token().to_owned();
        let write = |name: &str, url: &str| {
            let path = dir.path().join(name);
            common::write_file_mode(
                &path,
                &config_text(sim.url().as_str(), &sim.app_id(), url, ""),
                0o600,
            );
            path
        };
        let (reference_config, config) = (
            write("ref.toml", &reference_db.config_url),
            write("kill.toml", &db.config_url),
        );
        let (tok, cfg) = (token.clone(), reference_config.clone());
        let reference = tokio::task::spawn_blocking(move || run(&cfg, &tok, None))
            .await
            .unwrap();
        let (total, reference_start) = (reference.applied, reference.observed);
        let report: Value = serde_json::from_str(&reference.stdout).unwrap_or(Value::Null);
        assert_eq!(report["status"], "ok", "{}", reference.stderr);
        assert!(
            total > (2 * KILLS + 1) * writer_sync::reconcile::apply::BATCH,
            "a first sync big enough for {KILLS} kills of up to two batches: {total} changes"
        );

        // Kill points spread over the apply: each killed run has committed
        // at least one batch, and is killed 0, 1/10, … 9/10 of a batch's
        // time after it (in the writes of the next batch, its commit or its
        // log lines); the next run is the next one killed. A batch's time
        // is the uninterrupted run's, so the points stay inside one batch
        // on a fast machine and a slow one alike.
        let batches = total.div_ceil(writer_sync::reconcile::apply::BATCH).max(2);
        let batch_time = reference.apply_span / u32::try_from(batches - 1).unwrap();
        let mut delays = Vec::new();
        let mut done = 0usize;
        let mut kills = 0usize;
        while kills < KILLS {
            let (tok, cfg) = (token.clone(), config.clone());
            let kill_after = batch_time * u32::try_from(kills).unwrap() / KILLS as u32;
            let Outcome {
                killed,
                applied,
                stdout,
                stderr,
                observed,
                ..
            } = tokio::task::spawn_blocking(move || run(&cfg, &tok, Some(kill_after)))
                .await
                .unwrap();
            assert!(
                !stdout.contains("holds the sync lock") && !stderr.contains("holds the sync lock"),
                "run after kill {kills} waited for the lock:\n{stdout}\n{stderr}"
            );
            let observed = observed.unwrap_or_else(|| panic!("the run did not start: {stderr}"));
            if kills > 0 {
                delays.push(observed);
            }
            assert!(killed, "the run ended before kill {}: {stdout}", kills + 1);
            done += applied;
            kills += 1;
        }
        let (tok, cfg) = (token.clone(), config.clone());
        let Outcome {
            applied: rest,
            stdout,
            stderr,
            observed,
            ..
        } = tokio::task::spawn_blocking(move || run(&cfg, &tok, None))
            .await
            .unwrap();
        let report: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        assert_eq!(report["status"], "ok", "after {KILLS} kills: {stderr}");
        delays.push(observed.unwrap());
        eprintln!(
            "{kind:?}: {total} changes, {done} applied by the killed runs (at least), \
             {rest} by the last; a batch takes {batch_time:?}; spawn-to-observed: \
             uninterrupted {reference_start:?}, after each kill {delays:?}"
        );
        // Every next run started without waiting: it observed Okta as soon
        // as the uninterrupted run did (a wait for an expired lease would
        // add 30 s).
        let slowest = *delays.iter().max().unwrap();
        let reference_start = reference_start.unwrap();
        assert!(
            slowest < reference_start + Duration::from_secs(5),
            "slowest start {slowest:?} against {reference_start:?} uninterrupted"
        );
        let (a, b) = (
            Store::connect(&reference_db.url).await.unwrap(),
            Store::connect(&db.url).await.unwrap(),
        );
        assert_eq!(dump(&b).await, dump(&a).await, "converged store");
        a.close().await;
        b.close().await;
        sim.shutdown().await;
    }
);

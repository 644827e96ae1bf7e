//! Store faults: unreachable at start, lost in the middle of apply, locked
//! by another writer. A run fails cleanly (or waits), the store keeps whole
//! batches only, and the next run converges.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;

use okta_sim::generate::GenSpec;
use okta_sim::org::Org;
use okta_sim::{RateLimits, SimHandle, SimOptions, Simulator};
use writer_sync::reconcile::apply::BATCH;
use writer_sync::reconcile::report::Status;
use writer_sync::reconcile::txorder;
use writer_sync::reconcile::{RunOptions, Trigger, run_once};

use crate::{Limits, common, config_text, context, dump, parse_config, sync};

async fn sim(users: u32) -> SimHandle {
    Simulator::start(
        Org::generate(&GenSpec::new(users, 6, 3, 5)),
        SimOptions {
            rate_limits: RateLimits::unlimited(),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap()
}

fn run_bin(config: &std::path::Path, token: &str) -> (Option<i32>, Value, String, Duration) {
    let started = Instant::now();
    let out = common::checked_output(
        std::process::Command::new(crate::BIN)
            .arg("--config")
            .arg(config)
            .args(["run", "--once", "--json"])
            .env("WRITER_SYNC_OKTA_API_TOKEN", token)
            .env_remove("RUST_LOG"),
        &[token],
    );
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_at_start_fails_the_run_quickly_and_cleanly() {
    let sim = sim(20).await;
    let dir = tempfile::tempdir().unwrap();
    // A closed port and a missing directory.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    for (name, url, says) in [
        (
            "pg.toml",
            format!("postgres://writer:pg-SECRET-pw@127.0.0.1:{port}/writer"),
            "cannot open the store",
        ),
        (
            "lite.toml",
            format!("sqlite://{}/missing/dir/writer.db", dir.path().display()),
            "does not exist",
        ),
    ] {
        let config = dir.path().join(name);
        common::write_file_mode(
            &config,
            &config_text(sim.url().as_str(), &sim.app_id(), &url, ""),
            0o600,
        );
        let token = sim.token().to_owned();
        let (code, _, stderr, took) = tokio::task::spawn_blocking(move || {
            let r = run_bin(&config, &token);
            common::assert_no_secrets("stderr", &r.2, &["pg-SECRET-pw"]);
            r
        })
        .await
        .unwrap();
        assert_eq!(code, Some(1), "{name}: {stderr}");
        assert!(stderr.contains(says), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(took < Duration::from_secs(45), "{name}: took {took:?}");
    }
    sim.shutdown().await;
}

/// Terminates this test's PostgreSQL sessions (found by application name,
/// so parallel tests on other schemas are not touched).
async fn terminate_sessions(base: &str, app_name: &str) -> u64 {
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
    let rows = sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(app_name)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    rows.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lost_in_the_middle_of_apply_keeps_whole_batches_and_the_next_run_converges() {
    let Ok(base) = std::env::var(common::PG_ENV) else {
        eprintln!(
            "SKIPPED postgres_lost_in_the_middle_of_apply: {} is not set",
            common::PG_ENV
        );
        return;
    };
    let sim = sim(1_500).await;
    // Reference: a clean run on its own schema. Its changes are the apply
    // order, so they also tell where the batches end.
    let (reference, batch_ends) = {
        let db = common::TestDb::new(common::Kind::Postgres, "lostref")
            .await
            .unwrap();
        let config = parse_config(
            &config_text(sim.url().as_str(), &sim.app_id(), &db.config_url, ""),
            sim.token(),
        );
        let ctx = context(config, sim.token(), Limits::default()).await;
        let report = sync(&ctx).await;
        assert_eq!(report.status, Status::Ok);
        let ends: Vec<usize> = txorder::batches(&report.changes, BATCH)
            .iter()
            .map(|r| r.end)
            .collect();
        let d = dump(&ctx.store).await;
        ctx.store.close().await;
        (d, ends)
    };
    assert!(batch_ends.len() > 2, "{batch_ends:?}");
    let db = common::TestDb::new(common::Kind::Postgres, "lost")
        .await
        .unwrap();
    let app_name = format!("ws_lost_{}", fastrand::u32(..));
    let url = format!("{}&application_name={app_name}", db.config_url);
    // Paced writes: the apply takes seconds, in batches of about BATCH.
    let config = parse_config(
        &config_text(sim.url().as_str(), &sim.app_id(), &url, "")
            .replace("writes_per_second = 0", "writes_per_second = 1500"),
        sim.token(),
    );
    let ctx = context(config, sim.token(), Limits::default()).await;
    // After the first committed batch, kill every session of this store.
    let fired = Arc::new(AtomicBool::new(false));
    let mut opts = RunOptions::new(Trigger::Once);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    opts.progress = Arc::new(move |n| {
        let _ = tx.send(n);
    });
    let killer = {
        let fired = Arc::clone(&fired);
        let first_batch = batch_ends[0];
        let base = base.clone();
        let app_name = app_name.clone();
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                // Progress also counts Okta objects while observing; after
                // `observed` it counts the changes of committed batches.
                if n == first_batch && !fired.swap(true, Ordering::SeqCst) {
                    // Keep killing for a while: the next batch's transaction
                    // and the lock session die under the run.
                    let mut killed = 0;
                    for _ in 0..20 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        killed += terminate_sessions(&base, &app_name).await;
                    }
                    return killed;
                }
            }
            0
        })
    };
    let report = run_once(&ctx, &opts).await;
    drop(opts);
    let killed = killer.await.unwrap();
    assert!(killed > 0, "no session was terminated");
    assert_eq!(report.status, Status::Failed, "{:?}", report.error);
    let error = report.error.clone().unwrap();
    assert!(error.contains("the next run converges"), "{error}");
    // Whole batches only: every applied change has its audit row.
    let applied = report.changes.len();
    assert!(
        applied > 0 && applied < report.planned,
        "{applied} of {}",
        report.planned
    );
    assert!(
        batch_ends.contains(&applied),
        "whole batches: {applied} not in {batch_ends:?}"
    );
    let audit = ctx.store.audit_log().await.unwrap();
    assert_eq!(audit.iter().filter(|a| a.run_id.is_some()).count(), applied);
    // The pool reconnects; the next run closes the interrupted run record
    // and converges to the clean run's state.
    let again = sync(&ctx).await;
    assert_eq!(again.status, Status::Ok, "{:?}", again.error);
    assert_eq!(again.changes.len(), report.planned - applied);
    assert_eq!(dump(&ctx.store).await, reference);
    let runs = ctx.store.recent_runs(10).await.unwrap();
    assert!(runs.iter().all(|r| r.status != "running"), "{runs:?}");
    ctx.store.close().await;
    sim.shutdown().await;
}

/// Holds SQLite's write lock from another connection, as another writer
/// would, for `hold`.
async fn hold_sqlite_lock(path: std::path::PathBuf, hold: Duration) {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(hold).await;
    sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_locked_by_another_writer_waits_or_fails_cleanly() {
    let sim = sim(300).await;
    let db = common::TestDb::new(common::Kind::Sqlite, "locked")
        .await
        .unwrap();
    let writer_sync::store::StoreUrl::Sqlite(path) = db.url.clone() else {
        unreachable!()
    };
    let config = parse_config(
        &config_text(sim.url().as_str(), &sim.app_id(), &db.config_url, ""),
        sim.token(),
    );
    let ctx = context(config, sim.token(), Limits::default()).await;
    let empty = dump(&ctx.store).await;

    // Locked longer than the busy timeout (10 s): the run fails, nothing
    // written, and says why.
    let holder = tokio::spawn(hold_sqlite_lock(path.clone(), Duration::from_secs(12)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let report = sync(&ctx).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(report.status, Status::Failed, "{report:?}");
    let error = report.error.clone().unwrap();
    assert!(
        error.contains("locked") && error.contains("nothing was applied"),
        "{error}"
    );
    holder.await.unwrap();
    assert_eq!(dump(&ctx.store).await, empty);

    // Locked for 2 s: the run waits for it and succeeds.
    let holder = tokio::spawn(hold_sqlite_lock(path, Duration::from_secs(2)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = sync(&ctx).await;
    holder.await.unwrap();
    assert_eq!(report.status, Status::Ok, "{:?}", report.error);
    assert!(report.counts.users_created > 100);
    ctx.store.close().await;
    sim.shutdown().await;
}

/// Kills the daemon if the test fails half way.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_owned()))
}

fn metric(port: u16, sample: &str) -> Option<f64> {
    let (_, text) = http_get(port, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

async fn wait_for(what: &str, port: u16, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {what}: {:?}",
            http_get(port, "/metrics").map(|m| m
                .1
                .lines()
                .filter(|l| l.starts_with("writer_sync_runs_total"))
                .collect::<Vec<_>>()
                .join("; "))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_survives_losing_postgres_mid_run_and_recovers_at_the_next_run() {
    let Ok(base) = std::env::var(common::PG_ENV) else {
        eprintln!(
            "SKIPPED the_daemon_survives_losing_postgres: {} is not set",
            common::PG_ENV
        );
        return;
    };
    let sim = sim(1_500).await;
    let db = common::TestDb::new(common::Kind::Postgres, "daemonlost")
        .await
        .unwrap();
    let app_name = format!("ws_dlost_{}", fastrand::u32(..));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    common::write_file_mode(
        &config,
        &config_text(
            sim.url().as_str(),
            &sim.app_id(),
            &format!("{}&application_name={app_name}", db.config_url),
            &format!("\n[sync]\nschedule = \"0 0 1 1 *\"\nrun_on_start = true\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n"),
        )
        .replace("writes_per_second = 0", "writes_per_second = 1000"),
        0o600,
    );
    let token = sim.token().to_owned();
    let mut daemon = KillOnDrop(
        std::process::Command::new(crate::BIN)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("WRITER_SYNC_OKTA_API_TOKEN", &token)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut daemon.0;
    // Drain stderr as it comes: a full pipe would block the daemon's logging.
    let mut pipe = child.stderr.take().unwrap();
    let drained = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        text
    });
    // Once the first run has committed a batch, kill the store's sessions.
    let store = writer_sync::store::Store::connect(&db.url).await.unwrap();
    let start = Instant::now();
    loop {
        if store
            .audit_log()
            .await
            .map(|a| !a.is_empty())
            .unwrap_or(false)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the first run never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut killed = 0;
    for _ in 0..10 {
        killed += terminate_sessions(&base, &app_name).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(killed > 0);
    wait_for("a failed run", port, Duration::from_secs(30), || {
        metric(port, "writer_sync_runs_total{status=\"failed\"}") == Some(1.0)
    })
    .await;
    // Still alive and serving; the next run (SIGUSR1) converges.
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200));
    assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
    let usr1 = std::process::Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(usr1.success());
    wait_for("an ok run", port, Duration::from_secs(60), || {
        metric(port, "writer_sync_runs_total{status=\"ok\"}") == Some(1.0)
    })
    .await;
    let runs = store.recent_runs(10).await.unwrap();
    assert!(runs.iter().all(|r| r.status != "running"), "{runs:?}");
    assert_eq!(runs[0].status, "ok");
    // Nothing left to do.
    let config_text = std::fs::read_to_string(&config).unwrap();
    let ctx = context(
        parse_config(&config_text, &token),
        &token,
        Limits::default(),
    )
    .await;
    let again = writer_sync::reconcile::run_once(
        &ctx,
        &writer_sync::reconcile::RunOptions {
            dry_run: true,
            ..writer_sync::reconcile::RunOptions::new(writer_sync::reconcile::Trigger::Once)
        },
    )
    .await;
    assert_eq!(again.planned, 0, "{:?}", again.error);
    ctx.store.close().await;
    store.close().await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let stderr = drained.join().unwrap();
    common::assert_no_secrets("daemon stderr", &stderr, &[&token]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    sim.shutdown().await;
}

//! The incremental-sync benchmark (issue #18, SPEC §7): freshness and cost
//! of the System Log path on a big generated org, through the real daemon.
//!
//! `cargo bench --bench events -- [options]` (see `--help`; results with
//! their commands in docs/BENCHMARKS.md). Not part of `cargo test`.
//!
//! What it does (SQLite in a temp dir, or PostgreSQL with `--store
//! postgres`):
//! 1. starts the Okta simulator in this process with a generated org
//!    (100,000 users, 1,000 groups with Zipf sizes, 200 pushed), Okta's
//!    per-bucket limits with real 60 s windows, and a System Log that makes
//!    events visible `--log-delay` after they happen (10 s);
//! 2. runs the `writer-sync run` daemon with the default config (polls
//!    every 15 s, hourly full reconciles), and waits for its first full sync;
//! 3. freshness: makes `--mutations` random changes (okta-sim's churn:
//!    names, suspensions, reactivations) at random moments and measures, for each, the time
//!    from the change in Okta to its row in the store (p50, p95, max);
//! 4. cost: requests per idle poll, per single-user change (measured alone),
//!    and of one no-change full reconcile (SIGUSR1); from them the requests
//!    per hour of an idle org with hourly full reconciles, against full
//!    reconciles every ten minutes without events;
//! 5. burst: `--burst` changes within one minute; the time until all are in
//!    the store, how the daemon got there (incremental runs, hand-overs to a
//!    full reconcile), and the 429s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use okta_sim::churn::{self, Change};
use okta_sim::generate::{GenSpec, GroupSizes};
use okta_sim::org::{Org, UserStatus};
use okta_sim::{Bucket, LogTiming, RateLimits, SimHandle, SimOptions, Simulator};
use sqlx::Row;

#[derive(Debug, Parser)]
#[command(
    name = "events-bench",
    about = "Incremental-sync benchmark against the Okta simulator"
)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    users: u32,
    #[arg(long, default_value_t = 1_000)]
    groups: u32,
    #[arg(long, default_value_t = 200)]
    pushed: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Okta's delay from a change to its event being visible, in seconds.
    #[arg(long, default_value_t = 10.0)]
    log_delay: f64,
    /// Length of a rate-limit window in seconds (Okta: 60).
    #[arg(long, default_value_t = 60.0)]
    minute_secs: f64,
    /// Latency the simulator adds to every request, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Random changes timed for freshness.
    #[arg(long, default_value_t = 200)]
    mutations: usize,
    /// Mean time between two of them, in seconds.
    #[arg(long, default_value_t = 1.5)]
    spacing: f64,
    /// Changes made within one minute for the burst (0: skip).
    #[arg(long, default_value_t = 1_000)]
    burst: usize,
    /// sqlite or postgres.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// PostgreSQL server (a schema is created). Default:
    /// $WRITER_SYNC_TEST_DATABASE_URL or the local server.
    #[arg(long)]
    pg_url: Option<String>,
    /// Keep the daemon's JSON log here.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Ignored (cargo passes `--bench`).
    #[arg(long, hide = true)]
    bench: bool,
}

struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn metrics(&self) -> BTreeMap<String, f64> {
        use std::io::{Read, Write};
        let mut out = BTreeMap::new();
        let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return out;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = write!(conn, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let mut text = String::new();
        let _ = conn.read_to_string(&mut text);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((name, value)) = line.rsplit_once(' ')
                && let Ok(v) = value.parse()
            {
                out.insert(name.to_owned(), v);
            }
        }
        out
    }

    fn metric(&self, name: &str) -> f64 {
        self.metrics().get(name).copied().unwrap_or(0.0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// Reads (okta id → last name, active) for `ids` from the store.
async fn rows(pool: &sqlx::AnyPool, ids: &[String]) -> BTreeMap<String, (String, bool)> {
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(500) {
        let list: Vec<String> = chunk.iter().map(|id| format!("'{id}'")).collect();
        // Ids are the generator's own alphanumerics: no quoting needed.
        let sql = format!(
            "SELECT okta_id, last_name, active FROM users WHERE okta_id IN ({})",
            list.join(",")
        );
        if let Ok(found) = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await {
            for row in found {
                let id: String = row.try_get("okta_id").unwrap_or_default();
                let name: String = row.try_get("last_name").unwrap_or_default();
                let active: i64 = row.try_get("active").unwrap_or(0);
                out.insert(id, (name, active != 0));
            }
        }
    }
    out
}

/// Waits until every pending change is in the store; returns the seconds
/// from each change to when it was seen.
async fn arrivals(
    pool: &sqlx::AnyPool,
    pending: &[(String, Change, Instant)],
    limit: Duration,
) -> Vec<Option<f64>> {
    let pending = std::sync::Mutex::new(pending.to_vec());
    watch(pool, &pending, &AtomicBool::new(false), limit).await
}

/// Watches the store every 200 ms for the changes in `pending`, which may
/// still grow while `making` is set, so each change is timed when it lands,
/// not when the last one was made. Ends when every change was seen and none
/// is being made, or `limit` after the last one.
async fn watch(
    pool: &sqlx::AnyPool,
    pending: &std::sync::Mutex<Vec<(String, Change, Instant)>>,
    making: &AtomicBool,
    limit: Duration,
) -> Vec<Option<f64>> {
    let mut seen: Vec<Option<f64>> = Vec::new();
    let mut last_made = Instant::now();
    loop {
        let still_making = making.load(Ordering::SeqCst);
        let now_pending = pending.lock().unwrap().clone();
        seen.resize(now_pending.len(), None);
        if still_making {
            last_made = Instant::now();
        } else if seen.iter().all(Option::is_some) || last_made.elapsed() > limit {
            return seen;
        }
        let ids: Vec<String> = now_pending
            .iter()
            .zip(&seen)
            .filter(|(_, s)| s.is_none())
            .map(|((id, _, _), _)| id.clone())
            .collect();
        let now = rows(pool, &ids).await;
        for (k, (id, expect, at)) in now_pending.iter().enumerate() {
            if seen[k].is_some() {
                continue;
            }
            let arrived = match (now.get(id), expect) {
                (Some((name, _)), Change::LastName { name: want, .. }) => name == want,
                (Some((_, active)), Change::Active { active: want, .. }) => active == want,
                _ => false,
            };
            if arrived {
                seen[k] = Some(at.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A random candidate no earlier change touched (recorded in `used`).
fn untouched(
    rng: &mut fastrand::Rng,
    candidates: &[String],
    used: &mut std::collections::BTreeSet<String>,
) -> String {
    loop {
        let id = &candidates[rng.usize(..candidates.len())];
        if used.insert(id.clone()) {
            return id.clone();
        }
    }
}

/// One random change (okta-sim's churn): the user and what it leaves in
/// the store.
fn change(rng: &mut fastrand::Rng, sim: &SimHandle, candidates: &[String], n: usize) -> Change {
    sim.org_mut(|o| churn::random_change(o, rng, candidates, n as u64))
        .expect("candidates are users of the org")
}

fn requests(sim: &SimHandle) -> (u64, u64) {
    let stats = sim.stats();
    let logs: u64 = stats
        .requests_by_family
        .iter()
        .filter(|(b, _)| b.as_str() == "logs")
        .map(|(_, n)| n)
        .sum();
    (stats.requests, logs)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let spec = GenSpec {
        direct_percent: 100,
        group_sizes: GroupSizes::Zipf {
            largest: 20_000,
            smallest: 5,
        },
        ..GenSpec::new(args.users, args.groups, args.pushed, args.seed)
    };
    let org = Org::generate(&spec);
    let sim = Simulator::start(
        org,
        SimOptions {
            rate_limits: RateLimits {
                window: Duration::from_secs_f64(args.minute_secs),
                ..RateLimits::okta_defaults()
            },
            latency: Duration::from_millis(args.latency_ms),
            log_timing: LogTiming {
                delay: Duration::from_secs_f64(args.log_delay),
                ..LogTiming::default()
            },
            ..SimOptions::default()
        },
    )
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let (store_url, pool_url) = match args.store.as_str() {
        "sqlite" => {
            let path = dir.path().join("writer.db");
            (
                format!("sqlite://{}", path.display()),
                format!("sqlite://{}?mode=rwc", path.display()),
            )
        }
        _ => {
            let base = args
                .pg_url
                .clone()
                .or_else(|| std::env::var("WRITER_SYNC_TEST_DATABASE_URL").ok())
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
            let schema = format!("ws_events_bench_{}", fastrand::u32(..));
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
                .await
                .expect("PostgreSQL");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&mut conn)
                .await
                .expect("schema");
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
            (url.clone(), url)
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let config = dir.path().join("config.toml");
    // The defaults, but for the org and the store: polls every 15 s,
    // hourly full reconciles, 50 % of each bucket, 300 requests a minute.
    // The churn suspends users by the hundred (a burst of 1,000 changes
    // holds about 150): the guard is set wide, or it would block them, as
    // it should in production.
    std::fs::write(
        &config,
        format!(
            "[okta]\norg_url = \"{}\"\napp_id = \"{}\"\n\n[store]\nurl = \"{store_url}\"\n\
             writes_per_second = 0\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [safety]\nmax_deactivations = 100000\nmax_deactivations_percent = 100\n",
            sim.url().as_str().trim_end_matches('/'),
            sim.app_id(),
        ),
    )
    .expect("config");
    let log_path = args
        .log
        .clone()
        .unwrap_or_else(|| dir.path().join("daemon.log"));
    let daemon = Daemon {
        child: Command::new(env!("CARGO_BIN_EXE_writer-sync"))
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("WRITER_SYNC_OKTA_API_TOKEN", sim.token())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).expect("log"))
            .spawn()
            .expect("writer-sync"),
        port,
    };
    sqlx::any::install_default_drivers();
    let started = Instant::now();
    println!(
        "events bench: {} users, {} groups ({} pushed), log delay {}s, {} s windows, store {}",
        args.users, args.groups, args.pushed, args.log_delay, args.minute_secs, args.store
    );
    while daemon.metric("writer_sync_runs_total{status=\"ok\"}") < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "no first full sync after 30 min (log: {})",
            log_path.display()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let first_full = started.elapsed();
    let (first_requests, _) = requests(&sim);
    println!(
        "first full sync: {:.1}s, {first_requests} requests",
        first_full.as_secs_f64()
    );
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(&pool_url)
        .await
        .expect("store");
    let candidates: Vec<String> = {
        let active: Vec<String> = sim.org(|o| {
            o.app_user_ids()
                .into_iter()
                .filter(|id| o.user_status(id) == Some(UserStatus::Active))
                .collect()
        });
        let in_store = rows(&pool, &active).await;
        active
            .into_iter()
            .filter(|id| in_store.contains_key(id))
            .collect()
    };
    let mut rng = fastrand::Rng::with_seed(args.seed);

    // Idle polls: one request each.
    let (r0, l0) = requests(&sim);
    let idle0 = daemon.metric("writer_sync_incremental_runs_total{outcome=\"idle\"}");
    tokio::time::sleep(Duration::from_secs(62)).await;
    let (r1, l1) = requests(&sim);
    let idle = daemon.metric("writer_sync_incremental_runs_total{outcome=\"idle\"}") - idle0;
    println!(
        "idle: {idle} polls in 62 s, {} requests ({} in logs): {:.2} requests per idle poll",
        r1 - r0,
        l1 - l0,
        (r1 - r0) as f64 / idle.max(1.0)
    );

    // Every change below is to a user no earlier change touched: a rename of
    // a user an earlier change suspended would never reach the store (an
    // inactive user's attributes stay), and the bench would wait for it.
    let mut used = std::collections::BTreeSet::new();

    // One change alone: the poll that brings it, and what it reads.
    let (before, _) = requests(&sim);
    let pick = untouched(&mut rng, &candidates, &mut used);
    let one_change = change(&mut rng, &sim, std::slice::from_ref(&pick), 0);
    let one = arrivals(
        &pool,
        &[(one_change.user().to_owned(), one_change, Instant::now())],
        Duration::from_secs(120),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after, _) = requests(&sim);
    let polls_between = (one[0].unwrap_or(0.0) / 15.0).ceil();
    println!(
        "one change: in the store after {:.1}s, {} requests (including about {polls_between} idle polls)",
        one[0].unwrap_or(f64::NAN),
        after - before
    );

    // Freshness over many random changes.
    // The store is watched while the changes are made: each is timed when
    // it lands. A user changed again before the first change landed would
    // never show the first, so each user is changed at most once here.
    let pending = std::sync::Mutex::new(Vec::new());
    let making = AtomicBool::new(true);
    let (fresh0, _) = requests(&sim);
    let make = async {
        let mut n = 1;
        while n <= args.mutations {
            let pick = untouched(&mut rng, &candidates, &mut used);
            let c = change(&mut rng, &sim, std::slice::from_ref(&pick), n);
            pending
                .lock()
                .unwrap()
                .push((c.user().to_owned(), c, Instant::now()));
            n += 1;
            let wait = -args.spacing * (1.0 - rng.f64()).ln();
            tokio::time::sleep(Duration::from_secs_f64(wait.min(args.spacing * 5.0))).await;
        }
        making.store(false, Ordering::SeqCst);
    };
    let (seen, ()) = tokio::join!(
        watch(&pool, &pending, &making, Duration::from_secs(600)),
        make
    );
    let pending = pending.into_inner().unwrap();
    let (fresh1, _) = requests(&sim);
    let mut latencies: Vec<f64> = seen.iter().flatten().copied().collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "freshness over {} changes: p50 {:.1}s, p95 {:.1}s, max {:.1}s, {} not seen; {} requests ({:.2} per change, polls included)",
        pending.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        latencies.last().copied().unwrap_or(f64::NAN),
        seen.iter().filter(|s| s.is_none()).count(),
        fresh1 - fresh0,
        (fresh1 - fresh0) as f64 / pending.len() as f64
    );

    // One no-change full reconcile, for the hourly cost.
    let runs = daemon.metric("writer_sync_runs_total{status=\"ok\"}");
    let (full0, _) = requests(&sim);
    let _ = Command::new("kill")
        .args(["-USR1", &daemon.child.id().to_string()])
        .status();
    let full_started = Instant::now();
    while daemon.metric("writer_sync_runs_total{status=\"ok\"}") < runs + 1.0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (full1, _) = requests(&sim);
    let full = full1 - full0;
    let per_hour_events = full as f64 + 3600.0 / 15.0;
    let per_hour_ten = 6.0 * full as f64;
    println!(
        "no-change full reconcile: {:.1}s, {full} requests; idle org per hour: {per_hour_events:.0} requests \
         (hourly full + 240 polls) against {per_hour_ten:.0} (full every 10 min): {:.1}x fewer",
        full_started.elapsed().as_secs_f64(),
        per_hour_ten / per_hour_events
    );

    if args.burst > 0 {
        let limited0 = sim.stats().rate_limited;
        let fallbacks0 = daemon.metric("writer_sync_event_fallbacks_total{reason=\"burst\"}");
        let incremental0 = daemon.metric("writer_sync_incremental_runs_total{outcome=\"ok\"}");
        let mut pending = Vec::new();
        let burst_started = Instant::now();
        let spacing = 60.0 / args.burst as f64;
        for n in 0..args.burst {
            let pick = untouched(&mut rng, &candidates, &mut used);
            let c = change(&mut rng, &sim, std::slice::from_ref(&pick), 10_000 + n);
            pending.push((c.user().to_owned(), c, Instant::now()));
            tokio::time::sleep(Duration::from_secs_f64(spacing)).await;
        }
        // The same user may have changed twice: only its last change counts.
        let mut last: BTreeMap<String, usize> = BTreeMap::new();
        for (k, (id, _, _)) in pending.iter().enumerate() {
            last.insert(id.clone(), k);
        }
        let pending: Vec<_> = last.values().map(|&k| pending[k].clone()).collect();
        let seen = arrivals(&pool, &pending, Duration::from_secs(1800)).await;
        println!(
            "burst of {} changes in {:.0}s ({} users): all in the store {:.1}s after the first \
             ({} not seen); incremental runs {}, hand-overs to a full reconcile (burst) {}, 429s {}",
            args.burst,
            (pending.last().map(|p| p.2).unwrap_or(burst_started) - burst_started).as_secs_f64(),
            pending.len(),
            burst_started.elapsed().as_secs_f64(),
            seen.iter().filter(|s| s.is_none()).count(),
            daemon.metric("writer_sync_incremental_runs_total{outcome=\"ok\"}") - incremental0,
            daemon.metric("writer_sync_event_fallbacks_total{reason=\"burst\"}") - fallbacks0,
            sim.stats().rate_limited - limited0
        );
    }
    let by_bucket: BTreeMap<Bucket, u64> = sim.stats().requests_by_family;
    println!(
        "requests by bucket: {by_bucket:?}; 429s: {}",
        sim.stats().rate_limited
    );
    drop(daemon);
    sim.shutdown().await;
}

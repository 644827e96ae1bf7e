//! The sync benchmark (issue #8): full syncs of a big generated org, timed
//! against the rate-limit floor.
//!
//! `cargo bench --bench sync -- [options]` (see `--help`, and
//! docs/BENCHMARKS.md for recorded results). Not part of `cargo test`.
//!
//! What it does, per store (SQLite in a temp dir; PostgreSQL in a fresh
//! schema of `--pg-url`):
//! 1. starts the Okta simulator in this process with a generated org
//!    (100,000 assigned users, 1,000 groups with Zipf sizes from 20,000 down
//!    to 5, 200 pushed), Okta's per-family limits with the window scaled to
//!    `--minute-secs`, and `--latency-ms` per request;
//! 2. runs the real `writer-sync run --once --json` binary (under `/usr/bin/time`
//!    for its peak RSS) three times: the first sync into an empty store, a
//!    no-change sync, and a sync after 1 % of the users changed in Okta;
//! 3. prints per run: wall time, its phases (from the binary's JSON logs),
//!    Okta requests by family as the simulator counted them, the minimum
//!    possible requests (every page at its maximum size), the rate-limit
//!    floor, 429s, rows written, and peak RSS.
//!
//! The client's budget is scaled with the window: `requests_per_minute` of
//! the config is `--rpm` × 60 / `--minute-secs`, so one scaled "minute"
//! allows `--rpm` requests, as a real minute would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use okta_sim::generate::{GenSpec, GroupSizes};
use okta_sim::org::{Org, UserStatus};
use okta_sim::{Bucket, MembersLimit, RateLimits, SimHandle, SimOptions, Simulator};
use serde_json::Value;
use sqlx::Connection;
use writer_sync::okta::limit::share_of;
use writer_sync::store::{Store, StoreUrl};

/// Okta's page maxima for the listings a sync reads.
const APP_USERS_MAX_PAGE: u64 = 500;
const APP_GROUPS_MAX_PAGE: u64 = 200;
const GROUP_MEMBERS_MAX_PAGE: u64 = 1_000;

#[derive(Debug, Parser)]
#[command(
    name = "sync-bench",
    about = "Full-sync benchmark against the Okta simulator"
)]
struct Args {
    /// Users in the generated org (all but the deprovisioned are assigned).
    #[arg(long, default_value_t = 100_000)]
    users: u32,
    #[arg(long, default_value_t = 1_000)]
    groups: u32,
    /// Groups assigned to the app (pushed to Writer teams).
    #[arg(long, default_value_t = 200)]
    pushed: u32,
    /// Largest and smallest group.
    #[arg(long, default_value_t = 20_000)]
    largest_group: u32,
    #[arg(long, default_value_t = 5)]
    smallest_group: u32,
    /// How group sizes fall between the smallest and the largest: `zipf`
    /// (few big groups, many small) or `log-uniform` (every size range as
    /// common: users in several big pushed groups), optionally with the
    /// bounds, e.g. `log-uniform:5:20000`.
    #[arg(long, default_value = "zipf", value_parser = parse_group_sizes)]
    group_sizes: (String, Option<(u32, u32)>),
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Length of a rate-limit window ("minute") in seconds.
    #[arg(long, default_value_t = 6.0)]
    minute_secs: f64,
    /// Latency the simulator adds to every request.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// The client's budget per (scaled) minute: `okta.requests_per_minute`.
    #[arg(long, default_value_t = 300)]
    rpm: u32,
    /// `okta.rate_limit_share` (percent of each bucket).
    #[arg(long, default_value_t = 50)]
    share: u8,
    /// `okta.max_concurrent_requests`.
    #[arg(long, default_value_t = 4)]
    concurrency: u32,
    /// Percentage of app users changed in Okta before the third sync.
    #[arg(long, default_value_t = 1.0)]
    change_percent: f64,
    /// Syncs to run per store, in order: first, no-change, changed.
    #[arg(long, default_value = "first,no-change,changed", value_delimiter = ',')]
    syncs: Vec<String>,
    /// Stores to run: sqlite, postgres (comma-separated).
    #[arg(long, default_value = "sqlite,postgres", value_delimiter = ',')]
    stores: Vec<String>,
    /// PostgreSQL server for the postgres store (a schema is created and
    /// dropped). Default: $WRITER_SYNC_TEST_DATABASE_URL or the local server.
    #[arg(long)]
    pg_url: Option<String>,
    /// The writer-sync binary (default: the one cargo built with this bench).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Keep each run's JSON log here as `<store>-<sync>.log` (set RUST_LOG
    /// for more detail, e.g. `info,writer_sync::okta=debug`).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Member listings answer at most this many members per page, as an
    /// Okta that lowered its legacy 1,000 (the client follows whatever
    /// page size it gets).
    #[arg(long)]
    members_max_limit: Option<usize>,
    /// With --members-max-limit: a member page asked above it gets Okta's
    /// 400 E0000001 (the client falls back to 200 and keeps it).
    #[arg(long, requires = "members_max_limit")]
    members_refuse_above_max: bool,
    /// Ignored (cargo passes `--bench`).
    #[arg(long, hide = true)]
    bench: bool,
}

/// What the simulator's org requires at minimum.
struct Minimum {
    app_users: u64,
    by_family: BTreeMap<Bucket, u64>,
}

impl Minimum {
    /// `members_page`: the member page size Okta answers with (1,000, or a
    /// lower cap).
    fn of(org: &Org, members_page: u64) -> Minimum {
        // Okta (and the simulator) sends a `next` link after every full
        // page, so a listing of n items takes n / max + 1 pages.
        let pages = |n: u64, max: u64| n / max + 1;
        let app_users = org.app_user_ids().len() as u64;
        let groups = org.assigned_group_ids();
        let members: u64 = groups
            .iter()
            .map(|g| {
                pages(
                    org.group_members(g).map_or(0, |m| m.len()) as u64,
                    members_page,
                )
            })
            .sum();
        let apps =
            pages(app_users, APP_USERS_MAX_PAGE) + pages(groups.len() as u64, APP_GROUPS_MAX_PAGE);
        // The member listings count against Okta's `/api/v1/groups` bucket;
        // every run also reads the app itself once (its status), in a bucket
        // of its own.
        Minimum {
            app_users,
            by_family: BTreeMap::from([
                (Bucket::Apps, apps),
                (Bucket::AppById, 1),
                (Bucket::Groups, members),
            ]),
        }
    }

    fn total(&self) -> u64 {
        self.by_family.values().sum()
    }

    /// The rate-limit floor in seconds and what sets it: per family, its
    /// minimum requests ÷ this client's share of the family's window; and
    /// all requests ÷ the client's budget.
    fn floor(&self, limits: &RateLimits, share: u8, rpm: u32, minute: f64) -> (f64, String) {
        let mut floor = (
            self.total() as f64 / f64::from(rpm) * minute,
            "requests_per_minute".to_owned(),
        );
        for (family, n) in &self.by_family {
            let per_window = share_of(limits.limit(*family), share);
            let secs = *n as f64 / f64::from(per_window) * minute;
            if secs > floor.0 {
                floor = (
                    secs,
                    format!("{} share ({per_window}/window)", family.as_str()),
                );
            }
        }
        floor
    }
}

/// One sync run of the binary, measured.
struct Measured {
    wall: Duration,
    status: String,
    peak_rss_kb: u64,
    phases: BTreeMap<&'static str, u64>,
    requests: BTreeMap<Bucket, u64>,
    rate_limited: u64,
    changes: u64,
    rows_written: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(message) = run(args).await {
        eprintln!("sync-bench: {message}");
        std::process::exit(1);
    }
}

/// `zipf`, `log-uniform`, or either with `:SMALLEST:LARGEST`.
fn parse_group_sizes(text: &str) -> Result<(String, Option<(u32, u32)>), String> {
    let mut parts = text.split(':');
    let kind = parts.next().unwrap_or_default();
    if !matches!(kind, "zipf" | "log-uniform") {
        return Err(format!("{kind:?}: expected zipf or log-uniform"));
    }
    let bounds = match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => None,
        (Some(a), Some(b), None) => {
            let n = |v: &str| v.parse::<u32>().map_err(|e| format!("{v:?}: {e}"));
            Some((n(a)?, n(b)?))
        }
        _ => return Err(format!("{text:?}: expected KIND or KIND:SMALLEST:LARGEST")),
    };
    Ok((kind.to_owned(), bounds))
}

async fn run(args: Args) -> Result<(), String> {
    let bin = match &args.bin {
        Some(bin) => bin.clone(),
        None => PathBuf::from(env!("CARGO_BIN_EXE_writer-sync")),
    };
    if !Path::new("/usr/bin/time").exists() {
        return Err("needs GNU time at /usr/bin/time for peak RSS (Debian package `time`)".into());
    }
    let spec = GenSpec {
        direct_percent: 100,
        group_sizes: {
            let (smallest, largest) = args
                .group_sizes
                .1
                .unwrap_or((args.smallest_group, args.largest_group));
            if args.group_sizes.0 == "log-uniform" {
                GroupSizes::LogUniform { smallest, largest }
            } else {
                GroupSizes::Zipf { largest, smallest }
            }
        },
        ..GenSpec::new(args.users, args.groups, args.pushed, args.seed)
    };
    let started = Instant::now();
    let org = Org::generate(&spec);
    let members_page = args
        .members_max_limit
        .map_or(GROUP_MEMBERS_MAX_PAGE, |max| {
            (max as u64).min(GROUP_MEMBERS_MAX_PAGE)
        });
    let minimum = Minimum::of(&org, members_page);
    let limits = RateLimits {
        window: Duration::from_secs_f64(args.minute_secs),
        ..RateLimits::okta_defaults()
    };
    let scaled_rpm = (f64::from(args.rpm) * 60.0 / args.minute_secs).round() as u32;
    let (floor, bound_by) = minimum.floor(&limits, args.share, args.rpm, args.minute_secs);
    let members: usize = org
        .assigned_group_ids()
        .iter()
        .map(|g| org.group_members(g).map_or(0, |m| m.len()))
        .sum();
    println!(
        "org: {} users, {} app users, {} groups ({} pushed, {} memberships in pushed groups), generated in {:.1}s",
        org.user_count(),
        minimum.app_users,
        org.group_count(),
        org.assigned_group_ids().len(),
        members,
        started.elapsed().as_secs_f64()
    );
    println!(
        "okta: window {}s, limits apps {} / groups (search and members) {} per window, member pages of {}{}, share {}%, budget {} per window ({} rpm configured), {} in flight, latency {} ms",
        args.minute_secs,
        limits.apps,
        limits.groups,
        members_page,
        if args.members_refuse_above_max {
            " (limit above it refused)"
        } else {
            ""
        },
        args.share,
        args.rpm,
        scaled_rpm,
        args.concurrency,
        args.latency_ms
    );
    println!(
        "minimum requests: {} (apps {}, app_by_id {}, groups {}); rate-limit floor {:.1}s, set by {}",
        minimum.total(),
        minimum.by_family.get(&Bucket::Apps).unwrap_or(&0),
        minimum.by_family.get(&Bucket::AppById).unwrap_or(&0),
        minimum.by_family.get(&Bucket::Groups).unwrap_or(&0),
        floor,
        bound_by
    );
    drop(org);
    println!();
    println!(
        "{:<9} {:<9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9} {:>6} {:>8} {:>5} {:>8} {:>8} {:>7} {:>13}",
        "store",
        "sync",
        "wall_s",
        "÷floor",
        "observe_s",
        "plan_ms",
        "apply_s",
        "requests",
        "÷min",
        "by_fam",
        "429s",
        "changes",
        "rows",
        "rss_MB",
        "rss_o/p/a_MB"
    );

    for store in &args.stores {
        let kind = store.as_str();
        let (store_url, cleanup) = match kind {
            "sqlite" => {
                let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                (url, Cleanup::Dir(dir))
            }
            "postgres" => {
                let base = args
                    .pg_url
                    .clone()
                    .or_else(|| std::env::var("WRITER_SYNC_TEST_DATABASE_URL").ok())
                    .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
                let schema = format!("ws_bench_{}", std::process::id());
                pg_exec(&base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await?;
                pg_exec(&base, &format!("CREATE SCHEMA {schema}")).await?;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                (url, Cleanup::Schema { base, schema })
            }
            other => return Err(format!("unknown store {other:?} (sqlite, postgres)")),
        };
        let pg = match &cleanup {
            Cleanup::Schema { base, schema } => Some((base.clone(), schema.clone())),
            Cleanup::Dir(_) => None,
        };
        let outcome = bench_store(
            &args, &spec, &limits, scaled_rpm, floor, &minimum, &bin, kind, &store_url, pg,
        )
        .await;
        cleanup.run().await;
        outcome?;
    }
    Ok(())
}

enum Cleanup {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Schema { base: String, schema: String },
}

impl Cleanup {
    async fn run(self) {
        if let Cleanup::Schema { base, schema } = self {
            let _ = pg_exec(&base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
        }
    }
}

/// Runs one statement on the PostgreSQL server (schema setup only; the
/// benchmark's names are generated here, not input).
async fn pg_exec(url: &str, statement: &str) -> Result<(), String> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .map_err(|e| format!("PostgreSQL at {url}: {e}"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(&mut conn)
        .await
        .map_err(|e| format!("{statement}: {e}"))?;
    conn.close().await.map_err(|e| e.to_string())
}

/// Rows inserted, updated and deleted in `schema` as PostgreSQL's statistics
/// count them: an independent check of "rows written". The counters are
/// flushed when a backend ends, so read them after the run's process exited.
async fn pg_tuples_written(url: &str, schema: &str) -> Result<i64, String> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .map_err(|e| format!("PostgreSQL at {url}: {e}"))?;
    let sum: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0) AS BIGINT) \
         FROM pg_stat_user_tables WHERE schemaname = $1",
    )
    .bind(schema)
    .fetch_one(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    conn.close().await.map_err(|e| e.to_string())?;
    Ok(sum)
}

#[allow(clippy::too_many_arguments)]
async fn bench_store(
    args: &Args,
    spec: &GenSpec,
    limits: &RateLimits,
    scaled_rpm: u32,
    floor: f64,
    minimum: &Minimum,
    bin: &Path,
    kind: &str,
    store_url: &str,
    pg: Option<(String, String)>,
) -> Result<(), String> {
    let sim = Simulator::start(
        Org::generate(spec),
        SimOptions {
            rate_limits: limits.clone(),
            latency: Duration::from_millis(args.latency_ms),
            members_limit: args.members_max_limit.map(|max| MembersLimit {
                max,
                refuse_above: args.members_refuse_above_max,
            }),
            ..SimOptions::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let work = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let config = work.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[okta]\norg_url = \"{url}\"\napp_id = \"{app}\"\nrequests_per_minute = {scaled_rpm}\n\
             rate_limit_share = {share}\nmax_concurrent_requests = {conc}\n\n\
             [store]\nurl = \"{store_url}\"\nwrites_per_second = 0\n\n\
             [teams]\ncreate_missing = true\n\n[safety]\nmax_deactivations = 1000000\nmax_deactivations_percent = 100\nmax_membership_removals = 1000000\n\n\
             [log]\nformat = \"json\"\nlevel = \"info\"\n",
            url = sim.url(),
            app = sim.app_id(),
            share = args.share,
            conc = args.concurrency,
        ),
    )
    .map_err(|e| e.to_string())?;

    for sync in &args.syncs {
        let sync = sync.as_str();
        match sync {
            "first" | "no-change" => {}
            "changed" => change_org(&sim, args.change_percent, args.seed),
            other => {
                return Err(format!(
                    "unknown sync {other:?} (first, no-change, changed)"
                ));
            }
        }
        // Every run starts with fresh rate-limit windows, as the floor
        // assumes (back to back, a run would inherit the previous run's
        // last window).
        tokio::time::sleep(limits.window + Duration::from_secs(1)).await;
        let tuples_before = match &pg {
            Some((base, schema)) => Some(pg_tuples_written(base, schema).await?),
            None => None,
        };
        sim.reset_log();
        let measured = run_sync(bin, &config, sim.token(), work.path(), &sim, store_url).await?;
        let tuples = match (&pg, tuples_before) {
            (Some((base, schema)), Some(before)) => {
                // Backends report their counts when they end; give the
                // statistics a moment.
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                format!(
                    " pg_rows={}",
                    pg_tuples_written(base, schema).await? - before
                )
            }
            _ => String::new(),
        };
        if let Some(dir) = &args.log_dir {
            let kept = dir.join(format!("{kind}-{sync}.log"));
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::copy(work.path().join("sync.log"), &kept))
                .map_err(|e| format!("{}: {e}", kept.display()))?;
        }
        let requests: u64 = measured.requests.values().sum();
        let by_family = measured
            .requests
            .iter()
            .map(|(f, n)| format!("{}:{n}", short(*f)))
            .collect::<Vec<_>>()
            .join(",");
        println!(
            "{:<9} {:<9} {:>8.1} {:>8.3} {:>9.1} {:>8} {:>8.1} {:>9} {:>6.3} {:>8} {:>5} {:>8} {:>8} {:>7.0} {:>13}  {}{}",
            kind,
            sync,
            measured.wall.as_secs_f64(),
            measured.wall.as_secs_f64() / floor,
            ms(&measured, "observe_ms") / 1000.0,
            ms(&measured, "plan_ms"),
            ms(&measured, "apply_ms") / 1000.0,
            requests,
            requests as f64 / minimum.total() as f64,
            by_family,
            measured.rate_limited,
            measured.changes,
            measured.rows_written,
            measured.peak_rss_kb as f64 / 1024.0,
            ["rss_observed", "rss_planned", "rss_applied"]
                .map(|k| ms(&measured, k).to_string())
                .join("/"),
            measured.status,
            tuples,
        );
    }
    sim.shutdown().await;
    Ok(())
}

fn short(family: Bucket) -> &'static str {
    match family {
        Bucket::Apps => "app",
        Bucket::AppById => "aid",
        Bucket::Groups => "grp",
        Bucket::GroupById => "gid",
        Bucket::Users => "usr",
        Bucket::UserById => "uid",
        Bucket::Logs => "log",
        Bucket::Other => "oth",
    }
}

fn ms(measured: &Measured, phase: &str) -> f64 {
    measured.phases.get(phase).copied().unwrap_or(0) as f64
}

async fn run_sync(
    bin: &Path,
    config: &Path,
    token: &str,
    work: &Path,
    sim: &SimHandle,
    store_url: &str,
) -> Result<Measured, String> {
    let log_path = work.join("sync.log");
    let rss_path = work.join("rss");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_path)
        .arg(bin)
        .arg("--config")
        .arg(config)
        .args(["run", "--once", "--json"])
        .env("WRITER_SYNC_OKTA_API_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    // The simulator serves from this runtime: wait off its workers.
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let wall = started.elapsed();
    let stats = sim.stats();
    let peak_rss_kb = std::fs::read_to_string(&rss_path)
        .ok()
        .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or(0);

    let mut phases = BTreeMap::new();
    let mut status = format!("exit {}", exit.code().unwrap_or(-1));
    let mut run_id = None;
    let text = std::fs::read_to_string(&log_path).map_err(|e| e.to_string())?;
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        // JSON logs are flattened: fields sit beside `message`.
        let fields = &event;
        for phase in ["observe_ms", "plan_ms", "apply_ms"] {
            if let Some(v) = fields[phase].as_u64() {
                phases.insert(phase, v);
            }
        }
        // Peak RSS so far at the end of each phase (VmHWM).
        for (message, key) in [
            ("observed", "rss_observed"),
            ("planned", "rss_planned"),
            ("applied", "rss_applied"),
        ] {
            if fields["message"] == message
                && let Some(mb) = fields["peak_rss_mb"].as_u64()
            {
                phases.insert(key, mb);
            }
        }
        if fields["message"] == "sync finished" {
            status = fields["status"].as_str().unwrap_or("?").to_owned();
            run_id = fields["run_id"].as_i64();
        }
    }
    if !exit.success() {
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        return Err(format!(
            "writer-sync run --once failed ({status}): {tail:?}"
        ));
    }
    // Rows written: each applied change writes one row and its audit row;
    // the run adds its record.
    let store = Store::connect(&StoreUrl::parse(store_url)?)
        .await
        .map_err(|e| e.to_string())?;
    let changes = match run_id {
        Some(id) => store
            .audit_of_run(id)
            .await
            .map_err(|e| e.to_string())?
            .len() as u64,
        None => 0,
    };
    store.close().await;
    let requests = Bucket::ALL
        .into_iter()
        .filter_map(|f| stats.requests_by_family.get(&f).map(|n| (f, *n)))
        .collect();
    Ok(Measured {
        wall,
        status,
        peak_rss_kb,
        phases,
        requests,
        rate_limited: stats.rate_limited,
        changes,
        rows_written: changes * 2 + u64::from(run_id.is_some()),
    })
}

/// Changes `percent` % of the app users in Okta, a deterministic mix:
/// renames, email changes, suspensions, unassignments and group moves.
fn change_org(sim: &SimHandle, percent: f64, seed: u64) {
    sim.org_mut(|org| {
        let app_users = org.app_user_ids();
        let groups = org.assigned_group_ids();
        let n = ((app_users.len() as f64) * percent / 100.0).round() as usize;
        let step = (app_users.len() / n.max(1)).max(1);
        for (k, id) in app_users.iter().step_by(step).take(n).enumerate() {
            let result = match (k as u64 + seed) % 5 {
                0 => org.set_user_attr(id, "lastName", serde_json::json!(format!("Changed{k}"))),
                1 => org.set_user_attr(
                    id,
                    "email",
                    serde_json::json!(format!("changed.{k}@bench.example.com")),
                ),
                2 => org.set_user_status(id, UserStatus::Suspended),
                3 => org.unassign_user(id),
                _ => match groups.get(k % groups.len().max(1)) {
                    Some(group) => org.add_member(group, id),
                    None => Ok(()),
                },
            };
            // A user may not allow a change (e.g. not directly assigned);
            // the mix stays about 1 % either way.
            let _ = result;
        }
    });
}

//! Reliability harness (run from `scripts/crash.sh` and `scripts/soak.sh`,
//! not from `cargo test`: each scenario takes minutes).
//!
//! ```text
//! reliability crash  --backend sqlite|postgres [--kills N] [--users N] [--seed S]
//! reliability faults [--runs N] [--users N] [--seed S]
//! reliability large  [--members N]
//! ```
//!
//! `crash`: a generated Okta org (in-process simulator) and a seeded Writer
//! store; `writer-sync run --once` (the real binary) is killed with SIGKILL
//! at random points of its apply phase, up to three times in a row on the
//! same store, then left to finish. After every kill the store must pass the
//! integrity checks (unique users, no dangling memberships, the audit log
//! replays to exactly the rows in the store, at most one `running` run) and
//! the final run must converge to the dump of an uninterrupted reference run.
//!
//! `faults`: runs against the simulator with random fault mixes; each run
//! must either succeed with the reference state or fail with the store
//! unchanged, within a time bound.
//!
//! `large`: observe + plan (and one real run) over a group with N members.
//!
//! Every scenario prints one JSON summary line on stdout and exits non-zero
//! on the first violation. The SSWS token of the simulator must never appear
//! in anything the binary prints.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sqlx::Row;

use okta_sim::generate::GenSpec;
use okta_sim::org::{Org, UserStatus};
use okta_sim::{
    Fault, FaultKind, FaultTarget, RateLimits, SimHandle, SimOptions, Simulator, Times,
};
use writer_sync::store::{Store, StoreUrl};

type Res<T> = Result<T, String>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(async {
        match args.first().map(String::as_str) {
            Some("crash") => crash(&Opts::parse(&args[1..])?).await,
            Some("faults") => faults(&Opts::parse(&args[1..])?).await,
            Some("large") => large(&Opts::parse(&args[1..])?).await,
            _ => Err("usage: reliability crash|faults|large [--backend sqlite|postgres] [--kills N] [--runs N] [--users N] [--members N] [--seed S]".into()),
        }
    });
    if let Err(e) = result {
        eprintln!("reliability: FAILED: {e}");
        std::process::exit(1);
    }
}

#[derive(Debug, Clone)]
struct Opts {
    backend: String,
    kills: usize,
    runs: usize,
    users: u32,
    members: u32,
    seed: u64,
    bin: PathBuf,
    pg_url: Option<String>,
    out: PathBuf,
}

impl Opts {
    fn parse(args: &[String]) -> Res<Opts> {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        let mut o = Opts {
            backend: "sqlite".into(),
            kills: 60,
            runs: 100,
            users: 3000,
            members: 100_000,
            seed: 7,
            bin: PathBuf::from(target).join("debug/writer-sync"),
            pg_url: std::env::var("WRITER_SYNC_TEST_DATABASE_URL").ok(),
            out: std::env::temp_dir().join("writer-sync-reliability"),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
            let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--backend" => o.backend = value()?,
                "--kills" => o.kills = num(value()?)? as usize,
                "--runs" => o.runs = num(value()?)? as usize,
                "--users" => o.users = num(value()?)? as u32,
                "--members" => o.members = num(value()?)? as u32,
                "--seed" => o.seed = num(value()?)?,
                "--bin" => o.bin = PathBuf::from(value()?),
                "--pg-url" => o.pg_url = Some(value()?),
                "--out" => o.out = PathBuf::from(value()?),
                other => return Err(format!("unknown flag {other}")),
            }
        }
        if !o.bin.exists() {
            return Err(format!(
                "{} not found: build it first (cargo build)",
                o.bin.display()
            ));
        }
        std::fs::create_dir_all(&o.out).map_err(|e| e.to_string())?;
        Ok(o)
    }
}

// ---------------------------------------------------------------------------
// Stores: a fresh one per iteration.
// ---------------------------------------------------------------------------

struct Db {
    url: StoreUrl,
    config_url: String,
    raw_url: String,
    pg: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    async fn fresh(opts: &Opts, tag: &str) -> Res<Db> {
        sqlx::any::install_default_drivers();
        match opts.backend.as_str() {
            "sqlite" => {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                let path = dir.path().join("writer.db");
                Ok(Db {
                    url: StoreUrl::Sqlite(path.clone()),
                    config_url: format!("sqlite://{}", path.display()),
                    raw_url: format!("sqlite://{}", path.display()),
                    pg: None,
                    _dir: Some(dir),
                })
            }
            "postgres" => {
                let base = opts
                    .pg_url
                    .clone()
                    .ok_or("--backend postgres needs --pg-url or WRITER_SYNC_TEST_DATABASE_URL")?;
                let schema = format!("ws_rel_{tag}_{}", fastrand::u32(..));
                exec(&base, &format!("CREATE SCHEMA {schema}")).await?;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                Ok(Db {
                    url: StoreUrl::Postgres(writer_sync::secret::Secret::new(url.clone())),
                    config_url: url.clone(),
                    raw_url: url,
                    pg: Some((base, schema)),
                    _dir: None,
                })
            }
            other => Err(format!("unknown backend {other}")),
        }
    }

    async fn drop_schema(&self) {
        if let Some((base, schema)) = &self.pg {
            let _ = exec(base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
        }
    }

    async fn pool(&self) -> Res<sqlx::AnyPool> {
        sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.raw_url)
            .await
            .map_err(|e| format!("connect for checks: {e}"))
    }
}

async fn exec(url: &str, sql: &str) -> Res<()> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .map_err(|e| format!("{e}"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    pool.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// The scenario: a generated org and a seed that exercises every change kind.
// ---------------------------------------------------------------------------

struct Scenario {
    sim: SimHandle,
    seed_json: String,
    /// (lowercase email, team) -> role, of the seed.
    seed_members: BTreeMap<(String, String), String>,
    /// lowercase email -> (okta_id, active) of the seed's users.
    seed_users: BTreeMap<String, (Option<String>, bool)>,
    /// team -> okta_group_id of the seed.
    seed_teams: BTreeMap<String, Option<String>>,
}

fn email_of(org: &Org, id: &str) -> String {
    org.user_profile(id)
        .and_then(|p| p.get("email").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

async fn scenario(users: u32, seed: u64, limits: RateLimits) -> Res<Scenario> {
    let org = Org::generate(&GenSpec::new(users, 40, 12, seed));
    let app_users = org.app_user_ids();
    let pushed = org.assigned_group_ids();
    let active: Vec<&String> = app_users
        .iter()
        .filter(|id| {
            matches!(
                org.user_status(id),
                Some(UserStatus::Active | UserStatus::Provisioned)
            )
        })
        .collect();
    let inactive: Vec<&String> = app_users
        .iter()
        .filter(|id| org.user_status(id) == Some(UserStatus::Suspended))
        .collect();
    let mut seed_users = BTreeMap::new();
    let mut users_json = Vec::new();
    let mut push_user = |email: String, okta: Option<String>, last: &str, active: bool| {
        if seed_users.contains_key(&email.to_lowercase()) {
            return;
        }
        seed_users.insert(email.to_lowercase(), (okta.clone(), active));
        users_json.push(json!({
            "email": email, "okta_id": okta, "first_name": "Seed", "last_name": last,
            "display_name": format!("Seed {last}"), "active": active,
        }));
    };
    // Unmanaged Writer users with an Okta user's email in other case: linked.
    for id in active.iter().step_by(19).take(users as usize / 20) {
        push_user(email_of(&org, id).to_uppercase(), None, "Linked", true);
    }
    // Managed users with stale names (updated), some inactive (reactivated).
    for (k, id) in active.iter().skip(7).step_by(23).enumerate() {
        push_user(email_of(&org, id), Some((*id).clone()), "Stale", k % 3 != 0);
    }
    // Managed active users whose Okta user is suspended: deactivated.
    let deactivated: Vec<&String> = inactive.iter().copied().take(40).collect();
    for id in &deactivated {
        push_user(email_of(&org, id), Some((*id).clone()), "Gone", true);
    }
    // Local accounts: never touched.
    for n in 0..20 {
        push_user(format!("local{n}@writer.example"), None, "Local", true);
    }
    let mut seed_teams = BTreeMap::new();
    let mut seed_members = BTreeMap::new();
    let mut teams_json = Vec::new();
    let mut push_team = |name: &str, group: Option<String>, members: Vec<(String, &str)>| {
        seed_teams.insert(name.to_owned(), group.clone());
        let members: Vec<Value> = members
            .into_iter()
            .map(|(email, role)| {
                seed_members.insert((email.to_lowercase(), name.to_owned()), role.to_owned());
                json!({"email": email, "role": role})
            })
            .collect();
        teams_json.push(json!({"name": name, "okta_group_id": group, "members": members}));
    };
    push_team("Everyone", None, vec![]);
    push_team(
        "Local Team",
        None,
        (0..5)
            .map(|n| (format!("local{n}@writer.example"), "member"))
            .collect(),
    );
    // Half the pushed groups have a Writer team of that name (linked); the
    // others are created (create_missing). The first is already linked and
    // holds wrong roles and members Okta does not have (role changes,
    // removals), plus a local account (kept).
    for (k, group_id) in pushed.iter().enumerate().take(pushed.len() / 2) {
        let name = org.group_name(group_id).unwrap_or_default().to_owned();
        if k == 0 {
            let mut members: Vec<(String, &str)> = vec![("local9@writer.example".into(), "admin")];
            for id in active.iter().skip(7).step_by(23).take(30) {
                members.push((email_of(&org, id), "admin"));
            }
            for id in &deactivated {
                members.push((email_of(&org, id), "member"));
            }
            push_team(&name, Some(group_id.clone()), members);
        } else {
            push_team(&name, None, vec![]);
        }
    }
    let seed_json = serde_json::to_string(&json!({"users": users_json, "teams": teams_json}))
        .map_err(|e| e.to_string())?;
    let options = SimOptions {
        rate_limits: limits,
        ..SimOptions::default()
    };
    let sim = Simulator::start(org, options)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Scenario {
        sim,
        seed_json,
        seed_members,
        seed_users,
        seed_teams,
    })
}

fn write_config(dir: &Path, sim: &SimHandle, db: &Db, writes_per_second: u32) -> Res<PathBuf> {
    let text = format!(
        "[okta]\norg_url = \"{}\"\napp_id = \"{}\"\nrequest_timeout = \"5s\"\n\n\
         [store]\nurl = \"{}\"\nwrites_per_second = {writes_per_second}\n\n\
         [sync]\ndefault_team = \"Everyone\"\n\n[teams]\ncreate_missing = true\n\n\
         [safety]\nmax_deactivations = 100000\nmax_deactivations_percent = 100\nmax_membership_removals = 100000\n\n\
         [log]\nformat = \"json\"\n",
        sim.url().as_str().trim_end_matches('/'),
        sim.app_id(),
        db.config_url,
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    set_mode(&path, 0o600)?;
    Ok(path)
}

fn set_mode(path: &Path, mode: u32) -> Res<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
}

async fn seed_store(db: &Db, seed_json: &str) -> Res<()> {
    let store = Store::connect(&db.url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    store
        .load_json(seed_json)
        .await
        .map_err(|e| format!("store load: {e}"))?;
    store.close().await;
    Ok(())
}

async fn dump(db: &Db) -> Res<Value> {
    let store = Store::connect(&db.url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let dump = store.dump().await.map_err(|e| format!("dump: {e}"))?;
    store.close().await;
    serde_json::to_value(dump).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------
// Driving the binary.
// ---------------------------------------------------------------------------

#[derive(Debug)]
enum Ev {
    Observed(Instant),
    Applied(usize),
    Finished,
    Line(String),
}

struct RunResult {
    killed: bool,
    /// Changes whose batch had committed when the kill landed.
    applied_seen: usize,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    observed_at: Option<Instant>,
    finished_at: Option<Instant>,
    kill_delay: Option<Duration>,
    spawned: Instant,
}

impl RunResult {
    /// Refused because another run holds the sync lock.
    fn lock_refused(&self) -> bool {
        !self.killed && self.code == Some(1) && self.stdout.contains("holds the sync lock")
    }

    /// Spawn to the `observed` event: how long the run took to start.
    fn start_delay(&self) -> Option<Duration> {
        self.observed_at.map(|at| at.duration_since(self.spawned))
    }
}

/// Runs `writer-sync run --once --json`; when `kill_after` is set, sends
/// SIGKILL that long after the `observed` log event (if the run is still
/// going). Fails if the token shows up in any output.
fn run_once(
    bin: &Path,
    config: &Path,
    token: &str,
    kill_after: Option<Duration>,
) -> Res<RunResult> {
    let spawned = Instant::now();
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(["run", "--once", "--json"])
        .env("WRITER_SYNC_OKTA_API_TOKEN", token)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel::<Ev>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("\"message\":\"observed\"") {
                let _ = tx.send(Ev::Observed(Instant::now()));
            } else if line.contains("\"message\":\"change applied\"") {
                let seq = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|v| v["seq"].as_u64())
                    .unwrap_or(0) as usize;
                let _ = tx.send(Ev::Applied(seq));
            } else if line.contains("\"message\":\"sync finished\"") {
                let _ = tx.send(Ev::Finished);
            }
            let _ = tx.send(Ev::Line(line));
        }
    });
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let mut result = RunResult {
        killed: false,
        applied_seen: 0,
        code: None,
        stdout: String::new(),
        stderr: String::new(),
        observed_at: None,
        finished_at: None,
        kill_delay: kill_after,
        spawned,
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut kill_at: Option<Instant> = None;
    let mut lines = Vec::new();
    loop {
        let wait = match kill_at {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => Duration::from_millis(200),
        };
        match rx.recv_timeout(wait) {
            Ok(Ev::Observed(at)) => {
                result.observed_at = Some(at);
                if let Some(d) = kill_after {
                    kill_at = Some(at + d);
                }
            }
            Ok(Ev::Applied(seq)) => result.applied_seen = result.applied_seen.max(seq),
            Ok(Ev::Finished) => result.finished_at = Some(Instant::now()),
            Ok(Ev::Line(l)) => lines.push(l),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(at) = kill_at
            && Instant::now() >= at
            && result.finished_at.is_none()
        {
            child.kill().map_err(|e| format!("kill: {e}"))?;
            result.killed = true;
            kill_at = None;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("a run did not end within 600 s".into());
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = reader.join();
    result.code = status.code();
    result.stdout = out_reader.join().unwrap_or_default();
    // Lines that arrived after the last event loop turn.
    while let Ok(ev) = rx.try_recv() {
        if let Ev::Line(l) = ev {
            lines.push(l);
        }
    }
    result.stderr = lines.join("\n");
    if result.stdout.contains(token) || result.stderr.contains(token) {
        return Err("the SSWS token appeared in the output of writer-sync".into());
    }
    Ok(result)
}

/// A run that must complete; retried while the lock of a killed PostgreSQL
/// session is still being released (SQLite's OS lock dies with the process,
/// so there a refusal is an error).
fn run_to_completion(bin: &Path, config: &Path, token: &str) -> Res<(RunResult, Value)> {
    let sqlite = std::fs::read_to_string(config).is_ok_and(|c| c.contains("sqlite://"));
    for _ in 0..50 {
        let r = run_once(bin, config, token, None)?;
        if sqlite && r.lock_refused() {
            return Err(format!(
                "the run after a kill waited for the sync lock: {}",
                r.stdout
            ));
        }
        let report: Value = serde_json::from_str(r.stdout.trim()).map_err(|e| {
            format!(
                "report is not JSON ({e}): {}\n{}",
                r.stdout,
                tail(&r.stderr)
            )
        })?;
        if r.code == Some(1)
            && report["error"]
                .as_str()
                .is_some_and(|e| e.contains("holds the sync lock"))
        {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        if r.code != Some(0) {
            return Err(format!(
                "run exited {:?}: {report}\n{}",
                r.code,
                tail(&r.stderr)
            ));
        }
        return Ok((r, report));
    }
    Err("the sync lock was never released".into())
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Says how the run after a kill started: on SQLite it must never have
/// been refused the lock (the killed holder's OS lock died with it).
fn next_run_started(kill: usize, backend: &str, r: &RunResult) -> Res<Duration> {
    if r.lock_refused() {
        return Err(format!(
            "kill {kill} ({backend}): the next run was refused the sync lock: {}",
            r.stdout
        ));
    }
    let delay = r.start_delay().ok_or_else(|| {
        format!(
            "kill {kill}: the next run never observed: {}",
            tail(&r.stderr)
        )
    })?;
    eprintln!(
        "kill {kill} ({backend}): next run started without waiting (observed {} ms after spawn)",
        delay.as_millis()
    );
    Ok(delay)
}

// ---------------------------------------------------------------------------
// Integrity checks.
// ---------------------------------------------------------------------------

#[derive(Default, Debug)]
struct CheckStats {
    audit_rows: usize,
    users: usize,
    memberships: usize,
}

/// Checks the store right after a kill (`max_running` = 1) or after a
/// completed run (`max_running` = 0).
async fn check_integrity(db: &Db, sc: &Scenario, max_running: i64) -> Res<CheckStats> {
    let pool = db.pool().await?;
    let q = |sql: &'static str| sqlx::query(sql);
    let err = |what: &str| {
        let what = what.to_owned();
        move |e: sqlx::Error| format!("{what}: {e}")
    };
    let mut problems = Vec::new();

    // Users: unique by lower-cased email and by Okta id.
    let rows =
        q("SELECT id, email, okta_id, first_name, last_name, display_name, active FROM users")
            .fetch_all(&pool)
            .await
            .map_err(err("users"))?;
    let mut by_email: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_okta: BTreeMap<String, usize> = BTreeMap::new();
    struct U {
        email: String,
        okta_id: Option<String>,
        attrs: [String; 3],
        active: bool,
    }
    let mut users: BTreeMap<i64, U> = BTreeMap::new();
    for r in &rows {
        let u = U {
            email: r.try_get("email").map_err(err("email"))?,
            okta_id: r.try_get("okta_id").map_err(err("okta_id"))?,
            attrs: [
                r.try_get("first_name").map_err(err("first"))?,
                r.try_get("last_name").map_err(err("last"))?,
                r.try_get("display_name").map_err(err("display"))?,
            ],
            active: r.try_get::<i64, _>("active").map_err(err("active"))? != 0,
        };
        *by_email.entry(u.email.to_lowercase()).or_default() += 1;
        if let Some(o) = &u.okta_id {
            *by_okta.entry(o.clone()).or_default() += 1;
        }
        users.insert(r.try_get("id").map_err(err("id"))?, u);
    }
    for (k, n) in by_email.iter().chain(by_okta.iter()) {
        if *n > 1 {
            problems.push(format!("{n} users share {k}"));
        }
    }
    // Teams.
    let mut teams: BTreeMap<i64, (String, Option<String>)> = BTreeMap::new();
    for r in q("SELECT id, name, okta_group_id FROM teams")
        .fetch_all(&pool)
        .await
        .map_err(err("teams"))?
    {
        teams.insert(
            r.try_get("id").map_err(err("team id"))?,
            (
                r.try_get("name").map_err(err("name"))?,
                r.try_get("okta_group_id").map_err(err("group"))?,
            ),
        );
    }
    // Memberships: none of a missing user or team.
    let mut members: BTreeMap<(String, String), String> = BTreeMap::new();
    for r in q("SELECT team_id, user_id, role FROM memberships")
        .fetch_all(&pool)
        .await
        .map_err(err("memberships"))?
    {
        let t: i64 = r.try_get("team_id").map_err(err("team_id"))?;
        let u: i64 = r.try_get("user_id").map_err(err("user_id"))?;
        let role: String = r.try_get("role").map_err(err("role"))?;
        match (users.get(&u), teams.get(&t)) {
            (Some(user), Some((team, _))) => {
                members.insert((user.email.to_lowercase(), team.clone()), role);
            }
            _ => problems.push(format!("membership of missing user {u} or team {t}")),
        }
    }
    // Runs.
    let running: i64 = q("SELECT CAST(COUNT(*) AS BIGINT) FROM sync_runs WHERE status = 'running'")
        .fetch_one(&pool)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(err("runs"))?;
    if running > max_running {
        problems.push(format!(
            "{running} runs left `running` (at most {max_running} allowed here)"
        ));
    }

    // The audit log of the sync (run_id set) replayed over the seed must give
    // exactly the rows in the store: no change without its audit row, no
    // audit row without its change.
    let audit =
        q("SELECT action, target, after FROM audit_log WHERE run_id IS NOT NULL ORDER BY id")
            .fetch_all(&pool)
            .await
            .map_err(err("audit"))?;
    let mut want_members: BTreeMap<(String, String), Option<String>> = sc
        .seed_members
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let mut want_active: BTreeMap<String, bool> = sc
        .seed_users
        .iter()
        .map(|(e, (_, a))| (e.clone(), *a))
        .collect();
    let mut want_okta: BTreeMap<String, Option<String>> = sc
        .seed_users
        .iter()
        .map(|(e, (o, _))| (e.clone(), o.clone()))
        .collect();
    let mut want_attrs: BTreeMap<String, [String; 3]> = BTreeMap::new();
    let mut want_teams: BTreeMap<String, Option<String>> = sc.seed_teams.clone();
    for r in &audit {
        let action: String = r.try_get("action").map_err(err("action"))?;
        let target: String = r.try_get("target").map_err(err("target"))?;
        let after: Option<String> = r.try_get("after").map_err(err("after"))?;
        let after: Value = after
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| format!("audit after is not JSON: {e}"))?
            .unwrap_or(Value::Null);
        let attrs_of = |v: &Value| -> [String; 3] {
            ["first_name", "last_name", "display_name"]
                .map(|k| v[k].as_str().unwrap_or_default().to_owned())
        };
        let membership_key = || -> Res<(String, String)> {
            let (email, team) = target
                .split_once(" in ")
                .ok_or(format!("membership target {target:?}"))?;
            Ok((email.to_lowercase(), team.to_owned()))
        };
        let email = target.to_lowercase();
        match action.as_str() {
            "user_created" => {
                want_active.insert(email.clone(), true);
                want_okta.insert(email.clone(), after["okta_id"].as_str().map(str::to_owned));
                want_attrs.insert(email, attrs_of(&after["attrs"]));
            }
            "user_linked" => {
                want_okta.insert(email, after["okta_id"].as_str().map(str::to_owned));
            }
            "user_updated" => {
                want_attrs.insert(email, attrs_of(&after));
            }
            "user_reactivated" => {
                want_active.insert(email, true);
            }
            "user_deactivated" => {
                want_active.insert(email, false);
            }
            "membership_added" | "role_changed" => {
                let role = after["role"].as_str().unwrap_or_default().to_owned();
                want_members.insert(membership_key()?, Some(role));
            }
            "membership_removed" => {
                want_members.insert(membership_key()?, None);
            }
            "team_created" | "team_linked" => {
                want_teams.insert(
                    target.clone(),
                    after["okta_group_id"].as_str().map(str::to_owned),
                );
            }
            other => problems.push(format!("unknown audit action {other}")),
        }
    }
    let want_members: BTreeMap<_, _> = want_members
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    if want_members != members {
        let missing: Vec<_> = want_members
            .iter()
            .filter(|(k, v)| members.get(*k) != Some(*v))
            .take(5)
            .collect();
        let unexplained: Vec<_> = members
            .iter()
            .filter(|(k, v)| want_members.get(*k) != Some(*v))
            .take(5)
            .collect();
        problems.push(format!(
            "memberships differ from seed + audit log: audited but not in store {missing:?}; in store without audit {unexplained:?}"
        ));
    }
    let store_emails: BTreeSet<String> = users.values().map(|u| u.email.to_lowercase()).collect();
    let audited: BTreeSet<String> = want_okta.keys().cloned().collect();
    if store_emails != audited {
        let extra: Vec<_> = store_emails.difference(&audited).take(5).collect();
        let gone: Vec<_> = audited.difference(&store_emails).take(5).collect();
        problems.push(format!(
            "users without a creation audit row {extra:?}; audited creations missing {gone:?}"
        ));
    }
    for u in users.values() {
        let e = u.email.to_lowercase();
        if want_okta.get(&e).is_some_and(|o| *o != u.okta_id) {
            problems.push(format!(
                "{e}: okta_id {:?} not what the audit says",
                u.okta_id
            ));
        }
        if want_active.get(&e).is_some_and(|a| *a != u.active) {
            problems.push(format!("{e}: active {} not what the audit says", u.active));
        }
        if want_attrs.get(&e).is_some_and(|a| *a != u.attrs) {
            problems.push(format!(
                "{e}: attributes {:?} not what the audit says",
                u.attrs
            ));
        }
    }
    let teams_now: BTreeMap<String, Option<String>> = teams.values().cloned().collect();
    if teams_now != want_teams {
        problems.push(format!(
            "teams differ from seed + audit: store {teams_now:?} audit {want_teams:?}"
        ));
    }
    pool.close().await;
    if problems.is_empty() {
        Ok(CheckStats {
            audit_rows: audit.len(),
            users: users.len(),
            memberships: members.len(),
        })
    } else {
        problems.truncate(20);
        Err(problems.join("\n  "))
    }
}

fn diff_summary(a: &Value, b: &Value) -> String {
    let mut out = Vec::new();
    for key in ["users", "teams"] {
        let (Some(x), Some(y)) = (a[key].as_array(), b[key].as_array()) else {
            continue;
        };
        if x.len() != y.len() {
            out.push(format!("{key}: {} vs {}", x.len(), y.len()));
        }
        for (p, q) in x.iter().zip(y) {
            if p != q {
                let show = |v: &Value| {
                    let mut v = v.clone();
                    if let Some(m) = v.get_mut("members").and_then(Value::as_array_mut) {
                        m.truncate(3);
                    }
                    v
                };
                out.push(format!("{key}: {} vs {}", show(p), show(q)));
                if out.len() > 6 {
                    break;
                }
            }
        }
    }
    out.join("\n  ")
}

// ---------------------------------------------------------------------------
// crash
// ---------------------------------------------------------------------------

async fn crash(opts: &Opts) -> Res<()> {
    let started = Instant::now();
    let writes_per_second = 4000;
    let sc = scenario(opts.users, opts.seed, RateLimits::unlimited()).await?;
    let token = sc.sim.token().to_owned();
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;

    // Reference: one uninterrupted run on a fresh seeded store.
    let db = Db::fresh(opts, "ref").await?;
    seed_store(&db, &sc.seed_json).await?;
    let config = write_config(work.path(), &sc.sim, &db, writes_per_second)?;
    let (r, report) = run_to_completion(&opts.bin, &config, &token)?;
    let window = match (r.observed_at, r.finished_at) {
        (Some(a), Some(b)) => b.duration_since(a),
        _ => return Err("the reference run logged no observed/finished events".into()),
    };
    let total = report["changes"].as_array().map_or(0, Vec::len);
    check_integrity(&db, &sc, 0).await?;
    let reference = dump(&db).await?;
    let (_, again) = run_to_completion(&opts.bin, &config, &token)?;
    if again["changes"].as_array().is_some_and(|c| !c.is_empty()) {
        return Err(format!(
            "the reference does not converge in one run: {again}"
        ));
    }
    db.drop_schema().await;
    drop(db);
    eprintln!(
        "reference: {total} changes, apply window {:.2} s, counts {}",
        window.as_secs_f64(),
        report["counts"]
    );

    let mut kills = 0usize;
    let mut finished_first = 0usize;
    let mut iterations = 0usize;
    let mut fractions = Vec::new();
    let mut committed_at_kill = Vec::new();
    let mut checks = 0usize;
    let mut start_delays: Vec<Duration> = Vec::new();
    while kills < opts.kills {
        iterations += 1;
        let db = Db::fresh(opts, &format!("i{iterations}")).await?;
        seed_store(&db, &sc.seed_json).await?;
        let config = write_config(work.path(), &sc.sim, &db, writes_per_second)?;
        // Up to three kills in a row on this store (later ones land in the
        // recovery runs), then a run that finishes.
        let mut applied_before = 0usize;
        let mut after_kill = false;
        for _ in 0..3 {
            if kills >= opts.kills {
                break;
            }
            let remaining =
                total.saturating_sub(applied_before).max(1) as f64 / total.max(1) as f64;
            let fraction = fastrand::f64();
            let delay = window.mul_f64(remaining * fraction);
            let r = run_once(&opts.bin, &config, &token, Some(delay))?;
            if after_kill && opts.backend == "sqlite" {
                start_delays.push(next_run_started(kills, &opts.backend, &r)?);
                after_kill = false;
            }
            if !r.killed {
                finished_first += 1;
                break;
            }
            kills += 1;
            fractions.push(fraction);
            committed_at_kill.push(r.applied_seen);
            applied_before = r.applied_seen.max(applied_before);
            check_integrity(&db, &sc, 1)
                .await
                .map_err(|e| format!("after kill {kills} (iteration {iterations}, {:?} after observe, {} changes committed):\n  {e}", r.kill_delay, r.applied_seen))?;
            checks += 1;
            after_kill = true;
        }
        let (r, report) = run_to_completion(&opts.bin, &config, &token)?;
        if after_kill && opts.backend == "sqlite" && !r.killed {
            start_delays.push(next_run_started(kills, &opts.backend, &r)?);
        }
        let stats = check_integrity(&db, &sc, 0)
            .await
            .map_err(|e| format!("after the converging run of iteration {iterations}:\n  {e}"))?;
        checks += 1;
        let got = dump(&db).await?;
        if got != reference {
            let path = opts
                .out
                .join(format!("crash-{}-{iterations}.json", opts.backend));
            let _ = std::fs::write(
                &path,
                serde_json::to_string_pretty(&got).unwrap_or_default(),
            );
            return Err(format!(
                "iteration {iterations}: the store after the kills does not converge to the reference ({} kept); last report counts {}:\n  {}",
                path.display(),
                report["counts"],
                diff_summary(&got, &reference)
            ));
        }
        if iterations == 1 {
            eprintln!(
                "iteration 1 converged: {} users, {} memberships, {} audit rows",
                stats.users, stats.memberships, stats.audit_rows
            );
        }
        db.drop_schema().await;
    }
    if opts.backend == "sqlite" && start_delays.len() != kills {
        return Err(format!(
            "{} of {kills} kills were followed by a run that started",
            start_delays.len()
        ));
    }
    // Where the kills landed, in tenths of the apply window.
    let mut deciles = [0usize; 10];
    for f in &fractions {
        deciles[((f * 10.0) as usize).min(9)] += 1;
    }
    let mid_apply = committed_at_kill
        .iter()
        .filter(|&&c| c > 0 && c < total)
        .count();
    let summary = json!({
        "scenario": "crash",
        "backend": opts.backend,
        "users": opts.users,
        "changes_per_full_run": total,
        "apply_window_s": (window.as_secs_f64() * 100.0).round() / 100.0,
        "kills": kills,
        "kills_after_some_batches_committed": mid_apply,
        "kill_deciles": deciles,
        "runs_finished_before_kill": finished_first,
        "iterations": iterations,
        "integrity_checks": checks,
        "converged": iterations,
        "rows_lost": 0,
        // Checked on SQLite only (PostgreSQL frees the lock when the
        // server notices the session ended; the harness retries there).
        "next_runs_started_without_waiting": (opts.backend == "sqlite").then_some(start_delays.len()),
        "slowest_next_start_ms": start_delays.iter().max().map(|d| d.as_millis() as u64),
        "seconds": started.elapsed().as_secs(),
    });
    println!("{summary}");
    sc.sim.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// faults
// ---------------------------------------------------------------------------

/// The faults a run may meet, with whether a run must still succeed.
fn random_fault() -> (Fault, &'static str) {
    use okta_sim::{Bucket, Route};
    let page = fastrand::u32(1..=3);
    let target = match fastrand::u8(..4) {
        0 => FaultTarget::page(Bucket::Apps, page),
        1 => FaultTarget::route_page(Route::GroupMembers, page),
        _ => FaultTarget::any(),
    };
    let (kind, name) = match fastrand::u8(..9) {
        0 => (FaultKind::ServerError(500), "5xx"),
        1 => (FaultKind::ServerError(503), "5xx"),
        2 => (FaultKind::RateLimited, "429"),
        3 => (FaultKind::ConcurrencyLimited, "429-concurrency"),
        4 => (FaultKind::Slow(Duration::from_millis(2500)), "slow"),
        5 => (FaultKind::TruncatedBody, "truncated"),
        6 => (FaultKind::ForeignNextLink, "foreign-next"),
        7 => (FaultKind::RepeatCursor, "repeat-cursor"),
        _ => (FaultKind::ConnectionReset, "reset"),
    };
    // Retried faults come in bursts of at most 5 (the backoff of 5 retries
    // is at most 15.5 s); with `Always` they would run into the 300 s retry
    // budget, which the okta_client tests cover with a short budget.
    // Faults that fail the listing at once may fire on every request.
    let permanent = matches!(
        kind,
        FaultKind::TruncatedBody | FaultKind::ForeignNextLink | FaultKind::RepeatCursor
    );
    let times = match fastrand::u8(..3) {
        0 => Times::Once,
        1 => Times::Count(fastrand::u32(2..=5)),
        _ if permanent => Times::Always,
        _ => Times::Count(fastrand::u32(2..=5)),
    };
    (Fault::new(target, times, kind), name)
}

async fn faults(opts: &Opts) -> Res<()> {
    let started = Instant::now();
    // Short rate-limit windows so 429 storms cost seconds, not minutes.
    let limits = RateLimits::uniform(u32::MAX, Duration::from_secs(2));
    let sc = scenario(opts.users, opts.seed, limits).await?;
    let token = sc.sim.token().to_owned();
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = Db::fresh(opts, "fref").await?;
    seed_store(&db, &sc.seed_json).await?;
    let seeded = dump(&db).await?;
    let config = write_config(work.path(), &sc.sim, &db, 0)?;
    // The config for fault runs: 1 s request timeout, so slow responses
    // time out; the retry budget stays the product's default (300 s).
    let text = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
    std::fs::write(
        &config,
        text.replace("request_timeout = \"5s\"", "request_timeout = \"1s\""),
    )
    .map_err(|e| e.to_string())?;
    let (_, _) = run_to_completion(&opts.bin, &config, &token)?;
    let reference = dump(&db).await?;
    db.drop_schema().await;
    drop(db);

    let mut ok = 0usize;
    let mut failed_clean = 0usize;
    let mut injected = 0u64;
    let mut by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut longest = Duration::ZERO;
    for run in 0..opts.runs {
        let db = Db::fresh(opts, &format!("f{run}")).await?;
        seed_store(&db, &sc.seed_json).await?;
        let config = write_config(work.path(), &sc.sim, &db, 0)?;
        let text = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
        std::fs::write(
            &config,
            text.replace("request_timeout = \"5s\"", "request_timeout = \"1s\""),
        )
        .map_err(|e| e.to_string())?;
        let mix: Vec<(Fault, &str)> = (0..fastrand::usize(1..=3))
            .map(|_| random_fault())
            .collect();
        let names: Vec<&str> = mix.iter().map(|(_, n)| *n).collect();
        sc.sim.set_faults(mix.iter().map(|(f, _)| *f).collect());
        let requests_before = sc.sim.stats().requests;
        let t = Instant::now();
        let r = run_once(&opts.bin, &config, &token, None)?;
        let took = t.elapsed();
        longest = longest.max(took);
        injected += sc.sim.stats().requests - requests_before;
        let report: Value = serde_json::from_str(r.stdout.trim())
            .map_err(|e| format!("run {run}: report is not JSON ({e}): {}", tail(&r.stderr)))?;
        let got = dump(&db).await?;
        match r.code {
            Some(0) if got == reference => ok += 1,
            Some(1) if got == seeded => failed_clean += 1,
            code => {
                return Err(format!(
                    "run {run} with faults {names:?}: exit {code:?}, store {} — {report}\n  {}",
                    if got == seeded {
                        "unchanged"
                    } else if got == reference {
                        "complete"
                    } else {
                        "PARTIAL"
                    },
                    diff_summary(&got, &reference)
                ));
            }
        }
        for n in &names {
            let e = by_kind.entry((*n).to_owned()).or_default();
            if r.code == Some(0) {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        check_integrity(&db, &sc, 0).await?;
        db.drop_schema().await;
    }
    let summary = json!({
        "scenario": "faults",
        "backend": opts.backend,
        "runs": opts.runs,
        "succeeded_after_retries": ok,
        "failed_with_nothing_written": failed_clean,
        "partial_writes": 0,
        "requests_served": injected,
        "by_fault_kind_ok_failed": by_kind,
        "longest_run_s": (longest.as_secs_f64() * 10.0).round() / 10.0,
        "seconds": started.elapsed().as_secs(),
    });
    println!("{summary}");
    sc.sim.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// large: one group with many members, odd profiles mixed in.
// ---------------------------------------------------------------------------

async fn large(opts: &Opts) -> Res<()> {
    use okta_sim::org::SimApp;
    let started = Instant::now();
    let mut org = Org::new(SimApp {
        id: "0oalargeapp".into(),
        label: "Writer".into(),
        name: "writer".into(),
        status: "ACTIVE".into(),
    });
    let group = org.add_group("Everybody", None);
    let mut odd = 0;
    for n in 0..opts.members {
        let mut p = Map::new();
        let email = format!("user{n}@big.example");
        p.insert("login".into(), json!(email));
        match n % 1000 {
            // Right-to-left and 4-byte UTF-8 names.
            1 => {
                p.insert("firstName".into(), json!("שלום"));
                p.insert("lastName".into(), json!("😀𝄞"));
                odd += 1;
            }
            // Null and missing names, a huge display name.
            2 => {
                p.insert("firstName".into(), Value::Null);
                p.insert("displayName".into(), json!("x".repeat(64 * 1024)));
                odd += 1;
            }
            // No usable email: skipped with a warning.
            3 => {
                p.insert("email".into(), Value::Null);
                odd += 1;
            }
            _ => {
                p.insert("firstName".into(), json!("User"));
                p.insert("lastName".into(), json!(format!("N{n}")));
            }
        }
        if !p.contains_key("email") {
            p.insert("email".into(), json!(email));
        }
        let id = org.add_user(UserStatus::Active, p);
        org.add_member(&group, &id).map_err(|e| e.to_string())?;
    }
    org.assign_group(&group, 1, Map::new())
        .map_err(|e| e.to_string())?;
    let sim = Simulator::start(
        org,
        SimOptions {
            rate_limits: RateLimits::unlimited(),
            ..SimOptions::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let token = sim.token().to_owned();
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = Db::fresh(opts, "large").await?;
    seed_store(
        &db,
        r#"{"users": [], "teams": [{"name": "Everybody", "okta_group_id": null, "members": []}]}"#,
    )
    .await?;
    let config = write_config(work.path(), &sim, &db, 0)?;
    let t = Instant::now();
    let (r, report) = run_to_completion(&opts.bin, &config, &token)?;
    let first = t.elapsed();
    let t = Instant::now();
    let (_, again) = run_to_completion(&opts.bin, &config, &token)?;
    let second = t.elapsed();
    if again["changes"].as_array().is_some_and(|c| !c.is_empty()) {
        return Err(format!("second run not empty: {}", again["counts"]));
    }
    let d = dump(&db).await?;
    let members = d["teams"][0]["members"].as_array().map_or(0, Vec::len);
    let skipped = report["counts"]["skipped"].as_u64().unwrap_or(0);
    if r.stderr.contains("panicked") {
        return Err("a panic was logged".into());
    }
    let summary = json!({
        "scenario": "large",
        "backend": opts.backend,
        "group_members": opts.members,
        "odd_profiles": odd,
        "team_members_after_sync": members,
        "skipped": skipped,
        "first_run_s": (first.as_secs_f64() * 10.0).round() / 10.0,
        "second_run_s": (second.as_secs_f64() * 10.0).round() / 10.0,
        "seconds": started.elapsed().as_secs(),
    });
    println!("{summary}");
    if members + (skipped as usize) != opts.members as usize {
        return Err(format!(
            "members {members} + skipped {skipped} != {}",
            opts.members
        ));
    }
    db.drop_schema().await;
    sim.shutdown().await;
    Ok(())
}

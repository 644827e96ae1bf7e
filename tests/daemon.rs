//! The daemon as ops run it: the real binary, signals, the HTTP endpoints,
//! the systemd notify socket, and two instances on one store.

mod common;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use okta_sim::org::Org;
use okta_sim::{SimHandle, SimOptions, Simulator};
use writer_sync::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_writer-sync");

fn sample() -> Org {
    Org::sample()
}

struct Daemon {
    child: Child,
    port: u16,
    /// Checked against everything the daemon printed, however it ends.
    secrets: Vec<String>,
}

impl Daemon {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// A plain HTTP/1.0 GET on loopback: status and body.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let port = self.port;
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            write!(conn, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
            let mut raw = String::new();
            conn.read_to_string(&mut raw).ok()?;
            let (head, body) = raw.split_once("\r\n\r\n")?;
            let status = head.split(' ').nth(1)?.parse().ok()?;
            Some((status, body.to_owned()))
        })
        .await
        .ok()?
    }

    /// Waits until `path` answers 200, or panics after `limit`.
    async fn wait_http(&self, path: &str, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some((200, _)) = self.get(path).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{path} never answered 200");
    }

    /// The value of one metric sample (`name{labels}`), if present.
    async fn metric(&self, sample: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics").await?;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse().ok())
    }

    /// Waits for the process to exit; returns its code and stderr.
    fn wait_exit(mut self, limit: Duration) -> (Option<i32>, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
                common::assert_no_secrets("daemon stderr", &err, &secrets);
                return (status.code(), err);
            }
            assert!(
                start.elapsed() < limit,
                "daemon did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut stderr) = self.child.stderr.take() {
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            if !std::thread::panicking() {
                let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
                common::assert_no_secrets("daemon stderr", &err, &secrets);
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Setup {
    sim: SimHandle,
    db: common::TestDb,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new(db: common::TestDb) -> Setup {
        let sim = Simulator::start(sample(), SimOptions::default())
            .await
            .unwrap();
        Setup {
            sim,
            db,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self, name: &str, schedule: &str, run_on_start: bool, port: u16) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[okta]\norg_url = \"{}\"\napp_id = \"{}\"\nrequest_timeout = \"5s\"\n\n[store]\nurl = \"{}\"\nwrites_per_second = 0\n\n\
                 [sync]\nschedule = \"{schedule}\"\nrun_on_start = {run_on_start}\n\n[teams]\ncreate_missing = true\n\n\
                 [safety]\nmax_deactivations_percent = 100\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n",
                self.sim.url().as_str().trim_end_matches('/'),
                self.sim.app_id(),
                self.db.config_url,
            ),
        )
        .unwrap();
        path
    }

    fn spawn(&self, config: &PathBuf, port: u16, notify: Option<&PathBuf>) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(config)
            .arg("run")
            .env("WRITER_SYNC_OKTA_API_TOKEN", self.sim.token())
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(sock) = notify {
            cmd.env("NOTIFY_SOCKET", sock);
        }
        Daemon {
            child: cmd.spawn().unwrap(),
            port,
            secrets: vec![self.sim.token().to_owned()],
        }
    }
}

/// Checks every line of a Prometheus text exposition: comments are HELP or
/// TYPE, samples are `name{labels} value` with a float value.
fn assert_prometheus_text(text: &str) {
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample: {line}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| typed.contains(*b)))
            .unwrap_or(name);
        assert!(typed.contains(base), "sample without TYPE: {line}");
    }
}

both_backends!(
    sigusr1_triggers_a_run_and_metrics_move,
    |db: common::TestDb| async move {
        let s = Setup::new(db).await;
        let port = free_port();
        let config = s.config("c.toml", "0 0 1 1 *", false, port);
        let d = s.spawn(&config, port, None);
        d.wait_http("/healthz", Duration::from_secs(20)).await;
        let (_, text) = d.get("/metrics").await.unwrap();
        assert_prometheus_text(&text);
        assert_eq!(
            d.metric("writer_sync_runs_total{status=\"ok\"}").await,
            Some(0.0)
        );
        d.signal("USR1");
        let start = Instant::now();
        while d.metric("writer_sync_runs_total{status=\"ok\"}").await != Some(1.0) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "SIGUSR1 did not run a sync"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, text) = d.get("/metrics").await.unwrap();
        assert_prometheus_text(&text);
        assert!(
            d.metric("writer_sync_changes_applied_total{kind=\"user_created\"}")
                .await
                .unwrap()
                > 0.0
        );
        assert!(
            d.metric("writer_sync_okta_requests_total{family=\"apps\",code=\"200\"}")
                .await
                .unwrap()
                > 0.0
        );
        assert!(
            d.metric("writer_sync_managed_users{state=\"active\"}")
                .await
                .unwrap()
                > 0.0
        );
        assert_eq!(d.get("/readyz").await.unwrap().0, 200);
        d.signal("TERM");
        let (code, _) = d.wait_exit(Duration::from_secs(15));
        assert_eq!(code, Some(0));
        s.sim.shutdown().await;
    }
);

both_backends!(
    sighup_with_a_broken_config_keeps_the_old_one,
    |db: common::TestDb| async move {
        let s = Setup::new(db).await;
        let port = free_port();
        let config = s.config("c.toml", "0 0 1 1 *", false, port);
        let d = s.spawn(&config, port, None);
        d.wait_http("/healthz", Duration::from_secs(20)).await;
        std::fs::write(
            &config,
            std::fs::read_to_string(&config).unwrap() + "\n[sync]\nschedule = \"nonsense\"\n",
        )
        .unwrap();
        d.signal("HUP");
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Still alive and still syncing with the old config.
        d.signal("USR1");
        let start = Instant::now();
        while d.metric("writer_sync_runs_total{status=\"ok\"}").await != Some(1.0) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no run after a failed reload"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d.signal("TERM");
        let (code, stderr) = d.wait_exit(Duration::from_secs(15));
        assert_eq!(code, Some(0));
        assert!(
            stderr.contains("config reload failed: keeping the old config"),
            "{stderr}"
        );
        assert!(!stderr.contains(s.sim.token()), "token leaked");
        s.sim.shutdown().await;
    }
);

both_backends!(
    sigterm_during_a_slow_run_exits_cleanly,
    |db: common::TestDb| async move {
        let s = Setup::new(db).await;
        s.sim
            .set_latency(Duration::from_millis(700), Duration::ZERO);
        let port = free_port();
        let config = s.config("c.toml", "0 0 1 1 *", true, port);
        let d = s.spawn(&config, port, None);
        d.wait_http("/healthz", Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        let asked = Instant::now();
        d.signal("TERM");
        let (code, stderr) = d.wait_exit(Duration::from_secs(40));
        assert_eq!(code, Some(0), "{stderr}");
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "took {:?}",
            asked.elapsed()
        );
        // The store is consistent and the next run converges.
        s.sim.set_latency(Duration::ZERO, Duration::ZERO);
        let store = Store::connect(&s.db.url).await.unwrap();
        let runs = store.recent_runs(5).await.unwrap();
        assert!(runs.iter().all(|r| r.status != "running"), "{runs:?}");
        store.close().await;
        let out = common::checked_output(
            Command::new(BIN)
                .arg("--config")
                .arg(&config)
                .args(["run", "--once", "--json"])
                .env("WRITER_SYNC_OKTA_API_TOKEN", s.sim.token()),
            &[s.sim.token()],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        s.sim.shutdown().await;
    }
);

both_backends!(
    notify_socket_sees_ready_status_and_stopping_in_order,
    |db: common::TestDb| async move {
        let s = Setup::new(db).await;
        let sock_path = s.dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let port = free_port();
        let config = s.config("c.toml", "0 0 1 1 *", true, port);
        let d = s.spawn(&config, port, Some(&sock_path));
        let mut messages = Vec::new();
        let mut buf = [0u8; 4096];
        let start = Instant::now();
        let mut sent_term = false;
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                if msg.starts_with("STATUS=last run") && !sent_term {
                    d.signal("TERM");
                    sent_term = true;
                }
                let stop = msg.contains("STOPPING=1");
                messages.push(msg);
                if stop {
                    break;
                }
            }
        }
        let (code, _) = d.wait_exit(Duration::from_secs(15));
        assert_eq!(code, Some(0));
        let pos = |needle: &str| {
            messages
                .iter()
                .position(|m| m.contains(needle))
                .unwrap_or_else(|| panic!("{needle} not in {messages:?}"))
        };
        assert!(pos("READY=1") < pos("STATUS=last run ok"), "{messages:?}");
        assert!(
            pos("STATUS=last run ok") < pos("STOPPING=1"),
            "{messages:?}"
        );
        s.sim.shutdown().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_postgres_store_never_overlap_and_the_survivor_takes_over() {
    let Some(db) = common::TestDb::new(common::Kind::Postgres, "ha").await else {
        return;
    };
    let s = Setup::new(db).await;
    let (pa, pb) = (free_port(), free_port());
    let ca = s.config("a.toml", "* * * * * *", true, pa);
    let cb = s.config("b.toml", "* * * * * *", true, pb);
    let a = s.spawn(&ca, pa, None);
    let b = s.spawn(&cb, pb, None);
    a.wait_http("/healthz", Duration::from_secs(20)).await;
    b.wait_http("/healthz", Duration::from_secs(20)).await;
    // Keep Okta changing so runs keep applying something.
    let user = s.sim.org(|o| o.app_user_ids()[0].clone());
    let flip = |i: usize| {
        s.sim.org_mut(|o| {
            o.set_user_attr(&user, "lastName", json!(format!("Flip{i}")))
                .unwrap()
        });
    };
    for i in 0..8 {
        flip(i);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    // Kill the instance that ran last (the one most likely to lead).
    let store = Store::connect(&s.db.url).await.unwrap();
    let last_holder = store.recent_runs(1).await.unwrap()[0].holder.clone();
    let (victim, survivor) = if last_holder.ends_with(&format!(":{}", a.pid())) {
        (a, b)
    } else {
        (b, a)
    };
    let victim_pid = victim.pid();
    let killed_at = writer_sync::store::now_ms();
    drop(victim); // SIGKILL
    for i in 8..14 {
        flip(i);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let audit = store.audit_log().await.unwrap();
    // Runs never interleave: each run's audit rows are contiguous.
    let mut seen = std::collections::HashSet::new();
    let mut last = None;
    for row in &audit {
        if row.run_id != last {
            assert!(
                seen.insert(row.run_id),
                "run {:?} interleaved with another",
                row.run_id
            );
            last = row.run_id;
        }
    }
    // Runs never overlap in time either.
    let mut runs = store.recent_runs(500).await.unwrap();
    runs.reverse();
    for pair in runs.windows(2) {
        // A run of the killed process has no end time: it is closed as
        // interrupted by the next lock holder.
        match pair[0].finished_at {
            Some(end) => assert!(
                end <= pair[1].started_at,
                "runs overlap: {:?} and {:?}",
                pair[0],
                pair[1]
            ),
            None => assert!(
                pair[0]
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("interrupted")),
                "{:?}",
                pair[0]
            ),
        }
    }
    assert!(
        runs.iter()
            .any(|r| r.holder.ends_with(&format!(":{victim_pid}"))),
        "the killed instance never ran"
    );
    let survivor_pid = survivor.pid();
    assert!(
        runs.iter()
            .any(|r| r.holder.ends_with(&format!(":{survivor_pid}"))
                && r.started_at > killed_at
                && r.status == "ok"),
        "the survivor did not take over: {runs:?}"
    );
    store.close().await;
    survivor.signal("TERM");
    let (code, _) = survivor.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0));
    s.sim.shutdown().await;
}

both_backends!(
    a_refused_token_is_unready_at_once_and_a_reload_retries_at_once,
    |db: common::TestDb| async move {
        // Issue #12's failure policy: a 401 is not transient. /readyz says
        // so at once (not after three schedule periods), the failure is
        // counted by kind, and reloading the config (a new token) retries
        // now instead of at the next tick, a year away here.
        let s = Setup::new(db).await;
        let port = free_port();
        let token_file = s.dir.path().join("okta-token");
        common::write_file_mode(&token_file, "not-the-token\n", 0o600);
        let config = s.config("c.toml", "0 0 1 1 *", true, port);
        let text = std::fs::read_to_string(&config).unwrap().replacen(
            "[okta]\n",
            &format!(
                "[okta]\napi_token_file = {:?}\n",
                token_file.display().to_string()
            ),
            1,
        );
        common::write_file_mode(&config, &text, 0o600);
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&config)
            .arg("run")
            .env_remove("WRITER_SYNC_OKTA_API_TOKEN")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let d = Daemon {
            child: cmd.spawn().unwrap(),
            port,
            secrets: vec![s.sim.token().to_owned()],
        };
        d.wait_http("/healthz", Duration::from_secs(20)).await;
        let start = Instant::now();
        while d
            .metric("writer_sync_run_failures_total{kind=\"credential\"}")
            .await
            != Some(1.0)
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the refused token was not counted as a credential failure"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            d.metric("writer_sync_run_failures_total{kind=\"transient\"}")
                .await,
            Some(0.0)
        );
        let (status, body) = d.get("/readyz").await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("credential"), "{body}");

        common::write_file_mode(&token_file, &format!("{}\n", s.sim.token()), 0o600);
        d.signal("HUP");
        let start = Instant::now();
        while d.metric("writer_sync_runs_total{status=\"ok\"}").await != Some(1.0) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "a reload after a credential failure did not retry at once"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(d.get("/readyz").await.unwrap().0, 200);
        d.signal("TERM");
        let (code, _) = d.wait_exit(Duration::from_secs(15));
        assert_eq!(code, Some(0));
        s.sim.shutdown().await;
    }
);

/// A client that sends the start of a request and never finishes it.
fn unfinished_request(port: u16) -> Option<std::net::TcpStream> {
    use std::io::Write;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    let _ = conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
    Some(conn)
}

/// Seconds until the server closes `conn` (reads EOF or a reset).
fn seconds_until_closed(mut conn: std::net::TcpStream, limit: Duration) -> f64 {
    let start = Instant::now();
    conn.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed().as_secs_f64(),
            Ok(_) => {}
        }
    }
}

both_backends!(
    idle_clients_on_the_metrics_port_never_stop_the_sync,
    |db: common::TestDb| async move {
        let s = Setup::new(db).await;
        let port = free_port();
        let config = s.config("c.toml", "0 0 1 1 *", false, port);
        // The binary itself (sh execs it) under the default 1024 limit.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("ulimit -n 1024 && exec \"$0\" \"$@\"")
            .arg(BIN)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("WRITER_SYNC_OKTA_API_TOKEN", s.sim.token())
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let d = Daemon {
            child: cmd.spawn().unwrap(),
            port,
            secrets: vec![s.sim.token().to_owned()],
        };
        d.wait_http("/healthz", Duration::from_secs(20)).await;
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
        assert!(
            limits
                .lines()
                .any(|l| l.starts_with("Max open files") && l.contains(" 1024 ")),
            "{limits}"
        );
        // 2,000 idle clients with unfinished headers, all at once.
        // (A server that stops accepting fills its backlog, and each
        // connect then waits 2 s: give up after 30 s.)
        let idle = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            (0..2_000)
                .take_while(|_| start.elapsed() < Duration::from_secs(30))
                .filter_map(|_| unfinished_request(port))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        assert!(idle.len() > 1_900, "connected {}", idle.len());
        let fds = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
            .unwrap()
            .count();
        assert!(fds < 400, "the daemon holds {fds} descriptors");
        let asked = Instant::now();
        let (code, body) = d.get("/healthz").await.expect("/healthz answers");
        assert_eq!((code, body.as_str()), (200, "ok\n"));
        eprintln!(
            "2000 idle clients: daemon holds {fds} descriptors, /healthz in {:?}",
            asked.elapsed()
        );
        d.signal("USR1");
        let start = Instant::now();
        while d.metric("writer_sync_runs_total{status=\"ok\"}").await != Some(1.0) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no successful run beside 2,000 idle clients: failed runs {:?}",
                d.metric("writer_sync_runs_total{status=\"failed\"}").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(idle);
        // The header-read timeout (10 s) closes an unfinished request, and
        // a kept-alive connection idle after its answer.
        let late = unfinished_request(port).unwrap();
        let kept = {
            use std::io::Write;
            let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            c
        };
        let (late, kept) = tokio::task::spawn_blocking(move || {
            let kept =
                std::thread::spawn(move || seconds_until_closed(kept, Duration::from_secs(30)));
            (
                seconds_until_closed(late, Duration::from_secs(30)),
                kept.join().unwrap(),
            )
        })
        .await
        .unwrap();
        assert!(
            (9.0..15.0).contains(&late),
            "unfinished headers closed after {late} s"
        );
        assert!(
            (9.0..15.0).contains(&kept),
            "idle keep-alive closed after {kept} s"
        );
        d.signal("TERM");
        let (code, _) = d.wait_exit(Duration::from_secs(15));
        assert_eq!(code, Some(0));
        s.sim.shutdown().await;
    }
);

/// SPEC §8: a pause made with the CLI on one instance is honoured by
/// another daemon sharing the PostgreSQL store at its next run: the run is
/// `paused`, `/readyz` stays ready and says why, `writer_sync_paused` is 1
/// and STATUS= says who paused; after `resume` the next run applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_from_one_instance_holds_back_another_daemon_on_the_same_postgres_store() {
    let Some(db) = common::TestDb::new(common::Kind::Postgres, "pause").await else {
        return;
    };
    let s = Setup::new(db).await;
    let sock_path = s.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (pa, pb) = (free_port(), free_port());
    let ca = s.config("a.toml", "0 0 1 1 *", false, pa);
    let cb = s.config("b.toml", "0 0 1 1 *", false, pb);
    let a = s.spawn(&ca, pa, None);
    let b = s.spawn(&cb, pb, Some(&sock_path));
    a.wait_http("/healthz", Duration::from_secs(20)).await;
    b.wait_http("/healthz", Duration::from_secs(20)).await;
    assert_eq!(b.metric("writer_sync_paused").await, Some(0.0));

    // The operator pauses from "instance a"'s config (no credential needed).
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&ca)
        .args(["pause", "--reason", "bad Okta import"])
        .env("USER", "oncall")
        .env_remove("WRITER_SYNC_OKTA_API_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    b.signal("USR1");
    let start = Instant::now();
    while b.metric("writer_sync_runs_total{status=\"paused\"}").await != Some(1.0) {
        assert!(start.elapsed() < Duration::from_secs(30), "no paused run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.metric("writer_sync_paused").await, Some(1.0));
    assert_eq!(a.metric("writer_sync_paused").await, Some(1.0));
    let (status, body) = b.get("/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("paused by oncall@"), "{body}");
    assert!(body.contains("bad Okta import"), "{body}");
    let store = Store::connect(&s.db.url).await.unwrap();
    let run = &store.recent_runs(1).await.unwrap()[0];
    assert_eq!(run.status, "paused");
    assert!(
        run.counts.as_ref().unwrap()["users_created"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        store.dump().await.unwrap().users.is_empty(),
        "a paused run wrote users"
    );
    let mut status_lines = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let done = msg.contains("STATUS=PAUSED");
            status_lines.push(msg);
            if done {
                break;
            }
        }
    }
    let paused_line = status_lines
        .iter()
        .find(|m| m.contains("STATUS=PAUSED"))
        .unwrap_or_else(|| panic!("no paused STATUS= in {status_lines:?}"));
    assert!(paused_line.contains("by oncall@"), "{paused_line}");
    assert!(paused_line.contains("bad Okta import"), "{paused_line}");

    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cb)
        .arg("resume")
        .env_remove("WRITER_SYNC_OKTA_API_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No signal: a daemon whose last run was paused looks for the resume
    // every 5 s and syncs at once.
    let start = Instant::now();
    while b.metric("writer_sync_runs_total{status=\"ok\"}").await != Some(1.0) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no run within 20 s of the resume"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.metric("writer_sync_paused").await, Some(0.0));
    assert_eq!(b.get("/readyz").await.unwrap().1, "ready\n");
    assert!(!store.dump().await.unwrap().users.is_empty());
    store.close().await;
    drop((a, b));
    s.sim.shutdown().await;
}

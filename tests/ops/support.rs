//! What the operations tests share: the binary, a daemon process, plain
//! HTTP on loopback, the systemd notify socket, and a config for the
//! simulator.

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use okta_sim::SimHandle;

use crate::common;

pub const BIN: &str = env!("CARGO_BIN_EXE_writer-sync");

/// The repository root (units, Dockerfile, config.example.toml live there).
pub fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET on loopback: status and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Write;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The value of one sample (`name{labels}`) in a text exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `ok` every 100 ms until it holds; panics naming `what` after
/// `limit`.
pub async fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A writer-sync process; killed on drop. Its piped output is drained on
/// threads (a full pipe never stalls it) and checked for the secrets.
pub struct Proc {
    pub child: Child,
    pub secrets: Vec<String>,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

fn drain(stream: Option<impl Read + Send + 'static>) -> Option<std::thread::JoinHandle<String>> {
    stream.map(|mut s| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = s.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    })
}

impl Proc {
    pub fn spawn(cmd: &mut Command, secrets: &[&str]) -> Proc {
        let mut child = cmd.spawn().expect("spawn writer-sync");
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        Proc {
            child,
            secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
            out,
            err,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{sig}");
    }

    /// Waits for the exit; returns the code, stdout and stderr.
    pub fn wait_exit(mut self, limit: Duration) -> (Option<i32>, String, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let join = |h: Option<std::thread::JoinHandle<String>>| {
                    h.map(|h| h.join().unwrap()).unwrap_or_default()
                };
                let out = join(self.out.take());
                let err = join(self.err.take());
                let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
                common::assert_no_secrets("stdout", &out, &secrets);
                common::assert_no_secrets("stderr", &err, &secrets);
                return (status.code(), out, err);
            }
            assert!(start.elapsed() < limit, "no exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The systemd notify socket, as `NOTIFY_SOCKET` names it.
pub struct Notify {
    pub path: PathBuf,
    sock: UnixDatagram,
    pub messages: Vec<String>,
}

impl Notify {
    /// Binds `dir/notify.sock`, writable by every user (the daemon may run
    /// as another user than the test).
    pub fn bind(dir: &Path) -> Notify {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Notify {
            path,
            sock,
            messages: Vec::new(),
        }
    }

    /// Reads messages until one satisfies `pred` (returned), or panics
    /// after `limit` listing what came.
    pub fn until(&mut self, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        while start.elapsed() < limit {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.messages.push(msg.clone());
                if pred(&msg) {
                    return msg;
                }
            }
        }
        panic!("no such notify message in {limit:?}: {:#?}", self.messages);
    }
}

/// A config for the simulator: the given store, schedule and port.
pub fn sim_config(
    sim: &SimHandle,
    store_url: &str,
    schedule: &str,
    run_on_start: bool,
    port: u16,
) -> String {
    format!(
        "[okta]\norg_url = \"{}\"\napp_id = \"{}\"\nrequest_timeout = \"5s\"\n\n[store]\nurl = \"{store_url}\"\nwrites_per_second = 0\n\n\
         [sync]\nschedule = \"{schedule}\"\nrun_on_start = {run_on_start}\n\n[teams]\ncreate_missing = true\n\n\
         [safety]\nmax_deactivations_percent = 100\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n",
        sim.url().as_str().trim_end_matches('/'),
        sim.app_id(),
    )
}

/// `writer-sync --config CONFIG ARGS…` with the simulator's token, a clean
/// environment for the settings the tests control, and piped output.
pub fn writer_sync(config: &Path, token: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env("WRITER_SYNC_OKTA_API_TOKEN", token)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("STATE_DIRECTORY")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

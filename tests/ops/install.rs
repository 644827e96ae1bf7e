//! The install model, end to end as far as a machine without a running
//! systemd allows: the files as the package and the README install them
//! (config root:writer-sync 0640, token root 0600 in /etc/credstore), and
//! the daemon started the way systemd starts the shipped units: as an
//! unprivileged user, the unit's `ExecStart=`, `Environment=` and `UMask=`,
//! `$STATE_DIRECTORY`, `$CREDENTIALS_DIRECTORY` holding the credential
//! systemd copied, `$NOTIFY_SOCKET`, and the `/proc` of `ProcSubset=pid` +
//! `ProtectProc=invisible`.
//!
//! The paths live under a temporary root; the tests run as root, so the
//! service user is played by nobody:nogroup (65534), which stands for the
//! package's writer-sync user and group.

use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use okta_sim::org::Org;
use okta_sim::{SimHandle, SimOptions, Simulator};
use writer_sync::store::{Store, StoreUrl};

use crate::common;
use crate::metrics::assert_process_metrics;
use crate::support::{BIN, Notify, Proc, free_port, http_get, repo_file, sample};
use crate::units::Unit;

/// Stand-ins for the package's system user and group `writer-sync`.
const SERVICE_UID: u32 = 65534;
const SERVICE_GID: u32 = 65534;

/// A temporary `/` holding what the package and the admin put in place.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Root { dir }
    }

    /// Where an absolute path of the unit lives under this root.
    fn path(&self, absolute: &str) -> PathBuf {
        self.dir.path().join(absolute.trim_start_matches('/'))
    }

    fn mkdir(&self, absolute: &str, mode: u32, owner: (u32, u32)) -> PathBuf {
        let path = self.path(absolute);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        chown(&path, Some(owner.0), Some(owner.1)).unwrap();
        path
    }

    fn file(&self, absolute: &str, bytes: &[u8], mode: u32, owner: (u32, u32)) -> PathBuf {
        let path = self.path(absolute);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        chown(&path, Some(owner.0), Some(owner.1)).unwrap();
        path
    }

    /// Maps an argument of `ExecStart=` or a value of `Environment=`: the
    /// unit's absolute paths become paths under this root.
    fn map(&self, word: &str) -> String {
        if ["/usr/bin/", "/etc/"].iter().any(|p| word.starts_with(p)) {
            self.path(word).display().to_string()
        } else {
            word.to_owned()
        }
    }
}

/// What `apt install ./writer-sync_*.deb`, the README's edit of the config
/// and its credential step leave on disk.
fn install(root: &Root, sim: &SimHandle, store_url: Option<&str>, port: u16) {
    let root_owned = (0, 0);
    root.mkdir("/usr/bin", 0o755, root_owned);
    let bin = root.path("/usr/bin/writer-sync");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();

    // The package's conffile, root:writer-sync 0640, edited by the admin.
    let example = std::fs::read_to_string(repo_file("config.example.toml")).unwrap();
    let mut config = example.clone();
    for (from, to) in [
        (
            "org_url = \"https://acme.okta.com\"".to_owned(),
            format!("org_url = {:?}", sim.url().as_str().trim_end_matches('/')),
        ),
        (
            "app_id = \"0oa1writerapp\"".to_owned(),
            format!("app_id = {:?}", sim.app_id()),
        ),
        (
            "listen = \"127.0.0.1:9464\"".to_owned(),
            format!("listen = \"127.0.0.1:{port}\""),
        ),
    ] {
        assert_eq!(
            config.matches(&from).count(),
            1,
            "config.example.toml lacks {from}"
        );
        config = config.replacen(&from, &to, 1);
    }
    if let Some(url) = store_url {
        let from = "# url = \"sqlite:///var/lib/writer-sync/writer.db\"";
        assert!(config.contains(from), "config.example.toml lacks {from}");
        config = config.replacen(from, &format!("url = {url:?}"), 1);
    }
    root.mkdir("/etc/writer-sync", 0o755, root_owned);
    root.file(
        "/etc/writer-sync/config.toml",
        config.as_bytes(),
        0o640,
        (0, SERVICE_GID),
    );

    // README: `sudo install -d -m 0700 /etc/credstore` and the token, 0600.
    root.mkdir("/etc/credstore", 0o700, root_owned);
    root.file(
        "/etc/credstore/okta-api-token",
        format!("{}\n", sim.token()).as_bytes(),
        0o600,
        root_owned,
    );
}

/// What systemd does when it starts `unit`: the state directory, the
/// credentials it copies from /etc/credstore (owned by the service user,
/// 0400, in a 0500 directory), and the environment it sets. Returns the
/// command line of `ExecStart=`, the environment, and the umask.
fn start_as_systemd(
    root: &Root,
    unit: &Unit,
    notify: Option<&Path>,
) -> (Vec<String>, Vec<(String, String)>, String) {
    assert_eq!(unit.one("User"), "writer-sync", "{}", unit.name);
    assert_eq!(unit.one("Group"), "writer-sync", "{}", unit.name);
    assert!(
        unit.service("DynamicUser").iter().all(|v| *v == "no"),
        "{}",
        unit.name
    );
    let service = (SERVICE_UID, SERVICE_GID);
    let state = format!("/var/lib/{}", unit.one("StateDirectory"));
    let state_mode = u32::from_str_radix(unit.one("StateDirectoryMode"), 8).unwrap();
    root.mkdir("/var/lib", 0o755, (0, 0));
    let state_dir = root.mkdir(&state, state_mode, service);
    let creds = format!("/run/credentials/{}", unit.name);
    root.mkdir("/run/credentials", 0o755, (0, 0));
    let creds_dir = root.mkdir(&creds, 0o700, service);
    for id in unit.service("LoadCredential") {
        assert!(
            !id.contains(':'),
            "{}: credential {id} should come from the credstore",
            unit.name
        );
        let source = root.path(&format!("/etc/credstore/{id}"));
        if let Ok(bytes) = std::fs::read(&source) {
            root.file(&format!("{creds}/{id}"), &bytes, 0o400, service);
        }
    }
    std::fs::set_permissions(&creds_dir, std::fs::Permissions::from_mode(0o500)).unwrap();

    let exec: Vec<String> = unit
        .one("ExecStart")
        .split_whitespace()
        .map(|w| root.map(w))
        .collect();
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("STATE_DIRECTORY".into(), state_dir.display().to_string()),
        (
            "CREDENTIALS_DIRECTORY".into(),
            creds_dir.display().to_string(),
        ),
    ];
    for assignment in unit.service("Environment") {
        let (k, v) = assignment.split_once('=').unwrap();
        env.push((k.to_owned(), root.map(v)));
    }
    if let Some(sock) = notify {
        env.push(("NOTIFY_SOCKET".into(), sock.display().to_string()));
    }
    (exec, env, unit.one("UMask").to_owned())
}

/// The command systemd would run: in a private mount namespace with the
/// unit's `/proc` view, with its umask, as the service user.
fn unit_command(exec: &[String], env: &[(String, String)], umask: &str) -> Command {
    let script = format!(
        "mount -t proc -o subset=pid,hidepid=invisible proc /proc && umask {umask} && \
         exec setpriv --reuid={SERVICE_UID} --regid={SERVICE_GID} --clear-groups -- \"$@\""
    );
    let mut cmd = Command::new("/usr/bin/unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        &script,
        "sh",
    ])
    .args(exec)
    .env_clear()
    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// Lines that say the install model is broken.
fn assert_clean_start(what: &str, stderr: &str) {
    for bad in [
        "Permission denied",
        "insecure file permissions",
        "unknown-host",
        "writer-sync: ",
    ] {
        assert!(!stderr.contains(bad), "{what}: {bad:?} in:\n{stderr}");
    }
}

crate::both_backends!(
    the_shipped_units_run_as_an_unprivileged_user_with_the_readme_install,
    |db: common::TestDb| async move {
        // Issue #15: the README's install failed under the unit
        // (`api_token_file` unreadable by the service user, exit 2), the
        // config warned at 0644 and was unreadable at 0640, and the
        // instance id was `unknown-host:<pid>` under ProcSubset=pid.
        let sim = Simulator::start(Org::sample(), SimOptions::default())
            .await
            .unwrap();
        let root = Root::new();
        let port = free_port();
        let pg = matches!(db.url, StoreUrl::Postgres(_)).then_some(db.config_url.as_str());
        install(&root, &sim, pg, port);

        let notify = Notify::bind(root.dir.path());
        let mut notify = notify;
        let daemon = Unit::load("writer-sync.service");
        let (exec, env, umask) = start_as_systemd(&root, &daemon, Some(&notify.path));
        let d = Proc::spawn(&mut unit_command(&exec, &env, &umask), &[sim.token()]);
        notify.until(Duration::from_secs(60), |m| m.contains("READY=1"));
        let status = notify.until(Duration::from_secs(60), |m| {
            m.starts_with("STATUS=last run")
        });
        assert!(status.starts_with("STATUS=last run ok"), "{status}");

        let (_, metrics) = http_get(port, "/metrics").unwrap();
        assert_eq!(
            sample(&metrics, "writer_sync_runs_total{status=\"ok\"}"),
            Some(1.0)
        );
        // /proc/self is all the unit lets the process see, and enough.
        assert_process_metrics(&metrics, Duration::from_secs(300));

        let store_url = match pg {
            Some(_) => db.url.clone(),
            None => {
                let file = root.path("/var/lib/writer-sync/writer.db");
                let meta = std::fs::metadata(&file).expect("the store is in $STATE_DIRECTORY");
                assert_eq!(meta.uid(), SERVICE_UID);
                assert_eq!(meta.mode() & 0o077, 0, "UMask=0077: {:o}", meta.mode());
                StoreUrl::Sqlite(file)
            }
        };
        let store = Store::connect(&store_url).await.unwrap();
        let runs = store.recent_runs(5).await.unwrap();
        store.close().await;
        assert_eq!(runs[0].status, "ok");
        assert_eq!(
            runs[0].holder,
            format!("{}:{}", hostname(), d.pid()),
            "{runs:?}"
        );

        d.signal("TERM");
        let (code, _, stderr) = d.wait_exit(Duration::from_secs(30));
        assert_eq!(code, Some(0), "{stderr}");
        assert_clean_start("writer-sync.service", &stderr);

        // The timer's oneshot, same files, same user.
        let once = Unit::load("writer-sync-once.service");
        let (exec, env, umask) = start_as_systemd(&root, &once, None);
        let run = Proc::spawn(&mut unit_command(&exec, &env, &umask), &[sim.token()]);
        let (code, stdout, stderr) = run.wait_exit(Duration::from_secs(60));
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stdout.starts_with("sync ok"), "{stdout}");
        assert_clean_start("writer-sync-once.service", &stderr);
        sim.shutdown().await;
    }
);

#[test]
fn the_readme_installs_what_this_suite_tests() {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    for step in [
        "sudo apt install ./target/debian/writer-sync_*.deb",
        "sudo install -d -m 0700 /etc/credstore",
        "sudo install -m 0600 /dev/stdin /etc/credstore/okta-api-token",
        "sudo systemctl enable --now writer-sync",
    ] {
        assert!(
            readme.contains(step),
            "README.md lacks the install step {step:?}"
        );
    }
}

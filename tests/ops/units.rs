//! The systemd units as shipped in `systemd/`: their restart policy, and
//! systemd's own checks (`systemd-analyze verify` and `security`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{BIN, repo_file};

/// One unit file: `(section, key, value)` in file order (a key may repeat).
pub struct Unit {
    pub name: String,
    entries: Vec<(String, String, String)>,
}

impl Unit {
    pub fn load(name: &str) -> Unit {
        let path = repo_file(&format!("systemd/{name}"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut section = String::new();
        let mut entries = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_owned();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{name}: not key=value: {line}"));
            entries.push((
                section.clone(),
                key.trim().to_owned(),
                value.trim().to_owned(),
            ));
        }
        Unit {
            name: name.to_owned(),
            entries,
        }
    }

    /// Every value of `key` in `[Service]`, in order.
    pub fn service(&self, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The single value of `key` in `[Service]`.
    pub fn one(&self, key: &str) -> &str {
        match self.service(key).as_slice() {
            [v] => v,
            other => panic!("{}: {key}= set {} times", self.name, other.len()),
        }
    }
}

pub const SERVICES: [&str; 2] = ["writer-sync.service", "writer-sync-once.service"];

#[test]
fn no_unit_restarts_a_configuration_error() {
    // Issue #15: `Restart=on-failure` without `RestartPreventExitStatus=2`
    // restarted a config error every 10 s forever.
    let daemon = Unit::load("writer-sync.service");
    assert_eq!(daemon.one("Restart"), "on-failure");
    for name in SERVICES {
        let unit = Unit::load(name);
        let restart = unit.service("Restart");
        if restart.iter().all(|r| *r == "no") {
            continue;
        }
        let prevented: Vec<&str> = unit
            .service("RestartPreventExitStatus")
            .iter()
            .flat_map(|v| v.split_whitespace())
            .collect();
        assert!(
            prevented.contains(&"2"),
            "{name} restarts exit code 2: {prevented:?}"
        );
    }
    // The oneshot leaves retries to its timer.
    assert!(
        Unit::load("writer-sync-once.service")
            .service("Restart")
            .is_empty()
    );

    // Exit code 2 is what a configuration error gives, for the daemon and
    // for `run --once` alike.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    crate::common::write_file_mode(
        &config,
        "[okta]\norg_url = \"https://acme.okta.com\"\napp_id = \"0oa1\"\nno_such_key = 1\n",
        0o640,
    );
    for args in [&["run"][..], &["run", "--once"]] {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("WRITER_SYNC_OKTA_API_TOKEN", "x")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("okta.no_such_key"));
    }
}

/// Runs `script` (sh) in a private mount namespace in which `/usr/bin`
/// also holds the built binary and `/usr/share/man/man1` its man pages,
/// as the package installs them; nothing outside the namespace changes.
fn with_installed_binary(script: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy(BIN, bin.join("writer-sync")).unwrap();
    let assets = dir.path().join("assets");
    let generated = Command::new(BIN)
        .arg("generate-assets")
        .arg(&assets)
        .output()
        .unwrap();
    assert!(generated.status.success());
    let lower = |over: &Path, on: &str| {
        format!(
            "mount -t overlay overlay -o lowerdir={}:{on} {on}",
            over.display()
        )
    };
    let setup = format!(
        "{} && {} && {script}",
        lower(&bin, "/usr/bin"),
        lower(&assets.join("man"), "/usr/share/man/man1")
    );
    Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &setup,
        ])
        .current_dir(repo_file(""))
        .output()
        .expect("unshare (util-linux) runs the check in a private mount namespace")
}

fn units_dir() -> PathBuf {
    repo_file("systemd")
}

#[test]
fn systemd_analyze_verify_passes_and_security_exposure_stays_at_most_2() {
    let names = [
        "writer-sync.service",
        "writer-sync-once.service",
        "writer-sync.timer",
    ];
    let files: Vec<String> = names
        .iter()
        .map(|n| units_dir().join(n).display().to_string())
        .collect();
    let verify = with_installed_binary(&format!("systemd-analyze verify {}", files.join(" ")));
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify:\n{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    for name in SERVICES {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes"])
            .arg(units_dir().join(name))
            .output()
            .expect("systemd-analyze (systemd) is needed for this test");
        let text = String::from_utf8_lossy(&out.stdout);
        let exposure: f64 = text
            .lines()
            .find_map(|l| l.split_once(&format!("Overall exposure level for {name}: ")))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {name}:\n{text}"));
        assert!(exposure <= 2.0, "{name}: exposure {exposure}:\n{text}");
    }
}

//! The command line's packaging surface: `--version` with the commit,
//! completions and man pages for every subcommand, `healthcheck`, and the
//! Dockerfile that uses them.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use okta_sim::org::Org;
use okta_sim::{SimOptions, Simulator};

use crate::common;
use crate::support::{
    BIN, Proc, free_port, http_get, repo_file, sim_config, wait_for, writer_sync,
};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn version_prints_the_package_version_and_the_git_commit() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo_file(""))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("writer-sync {} ({commit})", env!("CARGO_PKG_VERSION"))
    );
}

/// The subcommands `--help` lists for `path` (e.g. `["store"]`), without
/// clap's `help`.
fn subcommands(path: &[&str]) -> Vec<String> {
    let mut args: Vec<&str> = path.to_vec();
    args.push("--help");
    let out = run(&args);
    assert!(out.status.success(), "{args:?}");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some((_, commands)) = help.split_once("Commands:\n") else {
        return Vec::new();
    };
    commands
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn completions_and_man_pages_cover_every_subcommand_the_cli_has() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["generate-assets", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let completions: Vec<(String, String)> =
        ["writer-sync.bash", "_writer-sync", "writer-sync.fish"]
            .iter()
            .map(|f| {
                let path = dir.path().join("completions").join(f);
                (
                    f.to_string(),
                    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{f}: {e}")),
                )
            })
            .collect();
    let page = |name: &str| {
        let path = dir.path().join("man").join(format!("{name}.1"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("man page {}: {e}", path.display()))
    };
    let main_page = page("writer-sync");
    assert!(
        main_page.starts_with(".ie") || main_page.contains(".TH writer-sync 1"),
        "{main_page}"
    );
    assert!(
        main_page.contains("Exit codes"),
        "the man page lacks the exit codes"
    );

    // Whatever cli.rs defines, now or later: discovered from --help.
    let top = subcommands(&[]);
    assert!(top.len() >= 6, "{top:?}");
    let mut checked = 0;
    let mut queue: Vec<Vec<String>> = top.into_iter().map(|c| vec![c]).collect();
    while let Some(path) = queue.pop() {
        let name = format!("writer-sync-{}", path.join("-"));
        let text = page(&name);
        assert!(text.contains(".TH"), "{name}");
        let leaf = path.last().unwrap();
        for (file, script) in &completions {
            assert!(script.contains(leaf.as_str()), "{file} lacks {leaf}");
        }
        assert!(main_page.contains(&format!("writer\\-sync\\-{}", path[0])) || path.len() > 1);
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        for sub in subcommands(&refs) {
            let mut deeper = path.clone();
            deeper.push(sub);
            queue.push(deeper);
        }
        checked += 1;
    }
    assert!(checked >= 8, "{checked} pages checked");
    // The hidden generator documents nothing of itself.
    assert!(
        !dir.path()
            .join("man/writer-sync-generate-assets.1")
            .exists()
    );
}

/// Answers one connection with `status` (or, with `None`, hangs up at
/// once without reading), then closes.
fn one_shot_server(status: Option<&'static str>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept()
            && let Some(status) = status
        {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        }
    });
    port
}

crate::both_backends!(
    healthcheck_answers_for_a_running_daemon_and_fails_otherwise,
    |db: common::TestDb| async move {
        let sim = Simulator::start(Org::sample(), SimOptions::default())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.toml");
        common::write_file_mode(
            &config,
            &sim_config(&sim, &db.config_url, "0 0 1 1 *", true, port),
            0o600,
        );
        let d = Proc::spawn(
            &mut writer_sync(&config, sim.token(), &["run"]),
            &[sim.token()],
        );
        wait_for("/healthz", Duration::from_secs(30), || {
            http_get(port, "/healthz").is_some()
        })
        .await;
        let addr = format!("127.0.0.1:{port}");
        let ok = run(&["healthcheck", "--addr", &addr]);
        assert_eq!(
            ok.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert!(ok.stdout.is_empty() && ok.stderr.is_empty());
        d.signal("TERM");
        let (code, _, _) = d.wait_exit(Duration::from_secs(30));
        assert_eq!(code, Some(0));

        let down = run(&["healthcheck", "--addr", &addr, "--timeout", "2"]);
        assert_eq!(down.status.code(), Some(1));
        let err = String::from_utf8_lossy(&down.stderr);
        assert!(err.contains(&format!("cannot connect to {addr}")), "{err}");

        // A server that hangs up: never a success (a broken pipe on this
        // socket is not stdout's, which alone ends quietly).
        let rude = one_shot_server(None);
        let hung_up = run(&["healthcheck", "--addr", &format!("127.0.0.1:{rude}")]);
        assert_eq!(hung_up.status.code(), Some(1));

        let unhappy = one_shot_server(Some("503 Service Unavailable"));
        let bad = run(&["healthcheck", "--addr", &format!("127.0.0.1:{unhappy}")]);
        assert_eq!(
            bad.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&bad.stderr)
        );
        assert!(String::from_utf8_lossy(&bad.stderr).contains("503"));
        sim.shutdown().await;
    }
);

/// The Dockerfile's instructions, `\`-continued lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_file("Dockerfile")).unwrap();
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let (op, rest) = current.split_once(' ').unwrap();
                joined.push((op.to_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    joined
}

fn instruction<'a>(file: &'a [(String, String)], op: &str) -> Vec<&'a str> {
    file.iter()
        .filter(|(o, _)| o == op)
        .map(|(_, r)| r.as_str())
        .collect()
}

fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(text)
        .unwrap_or_else(|e| panic!("not exec form: {text}: {e}"))
}

#[test]
fn the_dockerfile_runs_the_binary_it_builds_with_commands_the_cli_accepts() {
    // No Docker engine runs here, so the image is not built: what can be
    // checked is that its commands, paths and user fit the binary.
    let file = dockerfile();
    let froms = instruction(&file, "FROM");
    assert_eq!(froms.len(), 2, "multi-stage: build, then runtime");
    let build = instruction(&file, "RUN").join(" ");
    assert!(
        build.contains("cargo build --release --locked --no-default-features"),
        "{build}"
    );

    let entrypoint = exec_form(instruction(&file, "ENTRYPOINT")[0]);
    assert_eq!(entrypoint, ["/usr/bin/writer-sync"]);
    let copies = instruction(&file, "COPY");
    assert!(
        copies
            .iter()
            .any(|c| c.ends_with("/src/target/release/writer-sync /usr/bin/writer-sync")),
        "{copies:?}"
    );
    let cmd = exec_form(instruction(&file, "CMD")[0]);
    assert_eq!(cmd, ["run"]);
    let mut help = vec!["--help".to_owned()];
    help.splice(0..0, cmd.clone());
    assert!(
        Command::new(BIN)
            .args(&help)
            .output()
            .unwrap()
            .status
            .success()
    );

    let user = instruction(&file, "USER")[0];
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric USER");
    assert_ne!(uid, 0, "the image runs as root");

    let env = instruction(&file, "ENV").join(" ");
    let env_value = |key: &str| {
        env.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("ENV {key} missing: {env}"))
            .to_owned()
    };
    let state = env_value("STATE_DIRECTORY");
    assert_eq!(exec_form(instruction(&file, "VOLUME")[0]), [state.as_str()]);
    assert!(
        copies
            .iter()
            .any(|c| c.contains("--chown=65532:65532") && c.ends_with(&state))
    );
    assert_eq!(
        env_value("WRITER_SYNC_CONFIG"),
        "/etc/writer-sync/config.toml"
    );
    assert_eq!(env_value("CREDENTIALS_DIRECTORY"), "/run/secrets");

    // HEALTHCHECK: `writer-sync healthcheck` against the exposed port.
    let health = instruction(&file, "HEALTHCHECK")[0];
    let (_, command) = health.split_once("CMD ").unwrap();
    let command = exec_form(command.trim());
    assert_eq!(command[0], entrypoint[0]);
    assert_eq!(command[1], "healthcheck");
    let addr = &command[command.iter().position(|a| a == "--addr").unwrap() + 1];
    let exposed = instruction(&file, "EXPOSE")[0];
    assert!(
        addr.ends_with(&format!(":{exposed}")),
        "{addr} vs EXPOSE {exposed}"
    );

    // Run that exact command against a daemon listening there, in a
    // network namespace of its own (the port is the image's, not free here).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    common::write_file_mode(
        &config,
        &format!(
            "[okta]\norg_url = \"http://127.0.0.1:9\"\napp_id = \"0oa1\"\n\n[store]\nurl = \"sqlite://{}/w.db\"\n\n\
             [sync]\nrun_on_start = false\n\n[server]\nlisten = \"0.0.0.0:{exposed}\"\n",
            dir.path().display()
        ),
        0o600,
    );
    let health_args = command[1..].join(" ");
    let script = format!(
        "ip link set lo up || exit 90\n\
         WRITER_SYNC_OKTA_API_TOKEN=x {BIN} --config {} run 2>/dev/null &\n\
         pid=$!\n\
         ok=1\n\
         for i in $(seq 1 100); do\n\
           if {BIN} {health_args} --timeout 1 2>/dev/null; then ok=0; break; fi\n\
           sleep 0.1\n\
         done\n\
         [ $ok = 0 ] || {BIN} {health_args}\n\
         kill -TERM $pid\n\
         wait $pid\n\
         exit $ok\n",
        config.display()
    );
    let out = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &script])
        .output()
        .expect("unshare --net");
    assert!(
        out.status.success(),
        "the HEALTHCHECK command failed against a daemon on {addr}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's first command: `writer-sync demo` syncs the sample org,
/// brings one Okta change in through the System Log and takes it back out,
/// and a second run on the same store has nothing to change.
#[test]
fn demo_syncs_the_sample_org_then_shows_an_incremental_step_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let db = db.to_str().unwrap();
    let first = run(&["demo", "--db", db]);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout.contains("first sync of a fresh store"), "{stdout}");
    assert!(stdout.contains("sync ok: users_created=14"), "{stdout}");
    let steps = stdout
        .split_once("incremental sync")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no incremental step: {stdout}"));
    assert!(
        steps.contains("System Log: 1 application.user_membership.update"),
        "{steps}"
    );
    assert!(steps.contains("member -> admin"), "{steps}");
    assert!(steps.contains("admin -> member"), "{steps}");
    let second = run(&["demo", "--db", db]);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{stdout}");
    assert!(stdout.contains("sync ok: no changes"), "{stdout}");
}

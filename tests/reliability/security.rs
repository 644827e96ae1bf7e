//! Security rules: config and token file permissions, HTTPS except on
//! loopback, TLS certificates always verified, SQL always parameterized.
//! (Secrets never in output: every spawned binary here and in the other
//! suites goes through `common::checked_output` / `assert_no_secrets`.)

use std::io::Read;
use std::net::TcpListener;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use okta_sim::org::Org;
use okta_sim::{SimOptions, Simulator};
use writer_sync::okta::auth::OktaAuth;
use writer_sync::okta::{OktaClient, OktaClientConfig};
use writer_sync::secret::Secret;

use crate::{common, config_text};

fn run(config: &Path, token: &str) -> (Option<i32>, String) {
    let out = common::checked_output(
        std::process::Command::new(crate::BIN)
            .arg("--config")
            .arg(config)
            .args(["run", "--once", "--json"])
            .env("WRITER_SYNC_OKTA_API_TOKEN", token)
            .env_remove("RUST_LOG"),
        &[token],
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_and_token_files_writable_by_others_are_refused_and_world_readable_ones_warned() {
    let sim = Simulator::start(Org::sample(), SimOptions::default())
        .await
        .unwrap();
    let db = common::TestDb::new(common::Kind::Sqlite, "perms")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("okta-token");
    let config = dir.path().join("config.toml");
    let text = config_text(sim.url().as_str(), &sim.app_id(), &db.config_url, "").replacen(
        "request_timeout",
        &format!(
            "api_token_file = {:?}\nrequest_timeout",
            token_file.display().to_string()
        ),
        1,
    );
    let token = sim.token().to_owned();
    let bin = |config: PathBuf| {
        let token = token.clone();
        // The token comes from the file only.
        let out = common::checked_output(
            std::process::Command::new(crate::BIN)
                .arg("--config")
                .arg(&config)
                .args(["run", "--once", "--json"])
                .env_remove("WRITER_SYNC_OKTA_API_TOKEN")
                .env_remove("CREDENTIALS_DIRECTORY")
                .env_remove("RUST_LOG"),
            &[&token],
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    common::write_file_mode(&token_file, &format!("{token}\n"), 0o600);
    for (mode, who) in [(0o620, "group-writable"), (0o646, "world-writable")] {
        common::write_file_mode(&config, &text, mode);
        let (code, stderr) = bin(config.clone());
        assert_eq!(code, Some(2), "{mode:o}: {stderr}");
        assert!(
            stderr.contains(who) && stderr.contains("config.toml"),
            "{stderr}"
        );
    }
    common::write_file_mode(&config, &text, 0o640);
    common::write_file_mode(&token_file, &format!("{token}\n"), 0o660);
    let (code, stderr) = bin(config.clone());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("okta.api_token_file") && stderr.contains("group-writable"),
        "{stderr}"
    );
    // World-readable: accepted, with a warning naming the file, in the
    // configured log format (a JSON line).
    common::write_file_mode(&token_file, &format!("{token}\n"), 0o644);
    common::write_file_mode(&config, &text, 0o644);
    let (code, stderr) = bin(config.clone());
    assert_eq!(code, Some(0), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("insecure file permissions"))
        .collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(
        warnings
            .iter()
            .all(|l| l.starts_with('{') && l.contains("world-readable"))
    );
    assert!(warnings.iter().any(|l| l.contains("okta-token")));
    // 0600 / 0640: silent.
    common::write_file_mode(&token_file, &format!("{token}\n"), 0o600);
    common::write_file_mode(&config, &text, 0o640);
    let (code, stderr) = bin(config);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("insecure file permissions"), "{stderr}");
    sim.shutdown().await;
}

#[test]
fn plain_http_to_a_non_loopback_host_is_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    for url in [
        "http://acme.okta.com",
        "http://10.1.2.3:8080",
        "http://[fd00::1]",
    ] {
        common::write_file_mode(
            &config,
            &config_text(url, "0oa1", "sqlite:///nonexistent/w.db", ""),
            0o600,
        );
        let (code, stderr) = run(&config, "00tokenNEVERsent");
        assert_eq!(code, Some(2), "{url}: {stderr}");
        assert!(
            stderr.contains("okta.org_url") && stderr.contains("https"),
            "{stderr}"
        );
    }
}

/// A TLS server on loopback with a self-signed certificate. Records what
/// each connection ended with, and any request bytes it received.
type Log<T> = Arc<Mutex<Vec<T>>>;

fn self_signed_server() -> (u16, Log<String>, Log<u8>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = include_bytes!("../fixtures/tls/cert.der").to_vec();
    let key = include_bytes!("../fixtures/tls/key.der").to_vec();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(cert)],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(Mutex::new(Vec::new()));
    let (o, r) = (Arc::clone(&outcomes), Arc::clone(&received));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(stream) = stream else { break };
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut buf = [0u8; 4096];
            let outcome = match tls.read(&mut buf) {
                Ok(n) => {
                    r.lock().unwrap().extend_from_slice(&buf[..n]);
                    format!("read {n} bytes")
                }
                Err(e) => e.to_string(),
            };
            o.lock().unwrap().push(outcome);
        }
    });
    (port, outcomes, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverifiable_certificate_fails_the_request_and_the_token_is_never_sent() {
    let (port, outcomes, received) = self_signed_server();
    for host in ["127.0.0.1", "localhost"] {
        let client = OktaClient::new(OktaClientConfig {
            org_url: url::Url::parse(&format!("https://{host}:{port}/")).unwrap(),
            auth: OktaAuth::Ssws(Secret::new("00tlsTOKENneverSENT")),
            requests_per_minute: NonZeroU32::new(600).unwrap(),
            rate_limit_share: 100,
            max_concurrent_requests: NonZeroUsize::new(1).unwrap(),
            request_timeout: Duration::from_secs(5),
            retry_budget: Duration::from_secs(1),
            max_response_bytes: writer_sync::okta::DEFAULT_MAX_RESPONSE_BYTES,
        })
        .unwrap();
        let err = client.list_app_users("0oa1").await.unwrap_err();
        let text = writer_sync::reconcile::error_chain(&err);
        assert!(text.to_lowercase().contains("certificate"), "{text}");
        assert!(!text.contains("00tlsTOKENneverSENT"), "{text}");
    }
    // The server saw handshakes fail on the client's alert, never a request.
    std::thread::sleep(Duration::from_millis(200));
    let outcomes = outcomes.lock().unwrap().clone();
    assert!(!outcomes.is_empty());
    assert!(
        outcomes.iter().all(|o| !o.starts_with("read")),
        "{outcomes:?}"
    );
    assert!(received.lock().unwrap().is_empty());
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

#[test]
fn certificate_verification_is_never_turned_off() {
    for (path, text) in sources() {
        for needle in [
            "danger_accept_invalid_certs",
            "danger_accept_invalid_hostnames",
            "dangerous()",
            "ServerCertVerifier",
            "tls_built_in_root_certs(false)",
        ] {
            assert!(
                !text.contains(needle),
                "{} contains {needle}",
                path.display()
            );
        }
    }
}

/// SQL is always a string literal with `$n` placeholders. The one allowed
/// kind of dynamic SQL builds placeholder lists (`($1, $2), ($3, $4)`) for
/// batched writes and must say so with a `sql: placeholders only` comment
/// within the three lines above it.
#[test]
fn sql_is_always_parameterized() {
    const MARK: &str = "sql: placeholders only";
    // The product writes SQL keywords in upper case.
    let sql_word = |s: &str| {
        [
            "SELECT ", "INSERT ", "UPDATE ", "DELETE ", " WHERE ", " VALUES", " SET ", "ALTER ",
            "DROP ",
        ]
        .iter()
        .any(|k| s.contains(k))
    };
    let mut problems = Vec::new();
    let mut marked = 0;
    for (path, text) in sources() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let is_marked = lines[i.saturating_sub(3)..=i]
                .iter()
                .any(|l| l.contains(MARK));
            // Query calls whose argument is not a string literal.
            for call in [
                "sqlx::query(",
                "sqlx::query_as(",
                "sqlx::query_scalar(",
                "sqlx::raw_sql(",
            ] {
                if let Some(pos) = line.find(call) {
                    let rest = line[pos + call.len()..].trim_start();
                    let next = if rest.is_empty() {
                        lines.get(i + 1).map_or("", |l| l.trim_start())
                    } else {
                        rest
                    };
                    let literal = next.starts_with('"')
                        || next.starts_with("r\"")
                        || next.starts_with("r#\"");
                    // A variable is fine when its `let` (within 15 lines
                    // above) only chooses among string literals.
                    let ident: String = next
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    let chosen_literal = !ident.is_empty()
                        && (i.saturating_sub(15)..i)
                            .rev()
                            .find(|&j| lines[j].contains(&format!("let {ident} =")))
                            .is_some_and(|j| {
                                let block = lines[j..i].join("\n");
                                ![
                                    "format!", "push_str", "String::", ".join(", "concat!", "+ &",
                                    "+=",
                                ]
                                .iter()
                                .any(|b| block.contains(b))
                            });
                    if !literal && !chosen_literal {
                        if is_marked {
                            marked += 1;
                        } else {
                            problems.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                        }
                    }
                }
            }
            // format! (or a format string) that builds SQL.
            if line.contains("format!(") {
                let joined = lines[i..(i + 3).min(lines.len())].join(" ");
                if sql_word(&joined) {
                    if is_marked {
                        marked += 1;
                    } else {
                        problems.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "SQL built from values (use $n placeholders, or mark a placeholder-only builder with `{MARK}`):\n{}",
        problems.join("\n")
    );
    eprintln!("{marked} marked placeholder-only SQL builders");
}

//! The `okta-sim` binary as a process: what it prints once listening and
//! that a client can sync from it. The client is writer-sync's (a
//! dev-dependency of this test only: the simulator itself never links it).

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use serde_json::{Value, json};
use writer_sync::okta::auth::OktaAuth;
use writer_sync::okta::{OktaClient, OktaClientConfig};
use writer_sync::secret::Secret;

/// The `okta-sim` binary's contract: one JSON line on stdout once listening,
/// then serve until SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_sim_binary_prints_one_json_line_and_serves() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_okta-sim"))
        .args(["--sample", "--token", "00binTOKEN", "--unlimited"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ready["token"], json!("00binTOKEN"));
    assert_eq!(ready["users"], json!(30));
    let app_id = ready["app_id"].as_str().unwrap().to_owned();

    let client = OktaClient::new(OktaClientConfig {
        org_url: url::Url::parse(ready["url"].as_str().unwrap()).unwrap(),
        auth: OktaAuth::Ssws(Secret::new("00binTOKEN")),
        requests_per_minute: NonZeroU32::new(600).unwrap(),
        rate_limit_share: 100,
        max_concurrent_requests: NonZeroUsize::new(2).unwrap(),
        request_timeout: Duration::from_secs(10),
        retry_budget: Duration::from_secs(10),
        max_response_bytes: writer_sync::okta::DEFAULT_MAX_RESPONSE_BYTES,
    })
    .unwrap();
    let users = client.list_app_users(&app_id).await.unwrap();
    assert_eq!(json!(users.len()), ready["app_users"]);

    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// The binary's Okta behaviours are wired to its flags: member pages refused
/// above 200 (the client falls back to 200), an inactive app, and a schema
/// without the role attribute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_sim_binary_flags_switch_on_oktas_behaviours() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_okta-sim"))
        .args([
            "--sample",
            "--token",
            "00binTOKEN",
            "--unlimited",
            "--members-max-limit",
            "200",
            "--members-refuse-above-max",
            "--app-status",
            "INACTIVE",
            "--schema-attributes",
            "",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    let app_id = ready["app_id"].as_str().unwrap().to_owned();
    let client = OktaClient::new(OktaClientConfig {
        org_url: url::Url::parse(ready["url"].as_str().unwrap()).unwrap(),
        auth: OktaAuth::Ssws(Secret::new("00binTOKEN")),
        requests_per_minute: NonZeroU32::new(600).unwrap(),
        rate_limit_share: 100,
        max_concurrent_requests: NonZeroUsize::new(2).unwrap(),
        request_timeout: Duration::from_secs(10),
        retry_budget: Duration::from_secs(10),
        max_response_bytes: writer_sync::okta::DEFAULT_MAX_RESPONSE_BYTES,
    })
    .unwrap();
    assert_eq!(client.get_app(&app_id).await.unwrap().status, "INACTIVE");
    let groups = client.list_app_groups(&app_id).await.unwrap();
    client.list_group_members(&groups[0].id).await.unwrap();
    assert_eq!(client.group_members_limit(), 200);
    let schema = client.get_app_user_schema(&app_id).await.unwrap();
    assert!(!schema.defines("writerRole"));
    child.kill().unwrap();
    let _ = child.wait();
}

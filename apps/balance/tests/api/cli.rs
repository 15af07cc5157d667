//! The `balance` binary as operators meet it: help, configuration errors, signals, traces.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use testkit::{eventually, otlp::OtlpReceiver};

use crate::helpers::migrated_db;

fn balance() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_balance"));
    // Nothing from the developer's shell leaks in.
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

#[test]
fn help_lists_every_subcommand() {
    let out = balance().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for sub in ["serve", "worker", "migrate", "openapi", "dev"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(sub)),
            "{sub} missing from:\n{help}"
        );
    }
}

#[test]
fn invalid_configuration_stops_the_process_with_one_line_and_exit_code_2() {
    let dir = std::env::temp_dir().join(format!("balance-cli-{}", uuid::Uuid::now_v7()));
    let cases = [
        ("BALANCE_LISTEN", "localhost"),
        ("BALANCE_ENV", "staging"),
        ("BALANCE_LOG_FORMAT", "xml"),
        ("BALANCE_DATABASE_URL", "mysql://u@h/db"),
        ("BALANCE_RATE_LIMITS", "login_ip=lots"),
    ];
    for (var, value) in cases {
        for sub in ["serve", "migrate", "worker"] {
            let out = balance()
                .arg(sub)
                .env(var, value)
                .env("BALANCE_DATA_DIR", &dir)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{sub} with {var}={value}");
            let stderr = String::from_utf8(out.stderr).unwrap();
            assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
            assert!(
                stderr.starts_with(&format!("balance: invalid configuration: {var}: ")),
                "{stderr}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn production_refuses_to_start_on_development_defaults() {
    let out = balance()
        .arg("serve")
        .env("BALANCE_ENV", "production")
        .env("BALANCE_PUBLIC_URL", "https://balance.example.com")
        .env(
            "BALANCE_DATABASE_URL",
            "postgres://app:pw@127.0.0.1:1/balance",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("BALANCE_JWT_KEYS: required in production"),
        "{stderr}"
    );
}

/// Starts `balance serve` on a free port and waits until it answers.
pub(crate) async fn serve(envs: &[(&str, String)]) -> (testkit::ChildGuard, String) {
    serve_logging_to(envs, Stdio::null()).await
}

/// [`serve`], with the log lines (stdout) going to `log`.
async fn serve_logging_to(
    envs: &[(&str, String)],
    log: impl Into<Stdio>,
) -> (testkit::ChildGuard, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("balance-cli-{}", uuid::Uuid::now_v7()));
    let mut cmd = balance();
    cmd.arg("serve")
        .env("BALANCE_LISTEN", format!("127.0.0.1:{port}"))
        .env("BALANCE_DATA_DIR", &dir)
        .stdout(log)
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = testkit::ChildGuard::new(cmd.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let up = eventually(Duration::from_secs(30), || async {
        reqwest::get(format!("{base}/health"))
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;
    assert!(up.is_some(), "balance serve did not come up");
    (child, base)
}

/// Signs `email` up and in on the server at `base`; its access token.
pub(crate) async fn signed_in(client: &reqwest::Client, base: &str, email: &str) -> String {
    let password = "correct horse battery staple";
    let signup = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&serde_json::json!({"email": email, "password": password, "name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["access_token"].as_str().unwrap().to_string()
}

fn sigterm(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn serve_stops_cleanly_on_sigterm() {
    let db = migrated_db().await;
    let (mut child, _) = serve(&[("BALANCE_DATABASE_URL", db.runtime_url.clone())]).await;
    sigterm(&child);
    let exited = eventually(Duration::from_secs(30), || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert_eq!(
        exited.and_then(|s| s.code()),
        Some(0),
        "exits 0 after SIGTERM"
    );
}

#[tokio::test]
async fn serve_exports_one_span_per_request_over_otlp_with_the_request_id() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let db = migrated_db().await;
    let (mut child, base) = serve(&[
        ("BALANCE_DATABASE_URL", db.runtime_url.clone()),
        ("BALANCE_OTLP_ENDPOINT", receiver.endpoint()),
    ])
    .await;
    let request_id = format!("otlp-{}", uuid::Uuid::now_v7().simple());
    let resp = reqwest::Client::new()
        .get(format!("{base}/ready"))
        .header("x-request-id", &request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The batch exporter flushes on its schedule or at shutdown, whichever comes first.
    sigterm(&child);
    let arrived = receiver
        .wait_for_bytes(request_id.as_bytes(), Duration::from_secs(30))
        .await;
    let _ = child.wait();
    assert!(
        arrived,
        "a span carrying the request id reached the OTLP receiver"
    );
    assert!(
        receiver
            .wait_for_bytes(b"GET /ready", Duration::from_secs(1))
            .await,
        "named after the route"
    );
}

#[tokio::test]
async fn the_request_log_line_names_the_actor_and_the_client_address() {
    let db = migrated_db().await;
    let path = std::env::temp_dir().join(format!("balance-log-{}", uuid::Uuid::now_v7()));
    let file = std::fs::File::create(&path).unwrap();
    let (mut child, base) =
        serve_logging_to(&[("BALANCE_DATABASE_URL", db.runtime_url.clone())], file).await;
    let client = reqwest::Client::new();
    let token = signed_in(&client, &base, "ada@example.com").await;
    let me: serde_json::Value = client
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    sigterm(&child);
    let _ = child.wait();
    let log = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["route"] == "/api/v1/me")
        .unwrap_or_else(|| panic!("no log line for /me in {log}"));
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(
        line["actor"],
        format!("user:{}", me["id"].as_str().unwrap())
    );
    let anonymous = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["route"] == "/api/v1/auth/signup")
        .unwrap();
    assert_eq!(anonymous["actor"], "-");
}

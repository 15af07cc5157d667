//! An operator rotates the encryption key with no downtime (runbooks/key-rotation.md): the
//! new key deployed second, promoted first, `balance keys reencrypt`, `balance keys
//! check-retire`, the old key removed — and a TOTP sign-in, a sealed API-key replay and a
//! bank connection work at every step.

use std::process::Command;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use identity::totp;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, parts};

const PASSWORD: &str = "correct horse battery staple";

fn ring(keys: &[(&str, u8)]) -> String {
    keys.iter()
        .map(|(id, byte)| format!("{id}:{}", B64.encode([*byte; 32])))
        .collect::<Vec<_>>()
        .join(",")
}

fn step_now() -> u64 {
    totp::step_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

/// `balance keys …` against the app's database with this key ring: exit code and stdout.
fn keys(app: &TestApp, ring: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_balance"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BALANCE_DATABASE_URL", &app.db.runtime_url)
        .env("BALANCE_DATA_DIR", &app.data_dir)
        .env("BALANCE_ENCRYPTION_KEYS", ring)
        .env("BALANCE_LOG", "warn")
        .arg("keys")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

async fn sign_in(app: &TestApp, code: &str) -> String {
    let body = json!({"email": "ada@example.com", "password": PASSWORD, "totp_code": code});
    let (status, _, got) = parts(app.post_json("/api/v1/auth/login", &body).await).await;
    assert_eq!(status, 200, "{got}");
    got["access_token"].as_str().unwrap().to_string()
}

async fn create_key(app: &TestApp, token: &str, t: kernel::TenantId) -> Value {
    let resp = app
        .authed(
            Method::POST,
            &format!("/api/v1/tenants/{t}/api-keys"),
            token,
        )
        .header("Idempotency-Key", "rotation-key")
        .json(&json!({"name": "ci", "roles": ["viewer"]}))
        .send()
        .await
        .unwrap();
    let (status, _, got) = parts(resp).await;
    assert_eq!(status, 201, "{got}");
    got
}

#[tokio::test]
async fn an_operator_rotates_the_encryption_key_with_no_downtime() {
    let old = ring(&[("k1", 1)]);
    let app = TestApp::spawn_with(&[("BALANCE_ENCRYPTION_KEYS", &old)]).await;
    let data_dir = app.data_dir.to_string_lossy().to_string();
    let (access, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&access, "Acme").await;
    let (_, _, enrolled) = parts(
        app.authed(Method::POST, "/api/v1/me/2fa/enroll", &access)
            .json(&json!({"password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let secret = totp::from_base32(enrolled["secret"].as_str().unwrap()).unwrap();
    let step = step_now();
    let (status, _, _) = parts(
        app.authed(Method::POST, "/api/v1/me/2fa/activate", &access)
            .json(&json!({"code": totp::code_at(&secret, step, 6)}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let key = create_key(&app, &access, t).await;
    let (status, _, bank) = parts(
        app.authed(
            Method::POST,
            &format!("/api/v1/tenants/{t}/bank-connections"),
            &access,
        )
        .json(&json!({"provider": "sandbox"}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{bank}");
    let bank_id: uuid::Uuid = bank["id"].as_str().unwrap().parse().unwrap();

    // 1. k2 deployed second: it decrypts, k1 still encrypts and is in use.
    let deployed = ring(&[("k1", 1), ("k2", 2)]);
    let (code, _, stderr) = keys(&app, &deployed, &["check-retire", "k1"]);
    assert_eq!(code, 1, "k1 still encrypts: {stderr}");
    // 2. k2 promoted first (a rolling deploy: both rings open everything).
    let promoted = ring(&[("k2", 2), ("k1", 1)]);
    let next = TestApp::start(
        app.db.share(),
        &[
            ("BALANCE_DATA_DIR", &data_dir),
            ("BALANCE_ENCRYPTION_KEYS", &promoted),
        ],
    )
    .await;
    // Mid-rotation, the promoted instance opens what k1 sealed.
    let during = create_key(&next, &access, t).await;
    assert_eq!(during["secret"], key["secret"]);
    let (code, out, _) = keys(&app, &promoted, &["check-retire", "k1"]);
    assert_eq!(code, 1);
    let counts: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        counts["in_use"], 3,
        "a TOTP secret, a sealed replay, a bank token: {counts}"
    );
    // 3. Re-encrypt everything, then k1 seals nothing.
    let (code, out, stderr) = keys(&app, &promoted, &["reencrypt", "--inline"]);
    assert_eq!(code, 0, "{stderr}");
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["key_id"], "k2");
    let (code, out, _) = keys(&app, &promoted, &["check-retire", "k1"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        app.platform_events()
            .await
            .iter()
            .any(|(kind, _)| kind == "vault.reencrypted"),
        "one summary event"
    );
    // 4. k1 leaves the ring: the last instance runs on k2 alone, and everything works.
    let last = TestApp::start(
        app.db.share(),
        &[
            ("BALANCE_DATA_DIR", &data_dir),
            ("BALANCE_ENCRYPTION_KEYS", &ring(&[("k2", 2)])),
        ],
    )
    .await;
    let token = sign_in(&last, &totp::code_at(&secret, step + 1, 6)).await;
    let replayed = create_key(&last, &token, t).await;
    assert_eq!(
        replayed["secret"], key["secret"],
        "the sealed replay opens under k2"
    );
    let run = last
        .platform
        .banking
        .sync(&last.kernel_db, t, bank_id, None)
        .await
        .unwrap();
    assert!(matches!(run, banking::SyncRun::Applied(_)), "{run:?}");
    drop(next);
}

//! The audit log as operators and auditors meet it: the public keys over HTTP, and the
//! `balance audit` commands.

use std::process::Command;

use audit::{NewEvent, Record};
use kernel::{Actor, TenantTx};

use crate::helpers::{TestApp, parts, seed};

#[tokio::test]
async fn the_checkpoint_public_keys_are_served_without_credentials() {
    let app = TestApp::spawn().await;
    let (status, _, body) = parts(app.get("/api/v1/audit/public-key").await).await;
    assert_eq!(status, 200);
    let keys = body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["algorithm"], "Ed25519");
    assert_eq!(keys[0]["key_id"], "dev");
    assert_eq!(
        app.platform.audit.keys().public_keys()[0].public_key,
        keys[0]["public_key"].as_str().unwrap()
    );
}

/// `balance` with the app's configuration.
fn balance(app: &TestApp, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_balance"))
        .args(args)
        .env_clear()
        .env("BALANCE_DATABASE_URL", &app.db.runtime_url)
        .env("BALANCE_DATA_DIR", &app.data_dir)
        .env("BALANCE_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test]
async fn audit_verify_export_and_offline_verify_from_the_command_line() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    for i in 0..30 {
        let mut tx = TenantTx::begin(&app.kernel_db, tenant, Actor::System)
            .await
            .unwrap();
        tx.record(NewEvent::new("test.thing.happened").payload(serde_json::json!({"i": i})));
        tx.commit().await.unwrap();
    }
    audit::checkpoint_due(&app.kernel_db, app.platform.audit.keys())
        .await
        .unwrap();

    let out = balance(&app, &["audit", "verify", "--tenant", &tenant.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            report["ok"].as_bool(),
            report["checked"].as_u64(),
            report["checkpoints"].as_u64()
        ),
        (Some(true), Some(30), Some(1))
    );

    let export = balance(&app, &["audit", "export", "--tenant", &tenant.to_string()]);
    assert!(export.status.success());
    let dir = &app.data_dir;
    std::fs::create_dir_all(dir).unwrap();
    let (file, keys) = (dir.join("export.ndjson"), dir.join("keys.json"));
    std::fs::write(&file, &export.stdout).unwrap();
    std::fs::write(
        &keys,
        app.get("/api/v1/audit/public-key")
            .await
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let offline = Command::new(env!("CARGO_BIN_EXE_balance"))
        .args([
            "audit",
            "verify",
            "--file",
            file.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
        ])
        .env_clear()
        .output()
        .unwrap();
    assert!(
        offline.status.success(),
        "offline, with no configuration: {}",
        String::from_utf8_lossy(&offline.stderr)
    );

    // Tampered behind the application's back: non-zero, naming the first bad seq.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.superuser_url)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET session_replication_role = replica;
         UPDATE events SET canonical = replace(canonical, '\"i\":11', '\"i\":12') WHERE tenant_id = '{tenant}' AND seq = 12"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let out = balance(&app, &["audit", "verify", "--tenant", &tenant.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("broken at seq 12"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

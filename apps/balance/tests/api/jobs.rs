//! The job runner as operators meet it: queue metrics, `balance worker`, `balance jobs`.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use jobs::{Enqueue, NewJob};
use kernel::{Actor, TenantTx};
use testkit::eventually;

use crate::helpers::{TestApp, seed};

fn balance(app: &TestApp) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_balance"));
    cmd.env_clear()
        .env("BALANCE_DATABASE_URL", &app.db.runtime_url)
        .env("BALANCE_DATA_DIR", &app.data_dir)
        .env("BALANCE_LOG", "warn");
    cmd
}

fn lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn metrics_show_the_job_queues_computed_from_the_database() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    for _ in 0..2 {
        let mut tx = TenantTx::begin(&app.kernel_db, tenant, Actor::System)
            .await
            .unwrap();
        tx.enqueue(NewJob::new(
            "mail",
            "mail.send",
            serde_json::json!({"message_id": "m1"}),
        ));
        tx.commit().await.unwrap();
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(r#"balance_jobs_queued{queue="mail"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"balance_jobs_oldest_queued_seconds{queue="mail"}"#));
    assert!(text.contains(r#"balance_jobs_total{queue="mail",outcome="succeeded"} 0"#));
    assert!(
        text.trim_end().ends_with("# EOF"),
        "still valid OpenMetrics"
    );
}

#[tokio::test]
async fn an_empty_queue_reports_zero_instead_of_no_series() {
    let app = TestApp::spawn().await;
    let text = app.get("/metrics").await.text().await.unwrap();
    for queue in jobs::default_queues() {
        for gauge in ["balance_jobs_queued", "balance_jobs_oldest_queued_seconds"] {
            let series = format!("{gauge}{{queue=\"{}\"}} 0\n", queue.name);
            assert!(text.contains(&series), "no `{series}` in:\n{text}");
        }
    }
}

#[tokio::test]
async fn operators_list_show_retry_and_purge_dead_jobs_run_by_balance_worker() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    let id = {
        let mut tx = TenantTx::begin(&app.kernel_db, tenant, Actor::System)
            .await
            .unwrap();
        // No handler knows this kind: the job is dead at its first run.
        let id = tx.enqueue(NewJob::new(
            "default",
            "test.unknown_kind",
            serde_json::json!({"thing_id": "t1"}),
        ));
        tx.commit().await.unwrap();
        id
    };
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut worker = testkit::ChildGuard::new(
        balance(&app)
            .arg("worker")
            .env("BALANCE_ADMIN_LISTEN", admin.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dead = eventually(Duration::from_secs(60), || async {
        let out = balance(&app)
            .args(["jobs", "list", "--status", "dead"])
            .output()
            .unwrap();
        lines(&out).into_iter().find(|j| j["id"] == id.to_string())
    })
    .await
    .expect("the worker ran the job and it is dead");
    assert_eq!(dead["kind"], "test.unknown_kind");
    assert!(dead["last_error"].as_str().unwrap().contains("no handler"));

    let shown = balance(&app)
        .args(["jobs", "show", &id.to_string()])
        .output()
        .unwrap();
    assert!(shown.status.success());
    assert_eq!(
        lines(&shown)[0]["payload"],
        serde_json::json!({"thing_id": "t1"})
    );

    // Run-duration histograms of the worker on its admin listener.
    let metrics = eventually(Duration::from_secs(30), || async {
        let text = reqwest::get(format!("http://{admin}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("balance_job_run_duration_seconds")
            .then_some(text)
    })
    .await;
    assert!(metrics.is_some());

    let retried = balance(&app)
        .args(["jobs", "retry", &id.to_string()])
        .output()
        .unwrap();
    assert!(
        retried.status.success(),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    // The worker runs it again (and, with still no handler, it dies again).
    let rerun = eventually(Duration::from_secs(60), || async {
        let out = balance(&app)
            .args(["jobs", "show", &id.to_string()])
            .output()
            .unwrap();
        lines(&out)
            .into_iter()
            .next()
            .filter(|j| j["status"] == "dead" && j["finished_at"] != dead["finished_at"])
    })
    .await;
    assert!(rerun.is_some(), "the retried job ran again");

    assert!(
        Command::new("kill")
            .args(["-TERM", &worker.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        worker.wait().unwrap().success(),
        "the worker stops cleanly on SIGTERM"
    );

    let purged = balance(&app)
        .args(["jobs", "purge", "--older-than", "0s", "--status", "dead"])
        .output()
        .unwrap();
    assert!(purged.status.success());
    let listed = balance(&app).args(["jobs", "list"]).output().unwrap();
    assert!(
        !lines(&listed).iter().any(|j| j["id"] == id.to_string()),
        "purged"
    );
    let bad_age = balance(&app)
        .args(["jobs", "purge", "--older-than", "soon"])
        .output()
        .unwrap();
    assert_eq!(bad_age.status.code(), Some(2), "clap refuses a bad age");
}

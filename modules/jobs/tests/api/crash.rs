//! Crash safety with real processes: the test binary re-runs itself as worker processes
//! (`worker_process` below), which the tests kill.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use jobs::{Registry, RunnerConfig};
use serde_json::json;

use crate::helpers::Env;

const WORKER_DB: &str = "BALANCE_TEST_WORKER_DB";

/// A worker process: runs the queues until SIGTERM. Started by the tests below, never alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a worker process that the crash tests start"]
async fn worker_process() {
    let Ok(url) = std::env::var(WORKER_DB) else {
        return;
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .connect(&url)
        .await
        .unwrap();
    let db = kernel::Db::new(pool.clone());
    let registry = Registry::default().handle("test.slow", |job| async move {
        let ms = job.payload["ms"].as_u64().unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    });
    // The production heartbeat: every 5 s, orphaned after 3 missed.
    let config = RunnerConfig {
        poll: Duration::from_millis(500),
        ..RunnerConfig::default()
    };
    let runner = jobs::Runner::new(pool, db, registry, crate::helpers::queues(), config);
    runner
        .run(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            term.recv().await;
        })
        .await
        .unwrap();
}

fn spawn_worker(env: &Env) -> testkit::ChildGuard {
    testkit::ChildGuard::new(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::worker_process",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(WORKER_DB, &env.db.runtime_url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn signal(child: &Child, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing_another_runs_it_again() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    let mut first = spawn_worker(&env);
    let id = env
        .enqueue(tenant, "slow", "test.slow", json!({"ms": 6000}))
        .await;
    env.wait_status(tenant, id, "running", Duration::from_secs(30))
        .await;

    signal(&first, "-KILL");
    first.wait().unwrap();
    let killed = Instant::now();
    let mut second = spawn_worker(&env);
    let (_, attempts, _, _) = env
        .wait_status(tenant, id, "succeeded", Duration::from_secs(90))
        .await;
    eprintln!(
        "re-run and finished {:?} after the SIGKILL (6 s of it is the job itself)",
        killed.elapsed()
    );
    assert_eq!(attempts, 2, "run again by the other worker");
    signal(&second, "-TERM");
    second.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_job_finish_before_the_worker_exits() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    let mut worker = spawn_worker(&env);
    let id = env
        .enqueue(tenant, "slow", "test.slow", json!({"ms": 2500}))
        .await;
    env.wait_status(tenant, id, "running", Duration::from_secs(30))
        .await;
    signal(&worker, "-TERM");
    let exited = testkit::eventually(Duration::from_secs(60), || {
        let status = worker.try_wait().unwrap();
        async move { status }
    })
    .await
    .expect("the worker exits");
    assert!(exited.success(), "{exited}");
    let (status, attempts, _, _) = env.job(tenant, id).await.unwrap();
    assert_eq!(
        (status.as_str(), attempts),
        ("succeeded", 1),
        "finished, not abandoned"
    );
}

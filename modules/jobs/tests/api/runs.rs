//! Runs, retries, dead letters, timeouts, progress, pickup, cron — in one process.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use jobs::{Enqueue, JobError, NewJob, Registry};
use kernel::{Actor, SystemTx, TenantTx};
use serde_json::json;

use crate::helpers::{Env, Runs, fail, fast_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_job_runs_and_a_rolled_back_one_never_exists() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    let runs = Runs::default();
    let seen = runs.clone();
    let registry = Registry::default().handle("test.echo", move |job| {
        let seen = seen.clone();
        async move {
            seen.record(&job);
            Ok(())
        }
    });
    let (_stop, _runner) = env.start(registry, fast_config());

    let committed = env
        .enqueue(tenant, "work", "test.echo", json!({"thing_id": 1}))
        .await;
    let rolled_back = {
        let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
            .await
            .unwrap();
        tx.enqueue(NewJob::new("work", "test.echo", json!({"thing_id": 2})))
        // dropped: rolled back
    };
    let (status, attempts, progress, _) = env
        .wait_status(tenant, committed, "succeeded", Duration::from_secs(30))
        .await;
    assert_eq!((status.as_str(), attempts, progress), ("succeeded", 1, 1.0));
    assert_eq!(runs.of(committed).len(), 1);
    assert!(env.job(tenant, rolled_back).await.is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        runs.of(rolled_back).is_empty(),
        "a rolled-back request enqueues nothing"
    );
    let mut tx = SystemTx::begin(&env.kdb, Actor::System).await.unwrap();
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs")
        .fetch_one(tx.conn())
        .await
        .unwrap();
    assert_eq!(entries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_with_backoff_then_the_job_is_dead_with_its_payload_and_last_error() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    let runs = Runs::default();
    let seen = runs.clone();
    let registry = Registry::default().handle("test.flaky", move |job| {
        let seen = seen.clone();
        async move {
            seen.record(&job);
            fail(&format!("boom on attempt {}", job.attempt))
        }
    });
    let (_stop, _runner) = env.start(registry, fast_config());
    let id = env
        .enqueue(tenant, "work", "test.flaky", json!({"account_id": "a1"}))
        .await;
    let (_, attempts, _, error) = env
        .wait_status(tenant, id, "dead", Duration::from_secs(60))
        .await;
    assert_eq!(attempts, 3, "the queue's maximum");
    assert_eq!(error.as_deref(), Some("boom on attempt 3"));
    let times = runs.of(id);
    assert_eq!(times.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2, 3]);
    // Backoff 200 ms doubling, with jitter of up to half: at least 100 ms, then 200 ms.
    assert!(times[1].1 - times[0].1 >= Duration::from_millis(100));
    assert!(times[2].1 - times[1].1 >= Duration::from_millis(200));
    let job = jobs::show(&env.kdb, id).await.unwrap().unwrap();
    assert_eq!(
        job.payload,
        json!({"account_id": "a1"}),
        "the payload is kept"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        runs.of(id).len(),
        3,
        "a dead job does not run again by itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_error_is_dead_at_once_and_an_operator_retry_runs_it_again() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let registry = Registry::default().handle("test.fatal", move |_job| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                Err(JobError::fatal("the account was deleted"))
            } else {
                Ok(())
            }
        }
    });
    let (_stop, _runner) = env.start(registry, fast_config());
    let id = env.enqueue(tenant, "work", "test.fatal", json!({})).await;
    let (_, attempts, _, error) = env
        .wait_status(tenant, id, "dead", Duration::from_secs(30))
        .await;
    assert_eq!(
        (attempts, error.as_deref()),
        (1, Some("the account was deleted"))
    );

    assert!(jobs::retry(&env.kdb, id).await.unwrap());
    let (_, attempts, _, _) = env
        .wait_status(tenant, id, "succeeded", Duration::from_secs(30))
        .await;
    assert_eq!(attempts, 1, "attempts start again");
    assert!(
        !jobs::retry(&env.kdb, id).await.unwrap(),
        "only dead jobs are retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_its_timeout_or_a_panic_fails_that_run_not_the_worker() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    let registry = Registry::default()
        .handle("test.hang", |_job| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        })
        .handle("test.panic_once", |job| async move {
            if job.attempt == 1 {
                panic!("first attempt panics");
            }
            Ok(())
        });
    let (_stop, _runner) = env.start(registry, fast_config());
    let hang = env.enqueue(tenant, "work", "test.hang", json!({})).await;
    let panics = env
        .enqueue(tenant, "work", "test.panic_once", json!({}))
        .await;
    let (_, attempts, _, error) = env
        .wait_status(tenant, hang, "dead", Duration::from_secs(60))
        .await;
    assert_eq!(attempts, 3);
    assert!(error.unwrap().contains("timed out"));
    let (_, attempts, _, _) = env
        .wait_status(tenant, panics, "succeeded", Duration::from_secs(30))
        .await;
    assert_eq!(attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_reports_progress_while_it_runs() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    let gate = Arc::new(tokio::sync::Notify::new());
    let open = gate.clone();
    let registry = Registry::default().handle("test.long", move |job| {
        let open = open.clone();
        async move {
            job.progress(0.25).await?;
            open.notified().await;
            Ok(())
        }
    });
    let (_stop, _runner) = env.start(registry, fast_config());
    let id = env.enqueue(tenant, "slow", "test.long", json!({})).await;
    let running = testkit::eventually(Duration::from_secs(30), || async {
        env.job(tenant, id)
            .await
            .filter(|j| j.0 == "running" && (j.2 - 0.25).abs() < 1e-6)
    })
    .await;
    assert!(running.is_some(), "running at 25 %");
    gate.notify_one();
    let (_, _, progress, _) = env
        .wait_status(tenant, id, "succeeded", Duration::from_secs(30))
        .await;
    assert_eq!(progress, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_picks_up_a_new_job_through_listen_notify() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    let started = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = started.clone();
    let registry = Registry::default().handle("test.ping", move |job| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push((job.id, Instant::now()));
            Ok(())
        }
    });
    // Polling and heartbeats far apart: only a notification can wake the worker quickly.
    let config = jobs::RunnerConfig {
        poll: Duration::from_secs(120),
        heartbeat: Duration::from_secs(60),
        ..fast_config()
    };
    let (_stop, _runner) = env.start(registry, config);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let committed = Instant::now();
        let id = env.enqueue(tenant, "work", "test.ping", json!({})).await;
        let at = testkit::eventually(Duration::from_secs(20), || async {
            started
                .lock()
                .unwrap()
                .iter()
                .find(|(j, _)| *j == id)
                .map(|(_, t)| *t)
        })
        .await
        .expect("picked up well before the next poll or heartbeat");
        latencies.push(at - committed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    latencies.sort();
    eprintln!(
        "pickup latency (commit → handler start): median {:?}, max {:?}",
        latencies[5], latencies[9]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_tick_is_pushed_once_across_two_workers() {
    let env = Env::new().await;
    let registry = || Registry::default().handle("test.tick", |_job| async { Ok(()) });
    let cron = jobs::CronJob {
        name: "every-second",
        schedule: "* * * * * *",
        job: || NewJob::new("system", "test.tick", json!({})),
    };
    let first = jobs::Runner::new(
        env.pool.clone(),
        env.kdb.clone(),
        registry(),
        crate::helpers::queues(),
        fast_config(),
    )
    .cron(cron.clone());
    let second = jobs::Runner::new(
        env.pool.clone(),
        env.kdb.clone(),
        registry(),
        crate::helpers::queues(),
        fast_config(),
    )
    .cron(cron);
    let (stop_a, a) = tokio::sync::oneshot::channel::<()>();
    let (stop_b, b) = tokio::sync::oneshot::channel::<()>();
    let ta = tokio::spawn(first.run(async move {
        let _ = a.await;
    }));
    let tb = tokio::spawn(second.run(async move {
        let _ = b.await;
    }));
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let _ = (stop_a.send(()), stop_b.send(()));
    let _ = (ta.await, tb.await);

    let mut tx = SystemTx::begin(&env.kdb, Actor::System).await.unwrap();
    let (entries, ticks): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT idempotency_key) FROM apalis.jobs WHERE idempotency_key LIKE 'cron:every-second:%'",
    )
    .fetch_one(tx.conn())
    .await
    .unwrap();
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM platform_jobs WHERE kind = 'test.tick'")
            .fetch_one(tx.conn())
            .await
            .unwrap();
    assert!(ticks >= 3, "about one tick a second: {ticks}");
    assert_eq!(
        entries, ticks,
        "each tick once, though two workers ran the schedule"
    );
    assert_eq!(rows, ticks, "one job row per tick");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_stats_count_waiting_and_finished_jobs_per_queue() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    for _ in 0..3 {
        env.enqueue(tenant, "slow", "test.noop", json!({})).await;
    }
    let stats = jobs::queue_stats(&env.kdb, &["slow", "idle"])
        .await
        .unwrap();
    let slow = stats.iter().find(|s| s.queue == "slow").unwrap();
    assert_eq!((slow.queued, slow.succeeded), (3, 0));
    let idle = stats
        .iter()
        .find(|s| s.queue == "idle")
        .expect("an empty queue has stats");
    assert_eq!((idle.queued, idle.oldest_queued_seconds), (0, 0.0));
    assert!(slow.oldest_queued_seconds >= 0.0);
    let registry = Registry::default().handle("test.noop", |_job| async { Ok(()) });
    let (_stop, _runner) = env.start(registry, fast_config());
    let done = testkit::eventually(Duration::from_secs(30), || async {
        let stats = jobs::queue_stats(&env.kdb, &["slow"]).await.unwrap();
        stats
            .into_iter()
            .find(|s| s.queue == "slow" && s.succeeded == 3 && s.queued == 0)
    })
    .await;
    assert!(done.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_keeps_its_real_cause_not_a_request_id_to_quote() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    let registry = Registry::default().handle("test.sql_error", |job| async move {
        let tenant = job.tenant_id.expect("a tenant job");
        let mut tx = kernel::TenantTx::begin(&job.db, tenant, kernel::Actor::System).await?;
        // Any database failure a handler meets travels as a Problem through `?`.
        sqlx::query("SELECT 1 / 0")
            .execute(tx.conn())
            .await
            .map_err(kernel::Problem::from)?;
        Ok(())
    });
    let (_stop, _runner) = env.start(registry, fast_config());
    let id = env
        .enqueue(tenant, "work", "test.sql_error", json!({}))
        .await;
    let error = testkit::eventually(Duration::from_secs(30), || async {
        env.job(tenant, id).await.and_then(|(_, _, _, e)| e)
    })
    .await
    .expect("the run failed and recorded why");
    assert!(error.contains("division by zero"), "{error}");
    assert!(!error.contains("request id"), "{error}");
}

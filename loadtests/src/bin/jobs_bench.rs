//! The job runner end to end (issue 19; loadtests/jobs.sh runs it next to Celery):
//!
//! - `throughput --jobs N --batch 1|100 --workers 1|2`: worker processes (this binary's
//!   `worker`, our `jobs::Runner` with a no-op handler) wait on a fresh queue; the clock runs
//!   from the first push until every job has run. A push is a `SystemTx` that enqueues one
//!   job (or 100) through the outbox hook and commits, as product code does.
//! - `crash --jobs N --kill-every S`: every job is queued first; then one worker process at a
//!   time runs, is SIGKILLed S seconds after it started and is replaced at once. Right after
//!   each kill (before the next worker runs) the queue entries the dead worker held (apalis
//!   `Queued` or `Running`, locked by it) are recorded as in flight. Lost: jobs that never
//!   ran; ran twice: jobs with two runs, each of which must be in flight at some kill.
//!
//! A run is recorded by the handler as its job id and a newline, appended with one `write`
//! to a per-process log: it survives a SIGKILL right after, as Celery's side does.

use std::{
    collections::{HashMap, HashSet},
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use kernel::{Actor, Db, SystemTx};
use sqlx::PgPool;
use uuid::Uuid;

const QUEUE: &str = "bench";
const KIND: &str = "bench.noop";
/// A job id and a newline: every log line has this length.
const LINE: u64 = 37;

fn queue() -> jobs::Queue {
    // As the product's busier queues: 8 runs at once per process.
    jobs::Queue::new(QUEUE, 8, 5, Duration::from_secs(60))
}

fn runtime_url() -> anyhow::Result<String> {
    std::env::var("BALANCE_DATABASE_URL").context("BALANCE_DATABASE_URL")
}

fn owner_url() -> anyhow::Result<String> {
    std::env::var("BALANCE_DATABASE_OWNER_URL").context("BALANCE_DATABASE_OWNER_URL")
}

fn kernel_db(pool: PgPool) -> Db {
    Db::new(pool).with_hook(Arc::new(jobs::JobsHook::new(&[queue()])))
}

/// `worker <log dir> <instance>`: runs the bench queue until SIGTERM.
async fn worker(log_dir: &Path, instance: String) -> anyhow::Result<()> {
    let path = log_dir.join(format!("ran-{}.log", std::process::id()));
    let log = Arc::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?,
    );
    let registry = jobs::Registry::default().handle(KIND, move |job| {
        let log = log.clone();
        async move {
            let line = format!("{}\n", job.id);
            (&*log)
                .write_all(line.as_bytes())
                .map_err(jobs::JobError::retry)
        }
    });
    let url = runtime_url()?;
    let pool = kernel::migrate::runtime_pool(&url, 16)?;
    let config = jobs::RunnerConfig {
        instance,
        ..jobs::RunnerConfig::default()
    };
    let runner = jobs::Runner::new(
        pool.clone(),
        kernel_db(pool),
        registry,
        vec![queue()],
        config,
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    runner
        .run(async move {
            term.recv().await;
        })
        .await
        .map_err(anyhow::Error::msg)
}

/// Empties the queue, our job rows and the worker registry (as the owner).
async fn reset(owner: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "TRUNCATE platform_jobs; DELETE FROM apalis.jobs WHERE job_type = 'bench';
         DELETE FROM apalis.workers WHERE worker_type = 'bench'",
    )
    .execute(owner)
    .await?;
    Ok(())
}

struct Workers {
    exe: PathBuf,
    log_dir: PathBuf,
    children: Vec<(tokio::process::Child, String)>,
    spawned: usize,
}

impl Workers {
    fn new(log_dir: &Path) -> anyhow::Result<Workers> {
        Ok(Workers {
            exe: std::env::current_exe()?,
            log_dir: log_dir.to_path_buf(),
            children: Vec::new(),
            spawned: 0,
        })
    }

    fn spawn(&mut self) -> anyhow::Result<String> {
        self.spawned += 1;
        let instance = format!("bench-{}-{}", std::process::id(), self.spawned);
        let child = tokio::process::Command::new(&self.exe)
            .arg("worker")
            .arg(&self.log_dir)
            .arg(&instance)
            .kill_on_drop(true)
            .spawn()?;
        self.children.push((child, instance.clone()));
        Ok(instance)
    }

    /// Waits until `n` workers of this run registered with the queue.
    async fn registered(&self, owner: &PgPool, n: i64) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let seen: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM apalis.workers WHERE worker_type = 'bench' AND id LIKE $1",
            )
            .bind(format!("bench@bench-{}-%", std::process::id()))
            .fetch_one(owner)
            .await?;
            if seen >= n {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < until, "workers did not register");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop_all(&mut self) {
        for (child, _) in &mut self.children {
            if let Some(pid) = child.id() {
                // SIGTERM: let it finish and deregister.
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
        }
        for (mut child, _) in self.children.drain(..) {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// Bytes in the run logs: `LINE` per run.
fn logged(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Runs per job id, from the logs.
fn runs(dir: &Path) -> anyhow::Result<HashMap<Uuid, u32>> {
    let mut runs = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        for line in std::fs::read_to_string(entry?.path())?.lines() {
            *runs.entry(line.parse::<Uuid>()?).or_default() += 1;
        }
    }
    Ok(runs)
}

/// Pushes `ids.len()` no-op jobs in transactions of `batch`; returns their ids in order.
async fn push(db: &Db, jobs: usize, batch: usize) -> anyhow::Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(jobs);
    let mut left = jobs;
    while left > 0 {
        let n = left.min(batch);
        let mut tx = SystemTx::begin(db, Actor::System).await?;
        for _ in 0..n {
            ids.push(jobs::Enqueue::enqueue(
                &mut tx,
                jobs::NewJob::new(QUEUE, KIND, serde_json::json!({})),
            ));
        }
        tx.commit().await?;
        left -= n;
    }
    Ok(ids)
}

async fn throughput(jobs: usize, batch: usize, processes: usize) -> anyhow::Result<()> {
    let owner = sqlx::PgPool::connect(&owner_url()?).await?;
    reset(&owner).await?;
    let log_dir = tempdir()?;
    let mut workers = Workers::new(&log_dir)?;
    for _ in 0..processes {
        workers.spawn()?;
    }
    workers.registered(&owner, processes as i64).await?;
    // The producer's connection is open before the clock starts (as Celery's side).
    let db = kernel_db(kernel::migrate::runtime_pool(&runtime_url()?, 2)?);
    SystemTx::begin(&db, Actor::System).await?.commit().await?;
    let started = Instant::now();
    let producer = tokio::spawn({
        let db = db.clone();
        async move { push(&db, jobs, batch).await }
    });
    let until = started + Duration::from_secs(600);
    while logged(&log_dir) < jobs as u64 * LINE {
        anyhow::ensure!(Instant::now() < until, "jobs did not finish in 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let ids = producer.await??;
    workers.stop_all().await;
    let runs = runs(&log_dir)?;
    anyhow::ensure!(
        ids.iter().all(|id| runs.get(id) == Some(&1)) && runs.len() == jobs,
        "every job must run exactly once"
    );
    println!(
        "RESULT ours batch={batch} workers={processes} jobs={jobs} seconds={seconds:.2} jobs_per_s={:.0}",
        jobs as f64 / seconds
    );
    std::fs::remove_dir_all(&log_dir)?;
    Ok(())
}

async fn crash(jobs: usize, every: Duration) -> anyhow::Result<()> {
    let owner = sqlx::PgPool::connect(&owner_url()?).await?;
    reset(&owner).await?;
    let log_dir = tempdir()?;
    let db = kernel_db(kernel::migrate::runtime_pool(&runtime_url()?, 2)?);
    let ids = push(&db, jobs, 100).await?;
    let mut workers = Workers::new(&log_dir)?;
    let mut in_flight: HashSet<Uuid> = HashSet::new();
    let mut kills = 0;
    let started = Instant::now();
    let until = started + Duration::from_secs(600);
    loop {
        let spawned = Instant::now();
        let instance = workers.spawn()?;
        let all_ran = loop {
            if logged(&log_dir) >= jobs as u64 * LINE && runs(&log_dir)?.len() == jobs {
                break true;
            }
            if spawned.elapsed() >= every || Instant::now() >= until {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if all_ran || Instant::now() >= until {
            break;
        }
        let (mut child, _) = workers.children.pop().expect("the worker just spawned");
        child.kill().await?; // SIGKILL, and reaped
        kills += 1;
        let held: Vec<String> = sqlx::query_scalar(
            "SELECT convert_from(job, 'UTF8')::jsonb ->> 'job_id' FROM apalis.jobs
             WHERE lock_by LIKE $1 AND status IN ('Queued', 'Running')",
        )
        .bind(format!("bench@{instance}#%"))
        .fetch_all(&owner)
        .await?;
        eprintln!("kill {kills}: {} jobs in flight", held.len());
        in_flight.extend(held.iter().filter_map(|s| s.parse::<Uuid>().ok()));
    }
    let seconds = started.elapsed().as_secs_f64();
    workers.stop_all().await;
    let runs = runs(&log_dir)?;
    let lost: Vec<&Uuid> = ids.iter().filter(|id| !runs.contains_key(id)).collect();
    let twice: Vec<&Uuid> = runs
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    let within = twice.iter().all(|id| in_flight.contains(id));
    for id in &lost {
        eprintln!("lost: {id}");
    }
    for id in &twice {
        eprintln!(
            "ran twice: {id} (in flight at a kill: {})",
            in_flight.contains(id)
        );
    }
    println!(
        "RESULT ours-crash jobs={jobs} kills={kills} lost={} ran_twice={} in_flight_at_kills={} duplicates_within_in_flight={} seconds={seconds:.1}",
        lost.len(),
        twice.len(),
        in_flight.len(),
        if within { "yes" } else { "no" }
    );
    std::fs::remove_dir_all(&log_dir)?;
    Ok(())
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("balance-jobs-bench-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn flag(args: &[String], name: &str, default: usize) -> anyhow::Result<usize> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args.get(i + 1).context(name.to_string())?.parse()?),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("worker") => worker(Path::new(&args[1]), args[2].clone()).await,
        Some("throughput") => {
            throughput(
                flag(&args, "--jobs", 10_000)?,
                flag(&args, "--batch", 1)?,
                flag(&args, "--workers", 1)?,
            )
            .await
        }
        Some("crash") => {
            crash(
                flag(&args, "--jobs", 10_000)?,
                Duration::from_secs(flag(&args, "--kill-every", 2)? as u64),
            )
            .await
        }
        _ => anyhow::bail!(
            "usage: jobs_bench throughput [--jobs N] [--batch B] [--workers W] | crash [--jobs N] [--kill-every S] | worker <dir> <instance>"
        ),
    }
}

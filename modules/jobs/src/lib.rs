//! The job runner on PostgreSQL (DESIGN.md §3), built on apalis and apalis-postgres.
//!
//! - **Enqueue** with [`Enqueue::enqueue`] inside the `TenantTx` (or `SystemTx`) of the change
//!   that causes the job: it is buffered and written by [`JobsHook`] just before `COMMIT`, so
//!   a rolled-back request enqueues nothing and a committed one always has its job (outbox).
//!   Payloads carry ids only: apalis's tables have no row-level security.
//! - **Our rows** (`jobs`, tenant-owned; `platform_jobs`, global) say what the API and
//!   operators show: kind, status, attempts, progress, last error. apalis's `apalis.jobs`
//!   row is the queue entry; its payload is the envelope `{job_id, tenant_id}`.
//! - **Running** ([`Runner`]): one apalis worker per queue with its concurrency, woken by
//!   `LISTEN/NOTIFY`, heartbeats every 5 s; a worker that misses 3 has its jobs re-run by
//!   another. Each run has a timeout; a failure is retried after an exponential backoff
//!   with jitter (we move apalis's `run_at`: it has no backoff of its own) until the
//!   queue's maximum attempts, then the job is `dead` with its payload and last error kept.
//! - **Cron** ([`CronJob`]): each tick is pushed once across all workers, keyed
//!   `cron:<name>:<tick>` (a unique index; a duplicate is ignored).

mod admin;
mod http;
mod runner;
mod store;

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use kernel::{Db, TenantId};
use serde_json::Value;
use uuid::Uuid;

pub use admin::{JobFilter, JobView, get, list_all, purge_finished, retry, show};
pub use http::{PERMISSIONS, TenantJobsApi};
pub use runner::{Runner, RunnerConfig, WorkerMetrics};
pub use store::{QueueStats, queue_stats};

/// A named queue and its policy.
#[derive(Debug, Clone)]
pub struct Queue {
    pub name: &'static str,
    /// Jobs of this queue running at once in one worker process.
    pub concurrency: usize,
    /// Runs in all, the first included, before the job is `dead`.
    pub max_attempts: i32,
    /// The longest one run may take.
    pub timeout: Duration,
    /// The delay before the first retry; doubles with each attempt, with jitter.
    pub backoff: Duration,
    /// The longest delay between retries.
    pub max_backoff: Duration,
}

impl Queue {
    pub const fn new(
        name: &'static str,
        concurrency: usize,
        max_attempts: i32,
        timeout: Duration,
    ) -> Queue {
        Queue {
            name,
            concurrency,
            max_attempts,
            timeout,
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600),
        }
    }

    /// The delay before attempt `next` (2, 3, …): `backoff × 2^(next−2)`, capped, with
    /// "equal jitter" (between half and all of it) so failing jobs do not retry in step.
    pub fn backoff_before(&self, next: u32) -> Duration {
        let exp = next.saturating_sub(2).min(20);
        let full = self.backoff.saturating_mul(1 << exp).min(self.max_backoff);
        let half = full / 2;
        half + full.mul_f64(rand::random::<f64>() * 0.5)
    }
}

/// The queues of the platform.
pub fn default_queues() -> Vec<Queue> {
    vec![
        Queue::new("default", 4, 5, Duration::from_secs(60)),
        Queue::new("mail", 4, 10, Duration::from_secs(60)),
        Queue::new("imports", 2, 3, Duration::from_secs(1800)),
        Queue::new("categorize", 2, 5, Duration::from_secs(1800)),
        Queue::new("sync", 2, 8, Duration::from_secs(600)),
        Queue::new("webhooks", 4, 10, Duration::from_secs(60)),
        Queue::new("notify", 4, 8, Duration::from_secs(60)),
        Queue::new("system", 2, 3, Duration::from_secs(600)),
    ]
}

/// A job to run after the current transaction commits.
#[derive(Debug, Clone)]
pub struct NewJob {
    id: Uuid,
    queue: &'static str,
    kind: String,
    payload: Value,
    idempotency_key: Option<String>,
    delay: Option<Duration>,
}

impl NewJob {
    /// A job of `kind` (`imports.run`) on `queue` with `payload` (ids only).
    pub fn new(queue: &'static str, kind: &str, payload: Value) -> NewJob {
        NewJob {
            id: Uuid::now_v7(),
            queue,
            kind: kind.to_string(),
            payload,
            idempotency_key: None,
            delay: None,
        }
    }

    /// At most one job with this key per queue, ever: a second push is ignored.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> NewJob {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Runs no earlier than `delay` from now.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> NewJob {
        self.delay = Some(delay);
        self
    }

    /// The job's id (known before it is written).
    pub fn id(&self) -> Uuid {
        self.id
    }
}

#[derive(Debug, Default, Clone)]
struct Pending(Vec<NewJob>);

/// Enqueueing inside a transaction: the job exists only if the transaction commits.
pub trait Enqueue {
    /// Buffers `job`; returns its id.
    fn enqueue(&mut self, job: NewJob) -> Uuid;
}

impl<T: kernel::Tx> Enqueue for T {
    fn enqueue(&mut self, job: NewJob) -> Uuid {
        let id = job.id;
        self.extensions_mut()
            .get_or_insert_default::<Pending>()
            .0
            .push(job);
        id
    }
}

/// Writes the buffered jobs of a unit of work just before it commits (a kernel commit hook).
#[derive(Clone)]
pub struct JobsHook {
    queues: Arc<HashMap<&'static str, Queue>>,
}

impl JobsHook {
    pub fn new(queues: &[Queue]) -> JobsHook {
        JobsHook {
            queues: Arc::new(queues.iter().map(|q| (q.name, q.clone())).collect()),
        }
    }
}

impl kernel::CommitHook for JobsHook {
    fn before_commit<'a>(
        &'a self,
        parts: kernel::CommitParts<'a>,
    ) -> BoxFuture<'a, Result<(), kernel::Problem>> {
        Box::pin(async move {
            let Some(pending) = parts.extensions.remove::<Pending>() else {
                return Ok(());
            };
            let tenant = match parts.context.scope {
                kernel::Scope::Tenant(t) => Some(t),
                _ => None,
            };
            for job in pending.0 {
                let queue = self.queues.get(job.queue).ok_or_else(|| {
                    tracing::error!(queue = job.queue, "a job names an unknown queue");
                    kernel::Problem::internal()
                })?;
                store::insert(parts.conn, tenant, &job, queue.max_attempts).await?;
            }
            Ok(())
        })
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth retrying (a timeout, an outage).
    #[error("{0}")]
    Retry(String),
    /// Will fail the same way every time (a bad payload, a deleted resource): `dead` at once.
    #[error("{0}")]
    Fatal(String),
}

impl JobError {
    pub fn retry(e: impl std::fmt::Display) -> JobError {
        JobError::Retry(e.to_string())
    }
    pub fn fatal(e: impl std::fmt::Display) -> JobError {
        JobError::Fatal(e.to_string())
    }
}

/// An error and its causes, outermost first: `a: b: c`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl JobError {
    /// A retryable failure that records `e` with its whole cause chain.
    pub fn caused_by(e: &(dyn std::error::Error + 'static)) -> JobError {
        JobError::Retry(chain(e))
    }
}

impl From<kernel::Problem> for JobError {
    /// A job has no request id to quote: what is kept is the problem's real cause (a
    /// database error, a module's error) when it has one, else the problem itself. A client
    /// error (a deleted resource, a refused rule) fails the same way on every run, so it is
    /// fatal; throttling (429) and failures on our side are retried.
    fn from(p: kernel::Problem) -> JobError {
        let text = match p.cause() {
            Some(cause) => format!("{} {}: {}", p.status().as_u16(), p.code(), chain(cause)),
            None => p.to_string(),
        };
        let status = p.status().as_u16();
        if (400..500).contains(&status) && status != 408 && status != 429 {
            JobError::Fatal(text)
        } else {
            JobError::Retry(text)
        }
    }
}

/// What a handler gets: the job and the database.
#[derive(Clone)]
pub struct JobContext {
    pub id: Uuid,
    pub tenant_id: Option<TenantId>,
    pub kind: String,
    pub payload: Value,
    /// This run's number, from 1.
    pub attempt: u32,
    pub db: Db,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl JobContext {
    /// Reports progress (0–1) of a long job; visible at once in the job's row.
    pub async fn progress(&self, progress: f32) -> Result<(), kernel::Problem> {
        store::set_progress(&self.db, self.tenant_id, self.id, progress.clamp(0.0, 1.0)).await
    }
}

/// A job handler.
pub type Handler =
    Arc<dyn Fn(JobContext) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync>;

/// Handlers by job kind.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Handler>,
}

impl Registry {
    /// Registers the handler of `kind`.
    #[must_use]
    pub fn handle<F, Fut>(mut self, kind: &str, f: F) -> Registry
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.handlers
            .insert(kind.to_string(), Arc::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    fn get(&self, kind: &str) -> Option<&Handler> {
        self.handlers.get(kind)
    }
}

/// A job pushed by a cron schedule, once per tick across all workers.
#[derive(Clone)]
pub struct CronJob {
    /// Names the schedule in the per-tick key `cron:<name>:<tick>`.
    pub name: &'static str,
    /// Six or seven fields, seconds first (`0 0 * * * *`: hourly).
    pub schedule: &'static str,
    /// The platform job each tick pushes.
    pub job: fn() -> NewJob,
}

/// Creates apalis's schema (as the database owner) and grants the runtime group what the
/// runner needs on it. Run by `balance migrate` after the platform's own migrations.
pub async fn setup(owner_url: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(owner_url)
        .await?;
    apalis_postgres::PostgresStorage::<()>::setup(&pool)
        .await
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    let mut conn = sqlx::PgConnection::connect(owner_url).await?;
    sqlx::raw_sql(
        "GRANT USAGE ON SCHEMA apalis TO balance_runtime;
         GRANT SELECT, INSERT, UPDATE, DELETE ON apalis.jobs, apalis.workers TO balance_runtime;
         GRANT EXECUTE ON FUNCTION apalis.get_jobs(text, text, integer), apalis.generate_ulid() TO balance_runtime;",
    )
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    pool.close().await;
    Ok(())
}

/// What distinguishes a database migrated with this module's schema (for test templates).
pub const SCHEMA_SALT: &str = "apalis-postgres-1.0.0";

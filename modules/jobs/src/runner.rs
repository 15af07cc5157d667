//! The workers: one apalis worker per queue, and one task per cron schedule.

use std::{
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use apalis::prelude::*;
use apalis_postgres::{Config, PostgresStorage};
use futures_util::StreamExt;
use kernel::{Db, RequestContext, TenantId};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{family::Family, histogram::Histogram},
    registry::Registry as MetricsRegistry,
};
use serde_json::Value;
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    CronJob, JobContext, JobError, Queue, Registry,
    store::{self, Outcome},
};

/// How workers find work and prove they are alive.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Unique per process: host, pid and a random part (a restarted worker with a reused
    /// name would strand its own earlier jobs).
    pub instance: String,
    pub heartbeat: Duration,
    /// After this many missed heartbeats, another worker re-runs a worker's jobs.
    pub missed_heartbeats: usize,
    /// Polling beside LISTEN/NOTIFY: retries after a backoff and delayed jobs send no
    /// notification.
    pub poll: Duration,
    /// How long SIGTERM waits for running jobs before the process exits anyway.
    pub shutdown_timeout: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        RunnerConfig {
            instance: format!(
                "{host}-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ),
            heartbeat: Duration::from_secs(5),
            missed_heartbeats: 3,
            poll: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    queue: String,
    kind: String,
    outcome: String,
}

/// Run-duration histograms of this worker process, served on `BALANCE_ADMIN_LISTEN`.
pub struct WorkerMetrics {
    registry: Mutex<MetricsRegistry>,
    runs: Family<RunLabels, Histogram>,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        let mut registry = MetricsRegistry::default();
        let runs = Family::<RunLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0])
        });
        registry.register(
            "balance_job_run_duration_seconds",
            "Job run durations, by queue, kind and outcome",
            runs.clone(),
        );
        WorkerMetrics {
            registry: Mutex::new(registry),
            runs,
        }
    }
}

impl WorkerMetrics {
    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry.lock().expect("metrics lock"))
            .expect("writing to a String");
        out
    }
}

/// What every run of a queue needs.
struct QueueState {
    queue: Queue,
    db: Db,
    registry: Registry,
    metrics: Arc<WorkerMetrics>,
}

/// Runs the queues' workers and the cron schedules until `shutdown`.
pub struct Runner {
    pool: PgPool,
    db: Db,
    registry: Registry,
    queues: Vec<Queue>,
    crons: Vec<CronJob>,
    config: RunnerConfig,
    metrics: Arc<WorkerMetrics>,
}

impl Runner {
    /// The pool is the runtime role's; apalis's storage needs it directly (its tables have
    /// no row-level security and hold ids only). Handlers get the `Db`.
    pub fn new(
        pool: PgPool,
        db: Db,
        registry: Registry,
        queues: Vec<Queue>,
        config: RunnerConfig,
    ) -> Runner {
        Runner {
            pool,
            db,
            registry,
            queues,
            crons: Vec::new(),
            config,
            metrics: Arc::default(),
        }
    }

    /// Adds a cron schedule.
    #[must_use]
    pub fn cron(mut self, job: CronJob) -> Runner {
        self.crons.push(job);
        self
    }

    /// The run-duration histograms.
    pub fn metrics(&self) -> Arc<WorkerMetrics> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` resolves, then lets running jobs finish (up to the configured
    /// timeout) and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let mut monitor = Monitor::new()
            .should_restart(|ctx, err| {
                tracing::error!(worker = %ctx.name(), error = %err, "job worker failed; restarting it");
                true
            })
            .shutdown_timeout(self.config.shutdown_timeout);
        for queue in &self.queues {
            let state = Arc::new(QueueState {
                queue: queue.clone(),
                db: self.db.clone(),
                registry: self.registry.clone(),
                metrics: self.metrics.clone(),
            });
            let config = Config::default()
                .queue(queue.name)
                .batch_size(queue.concurrency)
                .heartbeat_interval(self.config.heartbeat)
                .missed_heartbeats(self.config.missed_heartbeats);
            let (pool, poll, instance) = (
                self.pool.clone(),
                self.config.poll,
                self.config.instance.clone(),
            );
            let name = queue.name;
            let concurrency = queue.concurrency;
            monitor = monitor.register(move |restarts| {
                let backend = PostgresStorage::<Value>::new(&pool)
                    .with_config(config.clone())
                    .with_pubsub()
                    .poll_with_interval(poll);
                WorkerBuilder::new(format!("{name}@{instance}#{restarts}"))
                    .backend(backend)
                    .data(state.clone())
                    .concurrency(concurrency)
                    .build(run_task)
            });
        }
        let crons: Vec<_> = self
            .crons
            .iter()
            .map(|c| tokio::spawn(cron_loop(self.db.clone(), c.clone())))
            .collect();
        tracing::info!(instance = %self.config.instance, queues = self.queues.len(), crons = crons.len(), "worker started");
        let result = monitor
            .run_with_signal(async move {
                shutdown.await;
                Ok(())
            })
            .await
            .map_err(|e| e.to_string());
        for c in crons {
            c.abort();
        }
        tracing::info!("worker stopped");
        result
    }
}

#[derive(serde::Deserialize)]
struct Envelope {
    job_id: Uuid,
    tenant_id: Option<Uuid>,
}

/// One run of one job.
async fn run_task(
    args: Value,
    task: TaskId,
    attempt: Attempt,
    state: Data<Arc<QueueState>>,
) -> Result<(), BoxDynError> {
    let Ok(envelope) = serde_json::from_value::<Envelope>(args) else {
        tracing::error!(task = %task, "a queue entry without a job envelope; killed");
        return Err(Box::new(AbortError::new("not a Balance job envelope")));
    };
    let tenant = envelope.tenant_id.map(TenantId::from_uuid);
    let attempt = u32::try_from(attempt.current()).unwrap_or(u32::MAX).max(1);
    let ctx = Arc::new(RequestContext::background(
        "worker",
        format!("job-{}", envelope.job_id),
    ));
    let span = tracing::info_span!("job", job = %envelope.job_id, queue = state.queue.name, attempt, kind = tracing::field::Empty);
    let run = run_job(
        state.0.clone(),
        task.to_string(),
        envelope.job_id,
        tenant,
        attempt,
    );
    ctx.scope(run.instrument(span)).await
}

async fn run_job(
    state: Arc<QueueState>,
    task: String,
    id: Uuid,
    tenant: Option<TenantId>,
    attempt: u32,
) -> Result<(), BoxDynError> {
    let queue = &state.queue;
    let row = store::start(&state.db, tenant, id, attempt as i32)
        .await
        .map_err(|e| e.to_string())?;
    let Some(row) = row else {
        tracing::error!(job = %id, "a queue entry whose job row is gone; killed");
        return Err(Box::new(AbortError::new("no such job")));
    };
    if row.status == "succeeded" || row.status == "dead" {
        // Ran to the end before a crash lost the acknowledgement: nothing to do again.
        return Ok(());
    }
    tracing::Span::current().record("kind", row.kind.as_str());
    let Some(handler) = state.registry.get(&row.kind).cloned() else {
        let error = format!("no handler for job kind `{}`", row.kind);
        store::finish(&state.db, tenant, id, &task, Outcome::Dead(&error))
            .await
            .map_err(|e| e.to_string())?;
        let labels = RunLabels {
            queue: queue.name.into(),
            kind: row.kind.clone(),
            outcome: "dead".into(),
        };
        state.metrics.runs.get_or_create(&labels).observe(0.0);
        tracing::error!(error = %error, "job dead");
        return Err(Box::new(AbortError::new(error)));
    };
    let job = JobContext {
        id,
        tenant_id: tenant,
        kind: row.kind.clone(),
        payload: row.payload,
        attempt,
        db: state.db.clone(),
    };
    let started = Instant::now();
    // Its own task: a panic fails this run instead of the worker; a timeout aborts it.
    let run = tokio::spawn(
        RequestContext::current()
            .expect("set by run_task")
            .scope(handler(job)),
    );
    let abort = run.abort_handle();
    let outcome = match tokio::time::timeout(queue.timeout, run).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(JobError::Retry(format!("the handler panicked: {join}"))),
        Err(_) => {
            abort.abort();
            Err(JobError::Retry(format!(
                "timed out after {:?}",
                queue.timeout
            )))
        }
    };
    let label = |outcome: &str| RunLabels {
        queue: queue.name.into(),
        kind: row.kind.clone(),
        outcome: outcome.into(),
    };
    match outcome {
        Ok(()) => {
            store::finish(&state.db, tenant, id, &task, Outcome::Succeeded)
                .await
                .map_err(|e| e.to_string())?;
            state
                .metrics
                .runs
                .get_or_create(&label("succeeded"))
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "job succeeded"
            );
            Ok(())
        }
        Err(JobError::Retry(error)) if (attempt as i32) < queue.max_attempts => {
            let delay = queue.backoff_before(attempt + 1);
            store::finish(&state.db, tenant, id, &task, Outcome::Failed(&error, delay))
                .await
                .map_err(|e| e.to_string())?;
            state
                .metrics
                .runs
                .get_or_create(&label("failed"))
                .observe(started.elapsed().as_secs_f64());
            tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
            Err(error.into())
        }
        Err(JobError::Retry(error)) => {
            store::finish(&state.db, tenant, id, &task, Outcome::Dead(&error))
                .await
                .map_err(|e| e.to_string())?;
            state
                .metrics
                .runs
                .get_or_create(&label("dead"))
                .observe(started.elapsed().as_secs_f64());
            tracing::error!(error = %error, "job failed for the last time; dead");
            Err(error.into())
        }
        Err(JobError::Fatal(error)) => {
            store::finish(&state.db, tenant, id, &task, Outcome::Dead(&error))
                .await
                .map_err(|e| e.to_string())?;
            state
                .metrics
                .runs
                .get_or_create(&label("dead"))
                .observe(started.elapsed().as_secs_f64());
            tracing::error!(error = %error, "job failed permanently; dead");
            Err(Box::new(AbortError::new(error)))
        }
    }
}

/// Pushes the schedule's job at every tick, keyed per tick, so each tick runs once however
/// many workers run this loop.
async fn cron_loop(db: Db, cron: CronJob) {
    let schedule = match cron::Schedule::from_str(cron.schedule) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(cron = cron.name, error = %e, "invalid cron schedule");
            return;
        }
    };
    let mut ticks = std::pin::pin!(apalis_cron::CronScheduler::new(schedule).into_stream());
    while let Some(tick) = ticks.next().await {
        let Ok(tick) = tick else { continue };
        let at = tick.get_timestamp();
        let job = (cron.job)().idempotency_key(format!("cron:{}:{at}", cron.name));
        let push = async {
            let mut tx = kernel::SystemTx::begin(&db, kernel::Actor::System).await?;
            crate::Enqueue::enqueue(&mut tx, job);
            tx.commit().await
        };
        if let Err(e) = push.await {
            tracing::error!(cron = cron.name, tick = at, error = %e, "could not push a cron tick");
        }
    }
}

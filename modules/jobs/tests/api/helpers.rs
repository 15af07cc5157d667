use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use jobs::{Enqueue, JobContext, JobError, NewJob, Queue, Registry, Runner, RunnerConfig};
use kernel::{Actor, Db, SystemTx, TenantId, TenantTx};
use sqlx::{PgPool, postgres::PgPoolOptions};
use testkit::db::TestDb;
use tokio::sync::oneshot;
use uuid::Uuid;

pub async fn migrated() -> TestDb {
    TestDb::migrated(jobs::SCHEMA_SALT, |t| async move {
        kernel::migrate::migrate(&t.owner_url, &t.runtime_url).await?;
        jobs::setup(&t.owner_url).await?;
        Ok(())
    })
    .await
    .unwrap()
}

/// Queues with test-sized timeouts and backoffs.
pub fn queues() -> Vec<Queue> {
    let mut q = Queue::new("work", 4, 3, Duration::from_millis(800));
    q.backoff = Duration::from_millis(200);
    q.max_backoff = Duration::from_secs(1);
    let mut slow = Queue::new("slow", 2, 5, Duration::from_secs(60));
    slow.backoff = Duration::from_millis(200);
    vec![q, slow, Queue::new("system", 2, 3, Duration::from_secs(10))]
}

pub fn fast_config() -> RunnerConfig {
    RunnerConfig {
        heartbeat: Duration::from_secs(1),
        poll: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(10),
        ..RunnerConfig::default()
    }
}

pub struct Env {
    pub db: TestDb,
    pub pool: PgPool,
    pub kdb: Db,
}

impl Env {
    pub async fn new() -> Env {
        let db = migrated().await;
        Self::on(db).await
    }

    pub async fn on(db: TestDb) -> Env {
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .connect(&db.runtime_url)
            .await
            .unwrap();
        let kdb = Db::new(pool.clone()).with_hook(Arc::new(jobs::JobsHook::new(&queues())));
        Env { db, pool, kdb }
    }

    pub async fn tenant(&self) -> TenantId {
        testkit::seed::tenant(&self.kdb, "T").await
    }

    /// Enqueues `kind` on `queue` in a committed TenantTx.
    pub async fn enqueue(
        &self,
        tenant: TenantId,
        queue: &'static str,
        kind: &str,
        payload: serde_json::Value,
    ) -> Uuid {
        let mut tx = TenantTx::begin(&self.kdb, tenant, Actor::System)
            .await
            .unwrap();
        let id = tx.enqueue(NewJob::new(queue, kind, payload));
        tx.commit().await.unwrap();
        id
    }

    /// Starts a runner in this process; stops when the returned sender is dropped or fired.
    pub fn start(
        &self,
        registry: Registry,
        config: RunnerConfig,
    ) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let (stop, stopped) = oneshot::channel::<()>();
        let runner = Runner::new(
            self.pool.clone(),
            self.kdb.clone(),
            registry,
            queues(),
            config,
        );
        let task = tokio::spawn(async move {
            runner
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        (stop, task)
    }

    /// `(status, attempts, progress, last_error)` of a tenant's job.
    pub async fn job(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Option<(String, i32, f32, Option<String>)> {
        let mut tx = TenantTx::begin(&self.kdb, tenant, Actor::System)
            .await
            .unwrap();
        sqlx::query_as("SELECT status, attempts, progress, last_error FROM jobs WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(tx.conn())
            .await
            .unwrap()
    }

    /// Waits (generously) until the job's status is `status`.
    pub async fn wait_status(
        &self,
        tenant: TenantId,
        id: Uuid,
        status: &str,
        deadline: Duration,
    ) -> (String, i32, f32, Option<String>) {
        if let Some(job) = testkit::eventually(deadline, || async {
            self.job(tenant, id).await.filter(|j| j.0 == status)
        })
        .await
        {
            return job;
        }
        let ours = self.job(tenant, id).await;
        let mut tx = SystemTx::begin(&self.kdb, Actor::System).await.unwrap();
        let queue: Option<(String, i32, Option<String>, String)> = sqlx::query_as(
            "SELECT status, attempts, lock_by, (run_at - now())::text FROM apalis.jobs
             WHERE convert_from(job, 'UTF8')::jsonb ->> 'job_id' = $1::text",
        )
        .bind(id)
        .fetch_optional(tx.conn())
        .await
        .unwrap();
        panic!("job {id} never reached {status}: ours {ours:?}, queue entry {queue:?}")
    }
}

/// A log of runs, shared with handlers.
#[derive(Clone, Default)]
pub struct Runs(pub Arc<Mutex<Vec<(Uuid, u32, std::time::Instant)>>>);

impl Runs {
    pub fn record(&self, job: &JobContext) {
        self.0
            .lock()
            .unwrap()
            .push((job.id, job.attempt, std::time::Instant::now()));
    }
    pub fn of(&self, id: Uuid) -> Vec<(u32, std::time::Instant)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.0 == id)
            .map(|r| (r.1, r.2))
            .collect()
    }
}

pub fn fail(msg: &str) -> Result<(), JobError> {
    Err(JobError::retry(msg))
}

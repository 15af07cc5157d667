//! SQL of the job runner: our rows, and the apalis queue entries they mirror. A tenant's
//! job has its row in `jobs`, a platform job in `platform_jobs` (the same shape); each
//! statement exists once per table, so sqlx checks both.

use std::time::Duration;

use kernel::{Actor, Db, FirstRead, Literal, Problem, Statement, SystemTx, TenantId, TenantTx};
use serde_json::{Value, json};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::NewJob;

/// The apalis payload: ids only.
pub(crate) fn envelope(job_id: Uuid, tenant: Option<TenantId>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "job_id": job_id, "tenant_id": tenant }))
        .expect("an envelope serialises")
}

/// Writes the queue entry and our row, inside the caller's transaction: one statement.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    tenant: Option<TenantId>,
    job: &NewJob,
    max_attempts: i32,
) -> Result<(), Problem> {
    // Our own insert instead of apalis's push_tasks: a duplicate idempotency key is ignored
    // (push_tasks would abort the transaction; then no entry and no row is written), and
    // run_at uses the database's clock, so the NOTIFY trigger (run_at <= now()) fires for
    // every immediate job.
    let envelope = envelope(job.id, tenant);
    let delay = job.delay.unwrap_or_default().as_secs_f64();
    let key = job.idempotency_key.as_deref();
    let written = match tenant {
        Some(tenant) => sqlx::query!(
            "WITH entry AS (
               INSERT INTO apalis.jobs (id, job_type, job, max_attempts, run_at, priority, idempotency_key)
               VALUES (apalis.generate_ulid(), $1, $2, $3, now() + make_interval(secs => $4), 0, $5)
               ON CONFLICT (job_type, idempotency_key) DO NOTHING
               RETURNING id)
             INSERT INTO jobs (tenant_id, id, queue, kind, payload, max_attempts, task_id)
             SELECT $6, $7, $1, $8, $9, $3, id FROM entry",
            job.queue,
            envelope,
            max_attempts,
            delay,
            key,
            tenant.as_uuid(),
            job.id,
            job.kind,
            job.payload,
        )
        .execute(&mut *conn)
        .await?
        .rows_affected(),
        None => sqlx::query!(
            "WITH entry AS (
               INSERT INTO apalis.jobs (id, job_type, job, max_attempts, run_at, priority, idempotency_key)
               VALUES (apalis.generate_ulid(), $1, $2, $3, now() + make_interval(secs => $4), 0, $5)
               ON CONFLICT (job_type, idempotency_key) DO NOTHING
               RETURNING id)
             INSERT INTO platform_jobs (id, queue, kind, payload, max_attempts, task_id)
             SELECT $6, $1, $7, $8, $3, id FROM entry",
            job.queue,
            envelope,
            max_attempts,
            delay,
            key,
            job.id,
            job.kind,
            job.payload,
        )
        .execute(&mut *conn)
        .await?
        .rows_affected(),
    };
    if written == 0 {
        tracing::debug!(kind = %job.kind, key = ?job.idempotency_key, "duplicate job ignored");
    }
    Ok(())
}

/// Runs `f` on the job's row in a transaction of the right scope.
pub(crate) async fn with_row<T>(
    db: &Db,
    tenant: Option<TenantId>,
    f: impl AsyncFnOnce(&mut PgConnection) -> Result<T, Problem>,
) -> Result<T, Problem> {
    match tenant {
        Some(t) => {
            let mut tx = TenantTx::begin(db, t, Actor::System).await?;
            let out = f(tx.conn()).await?;
            tx.commit().await?;
            Ok(out)
        }
        None => {
            let mut tx = SystemTx::begin(db, Actor::System).await?;
            let out = f(tx.conn()).await?;
            tx.commit().await?;
            Ok(out)
        }
    }
}

pub(crate) async fn set_progress(
    db: &Db,
    tenant: Option<TenantId>,
    id: Uuid,
    progress: f32,
) -> Result<(), Problem> {
    with_row(db, tenant, async |conn: &mut PgConnection| {
        match tenant {
            Some(t) => sqlx::query!(
                "UPDATE jobs SET progress = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2",
                t.as_uuid(),
                id,
                progress,
            )
            .execute(conn)
            .await?,
            None => sqlx::query!(
                "UPDATE platform_jobs SET progress = $2, updated_at = now() WHERE id = $1",
                id,
                progress,
            )
            .execute(conn)
            .await?,
        };
        Ok(())
    })
    .await
}

/// The row a run needs: kind, payload, status.
pub(crate) struct RunRow {
    pub kind: String,
    pub payload: Value,
    pub status: String,
}

// A run's bookkeeping rides in the round trip of `BEGIN` (kernel::FirstRead): starting a
// run is `BEGIN` + one statement, then a commit that does not wait for the disk; a success
// is `BEGIN` + one statement, then a durable commit. This module's tests run the same files
// through sqlx's macros, so the schema checks them.
static START_PLATFORM: Statement = Statement::new(include_str!("sql/start_platform.sql"));
static START_TENANT: Statement = Statement::new(include_str!("sql/start_tenant.sql"));
static SUCCEEDED_PLATFORM: Statement = Statement::new(include_str!("sql/succeeded_platform.sql"));
static SUCCEEDED_TENANT: Statement = Statement::new(include_str!("sql/succeeded_tenant.sql"));

/// Marks the job running (attempt `attempt`) unless it already ended, and returns it as it
/// was; `None` if it has no row. The mark is committed without waiting for the disk: a
/// database crash that loses it loses nothing else (the run itself is re-run from the queue).
pub(crate) async fn start(
    db: &Db,
    tenant: Option<TenantId>,
    id: Uuid,
    attempt: i32,
) -> Result<Option<RunRow>, Problem> {
    let attempt = Literal::Int(attempt.into());
    let rows = match tenant {
        Some(t) => {
            let read = FirstRead::new(
                &START_TENANT,
                &[Literal::Uuid(t.as_uuid()), Literal::Uuid(id), attempt],
            );
            let (tx, rows) = TenantTx::begin_reading(db, t, Actor::System, Some(read)).await?;
            tx.commit_unflushed().await?;
            rows
        }
        None => {
            let read = FirstRead::new(&START_PLATFORM, &[Literal::Uuid(id), attempt]);
            let (tx, rows) = SystemTx::begin_reading(db, Actor::System, Some(read)).await?;
            tx.commit_unflushed().await?;
            rows
        }
    };
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(RunRow {
        kind: row.try_get(0)?,
        payload: row.try_get(1)?,
        status: row.try_get(2)?,
    }))
}

/// Records a success: `BEGIN` and the update in one round trip, then `COMMIT`.
async fn succeeded(db: &Db, tenant: Option<TenantId>, id: Uuid) -> Result<(), Problem> {
    match tenant {
        Some(t) => {
            let read = FirstRead::new(
                &SUCCEEDED_TENANT,
                &[Literal::Uuid(t.as_uuid()), Literal::Uuid(id)],
            );
            let (tx, _) = TenantTx::begin_reading(db, t, Actor::System, Some(read)).await?;
            tx.commit().await
        }
        None => {
            let read = FirstRead::new(&SUCCEEDED_PLATFORM, &[Literal::Uuid(id)]);
            let (tx, _) = SystemTx::begin_reading(db, Actor::System, Some(read)).await?;
            tx.commit().await
        }
    }
}

/// How a run ended.
pub(crate) enum Outcome<'a> {
    Succeeded,
    /// Retried after `Duration` (the apalis entry's `run_at` moves).
    Failed(&'a str, Duration),
    Dead(&'a str),
}

/// Records the outcome on our row and, for a retry, moves the queue entry's `run_at`.
pub(crate) async fn finish(
    db: &Db,
    tenant: Option<TenantId>,
    id: Uuid,
    task_id: &str,
    outcome: Outcome<'_>,
) -> Result<(), Problem> {
    if let Outcome::Succeeded = outcome {
        return succeeded(db, tenant, id).await;
    }
    with_row(db, tenant, async |conn: &mut PgConnection| {
        let (status, error, finished) = match &outcome {
            Outcome::Succeeded => unreachable!("recorded by `succeeded`"),
            Outcome::Failed(e, _) => ("failed", Some(*e), false),
            Outcome::Dead(e) => ("dead", Some(*e), true),
        };
        let error = error.map(|e| truncate(e, 2000));
        match tenant {
            Some(t) => {
                sqlx::query!(
                    "UPDATE jobs SET status = $3, last_error = coalesce($4, last_error),
                        progress = CASE WHEN $3 = 'succeeded' THEN 1 ELSE progress END,
                        finished_at = CASE WHEN $5 THEN now() END, updated_at = now()
                 WHERE tenant_id = $1 AND id = $2",
                    t.as_uuid(),
                    id,
                    status,
                    error,
                    finished,
                )
                .execute(&mut *conn)
                .await?
            }
            None => {
                sqlx::query!(
                    "UPDATE platform_jobs SET status = $2, last_error = coalesce($3, last_error),
                        progress = CASE WHEN $2 = 'succeeded' THEN 1 ELSE progress END,
                        finished_at = CASE WHEN $4 THEN now() END, updated_at = now()
                 WHERE id = $1",
                    id,
                    status,
                    error,
                    finished,
                )
                .execute(&mut *conn)
                .await?
            }
        };
        if let Outcome::Failed(_, delay) = outcome {
            sqlx::query!(
                "UPDATE apalis.jobs SET run_at = now() + make_interval(secs => $2) WHERE id = $1",
                task_id,
                delay.as_secs_f64(),
            )
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    })
    .await
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A queue's state, computed from the database.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStats {
    pub queue: String,
    /// Waiting to run (including retries whose backoff has not elapsed).
    pub queued: i64,
    /// Seconds the oldest job that could run now has waited.
    pub oldest_queued_seconds: f64,
    pub succeeded: i64,
    /// Failed runs that will be retried.
    pub failed: i64,
    pub dead: i64,
    pub running: i64,
}

/// The state of `queues` (each one, even when empty, so dashboards and alerts always have a
/// series) and of any other queue that holds jobs, for `/metrics` at scrape time.
pub async fn queue_stats(db: &Db, queues: &[&str]) -> Result<Vec<QueueStats>, Problem> {
    let queues: Vec<String> = queues.iter().map(|q| q.to_string()).collect();
    let mut tx = SystemTx::begin(db, Actor::System).await?;
    let stats = sqlx::query_as!(
        QueueStats,
        r#"SELECT q.job_type AS "queue!",
                count(*) FILTER (WHERE j.status IN ('Pending', 'Queued') OR (j.status = 'Failed' AND j.attempts < j.max_attempts)) AS "queued!",
                coalesce(extract(epoch FROM now() - min(j.run_at) FILTER (
                    WHERE (j.status IN ('Pending', 'Queued') OR (j.status = 'Failed' AND j.attempts < j.max_attempts)) AND j.run_at <= now()
                )), 0)::float8 AS "oldest_queued_seconds!",
                count(*) FILTER (WHERE j.status = 'Done') AS "succeeded!",
                count(*) FILTER (WHERE j.status = 'Failed' AND j.attempts < j.max_attempts) AS "failed!",
                count(*) FILTER (WHERE j.status = 'Killed' OR (j.status = 'Failed' AND j.attempts >= j.max_attempts)) AS "dead!",
                count(*) FILTER (WHERE j.status = 'Running') AS "running!"
         FROM (SELECT unnest($1::text[]) AS job_type UNION SELECT DISTINCT job_type FROM apalis.jobs) q
         LEFT JOIN apalis.jobs j ON j.job_type = q.job_type
         GROUP BY q.job_type ORDER BY q.job_type"#,
        &queues,
    )
    .fetch_all(tx.conn())
    .await?;
    tx.commit().await?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    //! A run's bookkeeping as it rides in `BEGIN`'s round trip, against the same files run
    //! prepared by sqlx's macros (checked against the schema at compile time): for a
    //! platform job and a tenant's, the same answers and the same rows afterwards.

    use std::sync::Arc;

    use testkit::db::TestDb;

    use super::*;
    use crate::{Enqueue, JobsHook, NewJob, Queue};

    /// Status, attempts, progress and whether it finished, of both tables' rows.
    async fn state(db: &Db, tenant: TenantId, id: Uuid) -> (String, i32, f32, bool) {
        let mut tx = TenantTx::begin(db, tenant, Actor::System).await.unwrap();
        sqlx::query_as(
            "SELECT status, attempts, progress, finished_at IS NOT NULL FROM jobs WHERE id = $1
             UNION ALL
             SELECT status, attempts, progress, finished_at IS NOT NULL FROM platform_jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(tx.conn())
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn inlined_and_prepared_run_bookkeeping_agree() {
        let test = TestDb::migrated(crate::SCHEMA_SALT, |t| async move {
            kernel::migrate::migrate(&t.owner_url, &t.runtime_url).await?;
            crate::setup(&t.owner_url).await?;
            Ok(())
        })
        .await
        .unwrap();
        let queues = [Queue::new("work", 1, 3, std::time::Duration::from_secs(1))];
        let db = test
            .kernel_db([Arc::new(JobsHook::new(&queues)) as Arc<dyn kernel::CommitHook>])
            .await
            .unwrap();
        let tenant = testkit::seed::tenant(&db, "T").await;
        let mut ids = Vec::new();
        let mut tx = TenantTx::begin(&db, tenant, Actor::System).await.unwrap();
        for _ in 0..2 {
            ids.push(tx.enqueue(NewJob::new("work", "k", serde_json::json!({"n": 1}))));
        }
        tx.commit().await.unwrap();
        let mut tx = SystemTx::begin(&db, Actor::System).await.unwrap();
        for _ in 0..2 {
            ids.push(tx.enqueue(NewJob::new("work", "k", serde_json::json!({"n": 2}))));
        }
        tx.commit().await.unwrap();

        for (scope, inlined, prepared) in [(Some(tenant), ids[0], ids[1]), (None, ids[2], ids[3])] {
            let a = start(&db, scope, inlined, 2).await.unwrap().unwrap();
            let mut tx = TenantTx::begin(&db, tenant, Actor::System).await.unwrap();
            let b = match scope {
                Some(t) => sqlx::query_file_as!(
                    RunRow,
                    "src/sql/start_tenant.sql",
                    t.as_uuid(),
                    prepared,
                    2
                )
                .fetch_one(tx.conn())
                .await
                .unwrap(),
                None => sqlx::query_file_as!(RunRow, "src/sql/start_platform.sql", prepared, 2)
                    .fetch_one(tx.conn())
                    .await
                    .unwrap(),
            };
            tx.commit().await.unwrap();
            assert_eq!(
                (&a.kind, &a.payload, &a.status),
                (&b.kind, &b.payload, &b.status)
            );
            assert_eq!(a.status, "queued");
            assert_eq!(
                state(&db, tenant, inlined).await,
                state(&db, tenant, prepared).await
            );
            assert_eq!(
                state(&db, tenant, inlined).await,
                ("running".into(), 2, 0.0, false)
            );

            succeeded(&db, scope, inlined).await.unwrap();
            let mut tx = TenantTx::begin(&db, tenant, Actor::System).await.unwrap();
            match scope {
                Some(t) => sqlx::query_file!("src/sql/succeeded_tenant.sql", t.as_uuid(), prepared)
                    .execute(tx.conn())
                    .await
                    .unwrap(),
                None => sqlx::query_file!("src/sql/succeeded_platform.sql", prepared)
                    .execute(tx.conn())
                    .await
                    .unwrap(),
            };
            tx.commit().await.unwrap();
            assert_eq!(
                state(&db, tenant, inlined).await,
                state(&db, tenant, prepared).await
            );
            assert_eq!(
                state(&db, tenant, inlined).await,
                ("succeeded".into(), 2, 1.0, true)
            );

            // A run that already ended is returned as it is and not marked again.
            let again = start(&db, scope, inlined, 3).await.unwrap().unwrap();
            assert_eq!(again.status, "succeeded");
            assert_eq!(state(&db, tenant, inlined).await.1, 2);
            assert!(
                start(&db, scope, Uuid::now_v7(), 1)
                    .await
                    .unwrap()
                    .is_none()
            );
        }
    }
}

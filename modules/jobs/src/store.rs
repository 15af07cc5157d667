//! SQL of the job runner: our rows, and the apalis queue entries they mirror.

use std::time::Duration;

use kernel::{Actor, Db, Problem, SystemTx, TenantId, TenantTx};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::NewJob;

/// The apalis payload: ids only.
pub(crate) fn envelope(job_id: Uuid, tenant: Option<TenantId>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "job_id": job_id, "tenant_id": tenant }))
        .expect("an envelope serialises")
}

/// Writes our row and the queue entry, inside the caller's transaction.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    tenant: Option<TenantId>,
    job: &NewJob,
    max_attempts: i32,
) -> Result<(), Problem> {
    // Our own insert instead of apalis's push_tasks: a duplicate idempotency key is ignored
    // (push_tasks would abort the transaction), and run_at uses the database's clock, so
    // the NOTIFY trigger (run_at <= now()) fires for every immediate job.
    let task_id: Option<String> = sqlx::query_scalar(
        "INSERT INTO apalis.jobs (id, job_type, job, max_attempts, run_at, priority, idempotency_key)
         VALUES (apalis.generate_ulid(), $1, $2, $3, now() + make_interval(secs => $4), 0, $5)
         ON CONFLICT (job_type, idempotency_key) DO NOTHING
         RETURNING id",
    )
    .bind(job.queue)
    .bind(envelope(job.id, tenant))
    .bind(max_attempts)
    .bind(job.delay.unwrap_or_default().as_secs_f64())
    .bind(&job.idempotency_key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(task_id) = task_id else {
        tracing::debug!(kind = %job.kind, key = ?job.idempotency_key, "duplicate job ignored");
        return Ok(());
    };
    match tenant {
        Some(tenant) => sqlx::query(
            "INSERT INTO jobs (tenant_id, id, queue, kind, payload, max_attempts, task_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant),
        None => sqlx::query(
            "INSERT INTO platform_jobs (id, queue, kind, payload, max_attempts, task_id) VALUES ($1, $2, $3, $4, $5, $6)",
        ),
    }
    .bind(job.id)
    .bind(job.queue)
    .bind(&job.kind)
    .bind(&job.payload)
    .bind(max_attempts)
    .bind(task_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The table of a job's row and the condition on its key.
pub(crate) fn table(tenant: Option<TenantId>) -> (&'static str, &'static str) {
    match tenant {
        Some(_) => ("jobs", "tenant_id = $1 AND id = $2"),
        None => ("platform_jobs", "$1::uuid IS NULL AND id = $2"),
    }
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
    let (table, key) = table(tenant);
    with_row(db, tenant, async |conn: &mut PgConnection| {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET progress = $3, updated_at = now() WHERE {key}"
        )))
        .bind(tenant)
        .bind(id)
        .bind(progress)
        .execute(conn)
        .await?;
        Ok(())
    })
    .await
}

/// The row a run needs: kind, payload, status, max attempts.
pub(crate) struct RunRow {
    pub kind: String,
    pub payload: Value,
    pub status: String,
}

/// Marks the job running (attempt `attempt`) and returns it; `None` if it has no row.
pub(crate) async fn start(
    db: &Db,
    tenant: Option<TenantId>,
    id: Uuid,
    attempt: i32,
) -> Result<Option<RunRow>, Problem> {
    let (table, key) = table(tenant);
    with_row(db, tenant, async |conn: &mut PgConnection| {
        let row: Option<(String, Value, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT kind, payload, status FROM {table} WHERE {key} FOR UPDATE"
        )))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((kind, payload, status)) = row else { return Ok(None) };
        if status != "succeeded" && status != "dead" {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET status = 'running', attempts = $3, started_at = now(), updated_at = now() WHERE {key}"
            )))
            .bind(tenant)
            .bind(id)
            .bind(attempt)
            .execute(&mut *conn)
            .await?;
        }
        Ok(Some(RunRow { kind, payload, status }))
    })
    .await
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
    let (table, key) = table(tenant);
    with_row(db, tenant, async |conn: &mut PgConnection| {
        let (status, error, finished) = match &outcome {
            Outcome::Succeeded => ("succeeded", None, true),
            Outcome::Failed(e, _) => ("failed", Some(*e), false),
            Outcome::Dead(e) => ("dead", Some(*e), true),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET status = $3, last_error = coalesce($4, last_error),
                    progress = CASE WHEN $3 = 'succeeded' THEN 1 ELSE progress END,
                    finished_at = CASE WHEN $5 THEN now() END, updated_at = now()
             WHERE {key}"
        )))
        .bind(tenant)
        .bind(id)
        .bind(status)
        .bind(error.map(|e| truncate(e, 2000)))
        .bind(finished)
        .execute(&mut *conn)
        .await?;
        if let Outcome::Failed(_, delay) = outcome {
            sqlx::query(
                "UPDATE apalis.jobs SET run_at = now() + make_interval(secs => $2) WHERE id = $1",
            )
            .bind(task_id)
            .bind(delay.as_secs_f64())
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

/// Every queue's state, for `/metrics` at scrape time.
pub async fn queue_stats(db: &Db) -> Result<Vec<QueueStats>, Problem> {
    let mut tx = SystemTx::begin(db, Actor::System).await?;
    let rows: Vec<(String, i64, f64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT job_type,
                count(*) FILTER (WHERE status IN ('Pending', 'Queued') OR (status = 'Failed' AND attempts < max_attempts)),
                coalesce(extract(epoch FROM now() - min(run_at) FILTER (
                    WHERE (status IN ('Pending', 'Queued') OR (status = 'Failed' AND attempts < max_attempts)) AND run_at <= now()
                )), 0)::float8,
                count(*) FILTER (WHERE status = 'Done'),
                count(*) FILTER (WHERE status = 'Failed' AND attempts < max_attempts),
                count(*) FILTER (WHERE status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)),
                count(*) FILTER (WHERE status = 'Running')
         FROM apalis.jobs GROUP BY job_type ORDER BY job_type",
    )
    .fetch_all(tx.conn())
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(
            |(queue, queued, oldest, succeeded, failed, dead, running)| QueueStats {
                queue,
                queued,
                oldest_queued_seconds: oldest,
                succeeded,
                failed,
                dead,
                running,
            },
        )
        .collect())
}

//! What operators and the API read and do: show, list, retry, purge.

use chrono::{DateTime, Utc};
use kernel::{Actor, Db, Problem, SystemTx, TenantId, TenantTx};
use poem_openapi::Object;
use serde_json::Value;
use uuid::Uuid;

/// A job as the API and operators see it (API.md).
#[derive(Debug, Clone, PartialEq, Object, serde::Serialize)]
#[oai(rename = "Job")]
pub struct JobView {
    pub id: Uuid,
    #[oai(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<Uuid>,
    pub queue: String,
    pub kind: String,
    /// `queued`, `running`, `succeeded`, `failed` (will be retried) or `dead`.
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    /// 0–1.
    pub progress: f32,
    #[oai(skip)]
    pub payload: Value,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job's row, in `jobs` or `platform_jobs` (the same columns).
struct Row {
    id: Uuid,
    queue: String,
    kind: String,
    status: String,
    attempts: i32,
    max_attempts: i32,
    progress: f32,
    payload: Value,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

fn view(tenant: Option<TenantId>, r: Row) -> JobView {
    JobView {
        id: r.id,
        tenant_id: tenant.map(|t| t.as_uuid()),
        queue: r.queue,
        kind: r.kind,
        status: r.status,
        attempts: r.attempts,
        max_attempts: r.max_attempts,
        progress: r.progress,
        payload: r.payload,
        last_error: r.last_error,
        created_at: r.created_at,
        finished_at: r.finished_at,
    }
}

/// A tenant's job (`GET /tenants/{tenant_id}/jobs/{id}`).
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<JobView>, Problem> {
    let tenant = tx.tenant_id();
    let row = sqlx::query_as!(
        Row,
        "SELECT id, queue, kind, status, attempts, max_attempts, progress, payload, last_error, created_at, finished_at
         FROM jobs WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
    )
    .fetch_optional(tx.conn())
    .await?;
    Ok(row.map(|r| view(Some(tenant), r)))
}

/// Which jobs an operator lists.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<String>,
    pub tenant: Option<TenantId>,
}

/// Jobs across tenants (one `TenantTx` per tenant, DESIGN.md §1) and platform jobs, newest first.
pub async fn list_all(db: &Db, filter: &JobFilter, limit: i64) -> Result<Vec<JobView>, Problem> {
    let mut out = Vec::new();
    let mut tx = SystemTx::begin(db, Actor::System).await?;
    let tenants: Vec<Uuid> = match filter.tenant {
        Some(t) => vec![t.as_uuid()],
        None => {
            sqlx::query_scalar!("SELECT id FROM tenants ORDER BY id")
                .fetch_all(tx.conn())
                .await?
        }
    };
    if filter.tenant.is_none() {
        let rows = sqlx::query_as!(
            Row,
            "SELECT id, queue, kind, status, attempts, max_attempts, progress, payload, last_error, created_at, finished_at
             FROM platform_jobs WHERE ($1::text IS NULL OR status = $1) ORDER BY created_at DESC LIMIT $2",
            filter.status.as_deref(),
            limit,
        )
        .fetch_all(tx.conn())
        .await?;
        out.extend(rows.into_iter().map(|r| view(None, r)));
    }
    tx.commit().await?;
    for tenant in tenants.into_iter().map(TenantId::from_uuid) {
        let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
        let rows = sqlx::query_as!(
            Row,
            "SELECT id, queue, kind, status, attempts, max_attempts, progress, payload, last_error, created_at, finished_at
             FROM jobs WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
             ORDER BY created_at DESC LIMIT $3",
            tenant.as_uuid(),
            filter.status.as_deref(),
            limit,
        )
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        out.extend(rows.into_iter().map(|r| view(Some(tenant), r)));
    }
    out.sort_by_key(|j| std::cmp::Reverse(j.created_at));
    out.truncate(limit as usize);
    Ok(out)
}

/// Any job by id: the queue entry's envelope names its tenant.
pub async fn show(db: &Db, id: Uuid) -> Result<Option<JobView>, Problem> {
    let mut tx = SystemTx::begin(db, Actor::System).await?;
    let platform = sqlx::query_as!(
        Row,
        "SELECT id, queue, kind, status, attempts, max_attempts, progress, payload, last_error, created_at, finished_at
         FROM platform_jobs WHERE id = $1",
        id,
    )
    .fetch_optional(tx.conn())
    .await?;
    if let Some(r) = platform {
        return Ok(Some(view(None, r)));
    }
    let tenant = sqlx::query_scalar!(
        "SELECT (convert_from(job, 'UTF8')::jsonb ->> 'tenant_id')::uuid FROM apalis.jobs
         WHERE convert_from(job, 'UTF8')::jsonb ->> 'job_id' = $1::text",
        id.to_string(),
    )
    .fetch_optional(tx.conn())
    .await?;
    tx.commit().await?;
    let Some(Some(tenant)) = tenant else {
        return Ok(None);
    };
    let mut tx = TenantTx::begin(db, TenantId::from_uuid(tenant), Actor::System).await?;
    get(&mut tx, id).await
}

/// Re-runs a dead job from its first attempt. `Ok(false)` when it is not dead.
///
/// The queue entry is re-driven only once the worker has recorded the last run's outcome
/// (apalis acknowledges asynchronously): re-driving earlier would let that late
/// acknowledgement overwrite the new run. So this waits a few seconds for it if needed, and
/// answers `409 job_busy` if it does not come.
pub async fn retry(db: &Db, id: Uuid) -> Result<bool, Problem> {
    let Some(job) = show(db, id).await? else {
        return Ok(false);
    };
    if job.status != "dead" {
        return Ok(false);
    }
    let tenant = job.tenant_id.map(TenantId::from_uuid);
    for _ in 0..40 {
        let redriven = crate::store::with_row(db, tenant, async |conn: &mut sqlx::PgConnection| {
            let task = match tenant {
                Some(t) => sqlx::query_scalar!(
                    "UPDATE jobs SET status = 'queued', attempts = 0, progress = 0, finished_at = NULL, updated_at = now()
                     WHERE tenant_id = $1 AND id = $2 AND status = 'dead' RETURNING task_id",
                    t.as_uuid(),
                    id,
                )
                .fetch_optional(&mut *conn)
                .await?,
                None => sqlx::query_scalar!(
                    "UPDATE platform_jobs SET status = 'queued', attempts = 0, progress = 0, finished_at = NULL, updated_at = now()
                     WHERE id = $1 AND status = 'dead' RETURNING task_id",
                    id,
                )
                .fetch_optional(&mut *conn)
                .await?,
            }
            .flatten();
            let redriven = sqlx::query!(
                "UPDATE apalis.jobs SET status = 'Pending', attempts = 0, run_at = now(),
                        lock_by = NULL, lock_at = NULL, done_at = NULL, last_result = NULL
                 WHERE id = $1 AND status IN ('Failed', 'Killed')",
                task,
            )
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if redriven == 0 {
                // Not acknowledged yet: roll our row back with the transaction.
                return Err(Problem::new(
                    poem::http::StatusCode::CONFLICT,
                    "job_busy",
                    "The job's last run is still being recorded",
                ));
            }
            Ok(())
        })
        .await;
        match redriven {
            Ok(()) => return Ok(true),
            Err(p) if p.code() == "job_busy" => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await
            }
            Err(p) => return Err(p),
        }
    }
    Err(Problem::new(
        poem::http::StatusCode::CONFLICT,
        "job_busy",
        "The job's last run is still being recorded",
    )
    .with_detail("Try again in a moment."))
}

/// Deletes finished jobs (of `status`, default `succeeded`) older than `age`; returns how many.
pub async fn purge_finished(
    db: &Db,
    age: std::time::Duration,
    status: Option<&str>,
) -> Result<u64, Problem> {
    let status = status.unwrap_or("succeeded");
    let seconds = age.as_secs_f64();
    let mut purged = 0;
    let mut tx = SystemTx::begin(db, Actor::System).await?;
    let tenants = sqlx::query_scalar!("SELECT id FROM tenants")
        .fetch_all(tx.conn())
        .await?;
    let tasks = sqlx::query_scalar!(
        "DELETE FROM platform_jobs WHERE status = $1 AND finished_at < now() - make_interval(secs => $2)
         RETURNING task_id",
        status,
        seconds,
    )
    .fetch_all(tx.conn())
    .await?;
    purged += tasks.len() as u64;
    delete_tasks(tx.conn(), tasks).await?;
    tx.commit().await?;
    for tenant in tenants.into_iter().map(TenantId::from_uuid) {
        let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
        let tasks = sqlx::query_scalar!(
            "DELETE FROM jobs WHERE tenant_id = $1 AND status = $2 AND finished_at < now() - make_interval(secs => $3)
             RETURNING task_id",
            tenant.as_uuid(),
            status,
            seconds,
        )
        .fetch_all(tx.conn())
        .await?;
        purged += tasks.len() as u64;
        delete_tasks(tx.conn(), tasks).await?;
        tx.commit().await?;
    }
    Ok(purged)
}

async fn delete_tasks(
    conn: &mut sqlx::PgConnection,
    tasks: Vec<Option<String>>,
) -> Result<(), Problem> {
    let ids: Vec<String> = tasks.into_iter().flatten().collect();
    if !ids.is_empty() {
        sqlx::query!("DELETE FROM apalis.jobs WHERE id = ANY($1)", &ids)
            .execute(conn)
            .await?;
    }
    Ok(())
}

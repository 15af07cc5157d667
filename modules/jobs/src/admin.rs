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

type Row = (
    Uuid,
    String,
    String,
    String,
    i32,
    i32,
    f32,
    Value,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);
const COLUMNS: &str = "id, queue, kind, status, attempts, max_attempts, progress, payload, last_error, created_at, finished_at";

fn view(tenant: Option<TenantId>, r: Row) -> JobView {
    JobView {
        id: r.0,
        tenant_id: tenant.map(|t| t.as_uuid()),
        queue: r.1,
        kind: r.2,
        status: r.3,
        attempts: r.4,
        max_attempts: r.5,
        progress: r.6,
        payload: r.7,
        last_error: r.8,
        created_at: r.9,
        finished_at: r.10,
    }
}

/// A tenant's job (`GET /tenants/{tenant_id}/jobs/{id}`).
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<JobView>, Problem> {
    let tenant = tx.tenant_id();
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM jobs WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant)
    .bind(id)
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
            sqlx::query_scalar("SELECT id FROM tenants ORDER BY id")
                .fetch_all(tx.conn())
                .await?
        }
    };
    if filter.tenant.is_none() {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM platform_jobs WHERE ($1::text IS NULL OR status = $1) ORDER BY created_at DESC LIMIT $2"
        )))
        .bind(&filter.status)
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        out.extend(rows.into_iter().map(|r| view(None, r)));
    }
    tx.commit().await?;
    for tenant in tenants.into_iter().map(TenantId::from_uuid) {
        let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
             ORDER BY created_at DESC LIMIT $3"
        )))
        .bind(tenant)
        .bind(&filter.status)
        .bind(limit)
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
    let platform: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM platform_jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(tx.conn())
    .await?;
    if let Some(r) = platform {
        return Ok(Some(view(None, r)));
    }
    let tenant: Option<Option<Uuid>> = sqlx::query_scalar(
        "SELECT (convert_from(job, 'UTF8')::jsonb ->> 'tenant_id')::uuid FROM apalis.jobs
         WHERE convert_from(job, 'UTF8')::jsonb ->> 'job_id' = $1::text",
    )
    .bind(id)
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
    let (table, key) = crate::store::table(tenant);
    for _ in 0..40 {
        let redriven = crate::store::with_row(db, tenant, async |conn: &mut sqlx::PgConnection| {
            let task: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET status = 'queued', attempts = 0, progress = 0, finished_at = NULL, updated_at = now()
                 WHERE {key} AND status = 'dead' RETURNING task_id"
            )))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
            let redriven = sqlx::query(
                "UPDATE apalis.jobs SET status = 'Pending', attempts = 0, run_at = now(),
                        lock_by = NULL, lock_at = NULL, done_at = NULL, last_result = NULL
                 WHERE id = $1 AND status IN ('Failed', 'Killed')",
            )
            .bind(task)
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
    let tenants: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM tenants")
        .fetch_all(tx.conn())
        .await?;
    let tasks: Vec<Option<String>> = sqlx::query_scalar(
        "DELETE FROM platform_jobs WHERE status = $1 AND finished_at < now() - make_interval(secs => $2) RETURNING task_id",
    )
    .bind(status)
    .bind(seconds)
    .fetch_all(tx.conn())
    .await?;
    purged += tasks.len() as u64;
    delete_tasks(tx.conn(), tasks).await?;
    tx.commit().await?;
    for tenant in tenants.into_iter().map(TenantId::from_uuid) {
        let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
        let tasks: Vec<Option<String>> = sqlx::query_scalar(
            "DELETE FROM jobs WHERE tenant_id = $1 AND status = $2 AND finished_at < now() - make_interval(secs => $3)
             RETURNING task_id",
        )
        .bind(tenant)
        .bind(status)
        .bind(seconds)
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
        sqlx::query("DELETE FROM apalis.jobs WHERE id = ANY($1)")
            .bind(&ids)
            .execute(conn)
            .await?;
    }
    Ok(())
}

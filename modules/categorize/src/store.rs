//! SQL only: the categorization's tables, every statement naming its tenant.

use chrono::{DateTime, NaiveDate, Utc};
use kernel::TenantId;
use sqlx::PgConnection;
use uuid::Uuid;

pub(crate) struct RuleRow {
    pub id: Uuid,
    pub name: String,
    pub position: i32,
    pub enabled: bool,
    pub conditions: serde_json::Value,
    pub actions: serde_json::Value,
    pub hits: i64,
    pub last_hit_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The tenant's rules in their order.
pub(crate) async fn rules(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<RuleRow>, sqlx::Error> {
    sqlx::query_as!(
        RuleRow,
        "SELECT id, name, position, enabled, conditions, actions, hits, last_hit_at, version,
                created_at, updated_at
         FROM categorization_rules WHERE tenant_id = $1 ORDER BY position, id",
        tenant.as_uuid(),
    )
    .fetch_all(conn)
    .await
}

pub(crate) async fn rule(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<RuleRow>, sqlx::Error> {
    sqlx::query_as!(
        RuleRow,
        "SELECT id, name, position, enabled, conditions, actions, hits, last_hit_at, version,
                created_at, updated_at
         FROM categorization_rules WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
    )
    .fetch_optional(conn)
    .await
}

/// The position after the last rule's.
pub(crate) async fn next_position(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<i32, sqlx::Error> {
    let last = sqlx::query_scalar!(
        "SELECT max(position) FROM categorization_rules WHERE tenant_id = $1",
        tenant.as_uuid(),
    )
    .fetch_one(conn)
    .await?;
    Ok(last.map_or(10, |p| p.saturating_add(10)))
}

pub(crate) struct NewRuleRow<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub position: i32,
    pub enabled: bool,
    pub conditions: serde_json::Value,
    pub actions: serde_json::Value,
}

pub(crate) async fn insert_rule(
    conn: &mut PgConnection,
    tenant: TenantId,
    r: NewRuleRow<'_>,
) -> Result<RuleRow, sqlx::Error> {
    sqlx::query_as!(
        RuleRow,
        "INSERT INTO categorization_rules (tenant_id, id, name, position, enabled, conditions, actions)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING id, name, position, enabled, conditions, actions, hits, last_hit_at, version,
                   created_at, updated_at",
        tenant.as_uuid(),
        r.id,
        r.name,
        r.position,
        r.enabled,
        r.conditions,
        r.actions,
    )
    .fetch_one(conn)
    .await
}

pub(crate) async fn update_rule(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    r: NewRuleRow<'_>,
) -> Result<RuleRow, sqlx::Error> {
    sqlx::query_as!(
        RuleRow,
        "UPDATE categorization_rules
         SET name = $3, position = $4, enabled = $5, conditions = $6, actions = $7,
             version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND id = $2
         RETURNING id, name, position, enabled, conditions, actions, hits, last_hit_at, version,
                   created_at, updated_at",
        tenant.as_uuid(),
        id,
        r.name,
        r.position,
        r.enabled,
        r.conditions,
        r.actions,
    )
    .fetch_one(conn)
    .await
}

pub(crate) async fn delete_rule(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM categorization_rules WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Adds each rule's hits of a batch, and when.
pub(crate) async fn record_hits(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[Uuid],
    hits: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE categorization_rules r SET hits = r.hits + u.hits, last_hit_at = now()
         FROM unnest($2::uuid[], $3::int8[]) AS u (id, hits)
         WHERE r.tenant_id = $1 AND r.id = u.id",
        tenant.as_uuid(),
        ids,
        hits,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) struct ApprovalRow {
    pub id: Uuid,
    pub transaction_id: Uuid,
    pub account_id: Uuid,
    pub category_id: Uuid,
    pub source: String,
    pub confidence: f64,
    pub reasoning: String,
    pub neighbours: Option<serde_json::Value>,
    pub model: Option<String>,
    pub status: String,
    pub decided_category_id: Option<Uuid>,
    pub decided_by: Option<Uuid>,
    pub decided_at: Option<DateTime<Utc>>,
    pub resolved_by_rule: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// New approvals, in one statement; a transaction that has one waiting keeps it.
pub(crate) struct NewApprovals {
    pub ids: Vec<Uuid>,
    pub transaction_ids: Vec<Uuid>,
    pub account_ids: Vec<Uuid>,
    pub category_ids: Vec<Uuid>,
    pub sources: Vec<String>,
    pub confidences: Vec<f64>,
    pub reasonings: Vec<String>,
    pub neighbours: Vec<Option<serde_json::Value>>,
    pub models: Vec<Option<String>>,
}

pub(crate) async fn insert_approvals(
    conn: &mut PgConnection,
    tenant: TenantId,
    a: &NewApprovals,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO approvals (tenant_id, id, transaction_id, account_id, category_id, source,
                               confidence, reasoning, neighbours, model, status)
         SELECT $1, u.id, u.transaction_id, u.account_id, u.category_id, u.source, u.confidence,
                u.reasoning, u.neighbours, u.model, 'pending'
         FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], $7::float8[],
                     $8::text[], $9::jsonb[], $10::text[])
              AS u (id, transaction_id, account_id, category_id, source, confidence, reasoning,
                    neighbours, model)
         ON CONFLICT (tenant_id, transaction_id) WHERE status = 'pending' DO NOTHING
         RETURNING id",
        tenant.as_uuid(),
        &a.ids,
        &a.transaction_ids,
        &a.account_ids,
        &a.category_ids,
        &a.sources,
        &a.confidences,
        &a.reasonings,
        &a.neighbours as &[Option<serde_json::Value>],
        &a.models as &[Option<String>],
    )
    .fetch_all(conn)
    .await
}

/// Those of `transaction_ids` with an approval waiting.
pub(crate) async fn waiting_among(
    conn: &mut PgConnection,
    tenant: TenantId,
    transaction_ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT transaction_id FROM approvals
         WHERE tenant_id = $1 AND status = 'pending' AND transaction_id = ANY($2)",
        tenant.as_uuid(),
        transaction_ids,
    )
    .fetch_all(conn)
    .await
}

/// A page of approvals in `status`, newest first.
pub(crate) async fn approvals(
    conn: &mut PgConnection,
    tenant: TenantId,
    status: &str,
    (at, id): (Option<DateTime<Utc>>, Option<Uuid>),
    limit: i64,
) -> Result<Vec<ApprovalRow>, sqlx::Error> {
    sqlx::query_as!(
        ApprovalRow,
        "SELECT id, transaction_id, account_id, category_id, source, confidence, reasoning,
                neighbours, model, status, decided_category_id, decided_by, decided_at,
                resolved_by_rule, created_at
         FROM approvals
         WHERE tenant_id = $1 AND status = $2
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
         ORDER BY created_at DESC, id DESC LIMIT $5",
        tenant.as_uuid(),
        status,
        at,
        id,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// Every waiting approval (a new rule looks for those it resolves).
pub(crate) async fn all_waiting(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<ApprovalRow>, sqlx::Error> {
    sqlx::query_as!(
        ApprovalRow,
        "SELECT id, transaction_id, account_id, category_id, source, confidence, reasoning,
                neighbours, model, status, decided_category_id, decided_by, decided_at,
                resolved_by_rule, created_at
         FROM approvals WHERE tenant_id = $1 AND status = 'pending'
         ORDER BY created_at, id",
        tenant.as_uuid(),
    )
    .fetch_all(conn)
    .await
}

pub(crate) async fn lock_approval(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<ApprovalRow>, sqlx::Error> {
    sqlx::query_as!(
        ApprovalRow,
        "SELECT id, transaction_id, account_id, category_id, source, confidence, reasoning,
                neighbours, model, status, decided_category_id, decided_by, decided_at,
                resolved_by_rule, created_at
         FROM approvals WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        tenant.as_uuid(),
        id,
    )
    .fetch_optional(conn)
    .await
}

/// The waiting approval of a transaction, if any.
pub(crate) async fn waiting_of(
    conn: &mut PgConnection,
    tenant: TenantId,
    transaction_id: Uuid,
) -> Result<Option<ApprovalRow>, sqlx::Error> {
    sqlx::query_as!(
        ApprovalRow,
        "SELECT id, transaction_id, account_id, category_id, source, confidence, reasoning,
                neighbours, model, status, decided_category_id, decided_by, decided_at,
                resolved_by_rule, created_at
         FROM approvals WHERE tenant_id = $1 AND transaction_id = $2 AND status = 'pending'",
        tenant.as_uuid(),
        transaction_id,
    )
    .fetch_optional(conn)
    .await
}

/// Closes approvals: a person's decision, or a rule's (`rule` set).
pub(crate) async fn close_approvals(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[Uuid],
    status: &str,
    category: Option<Uuid>,
    by: Option<Uuid>,
    rule: Option<Uuid>,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE approvals
         SET status = $3, decided_category_id = coalesce($4, category_id), decided_by = $5,
             decided_at = now(), resolved_by_rule = $6
         WHERE tenant_id = $1 AND id = ANY($2) AND status = 'pending'",
        tenant.as_uuid(),
        ids,
        status,
        category,
        by,
        rule,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Closes the waiting approvals of transactions decided by other means (a rule of a run,
/// a person's edit): they no longer wait.
pub(crate) async fn resolve_for(
    conn: &mut PgConnection,
    tenant: TenantId,
    transaction_ids: &[Uuid],
    rule: Option<Uuid>,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE approvals SET status = 'resolved', decided_at = now(), resolved_by_rule = $3
         WHERE tenant_id = $1 AND status = 'pending' AND transaction_id = ANY($2)",
        tenant.as_uuid(),
        transaction_ids,
        rule,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

pub(crate) struct SettingsRow {
    pub approval_threshold: f64,
    pub llm_enabled: bool,
    pub version: i64,
}

pub(crate) async fn settings(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Option<SettingsRow>, sqlx::Error> {
    sqlx::query_as!(
        SettingsRow,
        "SELECT approval_threshold, llm_enabled, version
         FROM categorization_settings WHERE tenant_id = $1",
        tenant.as_uuid(),
    )
    .fetch_optional(conn)
    .await
}

pub(crate) async fn put_settings(
    conn: &mut PgConnection,
    tenant: TenantId,
    approval_threshold: f64,
    llm_enabled: bool,
) -> Result<SettingsRow, sqlx::Error> {
    sqlx::query_as!(
        SettingsRow,
        "INSERT INTO categorization_settings (tenant_id, approval_threshold, llm_enabled, version)
         VALUES ($1, $2, $3, 2)
         ON CONFLICT (tenant_id) DO UPDATE
         SET approval_threshold = $2, llm_enabled = $3,
             version = categorization_settings.version + 1, updated_at = now()
         RETURNING approval_threshold, llm_enabled, version",
        tenant.as_uuid(),
        approval_threshold,
        llm_enabled,
    )
    .fetch_one(conn)
    .await
}

pub(crate) async fn calls_on(
    conn: &mut PgConnection,
    tenant: TenantId,
    day: NaiveDate,
) -> Result<i64, sqlx::Error> {
    let calls = sqlx::query_scalar!(
        "SELECT calls FROM llm_usage WHERE tenant_id = $1 AND day = $2",
        tenant.as_uuid(),
        day,
    )
    .fetch_optional(conn)
    .await?;
    Ok(calls.map_or(0, i64::from))
}

/// Takes one call of the day's budget; false when it is spent. Atomic, so concurrent runs
/// of one tenant never exceed it together.
pub(crate) async fn take_call(
    conn: &mut PgConnection,
    tenant: TenantId,
    day: NaiveDate,
    budget: i32,
) -> Result<bool, sqlx::Error> {
    let taken = sqlx::query_scalar!(
        "INSERT INTO llm_usage (tenant_id, day, calls) VALUES ($1, $2, 1)
         ON CONFLICT (tenant_id, day) DO UPDATE SET calls = llm_usage.calls + 1
         WHERE llm_usage.calls < $3
         RETURNING calls",
        tenant.as_uuid(),
        day,
        budget,
    )
    .fetch_optional(conn)
    .await?;
    Ok(taken.is_some_and(|c| c <= budget))
}

#[derive(Clone)]
pub(crate) struct CachedRow {
    pub merchant_key: String,
    pub category_id: Option<Uuid>,
    pub confidence: f64,
    pub reason: String,
    pub model: String,
}

pub(crate) async fn cached(
    conn: &mut PgConnection,
    tenant: TenantId,
    keys: &[String],
) -> Result<Vec<CachedRow>, sqlx::Error> {
    sqlx::query_as!(
        CachedRow,
        "SELECT merchant_key, category_id, confidence, reason, model
         FROM llm_cache WHERE tenant_id = $1 AND merchant_key = ANY($2)",
        tenant.as_uuid(),
        keys,
    )
    .fetch_all(conn)
    .await
}

pub(crate) async fn cache(
    conn: &mut PgConnection,
    tenant: TenantId,
    row: &CachedRow,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO llm_cache (tenant_id, merchant_key, category_id, confidence, reason, model)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id, merchant_key) DO UPDATE
         SET category_id = $3, confidence = $4, reason = $5, model = $6, created_at = now()",
        tenant.as_uuid(),
        row.merchant_key,
        row.category_id,
        row.confidence,
        row.reason,
        row.model,
    )
    .execute(conn)
    .await?;
    Ok(())
}

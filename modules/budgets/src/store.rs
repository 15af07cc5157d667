//! The budgets module's SQL: `budgets` and `budget_thresholds`. One read-only read outside
//! them (docs/ARCHITECTURE.md, "Who owns which table"): today's date in the tenant's time
//! zone, from `tenants.time_zone`.

use chrono::{DateTime, NaiveDate, Utc};
use kernel::TenantId;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::Budget;

pub(crate) struct NewBudgetRow<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub category_id: Option<Uuid>,
    pub include_children: bool,
    pub account_ids: Option<&'a [Uuid]>,
    pub period: &'a str,
    pub anchor: NaiveDate,
    pub amount: i64,
    pub currency: &'a str,
    pub rollover: bool,
    pub thresholds: &'a [i32],
    pub created_by: Option<Uuid>,
}

pub(crate) async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    b: NewBudgetRow<'_>,
) -> Result<Budget, sqlx::Error> {
    sqlx::query_as!(
        Budget,
        r#"INSERT INTO budgets (tenant_id, id, name, category_id, include_children, account_ids,
               period, anchor, amount, currency, rollover, thresholds, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
           RETURNING id, name, category_id, include_children, account_ids, period,
                     anchor AS start_date, amount, currency, rollover, thresholds, version, created_at"#,
        tenant.as_uuid(),
        b.id,
        b.name,
        b.category_id,
        b.include_children,
        b.account_ids,
        b.period,
        b.anchor,
        b.amount,
        b.currency,
        b.rollover,
        b.thresholds,
        b.created_by,
    )
    .fetch_one(conn)
    .await
}

pub(crate) async fn get(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    lock: bool,
) -> Result<Option<Budget>, sqlx::Error> {
    if lock {
        sqlx::query_as!(
            Budget,
            r#"SELECT id, name, category_id, include_children, account_ids, period,
                      anchor AS start_date, amount, currency, rollover, thresholds, version, created_at
               FROM budgets WHERE tenant_id = $1 AND id = $2 FOR UPDATE"#,
            tenant.as_uuid(),
            id,
        )
        .fetch_optional(conn)
        .await
    } else {
        sqlx::query_as!(
            Budget,
            r#"SELECT id, name, category_id, include_children, account_ids, period,
                      anchor AS start_date, amount, currency, rollover, thresholds, version, created_at
               FROM budgets WHERE tenant_id = $1 AND id = $2"#,
            tenant.as_uuid(),
            id,
        )
        .fetch_optional(conn)
        .await
    }
}

pub(crate) async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    (at, id): (Option<DateTime<Utc>>, Option<Uuid>),
    limit: i64,
) -> Result<Vec<Budget>, sqlx::Error> {
    sqlx::query_as!(
        Budget,
        r#"SELECT id, name, category_id, include_children, account_ids, period,
                  anchor AS start_date, amount, currency, rollover, thresholds, version, created_at
           FROM budgets
           WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
           ORDER BY created_at DESC, id DESC LIMIT $4"#,
        tenant.as_uuid(),
        at,
        id,
        limit,
    )
    .fetch_all(conn)
    .await
}

pub(crate) async fn all(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<Budget>, sqlx::Error> {
    list(conn, tenant, (None, None), i64::MAX).await
}

pub(crate) async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    b: &Budget,
) -> Result<Budget, sqlx::Error> {
    sqlx::query_as!(
        Budget,
        r#"UPDATE budgets SET name = $3, category_id = $4, include_children = $5, account_ids = $6,
               period = $7, anchor = $8, amount = $9, currency = $10, rollover = $11, thresholds = $12,
               version = version + 1, updated_at = now()
           WHERE tenant_id = $1 AND id = $2
           RETURNING id, name, category_id, include_children, account_ids, period,
                     anchor AS start_date, amount, currency, rollover, thresholds, version, created_at"#,
        tenant.as_uuid(),
        b.id,
        b.name,
        b.category_id,
        b.include_children,
        b.account_ids.as_deref(),
        b.period,
        b.start_date,
        b.amount,
        b.currency,
        b.rollover,
        &b.thresholds,
    )
    .fetch_one(conn)
    .await
}

pub(crate) async fn delete(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "DELETE FROM budgets WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Today in the tenant's time zone.
pub(crate) async fn today(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<NaiveDate, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT (now() AT TIME ZONE time_zone)::date AS "today!" FROM tenants WHERE id = $1"#,
        tenant.as_uuid()
    )
    .fetch_one(conn)
    .await
}

#[derive(Debug, Clone)]
pub(crate) struct ThresholdRow {
    pub threshold: i32,
    pub crossed_at: DateTime<Utc>,
    pub spent: i64,
    pub armed: bool,
}

pub(crate) async fn thresholds(
    conn: &mut PgConnection,
    tenant: TenantId,
    budget: Uuid,
    period_start: NaiveDate,
) -> Result<Vec<ThresholdRow>, sqlx::Error> {
    sqlx::query_as!(
        ThresholdRow,
        "SELECT threshold, crossed_at, spent, armed FROM budget_thresholds
         WHERE tenant_id = $1 AND budget_id = $2 AND period_start = $3 ORDER BY threshold",
        tenant.as_uuid(),
        budget,
        period_start,
    )
    .fetch_all(conn)
    .await
}

/// Marks a threshold crossed (a first crossing, or again after a re-arm).
pub(crate) async fn cross(
    conn: &mut PgConnection,
    tenant: TenantId,
    budget: Uuid,
    period_start: NaiveDate,
    threshold: i32,
    spent: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO budget_thresholds (tenant_id, budget_id, period_start, threshold, crossed_at, spent, armed)
         VALUES ($1, $2, $3, $4, now(), $5, false)
         ON CONFLICT (tenant_id, budget_id, period_start, threshold)
         DO UPDATE SET crossed_at = now(), spent = EXCLUDED.spent, armed = false",
        tenant.as_uuid(),
        budget,
        period_start,
        threshold,
        spent,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Re-arms a crossed threshold: a correction took spending back below it.
pub(crate) async fn rearm(
    conn: &mut PgConnection,
    tenant: TenantId,
    budget: Uuid,
    period_start: NaiveDate,
    threshold: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE budget_thresholds SET armed = true
         WHERE tenant_id = $1 AND budget_id = $2 AND period_start = $3 AND threshold = $4",
        tenant.as_uuid(),
        budget,
        period_start,
        threshold,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn live_tenants(conn: &mut PgConnection) -> Result<Vec<TenantId>, sqlx::Error> {
    Ok(
        sqlx::query_scalar!("SELECT id FROM tenants WHERE deleted_at IS NULL ORDER BY id")
            .fetch_all(conn)
            .await?
            .into_iter()
            .map(TenantId::from_uuid)
            .collect(),
    )
}

/// The tenant's base currency (`tenants.currency`, tenancy's column, read here as a
/// budget's default).
pub(crate) async fn base_currency(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT currency FROM tenants WHERE id = $1",
        tenant.as_uuid()
    )
    .fetch_one(conn)
    .await
}

#[derive(Debug, Clone)]
pub(crate) struct GoalRow {
    pub id: Uuid,
    pub name: String,
    pub target_amount: i64,
    pub currency: String,
    pub target_date: Option<NaiveDate>,
    pub account_id: Option<Uuid>,
    pub reached_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
}

pub(crate) async fn insert_goal(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    g: &crate::goals::NewGoal,
    created_by: Option<Uuid>,
) -> Result<GoalRow, sqlx::Error> {
    sqlx::query_as!(
        GoalRow,
        "INSERT INTO goals (tenant_id, id, name, target_amount, currency, target_date, account_id, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id, name, target_amount, currency, target_date, account_id, reached_at, version, created_at",
        tenant.as_uuid(),
        id,
        g.name.trim(),
        g.target_amount,
        g.currency.code(),
        g.target_date,
        g.account_id,
        created_by,
    )
    .fetch_one(conn)
    .await
}

pub(crate) async fn goal(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    lock: bool,
) -> Result<Option<GoalRow>, sqlx::Error> {
    if lock {
        sqlx::query_as!(
            GoalRow,
            "SELECT id, name, target_amount, currency, target_date, account_id, reached_at, version, created_at
             FROM goals WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            tenant.as_uuid(),
            id,
        )
        .fetch_optional(conn)
        .await
    } else {
        sqlx::query_as!(
            GoalRow,
            "SELECT id, name, target_amount, currency, target_date, account_id, reached_at, version, created_at
             FROM goals WHERE tenant_id = $1 AND id = $2",
            tenant.as_uuid(),
            id,
        )
        .fetch_optional(conn)
        .await
    }
}

pub(crate) async fn goals(
    conn: &mut PgConnection,
    tenant: TenantId,
    (at, id): (Option<DateTime<Utc>>, Option<Uuid>),
    limit: i64,
) -> Result<Vec<GoalRow>, sqlx::Error> {
    sqlx::query_as!(
        GoalRow,
        "SELECT id, name, target_amount, currency, target_date, account_id, reached_at, version, created_at
         FROM goals
         WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4",
        tenant.as_uuid(),
        at,
        id,
        limit,
    )
    .fetch_all(conn)
    .await
}

pub(crate) async fn update_goal(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    g: &crate::goals::NewGoal,
) -> Result<GoalRow, sqlx::Error> {
    sqlx::query_as!(
        GoalRow,
        "UPDATE goals SET name = $3, target_amount = $4, currency = $5, target_date = $6, account_id = $7,
             version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND id = $2
         RETURNING id, name, target_amount, currency, target_date, account_id, reached_at, version, created_at",
        tenant.as_uuid(),
        id,
        g.name.trim(),
        g.target_amount,
        g.currency.code(),
        g.target_date,
        g.account_id,
    )
    .fetch_one(conn)
    .await
}

pub(crate) async fn delete_goal(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "DELETE FROM goals WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

pub(crate) async fn mark_goal_reached(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"UPDATE goals SET reached_at = now() WHERE tenant_id = $1 AND id = $2 AND reached_at IS NULL
           RETURNING reached_at AS "reached_at!""#,
        tenant.as_uuid(),
        id,
    )
    .fetch_optional(conn)
    .await
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_contribution(
    conn: &mut PgConnection,
    tenant: TenantId,
    goal: Uuid,
    id: Uuid,
    date: NaiveDate,
    amount: i64,
    transaction: Option<Uuid>,
    note: Option<&str>,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "INSERT INTO goal_contributions (tenant_id, goal_id, id, date, amount, transaction_id, note)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        tenant.as_uuid(),
        goal,
        id,
        date,
        amount,
        transaction,
        note,
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// What a goal's contributions add up to, and how much of it since `since`.
pub(crate) async fn contributions(
    conn: &mut PgConnection,
    tenant: TenantId,
    goal: Uuid,
    since: NaiveDate,
) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT coalesce(sum(amount), 0)::bigint AS "all!",
                  coalesce(sum(amount) FILTER (WHERE date > $3), 0)::bigint AS "recent!"
           FROM goal_contributions WHERE tenant_id = $1 AND goal_id = $2"#,
        tenant.as_uuid(),
        goal,
        since,
    )
    .fetch_one(conn)
    .await?;
    Ok((row.all, row.recent))
}

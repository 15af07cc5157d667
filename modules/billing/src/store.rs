//! The billing module's SQL: `billing_accounts`, `billing_usage` and the global
//! `stripe_events` inbox. Read-only counts outside its tables, each for one reason
//! (docs/ARCHITECTURE.md, "Who owns which table"): members in `memberships` and live
//! connections in `bank_connections`, to check and show their limits.

use chrono::{DateTime, NaiveDate, Utc};
use kernel::TenantId;
use sqlx::PgConnection;

#[derive(Debug, Clone, Default)]
pub(crate) struct AccountRow {
    pub plan: String,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub status: Option<String>,
    pub price_id: Option<String>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub state_at: Option<DateTime<Utc>>,
    pub past_due_since: Option<DateTime<Utc>>,
    pub read_only_since: Option<DateTime<Utc>>,
    pub payment_failed_event: Option<String>,
}

impl AccountRow {
    fn free() -> AccountRow {
        AccountRow {
            plan: crate::plans::FREE.into(),
            ..AccountRow::default()
        }
    }
}

/// The tenant's billing row, locked until the transaction ends (made on first use).
pub(crate) async fn lock_account(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<AccountRow, sqlx::Error> {
    sqlx::query_as!(
        AccountRow,
        r#"INSERT INTO billing_accounts (tenant_id) VALUES ($1)
           ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id
           RETURNING plan, stripe_customer_id, stripe_subscription_id, status, price_id,
                     current_period_end, cancel_at_period_end, state_at, past_due_since,
                     read_only_since, payment_failed_event"#,
        tenant.as_uuid(),
    )
    .fetch_one(conn)
    .await
}

/// The tenant's billing row as it stands (`free` when it has none yet).
pub(crate) async fn account(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<AccountRow, sqlx::Error> {
    Ok(sqlx::query_as!(
        AccountRow,
        r#"SELECT plan, stripe_customer_id, stripe_subscription_id, status, price_id,
                  current_period_end, cancel_at_period_end, state_at, past_due_since,
                  read_only_since, payment_failed_event
           FROM billing_accounts WHERE tenant_id = $1"#,
        tenant.as_uuid(),
    )
    .fetch_optional(conn)
    .await?
    .unwrap_or_else(AccountRow::free))
}

pub(crate) async fn set_customer(
    conn: &mut PgConnection,
    tenant: TenantId,
    customer: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE billing_accounts SET stripe_customer_id = $2, updated_at = now(), version = version + 1
         WHERE tenant_id = $1",
        tenant.as_uuid(),
        customer,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes the whole state of a locked row.
pub(crate) async fn write_account(
    conn: &mut PgConnection,
    tenant: TenantId,
    row: &AccountRow,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE billing_accounts SET plan = $2, stripe_customer_id = $3, stripe_subscription_id = $4,
             status = $5, price_id = $6, current_period_end = $7, cancel_at_period_end = $8,
             state_at = $9, past_due_since = $10, read_only_since = $11,
             payment_failed_event = $12, updated_at = now(), version = version + 1
         WHERE tenant_id = $1",
        tenant.as_uuid(),
        row.plan,
        row.stripe_customer_id,
        row.stripe_subscription_id,
        row.status,
        row.price_id,
        row.current_period_end,
        row.cancel_at_period_end,
        row.state_at,
        row.past_due_since,
        row.read_only_since,
        row.payment_failed_event,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn count_members(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM memberships WHERE tenant_id = $1"#,
        tenant.as_uuid(),
    )
    .fetch_one(conn)
    .await
}

pub(crate) async fn count_connections(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM bank_connections
           WHERE tenant_id = $1 AND status <> 'disconnected'"#,
        tenant.as_uuid(),
    )
    .fetch_one(conn)
    .await
}

/// Adds `n` transactions to the month's count (the row stays locked until the transaction
/// ends) and returns the new count with the tenant's plan.
pub(crate) async fn add_transactions(
    conn: &mut PgConnection,
    tenant: TenantId,
    period: NaiveDate,
    n: i64,
) -> Result<(i64, String, bool), sqlx::Error> {
    let row = sqlx::query!(
        r#"WITH used AS (
               INSERT INTO billing_usage (tenant_id, period, transactions) VALUES ($1, $2, $3)
               ON CONFLICT (tenant_id, period)
               DO UPDATE SET transactions = billing_usage.transactions + EXCLUDED.transactions
               RETURNING transactions, crossed_at)
           SELECT used.transactions AS "transactions!", used.crossed_at IS NOT NULL AS "crossed!",
                  coalesce((SELECT plan FROM billing_accounts WHERE tenant_id = $1), 'free') AS "plan!"
           FROM used"#,
        tenant.as_uuid(),
        period,
        n,
    )
    .fetch_one(conn)
    .await?;
    Ok((row.transactions, row.plan, row.crossed))
}

pub(crate) async fn mark_crossed(
    conn: &mut PgConnection,
    tenant: TenantId,
    period: NaiveDate,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE billing_usage SET crossed_at = now() WHERE tenant_id = $1 AND period = $2",
        tenant.as_uuid(),
        period,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn month_transactions(
    conn: &mut PgConnection,
    tenant: TenantId,
    period: NaiveDate,
) -> Result<i64, sqlx::Error> {
    Ok(sqlx::query_scalar!(
        "SELECT transactions FROM billing_usage WHERE tenant_id = $1 AND period = $2",
        tenant.as_uuid(),
        period,
    )
    .fetch_optional(conn)
    .await?
    .unwrap_or(0))
}

/// A tenant whose grace ran out becomes read-only (once); returns whether it did now.
pub(crate) async fn enter_read_only(
    conn: &mut PgConnection,
    tenant: TenantId,
    grace_secs: f64,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"UPDATE billing_accounts SET read_only_since = now(), updated_at = now(), version = version + 1
           WHERE tenant_id = $1 AND read_only_since IS NULL AND past_due_since IS NOT NULL
             AND past_due_since <= now() - make_interval(secs => $2)
           RETURNING past_due_since AS "past_due_since!""#,
        tenant.as_uuid(),
        grace_secs,
    )
    .fetch_optional(conn)
    .await
}

/// The tenants with an overdue payment, for the grace sweep (tenant ids are read from the
/// global `tenants`; each tenant's row is then read in its own transaction).
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

#[derive(Debug, Clone)]
pub(crate) struct EventRow {
    pub id: String,
    pub kind: Option<String>,
    pub created: Option<DateTime<Utc>>,
    pub body: String,
    pub status: String,
}

/// Stores an event once by id; returns whether it is new.
pub(crate) async fn insert_event(
    conn: &mut PgConnection,
    id: &str,
    kind: Option<&str>,
    created: Option<DateTime<Utc>>,
    body: &str,
    status: &str,
    detail: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "INSERT INTO stripe_events (id, type, created, body, status, detail, applied_at)
         VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $5 <> 'pending' THEN now() END)
         ON CONFLICT (id) DO NOTHING",
        id,
        kind,
        created,
        body,
        status,
        detail,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn event(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<EventRow>, sqlx::Error> {
    sqlx::query_as!(
        EventRow,
        r#"SELECT id, type AS kind, created, body, status FROM stripe_events WHERE id = $1"#,
        id,
    )
    .fetch_optional(conn)
    .await
}

pub(crate) async fn finish_event(
    conn: &mut PgConnection,
    id: &str,
    status: &str,
    detail: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE stripe_events SET status = $2, detail = $3, applied_at = now() WHERE id = $1",
        id,
        status,
        detail,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The database's clock now (not the transaction's start).
pub(crate) async fn clock(conn: &mut PgConnection) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT clock_timestamp() AS "now!""#)
        .fetch_one(conn)
        .await
}

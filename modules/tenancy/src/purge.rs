//! Purging a deleted tenant after its grace period (`balance admin purge-tenant`): the one
//! path that removes tenant rows, its audit chain included, through the audit log's one
//! documented exception (a DELETE by the owner role with `balance.purge_tenant` set). It
//! connects as the owner role, so it takes a URL rather than a handle, and its statements
//! name each table of [`PURGE_ORDER`] in turn: dynamic SQL that sqlx's macros cannot check.

use kernel::TenantId;

/// How long a deleted tenant stays (read-only) before `balance admin purge-tenant` may remove it.
pub const DELETION_GRACE_DAYS: i64 = 30;

/// The tenant-owned tables, children first: what a purge deletes. The schema test checks
/// that every table with a `tenant_id` is here.
pub const PURGE_ORDER: &[&str] = &[
    "goal_contributions",
    "goals",
    "budget_thresholds",
    "budgets",
    "billing_usage",
    "billing_accounts",
    "bank_accounts",
    "bank_connections",
    "approvals",
    "categorization_rules",
    "categorization_settings",
    "llm_usage",
    "llm_cache",
    "import_rows",
    "import_chunks",
    "imports",
    "import_profiles",
    "account_import_mappings",
    "transaction_terms",
    "transaction_term_counts",
    "transaction_splits",
    "account_days",
    "transactions",
    "accounts",
    "categories",
    "event_clients",
    "audit_checkpoints",
    "events",
    "audit_heads",
    "idempotency_keys",
    "jobs",
    "api_keys",
    "invitations",
    "tenant_roles",
    "memberships",
];

/// Why a purge did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("the tenant is not deleted (or does not exist)")]
    NotDeleted,
    #[error(
        "the tenant was deleted {0} day(s) ago; the grace period is {DELETION_GRACE_DAYS} days (--force to purge now)"
    )]
    InGrace(i64),
    #[error("{0}")]
    Database(#[from] sqlx::Error),
}

/// Removes a deleted tenant's rows. Returns the number of rows removed.
pub async fn purge(owner_url: &str, tenant: TenantId, force: bool) -> Result<u64, PurgeError> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(owner_url).await?;
    #[allow(clippy::disallowed_methods)] // our own connection, no kernel handle
    let mut tx = conn.begin().await?;
    sqlx::query!(
        r#"SELECT set_config('balance.tenant_id', $1, true) AS "tenant",
                  set_config('balance.purge_tenant', $1, true) AS "purge""#,
        tenant.to_string(),
    )
    .fetch_one(&mut *tx)
    .await?;
    let age = sqlx::query_scalar!(
        "SELECT extract(epoch FROM now() - deleted_at)::float8 FROM tenants WHERE id = $1 FOR UPDATE",
        tenant.as_uuid(),
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(Some(age)) = age else {
        return Err(PurgeError::NotDeleted);
    };
    let days = (age / 86_400.0) as i64;
    if days < DELETION_GRACE_DAYS && !force {
        return Err(PurgeError::InGrace(days));
    }
    let mut removed = 0;
    for table in PURGE_ORDER {
        removed += sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE tenant_id = $1"
        )))
        .bind(tenant)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    removed += sqlx::query!("DELETE FROM tenants WHERE id = $1", tenant.as_uuid())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(removed)
}

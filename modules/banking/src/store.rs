//! SQL of `bank_connections` and `bank_accounts`; an explicit `tenant_id = $1` everywhere.

use chrono::{DateTime, Utc};
use kernel::TenantId;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub(crate) struct ConnectionRow {
    pub id: Uuid,
    pub provider: String,
    pub item_id: String,
    pub institution: Option<String>,
    pub token_ciphertext: Option<Vec<u8>>,
    pub status: String,
    pub cursor: Option<String>,
    pub last_synced_at: Option<DateTime<Utc>>,
    pub last_error_code: Option<String>,
    pub last_error_message: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub failures: i32,
    pub sync_job_id: Option<Uuid>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub disconnected_at: Option<DateTime<Utc>>,
}

pub(crate) struct NewConnectionRow<'a> {
    pub id: Uuid,
    pub provider: &'a str,
    pub item_id: &'a str,
    pub institution: Option<&'a str>,
    pub token_ciphertext: &'a [u8],
    pub created_by: Option<Uuid>,
}

/// Inserts a connection; `false` when a live one has the item already.
pub(crate) async fn insert_connection(
    conn: &mut PgConnection,
    tenant: TenantId,
    c: NewConnectionRow<'_>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "INSERT INTO bank_connections (tenant_id, id, provider, item_id, institution,
             token_ciphertext, status, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, 'active', $7)
         ON CONFLICT (tenant_id, provider, item_id) WHERE status <> 'disconnected' DO NOTHING",
        tenant.as_uuid(),
        c.id,
        c.provider,
        c.item_id,
        c.institution,
        c.token_ciphertext,
        c.created_by,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn connection(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    lock: bool,
) -> Result<Option<ConnectionRow>, sqlx::Error> {
    if lock {
        sqlx::query_as!(
            ConnectionRow,
            "SELECT id, provider, item_id, institution, token_ciphertext, status, cursor,
                    last_synced_at, last_error_code, last_error_message, last_error_at, failures,
                    sync_job_id, version, created_at, disconnected_at
               FROM bank_connections WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            tenant.as_uuid(),
            id,
        )
        .fetch_optional(conn)
        .await
    } else {
        sqlx::query_as!(
            ConnectionRow,
            "SELECT id, provider, item_id, institution, token_ciphertext, status, cursor,
                    last_synced_at, last_error_code, last_error_message, last_error_at, failures,
                    sync_job_id, version, created_at, disconnected_at
               FROM bank_connections WHERE tenant_id = $1 AND id = $2",
            tenant.as_uuid(),
            id,
        )
        .fetch_optional(conn)
        .await
    }
}

/// The live connection of a provider item (a webhook names only the item).
pub(crate) async fn connection_of_item(
    conn: &mut PgConnection,
    tenant: TenantId,
    provider: &str,
    item_id: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM bank_connections
          WHERE tenant_id = $1 AND provider = $2 AND item_id = $3 AND status <> 'disconnected'",
        tenant.as_uuid(),
        provider,
        item_id,
    )
    .fetch_optional(conn)
    .await
}

/// Connections newest first, after a keyset position.
pub(crate) async fn connections(
    conn: &mut PgConnection,
    tenant: TenantId,
    (at, id): (Option<DateTime<Utc>>, Option<Uuid>),
    limit: i64,
) -> Result<Vec<ConnectionRow>, sqlx::Error> {
    sqlx::query_as!(
        ConnectionRow,
        "SELECT id, provider, item_id, institution, token_ciphertext, status, cursor,
                last_synced_at, last_error_code, last_error_message, last_error_at, failures,
                sync_job_id, version, created_at, disconnected_at
           FROM bank_connections
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

#[derive(Debug, Clone)]
pub(crate) struct BankAccountRow {
    pub connection_id: Uuid,
    pub provider_account_id: String,
    pub account_id: Uuid,
    pub name: String,
    pub mask: Option<String>,
    pub kind: String,
    pub subtype: Option<String>,
    pub currency: String,
    pub current_balance: Option<i64>,
    pub available_balance: Option<i64>,
    pub calibrate: bool,
    pub drift: i64,
}

pub(crate) struct NewBankAccountRow<'a> {
    pub connection_id: Uuid,
    pub position: i16,
    pub provider_account_id: &'a str,
    pub account_id: Uuid,
    pub name: &'a str,
    pub mask: Option<&'a str>,
    pub kind: &'a str,
    pub subtype: Option<&'a str>,
    pub currency: &'a str,
    pub current_balance: Option<i64>,
    pub available_balance: Option<i64>,
    pub calibrate: bool,
}

pub(crate) async fn insert_bank_account(
    conn: &mut PgConnection,
    tenant: TenantId,
    a: NewBankAccountRow<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO bank_accounts (tenant_id, connection_id, provider_account_id, account_id,
             name, mask, kind, subtype, currency, current_balance, available_balance, calibrate,
             position)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        tenant.as_uuid(),
        a.connection_id,
        a.provider_account_id,
        a.account_id,
        a.name,
        a.mask,
        a.kind,
        a.subtype,
        a.currency,
        a.current_balance,
        a.available_balance,
        a.calibrate,
        a.position,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The bank accounts of some connections (those the caller's account scope shows).
pub(crate) async fn bank_accounts(
    conn: &mut PgConnection,
    tenant: TenantId,
    connections: &[Uuid],
) -> Result<Vec<BankAccountRow>, sqlx::Error> {
    sqlx::query_as!(
        BankAccountRow,
        "SELECT connection_id, provider_account_id, account_id, name, mask, kind, subtype,
                currency, current_balance, available_balance, calibrate, drift
           FROM bank_accounts WHERE tenant_id = $1 AND connection_id = ANY($2)
          ORDER BY connection_id, position",
        tenant.as_uuid(),
        connections,
    )
    .fetch_all(conn)
    .await
}

/// What a sync learnt of a bank account's balance.
pub(crate) struct Reported {
    pub current: Option<i64>,
    pub available: Option<i64>,
    pub drift: i64,
    /// Still calibrating (the bank has not sent all its history yet).
    pub calibrate: bool,
}

/// A bank account's balances after a sync.
pub(crate) async fn update_bank_account(
    conn: &mut PgConnection,
    tenant: TenantId,
    connection_id: Uuid,
    provider_account_id: &str,
    r: Reported,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE bank_accounts
            SET current_balance = $4, available_balance = $5, drift = $6, calibrate = $7,
                updated_at = now()
          WHERE tenant_id = $1 AND connection_id = $2 AND provider_account_id = $3",
        tenant.as_uuid(),
        connection_id,
        provider_account_id,
        r.current,
        r.available,
        r.drift,
        r.calibrate,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn set_sync_job(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    job: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE bank_connections SET sync_job_id = $3, updated_at = now()
          WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
        job,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// An update applied: the cursor moves, the failures end.
pub(crate) async fn mark_synced(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    cursor: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE bank_connections
            SET cursor = $3, last_synced_at = now(), status = 'active', failures = 0,
                last_error_code = NULL, last_error_message = NULL, last_error_at = NULL,
                version = version + 1, updated_at = now()
          WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
        cursor,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A failed sync: its code and message, the failures counted, the status as given.
pub(crate) async fn mark_failed(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    status: &str,
    code: &str,
    message: &str,
) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE bank_connections
            SET status = $3, last_error_code = $4, last_error_message = $5, last_error_at = now(),
                failures = failures + 1, version = version + 1, updated_at = now()
          WHERE tenant_id = $1 AND id = $2
          RETURNING failures",
        tenant.as_uuid(),
        id,
        status,
        code,
        message,
    )
    .fetch_one(conn)
    .await
}

/// Disconnected: the token is gone, the history stays.
pub(crate) async fn disconnect(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE bank_connections
            SET status = 'disconnected', token_ciphertext = NULL, disconnected_at = now(),
                sync_job_id = NULL, version = version + 1, updated_at = now()
          WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Connections whose scheduled sync is due: live, not waiting for a person, and not
/// synced since `before`.
pub(crate) async fn due(
    conn: &mut PgConnection,
    tenant: TenantId,
    before: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM bank_connections
          WHERE tenant_id = $1 AND status IN ('active', 'error')
            AND (last_synced_at IS NULL OR last_synced_at < $2)
          ORDER BY id",
        tenant.as_uuid(),
        before,
    )
    .fetch_all(conn)
    .await
}

/// A sealed token as the key rotation walks them.
pub(crate) struct SealedToken {
    pub id: Uuid,
    pub provider: String,
    pub item_id: String,
    pub token_ciphertext: Vec<u8>,
}

pub(crate) async fn tokens_not_under(
    conn: &mut PgConnection,
    tenant: TenantId,
    key_id: &[u8],
    after: Uuid,
    limit: i64,
) -> Result<Vec<SealedToken>, sqlx::Error> {
    sqlx::query_as!(
        SealedToken,
        r#"SELECT id, provider, item_id, token_ciphertext AS "token_ciphertext!"
             FROM bank_connections
            WHERE tenant_id = $1 AND id > $2 AND token_ciphertext IS NOT NULL
              AND substring(token_ciphertext from 3 for get_byte(token_ciphertext, 1)) <> $3
            ORDER BY id LIMIT $4"#,
        tenant.as_uuid(),
        after,
        key_id,
        limit,
    )
    .fetch_all(conn)
    .await
}

pub(crate) async fn reseal_token(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    old: &[u8],
    new: &[u8],
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE bank_connections SET token_ciphertext = $4
          WHERE tenant_id = $1 AND id = $2 AND token_ciphertext = $3",
        tenant.as_uuid(),
        id,
        old,
        new,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn count_tokens(
    conn: &mut PgConnection,
    tenant: TenantId,
    key_id: &[u8],
    under: bool,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM bank_connections
            WHERE tenant_id = $1 AND token_ciphertext IS NOT NULL
              AND (substring(token_ciphertext from 3 for get_byte(token_ciphertext, 1)) = $2) = $3"#,
        tenant.as_uuid(),
        key_id,
        under,
    )
    .fetch_one(conn)
    .await
}

/// The sync that just finished is no longer there to join.
pub(crate) async fn clear_sync_job(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE bank_connections SET sync_job_id = NULL WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Tenants not deleted (global `tenants`, read in a system transaction by the schedule).
pub(crate) async fn live_tenants(conn: &mut PgConnection) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!("SELECT id FROM tenants WHERE deleted_at IS NULL ORDER BY id")
        .fetch_all(conn)
        .await
}

/// Whether a tenant exists and is not deleted (global `tenants`).
pub(crate) async fn tenant_is_live(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT FROM tenants WHERE id = $1 AND deleted_at IS NULL) AS "live!""#,
        tenant.as_uuid(),
    )
    .fetch_one(conn)
    .await
}

/// The ledger accounts a connection feeds (its account scope: a caller confined to some
/// accounts sees a connection only when it sees all of them).
pub(crate) async fn set_accounts(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    accounts: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE bank_connections SET account_ids = $3 WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
        accounts,
    )
    .execute(conn)
    .await?;
    Ok(())
}

//! The ledger's SQL: compile-checked statements into named rows, each with an explicit
//! `tenant_id = $1` beside the row-level policies (and, for account-owned tables, under the
//! account scope the access decision set).

use chrono::{DateTime, NaiveDate, Utc};
use kernel::{Currency, TenantId};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Account, AccountKind, Category, CategoryKind, DayBalance};

pub(crate) type After = (Option<DateTime<Utc>>, Option<Uuid>);

pub(crate) struct AccountRow {
    id: Uuid,
    name: String,
    kind: String,
    currency: String,
    opening_balance: i64,
    opening_date: NaiveDate,
    iban: Option<String>,
    institution: Option<String>,
    balance: i64,
    pending_balance: i64,
    reported_balance: Option<i64>,
    reported_at: Option<DateTime<Utc>>,
    archived_at: Option<DateTime<Utc>>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<AccountRow> for Account {
    fn from(r: AccountRow) -> Account {
        Account {
            id: r.id,
            name: r.name,
            kind: AccountKind::from_db(&r.kind),
            currency: Currency::parse(&r.currency).expect("the table holds ISO 4217 codes"),
            opening_balance: r.opening_balance,
            opening_date: r.opening_date,
            iban: r.iban,
            institution: r.institution,
            balance: r.balance,
            pending_balance: r.pending_balance,
            reported_balance: r.reported_balance,
            reported_at: r.reported_at,
            archived_at: r.archived_at,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// An account to store.
pub(crate) struct NewAccountRow<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub kind: &'a str,
    pub currency: &'a str,
    pub opening_balance: i64,
    pub opening_date: NaiveDate,
    pub iban: Option<&'a str>,
    pub institution: Option<&'a str>,
}

pub(crate) async fn insert_account(
    conn: &mut PgConnection,
    tenant: TenantId,
    a: NewAccountRow<'_>,
) -> Result<Account, sqlx::Error> {
    sqlx::query_as!(
        AccountRow,
        "INSERT INTO accounts (tenant_id, id, name, kind, currency, opening_balance, opening_date,
                               iban, institution, balance, pending_balance)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $6, $6)
         RETURNING id, name, kind, currency, opening_balance, opening_date, iban, institution,
                   balance, pending_balance, reported_balance, reported_at, archived_at, version,
                   created_at, updated_at",
        tenant.as_uuid(),
        a.id,
        a.name,
        a.kind,
        a.currency,
        a.opening_balance,
        a.opening_date,
        a.iban,
        a.institution,
    )
    .fetch_one(conn)
    .await
    .map(Account::from)
}

/// An account; with `lock`, locked for an update.
pub(crate) async fn account(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    lock: bool,
) -> Result<Option<Account>, sqlx::Error> {
    let row = if lock {
        sqlx::query_as!(
            AccountRow,
            "SELECT id, name, kind, currency, opening_balance, opening_date, iban, institution,
                    balance, pending_balance, reported_balance, reported_at, archived_at, version,
                    created_at, updated_at
             FROM accounts WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            tenant.as_uuid(),
            id,
        )
        .fetch_optional(conn)
        .await?
    } else {
        sqlx::query_as!(
            AccountRow,
            "SELECT id, name, kind, currency, opening_balance, opening_date, iban, institution,
                    balance, pending_balance, reported_balance, reported_at, archived_at, version,
                    created_at, updated_at
             FROM accounts WHERE tenant_id = $1 AND id = $2",
            tenant.as_uuid(),
            id,
        )
        .fetch_optional(conn)
        .await?
    };
    Ok(row.map(Account::from))
}

pub(crate) async fn accounts(
    conn: &mut PgConnection,
    tenant: TenantId,
    (at, id): After,
    limit: i64,
) -> Result<Vec<Account>, sqlx::Error> {
    let rows = sqlx::query_as!(
        AccountRow,
        "SELECT id, name, kind, currency, opening_balance, opening_date, iban, institution,
                balance, pending_balance, reported_balance, reported_at, archived_at, version,
                created_at, updated_at
         FROM accounts
         WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4",
        tenant.as_uuid(),
        at,
        id,
        limit,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Account::from).collect())
}

/// Writes an account's editable fields (the service merged the changes) and moves its version.
pub(crate) async fn update_account(
    conn: &mut PgConnection,
    tenant: TenantId,
    a: &Account,
) -> Result<Account, sqlx::Error> {
    sqlx::query_as!(
        AccountRow,
        "UPDATE accounts SET name = $3, iban = $4, institution = $5, archived_at = $6,
                version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND id = $2
         RETURNING id, name, kind, currency, opening_balance, opening_date, iban, institution,
                   balance, pending_balance, reported_balance, reported_at, archived_at, version,
                   created_at, updated_at",
        tenant.as_uuid(),
        a.id,
        a.name,
        a.iban,
        a.institution,
        a.archived_at,
    )
    .fetch_one(conn)
    .await
    .map(Account::from)
}

/// How many transactions (deleted ones too: dedup keeps them) an account has.
pub(crate) async fn account_transactions(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM transactions WHERE tenant_id = $1 AND account_id = $2"#,
        tenant.as_uuid(),
        id,
    )
    .fetch_one(conn)
    .await
}

pub(crate) async fn delete_account(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM account_days WHERE tenant_id = $1 AND account_id = $2",
        tenant.as_uuid(),
        id,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "DELETE FROM accounts WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Each day's closing balances from `from` to `to`: the opening balance plus the running sum
/// of the daily deltas (one row per day with movement, never one per transaction).
pub(crate) async fn day_balances(
    conn: &mut PgConnection,
    tenant: TenantId,
    account: &Account,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<DayBalance>, sqlx::Error> {
    sqlx::query_as!(
        DayBalance,
        r#"WITH before AS (
               SELECT coalesce(sum(posted), 0)::int8 AS posted, coalesce(sum(pending), 0)::int8 AS pending
               FROM account_days WHERE tenant_id = $1 AND account_id = $2 AND day < $3
           ),
           days AS (
               SELECT d::date AS day FROM generate_series($3::date, $4::date, interval '1 day') d
           )
           SELECT days.day AS "date!",
                  ($5 + before.posted + coalesce(sum(m.posted) OVER w, 0))::int8 AS "balance!",
                  ($5 + before.posted + before.pending
                      + coalesce(sum(m.posted + m.pending) OVER w, 0))::int8 AS "pending_balance!"
           FROM days CROSS JOIN before
           LEFT JOIN account_days m
             ON m.tenant_id = $1 AND m.account_id = $2 AND m.day = days.day
           WINDOW w AS (ORDER BY days.day)
           ORDER BY days.day"#,
        tenant.as_uuid(),
        account.id,
        from,
        to,
        account.opening_balance,
    )
    .fetch_all(conn)
    .await
}

pub(crate) struct CategoryRow {
    id: Uuid,
    name: String,
    kind: String,
    parent_id: Option<Uuid>,
    archived_at: Option<DateTime<Utc>>,
    version: i64,
    created_at: DateTime<Utc>,
}

impl From<CategoryRow> for Category {
    fn from(r: CategoryRow) -> Category {
        Category {
            id: r.id,
            name: r.name,
            kind: CategoryKind::from_db(&r.kind),
            parent_id: r.parent_id,
            archived_at: r.archived_at,
            version: r.version,
            created_at: r.created_at,
        }
    }
}

/// Inserts a category; `None` when the name is taken at that level.
pub(crate) async fn insert_category(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    name: &str,
    kind: &str,
    parent: Option<Uuid>,
) -> Result<Option<Category>, sqlx::Error> {
    let row = sqlx::query_as!(
        CategoryRow,
        "INSERT INTO categories (tenant_id, id, name, kind, parent_id) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING
         RETURNING id, name, kind, parent_id, archived_at, version, created_at",
        tenant.as_uuid(),
        id,
        name,
        kind,
        parent,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Category::from))
}

pub(crate) async fn category(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Category>, sqlx::Error> {
    let row = sqlx::query_as!(
        CategoryRow,
        "SELECT id, name, kind, parent_id, archived_at, version, created_at
         FROM categories WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        tenant.as_uuid(),
        id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Category::from))
}

pub(crate) async fn categories(
    conn: &mut PgConnection,
    tenant: TenantId,
    (at, id): After,
    limit: i64,
) -> Result<Vec<Category>, sqlx::Error> {
    let rows = sqlx::query_as!(
        CategoryRow,
        "SELECT id, name, kind, parent_id, archived_at, version, created_at
         FROM categories
         WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4",
        tenant.as_uuid(),
        at,
        id,
        limit,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Category::from).collect())
}

/// Writes a category's name and archived state; `None` when the name is taken.
pub(crate) async fn update_category(
    conn: &mut PgConnection,
    tenant: TenantId,
    c: &Category,
) -> Result<Option<Category>, sqlx::Error> {
    let row = sqlx::query_as!(
        CategoryRow,
        "UPDATE categories SET name = $3, archived_at = $4, version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND id = $2
           AND NOT EXISTS (
             SELECT FROM categories o
             WHERE o.tenant_id = $1 AND o.id <> $2 AND lower(o.name) = lower($3)
               AND o.parent_id IS NOT DISTINCT FROM categories.parent_id)
         RETURNING id, name, kind, parent_id, archived_at, version, created_at",
        tenant.as_uuid(),
        c.id,
        c.name,
        c.archived_at,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Category::from))
}

/// What still refers to a category.
pub(crate) struct CategoryUse {
    pub transactions: i64,
    pub splits: i64,
    pub children: i64,
}

pub(crate) async fn category_use(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<CategoryUse, sqlx::Error> {
    sqlx::query_as!(
        CategoryUse,
        r#"SELECT
             (SELECT count(*) FROM transactions WHERE tenant_id = $1 AND category_id = $2) AS "transactions!",
             (SELECT count(*) FROM transaction_splits WHERE tenant_id = $1 AND category_id = $2) AS "splits!",
             (SELECT count(*) FROM categories WHERE tenant_id = $1 AND parent_id = $2) AS "children!""#,
        tenant.as_uuid(),
        id,
    )
    .fetch_one(conn)
    .await
}

/// Moves every transaction and split of `from` to `to`.
pub(crate) async fn reassign_category(
    conn: &mut PgConnection,
    tenant: TenantId,
    from: Uuid,
    to: Uuid,
) -> Result<u64, sqlx::Error> {
    let moved = sqlx::query!(
        "UPDATE transactions SET category_id = $3, version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND category_id = $2",
        tenant.as_uuid(),
        from,
        to,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let parts = sqlx::query!(
        "UPDATE transaction_splits SET category_id = $3 WHERE tenant_id = $1 AND category_id = $2",
        tenant.as_uuid(),
        from,
        to,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(moved + parts)
}

pub(crate) async fn delete_category(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM categories WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

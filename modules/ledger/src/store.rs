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

#[derive(Clone)]
pub(crate) struct TransactionRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub date: NaiveDate,
    pub value_date: Option<NaiveDate>,
    pub amount: i64,
    pub currency: String,
    pub merchant: Option<String>,
    pub description: String,
    pub status: String,
    pub category_id: Option<Uuid>,
    pub categorization: Option<serde_json::Value>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub source: String,
    pub external_id: Option<String>,
    pub import_id: Option<Uuid>,
    pub transfer_id: Option<Uuid>,
    pub locked_fields: Vec<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A transaction to store (its terms and balances are written beside it).
pub(crate) struct NewTransactionRow<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub date: NaiveDate,
    pub value_date: Option<NaiveDate>,
    pub amount: i64,
    pub currency: &'a str,
    pub merchant: Option<&'a str>,
    pub description: &'a str,
    pub status: &'a str,
    pub category_id: Option<Uuid>,
    pub categorization: Option<serde_json::Value>,
    pub notes: Option<&'a str>,
    pub tags: &'a [String],
    pub source: &'a str,
    pub external_id: Option<&'a str>,
    pub import_id: Option<Uuid>,
    pub fingerprint: Option<&'a [u8]>,
    pub transfer_id: Option<Uuid>,
}

pub(crate) async fn insert_transaction(
    conn: &mut PgConnection,
    tenant: TenantId,
    t: NewTransactionRow<'_>,
) -> Result<TransactionRow, sqlx::Error> {
    sqlx::query_as!(
        TransactionRow,
        "INSERT INTO transactions (tenant_id, id, account_id, date, value_date, amount, currency,
             merchant, description, status, category_id, categorization, notes, tags, source,
             external_id, import_id, fingerprint, transfer_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
         RETURNING id, account_id, date, value_date, amount, currency, merchant, description, status,
                   category_id, categorization, notes, tags, source, external_id, import_id,
                   transfer_id, locked_fields, version, created_at, updated_at",
        tenant.as_uuid(),
        t.id,
        t.account_id,
        t.date,
        t.value_date,
        t.amount,
        t.currency,
        t.merchant,
        t.description,
        t.status,
        t.category_id,
        t.categorization,
        t.notes,
        t.tags,
        t.source,
        t.external_id,
        t.import_id,
        t.fingerprint,
        t.transfer_id,
    )
    .fetch_one(conn)
    .await
}

/// A live (not deleted) transaction, locked for an update.
pub(crate) async fn lock_transaction(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<TransactionRow>, sqlx::Error> {
    sqlx::query_as!(
        TransactionRow,
        "SELECT id, account_id, date, value_date, amount, currency, merchant, description, status,
                category_id, categorization, notes, tags, source, external_id, import_id,
                transfer_id, locked_fields, version, created_at, updated_at
         FROM transactions WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL FOR UPDATE",
        tenant.as_uuid(),
        id,
    )
    .fetch_optional(conn)
    .await
}

pub(crate) async fn transaction(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<TransactionRow>, sqlx::Error> {
    sqlx::query_as!(
        TransactionRow,
        "SELECT id, account_id, date, value_date, amount, currency, merchant, description, status,
                category_id, categorization, notes, tags, source, external_id, import_id,
                transfer_id, locked_fields, version, created_at, updated_at
         FROM transactions WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
        tenant.as_uuid(),
        id,
    )
    .fetch_optional(conn)
    .await
}

/// Writes a transaction's fields (the service merged the changes) and moves its version.
pub(crate) async fn update_transaction(
    conn: &mut PgConnection,
    tenant: TenantId,
    t: &TransactionRow,
) -> Result<TransactionRow, sqlx::Error> {
    sqlx::query_as!(
        TransactionRow,
        "UPDATE transactions SET date = $3, amount = $4, merchant = $5, description = $6,
                status = $7, category_id = $8, categorization = $9, notes = $10, tags = $11,
                locked_fields = $12, version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND id = $2
         RETURNING id, account_id, date, value_date, amount, currency, merchant, description, status,
                   category_id, categorization, notes, tags, source, external_id, import_id,
                   transfer_id, locked_fields, version, created_at, updated_at",
        tenant.as_uuid(),
        t.id,
        t.date,
        t.amount,
        t.merchant,
        t.description,
        t.status,
        t.category_id,
        t.categorization,
        t.notes,
        &t.tags,
        &t.locked_fields,
    )
    .fetch_one(conn)
    .await
}

/// Soft-deletes a transaction: it stays known to dedup (its fingerprint is kept).
pub(crate) async fn delete_transaction(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE transactions SET deleted_at = now(), version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) struct SplitRow {
    pub transaction_id: Uuid,
    pub category_id: Uuid,
    pub amount: i64,
    pub memo: Option<String>,
}

/// The splits of these transactions, in their order.
pub(crate) async fn splits_of(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<Vec<SplitRow>, sqlx::Error> {
    sqlx::query_as!(
        SplitRow,
        "SELECT transaction_id, category_id, amount, memo FROM transaction_splits
         WHERE tenant_id = $1 AND transaction_id = ANY($2)
         ORDER BY transaction_id, ordinal",
        tenant.as_uuid(),
        ids,
    )
    .fetch_all(conn)
    .await
}

/// Replaces a transaction's splits.
pub(crate) async fn replace_splits(
    conn: &mut PgConnection,
    tenant: TenantId,
    transaction: Uuid,
    account: Uuid,
    splits: &[crate::domain::Split],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM transaction_splits WHERE tenant_id = $1 AND transaction_id = $2",
        tenant.as_uuid(),
        transaction,
    )
    .execute(&mut *conn)
    .await?;
    if splits.is_empty() {
        return Ok(());
    }
    let categories: Vec<Uuid> = splits.iter().map(|s| s.category_id).collect();
    let amounts: Vec<i64> = splits.iter().map(|s| s.amount).collect();
    let memos: Vec<Option<String>> = splits.iter().map(|s| s.memo.clone()).collect();
    sqlx::query!(
        "INSERT INTO transaction_splits (tenant_id, transaction_id, ordinal, account_id, category_id, amount, memo)
         SELECT $1, $2, (s.ordinality - 1)::int2, $3, s.category_id, s.amount, s.memo
         FROM unnest($4::uuid[], $5::int8[], $6::text[]) WITH ORDINALITY AS s(category_id, amount, memo, ordinality)",
        tenant.as_uuid(),
        transaction,
        account,
        &categories,
        &amounts,
        &memos as &[Option<String>],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// How many of `ids` are categories of the tenant.
pub(crate) async fn known_categories(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM categories WHERE tenant_id = $1 AND id = ANY($2)"#,
        tenant.as_uuid(),
        ids,
    )
    .fetch_one(conn)
    .await
}

/// Indexes a transaction's terms, and counts them for prefix expansion.
pub(crate) async fn add_terms(
    conn: &mut PgConnection,
    tenant: TenantId,
    transaction: Uuid,
    account: Uuid,
    date: NaiveDate,
    terms: &[String],
) -> Result<(), sqlx::Error> {
    if terms.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "INSERT INTO transaction_terms (tenant_id, term, date, transaction_id, account_id)
         SELECT $1, t, $3, $2, $4 FROM unnest($5::text[]) AS t ON CONFLICT DO NOTHING",
        tenant.as_uuid(),
        transaction,
        date,
        account,
        terms,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO transaction_term_counts (tenant_id, term, n)
         SELECT $1, t, 1 FROM unnest($2::text[]) AS t
         ON CONFLICT (tenant_id, term) DO UPDATE SET n = transaction_term_counts.n + 1",
        tenant.as_uuid(),
        terms,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes a transaction's terms (a delete, or before re-indexing an edit).
pub(crate) async fn remove_terms(
    conn: &mut PgConnection,
    tenant: TenantId,
    transaction: Uuid,
) -> Result<(), sqlx::Error> {
    let removed = sqlx::query_scalar!(
        r#"DELETE FROM transaction_terms WHERE tenant_id = $1 AND transaction_id = $2
           RETURNING term AS "term!""#,
        tenant.as_uuid(),
        transaction,
    )
    .fetch_all(&mut *conn)
    .await?;
    if removed.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "UPDATE transaction_term_counts SET n = n - 1
         WHERE tenant_id = $1 AND term = ANY($2::text[]) AND n > 0",
        tenant.as_uuid(),
        &removed,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves an account's balances, and its day's delta, by what a transaction adds (negative
/// to take it back): `posted` counts in both balances, `pending` in the pending one only.
pub(crate) async fn move_balances(
    conn: &mut PgConnection,
    tenant: TenantId,
    account: Uuid,
    day: NaiveDate,
    posted: i64,
    pending: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE accounts SET balance = balance + $3, pending_balance = pending_balance + $3 + $4,
                updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        account,
        posted,
        pending,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO account_days (tenant_id, account_id, day, posted, pending)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, account_id, day) DO UPDATE
           SET posted = account_days.posted + $4, pending = account_days.pending + $5",
        tenant.as_uuid(),
        account,
        day,
        posted,
        pending,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The list's filters, as the statement takes them (`None`/empty: no filter).
#[derive(Debug, Clone, Default)]
pub(crate) struct Filters {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub account_id: Option<Uuid>,
    pub category_id: Option<Uuid>,
    pub min_amount: Option<i64>,
    pub max_amount: Option<i64>,
    pub status: Option<String>,
    pub tags: Vec<String>,
    pub source: Option<String>,
    pub import_id: Option<Uuid>,
    pub uncategorized: bool,
    pub include_transfers: bool,
    /// Each word of `q` as a `[lo, hi)` range of terms (the word as a prefix).
    pub words: Vec<(String, String)>,
}

/// The list's ranges as plain bounds (an open end is a date no row has): compared with
/// the leakproof `date` and `uuid` operators, they bound the index scan under RLS, in a
/// generic plan too; `coalesce` or `$n IS NULL OR …` would not. The keyset is written as
/// `date <= d AND (date < d OR id < i)`, not as a row comparison: the scan then starts at
/// the tighter of `to` and the cursor's date (a row comparison on a descending index was
/// taken as the start and read every newer entry first).
struct Bounds {
    from: NaiveDate,
    to: NaiveDate,
    after_date: NaiveDate,
    after_id: Uuid,
}

impl Bounds {
    fn of(f: &Filters, after: (Option<NaiveDate>, Option<Uuid>)) -> Bounds {
        let far_past = NaiveDate::from_ymd_opt(1, 1, 1).expect("a date");
        let far_future = NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date");
        let (after_date, after_id) = match after {
            (Some(d), Some(id)) => (d, id),
            _ => (far_future, Uuid::max()),
        };
        Bounds {
            from: f.from.unwrap_or(far_past),
            to: f.to.unwrap_or(far_future),
            after_date,
            after_id,
        }
    }
}

/// One page of the transactions matching `f`, newest first by `(date, id)`, walking the
/// tenant's date index. The date range and the keyset are written as ranges a generic
/// plan (a prepared statement's, after five runs) still uses as index bounds; with an
/// account filter, [`transactions_of_account`] walks that account's index instead.
pub(crate) async fn transactions(
    conn: &mut PgConnection,
    tenant: TenantId,
    f: &Filters,
    after: (Option<NaiveDate>, Option<Uuid>),
    limit: i64,
) -> Result<Vec<TransactionRow>, sqlx::Error> {
    let (lo, hi): (Vec<String>, Vec<String>) = f.words.iter().cloned().unzip();
    let bounds = Bounds::of(f, after);
    sqlx::query_as!(
        TransactionRow,
        "SELECT t.id, t.account_id, t.date, t.value_date, t.amount, t.currency, t.merchant,
                t.description, t.status, t.category_id, t.categorization, t.notes, t.tags,
                t.source, t.external_id, t.import_id, t.transfer_id, t.locked_fields, t.version,
                t.created_at, t.updated_at
         FROM transactions t
         WHERE t.tenant_id = $1 AND t.deleted_at IS NULL
           AND t.date >= $2 AND t.date <= $3
           AND ($4::uuid IS NULL OR t.account_id = $4)
           AND ($5::uuid IS NULL OR t.category_id = $5 OR EXISTS (
                 SELECT FROM transaction_splits s
                 WHERE s.tenant_id = $1 AND s.transaction_id = t.id AND s.category_id = $5))
           AND ($6::int8 IS NULL OR t.amount >= $6) AND ($7::int8 IS NULL OR t.amount <= $7)
           AND ($8::text IS NULL OR t.status = $8)
           AND (cardinality($9::text[]) = 0 OR t.tags @> $9)
           AND ($10::text IS NULL OR t.source = $10)
           AND ($11::uuid IS NULL OR t.import_id = $11)
           AND (NOT $12 OR (t.category_id IS NULL AND NOT EXISTS (
                 SELECT FROM transaction_splits s WHERE s.tenant_id = $1 AND s.transaction_id = t.id)))
           AND ($13 OR t.transfer_id IS NULL)
           AND t.date <= $14 AND (t.date < $14 OR t.id < $15)
           AND NOT EXISTS (
                 SELECT FROM unnest($16::text[], $17::text[]) AS w(lo, hi)
                 WHERE NOT EXISTS (
                   SELECT FROM transaction_terms x
                   WHERE x.tenant_id = $1 AND x.transaction_id = t.id
                     AND x.term >= w.lo AND x.term < w.hi))
         ORDER BY t.date DESC, t.id DESC
         LIMIT $18",
        tenant.as_uuid(),
        bounds.from,
        bounds.to,
        f.account_id,
        f.category_id,
        f.min_amount,
        f.max_amount,
        f.status,
        &f.tags,
        f.source,
        f.import_id,
        f.uncategorized,
        f.include_transfers,
        bounds.after_date,
        bounds.after_id,
        &lo,
        &hi,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// [`transactions`] of one account (`f.account_id`), walking the account's date index.
pub(crate) async fn transactions_of_account(
    conn: &mut PgConnection,
    tenant: TenantId,
    f: &Filters,
    after: (Option<NaiveDate>, Option<Uuid>),
    limit: i64,
) -> Result<Vec<TransactionRow>, sqlx::Error> {
    let (lo, hi): (Vec<String>, Vec<String>) = f.words.iter().cloned().unzip();
    let bounds = Bounds::of(f, after);
    sqlx::query_as!(
        TransactionRow,
        "SELECT t.id, t.account_id, t.date, t.value_date, t.amount, t.currency, t.merchant,
                t.description, t.status, t.category_id, t.categorization, t.notes, t.tags,
                t.source, t.external_id, t.import_id, t.transfer_id, t.locked_fields, t.version,
                t.created_at, t.updated_at
         FROM transactions t
         WHERE t.tenant_id = $1 AND t.deleted_at IS NULL
           AND t.date >= $2 AND t.date <= $3
           AND t.account_id = $4
           AND ($5::uuid IS NULL OR t.category_id = $5 OR EXISTS (
                 SELECT FROM transaction_splits s
                 WHERE s.tenant_id = $1 AND s.transaction_id = t.id AND s.category_id = $5))
           AND ($6::int8 IS NULL OR t.amount >= $6) AND ($7::int8 IS NULL OR t.amount <= $7)
           AND ($8::text IS NULL OR t.status = $8)
           AND (cardinality($9::text[]) = 0 OR t.tags @> $9)
           AND ($10::text IS NULL OR t.source = $10)
           AND ($11::uuid IS NULL OR t.import_id = $11)
           AND (NOT $12 OR (t.category_id IS NULL AND NOT EXISTS (
                 SELECT FROM transaction_splits s WHERE s.tenant_id = $1 AND s.transaction_id = t.id)))
           AND ($13 OR t.transfer_id IS NULL)
           AND t.date <= $14 AND (t.date < $14 OR t.id < $15)
           AND NOT EXISTS (
                 SELECT FROM unnest($16::text[], $17::text[]) AS w(lo, hi)
                 WHERE NOT EXISTS (
                   SELECT FROM transaction_terms x
                   WHERE x.tenant_id = $1 AND x.transaction_id = t.id
                     AND x.term >= w.lo AND x.term < w.hi))
         ORDER BY t.date DESC, t.id DESC
         LIMIT $18",
        tenant.as_uuid(),
        bounds.from,
        bounds.to,
        f.account_id,
        f.category_id,
        f.min_amount,
        f.max_amount,
        f.status,
        &f.tags,
        f.source,
        f.import_id,
        f.uncategorized,
        f.include_transfers,
        bounds.after_date,
        bounds.after_id,
        &lo,
        &hi,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// A search candidate: a row's `(date, id)` from the term index.
pub(crate) struct Candidate {
    pub date: NaiveDate,
    pub transaction_id: Uuid,
}

/// The next `limit` rows of one term, newest first, older than the cursor and within the
/// date range: a backward scan of the term index (a plain statement, so its plan stays
/// that scan whatever the term's frequency).
pub(crate) async fn term_candidates(
    conn: &mut PgConnection,
    tenant: TenantId,
    term: &str,
    f: &Filters,
    after: (NaiveDate, Uuid),
    limit: i64,
) -> Result<Vec<Candidate>, sqlx::Error> {
    let bounds = Bounds::of(f, (Some(after.0), Some(after.1)));
    sqlx::query_as!(
        Candidate,
        "SELECT date, transaction_id FROM transaction_terms
         WHERE tenant_id = $1 AND term = $2
           AND date <= $3 AND (date < $3 OR transaction_id < $4)
           AND date >= $5 AND date <= $6
         ORDER BY date DESC, transaction_id DESC
         LIMIT $7",
        tenant.as_uuid(),
        term,
        bounds.after_date,
        bounds.after_id,
        bounds.from,
        bounds.to,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// Every row of these (rare) terms older than the cursor and within the date range.
pub(crate) async fn terms_candidates(
    conn: &mut PgConnection,
    tenant: TenantId,
    terms: &[String],
    f: &Filters,
    after: (NaiveDate, Uuid),
) -> Result<Vec<Candidate>, sqlx::Error> {
    let bounds = Bounds::of(f, (Some(after.0), Some(after.1)));
    sqlx::query_as!(
        Candidate,
        "SELECT date, transaction_id FROM transaction_terms
         WHERE tenant_id = $1 AND term = ANY($2)
           AND date <= $3 AND (date < $3 OR transaction_id < $4)
           AND date >= $5 AND date <= $6",
        tenant.as_uuid(),
        terms,
        bounds.after_date,
        bounds.after_id,
        bounds.from,
        bounds.to,
    )
    .fetch_all(conn)
    .await
}

/// Those of `ids` that match every filter of `f` (the other words of `q` included),
/// newest first.
pub(crate) async fn transactions_among(
    conn: &mut PgConnection,
    tenant: TenantId,
    f: &Filters,
    ids: &[Uuid],
) -> Result<Vec<TransactionRow>, sqlx::Error> {
    let (lo, hi): (Vec<String>, Vec<String>) = f.words.iter().cloned().unzip();
    let bounds = Bounds::of(f, (None, None));
    sqlx::query_as!(
        TransactionRow,
        "SELECT t.id, t.account_id, t.date, t.value_date, t.amount, t.currency, t.merchant,
                t.description, t.status, t.category_id, t.categorization, t.notes, t.tags,
                t.source, t.external_id, t.import_id, t.transfer_id, t.locked_fields, t.version,
                t.created_at, t.updated_at
         FROM transactions t
         WHERE t.tenant_id = $1 AND t.id = ANY($14) AND t.deleted_at IS NULL
           AND t.date >= $2 AND t.date <= $3
           AND ($4::uuid IS NULL OR t.account_id = $4)
           AND ($5::uuid IS NULL OR t.category_id = $5 OR EXISTS (
                 SELECT FROM transaction_splits s
                 WHERE s.tenant_id = $1 AND s.transaction_id = t.id AND s.category_id = $5))
           AND ($6::int8 IS NULL OR t.amount >= $6) AND ($7::int8 IS NULL OR t.amount <= $7)
           AND ($8::text IS NULL OR t.status = $8)
           AND (cardinality($9::text[]) = 0 OR t.tags @> $9)
           AND ($10::text IS NULL OR t.source = $10)
           AND ($11::uuid IS NULL OR t.import_id = $11)
           AND (NOT $12 OR (t.category_id IS NULL AND NOT EXISTS (
                 SELECT FROM transaction_splits s WHERE s.tenant_id = $1 AND s.transaction_id = t.id)))
           AND ($13 OR t.transfer_id IS NULL)
           AND NOT EXISTS (
                 SELECT FROM unnest($15::text[], $16::text[]) AS w(lo, hi)
                 WHERE NOT EXISTS (
                   SELECT FROM transaction_terms x
                   WHERE x.tenant_id = $1 AND x.transaction_id = t.id
                     AND x.term >= w.lo AND x.term < w.hi))
         ORDER BY t.date DESC, t.id DESC",
        tenant.as_uuid(),
        bounds.from,
        bounds.to,
        f.account_id,
        f.category_id,
        f.min_amount,
        f.max_amount,
        f.status,
        &f.tags,
        f.source,
        f.import_id,
        f.uncategorized,
        f.include_transfers,
        ids,
        &lo,
        &hi,
    )
    .fetch_all(conn)
    .await
}

/// Makes these transactions the legs of one transfer.
pub(crate) async fn set_transfer(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[Uuid],
    transfer_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE transactions SET transfer_id = $3, version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND id = ANY($2)",
        tenant.as_uuid(),
        ids,
        transfer_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The live legs of a transfer.
pub(crate) async fn legs_of(
    conn: &mut PgConnection,
    tenant: TenantId,
    transfer_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM transactions WHERE tenant_id = $1 AND transfer_id = $2 AND deleted_at IS NULL",
        tenant.as_uuid(),
        transfer_id,
    )
    .fetch_all(conn)
    .await
}

/// The terms in `[lo, hi)` that live rows use, with how many, in order: at most `cap`.
pub(crate) async fn terms_in(
    conn: &mut PgConnection,
    tenant: TenantId,
    lo: &str,
    hi: &str,
    cap: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT term, n FROM transaction_term_counts
         WHERE tenant_id = $1 AND term >= $2 AND term < $3 AND n > 0
         ORDER BY term LIMIT $4",
        tenant.as_uuid(),
        lo,
        hi,
        cap,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.term, r.n)).collect())
}

/// A known row an incoming one duplicates: `ordinal` is the incoming row's index.
pub(crate) struct KnownRow {
    pub ordinal: i32,
    pub transaction_id: Uuid,
    pub matched_by: String,
}

/// For each incoming `(external_id, fingerprint)` of an account, the row it duplicates
/// (deleted rows included): the same provider id, else the same fingerprint unless both
/// have ids of the same provider (`ofx:…`, `plaid:…`), which then differ: two transactions.
pub(crate) async fn known_rows(
    conn: &mut PgConnection,
    tenant: TenantId,
    account: Uuid,
    external_ids: &[Option<String>],
    fingerprints: &[Vec<u8>],
) -> Result<Vec<KnownRow>, sqlx::Error> {
    sqlx::query_as!(
        KnownRow,
        r#"SELECT (i.ordinality - 1)::int4 AS "ordinal!", m.id AS "transaction_id!", m.rule AS "matched_by!"
           FROM unnest($3::text[], $4::bytea[]) WITH ORDINALITY AS i(external_id, fingerprint, ordinality)
           CROSS JOIN LATERAL (
             SELECT k.id, k.rule FROM (
               (SELECT t.id, 'provider_id' AS rule, 0 AS preference FROM transactions t
                WHERE t.tenant_id = $1 AND t.account_id = $2 AND i.external_id IS NOT NULL
                  AND t.external_id IS NOT NULL AND t.external_id = i.external_id
                LIMIT 1)
               UNION ALL
               (SELECT t.id, 'fingerprint', 1 FROM transactions t
                WHERE t.tenant_id = $1 AND t.account_id = $2
                  AND t.fingerprint IS NOT NULL AND t.fingerprint = i.fingerprint
                  AND (i.external_id IS NULL OR t.external_id IS NULL
                       OR split_part(i.external_id, ':', 1) <> split_part(t.external_id, ':', 1))
                LIMIT 1)) k
             ORDER BY k.preference LIMIT 1) m"#,
        tenant.as_uuid(),
        account,
        external_ids as &[Option<String>],
        fingerprints,
    )
    .fetch_all(conn)
    .await
}

/// New rows of one account, column by column.
#[derive(Default)]
pub(crate) struct NewRows {
    pub ids: Vec<Uuid>,
    pub dates: Vec<NaiveDate>,
    pub value_dates: Vec<Option<NaiveDate>>,
    pub amounts: Vec<i64>,
    pub merchants: Vec<Option<String>>,
    pub descriptions: Vec<String>,
    pub statuses: Vec<String>,
    pub external_ids: Vec<Option<String>>,
    pub fingerprints: Vec<Vec<u8>>,
}

/// Inserts rows of one account from a file or a bank (uncategorised), in one statement.
pub(crate) async fn insert_rows(
    conn: &mut PgConnection,
    tenant: TenantId,
    account: Uuid,
    currency: &str,
    source: &str,
    import_id: Option<Uuid>,
    r: &NewRows,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO transactions (tenant_id, id, account_id, date, value_date, amount, currency,
             merchant, description, status, source, external_id, import_id, fingerprint)
         SELECT $1, r.id, $2, r.date, r.value_date, r.amount, $3, r.merchant, r.description,
                r.status, $4, r.external_id, $5, r.fingerprint
         FROM unnest($6::uuid[], $7::date[], $8::date[], $9::int8[], $10::text[], $11::text[],
                     $12::text[], $13::text[], $14::bytea[])
           AS r(id, date, value_date, amount, merchant, description, status, external_id, fingerprint)",
        tenant.as_uuid(),
        account,
        currency,
        source,
        import_id,
        &r.ids,
        &r.dates,
        &r.value_dates as &[Option<NaiveDate>],
        &r.amounts,
        &r.merchants as &[Option<String>],
        &r.descriptions,
        &r.statuses,
        &r.external_ids as &[Option<String>],
        &r.fingerprints,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Terms of many new rows of one account: one entry per (transaction, term).
#[derive(Default)]
pub(crate) struct NewTerms {
    pub transaction_ids: Vec<Uuid>,
    pub dates: Vec<NaiveDate>,
    pub terms: Vec<String>,
}

/// Indexes the terms of many rows of one account (sorted by term, so the index is written
/// in order); [`count_terms`] counts them.
pub(crate) async fn insert_terms(
    conn: &mut PgConnection,
    tenant: TenantId,
    account: Uuid,
    t: &NewTerms,
) -> Result<(), sqlx::Error> {
    if t.terms.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "INSERT INTO transaction_terms (tenant_id, term, date, transaction_id, account_id)
         SELECT $1, w.term, w.date, w.id, $2
         FROM unnest($3::uuid[], $4::date[], $5::text[]) AS w(id, date, term)
         ON CONFLICT DO NOTHING",
        tenant.as_uuid(),
        account,
        &t.transaction_ids,
        &t.dates,
        &t.terms,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds `counts` to the live-row counts of `terms` (one entry per term).
pub(crate) async fn count_terms(
    conn: &mut PgConnection,
    tenant: TenantId,
    terms: &[String],
    counts: &[i64],
) -> Result<(), sqlx::Error> {
    if terms.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "INSERT INTO transaction_term_counts (tenant_id, term, n)
         SELECT $1, w.term, w.n FROM unnest($2::text[], $3::int8[]) AS w(term, n)
         ON CONFLICT (tenant_id, term) DO UPDATE SET n = transaction_term_counts.n + excluded.n",
        tenant.as_uuid(),
        terms,
        counts,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes the terms of many rows (a revert), and uncounts them.
pub(crate) async fn remove_terms_of(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "WITH gone AS (
           DELETE FROM transaction_terms WHERE tenant_id = $1 AND transaction_id = ANY($2)
           RETURNING term)
         UPDATE transaction_term_counts c SET n = greatest(c.n - g.n, 0)
         FROM (SELECT term, count(*) AS n FROM gone GROUP BY term) g
         WHERE c.tenant_id = $1 AND c.term = g.term",
        tenant.as_uuid(),
        ids,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves an account's balances by the sum of many days' deltas, and each day's delta.
pub(crate) async fn move_balances_by_day(
    conn: &mut PgConnection,
    tenant: TenantId,
    account: Uuid,
    days: &[NaiveDate],
    posted: &[i64],
    pending: &[i64],
) -> Result<(), sqlx::Error> {
    if days.is_empty() {
        return Ok(());
    }
    let total_posted: i64 = posted.iter().sum();
    let total_pending: i64 = pending.iter().sum();
    sqlx::query!(
        "UPDATE accounts SET balance = balance + $3, pending_balance = pending_balance + $3 + $4,
                updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        account,
        total_posted,
        total_pending,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO account_days (tenant_id, account_id, day, posted, pending)
         SELECT $1, $2, d.day, d.posted, d.pending
         FROM unnest($3::date[], $4::int8[], $5::int8[]) AS d(day, posted, pending)
         ON CONFLICT (tenant_id, account_id, day) DO UPDATE
           SET posted = account_days.posted + excluded.posted,
               pending = account_days.pending + excluded.pending",
        tenant.as_uuid(),
        account,
        days,
        posted,
        pending,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The live rows of an import a person has edited since (or linked into a transfer).
pub(crate) async fn edited_rows_of_import(
    conn: &mut PgConnection,
    tenant: TenantId,
    import_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM transactions
         WHERE tenant_id = $1 AND import_id = $2 AND deleted_at IS NULL
           AND (edited_by_person OR transfer_id IS NOT NULL)
         ORDER BY date, id",
        tenant.as_uuid(),
        import_id,
    )
    .fetch_all(conn)
    .await
}

pub(crate) struct DeletedRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub date: NaiveDate,
    pub amount: i64,
    pub status: String,
}

/// Soft-deletes the live rows of an import nobody has edited since.
pub(crate) async fn delete_rows_of_import(
    conn: &mut PgConnection,
    tenant: TenantId,
    import_id: Uuid,
) -> Result<Vec<DeletedRow>, sqlx::Error> {
    sqlx::query_as!(
        DeletedRow,
        "UPDATE transactions SET deleted_at = now(), version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND import_id = $2 AND deleted_at IS NULL
           AND NOT edited_by_person AND transfer_id IS NULL
         RETURNING id, account_id, date, amount, status",
        tenant.as_uuid(),
        import_id,
    )
    .fetch_all(conn)
    .await
}

/// Marks a transaction as edited by a person (an import's revert keeps it).
pub(crate) async fn mark_edited_by_person(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE transactions SET edited_by_person = true
         WHERE tenant_id = $1 AND id = $2 AND NOT edited_by_person",
        tenant.as_uuid(),
        id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

// The categorization pipeline's reads and writes (automation.rs).

pub(crate) async fn ids_of_import(
    conn: &mut PgConnection,
    tenant: TenantId,
    import: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM transactions WHERE tenant_id = $1 AND import_id = $2 AND deleted_at IS NULL",
        tenant.as_uuid(),
        import,
    )
    .fetch_all(conn)
    .await
}

/// Live transactions booked in `from..=to`, of one account or all. Plain range bounds, so a
/// generic plan under RLS still bounds the index scan (see [`transactions`]).
pub(crate) async fn ids_between(
    conn: &mut PgConnection,
    tenant: TenantId,
    from: NaiveDate,
    to: NaiveDate,
    account: Option<Uuid>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    match account {
        Some(account) => {
            sqlx::query_scalar!(
                "SELECT id FROM transactions
                 WHERE tenant_id = $1 AND account_id = $2 AND date >= $3 AND date <= $4
                   AND deleted_at IS NULL",
                tenant.as_uuid(),
                account,
                from,
                to,
            )
            .fetch_all(conn)
            .await
        }
        None => {
            sqlx::query_scalar!(
                "SELECT id FROM transactions
                 WHERE tenant_id = $1 AND date >= $2 AND date <= $3 AND deleted_at IS NULL",
                tenant.as_uuid(),
                from,
                to,
            )
            .fetch_all(conn)
            .await
        }
    }
}

/// Those of `ids` the pipeline may decide: live, not a transfer leg, the category not
/// locked, and uncategorised (or, with `include_categorized`, categorised by an
/// automation).
pub(crate) async fn eligible(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[Uuid],
    include_categorized: bool,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT t.id FROM transactions t
         WHERE t.tenant_id = $1 AND t.id = ANY($2) AND t.deleted_at IS NULL
           AND t.transfer_id IS NULL AND NOT ('category' = ANY(t.locked_fields))
           AND (t.categorization ->> 'source') IS DISTINCT FROM 'person'
           AND ($3 OR (t.category_id IS NULL AND NOT EXISTS (
                 SELECT 1 FROM transaction_splits s
                 WHERE s.tenant_id = t.tenant_id AND s.transaction_id = t.id)))",
        tenant.as_uuid(),
        ids,
        include_categorized,
    )
    .fetch_all(conn)
    .await
}

pub(crate) struct CandidateRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub date: NaiveDate,
    pub amount: i64,
    pub currency: String,
    pub merchant: Option<String>,
    pub description: String,
    pub category_locked: bool,
}

pub(crate) async fn candidates(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<Vec<CandidateRow>, sqlx::Error> {
    sqlx::query_as!(
        CandidateRow,
        r#"SELECT t.id, t.account_id, t.date, t.amount, t.currency, t.merchant, t.description,
                  ('category' = ANY(t.locked_fields)
                   OR (t.categorization ->> 'source') IS NOT DISTINCT FROM 'person')
                      AS "category_locked!"
           FROM transactions t
           WHERE t.tenant_id = $1 AND t.id = ANY($2) AND t.deleted_at IS NULL
             AND t.transfer_id IS NULL AND NOT ('category' = ANY(t.locked_fields))
             AND (t.categorization ->> 'source') IS DISTINCT FROM 'person'"#,
        tenant.as_uuid(),
        ids,
    )
    .fetch_all(conn)
    .await
}

pub(crate) struct CategorisedRow {
    pub id: Uuid,
    pub merchant: Option<String>,
    pub description: String,
    pub category_id: Uuid,
    pub source: Option<String>,
}

/// The newest categorised live transactions (walking the date index).
pub(crate) async fn categorised(
    conn: &mut PgConnection,
    tenant: TenantId,
    limit: i64,
) -> Result<Vec<CategorisedRow>, sqlx::Error> {
    sqlx::query_as!(
        CategorisedRow,
        r#"SELECT id, merchant, description, category_id AS "category_id!",
                  categorization ->> 'source' AS source
           FROM transactions
           WHERE tenant_id = $1 AND category_id IS NOT NULL AND deleted_at IS NULL
           ORDER BY date DESC, id DESC
           LIMIT $2"#,
        tenant.as_uuid(),
        limit,
    )
    .fetch_all(conn)
    .await
}

/// Sets the category and its categorization of many transactions, except those whose
/// category a person locked (or that were deleted meanwhile); returns the ids written.
pub(crate) async fn set_categories(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[Uuid],
    categories: &[Option<Uuid>],
    decisions: &[Option<serde_json::Value>],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE transactions t
         SET category_id = u.category_id, categorization = u.categorization,
             version = t.version + 1, updated_at = now()
         FROM unnest($2::uuid[], $3::uuid[], $4::jsonb[]) AS u (id, category_id, categorization)
         WHERE t.tenant_id = $1 AND t.id = u.id AND t.deleted_at IS NULL
           AND NOT ('category' = ANY(t.locked_fields))
           AND (t.categorization ->> 'source') IS DISTINCT FROM 'person'
         RETURNING t.id",
        tenant.as_uuid(),
        ids,
        categories as &[Option<Uuid>],
        decisions as &[Option<serde_json::Value>],
    )
    .fetch_all(conn)
    .await
}

/// Removes the splits of transactions that now have one category.
pub(crate) async fn drop_splits(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM transaction_splits WHERE tenant_id = $1 AND transaction_id = ANY($2)",
        tenant.as_uuid(),
        ids,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn all_categories(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<Category>, sqlx::Error> {
    let rows = sqlx::query_as!(
        CategoryRow,
        "SELECT id, name, kind, parent_id, archived_at, version, created_at
         FROM categories WHERE tenant_id = $1 ORDER BY created_at, id",
        tenant.as_uuid(),
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Category::from).collect())
}

pub(crate) async fn transactions_by_ids(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<Vec<TransactionRow>, sqlx::Error> {
    sqlx::query_as!(
        TransactionRow,
        "SELECT id, account_id, date, value_date, amount, currency, merchant, description, status,
                category_id, categorization, notes, tags, source, external_id, import_id,
                transfer_id, locked_fields, version, created_at, updated_at
         FROM transactions WHERE tenant_id = $1 AND id = ANY($2) AND deleted_at IS NULL
         ORDER BY date DESC, id DESC",
        tenant.as_uuid(),
        ids,
    )
    .fetch_all(conn)
    .await
}

/// Every live non-transfer transaction of the tenant, in no order (a sequential scan, read
/// as it streams).
pub(crate) fn scan_all<'c>(
    conn: &'c mut PgConnection,
    tenant: TenantId,
) -> futures_util::stream::BoxStream<'c, Result<CandidateRow, sqlx::Error>> {
    sqlx::query_as!(
        CandidateRow,
        r#"SELECT t.id, t.account_id, t.date, t.amount, t.currency, t.merchant, t.description,
                  ('category' = ANY(t.locked_fields)
                   OR (t.categorization ->> 'source') IS NOT DISTINCT FROM 'person')
                      AS "category_locked!"
           FROM transactions t
           WHERE t.tenant_id = $1 AND t.deleted_at IS NULL AND t.transfer_id IS NULL"#,
        tenant.as_uuid(),
    )
    .fetch(conn)
}

/// A row of an account found by its provider id (a bank sync's lookups).
pub(crate) struct ExternalRow {
    pub external_id: String,
    pub id: Uuid,
    pub deleted: bool,
    pub transfer_id: Option<Uuid>,
}

/// The account's rows, live or deleted, with one of `external_ids`.
pub(crate) async fn by_external(
    conn: &mut PgConnection,
    tenant: TenantId,
    account: Uuid,
    external_ids: &[String],
) -> Result<Vec<ExternalRow>, sqlx::Error> {
    sqlx::query_as!(
        ExternalRow,
        // `t.external_id IS NOT NULL` lets the planner use the partial index
        // `transactions_external_id` for the join: a join clause alone never proves a
        // partial index's predicate, and without it each id walks the account's rows.
        r#"SELECT t.external_id AS "external_id!", t.id, t.deleted_at IS NOT NULL AS "deleted!", t.transfer_id
             FROM unnest($3::text[]) AS e(external_id)
             JOIN transactions t ON t.tenant_id = $1 AND t.account_id = $2
                                AND t.external_id IS NOT NULL AND t.external_id = e.external_id
            ORDER BY t.deleted_at NULLS FIRST"#,
        tenant.as_uuid(),
        account,
        external_ids,
    )
    .fetch_all(conn)
    .await
}

/// A row of an account found by its fingerprint.
pub(crate) struct PrintedRow {
    pub fingerprint: Vec<u8>,
    pub id: Uuid,
    pub external_id: Option<String>,
}

/// The account's rows, live or deleted, with one of `fingerprints`.
pub(crate) async fn by_fingerprint(
    conn: &mut PgConnection,
    tenant: TenantId,
    account: Uuid,
    fingerprints: &[Vec<u8>],
) -> Result<Vec<PrintedRow>, sqlx::Error> {
    sqlx::query_as!(
        PrintedRow,
        r#"SELECT t.fingerprint AS "fingerprint!", t.id, t.external_id
             FROM unnest($3::bytea[]) AS f(fingerprint)
             JOIN transactions t ON t.tenant_id = $1 AND t.account_id = $2
                                AND t.fingerprint IS NOT NULL AND t.fingerprint = f.fingerprint
            ORDER BY t.id"#,
        tenant.as_uuid(),
        account,
        fingerprints,
    )
    .fetch_all(conn)
    .await
}

/// Gives a row the provider id and fingerprint of what it became (a pending row posted),
/// or a provider id where it had none (an imported row a bank sync linked).
pub(crate) async fn set_provider_identity(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    external_id: &str,
    fingerprint: Option<&[u8]>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE transactions SET external_id = $3, fingerprint = coalesce($4, fingerprint)
          WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
        external_id,
        fingerprint,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the bank's balance of an account; with `calibrate`, also moves the opening
/// balance (and so every balance) by the difference, so the computed balance is the bank's.
pub(crate) async fn report_balance(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    reported: i64,
    calibrate: bool,
) -> Result<Account, sqlx::Error> {
    sqlx::query_as!(
        AccountRow,
        "UPDATE accounts
            SET opening_balance = opening_balance + CASE WHEN $4 THEN $3 - balance ELSE 0 END,
                pending_balance = pending_balance + CASE WHEN $4 THEN $3 - balance ELSE 0 END,
                balance = CASE WHEN $4 THEN $3 ELSE balance END,
                reported_balance = $3, reported_at = now(), updated_at = now()
          WHERE tenant_id = $1 AND id = $2
         RETURNING id, name, kind, currency, opening_balance, opening_date, iban, institution,
                   balance, pending_balance, reported_balance, reported_at, archived_at, version,
                   created_at, updated_at",
        tenant.as_uuid(),
        id,
        reported,
        calibrate,
    )
    .fetch_one(conn)
    .await
    .map(Account::from)
}

/// Plans every later statement of the transaction for its own arguments. The bulk lookups
/// of a sync or an import join thousands of ids against an account whose statistics are
/// those of before the last bulk insert (autovacuum has not run yet); a cached generic plan
/// made on such statistics walks the whole account once per id (measured: 1.7 s instead
/// of 10 ms per 2,000 ids at 10,000 rows).
/// `on = false` goes back to the default (the writes that follow plan alike for any
/// arguments, and planning each of them costs more than it saves).
pub(crate) async fn plan_each_statement(
    conn: &mut PgConnection,
    on: bool,
) -> Result<(), sqlx::Error> {
    let statement = if on {
        "SET LOCAL plan_cache_mode = force_custom_plan"
    } else {
        "SET LOCAL plan_cache_mode = auto"
    };
    sqlx::raw_sql(statement).execute(conn).await?;
    Ok(())
}

/// Spending and income by category, account, currency and day over `[from, to)`: live
/// transactions, transfer legs left out, a split transaction by its parts.
#[derive(Debug, Clone)]
pub struct DaySums {
    pub category_id: Option<Uuid>,
    pub account_id: Uuid,
    pub currency: String,
    pub date: chrono::NaiveDate,
    /// The sum of the parts (refunds reduce spending).
    pub net: i64,
    /// The sum of the outflows only (a refund does not reduce it; a correction does).
    pub outflow: i64,
    pub count: i64,
}

pub(crate) async fn day_sums(
    conn: &mut PgConnection,
    tenant: TenantId,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<Vec<DaySums>, sqlx::Error> {
    sqlx::query_as!(
        DaySums,
        r#"WITH live AS (
               SELECT t.id, t.account_id, t.currency, t.date, t.amount, t.category_id
               FROM transactions t
               WHERE t.tenant_id = $1 AND t.date >= $2 AND t.date < $3
                 AND t.deleted_at IS NULL AND t.transfer_id IS NULL),
           parts AS (
               SELECT l.category_id, l.account_id, l.currency, l.date, l.amount FROM live l
               WHERE NOT EXISTS (SELECT 1 FROM transaction_splits s
                                 WHERE s.tenant_id = $1 AND s.transaction_id = l.id)
               UNION ALL
               SELECT s.category_id, l.account_id, l.currency, l.date, s.amount
               FROM live l JOIN transaction_splits s ON s.tenant_id = $1 AND s.transaction_id = l.id)
           SELECT category_id, account_id AS "account_id!", currency AS "currency!", date AS "date!",
                  sum(amount)::bigint AS "net!", sum(LEAST(amount, 0))::bigint AS "outflow!",
                  count(*) AS "count!"
           FROM parts GROUP BY category_id, account_id, currency, date"#,
        tenant.as_uuid(),
        from,
        to,
    )
    .fetch_all(conn)
    .await
}

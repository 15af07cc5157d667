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

/// One page of the transactions matching `f`, newest first by `(date, id)`.
pub(crate) async fn transactions(
    conn: &mut PgConnection,
    tenant: TenantId,
    f: &Filters,
    after: (Option<NaiveDate>, Option<Uuid>),
    limit: i64,
) -> Result<Vec<TransactionRow>, sqlx::Error> {
    let (lo, hi): (Vec<String>, Vec<String>) = f.words.iter().cloned().unzip();
    sqlx::query_as!(
        TransactionRow,
        "SELECT t.id, t.account_id, t.date, t.value_date, t.amount, t.currency, t.merchant,
                t.description, t.status, t.category_id, t.categorization, t.notes, t.tags,
                t.source, t.external_id, t.import_id, t.transfer_id, t.locked_fields, t.version,
                t.created_at, t.updated_at
         FROM transactions t
         WHERE t.tenant_id = $1 AND t.deleted_at IS NULL
           AND ($2::date IS NULL OR t.date >= $2) AND ($3::date IS NULL OR t.date <= $3)
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
           AND ($14::date IS NULL OR (t.date, t.id) < ($14, $15))
           AND NOT EXISTS (
                 SELECT FROM unnest($16::text[], $17::text[]) AS w(lo, hi)
                 WHERE NOT EXISTS (
                   SELECT FROM transaction_terms x
                   WHERE x.tenant_id = $1 AND x.transaction_id = t.id
                     AND x.term >= w.lo AND x.term < w.hi))
         ORDER BY t.date DESC, t.id DESC
         LIMIT $18",
        tenant.as_uuid(),
        f.from,
        f.to,
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
        after.0,
        after.1,
        &lo,
        &hi,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// [`transactions`] for a rare word: the candidates come from the term index (every row
/// of a term in `driver`'s range), then the same filters and the sort. Walking the date
/// index instead would read the whole tenant to find a word that is not there.
pub(crate) async fn transactions_driven(
    conn: &mut PgConnection,
    tenant: TenantId,
    f: &Filters,
    driver: &(String, String),
    after: (Option<NaiveDate>, Option<Uuid>),
    limit: i64,
) -> Result<Vec<TransactionRow>, sqlx::Error> {
    let (lo, hi): (Vec<String>, Vec<String>) = f.words.iter().cloned().unzip();
    sqlx::query_as!(
        TransactionRow,
        "SELECT t.id, t.account_id, t.date, t.value_date, t.amount, t.currency, t.merchant,
                t.description, t.status, t.category_id, t.categorization, t.notes, t.tags,
                t.source, t.external_id, t.import_id, t.transfer_id, t.locked_fields, t.version,
                t.created_at, t.updated_at
         FROM transactions t
         WHERE t.tenant_id = $1 AND t.deleted_at IS NULL
           AND t.id IN (
                 SELECT d.transaction_id FROM transaction_terms d
                 WHERE d.tenant_id = $1 AND d.term >= $19 AND d.term < $20)
           AND ($2::date IS NULL OR t.date >= $2) AND ($3::date IS NULL OR t.date <= $3)
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
           AND ($14::date IS NULL OR (t.date, t.id) < ($14, $15))
           AND NOT EXISTS (
                 SELECT FROM unnest($16::text[], $17::text[]) AS w(lo, hi)
                 WHERE NOT EXISTS (
                   SELECT FROM transaction_terms x
                   WHERE x.tenant_id = $1 AND x.transaction_id = t.id
                     AND x.term >= w.lo AND x.term < w.hi))
         ORDER BY t.date DESC, t.id DESC
         LIMIT $18",
        tenant.as_uuid(),
        f.from,
        f.to,
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
        after.0,
        after.1,
        &lo,
        &hi,
        limit,
        driver.0,
        driver.1,
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

/// How many live rows use the terms in `[lo, hi)`: how rare a word of `q` is.
pub(crate) async fn term_rows(
    conn: &mut PgConnection,
    tenant: TenantId,
    lo: &str,
    hi: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT coalesce(sum(n), 0)::int8 AS "n!" FROM transaction_term_counts
           WHERE tenant_id = $1 AND term >= $2 AND term < $3"#,
        tenant.as_uuid(),
        lo,
        hi,
    )
    .fetch_one(conn)
    .await
}

//! The ledger routes. Thin: authorize, parse into domain types, call [`Ledger`], map; the
//! idempotency prologue of each creating `POST` lives here.

use std::sync::Arc;

use chrono::NaiveDate;
use kernel::{
    ApiResult, Currency, DisplayName, FieldErrors, Keyset, LazyJson, Problem, TenantId, Validate,
    auth::{Authorize, BearerAuth},
    concurrency,
    idempotency::{self, Fingerprint, IdempotencyKey},
};
use poem::http::StatusCode;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Header, Path, Query},
    payload::Json,
    types::MaybeUndefined,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    Ledger,
    domain::{
        Account, AccountChanges, AccountKind, Category, CategoryChanges, CategoryKind, DayBalance,
        Editor, Iban, NewAccount, NewCategory, NewTransaction, NewTransfer, Split, Transaction,
        TransactionChanges, TransactionFilter, TransactionSource, TransactionStatus, Transfer,
    },
};

/// The permission of each operation, declared beside the routes (spec: `x-permission`).
pub const PERMISSIONS: &[(&str, &str)] = &[
    ("list_accounts", ACCOUNTS_READ),
    ("create_account", ACCOUNTS_WRITE),
    ("get_account", ACCOUNTS_READ),
    ("update_account", ACCOUNTS_WRITE),
    ("delete_account", ACCOUNTS_WRITE),
    ("get_account_balances", ACCOUNTS_READ),
    ("list_categories", CATEGORIES_READ),
    ("create_category", CATEGORIES_WRITE),
    ("get_category", CATEGORIES_READ),
    ("update_category", CATEGORIES_WRITE),
    ("delete_category", CATEGORIES_WRITE),
    ("list_transactions", TRANSACTIONS_READ),
    ("create_transaction", TRANSACTIONS_WRITE),
    ("get_transaction", TRANSACTIONS_READ),
    ("update_transaction", TRANSACTIONS_WRITE),
    ("delete_transaction", TRANSACTIONS_WRITE),
    ("create_transfer", TRANSACTIONS_WRITE),
    ("link_transfer", TRANSACTIONS_WRITE),
    ("export_transactions", TRANSACTIONS_READ),
];
const ACCOUNTS_READ: &str = "accounts:read";
const ACCOUNTS_WRITE: &str = "accounts:write";
const CATEGORIES_READ: &str = "categories:read";
const CATEGORIES_WRITE: &str = "categories:write";
const TRANSACTIONS_READ: &str = "transactions:read";
const TRANSACTIONS_WRITE: &str = "transactions:write";

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Accounts, categories and transactions.
    Ledger,
}

kernel::page_object!(
    /// The accounts the caller may see, newest first.
    AccountList,
    Account
);
kernel::page_object!(
    /// The tenant's categories, newest first.
    CategoryList,
    Category
);
kernel::page_object!(
    /// Transactions matching the filters, newest first by date.
    TransactionList,
    Transaction
);

/// Checks free text of a transaction: no control characters but line breaks in notes.
fn text(errors: &mut FieldErrors, field: &str, value: &str, max: usize) {
    errors.check(
        value.chars().count() <= max,
        field,
        format!("must be at most {max} characters"),
    );
}

fn check_tags(errors: &mut FieldErrors, tags: &[String]) {
    errors.check(tags.len() <= 20, "tags", "at most 20 tags");
    for (i, tag) in tags.iter().enumerate() {
        let n = tag.trim().chars().count();
        errors.check(
            (1..=50).contains(&n) && !tag.chars().any(char::is_control),
            &format!("tags[{i}]"),
            "a tag is 1-50 characters without control characters",
        );
    }
}

fn check_splits(errors: &mut FieldErrors, splits: &[Split]) {
    errors.check(splits.len() <= 50, "splits", "at most 50 parts");
    for (i, split) in splits.iter().enumerate() {
        if let Some(memo) = &split.memo {
            text(errors, &format!("splits[{i}].memo"), memo, 500);
        }
    }
}

/// A new transaction.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTransactionBody {
    pub account_id: Uuid,
    /// The booking date.
    pub date: NaiveDate,
    pub value_date: Option<NaiveDate>,
    /// Minor units (cents) as an integer; expenses are negative.
    pub amount: i64,
    /// When given, the account's currency (anything else is refused).
    pub currency: Option<Currency>,
    #[oai(validator(max_length = 200))]
    pub merchant: Option<String>,
    #[oai(validator(max_length = 1000))]
    pub description: Option<String>,
    /// Default `posted`.
    pub status: Option<TransactionStatus>,
    /// `null` with splits.
    pub category_id: Option<Uuid>,
    /// Parts with their own categories that add up to `amount`.
    #[oai(validator(max_items = 50))]
    pub splits: Option<Vec<Split>>,
    #[oai(validator(max_length = 4000))]
    pub notes: Option<String>,
    #[oai(validator(max_items = 20))]
    pub tags: Option<Vec<String>>,
}

impl Validate for NewTransactionBody {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Some(m) = &self.merchant {
            text(errors, "merchant", m, 200);
        }
        if let Some(d) = &self.description {
            text(errors, "description", d, 1000);
        }
        if let Some(n) = &self.notes {
            text(errors, "notes", n, 4000);
        }
        check_tags(errors, self.tags.as_deref().unwrap_or_default());
        check_splits(errors, self.splits.as_deref().unwrap_or_default());
    }
}

/// Changes to a transaction; absent fields stay, `null` clears the nullable ones. A
/// person's edit of category or splits, merchant, notes, tags or date locks that field
/// against imports, syncs and rules.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionPatch {
    pub date: Option<NaiveDate>,
    pub amount: Option<i64>,
    #[oai(validator(max_length = 200))]
    #[serde(default)]
    pub merchant: MaybeUndefined<String>,
    #[oai(validator(max_length = 1000))]
    pub description: Option<String>,
    pub status: Option<TransactionStatus>,
    #[serde(default)]
    pub category_id: MaybeUndefined<Uuid>,
    #[oai(validator(max_items = 50))]
    pub splits: Option<Vec<Split>>,
    #[oai(validator(max_length = 4000))]
    #[serde(default)]
    pub notes: MaybeUndefined<String>,
    #[oai(validator(max_items = 20))]
    pub tags: Option<Vec<String>>,
}

impl Validate for TransactionPatch {
    fn validate(&self, errors: &mut FieldErrors) {
        if let MaybeUndefined::Value(m) = &self.merchant {
            text(errors, "merchant", m, 200);
        }
        if let Some(d) = &self.description {
            text(errors, "description", d, 1000);
        }
        if let MaybeUndefined::Value(n) = &self.notes {
            text(errors, "notes", n, 4000);
        }
        check_tags(errors, self.tags.as_deref().unwrap_or_default());
        check_splits(errors, self.splits.as_deref().unwrap_or_default());
    }
}

fn maybe<T>(m: MaybeUndefined<T>) -> Option<Option<T>> {
    match m {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

/// Money moved between two accounts of the tenant, in one currency.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTransferBody {
    pub from_account_id: Uuid,
    pub to_account_id: Uuid,
    /// Positive minor units, leaving `from_account_id`.
    pub amount: i64,
    pub date: NaiveDate,
    #[oai(validator(max_length = 1000))]
    pub description: Option<String>,
}

impl Validate for NewTransferBody {
    fn validate(&self, errors: &mut FieldErrors) {
        errors.check(self.amount > 0, "amount", "must be positive");
        if let Some(d) = &self.description {
            text(errors, "description", d, 1000);
        }
    }
}

/// The transaction that is the other leg.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTransferBody {
    pub counterpart_id: Uuid,
}

impl Validate for LinkTransferBody {
    fn validate(&self, _: &mut FieldErrors) {}
}

/// The list's query parameters, as received.
struct Filters {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    account_id: Option<Uuid>,
    category_id: Option<Uuid>,
    min_amount: Option<i64>,
    max_amount: Option<i64>,
    status: Option<TransactionStatus>,
    tags: Option<String>,
    source: Option<TransactionSource>,
    import_id: Option<Uuid>,
    uncategorized: Option<bool>,
    include_transfers: Option<bool>,
    q: Option<String>,
}

/// The filter the list and the export share.
fn filter_of(f: Filters) -> TransactionFilter {
    TransactionFilter {
        from: f.from,
        to: f.to,
        account_id: f.account_id,
        category_id: f.category_id,
        min_amount: f.min_amount,
        max_amount: f.max_amount,
        status: f.status,
        tags: f
            .tags
            .as_deref()
            .map(|t| {
                t.split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        source: f.source,
        import_id: f.import_id,
        uncategorized: f.uncategorized.unwrap_or(false),
        include_transfers: f.include_transfers.unwrap_or(true),
        q: f.q,
    }
}

/// The format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum ExportFormat {
    Csv,
}

#[derive(ApiResponse)]
pub enum ExportResponse {
    /// RFC 4180 CSV in UTF-8 with a header row; amounts as decimals in the currency's
    /// exponent; each split follows its transaction as a row of type `split`.
    #[oai(status = 200, content_type = "text/csv")]
    Csv(poem_openapi::payload::Binary<poem::Body>),
}

#[derive(ApiResponse)]
pub enum TransferCreated {
    /// Created: two legs.
    #[oai(status = 201)]
    Created(Json<Transfer>),
}

#[derive(ApiResponse)]
pub enum TransactionCreated {
    /// Created; the account's balances moved with it.
    #[oai(status = 201)]
    Created(Json<Transaction>, #[oai(header = "Location")] String),
}

/// A new account.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccountBody {
    /// 1–200 characters.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    pub kind: AccountKind,
    /// ISO 4217; every transaction of the account is in it.
    pub currency: Currency,
    /// Minor units (cents); default 0.
    pub opening_balance: Option<i64>,
    /// Default: today.
    pub opening_date: Option<NaiveDate>,
    /// Spaces allowed; stored normalised after the ISO 13616 check.
    #[oai(validator(max_length = 64))]
    pub iban: Option<String>,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub institution: Option<String>,
}

impl Validate for NewAccountBody {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Err(e) = DisplayName::parse("name", &self.name) {
            errors.push(e);
        }
        if let Some(Err(e)) = self.iban.as_deref().map(|i| Iban::parse("iban", i)) {
            errors.push(e);
        }
        if let Some(Err(e)) = self
            .institution
            .as_deref()
            .map(|i| DisplayName::parse("institution", i))
        {
            errors.push(e);
        }
    }
}

/// Changes to an account; absent fields stay, `null` clears `iban` and `institution`.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    #[oai(validator(max_length = 64))]
    #[serde(default)]
    pub iban: MaybeUndefined<String>,
    #[oai(validator(min_length = 1, max_length = 200))]
    #[serde(default)]
    pub institution: MaybeUndefined<String>,
    /// `true` archives the account (it keeps its transactions), `false` restores it.
    pub archived: Option<bool>,
}

impl Validate for AccountPatch {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Some(Err(e)) = self.name.as_deref().map(|n| DisplayName::parse("name", n)) {
            errors.push(e);
        }
        if let MaybeUndefined::Value(iban) = &self.iban
            && let Err(e) = Iban::parse("iban", iban)
        {
            errors.push(e);
        }
        if let MaybeUndefined::Value(institution) = &self.institution
            && let Err(e) = DisplayName::parse("institution", institution)
        {
            errors.push(e);
        }
    }
}

/// A new category.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCategoryBody {
    /// 1–200 characters, unique at its level.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    pub kind: CategoryKind,
    /// A top-level category of the same kind, to make this a subcategory.
    pub parent_id: Option<Uuid>,
}

impl Validate for NewCategoryBody {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Err(e) = DisplayName::parse("name", &self.name) {
            errors.push(e);
        }
    }
}

/// Changes to a category.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryPatch {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    /// `true` archives it (kept on its transactions, hidden from pickers).
    pub archived: Option<bool>,
}

impl Validate for CategoryPatch {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Some(Err(e)) = self.name.as_deref().map(|n| DisplayName::parse("name", n)) {
            errors.push(e);
        }
    }
}

#[derive(ApiResponse)]
pub enum AccountCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<Account>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum CategoryCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<Category>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

/// A domain type from a field `Validate` already checked.
fn parsed<T>(r: Result<T, kernel::FieldError>) -> Result<T, Problem> {
    r.map_err(|e| Problem::validation(vec![e]))
}

/// The ledger routes.
pub struct LedgerApi {
    authz: Arc<dyn Authorize>,
    ledger: Ledger,
    cursors: kernel::CursorSigner,
}

impl LedgerApi {
    pub fn new(authz: Arc<dyn Authorize>, ledger: Ledger, cursors: kernel::CursorSigner) -> Self {
        LedgerApi {
            authz,
            ledger,
            cursors,
        }
    }

    fn keyset(
        &self,
        operation: &str,
        tenant: TenantId,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<Keyset, Problem> {
        Keyset::parse(&self.cursors, operation, tenant, limit, cursor)
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Ledger")]
impl LedgerApi {
    /// The accounts the caller may see, with their balances.
    #[oai(
        path = "/tenants/:tenant_id/accounts",
        method = "get",
        operation_id = "list_accounts"
    )]
    async fn list_accounts(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<AccountList>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, ACCOUNTS_READ)
            .await?;
        let page = self.keyset("list_accounts", tenant_id.0, limit.0, cursor.0.as_deref())?;
        let accounts = self.ledger.accounts(&mut tx, &page).await?;
        tx.commit().await?;
        Ok(Json(accounts.into()))
    }

    /// Opens an account. Its balances start at the opening balance and move with every
    /// transaction in the same database transaction.
    #[oai(
        path = "/tenants/:tenant_id/accounts",
        method = "post",
        operation_id = "create_account"
    )]
    async fn create_account(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        body: LazyJson<NewAccountBody>,
    ) -> ApiResult<AccountCreated> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, ACCOUNTS_WRITE)
            .await?;
        let body = body.parse()?;
        let key = IdempotencyKey::parse_optional(key.0.as_deref())?;
        let fingerprint = Fingerprint::new("create_account", body.digest());
        let location = |a: &Account| format!("/api/v1/tenants/{}/accounts/{}", tenant_id.0, a.id);
        if let Some(a) = idempotency::claim::<_, Account>(
            &mut tx,
            key.as_ref(),
            fingerprint,
            StatusCode::CREATED,
        )
        .await?
        {
            let at = location(&a);
            return Ok(AccountCreated::Created(Json(a), at));
        }
        let new = NewAccount {
            name: parsed(DisplayName::parse("name", &body.name))?,
            kind: body.kind,
            currency: body.currency,
            opening_balance: body.opening_balance.unwrap_or(0),
            opening_date: body
                .opening_date
                .unwrap_or_else(|| chrono::Utc::now().date_naive()),
            iban: body
                .iban
                .as_deref()
                .map(|i| parsed(Iban::parse("iban", i)))
                .transpose()?,
            institution: body
                .institution
                .as_deref()
                .map(|i| parsed(DisplayName::parse("institution", i)))
                .transpose()?,
        };
        let account = self.ledger.create_account(&mut tx, new).await?;
        idempotency::commit(tx, key.as_ref(), StatusCode::CREATED, &account).await?;
        let at = location(&account);
        Ok(AccountCreated::Created(Json(account), at))
    }

    /// An account with its balances.
    #[oai(
        path = "/tenants/:tenant_id/accounts/:id",
        method = "get",
        operation_id = "get_account"
    )]
    async fn get_account(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Account>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, ACCOUNTS_READ)
            .await?;
        let account = self.ledger.account(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Json(account))
    }

    /// Renames an account, sets its IBAN or institution, archives or restores it.
    #[oai(
        path = "/tenants/:tenant_id/accounts/:id",
        method = "patch",
        operation_id = "update_account"
    )]
    async fn update_account(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: LazyJson<AccountPatch>,
    ) -> ApiResult<Json<Account>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, ACCOUNTS_WRITE)
            .await?;
        let body = body.parse()?;
        let expected = concurrency::if_match(if_match.0.as_deref())?;
        let changes = AccountChanges {
            name: body
                .name
                .as_deref()
                .map(|n| parsed(DisplayName::parse("name", n)))
                .transpose()?,
            iban: match &body.iban {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(i) => Some(Some(parsed(Iban::parse("iban", i))?)),
            },
            institution: match &body.institution {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(i) => {
                    Some(Some(parsed(DisplayName::parse("institution", i))?))
                }
            },
            archived: body.archived,
        };
        let account = self
            .ledger
            .update_account(&mut tx, id.0, expected, changes)
            .await?;
        tx.commit().await?;
        Ok(Json(account))
    }

    /// Deletes an account without transactions; one with transactions is
    /// `409 account_in_use` (archive it instead).
    #[oai(
        path = "/tenants/:tenant_id/accounts/:id",
        method = "delete",
        operation_id = "delete_account"
    )]
    async fn delete_account(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Deleted> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, ACCOUNTS_WRITE)
            .await?;
        self.ledger.delete_account(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Deleted::Deleted)
    }

    /// The account's closing balances, posted and with pending transactions, for each day
    /// from `from` to `to` (default: the last 30 days; at most five years).
    #[oai(
        path = "/tenants/:tenant_id/accounts/:id/balances",
        method = "get",
        operation_id = "get_account_balances"
    )]
    async fn balances(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        from: Query<Option<NaiveDate>>,
        to: Query<Option<NaiveDate>>,
    ) -> ApiResult<Json<Vec<DayBalance>>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, ACCOUNTS_READ)
            .await?;
        let series = self.ledger.balances(&mut tx, id.0, from.0, to.0).await?;
        tx.commit().await?;
        Ok(Json(series))
    }

    /// The tenant's categories (a default business set to start with).
    #[oai(
        path = "/tenants/:tenant_id/categories",
        method = "get",
        operation_id = "list_categories"
    )]
    async fn list_categories(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<CategoryList>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, CATEGORIES_READ)
            .await?;
        let page = self.keyset("list_categories", tenant_id.0, limit.0, cursor.0.as_deref())?;
        let categories = self.ledger.categories(&mut tx, &page).await?;
        tx.commit().await?;
        Ok(Json(categories.into()))
    }

    /// Creates a category, or a subcategory of a top-level one (two levels at most).
    #[oai(
        path = "/tenants/:tenant_id/categories",
        method = "post",
        operation_id = "create_category"
    )]
    async fn create_category(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        body: LazyJson<NewCategoryBody>,
    ) -> ApiResult<CategoryCreated> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, CATEGORIES_WRITE)
            .await?;
        let body = body.parse()?;
        let key = IdempotencyKey::parse_optional(key.0.as_deref())?;
        let fingerprint = Fingerprint::new("create_category", body.digest());
        let location =
            |c: &Category| format!("/api/v1/tenants/{}/categories/{}", tenant_id.0, c.id);
        if let Some(c) = idempotency::claim::<_, Category>(
            &mut tx,
            key.as_ref(),
            fingerprint,
            StatusCode::CREATED,
        )
        .await?
        {
            let at = location(&c);
            return Ok(CategoryCreated::Created(Json(c), at));
        }
        let new = NewCategory {
            name: parsed(DisplayName::parse("name", &body.name))?,
            kind: body.kind,
            parent_id: body.parent_id,
        };
        let category = self.ledger.create_category(&mut tx, new).await?;
        idempotency::commit(tx, key.as_ref(), StatusCode::CREATED, &category).await?;
        let at = location(&category);
        Ok(CategoryCreated::Created(Json(category), at))
    }

    /// A category.
    #[oai(
        path = "/tenants/:tenant_id/categories/:id",
        method = "get",
        operation_id = "get_category"
    )]
    async fn get_category(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Category>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, CATEGORIES_READ)
            .await?;
        let category = self.ledger.category(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Json(category))
    }

    /// Renames, archives or restores a category.
    #[oai(
        path = "/tenants/:tenant_id/categories/:id",
        method = "patch",
        operation_id = "update_category"
    )]
    async fn update_category(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: LazyJson<CategoryPatch>,
    ) -> ApiResult<Json<Category>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, CATEGORIES_WRITE)
            .await?;
        let body = body.parse()?;
        let expected = concurrency::if_match(if_match.0.as_deref())?;
        let changes = CategoryChanges {
            name: body
                .name
                .as_deref()
                .map(|n| parsed(DisplayName::parse("name", n)))
                .transpose()?,
            archived: body.archived,
        };
        let category = self
            .ledger
            .update_category(&mut tx, id.0, expected, changes)
            .await?;
        tx.commit().await?;
        Ok(Json(category))
    }

    /// Deletes a category nothing uses; `?reassign_to=` moves its transactions and splits
    /// to another category first, in the same transaction. In use: `409 category_in_use`.
    #[oai(
        path = "/tenants/:tenant_id/categories/:id",
        method = "delete",
        operation_id = "delete_category"
    )]
    async fn delete_category(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        reassign_to: Query<Option<Uuid>>,
    ) -> ApiResult<Deleted> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, CATEGORIES_WRITE)
            .await?;
        self.ledger
            .delete_category(&mut tx, id.0, reassign_to.0)
            .await?;
        tx.commit().await?;
        Ok(Deleted::Deleted)
    }

    /// Transactions matching the filters, newest first by date. `q` finds words and word
    /// beginnings in the merchant, description and notes (all words, any case or accents).
    #[oai(
        path = "/tenants/:tenant_id/transactions",
        method = "get",
        operation_id = "list_transactions"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list_transactions(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        from: Query<Option<NaiveDate>>,
        to: Query<Option<NaiveDate>>,
        account_id: Query<Option<Uuid>>,
        category_id: Query<Option<Uuid>>,
        min_amount: Query<Option<i64>>,
        max_amount: Query<Option<i64>>,
        status: Query<Option<TransactionStatus>>,
        /// Comma-separated; every one must be on the transaction.
        tags: Query<Option<String>>,
        source: Query<Option<TransactionSource>>,
        import_id: Query<Option<Uuid>>,
        /// Only transactions with neither a category nor splits.
        uncategorized: Query<Option<bool>>,
        /// Default `true`.
        include_transfers: Query<Option<bool>>,
        #[oai(validator(max_length = 200))] q: Query<Option<String>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<TransactionList>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, TRANSACTIONS_READ)
            .await?;
        let filter = filter_of(Filters {
            from: from.0,
            to: to.0,
            account_id: account_id.0,
            category_id: category_id.0,
            min_amount: min_amount.0,
            max_amount: max_amount.0,
            status: status.0,
            tags: tags.0,
            source: source.0,
            import_id: import_id.0,
            uncategorized: uncategorized.0,
            include_transfers: include_transfers.0,
            q: q.0,
        });
        let scope = format!("{}:{}", tenant_id.0, filter.canonical());
        let page = Keyset::parse(
            &self.cursors,
            "list_transactions",
            scope,
            limit.0,
            cursor.0.as_deref(),
        )?;
        let list = self.ledger.transactions(&mut tx, &filter, &page).await?;
        tx.commit().await?;
        Ok(Json(list.into()))
    }

    /// Enters a transaction by hand; the account's balances move with it. Amounts are
    /// integers of minor units in the account's currency.
    #[oai(
        path = "/tenants/:tenant_id/transactions",
        method = "post",
        operation_id = "create_transaction"
    )]
    async fn create_transaction(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        body: LazyJson<NewTransactionBody>,
    ) -> ApiResult<TransactionCreated> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, TRANSACTIONS_WRITE)
            .await?;
        let body = body.parse()?;
        let key = IdempotencyKey::parse_optional(key.0.as_deref())?;
        let fingerprint = Fingerprint::new("create_transaction", body.digest());
        let location =
            |t: &Transaction| format!("/api/v1/tenants/{}/transactions/{}", tenant_id.0, t.id);
        if let Some(t) = idempotency::claim::<_, Transaction>(
            &mut tx,
            key.as_ref(),
            fingerprint,
            StatusCode::CREATED,
        )
        .await?
        {
            let at = location(&t);
            return Ok(TransactionCreated::Created(Json(t), at));
        }
        let body = body.into_inner();
        let new = NewTransaction {
            account_id: body.account_id,
            date: body.date,
            value_date: body.value_date,
            amount: body.amount,
            currency: body.currency,
            merchant: body.merchant,
            description: body.description.unwrap_or_default(),
            status: body.status.unwrap_or(TransactionStatus::Posted),
            category_id: body.category_id,
            splits: body.splits.unwrap_or_default(),
            notes: body.notes,
            tags: body.tags.unwrap_or_default(),
            external_id: None,
        };
        let created = self
            .ledger
            .create_transaction(&mut tx, new, TransactionSource::Manual)
            .await?;
        idempotency::commit(tx, key.as_ref(), StatusCode::CREATED, &created).await?;
        let at = location(&created);
        Ok(TransactionCreated::Created(Json(created), at))
    }

    /// A transaction with its splits and how it got its category.
    #[oai(
        path = "/tenants/:tenant_id/transactions/:id",
        method = "get",
        operation_id = "get_transaction"
    )]
    async fn get_transaction(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Transaction>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, TRANSACTIONS_READ)
            .await?;
        let t = self.ledger.transaction(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Json(t))
    }

    /// Changes a transaction (category or splits, merchant, notes, tags, date, amount,
    /// status). The fields a person edits are locked against imports, syncs and rules.
    #[oai(
        path = "/tenants/:tenant_id/transactions/:id",
        method = "patch",
        operation_id = "update_transaction"
    )]
    async fn update_transaction(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: LazyJson<TransactionPatch>,
    ) -> ApiResult<Json<Transaction>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, TRANSACTIONS_WRITE)
            .await?;
        let body = body.parse()?.into_inner();
        let expected = concurrency::if_match(if_match.0.as_deref())?;
        let changes = TransactionChanges {
            date: body.date,
            amount: body.amount,
            merchant: maybe(body.merchant),
            description: body.description,
            status: body.status,
            category_id: maybe(body.category_id),
            splits: body.splits,
            notes: maybe(body.notes),
            tags: body.tags,
        };
        let t = self
            .ledger
            .update_transaction(&mut tx, id.0, expected, changes, Editor::Person)
            .await?;
        tx.commit().await?;
        Ok(Json(t))
    }

    /// Deletes a transaction (soft, audited). It leaves the balances, and stays known to
    /// deduplication: an import or a sync of the same row does not bring it back.
    #[oai(
        path = "/tenants/:tenant_id/transactions/:id",
        method = "delete",
        operation_id = "delete_transaction"
    )]
    async fn delete_transaction(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Deleted> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, TRANSACTIONS_WRITE)
            .await?;
        self.ledger.delete_transaction(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Deleted::Deleted)
    }

    /// Moves money between two accounts of the tenant (one currency): two linked legs that
    /// never count as spending or income.
    #[oai(
        path = "/tenants/:tenant_id/transfers",
        method = "post",
        operation_id = "create_transfer"
    )]
    async fn create_transfer(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        body: LazyJson<NewTransferBody>,
    ) -> ApiResult<TransferCreated> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, TRANSACTIONS_WRITE)
            .await?;
        let body = body.parse()?;
        let key = IdempotencyKey::parse_optional(key.0.as_deref())?;
        let fingerprint = Fingerprint::new("create_transfer", body.digest());
        if let Some(t) = idempotency::claim::<_, Transfer>(
            &mut tx,
            key.as_ref(),
            fingerprint,
            StatusCode::CREATED,
        )
        .await?
        {
            return Ok(TransferCreated::Created(Json(t)));
        }
        let body = body.into_inner();
        let new = NewTransfer {
            from_account_id: body.from_account_id,
            to_account_id: body.to_account_id,
            amount: body.amount,
            date: body.date,
            description: body.description.unwrap_or_default(),
        };
        let transfer = self.ledger.create_transfer(&mut tx, new).await?;
        idempotency::commit(tx, key.as_ref(), StatusCode::CREATED, &transfer).await?;
        Ok(TransferCreated::Created(Json(transfer)))
    }

    /// Links an existing pair as one transfer: opposite amounts in two accounts of the
    /// tenant, one currency, neither linked yet.
    #[oai(
        path = "/tenants/:tenant_id/transactions/:id/link-transfer",
        method = "post",
        operation_id = "link_transfer"
    )]
    async fn link_transfer(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        body: LazyJson<LinkTransferBody>,
    ) -> ApiResult<Json<Transfer>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, TRANSACTIONS_WRITE)
            .await?;
        let counterpart = body.parse()?.counterpart_id;
        let transfer = self
            .ledger
            .link_transfer(&mut tx, id.0, counterpart)
            .await?;
        tx.commit().await?;
        Ok(Json(transfer))
    }

    /// Every transaction matching the list's filters, streamed as CSV (constant memory on
    /// the server, one snapshot); audited as `transaction.exported` with the filters and the
    /// row count.
    #[oai(
        path = "/tenants/:tenant_id/transactions/export",
        method = "get",
        operation_id = "export_transactions"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn export_transactions(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        format: Query<Option<ExportFormat>>,
        from: Query<Option<NaiveDate>>,
        to: Query<Option<NaiveDate>>,
        account_id: Query<Option<Uuid>>,
        category_id: Query<Option<Uuid>>,
        min_amount: Query<Option<i64>>,
        max_amount: Query<Option<i64>>,
        status: Query<Option<TransactionStatus>>,
        /// Comma-separated; every one must be on the transaction.
        tags: Query<Option<String>>,
        source: Query<Option<TransactionSource>>,
        import_id: Query<Option<Uuid>>,
        uncategorized: Query<Option<bool>>,
        include_transfers: Query<Option<bool>>,
        #[oai(validator(max_length = 200))] q: Query<Option<String>>,
    ) -> ApiResult<ExportResponse> {
        let tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, TRANSACTIONS_READ)
            .await?;
        let _csv = format.0.unwrap_or(ExportFormat::Csv);
        let filter = filter_of(Filters {
            from: from.0,
            to: to.0,
            account_id: account_id.0,
            category_id: category_id.0,
            min_amount: min_amount.0,
            max_amount: max_amount.0,
            status: status.0,
            tags: tags.0,
            source: source.0,
            import_id: import_id.0,
            uncategorized: uncategorized.0,
            include_transfers: include_transfers.0,
            q: q.0,
        });
        self.ledger.check_filter(&filter)?;
        let stream = futures_util::StreamExt::map(self.ledger.export(tx, filter), |chunk| {
            chunk
                .map(String::into_bytes)
                .map_err(|e| std::io::Error::other(e.to_string()))
        });
        Ok(ExportResponse::Csv(poem_openapi::payload::Binary(
            poem::Body::from_bytes_stream(stream),
        )))
    }
}

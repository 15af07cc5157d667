//! The ledger's rules. Every function takes the caller's `TenantTx` first (as a route, a
//! job, an import or the bot opened it) and domain types; none sees HTTP, a token or a pool.

use audit::{NewEvent, Record};
use chrono::{Days, NaiveDate, Utc};
use futures_util::future::BoxFuture;
use kernel::{Keyset, Page, Problem, TenantTx, concurrency};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    LedgerError,
    domain::{
        Account, AccountChanges, Categorization, Category, CategoryChanges, DEFAULT_CATEGORIES,
        DayBalance, Editor, NewAccount, NewCategory, NewTransaction, NewTransfer, Split,
        Transaction, TransactionChanges, TransactionFilter, TransactionSource, TransactionStatus,
        Transfer, fold, normalise_merchant, normalise_tags, terms,
    },
    store,
};

/// The longest balance series one request reads: five years of days.
pub const MAX_SERIES_DAYS: u64 = 5 * 366;

/// The ledger service: accounts, categories and transactions.
#[derive(Clone, Default)]
pub struct Ledger {
    /// How `q` picks its plan.
    plan: SearchPlan,
    /// Told, in the writing transaction, of transactions that arrive uncategorised.
    pub(crate) arrivals: Option<std::sync::Arc<dyn crate::Arrivals>>,
    /// The plan's monthly transaction limit; `None` checks none (a module's own tests).
    limits: Option<std::sync::Arc<dyn kernel::limits::Limits>>,
    /// Told of every change to transactions (budgets re-evaluate).
    pub(crate) changes: Option<std::sync::Arc<dyn crate::Changes>>,
}

/// How a search with `q` reads: [`SearchPlan::Auto`] in production; tests force each plan
/// to check they answer alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchPlan {
    /// By the words' terms (see [`Ledger::transactions`]).
    #[default]
    Auto,
    /// From the term index whenever a word has at most [`MAX_DRIVING_TERMS`] terms.
    TermIndex,
    /// Walking the date index.
    DateWalk,
}

/// The changed fields of an update, before and after, for its audit event.
fn changes(before: &Value, after: &Value, fields: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for field in fields {
        if before[field] != after[field] {
            out.insert(
                field.to_string(),
                json!({ "from": before[field], "to": after[field] }),
            );
        }
    }
    Value::Object(out)
}

/// Archives (`Some(true)`, keeping the first time) or restores (`Some(false)`).
fn archive(archived_at: &mut Option<chrono::DateTime<Utc>>, archived: Option<bool>) {
    match archived {
        Some(true) if archived_at.is_none() => *archived_at = Some(Utc::now()),
        Some(false) => *archived_at = None,
        _ => {}
    }
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// A ledger whose searches take `plan` (tests drive every plan with small data).
    pub fn with_search_plan(plan: SearchPlan) -> Ledger {
        Ledger {
            plan,
            ..Ledger::default()
        }
    }

    /// A ledger that tells `arrivals` of every transaction that arrives uncategorised (a
    /// manual entry, an import's promotion, a sync page), inside the writing transaction:
    /// the categorization pipeline queues its job there, so it runs only if they commit.
    pub fn with_arrivals(self, arrivals: std::sync::Arc<dyn crate::Arrivals>) -> Ledger {
        Ledger {
            arrivals: Some(arrivals),
            ..self
        }
    }

    /// A ledger that checks the plan's `transactions_per_month` before it writes any:
    /// entered by hand or imported, over the limit is `402 plan_limit_reached` and nothing
    /// is written; a bank sync is counted but never refused (bank data is never dropped).
    pub fn with_limits(self, limits: std::sync::Arc<dyn kernel::limits::Limits>) -> Ledger {
        Ledger {
            limits: Some(limits),
            ..self
        }
    }

    /// A ledger that tells `changes` of every change to transactions, in the writing
    /// transaction.
    pub fn with_changes(self, changes: std::sync::Arc<dyn crate::Changes>) -> Ledger {
        Ledger {
            changes: Some(changes),
            ..self
        }
    }

    /// Counts `n` new transactions against the plan, refusing past it unless they come
    /// from a bank sync.
    pub(crate) async fn count_new(
        &self,
        tx: &mut TenantTx,
        source: TransactionSource,
        n: usize,
    ) -> Result<(), LedgerError> {
        let Some(limits) = &self.limits else {
            return Ok(());
        };
        let limit = kernel::limits::Limit::TransactionsPerMonth;
        if source == TransactionSource::Sync {
            limits.count(tx, limit, n as i64).await?;
        } else {
            limits.admit(tx, limit, n as i64).await?;
        }
        Ok(())
    }

    /// Whether `n` more transactions fit in the plan's month now (nothing is counted): an
    /// import's commit answers `402` at once rather than in its job.
    pub async fn check_room(&self, tx: &mut TenantTx, n: usize) -> Result<(), LedgerError> {
        if let Some(limits) = &self.limits {
            limits
                .check(tx, kernel::limits::Limit::TransactionsPerMonth, n as i64)
                .await?;
        }
        Ok(())
    }

    /// Opens an account; its balances start at the opening balance.
    pub async fn create_account(
        &self,
        tx: &mut TenantTx,
        new: NewAccount,
    ) -> Result<Account, LedgerError> {
        let tenant = tx.tenant_id();
        let account = store::insert_account(
            tx.conn(),
            tenant,
            store::NewAccountRow {
                id: Uuid::now_v7(),
                name: new.name.as_str(),
                kind: new.kind.as_str(),
                currency: new.currency.code(),
                opening_balance: new.opening_balance,
                opening_date: new.opening_date,
                iban: new.iban.as_ref().map(|i| i.as_str()),
                institution: new.institution.as_ref().map(|i| i.as_str()),
            },
        )
        .await?;
        tx.record(
            NewEvent::new("account.created")
                .resource("account", account.id)
                .payload(json!({
                    "kind": account.kind,
                    "currency": account.currency,
                    "opening_balance": account.opening_balance,
                })),
        );
        Ok(account)
    }

    /// The accounts the caller may see, newest first.
    pub async fn accounts(
        &self,
        tx: &mut TenantTx,
        page: &Keyset,
    ) -> Result<Page<Account>, LedgerError> {
        let tenant = tx.tenant_id();
        let rows = store::accounts(tx.conn(), tenant, page.after(), page.fetch_limit()).await?;
        Ok(page.page(rows, |a| (a.created_at, a.id)))
    }

    /// One account (`NotFound` outside the caller's accounts too).
    pub async fn account(&self, tx: &mut TenantTx, id: Uuid) -> Result<Account, LedgerError> {
        let tenant = tx.tenant_id();
        store::account(tx.conn(), tenant, id, false)
            .await?
            .ok_or(LedgerError::NotFound)
    }

    /// Renames an account, sets or clears its IBAN and institution, archives or restores
    /// it; `expected` is the `If-Match` version.
    pub async fn update_account(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        expected: Option<i64>,
        changes_to: AccountChanges,
    ) -> Result<Account, LedgerError> {
        let tenant = tx.tenant_id();
        let current = store::account(tx.conn(), tenant, id, true)
            .await?
            .ok_or(LedgerError::NotFound)?;
        concurrency::check(expected, current.version)?;
        let mut next = current.clone();
        if let Some(name) = changes_to.name {
            next.name = name.into_inner();
        }
        if let Some(iban) = changes_to.iban {
            next.iban = iban.map(|i| i.as_str().to_string());
        }
        if let Some(institution) = changes_to.institution {
            next.institution = institution.map(|i| i.into_inner());
        }
        archive(&mut next.archived_at, changes_to.archived);
        let updated = store::update_account(tx.conn(), tenant, &next).await?;
        let (before, after) = (json!(current), json!(updated));
        tx.record(
            NewEvent::new("account.updated")
                .resource("account", id)
                .payload(json!({
                    "changes": changes(&before, &after, &["name", "iban", "institution", "archived_at"]),
                })),
        );
        Ok(updated)
    }

    /// Deletes an account without transactions; one with any (deleted ones too) is
    /// `AccountInUse`: archive it instead.
    pub async fn delete_account(&self, tx: &mut TenantTx, id: Uuid) -> Result<(), LedgerError> {
        let tenant = tx.tenant_id();
        store::account(tx.conn(), tenant, id, true)
            .await?
            .ok_or(LedgerError::NotFound)?;
        let transactions = store::account_transactions(tx.conn(), tenant, id).await?;
        if transactions > 0 {
            return Err(LedgerError::AccountInUse { transactions });
        }
        store::delete_account(tx.conn(), tenant, id).await?;
        tx.record(NewEvent::new("account.deleted").resource("account", id));
        Ok(())
    }

    /// An account's closing balances for each day from `from` to `to` (both included;
    /// defaults: the last 30 days up to today).
    pub async fn balances(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Vec<DayBalance>, LedgerError> {
        let to = to.unwrap_or_else(|| Utc::now().date_naive());
        let from = from.unwrap_or_else(|| to - Days::new(30));
        if from > to {
            return Err(LedgerError::invalid("from", "must not be after `to`"));
        }
        if (to - from).num_days() as u64 >= MAX_SERIES_DAYS {
            return Err(LedgerError::invalid(
                "from",
                format!("a series covers at most {MAX_SERIES_DAYS} days"),
            ));
        }
        let account = self.account(tx, id).await?;
        let tenant = tx.tenant_id();
        Ok(store::day_balances(tx.conn(), tenant, &account, from, to).await?)
    }

    /// The default business categories, created with every tenant (in its creating
    /// transaction, through [`kernel::TenantSetup`]).
    pub async fn seed_categories(&self, tx: &mut TenantTx) -> Result<(), LedgerError> {
        let tenant = tx.tenant_id();
        for (name, kind, children) in DEFAULT_CATEGORIES {
            let parent = Uuid::now_v7();
            store::insert_category(tx.conn(), tenant, parent, name, kind.as_str(), None).await?;
            for child in *children {
                store::insert_category(
                    tx.conn(),
                    tenant,
                    Uuid::now_v7(),
                    child,
                    kind.as_str(),
                    Some(parent),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The tenant's categories, newest first.
    pub async fn categories(
        &self,
        tx: &mut TenantTx,
        page: &Keyset,
    ) -> Result<Page<Category>, LedgerError> {
        let tenant = tx.tenant_id();
        let rows = store::categories(tx.conn(), tenant, page.after(), page.fetch_limit()).await?;
        Ok(page.page(rows, |c| (c.created_at, c.id)))
    }

    /// One category.
    pub async fn category(&self, tx: &mut TenantTx, id: Uuid) -> Result<Category, LedgerError> {
        let tenant = tx.tenant_id();
        store::category(tx.conn(), tenant, id)
            .await?
            .ok_or(LedgerError::NotFound)
    }

    /// Creates a category; a subcategory's parent is a top-level category of the same kind
    /// (two levels at most). A name is unique per level.
    pub async fn create_category(
        &self,
        tx: &mut TenantTx,
        new: NewCategory,
    ) -> Result<Category, LedgerError> {
        let tenant = tx.tenant_id();
        if let Some(parent) = new.parent_id {
            let parent = store::category(tx.conn(), tenant, parent)
                .await?
                .ok_or_else(|| {
                    LedgerError::invalid("parent_id", "is no category of this tenant")
                })?;
            if parent.parent_id.is_some() {
                return Err(LedgerError::invalid(
                    "parent_id",
                    "is a subcategory itself: categories have two levels at most",
                ));
            }
            if parent.kind != new.kind {
                return Err(LedgerError::invalid(
                    "kind",
                    format!("must be the parent's kind, `{}`", parent.kind.as_str()),
                ));
            }
        }
        let category = store::insert_category(
            tx.conn(),
            tenant,
            Uuid::now_v7(),
            new.name.as_str(),
            new.kind.as_str(),
            new.parent_id,
        )
        .await?
        .ok_or_else(|| LedgerError::invalid("name", "is taken at this level"))?;
        tx.record(
            NewEvent::new("category.created")
                .resource("category", category.id)
                .payload(json!({ "kind": category.kind, "parent_id": category.parent_id })),
        );
        Ok(category)
    }

    /// Renames, archives or restores a category.
    pub async fn update_category(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        expected: Option<i64>,
        changes_to: CategoryChanges,
    ) -> Result<Category, LedgerError> {
        let tenant = tx.tenant_id();
        let current = store::category(tx.conn(), tenant, id)
            .await?
            .ok_or(LedgerError::NotFound)?;
        concurrency::check(expected, current.version)?;
        let mut next = current.clone();
        if let Some(name) = changes_to.name {
            next.name = name.into_inner();
        }
        archive(&mut next.archived_at, changes_to.archived);
        let updated = store::update_category(tx.conn(), tenant, &next)
            .await?
            .ok_or_else(|| LedgerError::invalid("name", "is taken at this level"))?;
        let (before, after) = (json!(current), json!(updated));
        tx.record(
            NewEvent::new("category.updated")
                .resource("category", id)
                .payload(json!({ "changes": changes(&before, &after, &["name", "archived_at"]) })),
        );
        Ok(updated)
    }

    /// Deletes a category no transaction, split or subcategory uses; with `reassign_to`, its
    /// transactions and splits move there first, in the same transaction.
    pub async fn delete_category(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        reassign_to: Option<Uuid>,
    ) -> Result<(), LedgerError> {
        let tenant = tx.tenant_id();
        store::category(tx.conn(), tenant, id)
            .await?
            .ok_or(LedgerError::NotFound)?;
        let mut moved = 0;
        if let Some(target) = reassign_to {
            if target == id {
                return Err(LedgerError::invalid(
                    "reassign_to",
                    "must be another category",
                ));
            }
            store::category(tx.conn(), tenant, target)
                .await?
                .ok_or_else(|| {
                    LedgerError::invalid("reassign_to", "is no category of this tenant")
                })?;
            moved = store::reassign_category(tx.conn(), tenant, id, target).await?;
        }
        let usage = store::category_use(tx.conn(), tenant, id).await?;
        if usage.transactions + usage.splits + usage.children > 0 {
            return Err(LedgerError::CategoryInUse {
                transactions: usage.transactions,
                splits: usage.splits,
                children: usage.children,
            });
        }
        // Rows outside the caller's account scope are invisible to the count above; the
        // foreign key still sees them, and says so.
        if let Err(e) = store::delete_category(tx.conn(), tenant, id).await {
            return Err(match &e {
                sqlx::Error::Database(d) if d.code().as_deref() == Some("23503") => {
                    LedgerError::CategoryInUseElsewhere
                }
                _ => e.into(),
            });
        }
        tx.record(
            NewEvent::new("category.deleted")
                .resource("category", id)
                .payload(json!({ "reassigned_to": reassign_to, "moved": moved })),
        );
        Ok(())
    }
}

impl kernel::TenantSetup for Ledger {
    fn set_up<'a>(&'a self, tx: &'a mut TenantTx) -> BoxFuture<'a, Result<(), Problem>> {
        Box::pin(async move { Ok(self.seed_categories(tx).await?) })
    }
}

/// The end of the range of terms that start with `word` (C collation: byte order).
fn prefix_range(word: &str) -> (String, String) {
    (word.to_string(), format!("{word}\u{10FFFF}"))
}

fn view(row: store::TransactionRow, splits: Vec<Split>) -> Transaction {
    Transaction {
        id: row.id,
        account_id: row.account_id,
        date: row.date,
        value_date: row.value_date,
        amount: row.amount,
        currency: kernel::Currency::parse(&row.currency).expect("the table holds ISO 4217 codes"),
        merchant: row.merchant,
        description: row.description,
        status: TransactionStatus::from_db(&row.status),
        category_id: row.category_id,
        splits,
        categorization: row
            .categorization
            .and_then(|c| serde_json::from_value(c).ok()),
        notes: row.notes,
        tags: row.tags,
        source: TransactionSource::from_db(&row.source),
        external_id: row.external_id,
        import_id: row.import_id,
        transfer_id: row.transfer_id,
        locked_fields: row.locked_fields,
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// What a transaction adds to its account's balances: `(posted, pending)`.
fn contribution(status: &str, amount: i64) -> (i64, i64) {
    if status == "pending" {
        (0, amount)
    } else {
        (amount, 0)
    }
}

fn person_categorization(category: Option<Uuid>) -> serde_json::Value {
    json!(Categorization {
        category_id: category,
        source: "person".into(),
        confidence: 1.0,
        reasoning: "Chosen by a person.".into(),
        rule_id: None,
        neighbours: None,
        model: None,
        decided_at: Utc::now(),
    })
}

impl Ledger {
    /// The splits of `rows`, by transaction.
    pub(crate) async fn with_splits(
        &self,
        tx: &mut TenantTx,
        rows: Vec<store::TransactionRow>,
    ) -> Result<Vec<Transaction>, LedgerError> {
        let tenant = tx.tenant_id();
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let mut splits = store::splits_of(tx.conn(), tenant, &ids).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let (mine, rest): (Vec<_>, Vec<_>) =
                    splits.drain(..).partition(|s| s.transaction_id == row.id);
                splits = rest;
                let mine = mine
                    .into_iter()
                    .map(|s| Split {
                        category_id: s.category_id,
                        amount: s.amount,
                        memo: s.memo,
                    })
                    .collect();
                view(row, mine)
            })
            .collect())
    }

    /// Checks a category and splits against an amount: splits add up to it exactly, each
    /// with its sign and not zero, and replace the single category; every category is one
    /// of the tenant's.
    pub(crate) async fn check_categories(
        &self,
        tx: &mut TenantTx,
        amount: i64,
        category: Option<Uuid>,
        splits: &[Split],
    ) -> Result<(), LedgerError> {
        if !splits.is_empty() {
            if category.is_some() {
                return Err(LedgerError::invalid(
                    "category_id",
                    "must be null when the transaction has splits: each split has its category",
                ));
            }
            if splits.len() < 2 {
                return Err(LedgerError::invalid(
                    "splits",
                    "must have at least two parts (one part is just a category)",
                ));
            }
            for (i, split) in splits.iter().enumerate() {
                if split.amount == 0 || split.amount.signum() != amount.signum() {
                    return Err(LedgerError::invalid(
                        &format!("splits[{i}].amount"),
                        "must be non-zero, with the sign of the transaction's amount",
                    ));
                }
            }
            let total = splits
                .iter()
                .try_fold(0i64, |sum, s| sum.checked_add(s.amount));
            if total != Some(amount) {
                return Err(LedgerError::invalid(
                    "splits",
                    format!(
                        "must add up to the amount {amount}; they add up to {}",
                        total.map_or("more than fits".to_string(), |t| t.to_string())
                    ),
                ));
            }
        }
        let mut ids: Vec<Uuid> = splits
            .iter()
            .map(|s| s.category_id)
            .chain(category)
            .collect();
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            let tenant = tx.tenant_id();
            if store::known_categories(tx.conn(), tenant, &ids).await? != ids.len() as i64 {
                let field = if category.is_some() && splits.is_empty() {
                    "category_id"
                } else {
                    "splits"
                };
                return Err(LedgerError::invalid(
                    field,
                    "names no category of this tenant",
                ));
            }
        }
        Ok(())
    }

    /// Enters a transaction: the account's balances, its day and the search terms move in
    /// the same transaction. `source` is `manual` for a person; imports and syncs pass
    /// theirs (and their fingerprint through their own entry point).
    pub async fn create_transaction(
        &self,
        tx: &mut TenantTx,
        new: NewTransaction,
        source: TransactionSource,
    ) -> Result<Transaction, LedgerError> {
        let created = self.insert(tx, new, source, None).await?;
        if created.category_id.is_none() && created.splits.is_empty() {
            self.arrived(tx, crate::Arrival::Transactions(vec![created.id]));
        }
        tx.record(
            NewEvent::new("transaction.created")
                .resource("transaction", created.id)
                .payload(json!({
                    "account_id": created.account_id,
                    "amount": created.amount,
                    "date": created.date,
                    "source": created.source,
                    "splits": created.splits.len(),
                })),
        );
        Ok(created)
    }

    /// Moves money between two of the tenant's accounts in one currency: two legs, linked by
    /// one `transfer_id`, that never count as spending or income.
    pub async fn create_transfer(
        &self,
        tx: &mut TenantTx,
        new: NewTransfer,
    ) -> Result<Transfer, LedgerError> {
        if new.amount <= 0 {
            return Err(LedgerError::invalid(
                "amount",
                "must be positive: it leaves `from_account_id`",
            ));
        }
        if new.from_account_id == new.to_account_id {
            return Err(LedgerError::invalid(
                "to_account_id",
                "must be another account than `from_account_id`",
            ));
        }
        let tenant = tx.tenant_id();
        let from = store::account(tx.conn(), tenant, new.from_account_id, true)
            .await?
            .ok_or_else(|| {
                LedgerError::invalid("from_account_id", "names no account of this tenant")
            })?;
        let to = store::account(tx.conn(), tenant, new.to_account_id, true)
            .await?
            .ok_or_else(|| {
                LedgerError::invalid("to_account_id", "names no account of this tenant")
            })?;
        if from.currency != to.currency {
            return Err(LedgerError::invalid(
                "to_account_id",
                format!(
                    "is in {}, `from_account_id` in {}: a transfer moves one currency (record a conversion as two transactions)",
                    to.currency, from.currency
                ),
            ));
        }
        let transfer_id = Uuid::now_v7();
        let leg = |account: Uuid, amount: i64| NewTransaction {
            account_id: account,
            date: new.date,
            value_date: None,
            amount,
            currency: None,
            merchant: None,
            description: new.description.clone(),
            status: TransactionStatus::Posted,
            category_id: None,
            splits: Vec::new(),
            notes: None,
            tags: Vec::new(),
            external_id: None,
        };
        let out = self
            .insert(
                tx,
                leg(from.id, -new.amount),
                TransactionSource::Manual,
                Some(transfer_id),
            )
            .await?;
        let inn = self
            .insert(
                tx,
                leg(to.id, new.amount),
                TransactionSource::Manual,
                Some(transfer_id),
            )
            .await?;
        tx.record(
            NewEvent::new("transfer.created")
                .resource("transfer", transfer_id)
                .payload(json!({
                    "from_account_id": from.id,
                    "to_account_id": to.id,
                    "amount": new.amount,
                    "date": new.date,
                    "legs": [out.id, inn.id],
                })),
        );
        Ok(Transfer {
            transfer_id,
            from: out,
            to: inn,
        })
    }

    /// Links two existing transactions as the legs of one transfer: opposite amounts, one
    /// currency, two accounts, neither linked already.
    pub async fn link_transfer(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        counterpart: Uuid,
    ) -> Result<Transfer, LedgerError> {
        let tenant = tx.tenant_id();
        self.changed(tx);
        if id == counterpart {
            return Err(LedgerError::invalid(
                "counterpart_id",
                "must be another transaction",
            ));
        }
        let one = store::lock_transaction(tx.conn(), tenant, id)
            .await?
            .ok_or(LedgerError::NotFound)?;
        let other = store::lock_transaction(tx.conn(), tenant, counterpart)
            .await?
            .ok_or_else(|| {
                LedgerError::invalid("counterpart_id", "names no transaction of this tenant")
            })?;
        let refuse = |why: &str| Err(LedgerError::invalid("counterpart_id", why.to_string()));
        if one.transfer_id.is_some() || other.transfer_id.is_some() {
            return refuse("one of the two is a transfer leg already");
        }
        if one.account_id == other.account_id {
            return refuse("is in the same account: a transfer has legs in two accounts");
        }
        if one.currency != other.currency {
            return refuse("is in another currency");
        }
        if one.amount != -other.amount || one.amount == 0 {
            return refuse("must have the opposite amount");
        }
        let transfer_id = Uuid::now_v7();
        store::set_transfer(tx.conn(), tenant, &[one.id, other.id], transfer_id).await?;
        tx.record(
            NewEvent::new("transfer.linked")
                .resource("transfer", transfer_id)
                .payload(json!({ "legs": [one.id, other.id] })),
        );
        let (out, inn) = if one.amount < 0 {
            (one.id, other.id)
        } else {
            (other.id, one.id)
        };
        Ok(Transfer {
            transfer_id,
            from: self.transaction(tx, out).await?,
            to: self.transaction(tx, inn).await?,
        })
    }

    /// Writes a new transaction with its splits, terms and balance movement (no audit event:
    /// the caller records what it did).
    async fn insert(
        &self,
        tx: &mut TenantTx,
        new: NewTransaction,
        source: TransactionSource,
        transfer_id: Option<Uuid>,
    ) -> Result<Transaction, LedgerError> {
        let mut new = new;
        new.merchant = normalise_merchant(new.merchant);
        new.description = new.description.trim().to_string();
        new.tags = normalise_tags(new.tags);
        let tenant = tx.tenant_id();
        let account = store::account(tx.conn(), tenant, new.account_id, true)
            .await?
            .ok_or_else(|| LedgerError::invalid("account_id", "names no account of this tenant"))?;
        if account.archived_at.is_some() {
            return Err(LedgerError::AccountArchived);
        }
        if let Some(currency) = new.currency
            && currency != account.currency
        {
            return Err(LedgerError::invalid(
                "currency",
                format!(
                    "must be the account's currency, {}: an account's transactions are in its currency",
                    account.currency
                ),
            ));
        }
        self.check_categories(tx, new.amount, new.category_id, &new.splits)
            .await?;
        let categorized = new.category_id.is_some() || !new.splits.is_empty();
        let categorization = (categorized && source == TransactionSource::Manual)
            .then(|| person_categorization(new.category_id));
        self.count_new(tx, source, 1).await?;
        self.changed(tx);
        let row = store::insert_transaction(
            tx.conn(),
            tenant,
            store::NewTransactionRow {
                id: Uuid::now_v7(),
                account_id: account.id,
                date: new.date,
                value_date: new.value_date,
                amount: new.amount,
                currency: account.currency.code(),
                merchant: new.merchant.as_deref(),
                description: &new.description,
                status: new.status.as_str(),
                category_id: new.category_id,
                categorization,
                notes: new.notes.as_deref(),
                tags: &new.tags,
                source: source.as_str(),
                external_id: new.external_id.as_deref(),
                import_id: None,
                fingerprint: None,
                transfer_id,
            },
        )
        .await?;
        store::replace_splits(tx.conn(), tenant, row.id, account.id, &new.splits).await?;
        self.index(tx, &row).await?;
        let (posted, pending) = contribution(&row.status, row.amount);
        store::move_balances(tx.conn(), tenant, account.id, row.date, posted, pending).await?;
        Ok(view(row, new.splits))
    }

    /// Writes a transaction's search terms (merchant, description, notes).
    pub(crate) async fn index(
        &self,
        tx: &mut TenantTx,
        row: &store::TransactionRow,
    ) -> Result<(), LedgerError> {
        let tenant = tx.tenant_id();
        let words = terms(&[
            row.merchant.as_deref().unwrap_or(""),
            &row.description,
            row.notes.as_deref().unwrap_or(""),
        ]);
        store::add_terms(tx.conn(), tenant, row.id, row.account_id, row.date, &words).await?;
        Ok(())
    }

    /// One transaction, with its splits.
    pub async fn transaction(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
    ) -> Result<Transaction, LedgerError> {
        let tenant = tx.tenant_id();
        let row = store::transaction(tx.conn(), tenant, id)
            .await?
            .ok_or(LedgerError::NotFound)?;
        Ok(self.with_splits(tx, vec![row]).await?.remove(0))
    }

    /// The transactions matching `filter`, newest first by date.
    pub async fn transactions(
        &self,
        tx: &mut TenantTx,
        filter: &TransactionFilter,
        page: &Keyset,
    ) -> Result<Page<Transaction>, LedgerError> {
        let filters = self.filters(filter)?;
        let (at, id) = page.after();
        let after = (at.map(|a| a.date_naive()), id);
        let rows = self
            .rows_of(tx, &filters, after, page.fetch_limit())
            .await?;
        let rows = self.with_splits(tx, rows).await?;
        Ok(page.page(rows, |t| {
            (
                t.date.and_hms_opt(0, 0, 0).expect("midnight").and_utc(),
                t.id,
            )
        }))
    }

    /// Checks a filter before a stream starts (a bad `q` is a `422`, not a broken export).
    pub fn check_filter(&self, filter: &TransactionFilter) -> Result<(), LedgerError> {
        self.filters(filter).map(|_| ())
    }

    /// The store's filters of `filter`: `q`'s words as prefix ranges of terms.
    fn filters(&self, filter: &TransactionFilter) -> Result<store::Filters, LedgerError> {
        let mut words = Vec::new();
        if let Some(q) = &filter.q {
            for word in fold(q).split(|c: char| !c.is_alphanumeric()) {
                if word.chars().count() >= 2 {
                    words.push(prefix_range(word));
                }
            }
            if words.is_empty() {
                return Err(LedgerError::invalid(
                    "q",
                    "needs a word of at least two letters or digits",
                ));
            }
        }
        Ok(store::Filters {
            from: filter.from,
            to: filter.to,
            account_id: filter.account_id,
            category_id: filter.category_id,
            min_amount: filter.min_amount,
            max_amount: filter.max_amount,
            status: filter.status.map(|s| s.as_str().to_string()),
            tags: filter.tags.clone(),
            source: filter.source.map(|s| s.as_str().to_string()),
            import_id: filter.import_id,
            uncategorized: filter.uncategorized,
            include_transfers: filter.include_transfers,
            words,
        })
    }

    /// Changes a transaction. A person's edit of category (or splits), merchant, notes,
    /// tags or date locks that field; an automation's (an import, a sync, a rule) leaves
    /// locked fields as they are. Balances, the day deltas and the terms follow.
    pub async fn update_transaction(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        expected: Option<i64>,
        changes_to: TransactionChanges,
        editor: Editor,
    ) -> Result<Transaction, LedgerError> {
        self.update_with(tx, id, expected, changes_to, editor, None, true)
            .await
    }

    /// A person's choice of category made through a suggestion (an approval): the same as
    /// their edit, with `reasoning` saying what they approved or overrode.
    pub async fn choose_category(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        category_id: Uuid,
        reasoning: String,
    ) -> Result<Transaction, LedgerError> {
        let changes = TransactionChanges {
            category_id: Some(Some(category_id)),
            ..TransactionChanges::default()
        };
        self.update_with(tx, id, None, changes, Editor::Person, Some(reasoning), true)
            .await
    }

    /// Changes a transaction; `record` is false for bulk work (a bank sync) that writes one
    /// summary event of its own.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn update_with(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        expected: Option<i64>,
        changes_to: TransactionChanges,
        editor: Editor,
        reasoning: Option<String>,
        record: bool,
    ) -> Result<Transaction, LedgerError> {
        let tenant = tx.tenant_id();
        self.changed(tx);
        let current = store::lock_transaction(tx.conn(), tenant, id)
            .await?
            .ok_or(LedgerError::NotFound)?;
        concurrency::check(expected, current.version)?;
        let current_splits: Vec<Split> = store::splits_of(tx.conn(), tenant, &[id])
            .await?
            .into_iter()
            .map(|s| Split {
                category_id: s.category_id,
                amount: s.amount,
                memo: s.memo,
            })
            .collect();
        let before = json!(view(current.clone(), current_splits.clone()));
        let locked = |field: &str| {
            editor == Editor::Automation && current.locked_fields.iter().any(|f| f == field)
        };
        let mut next = current.clone();
        let mut touched: Vec<&str> = Vec::new();
        let mut splits = current_splits.clone();
        if let Some(date) = changes_to.date
            && !locked("date")
        {
            next.date = date;
            touched.push("date");
        }
        if let Some(amount) = changes_to.amount {
            // A transfer's legs move the same money: one leg's amount alone cannot change.
            if current.transfer_id.is_some() && amount != current.amount {
                return Err(LedgerError::invalid(
                    "amount",
                    "is a transfer leg's: delete the transfer and enter it again",
                ));
            }
            next.amount = amount;
        }
        if let Some(status) = changes_to.status {
            next.status = status.as_str().to_string();
        }
        if let Some(description) = changes_to.description {
            next.description = description.trim().to_string();
        }
        if let Some(merchant) = changes_to.merchant
            && !locked("merchant")
        {
            next.merchant = normalise_merchant(merchant);
            touched.push("merchant");
        }
        if let Some(notes) = changes_to.notes
            && !locked("notes")
        {
            next.notes = notes;
            touched.push("notes");
        }
        if let Some(tags) = changes_to.tags
            && !locked("tags")
        {
            next.tags = normalise_tags(tags);
            touched.push("tags");
        }
        let recategorized = changes_to.category_id.is_some() || changes_to.splits.is_some();
        if recategorized && !locked("category") {
            let splits_given = changes_to.splits.is_some();
            if let Some(new_splits) = changes_to.splits {
                splits = new_splits;
            }
            match changes_to.category_id {
                // A category without new splits replaces the splits there were.
                Some(category) => {
                    next.category_id = category;
                    if category.is_some() && !splits_given {
                        splits.clear();
                    }
                }
                None if !splits.is_empty() => next.category_id = None,
                None => {}
            }
            touched.push("category");
            if editor == Editor::Person {
                let mut decision = person_categorization(next.category_id);
                if let Some(reasoning) = reasoning {
                    decision["reasoning"] = json!(reasoning);
                }
                next.categorization = Some(decision);
            }
        }
        self.check_categories(tx, next.amount, next.category_id, &splits)
            .await?;
        if editor == Editor::Person {
            for field in &touched {
                if !next.locked_fields.iter().any(|f| f == field) {
                    next.locked_fields.push(field.to_string());
                }
            }
        }
        let updated = store::update_transaction(tx.conn(), tenant, &next).await?;
        if editor == Editor::Person {
            store::mark_edited_by_person(tx.conn(), tenant, id).await?;
            if touched.contains(&"category")
                && let Some(arrivals) = &self.arrivals
            {
                arrivals.chosen_by_person(tx, id).await?;
            }
        }
        if splits != current_splits {
            store::replace_splits(tx.conn(), tenant, id, current.account_id, &splits).await?;
        }
        let moved = (current.date, current.amount, &current.status)
            != (updated.date, updated.amount, &updated.status);
        if moved {
            let (posted, pending) = contribution(&current.status, current.amount);
            store::move_balances(
                tx.conn(),
                tenant,
                current.account_id,
                current.date,
                -posted,
                -pending,
            )
            .await?;
            let (posted, pending) = contribution(&updated.status, updated.amount);
            store::move_balances(
                tx.conn(),
                tenant,
                updated.account_id,
                updated.date,
                posted,
                pending,
            )
            .await?;
        }
        let reindex = (
            current.date,
            &current.merchant,
            &current.description,
            &current.notes,
        ) != (
            updated.date,
            &updated.merchant,
            &updated.description,
            &updated.notes,
        );
        if reindex {
            store::remove_terms(tx.conn(), tenant, id).await?;
            self.index(tx, &updated).await?;
        }
        let result = view(updated, splits);
        if !record {
            return Ok(result);
        }
        let after = json!(result);
        tx.record(
            NewEvent::new("transaction.updated")
                .resource("transaction", id)
                .payload(json!({
                    "by": if editor == Editor::Person { "person" } else { "automation" },
                    "changes": changes(&before, &after, &[
                        "date", "amount", "status", "merchant", "description", "category_id",
                        "splits", "notes", "tags",
                    ]),
                })),
        );
        Ok(result)
    }

    /// Deletes a transaction (soft, audited): its amount leaves the balances and its terms
    /// the index, and it stays known to dedup, so an import or sync never brings it back.
    pub async fn delete_transaction(&self, tx: &mut TenantTx, id: Uuid) -> Result<(), LedgerError> {
        let current_tenant = tx.tenant_id();
        let current = self.delete_row(tx, id).await?;
        tx.record(
            NewEvent::new("transaction.deleted")
                .resource("transaction", id)
                .payload(json!({
                    "account_id": current.account_id,
                    "amount": current.amount,
                    "date": current.date,
                })),
        );
        // A transfer goes as a whole: its other leg too, deleted after this one so the
        // search finds only the legs left (one the caller's account scope hides stays).
        if let Some(transfer) = current.transfer_id {
            for leg in store::legs_of(tx.conn(), current_tenant, transfer).await? {
                Box::pin(self.delete_transaction(tx, leg)).await?;
            }
        }
        Ok(())
    }

    /// Soft-deletes one row (its balances and terms with it) without an event of its own.
    pub(crate) async fn delete_row(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
    ) -> Result<store::TransactionRow, LedgerError> {
        let tenant = tx.tenant_id();
        self.changed(tx);
        let current = store::lock_transaction(tx.conn(), tenant, id)
            .await?
            .ok_or(LedgerError::NotFound)?;
        store::delete_transaction(tx.conn(), tenant, id).await?;
        store::remove_terms(tx.conn(), tenant, id).await?;
        let (posted, pending) = contribution(&current.status, current.amount);
        store::move_balances(
            tx.conn(),
            tenant,
            current.account_id,
            current.date,
            -posted,
            -pending,
        )
        .await?;
        Ok(current)
    }

    /// The rows of a page driven by one word's terms. Few terms: each term's rows are read
    /// newest first from the term index in rounds, and a round's candidates are complete
    /// down to the newest of the terms' last ones (older rows of a term may be unread);
    /// those are filtered, and the next round goes on below. Many rare terms: all their
    /// rows are the candidates. Each statement is a plain index scan, whatever the word.
    async fn rows_from_terms(
        &self,
        tx: &mut TenantTx,
        filters: &store::Filters,
        terms: Vec<String>,
        after: (Option<NaiveDate>, Option<Uuid>),
        limit: i64,
    ) -> Result<Vec<store::TransactionRow>, LedgerError> {
        let tenant = tx.tenant_id();
        let far_future = NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date");
        let mut cursor = match after {
            (Some(date), Some(id)) => (date, id),
            _ => (far_future, Uuid::max()),
        };
        let newest_first = |c: &mut Vec<store::Candidate>| {
            c.sort_by_key(|c| std::cmp::Reverse((c.date, c.transaction_id)));
            c.dedup_by_key(|c| c.transaction_id);
        };
        let mut out = Vec::new();
        if terms.len() as i64 > FEW_TERMS {
            let mut candidates =
                store::terms_candidates(tx.conn(), tenant, &terms, filters, cursor).await?;
            newest_first(&mut candidates);
            for chunk in candidates.chunks(SEARCH_BATCH as usize) {
                let ids: Vec<Uuid> = chunk.iter().map(|c| c.transaction_id).collect();
                out.extend(store::transactions_among(tx.conn(), tenant, filters, &ids).await?);
                if out.len() as i64 >= limit {
                    break;
                }
            }
            out.truncate(limit as usize);
            return Ok(out);
        }
        // The first round reads a page's worth per term (most searches end there); each
        // further round four times more, up to the cap.
        let mut batch = limit;
        loop {
            let mut candidates = Vec::new();
            let mut complete_to: Option<(NaiveDate, Uuid)> = None;
            for term in &terms {
                let found =
                    store::term_candidates(tx.conn(), tenant, term, filters, cursor, batch).await?;
                if found.len() as i64 == batch
                    && let Some(last) = found.last()
                {
                    let key = (last.date, last.transaction_id);
                    if complete_to.is_none_or(|k| key > k) {
                        complete_to = Some(key);
                    }
                }
                candidates.extend(found);
            }
            if let Some(bound) = complete_to {
                candidates.retain(|c| (c.date, c.transaction_id) >= bound);
            }
            newest_first(&mut candidates);
            let ids: Vec<Uuid> = candidates.iter().map(|c| c.transaction_id).collect();
            if !ids.is_empty() {
                out.extend(store::transactions_among(tx.conn(), tenant, filters, &ids).await?);
            }
            match complete_to {
                Some(bound) if (out.len() as i64) < limit => {
                    cursor = bound;
                    batch = (batch * 4).min(MAX_SEARCH_BATCH);
                }
                _ => break,
            }
        }
        out.truncate(limit as usize);
        Ok(out)
    }
}

/// A word of `q` whose terms are used by at most this many rows drives the page from the
/// term index, whatever its number of terms (up to [`MAX_DRIVING_TERMS`]).
pub const DRIVE_FROM_TERMS: i64 = 2_000;

/// A word of at most this many terms drives the page from the term index however common.
pub const FEW_TERMS: i64 = 32;

/// The most terms one word drives a page from.
pub const MAX_DRIVING_TERMS: i64 = 2_000;

/// Candidates a search filters at a time (many rare terms), and the most one round of a
/// few terms' search reads per term.
const SEARCH_BATCH: i64 = 200;
const MAX_SEARCH_BATCH: i64 = 5_000;

/// Rows an export reads at a time: its memory stays the same for any number of rows.
const EXPORT_BATCH: i64 = 500;

/// The header of a CSV export (RFC 4180). Split parts follow their transaction as rows of
/// type `split`, with `split_of` naming it.
pub const EXPORT_HEADER: &str = "row_type,id,account_id,date,value_date,amount,currency,status,merchant,description,category_id,notes,tags,source,external_id,transfer_id,split_of,memo\r\n";

/// An amount of minor units as a decimal string in the currency's exponent (`-12.30`, `500`).
pub fn decimal(amount: i64, exponent: u8) -> String {
    if exponent == 0 {
        return amount.to_string();
    }
    let scale = 10u64.pow(u32::from(exponent));
    let abs = amount.unsigned_abs();
    format!(
        "{}{}.{:0width$}",
        if amount < 0 { "-" } else { "" },
        abs / scale,
        abs % scale,
        width = usize::from(exponent)
    )
}

/// One CSV field: quoted when it must be (RFC 4180), and text that a spreadsheet would run
/// as a formula (`=`, `+`, `-`, `@`, tab, CR first) is prefixed with `'`.
fn field(out: &mut String, value: &str, text: bool) {
    let guarded;
    let value = if text && value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        guarded = format!("'{value}");
        guarded.as_str()
    } else {
        value
    };
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn csv_rows(out: &mut String, t: &Transaction) {
    let exponent = t.currency.minor_units();
    let opt = |v: Option<String>| v.unwrap_or_default();
    let base: [(String, bool); 16] = [
        ("transaction".into(), false),
        (t.id.to_string(), false),
        (t.account_id.to_string(), false),
        (t.date.to_string(), false),
        (opt(t.value_date.map(|d| d.to_string())), false),
        (decimal(t.amount, exponent), false),
        (t.currency.to_string(), false),
        (t.status.as_str().into(), false),
        (opt(t.merchant.clone()), true),
        (t.description.clone(), true),
        (opt(t.category_id.map(|c| c.to_string())), false),
        (opt(t.notes.clone()), true),
        (t.tags.join(";"), true),
        (t.source.as_str().into(), false),
        (opt(t.external_id.clone()), true),
        (opt(t.transfer_id.map(|c| c.to_string())), false),
    ];
    for (i, (value, text)) in base.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, value, *text);
    }
    out.push_str(",,\r\n");
    for split in &t.splits {
        out.push_str("split,,");
        field(out, &t.account_id.to_string(), false);
        out.push(',');
        field(out, &t.date.to_string(), false);
        out.push_str(",,");
        field(out, &decimal(split.amount, exponent), false);
        out.push(',');
        field(out, t.currency.code(), false);
        out.push_str(",,,,");
        field(out, &split.category_id.to_string(), false);
        out.push_str(",,,,,,");
        field(out, &t.id.to_string(), false);
        out.push(',');
        field(out, split.memo.as_deref().unwrap_or(""), true);
        out.push_str("\r\n");
    }
}

/// Where an export is: its transaction, the last row sent, how many were.
struct Export {
    tx: Box<TenantTx>,
    after: (Option<NaiveDate>, Option<Uuid>),
    count: u64,
}

impl Ledger {
    /// Every transaction matching `filter` as CSV, read in batches within the caller's
    /// transaction (one snapshot, constant memory), newest first. At the end the export is
    /// audited (`transaction.exported`, with the filters and the row count) and the
    /// transaction commits; an export the client abandons is rolled back, unaudited.
    pub fn export(
        &self,
        tx: TenantTx,
        filter: TransactionFilter,
    ) -> impl futures_util::Stream<Item = Result<String, Problem>> + Send + use<> {
        let ledger = self.clone();
        let header = futures_util::stream::once(async { Ok(EXPORT_HEADER.to_string()) });
        let rows = futures_util::stream::try_unfold(
            Export {
                tx: Box::new(tx),
                after: (None, None),
                count: 0,
            },
            move |state| {
                let (ledger, filter) = (ledger.clone(), filter.clone());
                async move {
                    let Export {
                        mut tx,
                        after,
                        count,
                    } = state;
                    let rows = ledger
                        .page_of(&mut tx, &filter, after, EXPORT_BATCH)
                        .await
                        .map_err(Problem::from)?;
                    if rows.is_empty() {
                        tx.record(NewEvent::new("transaction.exported").payload(json!({
                            "format": "csv",
                            "filters": filter.canonical(),
                            "count": count,
                        })));
                        tx.commit().await?;
                        return Ok(None);
                    }
                    let mut chunk = String::new();
                    for t in &rows {
                        csv_rows(&mut chunk, t);
                    }
                    let last = rows.last().expect("not empty");
                    let next = Export {
                        after: (Some(last.date), Some(last.id)),
                        count: count + rows.len() as u64,
                        tx,
                    };
                    Ok(Some((chunk, next)))
                }
            },
        );
        futures_util::StreamExt::chain(header, rows)
    }

    /// One batch of matching transactions after `after`, with their splits.
    async fn page_of(
        &self,
        tx: &mut TenantTx,
        filter: &TransactionFilter,
        after: (Option<NaiveDate>, Option<Uuid>),
        limit: i64,
    ) -> Result<Vec<Transaction>, LedgerError> {
        let filters = self.filters(filter)?;
        let rows = self.rows_of(tx, &filters, after, limit).await?;
        self.with_splits(tx, rows).await
    }

    /// The rows of a page. With `q`, the words' terms decide the plan: a word no live row
    /// has means nothing to read; a word of few terms (however common), or of rare ones,
    /// drives the page from the term index newest first; only words spread over many
    /// common terms (a short prefix) walk the date index, where the newest rows match at once.
    async fn rows_of(
        &self,
        tx: &mut TenantTx,
        filters: &store::Filters,
        after: (Option<NaiveDate>, Option<Uuid>),
        limit: i64,
    ) -> Result<Vec<store::TransactionRow>, LedgerError> {
        let tenant = tx.tenant_id();
        let mut driver: Option<(i64, Vec<String>)> = None;
        for word in &filters.words {
            let terms =
                store::terms_in(tx.conn(), tenant, &word.0, &word.1, MAX_DRIVING_TERMS + 1).await?;
            if terms.is_empty() {
                return Ok(Vec::new());
            }
            let rows: i64 = terms.iter().map(|(_, n)| n).sum();
            let count = terms.len() as i64;
            let drives = match self.plan {
                SearchPlan::Auto => {
                    count <= FEW_TERMS || (count <= MAX_DRIVING_TERMS && rows <= DRIVE_FROM_TERMS)
                }
                SearchPlan::TermIndex => count <= MAX_DRIVING_TERMS,
                SearchPlan::DateWalk => false,
            };
            if drives && driver.as_ref().is_none_or(|(n, _)| rows < *n) {
                driver = Some((rows, terms.into_iter().map(|(t, _)| t).collect()));
            }
        }
        Ok(match driver {
            Some((_, terms)) => {
                self.rows_from_terms(tx, filters, terms, after, limit)
                    .await?
            }
            None if filters.account_id.is_some() => {
                store::transactions_of_account(tx.conn(), tenant, filters, after, limit).await?
            }
            None => store::transactions(tx.conn(), tenant, filters, after, limit).await?,
        })
    }
}

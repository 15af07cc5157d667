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
        Account, AccountChanges, Category, CategoryChanges, DEFAULT_CATEGORIES, DayBalance,
        NewAccount, NewCategory,
    },
    store,
};

/// The longest balance series one request reads: five years of days.
pub const MAX_SERIES_DAYS: u64 = 5 * 366;

/// The ledger service: accounts, categories and transactions.
#[derive(Clone, Default)]
pub struct Ledger;

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

impl Ledger {
    pub fn new() -> Ledger {
        Ledger
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
        match changes_to.archived {
            Some(true) if next.archived_at.is_none() => next.archived_at = Some(Utc::now()),
            Some(false) => next.archived_at = None,
            _ => {}
        }
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
        match changes_to.archived {
            Some(true) if next.archived_at.is_none() => next.archived_at = Some(Utc::now()),
            Some(false) => next.archived_at = None,
            _ => {}
        }
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
        store::delete_category(tx.conn(), tenant, id).await?;
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

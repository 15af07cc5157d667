//! What the categorization pipeline needs of the ledger, which owns the transactions: to be
//! told when transactions arrive uncategorised, to read the ones it may decide and the
//! tenant's categorised history, and to write its decisions, in bulk and never over a field
//! a person locked. The pipeline records its own summary event; these writes record none.

use std::collections::HashMap;

use kernel::TenantTx;
use serde_json::json;
use uuid::Uuid;

use crate::{
    Ledger, LedgerError,
    domain::{Categorization, Split, normalise_merchant, normalise_tags},
    store,
};

/// Transactions that arrived uncategorised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// Entered one by one, or a sync page.
    Transactions(Vec<Uuid>),
    /// Everything an import promoted.
    Import(Uuid),
}

/// Who wants to hear of arrivals and of a person's choices (the categorization pipeline).
/// Called inside the writing transaction, so what it queues or settles stands only if the
/// change commits.
pub trait Arrivals: Send + Sync + 'static {
    /// Transactions arrived uncategorised.
    fn arrived(&self, tx: &mut TenantTx, arrival: Arrival);

    /// A person chose a transaction's category (an edit, or a decision on a suggestion):
    /// whatever waited for them about it is settled.
    fn chosen_by_person<'a>(
        &'a self,
        _tx: &'a mut TenantTx,
        _transaction_id: Uuid,
    ) -> futures_util::future::BoxFuture<'a, Result<(), kernel::Problem>> {
        Box::pin(async { Ok(()) })
    }
}

/// Who wants to hear that the tenant's transactions changed in some way (created, edited,
/// recategorised, deleted, imported, synced, reverted): budgets re-evaluate. Called inside
/// the writing transaction, at most once per transaction is enough.
pub trait Changes: Send + Sync + 'static {
    fn changed(&self, tx: &mut TenantTx);
}

/// Which transactions a pipeline run looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Ids(Vec<Uuid>),
    Import(Uuid),
    /// Booked in `from..=to` (open ends when absent), in one account or all.
    Dates {
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
        account_id: Option<Uuid>,
    },
}

/// A transaction as the pipeline sees it: live and not a transfer leg. [`Ledger::candidates`]
/// gives only those whose category no person locked; [`Ledger::scan_each`] gives all.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: Uuid,
    pub account_id: Uuid,
    pub date: chrono::NaiveDate,
    pub amount: i64,
    pub currency: String,
    pub merchant: Option<String>,
    pub description: String,
    /// A person chose its category (an edit locked it, or they entered it so): no
    /// automation changes it.
    pub category_locked: bool,
}

/// A categorised transaction of the tenant's history.
#[derive(Debug, Clone)]
pub struct Categorised {
    pub id: Uuid,
    pub merchant: Option<String>,
    pub description: String,
    pub category_id: Uuid,
    /// `categorization.source` (`person`, `rule`, …), when it has one.
    pub source: Option<String>,
}

/// A decision of the pipeline for one transaction.
#[derive(Debug, Clone)]
pub struct AutoChange {
    pub transaction_id: Uuid,
    /// The category, or none when `splits` carry it, or when only tags or the merchant
    /// change (then `categorization` is `None` too).
    pub category_id: Option<Uuid>,
    pub splits: Vec<Split>,
    pub categorization: Option<Categorization>,
    /// Added to its tags.
    pub add_tags: Vec<String>,
    /// Its merchant from now on.
    pub merchant: Option<String>,
}

/// What [`Ledger::apply_automation`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Transactions whose category was set.
    pub categorized: Vec<Uuid>,
    /// Transactions left alone: deleted meanwhile, or a person locked what would change.
    pub skipped: Vec<Uuid>,
}

fn candidate(r: store::CandidateRow) -> Candidate {
    Candidate {
        id: r.id,
        account_id: r.account_id,
        date: r.date,
        amount: r.amount,
        currency: r.currency,
        merchant: r.merchant,
        description: r.description,
        category_locked: r.category_locked,
    }
}

impl Ledger {
    /// Tells the listener of changes, if any, that this transaction changed transactions.
    pub(crate) fn changed(&self, tx: &mut TenantTx) {
        if let Some(changes) = &self.changes {
            changes.changed(tx);
        }
    }

    pub(crate) fn arrived(&self, tx: &mut TenantTx, arrival: Arrival) {
        if let Some(arrivals) = &self.arrivals {
            arrivals.arrived(tx, arrival);
        }
    }

    /// The ids a run looks at, oldest first: those it may decide (see [`Candidate`]);
    /// with `include_categorized`, also those an automation categorised before.
    pub async fn candidate_ids(
        &self,
        tx: &mut TenantTx,
        selection: &Selection,
        include_categorized: bool,
    ) -> Result<Vec<Uuid>, LedgerError> {
        let tenant = tx.tenant_id();
        let ids = match selection {
            Selection::Ids(ids) => ids.clone(),
            Selection::Import(import) => store::ids_of_import(tx.conn(), tenant, *import).await?,
            Selection::Dates {
                from,
                to,
                account_id,
            } => {
                // The ends of PostgreSQL's dates that every plan reads as plain bounds.
                let far_past = chrono::NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or_default();
                let far_future = chrono::NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or_default();
                store::ids_between(
                    tx.conn(),
                    tenant,
                    from.unwrap_or(far_past),
                    to.unwrap_or(far_future),
                    *account_id,
                )
                .await?
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(10_000) {
            out.extend(store::eligible(tx.conn(), tenant, chunk, include_categorized).await?);
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The candidates among `ids` (see [`Candidate`]), in the order of `ids`.
    pub async fn candidates(
        &self,
        tx: &mut TenantTx,
        ids: &[Uuid],
    ) -> Result<Vec<Candidate>, LedgerError> {
        let tenant = tx.tenant_id();
        let rows = store::candidates(tx.conn(), tenant, ids).await?;
        let mut by_id: HashMap<Uuid, Candidate> =
            rows.into_iter().map(|r| (r.id, candidate(r))).collect();
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    /// Sums by category, account, currency and day over `[from, to)` (see
    /// [`crate::DaySums`]), under the caller's account scope: what budgets count.
    pub async fn day_sums(
        &self,
        tx: &mut TenantTx,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<crate::DaySums>, LedgerError> {
        let tenant = tx.tenant_id();
        Ok(store::day_sums(tx.conn(), tenant, from, to).await?)
    }

    /// Every category of the tenant (names for explanations, kinds for transfers).
    pub async fn all_categories(
        &self,
        tx: &mut TenantTx,
    ) -> Result<Vec<crate::Category>, LedgerError> {
        let tenant = tx.tenant_id();
        Ok(store::all_categories(tx.conn(), tenant).await?)
    }

    /// The live transactions among `ids`, newest first, with their splits.
    pub async fn transactions_by_ids(
        &self,
        tx: &mut TenantTx,
        ids: &[Uuid],
    ) -> Result<Vec<crate::Transaction>, LedgerError> {
        let tenant = tx.tenant_id();
        let rows = store::transactions_by_ids(tx.conn(), tenant, ids).await?;
        self.with_splits(tx, rows).await
    }

    /// Calls `visit` with every live transaction of the tenant that is no transfer leg, in
    /// no order, as they stream from one sequential scan (a rule's preview looks at them
    /// all).
    pub async fn scan_each(
        &self,
        tx: &mut TenantTx,
        mut visit: impl FnMut(Candidate) + Send,
    ) -> Result<(), LedgerError> {
        use futures_util::TryStreamExt;
        let tenant = tx.tenant_id();
        let mut rows = store::scan_all(tx.conn(), tenant);
        while let Some(row) = rows.try_next().await? {
            visit(candidate(row));
        }
        Ok(())
    }

    /// The tenant's categorised transactions, newest first, at most `limit` (the
    /// similarity step's history).
    pub async fn categorised_history(
        &self,
        tx: &mut TenantTx,
        limit: i64,
    ) -> Result<Vec<Categorised>, LedgerError> {
        let tenant = tx.tenant_id();
        Ok(store::categorised(tx.conn(), tenant, limit)
            .await?
            .into_iter()
            .map(|r| Categorised {
                id: r.id,
                merchant: r.merchant,
                description: r.description,
                category_id: r.category_id,
                source: r.source,
            })
            .collect())
    }

    /// Writes the pipeline's decisions: categories in one statement, splits, tags and
    /// merchants row by row (they are rare); a field a person locked is never written, and
    /// a transaction whose category is locked is skipped whole.
    pub async fn apply_automation(
        &self,
        tx: &mut TenantTx,
        changes: &[AutoChange],
    ) -> Result<Applied, LedgerError> {
        let tenant = tx.tenant_id();
        self.changed(tx);
        let mut applied = Applied::default();
        let (plain, rest): (Vec<&AutoChange>, Vec<&AutoChange>) = changes
            .iter()
            .partition(|c| c.splits.is_empty() && c.add_tags.is_empty() && c.merchant.is_none());
        let mut ids = Vec::with_capacity(plain.len());
        let mut categories = Vec::with_capacity(plain.len());
        let mut decisions = Vec::with_capacity(plain.len());
        for change in &plain {
            ids.push(change.transaction_id);
            categories.push(change.category_id);
            decisions.push(change.categorization.as_ref().map(|c| json!(c)));
        }
        let mut written = Vec::new();
        for ((ids, categories), decisions) in ids
            .chunks(5_000)
            .zip(categories.chunks(5_000))
            .zip(decisions.chunks(5_000))
        {
            written.extend(
                store::set_categories(tx.conn(), tenant, ids, categories, decisions).await?,
            );
        }
        if !written.is_empty() {
            store::drop_splits(tx.conn(), tenant, &written).await?;
        }
        let written_set: std::collections::HashSet<Uuid> = written.iter().copied().collect();
        for change in &plain {
            if !written_set.contains(&change.transaction_id) {
                applied.skipped.push(change.transaction_id);
            }
        }
        applied.categorized = written;
        for change in rest {
            if self.apply_one(tx, change).await? {
                if change.categorization.is_some() {
                    applied.categorized.push(change.transaction_id);
                }
            } else {
                applied.skipped.push(change.transaction_id);
            }
        }
        Ok(applied)
    }

    /// One decision with splits, tags or a new merchant.
    async fn apply_one(&self, tx: &mut TenantTx, change: &AutoChange) -> Result<bool, LedgerError> {
        let tenant = tx.tenant_id();
        let Some(current) =
            store::lock_transaction(tx.conn(), tenant, change.transaction_id).await?
        else {
            return Ok(false);
        };
        let locked = |field: &str| current.locked_fields.iter().any(|f| f == field);
        let categorizes = change.categorization.is_some();
        let chosen_by_person = current
            .categorization
            .as_ref()
            .and_then(|c| c.get("source"))
            .is_some_and(|s| s == "person");
        if categorizes && (locked("category") || chosen_by_person) {
            return Ok(false);
        }
        let mut next = current.clone();
        if categorizes {
            next.category_id = change.category_id;
            next.categorization = change.categorization.as_ref().map(|c| json!(c));
            self.check_categories(tx, next.amount, next.category_id, &change.splits)
                .await?;
        }
        if !change.add_tags.is_empty() && !locked("tags") {
            let mut tags = next.tags.clone();
            tags.extend(change.add_tags.iter().cloned());
            next.tags = normalise_tags(tags);
        }
        if let Some(merchant) = &change.merchant
            && !locked("merchant")
        {
            next.merchant = normalise_merchant(Some(merchant.clone()));
        }
        let updated = store::update_transaction(tx.conn(), tenant, &next).await?;
        if categorizes {
            store::replace_splits(
                tx.conn(),
                tenant,
                updated.id,
                updated.account_id,
                &change.splits,
            )
            .await?;
        }
        if updated.merchant != current.merchant {
            store::remove_terms(tx.conn(), tenant, updated.id).await?;
            self.index(tx, &updated).await?;
        }
        Ok(true)
    }
}

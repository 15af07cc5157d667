//! The plan limits, checked in the creating transaction (kernel::limits): members and bank
//! connections are counted live under the tenant's locked billing row; transactions are
//! counted per month in a usage row that each create locks. Nothing here needs Stripe:
//! without it every tenant is on `free`, whose limits apply.

use audit::Record;
use chrono::{Datelike, NaiveDate, Utc};
use futures_util::future::BoxFuture;
use kernel::{
    Problem, TenantTx,
    limits::{Limit, plan_limit_reached},
};
use serde_json::json;

use crate::{plans::Catalogue, store};

/// The limits of the catalogue's plans.
#[derive(Clone)]
pub struct PlanLimits {
    catalogue: std::sync::Arc<Catalogue>,
}

/// The first day of this month (UTC): the period `transactions_per_month` counts.
pub fn this_month() -> NaiveDate {
    let today = Utc::now().date_naive();
    today.with_day(1).unwrap_or(today)
}

impl PlanLimits {
    pub fn new(catalogue: std::sync::Arc<Catalogue>) -> PlanLimits {
        PlanLimits { catalogue }
    }

    /// What `limit` counts now in the caller's tenant.
    pub(crate) async fn used(tx: &mut TenantTx, limit: Limit) -> Result<i64, sqlx::Error> {
        let tenant = tx.tenant_id();
        match limit {
            Limit::Members => store::count_members(tx.conn(), tenant).await,
            Limit::BankConnections => store::count_connections(tx.conn(), tenant).await,
            Limit::TransactionsPerMonth => {
                store::month_transactions(tx.conn(), tenant, this_month()).await
            }
            // Counted once the Telegram bot (issue 27) keeps recipients.
            Limit::TelegramRecipients => Ok(0),
        }
    }

    async fn admit_in(&self, tx: &mut TenantTx, limit: Limit, adding: i64) -> Result<(), Problem> {
        if adding <= 0 {
            return Ok(());
        }
        let tenant = tx.tenant_id();
        if limit == Limit::TransactionsPerMonth {
            let (used, plan, _) =
                store::add_transactions(tx.conn(), tenant, this_month(), adding).await?;
            let plan = self.catalogue.effective(&plan);
            return match plan.limit(limit) {
                Some(allowed) if used > allowed => {
                    Err(plan_limit_reached(limit, allowed, &plan.id))
                }
                _ => Ok(()),
            };
        }
        // The row lock first, then a count in a statement of its own: under READ COMMITTED
        // that statement's snapshot sees whatever the create that held the lock committed.
        let account = store::lock_account(tx.conn(), tenant).await?;
        let plan = self.catalogue.effective(&account.plan);
        let Some(allowed) = plan.limit(limit) else {
            return Ok(());
        };
        let used = Self::used(tx, limit).await?;
        if used + adding > allowed {
            return Err(plan_limit_reached(limit, allowed, &plan.id));
        }
        Ok(())
    }

    async fn check_in(&self, tx: &mut TenantTx, limit: Limit, adding: i64) -> Result<(), Problem> {
        if adding <= 0 {
            return Ok(());
        }
        let tenant = tx.tenant_id();
        let account = store::account(tx.conn(), tenant).await?;
        let plan = self.catalogue.effective(&account.plan);
        let Some(allowed) = plan.limit(limit) else {
            return Ok(());
        };
        if Self::used(tx, limit).await? + adding > allowed {
            return Err(plan_limit_reached(limit, allowed, &plan.id));
        }
        Ok(())
    }

    async fn count_in(&self, tx: &mut TenantTx, limit: Limit, added: i64) -> Result<(), Problem> {
        if added <= 0 || limit != Limit::TransactionsPerMonth {
            return Ok(());
        }
        let tenant = tx.tenant_id();
        let period = this_month();
        let (used, plan, crossed) =
            store::add_transactions(tx.conn(), tenant, period, added).await?;
        let plan = self.catalogue.effective(&plan);
        if let Some(allowed) = plan.limit(limit)
            && used > allowed
            && !crossed
        {
            store::mark_crossed(tx.conn(), tenant, period).await?;
            tracing::warn!(%tenant, limit = %limit, allowed, used, "plan limit crossed by a bank sync");
            tx.record(
                audit::NewEvent::new("billing.plan_limit_reached")
                    .resource("plan", &plan.id)
                    .payload(json!({ "limit": limit.as_str(), "allowed": allowed, "used": used })),
            );
        }
        Ok(())
    }
}

impl kernel::limits::Limits for PlanLimits {
    fn admit<'a>(
        &'a self,
        tx: &'a mut TenantTx,
        limit: Limit,
        adding: i64,
    ) -> BoxFuture<'a, Result<(), Problem>> {
        Box::pin(self.admit_in(tx, limit, adding))
    }

    fn check<'a>(
        &'a self,
        tx: &'a mut TenantTx,
        limit: Limit,
        adding: i64,
    ) -> BoxFuture<'a, Result<(), Problem>> {
        Box::pin(self.check_in(tx, limit, adding))
    }

    fn writable<'a>(&'a self, tx: &'a mut TenantTx) -> BoxFuture<'a, Result<(), Problem>> {
        Box::pin(async move {
            let tenant = tx.tenant_id();
            let account = store::account(tx.conn(), tenant).await?;
            match account.read_only_since {
                Some(_) => Err(kernel::limits::read_only()),
                None => Ok(()),
            }
        })
    }

    fn count<'a>(
        &'a self,
        tx: &'a mut TenantTx,
        limit: Limit,
        added: i64,
    ) -> BoxFuture<'a, Result<(), Problem>> {
        Box::pin(self.count_in(tx, limit, added))
    }
}

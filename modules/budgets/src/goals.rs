//! Savings goals: a target amount in a currency (and optionally a date), fed by a linked
//! account's balance or by contributions (linked transactions or manual entries). Progress
//! shows what is saved, the monthly amount still needed to reach the target on time, and
//! a projected completion date from the last 90 days' pace; `goal.reached` is written once.

use audit::{NewEvent, Record};
use chrono::{Datelike, NaiveDate};
use kernel::{Currency, Keyset, Page, TenantTx};
use poem_openapi::Object;
use serde_json::json;
use uuid::Uuid;

use crate::{BudgetError, Budgets, store};

/// The window the pace is measured over.
pub const PACE_DAYS: i64 = 90;

/// A savings goal with its progress.
#[derive(Debug, Clone, Object)]
pub struct Goal {
    pub id: Uuid,
    pub name: String,
    /// Minor units of `currency`.
    pub target_amount: i64,
    pub currency: String,
    pub target_date: Option<NaiveDate>,
    /// The account whose balance is what is saved; `null`: the contributions are.
    pub account_id: Option<Uuid>,
    pub reached_at: Option<chrono::DateTime<chrono::Utc>>,
    pub version: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub progress: GoalProgress,
}

/// Where a goal stands today.
#[derive(Debug, Clone, Default, Object)]
pub struct GoalProgress {
    pub saved: i64,
    pub remaining: i64,
    /// `saved / target × 100`, to two decimals.
    pub percent: f64,
    /// Still needed per month to reach the target by its date (`null` without a date).
    pub monthly_needed: Option<i64>,
    /// Saved over the last 90 days.
    pub saved_last_90_days: i64,
    /// When the target is reached at that pace (`null`: no progress in 90 days, or reached).
    pub projected_completion: Option<NaiveDate>,
}

/// A goal to create or its new settings.
#[derive(Debug, Clone)]
pub struct NewGoal {
    pub name: String,
    pub target_amount: i64,
    pub currency: Currency,
    pub target_date: Option<NaiveDate>,
    pub account_id: Option<Uuid>,
}

/// A contribution to a goal fed by contributions.
#[derive(Debug, Clone)]
pub struct NewContribution {
    pub date: NaiveDate,
    /// In the goal's currency; a linked transaction's amount (converted) when absent.
    pub amount: Option<i64>,
    pub transaction_id: Option<Uuid>,
    pub note: Option<String>,
}

fn months_until(today: NaiveDate, date: NaiveDate) -> i64 {
    let months = (date.year() as i64 - today.year() as i64) * 12 + date.month() as i64
        - today.month() as i64;
    months.max(1)
}

impl Budgets {
    async fn check_goal(&self, tx: &mut TenantTx, new: &NewGoal) -> Result<(), BudgetError> {
        if !(1..=200).contains(&new.name.trim().chars().count()) {
            return Err(BudgetError::invalid("name", "must be 1 to 200 characters"));
        }
        if new.target_amount <= 0 {
            return Err(BudgetError::invalid(
                "target_amount",
                "must be positive (minor units)",
            ));
        }
        match new.account_id {
            Some(id) => {
                self.ledger().account(tx, id).await.map_err(|e| match e {
                    ledger::LedgerError::NotFound => {
                        BudgetError::invalid("account_id", "names an account you cannot see")
                    }
                    other => other.into(),
                })?;
            }
            None if tx.is_account_scoped() => {
                return Err(BudgetError::invalid(
                    "account_id",
                    "is required for a member confined to some accounts: name one of them",
                ));
            }
            None => {}
        }
        Ok(())
    }

    pub async fn create_goal(&self, tx: &mut TenantTx, new: NewGoal) -> Result<Goal, BudgetError> {
        self.check_goal(tx, &new).await?;
        let tenant = tx.tenant_id();
        let created_by = tx.context().actor.user_id().map(|u| u.as_uuid());
        let row = store::insert_goal(tx.conn(), tenant, Uuid::now_v7(), &new, created_by).await?;
        tx.record(
            NewEvent::new("goal.created")
                .resource("goal", row.id)
                .payload(json!({ "target_amount": row.target_amount, "currency": row.currency })),
        );
        self.with_progress(tx, row).await
    }

    pub async fn goals(&self, tx: &mut TenantTx, page: &Keyset) -> Result<Page<Goal>, BudgetError> {
        let tenant = tx.tenant_id();
        let rows = store::goals(tx.conn(), tenant, page.after(), page.fetch_limit()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.with_progress(tx, row).await?);
        }
        Ok(page.page(out, |g| (g.created_at, g.id)))
    }

    pub async fn goal(&self, tx: &mut TenantTx, id: Uuid) -> Result<Goal, BudgetError> {
        let tenant = tx.tenant_id();
        let row = store::goal(tx.conn(), tenant, id, false)
            .await?
            .ok_or(BudgetError::NotFound)?;
        self.with_progress(tx, row).await
    }

    pub async fn update_goal(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        expected: Option<i64>,
        new: NewGoal,
    ) -> Result<Goal, BudgetError> {
        let tenant = tx.tenant_id();
        let current = store::goal(tx.conn(), tenant, id, true)
            .await?
            .ok_or(BudgetError::NotFound)?;
        kernel::concurrency::check(expected, current.version)?;
        self.check_goal(tx, &new).await?;
        let row = store::update_goal(tx.conn(), tenant, id, &new).await?;
        tx.record(NewEvent::new("goal.updated").resource("goal", id));
        let goal = self.with_progress(tx, row).await?;
        Ok(goal)
    }

    pub async fn delete_goal(&self, tx: &mut TenantTx, id: Uuid) -> Result<(), BudgetError> {
        let tenant = tx.tenant_id();
        if !store::delete_goal(tx.conn(), tenant, id).await? {
            return Err(BudgetError::NotFound);
        }
        tx.record(NewEvent::new("goal.deleted").resource("goal", id));
        Ok(())
    }

    /// Adds a contribution (a goal fed by an account takes none: its balance counts).
    pub async fn contribute(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        new: NewContribution,
    ) -> Result<Goal, BudgetError> {
        let tenant = tx.tenant_id();
        let goal = store::goal(tx.conn(), tenant, id, true)
            .await?
            .ok_or(BudgetError::NotFound)?;
        if goal.account_id.is_some() {
            return Err(BudgetError::invalid(
                "goal",
                "is fed by its account's balance; it takes no contributions",
            ));
        }
        let currency = Currency::parse(&goal.currency)
            .map_err(|_| BudgetError::invalid("currency", "the goal's currency is unknown"))?;
        // A linked transaction is read once: it must be one the caller sees, and without an
        // amount its own (converted) is the contribution.
        let linked = match new.transaction_id {
            Some(t) => Some(
                self.ledger()
                    .transaction(tx, t)
                    .await
                    .map_err(|e| match e {
                        ledger::LedgerError::NotFound => BudgetError::invalid(
                            "transaction_id",
                            "names no transaction you can see",
                        ),
                        other => other.into(),
                    })?,
            ),
            None => None,
        };
        let amount = match (new.amount, linked) {
            (Some(a), _) if a != 0 => a,
            (Some(_), _) => return Err(BudgetError::invalid("amount", "must not be zero")),
            // Money put aside shows as an outflow of the spending account, or an inflow of a
            // savings one: either way it is saved.
            (None, Some(linked)) => {
                self.fx()
                    .convert(
                        tx,
                        linked.amount.abs(),
                        linked.currency,
                        currency,
                        linked.date,
                    )
                    .await?
                    .amount
            }
            (None, None) => {
                return Err(BudgetError::invalid(
                    "amount",
                    "give an amount or a transaction_id",
                ));
            }
        };
        let added = store::insert_contribution(
            tx.conn(),
            tenant,
            id,
            Uuid::now_v7(),
            new.date,
            amount,
            new.transaction_id,
            new.note.as_deref(),
        )
        .await?;
        if !added {
            return Err(BudgetError::invalid(
                "transaction_id",
                "is counted in this goal already",
            ));
        }
        tx.record(
            NewEvent::new("goal.contributed")
                .resource("goal", id)
                .payload(json!({ "amount": amount, "linked": new.transaction_id.is_some() })),
        );
        let mut goal = self.with_progress(tx, goal).await?;
        self.mark_reached(tx, &mut goal).await?;
        Ok(goal)
    }

    /// Writes `goal.reached` the first time a goal is reached.
    pub(crate) async fn mark_reached(
        &self,
        tx: &mut TenantTx,
        goal: &mut Goal,
    ) -> Result<bool, BudgetError> {
        if goal.reached_at.is_some() || goal.progress.saved < goal.target_amount {
            return Ok(false);
        }
        let tenant = tx.tenant_id();
        if let Some(at) = store::mark_goal_reached(tx.conn(), tenant, goal.id).await? {
            goal.reached_at = Some(at);
            tx.record(
                NewEvent::new("goal.reached")
                    .resource("goal", goal.id)
                    .payload(json!({ "saved": goal.progress.saved, "target_amount": goal.target_amount, "currency": goal.currency })),
            );
            return Ok(true);
        }
        Ok(false)
    }

    /// Every goal of the tenant checked for being reached (the evaluation job).
    pub(crate) async fn evaluate_goals(&self, tx: &mut TenantTx) -> Result<u64, BudgetError> {
        let tenant = tx.tenant_id();
        let mut reached = 0;
        for row in store::goals(tx.conn(), tenant, (None, None), i64::MAX).await? {
            if row.reached_at.is_some() {
                continue;
            }
            let mut goal = match self.with_progress(tx, row).await {
                Ok(g) => g,
                Err(BudgetError::Fx(e)) => {
                    tracing::warn!(%tenant, error = %e, "goal not evaluated");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if self.mark_reached(tx, &mut goal).await? {
                reached += 1;
            }
        }
        Ok(reached)
    }

    async fn with_progress(
        &self,
        tx: &mut TenantTx,
        row: store::GoalRow,
    ) -> Result<Goal, BudgetError> {
        let tenant = tx.tenant_id();
        let today = store::today(tx.conn(), tenant).await?;
        let since = today - chrono::Duration::days(PACE_DAYS);
        let currency = Currency::parse(&row.currency)
            .map_err(|_| BudgetError::invalid("currency", "the goal's currency is unknown"))?;
        let (saved, gained) = match row.account_id {
            Some(account) => {
                let balances = self
                    .ledger()
                    .balances(tx, account, Some(since), Some(today))
                    .await?;
                let info = self.ledger().account(tx, account).await?;
                let from = info.currency;
                let now = balances.last().map_or(info.balance, |b| b.balance);
                let then = balances.first().map_or(now, |b| b.balance);
                let saved = self
                    .fx()
                    .convert(tx, now, from, currency, today)
                    .await?
                    .amount;
                let before = self
                    .fx()
                    .convert(tx, then, from, currency, today)
                    .await?
                    .amount;
                (saved, saved - before)
            }
            None => store::contributions(tx.conn(), tenant, row.id, since).await?,
        };
        let remaining = (row.target_amount - saved).max(0);
        let percent = (saved as f64 * 10_000.0 / row.target_amount as f64).round() / 100.0;
        let monthly_needed = row.target_date.map(|date| {
            if date <= today {
                remaining
            } else {
                fx::decimal::div_half_even(
                    i128::from(remaining),
                    i128::from(months_until(today, date)),
                ) as i64
            }
        });
        let projected_completion = (remaining > 0 && gained > 0).then(|| {
            let days = fx::decimal::div_half_even(
                i128::from(remaining) * i128::from(PACE_DAYS),
                i128::from(gained),
            );
            today + chrono::Duration::days(days as i64)
        });
        Ok(Goal {
            id: row.id,
            name: row.name,
            target_amount: row.target_amount,
            currency: row.currency,
            target_date: row.target_date,
            account_id: row.account_id,
            reached_at: row.reached_at,
            version: row.version,
            created_at: row.created_at,
            progress: GoalProgress {
                saved,
                remaining,
                percent,
                monthly_needed,
                saved_last_90_days: gained,
                projected_completion,
            },
        })
    }
}

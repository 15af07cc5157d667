//! The budgets service: budgets, their progress, and the evaluation that alerts each
//! threshold once per period.
//!
//! Counting: a budget over a category counts its transactions (and split parts) in that
//! category, and its subcategories unless told not to; one over all spending counts the
//! expense categories and uncategorised outflows. Transfer legs never count. Each day's sum
//! in another currency is converted at that day's ECB rate (one rounding per currency and
//! day). `spent` is net: a refund reduces it.
//!
//! Alerting: a threshold fires when net spending reaches it, once per period. It re-arms
//! only when the period's *outflows* drop below it — a correction (an edited or deleted
//! purchase, a recategorisation) does that; a refund does not, so spending that hovers
//! around a threshold (a refund, then a new purchase) never repeats the alert.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use audit::{NewEvent, Record};
use chrono::NaiveDate;
use jobs::{Enqueue, NewJob};
use kernel::{Actor, Currency, Db, Keyset, Page, TenantId, TenantTx};
use ledger::{CategoryKind, DaySums, Ledger};
use serde_json::json;
use uuid::Uuid;

use crate::{
    BudgetError,
    domain::{Budget, Progress, ThresholdState},
    period::Period,
    store,
};

/// The job that evaluates every budget of a tenant.
pub const EVALUATE_JOB: &str = "budgets.evaluate";
/// The daily evaluation of every tenant.
pub const DAILY_JOB: &str = "budgets.evaluate_all";
/// How many earlier periods a rollover carries from.
pub const ROLLOVER_PERIODS: i64 = 12;
/// Changes within this many seconds share one evaluation.
const COALESCE_SECS: i64 = 5;

/// A budget to create (parsed by the route).
#[derive(Debug, Clone)]
pub struct NewBudget {
    pub name: String,
    pub category_id: Option<Uuid>,
    pub include_children: bool,
    pub account_ids: Option<Vec<Uuid>>,
    pub period: Period,
    pub start_date: NaiveDate,
    pub amount: i64,
    pub currency: Currency,
    pub rollover: bool,
    pub thresholds: Vec<i32>,
}

#[derive(Clone)]
pub struct Budgets(Arc<Inner>);

struct Inner {
    db: Db,
    ledger: Ledger,
    fx: fx::Fx,
}

/// A period's figures before they are shown.
struct Figures {
    start: NaiveDate,
    end: NaiveDate,
    carried: i64,
    available: i64,
    spent: i64,
    outflow: i64,
    converted: i64,
}

fn check_thresholds(thresholds: &[i32]) -> Result<(), BudgetError> {
    if thresholds.is_empty() || thresholds.len() > 10 {
        return Err(BudgetError::invalid(
            "thresholds",
            "must list 1 to 10 percentages",
        ));
    }
    if thresholds.iter().any(|t| !(1..=1000).contains(t)) {
        return Err(BudgetError::invalid(
            "thresholds",
            "each must be from 1 to 1000 (%)",
        ));
    }
    if thresholds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(BudgetError::invalid("thresholds", "must ascend, each once"));
    }
    Ok(())
}

impl Budgets {
    pub fn new(db: Db, ledger: Ledger, fx: fx::Fx) -> Budgets {
        Budgets(Arc::new(Inner { db, ledger, fx }))
    }

    pub(crate) fn ledger(&self) -> &Ledger {
        &self.0.ledger
    }

    pub(crate) fn fx(&self) -> &fx::Fx {
        &self.0.fx
    }

    /// What the ledger tells of every change: one evaluation of the tenant's budgets,
    /// shared by the changes of a few seconds.
    pub fn on_change() -> Arc<dyn ledger::Changes> {
        Arc::new(OnChange)
    }

    async fn check(&self, tx: &mut TenantTx, new: &NewBudget) -> Result<(), BudgetError> {
        if !(1..=200).contains(&new.name.trim().chars().count()) {
            return Err(BudgetError::invalid("name", "must be 1 to 200 characters"));
        }
        if new.amount <= 0 {
            return Err(BudgetError::invalid(
                "amount",
                "must be positive (minor units)",
            ));
        }
        check_thresholds(&new.thresholds)?;
        if let Some(category) = new.category_id {
            let found = self
                .0
                .ledger
                .category(tx, category)
                .await
                .map_err(|e| match e {
                    ledger::LedgerError::NotFound => {
                        BudgetError::invalid("category_id", "names no category of this tenant")
                    }
                    other => other.into(),
                })?;
            if found.kind != CategoryKind::Expense {
                return Err(BudgetError::invalid(
                    "category_id",
                    "must be an expense category",
                ));
            }
        }
        match &new.account_ids {
            Some(ids) if ids.is_empty() || ids.len() > 100 => {
                return Err(BudgetError::invalid(
                    "account_ids",
                    "must name 1 to 100 accounts, or be null for all",
                ));
            }
            Some(ids) => {
                for id in ids {
                    self.0.ledger.account(tx, *id).await.map_err(|e| match e {
                        ledger::LedgerError::NotFound => {
                            BudgetError::invalid("account_ids", "names an account you cannot see")
                        }
                        other => other.into(),
                    })?;
                }
            }
            // A member confined to some accounts budgets only over those.
            None if tx.is_account_scoped() => {
                return Err(BudgetError::invalid(
                    "account_ids",
                    "is required for a member confined to some accounts: name them",
                ));
            }
            None => {}
        }
        Ok(())
    }

    /// The tenant's base currency: a budget's default.
    pub async fn base_currency(&self, tx: &mut TenantTx) -> Result<Currency, BudgetError> {
        let tenant = tx.tenant_id();
        let code = store::base_currency(tx.conn(), tenant).await?;
        Currency::parse(&code)
            .map_err(|_| BudgetError::invalid("currency", "the tenant's base currency is unknown"))
    }

    pub async fn create(&self, tx: &mut TenantTx, new: NewBudget) -> Result<Budget, BudgetError> {
        self.check(tx, &new).await?;
        let tenant = tx.tenant_id();
        let created_by = tx.context().actor.user_id().map(|u| u.as_uuid());
        let budget = store::insert(
            tx.conn(),
            tenant,
            store::NewBudgetRow {
                id: Uuid::now_v7(),
                name: new.name.trim(),
                category_id: new.category_id,
                include_children: new.include_children,
                account_ids: new.account_ids.as_deref(),
                period: new.period.as_str(),
                anchor: new.start_date,
                amount: new.amount,
                currency: new.currency.code(),
                rollover: new.rollover,
                thresholds: &new.thresholds,
                created_by,
            },
        )
        .await?;
        tx.record(
            NewEvent::new("budget.created")
                .resource("budget", budget.id)
                .payload(json!({ "amount": budget.amount, "currency": budget.currency, "period": budget.period })),
        );
        evaluate_soon(tx);
        Ok(budget)
    }

    pub async fn budgets(
        &self,
        tx: &mut TenantTx,
        page: &Keyset,
    ) -> Result<Page<Budget>, BudgetError> {
        let tenant = tx.tenant_id();
        let rows = store::list(tx.conn(), tenant, page.after(), page.fetch_limit()).await?;
        Ok(page.page(rows, |b| (b.created_at, b.id)))
    }

    pub async fn budget(&self, tx: &mut TenantTx, id: Uuid) -> Result<Budget, BudgetError> {
        let tenant = tx.tenant_id();
        store::get(tx.conn(), tenant, id, false)
            .await?
            .ok_or(BudgetError::NotFound)
    }

    /// Replaces a budget's settings; `expected` is the `If-Match` version, if any.
    pub async fn update(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        expected: Option<i64>,
        new: NewBudget,
    ) -> Result<Budget, BudgetError> {
        let tenant = tx.tenant_id();
        let current = store::get(tx.conn(), tenant, id, true)
            .await?
            .ok_or(BudgetError::NotFound)?;
        kernel::concurrency::check(expected, current.version)?;
        self.check(tx, &new).await?;
        let next = Budget {
            name: new.name.trim().to_string(),
            category_id: new.category_id,
            include_children: new.include_children,
            account_ids: new.account_ids,
            period: new.period.as_str().to_string(),
            start_date: new.start_date,
            amount: new.amount,
            currency: new.currency.code().to_string(),
            rollover: new.rollover,
            thresholds: new.thresholds,
            ..current.clone()
        };
        let updated = store::update(tx.conn(), tenant, &next).await?;
        tx.record(
            NewEvent::new("budget.updated")
                .resource("budget", id)
                .payload(json!({ "from": { "amount": current.amount, "currency": current.currency },
                                 "to": { "amount": updated.amount, "currency": updated.currency } })),
        );
        evaluate_soon(tx);
        Ok(updated)
    }

    pub async fn delete(&self, tx: &mut TenantTx, id: Uuid) -> Result<(), BudgetError> {
        let tenant = tx.tenant_id();
        if !store::delete(tx.conn(), tenant, id).await? {
            return Err(BudgetError::NotFound);
        }
        tx.record(NewEvent::new("budget.deleted").resource("budget", id));
        Ok(())
    }

    /// The figures of the period holding `on` (default: today in the tenant's time zone),
    /// over the transactions the caller sees.
    pub async fn progress(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        on: Option<NaiveDate>,
    ) -> Result<Progress, BudgetError> {
        let budget = self.budget(tx, id).await?;
        let tenant = tx.tenant_id();
        let today = store::today(tx.conn(), tenant).await?;
        let on = on.unwrap_or(today);
        let figures = self.figures(tx, &budget, on).await?;
        let states = store::thresholds(tx.conn(), tenant, budget.id, figures.start).await?;
        Ok(view(&budget, &figures, &states, today))
    }

    /// The dates a budget's figures on `on` read: its period, and the earlier ones a
    /// rollover carries from.
    fn window(budget: &Budget, on: NaiveDate) -> (Period, i64, i64, NaiveDate, NaiveDate) {
        let period = Period::parse(&budget.period).unwrap_or(Period::Monthly);
        let anchor = budget.start_date;
        let n = period.index_of(anchor, on);
        let first = if budget.rollover {
            (n - ROLLOVER_PERIODS).max(0).min(n)
        } else {
            n
        };
        (
            period,
            first,
            n,
            period.nth(anchor, first),
            period.nth(anchor, n + 1),
        )
    }

    /// What the figures of some budgets need, read once: the day sums over `[from, to)`,
    /// the categories, and the rates of every currency involved.
    async fn snapshot(
        &self,
        tx: &mut TenantTx,
        from: NaiveDate,
        to: NaiveDate,
        targets: &[&str],
    ) -> Result<Snapshot, BudgetError> {
        let sums = self.0.ledger.day_sums(tx, from, to).await?;
        let categories = self.0.ledger.all_categories(tx).await?;
        let mut currencies: Vec<&str> = sums.iter().map(|s| s.currency.as_str()).collect();
        currencies.extend_from_slice(targets);
        currencies.sort_unstable();
        currencies.dedup();
        let rates = self.0.fx.table(tx, &currencies, from, to).await?;
        Ok(Snapshot {
            sums,
            categories,
            rates,
        })
    }

    /// The figures of the period of `budget` holding `on`.
    async fn figures(
        &self,
        tx: &mut TenantTx,
        budget: &Budget,
        on: NaiveDate,
    ) -> Result<Figures, BudgetError> {
        let (.., from, to) = Self::window(budget, on);
        let snapshot = self.snapshot(tx, from, to, &[&budget.currency]).await?;
        figures_of(budget, on, &snapshot)
    }

    /// Evaluates every budget of a tenant in its current period: each threshold crossed
    /// alerts once (`budget.threshold_crossed`); a correction below one re-arms it. Goals
    /// reached are marked (`goal.reached`, once). Returns how many alerted.
    pub async fn evaluate(&self, tenant: TenantId) -> Result<u64, BudgetError> {
        self.evaluate_at(tenant, None).await
    }

    /// [`Budgets::evaluate`] as of `on` (default: today in the tenant's time zone); the
    /// benchmark evaluates a past month whose rates are all known.
    pub async fn evaluate_at(
        &self,
        tenant: TenantId,
        on: Option<NaiveDate>,
    ) -> Result<u64, BudgetError> {
        let mut tx = TenantTx::begin(&self.0.db, tenant, Actor::System).await?;
        tx.act_for("budgets");
        let today = match on {
            Some(date) => date,
            None => store::today(tx.conn(), tenant).await?,
        };
        let mut alerted = 0;
        let all: Vec<Budget> = store::all(tx.conn(), tenant)
            .await?
            .into_iter()
            .filter(|b| {
                Period::parse(&b.period)
                    .unwrap_or(Period::Monthly)
                    .index_of(b.start_date, today)
                    >= 0
            })
            .collect();
        // One read of the ledger and the rates for every budget: the union of their windows.
        let windows: Vec<(NaiveDate, NaiveDate)> = all
            .iter()
            .map(|b| {
                let (.., from, to) = Self::window(b, today);
                (from, to)
            })
            .collect();
        let snapshot = match (
            windows.iter().map(|w| w.0).min(),
            windows.iter().map(|w| w.1).max(),
        ) {
            (Some(from), Some(to)) => {
                let targets: Vec<&str> = all.iter().map(|b| b.currency.as_str()).collect();
                Some(self.snapshot(&mut tx, from, to, &targets).await?)
            }
            _ => None,
        };
        for budget in all {
            let Some(snapshot) = &snapshot else { break };
            let figures = match figures_of(&budget, today, snapshot) {
                Ok(f) => f,
                // A missing rate stops this budget's evaluation only.
                Err(BudgetError::Fx(e)) => {
                    tracing::warn!(%tenant, budget = %budget.id, error = %e, "budget not evaluated");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let states = store::thresholds(tx.conn(), tenant, budget.id, figures.start).await?;
            for &threshold in &budget.thresholds {
                let reached = |amount: i64| {
                    i128::from(amount) * 100
                        >= i128::from(threshold) * i128::from(figures.available)
                };
                let state = states.iter().find(|s| s.threshold == threshold);
                let fires = match state {
                    None => reached(figures.spent),
                    Some(s) if s.armed => reached(figures.spent),
                    Some(_) => false,
                };
                if fires {
                    store::cross(
                        tx.conn(),
                        tenant,
                        budget.id,
                        figures.start,
                        threshold,
                        figures.spent,
                    )
                    .await?;
                    tx.record(
                        NewEvent::new("budget.threshold_crossed")
                            .resource("budget", budget.id)
                            .payload(json!({
                                "threshold": threshold,
                                "period_start": figures.start,
                                "spent": figures.spent,
                                "available": figures.available,
                                "currency": budget.currency,
                            })),
                    );
                    alerted += 1;
                } else if let Some(s) = state
                    && !s.armed
                    && !reached(figures.outflow.max(figures.spent))
                {
                    // Only a correction lowers the outflows: re-armed for this period.
                    store::rearm(tx.conn(), tenant, budget.id, figures.start, threshold).await?;
                }
            }
        }
        alerted += self.evaluate_goals(&mut tx).await?;
        tx.commit().await?;
        Ok(alerted)
    }

    /// Every tenant's evaluation (daily: periods roll over with the date).
    pub async fn evaluate_all(&self) -> Result<u64, BudgetError> {
        let mut tx = kernel::SystemTx::begin(&self.0.db, Actor::System).await?;
        let tenants = store::live_tenants(tx.conn()).await?;
        tx.rollback().await?;
        let mut alerted = 0;
        for tenant in tenants {
            match self.evaluate(tenant).await {
                Ok(n) => alerted += n,
                Err(e) => tracing::error!(%tenant, error = ?e, "budgets not evaluated"),
            }
        }
        Ok(alerted)
    }
}

/// The ledger's sums, the categories and the rates some budgets' figures read.
struct Snapshot {
    sums: Vec<DaySums>,
    categories: Vec<ledger::Category>,
    rates: fx::RateTable,
}

/// The figures of the period of `budget` holding `on`, from a snapshot covering its window.
fn figures_of(budget: &Budget, on: NaiveDate, snapshot: &Snapshot) -> Result<Figures, BudgetError> {
    let (period, first, n, ..) = Budgets::window(budget, on);
    let anchor = budget.start_date;
    let matcher = Matcher::new(budget, &snapshot.categories);
    let target = Currency::parse(&budget.currency)
        .map_err(|_| BudgetError::invalid("currency", "is not an ISO 4217 currency"))?;
    let mut carried = 0i64;
    let mut current = None;
    for k in first..=n {
        let (start, end) = (period.nth(anchor, k), period.nth(anchor, k + 1));
        let (spent, outflow, converted) =
            matcher.spent(&snapshot.sums, start, end, &snapshot.rates, target)?;
        if k < n {
            carried += budget.amount - spent;
        } else {
            current = Some((start, end, spent, outflow, converted));
        }
    }
    let (start, end, spent, outflow, converted) = current.expect("the loop reaches n");
    Ok(Figures {
        start,
        end,
        carried,
        available: budget.amount + carried,
        spent,
        outflow,
        converted,
    })
}

/// Which sums a budget counts.
struct Matcher {
    /// `None`: all spending.
    categories: Option<HashSet<Uuid>>,
    expense: HashSet<Uuid>,
    accounts: Option<HashSet<Uuid>>,
}

impl Matcher {
    fn new(budget: &Budget, categories: &[ledger::Category]) -> Matcher {
        let chosen = budget.category_id.map(|c| {
            let mut set: HashSet<Uuid> = HashSet::from([c]);
            if budget.include_children {
                set.extend(
                    categories
                        .iter()
                        .filter(|k| k.parent_id == Some(c))
                        .map(|k| k.id),
                );
            }
            set
        });
        Matcher {
            categories: chosen,
            expense: categories
                .iter()
                .filter(|k| k.kind == CategoryKind::Expense)
                .map(|k| k.id)
                .collect(),
            accounts: budget
                .account_ids
                .as_ref()
                .map(|a| a.iter().copied().collect()),
        }
    }

    /// The (net, outflow) a row adds, if the budget counts it.
    fn counts(&self, row: &DaySums) -> Option<(i64, i64)> {
        if let Some(accounts) = &self.accounts
            && !accounts.contains(&row.account_id)
        {
            return None;
        }
        match (&self.categories, row.category_id) {
            (Some(set), Some(c)) => set.contains(&c).then_some((row.net, row.outflow)),
            (Some(_), None) => None,
            (None, Some(c)) => self.expense.contains(&c).then_some((row.net, row.outflow)),
            // Uncategorised: its outflows are spending; inflows may be income.
            (None, None) => Some((row.outflow, row.outflow)),
        }
    }

    /// Spending in `[start, end)` in `target`: (net, outflows, rows converted), both as
    /// positive spending.
    fn spent(
        &self,
        sums: &[DaySums],
        start: NaiveDate,
        end: NaiveDate,
        rates: &fx::RateTable,
        target: Currency,
    ) -> Result<(i64, i64, i64), BudgetError> {
        let mut by_day: BTreeMap<(&str, NaiveDate), (i64, i64, i64)> = BTreeMap::new();
        for row in sums.iter().filter(|r| r.date >= start && r.date < end) {
            if let Some((net, outflow)) = self.counts(row) {
                let e = by_day.entry((row.currency.as_str(), row.date)).or_default();
                e.0 += net;
                e.1 += outflow;
                e.2 += row.count;
            }
        }
        let (mut net, mut outflow, mut converted) = (0i64, 0i64, 0i64);
        for ((code, date), (n, o, count)) in by_day {
            let from = Currency::parse(code).map_err(|_| {
                BudgetError::invalid("currency", "a transaction's currency is unknown")
            })?;
            if from != target {
                converted += count;
            }
            net += rates.convert(n, from, target, date)?.amount;
            outflow += rates.convert(o, from, target, date)?.amount;
        }
        Ok((-net, -outflow, converted))
    }
}

fn view(
    budget: &Budget,
    f: &Figures,
    states: &[store::ThresholdRow],
    today: NaiveDate,
) -> Progress {
    let percent = if f.available > 0 {
        (f.spent as f64 * 10_000.0 / f.available as f64).round() / 100.0
    } else if f.spent > 0 {
        f64::from(i32::MAX) / 100.0
    } else {
        0.0
    };
    let total = (f.end - f.start).num_days().max(1);
    let projected = if today >= f.end {
        f.spent
    } else if today < f.start {
        0
    } else {
        let elapsed = (today - f.start).num_days() + 1;
        fx::decimal::div_half_even(i128::from(f.spent) * i128::from(total), i128::from(elapsed))
            as i64
    };
    Progress {
        budget_id: budget.id,
        period_start: f.start,
        period_end: f.end - chrono::Duration::days(1),
        currency: budget.currency.clone(),
        amount: budget.amount,
        carried: f.carried,
        available: f.available,
        spent: f.spent,
        remaining: f.available - f.spent,
        percent,
        thresholds: budget
            .thresholds
            .iter()
            .map(|&t| {
                let live = states.iter().find(|s| s.threshold == t && !s.armed);
                ThresholdState {
                    threshold: t,
                    crossed_at: live.map(|s| s.crossed_at),
                    spent_at_crossing: live.map(|s| s.spent),
                }
            })
            .collect(),
        projected,
        converted: f.converted,
    }
}

/// Queues the tenant's evaluation for the end of the current few-second slot: every
/// change of the slot shares it.
fn evaluate_soon(tx: &mut TenantTx) {
    #[derive(Clone)]
    struct Queued;
    if tx.extensions().get::<Queued>().is_some() {
        return;
    }
    tx.extensions_mut().insert(Queued);
    let tenant = tx.tenant_id();
    let now = chrono::Utc::now();
    let slot = now.timestamp() / COALESCE_SECS;
    let wait = (slot + 1) * COALESCE_SECS * 1000 - now.timestamp_millis() + 200;
    tx.enqueue(
        NewJob::new("default", EVALUATE_JOB, json!({}))
            .idempotency_key(format!("budgets:{tenant}:{slot}"))
            .delay(std::time::Duration::from_millis(wait.max(0) as u64)),
    );
}

struct OnChange;

impl ledger::Changes for OnChange {
    fn changed(&self, tx: &mut TenantTx) {
        evaluate_soon(tx);
    }
}

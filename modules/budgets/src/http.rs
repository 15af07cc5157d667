//! The budget routes. Thin: authorize, parse, call the service, map.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use kernel::{
    ApiResult, Currency, Keyset, LazyJson, TenantId, Validate,
    auth::{Authorize, BearerAuth},
    concurrency,
    idempotency::{self, Fingerprint, IdempotencyKey},
};
use poem::http::StatusCode;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Header, Path, Query},
    payload::Json,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    Budgets, NewBudget,
    domain::{Budget, Progress},
    goals::{Goal, NewContribution, NewGoal},
    period::Period,
};

/// The permission of each operation, declared beside the routes (spec: `x-permission`).
pub const PERMISSIONS: &[(&str, &str)] = &[
    ("list_budgets", READ),
    ("create_budget", WRITE),
    ("get_budget", READ),
    ("update_budget", WRITE),
    ("delete_budget", WRITE),
    ("get_budget_progress", READ),
    ("list_goals", GOALS_READ),
    ("create_goal", GOALS_WRITE),
    ("get_goal", GOALS_READ),
    ("update_goal", GOALS_WRITE),
    ("delete_goal", GOALS_WRITE),
    ("create_goal_contribution", GOALS_WRITE),
];
const GOALS_READ: &str = "goals:read";
const GOALS_WRITE: &str = "goals:write";
const READ: &str = "budgets:read";
const WRITE: &str = "budgets:write";

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Budgets per category or all spending, in any currency, with thresholds that alert
    /// once per period.
    Budgets,
}

kernel::page_object!(
    /// Budgets, newest first.
    BudgetList,
    Budget
);

kernel::page_object!(
    /// Savings goals, newest first.
    GoalList,
    Goal
);

/// A savings goal's settings.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoalBody {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// Minor units of `currency`, positive.
    pub target_amount: i64,
    /// Default: the tenant's base currency.
    pub currency: Option<Currency>,
    pub target_date: Option<NaiveDate>,
    /// An account whose balance is what is saved; absent: contributions feed the goal.
    pub account_id: Option<Uuid>,
}

impl Validate for GoalBody {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        if !(1..=200).contains(&self.name.trim().chars().count()) {
            errors.add("name", "must be 1 to 200 characters");
        }
        if self.target_amount <= 0 {
            errors.add("target_amount", "must be positive (minor units)");
        }
    }
}

/// Money put towards a goal: an amount, or a transaction that moved it.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributionBody {
    /// Default: the transaction's date, else today.
    pub date: Option<NaiveDate>,
    /// In the goal's currency; absent: the linked transaction's amount, converted.
    pub amount: Option<i64>,
    pub transaction_id: Option<Uuid>,
    #[oai(validator(max_length = 500))]
    pub note: Option<String>,
}

impl Validate for ContributionBody {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        if self.amount.is_none() && self.transaction_id.is_none() {
            errors.add("amount", "give an amount or a transaction_id");
        }
        if self.note.as_ref().is_some_and(|n| n.chars().count() > 500) {
            errors.add("note", "must be at most 500 characters");
        }
    }
}

#[derive(ApiResponse)]
pub enum GoalCreated {
    #[oai(status = 201)]
    Created(Json<Goal>, #[oai(header = "Location")] String),
}

/// A budget's settings.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// An expense category; absent or `null`: all spending.
    pub category_id: Option<Uuid>,
    /// Count the category's subcategories too (default true).
    pub include_children: Option<bool>,
    /// Only these accounts; absent or `null`: every account.
    #[oai(validator(max_items = 100))]
    pub account_ids: Option<Vec<Uuid>>,
    /// `weekly`, `monthly`, `quarterly` or `yearly`.
    pub period: String,
    /// The first day of the first period (a fiscal year from 1 April: `2026-04-01`);
    /// default: the first of this month.
    pub start_date: Option<NaiveDate>,
    /// Minor units of `currency`, positive.
    pub amount: i64,
    /// Default: the tenant's base currency.
    pub currency: Option<Currency>,
    /// Carry the unspent (or overspent) remainder into the next period (default false).
    pub rollover: Option<bool>,
    /// Percentages that alert once per period (default 80, 100, 120).
    #[oai(validator(max_items = 10))]
    pub thresholds: Option<Vec<i32>>,
}

impl Validate for BudgetBody {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        if !(1..=200).contains(&self.name.trim().chars().count()) {
            errors.add("name", "must be 1 to 200 characters");
        }
        if Period::parse(&self.period).is_none() {
            errors.add("period", "must be weekly, monthly, quarterly or yearly");
        }
        if self.amount <= 0 {
            errors.add("amount", "must be positive (minor units)");
        }
        if self.account_ids.as_ref().is_some_and(|a| a.len() > 100) {
            errors.add("account_ids", "must name at most 100 accounts");
        }
        if self.thresholds.as_ref().is_some_and(|t| t.len() > 10) {
            errors.add("thresholds", "must list at most 10 percentages");
        }
    }
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Created(Json<Budget>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum Deleted {
    #[oai(status = 204)]
    Deleted,
}

pub struct BudgetsApi {
    authz: Arc<dyn Authorize>,
    budgets: Budgets,
    cursors: kernel::CursorSigner,
}

impl BudgetsApi {
    pub fn new(authz: Arc<dyn Authorize>, budgets: Budgets, cursors: kernel::CursorSigner) -> Self {
        BudgetsApi {
            authz,
            budgets,
            cursors,
        }
    }

    async fn parse(&self, tx: &mut kernel::TenantTx, body: BudgetBody) -> ApiResult<NewBudget> {
        let currency = match body.currency {
            Some(c) => c,
            None => self.budgets.base_currency(tx).await?,
        };
        let today = chrono::Utc::now().date_naive();
        Ok(NewBudget {
            name: body.name,
            category_id: body.category_id,
            include_children: body.include_children.unwrap_or(true),
            account_ids: body.account_ids,
            period: Period::parse(&body.period).unwrap_or(Period::Monthly),
            start_date: body
                .start_date
                .unwrap_or_else(|| today.with_day0(0).unwrap_or(today)),
            amount: body.amount,
            currency,
            rollover: body.rollover.unwrap_or(false),
            thresholds: body.thresholds.unwrap_or_else(|| vec![80, 100, 120]),
        })
    }
}

impl BudgetsApi {
    async fn goal_of(&self, tx: &mut kernel::TenantTx, body: GoalBody) -> ApiResult<NewGoal> {
        let currency = match body.currency {
            Some(c) => c,
            None => self.budgets.base_currency(tx).await?,
        };
        Ok(NewGoal {
            name: body.name,
            target_amount: body.target_amount,
            currency,
            target_date: body.target_date,
            account_id: body.account_id,
        })
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Budgets")]
impl BudgetsApi {
    /// Budgets, newest first (a member confined to some accounts sees those over accounts
    /// they all see).
    #[oai(
        path = "/tenants/:tenant_id/budgets",
        method = "get",
        operation_id = "list_budgets"
    )]
    async fn list_budgets(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<BudgetList>> {
        let mut tx = self.authz.tenant(auth.token(), tenant_id.0, READ).await?;
        let page = Keyset::parse(
            &self.cursors,
            "list_budgets",
            tenant_id.0,
            limit.0,
            cursor.0.as_deref(),
        )?;
        let list = self.budgets.budgets(&mut tx, &page).await?;
        tx.commit().await?;
        Ok(Json(list.into()))
    }

    /// Creates a budget. Takes `Idempotency-Key`.
    #[oai(
        path = "/tenants/:tenant_id/budgets",
        method = "post",
        operation_id = "create_budget"
    )]
    async fn create_budget(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        body: LazyJson<BudgetBody>,
    ) -> ApiResult<Created> {
        let mut tx = self.authz.tenant(auth.token(), tenant_id.0, WRITE).await?;
        let body = body.parse()?;
        let key = IdempotencyKey::parse_optional(key.0.as_deref())?;
        let fingerprint = Fingerprint::new("create_budget", body.digest());
        let at = |b: &Budget| format!("/api/v1/tenants/{}/budgets/{}", tenant_id.0, b.id);
        if let Some(stored) =
            idempotency::claim::<_, Budget>(&mut tx, key.as_ref(), fingerprint, StatusCode::CREATED)
                .await?
        {
            let location = at(&stored);
            return Ok(Created::Created(Json(stored), location));
        }
        let new = self.parse(&mut tx, body.into_inner()).await?;
        let budget = self.budgets.create(&mut tx, new).await?;
        idempotency::commit(tx, key.as_ref(), StatusCode::CREATED, &budget).await?;
        let location = at(&budget);
        Ok(Created::Created(Json(budget), location))
    }

    #[oai(
        path = "/tenants/:tenant_id/budgets/:id",
        method = "get",
        operation_id = "get_budget"
    )]
    async fn get_budget(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Budget>> {
        let mut tx = self.authz.tenant(auth.token(), tenant_id.0, READ).await?;
        let budget = self.budgets.budget(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Json(budget))
    }

    /// Replaces a budget's settings (`If-Match` with its version).
    #[oai(
        path = "/tenants/:tenant_id/budgets/:id",
        method = "patch",
        operation_id = "update_budget"
    )]
    async fn update_budget(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: LazyJson<BudgetBody>,
    ) -> ApiResult<Json<Budget>> {
        let mut tx = self.authz.tenant(auth.token(), tenant_id.0, WRITE).await?;
        let body = body.parse()?.into_inner();
        let expected = concurrency::if_match(if_match.0.as_deref())?;
        let new = self.parse(&mut tx, body).await?;
        let budget = self.budgets.update(&mut tx, id.0, expected, new).await?;
        tx.commit().await?;
        Ok(Json(budget))
    }

    #[oai(
        path = "/tenants/:tenant_id/budgets/:id",
        method = "delete",
        operation_id = "delete_budget"
    )]
    async fn delete_budget(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Deleted> {
        let mut tx = self.authz.tenant(auth.token(), tenant_id.0, WRITE).await?;
        self.budgets.delete(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Deleted::Deleted)
    }

    /// The period holding `period` (a date; default today in the tenant's time zone):
    /// spent, remaining, percent, thresholds crossed and when, the projected spending at
    /// the current pace, and how many transactions were converted from other currencies.
    #[oai(
        path = "/tenants/:tenant_id/budgets/:id/progress",
        method = "get",
        operation_id = "get_budget_progress"
    )]
    async fn get_budget_progress(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        period: Query<Option<NaiveDate>>,
    ) -> ApiResult<Json<Progress>> {
        let mut tx = self.authz.tenant(auth.token(), tenant_id.0, READ).await?;
        let progress = self.budgets.progress(&mut tx, id.0, period.0).await?;
        tx.commit().await?;
        Ok(Json(progress))
    }

    /// Savings goals, newest first, each with its progress.
    #[oai(
        path = "/tenants/:tenant_id/goals",
        method = "get",
        operation_id = "list_goals"
    )]
    async fn list_goals(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<GoalList>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, GOALS_READ)
            .await?;
        let page = Keyset::parse(
            &self.cursors,
            "list_goals",
            tenant_id.0,
            limit.0,
            cursor.0.as_deref(),
        )?;
        let list = self.budgets.goals(&mut tx, &page).await?;
        tx.commit().await?;
        Ok(Json(list.into()))
    }

    /// Creates a savings goal, fed by an account's balance or by contributions. Takes
    /// `Idempotency-Key`.
    #[oai(
        path = "/tenants/:tenant_id/goals",
        method = "post",
        operation_id = "create_goal"
    )]
    async fn create_goal(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        body: LazyJson<GoalBody>,
    ) -> ApiResult<GoalCreated> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, GOALS_WRITE)
            .await?;
        let body = body.parse()?;
        let key = IdempotencyKey::parse_optional(key.0.as_deref())?;
        let fingerprint = Fingerprint::new("create_goal", body.digest());
        let at = |g: &Goal| format!("/api/v1/tenants/{}/goals/{}", tenant_id.0, g.id);
        if let Some(stored) =
            idempotency::claim::<_, Goal>(&mut tx, key.as_ref(), fingerprint, StatusCode::CREATED)
                .await?
        {
            let location = at(&stored);
            return Ok(GoalCreated::Created(Json(stored), location));
        }
        let new = self.goal_of(&mut tx, body.into_inner()).await?;
        let goal = self.budgets.create_goal(&mut tx, new).await?;
        idempotency::commit(tx, key.as_ref(), StatusCode::CREATED, &goal).await?;
        let location = at(&goal);
        Ok(GoalCreated::Created(Json(goal), location))
    }

    /// A goal and its progress: saved, remaining, the monthly amount needed to reach it on
    /// time, and the completion date at the last 90 days' pace.
    #[oai(
        path = "/tenants/:tenant_id/goals/:id",
        method = "get",
        operation_id = "get_goal"
    )]
    async fn get_goal(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Goal>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, GOALS_READ)
            .await?;
        let goal = self.budgets.goal(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Json(goal))
    }

    /// Replaces a goal's settings (`If-Match` with its version).
    #[oai(
        path = "/tenants/:tenant_id/goals/:id",
        method = "patch",
        operation_id = "update_goal"
    )]
    async fn update_goal(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: LazyJson<GoalBody>,
    ) -> ApiResult<Json<Goal>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, GOALS_WRITE)
            .await?;
        let body = body.parse()?.into_inner();
        let expected = concurrency::if_match(if_match.0.as_deref())?;
        let new = self.goal_of(&mut tx, body).await?;
        let goal = self
            .budgets
            .update_goal(&mut tx, id.0, expected, new)
            .await?;
        tx.commit().await?;
        Ok(Json(goal))
    }

    #[oai(
        path = "/tenants/:tenant_id/goals/:id",
        method = "delete",
        operation_id = "delete_goal"
    )]
    async fn delete_goal(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Deleted> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, GOALS_WRITE)
            .await?;
        self.budgets.delete_goal(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Deleted::Deleted)
    }

    /// Puts money towards a goal fed by contributions: an amount, or a transaction (its
    /// amount, converted to the goal's currency). Reaching the target writes `goal.reached`
    /// once.
    #[oai(
        path = "/tenants/:tenant_id/goals/:id/contributions",
        method = "post",
        operation_id = "create_goal_contribution"
    )]
    async fn create_goal_contribution(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        body: LazyJson<ContributionBody>,
    ) -> ApiResult<Json<Goal>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, GOALS_WRITE)
            .await?;
        let body = body.parse()?.into_inner();
        let date = body.date.unwrap_or_else(|| chrono::Utc::now().date_naive());
        let goal = self
            .budgets
            .contribute(
                &mut tx,
                id.0,
                NewContribution {
                    date,
                    amount: body.amount,
                    transaction_id: body.transaction_id,
                    note: body.note,
                },
            )
            .await?;
        tx.commit().await?;
        Ok(Json(goal))
    }
}

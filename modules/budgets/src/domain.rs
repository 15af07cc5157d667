//! What budgets show.

use chrono::{DateTime, NaiveDate, Utc};
use poem_openapi::Object;
use uuid::Uuid;

/// A budget.
#[derive(Debug, Clone, Object)]
pub struct Budget {
    pub id: Uuid,
    pub name: String,
    /// `null`: all spending (expense categories and uncategorised outflows).
    pub category_id: Option<Uuid>,
    /// With the category's subcategories.
    pub include_children: bool,
    /// `null`: every account.
    pub account_ids: Option<Vec<Uuid>>,
    /// `weekly`, `monthly`, `quarterly` or `yearly`.
    pub period: String,
    /// The first day of the first period; later periods follow it.
    pub start_date: NaiveDate,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: String,
    /// The unspent (or overspent) remainder of earlier periods carries into the next.
    pub rollover: bool,
    /// Percentages of the available amount that alert once per period when crossed.
    pub thresholds: Vec<i32>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
}

/// A threshold of a period.
#[derive(Debug, Clone, Object)]
pub struct ThresholdState {
    pub threshold: i32,
    /// When it was crossed this period (`null`: not crossed, or re-armed by a correction).
    pub crossed_at: Option<DateTime<Utc>>,
    /// What was spent when it crossed.
    pub spent_at_crossing: Option<i64>,
}

/// A budget's period: what was spent against what was available.
#[derive(Debug, Clone, Object)]
pub struct Progress {
    pub budget_id: Uuid,
    pub period_start: NaiveDate,
    /// The period's last day.
    pub period_end: NaiveDate,
    pub currency: String,
    pub amount: i64,
    /// Carried from earlier periods (rollover): positive unspent, negative overspent.
    pub carried: i64,
    /// `amount + carried`.
    pub available: i64,
    /// Net spending in the budget's currency (refunds reduce it).
    pub spent: i64,
    pub remaining: i64,
    /// `spent / available × 100`, to two decimals.
    pub percent: f64,
    pub thresholds: Vec<ThresholdState>,
    /// The spending at the end of the period at the pace so far (the current period; a
    /// past one: what was spent).
    pub projected: i64,
    /// Transactions (or split parts) counted at a rate because they are in another currency.
    pub converted: i64,
}

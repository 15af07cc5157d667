//! Budgets (issue 25; API.md budgets; DESIGN.md §10): a spending limit per period over a
//! category or all spending, optionally some accounts, in any currency (other currencies
//! count at their day's ECB rate through [`fx`]), with periods stepped from an anchor date
//! ([`period`]) and "today" taken in the tenant's time zone, optional rollover, and
//! thresholds that alert once per period (`budget.threshold_crossed`). The ledger tells of
//! every change in its writing transaction ([`Budgets::on_change`]); an evaluation job,
//! shared by the changes of a few seconds, and an hourly sweep evaluate.

mod domain;
mod error;
pub mod goals;
mod http;
mod jobs;
pub mod period;
mod service;
mod store;

pub use domain::{Budget, Progress, ThresholdState};
pub use error::BudgetError;
pub use goals::{Goal, GoalProgress, NewContribution, NewGoal};
pub use http::{BudgetsApi, PERMISSIONS};
pub use jobs::{cron, register};
pub use service::{Budgets, DAILY_JOB, EVALUATE_JOB, NewBudget, ROLLOVER_PERIODS};

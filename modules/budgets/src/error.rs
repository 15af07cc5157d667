//! The budgets module's errors, and the one mapping to problems.

use kernel::{FieldError, Problem};

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("not found")]
    NotFound,
    #[error("invalid field {}", .0.field)]
    Invalid(FieldError),
    #[error(transparent)]
    Fx(#[from] fx::FxError),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Problem(#[from] Problem),
}

impl BudgetError {
    pub fn invalid(field: &str, message: impl Into<String>) -> BudgetError {
        BudgetError::Invalid(FieldError::new(field, message))
    }
}

impl From<BudgetError> for Problem {
    fn from(e: BudgetError) -> Problem {
        match e {
            BudgetError::NotFound => Problem::not_found(),
            BudgetError::Invalid(field) => Problem::validation(vec![field]),
            BudgetError::Fx(e) => e.into(),
            BudgetError::Ledger(e) => e.into(),
            BudgetError::Database(e) => e.into(),
            BudgetError::Problem(p) => p,
        }
    }
}

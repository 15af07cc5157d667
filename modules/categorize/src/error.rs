//! The categorization's errors, and the one mapping to problems.

use kernel::{FieldError, Problem};
use poem::http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum CategorizeError {
    /// No such rule, approval or transaction (or not visible to the caller).
    #[error("not found")]
    NotFound,
    #[error("invalid field {}", .0.field)]
    Invalid(FieldError),
    #[error("a rule of this name exists")]
    RuleNameTaken,
    /// The approval was decided already.
    #[error("the approval is {0}")]
    Decided(&'static str),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Problem(#[from] Problem),
}

impl CategorizeError {
    pub fn invalid(field: &str, message: impl Into<String>) -> CategorizeError {
        CategorizeError::Invalid(FieldError::new(field, message))
    }
}

impl From<crate::rules::RuleError> for CategorizeError {
    fn from(e: crate::rules::RuleError) -> CategorizeError {
        CategorizeError::Invalid(FieldError::new(&e.field, e.reason))
    }
}

impl From<CategorizeError> for Problem {
    fn from(e: CategorizeError) -> Problem {
        match e {
            CategorizeError::NotFound => Problem::not_found(),
            CategorizeError::Invalid(field) => Problem::validation(vec![field]),
            CategorizeError::RuleNameTaken => {
                Problem::new(StatusCode::CONFLICT, "rule_name_taken", "Name taken")
                    .with_detail("The tenant has a rule of this name.")
            }
            CategorizeError::Decided(status) => {
                Problem::new(StatusCode::CONFLICT, "approval_decided", "Already decided")
                    .with_detail(format!("The approval is {status}: nothing waits any more."))
            }
            CategorizeError::Ledger(e) => Problem::from(e),
            CategorizeError::Database(e) => Problem::from(e),
            CategorizeError::Problem(p) => p,
        }
    }
}

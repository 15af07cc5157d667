//! What goes wrong in the ledger, and the one place it becomes a problem.

use kernel::{FieldError, Problem};
use poem::http::StatusCode;

/// Why a ledger operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// No such account, category or transaction (or not visible to the caller).
    #[error("not found")]
    NotFound,
    /// A field that fails a rule only the service can check.
    #[error("invalid field {}", .0.field)]
    Invalid(FieldError),
    #[error("the account has transactions")]
    AccountInUse { transactions: i64 },
    #[error("the category is in use")]
    CategoryInUse {
        transactions: i64,
        splits: i64,
        children: i64,
    },
    /// In use by rows of accounts the caller cannot see.
    #[error("the category is in use in other accounts")]
    CategoryInUseElsewhere,
    #[error("the account is archived")]
    AccountArchived,
    #[error("database")]
    Database(#[from] sqlx::Error),
    /// A kernel failure (a stale `If-Match`, a commit hook), already a problem.
    #[error(transparent)]
    Problem(#[from] Problem),
}

impl LedgerError {
    pub fn invalid(field: &str, message: impl Into<String>) -> LedgerError {
        LedgerError::Invalid(FieldError::new(field, message))
    }
}

impl From<LedgerError> for Problem {
    fn from(e: LedgerError) -> Problem {
        match e {
            LedgerError::NotFound => Problem::not_found(),
            LedgerError::Invalid(field) => Problem::validation(vec![field]),
            LedgerError::AccountInUse { transactions } => Problem::new(
                StatusCode::CONFLICT,
                "account_in_use",
                "Account in use",
            )
            .with_detail(format!(
                "The account has {transactions} transaction(s), so it cannot be deleted; archive it instead (PATCH with \"archived\": true)."
            )),
            LedgerError::CategoryInUse {
                transactions,
                splits,
                children,
            } => Problem::new(StatusCode::CONFLICT, "category_in_use", "Category in use")
                .with_detail(format!(
                    "The category is used by {transactions} transaction(s) and {splits} split(s) and has {children} subcategory(ies); pass ?reassign_to=<category id> to move its transactions and splits first, or delete the subcategories."
                )),
            LedgerError::CategoryInUseElsewhere => Problem::new(
                StatusCode::CONFLICT,
                "category_in_use",
                "Category in use",
            )
            .with_detail("The category is used in accounts you cannot see; someone who sees every account can reassign and delete it."),
            LedgerError::AccountArchived => Problem::new(
                StatusCode::CONFLICT,
                "account_archived",
                "Account archived",
            )
            .with_detail("The account is archived; unarchive it (PATCH with \"archived\": false) to add transactions."),
            LedgerError::Database(e) => Problem::from(e),
            LedgerError::Problem(p) => p,
        }
    }
}

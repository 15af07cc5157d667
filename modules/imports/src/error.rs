//! The imports' errors, and the one mapping to problems.

use kernel::{FieldError, Problem};
use poem::http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// No such import, profile or account (or not visible to the caller).
    #[error("not found")]
    NotFound,
    #[error("invalid field {}", .0.field)]
    Invalid(FieldError),
    /// The file is over [`crate::MAX_FILE_BYTES`].
    #[error("the file is too large")]
    TooLarge,
    /// The import is not in a state that allows this (reverting a failed one…).
    #[error("{0}")]
    WrongState(String),
    #[error("a profile of this name exists")]
    ProfileNameTaken,
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Problem(#[from] Problem),
}

impl ImportError {
    pub fn invalid(field: &str, message: impl Into<String>) -> ImportError {
        ImportError::Invalid(FieldError::new(field, message))
    }
}

impl From<ImportError> for Problem {
    fn from(e: ImportError) -> Problem {
        match e {
            ImportError::NotFound => Problem::not_found(),
            ImportError::Invalid(field) => Problem::validation(vec![field]),
            ImportError::TooLarge => Problem::payload_too_large(crate::MAX_FILE_BYTES),
            ImportError::WrongState(detail) => {
                Problem::new(StatusCode::CONFLICT, "import_state", "Not possible now")
                    .with_detail(detail)
            }
            ImportError::ProfileNameTaken => {
                Problem::new(StatusCode::CONFLICT, "profile_name_taken", "Name taken")
                    .with_detail("The tenant has an import profile of this name.")
            }
            ImportError::Ledger(e) => Problem::from(e),
            ImportError::Database(e) => Problem::from(e),
            ImportError::Problem(p) => p,
        }
    }
}

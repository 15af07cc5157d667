//! The fx module's errors, and the one mapping to problems.

use chrono::NaiveDate;
use kernel::{FieldError, Problem};
use poem::http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum FxError {
    /// No ECB rate for the currency on the date or in the 7 days before.
    #[error("no rate for {currency} on {date}")]
    RateMissing { currency: String, date: NaiveDate },
    #[error("invalid field {}", .0.field)]
    Invalid(FieldError),
    /// The converted amount does not fit.
    #[error("the converted amount is out of range")]
    Overflow,
    /// The ECB file could not be fetched or read (the daily job retries).
    #[error("the ECB file: {0}")]
    Source(String),
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Problem(#[from] Problem),
}

impl From<FxError> for Problem {
    fn from(e: FxError) -> Problem {
        match e {
            FxError::RateMissing { currency, date } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "fx_rate_missing",
                "No exchange rate",
            )
            .with_detail(format!(
                "The ECB published no reference rate for {currency} on {date} or in the {} days before it.",
                crate::MAX_BACK_DAYS
            )),
            FxError::Invalid(field) => Problem::validation(vec![field]),
            FxError::Overflow => Problem::validation(vec![FieldError::new(
                "amount",
                "is out of range once converted",
            )]),
            FxError::Source(cause) => {
                tracing::warn!(%cause, "ECB rates not fetched");
                Problem::unavailable("fx_source_unavailable", "The ECB's rates could not be fetched.")
            }
            FxError::Database(e) => e.into(),
            FxError::Problem(p) => p,
        }
    }
}

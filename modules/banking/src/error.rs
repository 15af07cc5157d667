//! The banking module's errors, and the one mapping to problems.

use kernel::{FieldError, Problem};
use poem::http::StatusCode;

use crate::ProviderError;

#[derive(Debug, thiserror::Error)]
pub enum BankingError {
    /// No such connection (or not visible to the caller).
    #[error("not found")]
    NotFound,
    #[error("invalid field {}", .0.field)]
    Invalid(FieldError),
    /// The provider is not configured on this platform.
    #[error("provider {0} is not enabled")]
    ProviderOff(String),
    /// The item is connected already (a live connection has it).
    #[error("the item is connected already")]
    AlreadyConnected,
    /// A caller confined to some accounts cannot connect a bank (its accounts would be
    /// outside what they see).
    #[error("the caller is confined to some accounts")]
    Scoped,
    /// The connection is disconnected: it syncs no more.
    #[error("the connection is disconnected")]
    Disconnected,
    /// The provider refused or failed; the cause keeps its code, never a token.
    #[error("the provider failed")]
    Provider(#[from] ProviderError),
    /// The sealed token does not open (another row's, tampered, or a retired key).
    #[error("the connection's token does not open")]
    Sealed(#[source] vault::VaultError),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Problem(#[from] Problem),
}

impl BankingError {
    pub fn invalid(field: &str, message: impl Into<String>) -> BankingError {
        BankingError::Invalid(FieldError::new(field, message))
    }
}

impl From<BankingError> for Problem {
    fn from(e: BankingError) -> Problem {
        match e {
            BankingError::NotFound => Problem::not_found(),
            BankingError::Invalid(field) => Problem::validation(vec![field]),
            BankingError::ProviderOff(provider) => Problem::validation(vec![FieldError::new(
                "provider",
                format!("`{provider}` is not enabled on this platform"),
            )]),
            BankingError::AlreadyConnected => Problem::new(
                StatusCode::CONFLICT,
                "already_connected",
                "Already connected",
            )
            .with_detail("A live connection of this tenant has this bank login."),
            BankingError::Scoped => Problem::new(
                StatusCode::FORBIDDEN,
                "account_scoped",
                "Confined to some accounts",
            )
            .with_detail(
                "A member or key confined to some accounts cannot connect a bank; ask someone with access to every account.",
            ),
            BankingError::Disconnected => Problem::new(
                StatusCode::CONFLICT,
                "connection_disconnected",
                "Disconnected",
            )
            .with_detail("The connection is disconnected; connect the bank again."),
            BankingError::Provider(p) => {
                let (status, code, title) = match &p {
                    ProviderError::RateLimited => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "provider_rate_limited",
                        "The bank data provider is busy",
                    ),
                    ProviderError::Unavailable(_) | ProviderError::MutationDuringPagination => (
                        StatusCode::BAD_GATEWAY,
                        "provider_unavailable",
                        "The bank data provider is unavailable",
                    ),
                    ProviderError::NeedsReauth { .. } => (
                        StatusCode::CONFLICT,
                        "needs_reauth",
                        "The bank needs you to log in again",
                    ),
                    ProviderError::Ended { .. } => (
                        StatusCode::CONFLICT,
                        "connection_ended",
                        "The bank connection has ended",
                    ),
                    ProviderError::Refused(_) => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "provider_refused",
                        "The bank data provider refused the request",
                    ),
                    ProviderError::BadWebhook(_) => (
                        StatusCode::BAD_REQUEST,
                        "bad_webhook",
                        "The webhook does not verify",
                    ),
                };
                Problem::new(status, code, title)
                    .with_detail(format!("Provider code: {}.", p.code()))
                    .with_cause(p)
            }
            BankingError::Sealed(e) => {
                tracing::error!(error = %e, "a bank connection's token does not open");
                Problem::internal()
            }
            BankingError::Ledger(e) => Problem::from(e),
            BankingError::Database(e) => Problem::from(e),
            BankingError::Problem(p) => p,
        }
    }
}

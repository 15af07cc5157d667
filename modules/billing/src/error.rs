//! The billing module's errors, and the one mapping to problems.

use kernel::{FieldError, Problem};
use poem::http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// Billing is off on this platform (no Stripe keys).
    #[error("billing is not configured")]
    Disabled,
    #[error("invalid field {}", .0.field)]
    Invalid(FieldError),
    /// The tenant pays for a live subscription already: plan changes go through the portal.
    #[error("the tenant has a live subscription")]
    AlreadySubscribed,
    /// The portal needs a Stripe customer, made by the first checkout.
    #[error("the tenant has no billing account yet")]
    NoCustomer,
    /// Stripe refused or failed; the cause keeps Stripe's code, never a key.
    #[error("stripe: {0}")]
    Stripe(String),
    /// Stripe is throttling or out of reach: worth retrying.
    #[error("stripe unavailable: {0}")]
    StripeUnavailable(String),
    /// A webhook whose signature does not verify (nothing is stored).
    #[error("the webhook signature does not verify: {0}")]
    BadSignature(&'static str),
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Problem(#[from] Problem),
}

impl BillingError {
    pub fn invalid(field: &str, message: impl Into<String>) -> BillingError {
        BillingError::Invalid(FieldError::new(field, message))
    }
}

impl From<BillingError> for Problem {
    fn from(e: BillingError) -> Problem {
        match e {
            BillingError::Disabled => Problem::new(
                StatusCode::NOT_IMPLEMENTED,
                "feature_disabled",
                "Billing is not enabled",
            )
            .with_detail(
                "This platform runs without Stripe: every tenant is on the free plan, whose limits apply.",
            ),
            BillingError::Invalid(field) => Problem::validation(vec![field]),
            BillingError::AlreadySubscribed => Problem::new(
                StatusCode::CONFLICT,
                "already_subscribed",
                "Already subscribed",
            )
            .with_detail("The workspace has a live subscription; change its plan in the billing portal."),
            BillingError::NoCustomer => Problem::new(
                StatusCode::CONFLICT,
                "no_billing_account",
                "No billing account",
            )
            .with_detail("The workspace has never subscribed; start with a checkout session."),
            BillingError::Stripe(cause) => {
                tracing::error!(%cause, "stripe refused a call");
                Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "billing_provider_error",
                    "The payment provider refused",
                )
                .with_detail("The payment provider could not do this right now; try again later.")
            }
            BillingError::StripeUnavailable(cause) => {
                tracing::warn!(%cause, "stripe unavailable");
                Problem::unavailable(
                    "billing_provider_unavailable",
                    "The payment provider is not reachable right now; retry shortly.",
                )
                .with_header(
                    poem::http::header::RETRY_AFTER,
                    poem::http::HeaderValue::from_static("5"),
                )
            }
            BillingError::BadSignature(why) => {
                tracing::warn!(why, "stripe webhook refused");
                Problem::bad_request("invalid_signature", "The Stripe-Signature does not verify.")
            }
            BillingError::Database(e) => e.into(),
            BillingError::Problem(p) => p,
        }
    }
}

//! What goes wrong in identity, and the one place it becomes a problem.

use kernel::{FieldError, Problem};
use poem::http::StatusCode;

/// Why an identity rule refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No valid access token, or its session was revoked.
    #[error("not signed in")]
    Unauthorized,
    /// Unknown email or wrong password (answered alike).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A refresh token that is unknown, expired or spent.
    #[error("invalid refresh token")]
    InvalidRefresh,
    /// A single-use link that is unknown, expired or used.
    #[error("invalid or expired link")]
    InvalidToken,
    #[error("the email address is taken")]
    EmailTaken,
    /// No such session of the caller's.
    #[error("not found")]
    NotFound,
    /// Two-factor sign-in is on and no code came.
    #[error("a two-factor code is required")]
    TotpRequired,
    /// A wrong or already used two-factor code.
    #[error("the two-factor code is wrong or used")]
    TotpInvalid,
    /// Two-factor sign-in is not in the state the request needs.
    #[error("{detail}")]
    TotpState {
        code: &'static str,
        detail: &'static str,
    },
    /// A field that fails a rule only the service can check (a password too easy to guess
    /// given the account's name).
    #[error("invalid field {}", .0.field)]
    Invalid(FieldError),
    #[error("database")]
    Database(#[from] sqlx::Error),
    /// A kernel failure or a limit (`429`), already a problem.
    #[error(transparent)]
    Problem(#[from] Problem),
}

impl From<IdentityError> for Problem {
    fn from(e: IdentityError) -> Problem {
        match e {
            IdentityError::Unauthorized => Problem::unauthorized(),
            IdentityError::InvalidCredentials => Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid credentials",
            )
            .with_detail("The email address or the password is wrong."),
            IdentityError::InvalidRefresh => Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid_refresh_token",
                "Invalid refresh token",
            )
            .with_detail("The refresh token is unknown, expired, or already used; sign in again."),
            IdentityError::InvalidToken => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_token",
                "Invalid or expired link",
            )
            .with_detail("This link is invalid, expired, or was already used."),
            IdentityError::EmailTaken => {
                Problem::new(StatusCode::CONFLICT, "email_taken", "Email taken").with_detail(
                    "An account with this email address exists; sign in or reset its password.",
                )
            }
            IdentityError::NotFound => Problem::not_found(),
            IdentityError::TotpRequired => Problem::new(
                StatusCode::UNAUTHORIZED,
                "totp_required",
                "Two-factor code required",
            )
            .with_detail(
                "This account uses two-factor sign-in: send `totp_code` (or a recovery code).",
            ),
            IdentityError::TotpInvalid => {
                Problem::new(StatusCode::UNAUTHORIZED, "totp_invalid", "Invalid code")
                    .with_detail("The two-factor code is wrong or was already used.")
            }
            IdentityError::TotpState { code, detail } => {
                Problem::new(StatusCode::CONFLICT, code, "Conflict").with_detail(detail)
            }
            IdentityError::Invalid(e) => Problem::validation(vec![e]),
            IdentityError::Database(e) => e.into(),
            IdentityError::Problem(p) => p,
        }
    }
}

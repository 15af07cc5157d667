//! What goes wrong in tenancy, and the one place it becomes a problem.

use kernel::Problem;
use poem::http::StatusCode;

/// Why a tenancy rule refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// No such member, invitation or API key in this tenant.
    #[error("not found")]
    NotFound,
    /// The change would leave the tenant without an owner.
    #[error("the tenant keeps at least one owner")]
    LastOwner,
    /// Accepting an invitation to a tenant one belongs to already.
    #[error("already a member")]
    AlreadyMember,
    /// An invitation token that is malformed, unknown, expired, revoked or used.
    #[error("invalid or expired invitation")]
    InvalidInvitation,
    /// An invitation sent to another email address.
    #[error("the invitation was sent to another address")]
    InvitationEmailMismatch,
    /// The invitee has not confirmed their address yet.
    #[error("the invitee's email address is not verified")]
    EmailUnverified,
    /// Accepting an invitation without being a signed-in person.
    #[error("only a signed-in person accepts an invitation")]
    NotAPerson,
    /// A stored API-key replay that no longer opens (a retired vault key).
    #[error("a sealed API-key replay does not open")]
    SealedReplay,
    /// A grant the caller may not make, or another access-layer refusal.
    #[error(transparent)]
    Access(#[from] access::AccessError),
    #[error("database")]
    Database(#[from] sqlx::Error),
    /// A kernel failure (a commit hook, a stale `If-Match`, mail), already a problem.
    #[error(transparent)]
    Problem(#[from] Problem),
}

impl From<TenancyError> for Problem {
    fn from(e: TenancyError) -> Problem {
        match e {
            TenancyError::NotFound => Problem::not_found(),
            TenancyError::LastOwner => {
                Problem::new(StatusCode::CONFLICT, "last_owner", "Last owner").with_detail(
                    "A tenant keeps at least one owner: make someone else owner first.",
                )
            }
            TenancyError::AlreadyMember => {
                Problem::new(StatusCode::CONFLICT, "already_member", "Already a member")
                    .with_detail("You are already a member of this tenant.")
            }
            TenancyError::InvalidInvitation => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_token",
                "Invalid or expired invitation",
            )
            .with_detail("This invitation is invalid, expired, revoked, or was already used."),
            TenancyError::InvitationEmailMismatch => Problem::new(
                StatusCode::FORBIDDEN,
                "invitation_email_mismatch",
                "Not your invitation",
            )
            .with_detail("Sign in with the email address the invitation was sent to."),
            TenancyError::EmailUnverified => Problem::new(
                StatusCode::FORBIDDEN,
                "email_unverified",
                "Email address not verified",
            )
            .with_detail("Confirm your email address with the link we mailed you (POST /api/v1/auth/verify-email), then accept the invitation."),
            TenancyError::NotAPerson => Problem::unauthorized(),
            e @ TenancyError::SealedReplay => {
                tracing::error!(error = %e, "cannot replay an API key");
                Problem::internal().with_cause(e)
            }
            TenancyError::Access(e) => e.into(),
            TenancyError::Database(e) => e.into(),
            TenancyError::Problem(p) => p,
        }
    }
}

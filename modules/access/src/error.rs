//! What goes wrong in the access layer, and the one place it becomes a problem.

use kernel::{FieldError, Problem};
use poem::http::StatusCode;

use crate::PermissionSet;

/// Why an access decision, a grant or a role change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No valid credentials (a bad token, a revoked session, a non-person actor).
    #[error("not signed in")]
    Unauthorized,
    /// An API key that is unknown, revoked or expired.
    #[error("the API key is unknown, revoked or expired")]
    UnknownApiKey,
    /// Not a member of the tenant, or the resource is not there: tenant ids cannot be probed.
    #[error("not found")]
    NotFound,
    /// A member (or, `by_key`, an API key) whose roles lack `permission`.
    #[error("the caller's roles do not include `{permission}`")]
    Forbidden {
        permission: &'static str,
        by_key: bool,
    },
    /// A write to a tenant that is read-only for an overdue payment.
    #[error("the tenant is read-only")]
    ReadOnly,
    /// A write to a tenant in its deletion grace period.
    #[error("the tenant is deleted")]
    TenantDeleted,
    /// Roles to grant that are no roles of this tenant.
    #[error("unknown role(s) {unknown:?}")]
    UnknownRoles {
        field: String,
        unknown: Vec<String>,
        tenant: kernel::TenantId,
    },
    /// Granting what the granter may not grant (API keys grant nothing; `owner` only by an
    /// owner).
    #[error("{0}")]
    CannotGrant(&'static str),
    /// Granting permissions the granter lacks.
    #[error("the granter lacks {0:?}")]
    Lacking(Vec<String>),
    #[error("`{0}` is a built-in role")]
    RoleReadOnly(String),
    #[error("the tenant has {0} custom roles already")]
    RoleLimit(i64),
    #[error("the tenant already has a role `{0}`")]
    RoleExists(String),
    #[error("`{role}` is still held")]
    RoleInUse {
        role: String,
        members: i64,
        keys: i64,
        invitations: i64,
    },
    /// A field the access layer checks against the tenant (accounts to grant).
    #[error("invalid field {}", .0.field)]
    Invalid(FieldError),
    #[error("database")]
    Database(#[from] sqlx::Error),
    /// A kernel failure (a commit hook, a stale `If-Match`), already a problem.
    #[error(transparent)]
    Problem(#[from] Problem),
}

impl AccessError {
    /// `403 cannot_grant` naming what `held` lacks of `wanted`.
    pub fn lacking(wanted: PermissionSet, held: PermissionSet) -> AccessError {
        AccessError::Lacking(
            wanted
                .iter()
                .filter(|p| !held.contains(*p))
                .map(|p| p.to_string())
                .collect(),
        )
    }
}

fn cannot_grant(detail: String) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "cannot_grant", "Cannot grant").with_detail(detail)
}

impl From<AccessError> for Problem {
    fn from(e: AccessError) -> Problem {
        match e {
            AccessError::Unauthorized => Problem::unauthorized(),
            AccessError::UnknownApiKey => {
                Problem::unauthorized().with_detail("The API key is unknown, revoked or expired.")
            }
            AccessError::NotFound => Problem::not_found(),
            AccessError::Forbidden { permission, by_key } => Problem::forbidden(if by_key {
                format!("This API key's roles do not include `{permission}`.")
            } else {
                format!("Your roles in this tenant do not include `{permission}`.")
            }),
            AccessError::TenantDeleted => Problem::tenant_deleted(),
            AccessError::ReadOnly => kernel::limits::read_only(),
            AccessError::UnknownRoles {
                field,
                unknown,
                tenant,
            } => Problem::validation(vec![FieldError::new(
                field,
                format!(
                    "unknown role(s) {unknown:?}: the built-in roles are {:?}, and GET /api/v1/tenants/{tenant}/roles lists this tenant's custom roles",
                    crate::BUILTIN,
                ),
            )]),
            AccessError::CannotGrant(detail) => cannot_grant(detail.to_string()),
            AccessError::Lacking(missing) => cannot_grant(format!(
                "Nobody grants a permission they lack; you lack {missing:?}."
            )),
            AccessError::RoleReadOnly(name) => Problem::new(
                StatusCode::CONFLICT,
                "role_read_only",
                "Built-in role",
            )
            .with_detail(format!(
                "`{name}` is a built-in role; built-in roles cannot be changed or deleted. Create a custom role instead."
            )),
            AccessError::RoleLimit(max) => Problem::new(
                StatusCode::CONFLICT,
                "role_limit_reached",
                "Too many custom roles",
            )
            .with_detail(format!(
                "A tenant has at most {max} custom roles; delete one first."
            )),
            AccessError::RoleExists(name) => {
                Problem::new(StatusCode::CONFLICT, "role_exists", "Role exists")
                    .with_detail(format!("This tenant already has a role `{name}`."))
            }
            AccessError::RoleInUse {
                role,
                members,
                keys,
                invitations,
            } => Problem::new(StatusCode::CONFLICT, "role_in_use", "Role in use").with_detail(
                format!(
                    "`{role}` is held by {members} member(s), {keys} API key(s) and {invitations} pending invitation(s); give them other roles first."
                ),
            ),
            AccessError::Invalid(field) => Problem::validation(vec![field]),
            AccessError::Database(e) => Problem::from(e),
            AccessError::Problem(p) => p,
        }
    }
}

//! How tenant endpoints of any module ask for access: a bearer token, and an authorizer
//! (implemented by `modules/access`) that answers with the tenant's transaction or a problem.

use futures_util::future::BoxFuture;
use poem_openapi::{SecurityScheme, auth::Bearer};

use crate::{TenantId, TenantTx, problem::Problem};

/// `Authorization: Bearer <access token or API key>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT")]
pub struct BearerAuth(Bearer);

impl BearerAuth {
    /// The raw token.
    pub fn token(&self) -> &str {
        &self.0.token
    }
}

/// Decides access to a tenant: `401` without valid credentials, `404` for a caller who is not
/// a member (tenant ids cannot be probed), `403` for a member without `permission`; otherwise
/// the tenant's transaction, acting as the caller.
pub trait Authorize: Send + Sync {
    fn tenant<'a>(
        &'a self,
        bearer: &'a str,
        tenant: TenantId,
        permission: &'static str,
    ) -> BoxFuture<'a, Result<TenantTx, Problem>>;
}

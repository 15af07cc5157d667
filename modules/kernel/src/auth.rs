//! How any caller asks for access to a tenant: a handler with a bearer token, the bot or a
//! job with the person it acts for. The authorizer (implemented by `modules/access`)
//! answers with the tenant's transaction, acting as the caller, or a problem.

use futures_util::future::BoxFuture;
use poem_openapi::{SecurityScheme, auth::Bearer};

use crate::{Actor, TenantId, TenantTx, problem::Problem};

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
///
/// Both ways make the same one-statement decision and give the same answers; the decided
/// roles and permissions ride in the transaction's extensions, so later grant checks in the
/// same unit of work need not read the membership again.
pub trait Authorize: Send + Sync {
    /// For a request: `bearer` is an access token or an API key.
    fn tenant<'a>(
        &'a self,
        bearer: &'a str,
        tenant: TenantId,
        permission: &'static str,
    ) -> BoxFuture<'a, Result<TenantTx, Problem>>;

    /// For a caller without a token (the Telegram bot, a job acting for a person): `person`
    /// is `Actor::User` or `Actor::Telegram`, and the transaction acts as it. Any other actor
    /// is `401`: only a person is a member.
    fn member(
        &self,
        person: Actor,
        tenant: TenantId,
        permission: &'static str,
    ) -> BoxFuture<'_, Result<TenantTx, Problem>>;
}

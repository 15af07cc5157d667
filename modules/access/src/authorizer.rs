//! The per-request decision: one membership read in the tenant's transaction, and a bit test
//! on the member's compiled permission set.

use futures_util::future::BoxFuture;
use identity::Identity;
use kernel::{Actor, Problem, TenantId, TenantTx, auth::Authorize};
use poem::http::StatusCode;

use crate::{Permission, PermissionSet, Policy};

/// Decides access to tenants for every module's tenant routes.
#[derive(Clone)]
pub struct Authorizer {
    db: kernel::Db,
    identity: Identity,
    policy: Policy,
}

impl Authorizer {
    pub fn new(db: kernel::Db, identity: Identity, policy: Policy) -> Authorizer {
        Authorizer {
            db,
            identity,
            policy,
        }
    }

    async fn decide(
        &self,
        bearer: &str,
        tenant: TenantId,
        permission: &'static str,
    ) -> Result<TenantTx, Problem> {
        let need: Permission = permission
            .parse()
            .unwrap_or_else(|_| panic!("`{permission}` is not in the catalogue"));
        let principal = self.identity.authenticate(bearer).await?;
        let mut tx = TenantTx::begin(&self.db, tenant, Actor::User(principal.user_id)).await?;
        let row: Option<(Vec<String>, bool)> = sqlx::query_as(
            "SELECT m.roles, t.deleted_at IS NOT NULL FROM memberships m JOIN tenants t ON t.id = m.tenant_id
             WHERE m.tenant_id = $1 AND m.user_id = $2",
        )
        .bind(tenant)
        .bind(principal.user_id)
        .fetch_optional(tx.conn())
        .await?;
        // Not a member (or no such tenant): 404, so tenant ids cannot be probed.
        let Some((roles, deleted)) = row else {
            return Err(Problem::not_found());
        };
        let granted = roles
            .iter()
            .filter_map(|r| self.policy.builtin(r))
            .fold(PermissionSet::default(), PermissionSet::union);
        if !granted.contains(need) {
            return Err(
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").with_detail(format!(
                    "Your roles in this tenant do not include `{permission}`."
                )),
            );
        }
        // A deleted tenant (grace period) is read-only.
        if deleted && need.action() != "read" {
            return Err(
                Problem::new(StatusCode::CONFLICT, "tenant_deleted", "Tenant deleted")
                    .with_detail("This tenant was deleted; it is read-only until it is purged."),
            );
        }
        Ok(tx)
    }
}

impl Authorize for Authorizer {
    fn tenant<'a>(
        &'a self,
        bearer: &'a str,
        tenant: TenantId,
        permission: &'static str,
    ) -> BoxFuture<'a, Result<TenantTx, Problem>> {
        Box::pin(self.decide(bearer, tenant, permission))
    }
}

//! The per-request decision: one membership read in the tenant's transaction, and a bit test
//! on the member's compiled permission set.

use futures_util::future::BoxFuture;
use identity::Identity;
use kernel::{Actor, Problem, TenantId, TenantTx, auth::Authorize};
use poem::http::StatusCode;

use crate::{Permission, PolicyStore};

/// Decides access to tenants for every module's tenant routes.
#[derive(Clone)]
pub struct Authorizer {
    db: kernel::Db,
    identity: Identity,
    store: PolicyStore,
}

impl Authorizer {
    pub fn new(db: kernel::Db, identity: Identity, store: PolicyStore) -> Authorizer {
        Authorizer {
            db,
            identity,
            store,
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
        if let Some((key_tenant, hashes)) = self.identity.api_key_lookup(bearer) {
            return self.decide_api_key(key_tenant, hashes, tenant, need).await;
        }
        let principal = self.identity.verify_access_token(bearer)?;
        let mut tx = TenantTx::begin(&self.db, tenant, Actor::User(principal.user_id)).await?;
        // One statement: the session is live (else 401), and the membership with the
        // tenant's state (none: 404, so tenant ids cannot be probed).
        let row: (bool, Option<Vec<String>>, Option<bool>, Option<i64>) = sqlx::query_as(
            "SELECT s.live, m.roles, t.deleted_at IS NOT NULL, t.policy_version
             FROM (SELECT EXISTS (SELECT FROM user_sessions
                     WHERE id = $3 AND user_id = $2 AND revoked_at IS NULL) AS live) s
             LEFT JOIN memberships m ON m.tenant_id = $1 AND m.user_id = $2
             LEFT JOIN tenants t ON t.id = m.tenant_id",
        )
        .bind(tenant)
        .bind(principal.user_id)
        .bind(principal.session_id)
        .fetch_one(tx.conn())
        .await?;
        let (live, roles, deleted, version) = row;
        if !live {
            return Err(
                Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Not signed in")
                    .with_detail("Send a valid access token: Authorization: Bearer <token>."),
            );
        }
        let (Some(roles), Some(deleted), Some(version)) = (roles, deleted, version) else {
            return Err(Problem::not_found());
        };
        let granted = self.store.permissions(&mut tx, version, &roles).await?;
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

impl Authorizer {
    /// An API key works only for its own tenant (another tenant: `404`); revoked or expired
    /// it is `401` at once. Its roles are checked like a member's.
    async fn decide_api_key(
        &self,
        key_tenant: TenantId,
        hashes: Vec<Vec<u8>>,
        tenant: TenantId,
        need: Permission,
    ) -> Result<TenantTx, Problem> {
        if key_tenant != tenant {
            return Err(Problem::not_found());
        }
        let unauthorized = || {
            Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Not signed in")
                .with_detail("The API key is unknown, revoked or expired.")
        };
        // One transaction for the lookup, the decision and the request's work: a key
        // revoked meanwhile cannot half-apply, and a refusal writes nothing.
        let mut tx = TenantTx::begin(&self.db, tenant, Actor::System).await?;
        let key: Option<(uuid::Uuid, Vec<String>, bool, i64)> = sqlx::query_as(
            "SELECT k.id, k.roles, t.deleted_at IS NOT NULL, t.policy_version
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.tenant_id = $1 AND k.hash = ANY($2) AND k.revoked_at IS NULL
               AND (k.expires_at IS NULL OR k.expires_at > now())",
        )
        .bind(tenant)
        .bind(&hashes)
        .fetch_optional(tx.conn())
        .await?;
        let Some((id, roles, deleted, version)) = key else {
            return Err(unauthorized());
        };
        let granted = self.store.permissions(&mut tx, version, &roles).await?;
        if !granted.contains(need) {
            return Err(
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden")
                    .with_detail(format!("This API key's roles do not include `{need}`.")),
            );
        }
        if deleted && need.action() != "read" {
            return Err(
                Problem::new(StatusCode::CONFLICT, "tenant_deleted", "Tenant deleted")
                    .with_detail("This tenant was deleted; it is read-only until it is purged."),
            );
        }
        // Recorded at most once a minute per key, and never waiting on another request of
        // the same key that holds the row: a busy key does not write on every read.
        sqlx::query(
            "UPDATE api_keys SET last_used_at = now() WHERE (tenant_id, id) IN (
               SELECT tenant_id, id FROM api_keys WHERE tenant_id = $1 AND id = $2
                 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
               FOR UPDATE SKIP LOCKED)",
        )
        .bind(tenant)
        .bind(id)
        .execute(tx.conn())
        .await?;
        tx.act_as_api_key(id);
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

//! The per-request decision: one membership read in the tenant's transaction, and a bit test
//! on the member's compiled permission set. The decided grants ride in the transaction, so
//! grant checks later in the same unit of work do not read the membership again.

use futures_util::future::BoxFuture;
use identity::Identity;
use kernel::{Actor, Problem, TenantId, TenantTx, auth::Authorize};

use crate::{AccessError, Permission, PolicyStore, grants::Grants, store};

/// Decides access to tenants for every module's tenant routes, the bot and jobs.
#[derive(Clone)]
pub struct Authorizer {
    db: kernel::Db,
    identity: Identity,
    policy: PolicyStore,
}

fn catalogued(permission: &'static str) -> Permission {
    permission
        .parse()
        .unwrap_or_else(|_| panic!("`{permission}` is not in the catalogue"))
}

/// A tenant whose payment is overdue past its grace is read-only (`402`): every change
/// except billing's (so it can pay) and generating reports (exports never stop).
fn refuse_when_read_only(read_only: bool, need: Permission) -> Result<(), AccessError> {
    if read_only && need.action() != "read" && !matches!(need.resource(), "billing" | "reports") {
        return Err(AccessError::ReadOnly);
    }
    Ok(())
}

impl Authorizer {
    pub fn new(db: kernel::Db, identity: Identity, policy: PolicyStore) -> Authorizer {
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
    ) -> Result<TenantTx, AccessError> {
        let need = catalogued(permission);
        if let Some((key_tenant, hashes)) = self.identity.api_key_lookup(bearer) {
            self.identity.count_api_key_request(&hashes)?;
            return self
                .decide_api_key(key_tenant, hashes, tenant, need, permission)
                .await;
        }
        let principal = self
            .identity
            .verify_access_token(bearer)
            .map_err(|e| match e {
                identity::IdentityError::Problem(limited) => AccessError::Problem(limited),
                _ => AccessError::Unauthorized,
            })?;
        // One statement, in the round trip of `BEGIN` and the tenant settings: the session is
        // live (else 401), and the membership with the tenant's state (none: 404, so tenant
        // ids cannot be probed).
        let read = store::session_membership(tenant, principal.user_id, principal.session_id);
        let (tx, rows) =
            TenantTx::begin_reading(&self.db, tenant, Actor::User(principal.user_id), Some(read))
                .await?;
        let found = store::member_grant(&rows)?;
        if !found.live {
            return Err(AccessError::Unauthorized);
        }
        self.grant_member(tx, found, need, permission).await
    }

    /// The same decision for a person acting without a token: no session to check.
    async fn decide_member(
        &self,
        person: Actor,
        tenant: TenantId,
        permission: &'static str,
    ) -> Result<TenantTx, AccessError> {
        let need = catalogued(permission);
        let (Actor::User(user) | Actor::Telegram(user)) = person else {
            return Err(AccessError::Unauthorized);
        };
        let read = store::membership(tenant, user);
        let (tx, rows) = TenantTx::begin_reading(&self.db, tenant, person, Some(read)).await?;
        let found = store::member_grant(&rows)?;
        self.grant_member(tx, found, need, permission).await
    }

    async fn grant_member(
        &self,
        mut tx: TenantTx,
        found: store::MemberGrant,
        need: Permission,
        permission: &'static str,
    ) -> Result<TenantTx, AccessError> {
        let (Some(roles), Some(deleted), Some(version)) =
            (found.roles, found.deleted, found.policy_version)
        else {
            return Err(AccessError::NotFound);
        };
        let granted = self.policy.permissions(&mut tx, version, &roles).await?;
        if !granted.contains(need) {
            return Err(AccessError::Forbidden {
                permission,
                by_key: false,
            });
        }
        // A deleted tenant (grace period) is read-only.
        if deleted && need.action() != "read" {
            return Err(AccessError::TenantDeleted);
        }
        refuse_when_read_only(found.read_only, need)?;
        if let Some(accounts) = &found.account_ids {
            tx.scope_accounts(accounts).await?;
        }
        tx.extensions_mut()
            .insert(Grants::new(roles, granted).with_accounts(found.account_ids));
        Ok(tx)
    }

    /// An API key works only for its own tenant (another tenant: `404`); revoked or expired
    /// it is `401` at once. Its roles are checked like a member's.
    async fn decide_api_key(
        &self,
        key_tenant: TenantId,
        hashes: Vec<Vec<u8>>,
        tenant: TenantId,
        need: Permission,
        permission: &'static str,
    ) -> Result<TenantTx, AccessError> {
        if key_tenant != tenant {
            return Err(AccessError::NotFound);
        }
        // One transaction for the lookup, the decision and the request's work: a key
        // revoked meanwhile cannot half-apply, and a refusal writes nothing.
        let read = store::live_api_key(tenant, &hashes);
        let (mut tx, rows) =
            TenantTx::begin_reading(&self.db, tenant, Actor::System, Some(read)).await?;
        let Some(key) = store::key_grant(&rows)? else {
            return Err(AccessError::UnknownApiKey);
        };
        kernel::RequestContext::note_actor(|| format!("api_key:{}", key.id));
        // A key never acts with more than its creator holds now: a creator who left takes
        // their keys along (revoked with the membership; checked here too), and one whose
        // rights shrank, by any path, narrows them.
        if key.created_by.is_some() && key.creator_roles.is_none() {
            return Err(AccessError::UnknownApiKey);
        }
        let mut granted = self
            .policy
            .permissions(&mut tx, key.policy_version, &key.roles)
            .await?;
        if let Some(creator_roles) = &key.creator_roles {
            let creator = self
                .policy
                .permissions(&mut tx, key.policy_version, creator_roles)
                .await?;
            granted = granted.intersect(creator);
        }
        if !granted.contains(need) {
            return Err(AccessError::Forbidden {
                permission,
                by_key: true,
            });
        }
        if key.deleted && need.action() != "read" {
            return Err(AccessError::TenantDeleted);
        }
        refuse_when_read_only(key.read_only, need)?;
        // Its accounts: its own scope within its creator's.
        let accounts = match (key.account_ids, key.creator_account_ids) {
            (None, creator) => creator,
            (Some(own), None) => Some(own),
            (Some(own), Some(creator)) => {
                Some(own.into_iter().filter(|a| creator.contains(a)).collect())
            }
        };
        if let Some(accounts) = &accounts {
            tx.scope_accounts(accounts).await?;
        }
        store::touch_api_key(tx.conn(), tenant, key.id).await?;
        tx.act_as_api_key(key.id);
        tx.extensions_mut()
            .insert(Grants::new(key.roles, granted).with_accounts(accounts));
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
        Box::pin(async move { Ok(self.decide(bearer, tenant, permission).await?) })
    }

    fn member(
        &self,
        person: Actor,
        tenant: TenantId,
        permission: &'static str,
    ) -> BoxFuture<'_, Result<TenantTx, Problem>> {
        Box::pin(async move { Ok(self.decide_member(person, tenant, permission).await?) })
    }
}

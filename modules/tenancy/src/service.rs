//! The tenancy rules. Every function takes the caller's transaction first — a `TenantTx`
//! for work inside a tenant (as the routes, the bot or a job open it), a `UserTx` for a
//! person's own tenants — and domain types; none sees a token, a pool or an HTTP type.

use audit::{NewEvent, Record};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use chrono::{DateTime, Utc};
use identity::Identity;
use kernel::{
    DisplayName, Email, Keyset, Page, RoleNames, TenantId, TenantTx, UserId, UserTx, concurrency,
};
use serde_json::json;
use uuid::Uuid;

use crate::{
    ApiKey, CreatedApiKey, DELETION_GRACE_DAYS, Invitation, Member, SealedApiKey, TenancyError,
    Tenant, store,
};

/// A new API key, parsed.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: DisplayName,
    pub roles: RoleNames,
    pub expires_at: Option<DateTime<Utc>>,
    /// The accounts it may see (`None`: every account the creator sees).
    pub account_ids: Option<Vec<Uuid>>,
}

/// The tenancy service: tenants, members, invitations and API keys.
#[derive(Clone)]
pub struct Tenancy {
    identity: Identity,
    policy: access::PolicyStore,
    setups: Vec<std::sync::Arc<dyn kernel::TenantSetup>>,
    /// The plan limits (members); `None` checks none (a module's own tests).
    limits: Option<std::sync::Arc<dyn kernel::limits::Limits>>,
}

impl Tenancy {
    pub fn new(identity: Identity, policy: access::PolicyStore) -> Tenancy {
        Tenancy {
            identity,
            policy,
            setups: Vec::new(),
            limits: None,
        }
    }

    /// Checks the plan's member limit when someone joins (or is invited while the tenant
    /// is full).
    pub fn with_limits(mut self, limits: std::sync::Arc<dyn kernel::limits::Limits>) -> Tenancy {
        self.limits = Some(limits);
        self
    }

    async fn admit_member(&self, tx: &mut TenantTx) -> Result<(), TenancyError> {
        if let Some(limits) = &self.limits {
            limits.admit(tx, kernel::limits::Limit::Members, 1).await?;
        }
        Ok(())
    }

    /// Sets the plan the tenant is on (billing, when its subscription changes).
    pub async fn set_plan(&self, tx: &mut TenantTx, plan: &str) -> Result<(), TenancyError> {
        let id = tx.tenant_id();
        store::set_plan(tx.conn(), id, plan).await?;
        Ok(())
    }

    /// Every member whose roles grant `permission` (who to tell of a failed payment, say).
    pub async fn members_with(
        &self,
        tx: &mut TenantTx,
        permission: &str,
    ) -> Result<Vec<Member>, TenancyError> {
        let need: access::Permission = permission
            .parse()
            .map_err(|_| TenancyError::Problem(kernel::Problem::internal()))?;
        let id = tx.tenant_id();
        let all = store::members(tx.conn(), id, (None, None), i64::MAX).await?;
        let mut holding = Vec::new();
        let mut decided: std::collections::HashMap<Vec<String>, bool> = Default::default();
        for member in all {
            let grants = match decided.get(&member.roles) {
                Some(grants) => *grants,
                None => {
                    let (set, _) =
                        access::grants::role_sets(&self.policy, tx, &member.roles, false).await?;
                    decided.insert(member.roles.clone(), set.contains(need));
                    set.contains(need)
                }
            };
            if grants {
                holding.push(member);
            }
        }
        Ok(holding)
    }

    /// Adds a module's part of every new tenant (run in the creating transaction).
    pub fn with_setup(mut self, setup: std::sync::Arc<dyn kernel::TenantSetup>) -> Tenancy {
        self.setups.push(setup);
        self
    }

    /// Checks roles to be given against what the caller holds: roles of this tenant only,
    /// nobody grants a permission they lack, only an owner grants `owner`.
    async fn check_grant(&self, tx: &mut TenantTx, roles: &RoleNames) -> Result<(), TenancyError> {
        Ok(access::grants::check_grant(&self.policy, tx, roles, "roles").await?)
    }

    /// Creates the transaction's tenant (its id is the transaction's) with `owner` as its
    /// first member, on the `free` plan.
    pub async fn create(
        &self,
        tx: &mut TenantTx,
        owner: UserId,
        name: &DisplayName,
        currency: kernel::Currency,
    ) -> Result<Tenant, TenancyError> {
        let id = tx.tenant_id();
        store::insert_tenant(tx.conn(), id, name.as_str(), currency.code()).await?;
        store::add_member(tx.conn(), id, owner, &["owner".to_string()], None).await?;
        tx.record(
            NewEvent::new("tenant.created")
                .resource("tenant", id)
                .payload(json!({ "plan": "free", "currency": currency.code() })),
        );
        tx.record(
            NewEvent::new("member.added")
                .resource("member", owner)
                .payload(json!({ "roles": ["owner"] })),
        );
        for setup in &self.setups {
            setup.set_up(tx).await?;
        }
        Ok(store::tenant(tx.conn(), id, Some(owner)).await?)
    }

    /// The person's tenants, newest first, with their roles in each.
    pub async fn list_mine(
        &self,
        tx: &mut UserTx,
        page: &Keyset,
    ) -> Result<Page<Tenant>, TenancyError> {
        let user = tx.user_id();
        let rows = store::tenants_of(tx.conn(), user, page.after(), page.fetch_limit()).await?;
        Ok(page.page(rows, |t| (t.created_at, t.id.as_uuid())))
    }

    /// The transaction's tenant, with the acting person's roles.
    pub async fn get(&self, tx: &mut TenantTx) -> Result<Tenant, TenancyError> {
        let (id, user) = (tx.tenant_id(), tx.context().actor.user_id());
        Ok(store::tenant(tx.conn(), id, user).await?)
    }

    /// Renames the tenant; `expected` is the `If-Match` version, if any.
    pub async fn rename(
        &self,
        tx: &mut TenantTx,
        expected: Option<i64>,
        name: &DisplayName,
    ) -> Result<Tenant, TenancyError> {
        self.update(tx, expected, Some(name), None, None).await
    }

    /// Renames the tenant and/or changes its base currency (absent: kept); `expected` is
    /// the `If-Match` version, if any.
    pub async fn update(
        &self,
        tx: &mut TenantTx,
        expected: Option<i64>,
        name: Option<&DisplayName>,
        currency: Option<kernel::Currency>,
        time_zone: Option<&str>,
    ) -> Result<Tenant, TenancyError> {
        let id = tx.tenant_id();
        let current = store::lock_tenant(tx.conn(), id).await?;
        concurrency::check(expected, current.version)?;
        if let Some(zone) = time_zone
            && !store::is_time_zone(tx.conn(), zone).await?
        {
            return Err(TenancyError::Problem(kernel::Problem::validation(vec![
                kernel::FieldError::new(
                    "time_zone",
                    "must be an IANA time zone such as Europe/Berlin",
                ),
            ])));
        }
        let zone = time_zone.unwrap_or(&current.time_zone).to_string();
        let renamed = name.is_some();
        let name = name
            .map_or(current.name.as_str(), |n| n.as_str())
            .to_string();
        let currency = currency.map_or(current.currency.clone(), |c| c.code().to_string());
        store::update_tenant(tx.conn(), id, &name, &currency, &zone).await?;
        if renamed {
            tx.record(
                NewEvent::new("tenant.renamed")
                    .resource("tenant", id)
                    .payload(json!({ "changed": name != current.name })),
            );
        }
        if zone != current.time_zone {
            tx.record(
                NewEvent::new("tenant.time_zone_changed")
                    .resource("tenant", id)
                    .payload(json!({ "from": current.time_zone, "to": zone })),
            );
        }
        if currency != current.currency {
            tx.record(
                NewEvent::new("tenant.currency_changed")
                    .resource("tenant", id)
                    .payload(json!({ "from": current.currency, "to": currency })),
            );
        }
        self.get(tx).await
    }

    /// Deletes the tenant: read-only for the grace period, then `balance admin purge-tenant`.
    pub async fn delete(&self, tx: &mut TenantTx) -> Result<(), TenancyError> {
        let id = tx.tenant_id();
        store::mark_tenant_deleted(tx.conn(), id).await?;
        tx.record(
            NewEvent::new("tenant.deleted")
                .resource("tenant", id)
                .payload(json!({ "grace_days": DELETION_GRACE_DAYS })),
        );
        Ok(())
    }

    /// The members in the order they joined.
    pub async fn members(
        &self,
        tx: &mut TenantTx,
        page: &Keyset,
    ) -> Result<Page<Member>, TenancyError> {
        let id = tx.tenant_id();
        let rows = store::members(tx.conn(), id, page.after(), page.fetch_limit()).await?;
        Ok(page.page(rows, |m| (m.joined_at, m.user_id.as_uuid())))
    }

    /// One member.
    pub async fn member(&self, tx: &mut TenantTx, user: UserId) -> Result<Member, TenancyError> {
        let id = tx.tenant_id();
        store::member(tx.conn(), id, user)
            .await?
            .ok_or(TenancyError::NotFound)
    }

    /// Locks a member's row and returns their roles and version (`NotFound` if not a
    /// member). An owner's roles change only by an owner, and never leave the tenant
    /// without one: `new_roles` are the roles after the change (`None`: removed).
    async fn lock_member(
        &self,
        tx: &mut TenantTx,
        user: UserId,
        new_roles: Option<&RoleNames>,
    ) -> Result<store::MembershipRow, TenancyError> {
        let id = tx.tenant_id();
        let Some(current) = store::lock_membership(tx.conn(), id, user).await? else {
            return Err(TenancyError::NotFound);
        };
        if current.roles.iter().any(|r| r == "owner") {
            self.check_grant(tx, &RoleNames::owner()).await?;
            let stays_owner = new_roles.is_some_and(RoleNames::includes_owner);
            if !stays_owner && store::lock_owners(tx.conn(), id).await? == [user.as_uuid()] {
                return Err(TenancyError::LastOwner);
            }
        }
        Ok(current)
    }

    /// Changes a member's roles; `expected` is the `If-Match` version, if any. Demoting the
    /// last owner is `LastOwner`.
    pub async fn update_member(
        &self,
        tx: &mut TenantTx,
        user: UserId,
        expected: Option<i64>,
        roles: &RoleNames,
    ) -> Result<Member, TenancyError> {
        self.update_member_access(tx, user, expected, roles, None)
            .await
    }

    /// [`Tenancy::update_member`], and the accounts the member sees when `accounts` is given
    /// (`Some(None)`: every account): no more than the caller sees.
    pub async fn update_member_access(
        &self,
        tx: &mut TenantTx,
        user: UserId,
        expected: Option<i64>,
        roles: &RoleNames,
        accounts: Option<Option<Vec<Uuid>>>,
    ) -> Result<Member, TenancyError> {
        let current = self.lock_member(tx, user, Some(roles)).await?;
        concurrency::check(expected, current.version)?;
        self.check_grant(tx, roles).await?;
        let accounts = match accounts {
            None => current.account_ids.clone(),
            Some(wanted) => {
                access::grants::check_accounts(&self.policy, tx, wanted, "account_ids").await?
            }
        };
        let id = tx.tenant_id();
        store::set_member_roles(tx.conn(), id, user, roles.as_slice(), accounts.as_deref()).await?;
        access::bump_policy(tx).await?;
        tx.record(
            NewEvent::new("member.role_changed")
                .resource("member", user)
                .payload(json!({
                    "from": current.roles, "to": roles.as_slice(),
                    "accounts_from": current.account_ids, "accounts_to": accounts,
                })),
        );
        self.narrow_grants_of(tx, user, Some(roles.as_slice()))
            .await?;
        self.member(tx, user).await
    }

    /// Removes a member; removing the last owner is `LastOwner`.
    pub async fn remove_member(&self, tx: &mut TenantTx, user: UserId) -> Result<(), TenancyError> {
        let current = self.lock_member(tx, user, None).await?;
        let id = tx.tenant_id();
        store::remove_member(tx.conn(), id, user).await?;
        access::bump_policy(tx).await?;
        tx.record(
            NewEvent::new("member.removed")
                .resource("member", user)
                .payload(json!({ "roles": current.roles })),
        );
        self.narrow_grants_of(tx, user, None).await
    }

    /// An API key or a pending invitation never carries more than its creator holds now.
    /// When `user` leaves (`holds` is `None`), theirs are revoked; when their roles change
    /// to `holds`, each keeps only the roles they could still grant, and is revoked when
    /// none is left. Every change is audited with its reason. (The access decision also
    /// checks a key's creator, and accepting an invitation its inviter, so a change by any
    /// other path, such as a custom role losing permissions, cannot leave a stale grant.)
    async fn narrow_grants_of(
        &self,
        tx: &mut TenantTx,
        user: UserId,
        holds: Option<&[String]>,
    ) -> Result<(), TenancyError> {
        let tenant = tx.tenant_id();
        let reason = if holds.is_some() {
            "creator_roles_changed"
        } else {
            "creator_removed"
        };
        for kind in [store::Granted::ApiKey, store::Granted::Invitation] {
            let grants = kind.lock_created_by(tx.conn(), tenant, user).await?;
            for grant in grants {
                let kept = self.kept_roles(tx, holds, &grant.roles).await?;
                if kept.len() == grant.roles.len() {
                    continue;
                }
                let outcome = if kept.is_empty() {
                    kind.revoke(tx.conn(), tenant, grant.id).await?;
                    "revoked"
                } else {
                    kind.set_roles(tx.conn(), tenant, grant.id, &kept).await?;
                    "narrowed"
                };
                let resource = kind.resource();
                tx.record(
                    NewEvent::new(&format!("{resource}.{outcome}"))
                        .resource(resource, grant.id)
                        .payload(json!({
                            "reason": reason, "granted_by": user, "from": grant.roles, "to": kept,
                        })),
                );
            }
        }
        Ok(())
    }

    /// The roles of `granted` that a holder of `holds` could grant (none when `None`).
    async fn kept_roles(
        &self,
        tx: &mut TenantTx,
        holds: Option<&[String]>,
        granted: &[String],
    ) -> Result<Vec<String>, TenancyError> {
        match holds {
            None => Ok(Vec::new()),
            Some(holds) => {
                Ok(access::grants::still_grantable(&self.policy, tx, holds, granted).await?)
            }
        }
    }

    pub(crate) fn replay_aad(tenant: TenantId, key: Uuid) -> Vec<u8> {
        format!("api_key.replay:{tenant}:{key}").into_bytes()
    }

    /// Creates an API key with roles the caller holds. The secret is in the answer only.
    pub async fn create_api_key(
        &self,
        tx: &mut TenantTx,
        new: NewKey,
    ) -> Result<CreatedApiKey, TenancyError> {
        self.check_grant(tx, &new.roles).await?;
        let accounts =
            access::grants::check_accounts(&self.policy, tx, new.account_ids, "account_ids")
                .await?;
        let tenant = tx.tenant_id();
        let minted = self.identity.mint_api_key(tenant);
        let id = Uuid::now_v7();
        let created_by = tx.context().actor.user_id();
        let created_at = store::insert_api_key(
            tx.conn(),
            tenant,
            store::NewKeyRow {
                id,
                name: new.name.as_str(),
                roles: new.roles.as_slice(),
                pepper_id: &minted.pepper_id,
                hash: &minted.hash,
                prefix: &minted.prefix,
                created_by,
                expires_at: new.expires_at,
                account_ids: accounts.as_deref(),
            },
        )
        .await?;
        tx.record(
            NewEvent::new("api_key.created")
                .resource("api_key", id)
                .payload(json!({ "roles": new.roles.as_slice(), "account_ids": accounts })),
        );
        Ok(CreatedApiKey {
            id,
            name: new.name.into_inner(),
            roles: new.roles.into_inner(),
            account_ids: accounts,
            prefix: minted.prefix,
            secret: minted.token,
            expires_at: new.expires_at,
            created_at,
        })
    }

    /// What an `Idempotency-Key` keeps of a created key: the secret only sealed by the
    /// vault, bound to the tenant and the key.
    pub fn seal_for_replay(&self, tenant: TenantId, created: &CreatedApiKey) -> SealedApiKey {
        let sealed = self.identity.seal(
            created.secret.as_bytes(),
            &Self::replay_aad(tenant, created.id),
        );
        SealedApiKey {
            id: created.id,
            name: created.name.clone(),
            roles: created.roles.clone(),
            account_ids: created.account_ids.clone(),
            prefix: created.prefix.clone(),
            sealed_secret: B64.encode(sealed),
            expires_at: created.expires_at,
            created_at: created.created_at,
        }
    }

    /// Opens a sealed replay for its caller: the idempotency fingerprint names the caller,
    /// who must still be able to grant the key's roles; audited.
    pub async fn replay_api_key(
        &self,
        tx: &mut TenantTx,
        stored: SealedApiKey,
    ) -> Result<CreatedApiKey, TenancyError> {
        let roles =
            RoleNames::parse("roles", &stored.roles).map_err(|_| TenancyError::SealedReplay)?;
        self.check_grant(tx, &roles).await?;
        let aad = Self::replay_aad(tx.tenant_id(), stored.id);
        let secret = B64
            .decode(&stored.sealed_secret)
            .ok()
            .and_then(|c| self.identity.unseal(&c, &aad))
            .and_then(|s| String::from_utf8(s.expose().clone()).ok())
            .ok_or(TenancyError::SealedReplay)?;
        tx.record(NewEvent::new("api_key.secret_replayed").resource("api_key", stored.id));
        Ok(CreatedApiKey {
            id: stored.id,
            name: stored.name,
            roles: stored.roles,
            account_ids: stored.account_ids,
            prefix: stored.prefix,
            secret,
            expires_at: stored.expires_at,
            created_at: stored.created_at,
        })
    }

    /// The tenant's API keys, newest first (prefix and last use; never a secret).
    pub async fn api_keys(
        &self,
        tx: &mut TenantTx,
        page: &Keyset,
    ) -> Result<Page<ApiKey>, TenancyError> {
        let id = tx.tenant_id();
        let rows = store::api_keys(tx.conn(), id, page.after(), page.fetch_limit()).await?;
        Ok(page.page(rows, |k| (k.created_at, k.id)))
    }

    /// Revokes an API key; it stops working at once.
    pub async fn revoke_api_key(&self, tx: &mut TenantTx, key: Uuid) -> Result<(), TenancyError> {
        let id = tx.tenant_id();
        if !store::revoke_api_key(tx.conn(), id, key).await? {
            return Err(TenancyError::NotFound);
        }
        tx.record(NewEvent::new("api_key.revoked").resource("api_key", key));
        Ok(())
    }

    /// Invites `email` with roles the caller holds, and queues the mail; the link works
    /// once, for 7 days.
    pub async fn invite(
        &self,
        tx: &mut TenantTx,
        email: &Email,
        roles: &RoleNames,
    ) -> Result<Invitation, TenancyError> {
        self.invite_to_accounts(tx, email, roles, None).await
    }

    /// [`Tenancy::invite`], limited to `accounts` (`None`: every account the inviter sees).
    pub async fn invite_to_accounts(
        &self,
        tx: &mut TenantTx,
        email: &Email,
        roles: &RoleNames,
        accounts: Option<Vec<Uuid>>,
    ) -> Result<Invitation, TenancyError> {
        self.check_grant(tx, roles).await?;
        let accounts =
            access::grants::check_accounts(&self.policy, tx, accounts, "account_ids").await?;
        let tenant = tx.tenant_id();
        let inviter = tx.context().actor.user_id();
        self.check_invitation_rate(tx, inviter).await?;
        // A full tenant invites nobody who could not join.
        self.admit_member(tx).await?;
        let minted = self.identity.mint_invitation(tenant);
        let invitation = store::insert_invitation(
            tx.conn(),
            tenant,
            store::NewInvitationRow {
                id: Uuid::now_v7(),
                email: email.as_str(),
                roles: roles.as_slice(),
                pepper_id: &minted.pepper_id,
                hash: &minted.hash,
                invited_by: inviter,
                account_ids: accounts.as_deref(),
            },
        )
        .await?;
        let names = store::invitation_names(tx.conn(), tenant, inviter).await?;
        let template = mail::Template::Invitation {
            tenant: names.tenant,
            inviter: names.inviter.unwrap_or_else(|| "A Balance user".into()),
            token: minted.token,
        };
        mail::queue(tx, email, &template).await?;
        tx.record(
            NewEvent::new("invitation.created")
                .resource("invitation", invitation.id)
                .payload(json!({ "roles": roles.as_slice() })),
        );
        Ok(invitation)
    }

    /// Invitations mail outside addresses under the platform's name, so a tenant and each
    /// inviter send only so many an hour (`invite_tenant`, `invite_user`): `429` past them.
    async fn check_invitation_rate(
        &self,
        tx: &mut TenantTx,
        inviter: Option<UserId>,
    ) -> Result<(), TenancyError> {
        let limits = self.identity.limits();
        let (per_tenant, per_user) = (limits.invite_tenant, limits.invite_user);
        let tenant = tx.tenant_id();
        let recent = store::recent_invitations(
            tx.conn(),
            tenant,
            inviter,
            per_tenant.per.as_secs_f64(),
            per_user.per.as_secs_f64(),
        )
        .await?;
        let over = |count: i64, free_in: Option<f64>, limit: identity::Limit| {
            (count >= i64::from(limit.max)).then(|| {
                let wait = std::time::Duration::from_secs_f64(free_in.unwrap_or(1.0).max(1.0));
                identity::limits::too_many(limit, wait)
            })
        };
        let refused = over(recent.tenant, recent.tenant_free_in, per_tenant).or_else(|| {
            inviter.and_then(|_| over(recent.inviter, recent.inviter_free_in, per_user))
        });
        match refused {
            Some(problem) => {
                tracing::warn!(%tenant, "invitation rate limit reached");
                Err(problem.into())
            }
            None => Ok(()),
        }
    }

    /// The tenant's invitations, newest first.
    pub async fn invitations(
        &self,
        tx: &mut TenantTx,
        page: &Keyset,
    ) -> Result<Page<Invitation>, TenancyError> {
        let id = tx.tenant_id();
        let rows = store::invitations(tx.conn(), id, page.after(), page.fetch_limit()).await?;
        Ok(page.page(rows, |i| (i.created_at, i.id)))
    }

    /// Revokes a pending invitation.
    pub async fn revoke_invitation(
        &self,
        tx: &mut TenantTx,
        invitation: Uuid,
    ) -> Result<(), TenancyError> {
        let id = tx.tenant_id();
        if !store::revoke_invitation(tx.conn(), id, invitation).await? {
            return Err(TenancyError::NotFound);
        }
        tx.record(NewEvent::new("invitation.revoked").resource("invitation", invitation));
        Ok(())
    }

    /// The tenant an invitation token names, and the token's hashes: where to open the
    /// transaction for [`Tenancy::accept_invitation`].
    pub fn invitation_tenant(&self, token: &str) -> Result<(TenantId, Vec<Vec<u8>>), TenancyError> {
        self.identity
            .invitation_lookup(token)
            .ok_or(TenancyError::InvalidInvitation)
    }

    /// The acting person, whose email must match, joins the tenant with the invitation's
    /// roles. `hashes` come from [`Tenancy::invitation_tenant`].
    pub async fn accept_invitation(
        &self,
        tx: &mut TenantTx,
        hashes: &[Vec<u8>],
    ) -> Result<Tenant, TenancyError> {
        let Some(user) = tx.context().actor.user_id() else {
            return Err(TenancyError::NotAPerson);
        };
        let tenant = tx.tenant_id();
        let Some(found) = store::lock_pending_invitation(tx.conn(), tenant, hashes).await? else {
            return Err(TenancyError::InvalidInvitation);
        };
        let invitee = store::user_email(tx.conn(), user).await?;
        if invitee.email != found.email {
            return Err(TenancyError::InvitationEmailMismatch);
        }
        // Whoever holds the link must also hold the address: an unverified account could
        // be anyone's.
        if !invitee.verified {
            return Err(TenancyError::EmailUnverified);
        }
        // The invitation grants no more than its inviter holds now (an inviter who left
        // took it along).
        let roles = match (found.invited_by, &found.inviter_roles) {
            (None, _) => found.roles.clone(),
            (Some(_), None) => return Err(TenancyError::InvalidInvitation),
            (Some(_), Some(holds)) => {
                access::grants::still_grantable(&self.policy, tx, holds, &found.roles).await?
            }
        };
        if roles.is_empty() {
            return Err(TenancyError::InvalidInvitation);
        }
        // Nor more accounts than its inviter sees now.
        let accounts = match (found.account_ids.clone(), found.inviter_account_ids.clone()) {
            (None, inviter) if found.invited_by.is_some() => inviter,
            (None, _) => None,
            (Some(own), None) => Some(own),
            (Some(own), Some(inviter)) => {
                Some(own.into_iter().filter(|a| inviter.contains(a)).collect())
            }
        };
        // Joining changes the tenant: not while it is read-only for an overdue payment.
        if let Some(limits) = &self.limits {
            limits.writable(tx).await?;
        }
        self.admit_member(tx).await?;
        if !store::add_member(tx.conn(), tenant, user, &roles, accounts.as_deref()).await? {
            return Err(TenancyError::AlreadyMember);
        }
        store::mark_invitation_accepted(tx.conn(), tenant, found.id, user).await?;
        access::bump_policy(tx).await?;
        tx.record(NewEvent::new("invitation.accepted").resource("invitation", found.id));
        let mut added = json!({ "roles": roles });
        if roles != found.roles {
            added["narrowed_from"] = json!(found.roles);
        }
        tx.record(
            NewEvent::new("member.added")
                .resource("member", user)
                .payload(added),
        );
        Ok(store::tenant(tx.conn(), tenant, Some(user)).await?)
    }
}

//! The tenancy routes. Thin: authorize, parse into domain types, call [`Tenancy`], map; the
//! idempotency prologue of each creating `POST` lives here.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use identity::Identity;
use kernel::{
    Actor, ApiResult, DisplayName, Email, FieldErrors, JsonBody, Keyset, LazyJson, Problem,
    RawEmail, RoleNames, TenantId, TenantTx, UserId, UserTx, Validate,
    auth::{Authorize, BearerAuth},
    concurrency,
    idempotency::{self, Fingerprint, IdempotencyKey, UserKeyed},
};
use poem::http::StatusCode;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Header, Path, Query},
    payload::Json,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::{ApiKey, CreatedApiKey, Invitation, Member, NewKey, SealedApiKey, Tenancy, Tenant};

/// The permission of each tenant operation, declared beside the routes (spec: `x-permission`).
pub const PERMISSIONS: &[(&str, &str)] = &[
    ("get_tenant", TENANT_READ),
    ("rename_tenant", TENANT_WRITE),
    ("list_members", MEMBERS_READ),
    ("delete_tenant", TENANT_DELETE),
    ("create_invitation", INVITATIONS_WRITE),
    ("list_invitations", INVITATIONS_READ),
    ("revoke_invitation", INVITATIONS_WRITE),
    ("create_api_key", API_KEYS_WRITE),
    ("list_api_keys", API_KEYS_READ),
    ("revoke_api_key", API_KEYS_WRITE),
    ("update_member", MEMBERS_WRITE),
    ("remove_member", MEMBERS_WRITE),
];
const TENANT_READ: &str = "tenant:read";
const TENANT_WRITE: &str = "tenant:write";
const TENANT_DELETE: &str = "tenant:delete";
const MEMBERS_READ: &str = "members:read";
const MEMBERS_WRITE: &str = "members:write";
const INVITATIONS_READ: &str = "invitations:read";
const INVITATIONS_WRITE: &str = "invitations:write";
const API_KEYS_READ: &str = "api_keys:read";
const API_KEYS_WRITE: &str = "api_keys:write";

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Tenant workspaces and their members.
    Tenants,
}

kernel::page_object!(
    /// The caller's tenants, newest first.
    TenantList,
    Tenant
);
kernel::page_object!(
    /// The tenant's members, in the order they joined.
    MemberList,
    Member
);
kernel::page_object!(
    /// The tenant's invitations, newest first.
    InvitationList,
    Invitation
);
kernel::page_object!(
    /// The tenant's API keys, newest first.
    ApiKeyList,
    ApiKey
);

/// A tenant's name.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// 1–200 characters.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// The base currency budgets and analytics report in (ISO 4217; default `EUR`).
    pub currency: Option<kernel::Currency>,
}

impl Validate for NewTenant {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Err(e) = DisplayName::parse("name", &self.name) {
            errors.push(e);
        }
    }
}

/// A change of a tenant: its name, its base currency, or both.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantChange {
    /// 1–200 characters.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    /// The base currency (ISO 4217).
    pub currency: Option<kernel::Currency>,
    /// The IANA time zone whose date is "today" for budget periods (`Europe/Berlin`).
    #[oai(validator(min_length = 1, max_length = 64))]
    pub time_zone: Option<String>,
}

impl Validate for TenantChange {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Some(name) = &self.name
            && let Err(e) = DisplayName::parse("name", name)
        {
            errors.push(e);
        }
        if self.name.is_none() && self.currency.is_none() && self.time_zone.is_none() {
            errors.add("name", "give a new name, currency or time zone");
        }
        if self
            .time_zone
            .as_ref()
            .is_some_and(|z| !(1..=64).contains(&z.len()))
        {
            errors.add("time_zone", "must be 1 to 64 characters");
        }
    }
}

/// An invitation to send.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    pub email: RawEmail,
    /// Roles the invitee gets, built-in or custom (no more than the inviter holds).
    #[oai(validator(min_items = 1, max_items = 10))]
    pub roles: Vec<String>,
    /// The accounts the invitee will see (absent or `null`: every account you see).
    #[oai(validator(max_items = 100))]
    pub account_ids: Option<Vec<Uuid>>,
}

fn check_account_ids(errors: &mut FieldErrors, ids: Option<&[Uuid]>) {
    errors.check(
        ids.is_none_or(|ids| ids.len() <= 100),
        "account_ids",
        "at most 100 accounts",
    );
}

impl Validate for NewInvitation {
    fn validate(&self, errors: &mut FieldErrors) {
        check_account_ids(errors, self.account_ids.as_deref());
        if let Err(e) = Email::parse(&self.email) {
            errors.add("email", e.to_string());
        }
        if let Err(e) = RoleNames::parse("roles", &self.roles) {
            errors.push(e);
        }
    }
}

/// The token of an invitation mail.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    #[oai(validator(max_length = 512))]
    pub token: String,
}

impl Validate for AcceptInvitation {
    fn validate(&self, errors: &mut FieldErrors) {
        errors.check(
            self.token.len() <= 512,
            "token",
            "must be at most 512 characters",
        );
    }
}

/// A new API key.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// 1–200 characters, to recognise it later.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// Roles it acts with, built-in or custom (no more than its creator holds).
    #[oai(validator(min_items = 1, max_items = 10))]
    pub roles: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The accounts it may see (absent or `null`: every account you see).
    #[oai(validator(max_items = 100))]
    pub account_ids: Option<Vec<Uuid>>,
}

impl Validate for NewApiKey {
    fn validate(&self, errors: &mut FieldErrors) {
        check_account_ids(errors, self.account_ids.as_deref());
        if let Err(e) = DisplayName::parse("name", &self.name) {
            errors.push(e);
        }
        if let Err(e) = RoleNames::parse("roles", &self.roles) {
            errors.push(e);
        }
        errors.check(
            self.expires_at.is_none_or(|t| t > Utc::now()),
            "expires_at",
            "must be in the future",
        );
    }
}

/// New roles for a member.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRoles {
    /// Built-in roles (owner, admin, accountant, viewer, billing) or custom ones.
    #[oai(validator(min_items = 1, max_items = 10))]
    pub roles: Vec<String>,
    /// The accounts the member sees: absent keeps them, `null` is every account.
    #[oai(validator(max_items = 100))]
    #[serde(default)]
    pub account_ids: poem_openapi::types::MaybeUndefined<Vec<Uuid>>,
}

impl Validate for MemberRoles {
    fn validate(&self, errors: &mut FieldErrors) {
        if let poem_openapi::types::MaybeUndefined::Value(ids) = &self.account_ids {
            check_account_ids(errors, Some(ids));
        }
        if let Err(e) = RoleNames::parse("roles", &self.roles) {
            errors.push(e);
        }
    }
}

#[derive(ApiResponse)]
pub enum Created {
    /// Created; the caller is its owner.
    #[oai(status = 201)]
    Created(Json<Tenant>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum InvitationCreated {
    /// Created and mailed.
    #[oai(status = 201)]
    Created(Json<Invitation>),
}

#[derive(ApiResponse)]
pub enum KeyCreated {
    /// Created; the secret is in this response only.
    #[oai(status = 201)]
    Created(Json<CreatedApiKey>),
}

#[derive(ApiResponse)]
pub enum Removed {
    /// Removed.
    #[oai(status = 204)]
    Removed,
}

/// A domain type from a field `Validate` already checked (so this does not fail in
/// practice; if the two rules ever drift, the client still gets a 422 naming the field).
fn parsed<T>(r: Result<T, kernel::FieldError>) -> Result<T, Problem> {
    r.map_err(|e| Problem::validation(vec![e]))
}

/// The tenant routes.
pub struct TenancyApi {
    db: kernel::Db,
    identity: Identity,
    authz: Arc<dyn Authorize>,
    tenancy: Tenancy,
    cursors: kernel::CursorSigner,
}

impl TenancyApi {
    pub fn new(
        db: kernel::Db,
        identity: Identity,
        authz: Arc<dyn Authorize>,
        tenancy: Tenancy,
        cursors: kernel::CursorSigner,
    ) -> TenancyApi {
        TenancyApi {
            db,
            identity,
            authz,
            tenancy,
            cursors,
        }
    }

    fn keyset(
        &self,
        operation: &str,
        scope: impl std::fmt::Display,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<Keyset, Problem> {
        Keyset::parse(&self.cursors, operation, scope, limit, cursor)
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Tenants")]
impl TenancyApi {
    /// Creates a tenant workspace; the caller becomes its `owner`, on the `free` plan.
    #[oai(path = "/tenants", method = "post", operation_id = "create_tenant")]
    async fn create(
        &self,
        auth: BearerAuth,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        body: JsonBody<NewTenant>,
    ) -> ApiResult<Created> {
        let me = self.identity.authenticate(auth.token()).await?;
        let key = IdempotencyKey::parse_optional(key.0.as_deref())?;
        let id = TenantId::new();
        let mut tx = UserKeyed(
            TenantTx::begin(&self.db, id, Actor::User(me.user_id)).await?,
            me.user_id,
        );
        let fingerprint = Fingerprint::new("create_tenant", body.digest());
        if let Some(t) =
            idempotency::claim::<_, Tenant>(&mut tx, key.as_ref(), fingerprint, StatusCode::CREATED)
                .await?
        {
            let location = format!("/api/v1/tenants/{}", t.id);
            return Ok(Created::Created(Json(t), location));
        }
        let name = parsed(DisplayName::parse("name", &body.name))?;
        let currency = body
            .currency
            .unwrap_or_else(|| kernel::Currency::parse("EUR").expect("EUR is a currency"));
        let created = self
            .tenancy
            .create(&mut tx.0, me.user_id, &name, currency)
            .await?;
        idempotency::commit(tx, key.as_ref(), StatusCode::CREATED, &created).await?;
        let location = format!("/api/v1/tenants/{id}");
        Ok(Created::Created(Json(created), location))
    }

    /// The tenants the caller belongs to, with their roles.
    #[oai(path = "/tenants", method = "get", operation_id = "list_tenants")]
    async fn list(
        &self,
        auth: BearerAuth,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<TenantList>> {
        let me = self.identity.authenticate(auth.token()).await?;
        let page = self.keyset("list_tenants", me.user_id, limit.0, cursor.0.as_deref())?;
        let mut tx = UserTx::begin(&self.db, me.user_id).await?;
        let tenants = self.tenancy.list_mine(&mut tx, &page).await?;
        tx.commit().await?;
        Ok(Json(tenants.into()))
    }

    /// A tenant workspace.
    #[oai(
        path = "/tenants/:tenant_id",
        method = "get",
        operation_id = "get_tenant"
    )]
    async fn get(&self, auth: BearerAuth, tenant_id: Path<TenantId>) -> ApiResult<Json<Tenant>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, TENANT_READ)
            .await?;
        let t = self.tenancy.get(&mut tx).await?;
        tx.commit().await?;
        Ok(Json(t))
    }

    /// Renames a tenant workspace and/or changes its base currency.
    #[oai(
        path = "/tenants/:tenant_id",
        method = "patch",
        operation_id = "rename_tenant"
    )]
    async fn rename(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: LazyJson<TenantChange>,
    ) -> ApiResult<Json<Tenant>> {
        // Access first: a stranger learns nothing, not even that the body was wrong.
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, TENANT_WRITE)
            .await?;
        let body = body.parse()?.into_inner();
        let name = body
            .name
            .as_deref()
            .map(|n| parsed(DisplayName::parse("name", n)))
            .transpose()?;
        let expected = concurrency::if_match(if_match.0.as_deref())?;
        let t = self
            .tenancy
            .update(
                &mut tx,
                expected,
                name.as_ref(),
                body.currency,
                body.time_zone.as_deref(),
            )
            .await?;
        tx.commit().await?;
        Ok(Json(t))
    }

    /// Changes a member's roles. Removing or demoting the last owner is `409 last_owner`.
    #[oai(
        path = "/tenants/:tenant_id/members/:user_id",
        method = "patch",
        operation_id = "update_member"
    )]
    async fn update_member(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        user_id: Path<UserId>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: LazyJson<MemberRoles>,
    ) -> ApiResult<Json<Member>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, MEMBERS_WRITE)
            .await?;
        let body = body.parse()?;
        let roles = parsed(RoleNames::parse("roles", &body.roles))?;
        let expected = concurrency::if_match(if_match.0.as_deref())?;
        let accounts = match body.account_ids.clone() {
            poem_openapi::types::MaybeUndefined::Undefined => None,
            poem_openapi::types::MaybeUndefined::Null => Some(None),
            poem_openapi::types::MaybeUndefined::Value(ids) => Some(Some(ids)),
        };
        let member = self
            .tenancy
            .update_member_access(&mut tx, user_id.0, expected, &roles, accounts)
            .await?;
        tx.commit().await?;
        Ok(Json(member))
    }

    /// Removes a member. Removing the last owner is `409 last_owner`.
    #[oai(
        path = "/tenants/:tenant_id/members/:user_id",
        method = "delete",
        operation_id = "remove_member"
    )]
    async fn remove_member(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        user_id: Path<UserId>,
    ) -> ApiResult<Removed> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, MEMBERS_WRITE)
            .await?;
        self.tenancy.remove_member(&mut tx, user_id.0).await?;
        tx.commit().await?;
        Ok(Removed::Removed)
    }

    /// Deletes a tenant (owner only): read-only for a 30-day grace period, then purged.
    #[oai(
        path = "/tenants/:tenant_id",
        method = "delete",
        operation_id = "delete_tenant"
    )]
    async fn delete(&self, auth: BearerAuth, tenant_id: Path<TenantId>) -> ApiResult<Removed> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, TENANT_DELETE)
            .await?;
        self.tenancy.delete(&mut tx).await?;
        tx.commit().await?;
        Ok(Removed::Removed)
    }

    /// Creates an API key for this tenant with roles the caller holds. The secret is shown
    /// once; an `Idempotency-Key` replay (24 h) shows it again from a vault-sealed copy.
    #[oai(
        path = "/tenants/:tenant_id/api-keys",
        method = "post",
        operation_id = "create_api_key"
    )]
    async fn create_api_key(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        body: LazyJson<NewApiKey>,
    ) -> ApiResult<KeyCreated> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, API_KEYS_WRITE)
            .await?;
        let body = body.parse()?;
        let key = IdempotencyKey::parse_optional(key.0.as_deref())?;
        // The secret comes back only to the same caller, who may still grant these roles.
        let fingerprint = Fingerprint::new(
            &format!("create_api_key:{:?}", tx.context().actor.id()),
            body.digest(),
        );
        let new = NewKey {
            name: parsed(DisplayName::parse("name", &body.name))?,
            roles: parsed(RoleNames::parse("roles", &body.roles))?,
            expires_at: body.expires_at,
            account_ids: body.account_ids.clone(),
        };
        if let Some(stored) = idempotency::claim::<_, SealedApiKey>(
            &mut tx,
            key.as_ref(),
            fingerprint,
            StatusCode::CREATED,
        )
        .await?
        {
            let replayed = self.tenancy.replay_api_key(&mut tx, stored).await?;
            tx.commit().await?;
            return Ok(KeyCreated::Created(Json(replayed)));
        }
        let created = self.tenancy.create_api_key(&mut tx, new).await?;
        let stored = self.tenancy.seal_for_replay(tenant_id.0, &created);
        idempotency::commit(tx, key.as_ref(), StatusCode::CREATED, &stored).await?;
        Ok(KeyCreated::Created(Json(created)))
    }

    /// The tenant's API keys (prefix and last use; never the secret).
    #[oai(
        path = "/tenants/:tenant_id/api-keys",
        method = "get",
        operation_id = "list_api_keys"
    )]
    async fn list_api_keys(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<ApiKeyList>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, API_KEYS_READ)
            .await?;
        let page = self.keyset("list_api_keys", tenant_id.0, limit.0, cursor.0.as_deref())?;
        let keys = self.tenancy.api_keys(&mut tx, &page).await?;
        tx.commit().await?;
        Ok(Json(keys.into()))
    }

    /// Revokes an API key; it stops working at once.
    #[oai(
        path = "/tenants/:tenant_id/api-keys/:id",
        method = "delete",
        operation_id = "revoke_api_key"
    )]
    async fn revoke_api_key(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Removed> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, API_KEYS_WRITE)
            .await?;
        self.tenancy.revoke_api_key(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Removed::Removed)
    }

    /// Invites someone by email with roles the caller holds; the link works once, for 7 days.
    #[oai(
        path = "/tenants/:tenant_id/invitations",
        method = "post",
        operation_id = "create_invitation"
    )]
    async fn create_invitation(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        body: LazyJson<NewInvitation>,
    ) -> ApiResult<InvitationCreated> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, INVITATIONS_WRITE)
            .await?;
        let body = body.parse()?;
        let key = IdempotencyKey::parse_optional(key.0.as_deref())?;
        let fingerprint = Fingerprint::new("create_invitation", body.digest());
        if let Some(invitation) = idempotency::claim::<_, Invitation>(
            &mut tx,
            key.as_ref(),
            fingerprint,
            StatusCode::CREATED,
        )
        .await?
        {
            return Ok(InvitationCreated::Created(Json(invitation)));
        }
        let email = Email::parse(&body.email).map_err(|e| {
            Problem::validation(vec![kernel::FieldError::new("email", e.to_string())])
        })?;
        let roles = parsed(RoleNames::parse("roles", &body.roles))?;
        let created = self
            .tenancy
            .invite_to_accounts(&mut tx, &email, &roles, body.account_ids.clone())
            .await?;
        idempotency::commit(tx, key.as_ref(), StatusCode::CREATED, &created).await?;
        Ok(InvitationCreated::Created(Json(created)))
    }

    /// The tenant's invitations.
    #[oai(
        path = "/tenants/:tenant_id/invitations",
        method = "get",
        operation_id = "list_invitations"
    )]
    async fn list_invitations(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<InvitationList>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, INVITATIONS_READ)
            .await?;
        let page = self.keyset(
            "list_invitations",
            tenant_id.0,
            limit.0,
            cursor.0.as_deref(),
        )?;
        let invitations = self.tenancy.invitations(&mut tx, &page).await?;
        tx.commit().await?;
        Ok(Json(invitations.into()))
    }

    /// Revokes a pending invitation.
    #[oai(
        path = "/tenants/:tenant_id/invitations/:id",
        method = "delete",
        operation_id = "revoke_invitation"
    )]
    async fn revoke_invitation(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Removed> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, INVITATIONS_WRITE)
            .await?;
        self.tenancy.revoke_invitation(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Removed::Removed)
    }

    /// Accepts an invitation: the signed-in user, whose email must match, joins the tenant.
    #[oai(
        path = "/invitations/accept",
        method = "post",
        operation_id = "accept_invitation"
    )]
    async fn accept_invitation(
        &self,
        auth: BearerAuth,
        body: JsonBody<AcceptInvitation>,
    ) -> ApiResult<Json<Tenant>> {
        let me = self.identity.authenticate(auth.token()).await?;
        let (tenant, hashes) = self.tenancy.invitation_tenant(&body.token)?;
        let mut tx = TenantTx::begin(&self.db, tenant, Actor::User(me.user_id)).await?;
        let t = self.tenancy.accept_invitation(&mut tx, &hashes).await?;
        tx.commit().await?;
        Ok(Json(t))
    }

    /// The tenant's members and their roles.
    #[oai(
        path = "/tenants/:tenant_id/members",
        method = "get",
        operation_id = "list_members"
    )]
    async fn members(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<MemberList>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, MEMBERS_READ)
            .await?;
        let page = self.keyset("list_members", tenant_id.0, limit.0, cursor.0.as_deref())?;
        let members = self.tenancy.members(&mut tx, &page).await?;
        tx.commit().await?;
        Ok(Json(members.into()))
    }
}

//! Tenant workspaces (API.md, Tenants): create (the creator is `owner`, plan `free`), list
//! mine, read, rename, and the member list. Invitations, role changes, deletion and API keys
//! join this module with the rest of the access layer.

use std::sync::Arc;

use audit::{NewEvent, Record};
use base64::Engine;
use chrono::{DateTime, Utc};
use identity::Identity;
use kernel::{
    Actor, ApiResult, FieldErrors, JsonBody, LazyJson, Problem, TenantId, TenantTx, UserTx,
    Validate,
    auth::{Authorize, BearerAuth},
    concurrency,
    idempotency::{self, Fingerprint, IdempotencyKey, UserKeyed},
    page::{Page, PageParams, Position, QueryId},
};
use poem::http::StatusCode;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Header, Path, Query},
    payload::Json,
};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

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
const MEMBERS_WRITE: &str = "members:write";
const TENANT_DELETE: &str = "tenant:delete";
const API_KEYS_READ: &str = "api_keys:read";
const INVITATIONS_READ: &str = "invitations:read";
const INVITATIONS_WRITE: &str = "invitations:write";
const API_KEYS_WRITE: &str = "api_keys:write";

/// How long a deleted tenant stays (read-only) before `balance admin purge-tenant` may remove it.
pub const DELETION_GRACE_DAYS: i64 = 30;

/// The tenant-owned tables, children first: what a purge deletes. The schema test checks
/// that every table with a `tenant_id` is here.
pub const PURGE_ORDER: &[&str] = &[
    "event_clients",
    "audit_checkpoints",
    "events",
    "audit_heads",
    "idempotency_keys",
    "jobs",
    "api_keys",
    "invitations",
    "tenant_roles",
    "memberships",
];

/// Why a purge did not happen.
#[derive(Debug)]
pub enum PurgeError {
    NotDeleted,
    InGrace(i64),
    Database(sqlx::Error),
}

impl std::fmt::Display for PurgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PurgeError::NotDeleted => write!(f, "the tenant is not deleted (or does not exist)"),
            PurgeError::InGrace(days) => write!(
                f,
                "the tenant was deleted {days} day(s) ago; the grace period is {DELETION_GRACE_DAYS} days (--force to purge now)"
            ),
            PurgeError::Database(e) => write!(f, "{e}"),
        }
    }
}

impl From<sqlx::Error> for PurgeError {
    fn from(e: sqlx::Error) -> PurgeError {
        PurgeError::Database(e)
    }
}

/// Removes a deleted tenant's rows, its audit chain included, through the audit log's one
/// documented exception (a DELETE by the owner role with `balance.purge_tenant` set).
/// Connects as the owner role. Returns the number of rows removed.
pub async fn purge(owner_url: &str, tenant: TenantId, force: bool) -> Result<u64, PurgeError> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(owner_url).await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT set_config('balance.tenant_id', $1, true), set_config('balance.purge_tenant', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await?;
    let age: Option<Option<f64>> =
        sqlx::query_scalar("SELECT extract(epoch FROM now() - deleted_at)::float8 FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(Some(age)) = age else {
        return Err(PurgeError::NotDeleted);
    };
    let days = (age / 86_400.0) as i64;
    if days < DELETION_GRACE_DAYS && !force {
        return Err(PurgeError::InGrace(days));
    }
    let mut removed = 0;
    for table in PURGE_ORDER {
        removed += sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE tenant_id = $1"
        )))
        .bind(tenant)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    removed += sqlx::query("DELETE FROM tenants WHERE id = $1")
        .bind(tenant)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(removed)
}
const TENANT_READ: &str = "tenant:read";
const TENANT_WRITE: &str = "tenant:write";
const MEMBERS_READ: &str = "members:read";

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Tenant workspaces and their members.
    Tenants,
}

/// A tenant workspace.
#[derive(Debug, Clone, Object)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub plan: String,
    /// The caller's roles in it.
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// Set while a deleted tenant waits out its grace period.
    pub deleted_at: Option<DateTime<Utc>>,
    /// For `If-Match` on rename.
    pub version: i64,
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

/// A page request of one list keyed by `(created_at, id)`: its signed query, its limit,
/// and where it starts.
struct Keyset {
    query: QueryId,
    params: PageParams,
}

impl Keyset {
    /// Parses `?limit=` and `?cursor=` for `operation` in `scope` (the tenant or user).
    fn parse(
        signer: &kernel::CursorSigner,
        operation: &str,
        scope: impl std::fmt::Display,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<Keyset, Problem> {
        let query = QueryId::new(operation, &[&scope.to_string()]);
        let params = PageParams::parse(limit, cursor, signer, &query)?;
        Ok(Keyset { query, params })
    }

    /// `(created_at, id)` of the previous page's last row, if any.
    fn after(&self) -> (Option<DateTime<Utc>>, Option<Uuid>) {
        match &self.params.after {
            Some(p) => (
                p.key
                    .as_str()
                    .and_then(|k| DateTime::parse_from_rfc3339(k).ok())
                    .map(|d| d.with_timezone(&Utc)),
                Some(p.id),
            ),
            None => (None, None),
        }
    }

    fn fetch_limit(&self) -> i64 {
        self.params.fetch_limit()
    }

    /// The page of `rows` (fetched with [`Keyset::fetch_limit`]), each keyed by `key`.
    fn page<R, T>(
        &self,
        signer: &kernel::CursorSigner,
        rows: Vec<R>,
        key: impl Fn(&R) -> (DateTime<Utc>, Uuid),
        item: impl FnMut(R) -> T,
    ) -> Page<T> {
        Page::from_rows(rows, &self.params, signer, &self.query, |r| {
            let (at, id) = key(r);
            Position {
                key: json!(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                id,
            }
        })
        .map(item)
    }
}

/// A member and their roles.
#[derive(Debug, Object)]
pub struct Member {
    pub user_id: kernel::UserId,
    pub name: String,
    pub email: String,
    pub roles: Vec<String>,
    pub joined_at: DateTime<Utc>,
    /// For `If-Match` on role changes.
    pub version: i64,
}

/// A tenant's name.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantName {
    /// 1–200 characters.
    pub name: String,
}

impl Validate for TenantName {
    fn validate(&self, errors: &mut FieldErrors) {
        let name = self.name.trim();
        errors.check(
            !name.is_empty() && name.chars().count() <= 200,
            "name",
            "must be 1-200 characters",
        );
        errors.check(
            !name.chars().any(char::is_control),
            "name",
            "must not contain control characters",
        );
    }
}

#[derive(ApiResponse)]
pub enum Created {
    /// Created; the caller is its owner.
    #[oai(status = 201)]
    Created(Json<Tenant>, #[oai(header = "Location")] String),
}

/// The tenant routes.
pub struct TenancyApi {
    db: kernel::Db,
    identity: Identity,
    authz: Arc<dyn Authorize>,
    store: access::PolicyStore,
    cursors: kernel::CursorSigner,
}

impl TenancyApi {
    pub fn new(
        db: kernel::Db,
        identity: Identity,
        authz: Arc<dyn Authorize>,
        store: access::PolicyStore,
        cursors: kernel::CursorSigner,
    ) -> TenancyApi {
        TenancyApi {
            db,
            identity,
            authz,
            store,
            cursors,
        }
    }

    /// Checks a new set of roles against what the caller holds: roles of this tenant only,
    /// nobody grants a permission they lack, only an owner grants `owner`.
    async fn check_grant(&self, tx: &mut TenantTx, roles: &[String]) -> Result<(), Problem> {
        access::grants::check_grant(&self.store, tx, roles, "roles").await
    }
}

/// An invitation to send.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    pub email: String,
    /// Roles the invitee gets, built-in or custom (no more than the inviter holds).
    pub roles: Vec<String>,
}

impl Validate for NewInvitation {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Err(e) = kernel::Email::parse(&self.email) {
            errors.add("email", e.to_string());
        }
        errors.check(
            !self.roles.is_empty() && self.roles.len() <= 10,
            "roles",
            "must name 1-10 roles",
        );
    }
}

/// An invitation (its token is only in the mail).
#[derive(Debug, Object)]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(ApiResponse)]
pub enum InvitationCreated {
    /// Created and mailed.
    #[oai(status = 201)]
    Created(Json<Invitation>),
}

/// The token of an invitation mail.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
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

/// `id, email, roles, created_at, expires_at, accepted_at, revoked_at`.
type InvitationRow = (
    Uuid,
    String,
    Vec<String>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

fn invitation(r: InvitationRow) -> Invitation {
    Invitation {
        id: r.0,
        email: r.1,
        roles: r.2,
        created_at: r.3,
        expires_at: r.4,
        accepted_at: r.5,
        revoked_at: r.6,
    }
}

/// A new API key.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// 1–200 characters, to recognise it later.
    pub name: String,
    /// Roles it acts with, built-in or custom (no more than its creator holds).
    pub roles: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Validate for NewApiKey {
    fn validate(&self, errors: &mut FieldErrors) {
        let name = self.name.trim();
        errors.check(
            !name.is_empty() && name.chars().count() <= 200,
            "name",
            "must be 1-200 characters",
        );
        errors.check(
            !self.roles.is_empty() && self.roles.len() <= 10,
            "roles",
            "must name 1-10 roles",
        );
        errors.check(
            self.expires_at.is_none_or(|t| t > Utc::now()),
            "expires_at",
            "must be in the future",
        );
    }
}

/// An API key as lists show it: never its secret.
#[derive(Debug, Object)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub roles: Vec<String>,
    /// Enough to recognise the key, not to use it.
    pub prefix: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A created API key, with its secret: shown only now.
#[derive(Debug, Object)]
pub struct CreatedApiKey {
    pub id: Uuid,
    pub name: String,
    pub roles: Vec<String>,
    pub prefix: String,
    /// `bal_live_…`: use it as `Authorization: Bearer …`. It is not stored and never shown again.
    pub secret: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// What an `Idempotency-Key` keeps of a created API key: the secret only sealed by the vault
/// (bound to the tenant and key), for the 24 hours keys are kept.
#[derive(Debug, Object)]
pub struct SealedApiKey {
    pub id: Uuid,
    pub name: String,
    pub roles: Vec<String>,
    pub prefix: String,
    pub sealed_secret: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum KeyCreated {
    /// Created; the secret is in this response only.
    #[oai(status = 201)]
    Created(Json<CreatedApiKey>),
}

impl TenancyApi {
    /// Locks a member's row and returns their roles (`404` if not a member). An owner's
    /// roles change only by an owner, and never leave the tenant without one: `new_roles`
    /// are the roles after the change (`None`: removed).
    async fn lock_member(
        &self,
        tx: &mut TenantTx,
        user: kernel::UserId,
        new_roles: Option<&[String]>,
    ) -> Result<(Vec<String>, i64), Problem> {
        let current: Option<(Vec<String>, i64)> = sqlx::query_as(
            "SELECT roles, version FROM memberships WHERE tenant_id = $1 AND user_id = $2 FOR UPDATE",
        )
        .bind(tx.tenant_id())
        .bind(user)
        .fetch_optional(tx.conn())
        .await?;
        let Some((current, version)) = current else {
            return Err(Problem::not_found());
        };
        if current.iter().any(|r| r == "owner") {
            self.check_grant(tx, &["owner".to_string()]).await?;
            let stays_owner = new_roles.is_some_and(|roles| roles.iter().any(|r| r == "owner"));
            if !stays_owner && only_owner(tx, user).await? {
                return Err(last_owner());
            }
        }
        Ok((current, version))
    }
}

/// New roles for a member.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRoles {
    /// Built-in roles (owner, admin, accountant, viewer, billing) or custom ones.
    pub roles: Vec<String>,
}

impl Validate for MemberRoles {
    fn validate(&self, errors: &mut FieldErrors) {
        errors.check(
            !self.roles.is_empty() && self.roles.len() <= 10,
            "roles",
            "must name 1-10 roles",
        );
    }
}

#[derive(ApiResponse)]
pub enum Removed {
    /// Removed.
    #[oai(status = 204)]
    Removed,
}

/// Roles as stored: sorted, each once.
fn normalised(mut roles: Vec<String>) -> Vec<String> {
    roles.sort();
    roles.dedup();
    roles
}

fn last_owner() -> Problem {
    Problem::new(StatusCode::CONFLICT, "last_owner", "Last owner")
        .with_detail("A tenant keeps at least one owner: make someone else owner first.")
}

/// Locks the owners' rows and tells whether `user` is the only one.
async fn only_owner(tx: &mut TenantTx, user: kernel::UserId) -> Result<bool, Problem> {
    let owners: Vec<Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM memberships WHERE tenant_id = $1 AND 'owner' = ANY(roles) ORDER BY user_id FOR UPDATE",
    )
    .bind(tx.tenant_id())
    .fetch_all(tx.conn())
    .await?;
    Ok(owners == [user.as_uuid()])
}

/// `id, name, roles, prefix, expires_at, created_at, last_used_at, revoked_at`.
type ApiKeyRow = (
    Uuid,
    String,
    Vec<String>,
    String,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// `user_id, name, email, roles, joined_at, version`.
type MemberRow = (Uuid, String, String, Vec<String>, DateTime<Utc>, i64);

fn member(r: MemberRow) -> Member {
    Member {
        user_id: kernel::UserId::from_uuid(r.0),
        name: r.1,
        email: r.2,
        roles: r.3,
        joined_at: r.4,
        version: r.5,
    }
}

/// `id, name, plan, roles, created_at, deleted_at, version`.
type TenantRow = (
    Uuid,
    String,
    String,
    Vec<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    i64,
);

fn tenant(r: TenantRow) -> Tenant {
    Tenant {
        id: TenantId::from_uuid(r.0),
        name: r.1,
        plan: r.2,
        roles: r.3,
        created_at: r.4,
        deleted_at: r.5,
        version: r.6,
    }
}

async fn read_tenant(tx: &mut TenantTx, user: Option<kernel::UserId>) -> Result<Tenant, Problem> {
    let row: TenantRow = sqlx::query_as(
        "SELECT t.id, t.name, t.plan, coalesce(m.roles, '{}'), t.created_at, t.deleted_at, t.version
         FROM tenants t LEFT JOIN memberships m ON m.tenant_id = t.id AND m.user_id = $2
         WHERE t.id = $1",
    )
    .bind(tx.tenant_id())
    .bind(user)
    .fetch_one(tx.conn())
    .await?;
    Ok(tenant(row))
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Tenants")]
impl TenancyApi {
    /// Creates a tenant workspace; the caller becomes its `owner`, on the `free` plan.
    #[oai(path = "/tenants", method = "post", operation_id = "create_tenant")]
    async fn create(
        &self,
        auth: BearerAuth,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        body: JsonBody<TenantName>,
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
        let name = body.name.trim().to_string();
        sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, $2)")
            .bind(id)
            .bind(&name)
            .execute(tx.0.conn())
            .await?;
        sqlx::query(
            "INSERT INTO memberships (tenant_id, user_id, roles) VALUES ($1, $2, '{owner}')",
        )
        .bind(id)
        .bind(me.user_id)
        .execute(tx.0.conn())
        .await?;
        tx.0.record(
            NewEvent::new("tenant.created")
                .resource("tenant", id)
                .payload(json!({ "plan": "free" })),
        );
        tx.0.record(
            NewEvent::new("member.added")
                .resource("member", me.user_id)
                .payload(json!({ "roles": ["owner"] })),
        );
        let created = read_tenant(&mut tx.0, Some(me.user_id)).await?;
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
        let keyset = Keyset::parse(
            &self.cursors,
            "list_tenants",
            me.user_id,
            limit.0,
            cursor.0.as_deref(),
        )?;
        let (at, id) = keyset.after();
        let mut tx = UserTx::begin(&self.db, me.user_id).await?;
        // The user policy on memberships: my rows across tenants, while no tenant is set.
        let rows: Vec<TenantRow> = sqlx::query_as(
            "SELECT t.id, t.name, t.plan, m.roles, t.created_at, t.deleted_at, t.version
             FROM memberships m JOIN tenants t ON t.id = m.tenant_id
             WHERE m.user_id = $1 AND ($2::timestamptz IS NULL OR (t.created_at, t.id) < ($2, $3))
             ORDER BY t.created_at DESC, t.id DESC LIMIT $4",
        )
        .bind(me.user_id)
        .bind(at)
        .bind(id)
        .bind(keyset.fetch_limit())
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(Json(
            keyset
                .page(&self.cursors, rows, |r| (r.4, r.0), tenant)
                .into(),
        ))
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
        let user = tx.context().actor.user_id();
        let t = read_tenant(&mut tx, user).await?;
        tx.commit().await?;
        Ok(Json(t))
    }

    /// Renames a tenant workspace.
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
        body: LazyJson<TenantName>,
    ) -> ApiResult<Json<Tenant>> {
        // Access first: a stranger learns nothing, not even that the body was wrong.
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, TENANT_WRITE)
            .await?;
        let name = body.parse()?.name.trim().to_string();
        let expected = concurrency::if_match(if_match.0.as_deref())?;
        let (current, old_name): (i64, String) =
            sqlx::query_as("SELECT version, name FROM tenants WHERE id = $1 FOR UPDATE")
                .bind(tenant_id.0)
                .fetch_one(tx.conn())
                .await?;
        concurrency::check(expected, current)?;
        sqlx::query(
            "UPDATE tenants SET name = $2, version = version + 1, updated_at = now() WHERE id = $1",
        )
        .bind(tenant_id.0)
        .bind(&name)
        .execute(tx.conn())
        .await?;
        tx.record(
            NewEvent::new("tenant.renamed")
                .resource("tenant", tenant_id.0)
                .payload(json!({ "changed": old_name != name })),
        );
        let user = tx.context().actor.user_id();
        let t = read_tenant(&mut tx, user).await?;
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
        user_id: Path<kernel::UserId>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: LazyJson<MemberRoles>,
    ) -> ApiResult<Json<Member>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, MEMBERS_WRITE)
            .await?;
        let roles = normalised(body.parse()?.into_inner().roles);
        let expected = concurrency::if_match(if_match.0.as_deref())?;
        let (current, version) = self.lock_member(&mut tx, user_id.0, Some(&roles)).await?;
        concurrency::check(expected, version)?;
        self.check_grant(&mut tx, &roles).await?;
        sqlx::query("UPDATE memberships SET roles = $3, version = version + 1 WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant_id.0)
            .bind(user_id.0)
            .bind(&roles)
            .execute(tx.conn())
            .await?;
        access::bump_policy(&mut tx).await?;
        tx.record(
            NewEvent::new("member.role_changed")
                .resource("member", user_id.0)
                .payload(json!({ "from": current, "to": roles })),
        );
        let member = member_of(&mut tx, user_id.0).await?;
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
        user_id: Path<kernel::UserId>,
    ) -> ApiResult<Removed> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, MEMBERS_WRITE)
            .await?;
        let (current, _) = self.lock_member(&mut tx, user_id.0, None).await?;
        sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant_id.0)
            .bind(user_id.0)
            .execute(tx.conn())
            .await?;
        access::bump_policy(&mut tx).await?;
        tx.record(
            NewEvent::new("member.removed")
                .resource("member", user_id.0)
                .payload(json!({ "roles": current })),
        );
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
        sqlx::query("UPDATE tenants SET deleted_at = now(), updated_at = now() WHERE id = $1")
            .bind(tenant_id.0)
            .execute(tx.conn())
            .await?;
        tx.record(
            NewEvent::new("tenant.deleted")
                .resource("tenant", tenant_id.0)
                .payload(json!({ "grace_days": DELETION_GRACE_DAYS })),
        );
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
        let mut new = body.into_inner();
        new.roles = normalised(new.roles);
        self.check_grant(&mut tx, &new.roles).await?;
        let aad = |id: Uuid| format!("api_key.replay:{}:{id}", tenant_id.0).into_bytes();
        if let Some(stored) = idempotency::claim::<_, SealedApiKey>(
            &mut tx,
            key.as_ref(),
            fingerprint,
            StatusCode::CREATED,
        )
        .await?
        {
            let sealed = base64::engine::general_purpose::STANDARD
                .decode(&stored.sealed_secret)
                .ok()
                .and_then(|c| self.identity.unseal(&c, &aad(stored.id)))
                .ok_or_else(Problem::internal)?;
            let secret =
                String::from_utf8(sealed.expose().clone()).map_err(|_| Problem::internal())?;
            tx.record(NewEvent::new("api_key.secret_replayed").resource("api_key", stored.id));
            tx.commit().await?;
            return Ok(KeyCreated::Created(Json(CreatedApiKey {
                id: stored.id,
                name: stored.name,
                roles: stored.roles,
                prefix: stored.prefix,
                secret,
                expires_at: stored.expires_at,
                created_at: stored.created_at,
            })));
        }
        let minted = self.identity.mint_api_key(tenant_id.0);
        let id = Uuid::now_v7();
        let created_at: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO api_keys (tenant_id, id, name, roles, pepper_id, hash, prefix, created_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING created_at",
        )
        .bind(tenant_id.0)
        .bind(id)
        .bind(new.name.trim())
        .bind(&new.roles)
        .bind(&minted.pepper_id)
        .bind(&minted.hash)
        .bind(&minted.prefix)
        .bind(tx.context().actor.user_id())
        .bind(new.expires_at)
        .fetch_one(tx.conn())
        .await?;
        tx.record(
            NewEvent::new("api_key.created")
                .resource("api_key", id)
                .payload(json!({ "roles": new.roles })),
        );
        let created = CreatedApiKey {
            id,
            name: new.name.trim().to_string(),
            roles: new.roles,
            prefix: minted.prefix,
            secret: minted.token,
            expires_at: new.expires_at,
            created_at,
        };
        let stored = SealedApiKey {
            id,
            name: created.name.clone(),
            roles: created.roles.clone(),
            prefix: created.prefix.clone(),
            sealed_secret: base64::engine::general_purpose::STANDARD
                .encode(self.identity.seal(created.secret.as_bytes(), &aad(id))),
            expires_at: created.expires_at,
            created_at,
        };
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
        let keyset = Keyset::parse(
            &self.cursors,
            "list_api_keys",
            tenant_id.0,
            limit.0,
            cursor.0.as_deref(),
        )?;
        let (at, id) = keyset.after();
        let rows: Vec<ApiKeyRow> = sqlx::query_as(
            "SELECT id, name, roles, prefix, expires_at, created_at, last_used_at, revoked_at FROM api_keys
             WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
             ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(tenant_id.0)
        .bind(at)
        .bind(id)
        .bind(keyset.fetch_limit())
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(Json(
            keyset
                .page(
                    &self.cursors,
                    rows,
                    |r| (r.5, r.0),
                    |r| ApiKey {
                        id: r.0,
                        name: r.1,
                        roles: r.2,
                        prefix: r.3,
                        expires_at: r.4,
                        created_at: r.5,
                        last_used_at: r.6,
                        revoked_at: r.7,
                    },
                )
                .into(),
        ))
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
        let revoked = sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL")
            .bind(tenant_id.0)
            .bind(id.0)
            .execute(tx.conn())
            .await?
            .rows_affected();
        if revoked == 0 {
            return Err(Problem::not_found());
        }
        tx.record(NewEvent::new("api_key.revoked").resource("api_key", id.0));
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
        let mut new = body.into_inner();
        new.roles = normalised(new.roles);
        self.check_grant(&mut tx, &new.roles).await?;
        let email = kernel::Email::parse(&new.email).map_err(|_| Problem::internal())?;
        let minted = self.identity.mint_invitation(tenant_id.0);
        let id = Uuid::now_v7();
        let inviter = tx.context().actor.user_id();
        let row: InvitationRow = sqlx::query_as(
            "INSERT INTO invitations (tenant_id, id, email, roles, pepper_id, hash, invited_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, now() + interval '7 days')
             RETURNING id, email, roles, created_at, expires_at, accepted_at, revoked_at",
        )
        .bind(tenant_id.0)
        .bind(id)
        .bind(email.as_str())
        .bind(&new.roles)
        .bind(&minted.pepper_id)
        .bind(&minted.hash)
        .bind(inviter)
        .fetch_one(tx.conn())
        .await?;
        let (tenant_name, inviter_name): (String, Option<String>) = sqlx::query_as(
            "SELECT t.name, (SELECT name FROM users WHERE id = $2) FROM tenants t WHERE t.id = $1",
        )
        .bind(tenant_id.0)
        .bind(inviter)
        .fetch_one(tx.conn())
        .await?;
        let template = mail::Template::Invitation {
            tenant: tenant_name,
            inviter: inviter_name.unwrap_or_else(|| "A Balance user".into()),
            token: minted.token,
        };
        mail::queue(&mut tx, &email, &template).await?;
        tx.record(
            NewEvent::new("invitation.created")
                .resource("invitation", id)
                .payload(json!({ "roles": new.roles })),
        );
        let created = invitation(row);
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
        let keyset = Keyset::parse(
            &self.cursors,
            "list_invitations",
            tenant_id.0,
            limit.0,
            cursor.0.as_deref(),
        )?;
        let (at, id) = keyset.after();
        let rows: Vec<InvitationRow> = sqlx::query_as(
            "SELECT id, email, roles, created_at, expires_at, accepted_at, revoked_at FROM invitations
             WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
             ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(tenant_id.0)
        .bind(at)
        .bind(id)
        .bind(keyset.fetch_limit())
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(Json(
            keyset
                .page(&self.cursors, rows, |r| (r.3, r.0), invitation)
                .into(),
        ))
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
        let revoked = sqlx::query(
            "UPDATE invitations SET revoked_at = now() WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL AND accepted_at IS NULL",
        )
        .bind(tenant_id.0)
        .bind(id.0)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if revoked == 0 {
            return Err(Problem::not_found());
        }
        tx.record(NewEvent::new("invitation.revoked").resource("invitation", id.0));
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
        let invalid = || {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_token",
                "Invalid or expired invitation",
            )
            .with_detail("This invitation is invalid, expired, revoked, or was already used.")
        };
        let (tenant, hashes) = self
            .identity
            .invitation_lookup(&body.token)
            .ok_or_else(invalid)?;
        let mut tx = TenantTx::begin(&self.db, tenant, Actor::User(me.user_id)).await?;
        let found: Option<(Uuid, String, Vec<String>)> = sqlx::query_as(
            "SELECT id, email, roles FROM invitations
             WHERE tenant_id = $1 AND hash = ANY($2) AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()
             FOR UPDATE",
        )
        .bind(tenant)
        .bind(&hashes)
        .fetch_optional(tx.conn())
        .await?;
        let Some((id, email, roles)) = found else {
            return Err(invalid());
        };
        let mine: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
            .bind(me.user_id)
            .fetch_one(tx.conn())
            .await?;
        if mine != email {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "invitation_email_mismatch",
                "Not your invitation",
            )
            .with_detail("Sign in with the email address the invitation was sent to."));
        }
        let joined = sqlx::query("INSERT INTO memberships (tenant_id, user_id, roles) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(tenant)
            .bind(me.user_id)
            .bind(&roles)
            .execute(tx.conn())
            .await?
            .rows_affected();
        if joined == 0 {
            return Err(
                Problem::new(StatusCode::CONFLICT, "already_member", "Already a member")
                    .with_detail("You are already a member of this tenant."),
            );
        }
        sqlx::query("UPDATE invitations SET accepted_at = now(), accepted_by = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .bind(me.user_id)
            .execute(tx.conn())
            .await?;
        access::bump_policy(&mut tx).await?;
        tx.record(NewEvent::new("invitation.accepted").resource("invitation", id));
        tx.record(
            NewEvent::new("member.added")
                .resource("member", me.user_id)
                .payload(json!({ "roles": roles })),
        );
        let t = read_tenant(&mut tx, Some(me.user_id)).await?;
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
        let keyset = Keyset::parse(
            &self.cursors,
            "list_members",
            tenant_id.0,
            limit.0,
            cursor.0.as_deref(),
        )?;
        let (at, id) = keyset.after();
        let rows: Vec<MemberRow> = sqlx::query_as(
            "SELECT m.user_id, u.name, u.email, m.roles, m.created_at, m.version
             FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.tenant_id = $1 AND ($2::timestamptz IS NULL OR (m.created_at, m.user_id) > ($2, $3))
             ORDER BY m.created_at, m.user_id LIMIT $4",
        )
        .bind(tenant_id.0)
        .bind(at)
        .bind(id)
        .bind(keyset.fetch_limit())
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(Json(
            keyset
                .page(&self.cursors, rows, |r| (r.4, r.0), member)
                .into(),
        ))
    }
}

async fn member_of(tx: &mut TenantTx, user: kernel::UserId) -> Result<Member, Problem> {
    let row: MemberRow = sqlx::query_as(
        "SELECT m.user_id, u.name, u.email, m.roles, m.created_at, m.version
         FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.tenant_id = $1 AND m.user_id = $2",
    )
    .bind(tx.tenant_id())
    .bind(user)
    .fetch_one(tx.conn())
    .await?;
    Ok(member(row))
}

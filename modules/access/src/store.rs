//! The access layer's SQL, and nothing else: the decision's one statement, the policy's
//! reads, custom roles (`tenant_roles`) and the tenant's `policy_version`.
//!
//! Read-only joins outside this module's tables, each for one reason (docs/ARCHITECTURE.md,
//! "Who owns which table"): the decision reads `user_sessions`, `memberships`, `api_keys`
//! and `tenants` in one statement; deleting a role counts who still holds it in
//! `memberships`, `api_keys` and `invitations`.

use chrono::{DateTime, Utc};
use kernel::{TenantId, UserId};
use sqlx::PgConnection;
use uuid::Uuid;

/// What the decision reads for a member: the session's liveness (only with a token), the
/// membership's roles and the tenant's state. `None` fields: not a member.
pub(crate) struct MemberGrant {
    pub live: bool,
    pub roles: Option<Vec<String>>,
    pub deleted: Option<bool>,
    pub policy_version: Option<i64>,
}

/// One statement: the session is live, and the membership with the tenant's state.
pub(crate) async fn session_membership(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
    session: Uuid,
) -> Result<MemberGrant, sqlx::Error> {
    sqlx::query_as!(
        MemberGrant,
        r#"SELECT s.live AS "live!", m.roles AS "roles?", t.deleted_at IS NOT NULL AS "deleted?",
                  t.policy_version AS "policy_version?"
           FROM (SELECT EXISTS (SELECT FROM user_sessions
                   WHERE id = $3 AND user_id = $2 AND revoked_at IS NULL) AS live) s
           LEFT JOIN memberships m ON m.tenant_id = $1 AND m.user_id = $2
           LEFT JOIN tenants t ON t.id = m.tenant_id"#,
        tenant.as_uuid(),
        user.as_uuid(),
        session,
    )
    .fetch_one(conn)
    .await
}

/// The membership with the tenant's state, for a person acting without a session (the bot,
/// a job acting for someone): the same statement without the session.
pub(crate) async fn membership(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
) -> Result<MemberGrant, sqlx::Error> {
    sqlx::query_as!(
        MemberGrant,
        r#"SELECT true AS "live!", m.roles AS "roles?", t.deleted_at IS NOT NULL AS "deleted?",
                  t.policy_version AS "policy_version?"
           FROM (SELECT 1) one
           LEFT JOIN memberships m ON m.tenant_id = $1 AND m.user_id = $2
           LEFT JOIN tenants t ON t.id = m.tenant_id"#,
        tenant.as_uuid(),
        user.as_uuid(),
    )
    .fetch_one(conn)
    .await
}

/// A live API key of the tenant with one of `hashes`, and the tenant's state.
pub(crate) struct KeyGrant {
    pub id: Uuid,
    pub roles: Vec<String>,
    pub deleted: bool,
    pub policy_version: i64,
}

pub(crate) async fn live_api_key(
    conn: &mut PgConnection,
    tenant: TenantId,
    hashes: &[Vec<u8>],
) -> Result<Option<KeyGrant>, sqlx::Error> {
    sqlx::query_as!(
        KeyGrant,
        r#"SELECT k.id, k.roles, t.deleted_at IS NOT NULL AS "deleted!", t.policy_version
           FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
           WHERE k.tenant_id = $1 AND k.hash = ANY($2) AND k.revoked_at IS NULL
             AND (k.expires_at IS NULL OR k.expires_at > now())"#,
        tenant.as_uuid(),
        hashes,
    )
    .fetch_optional(conn)
    .await
}

/// Records a key's use at most once a minute, never waiting on another request of the same
/// key that holds the row: a busy key does not write on every read.
pub(crate) async fn touch_api_key(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE api_keys SET last_used_at = now() WHERE (tenant_id, id) IN (
           SELECT tenant_id, id FROM api_keys WHERE tenant_id = $1 AND id = $2
             AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
           FOR UPDATE SKIP LOCKED)",
        tenant.as_uuid(),
        id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A member's roles (no row: not a member).
pub(crate) async fn member_roles(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
) -> Result<Option<Vec<String>>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT roles FROM memberships WHERE tenant_id = $1 AND user_id = $2",
        tenant.as_uuid(),
        user.as_uuid(),
    )
    .fetch_optional(conn)
    .await
}

/// An API key's roles.
pub(crate) async fn api_key_roles(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Vec<String>>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT roles FROM api_keys WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
    )
    .fetch_optional(conn)
    .await
}

/// A custom role's grants.
pub(crate) struct RoleGrant {
    pub name: String,
    pub permissions: Vec<String>,
}

/// The custom roles among `names`. With `lock` (roles being granted) they are locked
/// `FOR SHARE`, so a concurrent delete of the role waits for the grant.
pub(crate) async fn roles_named(
    conn: &mut PgConnection,
    tenant: TenantId,
    names: &[String],
    lock: bool,
) -> Result<Vec<RoleGrant>, sqlx::Error> {
    if lock {
        sqlx::query_as!(
            RoleGrant,
            "SELECT name, permissions FROM tenant_roles WHERE tenant_id = $1 AND name = ANY($2)
             ORDER BY name FOR SHARE",
            tenant.as_uuid(),
            names,
        )
        .fetch_all(conn)
        .await
    } else {
        sqlx::query_as!(
            RoleGrant,
            "SELECT name, permissions FROM tenant_roles WHERE tenant_id = $1 AND name = ANY($2)",
            tenant.as_uuid(),
            names,
        )
        .fetch_all(conn)
        .await
    }
}

/// One row of a tenant's policy: its version, and one custom role (if it has any).
pub(crate) struct PolicyRow {
    pub policy_version: i64,
    pub name: Option<String>,
    pub permissions: Option<Vec<String>>,
}

/// A tenant's custom roles and version, in one statement.
pub(crate) async fn tenant_policy(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<PolicyRow>, sqlx::Error> {
    sqlx::query_as!(
        PolicyRow,
        r#"SELECT t.policy_version, r.name AS "name?", r.permissions AS "permissions?"
           FROM tenants t LEFT JOIN tenant_roles r ON r.tenant_id = t.id
           WHERE t.id = $1"#,
        tenant.as_uuid(),
    )
    .fetch_all(conn)
    .await
}

/// A tenant's current policy version.
pub(crate) struct PolicyVersion {
    pub id: Uuid,
    pub policy_version: i64,
}

/// The current versions of `tenants` (purged ones are absent).
pub(crate) async fn policy_versions(
    conn: &mut PgConnection,
    tenants: &[Uuid],
) -> Result<Vec<PolicyVersion>, sqlx::Error> {
    sqlx::query_as!(
        PolicyVersion,
        "SELECT id, policy_version FROM tenants WHERE id = ANY($1)",
        tenants,
    )
    .fetch_all(conn)
    .await
}

/// Bumps the tenant's `policy_version` (locking its row) and announces it on `channel`
/// (delivered at commit).
pub(crate) async fn bump_policy(
    conn: &mut PgConnection,
    tenant: TenantId,
    channel: &str,
) -> Result<i64, sqlx::Error> {
    let version = sqlx::query_scalar!(
        "UPDATE tenants SET policy_version = policy_version + 1 WHERE id = $1 RETURNING policy_version",
        tenant.as_uuid(),
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        "SELECT pg_notify($1, $2)",
        channel,
        format!("{tenant}:{version}"),
    )
    .execute(conn)
    .await?;
    Ok(version)
}

/// A custom role as stored.
pub(crate) struct RoleRow {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The tenant's custom roles by name.
pub(crate) async fn list_roles(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<RoleRow>, sqlx::Error> {
    sqlx::query_as!(
        RoleRow,
        "SELECT name, description, permissions, version, created_at, updated_at FROM tenant_roles
         WHERE tenant_id = $1 ORDER BY name",
        tenant.as_uuid(),
    )
    .fetch_all(conn)
    .await
}

/// One custom role; with `lock`, locked for update.
pub(crate) async fn role(
    conn: &mut PgConnection,
    tenant: TenantId,
    name: &str,
    lock: bool,
) -> Result<Option<RoleRow>, sqlx::Error> {
    if lock {
        sqlx::query_as!(
            RoleRow,
            "SELECT name, description, permissions, version, created_at, updated_at FROM tenant_roles
             WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
            tenant.as_uuid(),
            name,
        )
        .fetch_optional(conn)
        .await
    } else {
        sqlx::query_as!(
            RoleRow,
            "SELECT name, description, permissions, version, created_at, updated_at FROM tenant_roles
             WHERE tenant_id = $1 AND name = $2",
            tenant.as_uuid(),
            name,
        )
        .fetch_optional(conn)
        .await
    }
}

/// How many custom roles the tenant has.
pub(crate) async fn count_roles(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM tenant_roles WHERE tenant_id = $1"#,
        tenant.as_uuid(),
    )
    .fetch_one(conn)
    .await
}

/// Inserts a custom role; `None` when the name is taken.
pub(crate) async fn insert_role(
    conn: &mut PgConnection,
    tenant: TenantId,
    name: &str,
    description: &str,
    permissions: &[String],
    created_by: Option<Uuid>,
) -> Result<Option<RoleRow>, sqlx::Error> {
    sqlx::query_as!(
        RoleRow,
        "INSERT INTO tenant_roles (tenant_id, name, description, permissions, created_by)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
         RETURNING name, description, permissions, version, created_at, updated_at",
        tenant.as_uuid(),
        name,
        description,
        permissions,
        created_by,
    )
    .fetch_optional(conn)
    .await
}

/// Rewrites a custom role and bumps its version.
pub(crate) async fn update_role(
    conn: &mut PgConnection,
    tenant: TenantId,
    name: &str,
    description: &str,
    permissions: &[String],
) -> Result<RoleRow, sqlx::Error> {
    sqlx::query_as!(
        RoleRow,
        "UPDATE tenant_roles SET description = $3, permissions = $4, version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND name = $2
         RETURNING name, description, permissions, version, created_at, updated_at",
        tenant.as_uuid(),
        name,
        description,
        permissions,
    )
    .fetch_one(conn)
    .await
}

/// Who still holds a role: members, live API keys, pending invitations.
pub(crate) struct Holders {
    pub members: i64,
    pub keys: i64,
    pub invitations: i64,
}

pub(crate) async fn role_holders(
    conn: &mut PgConnection,
    tenant: TenantId,
    name: &str,
) -> Result<Holders, sqlx::Error> {
    sqlx::query_as!(
        Holders,
        r#"SELECT
             (SELECT count(*) FROM memberships WHERE tenant_id = $1 AND $2 = ANY(roles)) AS "members!",
             (SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND $2 = ANY(roles)
                AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())) AS "keys!",
             (SELECT count(*) FROM invitations WHERE tenant_id = $1 AND $2 = ANY(roles)
                AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()) AS "invitations!""#,
        tenant.as_uuid(),
        name,
    )
    .fetch_one(conn)
    .await
}

pub(crate) async fn delete_role(
    conn: &mut PgConnection,
    tenant: TenantId,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM tenant_roles WHERE tenant_id = $1 AND name = $2",
        tenant.as_uuid(),
        name,
    )
    .execute(conn)
    .await?;
    Ok(())
}

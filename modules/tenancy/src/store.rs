//! Tenancy's SQL, and nothing else: `tenants`, `memberships`, `invitations`, `api_keys`.
//!
//! Read-only joins outside this module's tables (docs/ARCHITECTURE.md, "Who owns which
//! table"): `users` for a member's name and email, an inviter's name and the invitee's
//! email check.

use chrono::{DateTime, Utc};
use kernel::{TenantId, UserId};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{ApiKey, Invitation, Member, Tenant};

/// `(created_at, id)` after which a keyset page starts.
pub(crate) type After = (Option<DateTime<Utc>>, Option<Uuid>);

pub(crate) async fn insert_tenant(
    conn: &mut PgConnection,
    id: TenantId,
    name: &str,
    currency: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO tenants (id, name, currency) VALUES ($1, $2, $3)",
        id.as_uuid(),
        name,
        currency
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds a member; `false` when they are one already.
pub(crate) async fn add_member(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
    roles: &[String],
    accounts: Option<&[Uuid]>,
) -> Result<bool, sqlx::Error> {
    let added = sqlx::query!(
        "INSERT INTO memberships (tenant_id, user_id, roles, account_ids) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
        tenant.as_uuid(),
        user.as_uuid(),
        roles,
        accounts,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(added == 1)
}

/// A tenant, with `user`'s roles in it (none for another actor).
pub(crate) async fn tenant(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: Option<UserId>,
) -> Result<Tenant, sqlx::Error> {
    sqlx::query_as!(
        Tenant,
        r#"SELECT t.id AS "id: TenantId", t.name, t.plan, t.currency, t.time_zone, coalesce(m.roles, '{}') AS "roles!",
                  t.created_at, t.deleted_at, t.version
           FROM tenants t LEFT JOIN memberships m ON m.tenant_id = t.id AND m.user_id = $2
           WHERE t.id = $1"#,
        tenant.as_uuid(),
        user.map(|u| u.as_uuid()),
    )
    .fetch_one(conn)
    .await
}

/// The user's tenants, newest first (the user policy on memberships: their rows across
/// tenants, while no tenant is set).
pub(crate) async fn tenants_of(
    conn: &mut PgConnection,
    user: UserId,
    (at, id): After,
    limit: i64,
) -> Result<Vec<Tenant>, sqlx::Error> {
    sqlx::query_as!(
        Tenant,
        r#"SELECT t.id AS "id: TenantId", t.name, t.plan, t.currency, t.time_zone, m.roles, t.created_at, t.deleted_at, t.version
           FROM memberships m JOIN tenants t ON t.id = m.tenant_id
           WHERE m.user_id = $1 AND ($2::timestamptz IS NULL OR (t.created_at, t.id) < ($2, $3))
           ORDER BY t.created_at DESC, t.id DESC LIMIT $4"#,
        user.as_uuid(),
        at,
        id,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// A tenant's version and name, locked for a change.
pub(crate) struct TenantVersion {
    pub version: i64,
    pub name: String,
    pub currency: String,
    pub time_zone: String,
}

pub(crate) async fn lock_tenant(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<TenantVersion, sqlx::Error> {
    sqlx::query_as!(
        TenantVersion,
        "SELECT version, name, currency, time_zone FROM tenants WHERE id = $1 FOR UPDATE",
        tenant.as_uuid(),
    )
    .fetch_one(conn)
    .await
}

pub(crate) async fn update_tenant(
    conn: &mut PgConnection,
    tenant: TenantId,
    name: &str,
    currency: &str,
    time_zone: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE tenants SET name = $2, currency = $3, time_zone = $4, version = version + 1,
             updated_at = now()
         WHERE id = $1",
        tenant.as_uuid(),
        name,
        currency,
        time_zone,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn set_plan(
    conn: &mut PgConnection,
    tenant: TenantId,
    plan: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE tenants SET plan = $2, version = version + 1, updated_at = now()
         WHERE id = $1 AND plan <> $2",
        tenant.as_uuid(),
        plan,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn mark_tenant_deleted(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE tenants SET deleted_at = now(), updated_at = now() WHERE id = $1",
        tenant.as_uuid(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A membership's roles and version.
pub(crate) struct MembershipRow {
    pub roles: Vec<String>,
    pub account_ids: Option<Vec<Uuid>>,
    pub version: i64,
}

/// Locks a membership for a change.
pub(crate) async fn lock_membership(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
) -> Result<Option<MembershipRow>, sqlx::Error> {
    sqlx::query_as!(
        MembershipRow,
        "SELECT roles, account_ids, version FROM memberships WHERE tenant_id = $1 AND user_id = $2 FOR UPDATE",
        tenant.as_uuid(),
        user.as_uuid(),
    )
    .fetch_optional(conn)
    .await
}

/// Locks the owners' memberships (in id order, so two callers never deadlock) and returns
/// who they are.
pub(crate) async fn lock_owners(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT user_id FROM memberships WHERE tenant_id = $1 AND 'owner' = ANY(roles)
         ORDER BY user_id FOR UPDATE",
        tenant.as_uuid(),
    )
    .fetch_all(conn)
    .await
}

pub(crate) async fn set_member_roles(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
    roles: &[String],
    accounts: Option<&[Uuid]>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE memberships SET roles = $3, account_ids = $4, version = version + 1
         WHERE tenant_id = $1 AND user_id = $2",
        tenant.as_uuid(),
        user.as_uuid(),
        roles,
        accounts,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn remove_member(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2",
        tenant.as_uuid(),
        user.as_uuid(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// One member, with their name and email.
pub(crate) async fn member(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
) -> Result<Option<Member>, sqlx::Error> {
    sqlx::query_as!(
        Member,
        r#"SELECT m.user_id AS "user_id: UserId", u.name, u.email, m.roles, m.account_ids,
                  m.created_at AS joined_at, m.version
           FROM memberships m JOIN users u ON u.id = m.user_id
           WHERE m.tenant_id = $1 AND m.user_id = $2"#,
        tenant.as_uuid(),
        user.as_uuid(),
    )
    .fetch_optional(conn)
    .await
}

/// The members in the order they joined.
pub(crate) async fn members(
    conn: &mut PgConnection,
    tenant: TenantId,
    (at, id): After,
    limit: i64,
) -> Result<Vec<Member>, sqlx::Error> {
    sqlx::query_as!(
        Member,
        r#"SELECT m.user_id AS "user_id: UserId", u.name, u.email, m.roles, m.account_ids,
                  m.created_at AS joined_at, m.version
           FROM memberships m JOIN users u ON u.id = m.user_id
           WHERE m.tenant_id = $1 AND ($2::timestamptz IS NULL OR (m.created_at, m.user_id) > ($2, $3))
           ORDER BY m.created_at, m.user_id LIMIT $4"#,
        tenant.as_uuid(),
        at,
        id,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// An API key to store: its hash under a pepper, never the secret.
pub(crate) struct NewKeyRow<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub roles: &'a [String],
    pub pepper_id: &'a str,
    pub hash: &'a [u8],
    pub prefix: &'a str,
    pub created_by: Option<UserId>,
    pub expires_at: Option<DateTime<Utc>>,
    pub account_ids: Option<&'a [Uuid]>,
}

/// Inserts an API key; returns when it was created.
pub(crate) async fn insert_api_key(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: NewKeyRow<'_>,
) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO api_keys (tenant_id, id, name, roles, pepper_id, hash, prefix, created_by, expires_at, account_ids)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING created_at",
        tenant.as_uuid(),
        key.id,
        key.name,
        key.roles,
        key.pepper_id,
        key.hash,
        key.prefix,
        key.created_by.map(|u| u.as_uuid()),
        key.expires_at,
        key.account_ids,
    )
    .fetch_one(conn)
    .await
}

/// The tenant's API keys, newest first.
pub(crate) async fn api_keys(
    conn: &mut PgConnection,
    tenant: TenantId,
    (at, id): After,
    limit: i64,
) -> Result<Vec<ApiKey>, sqlx::Error> {
    sqlx::query_as!(
        ApiKey,
        "SELECT id, name, roles, account_ids, prefix, expires_at, created_at, last_used_at, revoked_at FROM api_keys
         WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4",
        tenant.as_uuid(),
        at,
        id,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// Revokes a live API key; `false` when there is none.
pub(crate) async fn revoke_api_key(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query!(
        "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
        tenant.as_uuid(),
        id,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(revoked == 1)
}

/// A live API key or a pending invitation someone created, with the roles it grants.
pub(crate) struct Grant {
    pub id: Uuid,
    pub roles: Vec<String>,
}

/// What a member can have granted to others: API keys they minted, invitations they sent.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Granted {
    ApiKey,
    Invitation,
}

impl Granted {
    /// The audit log's resource type.
    pub fn resource(self) -> &'static str {
        match self {
            Granted::ApiKey => "api_key",
            Granted::Invitation => "invitation",
        }
    }

    /// Locks the live ones `user` created.
    pub async fn lock_created_by(
        self,
        conn: &mut PgConnection,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Vec<Grant>, sqlx::Error> {
        match self {
            Granted::ApiKey => lock_keys_created_by(conn, tenant, user).await,
            Granted::Invitation => lock_invitations_sent_by(conn, tenant, user).await,
        }
    }

    pub async fn revoke(
        self,
        conn: &mut PgConnection,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<bool, sqlx::Error> {
        match self {
            Granted::ApiKey => revoke_api_key(conn, tenant, id).await,
            Granted::Invitation => revoke_invitation(conn, tenant, id).await,
        }
    }

    pub async fn set_roles(
        self,
        conn: &mut PgConnection,
        tenant: TenantId,
        id: Uuid,
        roles: &[String],
    ) -> Result<(), sqlx::Error> {
        match self {
            Granted::ApiKey => set_api_key_roles(conn, tenant, id, roles).await,
            Granted::Invitation => set_invitation_roles(conn, tenant, id, roles).await,
        }
    }
}

/// Locks the live API keys `user` minted.
async fn lock_keys_created_by(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
) -> Result<Vec<Grant>, sqlx::Error> {
    sqlx::query_as!(
        Grant,
        "SELECT id, roles FROM api_keys
         WHERE tenant_id = $1 AND created_by = $2 AND revoked_at IS NULL
           AND (expires_at IS NULL OR expires_at > now())
         ORDER BY id
         FOR UPDATE",
        tenant.as_uuid(),
        user.as_uuid(),
    )
    .fetch_all(conn)
    .await
}

async fn set_api_key_roles(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    roles: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE api_keys SET roles = $3 WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
        roles,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks the pending, unexpired invitations `user` sent.
async fn lock_invitations_sent_by(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
) -> Result<Vec<Grant>, sqlx::Error> {
    sqlx::query_as!(
        Grant,
        "SELECT id, roles FROM invitations
         WHERE tenant_id = $1 AND invited_by = $2 AND accepted_at IS NULL AND revoked_at IS NULL
           AND expires_at > now()
         ORDER BY id
         FOR UPDATE",
        tenant.as_uuid(),
        user.as_uuid(),
    )
    .fetch_all(conn)
    .await
}

async fn set_invitation_roles(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    roles: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE invitations SET roles = $3 WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
        roles,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Invitations sent in the last `tenant_secs` in the tenant, and in the last `user_secs` by
/// `inviter`, each with the seconds until its oldest leaves the window.
pub(crate) struct RecentInvitations {
    pub tenant: i64,
    pub tenant_free_in: Option<f64>,
    pub inviter: i64,
    pub inviter_free_in: Option<f64>,
}

pub(crate) async fn recent_invitations(
    conn: &mut PgConnection,
    tenant: TenantId,
    inviter: Option<UserId>,
    tenant_secs: f64,
    user_secs: f64,
) -> Result<RecentInvitations, sqlx::Error> {
    sqlx::query_as!(
        RecentInvitations,
        r#"SELECT
             count(*) FILTER (WHERE created_at > now() - make_interval(secs => $3)) AS "tenant!",
             extract(epoch FROM min(created_at) FILTER (WHERE created_at > now() - make_interval(secs => $3))
               + make_interval(secs => $3) - now())::float8 AS tenant_free_in,
             count(*) FILTER (WHERE invited_by = $2 AND created_at > now() - make_interval(secs => $4)) AS "inviter!",
             extract(epoch FROM min(created_at) FILTER (WHERE invited_by = $2 AND created_at > now() - make_interval(secs => $4))
               + make_interval(secs => $4) - now())::float8 AS inviter_free_in
           FROM invitations
           WHERE tenant_id = $1 AND created_at > now() - make_interval(secs => greatest($3, $4))"#,
        tenant.as_uuid(),
        inviter.map(|u| u.as_uuid()),
        tenant_secs,
        user_secs,
    )
    .fetch_one(conn)
    .await
}

/// An invitation to store: its token's hash, never the token.
pub(crate) struct NewInvitationRow<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub roles: &'a [String],
    pub pepper_id: &'a str,
    pub hash: &'a [u8],
    pub invited_by: Option<UserId>,
    pub account_ids: Option<&'a [Uuid]>,
}

/// Inserts an invitation that expires in 7 days.
pub(crate) async fn insert_invitation(
    conn: &mut PgConnection,
    tenant: TenantId,
    new: NewInvitationRow<'_>,
) -> Result<Invitation, sqlx::Error> {
    sqlx::query_as!(
        Invitation,
        "INSERT INTO invitations (tenant_id, id, email, roles, pepper_id, hash, invited_by, expires_at, account_ids)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now() + interval '7 days', $8)
         RETURNING id, email, roles, account_ids, created_at, expires_at, accepted_at, revoked_at",
        tenant.as_uuid(),
        new.id,
        new.email,
        new.roles,
        new.pepper_id,
        new.hash,
        new.invited_by.map(|u| u.as_uuid()),
        new.account_ids,
    )
    .fetch_one(conn)
    .await
}

/// What an invitation mail names: the tenant, and the inviter (if a person).
pub(crate) struct InvitationNames {
    pub tenant: String,
    pub inviter: Option<String>,
}

pub(crate) async fn invitation_names(
    conn: &mut PgConnection,
    tenant: TenantId,
    inviter: Option<UserId>,
) -> Result<InvitationNames, sqlx::Error> {
    sqlx::query_as!(
        InvitationNames,
        r#"SELECT t.name AS tenant, (SELECT name FROM users WHERE id = $2) AS inviter
           FROM tenants t WHERE t.id = $1"#,
        tenant.as_uuid(),
        inviter.map(|u| u.as_uuid()),
    )
    .fetch_one(conn)
    .await
}

/// The tenant's invitations, newest first.
pub(crate) async fn invitations(
    conn: &mut PgConnection,
    tenant: TenantId,
    (at, id): After,
    limit: i64,
) -> Result<Vec<Invitation>, sqlx::Error> {
    sqlx::query_as!(
        Invitation,
        "SELECT id, email, roles, account_ids, created_at, expires_at, accepted_at, revoked_at FROM invitations
         WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4",
        tenant.as_uuid(),
        at,
        id,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// Revokes a pending invitation; `false` when there is none.
pub(crate) async fn revoke_invitation(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query!(
        "UPDATE invitations SET revoked_at = now()
         WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL AND accepted_at IS NULL",
        tenant.as_uuid(),
        id,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(revoked == 1)
}

/// A pending invitation found by its token, with who sent it and their roles now
/// (`None`: no longer a member).
pub(crate) struct PendingInvitation {
    pub id: Uuid,
    pub email: String,
    pub roles: Vec<String>,
    pub invited_by: Option<Uuid>,
    pub inviter_roles: Option<Vec<String>>,
    pub account_ids: Option<Vec<Uuid>>,
    pub inviter_account_ids: Option<Vec<Uuid>>,
}

/// Locks the pending, unexpired invitation with one of `hashes`.
pub(crate) async fn lock_pending_invitation(
    conn: &mut PgConnection,
    tenant: TenantId,
    hashes: &[Vec<u8>],
) -> Result<Option<PendingInvitation>, sqlx::Error> {
    sqlx::query_as!(
        PendingInvitation,
        r#"SELECT i.id, i.email, i.roles, i.invited_by, m.roles AS "inviter_roles?",
                  i.account_ids, m.account_ids AS "inviter_account_ids?"
         FROM invitations i
         LEFT JOIN memberships m ON m.tenant_id = i.tenant_id AND m.user_id = i.invited_by
         WHERE i.tenant_id = $1 AND i.hash = ANY($2) AND i.accepted_at IS NULL
           AND i.revoked_at IS NULL AND i.expires_at > now()
         FOR UPDATE OF i"#,
        tenant.as_uuid(),
        hashes,
    )
    .fetch_optional(conn)
    .await
}

pub(crate) async fn mark_invitation_accepted(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    user: UserId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE invitations SET accepted_at = now(), accepted_by = $3 WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
        user.as_uuid(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A user's email address (read-only: identity owns `users`).
/// A user's address, and whether they confirmed it.
pub(crate) struct UserEmail {
    pub email: String,
    pub verified: bool,
}

pub(crate) async fn user_email(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<UserEmail, sqlx::Error> {
    sqlx::query_as!(
        UserEmail,
        r#"SELECT email, email_verified_at IS NOT NULL AS "verified!" FROM users WHERE id = $1"#,
        user.as_uuid()
    )
    .fetch_one(conn)
    .await
}

/// An API key's sealed secret inside a stored `Idempotency-Key` replay.
pub struct SealedReplay {
    pub key: String,
    pub api_key_id: Option<String>,
    pub sealed_secret: Option<String>,
}

/// Up to `limit` of the tenant's stored API-key replays after `after` (in key order) whose
/// secret is sealed under a key other than `key_id`.
pub async fn replays_not_under(
    conn: &mut PgConnection,
    tenant: TenantId,
    key_id: &[u8],
    after: &str,
    limit: i64,
) -> Result<Vec<SealedReplay>, sqlx::Error> {
    sqlx::query_as!(
        SealedReplay,
        r#"SELECT key, body->>'id' AS api_key_id, body->>'sealed_secret' AS sealed_secret
             FROM idempotency_keys
            WHERE tenant_id = $1 AND key > $2 AND body ? 'sealed_secret'
              AND substring(decode(body->>'sealed_secret', 'base64') from 3
                            for get_byte(decode(body->>'sealed_secret', 'base64'), 1)) <> $3
            ORDER BY key LIMIT $4"#,
        tenant.as_uuid(),
        after,
        key_id,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// Replaces a replay's sealed secret if it is still `old`; whether it was.
pub async fn reseal_replay(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: &str,
    old: &str,
    new: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE idempotency_keys SET body = jsonb_set(body, '{sealed_secret}', to_jsonb($4::text))
          WHERE tenant_id = $1 AND key = $2 AND body->>'sealed_secret' = $3",
        tenant.as_uuid(),
        key,
        old,
        new,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The tenant's API-key replays sealed under `key_id` (`under`) or under any other key.
pub async fn count_replays(
    conn: &mut PgConnection,
    tenant: TenantId,
    key_id: &[u8],
    under: bool,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM idempotency_keys
            WHERE tenant_id = $1 AND body ? 'sealed_secret'
              AND (substring(decode(body->>'sealed_secret', 'base64') from 3
                             for get_byte(decode(body->>'sealed_secret', 'base64'), 1)) = $2) = $3"#,
        tenant.as_uuid(),
        key_id,
        under,
    )
    .fetch_one(conn)
    .await
}

/// Whether PostgreSQL knows `zone` as an IANA time zone name.
pub(crate) async fn is_time_zone(conn: &mut PgConnection, zone: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1) AS "known!""#,
        zone
    )
    .fetch_one(conn)
    .await
}

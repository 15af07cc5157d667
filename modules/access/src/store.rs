//! The access layer's SQL, and nothing else: the decision's one statement, the policy's
//! reads, custom roles (`tenant_roles`) and the tenant's `policy_version`.
//!
//! Read-only joins outside this module's tables, each for one reason (docs/ARCHITECTURE.md,
//! "Who owns which table"): the decision reads `user_sessions`, `memberships`, `api_keys`
//! and `tenants` in one statement, with the tenant's read-only flag from billing's
//! `billing_accounts`; deleting a role counts who still holds it in
//! `memberships`, `api_keys` and `invitations`.

use chrono::{DateTime, Utc};
use kernel::{FirstRead, Literal, Statement, TenantId, UserId};
use sqlx::{PgConnection, Row, postgres::PgRow};
use uuid::Uuid;

/// What the decision reads for a member: the session's liveness (only with a token), the
/// membership's roles and the tenant's state. `None` fields: not a member.
#[derive(Debug, PartialEq)]
pub(crate) struct MemberGrant {
    pub live: bool,
    pub roles: Option<Vec<String>>,
    pub deleted: Option<bool>,
    pub policy_version: Option<i64>,
    /// The accounts the member may see; `None`: every account.
    pub account_ids: Option<Vec<Uuid>>,
    /// The tenant is read-only (its payment overdue past the grace).
    pub read_only: bool,
}

// The decision's statements ride in the round trip of `BEGIN` (kernel::FirstRead), where
// sqlx's macros cannot go; this module's tests run the same files through the macros too,
// so the schema checks the very same text at compile time.
static SESSION_MEMBERSHIP: Statement = Statement::new(include_str!("sql/session_membership.sql"));
static MEMBERSHIP: Statement = Statement::new(include_str!("sql/membership.sql"));
static LIVE_API_KEY: Statement = Statement::new(include_str!("sql/live_api_key.sql"));

/// One statement: the session is live, and the membership with the tenant's state.
pub(crate) fn session_membership(tenant: TenantId, user: UserId, session: Uuid) -> FirstRead {
    FirstRead::new(
        &SESSION_MEMBERSHIP,
        &[
            Literal::Uuid(tenant.as_uuid()),
            Literal::Uuid(user.as_uuid()),
            Literal::Uuid(session),
        ],
    )
}

/// The membership with the tenant's state, for a person acting without a session (the bot,
/// a job acting for someone): the same statement without the session.
pub(crate) fn membership(tenant: TenantId, user: UserId) -> FirstRead {
    FirstRead::new(
        &MEMBERSHIP,
        &[
            Literal::Uuid(tenant.as_uuid()),
            Literal::Uuid(user.as_uuid()),
        ],
    )
}

/// The one row of [`session_membership`] or [`membership`].
pub(crate) fn member_grant(rows: &[PgRow]) -> Result<MemberGrant, sqlx::Error> {
    let row = rows.first().ok_or(sqlx::Error::RowNotFound)?;
    Ok(MemberGrant {
        live: row.try_get(0)?,
        roles: row.try_get(1)?,
        deleted: row.try_get(2)?,
        policy_version: row.try_get(3)?,
        account_ids: row.try_get(4)?,
        read_only: row.try_get(5)?,
    })
}

/// A live API key of the tenant with one of `hashes`, and the tenant's state.
#[derive(Debug, PartialEq)]
pub(crate) struct KeyGrant {
    pub id: Uuid,
    pub roles: Vec<String>,
    pub deleted: bool,
    pub policy_version: i64,
    /// Who minted the key, and their roles now (`None`: no longer a member).
    pub created_by: Option<Uuid>,
    pub creator_roles: Option<Vec<String>>,
    /// The key's accounts, and its creator's (`None`: every account).
    pub account_ids: Option<Vec<Uuid>>,
    pub creator_account_ids: Option<Vec<Uuid>>,
    pub read_only: bool,
}

pub(crate) fn live_api_key(tenant: TenantId, hashes: &[Vec<u8>]) -> FirstRead {
    FirstRead::new(
        &LIVE_API_KEY,
        &[Literal::Uuid(tenant.as_uuid()), Literal::ByteaArray(hashes)],
    )
}

/// The row of [`live_api_key`], if a key matched.
pub(crate) fn key_grant(rows: &[PgRow]) -> Result<Option<KeyGrant>, sqlx::Error> {
    rows.first()
        .map(|row| {
            Ok(KeyGrant {
                id: row.try_get(0)?,
                roles: row.try_get(1)?,
                deleted: row.try_get(2)?,
                policy_version: row.try_get(3)?,
                created_by: row.try_get(4)?,
                creator_roles: row.try_get(5)?,
                account_ids: row.try_get(6)?,
                creator_account_ids: row.try_get(7)?,
                read_only: row.try_get(8)?,
            })
        })
        .transpose()
}

/// How many of `ids` are accounts the transaction can see (the ledger's table, read here
/// only to check a grant: docs/ARCHITECTURE.md, "Who owns which table").
pub(crate) async fn visible_accounts(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM accounts WHERE tenant_id = $1 AND id = ANY($2)"#,
        tenant.as_uuid(),
        ids,
    )
    .fetch_one(conn)
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

#[cfg(test)]
mod tests {
    //! The decision's statements as they ride in `BEGIN`'s round trip (inlined, text rows)
    //! against the same files run prepared by sqlx's macros (checked against the schema at
    //! compile time): every case answers the same.

    use kernel::{Actor, Db, SystemTx, TenantTx};
    use testkit::seed;

    use super::*;

    /// Arranges rows (plain SQL: set-up only), in `tenant`'s rows or on global tables.
    async fn exec(db: &Db, tenant: Option<TenantId>, sql: &str, binds: &[Uuid]) {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            query = query.bind(*b);
        }
        match tenant {
            Some(t) => {
                let mut tx = TenantTx::begin(db, t, Actor::System).await.unwrap();
                query.execute(tx.conn()).await.unwrap();
                tx.commit().await.unwrap();
            }
            None => {
                let mut tx = SystemTx::begin(db, Actor::System).await.unwrap();
                query.execute(tx.conn()).await.unwrap();
                tx.commit().await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn inlined_and_prepared_decisions_agree() {
        let test = testkit::db::TestDb::with_migrations().await.unwrap();
        let db = test.kernel_db([]).await.unwrap();
        let (live, deleted) = (
            seed::tenant(&db, "Live").await,
            seed::tenant(&db, "Deleted").await,
        );
        let (member, outsider) = (seed::user(&db).await, seed::user(&db).await);
        seed::member(&db, live, member, &["owner", "custom"]).await;
        seed::member(&db, deleted, member, &["viewer"]).await;
        exec(
            &db,
            None,
            "UPDATE tenants SET deleted_at = now() WHERE id = $1",
            &[deleted.as_uuid()],
        )
        .await;
        let (session, revoked, foreign) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        for (id, user, sql) in [
            (
                session,
                member,
                "INSERT INTO user_sessions (id, user_id) VALUES ($1, $2)",
            ),
            (
                revoked,
                member,
                "INSERT INTO user_sessions (id, user_id, revoked_at) VALUES ($1, $2, now())",
            ),
            (
                foreign,
                outsider,
                "INSERT INTO user_sessions (id, user_id) VALUES ($1, $2)",
            ),
        ] {
            exec(&db, None, sql, &[id, user.as_uuid()]).await;
        }
        let (key, old_key) = (Uuid::now_v7(), Uuid::now_v7());
        for (id, hash, extra) in [(key, [1u8; 32], "NULL"), (old_key, [2u8; 32], "now()")] {
            let sql = format!(
                "INSERT INTO api_keys (tenant_id, id, name, roles, pepper_id, hash, prefix, revoked_at)
                 VALUES ($1, $2, 'k', '{{viewer}}', 'p1', decode('{}', 'hex'), 'bal_', {extra})",
                kernel::hex::encode(&hash)
            );
            exec(&db, Some(live), &sql, &[live.as_uuid(), id]).await;
        }

        let mut n = 0;
        for tenant in [live, deleted, TenantId::new()] {
            for user in [member, outsider] {
                for s in [session, revoked, foreign, Uuid::now_v7()] {
                    let (mut tx, rows) = TenantTx::begin_reading(
                        &db,
                        tenant,
                        Actor::User(user),
                        Some(session_membership(tenant, user, s)),
                    )
                    .await
                    .unwrap();
                    let inlined = member_grant(&rows).unwrap();
                    let prepared = sqlx::query_file_as!(
                        MemberGrant,
                        "src/sql/session_membership.sql",
                        tenant.as_uuid(),
                        user.as_uuid(),
                        s
                    )
                    .fetch_one(tx.conn())
                    .await
                    .unwrap();
                    assert_eq!(inlined, prepared, "{tenant} {user} {s}");
                    n += 1;
                }
                let (mut tx, rows) = TenantTx::begin_reading(
                    &db,
                    tenant,
                    Actor::User(user),
                    Some(membership(tenant, user)),
                )
                .await
                .unwrap();
                let prepared = sqlx::query_file_as!(
                    MemberGrant,
                    "src/sql/membership.sql",
                    tenant.as_uuid(),
                    user.as_uuid()
                )
                .fetch_one(tx.conn())
                .await
                .unwrap();
                assert_eq!(member_grant(&rows).unwrap(), prepared);
            }
            let hash_sets: [Vec<Vec<u8>>; 4] = [
                vec![vec![1; 32]],
                vec![vec![9; 32], vec![1; 32]],
                vec![vec![2; 32]],
                vec![],
            ];
            for hashes in hash_sets {
                let (mut tx, rows) = TenantTx::begin_reading(
                    &db,
                    tenant,
                    Actor::System,
                    Some(live_api_key(tenant, &hashes)),
                )
                .await
                .unwrap();
                let prepared = sqlx::query_file_as!(
                    KeyGrant,
                    "src/sql/live_api_key.sql",
                    tenant.as_uuid(),
                    &hashes
                )
                .fetch_optional(tx.conn())
                .await
                .unwrap();
                assert_eq!(key_grant(&rows).unwrap(), prepared, "{tenant} {hashes:?}");
            }
        }
        assert_eq!(n, 24);
        // The cases differ: a live member, a revoked session, an outsider, a deleted tenant.
        let (_, rows) = TenantTx::begin_reading(
            &db,
            live,
            Actor::User(member),
            Some(session_membership(live, member, session)),
        )
        .await
        .unwrap();
        let grant = member_grant(&rows).unwrap();
        assert!(
            grant.live
                && grant.roles == Some(vec!["owner".into(), "custom".into()])
                && grant.deleted == Some(false)
        );
        let (_, rows) = TenantTx::begin_reading(
            &db,
            deleted,
            Actor::User(member),
            Some(session_membership(deleted, member, revoked)),
        )
        .await
        .unwrap();
        let grant = member_grant(&rows).unwrap();
        assert!(!grant.live && grant.deleted == Some(true));
        let (_, rows) = TenantTx::begin_reading(
            &db,
            live,
            Actor::System,
            Some(live_api_key(live, &[vec![1; 32]])),
        )
        .await
        .unwrap();
        assert_eq!(key_grant(&rows).unwrap().map(|k| k.id), Some(key));
    }
}

//! Identity's SQL, and nothing else: `users`, `user_sessions`, `refresh_tokens`,
//! `one_time_tokens`, `user_totp`, `totp_recovery_codes`, `auth_throttles`.
//!
//! Read-only joins outside this module's tables (docs/ARCHITECTURE.md, "Who owns which
//! table"): `GET /me` lists the user's tenants from `memberships` and `tenants` under the
//! user policy, in the same transaction as the profile.

use chrono::{DateTime, Utc};
use kernel::{FirstRead, Literal, Statement, TenantId, UserId};
use sqlx::{PgConnection, Row, postgres::PgRow};
use uuid::Uuid;

// Rides in the round trip of `BEGIN` (kernel::FirstRead), where sqlx's macros cannot go;
// this module's tests run the same file through the macros, so the schema checks it.
static SESSION_LIVE: Statement = Statement::new(include_str!("sql/session_live.sql"));

/// Whether the user's session is live (`None`: no such session of theirs).
pub(crate) fn session_live(session: Uuid, user: UserId) -> FirstRead {
    FirstRead::new(
        &SESSION_LIVE,
        &[Literal::Uuid(session), Literal::Uuid(user.as_uuid())],
    )
}

/// The row of [`session_live`]: `Some(live)`, or `None` for no such session of the user.
pub(crate) fn live_of(rows: &[PgRow]) -> Result<Option<bool>, sqlx::Error> {
    rows.first().map(|row| row.try_get(0)).transpose()
}

/// A new account.
pub(crate) struct NewUser<'a> {
    pub id: UserId,
    pub email: &'a str,
    pub name: &'a str,
    pub time_zone: &'a str,
    pub password_hash: &'a str,
}

/// Inserts an account; `None` when the email is taken.
pub(crate) async fn insert_user(
    conn: &mut PgConnection,
    user: NewUser<'_>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO users (id, email, name, time_zone, password_hash, password_changed_at)
         VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (email) DO NOTHING RETURNING created_at",
        user.id.as_uuid(),
        user.email,
        user.name,
        user.time_zone,
        user.password_hash,
    )
    .fetch_optional(conn)
    .await
}

/// A single-use token to store: its hash under a pepper.
pub(crate) struct NewToken<'a> {
    pub id: Uuid,
    pub purpose: &'a str,
    pub user: UserId,
    pub pepper_id: &'a str,
    pub hash: &'a [u8],
    pub ttl_secs: f64,
}

pub(crate) async fn insert_one_time_token(
    conn: &mut PgConnection,
    token: NewToken<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO one_time_tokens (id, purpose, user_id, pepper_id, hash, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
        token.id,
        token.purpose,
        token.user.as_uuid(),
        token.pepper_id,
        token.hash,
        token.ttl_secs,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A live single-use token's owner and hash.
pub(crate) struct TokenRow {
    pub user_id: Uuid,
    pub pepper_id: String,
    pub hash: Vec<u8>,
}

/// Locks the unused, unexpired token `id` of `purpose`.
pub(crate) async fn lock_one_time_token(
    conn: &mut PgConnection,
    id: Uuid,
    purpose: &str,
) -> Result<Option<TokenRow>, sqlx::Error> {
    sqlx::query_as!(
        TokenRow,
        "SELECT user_id, pepper_id, hash FROM one_time_tokens
         WHERE id = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now() FOR UPDATE",
        id,
        purpose,
    )
    .fetch_optional(conn)
    .await
}

pub(crate) async fn spend_one_time_token(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE one_time_tokens SET used_at = now() WHERE id = $1",
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Spends every unused password-reset token of the user (after a reset).
pub(crate) async fn spend_reset_tokens(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE one_time_tokens SET used_at = now()
         WHERE user_id = $1 AND purpose = 'password_reset' AND used_at IS NULL",
        user.as_uuid(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn mark_email_verified(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET email_verified_at = coalesce(email_verified_at, now()), updated_at = now()
         WHERE id = $1",
        user.as_uuid(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// An account found by email, for login.
pub(crate) struct Credentials {
    pub id: UserId,
    pub password_hash: Option<String>,
}

pub(crate) async fn credentials_by_email(
    conn: &mut PgConnection,
    email: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as!(
        Credentials,
        r#"SELECT id AS "id: UserId", password_hash FROM users WHERE email = $1"#,
        email,
    )
    .fetch_optional(conn)
    .await
}

/// The email and password hash of a user (a password re-check).
pub(crate) struct EmailAndHash {
    pub email: String,
    pub password_hash: Option<String>,
}

pub(crate) async fn email_and_hash(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<EmailAndHash, sqlx::Error> {
    sqlx::query_as!(
        EmailAndHash,
        "SELECT email, password_hash FROM users WHERE id = $1",
        user.as_uuid(),
    )
    .fetch_one(conn)
    .await
}

/// Who to write to: a user's email and name.
pub(crate) struct Addressee {
    pub id: UserId,
    pub email: String,
    pub name: String,
}

pub(crate) async fn addressee(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<Option<Addressee>, sqlx::Error> {
    sqlx::query_as!(
        Addressee,
        r#"SELECT id AS "id: UserId", email, name FROM users WHERE id = $1"#,
        user.as_uuid(),
    )
    .fetch_optional(conn)
    .await
}

pub(crate) async fn addressee_by_email(
    conn: &mut PgConnection,
    email: &str,
) -> Result<Option<Addressee>, sqlx::Error> {
    sqlx::query_as!(
        Addressee,
        r#"SELECT id AS "id: UserId", email, name FROM users WHERE email = $1"#,
        email,
    )
    .fetch_optional(conn)
    .await
}

pub(crate) async fn set_password_hash(
    conn: &mut PgConnection,
    user: UserId,
    hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET password_hash = $2 WHERE id = $1",
        user.as_uuid(),
        hash
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A new password chosen by the user (a reset): the hash and when it changed.
pub(crate) async fn change_password(
    conn: &mut PgConnection,
    user: UserId,
    hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET password_hash = $2, password_changed_at = now(), updated_at = now()
         WHERE id = $1",
        user.as_uuid(),
        hash,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn insert_session(
    conn: &mut PgConnection,
    id: Uuid,
    user: UserId,
    ip: Option<String>,
    user_agent: Option<String>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO user_sessions (id, user_id, ip, user_agent) VALUES ($1, $2, $3::text::inet, $4)",
        id,
        user.as_uuid(),
        ip,
        user_agent,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn touch_session(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE user_sessions SET last_used_at = now() WHERE id = $1",
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Revokes a live session for `reason`; with `user`, only one of theirs. Returns whether it
/// was live.
pub(crate) async fn revoke_session(
    conn: &mut PgConnection,
    id: Uuid,
    user: Option<UserId>,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query!(
        "UPDATE user_sessions SET revoked_at = now(), revoked_reason = $3
         WHERE id = $1 AND ($2::uuid IS NULL OR user_id = $2) AND revoked_at IS NULL",
        id,
        user.map(|u| u.as_uuid()),
        reason,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(revoked == 1)
}

/// Revokes every live session of the user; returns how many.
pub(crate) async fn revoke_sessions(
    conn: &mut PgConnection,
    user: UserId,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "UPDATE user_sessions SET revoked_at = now(), revoked_reason = $2
         WHERE user_id = $1 AND revoked_at IS NULL",
        user.as_uuid(),
        reason,
    )
    .execute(conn)
    .await?
    .rows_affected())
}

/// A signed-in device.
pub(crate) struct SessionRow {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The user's live sessions, newest first.
pub(crate) async fn live_sessions(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    sqlx::query_as!(
        SessionRow,
        "SELECT id, created_at, last_used_at, host(ip) AS ip, user_agent FROM user_sessions
         WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 200",
        user.as_uuid(),
    )
    .fetch_all(conn)
    .await
}

/// A refresh token to store: its hash under a pepper.
pub(crate) struct NewRefresh<'a> {
    pub id: Uuid,
    pub session: Uuid,
    pub pepper_id: &'a str,
    pub hash: &'a [u8],
    pub ttl_secs: f64,
}

pub(crate) async fn insert_refresh(
    conn: &mut PgConnection,
    token: NewRefresh<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO refresh_tokens (id, session_id, pepper_id, hash, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        token.id,
        token.session,
        token.pepper_id,
        token.hash,
        token.ttl_secs,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A refresh token and its session's state.
pub(crate) struct RefreshRow {
    pub session_id: Uuid,
    pub pepper_id: String,
    pub hash: Vec<u8>,
    pub used: bool,
    pub fresh: bool,
    pub user_id: UserId,
    pub session_live: bool,
}

pub(crate) async fn refresh_token(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<RefreshRow>, sqlx::Error> {
    sqlx::query_as!(
        RefreshRow,
        r#"SELECT t.session_id, t.pepper_id, t.hash, t.used_at IS NOT NULL AS "used!",
                  t.expires_at > now() AS "fresh!", s.user_id AS "user_id: UserId",
                  s.revoked_at IS NULL AS "session_live!"
           FROM refresh_tokens t JOIN user_sessions s ON s.id = t.session_id WHERE t.id = $1"#,
        id,
    )
    .fetch_optional(conn)
    .await
}

/// The one atomic step of a refresh: `true` when this presentation spent the token.
pub(crate) async fn spend_refresh(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let spent = sqlx::query!(
        "UPDATE refresh_tokens SET used_at = now() WHERE id = $1 AND used_at IS NULL",
        id
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(spent == 1)
}

/// Changes the user's name and time zone (each only when given).
pub(crate) async fn update_profile(
    conn: &mut PgConnection,
    user: UserId,
    name: Option<&str>,
    time_zone: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET name = coalesce($2, name), time_zone = coalesce($3, time_zone), updated_at = now()
         WHERE id = $1",
        user.as_uuid(),
        name,
        time_zone,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The profile `GET /me` shows.
pub(crate) struct Profile {
    pub email: String,
    pub name: String,
    pub email_verified: bool,
    pub time_zone: String,
    pub totp_enabled: bool,
}

pub(crate) async fn profile(conn: &mut PgConnection, user: UserId) -> Result<Profile, sqlx::Error> {
    sqlx::query_as!(
        Profile,
        r#"SELECT email, name, email_verified_at IS NOT NULL AS "email_verified!", time_zone,
                  EXISTS (SELECT FROM user_totp WHERE user_id = $1 AND enabled_at IS NOT NULL)
                    AS "totp_enabled!"
           FROM users WHERE id = $1"#,
        user.as_uuid(),
    )
    .fetch_one(conn)
    .await
}

/// A tenant the user belongs to.
pub(crate) struct TenantOfUser {
    pub id: TenantId,
    pub name: String,
    pub roles: Vec<String>,
}

/// The user's tenants by name (the user policy on memberships: their rows across tenants,
/// while no tenant is set).
pub(crate) async fn tenants_of(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<Vec<TenantOfUser>, sqlx::Error> {
    sqlx::query_as!(
        TenantOfUser,
        r#"SELECT t.id AS "id: TenantId", t.name, m.roles
           FROM memberships m JOIN tenants t ON t.id = m.tenant_id
           WHERE m.user_id = $1 ORDER BY t.name"#,
        user.as_uuid(),
    )
    .fetch_all(conn)
    .await
}

/// Whether the user has two-factor sign-in on.
pub(crate) async fn totp_enabled(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT FROM user_totp WHERE user_id = $1 AND enabled_at IS NOT NULL) AS "on!""#,
        user.as_uuid(),
    )
    .fetch_one(conn)
    .await
}

/// The sealed secret of the user's active TOTP.
pub(crate) async fn active_totp_secret(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT secret_ciphertext FROM user_totp WHERE user_id = $1 AND enabled_at IS NOT NULL",
        user.as_uuid(),
    )
    .fetch_optional(conn)
    .await
}

/// Locks the sealed secret of an enrolment not yet activated.
pub(crate) async fn lock_pending_totp_secret(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT secret_ciphertext FROM user_totp WHERE user_id = $1 AND enabled_at IS NULL FOR UPDATE",
        user.as_uuid(),
    )
    .fetch_optional(conn)
    .await
}

/// Accepts time step `step` once: `true` when no later or equal step was used before.
pub(crate) async fn advance_totp_step(
    conn: &mut PgConnection,
    user: UserId,
    step: i64,
) -> Result<bool, sqlx::Error> {
    let accepted = sqlx::query!(
        "UPDATE user_totp SET last_step = $2 WHERE user_id = $1 AND last_step < $2",
        user.as_uuid(),
        step,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(accepted == 1)
}

/// Stores a new enrolment (replacing an unfinished one).
pub(crate) async fn enroll_totp(
    conn: &mut PgConnection,
    user: UserId,
    ciphertext: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO user_totp (user_id, secret_ciphertext) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET secret_ciphertext = $2, enabled_at = NULL, last_step = 0, created_at = now()",
        user.as_uuid(),
        ciphertext,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn activate_totp(
    conn: &mut PgConnection,
    user: UserId,
    step: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE user_totp SET enabled_at = now(), last_step = $2 WHERE user_id = $1",
        user.as_uuid(),
        step,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn delete_totp(conn: &mut PgConnection, user: UserId) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM user_totp WHERE user_id = $1", user.as_uuid())
        .execute(conn)
        .await?;
    Ok(())
}

/// An unused recovery code's hash.
pub(crate) struct RecoveryCode {
    pub id: Uuid,
    pub pepper_id: String,
    pub hash: Vec<u8>,
}

pub(crate) async fn unused_recovery_codes(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<Vec<RecoveryCode>, sqlx::Error> {
    sqlx::query_as!(
        RecoveryCode,
        "SELECT id, pepper_id, hash FROM totp_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        user.as_uuid(),
    )
    .fetch_all(conn)
    .await
}

/// Spends a recovery code once: `true` when this use spent it.
pub(crate) async fn spend_recovery_code(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let spent = sqlx::query!(
        "UPDATE totp_recovery_codes SET used_at = now() WHERE id = $1 AND used_at IS NULL",
        id
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(spent == 1)
}

pub(crate) async fn insert_recovery_code(
    conn: &mut PgConnection,
    user: UserId,
    pepper_id: &str,
    hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO totp_recovery_codes (id, user_id, pepper_id, hash) VALUES ($1, $2, $3, $4)",
        Uuid::now_v7(),
        user.as_uuid(),
        pepper_id,
        hash,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn delete_recovery_codes(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM totp_recovery_codes WHERE user_id = $1",
        user.as_uuid()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// An account counter's current window: its count and the seconds it still runs.
pub(crate) struct Throttle {
    pub count: i32,
    pub seconds_left: f64,
}

/// The account counter `key`, if its window of `per_secs` is still running.
pub(crate) async fn throttle(
    conn: &mut PgConnection,
    key: &str,
    per_secs: f64,
) -> Result<Option<Throttle>, sqlx::Error> {
    sqlx::query_as!(
        Throttle,
        r#"SELECT count,
                  extract(epoch FROM window_start + make_interval(secs => $2) - now())::float8
                    AS "seconds_left!"
           FROM auth_throttles WHERE key = $1 AND window_start > now() - make_interval(secs => $2)"#,
        key,
        per_secs,
    )
    .fetch_optional(conn)
    .await
}

/// Counts one event against `key` (a new window when the old one ended); the counter after.
pub(crate) async fn count_throttle(
    conn: &mut PgConnection,
    key: &str,
    per_secs: f64,
) -> Result<Throttle, sqlx::Error> {
    sqlx::query_as!(
        Throttle,
        r#"INSERT INTO auth_throttles (key, window_start, count) VALUES ($1, now(), 1)
           ON CONFLICT (key) DO UPDATE SET
             count = CASE WHEN auth_throttles.window_start > now() - make_interval(secs => $2) THEN auth_throttles.count + 1 ELSE 1 END,
             window_start = CASE WHEN auth_throttles.window_start > now() - make_interval(secs => $2) THEN auth_throttles.window_start ELSE now() END
           RETURNING count,
             extract(epoch FROM window_start + make_interval(secs => $2) - now())::float8 AS "seconds_left!""#,
        key,
        per_secs,
    )
    .fetch_one(conn)
    .await
}

pub(crate) async fn reset_throttle(conn: &mut PgConnection, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM auth_throttles WHERE key = $1", key)
        .execute(conn)
        .await?;
    Ok(())
}

/// A TOTP secret as the key rotation walks them.
pub struct SealedTotp {
    pub user_id: Uuid,
    pub secret_ciphertext: Vec<u8>,
}

/// Up to `limit` TOTP secrets after `after` (in user order) sealed under a key other than
/// `key_id` (the bytes between the layout's length byte and the nonce).
pub async fn totp_not_under(
    conn: &mut PgConnection,
    key_id: &[u8],
    after: Uuid,
    limit: i64,
) -> Result<Vec<SealedTotp>, sqlx::Error> {
    sqlx::query_as!(
        SealedTotp,
        "SELECT user_id, secret_ciphertext FROM user_totp
          WHERE user_id > $1
            AND substring(secret_ciphertext from 3 for get_byte(secret_ciphertext, 1)) <> $2
          ORDER BY user_id LIMIT $3",
        after,
        key_id,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// Replaces a TOTP secret's ciphertext if it is still `old`; whether it was.
pub async fn reseal_totp(
    conn: &mut PgConnection,
    user_id: Uuid,
    old: &[u8],
    new: &[u8],
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE user_totp SET secret_ciphertext = $3 WHERE user_id = $1 AND secret_ciphertext = $2",
        user_id,
        old,
        new,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// TOTP secrets sealed under `key_id` (`under`) or under any other key.
pub async fn count_totp(
    conn: &mut PgConnection,
    key_id: &[u8],
    under: bool,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM user_totp
            WHERE (substring(secret_ciphertext from 3 for get_byte(secret_ciphertext, 1)) = $1) = $2"#,
        key_id,
        under,
    )
    .fetch_one(conn)
    .await
}

#[cfg(test)]
mod tests {
    //! The session check as it rides in `BEGIN`'s round trip (inlined, text rows) against
    //! the same file run prepared by sqlx's macros (checked against the schema at compile
    //! time): every case answers the same.

    use kernel::{Actor, SystemTx, UserTx};
    use testkit::seed;

    use super::*;

    #[tokio::test]
    async fn inlined_and_prepared_session_checks_agree() {
        let test = testkit::db::TestDb::with_migrations().await.unwrap();
        let db = test.kernel_db([]).await.unwrap();
        let (user, other) = (seed::user(&db).await, seed::user(&db).await);
        let (live, revoked, foreign) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut tx = SystemTx::begin(&db, Actor::System).await.unwrap();
        for (id, owner, revoked_at) in [
            (live, user, false),
            (revoked, user, true),
            (foreign, other, false),
        ] {
            sqlx::query(
                "INSERT INTO user_sessions (id, user_id, revoked_at)
                 VALUES ($1, $2, CASE WHEN $3 THEN now() END)",
            )
            .bind(id)
            .bind(owner)
            .bind(revoked_at)
            .execute(tx.conn())
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        let mut answers = Vec::new();
        for session in [live, revoked, foreign, Uuid::now_v7()] {
            let (mut tx, rows) =
                UserTx::begin_reading(&db, user, Some(session_live(session, user)))
                    .await
                    .unwrap();
            let prepared =
                sqlx::query_file_scalar!("src/sql/session_live.sql", session, user.as_uuid())
                    .fetch_optional(tx.conn())
                    .await
                    .unwrap();
            let inlined = live_of(&rows).unwrap();
            assert_eq!(inlined, prepared, "{session}");
            answers.push(inlined);
        }
        assert_eq!(answers, [Some(true), Some(false), None, None]);
    }
}

//! The rules of accounts and sessions. SQL is inline: every statement is small and reads
//! best next to the rule it serves.

use std::{net::IpAddr, str::FromStr};

use audit::{NewEvent, Record};
use chrono::{DateTime, Utc};
use kernel::{Actor, Db, Email, FieldError, Problem, RequestContext, SystemTx, UserId, UserTx};
use poem::http::StatusCode;
use poem_openapi::Object;
use serde_json::json;
use uuid::Uuid;

use crate::{
    Identity, IdentityConfig, Principal,
    limits::{self, IpWindows, Limits},
    password::{self, Passwords},
    tokens::{Jwt, Peppers},
};

pub(crate) struct Inner {
    pub db: Db,
    pub jwt: Jwt,
    pub peppers: Peppers,
    pub passwords: Passwords,
    pub limits: Limits,
    pub ips: IpWindows,
    pub refresh_ttl_secs: u64,
    pub vault: vault::Vault,
}

impl Inner {
    pub fn new(db: Db, config: IdentityConfig) -> Inner {
        let issuer = config.public_url.as_str().trim_end_matches('/').to_string();
        Inner {
            db,
            jwt: Jwt::new(config.jwt_keys, issuer, config.access_ttl_secs),
            peppers: Peppers(config.peppers),
            passwords: Passwords::new(config.argon2),
            limits: config.limits,
            ips: IpWindows::default(),
            refresh_ttl_secs: config.refresh_ttl_secs,
            vault: vault::Vault::new(
                config
                    .encryption_keys
                    .iter()
                    .map(|(id, k)| (id.as_str(), k.expose().as_slice())),
            )
            .expect("configuration checks the encryption keys"),
        }
    }
}

/// A user (signup's answer).
#[derive(Debug, Clone, Object)]
pub struct UserView {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub email_verified: bool,
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
}

/// A tenant the caller belongs to, with their roles.
#[derive(Debug, Clone, Object)]
pub struct MeTenant {
    pub id: kernel::TenantId,
    pub name: String,
    pub roles: Vec<String>,
}

/// The signed-in user (`GET /me`).
#[derive(Debug, Clone, Object)]
pub struct Me {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub email_verified: bool,
    pub time_zone: String,
    pub totp_enabled: bool,
    pub tenants: Vec<MeTenant>,
}

/// Tokens after login or refresh.
#[derive(Debug, Clone, Object)]
pub struct TokenPair {
    /// A JWT for `Authorization: Bearer …`, valid `expires_in` seconds.
    pub access_token: String,
    /// Exchange it once at `POST /auth/refresh` for a new pair. Reusing a spent one signs
    /// every device of this session out.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_in: u64,
}

/// A signed-in device.
#[derive(Debug, Clone, Object)]
pub struct SessionView {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The session of this request.
    pub current: bool,
}

/// `session_id, pepper_id, hash, used, fresh, user_id, session live`.
type RefreshRow = (Uuid, String, Vec<u8>, bool, bool, Uuid, bool);
/// `id, created_at, last_used_at, ip, user_agent`.
type SessionRow = (
    Uuid,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<String>,
    Option<String>,
);

fn client() -> (Option<IpAddr>, Option<String>) {
    RequestContext::current()
        .map(|c| (c.client_ip, c.user_agent.clone()))
        .unwrap_or_default()
}

pub(crate) fn invalid_credentials() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "Invalid credentials",
    )
    .with_detail("The email address or the password is wrong.")
}

fn invalid_refresh() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
        "Invalid refresh token",
    )
    .with_detail("The refresh token is unknown, expired, or already used; sign in again.")
}

fn invalid_token() -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid_token",
        "Invalid or expired link",
    )
    .with_detail("This link is invalid, expired, or was already used.")
}

/// Runs argon2 off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("argon2 does not panic")
}

/// Checks an IANA time zone name.
pub(crate) fn check_time_zone(field: &str, tz: &str) -> Result<String, FieldError> {
    chrono_tz::Tz::from_str(tz)
        .map(|z| z.name().to_string())
        .map_err(|_| FieldError::new(field, "must be an IANA time zone such as Europe/Berlin"))
}

impl Identity {
    pub(crate) fn inner(&self) -> &Inner {
        &self.0
    }

    /// The user and session an access token names, from its signature and expiry alone. The
    /// caller must still check that the session is live, in its own transaction (the
    /// access decision does it in the same statement as the membership read).
    pub fn verify_access_token(&self, bearer: &str) -> Result<Principal, Problem> {
        let claims = self
            .inner()
            .jwt
            .verify(bearer)
            .ok_or_else(Problem::unauthorized)?;
        Ok(Principal {
            user_id: UserId::from_uuid(claims.sub),
            session_id: claims.sid,
        })
    }

    /// The caller of an access token: the JWT checks out and its session is live (a revoked
    /// session's tokens stop working on the next request).
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, Problem> {
        let (principal, tx) = self.begin_authenticated(bearer).await?;
        tx.commit().await?;
        Ok(principal)
    }

    /// [`Identity::authenticate`], leaving its transaction open for the caller's own reads,
    /// so a request that only reads the user's rows is one transaction.
    pub async fn begin_authenticated(&self, bearer: &str) -> Result<(Principal, UserTx), Problem> {
        let principal = self.verify_access_token(bearer)?;
        let mut tx = UserTx::begin(&self.inner().db, principal.user_id).await?;
        let live: Option<bool> = sqlx::query_scalar(
            "SELECT revoked_at IS NULL FROM user_sessions WHERE id = $1 AND user_id = $2",
        )
        .bind(principal.session_id)
        .bind(principal.user_id)
        .fetch_optional(tx.conn())
        .await?;
        match live {
            Some(true) => Ok((principal, tx)),
            _ => Err(Problem::unauthorized()),
        }
    }

    /// `POST /auth/signup`: the account, a verification mail, `auth.signed_up`.
    pub async fn signup(
        &self,
        email: Email,
        password: String,
        name: String,
        time_zone: String,
    ) -> Result<UserView, Problem> {
        let (ip, _) = client();
        self.inner()
            .ips
            .hit("signup_ip", self.inner().limits.signup_ip, ip)?;
        let passwords = self.inner().passwords.clone();
        let hash = blocking(move || passwords.hash(&password)).await;
        let id = UserId::new();
        let mut tx = SystemTx::begin(&self.inner().db, Actor::System).await?;
        let created: Option<DateTime<Utc>> = sqlx::query_scalar(
            "INSERT INTO users (id, email, name, time_zone, password_hash, password_changed_at)
             VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (email) DO NOTHING RETURNING created_at",
        )
        .bind(id)
        .bind(email.as_str())
        .bind(&name)
        .bind(&time_zone)
        .bind(&hash)
        .fetch_optional(tx.conn())
        .await?;
        let Some(created_at) = created else {
            return Err(
                Problem::new(StatusCode::CONFLICT, "email_taken", "Email taken").with_detail(
                    "An account with this email address exists; sign in or reset its password.",
                ),
            );
        };
        let token = self
            .one_time_token(&mut tx, id, "verify_email", "bvt", 48 * 3600)
            .await?;
        mail::queue(
            &mut tx,
            &email,
            &mail::Template::VerifyEmail {
                name: name.clone(),
                token,
            },
        )
        .await?;
        tx.record(NewEvent::new("auth.signed_up").resource("user", id));
        tx.commit().await?;
        Ok(UserView {
            id,
            email: email.to_string(),
            name,
            email_verified: false,
            time_zone,
            created_at,
        })
    }

    async fn one_time_token(
        &self,
        tx: &mut SystemTx,
        user: UserId,
        purpose: &str,
        prefix: &str,
        ttl_secs: i64,
    ) -> Result<String, Problem> {
        let minted = self.inner().peppers.mint(prefix);
        sqlx::query(
            "INSERT INTO one_time_tokens (id, purpose, user_id, pepper_id, hash, expires_at)
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
        )
        .bind(minted.id)
        .bind(purpose)
        .bind(user)
        .bind(&minted.pepper_id)
        .bind(&minted.hash)
        .bind(ttl_secs as f64)
        .execute(tx.conn())
        .await?;
        Ok(minted.token)
    }

    /// Spends a single-use token of `purpose`: its user, or `400 invalid_token`.
    async fn spend_token(
        &self,
        tx: &mut SystemTx,
        purpose: &str,
        prefix: &str,
        token: &str,
    ) -> Result<UserId, Problem> {
        let (id, secret) = Peppers::parse(prefix, token).ok_or_else(invalid_token)?;
        let row: Option<(Uuid, String, Vec<u8>)> = sqlx::query_as(
            "SELECT user_id, pepper_id, hash FROM one_time_tokens
             WHERE id = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now() FOR UPDATE",
        )
        .bind(id)
        .bind(purpose)
        .fetch_optional(tx.conn())
        .await?;
        let Some((user, pepper, hash)) = row else {
            return Err(invalid_token());
        };
        if !self.inner().peppers.matches(&pepper, &secret, &hash) {
            return Err(invalid_token());
        }
        sqlx::query("UPDATE one_time_tokens SET used_at = now() WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        Ok(UserId::from_uuid(user))
    }

    /// `POST /auth/verify-email`.
    pub async fn verify_email(&self, token: &str) -> Result<(), Problem> {
        let (ip, _) = client();
        self.inner()
            .ips
            .hit("verify_ip", self.inner().limits.verify_ip, ip)?;
        let mut tx = SystemTx::begin(&self.inner().db, Actor::System).await?;
        let user = self
            .spend_token(&mut tx, "verify_email", "bvt", token)
            .await?;
        sqlx::query("UPDATE users SET email_verified_at = coalesce(email_verified_at, now()), updated_at = now() WHERE id = $1")
            .bind(user)
            .execute(tx.conn())
            .await?;
        tx.record(NewEvent::new("auth.email_verified").resource("user", user));
        tx.commit().await
    }

    /// Writes a security event in a transaction of its own: it must outlive the failing request.
    pub(crate) async fn security_event(&self, event: NewEvent) -> Result<(), Problem> {
        let mut tx = SystemTx::begin(&self.inner().db, Actor::System).await?;
        tx.record(event);
        tx.commit().await
    }

    /// `POST /auth/login`. Unknown email and wrong password answer alike, in similar time.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        totp_code: Option<String>,
    ) -> Result<TokenPair, Problem> {
        let inner = self.inner();
        let (ip, user_agent) = client();
        inner.ips.hit("login_ip", inner.limits.login_ip, ip)?;
        let digest = inner.peppers.email_digest(email.trim());
        let account_key = format!("login:{digest}");
        limits::check_account(&inner.db, &account_key, inner.limits.login_account).await?;

        let user: Option<(UserId, Option<String>)> = match Email::parse(email) {
            Err(_) => None,
            Ok(email) => {
                let mut tx = SystemTx::begin(&inner.db, Actor::System).await?;
                let row = sqlx::query_as("SELECT id, password_hash FROM users WHERE email = $1")
                    .bind(email.as_str())
                    .fetch_optional(tx.conn())
                    .await?;
                tx.commit().await?;
                row
            }
        };
        let passwords = inner.passwords.clone();
        let stored = user.as_ref().and_then(|u| u.1.clone());
        let candidate = password.clone();
        let (ok, rehash) = blocking(move || passwords.verify(&candidate, stored.as_deref())).await;
        let Some(user_id) = user.as_ref().filter(|_| ok).map(|u| u.0) else {
            limits::count_account(&inner.db, &account_key, inner.limits.login_account).await?;
            let event = NewEvent::new("auth.login_failed").payload(json!({ "email_hmac": digest }));
            let event = match user {
                Some((id, _)) => event.resource("user", id),
                None => event,
            };
            self.security_event(event).await?;
            return Err(invalid_credentials());
        };
        limits::reset_account(&inner.db, &account_key).await?;

        let mut tx = SystemTx::begin(&inner.db, Actor::User(user_id)).await?;
        self.second_factor_at_login(&mut tx, user_id, totp_code.as_deref(), &digest)
            .await?;
        if rehash {
            let passwords = inner.passwords.clone();
            let new_hash = blocking(move || passwords.hash(&password)).await;
            sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                .bind(user_id)
                .bind(new_hash)
                .execute(tx.conn())
                .await?;
        }
        let session = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO user_sessions (id, user_id, ip, user_agent) VALUES ($1, $2, $3::inet, $4)",
        )
        .bind(session)
        .bind(user_id)
        .bind(ip.map(|i| i.to_string()))
        .bind(user_agent)
        .execute(tx.conn())
        .await?;
        let refresh = self.new_refresh(&mut tx, session).await?;
        tx.record(
            NewEvent::new("auth.login_succeeded")
                .resource("user", user_id)
                .payload(json!({ "session_id": session })),
        );
        tx.commit().await?;
        Ok(self.pair(user_id, session, refresh))
    }

    async fn new_refresh(&self, tx: &mut SystemTx, session: Uuid) -> Result<String, Problem> {
        let minted = self.inner().peppers.mint("brt");
        sqlx::query(
            "INSERT INTO refresh_tokens (id, session_id, pepper_id, hash, expires_at)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        )
        .bind(minted.id)
        .bind(session)
        .bind(&minted.pepper_id)
        .bind(&minted.hash)
        .bind(self.inner().refresh_ttl_secs as f64)
        .execute(tx.conn())
        .await?;
        Ok(minted.token)
    }

    fn pair(&self, user: UserId, session: Uuid, refresh_token: String) -> TokenPair {
        TokenPair {
            access_token: self.inner().jwt.issue(user, session),
            refresh_token,
            token_type: "Bearer".into(),
            expires_in: self.inner().jwt.ttl_secs(),
        }
    }

    /// `POST /auth/refresh`: a new pair; a spent token revokes its whole family.
    pub async fn refresh(&self, token: &str) -> Result<TokenPair, Problem> {
        let inner = self.inner();
        let (id, secret) = Peppers::parse("brt", token).ok_or_else(invalid_refresh)?;
        let mut tx = SystemTx::begin(&inner.db, Actor::System).await?;
        let row: Option<RefreshRow> = sqlx::query_as(
            "SELECT t.session_id, t.pepper_id, t.hash, t.used_at IS NOT NULL, t.expires_at > now(), s.user_id, s.revoked_at IS NULL
             FROM refresh_tokens t JOIN user_sessions s ON s.id = t.session_id WHERE t.id = $1",
        )
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
        let Some((session, pepper, hash, used, fresh, user, live)) = row else {
            return Err(invalid_refresh());
        };
        if !inner.peppers.matches(&pepper, &secret, &hash) {
            return Err(invalid_refresh());
        }
        let user = UserId::from_uuid(user);
        // The one atomic step: only one presentation of a token can spend it.
        let spent = used
            || sqlx::query(
                "UPDATE refresh_tokens SET used_at = now() WHERE id = $1 AND used_at IS NULL",
            )
            .bind(id)
            .execute(tx.conn())
            .await?
            .rows_affected()
                == 0;
        if spent {
            drop(tx);
            if live {
                self.reuse_detected(user, session).await?;
            }
            return Err(invalid_refresh());
        }
        if !live || !fresh {
            return Err(invalid_refresh());
        }
        let refresh = self.new_refresh(&mut tx, session).await?;
        sqlx::query("UPDATE user_sessions SET last_used_at = now() WHERE id = $1")
            .bind(session)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(self.pair(user, session, refresh))
    }

    /// A spent refresh token came back: someone else may hold the family. Revoke it, record
    /// it, and tell the owner.
    async fn reuse_detected(&self, user: UserId, session: Uuid) -> Result<(), Problem> {
        let mut tx = SystemTx::begin(&self.inner().db, Actor::System).await?;
        sqlx::query("UPDATE user_sessions SET revoked_at = now(), revoked_reason = 'refresh_reuse' WHERE id = $1 AND revoked_at IS NULL")
            .bind(session)
            .execute(tx.conn())
            .await?;
        let who: Option<(String, String)> =
            sqlx::query_as("SELECT email, name FROM users WHERE id = $1")
                .bind(user)
                .fetch_optional(tx.conn())
                .await?;
        if let Some((email, name)) = who
            && let Ok(email) = Email::parse(&email)
        {
            let what = "A refresh token of one of your sessions was used twice, so that session was signed out everywhere.".to_string();
            mail::queue(
                &mut tx,
                &email,
                &mail::Template::SecurityAlert { name, what },
            )
            .await?;
        }
        tx.record(
            NewEvent::new("auth.refresh_reuse_detected")
                .resource("user", user)
                .payload(json!({ "session_id": session })),
        );
        tx.commit().await
    }

    /// Revokes one of `principal`'s sessions; `404` when it is not theirs or already revoked.
    pub async fn revoke_session(
        &self,
        principal: Principal,
        session: Uuid,
        reason: &str,
    ) -> Result<(), Problem> {
        let mut tx = UserTx::begin(&self.inner().db, principal.user_id).await?;
        let revoked = sqlx::query(
            "UPDATE user_sessions SET revoked_at = now(), revoked_reason = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(session)
        .bind(principal.user_id)
        .bind(reason)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if revoked == 0 {
            return Err(Problem::not_found());
        }
        tx.record(
            NewEvent::new("session.revoked")
                .resource("session", session)
                .payload(json!({ "reason": reason })),
        );
        tx.commit().await
    }

    /// `POST /auth/password-reset`: always `202`; mails a link when the account exists.
    pub async fn request_reset(&self, email: &str) -> Result<(), Problem> {
        let inner = self.inner();
        let digest = inner.peppers.email_digest(email.trim());
        let key = format!("reset:{digest}");
        limits::check_account(&inner.db, &key, inner.limits.reset_account).await?;
        limits::count_account(&inner.db, &key, inner.limits.reset_account).await?;
        let mut tx = SystemTx::begin(&inner.db, Actor::System).await?;
        let user: Option<(UserId, String)> = match Email::parse(email) {
            Ok(e) => {
                sqlx::query_as("SELECT id, name FROM users WHERE email = $1")
                    .bind(e.as_str())
                    .fetch_optional(tx.conn())
                    .await?
            }
            Err(_) => None,
        };
        let event =
            NewEvent::new("auth.password_reset_requested").payload(json!({ "email_hmac": digest }));
        match (user, Email::parse(email)) {
            (Some((id, name)), Ok(email)) => {
                let token = self
                    .one_time_token(&mut tx, id, "password_reset", "bpr", 3600)
                    .await?;
                mail::queue(
                    &mut tx,
                    &email,
                    &mail::Template::PasswordReset { name, token },
                )
                .await?;
                tx.record(event.resource("user", id));
            }
            _ => tx.record(event),
        }
        tx.commit().await
    }

    /// `POST /auth/password-reset/confirm`: the new password; every session is revoked.
    pub async fn confirm_reset(&self, token: &str, new_password: String) -> Result<(), Problem> {
        let inner = self.inner();
        let mut tx = SystemTx::begin(&inner.db, Actor::System).await?;
        let user = self
            .spend_token(&mut tx, "password_reset", "bpr", token)
            .await?;
        let (email, name): (String, String) =
            sqlx::query_as("SELECT email, name FROM users WHERE id = $1")
                .bind(user)
                .fetch_one(tx.conn())
                .await?;
        password::check_strength("new_password", &new_password, &[&email, &name])
            .map_err(|e| Problem::validation(vec![e]))?;
        let passwords = inner.passwords.clone();
        let hash = blocking(move || passwords.hash(&new_password)).await;
        sqlx::query("UPDATE users SET password_hash = $2, password_changed_at = now(), updated_at = now() WHERE id = $1")
            .bind(user)
            .bind(hash)
            .execute(tx.conn())
            .await?;
        sqlx::query("UPDATE one_time_tokens SET used_at = now() WHERE user_id = $1 AND purpose = 'password_reset' AND used_at IS NULL")
            .bind(user)
            .execute(tx.conn())
            .await?;
        let revoked = sqlx::query(
            "UPDATE user_sessions SET revoked_at = now(), revoked_reason = 'password_reset' WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if let Ok(email) = Email::parse(&email) {
            let what = "The password of your account was changed with a reset link, and every session was signed out.".to_string();
            mail::queue(
                &mut tx,
                &email,
                &mail::Template::SecurityAlert { name, what },
            )
            .await?;
        }
        tx.record(
            NewEvent::new("auth.password_reset_completed")
                .resource("user", user)
                .payload(json!({ "sessions_revoked": revoked })),
        );
        tx.commit().await
    }

    /// `GET /me`.
    pub async fn me(&self, bearer: &str) -> Result<Me, Problem> {
        let (principal, mut tx) = self.begin_authenticated(bearer).await?;
        let me = me_in(&mut tx, principal.user_id).await?;
        tx.commit().await?;
        Ok(me)
    }

    /// `PATCH /me`.
    pub async fn update_me(
        &self,
        principal: Principal,
        name: Option<String>,
        time_zone: Option<String>,
    ) -> Result<Me, Problem> {
        let mut tx = UserTx::begin(&self.inner().db, principal.user_id).await?;
        sqlx::query("UPDATE users SET name = coalesce($2, name), time_zone = coalesce($3, time_zone), updated_at = now() WHERE id = $1")
            .bind(principal.user_id)
            .bind(&name)
            .bind(&time_zone)
            .execute(tx.conn())
            .await?;
        let changed: Vec<&str> = [("name", name.is_some()), ("time_zone", time_zone.is_some())]
            .into_iter()
            .filter_map(|(f, c)| c.then_some(f))
            .collect();
        tx.record(
            NewEvent::new("user.updated")
                .resource("user", principal.user_id)
                .payload(json!({ "fields": changed })),
        );
        let me = me_in(&mut tx, principal.user_id).await?;
        tx.commit().await?;
        Ok(me)
    }

    /// `GET /me/sessions`: live sessions, newest first.
    pub async fn sessions(&self, principal: Principal) -> Result<Vec<SessionView>, Problem> {
        let mut tx = UserTx::begin(&self.inner().db, principal.user_id).await?;
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT id, created_at, last_used_at, host(ip), user_agent FROM user_sessions
             WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 200",
        )
        .bind(principal.user_id)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, created_at, last_used_at, ip, user_agent)| SessionView {
                    id,
                    created_at,
                    last_used_at,
                    ip,
                    user_agent,
                    current: id == principal.session_id,
                },
            )
            .collect())
    }
}

async fn me_in(tx: &mut UserTx, user: UserId) -> Result<Me, Problem> {
    let (email, name, verified, time_zone): (String, String, bool, String) = sqlx::query_as(
        "SELECT email, name, email_verified_at IS NOT NULL, time_zone FROM users WHERE id = $1",
    )
    .bind(user)
    .fetch_one(tx.conn())
    .await?;
    let totp_enabled: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM user_totp WHERE user_id = $1 AND enabled_at IS NOT NULL)",
    )
    .bind(user)
    .fetch_one(tx.conn())
    .await?;
    // The user policy on memberships shows this user's rows across tenants (no tenant set).
    let tenants: Vec<(Uuid, String, Vec<String>)> = sqlx::query_as(
        "SELECT t.id, t.name, m.roles FROM memberships m JOIN tenants t ON t.id = m.tenant_id
         WHERE m.user_id = $1 ORDER BY t.name",
    )
    .bind(user)
    .fetch_all(tx.conn())
    .await?;
    Ok(Me {
        id: user,
        email,
        name,
        email_verified: verified,
        time_zone,
        totp_enabled,
        tenants: tenants
            .into_iter()
            .map(|(id, name, roles)| MeTenant {
                id: kernel::TenantId::from_uuid(id),
                name,
                roles,
            })
            .collect(),
    })
}

//! The rules of accounts and sessions; their SQL is in `store`. Functions that work in one
//! transaction take the caller's handle (`UserTx`, `SystemTx`), so a job, the bot or the CLI
//! can make them part of a unit of work of its own; sign-up, login and refresh manage their
//! transactions themselves, because their security events and throttles must outlive a
//! failing attempt.

use std::{net::IpAddr, str::FromStr};

use audit::{NewEvent, Record};
use chrono::{DateTime, Utc};
use kernel::{Actor, Db, Email, FieldError, Problem, RequestContext, SystemTx, UserId, UserTx};
use poem_openapi::Object;
use serde_json::json;
use uuid::Uuid;

use crate::{
    Identity, IdentityConfig, IdentityError, Principal,
    limits::{self, IpWindows, Limit, Limits, Windows},
    password::{self, Passwords},
    store,
    tokens::{Jwt, Peppers},
};

pub(crate) struct Inner {
    pub db: Db,
    pub jwt: Jwt,
    pub peppers: Peppers,
    pub passwords: Passwords,
    pub limits: Limits,
    pub ips: IpWindows,
    /// Requests per user, and per API key (by its HMAC under the first pepper).
    pub users: Windows<Uuid>,
    pub keys: Windows<Vec<u8>>,
    pub refresh_ttl_secs: u64,
    pub vault: std::sync::Arc<vault::Vault>,
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
            users: Windows::default(),
            keys: Windows::default(),
            refresh_ttl_secs: config.refresh_ttl_secs,
            vault: std::sync::Arc::new(
                vault::Vault::new(
                    config
                        .encryption_keys
                        .iter()
                        .map(|(id, k)| (id.as_str(), k.expose().as_slice())),
                )
                .expect("configuration checks the encryption keys"),
            ),
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
    /// After a login (`null` after a refresh): keep it and send it with this account's
    /// next logins. A client that shows it is never slowed down by other clients' failed
    /// attempts on the account.
    pub device_token: Option<String>,
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

/// Whose counter a wrong password counts against besides the account's: a client signing
/// in (its device or address), or a signed-in user re-entering their password.
pub(crate) enum FailureScope<'a> {
    Client(&'a str),
    Reauth(&'a str),
}

/// How often, under attack, clients without an account's device token may try it.
pub const SLOW_LANE: std::time::Duration = std::time::Duration::from_secs(30);

fn client() -> (Option<IpAddr>, Option<String>) {
    RequestContext::current()
        .map(|c| (c.client_ip, c.user_agent.clone()))
        .unwrap_or_default()
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

    /// The user and session an access token names, from its signature and expiry alone, and
    /// one request counted against the user's rate limit (`user`, a `429` past it). The
    /// caller must still check that the session is live, in its own transaction (the
    /// access decision does it in the same statement as the membership read).
    pub fn verify_access_token(&self, bearer: &str) -> Result<Principal, IdentityError> {
        let inner = self.inner();
        let claims = inner
            .jwt
            .verify(bearer)
            .ok_or(IdentityError::Unauthorized)?;
        RequestContext::note_actor(|| format!("user:{}", claims.sub));
        inner
            .users
            .hit(claims.sub, inner.limits.user)
            .map_err(|r| r.problem)?;
        Ok(Principal {
            user_id: UserId::from_uuid(claims.sub),
            session_id: claims.sid,
        })
    }

    /// The caller of an access token: the JWT checks out and its session is live (a revoked
    /// session's tokens stop working on the next request).
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, IdentityError> {
        let (principal, tx) = self.begin_authenticated(bearer).await?;
        tx.commit().await?;
        Ok(principal)
    }

    /// [`Identity::authenticate`], leaving its transaction open for the caller's own reads,
    /// so a request that only reads the user's rows is one transaction.
    pub async fn begin_authenticated(
        &self,
        bearer: &str,
    ) -> Result<(Principal, UserTx), IdentityError> {
        let principal = self.verify_access_token(bearer)?;
        // The session check rides in the round trip of `BEGIN`.
        let read = store::session_live(principal.session_id, principal.user_id);
        let (tx, rows) =
            UserTx::begin_reading(&self.inner().db, principal.user_id, Some(read)).await?;
        match store::live_of(&rows)? {
            Some(true) => Ok((principal, tx)),
            _ => Err(IdentityError::Unauthorized),
        }
    }

    /// `POST /auth/signup`: the account, a verification mail, `auth.signed_up`.
    pub async fn signup(
        &self,
        email: Email,
        password: String,
        name: String,
        time_zone: String,
    ) -> Result<UserView, IdentityError> {
        self.ip_limit("signup_ip", self.inner().limits.signup_ip)
            .await?;
        let passwords = self.inner().passwords.clone();
        let hash = blocking(move || passwords.hash(&password)).await;
        let id = UserId::new();
        let mut tx = SystemTx::begin(&self.inner().db, Actor::System).await?;
        let created = store::insert_user(
            tx.conn(),
            store::NewUser {
                id,
                email: email.as_str(),
                name: &name,
                time_zone: &time_zone,
                password_hash: &hash,
            },
        )
        .await?;
        let Some(created_at) = created else {
            return Err(IdentityError::EmailTaken);
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
    ) -> Result<String, IdentityError> {
        let minted = self.inner().peppers.mint(prefix);
        store::insert_one_time_token(
            tx.conn(),
            store::NewToken {
                id: minted.id,
                purpose,
                user,
                pepper_id: &minted.pepper_id,
                hash: &minted.hash,
                ttl_secs: ttl_secs as f64,
            },
        )
        .await?;
        Ok(minted.token)
    }

    /// Spends a single-use token of `purpose`: its user, or `InvalidToken`.
    async fn spend_token(
        &self,
        tx: &mut SystemTx,
        purpose: &str,
        prefix: &str,
        token: &str,
    ) -> Result<UserId, IdentityError> {
        let (id, secret) = Peppers::parse(prefix, token).ok_or(IdentityError::InvalidToken)?;
        let Some(row) = store::lock_one_time_token(tx.conn(), id, purpose).await? else {
            return Err(IdentityError::InvalidToken);
        };
        if !self
            .inner()
            .peppers
            .matches(&row.pepper_id, &secret, &row.hash)
        {
            return Err(IdentityError::InvalidToken);
        }
        store::spend_one_time_token(tx.conn(), id).await?;
        Ok(UserId::from_uuid(row.user_id))
    }

    /// `POST /auth/verify-email` (throttled per client address).
    pub(crate) async fn verify_email(&self, token: &str) -> Result<(), IdentityError> {
        self.ip_limit("verify_ip", self.inner().limits.verify_ip)
            .await?;
        let mut tx = SystemTx::begin(&self.inner().db, Actor::System).await?;
        self.verify_email_in(&mut tx, token).await?;
        Ok(tx.commit().await?)
    }

    /// Verifies the email address a verification token was sent to, in the caller's
    /// transaction.
    pub async fn verify_email_in(
        &self,
        tx: &mut SystemTx,
        token: &str,
    ) -> Result<UserId, IdentityError> {
        let user = self.spend_token(tx, "verify_email", "bvt", token).await?;
        store::mark_email_verified(tx.conn(), user).await?;
        tx.record(NewEvent::new("auth.email_verified").resource("user", user));
        Ok(user)
    }

    /// Writes a security event in a transaction of its own: it must outlive the failing request.
    pub(crate) async fn security_event(&self, event: NewEvent) -> Result<(), Problem> {
        let mut tx = SystemTx::begin(&self.inner().db, Actor::System).await?;
        tx.record(event);
        tx.commit().await
    }

    /// How an account's address appears in throttle keys and audit payloads: the HMAC of
    /// its normalised form, so another spelling of one address (case, full-width letters,
    /// an internationalised domain) is the same account.
    pub(crate) fn account_digest(&self, email: &str) -> String {
        let normalised = Email::parse(email)
            .map(|e| e.as_str().to_string())
            .unwrap_or_else(|_| email.trim().to_lowercase());
        self.inner().peppers.email_digest(&normalised)
    }

    /// Counts a request of this client against the per-address limit `name`; the first
    /// refusal of a window is audited (`auth.throttled`), later ones only answered.
    pub(crate) async fn ip_limit(&self, name: &'static str, limit: Limit) -> Result<(), Problem> {
        let (ip, _) = client();
        match self.inner().ips.hit(name, limit, ip) {
            Ok(()) => Ok(()),
            Err(refused) => {
                if refused.first {
                    self.security_event(NewEvent::new("auth.throttled").payload(json!({
                        "limit": name,
                        "ip": ip.map(|i| i.to_string()),
                    })))
                    .await?;
                }
                Err(refused.problem)
            }
        }
    }

    /// Past `login_account` failures on an account (from anywhere), clients without its
    /// device token share one attempt per [`SLOW_LANE`]. The first refusal of each
    /// slow-lane window is audited.
    async fn slow_lane(
        &self,
        account_key: &str,
        digest: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), Problem> {
        let inner = self.inner();
        let limit = inner.limits.login_account;
        match limits::account_count(&inner.db, account_key, limit).await? {
            Some(failures) if failures.count >= limit.max => {}
            _ => return Ok(()),
        }
        let lane = Limit {
            max: 1,
            per: SLOW_LANE,
        };
        let slot = limits::count_account(&inner.db, &format!("{account_key}:slow"), lane).await?;
        if slot.count <= 1 {
            return Ok(());
        }
        if slot.count == 2 {
            self.security_event(NewEvent::new("auth.login_throttled").payload(json!({
                "email_hmac": digest,
                "scope": "account_slowed",
                "ip": ip.map(|i| i.to_string()),
            })))
            .await?;
        }
        Err(slot.refusal(lane))
    }

    /// A wrong password, at login or re-checked for a sensitive change: counted for the
    /// client and for the account. The client's counter reaching `login_account` locks
    /// that client out of the account (`auth.login_locked`); the account's reaching it
    /// starts the slow lane and mails the owner once per window
    /// (`auth.account_under_attack`).
    pub(crate) async fn password_failed(
        &self,
        scope: FailureScope<'_>,
        account_key: &str,
        digest: &str,
        ip: Option<IpAddr>,
        owner: Option<UserId>,
    ) -> Result<(), Problem> {
        let (scope, client_key) = match scope {
            FailureScope::Client(key) => ("client", key),
            FailureScope::Reauth(key) => ("reauth", key),
        };
        let inner = self.inner();
        let limit = inner.limits.login_account;
        let client = limits::count_account(&inner.db, client_key, limit).await?;
        if client.count == limit.max {
            self.security_event(NewEvent::new("auth.login_locked").payload(json!({
                "email_hmac": digest,
                "scope": scope,
                "ip": ip.map(|i| i.to_string()),
                "seconds": limit.per.as_secs(),
            })))
            .await?;
        }
        let account = limits::count_account(&inner.db, account_key, limit).await?;
        if account.count == limit.max {
            let mut tx = SystemTx::begin(&inner.db, Actor::System).await?;
            let event = NewEvent::new("auth.account_under_attack")
                .payload(json!({ "email_hmac": digest, "failures": account.count }));
            if let Some(user) = owner {
                tx.record(event.resource("user", user));
                self.alert(
                    &mut tx,
                    user,
                    &format!(
                        "Someone entered a wrong password for your account {} times in a short while. Your account is not locked: you can still sign in from a device you used before. If this was not you, choose a long, unique password.",
                        account.count
                    ),
                )
                .await
                .map_err(Problem::from)?;
            } else {
                tx.record(event);
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// `POST /auth/login`. Unknown email and wrong password answer alike, in similar time.
    ///
    /// Brute force stays expensive without letting a stranger lock the owner out (OWASP
    /// ASVS 2.2.1). Failures count per account and client (a device token a successful
    /// login handed out, else the client address): `login_account` of them lock that
    /// client out of this account. Across all clients, past `login_account` failures the
    /// account is slowed, not locked: clients without its device token share one attempt
    /// per [`SLOW_LANE`], and the owner is mailed once that someone is guessing. A client
    /// with a device token is never slowed by others' failures.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        totp_code: Option<String>,
        device_token: Option<&str>,
    ) -> Result<TokenPair, IdentityError> {
        let inner = self.inner();
        let (ip, user_agent) = client();
        self.ip_limit("login_ip", inner.limits.login_ip).await?;
        let digest = self.account_digest(email);
        let device = device_token.and_then(|t| inner.peppers.device_of(t, &digest));
        let client_key = match (device, ip) {
            (Some(device), _) => format!("login:{digest}:device:{device}"),
            (None, Some(ip)) => format!("login:{digest}:ip:{}", kernel::client_key(ip)),
            (None, None) => format!("login:{digest}:ip:unknown"),
        };
        let account_key = format!("login:{digest}");
        let limit = inner.limits.login_account;
        limits::check_account(&inner.db, &client_key, limit).await?;
        if device.is_none() {
            self.slow_lane(&account_key, &digest, ip).await?;
        }

        let user = match Email::parse(email) {
            Err(_) => None,
            Ok(email) => {
                let mut tx = SystemTx::begin(&inner.db, Actor::System).await?;
                let row = store::credentials_by_email(tx.conn(), email.as_str()).await?;
                tx.commit().await?;
                row
            }
        };
        let passwords = inner.passwords.clone();
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        let candidate = password.clone();
        let (ok, rehash) = blocking(move || passwords.verify(&candidate, stored.as_deref())).await;
        let Some(user_id) = user.as_ref().filter(|_| ok).map(|u| u.id) else {
            let event = NewEvent::new("auth.login_failed").payload(json!({ "email_hmac": digest }));
            let event = match &user {
                Some(u) => event.resource("user", u.id),
                None => event,
            };
            self.security_event(event).await?;
            let owner = user.map(|u| u.id);
            self.password_failed(
                FailureScope::Client(&client_key),
                &account_key,
                &digest,
                ip,
                owner,
            )
            .await?;
            return Err(IdentityError::InvalidCredentials);
        };
        limits::reset_account(&inner.db, &client_key).await?;

        let mut tx = SystemTx::begin(&inner.db, Actor::User(user_id)).await?;
        self.second_factor_at_login(&mut tx, user_id, totp_code.as_deref(), &digest)
            .await?;
        if rehash {
            let passwords = inner.passwords.clone();
            let new_hash = blocking(move || passwords.hash(&password)).await;
            store::set_password_hash(tx.conn(), user_id, &new_hash).await?;
        }
        let session = Uuid::now_v7();
        store::insert_session(
            tx.conn(),
            session,
            user_id,
            ip.map(|i| i.to_string()),
            user_agent,
        )
        .await?;
        let refresh = self.new_refresh(&mut tx, session).await?;
        tx.record(
            NewEvent::new("auth.login_succeeded")
                .resource("user", user_id)
                .payload(json!({ "session_id": session })),
        );
        tx.commit().await?;
        let mut pair = self.pair(user_id, session, refresh);
        pair.device_token = Some(inner.peppers.device_token(&digest));
        Ok(pair)
    }

    async fn new_refresh(&self, tx: &mut SystemTx, session: Uuid) -> Result<String, IdentityError> {
        let minted = self.inner().peppers.mint("brt");
        store::insert_refresh(
            tx.conn(),
            store::NewRefresh {
                id: minted.id,
                session,
                pepper_id: &minted.pepper_id,
                hash: &minted.hash,
                ttl_secs: self.inner().refresh_ttl_secs as f64,
            },
        )
        .await?;
        Ok(minted.token)
    }

    fn pair(&self, user: UserId, session: Uuid, refresh_token: String) -> TokenPair {
        TokenPair {
            access_token: self.inner().jwt.issue(user, session),
            refresh_token,
            token_type: "Bearer".into(),
            expires_in: self.inner().jwt.ttl_secs(),
            device_token: None,
        }
    }

    /// `POST /auth/refresh`: a new pair; a spent token revokes its whole family.
    pub async fn refresh(&self, token: &str) -> Result<TokenPair, IdentityError> {
        let inner = self.inner();
        let (id, secret) = Peppers::parse("brt", token).ok_or(IdentityError::InvalidRefresh)?;
        let mut tx = SystemTx::begin(&inner.db, Actor::System).await?;
        let Some(row) = store::refresh_token(tx.conn(), id).await? else {
            return Err(IdentityError::InvalidRefresh);
        };
        if !inner.peppers.matches(&row.pepper_id, &secret, &row.hash) {
            return Err(IdentityError::InvalidRefresh);
        }
        // The one atomic step: only one presentation of a token can spend it.
        let spent = row.used || !store::spend_refresh(tx.conn(), id).await?;
        if spent {
            drop(tx);
            if row.session_live {
                self.reuse_detected(row.user_id, row.session_id).await?;
            }
            return Err(IdentityError::InvalidRefresh);
        }
        if !row.session_live || !row.fresh {
            return Err(IdentityError::InvalidRefresh);
        }
        let refresh = self.new_refresh(&mut tx, row.session_id).await?;
        store::touch_session(tx.conn(), row.session_id).await?;
        tx.commit().await?;
        Ok(self.pair(row.user_id, row.session_id, refresh))
    }

    /// A spent refresh token came back: someone else may hold the family. Revoke it, record
    /// it, and tell the owner.
    async fn reuse_detected(&self, user: UserId, session: Uuid) -> Result<(), IdentityError> {
        let mut tx = SystemTx::begin(&self.inner().db, Actor::System).await?;
        // Of racing presentations, only the one that revokes the session records and mails
        // (the update waits for a concurrent one, then finds the session revoked).
        if !store::revoke_session(tx.conn(), session, None, "refresh_reuse").await? {
            return Ok(());
        }
        if let Some(who) = store::addressee(tx.conn(), user).await?
            && let Ok(email) = Email::parse(&who.email)
        {
            let what = "A refresh token of one of your sessions was used twice, so that session was signed out everywhere.".to_string();
            mail::queue(
                &mut tx,
                &email,
                &mail::Template::SecurityAlert {
                    name: who.name,
                    what,
                },
            )
            .await?;
        }
        tx.record(
            NewEvent::new("auth.refresh_reuse_detected")
                .resource("user", user)
                .payload(json!({ "session_id": session })),
        );
        Ok(tx.commit().await?)
    }

    /// Revokes one of the transaction's user's sessions for `reason`; `NotFound` when it is
    /// not theirs or already revoked.
    pub async fn revoke_session(
        &self,
        tx: &mut UserTx,
        session: Uuid,
        reason: &str,
    ) -> Result<(), IdentityError> {
        let user = tx.user_id();
        if !store::revoke_session(tx.conn(), session, Some(user), reason).await? {
            return Err(IdentityError::NotFound);
        }
        tx.record(
            NewEvent::new("session.revoked")
                .resource("session", session)
                .payload(json!({ "reason": reason })),
        );
        Ok(())
    }

    /// `POST /auth/password-reset`: always `202`; mails a link when the account exists.
    pub async fn request_reset(&self, email: &str) -> Result<(), IdentityError> {
        let inner = self.inner();
        self.ip_limit("reset_ip", inner.limits.reset_ip).await?;
        let digest = self.account_digest(email);
        let key = format!("reset:{digest}");
        limits::check_account(&inner.db, &key, inner.limits.reset_account).await?;
        limits::count_account(&inner.db, &key, inner.limits.reset_account).await?;
        let mut tx = SystemTx::begin(&inner.db, Actor::System).await?;
        let event =
            NewEvent::new("auth.password_reset_requested").payload(json!({ "email_hmac": digest }));
        let found = match Email::parse(email) {
            Ok(email) => store::addressee_by_email(tx.conn(), email.as_str())
                .await?
                .map(|who| (who, email)),
            Err(_) => None,
        };
        match found {
            Some((who, email)) => {
                let token = self
                    .one_time_token(&mut tx, who.id, "password_reset", "bpr", 3600)
                    .await?;
                mail::queue(
                    &mut tx,
                    &email,
                    &mail::Template::PasswordReset {
                        name: who.name,
                        token,
                    },
                )
                .await?;
                tx.record(event.resource("user", who.id));
            }
            None => tx.record(event),
        }
        Ok(tx.commit().await?)
    }

    /// `POST /auth/password-reset/confirm`: the new password; every session is revoked.
    pub(crate) async fn confirm_reset(
        &self,
        token: &str,
        new_password: String,
    ) -> Result<(), IdentityError> {
        self.ip_limit("reset_confirm_ip", self.inner().limits.reset_confirm_ip)
            .await?;
        let mut tx = SystemTx::begin(&self.inner().db, Actor::System).await?;
        self.confirm_reset_in(&mut tx, token, new_password).await?;
        Ok(tx.commit().await?)
    }

    /// Sets the new password of a reset link in the caller's transaction: every session is
    /// revoked and the owner alerted.
    pub async fn confirm_reset_in(
        &self,
        tx: &mut SystemTx,
        token: &str,
        new_password: String,
    ) -> Result<UserId, IdentityError> {
        let user = self.spend_token(tx, "password_reset", "bpr", token).await?;
        let who = store::addressee(tx.conn(), user)
            .await?
            .ok_or(IdentityError::InvalidToken)?;
        password::check_strength("new_password", &new_password, &[&who.email, &who.name])
            .map_err(IdentityError::Invalid)?;
        let passwords = self.inner().passwords.clone();
        let hash = blocking(move || passwords.hash(&new_password)).await;
        store::change_password(tx.conn(), user, &hash).await?;
        store::spend_reset_tokens(tx.conn(), user).await?;
        let revoked = store::revoke_sessions(tx.conn(), user, "password_reset").await?;
        if let Ok(email) = Email::parse(&who.email) {
            let what = "The password of your account was changed with a reset link, and every session was signed out.".to_string();
            mail::queue(
                tx,
                &email,
                &mail::Template::SecurityAlert {
                    name: who.name,
                    what,
                },
            )
            .await?;
        }
        tx.record(
            NewEvent::new("auth.password_reset_completed")
                .resource("user", user)
                .payload(json!({ "sessions_revoked": revoked })),
        );
        Ok(user)
    }

    /// The transaction's user: profile, two-factor state and tenants with roles.
    pub async fn me(&self, tx: &mut UserTx) -> Result<Me, IdentityError> {
        let user = tx.user_id();
        let profile = store::profile(tx.conn(), user).await?;
        // The user policy on memberships shows this user's rows across tenants (no tenant set).
        let tenants = store::tenants_of(tx.conn(), user).await?;
        Ok(Me {
            id: user,
            email: profile.email,
            name: profile.name,
            email_verified: profile.email_verified,
            time_zone: profile.time_zone,
            totp_enabled: profile.totp_enabled,
            tenants: tenants
                .into_iter()
                .map(|t| MeTenant {
                    id: t.id,
                    name: t.name,
                    roles: t.roles,
                })
                .collect(),
        })
    }

    /// Changes the transaction's user's name and time zone (each only when given).
    pub async fn update_me(
        &self,
        tx: &mut UserTx,
        name: Option<String>,
        time_zone: Option<String>,
    ) -> Result<Me, IdentityError> {
        let user = tx.user_id();
        store::update_profile(tx.conn(), user, name.as_deref(), time_zone.as_deref()).await?;
        let changed: Vec<&str> = [("name", name.is_some()), ("time_zone", time_zone.is_some())]
            .into_iter()
            .filter_map(|(f, c)| c.then_some(f))
            .collect();
        tx.record(
            NewEvent::new("user.updated")
                .resource("user", user)
                .payload(json!({ "fields": changed })),
        );
        self.me(tx).await
    }

    /// The transaction's user's live sessions, newest first; `current` marks the caller's.
    pub async fn sessions(
        &self,
        tx: &mut UserTx,
        current: Option<Uuid>,
    ) -> Result<Vec<SessionView>, IdentityError> {
        let user = tx.user_id();
        let rows = store::live_sessions(tx.conn(), user).await?;
        Ok(rows
            .into_iter()
            .map(|r| SessionView {
                id: r.id,
                created_at: r.created_at,
                last_used_at: r.last_used_at,
                ip: r.ip,
                user_agent: r.user_agent,
                current: Some(r.id) == current,
            })
            .collect())
    }
}

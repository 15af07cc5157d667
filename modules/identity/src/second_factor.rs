//! Two-factor sign-in: TOTP secrets encrypted by the vault, single-use codes, recovery codes.

use audit::{NewEvent, Record};
use kernel::{Email, Problem, SystemTx, Tx, UserId, UserTx};
use poem::http::StatusCode;
use poem_openapi::Object;
use serde_json::json;
use uuid::Uuid;

use crate::{
    Identity, Principal, limits,
    service::{blocking, invalid_credentials},
    totp,
};

/// What an authenticator app needs; shown once, at enrollment.
#[derive(Debug, Clone, Object)]
pub struct TotpEnrollment {
    /// The shared secret, base32.
    pub secret: String,
    /// The same as an `otpauth://` URI (for a QR code).
    pub otpauth_uri: String,
}

fn totp_invalid() -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, "totp_invalid", "Invalid code")
        .with_detail("The two-factor code is wrong or was already used.")
}

fn conflict(code: &'static str, detail: &str) -> Problem {
    Problem::new(StatusCode::CONFLICT, code, "Conflict").with_detail(detail.to_string())
}

fn now_step() -> u64 {
    totp::step_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
    )
}

/// A recovery code as typed: case, spaces and dashes do not matter.
fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

impl Identity {
    fn aad(user: UserId) -> Vec<u8> {
        format!("user_totp:{user}").into_bytes()
    }

    /// Accepts a TOTP code (once) or a recovery code (once) of `user`, inside `tx`.
    async fn accept_code<T: Tx>(
        &self,
        tx: &mut T,
        user: UserId,
        code: &str,
    ) -> Result<bool, Problem> {
        let row: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT secret_ciphertext FROM user_totp WHERE user_id = $1 AND enabled_at IS NOT NULL",
        )
        .bind(user)
        .fetch_optional(tx.conn())
        .await?;
        let Some(ciphertext) = row else {
            return Ok(false);
        };
        let secret = self
            .inner()
            .vault
            .decrypt(&ciphertext, &Self::aad(user))
            .map_err(|e| {
                tracing::error!(error = %e, "a TOTP secret does not open");
                Problem::internal()
            })?;
        if let Some(step) = totp::matching_step(secret.expose(), code, now_step()) {
            // Single use: only a later step than the last one used is accepted.
            let accepted = sqlx::query(
                "UPDATE user_totp SET last_step = $2 WHERE user_id = $1 AND last_step < $2",
            )
            .bind(user)
            .bind(step as i64)
            .execute(tx.conn())
            .await?
            .rows_affected();
            return Ok(accepted == 1);
        }
        let normalised = normalise(code);
        let codes: Vec<(Uuid, String, Vec<u8>)> =
            sqlx::query_as("SELECT id, pepper_id, hash FROM totp_recovery_codes WHERE user_id = $1 AND used_at IS NULL")
                .bind(user)
                .fetch_all(tx.conn())
                .await?;
        let hit = codes.into_iter().find(|(_, pepper, hash)| {
            self.inner()
                .peppers
                .matches(pepper, normalised.as_bytes(), hash)
        });
        let Some((id, _, _)) = hit else {
            return Ok(false);
        };
        let spent = sqlx::query(
            "UPDATE totp_recovery_codes SET used_at = now() WHERE id = $1 AND used_at IS NULL",
        )
        .bind(id)
        .execute(tx.conn())
        .await?
        .rows_affected();
        Ok(spent == 1)
    }

    /// At login, after the password: `401 totp_required` without a code, `401 totp_invalid`
    /// with a wrong or used one (counted toward `totp_account`).
    pub(crate) async fn second_factor_at_login(
        &self,
        tx: &mut SystemTx,
        user: UserId,
        code: Option<&str>,
        email_digest: &str,
    ) -> Result<(), Problem> {
        let enabled: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM user_totp WHERE user_id = $1 AND enabled_at IS NOT NULL)",
        )
        .bind(user)
        .fetch_one(tx.conn())
        .await?;
        if !enabled {
            return Ok(());
        }
        let inner = self.inner();
        let key = format!("totp:{user}");
        limits::check_account(&inner.db, &key, inner.limits.totp_account).await?;
        let Some(code) = code else {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "totp_required",
                "Two-factor code required",
            )
            .with_detail(
                "This account uses two-factor sign-in: send `totp_code` (or a recovery code).",
            ));
        };
        if self.accept_code(tx, user, code).await? {
            limits::reset_account(&inner.db, &key).await?;
            return Ok(());
        }
        limits::count_account(&inner.db, &key, inner.limits.totp_account).await?;
        self.security_event(
            NewEvent::new("auth.login_failed")
                .resource("user", user)
                .payload(json!({ "email_hmac": email_digest, "reason": "totp_invalid" })),
        )
        .await?;
        Err(totp_invalid())
    }

    /// `POST /me/2fa/enroll`: a new secret (pending until activated).
    pub async fn totp_enroll(
        &self,
        principal: Principal,
        password: String,
    ) -> Result<TotpEnrollment, Problem> {
        let user = principal.user_id;
        let mut tx = UserTx::begin(&self.inner().db, user).await?;
        let (email, hash): (String, Option<String>) =
            sqlx::query_as("SELECT email, password_hash FROM users WHERE id = $1")
                .bind(user)
                .fetch_one(tx.conn())
                .await?;
        let passwords = self.inner().passwords.clone();
        let (ok, _) = blocking(move || passwords.verify(&password, hash.as_deref())).await;
        if !ok {
            return Err(invalid_credentials());
        }
        let enabled: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM user_totp WHERE user_id = $1 AND enabled_at IS NOT NULL)",
        )
        .bind(user)
        .fetch_one(tx.conn())
        .await?;
        if enabled {
            return Err(conflict(
                "totp_already_enabled",
                "Two-factor sign-in is already on; disable it first.",
            ));
        }
        let secret: [u8; 20] = rand::random();
        let ciphertext = self.inner().vault.encrypt(&secret, &Self::aad(user));
        sqlx::query(
            "INSERT INTO user_totp (user_id, secret_ciphertext) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE SET secret_ciphertext = $2, enabled_at = NULL, last_step = 0, created_at = now()",
        )
        .bind(user)
        .bind(&ciphertext)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        let secret = totp::base32(&secret);
        let label: String =
            url::form_urlencoded::byte_serialize(format!("Balance:{email}").as_bytes()).collect();
        let otpauth_uri = format!(
            "otpauth://totp/{label}?secret={secret}&issuer=Balance&algorithm=SHA1&digits=6&period=30"
        );
        Ok(TotpEnrollment {
            secret,
            otpauth_uri,
        })
    }

    /// `POST /me/2fa/activate`: the first code turns it on; ten recovery codes, shown once.
    pub async fn totp_activate(
        &self,
        principal: Principal,
        code: &str,
    ) -> Result<Vec<String>, Problem> {
        let user = principal.user_id;
        let inner = self.inner();
        let key = format!("totp:{user}");
        limits::check_account(&inner.db, &key, inner.limits.totp_account).await?;
        let mut tx = UserTx::begin(&inner.db, user).await?;
        let pending: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT secret_ciphertext FROM user_totp WHERE user_id = $1 AND enabled_at IS NULL FOR UPDATE")
                .bind(user)
                .fetch_optional(tx.conn())
                .await?;
        let Some(ciphertext) = pending else {
            return Err(conflict(
                "totp_not_enrolled",
                "Enroll first (POST /me/2fa/enroll), or it is already on.",
            ));
        };
        let secret = inner
            .vault
            .decrypt(&ciphertext, &Self::aad(user))
            .map_err(|_| Problem::internal())?;
        let Some(step) = totp::matching_step(secret.expose(), code, now_step()) else {
            drop(tx);
            limits::count_account(&inner.db, &key, inner.limits.totp_account).await?;
            return Err(totp_invalid());
        };
        sqlx::query("UPDATE user_totp SET enabled_at = now(), last_step = $2 WHERE user_id = $1")
            .bind(user)
            .bind(step as i64)
            .execute(tx.conn())
            .await?;
        sqlx::query("DELETE FROM totp_recovery_codes WHERE user_id = $1")
            .bind(user)
            .execute(tx.conn())
            .await?;
        let mut codes = Vec::with_capacity(10);
        for _ in 0..10 {
            let raw: [u8; 7] = rand::random();
            let code = totp::base32(&raw).to_ascii_lowercase()[..10].to_string();
            let (pepper, hash) = inner.peppers.hash_current(code.as_bytes());
            sqlx::query("INSERT INTO totp_recovery_codes (id, user_id, pepper_id, hash) VALUES ($1, $2, $3, $4)")
                .bind(Uuid::now_v7())
                .bind(user)
                .bind(pepper)
                .bind(hash)
                .execute(tx.conn())
                .await?;
            codes.push(format!("{}-{}", &code[..5], &code[5..]));
        }
        self.alert(
            &mut tx,
            user,
            "Two-factor sign-in was turned on for your account.",
        )
        .await?;
        tx.record(NewEvent::new("auth.totp_enabled").resource("user", user));
        tx.commit().await?;
        Ok(codes)
    }

    /// `POST /me/2fa/disable`: with a current code or a recovery code.
    pub async fn totp_disable(&self, principal: Principal, code: &str) -> Result<(), Problem> {
        let user = principal.user_id;
        let inner = self.inner();
        let key = format!("totp:{user}");
        limits::check_account(&inner.db, &key, inner.limits.totp_account).await?;
        let mut tx = UserTx::begin(&inner.db, user).await?;
        let enabled: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM user_totp WHERE user_id = $1 AND enabled_at IS NOT NULL)",
        )
        .bind(user)
        .fetch_one(tx.conn())
        .await?;
        if !enabled {
            return Err(conflict(
                "totp_not_enabled",
                "Two-factor sign-in is not on.",
            ));
        }
        if !self.accept_code(&mut tx, user, code).await? {
            drop(tx);
            limits::count_account(&inner.db, &key, inner.limits.totp_account).await?;
            return Err(totp_invalid());
        }
        sqlx::query("DELETE FROM totp_recovery_codes WHERE user_id = $1")
            .bind(user)
            .execute(tx.conn())
            .await?;
        sqlx::query("DELETE FROM user_totp WHERE user_id = $1")
            .bind(user)
            .execute(tx.conn())
            .await?;
        self.alert(
            &mut tx,
            user,
            "Two-factor sign-in was turned off for your account.",
        )
        .await?;
        tx.record(NewEvent::new("auth.totp_disabled").resource("user", user));
        tx.commit().await
    }

    async fn alert(&self, tx: &mut UserTx, user: UserId, what: &str) -> Result<(), Problem> {
        let (email, name): (String, String) =
            sqlx::query_as("SELECT email, name FROM users WHERE id = $1")
                .bind(user)
                .fetch_one(tx.conn())
                .await?;
        if let Ok(email) = Email::parse(&email) {
            mail::queue(
                tx,
                &email,
                &mail::Template::SecurityAlert {
                    name,
                    what: what.to_string(),
                },
            )
            .await?;
        }
        Ok(())
    }
}
